//! [`MetricsMiddleware`]: measures each provider call in the pipeline and reports it to a
//! [`MetricsCollector`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::MetricsCollector;
use crate::clock::{Clock, Nanos};
use crate::middleware::{ErrorAction, Middleware, MiddlewareContext, MiddlewareError, StreamEnd};
use crate::provider::{CompletionRequest, CompletionResponse, ConnectorError};

/// Context value: the clock time the current attempt's `on_request` ran.
struct Started(Nanos);

/// Feeds a [`MetricsCollector`] from the pipeline, following the trait's contract: one
/// outcome per provider call with its latency from this middleware's `on_request` to its
/// `on_response`/`on_error` (or the stream's end) on `clock`, a stream's time to first
/// token, and the limiter wait the rate-limit middleware reports. Register it first
/// (outermost) so its latency includes the limiter wait (the rate limiter acquires in its
/// `on_request`), or after the rate limiter to exclude it.
#[derive(Debug, Clone)]
pub struct MetricsMiddleware {
    collector: Arc<dyn MetricsCollector>,
    clock: Arc<dyn Clock>,
}

impl MetricsMiddleware {
    /// Reports to `collector`, timing with `clock`.
    pub fn new(collector: Arc<dyn MetricsCollector>, clock: Arc<dyn Clock>) -> Self {
        Self { collector, clock }
    }

    fn elapsed(&self, ctx: &MiddlewareContext) -> Duration {
        let start = ctx
            .extensions
            .get::<Started>()
            .map_or(ctx.started_at, |s| s.0);
        Duration::from_nanos(self.clock.now().saturating_sub(start))
    }

    fn wait(&self, ctx: &MiddlewareContext, model: &str) {
        if let Some(w) = ctx.extensions.get::<crate::middleware::LimiterWait>() {
            self.collector
                .record_limiter_wait(&ctx.provider_id, model, w.0);
        }
    }
}

#[async_trait]
impl Middleware for MetricsMiddleware {
    fn name(&self) -> &str {
        "metrics"
    }

    async fn on_request(
        &self,
        request: &mut CompletionRequest,
        ctx: &mut MiddlewareContext,
    ) -> Result<(), MiddlewareError> {
        let _ = request;
        ctx.extensions.insert(Started(self.clock.now()));
        Ok(())
    }

    async fn on_response(
        &self,
        response: &mut CompletionResponse,
        ctx: &mut MiddlewareContext,
    ) -> Result<(), MiddlewareError> {
        if ctx
            .metadata
            .get(crate::middleware::cache::CACHE_STATUS)
            .map(String::as_str)
            == Some("hit")
        {
            return Ok(()); // no provider call was made
        }
        let model = ctx.model.clone();
        self.collector
            .record_success(&ctx.provider_id, &model, self.elapsed(ctx), response.usage);
        self.wait(ctx, &model);
        Ok(())
    }

    async fn on_error(
        &self,
        error: &ConnectorError,
        ctx: &mut MiddlewareContext,
    ) -> Result<ErrorAction, MiddlewareError> {
        let model = ctx.model.clone();
        self.collector
            .record_error(&ctx.provider_id, &model, self.elapsed(ctx), error);
        self.wait(ctx, &model);
        Ok(ErrorAction::Propagate)
    }

    /// Time to first token: from this middleware's `on_request` to the first content chunk.
    async fn on_first_token(&self, ctx: &mut MiddlewareContext) {
        let model = ctx.model.clone();
        self.collector
            .record_ttft(&ctx.provider_id, &model, self.elapsed(ctx));
    }

    /// A stream counts as one call: a success with its usage, an error (mid-stream) by
    /// class, or `cancelled`; latency runs to the stream's end.
    async fn on_stream_end(
        &self,
        end: &StreamEnd,
        ctx: &mut MiddlewareContext,
    ) -> Result<(), MiddlewareError> {
        let model = ctx.model.clone();
        let (id, latency) = (&ctx.provider_id, self.elapsed(ctx));
        match (&end.error, end.cancelled) {
            (Some(e), _) => self.collector.record_error(id, &model, latency, e),
            (None, true) => self
                .collector
                .record_cancelled(id, &model, latency, end.usage),
            (None, false) => self
                .collector
                .record_success(id, &model, latency, end.usage),
        }
        self.wait(ctx, &model);
        Ok(())
    }
}
