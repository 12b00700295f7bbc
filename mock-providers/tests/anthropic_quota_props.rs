//! Property tests of the Anthropic quota engine against an independent model of three
//! token buckets (a level per dimension, refilled continuously up to its capacity, in exact
//! integers): over random arrivals with random sizes, completion delays and outputs, under
//! both OTPM rules and with or without short-interval RPM,
//! - no bucket is exceeded: every admission finds every dimension's level at least what
//!   it needs (one request, the input tokens, `max_tokens` or one output token);
//! - every refusal is right and its `retry_after` exact: it is the model's wait until all
//!   dimensions fit (`None` exactly when a need exceeds a capacity);
//! - settlement matches: refunds never fill a bucket past full, generated output may
//!   overdraw it.

use std::time::Duration;

use mock_providers::provider::anthropic::{
    AnthropicCost, AnthropicDecision, AnthropicLimits, AnthropicQuota, OtpmRule,
};
use proptest::prelude::*;

const MINUTE: i128 = 60_000_000_000;

/// One bucket: `level` in units × one minute of nanoseconds, refilled at `rate` per minute.
#[derive(Debug, Clone)]
struct Level {
    cap: i128,
    rate: i128,
    level: i128,
    at: u64,
}

impl Level {
    fn new(cap: u64, rate: u64) -> Self {
        Self {
            cap: i128::from(cap),
            rate: i128::from(rate),
            level: i128::from(cap) * MINUTE,
            at: 0,
        }
    }

    fn advance(&mut self, now: u64) {
        let dt = i128::from(now.saturating_sub(self.at));
        self.level = (self.level + self.rate * dt).min(self.cap * MINUTE);
        self.at = self.at.max(now);
    }

    /// Nanoseconds until `need` units are available; `None` when `need > cap`.
    fn wait(&self, need: u64) -> Option<u64> {
        let need = i128::from(need);
        if need > self.cap {
            return None;
        }
        let short = need * MINUTE - self.level;
        Some(if short <= 0 {
            0
        } else {
            u64::try_from((short + self.rate - 1) / self.rate).unwrap()
        })
    }

    fn charge(&mut self, units: u64) {
        self.level -= i128::from(units) * MINUTE;
    }

    fn refund(&mut self, units: u64) {
        self.level = (self.level + i128::from(units) * MINUTE).min(self.cap * MINUTE);
    }
}

#[derive(Debug, Clone, Copy)]
struct Arrival {
    gap_us: u64,
    input: u64,
    max_tokens: u64,
    /// Output generated, per mille of `max_tokens`.
    output_permille: u64,
    /// Time from admission to the end of the response.
    duration_us: u64,
    /// After a refusal, retry at exactly its `retry_after` (instead of `gap_us`).
    retry_at_edge: bool,
}

fn arrivals() -> impl Strategy<Value = Vec<Arrival>> {
    let one = (
        prop_oneof![3 => 0u64..2_000_000, 1 => Just(0u64), 2 => 0u64..5_000],
        0u64..2_500,
        0u64..1_500,
        0u64..=1_000,
        prop_oneof![Just(0u64), 0u64..20_000_000],
        any::<bool>(),
    )
        .prop_map(
            |(gap_us, input, max_tokens, output_permille, duration_us, retry_at_edge)| Arrival {
                gap_us,
                input,
                max_tokens,
                output_permille,
                duration_us,
                retry_at_edge,
            },
        );
    prop::collection::vec(one, 1..250)
}

fn limits() -> impl Strategy<Value = AnthropicLimits> {
    (
        1u64..120,
        500u64..20_000,
        200u64..6_000,
        prop_oneof![
            Just(None),
            Just(Some(Duration::from_secs(1))),
            Just(Some(Duration::from_secs(10)))
        ],
        prop_oneof![Just(OtpmRule::MaxTokens), Just(OtpmRule::Generated)],
    )
        .prop_map(
            |(rpm, itpm, otpm, rpm_interval, otpm_rule)| AnthropicLimits {
                rpm,
                itpm,
                otpm,
                rpm_interval,
                otpm_rule,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn no_bucket_is_exceeded_and_every_retry_after_is_exact(
        limits in limits(), ops in arrivals()
    ) {
        let mut engine = AnthropicQuota::new(limits);
        let mut requests = Level::new(limits.request_burst(), limits.rpm);
        let mut input = Level::new(limits.itpm, limits.itpm);
        let mut output = Level::new(limits.otpm, limits.otpm);
        // Responses still running: (end time, cost, output tokens).
        let mut running: Vec<(u64, AnthropicCost, u64)> = Vec::new();
        let mut now = 0u64;
        let mut last_wait: Option<u64> = None;
        for a in ops {
            now += match (a.retry_at_edge, last_wait) {
                (true, Some(w)) => w,
                _ => a.gap_us * 1_000,
            };
            // Responses that ended by now settle first, in order of their end.
            running.sort_by_key(|r| std::cmp::Reverse(r.0));
            while running.last().is_some_and(|r| r.0 <= now) {
                let (end, cost, out) = running.pop().unwrap();
                engine.complete(end, cost, out);
                output.advance(end);
                match limits.otpm_rule {
                    OtpmRule::MaxTokens => output.refund(cost.max_tokens - out),
                    OtpmRule::Generated => output.charge(out),
                }
            }
            for l in [&mut requests, &mut input, &mut output] {
                l.advance(now);
            }
            let cost = AnthropicCost { input: a.input, max_tokens: a.max_tokens };
            let out_need = match limits.otpm_rule {
                OtpmRule::MaxTokens => a.max_tokens,
                OtpmRule::Generated => 1,
            };
            let waits = [requests.wait(1), input.wait(a.input), output.wait(out_need)];
            let model_wait = if waits.iter().any(Option::is_none) {
                None
            } else {
                waits.iter().map(|w| w.unwrap()).max()
            };
            match engine.try_admit(now, cost) {
                AnthropicDecision::Admitted(_) => {
                    prop_assert_eq!(model_wait, Some(0), "admitted over a bucket at {}", now);
                    requests.charge(1);
                    input.charge(a.input);
                    if limits.otpm_rule == OtpmRule::MaxTokens {
                        output.charge(a.max_tokens);
                    }
                    let out = a.max_tokens * a.output_permille / 1_000;
                    running.push((now + a.duration_us * 1_000, cost, out));
                    last_wait = None;
                }
                AnthropicDecision::Throttled(t) => {
                    let wait = t.retry_after.map(|w| u64::try_from(w.as_nanos()).unwrap());
                    prop_assert_eq!(wait, model_wait, "retry_after at {}", now);
                    prop_assert_ne!(wait, Some(0), "refused although everything fits");
                    last_wait = wait;
                }
            }
        }
    }
}
