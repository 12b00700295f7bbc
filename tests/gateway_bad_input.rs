//! Bad input, thousands of times: random and mutated bodies, headers, paths and methods
//! sent to the in-process gateway (in front of the mock's in-process app). The gateway
//! never panics, answers every request with a status it documents (errors in the called
//! API's JSON shape), keeps serving, and leaks no reservation: after the run nothing is
//! in flight, in the limiter or in the gateway. `PROPTEST_CASES` sets the count
//! (default 2000).

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use connector_hub::clock::{Clock, TokioClock};
use connector_hub::gateway::upstream::RouterTransport;
use connector_hub::gateway::{app, GatewayConfig, GatewayState};
use connector_hub::limiter::{KeyedLimiter, LimitKey, RateLimiter};
use futures::StreamExt;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};
use tower::ServiceExt;

fn env(name: &str) -> Option<String> {
    match name {
        "GW_A" => Some("key-a".into()),
        "UP_KEY" => Some("sk-up".into()),
        _ => None,
    }
}

fn gateway() -> (axum::Router, Arc<GatewayState>) {
    let text = r#"
[gateway]
body_limit = 4096
[[gateway.tenant]]
name = "a"
key_env = "GW_A"
max_wait = "50ms"
limit = { limits = { tpm = 2000000, concurrent = 6 } }

[[upstream]]
id = "oai"
kind = "openai"
url = "http://mock.invalid/v1"
api_key_env = "UP_KEY"
models = ["gpt-4o-mini", "text-embedding-3-small"]
limiter = "tuned"

[[upstream]]
id = "az"
kind = "azure"
url = "http://mock.invalid"
api_key_env = "UP_KEY"
models = ["gpt-4o-mini"]

[[limiter]]
name = "tuned"
strategy = "token_bucket"
limits = { rpm = 100000, tpm = 5000000, concurrent = 4 }
"#;
    let config = GatewayConfig::from_str_with(text, "gateway.toml", env).expect("valid");
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
    let limiter: Arc<dyn RateLimiter> =
        Arc::new(KeyedLimiter::new(config.limits.clone(), clock.clone()).expect("limiter"));
    let mock = mock_providers::MockState::new(mock_providers::MockConfig::default()).expect("mock");
    let transport = Arc::new(RouterTransport::new(mock_providers::app(mock)));
    let state = GatewayState::new(config, limiter, clock, transport);
    (app(state.clone()), state)
}

const PATHS: &[&str] = &[
    "/v1/chat/completions",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21",
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/models",
    "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21",
    "/openai/deployments/gpt-4o-mini/embeddings?api-version=2024-10-21",
    "/openai/deployments/gpt-4o-mini/completions",
    "/openai/deployments/nope/chat/completions?api-version=x",
    "/v1/nothing",
    "/",
    "/metrics",
    "/healthz",
];

fn seeds() -> Vec<Value> {
    vec![
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}),
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "stream": true}),
        json!({"model": "gpt-4o-mini", "messages": [{"role": "system", "content": [{"type": "text", "text": "x"}]}, {"role": "user", "content": "y", "name": "n"}], "n": 2, "stream": true, "stream_options": {"include_usage": true}}),
        json!({"model": "gpt-4o-mini", "prompt": ["a", "b"], "max_tokens": 3}),
        json!({"model": "text-embedding-3-small", "input": ["a", [1, 2, 3]]}),
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4000000000u64}),
    ]
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|x| json!(x)),
        "[ -~]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const FIELDS: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "n",
    "stream",
    "stream_options",
    "prompt",
    "input",
];

/// A seed body with a field replaced by any JSON value, or removed.
fn mutated() -> BoxedStrategy<Vec<u8>> {
    let seed = (0..seeds().len()).prop_map(|i| seeds()[i].clone());
    (
        seed,
        prop::sample::select(FIELDS),
        prop::option::of(any_json()),
    )
        .prop_map(|(mut v, field, value)| {
            if let Value::Object(o) = &mut v {
                match value {
                    Some(x) => {
                        o.insert(field.to_owned(), x);
                    }
                    None => {
                        o.remove(field);
                    }
                }
            }
            serde_json::to_vec(&v).expect("json")
        })
        .boxed()
}

/// A body: a seed mutated (a field replaced or removed), bytes cut or flipped, or noise.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => mutated(),
        1 => (mutated(), any::<prop::sample::Index>()).prop_map(|(b, i)| {
            let cut = i.index(b.len() + 1);
            b[..cut].to_vec()
        }),
        1 => (mutated(), any::<prop::sample::Index>(), any::<u8>()).prop_map(|(mut b, i, x)| {
            if !b.is_empty() {
                let at = i.index(b.len());
                b[at] = x;
            }
            b
        }),
        1 => prop::collection::vec(any::<u8>(), 0..64),
        1 => (1usize..3).prop_map(|k| {
            let big = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x".repeat(3000 * k)}]});
            serde_json::to_vec(&big).expect("json")
        }),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    method: &'static str,
    path: &'static str,
    auth: Option<String>,
    max_wait: Option<String>,
    content_type: bool,
    body: Vec<u8>,
    /// Read this many body chunks before dropping the response (streams cut short).
    read_chunks: usize,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop_oneof![8 => Just("POST"), 1 => Just("GET"), 1 => prop::sample::select(&["PUT", "DELETE", "PATCH"][..])],
        prop::sample::select(PATHS),
        prop_oneof![
            3 => Just(Some("Bearer key-a".to_owned())),
            1 => Just(Some("api-key:key-a".to_owned())),
            1 => Just(None),
            1 => "[ -~]{0,20}".prop_map(Some),
        ],
        prop::option::of(prop_oneof!["[0-9]{1,4}", "[ -~]{0,6}"]),
        any::<bool>(),
        body(),
        0usize..4,
    )
        .prop_map(|(method, path, auth, max_wait, content_type, body, read_chunks)| Case {
            method,
            path,
            auth,
            max_wait,
            content_type,
            body,
            read_chunks,
        })
}

async fn send(router: &axum::Router, c: &Case) -> (u16, Option<Value>) {
    let mut r = Request::builder().method(c.method).uri(c.path);
    match c.auth.as_deref() {
        Some(a) if a.starts_with("api-key:") => r = r.header("api-key", &a["api-key:".len()..]),
        Some(a) => {
            if let Ok(v) = axum::http::HeaderValue::from_str(a) {
                r = r.header("authorization", v);
            }
        }
        None => {}
    }
    if let Some(w) = &c.max_wait {
        if let Ok(v) = axum::http::HeaderValue::from_str(w) {
            r = r.header("x-hub-max-wait-ms", v);
        }
    }
    if c.content_type {
        r = r.header("content-type", "application/json");
    }
    let req = r.body(Body::from(c.body.clone())).expect("request");
    let res = router.clone().oneshot(req).await.expect("infallible");
    let status = res.status().as_u16();
    let sse = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/event-stream"));
    if sse {
        let mut s = res.into_body().into_data_stream();
        for _ in 0..c.read_chunks {
            if s.next().await.is_none() {
                break;
            }
        }
        return (status, None); // dropped, perhaps mid-stream
    }
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .expect("body");
    (status, serde_json::from_slice(&bytes).ok())
}

#[test]
fn random_and_mutated_requests_never_panic_or_leak_a_reservation() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (router, state) = rt.block_on(async { gateway() });
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let seen = std::sync::Mutex::new(std::collections::BTreeMap::<u16, u32>::new());
    let result = runner.run(&case(), |c| {
        let (status, body) = rt.block_on(send(&router, &c));
        *seen.lock().expect("lock").entry(status).or_default() += 1;
        let documented = [200, 400, 401, 404, 405, 413, 429, 503];
        prop_assert!(documented.contains(&status), "{c:?} → {status}");
        if status >= 400 {
            prop_assert!(body.is_some(), "{c:?} → {status} without a JSON body");
            let body = body.unwrap_or_default();
            prop_assert!(body["error"]["message"].is_string(), "{c:?} → {body}");
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let seen = seen.into_inner().expect("lock");
    eprintln!("statuses: {seen:?}");
    if cases >= 1000 {
        for status in [200, 400, 401, 404, 405, 413] {
            assert!(seen.contains_key(&status), "no {status} among {seen:?}");
        }
    }
    // Streams dropped mid-way finish their records on the runtime; let them run.
    rt.block_on(async {
        for _ in 0..1000 {
            if state.metrics.in_flight() == 0 {
                break;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    });
    assert_eq!(state.metrics.in_flight(), 0, "every request ended");
    let limiter = state.limiter.clone();
    let keys = [
        LimitKey::new("oai", "gpt-4o-mini"),
        LimitKey::new("oai", "text-embedding-3-small"),
        state.config.tenants[0].limit_key(),
    ];
    rt.block_on(async {
        for k in &keys {
            let s = limiter.usage_stats(k).await.expect("stats");
            assert_eq!(s.in_flight, 0, "{k}: no reservation leaked");
        }
    });
    // And it still serves.
    let ok = rt.block_on(send(
        &router,
        &Case {
            method: "POST",
            path: "/v1/chat/completions",
            auth: Some("Bearer key-a".into()),
            max_wait: None,
            content_type: true,
            body: serde_json::to_vec(&seeds()[0]).expect("json"),
            read_chunks: 0,
        },
    ));
    assert_eq!(ok.0, 200);
}
