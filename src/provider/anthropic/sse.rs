//! The Messages API's named SSE events into [`StreamChunk`]s, and the stream's ending
//! checked. Pure (fed [`SseEvent`]s from the shared [`SseParser`](crate::provider::sse::SseParser)),
//! so every sequence is unit-tested.
//!
//! - `message_start`: the usage so far (input and cache counts, a first output count);
//! - `content_block_delta` with a `text_delta`: a text chunk for choice 0 (other deltas —
//!   tool input JSON, thinking — carry no text and are skipped);
//! - `message_delta`: the finish reason (from `stop_reason`) as a chunk, and the
//!   *cumulative* usage, merged over what `message_start` said;
//! - `message_stop`: the usage chunk (input = input + cache writes, output = generated),
//!   then the end;
//! - `ping`, `content_block_start`/`stop` and unknown events: nothing;
//! - `error` (e.g. `overloaded_error` inside a 200): a retryable [`ConnectorError::Stream`].
//!
//! A stream that ends before `message_stop` is a [`ConnectorError::Stream`].

use std::collections::VecDeque;

use serde::Deserialize;

use crate::provider::error::ConnectorError;
use crate::provider::sse::SseEvent;
use crate::provider::types::StreamChunk;

use super::errors::stream_error;
use super::wire::{finish_reason, WireMessage, WireUsage};

#[derive(Debug, Deserialize)]
struct Start {
    message: WireMessage,
}

#[derive(Debug, Deserialize)]
struct Delta {
    #[serde(default)]
    delta: DeltaBody,
}

#[derive(Debug, Default, Deserialize)]
struct DeltaBody {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
struct MessageDelta {
    #[serde(default)]
    delta: StopBody,
    #[serde(default)]
    usage: WireUsage,
}

#[derive(Debug, Default, Deserialize)]
struct StopBody {
    #[serde(default)]
    stop_reason: Option<String>,
}

/// Decodes one Messages stream.
#[derive(Debug, Default)]
pub struct EventDecoder {
    started: bool,
    done: bool,
    usage: WireUsage,
}

impl EventDecoder {
    /// A decoder at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `message_stop` was received (later events are ignored).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Decodes `event`, pushing its chunks onto `out`. An `error` event, a payload that
    /// does not parse, or content before `message_start` is a [`ConnectorError::Stream`].
    pub fn on_event(
        &mut self,
        event: &SseEvent,
        out: &mut VecDeque<StreamChunk>,
    ) -> Result<(), ConnectorError> {
        if self.done {
            return Ok(());
        }
        let data = event.data.trim();
        let name = event.event.as_deref().unwrap_or("");
        let bad = |e: serde_json::Error| ConnectorError::Stream {
            message: format!("unparseable {name} event ({e}): {}", clip(data)),
        };
        match name {
            "error" => return Err(stream_error(data)),
            "ping" | "content_block_start" | "content_block_stop" | "" => return Ok(()),
            "message_start" => {
                let start: Start = serde_json::from_str(data).map_err(bad)?;
                self.usage = start.message.usage;
                self.started = true;
                return Ok(());
            }
            _ => {}
        }
        if !self.started
            && matches!(
                name,
                "content_block_delta" | "message_delta" | "message_stop"
            )
        {
            return Err(ConnectorError::Stream {
                message: format!("{name} event before message_start"),
            });
        }
        match name {
            "content_block_delta" => {
                let d: Delta = serde_json::from_str(data).map_err(bad)?;
                if d.delta.kind == "text_delta" {
                    if let Some(text) = d.delta.text.filter(|t| !t.is_empty()) {
                        out.push_back(StreamChunk {
                            delta: text,
                            ..StreamChunk::default()
                        });
                    }
                }
            }
            "message_delta" => {
                let d: MessageDelta = serde_json::from_str(data).map_err(bad)?;
                self.usage = self.usage.merged(d.usage);
                if let Some(reason) = d.delta.stop_reason {
                    out.push_back(StreamChunk {
                        finish_reason: Some(finish_reason(&reason)),
                        ..StreamChunk::default()
                    });
                }
            }
            "message_stop" => {
                self.done = true;
                out.push_back(StreamChunk {
                    usage: Some(self.usage.to_usage()),
                    ..StreamChunk::default()
                });
            }
            _ => {}
        }
        Ok(())
    }

    /// Ends the stream: `open_event` (what the parser still held) is decoded if complete;
    /// then the stream must have seen `message_stop`.
    pub fn finish(
        &mut self,
        open_event: Option<SseEvent>,
        out: &mut VecDeque<StreamChunk>,
    ) -> Result<(), ConnectorError> {
        if let Some(event) = open_event {
            self.on_event(&event, out)?;
        }
        if self.done {
            Ok(())
        } else {
            Err(ConnectorError::Stream {
                message: "stream ended before message_stop".into(),
            })
        }
    }
}

fn clip(s: &str) -> &str {
    let mut end = s.len().min(200);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::sse::SseParser;
    use crate::provider::{FinishReason, Usage};

    /// The live 2026 capture of the wire facts (padding included).
    const CAPTURE: &str = concat!(
        "event: message_start\n",
        "data: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-haiku-4-5-20251001\",\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"stop_details\":null,\"usage\":{\"input_tokens\":11,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,\"cache_creation\":{\"ephemeral_5m_input_tokens\":0,\"ephemeral_1h_input_tokens\":0},\"output_tokens\":1,\"service_tier\":\"standard\",\"inference_geo\":\"not_available\"}}   }\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}         }\n\n",
        "event: ping\n",
        "data: {\"type\": \"ping\"}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}            }\n\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":0              }\n\n",
        "event: message_delta\n",
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null,\"stop_details\":null},\"usage\":{\"input_tokens\":11,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,\"output_tokens\":4}            }\n\n",
        "event: message_stop\n",
        "data: {\"type\":\"message_stop\"               }\n\n",
    );

    fn decode(text: &str) -> (Vec<StreamChunk>, Result<(), ConnectorError>) {
        let mut parser = SseParser::new();
        let mut events = Vec::new();
        parser.feed(text.as_bytes(), &mut events);
        let mut d = EventDecoder::new();
        let mut out = VecDeque::new();
        for e in &events {
            if let Err(err) = d.on_event(e, &mut out) {
                return (out.into(), Err(err));
            }
        }
        let end = d.finish(parser.finish(), &mut out);
        (out.into(), end)
    }

    #[test]
    fn the_live_capture_decodes_to_text_finish_and_cumulative_usage() {
        let (chunks, end) = decode(CAPTURE);
        end.unwrap();
        assert_eq!(chunks.len(), 3, "{chunks:?}");
        assert_eq!(chunks[0].delta, "hi");
        assert_eq!(chunks[1].finish_reason, Some(FinishReason::Stop));
        assert_eq!(
            chunks[2].usage,
            Some(Usage {
                input_tokens: 11,
                output_tokens: 4
            })
        );
    }

    #[test]
    fn an_overloaded_event_mid_stream_is_a_retryable_stream_error() {
        let cut = CAPTURE.find("event: content_block_stop").unwrap();
        let text = format!(
            "{}event: error\ndata: {{\"type\":\"error\",\"error\":{{\"details\":null,\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}},\"request_id\":\"req_1\"}}\n\n",
            &CAPTURE[..cut]
        );
        let (chunks, end) = decode(&text);
        assert_eq!(chunks[0].delta, "hi", "text before the error is delivered");
        let err = end.unwrap_err();
        assert!(err.is_retryable());
        assert!(err.to_string().contains("overloaded_error"), "{err}");
    }

    #[test]
    fn a_stream_cut_before_message_stop_is_an_error() {
        let cut = CAPTURE.find("event: message_stop").unwrap();
        let (_, end) = decode(&CAPTURE[..cut]);
        assert!(matches!(end, Err(ConnectorError::Stream { .. })));
        let (_, end) = decode(&CAPTURE[CAPTURE.find("event: content_block_delta").unwrap()..]);
        assert!(end
            .unwrap_err()
            .to_string()
            .contains("before message_start"));
    }
}
