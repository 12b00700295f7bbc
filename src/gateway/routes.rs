//! The gateway's routes: OpenAI's (`/v1/chat/completions`, `/v1/completions`,
//! `/v1/embeddings`, `GET /v1/models`), Azure's
//! (`/openai/deployments/{d}/{chat/completions|completions|embeddings}?api-version=`),
//! and the operational ones (`/healthz`, `/readyz`, `/metrics`). Checks run in this
//! order, each answered in the called API's shape: route (404), method (405), gateway key
//! (401), body size (413), body (400), model or deployment (404); then admission and
//! forwarding ([`forward::run`]).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use serde_json::json;

use super::errors::{Family, GatewayError};
use super::forward::{self, Job};
use super::inspect::{inspect, with_include_usage};
use super::upstream::Operation;
use super::{GatewayState, MAX_WAIT_HEADER};
use crate::clock::nanos;
use crate::provider::admission::RequestSize;
use crate::selector::MostHeadroomSelector;

type Shared = Arc<GatewayState>;

/// The gateway's router over `state`.
pub fn app(state: Shared) -> Router {
    let openai = |op: Operation| -> MethodRouter<Shared> {
        post(move |State(s): State<Shared>, req: Request| async move {
            handle(s, Family::Openai, op, None, None, req).await
        })
        .fallback(method_not_allowed)
    };
    let azure = |op: Operation| -> MethodRouter<Shared> {
        post(
            move |State(s): State<Shared>,
                  Path(d): Path<String>,
                  RawQuery(q): RawQuery,
                  req: Request| async move {
                handle(
                    s,
                    Family::Azure,
                    op,
                    Some(d),
                    api_version(q.as_deref()),
                    req,
                )
                .await
            },
        )
        .fallback(method_not_allowed)
    };
    Router::new()
        .route("/v1/chat/completions", openai(Operation::Chat))
        .route("/v1/completions", openai(Operation::Completions))
        .route("/v1/embeddings", openai(Operation::Embeddings))
        .route("/v1/models", get(models).fallback(method_not_allowed))
        .route(
            "/openai/deployments/{deployment}/chat/completions",
            azure(Operation::Chat),
        )
        .route(
            "/openai/deployments/{deployment}/completions",
            azure(Operation::Completions),
        )
        .route(
            "/openai/deployments/{deployment}/embeddings",
            azure(Operation::Embeddings),
        )
        .route(
            "/healthz",
            get(|| async { "ok" }).fallback(method_not_allowed),
        )
        .route("/readyz", get(readyz).fallback(method_not_allowed))
        .route("/metrics", get(metrics).fallback(method_not_allowed))
        .fallback(no_route)
        .with_state(state)
}

/// The `api-version` of a query string, taken as written (API versions are dates and
/// words that need no percent-decoding).
fn api_version(query: Option<&str>) -> Option<String> {
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix("api-version="))
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> Response {
    GatewayError::method_not_allowed(Family::of_path(uri.path()), method.as_str(), uri.path())
        .into_response()
}

async fn no_route(method: Method, uri: axum::http::Uri) -> Response {
    GatewayError::no_route(Family::of_path(uri.path()), method.as_str(), uri.path()).into_response()
}

async fn readyz(State(s): State<Shared>) -> Response {
    if s.ready().await {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
    }
}

async fn metrics(State(s): State<Shared>) -> Response {
    (
        [("content-type", "text/plain; version=0.0.4")],
        s.metrics.prometheus_text(),
    )
        .into_response()
}

/// The gateway key a request presents: `Authorization: Bearer <key>`, else `api-key`.
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    bearer.or_else(|| {
        headers
            .get("api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    })
}

async fn models(State(s): State<Shared>, headers: HeaderMap) -> Response {
    if presented_key(&headers)
        .and_then(|k| s.tenant_of(k))
        .is_none()
    {
        return GatewayError::unauthorized(Family::Openai).into_response();
    }
    let data: Vec<_> = s
        .config
        .upstreams
        .iter()
        .flat_map(|u| u.models.iter().map(move |m| (m, &u.id)))
        .map(|(m, u)| json!({"id": m, "object": "model", "created": 0, "owned_by": u}))
        .collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

/// The upstream for a request of `size` to `model`: the only one serving it, or among
/// several the one whose limits have the most headroom for its estimate now (the Hub's
/// `most_headroom` rule; ties and unreadable stats keep file order).
async fn choose_upstream(s: &GatewayState, model: &str, size: &RequestSize) -> Option<usize> {
    let candidates = s.config.upstreams_for(model);
    if candidates.len() <= 1 {
        return candidates.first().copied();
    }
    let selector = MostHeadroomSelector::new(s.limiter.clone(), s.clock.clone());
    let mut best: Option<(Option<u64>, usize)> = None;
    for i in candidates {
        let u = &s.config.upstreams[i];
        let tokens = u.kind.admission_rule().tokens(size);
        let room = selector.headroom(&u.limit_key(model), tokens).await;
        if best.is_none_or(|(r, _)| room > r) {
            best = Some((room, i));
        }
    }
    best.map(|(_, i)| i)
}

async fn handle(
    s: Shared,
    family: Family,
    op: Operation,
    deployment: Option<String>,
    api_version: Option<String>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let Some(tenant) = presented_key(&parts.headers).and_then(|k| s.tenant_of(k)) else {
        return GatewayError::unauthorized(family).into_response();
    };
    if !s.accepting() {
        return GatewayError::unavailable(family).into_response();
    }
    let limit = s.config.front.body_limit;
    let declared = parts
        .headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return GatewayError::too_large_body(family, limit).into_response();
    }
    let body = match axum::body::to_bytes(Body::new(body), limit).await {
        Ok(b) => b,
        Err(_) => return GatewayError::too_large_body(family, limit).into_response(),
    };
    let seen = match inspect(family, op, &body, family == Family::Openai) {
        Ok(i) => i,
        Err(e) => return (*e).into_response(),
    };
    if family == Family::Azure && api_version.is_none() {
        return GatewayError::invalid(
            family,
            "Missing required query parameter: api-version",
            Some("api-version"),
        )
        .into_response();
    }
    let Some(model) = deployment.or(seen.model.clone()) else {
        return GatewayError::invalid(family, "you must provide a model parameter", Some("model"))
            .into_response();
    };
    let Some(upstream) = choose_upstream(&s, &model, &seen.size).await else {
        return GatewayError::model_not_found(family, &model).into_response();
    };
    let u = &s.config.upstreams[upstream];
    let t = &s.config.tenants[tenant];
    let mut max_wait = t.max_wait;
    if let Some(cap) = u.max_wait {
        max_wait = max_wait.min(cap);
    }
    if let Some(ms) = parts
        .headers
        .get(MAX_WAIT_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        max_wait = max_wait.min(Duration::from_millis(ms));
    }
    let rule = u.kind.admission_rule();
    let estimate = rule.estimate(&seen.size);
    let prompt_tokens = seen
        .size
        .prompt_tokens
        .max(seen.size.prompt_chars.div_ceil(4));
    let strip_usage = seen.stream && !seen.include_usage;
    let body = if strip_usage {
        with_include_usage(&body)
    } else {
        body
    };
    let job = Job {
        family,
        op,
        tenant,
        upstream,
        model,
        api_version,
        body,
        stream: seen.stream,
        strip_usage,
        estimate,
        prompt_tokens,
        deadline: s.clock.now().saturating_add(nanos(max_wait)),
    };
    forward::run(s.clone(), job).await
}
