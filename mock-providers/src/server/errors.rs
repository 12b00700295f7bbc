//! The providers' own error bodies and statuses, byte for byte where the root `DESIGN.md` §4
//! (wire facts) gives them.
//!
//! OpenAI: `{"error":{"message":…,"type":…,"param":…,"code":…}}`.
//! Azure: `{"error":{"code":…,"message":…}}` for gateway errors (401, 404, 429); errors from
//! the model itself (400, 500) keep OpenAI's shape on Azure too, as the real service does.

use axum::http::StatusCode;
use serde::Serialize;

use crate::quota::{Dimension, Throttle};
use crate::units::{ceil_secs, go_duration_ms};

/// Which provider's error dialect to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// OpenAI (`/v1/...`).
    OpenAi,
    /// Azure OpenAI (`/openai/deployments/...`).
    Azure,
}

/// An error response: status and JSON body (headers are added by the caller).
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// The JSON body.
    pub body: String,
}

#[derive(Serialize)]
struct OpenAiBody<'a> {
    error: OpenAiInner<'a>,
}

#[derive(Serialize)]
struct OpenAiInner<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

#[derive(Serialize)]
struct AzureBody<'a> {
    error: AzureInner<'a>,
}

#[derive(Serialize)]
struct AzureInner<'a> {
    code: &'a str,
    message: &'a str,
}

impl ApiError {
    /// An OpenAI-shaped error.
    pub fn openai(
        status: StatusCode,
        message: &str,
        kind: &str,
        param: Option<&str>,
        code: Option<&str>,
    ) -> Self {
        let body = OpenAiBody {
            error: OpenAiInner {
                message,
                kind,
                param,
                code,
            },
        };
        Self {
            status,
            body: serde_json::to_string(&body).unwrap_or_default(),
        }
    }

    /// An Azure gateway-shaped error.
    pub fn azure(status: StatusCode, code: &str, message: &str) -> Self {
        let body = AzureBody {
            error: AzureInner { code, message },
        };
        Self {
            status,
            body: serde_json::to_string(&body).unwrap_or_default(),
        }
    }

    /// 400 `invalid_request_error` naming the offending parameter.
    pub fn invalid_request(message: &str, param: Option<&str>, code: Option<&str>) -> Self {
        Self::openai(
            StatusCode::BAD_REQUEST,
            message,
            "invalid_request_error",
            param,
            code,
        )
    }

    /// 400 for a body that is not JSON (OpenAI's wording).
    pub fn invalid_json() -> Self {
        Self::invalid_request(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you have trouble figuring out how to fix this, please contact us through our help center at help.openai.com.)",
            None,
            None,
        )
    }

    /// 413 for a body over the configured size.
    pub fn body_too_large(limit: usize) -> Self {
        let message = format!(
            "Request body too large: the maximum accepted size is {limit} bytes. Reduce the size of the request and try again."
        );
        Self::openai(
            StatusCode::PAYLOAD_TOO_LARGE,
            &message,
            "invalid_request_error",
            None,
            Some("request_too_large"),
        )
    }

    /// 401 for a missing or wrong key.
    pub fn unauthorized(flavor: Flavor, key: Option<&str>) -> Self {
        match (flavor, key) {
            (Flavor::Azure, _) => Self::azure(
                StatusCode::UNAUTHORIZED,
                "401",
                "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.",
            ),
            (Flavor::OpenAi, None) => Self::openai(
                StatusCode::UNAUTHORIZED,
                "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API from your browser and are prompted for a username. You can obtain an API key from https://platform.openai.com/account/api-keys.",
                "invalid_request_error",
                None,
                None,
            ),
            (Flavor::OpenAi, Some(key)) => Self::openai(
                StatusCode::UNAUTHORIZED,
                &format!(
                    "Incorrect API key provided: {}. You can find your API key at https://platform.openai.com/account/api-keys.",
                    mask_key(key)
                ),
                "invalid_request_error",
                None,
                Some("invalid_api_key"),
            ),
        }
    }

    /// 401 when `OpenAI-Organization` names an organization the key does not belong to.
    pub fn mismatched_organization() -> Self {
        Self::openai(
            StatusCode::UNAUTHORIZED,
            "OpenAI-Organization header should match organization for API key",
            "invalid_request_error",
            None,
            Some("mismatched_organization"),
        )
    }

    /// 404 `model_not_found`.
    pub fn model_not_found(model: &str) -> Self {
        Self::openai(
            StatusCode::NOT_FOUND,
            &format!("The model `{model}` does not exist or you do not have access to it."),
            "invalid_request_error",
            None,
            Some("model_not_found"),
        )
    }

    /// 404 for a model of the wrong kind on an OpenAI route.
    pub fn wrong_model_kind(model: &str, path: &str) -> Self {
        Self::openai(
            StatusCode::NOT_FOUND,
            &format!("The model `{model}` is not supported in the {path} endpoint."),
            "invalid_request_error",
            Some("model"),
            None,
        )
    }

    /// Azure 404 `DeploymentNotFound`.
    pub fn deployment_not_found() -> Self {
        Self::azure(
            StatusCode::NOT_FOUND,
            "DeploymentNotFound",
            "The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again.",
        )
    }

    /// Azure 400 `OperationNotSupported` (e.g. embeddings on a chat deployment).
    pub fn operation_not_supported(operation: &str, model: &str) -> Self {
        Self::azure(
            StatusCode::BAD_REQUEST,
            "OperationNotSupported",
            &format!(
                "The {operation} operation does not work with the specified model, {model}. Please choose different model and try again. You can learn more about which models can be used with each operation here: https://go.microsoft.com/fwlink/?linkid=2197993."
            ),
        )
    }

    /// 404 for an unknown path (or Azure without `api-version`).
    pub fn not_found(flavor: Flavor, method: &str, path: &str) -> Self {
        match flavor {
            Flavor::Azure => Self::azure(StatusCode::NOT_FOUND, "404", "Resource not found"),
            Flavor::OpenAi => Self::openai(
                StatusCode::NOT_FOUND,
                &format!("Invalid URL ({method} {path})"),
                "invalid_request_error",
                None,
                None,
            ),
        }
    }

    /// 405 for a known path with the wrong method.
    pub fn method_not_allowed(method: &str, path: &str) -> Self {
        Self::openai(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("Invalid method for URL ({method} {path})"),
            "invalid_request_error",
            None,
            None,
        )
    }

    /// An injected 500.
    pub fn server_error() -> Self {
        Self::openai(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
            None,
        )
    }

    /// An injected 503.
    pub fn overloaded(flavor: Flavor) -> Self {
        match flavor {
            Flavor::OpenAi => Self::openai(
                StatusCode::SERVICE_UNAVAILABLE,
                "The engine is currently overloaded, please try again later.",
                "server_error",
                None,
                None,
            ),
            Flavor::Azure => Self::azure(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "The service is temporarily unable to process your request. Please try again later.",
            ),
        }
    }

    /// OpenAI's 429 `insufficient_quota`: the billing quota is used up, so waiting does not
    /// help (the body in the root `DESIGN.md` §4; the same body on Azure routes).
    pub fn insufficient_quota() -> Self {
        Self::openai(
            StatusCode::TOO_MANY_REQUESTS,
            "You exceeded your current quota, please check your plan and billing details.",
            "insufficient_quota",
            None,
            Some("insufficient_quota"),
        )
    }

    /// OpenAI's 429 for a throttle: "Rate limit reached …", or "Request too large …" when
    /// the request can never fit.
    pub fn openai_rate_limited(throttle: &Throttle, model: &str, org: &str) -> Self {
        let (per, short) = match throttle.dimension {
            Dimension::Requests => ("requests per min", "RPM"),
            Dimension::Tokens => ("tokens per min", "TPM"),
        };
        let message = match throttle.retry_after {
            Some(wait) => format!(
                "Rate limit reached for {model} in organization {org} on {per} ({short}): Limit {}, Used {}, Requested {}. Please try again in {}. Visit https://platform.openai.com/account/rate-limits to learn more.",
                throttle.limit,
                throttle.used,
                throttle.requested,
                go_duration_ms(wait)
            ),
            None => format!(
                "Request too large for {model} in organization {org} on {per} ({short}): Limit {}, Requested {}. The input or output tokens must be reduced in order to run successfully. Visit https://platform.openai.com/account/rate-limits to learn more.",
                throttle.limit, throttle.requested
            ),
        };
        Self::openai(
            StatusCode::TOO_MANY_REQUESTS,
            &message,
            throttle.dimension.as_str(),
            None,
            Some("rate_limit_exceeded"),
        )
    }

    /// Azure's 429 for a throttle; `wait` is the advertised retry time.
    pub fn azure_rate_limited(
        throttle: &Throttle,
        operation: &str,
        api_version: &str,
        wait: std::time::Duration,
    ) -> Self {
        let limit = match throttle.dimension {
            Dimension::Requests => "call rate limit",
            Dimension::Tokens => "token rate limit",
        };
        let message = format!(
            "Requests to the {operation} Operation under Azure OpenAI API version {api_version} have exceeded {limit} of your current OpenAI S0 pricing tier. Please retry after {} seconds. Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit.",
            ceil_secs(wait)
        );
        Self::azure(StatusCode::TOO_MANY_REQUESTS, "429", &message)
    }
}

/// `sk-abc…wxyz` → `sk-a****wxyz`: enough to recognise a key, not to use it.
fn mask_key(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 8 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 8))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::quota::QuotaSnapshot;

    fn throttle(dimension: Dimension, retry_after: Option<Duration>) -> Throttle {
        Throttle {
            dimension,
            retry_after,
            limit: 3,
            used: 3,
            requested: 1,
            snapshot: QuotaSnapshot {
                limit_requests: 3,
                remaining_requests: 0,
                reset_requests: Duration::ZERO,
                limit_tokens: 0,
                remaining_tokens: 0,
                reset_tokens: Duration::ZERO,
            },
        }
    }

    #[test]
    fn openai_429_body_is_byte_exact() {
        let t = throttle(Dimension::Requests, Some(Duration::from_secs(20)));
        let e = ApiError::openai_rate_limited(&t, "gpt-4o-mini", "org-mock");
        assert_eq!(
            e.body,
            r#"{"error":{"message":"Rate limit reached for gpt-4o-mini in organization org-mock on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 20s. Visit https://platform.openai.com/account/rate-limits to learn more.","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#
        );
    }

    #[test]
    fn azure_429_body_is_byte_exact() {
        let t = throttle(Dimension::Tokens, Some(Duration::from_millis(59_001)));
        let e = ApiError::azure_rate_limited(
            &t,
            "ChatCompletions_Create",
            "2024-02-15-preview",
            Duration::from_millis(59_001),
        );
        assert_eq!(
            e.body,
            r#"{"error":{"code":"429","message":"Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-02-15-preview have exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after 60 seconds. Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit."}}"#
        );
    }

    #[test]
    fn insufficient_quota_body_is_byte_exact() {
        let e = ApiError::insufficient_quota();
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            e.body,
            r#"{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#
        );
    }

    #[test]
    fn keys_are_masked() {
        assert_eq!(mask_key("sk-abcdefgh1234"), "sk-a*******1234");
        assert_eq!(mask_key("short"), "*****");
    }
}
