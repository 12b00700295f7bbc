//! Limiter benches: what one `try_acquire` costs, per strategy, against `governor`'s `check`
//! measured in the same run as the anchor.
//!
//! Groups (all single-dimension unless named otherwise; every limit is large enough that
//! every call is admitted, so the admitting path is what is measured, as governor's own
//! benches do). Both sides run the same quota — 1 request per nanosecond, burst
//! 10 000 000 (`10000000/10ms` here, `Quota::with_period(1 ns).allow_burst(10^7)` for
//! governor) — on the same real-time source (the CPU's time-stamp counter: `TscClock`
//! here, `quanta` in governor), with the same keys and threads:
//! - `state/<strategy>`: `DimensionState::check` + `commit`, one thread, time from a
//!   counter advancing 1 µs per call against 1000 per 1 ms (the pure state machine: no
//!   clock, no lock, no key lookup);
//! - `keyed/<strategy>`: one key, one thread, through a `KeyHandle` resolved once
//!   (`try_acquire_handle`; governor's direct limiter has no key either);
//!   `keyed/token_bucket_by_key` looks the key up on every call (`try_acquire_now`);
//!   `keyed/governor_direct_check` is the anchor;
//! - `two_threads/<strategy>`: two threads hammering one key at once through one handle;
//!   the time is wall time per call per thread (what each caller sees under contention);
//! - `keys_10k/<strategy>`: calls spread round-robin over 10 000 keys, each call looking
//!   its key up (`try_acquire_now`), against governor's keyed `check_key` over the same
//!   keys — with its default hasher (`governor_keyed_check_key`) and with the Fx hasher
//!   this limiter uses (`governor_keyed_check_key_fx`);
//! - `rpm_tpm/<strategy>`: two dimensions (requests and tokens) admitted all-or-nothing,
//!   through a handle; governor has no multi-dimension check, so its anchor is the
//!   single-dimension `keyed/governor_direct_check`.
//!
//! Run: `cargo bench --bench limiter -- --warm-up-time 1 --measurement-time 3`; medians are
//! in `target/criterion/<group>/<id>/new/estimates.json`.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use connector_hub::clock::{Clock, SystemClock, TscClock};
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

/// 10^9 requests per second (1 per ns), burst 10^7, in 10-ms windows: every call in these
/// benches fits, and the sliding log holds only the calls of the last 10 ms.
const REQUESTS: &str = "10000000/10ms";

/// [`REQUESTS`] for governor: one cell per nanosecond, burst 10^7.
fn governor_quota() -> Quota {
    Quota::with_period(Duration::from_nanos(1))
        .expect("1 ns is a valid period")
        .allow_burst(NonZeroU32::new(10_000_000).expect("non-zero"))
}

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
    let clock = TscClock::new();
    assert!(clock.reads_counter(), "the benches compare TSC clocks");
    KeyedLimiter::new(config, Arc::new(clock)).expect("bench limits are valid")
}

/// Governor's direct limiter with the benches' quota.
fn governor_direct() -> governor::DefaultDirectRateLimiter {
    Governor::direct(governor_quota())
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
        let handle = limiter.handle(&key);
        assert_admits(name, || {
            limiter
                .try_acquire_handle(&handle, Cost::request(0))
                .is_ok()
        });
        g.bench_function(name, |b| {
            b.iter(|| {
                limiter
                    .try_acquire_handle(black_box(&handle), Cost::request(0))
                    .is_ok()
            })
        });
    }
    let limiter = keyed("token_bucket", &format!("{{ requests = \"{REQUESTS}\" }}"));
    assert_admits("token_bucket_by_key", || {
        limiter.try_acquire_now(&key, Cost::request(0)).is_ok()
    });
    g.bench_function("token_bucket_by_key", |b| {
        b.iter(|| {
            limiter
                .try_acquire_now(black_box(&key), Cost::request(0))
                .is_ok()
        })
    });
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
        let handle = limiter.handle(&key);
        let call = || {
            limiter
                .try_acquire_handle(&handle, Cost::request(0))
                .is_ok()
        };
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
    let gov = Governor::keyed(governor_quota());
    for k in &keys {
        assert!(gov.check_key(k).is_ok(), "governor admits");
    }
    let mut i = 0;
    g.bench_function("governor_keyed_check_key", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            gov.check_key(&keys[i]).is_ok()
        })
    });
    let gov = Governor::dashmap_with_clock_and_hasher(
        governor_quota(),
        governor::clock::DefaultClock::default(),
        rustc_hash::FxBuildHasher,
    );
    for k in &keys {
        assert!(gov.check_key(k).is_ok(), "governor admits");
    }
    let mut i = 0;
    g.bench_function("governor_keyed_check_key_fx", |b| {
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
        let handle = limiter.handle(&key);
        assert_admits(name, || {
            limiter
                .try_acquire_handle(&handle, Cost::request(700))
                .is_ok()
        });
        g.bench_function(name, |b| {
            b.iter(|| {
                limiter
                    .try_acquire_handle(&handle, Cost::request(black_box(700)))
                    .is_ok()
            })
        });
    }
    g.finish();
}

/// The real clocks alone, to read the keyed numbers against (the state benches use none):
/// the OS clock, the TSC clock, and the raw `quanta` read governor makes.
fn clock_read(c: &mut Criterion) {
    let clock = SystemClock::new();
    c.bench_function("system_clock_now", |b| b.iter(|| clock.now()));
    let clock = TscClock::new();
    c.bench_function("tsc_clock_now", |b| b.iter(|| clock.now()));
    let clock = quanta::Clock::new();
    c.bench_function("quanta_now", |b| b.iter(|| clock.now()));
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
