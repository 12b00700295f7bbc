//! Token bucket: capacity `B` (the limit's `burst`), refilled continuously at
//! `r = amount / window`. **Bound:** any closed interval of length `t` admits at most
//! `B + r·t` units (the arrival curve; checked by
//! [`invariants::arrival_curve`](super::invariants::arrival_curve)).
//!
//! Exact integer arithmetic: the level is kept in *scaled units*, `window_ns` of them per
//! token, so refilling for `d` nanoseconds adds exactly `amount · d` and a cost `c` needs
//! exactly `c · window_ns` — no rounding even when `window / amount` is not a whole number
//! of nanoseconds (60 s / 7). Waits are rounded up to the next nanosecond, so a denial's
//! wait is exact: refused one nanosecond before it, admitted at it.
//!
//! - **Weighted equals repeated:** admitting `n` at once leaves the same state as `n` unit
//!   admissions at the same instant.
//! - **Refunds and extra charges** (`adjust`) act on the level at once: a refund adds units
//!   (never above full), an extra charge takes them and may leave the level negative (a
//!   debt that refills like any deficit).
//! - **Clock going backwards:** a `now` earlier than the last update counts as no time
//!   passing (the bucket behaves as at the latest time seen), so it never admits more; the
//!   wait it returns then includes the lag, so it stays exact.

use crate::clock::Nanos;

use super::config::Limit;
use super::params::{saturate, Params};

/// The lowest level (scaled) a debt may reach; keeps `full - level` inside `i128`.
const MIN_LEVEL: i128 = -(1 << 125);

/// A token bucket for one dimension. Pure: every method takes `now`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Refill per nanosecond, in scaled units (= the limit's amount, ≥ 1).
    amount: u128,
    /// Scaled units per token (= window in ns, ≤ 2^62).
    unit: u128,
    /// Full level, scaled (= burst · window_ns ≤ 2^126).
    full: i128,
    /// Level at `last`, scaled; negative after a charge beyond the estimate.
    level: i128,
    /// Time of the last update; never moves backwards.
    last: Nanos,
}

impl TokenBucket {
    /// A full bucket for `limit` at time `now`.
    pub fn new(limit: Limit, now: Nanos) -> Self {
        let p = Params::of(&limit);
        let unit = u128::from(p.window);
        // burst < 2^64 and unit ≤ 2^62: the product is < 2^126.
        let full = (u128::from(p.burst) * unit) as i128;
        Self {
            amount: u128::from(p.amount),
            unit,
            full,
            level: full,
            last: now,
        }
    }

    /// The level at `now` (a `now` before the last update counts as no time).
    #[inline]
    fn level_at(&self, now: Nanos) -> i128 {
        if now <= self.last || self.level >= self.full {
            return self.level.min(self.full);
        }
        // (2^64 - 1)^2 < 2^128: the product cannot overflow.
        let gained = u128::from(now - self.last) * self.amount;
        // full ≤ 2^126 and level ≥ -2^125: the difference is positive and < 2^127.
        let missing = (self.full - self.level) as u128;
        if gained >= missing {
            self.full
        } else {
            self.level + gained as i128
        }
    }

    /// Brings the level up to `now`; `last` never moves backwards.
    #[inline]
    fn refill(&mut self, now: Nanos) {
        self.level = self.level_at(now);
        self.last = self.last.max(now);
    }

    /// Scaled size of `cost` units (< 2^126).
    #[inline]
    fn scaled(&self, cost: u64) -> i128 {
        (u128::from(cost) * self.unit) as i128
    }

    /// Nanoseconds until the level at `now` has gained `missing` scaled units, counting the
    /// lag when `now` is before the last update.
    #[inline]
    fn wait_for(&self, now: Nanos, missing: u128) -> Nanos {
        let lag = self.last.saturating_sub(now);
        saturate(missing.div_ceil(self.amount)).saturating_add(lag)
    }

    /// `Ok` if `cost` fits at `now`, else the exact wait in nanoseconds (`Nanos::MAX` when
    /// `cost > capacity()`). Does not change state.
    #[inline]
    pub fn check(&self, now: Nanos, cost: u64) -> Result<(), Nanos> {
        let need = self.scaled(cost);
        let level = self.level_at(now);
        if level >= need {
            return Ok(());
        }
        if need > self.full {
            return Err(Nanos::MAX);
        }
        Err(self.wait_for(now, (need - level) as u128))
    }

    /// Takes `cost` at `now` (the caller checked it fits).
    #[inline]
    pub fn commit(&mut self, now: Nanos, cost: u64) {
        self.refill(now);
        self.level = (self.level - self.scaled(cost)).max(MIN_LEVEL);
    }

    /// Gives back `delta` units (or takes `-delta` more) at `now`, never above full.
    pub fn adjust(&mut self, now: Nanos, delta: i64) {
        self.refill(now);
        // |delta| ≤ 2^63 and unit ≤ 2^62: |scaled| ≤ 2^125.
        let scaled = i128::from(delta) * self.unit as i128;
        self.level = (self.level + scaled).clamp(MIN_LEVEL, self.full);
    }

    /// Whole units that fit at `now`.
    pub fn remaining(&self, now: Nanos) -> u64 {
        let level = self.level_at(now).max(0) as u128;
        saturate(level / self.unit)
    }

    /// Nanoseconds from `now` until the bucket is full again.
    pub fn reset_after(&self, now: Nanos) -> Nanos {
        let level = self.level_at(now);
        if level >= self.full {
            return 0;
        }
        self.wait_for(now, (self.full - level) as u128)
    }

    /// Lowers the level to at most `remaining` units (never raises it).
    pub fn clamp_remaining(&mut self, now: Nanos, remaining: u64) {
        self.refill(now);
        self.level = self.level.min(self.scaled(remaining));
    }

    /// The largest cost that ever fits: the bucket size (`burst`) in units.
    pub fn capacity(&self) -> u64 {
        saturate(self.full as u128 / self.unit)
    }

    /// Full again at `now`.
    pub fn reset(&mut self, now: Nanos) {
        self.level = self.full;
        self.last = self.last.max(now);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::limiter::config::RateLimitType;

    fn bucket(amount: u64, burst: u64, window: Duration) -> TokenBucket {
        let kind = RateLimitType::RequestsPer(window);
        TokenBucket::new(
            Limit {
                kind,
                amount,
                burst,
            },
            0,
        )
    }

    #[test]
    fn refills_exactly_for_non_integer_intervals() {
        // 7 per minute: one token every 8_571_428_571.43 ns.
        let mut b = bucket(7, 1, Duration::from_secs(60));
        b.commit(0, 1);
        let wait = b.check(0, 1).unwrap_err();
        assert_eq!(wait, 8_571_428_572);
        assert!(b.check(wait - 1, 1).is_err());
        assert!(b.check(wait, 1).is_ok());
        assert_eq!(b.reset_after(0), wait);
    }

    #[test]
    fn burst_then_sustained_rate() {
        let mut b = bucket(10, 5, Duration::from_secs(1));
        for _ in 0..5 {
            assert!(b.check(0, 1).is_ok());
            b.commit(0, 1);
        }
        assert_eq!(b.check(0, 1), Err(100_000_000));
        assert_eq!(b.remaining(250_000_000), 2);
        assert_eq!(b.capacity(), 5);
    }

    #[test]
    fn adjust_refunds_never_above_full_and_charges_a_debt() {
        let mut b = bucket(10, 10, Duration::from_secs(1));
        b.commit(0, 4);
        b.adjust(0, 100);
        assert_eq!(b.remaining(0), 10);
        b.adjust(0, -15);
        assert_eq!(b.remaining(0), 0);
        // A debt of 5 units plus one unit to admit: 0.6 s at 10/s.
        assert_eq!(b.check(0, 1), Err(600_000_000));
    }

    #[test]
    fn clamp_remaining_lowers_but_never_raises() {
        let mut b = bucket(10, 10, Duration::from_secs(1));
        b.clamp_remaining(0, 3);
        assert_eq!(b.remaining(0), 3);
        b.clamp_remaining(0, 8);
        assert_eq!(b.remaining(0), 3);
    }

    #[test]
    fn clock_going_backwards_counts_as_no_time_and_wait_includes_the_lag() {
        let mut b = bucket(1, 1, Duration::from_secs(1));
        b.commit(5_000_000_000, 1);
        let wait = b.check(4_000_000_000, 1).unwrap_err();
        assert_eq!(wait, 2_000_000_000);
        assert!(b.check(4_000_000_000 + wait - 1, 1).is_err());
        assert!(b.check(4_000_000_000 + wait, 1).is_ok());
    }

    #[test]
    fn extreme_inputs_do_not_panic() {
        let mut b = bucket(u64::MAX, u64::MAX, Duration::MAX);
        b.commit(u64::MAX, u64::MAX);
        b.adjust(0, i64::MIN);
        b.adjust(u64::MAX, i64::MIN);
        b.adjust(u64::MAX, i64::MAX);
        let _ = b.check(0, u64::MAX);
        let _ = b.reset_after(0);
        b.clamp_remaining(3, u64::MAX);
        assert_eq!(b.capacity(), u64::MAX);
    }
}
