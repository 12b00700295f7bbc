//! Hub metrics (hub specification §MetricsCollector): the [`MetricsCollector`] sink the
//! pipeline reports every provider call into, and what feeds and implements it.
//!
//! - [`MetricsMiddleware`] (`middleware.rs`): measures each call in the pipeline on the
//!   injected clock and reports it to an `Arc<dyn MetricsCollector>`.
//! - [`HdrMetrics`] (`hdr.rs`): the built-in collector — counters and HDR histograms per
//!   provider and model, with a [`snapshot`](HdrMetrics::snapshot) API and
//!   [Prometheus text](HdrMetrics::prometheus_text) (rendered by `prometheus.rs`).
//! - [`FanOut`] (`fanout.rs`): one collector that forwards to several, so the Hub keeps
//!   its built-in [`HdrMetrics`] and also reports to a sink the caller supplies
//!   (`HubOptions::metrics`).

use std::fmt;
use std::time::Duration;

use crate::provider::{ConnectorError, Usage};

mod fanout;
mod hdr;
mod middleware;
mod prometheus;

pub use fanout::FanOut;
pub use hdr::{HdrMetrics, Quantiles, SeriesSnapshot};
pub use middleware::MetricsMiddleware;

/// A sink for per-call measurements, keyed by provider id and model.
///
/// What [`MetricsMiddleware`] reports, per provider call (one attempt: a retry or a
/// fallback is another call):
/// - exactly one outcome: [`record_success`](Self::record_success) (a response, or a
///   stream that ended normally), [`record_error`](Self::record_error) (the provider's
///   error, before or during a stream) or [`record_cancelled`](Self::record_cancelled)
///   (a stream the caller dropped before its end);
/// - at most one [`record_ttft`](Self::record_ttft), for a stream that produced content;
/// - at most one [`record_limiter_wait`](Self::record_limiter_wait), when a rate-limit
///   middleware ran for the call.
///
/// `provider` is the id of the provider the call went to (the hub config's `id`); `model`
/// is the request's `model` as the caller sent it. Every duration is a [`Duration`]
/// measured on the hub's injected [`Clock`](crate::clock::Clock) (so virtual time in
/// tests), with nanosecond resolution; an implementation decides its own precision. A
/// response served from the cache is not a provider call and is not reported.
///
/// Methods are called from any task, concurrently, on the request path: they must be
/// cheap and must not block for long (no I/O; buffer and export elsewhere). The trait is
/// object-safe; the pipeline holds an `Arc<dyn MetricsCollector>`.
pub trait MetricsCollector: Send + Sync + fmt::Debug {
    /// A provider call that returned a response (or a stream that ended normally):
    /// `latency` from the call's start to the response (to the stream's end), and the
    /// token `usage` the provider reported (zeros when it reported none).
    fn record_success(&self, provider: &str, model: &str, latency: Duration, usage: Usage);

    /// A provider call that failed with `error` (classify it with
    /// [`ConnectorError::error_type`]; a 429 is [`ConnectorError::RateLimit`] with its
    /// quota dimension), `latency` from the call's start to the error.
    fn record_error(&self, provider: &str, model: &str, latency: Duration, error: &ConnectorError);

    /// A stream the caller dropped before its end: `latency` from the call's start to the
    /// drop, and the token `usage` counted so far.
    fn record_cancelled(&self, provider: &str, model: &str, latency: Duration, usage: Usage);

    /// A stream's time to first token: from the call's start to its first content chunk.
    fn record_ttft(&self, provider: &str, model: &str, ttft: Duration);

    /// How long the call waited in the rate limiter's `acquire` before it was sent.
    fn record_limiter_wait(&self, provider: &str, model: &str, wait: Duration);
}
