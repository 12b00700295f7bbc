//! The Anthropic connector against the in-process Anthropic mock over real HTTP on
//! 127.0.0.1: a message and a stream with the mock's usage and rate-limit headers, the
//! error classes (400, 401, 404, 429 with retry-after, 529 retried by the pipeline, an
//! `overloaded_error` event inside a 200 stream), metadata and health.

use std::sync::Arc;
use std::time::Duration;

use connector_hub::clock::{ManualClock, TokioClock};
use connector_hub::limiter::BackoffConfig;
use connector_hub::middleware::{GovernorMiddleware, Pipeline, ProviderSet};
use connector_hub::plugin::PluginRegistry;
use connector_hub::provider::{
    AnthropicConfig, AnthropicConnector, CompletionRequest, ConnectorError, FinishReason,
    HealthStatus, LLMProvider, Message, RateLimitDimension, StreamChunk,
};
use futures::StreamExt;
use mock_providers::provider::anthropic::{AnthropicFaults, AnthropicModelConfig};
use mock_providers::{MockConfig, MockHandle, MockServer};
use serde_json::Value;

const HAIKU: &str = "claude-haiku-4-5-20251001";

async fn start(config: MockConfig) -> MockHandle {
    MockServer::start(config).await.expect("mock starts")
}

fn connector(mock: &MockHandle, key: &str) -> AnthropicConnector {
    let mut c = AnthropicConfig::new(key).with_base_url(mock.base_url());
    c.timeout = Duration::from_secs(10);
    AnthropicConnector::new(c, Arc::new(ManualClock::new(0))).expect("valid config")
}

/// A mock serving one model with the given limits (and faults).
fn one_model(model: AnthropicModelConfig) -> MockConfig {
    let mut config = MockConfig::default();
    config.anthropic.models = vec![model];
    config
}

fn request(model: &str, max_tokens: u32) -> CompletionRequest {
    CompletionRequest::new(
        model,
        vec![
            Message::system("You are terse."),
            Message::user("Say something about rate limits."),
        ],
    )
    .with_max_tokens(max_tokens)
}

async fn stats(mock: &MockHandle, model: &str) -> Value {
    let all: Value = reqwest::get(format!("{}/_mock/stats", mock.base_url()))
        .await
        .expect("stats reachable")
        .json()
        .await
        .expect("stats are json");
    all["keys"][format!("anthropic/{model}")].clone()
}

#[tokio::test]
async fn a_message_reports_usage_finish_and_every_bucket() {
    let mock = start(one_model(AnthropicModelConfig::with_limits(
        HAIKU, 100, 50_000, 8_000,
    )))
    .await;
    let c = connector(&mock, "sk-ant-test");
    let r = c.send_completion(request(HAIKU, 40)).await.expect("ok");
    assert!(!r.text().is_empty());
    assert!(r.id.starts_with("msg_"), "{}", r.id);
    assert_eq!(r.model, HAIKU);
    assert!(matches!(
        r.finish_reason,
        Some(FinishReason::Stop | FinishReason::Length)
    ));
    let s = stats(&mock, HAIKU).await;
    assert_eq!(r.usage.input_tokens, s["input_tokens_charged"], "{s}");
    assert_eq!(r.usage.output_tokens, s["output_tokens"], "{s}");
    assert!(r.usage.input_tokens > 0 && r.usage.output_tokens > 0);
    // Headers at admission: one request, the input and max_tokens charged.
    let m = r.meta;
    assert_eq!(m.status, Some(200));
    assert_eq!(
        (m.limit_requests, m.remaining_requests),
        (Some(100), Some(99))
    );
    assert_eq!(
        m.remaining_input_tokens,
        Some(50_000 - r.usage.input_tokens)
    );
    assert_eq!(m.remaining_output_tokens, Some(8_000 - 40));
    assert_eq!(m.limit_tokens, Some(58_000));
    assert!(m
        .reset_requests
        .is_some_and(|d| d <= Duration::from_secs(61)));
    mock.shutdown().await;
}

#[tokio::test]
async fn a_stream_yields_text_the_finish_reason_and_cumulative_usage_last() {
    let mock = start(MockConfig::default()).await;
    let c = connector(&mock, "k");
    let (meta, stream) = c.open_stream(request(HAIKU, 30)).await.expect("opens");
    assert_eq!(meta.status, Some(200));
    let chunks: Vec<StreamChunk> = stream.map(|c| c.expect("no error")).collect().await;
    let text: String = chunks.iter().map(|c| c.delta.as_str()).collect();
    assert!(!text.is_empty());
    let last = chunks.last().expect("chunks");
    let usage = last.usage.expect("the usage chunk is last");
    assert!(chunks.iter().any(|c| c.finish_reason.is_some()));
    let s = stats(&mock, HAIKU).await;
    assert_eq!(usage.output_tokens, s["output_tokens"], "{s}");
    assert_eq!(usage.input_tokens, s["input_tokens_charged"], "{s}");
    mock.shutdown().await;
}

#[tokio::test]
async fn client_errors_map_to_their_classes() {
    let mut config = MockConfig::default();
    config.anthropic.keys = vec!["good".into()];
    let mock = start(config).await;
    let c = connector(&mock, "good");

    // 400: max_tokens above the model's cap, in the API's words.
    let e = c.send_completion(request(HAIKU, 64_001)).await.unwrap_err();
    let ConnectorError::InvalidRequest {
        status,
        message,
        code,
        ..
    } = &e
    else {
        panic!("{e:?}")
    };
    assert_eq!(*status, 400);
    assert!(
        message.starts_with("max_tokens: 64001 > 64000"),
        "{message}"
    );
    assert_eq!(code.as_deref(), Some("invalid_request_error"));
    assert!(!e.is_retryable());

    // No max_tokens: refused before sending, naming the parameter.
    let mut no_max = request(HAIKU, 1);
    no_max.max_tokens = None;
    let e = c.send_completion(no_max.clone()).await.unwrap_err();
    assert!(
        matches!(&e, ConnectorError::InvalidRequest { param: Some(p), .. } if p == "max_tokens"),
        "{e:?}"
    );
    assert!(c.open_stream(no_max).await.is_err());
    assert_eq!(stats(&mock, HAIKU).await["admitted"], 0, "nothing was sent");

    // 401: a key the mock does not know.
    let e = connector(&mock, "bad")
        .send_completion(request(HAIKU, 5))
        .await
        .unwrap_err();
    assert!(
        matches!(e, ConnectorError::Authentication { status: 401, .. }),
        "{e:?}"
    );

    // 404: an unknown model.
    let e = c
        .send_completion(request("claude-nope", 5))
        .await
        .unwrap_err();
    let ConnectorError::NotFound { message, code, .. } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(message, "model: claude-nope");
    assert_eq!(code.as_deref(), Some("not_found_error"));
    mock.shutdown().await;
}

#[tokio::test]
async fn a_429_carries_retry_after_the_dimension_and_the_empty_bucket() {
    let mock = start(one_model(AnthropicModelConfig::with_limits(
        HAIKU, 1, 50_000, 8_000,
    )))
    .await;
    let c = connector(&mock, "k");
    c.send_completion(request(HAIKU, 5))
        .await
        .expect("first fits");
    let e = c.send_completion(request(HAIKU, 5)).await.unwrap_err();
    let ConnectorError::RateLimit {
        retry_after,
        dimension,
        message,
        meta,
    } = &e
    else {
        panic!("{e:?}")
    };
    let wait = retry_after.expect("retry-after on a quota 429");
    assert!(
        wait > Duration::ZERO && wait <= Duration::from_secs(60),
        "{wait:?}"
    );
    assert_eq!(*dimension, Some(RateLimitDimension::Requests), "{message}");
    assert_eq!(meta.remaining_requests, Some(0));
    assert_eq!(meta.status, Some(429));
    let info = e.error_info();
    assert!(info.retryable && info.rate_limited);
    assert_eq!(info.retry_after, Some(wait));

    // Output tokens: what the first generated is charged to OTPM (its unused max_tokens
    // refunded), so a second request whose max_tokens needs the whole bucket waits on OTPM.
    let mock2 = start(one_model(AnthropicModelConfig::with_limits(
        HAIKU, 100, 50_000, 1_000,
    )))
    .await;
    let c = connector(&mock2, "k");
    c.send_completion(request(HAIKU, 900)).await.expect("fits");
    let e = c.send_completion(request(HAIKU, 999)).await.unwrap_err();
    assert!(
        matches!(
            &e,
            ConnectorError::RateLimit {
                dimension: Some(RateLimitDimension::Tokens),
                retry_after: Some(_),
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e
        .meta()
        .and_then(|m| m.remaining_output_tokens)
        .is_some_and(|r| r < 999));
    mock.shutdown().await;
    mock2.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_529_is_retryable_and_the_pipeline_retries_it() {
    let mut model = AnthropicModelConfig::with_limits(HAIKU, 1_000, 2_000_000, 400_000);
    model.faults = AnthropicFaults {
        error_529: 0.5,
        ..AnthropicFaults::default()
    };
    let mut config = one_model(model);
    config.seed = 7;
    let mock = MockServer::start_with_clock(
        config,
        "127.0.0.1:0".parse().expect("addr"),
        Arc::new(mock_providers::clock::TokioClock::new()),
    )
    .await
    .expect("mock starts");
    let clock = Arc::new(TokioClock::new());
    let mut cfg = AnthropicConfig::new("k").with_base_url(mock.base_url());
    cfg.max_retries = 10;
    let anthropic: Arc<dyn LLMProvider> =
        Arc::new(AnthropicConnector::new(cfg, clock.clone()).expect("valid"));
    // A plain 529 from the connector: retryable, not a rate limit.
    let mut first_529 = None;
    for _ in 0..20 {
        if let Err(e) = anthropic.send_completion(request(HAIKU, 5)).await {
            first_529 = Some(e);
            break;
        }
    }
    let e = first_529.expect("p = 0.5 gives a 529 within 20 requests");
    assert_eq!(e.status(), Some(529), "{e:?}");
    assert!(e.is_retryable() && !e.error_info().rate_limited);

    let policy = BackoffConfig {
        max_retries: 10,
        ..BackoffConfig::default()
    }
    .policy();
    let retry = Arc::new(GovernorMiddleware::unlimited(policy, 1, clock.clone()));
    let pipe = Pipeline::new(clock).with(retry.clone());
    let set: ProviderSet = [("anthropic".to_owned(), anthropic.clone())]
        .into_iter()
        .collect();
    let before = stats(&mock, HAIKU).await["faults_529"]
        .as_u64()
        .unwrap_or(0);
    for _ in 0..10 {
        let r = pipe.execute(&set, "anthropic", request(HAIKU, 5)).await;
        assert!(r.is_ok(), "every request succeeds after retries: {r:?}");
    }
    let after = stats(&mock, HAIKU).await["faults_529"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        after > before,
        "some 529s were met and retried ({before} → {after})"
    );
    assert_eq!(
        retry.waits().len() as u64,
        after - before,
        "one retry per 529"
    );
    mock.shutdown().await;
}

#[tokio::test]
async fn an_overloaded_event_mid_stream_is_a_retryable_stream_error_after_the_text() {
    let mut model = AnthropicModelConfig::with_limits(HAIKU, 100, 50_000, 8_000);
    model.faults = AnthropicFaults {
        stream_overloaded: 1.0,
        ..AnthropicFaults::default()
    };
    let mock = start(one_model(model)).await;
    let c = connector(&mock, "k");
    let (meta, mut stream) = c.open_stream(request(HAIKU, 40)).await.expect("a 200");
    assert_eq!(meta.status, Some(200));
    let mut text = String::new();
    let err = loop {
        match stream.next().await.expect("ends with an error") {
            Ok(chunk) => {
                assert!(chunk.usage.is_none(), "no usage before the error");
                text.push_str(&chunk.delta);
            }
            Err(e) => break e,
        }
    };
    assert!(!text.is_empty(), "the text before the event was delivered");
    assert!(err.is_retryable());
    assert!(
        matches!(&err, ConnectorError::Stream { message } if message.contains("overloaded_error")),
        "{err:?}"
    );
    assert!(stream.next().await.is_none(), "nothing follows the error");
    mock.shutdown().await;
}

#[tokio::test]
async fn metadata_health_and_the_plugin_registry() {
    let mock = start(MockConfig::default()).await;
    let c = connector(&mock, "k");
    c.send_completion(request(HAIKU, 5)).await.expect("ok");
    let m = c.get_metadata().await.expect("model list");
    assert_eq!(m.provider_id, "anthropic");
    assert_eq!(m.api_version, "2023-06-01");
    let ids: Vec<&str> = m.models.iter().map(|m| m.id.as_str()).collect();
    assert!(ids.contains(&HAIKU), "{ids:?}");
    assert_eq!(m.rate_limits.requests_per_minute, Some(1_000));
    assert_eq!(m.rate_limits.tokens_per_minute, Some(2_400_000));
    assert_eq!(c.health_check().await.expect("ok"), HealthStatus::Healthy);

    let mut cfg = MockConfig::default();
    cfg.anthropic.keys = vec!["good".into()];
    let strict = start(cfg).await;
    let status = connector(&strict, "bad").health_check().await.expect("ok");
    assert!(
        matches!(status, HealthStatus::Unhealthy { .. }),
        "{status:?}"
    );

    let registry = PluginRegistry::with_builtins();
    let config = [
        ("api_key".to_owned(), "k".to_owned()),
        ("base_url".to_owned(), mock.base_url()),
    ]
    .into_iter()
    .collect();
    let p = registry
        .create("anthropic", &config, Arc::new(ManualClock::new(0)))
        .expect("registered");
    assert_eq!(p.provider_id(), "anthropic");
    p.send_completion(request(HAIKU, 5))
        .await
        .expect("works from the registry");
    assert!(p.validate_config(&AnthropicConfig::new("k")).is_ok());
    mock.shutdown().await;
    strict.shutdown().await;
}

/// `kind = "anthropic"` in a Hub config: the plugin builds the connector, requests go
/// through the rate-limit middleware with input and output dimensions, and the server's
/// `anthropic-ratelimit-output-tokens-remaining` lowers the limiter's output view.
#[tokio::test]
async fn a_hub_with_an_anthropic_provider_syncs_the_output_bucket_from_headers() {
    let mock = start(one_model(AnthropicModelConfig::with_limits(
        HAIKU, 100, 50_000, 1_000,
    )))
    .await;
    let toml = format!(
        "middleware = [\"rate_limit\", \"retry\"]\n\
         [[provider]]\nid = \"claude\"\nkind = \"anthropic\"\n\
         config = {{ api_key = \"k\", base_url = \"{}\", timeout_secs = 10 }}\n\
         [[limits.key]]\nprovider = \"claude\"\n\
         limit = {{ limits = {{ rpm = 100, itpm = 50000, otpm = 8000 }} }}\n",
        mock.base_url()
    );
    let hub = connector_hub::hub::Hub::from_toml_str(&toml).expect("valid config");
    let r = hub.complete(request(HAIKU, 100)).await.expect("completes");
    assert!(r.usage.output_tokens > 0);
    let key = connector_hub::limiter::LimitKey::new("claude", HAIKU);
    let used = hub.limiter().usage_stats(&key).await.expect("stats");
    // The server had reserved max_tokens (100) of its 1 000 output tokens when it sent
    // the headers; the local view (8 000) is lowered to that.
    assert!(
        used.output_tokens_remaining().is_some_and(|r| r <= 900),
        "{used:?}"
    );
    assert_eq!(used.requests_remaining(), Some(99));
    let chunks: Vec<StreamChunk> = hub
        .stream(request(HAIKU, 20))
        .await
        .expect("stream opens")
        .map(|c| c.expect("no stream error"))
        .collect()
        .await;
    assert!(chunks.last().and_then(|c| c.usage).is_some());
    let mut no_max = request(HAIKU, 1);
    no_max.max_tokens = None;
    let e = hub.complete(no_max).await.unwrap_err();
    assert!(e.to_string().contains("max_tokens is required"), "{e}");
    mock.shutdown().await;
}
