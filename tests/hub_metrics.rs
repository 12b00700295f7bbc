//! Metrics against real HTTP to `mock-providers`: `HdrMetrics` fed by `MetricsMiddleware`
//! has totals equal to the mock's own `/_mock/stats`, and the Prometheus text shows them;
//! a caller's `MetricsCollector` given to the Hub through `HubOptions::metrics` receives
//! every provider call too, while the built-in collector keeps counting.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use connector_hub::clock::ManualClock;
use connector_hub::hub::HubOptions;
use connector_hub::metrics::{HdrMetrics, MetricsCollector, MetricsMiddleware};
use connector_hub::middleware::{Pipeline, PipelineError, ProviderSet};
use connector_hub::provider::{
    CompletionRequest, ConnectorError, LLMProvider, Message, OpenAIConnector, OpenAiConfig, Usage,
};
use futures::StreamExt;
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
    let metrics = Arc::new(HdrMetrics::new());
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

/// What a [`Counting`] sink was told.
#[derive(Debug, Default, Clone)]
struct Seen {
    successes: u64,
    errors: Vec<&'static str>,
    cancelled: u64,
    ttft: u64,
    limiter_waits: u64,
    tokens: u64,
    latency: Duration,
    series: BTreeSet<(String, String)>,
}

/// A caller's sink: counts every report.
#[derive(Debug, Default)]
struct Counting(Mutex<Seen>);

impl Counting {
    fn with(&self, provider: &str, model: &str, f: impl FnOnce(&mut Seen)) {
        let mut seen = self.0.lock().expect("not poisoned");
        seen.series.insert((provider.to_owned(), model.to_owned()));
        f(&mut seen);
    }
}

impl MetricsCollector for Counting {
    fn record_success(&self, provider: &str, model: &str, latency: Duration, usage: Usage) {
        self.with(provider, model, |s| {
            s.successes += 1;
            s.tokens += usage.total();
            s.latency += latency;
        });
    }
    fn record_error(&self, provider: &str, model: &str, latency: Duration, error: &ConnectorError) {
        self.with(provider, model, |s| {
            s.errors.push(error.error_type());
            s.latency += latency;
        });
    }
    fn record_cancelled(&self, provider: &str, model: &str, latency: Duration, usage: Usage) {
        self.with(provider, model, |s| {
            s.cancelled += 1;
            s.tokens += usage.total();
            s.latency += latency;
        });
    }
    fn record_ttft(&self, provider: &str, model: &str, _ttft: Duration) {
        self.with(provider, model, |s| s.ttft += 1);
    }
    fn record_limiter_wait(&self, provider: &str, model: &str, _wait: Duration) {
        self.with(provider, model, |s| s.limiter_waits += 1);
    }
}

fn request(model: &str, prompt: &str) -> CompletionRequest {
    let mut r = CompletionRequest::new(model, vec![Message::user(prompt)]).with_max_tokens(16);
    r.temperature = Some(0.0);
    r
}

#[tokio::test]
async fn a_collector_given_through_hub_options_receives_every_provider_call() {
    let mut config = MockConfig::default();
    for m in config.models.iter_mut().filter(|m| m.id == MODEL) {
        *m = ModelConfig::chat(MODEL, m.encoding, 3, 1_000_000);
    }
    let mock = MockServer::start(config).await.expect("mock starts");
    let toml = format!(
        "middleware = [\"metrics\", \"cache\", \"rate_limit\"]\n\
         [[provider]]\nid = \"main\"\nkind = \"openai\"\n\
         config = {{ api_key = \"k\", base_url = \"{}/v1\", timeout_secs = 10 }}\n",
        mock.base_url()
    );
    let sink = Arc::new(Counting::default());
    let hub = HubOptions {
        metrics: Some(sink.clone()),
        ..HubOptions::default()
    }
    .load_str(&toml, "test")
    .expect("valid config");

    // A stream (success with a first token), a completion and its cache hit (no provider
    // call), an unknown model (404), a third admitted call and a fourth over 3 RPM (429).
    let chunks: Vec<_> = hub
        .stream(request(MODEL, "Stream a sentence."))
        .await
        .expect("stream opens")
        .collect()
        .await;
    assert!(chunks.iter().all(Result::is_ok));
    hub.complete(request(MODEL, "Name a colour."))
        .await
        .expect("admitted");
    hub.complete(request(MODEL, "Name a colour."))
        .await
        .expect("cache hit");
    let missing = hub.complete(request("no-such-model", "x")).await;
    assert!(matches!(
        missing,
        Err(PipelineError::Provider(ConnectorError::NotFound { .. }))
    ));
    hub.complete(request(MODEL, "Count to three."))
        .await
        .expect("admitted");
    let throttled = hub.complete(request(MODEL, "Count to four.")).await;
    assert!(matches!(
        throttled,
        Err(PipelineError::Provider(ConnectorError::RateLimit { .. }))
    ));

    let stats: Value = reqwest::get(format!("{}/_mock/stats", mock.base_url()))
        .await
        .expect("stats reachable")
        .json()
        .await
        .expect("json");
    let key = &stats["keys"][format!("openai/org-mock/{MODEL}")];
    let cache = hub.cache_stats().await.expect("cache configured");
    assert_eq!(
        cache.hits, 1,
        "the repeated completion was served from the cache"
    );
    let seen = sink.0.lock().expect("not poisoned").clone();
    let calls = seen.successes + seen.errors.len() as u64 + seen.cancelled;
    assert_eq!(calls, 5, "{seen:?}");
    assert_eq!(calls, stats["requests_total"].as_u64().expect("count"));
    assert_eq!(seen.successes, key["admitted"].as_u64().expect("admitted"));
    assert_eq!(seen.errors, ["not_found", "rate_limit"]);
    assert_eq!(seen.cancelled, 0);
    assert_eq!(seen.ttft, 1, "the stream's first token");
    assert_eq!(
        seen.limiter_waits, 5,
        "every provider call passed the limiter"
    );
    assert_eq!(
        seen.tokens,
        key["tokens_used"].as_u64().expect("tokens used")
    );
    assert!(seen.latency > Duration::ZERO, "{seen:?}");
    let series: Vec<_> = seen
        .series
        .iter()
        .map(|(p, m)| (p.as_str(), m.as_str()))
        .collect();
    assert_eq!(series, [("main", MODEL), ("main", "no-such-model")]);

    // The built-in collector was fed the same calls.
    let snap = hub.metrics_snapshot();
    assert_eq!(snap.iter().map(|s| s.requests).sum::<u64>(), calls);
    assert_eq!(
        snap.iter().map(|s| s.successes).sum::<u64>(),
        seen.successes
    );
    assert!(hub.prometheus_text().contains(&format!(
        "hub_requests_total{{provider=\"main\",model=\"{MODEL}\"}} 4\n"
    )));
    mock.shutdown().await;
}
