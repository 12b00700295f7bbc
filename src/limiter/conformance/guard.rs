//! A clock that turns a busy-waiting `acquire` into a failure instead of a hang.
//!
//! An `acquire` that is told to wait zero nanoseconds (a wait rounded down, say) asks its
//! clock for a sleep that is already over, tries again, is refused again, and so on: inside
//! one poll, forever. The kit cannot interrupt a poll, but the limiter's clock sees every
//! such sleep. [`GuardedClock`] counts the sleeps that are already over while the time
//! stands still, and past [`BUSY_WAIT_LIMIT`] of them it panics with [`BUSY_WAIT`]: the
//! conformance runner catches that panic around each poll of a waiter and reports
//! [`Property::NoBusyWait`](super::Property::NoBusyWait).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::clock::{Clock, ManualClock, Nanos, Sleep};

/// Sleeps already over, in a row at one instant, that count as busy waiting.
pub const BUSY_WAIT_LIMIT: u64 = 10_000;

/// The start of the panic message of a busy wait.
pub const BUSY_WAIT: &str = "busy wait";

/// A [`ManualClock`] (shared: clones of the inner clock move it) that panics when asked
/// for [`BUSY_WAIT_LIMIT`] sleeps in a row that are already over, without the time moving.
/// Build the limiter under test on it to prove `acquire` with
/// [`check`](super::check).
#[derive(Debug)]
pub struct GuardedClock {
    inner: ManualClock,
    /// The instant of the last sleep that was already over, and how many in a row there.
    at: AtomicU64,
    spins: AtomicU64,
}

impl GuardedClock {
    /// A guard around `clock` (pass the same clock to [`check`](super::check)).
    pub fn new(clock: ManualClock) -> Self {
        Self {
            inner: clock,
            at: AtomicU64::new(Nanos::MAX),
            spins: AtomicU64::new(0),
        }
    }
}

impl Clock for GuardedClock {
    fn now(&self) -> Nanos {
        self.inner.now()
    }

    /// As the inner clock's; panics (see the module docs) on the
    /// [`BUSY_WAIT_LIMIT`]th sleep in a row that is already over at one instant.
    fn sleep_until(&self, deadline: Nanos) -> Sleep {
        let now = self.inner.now();
        if deadline <= now {
            let spins = if self.at.swap(now, Ordering::Relaxed) == now {
                self.spins.fetch_add(1, Ordering::Relaxed) + 1
            } else {
                self.spins.store(1, Ordering::Relaxed);
                1
            };
            if spins >= BUSY_WAIT_LIMIT {
                self.spins.store(0, Ordering::Relaxed);
                // The only way out of a loop that never yields: see the module docs.
                panic!(
                    "{BUSY_WAIT}: {spins} sleeps until {deadline} ns asked for at {now} ns \
                     without the clock moving"
                );
            }
        }
        self.inner.sleep_until(deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleeps_in_the_future_and_a_few_over_ones_are_fine() {
        let clock = ManualClock::new(5);
        let g = GuardedClock::new(clock.clone());
        for _ in 0..BUSY_WAIT_LIMIT - 1 {
            drop(g.sleep_until(5));
        }
        clock.advance(std::time::Duration::from_nanos(1));
        for _ in 0..BUSY_WAIT_LIMIT - 1 {
            drop(g.sleep_until(6));
            drop(g.sleep_until(100));
        }
        assert_eq!(g.now(), 6);
    }

    #[test]
    #[should_panic(expected = "busy wait")]
    fn a_spinning_caller_panics() {
        let g = GuardedClock::new(ManualClock::new(5));
        for _ in 0..BUSY_WAIT_LIMIT {
            drop(g.sleep_until(3));
        }
    }
}
