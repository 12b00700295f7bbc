//! [`HdrMetrics`], the built-in [`MetricsCollector`]: per provider and model — requests,
//! successes, errors by class, 429s by quota dimension, tokens in/out, and HDR histograms
//! of latency, time to first token and limiter wait — read as [`SeriesSnapshot`]s or as
//! Prometheus text.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use parking_lot::Mutex;

use super::MetricsCollector;
use crate::provider::{ConnectorError, RateLimitDimension, Usage};

/// Largest recordable duration, in microseconds (1 hour); longer values are clamped.
const MAX_MICROS: u64 = 3_600_000_000;

fn histogram() -> Histogram<u64> {
    // Bounds 1 µs ..= 1 h with 3 significant digits are valid constants.
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid constant histogram bounds")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// Quantiles of one histogram, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Quantiles {
    /// Recorded values.
    pub count: u64,
    /// Median, µs.
    pub p50: u64,
    /// 90th percentile, µs.
    pub p90: u64,
    /// 99th percentile, µs.
    pub p99: u64,
    /// Largest, µs.
    pub max: u64,
    /// Sum of the recorded values, µs.
    pub sum: u64,
}

#[derive(Debug, Clone)]
struct Timing {
    hist: Histogram<u64>,
    sum: u64,
}

impl Timing {
    fn new() -> Self {
        Self {
            hist: histogram(),
            sum: 0,
        }
    }
    fn record(&mut self, d: Duration) {
        let us = micros(d);
        self.hist.saturating_record(us);
        self.sum = self.sum.saturating_add(us);
    }
    fn quantiles(&self) -> Quantiles {
        Quantiles {
            count: self.hist.len(),
            p50: self.hist.value_at_quantile(0.5),
            p90: self.hist.value_at_quantile(0.9),
            p99: self.hist.value_at_quantile(0.99),
            max: self.hist.max(),
            sum: self.sum,
        }
    }
}

#[derive(Debug, Clone)]
struct Series {
    requests: u64,
    successes: u64,
    errors: BTreeMap<&'static str, u64>,
    rate_limited: BTreeMap<&'static str, u64>,
    tokens_in: u64,
    tokens_out: u64,
    latency: Timing,
    ttft: Timing,
    limiter_wait: Timing,
}

impl Series {
    fn new() -> Self {
        Self {
            requests: 0,
            successes: 0,
            errors: BTreeMap::new(),
            rate_limited: BTreeMap::new(),
            tokens_in: 0,
            tokens_out: 0,
            latency: Timing::new(),
            ttft: Timing::new(),
            limiter_wait: Timing::new(),
        }
    }
}

/// The counters of one provider and model at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSnapshot {
    /// Provider id.
    pub provider: String,
    /// Model.
    pub model: String,
    /// Provider calls (successes plus errors).
    pub requests: u64,
    /// Calls that returned a response.
    pub successes: u64,
    /// Failed calls by [`ConnectorError::error_type`] class.
    pub errors: BTreeMap<&'static str, u64>,
    /// 429 rate-limit errors by dimension (`requests`, `tokens`, `unknown`).
    pub rate_limited: BTreeMap<&'static str, u64>,
    /// Prompt tokens of successful calls.
    pub tokens_in: u64,
    /// Completion tokens of successful calls.
    pub tokens_out: u64,
    /// Call latency, µs.
    pub latency: Quantiles,
    /// Time to first token of streams, µs.
    pub ttft: Quantiles,
    /// Time spent waiting in the limiter's `acquire`, µs.
    pub limiter_wait: Quantiles,
}

/// The built-in [`MetricsCollector`]: counters and HDR histograms (1 µs ..= 1 h, 3
/// significant digits; latencies are recorded in whole microseconds, at least 1, longer
/// ones clamped to 1 h) per (provider, model), in memory behind one lock. Read it with
/// [`snapshot`](Self::snapshot) or [`prometheus_text`](Self::prometheus_text).
#[derive(Default)]
pub struct HdrMetrics {
    series: Mutex<BTreeMap<(String, String), Series>>,
}

impl fmt::Debug for HdrMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HdrMetrics")
            .field("series", &self.series.lock().len())
            .finish()
    }
}

impl HdrMetrics {
    /// An empty collector.
    pub fn new() -> Self {
        Self::default()
    }

    fn with(&self, provider: &str, model: &str, f: impl FnOnce(&mut Series)) {
        let mut all = self.series.lock();
        f(all
            .entry((provider.to_owned(), model.to_owned()))
            .or_insert_with(Series::new));
    }

    /// Every series now, ordered by provider then model.
    pub fn snapshot(&self) -> Vec<SeriesSnapshot> {
        self.series
            .lock()
            .iter()
            .map(|((provider, model), s)| SeriesSnapshot {
                provider: provider.clone(),
                model: model.clone(),
                requests: s.requests,
                successes: s.successes,
                errors: s.errors.clone(),
                rate_limited: s.rate_limited.clone(),
                tokens_in: s.tokens_in,
                tokens_out: s.tokens_out,
                latency: s.latency.quantiles(),
                ttft: s.ttft.quantiles(),
                limiter_wait: s.limiter_wait.quantiles(),
            })
            .collect()
    }

    /// The [`snapshot`](Self::snapshot) in Prometheus text exposition format 0.0.4:
    /// counters `hub_requests_total`, `hub_successes_total`, `hub_errors_total{class}`,
    /// `hub_rate_limited_total{dimension}`, `hub_tokens_total{direction}`, and summaries
    /// (seconds) `hub_latency_seconds`, `hub_ttft_seconds`, `hub_limiter_wait_seconds`
    /// with quantiles 0.5, 0.9, 0.99; every series labelled `provider` and `model`.
    pub fn prometheus_text(&self) -> String {
        super::prometheus::render(&self.snapshot())
    }
}

impl MetricsCollector for HdrMetrics {
    /// Counts a request and a success, adds `usage` to the token counters and records
    /// `latency`.
    fn record_success(&self, provider: &str, model: &str, latency: Duration, usage: Usage) {
        self.with(provider, model, |s| {
            s.requests += 1;
            s.successes += 1;
            s.tokens_in += usage.input_tokens;
            s.tokens_out += usage.output_tokens;
            s.latency.record(latency);
        });
    }

    /// Counts a request and an error by [`ConnectorError::error_type`] (and a 429 by
    /// dimension: `requests`, `tokens` or `unknown`) and records `latency`.
    fn record_error(&self, provider: &str, model: &str, latency: Duration, error: &ConnectorError) {
        self.with(provider, model, |s| {
            s.requests += 1;
            *s.errors.entry(error.error_type()).or_default() += 1;
            if let ConnectorError::RateLimit { dimension, .. } = error {
                let d = match dimension {
                    Some(RateLimitDimension::Requests) => "requests",
                    Some(RateLimitDimension::Tokens) => "tokens",
                    None => "unknown",
                };
                *s.rate_limited.entry(d).or_default() += 1;
            }
            s.latency.record(latency);
        });
    }

    /// Counts a request and an error of class `cancelled`, adds `usage` to the token
    /// counters and records `latency`.
    fn record_cancelled(&self, provider: &str, model: &str, latency: Duration, usage: Usage) {
        self.with(provider, model, |s| {
            s.requests += 1;
            *s.errors.entry("cancelled").or_default() += 1;
            s.tokens_in += usage.input_tokens;
            s.tokens_out += usage.output_tokens;
            s.latency.record(latency);
        });
    }

    fn record_ttft(&self, provider: &str, model: &str, ttft: Duration) {
        self.with(provider, model, |s| s.ttft.record(ttft));
    }

    fn record_limiter_wait(&self, provider: &str, model: &str, wait: Duration) {
        self.with(provider, model, |s| s.limiter_wait.record(wait));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_quantiles_come_from_the_hdr_histogram_within_its_precision() {
        let m = HdrMetrics::new();
        for ms in 1..=100 {
            m.record_success("p", "m", Duration::from_millis(ms), Usage::default());
        }
        let q = m.snapshot()[0].latency;
        assert_eq!(q.count, 100);
        // 3 significant digits: within 0.1 % of the exact order statistics.
        assert!((49_950..=50_050).contains(&q.p50), "{q:?}");
        assert!((98_900..=99_100).contains(&q.p99), "{q:?}");
        assert_eq!(q.sum, 5_050_000);
    }
}
