//! Connector configuration: the hub specification's [`ProviderConfig`] contract and the two
//! configs that implement it, [`OpenAiConfig`] and [`AzureConfig`].
//!
//! Configs come from code or from the environment variables the official SDKs read, are
//! validated before a connector is built, and can be shown (`Debug`, [`to_config_map`]) without
//! ever revealing the API key. Keys are never judged by their prefix: OpenAI-compatible
//! servers (vLLM, Ollama, gateways) accept any string.
//!
//! [`to_config_map`]: ProviderConfig::to_config_map

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use reqwest::Url;

use crate::provider::headers::HeaderProfile;

mod azure;

pub use azure::AzureConfig;

/// The text that stands for a secret wherever a config is shown.
pub const REDACTED: &str = "***REDACTED***";

/// The default OpenAI endpoint (including the `/v1` prefix).
pub const OPENAI_DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// The Azure OpenAI `api-version` used when none is configured (a GA version that supports
/// `stream_options.include_usage`).
pub const AZURE_DEFAULT_API_VERSION: &str = "2024-10-21";

/// Default per-request timeout (seconds-scale: 60 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Default retries after the first try (the OpenAI SDK's default).
pub const DEFAULT_MAX_RETRIES: u32 = 2;

/// A configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// No API key was given (or it is blank).
    #[error("missing api key")]
    MissingApiKey,
    /// The key cannot be sent in an HTTP header (control characters, non-ASCII).
    #[error("invalid api key: {reason}")]
    InvalidApiKey {
        /// Why.
        reason: &'static str,
    },
    /// A required environment variable is unset or empty.
    #[error("environment variable {0} is not set")]
    MissingEnvironmentVariable(&'static str),
    /// An environment variable holds a value that does not parse.
    #[error("environment variable {name}={value:?} is invalid: {reason}")]
    InvalidEnvironmentVariable {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// Why it is invalid.
        reason: &'static str,
    },
    /// A URL does not parse or is not http(s).
    #[error("invalid url {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A parameter is out of range or empty.
    #[error("invalid {name}: {reason}")]
    InvalidParameter {
        /// The parameter's name.
        name: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// A config for another provider was handed to a connector.
    #[error("config for provider {found:?} given to provider {expected:?}")]
    ProviderMismatch {
        /// The connector's provider id.
        expected: String,
        /// The config's provider id.
        found: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build http client: {reason}")]
    HttpClient {
        /// The builder's error.
        reason: String,
    },
}

/// The hub specification's configuration contract. Object-safe (`&dyn ProviderConfig`) so a
/// connector can validate any config it is handed; the implementations are also `Clone`.
pub trait ProviderConfig: Send + Sync + fmt::Debug {
    /// The provider id this configuration is for (lowercase, e.g. `"openai"`).
    fn provider_id(&self) -> &str;

    /// Checks the key is present and sendable, URLs parse, timeout > 0. Never checks a key's
    /// prefix.
    fn validate(&self) -> Result<(), ConfigError>;

    /// Every setting as text, for logs and storage; the API key appears only as
    /// [`REDACTED`].
    fn to_config_map(&self) -> HashMap<String, String>;

    /// Reads the configuration from the process environment and validates it.
    fn from_env() -> Result<Self, ConfigError>
    where
        Self: Sized;
}

/// An API key. Its `Debug` is redacted and it has no `Display`, so it cannot leak into logs
/// by accident; [`expose`](Self::expose) is the one way to read it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps `key`.
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The key itself, for the request header.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Checks the key is non-blank and can be sent in an HTTP header (printable ASCII).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.0.trim().is_empty() {
            return Err(ConfigError::MissingApiKey);
        }
        if !self.0.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(ConfigError::InvalidApiKey {
                reason: "only printable ASCII can be sent in an http header",
            });
        }
        Ok(())
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({REDACTED})")
    }
}

impl From<&str> for ApiKey {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl From<String> for ApiKey {
    fn from(s: String) -> Self {
        Self(s)
    }
}

/// How the Azure connector sends its credential.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AzureAuth {
    /// `api-key: <key>` (a resource key).
    #[default]
    ApiKey,
    /// `Authorization: Bearer <token>` (a Microsoft Entra ID token).
    Bearer,
}

/// Configuration of [`OpenAIConnector`](super::openai::OpenAIConnector): the OpenAI API or any
/// OpenAI-compatible server, chosen by `base_url`.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenAiConfig {
    /// Provider id reported by the connector (default `"openai"`; e.g. `"vllm"` for a
    /// compatible server).
    pub provider_id: String,
    /// Sent as `Authorization: Bearer`.
    pub api_key: ApiKey,
    /// API root including the version prefix, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// Sent as `OpenAI-Organization` when set.
    pub organization: Option<String>,
    /// Sent as `OpenAI-Project` when set.
    pub project: Option<String>,
    /// Whole-request timeout for non-streaming calls; for streams, the limit for the
    /// response headers and for each gap between body reads.
    pub timeout: Duration,
    /// Retries after the first try, at most, for requests to this provider: a cap the
    /// request lifecycle applies on top of the limiter key's backoff policy (the connector
    /// itself sends each request once, so the limiter sees every attempt).
    pub max_retries: u32,
    /// How response headers are read into `ResponseMeta`.
    pub header_profile: HeaderProfile,
    /// Whether streams request `stream_options.include_usage` (exact streamed usage). Turn
    /// off only for servers that reject the field.
    pub stream_usage: bool,
}

impl OpenAiConfig {
    /// The defaults (official endpoint, 60 s timeout, 2 retries) with `api_key`.
    pub fn new(api_key: impl Into<ApiKey>) -> Self {
        Self {
            provider_id: "openai".to_owned(),
            api_key: api_key.into(),
            base_url: OPENAI_DEFAULT_BASE_URL.to_owned(),
            organization: None,
            project: None,
            timeout: DEFAULT_TIMEOUT,
            max_retries: DEFAULT_MAX_RETRIES,
            header_profile: HeaderProfile::Openai,
            stream_usage: true,
        }
    }

    /// The same config pointed at `base_url` (including `/v1`).
    pub fn with_base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = base_url.into();
        self
    }

    /// Reads the configuration through `lookup` (a variable name to its value) instead of
    /// the process environment: `OPENAI_API_KEY` (required), `OPENAI_BASE_URL`,
    /// `OPENAI_ORGANIZATION` (or `OPENAI_ORG_ID`), `OPENAI_PROJECT_ID`,
    /// `OPENAI_TIMEOUT_SECS` (seconds, may be fractional), `OPENAI_MAX_RETRIES`. Empty values
    /// count as unset. The result is validated.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let api_key = get("OPENAI_API_KEY")
            .ok_or(ConfigError::MissingEnvironmentVariable("OPENAI_API_KEY"))?;
        let mut c = Self::new(api_key);
        if let Some(url) = get("OPENAI_BASE_URL") {
            c.base_url = url;
        }
        c.organization = get("OPENAI_ORGANIZATION").or_else(|| get("OPENAI_ORG_ID"));
        c.project = get("OPENAI_PROJECT_ID");
        if let Some(t) = env_timeout(&get, "OPENAI_TIMEOUT_SECS")? {
            c.timeout = t;
        }
        if let Some(r) = env_retries(&get, "OPENAI_MAX_RETRIES")? {
            c.max_retries = r;
        }
        c.validate()?;
        Ok(c)
    }

    /// The base URL, parsed (validated by [`validate`](ProviderConfig::validate)).
    pub(crate) fn parsed_base_url(&self) -> Result<Url, ConfigError> {
        parse_http_url(&self.base_url)
    }
}

impl ProviderConfig for OpenAiConfig {
    fn provider_id(&self) -> &str {
        &self.provider_id
    }

    fn validate(&self) -> Result<(), ConfigError> {
        validate_provider_id(&self.provider_id)?;
        self.api_key.validate()?;
        self.parsed_base_url()?;
        validate_timeout(self.timeout)?;
        for (name, value) in [
            ("organization", &self.organization),
            ("project", &self.project),
        ] {
            if let Some(v) = value {
                validate_header_text(name, v)?;
            }
        }
        Ok(())
    }

    fn to_config_map(&self) -> HashMap<String, String> {
        let mut map = common_map(
            &self.provider_id,
            self.timeout,
            self.max_retries,
            self.header_profile,
        );
        map.insert("base_url".into(), self.base_url.clone());
        map.insert("stream_usage".into(), self.stream_usage.to_string());
        if let Some(org) = &self.organization {
            map.insert("organization".into(), org.clone());
        }
        if let Some(project) = &self.project {
            map.insert("project".into(), project.clone());
        }
        map
    }

    fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }
}

pub(crate) fn common_map(
    provider_id: &str,
    timeout: Duration,
    max_retries: u32,
    profile: HeaderProfile,
) -> HashMap<String, String> {
    let profile = match profile {
        HeaderProfile::Openai => "openai",
        HeaderProfile::Azure => "azure",
        HeaderProfile::None => "none",
    };
    HashMap::from([
        ("provider_id".into(), provider_id.to_owned()),
        ("api_key".into(), REDACTED.to_owned()),
        ("timeout_secs".into(), timeout.as_secs_f64().to_string()),
        ("max_retries".into(), max_retries.to_string()),
        ("header_profile".into(), profile.to_owned()),
    ])
}

pub(crate) fn validate_provider_id(id: &str) -> Result<(), ConfigError> {
    if id.is_empty()
        || id
            .chars()
            .any(|c| c.is_ascii_uppercase() || c.is_whitespace())
    {
        return Err(ConfigError::InvalidParameter {
            name: "provider_id",
            reason: format!("{id:?} must be non-empty lowercase without spaces"),
        });
    }
    Ok(())
}

pub(crate) fn validate_timeout(timeout: Duration) -> Result<(), ConfigError> {
    if timeout.is_zero() {
        return Err(ConfigError::InvalidParameter {
            name: "timeout",
            reason: "must be greater than 0".into(),
        });
    }
    Ok(())
}

pub(crate) fn validate_header_text(name: &'static str, value: &str) -> Result<(), ConfigError> {
    if value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        Ok(())
    } else {
        Err(ConfigError::InvalidParameter {
            name,
            reason: "only printable ASCII can be sent in an http header".into(),
        })
    }
}

pub(crate) fn parse_http_url(raw: &str) -> Result<Url, ConfigError> {
    let invalid = |reason: String| ConfigError::InvalidUrl {
        url: raw.to_owned(),
        reason,
    };
    let url = Url::parse(raw.trim()).map_err(|e| invalid(e.to_string()))?;
    match url.scheme() {
        "http" | "https" if url.has_host() => Ok(url),
        "http" | "https" => Err(invalid("no host".into())),
        other => Err(invalid(format!("scheme {other:?} is not http or https"))),
    }
}

pub(crate) fn env_timeout(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<Option<Duration>, ConfigError> {
    let Some(raw) = get(name) else {
        return Ok(None);
    };
    let invalid = |reason| ConfigError::InvalidEnvironmentVariable {
        name,
        value: raw.clone(),
        reason,
    };
    let secs: f64 = raw
        .trim()
        .parse()
        .map_err(|_| invalid("not a number of seconds"))?;
    if !(secs.is_finite() && secs > 0.0 && secs < 1e9) {
        return Err(invalid("must be a positive number of seconds"));
    }
    Ok(Some(Duration::from_secs_f64(secs)))
}

pub(crate) fn env_retries(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<Option<u32>, ConfigError> {
    let Some(raw) = get(name) else {
        return Ok(None);
    };
    raw.trim()
        .parse()
        .map(Some)
        .map_err(|_| ConfigError::InvalidEnvironmentVariable {
            name,
            value: raw.clone(),
            reason: "not a non-negative integer",
        })
}

#[cfg(test)]
mod tests;
