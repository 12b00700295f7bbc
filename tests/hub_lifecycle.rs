//! The request lifecycle as the Hub runs it, over real HTTP to the in-process mock under
//! tokio's paused time: a 429's retry waits the advertised delay once (the default order
//! `logging, rate_limit, retry, fallback` used to wait it twice), what a 429 and a 5xx are
//! charged, a provider's `max_retries`, and limiter refusals that keep their data.

use std::sync::Arc;
use std::time::Duration;

use connector_hub::clock::TokioClock;
use connector_hub::hub::{Hub, HubOptions};
use connector_hub::limiter::{LimitError, LimitKey, RateLimitType};
use connector_hub::middleware::{MiddlewareError, PipelineError};
use connector_hub::provider::{
    CompletionRequest, ConnectorError, LLMProvider, Message, OpenAIConnector, OpenAiConfig,
};
use mock_providers::config::ModelConfig;
use mock_providers::{MockConfig, MockHandle, MockServer};

const MODEL: &str = "gpt-4o-mini";

/// The mock at `tpm` tokens per minute for MODEL (RPM not binding), on tokio's clock.
async fn mock(tpm: u64, configure: impl Fn(&mut ModelConfig)) -> MockHandle {
    let mut c = MockConfig::default();
    for m in c.models.iter_mut().filter(|m| m.id == MODEL) {
        *m = ModelConfig::chat(MODEL, m.encoding, 10_000, tpm);
        configure(m);
    }
    MockServer::start_with_clock(
        c,
        "127.0.0.1:0".parse().expect("addr"),
        Arc::new(mock_providers::clock::TokioClock::new()),
    )
    .await
    .expect("mock starts")
}

fn hub(mock: &MockHandle, extra: &str) -> Hub {
    let text = format!(
        "[[provider]]\nid = \"openai\"\nkind = \"openai\"\n\
         config = {{ api_key = \"k\", base_url = \"{}/v1\", timeout_secs = 60 {extra} }}\n",
        mock.base_url()
    );
    HubOptions {
        clock: Arc::new(TokioClock::new()),
        ..HubOptions::default()
    }
    .load_str(&text, "hub.toml")
    .expect("valid hub config")
}

fn request(max_tokens: u32) -> CompletionRequest {
    CompletionRequest::new(MODEL, vec![Message::user("Say something short.")])
        .with_max_tokens(max_tokens)
}

/// What the server advertises for a request of `max_tokens` right now (a 429 is not
/// charged, so asking does not change the quota).
async fn advertised(mock: &MockHandle, max_tokens: u32) -> Duration {
    let direct = OpenAIConnector::new(
        OpenAiConfig::new("k").with_base_url(format!("{}/v1", mock.base_url())),
        Arc::new(TokioClock::new()),
    )
    .expect("valid config");
    let e = direct
        .send_completion(request(max_tokens))
        .await
        .unwrap_err();
    assert!(matches!(e, ConnectorError::RateLimit { .. }), "{e:?}");
    e.retry_after().expect("retry-after-ms")
}

#[tokio::test(start_paused = true)]
async fn a_429_delays_the_retry_by_the_advertised_wait_once() {
    // 6 000 TPM: a request with max_tokens 5 900 takes nearly all of it; the next one of
    // 150 is refused with the time for the bucket to refill enough (about half a second).
    let mock = mock(6_000, |_| {}).await;
    let hub = hub(&mock, "");
    hub.complete(request(5_900)).await.expect("the first fits");
    let wait = advertised(&mock, 150).await;
    assert!(wait > Duration::from_millis(100), "{wait:?}");

    let start = tokio::time::Instant::now();
    hub.complete(request(150)).await.expect("the retry fits");
    let took = start.elapsed();
    // Admitted at the end of the pause; a pause's jitter only spreads waiters queued
    // behind, so at most `pause_jitter` (0.25 by default) of it is added.
    assert!(
        took >= wait,
        "left before the server's wait: {took:?} < {wait:?}"
    );
    assert!(
        took <= wait.mul_f64(1.25),
        "the pause was applied twice: {took:?} for an advertised {wait:?}"
    );
    let s = hub.metrics_snapshot();
    assert_eq!(s[0].requests, 3, "two successes and one 429: {s:?}");
    mock.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_providers_max_retries_caps_the_lifecycle() {
    let mock = mock(6_000, |_| {}).await;
    let hub = hub(&mock, ", max_retries = 0");
    hub.complete(request(5_900)).await.expect("the first fits");
    let start = tokio::time::Instant::now();
    let e = hub.complete(request(150)).await.unwrap_err();
    assert!(
        matches!(e, PipelineError::Provider(ConnectorError::RateLimit { .. })),
        "{e:?}"
    );
    assert_eq!(start.elapsed(), Duration::ZERO, "no retry, no wait");
    mock.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_429_is_not_charged_and_a_5xx_keeps_the_estimate() {
    let limits = "[[limits.key]]\nprovider = \"openai\"\n\
                  limit = { limits = { rpm = 100, tpm = 100000 } }\n";
    // A 429 (the server's quota, tighter than the local limit): nothing stays charged.
    let tight = mock(6_000, |_| {}).await;
    let text = |m: &MockHandle, extra: &str| {
        format!(
            "middleware = [\"rate_limit\"]\n[[provider]]\nid = \"openai\"\nkind = \"openai\"\n\
             config = {{ api_key = \"k\", base_url = \"{}/v1\" {extra} }}\n{limits}",
            m.base_url()
        )
    };
    let load = |t: String| {
        HubOptions {
            clock: Arc::new(TokioClock::new()),
            ..HubOptions::default()
        }
        .load_str(&t, "hub.toml")
        .expect("valid")
    };
    let hub = load(text(&tight, ""));
    let key = LimitKey::new("openai", MODEL);
    hub.complete(request(5_900)).await.expect("fits");
    let after_ok = hub.limiter().usage_stats(&key).await.expect("stats");
    hub.complete(request(150)).await.unwrap_err();
    let after_429 = hub.limiter().usage_stats(&key).await.expect("stats");
    assert_eq!(
        after_429.tokens_charged, after_ok.tokens_charged,
        "429 refunded"
    );
    assert_eq!(after_429.admitted, after_ok.admitted + 1);
    assert_eq!(
        after_429.requests_remaining(),
        after_ok.requests_remaining(),
        "the refused request was given back: {after_429:?}"
    );
    tight.shutdown().await;

    // A 500 after admission: the estimate stays charged.
    let failing = mock(1_000_000, |m| m.faults.error_500 = 1.0).await;
    let hub = load(text(&failing, ""));
    let e = hub.complete(request(100)).await.unwrap_err();
    assert!(matches!(
        e,
        PipelineError::Provider(ConnectorError::Provider { status: 500, .. })
    ));
    let s = hub.limiter().usage_stats(&key).await.expect("stats");
    assert!(s.tokens_charged >= 100, "the estimate is kept: {s:?}");
    assert_eq!(s.requests_remaining(), Some(99));
    failing.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_request_that_can_never_fit_is_refused_with_its_dimension() {
    let mock = mock(1_000_000, |_| {}).await;
    let text = format!(
        "[[provider]]\nid = \"openai\"\nkind = \"openai\"\n\
         config = {{ api_key = \"k\", base_url = \"{}/v1\" }}\n\
         [[limits.key]]\nprovider = \"openai\"\nlimit = {{ limits = {{ tpm = 1000 }} }}\n",
        mock.base_url()
    );
    let hub = HubOptions {
        clock: Arc::new(TokioClock::new()),
        ..HubOptions::default()
    }
    .load_str(&text, "hub.toml")
    .expect("valid");
    let e = hub.complete(request(5_000)).await.unwrap_err();
    match e {
        PipelineError::Middleware(MiddlewareError::Limit(LimitError::Exceeds {
            dimension,
            capacity,
            ..
        })) => {
            assert_eq!(dimension, RateLimitType::TokensPerMinute);
            assert_eq!(capacity, 1000);
        }
        other => panic!("expected a typed refusal, got {other:?}"),
    }
    mock.shutdown().await;
}

/// Input and output tokens through the Hub's governed step, over HTTP: the admission
/// charges the prompt estimate as input and `max_tokens` as output, and the response's
/// usage (prompt and completion tokens) reconciles each dimension to what was used; with
/// `charge_at = { output = "usage" }` a `max_tokens` beyond the output limit is admitted
/// and only the completion is charged.
#[tokio::test(start_paused = true)]
async fn input_and_output_tokens_are_charged_apart_through_the_hub() {
    let mock = mock(1_000_000, |_| {}).await;
    let load = |limit: &str| {
        let text = format!(
            "middleware = [\"rate_limit\"]\n[[provider]]\nid = \"openai\"\nkind = \"openai\"\n\
             config = {{ api_key = \"k\", base_url = \"{}/v1\" }}\n\
             [[limits.key]]\nprovider = \"openai\"\nlimit = {limit}\n",
            mock.base_url()
        );
        HubOptions {
            clock: Arc::new(TokioClock::new()),
            ..HubOptions::default()
        }
        .load_str(&text, "hub.toml")
        .expect("valid")
    };
    let key = LimitKey::new("openai", MODEL);
    let remaining = |s: &connector_hub::limiter::UsageStats| {
        (
            s.input_tokens_remaining().expect("itpm"),
            s.output_tokens_remaining().expect("otpm"),
        )
    };

    let hub = load("{ limits = { itpm = 100000, otpm = 10000 } }");
    let response = hub.complete(request(400)).await.expect("fits");
    let (input, output) = remaining(&hub.limiter().usage_stats(&key).await.expect("stats"));
    let used = response.usage;
    assert!(used.output_tokens < 400, "{used:?}");
    // Paused time: nothing refilled between admission and now.
    assert_eq!(
        input,
        100_000 - used.input_tokens,
        "input reconciled to the prompt used"
    );
    assert_eq!(
        output,
        10_000 - used.output_tokens,
        "output refunded to the completion"
    );

    let hub =
        load("{ limits = { itpm = 100000, otpm = 1000 }, charge_at = { output = \"usage\" } }");
    let response = hub
        .complete(request(5_000))
        .await
        .expect("max_tokens above the output limit, charged only as used");
    let (_, output) = remaining(&hub.limiter().usage_stats(&key).await.expect("stats"));
    assert_eq!(output, 1_000 - response.usage.output_tokens);
    mock.shutdown().await;
}
