//! Anthropic's error shape: `{"type":"error","error":{"type":…,"message":…},"request_id":…}`
//! with the status → type mapping of the API's errors page.

use std::time::Duration;

use axum::http::StatusCode;
use serde::Serialize;

use super::quota::{AnthropicDimension, AnthropicThrottle};

/// HTTP 529, Anthropic's "overloaded" status (not in `http`'s named constants).
pub fn status_529() -> StatusCode {
    // 529 is within 100..=999, so this cannot fail; fall back to 503 rather than panic.
    StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
}

/// An error answer: status, `error.type` and `error.message` (the body is rendered with the
/// request's id by [`AnthropicError::body`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnthropicError {
    status: StatusCode,
    kind: &'static str,
    message: String,
    /// Exact wait after which the request fits (429 from the quota only).
    retry_after: Option<Duration>,
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: Inner<'a>,
    request_id: &'a str,
}

#[derive(Serialize)]
struct Inner<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    message: &'a str,
}

impl AnthropicError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// `error.type`, e.g. `invalid_request_error`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// `error.message`.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The exact wait a quota 429 advertises (`retry-after`, rounded up to seconds).
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The JSON body carrying `request_id`.
    pub fn body(&self, request_id: &str) -> Vec<u8> {
        let body = Body {
            kind: "error",
            error: Inner {
                kind: self.kind,
                message: &self.message,
            },
            request_id,
        };
        // Serializing strings into a Vec cannot fail.
        serde_json::to_vec(&body).unwrap_or_default()
    }

    /// 400 `invalid_request_error`.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    /// 400 for a request without `anthropic-version`.
    pub fn missing_version() -> Self {
        Self::invalid_request("anthropic-version: header is required")
    }

    /// 400 for an `anthropic-version` that is not a version (message: the mock's).
    pub fn bad_version(value: &str) -> Self {
        Self::invalid_request(format!(
            "anthropic-version: {value:?} is not a valid version"
        ))
    }

    /// 401 `authentication_error`: no key at all.
    pub fn missing_key() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "x-api-key header is required",
        )
    }

    /// 401 `authentication_error`: a key not among the configured ones.
    pub fn invalid_key() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "invalid x-api-key",
        )
    }

    /// 403 `permission_error`.
    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            "Your API key does not have permission to use the specified resource.",
        )
    }

    /// 404 `not_found_error` for an unknown model.
    pub fn model_not_found(model: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found_error",
            format!("model: {model}"),
        )
    }

    /// 404 `not_found_error` for an unknown path.
    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found_error",
            "The requested resource could not be found.",
        )
    }

    /// 405 for a known path with the wrong method (message: the mock's).
    pub fn method_not_allowed(method: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            format!("Method {method} is not allowed on this path."),
        )
    }

    /// 413 `request_too_large`.
    pub fn too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
            "Request exceeds the maximum allowed number of bytes.",
        )
    }

    /// 400 for `max_tokens` above the model's cap.
    pub fn max_tokens_too_large(asked: u64, cap: u32, model: &str) -> Self {
        Self::invalid_request(format!(
            "max_tokens: {asked} > {cap}, which is the maximum allowed number of output tokens for {model}"
        ))
    }

    /// 400 for a prompt over the context window.
    pub fn prompt_too_long(tokens: u64, window: u32) -> Self {
        Self::invalid_request(format!(
            "prompt is too long: {tokens} tokens > {window} maximum"
        ))
    }

    /// 429 `rate_limit_error` for a quota refusal (the 2026 message template).
    pub fn rate_limited(t: &AnthropicThrottle, org: &str, model: &str) -> Self {
        let limit = thousands(t.limit);
        let message = format!(
            "This request would exceed your organization's rate limit of {limit} {} per minute (org: {org}, model: {model}). For details, refer to: https://docs.claude.com/en/api/rate-limits. You can see the response headers for current usage. Please reduce the prompt length or the maximum tokens requested, or try again later. You may also contact sales at https://claude.com/contact-sales to discuss your options for a rate limit increase.",
            t.dimension.phrase()
        );
        Self {
            retry_after: t.retry_after,
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", message)
        }
    }

    /// 429 for the count_tokens request bucket.
    pub fn count_tokens_limited(limit: u64, wait: Duration, org: &str, model: &str) -> Self {
        let throttle_like = format!(
            "This request would exceed your organization's rate limit of {} {} per minute (org: {org}, model: {model}). For details, refer to: https://docs.claude.com/en/api/rate-limits. You can see the response headers for current usage. Please reduce the prompt length or the maximum tokens requested, or try again later. You may also contact sales at https://claude.com/contact-sales to discuss your options for a rate limit increase.",
            thousands(limit),
            AnthropicDimension::Requests.phrase()
        );
        Self {
            retry_after: (wait != Duration::MAX).then_some(wait),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                throttle_like,
            )
        }
    }

    /// 500 `api_error`.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            "Internal server error",
        )
    }

    /// 529 `overloaded_error`.
    pub fn overloaded() -> Self {
        Self::new(status_529(), "overloaded_error", "Overloaded")
    }
}

/// `30000` → `30,000` (the 429 messages write limits with thousands separators).
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_and_separators() {
        assert_eq!(thousands(30_000), "30,000");
        assert_eq!(thousands(50), "50");
        assert_eq!(thousands(2_000_000), "2,000,000");
        let body = AnthropicError::overloaded().body("req_1");
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}"#
        );
        assert_eq!(AnthropicError::overloaded().status().as_u16(), 529);
    }
}
