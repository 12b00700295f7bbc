//! `MetricsCollector` fed by `MetricsMiddleware` against real HTTP to `mock-providers`:
//! its totals equal the mock's own `/_mock/stats`, and the Prometheus text shows them.

use std::sync::Arc;
use std::time::Duration;

use connector_hub::clock::ManualClock;
use connector_hub::metrics::{MetricsCollector, MetricsMiddleware};
use connector_hub::middleware::{Pipeline, ProviderSet};
use connector_hub::provider::{
    CompletionRequest, LLMProvider, Message, OpenAIConnector, OpenAiConfig,
};
use mock_providers::config::ModelConfig;
use mock_providers::{MockConfig, MockServer};
use serde_json::Value;

const MODEL: &str = "gpt-4o-mini";

#[tokio::test]
async fn metrics_totals_equal_the_mocks_stats() {
    let mut config = MockConfig::default();
    for m in config.models.iter_mut().filter(|m| m.id == MODEL) {
        *m = ModelConfig::chat(MODEL, m.encoding, 3, 1_000_000);
    }
    let mock = MockServer::start(config).await.expect("mock starts");
    let clock = Arc::new(ManualClock::new(0));
    let mut c = OpenAiConfig::new("any-key").with_base_url(format!("{}/v1", mock.base_url()));
    c.timeout = Duration::from_secs(10);
    let p: Arc<dyn LLMProvider> =
        Arc::new(OpenAIConnector::new(c, clock.clone()).expect("valid config"));
    let set: ProviderSet = [("openai".to_owned(), p)].into_iter().collect();
    let metrics = Arc::new(MetricsCollector::new());
    let pipe = Pipeline::new(clock.clone()).with(Arc::new(MetricsMiddleware::new(
        metrics.clone(),
        clock.clone(),
    )));

    let mut outcomes = (0, 0);
    for i in 0..6 {
        let r = CompletionRequest::new(MODEL, vec![Message::user(format!("Count to {i}."))])
            .with_max_tokens(12);
        match pipe.execute(&set, "openai", r).await {
            Ok(_) => outcomes.0 += 1,
            Err(_) => outcomes.1 += 1,
        }
    }
    assert_eq!(outcomes, (3, 3), "3 RPM: three admitted, three throttled");
    let bad = CompletionRequest::new("no-such-model", vec![Message::user("x")]);
    assert!(pipe.execute(&set, "openai", bad).await.is_err());

    let stats: Value = reqwest::get(format!("{}/_mock/stats", mock.base_url()))
        .await
        .expect("stats reachable")
        .json()
        .await
        .expect("json");
    let key = &stats["keys"][format!("openai/org-mock/{MODEL}")];
    let snap = metrics.snapshot();
    let total: u64 = snap.iter().map(|s| s.requests).sum();
    assert_eq!(total, stats["requests_total"].as_u64().expect("count"));
    let s = snap
        .iter()
        .find(|s| s.provider == "openai" && s.model == MODEL)
        .expect("series");
    assert_eq!(s.successes, key["admitted"].as_u64().expect("admitted"));
    assert_eq!(
        s.rate_limited.get("requests").copied(),
        key["throttled"]["requests"].as_u64()
    );
    assert_eq!(s.errors.get("rate_limit").copied(), Some(3));
    assert_eq!(
        s.tokens_in + s.tokens_out,
        key["tokens_used"].as_u64().expect("tokens used")
    );
    assert_eq!(s.latency.count, 6);
    let other = snap
        .iter()
        .find(|s| s.model == "no-such-model")
        .expect("series");
    assert_eq!(other.errors.get("not_found").copied(), Some(1));

    let text = metrics.prometheus_text();
    assert!(text.contains(&format!(
        "hub_requests_total{{provider=\"openai\",model=\"{MODEL}\"}} 6\n"
    )));
    assert!(text.contains(&format!(
        "hub_rate_limited_total{{provider=\"openai\",model=\"{MODEL}\",dimension=\"requests\"}} 3\n"
    )));
    assert!(text.contains(&format!(
        "hub_latency_seconds_count{{provider=\"openai\",model=\"{MODEL}\"}} 6\n"
    )));
    mock.shutdown().await;
}
