//! A non-2xx Anthropic response, or an `event: error` inside a stream, as a
//! [`ConnectorError`].
//!
//! Status decides the class, as for every provider: 401/403 → `Authentication`, 404 →
//! `NotFound`, 429 `rate_limit_error` → `RateLimit` (the wait from `retry-after`, the
//! dimension from the message: "requests per minute" → requests, "input tokens" or
//! "output tokens per minute" → tokens), other 4xx (413 `request_too_large` included) →
//! `InvalidRequest`; 408, 409, 500, 529 `overloaded_error` and other 5xx → `Provider`,
//! retryable. The body's `error.type` is kept as the error's `code`.

use crate::limiter::ResponseMeta;
use crate::provider::error::{ConnectorError, RateLimitDimension};

use super::wire::{error_detail, ErrorDetail};

/// The error for a response with `status` and `body`; `meta` is its header view (its
/// status filled in from `status` when missing).
pub(crate) fn from_response(status: u16, body: &[u8], mut meta: ResponseMeta) -> ConnectorError {
    meta.status.get_or_insert(status);
    let meta = Box::new(meta);
    let detail = error_detail(body).unwrap_or_default();
    let code = detail.kind.clone();
    let message = detail.message.unwrap_or_else(|| excerpt(body));
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
        429 => ConnectorError::RateLimit {
            retry_after: meta.retry_after,
            dimension: dimension_of(&message),
            message,
            meta,
        },
        400..=499 if status != 408 && status != 409 => ConnectorError::InvalidRequest {
            status,
            message,
            param: None,
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

/// The stream error for an `event: error` payload: a retryable [`ConnectorError::Stream`]
/// whose message starts with the error's type (`overloaded_error: Overloaded`), so an
/// overload inside a 200 stream is told apart from a cut connection.
pub(crate) fn stream_error(data: &str) -> ConnectorError {
    let ErrorDetail { kind, message } = error_detail(data.as_bytes()).unwrap_or_default();
    let kind = kind.unwrap_or_else(|| "error".to_owned());
    let message = message.unwrap_or_else(|| excerpt(data.as_bytes()));
    ConnectorError::Stream {
        message: format!("provider sent an error event: {kind}: {message}"),
    }
}

/// Which quota a 429's message names.
fn dimension_of(message: &str) -> Option<RateLimitDimension> {
    let m = message.to_ascii_lowercase();
    if m.contains("tokens per minute") || m.contains("request tokens") {
        Some(RateLimitDimension::Tokens)
    } else if m.contains("requests per minute") {
        Some(RateLimitDimension::Requests)
    } else {
        None
    }
}

/// At most 300 bytes of a body that was not the error shape.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]);
    let text = text.trim();
    if text.is_empty() {
        "empty body".to_owned()
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn body(kind: &str, message: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "type": "error",
            "error": {"type": kind, "message": message},
            "request_id": "req_011C"
        }))
        .unwrap()
    }

    #[test]
    fn statuses_map_to_classes_and_keep_the_type() {
        let e = from_response(
            401,
            &body("authentication_error", "invalid x-api-key"),
            ResponseMeta::default(),
        );
        assert!(matches!(
            e,
            ConnectorError::Authentication { status: 401, .. }
        ));
        assert!(!e.is_retryable());
        let e = from_response(
            404,
            &body("not_found_error", "model: x"),
            ResponseMeta::default(),
        );
        assert!(
            matches!(&e, ConnectorError::NotFound { code: Some(c), .. } if c == "not_found_error")
        );
        let e = from_response(
            413,
            &body("request_too_large", "too big"),
            ResponseMeta::default(),
        );
        assert!(matches!(
            e,
            ConnectorError::InvalidRequest { status: 413, .. }
        ));
        let e = from_response(
            529,
            &body("overloaded_error", "Overloaded"),
            ResponseMeta::default(),
        );
        assert!(
            matches!(&e, ConnectorError::Provider { status: 529, code: Some(c), .. } if c == "overloaded_error")
        );
        assert!(e.is_retryable());
        assert_eq!(e.status(), Some(529));
    }

    #[test]
    fn a_429_takes_retry_after_from_headers_and_the_dimension_from_the_message() {
        let meta = ResponseMeta {
            retry_after: Some(Duration::from_secs(3)),
            ..ResponseMeta::default()
        };
        let msg = "This request would exceed your organization's rate limit of 8,000 output tokens per minute (org: o, model: m).";
        let e = from_response(429, &body("rate_limit_error", msg), meta);
        let ConnectorError::RateLimit {
            retry_after,
            dimension,
            ..
        } = &e
        else {
            panic!("{e:?}")
        };
        assert_eq!(*retry_after, Some(Duration::from_secs(3)));
        assert_eq!(*dimension, Some(RateLimitDimension::Tokens));
        assert!(e.error_info().rate_limited);
        let msg = "… rate limit of 50 requests per minute (org: o, model: m).";
        let e = from_response(429, &body("rate_limit_error", msg), ResponseMeta::default());
        assert!(matches!(
            e,
            ConnectorError::RateLimit {
                dimension: Some(RateLimitDimension::Requests),
                ..
            }
        ));
    }

    #[test]
    fn an_error_event_is_a_retryable_stream_error_naming_its_type() {
        let e = stream_error(
            r#"{"type":"error","error":{"details":null,"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}   "#,
        );
        assert!(e.is_retryable());
        assert_eq!(
            e.to_string(),
            "stream error: provider sent an error event: overloaded_error: Overloaded"
        );
    }
}
