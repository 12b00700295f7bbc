//! SSE pass-through: the upstream's events go to the client one by one as they complete
//! (never the whole stream buffered), read on the way for the usage chunk — which is
//! stripped when the gateway asked for it and the client did not — and for the text
//! streamed so far; the stream's end (completed, broken, or dropped by the client) is
//! reported once.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Bytes;
use futures::Stream;
use serde::Deserialize;

use super::upstream::Usage;
use crate::limiter::Cost;

/// Splits SSE bytes into events, passes them on, and reads the usage and the text.
#[derive(Debug, Default)]
pub struct UsageTap {
    buf: Vec<u8>,
    strip_usage: bool,
    usage: Option<Cost>,
    text: String,
    done: bool,
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
}

impl UsageTap {
    /// A tap; `strip_usage` drops the usage chunk (`"choices":[]` with `usage`) from what
    /// is passed on.
    pub fn new(strip_usage: bool) -> Self {
        Self {
            strip_usage,
            ..Self::default()
        }
    }

    /// Feeds upstream bytes; returns the complete events to pass on (possibly none).
    pub fn push(&mut self, bytes: &[u8]) -> Bytes {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(end) = event_end(&self.buf) {
            let event: Vec<u8> = self.buf.drain(..end).collect();
            if self.read(&event) {
                out.extend_from_slice(&event);
            }
        }
        Bytes::from(out)
    }

    /// What is left at the stream's end (an unterminated event, passed on as is).
    pub fn finish(&mut self) -> Bytes {
        let rest = std::mem::take(&mut self.buf);
        if !rest.is_empty() && self.read(&rest) {
            return Bytes::from(rest);
        }
        Bytes::new()
    }

    /// The usage chunk's usage as the limiter counts it, once seen.
    pub fn usage(&self) -> Option<Cost> {
        self.usage
    }

    /// The text streamed so far (content deltas, completion texts).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether `data: [DONE]` was seen.
    pub fn done(&self) -> bool {
        self.done
    }

    /// Reads one event; false when it is to be dropped.
    fn read(&mut self, event: &[u8]) -> bool {
        let Ok(text) = std::str::from_utf8(event) else {
            return true;
        };
        let mut keep = true;
        for line in text.lines() {
            let Some(data) = line.strip_prefix("data:") else {
                continue;
            };
            let data = data.trim();
            if data == "[DONE]" {
                self.done = true;
                continue;
            }
            let Ok(chunk) = serde_json::from_str::<Chunk>(data) else {
                continue;
            };
            for c in &chunk.choices {
                if let Some(t) = c.delta.as_ref().and_then(|d| d.content.as_deref()) {
                    self.text.push_str(t);
                }
                if let Some(t) = &c.text {
                    self.text.push_str(t);
                }
            }
            if let Some(u) = chunk.usage {
                self.usage = Some(u.cost());
                if self.strip_usage && chunk.choices.is_empty() {
                    keep = false;
                }
            }
        }
        keep
    }
}

/// The end of the first complete event in `buf` (after its blank line).
fn event_end(buf: &[u8]) -> Option<usize> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// How a passed-through stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEnd {
    /// Read to `[DONE]`; the usage chunk's usage, if there was one.
    Completed {
        /// The usage chunk's usage as the limiter counts it.
        usage: Option<Cost>,
        /// The text streamed.
        text: String,
    },
    /// The upstream failed or stopped before `[DONE]`.
    Broken {
        /// The text streamed.
        text: String,
    },
    /// The client went away before the end.
    Dropped {
        /// The text streamed.
        text: String,
    },
}

type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, axum::Error>> + Send>>;
/// What runs when a stream ends (recording its usage).
pub type Finish = Pin<Box<dyn Future<Output = ()> + Send>>;
type OnEnd = Box<dyn FnOnce(StreamEnd) -> Finish + Send>;

/// The client's body: the upstream's events through a [`UsageTap`]. `on_end` is called
/// exactly once — at the end or on an upstream error, where its future runs before the
/// client sees the body end (so a client that read the whole stream finds its usage
/// recorded), or when dropped before the end, where its future is spawned.
pub struct Tapped {
    inner: ByteStream,
    tap: UsageTap,
    on_end: Option<OnEnd>,
    /// The end's future, then the last item to give the client.
    finishing: Option<(Finish, Option<Result<Bytes, axum::Error>>)>,
    over: bool,
}

impl std::fmt::Debug for Tapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tapped").field("tap", &self.tap).finish()
    }
}

impl Tapped {
    /// Passes `inner` through `tap`, reporting its end to `on_end`.
    pub fn new(
        inner: impl Stream<Item = Result<Bytes, axum::Error>> + Send + 'static,
        tap: UsageTap,
        on_end: impl FnOnce(StreamEnd) -> Finish + Send + 'static,
    ) -> Self {
        Self {
            inner: Box::pin(inner),
            tap,
            on_end: Some(Box::new(on_end)),
            finishing: None,
            over: false,
        }
    }

    fn end(&mut self, end: StreamEnd, last: Option<Result<Bytes, axum::Error>>) {
        if let Some(f) = self.on_end.take() {
            self.finishing = Some((f(end), last));
        }
    }
}

impl Stream for Tapped {
    type Item = Result<Bytes, axum::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some((finish, _)) = this.finishing.as_mut() {
                if finish.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                let last = this.finishing.take().and_then(|(_, last)| last);
                this.over = true;
                return Poll::Ready(last);
            }
            if this.over || this.on_end.is_none() {
                return Poll::Ready(None);
            }
            match this.inner.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(bytes))) => {
                    let out = this.tap.push(&bytes);
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(out)));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    let text = this.tap.text().to_owned();
                    this.end(StreamEnd::Broken { text }, Some(Err(e)));
                }
                Poll::Ready(None) => {
                    let rest = this.tap.finish();
                    let t = &this.tap;
                    let end = if t.done() {
                        StreamEnd::Completed {
                            usage: t.usage(),
                            text: t.text().to_owned(),
                        }
                    } else {
                        StreamEnd::Broken {
                            text: t.text().to_owned(),
                        }
                    };
                    this.end(end, (!rest.is_empty()).then_some(Ok(rest)));
                }
            }
        }
    }
}

impl Drop for Tapped {
    fn drop(&mut self) {
        let text = self.tap.text().to_owned();
        let rest = match (self.on_end.take(), self.finishing.take()) {
            (Some(f), _) => Some(f(StreamEnd::Dropped { text })),
            (None, Some((finish, _))) => Some(finish),
            (None, None) => None,
        };
        if let Some(finish) = rest {
            match tokio::runtime::Handle::try_current() {
                Ok(h) => {
                    h.spawn(finish);
                }
                Err(_) => tracing::warn!(
                    "a stream was dropped outside the runtime; its usage is not recorded"
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n\
        data: {\"choices\":[{\"delta\":{\"content\":\"Hi there\"}}]}\n\n\
        data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n\
        data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7}}\n\n\
        data: [DONE]\n\n";

    #[test]
    fn any_split_passes_the_same_events_and_reads_the_usage() {
        for split in [1, 2, 7, 64, STREAM.len()] {
            for strip in [false, true] {
                let mut tap = UsageTap::new(strip);
                let mut out = Vec::new();
                for piece in STREAM.as_bytes().chunks(split) {
                    out.extend_from_slice(&tap.push(piece));
                }
                out.extend_from_slice(&tap.finish());
                let out = String::from_utf8(out).expect("utf8");
                assert_eq!(tap.usage(), Some(Cost::tokens(7).with_split(5, 2)));
                assert_eq!(tap.text(), "Hi there");
                assert!(tap.done());
                if strip {
                    assert!(!out.contains("usage"), "{out}");
                    assert_eq!(out.matches("\n\n").count(), 4);
                } else {
                    assert_eq!(out, STREAM);
                }
            }
        }
    }

    #[tokio::test]
    async fn the_end_is_reported_once_also_when_dropped() {
        use futures::StreamExt;
        use std::sync::{Arc, Mutex};
        let ends = Arc::new(Mutex::new(Vec::new()));
        let chunks: Vec<Result<Bytes, axum::Error>> =
            vec![Ok(Bytes::from_static(STREAM.as_bytes()))];
        let e = ends.clone();
        let t = Tapped::new(
            futures::stream::iter(chunks),
            UsageTap::new(true),
            move |x| {
                e.lock().unwrap().push(x);
                Box::pin(async {})
            },
        );
        let all: Vec<_> = t.collect().await;
        assert_eq!(all.len(), 1);
        let e = ends.clone();
        let first: Vec<Result<Bytes, axum::Error>> = vec![Ok(Bytes::from_static(
            b"data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n",
        ))];
        let mut t = Tapped::new(
            futures::stream::iter(first).chain(futures::stream::pending()),
            UsageTap::new(true),
            move |x| {
                e.lock().unwrap().push(x);
                Box::pin(async {})
            },
        );
        assert!(t.next().await.is_some());
        drop(t);
        let ends = ends.lock().unwrap();
        assert_eq!(
            *ends,
            vec![
                StreamEnd::Completed {
                    usage: Some(Cost::tokens(7).with_split(5, 2)),
                    text: "Hi there".into()
                },
                StreamEnd::Dropped { text: "Hi".into() }
            ]
        );
    }
}
