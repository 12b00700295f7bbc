//! Server-sent events as OpenAI sends them: `data: <chunk json>\n\n` per chunk, a role
//! chunk first (chat), one chunk per token, a finish chunk per choice with `delta: {}`, the
//! `usage` chunk with `"choices":[]` when `stream_options.include_usage`, then
//! `data: [DONE]\n\n`.
//!
//! Chunks are rendered lazily as they fall due, paced by the latency model (time to first
//! token, then one interval per token); zero-latency mode writes the whole stream at once.

use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use rand::rngs::SmallRng;
use serde::Serialize;

use super::respond::Usage;
use crate::generation::text::GeneratedText;
use crate::generation::LatencyModel;

/// Everything a stream will send.
#[derive(Debug)]
pub struct StreamPlan {
    /// Legacy `/completions` chunks (`text_completion`) instead of chat chunks.
    pub legacy: bool,
    /// `chatcmpl-…` / `cmpl-…`.
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    /// Model id.
    pub model: String,
    /// `fp_…`.
    pub fingerprint: String,
    /// The generated choices.
    pub choices: Vec<GeneratedText>,
    /// `Some` when `include_usage`: every chunk carries `"usage":null` and a final chunk
    /// carries this.
    pub usage: Option<Usage>,
    /// Time to first token: the delay before the first event.
    pub ttft: Duration,
    /// Paces the chunks after the first.
    pub latency: LatencyModel,
    /// Draws the intervals.
    pub rng: SmallRng,
    /// Cut the connection after this many events (an injected fault).
    pub drop_after: Option<usize>,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Roles(usize),
    Content { pos: usize, choice: usize },
    Finish(usize),
    Usage,
    Done,
    Ended,
}

/// The events of one stream, in order, each with the delay before it.
#[derive(Debug)]
struct Events {
    plan: StreamPlan,
    phase: Phase,
    longest: usize,
    emitted: usize,
    paced_pos: Option<usize>,
}

#[derive(Serialize)]
struct Chunk<'a, C: Serialize> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    system_fingerprint: &'a str,
    choices: C,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<Usage>>,
}

#[derive(Serialize)]
struct ChatChoice<'a> {
    index: usize,
    delta: Delta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Delta<'a> {
    Role {
        role: &'static str,
        content: &'static str,
    },
    Content {
        content: &'a str,
    },
    Empty {},
}

#[derive(Serialize)]
struct TextChoice<'a> {
    text: &'a str,
    index: usize,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

impl Events {
    fn new(plan: StreamPlan) -> Self {
        let longest = plan
            .choices
            .iter()
            .map(|c| c.pieces.len())
            .max()
            .unwrap_or(0);
        Self {
            phase: if plan.legacy {
                Phase::Content { pos: 0, choice: 0 }
            } else {
                Phase::Roles(0)
            },
            plan,
            longest,
            emitted: 0,
            paced_pos: None,
        }
    }

    fn frame<C: Serialize>(&self, choices: C, usage: Option<Option<Usage>>) -> Bytes {
        let p = &self.plan;
        let chunk = Chunk {
            id: &p.id,
            object: if p.legacy {
                "text_completion"
            } else {
                "chat.completion.chunk"
            },
            created: p.created,
            model: &p.model,
            system_fingerprint: &p.fingerprint,
            choices,
            usage,
        };
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(b"data: ");
        // Serializing plain structs of strings and numbers into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, &chunk);
        out.extend_from_slice(b"\n\n");
        Bytes::from(out)
    }

    fn usage_null(&self) -> Option<Option<Usage>> {
        self.plan.usage.map(|_| None)
    }

    fn chat(&self, index: usize, delta: Delta<'_>, finish: Option<&'static str>) -> Bytes {
        let choice = ChatChoice {
            index,
            delta,
            logprobs: None,
            finish_reason: finish,
        };
        self.frame([choice], self.usage_null())
    }

    fn text(&self, index: usize, text: &str, finish: Option<&'static str>) -> Bytes {
        let choice = TextChoice {
            text,
            index,
            logprobs: None,
            finish_reason: finish,
        };
        self.frame([choice], self.usage_null())
    }

    /// The delay before the next event at token position `pos` (`None` = not a token).
    fn delay(&mut self, pos: Option<usize>) -> Duration {
        if self.emitted == 0 {
            self.paced_pos = pos;
            return self.plan.ttft;
        }
        match pos {
            Some(p) if p > 0 && self.paced_pos != Some(p) => {
                self.paced_pos = Some(p);
                self.plan.latency.per_token(&mut self.plan.rng)
            }
            _ => Duration::ZERO,
        }
    }

    fn next_event(&mut self) -> Option<(Duration, Bytes)> {
        let n = self.plan.choices.len();
        let event = loop {
            match self.phase {
                Phase::Roles(i) if i < n => {
                    self.phase = Phase::Roles(i + 1);
                    let delta = Delta::Role {
                        role: "assistant",
                        content: "",
                    };
                    break (self.delay(None), self.chat(i, delta, None));
                }
                Phase::Roles(_) => self.phase = Phase::Content { pos: 0, choice: 0 },
                Phase::Content { pos, .. } if pos >= self.longest => self.phase = Phase::Finish(0),
                Phase::Content { pos, choice } if choice >= n => {
                    self.phase = Phase::Content {
                        pos: pos + 1,
                        choice: 0,
                    };
                }
                Phase::Content { pos, choice } => {
                    self.phase = Phase::Content {
                        pos,
                        choice: choice + 1,
                    };
                    let Some(piece) = self.plan.choices[choice].pieces.get(pos).cloned() else {
                        continue;
                    };
                    let delay = self.delay(Some(pos));
                    let bytes = if self.plan.legacy {
                        self.text(choice, &piece, None)
                    } else {
                        self.chat(choice, Delta::Content { content: &piece }, None)
                    };
                    break (delay, bytes);
                }
                Phase::Finish(i) if i < n => {
                    self.phase = Phase::Finish(i + 1);
                    let reason = Some(self.plan.choices[i].finish_reason.as_str());
                    let bytes = if self.plan.legacy {
                        self.text(i, "", reason)
                    } else {
                        self.chat(i, Delta::Empty {}, reason)
                    };
                    break (self.delay(None), bytes);
                }
                Phase::Finish(_) => self.phase = Phase::Usage,
                Phase::Usage => {
                    self.phase = Phase::Done;
                    if let Some(usage) = self.plan.usage {
                        let bytes = self.frame::<[(); 0]>([], Some(Some(usage)));
                        break (self.delay(None), bytes);
                    }
                }
                Phase::Done => {
                    self.phase = Phase::Ended;
                    break (self.delay(None), Bytes::from_static(b"data: [DONE]\n\n"));
                }
                Phase::Ended => return None,
            }
        };
        self.emitted += 1;
        Some(event)
    }
}

/// Renders the whole stream (what zero-latency mode sends in one write).
pub fn render_all(plan: StreamPlan) -> Vec<u8> {
    let mut events = Events::new(plan);
    let mut out = Vec::new();
    while let Some((_, bytes)) = events.next_event() {
        out.extend_from_slice(&bytes);
    }
    out
}

/// The response body for `plan`: one write in zero-latency mode, else chunks paced by the
/// latency model; an injected drop ends the body with an error, which aborts the connection.
///
/// Events are paced against an absolute schedule (the first poll plus the sum of the delays
/// so far), so the timer's rounding of each sleep up to its tick does not accumulate: a
/// 100-token stream at 5 ms per token lasts 500 ms, not 100 rounded-up sleeps.
pub fn body(plan: StreamPlan) -> Body {
    let drop_after = plan.drop_after;
    if plan.latency.is_zero() && drop_after.is_none() {
        return Body::from(render_all(plan));
    }
    let state = Some((Events::new(plan), 0usize, None::<tokio::time::Instant>));
    let stream = futures::stream::unfold(state, move |state| async move {
        let (mut events, sent, due) = state?;
        if drop_after == Some(sent) {
            let err = std::io::Error::other("injected fault: connection dropped mid-stream");
            return Some((Err(err), None));
        }
        let (delay, bytes) = events.next_event()?;
        let due = due.unwrap_or_else(tokio::time::Instant::now) + delay;
        if !delay.is_zero() {
            tokio::time::sleep_until(due).await;
        }
        Some((Ok(bytes), Some((events, sent + 1, Some(due)))))
    });
    Body::from_stream(stream)
}
