//! [`Generator`]: the seed's integration contract as code. A generator is registered with
//! one provider and one shared limiter; `generate(prompt, n)` fans out `n` parallel
//! requests (bounded), and *each* request runs the pre-generate hook (`acquire`) and the
//! post-generate hook (`record_usage`) — per request, not once per batch — through a
//! [`Pipeline`] holding a [`GovernorMiddleware`] (the request lifecycle; retries optional).

use std::sync::Arc;

use futures::stream::{self, StreamExt};

use crate::clock::{Clock, TokioClock};
use crate::limiter::RateLimiter;
use crate::middleware::{GovernorMiddleware, Pipeline, PipelineError, ProviderSet};
use crate::provider::{CompletionRequest, CompletionResponse, LLMProvider, Message};

/// Parallel requests per `generate` call unless set with
/// [`with_max_parallel`](Generator::with_max_parallel).
pub const DEFAULT_MAX_PARALLEL: usize = 4;

/// Sends generations of one prompt to one provider under a shared limiter.
#[derive(Debug, Clone)]
pub struct Generator {
    provider_id: String,
    providers: ProviderSet,
    limiter: Arc<dyn RateLimiter>,
    deployment: Option<String>,
    clock: Arc<dyn Clock>,
    retry: bool,
    template: CompletionRequest,
    max_parallel: usize,
}

impl Generator {
    /// Registers `provider` with `limiter` (shared with every other generator or task that
    /// holds the same `Arc`). Requests use `model`, no `max_tokens` unless set, and
    /// [`DEFAULT_MAX_PARALLEL`]; retries are off until [`with_retry`](Self::with_retry).
    pub fn new(
        provider: Arc<dyn LLMProvider>,
        limiter: Arc<dyn RateLimiter>,
        model: impl Into<String>,
    ) -> Self {
        let provider_id = provider.provider_id().to_owned();
        let mut providers = ProviderSet::new();
        providers.insert(provider_id.clone(), provider);
        Self {
            provider_id,
            providers,
            limiter,
            deployment: None,
            clock: Arc::new(TokioClock::new()),
            retry: false,
            template: CompletionRequest::new(model, Vec::new()),
            max_parallel: DEFAULT_MAX_PARALLEL,
        }
    }

    /// Keys the limiter by `deployment` too (Azure quotas are per deployment).
    pub fn with_deployment(mut self, deployment: impl Into<String>) -> Self {
        self.deployment = Some(deployment.into());
        self
    }

    /// Caps each request's output at `max_tokens` tokens (also the limiter's estimate).
    pub fn with_max_tokens(mut self, max_tokens: u32) -> Self {
        self.template.max_tokens = Some(max_tokens);
        self
    }

    /// At most `k` (≥ 1) requests of one `generate` call in flight at once.
    pub fn with_max_parallel(mut self, k: usize) -> Self {
        self.max_parallel = k.max(1);
        self
    }

    /// Retries retryable errors after the limiter's `backoff_delay`, waiting on `clock`.
    pub fn with_retry(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self.retry = true;
        self
    }

    fn pipeline(&self) -> Pipeline {
        let mut governor = GovernorMiddleware::new(self.limiter.clone(), self.clock.clone())
            .with_retries(self.retry);
        if let Some(d) = &self.deployment {
            governor = governor.with_deployment(self.provider_id.clone(), d.clone());
        }
        Pipeline::new(self.clock.clone()).with(Arc::new(governor))
    }

    /// Sends `n` requests of `prompt` (a user message), at most `max_parallel` at once, each
    /// acquiring before and recording after. Results are in request order.
    pub async fn generate(
        &self,
        prompt: &str,
        n: usize,
    ) -> Vec<Result<CompletionResponse, PipelineError>> {
        let pipeline = self.pipeline();
        let mut request = self.template.clone();
        request.messages = vec![Message::user(prompt)];
        let pipeline = &pipeline;
        let request = &request;
        let mut results: Vec<(usize, Result<CompletionResponse, PipelineError>)> =
            stream::iter(0..n)
                .map(|i| async move {
                    let r = pipeline
                        .execute(&self.providers, &self.provider_id, request.clone())
                        .await;
                    (i, r)
                })
                .buffer_unordered(self.max_parallel)
                .collect()
                .await;
        results.sort_by_key(|(i, _)| *i);
        results.into_iter().map(|(_, r)| r).collect()
    }
}
