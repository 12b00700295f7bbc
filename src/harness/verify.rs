//! `hub verify`: property-tests a scenario's limiter configurations. Random traces shaped
//! by the scenario's workload (its request costs, arrivals at about twice the tightest limit,
//! with bursts) are driven through the real [`KeyedLimiter`] on a manual clock, and what each
//! dimension admitted is checked by the library's invariant checkers
//! ([`invariants::check`]). The first violation is returned as a counterexample.

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::clock::{Clock, ManualClock, Nanos};
use crate::limiter::invariants::{self, Violation};
use crate::limiter::{ConfigError, Cost, KeyedLimiter, RateLimitType};

use super::scenario::Scenario;

/// What verifying one limiter found.
#[derive(Debug, Clone)]
pub struct VerifyOutcome {
    /// The `[[limiter]]` name.
    pub limiter: String,
    /// Traces run.
    pub cases: u32,
    /// Requests admitted over all traces.
    pub admitted: u64,
    /// The first counterexample, if any.
    pub counterexample: Option<Counterexample>,
}

/// A trace on which a dimension broke its strategy's bound.
#[derive(Debug, Clone)]
pub struct Counterexample {
    /// The trace's seed (rerun with it to reproduce).
    pub seed: u64,
    /// The dimension.
    pub dimension: RateLimitType,
    /// What was broken.
    pub violation: Violation,
    /// The admissions `(ns, cost)` of that dimension around the violation.
    pub excerpt: Vec<(Nanos, u64)>,
}

/// Requests per trace.
const TRACE_LEN: u64 = 400;

/// Verifies every limiter of `scenario` (the `none` baseline has nothing to verify) on
/// `cases` random traces each, seeded from `seed`.
pub fn verify(
    scenario: &Scenario,
    cases: u32,
    seed: u64,
) -> Result<Vec<VerifyOutcome>, ConfigError> {
    let key = scenario.limit_key();
    let mut out = Vec::new();
    for spec in &scenario.limiters {
        let (Some(strategy), Some(cfg)) = (spec.strategy, scenario.limiter_config(spec)) else {
            continue;
        };
        let Some(rule) = cfg.config_for(&key) else {
            continue;
        };
        let dims: Vec<_> = rule
            .dimensions()?
            .into_iter()
            .filter(|d| d.kind != RateLimitType::Concurrent)
            .collect();
        // Mean gap: half the tightest dimension's pace for an average request.
        let mean_cost =
            scenario.workload.prompt_tokens.mean() + scenario.workload.max_tokens as f64;
        let pace = dims
            .iter()
            .map(|d| {
                let cost = match d.kind.unit() {
                    crate::limiter::Unit::Requests => 1.0,
                    crate::limiter::Unit::Tokens => mean_cost,
                };
                cost / d.rate_per_nano()
            })
            .fold(1.0_f64, f64::max);
        let mut outcome = VerifyOutcome {
            limiter: spec.name.clone(),
            cases,
            admitted: 0,
            counterexample: None,
        };
        for case in 0..cases {
            let case_seed = seed ^ u64::from(case).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let clock = ManualClock::new(0);
            let limiter =
                KeyedLimiter::new(cfg.clone(), Arc::new(clock.clone()))?.with_seed(case_seed);
            let mut rng = SmallRng::seed_from_u64(case_seed);
            let mut traces = vec![Vec::new(); dims.len()];
            for i in 0..TRACE_LEN {
                // Mostly exponential gaps at twice the pace; now and then a burst (no gap).
                if !rng.random_bool(0.1) {
                    let gap = -(pace / 2.0) * (1.0 - rng.random::<f64>()).ln();
                    clock.advance(Duration::from_nanos(gap.min(1e15) as u64));
                }
                let shape = scenario.workload.shape(case_seed, i);
                let cost = Cost::request(shape.prompt_tokens + shape.max_tokens);
                if limiter.try_acquire_now(&key, cost).is_ok() {
                    outcome.admitted += 1;
                    let now = clock.now();
                    for (trace, d) in traces.iter_mut().zip(&dims) {
                        trace.push((now, d.kind.cost_of(cost)));
                    }
                }
            }
            let found = dims.iter().zip(&traces).find_map(|(d, trace)| {
                invariants::check(strategy, d, trace).map(|v| (d.kind, v, trace))
            });
            if let Some((dimension, violation, trace)) = found {
                let excerpt = trace
                    .iter()
                    .copied()
                    .filter(|(t, _)| *t >= violation.from && *t <= violation.to)
                    .take(50)
                    .collect();
                outcome.counterexample = Some(Counterexample {
                    seed: case_seed,
                    dimension,
                    violation,
                    excerpt,
                });
                break;
            }
        }
        out.push(outcome);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_limiter_configs_hold_their_invariants() {
        let text = r#"
            name = "v"
            seed = 1
            [provider]
            kind = "openai"
            target = "mock"
            model = "gpt-4o-mini"
            [[phase]]
            duration = "1s"
            arrival = { process = "constant", rate = "1/s" }
            [workload]
            prompt_tokens = { dist = "uniform", min = 10, max = 500 }
            max_tokens = 100
            [[limiter]]
            name = "tb"
            strategy = "token_bucket"
            limits = { rpm = 60, tpm = 10000 }
            [[limiter]]
            name = "log"
            strategy = "sliding_log"
            limits = { requests = "10/10s", tpm = 10000 }
            [[limiter]]
            name = "leaky"
            strategy = "leaky_bucket"
            limits = { rps = 2 }
            [[limiter]]
            name = "none"
            strategy = "none"
        "#;
        let s = Scenario::parse(text, "v.toml").unwrap();
        let outcomes = verify(&s, 16, 3).unwrap();
        assert_eq!(outcomes.len(), 3, "the baseline is skipped");
        for o in outcomes {
            assert!(o.admitted > 0, "{}: traces admit something", o.limiter);
            assert!(
                o.counterexample.is_none(),
                "{}: {:?}",
                o.limiter,
                o.counterexample
            );
        }
    }
}
