//! The quota engine: pure state machines deciding admit or throttle, with everything the
//! rate-limit headers and the 429 bodies need.
//!
//! It exists apart from the server so the hub's virtual-time simulator can reuse the exact
//! provider behaviour without HTTP: every method takes `now` (nanoseconds since an epoch the
//! caller chooses) and an admission estimate in tokens; nothing here reads a clock.
//!
//! - [`OpenAiQuota`]: per (organization, model) requests-per-minute and tokens-per-minute,
//!   replenished continuously (a token bucket per dimension, as OpenAI's reset headers show:
//!   at 60 RPM one request is back after `1s`), or, in [`Replenish::Sliding`] mode, an exact
//!   60-s sliding window (never more than the limit in any minute).
//! - [`AzureQuota`]: per deployment TPM, with RPM = 6 per 1000 TPM enforced over short
//!   sliding windows (10 s by default: `RPM/6` per window), and a running token count that
//!   resets each minute (fixed windows aligned to the clock's epoch).
//!
//! A request is admitted all-or-nothing: both dimensions must fit, and then both are charged.

mod azure;
pub mod meter;
mod openai;

use std::fmt;
use std::time::Duration;

pub use azure::{AzureLimits, AzureQuota};
pub use openai::{OpenAiLimits, OpenAiQuota, Replenish};

pub use crate::units::Nanos;

/// A quota dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dimension {
    /// Requests (each request costs 1).
    Requests,
    /// Tokens (each request costs its admission estimate).
    Tokens,
}

impl Dimension {
    /// `"requests"` or `"tokens"`, as in OpenAI's 429 `type` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requests => "requests",
            Self::Tokens => "tokens",
        }
    }
}

impl fmt::Display for Dimension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state of both dimensions at one instant, as the rate-limit headers report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaSnapshot {
    /// Requests allowed per period (OpenAI: per minute; Azure: per short window).
    pub limit_requests: u64,
    /// Requests that would still be admitted now.
    pub remaining_requests: u64,
    /// Time until the request dimension is back to its full limit.
    pub reset_requests: Duration,
    /// Tokens allowed per minute.
    pub limit_tokens: u64,
    /// Tokens that would still be admitted now.
    pub remaining_tokens: u64,
    /// Time until the token dimension is back to its full limit (Azure: until the
    /// per-minute count resets).
    pub reset_tokens: Duration,
}

/// A request admitted and charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// The state after charging this request (what its response headers report).
    pub snapshot: QuotaSnapshot,
}

/// A request refused; nothing was charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttle {
    /// The dimension that refused (the one with the longer wait; requests on a tie).
    pub dimension: Dimension,
    /// Exact time until this request would fit in every dimension; `None` when it never
    /// can, because its cost exceeds the dimension's limit ("Request too large").
    pub retry_after: Option<Duration>,
    /// The refusing dimension's limit (requests or tokens per its period).
    pub limit: u64,
    /// Units of the refusing dimension in use now.
    pub used: u64,
    /// Units this request asked for in the refusing dimension (1 for requests).
    pub requested: u64,
    /// The state at the refusal (what the 429's headers report).
    pub snapshot: QuotaSnapshot,
}

impl Throttle {
    /// True when the request can never be admitted: its cost exceeds the limit.
    pub fn too_large(&self) -> bool {
        self.retry_after.is_none()
    }
}

/// The outcome of [`QuotaEngine::try_admit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Admitted and charged.
    Admitted(Admission),
    /// Refused; nothing charged.
    Throttled(Throttle),
}

/// A provider's quota for one key (organization + model, or deployment).
pub trait QuotaEngine: Send + fmt::Debug {
    /// Admits one request costing `tokens` (the admission estimate) at `now`, charging both
    /// dimensions, or refuses it and charges nothing.
    fn try_admit(&mut self, now: Nanos, tokens: u64) -> Decision;

    /// The state at `now` without charging anything.
    fn snapshot(&mut self, now: Nanos) -> QuotaSnapshot;

    /// Back to full capacity in both dimensions.
    fn reset(&mut self);
}

/// The wait of each dimension combined into a decision (shared by both engines).
struct Waits {
    requests: Option<Duration>,
    tokens: Option<Duration>,
}

impl Waits {
    /// `None` when both fit now; otherwise the refusing dimension and the exact wait.
    fn refusal(&self) -> Option<(Dimension, Option<Duration>)> {
        match (self.requests, self.tokens) {
            (Some(r), Some(t)) if r.is_zero() && t.is_zero() => None,
            (None, _) => Some((Dimension::Requests, None)),
            (_, None) => Some((Dimension::Tokens, None)),
            (Some(r), Some(t)) if t > r => Some((Dimension::Tokens, Some(t))),
            (Some(r), Some(_)) => Some((Dimension::Requests, Some(r))),
        }
    }
}
