//! Request files: one JSON object a line, read as a stream.
//!
//! A line is an OpenAI chat completions body (`model`, `messages`, `max_tokens`, …), with an
//! optional `metadata` object carried through to its result, or the OpenAI Batch API's
//! envelope `{"custom_id": …, "method": "POST", "url": "/v1/chat/completions", "body": {…}}`.
//! Each request's id is its `custom_id`, else `metadata.id` when that is a string or number,
//! else `line-N` (its 1-based line number); ids are unique in a file, so a rerun can tell
//! which requests already succeeded.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::provider::CompletionRequest;

/// Body fields [`CompletionRequest`] reads itself; every other field goes to its
/// `provider_params`.
const TYPED: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "temperature",
    "top_p",
    "n",
    "stop",
    "stream",
    "user",
];

/// A request file could not be read; line errors name file, line and column.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The file could not be opened or read.
    #[error("{}: cannot read the requests: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A line is not a request.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: u64,
        /// 1-based column (1 when the whole line is wrong).
        column: usize,
        /// What is wrong.
        message: String,
    },
}

/// One request of a file.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchRequest {
    /// The request's id (see the module docs).
    pub id: String,
    /// Its 1-based line in the file.
    pub line: u64,
    /// What to send (never streamed: a batch waits for whole responses).
    pub request: CompletionRequest,
    /// The line's `metadata`, carried to its result.
    pub metadata: Option<Value>,
}

/// Reads a request file line by line (blank lines skipped), one line in memory.
#[derive(Debug)]
pub struct RequestReader {
    path: PathBuf,
    input: BufReader<File>,
    line: u64,
    buf: String,
    failed: bool,
}

impl RequestReader {
    /// Opens `path`.
    pub fn open(path: &Path) -> Result<Self, InputError> {
        let file = File::open(path).map_err(|source| InputError::Io {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self {
            path: path.to_owned(),
            input: BufReader::with_capacity(1 << 16, file),
            line: 0,
            buf: String::new(),
            failed: false,
        })
    }

    fn error(&self, column: usize, message: impl Into<String>) -> InputError {
        InputError::Line {
            path: self.path.clone(),
            line: self.line,
            column,
            message: message.into(),
        }
    }

    fn read(&mut self) -> Result<Option<BatchRequest>, InputError> {
        loop {
            self.buf.clear();
            let n = self
                .input
                .read_line(&mut self.buf)
                .map_err(|source| InputError::Io {
                    path: self.path.clone(),
                    source,
                })?;
            if n == 0 {
                return Ok(None);
            }
            self.line += 1;
            if !self.buf.trim().is_empty() {
                break;
            }
        }
        let value: Value = serde_json::from_str(&self.buf)
            .map_err(|e| self.error(e.column().max(1), e.to_string()))?;
        parse_line(value, self.line)
            .map(Some)
            .map_err(|m| self.error(1, m))
    }
}

impl Iterator for RequestReader {
    type Item = Result<BatchRequest, InputError>;

    /// The next request, or the first error (after which the reader ends).
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let r = self.read().transpose();
        self.failed = matches!(r, Some(Err(_)));
        r
    }
}

/// One line's value as a request; the error says what is wrong with it.
pub fn parse_line(value: Value, line: u64) -> Result<BatchRequest, String> {
    let Value::Object(mut obj) = value else {
        return Err("expected a JSON object (a chat completions body)".into());
    };
    let custom_id = match obj.remove("custom_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(v) => return Err(format!("custom_id: expected a string, found {v}")),
    };
    let mut body = match obj.remove("body") {
        Some(Value::Object(b)) => {
            if let Some(url) = obj.get("url").and_then(Value::as_str) {
                if !url.ends_with("/chat/completions") {
                    return Err(format!("url {url:?}: only chat completions are supported"));
                }
            }
            b
        }
        Some(v) => return Err(format!("body: expected an object, found {v}")),
        None => obj.clone(),
    };
    let metadata = match body.remove("metadata").or_else(|| obj.remove("metadata")) {
        None | Some(Value::Null) => None,
        Some(m) => Some(m),
    };
    let id = match (custom_id, metadata.as_ref().and_then(|m| m.get("id"))) {
        (Some(id), _) => id,
        (None, Some(Value::String(s))) => s.clone(),
        (None, Some(Value::Number(n))) => n.to_string(),
        _ => format!("line-{line}"),
    };
    if !body.contains_key("messages") {
        let what = if body.contains_key("input") {
            "embeddings bodies are not supported by `hub batch` yet (chat completions only)"
        } else {
            "missing `messages`: expected a chat completions body"
        };
        return Err(what.into());
    }
    let mut params = Map::new();
    let keys: Vec<String> = body.keys().cloned().collect();
    for k in keys {
        if !TYPED.contains(&k.as_str()) {
            if let Some(v) = body.remove(&k) {
                params.insert(k, v);
            }
        }
    }
    let mut request: CompletionRequest =
        serde_json::from_value(Value::Object(body)).map_err(|e| e.to_string())?;
    request.stream = false;
    request.provider_params = params;
    Ok(BatchRequest {
        id,
        line,
        request,
        metadata,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plain_bodies_keep_metadata_and_extra_fields() {
        let r = parse_line(
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                   "max_tokens": 5, "seed": 3, "metadata": {"row": 7}}),
            4,
        )
        .unwrap();
        assert_eq!(r.id, "line-4");
        assert_eq!(r.metadata, Some(json!({"row": 7})));
        assert_eq!(r.request.max_tokens, Some(5));
        assert_eq!(r.request.provider_params.get("seed"), Some(&json!(3)));
        assert!(!r.request.provider_params.contains_key("metadata"));
        let r = parse_line(
            json!({"model": "m", "messages": [], "metadata": {"id": 12}}),
            1,
        )
        .unwrap();
        assert_eq!(r.id, "12");
    }

    #[test]
    fn batch_api_envelopes_use_their_custom_id() {
        let r = parse_line(
            json!({"custom_id": "a-1", "method": "POST", "url": "/v1/chat/completions",
                   "body": {"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": true}}),
            9,
        )
        .unwrap();
        assert_eq!(r.id, "a-1");
        assert!(!r.request.stream, "a batch never streams");
        let e = parse_line(
            json!({"custom_id": "e", "url": "/v1/embeddings", "body": {"model": "m", "input": "x"}}),
            1,
        )
        .unwrap_err();
        assert!(e.contains("only chat completions"), "{e}");
    }

    #[test]
    fn bad_lines_say_what_is_wrong() {
        assert!(parse_line(json!([1]), 1)
            .unwrap_err()
            .contains("JSON object"));
        assert!(parse_line(json!({"model": "m", "input": "x"}), 1)
            .unwrap_err()
            .contains("embeddings"));
        assert!(parse_line(json!({"model": "m"}), 1)
            .unwrap_err()
            .contains("missing `messages`"));
        assert!(
            parse_line(json!({"model": "m", "messages": [{"role": "robot"}]}), 1)
                .unwrap_err()
                .contains("robot")
        );
    }

    #[test]
    fn the_reader_locates_invalid_json() {
        let dir = std::env::temp_dir().join(format!("hub-batch-input-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("r.jsonl");
        std::fs::write(
            &path,
            "{\"model\":\"m\",\"messages\":[]}\n\n{\"model\": \"m\", \"messages\": [}\n",
        )
        .unwrap();
        let rows: Vec<_> = RequestReader::open(&path).unwrap().collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].as_ref().unwrap().line, 1);
        let e = rows[1].as_ref().unwrap_err().to_string();
        assert!(e.contains("r.jsonl:3:29: "), "{e}");
    }
}
