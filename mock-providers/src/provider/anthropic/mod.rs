//! The Anthropic Messages API mock, whole: configuration ([`config`]), the RPM / ITPM /
//! OTPM quota engine ([`quota`]), request validation ([`request`]), token counts and the
//! generated answer ([`answer`]), bodies ([`wire`]), the
//! SSE stream ([`sse`]), errors ([`errors`]), headers ([`headers`]), per-model state
//! ([`state`]) and the handlers ([`serve`]). The server mounts the handlers on
//! `POST /v1/messages`, `POST /v1/messages/count_tokens` and — for requests carrying
//! `anthropic-version` or `x-api-key` — `GET /v1/models[/{id}]` and unknown paths.
//!
//! Wire facts, with sources, are in `/work/shared/reference/anthropic-wire-facts.md`; where
//! the mock chooses (token counts, unverified messages) the choice is documented at the item.
//!
//! # Decisions
//! - **Token counts** are the mock's own (Anthropic's tokenizer is not public): 1, plus per
//!   prompt part (each tool, system block, message block) 3 of framing and its text's
//!   tiktoken count in the model's `encoding`. count_tokens returns exactly the
//!   `input_tokens + cache_creation_input_tokens + cache_read_input_tokens` a message with
//!   the same prompt reports.
//! - **Prompt cache**: the prompt up to and including the last block with `cache_control`
//!   is the cached prefix; the first admitted request writes it (`cache_creation`), later
//!   ones within 5 minutes of its last use read it (`cache_read`, not charged to ITPM). No
//!   minimum length; every write is reported as `ephemeral_5m`.
//! - **Quota**: per model, one organization. Limits in headers are per minute; resets are
//!   the time each bucket is full again, rounded up to the second; `tokens-*` is input plus
//!   output (limits and remainders summed, the later reset). `retry-after` is the exact
//!   wait rounded up to whole seconds, on quota 429s only. A request that can never fit
//!   (input over ITPM, or `max_tokens` over OTPM under the `max_tokens` rule) gets a 429
//!   without `retry-after`.
//! - **Faults** come after admission, so they are charged (an injected 500 or 529 settles
//!   with 0 output tokens); a cut or overloaded stream settles with the tokens sent.
//! - **Unverified messages** (the mock's wording where no capture exists): invalid JSON,
//!   a bad `anthropic-version` value, 405, `limit` out of range, type errors.

pub mod answer;
pub mod config;
pub mod errors;
pub mod headers;
pub mod quota;
pub mod request;
pub mod serve;
pub mod sse;
pub mod state;
pub mod wire;

pub use config::{AnthropicConfig, AnthropicFaults, AnthropicModelConfig, OtpmRule, OverloadedAt};
pub use quota::{
    AnthropicCost, AnthropicDecision, AnthropicDimension, AnthropicLimits, AnthropicQuota,
    AnthropicSnapshot, AnthropicThrottle, Bucket,
};
pub use state::AnthropicState;
