//! Redis failing under the limiter: killed mid-run and restarted, frozen (SIGSTOP), or
//! absent at start. Each failure policy does what it says, every call returns within its
//! timeout (each test is bounded by a tokio timeout), and nothing panics.

#[path = "support/redis_server.rs"]
mod redis_server;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use connector_hub::clock::SystemClock;
use connector_hub::limiter::redis::{ConnectError, FailurePolicy, RedisLimiter, RedisSettings};
use connector_hub::limiter::{
    Cost, Denial, LimitError, LimitKey, LimiterConfig, RateLimiter, ResponseMeta,
};
use redis_server::RedisServer;

static PREFIX: AtomicUsize = AtomicUsize::new(0);

/// Longest any single limiter call may take here: the 100 ms Redis timeout plus slack.
const BOUND: Duration = Duration::from_secs(2);

fn settings(server: &RedisServer, policy: FailurePolicy) -> RedisSettings {
    let mut s = RedisSettings::new(server.url())
        .with_key_prefix(format!("f{}", PREFIX.fetch_add(1, Ordering::Relaxed)))
        .with_failure_policy(policy);
    s.timeout = Duration::from_millis(100);
    s.probe_interval = Duration::from_millis(200);
    s
}

async fn limiter(server: &RedisServer, policy: FailurePolicy) -> RedisLimiter {
    let config =
        LimiterConfig::from_toml("[default]\nlimits = { rpm = 3 }\nmax_wait = \"1s\"").unwrap();
    RedisLimiter::connect(
        config,
        settings(server, policy),
        Arc::new(SystemClock::new()),
    )
    .await
    .expect("connects")
}

fn key() -> LimitKey {
    LimitKey::new("p", "m")
}

/// Runs `f` and fails the test if it takes longer than [`BOUND`].
async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, f)
        .await
        .unwrap_or_else(|_| panic!("{what} hung past {BOUND:?}"))
}

/// Waits (bounded) until a probe finds Redis again and `try_acquire` is answered by it.
async fn until_redis_answers(l: &RedisLimiter) {
    for _ in 0..100 {
        let d = bounded("decide", l.decide(&key(), Cost::request(1))).await;
        if d.server_time_us.is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("redis never came back");
}

#[tokio::test]
async fn fail_closed_denies_with_a_reason_and_recovers() {
    let Some(mut server) = RedisServer::start_or_skip() else {
        return;
    };
    let l = limiter(&server, FailurePolicy::FailClosed).await;
    let held = l.try_acquire(&key(), Cost::request(5)).await.unwrap();
    server.kill();
    let d = bounded("try_acquire", l.try_acquire(&key(), Cost::request(1)))
        .await
        .unwrap_err();
    let Denial::Unavailable { reason } = &d else {
        panic!("{d:?}")
    };
    assert!(reason.contains("redis"), "{reason}");
    let e = bounded("acquire", l.acquire(&key(), Cost::request(1)))
        .await
        .unwrap_err();
    assert!(matches!(e, LimitError::Unavailable { .. }), "{e}");
    let refund = ResponseMeta::default();
    let e = bounded(
        "record_usage",
        l.record_usage(held, Cost::request(1), &refund),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, LimitError::Unavailable { .. }), "{e}");
    assert!(bounded("usage_stats", l.usage_stats(&key())).await.is_err());
    assert!(l.is_degraded());
    server.restart();
    until_redis_answers(&l).await;
    assert!(!l.is_degraded());
}

#[tokio::test]
async fn fail_open_admits_beyond_the_limit_while_redis_is_down() {
    let Some(mut server) = RedisServer::start_or_skip() else {
        return;
    };
    let l = limiter(&server, FailurePolicy::FailOpen).await;
    for _ in 0..3 {
        l.try_acquire(&key(), Cost::request(1)).await.unwrap();
    }
    assert!(
        l.try_acquire(&key(), Cost::request(1)).await.is_err(),
        "limit holds while up"
    );
    server.kill();
    for _ in 0..10 {
        let p = bounded("try_acquire", l.try_acquire(&key(), Cost::request(1)))
            .await
            .expect("fail_open admits");
        bounded(
            "record_usage",
            l.record_usage(p, Cost::request(1), &ResponseMeta::default()),
        )
        .await
        .expect("fail_open records without redis");
    }
    bounded("acquire", l.acquire(&key(), Cost::request(1)))
        .await
        .expect("fail_open admits");
    server.restart();
    until_redis_answers(&l).await;
}

#[tokio::test]
async fn local_fallback_enforces_the_same_limits_in_process_and_switches_back() {
    let Some(mut server) = RedisServer::start_or_skip() else {
        return;
    };
    let l = limiter(&server, FailurePolicy::LocalFallback).await;
    l.try_acquire(&key(), Cost::request(1)).await.unwrap();
    server.kill();
    // The local limiter starts full: three admissions, then its own exact denial.
    for _ in 0..3 {
        let p = bounded("try_acquire", l.try_acquire(&key(), Cost::request(1)))
            .await
            .expect("local limiter admits");
        bounded(
            "record_usage",
            l.record_usage(p, Cost::request(1), &ResponseMeta::default()),
        )
        .await
        .unwrap();
    }
    let d = bounded("try_acquire", l.try_acquire(&key(), Cost::request(1)))
        .await
        .unwrap_err();
    assert!(matches!(d, Denial::Wait { .. }), "{d:?}");
    let stats = bounded("usage_stats", l.usage_stats(&key())).await.unwrap();
    assert_eq!(
        stats.requests_remaining(),
        Some(0),
        "stats come from the local limiter"
    );
    let e = bounded("acquire", l.acquire(&key(), Cost::request(1)))
        .await
        .unwrap_err();
    assert!(
        matches!(e, LimitError::Timeout { .. }),
        "local wait exceeds max_wait: {e}"
    );
    server.restart();
    until_redis_answers(&l).await;
    // Back on Redis: the restarted (empty) server has the full quota again.
    let stats = l.usage_stats(&key()).await.unwrap();
    assert_eq!(
        stats.requests_remaining(),
        Some(2),
        "redis state after one admission"
    );
}

#[tokio::test]
async fn a_frozen_redis_times_out_instead_of_hanging() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let l = limiter(&server, FailurePolicy::FailClosed).await;
    l.try_acquire(&key(), Cost::request(1)).await.unwrap();
    server.signal("STOP");
    let d = bounded("try_acquire", l.try_acquire(&key(), Cost::request(1)))
        .await
        .unwrap_err();
    let Denial::Unavailable { reason } = &d else {
        panic!("{d:?}")
    };
    assert!(reason.contains("timed out"), "{reason}");
    // Until the next probe, calls fail at once without waiting for the timeout.
    let d = bounded("try_acquire", l.try_acquire(&key(), Cost::request(1)))
        .await
        .unwrap_err();
    assert!(matches!(d, Denial::Unavailable { .. }));
    server.signal("CONT");
    until_redis_answers(&l).await;
}

#[tokio::test]
async fn redis_killed_mid_run_under_load_hangs_nothing() {
    let Some(mut server) = RedisServer::start_or_skip() else {
        return;
    };
    for policy in [
        FailurePolicy::FailClosed,
        FailurePolicy::FailOpen,
        FailurePolicy::LocalFallback,
    ] {
        let l = Arc::new(limiter(&server, policy).await);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tasks = Vec::new();
        for i in 0..8 {
            let (l, stop) = (l.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut calls = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let r = if i % 2 == 0 {
                        bounded("acquire", l.acquire(&key(), Cost::request(1)))
                            .await
                            .ok()
                    } else {
                        bounded("try_acquire", l.try_acquire(&key(), Cost::request(1)))
                            .await
                            .ok()
                    };
                    if let Some(p) = r {
                        let meta = ResponseMeta::default();
                        let _ = bounded("record", l.record_usage(p, Cost::request(1), &meta)).await;
                    }
                    calls += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                calls
            }));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        server.kill();
        tokio::time::sleep(Duration::from_millis(400)).await;
        server.restart();
        tokio::time::sleep(Duration::from_millis(400)).await;
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            let calls = tokio::time::timeout(BOUND * 2, t)
                .await
                .expect("worker ends")
                .expect("worker does not panic");
            assert!(calls > 0, "{policy:?}");
        }
        until_redis_answers(&l).await;
    }
}

#[tokio::test]
async fn an_absent_redis_fails_connect_only_when_fail_closed() {
    let Some(mut server) = RedisServer::start_or_skip() else {
        return;
    };
    let closed = settings(&server, FailurePolicy::FailClosed);
    let open = settings(&server, FailurePolicy::FailOpen);
    server.kill();
    let config = LimiterConfig::from_toml("[default]\nlimits = { rpm = 3 }").unwrap();
    let e = RedisLimiter::connect(config.clone(), closed, Arc::new(SystemClock::new()))
        .await
        .unwrap_err();
    assert!(matches!(e, ConnectError::Unreachable { .. }), "{e}");
    let l = RedisLimiter::connect(config, open, Arc::new(SystemClock::new()))
        .await
        .unwrap();
    bounded("try_acquire", l.try_acquire(&key(), Cost::request(1)))
        .await
        .expect("fail_open");
    server.restart();
    until_redis_answers(&l).await;
}
