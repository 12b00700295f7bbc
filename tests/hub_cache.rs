//! `CacheMiddleware` over `MemoryCache` against real HTTP to `mock-providers`: a hit skips
//! the provider (the mock's request counter proves it); non-deterministic requests, streams
//! and errors are never cached.

use std::sync::Arc;
use std::time::Duration;

use connector_hub::cache::{CacheStrategy, MemoryCache};
use connector_hub::clock::ManualClock;
use connector_hub::middleware::{CacheMiddleware, MiddlewareContext, Pipeline, ProviderSet};
use connector_hub::provider::{
    CompletionRequest, LLMProvider, Message, OpenAIConnector, OpenAiConfig,
};
use mock_providers::{MockConfig, MockHandle, MockServer};
use serde_json::Value;

const MODEL: &str = "gpt-4o-mini";

struct Setup {
    mock: MockHandle,
    set: ProviderSet,
    store: Arc<MemoryCache>,
    clock: Arc<ManualClock>,
    pipe: Pipeline,
}

async fn setup() -> Setup {
    let mock = MockServer::start(MockConfig::default())
        .await
        .expect("mock starts");
    let clock = Arc::new(ManualClock::new(0));
    let c = OpenAiConfig::new("any-key").with_base_url(format!("{}/v1", mock.base_url()));
    let p: Arc<dyn LLMProvider> =
        Arc::new(OpenAIConnector::new(c, clock.clone()).expect("valid config"));
    let set: ProviderSet = [("openai".to_owned(), p)].into_iter().collect();
    let store = Arc::new(MemoryCache::new(1 << 20, clock.clone()));
    let pipe = Pipeline::new(clock.clone()).with(Arc::new(CacheMiddleware::new(
        store.clone(),
        Duration::from_secs(60),
    )));
    Setup {
        mock,
        set,
        store,
        clock,
        pipe,
    }
}

fn request(model: &str, temperature: f32) -> CompletionRequest {
    let mut r =
        CompletionRequest::new(model, vec![Message::user("Name a colour.")]).with_max_tokens(8);
    r.temperature = Some(temperature);
    r
}

async fn requests_total(mock: &MockHandle) -> u64 {
    let s: Value = reqwest::get(format!("{}/_mock/stats", mock.base_url()))
        .await
        .expect("stats reachable")
        .json()
        .await
        .expect("json");
    s["requests_total"].as_u64().expect("a count")
}

#[tokio::test]
async fn a_cache_hit_returns_the_same_response_without_calling_the_provider() {
    let s = setup().await;
    let first = s
        .pipe
        .execute(&s.set, "openai", request(MODEL, 0.0))
        .await
        .expect("first");
    let mut ctx = MiddlewareContext::new("openai", 0);
    let second = s
        .pipe
        .execute_with(&s.set, request(MODEL, 0.0), &mut ctx)
        .await
        .expect("second");
    assert_eq!(ctx.metadata["cache"], "hit");
    assert_eq!(second.text(), first.text());
    assert_eq!(second.usage, first.usage);
    assert_eq!(
        requests_total(&s.mock).await,
        1,
        "the hit skipped the provider"
    );
    let stats = s.store.stats().await;
    assert_eq!((stats.hits, stats.misses, stats.entries), (1, 1, 1));

    // After the TTL the provider is asked again.
    s.clock.advance(Duration::from_secs(60));
    s.pipe
        .execute(&s.set, "openai", request(MODEL, 0.0))
        .await
        .expect("third");
    assert_eq!(requests_total(&s.mock).await, 2);
    s.mock.shutdown().await;
}

#[tokio::test]
async fn non_deterministic_requests_streams_and_errors_are_not_cached() {
    let s = setup().await;
    for _ in 0..2 {
        s.pipe
            .execute(&s.set, "openai", request(MODEL, 0.7))
            .await
            .expect("sampled");
    }
    assert_eq!(requests_total(&s.mock).await, 2);
    for _ in 0..2 {
        assert!(s
            .pipe
            .execute(&s.set, "openai", request("no-such-model", 0.0))
            .await
            .is_err());
    }
    assert_eq!(requests_total(&s.mock).await, 4, "errors are not cached");
    assert_eq!(s.store.stats().await.entries, 0);

    let mut seeded = request(MODEL, 0.7);
    seeded.provider_params.insert("seed".into(), 7.into());
    assert!(CacheMiddleware::is_cacheable(&seeded));
    seeded.stream = true;
    assert!(!CacheMiddleware::is_cacheable(&seeded), "streams never");
    s.mock.shutdown().await;
}
