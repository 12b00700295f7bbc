//! [`RateLimitMiddleware`]: the seed's pre-generate / post-generate hooks as middleware.
//! Before each provider call it acquires a permit for an estimate of the request's cost;
//! after the call — success or error — it records the actual usage and the response's
//! [`ResponseMeta`], so the limiter learns the server's view (remaining, retry-after).
//! For streams it acquires before opening and records when the stream ends, with the
//! usage chunk's counts (or the counted estimate when the provider sent none).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use tiktoken_rs::CoreBPE;

use super::{ErrorAction, Middleware, MiddlewareContext, MiddlewareError, StreamEnd};
use crate::limiter::{Cost, LimitKey, Permit, RateLimiter, ResponseMeta};
use crate::provider::{CompletionRequest, CompletionResponse, ConnectorError};

/// Context slot holding the current attempt's [`Permit`].
const PERMIT: &str = "rate_limit.permit";

/// Context slot holding how long the current attempt waited in `acquire`, a [`std::time::Duration`]
/// (read by the metrics middleware).
pub const WAITED: &str = "rate_limit.waited";

/// Tokens the OpenAI chat format adds per message (role and separators) and per reply
/// primer; the documented cookbook figures for current models.
const TOKENS_PER_MESSAGE: u64 = 3;
const TOKENS_PER_REPLY: u64 = 3;

/// Output tokens assumed per choice when a request sets no `max_tokens` (the providers'
/// own admission default differs by provider; this is the estimate, reconciled later).
pub const DEFAULT_MAX_TOKENS: u64 = 1024;

/// Estimates a request's token cost with tiktoken: prompt tokens (encoding chosen by model
/// name: `o200k_base` for the gpt-4o / o-series / gpt-4.1 families, else `cl100k_base`;
/// each encoding is loaded once per process) plus `max_tokens × n`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenEstimator;

impl TokenEstimator {
    fn encoding(model: &str) -> &'static CoreBPE {
        let o200k = ["gpt-4o", "gpt-4.1", "gpt-5", "o1", "o3", "o4"]
            .iter()
            .any(|p| model.starts_with(p));
        if o200k {
            tiktoken_rs::o200k_base_singleton()
        } else {
            tiktoken_rs::cl100k_base_singleton()
        }
    }

    /// Prompt tokens of `request` (messages' content plus per-message overhead), in tokens.
    pub fn prompt_tokens(&self, request: &CompletionRequest) -> u64 {
        let bpe = Self::encoding(&request.model);
        let content: u64 = request
            .messages
            .iter()
            .map(|m| bpe.encode_with_special_tokens(&m.content).len() as u64 + TOKENS_PER_MESSAGE)
            .sum();
        content + TOKENS_PER_REPLY
    }

    /// Tokens of `text` in `model`'s encoding (no message overhead), in tokens; counts
    /// streamed output when the provider sends no usage.
    pub fn text_tokens(&self, model: &str, text: &str) -> u64 {
        Self::encoding(model).encode_with_special_tokens(text).len() as u64
    }

    /// The estimate to acquire for `request`: one request and prompt tokens +
    /// `max_tokens` (default [`DEFAULT_MAX_TOKENS`]) × `n` (default 1) tokens.
    pub fn estimate(&self, request: &CompletionRequest) -> Cost {
        let max = request.max_tokens.map_or(DEFAULT_MAX_TOKENS, u64::from);
        let n = u64::from(request.n.unwrap_or(1).max(1));
        Cost::request(self.prompt_tokens(request) + max * n)
    }
}

/// Acquires before, records after. The key is `provider id + request model`, plus the
/// deployment registered for the provider id with [`with_deployment`](Self::with_deployment).
#[derive(Debug, Clone)]
pub struct RateLimitMiddleware {
    limiter: Arc<dyn RateLimiter>,
    estimator: TokenEstimator,
    deployments: HashMap<String, String>,
}

impl RateLimitMiddleware {
    /// Middleware over `limiter` (shared: every request of every task uses the same one).
    pub fn new(limiter: Arc<dyn RateLimiter>) -> Self {
        Self {
            limiter,
            estimator: TokenEstimator,
            deployments: HashMap::new(),
        }
    }

    /// Keys requests to `provider_id` with `deployment` too (Azure limits are per deployment).
    pub fn with_deployment(
        mut self,
        provider_id: impl Into<String>,
        deployment: impl Into<String>,
    ) -> Self {
        self.deployments
            .insert(provider_id.into(), deployment.into());
        self
    }

    /// The limiter key for a request of `model` to `provider_id`.
    pub fn key(&self, provider_id: &str, model: &str) -> LimitKey {
        let key = LimitKey::new(provider_id, model);
        match self.deployments.get(provider_id) {
            Some(d) => key.with_deployment(d.as_str()),
            None => key,
        }
    }

    async fn record(
        &self,
        ctx: &mut MiddlewareContext,
        actual: Cost,
        meta: &ResponseMeta,
    ) -> Result<(), MiddlewareError> {
        if let Some(permit) = ctx.take::<Permit>(PERMIT) {
            self.limiter
                .record_usage(permit, actual, meta)
                .await
                .map_err(|e| MiddlewareError::Limit(e.to_string()))?;
        }
        Ok(())
    }
}

#[async_trait]
impl Middleware for RateLimitMiddleware {
    fn name(&self) -> &str {
        "rate_limit"
    }

    async fn on_request(
        &self,
        request: &mut CompletionRequest,
        ctx: &mut MiddlewareContext,
    ) -> Result<(), MiddlewareError> {
        let key = self.key(&ctx.provider_id, &request.model);
        let permit = self
            .limiter
            .acquire(&key, self.estimator.estimate(request))
            .await
            .map_err(|e| MiddlewareError::Limit(e.to_string()))?;
        ctx.insert(WAITED, permit.waited());
        ctx.insert(PERMIT, permit);
        Ok(())
    }

    async fn on_response(
        &self,
        response: &mut CompletionResponse,
        ctx: &mut MiddlewareContext,
    ) -> Result<(), MiddlewareError> {
        let actual = Cost::request(response.usage.total());
        self.record(ctx, actual, &response.meta).await
    }

    /// Records a stream's usage (the provider's usage chunk, else the counted estimate)
    /// with its response headers, when the stream ends, breaks or is dropped.
    async fn on_stream_end(
        &self,
        end: &StreamEnd,
        ctx: &mut MiddlewareContext,
    ) -> Result<(), MiddlewareError> {
        self.record(ctx, Cost::request(end.usage.total()), &end.meta)
            .await
    }

    /// Records the failed attempt as one request and no tokens, with the error response's
    /// headers (a 429's retry-after pauses the key). Never decides: always `Propagate`.
    async fn on_error(
        &self,
        error: &ConnectorError,
        ctx: &mut MiddlewareContext,
    ) -> Result<ErrorAction, MiddlewareError> {
        let meta = error.meta().cloned().unwrap_or_default();
        self.record(ctx, Cost::request(0), &meta).await?;
        Ok(ErrorAction::Propagate)
    }
}
