//! The Anthropic quota through HTTP on a manual clock: the twelve rate-limit headers (RFC
//! 3339 resets), `retry-after` exact to the second in each dimension (a client waiting it
//! is admitted; one second less is refused), short-interval RPM, both OTPM rules, rounded
//! remainders, and the same over real HTTP with reqwest.

mod common;

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use common::{message, mock, Mock, Reply, ANTHROPIC, CLAUDE};
use mock_providers::clock::ManualClock;
use mock_providers::generation::OutputTokens;
use mock_providers::provider::anthropic::{AnthropicModelConfig, OtpmRule};
use mock_providers::{MockConfig, MockServer};

fn limited(rpm: u64, itpm: u64, otpm: u64, output: u32) -> MockConfig {
    let mut config = MockConfig {
        output_tokens: OutputTokens::Fixed { tokens: output },
        ..MockConfig::default()
    };
    config.anthropic.models = vec![AnthropicModelConfig::with_limits(CLAUDE, rpm, itpm, otpm)];
    config
}

fn rfc3339(m: &Mock, unix_secs_after_epoch: u64) -> String {
    let secs = m.state.unix_at_epoch() + unix_secs_after_epoch;
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

fn num(r: &Reply, name: &str) -> u64 {
    r.header(name)
        .unwrap_or_else(|| panic!("missing {name}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn headers_report_every_bucket_with_rfc3339_resets() {
    let m = mock(limited(60, 6_000, 1_200, 10));
    m.clock.set(5_000_000_000); // 5 s after the epoch
    let r = m
        .anthropic("/v1/messages", &message(CLAUDE, "Hello", 300, ""))
        .await;
    assert_eq!(r.status, 200);
    let input = r.json()["usage"]["input_tokens"].as_u64().unwrap();
    let h = |n: &str| r.header(n).unwrap().to_owned();
    assert_eq!(h("anthropic-ratelimit-requests-limit"), "60");
    assert_eq!(h("anthropic-ratelimit-requests-remaining"), "59");
    // One request comes back in 1 s.
    assert_eq!(h("anthropic-ratelimit-requests-reset"), rfc3339(&m, 6));
    assert_eq!(h("anthropic-ratelimit-input-tokens-limit"), "6000");
    assert_eq!(
        num(&r, "anthropic-ratelimit-input-tokens-remaining"),
        6_000 - input
    );
    // `input` tokens at 100/s, rounded up to the second.
    let input_back = (input * 10).div_ceil(1_000);
    assert_eq!(
        h("anthropic-ratelimit-input-tokens-reset"),
        rfc3339(&m, 5 + input_back)
    );
    // max_tokens reserved at admission: 300 at 20/s = 15 s.
    assert_eq!(h("anthropic-ratelimit-output-tokens-limit"), "1200");
    assert_eq!(h("anthropic-ratelimit-output-tokens-remaining"), "900");
    assert_eq!(
        h("anthropic-ratelimit-output-tokens-reset"),
        rfc3339(&m, 20)
    );
    assert_eq!(h("anthropic-ratelimit-tokens-limit"), "7200");
    assert_eq!(
        num(&r, "anthropic-ratelimit-tokens-remaining"),
        6_000 - input + 900
    );
    assert_eq!(
        h("anthropic-ratelimit-tokens-reset"),
        rfc3339(&m, 20),
        "the later reset"
    );
    // After the response the unused 290 were refunded.
    let next = m
        .anthropic("/v1/messages", &message(CLAUDE, "Hello", 1, ""))
        .await;
    assert_eq!(
        num(&next, "anthropic-ratelimit-output-tokens-remaining"),
        1_200 - 10 - 1
    );
}

/// Sends until a 429 and returns it.
async fn until_throttled(m: &Mock, body: &str) -> Reply {
    for _ in 0..1_000 {
        let r = m.anthropic("/v1/messages", body).await;
        if r.status == 429 {
            return r;
        }
        assert_eq!(r.status, 200, "{}", r.text());
    }
    panic!("never throttled");
}

/// Waiting `retry-after` seconds admits the request; one second less does not.
async fn retry_after_is_exact(m: &Mock, body: &str, dimension: &str) {
    let r = until_throttled(m, body).await;
    let msg = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(msg.contains(dimension), "{msg}");
    let wait = num(&r, "retry-after");
    assert!(wait >= 1);
    let at = m.clock_now();
    m.clock.set(at + (wait - 1) * 1_000_000_000);
    let early = m.anthropic("/v1/messages", body).await;
    assert_eq!(early.status, 429, "admitted a second early");
    m.clock.set(at + wait * 1_000_000_000);
    let on_time = m.anthropic("/v1/messages", body).await;
    assert_eq!(
        on_time.status,
        200,
        "refused after waiting retry-after: {}",
        on_time.text()
    );
}

#[tokio::test]
async fn retry_after_is_exact_in_every_dimension() {
    // Requests: 7 RPM (a request back every 8.57 s: retry-after 9).
    let m = mock(limited(7, 1_000_000, 1_000_000, 5));
    m.clock.set(1);
    retry_after_is_exact(&m, &message(CLAUDE, "hi", 5, ""), "7 requests per minute").await;
    // Input tokens: a prompt of several hundred tokens against 2 000 ITPM.
    let m = mock(limited(1_000, 2_000, 1_000_000, 5));
    let body = message(CLAUDE, &"alpha beta ".repeat(150), 5, "");
    retry_after_is_exact(&m, &body, "2,000 input tokens per minute").await;
    // Output tokens, max_tokens rule: 700 reserved against 1 000 OTPM, 50 generated.
    let m = mock(limited(1_000, 1_000_000, 1_000, 700));
    retry_after_is_exact(
        &m,
        &message(CLAUDE, "hi", 700, ""),
        "1,000 output tokens per minute",
    )
    .await;
}

#[tokio::test]
async fn generated_rule_admits_large_max_tokens_and_charges_what_was_generated() {
    let mut config = limited(1_000, 1_000_000, 1_000, 600);
    config.anthropic.otpm_rule = OtpmRule::Generated;
    let m = mock(config);
    let body = message(CLAUDE, "hi", 64_000, "");
    let r = m.anthropic("/v1/messages", &body).await;
    assert_eq!(r.status, 200, "max_tokens does not count: {}", r.text());
    assert_eq!(
        num(&r, "anthropic-ratelimit-output-tokens-remaining"),
        1_000
    );
    let r = m.anthropic("/v1/messages", &body).await;
    assert_eq!(num(&r, "anthropic-ratelimit-output-tokens-remaining"), 400);
    // 1 200 generated against 1 000: 200 of debt, so the next waits for 201 tokens (12.06 s).
    let r = m.anthropic("/v1/messages", &body).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("13"));
    assert_eq!(num(&r, "anthropic-ratelimit-output-tokens-remaining"), 0);
    retry_after_is_exact(&m, &body, "output tokens").await;
    // Under the max_tokens rule the same request can never fit.
    let m = mock(limited(1_000, 1_000_000, 1_000, 600));
    let r = m.anthropic("/v1/messages", &body).await;
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_none());
}

#[tokio::test]
async fn short_interval_enforces_sixty_rpm_as_one_per_second() {
    let mut config = limited(60, 1_000_000, 1_000_000, 5);
    config.anthropic.rpm_interval = Some(Duration::from_secs(1));
    let m = mock(config);
    let body = message(CLAUDE, "hi", 5, "");
    let first = m.anthropic("/v1/messages", &body).await;
    assert_eq!(first.status, 200);
    assert_eq!(
        first.header("anthropic-ratelimit-requests-limit"),
        Some("60")
    );
    assert_eq!(
        first.header("anthropic-ratelimit-requests-remaining"),
        Some("0")
    );
    let second = m.anthropic("/v1/messages", &body).await;
    assert_eq!(second.status, 429);
    assert_eq!(second.header("retry-after"), Some("1"));
    m.clock.advance(Duration::from_secs(1));
    assert_eq!(m.anthropic("/v1/messages", &body).await.status, 200);
    // Without the setting, a minute's 60 requests go at once.
    let m = mock(limited(60, 1_000_000, 1_000_000, 5));
    for _ in 0..60 {
        assert_eq!(m.anthropic("/v1/messages", &body).await.status, 200);
    }
    assert_eq!(m.anthropic("/v1/messages", &body).await.status, 429);
}

#[tokio::test]
async fn token_remainders_can_be_rounded_to_the_thousand() {
    let mut config = limited(60, 80_000, 16_000, 5);
    config.anthropic.round_token_remaining = true;
    let m = mock(config);
    let r = m
        .anthropic("/v1/messages", &message(CLAUDE, "hi", 4_000, ""))
        .await;
    assert_eq!(
        r.header("anthropic-ratelimit-input-tokens-remaining"),
        Some("80000")
    );
    assert_eq!(
        r.header("anthropic-ratelimit-output-tokens-remaining"),
        Some("12000")
    );
    assert_eq!(
        r.header("anthropic-ratelimit-tokens-remaining"),
        Some("92000")
    );
    assert_eq!(
        r.header("anthropic-ratelimit-requests-remaining"),
        Some("59")
    );
}

#[tokio::test]
async fn over_real_http_a_client_waiting_retry_after_is_admitted() {
    let clock = Arc::new(ManualClock::default());
    let handle = MockServer::start_with_clock(
        limited(3, 1_000_000, 1_000_000, 5),
        "127.0.0.1:0".parse().unwrap(),
        clock.clone(),
    )
    .await
    .unwrap();
    let client = reqwest::Client::new();
    let send = || {
        let mut req = client.post(format!("{}/v1/messages", handle.base_url()));
        for (k, v) in ANTHROPIC {
            req = req.header(k, v);
        }
        req.header("content-type", "application/json")
            .body(message(CLAUDE, "hi", 5, ""))
            .send()
    };
    for left in ["2", "1", "0"] {
        let r = send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["anthropic-ratelimit-requests-remaining"], left);
    }
    let r = send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "20");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error");
    clock.advance(Duration::from_secs(20));
    assert_eq!(send().await.unwrap().status(), 200);
    handle.shutdown().await;
}
