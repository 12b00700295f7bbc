//! The async side of streaming: a response body's bytes, through [`SseParser`] and
//! [`ChunkDecoder`], into a [`ChunkStream`] of [`StreamChunk`]s.
//!
//! Each read must arrive within the idle timeout (a stalled stream is a
//! [`ConnectorError::Timeout`]); a body that breaks is a [`ConnectorError::Stream`]; chunks
//! decoded before an error are delivered before it, and nothing follows an error. After
//! `[DONE]` the stream ends at once and the rest of the body is drained by a spawned task
//! (bounded by [`DRAIN_LIMIT`]) so the connection can return to the pool.

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{BoxStream, Stream, StreamExt};

use super::error::ConnectorError;
use super::error_map::error_chain;
use super::sse::{ChunkDecoder, SseEvent, SseParser};
use super::types::StreamChunk;

/// A stream of completion chunks; ends after the last chunk or after the first error.
pub type ChunkStream = BoxStream<'static, Result<StreamChunk, ConnectorError>>;

type Body = Pin<Box<dyn Stream<Item = Result<Bytes, reqwest::Error>> + Send>>;

/// Longest time spent draining a body after `[DONE]` (a compliant server ends it at once).
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

struct State {
    /// `None` once handed to the drain task.
    body: Option<Body>,
    idle: Duration,
    parser: SseParser,
    decoder: ChunkDecoder,
    events: Vec<SseEvent>,
    pending: VecDeque<StreamChunk>,
    /// Set when the stream must end once `pending` is empty: with this error, or cleanly.
    end: Option<Option<ConnectorError>>,
}

/// Decodes `body` as a chat-completion SSE stream. `expect_usage`: the request asked for
/// the final usage chunk. `idle`: the longest wait for any read.
pub(crate) fn chunk_stream<S>(body: S, idle: Duration, expect_usage: bool) -> ChunkStream
where
    S: Stream<Item = Result<Bytes, reqwest::Error>> + Send + 'static,
{
    let state = State {
        body: Some(Box::pin(body)),
        idle,
        parser: SseParser::new(),
        decoder: ChunkDecoder::new(expect_usage),
        events: Vec::new(),
        pending: VecDeque::new(),
        end: None,
    };
    futures::stream::unfold(state, next_item).fuse().boxed()
}

async fn next_item(mut st: State) -> Option<(Result<StreamChunk, ConnectorError>, State)> {
    loop {
        if let Some(chunk) = st.pending.pop_front() {
            return Some((Ok(chunk), st));
        }
        if let Some(end) = st.end.take() {
            return match end {
                Some(err) => {
                    // Nothing follows an error: leave `end` as a clean end.
                    st.end = Some(None);
                    Some((Err(err), st))
                }
                None => {
                    st.end = Some(None);
                    None
                }
            };
        }
        let body = st.body.as_mut()?;
        if st.decoder.is_done() {
            if let Some(body) = st.body.take() {
                tokio::spawn(drain(body, st.idle.min(DRAIN_LIMIT)));
            }
            return None;
        }
        match tokio::time::timeout(st.idle, body.next()).await {
            Err(_) => {
                st.end = Some(Some(ConnectorError::Timeout {
                    message: format!("no stream data for {:?}", st.idle),
                }))
            }
            Ok(None) => {
                let open = st.parser.finish();
                st.end = Some(st.decoder.finish(open, &mut st.pending).err());
            }
            Ok(Some(Err(e))) => {
                let err = if e.is_timeout() {
                    ConnectorError::Timeout {
                        message: error_chain(&e),
                    }
                } else {
                    ConnectorError::Stream {
                        message: format!("stream broken: {}", error_chain(&e)),
                    }
                };
                st.end = Some(Some(err));
            }
            Ok(Some(Ok(bytes))) => {
                st.parser.feed(&bytes, &mut st.events);
                for event in st.events.drain(..) {
                    if let Err(e) = st.decoder.on_event(&event, &mut st.pending) {
                        st.end = Some(Some(e));
                        break;
                    }
                }
                st.events.clear();
            }
        }
    }
}

/// Reads what follows `[DONE]` until the body ends, errs or `limit` passes, discarding it.
async fn drain(mut body: Body, limit: Duration) {
    let _ = tokio::time::timeout(limit, async {
        while let Some(Ok(_)) = body.next().await {}
    })
    .await;
}
