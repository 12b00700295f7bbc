//! Sliding-window log: the exact sliding window. **Bound:** in every half-open window
//! `[s, s + W)` of length `W` (the limit's window), the admitted cost is at most `amount`
//! (checked by [`invariants::sliding_window`](super::invariants::sliding_window)).
//!
//! The log keeps one `(time, cost)` entry per admission (not per token); an entry admitted
//! at `e` counts at every `t` with `t − e < W` and leaves at `e + W`. Admissions at the same
//! instant share one entry. **Memory:** at most `amount` entries — every entry costs ≥ 1 and
//! an admission needs the live sum plus its cost to be ≤ `amount` (and, should a caller
//! commit without checking, a new cost is merged into the newest entry rather than grow the
//! log past `amount`).
//!
//! **Exact wait:** the time until enough of the oldest entries have left the window for the
//! cost to fit: refused one nanosecond before, admitted at it.
//!
//! **Refunds and extra charges** (`adjust`) — the log does not know which admission a
//! reconciliation belongs to, so it applies them conservatively:
//! - a refund of `δ` comes off the *oldest* live entries first (they leave soonest, so the
//!   refund frees capacity no earlier than it would on the admission it belongs to, while
//!   that admission is still in the window); a refund larger than the live sum is dropped;
//! - an extra charge of `δ` is added to the *newest* entry (or, if the log is empty, to a
//!   new entry at `now`), so it stays in the window at least as long as the admission it
//!   belongs to; server-reported remaining counts (`clamp_remaining`) are applied the same
//!   way. Either keeps the memory bound.
//!
//! Weighted is not the same as repeated here: `n` units admitted together leave together.
//!
//! **Clock going backwards:** a `now` earlier than the latest update is treated as that
//! latest time (entries never expire backwards, the log stays sorted), so it never admits
//! more; waits then include the lag and stay exact.

use std::collections::VecDeque;

use crate::clock::Nanos;

use super::config::Limit;
use super::params::Params;

/// Exact sliding-window state for one dimension. Pure: every method takes `now`.
#[derive(Debug, Clone)]
pub struct SlidingLog {
    /// The window `W` in nanoseconds.
    window: u64,
    /// Units allowed per window.
    amount: u64,
    /// `(admitted at, cost)`, oldest first, times strictly increasing, costs ≥ 1; may hold
    /// expired entries until the next update prunes them.
    entries: VecDeque<(Nanos, u64)>,
    /// Sum of the costs in `entries`.
    sum: u64,
    /// The latest time seen by an update; never moves backwards.
    last: Nanos,
}

impl SlidingLog {
    /// An empty log for `limit` at time `now`.
    pub fn new(limit: Limit, now: Nanos) -> Self {
        let p = Params::of(&limit);
        Self {
            window: p.window,
            amount: p.amount,
            entries: VecDeque::new(),
            sum: 0,
            last: now,
        }
    }

    /// Whether an entry admitted at `at` still counts at `t` (`at ≤ t` always holds).
    #[inline]
    fn live(&self, at: Nanos, t: Nanos) -> bool {
        t - at < self.window
    }

    /// The effective time for `now` and the sum of the costs still live then.
    #[inline]
    fn live_sum(&self, now: Nanos) -> (Nanos, u64) {
        let t = now.max(self.last);
        let expired = self
            .entries
            .iter()
            .take_while(|&&(at, _)| !self.live(at, t))
            .fold(0u64, |acc, &(_, c)| acc.saturating_add(c));
        (t, self.sum.saturating_sub(expired))
    }

    /// Drops expired entries and moves `last` up to `now`; returns the effective time.
    fn advance(&mut self, now: Nanos) -> Nanos {
        let t = now.max(self.last);
        self.last = t;
        while let Some(&(at, c)) = self.entries.front() {
            if self.live(at, t) {
                break;
            }
            self.sum = self.sum.saturating_sub(c);
            self.entries.pop_front();
        }
        t
    }

    /// Adds `cost` to the newest entry, or a new entry at `t` if the log is empty.
    fn charge_newest(&mut self, t: Nanos, cost: u64) {
        if cost == 0 {
            return;
        }
        match self.entries.back_mut() {
            Some((_, c)) => *c = c.saturating_add(cost),
            None => self.entries.push_back((t, cost)),
        }
        self.sum = self.sum.saturating_add(cost);
    }

    /// `Ok` if `cost` fits at `now`, else the exact wait in nanoseconds (`Nanos::MAX` when
    /// `cost > capacity()`). Does not change state. O(entries that leave before it fits).
    pub fn check(&self, now: Nanos, cost: u64) -> Result<(), Nanos> {
        if cost > self.amount {
            return Err(Nanos::MAX);
        }
        let t = now.max(self.last);
        let mut live = self.sum;
        let mut entries = self.entries.iter();
        for &(at, c) in entries.by_ref() {
            if self.live(at, t) {
                // Entries are sorted: this one and all after it are live. Put it back
                // in the count and stop.
                if live.saturating_add(cost) <= self.amount {
                    return Ok(());
                }
                // Free the oldest live entries until the cost fits.
                let need = live.saturating_add(cost) - self.amount;
                let mut freed = c;
                let mut leaves_at = at;
                for &(at, c) in entries {
                    if freed >= need {
                        break;
                    }
                    freed = freed.saturating_add(c);
                    leaves_at = at;
                }
                // `need ≤ live` because `cost ≤ amount`: the loop always frees enough.
                return Err(leaves_at.saturating_add(self.window) - now);
            }
            live = live.saturating_sub(c);
        }
        // Nothing live.
        Ok(())
    }

    /// Admits `cost` at `now` (the caller checked it fits).
    pub fn commit(&mut self, now: Nanos, cost: u64) {
        let t = self.advance(now);
        if cost == 0 {
            return;
        }
        let full = self.entries.len() as u64 >= self.amount;
        match self.entries.back_mut() {
            Some((at, c)) if *at == t || full => {
                *c = c.saturating_add(cost);
            }
            _ => self.entries.push_back((t, cost)),
        }
        self.sum = self.sum.saturating_add(cost);
    }

    /// Reconciliation: a refund (`delta > 0`) comes off the oldest live entries, an extra
    /// charge (`delta < 0`) goes on the newest (see the module docs).
    pub fn adjust(&mut self, now: Nanos, delta: i64) {
        let t = self.advance(now);
        if delta < 0 {
            self.charge_newest(t, delta.unsigned_abs());
            return;
        }
        let mut refund = delta.unsigned_abs();
        while refund > 0 {
            let Some((_, c)) = self.entries.front_mut() else {
                break;
            };
            let take = refund.min(*c);
            *c -= take;
            self.sum = self.sum.saturating_sub(take);
            refund -= take;
            if *c == 0 {
                self.entries.pop_front();
            }
        }
    }

    /// Units that fit at `now`: `amount` minus the live sum.
    pub fn remaining(&self, now: Nanos) -> u64 {
        self.amount.saturating_sub(self.live_sum(now).1)
    }

    /// Nanoseconds from `now` until every live entry has left the window.
    pub fn reset_after(&self, now: Nanos) -> Nanos {
        let t = now.max(self.last);
        match self.entries.back() {
            Some(&(at, _)) if self.live(at, t) => at.saturating_add(self.window) - now,
            _ => 0,
        }
    }

    /// Lowers what remains at `now` to at most `remaining` units (never raises it); the
    /// difference is charged to the newest entry.
    pub fn clamp_remaining(&mut self, now: Nanos, remaining: u64) {
        let t = self.advance(now);
        let have = self.amount.saturating_sub(self.sum);
        if have > remaining {
            self.charge_newest(t, have - remaining);
        }
    }

    /// The largest cost that ever fits: the window's `amount`.
    pub fn capacity(&self) -> u64 {
        self.amount
    }

    /// Empty again at `now`.
    pub fn reset(&mut self, now: Nanos) {
        self.entries.clear();
        self.sum = 0;
        self.last = self.last.max(now);
    }

    /// How many `(time, cost)` entries the log holds (≤ `amount`).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the log holds no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::limiter::config::RateLimitType;

    fn log(amount: u64, window: Duration) -> SlidingLog {
        let kind = RateLimitType::RequestsPer(window);
        SlidingLog::new(
            Limit {
                kind,
                amount,
                burst: amount,
            },
            0,
        )
    }

    #[test]
    fn waits_for_the_oldest_entries_to_leave() {
        let mut l = log(10, Duration::from_secs(10));
        l.commit(0, 3);
        l.commit(1_000, 4);
        l.commit(2_000, 3);
        assert_eq!(l.remaining(2_000), 0);
        // 5 units need the first two entries gone: the one at 1_000 leaves at 10 s + 1 µs.
        let wait = l.check(5_000, 5).unwrap_err();
        assert_eq!(5_000 + wait, 10_000_001_000);
        assert!(l.check(5_000 + wait - 1, 5).is_err());
        assert!(l.check(5_000 + wait, 5).is_ok());
        assert_eq!(l.reset_after(5_000), 10_000_002_000 - 5_000);
    }

    #[test]
    fn stores_one_entry_per_admission_and_merges_same_instant() {
        let mut l = log(1_000, Duration::from_secs(60));
        l.commit(0, 400);
        l.commit(0, 100);
        l.commit(7, 500);
        assert_eq!(l.len(), 2);
        assert_eq!(l.remaining(7), 0);
        assert_eq!(l.remaining(60_000_000_000), 500);
        assert_eq!(l.remaining(60_000_000_007), 1_000);
    }

    #[test]
    fn refunds_come_off_the_oldest_and_charges_go_on_the_newest() {
        let mut l = log(10, Duration::from_secs(10));
        l.commit(0, 4);
        l.commit(5_000_000_000, 4);
        l.adjust(5_000_000_000, 5);
        // 4 came off the entry at 0 (gone), 1 off the entry at 5 s: 3 left, at 5 s.
        assert_eq!(l.len(), 1);
        assert_eq!(l.remaining(9_000_000_000), 7);
        l.adjust(6_000_000_000, -7);
        assert_eq!(l.remaining(6_000_000_000), 0);
        // The extra charge sits on the entry at 5 s, which leaves at 15 s.
        assert_eq!(l.reset_after(6_000_000_000), 9_000_000_000);
    }

    #[test]
    fn clamp_remaining_lowers_but_never_raises() {
        let mut l = log(10, Duration::from_secs(10));
        l.clamp_remaining(0, 3);
        assert_eq!(l.remaining(0), 3);
        l.clamp_remaining(0, 8);
        assert_eq!(l.remaining(0), 3);
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn clock_going_backwards_is_treated_as_the_latest_time() {
        let mut l = log(1, Duration::from_secs(1));
        l.commit(5_000_000_000, 1);
        let wait = l.check(4_000_000_000, 1).unwrap_err();
        assert_eq!(wait, 2_000_000_000);
        assert!(l.check(4_000_000_000 + wait - 1, 1).is_err());
        assert!(l.check(4_000_000_000 + wait, 1).is_ok());
        l.commit(0, 0);
        assert_eq!(l.remaining(0), 0);
    }

    #[test]
    fn memory_stays_bounded_even_without_checks() {
        let mut l = log(3, Duration::from_secs(1));
        for t in 0..10 {
            l.commit(t, 1);
        }
        assert!(l.len() <= 3);
        l.adjust(11, i64::MIN);
        l.adjust(12, i64::MAX);
        l.adjust(12, i64::MAX);
        assert!(l.is_empty());
        assert_eq!(l.remaining(12), 3);
    }
}
