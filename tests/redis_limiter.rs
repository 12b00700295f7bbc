//! The Redis limiter's contract against a real, private redis-server: admission and exact
//! denials, all-or-nothing dimensions, reconciliation, shared pauses, server-reported
//! remaining counts, leases, NOSCRIPT reload, key prefix and expiry, and client clock skew.

#[path = "support/redis_server.rs"]
mod redis_server;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use connector_hub::clock::{Clock, ManualClock, SystemClock};
use connector_hub::limiter::redis::{RedisLimiter, RedisSettings};
use connector_hub::limiter::{
    Cost, Denial, ErrorInfo, LimitError, LimitKey, LimiterConfig, RateLimitType, RateLimiter,
    ResponseMeta,
};
use redis_server::RedisServer;

static PREFIX: AtomicUsize = AtomicUsize::new(0);

fn config(limit: &str) -> LimiterConfig {
    LimiterConfig::from_toml(&format!("[default]\n{limit}")).expect("valid test config")
}

fn settings(server: &RedisServer) -> RedisSettings {
    RedisSettings::new(server.url())
        .with_key_prefix(format!("t{}", PREFIX.fetch_add(1, Ordering::Relaxed)))
}

async fn limiter_with(
    server: &RedisServer,
    limit: &str,
    settings: RedisSettings,
    clock: Arc<dyn Clock>,
) -> RedisLimiter {
    let _ = server;
    RedisLimiter::connect(config(limit), settings, clock)
        .await
        .expect("connects to the test server")
}

async fn limiter(server: &RedisServer, limit: &str) -> RedisLimiter {
    limiter_with(
        server,
        limit,
        settings(server),
        Arc::new(SystemClock::new()),
    )
    .await
}

fn key() -> LimitKey {
    LimitKey::new("openai", "gpt-4o-mini")
}

async fn redis_cmd(server: &RedisServer, args: &[&str]) -> redis::Value {
    let client = redis::Client::open(server.url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query_async(&mut con).await.unwrap()
}

async fn redis_now_us(server: &RedisServer) -> i64 {
    let t: Vec<i64> = redis::from_redis_value(&redis_cmd(server, &["TIME"]).await).unwrap();
    t[0] * 1_000_000 + t[1]
}

#[tokio::test]
async fn admits_the_capacity_then_denies_with_the_refusing_dimension() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let l = limiter(&server, "limits = { rpm = 5, tpm = 1000 }").await;
    for _ in 0..5 {
        l.try_acquire(&key(), Cost::request(10))
            .await
            .expect("within rpm");
    }
    let d = l.try_acquire(&key(), Cost::request(10)).await.unwrap_err();
    let Denial::Wait {
        dimension,
        retry_after,
    } = d
    else {
        panic!("{d:?}")
    };
    assert_eq!(dimension, RateLimitType::RequestsPerMinute);
    // One request refills in 12 s; a few ms have passed since the bucket was full.
    assert!(
        retry_after <= Duration::from_secs(12) && retry_after > Duration::from_secs(11),
        "{retry_after:?}"
    );
    let stats = l.usage_stats(&key()).await.unwrap();
    assert_eq!(
        (stats.admitted, stats.denied, stats.tokens_charged),
        (5, 1, 50)
    );
    assert_eq!(stats.requests_remaining(), Some(0));
}

#[tokio::test]
async fn a_refused_dimension_charges_no_other_dimension() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let l = limiter(&server, "limits = { rpm = 10, tpm = 100 }").await;
    let _p = l.try_acquire(&key(), Cost::request(60)).await.unwrap();
    let d = l.try_acquire(&key(), Cost::request(60)).await.unwrap_err();
    assert_eq!(d.dimension(), Some(RateLimitType::TokensPerMinute));
    let stats = l.usage_stats(&key()).await.unwrap();
    assert_eq!(
        stats.requests_remaining(),
        Some(9),
        "the refused request took no rpm"
    );
    let _q = l.try_acquire(&key(), Cost::request(40)).await.unwrap();
    let stats = l.usage_stats(&key()).await.unwrap();
    assert_eq!(stats.requests_remaining(), Some(8));
}

#[tokio::test]
async fn a_cost_beyond_capacity_is_refused_without_calling_redis() {
    let Some(mut server) = RedisServer::start_or_skip() else {
        return;
    };
    let l = limiter(&server, "limits = { tpm = 1000 }\nburst = 0.5").await;
    server.kill();
    let d = l.try_acquire(&key(), Cost::request(501)).await.unwrap_err();
    assert_eq!(
        d,
        Denial::Exceeds {
            dimension: RateLimitType::TokensPerMinute,
            cost: 501,
            capacity: 500
        }
    );
    let e = l.acquire(&key(), Cost::request(501)).await.unwrap_err();
    assert!(
        matches!(e, LimitError::Exceeds { capacity: 500, .. }),
        "{e}"
    );
}

#[tokio::test]
async fn a_pause_is_honoured_by_every_limiter_on_the_server() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let s = settings(&server);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
    let a = limiter_with(&server, "limits = { rpm = 100 }", s.clone(), clock.clone()).await;
    let b = limiter_with(&server, "limits = { rpm = 100 }", s, clock).await;
    let p = a.try_acquire(&key(), Cost::request(1)).await.unwrap();
    let meta = ResponseMeta {
        status: Some(429),
        retry_after: Some(Duration::from_secs(30)),
        ..Default::default()
    };
    let rec = a.record_usage(p, Cost::request(1), &meta).await.unwrap();
    assert_eq!(rec.paused_for, Some(Duration::from_secs(30)));
    let d = b.try_acquire(&key(), Cost::request(1)).await.unwrap_err();
    let Denial::Paused { retry_after } = d else {
        panic!("{d:?}")
    };
    assert!(retry_after > Duration::from_secs(29) && retry_after <= Duration::from_secs(30));
    // A 429 through backoff_delay extends (never shortens) the shared pause.
    let delay = b
        .backoff_delay(
            &key(),
            1,
            &ErrorInfo::rate_limited(Some(Duration::from_secs(60))),
        )
        .await;
    assert_eq!(delay, Some(Duration::from_secs(60)));
    let stats = a.usage_stats(&key()).await.unwrap();
    let paused = stats.paused_for.expect("paused");
    assert!(paused > Duration::from_secs(59), "{paused:?}");
    // A reset lifts it.
    a.reset(&key()).await.unwrap();
    b.try_acquire(&key(), Cost::request(1))
        .await
        .expect("reset clears the pause");
}

#[tokio::test]
async fn usage_is_reconciled_per_accounting() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    for (strategy, accounting, actual, expected) in [
        ("token_bucket", "actual", 100, 900),
        ("token_bucket", "actual", 700, 300),
        ("token_bucket", "estimate", 100, 400),
        ("gcra", "actual", 100, 900),
        ("sliding_log", "actual", 100, 900),
        ("sliding_log", "actual", 700, 300),
        ("sliding_counter", "actual", 100, 900),
        ("sliding_counter", "estimate", 100, 400),
    ] {
        let limit = format!(
            "strategy = \"{strategy}\"\naccounting = \"{accounting}\"\nlimits = {{ tokens = \"1000/1h\" }}"
        );
        let l = limiter(&server, &limit).await;
        let p = l.try_acquire(&key(), Cost::request(600)).await.unwrap();
        let rec = l
            .record_usage(p, Cost::request(actual), &ResponseMeta::default())
            .await
            .unwrap();
        let remaining = l
            .usage_stats(&key())
            .await
            .unwrap()
            .tokens_remaining()
            .unwrap();
        // 1000 tokens per hour refill 0.28 per second: at most one more within the test.
        assert!(
            (expected..=expected + 1).contains(&remaining),
            "{strategy}/{accounting} actual {actual}: remaining {remaining}, record {rec:?}"
        );
        let charged = l.usage_stats(&key()).await.unwrap().tokens_charged;
        let want = if accounting == "actual" { actual } else { 600 };
        assert_eq!(charged, want, "{strategy}/{accounting}");
    }
}

#[tokio::test]
async fn give_back_refunds_the_whole_charge_whatever_the_accounting() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    for (strategy, accounting) in [
        ("token_bucket", "estimate"),
        ("sliding_log", "estimate"),
        ("sliding_counter", "actual"),
    ] {
        let limit = format!(
            "strategy = \"{strategy}\"\naccounting = \"{accounting}\"\nlimits = {{ tokens = \"1000/1h\", requests = \"10/1h\", concurrent = 1 }}"
        );
        let l = limiter(&server, &limit).await;
        let p = l.try_acquire(&key(), Cost::request(600)).await.unwrap();
        l.give_back(p).await.unwrap();
        let s = l.usage_stats(&key()).await.unwrap();
        assert!(
            s.tokens_remaining().unwrap() >= 1000,
            "{strategy}/{accounting}: {s:?}"
        );
        assert_eq!(s.requests_remaining(), Some(10), "{strategy}/{accounting}");
        assert_eq!(s.tokens_charged, 0, "{strategy}/{accounting}");
        let again = l.try_acquire(&key(), Cost::request(1000)).await;
        assert!(
            again.is_ok(),
            "{strategy}/{accounting}: the slot and tokens are back: {again:?}"
        );
    }
}

#[tokio::test]
async fn update_usage_charges_after_the_fact() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let l = limiter(&server, "limits = { tokens = \"1000/1h\" }").await;
    l.update_usage("openai", 250).await.unwrap();
    let stats = l.get_usage("openai").await.unwrap();
    assert!(
        (750..=751).contains(&stats.tokens_remaining().unwrap()),
        "{stats:?}"
    );
}

#[tokio::test]
async fn a_lower_server_remaining_lowers_the_local_view_never_raises_it() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    for strategy in ["token_bucket", "gcra", "sliding_log", "sliding_counter"] {
        let l = limiter(&server, &format!("strategy = \"{strategy}\"\nlimits = {{ requests = \"100/1h\", tokens = \"10000/1h\" }}")).await;
        let p = l.try_acquire(&key(), Cost::request(10)).await.unwrap();
        let meta = ResponseMeta {
            remaining_requests: Some(3),
            remaining_tokens: Some(20_000),
            ..Default::default()
        };
        l.record_usage(p, Cost::request(10), &meta).await.unwrap();
        let stats = l.usage_stats(&key()).await.unwrap();
        assert_eq!(stats.requests_remaining(), Some(3), "{strategy}");
        assert_eq!(
            stats.tokens_remaining(),
            Some(9990),
            "{strategy}: a higher report changes nothing"
        );
        for _ in 0..3 {
            l.try_acquire(&key(), Cost::request(1)).await.unwrap();
        }
        let d = l.try_acquire(&key(), Cost::request(1)).await.unwrap_err();
        assert_eq!(
            d.dimension(),
            Some(RateLimitType::RequestsPer(Duration::from_secs(3600)))
        );
    }
}

#[tokio::test]
async fn the_script_is_reloaded_after_noscript() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    // As a function library (FCALL) and as a script (EVALSHA): the server forgets both.
    for functions in [true, false] {
        let mut s = settings(&server);
        s.functions = functions;
        let l = limiter_with(
            &server,
            "limits = { rpm = 100 }",
            s,
            Arc::new(SystemClock::new()),
        )
        .await;
        assert_eq!(
            l.uses_functions(),
            functions,
            "redis-server >= 7 has functions"
        );
        l.try_acquire(&key(), Cost::request(1)).await.unwrap();
        let flush = if functions { "FUNCTION" } else { "SCRIPT" };
        assert_eq!(
            redis_cmd(&server, &[flush, "FLUSH"]).await,
            redis::Value::Okay
        );
        l.try_acquire(&key(), Cost::request(1))
            .await
            .expect("reloaded, then admitted");
        assert_eq!(l.script_reloads(), 1, "functions: {functions}");
        assert_eq!(l.usage_stats(&key()).await.unwrap().admitted, 2);
    }
}

#[tokio::test]
async fn scripts_and_functions_share_one_state() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let s = settings(&server);
    let mut via_script = s.clone();
    via_script.functions = false;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
    let f = limiter_with(&server, "limits = { rpm = 3 }", s, clock.clone()).await;
    let e = limiter_with(&server, "limits = { rpm = 3 }", via_script, clock).await;
    assert!(f.uses_functions() && !e.uses_functions());
    for l in [&f, &e, &f] {
        l.try_acquire(&key(), Cost::request(1)).await.unwrap();
    }
    assert!(matches!(
        e.try_acquire(&key(), Cost::request(1)).await,
        Err(Denial::Wait { .. })
    ));
    assert_eq!(f.usage_stats(&key()).await.unwrap().admitted, 3);
    assert_eq!(e.usage_stats(&key()).await.unwrap().denied, 1);
}

#[tokio::test]
async fn a_key_of_an_older_layout_is_replaced() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let s = settings(&server);
    let state = format!("{}:{{openai/gpt-4o-mini}}", s.key_prefix);
    // The previous version kept a hash here.
    redis_cmd(&server, &["HSET", &state, "adm", "7"]).await;
    let l = limiter_with(
        &server,
        "limits = { rpm = 2 }",
        s,
        Arc::new(SystemClock::new()),
    )
    .await;
    l.try_acquire(&key(), Cost::request(1)).await.unwrap();
    assert_eq!(l.usage_stats(&key()).await.unwrap().admitted, 1);
    assert_eq!(
        redis_cmd(&server, &["TYPE", &state]).await,
        redis::Value::SimpleString("string".into())
    );
}

#[tokio::test]
async fn keys_carry_the_prefix_and_expire_when_idle() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let mut s = settings(&server).with_key_prefix("myapp:limits");
    s.idle_ttl = Duration::from_millis(300);
    let l = limiter_with(
        &server,
        "strategy = \"sliding_log\"\nlimits = { rps = 5 }",
        s,
        Arc::new(SystemClock::new()),
    )
    .await;
    l.try_acquire(&key(), Cost::request(1)).await.unwrap();
    let redis::Value::Array(keys) = redis_cmd(&server, &["KEYS", "*"]).await else {
        panic!()
    };
    let mut names: Vec<String> = keys
        .into_iter()
        .map(|k| redis::from_redis_value(&k).unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "myapp:limits:{openai/gpt-4o-mini}",
            "myapp:limits:{openai/gpt-4o-mini}:log:rps"
        ]
    );
    for name in &names {
        let redis::Value::Int(ttl) = redis_cmd(&server, &["PTTL", name]).await else {
            panic!()
        };
        // max(idle_ttl 300 ms, two windows of 1 s) = 2 s.
        assert!(ttl > 1500 && ttl <= 2000, "{name}: {ttl}");
    }
}

/// A clock far ahead of the system clock and frozen: the client's time must not matter.
fn skewed_clock() -> Arc<dyn Clock> {
    Arc::new(ManualClock::new(86_400 * 365 * 1_000_000_000))
}

#[tokio::test]
async fn a_skewed_client_clock_does_not_change_admissions() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    for strategy in [
        "token_bucket",
        "gcra",
        "sliding_log",
        "sliding_counter",
        "leaky_bucket",
    ] {
        let s = settings(&server);
        let limit = format!("strategy = \"{strategy}\"\nlimits = {{ requests = \"4/400ms\" }}");
        let fair = limiter_with(&server, &limit, s.clone(), Arc::new(SystemClock::new())).await;
        // The skewed caller also runs the script through EVALSHA instead of FCALL: both
        // ways must decide identically.
        let mut via_script = s;
        via_script.functions = false;
        let skewed = limiter_with(&server, &limit, via_script, skewed_clock()).await;
        // Alternating callers share exactly one quota.
        let mut admitted = 0;
        let mut deadlines = Vec::new();
        for i in 0..8 {
            let l = if i % 2 == 0 { &fair } else { &skewed };
            let d = l.decide(&key(), Cost::request(1)).await;
            let now = d.server_time_us.unwrap();
            match d.outcome {
                Ok(_) => admitted += 1,
                Err(Denial::Wait { retry_after, .. }) => {
                    deadlines.push(now + retry_after.as_micros() as i64)
                }
                Err(other) => panic!("{other:?}"),
            }
        }
        let expected = if strategy == "leaky_bucket" { 1 } else { 4 };
        assert_eq!(admitted, expected, "{strategy}");
        // Both callers are told the same moment on Redis's clock.
        assert!(
            deadlines.windows(2).all(|w| w[0] == w[1]),
            "{strategy}: {deadlines:?}"
        );
        // The frozen client is admitted once Redis's clock passes that moment.
        let now = redis_now_us(&server).await;
        let wait = (deadlines[0] - now).max(0) as u64;
        tokio::time::sleep(Duration::from_micros(wait) + Duration::from_millis(5)).await;
        skewed
            .try_acquire(&key(), Cost::request(1))
            .await
            .expect(strategy);
    }
}

#[tokio::test]
async fn concurrency_slots_are_shared_released_and_leased() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let mut s = settings(&server);
    s.lease_ttl = Duration::from_millis(300);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
    let limit = "limits = { concurrent = 2, rpm = 1000 }";
    let a = limiter_with(&server, limit, s.clone(), clock.clone()).await;
    // One limiter per way of calling the script (FCALL, EVALSHA).
    let mut via_script = s;
    via_script.functions = false;
    let b = limiter_with(&server, limit, via_script, clock).await;
    let p1 = a.try_acquire(&key(), Cost::request(1)).await.unwrap();
    let p2 = a.try_acquire(&key(), Cost::request(1)).await.unwrap();
    assert_eq!(a.usage_stats(&key()).await.unwrap().in_flight, 2);
    let d = b.try_acquire(&key(), Cost::request(1)).await.unwrap_err();
    assert_eq!(d.dimension(), Some(RateLimitType::Concurrent));
    // Recording frees the slot before record_usage returns.
    a.record_usage(p1, Cost::request(1), &ResponseMeta::default())
        .await
        .unwrap();
    let p3 = b
        .try_acquire(&key(), Cost::request(1))
        .await
        .expect("slot freed by record_usage");
    // Dropping frees it in the background.
    drop(p2);
    let mut freed = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(5)).await;
        if let Ok(p) = b.try_acquire(&key(), Cost::request(1)).await {
            std::mem::forget(p); // a process that dies holding its slot
            freed = true;
            break;
        }
    }
    assert!(freed, "dropped permit's slot came back");
    // Both slots are now held (one by p3, one leaked); the leaked lease expires.
    assert!(b.try_acquire(&key(), Cost::request(1)).await.is_err());
    drop(p3);
    tokio::time::sleep(Duration::from_millis(350)).await;
    let _x = a
        .try_acquire(&key(), Cost::request(1))
        .await
        .expect("expired lease freed");
    let _y = a
        .try_acquire(&key(), Cost::request(1))
        .await
        .expect("released lease freed");
}

#[tokio::test]
async fn acquire_waits_for_the_refill_and_gives_up_past_max_wait() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let l = limiter(
        &server,
        "limits = { requests = \"2/100ms\" }\nmax_wait = \"80ms\"",
    )
    .await;
    let mut waited = Duration::ZERO;
    for _ in 0..6 {
        let p = l
            .acquire(&key(), Cost::request(1))
            .await
            .expect("waits at most 50 ms");
        waited += p.waited();
    }
    assert!(waited > Duration::ZERO, "four of six had to wait");
    let l = limiter(
        &server,
        "limits = { requests = \"1/1s\" }\nmax_wait = \"80ms\"",
    )
    .await;
    l.acquire(&key(), Cost::request(1)).await.unwrap();
    let e = l.acquire(&key(), Cost::request(1)).await.unwrap_err();
    let LimitError::Timeout {
        needed, max_wait, ..
    } = e
    else {
        panic!("{e}")
    };
    assert_eq!(max_wait, Duration::from_millis(80));
    assert!(needed > Duration::from_millis(900), "{needed:?}");
    assert_eq!(l.usage_stats(&key()).await.unwrap().denied, 1);
}

#[tokio::test]
async fn queued_acquirers_are_served_in_order_and_try_acquire_does_not_jump_them() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let l = Arc::new(limiter(&server, "limits = { requests = \"1/50ms\" }").await);
    l.try_acquire(&key(), Cost::request(1)).await.unwrap();
    let order = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..4 {
        let (l, order) = (l.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            l.acquire(&key(), Cost::request(1)).await.unwrap();
            order.lock().push(i);
        }));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let d = l.try_acquire(&key(), Cost::request(1)).await.unwrap_err();
    assert!(d.retry_after().is_some(), "{d:?}");
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(*order.lock(), [0, 1, 2, 3]);
}

#[tokio::test]
async fn unlimited_keys_and_leaky_pacing() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let l = RedisLimiter::connect(
        LimiterConfig::from_toml(
            "[[key]]\nprovider = \"azure\"\nlimit = { strategy = \"leaky_bucket\", limits = { requests = \"10/1s\" } }",
        )
        .unwrap(),
        settings(&server),
        Arc::new(SystemClock::new()),
    )
    .await
    .unwrap();
    for _ in 0..50 {
        l.try_acquire(&key(), Cost::request(1_000_000))
            .await
            .expect("no rule: unlimited");
    }
    let azure = LimitKey::new("azure", "gpt-4o").with_deployment("east");
    l.try_acquire(&azure, Cost::request(1)).await.unwrap();
    let d = l.try_acquire(&azure, Cost::request(1)).await.unwrap_err();
    let retry = d.retry_after().unwrap();
    assert!(
        retry > Duration::from_millis(95) && retry <= Duration::from_millis(100),
        "{retry:?}"
    );
}

#[tokio::test]
async fn a_lazy_limiter_connects_and_loads_the_script_on_its_first_call() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let l = RedisLimiter::lazy(
        config("limits = { rpm = 2 }"),
        settings(&server),
        Arc::new(SystemClock::new()),
    )
    .expect("built without connecting");
    let functions = redis_cmd(&server, &["FUNCTION", "LIST"]).await;
    assert_eq!(functions, redis::Value::Array(vec![]), "nothing loaded yet");
    // Concurrent first calls: one load, both answered by the script.
    let k = key();
    let (a, b) = tokio::join!(
        l.try_acquire(&k, Cost::request(1)),
        l.try_acquire(&k, Cost::request(1))
    );
    a.expect("admitted");
    b.expect("admitted");
    assert_eq!(l.script_reloads(), 0, "a first load is not a reload");
    assert_eq!(
        l.try_acquire(&key(), Cost::request(1))
            .await
            .unwrap_err()
            .dimension(),
        Some(RateLimitType::RequestsPerMinute)
    );
    assert_eq!(l.usage_stats(&key()).await.unwrap().admitted, 2);
}

fn split(input: u64, output: u64) -> Cost {
    Cost::request(0).with_split(input, output)
}

fn remaining(stats: &connector_hub::limiter::UsageStats, d: RateLimitType) -> u64 {
    stats
        .dimensions
        .iter()
        .find(|u| u.dimension == d)
        .map(|u| u.remaining)
        .expect("dimension reported")
}

/// Input and output tokens as separate dimensions on Redis: all-or-nothing with the
/// refusing part named, each part reconciled to its actual usage, a server-reported output
/// remaining applied to the output dimension alone.
#[tokio::test]
async fn input_and_output_tokens_are_limited_and_reconciled_apart() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let l = limiter(&server, "limits = { rpm = 50, itpm = 1000, otpm = 600 }").await;
    let permit = l.try_acquire(&key(), split(300, 500)).await.unwrap();
    let d = l.try_acquire(&key(), split(10, 200)).await.unwrap_err();
    let Denial::Wait {
        dimension,
        retry_after,
    } = d
    else {
        panic!("{d:?}")
    };
    assert_eq!(dimension, RateLimitType::OutputTokensPerMinute);
    // 100 output tokens missing at 10 per second; a few ms have passed.
    assert!(
        retry_after <= Duration::from_secs(10) && retry_after > Duration::from_secs(9),
        "{retry_after:?}"
    );
    let s = l.usage_stats(&key()).await.unwrap();
    assert_eq!(
        remaining(&s, RateLimitType::RequestsPerMinute),
        49,
        "the refusal took no request"
    );
    // Up to a second of refill (16 input, 10 output tokens) may pass between the calls.
    assert!((700..=716).contains(&remaining(&s, RateLimitType::InputTokensPerMinute)));
    assert!((100..=110).contains(&remaining(&s, RateLimitType::OutputTokensPerMinute)));
    let rec = l
        .record_usage(permit, split(320, 50), &ResponseMeta::default())
        .await
        .unwrap();
    assert_eq!(rec.refunded_tokens, 800 - 370);
    let s = l.usage_stats(&key()).await.unwrap();
    let input = remaining(&s, RateLimitType::InputTokensPerMinute);
    let output = remaining(&s, RateLimitType::OutputTokensPerMinute);
    assert!(
        (680..700).contains(&input),
        "input charged 20 more: {input}"
    );
    assert!(
        (550..=570).contains(&output),
        "output refunded 450: {output}"
    );
    let p = l.try_acquire(&key(), split(10, 200)).await.unwrap();
    let meta = ResponseMeta {
        remaining_output_tokens: Some(20),
        ..ResponseMeta::default()
    };
    l.record_usage(p, split(10, 200), &meta).await.unwrap();
    let s = l.usage_stats(&key()).await.unwrap();
    assert!(remaining(&s, RateLimitType::OutputTokensPerMinute) <= 30);
    assert!(remaining(&s, RateLimitType::InputTokensPerMinute) >= 670);
}

/// `charge_at = { output = "usage" }` on Redis: no output estimate at admission (a large
/// `max_tokens` is admitted), the actual output charged when recorded, and an overdrawn
/// output dimension refusing until it has refilled.
#[tokio::test]
async fn output_charged_at_usage_on_redis() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let l = limiter(
        &server,
        "limits = { itpm = 1000, otpm = 600 }\ncharge_at = { output = \"usage\" }",
    )
    .await;
    let est = split(100, 5_000);
    let a = l
        .try_acquire(&key(), est)
        .await
        .expect("output not charged yet");
    assert_eq!(a.charged().output(), 0);
    let b = l.try_acquire(&key(), est).await.unwrap();
    for (p, out) in [(a, 400), (b, 300)] {
        l.record_usage(p, split(100, out), &ResponseMeta::default())
            .await
            .unwrap();
    }
    let d = l.try_acquire(&key(), est).await.unwrap_err();
    let Denial::Wait {
        dimension,
        retry_after,
    } = d
    else {
        panic!("{d:?}")
    };
    assert_eq!(dimension, RateLimitType::OutputTokensPerMinute);
    // 100 output tokens overdrawn at 10 per second.
    assert!(
        retry_after <= Duration::from_secs(10) && retry_after > Duration::from_secs(9),
        "{retry_after:?}"
    );
}
