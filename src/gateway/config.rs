//! The gateway's configuration file: the front (`[gateway]`: listen address, body limit,
//! mode, tenants), the upstreams (`[[upstream]]`), their limits as `[[limiter]]` blocks —
//! the very blocks `hub tune` prints, pasted unchanged — the `[retry]` table, and the
//! hub's `[limits]` table (backend, Redis, any extra per-key rules).
//!
//! ```toml
//! [gateway]
//! addr = "127.0.0.1:8787"
//! body_limit = 4194304          # bytes; a larger body is answered 413
//! mode = "enforce"              # or "shadow": forward at once, record what would wait
//!
//! [[gateway.tenant]]
//! name = "batch"
//! key_env = "HUB_KEY_BATCH"     # the gateway key clients of this tenant present
//! weight = 1                    # share of contended quota, by tokens
//! max_wait = "30s"              # longest wait in the queue before a 429
//! limit = { limits = { tpm = 20000 } }   # optional: the tenant's own limits
//!
//! [[upstream]]
//! id = "openai"
//! kind = "openai"               # or "azure"
//! url = "https://api.openai.com/v1"      # azure: the resource endpoint
//! api_key_env = "OPENAI_API_KEY"
//! models = ["gpt-4o-mini"]      # azure: the deployment names
//! limiter = "token-bucket"      # the [[limiter]] block that limits it
//!
//! # hub tune: rpm = 570 gives the best goodput_tpm with throttled_ratio <= 0.001 …
//! [[limiter]]
//! name = "token-bucket"
//! strategy = "token_bucket"
//! limits = { rpm = 570, tpm = 40000 }
//! headroom = 0.95
//! accounting = "estimate"
//! ```
//!
//! Keys — the tenants' gateway keys and the upstreams' API keys — are read from the
//! environment variables the file names, never written in it; they are kept out of
//! `Debug`, logs, metrics and responses.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::harness::scenario::error::{parse_located, Locator, Problem};
use crate::harness::scenario::limiters::{limiters, retry};
use crate::harness::scenario::raw::{RawLimiter, RawRetry};
use crate::hub::HubError;
use crate::limiter::redis::RedisSettings;
use crate::limiter::{Backend, KeyRule, LimitKey, LimiterConfig, RateLimitConfig};
use crate::provider::admission::AdmissionRule;
use crate::provider::headers::HeaderProfile;
use crate::units::de_duration;

/// The provider id of tenant keys in the limiter: a tenant's key is
/// `tenant/*/<tenant name>`.
pub const TENANT_PROVIDER: &str = "tenant";

/// Whether the gateway enforces its limits or only records what it would have done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Requests wait in the queue and are refused past their max wait.
    #[default]
    Enforce,
    /// Every request is forwarded at once; what enforcing would have delayed or refused
    /// is recorded in the metrics and logs.
    Shadow,
}

/// Which API an upstream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamKind {
    /// OpenAI or a compatible server: `{url}/chat/completions`, `Authorization: Bearer`.
    Openai,
    /// Azure OpenAI: `{url}/openai/deployments/{d}/…?api-version=`, `api-key`.
    Azure,
}

impl UpstreamKind {
    /// The admission estimate the provider applies.
    pub fn admission_rule(self) -> AdmissionRule {
        match self {
            Self::Openai => AdmissionRule::OPENAI,
            Self::Azure => AdmissionRule::AZURE,
        }
    }

    /// The header profile its responses are read with.
    pub fn header_profile(self) -> HeaderProfile {
        match self {
            Self::Openai => HeaderProfile::Openai,
            Self::Azure => HeaderProfile::Azure,
        }
    }
}

/// A secret read from the environment; `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// A secret holding `text` (keys are normally read from the environment).
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The secret's text (to send it, or compare it).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// One tenant: a gateway key, a share of contended quota, a longest wait, and optionally
/// limits of its own.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// The name metrics and logs use.
    pub name: String,
    /// The gateway key its clients present (`Authorization: Bearer` or `api-key`).
    pub key: Secret,
    /// Weight of its share of contended quota, by tokens (≥ 1).
    pub weight: u32,
    /// The longest a request waits in the queue before a 429.
    pub max_wait: Duration,
    /// Whether the tenant has limits of its own (then each request reserves on
    /// [`Tenant::limit_key`] too).
    pub limited: bool,
}

impl Tenant {
    /// The limiter key of the tenant's own limits.
    pub fn limit_key(&self) -> LimitKey {
        LimitKey::new(TENANT_PROVIDER, "*").with_deployment(self.name.as_str())
    }
}

/// One upstream: where requests for its models go, with which key.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// The id limits, metrics and logs use.
    pub id: String,
    /// The API it speaks.
    pub kind: UpstreamKind,
    /// OpenAI: the base URL including `/v1`; Azure: the resource endpoint. No trailing `/`.
    pub url: String,
    /// The upstream API key.
    pub api_key: Secret,
    /// The models (OpenAI) or deployments (Azure) it serves.
    pub models: Vec<String>,
    /// The `api-version` sent to an Azure upstream when the client's route has none.
    pub api_version: String,
    /// Longest wait for an upstream attempt's response head (a stream then runs as long
    /// as the upstream sends).
    pub timeout: Duration,
    /// The `max_wait` of its `[[limiter]]` block: caps a tenant's max wait.
    pub max_wait: Option<Duration>,
    /// Retries after the first attempt (`[retry] max_retries`).
    pub max_retries: u32,
}

impl Upstream {
    /// The limiter key of requests for `model` (a deployment, for Azure).
    pub fn limit_key(&self, model: &str) -> LimitKey {
        let key = LimitKey::new(self.id.as_str(), model);
        match self.kind {
            UpstreamKind::Azure => key.with_deployment(model),
            UpstreamKind::Openai => key,
        }
    }
}

/// The front's settings.
#[derive(Debug, Clone)]
pub struct Front {
    /// Where `hub serve` listens (`--addr` overrides it).
    pub addr: SocketAddr,
    /// Largest request body accepted, in bytes.
    pub body_limit: usize,
    /// Enforce or shadow.
    pub mode: Mode,
    /// Deficit round robin's quantum: tokens a tenant of weight 1 may send per round
    /// while the quota is contended.
    pub quantum: u64,
    /// How long a graceful shutdown lets in-flight requests finish.
    pub grace: Duration,
}

/// A checked gateway configuration, keys read.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The front.
    pub front: Front,
    /// The tenants, in file order.
    pub tenants: Vec<Tenant>,
    /// The upstreams, in file order. Among several serving a model, each request goes to
    /// the one with the most headroom for its estimate (ties: the first).
    pub upstreams: Vec<Upstream>,
    /// The limiter's configuration: `[limits]`, plus one rule per limited upstream and
    /// per tenant with limits.
    pub limits: LimiterConfig,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    gateway: RawFront,
    #[serde(rename = "upstream")]
    upstreams: Vec<RawUpstream>,
    #[serde(default, rename = "limiter")]
    limiters: Vec<RawLimiter>,
    #[serde(default)]
    retry: Option<RawRetry>,
    #[serde(default)]
    limits: LimiterConfig,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFront {
    #[serde(default = "default_addr")]
    addr: SocketAddr,
    #[serde(default = "default_body_limit")]
    body_limit: usize,
    #[serde(default)]
    mode: Mode,
    #[serde(default = "default_quantum")]
    quantum: u64,
    #[serde(default = "default_grace", deserialize_with = "de_duration")]
    grace: Duration,
    #[serde(rename = "tenant")]
    tenants: Vec<RawTenant>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    name: String,
    key_env: String,
    #[serde(default = "one")]
    weight: u32,
    #[serde(default = "default_max_wait", deserialize_with = "de_duration")]
    max_wait: Duration,
    #[serde(default)]
    limit: Option<RateLimitConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    id: String,
    kind: UpstreamKind,
    url: String,
    api_key_env: String,
    models: Vec<String>,
    #[serde(default)]
    limiter: Option<String>,
    #[serde(default = "default_api_version")]
    api_version: String,
    #[serde(default = "default_timeout", deserialize_with = "de_duration")]
    timeout: Duration,
}

fn default_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8787))
}
fn default_body_limit() -> usize {
    4 * 1024 * 1024
}
fn default_quantum() -> u64 {
    1024
}
fn default_grace() -> Duration {
    Duration::from_secs(10)
}
fn one() -> u32 {
    1
}
fn default_max_wait() -> Duration {
    Duration::from_secs(30)
}
fn default_api_version() -> String {
    "2024-10-21".into()
}
fn default_timeout() -> Duration {
    Duration::from_secs(120)
}

impl GatewayConfig {
    /// Reads and checks the file at `path`, keys from the process environment.
    pub fn load_file(path: impl AsRef<Path>) -> Result<Self, HubError> {
        let path = path.as_ref();
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| HubError::Read {
            origin: origin.clone(),
            source,
        })?;
        Self::from_str_with(&text, &origin, |name| std::env::var(name).ok())
    }

    /// Parses and checks `text` (`origin` names it in errors), reading each `*_env`
    /// variable through `env`. Errors name the line and field (`gateway.tenant[1].key_env`).
    pub fn from_str_with(
        text: &str,
        origin: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, HubError> {
        parse_located(text, origin, |raw: RawFile, loc| {
            resolve(raw, &env, loc).map_err(|p| loc.error(p))
        })
        .map_err(HubError::from)
    }

    /// The first upstream serving `model` (a model name or an Azure deployment), if any.
    pub fn upstream_for(&self, model: &str) -> Option<usize> {
        self.upstreams
            .iter()
            .position(|u| u.models.iter().any(|m| m == model))
    }

    /// Every upstream serving `model`, in file order.
    pub fn upstreams_for(&self, model: &str) -> Vec<usize> {
        self.upstreams
            .iter()
            .enumerate()
            .filter(|(_, u)| u.models.iter().any(|m| m == model))
            .map(|(i, _)| i)
            .collect()
    }
}

fn secret(
    field: String,
    var: &str,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Secret, Problem> {
    match env(var) {
        Some(v) if !v.trim().is_empty() => Ok(Secret(v)),
        _ => Err(Problem::new(
            field,
            format!("environment variable {var} is not set"),
        )),
    }
}

fn resolve(
    raw: RawFile,
    env: &impl Fn(&str) -> Option<String>,
    loc: &Locator<'_>,
) -> Result<GatewayConfig, Problem> {
    let f = &raw.gateway;
    if f.body_limit == 0 {
        return Err(Problem::new("gateway.body_limit", "must be at least 1"));
    }
    if f.quantum == 0 {
        return Err(Problem::new("gateway.quantum", "must be at least 1"));
    }
    if f.tenants.is_empty() {
        return Err(Problem::new(
            "gateway.tenant",
            "at least one [[gateway.tenant]] is needed",
        ));
    }
    let mut limits = raw.limits.clone();
    let mut tenants = Vec::with_capacity(f.tenants.len());
    let mut keys = HashSet::new();
    for (i, t) in f.tenants.iter().enumerate() {
        let field = |x: &str| format!("gateway.tenant[{i}].{x}");
        if t.name.trim().is_empty() || tenants.iter().any(|o: &Tenant| o.name == t.name) {
            return Err(Problem::new(field("name"), "must be non-empty and unique"));
        }
        if t.weight == 0 {
            return Err(Problem::new(field("weight"), "must be at least 1"));
        }
        let key = secret(field("key_env"), &t.key_env, env)?;
        if !keys.insert(key.0.clone()) {
            return Err(Problem::new(
                field("key_env"),
                "another tenant has the same key",
            ));
        }
        if let Some(l) = &t.limit {
            l.dimensions()
                .map_err(|e| Problem::new(field("limit"), e))?;
            limits.keys.push(KeyRule {
                provider: TENANT_PROVIDER.into(),
                model: None,
                deployment: Some(t.name.clone()),
                limit: l.clone(),
            });
        }
        tenants.push(Tenant {
            name: t.name.clone(),
            key,
            weight: t.weight,
            max_wait: t.max_wait,
            limited: t.limit.is_some(),
        });
    }

    let retry = retry(&raw.retry.unwrap_or_default(), loc)?;
    let blocks = if raw.limiters.is_empty() {
        Vec::new()
    } else {
        limiters(&raw.limiters, &retry)?
    };
    for (i, b) in blocks.iter().enumerate() {
        if b.backend == Backend::Redis {
            if limits.redis.is_none() {
                let url = b.redis_url.clone().unwrap_or_default();
                limits.redis = Some(RedisSettings::new(url));
            }
            if limits.backend != Backend::Redis && i > 0 {
                return Err(Problem::new(
                    format!("limiter[{i}].backend"),
                    "every [[limiter]] shares the gateway's one backend: set it in [limits]",
                ));
            }
            limits.backend = Backend::Redis;
        }
    }
    let mut upstreams = Vec::with_capacity(raw.upstreams.len());
    if raw.upstreams.is_empty() {
        return Err(Problem::new(
            "upstream",
            "at least one [[upstream]] is needed",
        ));
    }
    for (i, u) in raw.upstreams.iter().enumerate() {
        let field = |x: &str| format!("upstream[{i}].{x}");
        if u.id.trim().is_empty()
            || u.id == TENANT_PROVIDER
            || upstreams.iter().any(|o: &Upstream| o.id == u.id)
        {
            return Err(Problem::new(
                field("id"),
                format!("must be non-empty, unique and not `{TENANT_PROVIDER}`"),
            ));
        }
        if !(u.url.starts_with("http://") || u.url.starts_with("https://")) {
            return Err(Problem::new(
                field("url"),
                "must start with http:// or https://",
            ));
        }
        if u.models.is_empty() || u.models.iter().any(|m| m.trim().is_empty()) {
            return Err(Problem::new(
                field("models"),
                "list at least one model (deployment, for azure); none empty",
            ));
        }
        let mut max_wait = None;
        if let Some(name) = &u.limiter {
            let Some(block) = blocks.iter().find(|b| &b.name == name) else {
                return Err(Problem::new(
                    field("limiter"),
                    format!("no [[limiter]] is named `{name}`"),
                ));
            };
            if let Some(cfg) = &block.limit {
                max_wait = cfg.max_wait;
                limits.keys.push(KeyRule {
                    provider: u.id.clone(),
                    model: None,
                    deployment: None,
                    limit: cfg.clone(),
                });
            }
        }
        upstreams.push(Upstream {
            id: u.id.clone(),
            kind: u.kind,
            url: u.url.trim_end_matches('/').to_owned(),
            api_key: secret(field("api_key_env"), &u.api_key_env, env)?,
            models: u.models.clone(),
            api_version: u.api_version.clone(),
            timeout: u.timeout,
            max_wait,
            max_retries: retry.max_retries,
        });
    }
    if limits.backend == Backend::Redis {
        if let Some(s) = &limits.redis {
            s.validate().map_err(|e| Problem::new("limits.redis", e))?;
        }
    }
    Ok(GatewayConfig {
        front: Front {
            addr: f.addr,
            body_limit: f.body_limit,
            mode: f.mode,
            quantum: f.quantum,
            grace: f.grace,
        },
        tenants,
        upstreams,
        limits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "KEY_A" => Some("gw-a".into()),
            "KEY_B" => Some("gw-b".into()),
            "UP" => Some("sk-up".into()),
            _ => None,
        }
    }

    const BASE: &str = r#"
[gateway]
addr = "127.0.0.1:0"
[[gateway.tenant]]
name = "a"
key_env = "KEY_A"
weight = 3
max_wait = "2s"
limit = { limits = { tpm = 1000 } }
[[gateway.tenant]]
name = "b"
key_env = "KEY_B"

[[upstream]]
id = "oai"
kind = "openai"
url = "http://127.0.0.1:1/v1/"
api_key_env = "UP"
models = ["gpt-4o-mini"]
limiter = "token-bucket"

# hub tune: rpm = 57 gives the best goodput_tpm with no constraint (12 simulations of scenario "quickstart", seed 7)
[[limiter]]
name = "token-bucket"
strategy = "token_bucket"
accounting = "estimate"
headroom = 0.95
max_wait = "2s"

[limiter.limits]
rpm = 57
tpm = 40000
"#;

    #[test]
    fn a_tuned_limiter_block_pasted_unchanged_limits_its_upstream() {
        let c = GatewayConfig::from_str_with(BASE, "g.toml", env).expect("valid");
        assert_eq!(c.tenants.len(), 2);
        assert_eq!(c.tenants[0].key.expose(), "gw-a");
        assert!(c.tenants[0].limited && !c.tenants[1].limited);
        assert_eq!(c.tenants[1].weight, 1);
        assert_eq!(c.upstreams[0].url, "http://127.0.0.1:1/v1");
        assert_eq!(c.upstreams[0].max_wait, Some(Duration::from_secs(2)));
        let up = c
            .limits
            .config_for(&c.upstreams[0].limit_key("gpt-4o-mini"))
            .expect("the upstream is limited");
        assert_eq!(up.limits.rpm, Some(57));
        assert_eq!(up.headroom, 0.95);
        let t = c
            .limits
            .config_for(&c.tenants[0].limit_key())
            .expect("the tenant is limited");
        assert_eq!(t.limits.tpm, Some(1000));
        assert!(c.limits.config_for(&c.tenants[1].limit_key()).is_none());
        assert_eq!(c.upstream_for("gpt-4o-mini"), Some(0));
        assert_eq!(c.upstream_for("gpt-4"), None);
        assert!(
            !format!("{c:?}").contains("sk-up"),
            "keys stay out of Debug"
        );
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (
                BASE.replace("\"KEY_B\"", "\"NOPE\""),
                "gateway.tenant[1].key_env",
            ),
            (
                BASE.replace("\"KEY_B\"", "\"KEY_A\""),
                "gateway.tenant[1].key_env",
            ),
            (
                BASE.replace("weight = 3", "weight = 0"),
                "gateway.tenant[0].weight",
            ),
            (
                BASE.replace("limiter = \"token-bucket\"", "limiter = \"x\""),
                "upstream[0].limiter",
            ),
            (
                BASE.replace("models = [\"gpt-4o-mini\"]", "models = []"),
                "upstream[0].models",
            ),
            (
                BASE.replace("headroom = 0.95", "headroom = 1.5"),
                "limiter[0].headroom",
            ),
            (
                BASE.replace("weight = 3", "weight = 3\nsurprise = 1"),
                "gateway.tenant[0].surprise",
            ),
        ];
        for (text, field) in cases {
            let e = GatewayConfig::from_str_with(&text, "g.toml", env).unwrap_err();
            assert_eq!(e.field(), Some(field), "{e}");
        }
    }

    #[test]
    fn the_shipped_example_loads() {
        let text = include_str!("../../examples/gateway.toml");
        let c = GatewayConfig::from_str_with(text, "examples/gateway.toml", |name| {
            Some(format!("value-of-{name}"))
        })
        .expect("the example is valid");
        assert_eq!(c.tenants.len(), 2);
        assert_eq!(c.upstreams.len(), 2);
        assert_eq!(c.upstreams[0].max_retries, 3);
        let az = c
            .limits
            .config_for(&c.upstreams[1].limit_key("gpt-4o-mini-eu"))
            .expect("limited");
        assert_eq!(az.strategy, crate::limiter::Strategy::SlidingLog);
    }
}
