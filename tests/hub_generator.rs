//! The Generator's per-request hooks against a real Azure mock deployment with 60 RPM
//! (10 requests per 10-s window), under tokio's paused time: with the shared limiter, 8
//! parallel generations never see a 429; without limits, the same burst does.

use std::sync::Arc;
use std::time::Duration;

use connector_hub::clock::TokioClock;
use connector_hub::generator::Generator;
use connector_hub::limiter::{LimiterConfig, RateLimiter};
use connector_hub::middleware::PipelineError;
use connector_hub::provider::{AzureConfig, AzureConnector, ConnectorError, LLMProvider};
use futures::future::join_all;
use mock_providers::config::DeploymentConfig;
use mock_providers::{MockConfig, MockHandle, MockServer};
use serde_json::Value;

const MODEL: &str = "gpt-4o-mini";
const DEPLOYMENT: &str = "gpt4o-60rpm";
/// Generations run at once, and requests per generation.
const GENERATIONS: usize = 8;
const PER_GENERATION: usize = 3;

async fn azure_60_rpm() -> MockHandle {
    MockServer::start_with_clock(
        MockConfig {
            deployments: vec![DeploymentConfig {
                rpm: Some(60),
                ..DeploymentConfig::new(DEPLOYMENT, MODEL, 1_000_000)
            }],
            ..MockConfig::default()
        },
        "127.0.0.1:0".parse().expect("addr"),
        Arc::new(mock_providers::clock::TokioClock::new()),
    )
    .await
    .expect("mock starts")
}

async fn run(mock: &MockHandle, limits: &str) -> Vec<Result<(), PipelineError>> {
    let clock = Arc::new(TokioClock::new());
    let mut c = AzureConfig::new("azure-key", mock.base_url(), DEPLOYMENT);
    c.timeout = Duration::from_secs(600);
    let azure: Arc<dyn LLMProvider> =
        Arc::new(AzureConnector::new(c, clock.clone()).expect("valid config"));
    let config = LimiterConfig::from_toml(limits).expect("valid limiter config");
    let limiter: Arc<dyn RateLimiter> = connector_hub::limiter::build(config, clock)
        .await
        .expect("in-memory limiter");
    let generator = Generator::new(azure, limiter, MODEL)
        .with_deployment(DEPLOYMENT)
        .with_max_tokens(16)
        .with_max_parallel(PER_GENERATION);
    let prompts: Vec<String> = (0..GENERATIONS)
        .map(|i| format!("Write line {i} of a poem."))
        .collect();
    join_all(
        prompts
            .iter()
            .map(|p| generator.generate(p, PER_GENERATION)),
    )
    .await
    .into_iter()
    .flatten()
    .map(|r| r.map(drop))
    .collect()
}

async fn throttled(mock: &MockHandle) -> Value {
    let s: Value = reqwest::get(format!("{}/_mock/stats", mock.base_url()))
        .await
        .expect("stats reachable")
        .json()
        .await
        .expect("json");
    s["keys"][format!("azure/{DEPLOYMENT}")].clone()
}

#[tokio::test(start_paused = true)]
async fn eight_parallel_generations_under_the_shared_limiter_never_see_a_429() {
    let mock = azure_60_rpm().await;
    let start = tokio::time::Instant::now();
    // The deployment's short window, with 10 % headroom: 9 requests per 10 s.
    let results = run(
        &mock,
        r#"
        [[key]]
        provider = "azure"
        deployment = "gpt4o-60rpm"
        limit = { strategy = "sliding_log", limits = { requests = "10/10s" }, headroom = 0.9 }
        "#,
    )
    .await;
    assert_eq!(results.len(), GENERATIONS * PER_GENERATION);
    for r in &results {
        assert!(r.is_ok(), "{r:?}");
    }
    let s = throttled(&mock).await;
    assert_eq!(s["admitted"], (GENERATIONS * PER_GENERATION) as u64, "{s}");
    assert_eq!(s["throttled"]["requests"], 0, "{s}");
    // 24 requests at 9 per 10 s need two refills of the window.
    assert!(
        start.elapsed() >= Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    mock.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_same_burst_without_limits_is_throttled() {
    let mock = azure_60_rpm().await;
    let results = run(&mock, "").await;
    let rate_limited = results
        .iter()
        .filter(|r| {
            matches!(
                r,
                Err(PipelineError::Provider(ConnectorError::RateLimit { .. }))
            )
        })
        .count();
    assert!(rate_limited > 0, "the mock enforces 10 per 10 s");
    assert_eq!(
        throttled(&mock).await["throttled"]["requests"],
        rate_limited as u64
    );
    mock.shutdown().await;
}
