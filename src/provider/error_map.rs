//! Mapping a non-2xx response (status, headers, body) and transport failures to
//! [`ConnectorError`].
//!
//! Pure functions, shared by both connectors, so every class can be unit-tested from canned
//! responses. OpenAI and Azure differ only in the body and header details read here
//! (`type`/`code` vs. numeric codes, "try again in 20s" vs. "retry after 60 seconds",
//! `policy-id`), never in which class a status maps to.

use std::error::Error as StdError;
use std::time::Duration;

use http::HeaderMap;

use super::error::{ConnectorError, RateLimitDimension};
use super::wire::{ErrorBody, ErrorDetail};
use crate::limiter::ResponseMeta;
use crate::units::parse_duration;

/// The error for a non-2xx response. `meta` is the response's header view (its `status`
/// is filled in from `status` if missing).
pub(crate) fn from_response(
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    mut meta: ResponseMeta,
) -> ConnectorError {
    meta.status.get_or_insert(status);
    let meta = Box::new(meta);
    let detail = parse_detail(body);
    let code = detail.code.clone().map(|c| c.into_string());
    let message = detail.message.clone().unwrap_or_else(|| body_excerpt(body));
    match status {
        401 | 403 => ConnectorError::Authentication {
            status,
            message,
            meta,
        },
        404 => ConnectorError::NotFound {
            message,
            code,
            meta,
        },
        429 => rate_limited(headers, &detail, code, message, meta),
        400..=499 if status != 408 && status != 409 => ConnectorError::InvalidRequest {
            status,
            message,
            param: detail.param,
            code,
            meta,
        },
        _ => ConnectorError::Provider {
            status,
            message,
            code,
            meta,
        },
    }
}

fn rate_limited(
    headers: &HeaderMap,
    detail: &ErrorDetail,
    code: Option<String>,
    message: String,
    meta: Box<ResponseMeta>,
) -> ConnectorError {
    let kind = detail.kind.as_deref();
    if code.as_deref() == Some("insufficient_quota") || kind == Some("insufficient_quota") {
        return ConnectorError::QuotaExhausted { message, meta };
    }
    if message.starts_with("Request too large") {
        return ConnectorError::RequestTooLarge { message, meta };
    }
    let retry_after = meta.retry_after.or_else(|| retry_after_in_text(&message));
    let dimension = dimension_of(kind, headers, &message, &meta);
    ConnectorError::RateLimit {
        retry_after,
        dimension,
        message,
        meta,
    }
}

/// The exhausted dimension from, in order: the body's `type` (OpenAI), Azure's `policy-id`
/// header, the message text, a remaining-count header at zero.
fn dimension_of(
    kind: Option<&str>,
    headers: &HeaderMap,
    message: &str,
    meta: &ResponseMeta,
) -> Option<RateLimitDimension> {
    use RateLimitDimension::{Requests, Tokens};
    match kind {
        Some("requests") => return Some(Requests),
        Some("tokens") => return Some(Tokens),
        _ => {}
    }
    if let Some(policy) = headers.get("policy-id").and_then(|v| v.to_str().ok()) {
        if policy.ends_with("-Token") {
            return Some(Tokens);
        }
        if policy.ends_with("-Call") {
            return Some(Requests);
        }
    }
    let m = message.to_ascii_lowercase();
    if m.contains("tokens per min") || m.contains("token rate limit") || m.contains("(tpm)") {
        return Some(Tokens);
    }
    if m.contains("requests per min") || m.contains("call rate limit") || m.contains("(rpm)") {
        return Some(Requests);
    }
    match (meta.remaining_tokens, meta.remaining_requests) {
        (Some(0), _) => Some(Tokens),
        (_, Some(0)) => Some(Requests),
        _ => None,
    }
}

/// The wait a rate-limit message asks for: OpenAI's "Please try again in 20s." (a Go
/// duration: `1.2s`, `6m0s`, `120ms`) or Azure's "Please retry after 60 seconds."
pub(crate) fn retry_after_in_text(message: &str) -> Option<Duration> {
    if let Some(i) = message.find("try again in ") {
        let token = message[i + "try again in ".len()..]
            .split_whitespace()
            .next()?
            .trim_end_matches(['.', ',']);
        return parse_duration(token).ok();
    }
    let i = message.find("retry after ")?;
    let mut words = message[i + "retry after ".len()..].split_whitespace();
    let n: f64 = words.next()?.parse().ok()?;
    let unit = words.next().unwrap_or("seconds");
    let secs = if unit.starts_with("millisecond") {
        n / 1000.0
    } else {
        n
    };
    (0.0..1e9)
        .contains(&secs)
        .then(|| Duration::from_secs_f64(secs))
}

fn parse_detail(body: &[u8]) -> ErrorDetail {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody {
            error: Some(field), ..
        }) => field.into_detail(),
        Ok(ErrorBody {
            error: None,
            message,
        }) => ErrorDetail {
            message,
            ..ErrorDetail::default()
        },
        Err(_) => ErrorDetail::default(),
    }
}

/// The start of a body that carried no JSON error message (an HTML error page, plain text).
fn body_excerpt(body: &[u8]) -> String {
    const MAX: usize = 300;
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX)]);
    let text = text.trim();
    if text.is_empty() {
        "empty body".to_owned()
    } else if body.len() > MAX {
        format!("{text}…")
    } else {
        text.to_owned()
    }
}

/// The error for a request that got no (complete) response: timeouts are
/// [`Timeout`](ConnectorError::Timeout), everything else (refused, reset, DNS, a body cut
/// short) is [`Network`](ConnectorError::Network).
pub(crate) fn from_transport(e: &reqwest::Error) -> ConnectorError {
    let message = error_chain(e);
    if e.is_timeout() {
        ConnectorError::Timeout { message }
    } else {
        ConnectorError::Network { message }
    }
}

/// `e` and its sources, joined with `: ` (reqwest's own message rarely names the cause).
pub(crate) fn error_chain(e: &dyn StdError) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = inner.source();
    }
    s
}

#[cfg(test)]
mod tests;
