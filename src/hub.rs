//! [`Hub`]: the one object a user holds. Built from a TOML config (providers through the
//! plugin registry, limits per key, middleware list, selector, cache), it sends each
//! request to the provider the selector ranks first, through the configured middlewares,
//! falling back along the rest of the ranking.
//!
//! ```toml
//! selector = "priority"            # priority | round_robin | weighted | most_headroom
//! middleware = ["metrics", "cache", "retry", "rate_limit"]   # registration order
//! cache = { capacity_bytes = 1048576, ttl = "5m" }
//!
//! [[provider]]
//! type = "azure"                   # a plugin name
//! priority = 0
//! weight = 1
//! config = { api_key = "…", endpoint = "https://…", deployment = "gpt4o-east" }
//!
//! [limiter]                        # a LimiterConfig
//! [[limiter.key]]
//! provider = "azure"
//! limit = { limits = { requests = "10/10s" } }
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::cache::MemoryCache;
use crate::clock::Clock;
use crate::limiter::{LimitKey, LimiterConfig, RateLimiter};
use crate::metrics::{MetricsCollector, MetricsMiddleware};
use crate::middleware::{
    CacheMiddleware, FallbackMiddleware, Middleware, Pipeline, PipelineError, ProviderSet,
    RateLimitMiddleware, RetryMiddleware,
};
use crate::plugin::{PluginError, PluginRegistry};
use crate::provider::{ChunkStream, CompletionRequest, CompletionResponse, ConnectorError};
use crate::selector::{
    Candidate, MostHeadroomSelector, PrioritySelector, ProviderSelector, RoundRobinSelector,
    WeightedSelector,
};
use crate::units::de_duration;

/// One `[[provider]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderEntry {
    /// The plugin that builds it.
    #[serde(rename = "type")]
    pub kind: String,
    /// Lower is preferred by the `priority` selector. Default 0.
    #[serde(default)]
    pub priority: u32,
    /// Share for the `weighted` selector. Default 1.
    #[serde(default = "one")]
    pub weight: u32,
    /// The plugin's string map (`api_key`, `base_url`, `endpoint`, `deployment`, …).
    #[serde(default)]
    pub config: HashMap<String, String>,
}

fn one() -> u32 {
    1
}

/// The `cache` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSettings {
    /// Byte bound of the in-memory store.
    pub capacity_bytes: usize,
    /// How long a response is served from the cache.
    #[serde(deserialize_with = "de_duration")]
    pub ttl: Duration,
}

/// A hub configuration (see the module docs for the TOML shape).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubConfig {
    /// Selector name: `priority` (default), `round_robin`, `weighted`, `most_headroom`.
    #[serde(default = "default_selector")]
    pub selector: String,
    /// Middleware names in registration order: `metrics`, `cache`, `retry`, `rate_limit`.
    #[serde(default)]
    pub middleware: Vec<String>,
    /// The response cache; required when `middleware` names `cache`.
    #[serde(default)]
    pub cache: Option<CacheSettings>,
    /// The providers.
    #[serde(rename = "provider")]
    pub providers: Vec<ProviderEntry>,
    /// Limits per key.
    #[serde(default)]
    pub limiter: LimiterConfig,
}

fn default_selector() -> String {
    "priority".into()
}

/// A hub could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The TOML did not parse or match the schema.
    #[error("hub config: {0}")]
    Toml(String),
    /// A name in the config is not known.
    #[error("unknown {what} `{name}`")]
    Unknown {
        /// What kind of name (`selector`, `middleware`).
        what: &'static str,
        /// The name.
        name: String,
    },
    /// `cache` middleware without a `cache` table.
    #[error("middleware `cache` needs a [cache] table")]
    MissingCache,
    /// Two providers have the same id.
    #[error("duplicate provider id `{0}`")]
    DuplicateProvider(String),
    /// A provider could not be built.
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// The limiter could not be built.
    #[error(transparent)]
    Limiter(#[from] crate::limiter::BuildError),
    /// No provider is available for the request.
    #[error("no provider is available")]
    NoProvider,
    /// The request failed.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// A stream could not be opened.
    #[error(transparent)]
    Connector(#[from] ConnectorError),
}

/// The facade: providers, limiter, selector, middlewares, metrics.
#[derive(Debug)]
pub struct Hub {
    providers: ProviderSet,
    candidates: Vec<Candidate>,
    selector: Arc<dyn ProviderSelector>,
    middlewares: Vec<Arc<dyn Middleware>>,
    limiter: Arc<dyn RateLimiter>,
    metrics: Arc<MetricsCollector>,
    clock: Arc<dyn Clock>,
}

impl Hub {
    /// Builds a hub from TOML `text`, its providers through `plugins`, time from `clock`.
    pub async fn from_toml(
        text: &str,
        plugins: &PluginRegistry,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, HubError> {
        let config: HubConfig = toml::from_str(text).map_err(|e| HubError::Toml(e.to_string()))?;
        Self::build(config, plugins, clock).await
    }

    /// Builds a hub from a parsed config.
    pub async fn build(
        config: HubConfig,
        plugins: &PluginRegistry,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, HubError> {
        let limiter = crate::limiter::build(config.limiter.clone(), clock.clone()).await?;
        let mut providers = ProviderSet::new();
        let mut candidates = Vec::new();
        let mut rate_limit = RateLimitMiddleware::new(limiter.clone());
        for entry in &config.providers {
            let p = plugins.create(&entry.kind, &entry.config, clock.clone())?;
            let id = p.provider_id().to_owned();
            if providers.insert(id.clone(), p).is_some() {
                return Err(HubError::DuplicateProvider(id));
            }
            // The model is filled in per request (see `rank`).
            let mut key = LimitKey::new(id.as_str(), "");
            if let Some(d) = entry.config.get("deployment") {
                key = key.with_deployment(d.as_str());
                rate_limit = rate_limit.with_deployment(id.clone(), d.clone());
            }
            let mut c = Candidate::new(id, key);
            c.priority = entry.priority;
            c.weight = entry.weight;
            candidates.push(c);
        }
        let selector: Arc<dyn ProviderSelector> = match config.selector.as_str() {
            "priority" => Arc::new(PrioritySelector::new(clock.clone())),
            "round_robin" => Arc::new(RoundRobinSelector::new(clock.clone())),
            "weighted" => Arc::new(WeightedSelector::new(clock.clone())),
            "most_headroom" => Arc::new(MostHeadroomSelector::new(limiter.clone(), clock.clone())),
            other => {
                return Err(HubError::Unknown {
                    what: "selector",
                    name: other.into(),
                })
            }
        };
        let metrics = Arc::new(MetricsCollector::new());
        let mut middlewares: Vec<Arc<dyn Middleware>> = Vec::new();
        for name in &config.middleware {
            let m: Arc<dyn Middleware> = match name.as_str() {
                "metrics" => Arc::new(MetricsMiddleware::new(metrics.clone(), clock.clone())),
                "cache" => {
                    let c = config.cache.as_ref().ok_or(HubError::MissingCache)?;
                    let store = Arc::new(MemoryCache::new(c.capacity_bytes, clock.clone()));
                    Arc::new(CacheMiddleware::new(store, c.ttl))
                }
                "retry" => Arc::new(RetryMiddleware::new(
                    limiter.clone(),
                    rate_limit.clone(),
                    clock.clone(),
                )),
                "rate_limit" => Arc::new(rate_limit.clone()),
                other => {
                    return Err(HubError::Unknown {
                        what: "middleware",
                        name: other.into(),
                    })
                }
            };
            middlewares.push(m);
        }
        Ok(Self {
            providers,
            candidates,
            selector,
            middlewares,
            limiter,
            metrics,
            clock,
        })
    }

    /// The metrics the `metrics` middleware records into.
    pub fn metrics(&self) -> &Arc<MetricsCollector> {
        &self.metrics
    }

    /// The shared limiter.
    pub fn limiter(&self) -> &Arc<dyn RateLimiter> {
        &self.limiter
    }

    /// The selector's ranking for `request`, candidates keyed by the request's model (the
    /// key the rate-limit middleware charges).
    async fn rank(&self, request: &CompletionRequest) -> Vec<String> {
        let candidates: Vec<Candidate> = self
            .candidates
            .iter()
            .map(|c| {
                let mut c = c.clone();
                c.key.model = request.model.as_str().into();
                c
            })
            .collect();
        self.selector.rank(request, &candidates).await
    }

    /// Sends `request` to the selector's first choice through the middlewares, falling
    /// back along the selector's ranking on errors another provider may not have.
    pub async fn complete(
        &self,
        request: CompletionRequest,
    ) -> Result<CompletionResponse, HubError> {
        let ranked = self.rank(&request).await;
        let first = ranked.first().cloned().ok_or(HubError::NoProvider)?;
        let pipeline = self.middlewares.iter().cloned().fold(
            Pipeline::new(self.clock.clone()).with(Arc::new(FallbackMiddleware::new(ranked))),
            Pipeline::with,
        );
        Ok(pipeline.execute(&self.providers, &first, request).await?)
    }

    /// Opens a stream at the selector's first choice. Weaker than
    /// [`complete`](Self::complete): no middlewares, retries or fallback apply to streams yet.
    pub async fn stream(&self, request: CompletionRequest) -> Result<ChunkStream, HubError> {
        let ranked = self.rank(&request).await;
        let first = ranked.first().ok_or(HubError::NoProvider)?;
        let provider = self.providers.get(first).ok_or(HubError::NoProvider)?;
        Ok(provider.stream_completion(request).await?)
    }
}
