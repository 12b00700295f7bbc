//! Whether the drain is long enough: the queue a scenario's limits imply.
//!
//! When the open loop offers more than the limits admit, requests queue in the limiter and
//! are admitted at the limits' pace after the last arrival; whatever is still queued when
//! the drain ends is cut and counted dropped. `hub check` compares the drain with the time
//! the limits need, so a batch is not silently cut by the default drain.

use std::time::Duration;

use super::Scenario;
use crate::harness::capacity::quota_dimensions;
use crate::limiter::{RateLimitType, Unit};

/// One bound on the pace at which the offered load can be admitted: `burst` units at once,
/// then `per_second` units per second, each request costing `cost` units.
#[derive(Debug, Clone, Copy)]
struct Pace {
    burst: f64,
    per_second: f64,
    cost: f64,
}

impl Pace {
    /// Seconds from the run start until `requests` requests have been admitted.
    fn seconds_for(&self, requests: f64) -> f64 {
        if self.per_second <= 0.0 {
            return 0.0;
        }
        ((requests * self.cost - self.burst) / self.per_second).max(0.0)
    }
}

/// For each limiter (the `none` baseline queues nothing), the expected time from the run
/// start until its queue is empty: when its limits and the server's quota would have
/// admitted every open-loop request the scenario offers, but no later than the scenario's
/// end plus the limiter's `max_wait` (after which it drops what still waits). Request costs are the workload's mean admission estimate (mean
/// prompt tokens + `max_tokens`; generated prompts have four characters per token).
/// Closed-loop phases pace themselves and are not counted.
pub fn admission_times(s: &Scenario) -> Vec<(String, Duration)> {
    let requests: f64 = s.phases.iter().filter_map(|p| p.expected_requests()).sum();
    let tokens = s.workload.mean_estimate();
    let cost = |unit: Unit| if unit == Unit::Requests { 1.0 } else { tokens };
    let quota: Vec<Pace> = quota_dimensions(s, true)
        .iter()
        .map(|q| Pace {
            burst: q.limit as f64,
            per_second: q.per_minute() / 60.0,
            cost: if q.dimension == "requests" {
                1.0
            } else {
                tokens
            },
        })
        .collect();
    s.limiters
        .iter()
        .filter(|l| l.limit.is_some())
        .map(|l| {
            let own: Vec<Pace> = l
                .limit
                .as_ref()
                .and_then(|cfg| cfg.dimensions().ok())
                .unwrap_or_default()
                .iter()
                .filter(|d| d.kind != RateLimitType::Concurrent)
                .map(|d| Pace {
                    burst: d.burst as f64,
                    per_second: d.rate_per_nano() * 1e9,
                    cost: cost(d.kind.unit()),
                })
                .collect();
            let secs = own
                .iter()
                .chain(&quota)
                .map(|p| p.seconds_for(requests))
                .fold(0.0, f64::max);
            // A request waits at most `max_wait` in the queue, then the limiter drops it.
            let cap = l
                .limit
                .as_ref()
                .and_then(|cfg| cfg.max_wait)
                .map_or(f64::INFINITY, |w| (s.duration() + w).as_secs_f64());
            (
                l.name.clone(),
                Duration::from_secs_f64(secs.min(cap).min(1e9)),
            )
        })
        .collect()
}

/// Warnings for limiters whose implied queue outlasts the scenario's end plus `drain`: the
/// requests still queued then would be dropped. None for a batch workload, which no drain
/// cuts.
pub fn drain_warnings(s: &Scenario, drain: Duration) -> Vec<String> {
    if s.workload.requests.is_some() {
        // A batch runs until every request has ended: no drain cuts it.
        return Vec::new();
    }
    let end = s.duration();
    admission_times(s)
        .into_iter()
        .filter(|(_, needed)| *needed > end + drain)
        .map(|(name, needed)| {
            let after = needed - end;
            format!(
                "limiter {name}: the limits need about {:.0} s to admit the offered requests, \
                 {:.0} s after the last phase ends, but the drain is {:.0} s: the requests still \
                 queued then are dropped (pass --drain {}s or more)",
                needed.as_secs_f64(),
                after.as_secs_f64(),
                drain.as_secs_f64(),
                (after.as_secs_f64() * 1.1).ceil()
            )
        })
        .collect()
}
