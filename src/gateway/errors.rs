//! The gateway's own answers, in the shape of the API the client called: OpenAI's
//! `{"error":{"message","type","param","code"}}` on `/v1/…`, Azure's
//! `{"error":{"code","message"}}` on `/openai/…` — so an official SDK reads them as it
//! reads the provider's (a 429's `retry-after-ms`/`retry-after` drives its retry).

use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::limiter::{RateLimitType, UsageStats};

/// Which API's shape an answer takes (from the route the client called).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// `/v1/…`: OpenAI's shapes.
    Openai,
    /// `/openai/…`: Azure OpenAI's shapes.
    Azure,
}

impl Family {
    /// The family of a request path: Azure for `/openai/…`, else OpenAI.
    pub fn of_path(path: &str) -> Self {
        if path.starts_with("/openai/") || path == "/openai" {
            Self::Azure
        } else {
            Self::Openai
        }
    }
}

/// One gateway answer: status, body, extra headers.
#[derive(Debug)]
pub struct GatewayError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The JSON body.
    pub body: Value,
    /// Headers besides `content-type`.
    pub headers: HeaderMap,
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body)).into_response();
        r.headers_mut().extend(self.headers);
        r
    }
}

fn openai(
    status: StatusCode,
    message: String,
    kind: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> GatewayError {
    GatewayError {
        status,
        body: json!({"error": {"message": message, "type": kind, "param": param, "code": code}}),
        headers: HeaderMap::new(),
    }
}

fn azure(status: StatusCode, code: &str, message: String) -> GatewayError {
    GatewayError {
        status,
        body: json!({"error": {"code": code, "message": message}}),
        headers: HeaderMap::new(),
    }
}

fn header(map: &mut HeaderMap, name: &'static str, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        map.insert(HeaderName::from_static(name), v);
    }
}

impl GatewayError {
    /// 401: no gateway key, or an unknown one.
    pub fn unauthorized(family: Family) -> Self {
        match family {
            Family::Openai => openai(
                StatusCode::UNAUTHORIZED,
                "Incorrect API key provided. Present a gateway key as `Authorization: Bearer <key>` or `api-key: <key>`.".into(),
                "invalid_request_error",
                None,
                Some("invalid_api_key"),
            ),
            Family::Azure => azure(
                StatusCode::UNAUTHORIZED,
                "401",
                "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.".into(),
            ),
        }
    }

    /// 400: the body is not what the route takes; `param` names the field.
    pub fn invalid(family: Family, message: impl Into<String>, param: Option<&str>) -> Self {
        let message = message.into();
        match family {
            Family::Openai => openai(
                StatusCode::BAD_REQUEST,
                message,
                "invalid_request_error",
                param,
                None,
            ),
            Family::Azure => {
                let mut e = azure(StatusCode::BAD_REQUEST, "BadRequest", message);
                e.body["error"]["param"] = json!(param);
                e
            }
        }
    }

    /// 404: no upstream serves this model (OpenAI) or deployment (Azure).
    pub fn model_not_found(family: Family, model: &str) -> Self {
        match family {
            Family::Openai => openai(
                StatusCode::NOT_FOUND,
                format!("The model `{model}` does not exist or you do not have access to it."),
                "invalid_request_error",
                None,
                Some("model_not_found"),
            ),
            Family::Azure => azure(
                StatusCode::NOT_FOUND,
                "DeploymentNotFound",
                "The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again.".into(),
            ),
        }
    }

    /// 404: no such route.
    pub fn no_route(family: Family, method: &str, path: &str) -> Self {
        match family {
            Family::Openai => openai(
                StatusCode::NOT_FOUND,
                format!("Invalid URL ({method} {path})"),
                "invalid_request_error",
                None,
                None,
            ),
            Family::Azure => azure(StatusCode::NOT_FOUND, "404", "Resource not found".into()),
        }
    }

    /// 405: the route exists, not with this method.
    pub fn method_not_allowed(family: Family, method: &str, path: &str) -> Self {
        let message = format!("Method {method} is not allowed on {path}");
        match family {
            Family::Openai => openai(
                StatusCode::METHOD_NOT_ALLOWED,
                message,
                "invalid_request_error",
                None,
                None,
            ),
            Family::Azure => azure(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", message),
        }
    }

    /// 413: the body is larger than `limit` bytes.
    pub fn too_large_body(family: Family, limit: usize) -> Self {
        let message =
            format!("The request body is larger than the gateway accepts ({limit} bytes).");
        match family {
            Family::Openai => openai(
                StatusCode::PAYLOAD_TOO_LARGE,
                message,
                "invalid_request_error",
                None,
                Some("request_too_large"),
            ),
            Family::Azure => azure(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                message,
            ),
        }
    }

    /// 429 at once: the request's estimate can never fit `dimension`'s capacity; waiting
    /// never helps (no retry-after, `x-should-retry: false`).
    pub fn never_fits(
        family: Family,
        model: &str,
        dimension: RateLimitType,
        requested: u64,
        capacity: u64,
    ) -> Self {
        let mut e = match family {
            Family::Openai => openai(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "Request too large for {model} at the gateway on {dimension}: Limit {capacity}, Requested {requested}. The input or output tokens must be reduced in order to run successfully."
                ),
                unit_type(dimension),
                None,
                Some("rate_limit_exceeded"),
            ),
            Family::Azure => azure(
                StatusCode::TOO_MANY_REQUESTS,
                "429",
                format!(
                    "Requests to the {model} deployment at the gateway can never fit its {dimension} limit: Limit {capacity}, Requested {requested}. Reduce the input or max_tokens."
                ),
            ),
        };
        header(&mut e.headers, "x-should-retry", "false".into());
        e
    }

    /// 429 after the request waited its max wait: retry after exactly `retry_after`, with
    /// `x-ratelimit-*` headers describing the gateway's limit that refused (`stats`).
    pub fn throttled(
        family: Family,
        model: &str,
        dimension: Option<RateLimitType>,
        retry_after: Duration,
        stats: Option<&UsageStats>,
    ) -> Self {
        let ms = retry_after.as_nanos().div_ceil(1_000_000);
        let secs = retry_after.as_nanos().div_ceil(1_000_000_000);
        let what = dimension.map_or_else(|| "its limits".to_owned(), |d| d.to_string());
        let mut e = match family {
            Family::Openai => openai(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "Rate limit reached for {model} at the gateway on {what}. Please try again in {:.3}s.",
                    ms as f64 / 1000.0
                ),
                dimension.map_or("requests", unit_type),
                None,
                Some("rate_limit_exceeded"),
            ),
            Family::Azure => azure(
                StatusCode::TOO_MANY_REQUESTS,
                "429",
                format!(
                    "Requests to the {model} deployment have exceeded the gateway's {what} limit. Please retry after {secs} seconds."
                ),
            ),
        };
        header(&mut e.headers, "retry-after-ms", ms.to_string());
        header(&mut e.headers, "retry-after", secs.to_string());
        if let Some(stats) = stats {
            rate_limit_headers(&mut e.headers, stats);
        }
        e
    }

    /// 503: the limiter's shared backend is down and the failure policy denies.
    pub fn unavailable(family: Family) -> Self {
        let message =
            "The gateway cannot reach its shared rate-limit store; try again shortly.".to_owned();
        let mut e = match family {
            Family::Openai => openai(
                StatusCode::SERVICE_UNAVAILABLE,
                message,
                "server_error",
                None,
                None,
            ),
            Family::Azure => azure(StatusCode::SERVICE_UNAVAILABLE, "503", message),
        };
        header(&mut e.headers, "retry-after", "1".into());
        e
    }

    /// 502: the upstream could not be reached or answered unreadably.
    pub fn bad_gateway(family: Family, what: &str) -> Self {
        let message = format!("The upstream failed: {what}");
        match family {
            Family::Openai => openai(StatusCode::BAD_GATEWAY, message, "server_error", None, None),
            Family::Azure => azure(StatusCode::BAD_GATEWAY, "502", message),
        }
    }
}

fn unit_type(d: RateLimitType) -> &'static str {
    match d.unit() {
        crate::limiter::Unit::Requests => "requests",
        crate::limiter::Unit::Tokens => "tokens",
        crate::limiter::Unit::InputTokens => "input_tokens",
        crate::limiter::Unit::OutputTokens => "output_tokens",
    }
}

/// `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` from a key's stats (resets as
/// Go durations, as OpenAI sends them): the first request and token dimensions.
pub fn rate_limit_headers(map: &mut HeaderMap, stats: &UsageStats) {
    use crate::limiter::Unit;
    for (unit, suffix) in [(Unit::Requests, "requests"), (Unit::Tokens, "tokens")] {
        let Some(d) = stats
            .dimensions
            .iter()
            .find(|d| d.dimension.unit() == unit && d.dimension != RateLimitType::Concurrent)
        else {
            continue;
        };
        let put = |map: &mut HeaderMap, name: String, value: String| {
            if let (Ok(n), Ok(v)) = (HeaderName::try_from(name), HeaderValue::from_str(&value)) {
                map.insert(n, v);
            }
        };
        put(
            map,
            format!("x-ratelimit-limit-{suffix}"),
            d.capacity.to_string(),
        );
        put(
            map,
            format!("x-ratelimit-remaining-{suffix}"),
            d.remaining.to_string(),
        );
        put(
            map,
            format!("x-ratelimit-reset-{suffix}"),
            go_duration(d.reset_after),
        );
    }
}

/// `d` as a Go duration rounded up to the millisecond (`20ms`, `1.2s`, `6m0s`), the format
/// of OpenAI's reset headers.
pub fn go_duration(d: Duration) -> String {
    let ms = d.as_nanos().div_ceil(1_000_000);
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (m, rest) = (ms / 60_000, ms % 60_000);
    let secs = if rest % 1000 == 0 {
        format!("{}s", rest / 1000)
    } else {
        let s = format!("{}.{:03}", rest / 1000, rest % 1000);
        format!("{}s", s.trim_end_matches('0'))
    };
    if m > 0 {
        format!("{m}m{secs}")
    } else {
        secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_round_up_to_the_millisecond() {
        let ms = Duration::from_millis;
        assert_eq!(go_duration(Duration::from_micros(19_001)), "20ms");
        assert_eq!(go_duration(ms(1200)), "1.2s");
        assert_eq!(go_duration(ms(360_000)), "6m0s");
        assert_eq!(go_duration(ms(61_050)), "1m1.05s");
    }

    #[test]
    fn a_throttle_says_the_exact_wait_rounded_up() {
        let e = GatewayError::throttled(
            Family::Openai,
            "m",
            Some(RateLimitType::TokensPerMinute),
            Duration::from_micros(1_500_001),
            None,
        );
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(e.headers["retry-after-ms"], "1501");
        assert_eq!(e.headers["retry-after"], "2");
        assert_eq!(e.body["error"]["type"], "tokens");
        assert_eq!(e.body["error"]["code"], "rate_limit_exceeded");
        let a = GatewayError::throttled(Family::Azure, "d", None, Duration::from_secs(3), None);
        assert_eq!(a.body["error"]["code"], "429");
        assert_eq!(a.headers["retry-after"], "3");
    }
}
