//! What a Redis permit carries besides the public [`Permit`] fields: how it was admitted
//! (by Redis at which server time and sequence number, by the fail-open policy, or by the
//! local fallback limiter), and the per-key local state of this process (permits in
//! flight, the FIFO queue of `acquire` waiters).
//!
//! The [`Ticket`] rides in the permit's guard. `record_usage` gets it back by dropping
//! the permit inside [`take`]: a thread-local sink catches the ticket's drop on the same
//! thread. A permit dropped anywhere else frees its concurrency lease through a spawned
//! call, or when the lease expires.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::clock::Nanos;
use crate::limiter::{Denial, Permit};

/// How a permit was admitted.
#[derive(Debug)]
pub(crate) enum Origin {
    /// By the script, at server time `at_us` (µs), with sequence number `seq`; `lease` when
    /// a concurrency slot is held under `seq`.
    Redis {
        /// Redis time of the admission, µs since the Unix epoch.
        at_us: i64,
        /// The admission's sequence number within its key.
        seq: i64,
        /// Whether a concurrency lease named `seq` must be released.
        lease: bool,
    },
    /// Admitted without Redis by the fail-open policy.
    Open,
    /// Admitted by the local fallback limiter; its own permit.
    Local(Permit),
}

/// A released lease that still has to reach Redis.
pub(crate) type Release = Box<dyn FnOnce(i64) + Send + Sync>;

/// The guard of every permit the Redis limiter hands out.
pub(crate) struct Ticket {
    pub origin: Option<Origin>,
    pub local: Arc<KeyLocal>,
    /// Frees the lease when the permit is dropped outside `record_usage`.
    pub release: Option<Release>,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("origin", &self.origin)
            .finish()
    }
}

thread_local! {
    static SINK: RefCell<Option<Vec<Origin>>> = const { RefCell::new(None) };
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.local.in_flight.fetch_sub(1, Ordering::AcqRel);
        let Some(origin) = self.origin.take() else {
            return;
        };
        let caught = SINK.with(|sink| match sink.borrow_mut().as_mut() {
            Some(v) => {
                v.push(origin);
                None
            }
            None => Some(origin),
        });
        if let Some(Origin::Redis {
            seq, lease: true, ..
        }) = caught
        {
            if let Some(release) = self.release.take() {
                release(seq);
            }
        }
    }
}

/// Drops `permit` and returns its ticket's origin, if it came from this limiter.
pub(crate) fn take(permit: Permit) -> Option<Origin> {
    SINK.with(|sink| *sink.borrow_mut() = Some(Vec::new()));
    drop(permit);
    SINK.with(|sink| sink.borrow_mut().take())
        .and_then(|v| v.into_iter().next())
}

/// This process's view of one key.
#[derive(Debug, Default)]
pub(crate) struct KeyLocal {
    /// Permits admitted here and not yet recorded or dropped.
    pub in_flight: AtomicU64,
    /// `acquire` calls waiting (queued or at the head).
    pub waiters: AtomicUsize,
    /// FIFO order of `acquire` waiters: only the holder calls Redis.
    pub queue: tokio::sync::Mutex<()>,
    /// The head waiter's last denial and until when it sleeps (client clock), so
    /// `try_acquire` does not jump the queue.
    pub head: Mutex<Option<(Denial, Nanos)>>,
}

/// Decrements `waiters` when an `acquire` call ends, however it ends.
#[derive(Debug)]
pub(crate) struct Waiting<'a>(pub &'a KeyLocal);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiters.fetch_sub(1, Ordering::AcqRel);
    }
}
