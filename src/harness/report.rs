//! Writes a run's report directory: `requests.csv` (streamed, one row per request),
//! `timeseries.csv`, `summary.json`, `summary.md` and a copy of the scenario. The layout is
//! a stable contract documented in `reports/README.md`.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::clock::Nanos;

use super::record::{RequestRecord, SecondRow};
use super::summary::{percent, LimiterSummary, Percentiles, Summary};

/// The header of `requests.csv`.
pub const REQUESTS_HEADER: &str = "limiter,request_id,phase,intended_start_ms,sent_ms,first_byte_ms,end_ms,status,outcome,attempts,estimated_tokens,prompt_tokens,completion_tokens,limiter_wait_ms,ttft_ms,service_ms,latency_ms";

/// The header of `timeseries.csv`.
pub const TIMESERIES_HEADER: &str = "limiter,second,offered,sent,completed,throttled,errors,tokens_charged,tokens_used,latency_p50_ms,latency_p90_ms,latency_p99_ms";

/// A report file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Creating or writing a file failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The summary could not be serialized.
    #[error("cannot serialize the summary: {0}")]
    Json(#[from] serde_json::Error),
}

/// Streams a run's rows to its report directory and writes the summary at the end.
#[derive(Debug)]
pub struct ReportWriter {
    dir: PathBuf,
    requests: Option<BufWriter<File>>,
    timeseries: BufWriter<File>,
}

fn create(path: PathBuf, header: &str) -> Result<BufWriter<File>, ReportError> {
    let file = File::create(&path).map_err(|source| ReportError::Io {
        path: path.clone(),
        source,
    })?;
    let mut w = BufWriter::with_capacity(1 << 16, file);
    writeln!(w, "{header}").map_err(|source| ReportError::Io { path, source })?;
    Ok(w)
}

/// Milliseconds with 3 decimals.
fn ms(ns: Nanos) -> String {
    format!("{:.3}", ns as f64 / 1e6)
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

fn opt_ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.3}")).unwrap_or_default()
}

/// A CSV field, quoted when it holds a comma, quote or newline.
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

impl ReportWriter {
    /// Creates `dir` (and parents) and opens the CSV files; `requests_csv = false` skips the
    /// per-request file (long simulations).
    pub fn create(dir: &Path, requests_csv: bool) -> Result<Self, ReportError> {
        fs::create_dir_all(dir).map_err(|source| ReportError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let requests = if requests_csv {
            Some(create(dir.join("requests.csv"), REQUESTS_HEADER)?)
        } else {
            let _ = fs::remove_file(dir.join("requests.csv"));
            None
        };
        Ok(Self {
            dir: dir.to_owned(),
            requests,
            timeseries: create(dir.join("timeseries.csv"), TIMESERIES_HEADER)?,
        })
    }

    /// The report directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn io(&self, file: &str) -> impl FnOnce(io::Error) -> ReportError {
        let path = self.dir.join(file);
        move |source| ReportError::Io { path, source }
    }

    /// Appends one `requests.csv` row (no-op when the file is off).
    pub fn request(&mut self, limiter: &str, r: &RequestRecord) -> Result<(), ReportError> {
        if self.requests.is_none() {
            return Ok(());
        }
        let err = self.io("requests.csv");
        let Some(w) = self.requests.as_mut() else {
            return Ok(());
        };
        let first = r.attempts.first();
        let last = r.attempts.last();
        writeln!(
            w,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            field(limiter),
            r.request_id,
            r.phase,
            ms(r.intended_start),
            opt(first.map(|a| ms(a.sent))),
            opt(r.first_byte.map(ms)),
            ms(r.end),
            opt(last.and_then(|a| a.status)),
            r.outcome.as_str(),
            r.attempts.len(),
            r.estimated_tokens,
            opt(r.prompt_tokens),
            opt(r.completion_tokens),
            ms(r.limiter_wait),
            opt(r.ttft().map(ms)),
            opt(r.service().map(ms)),
            ms(r.latency()),
        )
        .map_err(err)
    }

    /// Appends one limiter's `timeseries.csv` rows.
    pub fn timeseries(&mut self, limiter: &str, rows: &[SecondRow]) -> Result<(), ReportError> {
        let err = self.io("timeseries.csv");
        let name = field(limiter);
        let mut out = String::with_capacity(rows.len() * 64);
        for (second, r) in rows.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name},{second},{},{},{},{},{},{},{},{},{},{}",
                r.offered,
                r.sent,
                r.completed,
                r.throttled,
                r.errors,
                r.tokens_charged,
                r.tokens_used,
                opt_ms(r.latency_p50_ms),
                opt_ms(r.latency_p90_ms),
                opt_ms(r.latency_p99_ms),
            );
        }
        self.timeseries.write_all(out.as_bytes()).map_err(err)
    }

    /// Flushes the CSV files and writes `summary.json`, `summary.md` and `scenario.toml`.
    pub fn finish(mut self, summary: &Summary, scenario_text: &str) -> Result<(), ReportError> {
        if let Some(w) = self.requests.as_mut() {
            w.flush().map_err(self.io("requests.csv"))?;
        }
        self.timeseries.flush().map_err(self.io("timeseries.csv"))?;
        let mut json = serde_json::to_string_pretty(summary)?;
        json.push('\n');
        let files = [
            ("summary.json", json),
            ("summary.md", summary_markdown(summary)),
            ("scenario.toml", scenario_text.to_owned()),
        ];
        for (name, text) in files {
            fs::write(self.dir.join(name), text).map_err(self.io(name))?;
        }
        Ok(())
    }
}

fn cell(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into())
}

/// The binding dimension's utilisation, e.g. `98.2% (requests)`, or `-` without a quota.
pub fn utilisation_cell(l: &LimiterSummary) -> String {
    match (l.quota_utilisation, &l.binding_dimension) {
        (Some(u), Some(d)) => format!("{} ({d})", percent(u, 1)),
        (Some(u), None) => percent(u, 1),
        _ => "-".into(),
    }
}

fn lat(p: &Percentiles) -> String {
    format!("{} / {} / {}", cell(p.p50), cell(p.p99), cell(p.max))
}

/// The summary as a Markdown table (also what `hub run` prints at the end).
pub fn summary_markdown(s: &Summary) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# {} ({}, seed {}, {:.0} s per limiter)\n",
        s.scenario, s.mode, s.seed, s.duration_s
    );
    if let Some(q) = &s.quota {
        let _ = writeln!(
            out,
            "Quota: {} RPM, {} TPM ({} {})\n",
            opt(q.rpm),
            opt(q.tpm),
            s.provider.kind,
            s.provider.model
        );
    }
    for l in &s.limiters {
        let _ = writeln!(out, "- {}", l.headline());
    }
    out.push('\n');
    out.push_str("| limiter | strategy | requests | ok | failed after 429s | errors | dropped | saw 429 | ratio | span s | goodput TPM | quota used (binding) | rate target/achieved | latency p50/p99/max ms | service p50/p99/max ms | limiter wait p50/p99 ms | TTFT p50/p99 ms | verdict |\n");
    out.push_str(
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for l in &s.limiters {
        let ttft = l
            .ttft_ms
            .as_ref()
            .map(|t| format!("{} / {}", cell(t.p50), cell(t.p99)))
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {:.0} | {} | {:.2}/{:.2} | {} | {} | {} / {} | {} | {} |",
            l.name,
            l.strategy,
            l.requests,
            l.completed,
            l.failed_throttled,
            l.errors,
            l.dropped,
            l.throttled,
            percent(l.throttled_ratio, 2),
            l.span_s,
            l.goodput_tpm,
            utilisation_cell(l),
            l.target_rate,
            l.achieved_rate,
            lat(&l.latency_ms),
            lat(&l.service_ms),
            cell(l.limiter_wait_ms.p50),
            cell(l.limiter_wait_ms.p99),
            ttft,
            l.verdict(),
        );
    }
    let efficiencies: Vec<String> = s
        .limiters
        .iter()
        .filter_map(|l| {
            l.batch_efficiency
                .map(|e| format!("{} {:.3} ({:.1} s)", l.name, e, l.span_s))
        })
        .collect();
    if !efficiencies.is_empty() {
        let _ = writeln!(
            out,
            "\nBatch efficiency (the quota's minimum time for what was charged / the run's span): {}",
            efficiencies.join(", ")
        );
    }
    if s.limiters.iter().any(|l| !l.utilisation.is_empty()) {
        out.push_str(
            "\nQuota used = what the server charged / what the quota could admit over the run's span \
             (a full bucket plus its refill, or the limit per window), on the binding dimension.\n",
        );
    }
    out
}
