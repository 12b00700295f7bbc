//! The in-memory strategies' invariants, on Redis (fewer cases: each case runs in real
//! time against a private redis-server). Admission logs carry Redis's own timestamps, so
//! the checks hold on the clock that decided.

#[path = "support/redis_checks.rs"]
mod redis_checks;
#[path = "support/redis_server.rs"]
mod redis_server;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use connector_hub::clock::SystemClock;
use connector_hub::limiter::algorithm::DimensionState;
use connector_hub::limiter::redis::{RedisLimiter, RedisSettings};
use connector_hub::limiter::{
    Cost, Denial, LimitKey, LimiterConfig, RateLimitConfig, RateLimitType, Strategy as HubStrategy,
};
use proptest::prelude::*;
use redis_checks::{arrival_curve_violation, window_violation, Admission};
use redis_server::RedisServer;

static PREFIX: AtomicUsize = AtomicUsize::new(0);

/// One randomly drawn run: limits (per 200 ms window) and a sequence of (pause ms, tokens).
#[derive(Debug, Clone)]
struct Run {
    requests: u64,
    tokens: u64,
    burst: f64,
    ops: Vec<(u64, u64)>,
}

fn runs() -> impl Strategy<Value = Run> {
    (2u64..8, 40u64..200, prop_oneof![Just(1.0), Just(0.5)]).prop_flat_map(|(r, t, burst)| {
        proptest::collection::vec((0u64..15, 1..=t / 2), 10..35).prop_map(move |ops| Run {
            requests: r,
            tokens: t,
            burst,
            ops,
        })
    })
}

const WINDOW_US: u64 = 200_000;

fn limit_toml(strategy: &str, run: &Run) -> String {
    format!(
        "strategy = \"{strategy}\"\nburst = {}\nlimits = {{ requests = \"{}/200ms\", tokens = \"{}/200ms\" }}",
        run.burst, run.requests, run.tokens
    )
}

struct Outcome {
    /// (Redis µs, requests, tokens) of each admission.
    admitted: Vec<(i64, u64, u64)>,
    /// (Redis µs, tokens, outcome) of every call, in order.
    calls: Vec<(i64, u64, Result<(), Denial>)>,
}

/// Plays `run` against a fresh key with `limit` and returns the stamped log.
fn play(server: &RedisServer, limit: &str, run: &Run) -> Outcome {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let settings = RedisSettings::new(server.url())
            .with_key_prefix(format!("p{}", PREFIX.fetch_add(1, Ordering::Relaxed)));
        let config = LimiterConfig::from_toml(&format!("[default]\n{limit}")).unwrap();
        let l = RedisLimiter::connect(config, settings, Arc::new(SystemClock::new()))
            .await
            .unwrap();
        let key = LimitKey::new("p", "m");
        let mut out = Outcome {
            admitted: Vec::new(),
            calls: Vec::new(),
        };
        for &(pause_ms, tokens) in &run.ops {
            if pause_ms > 0 {
                tokio::time::sleep(Duration::from_millis(pause_ms)).await;
            }
            let d = l.decide(&key, Cost::request(tokens)).await;
            let at = d.server_time_us.expect("redis decided");
            match d.outcome {
                Ok(_) => {
                    out.admitted.push((at, 1, tokens));
                    out.calls.push((at, tokens, Ok(())));
                }
                Err(denial) => out.calls.push((at, tokens, Err(denial))),
            }
        }
        out
    })
}

fn dims(strategy: &str, run: &Run) -> Vec<connector_hub::limiter::Limit> {
    RateLimitConfig::from_toml(&limit_toml(strategy, run))
        .unwrap()
        .dimensions()
        .unwrap()
}

fn requests_log(o: &Outcome) -> Vec<Admission> {
    o.admitted.iter().map(|&(t, r, _)| (t, r)).collect()
}

fn tokens_log(o: &Outcome) -> Vec<Admission> {
    o.admitted.iter().map(|&(t, _, k)| (t, k)).collect()
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 6,
        ..ProptestConfig::default()
    }
}

macro_rules! with_server {
    ($server:ident, $body:block) => {{
        let Some($server) = RedisServer::start_or_skip() else {
            return;
        };
        $body
    }};
}

#[test]
fn token_bucket_and_gcra_admissions_stay_under_the_arrival_curve() {
    with_server!(server, {
        proptest!(config(), |(run in runs(), gcra in any::<bool>())| {
            let strategy = if gcra { "gcra" } else { "token_bucket" };
            let o = play(&server, &limit_toml(strategy, &run), &run);
            let d = dims(strategy, &run);
            for (limit, log) in d.iter().zip([requests_log(&o), tokens_log(&o)]) {
                let v = arrival_curve_violation(&log, limit.burst, limit.amount, WINDOW_US);
                prop_assert!(v.is_none(), "{strategy} {:?}: {}", limit.kind, v.unwrap());
            }
            prop_assert!(!o.admitted.is_empty());
        });
    })
}

#[test]
fn sliding_log_admits_at_most_the_amount_in_every_window() {
    with_server!(server, {
        proptest!(config(), |(run in runs())| {
            let o = play(&server, &limit_toml("sliding_log", &run), &run);
            for (amount, log) in [(run.requests, requests_log(&o)), (run.tokens, tokens_log(&o))] {
                let v = window_violation(&log, amount, WINDOW_US);
                prop_assert!(v.is_none(), "{}", v.unwrap());
            }
        });
    })
}

#[test]
fn sliding_counter_stays_within_twice_the_amount_in_every_window() {
    with_server!(server, {
        proptest!(config(), |(run in runs())| {
            let o = play(&server, &limit_toml("sliding_counter", &run), &run);
            for (amount, log) in [(run.requests, requests_log(&o)), (run.tokens, tokens_log(&o))] {
                let v = window_violation(&log, 2 * amount, WINDOW_US);
                prop_assert!(v.is_none(), "{}", v.unwrap());
                // And each fixed window (aligned on Redis's clock) holds at most the amount.
                let mut per_window = std::collections::BTreeMap::<i64, u64>::new();
                for (t, c) in &log {
                    *per_window.entry(t.div_euclid(WINDOW_US as i64)).or_default() += c;
                }
                prop_assert!(per_window.values().all(|&s| s <= amount), "{per_window:?}");
            }
        });
    })
}

#[test]
fn leaky_bucket_spaces_admissions_by_their_cost() {
    with_server!(server, {
        proptest!(config(), |(run in runs())| {
            let o = play(&server, &limit_toml("leaky_bucket", &run), &run);
            for (amount, log) in [(run.requests, requests_log(&o)), (run.tokens, tokens_log(&o))] {
                for w in log.windows(2) {
                    let ((t0, c0), (t1, _)) = (w[0], w[1]);
                    // (t1 − t0) ≥ c0 · window / amount, in exact integers.
                    prop_assert!(
                        (t1 - t0) as u128 * u128::from(amount) >= u128::from(c0) * u128::from(WINDOW_US),
                        "{t0} (cost {c0}) then {t1}: closer than the pace of {amount}/200ms"
                    );
                }
            }
        });
    })
}

#[test]
fn redis_bucket_decides_exactly_like_the_in_memory_bucket() {
    // Replays every Redis decision through the in-memory state machine at the same
    // (Redis) instants: same admissions, same refusing dimension, same wait (the
    // in-memory wait in ns rounded up to Redis's µs), all-or-nothing across dimensions.
    with_server!(server, {
        proptest!(config(), |(run in runs())| {
          for strategy in ["token_bucket", "gcra"] {
            let o = play(&server, &limit_toml(strategy, &run), &run);
            let limits = dims(strategy, &run);
            let mut states: Option<Vec<DimensionState>> = None;
            for (i, (at, tokens, outcome)) in o.calls.iter().enumerate() {
                let now = *at as u64 * 1000;
                let states = states.get_or_insert_with(|| {
                    limits.iter().map(|l| DimensionState::new(HubStrategy::TokenBucket, *l, now)).collect()
                });
                let cost = Cost::request(*tokens);
                let waits: Vec<Option<u64>> = limits
                    .iter()
                    .zip(states.iter())
                    .map(|(l, s)| s.check(now, l.kind.cost_of(cost)).err())
                    .collect();
                let worst = waits.iter().enumerate().filter_map(|(j, w)| w.map(|w| (w, j))).max_by_key(|&(w, j)| (w, std::cmp::Reverse(j)));
                match (worst, outcome) {
                    (None, Ok(())) => {
                        for (l, s) in limits.iter().zip(states.iter_mut()) {
                            s.commit(now, l.kind.cost_of(cost));
                        }
                    }
                    (Some((w, j)), Err(Denial::Wait { dimension, retry_after })) => {
                        prop_assert_eq!(*dimension, limits[j].kind, "call {}", i);
                        prop_assert_eq!(retry_after.as_micros() as u64, w.div_ceil(1000), "call {}", i);
                    }
                    (expected, got) => prop_assert!(false, "{strategy} call {i}: in-memory {expected:?}, redis {got:?}"),
                }
            }
          }
        });
    })
}

/// Exhausts the key, then calls with the same cost until admitted: every denial before
/// the first `retry_after` names the same instant on Redis's clock, and the first call at
/// or after it is admitted.
#[test]
fn waits_are_exact_on_the_server_clock() {
    with_server!(server, {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for strategy in [
            "token_bucket",
            "gcra",
            "sliding_log",
            "sliding_counter",
            "leaky_bucket",
        ] {
            for cost in [1u64, 7] {
                rt.block_on(async {
                    let settings = RedisSettings::new(server.url())
                        .with_key_prefix(format!("w{}", PREFIX.fetch_add(1, Ordering::Relaxed)));
                    let limit = format!(
                        "[default]\nstrategy = \"{strategy}\"\nlimits = {{ tokens = \"10/100ms\" }}"
                    );
                    let l = RedisLimiter::connect(
                        LimiterConfig::from_toml(&limit).unwrap(),
                        settings,
                        Arc::new(SystemClock::new()),
                    )
                    .await
                    .unwrap();
                    let key = LimitKey::new("p", "m");
                    let mut deadline = None;
                    let mut denials = 0;
                    for _ in 0..20_000 {
                        let d = l.decide(&key, Cost::tokens(cost)).await;
                        let now = d.server_time_us.unwrap();
                        match (d.outcome, deadline) {
                            (Ok(_), None) => {}
                            (Ok(_), Some(at)) => {
                                assert!(
                                    now >= at,
                                    "{strategy}/{cost}: admitted at {now} before {at}"
                                );
                                assert!(denials >= 1, "{strategy}/{cost}: no denial to test");
                                return;
                            }
                            (
                                Err(Denial::Wait {
                                    retry_after,
                                    dimension,
                                }),
                                _,
                            ) => {
                                assert_eq!(
                                    dimension,
                                    RateLimitType::TokensPer(Duration::from_millis(100))
                                );
                                let at = now + retry_after.as_micros() as i64;
                                assert!(retry_after > Duration::ZERO);
                                match deadline {
                                    None => deadline = Some(at),
                                    Some(d) => assert_eq!(
                                        at, d,
                                        "{strategy}/{cost}: deadline moved at {now}"
                                    ),
                                }
                                denials += 1;
                                // Sleep to 5 ms before the deadline, then ask back to back.
                                if at - now > 6_000 {
                                    std::thread::sleep(Duration::from_micros(
                                        (at - now - 5_000) as u64,
                                    ));
                                }
                            }
                            (Err(other), _) => panic!("{other:?}"),
                        }
                    }
                    panic!("{strategy}/{cost}: never admitted again");
                });
            }
        }
    })
}
