//! One dimension's state, whatever the strategy: the enum the composition layer
//! ([`multi`](super::multi)) drives. Every method is pure in time (`now` is passed in) and
//! O(1) or bounded by the limit's amount.
//!
//! The check/commit split is what makes several dimensions all-or-nothing: the caller
//! checks every dimension, and commits to all of them only when all admit.
//!
//! Dispatch is a `match` on the enum (no trait object on the hot path). Every strategy
//! tolerates a clock that goes backwards: a `now` earlier than a time it has already seen
//! never panics and never admits what the latest time seen would refuse, and what it
//! admits still meets the strategy's bound when stamped with the latest time the state was
//! *updated* at (see each strategy's docs for how). `check` takes `&self` and so cannot
//! remember the times it was asked at: a caller that wants those honoured too passes a
//! monotone `now` (the keyed limiter reads its clock under the key's lock).

use crate::clock::Nanos;

use super::config::{Limit, Strategy};
use super::gcra::Gcra;
use super::leaky_bucket::LeakyBucket;
use super::sliding_counter::SlidingCounter;
use super::sliding_log::SlidingLog;
use super::token_bucket::TokenBucket;

pub use super::params::MAX_WINDOW_NANOS;

/// The state of one dimension under one strategy.
#[derive(Debug, Clone)]
pub enum DimensionState {
    /// [`TokenBucket`]: capacity `burst`, continuous refill.
    TokenBucket(TokenBucket),
    /// [`Gcra`]: the token bucket's arrival curve in one integer of state.
    Gcra(Gcra),
    /// [`SlidingLog`]: exact sliding window, ≤ `amount` (time, cost) entries.
    SlidingLog(SlidingLog),
    /// [`SlidingCounter`]: two fixed windows, weighted; O(1), bounded overshoot.
    SlidingCounter(SlidingCounter),
    /// [`LeakyBucket`]: a pacing queue, one admission per slot, no bursts.
    LeakyBucket(LeakyBucket),
}

impl DimensionState {
    /// Fresh (full) state for `limit` under `strategy` at `now`. `limit.kind` must not be
    /// `Concurrent` (concurrency is not a rate; the composition layer counts it).
    pub fn new(strategy: Strategy, limit: Limit, now: Nanos) -> Self {
        match strategy {
            Strategy::TokenBucket => Self::TokenBucket(TokenBucket::new(limit, now)),
            Strategy::Gcra => Self::Gcra(Gcra::new(limit, now)),
            Strategy::SlidingLog => Self::SlidingLog(SlidingLog::new(limit, now)),
            Strategy::SlidingCounter => Self::SlidingCounter(SlidingCounter::new(limit, now)),
            Strategy::LeakyBucket => Self::LeakyBucket(LeakyBucket::new(limit, now)),
        }
    }

    /// The strategy this state runs.
    pub fn strategy(&self) -> Strategy {
        match self {
            Self::TokenBucket(_) => Strategy::TokenBucket,
            Self::Gcra(_) => Strategy::Gcra,
            Self::SlidingLog(_) => Strategy::SlidingLog,
            Self::SlidingCounter(_) => Strategy::SlidingCounter,
            Self::LeakyBucket(_) => Strategy::LeakyBucket,
        }
    }

    /// `Ok` when `cost` fits at `now`; otherwise the exact wait in nanoseconds until it
    /// fits if nothing else is admitted meanwhile (refused at `now + wait - 1`, admitted at
    /// `now + wait`). Never changes state. Callers test `cost > capacity()` first: for such
    /// a cost the answer is `Err(Nanos::MAX)` ("never").
    #[inline]
    pub fn check(&self, now: Nanos, cost: u64) -> Result<(), Nanos> {
        match self {
            Self::TokenBucket(s) => s.check(now, cost),
            Self::Gcra(s) => s.check(now, cost),
            Self::SlidingLog(s) => s.check(now, cost),
            Self::SlidingCounter(s) => s.check(now, cost),
            Self::LeakyBucket(s) => s.check(now, cost),
        }
    }

    /// Admits `cost` at `now`; the caller has just checked that it fits.
    #[inline]
    pub fn commit(&mut self, now: Nanos, cost: u64) {
        match self {
            Self::TokenBucket(s) => s.commit(now, cost),
            Self::Gcra(s) => s.commit(now, cost),
            Self::SlidingLog(s) => s.commit(now, cost),
            Self::SlidingCounter(s) => s.commit(now, cost),
            Self::LeakyBucket(s) => s.commit(now, cost),
        }
    }

    /// Reconciliation: gives back `delta` units (`delta > 0`) or charges `-delta` more.
    /// Each strategy's docs say where the units go (which entries, which window).
    pub fn adjust(&mut self, now: Nanos, delta: i64) {
        match self {
            Self::TokenBucket(s) => s.adjust(now, delta),
            Self::Gcra(s) => s.adjust(now, delta),
            Self::SlidingLog(s) => s.adjust(now, delta),
            Self::SlidingCounter(s) => s.adjust(now, delta),
            Self::LeakyBucket(s) => s.adjust(now, delta),
        }
    }

    /// Units that could be admitted at `now` (a cost `c ≥ 1` fits iff `c ≤ remaining`).
    pub fn remaining(&self, now: Nanos) -> u64 {
        match self {
            Self::TokenBucket(s) => s.remaining(now),
            Self::Gcra(s) => s.remaining(now),
            Self::SlidingLog(s) => s.remaining(now),
            Self::SlidingCounter(s) => s.remaining(now),
            Self::LeakyBucket(s) => s.remaining(now),
        }
    }

    /// The largest cost that can ever be admitted: `burst` for the token bucket and GCRA,
    /// `amount` for the sliding windows and the leaky bucket.
    pub fn capacity(&self) -> u64 {
        match self {
            Self::TokenBucket(s) => s.capacity(),
            Self::Gcra(s) => s.capacity(),
            Self::SlidingLog(s) => s.capacity(),
            Self::SlidingCounter(s) => s.capacity(),
            Self::LeakyBucket(s) => s.capacity(),
        }
    }

    /// Nanoseconds from `now` until the dimension is back to full capacity.
    pub fn reset_after(&self, now: Nanos) -> Nanos {
        match self {
            Self::TokenBucket(s) => s.reset_after(now),
            Self::Gcra(s) => s.reset_after(now),
            Self::SlidingLog(s) => s.reset_after(now),
            Self::SlidingCounter(s) => s.reset_after(now),
            Self::LeakyBucket(s) => s.reset_after(now),
        }
    }

    /// Lowers what remains at `now` to at most `remaining` units (server-reported), never
    /// raising it. Exception: the leaky bucket applies only `remaining == 0` (a pacer is
    /// not a window count; see [`LeakyBucket::clamp_remaining`]).
    pub fn clamp_remaining(&mut self, now: Nanos, remaining: u64) {
        match self {
            Self::TokenBucket(s) => s.clamp_remaining(now, remaining),
            Self::Gcra(s) => s.clamp_remaining(now, remaining),
            Self::SlidingLog(s) => s.clamp_remaining(now, remaining),
            Self::SlidingCounter(s) => s.clamp_remaining(now, remaining),
            Self::LeakyBucket(s) => s.clamp_remaining(now, remaining),
        }
    }

    /// Back to full at `now`.
    pub fn reset(&mut self, now: Nanos) {
        match self {
            Self::TokenBucket(s) => s.reset(now),
            Self::Gcra(s) => s.reset(now),
            Self::SlidingLog(s) => s.reset(now),
            Self::SlidingCounter(s) => s.reset(now),
            Self::LeakyBucket(s) => s.reset(now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limiter::config::RateLimitType;

    #[test]
    fn new_builds_the_requested_strategy() {
        let limit = Limit {
            kind: RateLimitType::RequestsPerMinute,
            amount: 60,
            burst: 10,
        };
        for s in [
            Strategy::TokenBucket,
            Strategy::Gcra,
            Strategy::SlidingLog,
            Strategy::SlidingCounter,
            Strategy::LeakyBucket,
        ] {
            let d = DimensionState::new(s, limit, 0);
            assert_eq!(d.strategy(), s);
            let cap = if matches!(s, Strategy::TokenBucket | Strategy::Gcra) {
                10
            } else {
                60
            };
            assert_eq!(d.capacity(), cap, "{s:?}");
            assert_eq!(d.check(0, cap + 1), Err(Nanos::MAX), "{s:?}");
        }
    }
}
