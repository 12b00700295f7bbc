//! The `summary.json` contract: what one run found, per limiter. Serialized in field order
//! (so simulated runs with the same seed are byte-identical) and read back by `compare`
//! and the charts. Documented for users in `reports/README.md`, schema in
//! `reports/summary.schema.json`.

use serde::{Deserialize, Serialize};

/// Version of the summary layout; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// Percentiles of the report distributions, as `[percentile, ms]` pairs.
pub const DISTRIBUTION_PERCENTILES: [f64; 9] =
    [50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.99, 100.0];

/// One run of a scenario: every limiter, in the order they ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// [`SCHEMA_VERSION`] of the writer.
    pub schema_version: u32,
    /// The scenario's name.
    pub scenario: String,
    /// `"live"` (real time, real HTTP) or `"simulated"` (virtual time).
    pub mode: String,
    /// The seed every limiter run used.
    pub seed: u64,
    /// Length of each limiter's run, seconds.
    pub duration_s: f64,
    /// What was called.
    pub provider: ProviderSummary,
    /// The emulated server's quota (mock targets), else `None`.
    pub quota: Option<QuotaSummary>,
    /// One entry per limiter, in run order.
    pub limiters: Vec<LimiterSummary>,
}

/// The provider a run called.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderSummary {
    /// `"openai"` or `"azure"`.
    pub kind: String,
    /// `"mock"` or `"url"`.
    pub target: String,
    /// Model name.
    pub model: String,
    /// Azure deployment, if any.
    pub deployment: Option<String>,
}

/// The server-side quota of a mock target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuotaSummary {
    /// Requests per minute.
    pub rpm: Option<u64>,
    /// Tokens per minute.
    pub tpm: Option<u64>,
}

/// Latency-like percentiles in milliseconds; `None` where there was no sample.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Median, ms.
    pub p50: Option<f64>,
    /// 90th percentile, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p90: Option<f64>,
    /// 99th percentile, ms.
    pub p99: Option<f64>,
    /// 99.9th percentile, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p999: Option<f64>,
    /// Largest sample, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

/// A threshold from the scenario, evaluated on one limiter's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThresholdResult {
    /// Metric name, e.g. `throttled_ratio`.
    pub metric: String,
    /// The expression as written, e.g. `"< 0.01"`.
    pub expr: String,
    /// The measured value (ms for latencies); `None` when the metric had no sample.
    pub value: Option<f64>,
    /// Whether the threshold held (a metric without a sample fails).
    pub passed: bool,
}

/// One limiter's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LimiterSummary {
    /// The `[[limiter]]` name.
    pub name: String,
    /// Its strategy, or `"none"` for the baseline.
    pub strategy: String,
    /// Requests offered (intended starts within the run).
    pub requests: u64,
    /// Requests that ended in a successful response.
    pub completed: u64,
    /// Requests that saw at least one 429.
    pub throttled: u64,
    /// Requests that ended in an error other than a final 429.
    pub errors: u64,
    /// Requests never sent (limiter refused or timed out, or the run ended first).
    pub dropped: u64,
    /// `throttled / requests`.
    pub throttled_ratio: f64,
    /// Prompt + completion tokens of completed requests per minute of run.
    pub goodput_tpm: f64,
    /// `goodput_tpm / quota.tpm`, when the quota is known.
    pub quota_utilisation: Option<f64>,
    /// Intended request rate, requests/s.
    pub target_rate: f64,
    /// First attempts actually sent, requests/s.
    pub achieved_rate: f64,
    /// Sends later than intended by more than 5 ms beyond their limiter wait.
    pub late_starts: u64,
    /// Corrected latency: end − intended start.
    pub latency_ms: Percentiles,
    /// Service time: end − last send.
    pub service_ms: Percentiles,
    /// Time spent waiting in the limiter (all attempts).
    pub limiter_wait_ms: Percentiles,
    /// Time to first token of streamed requests, `None` when none streamed.
    pub ttft_ms: Option<Percentiles>,
    /// `[percentile, ms]` of corrected latency at [`DISTRIBUTION_PERCENTILES`].
    pub latency_distribution: Vec<[f64; 2]>,
    /// `[percentile, ms]` of limiter wait at [`DISTRIBUTION_PERCENTILES`].
    pub limiter_wait_distribution: Vec<[f64; 2]>,
    /// The scenario's thresholds, evaluated.
    pub thresholds: Vec<ThresholdResult>,
    /// Whether every threshold held.
    pub passed: bool,
}

impl LimiterSummary {
    /// The value of a threshold metric by name (latencies in ms), `None` when unknown or
    /// without a sample.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let ratio = |n: u64| {
            if self.requests == 0 {
                None
            } else {
                Some(n as f64 / self.requests as f64)
            }
        };
        match name {
            "throttled_ratio" => ratio(self.throttled),
            "error_ratio" => ratio(self.errors),
            "dropped_ratio" => ratio(self.dropped),
            "latency_p50" => self.latency_ms.p50,
            "latency_p90" => self.latency_ms.p90,
            "latency_p99" => self.latency_ms.p99,
            "latency_p999" => self.latency_ms.p999,
            "service_p99" => self.service_ms.p99,
            "limiter_wait_p99" => self.limiter_wait_ms.p99,
            "quota_utilisation" => self.quota_utilisation,
            "goodput_tpm" => Some(self.goodput_tpm),
            "achieved_rate" => Some(self.achieved_rate),
            _ => None,
        }
    }
}
