//! The results file: one JSON object a line per request, appended as requests finish, in
//! finishing order. A rerun reads it first and skips the ids already `ok`.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One request's final outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultLine {
    /// The request's id (from the request file).
    pub id: String,
    /// Its 1-based line in the request file.
    pub line: u64,
    /// `"ok"` or `"failed"`.
    pub status: String,
    /// The request line's `metadata`, as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// The response (`id`, `model`, `choices`, `finish_reason`, `usage`) when ok.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<Value>,
    /// The final error when failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// HTTP attempts made (retries included; 0 when the limiter refused it first).
    pub attempts: u32,
    /// When it was started, ms since the batch started.
    pub started_ms: f64,
    /// When it ended, ms since the batch started.
    pub ended_ms: f64,
}

/// The results file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    /// Opening, reading or writing failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The results file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// An existing line is not a result line.
    #[error("{}:{line}: not a result line: {message}", path.display())]
    Line {
        /// The results file.
        path: PathBuf,
        /// 1-based line.
        line: u64,
        /// What is wrong.
        message: String,
    },
}

/// The ids with an `ok` result in `path` (empty when the file does not exist).
pub fn succeeded(path: &Path) -> Result<HashSet<String>, ResultsError> {
    let io = |source| ResultsError::Io {
        path: path.to_owned(),
        source,
    };
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashSet::new()),
        Err(e) => return Err(io(e)),
    };
    let mut done = HashSet::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        let r: ResultLine = serde_json::from_str(&line).map_err(|e| ResultsError::Line {
            path: path.to_owned(),
            line: i as u64 + 1,
            message: e.to_string(),
        })?;
        if r.status == "ok" {
            done.insert(r.id);
        }
    }
    Ok(done)
}

/// Appends result lines to the results file, flushed after each line (a killed run loses
/// at most the line being written).
#[derive(Debug)]
pub struct ResultsWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl ResultsWriter {
    /// Opens `path` for appending (creating it).
    pub fn append(path: &Path) -> Result<Self, ResultsError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| ResultsError::Io {
                path: path.to_owned(),
                source,
            })?;
        Ok(Self {
            path: path.to_owned(),
            out: BufWriter::new(file),
        })
    }

    /// Writes one line.
    pub fn write(&mut self, r: &ResultLine) -> Result<(), ResultsError> {
        let io = |source| ResultsError::Io {
            path: self.path.clone(),
            source,
        };
        let mut text = serde_json::to_string(r).map_err(|e| io(std::io::Error::other(e)))?;
        text.push('\n');
        self.out.write_all(text.as_bytes()).map_err(io)?;
        self.out.flush().map_err(io)
    }
}
