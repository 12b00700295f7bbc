//! End to end over real HTTP on 127.0.0.1:0 with reqwest: drives a 60-RPM Azure deployment
//! and a 3-RPM/1000-TPM OpenAI model past their limits, asserts the exact 429 bodies and
//! headers and the `remaining` countdown, and retries after the advertised `retry-after-ms`
//! on an injected manual clock (no sleeping).

use std::sync::Arc;
use std::time::Duration;

use mock_providers::clock::ManualClock;
use mock_providers::config::{DeploymentConfig, ModelConfig};
use mock_providers::generation::tokenizer::Encoding;
use mock_providers::{MockConfig, MockHandle, MockServer};
use reqwest::{Client, Response};
use serde_json::{json, Value};

fn config() -> MockConfig {
    MockConfig {
        models: vec![ModelConfig::chat(
            "gpt-4o-mini",
            Encoding::O200kBase,
            3,
            1_000,
        )],
        // 10 000 TPM → 60 RPM → 10 requests per 10-s window.
        deployments: vec![DeploymentConfig::new("chat60", "gpt-4o-mini", 10_000)],
        ..MockConfig::default()
    }
}

async fn start() -> (MockHandle, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::default());
    let addr = "127.0.0.1:0".parse().unwrap();
    let handle = MockServer::start_with_clock(config(), addr, clock.clone())
        .await
        .unwrap();
    assert!(handle.base_url().starts_with("http://127.0.0.1:"));
    assert!(!handle.base_url().ends_with('/'));
    (handle, clock)
}

fn header<'a>(r: &'a Response, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .unwrap_or_else(|| panic!("missing header {name}"))
        .to_str()
        .unwrap()
}

async fn azure_call(client: &Client, base: &str) -> Response {
    client
        .post(format!(
            "{base}/openai/deployments/chat60/chat/completions?api-version=2024-02-15-preview"
        ))
        .header("api-key", "k")
        .json(&json!({"messages":[{"role":"user","content":"Hi"}],"max_tokens":5}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn azure_60_rpm_deployment_throttles_the_11th_request_in_10_seconds() {
    let (handle, clock) = start().await;
    let client = Client::new();
    let base = handle.base_url();
    for i in 0..10u64 {
        let r = azure_call(&client, &base).await;
        assert_eq!(r.status(), 200);
        assert_eq!(
            header(&r, "x-ratelimit-remaining-requests"),
            (9 - i).to_string()
        );
        // Each request charges ceil(2/4) + 5 = 6 tokens of the 10 000.
        assert_eq!(
            header(&r, "x-ratelimit-remaining-tokens"),
            (10_000 - 6 * (i + 1)).to_string()
        );
        clock.advance(Duration::from_millis(100));
    }
    let r = azure_call(&client, &base).await;
    assert_eq!(r.status(), 429);
    assert_eq!(header(&r, "retry-after"), "9");
    assert_eq!(header(&r, "retry-after-ms"), "9000");
    assert_eq!(header(&r, "policy-id"), "DeploymentRatelimit-Call");
    assert_eq!(header(&r, "x-rate-limit-reset-tokens"), "59");
    assert_eq!(header(&r, "x-ratelimit-remaining-requests"), "0");
    assert_eq!(header(&r, "x-ms-region"), "eastus");
    let wait: u64 = header(&r, "retry-after-ms").parse().unwrap();
    assert_eq!(
        r.text().await.unwrap(),
        r#"{"error":{"code":"429","message":"Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-02-15-preview have exceeded call rate limit of your current OpenAI S0 pricing tier. Please retry after 9 seconds. Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit."}}"#
    );
    clock.advance(Duration::from_millis(wait - 1));
    assert_eq!(
        azure_call(&client, &base).await.status(),
        429,
        "1 ms early is still refused"
    );
    clock.advance(Duration::from_millis(1));
    let r = azure_call(&client, &base).await;
    assert_eq!(r.status(), 200, "retry after retry-after-ms succeeds");
    assert_eq!(header(&r, "x-ratelimit-remaining-requests"), "0");
    handle.shutdown().await;
}

async fn openai_call(client: &Client, base: &str, max_tokens: u32) -> Response {
    client
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth("sk-anything")
        .json(&json!({"model":"gpt-4o-mini","messages":[{"role":"user","content":"abcd"}],"max_tokens":max_tokens}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn openai_3_rpm_1000_tpm_model_throttles_on_requests_then_tokens() {
    let (handle, clock) = start().await;
    let client = Client::new();
    let base = handle.base_url();
    for (left, reset) in [(2, "20s"), (1, "40s"), (0, "1m0s")] {
        let r = openai_call(&client, &base, 10).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-ratelimit-limit-requests"), "3");
        assert_eq!(header(&r, "x-ratelimit-limit-tokens"), "1000");
        assert_eq!(
            header(&r, "x-ratelimit-remaining-requests"),
            left.to_string()
        );
        assert_eq!(header(&r, "x-ratelimit-reset-requests"), reset);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["object"], "chat.completion");
    }
    let r = openai_call(&client, &base, 10).await;
    assert_eq!(r.status(), 429);
    assert_eq!(header(&r, "retry-after"), "20");
    assert_eq!(header(&r, "retry-after-ms"), "20000");
    assert_eq!(header(&r, "x-ratelimit-remaining-requests"), "0");
    assert!(header(&r, "x-request-id").starts_with("req_"));
    assert_eq!(
        r.text().await.unwrap(),
        r#"{"error":{"message":"Rate limit reached for gpt-4o-mini in organization org-mock on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 20s. Visit https://platform.openai.com/account/rate-limits to learn more.","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#
    );
    clock.advance(Duration::from_millis(20_000));
    let r = openai_call(&client, &base, 10).await;
    assert_eq!(r.status(), 200, "retry after retry-after-ms succeeds");

    // Tokens: after a minute both dimensions are full again; 900 tokens, then 300 more.
    clock.advance(Duration::from_secs(60));
    let r = openai_call(&client, &base, 899).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-ratelimit-remaining-tokens"), "100");
    let r = openai_call(&client, &base, 299).await;
    assert_eq!(r.status(), 429);
    assert_eq!(header(&r, "retry-after-ms"), "12000");
    assert_eq!(header(&r, "x-ratelimit-remaining-requests"), "2");
    assert_eq!(
        r.text().await.unwrap(),
        r#"{"error":{"message":"Rate limit reached for gpt-4o-mini in organization org-mock on tokens per min (TPM): Limit 1000, Used 900, Requested 300. Please try again in 12s. Visit https://platform.openai.com/account/rate-limits to learn more.","type":"tokens","param":null,"code":"rate_limit_exceeded"}}"#
    );
    clock.advance(Duration::from_secs(12));
    assert_eq!(openai_call(&client, &base, 299).await.status(), 200);
    handle.shutdown().await;
}

#[tokio::test]
async fn sse_over_real_http_ends_with_done() {
    let (handle, _clock) = start().await;
    let r = Client::new()
        .post(format!("{}/v1/chat/completions", handle.base_url()))
        .bearer_auth("sk-x")
        .json(&json!({"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"stream":true,"max_tokens":3}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&r, "content-type"),
        "text/event-stream; charset=utf-8"
    );
    let text = r.text().await.unwrap();
    assert!(text.starts_with("data: {\"id\":\"chatcmpl-"));
    assert!(text.ends_with("\n\ndata: [DONE]\n\n"));
    assert_eq!(text.matches("data: ").count(), 1 + 3 + 1 + 1);
    handle.shutdown().await;
}
