//! [`AnthropicConfig`]: the Anthropic Messages API connector's settings, from code or from
//! the variables the official SDK reads (`ANTHROPIC_API_KEY`, `ANTHROPIC_BASE_URL`).

use std::collections::HashMap;
use std::time::Duration;

use reqwest::Url;

use crate::provider::config::{
    common_map, env_retries, env_timeout, parse_http_url, validate_header_text,
    validate_provider_id, validate_timeout, ApiKey, ConfigError, ProviderConfig,
    DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT,
};
use crate::provider::headers::HeaderProfile;

/// The Anthropic API root (without `/v1`, as the official SDKs take it).
pub const ANTHROPIC_DEFAULT_BASE_URL: &str = "https://api.anthropic.com";

/// The `anthropic-version` header sent by default (the documented, current version).
pub const ANTHROPIC_DEFAULT_VERSION: &str = "2023-06-01";

/// Configuration of [`AnthropicConnector`](super::AnthropicConnector).
#[derive(Debug, Clone, PartialEq)]
pub struct AnthropicConfig {
    /// Provider id reported by the connector (default `"anthropic"`).
    pub provider_id: String,
    /// Sent as `x-api-key` (never logged: [`ApiKey`] redacts itself).
    pub api_key: ApiKey,
    /// API root without the version path, e.g. `https://api.anthropic.com`; requests go to
    /// `{base_url}/v1/messages` and `{base_url}/v1/models`.
    pub base_url: String,
    /// The `anthropic-version` header.
    pub version: String,
    /// Sent as `anthropic-beta` when set (comma-separated feature names).
    pub beta: Option<String>,
    /// Whole-request timeout for non-streaming calls; for streams, the limit for the
    /// response headers and for each gap between body reads.
    pub timeout: Duration,
    /// Retries after the first try, at most (applied by the request lifecycle; the
    /// connector sends each request once).
    pub max_retries: u32,
}

impl AnthropicConfig {
    /// The defaults (official endpoint, version `2023-06-01`, 60 s timeout, 2 retries)
    /// with `api_key`.
    pub fn new(api_key: impl Into<ApiKey>) -> Self {
        Self {
            provider_id: "anthropic".to_owned(),
            api_key: api_key.into(),
            base_url: ANTHROPIC_DEFAULT_BASE_URL.to_owned(),
            version: ANTHROPIC_DEFAULT_VERSION.to_owned(),
            beta: None,
            timeout: DEFAULT_TIMEOUT,
            max_retries: DEFAULT_MAX_RETRIES,
        }
    }

    /// The same config pointed at `base_url` (without `/v1`).
    pub fn with_base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = base_url.into();
        self
    }

    /// Reads the configuration through `lookup` instead of the process environment:
    /// `ANTHROPIC_API_KEY` (required), `ANTHROPIC_BASE_URL`, `ANTHROPIC_VERSION`,
    /// `ANTHROPIC_BETA`, `ANTHROPIC_TIMEOUT_SECS` (seconds, may be fractional),
    /// `ANTHROPIC_MAX_RETRIES`. Empty values count as unset. The result is validated.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let api_key = get("ANTHROPIC_API_KEY")
            .ok_or(ConfigError::MissingEnvironmentVariable("ANTHROPIC_API_KEY"))?;
        let mut c = Self::new(api_key);
        if let Some(url) = get("ANTHROPIC_BASE_URL") {
            c.base_url = url;
        }
        if let Some(v) = get("ANTHROPIC_VERSION") {
            c.version = v;
        }
        c.beta = get("ANTHROPIC_BETA");
        if let Some(t) = env_timeout(&get, "ANTHROPIC_TIMEOUT_SECS")? {
            c.timeout = t;
        }
        if let Some(r) = env_retries(&get, "ANTHROPIC_MAX_RETRIES")? {
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

impl ProviderConfig for AnthropicConfig {
    fn provider_id(&self) -> &str {
        &self.provider_id
    }

    fn validate(&self) -> Result<(), ConfigError> {
        validate_provider_id(&self.provider_id)?;
        self.api_key.validate()?;
        self.parsed_base_url()?;
        validate_timeout(self.timeout)?;
        if self.version.trim().is_empty() {
            return Err(ConfigError::InvalidParameter {
                name: "version",
                reason: "must not be empty".into(),
            });
        }
        validate_header_text("version", &self.version)?;
        if let Some(b) = &self.beta {
            validate_header_text("beta", b)?;
        }
        Ok(())
    }

    fn to_config_map(&self) -> HashMap<String, String> {
        let mut map = common_map(
            &self.provider_id,
            self.timeout,
            self.max_retries,
            HeaderProfile::None,
        );
        map.insert("header_profile".into(), "anthropic".into());
        map.insert("base_url".into(), self.base_url.clone());
        map.insert("version".into(), self.version.clone());
        if let Some(b) = &self.beta {
            map.insert("beta".into(), b.clone());
        }
        map
    }

    fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::REDACTED;

    #[test]
    fn lookup_reads_the_sdk_variables_and_validates() {
        let vars = HashMap::from([
            ("ANTHROPIC_API_KEY", "sk-ant-secret"),
            ("ANTHROPIC_BASE_URL", "http://127.0.0.1:9"),
            ("ANTHROPIC_TIMEOUT_SECS", "2.5"),
            ("ANTHROPIC_MAX_RETRIES", "4"),
        ]);
        let c = AnthropicConfig::from_lookup(|n| vars.get(n).map(|v| v.to_string())).unwrap();
        assert_eq!(c.base_url, "http://127.0.0.1:9");
        assert_eq!(c.timeout, Duration::from_millis(2500));
        assert_eq!(c.max_retries, 4);
        assert_eq!(c.version, ANTHROPIC_DEFAULT_VERSION);
        let map = c.to_config_map();
        assert_eq!(map["api_key"], REDACTED);
        assert!(!format!("{c:?}").contains("sk-ant-secret"));
        assert_eq!(
            AnthropicConfig::from_lookup(|_| None),
            Err(ConfigError::MissingEnvironmentVariable("ANTHROPIC_API_KEY"))
        );
    }

    #[test]
    fn an_empty_version_or_a_bad_url_is_refused() {
        let mut c = AnthropicConfig::new("k");
        c.version = " ".into();
        assert!(matches!(
            c.validate(),
            Err(ConfigError::InvalidParameter {
                name: "version",
                ..
            })
        ));
        let c = AnthropicConfig::new("k").with_base_url("ftp://x");
        assert!(matches!(c.validate(), Err(ConfigError::InvalidUrl { .. })));
    }
}
