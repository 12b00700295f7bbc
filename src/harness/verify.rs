//! `hub verify`: proves a scenario's limiter configurations with the library's conformance
//! kit ([`conformance::check`]). Each `[[limiter]]` runs on the real [`KeyedLimiter`] on a
//! manual clock through adversarial traces — saturation with retries at exactly each
//! returned wait and 1 ns before it, weighted costs near capacity, each dimension in turn
//! refusing, refunds and extra charges, a clock going backwards, idle gaps then bursts,
//! queued and cancelled `acquire` waiters — mixed with the scenario's own request costs.
//! Every [`Property`](conformance::Property) is checked; the first failure comes back
//! shrunk to a minimal counterexample.

use std::sync::Arc;

use crate::clock::ManualClock;
use crate::limiter::conformance::{
    self, ConformanceError, Counterexample, Options, Report, Subject,
};
use crate::limiter::{Backend, ConfigError, Cost, KeyedLimiter};

use super::scenario::{LimiterSpec, Scenario};

/// What verifying one limiter found.
#[derive(Debug, Clone)]
pub struct VerifyOutcome {
    /// The `[[limiter]]` name.
    pub limiter: String,
    /// Traces asked for.
    pub cases: u32,
    /// What the passing traces did (all of them, when nothing failed).
    pub report: Report,
    /// The first property broken, shrunk; `None` when every property held.
    pub counterexample: Option<Box<Counterexample>>,
}

impl VerifyOutcome {
    /// Requests admitted over the passing traces.
    pub fn admitted(&self) -> u64 {
        self.report.admitted
    }
}

/// How many of the scenario's request shapes the traces draw costs from.
const WORKLOAD_SAMPLE: u64 = 256;

/// The conformance options for `scenario`: `cases` traces seeded from `seed`, with the
/// scenario's request costs (prompt + `max_tokens`) mixed into the adversarial ones.
pub fn options(scenario: &Scenario, cases: u32, seed: u64) -> Options {
    let workload = (0..WORKLOAD_SAMPLE)
        .map(|i| {
            let shape = scenario.workload.shape(seed, i);
            Cost::request(shape.prompt_tokens + shape.max_tokens)
        })
        .collect();
    Options {
        traces: cases,
        seed,
        workload,
        ..Options::default()
    }
}

/// The limiters of `scenario` worth proving (the `none` baseline has nothing to prove), each
/// with the subject the conformance kit checks it against: the scenario's key and the
/// limiter's resolved limits.
pub fn subjects(scenario: &Scenario) -> Result<Vec<(&LimiterSpec, Subject)>, ConfigError> {
    let key = scenario.limit_key();
    let mut out = Vec::new();
    for spec in &scenario.limiters {
        let Some(limit) = &spec.limit else { continue };
        out.push((spec, Subject::from_config(key.clone(), limit)?));
    }
    Ok(out)
}

/// Proves every limiter of `scenario` on the in-memory backend, on `cases` traces each,
/// seeded from `seed`. A limiter with only a concurrency limit has no rate to prove and is
/// reported with zero traces.
pub fn verify(
    scenario: &Scenario,
    cases: u32,
    seed: u64,
) -> Result<Vec<VerifyOutcome>, ConfigError> {
    let options = options(scenario, cases, seed);
    let mut out = Vec::new();
    for (spec, subject) in subjects(scenario)? {
        let Some(mut config) = scenario.limiter_config(spec) else {
            continue;
        };
        // Virtual time: always in memory, whatever the scenario runs live on.
        config.backend = Backend::Memory;
        config.redis = None;
        let clock = ManualClock::new(0);
        let guarded = conformance::GuardedClock::new(clock.clone());
        let limiter = KeyedLimiter::new(config, Arc::new(guarded))?.with_seed(seed);
        let result =
            futures::executor::block_on(conformance::check(&limiter, &clock, &subject, &options));
        out.push(outcome(spec, cases, result));
    }
    Ok(out)
}

/// The outcome of one limiter's conformance run.
pub(crate) fn outcome(
    spec: &LimiterSpec,
    cases: u32,
    result: Result<Report, ConformanceError>,
) -> VerifyOutcome {
    let (report, counterexample) = match result {
        Ok(report) => (report, None),
        Err(ConformanceError::Violated(c)) => (Report::default(), Some(c)),
        Err(ConformanceError::NothingToProve { .. }) => (Report::default(), None),
    };
    VerifyOutcome {
        limiter: spec.name.clone(),
        cases,
        report,
        counterexample,
    }
}

/// The outcome as `hub verify` prints it: one line for a pass, the property and its
/// minimal counterexample for a failure.
pub fn render(o: &VerifyOutcome) -> String {
    match &o.counterexample {
        None => {
            let r = &o.report;
            format!(
                "{}: {} traces, {} steps: {} admitted, {} refused, {} exact-wait probes, {} \
                 reconciled, {} queued, {} with the clock back: every property holds",
                o.limiter,
                r.traces,
                r.steps,
                r.admitted,
                r.refused,
                r.exact_waits,
                r.reconciled,
                r.queued,
                r.backwards
            )
        }
        Some(c) => format!("{}: FAILED — {c}", o.limiter),
    }
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
            assert!(o.admitted() > 0, "{}: traces admit something", o.limiter);
            assert!(
                o.report.exact_waits > 0,
                "{}: exact waits probed",
                o.limiter
            );
            assert!(o.counterexample.is_none(), "{}", render(&o));
            assert!(render(&o).ends_with("every property holds"));
        }
    }
}
