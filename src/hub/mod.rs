//! The [`Hub`]: one object that sends a request through the configured middlewares — auth,
//! logging, metrics, rate limiting, retries, caching, fallback — to the provider the
//! selector picks, built from one TOML file.
//!
//! Per call the selector ranks the available providers (skipping unhealthy ones and those
//! cooling down after a 429 until its retry-after passed); the first is tried, the rest are
//! the `fallback` middleware's order. Metrics are always collected
//! ([`Hub::metrics`]). The schema is [`HubConfig`]; loading errors name the line and field.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::cache::{CacheStats, CacheStrategy, MemoryCache};
use crate::clock::{nanos, Clock, Nanos, TokioClock};
use crate::limiter::RateLimiter;
use crate::metrics::{HdrMetrics, MetricsCollector, SeriesSnapshot};
use crate::middleware::{
    CredentialSource, ErrorAction, FallbackMiddleware, GovernorMiddleware, Middleware,
    MiddlewareContext, MiddlewareError, Pipeline, PipelineError, PipelineStream, ProviderSet,
};
use crate::plugin::PluginRegistry;
use crate::provider::{CompletionRequest, CompletionResponse, ConnectorError};
use crate::selector::{Candidate, ProviderSelector};

mod build;
pub mod config;
mod limits;

pub use config::{
    AuthSettings, CacheSettings, ConfigValue, HubConfig, HubError, MiddlewareKind, ProviderEntry,
    SelectorKind,
};

/// What a hub is built with besides its config file: the clock, the plugins that build
/// providers, optionally a credential source for the `auth` middleware (replacing the
/// file's `[auth] keys`), and optionally a metrics sink of the caller's.
#[derive(Debug, Clone)]
pub struct HubOptions {
    /// Time for latencies, TTLs, cooldowns and retry waits.
    pub clock: Arc<dyn Clock>,
    /// Provider factories by `kind`.
    pub plugins: PluginRegistry,
    /// Credentials for `auth`; `None` uses the file's `[auth] keys`.
    pub credentials: Option<Arc<dyn CredentialSource>>,
    /// A metrics sink that receives every report of the hub's metrics middleware (see
    /// [`MetricsCollector`] for what and when), in addition to the built-in
    /// [`HdrMetrics`] behind [`Hub::metrics_snapshot`] and [`Hub::prometheus_text`],
    /// which keep working; `None` records into the built-in collector only.
    pub metrics: Option<Arc<dyn MetricsCollector>>,
}

impl Default for HubOptions {
    /// A tokio clock, the built-in plugins (`openai`, `azure`), credentials from the file,
    /// no extra metrics sink.
    fn default() -> Self {
        Self {
            clock: Arc::new(TokioClock::new()),
            plugins: PluginRegistry::with_builtins(),
            credentials: None,
            metrics: None,
        }
    }
}

impl HubOptions {
    /// Builds a hub from config `text`; `origin` names it in errors.
    pub fn load_str(self, text: &str, origin: &str) -> Result<Hub, HubError> {
        config::load(text, origin, |c| build::assemble(c, self))
    }

    /// Builds a hub from the config file at `path`.
    pub fn load_file(self, path: impl AsRef<Path>) -> Result<Hub, HubError> {
        let path = path.as_ref();
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| HubError::Read {
            origin: origin.clone(),
            source,
        })?;
        self.load_str(&text, &origin)
    }
}

/// A provider as the selector sees it.
#[derive(Debug, Clone)]
struct Entry {
    id: String,
    priority: u32,
    weight: u32,
    healthy: bool,
    cooling_until: Option<Nanos>,
}

/// One place in the middleware order: a fixed middleware, or the fallback middleware made
/// per call from the selector's ranking.
#[derive(Debug, Clone)]
enum Slot {
    Fixed(Arc<dyn Middleware>),
    Fallback,
}

/// The hub facade.
///
/// ```no_run
/// use connector_hub::hub::Hub;
/// use connector_hub::provider::{CompletionRequest, Message};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let hub = Hub::from_toml_str(
///     r#"
///     middleware = ["logging", "rate_limit", "retry", "fallback"]
///
///     [[provider]]
///     id = "primary"
///     kind = "openai"
///     config = { api_key = "sk-…", base_url = "http://127.0.0.1:8080/v1" }
///
///     [[provider]]
///     id = "backup"
///     kind = "azure"
///     priority = 1
///     config = { api_key = "…", endpoint = "http://127.0.0.1:8080", deployment = "gpt-4o-mini" }
///
///     [[limits.key]]
///     provider = "primary"
///     limit = { limits = { rpm = 500, tpm = 30000 } }
///     "#,
/// )?;
/// let request = CompletionRequest::new("gpt-4o-mini", vec![Message::user("Hello")]);
/// let response = hub.complete(request).await?;
/// println!("{}", response.text());
/// for series in hub.metrics_snapshot() {
///     println!("{} {}: {} calls", series.provider, series.model, series.requests);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Hub {
    providers: ProviderSet,
    entries: Arc<Mutex<Vec<Entry>>>,
    selector: Arc<dyn ProviderSelector>,
    limiter: Arc<dyn RateLimiter>,
    /// The governed step (also the source of limiter keys, even when neither `rate_limit`
    /// nor `retry` is listed).
    governor: Arc<GovernorMiddleware>,
    slots: Vec<Slot>,
    metrics: Arc<HdrMetrics>,
    cache: Option<Arc<MemoryCache>>,
    clock: Arc<dyn Clock>,
}

impl Hub {
    /// Builds a hub from config `text` with [`HubOptions::default`]. Never waits, and
    /// needs no runtime: with `limits.backend = "redis"` the limiter connects to Redis on
    /// the first request.
    pub fn from_toml_str(text: &str) -> Result<Self, HubError> {
        HubOptions::default().load_str(text, "<string>")
    }

    /// Builds a hub from the config file at `path` with [`HubOptions::default`].
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, HubError> {
        HubOptions::default().load_file(path)
    }

    /// Sends `request` as one completion to the selected provider through the middlewares.
    pub async fn complete(
        &self,
        request: CompletionRequest,
    ) -> Result<CompletionResponse, PipelineError> {
        let (first, pipe) = self.plan(&request).await?;
        pipe.execute(&self.providers, &first, request).await
    }

    /// Opens a streaming completion of `request` on the selected provider through the
    /// middlewares (errors before the first byte may retry or fall back; see
    /// [`Pipeline::stream`]). Never cached.
    pub async fn stream(
        &self,
        request: CompletionRequest,
    ) -> Result<PipelineStream, PipelineError> {
        let (first, pipe) = self.plan(&request).await?;
        pipe.stream(&self.providers, &first, request).await
    }

    /// The provider ids, in config order.
    pub fn provider_ids(&self) -> Vec<String> {
        self.entries.lock().iter().map(|e| e.id.clone()).collect()
    }

    /// Marks `provider` healthy or not (an unhealthy one is never selected); false when
    /// no provider has that id.
    pub fn set_healthy(&self, provider: &str, healthy: bool) -> bool {
        let mut entries = self.entries.lock();
        match entries.iter_mut().find(|e| e.id == provider) {
            Some(e) => {
                e.healthy = healthy;
                true
            }
            None => false,
        }
    }

    /// The built-in metrics collector every call records into (also when
    /// [`HubOptions::metrics`] adds a sink).
    pub fn metrics(&self) -> &Arc<HdrMetrics> {
        &self.metrics
    }

    /// Every series of the built-in collector now (per provider and model).
    pub fn metrics_snapshot(&self) -> Vec<SeriesSnapshot> {
        self.metrics.snapshot()
    }

    /// The built-in collector's metrics in Prometheus text format
    /// ([`HdrMetrics::prometheus_text`]).
    pub fn prometheus_text(&self) -> String {
        self.metrics.prometheus_text()
    }

    /// The shared limiter (for `usage_stats`, or to share it with other code).
    pub fn limiter(&self) -> &Arc<dyn RateLimiter> {
        &self.limiter
    }

    /// The cache's counters, when `cache` is a configured middleware.
    pub async fn cache_stats(&self) -> Option<CacheStats> {
        match &self.cache {
            Some(c) => Some(c.stats().await),
            None => None,
        }
    }

    /// The selector's ranking for `request` and the pipeline for this call.
    async fn plan(&self, request: &CompletionRequest) -> Result<(String, Pipeline), PipelineError> {
        let candidates: Vec<Candidate> = self
            .entries
            .lock()
            .iter()
            .map(|e| Candidate {
                provider_id: e.id.clone(),
                key: self.governor.key(&e.id, &request.model),
                priority: e.priority,
                weight: e.weight,
                healthy: e.healthy,
                cooling_until: e.cooling_until,
            })
            .collect();
        let mut ranking = self.selector.rank(request, &candidates).await;
        if ranking.is_empty() {
            // Every healthy provider is cooling down: better to try (the limiter and the
            // governed step's retries wait) than to fail at once.
            let warm: Vec<Candidate> = candidates
                .into_iter()
                .map(|c| Candidate {
                    cooling_until: None,
                    ..c
                })
                .collect();
            ranking = self.selector.rank(request, &warm).await;
        }
        let Some(first) = ranking.first().cloned() else {
            return Err(PipelineError::NoAvailableProvider(request.model.clone()));
        };
        let mut pipe = Pipeline::new(self.clock.clone());
        for slot in &self.slots {
            pipe = pipe.with(match slot {
                Slot::Fixed(m) => m.clone(),
                Slot::Fallback => Arc::new(FallbackMiddleware::new(ranking.clone())),
            });
        }
        Ok((first, pipe))
    }
}

/// Puts a provider that answered 429 with a retry-after out of selection until then.
#[derive(Debug)]
struct Cooldown {
    entries: Arc<Mutex<Vec<Entry>>>,
    clock: Arc<dyn Clock>,
}

#[async_trait]
impl Middleware for Cooldown {
    fn name(&self) -> &str {
        "cooldown"
    }

    async fn on_error(
        &self,
        error: &ConnectorError,
        ctx: &mut MiddlewareContext,
    ) -> Result<ErrorAction, MiddlewareError> {
        if let ConnectorError::RateLimit {
            retry_after: Some(wait),
            ..
        } = error
        {
            let until = self
                .clock
                .now()
                .saturating_add(nanos((*wait).min(MAX_COOLDOWN)));
            if let Some(e) = self
                .entries
                .lock()
                .iter_mut()
                .find(|e| e.id == ctx.provider_id)
            {
                e.cooling_until = Some(e.cooling_until.map_or(until, |t| t.max(until)));
            }
        }
        Ok(ErrorAction::Propagate)
    }
}

/// The longest a 429 takes a provider out of selection (a server asking for more is
/// capped, so one odd header cannot disable a provider for long).
const MAX_COOLDOWN: Duration = Duration::from_secs(120);
