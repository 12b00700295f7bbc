//! `--fail-if` regression rules for `hub compare`: `<metric> <op> <threshold>`, where the
//! threshold is a relative change (`+10%`, `-5%`), an absolute change (`+0.01`, `+200ms`)
//! or an absolute value (`0.01`, `2s`), each judged against the first report given.

use std::fmt;
use std::str::FromStr;

use crate::harness::summary::LimiterSummary;
use crate::units::parse_duration;

/// The metrics a rule may name (values as [`LimiterSummary::metric`] gives them: ratios as
/// fractions, latencies in ms, goodput in tokens/min, rates in requests/s).
pub const METRICS: [&str; 13] = [
    "throttled_ratio",
    "error_ratio",
    "dropped_ratio",
    "latency_p50",
    "latency_p90",
    "latency_p99",
    "latency_p999",
    "service_p99",
    "limiter_wait_p99",
    "quota_utilisation",
    "goodput_tpm",
    "achieved_rate",
    "late_starts",
];

/// Whether `metric` is measured in milliseconds (so durations like `200ms` are accepted).
fn is_latency(metric: &str) -> bool {
    metric.starts_with("latency_") || metric.ends_with("_p99")
}

/// The value of `metric` for limiter `l` (see [`METRICS`]); `None` when it had no sample.
pub fn metric_value(l: &LimiterSummary, metric: &str) -> Option<f64> {
    match metric {
        "late_starts" => Some(l.late_starts as f64),
        other => l.metric(other),
    }
}

/// A comparison operator.
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
    /// Whether `left op right` holds.
    pub fn holds(self, left: f64, right: f64) -> bool {
        match self {
            Op::Lt => left < right,
            Op::Le => left <= right,
            Op::Gt => left > right,
            Op::Ge => left >= right,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }
}

/// What a rule's threshold is compared with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    /// Relative change vs the first report, in percent: `+10%` is `Relative(10.0)`.
    Relative(f64),
    /// Absolute change vs the first report, in the metric's unit: `+0.01`, `+200ms`.
    Delta(f64),
    /// The candidate's value itself, in the metric's unit: `0.01`, `2s`.
    Value(f64),
}

/// One `--fail-if` rule: the comparison is the *failure* condition.
#[derive(Debug, Clone, PartialEq)]
pub struct RegressionRule {
    /// Metric name, one of [`METRICS`].
    pub metric: String,
    /// The comparison.
    pub op: Op,
    /// The right-hand side.
    pub threshold: Threshold,
    /// The rule as written.
    pub text: String,
}

/// A `--fail-if` rule that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid --fail-if rule {rule:?}: {reason}")]
pub struct RuleParseError {
    /// The rule as written.
    pub rule: String,
    /// What is wrong with it.
    pub reason: String,
}

impl FromStr for RegressionRule {
    type Err = RuleParseError;

    /// Parses `<metric> <op> <threshold>`; spaces around the operator are optional.
    fn from_str(text: &str) -> Result<Self, RuleParseError> {
        let err = |reason: String| RuleParseError {
            rule: text.to_owned(),
            reason,
        };
        let s = text.trim();
        let metric_len = s
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(s.len());
        let metric = &s[..metric_len];
        if metric.is_empty() {
            return Err(err(
                "expected `<metric> <op> <threshold>`, e.g. `throttled_ratio > +10%`".into(),
            ));
        }
        if !METRICS.contains(&metric) {
            return Err(err(format!(
                "unknown metric {metric:?}; known metrics: {}",
                METRICS.join(", ")
            )));
        }
        let rest = s[metric_len..].trim_start();
        let (op, rest) = if let Some(r) = rest.strip_prefix(">=") {
            (Op::Ge, r)
        } else if let Some(r) = rest.strip_prefix("<=") {
            (Op::Le, r)
        } else if let Some(r) = rest.strip_prefix('>') {
            (Op::Gt, r)
        } else if let Some(r) = rest.strip_prefix('<') {
            (Op::Lt, r)
        } else {
            return Err(err(format!(
                "expected an operator (<, <=, > or >=) after {metric:?}"
            )));
        };
        let value = rest.trim();
        if value.is_empty() {
            return Err(err(
                "missing threshold: +N% (relative change), +N (absolute change) or N (value)"
                    .into(),
            ));
        }
        let threshold = parse_threshold(metric, value).map_err(err)?;
        Ok(RegressionRule {
            metric: metric.to_owned(),
            op,
            threshold,
            text: s.to_owned(),
        })
    }
}

fn parse_threshold(metric: &str, value: &str) -> Result<Threshold, String> {
    let (sign, magnitude) = match value.as_bytes()[0] {
        b'+' => (Some(1.0), &value[1..]),
        b'-' => (Some(-1.0), &value[1..]),
        _ => (None, value),
    };
    let magnitude = magnitude.trim();
    if let Some(number) = magnitude.strip_suffix('%') {
        let Some(sign) = sign else {
            return Err(format!(
                "{value:?}: a percentage is a relative change and needs a sign (+{magnitude} or -{magnitude}); write an absolute value as a plain number"
            ));
        };
        let n = parse_number(number.trim())
            .ok_or_else(|| format!("{value:?}: {number:?} is not a number"))?;
        return Ok(Threshold::Relative(sign * n));
    }
    let n = match parse_number(magnitude) {
        Some(n) => n,
        None if is_latency(metric) => parse_duration(magnitude)
            .map(|d| d.as_secs_f64() * 1_000.0)
            .map_err(|e| format!("{value:?}: {e}"))?,
        None => {
            return Err(format!(
                "{value:?} is not a number (+N%, +N or N; {metric} takes no unit)"
            ))
        }
    };
    Ok(match sign {
        Some(s) => Threshold::Delta(s * n),
        None => Threshold::Value(n),
    })
}

fn parse_number(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|n| n.is_finite() && *n >= 0.0)
}

/// `v` with up to 4 decimals, trailing zeros dropped: `0.0042`, `10`, `1949.7`.
fn fmt_short(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    let mut s = format!("{v:.4}");
    if s.contains('.') {
        while s.ends_with('0') {
            s.pop();
        }
        if s.ends_with('.') {
            s.pop();
        }
    }
    if s == "-0" {
        s = "0".to_owned();
    }
    s
}

fn fmt_signed(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "+inf" } else { "-inf" }.to_owned()
    } else if v >= 0.0 {
        format!("+{}", fmt_short(v))
    } else {
        fmt_short(v)
    }
}

impl RegressionRule {
    /// The quantity the rule compares for a candidate value `value` against the first
    /// report's `base`: the relative change in % (±infinity from a zero base to a nonzero
    /// value, 0 when both are zero), the absolute change, or the value itself.
    pub fn subject(&self, base: f64, value: f64) -> f64 {
        match self.threshold {
            Threshold::Relative(_) => {
                if base == 0.0 {
                    if value == 0.0 {
                        0.0
                    } else {
                        f64::INFINITY.copysign(value)
                    }
                } else {
                    (value - base) / base.abs() * 100.0
                }
            }
            Threshold::Delta(_) => value - base,
            Threshold::Value(_) => value,
        }
    }

    /// Whether the rule's failure condition holds for `value` against `base`.
    pub fn violated(&self, base: f64, value: f64) -> bool {
        let limit = match self.threshold {
            Threshold::Relative(n) | Threshold::Delta(n) | Threshold::Value(n) => n,
        };
        self.op.holds(self.subject(base, value), limit)
    }

    /// A one-line explanation of the comparison, e.g.
    /// `throttled_ratio 0.0062 -> 0.011 (change +77.4194 %) > +10%`.
    pub fn explain(&self, base: f64, value: f64) -> String {
        let subject = self.subject(base, value);
        let shown = match self.threshold {
            Threshold::Relative(_) => format!("change {} %", fmt_signed(subject)),
            Threshold::Delta(_) => format!("change {}", fmt_signed(subject)),
            Threshold::Value(_) => "value".to_owned(),
        };
        let limit = match self.threshold {
            Threshold::Relative(n) => format!("{}%", fmt_signed(n)),
            Threshold::Delta(n) => fmt_signed(n),
            Threshold::Value(n) => fmt_short(n),
        };
        format!(
            "{} {} -> {} ({shown}) {} {limit}",
            self.metric,
            fmt_short(base),
            fmt_short(value),
            self.op.as_str()
        )
    }
}

impl fmt::Display for RegressionRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(s: &str) -> RegressionRule {
        s.parse().unwrap()
    }

    #[test]
    fn parses_relative_delta_and_value_thresholds() {
        let r = rule("throttled_ratio > +10%");
        assert_eq!(r.metric, "throttled_ratio");
        assert_eq!(r.op, Op::Gt);
        assert_eq!(r.threshold, Threshold::Relative(10.0));
        assert_eq!(rule("goodput_tpm<-5%").threshold, Threshold::Relative(-5.0));
        assert_eq!(
            rule("throttled_ratio >= +0.01").threshold,
            Threshold::Delta(0.01)
        );
        assert_eq!(
            rule("throttled_ratio > 0.001").threshold,
            Threshold::Value(0.001)
        );
        assert_eq!(
            rule("latency_p99 > +200ms").threshold,
            Threshold::Delta(200.0)
        );
        assert_eq!(rule("latency_p99 > 2s").threshold, Threshold::Value(2000.0));
        assert_eq!(rule("quota_utilisation <= 0.95").op, Op::Le);
    }

    #[test]
    fn bad_rules_say_what_is_wrong() {
        let e = |s: &str| s.parse::<RegressionRule>().unwrap_err().to_string();
        assert!(e("throttle_ratio > +10%").contains("unknown metric \"throttle_ratio\""));
        assert!(e("throttled_ratio = 0.1").contains("expected an operator"));
        assert!(e("throttled_ratio >").contains("missing threshold"));
        assert!(e("throttled_ratio > 10%").contains("needs a sign"));
        assert!(e("throttled_ratio > +ten%").contains("is not a number"));
        assert!(e("goodput_tpm > 5ms").contains("takes no unit"));
        assert!(e("latency_p99 > 5parsecs").contains("invalid duration"));
        assert!(e("").contains("expected `<metric> <op> <threshold>`"));
    }

    #[test]
    fn relative_change_from_zero_is_infinite_unless_still_zero() {
        let r = rule("throttled_ratio > +10%");
        assert!(r.violated(0.0, 0.001));
        assert!(!r.violated(0.0, 0.0));
        assert!(r.violated(0.010, 0.0111));
        assert!(!r.violated(0.010, 0.0109));
        let drop = rule("goodput_tpm < -5%");
        assert!(drop.violated(1000.0, 940.0));
        assert!(!drop.violated(1000.0, 960.0));
    }

    #[test]
    fn explanations_are_short() {
        let r = rule("throttled_ratio > +10%");
        assert_eq!(
            r.explain(0.0, 0.004166666),
            "throttled_ratio 0 -> 0.0042 (change +inf %) > +10%"
        );
        assert_eq!(
            rule("latency_p99 > +200ms").explain(1000.0, 1100.5),
            "latency_p99 1000 -> 1100.5 (change +100.5) > +200"
        );
    }

    #[test]
    fn delta_and_value_rules_compare_what_they_say() {
        assert!(rule("latency_p99 > +200ms").violated(1000.0, 1201.0));
        assert!(!rule("latency_p99 > +200ms").violated(1000.0, 1200.0));
        assert!(rule("throttled_ratio > 0.01").violated(0.5, 0.02));
        assert!(!rule("throttled_ratio > 0.01").violated(0.0, 0.005));
    }
}
