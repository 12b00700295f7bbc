//! Property tests of the limiter strategies, each named after the invariant it checks.
//!
//! Each drives the per-dimension state machines (`DimensionState`) directly with random
//! traces of (time step, cost) — windows from 1 ns (so emission intervals are rarely whole
//! nanoseconds) up to a minute — and checks what they admitted with the public checkers
//! of `connector_hub::limiter::invariants`, the same ones users and `hub verify` call.
//! (The multi-dimension all-or-nothing, refund and concurrency properties live with the
//! keyed limiter's tests, and the whole limiter is proved by the conformance kit in
//! `tests/limiter_conformance.rs`.)

use std::time::Duration;

use connector_hub::clock::Nanos;
use connector_hub::limiter::algorithm::DimensionState;
use connector_hub::limiter::config::{Limit, RateLimitType, Strategy as Algorithm};
use connector_hub::limiter::invariants::{self, Violation};
use connector_hub::limiter::leaky_bucket::PACING_TOLERANCE;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

const ALL: [Algorithm; 5] = [
    Algorithm::TokenBucket,
    Algorithm::Gcra,
    Algorithm::SlidingLog,
    Algorithm::SlidingCounter,
    Algorithm::LeakyBucket,
];

/// How a trace moves the clock before its next request.
#[derive(Debug, Clone, Copy)]
enum Move {
    /// By this many ns (negative = backwards).
    By(i64),
    /// To the last refusal's retry time plus this many ns, as a waiting caller does (the
    /// boundary cases: exactly on time, or a few ns late).
    Retry(u64),
}

/// One step of a trace: move the clock, then ask for `cost`.
type Step = (Move, u64);

/// A limit and a random trace scaled to it: steps are around one emission interval
/// (`window / amount`), so traces alternate between bursts, refusals and idle periods.
fn case(backwards: bool) -> impl Strategy<Value = (Limit, Vec<Step>)> {
    let window = prop_oneof![
        3 => 1u64..=5_000,
        1 => Just(10_000_000_000u64),
        1 => Just(60_000_000_000u64),
    ];
    (window, 1u64..=30)
        .prop_flat_map(|(window, amount)| (Just(window), Just(amount), 1..=amount))
        .prop_flat_map(move |(window, amount, burst)| {
            let interval = (window / amount).max(1) as i64;
            let max_step = interval.saturating_mul(3).saturating_add(2);
            let min_step = if backwards { -max_step * 4 } else { 0 };
            let step = prop_oneof![
                6 => (0..=max_step).prop_map(Move::By),
                1 => (min_step..=0).prop_map(Move::By),
                1 => Just(Move::By(interval)),
                1 => Just(Move::By(window as i64)),
                4 => (0u64..=3).prop_map(Move::Retry),
            ];
            let limit = Limit {
                kind: RateLimitType::RequestsPer(Duration::from_nanos(window)),
                amount,
                burst,
            };
            (
                Just(limit),
                prop::collection::vec((step, 0..=amount), 1..160),
            )
        })
}

/// A clock driven by [`Move`]s; never below 0.
#[derive(Debug, Clone, Copy)]
struct Clock {
    now: Nanos,
    /// The wait of the last refusal, for [`Move::Retry`].
    wait: Nanos,
}

impl Clock {
    fn new(now: Nanos) -> Self {
        Self { now, wait: 0 }
    }

    fn step(&mut self, m: Move) -> Nanos {
        self.now = match m {
            Move::By(d) => self.now.saturating_add_signed(d),
            Move::Retry(late) => self.now.saturating_add(self.wait).saturating_add(late),
        };
        self.now
    }

    /// Remembers a check's outcome for the next [`Move::Retry`].
    fn saw(&mut self, r: Result<(), Nanos>) {
        self.wait = match r {
            Err(w) if w != Nanos::MAX => w,
            _ => 0,
        };
    }
}

/// Runs `steps` from time `start`: check, and commit what fits. Returns the state, the
/// admissions stamped with the latest time the state was updated at (its effective time:
/// the time itself unless the clock went backwards), and the number of refusals.
fn drive(
    algo: Algorithm,
    limit: Limit,
    start: Nanos,
    steps: &[Step],
) -> (DimensionState, Vec<(Nanos, u64)>, Nanos) {
    let mut state = DimensionState::new(algo, limit, start);
    let (mut clock, mut latest) = (Clock::new(start), start);
    let mut admitted = Vec::new();
    for &(step, cost) in steps {
        let t = clock.step(step);
        let r = state.check(t, cost);
        clock.saw(r);
        if r.is_ok() {
            state.commit(t, cost);
            latest = latest.max(t);
            admitted.push((latest, cost));
        }
    }
    (state, admitted, clock.now)
}

fn no_violation(v: Option<Violation>) -> Result<(), TestCaseError> {
    match v {
        None => Ok(()),
        Some(v) => Err(TestCaseError::fail(v.to_string())),
    }
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/limiter_properties.txt",
        ))),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// Token bucket and GCRA: every interval of length t admits ≤ burst + r·t.
    #[test]
    fn arrival_curve_holds_for_token_bucket_and_gcra((limit, steps) in case(false)) {
        for algo in [Algorithm::TokenBucket, Algorithm::Gcra] {
            let (_, admitted, _) = drive(algo, limit, 0, &steps);
            no_violation(invariants::arrival_curve(&limit, &admitted))?;
        }
    }

    /// Sliding log: every window of length W admits ≤ amount, with ≤ amount entries kept,
    /// whatever refunds, extra charges and server clamps happen in between.
    #[test]
    fn sliding_log_admits_at_most_amount_in_every_window(
        (limit, steps) in case(false),
        reconcile in prop::collection::vec((0usize..160, -40i64..40, any::<bool>()), 0..20),
    ) {
        let (_, admitted, _) = drive(Algorithm::SlidingLog, limit, 0, &steps);
        no_violation(invariants::sliding_window(&limit, &admitted))?;

        let mut state = DimensionState::new(Algorithm::SlidingLog, limit, 0);
        let mut clock = Clock::new(0);
        for (i, &(step, cost)) in steps.iter().enumerate() {
            let t = clock.step(step);
            let r = state.check(t, cost);
            clock.saw(r);
            if r.is_ok() {
                state.commit(t, cost);
            }
            for &(_, delta, clamp) in reconcile.iter().filter(|r| r.0 == i) {
                if clamp {
                    state.clamp_remaining(t, delta.unsigned_abs());
                } else {
                    state.adjust(t, delta);
                }
            }
            let DimensionState::SlidingLog(log) = &state else { unreachable!() };
            prop_assert!(log.len() as u64 <= limit.amount, "{} entries", log.len());
        }
    }

    /// Sliding counter: aligned windows ≤ amount, any window ≤ amount + ⌊P·(σ−1)/W⌋ < 2·amount.
    #[test]
    fn sliding_counter_stays_within_its_documented_overshoot((limit, steps) in case(false)) {
        let (_, admitted, _) = drive(Algorithm::SlidingCounter, limit, 0, &steps);
        no_violation(invariants::counter_overshoot(&limit, &admitted))?;
    }

    /// Leaky bucket: admissions are paced at cost·T (1 ns tolerance, no drift); with unit
    /// costs that makes every window of length W hold ≤ amount.
    #[test]
    fn leaky_bucket_paces_admissions((limit, steps) in case(false)) {
        let (_, admitted, _) = drive(Algorithm::LeakyBucket, limit, 0, &steps);
        no_violation(invariants::pacing(&limit, &admitted, PACING_TOLERANCE))?;
        let units: Vec<Step> = steps.iter().map(|&(s, c)| (s, c.min(1))).collect();
        let (_, admitted, _) = drive(Algorithm::LeakyBucket, limit, 0, &units);
        no_violation(invariants::sliding_window(&limit, &admitted))?;
    }

    /// Every strategy: a refusal's wait is exact — still refused one ns before it, admitted
    /// exactly at it — also when the clock has gone backwards.
    #[test]
    fn retry_after_is_exact_for_every_strategy((limit, steps) in case(true)) {
        for algo in ALL {
            let mut state = DimensionState::new(algo, limit, 1_000_000);
            let mut clock = Clock::new(1_000_000);
            for &(step, cost) in &steps {
                let t = clock.step(step);
                let r = state.check(t, cost);
                clock.saw(r);
                match r {
                    Ok(()) => state.commit(t, cost),
                    Err(_) if cost > state.capacity() => {}
                    Err(wait) => {
                        prop_assert!(wait >= 1, "{algo:?}: zero wait");
                        let at = t + wait;
                        prop_assert!(state.check(at - 1, cost).is_err(),
                            "{algo:?}: cost {cost} admitted 1 ns before its wait {wait} at {t}");
                        prop_assert_eq!(state.check(at, cost), Ok(()),
                            "{:?}: cost {} refused at its wait {} from {}", algo, cost, wait, t);
                    }
                }
            }
        }
    }

    /// Token bucket, GCRA, sliding counter, leaky bucket: admitting n at once leaves the same
    /// observable state as n unit admissions (at the same instant; for the leaky bucket each
    /// at the slot the previous one was told to wait for).
    #[test]
    fn weighted_equals_repeated(
        (limit, steps) in case(false),
        n in 1u64..=30,
        probes in prop::collection::vec((0u64..=3_000, 0u64..=30), 1..12),
    ) {
        for algo in [
            Algorithm::TokenBucket,
            Algorithm::Gcra,
            Algorithm::SlidingCounter,
            Algorithm::LeakyBucket,
        ] {
            let (prefix, _, t) = drive(algo, limit, 0, &steps);
            let n = n.min(prefix.capacity());
            // Wait until n fits, then admit it both ways.
            let t = t + prefix.check(t, n).err().unwrap_or(0);
            prop_assert_eq!(prefix.check(t, n), Ok(()));
            let mut weighted = prefix.clone();
            weighted.commit(t, n);
            let mut repeated = prefix.clone();
            let mut at = t;
            for k in 0..n {
                if algo == Algorithm::LeakyBucket {
                    at += repeated.check(at, 1).err().unwrap_or(0);
                }
                prop_assert_eq!(repeated.check(at, 1), Ok(()), "{:?}: unit {} of {} refused", algo, k, n);
                repeated.commit(at, 1);
            }
            let interval = limit.kind.window().map_or(1, |w| w.as_nanos() as u64) / limit.amount;
            for &(p, cost) in &probes {
                let probe = at + p * interval.max(1) / 100;
                prop_assert_eq!(weighted.check(probe, cost), repeated.check(probe, cost), "{:?}", algo);
                prop_assert_eq!(weighted.remaining(probe), repeated.remaining(probe), "{:?}", algo);
                prop_assert_eq!(weighted.reset_after(probe), repeated.reset_after(probe), "{:?}", algo);
            }
        }
    }

    /// Every strategy: a clock going backwards never panics, never admits what the latest
    /// time seen (by any call) would refuse, and the admissions, stamped with the latest
    /// time the state was updated at, still satisfy the strategy's bound.
    #[test]
    fn clock_going_backwards_never_panics_nor_admits_extra((limit, steps) in case(true)) {
        for algo in ALL {
            let start = 1_000_000;
            let mut state = DimensionState::new(algo, limit, start);
            let (mut clock, mut seen, mut updated) = (Clock::new(start), start, start);
            let mut admitted = Vec::new();
            for &(step, cost) in &steps {
                let t = clock.step(step);
                seen = seen.max(t);
                let _ = (state.remaining(t), state.reset_after(t));
                let r = state.check(t, cost);
                clock.saw(r);
                if r.is_ok() {
                    prop_assert_eq!(state.check(seen, cost), Ok(()),
                        "{:?}: admitted at {} what the latest time seen {} refuses", algo, t, seen);
                    state.commit(t, cost);
                    updated = updated.max(t);
                    admitted.push((updated, cost));
                }
            }
            no_violation(invariants::check(algo, &limit, &admitted))?;
        }
    }

    /// With a clock that does not go backwards, GCRA and the token bucket are the same
    /// machine: same decisions, waits, remaining and reset times, through refunds, extra
    /// charges, server clamps and resets.
    #[test]
    fn token_bucket_and_gcra_are_the_same_machine(
        (limit, steps) in case(false),
        ops in prop::collection::vec((0u8..8, -40i64..40), 160),
    ) {
        let mut tb = DimensionState::new(Algorithm::TokenBucket, limit, 0);
        let mut gcra = DimensionState::new(Algorithm::Gcra, limit, 0);
        let mut clock = Clock::new(0);
        for (&(step, cost), &(op, delta)) in steps.iter().zip(&ops) {
            let t = clock.step(step);
            let r = tb.check(t, cost);
            clock.saw(r);
            prop_assert_eq!(r, gcra.check(t, cost));
            prop_assert_eq!(tb.remaining(t), gcra.remaining(t));
            prop_assert_eq!(tb.reset_after(t), gcra.reset_after(t));
            match op {
                0 => { tb.adjust(t, delta); gcra.adjust(t, delta); }
                1 => {
                    tb.clamp_remaining(t, delta.unsigned_abs());
                    gcra.clamp_remaining(t, delta.unsigned_abs());
                }
                2 if delta == 0 => { tb.reset(t); gcra.reset(t); }
                _ if tb.check(t, cost).is_ok() => { tb.commit(t, cost); gcra.commit(t, cost); }
                _ => {}
            }
        }
    }

    /// No input makes a strategy panic: any limit (zero or huge amounts and windows), any
    /// time (backwards, near `u64::MAX`), any cost, any reconciliation.
    #[test]
    fn no_input_makes_a_strategy_panic(
        amount in prop_oneof![Just(0u64), Just(1), Just(u64::MAX), any::<u64>()],
        burst in prop_oneof![Just(0u64), Just(1), Just(u64::MAX), any::<u64>()],
        window in prop_oneof![Just(0u64), Just(1), Just(u64::MAX), any::<u64>()],
        ops in prop::collection::vec(
            (0u8..7, prop_oneof![Just(0u64), Just(u64::MAX), any::<u64>(), 0u64..1_000],
             prop_oneof![Just(i64::MIN), Just(i64::MAX), any::<i64>()]),
            1..40),
    ) {
        let limit = Limit {
            kind: RateLimitType::TokensPer(Duration::from_nanos(window)),
            amount,
            burst,
        };
        for algo in ALL {
            let mut s = DimensionState::new(algo, limit, ops[0].1);
            for &(op, x, d) in &ops {
                match op {
                    0 => { let _ = s.check(x, d.unsigned_abs()); }
                    1 => s.commit(x, d.unsigned_abs()),
                    2 => s.adjust(x, d),
                    3 => { let _ = (s.remaining(x), s.reset_after(x), s.capacity()); }
                    4 => s.clamp_remaining(x, d.unsigned_abs()),
                    5 => s.reset(x),
                    _ => {
                        if s.check(x, 1).is_ok() {
                            s.commit(x, 1);
                        }
                    }
                }
            }
        }
    }
}
