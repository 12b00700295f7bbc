//! `index.html` of a report: one self-contained page (charts inlined as SVG, the summary
//! table, thresholds, the scenario text and the seed) that opens from disk with no network
//! and no external files, so a report directory can be mailed or archived as it is.
//!
//! The page is also well-formed XML (every element closed, every text escaped), which is
//! what lets tests parse it with an XML parser.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::charts::{self, ChartError};
use super::report::utilisation_cell;
use super::report_files::ReportData;
use super::summary::{percent, LimiterSummary, Percentiles};

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.1}"))
        .unwrap_or_else(|| "-".to_owned())
}

/// Formats one cell of a limiter's summary row.
pub type CellFn = fn(&LimiterSummary) -> String;

/// The columns of the summary table: header and cell text of one limiter. Counts are
/// integers, the throttled ratio a percentage with two decimals and the quota used one
/// with one decimal (see [`percent`]: a small non-zero ratio reads `<0.01%`, never `0%`),
/// latencies ms with one decimal. Nineteen columns with short headers that wrap, so the
/// table fits a 1400-px-wide page; each limiter's verdict is its line in the list above
/// the table, and the rest (p90, p99.9, target rate, late starts) is in `summary.json`,
/// `summary.md` and the charts.
pub fn summary_columns() -> Vec<(&'static str, CellFn)> {
    fn p(get: fn(&Percentiles) -> Option<f64>, from: &Percentiles) -> String {
        ms(get(from))
    }
    vec![
        ("limiter", |l| l.name.clone()),
        ("strategy", |l| l.strategy.clone()),
        ("requests", |l| l.requests.to_string()),
        ("completed", |l| l.completed.to_string()),
        ("failed after 429s", |l| l.failed_throttled.to_string()),
        ("errors", |l| l.errors.to_string()),
        ("dropped", |l| l.dropped.to_string()),
        ("throttled", |l| l.throttled.to_string()),
        ("throttled ratio", |l| percent(l.throttled_ratio, 2)),
        ("goodput (tokens/min)", |l| format!("{:.0}", l.goodput_tpm)),
        ("quota used (binding dimension)", utilisation_cell),
        ("achieved rate (req/s)", |l| {
            format!("{:.2}", l.achieved_rate)
        }),
        ("latency p50 (ms)", |l| p(|p| p.p50, &l.latency_ms)),
        ("latency p99 (ms)", |l| p(|p| p.p99, &l.latency_ms)),
        ("latency max (ms)", |l| p(|p| p.max, &l.latency_ms)),
        ("service p99 (ms)", |l| p(|p| p.p99, &l.service_ms)),
        ("limiter wait p99 (ms)", |l| {
            p(|p| p.p99, &l.limiter_wait_ms)
        }),
        ("TTFT p50 (ms)", |l| {
            ms(l.ttft_ms.as_ref().and_then(|t| t.p50))
        }),
        ("thresholds", |l| {
            if l.passed { "pass" } else { "FAIL" }.to_owned()
        }),
    ]
}

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;font-size:0.85em;margin-bottom:1em}\
th,td{border:1px solid #ccc;padding:0.25em 0.4em;text-align:right}\
th{background:#f2f2f2;font-weight:600;vertical-align:bottom}td.name,th.name{text-align:left}\
td.fail{color:#b00020;font-weight:bold}td.pass{color:#1b7f3b}\
li.fail{color:#b00020}li.pass{color:#1b7f3b}div.wide{max-width:100%;overflow-x:auto}\
figure{margin:1em 0}figure svg{max-width:100%;height:auto;border:1px solid #ddd}\
pre{background:#f7f7f7;padding:1em;overflow-x:auto}";

fn summary_table(out: &mut String, report: &ReportData) {
    let columns = summary_columns();
    out.push_str("<table id=\"summary\">\n<thead><tr>");
    for (i, (header, _)) in columns.iter().enumerate() {
        let class = if i < 2 { " class=\"name\"" } else { "" };
        let _ = write!(out, "<th{class}>{}</th>", escape(header));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for l in &report.summary.limiters {
        let _ = write!(out, "<tr data-limiter=\"{}\">", escape(&l.name));
        for (i, (header, cell)) in columns.iter().enumerate() {
            let class = match (i, *header) {
                (0 | 1, _) => " class=\"name\"",
                (_, "thresholds") if l.passed => " class=\"pass\"",
                (_, "thresholds") => " class=\"fail\"",
                _ => "",
            };
            let _ = write!(out, "<td{class}>{}</td>", escape(&cell(l)));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n");
}

/// A threshold's measured value in the metric's unit (ms for latencies, a fraction for
/// ratios) with at most four decimals and no trailing zeros: `0.3118`, `2535.423`, `0`;
/// a non-zero value below 0.001 in scientific notation (`2.00e-5`), never as `0`.
fn threshold_value(v: f64) -> String {
    if v != 0.0 && v.abs() < 1e-3 {
        return format!("{v:.2e}");
    }
    let s = format!("{v:.4}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

fn thresholds_table(out: &mut String, report: &ReportData) {
    let rows: Vec<_> = report
        .summary
        .limiters
        .iter()
        .flat_map(|l| l.thresholds.iter().map(move |t| (l, t)))
        .collect();
    if rows.is_empty() {
        out.push_str("<p>The scenario sets no thresholds.</p>\n");
        return;
    }
    out.push_str("<table id=\"thresholds\">\n<thead><tr><th class=\"name\">limiter</th><th class=\"name\">metric</th><th class=\"name\">threshold</th><th>value</th><th>verdict</th></tr></thead>\n<tbody>\n");
    for (l, t) in rows {
        let value = t
            .value
            .map(threshold_value)
            .unwrap_or_else(|| "no sample".to_owned());
        let (class, verdict) = if t.passed {
            ("pass", "pass")
        } else {
            ("fail", "FAIL")
        };
        let _ = writeln!(
            out,
            "<tr><td class=\"name\">{}</td><td class=\"name\">{}</td><td class=\"name\">{}</td><td>{}</td><td class=\"{class}\">{verdict}</td></tr>",
            escape(&l.name),
            escape(&t.metric),
            escape(&t.expr),
            escape(&value),
        );
    }
    out.push_str("</tbody>\n</table>\n");
}

/// The complete page for `report` with its charts inlined.
pub fn index_html(report: &ReportData) -> Result<String, ChartError> {
    let svgs = charts::render_svgs(report)?;
    let s = &report.summary;
    let mut out = String::with_capacity(svgs.iter().map(|c| c.svg.len()).sum::<usize>() + 16_384);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n");
    let _ = writeln!(
        out,
        "<title>{} — llm-connector-hub report</title>",
        escape(&s.scenario)
    );
    let _ = writeln!(out, "<style>{STYLE}</style>\n</head>\n<body>");
    let _ = writeln!(out, "<h1>{}</h1>", escape(&s.scenario));
    let quota = s
        .quota
        .as_ref()
        .map(|q| {
            let part = |v: Option<u64>, unit: &str| {
                v.map(|v| format!("{v} {unit}"))
                    .unwrap_or_else(|| format!("no {unit}"))
            };
            format!("{}, {}", part(q.rpm, "RPM"), part(q.tpm, "TPM"))
        })
        .unwrap_or_else(|| "unknown (real endpoint)".to_owned());
    let deployment = s
        .provider
        .deployment
        .as_ref()
        .map(|d| format!(", deployment {d}"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "<dl id=\"run\"><dt>mode</dt><dd id=\"mode\">{}</dd><dt>seed</dt><dd id=\"seed\">{}</dd><dt>duration per limiter</dt><dd>{} s</dd><dt>provider</dt><dd>{} ({} target), model {}{}</dd><dt>server quota</dt><dd>{}</dd></dl>",
        escape(&s.mode),
        s.seed,
        s.duration_s,
        escape(&s.provider.kind),
        escape(&s.provider.target),
        escape(&s.provider.model),
        escape(&deployment),
        escape(&quota),
    );
    out.push_str("<ul id=\"verdicts\">\n");
    for l in &s.limiters {
        let class = if l.passed && l.unsuccessful() == 0 {
            "pass"
        } else {
            "fail"
        };
        let _ = writeln!(
            out,
            "<li class=\"{class}\" data-limiter=\"{}\">{}</li>",
            escape(&l.name),
            escape(&l.headline())
        );
    }
    out.push_str("</ul>\n<h2>Summary</h2>\n");
    out.push_str("<div class=\"wide\">");
    summary_table(&mut out, report);
    out.push_str("</div>\n");
    out.push_str("<h2>Thresholds</h2>\n");
    thresholds_table(&mut out, report);
    out.push_str("<h2>Charts</h2>\n");
    for chart in &svgs {
        let _ = writeln!(
            out,
            "<figure id=\"chart-{}\">\n<figcaption>{}</figcaption>",
            chart.kind.file_stem(),
            escape(chart.kind.title())
        );
        out.push_str(chart.svg.trim());
        out.push_str("\n</figure>\n");
    }
    out.push_str("<h2>Scenario</h2>\n");
    match &report.scenario_text {
        Some(text) => {
            let _ = writeln!(out, "<pre id=\"scenario\">{}</pre>", escape(text));
        }
        None => {
            out.push_str("<p id=\"scenario\">scenario.toml was not found next to the report.</p>\n")
        }
    }
    out.push_str("</body>\n</html>\n");
    Ok(out)
}

/// Writes `<out_dir>/index.html` for `report` (see [`index_html`]); returns its path.
pub fn write_index_html(report: &ReportData, out_dir: &Path) -> Result<PathBuf, ChartError> {
    let html = index_html(report)?;
    std::fs::create_dir_all(out_dir).map_err(|source| ChartError::Io {
        path: out_dir.to_owned(),
        source,
    })?;
    let path = out_dir.join("index.html");
    std::fs::write(&path, html).map_err(|source| ChartError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_values_show_at_most_four_decimals() {
        assert_eq!(threshold_value(0.3118279569892473), "0.3118");
        assert_eq!(threshold_value(2535.423), "2535.423");
        assert_eq!(threshold_value(0.0), "0");
        assert_eq!(threshold_value(120.0), "120");
        assert_eq!(threshold_value(0.00002), "2.00e-5");
    }

    #[test]
    fn escape_covers_markup_characters() {
        assert_eq!(
            escape(r#"a<b>&"c" 'd'"#),
            "a&lt;b&gt;&amp;&quot;c&quot; &#39;d&#39;"
        );
    }
}
