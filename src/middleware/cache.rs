//! [`CacheMiddleware`]: answers an identical deterministic request from a
//! [`CacheStrategy`] without calling the provider. Deterministic means temperature 0 or a
//! `seed` in the provider parameters; streams and errors are never cached. Register it
//! first, so a hit skips the rate limiter and every later middleware.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{Middleware, MiddlewareContext, MiddlewareError};
use crate::cache::CacheStrategy;
use crate::provider::{CompletionRequest, CompletionResponse};

/// Context value: the cache key of a request that missed.
struct CacheKey(String);
/// Metadata key set to `"hit"` or `"miss"` for cacheable requests.
pub const CACHE_STATUS: &str = "cache";

/// Caches deterministic, non-streaming responses for `ttl`.
#[derive(Debug, Clone)]
pub struct CacheMiddleware {
    store: Arc<dyn CacheStrategy>,
    ttl: Duration,
}

impl CacheMiddleware {
    /// Caches in `store`, each response for `ttl`.
    pub fn new(store: Arc<dyn CacheStrategy>, ttl: Duration) -> Self {
        Self { store, ttl }
    }

    /// Whether `request` may be answered from the cache: not a stream, and temperature 0
    /// or a `seed` given.
    pub fn is_cacheable(request: &CompletionRequest) -> bool {
        !request.stream
            && (request.temperature == Some(0.0) || request.provider_params.contains_key("seed"))
    }

    /// The cache key: the provider id and the request's canonical JSON.
    fn key(provider_id: &str, request: &CompletionRequest) -> Option<String> {
        let body = serde_json::to_string(request).ok()?;
        Some(format!("{provider_id}\n{body}"))
    }
}

#[async_trait]
impl Middleware for CacheMiddleware {
    fn name(&self) -> &str {
        "cache"
    }

    async fn on_request(
        &self,
        request: &mut CompletionRequest,
        ctx: &mut MiddlewareContext,
    ) -> Result<(), MiddlewareError> {
        if !Self::is_cacheable(request) {
            return Ok(());
        }
        let Some(key) = Self::key(&ctx.provider_id, request) else {
            return Ok(());
        };
        let cached = self
            .store
            .get(&key)
            .await
            .and_then(|bytes| serde_json::from_slice::<CompletionResponse>(&bytes).ok());
        match cached {
            Some(response) => {
                ctx.metadata.insert(CACHE_STATUS.into(), "hit".into());
                ctx.short_circuit = Some(response);
            }
            None => {
                ctx.metadata.insert(CACHE_STATUS.into(), "miss".into());
                ctx.extensions.insert(CacheKey(key));
            }
        }
        Ok(())
    }

    /// Stores the response of a request that missed; a store failure (value too large)
    /// leaves the response uncached and is not an error.
    async fn on_response(
        &self,
        response: &mut CompletionResponse,
        ctx: &mut MiddlewareContext,
    ) -> Result<(), MiddlewareError> {
        if let Some(CacheKey(key)) = ctx.extensions.remove::<CacheKey>() {
            if let Ok(bytes) = serde_json::to_vec(response) {
                if let Err(e) = self.store.set(&key, bytes, self.ttl).await {
                    tracing::debug!(error = %e, "response not cached");
                }
            }
        }
        Ok(())
    }
}
