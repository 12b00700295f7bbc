//! Coalesced admissions on Redis: one process's concurrent attempts on one key are decided
//! in few script calls (counted by the server's `INFO commandstats`), with the outcomes a
//! sequential run gives — the capacity admitted exactly, each refusal naming its
//! dimension with its exact wait, all or nothing per attempt — and an uncontended caller
//! still makes one call of its own.

#[path = "support/redis_server.rs"]
mod redis_server;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use connector_hub::clock::SystemClock;
use connector_hub::limiter::redis::{FailurePolicy, RedisLimiter, RedisSettings};
use connector_hub::limiter::{
    Cost, Denial, LimitKey, LimiterConfig, RateLimitType, RateLimiter, ResponseMeta,
};
use redis_server::RedisServer;

static PREFIX: AtomicUsize = AtomicUsize::new(0);

const CALLERS: usize = 64;
const HOUR: Duration = Duration::from_secs(3600);

async fn limiter(server: &RedisServer, limit: &str) -> RedisLimiter {
    limiter_with(server, limit, FailurePolicy::FailClosed).await
}

async fn limiter_with(server: &RedisServer, limit: &str, policy: FailurePolicy) -> RedisLimiter {
    let config = LimiterConfig::from_toml(&format!("[default]\n{limit}")).unwrap();
    let mut settings = RedisSettings::new(server.url())
        .with_key_prefix(format!("b{}", PREFIX.fetch_add(1, Ordering::Relaxed)))
        .with_failure_policy(policy);
    settings.timeout = Duration::from_secs(5);
    RedisLimiter::connect(config, settings, Arc::new(SystemClock::new()))
        .await
        .expect("connects")
}

fn key() -> LimitKey {
    LimitKey::new("p", "m")
}

/// Script calls (`FCALL`) since the last reset, and resets the counters.
async fn script_calls(server: &RedisServer) -> u64 {
    let client = redis::Client::open(server.url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut con)
        .await
        .unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut con)
        .await
        .unwrap();
    stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_fcall:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// `CALLERS` concurrent `decide` calls of `cost` each, all started before any is answered.
async fn concurrently(l: &RedisLimiter, cost: impl Fn(usize) -> Cost) -> Vec<(Cost, Decided)> {
    let tasks: Vec<_> = (0..CALLERS)
        .map(|i| {
            let (l, c) = (l.clone(), cost(i));
            tokio::spawn(async move {
                let d = l.decide(&key(), c).await;
                let time = d.server_time_us.expect("redis decided");
                (c, (d.outcome.map(drop), time))
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

type Decided = (Result<(), Denial>, i64);

#[tokio::test]
async fn concurrent_callers_on_one_key_are_decided_in_batches_with_exact_waits() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    // Nothing expires within the test: the log is a plain count for an hour.
    let l = limiter(
        &server,
        "strategy = \"sliding_log\"\nlimits = { requests = \"20/1h\", tokens = \"100000/1h\" }",
    )
    .await;
    script_calls(&server).await;
    let decided = concurrently(&l, |_| Cost::request(10)).await;
    let calls = script_calls(&server).await;
    let (sent, attempts) = l.admission_calls();
    assert_eq!(attempts, CALLERS as u64);
    assert_eq!(sent, calls, "every admission call reached the server");
    assert!(
        calls <= 8,
        "{CALLERS} concurrent callers took {calls} script calls"
    );
    let admitted: Vec<i64> = decided
        .iter()
        .filter(|(_, (o, _))| o.is_ok())
        .map(|(_, (_, t))| *t)
        .collect();
    assert_eq!(admitted.len(), 20, "exactly the capacity is admitted");
    // The log frees its oldest entry first: every refusal waits exactly until the
    // earliest admission leaves the window, on Redis's clock.
    let oldest = *admitted.iter().min().unwrap();
    for (_, (outcome, at)) in &decided {
        if let Err(d) = outcome {
            assert_eq!(
                d,
                &Denial::Wait {
                    dimension: RateLimitType::RequestsPer(HOUR),
                    retry_after: Duration::from_micros((oldest + 3_600_000_000 - at) as u64),
                }
            );
        }
    }
}

#[tokio::test]
async fn a_refusal_in_a_batch_charges_no_dimension() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let l = limiter(
        &server,
        "strategy = \"token_bucket\"\nlimits = { requests = \"40/1h\", tokens = \"1000/1h\" }",
    )
    .await;
    // Costs 10..=130 tokens: the tokens bucket binds, requests never do.
    let decided = concurrently(&l, |i| Cost::request(10 + 20 * (i as u64 % 7))).await;
    assert!(l.admission_calls().0 < CALLERS as u64);
    let stats = l.usage_stats(&key()).await.unwrap();
    let left = |d: RateLimitType| {
        stats
            .dimensions
            .iter()
            .find(|u| u.dimension == d)
            .unwrap()
            .remaining
    };
    let admitted: Vec<&Cost> = decided
        .iter()
        .filter(|(_, (o, _))| o.is_ok())
        .map(|(c, _)| c)
        .collect();
    let spent: u64 = admitted.iter().map(|c| c.tokens).sum();
    assert!(spent <= 1000);
    // Refused attempts charged nothing: what is left is exactly capacity − admitted
    // (an hour's bucket refills about 0.3 tokens a second: allow the test's few seconds).
    let tokens_left = left(RateLimitType::TokensPer(HOUR));
    assert!(
        (1000 - spent..=1000 - spent + 3).contains(&tokens_left),
        "{tokens_left} tokens left after {spent} admitted"
    );
    assert_eq!(
        left(RateLimitType::RequestsPer(HOUR)),
        40 - admitted.len() as u64
    );
    // Each refusal names the tokens bucket, and the bucket only ever emptied: every refused
    // cost is still more than what is left at the end (a batch refuses only what does not
    // fit at its turn).
    for (cost, (outcome, _)) in &decided {
        if let Err(d) = outcome {
            assert_eq!(d.dimension(), Some(RateLimitType::TokensPer(HOUR)), "{d:?}");
            assert!(
                cost.tokens > 1000 - spent,
                "{cost:?} refused, {spent} spent"
            );
        }
    }
    assert!(decided.iter().any(|(_, (o, _))| o.is_err()));
}

#[tokio::test]
async fn an_uncontended_caller_makes_one_call_of_its_own() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let l = limiter(&server, "limits = { rpm = 1000 }").await;
    script_calls(&server).await;
    for _ in 0..5 {
        let p = l.try_acquire(&key(), Cost::request(0)).await.unwrap();
        drop(p);
    }
    assert_eq!(script_calls(&server).await, 5);
    assert_eq!(l.admission_calls(), (5, 5));
}

#[tokio::test]
async fn a_paused_key_refuses_every_attempt_of_a_batch() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let l = limiter(&server, "limits = { rpm = 1000 }").await;
    let p = l.try_acquire(&key(), Cost::request(0)).await.unwrap();
    let meta = ResponseMeta {
        retry_after: Some(Duration::from_secs(60)),
        ..ResponseMeta::default()
    };
    l.record_usage(p, Cost::request(0), &meta).await.unwrap();
    let decided = concurrently(&l, |_| Cost::request(0)).await;
    for (_, (outcome, _)) in &decided {
        let d = outcome.as_ref().unwrap_err();
        assert!(
            matches!(d, Denial::Paused { retry_after } if *retry_after <= Duration::from_secs(60)
                && *retry_after > Duration::from_secs(50)),
            "{d:?}"
        );
    }
    let stats = l.usage_stats(&key()).await.unwrap();
    assert_eq!(stats.denied, CALLERS as u64, "each refusal is counted once");
    assert_eq!(stats.admitted, 1);
}

#[tokio::test]
async fn a_failed_batch_gets_the_failure_policy_for_every_attempt() {
    let Some(mut server) = RedisServer::start_or_skip() else {
        return;
    };
    let closed = limiter(&server, "limits = { rpm = 1000 }").await;
    let open = limiter_with(&server, "limits = { rpm = 1000 }", FailurePolicy::FailOpen).await;
    server.kill();
    for (l, admits) in [(closed, false), (open, true)] {
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let l = l.clone();
                tokio::spawn(async move { l.try_acquire(&key(), Cost::request(1)).await })
            })
            .collect();
        for t in tasks {
            let outcome = tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .expect("bounded by the redis timeout")
                .unwrap();
            match outcome {
                Ok(_) => assert!(admits, "fail_closed admitted"),
                Err(Denial::Unavailable { .. }) => assert!(!admits, "fail_open refused"),
                Err(d) => panic!("{d:?}"),
            }
        }
    }
}

#[tokio::test]
async fn concurrency_leases_taken_in_one_batch_are_all_stored() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let l = limiter(
        &server,
        "strategy = \"sliding_log\"\nlimits = { requests = \"1000/1h\", concurrent = 5 }",
    )
    .await;
    let tasks: Vec<_> = (0..CALLERS)
        .map(|_| {
            let l = l.clone();
            tokio::spawn(async move { l.try_acquire(&key(), Cost::request(0)).await })
        })
        .collect();
    let mut held = Vec::new();
    for t in tasks {
        if let Ok(p) = t.await.unwrap() {
            held.push(p);
        }
    }
    assert_eq!(held.len(), 5, "exactly the concurrency limit is admitted");
    assert!(l.admission_calls().0 < CALLERS as u64);
    let stats = l.usage_stats(&key()).await.unwrap();
    let left = |d: RateLimitType| {
        stats
            .dimensions
            .iter()
            .find(|u| u.dimension == d)
            .unwrap()
            .remaining
    };
    // Every admission's lease and log entry reached its sorted set, and nothing else did.
    assert_eq!(left(RateLimitType::Concurrent), 0);
    assert_eq!(left(RateLimitType::RequestsPer(HOUR)), 995);
    for p in held {
        l.record_usage(p, Cost::request(0), &ResponseMeta::default())
            .await
            .unwrap();
    }
    let stats = l.usage_stats(&key()).await.unwrap();
    assert!(stats
        .dimensions
        .iter()
        .any(|u| u.dimension == RateLimitType::Concurrent && u.remaining == 5));
}
