//! One request's life as a pure state machine: estimate, acquire, send, reconcile, back
//! off, retry — decided in one place for every driver.
//!
//! The Hub's pipeline, the live harness and the simulator each used to write this life
//! down, and their copies disagreed (what a 429 or a 5xx is charged, the estimate, a
//! doubled pause after a 429). [`RequestLifecycle`] is the one copy. Like quinn-proto's
//! connection or rustls' unbuffered API it does no I/O, reads no clock and never awaits:
//! a driver feeds it [`Event`]s with the time they happened and performs the one
//! [`Action`] each returns — acquire from the limiter, send, record usage, ask for a
//! backoff, sleep, finish. The drivers are thin: the governed step of the middleware
//! pipeline ([`crate::middleware::governor`]), which the Hub and the live harness run,
//! and the simulator's event queue ([`crate::harness::sim`]).
//!
//! # Protocol
//! [`RequestLifecycle::start`] returns the first action. Every action but
//! [`Action::Finish`] is answered by exactly one event:
//!
//! | action | answer |
//! |---|---|
//! | [`Action::Acquire`] | [`Event::Admitted`] or [`Event::Refused`] |
//! | [`Action::Send`] | [`Event::Responded`], [`Event::Failed`], [`Event::Rerouted`], [`Event::StreamBroken`] or [`Event::StreamDropped`] |
//! | [`Action::Record`] | [`Event::Recorded`] |
//! | [`Action::Backoff`] | [`Event::BackoffDecided`] |
//! | [`Action::SleepUntil`] | [`Event::TimerFired`] |
//!
//! An event that does not answer the pending action is a driver bug: the machine then
//! finishes with [`Outcome::Failed`] rather than guess (and debug builds panic).
//!
//! # Rules
//! What is charged after each way an attempt ends ([`charge_after`]):
//! - success: the actual usage (the limiter reconciles it with the estimate per the key's
//!   accounting);
//! - a 429: nothing — the server did not admit the request; the response's remaining and
//!   retry-after headers, recorded with it, keep the local view strict;
//! - another 4xx (invalid, unauthorised, not found, too large): nothing — refused before
//!   admission;
//! - a 5xx, a timeout, a network error or an unreadable 2xx: the estimate is kept — the
//!   server may have charged it, and the local view is never more permissive than the
//!   server's;
//! - a stream broken or dropped after it opened: what was streamed (prompt plus output so
//!   far); it is never retried, since part of the answer was delivered.
//!
//! After a failure the request is retried when the error is retryable and the retry budget
//! allows: the driver asks the limiter (or, without one, its retry policy) for the delay,
//! which puts the server's retry-after first and then the key's backoff curve. A 429
//! pauses the key once: its retry-after is recorded at the instant of the response, and
//! the backoff is asked at that same instant, before any sleep. A request with a deadline
//! ([`LifecycleConfig::deadline`]) is not retried when the backoff would end after it: it
//! finishes at once with the last failure's outcome.

use std::time::Duration;

use crate::clock::{nanos, Nanos};
use crate::limiter::{Cost, ErrorInfo, ResponseMeta};
use crate::provider::admission::{AdmissionRule, RequestSize};

#[cfg(test)]
mod tests;

/// What the driver does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Acquire `cost` from the limiter (waiting as its `acquire` does); answer
    /// [`Event::Admitted`] or [`Event::Refused`].
    Acquire(Cost),
    /// Send the attempt to the provider; answer with how it ended.
    Send,
    /// Hand the permit back to the limiter with `actual` usage and the response's `meta`
    /// (`record_usage`); answer [`Event::Recorded`].
    Record {
        /// What the attempt is charged (see the module's rules).
        actual: Cost,
        /// What the server's headers said (remaining, resets, retry-after).
        meta: ResponseMeta,
    },
    /// Ask for the delay before retry number `attempt` (1 = first retry) after `error`:
    /// the limiter's `backoff_delay` (which also pauses the key after a 429), or the
    /// retry policy when no limiter governs; answer [`Event::BackoffDecided`].
    Backoff {
        /// The retry's number, from 1.
        attempt: u32,
        /// The failure, as the limiter sees errors.
        error: ErrorInfo,
    },
    /// Sleep until this instant (driver clock, ns); answer [`Event::TimerFired`].
    SleepUntil(Nanos),
    /// The request is over.
    Finish(Outcome),
}

/// What happened, as the driver tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The limiter admitted the estimate after waiting `waited`.
    Admitted {
        /// Time spent in the limiter's queue.
        waited: Duration,
    },
    /// The limiter refused for good (never fits, max wait, queue full, backend down).
    Refused {
        /// Time spent in the limiter's queue before the refusal.
        waited: Duration,
    },
    /// The attempt succeeded (a whole response, or a stream read to its end) using
    /// `usage`.
    Responded {
        /// Tokens used, as reported (or counted): the total, and input (prompt) and output
        /// tokens apart when known ([`Cost::with_split`]); its `requests` is ignored (the
        /// lifecycle records one request).
        usage: Cost,
        /// The response's header view.
        meta: ResponseMeta,
    },
    /// The attempt failed before any of its answer was delivered.
    Failed {
        /// The failure, classified.
        error: ErrorInfo,
        /// The error response's header view (default when there was no response).
        meta: ResponseMeta,
    },
    /// The attempt failed and another layer takes the failure over (a fallback to another
    /// provider, a credential refresh): charge it, do not back off.
    Rerouted {
        /// The failure, classified.
        error: ErrorInfo,
        /// The error response's header view.
        meta: ResponseMeta,
    },
    /// A stream broke after it opened, having used `usage` so far.
    StreamBroken {
        /// Prompt plus output tokens streamed (split when known; `requests` ignored).
        usage: Cost,
        /// The stream's header view.
        meta: ResponseMeta,
    },
    /// The caller dropped a stream before its end, having used `usage` so far.
    StreamDropped {
        /// Prompt plus output tokens streamed (split when known; `requests` ignored).
        usage: Cost,
        /// The stream's header view.
        meta: ResponseMeta,
    },
    /// The usage was recorded.
    Recorded,
    /// The delay before the retry, or `None`: do not retry.
    BackoffDecided(Option<Duration>),
    /// The sleep is over.
    TimerFired,
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A response (or a whole stream) was delivered.
    Completed,
    /// The last attempt was refused by the server for quota (a 429) and no retry is left.
    Throttled,
    /// The last attempt failed otherwise (5xx, network, invalid request, broken stream…).
    Failed,
    /// The limiter refused the request before it was sent.
    Refused,
    /// The caller dropped the stream before its end.
    Cancelled,
    /// Another layer took the failure over (fallback, credential refresh).
    Rerouted,
}

/// How a lifecycle is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LifecycleConfig {
    /// Whether a limiter governs the request: acquire before each attempt and record after
    /// it. Without one (a baseline, or a Hub without `rate_limit`) only retries remain.
    pub limited: bool,
    /// Whether failures are retried (after a backoff). When false every failure finishes.
    pub retries: bool,
    /// A cap on retries besides the backoff policy's own (a provider's `max_retries`).
    pub max_retries: Option<u32>,
    /// Number of the first attempt (1 for a new request; more when a pipeline retries on
    /// another layer's decision and the count goes on).
    pub first_attempt: u32,
    /// The instant (driver clock, ns) after which no retry starts: a backoff that would
    /// end later finishes the request instead, with the last failure's outcome. `None`:
    /// no deadline (only the retry budget ends retries).
    pub deadline: Option<Nanos>,
}

impl Default for LifecycleConfig {
    /// Limited, retrying, no extra cap, first attempt 1, no deadline.
    fn default() -> Self {
        Self {
            limited: true,
            retries: true,
            max_retries: None,
            first_attempt: 1,
            deadline: None,
        }
    }
}

/// Where the machine stands: which answer it waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Created; `start` not called.
    New,
    Acquiring,
    Sending,
    /// Recording; then do `next`.
    Recording(Next),
    /// Waiting for the backoff decision on the failure of this class.
    BackingOff {
        throttled: bool,
    },
    Sleeping,
    Done(Outcome),
}

/// What follows a record.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Next {
    Finish(Outcome),
    /// Decide whether to retry after this failure.
    Retry(ErrorInfo),
}

/// One request's lifecycle; see the module docs for the protocol and the rules.
#[derive(Debug, Clone)]
pub struct RequestLifecycle {
    estimate: Cost,
    config: LifecycleConfig,
    state: State,
    /// Attempts sent so far.
    attempts: u32,
    /// Time spent in the limiter, over all attempts.
    waited: Duration,
}

impl RequestLifecycle {
    /// A lifecycle for a request of `size` to a provider admitting by `rule`.
    pub fn new(rule: &AdmissionRule, size: &RequestSize, config: LifecycleConfig) -> Self {
        Self::with_estimate(rule.estimate(size), config)
    }

    /// A lifecycle charging `estimate` at admission (for callers that computed it with
    /// the provider's [`AdmissionRule`] already).
    pub fn with_estimate(estimate: Cost, config: LifecycleConfig) -> Self {
        Self {
            estimate,
            config,
            state: State::New,
            attempts: 0,
            waited: Duration::ZERO,
        }
    }

    /// What is acquired before each attempt.
    pub fn estimate(&self) -> Cost {
        self.estimate
    }

    /// Attempts sent so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Time spent in the limiter so far, over all attempts.
    pub fn waited(&self) -> Duration {
        self.waited
    }

    /// The outcome, once finished.
    pub fn outcome(&self) -> Option<Outcome> {
        match self.state {
            State::Done(o) => Some(o),
            _ => None,
        }
    }

    /// Whether the machine waits for [`Event::TimerFired`] (a retry is pending).
    pub fn is_sleeping(&self) -> bool {
        self.state == State::Sleeping
    }

    /// Whether the machine waits for the answer to [`Action::Send`].
    pub fn is_sending(&self) -> bool {
        self.state == State::Sending
    }

    /// The first action of the request (calling it again returns the finish of a
    /// confused driver: `Failed`).
    pub fn start(&mut self) -> Action {
        if self.state != State::New {
            return self.confused();
        }
        self.attempt()
    }

    /// Feeds `event`, which happened at `now` (the driver's clock, ns), and returns the
    /// next action.
    pub fn handle(&mut self, now: Nanos, event: Event) -> Action {
        match (std::mem::replace(&mut self.state, State::New), event) {
            (State::Acquiring, Event::Admitted { waited }) => {
                self.waited += waited;
                self.send()
            }
            (State::Acquiring, Event::Refused { waited }) => {
                self.waited += waited;
                self.finish(Outcome::Refused)
            }
            (State::Sending, Event::Responded { usage, meta }) => {
                self.record(one_request(usage), meta, Next::Finish(Outcome::Completed))
            }
            (State::Sending, Event::Failed { error, meta }) => {
                let charge = charge_after(&error, self.estimate);
                self.record(charge, meta, Next::Retry(error))
            }
            (State::Sending, Event::Rerouted { error, meta }) => {
                let charge = charge_after(&error, self.estimate);
                self.record(charge, meta, Next::Finish(Outcome::Rerouted))
            }
            (State::Sending, Event::StreamBroken { usage, meta }) => {
                self.record(one_request(usage), meta, Next::Finish(Outcome::Failed))
            }
            (State::Sending, Event::StreamDropped { usage, meta }) => {
                self.record(one_request(usage), meta, Next::Finish(Outcome::Cancelled))
            }
            (State::Recording(next), Event::Recorded) => self.after_record(next),
            (State::BackingOff { throttled }, Event::BackoffDecided(Some(delay))) => {
                let until = now.saturating_add(nanos(delay));
                if self.config.deadline.is_some_and(|d| until > d) {
                    return self.finish(final_outcome(throttled));
                }
                self.state = State::Sleeping;
                Action::SleepUntil(until)
            }
            (State::BackingOff { throttled }, Event::BackoffDecided(None)) => {
                self.finish(final_outcome(throttled))
            }
            (State::Sleeping, Event::TimerFired) => self.attempt(),
            (state, event) => {
                debug_assert!(false, "lifecycle got {event:?} in state {state:?}");
                self.confused()
            }
        }
    }

    fn attempt(&mut self) -> Action {
        if self.config.limited {
            self.state = State::Acquiring;
            Action::Acquire(self.estimate)
        } else {
            self.send()
        }
    }

    fn send(&mut self) -> Action {
        self.attempts += 1;
        self.state = State::Sending;
        Action::Send
    }

    fn record(&mut self, actual: Cost, meta: ResponseMeta, next: Next) -> Action {
        if self.config.limited {
            self.state = State::Recording(next);
            Action::Record { actual, meta }
        } else {
            self.after_record(next)
        }
    }

    fn after_record(&mut self, next: Next) -> Action {
        match next {
            Next::Finish(outcome) => self.finish(outcome),
            Next::Retry(error) => {
                let throttled = error.rate_limited || error.status == Some(429);
                let retry = self.config.first_attempt.saturating_sub(1) + self.attempts;
                let budget = self.config.max_retries.is_none_or(|max| retry <= max);
                if self.config.retries && error.retryable && budget {
                    self.state = State::BackingOff { throttled };
                    Action::Backoff {
                        attempt: retry,
                        error,
                    }
                } else {
                    self.finish(final_outcome(throttled))
                }
            }
        }
    }

    fn finish(&mut self, outcome: Outcome) -> Action {
        self.state = State::Done(outcome);
        Action::Finish(outcome)
    }

    fn confused(&mut self) -> Action {
        self.finish(Outcome::Failed)
    }
}

fn final_outcome(throttled: bool) -> Outcome {
    if throttled {
        Outcome::Throttled
    } else {
        Outcome::Failed
    }
}

/// The actual cost of one attempt that used `usage`: one request and its tokens (split as
/// reported).
fn one_request(usage: Cost) -> Cost {
    Cost {
        requests: 1,
        ..usage
    }
}

/// What an attempt that failed with `error` is charged, given the admission `estimate`
/// (the module's rules): nothing after a 429 or another 4xx (the server refused before
/// admission), the estimate after a 5xx, a timeout, a network error or an unreadable 2xx
/// (the server may have charged it).
pub fn charge_after(error: &ErrorInfo, estimate: Cost) -> Cost {
    match error.status {
        Some(400..=499) => Cost::ZERO,
        _ if error.rate_limited => Cost::ZERO,
        _ => estimate,
    }
}
