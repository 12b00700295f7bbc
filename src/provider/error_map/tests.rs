//! Error classes from canned status + body + headers (bodies copied from the wire facts),
//! and `is_retryable()` for each class.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::*;
use crate::provider::headers::HeaderProfile;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    pairs
        .iter()
        .map(|(k, v)| {
            (
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            )
        })
        .collect()
}

fn classify(profile: HeaderProfile, status: u16, h: &[(&str, &str)], body: &str) -> ConnectorError {
    let h = headers(h);
    let meta = profile.parse(Some(status), &h);
    from_response(status, &h, body.as_bytes(), meta)
}

fn openai(status: u16, h: &[(&str, &str)], body: &str) -> ConnectorError {
    classify(HeaderProfile::Openai, status, h, body)
}

fn azure(status: u16, h: &[(&str, &str)], body: &str) -> ConnectorError {
    classify(HeaderProfile::Azure, status, h, body)
}

const OPENAI_401: &str = r#"{"error":{"message":"Incorrect API key provided: sk-abc. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#;
const OPENAI_RPM: &str = r#"{"error":{"message":"Rate limit reached for gpt-4o-mini in organization org-mock on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 20s. Visit https://platform.openai.com/account/rate-limits to learn more.","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
const OPENAI_TPM: &str = r#"{"error":{"message":"Rate limit reached for gpt-4o in organization org-XXX on tokens per min (TPM): Limit 30000, Used 14567, Requested 24754. Please try again in 18.642s. Visit https://platform.openai.com/account/rate-limits to learn more.","type":"tokens","param":null,"code":"rate_limit_exceeded"}}"#;
const OPENAI_TOO_LARGE: &str = r#"{"error":{"message":"Request too large for gpt-4o in organization org-x on tokens per min (TPM): Limit 30000, Requested 31538. The input or output tokens must be reduced in order to run successfully. Visit https://platform.openai.com/account/rate-limits to learn more.","type":"tokens","param":null,"code":"rate_limit_exceeded"}}"#;
const OPENAI_QUOTA: &str = r#"{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#;
const OPENAI_400: &str = r#"{"error":{"message":"This model's maximum context length is 128000 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#;
const OPENAI_404: &str = r#"{"error":{"message":"The model `gpt-9` does not exist or you do not have access to it.","type":"invalid_request_error","param":null,"code":"model_not_found"}}"#;
const OPENAI_500: &str = r#"{"error":{"message":"The server had an error while processing your request. Sorry about that!","type":"server_error","param":null,"code":null}}"#;
const AZURE_TPM: &str = r#"{"error":{"code":"429","message":"Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-02-15-preview have exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after 60 seconds. Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit."}}"#;
const AZURE_RPM: &str = r#"{"error":{"code":"429","message":"Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21 have exceeded call rate limit of your current OpenAI S0 pricing tier. Please retry after 4 seconds. Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit."}}"#;
const AZURE_401: &str = r#"{"error":{"code":"401","message":"Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource."}}"#;
const AZURE_404: &str = r#"{"error":{"code":"DeploymentNotFound","message":"The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again."}}"#;

#[test]
fn status_401_is_authentication_and_not_retryable() {
    for e in [openai(401, &[], OPENAI_401), azure(401, &[], AZURE_401)] {
        assert!(
            matches!(e, ConnectorError::Authentication { status: 401, .. }),
            "{e:?}"
        );
        assert!(!e.is_retryable());
        assert_eq!(e.error_type(), "authentication");
    }
    let e = openai(401, &[], OPENAI_401);
    assert!(e.to_string().contains("Incorrect API key"), "{e}");
}

#[test]
fn openai_429_rpm_reads_dimension_and_text_retry_after() {
    let e = openai(429, &[("x-ratelimit-remaining-requests", "0")], OPENAI_RPM);
    let ConnectorError::RateLimit {
        retry_after,
        dimension,
        ref meta,
        ..
    } = e
    else {
        panic!("{e:?}")
    };
    assert_eq!(retry_after, Some(Duration::from_secs(20)));
    assert_eq!(dimension, Some(RateLimitDimension::Requests));
    assert_eq!(meta.remaining_requests, Some(0));
    assert!(e.is_retryable());
    let info = e.error_info();
    assert!(info.rate_limited && info.retryable);
    assert_eq!(info.status, Some(429));
    assert_eq!(info.retry_after, Some(Duration::from_secs(20)));
}

#[test]
fn openai_429_tpm_prefers_the_header_wait_over_the_text() {
    let e = openai(429, &[], OPENAI_TPM);
    assert!(matches!(
        e,
        ConnectorError::RateLimit {
            retry_after: Some(d),
            dimension: Some(RateLimitDimension::Tokens),
            ..
        } if d == Duration::from_millis(18_642)
    ));
    let e = openai(429, &[("retry-after-ms", "1500")], OPENAI_TPM);
    assert_eq!(e.retry_after(), Some(Duration::from_millis(1500)));
}

#[test]
fn insufficient_quota_and_request_too_large_are_not_retryable() {
    let e = openai(429, &[], OPENAI_QUOTA);
    assert!(matches!(e, ConnectorError::QuotaExhausted { .. }), "{e:?}");
    assert!(!e.is_retryable() && !e.error_info().rate_limited);
    let e = openai(429, &[], OPENAI_TOO_LARGE);
    assert!(matches!(e, ConnectorError::RequestTooLarge { .. }), "{e:?}");
    assert!(!e.is_retryable());
    assert_eq!(e.error_type(), "request_too_large");
}

#[test]
fn azure_429_reads_policy_id_retry_after_ms_and_text() {
    let e = azure(
        429,
        &[
            ("retry-after", "8"),
            ("retry-after-ms", "7250"),
            ("policy-id", "DeploymentRatelimit-Token"),
            ("x-ratelimit-remaining-tokens", "0"),
        ],
        AZURE_TPM,
    );
    assert!(matches!(
        e,
        ConnectorError::RateLimit {
            retry_after: Some(d),
            dimension: Some(RateLimitDimension::Tokens),
            ..
        } if d == Duration::from_millis(7250)
    ));
    // No headers: dimension and wait come from the message.
    let e = azure(429, &[], AZURE_RPM);
    assert!(matches!(
        e,
        ConnectorError::RateLimit {
            retry_after: Some(d),
            dimension: Some(RateLimitDimension::Requests),
            ..
        } if d == Duration::from_secs(4)
    ));
    let e = azure(429, &[("policy-id", "DeploymentRatelimit-Call")], AZURE_TPM);
    assert!(matches!(
        e,
        ConnectorError::RateLimit {
            dimension: Some(RateLimitDimension::Requests),
            ..
        }
    ));
}

#[test]
fn status_400_is_invalid_request_with_the_providers_message_and_param() {
    let e = openai(400, &[], OPENAI_400);
    let ConnectorError::InvalidRequest {
        status,
        ref message,
        ref param,
        ref code,
        ..
    } = e
    else {
        panic!("{e:?}")
    };
    assert_eq!(status, 400);
    assert_eq!(
        message,
        "This model's maximum context length is 128000 tokens."
    );
    assert_eq!(param.as_deref(), Some("messages"));
    assert_eq!(code.as_deref(), Some("context_length_exceeded"));
    assert!(!e.is_retryable());
}

#[test]
fn status_404_is_not_found_for_models_and_deployments() {
    let e = openai(404, &[], OPENAI_404);
    assert!(
        matches!(e, ConnectorError::NotFound { code: Some(ref c), .. } if c == "model_not_found")
    );
    let e = azure(404, &[], AZURE_404);
    assert!(
        matches!(e, ConnectorError::NotFound { code: Some(ref c), .. } if c == "DeploymentNotFound")
    );
    assert!(!e.is_retryable());
}

#[test]
fn server_errors_408_and_409_are_retryable_provider_errors() {
    for status in [500, 502, 503, 504, 408, 409] {
        let e = openai(status, &[], OPENAI_500);
        assert!(matches!(e, ConnectorError::Provider { status: s, .. } if s == status));
        assert!(e.is_retryable(), "{status}");
        assert_eq!(e.status(), Some(status));
    }
    let e = openai(500, &[("x-should-retry", "false")], OPENAI_500);
    assert!(!e.is_retryable(), "x-should-retry wins");
}

#[test]
fn non_json_bodies_keep_an_excerpt_as_message() {
    let e = openai(502, &[], "<html>Bad Gateway</html>");
    assert!(e.to_string().contains("<html>Bad Gateway</html>"), "{e}");
    let e = openai(503, &[], "");
    assert!(e.to_string().contains("empty body"), "{e}");
    let e = openai(400, &[], r#"{"error":"model 'x' not found"}"#);
    assert!(e.to_string().contains("model 'x' not found"), "{e}");
    let e = openai(422, &[], r#"{"message":"bad field","code":7}"#);
    assert!(matches!(
        e,
        ConnectorError::InvalidRequest { status: 422, .. }
    ));
    assert!(e.to_string().contains("bad field"), "{e}");
}

#[test]
fn retry_after_text_formats() {
    let cases = [
        ("Please try again in 20s.", Some(Duration::from_secs(20))),
        (
            "Please try again in 1.2s. Visit",
            Some(Duration::from_millis(1200)),
        ),
        ("Please try again in 6m0s.", Some(Duration::from_secs(360))),
        (
            "Please try again in 120ms.",
            Some(Duration::from_millis(120)),
        ),
        (
            "Please retry after 60 seconds.",
            Some(Duration::from_secs(60)),
        ),
        ("Please retry after 1 second.", Some(Duration::from_secs(1))),
        ("no hint here", None),
    ];
    for (text, want) in cases {
        assert_eq!(retry_after_in_text(text), want, "{text}");
    }
}

#[test]
fn classes_not_from_responses_are_retryable() {
    for e in [
        ConnectorError::Network {
            message: "connection reset".into(),
        },
        ConnectorError::Timeout {
            message: "60s".into(),
        },
        ConnectorError::Stream {
            message: "cut".into(),
        },
    ] {
        assert!(e.is_retryable(), "{e}");
        assert_eq!(e.meta(), None);
    }
    let e = ConnectorError::Parse {
        message: "x".into(),
        meta: Box::default(),
    };
    assert!(!e.is_retryable());
}
