//! [`RateLimiter`] for [`RedisLimiter`]: the contract's methods as calls of the script,
//! with the waiting, reconciliation and failure policy around them.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::clock::nanos;
use crate::limiter::{
    Cost, Denial, DimensionUsage, ErrorInfo, LimitError, LimitKey, Permit, RateLimiter, Refund,
    ResponseMeta, Unit, UsageRecord, UsageStats,
};

use super::ticket::{self, Origin, Waiting};
use super::{Change, FailurePolicy, Inner, KeyEntry, RedisFailure, RedisLimiter};

impl Inner {
    fn unavailable(&self, key: &LimitKey, failure: &RedisFailure) -> LimitError {
        LimitError::Unavailable {
            key: key.clone(),
            reason: failure.to_string(),
        }
    }

    fn entry_or_error(&self, key: &LimitKey) -> Result<Arc<KeyEntry>, LimitError> {
        self.entry(key).map_err(|d| {
            LimitError::from_denial(key, &d).unwrap_or(LimitError::Unavailable {
                key: key.clone(),
                reason: d.to_string(),
            })
        })
    }

    /// Best-effort count of an `acquire` that gave up.
    async fn count_denial(&self, entry: &KeyEntry) {
        let plan = &entry.plan;
        let _ = self
            .link
            .call(&plan.keys, "deny", &plan.ttl_ms, &plan.plan, &[])
            .await;
    }

    /// Shares a pause of `pause` on the key through Redis; `false` when Redis failed.
    async fn pause(&self, entry: &KeyEntry, pause: Duration) -> bool {
        let change = Change {
            pause: Some(pause),
            ..Change::nothing()
        };
        match self.record(entry, &change, &ResponseMeta::default()).await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(key = %entry.plan.key, error = %e, "could not share a pause through redis");
                false
            }
        }
    }
}

impl RedisLimiter {
    /// [`acquire`](RateLimiter::acquire) that also reports the Redis time of the admission
    /// (µs since the Unix epoch; `None` when the failure policy admitted without Redis).
    pub async fn acquire_stamped(
        &self,
        key: &LimitKey,
        estimate: Cost,
    ) -> Result<(Permit, Option<i64>), LimitError> {
        let inner = &self.inner;
        let clock = &inner.clock;
        let entry = inner.entry_or_error(key)?;
        let plan = &entry.plan;
        if let Some(d) = plan.exceeds(estimate) {
            return Err(LimitError::from_denial(key, &d).expect("exceeds() returns Exceeds"));
        }
        let local = &entry.local;
        let waiting = local.waiters.fetch_add(1, Ordering::AcqRel);
        let _waiting = Waiting(local);
        if waiting >= plan.max_waiters {
            return Err(LimitError::QueueFull {
                key: key.clone(),
                waiting,
            });
        }
        let start = clock.now();
        let deadline = plan.max_wait.map(|w| start.saturating_add(nanos(w)));
        let timeout = |needed: Duration| LimitError::Timeout {
            key: key.clone(),
            needed,
            max_wait: plan.max_wait.unwrap_or_default(),
        };
        // FIFO per key in this process: only the queue's head calls Redis.
        let _turn = match deadline {
            None => local.queue.lock().await,
            Some(dl) => tokio::select! {
                turn = local.queue.lock() => turn,
                () = clock.sleep_until(dl) => {
                    inner.count_denial(&entry).await;
                    return Err(timeout(Duration::from_nanos(clock.now() - start)));
                }
            },
        };
        loop {
            let waited = Duration::from_nanos(clock.now().saturating_sub(start));
            let decision = inner.admit(&entry, estimate, false, waited).await;
            let denial = match decision.outcome {
                Ok(permit) => {
                    *local.head.lock() = None;
                    return Ok((permit, decision.server_time_us));
                }
                Err(d) => d,
            };
            let (retry_after, jitter) = match &denial {
                Denial::Wait { retry_after, .. } => (*retry_after, inner.settings.wait_jitter),
                Denial::Paused { retry_after } => (*retry_after, plan.pause_jitter),
                other => {
                    *local.head.lock() = None;
                    return Err(LimitError::from_denial(key, other)
                        .expect("only Exceeds and Unavailable remain"));
                }
            };
            let now = clock.now();
            let ready = now.saturating_add(nanos(retry_after));
            if deadline.is_some_and(|dl| ready > dl) {
                *local.head.lock() = None;
                inner.count_denial(&entry).await;
                return Err(timeout(waited + retry_after));
            }
            *local.head.lock() = Some((denial, ready));
            let extra = retry_after.mul_f64(jitter * rand::random::<f64>());
            let mut wake = ready.saturating_add(nanos(extra));
            if let Some(dl) = deadline {
                wake = wake.min(dl);
            }
            clock.sleep_until(wake).await;
        }
    }
}

#[async_trait]
impl RateLimiter for RedisLimiter {
    async fn acquire(&self, key: &LimitKey, estimate: Cost) -> Result<Permit, LimitError> {
        self.acquire_stamped(key, estimate)
            .await
            .map(|(permit, _)| permit)
    }

    async fn try_acquire(&self, key: &LimitKey, estimate: Cost) -> Result<Permit, Denial> {
        self.decide(key, estimate).await.outcome
    }

    async fn record_usage(
        &self,
        permit: Permit,
        actual: Cost,
        meta: &ResponseMeta,
    ) -> Result<UsageRecord, LimitError> {
        let inner = &self.inner;
        let key = permit.key().clone();
        let charged = permit.charged();
        let admitted_at = permit.admitted_at();
        let entry = inner.entry_or_error(&key)?;
        let accounting = permit.accounting(entry.plan.accounting);
        let exact = permit.is_exact();
        let origin = ticket::take(permit);
        let pause = meta.retry_after.filter(|d| !d.is_zero());
        let refund = accounting.reconcile_units(entry.plan.charge_at, charged, actual);
        let mut refunded = refund.tokens;
        let mut change = Change {
            refund,
            charged,
            pause,
            ..Change::nothing()
        };
        match origin {
            Some(Origin::Local(local_permit)) => {
                let local = inner
                    .local
                    .as_ref()
                    .expect("local permits come from the local limiter");
                let local_permit = if exact {
                    local_permit.exact()
                } else {
                    local_permit
                };
                local.record_usage(local_permit, actual, meta).await?;
                if let Some(p) = pause {
                    inner.pause(&entry, p).await;
                }
                change = Change::nothing();
            }
            Some(Origin::Open) => {
                // Nothing was charged in Redis: there is nothing to reconcile.
                (change.refund, refunded) = (Refund::default(), 0);
            }
            Some(Origin::Redis { at_us, seq, lease }) => {
                change.at_us = at_us;
                change.seq = seq;
                change.release = lease.then_some(seq);
            }
            None => {}
        }
        let clamps = Unit::ALL.iter().any(|&u| meta.remaining_in(u).is_some());
        let needed = !change.refund.is_zero()
            || change.pause.is_some()
            || change.release.is_some()
            || clamps;
        if needed {
            if let Err(e) = inner.record(&entry, &change, meta).await {
                match (inner.settings.failure_policy, &inner.local) {
                    (FailurePolicy::FailClosed, _) => return Err(inner.unavailable(&key, &e)),
                    (FailurePolicy::LocalFallback, Some(local)) => {
                        // Carry the server's word (pause, remaining) over to the fallback.
                        let probe =
                            Permit::new(key.clone(), Cost::ZERO, admitted_at, Duration::ZERO);
                        local.record_usage(probe, Cost::ZERO, meta).await?;
                    }
                    _ => tracing::warn!(%key, error = %e, "usage not recorded in redis"),
                }
            }
        }
        Ok(UsageRecord {
            key,
            estimated_tokens: charged.tokens,
            actual_tokens: actual.tokens,
            refunded_tokens: refunded,
            admitted_at,
            recorded_at: inner.clock.now(),
            paused_for: pause,
        })
    }

    async fn backoff_delay(
        &self,
        key: &LimitKey,
        attempt: u32,
        error: &ErrorInfo,
    ) -> Option<Duration> {
        let inner = &self.inner;
        let entry = inner.entry_or_error(key).ok()?;
        let delay = entry.plan.retry.delay(attempt, error, &mut rand::rng())?;
        if error.rate_limited && !delay.is_zero() {
            let shared = inner.pause(&entry, delay).await;
            if let (false, FailurePolicy::LocalFallback, Some(local)) =
                (shared, inner.settings.failure_policy, &inner.local)
            {
                local.backoff_delay(key, attempt, error).await;
            }
        }
        Some(delay)
    }

    async fn usage_stats(&self, key: &LimitKey) -> Result<UsageStats, LimitError> {
        let inner = &self.inner;
        let entry = inner.entry_or_error(key)?;
        let plan = &entry.plan;
        match inner
            .link
            .call(&plan.keys, "stats", &plan.ttl_ms, &plan.plan, &[])
            .await
        {
            Ok(v) if v.len() == 5 + 2 * plan.dims.len() => {
                let us = |x: i64| Duration::from_micros(x.max(0).unsigned_abs());
                let count = |x: i64| x.max(0).unsigned_abs();
                let dimensions = plan
                    .dims
                    .iter()
                    .zip(v[5..].chunks_exact(2))
                    .map(|(d, pair)| DimensionUsage {
                        dimension: d.limit.kind,
                        capacity: d.capacity,
                        remaining: count(pair[0]),
                        reset_after: us(pair[1]),
                    })
                    .collect();
                Ok(UsageStats {
                    dimensions,
                    in_flight: entry.local.in_flight.load(Ordering::Acquire),
                    admitted: count(v[2]),
                    denied: count(v[3]),
                    tokens_charged: count(v[4]),
                    paused_for: (v[1] > 0).then(|| us(v[1])),
                })
            }
            Ok(v) => Err(inner.unavailable(key, &RedisFailure::Reply(format!("{v:?}")))),
            Err(e) => match (inner.settings.failure_policy, &inner.local) {
                (FailurePolicy::LocalFallback, Some(local)) => local.usage_stats(key).await,
                _ => Err(inner.unavailable(key, &e)),
            },
        }
    }

    async fn reset(&self, key: &LimitKey) -> Result<(), LimitError> {
        let inner = &self.inner;
        let entry = inner.entry_or_error(key)?;
        let plan = &entry.plan;
        let local = match &inner.local {
            Some(local) => local.reset(key).await,
            None => Ok(()),
        };
        match inner
            .link
            .call(&plan.keys, "reset", &plan.ttl_ms, &plan.plan, &[])
            .await
        {
            Ok(_) => local,
            Err(e) => match (inner.settings.failure_policy, &inner.local) {
                (FailurePolicy::LocalFallback, Some(_)) => local,
                _ => Err(inner.unavailable(key, &e)),
            },
        }
    }
}
