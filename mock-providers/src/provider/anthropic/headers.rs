//! Response headers: `request-id`, `anthropic-organization-id`, the twelve
//! `anthropic-ratelimit-*` headers (resets in RFC 3339), `retry-after` and `x-should-retry`.

use std::time::{Duration, UNIX_EPOCH};

use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderMap, HeaderName, HeaderValue};

use super::quota::{AnthropicSnapshot, Bucket};
use crate::generation::splitmix64;
use crate::units::{ceil_secs, nanos, Nanos, NANOS_PER_SEC};

/// Which optional headers are sent (from the shared `[headers]` switches).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Switches {
    /// `anthropic-ratelimit-*`.
    pub rate_limit: bool,
    /// `retry-after` on quota 429s.
    pub retry_after: bool,
    /// `request-id`.
    pub request_id: bool,
    /// Token `remaining` rounded to the nearest thousand.
    pub round_token_remaining: bool,
}

/// The seeded ids of one request.
#[derive(Debug, Clone, Copy)]
pub struct Ids(u64, u64);

impl Ids {
    /// The ids of request number `n` under `seed`.
    pub fn new(seed: u64, n: u64) -> Self {
        let a = splitmix64(seed ^ splitmix64(n ^ 0x616e_7468));
        Self(a, splitmix64(a))
    }

    fn base62(&self, prefix: &str, salt: u64) -> String {
        const DIGITS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let mut x = self.0 ^ self.1.rotate_left(17) ^ salt;
        let mut out = String::with_capacity(prefix.len() + 24);
        out.push_str(prefix);
        out.push_str("011C");
        out.extend((0..20).map(|_| {
            x = splitmix64(x);
            char::from(DIGITS[(x % 62) as usize])
        }));
        out
    }

    /// `req_011C` and 20 base-62 characters.
    pub fn request(&self) -> String {
        self.base62("req_", 0)
    }

    /// `msg_011C` and 20 base-62 characters.
    pub fn message(&self) -> String {
        self.base62("msg_", 0x006d_7367)
    }
}

fn set(h: &mut HeaderMap, name: &'static str, value: String) {
    if let Ok(v) = HeaderValue::try_from(value) {
        h.insert(HeaderName::from_static(name), v);
    }
}

/// `request-id` and `anthropic-organization-id`.
pub fn ids(s: Switches, request_id: &str, org: &str, h: &mut HeaderMap) {
    if s.request_id {
        set(h, "request-id", request_id.to_owned());
    }
    set(h, "anthropic-organization-id", org.to_owned());
}

/// The instant `now + after` as RFC 3339 with second precision, rounded up (so the bucket
/// is full at the time written); `unix_at_epoch` is the Unix time of the clock's epoch.
pub fn rfc3339(unix_at_epoch: u64, now: Nanos, after: Duration) -> String {
    let at = now.saturating_add(nanos(after)).div_ceil(NANOS_PER_SEC);
    let secs = unix_at_epoch.saturating_add(at);
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

fn round_thousand(n: u64) -> u64 {
    (n.saturating_add(500) / 1_000).saturating_mul(1_000)
}

/// The rate-limit headers of `snapshot` at `now`. `tokens-*` is input plus output (no
/// workspace limits apply): the limits and remainders summed, the later reset.
pub fn rate_limit(
    s: Switches,
    snapshot: &AnthropicSnapshot,
    unix_at_epoch: u64,
    now: Nanos,
    h: &mut HeaderMap,
) {
    if !s.rate_limit {
        return;
    }
    let tokens = Bucket {
        limit: snapshot.input.limit.saturating_add(snapshot.output.limit),
        remaining: snapshot
            .input
            .remaining
            .saturating_add(snapshot.output.remaining),
        reset: snapshot.input.reset.max(snapshot.output.reset),
    };
    let groups: [(&'static str, &'static str, &'static str, Bucket, bool); 4] = [
        (
            "anthropic-ratelimit-requests-limit",
            "anthropic-ratelimit-requests-remaining",
            "anthropic-ratelimit-requests-reset",
            snapshot.requests,
            false,
        ),
        (
            "anthropic-ratelimit-input-tokens-limit",
            "anthropic-ratelimit-input-tokens-remaining",
            "anthropic-ratelimit-input-tokens-reset",
            snapshot.input,
            true,
        ),
        (
            "anthropic-ratelimit-output-tokens-limit",
            "anthropic-ratelimit-output-tokens-remaining",
            "anthropic-ratelimit-output-tokens-reset",
            snapshot.output,
            true,
        ),
        (
            "anthropic-ratelimit-tokens-limit",
            "anthropic-ratelimit-tokens-remaining",
            "anthropic-ratelimit-tokens-reset",
            tokens,
            true,
        ),
    ];
    for (limit, remaining, reset, b, is_tokens) in groups {
        let left = if is_tokens && s.round_token_remaining {
            round_thousand(b.remaining)
        } else {
            b.remaining
        };
        set(h, limit, b.limit.to_string());
        set(h, remaining, left.to_string());
        set(h, reset, rfc3339(unix_at_epoch, now, b.reset));
    }
}

/// The requests-only headers (count_tokens, which has its own request bucket).
pub fn request_limit(s: Switches, b: &Bucket, unix_at_epoch: u64, now: Nanos, h: &mut HeaderMap) {
    if s.rate_limit {
        set(h, "anthropic-ratelimit-requests-limit", b.limit.to_string());
        set(
            h,
            "anthropic-ratelimit-requests-remaining",
            b.remaining.to_string(),
        );
        set(
            h,
            "anthropic-ratelimit-requests-reset",
            rfc3339(unix_at_epoch, now, b.reset),
        );
    }
}

/// `retry-after`: whole seconds rounded up, so a client waiting it is admitted.
pub fn retry_after(s: Switches, wait: Duration, h: &mut HeaderMap) {
    if s.retry_after {
        h.insert(RETRY_AFTER, HeaderValue::from(ceil_secs(wait)));
    }
}

/// `x-should-retry: true|false` when configured.
pub fn should_retry(value: Option<bool>, h: &mut HeaderMap) {
    if let Some(v) = value {
        h.insert(
            HeaderName::from_static("x-should-retry"),
            HeaderValue::from_static(if v { "true" } else { "false" }),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_rounds_up_to_the_second() {
        assert_eq!(rfc3339(0, 0, Duration::ZERO), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(0, 1, Duration::ZERO), "1970-01-01T00:00:01Z");
        assert_eq!(
            rfc3339(1_740_435_930, 500_000_000, Duration::from_millis(1_500)),
            "2025-02-24T22:25:32Z"
        );
    }

    #[test]
    fn ids_have_the_2026_shape() {
        let ids = Ids::new(1, 2);
        let (r, m) = (ids.request(), ids.message());
        assert!(r.starts_with("req_011C") && r.len() == 28, "{r}");
        assert!(m.starts_with("msg_011C") && m.len() == 28, "{m}");
        assert_ne!(Ids::new(1, 3).request(), r);
        assert_eq!(round_thousand(78_499), 78_000);
        assert_eq!(round_thousand(78_500), 79_000);
    }
}
