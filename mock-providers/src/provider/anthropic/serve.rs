//! The handlers: one request from headers and bytes to a response. Order of checks: key
//! (401), permission (403), `anthropic-version` (400), body size (413), body (400), model
//! (404), `max_tokens` and context (400), quota (429), faults (500 / 529 / stream faults),
//! then the answer.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::BytesRejection;
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use rand::Rng;

use super::answer::{answer, prompt_tokens, PromptTokens};
use super::errors::AnthropicError;
use super::headers::{self as hdr, Ids, Switches};
use super::quota::{AnthropicCost, AnthropicDecision, AnthropicDimension};
use super::request::{self, Endpoint};
use super::sse::{self, StreamPlan};
use super::state::AnthropicState;
use super::wire::{self, Envelope, Tokens};
use crate::clock::MockClock;
use crate::generation::{fnv1a, latency_rng, rng_for, LatencyModel, OutputTokens};

const FAULT_SALT: u64 = 0x616e_7468_6661_756c;

/// What a handler needs from the server around it.
#[derive(Debug, Clone)]
pub struct Env {
    /// The Anthropic state.
    pub state: AnthropicState,
    /// Quota time.
    pub clock: Arc<dyn MockClock>,
    /// Unix seconds at the clock's epoch (for RFC 3339 resets).
    pub unix_at_epoch: u64,
    /// The configured seed.
    pub seed: u64,
    /// This request's number (seeds its ids, text, latency and faults).
    pub number: u64,
    /// The latency model.
    pub latency: LatencyModel,
    /// The natural-length distribution.
    pub output_tokens: OutputTokens,
    /// Which optional headers are sent.
    pub switches: Switches,
}

/// Does this request speak Anthropic? (`anthropic-version` or `x-api-key` present; what
/// routes the shared `/v1/models` paths.)
pub fn is_anthropic(headers: &HeaderMap) -> bool {
    headers.contains_key("anthropic-version") || headers.contains_key("x-api-key")
}

fn key(headers: &HeaderMap) -> Option<&str> {
    if let Some(k) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        let k = k.trim();
        return (!k.is_empty()).then_some(k);
    }
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, k) = value.split_once(' ')?;
    let k = k.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !k.is_empty()).then_some(k)
}

/// Key, permission and version checks shared by every route.
fn admit_caller(state: &AnthropicState, headers: &HeaderMap) -> Result<(), AnthropicError> {
    let config = state.config();
    let k = key(headers).ok_or_else(AnthropicError::missing_key)?;
    if !config.keys.is_empty() && !config.keys.iter().any(|c| c == k) {
        return Err(AnthropicError::invalid_key());
    }
    if config.forbidden_keys.iter().any(|c| c == k) {
        return Err(AnthropicError::forbidden());
    }
    match headers.get("anthropic-version").map(|v| v.to_str()) {
        None => Err(AnthropicError::missing_version()),
        Some(Ok(v)) if config.versions.iter().any(|c| c == v.trim()) => Ok(()),
        Some(v) => Err(AnthropicError::bad_version(v.unwrap_or("?"))),
    }
}

/// A response under construction: its headers so far.
struct Reply {
    env: Env,
    ids: Ids,
    request_id: String,
    h: HeaderMap,
}

impl Reply {
    fn new(env: Env) -> Self {
        let ids = Ids::new(env.seed, env.number);
        let request_id = ids.request();
        let mut h = HeaderMap::with_capacity(20);
        hdr::ids(
            env.switches,
            &request_id,
            &env.state.config().organization_id,
            &mut h,
        );
        Self {
            env,
            ids,
            request_id,
            h,
        }
    }

    fn finish(mut self, status: StatusCode, content_type: &'static str, body: Body) -> Response {
        self.h
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        let mut r = Response::new(body);
        *r.status_mut() = status;
        *r.headers_mut() = self.h;
        r
    }

    fn json(self, body: Vec<u8>) -> Response {
        self.finish(StatusCode::OK, "application/json", Body::from(body))
    }

    fn error(mut self, e: &AnthropicError) -> Response {
        if let Some(wait) = e.retry_after() {
            hdr::retry_after(self.env.switches, wait, &mut self.h);
        }
        let body = e.body(&self.request_id);
        self.finish(e.status(), "application/json", Body::from(body))
    }
}

fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, AnthropicError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AnthropicError::too_large()
        } else {
            AnthropicError::invalid_request(
                "There was an error parsing the body of your request: could not read the body",
            )
        }
    })
}

/// `POST /v1/messages/count_tokens`.
pub async fn count_tokens(
    env: Env,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut reply = Reply::new(env);
    match count_inner(&mut reply, headers, body) {
        Ok(n) => reply.json(wire::token_count(n)),
        Err(e) => reply.error(&e),
    }
}

fn count_inner(
    reply: &mut Reply,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<u64, AnthropicError> {
    let env = &reply.env;
    admit_caller(&env.state, headers)?;
    let bytes = body_bytes(body)?;
    let req = request::parse(&bytes, Endpoint::CountTokens)?;
    let slot = env
        .state
        .slot(&req.model)
        .ok_or_else(|| AnthropicError::model_not_found(&req.model))?;
    let now = env.clock.now();
    let admitted = slot.count_quota.lock().try_admit(now);
    match admitted {
        Ok(bucket) => {
            hdr::request_limit(env.switches, &bucket, env.unix_at_epoch, now, &mut reply.h);
            slot.stats.count_tokens.fetch_add(1, Relaxed);
            Ok(prompt_tokens(slot.config.encoding, &req).total)
        }
        Err(wait) => {
            let bucket = slot.count_quota.lock().bucket(now);
            hdr::request_limit(env.switches, &bucket, env.unix_at_epoch, now, &mut reply.h);
            slot.stats.count_tokens_throttled.fetch_add(1, Relaxed);
            Err(AnthropicError::count_tokens_limited(
                bucket.limit,
                wait,
                &env.state.config().organization_id,
                &req.model,
            ))
        }
    }
}

/// `GET /v1/models` (`limit` 1–1000, default 20; `after_id`, `before_id`), in
/// configuration order.
pub fn list_models(env: Env, headers: &HeaderMap, query: Option<&str>) -> Response {
    let reply = Reply::new(env);
    if let Err(e) = admit_caller(&reply.env.state, headers) {
        return reply.error(&e);
    }
    let param = |name: &str| {
        query?
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
    };
    let limit = match param("limit").map(str::parse::<usize>) {
        None => 20,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        Some(_) => {
            let e = AnthropicError::invalid_request(
                "limit: Input should be greater than or equal to 1 and less than or equal to 1000",
            );
            return reply.error(&e);
        }
    };
    let models = &reply.env.state.config().models;
    let position = |id: &str| models.iter().position(|m| m.id == id);
    let (from, to) = match (param("after_id"), param("before_id")) {
        (Some(after), _) => {
            let start = position(after).map_or(models.len(), |i| i + 1);
            (start, (start + limit).min(models.len()))
        }
        (None, Some(before)) => {
            let end = position(before).unwrap_or(0);
            (end.saturating_sub(limit), end)
        }
        (None, None) => (0, limit.min(models.len())),
    };
    let has_more = match (param("after_id"), param("before_id")) {
        (None, Some(_)) => from > 0,
        _ => to < models.len(),
    };
    let page = wire::model_page(&models[from..to], has_more);
    reply.json(page)
}

/// `GET /v1/models/{id}`.
pub fn get_model(env: Env, headers: &HeaderMap, id: &str) -> Response {
    let reply = Reply::new(env);
    if let Err(e) = admit_caller(&reply.env.state, headers) {
        return reply.error(&e);
    }
    let model = reply.env.state.slot(id).map(|s| wire::model(&s.config));
    match model {
        Some(body) => reply.json(body),
        None => reply.error(&AnthropicError::model_not_found(id)),
    }
}

/// Any other path or method, when the request speaks Anthropic.
pub fn not_found(env: Env, method_not_allowed: Option<&str>) -> Response {
    let reply = Reply::new(env);
    let e = match method_not_allowed {
        Some(m) => AnthropicError::method_not_allowed(m),
        None => AnthropicError::not_found(),
    };
    reply.error(&e)
}

/// Settles an admitted request's output tokens once: explicitly, or on drop (the client
/// went away while the response was being prepared) with `on_drop` tokens.
struct Settlement {
    settle: Option<sse::Settle>,
    on_drop: u64,
}

impl Settlement {
    fn settle(&mut self, output: u64) {
        if let Some(f) = self.settle.take() {
            f(output);
        }
    }

    /// Hands the settlement over (to a stream, which settles when it ends or is dropped).
    fn take(&mut self) -> Option<sse::Settle> {
        self.settle.take()
    }
}

impl Drop for Settlement {
    fn drop(&mut self) {
        let on_drop = self.on_drop;
        self.settle(on_drop);
    }
}

/// `POST /v1/messages`.
pub async fn messages(
    env: Env,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut reply = Reply::new(env);
    match messages_inner(&mut reply, headers, body).await {
        Ok((status, content_type, body)) => reply.finish(status, content_type, body),
        Err(e) => reply.error(&e),
    }
}

/// The fault draws of request `number`: one uniform draw per question, in a fixed order.
fn faulty(seed: u64, number: u64) -> impl FnMut(f64) -> bool {
    let mut rng = rng_for(seed ^ FAULT_SALT, number);
    move |p: f64| p > 0.0 && rng.random::<f64>() < p
}

async fn messages_inner(
    reply: &mut Reply,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, &'static str, Body), AnthropicError> {
    let env = reply.env.clone();
    admit_caller(&env.state, headers)?;
    let bytes = body_bytes(body)?;
    let req = request::parse(&bytes, Endpoint::Messages)?;
    let slot = env
        .state
        .slot(&req.model)
        .cloned()
        .ok_or_else(|| AnthropicError::model_not_found(&req.model))?;
    if req.max_tokens > u64::from(slot.config.max_tokens) {
        return Err(AnthropicError::max_tokens_too_large(
            req.max_tokens,
            slot.config.max_tokens,
            &slot.config.id,
        ));
    }
    let PromptTokens {
        total,
        prefix,
        prefix_hash: hash,
    } = prompt_tokens(slot.config.encoding, &req);
    if total > u64::from(slot.config.context_window) {
        return Err(AnthropicError::prompt_too_long(
            total,
            slot.config.context_window,
        ));
    }

    // Quota: cache reads are not charged to ITPM; max_tokens is reserved or not per rule.
    let now = env.clock.now();
    let hit = prefix > 0 && slot.cache_hit(hash, now);
    let mut tokens = Tokens {
        input: total - prefix,
        cache_creation: if hit { 0 } else { prefix },
        cache_read: if hit { prefix } else { 0 },
        output: 0,
    };
    let cost = AnthropicCost {
        input: tokens.input + tokens.cache_creation,
        max_tokens: req.max_tokens,
    };
    let faults = slot.config.faults;
    let decision = slot.quota.lock().try_admit(now, cost);
    let stats = &slot.stats;
    let snapshot = match decision {
        AnthropicDecision::Admitted(s) => s,
        AnthropicDecision::Throttled(t) => {
            let counter = match t.dimension {
                AnthropicDimension::Requests => &stats.throttled_requests,
                AnthropicDimension::InputTokens => &stats.throttled_input_tokens,
                AnthropicDimension::OutputTokens => &stats.throttled_output_tokens,
            };
            counter.fetch_add(1, Relaxed);
            hdr::rate_limit(
                env.switches,
                &t.snapshot,
                env.unix_at_epoch,
                now,
                &mut reply.h,
            );
            hdr::should_retry(faults.should_retry, &mut reply.h);
            let org = &env.state.config().organization_id;
            return Err(AnthropicError::rate_limited(&t, org, &slot.config.id));
        }
    };
    if prefix > 0 {
        slot.cache_touch(hash, now);
    }
    stats.admitted.fetch_add(1, Relaxed);
    stats.input_tokens_charged.fetch_add(cost.input, Relaxed);
    stats
        .cache_read_tokens
        .fetch_add(tokens.cache_read, Relaxed);
    hdr::rate_limit(
        env.switches,
        &snapshot,
        env.unix_at_epoch,
        now,
        &mut reply.h,
    );

    // Settles the output bucket exactly once: when the response ends, or with what was
    // generated so far when the client goes away first.
    let mut settlement = Settlement {
        settle: Some({
            let (slot, clock) = (slot.clone(), env.clock.clone());
            Box::new(move |output: u64| {
                slot.stats.output_tokens.fetch_add(output, Relaxed);
                slot.quota.lock().complete(clock.now(), cost, output);
            })
        }),
        on_drop: 0,
    };

    // Faults after admission (charged), in a fixed order from the seeded generator.
    let mut hit_fault = faulty(env.seed, env.number);
    if hit_fault(faults.stall) {
        stats.faults_stalled.fetch_add(1, Relaxed);
        tokio::time::sleep(faults.stall_for).await;
    }
    let injected = if hit_fault(faults.error_500) {
        stats.faults_500.fetch_add(1, Relaxed);
        Some(AnthropicError::internal())
    } else if hit_fault(faults.error_529) {
        stats.faults_529.fetch_add(1, Relaxed);
        Some(AnthropicError::overloaded())
    } else {
        None
    };
    if let Some(e) = injected {
        settlement.settle(0);
        hdr::should_retry(faults.should_retry, &mut reply.h);
        return Err(e);
    }
    let overloaded = hit_fault(faults.stream_overloaded);
    let dropped = hit_fault(faults.drop_mid_stream);

    let a = answer(
        env.seed,
        env.number,
        env.output_tokens,
        slot.config.encoding,
        &req,
    );
    tokens.output = a.tokens;
    let mut latency_rng = latency_rng(env.seed, env.number);
    let message_id = reply.ids.message();
    if req.stream {
        let events = sse::event_count(a.pieces.len());
        let overloaded = overloaded.then_some(faults.stream_overloaded_at);
        if overloaded.is_some() {
            stats.faults_overloaded_event.fetch_add(1, Relaxed);
        }
        let drop_after = (dropped && overloaded.is_none()).then_some(events / 2);
        if drop_after.is_some() {
            stats.faults_dropped.fetch_add(1, Relaxed);
        }
        let padding = env
            .state
            .config()
            .sse_padding
            .then(|| fnv1a(message_id.as_bytes()));
        let plan = StreamPlan {
            id: message_id,
            request_id: reply.request_id.clone(),
            model: slot.config.id.clone(),
            pieces: a.pieces,
            stop: a.stop,
            tokens,
            ttft: env.latency.ttft(&mut latency_rng),
            latency: env.latency,
            rng: latency_rng,
            overloaded,
            drop_after,
            settle: settlement.take(),
            padding,
        };
        reply
            .h
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        return Ok((
            StatusCode::OK,
            "text/event-stream; charset=utf-8",
            sse::body(plan),
        ));
    }
    settlement.on_drop = a.tokens;
    let wait = env.latency.total(
        u32::try_from(a.tokens).unwrap_or(u32::MAX),
        &mut latency_rng,
    );
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    settlement.settle(a.tokens);
    let env_ids = Envelope {
        id: &message_id,
        model: &slot.config.id,
    };
    let body = wire::message(env_ids, &a.text, &a.stop, tokens);
    Ok((StatusCode::OK, "application/json", Body::from(body)))
}
