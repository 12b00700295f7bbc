//! The server's shared state: the checked configuration, one quota engine and one set of
//! counters per key, the clock, and lookups built once at start.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::clock::{MockClock, SystemClock};
use crate::config::{ConfigError, DeploymentConfig, MockConfig, ModelConfig};
use crate::generation::{fnv1a, LatencyModel};
use crate::provider::anthropic::AnthropicState;
use crate::quota::{AzureQuota, OpenAiQuota, QuotaEngine};
use crate::units::NANOS_PER_SEC;

/// Counters of one quota key, reported by `/_mock/stats` and `/metrics`.
#[derive(Debug, Default)]
pub struct KeyStats {
    /// Requests admitted by the quota.
    pub admitted: AtomicU64,
    /// Requests refused on the request dimension.
    pub throttled_requests: AtomicU64,
    /// Requests refused on the token dimension.
    pub throttled_tokens: AtomicU64,
    /// Tokens charged at admission (the estimates).
    pub tokens_charged: AtomicU64,
    /// Tokens actually used (prompt + completion, as reported in `usage`).
    pub tokens_used: AtomicU64,
    /// Injected 500s.
    pub faults_500: AtomicU64,
    /// Injected 429 `insufficient_quota` answers (not counted as throttled or admitted).
    pub faults_insufficient_quota: AtomicU64,
    /// Injected 503s.
    pub faults_503: AtomicU64,
    /// Streams dropped mid-way on purpose.
    pub faults_dropped: AtomicU64,
    /// Responses stalled before the first byte on purpose.
    pub faults_stalled: AtomicU64,
}

impl KeyStats {
    /// Every counter, with its name, in report order.
    pub fn fields(&self) -> [(&'static str, &AtomicU64); 10] {
        [
            ("admitted", &self.admitted),
            ("throttled_requests", &self.throttled_requests),
            ("throttled_tokens", &self.throttled_tokens),
            ("tokens_charged", &self.tokens_charged),
            ("tokens_used", &self.tokens_used),
            ("faults_500", &self.faults_500),
            ("faults_503", &self.faults_503),
            ("faults_dropped", &self.faults_dropped),
            ("faults_stalled", &self.faults_stalled),
            ("faults_insufficient_quota", &self.faults_insufficient_quota),
        ]
    }

    fn clear(&self) {
        for (_, c) in self.fields() {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// One quota key: `openai/{org}/{model}` or `azure/{deployment}`.
#[derive(Debug)]
pub struct Slot {
    /// `"openai"` or `"azure"`.
    pub provider: &'static str,
    /// `{org}/{model}` or `{deployment}`.
    pub key: String,
    /// The quota state.
    pub quota: Mutex<Box<dyn QuotaEngine>>,
    /// The counters.
    pub stats: KeyStats,
}

/// Shared state of one mock server; cheap to clone (an `Arc`).
#[derive(Debug, Clone)]
pub struct MockState(pub(crate) Arc<Inner>);

#[derive(Debug)]
pub(crate) struct Inner {
    pub config: MockConfig,
    pub clock: Arc<dyn MockClock>,
    pub latency: LatencyModel,
    /// Unix seconds at the clock's epoch (for `created`); the only wall-clock read.
    pub unix_at_epoch: u64,
    pub models: HashMap<String, usize>,
    pub deployments: HashMap<String, usize>,
    /// Key → organization index; `None` = any non-empty key, organization 0.
    pub openai_keys: Option<HashMap<String, usize>>,
    /// `None` = any non-empty key.
    pub azure_keys: Option<HashSet<String>>,
    /// OpenAI slots (organization-major), then Azure slots.
    pub slots: Vec<Slot>,
    /// `system_fingerprint` per model.
    pub fingerprints: Vec<String>,
    /// Requests received (numbers each request for seeding and ids).
    pub requests: AtomicU64,
    /// The Anthropic mock's models, buckets, caches and counters.
    pub anthropic: AnthropicState,
}

impl MockState {
    /// State for `config` on the real monotonic clock.
    pub fn new(config: MockConfig) -> Result<Self, ConfigError> {
        Self::with_clock(config, Arc::new(SystemClock::new()))
    }

    /// State for `config` reading quota time from `clock` (a [`crate::clock::ManualClock`]
    /// in tests, the hub's clock through [`crate::clock::FnClock`]).
    pub fn with_clock(config: MockConfig, clock: Arc<dyn MockClock>) -> Result<Self, ConfigError> {
        config.validate()?;
        let models: HashMap<String, usize> = config
            .models
            .iter()
            .enumerate()
            .map(|(i, m)| (m.id.clone(), i))
            .collect();
        let deployments = config
            .deployments
            .iter()
            .enumerate()
            .map(|(i, d)| (d.name.clone(), i))
            .collect();
        let listed: HashMap<String, usize> = config
            .organizations
            .iter()
            .enumerate()
            .flat_map(|(i, o)| o.keys.iter().map(move |k| (k.clone(), i)))
            .collect();
        let openai_keys = (!listed.is_empty()).then_some(listed);
        let azure_keys =
            (!config.azure_keys.is_empty()).then(|| config.azure_keys.iter().cloned().collect());
        let mut slots = Vec::new();
        for org in &config.organizations {
            for m in &config.models {
                slots.push(openai_slot(&org.id, m));
            }
        }
        slots.extend(config.deployments.iter().map(azure_slot));
        let fingerprints = config
            .models
            .iter()
            .map(|m| format!("fp_{:010x}", fnv1a(m.id.as_bytes()) & 0xff_ffff_ffff))
            .collect();
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let unix_at_epoch = wall.saturating_sub(clock.now() / NANOS_PER_SEC);
        let anthropic = AnthropicState::new(&config.anthropic);
        Ok(Self(Arc::new(Inner {
            latency: LatencyModel::new(&config.latency),
            config,
            clock,
            unix_at_epoch,
            models,
            deployments,
            openai_keys,
            azure_keys,
            slots,
            fingerprints,
            requests: AtomicU64::new(0),
            anthropic,
        })))
    }

    /// The configuration served.
    pub fn config(&self) -> &MockConfig {
        &self.0.config
    }

    /// The clock quota time is read from.
    pub fn clock(&self) -> &Arc<dyn MockClock> {
        &self.0.clock
    }

    /// Every quota key with its counters and engine.
    pub fn slots(&self) -> &[Slot] {
        &self.0.slots
    }

    /// Back to full quota and zero counters on every key, Anthropic models included (their
    /// prompt caches emptied too), and the request count (which numbers requests for their
    /// seeds) back to zero: as fresh as a new server (`POST /_mock/reset`).
    pub fn reset(&self) {
        for s in &self.0.slots {
            s.quota.lock().reset();
            s.stats.clear();
        }
        self.0.anthropic.reset();
        self.0
            .requests
            .store(0, std::sync::atomic::Ordering::Relaxed);
    }

    /// The Anthropic mock's state (per-model buckets and counters).
    pub fn anthropic(&self) -> &AnthropicState {
        &self.0.anthropic
    }

    /// Unix seconds at the quota clock's epoch (what RFC 3339 reset headers add `now` to).
    pub fn unix_at_epoch(&self) -> u64 {
        self.0.unix_at_epoch
    }

    /// Loads the tokenizers the configured models use, so the first request does not pay
    /// for it.
    pub fn warm_up(&self) {
        for m in &self.0.config.models {
            let _ = m.encoding.count("warm up");
        }
    }
}

impl Inner {
    pub fn openai_slot(&self, org: usize, model: usize) -> &Slot {
        &self.slots[org * self.config.models.len() + model]
    }

    pub fn azure_slot(&self, deployment: usize) -> &Slot {
        &self.slots[self.config.organizations.len() * self.config.models.len() + deployment]
    }

    /// Unix seconds now (for `created`).
    pub fn unix_now(&self) -> u64 {
        self.unix_at_epoch + self.clock.now() / NANOS_PER_SEC
    }
}

fn openai_slot(org: &str, m: &ModelConfig) -> Slot {
    Slot {
        provider: "openai",
        key: format!("{org}/{}", m.id),
        quota: Mutex::new(Box::new(OpenAiQuota::new(m.limits()))),
        stats: KeyStats::default(),
    }
}

fn azure_slot(d: &DeploymentConfig) -> Slot {
    Slot {
        provider: "azure",
        key: d.name.clone(),
        quota: Mutex::new(Box::new(AzureQuota::new(d.limits()))),
        stats: KeyStats::default(),
    }
}
