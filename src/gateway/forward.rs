//! The gateway's driver of the request lifecycle: one [`RequestLifecycle`] per request,
//! its actions performed here — `Acquire` through the [`Admission`](super::admission)
//! queue (both keys), `Send` through the transport, `Record` on both permits,
//! `Backoff` on the limiter, `SleepUntil` on the clock — and its outcome turned into the
//! client's answer. A stream's lifecycle goes on in the stream's body: when the stream
//! ends, breaks or is dropped by the client, the machine gets that event and records what
//! was streamed.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::admission::{Ask, Refusal, Side, Ticket};
use super::config::Mode;
use super::errors::{Family, GatewayError};
use super::sse::{StreamEnd, Tapped, UsageTap};
use super::upstream::{
    build_request, ended, Operation, Reply, PASSED_ERROR_HEADERS, PASSED_HEADERS,
};
use super::GatewayState;
use crate::clock::Nanos;
use crate::lifecycle::{Action, Event, LifecycleConfig, Outcome, RequestLifecycle};
use crate::limiter::{Cost, LimitKey, Permit, ResponseMeta};
use crate::provider::admission::text_tokens;

/// One request, read and routed.
#[derive(Debug, Clone)]
pub struct Job {
    /// The API shape the client called.
    pub family: Family,
    /// What it called.
    pub op: Operation,
    /// Index of its tenant.
    pub tenant: usize,
    /// Index of the upstream.
    pub upstream: usize,
    /// The model (a deployment, for Azure upstreams).
    pub model: String,
    /// The client's `api-version`, on Azure routes.
    pub api_version: Option<String>,
    /// The body to send (the client's, with include_usage added to streams).
    pub body: Bytes,
    /// Whether it streams.
    pub stream: bool,
    /// Whether the usage chunk is the gateway's own (stripped from the client's stream).
    pub strip_usage: bool,
    /// The admission estimate.
    pub estimate: Cost,
    /// The prompt part of the estimate (charged with the output for a cut stream).
    pub prompt_tokens: u64,
    /// When waiting and retrying end (clock ns).
    pub deadline: Nanos,
}

/// The request's state across actions.
struct Run {
    state: Arc<GatewayState>,
    job: Job,
    key: LimitKey,
    ticket: Option<Ticket>,
    refusal: Option<Refusal>,
    /// The last upstream answer (or the gateway's for a transport failure).
    last: Option<Response>,
}

/// Runs `job` to its answer.
pub async fn run(state: Arc<GatewayState>, job: Job) -> Response {
    state.metrics.in_flight_add(1);
    let upstream = &state.config.upstreams[job.upstream];
    let key = upstream.limit_key(&job.model);
    let config = LifecycleConfig {
        limited: true,
        retries: true,
        max_retries: Some(upstream.max_retries),
        first_attempt: 1,
        deadline: Some(job.deadline),
    };
    let mut machine = RequestLifecycle::with_estimate(job.estimate, config);
    let mut run = Run {
        state: state.clone(),
        job,
        key,
        ticket: None,
        refusal: None,
        last: None,
    };
    let clock = state.clock.clone();
    let now = || clock.now();
    let mut action = machine.start();
    loop {
        action = match action {
            Action::Acquire(cost) => {
                let event = run.acquire(cost).await;
                machine.handle(now(), event)
            }
            Action::Send => match run.send().await {
                Sent::Whole(event) => machine.handle(now(), event),
                Sent::Stream(response, meta) => {
                    return run.stream(machine, response, meta);
                }
            },
            Action::Record { actual, meta } => {
                run.record(actual, meta).await;
                machine.handle(now(), Event::Recorded)
            }
            Action::Backoff { attempt, error } => {
                let delay = run
                    .state
                    .limiter
                    .backoff_delay(&run.key, attempt, &error)
                    .await;
                machine.handle(now(), Event::BackoffDecided(delay))
            }
            Action::SleepUntil(at) => {
                run.state.clock.sleep_until(at).await;
                machine.handle(now(), Event::TimerFired)
            }
            Action::Finish(outcome) => {
                state.metrics.in_flight_add(-1);
                let response = run.answer(outcome).await;
                log_end(&state, &run.job, &machine, response.status().as_u16());
                return response;
            }
        };
    }
}

/// How a send ended.
enum Sent {
    /// The whole attempt is over.
    Whole(Event),
    /// A stream opened (2xx); its end is reported by the body.
    Stream(Response<Body>, ResponseMeta),
}

impl Run {
    fn tenant(&self) -> &str {
        &self.state.config.tenants[self.job.tenant].name
    }

    fn upstream_id(&self) -> &str {
        &self.state.config.upstreams[self.job.upstream].id
    }

    async fn acquire(&mut self, cost: Cost) -> Event {
        let t = &self.state.config.tenants[self.job.tenant];
        let ask = Ask {
            upstream: self.key.clone(),
            tenant_key: t.limited.then(|| t.limit_key()),
            tenant: t.name.as_str().into(),
            weight: t.weight,
            cost,
            deadline: self.job.deadline,
        };
        let metrics = &self.state.metrics;
        if self.state.config.front.mode == Mode::Shadow {
            // Forward at once; record what enforcing would have done.
            match self.state.admission.probe(&ask).await {
                Ok(ticket) => self.ticket = Some(ticket),
                Err((_, d)) => {
                    let never = matches!(d, crate::limiter::Denial::Exceeds { .. });
                    metrics.shadow(self.tenant(), self.upstream_id(), never);
                    tracing::info!(tenant = self.tenant(), upstream = self.upstream_id(), denial = %d, "shadow: enforcing would have {}", if never { "refused" } else { "delayed" });
                }
            }
            metrics.admitted(
                self.tenant(),
                self.upstream_id(),
                Duration::ZERO,
                cost.tokens,
            );
            return Event::Admitted {
                waited: Duration::ZERO,
            };
        }
        match self.state.admission.admit(ask).await {
            Ok(ticket) => {
                let waited = ticket.waited;
                metrics.admitted(self.tenant(), self.upstream_id(), waited, cost.tokens);
                self.ticket = Some(ticket);
                Event::Admitted { waited }
            }
            Err(r) => {
                let (why, waited) = match &r {
                    Refusal::NeverFits { dimension, .. } => {
                        (format!("never_fits:{dimension}"), Duration::ZERO)
                    }
                    Refusal::Timeout {
                        dimension, waited, ..
                    } => (
                        format!(
                            "timeout:{}",
                            dimension.map_or_else(|| "other".to_owned(), |d| d.to_string())
                        ),
                        *waited,
                    ),
                    Refusal::Unavailable { .. } => ("unavailable".to_owned(), Duration::ZERO),
                };
                metrics.refused(self.tenant(), self.upstream_id(), why);
                self.refusal = Some(r);
                Event::Refused { waited }
            }
        }
    }

    async fn send(&mut self) -> Sent {
        let state = self.state.clone();
        let upstream = &state.config.upstreams[self.job.upstream];
        let profile = upstream.kind.header_profile();
        let request = match build_request(
            upstream,
            self.job.op,
            &self.job.model,
            self.job.api_version.as_deref(),
            self.job.body.clone(),
        ) {
            Ok(r) => r,
            Err(e) => return self.transport_failed(e),
        };
        let response = match state.transport.send(request, upstream.timeout).await {
            Ok(r) => r,
            Err(e) => return self.transport_failed(e),
        };
        let status = response.status();
        let meta = profile.parse(Some(status.as_u16()), response.headers());
        if status == StatusCode::TOO_MANY_REQUESTS {
            state
                .metrics
                .upstream_throttled(self.tenant(), self.upstream_id());
        }
        if self.job.stream && status.is_success() {
            return Sent::Stream(response, meta);
        }
        let (parts, body) = response.into_parts();
        // A whole answer is read within the attempt's timeout too.
        let read = tokio::time::timeout(upstream.timeout, axum::body::to_bytes(body, usize::MAX));
        let body = match read.await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                return self.transport_failed(super::upstream::TransportError {
                    message: format!("reading the upstream's answer: {e}"),
                    timeout: false,
                })
            }
            Err(_) => {
                return self.transport_failed(super::upstream::TransportError {
                    message: "the upstream's answer did not arrive in time".into(),
                    timeout: true,
                })
            }
        };
        let reply = Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        };
        let event = ended(&reply, meta, self.job.estimate.tokens);
        self.last = Some(client_response(&reply, !status.is_success()));
        Sent::Whole(event)
    }

    fn transport_failed(&mut self, e: super::upstream::TransportError) -> Sent {
        self.last = Some(GatewayError::bad_gateway(self.job.family, &e.message).into_response());
        Sent::Whole(Event::Failed {
            error: e.error_info(),
            meta: ResponseMeta::default(),
        })
    }

    async fn record(&mut self, actual: Cost, meta: ResponseMeta) {
        record(
            &self.state,
            &self.key,
            self.job.tenant,
            self.job.upstream,
            self.ticket.take(),
            actual,
            meta,
        )
        .await;
    }

    /// Opens the client's stream; the rest of the lifecycle runs when it ends.
    fn stream(
        self,
        mut machine: RequestLifecycle,
        response: Response<Body>,
        meta: ResponseMeta,
    ) -> Response {
        let (parts, body) = response.into_parts();
        let parts_status = parts.status.as_u16();
        let strip = self.job.strip_usage;
        let Run {
            state,
            job,
            key,
            ticket,
            ..
        } = self;
        let model = job.model.clone();
        let prompt = job.prompt_tokens;
        let finish_state = state.clone();
        let on_end = move |end: StreamEnd| {
            let counted = |text: &str| Cost::ZERO.with_split(prompt, text_tokens(&model, text));
            let event = match end {
                StreamEnd::Completed { usage, text } => Event::Responded {
                    usage: usage.unwrap_or_else(|| counted(&text)),
                    meta,
                },
                StreamEnd::Broken { text } => Event::StreamBroken {
                    usage: counted(&text),
                    meta,
                },
                StreamEnd::Dropped { text } => Event::StreamDropped {
                    usage: counted(&text),
                    meta,
                },
            };
            let state = finish_state;
            Box::pin(async move {
                let mut ticket = ticket;
                let mut action = machine.handle(state.clock.now(), event);
                while let Action::Record { actual, meta } = action {
                    record(
                        &state,
                        &key,
                        job.tenant,
                        job.upstream,
                        ticket.take(),
                        actual,
                        meta,
                    )
                    .await;
                    action = machine.handle(state.clock.now(), Event::Recorded);
                }
                state.metrics.in_flight_add(-1);
                log_end(&state, &job, &machine, parts_status);
            }) as super::sse::Finish
        };
        let tapped = Tapped::new(body.into_data_stream(), UsageTap::new(strip), on_end);
        let mut out = Response::new(Body::from_stream(tapped));
        *out.status_mut() = parts.status;
        copy_headers(&parts.headers, out.headers_mut(), PASSED_HEADERS);
        for name in ["content-type", "cache-control"] {
            if let Some(v) = parts.headers.get(name) {
                out.headers_mut()
                    .insert(HeaderName::from_static(name), v.clone());
            }
        }
        out
    }

    async fn answer(&mut self, outcome: Outcome) -> Response {
        let family = self.job.family;
        match outcome {
            Outcome::Refused => match self.refusal.take() {
                Some(Refusal::NeverFits {
                    dimension,
                    cost,
                    capacity,
                    ..
                }) => GatewayError::never_fits(family, &self.job.model, dimension, cost, capacity)
                    .into_response(),
                Some(Refusal::Timeout {
                    side,
                    dimension,
                    retry_after,
                    ..
                }) => {
                    let key = match side {
                        Side::Upstream => self.key.clone(),
                        Side::Tenant => self.state.config.tenants[self.job.tenant].limit_key(),
                    };
                    let stats = self.state.limiter.usage_stats(&key).await.ok();
                    // No exact wait known (full concurrency slots): one second.
                    let wait = retry_after.unwrap_or(Duration::from_secs(1));
                    GatewayError::throttled(
                        family,
                        &self.job.model,
                        dimension,
                        wait,
                        stats.as_ref(),
                    )
                    .into_response()
                }
                Some(Refusal::Unavailable { .. }) | None => {
                    GatewayError::unavailable(family).into_response()
                }
            },
            _ => match self.last.take() {
                Some(r) => r,
                None => GatewayError::bad_gateway(family, "no answer").into_response(),
            },
        }
    }
}

/// Records an attempt's charge on both permits and wakes the lane. Without a ticket (a
/// shadow-mode request enforcing would have refused), the usage is charged after the
/// fact so the limiter's view follows the real traffic.
async fn record(
    state: &GatewayState,
    key: &LimitKey,
    tenant: usize,
    upstream: usize,
    ticket: Option<Ticket>,
    actual: Cost,
    meta: ResponseMeta,
) {
    let t = &state.config.tenants[tenant];
    let (up, tp): (Permit, Option<Permit>) = match ticket {
        Some(ticket) => (ticket.upstream, ticket.tenant),
        None => (
            Permit::new(key.clone(), Cost::ZERO, state.clock.now(), Duration::ZERO),
            t.limited
                .then(|| Permit::new(t.limit_key(), Cost::ZERO, state.clock.now(), Duration::ZERO)),
        ),
    };
    if let Err(e) = state.limiter.record_usage(up, actual, &meta).await {
        tracing::warn!(error = %e, "usage not recorded");
    }
    if let Some(p) = tp {
        if let Err(e) = state
            .limiter
            .record_usage(p, actual, &ResponseMeta::default())
            .await
        {
            tracing::warn!(error = %e, "tenant usage not recorded");
        }
    }
    state
        .metrics
        .used(&t.name, &state.config.upstreams[upstream].id, actual.tokens);
    if t.limited {
        // The tenant's limits are shared by every lane it waits in.
        state.admission.notify_all();
    } else {
        state.admission.notify(key);
    }
}

/// One structured line per request: who, where, how it ended — never a prompt or a key.
fn log_end(state: &GatewayState, job: &Job, machine: &RequestLifecycle, status: u16) {
    tracing::info!(
        tenant = %state.config.tenants[job.tenant].name,
        upstream = %state.config.upstreams[job.upstream].id,
        model = %job.model,
        stream = job.stream,
        status,
        outcome = ?machine.outcome(),
        attempts = machine.attempts(),
        waited_ms = machine.waited().as_millis() as u64,
        estimate_tokens = job.estimate.tokens,
        "request"
    );
}

fn copy_headers(from: &HeaderMap, to: &mut HeaderMap, names: &[&'static str]) {
    for name in names {
        if let Some(v) = from.get(*name) {
            to.insert(HeaderName::from_static(name), v.clone());
        }
    }
}

/// The client's answer for a whole upstream reply: its status and body, its request ids,
/// and on a failure its retry advice.
fn client_response(reply: &Reply, failed: bool) -> Response {
    let mut out = Response::new(Body::from(reply.body.clone()));
    *out.status_mut() = reply.status;
    let h = out.headers_mut();
    h.insert(
        HeaderName::from_static("content-type"),
        reply
            .headers
            .get("content-type")
            .cloned()
            .unwrap_or(HeaderValue::from_static("application/json")),
    );
    copy_headers(&reply.headers, h, PASSED_HEADERS);
    if failed {
        copy_headers(&reply.headers, h, PASSED_ERROR_HEADERS);
    }
    out
}
