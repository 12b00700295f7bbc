//! The Redis limiter on a three-primary Redis Cluster (`RedisSettings::cluster`): every
//! key of one limit key shares a hash slot, so each limit key's script call runs on the
//! one node that owns it, and limit keys spread over the whole cluster.

#[path = "support/redis_cluster.rs"]
mod redis_cluster;

use std::sync::Arc;

use connector_hub::clock::SystemClock;
use connector_hub::limiter::config::RateLimitType;
use connector_hub::limiter::conformance::{self, Options, Subject};
use connector_hub::limiter::redis::{RedisLimiter, RedisSettings};
use connector_hub::limiter::{Cost, LimitKey, LimiterConfig, RateLimiter};
use redis_cluster::RedisCluster;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

const KEYS: usize = 1_000;

/// A thousand limit keys of `5 requests + 1 000 tokens per hour` (nothing refills within
/// the test): each admits exactly what its binding dimension allows — 5 requests of 100
/// tokens, or 3 of 300 — and refuses the next on that dimension with a wait, all or
/// nothing; the keys' state lands on all three primaries, one string per key.
#[test]
fn a_thousand_limit_keys_spread_over_three_primaries_and_each_keeps_its_limit() {
    let Some(cluster) = RedisCluster::start_or_skip() else {
        return;
    };
    let config = LimiterConfig::from_toml(
        "[default]\nstrategy = \"token_bucket\"\nlimits = { requests = \"5/1h\", tokens = \"1000/1h\" }",
    )
    .unwrap();
    let settings = RedisSettings::new(cluster.url()).clustered();
    runtime().block_on(async {
        let limiter = RedisLimiter::connect(config, settings, Arc::new(SystemClock::new()))
            .await
            .expect("connects to the cluster");
        for i in 0..KEYS {
            let key = LimitKey::new("p", format!("m{i}"));
            let (tokens, expected, binding) = if i % 2 == 0 {
                (
                    100,
                    5,
                    RateLimitType::RequestsPer(std::time::Duration::from_secs(3600)),
                )
            } else {
                (
                    300,
                    3,
                    RateLimitType::TokensPer(std::time::Duration::from_secs(3600)),
                )
            };
            let mut admitted = 0;
            let denial = loop {
                match limiter.try_acquire(&key, Cost::request(tokens)).await {
                    Ok(permit) => {
                        admitted += 1;
                        std::mem::forget(permit);
                        assert!(
                            admitted <= expected,
                            "{key:?} admitted more than {expected}"
                        );
                    }
                    Err(denial) => break denial,
                }
            };
            assert_eq!(admitted, expected, "{key:?}");
            assert_eq!(denial.dimension(), Some(binding), "{key:?}: {denial:?}");
            assert!(
                denial.retry_after().is_some_and(|w| !w.is_zero()),
                "{key:?}: {denial:?}"
            );
        }
        assert_eq!(limiter.script_reloads(), 0);
    });
    let sizes: Vec<u64> = cluster.ports().iter().map(|&p| cluster.dbsize(p)).collect();
    println!("keys per primary: {sizes:?}");
    assert!(
        sizes.iter().all(|&n| n > 0),
        "a primary holds no key: {sizes:?}"
    );
    assert_eq!(sizes.iter().sum::<u64>(), KEYS as u64, "{sizes:?}");
}

/// The conformance kit's server-clock properties (bound, exact waits, refusals that take
/// nothing, the refusing dimension) hold for every strategy on the cluster.
#[test]
fn every_strategy_meets_the_server_clock_properties_on_a_cluster() {
    let Some(cluster) = RedisCluster::start_or_skip() else {
        return;
    };
    let rt = runtime();
    for strategy in [
        "token_bucket",
        "gcra",
        "sliding_log",
        "sliding_counter",
        "leaky_bucket",
    ] {
        let toml = format!(
            "[default]\nstrategy = \"{strategy}\"\nlimits = {{ requests = \"6/100ms\", tokens = \"500/150ms\" }}\naccounting = \"actual\""
        );
        let config = LimiterConfig::from_toml(&toml).unwrap();
        let key = LimitKey::new("conformance", strategy);
        let subject = Subject::from_config(key, config.default.as_ref().unwrap()).unwrap();
        let settings = RedisSettings::new(cluster.url())
            .clustered()
            .with_key_prefix(format!("c-{strategy}"));
        let report = rt.block_on(async {
            let limiter = RedisLimiter::connect(config, settings, Arc::new(SystemClock::new()))
                .await
                .unwrap();
            let options = Options {
                traces: 1,
                episodes: 6,
                seed: 23,
                ..Options::default()
            };
            conformance::check_server_clock(&limiter, &subject, &options).await
        });
        let report = report.unwrap_or_else(|e| panic!("{strategy}: {e}"));
        assert!(
            report.admitted > 0 && report.refused > 0 && report.exact_waits > 0,
            "{strategy}: {report:?}"
        );
    }
}
