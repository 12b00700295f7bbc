//! Response bodies: the Message object, SSE event data, the token count and the model list,
//! in the field order of the 2026 wire (a live capture puts `model` first; clients do not
//! depend on the order).

use serde::Serialize;

use super::config::AnthropicModelConfig;

/// Token counts of one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tokens {
    /// Input tokens not read from or written to the cache.
    pub input: u64,
    /// Input tokens written to the cache.
    pub cache_creation: u64,
    /// Input tokens read from the cache.
    pub cache_read: u64,
    /// Output tokens.
    pub output: u64,
}

#[derive(Serialize)]
struct CacheCreation {
    ephemeral_5m_input_tokens: u64,
    ephemeral_1h_input_tokens: u64,
}

#[derive(Serialize)]
struct Usage {
    input_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_read_input_tokens: u64,
    cache_creation: CacheCreation,
    output_tokens: u64,
    service_tier: &'static str,
    inference_geo: &'static str,
}

impl From<Tokens> for Usage {
    fn from(t: Tokens) -> Self {
        Self {
            input_tokens: t.input,
            cache_creation_input_tokens: t.cache_creation,
            cache_read_input_tokens: t.cache_read,
            cache_creation: CacheCreation {
                ephemeral_5m_input_tokens: t.cache_creation,
                ephemeral_1h_input_tokens: 0,
            },
            output_tokens: t.output,
            service_tier: "standard",
            inference_geo: "not_available",
        }
    }
}

#[derive(Serialize)]
struct TextBlock<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
}

#[derive(Serialize)]
struct Message<'a> {
    model: &'a str,
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    content: Vec<TextBlock<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    container: Option<Option<()>>,
    stop_reason: Option<&'a str>,
    stop_sequence: Option<&'a str>,
    stop_details: Option<()>,
    usage: Usage,
    #[serde(skip_serializing_if = "Option::is_none")]
    diagnostics: Option<Option<()>>,
}

/// Why generation ended, as `stop_reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// `end_turn`.
    EndTurn,
    /// `max_tokens`.
    MaxTokens,
    /// `stop_sequence`, with the matched sequence.
    Sequence(String),
}

impl Stop {
    /// The `stop_reason` value.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::EndTurn => "end_turn",
            Self::MaxTokens => "max_tokens",
            Self::Sequence(_) => "stop_sequence",
        }
    }

    /// The `stop_sequence` value.
    pub fn sequence(&self) -> Option<&str> {
        match self {
            Self::Sequence(s) => Some(s),
            _ => None,
        }
    }
}

/// The identity of a response.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    /// `msg_…`.
    pub id: &'a str,
    /// The model id.
    pub model: &'a str,
}

fn to_vec<T: Serialize>(value: &T) -> Vec<u8> {
    // Plain structs of strings and numbers serialize without error.
    serde_json::to_vec(value).unwrap_or_default()
}

/// The non-streamed `Message` (a text block unless the text is empty).
pub fn message(env: Envelope<'_>, text: &str, stop: &Stop, tokens: Tokens) -> Vec<u8> {
    let content = if text.is_empty() {
        Vec::new()
    } else {
        vec![TextBlock { kind: "text", text }]
    };
    to_vec(&Message {
        model: env.model,
        id: env.id,
        kind: "message",
        role: "assistant",
        content,
        container: Some(None),
        stop_reason: Some(stop.reason()),
        stop_sequence: stop.sequence(),
        stop_details: None,
        usage: tokens.into(),
        diagnostics: Some(None),
    })
}

#[derive(Serialize)]
struct MessageStart<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: Message<'a>,
}

/// `message_start` data: the message with empty content, null stop, and usage with
/// `output_tokens` as given (1 in live captures).
pub fn message_start(env: Envelope<'_>, tokens: Tokens) -> Vec<u8> {
    to_vec(&MessageStart {
        kind: "message_start",
        message: Message {
            model: env.model,
            id: env.id,
            kind: "message",
            role: "assistant",
            content: Vec::new(),
            container: None,
            stop_reason: None,
            stop_sequence: None,
            stop_details: None,
            usage: tokens.into(),
            diagnostics: None,
        },
    })
}

#[derive(Serialize)]
struct BlockStart<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: usize,
    content_block: TextBlock<'a>,
}

/// `content_block_start` data for an empty text block.
pub fn content_block_start(index: usize) -> Vec<u8> {
    to_vec(&BlockStart {
        kind: "content_block_start",
        index,
        content_block: TextBlock {
            kind: "text",
            text: "",
        },
    })
}

#[derive(Serialize)]
struct BlockDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: usize,
    delta: TextDelta<'a>,
}

#[derive(Serialize)]
struct TextDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
}

/// `content_block_delta` data with a `text_delta`.
pub fn text_delta(index: usize, text: &str) -> Vec<u8> {
    to_vec(&BlockDelta {
        kind: "content_block_delta",
        index,
        delta: TextDelta {
            kind: "text_delta",
            text,
        },
    })
}

#[derive(Serialize)]
struct BlockStop {
    #[serde(rename = "type")]
    kind: &'static str,
    index: usize,
}

/// `content_block_stop` data.
pub fn content_block_stop(index: usize) -> Vec<u8> {
    to_vec(&BlockStop {
        kind: "content_block_stop",
        index,
    })
}

#[derive(Serialize)]
struct MessageDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    delta: StopDelta<'a>,
    usage: DeltaUsage,
}

#[derive(Serialize)]
struct StopDelta<'a> {
    stop_reason: &'a str,
    stop_sequence: Option<&'a str>,
    stop_details: Option<()>,
}

#[derive(Serialize)]
struct DeltaUsage {
    input_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_read_input_tokens: u64,
    output_tokens: u64,
}

/// `message_delta` data: the stop and the cumulative usage.
pub fn message_delta(stop: &Stop, tokens: Tokens) -> Vec<u8> {
    to_vec(&MessageDelta {
        kind: "message_delta",
        delta: StopDelta {
            stop_reason: stop.reason(),
            stop_sequence: stop.sequence(),
            stop_details: None,
        },
        usage: DeltaUsage {
            input_tokens: tokens.input,
            cache_creation_input_tokens: tokens.cache_creation,
            cache_read_input_tokens: tokens.cache_read,
            output_tokens: tokens.output,
        },
    })
}

/// `message_stop` data.
pub const MESSAGE_STOP: &[u8] = br#"{"type":"message_stop"}"#;

/// `ping` data (with the space every capture shows).
pub const PING: &[u8] = br#"{"type": "ping"}"#;

#[derive(Serialize)]
struct StreamError<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: StreamErrorInner,
    request_id: &'a str,
}

#[derive(Serialize)]
struct StreamErrorInner {
    details: Option<()>,
    #[serde(rename = "type")]
    kind: &'static str,
    message: &'static str,
}

/// The data of an `event: error` carrying `overloaded_error` (the wire form, with
/// `details: null` and the request id).
pub fn overloaded_event(request_id: &str) -> Vec<u8> {
    to_vec(&StreamError {
        kind: "error",
        error: StreamErrorInner {
            details: None,
            kind: "overloaded_error",
            message: "Overloaded",
        },
        request_id,
    })
}

/// `data` with `spaces` spaces before its final `}` (unchanged when it does not end in `}`).
pub fn padded(data: &[u8], spaces: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + spaces);
    match data.split_last() {
        Some((b'}', head)) => {
            out.extend_from_slice(head);
            out.resize(out.len() + spaces, b' ');
            out.push(b'}');
        }
        _ => out.extend_from_slice(data),
    }
    out
}

/// One SSE frame: `event: <name>\ndata: <data>\n\n`.
pub fn frame(name: &str, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + data.len() + 16);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
    out
}

/// `{"input_tokens":N}`.
pub fn token_count(input_tokens: u64) -> Vec<u8> {
    format!("{{\"input_tokens\":{input_tokens}}}").into_bytes()
}

#[derive(Serialize)]
struct ModelInfo<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    display_name: &'a str,
    created_at: &'a str,
    max_input_tokens: u32,
    max_tokens: u32,
}

fn model_info(m: &AnthropicModelConfig) -> ModelInfo<'_> {
    ModelInfo {
        kind: "model",
        id: &m.id,
        display_name: if m.display_name.is_empty() {
            &m.id
        } else {
            &m.display_name
        },
        created_at: &m.created_at,
        max_input_tokens: m.context_window,
        max_tokens: m.max_tokens,
    }
}

/// One model object (`GET /v1/models/{id}`).
pub fn model(m: &AnthropicModelConfig) -> Vec<u8> {
    to_vec(&model_info(m))
}

#[derive(Serialize)]
struct ModelPage<'a> {
    data: Vec<ModelInfo<'a>>,
    has_more: bool,
    first_id: Option<&'a str>,
    last_id: Option<&'a str>,
}

/// A page of the model list (`GET /v1/models`), in the given order.
pub fn model_page(models: &[AnthropicModelConfig], has_more: bool) -> Vec<u8> {
    to_vec(&ModelPage {
        data: models.iter().map(model_info).collect(),
        has_more,
        first_id: models.first().map(|m| m.id.as_str()),
        last_id: models.last().map(|m| m.id.as_str()),
    })
}
