//! [`AzureConfig`]: one Azure OpenAI deployment's connector settings, split from the
//! OpenAI config because the endpoint, deployment, `api-version` and auth scheme are its own.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::Url;

use super::{
    common_map, env_retries, env_timeout, parse_http_url, validate_provider_id, validate_timeout,
    ApiKey, AzureAuth, ConfigError, ProviderConfig, AZURE_DEFAULT_API_VERSION, DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
};
use crate::provider::headers::HeaderProfile;

/// Configuration of [`AzureConnector`](crate::provider::AzureConnector): one deployment of an
/// Azure OpenAI resource.
#[derive(Debug, Clone, PartialEq)]
pub struct AzureConfig {
    /// Provider id reported by the connector (default `"azure"`).
    pub provider_id: String,
    /// The resource key (or Entra token, with [`AzureAuth::Bearer`]).
    pub api_key: ApiKey,
    /// How `api_key` is sent.
    pub auth: AzureAuth,
    /// Resource endpoint, e.g. `https://my-resource.openai.azure.com` (no `/openai`).
    pub endpoint: String,
    /// Deployment name; requests go to `/openai/deployments/{deployment}/…`.
    pub deployment: String,
    /// The `api-version` query parameter.
    pub api_version: String,
    /// The model behind the deployment (e.g. `gpt-4o`), used only to look up context window
    /// and prices for metadata.
    pub model: Option<String>,
    /// As [`OpenAiConfig::timeout`](super::OpenAiConfig::timeout).
    pub timeout: Duration,
    /// As [`OpenAiConfig::max_retries`](super::OpenAiConfig::max_retries).
    pub max_retries: u32,
    /// How response headers are read into `ResponseMeta`.
    pub header_profile: HeaderProfile,
    /// As [`OpenAiConfig::stream_usage`](super::OpenAiConfig::stream_usage).
    pub stream_usage: bool,
}

impl AzureConfig {
    /// The defaults (`api-key` auth, api-version [`AZURE_DEFAULT_API_VERSION`], 60 s, 2
    /// retries) for `deployment` of the resource at `endpoint`.
    pub fn new(
        api_key: impl Into<ApiKey>,
        endpoint: impl Into<String>,
        deployment: impl Into<String>,
    ) -> Self {
        Self {
            provider_id: "azure".to_owned(),
            api_key: api_key.into(),
            auth: AzureAuth::ApiKey,
            endpoint: endpoint.into(),
            deployment: deployment.into(),
            api_version: AZURE_DEFAULT_API_VERSION.to_owned(),
            model: None,
            timeout: DEFAULT_TIMEOUT,
            max_retries: DEFAULT_MAX_RETRIES,
            header_profile: HeaderProfile::Azure,
            stream_usage: true,
        }
    }

    /// Reads the configuration through `lookup`: `AZURE_OPENAI_API_KEY` (or, for Entra auth,
    /// `AZURE_OPENAI_AD_TOKEN`), `AZURE_OPENAI_ENDPOINT` and `AZURE_OPENAI_DEPLOYMENT`
    /// (required), `OPENAI_API_VERSION`, `OPENAI_TIMEOUT_SECS`, `OPENAI_MAX_RETRIES`. Empty
    /// values count as unset. The result is validated.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let (api_key, auth) = match (get("AZURE_OPENAI_API_KEY"), get("AZURE_OPENAI_AD_TOKEN")) {
            (Some(key), _) => (key, AzureAuth::ApiKey),
            (None, Some(token)) => (token, AzureAuth::Bearer),
            (None, None) => {
                return Err(ConfigError::MissingEnvironmentVariable(
                    "AZURE_OPENAI_API_KEY",
                ))
            }
        };
        let endpoint = get("AZURE_OPENAI_ENDPOINT").ok_or(
            ConfigError::MissingEnvironmentVariable("AZURE_OPENAI_ENDPOINT"),
        )?;
        let deployment = get("AZURE_OPENAI_DEPLOYMENT").ok_or(
            ConfigError::MissingEnvironmentVariable("AZURE_OPENAI_DEPLOYMENT"),
        )?;
        let mut c = Self::new(api_key, endpoint, deployment);
        c.auth = auth;
        if let Some(v) = get("OPENAI_API_VERSION") {
            c.api_version = v;
        }
        if let Some(t) = env_timeout(&get, "OPENAI_TIMEOUT_SECS")? {
            c.timeout = t;
        }
        if let Some(r) = env_retries(&get, "OPENAI_MAX_RETRIES")? {
            c.max_retries = r;
        }
        c.validate()?;
        Ok(c)
    }

    /// The endpoint, parsed (validated by [`validate`](ProviderConfig::validate)).
    pub(crate) fn parsed_endpoint(&self) -> Result<Url, ConfigError> {
        parse_http_url(&self.endpoint)
    }
}

impl ProviderConfig for AzureConfig {
    fn provider_id(&self) -> &str {
        &self.provider_id
    }

    fn validate(&self) -> Result<(), ConfigError> {
        validate_provider_id(&self.provider_id)?;
        self.api_key.validate()?;
        self.parsed_endpoint()?;
        if self.deployment.trim().is_empty() {
            return Err(ConfigError::InvalidParameter {
                name: "deployment",
                reason: "must not be empty".into(),
            });
        }
        if self.api_version.trim().is_empty() {
            return Err(ConfigError::InvalidParameter {
                name: "api_version",
                reason: "must not be empty".into(),
            });
        }
        validate_timeout(self.timeout)
    }

    fn to_config_map(&self) -> HashMap<String, String> {
        let mut map = common_map(
            &self.provider_id,
            self.timeout,
            self.max_retries,
            self.header_profile,
        );
        let auth = match self.auth {
            AzureAuth::ApiKey => "api_key",
            AzureAuth::Bearer => "bearer",
        };
        map.insert("auth".into(), auth.into());
        map.insert("endpoint".into(), self.endpoint.clone());
        map.insert("deployment".into(), self.deployment.clone());
        map.insert("api_version".into(), self.api_version.clone());
        map.insert("stream_usage".into(), self.stream_usage.to_string());
        if let Some(model) = &self.model {
            map.insert("model".into(), model.clone());
        }
        map
    }

    fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }
}
