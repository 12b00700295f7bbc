//! Open-loop start times delivered on time.
//!
//! tokio's timer wheel rounds every sleep up to the next whole millisecond, so a scheduler
//! sleeping in a task starts each request 1–2 ms late — as much as the whole gap between
//! requests at 1 000/s. The ticker instead runs on its own thread: it prepares each
//! request (prompt text and all) ahead of its intended start, sleeps with the OS timer
//! (sub-millisecond) until that start, then hands the request over a channel, whose send
//! wakes the runner at once. Lateness is then the channel hand-over and the spawn, and a
//! request the runner cannot take in time is late in the report, not silently shifted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::schedule::Scheduled;
use crate::clock::{nanos, Clock, Nanos, SystemClock};

/// The longest one blocking sleep lasts, so a dropped ticker's thread ends soon.
const SLICE: Duration = Duration::from_millis(50);

/// Prepared items sent ahead: enough to absorb a slow runner for a moment, small enough
/// that a stalled runner makes the ticker wait (and the items late) instead of queueing.
const AHEAD: usize = 64;

/// Delivers each scheduled item at its intended start; see the module docs.
#[derive(Debug)]
pub struct Ticker<T> {
    rx: mpsc::Receiver<(usize, T)>,
    pending: Option<(usize, T)>,
    done: Arc<AtomicBool>,
}

impl<T: Send + 'static> Ticker<T> {
    /// Starts the ticker thread. `schedule` yields requests in time order, times in ns
    /// since `start` on `clock`; `prepare` builds each item before its start time. Fails
    /// only when the OS refuses a thread.
    pub fn start(
        schedule: impl Iterator<Item = Scheduled> + Send + 'static,
        clock: SystemClock,
        start: Nanos,
        mut prepare: impl FnMut(Scheduled) -> T + Send + 'static,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel(AHEAD);
        let done = Arc::new(AtomicBool::new(false));
        let stop = done.clone();
        std::thread::Builder::new()
            .name("hub-ticker".into())
            .spawn(move || {
                for scheduled in schedule {
                    let (at, phase) = (scheduled.at, scheduled.phase);
                    let item = prepare(scheduled);
                    let deadline = start.saturating_add(at);
                    loop {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        let now = clock.now();
                        if now >= deadline {
                            break;
                        }
                        clock.block_until(deadline.min(now.saturating_add(nanos(SLICE))));
                    }
                    if tx.blocking_send((phase, item)).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Self {
            rx,
            pending: None,
            done,
        })
    }

    /// The next item of `phase`, at its intended start; `None` when the schedule moves on
    /// to a later phase (that item is kept for it) or ends, or when `stop` is set.
    pub async fn next_in(&mut self, phase: usize, stop: &AtomicBool) -> Option<T> {
        let (p, item) = match self.pending.take() {
            Some(next) => next,
            None => tokio::select! {
                next = self.rx.recv() => next?,
                () = wait_for(stop) => return None,
            },
        };
        if p == phase {
            Some(item)
        } else {
            self.pending = Some((p, item));
            None
        }
    }
}

impl<T> Drop for Ticker<T> {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
    }
}

async fn wait_for(stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scheduled(v: Vec<(Nanos, usize)>) -> impl Iterator<Item = Scheduled> + Send {
        v.into_iter().map(|(at, phase)| Scheduled {
            at,
            phase,
            trace: None,
        })
    }

    /// Start times already past: the ticker sends at once, so nothing here waits.
    fn past(schedule: Vec<(Nanos, usize)>) -> Ticker<(Nanos, usize)> {
        Ticker::start(scheduled(schedule), SystemClock::new(), 0, |s| {
            (s.at, s.phase)
        })
        .expect("a thread starts")
    }

    #[tokio::test]
    async fn items_come_in_order_and_each_phase_ends_where_the_next_begins() {
        let stop = AtomicBool::new(false);
        let mut t = past(vec![(0, 0), (1, 0), (2, 2), (3, 2)]);
        assert_eq!(t.next_in(0, &stop).await, Some((0, 0)));
        assert_eq!(t.next_in(0, &stop).await, Some((1, 0)));
        assert_eq!(t.next_in(0, &stop).await, None, "phase 0 is over");
        assert_eq!(
            t.next_in(1, &stop).await,
            None,
            "phase 1 has no open-loop item"
        );
        assert_eq!(
            t.next_in(2, &stop).await,
            Some((2, 2)),
            "the held item is kept"
        );
        assert_eq!(t.next_in(2, &stop).await, Some((3, 2)));
        assert_eq!(t.next_in(2, &stop).await, None, "the schedule ended");
    }

    #[tokio::test]
    async fn a_set_stop_ends_the_wait_for_an_item_far_ahead() {
        let clock = SystemClock::new();
        let far = nanos(Duration::from_secs(3600));
        let mut t = Ticker::start(scheduled(vec![(far, 0)]), clock, clock.now(), |s| s.at)
            .expect("a thread starts");
        let stop = AtomicBool::new(true);
        assert_eq!(t.next_in(0, &stop).await, None);
    }
}
