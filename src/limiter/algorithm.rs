//! One dimension's state, whatever the strategy: the enum the composition layer
//! ([`multi`](super::multi)) drives. Every method is pure in time (`now` is passed in) and
//! O(1) or bounded by the limit's amount.
//!
//! The check/commit split is what makes several dimensions all-or-nothing: the caller
//! checks every dimension, and commits to all of them only when all admit.

use crate::clock::Nanos;

use super::config::{Limit, Strategy};
use super::token_bucket::TokenBucket;

/// The state of one dimension under one strategy.
#[derive(Debug, Clone)]
pub enum DimensionState {
    /// [`TokenBucket`].
    TokenBucket(TokenBucket),
}

impl DimensionState {
    /// Fresh (full) state for `limit` under `strategy` at `now`. `limit.kind` must not be
    /// `Concurrent` (concurrency is not a rate; the composition layer counts it).
    pub fn new(strategy: Strategy, limit: Limit, now: Nanos) -> Self {
        let _ = strategy;
        Self::TokenBucket(TokenBucket::new(limit, now))
    }

    /// `Ok` when `cost` fits at `now`; otherwise the exact wait in nanoseconds until it
    /// fits if nothing else is admitted meanwhile. Never changes state. Callers test
    /// `cost > capacity()` first: for such a cost the wait is meaningless.
    pub fn check(&self, now: Nanos, cost: u64) -> Result<(), Nanos> {
        match self {
            Self::TokenBucket(s) => s.check(now, cost),
        }
    }

    /// Admits `cost` at `now`; the caller has just checked that it fits.
    pub fn commit(&mut self, now: Nanos, cost: u64) {
        match self {
            Self::TokenBucket(s) => s.commit(now, cost),
        }
    }

    /// Reconciliation: gives back `delta` units (`delta > 0`) or charges `-delta` more.
    pub fn adjust(&mut self, now: Nanos, delta: i64) {
        match self {
            Self::TokenBucket(s) => s.adjust(now, delta),
        }
    }

    /// Units that could be admitted at `now`.
    pub fn remaining(&self, now: Nanos) -> u64 {
        match self {
            Self::TokenBucket(s) => s.remaining(now),
        }
    }

    /// The largest cost that can ever be admitted (bucket size / window amount).
    pub fn capacity(&self) -> u64 {
        match self {
            Self::TokenBucket(s) => s.capacity(),
        }
    }

    /// Nanoseconds from `now` until the dimension is back to full capacity.
    pub fn reset_after(&self, now: Nanos) -> Nanos {
        match self {
            Self::TokenBucket(s) => s.reset_after(now),
        }
    }

    /// Lowers what remains at `now` to at most `remaining` units (server-reported), never
    /// raising it.
    pub fn clamp_remaining(&mut self, now: Nanos, remaining: u64) {
        match self {
            Self::TokenBucket(s) => s.clamp_remaining(now, remaining),
        }
    }

    /// Back to full at `now`.
    pub fn reset(&mut self, now: Nanos) {
        match self {
            Self::TokenBucket(s) => s.reset(now),
        }
    }
}
