//! Pass/fail thresholds of a scenario: `throttled_ratio = "< 0.01"`, `latency_p99 = "< 10s"`.
//!
//! A run is only useful in CI if it can fail. Each threshold names one summary metric (see
//! `reports/README.md`), a comparison and a value; `hub run` evaluates every threshold for
//! every limiter and exits 3 when one fails. Time values are written as durations and kept
//! in milliseconds, the unit of the summary's percentiles.

use std::fmt;

use crate::units::parse_duration;

/// How a threshold's metric is measured, which decides how its value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricUnit {
    /// A fraction: `0.01` or `1%`.
    Ratio,
    /// A time: a duration such as `"500ms"` or `"10s"`, kept in milliseconds.
    Millis,
    /// Tokens per minute: a plain number.
    TokensPerMinute,
}

/// Every metric a threshold may name, with its unit, in the order thresholds are reported.
///
/// - `throttled_ratio`: requests that saw at least one 429 / requests.
/// - `error_ratio`: requests that ended in a non-429 error / requests.
/// - `latency_p50` … `latency_p999`: corrected latency (end − intended start) percentiles.
/// - `service_p99`: service time (end − last send) p99.
/// - `limiter_wait_p99`: time spent waiting in the limiter, p99.
/// - `quota_utilisation`: the binding dimension's server-charged units / what the mock's
///   quota could admit over the run's span (a fraction, at most 1 for admitted traffic).
/// - `goodput_tpm`: tokens (prompt + completion) of completed requests per minute of the
///   run's span.
pub const METRICS: &[(&str, MetricUnit)] = &[
    ("throttled_ratio", MetricUnit::Ratio),
    ("error_ratio", MetricUnit::Ratio),
    ("latency_p50", MetricUnit::Millis),
    ("latency_p90", MetricUnit::Millis),
    ("latency_p99", MetricUnit::Millis),
    ("latency_p999", MetricUnit::Millis),
    ("service_p99", MetricUnit::Millis),
    ("limiter_wait_p99", MetricUnit::Millis),
    ("quota_utilisation", MetricUnit::Ratio),
    ("goodput_tpm", MetricUnit::TokensPerMinute),
];

/// The unit of `metric`, or `None` when it is not one of [`METRICS`].
pub fn metric_unit(metric: &str) -> Option<MetricUnit> {
    METRICS.iter().find(|(m, _)| *m == metric).map(|(_, u)| *u)
}

/// A comparison: the metric's value must be `op` the threshold's value to pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl Op {
    /// The operator as written: `<`, `<=`, `>`, `>=`.
    pub fn symbol(self) -> &'static str {
        match self {
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Ge => ">=",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.symbol())
    }
}

/// A threshold that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ThresholdError {
    /// The metric is not one of [`METRICS`].
    #[error("unknown metric {metric:?}, expected one of {}", metric_names())]
    UnknownMetric {
        /// The name as written.
        metric: String,
    },
    /// The expression does not start with `<`, `<=`, `>` or `>=`.
    #[error("invalid threshold {expr:?}: expected a comparison <, <=, > or >= then a value, e.g. \"< 0.01\"")]
    MissingOp {
        /// The expression as written.
        expr: String,
    },
    /// The value after the operator is not valid for the metric.
    #[error("invalid threshold {expr:?}: {reason}")]
    BadValue {
        /// The expression as written.
        expr: String,
        /// What the value must be.
        reason: String,
    },
}

fn metric_names() -> String {
    METRICS
        .iter()
        .map(|(m, _)| *m)
        .collect::<Vec<_>>()
        .join(", ")
}

/// One threshold: `metric op value`. `value` is in the metric's unit: a fraction for ratios,
/// milliseconds for times (written as durations, e.g. `"10s"` → 10000), tokens per minute
/// for `goodput_tpm`.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// The metric's name, one of [`METRICS`].
    pub metric: String,
    /// The comparison.
    pub op: Op,
    /// The bound, in the metric's unit (times in milliseconds).
    pub value: f64,
    /// The expression as written in the file, trimmed, e.g. `"< 10s"`.
    pub expr: String,
}

impl Threshold {
    /// Parses `expr` (e.g. `"< 0.01"`, `"<= 1%"`, `"< 10s"`, `">= 30000"`) for `metric`.
    pub fn parse(metric: &str, expr: &str) -> Result<Self, ThresholdError> {
        let unit = metric_unit(metric).ok_or_else(|| ThresholdError::UnknownMetric {
            metric: metric.to_owned(),
        })?;
        let trimmed = expr.trim();
        let (op, rest) = [("<=", Op::Le), (">=", Op::Ge), ("<", Op::Lt), (">", Op::Gt)]
            .into_iter()
            .find_map(|(sym, op)| trimmed.strip_prefix(sym).map(|rest| (op, rest.trim())))
            .ok_or_else(|| ThresholdError::MissingOp {
                expr: trimmed.to_owned(),
            })?;
        let bad = |reason: &str| ThresholdError::BadValue {
            expr: trimmed.to_owned(),
            reason: reason.to_owned(),
        };
        let value = match unit {
            MetricUnit::Millis => {
                if rest.parse::<f64>().is_ok() {
                    return Err(bad(
                        "a time needs a unit, e.g. \"500ms\" or \"10s\" (ns, us, ms, s, m, h)",
                    ));
                }
                parse_duration(rest)
                    .map_err(|e| bad(&e.to_string()))?
                    .as_secs_f64()
                    * 1e3
            }
            MetricUnit::Ratio => match rest.strip_suffix('%') {
                Some(pct) => parse_number(pct.trim()).map_err(bad)? / 100.0,
                None => parse_number(rest).map_err(bad)?,
            },
            MetricUnit::TokensPerMinute => parse_number(rest).map_err(bad)?,
        };
        Ok(Self {
            metric: metric.to_owned(),
            op,
            value,
            expr: trimmed.to_owned(),
        })
    }

    /// The metric's unit.
    pub fn unit(&self) -> MetricUnit {
        metric_unit(&self.metric).unwrap_or(MetricUnit::Ratio)
    }

    /// Whether `value` (in the metric's unit; milliseconds for times) passes. A NaN value
    /// (the metric could not be measured, e.g. a percentile with no sample) fails.
    pub fn check(&self, value: f64) -> bool {
        match self.op {
            Op::Lt => value < self.value,
            Op::Le => value <= self.value,
            Op::Gt => value > self.value,
            Op::Ge => value >= self.value,
        }
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.metric, self.expr)
    }
}

fn parse_number(s: &str) -> Result<f64, &'static str> {
    let v: f64 = s
        .parse()
        .map_err(|_| "expected a number after the comparison")?;
    if !v.is_finite() || v < 0.0 {
        return Err("the value must be a finite number >= 0");
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ops_and_units() {
        let t = Threshold::parse("throttled_ratio", " < 0.01 ").unwrap();
        assert_eq!((t.op, t.value, t.expr.as_str()), (Op::Lt, 0.01, "< 0.01"));
        let t = Threshold::parse("error_ratio", "<= 2%").unwrap();
        assert_eq!(t.op, Op::Le);
        assert!((t.value - 0.02).abs() < 1e-12);
        let t = Threshold::parse("latency_p99", "< 10s").unwrap();
        assert_eq!(t.value, 10_000.0);
        let t = Threshold::parse("limiter_wait_p99", "<500ms").unwrap();
        assert_eq!(t.value, 500.0);
        let t = Threshold::parse("goodput_tpm", ">= 30000").unwrap();
        assert_eq!((t.op, t.value), (Op::Ge, 30_000.0));
        let t = Threshold::parse("quota_utilisation", "> 0.9").unwrap();
        assert_eq!(t.op, Op::Gt);
    }

    #[test]
    fn check_applies_the_comparison_at_the_boundary() {
        let lt = Threshold::parse("throttled_ratio", "< 0.01").unwrap();
        assert!(lt.check(0.0099) && !lt.check(0.01) && !lt.check(f64::NAN));
        let le = Threshold::parse("throttled_ratio", "<= 0.01").unwrap();
        assert!(le.check(0.01) && !le.check(0.0101));
        let gt = Threshold::parse("goodput_tpm", "> 100").unwrap();
        assert!(gt.check(100.5) && !gt.check(100.0));
        let ge = Threshold::parse("goodput_tpm", ">= 100").unwrap();
        assert!(ge.check(100.0) && !ge.check(99.9) && !ge.check(f64::NAN));
    }

    #[test]
    fn rejects_bad_expressions_naming_the_value() {
        let e = Threshold::parse("latency_p99", "< 10")
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs a unit") && e.contains("\"< 10\""), "{e}");
        let e = Threshold::parse("latency_p99", "10s")
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected a comparison"), "{e}");
        let e = Threshold::parse("throttled_ratio", "< x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected a number"), "{e}");
        let e = Threshold::parse("throttled_ratio", "< -1")
            .unwrap_err()
            .to_string();
        assert!(e.contains(">= 0"), "{e}");
        let e = Threshold::parse("latency_p42", "< 1s")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("latency_p42") && e.contains("latency_p99"),
            "{e}"
        );
        assert!(Threshold::parse("latency_p99", "== 1s").is_err());
    }
}
