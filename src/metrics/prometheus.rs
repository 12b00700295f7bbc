//! Prometheus text exposition (format 0.0.4) of [`SeriesSnapshot`]s.

use std::fmt::Write as _;

use super::{Quantiles, SeriesSnapshot};

/// Renders `snap` as counters `hub_requests_total`, `hub_successes_total`,
/// `hub_errors_total{class}`, `hub_rate_limited_total{dimension}`,
/// `hub_tokens_total{direction}` and summaries in seconds (from the snapshots' µs)
/// `hub_latency_seconds`, `hub_ttft_seconds`, `hub_limiter_wait_seconds` with quantiles
/// 0.5, 0.9, 0.99, `_sum` and `_count`; every series labelled `provider` and `model`
/// (values escaped per the format).
pub(super) fn render(snap: &[SeriesSnapshot]) -> String {
    let mut out = String::new();
    let mut counter = |name: &str, help: &str, rows: Vec<(String, u64)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (labels, v) in rows {
            let _ = writeln!(out, "{name}{{{labels}}} {v}");
        }
    };
    let base = |s: &SeriesSnapshot| {
        format!(
            "provider=\"{}\",model=\"{}\"",
            escape(&s.provider),
            escape(&s.model)
        )
    };
    counter(
        "hub_requests_total",
        "Provider calls.",
        snap.iter().map(|s| (base(s), s.requests)).collect(),
    );
    counter(
        "hub_successes_total",
        "Provider calls that returned a response.",
        snap.iter().map(|s| (base(s), s.successes)).collect(),
    );
    counter(
        "hub_errors_total",
        "Failed provider calls by error class.",
        snap.iter()
            .flat_map(|s| {
                s.errors
                    .iter()
                    .map(move |(c, v)| (format!("{},class=\"{c}\"", base(s)), *v))
            })
            .collect(),
    );
    counter(
        "hub_rate_limited_total",
        "429 rate-limit errors by quota dimension.",
        snap.iter()
            .flat_map(|s| {
                s.rate_limited
                    .iter()
                    .map(move |(d, v)| (format!("{},dimension=\"{d}\"", base(s)), *v))
            })
            .collect(),
    );
    counter(
        "hub_tokens_total",
        "Tokens of successful calls by direction.",
        snap.iter()
            .flat_map(|s| {
                [
                    (format!("{},direction=\"in\"", base(s)), s.tokens_in),
                    (format!("{},direction=\"out\"", base(s)), s.tokens_out),
                ]
            })
            .collect(),
    );
    for (name, help, pick) in [
        (
            "hub_latency_seconds",
            "Provider call latency.",
            (|s: &SeriesSnapshot| s.latency) as fn(&SeriesSnapshot) -> Quantiles,
        ),
        ("hub_ttft_seconds", "Time to first token.", |s| s.ttft),
        (
            "hub_limiter_wait_seconds",
            "Time waited in the rate limiter.",
            |s| s.limiter_wait,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} summary");
        for s in snap {
            let q = pick(s);
            let labels = base(s);
            for (quantile, v) in [("0.5", q.p50), ("0.9", q.p90), ("0.99", q.p99)] {
                let _ = writeln!(
                    out,
                    "{name}{{{labels},quantile=\"{quantile}\"}} {}",
                    seconds(v)
                );
            }
            let _ = writeln!(out, "{name}_sum{{{labels}}} {}", seconds(q.sum));
            let _ = writeln!(out, "{name}_count{{{labels}}} {}", q.count);
        }
    }
    out
}

fn seconds(us: u64) -> f64 {
    us as f64 / 1e6
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped_and_summaries_are_in_seconds() {
        let s = SeriesSnapshot {
            provider: "p".into(),
            model: "a\"b\\c\nd".into(),
            requests: 2,
            successes: 2,
            errors: Default::default(),
            rate_limited: Default::default(),
            tokens_in: 0,
            tokens_out: 0,
            latency: Quantiles {
                count: 2,
                p50: 1_500_000,
                p90: 2_000_000,
                p99: 2_000_000,
                max: 2_000_000,
                sum: 3_500_000,
            },
            ttft: Quantiles::default(),
            limiter_wait: Quantiles::default(),
        };
        let text = render(&[s]);
        let labels = r#"provider="p",model="a\"b\\c\nd""#;
        assert!(
            text.contains(&format!("hub_requests_total{{{labels}}} 2\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "hub_latency_seconds{{{labels},quantile=\"0.5\"}} 1.5\n"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!("hub_latency_seconds_sum{{{labels}}} 3.5\n")),
            "{text}"
        );
    }
}
