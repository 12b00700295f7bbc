//! [`RetryMiddleware`]: retries retryable provider errors after the delay the limiter's
//! `backoff_delay` gives (the server's retry-after first, else the key's configured
//! backoff curve; `None` once the key's retry budget is spent). The wait goes through the
//! injected [`Clock`], so tests measure it under paused time.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;

use super::rate_limit::RateLimitMiddleware;
use super::{ErrorAction, Middleware, MiddlewareContext, MiddlewareError};
use crate::clock::Clock;
use crate::limiter::RateLimiter;
use crate::provider::{CompletionRequest, ConnectorError};

/// Context slot holding the model of the request, for the limiter key on error.
const MODEL: &str = "retry.model";

/// Retries retryable errors; waits `backoff_delay` on the injected clock first.
#[derive(Debug)]
pub struct RetryMiddleware {
    limiter: Arc<dyn RateLimiter>,
    keys: RateLimitMiddleware,
    clock: Arc<dyn Clock>,
    waits: Mutex<Vec<Duration>>,
}

impl RetryMiddleware {
    /// Retries through `limiter`'s backoff, sleeping on `clock`. Keys are made as
    /// `keys` makes them (the same deployments as the rate-limit middleware).
    pub fn new(
        limiter: Arc<dyn RateLimiter>,
        keys: RateLimitMiddleware,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            limiter,
            keys,
            clock,
            waits: Mutex::new(Vec::new()),
        }
    }

    /// Every wait taken so far, in order (for tests and reports).
    pub fn waits(&self) -> Vec<Duration> {
        self.waits.lock().clone()
    }
}

#[async_trait]
impl Middleware for RetryMiddleware {
    fn name(&self) -> &str {
        "retry"
    }

    async fn on_request(
        &self,
        request: &mut CompletionRequest,
        ctx: &mut MiddlewareContext,
    ) -> Result<(), MiddlewareError> {
        ctx.insert(MODEL, request.model.clone());
        Ok(())
    }

    /// `Retry` after sleeping the limiter's delay for retry `ctx.attempt + 1` when the
    /// error is retryable and the budget allows; else `Propagate`. Does nothing (no wait)
    /// when a middleware closer to the provider already decided (e.g. a fallback).
    async fn on_error(
        &self,
        error: &ConnectorError,
        ctx: &mut MiddlewareContext,
    ) -> Result<ErrorAction, MiddlewareError> {
        if !error.is_retryable() || ctx.decided.is_some() {
            return Ok(ErrorAction::Propagate);
        }
        let model = ctx.get::<String>(MODEL).cloned().unwrap_or_default();
        let key = self.keys.key(&ctx.provider_id, &model);
        let Some(delay) = self
            .limiter
            .backoff_delay(&key, ctx.attempt + 1, &error.error_info())
            .await
        else {
            return Ok(ErrorAction::Propagate);
        };
        self.waits.lock().push(delay);
        self.clock.sleep(delay).await;
        Ok(ErrorAction::Retry)
    }
}
