//! Limits as configuration: which dimensions, how large, which strategy, how usage is
//! reconciled. Nothing here names a provider; every number comes from a config file or a
//! caller, and the defaults are "no limit" rather than a guessed quota.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use super::backoff::BackoffConfig;
use super::Cost;
use crate::units::{de_opt_duration, de_opt_rate, Rate};

/// One dimension a limit counts in. Requests dimensions count each request as 1; tokens
/// dimensions count the request's token estimate — all of it (total), or its input or its
/// output part (see [`Cost`] for an estimate whose split is unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateLimitType {
    /// Requests per second.
    RequestsPerSecond,
    /// Requests per minute.
    RequestsPerMinute,
    /// Requests per an arbitrary window (e.g. Azure's RPM enforced per 10 s).
    RequestsPer(Duration),
    /// Tokens per minute.
    TokensPerMinute,
    /// Tokens per an arbitrary window.
    TokensPer(Duration),
    /// Input (prompt) tokens per minute.
    InputTokensPerMinute,
    /// Input (prompt) tokens per an arbitrary window.
    InputTokensPer(Duration),
    /// Output (completion) tokens per minute.
    OutputTokensPerMinute,
    /// Output (completion) tokens per an arbitrary window.
    OutputTokensPer(Duration),
    /// Requests in flight at once (released when the permit is recorded or dropped).
    Concurrent,
}

/// What a dimension counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    /// Each request counts 1.
    Requests,
    /// Each request counts its total token estimate (reconciled with actual usage later).
    Tokens,
    /// Each request counts its input-token estimate ([`Cost::input`]).
    InputTokens,
    /// Each request counts its output-token estimate ([`Cost::output`]).
    OutputTokens,
}

impl Unit {
    /// Every unit, in a stable order.
    pub const ALL: [Unit; 4] = [
        Unit::Requests,
        Unit::Tokens,
        Unit::InputTokens,
        Unit::OutputTokens,
    ];

    /// Whether the unit counts tokens (total, input or output) rather than requests.
    pub fn is_tokens(self) -> bool {
        self != Unit::Requests
    }
}

impl RateLimitType {
    /// Whether the dimension counts requests or tokens.
    pub fn unit(self) -> Unit {
        match self {
            Self::TokensPerMinute | Self::TokensPer(_) => Unit::Tokens,
            Self::InputTokensPerMinute | Self::InputTokensPer(_) => Unit::InputTokens,
            Self::OutputTokensPerMinute | Self::OutputTokensPer(_) => Unit::OutputTokens,
            Self::RequestsPerSecond
            | Self::RequestsPerMinute
            | Self::RequestsPer(_)
            | Self::Concurrent => Unit::Requests,
        }
    }

    /// The window the limit's amount refers to; `None` for [`Concurrent`](Self::Concurrent).
    pub fn window(self) -> Option<Duration> {
        match self {
            Self::RequestsPerSecond => Some(Duration::from_secs(1)),
            Self::RequestsPerMinute
            | Self::TokensPerMinute
            | Self::InputTokensPerMinute
            | Self::OutputTokensPerMinute => Some(Duration::from_secs(60)),
            Self::RequestsPer(w)
            | Self::TokensPer(w)
            | Self::InputTokensPer(w)
            | Self::OutputTokensPer(w) => Some(w),
            Self::Concurrent => None,
        }
    }

    /// The part of `cost` this dimension counts.
    pub fn cost_of(self, cost: Cost) -> u64 {
        cost.in_unit(self.unit())
    }
}

impl fmt::Display for RateLimitType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RequestsPerSecond => f.write_str("requests per second (RPS)"),
            Self::RequestsPerMinute => f.write_str("requests per minute (RPM)"),
            Self::RequestsPer(w) => write!(f, "requests per {w:?}"),
            Self::TokensPerMinute => f.write_str("tokens per minute (TPM)"),
            Self::TokensPer(w) => write!(f, "tokens per {w:?}"),
            Self::InputTokensPerMinute => f.write_str("input tokens per minute (ITPM)"),
            Self::InputTokensPer(w) => write!(f, "input tokens per {w:?}"),
            Self::OutputTokensPerMinute => f.write_str("output tokens per minute (OTPM)"),
            Self::OutputTokensPer(w) => write!(f, "output tokens per {w:?}"),
            Self::Concurrent => f.write_str("concurrent requests"),
        }
    }
}

/// One resolved dimension: `amount` per window (or slots, for `Concurrent`), of which up to
/// `burst` may be spent at once. For strategies without bursts (leaky bucket, sliding
/// windows) `burst` is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// The dimension.
    pub kind: RateLimitType,
    /// Units (requests or tokens) per window; slots for `Concurrent`. Never zero.
    pub amount: u64,
    /// Bucket capacity in units: the most that may be admitted at once. `1 ..= amount`.
    pub burst: u64,
}

impl Limit {
    /// The sustained rate in units per nanosecond (0 for `Concurrent`).
    pub fn rate_per_nano(&self) -> f64 {
        match self.kind.window() {
            Some(w) => self.amount as f64 / w.as_nanos() as f64,
            None => 0.0,
        }
    }
}

/// The limits of a key as written in TOML, e.g. `limits = { rpm = 500, tpm = 30000 }`,
/// `limits = { requests = "10/10s", tpm = 50000 }` or
/// `limits = { rpm = 50, itpm = 30000, otpm = 8000 }`. Every field is optional; each
/// present field adds one dimension.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Requests per second.
    #[serde(default)]
    pub rps: Option<u64>,
    /// Requests per minute.
    #[serde(default)]
    pub rpm: Option<u64>,
    /// Tokens per minute.
    #[serde(default)]
    pub tpm: Option<u64>,
    /// Requests per any window: `"10/10s"`.
    #[serde(default, deserialize_with = "de_opt_rate")]
    pub requests: Option<Rate>,
    /// Tokens per any window: `"50000/10s"`.
    #[serde(default, deserialize_with = "de_opt_rate")]
    pub tokens: Option<Rate>,
    /// Input (prompt) tokens per minute.
    #[serde(default)]
    pub itpm: Option<u64>,
    /// Output (completion) tokens per minute.
    #[serde(default)]
    pub otpm: Option<u64>,
    /// Input tokens per any window: `"5000/10s"`.
    #[serde(default, deserialize_with = "de_opt_rate")]
    pub input_tokens: Option<Rate>,
    /// Output tokens per any window: `"1000/10s"`.
    #[serde(default, deserialize_with = "de_opt_rate")]
    pub output_tokens: Option<Rate>,
    /// Requests in flight at once.
    #[serde(default)]
    pub concurrent: Option<u64>,
}

/// Which algorithm keeps each dimension's state. See the root `DESIGN.md`, §3 (strategies).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Capacity `burst`, refill `amount / window`: any interval `t` admits ≤ `burst + r·t`.
    #[default]
    TokenBucket,
    /// Generic cell rate algorithm: a token bucket's arrival curve in one integer of state.
    Gcra,
    /// Exact sliding window: ≤ `amount` in every window; memory ≤ `amount` entries.
    SlidingLog,
    /// Two fixed windows, weighted: O(1), approximate (see the strategy's docs for overshoot).
    SlidingCounter,
    /// A pacing queue: admits at a constant pace `window / amount`, no bursts.
    LeakyBucket,
}

/// How `record_usage` reconciles a request's token estimate with its actual usage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenAccounting {
    /// The provider charges actual usage: refund `estimate − actual` (or charge the excess).
    #[default]
    Actual,
    /// The provider charges the estimate at admission (e.g. `max_tokens`): keep the charge.
    Estimate,
}

impl TokenAccounting {
    /// What `record_usage` gives back for a permit that `charged` at admission and whose
    /// request used `actual`: `(requests, tokens)`, each positive for a refund, negative for
    /// an extra charge — [`reconcile_units`](Self::reconcile_units) with every dimension
    /// charged at admission, its requests and total tokens.
    pub fn reconcile(self, charged: Cost, actual: Cost) -> (i64, i64) {
        let r = self.reconcile_units(ChargeAt::default(), charged, actual);
        (r.requests, r.tokens)
    }

    /// What `record_usage` gives back, per unit, for a permit that `charged` at admission
    /// (already shaped by [`ChargeAt::admission_cost`]) and whose request used `actual`.
    /// Every backend applies this one rule.
    ///
    /// `Actual` gives back `charged − actual` in each unit (or charges the excess).
    /// `Estimate` keeps the charge whatever the actual usage in units charged at admission;
    /// a unit charged at usage (`charge_at`) was charged nothing, so its actual usage is
    /// charged in full. A permit that charged nothing at all (an after-the-fact report such
    /// as `update_usage`) is charged its whole actual usage under either rule. An unknown
    /// input/output split counts as the whole total (see [`Cost`]).
    pub fn reconcile_units(self, charge_at: ChargeAt, charged: Cost, actual: Cost) -> Refund {
        let nothing_charged = charged.is_zero();
        let delta = |unit: Unit| {
            if self == Self::Estimate
                && !nothing_charged
                && charge_at.of(unit) == ChargeTime::Admission
            {
                return 0;
            }
            signed(charged.in_unit(unit)).saturating_sub(signed(actual.in_unit(unit)))
        };
        Refund {
            requests: delta(Unit::Requests),
            tokens: delta(Unit::Tokens),
            input_tokens: delta(Unit::InputTokens),
            output_tokens: delta(Unit::OutputTokens),
        }
    }
}

fn signed(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// What a reconciliation gives back (positive) or charges on top (negative), per unit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Refund {
    /// Requests, on request dimensions.
    pub requests: i64,
    /// Total tokens, on total-token dimensions.
    pub tokens: i64,
    /// Input tokens, on input-token dimensions.
    pub input_tokens: i64,
    /// Output tokens, on output-token dimensions.
    pub output_tokens: i64,
}

impl Refund {
    /// The change for dimensions counting in `unit`.
    pub fn of(&self, unit: Unit) -> i64 {
        match unit {
            Unit::Requests => self.requests,
            Unit::Tokens => self.tokens,
            Unit::InputTokens => self.input_tokens,
            Unit::OutputTokens => self.output_tokens,
        }
    }

    /// Whether it changes nothing.
    pub fn is_zero(&self) -> bool {
        *self == Self::default()
    }
}

/// When a token dimension is charged: with the estimate at admission (then reconciled per
/// [`TokenAccounting`]), or only with the actual usage that `record_usage` reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChargeTime {
    /// The estimate is charged at admission (e.g. output as `max_tokens` × `n`).
    #[default]
    Admission,
    /// Nothing is charged at admission — the dimension only has to be not overdrawn to
    /// admit — and the actual usage is charged when it is recorded.
    Usage,
}

/// When each token unit is charged, as written in TOML: `charge_at = { output = "usage" }`.
/// Every field defaults to `admission`. Requests are always charged at admission.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChargeAt {
    /// Total-token dimensions (`tpm`, `tokens`).
    #[serde(default)]
    pub tokens: ChargeTime,
    /// Input-token dimensions (`itpm`, `input_tokens`).
    #[serde(default)]
    pub input: ChargeTime,
    /// Output-token dimensions (`otpm`, `output_tokens`).
    #[serde(default)]
    pub output: ChargeTime,
}

impl ChargeAt {
    /// When dimensions counting in `unit` are charged.
    pub fn of(&self, unit: Unit) -> ChargeTime {
        match unit {
            Unit::Requests => ChargeTime::Admission,
            Unit::Tokens => self.tokens,
            Unit::InputTokens => self.input,
            Unit::OutputTokens => self.output,
        }
    }

    /// What admitting `estimate` charges: the estimate, with every unit charged at usage
    /// set to zero (the split made explicit first, so an unknown part stays counted as the
    /// total where it is charged at admission). Idempotent.
    pub fn admission_cost(&self, estimate: Cost) -> Cost {
        if *self == Self::default() {
            return estimate;
        }
        let keep = |unit: Unit| match self.of(unit) {
            ChargeTime::Admission => estimate.in_unit(unit),
            ChargeTime::Usage => 0,
        };
        Cost {
            requests: estimate.requests,
            tokens: keep(Unit::Tokens),
            input_tokens: Some(keep(Unit::InputTokens)),
            output_tokens: Some(keep(Unit::OutputTokens)),
        }
    }
}

/// A configuration value that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// A field's value is out of its documented range.
    #[error("invalid `{field}` = {value}: {reason}")]
    Invalid {
        /// The field's name as written in the file.
        field: &'static str,
        /// The offending value, rendered.
        value: String,
        /// What the value must be.
        reason: &'static str,
    },
    /// The TOML text did not parse or did not match the schema.
    #[error("{0}")]
    Toml(String),
}

/// The limits and behaviour of one key (provider, model[, deployment]).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// The algorithm every dimension of this key uses.
    #[serde(default)]
    pub strategy: Strategy,
    /// The dimensions; none means the key is unlimited.
    #[serde(default)]
    pub limits: Limits,
    /// Fraction of each limit to actually use, `(0, 1]`: 0.95 keeps 5 % in reserve.
    #[serde(default = "one")]
    pub headroom: f64,
    /// Fraction of a window's amount that may be spent at once (bucket capacity), `(0, 1]`.
    /// Default 1: a full window's worth, like the providers' own continuously refilling quotas.
    #[serde(default)]
    pub burst: Option<f64>,
    /// How actual usage is reconciled with the estimate.
    #[serde(default)]
    pub accounting: TokenAccounting,
    /// When each token unit is charged (at admission by default; `usage` for a provider
    /// that counts, e.g., output tokens as they are generated).
    #[serde(default)]
    pub charge_at: ChargeAt,
    /// The longest `acquire` waits before failing with `LimitError::Timeout`; none = no limit.
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub max_wait: Option<Duration>,
    /// The most waiters `acquire` queues per key; one more fails with `LimitError::QueueFull`.
    #[serde(default = "default_max_waiters")]
    pub max_waiters: usize,
    /// Retry delays for `backoff_delay`.
    #[serde(default)]
    pub backoff: BackoffConfig,
    /// When a server-reported retry-after pauses the key, each waiter resumes at a random
    /// extra delay of up to this fraction of the pause, `[0, 1]`, so they do not stampede.
    #[serde(default = "default_pause_jitter")]
    pub pause_jitter: f64,
}

fn one() -> f64 {
    1.0
}

fn default_max_waiters() -> usize {
    100_000
}

fn default_pause_jitter() -> f64 {
    0.2
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            strategy: Strategy::default(),
            limits: Limits::default(),
            headroom: one(),
            burst: None,
            accounting: TokenAccounting::default(),
            charge_at: ChargeAt::default(),
            max_wait: None,
            max_waiters: default_max_waiters(),
            backoff: BackoffConfig::default(),
            pause_jitter: default_pause_jitter(),
        }
    }
}

impl RateLimitConfig {
    /// A config with `strategy` and `limits` and every other field at its default.
    pub fn new(strategy: Strategy, limits: Limits) -> Self {
        Self {
            strategy,
            limits,
            ..Self::default()
        }
    }

    /// Parses a config from TOML text (the same shape as a `limit = { … }` table).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let cfg: Self = toml::from_str(text).map_err(|e| ConfigError::Toml(e.to_string()))?;
        cfg.dimensions()?;
        Ok(cfg)
    }

    /// The resolved dimensions, headroom and burst applied, in a stable order
    /// (RPS, RPM, requests, TPM, tokens, ITPM, input tokens, OTPM, output tokens,
    /// concurrent). Errors name the offending field.
    pub fn dimensions(&self) -> Result<Vec<Limit>, ConfigError> {
        let headroom = self.headroom;
        if !(headroom > 0.0 && headroom <= 1.0) {
            return Err(invalid("headroom", headroom, "must be in (0, 1]"));
        }
        let burst = self.burst.unwrap_or(1.0);
        if !(burst > 0.0 && burst <= 1.0) {
            return Err(invalid("burst", burst, "must be in (0, 1]"));
        }
        if !(0.0..=1.0).contains(&self.pause_jitter) {
            return Err(invalid(
                "pause_jitter",
                self.pause_jitter,
                "must be in [0, 1]",
            ));
        }
        let l = &self.limits;
        let mut out = Vec::new();
        let mut push = |field: &'static str, kind, amount: f64| -> Result<(), ConfigError> {
            let scaled = (amount * headroom).floor();
            if !(scaled >= 1.0 && scaled <= u64::MAX as f64) {
                return Err(invalid(field, amount, "must be at least 1 after headroom"));
            }
            let amount = scaled as u64;
            let burst = ((amount as f64 * burst).ceil() as u64).clamp(1, amount);
            out.push(Limit {
                kind,
                amount,
                burst,
            });
            Ok(())
        };
        if let Some(n) = l.rps {
            push("rps", RateLimitType::RequestsPerSecond, n as f64)?;
        }
        if let Some(n) = l.rpm {
            push("rpm", RateLimitType::RequestsPerMinute, n as f64)?;
        }
        if let Some(r) = l.requests {
            push("requests", RateLimitType::RequestsPer(r.per), r.amount)?;
        }
        if let Some(n) = l.tpm {
            push("tpm", RateLimitType::TokensPerMinute, n as f64)?;
        }
        if let Some(r) = l.tokens {
            push("tokens", RateLimitType::TokensPer(r.per), r.amount)?;
        }
        if let Some(n) = l.itpm {
            push("itpm", RateLimitType::InputTokensPerMinute, n as f64)?;
        }
        if let Some(r) = l.input_tokens {
            push(
                "input_tokens",
                RateLimitType::InputTokensPer(r.per),
                r.amount,
            )?;
        }
        if let Some(n) = l.otpm {
            push("otpm", RateLimitType::OutputTokensPerMinute, n as f64)?;
        }
        if let Some(r) = l.output_tokens {
            push(
                "output_tokens",
                RateLimitType::OutputTokensPer(r.per),
                r.amount,
            )?;
        }
        if let Some(n) = l.concurrent {
            if n == 0 {
                return Err(invalid("concurrent", n, "must be at least 1"));
            }
            // Concurrency slots are not scaled by headroom: they are not a quota.
            out.push(Limit {
                kind: RateLimitType::Concurrent,
                amount: n,
                burst: n,
            });
        }
        Ok(out)
    }
}

fn invalid(field: &'static str, value: impl fmt::Display, reason: &'static str) -> ConfigError {
    ConfigError::Invalid {
        field,
        value: value.to_string(),
        reason,
    }
}

/// Which keys get which limits: a default and per-key rules. The most specific matching
/// rule wins (provider + model + deployment, then provider + model, then provider).
///
/// ```toml
/// [default]                     # optional: keys no rule matches are unlimited without it
/// limits = { rpm = 60 }
///
/// [[key]]
/// provider = "openai"
/// model = "gpt-4o-mini"
/// limit = { strategy = "gcra", limits = { rpm = 500, tpm = 200000 }, headroom = 0.95 }
///
/// [[key]]
/// provider = "azure"
/// deployment = "gpt4o-east"
/// limit = { strategy = "sliding_log", limits = { requests = "10/10s", tpm = 10000 }, accounting = "estimate" }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimiterConfig {
    /// Limits for keys that no rule matches; `None` leaves them unlimited.
    #[serde(default)]
    pub default: Option<RateLimitConfig>,
    /// Per-key rules.
    #[serde(default, rename = "key")]
    pub keys: Vec<KeyRule>,
    /// Where the state lives: this process (`memory`) or Redis, shared by every process.
    #[serde(default)]
    pub backend: Backend,
    /// The Redis connection and failure policy; required when `backend = "redis"`.
    #[serde(default)]
    pub redis: Option<super::backend::RedisSettings>,
}

/// Where a limiter keeps its state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// In this process ([`KeyedLimiter`](super::KeyedLimiter)): threads and tasks share it.
    #[default]
    Memory,
    /// In Redis ([`RedisLimiter`](super::redis::RedisLimiter)): processes and machines share it.
    Redis,
}

/// Limits for the keys that match `provider` and, when given, `model` and `deployment`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRule {
    /// Provider id the rule applies to (exact match).
    pub provider: String,
    /// Model the rule applies to; any model when absent.
    #[serde(default)]
    pub model: Option<String>,
    /// Deployment the rule applies to; any deployment when absent.
    #[serde(default)]
    pub deployment: Option<String>,
    /// The limits for matching keys.
    pub limit: RateLimitConfig,
}

impl LimiterConfig {
    /// Parses and validates a limiter config from TOML text.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let cfg: Self = toml::from_str(text).map_err(|e| ConfigError::Toml(e.to_string()))?;
        if let Some(d) = &cfg.default {
            d.dimensions()?;
        }
        for rule in &cfg.keys {
            rule.limit.dimensions()?;
        }
        if cfg.backend == Backend::Redis && cfg.redis.is_none() {
            return Err(invalid(
                "backend",
                "redis",
                "needs a [redis] table with at least `url`",
            ));
        }
        Ok(cfg)
    }

    /// The config for `key`: the most specific matching rule, else the default, else `None`
    /// (unlimited).
    pub fn config_for(&self, key: &super::LimitKey) -> Option<&RateLimitConfig> {
        self.keys
            .iter()
            .filter(|r| {
                r.provider == *key.provider
                    && r.model.as_deref().is_none_or(|m| m == &*key.model)
                    && r.deployment
                        .as_deref()
                        .is_none_or(|d| Some(d) == key.deployment.as_deref())
            })
            .max_by_key(|r| (r.deployment.is_some(), r.model.is_some()))
            .map(|r| &r.limit)
            .or(self.default.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limiter::LimitKey;

    #[test]
    fn resolves_dimensions_with_headroom_and_burst() {
        let cfg = RateLimitConfig::from_toml(
            "limits = { rpm = 500, tpm = 30000, requests = \"10/10s\" }\nheadroom = 0.9\nburst = 0.5",
        )
        .unwrap();
        let d = cfg.dimensions().unwrap();
        assert_eq!(d.len(), 3);
        assert_eq!(d[0].kind, RateLimitType::RequestsPerMinute);
        assert_eq!((d[0].amount, d[0].burst), (450, 225));
        assert_eq!(
            d[1].kind,
            RateLimitType::RequestsPer(Duration::from_secs(10))
        );
        assert_eq!((d[1].amount, d[1].burst), (9, 5));
        assert_eq!((d[2].amount, d[2].burst), (27000, 13500));
    }

    #[test]
    fn rejects_unknown_fields_and_bad_ranges() {
        let e = RateLimitConfig::from_toml("limits = { rpx = 5 }").unwrap_err();
        assert!(e.to_string().contains("rpx"), "{e}");
        let e = RateLimitConfig::from_toml("headroom = 1.5").unwrap_err();
        assert!(e.to_string().contains("headroom"), "{e}");
        let e = RateLimitConfig::from_toml("limits = { rpm = 1 }\nheadroom = 0.5").unwrap_err();
        assert!(e.to_string().contains("rpm"), "{e}");
    }

    #[test]
    fn reconcile_refunds_actual_keeps_estimates_and_charges_after_the_fact_reports() {
        use TokenAccounting::*;
        assert_eq!(
            Actual.reconcile(Cost::request(100), Cost::request(30)),
            (0, 70)
        );
        assert_eq!(
            Actual.reconcile(Cost::request(100), Cost::request(130)),
            (0, -30)
        );
        assert_eq!(
            Estimate.reconcile(Cost::request(100), Cost::request(30)),
            (0, 0)
        );
        assert_eq!(
            Estimate.reconcile(Cost::request(100), Cost::request(130)),
            (0, 0)
        );
        // Nothing charged at admission: all of the report is charged, whatever the rule.
        for rule in [Actual, Estimate] {
            assert_eq!(rule.reconcile(Cost::ZERO, Cost::tokens(40)), (0, -40));
        }
    }

    #[test]
    fn most_specific_rule_wins() {
        let cfg = LimiterConfig::from_toml(
            r#"
            [default]
            limits = { rpm = 1 }
            [[key]]
            provider = "p"
            limit = { limits = { rpm = 2 } }
            [[key]]
            provider = "p"
            model = "m"
            limit = { limits = { rpm = 3 } }
            [[key]]
            provider = "p"
            model = "m"
            deployment = "d"
            limit = { limits = { rpm = 4 } }
            "#,
        )
        .unwrap();
        let rpm = |k: &LimitKey| cfg.config_for(k).and_then(|c| c.limits.rpm);
        assert_eq!(rpm(&LimitKey::new("q", "m")), Some(1));
        assert_eq!(rpm(&LimitKey::new("p", "x")), Some(2));
        assert_eq!(rpm(&LimitKey::new("p", "m")), Some(3));
        assert_eq!(rpm(&LimitKey::new("p", "m").with_deployment("d")), Some(4));
        assert_eq!(rpm(&LimitKey::new("p", "m").with_deployment("e")), Some(3));
    }

    #[test]
    fn input_and_output_token_limits_resolve_next_to_requests_and_tokens() {
        let cfg = RateLimitConfig::from_toml(
            "limits = { rpm = 50, tpm = 90000, itpm = 30000, otpm = 8000, \
             input_tokens = \"500/1s\", output_tokens = \"100/1s\" }\nheadroom = 0.5",
        )
        .unwrap();
        let kinds: Vec<(RateLimitType, u64)> = cfg
            .dimensions()
            .unwrap()
            .iter()
            .map(|d| (d.kind, d.amount))
            .collect();
        let s = Duration::from_secs(1);
        assert_eq!(
            kinds,
            [
                (RateLimitType::RequestsPerMinute, 25),
                (RateLimitType::TokensPerMinute, 45000),
                (RateLimitType::InputTokensPerMinute, 15000),
                (RateLimitType::InputTokensPer(s), 250),
                (RateLimitType::OutputTokensPerMinute, 4000),
                (RateLimitType::OutputTokensPer(s), 50),
            ]
        );
        assert_eq!(kinds[2].0.unit(), Unit::InputTokens);
        assert_eq!(kinds[4].0.unit(), Unit::OutputTokens);
        assert_eq!(kinds[4].0.window(), Some(Duration::from_secs(60)));
        assert_eq!(
            RateLimitType::OutputTokensPerMinute.to_string(),
            "output tokens per minute (OTPM)"
        );
        let e = RateLimitConfig::from_toml("limits = { otpm = 1 }\nheadroom = 0.5").unwrap_err();
        assert!(e.to_string().contains("`otpm`"), "{e}");
        let e = RateLimitConfig::from_toml("limits = { itpm = -3 }").unwrap_err();
        assert!(e.to_string().contains("itpm"), "{e}");
    }

    #[test]
    fn each_dimension_counts_its_part_and_an_unknown_split_counts_the_total() {
        let c = Cost::request(0).with_split(30, 70);
        assert_eq!((c.requests, c.tokens), (1, 100));
        assert_eq!(RateLimitType::InputTokensPerMinute.cost_of(c), 30);
        assert_eq!(RateLimitType::OutputTokensPerMinute.cost_of(c), 70);
        assert_eq!(RateLimitType::TokensPerMinute.cost_of(c), 100);
        assert_eq!(RateLimitType::RequestsPerMinute.cost_of(c), 1);
        let unknown = Cost::request(100);
        assert_eq!(RateLimitType::InputTokensPerMinute.cost_of(unknown), 100);
        assert_eq!(RateLimitType::OutputTokensPerMinute.cost_of(unknown), 100);
        assert!(Cost::ZERO.is_zero() && Cost::ZERO.with_split(0, 0).is_zero());
        assert!(!Cost::ZERO.with_split(0, 1).is_zero());
    }

    #[test]
    fn reconciliation_refunds_or_charges_each_part_to_actual() {
        use TokenAccounting::*;
        let est = Cost::request(0).with_split(100, 500);
        let actual = Cost::request(0).with_split(120, 80);
        let all = ChargeAt::default();
        assert_eq!(
            Actual.reconcile_units(all, est, actual),
            Refund {
                requests: 0,
                tokens: 400,
                input_tokens: -20,
                output_tokens: 420
            }
        );
        assert_eq!(Actual.reconcile(est, actual), (0, 400));
        assert!(Estimate.reconcile_units(all, est, actual).is_zero());
        // Actual usage without a split: both parts count the total (never more permissive).
        let r = Actual.reconcile_units(all, est, Cost::request(200));
        assert_eq!((r.input_tokens, r.output_tokens), (-100, 300));
        // Nothing charged at admission: everything reported is charged, per part.
        let r = Estimate.reconcile_units(all, Cost::ZERO, actual);
        assert_eq!(
            (r.tokens, r.input_tokens, r.output_tokens),
            (-200, -120, -80)
        );
    }

    #[test]
    fn output_charged_at_usage_is_free_at_admission_and_charged_in_full_after() {
        use TokenAccounting::*;
        let cfg = RateLimitConfig::from_toml(
            "limits = { otpm = 600 }\ncharge_at = { output = \"usage\" }",
        )
        .unwrap();
        let at = cfg.charge_at;
        assert_eq!(at.of(Unit::OutputTokens), ChargeTime::Usage);
        assert_eq!(at.of(Unit::InputTokens), ChargeTime::Admission);
        let est = Cost::request(0).with_split(100, 500);
        let charged = at.admission_cost(est);
        assert_eq!(
            (charged.input(), charged.output(), charged.tokens),
            (100, 0, 600)
        );
        assert_eq!(at.admission_cost(charged), charged, "idempotent");
        // An unknown split keeps its total on input, charged at admission.
        let c = at.admission_cost(Cost::request(40));
        assert_eq!((c.input(), c.output(), c.tokens), (40, 0, 40));
        let actual = Cost::request(0).with_split(100, 70);
        for rule in [Actual, Estimate] {
            let r = rule.reconcile_units(at, charged, actual);
            assert_eq!(
                r.output_tokens, -70,
                "{rule:?}: the output is charged as used"
            );
        }
        assert_eq!(Actual.reconcile_units(at, charged, actual).input_tokens, 0);
        assert_eq!(Estimate.reconcile_units(at, charged, actual).tokens, 0);
        assert!(RateLimitConfig::from_toml("charge_at = { outptu = \"usage\" }").is_err());
        assert!(RateLimitConfig::from_toml("charge_at = { output = \"later\" }").is_err());
    }
}
