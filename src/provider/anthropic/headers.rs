//! Anthropic's rate-limit headers read into the neutral [`ResponseMeta`]:
//! `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}`
//! (resets are RFC 3339 instants, turned into the time left from the wall clock),
//! `retry-after` (seconds or an HTTP date; `retry-after-ms` first, which the SDKs read)
//! and `x-should-retry`. Malformed values are skipped with a warning, never fatal.

use std::time::{Duration, SystemTime};

use crate::limiter::ResponseMeta;
use crate::provider::headers::HeaderSource;

/// Reads `headers` into a [`ResponseMeta`] with `status`, measuring resets and HTTP-date
/// retry-afters from `wall_now`. `tokens-*` (input plus output, or the most restrictive
/// workspace limit) fills the total-token fields; `input-tokens-remaining` and
/// `output-tokens-remaining` fill their own dimensions.
pub fn parse_at(
    status: Option<u16>,
    headers: &(impl HeaderSource + ?Sized),
    wall_now: SystemTime,
) -> ResponseMeta {
    let count = |name: &str| read(headers, name, |v| v.parse::<u64>().ok());
    let reset = |name: &str| read(headers, name, |v| until(v, wall_now));
    ResponseMeta {
        status,
        limit_requests: count("anthropic-ratelimit-requests-limit"),
        limit_tokens: count("anthropic-ratelimit-tokens-limit"),
        remaining_requests: count("anthropic-ratelimit-requests-remaining"),
        remaining_tokens: count("anthropic-ratelimit-tokens-remaining"),
        remaining_input_tokens: count("anthropic-ratelimit-input-tokens-remaining"),
        remaining_output_tokens: count("anthropic-ratelimit-output-tokens-remaining"),
        reset_requests: reset("anthropic-ratelimit-requests-reset"),
        reset_tokens: reset("anthropic-ratelimit-tokens-reset"),
        retry_after: read(headers, "retry-after-ms", |v| seconds(v).map(|d| d / 1000))
            .or_else(|| read(headers, "retry-after", |v| retry_after(v, wall_now))),
        should_retry: read(headers, "x-should-retry", |v| match v {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        }),
    }
}

/// [`parse_at`] against the system's wall clock.
pub fn parse(status: Option<u16>, headers: &(impl HeaderSource + ?Sized)) -> ResponseMeta {
    parse_at(status, headers, SystemTime::now())
}

fn read<T>(
    headers: &(impl HeaderSource + ?Sized),
    name: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Option<T> {
    let raw = headers.header(name)?;
    let parsed = parse(raw.trim());
    if parsed.is_none() {
        tracing::warn!(
            header = name,
            value = raw,
            "ignoring malformed rate-limit header"
        );
    }
    parsed
}

/// Time from `wall_now` to the RFC 3339 instant `v` (zero when it has passed).
fn until(v: &str, wall_now: SystemTime) -> Option<Duration> {
    let at = humantime::parse_rfc3339_weak(v).ok()?;
    Some(at.duration_since(wall_now).unwrap_or(Duration::ZERO))
}

fn seconds(v: &str) -> Option<Duration> {
    let s: f64 = v.parse().ok()?;
    (0.0..1e12).contains(&s).then(|| Duration::from_secs_f64(s))
}

fn retry_after(v: &str, wall_now: SystemTime) -> Option<Duration> {
    seconds(v).or_else(|| {
        let at = httpdate::parse_http_date(v).ok()?;
        Some(at.duration_since(wall_now).unwrap_or(Duration::ZERO))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bucket_and_its_rfc3339_reset_is_read() {
        let now = humantime::parse_rfc3339("2025-02-24T22:25:32Z").unwrap();
        let h: &[(&str, &str)] = &[
            ("anthropic-ratelimit-requests-limit", "1000"),
            ("anthropic-ratelimit-requests-remaining", "999"),
            ("anthropic-ratelimit-requests-reset", "2025-02-24T22:25:33Z"),
            ("anthropic-ratelimit-input-tokens-limit", "80000"),
            ("anthropic-ratelimit-input-tokens-remaining", "78000"),
            (
                "anthropic-ratelimit-input-tokens-reset",
                "2025-02-24T22:25:32Z",
            ),
            ("anthropic-ratelimit-output-tokens-limit", "16000"),
            ("anthropic-ratelimit-output-tokens-remaining", "12000"),
            (
                "anthropic-ratelimit-output-tokens-reset",
                "2025-02-24T22:25:47Z",
            ),
            ("anthropic-ratelimit-tokens-limit", "96000"),
            ("anthropic-ratelimit-tokens-remaining", "90000"),
            ("anthropic-ratelimit-tokens-reset", "2025-02-24T22:25:47Z"),
            ("retry-after", "7"),
            ("x-should-retry", "true"),
        ];
        let m = parse_at(Some(200), h, now);
        assert_eq!(m.status, Some(200));
        assert_eq!(
            (m.limit_requests, m.remaining_requests),
            (Some(1000), Some(999))
        );
        assert_eq!(
            (m.limit_tokens, m.remaining_tokens),
            (Some(96_000), Some(90_000))
        );
        assert_eq!(m.remaining_input_tokens, Some(78_000));
        assert_eq!(m.remaining_output_tokens, Some(12_000));
        assert_eq!(m.reset_requests, Some(Duration::from_secs(1)));
        assert_eq!(m.reset_tokens, Some(Duration::from_secs(15)));
        assert_eq!(m.retry_after, Some(Duration::from_secs(7)));
        assert_eq!(m.should_retry, Some(true));
    }

    #[test]
    fn past_resets_are_zero_and_malformed_values_are_skipped() {
        let now = humantime::parse_rfc3339("2025-02-24T22:25:32Z").unwrap();
        let h: &[(&str, &str)] = &[
            ("anthropic-ratelimit-requests-reset", "2025-02-24T22:00:00Z"),
            ("anthropic-ratelimit-tokens-reset", "soon"),
            ("anthropic-ratelimit-input-tokens-remaining", "lots"),
            ("retry-after-ms", "1500"),
            ("retry-after", "9"),
        ];
        let m = parse_at(Some(429), h, now);
        assert_eq!(m.reset_requests, Some(Duration::ZERO));
        assert_eq!((m.reset_tokens, m.remaining_input_tokens), (None, None));
        assert_eq!(m.retry_after, Some(Duration::from_millis(1500)));
    }
}
