//! Time for the server wrapper, injected.
//!
//! The quota engine and the generation model are pure: they take `now` as an argument. Only
//! the HTTP server reads a clock, and it reads it through [`MockClock`] so tests can drive the
//! quota state by hand ([`ManualClock`]) or under tokio's paused time ([`TokioClock`]), and
//! the hub can hand in its own clock as a closure ([`FnClock`]). [`SystemClock`] is the only
//! place in this crate that reads the real monotonic clock.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::units::{nanos, Nanos};

/// A monotonic source of `now` in nanoseconds since an epoch of the clock's choosing.
///
/// Azure's fixed windows (the per-minute token count) are aligned to this epoch.
pub trait MockClock: Send + Sync + fmt::Debug {
    /// The current time in nanoseconds since this clock's epoch; should never decrease
    /// (the quota engine treats a backwards step as no time passing).
    fn now(&self) -> Nanos;
}

/// The real monotonic clock (`std::time::Instant`), epoch at construction.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    epoch: Instant,
}

impl SystemClock {
    /// A clock whose epoch is now.
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl MockClock for SystemClock {
    fn now(&self) -> Nanos {
        nanos(self.epoch.elapsed())
    }
}

/// A clock reading `tokio::time::Instant`, so it stops and jumps with tokio's paused time
/// (`#[tokio::test(start_paused = true)]`, `tokio::time::advance`). Needs a tokio runtime
/// when constructed.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    epoch: tokio::time::Instant,
}

impl TokioClock {
    /// A clock whose epoch is tokio's now.
    pub fn new() -> Self {
        Self {
            epoch: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl MockClock for TokioClock {
    fn now(&self) -> Nanos {
        nanos(self.epoch.elapsed())
    }
}

/// A clock that only moves when told to; starts at 0 ns.
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicU64,
}

impl ManualClock {
    /// A clock at `start` nanoseconds.
    pub fn at(start: Nanos) -> Self {
        Self {
            now: AtomicU64::new(start),
        }
    }

    /// Moves the clock forward by `d` (saturating).
    pub fn advance(&self, d: Duration) {
        let step = nanos(d);
        let _ = self
            .now
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                Some(t.saturating_add(step))
            });
    }

    /// Sets the clock to `t` nanoseconds (may move it backwards; the engine tolerates that).
    pub fn set(&self, t: Nanos) {
        self.now.store(t, Ordering::Release);
    }
}

impl MockClock for ManualClock {
    fn now(&self) -> Nanos {
        self.now.load(Ordering::Acquire)
    }
}

/// Adapts any `Fn() -> Nanos` (for example the hub's own clock) to [`MockClock`].
pub struct FnClock<F>(pub F);

impl<F> fmt::Debug for FnClock<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnClock")
    }
}

impl<F: Fn() -> Nanos + Send + Sync> MockClock for FnClock<F> {
    fn now(&self) -> Nanos {
        (self.0)()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::default();
        assert_eq!(c.now(), 0);
        c.advance(Duration::from_millis(1_500));
        assert_eq!(c.now(), 1_500_000_000);
        c.set(7);
        assert_eq!(c.now(), 7);
    }

    #[test]
    fn fn_clock_reads_the_closure() {
        let c = FnClock(|| 42);
        assert_eq!(c.now(), 42);
    }

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let c = TokioClock::new();
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(c.now(), 3_000_000_000);
    }
}
