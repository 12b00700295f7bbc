//! Shrinking a failing trace: remove steps (halves, quarters, … single steps) and simplify
//! the ones left (smaller moves, costs and counts) while the same property still fails,
//! within a budget of replays. Each replay starts from a reset key at an aligned time, so
//! a trace means the same wherever it is replayed.

use crate::clock::ManualClock;

use super::super::RateLimiter;
use super::run::{Failure, Run};
use super::script::{Op, Plan};
use super::{Counterexample, Options, Subject};

/// A shrunk trace and how it fails.
pub(super) struct Minimal {
    failure: Failure,
    ops: Vec<Op>,
    transcript: Vec<String>,
}

impl Minimal {
    /// The counterexample of the trace seeded `seed`, `original` steps before shrinking.
    pub(super) fn into_counterexample(self, seed: u64, original: usize) -> Counterexample {
        Counterexample {
            property: self.failure.property,
            seed,
            detail: self.failure.detail,
            script: self.ops,
            transcript: self.transcript,
            original_steps: original,
            shrunk: true,
        }
    }
}

struct Shrinker<'a> {
    limiter: &'a dyn RateLimiter,
    clock: &'a ManualClock,
    subject: &'a Subject,
    plan: &'a Plan,
    budget: u32,
    net_refunds: bool,
}

impl Shrinker<'_> {
    /// How `ops` fails, if it fails the same property as `like`; spends one replay.
    async fn fails(&mut self, ops: &[Op], like: &Failure) -> Option<Failure> {
        if self.budget == 0 {
            return None;
        }
        self.budget -= 1;
        let mut run = Run::new(self.limiter, self.clock, self.subject, self.plan, false)
            .net_refunds(self.net_refunds);
        match run.play(ops).await {
            Err(f) if f.property == like.property => Some(f),
            _ => None,
        }
    }
}

/// Shrinks `ops`, which fails with `failure`, spending at most `budget` replays.
pub(super) async fn shrink(
    limiter: &dyn RateLimiter,
    clock: &ManualClock,
    subject: &Subject,
    plan: &Plan,
    mut ops: Vec<Op>,
    mut failure: Failure,
    options: &Options,
) -> Minimal {
    let mut s = Shrinker {
        limiter,
        clock,
        subject,
        plan,
        budget: options.shrink_budget,
        net_refunds: options.net_refunds,
    };
    loop {
        let mut improved = false;
        // Remove chunks, largest first.
        let mut chunk = (ops.len() / 2).max(1);
        loop {
            let mut i = 0;
            while i < ops.len() && s.budget > 0 {
                let end = (i + chunk).min(ops.len());
                let cand: Vec<Op> = ops[..i].iter().chain(&ops[end..]).copied().collect();
                if let Some(f) = s.fails(&cand, &failure).await {
                    ops = cand;
                    failure = f;
                    improved = true;
                } else {
                    i += chunk;
                }
            }
            if chunk == 1 || s.budget == 0 {
                break;
            }
            chunk /= 2;
        }
        // Simplify each remaining step.
        let mut i = 0;
        while i < ops.len() && s.budget > 0 {
            for simpler in ops[i].simpler() {
                let mut cand = ops.clone();
                cand[i] = simpler;
                if let Some(f) = s.fails(&cand, &failure).await {
                    ops = cand;
                    failure = f;
                    improved = true;
                    break;
                }
            }
            i += 1;
        }
        if !improved || s.budget == 0 {
            break;
        }
    }
    let mut run = Run::new(limiter, clock, subject, plan, true).net_refunds(options.net_refunds);
    if let Err(f) = run.play(&ops).await {
        failure = f;
    }
    Minimal {
        failure,
        ops,
        transcript: run.transcript,
    }
}
