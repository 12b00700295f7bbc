//! `Hub` built from TOML through the plugin registry, against real HTTP to two
//! `mock-providers` servers: the priority choice, fallback on its 429, metrics per provider.

use std::sync::Arc;

use connector_hub::clock::ManualClock;
use connector_hub::hub::{Hub, HubError};
use connector_hub::plugin::PluginRegistry;
use connector_hub::provider::{CompletionRequest, Message};
use mock_providers::config::ModelConfig;
use mock_providers::{MockConfig, MockServer};

const MODEL: &str = "gpt-4o-mini";

#[tokio::test]
async fn a_hub_from_toml_falls_back_from_a_429ing_primary_and_counts_both() {
    let mut tight = MockConfig::default();
    for m in tight.models.iter_mut().filter(|m| m.id == MODEL) {
        *m = ModelConfig::chat(MODEL, m.encoding, 1, 1_000_000);
    }
    let busy = MockServer::start(tight).await.expect("mock starts");
    let healthy = MockServer::start(MockConfig::default())
        .await
        .expect("mock starts");
    let toml = format!(
        r#"
        selector = "priority"
        middleware = ["metrics", "rate_limit"]

        [[provider]]
        type = "openai"
        priority = 0
        config = {{ provider_id = "primary", api_key = "k", base_url = "{}/v1" }}

        [[provider]]
        type = "openai"
        priority = 1
        config = {{ provider_id = "backup", api_key = "k", base_url = "{}/v1" }}

        [limiter.default]
        limits = {{ rpm = 1000 }}
        "#,
        busy.base_url(),
        healthy.base_url()
    );
    let clock = Arc::new(ManualClock::new(0));
    let hub = Hub::from_toml(&toml, &PluginRegistry::with_builtins(), clock)
        .await
        .expect("valid hub config");
    for _ in 0..2 {
        let r = CompletionRequest::new(MODEL, vec![Message::user("Hi.")]).with_max_tokens(4);
        hub.complete(r).await.expect("answered");
    }
    let snap = hub.metrics().snapshot();
    let primary = snap
        .iter()
        .find(|s| s.provider == "primary")
        .expect("primary");
    let backup = snap
        .iter()
        .find(|s| s.provider == "backup")
        .expect("backup");
    assert_eq!((primary.successes, primary.requests), (1, 2));
    assert_eq!(primary.rate_limited.get("requests").copied(), Some(1));
    assert_eq!((backup.successes, backup.requests), (1, 1));
    // Both attempts on each key were charged to the shared limiter.
    let stats = hub
        .limiter()
        .usage_stats(&connector_hub::limiter::LimitKey::new("primary", MODEL))
        .await
        .expect("stats");
    assert_eq!(stats.admitted, 2);
    busy.shutdown().await;
    healthy.shutdown().await;
}

#[tokio::test]
async fn unknown_names_in_the_config_are_errors() {
    let registry = PluginRegistry::with_builtins();
    let clock = Arc::new(ManualClock::new(0));
    let bad_selector = r#"
        selector = "random"
        [[provider]]
        type = "openai"
        config = { api_key = "k" }
    "#;
    assert!(matches!(
        Hub::from_toml(bad_selector, &registry, clock.clone()).await,
        Err(HubError::Unknown {
            what: "selector",
            ..
        })
    ));
    let bad_plugin = r#"
        [[provider]]
        type = "bedrock"
    "#;
    assert!(matches!(
        Hub::from_toml(bad_plugin, &registry, clock.clone()).await,
        Err(HubError::Plugin(_))
    ));
    let cache_without_table = r#"
        middleware = ["cache"]
        [[provider]]
        type = "openai"
        config = { api_key = "k" }
    "#;
    assert!(matches!(
        Hub::from_toml(cache_without_table, &registry, clock).await,
        Err(HubError::MissingCache)
    ));
}
