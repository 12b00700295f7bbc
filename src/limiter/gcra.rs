//! GCRA (generic cell rate algorithm), virtual-scheduling form: the token bucket's arrival
//! curve kept in **one integer of state**, the theoretical arrival time (TAT).
//!
//! With emission interval `T = window / amount` and capacity `B` (the limit's `burst`), a
//! cost `c` is admitted at `t` iff `max(TAT, t) + c·T − t ≤ B·T`, and then
//! `TAT ← max(TAT, t) + c·T`. **Bound:** any closed interval of length `t` admits at most
//! `B + t/T` units — the same arrival curve as a token bucket of size `B` refilled at
//! `1/T`; in fact, for a clock that does not go backwards the two make identical decisions
//! with identical waits (a property test checks this).
//!
//! Exact integer arithmetic: time is scaled by `amount` (TAT is stored in units of
//! `1/amount` ns), so `T` becomes exactly `window_ns` scaled units even when
//! `window / amount` is not a whole number of nanoseconds (60 s / 7). Waits are rounded up
//! to the next nanosecond: refused one nanosecond before the wait, admitted at it. Exact
//! while `now · amount + burst · window_ns < 2^128` (e.g. 584 years of uptime at 10^19
//! units per window); beyond that TAT saturates, which only ever refuses more.
//!
//! - **Weighted equals repeated:** admitting `n` at once moves TAT by `n·T`, exactly as `n`
//!   unit admissions at the same instant do.
//! - **Refunds and extra charges** (`adjust`): a refund moves TAT back by `δ·T` (never
//!   before `now`, i.e. never above full); an extra charge moves it forward by `δ·T`
//!   (a debt, like a token bucket's negative level).
//! - **Clock going backwards:** nothing to clamp: an earlier `t` only makes
//!   `TAT − t` larger, so it refuses more, never admits extra, and the wait it returns
//!   (counted from that `t`) is still exact. (A refund at an earlier `t` may move TAT back
//!   to that `t`, which is full at every later time as well.)

use crate::clock::Nanos;

use super::config::Limit;
use super::params::{saturate, Params};

/// GCRA state for one dimension: one integer (TAT), plus the limit's constants.
#[derive(Debug, Clone)]
pub struct Gcra {
    /// Theoretical arrival time, scaled (ns · amount).
    tat: u128,
    /// Scale of time: scaled units per nanosecond (= amount, ≥ 1).
    amount: u128,
    /// Emission interval `T`, scaled (= window in ns).
    interval: u128,
    /// `B·T`, scaled (= burst · window_ns): how far TAT may run ahead of `now`.
    tolerance: u128,
    /// The bucket size in units (`burst`).
    burst: u64,
}

impl Gcra {
    /// A full (idle) state for `limit` at time `now`.
    pub fn new(limit: Limit, now: Nanos) -> Self {
        let p = Params::of(&limit);
        let amount = u128::from(p.amount);
        let interval = u128::from(p.window);
        Self {
            tat: u128::from(now) * amount,
            amount,
            interval,
            tolerance: u128::from(p.burst) * interval,
            burst: p.burst,
        }
    }

    /// `now` scaled ((2^64 − 1) · (2^64 − 1) < 2^128: cannot overflow).
    #[inline]
    fn scaled_now(&self, now: Nanos) -> u128 {
        u128::from(now) * self.amount
    }

    /// Scaled duration of `cost` units (`cost · T`, < 2^126).
    #[inline]
    fn span(&self, cost: u64) -> u128 {
        u128::from(cost) * self.interval
    }

    /// Nanoseconds from `now` until scaled time `at` (rounded up).
    #[inline]
    fn until(&self, now: Nanos, at: u128) -> Nanos {
        saturate(at.div_ceil(self.amount)).saturating_sub(now)
    }

    /// `Ok` if `cost` fits at `now`, else the exact wait in nanoseconds (`Nanos::MAX` when
    /// `cost > capacity()`). Does not change state.
    #[inline]
    pub fn check(&self, now: Nanos, cost: u64) -> Result<(), Nanos> {
        if cost > self.burst {
            return Err(Nanos::MAX);
        }
        // Admitted iff TAT + c·T − B·T ≤ t (with c ≤ B, max(TAT, t) needs no case split).
        let allow_at = self
            .tat
            .saturating_add(self.span(cost))
            .saturating_sub(self.tolerance);
        let t = self.scaled_now(now);
        if allow_at <= t {
            Ok(())
        } else {
            Err(self.until(now, allow_at))
        }
    }

    /// Admits `cost` at `now` (the caller checked it fits).
    #[inline]
    pub fn commit(&mut self, now: Nanos, cost: u64) {
        let t = self.scaled_now(now);
        self.tat = self.tat.max(t).saturating_add(self.span(cost));
    }

    /// Gives back `delta` units (TAT moves back, never before `now`) or charges `-delta`
    /// more (TAT moves forward).
    pub fn adjust(&mut self, now: Nanos, delta: i64) {
        let t = self.scaled_now(now);
        let span = self.span(delta.unsigned_abs());
        if delta >= 0 {
            if self.tat > t {
                self.tat = self.tat.saturating_sub(span).max(t);
            }
        } else {
            self.tat = self.tat.max(t).saturating_add(span);
        }
    }

    /// Whole units that fit at `now`: `⌊(B·T − (TAT − t)) / T⌋`, at most `burst`.
    pub fn remaining(&self, now: Nanos) -> u64 {
        let debt = self.tat.saturating_sub(self.scaled_now(now));
        saturate(self.tolerance.saturating_sub(debt) / self.interval)
    }

    /// Nanoseconds from `now` until the state is idle (full) again: until TAT.
    pub fn reset_after(&self, now: Nanos) -> Nanos {
        if self.tat <= self.scaled_now(now) {
            0
        } else {
            self.until(now, self.tat)
        }
    }

    /// Lowers what remains to at most `remaining` units (never raises it): TAT moves to at
    /// least `t + (B − remaining)·T`.
    pub fn clamp_remaining(&mut self, now: Nanos, remaining: u64) {
        if remaining < self.burst {
            let floor = self
                .scaled_now(now)
                .saturating_add(self.span(self.burst - remaining));
            self.tat = self.tat.max(floor);
        }
    }

    /// The largest cost that ever fits: the bucket size (`burst`) in units.
    pub fn capacity(&self) -> u64 {
        self.burst
    }

    /// Full again at `now`.
    pub fn reset(&mut self, now: Nanos) {
        self.tat = self.scaled_now(now);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::limiter::config::RateLimitType;

    fn gcra(amount: u64, burst: u64, window: Duration) -> Gcra {
        let kind = RateLimitType::RequestsPer(window);
        Gcra::new(
            Limit {
                kind,
                amount,
                burst,
            },
            0,
        )
    }

    #[test]
    fn non_integer_emission_interval_is_exact() {
        // 7 per minute, burst 7: after the burst, T = 8_571_428_571.43 ns and the k-th
        // further admission is allowed at exactly ⌈k · 60 s / 7⌉, with no drift.
        let mut g = gcra(7, 7, Duration::from_secs(60));
        g.commit(0, 7);
        let mut t = 0;
        for k in 1..=70u64 {
            let wait = g.check(t, 1).unwrap_err();
            t += wait;
            let expected = (u128::from(k) * 60_000_000_000).div_ceil(7) as u64;
            assert_eq!(t, expected, "admission {k}");
            assert!(g.check(t - 1, 1).is_err());
            g.commit(t, 1);
        }
        assert_eq!(
            t, 600_000_000_000,
            "70 admissions at 7/min take exactly 10 minutes"
        );
    }

    #[test]
    fn burst_then_sustained_rate() {
        let mut g = gcra(10, 5, Duration::from_secs(1));
        for _ in 0..5 {
            assert!(g.check(0, 1).is_ok());
            g.commit(0, 1);
        }
        assert_eq!(g.check(0, 1), Err(100_000_000));
        assert_eq!(g.remaining(250_000_000), 2);
        assert_eq!(g.reset_after(0), 500_000_000);
        assert_eq!(g.check(0, 6), Err(Nanos::MAX));
    }

    #[test]
    fn adjust_and_clamp() {
        let mut g = gcra(10, 10, Duration::from_secs(1));
        g.commit(0, 4);
        g.adjust(0, 100);
        assert_eq!(g.remaining(0), 10);
        g.adjust(0, -15);
        assert_eq!(g.remaining(0), 0);
        assert_eq!(g.check(0, 1), Err(600_000_000));
        g.reset(0);
        g.clamp_remaining(0, 3);
        assert_eq!(g.remaining(0), 3);
        g.clamp_remaining(0, 8);
        assert_eq!(g.remaining(0), 3);
    }

    #[test]
    fn an_earlier_clock_refuses_more_with_an_exact_wait() {
        let mut g = gcra(1, 1, Duration::from_secs(1));
        g.commit(5_000_000_000, 1);
        let wait = g.check(4_000_000_000, 1).unwrap_err();
        assert_eq!(wait, 2_000_000_000);
        assert!(g.check(4_000_000_000 + wait - 1, 1).is_err());
        assert!(g.check(4_000_000_000 + wait, 1).is_ok());
    }

    #[test]
    fn extreme_inputs_do_not_panic() {
        let mut g = gcra(u64::MAX, u64::MAX, Duration::MAX);
        g.commit(u64::MAX, u64::MAX);
        g.adjust(0, i64::MIN);
        g.adjust(u64::MAX, i64::MAX);
        let _ = g.check(0, u64::MAX);
        let _ = g.reset_after(0);
        let _ = g.remaining(0);
        g.clamp_remaining(3, 0);
    }
}
