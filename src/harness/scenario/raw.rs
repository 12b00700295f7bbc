//! The scenario file as written: serde structs mirroring the TOML, every table with
//! `deny_unknown_fields`, every field that has a default optional. Checks that need more
//! than one field (which fields a process takes, ranges, defaults that depend on the
//! provider) are made in `validate`, where the error can name the field.

use std::fmt;
use std::time::Duration;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::{ProviderKind, Target};
use crate::harness::trace::TraceFormat;
use crate::limiter::{Backend, BackoffConfig, ChargeAt, Limits, TokenAccounting};
use crate::units::{de_opt_duration, de_opt_rate, Rate};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScenario {
    pub name: String,
    #[serde(default)]
    pub seed: u64,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub duration: Option<Duration>,
    pub provider: RawProvider,
    #[serde(default, rename = "phase")]
    pub phases: Vec<RawPhase>,
    #[serde(default)]
    pub workload: RawWorkload,
    #[serde(default, rename = "limiter")]
    pub limiters: Vec<RawLimiter>,
    #[serde(default)]
    pub retry: RawRetry,
    #[serde(default)]
    pub thresholds: RawThresholds,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProvider {
    pub kind: ProviderKind,
    #[serde(default)]
    pub target: Target,
    pub model: String,
    #[serde(default)]
    pub deployment: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub api_key_env: Option<String>,
    #[serde(default)]
    pub api_version: Option<String>,
    #[serde(default)]
    pub quota: Option<RawQuota>,
    #[serde(default)]
    pub latency: Option<RawLatency>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQuota {
    #[serde(default)]
    pub rpm: Option<u64>,
    #[serde(default)]
    pub tpm: Option<u64>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub rpm_window: Option<Duration>,
    #[serde(default)]
    pub itpm: Option<u64>,
    #[serde(default)]
    pub otpm: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLatency {
    #[serde(deserialize_with = "crate::units::de_duration")]
    pub ttft_median: Duration,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub ttft_p99: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub per_token: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPhase {
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub duration: Option<Duration>,
    pub arrival: RawArrival,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawProcess {
    Poisson,
    Constant,
    Gamma,
    Closed,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawArrival {
    pub process: RawProcess,
    #[serde(default, deserialize_with = "de_opt_rate")]
    pub rate: Option<Rate>,
    #[serde(default)]
    pub burstiness: Option<f64>,
    #[serde(default)]
    pub concurrency: Option<u32>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub think_time: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWorkload {
    #[serde(default)]
    pub prompt_tokens: Option<RawDist>,
    #[serde(default)]
    pub max_tokens: Option<RawMaxTokens>,
    #[serde(default)]
    pub output_tokens: Option<RawDist>,
    #[serde(default)]
    pub stream: Option<f64>,
    #[serde(default)]
    pub trace: Option<String>,
    #[serde(default)]
    pub format: Option<TraceFormat>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub start: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub duration: Option<Duration>,
    #[serde(default)]
    pub speed: Option<f64>,
    #[serde(default)]
    pub rate_scale: Option<f64>,
    #[serde(default)]
    pub prompt_chars_per_token: Option<RawRatio>,
    #[serde(default)]
    pub requests: Option<String>,
}

/// `prompt_chars_per_token` as written: a number, or `"natural"`.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum RawRatio {
    Number(f64),
    Text(String),
}

impl<'de> Deserialize<'de> for RawRatio {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawRatio;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("characters per token (a number such as 4.5) or \"natural\"")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawRatio, E> {
                Ok(RawRatio::Number(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawRatio, E> {
                Ok(RawRatio::Number(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawRatio, E> {
                Ok(RawRatio::Number(v as f64))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawRatio, E> {
                Ok(RawRatio::Text(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

/// `max_tokens` as written: a whole number of tokens, or (trace workloads) `"trace"` or a
/// multiple such as `"1.5x"`.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum RawMaxTokens {
    Tokens(u64),
    Text(String),
}

impl<'de> Deserialize<'de> for RawMaxTokens {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawMaxTokens;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a whole number of tokens, \"trace\" or a multiple such as \"1.5x\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawMaxTokens, E> {
                Ok(RawMaxTokens::Tokens(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawMaxTokens, E> {
                u64::try_from(v)
                    .map(RawMaxTokens::Tokens)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawMaxTokens, E> {
                Ok(RawMaxTokens::Text(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawDistKind {
    Constant,
    Uniform,
    Normal,
    LogNormal,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDistTable {
    pub dist: RawDistKind,
    #[serde(default)]
    pub value: Option<u64>,
    #[serde(default)]
    pub min: Option<u64>,
    #[serde(default)]
    pub max: Option<u64>,
    #[serde(default)]
    pub mean: Option<f64>,
    #[serde(default)]
    pub stdev: Option<f64>,
}

/// A token distribution: a bare token count (`prompt_tokens = 400`) or a table.
#[derive(Debug)]
pub(super) enum RawDist {
    Count(u64),
    Table(RawDistTable),
}

impl<'de> Deserialize<'de> for RawDist {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawDist;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a token count or a table such as { dist = \"uniform\", min = 20, max = 200 }",
                )
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawDist, E> {
                Ok(RawDist::Count(v))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawDist, E> {
                u64::try_from(v)
                    .map(RawDist::Count)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawDist, A::Error> {
                RawDistTable::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawDist::Table)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RawStrategy {
    TokenBucket,
    Gcra,
    SlidingLog,
    SlidingCounter,
    LeakyBucket,
    None,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimiter {
    pub name: String,
    pub strategy: RawStrategy,
    #[serde(default)]
    pub limits: Option<Limits>,
    #[serde(default)]
    pub headroom: Option<f64>,
    #[serde(default)]
    pub burst: Option<f64>,
    #[serde(default)]
    pub accounting: Option<TokenAccounting>,
    #[serde(default)]
    pub charge_at: Option<ChargeAt>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub max_wait: Option<Duration>,
    #[serde(default)]
    pub max_waiters: Option<usize>,
    #[serde(default)]
    pub pause_jitter: Option<f64>,
    #[serde(default)]
    pub backend: Option<Backend>,
    #[serde(default)]
    pub redis_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRetry {
    #[serde(default)]
    pub max_retries: Option<u32>,
    #[serde(default)]
    pub backoff: Option<BackoffConfig>,
}

/// One optional expression per metric of `thresholds::METRICS`, in the same order.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawThresholds {
    #[serde(default)]
    pub throttled_ratio: Option<String>,
    #[serde(default)]
    pub error_ratio: Option<String>,
    #[serde(default)]
    pub latency_p50: Option<String>,
    #[serde(default)]
    pub latency_p90: Option<String>,
    #[serde(default)]
    pub latency_p99: Option<String>,
    #[serde(default)]
    pub latency_p999: Option<String>,
    #[serde(default)]
    pub service_p99: Option<String>,
    #[serde(default)]
    pub limiter_wait_p99: Option<String>,
    #[serde(default)]
    pub quota_utilisation: Option<String>,
    #[serde(default)]
    pub goodput_tpm: Option<String>,
}

impl RawThresholds {
    /// `(metric, expression)` for every threshold given, in `METRICS` order.
    pub fn entries(&self) -> Vec<(&'static str, &str)> {
        [
            ("throttled_ratio", &self.throttled_ratio),
            ("error_ratio", &self.error_ratio),
            ("latency_p50", &self.latency_p50),
            ("latency_p90", &self.latency_p90),
            ("latency_p99", &self.latency_p99),
            ("latency_p999", &self.latency_p999),
            ("service_p99", &self.service_p99),
            ("limiter_wait_p99", &self.limiter_wait_p99),
            ("quota_utilisation", &self.quota_utilisation),
            ("goodput_tpm", &self.goodput_tpm),
        ]
        .into_iter()
        .filter_map(|(m, e)| e.as_deref().map(|e| (m, e)))
        .collect()
    }
}
