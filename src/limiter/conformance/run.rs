//! Plays a script against a limiter and checks every [`Property`] as it goes; the bound at
//! the end of the trace.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::Poll;

use crate::clock::{Clock, ManualClock, Nanos};

use super::super::config::{RateLimitType, Strategy, Unit};
use super::super::invariants;
use super::super::{Cost, Denial, DimensionUsage, LimitError, Permit, RateLimiter, ResponseMeta};
use super::script::{actual_after, Op, Plan};
use super::{ns, Property, Subject};

/// What one passing trace did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Steps run.
    pub steps: u64,
    /// Requests admitted.
    pub admitted: u64,
    /// Refusals seen.
    pub refused: u64,
    /// Retries made exactly at, or 1 ns before, an outstanding denial's instant.
    pub exact_waits: u64,
    /// Refunds and extra charges reconciled.
    pub reconciled: u64,
    /// Acquire waiters queued.
    pub queued: u64,
    /// Steps run with the clock behind the latest time seen.
    pub backwards: u64,
    /// `Wait` refusals per refusing dimension, in the order first seen: each dimension's
    /// turn to refuse.
    pub refused_by: Vec<(RateLimitType, u64)>,
}

impl Tally {
    /// Counts a `Wait` refusal by `dimension`.
    pub(super) fn refused_on(&mut self, dimension: RateLimitType, n: u64) {
        match self.refused_by.iter_mut().find(|(d, _)| *d == dimension) {
            Some((_, count)) => *count += n,
            None => self.refused_by.push((dimension, n)),
        }
    }
}

/// A property broken at a step.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Failure {
    pub(super) property: Property,
    pub(super) detail: String,
}

type Acquire<'a> = Pin<Box<dyn Future<Output = Result<Permit, LimitError>> + Send + 'a>>;

struct Waiter<'a> {
    fut: Acquire<'a>,
    cost: Cost,
    /// The clock's time when it started waiting: a waiter's own view of time never goes
    /// back before it (its admission is stamped no earlier).
    since: Nanos,
    /// When it must be admitted: the instant of the clean denial it followed, while nothing
    /// else has changed the key since.
    due: Option<Nanos>,
}

/// A charge on the key, in the order it happened, stamped with the latest update time.
#[derive(Debug, Clone, Copy)]
enum Charge {
    /// An admission of `cost` (stamped per unit, indexed as [`Unit::ALL`]: the latest update
    /// of the dimensions counting in it), and the units refunded for it since, per unit.
    Admit {
        at: [Nanos; 4],
        cost: Cost,
        refund: [u64; 4],
    },
    /// A refund of `amount` units of `unit`.
    Refund { at: Nanos, unit: Unit, amount: u64 },
}

/// `unit`'s index in [`Unit::ALL`].
pub(super) fn unit_index(unit: Unit) -> usize {
    Unit::ALL.iter().position(|&u| u == unit).unwrap_or(0)
}

/// What a response reporting `left` says, as the runners send it: requests and tokens
/// left, and input and output tokens when `left` carries a split.
pub(super) fn meta_left(left: Cost) -> ResponseMeta {
    ResponseMeta {
        remaining_requests: Some(left.requests),
        remaining_tokens: Some(left.tokens),
        remaining_input_tokens: left.input_tokens,
        remaining_output_tokens: left.output_tokens,
        ..ResponseMeta::default()
    }
}

struct Held {
    permit: Permit,
    admission: usize,
}

/// The last `Wait` denial: at `at`, `cost` was told to wait `wait`.
#[derive(Debug, Clone, Copy)]
struct Pending {
    at: Nanos,
    wait: Nanos,
    cost: Cost,
    /// Nothing has been admitted, reconciled or queued since.
    clean: bool,
}

impl Pending {
    fn instant(&self) -> Nanos {
        self.at.saturating_add(self.wait)
    }
}

/// One trace being played.
pub(super) struct Run<'a> {
    limiter: &'a dyn RateLimiter,
    clock: &'a ManualClock,
    subject: &'a Subject,
    plan: &'a Plan,
    record: bool,
    /// One line per step when recording.
    pub(super) transcript: Vec<String>,
    start: Nanos,
    /// Latest time the limiter's dimensions of each unit (indexed as [`Unit::ALL`]) were
    /// updated at (an admission updates all; a reconciliation, those of the units it moved).
    updated: [Nanos; 4],
    /// Latest time the clock was set to.
    seen: Nanos,
    charges: Vec<Charge>,
    /// Count refunds at their admission (see [`Options::net_refunds`](super::Options::net_refunds)).
    net_refunds: bool,
    held: Vec<Held>,
    waiters: Vec<Waiter<'a>>,
    pending: Option<Pending>,
    /// Until when a server's retry-after pauses the key.
    paused_until: Nanos,
    tally: Tally,
    /// What the current step did, for the transcript.
    note: Vec<String>,
}

pub(super) fn fail(property: Property, detail: impl Into<String>) -> Failure {
    Failure {
        property,
        detail: detail.into(),
    }
}

pub(super) use super::script::show;

impl<'a> Run<'a> {
    pub(super) fn new(
        limiter: &'a dyn RateLimiter,
        clock: &'a ManualClock,
        subject: &'a Subject,
        plan: &'a Plan,
        record: bool,
    ) -> Self {
        Self {
            limiter,
            clock,
            subject,
            plan,
            record,
            transcript: Vec::new(),
            start: 0,
            updated: [0; 4],
            seen: 0,
            charges: Vec::new(),
            net_refunds: false,
            held: Vec::new(),
            waiters: Vec::new(),
            pending: None,
            paused_until: 0,
            tally: Tally::default(),
            note: Vec::new(),
        }
    }

    /// Counts each refund at the admission it belongs to (the stricter bound).
    pub(super) fn net_refunds(mut self, on: bool) -> Self {
        self.net_refunds = on;
        self
    }

    /// Plays `ops` from a reset key at an aligned time; the bound is checked at the end.
    /// Whatever happens, waiters and permits are dropped and the clock is left at the
    /// latest time seen.
    pub(super) async fn play(&mut self, ops: &[Op]) -> Result<Tally, Failure> {
        let result = self.steps(ops).await;
        self.waiters.clear();
        self.held.clear();
        self.clock.set(self.seen.max(self.clock.now()));
        result.map(|()| self.tally.clone())
    }

    async fn steps(&mut self, ops: &[Op]) -> Result<(), Failure> {
        self.begin().await?;
        for (i, op) in ops.iter().enumerate() {
            self.tally.steps += 1;
            let r = self.apply(*op).await;
            let r = match r {
                Ok(()) => self.poll_waiters().await,
                e => e,
            };
            if self.clock.now() < self.seen {
                self.tally.backwards += 1;
            }
            if self.record {
                let t = self.clock.now().wrapping_sub(self.start) as i64;
                let mut line = format!("{i:>3}. t = {t} ns: {op}");
                if !self.note.is_empty() {
                    line.push_str(" → ");
                    line.push_str(&self.note.join("; "));
                }
                if let Err(f) = &r {
                    line.push_str(&format!("  ✗ {}", f.property.name()));
                }
                self.transcript.push(line);
            }
            self.note.clear();
            r?;
        }
        self.check_bound()
    }

    /// Aligns the clock past everything seen, resets the key, checks it is full.
    async fn begin(&mut self) -> Result<(), Failure> {
        let now = self.clock.now();
        let p = self.plan.period.max(1);
        let start = (now / p).saturating_add(1).saturating_mul(p);
        self.clock.set(start);
        self.start = start;
        self.updated = [start; 4];
        self.seen = start;
        self.limiter
            .reset(&self.subject.key)
            .await
            .map_err(|e| fail(Property::Answers, format!("reset failed: {e}")))?;
        let stats = self.stats().await?;
        for d in &self.plan.dims {
            match stats.iter().find(|u| u.dimension == d.limit.kind) {
                None => {
                    return Err(fail(
                        Property::ResetRestores,
                        format!("usage_stats reports no {} dimension", d.limit.kind),
                    ))
                }
                Some(u) if u.remaining != d.capacity => {
                    return Err(fail(
                        Property::ResetRestores,
                        format!(
                            "{}: {} remaining right after reset, capacity {}",
                            d.limit.kind, u.remaining, d.capacity
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    fn set_clock(&mut self, t: Nanos) {
        let t = t.max(self.start);
        self.clock.set(t);
        self.seen = self.seen.max(t);
    }

    async fn stats(&self) -> Result<Vec<DimensionUsage>, Failure> {
        self.limiter
            .usage_stats(&self.subject.key)
            .await
            .map(|s| s.dimensions)
            .map_err(|e| fail(Property::Answers, format!("usage_stats failed: {e}")))
    }

    fn in_flight(&self) -> u64 {
        self.held
            .iter()
            .filter(|h| h.permit.charged().requests > 0)
            .count() as u64
    }

    /// Every change to the key's state: no outstanding denial or waiter instant holds.
    fn changed(&mut self) {
        self.pending = None;
        for w in &mut self.waiters {
            w.due = None;
        }
    }

    async fn apply(&mut self, op: Op) -> Result<(), Failure> {
        let now = self.clock.now();
        match op {
            Op::Advance(d) => self.set_clock(now.saturating_add(d)),
            Op::Back(d) => self.set_clock(now.saturating_sub(d)),
            Op::AtWait(delta) => {
                if let Some(p) = self.pending {
                    if p.clean {
                        self.tally.exact_waits += 1;
                    }
                    self.set_clock(p.instant().saturating_add_signed(delta));
                }
            }
            Op::Try { cost, hold } => {
                self.attempt(cost, hold).await?;
            }
            Op::Burst { cost, max } => {
                let mark = self.note.len();
                let mut n = 0;
                let mut result = Ok(());
                for _ in 0..max {
                    match self.attempt(cost, false).await {
                        Ok(true) => n += 1,
                        Ok(false) => break,
                        Err(f) => {
                            result = Err(f);
                            break;
                        }
                    }
                }
                if self.record {
                    // One line for the burst: how many, and how it ended.
                    let last = self.note.pop().filter(|_| self.note.len() >= mark);
                    self.note.truncate(mark);
                    self.note.push(format!("{n} admitted"));
                    if let Some(last) = last.filter(|l| !l.ends_with(" admitted")) {
                        self.note.push(format!("then {last}"));
                    }
                }
                result?;
            }
            Op::Record { permit, delta } => self.reconcile(permit, delta).await?,
            Op::Report {
                permit,
                remaining,
                retry_after,
            } => self.report(permit, remaining, retry_after).await?,
            Op::Enqueue { cost: estimate } => {
                let cost = self.subject.charged(estimate);
                let due = match self.pending {
                    Some(p) if p.clean && p.cost == cost && self.waiters.is_empty() => {
                        Some(p.instant())
                    }
                    _ => None,
                };
                if let Some(p) = &mut self.pending {
                    p.clean = false;
                }
                let fut = self.limiter.acquire(&self.subject.key, estimate);
                self.waiters.push(Waiter {
                    fut,
                    cost,
                    due,
                    since: now,
                });
                self.tally.queued += 1;
            }
            Op::Cancel { waiter } => {
                if !self.waiters.is_empty() {
                    let before = self.stats().await?;
                    let w = self.waiters.remove(waiter % self.waiters.len());
                    drop(w);
                    let after = self.stats().await?;
                    if let Some(d) = differs(&before, &after) {
                        return Err(fail(
                            Property::CancelGivesBack,
                            format!("cancelling a waiter changed {d}"),
                        ));
                    }
                    for w in &mut self.waiters {
                        w.due = None;
                    }
                    if self.record {
                        self.note
                            .push(format!("{} still waiting", self.waiters.len()));
                    }
                }
            }
        }
        Ok(())
    }

    /// Records an admission of `cost` at the clock's time (or `floor`, if later), stamped
    /// with the latest update.
    fn admit(&mut self, cost: Cost, permit: Permit, hold: bool, floor: Nanos) {
        let now = self.clock.now().max(floor);
        self.updated = self.updated.map(|u| u.max(now));
        self.charges.push(Charge::Admit {
            at: self.updated,
            cost,
            refund: [0; 4],
        });
        self.tally.admitted += 1;
        if hold {
            self.held.push(Held {
                permit,
                admission: self.charges.len() - 1,
            });
        }
        self.changed();
    }

    /// One `try_acquire`; `Ok(true)` when admitted.
    async fn attempt(&mut self, estimate: Cost, hold: bool) -> Result<bool, Failure> {
        let now = self.clock.now();
        let before = self.stats().await?;
        let result = self.limiter.try_acquire(&self.subject.key, estimate).await;
        // What the limiter is to charge: the estimate shaped by the subject's `charge_at`.
        let cost = self.subject.charged(estimate);
        let exceeds = self.plan.exceeds(cost);
        let queued = !self.waiters.is_empty();
        let pending = self.pending.filter(|p| p.clean && p.cost == cost);
        match result {
            Ok(permit) => {
                if self.record {
                    self.note.push(format!("{} admitted", show(cost)));
                }
                if now < self.paused_until {
                    return Err(fail(
                        Property::Paused,
                        format!(
                            "{} admitted {} ns before the server's pause ends",
                            show(cost),
                            self.paused_until - now
                        ),
                    ));
                }
                if queued {
                    return Err(fail(
                        Property::Queue,
                        format!(
                            "try_acquire {} admitted while {} acquire waiter(s) are queued",
                            show(cost),
                            self.waiters.len()
                        ),
                    ));
                }
                if exceeds {
                    return Err(fail(
                        Property::Exceeds,
                        format!("{} admitted although it is above a capacity", show(cost)),
                    ));
                }
                if let Some(p) = pending {
                    if now < p.instant() {
                        return Err(fail(
                            Property::ExactWait,
                            format!(
                                "{} admitted {} ns before the instant its denial named \
                                 (told at t+{} ns to wait {} ns)",
                                show(cost),
                                p.instant() - now,
                                p.at - self.start,
                                p.wait
                            ),
                        ));
                    }
                }
                if let Some(slots) = self.subject.slots() {
                    if cost.requests > 0 && self.in_flight() >= slots {
                        return Err(fail(
                            Property::Slots,
                            format!("admitted with all {slots} slots in flight"),
                        ));
                    }
                }
                self.admit(cost, permit, hold, 0);
                Ok(true)
            }
            Err(denial) => {
                self.tally.refused += 1;
                if let Denial::Wait { dimension, .. } = &denial {
                    self.tally.refused_on(*dimension, 1);
                }
                if self.record {
                    self.note.push(format!("refused: {denial}"));
                }
                let after = self.stats().await?;
                if let Some(d) = differs(&before, &after) {
                    return Err(fail(
                        Property::AllOrNothing,
                        format!("refusing {} ({denial}) changed {d}", show(cost)),
                    ));
                }
                self.refused(now, cost, &denial, &before, exceeds, queued, pending)?;
                Ok(false)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn refused(
        &mut self,
        now: Nanos,
        cost: Cost,
        denial: &Denial,
        before: &[DimensionUsage],
        exceeds: bool,
        queued: bool,
        pending: Option<Pending>,
    ) -> Result<(), Failure> {
        match denial {
            Denial::Queued { .. } if !queued => Err(fail(
                Property::CancelGivesBack,
                format!("{} refused as Queued with no waiter queued", show(cost)),
            )),
            Denial::Queued { .. } | Denial::Paused { .. } => Ok(()),
            Denial::Unavailable { reason } => Err(fail(
                Property::Answers,
                format!("try_acquire unavailable: {reason}"),
            )),
            Denial::Exceeds {
                dimension,
                cost: c,
                capacity,
            } => {
                let named = self.plan.dims.iter().find(|d| d.limit.kind == *dimension);
                match named {
                    Some(d) if d.limit.kind.cost_of(cost) > d.capacity => Ok(()),
                    _ => Err(fail(
                        Property::Exceeds,
                        format!(
                            "{} refused as Exceeds on {dimension} (cost {c}, capacity {capacity}) \
                             but it fits every dimension's capacity",
                            show(cost)
                        ),
                    )),
                }
            }
            Denial::Saturated { in_flight } => match self.subject.slots() {
                // Only a request takes a slot: a charge of tokens alone is never Saturated.
                Some(slots) if cost.requests > 0 && self.in_flight() >= slots => Ok(()),
                _ => Err(fail(
                    Property::Slots,
                    format!(
                        "refused as Saturated ({in_flight} in flight) with {} of {:?} slots taken",
                        self.in_flight(),
                        self.subject.slots()
                    ),
                )),
            },
            Denial::Wait {
                dimension,
                retry_after,
            } => {
                if exceeds {
                    return Err(fail(
                        Property::Exceeds,
                        format!(
                            "{} is above a capacity but was told to wait {retry_after:?}",
                            show(cost)
                        ),
                    ));
                }
                let wait = ns(*retry_after);
                let unit_cost = dimension.cost_of(cost);
                match before.iter().find(|u| u.dimension == *dimension) {
                    Some(u) if u.remaining == 0 || u.remaining < unit_cost => {}
                    other => {
                        return Err(fail(
                            Property::RefusingDimension,
                            format!(
                                "{} refused on {dimension}, which had {} remaining for a cost of \
                                 {unit_cost}",
                                show(cost),
                                other.map_or("no".into(), |u| u.remaining.to_string())
                            ),
                        ))
                    }
                }
                if wait == 0 {
                    return Err(fail(
                        Property::ExactWait,
                        format!("{} refused with a zero wait", show(cost)),
                    ));
                }
                if let Some(p) = pending {
                    let instant = now.saturating_add(wait);
                    if now >= p.instant() {
                        return Err(fail(
                            Property::ExactWait,
                            format!(
                                "{} refused {} ns after the instant its denial named \
                                 (told at t+{} ns to wait {} ns), now told to wait {wait} ns more",
                                show(cost),
                                now - p.instant(),
                                p.at - self.start,
                                p.wait
                            ),
                        ));
                    }
                    if instant != p.instant() {
                        return Err(fail(
                            Property::ExactWait,
                            format!(
                                "{} told at t+{} ns to wait {wait} ns (until t+{} ns), though \
                                 told at t+{} ns to wait until t+{} ns with nothing admitted since",
                                show(cost),
                                now - self.start,
                                instant - self.start,
                                p.at - self.start,
                                p.instant() - self.start
                            ),
                        ));
                    }
                }
                self.pending = Some(Pending {
                    at: now,
                    wait,
                    cost,
                    clean: !queued,
                });
                Ok(())
            }
        }
    }

    async fn reconcile(&mut self, which: usize, delta: i64) -> Result<(), Failure> {
        if self.held.is_empty() {
            return Ok(());
        }
        let held = self.held.remove(which % self.held.len());
        let charged = held.permit.charged();
        let actual = actual_after(charged, delta);
        let refund =
            self.subject
                .accounting
                .reconcile_units(self.subject.charge_at, charged, actual);
        let before = self.stats().await?;
        self.limiter
            .record_usage(held.permit, actual, &ResponseMeta::default())
            .await
            .map_err(|e| fail(Property::Answers, format!("record_usage failed: {e}")))?;
        self.tally.reconciled += 1;
        let moved: Vec<(Unit, i64)> = Unit::ALL
            .into_iter()
            .filter(|u| u.is_tokens())
            .map(|u| (u, refund.of(u)))
            .filter(|&(_, r)| r != 0)
            .collect();
        if self.record {
            self.note.push(format!(
                "estimate {}, actual {}: {}",
                show(charged),
                show(actual),
                if moved.is_empty() {
                    "nothing to reconcile".to_owned()
                } else {
                    moved
                        .iter()
                        .map(|&(u, r)| match r {
                            r if r > 0 => format!("{r} {u:?} refunded"),
                            r => format!("{} {u:?} charged extra", r.unsigned_abs()),
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ));
        }
        if moved.is_empty() {
            return Ok(());
        }
        let now = self.clock.now();
        // A strategy that keeps the time of its last update (the token bucket's refill,
        // the windows' advance) moves it to a reconciliation's time; GCRA and the leaky
        // bucket keep only their next slot, which a reconciliation never moves before now.
        let keeps_time = matches!(
            self.subject.strategy,
            Strategy::TokenBucket | Strategy::SlidingLog | Strategy::SlidingCounter
        );
        for &(unit, _) in &moved {
            if keeps_time && self.plan.dims.iter().any(|d| d.unit == unit) {
                let i = unit_index(unit);
                self.updated[i] = self.updated[i].max(now);
            }
        }
        self.changed();
        let mut extra_charges = Vec::new();
        for &(unit, r) in &moved {
            let i = unit_index(unit);
            if r > 0 {
                let refunded = r.unsigned_abs();
                if let Some(Charge::Admit { refund, .. }) = self.charges.get_mut(held.admission) {
                    refund[i] = refund[i].saturating_add(refunded);
                }
                self.charges.push(Charge::Refund {
                    at: self.updated[i],
                    unit,
                    amount: refunded,
                });
            } else {
                extra_charges.push((unit, r.unsigned_abs()));
            }
        }
        if extra_charges.is_empty() {
            return Ok(());
        }
        let after = self.stats().await?;
        for (unit, extra) in extra_charges {
            for d in self.plan.dims.iter().filter(|d| d.unit == unit) {
                let get = |s: &[DimensionUsage]| {
                    s.iter()
                        .find(|u| u.dimension == d.limit.kind)
                        .map(|u| u.remaining)
                };
                if let (Some(b), Some(a)) = (get(&before), get(&after)) {
                    if a > b.saturating_sub(extra) {
                        return Err(fail(
                            Property::ExtraChargeKept,
                            format!(
                                "{}: {b} remaining before an extra charge of {extra} units, {a} \
                                 after",
                                d.limit.kind
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// A response for held permit `which` (actual = estimate) reporting `left` and a
    /// retry-after of `retry_after` ns (none when 0).
    async fn report(
        &mut self,
        which: usize,
        left: Cost,
        retry_after: Nanos,
    ) -> Result<(), Failure> {
        if self.held.is_empty() {
            return Ok(());
        }
        let held = self.held.remove(which % self.held.len());
        let charged = held.permit.charged();
        let meta = ResponseMeta {
            retry_after: (retry_after > 0).then(|| std::time::Duration::from_nanos(retry_after)),
            ..meta_left(left)
        };
        let before = self.stats().await?;
        self.limiter
            .record_usage(held.permit, charged, &meta)
            .await
            .map_err(|e| fail(Property::Answers, format!("record_usage failed: {e}")))?;
        let now = self.clock.now();
        if retry_after > 0 {
            self.paused_until = self.paused_until.max(now.saturating_add(retry_after));
        }
        if matches!(
            self.subject.strategy,
            Strategy::TokenBucket | Strategy::SlidingLog | Strategy::SlidingCounter
        ) {
            // The server's view is applied at `now` to every dimension.
            self.updated = self.updated.map(|u| u.max(now));
        }
        self.changed();
        let after = self.stats().await?;
        let leaky = self.subject.strategy == Strategy::LeakyBucket;
        for d in &self.plan.dims {
            let get = |s: &[DimensionUsage]| {
                s.iter()
                    .find(|u| u.dimension == d.limit.kind)
                    .map(|u| u.remaining)
            };
            let (Some(b), Some(a)) = (get(&before), get(&after)) else {
                continue;
            };
            let r = d.limit.kind.cost_of(left);
            let broken = a > b || (!leaky && a > r) || (leaky && r == 0 && a > 0);
            if broken {
                return Err(fail(
                    Property::ServerView,
                    format!(
                        "{}: {b} remaining before a response reporting {r} left, {a} after",
                        d.limit.kind
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Polls every waiter once, oldest first, in the caller's task context.
    async fn poll_waiters(&mut self) -> Result<(), Failure> {
        let mut i = 0;
        while i < self.waiters.len() {
            let w = &mut self.waiters[i];
            // A busy-waiting acquire panics in a GuardedClock: caught here, reported.
            let polled = std::future::poll_fn(|cx| {
                Poll::Ready(std::panic::catch_unwind(AssertUnwindSafe(|| {
                    w.fut.as_mut().poll(cx)
                })))
            })
            .await;
            let polled = match polled {
                Ok(p) => p,
                Err(payload) => {
                    let message = payload
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                        .unwrap_or_default();
                    let cost = self.waiters.remove(i).cost;
                    if message.starts_with(super::BUSY_WAIT) {
                        return Err(fail(
                            Property::NoBusyWait,
                            format!("acquire {} spun: {message}", show(cost)),
                        ));
                    }
                    std::panic::resume_unwind(payload);
                }
            };
            let now = self.clock.now();
            match polled {
                Poll::Pending => {
                    if let Some(due) = self.waiters[i].due {
                        if i == 0 && now >= due {
                            return Err(fail(
                                Property::WaiterOnTime,
                                format!(
                                    "the only waiter ({}) is still waiting {} ns after the instant \
                                     t+{} ns its denial named",
                                    show(self.waiters[i].cost),
                                    now - due,
                                    due - self.start
                                ),
                            ));
                        }
                    }
                    i += 1;
                }
                Poll::Ready(result) => {
                    let w = self.waiters.remove(i);
                    match result {
                        Ok(permit) => {
                            if i > 0 {
                                return Err(fail(
                                    Property::Queue,
                                    format!(
                                        "waiter {} ({}) admitted before {i} earlier waiter(s)",
                                        i,
                                        show(w.cost)
                                    ),
                                ));
                            }
                            // The waiter's own time never goes back before it started.
                            let at = now.max(w.since);
                            if at < self.paused_until {
                                return Err(fail(
                                    Property::Paused,
                                    format!(
                                        "waiter {} admitted {} ns before the server's pause ends",
                                        show(w.cost),
                                        self.paused_until - at
                                    ),
                                ));
                            }
                            if let Some(due) = w.due {
                                if now < due {
                                    return Err(fail(
                                        Property::WaiterOnTime,
                                        format!(
                                            "waiter {} admitted {} ns before the instant t+{} ns \
                                             its denial named",
                                            show(w.cost),
                                            due - now,
                                            due - self.start
                                        ),
                                    ));
                                }
                            }
                            if self.plan.exceeds(w.cost) {
                                return Err(fail(
                                    Property::Exceeds,
                                    format!("acquire admitted {} above a capacity", show(w.cost)),
                                ));
                            }
                            if self.record {
                                self.note.push(format!("waiter {} admitted", show(w.cost)));
                            }
                            self.admit(w.cost, permit, true, w.since);
                        }
                        Err(e) => {
                            if self.record {
                                self.note
                                    .push(format!("waiter {} failed: {e}", show(w.cost)));
                            }
                            if let LimitError::Unavailable { reason, .. } = &e {
                                return Err(fail(
                                    Property::Answers,
                                    format!("acquire unavailable: {reason}"),
                                ));
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The bound of every dimension over the charges: admissions at their estimate and
    /// refunds as negative charges when made, or (net) admissions less their refunds.
    fn check_bound(&self) -> Result<(), Failure> {
        let signed = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        for d in &self.plan.dims {
            let i = unit_index(d.unit);
            let trace: Vec<(Nanos, i64)> = self
                .charges
                .iter()
                .filter_map(|c| match *c {
                    Charge::Admit { at, cost, refund } => {
                        let c = d.limit.kind.cost_of(cost);
                        let c = if self.net_refunds {
                            c.saturating_sub(refund[i])
                        } else {
                            c
                        };
                        Some((at[i], signed(c)))
                    }
                    Charge::Refund { at, unit, amount } if unit == d.unit && !self.net_refunds => {
                        Some((at, -signed(amount)))
                    }
                    Charge::Refund { .. } => None,
                })
                .collect();
            if let Some(v) = invariants::check_charges(self.subject.strategy, &d.limit, &trace) {
                let rel = |t: Nanos| t.saturating_sub(self.start);
                return Err(fail(
                    Property::Bound,
                    format!(
                        "{} ({} per {:?}, burst {}): {} units admitted from t+{} ns to t+{} ns{}, \
                         at most {} allowed by the {} ({})",
                        d.limit.kind,
                        d.limit.amount,
                        d.limit.kind.window().unwrap_or_default(),
                        d.limit.burst,
                        v.admitted,
                        rel(v.from),
                        rel(v.to),
                        v.window_start
                            .map(|s| format!(" (window from t+{} ns)", rel(s)))
                            .unwrap_or_default(),
                        v.bound,
                        v.invariant,
                        v.invariant.statement()
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The first dimension whose remaining differs between two snapshots, described.
pub(super) fn differs(before: &[DimensionUsage], after: &[DimensionUsage]) -> Option<String> {
    for b in before {
        match after.iter().find(|a| a.dimension == b.dimension) {
            Some(a) if a.remaining == b.remaining => {}
            Some(a) => {
                return Some(format!(
                    "{}: remaining {} before, {} after",
                    b.dimension, b.remaining, a.remaining
                ))
            }
            None => return Some(format!("{}: no longer reported", b.dimension)),
        }
    }
    None
}
