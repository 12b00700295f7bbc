//! Leased capacity: admit locally from a slice of a key's capacity leased from a shared
//! limiter, instead of one round trip to the shared limiter per request.
//!
//! Why it exists: a fleet of gateways or workers sharing one provider quota through Redis
//! pays one script call per admission, and Redis runs scripts on one thread — at high
//! request rates that call is the ceiling. A [`LeasedLimiter`] takes a *lease* — an
//! ordinary all-or-nothing admission of `share` of every dimension's amount on the shared
//! limiter (any [`RateLimiter`]: Redis in production, an in-memory one in tests) — and
//! admits its own requests from it without a round trip until the slice is spent or its
//! `lifetime` ends, then gives back what it did not use (the lease is reconciled to what was
//! spent, whatever the key's accounting). This is the approach of YouTube's Doorman.
//!
//! **The price: bounded overshoot.** A process holds at most one lease per key, and a
//! lease holds at most one slice unspent. The shared limiter counts a lease as spent from
//! the instant it grants it, and gets back what the lease did not spend when the lease ends
//! — possibly after the refill that the shared limiter would have capped at its burst. So
//! in any interval, for each dimension, `N` processes together admit at most what the
//! limit allows plus what their leases held unspent when the interval began:
//!
//! ```text
//! overshoot ≤ N × slice        (slice = max(1, ⌈share × amount⌉) per dimension)
//! ```
//!
//! for requests; for tokens, refunds of estimates (`accounting = "actual"`) recorded
//! during the interval come on top, as they do without leases. Keep `share` small (the
//! default 0.05 over 4 processes is 20 % of a burst at worst). `tests/limiter_lease.rs`
//! checks the bound on simulated processes on a manual clock, and that the worst case
//! does exceed the plain limit.
//!
//! What leases do not do: keys with a concurrency limit, or with a unit charged at usage
//! (`charge_at`), go to the shared limiter on every request (slots cannot be spent ahead;
//! a usage charge has no estimate to spend from a slice); a server pause (`retry_after` in
//! a response, a rate-limit backoff) ends the key's lease so the next request sees the
//! pause; a request
//! that waits (`acquire`), or one larger than a slice, goes to the shared limiter for
//! exactly its own cost. A lease ends when its lifetime passed or it cannot admit the next
//! request, and goes back at once, counting its permits still in flight at their
//! estimates; their reconciliation then goes to the shared limiter like any permit's. A
//! permit dropped without a record keeps its estimate.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use serde::Deserialize;

use super::config::{ChargeAt, ChargeTime, LimiterConfig, RateLimitType, TokenAccounting, Unit};
use super::{
    Cost, Denial, ErrorInfo, LimitError, LimitKey, Permit, RateLimiter, ResponseMeta, UsageRecord,
    UsageStats,
};
use crate::clock::{nanos, Clock, Nanos};
use crate::units::de_duration;

/// How large and how long a lease is. Part of the `[redis]` settings as `[redis.lease]`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseSettings {
    /// Fraction of each dimension's amount (per its window) one lease takes, `(0, 1]`;
    /// at least one unit. Default 0.05.
    #[serde(default = "default_share")]
    pub share: f64,
    /// How long a lease admits before what is left of it goes back. Default 1 s.
    #[serde(default = "default_lifetime", deserialize_with = "de_duration")]
    pub lifetime: Duration,
}

fn default_share() -> f64 {
    0.05
}
fn default_lifetime() -> Duration {
    Duration::from_secs(1)
}

impl Default for LeaseSettings {
    fn default() -> Self {
        Self {
            share: default_share(),
            lifetime: default_lifetime(),
        }
    }
}

/// Leases out of range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LeaseError {
    /// `share` is not in `(0, 1]`.
    #[error("lease share {0} must be in (0, 1]")]
    Share(f64),
    /// `lifetime` is zero.
    #[error("lease lifetime must be positive")]
    Lifetime,
}

impl LeaseSettings {
    /// Checks the ranges documented on the fields.
    pub fn validate(&self) -> Result<(), LeaseError> {
        if !(self.share > 0.0 && self.share <= 1.0) {
            return Err(LeaseError::Share(self.share));
        }
        if self.lifetime.is_zero() {
            return Err(LeaseError::Lifetime);
        }
        Ok(())
    }
}

/// A [`RateLimiter`] that admits from leases of a shared limiter's capacity (see the
/// module doc for the overshoot bound). Cheap to share through an `Arc`; one per process.
#[derive(Debug)]
pub struct LeasedLimiter {
    shared: Arc<dyn RateLimiter>,
    config: LimiterConfig,
    settings: LeaseSettings,
    clock: Arc<dyn Clock>,
    keys: Mutex<HashMap<LimitKey, Arc<KeyLeases>>>,
}

/// One key's leases in this process.
#[derive(Debug)]
struct KeyLeases {
    key: LimitKey,
    /// One lease's size; `None`: the key is not leased (no limit, or a concurrency limit).
    /// A unit that no dimension of the key counts has a slice of 0 and is not checked.
    slice: Option<Cost>,
    /// Which of [`Unit::ALL`] some dimension of the key counts.
    limits: [bool; 4],
    accounting: TokenAccounting,
    book: Mutex<Book>,
    /// One lease taken at a time per key.
    taking: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct Book {
    /// The lease admitting now, if any, and its number.
    current: Option<(u64, Lease)>,
    next_id: u64,
}

#[derive(Debug)]
struct Lease {
    /// The shared limiter's permit for the whole slice.
    shared: Permit,
    granted: Cost,
    /// Per unit of [`Unit::ALL`], charged by local permits, reconciled as they are
    /// recorded while the lease lives; may exceed `granted` when usage exceeded estimates
    /// (the excess is charged when the lease goes back).
    spent: [i64; 4],
    expires: Nanos,
}

/// The guard a lease's local permit carries: the key's leases and which one it spent.
struct LeaseTicket {
    owner: Arc<KeyLeases>,
    lease: u64,
}

impl LeasedLimiter {
    /// Leases from `shared`, whose limits are `config` (the same config the shared limiter
    /// was built with: it sizes the slices and names each key's accounting), reading time
    /// from `clock`.
    pub fn new(
        shared: Arc<dyn RateLimiter>,
        config: LimiterConfig,
        settings: LeaseSettings,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, LeaseError> {
        settings.validate()?;
        Ok(Self {
            shared,
            config,
            settings,
            clock,
            keys: Mutex::new(HashMap::new()),
        })
    }

    /// The shared limiter leases come from.
    pub fn shared(&self) -> &Arc<dyn RateLimiter> {
        &self.shared
    }

    fn entry(&self, key: &LimitKey) -> Arc<KeyLeases> {
        if let Some(k) = self.keys.lock().get(key) {
            return k.clone();
        }
        let limit = self.config.config_for(key).or(self.config.default.as_ref());
        let dims = limit.and_then(|l| l.dimensions().ok()).unwrap_or_default();
        let counts = |unit: Unit| dims.iter().any(|d| d.kind.unit() == unit);
        let limits = Unit::ALL.map(counts);
        let slice = {
            let usage_charged = limit.is_some_and(|l| {
                Unit::ALL
                    .iter()
                    .any(|&u| l.charge_at.of(u) == ChargeTime::Usage)
            });
            if dims.is_empty()
                || usage_charged
                || dims.iter().any(|d| d.kind == RateLimitType::Concurrent)
            {
                None
            } else {
                let of = |unit: Unit| {
                    dims.iter()
                        .filter(|d| d.kind.unit() == unit)
                        .map(|d| ((d.amount as f64 * self.settings.share).ceil() as u64).max(1))
                        .min()
                        // A unit no dimension counts: nothing to lease (and not checked).
                        .unwrap_or(0)
                };
                // Each part counted on its own (not a split of the total).
                Some(Cost {
                    requests: of(Unit::Requests),
                    tokens: of(Unit::Tokens),
                    input_tokens: Some(of(Unit::InputTokens)),
                    output_tokens: Some(of(Unit::OutputTokens)),
                })
            }
        };
        let entry = Arc::new(KeyLeases {
            key: key.clone(),
            slice,
            limits,
            accounting: limit.map(|l| l.accounting).unwrap_or_default(),
            book: Mutex::new(Book::default()),
            taking: tokio::sync::Mutex::new(()),
        });
        self.keys.lock().entry(key.clone()).or_insert(entry).clone()
    }

    /// Admits `estimate` from the current lease when it is live and has room; otherwise
    /// ends it and returns it, to go back.
    fn admit_local(
        &self,
        k: &Arc<KeyLeases>,
        estimate: Cost,
        now: Nanos,
    ) -> Result<Permit, Option<Box<Lease>>> {
        let mut book = k.book.lock();
        let Some((id, lease)) = book.current.as_mut() else {
            return Err(None);
        };
        let fits = |granted: u64, spent: i64, want: u64| {
            i64::try_from(granted)
                .unwrap_or(i64::MAX)
                .saturating_sub(spent)
                >= i64::try_from(want).unwrap_or(i64::MAX)
        };
        let room = Unit::ALL.iter().enumerate().all(|(i, &u)| {
            !k.limits[i]
                || fits(
                    lease.granted.in_unit(u),
                    lease.spent[i],
                    estimate.in_unit(u),
                )
        });
        if now < lease.expires && room {
            for (i, &u) in Unit::ALL.iter().enumerate() {
                lease.spent[i] = lease.spent[i].saturating_add_unsigned(estimate.in_unit(u));
            }
            let ticket = LeaseTicket {
                owner: k.clone(),
                lease: *id,
            };
            return Ok(Permit::new(k.key.clone(), estimate, now, Duration::ZERO)
                .with_guard(Box::new(ticket)));
        }
        Err(book.current.take().map(|(_, lease)| Box::new(lease)))
    }

    /// Gives an ended lease back: reconciled to what it spent, whatever the accounting.
    async fn return_lease(&self, lease: Option<Box<Lease>>) {
        let Some(lease) = lease else {
            return;
        };
        let spent = |i: usize| lease.spent[i].max(0) as u64;
        let spent = Cost {
            requests: spent(0),
            tokens: spent(1),
            input_tokens: Some(spent(2)),
            output_tokens: Some(spent(3)),
        };
        if let Err(e) = self
            .shared
            .record_usage(lease.shared.exact(), spent, &ResponseMeta::default())
            .await
        {
            tracing::warn!(error = %e, "a lease could not be given back; its slice stays charged");
        }
    }

    /// Ends the key's current lease (a pause must be seen by the next request).
    async fn end_lease(&self, k: &Arc<KeyLeases>) {
        let lease = k
            .book
            .lock()
            .current
            .take()
            .map(|(_, lease)| Box::new(lease));
        self.return_lease(lease).await;
    }

    async fn try_acquire_leased(
        &self,
        k: &Arc<KeyLeases>,
        slice: Cost,
        estimate: Cost,
    ) -> Result<Permit, Denial> {
        let larger = Unit::ALL
            .iter()
            .enumerate()
            .any(|(i, &u)| k.limits[i] && estimate.in_unit(u) > slice.in_unit(u));
        if larger {
            // Larger than a slice: admitted as itself, so that no lease ever holds more than
            // a slice unspent (the overshoot bound's N × slice).
            return self.shared.try_acquire(&k.key, estimate).await;
        }
        match self.admit_local(k, estimate, self.clock.now()) {
            Ok(p) => return Ok(p),
            Err(ended) => self.return_lease(ended).await,
        }
        let _one = k.taking.lock().await;
        // Another task may have taken a lease meanwhile.
        match self.admit_local(k, estimate, self.clock.now()) {
            Ok(p) => return Ok(p),
            Err(ended) => self.return_lease(ended).await,
        }
        match self.shared.try_acquire(&k.key, slice).await {
            Ok(shared) => {
                let now = self.clock.now();
                let lease = Lease {
                    shared,
                    granted: slice,
                    spent: [0; 4],
                    expires: now.saturating_add(nanos(self.settings.lifetime)),
                };
                let previous = {
                    let mut book = k.book.lock();
                    let id = book.next_id;
                    book.next_id += 1;
                    book.current.replace((id, lease))
                };
                // Only the holder of `taking` installs leases, and it ended the last one.
                debug_assert!(previous.is_none());
                self.return_lease(previous.map(|(_, l)| Box::new(l))).await;
                match self.admit_local(k, estimate, now) {
                    Ok(p) => Ok(p),
                    // Not reached: `estimate` fits in a slice (checked by the caller) and
                    // the lease is unspent; if it were, the shared limiter decides alone.
                    Err(lease) => {
                        self.return_lease(lease).await;
                        self.shared.try_acquire(&k.key, estimate).await
                    }
                }
            }
            // A whole slice does not fit now: this request alone may.
            Err(Denial::Wait { .. }) => self.shared.try_acquire(&k.key, estimate).await,
            Err(d) => Err(d),
        }
    }
}

#[async_trait]
impl RateLimiter for LeasedLimiter {
    /// Admits from the current lease; otherwise waits in the shared limiter's queue for
    /// exactly `estimate` (no lease is taken while waiting).
    async fn acquire(&self, key: &LimitKey, estimate: Cost) -> Result<Permit, LimitError> {
        let k = self.entry(key);
        let Some(slice) = k.slice else {
            return self.shared.acquire(key, estimate).await;
        };
        match self.try_acquire_leased(&k, slice, estimate).await {
            Ok(p) => Ok(p),
            Err(d) => match LimitError::from_denial(key, &d) {
                Some(e) => Err(e),
                None => self.shared.acquire(key, estimate).await,
            },
        }
    }

    async fn try_acquire(&self, key: &LimitKey, estimate: Cost) -> Result<Permit, Denial> {
        let k = self.entry(key);
        match k.slice {
            Some(slice) => self.try_acquire_leased(&k, slice, estimate).await,
            None => self.shared.try_acquire(key, estimate).await,
        }
    }

    async fn record_usage(
        &self,
        mut permit: Permit,
        actual: Cost,
        meta: &ResponseMeta,
    ) -> Result<UsageRecord, LimitError> {
        // Only a lease's own permit carries a `LeaseTicket`; any other permit (and guard)
        // belongs to the shared limiter and goes back to it untouched.
        if !permit.guard.as_ref().is_some_and(|g| g.is::<LeaseTicket>()) {
            return self.shared.record_usage(permit, actual, meta).await;
        }
        let Some(Ok(ticket)) = permit.guard.take().map(|g| g.downcast::<LeaseTicket>()) else {
            unreachable!("checked just above: the guard is a LeaseTicket");
        };
        let k = ticket.owner.clone();
        let estimate = permit.charged();
        let refund = k
            .accounting
            .reconcile_units(ChargeAt::default(), estimate, actual);
        let live = {
            let mut book = k.book.lock();
            match book.current.as_mut() {
                Some((id, lease)) if *id == ticket.lease => {
                    for (i, &u) in Unit::ALL.iter().enumerate() {
                        lease.spent[i] = lease.spent[i].saturating_sub(refund.of(u));
                    }
                    true
                }
                _ => false,
            }
        };
        if !live {
            // Its lease went back counting this permit's estimate: reconcile it there as
            // the shared limiter's own permit.
            let own = Permit::new(
                k.key.clone(),
                estimate,
                permit.admitted_at(),
                Duration::ZERO,
            );
            self.shared
                .record_usage(own, actual, &ResponseMeta::default())
                .await?;
        }
        let mut paused_for = None;
        if *meta != ResponseMeta::default() {
            // The server's view (remaining counts, a pause) belongs to the shared limiter;
            // a permit of nothing carries it there without charging anything.
            let carrier = Permit::new(
                k.key.clone(),
                Cost::ZERO,
                permit.admitted_at(),
                Duration::ZERO,
            );
            let record = self.shared.record_usage(carrier, Cost::ZERO, meta).await?;
            paused_for = record.paused_for;
            if paused_for.is_some() {
                self.end_lease(&k).await;
            }
        }
        Ok(UsageRecord {
            key: k.key.clone(),
            estimated_tokens: estimate.tokens,
            actual_tokens: actual.tokens,
            refunded_tokens: refund.tokens,
            admitted_at: permit.admitted_at(),
            recorded_at: self.clock.now(),
            paused_for,
        })
    }

    async fn backoff_delay(
        &self,
        key: &LimitKey,
        attempt: u32,
        error: &ErrorInfo,
    ) -> Option<Duration> {
        let delay = self.shared.backoff_delay(key, attempt, error).await;
        if delay.is_some() && error.rate_limited {
            let k = self.entry(key);
            self.end_lease(&k).await;
        }
        delay
    }

    /// The shared limiter's view: a lease counts there as one admitted permit in flight.
    async fn usage_stats(&self, key: &LimitKey) -> Result<UsageStats, LimitError> {
        self.shared.usage_stats(key).await
    }

    /// Forgets this process's leases of `key` (without giving them back: the shared state
    /// is reset) and resets the shared limiter's key.
    async fn reset(&self, key: &LimitKey) -> Result<(), LimitError> {
        self.keys.lock().remove(key);
        self.shared.reset(key).await
    }
}
