//! Traces as data: the steps ([`Op`]) the conformance runner plays, and the adversarial
//! generator that strings them into episodes.
//!
//! Steps are relative (move the clock *by* so much, retry at *the last denial's* instant
//! plus so much), so a trace keeps its meaning when the shrinker removes steps from it.
//!
//! Episodes, each a few steps, chosen at random:
//! - **burst**: the same cost again and again at one instant until refused;
//! - **saturate**: from wherever the key stands, the same cost retried 1 ns before and then
//!   exactly at each denial's instant — a refill or wait that is off by any fraction
//!   shows within a few admissions (the interval from the burst's start then admits more
//!   than `burst + rate·t` as soon as the excess exceeds the 1 ns rounding of each wait);
//! - **idle then burst**: half a window to three windows of nothing, then a burst;
//! - **jitter**: costs at random gaps up to twice their pace;
//! - **reconcile**: refunds and extra charges of held permits, some admitted more than a
//!   window ago; responses reporting what the server has left (none, a little, more than
//!   the capacity) and now and then a retry-after;
//! - **backwards**: the clock set back up to two windows, retries (exact waits include the
//!   lag), then forward again;
//! - **queue**: a denial, then an `acquire` that must wait exactly that long; tries while
//!   it waits; sometimes more waiters, some of them cancelled;
//! - **workload**: the caller's own request costs at random gaps around twice the pace.
//!
//! Costs are chosen so that each dimension in turn is the one that refuses: near a token
//! dimension's capacity (all of it, all but one, just over a half or a third), or few
//! tokens per request so that a request dimension binds; now and then above a capacity.
//! When input- or output-token dimensions are configured, costs carry their split: near
//! the focused part's capacity with a small other part, so input, output and total each
//! get their turn to refuse; reconciliations then move both parts.

use std::fmt;

use rand::rngs::SmallRng;
use rand::Rng;

use crate::clock::Nanos;

use super::super::config::{Limit, Unit};
use super::super::Cost;
use super::{ns, Subject};

/// One step of a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Move the clock forward by this many ns.
    Advance(Nanos),
    /// Set the clock back by this many ns (never before the trace's start).
    Back(Nanos),
    /// Move the clock to the instant the last `Wait` denial named, plus this many ns
    /// (−1: one nanosecond early). Nothing when no denial is outstanding.
    AtWait(i64),
    /// `try_acquire(cost)`; `hold` keeps the permit for a later [`Op::Record`].
    Try {
        /// The estimate.
        cost: Cost,
        /// Keep the permit (else it is dropped at once, keeping the charge).
        hold: bool,
    },
    /// `try_acquire(cost)` at one instant until refused, at most `max` times.
    Burst {
        /// The estimate.
        cost: Cost,
        /// Most admissions.
        max: u32,
    },
    /// `record_usage` of held permit number `permit` (modulo how many are held, oldest
    /// first) with actual tokens = estimate + `delta` (not below 0); with a known split,
    /// `delta / 2` goes to the input part and the rest to the output part.
    Record {
        /// Which held permit.
        permit: usize,
        /// Actual minus estimated tokens: negative refunds, positive charges extra.
        delta: i64,
    },
    /// `acquire(cost)`, polled once now and after every later step.
    Enqueue {
        /// The estimate.
        cost: Cost,
    },
    /// Drops (cancels) queued waiter number `waiter` (modulo how many wait).
    Cancel {
        /// Which waiter, oldest first.
        waiter: usize,
    },
    /// `record_usage` of held permit number `permit` (actual = estimate) with a response
    /// that reports `remaining` requests and tokens (and, when its split is known, input and
    /// output tokens) left and, when not zero, a retry-after of `retry_after` ns.
    Report {
        /// Which held permit.
        permit: usize,
        /// What the server says is left, in requests and in tokens.
        remaining: Cost,
        /// The server's retry-after in ns; 0 for none.
        retry_after: Nanos,
    },
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cost = |c: &Cost| show(*c);
        match self {
            Self::Advance(d) => write!(f, "advance {d} ns"),
            Self::Back(d) => write!(f, "clock back {d} ns"),
            Self::AtWait(d) => write!(f, "to the denial's instant {d:+} ns"),
            Self::Try { cost: c, hold } => {
                write!(
                    f,
                    "try_acquire {}{}",
                    cost(c),
                    if *hold { " (held)" } else { "" }
                )
            }
            Self::Burst { cost: c, max } => write!(f, "burst of {} (at most {max})", cost(c)),
            Self::Record { permit, delta } => {
                write!(
                    f,
                    "record_usage of held permit #{permit}, actual = estimate {delta:+} tokens"
                )
            }
            Self::Enqueue { cost: c } => write!(f, "acquire {} (queued)", cost(c)),
            Self::Cancel { waiter } => write!(f, "cancel waiter #{waiter}"),
            Self::Report {
                permit,
                remaining,
                retry_after,
            } => {
                write!(
                    f,
                    "record_usage of held permit #{permit}, the server reporting {} requests and \
                     {} tokens left",
                    remaining.requests, remaining.tokens
                )?;
                if let (Some(i), Some(o)) = (remaining.input_tokens, remaining.output_tokens) {
                    write!(f, " ({i} input, {o} output)")?;
                }
                if *retry_after > 0 {
                    write!(f, " and a retry-after of {retry_after} ns")?;
                }
                Ok(())
            }
        }
    }
}

impl Op {
    /// Simpler variants of this step, for the shrinker (smaller moves, costs, counts).
    pub(super) fn simpler(&self) -> Vec<Op> {
        let mut out = Vec::new();
        match *self {
            Self::Advance(d) if d > 1 => out.extend([Self::Advance(d / 2), Self::Advance(d - 1)]),
            Self::Back(d) if d > 1 => out.push(Self::Back(d / 2)),
            Self::AtWait(d) if d != 0 => out.push(Self::AtWait(0)),
            Self::Try { cost, hold } => {
                if hold {
                    out.push(Self::Try { cost, hold: false });
                }
                out.extend(smaller(cost).map(|cost| Self::Try { cost, hold }));
            }
            Self::Burst { cost, max } => {
                if max > 1 {
                    out.extend([
                        Self::Burst { cost, max: max / 2 },
                        Self::Burst { cost, max: max - 1 },
                    ]);
                }
                out.extend(smaller(cost).map(|cost| Self::Burst { cost, max }));
            }
            Self::Record { permit, delta } => {
                if permit > 0 {
                    out.push(Self::Record { permit: 0, delta });
                }
                if delta.unsigned_abs() > 1 {
                    out.push(Self::Record {
                        permit,
                        delta: delta / 2,
                    });
                }
            }
            Self::Enqueue { cost } => out.extend(smaller(cost).map(|cost| Self::Enqueue { cost })),
            Self::Cancel { waiter } if waiter > 0 => out.push(Self::Cancel { waiter: 0 }),
            Self::Report {
                permit,
                remaining,
                retry_after,
            } => {
                if permit > 0 {
                    out.push(Self::Report {
                        permit: 0,
                        remaining,
                        retry_after,
                    });
                }
                if retry_after > 0 {
                    out.push(Self::Report {
                        permit,
                        remaining,
                        retry_after: retry_after / 2,
                    });
                }
            }
            _ => {}
        }
        out
    }
}

/// A cost as a transcript shows it: requests and tokens, and the split when known.
pub(super) fn show(c: Cost) -> String {
    match (c.input_tokens, c.output_tokens) {
        (Some(i), Some(o)) => format!(
            "{{requests {}, tokens {} (input {i}, output {o})}}",
            c.requests, c.tokens
        ),
        _ => format!("{{requests {}, tokens {}}}", c.requests, c.tokens),
    }
}

/// The actual usage [`Op::Record`] reports for a permit that `charged`: `delta` more
/// tokens (not below 0). With a known split, the input part moves by `delta / 2` and the
/// output part by the rest, and the total is their sum.
pub(super) fn actual_after(charged: Cost, delta: i64) -> Cost {
    match (charged.input_tokens, charged.output_tokens) {
        (Some(i), Some(o)) => {
            let half = delta / 2;
            Cost {
                requests: charged.requests,
                ..Cost::ZERO
            }
            .with_split(
                i.saturating_add_signed(half),
                o.saturating_add_signed(delta - half),
            )
        }
        _ => Cost {
            requests: charged.requests,
            tokens: charged.tokens.saturating_add_signed(delta),
            ..Cost::ZERO
        },
    }
}

/// Smaller costs than `c`: half the tokens, one token less, one request.
fn smaller(c: Cost) -> impl Iterator<Item = Cost> {
    let mut v = Vec::new();
    if let (Some(i), Some(o)) = (c.input_tokens, c.output_tokens) {
        if c.tokens > 0 {
            v.push(c.with_split(i / 2, o / 2));
            v.push(if o > 0 {
                c.with_split(i, o - 1)
            } else {
                c.with_split(i - 1, o)
            });
        }
    } else if c.tokens > 0 {
        v.push(Cost {
            tokens: c.tokens / 2,
            ..c
        });
        v.push(Cost {
            tokens: c.tokens - 1,
            ..c
        });
    }
    if c.requests > 1 {
        v.push(Cost { requests: 1, ..c });
    }
    v.into_iter()
}

/// One rate dimension, as the generator and the runner see it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Dim {
    /// The limit.
    pub(super) limit: Limit,
    /// What it counts.
    pub(super) unit: Unit,
    /// The largest cost it ever admits.
    pub(super) capacity: u64,
    /// Its window in ns (≥ 1).
    pub(super) window: Nanos,
}

/// What the generator knows of a subject.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    /// The rate dimensions, in the subject's order.
    pub(super) dims: Vec<Dim>,
    /// Traces start at a multiple of this (every window divides it, when that fits), so a
    /// trace replays the same wherever it starts.
    pub(super) period: Nanos,
    /// The longest window.
    pub(super) max_window: Nanos,
    /// Costs for workload episodes.
    workload: Vec<Cost>,
    /// Whether input- or output-token dimensions are configured (costs then carry a split).
    split: bool,
}

fn gcd(a: u128, b: u128) -> u128 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl Plan {
    /// The plan of `subject`, with `workload` costs for workload episodes.
    pub(super) fn new(subject: &Subject, workload: &[Cost]) -> Self {
        let dims: Vec<Dim> = subject
            .rates()
            .map(|l| Dim {
                limit: *l,
                unit: l.kind.unit(),
                capacity: subject.capacity(l),
                window: l.kind.window().map_or(1, ns).max(1),
            })
            .collect();
        let max_window = dims.iter().map(|d| d.window).max().unwrap_or(1);
        // The least common multiple of the windows, when it stays below ~11 days.
        let lcm = dims.iter().try_fold(1u128, |acc, d| {
            let w = u128::from(d.window);
            let l = acc / gcd(acc, w) * w;
            (l <= 1_000_000_000_000_000).then_some(l)
        });
        let period = lcm.map_or(max_window, |l| l as Nanos);
        let split = dims
            .iter()
            .any(|d| matches!(d.unit, Unit::InputTokens | Unit::OutputTokens));
        Self {
            dims,
            period,
            max_window,
            workload: workload.to_vec(),
            split,
        }
    }

    /// The time `cost` takes to refill on its slowest dimension, in ns (≥ 1).
    pub(super) fn pace(&self, cost: Cost) -> Nanos {
        self.dims
            .iter()
            .map(|d| {
                let c = u128::from(d.limit.kind.cost_of(cost).max(1));
                let p = c * u128::from(d.window) / u128::from(d.limit.amount.max(1));
                Nanos::try_from(p).unwrap_or(Nanos::MAX)
            })
            .max()
            .unwrap_or(1)
            .max(1)
    }

    /// Whether `cost` is above some dimension's capacity.
    pub(super) fn exceeds(&self, cost: Cost) -> bool {
        self.dims
            .iter()
            .any(|d| d.limit.kind.cost_of(cost) > d.capacity)
    }

    /// A cost chosen so that dimension `focus` is the one that refuses (now and then one
    /// above its capacity).
    fn cost_for(&self, rng: &mut SmallRng, focus: usize) -> Cost {
        let d = self.dims[focus];
        let cap = d.capacity;
        let over = rng.random_bool(0.03);
        match d.unit {
            Unit::Tokens | Unit::InputTokens | Unit::OutputTokens if self.split => {
                let n = self.near(rng, cap, over);
                // The other part small: a quarter of the smallest capacity counting it.
                let share = |unit: Unit| {
                    self.dims
                        .iter()
                        .filter(|t| t.unit == unit)
                        .map(|t| t.capacity / 4)
                        .min()
                        .unwrap_or(n / 4)
                };
                let (input, output) = match d.unit {
                    Unit::InputTokens => (n, rng.random_range(0..=share(Unit::OutputTokens))),
                    Unit::OutputTokens => (rng.random_range(0..=share(Unit::InputTokens)), n),
                    _ => {
                        let input = rng.random_range(0..=n);
                        (input, n - input)
                    }
                };
                Cost {
                    requests: u64::from(rng.random_bool(0.9)),
                    ..Cost::ZERO
                }
                .with_split(input, output)
            }
            Unit::Tokens | Unit::InputTokens | Unit::OutputTokens => {
                let tokens = if over {
                    cap.saturating_add(1)
                } else {
                    match rng.random_range(0..8) {
                        0 | 1 => cap,
                        2 => cap.saturating_sub(1).max(1),
                        3 => cap / 2 + 1,
                        4 => cap / 3 + 1,
                        5 => (cap / 10).max(1),
                        _ => rng.random_range(1..=cap),
                    }
                };
                // Few requests per token: the request dimensions keep room.
                Cost {
                    requests: u64::from(rng.random_bool(0.9)),
                    tokens,
                    ..Cost::ZERO
                }
            }
            Unit::Requests => {
                let requests = if over {
                    cap.saturating_add(1)
                } else {
                    match rng.random_range(0..10) {
                        0 => cap,
                        1 => cap / 2 + 1,
                        2 => rng.random_range(1..=cap),
                        _ => 1,
                    }
                };
                // Few tokens per request: the token dimensions keep room.
                let share = self
                    .dims
                    .iter()
                    .filter(|t| t.unit.is_tokens())
                    .map(|t| t.capacity / cap.max(1) / 2)
                    .min()
                    .unwrap_or(0);
                if self.split {
                    let input = rng.random_range(0..=share / 2);
                    let output = rng.random_range(0..=share / 2);
                    return Cost {
                        requests,
                        ..Cost::ZERO
                    }
                    .with_split(input, output);
                }
                Cost {
                    requests,
                    tokens: rng.random_range(0..=share),
                    ..Cost::ZERO
                }
            }
        }
    }

    /// A token amount near `cap`: all of it, all but one, just over a half or a third, a
    /// tenth, any; one above it when `over`.
    fn near(&self, rng: &mut SmallRng, cap: u64, over: bool) -> u64 {
        if over {
            return cap.saturating_add(1);
        }
        match rng.random_range(0..8) {
            0 | 1 => cap,
            2 => cap.saturating_sub(1).max(1),
            3 => cap / 2 + 1,
            4 => cap / 3 + 1,
            5 => (cap / 10).max(1),
            _ => rng.random_range(1..=cap),
        }
    }

    /// A cost for the next episode: a workload cost now and then, else one aimed at a
    /// random dimension.
    fn cost(&self, rng: &mut SmallRng) -> Cost {
        if !self.workload.is_empty() && rng.random_bool(0.3) {
            return self.workload[rng.random_range(0..self.workload.len())];
        }
        let focus = rng.random_range(0..self.dims.len());
        self.cost_for(rng, focus)
    }

    /// As many admissions of `cost` as can empty the fullest dimension, at most 2 000.
    fn burst_len(&self, cost: Cost) -> u32 {
        let n = self
            .dims
            .iter()
            .map(|d| match d.limit.kind.cost_of(cost) {
                0 => 1,
                c => d.capacity / c + 1,
            })
            .min()
            .unwrap_or(1);
        u32::try_from(n).unwrap_or(u32::MAX).clamp(1, 2_000)
    }

    /// A trace of `episodes` episodes drawn from `rng`.
    pub(super) fn generate(&self, rng: &mut SmallRng, episodes: u32) -> Vec<Op> {
        let mut ops = Vec::new();
        for _ in 0..episodes {
            match rng.random_range(0..100) {
                0..12 => self.burst(rng, &mut ops),
                12..40 => self.saturate(rng, &mut ops),
                40..48 => {
                    let w = self.max_window;
                    ops.push(Op::Advance(rng.random_range(w / 2..=w.saturating_mul(3))));
                    self.burst(rng, &mut ops);
                }
                48..58 => self.jitter(rng, &mut ops),
                58..70 => self.reconcile(rng, &mut ops),
                70..78 => self.backwards(rng, &mut ops),
                78..92 => self.queue(rng, &mut ops),
                _ => self.workload(rng, &mut ops),
            }
        }
        ops
    }

    fn burst(&self, rng: &mut SmallRng, ops: &mut Vec<Op>) {
        let cost = self.cost(rng);
        ops.push(Op::Burst {
            cost,
            max: self.burst_len(cost),
        });
    }

    fn saturate(&self, rng: &mut SmallRng, ops: &mut Vec<Op>) {
        let cost = self.cost(rng);
        if rng.random_bool(0.5) {
            ops.push(Op::Burst {
                cost,
                max: self.burst_len(cost),
            });
        }
        for _ in 0..rng.random_range(3..=10) {
            ops.extend([
                Op::Try {
                    cost,
                    hold: rng.random_bool(0.2),
                },
                Op::AtWait(-1),
                Op::Try { cost, hold: false },
                Op::AtWait(0),
                Op::Try {
                    cost,
                    hold: rng.random_bool(0.2),
                },
            ]);
        }
    }

    fn jitter(&self, rng: &mut SmallRng, ops: &mut Vec<Op>) {
        for _ in 0..rng.random_range(3..=12) {
            let cost = self.cost(rng);
            ops.push(Op::Advance(
                rng.random_range(0..=self.pace(cost).saturating_mul(2)),
            ));
            ops.push(Op::Try {
                cost,
                hold: rng.random_bool(0.3),
            });
        }
    }

    fn reconcile(&self, rng: &mut SmallRng, ops: &mut Vec<Op>) {
        if rng.random_bool(0.3) {
            // Past the window of the permits held: their refunds find later admissions.
            ops.push(Op::Advance(self.max_window.saturating_add(1)));
        }
        let cap = self
            .dims
            .iter()
            .filter(|d| d.unit.is_tokens())
            .map(|d| d.capacity)
            .max()
            .unwrap_or(1);
        let cap = i64::try_from(cap).unwrap_or(i64::MAX).max(2);
        for _ in 0..rng.random_range(1..=4) {
            let delta = match rng.random_range(0..5) {
                0 => i64::MIN / 2, // actual 0: all of the estimate back
                1 => -rng.random_range(1..=cap / 2),
                2 => rng.random_range(1..=cap / 2),
                3 => cap,
                _ => rng.random_range(-3..=3),
            };
            ops.push(Op::Record {
                permit: rng.random_range(0..8),
                delta,
            });
            if rng.random_bool(0.3) {
                // What a response says: a unit's remaining (none, a little, half, more than
                // the capacity), sometimes a retry-after.
                let left = |unit: Unit, rng: &mut SmallRng| {
                    let cap = self
                        .dims
                        .iter()
                        .filter(|d| d.unit == unit)
                        .map(|d| d.capacity)
                        .max()
                        .unwrap_or(1);
                    match rng.random_range(0..4) {
                        0 => 0,
                        1 => rng.random_range(0..=cap.min(3)),
                        2 => cap / 2,
                        _ => cap.saturating_add(5),
                    }
                };
                let mut remaining = Cost {
                    requests: left(Unit::Requests, rng),
                    tokens: left(Unit::Tokens, rng),
                    ..Cost::ZERO
                };
                if self.split {
                    remaining.input_tokens = Some(left(Unit::InputTokens, rng));
                    remaining.output_tokens = Some(left(Unit::OutputTokens, rng));
                }
                ops.push(Op::Report {
                    permit: rng.random_range(0..8),
                    remaining,
                    retry_after: if rng.random_bool(0.3) {
                        rng.random_range(1..=self.max_window)
                    } else {
                        0
                    },
                });
            }
            // Spend what the reconciliation freed or test what it took.
            let cost = self.cost(rng);
            ops.extend([
                Op::Try { cost, hold: false },
                Op::AtWait(0),
                Op::Try { cost, hold: true },
            ]);
        }
    }

    fn backwards(&self, rng: &mut SmallRng, ops: &mut Vec<Op>) {
        let back = rng.random_range(1..=self.max_window.saturating_mul(2));
        let cost = self.cost(rng);
        ops.extend([
            Op::Back(back),
            Op::Try { cost, hold: false },
            Op::AtWait(-1),
            Op::Try { cost, hold: false },
            Op::AtWait(0),
            Op::Try { cost, hold: false },
            Op::Advance(back.saturating_add(rng.random_range(0..=self.pace(cost)))),
        ]);
    }

    fn queue(&self, rng: &mut SmallRng, ops: &mut Vec<Op>) {
        let cost = self.cost(rng);
        if rng.random_bool(0.5) {
            ops.push(Op::Burst {
                cost,
                max: self.burst_len(cost),
            });
        }
        ops.extend([
            Op::Try { cost, hold: false },
            Op::Enqueue { cost },
            Op::Try {
                cost: self.cost(rng),
                hold: false,
            },
        ]);
        if rng.random_bool(0.4) {
            ops.extend([
                Op::Enqueue {
                    cost: self.cost(rng),
                },
                Op::Cancel {
                    waiter: rng.random_range(0..2),
                },
                Op::Try { cost, hold: false },
            ]);
        }
        ops.extend([Op::AtWait(-1), Op::AtWait(0), Op::Try { cost, hold: false }]);
        if rng.random_bool(0.3) {
            ops.push(Op::Cancel { waiter: 0 });
        }
    }

    fn workload(&self, rng: &mut SmallRng, ops: &mut Vec<Op>) {
        for _ in 0..rng.random_range(5..=20) {
            let cost = match self.workload.len() {
                0 => self.cost(rng),
                n => self.workload[rng.random_range(0..n)],
            };
            if !rng.random_bool(0.1) {
                // Exponential gaps at twice the pace.
                let mean = self.pace(cost) as f64 / 2.0;
                let gap = -mean * (1.0 - rng.random::<f64>()).ln();
                ops.push(Op::Advance(gap.min(1e15) as Nanos));
            }
            ops.push(Op::Try {
                cost,
                hold: rng.random_bool(0.2),
            });
        }
    }
}
