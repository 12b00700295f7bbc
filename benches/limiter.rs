//! Limiter benches: what one `try_acquire` costs, per strategy, against `governor`'s `check`
//! measured in the same run as the anchor.
//!
//! Groups (all single-dimension unless named otherwise; every limit is large enough that
//! every call is admitted, so the admitting path is what is measured, as governor's own
//! benches do):
//! - `state/<strategy>`: `DimensionState::check` + `commit`, one thread, time from a
//!   counter advancing 1 µs per call against 1000 per 1 ms (the pure state machine: no
//!   clock, no lock, no key lookup);
//! - `keyed/<strategy>`: `KeyedLimiter::try_acquire_now` on one key, real clock
//!   (`SystemClock`), one thread; `keyed/governor_direct_check` is the anchor;
//! - `two_threads/<strategy>`: two threads hammering one key at once; the time is wall
//!   time per call per thread (what each caller sees under contention);
//! - `keys_10k/<strategy>`: calls spread round-robin over 10 000 keys (lookup in a map of
//!   10 000 states), with governor's keyed `check_key` over the same keys;
//! - `rpm_tpm/<strategy>`: two dimensions (requests and tokens) admitted all-or-nothing.
//!
//! Run: `cargo bench --bench limiter -- --warm-up-time 1 --measurement-time 3`; medians are
//! in `target/criterion/<group>/<id>/new/estimates.json`.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use connector_hub::clock::{Clock, SystemClock};
use connector_hub::limiter::algorithm::DimensionState;
use connector_hub::limiter::config::{Limit, LimiterConfig, RateLimitType, Strategy};
use connector_hub::limiter::{Cost, KeyedLimiter, LimitKey};
use criterion::{criterion_group, criterion_main, Criterion};
use governor::{Quota, RateLimiter as Governor};

const STRATEGIES: [(Strategy, &str); 5] = [
    (Strategy::TokenBucket, "token_bucket"),
    (Strategy::Gcra, "gcra"),
    (Strategy::SlidingLog, "sliding_log"),
    (Strategy::SlidingCounter, "sliding_counter"),
    (Strategy::LeakyBucket, "leaky_bucket"),
];

/// 10^10 requests per second, in 10-ms windows: every call in these benches fits, and
/// the sliding log holds only the calls of the last 10 ms.
const REQUESTS: &str = "100000000/10ms";

/// Panics unless `call` admits 10 000 times in a row: the benches measure admission.
fn assert_admits(name: &str, mut call: impl FnMut() -> bool) {
    assert!(
        (0..10_000).all(|_| call()),
        "{name}: the bench limit refused a call"
    );
}

/// A limiter for provider `bench` (any model) with `limits` under `strategy`.
fn keyed(strategy: &str, limits: &str) -> KeyedLimiter {
    let toml = format!(
        "[[key]]\nprovider = \"bench\"\nlimit = {{ strategy = \"{strategy}\", limits = {limits} }}\n"
    );
    let config = LimiterConfig::from_toml(&toml).expect("bench config is valid");
    KeyedLimiter::new(config, Arc::new(SystemClock::new())).expect("bench limits are valid")
}

/// Governor's direct limiter with a quota no bench reaches (it never refuses).
fn governor_direct() -> governor::DefaultDirectRateLimiter {
    Governor::direct(Quota::per_second(NonZeroU32::MAX))
}

fn state_machines(c: &mut Criterion) {
    let mut g = c.benchmark_group("state");
    let limit = Limit {
        kind: RateLimitType::RequestsPer(Duration::from_millis(1)),
        amount: 2000,
        burst: 2000,
    };
    for (strategy, name) in STRATEGIES {
        let mut state = DimensionState::new(strategy, limit, 0);
        let mut now = 0u64;
        assert_admits(name, || {
            now += 1_000;
            let ok = state.check(now, 1).is_ok();
            state.commit(now, 1);
            ok
        });
        g.bench_function(name, |b| {
            b.iter(|| {
                now += 1_000;
                let ok = state.check(black_box(now), 1).is_ok();
                if ok {
                    state.commit(now, 1);
                }
                ok
            })
        });
    }
    g.finish();
}

fn single_key(c: &mut Criterion) {
    let mut g = c.benchmark_group("keyed");
    let key = LimitKey::new("bench", "model");
    for (_, name) in STRATEGIES {
        let limiter = keyed(name, &format!("{{ requests = \"{REQUESTS}\" }}"));
        assert_admits(name, || {
            limiter.try_acquire_now(&key, Cost::request(0)).is_ok()
        });
        g.bench_function(name, |b| {
            b.iter(|| {
                limiter
                    .try_acquire_now(black_box(&key), Cost::request(0))
                    .is_ok()
            })
        });
    }
    let gov = governor_direct();
    g.bench_function("governor_direct_check", |b| b.iter(|| gov.check().is_ok()));
    g.finish();
}

/// Wall time per call per thread, two threads each making `iters` calls at once.
fn two_threads_time(iters: u64, call: &(dyn Fn() -> bool + Sync)) -> Duration {
    let barrier = Barrier::new(2);
    std::thread::scope(|s| {
        let worker = || {
            barrier.wait();
            let start = Instant::now();
            for _ in 0..iters {
                black_box(call());
            }
            start.elapsed()
        };
        let other = s.spawn(worker);
        let mine = worker();
        mine.max(other.join().expect("bench thread does not panic"))
    })
}

fn two_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("two_threads");
    let key = LimitKey::new("bench", "model");
    for (_, name) in STRATEGIES {
        let limiter = keyed(name, &format!("{{ requests = \"{REQUESTS}\" }}"));
        let call = || limiter.try_acquire_now(&key, Cost::request(0)).is_ok();
        assert_admits(name, call);
        g.bench_function(name, |b| {
            b.iter_custom(|iters| two_threads_time(iters, &call))
        });
    }
    let gov = governor_direct();
    let call = || gov.check().is_ok();
    g.bench_function("governor_direct_check", |b| {
        b.iter_custom(|iters| two_threads_time(iters, &call))
    });
    g.finish();
}

fn ten_thousand_keys(c: &mut Criterion) {
    let mut g = c.benchmark_group("keys_10k");
    let keys: Vec<LimitKey> = (0..10_000)
        .map(|i| LimitKey::new("bench", format!("model-{i}")))
        .collect();
    for (_, name) in STRATEGIES {
        let limiter = keyed(name, &format!("{{ requests = \"{REQUESTS}\" }}"));
        let mut all = keys.iter();
        assert_admits(name, || {
            let k = all.next().expect("10 000 keys");
            limiter.try_acquire_now(k, Cost::request(0)).is_ok()
        });
        let mut i = 0;
        g.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) % keys.len();
                limiter.try_acquire_now(&keys[i], Cost::request(0)).is_ok()
            })
        });
    }
    let gov = Governor::keyed(Quota::per_second(NonZeroU32::MAX));
    for k in &keys {
        let _ = gov.check_key(k);
    }
    let mut i = 0;
    g.bench_function("governor_keyed_check_key", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            gov.check_key(&keys[i]).is_ok()
        })
    });
    g.finish();
}

fn rpm_tpm(c: &mut Criterion) {
    let mut g = c.benchmark_group("rpm_tpm");
    let key = LimitKey::new("bench", "model");
    for (_, name) in STRATEGIES {
        let limiter = keyed(
            name,
            &format!("{{ requests = \"{REQUESTS}\", tokens = \"100000000000/10ms\" }}"),
        );
        assert_admits(name, || {
            limiter.try_acquire_now(&key, Cost::request(700)).is_ok()
        });
        g.bench_function(name, |b| {
            b.iter(|| {
                limiter
                    .try_acquire_now(&key, Cost::request(black_box(700)))
                    .is_ok()
            })
        });
    }
    g.finish();
}

/// The real clock alone, to read the keyed numbers against (the state benches use none).
fn clock_read(c: &mut Criterion) {
    let clock = SystemClock::new();
    c.bench_function("system_clock_now", |b| b.iter(|| clock.now()));
}

mod group {
    //! The criterion group; `criterion_group!` generates an undocumented `pub fn`.
    #![allow(missing_docs)]
    use super::*;

    criterion_group!(
        benches,
        state_machines,
        single_key,
        two_threads,
        ten_thousand_keys,
        rpm_tpm,
        clock_read
    );
}
criterion_main!(group::benches);
