//! Invariant checkers for admission traces: the public, provable side of the strategies.
//!
//! Each strategy documents a bound on what it admits; these functions take a resolved
//! [`Limit`] and a trace of admissions `(time in ns, cost in the dimension's unit)` and
//! return the first [`Violation`] of that bound, or `None`. The property tests of this
//! crate call them, `hub verify` calls them on recorded runs, and users can call them in
//! their own tests on whatever their limiter admitted.
//!
//! | strategy | checker | bound |
//! |---|---|---|
//! | token bucket, GCRA | [`arrival_curve`] | every closed interval of length `t` admits ≤ `burst + amount·t/W` |
//! | sliding log | [`sliding_window`] | every window `[s, s+W)` admits ≤ `amount` |
//! | sliding counter | [`counter_overshoot`] | aligned windows ≤ `amount`; `[s, s+W)` ≤ `amount + ⌊P·(s mod W − 1)/W⌋` |
//! | leaky bucket | [`pacing`] | `Σ c_k·T ≤ t_j − t_i + tolerance` over the admissions `i ≤ k < j` |
//!
//! Each [`Invariant`] states its bound in one sentence ([`Invariant::statement`]), and
//! every [`Violation`] message repeats it. [`check_charges`] takes refunds too (negative
//! charges at the time they were made).
//!
//! These check a trace; the traces that break limiters come from the conformance kit
//! ([`conformance`](super::conformance)), which drives a whole [`RateLimiter`](super::RateLimiter)
//! through adversarial traces (saturation at exact waits, weighted costs near capacity,
//! each dimension in turn refusing, refunds, a clock going backwards, queued waiters),
//! checks what it admitted with these functions, and shrinks a failure to a minimal
//! counterexample. `hub verify` runs it on a scenario's limiters.
//!
//! A limit's unit does not matter to the checkers: the trace is in the limit's own unit —
//! requests, total tokens, or for an input- or output-token limit (`itpm`, `otpm`, …) each
//! admission's input or output part ([`RateLimitType::cost_of`](super::RateLimitType::cost_of)).
//!
//! All checks run in O(n) (O(n log n) for the counter, or when the trace is not sorted by
//! time) in exact integer arithmetic, exact while `Σ cost · window_ns` and
//! `amount · span_ns` stay below 2^126 (they saturate beyond, never panic).
//!
//! ```
//! use std::time::Duration;
//! use connector_hub::limiter::config::{Limit, RateLimitType, Strategy};
//! use connector_hub::limiter::invariants::{self, Invariant};
//!
//! let limit = Limit {
//!     kind: RateLimitType::RequestsPer(Duration::from_secs(10)),
//!     amount: 10,
//!     burst: 10,
//! };
//! // 10 at t = 0 and 1 more a second later: within burst + rate·t = 10 + 1.
//! let trace = [(0, 10), (1_000_000_000, 1)];
//! assert_eq!(invariants::check(Strategy::TokenBucket, &limit, &trace), None);
//! // ...but 11 in one 10-s window is too many for an exact sliding window.
//! let v = invariants::check(Strategy::SlidingLog, &limit, &trace).unwrap();
//! assert_eq!(v.invariant, Invariant::SlidingWindow);
//! assert_eq!((v.admitted, v.bound), (11, 10));
//! ```

use std::borrow::Cow;
use std::fmt;

use crate::clock::Nanos;

use super::config::{Limit, Strategy};
use super::leaky_bucket::PACING_TOLERANCE;
use super::params::Params;

/// Which bound a trace broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Invariant {
    /// Token bucket / GCRA: an interval of length `t` admitted more than `burst + r·t`.
    ArrivalCurve,
    /// Sliding log: a window of length `W` admitted more than `amount`.
    SlidingWindow,
    /// Leaky bucket: admissions followed each other faster than their cost's pace.
    Pacing,
    /// Sliding counter: a window admitted more than the documented overshoot allows.
    CounterOvershoot,
}

impl Invariant {
    /// The bound in one sentence (repeated in every [`Violation`] message).
    pub fn statement(self) -> &'static str {
        match self {
            Self::ArrivalCurve => {
                "every closed interval [t_i, t_j] admits at most burst + amount·(t_j − t_i)/W units"
            }
            Self::SlidingWindow => "every half-open window [s, s + W) admits at most amount units",
            Self::Pacing => {
                "the units admitted from one admission up to (not including) a later one took their \
                 pace: Σ c·W/amount ≤ the time between them + the tolerance"
            }
            Self::CounterOvershoot => {
                "every aligned window admits at most amount units and every window [s, s + W) at \
                 most amount + ⌊P·(s mod W − 1)/W⌋ (P: what the aligned window holding s admitted)"
            }
        }
    }
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ArrivalCurve => "arrival curve",
            Self::SlidingWindow => "sliding window",
            Self::Pacing => "pacing",
            Self::CounterOvershoot => "sliding-counter overshoot bound",
        })
    }
}

/// The first place a trace broke its bound: the admissions from `from` to `to` (both
/// inclusive, in ns) cost `admitted` units where at most `bound` were allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Violation {
    /// The bound that was broken.
    pub invariant: Invariant,
    /// Time of the first admission counted, in ns.
    pub from: Nanos,
    /// Time of the last admission counted, in ns ("first" violation = smallest `to`).
    pub to: Nanos,
    /// For window bounds, the start `s` of the offending window `[s, s + W)`, in ns.
    pub window_start: Option<Nanos>,
    /// Units admitted in `[from, to]`.
    pub admitted: u128,
    /// The most the bound allows there, in units (rounded down: `admitted > bound`).
    pub bound: u128,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} violated: {} units admitted from {} ns to {} ns",
            self.invariant, self.admitted, self.from, self.to
        )?;
        if let Some(s) = self.window_start {
            write!(f, " (window starting at {s} ns)")?;
        }
        write!(
            f,
            ", at most {} allowed (bound: {})",
            self.bound,
            self.invariant.statement()
        )
    }
}

/// Checks `trace` against the bound `strategy` documents for `limit`: [`arrival_curve`]
/// for the token bucket and GCRA, [`sliding_window`] for the sliding log,
/// [`counter_overshoot`] for the sliding counter, [`pacing`] (with [`PACING_TOLERANCE`])
/// for the leaky bucket. `trace` is `(admission time in ns, cost in units)`, in any order.
pub fn check(strategy: Strategy, limit: &Limit, trace: &[(Nanos, u64)]) -> Option<Violation> {
    check_signed(strategy, limit, &widen(trace))
}

/// [`check`] over *charges*: admissions (positive costs) and refunds (negative costs,
/// stamped when the refund was made), in the order they happened. A refund counts against
/// the bound from its own time on, as if it were an admission of a negative cost: giving
/// back `r` units at `t` may let through at most `r` more units, and none before `t`.
/// (An extra charge is left out: it only makes a limiter stricter.) Sorted stably by time
/// first, so charges at one instant keep their order.
pub fn check_charges(
    strategy: Strategy,
    limit: &Limit,
    charges: &[(Nanos, i64)],
) -> Option<Violation> {
    let wide: Vec<(Nanos, i128)> = charges.iter().map(|&(t, c)| (t, i128::from(c))).collect();
    check_signed(strategy, limit, &wide)
}

fn check_signed(strategy: Strategy, limit: &Limit, trace: &[(Nanos, i128)]) -> Option<Violation> {
    match strategy {
        Strategy::TokenBucket | Strategy::Gcra => arrival_curve_in(limit, trace),
        Strategy::SlidingLog => sliding_window_in(limit, trace),
        Strategy::SlidingCounter => counter_overshoot_in(limit, trace),
        Strategy::LeakyBucket => pacing_in(limit, trace, PACING_TOLERANCE),
    }
}

/// The trace with signed costs.
fn widen(trace: &[(Nanos, u64)]) -> Vec<(Nanos, i128)> {
    trace.iter().map(|&(t, c)| (t, i128::from(c))).collect()
}

/// A net count as the unsigned `admitted` of a [`Violation`] (positive wherever one is
/// reported: it exceeds a bound ≥ 0).
fn units(n: i128) -> u128 {
    u128::try_from(n).unwrap_or(0)
}

/// The token bucket's (and GCRA's) arrival curve: every closed interval `[t_i, t_j]`
/// admits at most `burst + amount · (t_j − t_i) / W` units. O(n) for a sorted trace: the
/// largest excess over all intervals ending at `j` is a running minimum.
pub fn arrival_curve(limit: &Limit, trace: &[(Nanos, u64)]) -> Option<Violation> {
    arrival_curve_in(limit, &widen(trace))
}

fn arrival_curve_in(limit: &Limit, trace: &[(Nanos, i128)]) -> Option<Violation> {
    let p = Params::of(limit);
    let trace = sorted(trace);
    let (w, a) = (i128::from(p.window), i128::from(p.amount));
    let allowed = i128::from(p.burst).saturating_mul(w);
    // excess(i, j) = S(i..=j)·W − a·(t_j − t_i) = X_j − Y_i, X_j = S(..=j)·W − a·t_j,
    // Y_i = S(..i)·W − a·t_i. Violation iff max over i ≤ j of X_j − Y_i > burst·W.
    let mut before: i128 = 0;
    let mut best: Option<(i128, usize, i128)> = None; // (min Y, its index, S(..i))
    for (j, &(t, c)) in trace.iter().enumerate() {
        let y = before
            .saturating_mul(w)
            .saturating_sub(a.saturating_mul(i128::from(t)));
        let (min, i, s_before_i) = match best {
            Some(b) if b.0 <= y => b,
            _ => (y, j, before),
        };
        best = Some((min, i, s_before_i));
        let after = before.saturating_add(c);
        let x = after
            .saturating_mul(w)
            .saturating_sub(a.saturating_mul(i128::from(t)));
        if x.saturating_sub(min) > allowed {
            let from = trace[i].0;
            return Some(Violation {
                invariant: Invariant::ArrivalCurve,
                from,
                to: t,
                window_start: None,
                admitted: units(after - s_before_i),
                bound: u128::from(p.burst) + rate_bound(&p, t - from),
            });
        }
        before = after;
    }
    None
}

/// The sliding log's exact window: every half-open window `[s, s + W)` admits at most
/// `amount` units. O(n) for a sorted trace (two pointers).
pub fn sliding_window(limit: &Limit, trace: &[(Nanos, u64)]) -> Option<Violation> {
    sliding_window_in(limit, &widen(trace))
}

fn sliding_window_in(limit: &Limit, trace: &[(Nanos, i128)]) -> Option<Violation> {
    let p = Params::of(limit);
    let trace = sorted(trace);
    let mut i = 0;
    let mut sum: i128 = 0;
    for (j, &(t, c)) in trace.iter().enumerate() {
        sum += c;
        while t - trace[i].0 >= p.window {
            sum -= trace[i].1;
            i += 1;
        }
        if sum > i128::from(p.amount) {
            return Some(Violation {
                invariant: Invariant::SlidingWindow,
                from: trace[i].0,
                to: trace[j].0,
                window_start: Some((t + 1).saturating_sub(p.window)),
                admitted: units(sum),
                bound: u128::from(p.amount),
            });
        }
    }
    None
}

/// The leaky bucket's pace: for admissions `i < j`, the units admitted from `i` up to (not
/// including) `j` need `Σ c_k · T ≤ t_j − t_i + tolerance_ns` (`T = W / amount`); said as
/// an interval bound, `[t_i, t_j]` admits at most `c_j + amount·(t_j − t_i + tolerance)/W`.
/// This implies that consecutive admissions are at least `c·T − tolerance` apart. O(n) for
/// a sorted trace.
pub fn pacing(limit: &Limit, trace: &[(Nanos, u64)], tolerance_ns: Nanos) -> Option<Violation> {
    pacing_in(limit, &widen(trace), tolerance_ns)
}

fn pacing_in(limit: &Limit, trace: &[(Nanos, i128)], tolerance_ns: Nanos) -> Option<Violation> {
    let p = Params::of(limit);
    let trace = sorted(trace);
    let (w, a) = (i128::from(p.window), i128::from(p.amount));
    let slack = a.saturating_mul(i128::from(tolerance_ns));
    // need(i, j) = S(i..j)·W − a·(t_j − t_i) = Z_j − Z_i with Z_k = S(..k)·W − a·t_k.
    // Violation iff max over i < j of Z_j − Z_i > a·tolerance.
    let mut before: i128 = 0;
    let mut best: Option<(i128, usize, i128)> = None; // (min Z_i over i < j, i, S(..i))
    for (j, &(t, c)) in trace.iter().enumerate() {
        let z = before
            .saturating_mul(w)
            .saturating_sub(a.saturating_mul(i128::from(t)));
        // Only an admission (not a refund) has to wait for its pace.
        if let Some((min, i, s_before_i)) = best.filter(|_| c >= 0) {
            if z.saturating_sub(min) > slack {
                let from = trace[i].0;
                return Some(Violation {
                    invariant: Invariant::Pacing,
                    from,
                    to: t,
                    window_start: None,
                    admitted: units(before - s_before_i + c),
                    bound: units(c) + rate_bound(&p, (t - from).saturating_add(tolerance_ns)),
                });
            }
        }
        if !matches!(best, Some((min, _, _)) if min <= z) {
            best = Some((z, j, before));
        }
        before = before.saturating_add(c);
    }
    None
}

/// The sliding counter's documented overshoot: every aligned window `[k·W, (k+1)·W)`
/// admits at most `amount`, and every window `[s, s + W)` with `σ = s mod W ≥ 1` admits at
/// most `amount + ⌊P·(σ − 1)/W⌋`, where `P` is what the aligned window containing `s`
/// admitted — so never more than `2·amount − 1`. Windows are aligned at multiples of `W`
/// from time 0, as the counter aligns them. (Over charges with refunds, `P` counts the
/// aligned window's admissions without its refunds.) O(n log n).
pub fn counter_overshoot(limit: &Limit, trace: &[(Nanos, u64)]) -> Option<Violation> {
    counter_overshoot_in(limit, &widen(trace))
}

fn counter_overshoot_in(limit: &Limit, trace: &[(Nanos, i128)]) -> Option<Violation> {
    let p = Params::of(limit);
    let trace = sorted(trace);
    let w = p.window;
    // Prefix sums of the net charges and of the admissions alone.
    let mut prefix = Vec::with_capacity(trace.len() + 1);
    let mut gross = Vec::with_capacity(trace.len() + 1);
    let (mut net_sum, mut gross_sum) = (0i128, 0i128);
    prefix.push(0i128);
    gross.push(0i128);
    for &(_, c) in trace.iter() {
        net_sum += c;
        gross_sum += c.max(0);
        prefix.push(net_sum);
        gross.push(gross_sum);
    }
    let span = |lo: Nanos, hi: Nanos| {
        (
            trace.partition_point(|&(t, _)| t < lo),
            trace.partition_point(|&(t, _)| t < hi),
        )
    };
    // Charges with time in [lo, hi): index range, and their net cost.
    let range = |lo: Nanos, hi: Nanos| {
        let (i, j) = span(lo, hi);
        (i, j, prefix[j] - prefix[i])
    };
    // Only window starts where the count can rise or the bound is lowest matter: aligned
    // starts, one past them, and one past `t_j − W` (see the module docs of the counter).
    let mut starts = Vec::with_capacity(trace.len() * 5);
    for &(t, _) in trace.iter() {
        let k = t / w;
        for m in [k, k.saturating_sub(1)] {
            starts.push(m * w);
            starts.push((m * w).saturating_add(1));
        }
        if let Some(s) = t.saturating_add(1).checked_sub(w) {
            starts.push(s);
        }
    }
    starts.sort_unstable();
    starts.dedup();
    let mut first: Option<Violation> = None;
    for s in starts {
        let (i, j, count) = range(s, s.saturating_add(w));
        if i == j {
            continue;
        }
        let sigma = s % w;
        let bound = if sigma == 0 {
            i128::from(p.amount)
        } else {
            // What the aligned window admitted, refunds aside: the counter takes a refund
            // off the previous window first, so the weight it carries is the gross count.
            let (a, b) = span(s - sigma, (s - sigma).saturating_add(w));
            let held = gross[b] - gross[a];
            i128::from(p.amount) + held.max(0).saturating_mul(i128::from(sigma - 1)) / i128::from(w)
        };
        let to = trace[j - 1].0;
        if count > bound && !matches!(first, Some(f) if f.to <= to) {
            first = Some(Violation {
                invariant: Invariant::CounterOvershoot,
                from: trace[i].0,
                to,
                window_start: Some(s),
                admitted: units(count),
                bound: units(bound),
            });
        }
    }
    first
}

/// `⌊amount · span / W⌋`: what the sustained rate allows in `span` ns.
fn rate_bound(p: &Params, span: Nanos) -> u128 {
    u128::from(p.amount) * u128::from(span) / u128::from(p.window)
}

/// The trace sorted by time (stable: charges at one instant keep their order).
fn sorted<C: Copy>(trace: &[(Nanos, C)]) -> Cow<'_, [(Nanos, C)]> {
    if trace.windows(2).all(|w| w[0].0 <= w[1].0) {
        Cow::Borrowed(trace)
    } else {
        let mut v = trace.to_vec();
        v.sort_by_key(|&(t, _)| t);
        Cow::Owned(v)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::limiter::config::RateLimitType;

    const S: u64 = 1_000_000_000;

    fn limit(amount: u64, burst: u64, window_s: u64) -> Limit {
        Limit {
            kind: RateLimitType::RequestsPer(Duration::from_secs(window_s)),
            amount,
            burst,
        }
    }

    /// The same checks by brute force over every pair / window, to test the fast ones.
    fn brute_arrival(l: &Limit, tr: &[(Nanos, u64)]) -> bool {
        let p = Params::of(l);
        tr.iter().all(|&(ti, _)| {
            tr.iter().filter(|&&(tj, _)| tj >= ti).all(|&(tj, _)| {
                let sum: u128 = tr
                    .iter()
                    .filter(|&&(t, _)| t >= ti && t <= tj)
                    .map(|&(_, c)| u128::from(c))
                    .sum();
                sum <= u128::from(p.burst) + rate_bound(&p, tj - ti)
            })
        })
    }

    #[test]
    fn arrival_curve_finds_the_first_violation() {
        let l = limit(10, 5, 10); // 1 per second, burst 5
        assert_eq!(arrival_curve(&l, &[(0, 5), (S, 1), (2 * S, 1)]), None);
        let v = arrival_curve(&l, &[(0, 5), (S, 1), (S + 1, 1), (2 * S, 1)]).unwrap();
        assert_eq!((v.from, v.to, v.admitted, v.bound), (0, S + 1, 7, 6));
        // Unsorted input is sorted first.
        assert!(arrival_curve(&l, &[(S + 1, 1), (0, 5), (S, 1)]).is_some());
        // A single admission above the burst.
        assert_eq!(arrival_curve(&l, &[(7, 6)]).map(|v| v.bound), Some(5));
    }

    #[test]
    fn arrival_curve_agrees_with_brute_force() {
        let l = limit(3, 2, 1);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..300 {
            let mut trace = Vec::new();
            let mut t = 0;
            for _ in 0..12 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                t += x % 700_000_000;
                trace.push((t, (x >> 40) % 3));
            }
            assert_eq!(
                arrival_curve(&l, &trace).is_none(),
                brute_arrival(&l, &trace)
            );
        }
    }

    #[test]
    fn sliding_window_is_half_open() {
        let l = limit(2, 2, 10);
        assert_eq!(sliding_window(&l, &[(0, 2), (10 * S, 2)]), None);
        let v = sliding_window(&l, &[(0, 2), (10 * S - 1, 1)]).unwrap();
        assert_eq!((v.from, v.to, v.admitted, v.bound), (0, 10 * S - 1, 3, 2));
        assert_eq!(v.window_start, Some(0));
    }

    #[test]
    fn pacing_allows_the_pace_and_the_tolerance_only() {
        let l = limit(10, 10, 10); // T = 1 s
        assert_eq!(pacing(&l, &[(0, 2), (2 * S, 1), (3 * S, 5)], 0), None);
        let v = pacing(&l, &[(0, 2), (2 * S - 1, 1)], 0).unwrap();
        assert_eq!((v.admitted, v.bound), (3, 2));
        assert_eq!(pacing(&l, &[(0, 2), (2 * S - 1, 1)], 1), None);
        // Cumulative: each gap within tolerance, but the drift adds up.
        let drift = [(0, 1), (S - 1, 1), (2 * S - 2, 1)];
        assert_eq!(pacing(&l, &drift[..2], 1), None);
        assert!(pacing(&l, &drift, 1).is_some());
    }

    #[test]
    fn counter_bound_is_reached_but_not_exceeded() {
        let l = limit(10, 10, 10);
        let w = 10 * S;
        // The documented worst case: 10 at the end of window 0, then 1 per second.
        let mut trace = vec![(w - 1, 10)];
        trace.extend((1..=9).map(|k| (w + k * S, 1)));
        assert_eq!(counter_overshoot(&l, &trace), None);
        assert!(
            sliding_window(&l, &trace).is_some(),
            "19 in one sliding window"
        );
        // One more unit inside that sliding window breaks the bound.
        trace.push((w + 9 * S + 1, 1));
        let v = counter_overshoot(&l, &trace).unwrap();
        assert_eq!((v.to, v.admitted, v.bound), (w + 9 * S + 1, 20, 19));
        // Aligned windows hold at most `amount`.
        let v = counter_overshoot(&l, &[(w, 6), (2 * w - 1, 5)]).unwrap();
        assert_eq!((v.window_start, v.admitted, v.bound), (Some(w), 11, 10));
    }

    #[test]
    fn refunds_count_from_their_own_time_and_never_as_an_admission() {
        let l = limit(10, 10, 10); // 1 per second, burst 10
                                   // 3 given back at 5 s: 10 − 3 + 8 in [0, 5 s] is within 10 + 5.
        let ok = [(0, 10), (5 * S, -3), (5 * S, 8)];
        assert_eq!(check_charges(Strategy::TokenBucket, &l, &ok), None);
        // One more unit is not.
        let v = check_charges(
            Strategy::TokenBucket,
            &l,
            &[(0, 10), (5 * S, -3), (5 * S, 9)],
        )
        .unwrap();
        assert_eq!((v.admitted, v.bound), (16, 15));
        // A refund helps only from its own time on: the window [0, 10 s) still holds 10 + 1.
        let early = [(0, 10), (S, 1), (2 * S, -5)];
        assert!(check_charges(Strategy::SlidingLog, &l, &early).is_some());
        assert_eq!(
            check_charges(Strategy::SlidingLog, &l, &[(0, 10), (S, -5), (2 * S, 5)]),
            None
        );
        // A refund is not an admission that has to wait for its pace.
        assert_eq!(
            check_charges(Strategy::LeakyBucket, &l, &[(0, 2), (0, -1)]),
            None
        );
        assert_eq!(
            check_charges(Strategy::LeakyBucket, &l, &[(0, 2), (0, -1), (S, 1)]),
            None
        );
        assert!(check_charges(Strategy::LeakyBucket, &l, &[(0, 2), (S, 1)]).is_some());
        // Without refunds, the same as `check`.
        let plain = [(0, 6), (S, 5)];
        let wide: Vec<(Nanos, i64)> = plain.iter().map(|&(t, c)| (t, c as i64)).collect();
        for strategy in [
            Strategy::TokenBucket,
            Strategy::SlidingLog,
            Strategy::SlidingCounter,
        ] {
            assert_eq!(
                check_charges(strategy, &l, &wide),
                check(strategy, &l, &plain)
            );
        }
    }

    #[test]
    fn violation_messages_state_the_bound() {
        let l = limit(10, 10, 10);
        let v = check(Strategy::SlidingLog, &l, &[(0, 11)]).unwrap();
        assert!(
            v.to_string().ends_with(&format!(
                "(bound: {})",
                Invariant::SlidingWindow.statement()
            )),
            "{v}"
        );
    }

    #[test]
    fn check_dispatches_per_strategy() {
        let l = limit(10, 10, 10);
        let trace = [(0, 10), (S, 1)];
        assert_eq!(check(Strategy::TokenBucket, &l, &trace), None);
        assert_eq!(check(Strategy::Gcra, &l, &trace), None);
        assert_eq!(
            check(Strategy::SlidingLog, &l, &trace).map(|v| v.invariant),
            Some(Invariant::SlidingWindow)
        );
        assert_eq!(
            check(Strategy::SlidingCounter, &l, &trace).map(|v| v.invariant),
            Some(Invariant::CounterOvershoot)
        );
        assert_eq!(
            check(Strategy::LeakyBucket, &l, &trace).map(|v| v.invariant),
            Some(Invariant::Pacing)
        );
        let v = check(Strategy::LeakyBucket, &l, &trace).unwrap();
        assert!(
            v.to_string().starts_with("pacing violated: 11 units"),
            "{v}"
        );
        assert_eq!(check(Strategy::TokenBucket, &l, &[]), None);
    }

    #[test]
    fn an_output_token_limit_is_checked_on_the_output_part_of_each_admission() {
        use crate::limiter::Cost;
        let otpm = Limit {
            kind: RateLimitType::OutputTokensPerMinute,
            amount: 600,
            burst: 600,
        };
        // 500 output tokens, then 200 more 5 s later: 700 > 600 + 600·5/60 = 650.
        let costs = [
            (0, Cost::request(0).with_split(900, 500)),
            (5 * S, Cost::request(0).with_split(10, 200)),
        ];
        let trace: Vec<(Nanos, u64)> = costs
            .iter()
            .map(|&(t, c)| (t, otpm.kind.cost_of(c)))
            .collect();
        let v = check(Strategy::TokenBucket, &otpm, &trace).unwrap();
        assert_eq!((v.admitted, v.bound), (700, 650));
        // 10 s later instead: 600 + 100 = 700 allowed.
        let later = [(0, 500), (10 * S, 200)];
        assert_eq!(check(Strategy::TokenBucket, &otpm, &later), None);
    }
}
