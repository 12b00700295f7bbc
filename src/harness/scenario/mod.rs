//! Scenario files: what to run (provider, phases, workload), through which limiters, and
//! what counts as passing. `scenarios/README.md` documents every field.
//!
//! A scenario is parsed into [`Scenario`] once and validated completely before anything
//! runs, so a typo costs a line-numbered error, not a half-finished run. The types here
//! are resolved values — defaults filled in, units converted, limiter settings already
//! turned into the library's [`RateLimitConfig`] — so the runner never re-interprets text.

pub mod drain;
pub(crate) mod error;
mod fields;
pub(crate) mod limiters;
mod plan;
pub(crate) mod raw;
mod traffic;
mod validate;

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

pub use super::arrival::{Arrival, Phase};
pub use super::thresholds::{Op, Threshold};
pub use super::workload::{RequestShape, TokenDist, Workload};
pub use error::ScenarioError;

use crate::limiter::redis::RedisSettings;
use crate::limiter::{
    Backend, BackoffConfig, KeyRule, LimitKey, LimiterConfig, RateLimitConfig, Strategy,
};
use crate::plugin::ConnectorPlugin;
use crate::provider::admission::AdmissionRule;

/// Which provider API the scenario speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// OpenAI (`/v1/chat/completions`, per-organization RPM and TPM).
    Openai,
    /// Azure OpenAI (per-deployment TPM, RPM enforced over short windows).
    Azure,
    /// Anthropic (`/v1/messages`, per-model RPM, ITPM and OTPM).
    Anthropic,
}

impl ProviderKind {
    /// The provider id used in limit keys and reports, and the name of its connector
    /// plugin: `"openai"`, `"azure"` or `"anthropic"`.
    pub fn id(self) -> &'static str {
        match self {
            Self::Openai => "openai",
            Self::Azure => "azure",
            Self::Anthropic => "anthropic",
        }
    }

    /// The provider's connector plugin: the one place its admission rule, API key
    /// variable and connector construction are looked up.
    pub fn plugin(self) -> &'static dyn ConnectorPlugin {
        // Every kind's id names a built-in plugin (checked by `every_kind_has_a_plugin`);
        // OpenAI's is the fallback that cannot be reached.
        crate::plugin::builtin(self.id()).unwrap_or(&crate::plugin::OpenAiPlugin)
    }

    /// How the provider charges a request at admission (the same rule its connector
    /// reports through `LLMProvider::admission_rule`), looked up in its plugin.
    pub fn admission_rule(self) -> AdmissionRule {
        self.plugin().admission_rule()
    }
}

/// Where requests go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// The embedded mock (`mock-providers`), started with the scenario's quota and latency
    /// and reset before each limiter's run.
    #[default]
    Mock,
    /// A real OpenAI-compatible or Azure endpoint at `url`.
    Url,
}

impl Target {
    /// `"mock"` or `"url"`, as written and reported.
    pub fn id(self) -> &'static str {
        match self {
            Self::Mock => "mock",
            Self::Url => "url",
        }
    }
}

/// The emulated server's quota (mock targets only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quota {
    /// Requests per minute. For Azure always set: as written, or derived as 6 per 1000 TPM.
    /// `None` (OpenAI only) leaves the mock's default.
    pub rpm: Option<u64>,
    /// Tokens per minute, charged at the admission estimate (prompt characters / 4 +
    /// `max_tokens`). Always set for Azure; `None` (OpenAI only) leaves the mock's default.
    pub tpm: Option<u64>,
    /// Azure (always set there, default 10 s): the short window RPM is enforced over;
    /// `rpm × window / 60 s` requests are admitted per window. Anthropic (optional): the
    /// short interval requests are enforced over (a burst of `rpm × window / 60 s`).
    pub rpm_window: Option<Duration>,
    /// Anthropic only: input tokens per minute (`None` leaves the mock's default).
    pub itpm: Option<u64>,
    /// Anthropic only: output tokens per minute, `max_tokens` reserved at admission
    /// (`None` leaves the mock's default).
    pub otpm: Option<u64>,
}

impl Quota {
    /// Requests the server admits in any `rpm_window` (Azure): `rpm × window / 60 s`,
    /// rounded down, at least 1. `None` without both.
    pub fn requests_per_window(&self) -> Option<u64> {
        let (rpm, w) = (self.rpm?, self.rpm_window?);
        let per = u128::from(rpm) * w.as_nanos() / 60_000_000_000;
        Some(u64::try_from(per).unwrap_or(u64::MAX).max(1))
    }
}

/// The mock's latency model (mock targets only); absent = zero latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencySpec {
    /// Median time to first token.
    pub ttft_median: Duration,
    /// 99th percentile of the time to first token (≥ the median).
    pub ttft_p99: Duration,
    /// Median interval between generated tokens.
    pub per_token: Duration,
}

/// The `[provider]` table, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderSpec {
    /// OpenAI or Azure.
    pub kind: ProviderKind,
    /// Embedded mock or a URL.
    pub target: Target,
    /// Model name sent in requests (OpenAI) or served by the deployment (Azure).
    pub model: String,
    /// Azure only (always set there; default: the model name): the deployment in the URL.
    pub deployment: Option<String>,
    /// URL targets only: the endpoint's base URL (`https://api.openai.com/v1`, or an Azure
    /// resource `https://NAME.openai.azure.com`).
    pub url: Option<String>,
    /// URL targets only (always set there): the environment variable holding the API key;
    /// default `OPENAI_API_KEY` or `AZURE_OPENAI_API_KEY`.
    pub api_key_env: Option<String>,
    /// Azure URL targets only (always set there): the `api-version` query parameter;
    /// default `2024-10-21`.
    pub api_version: Option<String>,
    /// Mock targets only: the emulated quota; `None` = the mock's defaults.
    pub quota: Option<Quota>,
    /// Mock targets only: the latency model; `None` = zero latency.
    pub latency: Option<LatencySpec>,
}

/// One `[[limiter]]`: a strategy and its settings, run over the whole scenario in turn.
#[derive(Debug, Clone, PartialEq)]
pub struct LimiterSpec {
    /// Unique name, used in reports (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// The strategy; `None` is the `"none"` baseline: no limiter, retries only.
    pub strategy: Option<Strategy>,
    /// The limiter's config for the provider key (strategy, limits, headroom, burst,
    /// accounting, max wait, and the scenario's `[retry]` backoff); `None` for the baseline.
    pub limit: Option<RateLimitConfig>,
    /// Where the limiter keeps its state during live runs (`hub simulate` always runs it
    /// in memory: virtual time cannot drive Redis's clock).
    pub backend: Backend,
    /// The Redis server, with `backend = "redis"`.
    pub redis_url: Option<String>,
}

impl LimiterSpec {
    /// The strategy's name as written: `token_bucket`, …, or `none`.
    pub fn strategy_name(&self) -> &'static str {
        match self.strategy {
            None => "none",
            Some(Strategy::TokenBucket) => "token_bucket",
            Some(Strategy::Gcra) => "gcra",
            Some(Strategy::SlidingLog) => "sliding_log",
            Some(Strategy::SlidingCounter) => "sliding_counter",
            Some(Strategy::LeakyBucket) => "leaky_bucket",
        }
    }
}

/// The `[retry]` table: how every limiter's run retries failed requests.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySpec {
    /// Retries after the first attempt (so at most `max_retries + 1` sends per request).
    pub max_retries: u32,
    /// The backoff curve (its `max_retries` equals the field above). A limiter's
    /// `backoff_delay` uses it; the `none` baseline uses [`BackoffConfig::policy`].
    pub backoff: BackoffConfig,
}

/// A parsed and validated scenario file.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Name: the report directory (`reports/<name>/`); letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// Seed of every random draw (arrivals, request shapes, prompt text, the mock).
    pub seed: u64,
    /// The provider and where to send.
    pub provider: ProviderSpec,
    /// Phases in order; each limiter's run goes through all of them.
    pub phases: Vec<Phase>,
    /// What each request looks like.
    pub workload: Workload,
    /// The limiters to compare, run one after the other on the same seed.
    pub limiters: Vec<LimiterSpec>,
    /// Retry settings shared by every limiter's run.
    pub retry: RetrySpec,
    /// Pass/fail thresholds, evaluated per limiter, in the order of
    /// [`thresholds::METRICS`](super::thresholds::METRICS).
    pub thresholds: Vec<Threshold>,
    /// Things that parse but probably are not what was meant (e.g. a limiter allowing more
    /// than the quota); printed by `hub check`.
    pub warnings: Vec<String>,
    /// The file's text, as read; [`Scenario::with_duration`] heads it with a comment
    /// giving the scaled phase durations, so a report's copy says what actually ran.
    pub text: String,
    /// Where the text came from (the path as given), used in error messages.
    pub origin: String,
}

impl Scenario {
    /// Reads and parses the scenario at `path`; errors name the path as given.
    pub fn from_file(path: &Path) -> Result<Scenario, ScenarioError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            origin: origin.clone(),
            source,
        })?;
        Self::parse(&text, &origin)
    }

    /// Parses and validates scenario `text`; `origin` (a file name) prefixes errors.
    pub fn parse(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
        validate::parse(text, origin)
    }

    /// The run length of one limiter: the sum of the phases.
    pub fn duration(&self) -> Duration {
        self.phases.iter().map(|p| p.duration).sum()
    }

    /// The same scenario lasting `d` (`hub run --duration`): every phase scaled by
    /// `d / duration()`, rounded down to the nanosecond, the last phase taking the
    /// remainder so the total is exactly `d`. Rates are unchanged.
    pub fn with_duration(&self, d: Duration) -> Scenario {
        let total = self.duration().as_nanos().max(1);
        let target = d.as_nanos();
        let mut out = self.clone();
        let mut used: u128 = 0;
        let last = out.phases.len().saturating_sub(1);
        for (i, p) in out.phases.iter_mut().enumerate() {
            let n = if i == last {
                target.saturating_sub(used)
            } else {
                p.duration.as_nanos() * target / total
            };
            used += n;
            p.duration = duration_from_nanos(n);
        }
        let phases: Vec<String> = out
            .phases
            .iter()
            .map(|p| format!("{:?}", p.duration))
            .collect();
        out.text = format!(
            "# hub: run with --duration {d:?}: the phases below ran scaled to {} (in order)\n{}",
            phases.join(", "),
            self.text
        );
        out
    }

    /// The limiter config for `spec`: one key rule for this scenario's provider, model
    /// and (Azure) deployment. `None` for the `none` baseline.
    pub fn limiter_config(&self, spec: &LimiterSpec) -> Option<LimiterConfig> {
        let limit = spec.limit.clone()?;
        Some(LimiterConfig {
            default: None,
            keys: vec![KeyRule {
                provider: self.provider.kind.id().to_owned(),
                model: Some(self.provider.model.clone()),
                deployment: self.provider.deployment.clone(),
                limit,
            }],
            backend: spec.backend,
            // A fresh key prefix per run: each limiter run starts from a full quota, also
            // when the same scenario ran moments ago against the same Redis.
            redis: spec.redis_url.as_ref().map(|url| {
                RedisSettings::new(url.clone()).with_key_prefix(format!(
                    "hub:{}:{}:{:016x}",
                    self.name,
                    spec.name,
                    rand::random::<u64>()
                ))
            }),
        })
    }

    /// The key every request of the scenario is limited on: provider id (`"openai"` /
    /// `"azure"`), model, and the deployment for Azure.
    pub fn limit_key(&self) -> LimitKey {
        let key = LimitKey::new(self.provider.kind.id(), self.provider.model.as_str());
        match &self.provider.deployment {
            Some(d) => key.with_deployment(d.as_str()),
            None => key,
        }
    }

    /// The resolved plan, human-readable (`hub check`): provider and quota, phases with
    /// expected request counts, workload, retry, every limiter's resolved dimensions,
    /// thresholds and warnings.
    pub fn plan(&self) -> String {
        plan::render(self)
    }
}

fn duration_from_nanos(n: u128) -> Duration {
    let secs = u64::try_from(n / 1_000_000_000).unwrap_or(u64::MAX);
    // The remainder of a division by 10^9 always fits in u32.
    Duration::new(secs, (n % 1_000_000_000) as u32)
}

#[cfg(test)]
mod kind_tests {
    use super::ProviderKind;

    #[test]
    fn every_kind_has_a_plugin_of_its_name() {
        for kind in [
            ProviderKind::Openai,
            ProviderKind::Azure,
            ProviderKind::Anthropic,
        ] {
            assert_eq!(kind.plugin().name(), kind.id());
        }
        assert_eq!(
            ProviderKind::Anthropic.admission_rule(),
            crate::provider::anthropic::ADMISSION
        );
        assert_eq!(
            ProviderKind::Azure.admission_rule(),
            crate::provider::admission::AdmissionRule::AZURE
        );
    }
}
