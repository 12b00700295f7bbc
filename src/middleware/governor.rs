//! [`GovernorMiddleware`]: rate limiting and retries as one governed step — the pipeline's
//! driver of the request lifecycle ([`crate::lifecycle`]).
//!
//! Each call gets one [`RequestLifecycle`] per provider it is sent to, kept in the call's
//! context. `on_request` performs the machine's actions up to the send (acquire on the key
//! `provider id + model [+ deployment]`, the estimate being the provider's own
//! [`AdmissionRule`]); `on_response`,
//! `on_error` and `on_stream_end` feed how the attempt ended and perform what follows:
//! record the usage, ask for the backoff, sleep, and answer `Retry` — so the next attempt
//! acquires again. Since one machine makes every decision, no order of middlewares can
//! charge a request twice or pause a key twice. A failure that an inner layer already
//! decided to handle (a fallback, a credential refresh) is recorded and not backed off.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use rand::rngs::SmallRng;
use rand::SeedableRng;

use super::{ErrorAction, Middleware, MiddlewareContext, MiddlewareError, StreamEnd};
use crate::clock::Clock;
use crate::lifecycle::{Action, Event, LifecycleConfig, RequestLifecycle};
use crate::limiter::backoff::RetryPolicy;
use crate::limiter::{Cost, LimitError, LimitKey, Permit, RateLimiter};
use crate::provider::admission::{AdmissionRule, RequestSize};
use crate::provider::{CompletionRequest, CompletionResponse, ConnectorError};

/// How many recent retry waits [`GovernorMiddleware::waits`] keeps.
pub const WAITS_KEPT: usize = 64;

/// The current attempt's time in the limiter's queue, for other middlewares (metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimiterWait(pub Duration);

/// A per-call seed for the retry jitter of a governor without a limiter. A caller that puts
/// it in the call's context gets that call's retry delays drawn from it, retry by retry, so
/// the same request draws the same delays whatever other requests do meanwhile (the live
/// harness and the simulator both seed each request this way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySeed(pub u64);

impl RetrySeed {
    /// The seed of request `id` in a run seeded `seed`.
    pub fn for_request(seed: u64, id: u64) -> Self {
        Self(seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    /// The random stream retry number `attempt`'s delay is drawn from.
    pub fn rng(self, attempt: u32) -> SmallRng {
        SmallRng::seed_from_u64(self.0 ^ u64::from(attempt).wrapping_mul(0xD1B5_4A32_D192_ED03))
    }
}

/// Where retry delays come from.
#[derive(Debug)]
enum Backoff {
    /// The limiter's `backoff_delay` (the key's policy; a 429 pauses the key).
    Limiter,
    /// A policy of its own, for a pipeline without a limiter.
    Policy(RetryPolicy, Mutex<SmallRng>),
}

/// Acquires before each attempt, records after it, and retries failures after the
/// backoff — one [`RequestLifecycle`] per call and provider.
#[derive(Debug)]
pub struct GovernorMiddleware {
    limiter: Option<Arc<dyn RateLimiter>>,
    backoff: Backoff,
    limits: bool,
    retries: bool,
    deployments: HashMap<String, String>,
    clock: Arc<dyn Clock>,
    waits: Mutex<VecDeque<Duration>>,
}

/// One call's lifecycle on one provider.
#[derive(Debug)]
struct Governed {
    provider_id: String,
    machine: RequestLifecycle,
    permit: Option<Permit>,
    /// The action to perform at the next `on_request` (after a retry's sleep).
    pending: Option<Action>,
    refusal: Option<LimitError>,
}

/// Where a run of actions stopped.
enum Stop {
    /// Send the attempt.
    Send,
    /// The machine wants another attempt (its sleep is over).
    Retry(Action),
    /// The request is over.
    Done,
}

impl GovernorMiddleware {
    /// Limits and retries through `limiter` (shared by every task), sleeping on `clock`.
    pub fn new(limiter: Arc<dyn RateLimiter>, clock: Arc<dyn Clock>) -> Self {
        Self {
            limiter: Some(limiter),
            backoff: Backoff::Limiter,
            limits: true,
            retries: true,
            deployments: HashMap::new(),
            clock,
            waits: Mutex::new(VecDeque::new()),
        }
    }

    /// No limiter: retries only, with `policy`'s delays (jitter drawn from `seed`).
    pub fn unlimited(policy: RetryPolicy, seed: u64, clock: Arc<dyn Clock>) -> Self {
        Self {
            limiter: None,
            backoff: Backoff::Policy(policy, Mutex::new(SmallRng::seed_from_u64(seed))),
            limits: false,
            retries: true,
            deployments: HashMap::new(),
            clock,
            waits: Mutex::new(VecDeque::new()),
        }
    }

    /// Whether attempts acquire from the limiter and record to it (default true; always
    /// false without a limiter).
    pub fn with_limits(mut self, on: bool) -> Self {
        self.limits = on && self.limiter.is_some();
        self
    }

    /// Whether failures are retried (default true).
    pub fn with_retries(mut self, on: bool) -> Self {
        self.retries = on;
        self
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

    /// The most recent retry waits (at most [`WAITS_KEPT`]), oldest first.
    pub fn waits(&self) -> Vec<Duration> {
        self.waits.lock().iter().copied().collect()
    }

    fn lifecycle(&self, request: &CompletionRequest, ctx: &MiddlewareContext) -> Governed {
        let (rule, max_retries) = ctx
            .provider
            .as_ref()
            .map_or((AdmissionRule::OPENAI, None), |p| {
                (p.admission_rule(), p.max_retries())
            });
        let config = LifecycleConfig {
            limited: self.limits,
            retries: self.retries,
            max_retries,
            first_attempt: ctx.attempt + 1,
            deadline: None,
        };
        Governed {
            provider_id: ctx.provider_id.clone(),
            machine: RequestLifecycle::new(&rule, &RequestSize::of(request), config),
            permit: None,
            pending: None,
            refusal: None,
        }
    }

    /// Performs `action` and the ones after it until the machine wants a send, a new
    /// attempt, or is done.
    async fn run(
        &self,
        g: &mut Governed,
        key: &LimitKey,
        mut action: Action,
        ctx: &mut MiddlewareContext,
    ) -> Result<Stop, MiddlewareError> {
        loop {
            action = match action {
                Action::Acquire(cost) => {
                    let Some(limiter) = &self.limiter else {
                        return Err(self.confused("acquire without a limiter"));
                    };
                    let asked = self.clock.now();
                    match limiter.acquire(key, cost).await {
                        Ok(permit) => {
                            let waited = permit.waited();
                            ctx.extensions.insert(LimiterWait(waited));
                            g.permit = Some(permit);
                            g.machine
                                .handle(self.clock.now(), Event::Admitted { waited })
                        }
                        Err(e) => {
                            let now = self.clock.now();
                            let waited = Duration::from_nanos(now.saturating_sub(asked));
                            g.refusal = Some(e);
                            g.machine.handle(now, Event::Refused { waited })
                        }
                    }
                }
                Action::Send => return Ok(Stop::Send),
                Action::Record { actual, meta } => {
                    if let (Some(limiter), Some(permit)) = (&self.limiter, g.permit.take()) {
                        limiter
                            .record_usage(permit, actual, &meta)
                            .await
                            .map_err(MiddlewareError::Limit)?;
                    }
                    g.machine.handle(self.clock.now(), Event::Recorded)
                }
                Action::Backoff { attempt, error } => {
                    let delay = match (&self.backoff, &self.limiter) {
                        (Backoff::Limiter, Some(l)) => l.backoff_delay(key, attempt, &error).await,
                        (Backoff::Policy(p, rng), _) => match ctx.extensions.get::<RetrySeed>() {
                            Some(seed) => p.delay(attempt, &error, &mut seed.rng(attempt)),
                            None => p.delay(attempt, &error, &mut *rng.lock()),
                        },
                        (Backoff::Limiter, None) => None,
                    };
                    g.machine
                        .handle(self.clock.now(), Event::BackoffDecided(delay))
                }
                Action::SleepUntil(at) => {
                    let now = self.clock.now();
                    self.remember_wait(Duration::from_nanos(at.saturating_sub(now)));
                    self.clock.sleep_until(at).await;
                    let next = g.machine.handle(self.clock.now(), Event::TimerFired);
                    return Ok(Stop::Retry(next));
                }
                Action::Finish(_) => return Ok(Stop::Done),
            };
        }
    }

    fn remember_wait(&self, wait: Duration) {
        let mut waits = self.waits.lock();
        if waits.len() == WAITS_KEPT {
            waits.pop_front();
        }
        waits.push_back(wait);
    }

    fn confused(&self, what: &str) -> MiddlewareError {
        MiddlewareError::Failed {
            middleware: "governor".into(),
            message: what.into(),
        }
    }

    /// Feeds how an attempt ended and performs what follows.
    async fn ended(
        &self,
        event: Event,
        ctx: &mut MiddlewareContext,
    ) -> Result<ErrorAction, MiddlewareError> {
        let Some(mut g) = ctx.extensions.remove::<Governed>() else {
            return Ok(ErrorAction::Propagate);
        };
        if !g.machine.is_sending() {
            return Ok(ErrorAction::Propagate);
        }
        let key = self.key(&g.provider_id, &ctx.model);
        let first = g.machine.handle(self.clock.now(), event);
        match self.run(&mut g, &key, first, ctx).await? {
            Stop::Retry(next) => {
                g.pending = Some(next);
                ctx.extensions.insert(g);
                Ok(ErrorAction::Retry)
            }
            Stop::Send => Err(self.confused("send asked after an attempt ended")),
            Stop::Done => Ok(ErrorAction::Propagate),
        }
    }
}

#[async_trait]
impl Middleware for GovernorMiddleware {
    fn name(&self) -> &str {
        "governor"
    }

    /// Acquires for this attempt (waiting FIFO in the limiter); a refusal stops the call
    /// with [`MiddlewareError::Limit`].
    async fn on_request(
        &self,
        request: &mut CompletionRequest,
        ctx: &mut MiddlewareContext,
    ) -> Result<(), MiddlewareError> {
        let (mut g, first) = match ctx.extensions.remove::<Governed>() {
            Some(mut g) if g.provider_id == ctx.provider_id && g.pending.is_some() => {
                let next = g.pending.take();
                (g, next)
            }
            _ => (self.lifecycle(request, ctx), None),
        };
        let first = match first {
            Some(a) => a,
            None => g.machine.start(),
        };
        ctx.extensions.insert(LimiterWait(Duration::ZERO));
        let key = self.key(&g.provider_id, &request.model);
        match self.run(&mut g, &key, first, ctx).await? {
            Stop::Send => {
                ctx.extensions.insert(g);
                Ok(())
            }
            Stop::Done | Stop::Retry(_) => Err(match g.refusal.take() {
                Some(e) => MiddlewareError::Limit(e),
                None => self.confused("the request ended before it was sent"),
            }),
        }
    }

    async fn on_response(
        &self,
        response: &mut CompletionResponse,
        ctx: &mut MiddlewareContext,
    ) -> Result<(), MiddlewareError> {
        let event = Event::Responded {
            usage: split_usage(&response.usage),
            meta: response.meta,
        };
        self.ended(event, ctx).await.map(drop)
    }

    /// Records the failed attempt, then — unless a layer closer to the provider already
    /// decided — backs off and answers `Retry`, or `Propagate` when no retry is left.
    async fn on_error(
        &self,
        error: &ConnectorError,
        ctx: &mut MiddlewareContext,
    ) -> Result<ErrorAction, MiddlewareError> {
        let (error_info, meta) = (
            error.error_info(),
            error.meta().copied().unwrap_or_default(),
        );
        let event = if ctx.decided.is_some() {
            Event::Rerouted {
                error: error_info,
                meta,
            }
        } else {
            Event::Failed {
                error: error_info,
                meta,
            }
        };
        self.ended(event, ctx).await
    }

    /// Records a stream's usage when it ends, breaks or is dropped.
    async fn on_stream_end(
        &self,
        end: &StreamEnd,
        ctx: &mut MiddlewareContext,
    ) -> Result<(), MiddlewareError> {
        let (usage, meta) = (split_usage(&end.usage), end.meta);
        let event = if end.cancelled {
            Event::StreamDropped { usage, meta }
        } else if end.error.is_some() {
            Event::StreamBroken { usage, meta }
        } else {
            Event::Responded { usage, meta }
        };
        self.ended(event, ctx).await.map(drop)
    }
}

/// A response's usage as the limiter counts it: input and output tokens apart, the total
/// their sum.
fn split_usage(usage: &crate::provider::Usage) -> Cost {
    Cost::ZERO.with_split(usage.input_tokens, usage.output_tokens)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::limiter::BackoffConfig;

    #[test]
    fn retry_bookkeeping_keeps_only_the_most_recent_waits() {
        let g = GovernorMiddleware::unlimited(
            BackoffConfig::default().policy(),
            1,
            Arc::new(ManualClock::new(0)),
        );
        for ms in 0..(WAITS_KEPT as u64 + 100) {
            g.remember_wait(Duration::from_millis(ms));
        }
        let waits = g.waits();
        assert_eq!(waits.len(), WAITS_KEPT);
        assert_eq!(
            waits[0],
            Duration::from_millis(100),
            "the oldest were dropped"
        );
        assert_eq!(
            waits[WAITS_KEPT - 1],
            Duration::from_millis(WAITS_KEPT as u64 + 99)
        );
    }

    #[test]
    fn limits_cannot_be_on_without_a_limiter() {
        let g = GovernorMiddleware::unlimited(
            BackoffConfig::default().policy(),
            1,
            Arc::new(ManualClock::new(0)),
        )
        .with_limits(true);
        assert!(!g.limits);
    }
}
