//! One completion/embedding request from bytes to response, shared by the OpenAI and Azure
//! routes: authenticate, resolve the model or deployment, validate the body, charge the
//! quota at the admission estimate (or answer 429), inject configured faults, generate,
//! and answer with the provider's headers, non-streamed or as server-sent events.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::BytesRejection;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use rand::Rng;

use super::answer::{embeddings, generate};
use super::errors::{ApiError, Flavor};
use super::request::{self, Body as Req, Operation, ParsedRequest};
use super::respond::{self, Envelope, Usage};
use super::state::{Inner, MockState, Slot};
use super::stream::{self, StreamPlan};
use super::{auth, headers as hdr};
use crate::config::{FaultConfig, ModelConfig, ModelKind};
use crate::generation::{latency_rng, rng_for};
use crate::quota::Decision;

const FAULT_SALT: u64 = 0x6661_756c_7473;

/// Which route a request came in on.
#[derive(Debug, Clone, Copy)]
pub struct Route<'a> {
    /// Provider dialect.
    pub flavor: Flavor,
    /// Chat, legacy completion or embeddings.
    pub op: Operation,
    /// Azure: the deployment in the path.
    pub deployment: Option<&'a str>,
    /// Azure: the `api-version` query parameter.
    pub api_version: Option<&'a str>,
}

/// Serves one request; never panics on any input, every failure is a provider error.
pub async fn serve(
    state: &MockState,
    route: Route<'_>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let inner = &*state.0;
    let number = inner.requests.fetch_add(1, Relaxed);
    let id = hdr::RequestId::new(inner.config.seed, number);
    let mut h = hdr::Headers::new();
    match route.flavor {
        Flavor::OpenAi => hdr::openai_request_id(&inner.config.headers, &id, &mut h),
        Flavor::Azure => hdr::azure_ids(&inner.config.headers, &id, &inner.config.region, &mut h),
    }
    let (status, body) = match handle(inner, route, headers, body, number, &id, &mut h).await {
        Ok(reply) => reply,
        Err(e) => {
            h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            (e.status, Body::from(e.body))
        }
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = h.into_map();
    response
}

/// A successful reply: status and body (its headers are in the map being built).
type Reply = (StatusCode, Body);

fn json_reply(h: &mut hdr::Headers, body: Vec<u8>) -> Reply {
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    (StatusCode::OK, Body::from(body))
}

pub(crate) fn json(status: StatusCode, body: Vec<u8>) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// What the request is served by: a model's quota for an organization, or a deployment.
struct Target<'a> {
    model: &'a ModelConfig,
    model_index: usize,
    slot: &'a Slot,
    faults: FaultConfig,
    org: usize,
}

async fn handle(
    inner: &Inner,
    route: Route<'_>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    number: u64,
    id: &hdr::RequestId,
    h: &mut hdr::Headers,
) -> Result<Reply, ApiError> {
    let switches = &inner.config.headers;
    let org = match route.flavor {
        Flavor::OpenAi => auth::openai(inner, headers)?,
        Flavor::Azure => auth::azure(inner, headers).map(|()| 0)?,
    };
    let azure_target = match route.flavor {
        Flavor::Azure => Some(azure_target(inner, route)?),
        Flavor::OpenAi => None,
    };
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::body_too_large(inner.config.max_body_bytes)
        } else {
            ApiError::invalid_json()
        }
    })?;
    let parsed = request::parse(&bytes, route.op, route.flavor == Flavor::OpenAi)?;
    let target = match azure_target {
        Some(t) => t,
        None => openai_target(inner, route.op, &parsed, org)?,
    };

    // Faults are drawn from the seeded generator in a fixed order. An exhausted billing
    // quota is refused before the rate limits, uncharged and without retry advice.
    let mut fault_rng = rng_for(inner.config.seed ^ FAULT_SALT, number);
    let mut hit = |p: f64| p > 0.0 && fault_rng.random::<f64>() < p;
    let f = target.faults;
    if hit(f.insufficient_quota) {
        target
            .slot
            .stats
            .faults_insufficient_quota
            .fetch_add(1, Relaxed);
        return Err(ApiError::insufficient_quota());
    }

    // Quota: charge the admission estimate, or answer 429.
    let default_completion = match route.flavor {
        Flavor::OpenAi => u64::from(target.model.default_max_tokens),
        Flavor::Azure => 16,
    };
    let completion_estimate = parsed
        .params()
        .map_or(0, |p| p.max_tokens.map_or(default_completion, u64::from));
    let estimate = parsed.prompt_estimate() + completion_estimate * parsed.choices();
    let decision = target
        .slot
        .quota
        .lock()
        .try_admit(inner.clock.now(), estimate);
    let stats = &target.slot.stats;
    let admission = match decision {
        Decision::Admitted(a) => a,
        Decision::Throttled(t) => {
            let counter = match t.dimension {
                crate::quota::Dimension::Requests => &stats.throttled_requests,
                crate::quota::Dimension::Tokens => &stats.throttled_tokens,
            };
            counter.fetch_add(1, Relaxed);
            hdr::should_retry(target.faults.should_retry, h);
            return Err(match route.flavor {
                Flavor::OpenAi => {
                    hdr::openai_rate_limit(switches, &t.snapshot, h);
                    if let Some(wait) = t.retry_after {
                        hdr::retry_after(switches, wait, h);
                    }
                    let org_id = &inner.config.organizations[target.org].id;
                    ApiError::openai_rate_limited(&t, &target.model.id, org_id)
                }
                Flavor::Azure => {
                    // A request larger than the deployment's TPM is told to wait for the
                    // minute's reset, as Azure's gateway does; it will be refused again.
                    let wait = t.retry_after.unwrap_or(t.snapshot.reset_tokens);
                    hdr::azure_rate_limit(switches, &t.snapshot, h);
                    hdr::retry_after(switches, wait, h);
                    hdr::azure_throttle(switches, t.dimension, t.snapshot.reset_tokens, h);
                    let version = route.api_version.unwrap_or_default();
                    ApiError::azure_rate_limited(&t, azure_operation(route.op), version, wait)
                }
            });
        }
    };
    stats.admitted.fetch_add(1, Relaxed);
    stats.tokens_charged.fetch_add(estimate, Relaxed);
    match route.flavor {
        Flavor::OpenAi => hdr::openai_rate_limit(switches, &admission.snapshot, h),
        Flavor::Azure => hdr::azure_rate_limit(switches, &admission.snapshot, h),
    }

    // The other faults, after admission (so they are charged).
    if hit(f.stall) {
        stats.faults_stalled.fetch_add(1, Relaxed);
        tokio::time::sleep(f.stall_for).await;
    }
    let injected = if hit(f.error_500) {
        stats.faults_500.fetch_add(1, Relaxed);
        Some(ApiError::server_error())
    } else if hit(f.error_503) {
        stats.faults_503.fetch_add(1, Relaxed);
        Some(ApiError::overloaded(route.flavor))
    } else {
        None
    };
    if let Some(e) = injected {
        hdr::should_retry(f.should_retry, h);
        return Err(e);
    }
    let drop_stream = hit(f.drop_mid_stream);

    let mut latency_rng = latency_rng(inner.config.seed, number);
    let org_id = &inner.config.organizations[target.org].id;
    match parsed.body {
        Req::Embedding { .. } => {
            let (body, used) = embeddings(inner, target.model, &parsed);
            stats.tokens_used.fetch_add(u64::from(used), Relaxed);
            let latency = inner.latency.ttft(&mut latency_rng);
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            if route.flavor == Flavor::OpenAi {
                hdr::openai_meta(switches, org_id, latency, h);
            }
            Ok(json_reply(h, body))
        }
        Req::Chat { .. } | Req::Completion { .. } => {
            let generated = generate(inner, target.model, &parsed, number);
            let usage = Usage::new(
                generated.prompt_tokens,
                generated.completion_tokens,
                route.op == Operation::Chat,
            );
            stats
                .tokens_used
                .fetch_add(u64::from(usage.total_tokens), Relaxed);
            let legacy = route.op == Operation::Completion;
            let prefix = if legacy { "cmpl-" } else { "chatcmpl-" };
            let mut completion_id = String::with_capacity(prefix.len() + 29);
            completion_id.push_str(prefix);
            id.push_alnum(29, &mut completion_id);
            let fingerprint = &inner.fingerprints[target.model_index];
            let (stream, include_usage) = parsed
                .params()
                .map_or((false, false), |p| (p.stream, p.include_usage));
            if stream {
                let ttft = inner.latency.ttft(&mut latency_rng);
                if route.flavor == Flavor::OpenAi {
                    hdr::openai_meta(switches, org_id, ttft, h);
                }
                let events = generated
                    .choices
                    .iter()
                    .map(|c| c.pieces.len())
                    .sum::<usize>();
                let plan = StreamPlan {
                    legacy,
                    id: completion_id,
                    created: inner.unix_now(),
                    model: target.model.id.clone(),
                    fingerprint: fingerprint.clone(),
                    choices: generated.choices,
                    usage: include_usage.then_some(usage),
                    ttft,
                    latency: inner.latency,
                    rng: latency_rng,
                    drop_after: drop_stream.then_some(1 + events / 2),
                };
                if drop_stream {
                    stats.faults_dropped.fetch_add(1, Relaxed);
                }
                h.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/event-stream; charset=utf-8"),
                );
                h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                return Ok((StatusCode::OK, stream::body(plan)));
            }
            let longest = generated
                .choices
                .iter()
                .map(|c| c.tokens)
                .max()
                .unwrap_or(0);
            let latency = inner.latency.total(longest, &mut latency_rng);
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            if route.flavor == Flavor::OpenAi {
                hdr::openai_meta(switches, org_id, latency.max(Duration::from_millis(1)), h);
            }
            let env = Envelope {
                id: &completion_id,
                created: inner.unix_now(),
                model: &target.model.id,
                fingerprint,
            };
            let body = if legacy {
                respond::completion(&env, &generated.choices, usage)
            } else {
                respond::chat(&env, &generated.choices, usage)
            };
            Ok(json_reply(h, body))
        }
    }
}

fn azure_operation(op: Operation) -> &'static str {
    match op {
        Operation::Chat => "ChatCompletions_Create",
        Operation::Completion => "Completions_Create",
        Operation::Embedding => "Embeddings_Create",
    }
}

fn kind_serves(kind: ModelKind, op: Operation) -> bool {
    matches!(
        (kind, op),
        (ModelKind::Chat, Operation::Chat | Operation::Completion)
            | (ModelKind::Embedding, Operation::Embedding)
    )
}

fn azure_target<'a>(inner: &'a Inner, route: Route<'_>) -> Result<Target<'a>, ApiError> {
    if route.api_version.is_none_or(str::is_empty) {
        return Err(ApiError::not_found(Flavor::Azure, "POST", ""));
    }
    let index = route
        .deployment
        .and_then(|d| inner.deployments.get(d))
        .copied()
        .ok_or_else(ApiError::deployment_not_found)?;
    let deployment = &inner.config.deployments[index];
    let model_index = inner
        .models
        .get(&deployment.model)
        .copied()
        .ok_or_else(ApiError::deployment_not_found)?;
    let model = &inner.config.models[model_index];
    if !kind_serves(model.kind, route.op) {
        let op = match route.op {
            Operation::Chat => "chatCompletion",
            Operation::Completion => "completion",
            Operation::Embedding => "embeddings",
        };
        return Err(ApiError::operation_not_supported(op, &model.id));
    }
    Ok(Target {
        model,
        model_index,
        slot: inner.azure_slot(index),
        faults: deployment.faults,
        org: 0,
    })
}

fn openai_target<'a>(
    inner: &'a Inner,
    op: Operation,
    parsed: &ParsedRequest,
    org: usize,
) -> Result<Target<'a>, ApiError> {
    let name = parsed.model.as_deref().unwrap_or_default();
    let model_index = inner
        .models
        .get(name)
        .copied()
        .ok_or_else(|| ApiError::model_not_found(name))?;
    let model = &inner.config.models[model_index];
    if !kind_serves(model.kind, op) {
        let path = match op {
            Operation::Chat => "v1/chat/completions",
            Operation::Completion => "v1/completions",
            Operation::Embedding => "v1/embeddings",
        };
        return Err(ApiError::wrong_model_kind(name, path));
    }
    Ok(Target {
        model,
        model_index,
        slot: inner.openai_slot(org, model_index),
        faults: model.faults,
        org,
    })
}
