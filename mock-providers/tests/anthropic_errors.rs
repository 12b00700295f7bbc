//! Every Anthropic error answer: status, the shape
//! `{"type":"error","error":{"type":…,"message":…},"request_id":…}` with the `request-id`
//! header's id, and the message the real API sends (where one is known).

mod common;

use common::{message, mock, Reply, ANTHROPIC, CLAUDE};
use mock_providers::provider::anthropic::{AnthropicFaults, AnthropicModelConfig};
use mock_providers::MockConfig;

/// Asserts the error shape and returns (error.type, error.message).
fn error(r: &Reply, status: u16) -> (String, String) {
    assert_eq!(r.status.as_u16(), status, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let b = r.json();
    let top: Vec<&String> = b.as_object().unwrap().keys().collect();
    assert_eq!(top, ["error", "request_id", "type"], "{b}");
    assert_eq!(b["type"], "error");
    let inner: Vec<&String> = b["error"].as_object().unwrap().keys().collect();
    assert_eq!(inner, ["message", "type"], "{b}");
    let id = b["request_id"].as_str().unwrap();
    assert!(id.starts_with("req_011C"), "{id}");
    assert_eq!(
        r.header("request-id"),
        Some(id),
        "same id in header and body"
    );
    (
        b["error"]["type"].as_str().unwrap().to_owned(),
        b["error"]["message"].as_str().unwrap().to_owned(),
    )
}

fn invalid(r: &Reply) -> String {
    let (kind, msg) = error(r, 400);
    assert_eq!(kind, "invalid_request_error");
    msg
}

#[tokio::test]
async fn validation_errors_have_the_real_messages() {
    let m = mock(MockConfig::default());
    let cases: [(&str, String); 9] = [
        (
            "max_tokens: Field required",
            format!(r#"{{"model":"{CLAUDE}","messages":[{{"role":"user","content":"hi"}}]}}"#),
        ),
        (
            "messages: at least one message is required",
            format!(r#"{{"model":"{CLAUDE}","max_tokens":5,"messages":[]}}"#),
        ),
        (
            "model: Field required",
            r#"{"max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#.to_owned(),
        ),
        (
            "stop_sequences: each stop sequence must contain non-whitespace",
            message(CLAUDE, "hi", 5, r#""stop_sequences":["\n"]"#),
        ),
        (
            "max_tokens: 128001 > 64000, which is the maximum allowed number of output tokens for claude-sonnet-4-5-20250929",
            message(CLAUDE, "hi", 128_001, ""),
        ),
        (
            "temperature: Input should be less than or equal to 1",
            message(CLAUDE, "hi", 5, r#""temperature":2"#),
        ),
        (
            "n: Extra inputs are not permitted",
            message(CLAUDE, "hi", 5, r#""n":2"#),
        ),
        (
            "messages.0.role: Input should be 'user' or 'assistant'",
            format!(r#"{{"model":"{CLAUDE}","max_tokens":5,"messages":[{{"role":"tool","content":"x"}}]}}"#),
        ),
        (
            "There was an error parsing the body of your request: EOF while parsing an object at line 1 column 1",
            "{".to_owned(),
        ),
    ];
    for (expected, body) in cases {
        let r = m.anthropic("/v1/messages", &body).await;
        assert_eq!(invalid(&r), expected, "body {body}");
    }
    // Nothing invalid was charged.
    let ok = m
        .anthropic("/v1/messages", &message(CLAUDE, "hi", 5, ""))
        .await;
    assert_eq!(
        ok.header("anthropic-ratelimit-requests-remaining"),
        Some("999")
    );
}

#[tokio::test]
async fn prompt_over_the_context_window() {
    let mut config = MockConfig::default();
    config.anthropic.models[2].context_window = 50;
    let m = mock(config);
    let r = m
        .anthropic(
            "/v1/messages",
            &message(CLAUDE, &"word ".repeat(100), 5, ""),
        )
        .await;
    let msg = invalid(&r);
    assert!(msg.starts_with("prompt is too long: "), "{msg}");
    assert!(msg.ends_with(" tokens > 50 maximum"), "{msg}");
}

#[tokio::test]
async fn version_header_is_required_and_checked() {
    let m = mock(MockConfig::default());
    let body = message(CLAUDE, "hi", 5, "");
    let r = m.call("POST", "/v1/messages", &[ANTHROPIC[0]], &body).await;
    assert_eq!(invalid(&r), "anthropic-version: header is required");
    let r = m
        .call(
            "POST",
            "/v1/messages",
            &[ANTHROPIC[0], ("anthropic-version", "2024-01-01")],
            &body,
        )
        .await;
    assert_eq!(
        invalid(&r),
        r#"anthropic-version: "2024-01-01" is not a valid version"#
    );
}

#[tokio::test]
async fn authentication_and_permission() {
    let mut config = MockConfig::default();
    config.anthropic.keys = vec!["sk-good".into(), "sk-limited".into()];
    config.anthropic.forbidden_keys = vec!["sk-limited".into()];
    let m = mock(config);
    let body = message(CLAUDE, "hi", 5, "");
    let version = ANTHROPIC[1];
    let r = m.call("POST", "/v1/messages", &[version], &body).await;
    assert_eq!(
        error(&r, 401),
        (
            "authentication_error".into(),
            "x-api-key header is required".into()
        )
    );
    let r = m
        .call(
            "POST",
            "/v1/messages",
            &[version, ("x-api-key", "sk-bad")],
            &body,
        )
        .await;
    assert_eq!(
        error(&r, 401),
        ("authentication_error".into(), "invalid x-api-key".into())
    );
    let r = m
        .call(
            "POST",
            "/v1/messages",
            &[version, ("x-api-key", "sk-limited")],
            &body,
        )
        .await;
    assert_eq!(
        error(&r, 403),
        (
            "permission_error".into(),
            "Your API key does not have permission to use the specified resource.".into()
        )
    );
    let r = m
        .call(
            "GET",
            "/v1/models",
            &[version, ("authorization", "Bearer sk-bad")],
            "",
        )
        .await;
    assert_eq!(error(&r, 401).0, "authentication_error");
    let r = m
        .call(
            "POST",
            "/v1/messages",
            &[version, ("x-api-key", "sk-good")],
            &body,
        )
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn not_found_method_and_size() {
    let m = mock(MockConfig {
        max_body_bytes: 200,
        ..MockConfig::default()
    });
    let r = m
        .anthropic(
            "/v1/messages",
            &message("claude-3-7-sonnet-latest", "hi", 5, ""),
        )
        .await;
    assert_eq!(
        error(&r, 404),
        (
            "not_found_error".into(),
            "model: claude-3-7-sonnet-latest".into()
        )
    );
    let r = m
        .call("GET", "/v1/models/claude-nope", &ANTHROPIC, "")
        .await;
    assert_eq!(error(&r, 404).1, "model: claude-nope");
    let r = m.anthropic("/v1/complete", "{}").await;
    assert_eq!(
        error(&r, 404),
        (
            "not_found_error".into(),
            "The requested resource could not be found.".into()
        )
    );
    let r = m.call("GET", "/v1/messages", &ANTHROPIC, "").await;
    assert_eq!(error(&r, 405).0, "invalid_request_error");
    let r = m
        .anthropic("/v1/messages", &message(CLAUDE, &"x".repeat(300), 5, ""))
        .await;
    assert_eq!(
        error(&r, 413),
        (
            "request_too_large".into(),
            "Request exceeds the maximum allowed number of bytes.".into()
        )
    );
}

#[tokio::test]
async fn rate_limit_429_names_the_dimension_with_headers() {
    let mut config = MockConfig::default();
    config.anthropic.models = vec![AnthropicModelConfig::with_limits(CLAUDE, 1, 30_000, 8_000)];
    config.anthropic.organization_id = "org-uuid".into();
    let m = mock(config);
    assert_eq!(
        m.anthropic("/v1/messages", &message(CLAUDE, "hi", 5, ""))
            .await
            .status,
        200
    );
    let r = m
        .anthropic("/v1/messages", &message(CLAUDE, "hi", 5, ""))
        .await;
    let (kind, msg) = error(&r, 429);
    assert_eq!(kind, "rate_limit_error");
    assert_eq!(
        msg,
        "This request would exceed your organization's rate limit of 1 requests per minute (org: org-uuid, model: claude-sonnet-4-5-20250929). For details, refer to: https://docs.claude.com/en/api/rate-limits. You can see the response headers for current usage. Please reduce the prompt length or the maximum tokens requested, or try again later. You may also contact sales at https://claude.com/contact-sales to discuss your options for a rate limit increase."
    );
    assert_eq!(r.header("retry-after"), Some("60"));
    assert_eq!(
        r.header("anthropic-ratelimit-requests-remaining"),
        Some("0")
    );
    assert_eq!(r.header("anthropic-organization-id"), Some("org-uuid"));
    // Output tokens: 6 000 generated leave 2 000, less than the next max_tokens.
    let mut config = MockConfig::default();
    config.anthropic.models = vec![AnthropicModelConfig::with_limits(
        CLAUDE, 100, 30_000, 8_000,
    )];
    config.output_tokens = mock_providers::generation::OutputTokens::Fixed { tokens: 6_000 };
    let m = mock(config);
    let r = m
        .anthropic("/v1/messages", &message(CLAUDE, "hi", 6_000, ""))
        .await;
    assert_eq!(r.status, 200);
    let r = m
        .anthropic("/v1/messages", &message(CLAUDE, "hi", 3_000, ""))
        .await;
    let (_, msg) = error(&r, 429);
    assert!(
        msg.contains("rate limit of 8,000 output tokens per minute"),
        "{msg}"
    );
    // A request that can never fit gets no retry-after.
    m.clock.advance(std::time::Duration::from_secs(60));
    let r = m
        .anthropic("/v1/messages", &message(CLAUDE, "hi", 8_001, ""))
        .await;
    assert_eq!(error(&r, 429).0, "rate_limit_error");
    assert!(r.header("retry-after").is_none());
}

#[tokio::test]
async fn injected_500_and_529() {
    let mut config = MockConfig::default();
    config.anthropic.models[2].faults = AnthropicFaults {
        error_500: 1.0,
        should_retry: Some(true),
        ..AnthropicFaults::default()
    };
    config.anthropic.models[1].faults = AnthropicFaults {
        error_529: 1.0,
        ..AnthropicFaults::default()
    };
    let m = mock(config);
    let r = m
        .anthropic("/v1/messages", &message(CLAUDE, "hi", 5, ""))
        .await;
    assert_eq!(
        error(&r, 500),
        ("api_error".into(), "Internal server error".into())
    );
    assert_eq!(r.header("x-should-retry"), Some("true"));
    for stream in ["", r#""stream":true"#] {
        let body = message("claude-haiku-4-5-20251001", "hi", 5, stream);
        let r = m.anthropic("/v1/messages", &body).await;
        assert_eq!(
            error(&r, 529),
            ("overloaded_error".into(), "Overloaded".into())
        );
        assert!(r.header("x-should-retry").is_none());
    }
}
