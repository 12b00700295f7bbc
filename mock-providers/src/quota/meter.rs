//! One quota dimension (requests or tokens) as a pure state machine.
//!
//! Providers count each dimension differently, and the mocks must reproduce each exactly:
//! - [`ContinuousMeter`]: a token bucket refilled continuously (OpenAI): capacity `limit`,
//!   refill `limit` per period; one integer of state (a GCRA theoretical arrival time).
//! - [`SlidingMeter`]: an exact sliding window: at most `limit` in every window of length
//!   `window` (Azure's short request windows; OpenAI in `sliding` mode).
//! - [`FixedMeter`]: a counter that resets at window boundaries aligned to the clock's epoch
//!   (Azure's running per-minute token count).
//!
//! Every method takes `now`; none reads a clock.

use std::collections::VecDeque;
use std::time::Duration;

use crate::units::Nanos;

/// How long until `cost` more units fit: `Some(ZERO)` = fits now, `None` = never (the cost
/// exceeds the limit).
pub type Wait = Option<Duration>;

/// A continuously refilled token bucket: capacity `limit` (or a smaller burst capacity,
/// [`Self::with_capacity`]), refilled at `limit` per `period`.
///
/// Over any interval of length `t` it admits at most `capacity + limit·t/period` units.
/// Charges may overdraw it ([`Self::charge`] after the fact, as Anthropic counts output
/// tokens as they are generated): the debt is repaid by the refill before anything else fits.
#[derive(Debug, Clone)]
pub struct ContinuousMeter {
    limit: u64,
    capacity: u64,
    period: u128,
    /// Time at which the bucket is full again, in units of nanoseconds × `limit`, so every
    /// charge (`cost × period`) is exact in integers.
    full_at_scaled: u128,
}

impl ContinuousMeter {
    /// A full bucket of `limit` units refilled at `limit` per `period`.
    pub fn new(limit: u64, period: Duration) -> Self {
        Self::with_capacity(limit, period, limit)
    }

    /// A full bucket of `capacity` units (at most `limit`) refilled at `limit` per `period`:
    /// the rate of [`Self::new`] with a smaller burst, e.g. 60 per minute enforced as 1 per
    /// second (`with_capacity(60, 60 s, 1)`).
    pub fn with_capacity(limit: u64, period: Duration, capacity: u64) -> Self {
        Self {
            limit,
            capacity: capacity.min(limit),
            period: period.as_nanos().max(1),
            full_at_scaled: 0,
        }
    }

    /// The deficit at `now`, in nanoseconds × `limit`.
    fn deficit(&self, now: Nanos) -> u128 {
        self.full_at_scaled
            .saturating_sub(u128::from(now) * u128::from(self.limit))
    }

    /// The configured rate, in units per period (also the capacity of [`Self::new`]).
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The burst capacity, in units (`limit` unless [`Self::with_capacity`] lowered it).
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Units in use at `now` (the deficit rounded up, at most the capacity): `capacity -
    /// used` are available.
    pub fn used(&self, now: Nanos) -> u64 {
        let used = self.deficit(now).div_ceil(self.period);
        u64::try_from(used).unwrap_or(u64::MAX).min(self.capacity)
    }

    /// Time until `cost` more units fit (`None` when `cost` exceeds the capacity).
    pub fn wait(&self, now: Nanos, cost: u64) -> Wait {
        if cost > self.capacity {
            return None;
        }
        let allowed = u128::from(self.capacity - cost) * self.period;
        let excess = self.deficit(now).saturating_sub(allowed);
        Some(scaled_to_duration(
            excess.div_ceil(u128::from(self.limit.max(1))),
        ))
    }

    /// Takes `cost` units at `now` (the caller checked [`Self::wait`]).
    pub fn charge(&mut self, now: Nanos, cost: u64) {
        let now_scaled = u128::from(now) * u128::from(self.limit);
        self.full_at_scaled = self.full_at_scaled.max(now_scaled) + u128::from(cost) * self.period;
    }

    /// Gives back `amount` units charged earlier (an estimate reconciled to actual use),
    /// never filling the bucket past full.
    pub fn refund(&mut self, now: Nanos, amount: u64) {
        let now_scaled = u128::from(now) * u128::from(self.limit);
        self.full_at_scaled = self
            .full_at_scaled
            .saturating_sub(u128::from(amount) * self.period)
            .max(now_scaled);
    }

    /// Time until the bucket is full again.
    pub fn time_to_reset(&self, now: Nanos) -> Duration {
        scaled_to_duration(self.deficit(now).div_ceil(u128::from(self.limit.max(1))))
    }

    /// Back to a full bucket.
    pub fn reset(&mut self) {
        self.full_at_scaled = 0;
    }
}

fn scaled_to_duration(ns: u128) -> Duration {
    Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
}

/// An exact sliding window: at most `limit` units in every half-open window `[t, t + window)`.
///
/// Memory: one `(time, cost)` entry per admission still inside the window (at most `limit`).
#[derive(Debug, Clone)]
pub struct SlidingMeter {
    limit: u64,
    window: Nanos,
    entries: VecDeque<(Nanos, u64)>,
    total: u64,
}

impl SlidingMeter {
    /// An empty window admitting `limit` units per `window`.
    pub fn new(limit: u64, window: Duration) -> Self {
        Self {
            limit,
            window: crate::units::nanos(window).max(1),
            entries: VecDeque::new(),
            total: 0,
        }
    }

    /// The configured limit per window, in units.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The window length.
    pub fn window(&self) -> Duration {
        Duration::from_nanos(self.window)
    }

    fn expire(&mut self, now: Nanos) {
        while let Some(&(t, cost)) = self.entries.front() {
            if t.saturating_add(self.window) > now {
                break;
            }
            self.total -= cost;
            self.entries.pop_front();
        }
    }

    /// Units admitted in the window ending at `now`.
    pub fn used(&mut self, now: Nanos) -> u64 {
        self.expire(now);
        self.total
    }

    /// Time until `cost` more units fit.
    pub fn wait(&mut self, now: Nanos, cost: u64) -> Wait {
        if cost > self.limit {
            return None;
        }
        self.expire(now);
        let need = (self.total + cost).saturating_sub(self.limit);
        if need == 0 {
            return Some(Duration::ZERO);
        }
        let mut freed = 0;
        for &(t, c) in &self.entries {
            freed += c;
            if freed >= need {
                return Some(Duration::from_nanos(
                    t.saturating_add(self.window).saturating_sub(now),
                ));
            }
        }
        // Unreachable while `total` equals the sum of `entries` and `cost <= limit`; answer
        // "when the window empties" rather than panic.
        Some(self.time_to_reset(now))
    }

    /// Records `cost` units at `now` (the caller checked [`Self::wait`]).
    pub fn charge(&mut self, now: Nanos, cost: u64) {
        match self.entries.back_mut() {
            Some((t, c)) if *t == now => *c += cost,
            _ => self.entries.push_back((now, cost)),
        }
        self.total += cost;
    }

    /// Time until the window is empty again.
    pub fn time_to_reset(&self, now: Nanos) -> Duration {
        self.entries.back().map_or(Duration::ZERO, |&(t, _)| {
            Duration::from_nanos(t.saturating_add(self.window).saturating_sub(now))
        })
    }

    /// Back to an empty window.
    pub fn reset(&mut self) {
        self.entries.clear();
        self.total = 0;
    }
}

/// A counter reset at every multiple of `window` since the clock's epoch.
#[derive(Debug, Clone)]
pub struct FixedMeter {
    limit: u64,
    window: Nanos,
    index: u64,
    used: u64,
}

impl FixedMeter {
    /// An empty counter admitting `limit` units per fixed `window`.
    pub fn new(limit: u64, window: Duration) -> Self {
        Self {
            limit,
            window: crate::units::nanos(window).max(1),
            index: 0,
            used: 0,
        }
    }

    /// The configured limit per window, in units.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    fn roll(&mut self, now: Nanos) {
        // A clock that steps backwards stays in the current window.
        let index = now / self.window;
        if index > self.index {
            self.index = index;
            self.used = 0;
        }
    }

    /// Units counted in the current window.
    pub fn used(&mut self, now: Nanos) -> u64 {
        self.roll(now);
        self.used
    }

    /// Time until `cost` more units fit.
    pub fn wait(&mut self, now: Nanos, cost: u64) -> Wait {
        if cost > self.limit {
            return None;
        }
        self.roll(now);
        if self.used + cost <= self.limit {
            Some(Duration::ZERO)
        } else {
            Some(self.time_to_reset(now))
        }
    }

    /// Counts `cost` units at `now` (the caller checked [`Self::wait`]).
    pub fn charge(&mut self, now: Nanos, cost: u64) {
        self.roll(now);
        self.used += cost;
    }

    /// Time until the counter resets (the next window boundary).
    pub fn time_to_reset(&self, now: Nanos) -> Duration {
        let end = (self.index.max(now / self.window) + 1).saturating_mul(self.window);
        Duration::from_nanos(end.saturating_sub(now))
    }

    /// Back to an empty counter.
    pub fn reset(&mut self) {
        self.used = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Nanos = 1_000_000_000;
    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn continuous_refills_one_unit_per_period_over_limit() {
        let mut m = ContinuousMeter::new(3, MIN);
        for _ in 0..3 {
            assert_eq!(m.wait(0, 1), Some(Duration::ZERO));
            m.charge(0, 1);
        }
        assert_eq!(m.used(0), 3);
        assert_eq!(m.wait(0, 1), Some(Duration::from_secs(20)));
        assert_eq!(m.time_to_reset(0), Duration::from_secs(60));
        assert_eq!(m.used(10 * S), 3, "half a unit back is not a unit");
        assert_eq!(m.used(20 * S), 2);
        assert_eq!(m.wait(20 * S, 1), Some(Duration::ZERO));
        assert_eq!(m.wait(0, 4), None);
    }

    #[test]
    fn continuous_reset_header_is_one_second_per_request_at_60_rpm() {
        let mut m = ContinuousMeter::new(60, MIN);
        m.charge(0, 1);
        assert_eq!(m.time_to_reset(0), Duration::from_secs(1));
        assert_eq!(m.used(0), 1);
    }

    #[test]
    fn smaller_capacity_keeps_the_rate_and_cuts_the_burst() {
        // 60 per minute enforced as 1 per second.
        let mut m = ContinuousMeter::with_capacity(60, MIN, 1);
        assert_eq!((m.limit(), m.capacity()), (60, 1));
        assert_eq!(m.wait(0, 1), Some(Duration::ZERO));
        m.charge(0, 1);
        assert_eq!(m.used(0), 1);
        assert_eq!(m.wait(0, 1), Some(Duration::from_secs(1)));
        assert_eq!(m.wait(S - 1, 1), Some(Duration::from_nanos(1)));
        assert_eq!(m.wait(0, 2), None, "more than the burst never fits");
        assert_eq!(m.time_to_reset(0), Duration::from_secs(1));
    }

    #[test]
    fn overdraw_is_repaid_before_anything_fits_and_refunds_stop_at_full() {
        let mut m = ContinuousMeter::new(100, MIN);
        m.charge(0, 150); // counted after the fact: 50 units of debt
        assert_eq!(m.used(0), 100);
        assert_eq!(m.wait(0, 1), Some(Duration::from_millis(30_600)));
        m.refund(0, 100);
        assert_eq!(m.used(0), 50);
        m.refund(0, 1_000);
        assert_eq!(m.used(0), 0);
        assert_eq!(m.wait(0, 100), Some(Duration::ZERO), "never past full");
        m.charge(0, 100);
        assert_eq!(m.wait(0, 1), Some(Duration::from_millis(600)));
    }

    #[test]
    fn sliding_frees_units_a_window_after_use() {
        let mut m = SlidingMeter::new(10, Duration::from_secs(10));
        for i in 0..10 {
            m.charge(i * S / 2, 1);
        }
        assert_eq!(m.used(5 * S), 10);
        assert_eq!(m.wait(5 * S, 1), Some(Duration::from_secs(5)));
        assert_eq!(m.wait(5 * S, 3), Some(Duration::from_secs(6)));
        assert_eq!(m.wait(10 * S, 1), Some(Duration::ZERO));
        assert_eq!(m.used(10 * S), 9);
        assert_eq!(m.wait(0, 11), None);
        assert_eq!(m.time_to_reset(10 * S), Duration::from_millis(4_500));
    }

    #[test]
    fn fixed_resets_on_epoch_aligned_boundaries() {
        let mut m = FixedMeter::new(100, MIN);
        m.charge(59 * S, 100);
        assert_eq!(m.wait(59 * S, 1), Some(Duration::from_secs(1)));
        assert_eq!(m.wait(60 * S, 100), Some(Duration::ZERO));
        assert_eq!(m.used(60 * S), 0);
        assert_eq!(m.wait(60 * S, 101), None);
    }
}
