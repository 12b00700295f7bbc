//! Time, injected.
//!
//! Every limiter and the simulator read time through a [`Clock`], never through
//! `Instant::now()`, so tests can drive time by hand ([`ManualClock`]) or run under tokio's
//! paused time ([`TokioClock`]) and assert exact waits without sleeping. This is the only
//! file on a limiter path that reads a real clock.
//!
//! Two real clocks: [`SystemClock`] reads the OS's monotonic clock (`Instant`, ~25 ns a read
//! through the vDSO); [`TscClock`] reads the CPU's time-stamp counter directly (through the
//! `quanta` crate, ~10 ns a read) when the OS itself trusts that counter, and the OS clock
//! otherwise. Both keep the [`Clock`] contract: nanoseconds, never decreasing.

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

    /// The current time for a caller that orders its own readings: never below `floor`,
    /// the latest reading of this clock the caller has kept (under the lock it reads
    /// under), but only ordered against that floor — another thread's reading made before
    /// may be later by the clock's cross-CPU skew. A clock pays for the global order of
    /// [`now`](Self::now) with shared state ([`TscClock`]: one atomic maximum) and skips
    /// it here; the others answer `now()` (a [`ManualClock`] moved back by hand still
    /// reads its earlier time, as with `now()`).
    fn now_at_least(&self, floor: Nanos) -> Nanos {
        let _ = floor;
        self.now()
    }

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

/// The real monotonic clock read from the CPU's time-stamp counter, epoch at construction:
/// the hot path's clock (an in-memory limiter reads it on every admission).
///
/// **Contract** (as [`Clock`]): nanoseconds since the epoch, never decreasing. The counter
/// is used only when both hold: the CPU's TSC is invariant (constant rate through power
/// states, checked by `quanta` through CPUID, which also calibrates counts to nanoseconds
/// against the OS clock once per process), and — on Linux — the kernel's current
/// clocksource is that counter (`tsc`, or `arch_sys_counter` on arm64), i.e. the kernel
/// found it rate-stable and watches it; the OS's own monotonic clock is then that same
/// counter, read through the vDSO. Otherwise it reads `Instant`, like [`SystemClock`].
/// The counters of two CPUs may still disagree by some cycles (up to ~150 ns measured on
/// this 2-vCPU VM, where `Instant` hides it), so the clock never hands out a reading below
/// the latest it handed out (one shared atomic maximum, ~2.5 ns uncontended); a reading
/// before the epoch reads as the epoch.
///
/// **Accuracy:** the calibration's rate error is what `quanta` reaches in its calibration
/// loop (well under 1 ppm measured here: < 100 ns off `Instant` after 3 s), so limits are
/// enforced to that relative precision. Sleeps are relative (`deadline − now` on this clock,
/// slept on tokio's timer), so the rate error never accumulates into a sleep.
///
/// Cheap to clone (the calibration is shared); its sleeps need a tokio runtime.
#[derive(Debug, Clone)]
pub struct TscClock {
    source: TscSource,
}

#[derive(Debug, Clone)]
enum TscSource {
    /// The time-stamp counter, and its raw reading at the epoch.
    Counter {
        counter: quanta::Clock,
        epoch_raw: u64,
        /// The latest reading handed out by this clock or its clones: counters of two CPUs
        /// may disagree by some cycles (here up to ~150 ns), so a reading ordered after
        /// another (through a lock, a channel) could otherwise be earlier.
        latest: Arc<AtomicU64>,
    },
    /// The OS clock: the counter is not trusted here.
    Os(SystemClock),
}

impl TscClock {
    /// A clock whose epoch is now. The first clock of a process calibrates the counter
    /// against the OS clock (under a millisecond typically, at most 200 ms).
    pub fn new() -> Self {
        if !os_trusts_counter() {
            return Self::os();
        }
        let counter = quanta::Clock::new();
        let epoch_raw = counter.raw();
        Self {
            source: TscSource::Counter {
                counter,
                epoch_raw,
                latest: Arc::new(AtomicU64::new(0)),
            },
        }
    }

    /// The fallback, explicitly: a clock reading the OS clock (`Instant`).
    pub fn os() -> Self {
        Self {
            source: TscSource::Os(SystemClock::new()),
        }
    }

    /// Whether the counter path was chosen (false: this clock reads `Instant`, because the
    /// kernel does not use the counter as its clocksource). `quanta` may still read the OS
    /// clock on the counter path, on a CPU without an invariant TSC.
    pub fn reads_counter(&self) -> bool {
        matches!(self.source, TscSource::Counter { .. })
    }
}

impl Default for TscClock {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether the OS uses the CPU counter as its clocksource (Linux; elsewhere `quanta`'s own
/// CPUID check decides, and it falls back to the OS clock by itself).
fn os_trusts_counter() -> bool {
    if !cfg!(target_os = "linux") {
        return true;
    }
    match std::fs::read_to_string(
        "/sys/devices/system/clocksource/clocksource0/current_clocksource",
    ) {
        Ok(source) => matches!(source.trim(), "tsc" | "arch_sys_counter"),
        Err(_) => false,
    }
}

impl Clock for TscClock {
    #[inline]
    fn now(&self) -> Nanos {
        match &self.source {
            TscSource::Counter {
                counter,
                epoch_raw,
                latest,
            } => {
                // 0 for a reading at or before the epoch; then never below a reading this
                // clock handed out before (an atomic read-modify-write reads the latest
                // value, so "before" includes other threads' readings ordered before this).
                let t = counter.delta_as_nanos(*epoch_raw, counter.raw());
                latest.fetch_max(t, Ordering::Relaxed).max(t)
            }
            TscSource::Os(os) => os.now(),
        }
    }

    fn sleep_until(&self, deadline: Nanos) -> Sleep {
        let left = deadline.saturating_sub(self.now());
        Box::pin(tokio::time::sleep(Duration::from_nanos(left)))
    }

    /// The counter read without the shared maximum: ordered only against `floor`.
    #[inline]
    fn now_at_least(&self, floor: Nanos) -> Nanos {
        match &self.source {
            TscSource::Counter {
                counter, epoch_raw, ..
            } => counter.delta_as_nanos(*epoch_raw, counter.raw()).max(floor),
            TscSource::Os(os) => os.now().max(floor),
        }
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
        self.publish(now);
    }

    /// Sets the time to `t`, which may be earlier than now (to test clocks going backwards).
    pub fn set(&self, t: Nanos) {
        self.inner.now.store(t, Ordering::SeqCst);
        self.publish(t);
    }

    /// Hands `t` to the sleepers, waking them only if there are any: a simulation moves
    /// time at every event and usually nobody sleeps on it. The value is stored and the
    /// sleepers counted under the channel's lock, and a sleeper subscribes before it reads
    /// the value under that lock, so one that subscribes after the count reads `t`.
    fn publish(&self, t: Nanos) {
        self.inner.changed.send_if_modified(|now| {
            *now = t;
            self.inner.changed.receiver_count() > 0
        });
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

    /// The TSC clock's contract: never decreasing — on one thread, and across threads when
    /// one reading happens before another (ordered by a lock) — and nanoseconds: over a
    /// spin of 30 ms it agrees with `Instant` to within 1 % (the calibration is far better;
    /// the slack is for a loaded machine descheduling the test between the two reads).
    #[test]
    fn tsc_clock_is_monotonic_nanoseconds() {
        for clock in [TscClock::new(), TscClock::os()] {
            let last = parking_lot::Mutex::new(0u64);
            std::thread::scope(|s| {
                for _ in 0..2 {
                    s.spawn(|| {
                        let mut mine = clock.now();
                        for _ in 0..200_000 {
                            let t = clock.now();
                            assert!(t >= mine, "went back on one thread: {mine} -> {t}");
                            mine = t;
                            let mut shared = last.lock();
                            let t = clock.now();
                            assert!(t >= *shared, "went back across threads: {} -> {t}", *shared);
                            *shared = t;
                        }
                    });
                }
            });

            let (start, t0) = (Instant::now(), clock.now());
            while start.elapsed() < Duration::from_millis(30) {
                std::hint::spin_loop();
            }
            let (t1, wall) = (clock.now(), start.elapsed());
            let measured = (t1 - t0) as f64;
            let real = wall.as_nanos() as f64;
            assert!(
                (measured - real).abs() <= real * 0.01,
                "{clock:?}: {measured} ns on the clock, {real} ns on Instant"
            );
        }
    }

    /// `now_at_least` with the floor kept under a lock: readings under that lock never go
    /// back, across threads, without the clock's shared maximum.
    #[test]
    fn tsc_clock_now_at_least_is_ordered_by_its_floor() {
        let clock = TscClock::new();
        assert_eq!(clock.now_at_least(u64::MAX), u64::MAX);
        let floor = parking_lot::Mutex::new(0u64);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for _ in 0..200_000 {
                        let mut last = floor.lock();
                        let t = clock.now_at_least(*last);
                        assert!(t >= *last);
                        *last = t;
                    }
                });
            }
        });
    }

    #[test]
    fn tsc_clock_reads_the_counter_when_the_kernel_does() {
        assert_eq!(TscClock::new().reads_counter(), os_trusts_counter());
        assert!(!TscClock::os().reads_counter());
    }

    #[tokio::test]
    async fn tsc_clock_sleeps_until_its_own_deadline() {
        let c = TscClock::new();
        let deadline = c.now() + 2_000_000;
        c.sleep_until(deadline).await;
        assert!(c.now() >= deadline);
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
