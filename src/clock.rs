//! Time, injected.
//!
//! Every limiter and the simulator read time through a [`Clock`], never through
//! `Instant::now()`, so tests can drive time by hand ([`ManualClock`]) or run under tokio's
//! paused time ([`TokioClock`]) and assert exact waits without sleeping. This is the only
//! file on a limiter path that reads a real clock.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Nanoseconds since an epoch of the clock's choosing (monotonic, never a wall-clock time).
pub type Nanos = u64;

/// A future returned by [`Clock::sleep_until`].
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Converts a [`Duration`] to [`Nanos`], saturating at `u64::MAX` (≈ 584 years).
pub fn nanos(d: Duration) -> Nanos {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A monotonic source of time and a way to wait for a point in it.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time in nanoseconds since this clock's epoch; never decreases for the
    /// clocks in this module (a limiter still tolerates a clock that does).
    fn now(&self) -> Nanos;

    /// A future that completes once `self.now() >= deadline` (at once if already past).
    fn sleep_until(&self, deadline: Nanos) -> Sleep;

    /// A future that completes `d` after `self.now()`.
    fn sleep(&self, d: Duration) -> Sleep {
        self.sleep_until(self.now().saturating_add(nanos(d)))
    }
}

/// The real monotonic clock (`std::time::Instant`), epoch at construction.
///
/// Its sleeps use tokio's timer, so they need a tokio runtime.
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

    /// Blocks the calling thread until `deadline` (ns on this clock) with the OS timer's
    /// precision — tens of microseconds on Linux, where tokio's timer wheel rounds every
    /// sleep up to a whole millisecond. For a dedicated thread only, never in async code.
    pub fn block_until(&self, deadline: Nanos) {
        let at = self.epoch + Duration::from_nanos(deadline);
        let now = Instant::now();
        if at > now {
            std::thread::sleep(at - now);
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Nanos {
        nanos(self.epoch.elapsed())
    }

    fn sleep_until(&self, deadline: Nanos) -> Sleep {
        let at = self.epoch + Duration::from_nanos(deadline);
        Box::pin(tokio::time::sleep_until(tokio::time::Instant::from_std(at)))
    }
}

/// A clock that reads `tokio::time::Instant`, so it stops and jumps with tokio's paused
/// time (`#[tokio::test(start_paused = true)]`, `tokio::time::advance`).
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    epoch: tokio::time::Instant,
}

impl TokioClock {
    /// A clock whose epoch is tokio's now. Must be called inside a tokio runtime when time
    /// is paused, so the epoch is read from the paused clock.
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

impl Clock for TokioClock {
    fn now(&self) -> Nanos {
        nanos(self.epoch.elapsed())
    }

    fn sleep_until(&self, deadline: Nanos) -> Sleep {
        Box::pin(tokio::time::sleep_until(
            self.epoch + Duration::from_nanos(deadline),
        ))
    }
}

/// A clock moved only by hand. Clones share the same time.
///
/// Sleepers wake when [`advance`](ManualClock::advance) or [`set`](ManualClock::set) moves
/// the time past their deadline, so async waiting is testable without real time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    inner: Arc<ManualInner>,
}

#[derive(Debug)]
struct ManualInner {
    now: AtomicU64,
    changed: tokio::sync::watch::Sender<Nanos>,
}

impl ManualClock {
    /// A clock that reads `start` nanoseconds until moved.
    pub fn new(start: Nanos) -> Self {
        let (changed, _) = tokio::sync::watch::channel(start);
        Self {
            inner: Arc::new(ManualInner {
                now: AtomicU64::new(start),
                changed,
            }),
        }
    }

    /// Moves time forward by `d` and wakes the sleepers whose deadline has passed.
    pub fn advance(&self, d: Duration) {
        let step = nanos(d);
        let now = self.inner.now.fetch_add(step, Ordering::SeqCst) + step;
        self.inner.changed.send_replace(now);
    }

    /// Sets the time to `t`, which may be earlier than now (to test clocks going backwards).
    pub fn set(&self, t: Nanos) {
        self.inner.now.store(t, Ordering::SeqCst);
        self.inner.changed.send_replace(t);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new(0)
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Nanos {
        self.inner.now.load(Ordering::SeqCst)
    }

    fn sleep_until(&self, deadline: Nanos) -> Sleep {
        let mut rx = self.inner.changed.subscribe();
        Box::pin(async move {
            // `wait_for` checks the current value first, then each change; it only fails
            // when the sender is dropped, which cannot happen while `self.inner` lives — and
            // if it did, no one could move time again, so returning is the only way forward.
            let _ = rx.wait_for(|now| *now >= deadline).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_advances_and_goes_back() {
        let c = ManualClock::new(5);
        c.advance(Duration::from_nanos(10));
        assert_eq!(c.now(), 15);
        c.set(3);
        assert_eq!(c.now(), 3);
    }

    #[tokio::test]
    async fn manual_sleep_wakes_only_after_deadline() {
        let c = ManualClock::new(0);
        let sleeper = tokio::spawn(c.sleep(Duration::from_millis(10)));
        tokio::task::yield_now().await;
        c.advance(Duration::from_millis(9));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        c.advance(Duration::from_millis(1));
        sleeper.await.expect("sleeper task does not panic");
    }

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let c = TokioClock::new();
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(c.now(), 3_000_000_000);
        c.sleep(Duration::from_secs(2)).await;
        assert_eq!(c.now(), 5_000_000_000);
    }
}
