//! Trace workloads: replaying recorded LLM traffic — when each request came, how long its
//! prompt was and how many tokens it generated — instead of drawing synthetic traffic.
//!
//! A trace is read as a stream ([`TraceReader`]: one line in memory), so a million-row
//! trace costs no more memory than a short one. A scenario's `[workload] trace` selects a
//! window of it (`start`, `duration`, in the trace's own time), compresses time by `speed`,
//! thins or repeats requests by `rate_scale`, and sets `max_tokens` from the trace's
//! generated count, a fixed cap or a multiple. Arrivals keep the trace's relative times
//! exactly (divided by `speed`), open loop, measured from the intended start like every
//! open-loop phase.

mod parse;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;

pub use parse::TraceReader;

use super::workload::sub_seed;
use crate::clock::{nanos, Nanos};

/// Salt of the per-row rate-scale draws (see [`sub_seed`]).
const SCALE_SALT: u64 = 0x7363_616c_6520_7472; // "scale tr"

/// The layout of a trace file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TraceFormat {
    /// Azure LLM inference trace (2023, 2024): CSV with the header
    /// `TIMESTAMP,ContextTokens,GeneratedTokens`, timestamps `YYYY-MM-DD HH:MM:SS.fffffff`.
    Azure,
    /// BurstGPT: CSV with the header `Timestamp,Model,Request tokens,Response tokens,Total
    /// tokens,Log Type`, timestamps in seconds from the trace's start.
    #[serde(rename = "burstgpt")]
    BurstGpt,
    /// Mooncake: JSON lines with `timestamp` (milliseconds), `input_length` and
    /// `output_length` (other keys ignored).
    Mooncake,
}

impl TraceFormat {
    /// The name as written in a scenario.
    pub fn name(self) -> &'static str {
        match self {
            Self::Azure => "azure",
            Self::BurstGpt => "burstgpt",
            Self::Mooncake => "mooncake",
        }
    }
}

/// One request of a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceRow {
    /// When it arrived, ns on the trace's own clock (Azure: since the Unix epoch; BurstGPT
    /// and Mooncake: since the trace's start).
    pub at: u64,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Generated (output) tokens.
    pub output_tokens: u64,
}

/// A trace could not be read; row errors name file, line and column.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The file could not be opened or read.
    #[error("{}: cannot read the trace: {source}", path.display())]
    Io {
        /// The trace file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A row (or the header) is malformed.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Row {
        /// The trace file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column (characters) of the offending field.
        column: usize,
        /// What is wrong, naming the value.
        message: String,
    },
    /// No rows at all, or none in the selected window.
    #[error("{}: the trace has no rows{}", path.display(), if *windowed { " in the selected window (start, duration)" } else { "" })]
    Empty {
        /// The trace file.
        path: PathBuf,
        /// Whether rows exist but none fall in the window.
        windowed: bool,
    },
}

/// How each replayed request's `max_tokens` is set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaxTokens {
    /// The trace's generated count (at least 1): the output budget is what was used.
    Trace,
    /// The same cap for every request, tokens.
    Fixed(u64),
    /// The generated count times this factor, rounded up (at least 1).
    Multiple(f64),
}

impl MaxTokens {
    /// `max_tokens` for a request that generated `output` tokens.
    pub fn for_output(self, output: u64) -> u64 {
        match self {
            Self::Trace => output.max(1),
            Self::Fixed(n) => n.max(1),
            Self::Multiple(k) => ((output as f64 * k).ceil() as u64).max(1),
        }
    }
}

impl std::fmt::Display for MaxTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Trace => f.write_str("the trace's generated count"),
            Self::Fixed(n) => write!(f, "{n}"),
            Self::Multiple(k) => write!(f, "{k} × the trace's generated count"),
        }
    }
}

/// What a streaming pass over the trace found (`hub check`, defaults, expected load).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceScan {
    /// Rows in the file.
    pub rows: u64,
    /// The first row's time, ns on the trace's clock.
    pub first_at: u64,
    /// The last row's time, ns on the trace's clock.
    pub last_at: u64,
    /// Rows inside the window.
    pub in_window: u64,
    /// Sum of prompt tokens of the rows inside the window.
    pub prompt_tokens: u64,
    /// Sum of generated tokens of the rows inside the window.
    pub output_tokens: u64,
    /// The longest prompt inside the window, tokens.
    pub max_prompt_tokens: u64,
    /// The longest output inside the window, tokens.
    pub max_output_tokens: u64,
}

/// A trace workload, resolved: which file, which window, how fast, how dense.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSpec {
    /// The trace file (relative paths resolved against the scenario's directory).
    pub path: PathBuf,
    /// Its layout.
    pub format: TraceFormat,
    /// Where the window starts, measured from the trace's first row (trace time).
    pub start: Duration,
    /// The window's length in trace time; `None` = to the end of the trace.
    pub duration: Option<Duration>,
    /// Time compression: 10 replays ten times faster (`> 0`).
    pub speed: f64,
    /// Requests replayed per trace row on average (`> 0`): 0.5 keeps each row with
    /// probability ½, 2 sends each row twice at its instant; seeded per row.
    pub rate_scale: f64,
    /// How `max_tokens` is set.
    pub max_tokens: MaxTokens,
    /// What the load-time pass found.
    pub scan: TraceScan,
}

impl TraceSpec {
    /// Reads the whole trace once (streaming) to check every row and measure the window;
    /// errors name file, line and column, or say the window is empty.
    pub fn scan(
        path: &Path,
        format: TraceFormat,
        start: Duration,
        duration: Option<Duration>,
    ) -> Result<TraceScan, TraceError> {
        let mut scan: Option<TraceScan> = None;
        for row in TraceReader::open(path, format)? {
            let row = row?;
            let s = scan.get_or_insert(TraceScan {
                rows: 0,
                first_at: row.at,
                last_at: row.at,
                in_window: 0,
                prompt_tokens: 0,
                output_tokens: 0,
                max_prompt_tokens: 0,
                max_output_tokens: 0,
            });
            s.rows += 1;
            s.last_at = row.at;
            if in_window(row.at - s.first_at, start, duration) {
                s.in_window += 1;
                s.prompt_tokens += row.prompt_tokens;
                s.output_tokens += row.output_tokens;
                s.max_prompt_tokens = s.max_prompt_tokens.max(row.prompt_tokens);
                s.max_output_tokens = s.max_output_tokens.max(row.output_tokens);
            }
        }
        match scan {
            Some(s) if s.in_window > 0 => Ok(s),
            s => Err(TraceError::Empty {
                path: path.to_owned(),
                windowed: s.is_some(),
            }),
        }
    }

    /// The window's length in trace time: as given, else from `start` to the last row
    /// (plus 1 ns, so the last row is inside).
    pub fn window(&self) -> Duration {
        self.duration.unwrap_or_else(|| {
            let span = self.scan.last_at - self.scan.first_at + 1;
            Duration::from_nanos(span).saturating_sub(self.start)
        })
    }

    /// The replay's length in run time: the window divided by `speed`, rounded up, plus
    /// 1 ns so that every row of the window starts strictly before it ends.
    pub fn replay_duration(&self) -> Duration {
        let ns = (nanos(self.window()) as f64 / self.speed).ceil();
        Duration::from_nanos((ns as u64).saturating_add(1))
    }

    /// Mean requests per second of the replay (rows in the window × `rate_scale` over the
    /// replay's length).
    pub fn rate_per_second(&self) -> f64 {
        self.scan.in_window as f64 * self.rate_scale / self.replay_duration().as_secs_f64()
    }

    /// The requests of the replay, in time order, with times in ns since the run start,
    /// strictly before `end` (the run's length, ns); `seed` decides the `rate_scale`
    /// draws. Reads the file as it goes.
    pub fn arrivals(&self, seed: u64, end: Nanos) -> Result<TraceArrivals, TraceError> {
        Ok(TraceArrivals {
            reader: TraceReader::open(&self.path, self.format)?,
            spec: self.clone(),
            seed,
            first_at: None,
            row: 0,
            pending: None,
            end,
        })
    }
}

fn in_window(offset: u64, start: Duration, duration: Option<Duration>) -> bool {
    let start = nanos(start);
    offset >= start && duration.is_none_or(|d| offset - start < nanos(d))
}

/// One replayed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceRequest {
    /// Intended start, ns since the run start: (row time − window start) / speed.
    pub at: Nanos,
    /// Prompt tokens, from the trace (at least 1).
    pub prompt_tokens: u64,
    /// Generated tokens, from the trace: what the server is to produce.
    pub output_tokens: u64,
    /// `max_tokens` to send.
    pub max_tokens: u64,
    /// The row's index in the file (0-based, first row after the header).
    pub row: u64,
    /// Whether the server is to produce exactly `output_tokens` (a trace's recorded count);
    /// false lets it draw the length (rows of a request file, whose outputs are unknown).
    pub exact_output: bool,
    /// The prompt's characters per token in thousandths, when the row fixes it (a request
    /// file's real text); `None` takes the workload's.
    pub chars_per_token_milli: Option<u32>,
}

/// The iterator of [`TraceSpec::arrivals`]. A read error (the file changed since it was
/// checked) ends it, logged.
#[derive(Debug)]
pub struct TraceArrivals {
    reader: TraceReader<std::io::BufReader<std::fs::File>>,
    spec: TraceSpec,
    seed: u64,
    first_at: Option<u64>,
    row: u64,
    /// A row still to be sent this many more times.
    pending: Option<(TraceRequest, u64)>,
    end: Nanos,
}

impl TraceArrivals {
    /// Copies of row `index` to send: ⌊scale⌋, plus one with probability frac(scale).
    fn copies(&self, index: u64) -> u64 {
        let s = self.spec.rate_scale;
        let whole = s.floor();
        let frac = s - whole;
        let extra = frac > 0.0
            && StdRng::seed_from_u64(sub_seed(self.seed, SCALE_SALT, index)).random::<f64>() < frac;
        whole as u64 + u64::from(extra)
    }
}

impl Iterator for TraceArrivals {
    type Item = TraceRequest;

    fn next(&mut self) -> Option<TraceRequest> {
        loop {
            if let Some((req, left)) = self.pending.as_mut() {
                let out = *req;
                *left -= 1;
                if *left == 0 {
                    self.pending = None;
                }
                return Some(out);
            }
            let row = match self.reader.next()? {
                Ok(row) => row,
                Err(e) => {
                    tracing::warn!(error = %e, "trace replay stopped");
                    return None;
                }
            };
            let index = self.row;
            self.row += 1;
            let first = *self.first_at.get_or_insert(row.at);
            let offset = row.at - first;
            let start = nanos(self.spec.start);
            if offset < start {
                continue;
            }
            if !in_window(offset, self.spec.start, self.spec.duration) {
                return None;
            }
            let trace_ns = offset - start;
            let at = if self.spec.speed == 1.0 {
                trace_ns
            } else {
                (trace_ns as f64 / self.spec.speed).round() as u64
            };
            if at >= self.end {
                return None;
            }
            let copies = self.copies(index);
            if copies == 0 {
                continue;
            }
            let req = TraceRequest {
                at,
                prompt_tokens: row.prompt_tokens.max(1),
                output_tokens: row.output_tokens,
                max_tokens: self.spec.max_tokens.for_output(row.output_tokens),
                row: index,
                exact_output: true,
                chars_per_token_milli: None,
            };
            self.pending = Some((req, copies));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn write_trace(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("hub-trace-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Rows at 10, 10.5, 11, 12.25, 20 s (BurstGPT seconds), tokens = row index + 1.
    fn five_rows(name: &str) -> PathBuf {
        let mut text =
            "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n".to_owned();
        for (i, t) in ["10", "10.5", "11", "12.25", "20"].iter().enumerate() {
            text.push_str(&format!("{t},m,{},{},0,API log\n", 100 + i, i * 10));
        }
        write_trace(name, &text)
    }

    fn spec(path: &Path, start: u64, duration: Option<u64>, speed: f64, scale: f64) -> TraceSpec {
        let (start, duration) = (
            Duration::from_millis(start),
            duration.map(Duration::from_millis),
        );
        TraceSpec {
            path: path.to_owned(),
            format: TraceFormat::BurstGpt,
            start,
            duration,
            speed,
            rate_scale: scale,
            max_tokens: MaxTokens::Trace,
            scan: TraceSpec::scan(path, TraceFormat::BurstGpt, start, duration).unwrap(),
        }
    }

    fn times(s: &TraceSpec) -> Vec<u64> {
        let end = nanos(s.replay_duration());
        s.arrivals(1, end).unwrap().map(|r| r.at).collect()
    }

    #[test]
    fn arrivals_keep_the_traces_relative_times_exactly() {
        let path = five_rows("exact.csv");
        let s = spec(&path, 0, None, 1.0, 1.0);
        assert_eq!(s.scan.rows, 5);
        assert_eq!(s.window(), Duration::from_nanos(10 * S + 1));
        assert_eq!(times(&s), [0, S / 2, S, 2 * S + S / 4, 10 * S]);
        let rows: Vec<_> = s.arrivals(1, u64::MAX).unwrap().collect();
        // A shorter run cuts the replay at its end.
        assert_eq!(s.arrivals(1, S).unwrap().count(), 2);
        assert_eq!(
            (
                rows[3].prompt_tokens,
                rows[3].output_tokens,
                rows[3].max_tokens
            ),
            (103, 30, 30)
        );
        assert_eq!(rows[0].max_tokens, 1, "a 0-token output still asks for 1");
    }

    #[test]
    fn speed_divides_every_offset() {
        let path = five_rows("speed.csv");
        let s = spec(&path, 0, None, 10.0, 1.0);
        assert_eq!(times(&s), [0, S / 20, S / 10, 225_000_000, S]);
        let s = spec(&path, 0, None, 0.5, 1.0);
        assert_eq!(times(&s), [0, S, 2 * S, 4 * S + S / 2, 20 * S]);
    }

    #[test]
    fn a_window_selects_rows_and_starts_the_clock_at_its_start() {
        let path = five_rows("window.csv");
        // Offsets 0, 0.5, 1, 2.25, 10 s; the window [0.5 s, 2.5 s) holds the middle three.
        let s = spec(&path, 500, Some(2_000), 1.0, 1.0);
        assert_eq!(s.scan.in_window, 3);
        assert_eq!(times(&s), [0, S / 2, S + 3 * S / 4]);
        let s = spec(&path, 500, Some(2_000), 2.0, 1.0);
        assert_eq!(times(&s), [0, S / 4, 875_000_000]);
        assert_eq!(s.replay_duration(), Duration::from_nanos(S + 1));
        let e = TraceSpec::scan(
            &path,
            TraceFormat::BurstGpt,
            Duration::from_secs(3),
            Some(Duration::from_secs(1)),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("no rows in the selected window"), "{e}");
    }

    #[test]
    fn rate_scale_thins_or_repeats_rows_at_their_own_instants() {
        let path = five_rows("scale.csv");
        let twice = spec(&path, 0, None, 1.0, 2.0);
        assert_eq!(
            times(&twice),
            [
                0,
                0,
                S / 2,
                S / 2,
                S,
                S,
                2 * S + S / 4,
                2 * S + S / 4,
                10 * S,
                10 * S
            ]
        );
        let all = times(&spec(&path, 0, None, 1.0, 1.0));
        let half = spec(&path, 0, None, 1.0, 0.5);
        let kept = times(&half);
        assert!(
            kept.iter().all(|t| all.contains(t)),
            "thinning keeps exact times"
        );
        assert_eq!(kept, times(&half), "seeded: the same rows every time");
        // Over many rows the kept share approaches the scale.
        let mut text = "TIMESTAMP,ContextTokens,GeneratedTokens\n".to_owned();
        for i in 0..2_000u64 {
            text.push_str(&format!(
                "2023-11-16 18:{:02}:{:02}.5,10,10\n",
                i / 60 % 60,
                i % 60
            ));
        }
        let path = write_trace("many.csv", &text);
        let mut s = TraceSpec {
            format: TraceFormat::Azure,
            scan: TraceSpec::scan(&path, TraceFormat::Azure, Duration::ZERO, None).unwrap(),
            path: path.clone(),
            ..spec(&five_rows("scale2.csv"), 0, None, 1.0, 0.25)
        };
        s.rate_scale = 0.25;
        let n = s.arrivals(9, u64::MAX).unwrap().count();
        assert!((400..600).contains(&n), "{n} of 2000 at 0.25");
        s.rate_scale = 1.5;
        let n = s.arrivals(9, u64::MAX).unwrap().count();
        assert!((2_800..3_200).contains(&n), "{n} of 2000 at 1.5");
    }

    #[test]
    fn max_tokens_modes() {
        assert_eq!(MaxTokens::Trace.for_output(44), 44);
        assert_eq!(MaxTokens::Fixed(256).for_output(44), 256);
        assert_eq!(MaxTokens::Multiple(1.5).for_output(45), 68);
        assert_eq!(MaxTokens::Multiple(2.0).for_output(0), 1);
    }
}
