//! The provider-neutral request, response and metadata types every connector speaks.
//!
//! Callers build a [`CompletionRequest`] once and hand it to any [`LLMProvider`]; connectors
//! translate it to their wire format and translate the answer back into a
//! [`CompletionResponse`] or a stream of [`StreamChunk`]s. All types are serde-based so they
//! can be logged, cached and replayed; deserialisation tolerates unknown fields.
//!
//! [`LLMProvider`]: super::LLMProvider

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::config::ApiKey;
use crate::limiter::ResponseMeta;

/// Who wrote a [`Message`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Instructions from the application (`"system"`).
    System,
    /// Instructions that replace `system` on newer OpenAI models (`"developer"`).
    Developer,
    /// The end user (`"user"`).
    User,
    /// The model (`"assistant"`).
    Assistant,
    /// The result of a tool call (`"tool"`).
    Tool,
}

/// One message of a chat conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// Its text (empty for an assistant message that only refused or called tools).
    #[serde(default, deserialize_with = "de_null_as_empty")]
    pub content: String,
    /// An optional participant name, passed through to the provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Message {
    /// A message from `role` with text `content`.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            name: None,
        }
    }

    /// A `system` message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }

    /// A `user` message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }

    /// An `assistant` message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }
}

/// A provider-neutral chat completion request.
///
/// `stream` is informational: [`send_completion`](super::LLMProvider::send_completion) always
/// sends a non-streaming request and [`stream_completion`](super::LLMProvider::stream_completion)
/// a streaming one, whatever this field says.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CompletionRequest {
    /// Model name (OpenAI) — for Azure the deployment in the connector's config decides the
    /// model and this field is sent only when non-empty.
    pub model: String,
    /// The conversation, oldest first.
    pub messages: Vec<Message>,
    /// Largest number of tokens to generate per choice (tokens, not characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Sampling temperature, 0 ..= 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Nucleus sampling mass, 0 ..= 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Number of choices to generate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    /// Up to four stop sequences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Vec<String>>,
    /// Whether the caller wants a stream (see the type's docs).
    #[serde(default)]
    pub stream: bool,
    /// An end-user identifier, passed through for abuse monitoring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Extra top-level body fields for the provider (`seed`, `tools`,
    /// `max_completion_tokens`, …). A key that a typed field above already sets, and the
    /// connector-controlled `stream` / `stream_options`, are not overridden.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub provider_params: serde_json::Map<String, serde_json::Value>,
    /// A credential for this request only: when set, connectors send it in their usual
    /// auth header (`Authorization: Bearer` / Azure's `api-key`) instead of the configured
    /// key. Set by [`AuthMiddleware`](crate::middleware::AuthMiddleware); never serialised
    /// (so it is not part of cache keys or logs) and redacted in `Debug`.
    #[serde(skip)]
    pub credential: Option<ApiKey>,
}

impl CompletionRequest {
    /// A request for `model` with `messages` and every option unset.
    pub fn new(model: impl Into<String>, messages: Vec<Message>) -> Self {
        Self {
            model: model.into(),
            messages,
            ..Self::default()
        }
    }

    /// The same request with `max_tokens` set (tokens per choice).
    pub fn with_max_tokens(mut self, max_tokens: u32) -> Self {
        self.max_tokens = Some(max_tokens);
        self
    }
}

/// Why generation of a choice stopped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FinishReason {
    /// A natural stop or a stop sequence (`"stop"`).
    Stop,
    /// `max_tokens` or the context window was reached (`"length"`).
    Length,
    /// The model called tools (`"tool_calls"`).
    ToolCalls,
    /// Content was filtered (`"content_filter"`).
    ContentFilter,
    /// The model called a function, legacy API (`"function_call"`).
    FunctionCall,
    /// A reason this crate does not know, kept verbatim.
    Other(String),
}

impl FinishReason {
    /// The wire spelling.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
            Self::ToolCalls => "tool_calls",
            Self::ContentFilter => "content_filter",
            Self::FunctionCall => "function_call",
            Self::Other(s) => s,
        }
    }
}

impl From<&str> for FinishReason {
    fn from(s: &str) -> Self {
        match s {
            "stop" => Self::Stop,
            "length" => Self::Length,
            "tool_calls" => Self::ToolCalls,
            "content_filter" => Self::ContentFilter,
            "function_call" => Self::FunctionCall,
            other => Self::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for FinishReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for FinishReason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for FinishReason {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Ok(Self::from(s.as_ref()))
    }
}

/// Tokens a request consumed, as the provider counted them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens (`prompt_tokens` on the wire).
    pub input_tokens: u64,
    /// Generated tokens over all choices (`completion_tokens` on the wire).
    pub output_tokens: u64,
}

impl Usage {
    /// Input plus output tokens.
    pub fn total(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }
}

/// One generated alternative of a [`CompletionResponse`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Choice {
    /// Position among the `n` choices, from 0.
    pub index: u32,
    /// The generated message (role `assistant`).
    pub message: Message,
    /// Why it stopped, when the provider said.
    pub finish_reason: Option<FinishReason>,
}

/// A provider-neutral completion result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletionResponse {
    /// The provider's response id (`chatcmpl-…`).
    pub id: String,
    /// The model that answered, as the provider names it.
    pub model: String,
    /// The generated alternatives, by index.
    pub choices: Vec<Choice>,
    /// The first choice's finish reason (the common single-choice case).
    pub finish_reason: Option<FinishReason>,
    /// Tokens consumed; zero when the provider reported no usage.
    pub usage: Usage,
    /// What the response headers said about quota, read by the connector's header profile;
    /// hand it to the limiter's `record_usage`.
    #[serde(skip)]
    pub meta: ResponseMeta,
}

impl CompletionResponse {
    /// The first choice's text, or `""` when there is no choice.
    pub fn text(&self) -> &str {
        self.choices
            .first()
            .map(|c| c.message.content.as_str())
            .unwrap_or("")
    }
}

/// One piece of a streamed completion.
///
/// Chunks carry either text for one choice, a choice's finish reason, or — once, at the
/// end, when the connector asked for it — the usage of the whole request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamChunk {
    /// New text for choice `index` (may be empty on a finish or usage chunk).
    pub delta: String,
    /// The choice this chunk belongs to.
    pub index: u32,
    /// Set on the choice's last chunk.
    pub finish_reason: Option<FinishReason>,
    /// Set on the final usage chunk: exact tokens of the whole request.
    pub usage: Option<Usage>,
}

/// USD prices of a model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Pricing {
    /// US dollars per 1 000 input tokens.
    pub input_per_1k_tokens: f64,
    /// US dollars per 1 000 output tokens.
    pub output_per_1k_tokens: f64,
}

/// What is known about one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Model id (for Azure, the deployment name).
    pub id: String,
    /// Context window in tokens, when known.
    pub context_window: Option<u32>,
    /// Largest output in tokens, when known.
    pub max_output_tokens: Option<u32>,
    /// Prices, when known.
    pub pricing: Option<Pricing>,
    /// Whether the model streams chat completions.
    pub supports_streaming: bool,
    /// Owner as the provider reports it (`owned_by`), when it does.
    pub owned_by: Option<String>,
}

/// Rate limits the provider reported for the connector's account.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimits {
    /// Requests per minute (`x-ratelimit-limit-requests`), when reported.
    pub requests_per_minute: Option<u64>,
    /// Tokens per minute (`x-ratelimit-limit-tokens`), when reported.
    pub tokens_per_minute: Option<u64>,
}

/// A provider's capabilities: models, prices, limits and API version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderMetadata {
    /// The connector's provider id.
    pub provider_id: String,
    /// The API version spoken (`"v1"` for OpenAI, the `api-version` for Azure).
    pub api_version: String,
    /// The models available.
    pub models: Vec<ModelInfo>,
    /// The limits last reported in response headers (all `None` before any were seen).
    pub rate_limits: RateLimits,
}

/// The outcome of [`health_check`](super::LLMProvider::health_check).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HealthStatus {
    /// The provider answered the probe with a success.
    Healthy,
    /// The provider is up but throttling or failing (429, 5xx).
    Degraded {
        /// What the probe saw.
        reason: String,
    },
    /// The provider is unreachable, timed out, or refused the credentials.
    Unhealthy {
        /// What the probe saw.
        reason: String,
    },
}

fn de_null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finish_reason_round_trips_and_keeps_unknown_values() {
        for s in [
            "stop",
            "length",
            "tool_calls",
            "content_filter",
            "function_call",
            "eos",
        ] {
            let r: FinishReason = serde_json::from_str(&format!("\"{s}\"")).unwrap();
            assert_eq!(r.as_str(), s);
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{s}\""));
        }
        assert_eq!(FinishReason::from("eos"), FinishReason::Other("eos".into()));
    }

    #[test]
    fn message_tolerates_null_content_and_unknown_fields() {
        let m: Message =
            serde_json::from_str(r#"{"role":"assistant","content":null,"refusal":"no"}"#).unwrap();
        assert_eq!(m, Message::assistant(""));
    }

    #[test]
    fn usage_total_adds_input_and_output() {
        let u = Usage {
            input_tokens: 14,
            output_tokens: 37,
        };
        assert_eq!(u.total(), 51);
    }

    #[test]
    fn request_omits_unset_options() {
        let r = CompletionRequest::new("gpt-4o-mini", vec![Message::user("hi")]);
        let v = serde_json::to_value(&r).unwrap();
        assert!(v.get("max_tokens").is_none() && v.get("provider_params").is_none());
    }
}
