//! [`AnthropicConnector`]: the Anthropic Messages API (`POST /v1/messages`, streamed or
//! not; `GET /v1/models` for metadata and health), everything Anthropic-specific in this
//! folder: configuration ([`config`]), the JSON bodies (`wire`), the named SSE events
//! ([`sse`]), error mapping (`errors`), rate-limit headers → [`ResponseMeta`] ([`headers`])
//! and the admission rule ([`ADMISSION`]).
//!
//! Requests carry `x-api-key`, `anthropic-version` (and `anthropic-beta` when configured).
//! Usage is reported as rate limits count it: input = `input_tokens +
//! cache_creation_input_tokens` (cache reads are not counted by ITPM), output = generated
//! tokens; a stream's usage chunk comes from the cumulative `message_delta` usage.

pub mod config;
mod errors;
pub mod headers;
pub mod sse;
mod wire;

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{Stream, StreamExt};
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::{RequestBuilder, Response, Url};

use super::admission::AdmissionRule;
use super::config::{ConfigError, ProviderConfig};
use super::error::ConnectorError;
use super::error_map::{error_chain, from_transport};
use super::metadata::{model_info, MetadataCache, METADATA_TTL};
use super::openai::{credential_value, join, sensitive};
use super::sse::{SseEvent, SseParser};
use super::stream::ChunkStream;
use super::types::{
    Choice, CompletionRequest, CompletionResponse, HealthStatus, Message, ProviderMetadata,
    RateLimits, StreamChunk,
};
use super::{check_config, default_client, LLMProvider, HEALTH_TIMEOUT};
use crate::clock::Clock;
use crate::limiter::ResponseMeta;

pub use config::AnthropicConfig;
pub use sse::EventDecoder;

/// Anthropic's admission estimate: the prompt estimate as input tokens and `max_tokens` as
/// output tokens (the API reserves `max_tokens` against OTPM at admission under the older
/// documented rule; with output charged as generated, set the limiter's `charge_at.output
/// = "usage"`). `max_tokens` is required by the API, so the default budget is never used
/// for a request the connector sends (it refuses one without it); 0.
pub const ADMISSION: AdmissionRule = AdmissionRule {
    default_max_tokens: 0,
};

/// A connector to the Anthropic Messages API. Cheap to clone: clones share the HTTP
/// client, configuration and metadata cache.
#[derive(Clone)]
pub struct AnthropicConnector {
    inner: Arc<Inner>,
}

struct Inner {
    config: AnthropicConfig,
    client: reqwest::Client,
    messages_url: Url,
    models_url: Url,
    /// `x-api-key` (sensitive), `anthropic-version`, `anthropic-beta`.
    headers: Vec<(HeaderName, HeaderValue)>,
    metadata: MetadataCache,
    /// The limits last reported (`u64::MAX` = never).
    observed_requests: AtomicU64,
    observed_tokens: AtomicU64,
}

const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

impl AnthropicConnector {
    /// A connector with its own HTTP client. Validates `config`; `clock` times the
    /// metadata cache.
    pub fn new(config: AnthropicConfig, clock: Arc<dyn Clock>) -> Result<Self, ConfigError> {
        let client = default_client(config.timeout)?;
        Self::with_client(config, client, clock)
    }

    /// A connector on an existing `client` (to share one pool between connectors).
    pub fn with_client(
        config: AnthropicConfig,
        client: reqwest::Client,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let base = config.parsed_base_url()?;
        let header = |name: &'static str, v: &str| {
            HeaderValue::from_str(v).map_err(|_| ConfigError::InvalidParameter {
                name,
                reason: "not a valid header value".into(),
            })
        };
        let mut headers = vec![
            (X_API_KEY, sensitive(config.api_key.expose())?),
            (
                HeaderName::from_static("anthropic-version"),
                header("version", &config.version)?,
            ),
        ];
        if let Some(beta) = &config.beta {
            headers.push((
                HeaderName::from_static("anthropic-beta"),
                header("beta", beta)?,
            ));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                messages_url: join(&base, &["v1", "messages"]),
                models_url: join(&base, &["v1", "models"]),
                config,
                client,
                headers,
                metadata: MetadataCache::new(clock, METADATA_TTL),
                observed_requests: AtomicU64::new(u64::MAX),
                observed_tokens: AtomicU64::new(u64::MAX),
            }),
        })
    }

    /// The configuration this connector was built with.
    pub fn config(&self) -> &AnthropicConfig {
        &self.inner.config
    }

    async fn fetch_metadata(&self) -> Result<ProviderMetadata, ConnectorError> {
        let i = &*self.inner;
        let (meta, body) = i.send(i.get(&i.models_url), i.config.timeout).await?;
        let list: wire::ModelList =
            serde_json::from_slice(&body).map_err(|e| ConnectorError::Parse {
                message: format!("model list: {e}"),
                meta: Box::new(meta),
            })?;
        Ok(ProviderMetadata {
            provider_id: i.config.provider_id.clone(),
            api_version: i.config.version.clone(),
            models: list
                .data
                .into_iter()
                .map(|m| model_info(&m.id, Some("anthropic".to_owned())))
                .collect(),
            rate_limits: i.observed_limits(),
        })
    }
}

impl Inner {
    /// `builder` with every configured header.
    fn authorize(&self, builder: RequestBuilder) -> RequestBuilder {
        self.headers
            .iter()
            .fold(builder, |b, (n, v)| b.header(n.clone(), v.clone()))
    }

    /// A `POST /v1/messages` with `body`; a per-request credential replaces `x-api-key`.
    fn post(
        &self,
        req: &CompletionRequest,
        body: &wire::MessagesBody<'_>,
    ) -> Result<RequestBuilder, ConnectorError> {
        let mut builder = self.client.post(self.messages_url.clone());
        builder = match &req.credential {
            None => self.authorize(builder),
            Some(key) => {
                let key = credential_value(key.expose())?;
                self.headers
                    .iter()
                    .filter(|(n, _)| *n != X_API_KEY)
                    .fold(builder.header(X_API_KEY, key), |b, (n, v)| {
                        b.header(n.clone(), v.clone())
                    })
            }
        };
        let json = serde_json::to_vec(body).map_err(|e| ConnectorError::InvalidRequest {
            status: 400,
            message: format!("the request cannot be encoded: {e}"),
            param: None,
            code: None,
            meta: Box::default(),
        })?;
        Ok(builder
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(json))
    }

    fn get(&self, url: &Url) -> RequestBuilder {
        self.authorize(self.client.get(url.clone()))
    }

    /// The header view of `resp`, remembering the limits it reported.
    fn meta_of(&self, resp: &Response) -> ResponseMeta {
        let meta = headers::parse(Some(resp.status().as_u16()), resp.headers());
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

    fn observed_limits(&self) -> RateLimits {
        let read = |a: &AtomicU64| Some(a.load(Ordering::Relaxed)).filter(|v| *v != u64::MAX);
        RateLimits {
            requests_per_minute: read(&self.observed_requests),
            tokens_per_minute: read(&self.observed_tokens),
        }
    }

    /// Sends `request` within `timeout` and reads the whole body; non-2xx → its error.
    async fn send(
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
}

async fn error_of(resp: Response, meta: ResponseMeta) -> ConnectorError {
    let status = resp.status().as_u16();
    let body = resp.bytes().await.unwrap_or_default();
    errors::from_response(status, &body, meta)
}

impl fmt::Debug for AnthropicConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnthropicConnector")
            .field("config", &self.inner.config)
            .field("messages_url", &self.inner.messages_url.as_str())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl LLMProvider for AnthropicConnector {
    fn provider_id(&self) -> &str {
        &self.inner.config.provider_id
    }

    fn admission_rule(&self) -> AdmissionRule {
        ADMISSION
    }

    fn max_retries(&self) -> Option<u32> {
        Some(self.inner.config.max_retries)
    }

    /// `POST /v1/messages`. A request without `max_tokens` (or with `n > 1`) is refused
    /// with [`ConnectorError::InvalidRequest`] before anything is sent.
    async fn send_completion(
        &self,
        request: CompletionRequest,
    ) -> Result<CompletionResponse, ConnectorError> {
        let i = &*self.inner;
        let body = wire::MessagesBody::new(&request, false)?;
        let (meta, bytes) = i.send(i.post(&request, &body)?, i.config.timeout).await?;
        let msg: wire::WireMessage =
            serde_json::from_slice(&bytes).map_err(|e| ConnectorError::Parse {
                message: format!("message: {e}"),
                meta: Box::new(meta),
            })?;
        let finish = msg.stop_reason.as_deref().map(wire::finish_reason);
        Ok(CompletionResponse {
            choices: vec![Choice {
                index: 0,
                message: Message::assistant(msg.text()),
                finish_reason: finish.clone(),
            }],
            finish_reason: finish,
            usage: msg.usage.to_usage(),
            id: msg.id,
            model: msg.model,
            meta,
        })
    }

    /// `POST /v1/messages` with `stream: true`; returns once the headers arrived (within
    /// the timeout). Each read must arrive within the timeout too.
    async fn open_stream(
        &self,
        request: CompletionRequest,
    ) -> Result<(ResponseMeta, ChunkStream), ConnectorError> {
        let i = &*self.inner;
        let timeout = i.config.timeout;
        let body = wire::MessagesBody::new(&request, true)?;
        let post = i.post(&request, &body)?;
        let timed_out = || ConnectorError::Timeout {
            message: format!("no response headers within {timeout:?}"),
        };
        let resp = tokio::time::timeout(timeout, post.send())
            .await
            .map_err(|_| timed_out())?
            .map_err(|e| from_transport(&e))?;
        let meta = i.meta_of(&resp);
        if !resp.status().is_success() {
            return Err(tokio::time::timeout(timeout, error_of(resp, meta))
                .await
                .unwrap_or_else(|_| timed_out()));
        }
        Ok((meta, event_stream(resp.bytes_stream(), timeout)))
    }

    /// `GET /v1/models`, enriched from the built-in catalog, cached for an hour; the rate
    /// limits are the latest reported, refreshed on every call.
    async fn get_metadata(&self) -> Result<ProviderMetadata, ConnectorError> {
        let mut m = self
            .inner
            .metadata
            .get_or_fetch(|| self.fetch_metadata())
            .await?;
        m.rate_limits = self.inner.observed_limits();
        Ok(m)
    }

    fn validate_config(&self, config: &dyn ProviderConfig) -> Result<(), ConfigError> {
        check_config(self.provider_id(), config)
    }

    /// `GET /v1/models` within 5 s: `Healthy` on success, `Degraded` on 429 or 5xx (529
    /// included), `Unhealthy` otherwise.
    async fn health_check(&self) -> Result<HealthStatus, ConnectorError> {
        let i = &*self.inner;
        let timeout = i.config.timeout.min(HEALTH_TIMEOUT);
        Ok(match i.send(i.get(&i.models_url), timeout).await {
            Ok(_) => HealthStatus::Healthy,
            Err(e) if e.status().is_some_and(|s| s == 429 || s >= 500) => HealthStatus::Degraded {
                reason: e.to_string(),
            },
            Err(e) => HealthStatus::Unhealthy {
                reason: e.to_string(),
            },
        })
    }
}

type Body = Pin<Box<dyn Stream<Item = Result<Bytes, reqwest::Error>> + Send>>;

struct StreamState {
    /// `None` once handed to the drain task after `message_stop`.
    body: Option<Body>,
    idle: Duration,
    parser: SseParser,
    decoder: EventDecoder,
    events: Vec<SseEvent>,
    pending: VecDeque<StreamChunk>,
    /// Set once the stream must end after `pending`: with this error, or cleanly.
    end: Option<Option<ConnectorError>>,
    finished: bool,
}

/// The body's bytes as chunks: text, the finish reason, the usage; an error last if the
/// stream broke, stalled for `idle`, or carried an error event.
fn event_stream<S>(body: S, idle: Duration) -> ChunkStream
where
    S: Stream<Item = Result<Bytes, reqwest::Error>> + Send + 'static,
{
    let state = StreamState {
        body: Some(Box::pin(body)),
        idle,
        parser: SseParser::new(),
        decoder: EventDecoder::new(),
        events: Vec::new(),
        pending: VecDeque::new(),
        end: None,
        finished: false,
    };
    futures::stream::unfold(state, next_chunk).fuse().boxed()
}

async fn next_chunk(
    mut st: StreamState,
) -> Option<(Result<StreamChunk, ConnectorError>, StreamState)> {
    loop {
        if let Some(chunk) = st.pending.pop_front() {
            return Some((Ok(chunk), st));
        }
        if st.finished {
            return None;
        }
        if let Some(end) = st.end.take() {
            st.finished = true;
            return end.map(|e| (Err(e), st));
        }
        if st.decoder.is_done() {
            // Whatever follows `message_stop` is read and discarded off the caller's path,
            // so the connection can go back to the pool.
            if let Some(body) = st.body.take() {
                tokio::spawn(drain(body, st.idle.min(DRAIN_LIMIT)));
            }
            st.end = Some(None);
            continue;
        }
        let Some(body) = st.body.as_mut() else {
            st.end = Some(None);
            continue;
        };
        let next = tokio::time::timeout(st.idle, body.next()).await;
        st.end = match next {
            Err(_) => Some(Some(ConnectorError::Timeout {
                message: format!("no stream data for {:?}", st.idle),
            })),
            Ok(None) => {
                let open = st.parser.finish();
                Some(st.decoder.finish(open, &mut st.pending).err())
            }
            Ok(Some(Err(e))) if e.is_timeout() => Some(Some(ConnectorError::Timeout {
                message: error_chain(&e),
            })),
            Ok(Some(Err(e))) => Some(Some(ConnectorError::Stream {
                message: format!("stream broken: {}", error_chain(&e)),
            })),
            Ok(Some(Ok(bytes))) => {
                st.parser.feed(&bytes, &mut st.events);
                let mut failed = None;
                for event in st.events.drain(..) {
                    if let Err(e) = st.decoder.on_event(&event, &mut st.pending) {
                        failed = Some(Some(e));
                        break;
                    }
                }
                st.events.clear();
                failed
            }
        };
    }
}

/// Longest time spent draining a body after `message_stop` (a compliant server ends it at
/// once).
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// Reads what follows `message_stop` until the body ends, errs or `limit` passes.
async fn drain(mut body: Body, limit: Duration) {
    let _ = tokio::time::timeout(limit, async {
        while let Some(Ok(_)) = body.next().await {}
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENTS: &str = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"m\",\"content\":[],\"usage\":{\"input_tokens\":5,\"cache_creation_input_tokens\":2,\"cache_read_input_tokens\":9,\"output_tokens\":1}}}\n\n",
        "event: ping\ndata: {\"type\": \"ping\"}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"héllo\"}}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"max_tokens\"},\"usage\":{\"output_tokens\":3}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    );

    /// Any split of the bytes, and a body left open after `message_stop`, give the same
    /// chunks and a clean end (the open body is drained off the caller's path).
    #[tokio::test(start_paused = true)]
    async fn any_split_decodes_the_same_and_an_open_body_ends_cleanly() {
        let bytes = EVENTS.as_bytes();
        for step in [1usize, 2, 7, 64, bytes.len()] {
            let pieces: Vec<Result<Bytes, reqwest::Error>> = bytes
                .chunks(step)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            let body = futures::stream::iter(pieces).chain(futures::stream::pending());
            let chunks: Vec<_> = event_stream(body, Duration::from_secs(30))
                .collect::<Vec<_>>()
                .await;
            let chunks: Vec<StreamChunk> =
                chunks.into_iter().map(|c| c.expect("no error")).collect();
            assert_eq!(chunks.len(), 3, "step {step}: {chunks:?}");
            assert_eq!(chunks[0].delta, "héllo");
            assert_eq!(
                chunks[1].finish_reason,
                Some(crate::provider::FinishReason::Length)
            );
            let usage = chunks[2].usage.expect("usage last");
            assert_eq!((usage.input_tokens, usage.output_tokens), (7, 3));
        }
    }

    /// A body that stops sending is a timeout after the idle limit, not a hang.
    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_is_a_timeout() {
        let start: Vec<Result<Bytes, reqwest::Error>> =
            vec![Ok(Bytes::from_static(&EVENTS.as_bytes()[..40]))];
        let body = futures::stream::iter(start).chain(futures::stream::pending());
        let items: Vec<_> = event_stream(body, Duration::from_secs(2)).collect().await;
        assert!(
            matches!(items.as_slice(), [Err(ConnectorError::Timeout { .. })]),
            "{items:?}"
        );
    }
}
