//! The HTTP transport both connectors share: send a request built by the connector (URL and
//! credentials), read the headers into [`ResponseMeta`] through the configured header
//! profile, classify failures, decode successes.
//!
//! Connectors differ only in URLs and auth headers; everything about the wire format,
//! timeouts and error mapping lives here once. A connector supplies its headers through
//! [`Authorize`] and its URLs as arguments; the `*_at` methods of [`Transport`] do the rest.

use std::time::Duration;

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use reqwest::{RequestBuilder, Response, Url};

use super::config::{ApiKey, ConfigError};
use super::error::ConnectorError;
use super::error_map::{from_response, from_transport};
use super::stream::{chunk_stream, ChunkStream};
use super::types::{
    CompletionRequest, CompletionResponse, HealthStatus, ProviderMetadata, RateLimits,
};
use super::wire::{ChatBody, ChatResponse};
use crate::limiter::ResponseMeta;
use crate::provider::headers::HeaderProfile;

/// Longest wait for a health probe (the hub specification asks for under 5 s).
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);

/// A `reqwest::Client` suited to one provider: pooled keep-alive connections, `TCP_NODELAY`,
/// rustls (no system TLS library), connect timeout at most `timeout`.
pub fn default_client(timeout: Duration) -> Result<reqwest::Client, ConfigError> {
    reqwest::Client::builder()
        .connect_timeout(timeout.min(Duration::from_secs(30)))
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(90))
        .build()
        .map_err(|e| ConfigError::HttpClient {
            reason: e.to_string(),
        })
}

/// How a connector authenticates its requests: the one part of a request, besides its URL,
/// that differs between providers (header names, `Bearer` or not, extra headers).
pub(crate) trait Authorize: Sync {
    /// `builder` with the headers every request to the provider carries (the configured
    /// key included).
    fn authorize(&self, builder: RequestBuilder) -> RequestBuilder;

    /// `builder` for a chat completion: as [`authorize`](Self::authorize), except that
    /// `credential`, when given, is sent in place of the configured key. A credential that
    /// cannot be sent as a header value is the caller's error
    /// ([`ConnectorError::InvalidRequest`]); nothing is sent then.
    fn authorize_completion(
        &self,
        builder: RequestBuilder,
        credential: Option<&ApiKey>,
    ) -> Result<RequestBuilder, ConnectorError>;
}

/// Sends requests and turns responses into results. One per connector.
#[derive(Debug)]
pub(crate) struct Transport {
    client: reqwest::Client,
    profile: HeaderProfile,
    timeout: Duration,
    stream_usage: bool,
    /// The limits the last response that reported any said (`x-ratelimit-limit-requests`,
    /// `x-ratelimit-limit-tokens`); `u64::MAX` = never reported.
    observed_requests: AtomicU64,
    observed_tokens: AtomicU64,
}

impl Transport {
    /// A transport on `client` reading headers with `profile`; `timeout` per request (for
    /// streams: until headers, and per read); `stream_usage` asks streams for usage.
    pub fn new(
        client: reqwest::Client,
        profile: HeaderProfile,
        timeout: Duration,
        stream_usage: bool,
    ) -> Self {
        Self {
            client,
            profile,
            timeout,
            stream_usage,
            observed_requests: AtomicU64::new(u64::MAX),
            observed_tokens: AtomicU64::new(u64::MAX),
        }
    }

    /// The shared client (cheap to clone; clones share the connection pool).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The limits last reported by the provider.
    pub fn observed_limits(&self) -> RateLimits {
        let read = |a: &AtomicU64| Some(a.load(Ordering::Relaxed)).filter(|v| *v != u64::MAX);
        RateLimits {
            requests_per_minute: read(&self.observed_requests),
            tokens_per_minute: read(&self.observed_tokens),
        }
    }

    /// POSTs `req` as a non-streaming chat completion to `url`, authorised by `auth` (with
    /// `req.credential` when set); see [`complete`](Self::complete).
    pub async fn complete_at(
        &self,
        url: &Url,
        auth: &impl Authorize,
        req: &CompletionRequest,
    ) -> Result<CompletionResponse, ConnectorError> {
        let post =
            auth.authorize_completion(self.client.post(url.clone()), req.credential.as_ref())?;
        self.complete(post, req).await
    }

    /// POSTs `req` as a streaming chat completion to `url`, authorised by `auth` (with
    /// `req.credential` when set); see [`open_stream`](Self::open_stream).
    pub async fn open_stream_at(
        &self,
        url: &Url,
        auth: &impl Authorize,
        req: &CompletionRequest,
    ) -> Result<(ResponseMeta, ChunkStream), ConnectorError> {
        let post =
            auth.authorize_completion(self.client.post(url.clone()), req.credential.as_ref())?;
        self.open_stream(post, req).await
    }

    /// A `GET url` request carrying `auth`'s headers (not yet sent).
    pub fn get_at(&self, url: &Url, auth: &impl Authorize) -> RequestBuilder {
        auth.authorize(self.client.get(url.clone()))
    }

    /// Health probe: `GET url` with `auth`'s headers within `min(timeout, HEALTH_TIMEOUT)`;
    /// classified as in [`super::probe`] (never an error).
    pub async fn probe_at(
        &self,
        url: &Url,
        auth: &impl Authorize,
        timeout: Duration,
    ) -> HealthStatus {
        super::probe(self, self.get_at(url, auth), timeout).await
    }

    /// `metadata` with its rate limits replaced by the latest the provider reported (cached
    /// metadata is otherwise up to an hour old).
    pub fn with_observed_limits(&self, mut metadata: ProviderMetadata) -> ProviderMetadata {
        metadata.rate_limits = self.observed_limits();
        metadata
    }

    /// Sends a non-streaming chat completion.
    pub async fn complete(
        &self,
        request: RequestBuilder,
        req: &CompletionRequest,
    ) -> Result<CompletionResponse, ConnectorError> {
        let body = ChatBody::new(req, false, false);
        let (meta, bytes) = self.send(with_json(request, &body), self.timeout).await?;
        let mut wire: ChatResponse =
            serde_json::from_slice(&bytes).map_err(|e| ConnectorError::Parse {
                message: format!("chat completion: {e}"),
                meta: Box::new(meta),
            })?;
        let choices = wire.take_choices();
        Ok(CompletionResponse {
            id: std::mem::take(&mut wire.id),
            model: std::mem::take(&mut wire.model),
            finish_reason: choices.first().and_then(|c| c.finish_reason.clone()),
            choices,
            usage: wire.usage.map(Into::into).unwrap_or_default(),
            meta,
        })
    }

    /// Sends a streaming chat completion; returns once the response headers arrived.
    pub async fn open_stream(
        &self,
        request: RequestBuilder,
        req: &CompletionRequest,
    ) -> Result<(ResponseMeta, ChunkStream), ConnectorError> {
        let body = ChatBody::new(req, true, self.stream_usage);
        let timed_out = || ConnectorError::Timeout {
            message: format!("no response headers within {:?}", self.timeout),
        };
        let resp = tokio::time::timeout(self.timeout, with_json(request, &body).send())
            .await
            .map_err(|_| timed_out())?
            .map_err(|e| from_transport(&e))?;
        let meta = self.meta_of(&resp);
        if !resp.status().is_success() {
            return Err(tokio::time::timeout(self.timeout, error_of(resp, meta))
                .await
                .unwrap_or_else(|_| timed_out()));
        }
        let chunks = chunk_stream(resp.bytes_stream(), self.timeout, self.stream_usage);
        Ok((meta, chunks))
    }

    /// Sends `request` with a whole-request `timeout` and reads the whole body; a non-2xx
    /// status becomes its classified error.
    ///
    /// The deadline is one `tokio::time::timeout` around sending and reading the body
    /// (one timer on the stack, where reqwest's per-request timeout boxes one).
    pub async fn send(
        &self,
        request: RequestBuilder,
        timeout: Duration,
    ) -> Result<(ResponseMeta, Bytes), ConnectorError> {
        let exchange = async {
            let resp = request.send().await.map_err(|e| from_transport(&e))?;
            let meta = self.meta_of(&resp);
            if !resp.status().is_success() {
                return Err(error_of(resp, meta).await);
            }
            let bytes = resp.bytes().await.map_err(|e| from_transport(&e))?;
            Ok((meta, bytes))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(ConnectorError::Timeout {
                    message: format!("no complete response within {timeout:?}"),
                })
            })
    }

    fn meta_of(&self, resp: &Response) -> ResponseMeta {
        let meta = self
            .profile
            .parse(Some(resp.status().as_u16()), resp.headers());
        for (limit, slot) in [
            (meta.limit_requests, &self.observed_requests),
            (meta.limit_tokens, &self.observed_tokens),
        ] {
            if let Some(v) = limit.filter(|v| *v != u64::MAX) {
                slot.store(v, Ordering::Relaxed);
            }
        }
        meta
    }
}

/// `request` with `body` as its JSON body, serialised into one buffer sized for a typical
/// chat request (reqwest's `.json()` starts from an empty `Vec` and regrows it).
fn with_json(request: RequestBuilder, body: &ChatBody<'_>) -> RequestBuilder {
    let mut buf = Vec::with_capacity(1024);
    match serde_json::to_writer(&mut buf, body) {
        Ok(()) => request
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(buf),
        // Unreachable for these types (string keys, no fallible serialisers); reqwest's
        // own path turns the same failure into a request error.
        Err(_) => request.json(body),
    }
}

/// The classified error of a non-2xx response (classified by status alone if its body
/// cannot be read).
async fn error_of(resp: Response, meta: ResponseMeta) -> ConnectorError {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.unwrap_or_default();
    from_response(status, &headers, &body, meta)
}
