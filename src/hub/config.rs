//! The hub's TOML configuration: the schema ([`HubConfig`]) and its loading, with errors
//! that name the line, column and field (the same machinery as scenario files).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::harness::scenario::error::{parse_located, Problem};
use crate::harness::scenario::ScenarioError;
use crate::limiter::LimiterConfig;
use crate::units::de_duration;

/// A hub configuration that cannot be read or used. `Display` is
/// `origin:line:column: field: message` for every error about the file's content.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The file could not be read.
    #[error("{origin}: cannot read the hub config: {source}")]
    Read {
        /// The path as given.
        origin: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The text is not valid TOML, does not match the schema, or fails a check (an unknown
    /// plugin, a plugin's config error, a limit out of range).
    #[error("{origin}:{line}:{column}: {field}: {message}")]
    Invalid {
        /// The file name (or other origin) given to the loader.
        origin: String,
        /// 1-based line of the offending key or value.
        line: usize,
        /// 1-based column (in characters).
        column: usize,
        /// The field's path, e.g. `provider[1].kind` (`[n]` is 0-based).
        field: String,
        /// What is wrong.
        message: String,
    },
}

impl HubError {
    /// The 1-based line of the problem (`None` for read errors).
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Invalid { line, .. } => Some(*line),
            Self::Read { .. } => None,
        }
    }

    /// The field path of the problem (`None` for read errors).
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Invalid { field, .. } => Some(field),
            Self::Read { .. } => None,
        }
    }
}

impl From<ScenarioError> for HubError {
    fn from(e: ScenarioError) -> Self {
        match e {
            ScenarioError::Read { origin, source } => Self::Read { origin, source },
            ScenarioError::Invalid {
                origin,
                line,
                column,
                field,
                message,
            } => Self::Invalid {
                origin,
                line,
                column,
                field,
                message,
            },
        }
    }
}

/// The whole hub configuration file.
///
/// ```toml
/// middleware = ["logging", "rate_limit", "retry", "cache", "fallback"]
/// selector = "priority"
///
/// [[provider]]
/// id = "primary"
/// kind = "openai"                 # a registered ConnectorPlugin
/// priority = 0
/// config = { api_key = "sk-…", base_url = "https://api.openai.com/v1" }
///
/// [limits]                        # a crate::limiter::LimiterConfig
/// backend = "memory"              # or "redis": one quota for every hub process, with
/// # [limits.redis] url = "redis://127.0.0.1:6379/0" (crate::limiter::redis::RedisSettings)
/// [[limits.key]]
/// provider = "primary"
/// limit = { limits = { rpm = 500, tpm = 30000 } }
///
/// [cache]
/// bytes = 16777216
/// ttl = "10m"
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubConfig {
    /// The providers, built by their plugins (`[[provider]]`).
    #[serde(rename = "provider")]
    pub providers: Vec<ProviderEntry>,
    /// Client-side limits per key (provider id, model[, deployment]), kept in this
    /// process or, with `backend = "redis"` and a `[limits.redis]` table, in Redis (shared
    /// by every hub on that server; connected on first use).
    #[serde(default)]
    pub limits: LimiterConfig,
    /// The middlewares, outermost first (`on_request` order). Default: `logging`,
    /// `rate_limit`, `retry`, `fallback`. `rate_limit` and `retry` are one governed step
    /// (the request lifecycle), placed where the first of them is listed; listing one
    /// without the other limits without retrying, or retries without limiting. Metrics
    /// are always collected: first, unless `metrics` is listed to place them.
    #[serde(default = "default_middleware")]
    pub middleware: Vec<MiddlewareKind>,
    /// How a request's provider (and its fallback order) is chosen.
    #[serde(default)]
    pub selector: SelectorKind,
    /// The response cache (used when `cache` is in `middleware`).
    #[serde(default)]
    pub cache: CacheSettings,
    /// Static credentials for the `auth` middleware.
    #[serde(default)]
    pub auth: AuthSettings,
}

fn default_middleware() -> Vec<MiddlewareKind> {
    use MiddlewareKind::*;
    vec![Logging, RateLimit, Retry, Fallback]
}

/// One provider: which plugin builds it, from what, and how the selector treats it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderEntry {
    /// The id requests, limits and fallbacks name (passed to the plugin as `provider_id`).
    pub id: String,
    /// The plugin that builds it (`openai`, `azure`, or any registered plugin).
    pub kind: String,
    /// Lower is preferred by the `priority` selector.
    #[serde(default)]
    pub priority: u32,
    /// Share of traffic for the `weighted` selector; 0 never selects it.
    #[serde(default = "one")]
    pub weight: u32,
    /// The deployment the limiter keys this provider's requests by; defaults to the
    /// config's `deployment` entry when there is one.
    #[serde(default)]
    pub deployment: Option<String>,
    /// The plugin's settings (strings, numbers and booleans; passed as text).
    #[serde(default)]
    pub config: BTreeMap<String, ConfigValue>,
}

fn one() -> u32 {
    1
}

/// A scalar plugin setting.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum ConfigValue {
    /// A string.
    Text(String),
    /// An integer.
    Integer(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
}

impl fmt::Display for ConfigValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Text(s) => f.write_str(s),
            Self::Integer(i) => write!(f, "{i}"),
            Self::Float(x) => write!(f, "{x}"),
            Self::Bool(b) => write!(f, "{b}"),
        }
    }
}

impl ProviderEntry {
    /// The plugin config map: `config` as text, plus `provider_id = id`.
    pub fn config_map(&self) -> HashMap<String, String> {
        let mut map: HashMap<String, String> = self
            .config
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect();
        map.insert("provider_id".into(), self.id.clone());
        map
    }
}

/// A built-in middleware.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MiddlewareKind {
    /// Per-provider credentials, refresh and one retry on 401.
    Auth,
    /// `tracing` events per attempt.
    Logging,
    /// The hub's metrics collector (always on; list it to choose its place).
    Metrics,
    /// Acquire before, record after, on the hub's limiter (the governed step).
    RateLimit,
    /// Retry retryable errors after the limiter's backoff delay (the governed step).
    Retry,
    /// Answers identical deterministic requests from the cache.
    Cache,
    /// Falls back along the selector's ranking.
    Fallback,
}

impl MiddlewareKind {
    /// The name written in the config file (`"rate_limit"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auth => "auth",
            Self::Logging => "logging",
            Self::Metrics => "metrics",
            Self::RateLimit => "rate_limit",
            Self::Retry => "retry",
            Self::Cache => "cache",
            Self::Fallback => "fallback",
        }
    }
}

/// Which [`ProviderSelector`](crate::selector::ProviderSelector) ranks providers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SelectorKind {
    /// Lowest `priority` first.
    #[default]
    Priority,
    /// Each call starts one further along.
    RoundRobin,
    /// Smooth weighted round robin by `weight`.
    Weighted,
    /// Most remaining limiter capacity for the request's estimate first.
    MostHeadroom,
}

/// The in-memory response cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSettings {
    /// Byte budget (keys plus values), least recently used evicted first.
    #[serde(default = "default_cache_bytes")]
    pub bytes: usize,
    /// How long an entry lives (`"10m"`).
    #[serde(default = "default_cache_ttl", deserialize_with = "de_duration")]
    pub ttl: Duration,
}

fn default_cache_bytes() -> usize {
    16 * 1024 * 1024
}

fn default_cache_ttl() -> Duration {
    Duration::from_secs(600)
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            bytes: default_cache_bytes(),
            ttl: default_cache_ttl(),
        }
    }
}

/// Credentials for the `auth` middleware.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// Provider id → key sent instead of the provider config's key.
    #[serde(default)]
    pub keys: BTreeMap<String, String>,
}

/// Parses and checks `text`; `build` turns the config into a value, its failures being
/// problems located in `text`.
pub(super) fn load<T>(
    text: &str,
    origin: &str,
    build: impl FnOnce(HubConfig) -> Result<T, Problem>,
) -> Result<T, HubError> {
    parse_located(text, origin, |config: HubConfig, loc| {
        check(&config).map_err(|p| loc.error(p))?;
        build(config).map_err(|p| loc.error(p))
    })
    .map_err(HubError::from)
}

/// What the types cannot say: unique ids and middlewares, valid limits, known providers.
fn check(c: &HubConfig) -> Result<(), Problem> {
    if c.providers.is_empty() {
        return Err(Problem::new(
            "provider",
            "at least one [[provider]] is needed",
        ));
    }
    for (i, p) in c.providers.iter().enumerate() {
        if p.id.trim().is_empty() {
            return Err(Problem::new(
                format!("provider[{i}].id"),
                "must not be empty",
            ));
        }
        if c.providers[..i].iter().any(|q| q.id == p.id) {
            return Err(Problem::new(
                format!("provider[{i}].id"),
                format!("provider id `{}` is used twice", p.id),
            ));
        }
    }
    for (i, m) in c.middleware.iter().enumerate() {
        if c.middleware[..i].contains(m) {
            return Err(Problem::new(
                format!("middleware[{i}]"),
                format!("middleware `{}` is listed twice", m.as_str()),
            ));
        }
    }
    if c.cache.bytes == 0 {
        return Err(Problem::new("cache.bytes", "must be at least 1"));
    }
    super::limits::check(&c.limits)?;
    for id in c.auth.keys.keys() {
        if !c.providers.iter().any(|p| &p.id == id) {
            return Err(Problem::new(
                format!("auth.keys.{id}"),
                format!("no provider has id `{id}`"),
            ));
        }
    }
    Ok(())
}
