//! `hub serve`: an OpenAI- and Azure-compatible gateway that keeps the tuned limits in
//! front of any client. A client points its SDK's base URL at the gateway and presents
//! a gateway key; the gateway maps the key to a tenant, reserves the request's estimate on
//! the upstream key's limits and the tenant's own limits (all or nothing), waits in a
//! fair queue while the quota is contended, forwards the body as it came with the
//! upstream's key, and reconciles with the usage the upstream reports.
//!
//! It is a Hub with an HTTP front: every decision about a request — what is reserved,
//! what a 429 or a 5xx is charged, whether and when to retry — is the
//! [`RequestLifecycle`](crate::lifecycle::RequestLifecycle)'s, driven here by
//! [`forward`] as the pipeline's governed step drives it.
//!
//! # Parts
//! - [`config`]: the file (`[gateway]`, tenants, `[[upstream]]`, pasted `[[limiter]]` blocks).
//! - [`routes`]: [`app`] — the axum router, keys, body checks, answers in the API's shape.
//! - [`inspect`]: what is read of a body (model, stream, size) — never re-encoded.
//! - [`admission`]: the two-key reservation and the weighted fair queue.
//! - [`forward`]: the lifecycle's driver for one request.
//! - [`upstream`]: the upstream request and [`Transport`](upstream::Transport)s.
//! - [`sse`]: streams passed through event by event, the usage chunk read (and stripped).
//! - [`errors`]: the gateway's own answers in OpenAI's or Azure's shape.
//! - [`metrics`]: Prometheus text per tenant and upstream.
//! - [`serve`]: binding, and the graceful shutdown (SIGTERM / Ctrl-C, grace period).
//!
//! # Client headers
//! - `Authorization: Bearer <gateway key>` or `api-key: <gateway key>`.
//! - `x-hub-max-wait-ms: <ms>` lowers the tenant's `max_wait` for this request (it never
//!   raises it): past it, a contended request gets a 429 with the exact `retry-after-ms`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::clock::{Clock, TokioClock};
use crate::hub::HubError;
use crate::limiter::{Backend, RateLimiter};

pub mod admission;
pub mod config;
pub mod errors;
pub mod forward;
pub mod inspect;
pub mod metrics;
pub mod routes;
pub mod serve;
pub mod sse;
pub mod upstream;

pub use config::{GatewayConfig, Mode};
pub use routes::app;

use admission::Admission;
use metrics::GatewayMetrics;
use upstream::{HttpTransport, Transport};

/// The request header that lowers a request's max wait, in milliseconds.
pub const MAX_WAIT_HEADER: &str = "x-hub-max-wait-ms";

/// Everything a gateway's handlers share.
#[derive(Debug)]
pub struct GatewayState {
    /// The checked configuration.
    pub config: GatewayConfig,
    /// The limiter every reservation is made on.
    pub limiter: Arc<dyn RateLimiter>,
    /// The admission queue.
    pub admission: Arc<Admission>,
    /// Time for deadlines and retry waits.
    pub clock: Arc<dyn Clock>,
    /// How requests reach the upstreams.
    pub transport: Arc<dyn Transport>,
    /// The metrics `/metrics` serves.
    pub metrics: GatewayMetrics,
    /// Gateway key → tenant index.
    keys: HashMap<String, usize>,
    /// False once shutdown began (`/readyz` then answers 503).
    accepting: AtomicBool,
}

impl GatewayState {
    /// A gateway over `limiter`, reading time from `clock`, reaching upstreams through
    /// `transport`.
    pub fn new(
        config: GatewayConfig,
        limiter: Arc<dyn RateLimiter>,
        clock: Arc<dyn Clock>,
        transport: Arc<dyn Transport>,
    ) -> Arc<Self> {
        let keys = config
            .tenants
            .iter()
            .enumerate()
            .map(|(i, t)| (t.key.expose().to_owned(), i))
            .collect();
        let admission = Admission::new(limiter.clone(), clock.clone(), config.front.quantum);
        Arc::new(Self {
            config,
            limiter,
            admission,
            clock,
            transport,
            metrics: GatewayMetrics::new(),
            keys,
            accepting: AtomicBool::new(true),
        })
    }

    /// A gateway as `hub serve` runs it: the config's limiter (memory or Redis, connected
    /// on first use), tokio's clock, real HTTP.
    pub fn from_config(config: GatewayConfig) -> Result<Arc<Self>, HubError> {
        let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
        let invalid = |field: &str, message: String| HubError::Invalid {
            origin: "gateway".into(),
            line: 1,
            column: 1,
            field: field.into(),
            message,
        };
        let limiter = crate::limiter::build_lazy(config.limits.clone(), clock.clone())
            .map_err(|e| invalid("limits", e.to_string()))?;
        let transport = HttpTransport::new().map_err(|e| invalid("gateway", e.message.clone()))?;
        Ok(Self::new(config, limiter, clock, Arc::new(transport)))
    }

    /// The tenant a gateway key belongs to.
    pub fn tenant_of(&self, key: &str) -> Option<usize> {
        self.keys.get(key).copied()
    }

    /// Whether the gateway takes new requests (false once shutdown began).
    pub fn accepting(&self) -> bool {
        self.accepting.load(Ordering::Relaxed)
    }

    /// Stops taking new requests (`/readyz` answers 503 from now on).
    pub fn stop_accepting(&self) {
        self.accepting.store(false, Ordering::Relaxed);
    }

    /// Whether the limiter's backend can decide now: always in memory; with Redis, a
    /// probe of an unlimited key answers (under `fail_open` and `local_fallback` the
    /// policy decides, so the gateway stays ready).
    pub async fn ready(&self) -> bool {
        if !self.accepting() {
            return false;
        }
        if self.config.limits.backend == Backend::Memory {
            return true;
        }
        let key = crate::limiter::LimitKey::new("hub-gateway-readyz", "*");
        match self
            .limiter
            .try_acquire(&key, crate::limiter::Cost::ZERO)
            .await
        {
            Ok(p) => {
                drop(p);
                true
            }
            Err(crate::limiter::Denial::Unavailable { .. }) => false,
            Err(_) => true,
        }
    }
}
