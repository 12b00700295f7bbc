//! Response headers: request ids, rate-limit state and retry advice, each switchable in
//! [`crate::config::HeaderSwitches`].

use std::fmt::Write as _;
use std::time::Duration;

use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use bytes::BytesMut;

use crate::config::HeaderSwitches;
use crate::generation::splitmix64;
use crate::quota::{Dimension, QuotaSnapshot};
use crate::units::{ceil_ms, ceil_secs, write_go_duration_ms};

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

    /// OpenAI style: `req_` and 32 hex digits (what `x-request-id` carries).
    #[cfg(test)]
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
    #[cfg(test)]
    pub fn alnum(&self, len: usize) -> String {
        let mut out = String::with_capacity(len);
        self.push_alnum(len, &mut out);
        out
    }

    /// Appends [`Self::alnum`]`(len)` to `out`.
    pub fn push_alnum(&self, len: usize, out: &mut String) {
        const DIGITS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let mut x = self.0 ^ self.1.rotate_left(17);
        out.extend((0..len).map(|_| {
            x = splitmix64(x);
            char::from(DIGITS[(x % 62) as usize])
        }));
    }
}

/// Response headers under construction. Values computed per request (numbers, ids,
/// durations) are written into one shared buffer and sliced out of it when the map is
/// built, so a response's dynamic headers cost one allocation, not one each; fixed values
/// are `from_static` or shared. Later values for a name replace earlier ones, and the map
/// keeps the order in which names were first set.
#[derive(Debug)]
pub struct Headers {
    buf: BytesMut,
    entries: Vec<(HeaderName, Entry)>,
}

#[derive(Debug)]
enum Entry {
    /// `buf[start..end]`.
    Text(usize, usize),
    /// A ready value.
    Value(HeaderValue),
}

impl Default for Headers {
    fn default() -> Self {
        Self::new()
    }
}

impl Headers {
    /// An empty set, sized for a typical response (about 14 headers).
    pub fn new() -> Self {
        Self {
            buf: BytesMut::with_capacity(256),
            entries: Vec::with_capacity(16),
        }
    }

    /// Sets `name` to a ready value.
    pub fn insert(&mut self, name: HeaderName, value: HeaderValue) {
        self.entries.push((name, Entry::Value(value)));
    }

    /// Sets `name` to the text `write` appends to the shared buffer.
    fn write_with(&mut self, name: HeaderName, write: impl FnOnce(&mut BytesMut)) {
        let start = self.buf.len();
        write(&mut self.buf);
        self.entries
            .push((name, Entry::Text(start, self.buf.len())));
    }

    /// Sets `name` to the decimal `n`.
    pub fn number(&mut self, name: HeaderName, n: u64) {
        self.write_with(name, |b| {
            let _ = write!(b, "{n}");
        });
    }

    /// Sets `name` to `text`, copied.
    pub fn text(&mut self, name: HeaderName, text: &str) {
        self.write_with(name, |b| b.extend_from_slice(text.as_bytes()));
    }

    /// The header map, in the order the names were first set. A value that is not a valid
    /// header value (only possible for configured text) is left out.
    pub fn into_map(self) -> HeaderMap {
        let shared = self.buf.freeze();
        let mut h = HeaderMap::with_capacity(self.entries.len() + 1);
        for (name, entry) in self.entries {
            let value = match entry {
                Entry::Value(v) => v,
                Entry::Text(start, end) => {
                    match HeaderValue::from_maybe_shared(shared.slice(start..end)) {
                        Ok(v) => v,
                        Err(_) => continue,
                    }
                }
            };
            h.insert(name, value);
        }
        h
    }
}

/// `x-request-id: req_…` (OpenAI).
pub fn openai_request_id(s: &HeaderSwitches, id: &RequestId, h: &mut Headers) {
    if s.request_id {
        h.write_with(REQUEST_ID, |b| {
            let _ = write!(b, "req_{:016x}{:016x}", id.0, id.1);
        });
    }
}

/// `x-request-id`, `apim-request-id` and `x-ms-region` (Azure).
pub fn azure_ids(s: &HeaderSwitches, id: &RequestId, region: &str, h: &mut Headers) {
    if s.request_id {
        let uuid = id.uuid();
        h.text(APIM_REQUEST_ID, &uuid);
        h.text(REQUEST_ID, &uuid);
    }
    if s.region {
        h.text(REGION, region);
    }
}

/// OpenAI's six `x-ratelimit-*` headers (reset values as Go durations).
pub fn openai_rate_limit(s: &HeaderSwitches, q: &QuotaSnapshot, h: &mut Headers) {
    if !s.rate_limit {
        return;
    }
    h.number(LIMIT_REQUESTS, q.limit_requests);
    h.number(LIMIT_TOKENS, q.limit_tokens);
    h.number(REMAINING_REQUESTS, q.remaining_requests);
    h.number(REMAINING_TOKENS, q.remaining_tokens);
    h.write_with(RESET_REQUESTS, |b| {
        write_go_duration_ms(b, q.reset_requests)
    });
    h.write_with(RESET_TOKENS, |b| write_go_duration_ms(b, q.reset_tokens));
}

/// `openai-organization`, `openai-processing-ms`, `openai-version`.
pub fn openai_meta(s: &HeaderSwitches, org: &str, processing: Duration, h: &mut Headers) {
    if !s.openai_meta {
        return;
    }
    h.text(ORGANIZATION, org);
    h.number(PROCESSING_MS, ceil_ms(processing));
    h.insert(VERSION, HeaderValue::from_static("2020-10-01"));
}

/// Azure's `x-ratelimit-remaining-requests` / `-tokens`.
pub fn azure_rate_limit(s: &HeaderSwitches, q: &QuotaSnapshot, h: &mut Headers) {
    if s.rate_limit {
        h.number(REMAINING_REQUESTS, q.remaining_requests);
        h.number(REMAINING_TOKENS, q.remaining_tokens);
    }
}

/// `retry-after` (whole seconds, rounded up) and `retry-after-ms` (rounded up).
pub fn retry_after(s: &HeaderSwitches, wait: Duration, h: &mut Headers) {
    if s.retry_after {
        h.number(RETRY_AFTER, ceil_secs(wait));
    }
    if s.retry_after_ms {
        h.number(RETRY_AFTER_MS, ceil_ms(wait));
    }
}

/// Azure 429 extras: `x-rate-limit-reset-tokens` (seconds) and `policy-id`.
pub fn azure_throttle(s: &HeaderSwitches, d: Dimension, reset_tokens: Duration, h: &mut Headers) {
    if s.azure_reset_tokens {
        h.number(AZURE_RESET_TOKENS, ceil_secs(reset_tokens));
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
pub fn should_retry(value: Option<bool>, h: &mut Headers) {
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

    #[test]
    fn shared_buffer_values_equal_separate_ones() {
        let id = RequestId::new(7, 9);
        let s = HeaderSwitches::default();
        let q = QuotaSnapshot {
            limit_requests: 3,
            remaining_requests: 0,
            reset_requests: Duration::from_millis(18_642),
            limit_tokens: 1_000_000_000_000_000,
            remaining_tokens: u64::MAX,
            reset_tokens: Duration::from_nanos(1),
        };
        let mut h = Headers::new();
        openai_request_id(&s, &id, &mut h);
        openai_rate_limit(&s, &q, &mut h);
        openai_meta(&s, "org-mock", Duration::from_micros(1_500), &mut h);
        retry_after(&s, Duration::from_millis(59_001), &mut h);
        h.number(REMAINING_TOKENS, 7); // a later value replaces the earlier one
        let map = h.into_map();
        let get = |n: &str| map.get(n).map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(get("x-request-id"), Some(id.openai()));
        assert_eq!(get("x-ratelimit-limit-requests").as_deref(), Some("3"));
        assert_eq!(
            get("x-ratelimit-limit-tokens").as_deref(),
            Some("1000000000000000")
        );
        assert_eq!(get("x-ratelimit-remaining-requests").as_deref(), Some("0"));
        assert_eq!(get("x-ratelimit-remaining-tokens").as_deref(), Some("7"));
        assert_eq!(
            get("x-ratelimit-reset-requests").as_deref(),
            Some("18.642s")
        );
        assert_eq!(get("x-ratelimit-reset-tokens").as_deref(), Some("1ms"));
        assert_eq!(get("openai-organization").as_deref(), Some("org-mock"));
        assert_eq!(get("openai-processing-ms").as_deref(), Some("2"));
        assert_eq!(get("openai-version").as_deref(), Some("2020-10-01"));
        assert_eq!(get("retry-after").as_deref(), Some("60"));
        assert_eq!(get("retry-after-ms").as_deref(), Some("59001"));
        let names: Vec<&str> = map.keys().map(|k| k.as_str()).collect();
        assert_eq!(names[0], "x-request-id", "order of first setting kept");
        assert_eq!(names.len(), 12);
        // Text that is no header value is left out, the rest kept.
        let mut h = Headers::new();
        h.text(REGION, "bad\nregion");
        h.number(RETRY_AFTER, 1);
        let map = h.into_map();
        assert!(map.get("x-ms-region").is_none());
        assert_eq!(map.get("retry-after").unwrap(), "1");
    }
}
