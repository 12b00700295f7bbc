//! The kit on a limiter that decides on its own clock — a shared backend's server clock,
//! such as the Redis backend's `TIME` — in real time.
//!
//! The traces are the same ([`Plan::generate`]); what changes is that the kit cannot set
//! the time. It waits (tokio's timer) for moves, and judges every call by the time the
//! limiter's own clock stamped it with ([`ServerClocked::try_acquire_at`]), at that clock's
//! resolution. Which properties apply, and why:
//!
//! | property | on a server clock |
//! |---|---|
//! | [`Bound`](Property::Bound) | yes: admissions stamped with the server's time; a refund with the last server time seen before it (a lower bound of when it happened, so the check is never stricter than the truth) |
//! | [`ExactWait`](Property::ExactWait) | yes, by stamps: a call stamped before a denial's instant is refused and names the same instant; one stamped at or after it is admitted. The kit aims its "1 ns early" probe about a millisecond early (a client cannot place a call closer to a server instant) |
//! | [`AllOrNothing`](Property::AllOrNothing) | weakened: time moves between the probes, so no dimension's remaining may be *lower* right after a refusal than right before |
//! | [`RefusingDimension`](Property::RefusingDimension), [`Exceeds`](Property::Exceeds), [`Slots`](Property::Slots), [`ResetRestores`](Property::ResetRestores), [`Answers`](Property::Answers) | yes (remaining only rises while nothing is admitted, so a probe before the decision is a valid witness) |
//! | [`ExtraChargeKept`](Property::ExtraChargeKept) | no: it compares two probes at one instant, and refill between them hides the charge |
//! | [`Queue`](Property::Queue), [`WaiterOnTime`](Property::WaiterOnTime), [`CancelGivesBack`](Property::CancelGivesBack), [`NoBusyWait`](Property::NoBusyWait) | no: a shared backend's `acquire` sleeps on the client's clock plus jitter and queues per process, by design; its exactness is `try_acquire`'s, checked above |
//! | clock going backwards | not applicable: the server reads its own clock, no client time reaches a decision |
//!
//! A failing trace is not shrunk (each replay costs real time): the counterexample is the
//! trace up to the failing step, with its transcript.

use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::clock::Nanos;

use super::super::config::Unit;
use super::super::invariants;
use super::super::redis::RedisLimiter;
use super::super::{Cost, Denial, DimensionUsage, LimitKey, Permit, RateLimiter, ResponseMeta};
use super::run::{differs, fail, meta_left, show, Failure, Tally};
use super::script::{actual_after, Op, Plan};
use super::{ns, trace_seed, ConformanceError, Counterexample, Options, Property, Report, Subject};
use rand::rngs::SmallRng;
use rand::SeedableRng;

/// A limiter whose decisions are stamped by the clock that made them.
#[async_trait]
pub trait ServerClocked: RateLimiter {
    /// [`try_acquire`](RateLimiter::try_acquire), with the deciding clock's time in ns
    /// (any epoch, the same for every call); `None` when that clock did not decide (e.g. a
    /// cost above a capacity refused locally).
    async fn try_acquire_at(
        &self,
        key: &LimitKey,
        estimate: Cost,
    ) -> (Result<Permit, Denial>, Option<Nanos>);
}

#[async_trait]
impl ServerClocked for RedisLimiter {
    async fn try_acquire_at(
        &self,
        key: &LimitKey,
        estimate: Cost,
    ) -> (Result<Permit, Denial>, Option<Nanos>) {
        let d = self.decide(key, estimate).await;
        let at = d
            .server_time_us
            .and_then(|us| u64::try_from(us).ok())
            .map(|us| us.saturating_mul(1_000));
        (d.outcome, at)
    }
}

/// How early the kit aims a probe meant to land just before a denial's instant.
const EARLY: Nanos = 1_000_000;
/// How late the kit aims a probe meant to land at a denial's instant.
const LATE: Nanos = 200_000;

/// Proves `limiter` on `subject` on the limiter's own clock, in real time (inside a tokio
/// runtime with its timer): the properties of the module docs' table, on
/// `options.traces` traces. Windows should be short (a few hundred milliseconds): every
/// wait is waited for.
pub async fn check_server_clock(
    limiter: &dyn ServerClocked,
    subject: &Subject,
    options: &Options,
) -> Result<Report, ConformanceError> {
    if subject.rates().next().is_none() {
        return Err(ConformanceError::NothingToProve {
            key: subject.key.clone(),
        });
    }
    let plan = Plan::new(subject, &options.workload);
    let mut report = Report::default();
    for i in 0..options.traces {
        let seed = trace_seed(options.seed, i);
        let ops = plan.generate(&mut SmallRng::seed_from_u64(seed), options.episodes);
        let mut run = ServerRun::new(limiter, subject, &plan);
        match run.play(&ops).await {
            Ok(t) => report.add(&t),
            Err((step, failure)) => {
                return Err(ConformanceError::Violated(Box::new(Counterexample {
                    property: failure.property,
                    seed,
                    detail: failure.detail,
                    script: ops[..=step.min(ops.len().saturating_sub(1))].to_vec(),
                    transcript: tail(run.transcript),
                    original_steps: ops.len(),
                    shrunk: false,
                })))
            }
        }
    }
    Ok(report)
}

/// A charge, stamped on the server's clock.
#[derive(Debug, Clone, Copy)]
enum Charge {
    Admit { at: Nanos, cost: Cost },
    Refund { at: Nanos, unit: Unit, amount: u64 },
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    at: Nanos,
    wait: Nanos,
    cost: Cost,
}

impl Pending {
    fn instant(&self) -> Nanos {
        self.at.saturating_add(self.wait)
    }
}

struct ServerRun<'a> {
    limiter: &'a dyn ServerClocked,
    subject: &'a Subject,
    plan: &'a Plan,
    transcript: Vec<String>,
    /// The first server time of the trace.
    start: Option<Nanos>,
    /// The latest server time seen, and when (on this machine) it was seen.
    anchor: Option<(Nanos, Instant)>,
    charges: Vec<Charge>,
    held: Vec<Permit>,
    pending: Option<Pending>,
    tally: Tally,
    note: Vec<String>,
}

impl<'a> ServerRun<'a> {
    fn new(limiter: &'a dyn ServerClocked, subject: &'a Subject, plan: &'a Plan) -> Self {
        Self {
            limiter,
            subject,
            plan,
            transcript: Vec::new(),
            start: None,
            anchor: None,
            charges: Vec::new(),
            held: Vec::new(),
            pending: None,
            tally: Tally::default(),
            note: Vec::new(),
        }
    }

    async fn play(&mut self, ops: &[Op]) -> Result<Tally, (usize, Failure)> {
        let r = self.steps(ops).await;
        self.held.clear();
        r.map(|()| self.tally.clone())
    }

    async fn steps(&mut self, ops: &[Op]) -> Result<(), (usize, Failure)> {
        self.begin().await.map_err(|f| (0, f))?;
        for (i, op) in ops.iter().enumerate() {
            self.tally.steps += 1;
            let r = self.apply(*op).await;
            let t = match (self.anchor, self.start) {
                (Some((now, _)), Some(start)) => format!("{}", now.saturating_sub(start)),
                _ => "?".into(),
            };
            let mut line = format!("{i:>3}. server t = {t} ns: {op}");
            if !self.note.is_empty() {
                line.push_str(" → ");
                line.push_str(&self.note.join("; "));
            }
            if let Err(f) = &r {
                line.push_str(&format!("  ✗ {}", f.property.name()));
            }
            self.transcript.push(line);
            self.note.clear();
            r.map_err(|f| (i, f))?;
        }
        self.check_bound()
            .map_err(|f| (ops.len().saturating_sub(1), f))
    }

    async fn begin(&mut self) -> Result<(), Failure> {
        self.limiter
            .reset(&self.subject.key)
            .await
            .map_err(|e| fail(Property::Answers, format!("reset failed: {e}")))?;
        let stats = self.stats().await?;
        for d in &self.plan.dims {
            match stats.iter().find(|u| u.dimension == d.limit.kind) {
                Some(u) if u.remaining == d.capacity => {}
                other => {
                    return Err(fail(
                        Property::ResetRestores,
                        format!(
                            "{}: {} remaining right after reset, capacity {}",
                            d.limit.kind,
                            other.map_or("none".into(), |u| u.remaining.to_string()),
                            d.capacity
                        ),
                    ))
                }
            }
        }
        Ok(())
    }

    async fn stats(&self) -> Result<Vec<DimensionUsage>, Failure> {
        self.limiter
            .usage_stats(&self.subject.key)
            .await
            .map(|s| s.dimensions)
            .map_err(|e| fail(Property::Answers, format!("usage_stats failed: {e}")))
    }

    /// The server's time now, estimated from the last stamp and this machine's clock.
    fn server_now(&self) -> Option<Nanos> {
        self.anchor
            .map(|(at, seen)| at.saturating_add(ns(seen.elapsed())))
    }

    fn observe(&mut self, at: Nanos) {
        self.start.get_or_insert(at);
        let latest = self.anchor.map_or(at, |(a, _)| a.max(at));
        self.anchor = Some((latest, Instant::now()));
    }

    /// The latest server time seen (0 before any).
    fn latest(&self) -> Nanos {
        self.anchor.map_or(0, |(a, _)| a)
    }

    async fn apply(&mut self, op: Op) -> Result<(), Failure> {
        match op {
            Op::Advance(d) => tokio::time::sleep(Duration::from_nanos(d)).await,
            // The server reads its own clock: there is no client time to set back.
            Op::Back(_) | Op::Enqueue { .. } | Op::Cancel { .. } => {
                self.note.push("not applicable on a server clock".into())
            }
            Op::AtWait(delta) => {
                if let (Some(p), Some(now)) = (self.pending, self.server_now()) {
                    let target = if delta < 0 {
                        // Just before the instant, if there is room for it.
                        p.instant().saturating_sub(EARLY.min(p.wait / 2))
                    } else {
                        p.instant().saturating_add(LATE)
                    };
                    self.tally.exact_waits += 1;
                    if target > now {
                        tokio::time::sleep(Duration::from_nanos(target - now)).await;
                    }
                }
            }
            Op::Try { cost, hold } => {
                self.attempt(cost, hold).await?;
            }
            Op::Burst { cost, max } => {
                let mut n = 0;
                for _ in 0..max {
                    if !self.attempt(cost, false).await? {
                        break;
                    }
                    n += 1;
                }
                self.note.retain(|l| !l.ends_with(" admitted"));
                self.note.insert(0, format!("{n} admitted"));
            }
            Op::Record { permit, delta } => self.reconcile(permit, delta).await?,
            // The server's view is applied, unchecked: time moves between the probes.
            Op::Report {
                permit, remaining, ..
            } => {
                if !self.held.is_empty() {
                    let permit = self.held.remove(permit % self.held.len());
                    let charged = permit.charged();
                    let meta = meta_left(remaining);
                    self.limiter
                        .record_usage(permit, charged, &meta)
                        .await
                        .map_err(|e| {
                            fail(Property::Answers, format!("record_usage failed: {e}"))
                        })?;
                    self.pending = None;
                }
            }
        }
        Ok(())
    }

    async fn attempt(&mut self, estimate: Cost, hold: bool) -> Result<bool, Failure> {
        let before = self.stats().await?;
        let (result, stamp) = self
            .limiter
            .try_acquire_at(&self.subject.key, estimate)
            .await;
        // What the limiter is to charge: the estimate shaped by the subject's `charge_at`.
        let cost = self.subject.charged(estimate);
        if let Some(at) = stamp {
            self.observe(at);
        }
        let exceeds = self.plan.exceeds(cost);
        let pending = self.pending.filter(|p| p.cost == cost);
        match result {
            Ok(permit) => {
                self.note.push(format!("{} admitted", show(cost)));
                let Some(at) = stamp else {
                    return Err(fail(
                        Property::Answers,
                        format!("{} admitted without a server time", show(cost)),
                    ));
                };
                if exceeds {
                    return Err(fail(
                        Property::Exceeds,
                        format!("{} admitted although it is above a capacity", show(cost)),
                    ));
                }
                if let Some(p) = pending {
                    if at < p.instant() {
                        return Err(fail(
                            Property::ExactWait,
                            format!(
                                "{} admitted at server time {} ns, {} ns before the instant its \
                                 denial named",
                                show(cost),
                                at,
                                p.instant() - at
                            ),
                        ));
                    }
                }
                if let Some(slots) = self.subject.slots() {
                    let in_flight = self
                        .held
                        .iter()
                        .filter(|p| p.charged().requests > 0)
                        .count();
                    if cost.requests > 0 && in_flight as u64 >= slots {
                        return Err(fail(
                            Property::Slots,
                            format!("admitted with all {slots} slots in flight"),
                        ));
                    }
                }
                let at = at.max(self.latest());
                self.charges.push(Charge::Admit { at, cost });
                self.tally.admitted += 1;
                if hold {
                    self.held.push(permit);
                }
                self.pending = None;
                Ok(true)
            }
            Err(denial) => {
                self.tally.refused += 1;
                if let Denial::Wait { dimension, .. } = &denial {
                    self.tally.refused_on(*dimension, 1);
                }
                self.note.push(format!("refused: {denial}"));
                let after = self.stats().await?;
                if let Some(d) = lower(&before, &after) {
                    return Err(fail(
                        Property::AllOrNothing,
                        format!("refusing {} ({denial}) lowered {d}", show(cost)),
                    ));
                }
                self.refused(cost, &denial, &before, stamp, exceeds, pending)?;
                Ok(false)
            }
        }
    }

    fn refused(
        &mut self,
        cost: Cost,
        denial: &Denial,
        before: &[DimensionUsage],
        stamp: Option<Nanos>,
        exceeds: bool,
        pending: Option<Pending>,
    ) -> Result<(), Failure> {
        match denial {
            Denial::Unavailable { reason } => Err(fail(
                Property::Answers,
                format!("try_acquire unavailable: {reason}"),
            )),
            Denial::Queued { .. } | Denial::Paused { .. } => Ok(()),
            Denial::Exceeds { dimension, .. } => {
                match self.plan.dims.iter().find(|d| d.limit.kind == *dimension) {
                    Some(d) if d.limit.kind.cost_of(cost) > d.capacity => Ok(()),
                    _ => Err(fail(
                        Property::Exceeds,
                        format!(
                            "{} refused as Exceeds on {dimension} but it fits every capacity",
                            show(cost)
                        ),
                    )),
                }
            }
            Denial::Saturated { .. } => Ok(()),
            Denial::Wait {
                dimension,
                retry_after,
            } => {
                if exceeds {
                    return Err(fail(
                        Property::Exceeds,
                        format!("{} is above a capacity but was told to wait", show(cost)),
                    ));
                }
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
                let wait = ns(*retry_after);
                let Some(at) = stamp else {
                    return Err(fail(
                        Property::Answers,
                        format!("{} told to wait without a server time", show(cost)),
                    ));
                };
                if wait == 0 {
                    return Err(fail(
                        Property::ExactWait,
                        format!("{} refused with a zero wait", show(cost)),
                    ));
                }
                if let Some(p) = pending {
                    if at >= p.instant() {
                        return Err(fail(
                            Property::ExactWait,
                            format!(
                                "{} refused at server time {at} ns, {} ns after the instant its \
                                 denial named",
                                show(cost),
                                at - p.instant()
                            ),
                        ));
                    }
                    if at + wait != p.instant() {
                        return Err(fail(
                            Property::ExactWait,
                            format!(
                                "{} told at server time {at} ns to wait until {} ns, though told \
                                 to wait until {} ns with nothing admitted since",
                                show(cost),
                                at + wait,
                                p.instant()
                            ),
                        ));
                    }
                }
                self.pending = Some(Pending { at, wait, cost });
                Ok(())
            }
        }
    }

    async fn reconcile(&mut self, which: usize, delta: i64) -> Result<(), Failure> {
        if self.held.is_empty() {
            return Ok(());
        }
        let permit = self.held.remove(which % self.held.len());
        let charged = permit.charged();
        let actual = actual_after(charged, delta);
        let refund =
            self.subject
                .accounting
                .reconcile_units(self.subject.charge_at, charged, actual);
        // The refund happened after the last server time seen: a lower bound of its time.
        let at = self.latest();
        self.limiter
            .record_usage(permit, actual, &ResponseMeta::default())
            .await
            .map_err(|e| fail(Property::Answers, format!("record_usage failed: {e}")))?;
        self.tally.reconciled += 1;
        for unit in Unit::ALL.into_iter().filter(|u| u.is_tokens()) {
            let r = refund.of(unit);
            if r == 0 {
                continue;
            }
            self.note.push(format!("{r:+} {unit:?} reconciled"));
            self.pending = None;
            if r > 0 {
                self.charges.push(Charge::Refund {
                    at,
                    unit,
                    amount: r.unsigned_abs(),
                });
            }
        }
        Ok(())
    }

    fn check_bound(&self) -> Result<(), Failure> {
        let signed = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        for d in &self.plan.dims {
            let trace: Vec<(Nanos, i64)> = self
                .charges
                .iter()
                .filter_map(|c| match *c {
                    Charge::Admit { at, cost } => Some((at, signed(d.limit.kind.cost_of(cost)))),
                    Charge::Refund { at, unit, amount } if unit == d.unit => {
                        Some((at, -signed(amount)))
                    }
                    Charge::Refund { .. } => None,
                })
                .collect();
            if let Some(v) = invariants::check_charges(self.subject.strategy, &d.limit, &trace) {
                return Err(fail(Property::Bound, format!("{}: {v}", d.limit.kind)));
            }
        }
        Ok(())
    }
}

/// Steps of a failing trace's transcript that a counterexample keeps (the last ones).
const TAIL: usize = 24;

/// The last [`TAIL`] lines of `transcript`, after a line saying how many came before.
fn tail(mut transcript: Vec<String>) -> Vec<String> {
    let cut = transcript.len().saturating_sub(TAIL);
    if cut == 0 {
        return transcript;
    }
    let mut out = vec![format!(
        "… {cut} earlier steps (replay the trace seed to see them)"
    )];
    out.extend(transcript.drain(cut..));
    out
}

/// The first dimension whose remaining is lower after than before, described.
fn lower(before: &[DimensionUsage], after: &[DimensionUsage]) -> Option<String> {
    before.iter().find_map(|b| {
        let a = after.iter().find(|a| a.dimension == b.dimension);
        match a {
            Some(a) if a.remaining >= b.remaining => None,
            _ => differs(std::slice::from_ref(b), after),
        }
    })
}
