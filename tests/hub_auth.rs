//! `AuthMiddleware` against real HTTP to `mock-providers` configured with one accepted key:
//! the credential from the source reaches the wire (the connector's own key is wrong), a
//! 401 refreshes and retries exactly once, and a second 401 propagates. The mock's request
//! counter proves the number of calls.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use connector_hub::clock::ManualClock;
use connector_hub::middleware::{
    AuthMiddleware, CredentialError, CredentialSource, Pipeline, PipelineError, ProviderSet,
    StaticCredentials,
};
use connector_hub::provider::{
    ApiKey, AzureConfig, AzureConnector, CompletionRequest, ConnectorError, LLMProvider, Message,
    OpenAIConnector, OpenAiConfig,
};
use mock_providers::config::OrganizationConfig;
use mock_providers::{MockConfig, MockHandle, MockServer};
use parking_lot::Mutex;
use serde_json::Value;

const RIGHT: &str = "sk-right-key";

/// A source whose key is stale until refreshed.
#[derive(Debug)]
struct Rotating {
    current: Mutex<String>,
    refreshes: AtomicU32,
}

impl Rotating {
    fn new(stale: &str) -> Arc<Self> {
        Arc::new(Self {
            current: Mutex::new(stale.to_owned()),
            refreshes: AtomicU32::new(0),
        })
    }
}

#[async_trait]
impl CredentialSource for Rotating {
    async fn credential(&self, _provider: &str) -> Result<Option<ApiKey>, CredentialError> {
        Ok(Some(ApiKey::new(self.current.lock().clone())))
    }

    async fn refresh(&self, _provider: &str) -> Result<(), CredentialError> {
        self.refreshes.fetch_add(1, Ordering::SeqCst);
        *self.current.lock() = RIGHT.to_owned();
        Ok(())
    }
}

async fn mock() -> MockHandle {
    MockServer::start(MockConfig {
        organizations: vec![OrganizationConfig {
            id: "org-mock".into(),
            keys: vec![RIGHT.into()],
        }],
        azure_keys: vec![RIGHT.into()],
        ..MockConfig::default()
    })
    .await
    .expect("mock starts")
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

fn openai(mock: &MockHandle) -> Arc<dyn LLMProvider> {
    // The connector's own key is wrong: only a credential from the source can succeed.
    let mut c =
        OpenAiConfig::new("sk-config-wrong").with_base_url(format!("{}/v1", mock.base_url()));
    c.timeout = Duration::from_secs(10);
    Arc::new(OpenAIConnector::new(c, Arc::new(ManualClock::new(0))).expect("valid config"))
}

fn azure(mock: &MockHandle) -> Arc<dyn LLMProvider> {
    let mut c = AzureConfig::new("azure-config-wrong", mock.base_url(), "gpt-4o-mini");
    c.timeout = Duration::from_secs(10);
    Arc::new(AzureConnector::new(c, Arc::new(ManualClock::new(0))).expect("valid config"))
}

fn pipeline(source: Arc<dyn CredentialSource>) -> Pipeline {
    Pipeline::new(Arc::new(ManualClock::new(0))).with(Arc::new(AuthMiddleware::new(source)))
}

fn request() -> CompletionRequest {
    CompletionRequest::new("gpt-4o-mini", vec![Message::user("Hi.")]).with_max_tokens(8)
}

#[tokio::test]
async fn a_401_refreshes_the_credential_and_the_one_retry_succeeds() {
    let mock = mock().await;
    for p in [openai(&mock), azure(&mock)] {
        let before = requests_total(&mock).await;
        let id = p.provider_id().to_owned();
        let set: ProviderSet = [(id.clone(), p)].into_iter().collect();
        let source = Rotating::new("sk-expired");
        let pipe = pipeline(source.clone());
        let r = pipe.execute(&set, &id, request()).await;
        assert!(r.is_ok(), "{id}: {r:?}");
        assert_eq!(source.refreshes.load(Ordering::SeqCst), 1, "{id}");
        assert_eq!(
            requests_total(&mock).await - before,
            2,
            "{id}: 401 then 200"
        );
        // The refreshed key is used from the start now: one call.
        pipe.execute(&set, &id, request()).await.expect("valid key");
        assert_eq!(requests_total(&mock).await - before, 3, "{id}");
        assert_eq!(source.refreshes.load(Ordering::SeqCst), 1, "{id}");
        // So is a stream.
        let s = pipe
            .stream(&set, &id, request())
            .await
            .expect("stream opens");
        drop(s);
        assert_eq!(requests_total(&mock).await - before, 4, "{id}");
    }
    mock.shutdown().await;
}

#[tokio::test]
async fn a_key_still_wrong_after_refresh_propagates_after_exactly_one_retry() {
    let mock = mock().await;
    let p = openai(&mock);
    let set: ProviderSet = [("openai".to_owned(), p)].into_iter().collect();
    let pipe = pipeline(Arc::new(StaticCredentials::new([(
        "openai",
        "sk-still-wrong",
    )])));
    let e = pipe.execute(&set, "openai", request()).await.unwrap_err();
    assert!(
        matches!(
            e,
            PipelineError::Provider(ConnectorError::Authentication { status: 401, .. })
        ),
        "{e:?}"
    );
    assert_eq!(requests_total(&mock).await, 2, "first try and one retry");
    // Without a credential for the provider the connector's own (wrong) key is sent.
    let pipe = pipeline(Arc::new(StaticCredentials::default()));
    assert!(pipe.execute(&set, "openai", request()).await.is_err());
    assert_eq!(requests_total(&mock).await, 4);
    // With the right one, one call succeeds.
    let pipe = pipeline(Arc::new(StaticCredentials::new([("openai", RIGHT)])));
    pipe.execute(&set, "openai", request())
        .await
        .expect("right key");
    assert_eq!(requests_total(&mock).await, 5);
    mock.shutdown().await;
}
