//! `hub serve`'s gateway over real HTTP in front of the mock (both on loopback, ports
//! from 127.0.0.1:0): OpenAI and Azure routes, embeddings, the model list, streams with
//! and without include_usage, 401/400/404/405/413 in each API's shape, a request that
//! can never fit, an upstream 429 retried by the lifecycle, a client that disconnects
//! mid-stream (its reservation comes back), and shadow mode.

use std::sync::Arc;
use std::time::Duration;

use connector_hub::clock::{Clock, TokioClock};
use connector_hub::gateway::upstream::HttpTransport;
use connector_hub::gateway::{app, GatewayConfig, GatewayState};
use connector_hub::limiter::{KeyedLimiter, LimitKey, RateLimiter};
use futures::StreamExt;
use mock_providers::config::ModelConfig;
use mock_providers::generation::LatencyConfig;
use mock_providers::{MockConfig, MockHandle, MockServer};
use serde_json::{json, Value};
use tower::ServiceExt;

const MODEL: &str = "gpt-4o-mini";
const KEY_A: &str = "gw-key-a";
const MOCK_KEY: &str = "openai/org-mock/gpt-4o-mini";

fn env(name: &str) -> Option<String> {
    match name {
        "GW_A" => Some(KEY_A.into()),
        "GW_B" => Some("gw-key-b".into()),
        "UP_KEY" => Some("sk-upstream-secret".into()),
        _ => None,
    }
}

/// A gateway config in front of `mock`: an OpenAI upstream (chat + embeddings), an Azure
/// upstream (deployment gpt-4o-mini-dep… the mock's `gpt-4o-mini` deployment is reached
/// through `azure_models`), `limiter` pasted as the OpenAI upstream's block.
fn config(mock: &MockHandle, front: &str, limiter: &str) -> String {
    format!(
        r#"
[gateway]
body_limit = 2048
{front}
[[gateway.tenant]]
name = "a"
key_env = "GW_A"
max_wait = "5s"
[[gateway.tenant]]
name = "b"
key_env = "GW_B"

[[upstream]]
id = "oai"
kind = "openai"
url = "{base}/v1"
api_key_env = "UP_KEY"
models = ["gpt-4o-mini", "text-embedding-3-small"]
{uses}

[[upstream]]
id = "az"
kind = "azure"
url = "{base}"
api_key_env = "UP_KEY"
models = ["dep-mini"]

{limiter}
"#,
        base = mock.base_url(),
        uses = if limiter.is_empty() {
            ""
        } else {
            "limiter = \"tuned\""
        },
    )
}

struct Running {
    base: String,
    state: Arc<GatewayState>,
    http: reqwest::Client,
}

async fn gateway(text: &str) -> Running {
    let config = GatewayConfig::from_str_with(text, "gateway.toml", env).expect("valid config");
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
    let limiter: Arc<dyn RateLimiter> =
        Arc::new(KeyedLimiter::new(config.limits.clone(), clock.clone()).expect("limiter"));
    let state = GatewayState::new(
        config,
        limiter,
        clock,
        Arc::new(HttpTransport::new().expect("client")),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let router = app(state.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    Running {
        base: format!("http://{addr}"),
        state,
        http: reqwest::Client::new(),
    }
}

async fn mock(config: MockConfig) -> MockHandle {
    MockServer::start(config).await.expect("mock starts")
}

/// The mock with a `dep-mini` Azure deployment of gpt-4o-mini, and `rpm` for gpt-4o-mini.
fn mock_config(rpm: u64) -> MockConfig {
    let mut c = MockConfig::default();
    for m in c.models.iter_mut().filter(|m| m.id == MODEL) {
        *m = ModelConfig::chat(MODEL, m.encoding, rpm, 10_000_000);
    }
    c.deployments
        .push(mock_providers::config::DeploymentConfig::new(
            "dep-mini", MODEL, 1_000_000,
        ));
    c
}

async fn stats(mock: &MockHandle) -> Value {
    reqwest::get(format!("{}/_mock/stats", mock.base_url()))
        .await
        .expect("stats")
        .json()
        .await
        .expect("json")
}

fn chat(max_tokens: u64) -> Value {
    json!({"model": MODEL, "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": max_tokens})
}

impl Running {
    async fn post(&self, path: &str, key: Option<&str>, body: &Value) -> reqwest::Response {
        let mut r = self.http.post(format!("{}{path}", self.base)).json(body);
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        r.send().await.expect("gateway answers")
    }

    async fn in_flight(&self, key: &LimitKey) -> u64 {
        self.state
            .limiter
            .usage_stats(key)
            .await
            .expect("stats")
            .in_flight
    }
}

#[tokio::test]
async fn openai_and_azure_routes_forward_and_reconcile_with_the_reported_usage() {
    let mock = mock(mock_config(10_000)).await;
    let limiter = "[[limiter]]\nname = \"tuned\"\nstrategy = \"token_bucket\"\nlimits = { rpm = 100, tpm = 100000 }\n";
    let gw = gateway(&config(&mock, "", limiter)).await;

    let r = gw
        .post("/v1/chat/completions", Some(KEY_A), &chat(16))
        .await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-request-id"));
    assert!(
        !r.headers().contains_key("x-ratelimit-remaining-requests"),
        "the upstream's quota headers are not passed on"
    );
    let body: Value = r.json().await.expect("json");
    let used = body["usage"]["total_tokens"].as_u64().expect("usage");
    let key = LimitKey::new("oai", MODEL);
    let s = gw.state.limiter.usage_stats(&key).await.expect("stats");
    assert_eq!(s.admitted, 1);
    assert_eq!(s.tokens_charged, used, "reconciled with the reported usage");
    assert_eq!(s.in_flight, 0);

    // Azure route: the deployment from the path, the api-key header, the client's api-version.
    let r = gw
        .http
        .post(format!(
            "{}/openai/deployments/dep-mini/chat/completions?api-version=2024-10-21",
            gw.base
        ))
        .header("api-key", KEY_A)
        .json(&json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8}))
        .send()
        .await
        .expect("answers");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    assert!(v["choices"][0]["message"]["content"].is_string());

    // Embeddings and the model list.
    let r = gw
        .post(
            "/v1/embeddings",
            Some(KEY_A),
            &json!({"model": "text-embedding-3-small", "input": ["one", "two"]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["data"].as_array().map(Vec::len), Some(2));
    let r = gw
        .http
        .get(format!("{}/v1/models", gw.base))
        .bearer_auth(KEY_A)
        .send()
        .await
        .expect("answers");
    let v: Value = r.json().await.expect("json");
    let ids: Vec<&str> = v["data"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(ids, ["gpt-4o-mini", "text-embedding-3-small", "dep-mini"]);

    let st = stats(&mock).await;
    assert_eq!(st["keys"][MOCK_KEY]["admitted"], 1);
    assert_eq!(st["keys"]["azure/dep-mini"]["admitted"], 1);
}

#[tokio::test]
async fn bad_requests_get_the_called_apis_error_shape() {
    let mock = mock(mock_config(10_000)).await;
    let gw = gateway(&config(&mock, "", "")).await;
    let err = |v: &Value| v["error"].clone();

    // 401: no key, a wrong key; OpenAI's shape and Azure's.
    let r = gw.post("/v1/chat/completions", None, &chat(8)).await;
    assert_eq!(r.status(), 401);
    let e = err(&r.json().await.expect("json"));
    assert_eq!(e["code"], "invalid_api_key");
    assert_eq!(e["type"], "invalid_request_error");
    let r = gw
        .post("/v1/chat/completions", Some("sk-upstream-secret"), &chat(8))
        .await;
    assert_eq!(r.status(), 401, "the upstream key is no gateway key");
    let r = gw
        .http
        .post(format!(
            "{}/openai/deployments/dep-mini/chat/completions?api-version=2024-10-21",
            gw.base
        ))
        .header("api-key", "nope")
        .json(&chat(8))
        .send()
        .await
        .expect("answers");
    assert_eq!(r.status(), 401);
    assert_eq!(err(&r.json().await.expect("json"))["code"], "401");

    // 400: not JSON; a missing field, named.
    let r = gw
        .http
        .post(format!("{}/v1/chat/completions", gw.base))
        .bearer_auth(KEY_A)
        .body("{not json")
        .send()
        .await
        .expect("answers");
    assert_eq!(r.status(), 400);
    assert_eq!(
        err(&r.json().await.expect("json"))["type"],
        "invalid_request_error"
    );
    let r = gw
        .post(
            "/v1/chat/completions",
            Some(KEY_A),
            &json!({"model": MODEL}),
        )
        .await;
    assert_eq!(r.status(), 400);
    assert_eq!(err(&r.json().await.expect("json"))["param"], "messages");

    // 404: an unknown model, an unknown deployment, an unknown path.
    let r = gw
        .post(
            "/v1/chat/completions",
            Some(KEY_A),
            &json!({"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        err(&r.json().await.expect("json"))["code"],
        "model_not_found"
    );
    let r = gw
        .http
        .post(format!(
            "{}/openai/deployments/nope/chat/completions?api-version=2024-10-21",
            gw.base
        ))
        .header("api-key", KEY_A)
        .json(&chat(8))
        .send()
        .await
        .expect("answers");
    assert_eq!(r.status(), 404);
    assert_eq!(
        err(&r.json().await.expect("json"))["code"],
        "DeploymentNotFound"
    );
    let r = gw.post("/v1/nothing", Some(KEY_A), &chat(8)).await;
    assert_eq!(r.status(), 404);
    assert!(err(&r.json().await.expect("json"))["message"]
        .as_str()
        .is_some_and(|m| m.contains("/v1/nothing")));

    // 405: a GET on a POST route.
    let r = gw
        .http
        .get(format!("{}/v1/chat/completions", gw.base))
        .bearer_auth(KEY_A)
        .send()
        .await
        .expect("answers");
    assert_eq!(r.status(), 405);
    assert_eq!(
        err(&r.json().await.expect("json"))["type"],
        "invalid_request_error"
    );

    // 413: a body over `body_limit` (2048 bytes).
    let big = json!({"model": MODEL, "messages": [{"role": "user", "content": "x".repeat(4000)}]});
    let r = gw.post("/v1/chat/completions", Some(KEY_A), &big).await;
    assert_eq!(r.status(), 413);
    assert_eq!(
        err(&r.json().await.expect("json"))["code"],
        "request_too_large"
    );

    assert_eq!(
        stats(&mock).await["requests_total"],
        0,
        "nothing reached the upstream"
    );
}

#[tokio::test]
async fn a_request_that_can_never_fit_is_answered_at_once_and_never_sent() {
    let mock = mock(mock_config(10_000)).await;
    let limiter = "[[limiter]]\nname = \"tuned\"\nstrategy = \"token_bucket\"\nlimits = { rpm = 100, tpm = 500 }\n";
    let gw = gateway(&config(&mock, "", limiter)).await;
    let r = gw
        .post("/v1/chat/completions", Some(KEY_A), &chat(1000))
        .await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["x-should-retry"], "false");
    assert!(r.headers().get("retry-after").is_none());
    let e: Value = r.json().await.expect("json");
    assert_eq!(e["error"]["type"], "tokens");
    assert!(e["error"]["message"]
        .as_str()
        .is_some_and(|m| m.starts_with("Request too large for gpt-4o-mini")));
    assert_eq!(stats(&mock).await["requests_total"], 0);
    let pair = gw.state.metrics.pair("a", "oai");
    assert_eq!(pair.refused.values().sum::<u64>(), 1);
}

#[tokio::test]
async fn an_upstream_429_is_retried_after_its_retry_after_by_the_lifecycle() {
    // 30 RPM: a bucket of 30, one more every 2 s. Spend it directly until the mock
    // refuses; then a request through the gateway meets a 429 (retry-after <= 2 s, within
    // its 5-s max wait) and is retried once the bucket refilled.
    let mock = mock(mock_config(30)).await;
    let gw = gateway(&config(&mock, "", "")).await;
    let direct = reqwest::Client::new();
    let mut refused = false;
    for _ in 0..200 {
        let r = direct
            .post(format!("{}/v1/chat/completions", mock.base_url()))
            .bearer_auth("k")
            .json(&chat(1))
            .send()
            .await
            .expect("mock answers");
        if r.status() == 429 {
            refused = true;
            break;
        }
    }
    assert!(refused, "the mock's bucket was spent");
    let r = gw.post("/v1/chat/completions", Some(KEY_A), &chat(4)).await;
    assert_eq!(r.status(), 200);
    let st = stats(&mock).await;
    assert!(st["keys"][MOCK_KEY]["throttled"]["requests"].as_u64() >= Some(1));
    assert_eq!(gw.state.metrics.pair("a", "oai").upstream_429, 1);
}

#[tokio::test]
async fn streams_pass_through_with_the_gateways_usage_chunk_stripped_and_reconciled() {
    let mock = mock(mock_config(10_000)).await;
    let limiter = "[[limiter]]\nname = \"tuned\"\nstrategy = \"token_bucket\"\nlimits = { rpm = 100, tpm = 100000 }\n";
    let gw = gateway(&config(&mock, "", limiter)).await;
    let key = LimitKey::new("oai", MODEL);
    for asked in [false, true] {
        let mut body = chat(16);
        body["stream"] = json!(true);
        if asked {
            body["stream_options"] = json!({"include_usage": true});
        }
        let before = gw
            .state
            .limiter
            .usage_stats(&key)
            .await
            .expect("s")
            .tokens_charged;
        let used_before = stats(&mock).await["keys"][MOCK_KEY]["tokens_used"]
            .as_u64()
            .unwrap_or(0);
        let r = gw.post("/v1/chat/completions", Some(KEY_A), &body).await;
        assert_eq!(r.status(), 200);
        assert!(r.headers()["content-type"]
            .to_str()
            .is_ok_and(|c| c.starts_with("text/event-stream")));
        let text = r.text().await.expect("stream");
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
        let usage_chunks = text.matches("\"usage\":{").count();
        assert_eq!(usage_chunks, usize::from(asked), "asked = {asked}: {text}");
        // The usage is recorded before the client sees the body end.
        assert_eq!(gw.in_flight(&key).await, 0);
        let charged = gw
            .state
            .limiter
            .usage_stats(&key)
            .await
            .expect("s")
            .tokens_charged
            - before;
        let used = stats(&mock).await["keys"][MOCK_KEY]["tokens_used"]
            .as_u64()
            .unwrap_or(0)
            - used_before;
        assert!(used > 0);
        assert_eq!(
            charged, used,
            "asked = {asked}: reconciled with the upstream's usage chunk, not the estimate"
        );
    }
}

#[tokio::test]
async fn a_client_that_disconnects_mid_stream_frees_its_reservation() {
    let mut c = mock_config(10_000);
    // A slow stream: the client reads the first event and goes away.
    c.latency = LatencyConfig {
        zero: false,
        ttft_median: Duration::from_millis(1),
        ttft_p99: Duration::from_millis(2),
        per_token: Duration::from_millis(20),
        per_token_sigma: 0.0,
    };
    let mock = mock(c).await;
    let limiter = "[[limiter]]\nname = \"tuned\"\nstrategy = \"token_bucket\"\nlimits = { rpm = 100, tpm = 100000, concurrent = 4 }\n";
    let gw = gateway(&config(&mock, "", limiter)).await;
    let key = LimitKey::new("oai", MODEL);
    let mut body = chat(200);
    body["stream"] = json!(true);
    let r = gw.post("/v1/chat/completions", Some(KEY_A), &body).await;
    assert_eq!(r.status(), 200);
    let mut s = r.bytes_stream();
    let first = s.next().await.expect("a first event").expect("bytes");
    assert!(!first.is_empty());
    assert_eq!(
        gw.in_flight(&key).await,
        1,
        "the stream holds its reservation"
    );
    drop(s);
    // The gateway learns of the disconnect when the connection closes: wait for that
    // (bounded), not for a time.
    for _ in 0..400 {
        if gw.in_flight(&key).await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        gw.in_flight(&key).await,
        0,
        "dropped: the reservation came back"
    );
    let charged = gw
        .state
        .limiter
        .usage_stats(&key)
        .await
        .expect("s")
        .tokens_charged;
    assert!(
        charged < 200,
        "charged what was streamed ({charged}), not the estimate"
    );
}

#[tokio::test]
async fn shadow_mode_forwards_everything_and_records_what_it_would_have_delayed() {
    let mock = mock(mock_config(10_000)).await;
    let limiter = "[[limiter]]\nname = \"tuned\"\nstrategy = \"token_bucket\"\nlimits = { rpm = 2, tpm = 100000 }\n";
    let gw = gateway(&config(&mock, "mode = \"shadow\"", limiter)).await;
    for _ in 0..5 {
        let r = gw.post("/v1/chat/completions", Some(KEY_A), &chat(4)).await;
        assert_eq!(r.status(), 200);
    }
    let pair = gw.state.metrics.pair("a", "oai");
    assert_eq!(pair.admitted, 5);
    assert_eq!(
        pair.shadow_delayed, 3,
        "a 2-RPM limit would have delayed 3 of 5"
    );
    assert_eq!(stats(&mock).await["keys"][MOCK_KEY]["admitted"], 5);
    let text = reqwest::get(format!("{}/metrics", gw.base))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(text.contains("hub_gateway_shadow_delayed_total{tenant=\"a\",upstream=\"oai\"} 3"));
    assert!(!text.contains("sk-upstream-secret") && !text.contains(KEY_A));
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests_and_takes_no_new_ones() {
    let mut c = mock_config(10_000);
    c.latency = LatencyConfig {
        zero: false,
        ttft_median: Duration::from_millis(800),
        ttft_p99: Duration::from_millis(800),
        per_token: Duration::from_millis(1),
        per_token_sigma: 0.0,
    };
    let mock = mock(c).await;
    let text = config(&mock, "grace = \"5s\"", "");
    let config = GatewayConfig::from_str_with(&text, "gateway.toml", env).expect("valid");
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
    let limiter: Arc<dyn RateLimiter> =
        Arc::new(KeyedLimiter::new(config.limits.clone(), clock.clone()).expect("limiter"));
    let state = GatewayState::new(
        config,
        limiter,
        clock,
        Arc::new(HttpTransport::new().expect("client")),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(connector_hub::gateway::serve::serve(
        state.clone(),
        listener,
        async move {
            let _ = stopped.await;
        },
    ));
    let http = reqwest::Client::new();
    let ready = http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("answers");
    assert_eq!(ready.status(), 200);
    let slow = tokio::spawn({
        let (http, base) = (http.clone(), base.clone());
        async move {
            http.post(format!("{base}/v1/chat/completions"))
                .bearer_auth(KEY_A)
                .json(&chat(4))
                .send()
                .await
                .expect("answered")
                .status()
        }
    });
    // Wait until the request is in the gateway (bounded), then signal.
    for _ in 0..5000 {
        if state.metrics.in_flight() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(state.metrics.in_flight(), 1);
    stop.send(()).expect("serving");
    assert_eq!(
        slow.await.expect("task"),
        200,
        "the in-flight request finished"
    );
    assert!(
        server.await.expect("task").expect("served"),
        "drained within the grace period"
    );
    assert!(!state.accepting());
    assert!(
        reqwest::Client::new()
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_err(),
        "the listener is closed"
    );
}

#[tokio::test]
async fn readyz_reflects_the_redis_failure_policy() {
    let mock = mock(mock_config(10_000)).await;
    // A closed port: Redis is down.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    for (policy, ready) in [
        ("fail_closed", 503),
        ("fail_open", 200),
        ("local_fallback", 200),
    ] {
        let limits = format!(
            "[limits]\nbackend = \"redis\"\n[limits.redis]\nurl = \"redis://127.0.0.1:{port}\"\n\
             timeout = \"200ms\"\nfailure_policy = \"{policy}\"\n"
        );
        let text = format!("{}{limits}", config(&mock, "", ""));
        let config = GatewayConfig::from_str_with(&text, "gateway.toml", env).expect("valid");
        let state = GatewayState::from_config(config).expect("builds without connecting");
        let r = app(state.clone())
            .oneshot(
                axum::http::Request::get("/readyz")
                    .body(axum::body::Body::empty())
                    .expect("request"),
            )
            .await
            .expect("infallible");
        assert_eq!(r.status(), ready, "{policy}");
        let h = app(state)
            .oneshot(
                axum::http::Request::get("/healthz")
                    .body(axum::body::Body::empty())
                    .expect("request"),
            )
            .await
            .expect("infallible");
        assert_eq!(h.status(), 200, "{policy}: alive either way");
    }
}

/// An upstream that records the body it receives and answers a canned completion.
fn capturing_upstream(seen: Arc<std::sync::Mutex<Vec<Vec<u8>>>>) -> axum::Router {
    axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let seen = seen.clone();
            async move {
                seen.lock().expect("lock").push(body.to_vec());
                assert_eq!(headers["authorization"], "Bearer sk-upstream-secret");
                axum::Json(json!({"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}))
            }
        }),
    )
}

#[tokio::test]
async fn the_body_is_forwarded_byte_for_byte_with_include_usage_spliced_into_streams() {
    use connector_hub::gateway::upstream::RouterTransport;
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let text = r#"
[gateway]
[[gateway.tenant]]
name = "a"
key_env = "GW_A"
[[upstream]]
id = "oai"
kind = "openai"
url = "http://upstream.invalid/v1"
api_key_env = "UP_KEY"
models = ["gpt-4o-mini"]
"#;
    let config = GatewayConfig::from_str_with(text, "gateway.toml", env).expect("valid");
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
    let limiter: Arc<dyn RateLimiter> =
        Arc::new(KeyedLimiter::new(config.limits.clone(), clock.clone()).expect("limiter"));
    let transport = Arc::new(RouterTransport::new(capturing_upstream(seen.clone())));
    let router = app(GatewayState::new(config, limiter, clock, transport));
    // Fields the unified request does not know, odd spacing, a float that re-encoding
    // would change, keys out of order.
    let plain = "{ \"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],\"model\":\"gpt-4o-mini\",\n \"messages\":[{\"role\":\"user\",\"content\":\"hi\"}], \"temperature\":0.70000000000000001,\"x_vendor\":{\"a\":1} }";
    let streamed = plain.replace("\"x_vendor\"", "\"stream\":true,\"x_vendor\"");
    for body in [plain.to_owned(), streamed.clone()] {
        let r = router
            .clone()
            .oneshot(
                axum::http::Request::post("/v1/chat/completions")
                    .header("authorization", format!("Bearer {KEY_A}"))
                    .header("content-type", "application/json")
                    .body(axum::body::Body::from(body))
                    .expect("request"),
            )
            .await
            .expect("infallible");
        assert_eq!(r.status(), 200);
    }
    let seen = seen.lock().expect("lock");
    assert_eq!(String::from_utf8_lossy(&seen[0]), plain, "unchanged");
    // Spliced right before the closing brace; every other byte as sent.
    let close = streamed.rfind('}').expect("an object");
    let expected = format!(
        "{},\"stream_options\":{{\"include_usage\":true}}}}",
        &streamed[..close]
    );
    assert_eq!(
        String::from_utf8_lossy(&seen[1]),
        expected,
        "only include_usage added"
    );
}

#[tokio::test]
async fn a_5xx_is_retried_then_passed_on_and_a_stream_broken_upstream_is_charged_what_it_sent() {
    // Every request to gpt-4o-mini fails with a 500 after admission (charged by the mock).
    let mut c = mock_config(10_000);
    for m in c.models.iter_mut().filter(|m| m.id == MODEL) {
        m.faults.error_500 = 1.0;
    }
    let mock = mock(c).await;
    let limiter = "[[limiter]]\nname = \"tuned\"\nstrategy = \"token_bucket\"\nlimits = { rpm = 100, tpm = 100000 }\n\
                   [retry]\nmax_retries = 2\nbackoff = { base = \"5ms\", cap = \"10ms\" }\n";
    let gw = gateway(&config(&mock, "", limiter)).await;
    let r = gw
        .post("/v1/chat/completions", Some(KEY_A), &chat(16))
        .await;
    assert_eq!(r.status(), 500, "the last upstream answer, passed on");
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["type"], "server_error");
    let st = stats(&mock).await;
    assert_eq!(
        st["keys"][MOCK_KEY]["faults"]["error_500"], 3,
        "1 + 2 retries"
    );
    let key = LimitKey::new("oai", MODEL);
    let s = gw.state.limiter.usage_stats(&key).await.expect("stats");
    assert_eq!(s.admitted, 3);
    assert_eq!(s.in_flight, 0);
    let estimate = s.tokens_charged / 3;
    assert!(estimate >= 16, "each 5xx kept its estimate ({estimate})");

    // A stream the upstream drops half way: passed on as far as it went, not retried,
    // charged prompt + what was streamed.
    let mut c = mock_config(10_000);
    for m in c.models.iter_mut().filter(|m| m.id == MODEL) {
        m.faults.drop_mid_stream = 1.0;
    }
    let dropping = MockServer::start(c).await.expect("mock starts");
    let limiter = "[[limiter]]\nname = \"tuned\"\nstrategy = \"token_bucket\"\nlimits = { rpm = 100, tpm = 100000 }\n";
    let gw = gateway(&config(&dropping, "", limiter)).await;
    let mut body = chat(64);
    body["stream"] = json!(true);
    let r = gw.post("/v1/chat/completions", Some(KEY_A), &body).await;
    assert_eq!(r.status(), 200);
    let mut s = r.bytes_stream();
    let mut got = Vec::new();
    while let Some(Ok(b)) = s.next().await {
        got.extend_from_slice(&b);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(!text.contains("[DONE]"), "{text}");
    let st = stats(&dropping).await;
    assert_eq!(st["keys"][MOCK_KEY]["faults"]["dropped"], 1, "not retried");
    for _ in 0..200 {
        if gw.in_flight(&key).await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let s = gw.state.limiter.usage_stats(&key).await.expect("stats");
    assert_eq!(s.in_flight, 0);
    assert!(
        s.tokens_charged > 0 && s.tokens_charged < 64,
        "charged what was streamed ({}), not the estimate",
        s.tokens_charged
    );
}

#[tokio::test]
async fn an_upstream_that_does_not_answer_in_time_is_retried_then_a_502() {
    let mut c = mock_config(10_000);
    for m in c.models.iter_mut().filter(|m| m.id == MODEL) {
        m.faults.stall = 1.0;
        m.faults.stall_for = Duration::from_secs(30);
    }
    let stalling = MockServer::start(c).await.expect("mock starts");
    let limiter = "[[limiter]]\nname = \"tuned\"\nstrategy = \"token_bucket\"\nlimits = { rpm = 100, tpm = 100000 }\n\
                   [retry]\nmax_retries = 1\nbackoff = { base = \"5ms\", cap = \"10ms\" }\n";
    let text = config(&stalling, "", limiter).replacen(
        "models = [\"gpt-4o-mini\", \"text-embedding-3-small\"]",
        "models = [\"gpt-4o-mini\", \"text-embedding-3-small\"]\ntimeout = \"100ms\"",
        1,
    );
    let gw = gateway(&text).await;
    let r = gw
        .post("/v1/chat/completions", Some(KEY_A), &chat(16))
        .await;
    assert_eq!(r.status(), 502);
    let e: Value = r.json().await.expect("json");
    assert_eq!(e["error"]["type"], "server_error");
    let s = gw
        .state
        .limiter
        .usage_stats(&LimitKey::new("oai", MODEL))
        .await
        .expect("stats");
    assert_eq!(s.admitted, 2, "the first attempt and one retry");
    assert_eq!(s.in_flight, 0);
}
