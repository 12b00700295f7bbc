//! The conformance kit: proves any [`RateLimiter`] the way this crate proves its own.
//!
//! [`check`] drives a limiter through adversarial traces on a [`ManualClock`] it moves by
//! hand, checks every [`Property`] along the way, and on the first failure shrinks the
//! trace to a minimal counterexample it prints step by step. The in-memory
//! [`KeyedLimiter`](super::KeyedLimiter), `hub verify`, and a user's own strategy (or a
//! wrapper around another crate) are all proved with this one function.
//!
//! The traces are built to break limiters, not to look like traffic
//! ([`script`] documents each episode): bursts from full, saturation with every retry at
//! exactly the returned wait and one nanosecond before it (so a rate error of 0.1 % shows
//! within a few admissions), weighted costs near capacity, costs chosen so that each
//! dimension in turn is the one that refuses, refunds and extra charges (also of permits
//! admitted more than a window ago), a clock going backwards, idle gaps then bursts, and
//! queued `acquire` waiters, some of them cancelled.
//!
//! What the kit needs from the limiter: its clock is the [`ManualClock`] given to
//! [`check`] — best wrapped in a [`GuardedClock`], so that an `acquire` that spins on
//! zero waits is reported ([`Property::NoBusyWait`]) rather than hanging the check; [`RateLimiter::reset`] puts the [`Subject`]'s key back to full capacity
//! (each trace starts with it, at a time aligned to every window, so a trace replays
//! identically while it is shrunk); the limits it enforces on the key are the
//! [`Subject`]'s.
//!
//! A limiter whose decisions are made on a clock the kit cannot move — the Redis
//! backend's server clock — is proved in real time by [`check_server_clock`], on the
//! properties that apply there (its module docs say which, and why).
//!
//! ```
//! use std::sync::Arc;
//! use connector_hub::clock::ManualClock;
//! use connector_hub::limiter::conformance::{self, GuardedClock, Options, Subject};
//! use connector_hub::limiter::{KeyedLimiter, LimitKey, LimiterConfig};
//!
//! let config = LimiterConfig::from_toml(
//!     "[default]\nstrategy = \"gcra\"\nlimits = { rpm = 60, tpm = 4000 }",
//! )
//! .unwrap();
//! let key = LimitKey::new("openai", "gpt-4o-mini");
//! let subject = Subject::from_config(key, config.default.as_ref().unwrap()).unwrap();
//! let clock = ManualClock::new(0);
//! let limiter = KeyedLimiter::new(config, Arc::new(GuardedClock::new(clock.clone()))).unwrap();
//!
//! let options = Options { traces: 8, ..Options::default() };
//! let report = futures::executor::block_on(conformance::check(&limiter, &clock, &subject, &options))
//!     .expect("the keyed limiter conforms");
//! assert_eq!(report.traces, 8);
//! assert!(report.admitted > 0 && report.exact_waits > 0);
//! ```

mod guard;
mod run;
pub mod script;
mod server;
mod shrink;

use std::fmt;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::SeedableRng;

use crate::clock::{ManualClock, Nanos};

use super::config::{
    ChargeAt, ConfigError, Limit, RateLimitConfig, RateLimitType, Strategy, TokenAccounting,
};
use super::{Cost, LimitKey, RateLimiter};

pub use guard::{GuardedClock, BUSY_WAIT, BUSY_WAIT_LIMIT};
pub use run::Tally;
pub use script::Op;
pub use server::{check_server_clock, ServerClocked};

/// One property the kit checks. Each is stated in one sentence by [`statement`](Self::statement),
/// which every failure message repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Property {
    /// Every dimension stays within its strategy's bound ([`invariants::check`](super::invariants::check)).
    Bound,
    /// A `Wait` denial's `retry_after` is exact.
    ExactWait,
    /// A refused request consumes nothing.
    AllOrNothing,
    /// A `Wait` denial names a dimension that cannot take the request.
    RefusingDimension,
    /// `Exceeds` is answered exactly for costs above a capacity.
    Exceeds,
    /// An extra charge is never lost.
    ExtraChargeKept,
    /// Queued `acquire` waiters go first, in order.
    Queue,
    /// A lone queued `acquire` is admitted at exactly its instant.
    WaiterOnTime,
    /// A cancelled `acquire` consumes nothing and leaves the queue.
    CancelGivesBack,
    /// Concurrency slots are never oversubscribed.
    Slots,
    /// `reset` brings the key back to full.
    ResetRestores,
    /// Every call on the key answers.
    Answers,
    /// A waiting `acquire` sleeps; it never spins.
    NoBusyWait,
    /// The server's reported remaining lowers the local view.
    ServerView,
    /// A server's retry-after pauses the key.
    Paused,
}

impl Property {
    /// Every property, in the order they are documented.
    pub const ALL: [Property; 15] = [
        Self::Bound,
        Self::ExactWait,
        Self::AllOrNothing,
        Self::RefusingDimension,
        Self::Exceeds,
        Self::ExtraChargeKept,
        Self::Queue,
        Self::WaiterOnTime,
        Self::CancelGivesBack,
        Self::Slots,
        Self::ResetRestores,
        Self::Answers,
        Self::NoBusyWait,
        Self::ServerView,
        Self::Paused,
    ];

    /// The property in one sentence.
    pub fn statement(self) -> &'static str {
        match self {
            Self::Bound => {
                "every dimension stays within its strategy's bound over its charges: each \
                 admission at its estimate and each refund as a negative charge when it was made \
                 (with net_refunds: each admission at its estimate less its refund), stamped with \
                 the latest time the limiter was updated at"
            }
            Self::ExactWait => {
                "a Wait denial's retry_after is exact: with nothing admitted meanwhile the same \
                 request is refused before that instant (every denial naming the same instant) \
                 and admitted at it and after"
            }
            Self::AllOrNothing => {
                "a refused request consumes nothing: every dimension's remaining is the same \
                 right after the refusal as right before"
            }
            Self::RefusingDimension => {
                "a Wait denial names a dimension that cannot take the request now: its remaining \
                 is zero or below the request's cost in its unit"
            }
            Self::Exceeds => {
                "a request is refused as Exceeds exactly when its cost on some dimension is above \
                 that dimension's capacity, and the denial names such a dimension"
            }
            Self::ExtraChargeKept => {
                "an extra charge of x tokens is never lost: right after record_usage every token \
                 dimension's remaining is at most its remaining before minus x (not below 0)"
            }
            Self::Queue => {
                "while acquire waiters are queued try_acquire admits nothing, and waiters are \
                 admitted first come, first served"
            }
            Self::WaiterOnTime => {
                "a lone queued acquire is admitted at exactly the instant the denial before it \
                 named: still waiting 1 ns before, admitted at it"
            }
            Self::CancelGivesBack => {
                "a cancelled acquire consumes nothing and gives its place back: remaining is \
                 unchanged and, with no waiter left, try_acquire is no longer refused as Queued"
            }
            Self::Slots => {
                "permits of a request in flight never exceed the concurrency limit, and only a \
                 request (not a charge of tokens alone) is refused as Saturated, and only when \
                 every slot is taken"
            }
            Self::ResetRestores => "reset brings every dimension back to its full capacity",
            Self::Answers => {
                "every call on a configured key answers: usage_stats, record_usage and reset \
                 never fail"
            }
            Self::NoBusyWait => {
                "an acquire that has to wait sleeps until a later instant: it never spins on \
                 sleeps that are already over while the clock stands still (seen through a \
                 GuardedClock)"
            }
            Self::ServerView => {
                "the local view is never more permissive than the server's: right after a \
                 response reports r left in a unit, no dimension of that unit has more than r \
                 remaining (a leaky bucket heeds only r = 0) nor more than it had before"
            }
            Self::Paused => {
                "a server's retry-after pauses the key: nothing is admitted before it ends"
            }
        }
    }

    /// A short name (`bound`, `exact-wait`, …) for logs and reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Bound => "bound",
            Self::ExactWait => "exact-wait",
            Self::AllOrNothing => "all-or-nothing",
            Self::RefusingDimension => "refusing-dimension",
            Self::Exceeds => "exceeds",
            Self::ExtraChargeKept => "extra-charge-kept",
            Self::Queue => "queue",
            Self::WaiterOnTime => "waiter-on-time",
            Self::CancelGivesBack => "cancel-gives-back",
            Self::Slots => "slots",
            Self::ResetRestores => "reset-restores",
            Self::Answers => "answers",
            Self::NoBusyWait => "no-busy-wait",
            Self::ServerView => "server-view",
            Self::Paused => "paused",
        }
    }
}

impl fmt::Display for Property {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name(), self.statement())
    }
}

/// What the limiter is proved against: the key, and the limits and strategy it enforces
/// on it.
#[derive(Debug, Clone, PartialEq)]
pub struct Subject {
    /// The key every call uses.
    pub key: LimitKey,
    /// The strategy every rate dimension runs (its bound is checked).
    pub strategy: Strategy,
    /// The resolved dimensions ([`RateLimitConfig::dimensions`]); a `Concurrent` one is the
    /// slot count.
    pub limits: Vec<Limit>,
    /// How `record_usage` reconciles (which refunds the bound nets out).
    pub accounting: TokenAccounting,
    /// When each token unit is charged ([`RateLimitConfig::charge_at`]): what an admission
    /// charges is the estimate shaped by [`ChargeAt::admission_cost`].
    pub charge_at: ChargeAt,
}

impl Subject {
    /// The subject for `key` limited by `config` (its dimensions after headroom and burst).
    pub fn from_config(key: LimitKey, config: &RateLimitConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            key,
            strategy: config.strategy,
            limits: config.dimensions()?,
            accounting: config.accounting,
            charge_at: config.charge_at,
        })
    }

    /// What admitting `estimate` charges under this subject's `charge_at`.
    pub fn charged(&self, estimate: Cost) -> Cost {
        self.charge_at.admission_cost(estimate)
    }

    /// The rate dimensions (every limit but `Concurrent`).
    pub fn rates(&self) -> impl Iterator<Item = &Limit> {
        self.limits
            .iter()
            .filter(|l| l.kind != RateLimitType::Concurrent)
    }

    /// The concurrency limit, if one is configured.
    pub fn slots(&self) -> Option<u64> {
        self.limits
            .iter()
            .find(|l| l.kind == RateLimitType::Concurrent)
            .map(|l| l.amount)
    }

    /// The largest cost `limit` ever admits under this subject's strategy: `burst` for the
    /// token bucket and GCRA, `amount` for the others.
    pub fn capacity(&self, limit: &Limit) -> u64 {
        match self.strategy {
            Strategy::TokenBucket | Strategy::Gcra => limit.burst.clamp(1, limit.amount.max(1)),
            _ => limit.amount.max(1),
        }
    }
}

/// How much to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Traces to run.
    pub traces: u32,
    /// Episodes per trace (each a handful of steps; see [`script`]).
    pub episodes: u32,
    /// Seed of the first trace; trace `i` uses a seed derived from it and `i`.
    pub seed: u64,
    /// Replays the shrinker may spend on a failing trace.
    pub shrink_budget: u32,
    /// Request costs to draw "workload" episodes from (e.g. a scenario's request shapes);
    /// empty: only adversarial costs.
    pub workload: Vec<Cost>,
    /// The stricter [`Property::Bound`]: count each refund at the admission it belongs to
    /// (the bound then says a refund never lets through more than an exact estimate would
    /// have). Off by default: none of this crate's strategies meets it when a refund comes
    /// after its admission's charge was already forgotten (the admission left the window,
    /// or the bucket refilled past it) — see the module docs.
    pub net_refunds: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            traces: 64,
            episodes: 24,
            seed: 0x5EED,
            shrink_budget: 4_000,
            workload: Vec::new(),
            net_refunds: false,
        }
    }
}

/// What a passing run did (so a pass can be told from a run that checked nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Traces run.
    pub traces: u32,
    /// Steps run over all traces.
    pub steps: u64,
    /// Requests admitted over all traces (try_acquire and acquire).
    pub admitted: u64,
    /// Refusals seen.
    pub refused: u64,
    /// Exact-wait probes made (a retry 1 ns before or at a denial's instant).
    pub exact_waits: u64,
    /// Refunds and extra charges reconciled.
    pub reconciled: u64,
    /// Acquire waiters queued.
    pub queued: u64,
    /// Steps run with the clock behind the latest time seen.
    pub backwards: u64,
    /// `Wait` refusals per refusing dimension, in the order first seen: shows each
    /// dimension (requests, tokens, input tokens, output tokens) had its turn to refuse.
    pub refused_by: Vec<(RateLimitType, u64)>,
}

impl Report {
    /// `Wait` refusals by `dimension` (0 when it never refused).
    pub fn refused_on(&self, dimension: RateLimitType) -> u64 {
        self.refused_by
            .iter()
            .find(|(d, _)| *d == dimension)
            .map_or(0, |&(_, n)| n)
    }

    fn add(&mut self, t: &Tally) {
        self.traces += 1;
        self.steps += t.steps;
        self.admitted += t.admitted;
        self.refused += t.refused;
        self.exact_waits += t.exact_waits;
        self.reconciled += t.reconciled;
        self.queued += t.queued;
        self.backwards += t.backwards;
        for &(dimension, n) in &t.refused_by {
            match self.refused_by.iter_mut().find(|(d, _)| *d == dimension) {
                Some((_, count)) => *count += n,
                None => self.refused_by.push((dimension, n)),
            }
        }
    }
}

/// A property broken by a trace, with the trace shrunk to a minimal one that still breaks it.
#[derive(Debug, Clone, PartialEq)]
pub struct Counterexample {
    /// The property broken.
    pub property: Property,
    /// The seed of the trace that first broke it (rerun with it to reproduce).
    pub seed: u64,
    /// What happened on the minimal trace, with the numbers.
    pub detail: String,
    /// The minimal trace: its steps.
    pub script: Vec<Op>,
    /// The minimal trace as run: one line per step, with the clock and each outcome.
    pub transcript: Vec<String>,
    /// Steps of the trace before shrinking.
    pub original_steps: usize,
    /// Whether the trace was shrunk (a real-time run only cuts it at the failing step).
    pub shrunk: bool,
}

impl fmt::Display for Counterexample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "property violated — {}", self.property)?;
        writeln!(f, "  {}", self.detail)?;
        if self.shrunk {
            write!(
                f,
                "  minimal counterexample ({} steps, shrunk from {}; trace seed {:#x}):",
                self.script.len(),
                self.original_steps,
                self.seed
            )?;
        } else {
            write!(
                f,
                "  counterexample: the trace up to the failing step ({} of {} steps; not shrunk, \
                 replays cost real time; trace seed {:#x}):",
                self.script.len(),
                self.original_steps,
                self.seed
            )?;
        }
        for line in &self.transcript {
            write!(f, "\n    {line}")?;
        }
        Ok(())
    }
}

/// Why [`check`] did not pass.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConformanceError {
    /// A property failed; the counterexample is shrunk.
    #[error("{0}")]
    Violated(Box<Counterexample>),
    /// The subject cannot be proved: it has no rate dimension.
    #[error("subject {key} has no rate dimension to prove")]
    NothingToProve {
        /// The key.
        key: LimitKey,
    },
}

impl ConformanceError {
    /// The counterexample, when a property failed.
    pub fn counterexample(&self) -> Option<&Counterexample> {
        match self {
            Self::Violated(c) => Some(c),
            Self::NothingToProve { .. } => None,
        }
    }
}

/// The seed of trace `i` of a run seeded with `seed`.
pub fn trace_seed(seed: u64, i: u32) -> u64 {
    seed ^ u64::from(i)
        .wrapping_add(1)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Proves `limiter` on `subject`: runs `options.traces` adversarial traces, moving `clock`
/// (the limiter's clock) by hand, and checks every [`Property`]. On the first failure the
/// trace is shrunk and returned as [`ConformanceError::Violated`]; the clock is left after
/// the last trace. Futures are polled by the caller's executor (a tokio runtime, or
/// `futures::executor::block_on` for a limiter that does no I/O); nothing sleeps.
pub async fn check(
    limiter: &dyn RateLimiter,
    clock: &ManualClock,
    subject: &Subject,
    options: &Options,
) -> Result<Report, ConformanceError> {
    if subject.rates().next().is_none() {
        return Err(ConformanceError::NothingToProve {
            key: subject.key.clone(),
        });
    }
    let plan = script::Plan::new(subject, &options.workload);
    let mut report = Report::default();
    for i in 0..options.traces {
        let seed = trace_seed(options.seed, i);
        let ops = plan.generate(&mut SmallRng::seed_from_u64(seed), options.episodes);
        let mut run =
            run::Run::new(limiter, clock, subject, &plan, false).net_refunds(options.net_refunds);
        match run.play(&ops).await {
            Ok(tally) => report.add(&tally),
            Err(failure) => {
                let minimal = shrink::shrink(
                    limiter,
                    clock,
                    subject,
                    &plan,
                    ops.clone(),
                    failure,
                    options,
                )
                .await;
                return Err(ConformanceError::Violated(Box::new(
                    minimal.into_counterexample(seed, ops.len()),
                )));
            }
        }
    }
    Ok(report)
}

/// Runs one given script (e.g. a counterexample's, or one written by hand) and returns the
/// failure it finds, unshrunk, with its transcript. For regression tests of a known trace.
pub async fn replay(
    limiter: &dyn RateLimiter,
    clock: &ManualClock,
    subject: &Subject,
    ops: &[Op],
) -> Result<Tally, Box<Counterexample>> {
    let plan = script::Plan::new(subject, &[]);
    let mut run = run::Run::new(limiter, clock, subject, &plan, true);
    match run.play(ops).await {
        Ok(t) => Ok(t),
        Err(failure) => Err(Box::new(Counterexample {
            property: failure.property,
            seed: 0,
            detail: failure.detail,
            script: ops.to_vec(),
            transcript: run.transcript,
            original_steps: ops.len(),
            shrunk: false,
        })),
    }
}

/// `d` in whole nanoseconds, saturating.
fn ns(d: Duration) -> Nanos {
    crate::clock::nanos(d)
}
