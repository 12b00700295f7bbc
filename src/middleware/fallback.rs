//! [`FallbackMiddleware`]: priority fallback. When a provider fails with an error another
//! provider may not have (rate limit, quota, server error, network, timeout), the call
//! moves to the next provider of a priority list that has not been tried in this call.

use async_trait::async_trait;

use super::{ErrorAction, Middleware, MiddlewareContext, MiddlewareError};
use crate::provider::ConnectorError;

/// Falls back along `order` (provider ids, highest priority first).
#[derive(Debug, Clone)]
pub struct FallbackMiddleware {
    order: Vec<String>,
}

impl FallbackMiddleware {
    /// Falls back along `order`, highest priority first.
    pub fn new(order: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            order: order.into_iter().map(Into::into).collect(),
        }
    }

    /// Whether another provider may succeed where this one failed with `error`: retryable
    /// errors and quota exhaustion yes; errors of the request itself (invalid, too large,
    /// not found, authentication, parse) no.
    pub fn should_fall_back(error: &ConnectorError) -> bool {
        error.is_retryable() || matches!(error, ConnectorError::QuotaExhausted { .. })
    }
}

#[async_trait]
impl Middleware for FallbackMiddleware {
    fn name(&self) -> &str {
        "fallback"
    }

    /// `Fallback(next untried provider)` for errors [`should_fall_back`](Self::should_fall_back)
    /// accepts, else (or when every provider was tried) `Propagate`.
    async fn on_error(
        &self,
        error: &ConnectorError,
        ctx: &mut MiddlewareContext,
    ) -> Result<ErrorAction, MiddlewareError> {
        if !Self::should_fall_back(error) {
            return Ok(ErrorAction::Propagate);
        }
        Ok(self
            .order
            .iter()
            .find(|id| !ctx.tried.contains(id))
            .map_or(ErrorAction::Propagate, |id| {
                ErrorAction::Fallback(id.clone())
            }))
    }
}
