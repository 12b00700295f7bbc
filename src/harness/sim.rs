//! `hub simulate`: the same scenario and report as a live run, in virtual time.
//!
//! A discrete-event simulation — an event queue ordered by (virtual time, sequence), one
//! seeded RNG — drives the same request lifecycle as the Hub and the live runner
//! ([`crate::lifecycle`]: estimate, acquire, send, record, back off, retry), the real
//! limiter ([`KeyedLimiter`] on a [`ManualClock`]), the mock crate's real quota engine
//! (`mock_providers::quota`) and its latency and output-length models. This module only
//! performs the lifecycle's actions in virtual time: the limiter's FIFO queue with exact
//! waits, the server's answer, timers. No sockets, no sleeping: an hour at 10 000 RPM (600 000
//! requests) takes under a second, and the same seed gives byte-identical reports.
//!
//! Where it differs from a live run (documented in `reports/README.md`): no network or
//! scheduling delay (a 429 is answered at the instant of sending); the prompt's characters
//! are computed from its tokens and characters per token (what the prompt generator
//! produces) instead of counted in real text; the per-token latency of a response is its mean rather than a sum of draws;
//! limiter waiters are served strictly FIFO at exact instants.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mock_providers::generation::{latency_rng, output_rng, LatencyModel, OutputTokens};
use mock_providers::quota::QuotaSnapshot;

use crate::clock::{nanos, Clock, ManualClock, Nanos};
use crate::lifecycle::{
    Action, Event as LifeEvent, LifecycleConfig, Outcome as LifeOutcome, RequestLifecycle,
};
use crate::limiter::backoff::RetryPolicy;
use crate::limiter::{
    BackoffConfig, Cost, Denial, ErrorInfo, KeyHandle, KeyedLimiter, LimitKey, Permit, ResponseMeta,
};
use crate::middleware::RetrySeed;
use crate::provider::admission::{AdmissionRule, RequestSize};

use super::arrival::Arrival;
use super::capacity::quota_dimensions;
use super::record::{Attempt, Outcome, RequestRecord, RunAggregate};
use super::report::{ReportError, ReportWriter};
use super::runner::{evaluate, provider_summary, quota_summary, with_batch_efficiency, RunError};
use super::scenario::Scenario;
use super::schedule::{open_loop_requests, Scheduled};
use super::summary::{self, Summary};
use super::target::mock_config;
use super::trace::TraceRequest;
use super::workload::{prompt_chars, RequestShape};

mod server;

use server::{Answer, Sent, SimServer};

/// How `hub simulate` runs.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// The report directory.
    pub out: PathBuf,
    /// Run only the limiter with this name.
    pub limiter: Option<String>,
    /// Whether to write `requests.csv`.
    pub requests_csv: bool,
    /// Virtual time after the last arrival during which requests may still finish.
    pub drain: Duration,
}

/// Simulates `scenario` and writes the same report files as a live run.
pub fn simulate(scenario: &Scenario, opts: &SimOptions) -> Result<Summary, RunError> {
    let specs: Vec<_> = scenario
        .limiters
        .iter()
        .filter(|l| opts.limiter.as_ref().is_none_or(|n| *n == l.name))
        .collect();
    if let (Some(name), true) = (&opts.limiter, specs.is_empty()) {
        return Err(RunError::UnknownLimiter(name.clone()));
    }
    let mut writer = ReportWriter::create(&opts.out, opts.requests_csv)?;
    let duration = scenario.duration();
    // The simulated server's quota starts at virtual time 0, the run's start.
    let quota = quota_dimensions(scenario, true);
    let mut limiters = Vec::new();
    for spec in specs {
        let clock = ManualClock::new(0);
        let limiter = match scenario.limiter_config(spec) {
            Some(cfg) => Some(Arc::new(
                KeyedLimiter::new(cfg, Arc::new(clock.clone()))
                    .map_err(|e| RunError::Limiter {
                        name: spec.name.clone(),
                        source: e.into(),
                    })?
                    .with_seed(scenario.seed),
            )),
            None => None,
        };
        let mut sim = Sim::new(
            scenario,
            open_loop_requests(scenario)?,
            clock,
            limiter,
            &spec.name,
            spec.strategy_name(),
        );
        // A batch runs until every request has ended: no drain cuts it.
        let end = if scenario.workload.requests.is_some() {
            Nanos::MAX
        } else {
            nanos(duration + opts.drain)
        };
        sim.run(&mut writer, end)?;
        let mut agg = sim.agg;
        writer.timeseries(&spec.name, agg.seconds(duration.as_secs().max(1)))?;
        let s = agg.summary(duration.as_secs_f64(), &quota);
        limiters.push(evaluate(
            scenario,
            with_batch_efficiency(scenario, &agg, &quota, s),
        ));
    }
    let summary = Summary {
        schema_version: summary::SCHEMA_VERSION,
        scenario: scenario.name.clone(),
        mode: "simulated".into(),
        seed: scenario.seed,
        duration_s: duration.as_secs_f64(),
        provider: provider_summary(scenario),
        quota: quota_summary(scenario),
        limiters,
    };
    writer.finish(&summary, &scenario.text)?;
    Ok(summary)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// The next open-loop arrival.
    Arrival { phase: usize },
    /// A closed-loop user issues its next request.
    User { phase: usize },
    /// The head of the limiter queue may fit now.
    Head,
    /// A response completes.
    Complete { id: u64 },
    /// A request's backoff is over: its lifecycle's timer fires.
    Retry { id: u64 },
}

/// A request in the simulation: its lifecycle and what the driver keeps for it.
#[derive(Debug)]
struct InFlight {
    record: RequestRecord,
    shape: RequestShape,
    /// The prompt's characters ([`prompt_chars`] of its tokens and ratio).
    prompt_chars: u64,
    machine: RequestLifecycle,
    permit: Option<Permit>,
    user_phase: Option<usize>,
    /// The admitted attempt's usage (prompt, completion) and header view, until it completes.
    usage: Option<(u64, u64)>,
    meta: ResponseMeta,
    /// The output length the server is asked to produce exactly (a replayed trace row),
    /// instead of drawing one.
    exact_output: Option<u64>,
}

/// The events in (time, sequence) order. Most are due at the instant being simulated (a
/// completion without latency, a wake-up of the queue's head): those wait in a FIFO — all
/// at the current instant, pushed in sequence order, so already in order — and only later
/// ones go through the heap. Popping takes the earlier of the two fronts: the same order
/// as one heap, at a fraction of its cost.
#[derive(Debug, Default)]
struct EventQueue {
    heap: BinaryHeap<Reverse<(Nanos, u64, Event)>>,
    /// Events due at `current`, in sequence order.
    due: VecDeque<(u64, Event)>,
    /// The time of the last event popped.
    current: Nanos,
    seq: u64,
}

impl EventQueue {
    fn push(&mut self, at: Nanos, e: Event) {
        self.seq += 1;
        if at == self.current {
            self.due.push_back((self.seq, e));
        } else {
            self.heap.push(Reverse((at, self.seq, e)));
        }
    }

    fn pop(&mut self) -> Option<(Nanos, Event)> {
        let heap_first = match (self.heap.peek(), self.due.front()) {
            (Some(Reverse((t, seq, _))), Some((due_seq, _))) => {
                (*t, *seq) < (self.current, *due_seq)
            }
            (Some(_), None) => true,
            (None, _) => false,
        };
        if heap_first {
            let Reverse((t, _, e)) = self.heap.pop()?;
            // Events due at the old instant all came out first (they were earlier).
            self.current = t;
            Some((t, e))
        } else {
            self.due.pop_front().map(|(_, e)| (self.current, e))
        }
    }
}

/// A request waiting in the limiter's queue, with what admitting it needs (so a refusal
/// of the head touches nothing else).
#[derive(Debug, Clone, Copy)]
struct Queued {
    id: u64,
    estimate: Cost,
    queued_at: Nanos,
}

/// The requests alive, by id. Ids are handed out in order and requests mostly end in
/// order, so they are kept in a window from the oldest alive to the newest — a request's
/// place is its id minus the window's start — rather than hashed: no hashing, and the
/// requests the queue serves one after another sit one after another in memory. The
/// window spans the ids issued during the longest life of a request alive (bounded by the
/// limiter's `max_wait`, the retries and the drain), not the run. Each request is boxed
/// once, so the window holds pointers and a request is never copied as it moves in and out.
#[derive(Debug, Default)]
struct Requests {
    /// The id of `slots[0]`.
    base: u64,
    slots: VecDeque<Option<Box<InFlight>>>,
}

impl Requests {
    fn get_mut(&mut self, id: u64) -> Option<&mut InFlight> {
        let i = usize::try_from(id.checked_sub(self.base)?).ok()?;
        self.slots.get_mut(i)?.as_deref_mut()
    }

    /// Adds request `id`, newer than every id added before.
    fn insert(&mut self, id: u64, r: Box<InFlight>) {
        if self.slots.is_empty() {
            self.base = id;
        }
        let end = self.base + self.slots.len() as u64;
        debug_assert!(id >= end, "ids are added in order");
        for _ in end..id {
            self.slots.push_back(None);
        }
        self.slots.push_back(Some(r));
    }

    fn remove(&mut self, id: u64) -> Option<Box<InFlight>> {
        let i = usize::try_from(id.checked_sub(self.base)?).ok()?;
        let r = self.slots.get_mut(i)?.take();
        // Empty places in front leave the window.
        while let Some(None) = self.slots.front() {
            self.slots.pop_front();
            self.base += 1;
        }
        r
    }

    /// The ids alive, in order.
    fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        (self.base..)
            .zip(&self.slots)
            .filter_map(|(id, r)| r.as_ref().map(|_| id))
    }
}

struct Sim<'a> {
    s: &'a Scenario,
    clock: ManualClock,
    /// The limiter and the scenario's key resolved in it once.
    limiter: Option<(Arc<KeyedLimiter>, KeyHandle)>,
    max_wait: Option<Nanos>,
    key: LimitKey,
    retry: RetryPolicy,
    rule: AdmissionRule,
    server: Box<dyn SimServer>,
    latency: LatencyModel,
    mean_per_token: Duration,
    /// The mock's output-length distribution and seed: the server's draws are reproduced
    /// request by request from its per-request streams.
    output: OutputTokens,
    mock_seed: u64,
    /// Requests the simulated server has received (its request numbers).
    served: u64,
    events: EventQueue,
    next_id: u64,
    arrivals: Box<dyn Iterator<Item = Scheduled> + Send>,
    /// The trace row of the pending arrival event (one arrival is pending at a time).
    next_trace: Option<TraceRequest>,
    requests: Requests,
    queue: VecDeque<Queued>,
    head_at: Option<Nanos>,
    agg: RunAggregate,
}

impl<'a> Sim<'a> {
    #[allow(clippy::too_many_arguments)]
    fn new(
        s: &'a Scenario,
        arrivals: Box<dyn Iterator<Item = Scheduled> + Send>,
        clock: ManualClock,
        limiter: Option<Arc<KeyedLimiter>>,
        name: &str,
        strategy: &str,
    ) -> Self {
        let key = s.limit_key();
        let max_wait = limiter
            .as_ref()
            .and_then(|l| l.config().config_for(&key).and_then(|c| c.max_wait))
            .map(nanos);
        let mock = mock_config(s);
        let server = server::for_scenario(s, &mock);
        let l = &mock.latency;
        let mean_per_token = if l.zero {
            Duration::ZERO
        } else {
            l.per_token
                .mul_f64((l.per_token_sigma * l.per_token_sigma / 2.0).exp())
        };
        let limiter = limiter.map(|l| {
            let handle = l.handle(&key);
            (l, handle)
        });
        Self {
            s,
            clock,
            limiter,
            max_wait,
            key,
            retry: BackoffConfig {
                max_retries: s.retry.max_retries,
                ..s.retry.backoff.clone()
            }
            .policy(),
            rule: s.provider.kind.admission_rule(),
            server,
            latency: LatencyModel::new(&mock.latency),
            mean_per_token,
            output: mock.output_tokens,
            mock_seed: mock.seed,
            served: 0,
            events: EventQueue::default(),
            next_id: 0,
            arrivals,
            next_trace: None,
            requests: Requests::default(),
            queue: VecDeque::new(),
            head_at: None,
            agg: RunAggregate::new(name, strategy),
        }
    }

    fn push(&mut self, at: Nanos, e: Event) {
        self.events.push(at, e);
    }

    fn next_arrival(&mut self) {
        if let Some(r) = self.arrivals.next() {
            self.next_trace = r.trace;
            self.push(r.at, Event::Arrival { phase: r.phase });
        }
    }

    fn run(&mut self, writer: &mut ReportWriter, end: Nanos) -> Result<(), ReportError> {
        self.next_arrival();
        let mut phase_start = 0;
        for (index, phase) in self.s.phases.iter().enumerate() {
            if let Arrival::Closed { concurrency, .. } = phase.arrival {
                for _ in 0..concurrency {
                    self.push(phase_start, Event::User { phase: index });
                }
            }
            phase_start += nanos(phase.duration);
        }
        while let Some((t, event)) = self.events.pop() {
            if t > end {
                break;
            }
            if self.clock.now() != t {
                self.clock.set(t);
            }
            match event {
                Event::Arrival { phase } => {
                    let trace = self.next_trace.take();
                    self.next_arrival();
                    self.arrive(t, phase, None, trace, writer)?;
                }
                Event::User { phase } => {
                    if t < self.phase_end(phase) {
                        self.arrive(t, phase, Some(phase), None, writer)?;
                    }
                }
                Event::Head => {
                    if self.head_at == Some(t) {
                        self.head_at = None;
                        self.serve_queue(t, writer)?;
                    }
                }
                Event::Complete { id } => self.complete(t, id, writer)?,
                Event::Retry { id } => self.feed(t, id, LifeEvent::TimerFired, writer)?,
            }
        }
        // What is left at the end of the drain was cut: dropped.
        let left: Vec<u64> = self.requests.ids().collect();
        for id in left {
            if let Some(mut r) = self.requests.remove(id) {
                r.record.outcome = Outcome::Dropped;
                r.record.end = end;
                self.finish_record(r.record, writer)?;
            }
        }
        Ok(())
    }

    fn phase_end(&self, phase: usize) -> Nanos {
        self.s.phases[..=phase]
            .iter()
            .map(|p| nanos(p.duration))
            .sum()
    }

    fn arrive(
        &mut self,
        t: Nanos,
        phase: usize,
        user: Option<usize>,
        trace: Option<TraceRequest>,
        writer: &mut ReportWriter,
    ) -> Result<(), ReportError> {
        let id = self.next_id;
        self.next_id += 1;
        let shape = match &trace {
            Some(row) => self.s.workload.trace_shape(self.s.seed, id, row),
            None => self.s.workload.shape(self.s.seed, id),
        };
        let prompt_chars = prompt_chars(shape.prompt_tokens, shape.chars_per_token_milli);
        let size =
            RequestSize::user_message(shape.prompt_tokens, prompt_chars, Some(shape.max_tokens));
        let config = LifecycleConfig {
            limited: self.limiter.is_some(),
            max_retries: Some(self.s.retry.max_retries),
            ..LifecycleConfig::default()
        };
        let mut machine = RequestLifecycle::new(&self.rule, &size, config);
        let first = machine.start();
        let record = RequestRecord {
            request_id: id,
            phase,
            intended_start: t,
            attempts: Vec::new(),
            first_byte: None,
            end: t,
            outcome: Outcome::Dropped,
            estimated_tokens: machine.estimate().tokens,
            server_tokens: prompt_chars.div_ceil(4) + shape.max_tokens,
            prompt_tokens: None,
            completion_tokens: None,
            limiter_wait: 0,
            streamed: shape.stream,
        };
        self.requests.insert(
            id,
            Box::new(InFlight {
                record,
                shape,
                prompt_chars,
                machine,
                permit: None,
                user_phase: user,
                usage: None,
                meta: ResponseMeta::default(),
                exact_output: trace
                    .filter(|t| t.exact_output)
                    .map(|_| shape.output_tokens),
            }),
        );
        self.perform(t, id, first, writer)
    }

    /// Feeds `event` to request `id`'s lifecycle and performs what follows.
    fn feed(
        &mut self,
        t: Nanos,
        id: u64,
        event: LifeEvent,
        writer: &mut ReportWriter,
    ) -> Result<(), ReportError> {
        let Some(r) = self.requests.get_mut(id) else {
            return Ok(());
        };
        let next = r.machine.handle(t, event);
        self.perform(t, id, next, writer)
    }

    /// Performs request `id`'s lifecycle actions until it waits for the queue, the
    /// server or a timer, or is finished.
    fn perform(
        &mut self,
        t: Nanos,
        id: u64,
        mut action: Action,
        writer: &mut ReportWriter,
    ) -> Result<(), ReportError> {
        loop {
            let event = match action {
                Action::Acquire(estimate) => return self.enqueue(t, id, estimate, writer),
                Action::Send => match self.send(t, id) {
                    Some(failed) => failed,
                    None => return Ok(()),
                },
                Action::Record { actual, meta } => {
                    let permit = self.requests.get_mut(id).and_then(|r| r.permit.take());
                    if let (Some((l, _)), Some(p)) = (&self.limiter, permit) {
                        l.record_usage_now(p, actual, &meta);
                    }
                    self.wake_head(t);
                    LifeEvent::Recorded
                }
                Action::Backoff { attempt, error } => {
                    let delay = match &self.limiter {
                        Some((l, _)) => l.backoff_delay_now(&self.key, attempt, &error),
                        None => {
                            let seed = RetrySeed::for_request(self.s.seed, id);
                            self.retry.delay(attempt, &error, &mut seed.rng(attempt))
                        }
                    };
                    self.wake_head(t);
                    LifeEvent::BackoffDecided(delay)
                }
                Action::SleepUntil(at) => {
                    self.push(at, Event::Retry { id });
                    return Ok(());
                }
                Action::Finish(outcome) => return self.finish(t, id, outcome, writer),
            };
            let Some(r) = self.requests.get_mut(id) else {
                return Ok(());
            };
            action = r.machine.handle(t, event);
        }
    }

    fn enqueue(
        &mut self,
        t: Nanos,
        id: u64,
        estimate: Cost,
        writer: &mut ReportWriter,
    ) -> Result<(), ReportError> {
        self.queue.push_back(Queued {
            id,
            estimate,
            queued_at: t,
        });
        if self.queue.len() == 1 {
            self.serve_queue(t, writer)?;
        }
        Ok(())
    }

    fn wake_head(&mut self, at: Nanos) {
        if self.queue.is_empty() || self.head_at.is_some_and(|h| h <= at) {
            return;
        }
        self.head_at = Some(at);
        self.push(at, Event::Head);
    }

    /// Admits queued requests in order while the limiter lets them through (the
    /// simulator's `acquire`: FIFO, exact waits, `max_wait`).
    fn serve_queue(&mut self, t: Nanos, writer: &mut ReportWriter) -> Result<(), ReportError> {
        while let Some(&Queued {
            id,
            estimate,
            queued_at,
        }) = self.queue.front()
        {
            // A queued request is alive: it finishes only after the answer to its
            // `Acquire`, and only the queue gives that answer.
            let waited = t - queued_at;
            let refused = LifeEvent::Refused {
                waited: Duration::from_nanos(waited),
            };
            let Some((limiter, handle)) = &self.limiter else {
                return Ok(());
            };
            let behind = self.queue.len() - 1;
            match limiter.try_acquire_queued(handle, estimate, behind) {
                Ok(permit) => {
                    self.queue.pop_front();
                    if let Some(r) = self.requests.get_mut(id) {
                        r.record.limiter_wait += waited;
                        r.permit = Some(permit);
                    }
                    let admitted = LifeEvent::Admitted {
                        waited: Duration::from_nanos(waited),
                    };
                    self.feed(t, id, admitted, writer)?;
                }
                Err(Denial::Wait { retry_after, .. } | Denial::Paused { retry_after }) => {
                    let wait = nanos(retry_after);
                    if self.max_wait.is_some_and(|m| waited + wait > m) {
                        self.queue.pop_front();
                        self.refuse(t, id, waited, refused, writer)?;
                        continue;
                    }
                    self.wake_head(t + wait);
                    return Ok(());
                }
                // A slot frees at a completion, which wakes the head.
                Err(Denial::Saturated { .. } | Denial::Queued { .. }) => return Ok(()),
                Err(Denial::Exceeds { .. } | Denial::Unavailable { .. }) => {
                    self.queue.pop_front();
                    self.refuse(t, id, waited, refused, writer)?;
                }
            }
        }
        Ok(())
    }

    fn refuse(
        &mut self,
        t: Nanos,
        id: u64,
        waited: Nanos,
        refused: LifeEvent,
        writer: &mut ReportWriter,
    ) -> Result<(), ReportError> {
        if let Some(r) = self.requests.get_mut(id) {
            r.record.limiter_wait += waited;
        }
        self.feed(t, id, refused, writer)
    }

    /// Sends one attempt to the simulated server: an admitted attempt completes later
    /// (`None`); a 429 is answered at once, as the failure event. The server numbers the
    /// requests it receives and draws an admitted one's output length and time to first
    /// token from that number's streams, as the mock does (per-token intervals are taken
    /// at their mean).
    fn send(&mut self, t: Nanos, id: u64) -> Option<LifeEvent> {
        let number = self.served;
        self.served += 1;
        let r = self.requests.get_mut(id)?;
        match self.server.admit(t, &sent_of(r)) {
            Answer::Admitted {
                prompt_tokens,
                meta,
            } => {
                let natural = match r.exact_output {
                    Some(n) => u32::try_from(n).unwrap_or(u32::MAX),
                    None => self.output.sample(&mut output_rng(self.mock_seed, number)),
                };
                let cap = u32::try_from(r.shape.max_tokens).unwrap_or(u32::MAX);
                let out = natural.min(cap);
                let ttft = nanos(self.latency.ttft(&mut latency_rng(self.mock_seed, number)));
                let rest = nanos(self.mean_per_token) * u64::from(out.saturating_sub(1));
                let end = if self.latency.is_zero() {
                    t
                } else {
                    t + ttft + rest
                };
                r.record.attempts.push(Attempt {
                    sent: t,
                    end,
                    status: Some(200),
                });
                r.record.first_byte = Some(t + ttft);
                r.usage = Some((prompt_tokens, u64::from(out)));
                r.meta = meta;
                self.push(end, Event::Complete { id });
                None
            }
            Answer::Throttled {
                retry_after,
                too_large,
                meta,
            } => {
                r.record.attempts.push(Attempt {
                    sent: t,
                    end: t,
                    status: Some(429),
                });
                r.record.end = t;
                Some(LifeEvent::Failed {
                    error: ErrorInfo {
                        retryable: !too_large,
                        ..ErrorInfo::rate_limited(retry_after)
                    },
                    meta,
                })
            }
        }
    }

    fn complete(
        &mut self,
        t: Nanos,
        id: u64,
        writer: &mut ReportWriter,
    ) -> Result<(), ReportError> {
        let Some(r) = self.requests.get_mut(id) else {
            return Ok(());
        };
        let (prompt, completion) = r.usage.unwrap_or((0, 0));
        self.server.complete(t, &sent_of(r), completion);
        r.record.prompt_tokens = Some(prompt);
        r.record.completion_tokens = Some(completion);
        r.record.end = t;
        let event = LifeEvent::Responded {
            usage: Cost::ZERO.with_split(prompt, completion),
            meta: r.meta,
        };
        self.feed(t, id, event, writer)
    }

    /// The lifecycle is over: the record gets its outcome and goes to the report.
    fn finish(
        &mut self,
        t: Nanos,
        id: u64,
        outcome: LifeOutcome,
        writer: &mut ReportWriter,
    ) -> Result<(), ReportError> {
        let Some(mut r) = self.requests.remove(id) else {
            return Ok(());
        };
        r.record.outcome = match outcome {
            LifeOutcome::Completed => Outcome::Ok,
            LifeOutcome::Refused if r.record.attempts.is_empty() => Outcome::Dropped,
            _ if r.record.attempts.last().is_some_and(Attempt::throttled) => Outcome::Throttled,
            _ => Outcome::Error,
        };
        if outcome == LifeOutcome::Refused {
            r.record.end = t;
        }
        let user = r.user_phase;
        self.finish_record(r.record, writer)?;
        if let Some(phase) = user {
            self.user_next(t, phase);
        }
        self.wake_head(t);
        Ok(())
    }

    fn user_next(&mut self, t: Nanos, phase: usize) {
        if let Arrival::Closed { think_time, .. } = self.s.phases[phase].arrival {
            self.push(t + nanos(think_time), Event::User { phase });
        }
    }

    fn finish_record(
        &mut self,
        record: RequestRecord,
        writer: &mut ReportWriter,
    ) -> Result<(), ReportError> {
        self.agg.add(&record);
        writer.request(self.agg.name(), &record)
    }
}

/// What request `r`'s attempts send, as the simulated server sees it.
fn sent_of(r: &InFlight) -> Sent {
    Sent {
        content_tokens: r.shape.prompt_tokens,
        prompt_chars: r.prompt_chars,
        max_tokens: r.shape.max_tokens,
    }
}

fn ceil_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_nanos().div_ceil(1_000_000) as u64)
}

/// What the connector's header profile would read from the mock's headers.
fn meta(
    q: &QuotaSnapshot,
    azure: bool,
    status: u16,
    retry_after: Option<Duration>,
) -> ResponseMeta {
    let mut m = ResponseMeta {
        status: Some(status),
        remaining_requests: Some(q.remaining_requests),
        remaining_tokens: Some(q.remaining_tokens),
        retry_after,
        ..ResponseMeta::default()
    };
    if azure {
        if status == 429 {
            // Azure sends whole seconds, rounded up (`x-rate-limit-reset-tokens`).
            m.reset_tokens = Some(Duration::from_secs(
                q.reset_tokens.as_nanos().div_ceil(1_000_000_000) as u64,
            ));
        }
    } else {
        m.limit_requests = Some(q.limit_requests);
        m.limit_tokens = Some(q.limit_tokens);
        m.reset_requests = Some(ceil_ms(q.reset_requests));
        m.reset_tokens = Some(ceil_ms(q.reset_tokens));
    }
    m
}

#[cfg(test)]
mod tests_support {
    use super::*;
    use crate::lifecycle::LifecycleConfig;

    /// A request as `arrive` makes one, for the window's tests.
    pub(super) fn in_flight(id: u64) -> InFlight {
        InFlight {
            record: RequestRecord {
                request_id: id,
                phase: 0,
                intended_start: 0,
                attempts: Vec::new(),
                first_byte: None,
                end: 0,
                outcome: Outcome::Dropped,
                estimated_tokens: 0,
                server_tokens: 0,
                prompt_tokens: None,
                completion_tokens: None,
                limiter_wait: 0,
                streamed: false,
            },
            shape: RequestShape {
                prompt_tokens: 1,
                max_tokens: 1,
                stream: false,
                prompt_seed: 0,
                output_tokens: 1,
                chars_per_token_milli: 4000,
            },
            prompt_chars: 4,
            machine: RequestLifecycle::with_estimate(Cost::request(2), LifecycleConfig::default()),
            permit: None,
            user_phase: None,
            usage: None,
            meta: ResponseMeta::default(),
            exact_output: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use mock_providers::config::HeaderSwitches;
    use mock_providers::quota::{Dimension, QuotaSnapshot};
    use mock_providers::server::headers::{self as mock, Headers};

    use super::meta;
    use super::{Event, EventQueue, Requests};
    use crate::provider::headers::HeaderProfile;

    /// The simulator skips HTTP, so it converts the quota engine's snapshot to the header
    /// view itself; this proves the conversion equals what the connector's header profile
    /// reads from the headers the mock writes for the same snapshot.
    #[test]
    fn the_simulated_header_view_is_what_the_connector_reads_from_the_mock() {
        let s = HeaderSwitches::default();
        for (i, ms) in [0u64, 1, 999, 1_000, 1_001, 20_000, 59_999, 61_234]
            .into_iter()
            .enumerate()
        {
            let q = QuotaSnapshot {
                limit_requests: 500,
                remaining_requests: i as u64,
                reset_requests: Duration::from_micros(ms * 1_000 + 1),
                limit_tokens: 30_000,
                remaining_tokens: 1_000 + i as u64,
                reset_tokens: Duration::from_millis(ms),
            };
            let wait = Duration::from_millis(ms.max(1));
            for status in [200u16, 429] {
                let retry = (status == 429).then_some(wait);
                let mut h = Headers::new();
                mock::openai_rate_limit(&s, &q, &mut h);
                if let Some(w) = retry {
                    mock::retry_after(&s, w, &mut h);
                }
                let read = HeaderProfile::Openai.parse(Some(status), &h.into_map());
                assert_eq!(
                    meta(&q, false, status, retry),
                    read,
                    "openai {status} {q:?}"
                );

                let mut h = Headers::new();
                mock::azure_rate_limit(&s, &q, &mut h);
                if let Some(w) = retry {
                    mock::retry_after(&s, w, &mut h);
                    mock::azure_throttle(&s, Dimension::Tokens, q.reset_tokens, &mut h);
                }
                let read = HeaderProfile::Azure.parse(Some(status), &h.into_map());
                assert_eq!(meta(&q, true, status, retry), read, "azure {status} {q:?}");
            }
        }
    }

    /// The FIFO beside the heap gives the order one heap of (time, sequence) would.
    #[test]
    fn the_event_queue_pops_in_time_then_push_order() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(3);
        let mut q = EventQueue::default();
        let mut reference = std::collections::BinaryHeap::new();
        let (mut seq, mut now, mut popped) = (0u64, 0u64, Vec::new());
        for step in 0..20_000 {
            if rng.random_bool(0.55) {
                // Now, or later: as the simulator pushes (never in the past).
                let at = now + [0, 0, 1, 5, 1_000][rng.random_range(0..5)];
                seq += 1;
                q.push(at, Event::Retry { id: seq });
                reference.push(std::cmp::Reverse((at, seq)));
            } else {
                let want = reference
                    .pop()
                    .map(|std::cmp::Reverse((t, id))| (t, Event::Retry { id }));
                let got = q.pop();
                assert_eq!(got, want, "step {step}");
                if let Some((t, _)) = got {
                    now = t;
                    popped.push(t);
                }
            }
        }
        assert!(popped.windows(2).all(|w| w[0] <= w[1]));
    }

    /// The window finds each request by id, keeps them in id order, and lets go of the
    /// ids before the oldest one alive.
    #[test]
    fn the_request_window_tracks_requests_by_id() {
        let mut w = Requests::default();
        assert!(w.get_mut(0).is_none());
        assert!(w.remove(7).is_none());
        let alive = [3u64, 4, 5, 9];
        for &id in &alive {
            w.insert(id, Box::new(super::tests_support::in_flight(id)));
        }
        assert_eq!(w.ids().collect::<Vec<_>>(), alive);
        assert_eq!(w.get_mut(9).map(|r| r.record.request_id), Some(9));
        assert!(w.get_mut(6).is_none() && w.get_mut(2).is_none() && w.get_mut(10).is_none());
        assert_eq!(w.remove(4).map(|r| r.record.request_id), Some(4));
        assert_eq!(w.remove(3).map(|r| r.record.request_id), Some(3));
        assert_eq!(w.base, 5, "the window starts at the oldest alive");
        assert!(w.remove(3).is_none());
        assert_eq!(w.ids().collect::<Vec<_>>(), [5, 9]);
        assert_eq!(w.remove(9).map(|r| r.record.request_id), Some(9));
        assert_eq!(w.remove(5).map(|r| r.record.request_id), Some(5));
        assert_eq!(w.slots.len(), 0);
        w.insert(20, Box::new(super::tests_support::in_flight(20)));
        assert_eq!(w.ids().collect::<Vec<_>>(), [20]);
    }
}
