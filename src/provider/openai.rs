//! [`OpenAIConnector`]: the OpenAI API, or any OpenAI-compatible server (vLLM, Ollama, a
//! gateway, the mock providers) chosen by `base_url`.
//!
//! Sends `Authorization: Bearer`, `OpenAI-Organization` and `OpenAI-Project`; requests
//! `stream_options.include_usage` on streams so streamed usage is exact. All wire work is in
//! the shared transport; this file only knows OpenAI's URLs and headers.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use http::header::{HeaderName, HeaderValue, AUTHORIZATION};
use reqwest::{RequestBuilder, Url};

use super::config::{ApiKey, ConfigError, OpenAiConfig, ProviderConfig};
use super::error::ConnectorError;
use super::http::{default_client, Authorize, Transport};
use super::metadata::{model_info, MetadataCache, METADATA_TTL};
use super::stream::ChunkStream;
use super::types::{CompletionRequest, CompletionResponse, HealthStatus, ProviderMetadata};
use super::wire::ModelList;
use super::{check_config, LLMProvider};
use crate::clock::Clock;
use crate::limiter::ResponseMeta;

/// A connector to the OpenAI chat-completions API. Cheap to clone: clones share the HTTP
/// client (connection pool), configuration and metadata cache.
#[derive(Clone)]
pub struct OpenAIConnector {
    inner: Arc<Inner>,
}

struct Inner {
    config: OpenAiConfig,
    transport: Transport,
    chat_url: Url,
    models_url: Url,
    /// `(name, value)` headers sent with every request; the key's value is marked sensitive.
    headers: Vec<(HeaderName, HeaderValue)>,
    metadata: MetadataCache,
}

impl OpenAIConnector {
    /// A connector with its own HTTP client. Validates `config`; `clock` times the metadata
    /// cache.
    pub fn new(config: OpenAiConfig, clock: Arc<dyn Clock>) -> Result<Self, ConfigError> {
        let client = default_client(config.timeout)?;
        Self::with_client(config, client, clock)
    }

    /// A connector on an existing `client` (to share one pool between connectors).
    pub fn with_client(
        config: OpenAiConfig,
        client: reqwest::Client,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let base = config.parsed_base_url()?;
        let chat_url = join(&base, &["chat", "completions"]);
        let models_url = join(&base, &["models"]);
        let mut headers = vec![(
            AUTHORIZATION,
            sensitive(&format!("Bearer {}", config.api_key.expose()))?,
        )];
        for (name, value) in [
            ("openai-organization", &config.organization),
            ("openai-project", &config.project),
        ] {
            if let Some(v) = value {
                let v = HeaderValue::from_str(v).map_err(|_| ConfigError::InvalidParameter {
                    name: "organization/project",
                    reason: "not a valid header value".into(),
                })?;
                headers.push((HeaderName::from_static(name), v));
            }
        }
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
                headers,
                metadata: MetadataCache::new(clock, METADATA_TTL),
            }),
        })
    }

    /// The configuration this connector was built with.
    pub fn config(&self) -> &OpenAiConfig {
        &self.inner.config
    }

    /// The HTTP client (clones share its connection pool).
    pub fn client(&self) -> &reqwest::Client {
        self.inner.transport.client()
    }

    async fn fetch_metadata(&self) -> Result<ProviderMetadata, ConnectorError> {
        let t = &self.inner.transport;
        let get = t.get_at(&self.inner.models_url, &*self.inner);
        let (meta, body) = t.send(get, self.inner.config.timeout).await?;
        let list: ModelList = serde_json::from_slice(&body).map_err(|e| ConnectorError::Parse {
            message: format!("model list: {e}"),
            meta: Box::new(meta),
        })?;
        Ok(ProviderMetadata {
            provider_id: self.inner.config.provider_id.clone(),
            api_version: api_version_of(&self.inner.config.base_url),
            models: list
                .data
                .into_iter()
                .map(|m| model_info(&m.id, m.owned_by))
                .collect(),
            rate_limits: t.observed_limits(),
        })
    }
}

/// `Authorization: Bearer`, `OpenAI-Organization`, `OpenAI-Project`; a per-request
/// credential replaces the configured key's `Authorization` header.
impl Authorize for Inner {
    fn authorize(&self, builder: RequestBuilder) -> RequestBuilder {
        self.headers
            .iter()
            .fold(builder, |b, (n, v)| b.header(n.clone(), v.clone()))
    }

    fn authorize_completion(
        &self,
        builder: RequestBuilder,
        credential: Option<&ApiKey>,
    ) -> Result<RequestBuilder, ConnectorError> {
        let Some(key) = credential else {
            return Ok(self.authorize(builder));
        };
        let auth = credential_value(&format!("Bearer {}", key.expose()))?;
        Ok(self
            .headers
            .iter()
            .filter(|(n, _)| *n != AUTHORIZATION)
            .fold(builder.header(AUTHORIZATION, auth), |b, (n, v)| {
                b.header(n.clone(), v.clone())
            }))
    }
}

impl fmt::Debug for OpenAIConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAIConnector")
            .field("config", &self.inner.config)
            .field("chat_url", &self.inner.chat_url.as_str())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl LLMProvider for OpenAIConnector {
    fn provider_id(&self) -> &str {
        &self.inner.config.provider_id
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

    /// `GET {base_url}/models`, enriched from the built-in catalog, cached for an hour; the
    /// rate limits are the latest the provider reported, refreshed on every call.
    async fn get_metadata(&self) -> Result<ProviderMetadata, ConnectorError> {
        let m = self
            .inner
            .metadata
            .get_or_fetch(|| self.fetch_metadata())
            .await?;
        Ok(self.inner.transport.with_observed_limits(m))
    }

    fn validate_config(&self, config: &dyn ProviderConfig) -> Result<(), ConfigError> {
        check_config(self.provider_id(), config)
    }

    /// `GET {base_url}/models` within 5 s.
    async fn health_check(&self) -> Result<HealthStatus, ConnectorError> {
        let i = &*self.inner;
        Ok(i.transport
            .probe_at(&i.models_url, i, i.config.timeout)
            .await)
    }
}

/// `base` with `segments` appended to its path.
pub(crate) fn join(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

/// A header value holding a secret: validated, and hidden from `Debug`.
pub(crate) fn sensitive(value: &str) -> Result<HeaderValue, ConfigError> {
    let mut v = HeaderValue::from_str(value).map_err(|_| ConfigError::InvalidApiKey {
        reason: "only printable ASCII can be sent in an http header",
    })?;
    v.set_sensitive(true);
    Ok(v)
}

/// A per-request credential's header value; a value that cannot be sent is the caller's
/// error ([`ConnectorError::InvalidRequest`] naming `credential`, no response meta).
pub(crate) fn credential_value(value: &str) -> Result<HeaderValue, ConnectorError> {
    sensitive(value).map_err(|e| ConnectorError::InvalidRequest {
        status: 400,
        message: format!("the request's credential is unusable: {e}"),
        param: Some("credential".into()),
        code: None,
        meta: Box::default(),
    })
}

/// The version segment of a base URL (`…/v1` → `"v1"`), `"v1"` when there is none.
fn api_version_of(base_url: &str) -> String {
    base_url
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|s| s.len() > 1 && s.starts_with('v') && s[1..].chars().all(|c| c.is_ascii_digit()))
        .unwrap_or("v1")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_joined_under_the_base_path() {
        let base = Url::parse("http://127.0.0.1:8080/v1").unwrap();
        assert_eq!(
            join(&base, &["chat", "completions"]).as_str(),
            "http://127.0.0.1:8080/v1/chat/completions"
        );
        let base = Url::parse("http://gw.local/openai/v1/").unwrap();
        assert_eq!(
            join(&base, &["models"]).as_str(),
            "http://gw.local/openai/v1/models"
        );
    }

    #[test]
    fn api_version_comes_from_the_base_path() {
        assert_eq!(api_version_of("https://api.openai.com/v1"), "v1");
        assert_eq!(api_version_of("http://x/v2/"), "v2");
        assert_eq!(api_version_of("http://localhost:11434"), "v1");
    }

    #[test]
    fn debug_hides_the_key() {
        let c = OpenAIConnector::new(
            OpenAiConfig::new("sk-secret-123"),
            Arc::new(crate::clock::ManualClock::new(0)),
        )
        .unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("sk-secret-123"), "{shown}");
    }
}
