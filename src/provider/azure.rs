//! [`AzureConnector`]: one deployment of an Azure OpenAI resource.
//!
//! Requests go to `{endpoint}/openai/deployments/{deployment}/chat/completions?api-version=…`
//! with `api-key` (or `Authorization: Bearer` for Entra tokens). The body, streaming and
//! error mapping are OpenAI's, shared through the transport; Azure's 429 details
//! (`retry-after-ms`, `policy-id`, "retry after N seconds") are read by the error mapping.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use http::header::{HeaderName, HeaderValue, AUTHORIZATION};
use reqwest::{RequestBuilder, Url};

use super::config::{ApiKey, AzureAuth, AzureConfig, ConfigError, ProviderConfig};
use super::error::ConnectorError;
use super::http::{default_client, Authorize, Transport};
use super::metadata::{model_info, MetadataCache, METADATA_TTL};
use super::openai::{credential_value, join, sensitive};
use super::stream::ChunkStream;
use super::types::{CompletionRequest, CompletionResponse, HealthStatus, ProviderMetadata};
use super::{check_config, LLMProvider};
use crate::clock::Clock;
use crate::limiter::ResponseMeta;

/// A connector to one Azure OpenAI deployment. Cheap to clone: clones share the HTTP client,
/// configuration and metadata cache.
#[derive(Clone)]
pub struct AzureConnector {
    inner: Arc<Inner>,
}

struct Inner {
    config: AzureConfig,
    transport: Transport,
    chat_url: Url,
    models_url: Url,
    auth: (HeaderName, HeaderValue),
    metadata: MetadataCache,
}

impl AzureConnector {
    /// A connector with its own HTTP client. Validates `config`; `clock` times the metadata
    /// cache.
    pub fn new(config: AzureConfig, clock: Arc<dyn Clock>) -> Result<Self, ConfigError> {
        let client = default_client(config.timeout)?;
        Self::with_client(config, client, clock)
    }

    /// A connector on an existing `client` (to share one pool between connectors).
    pub fn with_client(
        config: AzureConfig,
        client: reqwest::Client,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let endpoint = config.parsed_endpoint()?;
        let deployment = config.deployment.trim();
        let mut chat_url = join(
            &endpoint,
            &["openai", "deployments", deployment, "chat", "completions"],
        );
        let mut models_url = join(&endpoint, &["openai", "models"]);
        for url in [&mut chat_url, &mut models_url] {
            url.query_pairs_mut()
                .append_pair("api-version", config.api_version.trim());
        }
        let key = config.api_key.expose();
        let auth = match config.auth {
            AzureAuth::ApiKey => (HeaderName::from_static("api-key"), sensitive(key)?),
            AzureAuth::Bearer => (AUTHORIZATION, sensitive(&format!("Bearer {key}"))?),
        };
        let transport = Transport::new(
            client,
            config.header_profile,
            config.timeout,
            config.stream_usage,
        );
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                transport,
                chat_url,
                models_url,
                auth,
                metadata: MetadataCache::new(clock, METADATA_TTL),
            }),
        })
    }

    /// The configuration this connector was built with.
    pub fn config(&self) -> &AzureConfig {
        &self.inner.config
    }

    /// The HTTP client (clones share its connection pool).
    pub fn client(&self) -> &reqwest::Client {
        self.inner.transport.client()
    }

    /// The chat-completions URL, with `api-version`.
    pub fn chat_url(&self) -> &Url {
        &self.inner.chat_url
    }

    fn metadata_now(&self) -> ProviderMetadata {
        let c = &self.inner.config;
        let mut model = model_info(c.model.as_deref().unwrap_or(&c.deployment), None);
        model.id = c.deployment.clone();
        ProviderMetadata {
            provider_id: c.provider_id.clone(),
            api_version: c.api_version.clone(),
            models: vec![model],
            rate_limits: self.inner.transport.observed_limits(),
        }
    }
}

/// The configured `api-key` (or `Authorization: Bearer`) header; a per-request credential
/// goes in the same header, formatted the same way.
impl Authorize for Inner {
    fn authorize(&self, builder: RequestBuilder) -> RequestBuilder {
        let (name, value) = &self.auth;
        builder.header(name.clone(), value.clone())
    }

    fn authorize_completion(
        &self,
        builder: RequestBuilder,
        credential: Option<&ApiKey>,
    ) -> Result<RequestBuilder, ConnectorError> {
        let Some(key) = credential else {
            return Ok(self.authorize(builder));
        };
        let value = match self.config.auth {
            AzureAuth::ApiKey => credential_value(key.expose())?,
            AzureAuth::Bearer => credential_value(&format!("Bearer {}", key.expose()))?,
        };
        Ok(builder.header(self.auth.0.clone(), value))
    }
}

impl fmt::Debug for AzureConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureConnector")
            .field("config", &self.inner.config)
            .field("chat_url", &self.inner.chat_url.as_str())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl LLMProvider for AzureConnector {
    fn provider_id(&self) -> &str {
        &self.inner.config.provider_id
    }

    /// Azure assumes 16 output tokens when a request sets no `max_tokens`.
    fn admission_rule(&self) -> super::admission::AdmissionRule {
        super::admission::AdmissionRule::AZURE
    }

    fn max_retries(&self) -> Option<u32> {
        Some(self.inner.config.max_retries)
    }

    async fn send_completion(
        &self,
        request: CompletionRequest,
    ) -> Result<CompletionResponse, ConnectorError> {
        let i = &*self.inner;
        i.transport.complete_at(&i.chat_url, i, &request).await
    }

    async fn open_stream(
        &self,
        request: CompletionRequest,
    ) -> Result<(ResponseMeta, ChunkStream), ConnectorError> {
        let i = &*self.inner;
        i.transport.open_stream_at(&i.chat_url, i, &request).await
    }

    /// The deployment (with catalog data for the configured `model`), the `api-version`,
    /// and the latest limits reported; built locally (a deployment's quota is not exposed
    /// by the data-plane API), cached for an hour like every connector's metadata.
    async fn get_metadata(&self) -> Result<ProviderMetadata, ConnectorError> {
        let m = self
            .inner
            .metadata
            .get_or_fetch(|| async { Ok(self.metadata_now()) })
            .await?;
        Ok(self.inner.transport.with_observed_limits(m))
    }

    fn validate_config(&self, config: &dyn ProviderConfig) -> Result<(), ConfigError> {
        check_config(self.provider_id(), config)
    }

    /// `GET {endpoint}/openai/models?api-version=…` within 5 s.
    async fn health_check(&self) -> Result<HealthStatus, ConnectorError> {
        let i = &*self.inner;
        Ok(i.transport
            .probe_at(&i.models_url, i, i.config.timeout)
            .await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_url_carries_api_version_and_escapes_the_name() {
        let mut c = AzureConfig::new("k", "https://r.openai.azure.com/", "my dep");
        c.api_version = "2024-02-15-preview".into();
        let conn = AzureConnector::new(c, Arc::new(crate::clock::ManualClock::new(0))).unwrap();
        assert_eq!(
            conn.chat_url().as_str(),
            "https://r.openai.azure.com/openai/deployments/my%20dep/chat/completions?api-version=2024-02-15-preview"
        );
    }
}
