//! The gateway's queue under tokio's paused time: a contended request waits its max
//! wait, then gets a 429 whose `retry-after-ms` is exact (a client that waits it is
//! admitted, one that comes 1 ms early is not), with `x-ratelimit-*` headers describing
//! the gateway's limit; and the weighted fair share between a flooding tenant and one
//! sending at its share. The gateway runs in process (`app` called as a service) in front
//! of the mock's in-process app, both on tokio's clock, so waits are exact and instant.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use connector_hub::clock::{Clock, TokioClock};
use connector_hub::gateway::admission::{Admission, Ask};
use connector_hub::gateway::upstream::RouterTransport;
use connector_hub::gateway::{app, GatewayConfig, GatewayState};
use connector_hub::limiter::{Cost, KeyedLimiter, LimitKey, LimiterConfig, RateLimiter};
use serde_json::{json, Value};
use tower::ServiceExt;

fn env(name: &str) -> Option<String> {
    match name {
        "GW_A" => Some("key-a".into()),
        "UP_KEY" => Some("sk-up".into()),
        _ => None,
    }
}

/// A gateway with a 2-RPM tuned limit on the mock's gpt-4o-mini, tenant `a` waiting at
/// most 1 s, over the mock's app on tokio's clock.
fn gateway() -> (axum::Router, Arc<GatewayState>) {
    let text = r#"
[gateway]
[[gateway.tenant]]
name = "a"
key_env = "GW_A"
max_wait = "1s"

[[upstream]]
id = "oai"
kind = "openai"
url = "http://mock.invalid/v1"
api_key_env = "UP_KEY"
models = ["gpt-4o-mini"]
limiter = "tuned"

[[limiter]]
name = "tuned"
strategy = "token_bucket"
limits = { rpm = 2, tpm = 100000 }
"#;
    let config = GatewayConfig::from_str_with(text, "gateway.toml", env).expect("valid");
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
    let limiter: Arc<dyn RateLimiter> =
        Arc::new(KeyedLimiter::new(config.limits.clone(), clock.clone()).expect("limiter"));
    let mock = mock_providers::MockState::with_clock(
        mock_providers::MockConfig::default(),
        Arc::new(mock_providers::clock::TokioClock::new()),
    )
    .expect("mock");
    let transport = Arc::new(RouterTransport::new(mock_providers::app(mock)));
    let state = GatewayState::new(config, limiter, clock, transport);
    (app(state.clone()), state)
}

async fn chat(router: &axum::Router, max_wait_ms: Option<u64>) -> axum::response::Response {
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4});
    let mut r = Request::post("/v1/chat/completions")
        .header("authorization", "Bearer key-a")
        .header("content-type", "application/json");
    if let Some(ms) = max_wait_ms {
        r = r.header("x-hub-max-wait-ms", ms.to_string());
    }
    router
        .clone()
        .oneshot(r.body(Body::from(body.to_string())).expect("request"))
        .await
        .expect("infallible")
}

#[tokio::test(start_paused = true)]
async fn a_contended_request_waits_its_max_wait_then_gets_the_exact_retry_after() {
    let (router, _state) = gateway();
    for _ in 0..2 {
        assert_eq!(chat(&router, None).await.status(), 200, "the burst of 2");
    }
    // The third waits the tenant's 1 s, then is told the exact wait: the bucket refills
    // one request per 30 s, so 29 s after the deadline.
    let start = tokio::time::Instant::now();
    let r = chat(&router, None).await;
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(1),
        "waited max_wait in the queue"
    );
    assert_eq!(r.status(), 429);
    let h = r.headers();
    assert_eq!(h["retry-after-ms"], "29000");
    assert_eq!(h["retry-after"], "29");
    assert_eq!(h["x-ratelimit-limit-requests"], "2");
    assert_eq!(h["x-ratelimit-remaining-requests"], "0");
    assert_eq!(h["x-ratelimit-reset-requests"], "59s");
    let body: Value = serde_json::from_slice(
        &axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .expect("body"),
    )
    .expect("json");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(body["error"]["type"], "requests");

    // 1 ms early, not waiting (the header lowers max_wait to 0): refused, 1 ms to go.
    tokio::time::advance(Duration::from_millis(28_999)).await;
    let r = chat(&router, Some(0)).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after-ms"], "1");
    // Having waited the advertised time: admitted at once.
    tokio::time::advance(Duration::from_millis(1)).await;
    let start = tokio::time::Instant::now();
    assert_eq!(chat(&router, Some(0)).await.status(), 200);
    assert_eq!(start.elapsed(), Duration::ZERO);

    // What /metrics says about it, per tenant and upstream, with no key in it.
    let r = router
        .clone()
        .oneshot(
            Request::get("/metrics")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible");
    let text = String::from_utf8(
        axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .expect("body")
            .to_vec(),
    )
    .expect("utf8");
    let labels = "tenant=\"a\",upstream=\"oai\"";
    for line in [
        format!("hub_gateway_admitted_total{{{labels}}} 3"),
        format!(
            "hub_gateway_refused_total{{{labels},reason=\"timeout:requests per minute (RPM)\"}} 2"
        ),
        format!("hub_gateway_wait_seconds_count{{{labels}}} 3"),
        format!("hub_gateway_upstream_429_total{{{labels}}} 0"),
        "hub_gateway_in_flight 0".to_owned(),
    ] {
        assert!(text.contains(&line), "{line} not in\n{text}");
    }
    let reserved = metric(
        &text,
        &format!("hub_gateway_tokens_reserved_total{{{labels}}}"),
    );
    let used = metric(&text, &format!("hub_gateway_tokens_used_total{{{labels}}}"));
    assert!(
        used > 0 && used <= reserved,
        "used {used} of {reserved} reserved"
    );
    assert!(!text.contains("key-a") && !text.contains("sk-up"));
}

fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{series} not in\n{text}"))
}

/// One tenant's arrivals: `count` requests of `tokens`, every `every`.
struct Load {
    tenant: &'static str,
    weight: u32,
    count: u32,
    every: Duration,
}

#[tokio::test(start_paused = true)]
async fn a_flooding_tenant_cannot_take_a_tenant_at_its_share_below_its_share() {
    // The upstream admits 1000 tokens per second (60 000 TPM, a bucket of 3 000); every
    // request costs 1 000. Weights 1 : 2, so B's share is 2/3 of a request per second;
    // A sends 10 times its share (10/3 per second), B exactly its share.
    const TOKENS: u64 = 1_000;
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
    let limits = LimiterConfig::from_toml(
        "[[key]]\nprovider = \"up\"\nlimit = { limits = { tpm = 60000 }, burst = 0.05 }\n",
    )
    .expect("valid");
    let limiter: Arc<dyn RateLimiter> =
        Arc::new(KeyedLimiter::new(limits, clock.clone()).expect("limiter"));
    let admission = Admission::new(limiter, clock.clone(), 1024);
    let max_wait = Duration::from_secs(10);
    let loads = [
        Load {
            tenant: "a",
            weight: 1,
            count: 500,
            every: Duration::from_millis(300),
        },
        Load {
            tenant: "b",
            weight: 2,
            count: 100,
            every: Duration::from_millis(1_500),
        },
    ];
    let start = clock.now();
    let mut tasks = Vec::new();
    for load in &loads {
        for i in 0..load.count {
            let admission = admission.clone();
            let clock = clock.clone();
            let (tenant, weight, every) = (load.tenant, load.weight, load.every);
            tasks.push(tokio::spawn(async move {
                let at = start + (every * i).as_nanos() as u64;
                clock.sleep_until(at).await;
                let ask = Ask {
                    upstream: LimitKey::new("up", "m"),
                    tenant_key: None,
                    tenant: tenant.into(),
                    weight,
                    cost: Cost::request(TOKENS),
                    deadline: at + max_wait.as_nanos() as u64,
                };
                let result = admission.admit(ask).await;
                let waited = Duration::from_nanos(clock.now() - at);
                // The permit is dropped: the charge is kept, as for a served request.
                (tenant, result.is_ok(), waited)
            }));
        }
    }
    let mut b_admitted = 0;
    let mut a_admitted = 0;
    let mut b_waits = Vec::new();
    for t in tasks {
        let (tenant, ok, waited) = t.await.expect("task");
        match (tenant, ok) {
            ("b", true) => {
                b_admitted += 1;
                b_waits.push(waited);
            }
            ("a", true) => a_admitted += 1,
            _ => {}
        }
    }
    b_waits.sort();
    let p99 = b_waits[(b_waits.len() * 99).div_ceil(100) - 1];
    assert!(
        b_admitted >= 90,
        "B got {b_admitted} of its 100 (A got {a_admitted})"
    );
    assert!(p99 < max_wait, "B's p99 wait {p99:?}");
    // The quota was the bottleneck and was not exceeded: at most the bucket plus 1 per
    // second over the 150 s of arrivals and the last 10 s of waiting.
    let total = a_admitted + b_admitted;
    assert!(total <= 3 + 160, "{total} admitted");
    assert!(a_admitted >= 30, "A still got the rest ({a_admitted})");
}

#[tokio::test(start_paused = true)]
async fn a_tenants_own_limit_refuses_without_charging_the_upstream() {
    // Tenant `a` may send 1 request per minute of its own; the upstream allows 2.
    let text = r#"
[gateway]
[[gateway.tenant]]
name = "a"
key_env = "GW_A"
max_wait = "1s"
limit = { limits = { rpm = 1 } }

[[upstream]]
id = "oai"
kind = "openai"
url = "http://mock.invalid/v1"
api_key_env = "UP_KEY"
models = ["gpt-4o-mini"]
limiter = "tuned"

[[limiter]]
name = "tuned"
strategy = "token_bucket"
limits = { rpm = 2, tpm = 100000 }
"#;
    let config = GatewayConfig::from_str_with(text, "gateway.toml", env).expect("valid");
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
    let limiter: Arc<dyn RateLimiter> =
        Arc::new(KeyedLimiter::new(config.limits.clone(), clock.clone()).expect("limiter"));
    let mock = mock_providers::MockState::with_clock(
        mock_providers::MockConfig::default(),
        Arc::new(mock_providers::clock::TokioClock::new()),
    )
    .expect("mock");
    let transport = Arc::new(RouterTransport::new(mock_providers::app(mock)));
    let state = GatewayState::new(config, limiter.clone(), clock, transport);
    let router = app(state.clone());
    assert_eq!(chat(&router, None).await.status(), 200);
    let r = chat(&router, None).await;
    assert_eq!(r.status(), 429, "the tenant's limit refuses");
    // The tenant's bucket refills one request per 60 s; 1 s was spent waiting.
    assert_eq!(r.headers()["retry-after-ms"], "59000");
    assert_eq!(
        r.headers()["x-ratelimit-limit-requests"],
        "1",
        "the headers describe the limit that refused: the tenant's"
    );
    let up = limiter
        .usage_stats(&LimitKey::new("oai", "gpt-4o-mini"))
        .await
        .expect("stats");
    assert_eq!(
        up.admitted, 1,
        "the refused request reserved nothing upstream"
    );
    assert_eq!(up.requests_remaining(), Some(1));
    assert_eq!(up.in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn of_several_upstreams_serving_a_model_the_one_with_most_headroom_gets_the_request() {
    let text = r#"
[gateway]
[[gateway.tenant]]
name = "a"
key_env = "GW_A"
max_wait = "1s"

[[upstream]]
id = "one"
kind = "openai"
url = "http://mock.invalid/v1"
api_key_env = "UP_KEY"
models = ["gpt-4o-mini"]
limiter = "one-per-minute"

[[upstream]]
id = "two"
kind = "openai"
url = "http://mock.invalid/v1"
api_key_env = "UP_KEY"
models = ["gpt-4o-mini"]
limiter = "one-per-minute"

[[limiter]]
name = "one-per-minute"
strategy = "token_bucket"
limits = { rpm = 1 }
"#;
    let config = GatewayConfig::from_str_with(text, "gateway.toml", env).expect("valid");
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
    let limiter: Arc<dyn RateLimiter> =
        Arc::new(KeyedLimiter::new(config.limits.clone(), clock.clone()).expect("limiter"));
    let mock = mock_providers::MockState::with_clock(
        mock_providers::MockConfig::default(),
        Arc::new(mock_providers::clock::TokioClock::new()),
    )
    .expect("mock");
    let transport = Arc::new(RouterTransport::new(mock_providers::app(mock)));
    let state = GatewayState::new(config, limiter, clock, transport);
    let router = app(state.clone());
    assert_eq!(chat(&router, None).await.status(), 200);
    assert_eq!(
        chat(&router, None).await.status(),
        200,
        "the other upstream"
    );
    assert_eq!(chat(&router, None).await.status(), 429, "both spent");
    assert_eq!(state.metrics.pair("a", "one").admitted, 1);
    assert_eq!(state.metrics.pair("a", "two").admitted, 1);
}

#[tokio::test(start_paused = true)]
async fn a_tenant_waiting_for_its_own_limit_does_not_hold_the_others_back() {
    // Tenant `a` may send 1 request per minute of its own; `b` has no limit of its own;
    // the upstream has room for both.
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
    let limits = LimiterConfig::from_toml(
        "[[key]]\nprovider = \"up\"\nlimit = { limits = { rpm = 100 } }\n\
         [[key]]\nprovider = \"tenant\"\ndeployment = \"a\"\nlimit = { limits = { rpm = 1 } }\n",
    )
    .expect("valid");
    let limiter: Arc<dyn RateLimiter> =
        Arc::new(KeyedLimiter::new(limits, clock.clone()).expect("limiter"));
    let admission = Admission::new(limiter, clock.clone(), 1024);
    let ask = |tenant: &str, limited: bool| Ask {
        upstream: LimitKey::new("up", "m"),
        tenant_key: limited.then(|| LimitKey::new("tenant", "*").with_deployment(tenant)),
        tenant: tenant.into(),
        weight: 1,
        cost: Cost::request(10),
        deadline: clock.now() + Duration::from_secs(120).as_nanos() as u64,
    };
    let first = admission.admit(ask("a", true)).await.expect("a's first");
    drop(first);
    // a's second waits ~60 s for a's own limit, in the lane's queue.
    let waiting = tokio::spawn({
        let (admission, a2) = (admission.clone(), ask("a", true));
        async move { admission.admit(a2).await.map(|t| t.waited) }
    });
    tokio::task::yield_now().await;
    assert_eq!(admission.waiting(&LimitKey::new("up", "m")), 1);
    let start = tokio::time::Instant::now();
    let b = admission
        .admit(ask("b", false))
        .await
        .expect("b is admitted");
    assert_eq!(start.elapsed(), Duration::ZERO, "b did not wait behind a");
    drop(b);
    let waited = waiting.await.expect("task").expect("a's second, in time");
    assert_eq!(
        waited,
        Duration::from_secs(60),
        "a waited exactly for its own limit"
    );
}
