//! The Messages API JSON: the request body built from a [`CompletionRequest`], the response
//! and usage read back, the model list, and `stop_reason` → [`FinishReason`].
//!
//! Encoding rules: `system` (and `developer`) messages are joined, in order, with a blank
//! line into the top-level `system` string; `tool` messages are sent as `user` turns;
//! `max_tokens` is required (the request's, else `provider_params.max_tokens`) and its
//! absence is a [`ConnectorError::InvalidRequest`] before anything is sent; `n > 1` is
//! refused the same way (the API generates one answer); `stop` → `stop_sequences`, `user`
//! → `metadata.user_id`; other `provider_params` are copied to the body unless a typed
//! field already set the key.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::provider::error::ConnectorError;
use crate::provider::types::{CompletionRequest, FinishReason, Role, Usage};

/// One turn of `messages`.
#[derive(Debug, Serialize)]
pub(crate) struct Turn<'a> {
    role: &'static str,
    content: &'a str,
}

/// The body of `POST /v1/messages`.
#[derive(Debug, Serialize)]
pub(crate) struct MessagesBody<'a> {
    model: &'a str,
    max_tokens: u64,
    messages: Vec<Turn<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_sequences: Option<&'a [String]>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<Value>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

/// The caller's mistake, found before sending: [`ConnectorError::InvalidRequest`] with
/// status 400, the parameter named, no response meta.
fn invalid(param: &str, message: String) -> ConnectorError {
    ConnectorError::InvalidRequest {
        status: 400,
        message,
        param: Some(param.to_owned()),
        code: Some("invalid_request_error".to_owned()),
        meta: Box::default(),
    }
}

/// The output budget the request sets: `max_tokens`, else `provider_params.max_tokens`.
pub(crate) fn max_tokens_of(req: &CompletionRequest) -> Option<u64> {
    req.max_tokens.map(u64::from).or_else(|| {
        req.provider_params
            .get("max_tokens")
            .and_then(Value::as_u64)
    })
}

impl<'a> MessagesBody<'a> {
    /// The body for `req` (see the module docs for the rules); `stream` sets `stream: true`.
    pub fn new(req: &'a CompletionRequest, stream: bool) -> Result<Self, ConnectorError> {
        let max_tokens = max_tokens_of(req).ok_or_else(|| {
            invalid(
                "max_tokens",
                "max_tokens is required by the Anthropic Messages API: set it on the request"
                    .to_owned(),
            )
        })?;
        if req.n.is_some_and(|n| n > 1) {
            return Err(invalid(
                "n",
                format!(
                    "n = {} is not supported: the Anthropic Messages API generates one answer",
                    req.n.unwrap_or(1)
                ),
            ));
        }
        let mut system: Vec<&str> = Vec::new();
        let mut messages = Vec::with_capacity(req.messages.len());
        for m in &req.messages {
            let role = match m.role {
                Role::System | Role::Developer => {
                    system.push(&m.content);
                    continue;
                }
                Role::User | Role::Tool => "user",
                Role::Assistant => "assistant",
            };
            messages.push(Turn {
                role,
                content: &m.content,
            });
        }
        let metadata = req
            .user
            .as_ref()
            .map(|u| serde_json::json!({ "user_id": u }));
        const TYPED: [&str; 9] = [
            "model",
            "max_tokens",
            "messages",
            "system",
            "temperature",
            "top_p",
            "stop_sequences",
            "stream",
            "metadata",
        ];
        let extra = req
            .provider_params
            .iter()
            .filter(|(k, _)| !TYPED.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(Self {
            model: &req.model,
            max_tokens,
            messages,
            system: (!system.is_empty()).then(|| system.join("\n\n")),
            temperature: req.temperature,
            top_p: req.top_p,
            stop_sequences: req.stop.as_deref(),
            stream,
            metadata,
            extra,
        })
    }
}

/// `usage` of a message (and, cumulatively, of `message_delta`); absent counts are 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub(crate) struct WireUsage {
    #[serde(default)]
    pub input_tokens: Option<u64>,
    #[serde(default)]
    pub cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    pub cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    pub output_tokens: Option<u64>,
}

impl WireUsage {
    /// `later`'s counts where it has them, else this one's (a `message_delta` may repeat
    /// the input counts or carry only `output_tokens`).
    pub fn merged(self, later: Self) -> Self {
        Self {
            input_tokens: later.input_tokens.or(self.input_tokens),
            cache_creation_input_tokens: later
                .cache_creation_input_tokens
                .or(self.cache_creation_input_tokens),
            cache_read_input_tokens: later
                .cache_read_input_tokens
                .or(self.cache_read_input_tokens),
            output_tokens: later.output_tokens.or(self.output_tokens),
        }
    }

    /// The neutral usage as rate limits count it: input = `input_tokens +
    /// cache_creation_input_tokens` (what ITPM charges; cache reads are free of ITPM and
    /// left out), output = `output_tokens`.
    pub fn to_usage(self) -> Usage {
        Usage {
            input_tokens: self
                .input_tokens
                .unwrap_or(0)
                .saturating_add(self.cache_creation_input_tokens.unwrap_or(0)),
            output_tokens: self.output_tokens.unwrap_or(0),
        }
    }
}

/// One block of a message's `content`; only text blocks carry text.
#[derive(Debug, Deserialize)]
pub(crate) struct Block {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: Option<String>,
}

/// A `message` object (the non-streamed response, and `message_start`'s payload).
#[derive(Debug, Deserialize)]
pub(crate) struct WireMessage {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub content: Vec<Block>,
    #[serde(default)]
    pub stop_reason: Option<String>,
    #[serde(default)]
    pub usage: WireUsage,
}

impl WireMessage {
    /// The text blocks' text, concatenated in order.
    pub fn text(&self) -> String {
        self.content
            .iter()
            .filter(|b| b.kind == "text")
            .filter_map(|b| b.text.as_deref())
            .collect()
    }
}

/// `stop_reason` as a neutral finish reason: `end_turn` and `stop_sequence` → `Stop`,
/// `max_tokens` and `model_context_window_exceeded` → `Length`, `tool_use` →
/// `ToolCalls`, `refusal` → `ContentFilter`, anything else kept verbatim.
pub(crate) fn finish_reason(stop_reason: &str) -> FinishReason {
    match stop_reason {
        "end_turn" | "stop_sequence" => FinishReason::Stop,
        "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCalls,
        "refusal" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_owned()),
    }
}

/// One entry of `GET /v1/models`.
#[derive(Debug, Deserialize)]
pub(crate) struct WireModel {
    pub id: String,
}

/// The body of `GET /v1/models`.
#[derive(Debug, Deserialize)]
pub(crate) struct ModelList {
    pub data: Vec<WireModel>,
}

/// The error shape `{"type":"error","error":{"type":…,"message":…},"request_id":…}`, on
/// error responses and in `event: error`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ErrorEnvelope {
    #[serde(default)]
    pub error: Option<ErrorDetail>,
}

/// The `error` object: its type (`rate_limit_error`, `overloaded_error`, …) and message.
#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct ErrorDetail {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

/// The error detail of `body`, if it is the Anthropic error shape.
pub(crate) fn error_detail(body: &[u8]) -> Option<ErrorDetail> {
    serde_json::from_slice::<ErrorEnvelope>(body).ok()?.error
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::Message;

    #[test]
    fn system_messages_move_to_system_and_max_tokens_is_required() {
        let mut req = CompletionRequest::new(
            "claude-haiku-4-5-20251001",
            vec![
                Message::system("Be terse."),
                Message::user("hi"),
                Message::assistant("hello"),
                Message::system("No emoji."),
                Message::user("again"),
            ],
        );
        let err = MessagesBody::new(&req, false).unwrap_err();
        assert!(
            matches!(&err, ConnectorError::InvalidRequest { param: Some(p), status: 400, .. } if p == "max_tokens"),
            "{err:?}"
        );
        assert!(err.to_string().contains("max_tokens is required"));
        req.max_tokens = Some(64);
        req.stop = Some(vec!["END".into()]);
        req.user = Some("u-1".into());
        req.provider_params.insert("top_k".into(), 5.into());
        req.provider_params.insert("stream".into(), true.into());
        let v = serde_json::to_value(MessagesBody::new(&req, true).unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "model": "claude-haiku-4-5-20251001",
                "max_tokens": 64,
                "system": "Be terse.\n\nNo emoji.",
                "messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "hello"},
                    {"role": "user", "content": "again"}
                ],
                "stop_sequences": ["END"],
                "stream": true,
                "metadata": {"user_id": "u-1"},
                "top_k": 5
            })
        );
        req.max_tokens = None;
        req.provider_params.insert("max_tokens".into(), 9.into());
        let v = serde_json::to_value(MessagesBody::new(&req, false).unwrap()).unwrap();
        assert_eq!(v["max_tokens"], 9);
        assert!(v.get("stream").is_none());
        req.n = Some(2);
        assert!(MessagesBody::new(&req, false).is_err());
    }

    #[test]
    fn usage_counts_cache_writes_as_input_and_leaves_cache_reads_out() {
        let start: WireUsage = serde_json::from_str(
            r#"{"input_tokens":11,"cache_creation_input_tokens":100,"cache_read_input_tokens":500,"output_tokens":1}"#,
        )
        .unwrap();
        let delta: WireUsage = serde_json::from_str(r#"{"output_tokens":7}"#).unwrap();
        let u = start.merged(delta).to_usage();
        assert_eq!((u.input_tokens, u.output_tokens), (111, 7));
    }

    #[test]
    fn stop_reasons_map_to_finish_reasons() {
        assert_eq!(finish_reason("end_turn"), FinishReason::Stop);
        assert_eq!(finish_reason("stop_sequence"), FinishReason::Stop);
        assert_eq!(finish_reason("max_tokens"), FinishReason::Length);
        assert_eq!(finish_reason("tool_use"), FinishReason::ToolCalls);
        assert_eq!(finish_reason("refusal"), FinishReason::ContentFilter);
        assert_eq!(
            finish_reason("pause_turn"),
            FinishReason::Other("pause_turn".into())
        );
    }
}
