//! `hub verify`: proves a scenario's limiter configurations with the library's conformance
//! kit ([`conformance::check`]). Each `[[limiter]]` runs on the real [`KeyedLimiter`] on a
//! manual clock through adversarial traces — saturation with retries at exactly each
//! returned wait and 1 ns before it, weighted costs near capacity, each dimension in turn
//! refusing, refunds and extra charges, a clock going backwards, idle gaps then bursts,
//! queued and cancelled `acquire` waiters — mixed with the scenario's own request costs.
//! Every [`Property`](conformance::Property) is checked; the first failure comes back
//! shrunk to a minimal counterexample.
//!
//! [`verify_redis`] proves the same limits on the Redis backend, on Redis's own clock and
//! in real time ([`conformance::check_server_clock`], whose docs say which properties
//! apply there and why). Waiting out minute-long windows would take hours, so the limits
//! are compressed in time: every window divided by the same factor (rounded down to whole
//! microseconds, Redis's resolution), amounts and bursts unchanged — the same shapes,
//! faster.

use std::sync::Arc;

use std::time::Duration;

use crate::clock::{ManualClock, SystemClock};
use crate::limiter::conformance::{
    self, ConformanceError, Counterexample, Options, Report, Subject,
};
use crate::limiter::redis::{ConnectError, RedisLimiter, RedisSettings};
use crate::limiter::{
    Backend, ConfigError, Cost, KeyRule, KeyedLimiter, LimiterConfig, Limits, RateLimitConfig, Unit,
};
use crate::units::Rate;

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
            // Split as the admission estimate is: the prompt (input) and `max_tokens` (output).
            Cost::request(0).with_split(shape.prompt_tokens, shape.max_tokens)
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

/// Why [`verify_redis`] could not run.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A limit is invalid, cannot be compressed, or cannot run on Redis.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Redis could not be reached or set up.
    #[error(transparent)]
    Connect(#[from] ConnectError),
}

/// The longest window after compression, by default: long enough for the client's timer
/// (about a millisecond) to aim probes at, short enough to wait out many times.
pub const COMPRESSED_WINDOW: Duration = Duration::from_millis(100);

/// The factor that brings the longest window of `scenario`'s limiters down to
/// [`COMPRESSED_WINDOW`] (1 when it already is).
pub fn time_scale(scenario: &Scenario) -> Result<u32, ConfigError> {
    let mut longest = Duration::ZERO;
    for (_, subject) in subjects(scenario)? {
        for l in subject.rates() {
            longest = longest.max(l.kind.window().unwrap_or_default());
        }
    }
    let f = longest
        .as_nanos()
        .div_ceil(COMPRESSED_WINDOW.as_nanos())
        .max(1);
    Ok(u32::try_from(f).unwrap_or(u32::MAX))
}

/// `config` with every window divided by `factor` (rounded down to whole µs, at least
/// 1 µs) and the same amounts and bursts: resolved dimensions are written back as one
/// window per unit — requests, tokens, input tokens, output tokens — (headroom 1, the same
/// burst fraction), so a limit with two dimensions of one unit cannot be compressed.
pub fn compress(config: &RateLimitConfig, factor: u32) -> Result<RateLimitConfig, ConfigError> {
    let dims = config.dimensions()?;
    let mut limits = Limits::default();
    for d in &dims {
        let Some(w) = d.kind.window() else {
            limits.concurrent = Some(d.amount);
            continue;
        };
        let per = Duration::from_micros(
            u64::try_from((w / factor.max(1)).as_micros())
                .unwrap_or(u64::MAX)
                .max(1),
        );
        let rate = Some(Rate {
            amount: d.amount as f64,
            per,
        });
        let slot = match d.kind.unit() {
            Unit::Requests => &mut limits.requests,
            Unit::Tokens => &mut limits.tokens,
            Unit::InputTokens => &mut limits.input_tokens,
            Unit::OutputTokens => &mut limits.output_tokens,
        };
        if slot.is_some() {
            return Err(ConfigError::Invalid {
                field: "limits",
                value: format!("{} and another {:?} dimension", d.kind, d.kind.unit()),
                reason: "time compression (hub verify --backend redis) takes one dimension per \
                         unit (requests, tokens, input tokens, output tokens); use --time-scale 1",
            });
        }
        *slot = rate;
    }
    let compressed = RateLimitConfig {
        limits,
        headroom: 1.0,
        max_wait: config.max_wait.map(|w| w / factor.max(1)),
        ..config.clone()
    };
    // The same amounts and bursts as the original's resolved dimensions.
    let same = compressed
        .dimensions()?
        .iter()
        .map(|l| (l.kind.unit(), l.amount, l.burst))
        .eq(dims.iter().map(|l| (l.kind.unit(), l.amount, l.burst)));
    if !same {
        return Err(ConfigError::Invalid {
            field: "burst",
            value: format!("{:?}", config.burst),
            reason: "the compressed limits would not keep the same bursts",
        });
    }
    Ok(compressed)
}

/// Proves every limiter of `scenario` on the Redis at `url`, on Redis's clock, with its
/// windows divided by `factor` ([`time_scale`] when `None`); `cases` traces of a few
/// episodes each, seeded from `seed`. Each limiter gets a fresh key prefix. Returns the
/// factor used and the outcomes.
pub async fn verify_redis(
    scenario: &Scenario,
    cases: u32,
    seed: u64,
    url: &str,
    factor: Option<u32>,
) -> Result<(u32, Vec<VerifyOutcome>), VerifyError> {
    let factor = match factor {
        Some(f) => f.max(1),
        None => time_scale(scenario)?,
    };
    let options = Options {
        episodes: 8,
        ..options(scenario, cases, seed)
    };
    let key = scenario.limit_key();
    let mut out = Vec::new();
    for (spec, _) in subjects(scenario)? {
        let Some(limit) = &spec.limit else { continue };
        let limit = compress(limit, factor)?;
        let subject = Subject::from_config(key.clone(), &limit)?;
        let config = LimiterConfig {
            default: None,
            keys: vec![KeyRule {
                provider: key.provider.to_string(),
                model: Some(key.model.to_string()),
                deployment: key.deployment.as_ref().map(|d| d.to_string()),
                limit,
            }],
            backend: Backend::Redis,
            redis: None,
        };
        let settings = RedisSettings::new(url).with_key_prefix(format!(
            "hub:verify:{}:{}:{:016x}",
            scenario.name,
            spec.name,
            rand::random::<u64>()
        ));
        let limiter = RedisLimiter::connect(config, settings, Arc::new(SystemClock::new())).await?;
        let result = conformance::check_server_clock(&limiter, &subject, &options).await;
        out.push(outcome(spec, cases, result));
    }
    Ok((factor, out))
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
            let by: Vec<String> = r
                .refused_by
                .iter()
                .map(|(d, n)| format!("{n} on {d}"))
                .collect();
            let by = if by.is_empty() {
                String::new()
            } else {
                format!(" (waits: {})", by.join(", "))
            };
            format!(
                "{}: {} traces, {} steps: {} admitted, {} refused{by}, {} exact-wait probes, {} \
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
    fn compress_keeps_input_and_output_token_dimensions_and_charge_at() {
        let cfg = RateLimitConfig::from_toml(
            "limits = { rpm = 60, itpm = 6000, otpm = 2000 }\ncharge_at = { output = \"usage\" }",
        )
        .unwrap();
        let c = compress(&cfg, 600).unwrap();
        let kinds: Vec<_> = c
            .dimensions()
            .unwrap()
            .iter()
            .map(|l| (l.kind, l.amount))
            .collect();
        let w = Duration::from_millis(100);
        use crate::limiter::RateLimitType::*;
        assert_eq!(
            kinds,
            [
                (RequestsPer(w), 60),
                (InputTokensPer(w), 6000),
                (OutputTokensPer(w), 2000)
            ]
        );
        assert_eq!(c.charge_at, cfg.charge_at);
        let two =
            RateLimitConfig::from_toml("limits = { otpm = 60, output_tokens = \"5/1s\" }").unwrap();
        assert!(compress(&two, 10).is_err(), "one field per unit");
    }

    #[test]
    fn compress_divides_windows_and_keeps_amounts_and_bursts() {
        let cfg = RateLimitConfig::from_toml(
            "limits = { rpm = 60, tpm = 40000 }\nheadroom = 0.95\nburst = 0.5",
        )
        .unwrap();
        let c = compress(&cfg, 600).unwrap();
        let d = c.dimensions().unwrap();
        let kinds: Vec<_> = d.iter().map(|l| l.kind).collect();
        assert_eq!(
            kinds,
            [
                crate::limiter::RateLimitType::RequestsPer(Duration::from_millis(100)),
                crate::limiter::RateLimitType::TokensPer(Duration::from_millis(100)),
            ]
        );
        let resolved = cfg.dimensions().unwrap();
        for (a, b) in d.iter().zip(&resolved) {
            assert_eq!((a.amount, a.burst), (b.amount, b.burst));
        }
        // Rounded down to whole microseconds (Redis's resolution).
        let c = compress(&cfg, 7).unwrap();
        assert_eq!(
            c.dimensions().unwrap()[0].kind.window(),
            Some(Duration::from_micros(8_571_428))
        );
        // Two request dimensions cannot share one `requests` field.
        let two = RateLimitConfig::from_toml("limits = { rps = 5, rpm = 60 }").unwrap();
        let e = compress(&two, 10).unwrap_err();
        assert!(e.to_string().contains("--time-scale 1"), "{e}");
        assert!(
            compress(&two, 1).is_err(),
            "even unscaled: one field per unit"
        );
    }

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
