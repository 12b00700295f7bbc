//! [`FanOut`]: one [`MetricsCollector`] that forwards every call to several.

use std::sync::Arc;
use std::time::Duration;

use super::MetricsCollector;
use crate::provider::{ConnectorError, Usage};

/// Forwards every report, unchanged, to each of its collectors in order (so the Hub keeps
/// its built-in [`HdrMetrics`](super::HdrMetrics) and also feeds a sink of the caller's).
/// Its cost is the sum of theirs.
#[derive(Debug, Clone, Default)]
pub struct FanOut {
    sinks: Vec<Arc<dyn MetricsCollector>>,
}

impl FanOut {
    /// Forwards to `sinks`, in this order.
    pub fn new(sinks: impl IntoIterator<Item = Arc<dyn MetricsCollector>>) -> Self {
        Self {
            sinks: sinks.into_iter().collect(),
        }
    }
}

impl MetricsCollector for FanOut {
    fn record_success(&self, provider: &str, model: &str, latency: Duration, usage: Usage) {
        for s in &self.sinks {
            s.record_success(provider, model, latency, usage);
        }
    }

    fn record_error(&self, provider: &str, model: &str, latency: Duration, error: &ConnectorError) {
        for s in &self.sinks {
            s.record_error(provider, model, latency, error);
        }
    }

    fn record_cancelled(&self, provider: &str, model: &str, latency: Duration, usage: Usage) {
        for s in &self.sinks {
            s.record_cancelled(provider, model, latency, usage);
        }
    }

    fn record_ttft(&self, provider: &str, model: &str, ttft: Duration) {
        for s in &self.sinks {
            s.record_ttft(provider, model, ttft);
        }
    }

    fn record_limiter_wait(&self, provider: &str, model: &str, wait: Duration) {
        for s in &self.sinks {
            s.record_limiter_wait(provider, model, wait);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::HdrMetrics;

    #[test]
    fn every_sink_receives_every_report() {
        let (a, b) = (Arc::new(HdrMetrics::new()), Arc::new(HdrMetrics::new()));
        let fan = FanOut::new([
            a.clone() as Arc<dyn MetricsCollector>,
            b.clone() as Arc<dyn MetricsCollector>,
        ]);
        let usage = Usage {
            input_tokens: 3,
            output_tokens: 4,
        };
        let ms = Duration::from_millis;
        fan.record_success("p", "m", ms(5), usage);
        fan.record_error(
            "p",
            "m",
            ms(6),
            &ConnectorError::Timeout {
                message: "slow".into(),
            },
        );
        fan.record_cancelled("p", "m", ms(7), usage);
        fan.record_ttft("p", "m", ms(2));
        fan.record_limiter_wait("p", "m", ms(1));
        for m in [a, b] {
            let s = &m.snapshot()[0];
            assert_eq!((s.requests, s.successes), (3, 1));
            assert_eq!(s.errors.get("timeout").copied(), Some(1));
            assert_eq!(s.errors.get("cancelled").copied(), Some(1));
            assert_eq!((s.tokens_in, s.tokens_out), (6, 8));
            assert_eq!((s.latency.count, s.latency.sum), (3, 18_000));
            assert_eq!((s.ttft.count, s.limiter_wait.count), (1, 1));
        }
    }
}
