//! The script's operations as typed calls: one admission attempt (with the failure
//! policy's answer when Redis cannot decide), the `record` op (refunds, charges,
//! server-reported remaining, pauses, lease releases), and the permits they hand out.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::clock::nanos;
use crate::limiter::config::{RateLimitType, Refund};
use crate::limiter::{Cost, Denial, LimitKey, Permit, ResponseMeta};

use super::plan::put;
use super::ticket::{self, Origin, Ticket};
use super::{Decision, FailurePolicy, Inner, KeyEntry, RedisFailure};

impl Inner {
    /// One admission attempt: capacity check, then the script, then the failure policy.
    pub(super) async fn admit(
        self: &Arc<Self>,
        entry: &Arc<KeyEntry>,
        estimate: Cost,
        count_denial: bool,
        waited: Duration,
    ) -> Decision {
        let plan = &entry.plan;
        let estimate = plan.charge_at.admission_cost(estimate);
        if let Some(denial) = plan.exceeds(estimate) {
            return Decision {
                outcome: Err(denial),
                server_time_us: None,
            };
        }
        // count_denial, requests, tokens, lease µs, retry µs, then one cost per dimension.
        let mut values = Vec::with_capacity(8 * (plan.dims.len() + 5));
        for v in [
            i64::from(count_denial),
            to_i64(estimate.requests),
            to_i64(estimate.tokens),
            micros(self.settings.lease_ttl),
            micros(self.settings.concurrency_retry),
        ] {
            put(&mut values, v as f64);
        }
        for cost in plan.costs(estimate) {
            put(&mut values, to_i64(cost) as f64);
        }
        let call = {
            let (inner, entry) = (self.clone(), entry.clone());
            move |batch: Vec<u8>| {
                let (inner, entry) = (inner.clone(), entry.clone());
                async move {
                    let plan = &entry.plan;
                    inner
                        .link
                        .call(&plan.keys, "admit", &plan.ttl_ms, &plan.plan, &batch)
                        .await
                }
            }
        };
        let reply = entry.batch.submit(values, call).await;
        let (origin, server_time_us) = match reply.as_ref().map(|r| &r[..]) {
            Ok(&[1, now, seq, ..]) => (
                Origin::Redis {
                    at_us: now,
                    seq,
                    lease: plan.has_lease() && estimate.requests > 0,
                },
                Some(now),
            ),
            Ok(&[0, now, dim, wait, ..]) => {
                let dimension = usize::try_from(dim - 1)
                    .ok()
                    .and_then(|i| plan.dims.get(i))
                    .map_or(RateLimitType::Concurrent, |d| d.limit.kind);
                let retry_after = Duration::from_micros(wait.max(0).unsigned_abs());
                return Decision {
                    outcome: Err(Denial::Wait {
                        dimension,
                        retry_after,
                    }),
                    server_time_us: Some(now),
                };
            }
            Ok(&[2, now, _, wait, ..]) => {
                return Decision {
                    outcome: Err(Denial::Paused {
                        retry_after: Duration::from_micros(wait.max(0).unsigned_abs()),
                    }),
                    server_time_us: Some(now),
                }
            }
            Ok(other) => {
                let failure = RedisFailure::Reply(format!("{other:?}"));
                return self
                    .admit_without_redis(entry, estimate, waited, failure)
                    .await;
            }
            Err(failure) => {
                let failure = failure.clone();
                return self
                    .admit_without_redis(entry, estimate, waited, failure)
                    .await;
            }
        };
        Decision {
            outcome: Ok(self.permit(entry, estimate, waited, origin)),
            server_time_us,
        }
    }

    /// The failure policy's answer when Redis could not decide.
    async fn admit_without_redis(
        self: &Arc<Self>,
        entry: &Arc<KeyEntry>,
        estimate: Cost,
        waited: Duration,
        failure: RedisFailure,
    ) -> Decision {
        let key = &entry.plan.key;
        let outcome = match (self.settings.failure_policy, &self.local) {
            (FailurePolicy::FailOpen, _) => {
                self.warn_open(key, &failure);
                Ok(self.permit(entry, estimate, waited, Origin::Open))
            }
            (FailurePolicy::LocalFallback, Some(local)) => local
                .try_acquire(key, estimate)
                .await
                .map(|p| self.permit(entry, estimate, waited, Origin::Local(p))),
            _ => Err(Denial::Unavailable {
                reason: failure.to_string(),
            }),
        };
        Decision {
            outcome,
            server_time_us: None,
        }
    }

    fn warn_open(&self, key: &LimitKey, failure: &RedisFailure) {
        let now = self.clock.now();
        let last = self.last_open_warning.load(Ordering::Relaxed);
        let every = nanos(self.settings.probe_interval);
        if last == 0 || now.saturating_sub(last) >= every {
            self.last_open_warning.store(now.max(1), Ordering::Relaxed);
            tracing::warn!(%key, error = %failure, "redis unavailable: admitting without limit (fail_open)");
        }
    }

    /// A permit whose guard carries `origin` and frees a concurrency lease when dropped.
    fn permit(
        self: &Arc<Self>,
        entry: &Arc<KeyEntry>,
        estimate: Cost,
        waited: Duration,
        origin: Origin,
    ) -> Permit {
        entry.local.in_flight.fetch_add(1, Ordering::AcqRel);
        let release = matches!(origin, Origin::Redis { lease: true, .. }).then(|| {
            let inner: Weak<Inner> = Arc::downgrade(self);
            let entry = entry.clone();
            Box::new(move |seq: i64| spawn_release(inner, entry, seq)) as ticket::Release
        });
        let ticket = Ticket {
            origin: Some(origin),
            local: entry.local.clone(),
            release,
        };
        Permit::new(entry.plan.key.clone(), estimate, self.clock.now(), waited)
            .with_guard(Box::new(ticket))
    }

    /// Runs the `record` op: per-dimension refunds (+) or charges (−), server-reported
    /// remaining counts, a pause, lease releases.
    pub(super) async fn record(
        &self,
        entry: &KeyEntry,
        change: &Change,
        meta: &ResponseMeta,
    ) -> Result<Vec<i64>, RedisFailure> {
        let plan = &entry.plan;
        let n = plan.dims.len();
        // admission µs, seq, tokens delta, pause µs, release count; per dimension: delta,
        // reported remaining (−1 = none), charged cost; then the released lease ids.
        let mut values = Vec::with_capacity(8 * (3 * n + 6));
        for v in [
            change.at_us,
            change.seq,
            change.refund.tokens,
            change.pause.map_or(-1, micros),
            i64::from(change.release.is_some()),
        ] {
            put(&mut values, v as f64);
        }
        for (d, charged) in plan.dims.iter().zip(plan.costs(change.charged)) {
            let (delta, reported) = match d.limit.kind {
                RateLimitType::Concurrent => (0, None),
                k => (change.refund.of(k.unit()), meta.remaining_in(k.unit())),
            };
            put(&mut values, delta as f64);
            put(&mut values, reported.map_or(-1, to_i64) as f64);
            put(&mut values, to_i64(charged) as f64);
        }
        if let Some(seq) = change.release {
            put(&mut values, seq as f64);
        }
        self.link
            .call(&plan.keys, "record", &plan.ttl_ms, &plan.plan, &values)
            .await
    }
}

/// What one `record` call changes.
#[derive(Debug, Default)]
pub(super) struct Change {
    /// What to give back (+) or charge (−), per unit, on the dimensions counting in it.
    pub(super) refund: Refund,
    /// What the permit charged at admission.
    pub(super) charged: Cost,
    /// Redis admission time (µs), −1 if unknown.
    pub(super) at_us: i64,
    /// Admission sequence number, −1 if unknown.
    pub(super) seq: i64,
    /// Pause to apply.
    pub(super) pause: Option<Duration>,
    /// Lease to release.
    pub(super) release: Option<i64>,
}

impl Change {
    pub(super) fn nothing() -> Self {
        Self {
            at_us: -1,
            seq: -1,
            ..Self::default()
        }
    }
}

/// Frees a dropped permit's concurrency lease in the background (a permit dropped outside
/// a runtime keeps its slot until the lease expires).
fn spawn_release(inner: Weak<Inner>, entry: Arc<KeyEntry>, seq: i64) {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    handle.spawn(async move {
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let change = Change {
            release: Some(seq),
            ..Change::nothing()
        };
        if let Err(e) = inner
            .record(&entry, &change, &ResponseMeta::default())
            .await
        {
            tracing::debug!(error = %e, "lease release failed; it expires by itself");
        }
    });
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}
