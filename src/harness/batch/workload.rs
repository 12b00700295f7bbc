//! A request file as a scenario workload (`[workload] requests = "file.jsonl"`): the batch
//! offered all at once at the run start, so `hub simulate` and `hub tune` can size a batch
//! before `hub batch` runs it.
//!
//! Each line is replayed with its own size: a generated prompt of the line's content tokens
//! and exactly its characters (so the servers' characters / 4 estimate, and the hub's, are
//! the line's), and its `max_tokens`; the server draws the output length as for any
//! request. Like a trace, the file is checked once when the scenario loads and read again
//! as a stream by each run.

use std::path::{Path, PathBuf};

use crate::provider::admission::RequestSize;

use super::input::{BatchRequest, RequestReader};
use super::{check_requests, BatchError};
use crate::harness::trace::TraceRequest;
use crate::harness::workload::CHAT_FRAMING_TOKENS;

/// `max_tokens` assumed for a line that sets none (the harness's default).
const DEFAULT_MAX_TOKENS: u64 = 100;

/// A request file, checked and measured.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestFile {
    /// The file.
    pub path: PathBuf,
    /// Requests in it.
    pub count: u64,
    /// Sum over the requests of the servers' admission estimate, ⌈prompt characters / 4⌉ +
    /// `max_tokens`, tokens.
    pub charge_sum: u64,
    /// The largest admission estimate of a request, tokens.
    pub charge_max: u64,
}

impl RequestFile {
    /// Checks every line (and that ids are unique) and measures the requests.
    pub fn scan(path: &Path) -> Result<Self, BatchError> {
        let count = check_requests(path)?;
        let (mut sum, mut max) = (0u64, 0u64);
        for r in RequestReader::open(path)? {
            let row = row(&r?, 0);
            let charge = charge(&row);
            sum += charge;
            max = max.max(charge);
        }
        Ok(Self {
            path: path.to_owned(),
            count,
            charge_sum: sum,
            charge_max: max,
        })
    }

    /// The requests as replay rows, all at the run start, in file order.
    pub fn arrivals(&self) -> Result<impl Iterator<Item = TraceRequest> + Send, BatchError> {
        Ok(RequestReader::open(&self.path)?
            .filter_map(Result::ok)
            .enumerate()
            .map(|(i, r)| row(&r, i as u64)))
    }
}

/// The admission estimate of a replayed row, tokens.
fn charge(r: &TraceRequest) -> u64 {
    let milli = u64::from(r.chars_per_token_milli.unwrap_or(4000));
    (r.prompt_tokens * milli / 1000).div_ceil(4) + r.max_tokens
}

/// Line `index` as a replay row: its content tokens (the chat framing taken off, at least
/// 1), its characters per token (kept within what generated text can match, 3.5 to 7), its
/// `max_tokens`.
fn row(r: &BatchRequest, index: u64) -> TraceRequest {
    let size = RequestSize::of(&r.request);
    let tokens = size
        .prompt_tokens
        .saturating_sub(CHAT_FRAMING_TOKENS)
        .max(1);
    let milli = (size.prompt_chars * 1000 / tokens).clamp(3_500, 7_000);
    let max_tokens = size.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS).max(1);
    TraceRequest {
        at: 0,
        prompt_tokens: tokens,
        output_tokens: max_tokens,
        max_tokens,
        row: index,
        exact_output: false,
        chars_per_token_milli: Some(u32::try_from(milli).unwrap_or(4_000)),
    }
}
