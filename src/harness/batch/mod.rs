//! `hub batch`: a file of requests through the [`Hub`] — the one request lifecycle, the
//! configured limiter (memory or Redis), retries and fallback — as fast as the limits
//! allow, with bounded concurrency, one result line per request.
//!
//! The request file is read twice as a stream: once to check every line and that ids are
//! unique (so a mistake costs nothing), then to send. Requests start in file order, at most
//! `concurrency` in flight; the limiter paces them. Each result is appended to the results
//! file as it finishes (and flushed), so an interrupted batch resumes: a rerun skips the
//! ids that already have an `ok` line and retries the others.

mod attempts;
pub mod input;
pub mod results;
pub mod workload;

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::{mpsc, Semaphore};

use crate::hub::{Hub, HubError, HubOptions};
use crate::plugin::PluginRegistry;

pub use input::{BatchRequest, InputError, RequestReader};
pub use results::{ResultLine, ResultsError, ResultsWriter};

/// How `hub batch` runs.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    /// The request file (JSON lines).
    pub requests: PathBuf,
    /// The hub configuration (TOML).
    pub config: PathBuf,
    /// The results file (JSON lines, appended).
    pub out: PathBuf,
    /// Requests in flight at most (≥ 1).
    pub concurrency: usize,
    /// Show a progress bar (on a terminal) or a line every few seconds.
    pub progress: bool,
}

/// A batch could not run.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The request file is unreadable or has a bad line.
    #[error(transparent)]
    Input(#[from] InputError),
    /// Two lines share an id.
    #[error("{}:{line}: id {id:?} repeats line {first}: ids must be unique (set custom_id or metadata.id)", path.display())]
    DuplicateId {
        /// The request file.
        path: PathBuf,
        /// The id.
        id: String,
        /// The line repeating it.
        line: u64,
        /// The line that had it first.
        first: u64,
    },
    /// The results file is unreadable or unwritable.
    #[error(transparent)]
    Results(#[from] ResultsError),
    /// The hub configuration was rejected.
    #[error(transparent)]
    Hub(#[from] HubError),
}

/// What a batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BatchSummary {
    /// Requests in the file.
    pub total: u64,
    /// Requests skipped because an earlier run already succeeded with them.
    pub skipped: u64,
    /// Requests that succeeded in this run.
    pub ok: u64,
    /// Requests that finally failed in this run.
    pub failed: u64,
    /// HTTP attempts made in this run (retries included).
    pub attempts: u64,
    /// Prompt + completion tokens of the successes, as the server counted them.
    pub tokens: u64,
    /// Wall time of the sending phase, s.
    pub elapsed_s: f64,
}

/// Checks every line of `path` and that ids are unique; the number of requests.
pub fn check_requests(path: &Path) -> Result<u64, BatchError> {
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut n = 0;
    for r in RequestReader::open(path)? {
        let r = r?;
        if let Some(&first) = seen.get(&r.id) {
            return Err(BatchError::DuplicateId {
                path: path.to_owned(),
                id: r.id,
                line: r.line,
                first,
            });
        }
        seen.insert(r.id, r.line);
        n += 1;
    }
    Ok(n)
}

/// Runs the batch of `opts` (inside a tokio runtime). `Ok` also when requests failed: the
/// summary counts them and their result lines say why.
pub async fn run_batch(opts: &BatchOptions) -> Result<BatchSummary, BatchError> {
    let total = check_requests(&opts.requests)?;
    let done = results::succeeded(&opts.out)?;
    let builtins = PluginRegistry::with_builtins();
    let hub = HubOptions {
        plugins: attempts::counting(&builtins, &builtins.names()),
        ..HubOptions::default()
    }
    .load_file(&opts.config)?;
    let hub = Arc::new(hub);
    let mut writer = ResultsWriter::append(&opts.out)?;
    let pending = RequestReader::open(&opts.requests)?
        .filter_map(Result::ok)
        .filter(|r| !done.contains(&r.id))
        .count() as u64;
    let summary = BatchSummary {
        total,
        skipped: total - pending,
        ..BatchSummary::default()
    };
    let progress = Progress::new(opts.progress, pending);
    let start = Instant::now();
    let (tx, mut rx) = mpsc::unbounded_channel::<ResultLine>();
    let slots = Arc::new(Semaphore::new(opts.concurrency.max(1)));
    let sender = {
        let (hub, slots, done, path) = (hub.clone(), slots.clone(), done, opts.requests.clone());
        tokio::spawn(async move {
            let Ok(reader) = RequestReader::open(&path) else {
                return;
            };
            for r in reader.filter_map(Result::ok) {
                if done.contains(&r.id) {
                    continue;
                }
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let (hub, tx) = (hub.clone(), tx.clone());
                tokio::spawn(async move {
                    let line = run_one(&hub, r, start).await;
                    let _ = tx.send(line);
                    drop(permit);
                });
            }
        })
    };
    let mut summary = summary;
    while let Some(line) = rx.recv().await {
        summary.attempts += u64::from(line.attempts);
        if line.status == "ok" {
            summary.ok += 1;
            summary.tokens += line
                .response
                .as_ref()
                .and_then(|r| r.get("usage"))
                .map_or(0, |u| {
                    ["input_tokens", "output_tokens"]
                        .iter()
                        .filter_map(|k| u.get(k).and_then(serde_json::Value::as_u64))
                        .sum()
                });
        } else {
            summary.failed += 1;
        }
        writer.write(&line)?;
        progress.update(&summary, start.elapsed());
    }
    let _ = sender.await;
    summary.elapsed_s = start.elapsed().as_secs_f64();
    progress.finish();
    Ok(summary)
}

/// Sends one request through the hub and turns its outcome into a result line.
async fn run_one(hub: &Hub, r: BatchRequest, start: Instant) -> ResultLine {
    let counter = Arc::new(AtomicU32::new(0));
    let started = start.elapsed();
    let result = attempts::ATTEMPTS
        .scope(counter.clone(), hub.complete(r.request))
        .await;
    let ended = start.elapsed();
    let ms = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
    let (status, response, error) = match result {
        Ok(resp) => (
            "ok",
            Some(json!({
                "id": resp.id,
                "model": resp.model,
                "choices": resp.choices,
                "finish_reason": resp.finish_reason,
                "usage": resp.usage,
            })),
            None,
        ),
        Err(e) => ("failed", None, Some(e.to_string())),
    };
    ResultLine {
        id: r.id,
        line: r.line,
        status: status.to_owned(),
        metadata: r.metadata,
        response,
        error,
        attempts: counter.load(Ordering::Relaxed),
        started_ms: ms(started),
        ended_ms: ms(ended),
    }
}

/// Progress of a batch: done out of pending, failures, tokens per minute, ETA.
#[derive(Debug)]
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    plain: bool,
    last_line: AtomicU64,
}

impl Progress {
    fn new(enabled: bool, pending: u64) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let bar = (enabled && terminal).then(|| {
            let bar = indicatif::ProgressBar::new(pending);
            if let Ok(style) =
                indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} ETA {eta} {msg}")
            {
                bar.set_style(style);
            }
            bar
        });
        Self {
            bar,
            plain: enabled && !terminal,
            last_line: AtomicU64::new(0),
        }
    }

    fn update(&self, s: &BatchSummary, elapsed: Duration) {
        let minutes = elapsed.as_secs_f64() / 60.0;
        let tpm = if minutes > 0.0 {
            s.tokens as f64 / minutes
        } else {
            0.0
        };
        let msg = format!("{} ok, {} failed, {tpm:.0} tokens/min", s.ok, s.failed);
        if let Some(bar) = &self.bar {
            bar.set_position(s.ok + s.failed);
            bar.set_message(msg);
        } else if self.plain {
            let second = elapsed.as_secs();
            if second / 5 > self.last_line.load(Ordering::Relaxed) {
                self.last_line.store(second / 5, Ordering::Relaxed);
                eprintln!("batch: {second}s: {} done, {msg}", s.ok + s.failed);
            }
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}
