//! Forwarding to an upstream: the request as the client sent it (the body's bytes, not a
//! re-encoding), to the upstream's URL with the upstream's key, over a [`Transport`] —
//! real HTTP ([`HttpTransport`]) or an in-process router ([`RouterTransport`], for tests
//! under paused time and for embedding) — and how an attempt ended, in the lifecycle's
//! terms.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use tower::ServiceExt as _;

use super::config::{Upstream, UpstreamKind};
use crate::lifecycle::Event;
use crate::limiter::Cost;
use crate::limiter::{ErrorInfo, ResponseMeta};
use crate::provider::{error_from_response, error_from_transport};

/// An upstream attempt that got no response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TransportError {
    /// What failed (never containing a key).
    pub message: String,
    /// Whether it was the attempt's timeout.
    pub timeout: bool,
}

impl TransportError {
    /// The neutral view: retryable, not a rate limit, no status.
    pub fn error_info(&self) -> ErrorInfo {
        ErrorInfo {
            retryable: true,
            rate_limited: false,
            retry_after: None,
            status: None,
        }
    }
}

/// Sends one request upstream and returns the response head with a streaming body.
#[async_trait]
pub trait Transport: Send + Sync + fmt::Debug {
    /// Sends `request`; gives up after `timeout` until the response head arrives.
    async fn send(
        &self,
        request: Request<Bytes>,
        timeout: Duration,
    ) -> Result<Response<Body>, TransportError>;
}

/// Real HTTP through one shared `reqwest` client (connection pool per upstream host).
#[derive(Debug, Clone)]
pub struct HttpTransport {
    client: reqwest::Client,
}

impl HttpTransport {
    /// A transport with its own client (no redirects, pooled connections).
    pub fn new() -> Result<Self, TransportError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(256)
            .build()
            .map_err(|e| TransportError {
                message: e.to_string(),
                timeout: false,
            })?;
        Ok(Self { client })
    }
}

#[async_trait]
impl Transport for HttpTransport {
    async fn send(
        &self,
        request: Request<Bytes>,
        timeout: Duration,
    ) -> Result<Response<Body>, TransportError> {
        let (parts, body) = request.into_parts();
        let send = self
            .client
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body)
            .send();
        // The timeout bounds the wait for the response head only: a stream may then run
        // as long as the upstream keeps sending.
        let sent = tokio::time::timeout(timeout, send)
            .await
            .map_err(|_| TransportError {
                message: "the upstream did not answer in time".into(),
                timeout: true,
            })?
            .map_err(|e| {
                let c = error_from_transport(&e);
                TransportError {
                    message: c.to_string(),
                    timeout: e.is_timeout(),
                }
            })?;
        let mut out = Response::builder().status(sent.status());
        if let Some(h) = out.headers_mut() {
            *h = sent.headers().clone();
        }
        out.body(Body::from_stream(sent.bytes_stream()))
            .map_err(|e| TransportError {
                message: e.to_string(),
                timeout: false,
            })
    }
}

/// An in-process upstream: requests go to `router` directly (its paths as in the URL).
#[derive(Debug, Clone)]
pub struct RouterTransport {
    router: axum::Router,
}

impl RouterTransport {
    /// Sends to `router`.
    pub fn new(router: axum::Router) -> Self {
        Self { router }
    }
}

#[async_trait]
impl Transport for RouterTransport {
    async fn send(
        &self,
        request: Request<Bytes>,
        timeout: Duration,
    ) -> Result<Response<Body>, TransportError> {
        let call = self.router.clone().oneshot(request.map(Body::from));
        match tokio::time::timeout(timeout, call).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(never)) => match never {},
            Err(_) => Err(TransportError {
                message: "the upstream did not answer in time".into(),
                timeout: true,
            }),
        }
    }
}

/// What the client called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `chat/completions`.
    Chat,
    /// `completions` (legacy).
    Completions,
    /// `embeddings`.
    Embeddings,
}

impl Operation {
    /// The path below the API's root.
    pub fn path(self) -> &'static str {
        match self {
            Self::Chat => "chat/completions",
            Self::Completions => "completions",
            Self::Embeddings => "embeddings",
        }
    }
}

/// The upstream request for `body` (sent as is) on `op` of `model` (a deployment, for
/// Azure); `api_version` is the client's, else the upstream's.
pub fn build_request(
    upstream: &Upstream,
    op: Operation,
    model: &str,
    api_version: Option<&str>,
    body: Bytes,
) -> Result<Request<Bytes>, TransportError> {
    let url = match upstream.kind {
        UpstreamKind::Openai => format!("{}/{}", upstream.url, op.path()),
        UpstreamKind::Azure => format!(
            "{}/openai/deployments/{}/{}?api-version={}",
            upstream.url,
            encode(model),
            op.path(),
            encode(api_version.unwrap_or(&upstream.api_version)),
        ),
    };
    let key = upstream.api_key.expose();
    let (name, value) = match upstream.kind {
        UpstreamKind::Openai => (header::AUTHORIZATION, format!("Bearer {key}")),
        UpstreamKind::Azure => (header::HeaderName::from_static("api-key"), key.to_owned()),
    };
    let mut value = HeaderValue::from_str(&value).map_err(|_| TransportError {
        message: format!(
            "upstream `{}`: its key is not a valid header value",
            upstream.id
        ),
        timeout: false,
    })?;
    value.set_sensitive(true);
    Request::builder()
        .method(Method::POST)
        .uri(url)
        .header(header::CONTENT_TYPE, "application/json")
        .header(name, value)
        .body(body)
        .map_err(|e| TransportError {
            message: format!("upstream `{}`: {e}", upstream.id),
            timeout: false,
        })
}

/// Percent-encodes what is not unreserved in a path segment or query value.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A whole (non-streamed) upstream answer.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Its status.
    pub status: StatusCode,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body.
    pub body: Bytes,
}

/// How an attempt that got the whole `reply` ended: success with the reported usage
/// (its total and, when reported, prompt and completion tokens apart; else
/// `fallback_tokens` in total), or a failure classified as the connectors classify it.
/// `meta` is the reply's header view.
pub fn ended(reply: &Reply, meta: ResponseMeta, fallback_tokens: u64) -> Event {
    if reply.status.is_success() {
        Event::Responded {
            usage: usage_cost(&reply.body).unwrap_or(Cost::tokens(fallback_tokens)),
            meta,
        }
    } else {
        let e = error_from_response(reply.status.as_u16(), &reply.headers, &reply.body, meta);
        Event::Failed {
            error: e.error_info(),
            meta: e.meta().copied().unwrap_or(meta),
        }
    }
}

/// The `usage` object of an OpenAI-shaped body or stream chunk.
#[derive(Debug, Clone, Copy, serde::Deserialize)]
pub struct Usage {
    /// Prompt (input) tokens, when reported.
    #[serde(default)]
    pub prompt_tokens: Option<u64>,
    /// Completion (output) tokens, when reported.
    #[serde(default)]
    pub completion_tokens: Option<u64>,
    /// All tokens.
    pub total_tokens: u64,
}

impl Usage {
    /// As the limiter counts it: the total, and input and output apart when both are known.
    pub fn cost(&self) -> Cost {
        Cost {
            input_tokens: self
                .prompt_tokens
                .filter(|_| self.completion_tokens.is_some()),
            output_tokens: self
                .completion_tokens
                .filter(|_| self.prompt_tokens.is_some()),
            ..Cost::tokens(self.total_tokens)
        }
    }
}

/// The usage a JSON body reports, as the limiter counts it.
pub fn usage_cost(body: &[u8]) -> Option<Cost> {
    #[derive(serde::Deserialize)]
    struct WithUsage {
        usage: Usage,
    }
    serde_json::from_slice::<WithUsage>(body)
        .ok()
        .map(|w| w.usage.cost())
}

/// Upstream response headers passed to the client (request ids, processing time);
/// the upstream's rate-limit headers are not: they describe the upstream key, which
/// every tenant shares.
pub const PASSED_HEADERS: &[&str] = &[
    "x-request-id",
    "apim-request-id",
    "openai-processing-ms",
    "openai-version",
    "x-ms-region",
];

/// Headers of a failed upstream answer passed on to the client (its retry advice).
pub const PASSED_ERROR_HEADERS: &[&str] = &["retry-after", "retry-after-ms", "x-should-retry"];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::config::Secret;

    fn upstream(kind: UpstreamKind) -> Upstream {
        Upstream {
            id: "u".into(),
            kind,
            url: "http://h:1/base".into(),
            api_key: Secret::new("sk-1"),
            models: vec!["m".into()],
            api_version: "2024-10-21".into(),
            timeout: Duration::from_secs(1),
            max_wait: None,
            max_retries: 0,
        }
    }

    #[test]
    fn requests_go_to_the_upstreams_path_with_its_key_and_the_body_unchanged() {
        let body = Bytes::from_static(b"{\"model\":\"m\",  \"x\":1}");
        let r = build_request(
            &upstream(UpstreamKind::Openai),
            Operation::Chat,
            "m",
            None,
            body.clone(),
        )
        .expect("builds");
        assert_eq!(r.uri(), "http://h:1/base/chat/completions");
        assert_eq!(r.headers()["authorization"], "Bearer sk-1");
        assert_eq!(r.body(), &body);
        let r = build_request(
            &upstream(UpstreamKind::Azure),
            Operation::Embeddings,
            "my dep",
            Some("2025-01-01"),
            body,
        )
        .expect("builds");
        assert_eq!(
            r.uri(),
            "http://h:1/base/openai/deployments/my%20dep/embeddings?api-version=2025-01-01"
        );
        assert_eq!(r.headers()["api-key"], "sk-1");
        assert!(r.headers().get("authorization").is_none());
    }

    #[test]
    fn usage_is_read_and_errors_are_classified() {
        let ok = Reply {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::from_static(b"{\"usage\":{\"prompt_tokens\":3,\"total_tokens\":9}}"),
        };
        // Without completion tokens the split is unknown: the total alone.
        assert!(matches!(
            ended(&ok, ResponseMeta::default(), 50),
            Event::Responded { usage, .. } if usage == Cost::tokens(9)
        ));
        let split = Reply {
            body: Bytes::from_static(
                b"{\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":6,\"total_tokens\":9}}",
            ),
            ..ok.clone()
        };
        assert!(matches!(
            ended(&split, ResponseMeta::default(), 50),
            Event::Responded { usage, .. } if usage == Cost::tokens(9).with_split(3, 6)
        ));
        let no_usage = Reply {
            body: Bytes::from_static(b"{}"),
            ..ok.clone()
        };
        assert!(matches!(
            ended(&no_usage, ResponseMeta::default(), 50),
            Event::Responded { usage, .. } if usage == Cost::tokens(50)
        ));
        let throttled = Reply {
            status: StatusCode::TOO_MANY_REQUESTS,
            body: Bytes::from_static(b"{\"error\":{\"message\":\"Rate limit reached. Please try again in 2s.\",\"type\":\"requests\",\"code\":\"rate_limit_exceeded\"}}"),
            ..ok
        };
        match ended(&throttled, ResponseMeta::default(), 50) {
            Event::Failed { error, .. } => {
                assert!(error.rate_limited && error.retryable);
                assert_eq!(error.status, Some(429));
            }
            other => panic!("{other:?}"),
        }
    }
}
