//! Token bucket: capacity `B` (the limit's `burst`), refilled continuously at
//! `amount / window`. Any interval of length `t` admits at most `B + r·t`.
//!
//! Exact integer arithmetic: the level is kept in *scaled units* of `unit · window_ns`, so
//! refilling for `d` nanoseconds adds exactly `amount · d` and a cost `c` needs exactly
//! `c · window_ns`. Waits are rounded up to the next nanosecond, so a denial's
//! `retry_after` is exact: denied one nanosecond before it, admitted at it.

use crate::clock::Nanos;

use super::config::Limit;

/// A token bucket for one dimension. Pure: every method takes `now`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Refill per nanosecond, in scaled units (= the limit's amount).
    amount: u128,
    /// Scaled units per token (= window in ns).
    unit: u128,
    /// Full level, scaled (= burst · window_ns).
    full: u128,
    /// Level at `last`, scaled; may be negative after a charge beyond the estimate.
    level: i128,
    /// Time of the last update; never moves backwards.
    last: Nanos,
}

impl TokenBucket {
    /// A full bucket for `limit` at time `now`. `limit.kind` must have a window.
    pub fn new(limit: Limit, now: Nanos) -> Self {
        let window = limit.kind.window().map_or(1, |w| w.as_nanos().max(1));
        let full = u128::from(limit.burst) * window;
        Self {
            amount: u128::from(limit.amount),
            unit: window,
            full,
            level: full as i128,
            last: now,
        }
    }

    /// Brings the level up to `now` (a `now` before the last update counts as no time).
    fn refill(&mut self, now: Nanos) {
        if now > self.last {
            let gained = u128::from(now - self.last) * self.amount;
            self.level = (self.level + gained.min(self.full * 2) as i128).min(self.full as i128);
            self.last = now;
        }
    }

    fn level_at(&self, now: Nanos) -> i128 {
        let mut b = self.clone();
        b.refill(now);
        b.level
    }

    /// `Ok` if `cost` fits at `now`, else the exact wait in nanoseconds. Does not change state.
    pub fn check(&self, now: Nanos, cost: u64) -> Result<(), Nanos> {
        let need = u128::from(cost) * self.unit;
        let level = self.level_at(now);
        if level >= need as i128 {
            return Ok(());
        }
        let missing = (need as i128 - level) as u128;
        Err(u64::try_from(missing.div_ceil(self.amount.max(1))).unwrap_or(u64::MAX))
    }

    /// Takes `cost` at `now` (the caller checked it fits).
    pub fn commit(&mut self, now: Nanos, cost: u64) {
        self.refill(now);
        self.level -= (u128::from(cost) * self.unit) as i128;
    }

    /// Gives back `delta` units (or takes `-delta` more) at `now`, never above full.
    pub fn adjust(&mut self, now: Nanos, delta: i64) {
        self.refill(now);
        let scaled = i128::from(delta) * self.unit as i128;
        self.level = (self.level + scaled).min(self.full as i128);
    }

    /// Whole units that fit now.
    pub fn remaining(&self, now: Nanos) -> u64 {
        let level = self.level_at(now).max(0) as u128;
        u64::try_from(level / self.unit).unwrap_or(u64::MAX)
    }

    /// Nanoseconds until the bucket is full again.
    pub fn reset_after(&self, now: Nanos) -> Nanos {
        let missing = (self.full as i128 - self.level_at(now)).max(0) as u128;
        u64::try_from(missing.div_ceil(self.amount.max(1))).unwrap_or(u64::MAX)
    }

    /// Lowers the level to at most `remaining` units (never raises it).
    pub fn clamp_remaining(&mut self, now: Nanos, remaining: u64) {
        self.refill(now);
        let cap = (u128::from(remaining) * self.unit) as i128;
        self.level = self.level.min(cap);
    }

    /// The largest cost that ever fits: the bucket size in units.
    pub fn capacity(&self) -> u64 {
        u64::try_from(self.full / self.unit).unwrap_or(u64::MAX)
    }

    /// Full again at `now`.
    pub fn reset(&mut self, now: Nanos) {
        self.level = self.full as i128;
        self.last = now;
    }
}
