//! In-process tests of throttling (OpenAI RPM/TPM/too-large, Azure call/token limits),
//! header switches, injected faults, latency pacing under paused time, and the admin
//! endpoints (stats, reset, metrics).

mod common;

use std::time::Duration;

use common::{chat, mock, OPENAI_KEY};
use mock_providers::config::{DeploymentConfig, FaultConfig, ModelConfig};
use mock_providers::generation::tokenizer::Encoding;
use mock_providers::generation::{LatencyConfig, OutputTokens};
use mock_providers::MockConfig;
use serde_json::json;

const AZ: &str = "/openai/deployments/chat60/chat/completions?api-version=2024-02-15-preview";

/// gpt-4o-mini at 3 RPM / 1000 TPM; deployment `chat60` at 10 000 TPM (60 RPM).
fn small() -> MockConfig {
    MockConfig {
        models: vec![ModelConfig::chat(
            "gpt-4o-mini",
            Encoding::O200kBase,
            3,
            1_000,
        )],
        deployments: vec![DeploymentConfig::new("chat60", "gpt-4o-mini", 10_000)],
        ..MockConfig::default()
    }
}

#[tokio::test]
async fn openai_tokens_429_and_request_too_large() {
    let m = mock(small());
    // Estimate ceil(4/4) + 899 = 900 tokens.
    let r = m
        .post(
            "/v1/chat/completions",
            &chat("gpt-4o-mini", "abcd", r#""max_tokens":899"#),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-ratelimit-remaining-tokens"), Some("100"));
    assert_eq!(r.header("x-ratelimit-reset-tokens"), Some("54s"));
    let r = m
        .post(
            "/v1/chat/completions",
            &chat("gpt-4o-mini", "abcd", r#""max_tokens":399"#),
        )
        .await;
    assert_eq!(r.status, 429);
    assert_eq!(
        r.text(),
        r#"{"error":{"message":"Rate limit reached for gpt-4o-mini in organization org-mock on tokens per min (TPM): Limit 1000, Used 900, Requested 400. Please try again in 18s. Visit https://platform.openai.com/account/rate-limits to learn more.","type":"tokens","param":null,"code":"rate_limit_exceeded"}}"#
    );
    assert_eq!(r.header("retry-after"), Some("18"));
    assert_eq!(r.header("retry-after-ms"), Some("18000"));
    assert_eq!(r.header("x-ratelimit-remaining-requests"), Some("2"));
    m.clock.advance(Duration::from_millis(17_999));
    let r = m
        .post(
            "/v1/chat/completions",
            &chat("gpt-4o-mini", "abcd", r#""max_tokens":399"#),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.header("retry-after-ms")),
        (429, Some("1"))
    );

    let r = m
        .post(
            "/v1/chat/completions",
            &chat("gpt-4o-mini", "abcd", r#""max_tokens":2000"#),
        )
        .await;
    assert_eq!(r.status, 429);
    assert_eq!(
        r.text(),
        r#"{"error":{"message":"Request too large for gpt-4o-mini in organization org-mock on tokens per min (TPM): Limit 1000, Requested 2001. The input or output tokens must be reduced in order to run successfully. Visit https://platform.openai.com/account/rate-limits to learn more.","type":"tokens","param":null,"code":"rate_limit_exceeded"}}"#
    );
    assert!(r.header("retry-after").is_none() && r.header("retry-after-ms").is_none());
}

#[tokio::test]
async fn azure_token_limit_429_has_azure_headers() {
    let m = mock(small());
    m.clock.advance(Duration::from_secs(30));
    let r = m
        .post(
            AZ,
            r#"{"messages":[{"role":"user","content":"abcd"}],"max_tokens":9999}"#,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-ratelimit-remaining-tokens"), Some("0"));
    let r = m
        .post(AZ, r#"{"messages":[{"role":"user","content":"abcd"}]}"#)
        .await;
    assert_eq!(r.status, 429);
    assert_eq!(
        r.json(),
        json!({"error":{"code":"429","message":"Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-02-15-preview have exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after 30 seconds. Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit."}})
    );
    assert_eq!(r.header("retry-after"), Some("30"));
    assert_eq!(r.header("retry-after-ms"), Some("30000"));
    assert_eq!(r.header("x-rate-limit-reset-tokens"), Some("30"));
    assert_eq!(r.header("policy-id"), Some("DeploymentRatelimit-Token"));
    assert_eq!(r.header("x-ratelimit-remaining-requests"), Some("9"));
    m.clock.advance(Duration::from_secs(30));
    let r = m
        .post(AZ, r#"{"messages":[{"role":"user","content":"abcd"}]}"#)
        .await;
    assert_eq!(r.status, 200, "the running count reset at the minute");

    // Larger than the whole TPM: refused on tokens, told to wait for the minute's reset.
    m.clock.advance(Duration::from_secs(15));
    let body = r#"{"messages":[{"role":"user","content":"abcd"}],"max_tokens":10000}"#;
    let r = m.post(AZ, body).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("policy-id"), Some("DeploymentRatelimit-Token"));
    assert_eq!(r.header("retry-after"), Some("45"));
    let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("token rate limit"), "{message}");
}

#[tokio::test]
async fn header_switches_turn_headers_off() {
    let mut config = small();
    config.headers.retry_after_ms = false;
    config.headers.rate_limit = false;
    config.headers.request_id = false;
    config.models[0].faults.should_retry = Some(true);
    let m = mock(config);
    for _ in 0..3 {
        let r = m
            .post(
                "/v1/chat/completions",
                &chat("gpt-4o-mini", "x", r#""max_tokens":1"#),
            )
            .await;
        assert_eq!(r.status, 200);
        assert!(r.header("x-ratelimit-remaining-requests").is_none());
        assert!(r.header("x-request-id").is_none());
    }
    let r = m
        .post(
            "/v1/chat/completions",
            &chat("gpt-4o-mini", "x", r#""max_tokens":1"#),
        )
        .await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("20"));
    assert!(r.header("retry-after-ms").is_none());
    assert_eq!(r.header("x-should-retry"), Some("true"));
}

fn faulty(faults: FaultConfig) -> MockConfig {
    let mut c = MockConfig::default();
    for m in &mut c.models {
        m.faults = faults;
    }
    for d in &mut c.deployments {
        d.faults = faults;
    }
    c
}

#[tokio::test]
async fn injected_500_and_503_use_provider_bodies() {
    let m = mock(faulty(FaultConfig {
        error_500: 1.0,
        should_retry: Some(false),
        ..FaultConfig::default()
    }));
    let r = m
        .post("/v1/chat/completions", &chat("gpt-4o", "x", ""))
        .await;
    assert_eq!(r.status, 500);
    assert_eq!(
        r.json(),
        json!({"error":{"message":"The server had an error while processing your request. Sorry about that!","type":"server_error","param":null,"code":null}})
    );
    assert_eq!(r.header("x-should-retry"), Some("false"));
    assert!(
        r.header("x-ratelimit-remaining-requests").is_some(),
        "charged before the fault"
    );

    let m = mock(faulty(FaultConfig {
        error_503: 1.0,
        ..FaultConfig::default()
    }));
    let r = m
        .post("/v1/chat/completions", &chat("gpt-4o", "x", ""))
        .await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["error"]["type"], "server_error");
    let r = m
        .post(
            "/openai/deployments/gpt-4o-mini/chat/completions?api-version=v",
            &chat("x", "x", ""),
        )
        .await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["error"]["code"], "ServiceUnavailable");
    let stats: serde_json::Value =
        serde_json::from_slice(&m.call("GET", "/_mock/stats", &[], "").await.body).unwrap();
    assert_eq!(
        stats["keys"]["openai/org-mock/gpt-4o"]["faults"]["error_503"],
        1
    );
    assert_eq!(stats["keys"]["azure/gpt-4o-mini"]["faults"]["error_503"], 1);
}

#[tokio::test]
async fn insufficient_quota_is_uncharged_and_gives_no_retry_advice() {
    let m = mock(faulty(FaultConfig {
        insufficient_quota: 1.0,
        should_retry: Some(true),
        ..FaultConfig::default()
    }));
    let expected = json!({"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}});
    let azure = "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21";
    for uri in ["/v1/chat/completions", azure] {
        let r = m.post(uri, &chat("gpt-4o", "x", "")).await;
        assert_eq!(r.status, 429, "{uri}");
        assert_eq!(
            r.text(),
            r#"{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#
        );
        assert_eq!(r.json(), expected);
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert!(r.header("x-request-id").is_some());
        for absent in [
            "retry-after",
            "retry-after-ms",
            "x-should-retry",
            "x-ratelimit-remaining-requests",
            "x-ratelimit-reset-requests",
        ] {
            assert!(r.header(absent).is_none(), "{uri}: {absent}");
        }
    }
    let stats = m.call("GET", "/_mock/stats", &[], "").await.json();
    for key in ["openai/org-mock/gpt-4o", "azure/gpt-4o-mini"] {
        let k = &stats["keys"][key];
        assert_eq!(k["faults"]["insufficient_quota"], 1, "{key}");
        assert_eq!(k["admitted"], 0, "{key}: refused before the rate limits");
        assert_eq!(k["tokens_charged"], 0, "{key}");
        assert_eq!(k["throttled"], json!({"requests": 0, "tokens": 0}), "{key}");
    }
    let metrics = m.call("GET", "/metrics", &[], "").await.text();
    assert!(metrics.contains(
        "mock_faults_insufficient_quota_total{provider=\"openai\",key=\"org-mock/gpt-4o\"} 1\n"
    ));

    // Off by default: the same request is served.
    let m = mock(MockConfig::default());
    let r = m
        .post("/v1/chat/completions", &chat("gpt-4o", "x", ""))
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn fault_probabilities_are_seeded_and_roughly_honoured() {
    let config = faulty(FaultConfig {
        error_500: 0.3,
        ..FaultConfig::default()
    });
    let run = || async {
        let m = mock(config.clone());
        let mut codes = Vec::new();
        for _ in 0..200 {
            codes.push(
                m.post(
                    "/v1/chat/completions",
                    &chat("gpt-4o", "x", r#""max_tokens":1"#),
                )
                .await
                .status
                .as_u16(),
            );
        }
        codes
    };
    let a = run().await;
    assert_eq!(a, run().await, "same seed, same faults");
    let errors = a.iter().filter(|&&c| c == 500).count();
    assert!((35..=85).contains(&errors), "{errors} of 200 at p = 0.3");
}

#[tokio::test(start_paused = true)]
async fn stall_waits_before_the_first_byte() {
    let m = mock(faulty(FaultConfig {
        stall: 1.0,
        stall_for: Duration::from_secs(7),
        ..FaultConfig::default()
    }));
    let start = tokio::time::Instant::now();
    let r = m
        .post("/v1/chat/completions", &chat("gpt-4o", "x", ""))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(start.elapsed(), Duration::from_secs(7));
}

#[tokio::test]
async fn dropped_stream_ends_without_done() {
    let m = mock(faulty(FaultConfig {
        drop_mid_stream: 1.0,
        ..FaultConfig::default()
    }));
    let req = axum::http::Request::post("/v1/chat/completions")
        .header(OPENAI_KEY.0, OPENAI_KEY.1)
        .body(axum::body::Body::from(chat(
            "gpt-4o",
            "x",
            r#""stream":true,"max_tokens":20"#,
        )))
        .unwrap();
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let resp = m.router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut received = Vec::new();
    let mut failed = false;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => received.extend_from_slice(f.data_ref().map(|d| &d[..]).unwrap_or_default()),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(failed, "the body must end in an error (connection dropped)");
    let text = String::from_utf8(received).unwrap();
    assert!(text.starts_with("data: {"));
    assert!(!text.contains("[DONE]"));
}

#[tokio::test(start_paused = true)]
async fn non_streamed_latency_is_ttft_plus_token_intervals() {
    let config = MockConfig {
        latency: LatencyConfig {
            zero: false,
            ttft_median: Duration::from_millis(300),
            ttft_p99: Duration::from_millis(300),
            per_token: Duration::from_millis(20),
            per_token_sigma: 0.0,
        },
        output_tokens: OutputTokens::Fixed { tokens: 11 },
        ..MockConfig::default()
    };
    let m = mock(config);
    let start = tokio::time::Instant::now();
    let r = m
        .post("/v1/chat/completions", &chat("gpt-4o", "x", ""))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(start.elapsed(), Duration::from_millis(300 + 10 * 20));
    assert_eq!(r.header("openai-processing-ms"), Some("500"));
}

#[tokio::test]
async fn stats_reset_and_metrics_report_per_key() {
    let m = mock(small());
    for _ in 0..4 {
        m.post(
            "/v1/chat/completions",
            &chat("gpt-4o-mini", "abcd", r#""max_tokens":10"#),
        )
        .await;
    }
    let r = m.call("GET", "/_mock/stats", &[], "").await;
    assert_eq!(r.status, 200);
    let v = r.json();
    let k = &v["keys"]["openai/org-mock/gpt-4o-mini"];
    assert_eq!(k["admitted"], 3);
    assert_eq!(k["throttled"], json!({"requests": 1, "tokens": 0}));
    assert_eq!(k["tokens_charged"], 33, "3 × (ceil(4/4) + 10)");
    let used = k["tokens_used"].as_u64().unwrap();
    assert!(
        used > 3 * 8 && used <= 3 * (8 + 10),
        "prompt 8 + completion ≤ 10 each: {used}"
    );
    assert_eq!(v["requests_total"], 4);

    let metrics = m.call("GET", "/metrics", &[], "").await;
    assert_eq!(
        metrics.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = metrics.text();
    assert!(text.contains("# TYPE mock_admitted_total counter\n"));
    assert!(
        text.contains("mock_admitted_total{provider=\"openai\",key=\"org-mock/gpt-4o-mini\"} 3\n")
    );
    assert!(text.contains(
        "mock_throttled_requests_total{provider=\"openai\",key=\"org-mock/gpt-4o-mini\"} 1\n"
    ));
    assert!(text.contains("mock_quota_remaining_requests{provider=\"azure\",key=\"chat60\"} 10\n"));
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (_, value) = line.rsplit_once(' ').unwrap();
        value
            .parse::<u64>()
            .unwrap_or_else(|_| panic!("bad sample line {line}"));
    }

    let r = m.call("POST", "/_mock/reset", &[], "").await;
    assert_eq!(r.status, 200);
    let v = m.call("GET", "/_mock/stats", &[], "").await.json();
    assert_eq!(v["keys"]["openai/org-mock/gpt-4o-mini"]["admitted"], 0);
    assert_eq!(v["requests_total"], 0, "reset zeroes the request count too");
    let r = m
        .post(
            "/v1/chat/completions",
            &chat("gpt-4o-mini", "abcd", r#""max_tokens":10"#),
        )
        .await;
    assert_eq!(r.status, 200, "reset restores the full quota");
    assert_eq!(r.header("x-ratelimit-remaining-requests"), Some("2"));
}

/// `mock_output_tokens` (the trace-replay extension) fixes the completion length exactly,
/// under the `max_tokens` cap, whatever the configured length distribution.
#[tokio::test]
async fn mock_output_tokens_sets_the_completion_length_exactly() {
    let m = mock(MockConfig {
        output_tokens: OutputTokens::Uniform { min: 1, max: 500 },
        ..small()
    });
    for (n, cap, want) in [(44u32, 100u32, 44u64), (7, 100, 7), (80, 50, 50)] {
        let extra = format!(r#""max_tokens":{cap},"mock_output_tokens":{n}"#);
        let r = m
            .post("/v1/chat/completions", &chat("gpt-4o-mini", "abcd", &extra))
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        assert_eq!(v["usage"]["completion_tokens"], want, "{n} under {cap}");
        m.call("POST", "/_mock/reset", &[], "").await;
    }
}
