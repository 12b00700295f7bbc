//! The Messages stream: `message_start`, `content_block_start`, one `ping`, a
//! `content_block_delta` per token, `content_block_stop`, `message_delta` (cumulative
//! usage), `message_stop` — each `event: <name>\ndata: <json>\n\n`, no `[DONE]`. Faults:
//! an `event: error` with `overloaded_error` (then the stream ends), or a dropped
//! connection. Paced by the latency model against an absolute schedule, like the OpenAI
//! streams; the quota is settled when the stream ends or is dropped.

use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use rand::rngs::SmallRng;

use super::config::OverloadedAt;
use super::wire::{self, Envelope, Stop, Tokens};
use crate::generation::{splitmix64, LatencyModel};

/// Called once with the output tokens sent, when the stream ends or is dropped.
pub type Settle = Box<dyn FnOnce(u64) + Send>;

/// Everything a stream will send.
pub struct StreamPlan {
    /// `msg_…`.
    pub id: String,
    /// `req_…` (in an error event).
    pub request_id: String,
    /// The model id.
    pub model: String,
    /// The text, one token per piece.
    pub pieces: Vec<String>,
    /// Why it ends.
    pub stop: Stop,
    /// Final token counts.
    pub tokens: Tokens,
    /// Delay before the first event.
    pub ttft: Duration,
    /// Paces the deltas.
    pub latency: LatencyModel,
    /// Draws the intervals.
    pub rng: SmallRng,
    /// Replace the rest of the stream with an overloaded error event here.
    pub overloaded: Option<OverloadedAt>,
    /// Cut the connection after this many events.
    pub drop_after: Option<usize>,
    /// Settles the quota.
    pub settle: Option<Settle>,
    /// Pad data lines as live captures do (`Some(seed)` of the pad lengths).
    pub padding: Option<u64>,
}

impl std::fmt::Debug for StreamPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamPlan")
            .field("id", &self.id)
            .field("pieces", &self.pieces.len())
            .field("stop", &self.stop)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Start,
    BlockStart,
    Ping,
    Delta(usize),
    BlockStop,
    MessageDelta,
    MessageStop,
    Ended,
}

/// The events in order, each with the delay before it.
struct Events {
    plan: StreamPlan,
    phase: Phase,
    emitted: usize,
    sent_tokens: u64,
}

impl Events {
    fn new(plan: StreamPlan) -> Self {
        Self {
            plan,
            phase: Phase::Start,
            emitted: 0,
            sent_tokens: 0,
        }
    }

    fn overload_here(&self) -> bool {
        match (self.plan.overloaded, self.phase) {
            (Some(OverloadedAt::Start), Phase::Start) => true,
            (Some(OverloadedAt::Middle), Phase::Delta(i)) => i == self.plan.pieces.len() / 2,
            (Some(OverloadedAt::Middle), Phase::MessageDelta) => self.plan.pieces.is_empty(),
            _ => false,
        }
    }

    fn next_event(&mut self) -> Option<(Duration, Bytes)> {
        let p = &self.plan;
        let env = Envelope {
            id: &p.id,
            model: &p.model,
        };
        if self.phase != Phase::Ended && self.overload_here() {
            self.phase = Phase::Ended;
            let data = wire::overloaded_event(&self.plan.request_id);
            return Some(self.emit(Duration::ZERO, "error", &data));
        }
        let empty = p.pieces.is_empty();
        let (delay, name, data) = match self.phase {
            Phase::Start => {
                let start = Tokens {
                    output: p.tokens.output.min(1),
                    ..p.tokens
                };
                self.phase = if empty {
                    Phase::Ping
                } else {
                    Phase::BlockStart
                };
                (p.ttft, "message_start", wire::message_start(env, start))
            }
            Phase::BlockStart => {
                self.phase = Phase::Ping;
                (
                    Duration::ZERO,
                    "content_block_start",
                    wire::content_block_start(0),
                )
            }
            Phase::Ping => {
                self.phase = if empty {
                    Phase::MessageDelta
                } else {
                    Phase::Delta(0)
                };
                (Duration::ZERO, "ping", wire::PING.to_vec())
            }
            Phase::Delta(i) => {
                let delay = if i == 0 {
                    Duration::ZERO
                } else {
                    self.plan.latency.per_token(&mut self.plan.rng)
                };
                let p = &self.plan;
                self.phase = if i + 1 < p.pieces.len() {
                    Phase::Delta(i + 1)
                } else {
                    Phase::BlockStop
                };
                self.sent_tokens += 1;
                (
                    delay,
                    "content_block_delta",
                    wire::text_delta(0, &p.pieces[i]),
                )
            }
            Phase::BlockStop => {
                self.phase = Phase::MessageDelta;
                (
                    Duration::ZERO,
                    "content_block_stop",
                    wire::content_block_stop(0),
                )
            }
            Phase::MessageDelta => {
                self.phase = Phase::MessageStop;
                // Tokens past the last piece (a stop sequence's) count once the message ends.
                self.sent_tokens = p.tokens.output;
                (
                    Duration::ZERO,
                    "message_delta",
                    wire::message_delta(&p.stop, p.tokens),
                )
            }
            Phase::MessageStop => {
                self.phase = Phase::Ended;
                (Duration::ZERO, "message_stop", wire::MESSAGE_STOP.to_vec())
            }
            Phase::Ended => return None,
        };
        Some(self.emit(delay, name, &data))
    }

    fn emit(&mut self, delay: Duration, name: &str, data: &[u8]) -> (Duration, Bytes) {
        self.emitted += 1;
        let frame = match self.plan.padding {
            Some(seed) if name != "ping" => {
                let pad = splitmix64(seed ^ self.emitted as u64) % 16;
                wire::frame(name, &wire::padded(data, pad as usize))
            }
            _ => wire::frame(name, data),
        };
        (delay, Bytes::from(frame))
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        if let Some(settle) = self.plan.settle.take() {
            settle(self.sent_tokens);
        }
    }
}

/// The number of events a plan without faults sends.
pub fn event_count(pieces: usize) -> usize {
    if pieces == 0 {
        4
    } else {
        6 + pieces
    }
}

/// Renders the whole stream at once (zero-latency mode), settling at the end.
pub fn render_all(plan: StreamPlan) -> Vec<u8> {
    let mut events = Events::new(plan);
    let mut out = Vec::new();
    while let Some((_, bytes)) = events.next_event() {
        out.extend_from_slice(&bytes);
    }
    out
}

/// The response body: one write in zero-latency mode without a drop, else events paced
/// against an absolute schedule; an injected drop ends the body with an error, which
/// aborts the connection.
pub fn body(plan: StreamPlan) -> Body {
    let drop_after = plan.drop_after;
    if plan.latency.is_zero() && drop_after.is_none() {
        return Body::from(render_all(plan));
    }
    let state = Some((Events::new(plan), None::<tokio::time::Instant>));
    let stream = futures::stream::unfold(state, move |state| async move {
        let (mut events, due) = state?;
        if drop_after == Some(events.emitted) {
            drop(events);
            let err = std::io::Error::other("injected fault: connection dropped mid-stream");
            return Some((Err(err), None));
        }
        let (delay, bytes) = events.next_event()?;
        let due = due.unwrap_or_else(tokio::time::Instant::now) + delay;
        if !delay.is_zero() {
            tokio::time::sleep_until(due).await;
        }
        Some((Ok(bytes), Some((events, Some(due)))))
    });
    Body::from_stream(stream)
}
