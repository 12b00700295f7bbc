//! The same calls on the in-memory and the Redis limiter give the same answers: the
//! hub-specification helpers (`update_usage`, `check_limit`) and the permits in flight.
//! Each sequence runs on a [`KeyedLimiter`] (manual clock, exact) and on a
//! [`RedisLimiter`] against a private redis-server (skipped with a `SKIP` line without
//! one); the Redis side may be one token above the memory side, the refill of a
//! `1000/1h` bucket during the test's real second.

#[path = "support/redis_server.rs"]
mod redis_server;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use connector_hub::clock::{ManualClock, SystemClock};
use connector_hub::limiter::redis::{RedisLimiter, RedisSettings};
use connector_hub::limiter::{
    Cost, Denial, KeyedLimiter, LimitError, LimitKey, LimiterConfig, RateLimitType, RateLimiter,
    ResponseMeta, UsageStats,
};
use futures::FutureExt;
use redis_server::RedisServer;

static PREFIX: AtomicUsize = AtomicUsize::new(0);

fn config(limit: &str) -> LimiterConfig {
    LimiterConfig::from_toml(&format!("[default]\n{limit}")).expect("valid test config")
}

fn memory(limit: &str) -> KeyedLimiter {
    KeyedLimiter::new(config(limit), Arc::new(ManualClock::new(0))).expect("valid limits")
}

async fn redis(server: &RedisServer, limit: &str) -> RedisLimiter {
    let settings = RedisSettings::new(server.url())
        .with_key_prefix(format!("b{}", PREFIX.fetch_add(1, Ordering::Relaxed)));
    RedisLimiter::connect(config(limit), settings, Arc::new(SystemClock::new()))
        .await
        .expect("connects to the test server")
}

/// One admission of 100 tokens that used 30, then an after-the-fact `update_usage` of 250,
/// on the provider-wide key; the stats after.
async fn reconcile_then_update(l: &dyn RateLimiter) -> UsageStats {
    let key = LimitKey::provider("p");
    let permit = l.acquire(&key, Cost::request(100)).await.expect("admitted");
    l.record_usage(permit, Cost::request(30), &ResponseMeta::default())
        .await
        .expect("recorded");
    l.update_usage("p", 250).await.expect("charged");
    l.usage_stats(&key).await.expect("stats")
}

#[tokio::test]
async fn update_usage_charges_all_its_tokens_on_both_backends_whatever_the_accounting() {
    let server = RedisServer::start_or_skip();
    // `estimate` keeps the admission's 100; `actual` keeps its 30. Both charge all 250.
    for (accounting, remaining, charged) in [("estimate", 650, 350), ("actual", 720, 280)] {
        let limit = format!("limits = {{ tokens = \"1000/1h\" }}\naccounting = \"{accounting}\"");
        let mem = reconcile_then_update(&memory(&limit)).await;
        assert_eq!(
            mem.tokens_remaining(),
            Some(remaining),
            "memory/{accounting}"
        );
        assert_eq!(mem.tokens_charged, charged, "memory/{accounting}");
        let Some(server) = &server else { continue };
        let red = reconcile_then_update(&redis(server, &limit).await).await;
        let (m, r) = (
            remaining,
            red.tokens_remaining().expect("a token dimension"),
        );
        assert!(
            (m..=m + 1).contains(&r),
            "redis/{accounting}: {r} tokens remaining, memory {m}"
        );
        assert_eq!(red.tokens_charged, charged, "redis/{accounting}");
    }
}

/// Three admissions: one held, one recorded, one dropped; `in_flight` after each step.
async fn in_flight_steps(l: &dyn RateLimiter) -> Vec<u64> {
    let key = LimitKey::new("p", "m");
    let in_flight = || async { l.usage_stats(&key).await.expect("stats").in_flight };
    let mut steps = Vec::new();
    let held = l
        .try_acquire(&key, Cost::request(1))
        .await
        .expect("admitted");
    let recorded = l
        .try_acquire(&key, Cost::request(1))
        .await
        .expect("admitted");
    let dropped = l
        .try_acquire(&key, Cost::request(1))
        .await
        .expect("admitted");
    steps.push(in_flight().await);
    l.record_usage(recorded, Cost::request(1), &ResponseMeta::default())
        .await
        .expect("recorded");
    steps.push(in_flight().await);
    drop(dropped);
    steps.push(in_flight().await);
    drop(held);
    steps.push(in_flight().await);
    steps
}

#[tokio::test]
async fn a_dropped_permit_leaves_in_flight_on_both_backends() {
    let server = RedisServer::start_or_skip();
    // Without a `concurrent` limit (counted apart from slots) and with one.
    for limit in [
        "limits = { rpm = 100 }",
        "limits = { rpm = 100, concurrent = 10 }",
    ] {
        let want = vec![3, 2, 1, 0];
        assert_eq!(
            in_flight_steps(&memory(limit)).await,
            want,
            "memory: {limit}"
        );
        let Some(server) = &server else { continue };
        let got = in_flight_steps(&redis(server, limit).await).await;
        assert_eq!(got, want, "redis: {limit}");
    }
}

fn denied_for(retry_after: Duration) -> LimitError {
    LimitError::Denied {
        key: LimitKey::provider("p"),
        denial: Denial::Wait {
            dimension: RateLimitType::RequestsPerMinute,
            retry_after,
        },
    }
}

#[tokio::test]
async fn check_limit_answers_at_once_with_the_refusing_dimension_and_exact_wait() {
    let clock = ManualClock::new(0);
    let l = KeyedLimiter::new(config("limits = { rpm = 1 }"), Arc::new(clock.clone()))
        .expect("valid limits");
    // `now_or_never`: the answer must be ready on the first poll, with no time passing.
    let check = || l.check_limit("p").now_or_never().expect("answers at once");
    check().expect("the first is admitted");
    let e = check().expect_err("the second is denied");
    assert_eq!(e, denied_for(Duration::from_secs(60)));
    let message = e.to_string();
    assert!(
        message.contains("p/*") && message.contains("(RPM)") && message.contains("60s"),
        "{message}"
    );
    clock.advance(Duration::from_secs(20));
    assert_eq!(check(), Err(denied_for(Duration::from_secs(40))));
    clock.advance(Duration::from_secs(40) - Duration::from_nanos(1));
    assert_eq!(check(), Err(denied_for(Duration::from_nanos(1))));
    clock.advance(Duration::from_nanos(1));
    check().expect("admitted exactly after the wait");
    // The admission's charge is kept.
    let stats = l.get_usage("p").await.expect("stats");
    assert_eq!(stats.requests_remaining(), Some(0));
    assert_eq!((stats.admitted, stats.in_flight), (2, 0));
}

#[tokio::test]
async fn check_limit_on_redis_answers_at_once_with_the_wait() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let l = redis(&server, "limits = { rpm = 1 }").await;
    let check = || async {
        tokio::time::timeout(Duration::from_secs(5), l.check_limit("p"))
            .await
            .expect("answers at once, does not wait for the next minute")
    };
    check().await.expect("the first is admitted");
    match check().await {
        Err(LimitError::Denied {
            key,
            denial:
                Denial::Wait {
                    dimension,
                    retry_after,
                },
        }) => {
            assert_eq!(key, LimitKey::provider("p"));
            assert_eq!(dimension, RateLimitType::RequestsPerMinute);
            assert!(
                retry_after > Duration::from_secs(55) && retry_after <= Duration::from_secs(60),
                "{retry_after:?}"
            );
        }
        other => panic!("{other:?}"),
    }
}
