//! The HTTP surface: OpenAI routes under `/v1`, Azure routes under `/openai/deployments`,
//! Anthropic's under `/v1/messages` (and `/v1/models` for requests carrying
//! `anthropic-version` or `x-api-key`; handlers in [`crate::provider::anthropic`]), admin
//! routes under `/_mock` and `/metrics`; unknown paths and wrong methods get the provider's
//! own 404/405 JSON.

mod admin;
mod answer;
mod auth;
pub mod errors;
pub mod headers;
mod pipeline;
pub mod request;
mod respond;
mod state;
mod stream;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, RawQuery, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::sync::atomic::Ordering;

/// The Anthropic handlers and what they need.
mod anthropic {
    pub use crate::provider::anthropic::headers::Switches;
    pub use crate::provider::anthropic::serve::{
        count_tokens, get_model, is_anthropic, list_models, messages, not_found, Env,
    };
}

pub use state::{KeyStats, MockState, Slot};

use errors::{ApiError, Flavor};
use pipeline::{json, serve, Route};
use request::Operation;

/// The mock's router over `state`, for serving or for in-process `oneshot` tests.
pub fn app(state: MockState) -> Router {
    let limit = state.config().max_body_bytes;
    Router::new()
        .route("/v1/chat/completions", post(openai_chat))
        .route("/v1/completions", post(openai_completion))
        .route("/v1/embeddings", post(openai_embedding))
        .route("/v1/messages", post(anthropic_messages))
        .route("/v1/messages/count_tokens", post(anthropic_count_tokens))
        .route("/v1/models", get(list_models))
        .route("/v1/models/{id}", get(get_model))
        .route("/openai/models", get(azure_models))
        .route(
            "/openai/deployments/{deployment}/chat/completions",
            post(azure_chat),
        )
        .route(
            "/openai/deployments/{deployment}/completions",
            post(azure_completion),
        )
        .route(
            "/openai/deployments/{deployment}/embeddings",
            post(azure_embedding),
        )
        .route("/_mock/stats", get(stats))
        .route("/_mock/reset", post(reset))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

type BodyResult = Result<Bytes, BytesRejection>;

/// The request's headers and its body (collected under the router's body limit), taken
/// apart without copying the headers (the `HeaderMap` extractor clones them).
async fn headers_and_body(request: Request) -> (HeaderMap, BodyResult) {
    let (mut parts, body) = request.into_parts();
    let mut only_body = Request::new(body);
    // The body limit travels in the extensions.
    *only_body.extensions_mut() = std::mem::take(&mut parts.extensions);
    (parts.headers, Bytes::from_request(only_body, &()).await)
}

fn openai(op: Operation) -> Route<'static> {
    Route {
        flavor: Flavor::OpenAi,
        op,
        deployment: None,
        api_version: None,
    }
}

async fn openai_chat(State(s): State<MockState>, r: Request) -> Response {
    let (h, body) = headers_and_body(r).await;
    serve(&s, openai(Operation::Chat), &h, body).await
}

async fn openai_completion(State(s): State<MockState>, r: Request) -> Response {
    let (h, body) = headers_and_body(r).await;
    serve(&s, openai(Operation::Completion), &h, body).await
}

async fn openai_embedding(State(s): State<MockState>, r: Request) -> Response {
    let (h, body) = headers_and_body(r).await;
    serve(&s, openai(Operation::Embedding), &h, body).await
}

/// The `api-version` query parameter (first occurrence, not percent-decoded: versions are
/// plain `YYYY-MM-DD[-preview]`).
fn api_version(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("api-version="))
}

async fn azure(
    s: MockState,
    op: Operation,
    deployment: String,
    query: Option<String>,
    r: Request,
) -> Response {
    let (h, body) = headers_and_body(r).await;
    let route = Route {
        flavor: Flavor::Azure,
        op,
        deployment: Some(&deployment),
        api_version: api_version(query.as_deref()),
    };
    serve(&s, route, &h, body).await
}

async fn azure_chat(
    State(s): State<MockState>,
    Path(d): Path<String>,
    RawQuery(q): RawQuery,
    r: Request,
) -> Response {
    azure(s, Operation::Chat, d, q, r).await
}

async fn azure_completion(
    State(s): State<MockState>,
    Path(d): Path<String>,
    RawQuery(q): RawQuery,
    r: Request,
) -> Response {
    azure(s, Operation::Completion, d, q, r).await
}

async fn azure_embedding(
    State(s): State<MockState>,
    Path(d): Path<String>,
    RawQuery(q): RawQuery,
    r: Request,
) -> Response {
    azure(s, Operation::Embedding, d, q, r).await
}

fn error(e: ApiError) -> Response {
    json(e.status, e.body.into_bytes())
}

/// What the Anthropic handlers need from the server, for the next request.
fn anthropic_env(s: &MockState) -> anthropic::Env {
    let inner = &*s.0;
    let c = &inner.config;
    anthropic::Env {
        state: inner.anthropic.clone(),
        clock: inner.clock.clone(),
        unix_at_epoch: inner.unix_at_epoch,
        seed: c.seed,
        number: inner.requests.fetch_add(1, Ordering::Relaxed),
        latency: inner.latency,
        output_tokens: c.output_tokens,
        switches: anthropic::Switches {
            rate_limit: c.headers.rate_limit,
            retry_after: c.headers.retry_after,
            request_id: c.headers.request_id,
            round_token_remaining: c.anthropic.round_token_remaining,
        },
    }
}

async fn anthropic_messages(State(s): State<MockState>, r: Request) -> Response {
    let (h, body) = headers_and_body(r).await;
    anthropic::messages(anthropic_env(&s), &h, body).await
}

async fn anthropic_count_tokens(State(s): State<MockState>, r: Request) -> Response {
    let (h, body) = headers_and_body(r).await;
    anthropic::count_tokens(anthropic_env(&s), &h, body).await
}

async fn list_models(State(s): State<MockState>, RawQuery(q): RawQuery, h: HeaderMap) -> Response {
    if anthropic::is_anthropic(&h) {
        return anthropic::list_models(anthropic_env(&s), &h, q.as_deref());
    }
    match auth::openai(&s.0, &h) {
        Ok(_) => json(StatusCode::OK, respond::model_list(&s.config().models)),
        Err(e) => error(e),
    }
}

async fn get_model(State(s): State<MockState>, Path(id): Path<String>, h: HeaderMap) -> Response {
    if anthropic::is_anthropic(&h) {
        return anthropic::get_model(anthropic_env(&s), &h, &id);
    }
    if let Err(e) = auth::openai(&s.0, &h) {
        return error(e);
    }
    match s.config().models.iter().find(|m| m.id == id) {
        Some(m) => json(StatusCode::OK, respond::model(m)),
        None => error(ApiError::model_not_found(&id)),
    }
}

/// Azure's `GET /openai/models?api-version=…` (what health checks call): the key is
/// checked as on the deployment routes, then `api-version` (404 without it).
async fn azure_models(State(s): State<MockState>, RawQuery(q): RawQuery, h: HeaderMap) -> Response {
    if let Err(e) = auth::azure(&s.0, &h) {
        return error(e);
    }
    if api_version(q.as_deref()).is_none_or(str::is_empty) {
        return error(ApiError::not_found(Flavor::Azure, "GET", "/openai/models"));
    }
    json(
        StatusCode::OK,
        respond::azure_model_list(&s.config().models),
    )
}

async fn stats(State(s): State<MockState>) -> Response {
    json(StatusCode::OK, admin::stats_json(&s))
}

async fn reset(State(s): State<MockState>) -> Response {
    s.reset();
    json(StatusCode::OK, br#"{"reset":true}"#.to_vec())
}

async fn metrics(State(s): State<MockState>) -> Response {
    let mut r = admin::metrics_text(&s).into_response();
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

fn flavor_of(uri: &Uri) -> Flavor {
    if uri.path().starts_with("/openai/") {
        Flavor::Azure
    } else {
        Flavor::OpenAi
    }
}

/// Whether an unmatched request gets Anthropic's error shape.
fn speaks_anthropic(uri: &Uri, h: &HeaderMap) -> bool {
    uri.path().starts_with("/v1/messages") || anthropic::is_anthropic(h)
}

async fn not_found(State(s): State<MockState>, method: Method, uri: Uri, h: HeaderMap) -> Response {
    if speaks_anthropic(&uri, &h) {
        return anthropic::not_found(anthropic_env(&s), None);
    }
    error(ApiError::not_found(
        flavor_of(&uri),
        method.as_str(),
        uri.path(),
    ))
}

async fn method_not_allowed(
    State(s): State<MockState>,
    method: Method,
    uri: Uri,
    h: HeaderMap,
) -> Response {
    if speaks_anthropic(&uri, &h) {
        return anthropic::not_found(anthropic_env(&s), Some(method.as_str()));
    }
    error(ApiError::method_not_allowed(method.as_str(), uri.path()))
}
