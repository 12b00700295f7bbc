//! `hub tune`: which setting of one limiter parameter gives the most goodput without
//! breaking a constraint such as `throttled_ratio <= 0.001`?
//!
//! Each candidate value is one deterministic simulation ([`simulate`]) of the scenario
//! with only that limiter, on the scenario's seed, so two values are compared on exactly
//! the same traffic. The search itself is [`search`], a pure function; this module turns a
//! value into a limiter config, a simulation into a score, and the best value back into a
//! `[[limiter]]` block to paste into a scenario or a limiter config.

pub mod search;

use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use super::runner::RunError;
use super::scenario::{Quota, Scenario};
use super::sim::{simulate, SimOptions};
use super::summary::LimiterSummary;
use super::thresholds::{Threshold, ThresholdError, METRICS};
use crate::limiter::{ConfigError, RateLimitConfig};
use search::{Budget, Probe, Space};

/// The limiter parameter being tuned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    /// `headroom`: the fraction of every limit used, default range `[0.5, 1]`.
    Headroom,
    /// `limits.rpm`: requests per minute, default range half to 1.5 × the quota's RPM
    /// (or the limiter's own when the scenario has no quota).
    Rpm,
    /// `limits.tpm`: tokens per minute, default range as for `rpm`.
    Tpm,
    /// `limits.itpm`: input tokens per minute, default range half to 1.5 × the limiter's
    /// own.
    Itpm,
    /// `limits.otpm`: output tokens per minute, default range as for `itpm`.
    Otpm,
    /// `burst`: the fraction of a window's amount that may be spent at once, `[0.05, 1]`.
    Burst,
}

impl Param {
    /// The parameter's name as written in a `[[limiter]]` block.
    pub fn name(self) -> &'static str {
        match self {
            Self::Headroom => "headroom",
            Self::Rpm => "rpm",
            Self::Tpm => "tpm",
            Self::Itpm => "itpm",
            Self::Otpm => "otpm",
            Self::Burst => "burst",
        }
    }

    fn integer(self) -> bool {
        matches!(self, Self::Rpm | Self::Tpm | Self::Itpm | Self::Otpm)
    }

    /// Sets the parameter to `value` (rounded for whole-number limits).
    fn apply(self, cfg: &mut RateLimitConfig, value: f64) {
        match self {
            Self::Headroom => cfg.headroom = value,
            Self::Burst => cfg.burst = Some(value),
            Self::Rpm => cfg.limits.rpm = Some(value.round() as u64),
            Self::Tpm => cfg.limits.tpm = Some(value.round() as u64),
            Self::Itpm => cfg.limits.itpm = Some(value.round() as u64),
            Self::Otpm => cfg.limits.otpm = Some(value.round() as u64),
        }
    }

    fn default_range(self, cfg: &RateLimitConfig, quota: Option<Quota>) -> Option<(f64, f64)> {
        let around = |base: Option<u64>| {
            base.map(|b| {
                (
                    (b as f64 * 0.5).round().max(1.0),
                    (b as f64 * 1.5).round().max(2.0),
                )
            })
        };
        match self {
            Self::Headroom => Some((0.5, 1.0)),
            Self::Burst => Some((0.05, 1.0)),
            Self::Rpm => around(quota.and_then(|q| q.rpm).or(cfg.limits.rpm)),
            Self::Tpm => around(quota.and_then(|q| q.tpm).or(cfg.limits.tpm)),
            Self::Itpm => around(cfg.limits.itpm),
            Self::Otpm => around(cfg.limits.otpm),
        }
    }

    /// The value as it is written back into TOML.
    fn toml_value(self, value: f64) -> toml::Value {
        if self.integer() {
            toml::Value::Integer(value.round() as i64)
        } else {
            toml::Value::Float((value * 1e4).round() / 1e4)
        }
    }
}

impl FromStr for Param {
    type Err = TuneError;

    fn from_str(s: &str) -> Result<Self, TuneError> {
        match s {
            "headroom" => Ok(Self::Headroom),
            "rpm" => Ok(Self::Rpm),
            "tpm" => Ok(Self::Tpm),
            "itpm" => Ok(Self::Itpm),
            "otpm" => Ok(Self::Otpm),
            "burst" => Ok(Self::Burst),
            _ => Err(TuneError::UnknownParam(s.to_owned())),
        }
    }
}

impl fmt::Display for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the search optimises: a summary metric (see [`METRICS`]), maximised for
/// throughput metrics (`goodput_tpm`, `quota_utilisation`, `achieved_rate`) and minimised
/// for the rest (ratios and latencies). `goodput` is short for `goodput_tpm`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Objective {
    /// The summary metric.
    pub metric: String,
    /// Larger is better.
    pub maximise: bool,
}

impl FromStr for Objective {
    type Err = TuneError;

    fn from_str(s: &str) -> Result<Self, TuneError> {
        let metric = if s == "goodput" { "goodput_tpm" } else { s };
        let known = METRICS.iter().any(|(m, _)| *m == metric) || metric == "achieved_rate";
        if !known {
            return Err(TuneError::UnknownObjective(s.to_owned()));
        }
        Ok(Self {
            metric: metric.to_owned(),
            maximise: matches!(
                metric,
                "goodput_tpm" | "quota_utilisation" | "achieved_rate"
            ),
        })
    }
}

impl fmt::Display for Objective {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = if self.maximise { "max" } else { "min" };
        write!(f, "{} ({how})", self.metric)
    }
}

/// Parses a constraint such as `"throttled_ratio <= 0.001"` or `"latency_p99 < 5s"`.
pub fn parse_constraint(s: &str) -> Result<Threshold, TuneError> {
    let at = s.find(['<', '>']).ok_or_else(|| TuneError::Constraint {
        text: s.to_owned(),
        source: ThresholdError::MissingOp { expr: s.to_owned() },
    })?;
    Threshold::parse(s[..at].trim(), &s[at..]).map_err(|source| TuneError::Constraint {
        text: s.to_owned(),
        source,
    })
}

/// Parses a range written `LO..HI`.
pub fn parse_range(s: &str) -> Result<(f64, f64), TuneError> {
    let bad = || TuneError::Range(s.to_owned());
    let (lo, hi) = s.split_once("..").ok_or_else(bad)?;
    let (lo, hi): (f64, f64) = (
        lo.trim().parse().map_err(|_| bad())?,
        hi.trim().parse().map_err(|_| bad())?,
    );
    if !(lo.is_finite() && hi.is_finite() && lo < hi) {
        return Err(bad());
    }
    Ok((lo, hi))
}

/// Why `hub tune` could not search.
#[derive(Debug, thiserror::Error)]
pub enum TuneError {
    /// `--param` is not one of the tunable parameters.
    #[error("unknown parameter `{0}`: expected headroom, rpm, tpm, itpm, otpm or burst")]
    UnknownParam(String),
    /// `--objective` is not a summary metric.
    #[error("unknown objective `{0}`: expected goodput or one of the summary metrics (goodput_tpm, quota_utilisation, achieved_rate, throttled_ratio, latency_p99, …)")]
    UnknownObjective(String),
    /// A `--constraint` does not parse.
    #[error("constraint `{text}`: {source}")]
    Constraint {
        /// The constraint as given.
        text: String,
        /// Why it does not parse.
        source: ThresholdError,
    },
    /// `--range` is not `LO..HI` with `LO < HI`.
    #[error("range `{0}`: expected LO..HI with LO < HI, e.g. 300..900")]
    Range(String),
    /// `--tie` is not a fraction in `[0, 1)`.
    #[error("tie {0} must be a fraction within 0..1, e.g. 0.005 for 0.5 %")]
    Tie(f64),
    /// The scenario has no limiter of that name.
    #[error("the scenario has no limiter named `{0}`")]
    UnknownLimiter(String),
    /// The `none` baseline has nothing to tune.
    #[error("limiter `{0}` is the `none` baseline: it has no parameter to tune")]
    Baseline(String),
    /// No default range for this parameter: the scenario says nothing to centre it on.
    #[error("no default range for {0}: give --range LO..HI")]
    NoRange(Param),
    /// An end of the range makes an invalid limiter config.
    #[error("{param} = {value} is not a valid setting: {source}")]
    Invalid {
        /// The parameter.
        param: Param,
        /// The value.
        value: f64,
        /// The config's complaint.
        source: ConfigError,
    },
    /// A simulation failed.
    #[error("simulating {param} = {value}: {source}")]
    Run {
        /// The parameter.
        param: Param,
        /// The value.
        value: f64,
        /// The failure.
        source: RunError,
    },
    /// The trials of an earlier tune in the output directory could not be removed.
    #[error("cannot clear earlier trials in {}: {source}", path.display())]
    Trials {
        /// The `trials` directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The scenario text cannot be turned back into a `[[limiter]]` block.
    #[error("cannot write the best limiter block: {0}")]
    Block(String),
}

/// How `hub tune` searches.
#[derive(Debug, Clone)]
pub struct TuneOptions {
    /// The limiter whose parameter is tuned.
    pub limiter: String,
    /// The parameter.
    pub param: Param,
    /// The range searched; `None` for the parameter's default range.
    pub range: Option<(f64, f64)>,
    /// What to optimise.
    pub objective: Objective,
    /// Every constraint must hold for a value to be feasible.
    pub constraints: Vec<Threshold>,
    /// Simulations spent on the grid and on refinement.
    pub budget: Budget,
    /// Where each trial's report goes (`trials/NN-VALUE/`) and the best block is written.
    pub out: PathBuf,
    /// Virtual time in-flight requests may finish after the last arrival.
    pub drain: Duration,
}

/// One simulated value.
#[derive(Debug, Clone)]
pub struct Trial {
    /// The parameter's value.
    pub value: f64,
    /// The objective's value, `None` when it could not be measured.
    pub objective: Option<f64>,
    /// Each constraint's measured value (`None` = not measurable, which fails).
    pub measured: Vec<Option<f64>>,
    /// Every constraint held and the objective was measured.
    pub feasible: bool,
}

/// The outcome of a search.
#[derive(Debug, Clone)]
pub struct Tuning {
    /// Every trial, in the order simulated.
    pub trials: Vec<Trial>,
    /// Index into `trials` of the best feasible value, if any.
    pub best: Option<usize>,
    /// The range searched.
    pub range: (f64, f64),
    /// The tuned `[[limiter]]` block (TOML), with the best value, if any.
    pub block: Option<String>,
}

impl Tuning {
    /// The table of trials, sorted by value, the best marked with `*`.
    pub fn table(&self, opts: &TuneOptions) -> String {
        let mut out = format!("| | {} | {} |", opts.param, opts.objective.metric);
        for c in &opts.constraints {
            let _ = write!(out, " {} |", c.metric);
        }
        out.push_str(" feasible |\n|---|---:|---:|");
        out.push_str(&"---:|".repeat(opts.constraints.len()));
        out.push_str("---|\n");
        let mut order: Vec<usize> = (0..self.trials.len()).collect();
        order.sort_by(|&a, &b| self.trials[a].value.total_cmp(&self.trials[b].value));
        let num = |v: Option<f64>| match v {
            None => "–".to_owned(),
            Some(v) if v.abs() >= 100.0 => format!("{v:.1}"),
            Some(v) => format!("{v:.4}"),
        };
        for i in order {
            let t = &self.trials[i];
            let mark = if self.best == Some(i) { "*" } else { "" };
            let _ = write!(
                out,
                "| {mark} | {} | {} |",
                fmt_value(t.value),
                num(t.objective)
            );
            for m in &t.measured {
                let _ = write!(out, " {} |", num(*m));
            }
            let _ = writeln!(out, " {} |", if t.feasible { "yes" } else { "no" });
        }
        out
    }
}

fn fmt_value(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{}", (v * 1e4).round() / 1e4)
    }
}

/// Searches for the value of `opts.param` that optimises the objective within the
/// constraints, one simulation of `scenario` per value tried.
pub fn tune(scenario: &Scenario, opts: &TuneOptions) -> Result<Tuning, TuneError> {
    if !(0.0..1.0).contains(&opts.budget.tie) {
        return Err(TuneError::Tie(opts.budget.tie));
    }
    let index = scenario
        .limiters
        .iter()
        .position(|l| l.name == opts.limiter)
        .ok_or_else(|| TuneError::UnknownLimiter(opts.limiter.clone()))?;
    let base = scenario.limiters[index]
        .limit
        .clone()
        .ok_or_else(|| TuneError::Baseline(opts.limiter.clone()))?;
    let (lo, hi) = match opts.range {
        Some(r) => r,
        None => opts
            .param
            .default_range(&base, scenario.provider.quota)
            .ok_or(TuneError::NoRange(opts.param))?,
    };
    let with_value = |value: f64| -> Result<RateLimitConfig, TuneError> {
        let mut cfg = base.clone();
        opts.param.apply(&mut cfg, value);
        cfg.dimensions().map_err(|source| TuneError::Invalid {
            param: opts.param,
            value,
            source,
        })?;
        Ok(cfg)
    };
    with_value(lo)?;
    with_value(hi)?;
    // Trials of an earlier tune into the same directory would sit beside this one's.
    let trials_dir = opts.out.join("trials");
    match std::fs::remove_dir_all(&trials_dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(TuneError::Trials {
                path: trials_dir,
                source: e,
            })
        }
        _ => {}
    }

    let mut trials: Vec<Trial> = Vec::new();
    let space = Space::new(lo, hi, opts.param.integer());
    let probes = search::search(space, opts.budget, |value| {
        let mut s = scenario.clone();
        s.limiters[index].limit = Some(with_value(value)?);
        let dir = trial_dir(&opts.out, trials.len(), value);
        let sim = SimOptions {
            out: dir,
            limiter: Some(opts.limiter.clone()),
            requests_csv: false,
            drain: opts.drain,
        };
        let summary = simulate(&s, &sim).map_err(|source| TuneError::Run {
            param: opts.param,
            value,
            source,
        })?;
        let trial = judge(value, &summary.limiters[0], opts);
        let score = trial
            .feasible
            .then_some(trial.objective)
            .flatten()
            .map(|v| if opts.objective.maximise { v } else { -v });
        trials.push(trial);
        Ok(score)
    })?;
    let best = search::best(&probes, opts.budget.tie)
        .and_then(|b: Probe| trials.iter().position(|t| t.value == b.value));
    let block = match best {
        Some(i) => Some(limiter_block(
            scenario,
            opts,
            trials[i].value,
            trials.len(),
        )?),
        None => None,
    };
    Ok(Tuning {
        trials,
        best,
        range: (lo, hi),
        block,
    })
}

fn trial_dir(out: &Path, n: usize, value: f64) -> PathBuf {
    out.join("trials")
        .join(format!("{n:02}-{}", fmt_value(value)))
}

fn judge(value: f64, l: &LimiterSummary, opts: &TuneOptions) -> Trial {
    let objective = l.metric(&opts.objective.metric).filter(|v| v.is_finite());
    let measured: Vec<Option<f64>> = opts
        .constraints
        .iter()
        .map(|c| l.metric(&c.metric))
        .collect();
    let holds = opts
        .constraints
        .iter()
        .zip(&measured)
        .all(|(c, m)| m.is_some_and(|v| c.check(v)));
    Trial {
        value,
        objective,
        measured,
        feasible: holds && objective.is_some(),
    }
}

/// The scenario's own `[[limiter]]` table for `opts.limiter`, with the tuned value, as a
/// TOML block headed by a comment saying where it came from.
fn limiter_block(
    scenario: &Scenario,
    opts: &TuneOptions,
    value: f64,
    trials: usize,
) -> Result<String, TuneError> {
    let bad = |m: &str| TuneError::Block(m.to_owned());
    let mut doc: toml::Table = scenario
        .text
        .parse()
        .map_err(|e: toml::de::Error| bad(e.message()))?;
    let limiters = doc
        .remove("limiter")
        .and_then(|v| match v {
            toml::Value::Array(a) => Some(a),
            _ => None,
        })
        .ok_or_else(|| bad("the scenario has no [[limiter]] array"))?;
    let mut table = limiters
        .into_iter()
        .filter_map(|v| match v {
            toml::Value::Table(t) => Some(t),
            _ => None,
        })
        .find(|t| t.get("name").and_then(|n| n.as_str()) == Some(opts.limiter.as_str()))
        .ok_or_else(|| bad("the limiter's table is not in the scenario text"))?;
    let v = opts.param.toml_value(value);
    match opts.param {
        Param::Headroom | Param::Burst => {
            table.insert(opts.param.name().to_owned(), v);
        }
        Param::Rpm | Param::Tpm | Param::Itpm | Param::Otpm => {
            let limits = table
                .entry("limits")
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let toml::Value::Table(limits) = limits else {
                return Err(bad("the limiter's `limits` is not a table"));
            };
            limits.insert(opts.param.name().to_owned(), v);
        }
    }
    let mut wrapper = toml::Table::new();
    wrapper.insert(
        "limiter".to_owned(),
        toml::Value::Array(vec![toml::Value::Table(table)]),
    );
    let body = toml::to_string(&wrapper).map_err(|e| bad(&e.to_string()))?;
    let constraints: Vec<String> = opts.constraints.iter().map(|c| c.to_string()).collect();
    Ok(format!(
        "# hub tune: {} = {} gives the best {} with {} ({} simulations of scenario {:?}, seed {})\n{body}",
        opts.param,
        fmt_value(value),
        opts.objective,
        if constraints.is_empty() {
            "no constraint".to_owned()
        } else {
            constraints.join(", ")
        },
        trials,
        scenario.name,
        scenario.seed,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_constraint_splits_at_its_comparison() {
        let c = parse_constraint("throttled_ratio <= 0.001").expect("valid");
        assert_eq!(c.metric, "throttled_ratio");
        assert!(c.check(0.001) && !c.check(0.0011));
        let l = parse_constraint("latency_p99<5s").expect("valid");
        assert!(l.check(4999.0) && !l.check(5000.0));
        assert!(matches!(
            parse_constraint("throttled_ratio 0.1"),
            Err(TuneError::Constraint { .. })
        ));
        assert!(matches!(
            parse_constraint("nonsense < 1"),
            Err(TuneError::Constraint { .. })
        ));
    }

    #[test]
    fn goodput_is_maximised_and_latency_minimised() {
        let g: Objective = "goodput".parse().expect("known");
        assert_eq!(g.metric, "goodput_tpm");
        assert!(g.maximise);
        assert!(!"latency_p99".parse::<Objective>().expect("known").maximise);
        assert!("speed".parse::<Objective>().is_err());
    }

    #[test]
    fn ranges_need_two_ordered_numbers() {
        assert_eq!(parse_range("300..900").expect("valid"), (300.0, 900.0));
        for bad in ["900..300", "300", "a..b", "1..1"] {
            assert!(parse_range(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn request_limits_default_around_the_quota() {
        let cfg = RateLimitConfig::default();
        let quota = Quota {
            rpm: Some(600),
            ..Quota::default()
        };
        assert_eq!(
            Param::Rpm.default_range(&cfg, Some(quota)),
            Some((300.0, 900.0))
        );
        assert_eq!(Param::Tpm.default_range(&cfg, Some(quota)), None);
    }

    #[test]
    fn input_and_output_token_limits_are_tunable_around_the_limiters_own() {
        let mut cfg = RateLimitConfig::default();
        cfg.limits.otpm = Some(8000);
        assert_eq!("otpm".parse::<Param>().expect("a param"), Param::Otpm);
        assert_eq!("itpm".parse::<Param>().expect("a param"), Param::Itpm);
        assert_eq!(
            Param::Otpm.default_range(&cfg, None),
            Some((4000.0, 12000.0))
        );
        assert_eq!(Param::Itpm.default_range(&cfg, None), None);
        Param::Itpm.apply(&mut cfg, 2999.6);
        assert_eq!(cfg.limits.itpm, Some(3000));
        assert_eq!(Param::Itpm.toml_value(2999.6), toml::Value::Integer(3000));
    }
}
