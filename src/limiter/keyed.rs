//! The in-memory [`RateLimiter`]: one state per key (provider, model[, deployment]), limits
//! from [`LimiterConfig`], shared by every thread and task of a process through an `Arc`.
//!
//! Each key holds a [`MultiLimit`] (all-or-nothing dimensions), a FIFO queue of `acquire`
//! waiters, and a server-imposed pause. Waiters sleep on the injected [`Clock`] until the
//! exact moment the head of the queue fits, or until something changes (a refund, a release,
//! a pause, a reset) — no polling; and only when someone waits. After a pause, queued
//! waiters resume spread over `pause_jitter × pause` so they do not stampede.
//!
//! **Hot path.** A key is resolved once to its state ([`KeyedLimiter::handle`], a
//! [`KeyHandle`] callers may keep); admission through a handle takes the key's lock and
//! reads the clock, nothing else shared. Lookup by key goes through a map split into
//! [`SHARDS`] shards by the key's hash, each behind its own read-mostly lock, so threads on
//! different keys do not meet on one lock. A [`Permit`] carries the handle, not a copy of
//! the key.

use std::any::Any;
use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hashbrown::HashTable;
use parking_lot::{Mutex, RwLock};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Notify;

use crate::clock::{nanos, Clock, Nanos};

use super::backoff::{BackoffConfig, ErrorInfo, RetryPolicy};
use super::config::{ConfigError, LimiterConfig, RateLimitConfig, TokenAccounting, Unit};
use super::meta::ResponseMeta;
use super::multi::MultiLimit;
use super::{
    Cost, Denial, LimitError, LimitKey, Permit, PermitOwner, RateLimiter, UsageRecord, UsageStats,
};

/// Shards of the key map (a power of two): threads looking up different keys meet on one
/// shard's lock only when their keys' hashes share its bits.
pub const SHARDS: usize = 64;

/// Limiter ids: a handle or permit of another limiter is looked up by key, not trusted.
static NEXT_LIMITER: AtomicU64 = AtomicU64::new(1);

/// The in-memory limiter. Cheap to share: wrap it in an `Arc` and clone that.
#[derive(Debug)]
pub struct KeyedLimiter {
    config: LimiterConfig,
    clock: Arc<dyn Clock>,
    seed: u64,
    /// This limiter's id, stamped on its keys' states.
    id: u64,
    shards: Box<[Shard]>,
}

/// One shard of the key map: states by the key's hash (each state knows its key and hash).
/// Aligned to its own cache lines, so two shards' locks never share one.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard(RwLock<HashTable<Arc<KeyState>>>);

/// A key resolved to its state in one [`KeyedLimiter`] ([`KeyedLimiter::handle`]): admitting
/// through it ([`KeyedLimiter::try_acquire_handle`]) skips the lookup — no hashing, no map
/// lock. Cheap to clone (one reference count); valid as long as the caller keeps it (a
/// key's state lives as long as its limiter or any handle or permit on it). A handle of
/// another limiter is accepted and looked up there by its key.
#[derive(Debug, Clone)]
pub struct KeyHandle {
    state: Arc<KeyState>,
}

impl KeyHandle {
    /// The key this handle was resolved from.
    pub fn key(&self) -> &LimitKey {
        &self.state.key
    }
}

/// Everything about one key; the mutable part behind one lock. What every admission
/// touches comes first, next to the reference count: the key, the lock and the state under
/// it, the end counter.
#[derive(Debug)]
#[repr(C)]
struct KeyState {
    /// Compared on lookup, just before the lock is taken: next to it.
    key: LimitKey,
    inner: Mutex<KeyInner>,
    /// Permits (of at least one request) that ended — recorded or dropped — since the key
    /// was created; never reset. Counted outside the lock, by the permit's end.
    ended: AtomicU64,
    /// The limiter that made this state.
    limiter: u64,
    /// Whether a `Concurrent` dimension is configured (request permits then hold a slot).
    slots: bool,
    /// The key's hash in the map.
    hash: u64,
    accounting: TokenAccounting,
    max_wait: Option<Duration>,
    max_waiters: usize,
    pause_jitter: f64,
    policy: RetryPolicy,
    /// Woken whenever admission may have become possible earlier than a waiter planned —
    /// only when someone waits (a waiter is queued before it waits).
    wake: Notify,
}

impl KeyState {
    /// Wakes the waiters, if `waiting` (whether the queue was non-empty, read under the
    /// lock after the change): a waiter queues itself before it first looks at the state
    /// and registers for wake-ups before each later look, so a change made while nobody
    /// is queued is seen by the next look, and notifying then would wake no one.
    fn wake_if(&self, waiting: bool) {
        if waiting {
            self.wake.notify_waiters();
        }
    }
}

#[derive(Debug)]
#[repr(C)]
struct KeyInner {
    /// The latest time admitted or recorded at (the floor of the next reading).
    last_now: Nanos,
    limits: MultiLimit,
    pause: Pause,
    queue: VecDeque<u64>,
    next_ticket: u64,
    admitted: u64,
    /// Permits of at least one request handed out since the key was created; never reset
    /// (minus [`KeyState::ended`], the permits in flight).
    issued: u64,
    denied: u64,
    tokens_charged: u64,
    rng: SmallRng,
}

/// A server-imposed pause and the spread-out resume after it.
#[derive(Debug, Clone, Copy, Default)]
struct Pause {
    /// No admission before this time: the pause end, then the next resume slot.
    gate: Nanos,
    /// End of the resume phase: until then, each admission spaces the next one so the
    /// waiters still queued are spread over what is left of the phase.
    resume_end: Nanos,
}

impl KeyInner {
    /// Admits `cost` at `now` unless paused or refused by a dimension; the waiters queued
    /// behind it are this key's own.
    fn admit(&mut self, now: Nanos, cost: Cost) -> Result<(), Denial> {
        self.admit_behind(now, cost, self.queue.len().saturating_sub(1))
    }

    /// [`admit`](Self::admit) with `behind` waiters queued behind this request (spread
    /// after a pause).
    fn admit_behind(&mut self, now: Nanos, cost: Cost, behind: usize) -> Result<(), Denial> {
        if now < self.pause.gate {
            if let Some(never) = self.limits.never_fits(cost) {
                return Err(never);
            }
            return Err(Denial::Paused {
                retry_after: Duration::from_nanos(self.pause.gate - now),
            });
        }
        self.limits.try_admit(now, cost)?;
        self.admitted += cost.requests;
        // Every admission becomes a permit; those of a request are counted in flight.
        self.issued += u64::from(cost.requests > 0);
        self.tokens_charged = self.tokens_charged.saturating_add(cost.tokens);
        if now < self.pause.resume_end {
            // Spread the waiters behind this one over the rest of the resume phase, each
            // slot shortened at random so resumes are jittered but stay inside the phase.
            let behind = behind.max(1) as u64;
            let slot = (self.pause.resume_end - now) / behind;
            self.pause.gate = now + (slot as f64 * self.rng.random_range(0.5..1.0)) as Nanos;
        }
        Ok(())
    }

    /// Pauses admissions for `d` from `now` (extending, never shortening, a running pause);
    /// queued requests then resume spread over the following `jitter × d`.
    fn pause(&mut self, now: Nanos, d: Duration, jitter: f64) {
        let until = now.saturating_add(nanos(d));
        if until <= self.pause.gate {
            return;
        }
        self.pause = Pause {
            gate: until,
            resume_end: until.saturating_add(nanos(d.mul_f64(jitter))),
        };
    }

    /// Permits of a request handed out and not yet ended, given how many have `ended`.
    fn in_flight(&self, ended: u64) -> u64 {
        self.issued.saturating_sub(ended)
    }
}

impl KeyedLimiter {
    /// A limiter for the keys and limits of `config`, reading time from `clock`. Every rule
    /// is validated now, so a bad limit fails here rather than on first use.
    pub fn new(config: LimiterConfig, clock: Arc<dyn Clock>) -> Result<Self, ConfigError> {
        for rule in config
            .default
            .iter()
            .chain(config.keys.iter().map(|r| &r.limit))
        {
            rule.dimensions()?;
        }
        Ok(Self {
            config,
            clock,
            seed: rand::random(),
            id: NEXT_LIMITER.fetch_add(1, Ordering::Relaxed),
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
        })
    }

    /// A limiter whose jitter draws are seeded (deterministic simulations and tests).
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The configuration this limiter was built from.
    pub fn config(&self) -> &LimiterConfig {
        &self.config
    }

    /// The clock this limiter reads.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Runs `f` on the key's state, created from configuration on first use. A known key
    /// is found under its shard's read lock, without touching the state's reference count.
    fn with_state<R>(&self, key: &LimitKey, f: impl FnOnce(&Arc<KeyState>) -> R) -> R {
        let hash = rustc_hash::FxBuildHasher.hash_one(key);
        // Bits 32..38 pick the shard: the table uses the low bits and the top seven.
        let shard = &self.shards[(hash >> 32) as usize & (SHARDS - 1)].0;
        if let Some(state) = shard.read().find(hash, |s| s.key == *key) {
            return f(state);
        }
        let state = {
            let mut table = shard.write();
            match table.find(hash, |s| s.key == *key) {
                Some(state) => Arc::clone(state),
                None => {
                    let state = Arc::new(self.new_state(key, hash));
                    table.insert_unique(hash, Arc::clone(&state), |s| s.hash);
                    state
                }
            }
        };
        f(&state)
    }

    /// The key's state, created from configuration on first use.
    fn state(&self, key: &LimitKey) -> Arc<KeyState> {
        self.with_state(key, Arc::clone)
    }

    /// The key resolved to its state, created from configuration on first use: keep it and
    /// admit through [`try_acquire_handle`](Self::try_acquire_handle) to skip the lookup.
    pub fn handle(&self, key: &LimitKey) -> KeyHandle {
        KeyHandle {
            state: self.state(key),
        }
    }

    /// Whether `state` is one of this limiter's (a handle or permit may come from another).
    fn owns(&self, state: &KeyState) -> bool {
        state.limiter == self.id
    }

    fn new_state(&self, key: &LimitKey, hash: u64) -> KeyState {
        let unlimited = RateLimitConfig::default();
        let cfg = self.config.config_for(key).unwrap_or(&unlimited);
        // Validated in `new` for every rule (and the default), so this cannot fail; an
        // unmatched key gets no dimensions.
        let dims = cfg.dimensions().unwrap_or_default();
        let limits = MultiLimit::new(cfg.strategy, &dims, self.clock.now());
        KeyState {
            limiter: self.id,
            key: key.clone(),
            hash,
            accounting: cfg.accounting,
            max_wait: cfg.max_wait,
            max_waiters: cfg.max_waiters,
            pause_jitter: cfg.pause_jitter,
            policy: if self.config.config_for(key).is_some() {
                cfg.backoff.policy()
            } else {
                BackoffConfig::default().policy()
            },
            slots: limits.has_slots(),
            inner: Mutex::new(KeyInner {
                last_now: 0,
                limits,
                pause: Pause::default(),
                queue: VecDeque::new(),
                next_ticket: 0,
                admitted: 0,
                issued: 0,
                denied: 0,
                tokens_charged: 0,
                rng: SmallRng::seed_from_u64(self.seed ^ hash),
            }),
            ended: AtomicU64::new(0),
            wake: Notify::new(),
        }
    }

    /// The permit for an admission of `cost`: it holds the key's state, and a permit of a
    /// request tells the state when it ends (in-flight count, concurrency slot).
    fn permit(state: &Arc<KeyState>, cost: Cost, at: Nanos, waited: Nanos) -> Permit {
        Permit::held(
            Arc::clone(state) as Arc<dyn PermitOwner>,
            cost.requests > 0,
            cost,
            at,
            Duration::from_nanos(waited),
        )
    }

    /// [`RateLimiter::try_acquire`] without the async wrapper, also used by the simulator.
    /// Never waits; refuses while `acquire` waiters are queued.
    pub fn try_acquire_now(&self, key: &LimitKey, estimate: Cost) -> Result<Permit, Denial> {
        self.with_state(key, |state| self.admit_now(state, estimate))
    }

    /// [`try_acquire_now`](Self::try_acquire_now) on a key resolved before: the hot path —
    /// the key's lock and one clock read, no lookup.
    pub fn try_acquire_handle(&self, key: &KeyHandle, estimate: Cost) -> Result<Permit, Denial> {
        self.try_acquire_queued(key, estimate, 0)
    }

    /// [`try_acquire_handle`](Self::try_acquire_handle) for a caller that keeps its own
    /// FIFO queue of waiters on the key (the simulator): `behind` of them wait behind this
    /// request, and after a pause they resume spread out as `acquire`'s own waiters would be.
    #[inline]
    pub fn try_acquire_queued(
        &self,
        key: &KeyHandle,
        estimate: Cost,
        behind: usize,
    ) -> Result<Permit, Denial> {
        if self.owns(&key.state) {
            self.admit_now_behind(&key.state, estimate, behind)
        } else {
            self.with_state(key.key(), |state| {
                self.admit_now_behind(state, estimate, behind)
            })
        }
    }

    #[inline]
    fn admit_now(&self, state: &Arc<KeyState>, estimate: Cost) -> Result<Permit, Denial> {
        self.admit_now_behind(state, estimate, 0)
    }

    #[inline]
    fn admit_now_behind(
        &self,
        state: &Arc<KeyState>,
        estimate: Cost,
        behind: usize,
    ) -> Result<Permit, Denial> {
        let now = {
            let mut inner = state.inner.lock();
            // Read under the lock, never below the key's last reading: admission times are
            // monotone with the state they were admitted against, even when threads race,
            // without the clock's shared order (`Clock::now_at_least`).
            let now = self.clock.now_at_least(inner.last_now);
            inner.last_now = inner.last_now.max(now);
            let admitted = if inner.queue.is_empty() {
                inner.admit_behind(now, estimate, behind)
            } else {
                Err(Denial::Queued {
                    waiting: inner.queue.len(),
                })
            };
            if let Err(d) = admitted {
                inner.denied += 1;
                return Err(d);
            }
            now
        };
        Ok(Self::permit(state, estimate, now, 0))
    }

    /// [`RateLimiter::record_usage`], synchronously. A permit of this limiter finds its key's
    /// state in itself; another's is looked up by key.
    pub fn record_usage_now(
        &self,
        permit: Permit,
        actual: Cost,
        meta: &ResponseMeta,
    ) -> UsageRecord {
        self.end_permit(permit, Some(actual), meta)
    }

    /// [`RateLimiter::give_back`], synchronously: the permit's whole charge is refunded,
    /// whatever the key's accounting.
    pub fn give_back_now(&self, permit: Permit) {
        self.end_permit(permit, None, &ResponseMeta::default());
    }

    /// Records `permit` with `actual` usage, or gives its whole charge back (`None`).
    fn end_permit(&self, permit: Permit, actual: Option<Cost>, meta: &ResponseMeta) -> UsageRecord {
        let held = permit
            .owner()
            .and_then(|o| (o as &dyn Any).downcast_ref::<KeyState>())
            .filter(|s| self.owns(s));
        let record = match held {
            Some(state) => self.record_on(state, &permit, actual, meta),
            None => self.with_state(permit.key(), |s| self.record_on(s, &permit, actual, meta)),
        };
        drop(permit); // ends it (in flight, concurrency slot), outside the key's lock
        record
    }

    fn record_on(
        &self,
        state: &KeyState,
        permit: &Permit,
        actual: Option<Cost>,
        meta: &ResponseMeta,
    ) -> UsageRecord {
        let est = permit.charged();
        let (refund_requests, refund_tokens) = match actual {
            Some(actual) => state.accounting.reconcile(est, actual),
            None => TokenAccounting::Actual.reconcile(est, Cost::ZERO),
        };
        let actual = actual.unwrap_or(Cost::ZERO);
        let (now, paused_for, waiting) = {
            let mut inner = state.inner.lock();
            // Not before the key's admissions (see `admit_now`).
            let now = self.clock.now_at_least(inner.last_now);
            inner.last_now = inner.last_now.max(now);
            inner.limits.adjust(now, Unit::Tokens, refund_tokens);
            inner.limits.adjust(now, Unit::Requests, refund_requests);
            inner.tokens_charged = if refund_tokens >= 0 {
                inner.tokens_charged.saturating_sub(refund_tokens as u64)
            } else {
                inner
                    .tokens_charged
                    .saturating_add(refund_tokens.unsigned_abs())
            };
            inner.limits.apply_server_view(now, meta);
            let pause = meta.retry_after.filter(|d| !d.is_zero());
            if let Some(d) = pause {
                inner.pause(now, d, state.pause_jitter);
            }
            (now, pause, !inner.queue.is_empty())
        };
        state.wake_if(waiting);
        UsageRecord {
            key: permit.key().clone(),
            estimated_tokens: est.tokens,
            actual_tokens: actual.tokens,
            refunded_tokens: refund_tokens,
            admitted_at: permit.admitted_at(),
            recorded_at: now,
            paused_for,
        }
    }

    /// [`RateLimiter::backoff_delay`], synchronously.
    pub fn backoff_delay_now(
        &self,
        key: &LimitKey,
        attempt: u32,
        error: &ErrorInfo,
    ) -> Option<Duration> {
        self.with_state(key, |state| {
            let now = self.clock.now();
            let (delay, waiting) = {
                let mut inner = state.inner.lock();
                let delay = state.policy.delay(attempt, error, &mut inner.rng)?;
                if error.rate_limited {
                    inner.pause(now, delay, state.pause_jitter);
                }
                (delay, error.rate_limited && !inner.queue.is_empty())
            };
            state.wake_if(waiting);
            Some(delay)
        })
    }

    /// [`RateLimiter::usage_stats`], synchronously.
    pub fn usage_stats_now(&self, key: &LimitKey) -> UsageStats {
        self.with_state(key, |state| {
            let now = self.clock.now();
            let inner = state.inner.lock();
            UsageStats {
                dimensions: inner.limits.usage(now),
                in_flight: inner.in_flight(state.ended.load(Ordering::Acquire)),
                admitted: inner.admitted,
                denied: inner.denied,
                tokens_charged: inner.tokens_charged,
                paused_for: (inner.pause.gate > now)
                    .then(|| Duration::from_nanos(inner.pause.gate - now)),
            }
        })
    }

    /// [`RateLimiter::reset`], synchronously: full capacity, no pause, counters zeroed.
    /// Permits in flight stay in flight (and keep their concurrency slots) until they end.
    pub fn reset_now(&self, key: &LimitKey) {
        self.with_state(key, |state| {
            let now = self.clock.now();
            let waiting = {
                let mut inner = state.inner.lock();
                inner.limits.reset(now);
                inner.pause = Pause::default();
                inner.admitted = 0;
                inner.denied = 0;
                inner.tokens_charged = 0;
                !inner.queue.is_empty()
            };
            state.wake_if(waiting);
        })
    }

    async fn acquire_queued(&self, key: &LimitKey, estimate: Cost) -> Result<Permit, LimitError> {
        let state = self.state(key);
        let start = self.clock.now();
        let ticket = {
            let mut inner = state.inner.lock();
            if inner.queue.is_empty() {
                match inner.admit(start, estimate) {
                    Ok(()) => {
                        drop(inner);
                        return Ok(Self::permit(&state, estimate, start, 0));
                    }
                    Err(d) => {
                        if let Some(e) = LimitError::from_denial(key, &d) {
                            inner.denied += 1;
                            return Err(e);
                        }
                    }
                }
            }
            if inner.queue.len() >= state.max_waiters {
                inner.denied += 1;
                return Err(LimitError::QueueFull {
                    key: key.clone(),
                    waiting: inner.queue.len(),
                });
            }
            let ticket = inner.next_ticket;
            inner.next_ticket += 1;
            inner.queue.push_back(ticket);
            ticket
        };
        let mut place = QueuePlace {
            state: &state,
            ticket,
            held: true,
        };
        let max_wait = state.max_wait.map(nanos);
        loop {
            // Created before looking at the state, so a change made after the look wakes it.
            let changed = state.wake.notified();
            let now = self.clock.now().max(start);
            let waited = now - start;
            let wait = {
                let mut inner = state.inner.lock();
                if inner.queue.front() != Some(&ticket) {
                    None
                } else {
                    match inner.admit(now, estimate) {
                        Ok(()) => {
                            inner.queue.pop_front();
                            place.held = false;
                            let waiting = !inner.queue.is_empty();
                            drop(inner);
                            state.wake_if(waiting);
                            return Ok(Self::permit(&state, estimate, now, waited));
                        }
                        Err(Denial::Wait { retry_after, .. } | Denial::Paused { retry_after }) => {
                            Some(nanos(retry_after))
                        }
                        Err(Denial::Saturated { .. } | Denial::Queued { .. }) => None,
                        Err(d) => {
                            inner.queue.pop_front();
                            place.held = false;
                            inner.denied += 1;
                            let waiting = !inner.queue.is_empty();
                            drop(inner);
                            state.wake_if(waiting);
                            return Err(LimitError::from_denial(key, &d).unwrap_or(
                                LimitError::Unavailable {
                                    key: key.clone(),
                                    reason: d.to_string(),
                                },
                            ));
                        }
                    }
                }
            };
            if let Some(max) = max_wait {
                let needed = waited.saturating_add(wait.unwrap_or(0));
                if needed > max || waited >= max {
                    state.inner.lock().denied += 1;
                    return Err(LimitError::Timeout {
                        key: key.clone(),
                        needed: Duration::from_nanos(needed),
                        max_wait: Duration::from_nanos(max),
                    });
                }
            }
            let deadline = match (wait, max_wait) {
                (Some(w), _) => Some(now.saturating_add(w)),
                (None, Some(max)) => Some(start.saturating_add(max)),
                (None, None) => None,
            };
            match deadline {
                Some(at) => {
                    tokio::select! {
                        () = self.clock.sleep_until(at) => {}
                        () = changed => {}
                    }
                }
                None => changed.await,
            }
        }
    }
}

/// A waiter's place in a key's queue; dropping it (the `acquire` future was cancelled, or
/// it failed) gives the place back and lets the next waiter look.
struct QueuePlace<'a> {
    state: &'a KeyState,
    ticket: u64,
    held: bool,
}

impl Drop for QueuePlace<'_> {
    fn drop(&mut self) {
        if self.held {
            let mut inner = self.state.inner.lock();
            inner.queue.retain(|t| *t != self.ticket);
            let waiting = !inner.queue.is_empty();
            drop(inner);
            self.state.wake_if(waiting);
        }
    }
}

/// A permit of a request ended (recorded or dropped): one fewer in flight, and its
/// concurrency slot freed.
impl PermitOwner for KeyState {
    fn key(&self) -> &LimitKey {
        &self.key
    }

    fn permit_ended(&self) {
        self.ended.fetch_add(1, Ordering::Release);
        if self.slots {
            let waiting = {
                let mut inner = self.inner.lock();
                inner.limits.release_slot();
                !inner.queue.is_empty()
            };
            self.wake_if(waiting);
        }
    }
}

#[async_trait]
impl RateLimiter for KeyedLimiter {
    async fn acquire(&self, key: &LimitKey, estimate: Cost) -> Result<Permit, LimitError> {
        self.acquire_queued(key, estimate).await
    }

    async fn try_acquire(&self, key: &LimitKey, estimate: Cost) -> Result<Permit, Denial> {
        self.try_acquire_now(key, estimate)
    }

    async fn record_usage(
        &self,
        permit: Permit,
        actual: Cost,
        meta: &ResponseMeta,
    ) -> Result<UsageRecord, LimitError> {
        Ok(self.record_usage_now(permit, actual, meta))
    }

    async fn give_back(&self, permit: Permit) -> Result<(), LimitError> {
        self.give_back_now(permit);
        Ok(())
    }

    async fn backoff_delay(
        &self,
        key: &LimitKey,
        attempt: u32,
        error: &ErrorInfo,
    ) -> Option<Duration> {
        self.backoff_delay_now(key, attempt, error)
    }

    async fn usage_stats(&self, key: &LimitKey) -> Result<UsageStats, LimitError> {
        Ok(self.usage_stats_now(key))
    }

    async fn reset(&self, key: &LimitKey) -> Result<(), LimitError> {
        self.reset_now(key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn limiter(clock: &ManualClock) -> KeyedLimiter {
        let cfg = LimiterConfig::from_toml("[default]\nlimits = { rpm = 2, concurrent = 5 }")
            .expect("test config parses");
        KeyedLimiter::new(cfg, Arc::new(clock.clone())).expect("test config is valid")
    }

    /// A handle admits on the same state as lookups by key: one capacity, one count.
    #[test]
    fn a_handle_admits_on_the_keys_state() {
        let clock = ManualClock::new(0);
        let l = limiter(&clock);
        let key = LimitKey::new("p", "m");
        let h = l.handle(&key);
        assert_eq!(h.key(), &key);
        let a = l
            .try_acquire_handle(&h, Cost::request(0))
            .expect("first fits");
        let b = l
            .try_acquire_now(&key, Cost::request(0))
            .expect("second fits");
        assert!(matches!(
            l.try_acquire_handle(&h, Cost::request(0)),
            Err(Denial::Wait { .. })
        ));
        let stats = l.usage_stats_now(&key);
        assert_eq!((stats.admitted, stats.in_flight, stats.denied), (2, 2, 1));
        assert_eq!(a.key(), &key);
        drop(a);
        l.record_usage_now(b, Cost::request(0), &ResponseMeta::default());
        assert_eq!(l.usage_stats_now(&key).in_flight, 0);
    }

    /// A handle or a permit of another limiter is looked up by key in this one: it never
    /// charges or frees the other limiter's state.
    #[test]
    fn another_limiters_handle_and_permit_go_by_key() {
        let clock = ManualClock::new(0);
        let (mine, other) = (limiter(&clock), limiter(&clock));
        let key = LimitKey::new("p", "m");
        let foreign = other.handle(&key);
        let p = mine
            .try_acquire_handle(&foreign, Cost::request(0))
            .expect("fits");
        assert_eq!(mine.usage_stats_now(&key).admitted, 1);
        assert_eq!(other.usage_stats_now(&key).admitted, 0);

        let q = other.try_acquire_now(&key, Cost::request(0)).expect("fits");
        let record = mine.record_usage_now(q, Cost::request(0), &ResponseMeta::default());
        assert_eq!(record.key, key);
        assert_eq!(other.usage_stats_now(&key).in_flight, 0, "the permit ended");
        assert_eq!(mine.usage_stats_now(&key).in_flight, 1, "still `p`");
        drop(p);
        assert_eq!(mine.usage_stats_now(&key).in_flight, 0);
    }

    /// Keys spread over the shards and are each found again, with their own state.
    #[test]
    fn many_keys_each_keep_their_state() {
        let clock = ManualClock::new(0);
        let l = limiter(&clock);
        let keys: Vec<LimitKey> = (0..1_000)
            .map(|i| LimitKey::new("p", format!("m{i}")))
            .collect();
        for k in &keys {
            drop(l.try_acquire_now(k, Cost::request(0)).expect("fits"));
        }
        let used = l.shards.iter().filter(|s| !s.0.read().is_empty()).count();
        assert!(used > SHARDS / 2, "{used} of {SHARDS} shards used");
        for k in &keys {
            assert_eq!(l.usage_stats_now(k).admitted, 1, "{k}");
            assert_eq!(l.handle(k).key(), k);
        }
    }
}
