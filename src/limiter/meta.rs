//! [`ResponseMeta`]: what a provider's response said about a key's quota, in neutral
//! terms. The provider layer reads its own headers into it (`provider::headers`); the
//! limiter only ever sees this struct, so no header name lives in the limiter.

use std::time::Duration;

/// What a response said about the key's quota. Every field is optional: providers send
/// different subsets, and errors may carry none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResponseMeta {
    /// HTTP status of the response, when there was one.
    pub status: Option<u16>,
    /// Request limit of the window (`x-ratelimit-limit-requests`).
    pub limit_requests: Option<u64>,
    /// Token limit of the window (`x-ratelimit-limit-tokens`).
    pub limit_tokens: Option<u64>,
    /// Requests left (`x-ratelimit-remaining-requests`).
    pub remaining_requests: Option<u64>,
    /// Tokens left (`x-ratelimit-remaining-tokens`).
    pub remaining_tokens: Option<u64>,
    /// Input tokens left, for a provider that limits input tokens apart.
    pub remaining_input_tokens: Option<u64>,
    /// Output tokens left, for a provider that limits output tokens apart.
    pub remaining_output_tokens: Option<u64>,
    /// Time until the request quota is full again (`x-ratelimit-reset-requests`).
    pub reset_requests: Option<Duration>,
    /// Time until the token quota is full again (`x-ratelimit-reset-tokens`).
    pub reset_tokens: Option<Duration>,
    /// The server's wait before retrying (`retry-after-ms`, else `retry-after`).
    pub retry_after: Option<Duration>,
    /// The server's explicit retry verdict (`x-should-retry`).
    pub should_retry: Option<bool>,
}

impl ResponseMeta {
    /// What the server reported as left for dimensions counting in `unit`.
    pub fn remaining_in(&self, unit: super::Unit) -> Option<u64> {
        match unit {
            super::Unit::Requests => self.remaining_requests,
            super::Unit::Tokens => self.remaining_tokens,
            super::Unit::InputTokens => self.remaining_input_tokens,
            super::Unit::OutputTokens => self.remaining_output_tokens,
        }
    }
}
