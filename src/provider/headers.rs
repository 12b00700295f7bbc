//! Header adapters: a provider response's rate-limit headers (`x-ratelimit-*`,
//! `retry-after(-ms)`, Go durations) turned into the neutral [`ResponseMeta`] that the
//! limiter's `record_usage` understands. Header names live here, in the provider layer,
//! never in the limiter.
//!
//! Which headers are read is chosen by configuration (a [`HeaderProfile`] by name).
//! Malformed values are skipped with a `tracing` warning: a bad header must never fail a
//! request that succeeded.

use std::time::{Duration, SystemTime};

use serde::Deserialize;

use crate::limiter::ResponseMeta;
use crate::units::parse_duration;

/// A set of header names to read, chosen by name in configuration
/// (`header_profile = "openai" | "azure" | "none"`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeaderProfile {
    /// `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` with Go-duration resets,
    /// plus `retry-after-ms` / `retry-after` / `x-should-retry` (OpenAI and compatibles).
    #[default]
    Openai,
    /// `x-ratelimit-remaining-{requests,tokens}`, `x-rate-limit-reset-tokens` (seconds),
    /// `retry-after-ms` / `retry-after` (Azure OpenAI).
    Azure,
    /// Read nothing: the limiter works from its own view only.
    None,
}

/// Read access to response headers by lower-case name. Implemented for `http::HeaderMap`
/// and for slices of `(name, value)` pairs.
pub trait HeaderSource {
    /// The first value of header `name` (lower-case), if present and valid UTF-8.
    fn header(&self, name: &str) -> Option<&str>;
}

impl HeaderSource for http::HeaderMap {
    fn header(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| v.to_str().ok())
    }
}

impl HeaderSource for [(&str, &str)] {
    fn header(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

impl HeaderProfile {
    /// Reads `headers` into a [`ResponseMeta`], with `status` attached. HTTP-date
    /// retry-after values are measured against the system's wall clock.
    pub fn parse(
        self,
        status: Option<u16>,
        headers: &(impl HeaderSource + ?Sized),
    ) -> ResponseMeta {
        self.parse_at(status, headers, SystemTime::now())
    }

    /// As [`parse`](Self::parse), with the wall-clock time given (for HTTP-date retry-after).
    pub fn parse_at(
        self,
        status: Option<u16>,
        headers: &(impl HeaderSource + ?Sized),
        wall_now: SystemTime,
    ) -> ResponseMeta {
        let mut meta = ResponseMeta {
            status,
            ..ResponseMeta::default()
        };
        let count = |name| read(headers, name, parse_count);
        match self {
            Self::None => return meta,
            Self::Openai => {
                meta.limit_requests = count("x-ratelimit-limit-requests");
                meta.limit_tokens = count("x-ratelimit-limit-tokens");
                meta.reset_requests = read(headers, "x-ratelimit-reset-requests", parse_go);
                meta.reset_tokens = read(headers, "x-ratelimit-reset-tokens", parse_go);
            }
            Self::Azure => {
                meta.reset_tokens = read(headers, "x-rate-limit-reset-tokens", parse_seconds);
            }
        }
        meta.remaining_requests = count("x-ratelimit-remaining-requests");
        meta.remaining_tokens = count("x-ratelimit-remaining-tokens");
        meta.retry_after = read(headers, "retry-after-ms", parse_millis)
            .or_else(|| read(headers, "retry-after", |v| parse_retry_after(v, wall_now)));
        meta.should_retry = read(headers, "x-should-retry", |v| match v {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        });
        meta
    }
}

/// Reads header `name` through `parse`, warning (once per value) when it is malformed.
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

fn parse_count(v: &str) -> Option<u64> {
    v.parse().ok()
}

fn parse_go(v: &str) -> Option<Duration> {
    parse_duration(v).ok()
}

fn parse_seconds(v: &str) -> Option<Duration> {
    let s: f64 = v.parse().ok()?;
    (0.0..1e12).contains(&s).then(|| Duration::from_secs_f64(s))
}

fn parse_millis(v: &str) -> Option<Duration> {
    parse_seconds(v).map(|d| d / 1000)
}

/// `retry-after`: seconds (integer or float) or an HTTP date, relative to `wall_now`.
fn parse_retry_after(v: &str, wall_now: SystemTime) -> Option<Duration> {
    parse_seconds(v).or_else(|| {
        let at = httpdate::parse_http_date(v).ok()?;
        Some(at.duration_since(wall_now).unwrap_or(Duration::ZERO))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENAI: &[(&str, &str)] = &[
        ("x-ratelimit-limit-requests", "60"),
        ("x-ratelimit-limit-tokens", "150000"),
        ("x-ratelimit-remaining-requests", "59"),
        ("x-ratelimit-remaining-tokens", "149984"),
        ("x-ratelimit-reset-requests", "1s"),
        ("x-ratelimit-reset-tokens", "6m0s"),
    ];

    #[test]
    fn openai_profile_reads_limits_and_go_durations() {
        let m = HeaderProfile::Openai.parse(Some(200), OPENAI);
        assert_eq!(m.limit_requests, Some(60));
        assert_eq!(m.limit_tokens, Some(150_000));
        assert_eq!(m.remaining_requests, Some(59));
        assert_eq!(m.remaining_tokens, Some(149_984));
        assert_eq!(m.reset_requests, Some(Duration::from_secs(1)));
        assert_eq!(m.reset_tokens, Some(Duration::from_secs(360)));
        assert_eq!(m.retry_after, None);
    }

    #[test]
    fn azure_profile_reads_retry_after_ms_first() {
        let h: &[(&str, &str)] = &[
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-remaining-tokens", "120"),
            ("x-rate-limit-reset-tokens", "7"),
            ("retry-after", "8"),
            ("retry-after-ms", "7250"),
        ];
        let m = HeaderProfile::Azure.parse(Some(429), h);
        assert_eq!(m.remaining_requests, Some(0));
        assert_eq!(m.reset_tokens, Some(Duration::from_secs(7)));
        assert_eq!(m.retry_after, Some(Duration::from_millis(7250)));
        assert_eq!(m.limit_requests, None);
    }

    #[test]
    fn retry_after_accepts_float_seconds_and_http_dates() {
        let m = HeaderProfile::Openai.parse(None, &[("retry-after", "1.5")][..]);
        assert_eq!(m.retry_after, Some(Duration::from_millis(1500)));
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        let h: &[(&str, &str)] = &[("Retry-After", "Sun, 06 Nov 1994 08:50:07 GMT")];
        let m = HeaderProfile::Openai.parse_at(None, h, now);
        assert_eq!(m.retry_after, Some(Duration::from_secs(30)));
        let past: &[(&str, &str)] = &[("retry-after", "Sun, 06 Nov 1994 08:00:00 GMT")];
        assert_eq!(
            HeaderProfile::Openai.parse_at(None, past, now).retry_after,
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn malformed_values_are_ignored_not_fatal() {
        let h: &[(&str, &str)] = &[
            ("x-ratelimit-remaining-requests", "lots"),
            ("x-ratelimit-reset-tokens", "6 parsecs"),
            ("retry-after", "soon"),
            ("retry-after-ms", "-5"),
            ("x-should-retry", "maybe"),
            ("x-ratelimit-remaining-tokens", "10"),
        ];
        let m = HeaderProfile::Openai.parse(Some(200), h);
        assert_eq!(m.remaining_tokens, Some(10));
        assert_eq!(
            (
                m.remaining_requests,
                m.reset_tokens,
                m.retry_after,
                m.should_retry
            ),
            (None, None, None, None)
        );
    }

    #[test]
    fn none_profile_reads_nothing() {
        let m = HeaderProfile::None.parse(Some(200), OPENAI);
        assert_eq!(
            m,
            ResponseMeta {
                status: Some(200),
                ..ResponseMeta::default()
            }
        );
    }
}
