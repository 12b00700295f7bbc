//! Hub metrics (hub specification §MetricsCollector): per provider and model — requests,
//! successes, errors by class, 429s by quota dimension, tokens in/out, and HDR histograms
//! of latency, time to first token and limiter wait — with a snapshot API and Prometheus
//! text export. [`MetricsMiddleware`] feeds it from the pipeline; latencies are read from
//! the injected [`Clock`].

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hdrhistogram::Histogram;
use parking_lot::Mutex;

use crate::clock::{Clock, Nanos};
use crate::middleware::{ErrorAction, Middleware, MiddlewareContext, MiddlewareError, StreamEnd};
use crate::provider::{
    CompletionRequest, CompletionResponse, ConnectorError, RateLimitDimension, Usage,
};

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

/// Thread-safe metrics store keyed by (provider, model).
#[derive(Default)]
pub struct MetricsCollector {
    series: Mutex<BTreeMap<(String, String), Series>>,
}

impl fmt::Debug for MetricsCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsCollector")
            .field("series", &self.series.lock().len())
            .finish()
    }
}

impl MetricsCollector {
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

    /// Counts a successful call with its `latency` and token `usage`.
    pub fn record_success(&self, provider: &str, model: &str, latency: Duration, usage: Usage) {
        self.with(provider, model, |s| {
            s.requests += 1;
            s.successes += 1;
            s.tokens_in += usage.input_tokens;
            s.tokens_out += usage.output_tokens;
            s.latency.record(latency);
        });
    }

    /// Counts a failed call by class (and a 429 by dimension) with its `latency`.
    pub fn record_error(
        &self,
        provider: &str,
        model: &str,
        latency: Duration,
        error: &ConnectorError,
    ) {
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

    /// Counts a stream the caller dropped before its end (error class `cancelled`) with
    /// its `latency` and the tokens `usage` counted so far.
    pub fn record_cancelled(&self, provider: &str, model: &str, latency: Duration, usage: Usage) {
        self.with(provider, model, |s| {
            s.requests += 1;
            *s.errors.entry("cancelled").or_default() += 1;
            s.tokens_in += usage.input_tokens;
            s.tokens_out += usage.output_tokens;
            s.latency.record(latency);
        });
    }

    /// Records a stream's time to first token.
    pub fn record_ttft(&self, provider: &str, model: &str, ttft: Duration) {
        self.with(provider, model, |s| s.ttft.record(ttft));
    }

    /// Records time a request waited in the limiter.
    pub fn record_limiter_wait(&self, provider: &str, model: &str, wait: Duration) {
        self.with(provider, model, |s| s.limiter_wait.record(wait));
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

    /// Prometheus text exposition (format 0.0.4): counters `hub_requests_total`,
    /// `hub_successes_total`, `hub_errors_total{class}`, `hub_rate_limited_total{dimension}`,
    /// `hub_tokens_total{direction}`, and summaries (seconds) `hub_latency_seconds`,
    /// `hub_ttft_seconds`, `hub_limiter_wait_seconds` with quantiles 0.5, 0.9, 0.99.
    pub fn prometheus_text(&self) -> String {
        let snap = self.snapshot();
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, rows: Vec<(String, u64)>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (labels, v) in rows {
                let _ = writeln!(out, "{name}{{{labels}}} {v}");
            }
        };
        let base = |s: &SeriesSnapshot| {
            format!(
                "provider=\"{}\",model=\"{}\"",
                escape(&s.provider),
                escape(&s.model)
            )
        };
        counter(
            "hub_requests_total",
            "Provider calls.",
            snap.iter().map(|s| (base(s), s.requests)).collect(),
        );
        counter(
            "hub_successes_total",
            "Provider calls that returned a response.",
            snap.iter().map(|s| (base(s), s.successes)).collect(),
        );
        counter(
            "hub_errors_total",
            "Failed provider calls by error class.",
            snap.iter()
                .flat_map(|s| {
                    s.errors
                        .iter()
                        .map(move |(c, v)| (format!("{},class=\"{c}\"", base(s)), *v))
                })
                .collect(),
        );
        counter(
            "hub_rate_limited_total",
            "429 rate-limit errors by quota dimension.",
            snap.iter()
                .flat_map(|s| {
                    s.rate_limited
                        .iter()
                        .map(move |(d, v)| (format!("{},dimension=\"{d}\"", base(s)), *v))
                })
                .collect(),
        );
        counter(
            "hub_tokens_total",
            "Tokens of successful calls by direction.",
            snap.iter()
                .flat_map(|s| {
                    [
                        (format!("{},direction=\"in\"", base(s)), s.tokens_in),
                        (format!("{},direction=\"out\"", base(s)), s.tokens_out),
                    ]
                })
                .collect(),
        );
        for (name, help, pick) in [
            (
                "hub_latency_seconds",
                "Provider call latency.",
                (|s: &SeriesSnapshot| s.latency) as fn(&SeriesSnapshot) -> Quantiles,
            ),
            ("hub_ttft_seconds", "Time to first token.", |s| s.ttft),
            (
                "hub_limiter_wait_seconds",
                "Time waited in the rate limiter.",
                |s| s.limiter_wait,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} summary");
            for s in &snap {
                let q = pick(s);
                let labels = base(s);
                for (quantile, v) in [("0.5", q.p50), ("0.9", q.p90), ("0.99", q.p99)] {
                    let _ = writeln!(
                        out,
                        "{name}{{{labels},quantile=\"{quantile}\"}} {}",
                        seconds(v)
                    );
                }
                let _ = writeln!(out, "{name}_sum{{{labels}}} {}", seconds(q.sum));
                let _ = writeln!(out, "{name}_count{{{labels}}} {}", q.count);
            }
        }
        out
    }
}

fn seconds(us: u64) -> f64 {
    us as f64 / 1e6
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Context value: the clock time the current attempt's `on_request` ran.
struct Started(Nanos);

/// Feeds a [`MetricsCollector`] from the pipeline: one count per provider call, latency
/// from this middleware's `on_request` to its `on_response`/`on_error` on `clock`, and the
/// limiter wait the rate-limit middleware reports. Register it first (outermost) so its
/// latency includes the limiter wait, or right before the rate limiter to exclude it.
#[derive(Debug, Clone)]
pub struct MetricsMiddleware {
    collector: Arc<MetricsCollector>,
    clock: Arc<dyn Clock>,
}

impl MetricsMiddleware {
    /// Records into `collector`, timing with `clock`.
    pub fn new(collector: Arc<MetricsCollector>, clock: Arc<dyn Clock>) -> Self {
        Self { collector, clock }
    }

    fn elapsed(&self, ctx: &MiddlewareContext) -> Duration {
        let start = ctx
            .extensions
            .get::<Started>()
            .map_or(ctx.started_at, |s| s.0);
        Duration::from_nanos(self.clock.now().saturating_sub(start))
    }

    fn wait(&self, ctx: &MiddlewareContext, model: &str) {
        if let Some(w) = ctx.extensions.get::<crate::middleware::LimiterWait>() {
            self.collector
                .record_limiter_wait(&ctx.provider_id, model, w.0);
        }
    }
}

#[async_trait]
impl Middleware for MetricsMiddleware {
    fn name(&self) -> &str {
        "metrics"
    }

    async fn on_request(
        &self,
        request: &mut CompletionRequest,
        ctx: &mut MiddlewareContext,
    ) -> Result<(), MiddlewareError> {
        let _ = request;
        ctx.extensions.insert(Started(self.clock.now()));
        Ok(())
    }

    async fn on_response(
        &self,
        response: &mut CompletionResponse,
        ctx: &mut MiddlewareContext,
    ) -> Result<(), MiddlewareError> {
        if ctx
            .metadata
            .get(crate::middleware::cache::CACHE_STATUS)
            .map(String::as_str)
            == Some("hit")
        {
            return Ok(()); // no provider call was made
        }
        let model = ctx.model.clone();
        self.collector
            .record_success(&ctx.provider_id, &model, self.elapsed(ctx), response.usage);
        self.wait(ctx, &model);
        Ok(())
    }

    async fn on_error(
        &self,
        error: &ConnectorError,
        ctx: &mut MiddlewareContext,
    ) -> Result<ErrorAction, MiddlewareError> {
        let model = ctx.model.clone();
        self.collector
            .record_error(&ctx.provider_id, &model, self.elapsed(ctx), error);
        self.wait(ctx, &model);
        Ok(ErrorAction::Propagate)
    }

    /// Time to first token: from this middleware's `on_request` to the first content chunk.
    async fn on_first_token(&self, ctx: &mut MiddlewareContext) {
        let model = ctx.model.clone();
        self.collector
            .record_ttft(&ctx.provider_id, &model, self.elapsed(ctx));
    }

    /// A stream counts as one call: a success with its usage, an error (mid-stream) by
    /// class, or `cancelled`; latency runs to the stream's end.
    async fn on_stream_end(
        &self,
        end: &StreamEnd,
        ctx: &mut MiddlewareContext,
    ) -> Result<(), MiddlewareError> {
        let model = ctx.model.clone();
        let (id, latency) = (&ctx.provider_id, self.elapsed(ctx));
        match (&end.error, end.cancelled) {
            (Some(e), _) => self.collector.record_error(id, &model, latency, e),
            (None, true) => self
                .collector
                .record_cancelled(id, &model, latency, end.usage),
            (None, false) => self
                .collector
                .record_success(id, &model, latency, end.usage),
        }
        self.wait(ctx, &model);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_quantiles_come_from_the_hdr_histogram_within_its_precision() {
        let m = MetricsCollector::new();
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
