//! The OpenAI chat-completions wire format, which Azure OpenAI and OpenAI-compatible
//! servers share: request body, response, stream chunk, models list and error body.
//!
//! Kept apart from the neutral types so the translation is in one place. Deserialisation
//! ignores unknown fields and accepts `null` where servers send it.

use serde::{Deserialize, Serialize};

use super::types::{Choice, CompletionRequest, FinishReason, Message, Role, StreamChunk, Usage};

/// `stream_options` of a streaming request.
#[derive(Debug, Serialize)]
pub(crate) struct StreamOptions {
    pub include_usage: bool,
}

/// A chat completion request body, borrowing from the neutral request.
#[derive(Debug, Serialize)]
pub(crate) struct ChatBody<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    pub model: &'a str,
    pub messages: &'a [Message],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop: Option<&'a [String]>,
    pub stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<&'a str>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// Body keys the typed fields or the connector own; `provider_params` cannot override them.
const RESERVED_KEYS: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "temperature",
    "top_p",
    "n",
    "stop",
    "stream",
    "stream_options",
    "user",
];

impl<'a> ChatBody<'a> {
    /// The body for `req`; `stream_usage` asks for the final usage chunk when streaming.
    pub fn new(req: &'a CompletionRequest, stream: bool, stream_usage: bool) -> Self {
        let extra = if req.provider_params.is_empty() {
            serde_json::Map::new()
        } else {
            req.provider_params
                .iter()
                .filter(|(k, _)| !RESERVED_KEYS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        Self {
            model: &req.model,
            messages: &req.messages,
            max_tokens: req.max_tokens,
            temperature: req.temperature,
            top_p: req.top_p,
            n: req.n,
            stop: req.stop.as_deref(),
            stream,
            stream_options: (stream && stream_usage).then_some(StreamOptions {
                include_usage: true,
            }),
            user: req.user.as_deref(),
            extra,
        }
    }
}

/// `usage` on the wire.
#[derive(Debug, Clone, Copy, Deserialize)]
pub(crate) struct WireUsage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Self {
        Usage {
            input_tokens: u.prompt_tokens,
            output_tokens: u.completion_tokens,
        }
    }
}

#[derive(Debug, Deserialize)]
struct WireMessage {
    #[serde(default)]
    role: Option<Role>,
    #[serde(default)]
    content: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireChoice {
    #[serde(default)]
    index: u32,
    message: WireMessage,
    #[serde(default)]
    finish_reason: Option<FinishReason>,
}

/// A non-streaming chat completion.
#[derive(Debug, Deserialize)]
pub(crate) struct ChatResponse {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub model: String,
    choices: Vec<WireChoice>,
    #[serde(default)]
    pub usage: Option<WireUsage>,
}

impl ChatResponse {
    /// The choices in neutral form, by index.
    pub fn take_choices(&mut self) -> Vec<Choice> {
        let mut choices: Vec<Choice> = self
            .choices
            .drain(..)
            .map(|c| Choice {
                index: c.index,
                message: Message::new(
                    c.message.role.unwrap_or(Role::Assistant),
                    c.message.content.unwrap_or_default(),
                ),
                finish_reason: c.finish_reason,
            })
            .collect();
        if !choices.windows(2).all(|w| w[0].index <= w[1].index) {
            choices.sort_by_key(|c| c.index);
        }
        choices
    }
}

#[derive(Debug, Deserialize)]
struct WireDelta {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireChunkChoice {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    delta: Option<WireDelta>,
    #[serde(default)]
    finish_reason: Option<FinishReason>,
}

/// One `chat.completion.chunk` event, or an `{"error": …}` event.
#[derive(Debug, Deserialize)]
pub(crate) struct ChatChunk {
    #[serde(default)]
    choices: Vec<WireChunkChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    pub error: Option<ErrorField>,
}

impl ChatChunk {
    /// Calls `emit` with the neutral chunks this event carries: one per choice that has text
    /// or a finish reason, then one for the usage if present. Role-only deltas are dropped.
    pub fn for_each_chunk(self, mut emit: impl FnMut(StreamChunk)) {
        for c in self.choices {
            let delta = c.delta.and_then(|d| d.content).unwrap_or_default();
            if delta.is_empty() && c.finish_reason.is_none() {
                continue;
            }
            emit(StreamChunk {
                delta,
                index: c.index,
                finish_reason: c.finish_reason,
                usage: None,
            });
        }
        if let Some(u) = self.usage {
            emit(StreamChunk {
                usage: Some(u.into()),
                ..StreamChunk::default()
            });
        }
    }
}

/// `GET /models`.
#[derive(Debug, Deserialize)]
pub(crate) struct ModelList {
    #[serde(default)]
    pub data: Vec<ModelEntry>,
}

/// One entry of [`ModelList`].
#[derive(Debug, Deserialize)]
pub(crate) struct ModelEntry {
    pub id: String,
    #[serde(default)]
    pub owned_by: Option<String>,
}

/// An error code: OpenAI sends strings (`"rate_limit_exceeded"`), Azure numeric strings
/// (`"429"`), some compatible servers numbers.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum ErrorCode {
    Text(String),
    Number(i64),
}

impl ErrorCode {
    pub fn into_string(self) -> String {
        match self {
            Self::Text(s) => s,
            Self::Number(n) => n.to_string(),
        }
    }
}

/// The `error` object of an error body.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ErrorDetail {
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub param: Option<String>,
    #[serde(default)]
    pub code: Option<ErrorCode>,
}

/// The `error` field: an object (OpenAI, Azure) or a bare string (some compatible servers).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum ErrorField {
    Detail(ErrorDetail),
    Text(String),
}

impl ErrorField {
    pub fn into_detail(self) -> ErrorDetail {
        match self {
            Self::Detail(d) => d,
            Self::Text(message) => ErrorDetail {
                message: Some(message),
                ..ErrorDetail::default()
            },
        }
    }
}

/// `{"error": {…}}`, or a bare `{"message": …}` as some gateways send.
#[derive(Debug, Deserialize)]
pub(crate) struct ErrorBody {
    #[serde(default)]
    pub error: Option<ErrorField>,
    #[serde(default)]
    pub message: Option<String>,
}
