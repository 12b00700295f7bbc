//! Leaky bucket as a pacing queue: admissions leave at a constant pace `T = window / amount`
//! per unit, with no bursts. This is what smooths traffic to a provider's short-window rate
//! (Azure enforces its per-minute request quota per 10 s: pace at `T = 10 s / RPM-per-10 s`).
//!
//! The state is the next free slot `S`. A request is admitted only **at its slot**: at
//! `t ≥ S`, whatever its cost; admitting cost `c` then books the next `c` slots,
//! `S ← base + c·T`, where `base` is `S` if the request came within a nanosecond of its slot
//! (a slot that falls between two nanoseconds is honoured at the later one without losing
//! the fraction, so the long-run pace has no drift) and `t` otherwise (an idle queue banks
//! no credit: no bursts).
//!
//! **Bound (pacing, checked by [`invariants::pacing`](super::invariants::pacing)):** for any
//! two admissions `i < j`, the units admitted from `i` up to (not including) `j` took their
//! time: `Σ c_k · T < t_j − t_i + 1 ns` — consecutive admissions are at least `c·T` apart,
//! within a tolerance of [`PACING_TOLERANCE`] (1 ns). With unit costs (a requests
//! dimension) every window of length `W` therefore holds at most `amount` admissions; with
//! weighted costs at most `amount − 1` plus the last admission's cost.
//!
//! **Bounded backlog:** the queue never schedules more than one window ahead: `S` never
//! runs more than `capacity · T = W` past the latest time it was updated at. So the
//! capacity (largest cost ever admitted) is `amount`, every wait is at most `W` (plus the
//! lag of a clock that went backwards), and an extra charge that would book slots beyond
//! one window is cut at one window (the provider's own window has forgotten it by then).
//!
//! - **Exact wait:** the time until `S`, rounded up to the nanosecond.
//! - **Weighted equals repeated:** admitting `n` at its slot books the same slots as `n`
//!   unit admissions each made at the slot the previous one was told to wait for.
//! - **Refunds** move `S` back by `δ·T` (never before `now`); **extra charges** move it
//!   forward by `δ·T` (up to the one-window bound). `clamp_remaining(0)` books one window of
//!   slots from now; a positive server remaining leaves the pacer alone.
//! - **Clock going backwards:** an earlier `now` is simply further from the slot: it
//!   refuses more, never admits extra, and its wait (counted from that `now`) is exact.
//!   `remaining` is `amount` at or after the slot and 0 before it.

use crate::clock::Nanos;

use super::config::Limit;
use super::params::{saturate, Params};

/// How much earlier than its cost's pace an admission may follow the previous one, in
/// nanoseconds: the sub-nanosecond fraction of a slot carried over (see the module docs).
pub const PACING_TOLERANCE: Nanos = 1;

/// Pacing-queue state for one dimension: one integer (the next slot), plus constants.
#[derive(Debug, Clone)]
pub struct LeakyBucket {
    /// The next free slot, scaled (ns · amount).
    next: u128,
    /// Scale of time: scaled units per nanosecond (= amount, ≥ 1).
    amount: u128,
    /// Pace per unit `T`, scaled (= window in ns).
    interval: u128,
    /// One window, scaled (= amount · window_ns): the most the queue books ahead.
    horizon: u128,
    /// Largest cost admitted (= amount).
    capacity: u64,
}

impl LeakyBucket {
    /// An idle queue (slot free now) for `limit` at time `now`.
    pub fn new(limit: Limit, now: Nanos) -> Self {
        let p = Params::of(&limit);
        let amount = u128::from(p.amount);
        let interval = u128::from(p.window);
        Self {
            next: u128::from(now) * amount,
            amount,
            interval,
            horizon: amount * interval,
            capacity: p.amount,
        }
    }

    /// `now` scaled ((2^64 − 1)^2 < 2^128: cannot overflow).
    #[inline]
    fn scaled_now(&self, now: Nanos) -> u128 {
        u128::from(now) * self.amount
    }

    /// Scaled duration of `cost` units (`cost · T`).
    #[inline]
    fn span(&self, cost: u64) -> u128 {
        u128::from(cost).saturating_mul(self.interval)
    }

    /// Moves the slot to `to`, never back, and never more than one window past `t` (unless
    /// it already was).
    #[inline]
    fn book(&mut self, t: u128, to: u128) {
        let bounded = to.min(t.saturating_add(self.horizon));
        self.next = self.next.max(bounded);
    }

    /// `Ok` if the slot has come at `now` (for any `cost ≤ capacity()`), else the exact
    /// wait in nanoseconds (`Nanos::MAX` when `cost > capacity()`). Does not change state.
    #[inline]
    pub fn check(&self, now: Nanos, cost: u64) -> Result<(), Nanos> {
        if cost > self.capacity {
            return Err(Nanos::MAX);
        }
        if self.next <= self.scaled_now(now) {
            Ok(())
        } else {
            Err(saturate(self.next.div_ceil(self.amount)).saturating_sub(now))
        }
    }

    /// Admits `cost` at `now` (the caller checked the slot has come): books `cost` slots.
    #[inline]
    pub fn commit(&mut self, now: Nanos, cost: u64) {
        let t = self.scaled_now(now);
        // On time (slot within the last nanosecond, or still ahead): keep the slot's
        // fraction; late: an idle queue banks nothing.
        let base = if t.saturating_sub(self.next) < self.amount {
            self.next
        } else {
            t
        };
        self.book(t, base.saturating_add(self.span(cost)));
    }

    /// A refund (`delta > 0`) moves the slot back by `delta · T`, never before `now`; an
    /// extra charge (`delta < 0`) moves it forward by `-delta · T`, at most one window past
    /// `now`.
    pub fn adjust(&mut self, now: Nanos, delta: i64) {
        let t = self.scaled_now(now);
        let span = self.span(delta.unsigned_abs());
        if delta >= 0 {
            if self.next > t {
                self.next = self.next.saturating_sub(span).max(t);
            }
        } else {
            self.book(t, self.next.max(t).saturating_add(span));
        }
    }

    /// `capacity()` at or after the slot (any cost fits), 0 before it.
    pub fn remaining(&self, now: Nanos) -> u64 {
        if self.next <= self.scaled_now(now) {
            self.capacity
        } else {
            0
        }
    }

    /// Nanoseconds from `now` until the slot (the queue is idle again then).
    pub fn reset_after(&self, now: Nanos) -> Nanos {
        self.check(now, 0).err().unwrap_or(0)
    }

    /// Applies a server-reported `remaining`: only `0` changes a pacing queue, booking one
    /// window of slots from `now` (never moving the slot earlier). A positive remaining says
    /// nothing the pacer does not already keep: it never admits more than `amount` per
    /// window, and a server's per-window count (Azure reports the minute's remaining tokens
    /// on every response) would otherwise read as a backlog and stall the queue.
    pub fn clamp_remaining(&mut self, now: Nanos, remaining: u64) {
        if remaining == 0 {
            let t = self.scaled_now(now);
            self.book(t, t.saturating_add(self.span(self.capacity)));
        }
    }

    /// The largest cost that ever fits: `amount` (one window of slots).
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Idle again at `now`.
    pub fn reset(&mut self, now: Nanos) {
        self.next = self.scaled_now(now);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::limiter::config::RateLimitType;

    const S: u64 = 1_000_000_000;

    fn leaky(amount: u64, window: Duration) -> LeakyBucket {
        let kind = RateLimitType::RequestsPer(window);
        LeakyBucket::new(
            Limit {
                kind,
                amount,
                burst: amount,
            },
            0,
        )
    }

    #[test]
    fn paces_requests_with_no_burst() {
        // Azure-like: 6 requests per 10 s → one every 1.666… s, even after idling.
        let mut l = leaky(6, Duration::from_secs(10));
        l.commit(100 * S, 1);
        assert_eq!(l.check(100 * S, 1), Err(1_666_666_667));
        assert_eq!(l.remaining(100 * S), 0);
        let mut t = 100 * S;
        for k in 1..=12u64 {
            t += l.check(t, 1).unwrap_err();
            assert_eq!(
                t,
                100 * S + (u128::from(k) * 10 * u128::from(S)).div_ceil(6) as u64
            );
            assert!(l.check(t - 1, 1).is_err());
            l.commit(t, 1);
        }
        assert_eq!(
            t,
            120 * S,
            "12 paced requests take exactly two windows: no drift"
        );
    }

    #[test]
    fn a_weighted_admission_books_its_slots() {
        let mut l = leaky(100, Duration::from_secs(10));
        l.commit(0, 30);
        assert_eq!(l.check(0, 1), Err(3 * S));
        assert_eq!(l.reset_after(S), 2 * S);
        l.adjust(S, 10);
        assert_eq!(l.check(S, 1), Err(S));
        l.adjust(S, -1_000);
        assert_eq!(l.check(S, 1), Err(10 * S), "backlog is cut at one window");
        assert_eq!(l.check(S, 101), Err(Nanos::MAX));
    }

    #[test]
    fn only_an_exhausted_server_window_stalls_the_pacer() {
        let mut l = leaky(10, Duration::from_secs(10));
        l.clamp_remaining(0, 7);
        assert_eq!(
            l.remaining(0),
            10,
            "a positive remaining leaves the pacer alone"
        );
        l.clamp_remaining(0, 0);
        assert_eq!(l.remaining(0), 0);
        assert_eq!(l.reset_after(0), 10 * S, "one window of slots booked");
        l.reset(0);
        assert_eq!(l.remaining(0), 10);
    }

    #[test]
    fn an_earlier_clock_refuses_more_with_an_exact_wait() {
        let mut l = leaky(1, Duration::from_secs(1));
        l.commit(5 * S, 1);
        let wait = l.check(4 * S, 1).unwrap_err();
        assert_eq!(wait, 2 * S);
        assert!(l.check(4 * S + wait - 1, 1).is_err());
        assert!(l.check(4 * S + wait, 1).is_ok());
    }
}
