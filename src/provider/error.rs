//! [`ConnectorError`]: every way a provider call can fail, classified so callers can decide
//! to retry, back off, fall back or give up without reading provider-specific text.
//!
//! Errors that come from an HTTP response carry that response's [`ResponseMeta`] (read by
//! the connector's header profile), so the limiter can learn from failures too; they reach
//! the limiter through the neutral [`ErrorInfo`] of [`ConnectorError::error_info`].

use std::time::Duration;

use crate::limiter::{ErrorInfo, ResponseMeta};

/// Which quota a 429 exhausted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateLimitDimension {
    /// Requests per window (OpenAI RPM, Azure "call rate limit").
    Requests,
    /// Tokens per window (OpenAI TPM, Azure "token rate limit").
    Tokens,
}

/// A failed provider call.
///
/// Variants that come from an HTTP response keep its [`ResponseMeta`] (boxed, so the error
/// stays small). Messages are the provider's own where it sent one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConnectorError {
    /// 401/403: the key is missing, wrong, or lacks permission. Not retryable.
    #[error("authentication failed (status {status}): {message}")]
    Authentication {
        /// HTTP status (401 or 403).
        status: u16,
        /// The provider's message.
        message: String,
        /// Headers of the response.
        meta: Box<ResponseMeta>,
    },
    /// 429 for a per-window quota: retryable after `retry_after`.
    #[error("rate limited on {}: {message}", dimension_name(*.dimension))]
    RateLimit {
        /// The server's wait: `retry-after-ms`/`retry-after` headers, else the "try again
        /// in 20s" / "retry after 60 seconds" text of the message.
        retry_after: Option<Duration>,
        /// The exhausted quota, from the body's `type`, Azure's `policy-id`, or the message.
        dimension: Option<RateLimitDimension>,
        /// The provider's message.
        message: String,
        /// Headers of the response.
        meta: Box<ResponseMeta>,
    },
    /// 429 `insufficient_quota`: billing quota used up; waiting does not help. Not retryable.
    #[error("quota exhausted: {message}")]
    QuotaExhausted {
        /// The provider's message.
        message: String,
        /// Headers of the response.
        meta: Box<ResponseMeta>,
    },
    /// 429 "Request too large": one request needs more tokens than the whole per-minute
    /// limit, so it can never be admitted. Not retryable.
    #[error("request too large for the token limit: {message}")]
    RequestTooLarge {
        /// The provider's message.
        message: String,
        /// Headers of the response.
        meta: Box<ResponseMeta>,
    },
    /// The connection could not be made or broke before a response (refused, reset, DNS).
    /// Retryable.
    #[error("network error: {message}")]
    Network {
        /// What failed.
        message: String,
    },
    /// No (complete) response, or no stream data, within the configured timeout. Retryable.
    #[error("timed out: {message}")]
    Timeout {
        /// What timed out.
        message: String,
    },
    /// 400/413/422 and other 4xx the caller must fix (bad parameter, context too long).
    /// Not retryable.
    #[error("invalid request (status {status}): {message}")]
    InvalidRequest {
        /// HTTP status.
        status: u16,
        /// The provider's message.
        message: String,
        /// The offending parameter, when the provider named it.
        param: Option<String>,
        /// The provider's error code (`context_length_exceeded`, …), when sent.
        code: Option<String>,
        /// Headers of the response.
        meta: Box<ResponseMeta>,
    },
    /// 404: the model or deployment does not exist. Not retryable.
    #[error("not found: {message}")]
    NotFound {
        /// The provider's message.
        message: String,
        /// The provider's error code (`model_not_found`, `DeploymentNotFound`), when sent.
        code: Option<String>,
        /// Headers of the response.
        meta: Box<ResponseMeta>,
    },
    /// Any other non-2xx: 5xx, 408 and 409 (retryable, as the OpenAI SDK retries them), or
    /// an unexpected status (not retryable).
    #[error("provider error (status {status}): {message}")]
    Provider {
        /// HTTP status.
        status: u16,
        /// The provider's message, or the start of the body when it sent no JSON error.
        message: String,
        /// The provider's error code, when sent.
        code: Option<String>,
        /// Headers of the response.
        meta: Box<ResponseMeta>,
    },
    /// A 2xx response whose body is not what the API promises. Not retryable.
    #[error("unparseable response: {message}")]
    Parse {
        /// What did not parse.
        message: String,
        /// Headers of the response.
        meta: Box<ResponseMeta>,
    },
    /// A stream broke: cut mid-way, ended without `[DONE]` or a finish reason, or carried
    /// an error event or an unparseable chunk. Retryable (the request can be sent again).
    #[error("stream error: {message}")]
    Stream {
        /// What went wrong.
        message: String,
    },
}

fn dimension_name(d: Option<RateLimitDimension>) -> &'static str {
    match d {
        Some(RateLimitDimension::Requests) => "requests",
        Some(RateLimitDimension::Tokens) => "tokens",
        None => "an unknown dimension",
    }
}

impl ConnectorError {
    /// Whether sending the same request again can succeed. The server's `x-should-retry`
    /// header, when present, decides (as the OpenAI SDK does); otherwise the class does:
    /// rate limits, network, timeouts, streams, 408, 409 and 5xx are retryable; authentication,
    /// invalid requests, not-found, quota exhaustion, too-large requests and parse errors
    /// are not.
    pub fn is_retryable(&self) -> bool {
        if let Some(verdict) = self.meta().and_then(|m| m.should_retry) {
            return verdict;
        }
        match self {
            Self::RateLimit { .. } | Self::Network { .. } | Self::Timeout { .. } => true,
            Self::Stream { .. } => true,
            Self::Provider { status, .. } => matches!(status, 408 | 409) || *status >= 500,
            Self::Authentication { .. }
            | Self::QuotaExhausted { .. }
            | Self::RequestTooLarge { .. }
            | Self::InvalidRequest { .. }
            | Self::NotFound { .. }
            | Self::Parse { .. } => false,
        }
    }

    /// A stable snake_case class name for metrics labels and CSV columns.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::Authentication { .. } => "authentication",
            Self::RateLimit { .. } => "rate_limit",
            Self::QuotaExhausted { .. } => "quota_exhausted",
            Self::RequestTooLarge { .. } => "request_too_large",
            Self::Network { .. } => "network",
            Self::Timeout { .. } => "timeout",
            Self::InvalidRequest { .. } => "invalid_request",
            Self::NotFound { .. } => "not_found",
            Self::Provider { .. } => "provider",
            Self::Parse { .. } => "parse",
            Self::Stream { .. } => "stream",
        }
    }

    /// The response's header view, for errors that had a response.
    pub fn meta(&self) -> Option<&ResponseMeta> {
        match self {
            Self::Authentication { meta, .. }
            | Self::RateLimit { meta, .. }
            | Self::QuotaExhausted { meta, .. }
            | Self::RequestTooLarge { meta, .. }
            | Self::InvalidRequest { meta, .. }
            | Self::NotFound { meta, .. }
            | Self::Provider { meta, .. }
            | Self::Parse { meta, .. } => Some(meta),
            Self::Network { .. } | Self::Timeout { .. } | Self::Stream { .. } => None,
        }
    }

    /// The HTTP status, for errors that had a response.
    pub fn status(&self) -> Option<u16> {
        self.meta().and_then(|m| m.status)
    }

    /// The server's requested wait: a rate limit's `retry_after`, else a `retry-after`
    /// header on any other error response.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimit { retry_after, .. } => *retry_after,
            other => other.meta().and_then(|m| m.retry_after),
        }
    }

    /// The neutral view the limiter's `backoff_delay` takes. `rate_limited` is true only
    /// for [`RateLimit`](Self::RateLimit): quota exhaustion and too-large requests are 429s
    /// that pausing the key cannot cure.
    pub fn error_info(&self) -> ErrorInfo {
        ErrorInfo {
            retryable: self.is_retryable(),
            rate_limited: matches!(self, Self::RateLimit { .. }),
            retry_after: self.retry_after(),
            status: self.status(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(status: u16) -> Box<ResponseMeta> {
        Box::new(ResponseMeta {
            status: Some(status),
            ..ResponseMeta::default()
        })
    }

    #[test]
    fn x_should_retry_overrides_the_class() {
        let mut m = meta(500);
        m.should_retry = Some(false);
        let e = ConnectorError::Provider {
            status: 500,
            message: "boom".into(),
            code: None,
            meta: m,
        };
        assert!(!e.is_retryable());
        let mut m = meta(400);
        m.should_retry = Some(true);
        let e = ConnectorError::InvalidRequest {
            status: 400,
            message: "bad".into(),
            param: None,
            code: None,
            meta: m,
        };
        assert!(e.is_retryable());
    }

    #[test]
    fn error_info_marks_only_rate_limits_as_rate_limited() {
        let rl = ConnectorError::RateLimit {
            retry_after: Some(Duration::from_secs(20)),
            dimension: Some(RateLimitDimension::Requests),
            message: "slow down".into(),
            meta: meta(429),
        };
        let info = rl.error_info();
        assert!(info.retryable && info.rate_limited);
        assert_eq!(info.retry_after, Some(Duration::from_secs(20)));
        assert_eq!(info.status, Some(429));
        let quota = ConnectorError::QuotaExhausted {
            message: "pay".into(),
            meta: meta(429),
        };
        let info = quota.error_info();
        assert!(!info.retryable && !info.rate_limited);
        assert_eq!(info.status, Some(429));
    }

    #[test]
    fn messages_name_the_dimension_and_status() {
        let rl = ConnectorError::RateLimit {
            retry_after: None,
            dimension: Some(RateLimitDimension::Tokens),
            message: "TPM".into(),
            meta: meta(429),
        };
        assert_eq!(rl.to_string(), "rate limited on tokens: TPM");
        assert_eq!(rl.error_type(), "rate_limit");
    }
}
