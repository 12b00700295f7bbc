//! The Anthropic mock's state: per model its quota, its count_tokens bucket, its prompt
//! cache and its counters.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::config::{AnthropicConfig, AnthropicModelConfig};
use super::quota::{AnthropicLimits, AnthropicQuota, RequestQuota};
use crate::units::Nanos;

/// How long a cache entry lives after its last use (the default `ephemeral` TTL).
pub const CACHE_TTL: Nanos = 5 * 60 * 1_000_000_000;

/// Entries kept per model before expired ones are swept.
const CACHE_SWEEP_AT: usize = 10_000;

/// Counters of one model, reported by `/_mock/stats`.
#[derive(Debug, Default)]
pub struct AnthropicStats {
    /// Messages admitted by the quota.
    pub admitted: AtomicU64,
    /// Refused on requests per minute.
    pub throttled_requests: AtomicU64,
    /// Refused on input tokens per minute.
    pub throttled_input_tokens: AtomicU64,
    /// Refused on output tokens per minute.
    pub throttled_output_tokens: AtomicU64,
    /// Input tokens charged to ITPM (`input + cache_creation`).
    pub input_tokens_charged: AtomicU64,
    /// Input tokens read from the cache (not charged).
    pub cache_read_tokens: AtomicU64,
    /// Output tokens generated (sent, for cut streams).
    pub output_tokens: AtomicU64,
    /// Injected 500s.
    pub faults_500: AtomicU64,
    /// Injected 529s.
    pub faults_529: AtomicU64,
    /// Injected `overloaded_error` events in 200 streams.
    pub faults_overloaded_event: AtomicU64,
    /// Streams dropped on purpose.
    pub faults_dropped: AtomicU64,
    /// Responses stalled on purpose.
    pub faults_stalled: AtomicU64,
    /// count_tokens requests answered.
    pub count_tokens: AtomicU64,
    /// count_tokens requests refused by their bucket.
    pub count_tokens_throttled: AtomicU64,
}

impl AnthropicStats {
    /// Every counter with its name, in report order.
    pub fn fields(&self) -> [(&'static str, &AtomicU64); 14] {
        [
            ("admitted", &self.admitted),
            ("throttled_requests", &self.throttled_requests),
            ("throttled_input_tokens", &self.throttled_input_tokens),
            ("throttled_output_tokens", &self.throttled_output_tokens),
            ("input_tokens_charged", &self.input_tokens_charged),
            ("cache_read_tokens", &self.cache_read_tokens),
            ("output_tokens", &self.output_tokens),
            ("faults_500", &self.faults_500),
            ("faults_529", &self.faults_529),
            ("faults_overloaded_event", &self.faults_overloaded_event),
            ("faults_dropped", &self.faults_dropped),
            ("faults_stalled", &self.faults_stalled),
            ("count_tokens", &self.count_tokens),
            ("count_tokens_throttled", &self.count_tokens_throttled),
        ]
    }
}

/// One model: configuration, buckets, cache, counters.
#[derive(Debug)]
pub struct ModelSlot {
    /// The model's configuration.
    pub config: AnthropicModelConfig,
    /// RPM, ITPM, OTPM.
    pub quota: Mutex<AnthropicQuota>,
    /// count_tokens RPM.
    pub count_quota: Mutex<RequestQuota>,
    /// Prompt-prefix hash → expiry.
    pub cache: Mutex<HashMap<u64, Nanos>>,
    /// Counters.
    pub stats: AnthropicStats,
}

impl ModelSlot {
    /// Looks up a cached prefix at `now`: true on a hit (its expiry is refreshed), false on a
    /// miss (it is written). The caller decides whether the write happened (admitted).
    pub fn cache_hit(&self, hash: u64, now: Nanos) -> bool {
        let cache = self.cache.lock();
        cache.get(&hash).is_some_and(|&expiry| now < expiry)
    }

    /// Writes or refreshes a cached prefix at `now`.
    pub fn cache_touch(&self, hash: u64, now: Nanos) {
        let mut cache = self.cache.lock();
        if cache.len() >= CACHE_SWEEP_AT {
            cache.retain(|_, &mut expiry| expiry > now);
        }
        cache.insert(hash, now.saturating_add(CACHE_TTL));
    }
}

/// The Anthropic mock's state; cheap to clone.
#[derive(Debug, Clone)]
pub struct AnthropicState(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    config: AnthropicConfig,
    index: HashMap<String, usize>,
    slots: Vec<Arc<ModelSlot>>,
}

impl AnthropicState {
    /// Fresh buckets (full), empty caches and zero counters for every configured model.
    pub fn new(config: &AnthropicConfig) -> Self {
        let slots = config
            .models
            .iter()
            .map(|m| {
                Arc::new(ModelSlot {
                    quota: Mutex::new(AnthropicQuota::new(AnthropicLimits {
                        rpm: m.rpm,
                        itpm: m.itpm,
                        otpm: m.otpm,
                        rpm_interval: config.rpm_interval,
                        otpm_rule: config.otpm_rule,
                    })),
                    count_quota: Mutex::new(RequestQuota::new(m.count_tokens_rpm)),
                    cache: Mutex::new(HashMap::new()),
                    stats: AnthropicStats::default(),
                    config: m.clone(),
                })
            })
            .collect();
        let index = config
            .models
            .iter()
            .enumerate()
            .map(|(i, m)| (m.id.clone(), i))
            .collect();
        Self(Arc::new(Shared {
            config: config.clone(),
            index,
            slots,
        }))
    }

    /// The configuration served.
    pub fn config(&self) -> &AnthropicConfig {
        &self.0.config
    }

    /// The slot of model `id`.
    pub fn slot(&self, id: &str) -> Option<&Arc<ModelSlot>> {
        self.0.index.get(id).map(|&i| &self.0.slots[i])
    }

    /// Every model's slot, in configuration order.
    pub fn slots(&self) -> &[Arc<ModelSlot>] {
        &self.0.slots
    }

    /// Full buckets, empty caches and zero counters on every model.
    pub fn reset(&self) {
        for s in &self.0.slots {
            s.quota.lock().reset();
            s.count_quota.lock().reset();
            s.cache.lock().clear();
            for (_, c) in s.stats.fields() {
                c.store(0, Ordering::Relaxed);
            }
        }
    }
}
