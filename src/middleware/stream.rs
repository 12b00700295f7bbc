//! Streaming calls through the pipeline: [`Pipeline::stream`] and the [`PipelineStream`] it
//! returns.
//!
//! Before the first byte a stream is an ordinary call: `on_request` hooks run (the rate
//! limiter acquires, the auth middleware sets the credential; the cache never answers a
//! stream), and an error opening it goes through `on_error`, so it may be retried or fall
//! back. Once the response headers arrived the stream belongs to the caller: the first
//! content chunk runs [`Middleware::on_first_token`] (time to first token), the end runs
//! [`Middleware::on_stream_end`] with the usage (the provider's usage chunk, else a
//! tiktoken count of the prompt and of the text streamed), and an error in the middle is
//! handed to the caller as the stream's last item — never retried, since part of the
//! answer was already delivered. A stream the caller drops early still runs its end hooks
//! (from a spawned task, marked `cancelled` unless the usage chunk had arrived), so the
//! limiter records what was used.

use std::collections::HashMap;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::stream::{self, BoxStream, Stream, StreamExt};

use super::{
    provider_of, Middleware, MiddlewareContext, MiddlewareError, Pipeline, PipelineError,
    ProviderSet,
};
use crate::limiter::ResponseMeta;
use crate::provider::admission::{text_tokens, RequestSize};
use crate::provider::{
    ChunkStream, CompletionRequest, CompletionResponse, ConnectorError, StreamChunk, Usage,
};

/// How a stream ended, as [`Middleware::on_stream_end`] sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamEnd {
    /// Tokens used: the provider's usage chunk when it sent one, else the prompt's tiktoken
    /// estimate and a tiktoken count of the streamed text.
    pub usage: Usage,
    /// Whether `usage` is the provider's own count (its usage chunk).
    pub usage_reported: bool,
    /// The header view of the stream's response (remaining quota, etc.).
    pub meta: ResponseMeta,
    /// The error that broke the stream mid-way, if one did.
    pub error: Option<ConnectorError>,
    /// True when the caller dropped the stream before its end.
    pub cancelled: bool,
    /// Chunks delivered to the caller.
    pub chunks: u64,
}

/// A streamed completion running through a [`Pipeline`]: yields the provider's chunks
/// (text deltas, finish reasons, then the usage chunk when the connector asked for one);
/// its last item is an error when the stream broke or an end hook failed.
pub struct PipelineStream {
    provider_id: String,
    meta: ResponseMeta,
    metadata: HashMap<String, String>,
    tried: Vec<String>,
    inner: BoxStream<'static, Result<StreamChunk, PipelineError>>,
}

impl fmt::Debug for PipelineStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipelineStream")
            .field("provider_id", &self.provider_id)
            .field("meta", &self.meta)
            .field("metadata", &self.metadata)
            .field("tried", &self.tried)
            .finish_non_exhaustive()
    }
}

impl PipelineStream {
    /// The provider that is streaming (after any fallback).
    pub fn provider_id(&self) -> &str {
        &self.provider_id
    }

    /// The header view of the streaming response (default for a short-circuited call).
    pub fn meta(&self) -> &ResponseMeta {
        &self.meta
    }

    /// The call's context metadata when the stream opened (e.g. the logging request id).
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }

    /// Providers tried before the stream opened, in order (the streaming one last).
    pub fn tried(&self) -> &[String] {
        &self.tried
    }

    /// A stream replaying a whole response an `on_request` hook supplied: each choice's
    /// text with its finish reason, then the usage.
    fn replay(response: CompletionResponse, ctx: &MiddlewareContext) -> Self {
        let mut chunks: Vec<Result<StreamChunk, PipelineError>> = response
            .choices
            .into_iter()
            .map(|c| {
                Ok(StreamChunk {
                    delta: c.message.content,
                    index: c.index,
                    finish_reason: c.finish_reason,
                    usage: None,
                })
            })
            .collect();
        chunks.push(Ok(StreamChunk {
            usage: Some(response.usage),
            ..StreamChunk::default()
        }));
        Self {
            provider_id: ctx.provider_id.clone(),
            meta: response.meta,
            metadata: ctx.metadata.clone(),
            tried: ctx.tried.clone(),
            inner: stream::iter(chunks).boxed(),
        }
    }
}

impl Stream for PipelineStream {
    type Item = Result<StreamChunk, PipelineError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.poll_next_unpin(cx)
    }
}

impl Pipeline {
    /// Opens a streaming completion of `request` (its `stream` flag is set, so the cache
    /// passes it by) on `provider_id` through the middlewares; see the module docs for
    /// which hooks run when. Returns once the response headers arrived.
    pub async fn stream(
        &self,
        providers: &ProviderSet,
        provider_id: &str,
        request: CompletionRequest,
    ) -> Result<PipelineStream, PipelineError> {
        let ctx = MiddlewareContext::new(provider_id, self.clock.now());
        self.stream_with(providers, request, ctx).await
    }

    /// [`stream`](Self::stream) with a caller-made context (its `provider_id` is the first
    /// target); the stream owns the context until its end hooks ran.
    pub async fn stream_with(
        &self,
        providers: &ProviderSet,
        mut request: CompletionRequest,
        mut ctx: MiddlewareContext,
    ) -> Result<PipelineStream, PipelineError> {
        request.stream = true;
        ctx.model.clone_from(&request.model);
        let mut calls = 0;
        loop {
            let provider = provider_of(providers, &mut ctx)?;
            let mut req = request.clone();
            let ran = self.run_on_request(&mut req, &mut ctx).await?;
            if let Some(mut response) = ctx.short_circuit.take() {
                self.run_on_response(ran, &mut response, &mut ctx).await?;
                return Ok(PipelineStream::replay(response, &ctx));
            }
            calls += 1;
            let sent = req.clone();
            match provider.open_stream(req).await {
                Ok((meta, chunks)) => {
                    let head = PipelineStream {
                        provider_id: ctx.provider_id.clone(),
                        meta,
                        metadata: ctx.metadata.clone(),
                        tried: ctx.tried.clone(),
                        inner: stream::empty().boxed(),
                    };
                    let live = Live {
                        middlewares: self.middlewares.clone(),
                        ctx: Some(ctx),
                        chunks,
                        meta,
                        request: sent,
                        usage: None,
                        counted_out: 0,
                        chunks_seen: 0,
                        first_token_seen: false,
                    };
                    return Ok(PipelineStream {
                        inner: stream::unfold(live, Live::next).boxed(),
                        ..head
                    });
                }
                Err(error) => self.run_on_error(error, &mut ctx, calls).await?,
            }
        }
    }
}

/// The state of a live stream; `ctx` is `None` once the end hooks ran (or were handed to
/// a task).
struct Live {
    middlewares: Vec<Arc<dyn Middleware>>,
    ctx: Option<MiddlewareContext>,
    chunks: ChunkStream,
    meta: ResponseMeta,
    request: CompletionRequest,
    usage: Option<Usage>,
    counted_out: u64,
    chunks_seen: u64,
    first_token_seen: bool,
}

impl Live {
    async fn next(mut self) -> Option<(Result<StreamChunk, PipelineError>, Self)> {
        self.ctx.as_ref()?;
        match self.chunks.next().await {
            Some(Ok(chunk)) => {
                self.chunks_seen += 1;
                if let Some(u) = chunk.usage {
                    self.usage = Some(u);
                }
                if !chunk.delta.is_empty() {
                    self.counted_out += text_tokens(&self.request.model, &chunk.delta);
                    if !self.first_token_seen {
                        self.first_token_seen = true;
                        if let Some(ctx) = self.ctx.as_mut() {
                            for m in self.middlewares.iter().rev() {
                                m.on_first_token(ctx).await;
                            }
                        }
                    }
                }
                Some((Ok(chunk), self))
            }
            Some(Err(error)) => {
                let hook = self.finish(Some(error.clone()), false).await;
                let item = hook.map_or(PipelineError::Provider(error), PipelineError::from);
                Some((Err(item), self))
            }
            None => {
                let hook = self.finish(None, false).await?;
                Some((Err(hook.into()), self))
            }
        }
    }

    fn end(&self, error: Option<ConnectorError>, cancelled: bool) -> StreamEnd {
        let usage = self.usage.unwrap_or_else(|| Usage {
            input_tokens: RequestSize::of(&self.request).prompt_tokens,
            output_tokens: self.counted_out,
        });
        StreamEnd {
            usage,
            usage_reported: self.usage.is_some(),
            meta: self.meta,
            error,
            cancelled,
            chunks: self.chunks_seen,
        }
    }

    /// Runs the end hooks once; the first hook error, if any.
    async fn finish(
        &mut self,
        error: Option<ConnectorError>,
        cancelled: bool,
    ) -> Option<MiddlewareError> {
        let end = self.end(error, cancelled);
        let ctx = self.ctx.take()?;
        run_end(self.middlewares.clone(), end, ctx).await
    }
}

async fn run_end(
    middlewares: Vec<Arc<dyn Middleware>>,
    end: StreamEnd,
    mut ctx: MiddlewareContext,
) -> Option<MiddlewareError> {
    let mut first = None;
    for m in middlewares.iter().rev() {
        if let Err(e) = m.on_stream_end(&end, &mut ctx).await {
            first.get_or_insert(e);
        }
    }
    first
}

impl Drop for Live {
    /// A stream dropped before its end still runs the end hooks, on the current tokio
    /// runtime (without one, when the runtime is gone, they are skipped): `cancelled`
    /// unless the usage chunk had arrived — then only the end marker was left unread.
    fn drop(&mut self) {
        if self.ctx.is_none() {
            return;
        }
        let end = self.end(None, self.usage.is_none());
        if let (Some(ctx), Ok(rt)) = (self.ctx.take(), tokio::runtime::Handle::try_current()) {
            rt.spawn(run_end(self.middlewares.clone(), end, ctx));
        }
    }
}
