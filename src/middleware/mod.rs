//! The middleware pipeline (hub specification §Middleware): cross-cutting concerns — rate
//! limiting, retries, caching, logging — wrap every provider call in one place instead of
//! in each connector.
//!
//! Ordering rules, enforced by [`Pipeline::execute`]:
//! - `on_request` runs in registration order; an error there stops the call (the provider
//!   is not called) and is returned.
//! - `on_response` and `on_error` run in reverse registration order, so the first
//!   registered middleware is the outermost layer.
//! - an `on_response` error turns the success into that error (the remaining
//!   `on_response` hooks are skipped);
//! - every `on_error` hook sees the provider's error; the action taken is the first
//!   non-[`ErrorAction::Propagate`] one in reverse order (the layer closest to the provider
//!   decides; outer hooks see it in [`MiddlewareContext::decided`] and skip costly
//!   actions of their own); an `on_error` error overrides the original error and is
//!   returned at once.
//! - [`ErrorAction::Retry`] runs the whole chain again (so a rate limiter re-acquires);
//!   [`ErrorAction::Fallback`] runs it again against another provider.
//!
//! One [`MiddlewareContext`] lives from the first `on_request` to the last hook of a call,
//! across retries and fallbacks.
//!
//! [`Pipeline::stream`] runs a streaming call through the same hooks: `on_request` before
//! the stream is opened, `on_error` (retry, fallback) for errors before the first byte,
//! then [`Middleware::on_first_token`] and [`Middleware::on_stream_end`] while the caller
//! reads it; errors in the middle of a stream go to the caller and are never retried.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::clock::Clock;
use crate::provider::{CompletionRequest, CompletionResponse, ConnectorError, LLMProvider};

pub mod auth;
pub mod cache;
pub mod context;
pub mod fallback;
pub mod governor;
pub mod logging;
pub mod stream;
#[cfg(test)]
mod stream_tests;
#[cfg(test)]
pub(crate) mod tests_support;

pub use auth::{AuthMiddleware, CredentialError, CredentialSource, StaticCredentials};
pub use cache::CacheMiddleware;
pub use context::{Extensions, MiddlewareContext};
pub use fallback::FallbackMiddleware;
pub use governor::{GovernorMiddleware, LimiterWait, RetrySeed};
pub use logging::LoggingMiddleware;
pub use stream::{PipelineStream, StreamEnd};

/// The most provider calls one [`Pipeline::execute`] makes (first try, retries and
/// fallbacks together), so a middleware that always says `Retry` cannot loop forever.
pub const MAX_CALLS: u32 = 32;

/// A middleware hook failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MiddlewareError {
    /// The named middleware refused the call or the response.
    #[error("middleware `{middleware}` failed: {message}")]
    Failed {
        /// The middleware's [`Middleware::name`].
        middleware: String,
        /// Why.
        message: String,
    },
    /// The rate limiter refused the request (it can never fit, timed out, queue full,
    /// backend unavailable) or could not record its usage; the error keeps the key, the
    /// dimension and the wait.
    #[error("rate limiter refused the request: {0}")]
    Limit(#[from] crate::limiter::LimitError),
}

/// Why [`Pipeline::execute`] produced no response.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PipelineError {
    /// The provider's error, propagated after the `on_error` hooks.
    #[error(transparent)]
    Provider(#[from] ConnectorError),
    /// A middleware hook failed; this replaces any provider error.
    #[error(transparent)]
    Middleware(#[from] MiddlewareError),
    /// A fallback named a provider the pipeline's provider set does not hold.
    #[error("unknown fallback provider `{0}`")]
    UnknownProvider(String),
    /// The selector found no available provider (all unhealthy or cooling down) for a
    /// request of this model.
    #[error("no provider is available for model `{0}`")]
    NoAvailableProvider(String),
    /// [`MAX_CALLS`] provider calls were made without a final answer; carries the last error.
    #[error("gave up after {calls} calls: {last}")]
    TooManyCalls {
        /// Calls made.
        calls: u32,
        /// The last provider error.
        last: ConnectorError,
    },
}

impl PipelineError {
    /// The provider error behind this error, if it is one.
    pub fn connector_error(&self) -> Option<&ConnectorError> {
        match self {
            Self::Provider(e) | Self::TooManyCalls { last: e, .. } => Some(e),
            _ => None,
        }
    }
}

/// What to do after a provider error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorAction {
    /// Send the request again (the whole chain runs again).
    Retry,
    /// Send the request to the provider with this id instead.
    Fallback(String),
    /// Give the error to the caller.
    Propagate,
}

/// A request/response interceptor. Hooks get the request or response mutably and the
/// call's [`MiddlewareContext`]. All hooks have no-op defaults.
#[async_trait]
pub trait Middleware: Send + Sync + fmt::Debug {
    /// A short stable name for errors and logs (`"governor"`, `"cache"`).
    fn name(&self) -> &str;

    /// Before the provider is called; an error stops the call.
    async fn on_request(
        &self,
        _request: &mut CompletionRequest,
        _ctx: &mut MiddlewareContext,
    ) -> Result<(), MiddlewareError> {
        Ok(())
    }

    /// After a successful response; an error turns the success into that error.
    async fn on_response(
        &self,
        _response: &mut CompletionResponse,
        _ctx: &mut MiddlewareContext,
    ) -> Result<(), MiddlewareError> {
        Ok(())
    }

    /// After a provider error: what to do next. An error overrides the provider's.
    async fn on_error(
        &self,
        _error: &ConnectorError,
        _ctx: &mut MiddlewareContext,
    ) -> Result<ErrorAction, MiddlewareError> {
        Ok(ErrorAction::Propagate)
    }

    /// A stream's first content chunk (non-empty text) arrived: time to first token.
    /// Runs in reverse order, for streams [`Pipeline::stream`] opened.
    async fn on_first_token(&self, _ctx: &mut MiddlewareContext) {}

    /// A stream [`Pipeline::stream`] opened has ended: completed, broken mid-way, or
    /// dropped by the caller (then from a spawned task). Runs in reverse order; every hook
    /// runs even when one fails (so all accounting happens), and the first error becomes
    /// the stream's last item.
    async fn on_stream_end(
        &self,
        _end: &StreamEnd,
        _ctx: &mut MiddlewareContext,
    ) -> Result<(), MiddlewareError> {
        Ok(())
    }
}

/// The providers a pipeline may send to: the primary and any fallback targets, by id.
pub type ProviderSet = HashMap<String, Arc<dyn LLMProvider>>;

/// An ordered list of middlewares around provider calls.
#[derive(Debug, Clone)]
pub struct Pipeline {
    middlewares: Vec<Arc<dyn Middleware>>,
    clock: Arc<dyn Clock>,
}

impl Pipeline {
    /// An empty pipeline reading call start times from `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            middlewares: Vec::new(),
            clock,
        }
    }

    /// Appends `middleware` (it runs after the ones already added on requests, before
    /// them on responses and errors).
    pub fn with(mut self, middleware: Arc<dyn Middleware>) -> Self {
        self.middlewares.push(middleware);
        self
    }

    /// The middlewares in registration order.
    pub fn middlewares(&self) -> &[Arc<dyn Middleware>] {
        &self.middlewares
    }

    /// Sends `request` to the provider `provider_id` of `providers` through the
    /// middlewares, following the module's ordering and error rules. Each attempt starts
    /// from a fresh copy of the caller's request.
    pub async fn execute(
        &self,
        providers: &ProviderSet,
        provider_id: &str,
        request: CompletionRequest,
    ) -> Result<CompletionResponse, PipelineError> {
        let mut ctx = MiddlewareContext::new(provider_id, self.clock.now());
        self.execute_with(providers, request, &mut ctx).await
    }

    /// [`execute`](Self::execute) with a caller-made context (its `provider_id` is the
    /// first target), so the caller can read the context afterwards.
    pub async fn execute_with(
        &self,
        providers: &ProviderSet,
        request: CompletionRequest,
        ctx: &mut MiddlewareContext,
    ) -> Result<CompletionResponse, PipelineError> {
        let mut calls = 0;
        ctx.model.clone_from(&request.model);
        loop {
            let provider = provider_of(providers, ctx)?;
            let mut req = request.clone();
            let ran = self.run_on_request(&mut req, ctx).await?;
            let outcome = match ctx.short_circuit.take() {
                Some(cached) => Ok(cached),
                None => {
                    calls += 1;
                    provider.send_completion(req).await
                }
            };
            match outcome {
                Ok(mut response) => {
                    self.run_on_response(ran, &mut response, ctx).await?;
                    return Ok(response);
                }
                Err(error) => self.run_on_error(error, ctx, calls).await?,
            }
        }
    }

    /// Runs `on_request` in registration order until one fails or one supplies a
    /// short-circuit response; returns how many ran.
    async fn run_on_request(
        &self,
        req: &mut CompletionRequest,
        ctx: &mut MiddlewareContext,
    ) -> Result<usize, PipelineError> {
        let mut ran = 0;
        for m in &self.middlewares {
            m.on_request(req, ctx).await?;
            ran += 1;
            if ctx.short_circuit.is_some() {
                break;
            }
        }
        Ok(ran)
    }

    /// Runs `on_response` of the first `ran` middlewares in reverse order.
    async fn run_on_response(
        &self,
        ran: usize,
        response: &mut CompletionResponse,
        ctx: &mut MiddlewareContext,
    ) -> Result<(), PipelineError> {
        for m in self.middlewares[..ran].iter().rev() {
            m.on_response(response, ctx).await?;
        }
        Ok(())
    }

    /// Runs every `on_error` in reverse order and applies the decided action to `ctx`:
    /// `Ok` = try again (retry or fallback, already set up), `Err` = give this to the caller.
    async fn run_on_error(
        &self,
        error: ConnectorError,
        ctx: &mut MiddlewareContext,
        calls: u32,
    ) -> Result<(), PipelineError> {
        ctx.decided = None;
        for m in self.middlewares.iter().rev() {
            let a = m.on_error(&error, ctx).await?;
            if ctx.decided.is_none() && a != ErrorAction::Propagate {
                ctx.decided = Some(a);
            }
        }
        let action = ctx.decided.take().unwrap_or(ErrorAction::Propagate);
        if action != ErrorAction::Propagate && calls >= MAX_CALLS {
            return Err(PipelineError::TooManyCalls { calls, last: error });
        }
        match action {
            ErrorAction::Propagate => return Err(error.into()),
            ErrorAction::Retry => ctx.attempt += 1,
            ErrorAction::Fallback(id) => {
                ctx.provider_id = id.clone();
                ctx.attempt = 0;
                ctx.tried.push(id);
            }
        }
        Ok(())
    }
}

/// The provider the context's current attempt goes to, also set in the context.
fn provider_of(
    providers: &ProviderSet,
    ctx: &mut MiddlewareContext,
) -> Result<Arc<dyn LLMProvider>, PipelineError> {
    let provider = providers
        .get(&ctx.provider_id)
        .cloned()
        .ok_or_else(|| PipelineError::UnknownProvider(ctx.provider_id.clone()))?;
    ctx.provider = Some(provider.clone());
    Ok(provider)
}
