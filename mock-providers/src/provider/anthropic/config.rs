//! The `[anthropic]` table: keys, the quota rules that changed over time, and the models.

use std::time::Duration;

use serde::Deserialize;

use crate::generation::tokenizer::Encoding;
use crate::units::de_duration;

/// How output tokens are charged to the OTPM bucket (Anthropic's documentation changed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OtpmRule {
    /// 2024–mid 2025 text: "estimated based on `max_tokens` at the beginning of each
    /// request, and the estimate is adjusted at the end of the request to reflect the
    /// actual number of output tokens used": `max_tokens` must fit at admission and is
    /// charged then; `max_tokens − output` is refunded when the response ends.
    #[default]
    MaxTokens,
    /// 2026 text: "evaluated in real time as output tokens are produced, counting only the
    /// actual tokens generated": a request is admitted when at least one output token is
    /// free, and its output tokens are charged when the response ends (the bucket may be
    /// overdrawn; the debt is repaid before the next admission).
    Generated,
}

/// Where an injected `overloaded_error` event appears in a 200 stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverloadedAt {
    /// After `message_start`, `content_block_start`, `ping` and half the deltas.
    #[default]
    Middle,
    /// As the first event (what an overload on a stream request often looks like).
    Start,
}

/// The Anthropic mock: `POST /v1/messages`, `POST /v1/messages/count_tokens` and
/// `GET /v1/models` (selected by the `anthropic-version` or `x-api-key` header on the
/// shared `/v1/models` path).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnthropicConfig {
    /// Accepted keys (`x-api-key` or `Authorization: Bearer`); empty = any non-empty key.
    pub keys: Vec<String>,
    /// Keys that authenticate but may not use any model: 403 `permission_error`.
    pub forbidden_keys: Vec<String>,
    /// `anthropic-organization-id` on every response, and the org in 429 messages.
    pub organization_id: String,
    /// `anthropic-version` values accepted (any other is a 400): `2023-06-01` (the
    /// documented one), `2023-01-01` (deprecated) and `2026-10-21` (what the `anthropic`
    /// Python SDK 2.17 on PyPI sends).
    pub versions: Vec<String>,
    /// How output tokens are charged (see [`OtpmRule`]).
    pub otpm_rule: OtpmRule,
    /// Short-interval enforcement of RPM ("60 RPM might be enforced as 1 request per
    /// second"): the request bucket's burst becomes `rpm × interval / 60 s` (at least 1) at
    /// the same rate. Absent = a bucket of a full minute's requests.
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub rpm_interval: Option<Duration>,
    /// Round token `remaining` headers to the nearest thousand, as the real API documents
    /// (off by default: exact values keep clients' local views exact).
    pub round_token_remaining: bool,
    /// Pad SSE data lines as live captures show: 0–15 spaces (seeded) before the final `}`
    /// of every event but `ping` (still valid JSON; off by default).
    pub sse_padding: bool,
    /// The models served; each has its own buckets.
    pub models: Vec<AnthropicModelConfig>,
}

impl Default for AnthropicConfig {
    /// Any non-empty key; organization `00000000-0000-4000-8000-000000000000`; versions
    /// `2023-06-01`, `2023-01-01` and `2026-10-21`; OTPM
    /// estimated from `max_tokens`; per-minute RPM; three models at the 2026 Start tier
    /// (1 000 RPM, 2 000 000 ITPM, 400 000 OTPM).
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            forbidden_keys: Vec::new(),
            organization_id: "00000000-0000-4000-8000-000000000000".to_owned(),
            versions: ["2023-06-01", "2023-01-01", "2026-10-21"]
                .map(str::to_owned)
                .to_vec(),
            otpm_rule: OtpmRule::MaxTokens,
            rpm_interval: None,
            round_token_remaining: false,
            sse_padding: false,
            models: vec![
                AnthropicModelConfig::new(
                    "claude-opus-4-5-20251101",
                    "Claude Opus 4.5",
                    "2025-11-01T00:00:00Z",
                ),
                AnthropicModelConfig::new(
                    "claude-haiku-4-5-20251001",
                    "Claude Haiku 4.5",
                    "2025-10-01T00:00:00Z",
                ),
                AnthropicModelConfig::new(
                    "claude-sonnet-4-5-20250929",
                    "Claude Sonnet 4.5",
                    "2025-09-29T00:00:00Z",
                ),
            ],
        }
    }
}

/// One Anthropic model and its rate limits (per organization).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnthropicModelConfig {
    /// Model id, e.g. `claude-sonnet-4-5-20250929` (required).
    pub id: String,
    /// `display_name` in `/v1/models`.
    pub display_name: String,
    /// `created_at` in `/v1/models` (RFC 3339).
    pub created_at: String,
    /// Tokenizer the mock counts with (Anthropic's is not public; counts are the mock's).
    pub encoding: Encoding,
    /// Requests per minute.
    pub rpm: u64,
    /// Input tokens per minute (`input_tokens + cache_creation_input_tokens`; cache reads
    /// are not counted).
    pub itpm: u64,
    /// Output tokens per minute (charged per [`OtpmRule`]).
    pub otpm: u64,
    /// `POST /v1/messages/count_tokens` requests per minute (a bucket of its own).
    pub count_tokens_rpm: u64,
    /// Largest `max_tokens` accepted (400 above it).
    pub max_tokens: u32,
    /// Largest prompt in tokens (400 "prompt is too long" above it).
    pub context_window: u32,
    /// Faults injected on this model's `/v1/messages`.
    pub faults: AnthropicFaults,
}

impl Default for AnthropicModelConfig {
    /// An unnamed model at the 2026 Start tier: 1 000 RPM, 2 000 000 ITPM, 400 000 OTPM,
    /// 2 000 count_tokens RPM; `max_tokens` up to 64 000; 200 000-token context.
    fn default() -> Self {
        Self {
            id: String::new(),
            display_name: String::new(),
            created_at: "2025-01-01T00:00:00Z".to_owned(),
            encoding: Encoding::Cl100kBase,
            rpm: 1_000,
            itpm: 2_000_000,
            otpm: 400_000,
            count_tokens_rpm: 2_000,
            max_tokens: 64_000,
            context_window: 200_000,
            faults: AnthropicFaults::default(),
        }
    }
}

impl AnthropicModelConfig {
    /// A model with default limits.
    pub fn new(id: &str, display_name: &str, created_at: &str) -> Self {
        Self {
            id: id.to_owned(),
            display_name: display_name.to_owned(),
            created_at: created_at.to_owned(),
            ..Self::default()
        }
    }

    /// A model named `id` with the given requests, input and output tokens per minute.
    pub fn with_limits(id: &str, rpm: u64, itpm: u64, otpm: u64) -> Self {
        Self {
            id: id.to_owned(),
            display_name: id.to_owned(),
            rpm,
            itpm,
            otpm,
            ..Self::default()
        }
    }
}

/// Faults injected into admitted `/v1/messages` requests (after the quota charged them).
/// Probabilities per request in `0.0..=1.0`, drawn from the seeded generator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnthropicFaults {
    /// 500 `api_error`.
    pub error_500: f64,
    /// 529 `overloaded_error` (also on stream requests, before any event).
    pub error_529: f64,
    /// A 200 stream that carries an `event: error` with `overloaded_error` and ends.
    pub stream_overloaded: f64,
    /// Where that event appears.
    pub stream_overloaded_at: OverloadedAt,
    /// A stream whose connection drops after about half its events.
    pub drop_mid_stream: f64,
    /// A stall of `stall_for` before the first byte.
    pub stall: f64,
    /// How long a stall lasts.
    #[serde(deserialize_with = "de_duration")]
    pub stall_for: Duration,
    /// When set, `x-should-retry: true|false` on every 429, 500 and 529.
    pub should_retry: Option<bool>,
}

impl AnthropicFaults {
    /// The first probability outside `0..=1`, described.
    pub fn problem(&self) -> Option<String> {
        [
            ("error_500", self.error_500),
            ("error_529", self.error_529),
            ("stream_overloaded", self.stream_overloaded),
            ("drop_mid_stream", self.drop_mid_stream),
            ("stall", self.stall),
        ]
        .into_iter()
        .find(|(_, p)| !(0.0..=1.0).contains(p))
        .map(|(name, p)| format!("{name} probability {p} is outside 0..=1"))
    }
}

fn de_opt_duration<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<Duration>, D::Error> {
    de_duration(de).map(Some)
}

/// A problem with the `[anthropic]` table: (list index or `None` for the table, key, message).
pub type Problem = (Option<usize>, &'static str, String);

impl AnthropicConfig {
    /// Checks what serde cannot: ids present and unique, limits and times usable.
    pub fn problem(&self) -> Option<Problem> {
        if let Some(i) = self.rpm_interval {
            if i.is_zero() || i > Duration::from_secs(60) {
                let msg = format!("rpm_interval {i:?} must be within (0, 60s]");
                return Some((None, "rpm_interval", msg));
            }
        }
        if self.versions.is_empty() {
            return Some((None, "versions", "at least one version is needed".into()));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, m) in self.models.iter().enumerate() {
            if m.id.is_empty() || !seen.insert(m.id.as_str()) {
                let msg = format!("model id {:?} is empty or repeated", m.id);
                return Some((Some(i), "id", msg));
            }
            for (key, value) in [
                ("rpm", m.rpm),
                ("itpm", m.itpm),
                ("otpm", m.otpm),
                ("count_tokens_rpm", m.count_tokens_rpm),
            ] {
                if value == 0 {
                    return Some((Some(i), key, format!("{key} must be at least 1")));
                }
            }
            if m.max_tokens == 0 {
                return Some((
                    Some(i),
                    "max_tokens",
                    "max_tokens must be at least 1".into(),
                ));
            }
            if humantime::parse_rfc3339(&m.created_at).is_err() {
                let msg = format!("created_at {:?} is not an RFC 3339 time", m.created_at);
                return Some((Some(i), "created_at", msg));
            }
            if let Some(p) = m.faults.problem() {
                return Some((Some(i), "faults", p));
            }
        }
        None
    }
}
