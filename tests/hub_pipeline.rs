//! The middleware pipeline's ordering and error rules, fallback and retry, against real
//! HTTP to `mock-providers` on 127.0.0.1.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use connector_hub::clock::{ManualClock, TokioClock};
use connector_hub::limiter::{KeyedLimiter, LimiterConfig, RateLimiter};
use connector_hub::middleware::{
    ErrorAction, FallbackMiddleware, GovernorMiddleware, Middleware, MiddlewareContext,
    MiddlewareError, Pipeline, PipelineError, ProviderSet,
};
use connector_hub::provider::{
    AzureConfig, AzureConnector, CompletionRequest, CompletionResponse, ConnectorError,
    LLMProvider, Message, OpenAIConnector, OpenAiConfig,
};
use mock_providers::config::{DeploymentConfig, ModelConfig};
use mock_providers::{MockConfig, MockHandle, MockServer};
use parking_lot::Mutex;
use serde_json::Value;

const MODEL: &str = "gpt-4o-mini";

async fn start(config: MockConfig) -> MockHandle {
    MockServer::start(config).await.expect("mock starts")
}

fn openai(mock: &MockHandle, id: &str) -> Arc<dyn LLMProvider> {
    let mut c = OpenAiConfig::new("any-key").with_base_url(format!("{}/v1", mock.base_url()));
    c.provider_id = id.to_owned();
    c.timeout = Duration::from_secs(10);
    Arc::new(OpenAIConnector::new(c, Arc::new(ManualClock::new(0))).expect("valid config"))
}

fn providers(list: &[Arc<dyn LLMProvider>]) -> ProviderSet {
    list.iter()
        .map(|p| (p.provider_id().to_owned(), p.clone()))
        .collect()
}

fn request(model: &str) -> CompletionRequest {
    let mut r = CompletionRequest::new(model, vec![Message::user("Say something short.")])
        .with_max_tokens(8);
    r.temperature = Some(0.0);
    r
}

async fn stats(mock: &MockHandle) -> Value {
    reqwest::get(format!("{}/_mock/stats", mock.base_url()))
        .await
        .expect("stats reachable")
        .json()
        .await
        .expect("stats are json")
}

/// Records every hook it runs as `"{name}.{hook}"` in a shared log; can be told to fail
/// one hook, and keeps a value in the context metadata from request to response.
#[derive(Debug)]
struct Recorder {
    name: &'static str,
    log: Arc<Mutex<Vec<String>>>,
    fail: Option<&'static str>,
}

impl Recorder {
    fn new(name: &'static str, log: &Arc<Mutex<Vec<String>>>) -> Arc<Self> {
        Arc::new(Self {
            name,
            log: log.clone(),
            fail: None,
        })
    }
    fn failing(name: &'static str, log: &Arc<Mutex<Vec<String>>>, hook: &'static str) -> Arc<Self> {
        Arc::new(Self {
            name,
            log: log.clone(),
            fail: Some(hook),
        })
    }
    fn hook(&self, hook: &str) -> Result<(), MiddlewareError> {
        self.log.lock().push(format!("{}.{hook}", self.name));
        if self.fail == Some(hook) {
            return Err(MiddlewareError::Failed {
                middleware: self.name.to_owned(),
                message: format!("{hook} refused"),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl Middleware for Recorder {
    fn name(&self) -> &str {
        self.name
    }
    async fn on_request(
        &self,
        _r: &mut CompletionRequest,
        ctx: &mut MiddlewareContext,
    ) -> Result<(), MiddlewareError> {
        ctx.metadata
            .insert(self.name.to_owned(), format!("seen by {}", self.name));
        self.hook("req")
    }
    async fn on_response(
        &self,
        _r: &mut CompletionResponse,
        ctx: &mut MiddlewareContext,
    ) -> Result<(), MiddlewareError> {
        let kept = ctx.metadata.get(self.name).cloned();
        self.log
            .lock()
            .push(format!("{}.ctx={}", self.name, kept.unwrap_or_default()));
        self.hook("resp")
    }
    async fn on_error(
        &self,
        _e: &ConnectorError,
        _ctx: &mut MiddlewareContext,
    ) -> Result<ErrorAction, MiddlewareError> {
        self.hook("err").map(|()| ErrorAction::Propagate)
    }
}

fn log() -> Arc<Mutex<Vec<String>>> {
    Arc::new(Mutex::new(Vec::new()))
}

fn pipeline(ms: Vec<Arc<dyn Middleware>>) -> Pipeline {
    ms.into_iter()
        .fold(Pipeline::new(Arc::new(ManualClock::new(0))), Pipeline::with)
}

#[tokio::test]
async fn three_middlewares_run_requests_in_order_and_responses_in_reverse_keeping_the_context() {
    let mock = start(MockConfig::default()).await;
    let p = openai(&mock, "openai");
    let l = log();
    let pipe = pipeline(vec![
        Recorder::new("a", &l),
        Recorder::new("b", &l),
        Recorder::new("c", &l),
    ]);
    let r = pipe
        .execute(&providers(&[p]), "openai", request(MODEL))
        .await
        .expect("success");
    assert!(!r.text().is_empty());
    assert_eq!(
        *l.lock(),
        [
            "a.req",
            "b.req",
            "c.req",
            "c.ctx=seen by c",
            "c.resp",
            "b.ctx=seen by b",
            "b.resp",
            "a.ctx=seen by a",
            "a.resp"
        ]
    );
    mock.shutdown().await;
}

#[tokio::test]
async fn an_on_request_error_stops_the_call_before_the_provider() {
    let mock = start(MockConfig::default()).await;
    let p = openai(&mock, "openai");
    let l = log();
    let pipe = pipeline(vec![
        Recorder::new("a", &l),
        Recorder::failing("b", &l, "req"),
        Recorder::new("c", &l),
    ]);
    let e = pipe
        .execute(&providers(&[p]), "openai", request(MODEL))
        .await
        .unwrap_err();
    assert!(
        matches!(e, PipelineError::Middleware(MiddlewareError::Failed { ref middleware, .. }) if middleware == "b"),
        "{e:?}"
    );
    assert_eq!(*l.lock(), ["a.req", "b.req"]);
    assert_eq!(
        stats(&mock).await["requests_total"],
        0,
        "provider never called"
    );
    mock.shutdown().await;
}

#[tokio::test]
async fn an_on_response_error_turns_the_success_into_that_error() {
    let mock = start(MockConfig::default()).await;
    let p = openai(&mock, "openai");
    let l = log();
    let pipe = pipeline(vec![
        Recorder::new("a", &l),
        Recorder::failing("b", &l, "resp"),
        Recorder::new("c", &l),
    ]);
    let e = pipe
        .execute(&providers(&[p]), "openai", request(MODEL))
        .await
        .unwrap_err();
    assert!(
        matches!(e, PipelineError::Middleware(MiddlewareError::Failed { ref middleware, .. }) if middleware == "b"),
        "{e:?}"
    );
    assert_eq!(
        *l.lock(),
        [
            "a.req",
            "b.req",
            "c.req",
            "c.ctx=seen by c",
            "c.resp",
            "b.ctx=seen by b",
            "b.resp"
        ]
    );
    assert_eq!(
        stats(&mock).await["requests_total"],
        1,
        "the provider answered"
    );
    mock.shutdown().await;
}

#[tokio::test]
async fn on_error_runs_in_reverse_and_the_provider_error_propagates() {
    let mock = start(MockConfig::default()).await;
    let p = openai(&mock, "openai");
    let l = log();
    let pipe = pipeline(vec![
        Recorder::new("a", &l),
        Recorder::new("b", &l),
        Recorder::new("c", &l),
    ]);
    let e = pipe
        .execute(&providers(&[p]), "openai", request("no-such-model"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, PipelineError::Provider(ConnectorError::NotFound { .. })),
        "{e:?}"
    );
    assert_eq!(
        *l.lock(),
        ["a.req", "b.req", "c.req", "c.err", "b.err", "a.err"]
    );
    mock.shutdown().await;
}

#[tokio::test]
async fn an_on_error_error_overrides_the_original_error() {
    let mock = start(MockConfig::default()).await;
    let p = openai(&mock, "openai");
    let l = log();
    let pipe = pipeline(vec![
        Recorder::new("a", &l),
        Recorder::failing("b", &l, "err"),
        Recorder::new("c", &l),
    ]);
    let e = pipe
        .execute(&providers(&[p]), "openai", request("no-such-model"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, PipelineError::Middleware(MiddlewareError::Failed { ref middleware, .. }) if middleware == "b"),
        "{e:?}"
    );
    assert_eq!(*l.lock(), ["a.req", "b.req", "c.req", "c.err", "b.err"]);
    mock.shutdown().await;
}

#[tokio::test]
async fn fallback_moves_from_a_429ing_provider_to_a_healthy_one() {
    let mut tight = MockConfig::default();
    for m in tight.models.iter_mut().filter(|m| m.id == MODEL) {
        *m = ModelConfig::chat(MODEL, m.encoding, 1, 1_000_000);
    }
    let busy = start(tight).await;
    let healthy = start(MockConfig::default()).await;
    let set = providers(&[openai(&busy, "primary"), openai(&healthy, "backup")]);
    let l = log();
    let pipe = pipeline(vec![
        Arc::new(FallbackMiddleware::new(["primary", "backup"])),
        Recorder::new("rec", &l),
    ]);
    // The first request uses the primary's only request of the minute.
    let first = pipe.execute(&set, "primary", request(MODEL)).await;
    assert!(first.is_ok(), "{first:?}");
    let mut ctx = MiddlewareContext::new("primary", 0);
    let second = pipe.execute_with(&set, request(MODEL), &mut ctx).await;
    assert!(second.is_ok(), "{second:?}");
    assert_eq!(ctx.tried, ["primary", "backup"]);
    let busy_stats = stats(&busy).await;
    let key = format!("openai/org-mock/{MODEL}");
    assert_eq!(busy_stats["keys"][&key]["admitted"], 1);
    assert_eq!(busy_stats["keys"][&key]["throttled"]["requests"], 1);
    assert_eq!(stats(&healthy).await["keys"][&key]["admitted"], 1);
    // Non-retryable errors do not fall back.
    let e = pipe
        .execute(&set, "primary", request("no-such-model"))
        .await
        .unwrap_err();
    assert!(matches!(
        e,
        PipelineError::Provider(ConnectorError::NotFound { .. })
    ));
    busy.shutdown().await;
    healthy.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn retry_honours_retry_after_ms_exactly() {
    let clock = Arc::new(mock_providers::clock::TokioClock::new());
    let mock = MockServer::start_with_clock(
        MockConfig {
            // 1 000 TPM → 6 RPM → one request per 10-s window.
            deployments: vec![DeploymentConfig::new("slow", MODEL, 1_000)],
            ..MockConfig::default()
        },
        "127.0.0.1:0".parse().expect("addr"),
        clock,
    )
    .await
    .expect("mock starts");
    let hub_clock = Arc::new(TokioClock::new());
    let mut c = AzureConfig::new("azure-key", mock.base_url(), "slow");
    c.timeout = Duration::from_secs(60);
    let azure: Arc<dyn LLMProvider> =
        Arc::new(AzureConnector::new(c, hub_clock.clone()).expect("valid config"));
    let id = azure.provider_id().to_owned();
    let limiter: Arc<dyn RateLimiter> =
        Arc::new(KeyedLimiter::new(LimiterConfig::default(), hub_clock.clone()).expect("valid"));
    // Retries only (the governed step without limits), keyed like the Hub keys Azure.
    let retry = Arc::new(
        GovernorMiddleware::new(limiter, hub_clock.clone())
            .with_limits(false)
            .with_deployment(id.clone(), "slow"),
    );
    let pipe = Pipeline::new(hub_clock).with(retry.clone());
    let set = providers(std::slice::from_ref(&azure));

    pipe.execute(&set, &id, request(MODEL))
        .await
        .expect("first fits");
    // Learn what the server advertises for the next request, without the pipeline.
    let e = azure.send_completion(request(MODEL)).await.unwrap_err();
    let advertised = e.retry_after().expect("retry-after-ms");
    assert!(advertised > Duration::ZERO && advertised <= Duration::from_secs(10));

    let start = tokio::time::Instant::now();
    let r = pipe.execute(&set, &id, request(MODEL)).await;
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(retry.waits(), [advertised], "waited what the server said");
    assert_eq!(start.elapsed(), advertised, "and exactly that long");
    let s = stats(&mock).await;
    assert_eq!(s["keys"]["azure/slow"]["admitted"], 2, "{s}");
    assert_eq!(s["keys"]["azure/slow"]["throttled"]["requests"], 2, "{s}");
    mock.shutdown().await;
}
