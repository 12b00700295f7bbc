//! One request's life in a live run: wait in the limiter, send through the connector
//! (streamed or not), reconcile usage, and on failure ask for a backoff and try again —
//! producing the [`RequestRecord`] the report aggregates.
//!
//! The same policy applies with and without a limiter: with one, the limiter's
//! `backoff_delay` decides (server retry-after first, then the key's backoff curve, and a
//! 429 pauses the whole key); without one (the `none` baseline), the scenario's retry policy
//! decides alone.

use std::sync::Arc;

use futures::StreamExt;
use rand::rngs::SmallRng;

use crate::clock::{Clock, Nanos};
use crate::limiter::backoff::RetryPolicy;
use crate::limiter::{Cost, LimitKey, RateLimiter, ResponseMeta};
use crate::provider::{CompletionRequest, ConnectorError, LLMProvider, Usage};

use super::record::{Attempt, Outcome, RequestRecord};

/// Everything a request task needs, shared by all requests of one limiter run.
#[derive(Debug)]
pub struct RequestContext {
    /// The connector.
    pub provider: Arc<dyn LLMProvider>,
    /// The limiter under test; `None` for the baseline.
    pub limiter: Option<Arc<dyn RateLimiter>>,
    /// The key every request is limited on.
    pub key: LimitKey,
    /// Retry policy used when there is no limiter to ask.
    pub retry: RetryPolicy,
    /// The run's clock; record times are `clock.now() - start`.
    pub clock: Arc<dyn Clock>,
    /// The run start on `clock`.
    pub start: Nanos,
}

/// What to send: the request and what the client estimated it costs.
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
    /// Client-side token estimate: prompt tokens + max_tokens.
    pub estimated_tokens: u64,
}

/// How one attempt ended.
struct AttemptResult {
    attempt: Attempt,
    first_byte: Option<Nanos>,
    outcome: Result<Usage, ConnectorError>,
    meta: ResponseMeta,
}

impl RequestContext {
    fn now(&self) -> Nanos {
        self.clock.now().saturating_sub(self.start)
    }

    /// Runs `planned` to its end (success, final failure, or limiter refusal).
    pub async fn execute(&self, planned: PlannedRequest, rng: &mut SmallRng) -> RequestRecord {
        let mut record = RequestRecord {
            request_id: planned.id,
            phase: planned.phase,
            intended_start: planned.intended_start,
            attempts: Vec::new(),
            first_byte: None,
            end: planned.intended_start,
            outcome: Outcome::Dropped,
            estimated_tokens: planned.estimated_tokens,
            prompt_tokens: None,
            completion_tokens: None,
            limiter_wait: 0,
            streamed: planned.request.stream,
        };
        let estimate = Cost::request(planned.estimated_tokens);
        let mut attempt_no = 0u32;
        loop {
            attempt_no += 1;
            let permit = match &self.limiter {
                Some(l) => {
                    let before = self.now();
                    let permit = l.acquire(&self.key, estimate).await;
                    record.limiter_wait += self.now().saturating_sub(before);
                    match permit {
                        Ok(p) => Some(p),
                        Err(e) => {
                            tracing::debug!(request = planned.id, error = %e, "limiter refused");
                            record.end = self.now();
                            return record;
                        }
                    }
                }
                None => None,
            };
            let result = self.attempt(&planned.request).await;
            record.attempts.push(result.attempt);
            record.end = result.attempt.end;
            record.first_byte = result.first_byte;
            let error = match result.outcome {
                Ok(usage) => {
                    if let (Some(l), Some(p)) = (&self.limiter, permit) {
                        let actual = Cost::request(usage.total());
                        if let Err(e) = l.record_usage(p, actual, &result.meta).await {
                            tracing::warn!(error = %e, "record_usage failed");
                        }
                    }
                    record.prompt_tokens = Some(usage.input_tokens);
                    record.completion_tokens = Some(usage.output_tokens);
                    record.outcome = Outcome::Ok;
                    return record;
                }
                Err(e) => e,
            };
            let throttled = result.attempt.throttled();
            if let (Some(l), Some(p)) = (&self.limiter, permit) {
                // A 429 was not admitted by the server: give the charge back (the pause and
                // the server's remaining headers keep the local view strict). Any other
                // failure may have been charged: keep the estimate.
                let actual = if throttled { Cost::ZERO } else { estimate };
                if let Err(e) = l.record_usage(p, actual, &result.meta).await {
                    tracing::warn!(error = %e, "record_usage failed");
                }
            }
            let info = error.error_info();
            let delay = match &self.limiter {
                Some(l) => l.backoff_delay(&self.key, attempt_no, &info).await,
                None => self.retry.delay(attempt_no, &info, rng),
            };
            record.outcome = if throttled {
                Outcome::Throttled
            } else {
                Outcome::Error
            };
            let Some(delay) = delay else {
                tracing::debug!(request = planned.id, error = %error, "giving up");
                return record;
            };
            self.clock.sleep(delay).await;
        }
    }

    /// Sends once; times are ns since the run start.
    async fn attempt(&self, request: &CompletionRequest) -> AttemptResult {
        let sent = self.now();
        if request.stream {
            match self.provider.open_stream(request.clone()).await {
                Ok((meta, mut chunks)) => {
                    let mut first_byte = None;
                    let mut usage = None;
                    let mut failure = None;
                    while let Some(chunk) = chunks.next().await {
                        match chunk {
                            Ok(c) => {
                                first_byte.get_or_insert_with(|| self.now());
                                if c.usage.is_some() {
                                    usage = c.usage;
                                }
                            }
                            Err(e) => {
                                failure = Some(e);
                                break;
                            }
                        }
                    }
                    let outcome = match (failure, usage) {
                        (Some(e), _) => Err(e),
                        (None, Some(u)) => Ok(u),
                        (None, None) => Err(ConnectorError::Stream {
                            message: "stream ended without a usage chunk".into(),
                        }),
                    };
                    AttemptResult {
                        attempt: Attempt {
                            sent,
                            end: self.now(),
                            status: meta.status,
                        },
                        first_byte,
                        outcome,
                        meta,
                    }
                }
                Err(e) => self.failed(sent, e),
            }
        } else {
            match self.provider.send_completion(request.clone()).await {
                Ok(resp) => {
                    let end = self.now();
                    AttemptResult {
                        attempt: Attempt {
                            sent,
                            end,
                            status: resp.meta.status.or(Some(200)),
                        },
                        first_byte: Some(end),
                        outcome: Ok(resp.usage),
                        meta: resp.meta,
                    }
                }
                Err(e) => self.failed(sent, e),
            }
        }
    }

    fn failed(&self, sent: Nanos, e: ConnectorError) -> AttemptResult {
        let meta = e.meta().cloned().unwrap_or_default();
        AttemptResult {
            attempt: Attempt {
                sent,
                end: self.now(),
                status: e.status(),
            },
            first_byte: None,
            outcome: Err(e),
            meta,
        }
    }
}
