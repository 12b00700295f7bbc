//! The `summary.json` contract: what one run found, per limiter. Serialized in field order
//! (so simulated runs with the same seed are byte-identical) and read back by `compare`
//! and the charts. Documented for users in `reports/README.md`, schema in
//! `reports/summary.schema.json`.

use serde::{Deserialize, Serialize};

pub use super::capacity::DimensionUse;

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
    /// Requests that saw at least one 429 (whatever their final outcome).
    pub throttled: u64,
    /// Requests that ended in an error other than a final 429.
    pub errors: u64,
    /// Requests never answered: refused by the limiter (never fits, timed out) before any
    /// attempt, or cut when the run's drain ended.
    pub dropped: u64,
    /// Requests whose final attempt got a 429 (retries exhausted or not allowed).
    /// `completed + failed_throttled + errors + dropped = requests`.
    #[serde(default)]
    pub failed_throttled: u64,
    /// `throttled / requests`.
    pub throttled_ratio: f64,
    /// The run's real span, s: first intended start to last end (what the rates and the
    /// utilisation are divided by).
    #[serde(default)]
    pub span_s: f64,
    /// Prompt + completion tokens of completed requests per minute of the run's span.
    pub goodput_tpm: f64,
    /// The binding dimension's utilisation (see `utilisation`), when the quota is known: a
    /// fraction that never exceeds 1 for anything the server admitted.
    pub quota_utilisation: Option<f64>,
    /// What the server charged per quota dimension against what the quota could admit over
    /// the span; empty when the quota is unknown (a `url` target).
    #[serde(default)]
    pub utilisation: Vec<DimensionUse>,
    /// The dimension closest to its capacity (`"requests"` or `"tokens"`).
    #[serde(default)]
    pub binding_dimension: Option<String>,
    /// Goodput TPM over the quota's nominal TPM — the old `quota_utilisation`: above 1 for
    /// a short run that spends a full bucket, and on the dimension that may not bind.
    #[serde(default)]
    pub goodput_over_quota_tpm: Option<f64>,
    /// Intended request rate, requests/s: requests over the scenario's nominal duration.
    pub target_rate: f64,
    /// First attempts actually sent, requests/s over the run's span.
    pub achieved_rate: f64,
    /// Batch workloads only: the quota's physical limit — the shortest time in which the
    /// server's quota could admit what it charged (burst, then refill) — over the run's
    /// span; 1 is a batch finished as fast as the quota allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_efficiency: Option<f64>,
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

/// `ratio` (a fraction: 0.25 is 25 %) as a percentage with `decimals` decimals and a `%`
/// sign, e.g. `percent(0.2534, 1)` = `"25.3%"`. Rounding never hides what matters: a
/// ratio above 0 that would round to zero reads `"<0.1%"` (the smallest step shown), and
/// one below 1 that would round to 100 reads `">99.9%"`; exactly 0 and 1 read `"0.0%"` and
/// `"100.0%"`. A ratio that is not finite reads `"-"`.
pub fn percent(ratio: f64, decimals: usize) -> String {
    if !ratio.is_finite() {
        return "-".to_owned();
    }
    let step = 10f64.powi(-i32::try_from(decimals).unwrap_or(i32::MAX));
    let pct = ratio * 100.0;
    let rounded = format!("{pct:.decimals$}");
    let shown: f64 = rounded.parse().unwrap_or(pct);
    if pct > 0.0 && shown == 0.0 {
        format!("<{step:.decimals$}%")
    } else if pct < 100.0 && shown >= 100.0 {
        format!(">{:.decimals$}%", 100.0 - step)
    } else {
        format!("{rounded}%")
    }
}

impl LimiterSummary {
    /// Requests that did not end in a success: failed after 429s, other errors, dropped.
    pub fn unsuccessful(&self) -> u64 {
        self.failed_throttled + self.errors + self.dropped
    }

    /// One line a newcomer reads without a footnote: what the limiter did about 429s, how
    /// much of the binding quota dimension it used, its p99 latency, and its verdict, e.g.
    /// `token-bucket: no 429s; 93.2% of the requests quota used; p99 latency 1840 ms; pass`.
    pub fn headline(&self) -> String {
        let throttled = if self.throttled == 0 {
            "no 429s".to_owned()
        } else {
            format!(
                "{} of {} requests saw a 429 ({})",
                self.throttled,
                self.requests,
                percent(self.throttled_ratio, 1)
            )
        };
        let used = match (self.quota_utilisation, &self.binding_dimension) {
            (Some(u), Some(d)) => format!("; {} of the {d} quota used", percent(u, 1)),
            _ => String::new(),
        };
        let p99 = self
            .latency_ms
            .p99
            .map(|p| format!("; p99 latency {p:.0} ms"))
            .unwrap_or_default();
        format!("{}: {throttled}{used}{p99}; {}", self.name, self.verdict())
    }

    /// The one-line verdict: `pass` only when every threshold held and every request
    /// succeeded; otherwise it says how many did not (and which thresholds failed), so a
    /// run that drops most of its requests never reads as a plain pass.
    pub fn verdict(&self) -> String {
        let failed: Vec<_> = self
            .thresholds
            .iter()
            .filter(|t| !t.passed)
            .map(|t| format!("{} {}", t.metric, t.expr))
            .collect();
        let mut head = match (self.passed, failed.is_empty(), self.strategy == "none") {
            (true, _, _) => "pass".to_owned(),
            (false, true, _) => "FAIL".to_owned(),
            (false, false, false) => format!("FAIL: {}", failed.join("; ")),
            (false, false, true) => {
                format!("fails (baseline, not gating): {}", failed.join("; "))
            }
        };
        if self.requests > 0 && self.completed == 0 {
            head.push_str(" (no request completed)");
        }
        let unsuccessful = self.unsuccessful();
        if unsuccessful > 0 {
            let mut parts = Vec::new();
            for (n, what) in [
                (self.failed_throttled, "failed after 429s"),
                (self.errors, "errors"),
                (self.dropped, "dropped"),
            ] {
                if n > 0 {
                    parts.push(format!("{n} {what}"));
                }
            }
            head = format!(
                "{head}, {unsuccessful} of {} not completed: {}",
                self.requests,
                parts.join(", ")
            );
        }
        head
    }

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
            "failed_ratio" => ratio(self.failed_throttled),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(requests: u64, completed: u64, dropped: u64, throttled: u64) -> LimiterSummary {
        LimiterSummary {
            name: "tb".into(),
            strategy: "token_bucket".into(),
            requests,
            completed,
            throttled,
            errors: 0,
            dropped,
            failed_throttled: requests - completed - dropped,
            throttled_ratio: throttled as f64 / requests as f64,
            span_s: 10.0,
            goodput_tpm: 0.0,
            quota_utilisation: Some(0.932),
            utilisation: Vec::new(),
            binding_dimension: Some("requests".into()),
            goodput_over_quota_tpm: None,
            target_rate: 0.0,
            achieved_rate: 0.0,
            batch_efficiency: None,
            late_starts: 0,
            latency_ms: Percentiles {
                p99: Some(1840.4),
                ..Percentiles::default()
            },
            service_ms: Percentiles::default(),
            limiter_wait_ms: Percentiles::default(),
            ttft_ms: None,
            latency_distribution: Vec::new(),
            limiter_wait_distribution: Vec::new(),
            thresholds: Vec::new(),
            passed: true,
        }
    }

    #[test]
    fn percentages_never_round_a_small_ratio_to_zero_or_a_large_one_to_100() {
        assert_eq!(percent(0.0, 1), "0.0%");
        assert_eq!(percent(0.2534, 1), "25.3%");
        assert_eq!(percent(0.0004, 1), "<0.1%");
        assert_eq!(percent(0.0006, 1), "0.1%");
        assert_eq!(percent(0.00004, 2), "<0.01%");
        assert_eq!(percent(0.9996, 1), ">99.9%");
        assert_eq!(percent(0.9994, 1), "99.9%");
        assert_eq!(percent(1.0, 1), "100.0%");
        assert_eq!(percent(f64::NAN, 1), "-");
        let mut rare = limiter(5000, 5000, 0, 1);
        rare.quota_utilisation = Some(0.0002);
        assert_eq!(
            rare.headline(),
            "tb: 1 of 5000 requests saw a 429 (<0.1%); <0.1% of the requests quota used; p99 latency 1840 ms; pass"
        );
    }

    #[test]
    fn headlines_and_verdicts_say_what_happened() {
        assert_eq!(
            limiter(84, 84, 0, 0).headline(),
            "tb: no 429s; 93.2% of the requests quota used; p99 latency 1840 ms; pass"
        );
        assert_eq!(
            limiter(84, 68, 16, 0).headline(),
            "tb: no 429s; 93.2% of the requests quota used; p99 latency 1840 ms; pass, 16 of 84 not completed: 16 dropped"
        );
        let mut none = limiter(84, 72, 0, 16);
        none.strategy = "none".into();
        none.passed = false;
        none.thresholds = vec![ThresholdResult {
            metric: "throttled_ratio".into(),
            expr: "< 0.01".into(),
            value: Some(0.19),
            passed: false,
        }];
        assert_eq!(
            none.verdict(),
            "fails (baseline, not gating): throttled_ratio < 0.01, 12 of 84 not completed: 12 failed after 429s"
        );
        assert!(none
            .headline()
            .starts_with("tb: 16 of 84 requests saw a 429 (19.0%); "));
        let mut nothing = limiter(4, 0, 0, 0);
        nothing.failed_throttled = 0;
        nothing.errors = 4;
        nothing.passed = false;
        assert_eq!(
            nothing.verdict(),
            "FAIL (no request completed), 4 of 4 not completed: 4 errors"
        );
    }
}
