//! One request's life in a live run, through the product's own client: the middleware
//! [`Pipeline`] with the governed step ([`GovernorMiddleware`](crate::middleware::GovernorMiddleware), the request lifecycle) in
//! front of the connector — exactly what a [`Hub`](crate::hub::Hub) runs — plus an
//! innermost [`AttemptObserver`] that times each attempt for the [`RequestRecord`] the
//! report aggregates.
//!
//! With a limiter the lifecycle acquires, records and asks the limiter for backoffs (server
//! retry-after first, then the key's curve; a 429 pauses the key once); without one (the
//! `none` baseline) only the scenario's retry policy remains.

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use parking_lot::Mutex;

use crate::clock::{Clock, Nanos};
use crate::middleware::{
    ErrorAction, LimiterWait, Middleware, MiddlewareContext, MiddlewareError, Pipeline,
    PipelineError, ProviderSet, RetrySeed, StreamEnd,
};
use crate::provider::{CompletionRequest, CompletionResponse, ConnectorError, Usage};

use super::record::{Attempt, Outcome, RequestRecord};

/// Everything a request task needs, shared by all requests of one limiter run.
#[derive(Debug)]
pub struct RequestContext {
    /// The pipeline: the governed step (limiter or retries only) and the observer.
    pub pipeline: Pipeline,
    /// The connector, by id.
    pub providers: ProviderSet,
    /// The id requests are sent to.
    pub provider_id: String,
    /// The run's clock; record times are `clock.now() - start`.
    pub clock: Arc<dyn Clock>,
    /// The run start on `clock`.
    pub start: Nanos,
    /// The scenario's seed: each request's retry jitter is drawn from it and the request's
    /// id ([`RetrySeed::for_request`]), as in the simulator.
    pub seed: u64,
}

/// What to send: the request and what the provider will charge it at admission.
#[derive(Debug, Clone)]
pub struct PlannedRequest {
    /// Sequence number in the run.
    pub id: u64,
    /// Scenario phase index.
    pub phase: usize,
    /// Intended start, ns since the run start.
    pub intended_start: Nanos,
    /// The request (its `stream` flag picks streaming).
    pub request: CompletionRequest,
    /// The provider's admission estimate of the request, in tokens.
    pub estimated_tokens: u64,
    /// What the server charges each admitted attempt, in tokens
    /// ([`RequestRecord::server_tokens`]).
    pub server_tokens: u64,
}

/// What the observer saw of one request's attempts (times in ns since the run start).
#[derive(Debug, Default)]
pub struct Observed {
    attempts: Vec<Attempt>,
    sent: Option<Nanos>,
    first_byte: Option<Nanos>,
    limiter_wait: Nanos,
    usage: Option<Usage>,
}

/// The per-call handle through which the observer writes what it saw of one request; the
/// runner keeps a clone, so a request cut at the end of the drain keeps its attempts.
#[derive(Debug, Clone, Default)]
pub struct Observation(Arc<Mutex<Observed>>);

impl Observation {
    /// `planned`'s record as far as it got: the attempts seen so far, dropped at `end`
    /// (ns since the run start) — what a request cut before its end reports, as the
    /// simulator reports requests still in flight when its drain ends.
    pub fn cut(&self, planned: &PlannedRequest, end: Nanos) -> RequestRecord {
        let seen = std::mem::take(&mut *self.0.lock());
        RequestRecord {
            request_id: planned.id,
            phase: planned.phase,
            intended_start: planned.intended_start,
            attempts: seen.attempts,
            first_byte: seen.first_byte,
            end,
            outcome: Outcome::Dropped,
            estimated_tokens: planned.estimated_tokens,
            server_tokens: planned.server_tokens,
            prompt_tokens: None,
            completion_tokens: None,
            limiter_wait: seen.limiter_wait,
            streamed: planned.request.stream,
        }
    }
}

/// The innermost middleware of a live run: times each attempt from the moment it is sent
/// (after the limiter admitted it) to its response, failure or stream end.
#[derive(Debug)]
pub struct AttemptObserver {
    clock: Arc<dyn Clock>,
    start: Nanos,
}

impl AttemptObserver {
    /// Times on `clock`, relative to `start` (ns on that clock).
    pub fn new(clock: Arc<dyn Clock>, start: Nanos) -> Self {
        Self { clock, start }
    }

    fn now(&self) -> Nanos {
        self.clock.now().saturating_sub(self.start)
    }

    fn ended(&self, ctx: &MiddlewareContext, status: Option<u16>, usage: Option<Usage>) {
        if let Some(Observation(o)) = ctx.extensions.get::<Observation>() {
            let mut o = o.lock();
            let end = self.now();
            let sent = o.sent.take().unwrap_or(end);
            o.attempts.push(Attempt { sent, end, status });
            if usage.is_some() {
                o.usage = usage;
            }
        }
    }
}

#[async_trait]
impl Middleware for AttemptObserver {
    fn name(&self) -> &str {
        "observer"
    }

    async fn on_request(
        &self,
        _request: &mut CompletionRequest,
        ctx: &mut MiddlewareContext,
    ) -> Result<(), MiddlewareError> {
        let wait = ctx
            .extensions
            .get::<LimiterWait>()
            .map_or(0, |w| u64::try_from(w.0.as_nanos()).unwrap_or(u64::MAX));
        if let Some(Observation(o)) = ctx.extensions.get::<Observation>() {
            let mut o = o.lock();
            o.sent = Some(self.now());
            o.first_byte = None;
            o.limiter_wait += wait;
        }
        Ok(())
    }

    async fn on_response(
        &self,
        response: &mut CompletionResponse,
        ctx: &mut MiddlewareContext,
    ) -> Result<(), MiddlewareError> {
        self.ended(
            ctx,
            response.meta.status.or(Some(200)),
            Some(response.usage),
        );
        if let Some(Observation(o)) = ctx.extensions.get::<Observation>() {
            let mut o = o.lock();
            o.first_byte = o.attempts.last().map(|a| a.end);
        }
        Ok(())
    }

    async fn on_error(
        &self,
        error: &ConnectorError,
        ctx: &mut MiddlewareContext,
    ) -> Result<ErrorAction, MiddlewareError> {
        self.ended(ctx, error.status(), None);
        Ok(ErrorAction::Propagate)
    }

    async fn on_first_token(&self, ctx: &mut MiddlewareContext) {
        if let Some(Observation(o)) = ctx.extensions.get::<Observation>() {
            o.lock().first_byte = Some(self.now());
        }
    }

    async fn on_stream_end(
        &self,
        end: &StreamEnd,
        ctx: &mut MiddlewareContext,
    ) -> Result<(), MiddlewareError> {
        let status = match &end.error {
            Some(e) => e.status().or(end.meta.status),
            None => end.meta.status.or(Some(200)),
        };
        self.ended(ctx, status, end.usage_reported.then_some(end.usage));
        Ok(())
    }
}

impl RequestContext {
    fn now(&self) -> Nanos {
        self.clock.now().saturating_sub(self.start)
    }

    /// Runs `planned` to its end (success, final failure, or limiter refusal).
    pub async fn execute(&self, planned: PlannedRequest) -> RequestRecord {
        self.execute_observed(planned, Observation::default()).await
    }

    /// [`execute`](Self::execute), writing what is seen into `observation` as it happens.
    pub async fn execute_observed(
        &self,
        planned: PlannedRequest,
        observation: Observation,
    ) -> RequestRecord {
        let called = self.now();
        let mut ctx = MiddlewareContext::new(self.provider_id.clone(), self.clock.now());
        ctx.extensions.insert(observation.clone());
        ctx.extensions
            .insert(RetrySeed::for_request(self.seed, planned.id));
        let streamed = planned.request.stream;
        let result = if streamed {
            self.stream(planned.request, ctx).await
        } else {
            self.pipeline
                .execute_with(&self.providers, planned.request, &mut ctx)
                .await
                .map(drop)
        };
        let end = self.now();
        let seen = std::mem::take(&mut *observation.0.lock());
        let outcome = match &result {
            Ok(()) => Outcome::Ok,
            Err(PipelineError::Middleware(MiddlewareError::Limit(_)))
                if seen.attempts.is_empty() =>
            {
                Outcome::Dropped
            }
            Err(_) if seen.attempts.last().is_some_and(Attempt::throttled) => Outcome::Throttled,
            Err(_) => Outcome::Error,
        };
        if let Err(e) = &result {
            tracing::debug!(request = planned.id, error = %e, "request failed");
        }
        let usage = seen.usage.filter(|_| outcome == Outcome::Ok);
        // A request refused before any attempt spent its whole life in the limiter.
        let limiter_wait = if outcome == Outcome::Dropped {
            end.saturating_sub(called)
        } else {
            seen.limiter_wait
        };
        RequestRecord {
            request_id: planned.id,
            phase: planned.phase,
            intended_start: planned.intended_start,
            end: seen.attempts.last().map_or(end, |a| a.end),
            first_byte: seen.first_byte,
            attempts: seen.attempts,
            outcome,
            estimated_tokens: planned.estimated_tokens,
            server_tokens: planned.server_tokens,
            prompt_tokens: usage.map(|u| u.input_tokens),
            completion_tokens: usage.map(|u| u.output_tokens),
            limiter_wait,
            streamed,
        }
    }

    /// Opens the stream through the pipeline and reads it to its end (the end hooks run
    /// before the last item).
    async fn stream(
        &self,
        request: CompletionRequest,
        ctx: MiddlewareContext,
    ) -> Result<(), PipelineError> {
        let mut stream = self
            .pipeline
            .stream_with(&self.providers, request, ctx)
            .await?;
        while let Some(item) = stream.next().await {
            item?;
        }
        Ok(())
    }
}
