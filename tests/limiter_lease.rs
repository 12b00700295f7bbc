//! Leased capacity (`limiter::lease`): simulated processes — one `LeasedLimiter` each —
//! lease from one shared in-memory limiter on a manual clock. The requests they admit stay
//! within the limit plus the documented overshoot bound, `N × slice`; the worst case does
//! exceed the plain limit; unused slices go back.

#[path = "support/redis_checks.rs"]
mod redis_checks;

use std::sync::Arc;
use std::time::Duration;

use connector_hub::clock::{Clock, ManualClock};
use connector_hub::limiter::lease::{LeaseSettings, LeasedLimiter};
use connector_hub::limiter::{
    Cost, Denial, KeyedLimiter, LimitKey, LimiterConfig, RateLimiter, ResponseMeta,
};
use proptest::prelude::*;
use redis_checks::arrival_curve_violation;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime")
}

fn key() -> LimitKey {
    LimitKey::new("p", "m")
}

/// `n` leased limiters over one shared keyed limiter of `toml`, on one manual clock.
fn fleet(
    toml: &str,
    n: usize,
    settings: LeaseSettings,
) -> (ManualClock, Arc<dyn RateLimiter>, Vec<LeasedLimiter>) {
    let clock = ManualClock::new(0);
    let config = LimiterConfig::from_toml(toml).unwrap();
    let shared: Arc<dyn RateLimiter> =
        Arc::new(KeyedLimiter::new(config.clone(), Arc::new(clock.clone())).unwrap());
    let leased = (0..n)
        .map(|_| {
            LeasedLimiter::new(
                shared.clone(),
                config.clone(),
                settings,
                Arc::new(clock.clone()),
            )
            .unwrap()
        })
        .collect();
    (clock, shared, leased)
}

fn us(clock: &ManualClock) -> i64 {
    (clock.now() / 1_000) as i64
}

/// The worst case: two processes each hold an unspent half-quota lease while the shared
/// bucket refills and a third, unleased caller spends the refill; then both spend their
/// leases at once. The overshoot is real (the interval admits more than the limit) and
/// stays within the bound.
#[test]
fn leases_overshoot_by_at_most_the_bound_and_the_worst_case_reaches_past_the_limit() {
    // 60 per minute, burst 60: one per second; slices of 30; lifetime 10 s.
    let toml = "[default]\nstrategy = \"token_bucket\"\nlimits = { rpm = 60 }";
    let settings = LeaseSettings {
        share: 0.5,
        lifetime: Duration::from_secs(10),
    };
    let (clock, shared, fleet) = fleet(toml, 2, settings);
    let rt = runtime();
    let mut log = Vec::new();
    rt.block_on(async {
        for p in &fleet {
            let permit = p.try_acquire(&key(), Cost::request(0)).await.unwrap();
            log.push((us(&clock), 1));
            drop(permit);
        }
        // The whole bucket went out as two leases.
        assert!(matches!(
            shared.try_acquire(&key(), Cost::request(0)).await,
            Err(Denial::Wait { .. })
        ));
        clock.advance(Duration::from_millis(9_900));
        // The refill (9 requests) goes to an unleased caller…
        while let Ok(permit) = shared.try_acquire(&key(), Cost::request(0)).await {
            log.push((us(&clock), 1));
            drop(permit);
        }
        // …while both leases spend what they hold, at the same instant.
        for p in &fleet {
            while let Ok(permit) = p.try_acquire(&key(), Cost::request(0)).await {
                assert!(permit.charged().requests == 1);
                log.push((us(&clock), 1));
                drop(permit);
            }
        }
    });
    let minute_us = 60_000_000;
    let bound = 2 * 30; // N × slice
    assert!(
        arrival_curve_violation(&log, 60, 60, minute_us).is_some(),
        "the worst case exceeds the plain limit"
    );
    let within = arrival_curve_violation(&log, 60 + bound, 60, minute_us);
    assert!(within.is_none(), "{}", within.unwrap());
    assert_eq!(log.len(), 2 + 9 + 58);
}

/// What a lease did not spend goes back to the shared limiter when the lease ends (its
/// lifetime passed), also under `accounting = "estimate"`,
/// where a request's own charge is never refunded.
#[test]
fn unused_slices_go_back_whatever_the_accounting() {
    for accounting in ["actual", "estimate"] {
        let toml = format!(
            "[default]\nstrategy = \"token_bucket\"\nlimits = {{ requests = \"100/1h\", tokens = \"10000/1h\" }}\naccounting = \"{accounting}\""
        );
        let settings = LeaseSettings {
            share: 0.2,
            lifetime: Duration::from_secs(1),
        };
        let (clock, shared, fleet) = fleet(&toml, 1, settings);
        runtime().block_on(async {
            let p = &fleet[0];
            let permit = p.try_acquire(&key(), Cost::request(300)).await.unwrap();
            let stats = shared.usage_stats(&key()).await.unwrap();
            // One slice out: 20 requests, 2 000 tokens.
            assert_eq!(stats.requests_remaining(), Some(80), "{accounting}");
            assert_eq!(stats.tokens_remaining(), Some(8_000), "{accounting}");
            p.record_usage(permit, Cost::request(100), &ResponseMeta::default())
                .await
                .unwrap();
            clock.advance(Duration::from_secs(1));
            // The expired lease goes back (spent: 1 request; 100 tokens under actual
            // accounting, the estimate's 300 under estimate), a new one is taken.
            let permit = p.try_acquire(&key(), Cost::request(300)).await.unwrap();
            drop(permit);
            let spent_tokens = if accounting == "actual" { 100 } else { 300 };
            let stats = shared.usage_stats(&key()).await.unwrap();
            // Refilled in 1 s: no request (100/h), 2 tokens (10 000/h).
            assert_eq!(
                stats.requests_remaining(),
                Some(100 - 1 - 20),
                "{accounting}"
            );
            assert_eq!(
                stats.tokens_remaining(),
                Some(10_000 - spent_tokens - 2_000 + 2),
                "{accounting}"
            );
        });
    }
}

/// A lease goes back as soon as it ends, counting a permit still in flight at its
/// estimate; the permit's refund reaches the shared limiter when it is recorded.
#[test]
fn a_lease_goes_back_at_once_and_its_permit_in_flight_reconciles_later() {
    let toml = "[default]\nstrategy = \"token_bucket\"\nlimits = { requests = \"100/1h\", tokens = \"10000/1h\" }";
    let settings = LeaseSettings {
        share: 0.2,
        lifetime: Duration::from_secs(1),
    };
    let (clock, shared, fleet) = fleet(toml, 1, settings);
    runtime().block_on(async {
        let p = &fleet[0];
        let in_flight = p.try_acquire(&key(), Cost::request(500)).await.unwrap();
        clock.advance(Duration::from_secs(2));
        let next = p.try_acquire(&key(), Cost::request(500)).await.unwrap();
        drop(next);
        // The first lease went back with 500 spent (5 tokens refilled in 2 s), a second
        // slice is out.
        let stats = shared.usage_stats(&key()).await.unwrap();
        assert_eq!(stats.tokens_remaining(), Some(10_000 - 500 - 2_000 + 5));
        p.record_usage(in_flight, Cost::request(200), &ResponseMeta::default())
            .await
            .unwrap();
        let stats = shared.usage_stats(&key()).await.unwrap();
        assert_eq!(stats.tokens_remaining(), Some(10_000 - 200 - 2_000 + 5));
    });
}

/// A server pause reported with a response ends the lease: the next request sees the
/// pause in the shared limiter instead of spending the rest of the slice.
#[test]
fn a_server_pause_ends_the_lease() {
    let toml = "[default]\nstrategy = \"token_bucket\"\nlimits = { rpm = 600 }";
    let (_clock, _shared, fleet) = fleet(toml, 1, LeaseSettings::default());
    runtime().block_on(async {
        let p = &fleet[0];
        let permit = p.try_acquire(&key(), Cost::request(0)).await.unwrap();
        let meta = ResponseMeta {
            retry_after: Some(Duration::from_secs(5)),
            ..ResponseMeta::default()
        };
        let record = p
            .record_usage(permit, Cost::request(0), &meta)
            .await
            .unwrap();
        assert!(record.paused_for.is_some());
        let d = p.try_acquire(&key(), Cost::request(0)).await.unwrap_err();
        assert!(matches!(d, Denial::Paused { .. }), "{d:?}");
    });
}

/// Keys with a concurrency limit are not leased: every request goes to the shared limiter.
#[test]
fn concurrency_limited_keys_are_not_leased() {
    let toml = "[default]\nstrategy = \"token_bucket\"\nlimits = { rpm = 600, concurrent = 2 }";
    let (_clock, shared, fleet) = fleet(toml, 1, LeaseSettings::default());
    runtime().block_on(async {
        let p = &fleet[0];
        let a = p.try_acquire(&key(), Cost::request(0)).await.unwrap();
        let stats = shared.usage_stats(&key()).await.unwrap();
        assert_eq!(stats.in_flight, 1);
        assert_eq!(stats.requests_remaining(), Some(599));
        drop(a);
    });
}

/// One step of a simulated fleet: after `gap_ms`, process `who` asks up to `burst` times at
/// once for one request of `tokens` tokens, and records `used_pct` % of each admitted
/// request's tokens at once. Process 0 acts rarely, so its lease may sit unspent while the
/// others spend the refill, then gives it back or spends it in one burst.
#[derive(Debug, Clone)]
struct Step {
    gap_ms: u64,
    who: usize,
    burst: u32,
    tokens: u64,
    used_pct: u64,
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let who = prop_oneof![1 => Just(0usize), 12 => 1usize..4];
    let burst = prop_oneof![4 => Just(1u32), 1 => 1u32..80];
    prop::collection::vec(
        (0u64..400, who, burst, 1u64..400, 0u64..=100).prop_map(
            |(gap_ms, who, burst, tokens, used_pct)| Step {
                gap_ms: if gap_ms < 300 { 0 } else { gap_ms },
                who,
                burst,
                tokens,
                used_pct,
            },
        ),
        50..400,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Requests and tokens admitted by every process together, in any interval, never
    /// exceed the token bucket's arrival curve plus N × slice per dimension.
    #[test]
    fn fleet_admissions_stay_within_the_limit_plus_the_lease_bound(
        n in 1usize..=4,
        share_pct in 1u64..=50,
        lifetime_ms in 50u64..5_000,
        steps in steps(),
    ) {
        let (rpm, tpm) = (120u64, 20_000u64);
        let toml = format!(
            "[default]\nstrategy = \"token_bucket\"\nlimits = {{ rpm = {rpm}, tpm = {tpm} }}"
        );
        let settings = LeaseSettings {
            share: share_pct as f64 / 100.0,
            lifetime: Duration::from_millis(lifetime_ms),
        };
        let (clock, _shared, fleet) = fleet(&toml, n, settings);
        let mut requests = Vec::new();
        let mut tokens = Vec::new();
        runtime().block_on(async {
            for s in &steps {
                clock.advance(Duration::from_millis(s.gap_ms));
                let p = &fleet[s.who % n];
                for _ in 0..s.burst {
                    let Ok(permit) = p.try_acquire(&key(), Cost::request(s.tokens)).await else {
                        break;
                    };
                    let used = s.tokens * s.used_pct / 100;
                    requests.push((us(&clock), 1));
                    tokens.push((us(&clock), used));
                    p.record_usage(permit, Cost::request(used), &ResponseMeta::default())
                        .await
                        .unwrap();
                }
            }
        });
        let minute_us = 60_000_000;
        let bound = |amount: u64| {
            let slice = ((amount as f64 * share_pct as f64 / 100.0).ceil() as u64).max(1);
            n as u64 * slice
        };
        let v = arrival_curve_violation(&requests, rpm + bound(rpm), rpm, minute_us);
        prop_assert!(v.is_none(), "requests: {}", v.unwrap());
        let v = arrival_curve_violation(&tokens, tpm + bound(tpm), tpm, minute_us);
        prop_assert!(v.is_none(), "tokens: {}", v.unwrap());
    }
}

/// `[redis.leased_capacity]` in a limiter config wraps the Redis limiter in leases (built
/// lazily: no Redis is reached here); a share out of range is refused naming the field.
#[test]
fn leased_capacity_in_the_redis_settings_builds_a_leased_limiter() {
    let toml = |share: &str| {
        format!(
            "backend = \"redis\"\n[redis]\nurl = \"redis://127.0.0.1:1/0\"\n[redis.leased_capacity]\nshare = {share}\nlifetime = \"500ms\"\n[default]\nlimits = {{ rpm = 600 }}"
        )
    };
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(0));
    let config = LimiterConfig::from_toml(&toml("0.1")).unwrap();
    let limiter = connector_hub::limiter::build_lazy(config, clock.clone()).unwrap();
    assert!(
        format!("{limiter:?}").starts_with("LeasedLimiter"),
        "{limiter:?}"
    );
    let config = LimiterConfig::from_toml(&toml("1.5")).unwrap();
    let e = connector_hub::limiter::build_lazy(config, clock).unwrap_err();
    assert!(e.to_string().contains("leased_capacity"), "{e}");
}
