//! The conformance kit on the Redis backend, on Redis's clock and in real time
//! (`conformance::check_server_clock`), and `hub verify --backend redis`. Windows are a
//! few hundred milliseconds; a private redis-server per test file.

#[path = "support/redis_server.rs"]
mod redis_server;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use connector_hub::clock::SystemClock;
use connector_hub::harness::scenario::Scenario;
use connector_hub::harness::verify::{render, verify_redis};
use connector_hub::limiter::conformance::{self, Options, Subject};
use connector_hub::limiter::redis::{RedisLimiter, RedisSettings};
use connector_hub::limiter::{LimitKey, LimiterConfig};
use redis_server::RedisServer;

static PREFIX: AtomicUsize = AtomicUsize::new(0);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// Every strategy on Redis meets the properties that apply on a server clock — bound on
/// Redis's timestamps, exact waits by those timestamps, refusals that take nothing, the
/// refusing dimension, exceeds — over a requests and a tokens dimension.
#[test]
fn redis_limiter_meets_the_server_clock_properties_for_every_strategy() {
    let Some(server) = RedisServer::start_or_skip() else {
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
        let subject =
            Subject::from_config(LimitKey::new("p", "m"), config.default.as_ref().unwrap())
                .unwrap();
        let settings = RedisSettings::new(server.url())
            .with_key_prefix(format!("c{}", PREFIX.fetch_add(1, Ordering::Relaxed)));
        let report = rt.block_on(async {
            let limiter = RedisLimiter::connect(config, settings, Arc::new(SystemClock::new()))
                .await
                .unwrap();
            let options = Options {
                traces: 2,
                episodes: 8,
                seed: 17,
                ..Options::default()
            };
            conformance::check_server_clock(&limiter, &subject, &options).await
        });
        let report = report.unwrap_or_else(|e| panic!("{strategy}: {e}"));
        assert!(
            report.admitted > 0 && report.refused > 0,
            "{strategy}: {report:?}"
        );
        assert!(report.exact_waits > 0, "{strategy}: {report:?}");
    }
}

/// Input- and output-token dimensions on Redis meet the server-clock properties in every
/// strategy, with output charged at admission and at usage.
#[test]
fn redis_limiter_meets_the_server_clock_properties_with_input_and_output_tokens() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let rt = runtime();
    let strategies = [
        "token_bucket",
        "gcra",
        "sliding_log",
        "sliding_counter",
        "leaky_bucket",
    ];
    let runs = strategies
        .iter()
        .flat_map(|s| [(*s, "admission"), (*s, "usage")]);
    for (strategy, output_at) in runs {
        let toml = format!(
            "[default]\nstrategy = \"{strategy}\"\nlimits = {{ requests = \"6/100ms\", \
             input_tokens = \"500/150ms\", output_tokens = \"200/100ms\" }}\n\
             accounting = \"actual\"\ncharge_at = {{ output = \"{output_at}\" }}"
        );
        let config = LimiterConfig::from_toml(&toml).unwrap();
        let subject =
            Subject::from_config(LimitKey::new("p", "m"), config.default.as_ref().unwrap())
                .unwrap();
        let settings = RedisSettings::new(server.url())
            .with_key_prefix(format!("s{}", PREFIX.fetch_add(1, Ordering::Relaxed)));
        let report = rt.block_on(async {
            let limiter = RedisLimiter::connect(config, settings, Arc::new(SystemClock::new()))
                .await
                .unwrap();
            let options = Options {
                traces: 1,
                episodes: 8,
                seed: 17,
                ..Options::default()
            };
            conformance::check_server_clock(&limiter, &subject, &options).await
        });
        let report = report.unwrap_or_else(|e| panic!("{strategy}, output at {output_at}: {e}"));
        assert!(
            report.admitted > 0 && report.refused > 0,
            "{strategy}: {report:?}"
        );
    }
}

/// `hub verify --backend redis` on the quickstart scenario: windows divided by 10 (its
/// limiters' 1-s windows become 100 ms), every applicable property holds for each limiter.
#[test]
fn hub_verify_on_redis_holds_for_the_quickstart_limiters() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/quickstart.toml");
    let s = Scenario::from_file(&path).unwrap();
    let (factor, outcomes) = runtime()
        .block_on(verify_redis(&s, 2, s.seed, &server.url(), None))
        .unwrap();
    assert_eq!(factor, 10);
    assert_eq!(outcomes.len(), 3);
    for o in &outcomes {
        assert!(o.counterexample.is_none(), "{}", render(o));
        assert!(o.admitted() > 0, "{}", render(o));
    }
}

/// `hub verify --backend redis` on limiters with input- and output-token limits: windows
/// compressed per unit, every applicable property holds.
#[test]
fn hub_verify_on_redis_holds_for_input_and_output_token_limits() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let text = "name = \"split\"\nseed = 3\n[provider]\nkind = \"openai\"\nmodel = \"m\"\n\
                [[phase]]\nduration = \"2s\"\narrival = { process = \"poisson\", rate = \"5/s\" }\n\
                [workload]\nprompt_tokens = 100\nmax_tokens = 50\n\
                [[limiter]]\nname = \"split\"\nstrategy = \"gcra\"\n\
                limits = { rpm = 60, itpm = 6000, otpm = 2000 }\naccounting = \"actual\"\n";
    let s = Scenario::parse(text, "split.toml").unwrap();
    let (factor, outcomes) = runtime()
        .block_on(verify_redis(&s, 2, s.seed, &server.url(), None))
        .unwrap();
    assert_eq!(factor, 600);
    assert_eq!(outcomes.len(), 1);
    for o in &outcomes {
        assert!(o.counterexample.is_none(), "{}", render(o));
        assert!(o.admitted() > 0, "{}", render(o));
    }
}
