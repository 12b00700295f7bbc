//! Sliding-window counter: two fixed windows, weighted. O(1) time and memory, approximate.
//!
//! Fixed windows are aligned at multiples of `W` on the limiter's clock
//! (`[k·W, (k+1)·W)`). At time `t = k·W + e` the estimate of what the sliding window
//! `(t − W, t]` holds is `prev · (W − e)/W + cur`, where `prev` and `cur` are what fixed
//! windows `k − 1` and `k` admitted; a cost `c` is admitted iff
//! `prev · (W − e) + (cur + c) · W ≤ amount · W` (exact integers, no rounding).
//!
//! **Worst-case overshoot** (checked by
//! [`invariants::counter_overshoot`](super::invariants::counter_overshoot)):
//! - every aligned window `[k·W, (k+1)·W)` admits at most `amount`;
//! - a sliding window `[s, s + W)` with `σ = s mod W ≥ 1` admits at most
//!   `amount + ⌊P · (σ − 1) / W⌋`, where `P ≤ amount` is what the fixed window containing
//!   `s` admitted. So **every sliding window of length `W` admits at most `2·amount − 1`**,
//!   and the bound is tight: `amount` admitted in the last nanosecond of a fixed window,
//!   then traffic at the sustained rate through the next, puts `2·amount − 1` in one
//!   sliding window when `W ≥ amount` ns (a unit test builds that trace). The estimate
//!   assumes the previous window's admissions were spread evenly; the overshoot is the
//!   price of O(1) state. Use the sliding log when the window must be exact.
//!
//! **Proof sketch.** Let the sliding window straddle the boundary `b = s − σ + W`. What it
//! holds before `b` is at most `P`. Its last admission after `b` happened at elapsed time
//! `e ≤ σ − 1` into the next fixed window, where the rule gave
//! `P·(W − e) + cur·W ≤ amount·W`, so `cur ≤ amount − P·(W − σ + 1)/W`. Adding:
//! `≤ amount + P·(σ − 1)/W`.
//!
//! - **Exact wait:** the estimate never increases while nothing is admitted, so the wait
//!   is the first instant the rule holds, computed in closed form (within this fixed
//!   window, the next one, or the one after): refused one nanosecond before, admitted at it.
//! - **Weighted equals repeated:** admitting `n` adds `n` to `cur`, as `n` unit admissions
//!   at the same instant do.
//! - **Refunds and extra charges** (`adjust`): a refund comes off the older count first
//!   (`prev`, then `cur`, never below zero) — conservative, like the log; an extra charge
//!   is added to `cur` (counted as of now). `clamp_remaining` adds to `cur` too.
//! - **Clock going backwards:** a `now` earlier than the latest update is treated as that
//!   latest time (windows never roll back), so it never admits more; waits then include the
//!   lag and stay exact.

use crate::clock::Nanos;

use super::config::Limit;
use super::params::{saturate, Params};

/// Sliding-window-counter state for one dimension. Pure: every method takes `now`.
#[derive(Debug, Clone)]
pub struct SlidingCounter {
    /// The window `W` in nanoseconds.
    window: u64,
    /// Units allowed per window.
    amount: u64,
    /// Index `k` of the current fixed window (`t / W`).
    index: u64,
    /// What fixed window `index − 1` admitted (net of reconciliation).
    prev: u64,
    /// What fixed window `index` has admitted so far (net of reconciliation).
    cur: u64,
    /// The latest time seen by an update; never moves backwards.
    last: Nanos,
}

/// The counter as seen at one instant, windows rolled forward.
#[derive(Debug, Clone, Copy)]
struct View {
    /// Effective time (`now`, or the latest update if that is later).
    t: Nanos,
    /// Current fixed window index.
    k: u64,
    /// Nanoseconds elapsed in window `k`.
    elapsed: u64,
    prev: u64,
    cur: u64,
}

impl SlidingCounter {
    /// Empty counters for `limit` at time `now`.
    pub fn new(limit: Limit, now: Nanos) -> Self {
        let p = Params::of(&limit);
        Self {
            window: p.window,
            amount: p.amount,
            index: now / p.window,
            prev: 0,
            cur: 0,
            last: now,
        }
    }

    #[inline]
    fn view(&self, now: Nanos) -> View {
        let t = now.max(self.last);
        let k = t / self.window;
        let (prev, cur) = if k == self.index {
            (self.prev, self.cur)
        } else if k == self.index + 1 {
            (self.cur, 0)
        } else {
            (0, 0)
        };
        View {
            t,
            k,
            elapsed: t - k * self.window,
            prev,
            cur,
        }
    }

    /// Rolls the windows forward to `now` (never back); returns the view.
    #[inline]
    fn advance(&mut self, now: Nanos) -> View {
        let v = self.view(now);
        self.last = v.t;
        self.index = v.k;
        self.prev = v.prev;
        self.cur = v.cur;
        v
    }

    /// `amount·W − estimate·W` (scaled), negative when over.
    #[inline]
    fn room(&self, v: &View) -> i128 {
        let w = u128::from(self.window);
        // Each product is < 2^126; their sum fits `u128`, and is capped to fit `i128`.
        let used = u128::from(v.prev) * u128::from(self.window - v.elapsed) + u128::from(v.cur) * w;
        (u128::from(self.amount) * w) as i128 - used.min(i128::MAX as u128) as i128
    }

    /// Start of fixed window `k` plus `offset`, saturating.
    #[inline]
    fn at(&self, k: u64, offset: u64) -> Nanos {
        k.saturating_mul(self.window).saturating_add(offset)
    }

    /// The earliest elapsed time `e < W` in a window with weight `prev` at which
    /// `prev · (W − e) ≤ room · W` holds (`room` = units left for the cost), if any.
    #[inline]
    fn first_elapsed(&self, prev: u64, room: u64) -> Option<u64> {
        if prev == 0 {
            return Some(0);
        }
        let w = u128::from(self.window);
        let most = (u128::from(room) * w / u128::from(prev)).min(w) as u64;
        let e = self.window - most;
        (e < self.window).then_some(e)
    }

    /// `Ok` if `cost` fits at `now`, else the exact wait in nanoseconds (`Nanos::MAX` when
    /// `cost > capacity()`). Does not change state.
    #[inline]
    pub fn check(&self, now: Nanos, cost: u64) -> Result<(), Nanos> {
        if cost > self.amount {
            return Err(Nanos::MAX);
        }
        let v = self.view(now);
        let need = i128::from(cost) * i128::from(self.window);
        if self.room(&v) >= need {
            return Ok(());
        }
        // In this window: the weight of `prev` fades as time passes.
        let in_this = self
            .amount
            .checked_sub(v.cur)
            .and_then(|left| left.checked_sub(cost))
            .and_then(|room| self.first_elapsed(v.prev, room))
            .map(|e| self.at(v.k, e));
        // Else in the next one, where `cur` becomes the fading `prev`; else the one after,
        // where both are zero.
        let first =
            in_this.unwrap_or_else(|| match self.first_elapsed(v.cur, self.amount - cost) {
                Some(e) => self.at(v.k.saturating_add(1), e),
                None => self.at(v.k.saturating_add(2), 0),
            });
        Err(first.saturating_sub(now).max(1))
    }

    /// Admits `cost` at `now` (the caller checked it fits).
    #[inline]
    pub fn commit(&mut self, now: Nanos, cost: u64) {
        self.advance(now);
        self.cur = self.cur.saturating_add(cost);
    }

    /// A refund (`delta > 0`) comes off `prev`, then `cur`; an extra charge (`delta < 0`)
    /// is added to `cur`.
    pub fn adjust(&mut self, now: Nanos, delta: i64) {
        self.advance(now);
        let d = delta.unsigned_abs();
        if delta < 0 {
            self.cur = self.cur.saturating_add(d);
        } else {
            let from_prev = d.min(self.prev);
            self.prev -= from_prev;
            self.cur = self.cur.saturating_sub(d - from_prev);
        }
    }

    /// Whole units that fit at `now`: `⌊amount − estimate⌋`, at least 0.
    pub fn remaining(&self, now: Nanos) -> u64 {
        let room = self.room(&self.view(now)).max(0) as u128;
        saturate(room / u128::from(self.window))
    }

    /// Nanoseconds from `now` until the estimate is zero: the end of the current fixed
    /// window if only `prev` counts, of the next one if `cur` does.
    pub fn reset_after(&self, now: Nanos) -> Nanos {
        let v = self.view(now);
        let end = if v.cur > 0 {
            self.at(v.k.saturating_add(2), 0)
        } else if v.prev > 0 {
            self.at(v.k.saturating_add(1), 0)
        } else {
            return 0;
        };
        end.saturating_sub(now)
    }

    /// Lowers what remains at `now` to at most `remaining` units (never raises it) by
    /// counting the difference in `cur`.
    pub fn clamp_remaining(&mut self, now: Nanos, remaining: u64) {
        let have = self.remaining(now);
        self.advance(now);
        if have > remaining {
            self.cur = self.cur.saturating_add(have - remaining);
        }
    }

    /// The largest cost that ever fits: the window's `amount`.
    pub fn capacity(&self) -> u64 {
        self.amount
    }

    /// Both counts zero at `now`.
    pub fn reset(&mut self, now: Nanos) {
        self.advance(now);
        self.prev = 0;
        self.cur = 0;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::limiter::config::RateLimitType;

    const S: u64 = 1_000_000_000;

    fn counter(amount: u64, window: Duration) -> SlidingCounter {
        let kind = RateLimitType::RequestsPer(window);
        SlidingCounter::new(
            Limit {
                kind,
                amount,
                burst: amount,
            },
            0,
        )
    }

    #[test]
    fn previous_window_fades_linearly() {
        let mut c = counter(10, Duration::from_secs(10));
        c.commit(9 * S, 10);
        // One unit fits once 10 · (10 − e)/10 ≤ 9 in window 1: at 11 s.
        assert_eq!(c.check(9 * S, 1), Err(2 * S));
        // At 12 s, window 1 is 20 % through: 10 · 0.8 = 8 still count.
        assert_eq!(c.remaining(12 * S), 2);
        // 5 more need the estimate at 5: 10 · (10 − e)/10 ≤ 5 → e ≥ 5 s.
        let wait = c.check(12 * S, 5).unwrap_err();
        assert_eq!(12 * S + wait, 15 * S);
        assert!(c.check(15 * S - 1, 5).is_err());
        assert!(c.check(15 * S, 5).is_ok());
        assert_eq!(c.reset_after(12 * S), 8 * S);
    }

    #[test]
    fn wait_can_cross_into_the_next_window_or_the_one_after() {
        let mut c = counter(10, Duration::from_secs(10));
        c.commit(S, 10);
        // Full in window 0; in window 1 `cur` becomes prev = 10: 10 · (10 − e) ≤ 10·(10−4)
        // → e ≥ 4 s.
        assert_eq!(c.check(2 * S, 4), Err(12 * S));
        // The whole amount fits only when the window of 10 has stopped counting: at 20 s.
        assert_eq!(c.check(2 * S, 10), Err(18 * S));
        assert!(c.check(20 * S - 1, 10).is_err());
        assert!(c.check(20 * S, 10).is_ok());
    }

    #[test]
    fn overshoot_reaches_two_amounts_minus_one_in_a_sliding_window() {
        // The documented worst case: 10 at the last ns of window 0, then the sustained rate.
        let w = 10 * S;
        let mut c = counter(10, Duration::from_secs(10));
        let mut t = w - 1;
        c.commit(t, 10);
        let mut admitted_in_sliding_window = 10;
        loop {
            let wait = c.check(t, 1).unwrap_err();
            t += wait;
            if t >= w - 1 + w {
                break;
            }
            c.commit(t, 1);
            admitted_in_sliding_window += 1;
        }
        assert_eq!(admitted_in_sliding_window, 19);
    }

    #[test]
    fn adjust_and_clamp() {
        let mut c = counter(10, Duration::from_secs(10));
        c.commit(5 * S, 6);
        c.commit(15 * S, 2);
        // prev = 6 (weight 0.5 at 15 s), cur = 2: estimate 5.
        assert_eq!(c.remaining(15 * S), 5);
        c.adjust(15 * S, 7);
        assert_eq!(c.remaining(15 * S), 9, "6 off prev, 1 off cur");
        c.adjust(15 * S, -4);
        assert_eq!(c.remaining(15 * S), 5);
        c.clamp_remaining(15 * S, 2);
        assert_eq!(c.remaining(15 * S), 2);
        c.clamp_remaining(15 * S, 4);
        assert_eq!(c.remaining(15 * S), 2);
        c.reset(16 * S);
        assert_eq!(c.remaining(16 * S), 10);
    }

    #[test]
    fn clock_going_backwards_is_treated_as_the_latest_time() {
        let mut c = counter(1, Duration::from_secs(1));
        c.commit(5 * S, 1);
        let wait = c.check(4 * S, 1).unwrap_err();
        assert_eq!(4 * S + wait, 7 * S);
        assert!(c.check(4 * S + wait - 1, 1).is_err());
        c.commit(0, 0);
        assert_eq!(c.remaining(0), 0);
    }
}
