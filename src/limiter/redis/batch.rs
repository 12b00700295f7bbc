//! Coalescing of one key's concurrent admission attempts into one script call.
//!
//! Every attempt (`try_acquire`, `decide`, `acquire`'s head waiter) joins the key's
//! pending list. At most one admission call per key is in flight at a time: a caller that
//! finds none in flight takes the pipe at once and goes alone (no added latency when
//! uncontended); callers that arrive while a call is in flight wait, and the first of them
//! to get the pipe when it frees takes every pending entry (up to [`MAX_BATCH`]) and sends
//! them in one call. The script decides the entries in order, each all-or-nothing, as if
//! they had arrived one after another at the same server instant, and answers each with its
//! own four numbers.
//!
//! One key's Redis keys share a hash tag, so a batch never spans Redis Cluster slots.
//!
//! A batch of several callers runs in a spawned task that owns the pipe: when the caller
//! that sent it is cancelled, the others still get the answers Redis gave (their
//! admissions were made and must reach their owners). An entry is answered before the pipe
//! is released, so a caller that holds the pipe and has no answer yet is still pending.
//! A caller cancelled while its attempt is still pending is dropped from the list unsent,
//! so it spends nothing (as a cancelled call that never reached Redis).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::RedisFailure;

/// Most entries one call decides (bounds the script's run time, during which Redis serves
/// nobody else).
pub(crate) const MAX_BATCH: usize = 128;

/// Numbers the script answers per entry: outcome, server µs, dimension or sequence number,
/// wait µs.
pub(crate) const REPLY_LEN: usize = 4;

/// One entry's answer: its [`REPLY_LEN`] numbers, or why the call failed.
pub(crate) type Answer = Result<[i64; REPLY_LEN], RedisFailure>;

struct Pending {
    values: Vec<u8>,
    reply: oneshot::Sender<Answer>,
}

/// One key's admission coalescing (see the module doc).
#[derive(Default)]
pub(crate) struct Batcher {
    pending: Mutex<Vec<Pending>>,
    /// Held for the duration of one admission call of the key.
    pipe: Arc<tokio::sync::Mutex<()>>,
    /// Admission calls sent.
    calls: AtomicU64,
    /// Entries decided by those calls.
    entries: AtomicU64,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("pending", &self.pending.lock().len())
            .field("calls", &self.calls.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Batcher {
    /// Admission calls sent for this key, and the entries they decided (their ratio is the
    /// mean batch size).
    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.calls.load(Ordering::Relaxed),
            self.entries.load(Ordering::Relaxed),
        )
    }

    /// Decides `values` (one entry's packed values) in a batch: `call` is given the
    /// concatenated values of the batch's entries in order and must answer [`REPLY_LEN`]
    /// numbers per entry, in the same order. Cancel-safe for the other callers.
    pub(crate) async fn submit<F, Fut>(&self, values: Vec<u8>, call: F) -> Answer
    where
        F: Fn(Vec<u8>) -> Fut,
        Fut: Future<Output = Result<Vec<i64>, RedisFailure>> + Send + 'static,
    {
        let (tx, mut rx) = oneshot::channel();
        self.pending.lock().push(Pending { values, reply: tx });
        loop {
            let pipe = tokio::select! {
                biased;
                answer = &mut rx => return answer.unwrap_or_else(|_| Err(dropped())),
                pipe = self.pipe.clone().lock_owned() => pipe,
            };
            // The previous holder answered every entry it took before releasing the pipe.
            match rx.try_recv() {
                Ok(answer) => return answer,
                Err(oneshot::error::TryRecvError::Closed) => return Err(dropped()),
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            let batch: Vec<Pending> = {
                let mut pending = self.pending.lock();
                // A caller that gave up before its attempt was sent is not decided at all.
                pending.retain(|p| !p.reply.is_closed());
                let take = pending.len().min(MAX_BATCH);
                pending.drain(..take).collect()
            };
            if batch.is_empty() {
                // Not reachable (this entry is pending until answered); wait again.
                continue;
            }
            self.calls.fetch_add(1, Ordering::Relaxed);
            self.entries
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            let mut values = Vec::with_capacity(batch.iter().map(|p| p.values.len()).sum());
            for p in &batch {
                values.extend_from_slice(&p.values);
            }
            let reply = call(values);
            match tokio::runtime::Handle::try_current() {
                // Alone in the batch, or no runtime to spawn on: call here.
                _ if batch.len() == 1 => {
                    answer(batch, reply.await);
                    drop(pipe);
                }
                Err(_) => {
                    answer(batch, reply.await);
                    drop(pipe);
                }
                Ok(handle) => {
                    handle.spawn(async move {
                        answer(batch, reply.await);
                        drop(pipe);
                    });
                }
            }
        }
    }
}

fn dropped() -> RedisFailure {
    RedisFailure::Reply("the admission batch was dropped before it was answered".into())
}

/// Hands each entry of `batch` its part of `reply`.
fn answer(batch: Vec<Pending>, reply: Result<Vec<i64>, RedisFailure>) {
    let reply = match reply {
        Ok(v) if v.len() == REPLY_LEN * batch.len() => Ok(v),
        Ok(v) => Err(RedisFailure::Reply(format!(
            "{} numbers for {} entries: {v:?}",
            v.len(),
            batch.len()
        ))),
        Err(e) => Err(e),
    };
    for (i, p) in batch.into_iter().enumerate() {
        let part = match &reply {
            Ok(v) => {
                let mut out = [0; REPLY_LEN];
                out.copy_from_slice(&v[i * REPLY_LEN..(i + 1) * REPLY_LEN]);
                Ok(out)
            }
            Err(e) => Err(e.clone()),
        };
        // A caller that gave up no longer listens; its answer has no owner.
        let _ = p.reply.send(part);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    type Reply = std::pin::Pin<Box<dyn Future<Output = Result<Vec<i64>, RedisFailure>> + Send>>;

    /// A fake script: entry `i` of the whole run (in arrival order at the fake server)
    /// answers `[1, i, value, batch size]`, after a short delay.
    fn fake(seen: Arc<AtomicUsize>, delay: Duration) -> impl Fn(Vec<u8>) -> Reply {
        move |values: Vec<u8>| {
            let seen = seen.clone();
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                let k = values.len() / 8;
                let mut out = Vec::new();
                for chunk in values.chunks_exact(8) {
                    let v = i64::from_le_bytes(chunk.try_into().unwrap());
                    let i = seen.fetch_add(1, Ordering::Relaxed) as i64;
                    out.extend([1, i, v, k as i64]);
                }
                Ok(out)
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_uncontended_caller_goes_alone_at_once() {
        let b = Batcher::default();
        let seen = Arc::new(AtomicUsize::new(0));
        for v in 0..3i64 {
            let t = tokio::time::Instant::now();
            let a = b
                .submit(
                    v.to_le_bytes().to_vec(),
                    fake(seen.clone(), Duration::from_millis(1)),
                )
                .await
                .unwrap();
            assert_eq!(a, [1, v, v, 1]);
            assert_eq!(t.elapsed(), Duration::from_millis(1), "no added latency");
        }
        assert_eq!(b.counts(), (3, 3));
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_calls_and_each_gets_its_own_answer() {
        let b = Arc::new(Batcher::default());
        let seen = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..50i64)
            .map(|v| {
                let (b, seen) = (b.clone(), seen.clone());
                tokio::spawn(async move {
                    b.submit(
                        v.to_le_bytes().to_vec(),
                        fake(seen, Duration::from_millis(1)),
                    )
                    .await
                })
            })
            .collect();
        let mut answers = Vec::new();
        for (v, t) in tasks.into_iter().enumerate() {
            let a = t.await.unwrap().unwrap();
            assert_eq!(a[2], v as i64, "each caller gets its own entry's answer");
            answers.push(a);
        }
        let (calls, entries) = b.counts();
        assert_eq!(entries, 50);
        assert!((2..50).contains(&calls), "{calls} calls for 50 callers");
        // Every entry was decided exactly once.
        let mut order: Vec<i64> = answers.iter().map(|a| a[1]).collect();
        order.sort_unstable();
        assert_eq!(order, (0..50).collect::<Vec<_>>());
    }

    #[tokio::test(start_paused = true)]
    async fn batches_are_bounded() {
        let b = Arc::new(Batcher::default());
        let seen = Arc::new(AtomicUsize::new(0));
        let n = 3 * MAX_BATCH as i64;
        let tasks: Vec<_> = (0..n)
            .map(|v| {
                let (b, seen) = (b.clone(), seen.clone());
                tokio::spawn(async move {
                    b.submit(
                        v.to_le_bytes().to_vec(),
                        fake(seen, Duration::from_millis(1)),
                    )
                    .await
                })
            })
            .collect();
        for t in tasks {
            let a = t.await.unwrap().unwrap();
            assert!(a[3] as usize <= MAX_BATCH);
        }
        assert!(b.counts().0 >= 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_or_a_short_reply_reaches_every_entry() {
        let b = Arc::new(Batcher::default());
        // The first call holds the pipe while the others queue, then everyone fails.
        let failing = |short: bool| {
            move |values: Vec<u8>| async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                if short {
                    Ok(vec![1; values.len() / 8 * REPLY_LEN - 1])
                } else {
                    Err(RedisFailure::Redis("down".into()))
                }
            }
        };
        for short in [false, true] {
            let tasks: Vec<_> = (0..10i64)
                .map(|v| {
                    let b = b.clone();
                    tokio::spawn(
                        async move { b.submit(v.to_le_bytes().to_vec(), failing(short)).await },
                    )
                })
                .collect();
            for t in tasks {
                let e = t.await.unwrap().unwrap_err();
                if short {
                    assert!(matches!(e, RedisFailure::Reply(_)), "{e:?}");
                } else {
                    assert_eq!(e, RedisFailure::Redis("down".into()));
                }
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_cancelled_before_its_batch_is_sent_is_not_decided() {
        let b = Arc::new(Batcher::default());
        let seen = Arc::new(AtomicUsize::new(0));
        let slow = Duration::from_millis(10);
        let a = {
            let (b, seen) = (b.clone(), seen.clone());
            tokio::spawn(async move { b.submit(vec![0; 8], fake(seen, slow)).await })
        };
        tokio::task::yield_now().await;
        let queued: Vec<_> = (1..4i64)
            .map(|v| {
                let (b, seen) = (b.clone(), seen.clone());
                tokio::spawn(
                    async move { b.submit(v.to_le_bytes().to_vec(), fake(seen, slow)).await },
                )
            })
            .collect();
        tokio::task::yield_now().await;
        // Cancel the first queued caller while A's call is still in flight.
        let mut queued = queued.into_iter();
        queued.next().unwrap().abort();
        a.await.unwrap().unwrap();
        for (v, t) in (2..4).zip(queued) {
            let answer = t.await.unwrap().unwrap();
            assert_eq!(answer[2], v);
            assert_eq!(
                answer[3], 2,
                "the batch held only the callers still waiting"
            );
        }
        assert_eq!(b.counts(), (2, 3));
        assert_eq!(seen.load(Ordering::Relaxed), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_sender_does_not_lose_the_others_answers() {
        let b = Arc::new(Batcher::default());
        let seen = Arc::new(AtomicUsize::new(0));
        let slow = Duration::from_millis(10);
        // A holds the pipe alone; B, C, D queue behind it.
        let a = {
            let (b, seen) = (b.clone(), seen.clone());
            tokio::spawn(async move { b.submit(vec![0; 8], fake(seen, slow)).await })
        };
        tokio::task::yield_now().await;
        let others: Vec<_> = (1..4i64)
            .map(|v| {
                let (b, seen) = (b.clone(), seen.clone());
                tokio::spawn(
                    async move { b.submit(v.to_le_bytes().to_vec(), fake(seen, slow)).await },
                )
            })
            .collect();
        tokio::task::yield_now().await;
        a.await.unwrap().unwrap();
        // Once B sent the batch of B, C, D, cancel B: C and D still get their answers.
        tokio::time::sleep(Duration::from_millis(1)).await;
        let mut others = others.into_iter();
        let first = others.next().unwrap();
        first.abort();
        for (v, t) in (2..4).zip(others) {
            assert_eq!(t.await.unwrap().unwrap()[2], v);
        }
        assert_eq!(b.counts(), (2, 4));
    }
}
