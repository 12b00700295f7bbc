//! Response caching (hub specification §CacheStrategy): a byte-value store with TTL, and
//! [`MemoryCache`], an in-process implementation bounded by bytes with least-recently-used
//! eviction. Expiry reads the injected [`Clock`], so TTL is tested without sleeping.
//! [`CacheMiddleware`](crate::middleware::cache::CacheMiddleware) puts it in the pipeline.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::clock::{nanos, Clock, Nanos};

/// A cache operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheError {
    /// The value is larger than the cache's whole byte budget.
    #[error("value of {size} bytes exceeds the cache capacity of {capacity} bytes")]
    TooLarge {
        /// The value's size in bytes (key included).
        size: usize,
        /// The cache's capacity in bytes.
        capacity: usize,
    },
}

/// Counters since the cache was made (or last cleared, for `bytes` and `entries`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// `get`s that found a live entry.
    pub hits: u64,
    /// `get`s that found nothing or an expired entry.
    pub misses: u64,
    /// Entries removed to make room (not expiries, not invalidations).
    pub evictions: u64,
    /// Bytes held now (keys plus values).
    pub bytes: usize,
    /// Entries held now.
    pub entries: usize,
}

/// A key → bytes store with per-entry TTL.
#[async_trait]
pub trait CacheStrategy: Send + Sync + fmt::Debug {
    /// The live value of `key`, counting a hit or a miss.
    async fn get(&self, key: &str) -> Option<Vec<u8>>;
    /// Stores `value` under `key` for `ttl` (replacing any), evicting as needed.
    async fn set(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), CacheError>;
    /// Removes `key` (no error when absent).
    async fn invalidate(&self, key: &str) -> Result<(), CacheError>;
    /// Removes every entry (counters of hits, misses and evictions are kept).
    async fn clear(&self) -> Result<(), CacheError>;
    /// The counters now.
    async fn stats(&self) -> CacheStats;
}

#[derive(Debug)]
struct Entry {
    value: Vec<u8>,
    expires_at: Nanos,
    used: u64,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    /// Last-use tick → key: the first is the least recently used.
    order: BTreeMap<u64, String>,
    tick: u64,
    stats: CacheStats,
}

impl Inner {
    fn remove(&mut self, key: &str) -> bool {
        match self.entries.remove(key) {
            Some(e) => {
                self.order.remove(&e.used);
                self.stats.bytes -= key.len() + e.value.len();
                self.stats.entries -= 1;
                true
            }
            None => false,
        }
    }

    fn touch(&mut self, key: &str) {
        self.tick += 1;
        let tick = self.tick;
        if let Some(e) = self.entries.get_mut(key) {
            self.order.remove(&e.used);
            e.used = tick;
            self.order.insert(tick, key.to_owned());
        }
    }
}

/// In-memory LRU cache bounded by `capacity` bytes (keys plus values); O(log n) per
/// operation. Expired entries are dropped when read or when room is needed.
pub struct MemoryCache {
    capacity: usize,
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
}

impl fmt::Debug for MemoryCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryCache")
            .field("capacity", &self.capacity)
            .field("stats", &self.inner.lock().stats)
            .finish()
    }
}

impl MemoryCache {
    /// A cache holding at most `capacity` bytes, expiring by `clock`.
    pub fn new(capacity: usize, clock: Arc<dyn Clock>) -> Self {
        Self {
            capacity,
            clock,
            inner: Mutex::new(Inner::default()),
        }
    }
}

#[async_trait]
impl CacheStrategy for MemoryCache {
    async fn get(&self, key: &str) -> Option<Vec<u8>> {
        let now = self.clock.now();
        let mut inner = self.inner.lock();
        let live = match inner.entries.get(key) {
            Some(e) if e.expires_at > now => Some(e.value.clone()),
            Some(_) => {
                inner.remove(key);
                None
            }
            None => None,
        };
        match live {
            Some(v) => {
                inner.stats.hits += 1;
                inner.touch(key);
                Some(v)
            }
            None => {
                inner.stats.misses += 1;
                None
            }
        }
    }

    async fn set(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), CacheError> {
        let size = key.len() + value.len();
        if size > self.capacity {
            return Err(CacheError::TooLarge {
                size,
                capacity: self.capacity,
            });
        }
        let now = self.clock.now();
        let mut inner = self.inner.lock();
        inner.remove(key);
        if inner.stats.bytes + size > self.capacity {
            let expired: Vec<String> = inner
                .entries
                .iter()
                .filter(|(_, e)| e.expires_at <= now)
                .map(|(k, _)| k.clone())
                .collect();
            for k in expired {
                inner.remove(&k);
            }
        }
        while inner.stats.bytes + size > self.capacity {
            let Some(lru) = inner.order.first_key_value().map(|(_, k)| k.clone()) else {
                break;
            };
            inner.remove(&lru);
            inner.stats.evictions += 1;
        }
        inner.tick += 1;
        let used = inner.tick;
        inner.order.insert(used, key.to_owned());
        inner.entries.insert(
            key.to_owned(),
            Entry {
                value,
                expires_at: now.saturating_add(nanos(ttl)),
                used,
            },
        );
        inner.stats.bytes += size;
        inner.stats.entries += 1;
        Ok(())
    }

    async fn invalidate(&self, key: &str) -> Result<(), CacheError> {
        self.inner.lock().remove(key);
        Ok(())
    }

    async fn clear(&self) -> Result<(), CacheError> {
        let mut inner = self.inner.lock();
        inner.entries.clear();
        inner.order.clear();
        inner.stats.bytes = 0;
        inner.stats.entries = 0;
        Ok(())
    }

    async fn stats(&self) -> CacheStats {
        self.inner.lock().stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn cache(capacity: usize) -> (MemoryCache, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(0));
        (MemoryCache::new(capacity, clock.clone()), clock)
    }

    #[tokio::test]
    async fn entries_expire_exactly_at_their_ttl_on_the_injected_clock() {
        let (c, clock) = cache(1000);
        c.set("k", b"v".to_vec(), Duration::from_secs(10))
            .await
            .unwrap();
        clock.advance(Duration::from_millis(9_999));
        assert_eq!(c.get("k").await, Some(b"v".to_vec()));
        clock.advance(Duration::from_millis(1));
        assert_eq!(c.get("k").await, None);
        let s = c.stats().await;
        assert_eq!((s.hits, s.misses, s.entries, s.bytes), (1, 1, 0, 0));
    }

    #[tokio::test]
    async fn the_least_recently_used_entry_is_evicted_to_stay_within_the_byte_bound() {
        // Each entry: 1-byte key + 9-byte value = 10 bytes; room for 3.
        let (c, _) = cache(30);
        let ttl = Duration::from_secs(60);
        for k in ["a", "b", "c"] {
            c.set(k, vec![0; 9], ttl).await.unwrap();
        }
        assert!(c.get("a").await.is_some()); // b is now the least recently used
        c.set("d", vec![0; 9], ttl).await.unwrap();
        assert!(c.get("b").await.is_none());
        for k in ["a", "c", "d"] {
            assert!(c.get(k).await.is_some(), "{k}");
        }
        let s = c.stats().await;
        assert_eq!((s.evictions, s.bytes, s.entries), (1, 30, 3));
        assert!(matches!(
            c.set("x", vec![0; 30], ttl).await,
            Err(CacheError::TooLarge {
                size: 31,
                capacity: 30
            })
        ));
    }

    #[tokio::test]
    async fn invalidate_and_clear_remove_entries_and_bytes() {
        let (c, _) = cache(100);
        let ttl = Duration::from_secs(1);
        c.set("a", vec![1; 4], ttl).await.unwrap();
        c.set("b", vec![1; 4], ttl).await.unwrap();
        c.invalidate("a").await.unwrap();
        assert!(c.get("a").await.is_none());
        assert_eq!(c.stats().await.bytes, 5);
        c.clear().await.unwrap();
        assert!(c.get("b").await.is_none());
        assert_eq!(c.stats().await.entries, 0);
    }

    #[tokio::test]
    async fn replacing_a_key_does_not_double_count_its_bytes() {
        let (c, _) = cache(100);
        let ttl = Duration::from_secs(1);
        c.set("a", vec![1; 10], ttl).await.unwrap();
        c.set("a", vec![1; 20], ttl).await.unwrap();
        let s = c.stats().await;
        assert_eq!((s.bytes, s.entries), (21, 1));
    }
}
