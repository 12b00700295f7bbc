//! Reads a report directory back (`summary.json`, `timeseries.csv`, `requests.csv`,
//! `scenario.toml`) so that charts, `index.html` and `hub compare` can be produced from the
//! files alone — after the run, on another machine, or for reports written by an older
//! build. `requests.csv` is streamed row by row and may be absent (`--no-requests-csv`).

use std::fs::File;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::report::{REQUESTS_HEADER, TIMESERIES_HEADER};
use super::summary::{Summary, SCHEMA_VERSION};

/// A report file could not be read or does not follow the report contract.
#[derive(Debug, thiserror::Error)]
pub enum ReportReadError {
    /// Opening or reading a file failed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// `summary.json` is not the contract's JSON.
    #[error("{path} is not a valid summary: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause, with line and column.
        source: serde_json::Error,
    },
    /// `summary.json` was written with another schema version.
    #[error("{path} has schema_version {found}, this build reads {SCHEMA_VERSION}")]
    SchemaVersion {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: u32,
    },
    /// A CSV row could not be parsed.
    #[error("{path}: {source}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// The cause, with the record's line.
        source: csv::Error,
    },
    /// A CSV file's header is not the contract's header.
    #[error("{path}: header {found:?} is not the expected {expected:?}")]
    Header {
        /// The file.
        path: PathBuf,
        /// The contract's header.
        expected: &'static str,
        /// The header found.
        found: String,
    },
    /// A CSV row names a limiter that `summary.json` does not list.
    #[error("{path}: row for limiter {limiter:?} that summary.json does not list")]
    UnknownLimiter {
        /// The file.
        path: PathBuf,
        /// The limiter named by the row.
        limiter: String,
    },
}

/// One `timeseries.csv` row: one second of one limiter's run (see the report contract).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TimeseriesRow {
    /// Limiter name.
    pub limiter: String,
    /// Whole seconds since the run start.
    pub second: u64,
    /// Requests whose intended start fell in this second.
    pub offered: u64,
    /// First attempts sent in this second.
    pub sent: u64,
    /// Successful requests that ended in this second.
    pub completed: u64,
    /// 429 responses received in this second (every attempt).
    pub throttled: u64,
    /// Non-429 failures that ended in this second.
    pub errors: u64,
    /// Tokens the server charged for requests it admitted in this second.
    pub tokens_charged: u64,
    /// Prompt + completion tokens of requests completed in this second.
    pub tokens_used: u64,
    /// Corrected latency p50 of requests completed in this second, ms.
    pub latency_p50_ms: Option<f64>,
    /// Corrected latency p90, ms.
    pub latency_p90_ms: Option<f64>,
    /// Corrected latency p99, ms.
    pub latency_p99_ms: Option<f64>,
}

/// One limiter's time series, column-wise, ordered by second.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LimiterSeries {
    /// Limiter name.
    pub limiter: String,
    /// Whole seconds since the run start, ascending.
    pub second: Vec<u64>,
    /// Requests offered per second.
    pub offered: Vec<u64>,
    /// First attempts sent per second.
    pub sent: Vec<u64>,
    /// Successful completions per second.
    pub completed: Vec<u64>,
    /// 429 responses per second.
    pub throttled: Vec<u64>,
    /// Non-429 failures per second.
    pub errors: Vec<u64>,
    /// Tokens charged by the server per second.
    pub tokens_charged: Vec<u64>,
    /// Tokens (prompt + completion) of completions per second.
    pub tokens_used: Vec<u64>,
    /// Corrected latency p50 per second, ms (`None`: no completion in that second).
    pub latency_p50_ms: Vec<Option<f64>>,
    /// Corrected latency p90 per second, ms.
    pub latency_p90_ms: Vec<Option<f64>>,
    /// Corrected latency p99 per second, ms.
    pub latency_p99_ms: Vec<Option<f64>>,
}

impl LimiterSeries {
    fn empty(limiter: &str) -> Self {
        Self {
            limiter: limiter.to_owned(),
            ..Self::default()
        }
    }

    fn push(&mut self, r: TimeseriesRow) {
        self.second.push(r.second);
        self.offered.push(r.offered);
        self.sent.push(r.sent);
        self.completed.push(r.completed);
        self.throttled.push(r.throttled);
        self.errors.push(r.errors);
        self.tokens_charged.push(r.tokens_charged);
        self.tokens_used.push(r.tokens_used);
        self.latency_p50_ms.push(r.latency_p50_ms);
        self.latency_p90_ms.push(r.latency_p90_ms);
        self.latency_p99_ms.push(r.latency_p99_ms);
    }

    /// Number of seconds (rows).
    pub fn len(&self) -> usize {
        self.second.len()
    }

    /// Whether the limiter has no rows.
    pub fn is_empty(&self) -> bool {
        self.second.is_empty()
    }

    fn sort_by_second(&mut self) {
        if self.second.windows(2).all(|w| w[0] <= w[1]) {
            return;
        }
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.sort_by_key(|&i| self.second[i]);
        fn permute<T: Clone>(v: &mut Vec<T>, order: &[usize]) {
            *v = order.iter().map(|&i| v[i].clone()).collect();
        }
        permute(&mut self.second, &order);
        permute(&mut self.offered, &order);
        permute(&mut self.sent, &order);
        permute(&mut self.completed, &order);
        permute(&mut self.throttled, &order);
        permute(&mut self.errors, &order);
        permute(&mut self.tokens_charged, &order);
        permute(&mut self.tokens_used, &order);
        permute(&mut self.latency_p50_ms, &order);
        permute(&mut self.latency_p90_ms, &order);
        permute(&mut self.latency_p99_ms, &order);
    }
}

/// How a request ended, as spelled in `requests.csv`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestOutcome {
    /// A successful response.
    Ok,
    /// The last attempt got a 429.
    Throttled,
    /// Another failure.
    Error,
    /// Never sent.
    Dropped,
}

/// One `requests.csv` row. Times are ms since the run start; `None` where the cell is empty.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RequestRow {
    /// Limiter name.
    pub limiter: String,
    /// Request sequence number (the same request has the same id in every limiter run).
    pub request_id: u64,
    /// Index of the scenario phase.
    pub phase: u64,
    /// When the arrival process wanted it sent, ms.
    pub intended_start_ms: f64,
    /// First send, ms.
    pub sent_ms: Option<f64>,
    /// First byte of the final attempt, ms.
    pub first_byte_ms: Option<f64>,
    /// End of the request, ms.
    pub end_ms: f64,
    /// Last HTTP status.
    pub status: Option<u16>,
    /// How it ended.
    pub outcome: RequestOutcome,
    /// Number of attempts.
    pub attempts: u32,
    /// Tokens the client estimated (prompt + max_tokens).
    pub estimated_tokens: u64,
    /// Prompt tokens reported by the server.
    pub prompt_tokens: Option<u64>,
    /// Completion tokens reported by the server.
    pub completion_tokens: Option<u64>,
    /// Time waited in the limiter over all attempts, ms.
    pub limiter_wait_ms: Option<f64>,
    /// Time to first token (streamed requests), ms.
    pub ttft_ms: Option<f64>,
    /// End − last send, ms.
    pub service_ms: Option<f64>,
    /// End − intended start (corrected latency), ms.
    pub latency_ms: Option<f64>,
}

/// Streams the rows of a `requests.csv` file; one `Result` per row.
pub struct RequestRows {
    path: PathBuf,
    rows: csv::DeserializeRecordsIntoIter<BufReader<File>, RequestRow>,
}

impl std::fmt::Debug for RequestRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestRows")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Iterator for RequestRows {
    type Item = Result<RequestRow, ReportReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        let path = &self.path;
        self.rows.next().map(|r| {
            r.map_err(|source| ReportReadError::Csv {
                path: path.clone(),
                source,
            })
        })
    }
}

/// Opens a CSV file and checks its header against the contract's.
fn open_csv(
    path: &Path,
    expected: &'static str,
) -> Result<csv::Reader<BufReader<File>>, ReportReadError> {
    let file = File::open(path).map_err(|source| ReportReadError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(BufReader::with_capacity(1 << 16, file));
    let header = reader
        .headers()
        .map_err(|source| ReportReadError::Csv {
            path: path.to_owned(),
            source,
        })?
        .iter()
        .collect::<Vec<_>>()
        .join(",");
    if header != expected {
        return Err(ReportReadError::Header {
            path: path.to_owned(),
            expected,
            found: header,
        });
    }
    Ok(reader)
}

/// Opens `path` (a `requests.csv`) for streaming; the header must be the contract's.
pub fn read_requests(path: &Path) -> Result<RequestRows, ReportReadError> {
    let reader = open_csv(path, REQUESTS_HEADER)?;
    Ok(RequestRows {
        path: path.to_owned(),
        rows: reader.into_deserialize(),
    })
}

/// Reads and checks `summary.json`.
pub fn read_summary(path: &Path) -> Result<Summary, ReportReadError> {
    let text = std::fs::read_to_string(path).map_err(|source| ReportReadError::Io {
        path: path.to_owned(),
        source,
    })?;
    let summary: Summary = serde_json::from_str(&text).map_err(|source| ReportReadError::Json {
        path: path.to_owned(),
        source,
    })?;
    if summary.schema_version != SCHEMA_VERSION {
        return Err(ReportReadError::SchemaVersion {
            path: path.to_owned(),
            found: summary.schema_version,
        });
    }
    Ok(summary)
}

/// Reads `timeseries.csv` into one series per limiter of `summary`, in summary order
/// (a limiter without rows gets an empty series).
pub fn read_timeseries(
    path: &Path,
    summary: &Summary,
) -> Result<Vec<LimiterSeries>, ReportReadError> {
    let mut series: Vec<LimiterSeries> = summary
        .limiters
        .iter()
        .map(|l| LimiterSeries::empty(&l.name))
        .collect();
    let reader = open_csv(path, TIMESERIES_HEADER)?;
    let mut last = 0usize;
    for row in reader.into_deserialize::<TimeseriesRow>() {
        let row = row.map_err(|source| ReportReadError::Csv {
            path: path.to_owned(),
            source,
        })?;
        // Rows come grouped by limiter: try the previous row's limiter first.
        if !matches!(series.get(last), Some(s) if s.limiter == row.limiter) {
            last = series
                .iter()
                .position(|s| s.limiter == row.limiter)
                .ok_or_else(|| ReportReadError::UnknownLimiter {
                    path: path.to_owned(),
                    limiter: row.limiter.clone(),
                })?;
        }
        series[last].push(row);
    }
    for s in &mut series {
        s.sort_by_second();
    }
    Ok(series)
}

/// Per-request samples of one limiter, from `requests.csv`, each sorted ascending.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LimiterSamples {
    /// Limiter name.
    pub limiter: String,
    /// Corrected latency of successful requests, ms (the population of the summary's
    /// `latency_ms`).
    pub latency_ms: Vec<f64>,
    /// Limiter wait of every request, ms (the population of `limiter_wait_ms`).
    pub limiter_wait_ms: Vec<f64>,
}

/// Streams `requests.csv` into per-limiter sorted samples, in summary order.
pub fn read_samples(
    path: &Path,
    summary: &Summary,
) -> Result<Vec<LimiterSamples>, ReportReadError> {
    let mut samples: Vec<LimiterSamples> = summary
        .limiters
        .iter()
        .map(|l| LimiterSamples {
            limiter: l.name.clone(),
            ..LimiterSamples::default()
        })
        .collect();
    let mut last = 0usize;
    for row in read_requests(path)? {
        let row = row?;
        if !matches!(samples.get(last), Some(s) if s.limiter == row.limiter) {
            last = samples
                .iter()
                .position(|s| s.limiter == row.limiter)
                .ok_or_else(|| ReportReadError::UnknownLimiter {
                    path: path.to_owned(),
                    limiter: row.limiter.clone(),
                })?;
        }
        let s = &mut samples[last];
        if row.outcome == RequestOutcome::Ok {
            if let Some(l) = row.latency_ms.filter(|v| v.is_finite()) {
                s.latency_ms.push(l);
            }
        }
        if let Some(w) = row.limiter_wait_ms.filter(|v| v.is_finite()) {
            s.limiter_wait_ms.push(w);
        }
    }
    for s in &mut samples {
        s.latency_ms.sort_by(f64::total_cmp);
        s.limiter_wait_ms.sort_by(f64::total_cmp);
    }
    Ok(samples)
}

/// Everything charts, `index.html` and `compare` need from one report directory.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportData {
    /// The directory the report was read from (used for labels), or where it will be written.
    pub dir: PathBuf,
    /// `summary.json`.
    pub summary: Summary,
    /// `timeseries.csv`, one series per limiter in summary order.
    pub timeseries: Vec<LimiterSeries>,
    /// `scenario.toml`'s text, when present.
    pub scenario_text: Option<String>,
    /// Per-request samples from `requests.csv`, when it is present (finer distribution
    /// charts); `None` when the run skipped it.
    pub samples: Option<Vec<LimiterSamples>>,
}

impl ReportData {
    /// Reads the report in `dir`: `summary.json` and `timeseries.csv` are required;
    /// `scenario.toml` and `requests.csv` are optional.
    pub fn load(dir: &Path) -> Result<Self, ReportReadError> {
        let summary = read_summary(&dir.join("summary.json"))?;
        let timeseries = read_timeseries(&dir.join("timeseries.csv"), &summary)?;
        let scenario_path = dir.join("scenario.toml");
        let scenario_text = match std::fs::read_to_string(&scenario_path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(ReportReadError::Io {
                    path: scenario_path,
                    source,
                })
            }
        };
        let requests_path = dir.join("requests.csv");
        let samples = if requests_path.is_file() {
            Some(read_samples(&requests_path, &summary)?)
        } else {
            None
        };
        Ok(Self {
            dir: dir.to_owned(),
            summary,
            timeseries,
            scenario_text,
            samples,
        })
    }

    /// The time series of limiter `name`, if any.
    pub fn series(&self, name: &str) -> Option<&LimiterSeries> {
        self.timeseries.iter().find(|s| s.limiter == name)
    }

    /// The per-request samples of limiter `name`, when `requests.csv` was read.
    pub fn samples(&self, name: &str) -> Option<&LimiterSamples> {
        self.samples
            .as_ref()
            .and_then(|all| all.iter().find(|s| s.limiter == name))
    }

    /// Length of the run in seconds: the summary's duration, or the longest series.
    pub fn duration_s(&self) -> f64 {
        let longest = self
            .timeseries
            .iter()
            .filter_map(|s| s.second.last())
            .map(|&s| s as f64 + 1.0)
            .fold(0.0, f64::max);
        if self.summary.duration_s > 0.0 {
            self.summary.duration_s.max(longest)
        } else {
            longest
        }
    }
}
