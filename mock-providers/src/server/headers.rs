//! Response headers: request ids, rate-limit state and retry advice, each switchable in
//! [`crate::config::HeaderSwitches`].

use std::time::Duration;

use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderMap, HeaderName, HeaderValue};

use crate::config::HeaderSwitches;
use crate::generation::splitmix64;
use crate::quota::{Dimension, QuotaSnapshot};
use crate::units::{ceil_ms, ceil_secs, go_duration_ms};

const LIMIT_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-limit-requests");
const LIMIT_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-limit-tokens");
const REMAINING_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-requests");
const REMAINING_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-tokens");
const RESET_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-reset-requests");
const RESET_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-reset-tokens");
const RETRY_AFTER_MS: HeaderName = HeaderName::from_static("retry-after-ms");
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const APIM_REQUEST_ID: HeaderName = HeaderName::from_static("apim-request-id");
const REGION: HeaderName = HeaderName::from_static("x-ms-region");
const AZURE_RESET_TOKENS: HeaderName = HeaderName::from_static("x-rate-limit-reset-tokens");
const POLICY_ID: HeaderName = HeaderName::from_static("policy-id");
const PROCESSING_MS: HeaderName = HeaderName::from_static("openai-processing-ms");
const ORGANIZATION: HeaderName = HeaderName::from_static("openai-organization");
const VERSION: HeaderName = HeaderName::from_static("openai-version");
const SHOULD_RETRY: HeaderName = HeaderName::from_static("x-should-retry");

/// The two 64-bit halves of a request's identity, derived from the seed and its number.
#[derive(Debug, Clone, Copy)]
pub struct RequestId(pub u64, pub u64);

impl RequestId {
    /// The id of request number `n` under `seed`.
    pub fn new(seed: u64, n: u64) -> Self {
        let a = splitmix64(seed ^ splitmix64(n));
        Self(a, splitmix64(a))
    }

    /// OpenAI style: `req_` and 32 hex digits.
    pub fn openai(&self) -> String {
        format!("req_{:016x}{:016x}", self.0, self.1)
    }

    /// UUID style (Azure's `x-request-id` / `apim-request-id`).
    pub fn uuid(&self) -> String {
        let (a, b) = (self.0, self.1);
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xffff,
            b >> 48,
            b & 0xffff_ffff_ffff
        )
    }

    /// `len` base-62 characters for completion ids (`chatcmpl-…`).
    pub fn alnum(&self, len: usize) -> String {
        const DIGITS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let mut x = self.0 ^ self.1.rotate_left(17);
        (0..len)
            .map(|_| {
                x = splitmix64(x);
                DIGITS[(x % 62) as usize] as char
            })
            .collect()
    }
}

fn text(v: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(v).ok()
}

/// A header value that takes over `v`'s buffer instead of copying it.
fn owned(v: String) -> Option<HeaderValue> {
    HeaderValue::try_from(v).ok()
}

fn put(h: &mut HeaderMap, name: HeaderName, value: Option<HeaderValue>) {
    if let Some(v) = value {
        h.insert(name, v);
    }
}

/// `x-request-id: req_…` (OpenAI).
pub fn openai_request_id(s: &HeaderSwitches, id: &RequestId, h: &mut HeaderMap) {
    if s.request_id {
        put(h, REQUEST_ID, owned(id.openai()));
    }
}

/// `x-request-id`, `apim-request-id` and `x-ms-region` (Azure).
pub fn azure_ids(s: &HeaderSwitches, id: &RequestId, region: &str, h: &mut HeaderMap) {
    if s.request_id {
        let uuid = owned(id.uuid());
        put(h, APIM_REQUEST_ID, uuid.clone());
        put(h, REQUEST_ID, uuid);
    }
    if s.region {
        put(h, REGION, text(region));
    }
}

/// OpenAI's six `x-ratelimit-*` headers (reset values as Go durations).
pub fn openai_rate_limit(s: &HeaderSwitches, q: &QuotaSnapshot, h: &mut HeaderMap) {
    if !s.rate_limit {
        return;
    }
    h.insert(LIMIT_REQUESTS, HeaderValue::from(q.limit_requests));
    h.insert(LIMIT_TOKENS, HeaderValue::from(q.limit_tokens));
    h.insert(REMAINING_REQUESTS, HeaderValue::from(q.remaining_requests));
    h.insert(REMAINING_TOKENS, HeaderValue::from(q.remaining_tokens));
    put(h, RESET_REQUESTS, owned(go_duration_ms(q.reset_requests)));
    put(h, RESET_TOKENS, owned(go_duration_ms(q.reset_tokens)));
}

/// `openai-organization`, `openai-processing-ms`, `openai-version`.
pub fn openai_meta(s: &HeaderSwitches, org: &str, processing: Duration, h: &mut HeaderMap) {
    if !s.openai_meta {
        return;
    }
    put(h, ORGANIZATION, text(org));
    h.insert(PROCESSING_MS, HeaderValue::from(ceil_ms(processing)));
    h.insert(VERSION, HeaderValue::from_static("2020-10-01"));
}

/// Azure's `x-ratelimit-remaining-requests` / `-tokens`.
pub fn azure_rate_limit(s: &HeaderSwitches, q: &QuotaSnapshot, h: &mut HeaderMap) {
    if s.rate_limit {
        h.insert(REMAINING_REQUESTS, HeaderValue::from(q.remaining_requests));
        h.insert(REMAINING_TOKENS, HeaderValue::from(q.remaining_tokens));
    }
}

/// `retry-after` (whole seconds, rounded up) and `retry-after-ms` (rounded up).
pub fn retry_after(s: &HeaderSwitches, wait: Duration, h: &mut HeaderMap) {
    if s.retry_after {
        h.insert(RETRY_AFTER, HeaderValue::from(ceil_secs(wait)));
    }
    if s.retry_after_ms {
        h.insert(RETRY_AFTER_MS, HeaderValue::from(ceil_ms(wait)));
    }
}

/// Azure 429 extras: `x-rate-limit-reset-tokens` (seconds) and `policy-id`.
pub fn azure_throttle(s: &HeaderSwitches, d: Dimension, reset_tokens: Duration, h: &mut HeaderMap) {
    if s.azure_reset_tokens {
        h.insert(
            AZURE_RESET_TOKENS,
            HeaderValue::from(ceil_secs(reset_tokens)),
        );
    }
    if s.policy_id {
        let policy = match d {
            Dimension::Tokens => "DeploymentRatelimit-Token",
            Dimension::Requests => "DeploymentRatelimit-Call",
        };
        h.insert(POLICY_ID, HeaderValue::from_static(policy));
    }
}

/// `x-should-retry: true|false` when configured.
pub fn should_retry(value: Option<bool>, h: &mut HeaderMap) {
    if let Some(v) = value {
        h.insert(
            SHOULD_RETRY,
            HeaderValue::from_static(if v { "true" } else { "false" }),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_provider_shapes() {
        let id = RequestId::new(1, 2);
        let o = id.openai();
        assert!(o.starts_with("req_") && o.len() == 36, "{o}");
        let u = id.uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(u.matches('-').count(), 4);
        assert_eq!(id.alnum(29).len(), 29);
        assert_ne!(RequestId::new(1, 3).openai(), o);
    }
}
