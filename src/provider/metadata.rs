//! Provider metadata: a clock-injected cache (one hour by default) and a small catalog of
//! well-known models' context windows and list prices.
//!
//! `get_metadata` is called by selectors and reports, not per request, but it must not hit
//! the provider each time: [`MetadataCache`] fetches at most once per TTL, with concurrent
//! callers waiting for the one fetch in flight. Time comes from an injected
//! `Clock`, so expiry is testable with a `ManualClock`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{nanos, Clock, Nanos};

use super::error::ConnectorError;
use super::types::{ModelInfo, Pricing, ProviderMetadata};

/// How long fetched metadata is served from the cache (the hub specification's 1 hour).
pub const METADATA_TTL: Duration = Duration::from_secs(3600);

/// A single-entry, single-flight cache of [`ProviderMetadata`].
#[derive(Debug)]
pub struct MetadataCache {
    clock: Arc<dyn Clock>,
    ttl: Duration,
    /// `(fetched_at, metadata)`. An async mutex held across the fetch makes concurrent
    /// misses wait for one fetch; a cancelled fetch leaves the slot as it was.
    slot: tokio::sync::Mutex<Option<(Nanos, ProviderMetadata)>>,
}

impl MetadataCache {
    /// A cache that keeps metadata for `ttl` of `clock`'s time.
    pub fn new(clock: Arc<dyn Clock>, ttl: Duration) -> Self {
        Self {
            clock,
            ttl,
            slot: tokio::sync::Mutex::new(None),
        }
    }

    /// The cached metadata if it is younger than the TTL, else the result of `fetch`
    /// (cached on success; errors are not cached, so the next call fetches again).
    pub async fn get_or_fetch<F, Fut>(&self, fetch: F) -> Result<ProviderMetadata, ConnectorError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<ProviderMetadata, ConnectorError>>,
    {
        let mut slot = self.slot.lock().await;
        if let Some((at, cached)) = slot.as_ref() {
            if self.clock.now().saturating_sub(*at) < nanos(self.ttl) {
                return Ok(cached.clone());
            }
        }
        let fresh = fetch().await?;
        *slot = Some((self.clock.now(), fresh.clone()));
        Ok(fresh)
    }

    /// Drops the cached entry, so the next call fetches.
    pub async fn invalidate(&self) {
        *self.slot.lock().await = None;
    }
}

/// Context window, largest output (tokens) and USD prices per 1 000 tokens of well-known
/// models, as published at the time of writing; ids match by prefix at a `-` boundary, so
/// dated snapshots (`gpt-4o-2024-08-06`) find their family.
const CATALOG: &[(&str, u32, Option<u32>, f64, f64)] = &[
    ("gpt-4o-mini", 128_000, Some(16_384), 0.000_15, 0.000_6),
    ("gpt-4o", 128_000, Some(16_384), 0.002_5, 0.01),
    ("gpt-4.1-nano", 1_047_576, Some(32_768), 0.000_1, 0.000_4),
    ("gpt-4.1-mini", 1_047_576, Some(32_768), 0.000_4, 0.001_6),
    ("gpt-4.1", 1_047_576, Some(32_768), 0.002, 0.008),
    ("gpt-4-turbo", 128_000, Some(4_096), 0.01, 0.03),
    ("gpt-4", 8_192, Some(8_192), 0.03, 0.06),
    ("gpt-3.5-turbo", 16_385, Some(4_096), 0.000_5, 0.001_5),
    ("o3-mini", 200_000, Some(100_000), 0.001_1, 0.004_4),
    ("text-embedding-3-small", 8_191, None, 0.000_02, 0.0),
    ("text-embedding-3-large", 8_191, None, 0.000_13, 0.0),
    ("text-embedding-ada-002", 8_191, None, 0.000_1, 0.0),
];

/// What is known about model `id` (from the catalog when it matches, else only the id).
/// `owned_by` is passed through from the provider's model list.
pub fn model_info(id: &str, owned_by: Option<String>) -> ModelInfo {
    let entry = CATALOG
        .iter()
        .filter(|(prefix, ..)| {
            id.strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('-'))
        })
        .max_by_key(|(prefix, ..)| prefix.len());
    ModelInfo {
        id: id.to_owned(),
        context_window: entry.map(|e| e.1),
        max_output_tokens: entry.and_then(|e| e.2),
        pricing: entry.map(|e| Pricing {
            input_per_1k_tokens: e.3,
            output_per_1k_tokens: e.4,
        }),
        supports_streaming: !id.contains("embedding"),
        owned_by,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::clock::ManualClock;
    use crate::provider::types::RateLimits;

    fn meta(version: &str) -> ProviderMetadata {
        ProviderMetadata {
            provider_id: "openai".into(),
            api_version: version.into(),
            models: vec![],
            rate_limits: RateLimits::default(),
        }
    }

    #[tokio::test]
    async fn metadata_is_fetched_once_per_hour_of_the_injected_clock() {
        let clock = ManualClock::new(0);
        let cache = MetadataCache::new(Arc::new(clock.clone()), METADATA_TTL);
        let fetches = AtomicUsize::new(0);
        let fetch = || async {
            let n = fetches.fetch_add(1, Ordering::SeqCst);
            Ok(meta(&format!("v{n}")))
        };
        assert_eq!(cache.get_or_fetch(fetch).await.unwrap().api_version, "v0");
        clock.advance(METADATA_TTL - Duration::from_nanos(1));
        assert_eq!(cache.get_or_fetch(fetch).await.unwrap().api_version, "v0");
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        clock.advance(Duration::from_nanos(1));
        assert_eq!(cache.get_or_fetch(fetch).await.unwrap().api_version, "v1");
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
        cache.invalidate().await;
        assert_eq!(cache.get_or_fetch(fetch).await.unwrap().api_version, "v2");
    }

    #[tokio::test]
    async fn failed_fetches_are_not_cached() {
        let cache = MetadataCache::new(Arc::new(ManualClock::new(0)), METADATA_TTL);
        let err = cache
            .get_or_fetch(|| async {
                Err(ConnectorError::Network {
                    message: "down".into(),
                })
            })
            .await;
        assert!(err.is_err());
        let ok = cache.get_or_fetch(|| async { Ok(meta("v1")) }).await;
        assert_eq!(ok.unwrap().api_version, "v1");
    }

    #[tokio::test]
    async fn concurrent_misses_share_one_fetch() {
        let cache = Arc::new(MetadataCache::new(
            Arc::new(ManualClock::new(0)),
            METADATA_TTL,
        ));
        let fetches = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (cache, fetches) = (cache.clone(), fetches.clone());
                tokio::spawn(async move {
                    cache
                        .get_or_fetch(|| async {
                            fetches.fetch_add(1, Ordering::SeqCst);
                            tokio::task::yield_now().await;
                            Ok(meta("v"))
                        })
                        .await
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn catalog_matches_families_at_dash_boundaries() {
        let m = model_info("gpt-4o-mini-2024-07-18", None);
        assert_eq!(m.context_window, Some(128_000));
        assert_eq!(m.pricing.unwrap().input_per_1k_tokens, 0.000_15);
        assert_eq!(model_info("gpt-4", None).context_window, Some(8_192));
        assert_eq!(model_info("gpt-4-0613", None).context_window, Some(8_192));
        assert_eq!(model_info("gpt-4.1", None).context_window, Some(1_047_576));
        let unknown = model_info("llama-3-70b", Some("vllm".into()));
        assert_eq!((unknown.context_window, unknown.pricing), (None, None));
        assert!(unknown.supports_streaming);
        assert!(!model_info("text-embedding-3-small", None).supports_streaming);
    }
}
