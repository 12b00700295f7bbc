//! `hub compare DIR_A DIR_B [...]`: several reports side by side (e.g. before and after a
//! limit change) as a table (Markdown and plain text) and overlay charts, with `--fail-if`
//! regression rules so CI can refuse a change that makes throttling or latency worse.
//!
//! The first report is the baseline: changes are computed against it, and rules judge
//! every later report, limiter by limiter, for the limiters present in both.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::charts::build::{hdr_line, percentile_axis};
use super::charts::figure::{Bar, BarFigure, BarGroup, BarPanel, LineFigure, LinePanel, YLabels};
use super::charts::style::{tint, Palette};
use super::charts::{self, ChartError};
use super::report_files::{ReportData, ReportReadError};
use super::summary::LimiterSummary;

pub mod rules;

pub use rules::{RegressionRule, RuleParseError};

/// `hub compare` could not run.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// Fewer than two report directories were given.
    #[error("compare needs at least two report directories, got {0}")]
    TooFew(usize),
    /// A report could not be read.
    #[error(transparent)]
    Read(#[from] ReportReadError),
    /// A chart could not be drawn or written.
    #[error(transparent)]
    Chart(#[from] ChartError),
    /// Writing the table failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// One report in a comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportLabel {
    /// Short tag: `A`, `B`, … in the order given (`A` is the baseline).
    pub tag: String,
    /// The directory's name, for humans.
    pub name: String,
    /// The directory.
    pub dir: PathBuf,
}

/// The verdict of one rule on one limiter of one report.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The failure condition does not hold.
    Pass,
    /// The failure condition holds: a regression.
    Violated,
    /// The metric had no sample in one of the two reports, so the rule could not be judged.
    Skipped,
}

/// One rule judged on one limiter of one report against the baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleEvaluation {
    /// The rule as written.
    pub rule: String,
    /// Tag of the judged report (`B`, `C`, …).
    pub report: String,
    /// The limiter.
    pub limiter: String,
    /// The baseline's value (`None`: no sample).
    pub base: Option<f64>,
    /// The judged report's value (`None`: no sample).
    pub value: Option<f64>,
    /// The verdict.
    pub verdict: Verdict,
    /// One line of explanation.
    pub detail: String,
}

impl std::fmt::Display for RuleEvaluation {
    /// `B none: throttled_ratio 0.0792 -> 0.15 (change +89.4737 %) > +10% [REGRESSION]`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verdict = match self.verdict {
            Verdict::Pass => "pass",
            Verdict::Violated => "REGRESSION",
            Verdict::Skipped => "skipped",
        };
        write!(
            f,
            "{} {}: {} [{verdict}]",
            self.report, self.limiter, self.detail
        )
    }
}

/// What `compare` found and wrote.
#[derive(Debug, Clone)]
pub struct CompareOutcome {
    /// The reports, in the order given.
    pub reports: Vec<ReportLabel>,
    /// The side-by-side table, Markdown (also written to `compare.md`).
    pub markdown: String,
    /// The same table as aligned plain text, for stdout.
    pub text: String,
    /// Every rule on every limiter present in both the baseline and a later report.
    pub evaluations: Vec<RuleEvaluation>,
    /// Limiters that are not in every report (`(report tag, limiter)` missing pairs).
    pub missing: Vec<(String, String)>,
    /// Files written (the table, then charts: SVG before PNG).
    pub files: Vec<PathBuf>,
}

impl CompareOutcome {
    /// The evaluations whose failure condition held.
    pub fn violations(&self) -> impl Iterator<Item = &RuleEvaluation> {
        self.evaluations
            .iter()
            .filter(|e| e.verdict == Verdict::Violated)
    }

    /// Whether any rule was violated (the CLI then exits non-zero).
    pub fn regressed(&self) -> bool {
        self.violations().next().is_some()
    }
}

fn tag(i: usize) -> String {
    let letter = (b'A' + (i % 26) as u8) as char;
    if i < 26 {
        letter.to_string()
    } else {
        format!("{letter}{}", i / 26)
    }
}

/// Limiter names over all reports, in order of first appearance.
fn limiter_union(reports: &[ReportData]) -> Vec<(String, String)> {
    let mut names: Vec<(String, String)> = Vec::new();
    for r in reports {
        for l in &r.summary.limiters {
            if !names.iter().any(|(n, _)| n == &l.name) {
                names.push((l.name.clone(), l.strategy.clone()));
            }
        }
    }
    names
}

fn find<'a>(report: &'a ReportData, limiter: &str) -> Option<&'a LimiterSummary> {
    report.summary.limiters.iter().find(|l| l.name == limiter)
}

/// A metric column of the table: header, value (display units), format, and whether a
/// change vs the baseline is shown.
struct Column {
    header: &'static str,
    value: fn(&LimiterSummary) -> Option<f64>,
    format: fn(f64) -> String,
    change: bool,
}

fn columns() -> Vec<Column> {
    fn int(v: f64) -> String {
        format!("{v:.0}")
    }
    fn pct(v: f64) -> String {
        format!("{v:.2} %")
    }
    fn ms(v: f64) -> String {
        format!("{v:.1}")
    }
    vec![
        Column {
            header: "requests",
            value: |l| Some(l.requests as f64),
            format: int,
            change: false,
        },
        Column {
            header: "completed",
            value: |l| Some(l.completed as f64),
            format: int,
            change: false,
        },
        Column {
            header: "throttled ratio",
            value: |l| Some(l.throttled_ratio * 100.0),
            format: pct,
            change: true,
        },
        Column {
            header: "errors",
            value: |l| Some(l.errors as f64),
            format: int,
            change: false,
        },
        Column {
            header: "dropped",
            value: |l| Some(l.dropped as f64),
            format: int,
            change: false,
        },
        Column {
            header: "goodput tokens/min",
            value: |l| Some(l.goodput_tpm),
            format: int,
            change: true,
        },
        Column {
            header: "quota used",
            value: |l| l.quota_utilisation.map(|u| u * 100.0),
            format: pct,
            change: true,
        },
        Column {
            header: "latency p50 ms",
            value: |l| l.latency_ms.p50,
            format: ms,
            change: true,
        },
        Column {
            header: "latency p99 ms",
            value: |l| l.latency_ms.p99,
            format: ms,
            change: true,
        },
        Column {
            header: "latency p99.9 ms",
            value: |l| l.latency_ms.p999,
            format: ms,
            change: true,
        },
        Column {
            header: "limiter wait p99 ms",
            value: |l| l.limiter_wait_ms.p99,
            format: ms,
            change: true,
        },
    ]
}

fn relative_change(base: f64, value: f64) -> String {
    if base == 0.0 {
        if value == 0.0 {
            "±0 %".to_owned()
        } else {
            "new".to_owned()
        }
    } else {
        format!("{:+.1} %", (value - base) / base.abs() * 100.0)
    }
}

/// The table's rows: `limiter, report, cells…`, grouped by limiter.
fn table_rows(reports: &[ReportData], labels: &[ReportLabel]) -> (Vec<String>, Vec<Vec<String>>) {
    let cols = columns();
    let mut header = vec!["limiter".to_owned(), "report".to_owned()];
    header.extend(cols.iter().map(|c| c.header.to_owned()));
    let mut rows = Vec::new();
    for (limiter, _) in limiter_union(reports) {
        let base = find(&reports[0], &limiter);
        for (i, (report, label)) in reports.iter().zip(labels).enumerate() {
            let mut row = vec![limiter.clone(), format!("{} {}", label.tag, label.name)];
            match find(report, &limiter) {
                None => row.extend(cols.iter().map(|_| "absent".to_owned())),
                Some(l) => {
                    for c in &cols {
                        let cell = match (c.value)(l) {
                            None => "-".to_owned(),
                            Some(v) => {
                                let b = base.and_then(|b| (c.value)(b));
                                match (c.change && i > 0, b) {
                                    (true, Some(b)) => {
                                        format!("{} ({})", (c.format)(v), relative_change(b, v))
                                    }
                                    _ => (c.format)(v),
                                }
                            }
                        };
                        row.push(cell);
                    }
                }
            }
            rows.push(row);
        }
    }
    (header, rows)
}

fn markdown_table(header: &[String], rows: &[Vec<String>]) -> String {
    let esc = |s: &str| s.replace('|', "\\|");
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| {} |",
        header
            .iter()
            .map(|h| esc(h))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let align: Vec<&str> = header
        .iter()
        .enumerate()
        .map(|(i, _)| if i < 2 { "---" } else { "---:" })
        .collect();
    let _ = writeln!(out, "|{}|", align.join("|"));
    for row in rows {
        let _ = writeln!(
            out,
            "| {} |",
            row.iter().map(|c| esc(c)).collect::<Vec<_>>().join(" | ")
        );
    }
    out
}

fn text_table(header: &[String], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            std::iter::once(&header[i])
                .chain(rows.iter().map(|r| &r[i]))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            let pad = w - cell.chars().count();
            if i > 0 {
                out.push_str("  ");
            }
            if i < 2 {
                out.push_str(cell);
                out.push_str(&" ".repeat(pad));
            } else {
                out.push_str(&" ".repeat(pad));
                out.push_str(cell);
            }
        }
        out.trim_end().to_owned()
    };
    let mut out = line(header);
    out.push('\n');
    let mut previous: Option<&str> = None;
    for row in rows {
        if previous.is_some_and(|p| p != row[0]) {
            out.push('\n');
        }
        previous = Some(&row[0]);
        out.push_str(&line(row));
        out.push('\n');
    }
    out
}

fn evaluate(
    reports: &[ReportData],
    labels: &[ReportLabel],
    rules: &[RegressionRule],
) -> Vec<RuleEvaluation> {
    let mut out = Vec::new();
    for (report, label) in reports.iter().zip(labels).skip(1) {
        for l in &report.summary.limiters {
            let Some(base) = find(&reports[0], &l.name) else {
                continue;
            };
            for rule in rules {
                let b = rules::metric_value(base, &rule.metric);
                let v = rules::metric_value(l, &rule.metric);
                let (verdict, detail) = match (b, v) {
                    (Some(b), Some(v)) => {
                        let verdict = if rule.violated(b, v) {
                            Verdict::Violated
                        } else {
                            Verdict::Pass
                        };
                        (verdict, rule.explain(b, v))
                    }
                    _ => (
                        Verdict::Skipped,
                        format!(
                            "{}: no sample in {}",
                            rule.metric,
                            if b.is_none() { "A" } else { &label.tag }
                        ),
                    ),
                };
                out.push(RuleEvaluation {
                    rule: rule.text.clone(),
                    report: label.tag.clone(),
                    limiter: l.name.clone(),
                    base: b,
                    value: v,
                    verdict,
                    detail,
                });
            }
        }
    }
    out
}

fn rules_markdown(evaluations: &[RuleEvaluation]) -> String {
    if evaluations.is_empty() {
        return String::new();
    }
    let mut out = String::from("\n## Regression rules (vs A)\n\n| rule | report | limiter | verdict | detail |\n|---|---|---|---|---|\n");
    for e in evaluations {
        let verdict = match e.verdict {
            Verdict::Pass => "pass",
            Verdict::Violated => "**REGRESSION**",
            Verdict::Skipped => "skipped",
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {verdict} | {} |",
            e.rule.replace('|', "\\|"),
            e.report,
            e.limiter,
            e.detail.replace('|', "\\|")
        );
    }
    out
}

/// Bars per limiter, one per report (tagged, lighter for earlier reports).
fn compare_bars(reports: &[ReportData], labels: &[ReportLabel], palette: &Palette) -> BarFigure {
    let names = limiter_union(reports);
    let n = reports.len() as f64;
    let groups = |value: &dyn Fn(&LimiterSummary) -> Option<f64>| -> Vec<BarGroup> {
        names
            .iter()
            .map(|(name, _)| BarGroup {
                label: name.clone(),
                bars: reports
                    .iter()
                    .zip(labels)
                    .enumerate()
                    .map(|(i, (r, label))| Bar {
                        value: find(r, name).and_then(value),
                        colour: tint(palette.colour(name), 0.45 + 0.55 * (i as f64 + 1.0) / n),
                        tag: Some(label.tag.clone()),
                    })
                    .collect(),
            })
            .collect()
    };
    let quota_known = reports
        .iter()
        .all(|r| r.summary.quota.as_ref().and_then(|q| q.tpm).is_some());
    let first = if quota_known {
        BarPanel {
            caption: "quota utilisation (goodput / TPM)".to_owned(),
            y_desc: "% of quota TPM".to_owned(),
            y_labels: YLabels::Percent,
            groups: groups(&|l| l.quota_utilisation.map(|u| u * 100.0)),
            reference: Some(100.0),
        }
    } else {
        BarPanel {
            caption: "goodput".to_owned(),
            y_desc: "tokens/min".to_owned(),
            y_labels: YLabels::Short,
            groups: groups(&|l| Some(l.goodput_tpm)),
            reference: None,
        }
    };
    BarFigure {
        title: format!("Reports compared: {}", legend_text(labels)),
        panels: vec![
            first,
            BarPanel {
                caption: "throttled requests (saw ≥ 1 429)".to_owned(),
                y_desc: "% of requests".to_owned(),
                y_labels: YLabels::Percent,
                groups: groups(&|l| Some(l.throttled_ratio * 100.0)),
                reference: None,
            },
            BarPanel {
                caption: "p99 corrected latency".to_owned(),
                y_desc: "latency (ms)".to_owned(),
                y_labels: YLabels::Short,
                groups: groups(&|l| l.latency_ms.p99),
                reference: None,
            },
        ],
    }
}

fn legend_text(labels: &[ReportLabel]) -> String {
    labels
        .iter()
        .map(|l| format!("{} = {}", l.tag, l.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Latency distributions of every limiter in every report, overlaid (later reports drawn
/// darker and thicker).
fn compare_latency(
    reports: &[ReportData],
    labels: &[ReportLabel],
    palette: &Palette,
) -> LineFigure {
    let n = reports.len() as f64;
    let mut lines = Vec::new();
    for (i, (r, label)) in reports.iter().zip(labels).enumerate() {
        for l in &r.summary.limiters {
            let mut line = hdr_line(
                format!("{} {}", l.name, label.tag),
                tint(palette.colour(&l.name), 0.45 + 0.55 * (i as f64 + 1.0) / n),
                r.samples(&l.name).map(|s| s.latency_ms.as_slice()),
                &l.latency_distribution,
            );
            line.width = if i == 0 { 2 } else { 3 };
            lines.push(line);
        }
    }
    LineFigure {
        title: format!("Corrected latency by percentile: {}", legend_text(labels)),
        x: percentile_axis(&lines),
        panels: vec![LinePanel {
            caption: "corrected latency of successful requests, by percentile".to_owned(),
            y_desc: "latency from intended start (ms)".to_owned(),
            y_labels: YLabels::Short,
            lines,
            references: Vec::new(),
        }],
    }
}

/// Loads the reports in `dirs` (the first is the baseline), writes `<out>/compare.md` and
/// overlay charts under `<out>/charts/` (`compare_bars`, `compare_latency_distribution`,
/// SVG and PNG), and judges `fail_if` rules on every later report against the baseline,
/// per limiter present in both. Violations are in the outcome; the caller decides the exit
/// code.
pub fn compare(
    dirs: &[PathBuf],
    out: &Path,
    fail_if: &[RegressionRule],
) -> Result<CompareOutcome, CompareError> {
    if dirs.len() < 2 {
        return Err(CompareError::TooFew(dirs.len()));
    }
    let reports = dirs
        .iter()
        .map(|d| ReportData::load(d))
        .collect::<Result<Vec<_>, _>>()?;
    let labels: Vec<ReportLabel> = dirs
        .iter()
        .enumerate()
        .map(|(i, d)| ReportLabel {
            tag: tag(i),
            name: d
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| d.display().to_string()),
            dir: d.clone(),
        })
        .collect();
    compare_loaded(&reports, &labels, out, fail_if)
}

/// [`compare`] on reports already loaded, with their labels (same length, baseline first).
pub fn compare_loaded(
    reports: &[ReportData],
    labels: &[ReportLabel],
    out: &Path,
    fail_if: &[RegressionRule],
) -> Result<CompareOutcome, CompareError> {
    if reports.len() < 2 || labels.len() != reports.len() {
        return Err(CompareError::TooFew(reports.len().min(labels.len())));
    }
    let (header, rows) = table_rows(reports, labels);
    let evaluations = evaluate(reports, labels, fail_if);
    let missing = limiter_union(reports)
        .into_iter()
        .flat_map(|(name, _)| {
            reports
                .iter()
                .zip(labels)
                .filter(|(r, _)| find(r, &name).is_none())
                .map(|(_, label)| (label.tag.clone(), name.clone()))
                .collect::<Vec<_>>()
        })
        .collect();

    let mut markdown = String::from("# Reports compared\n\n");
    for label in labels {
        let _ = writeln!(markdown, "- **{}**: `{}`", label.tag, label.dir.display());
    }
    markdown.push_str("\nChanges in parentheses are relative to A.\n\n");
    markdown.push_str(&markdown_table(&header, &rows));
    markdown.push_str(&rules_markdown(&evaluations));
    let text = format!("{}\n{}", legend_text(labels), text_table(&header, &rows));

    std::fs::create_dir_all(out).map_err(|source| CompareError::Io {
        path: out.to_owned(),
        source,
    })?;
    let md_path = out.join("compare.md");
    std::fs::write(&md_path, &markdown).map_err(|source| CompareError::Io {
        path: md_path.clone(),
        source,
    })?;
    let palette = Palette::new(
        limiter_union(reports)
            .iter()
            .map(|(n, s)| (n.as_str(), s.as_str())),
    );
    let chart_dir = out.join("charts");
    let mut files = vec![md_path];
    files.extend(charts::write_figure(
        &compare_bars(reports, labels, &palette),
        &chart_dir,
        "compare_bars",
    )?);
    files.extend(charts::write_figure(
        &compare_latency(reports, labels, &palette),
        &chart_dir,
        "compare_latency_distribution",
    )?);
    Ok(CompareOutcome {
        reports: labels.to_vec(),
        markdown,
        text,
        evaluations,
        missing,
        files,
    })
}
