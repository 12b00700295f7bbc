//! Anthropic's quota for one (organization, model): requests, input tokens and output
//! tokens per minute as three continuously replenished token buckets, admitted
//! all-or-nothing. Pure: every method takes `now`; nothing reads a clock.
//!
//! - RPM: capacity `rpm` (or the short-interval burst, [`AnthropicLimits::rpm_interval`]),
//!   refilled at `rpm` per minute.
//! - ITPM: charged `input_tokens + cache_creation_input_tokens` at admission (the mock's
//!   counts are exact, so the "estimate adjusted during the request" needs no adjustment);
//!   cache reads are not counted.
//! - OTPM: per [`OtpmRule`] — `max_tokens` reserved at admission and the unused part
//!   refunded at the end, or only admission with a free token and the generated tokens
//!   charged at the end.

use std::fmt;
use std::time::Duration;

use super::config::OtpmRule;
use crate::quota::meter::{ContinuousMeter, Wait};
use crate::units::Nanos;

const MINUTE: Duration = Duration::from_secs(60);

/// One of Anthropic's three rate-limited dimensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnthropicDimension {
    /// Requests per minute.
    Requests,
    /// Input tokens per minute.
    InputTokens,
    /// Output tokens per minute.
    OutputTokens,
}

impl AnthropicDimension {
    /// `"requests"`, `"input tokens"` or `"output tokens"`, as in the 429 message.
    pub fn phrase(self) -> &'static str {
        match self {
            Self::Requests => "requests",
            Self::InputTokens => "input tokens",
            Self::OutputTokens => "output tokens",
        }
    }
}

impl fmt::Display for AnthropicDimension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.phrase())
    }
}

/// The limits of one (organization, model).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnthropicLimits {
    /// Requests per minute.
    pub rpm: u64,
    /// Input tokens per minute.
    pub itpm: u64,
    /// Output tokens per minute.
    pub otpm: u64,
    /// When set, requests are enforced over this interval: a burst of `rpm × interval /
    /// 60 s` requests (at least 1), refilled at `rpm` per minute.
    pub rpm_interval: Option<Duration>,
    /// How output tokens are charged.
    pub otpm_rule: OtpmRule,
}

impl AnthropicLimits {
    /// The request bucket's burst capacity: `rpm`, or `rpm × interval / 60 s` rounded down
    /// (at least 1) with a short interval.
    pub fn request_burst(&self) -> u64 {
        match self.rpm_interval {
            None => self.rpm,
            Some(i) => {
                let per = u128::from(self.rpm) * i.as_nanos() / MINUTE.as_nanos();
                u64::try_from(per)
                    .unwrap_or(u64::MAX)
                    .clamp(1, self.rpm.max(1))
            }
        }
    }
}

/// What one request costs at admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnthropicCost {
    /// Tokens charged to ITPM: `input_tokens + cache_creation_input_tokens`.
    pub input: u64,
    /// The request's `max_tokens` (reserved under [`OtpmRule::MaxTokens`]).
    pub max_tokens: u64,
}

/// One dimension's state as the rate-limit headers report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    /// The per-minute limit.
    pub limit: u64,
    /// Units that would still be admitted now.
    pub remaining: u64,
    /// Time until the bucket is full again.
    pub reset: Duration,
}

/// All three dimensions at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnthropicSnapshot {
    /// Requests.
    pub requests: Bucket,
    /// Input tokens.
    pub input: Bucket,
    /// Output tokens.
    pub output: Bucket,
}

/// A refused request; nothing was charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnthropicThrottle {
    /// The dimension that refused (the longest wait; requests, then input, then output on
    /// a tie).
    pub dimension: AnthropicDimension,
    /// Exact time until the request fits in every dimension; `None` when it never can
    /// (its input, or its `max_tokens` under [`OtpmRule::MaxTokens`], exceeds the limit).
    pub retry_after: Option<Duration>,
    /// The refusing dimension's per-minute limit.
    pub limit: u64,
    /// The state at the refusal.
    pub snapshot: AnthropicSnapshot,
}

/// The outcome of [`AnthropicQuota::try_admit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnthropicDecision {
    /// Admitted and charged; the state after charging.
    Admitted(AnthropicSnapshot),
    /// Refused; nothing charged.
    Throttled(AnthropicThrottle),
}

/// Anthropic's quota for one (organization, model).
#[derive(Debug, Clone)]
pub struct AnthropicQuota {
    requests: ContinuousMeter,
    input: ContinuousMeter,
    output: ContinuousMeter,
    rule: OtpmRule,
}

impl AnthropicQuota {
    /// A fresh quota at full capacity.
    pub fn new(limits: AnthropicLimits) -> Self {
        Self {
            requests: ContinuousMeter::with_capacity(limits.rpm, MINUTE, limits.request_burst()),
            input: ContinuousMeter::new(limits.itpm, MINUTE),
            output: ContinuousMeter::new(limits.otpm, MINUTE),
            rule: limits.otpm_rule,
        }
    }

    /// The output tokens that must be free to admit `cost`.
    fn output_need(&self, cost: AnthropicCost) -> u64 {
        match self.rule {
            OtpmRule::MaxTokens => cost.max_tokens,
            OtpmRule::Generated => 1,
        }
    }

    /// Admits one request at `now`, charging one request, `cost.input` input tokens and
    /// (under [`OtpmRule::MaxTokens`]) `cost.max_tokens` output tokens; or refuses it and
    /// charges nothing.
    pub fn try_admit(&mut self, now: Nanos, cost: AnthropicCost) -> AnthropicDecision {
        let waits: [(AnthropicDimension, Wait); 3] = [
            (AnthropicDimension::Requests, self.requests.wait(now, 1)),
            (
                AnthropicDimension::InputTokens,
                self.input.wait(now, cost.input),
            ),
            (
                AnthropicDimension::OutputTokens,
                self.output.wait(now, self.output_need(cost)),
            ),
        ];
        // The refusing dimension: one that never fits, else the longest non-zero wait.
        let mut refusal: Option<(AnthropicDimension, Wait)> = None;
        for (d, w) in waits {
            match (w, refusal) {
                (None, Some((_, None))) => {}
                (None, _) => refusal = Some((d, None)),
                (Some(w), None) if !w.is_zero() => refusal = Some((d, Some(w))),
                (Some(w), Some((_, Some(r)))) if w > r => refusal = Some((d, Some(w))),
                _ => {}
            }
        }
        match refusal {
            None => {
                self.requests.charge(now, 1);
                self.input.charge(now, cost.input);
                if self.rule == OtpmRule::MaxTokens {
                    self.output.charge(now, cost.max_tokens);
                }
                AnthropicDecision::Admitted(self.snapshot(now))
            }
            Some((dimension, retry_after)) => {
                let limit = match dimension {
                    AnthropicDimension::Requests => self.requests.limit(),
                    AnthropicDimension::InputTokens => self.input.limit(),
                    AnthropicDimension::OutputTokens => self.output.limit(),
                };
                AnthropicDecision::Throttled(AnthropicThrottle {
                    dimension,
                    retry_after,
                    limit,
                    snapshot: self.snapshot(now),
                })
            }
        }
    }

    /// Reconciles an admitted request when its response ends at `now` with `output`
    /// tokens generated: refunds `max_tokens − output` ([`OtpmRule::MaxTokens`]) or charges
    /// `output` ([`OtpmRule::Generated`]).
    pub fn complete(&mut self, now: Nanos, cost: AnthropicCost, output: u64) {
        match self.rule {
            OtpmRule::MaxTokens => self
                .output
                .refund(now, cost.max_tokens.saturating_sub(output)),
            OtpmRule::Generated => self.output.charge(now, output),
        }
    }

    /// The state at `now`, charging nothing.
    pub fn snapshot(&self, now: Nanos) -> AnthropicSnapshot {
        let bucket = |m: &ContinuousMeter| Bucket {
            limit: m.limit(),
            remaining: m.capacity() - m.used(now),
            reset: m.time_to_reset(now),
        };
        AnthropicSnapshot {
            requests: bucket(&self.requests),
            input: bucket(&self.input),
            output: bucket(&self.output),
        }
    }

    /// Back to full capacity in every dimension.
    pub fn reset(&mut self) {
        self.requests.reset();
        self.input.reset();
        self.output.reset();
    }
}

/// A requests-only bucket (count_tokens has its own RPM, independent of messages).
#[derive(Debug, Clone)]
pub struct RequestQuota(ContinuousMeter);

impl RequestQuota {
    /// `rpm` requests per minute, continuously replenished.
    pub fn new(rpm: u64) -> Self {
        Self(ContinuousMeter::new(rpm, MINUTE))
    }

    /// Admits one request (`Ok` with the state after charging) or returns the exact wait
    /// (`Duration::MAX` only for a zero limit, which the configuration check refuses).
    pub fn try_admit(&mut self, now: Nanos) -> Result<Bucket, Duration> {
        match self.0.wait(now, 1) {
            Some(w) if w.is_zero() => {
                self.0.charge(now, 1);
                Ok(self.bucket(now))
            }
            Some(w) => Err(w),
            None => Err(Duration::MAX),
        }
    }

    /// The state at `now`.
    pub fn bucket(&self, now: Nanos) -> Bucket {
        Bucket {
            limit: self.0.limit(),
            remaining: self.0.capacity() - self.0.used(now),
            reset: self.0.time_to_reset(now),
        }
    }

    /// Back to full.
    pub fn reset(&mut self) {
        self.0.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Nanos = 1_000_000_000;

    fn quota(rule: OtpmRule, rpm_interval: Option<Duration>) -> AnthropicQuota {
        AnthropicQuota::new(AnthropicLimits {
            rpm: 60,
            itpm: 6_000,
            otpm: 1_200,
            rpm_interval,
            otpm_rule: rule,
        })
    }

    fn cost(input: u64, max_tokens: u64) -> AnthropicCost {
        AnthropicCost { input, max_tokens }
    }

    fn throttle(d: AnthropicDecision) -> AnthropicThrottle {
        match d {
            AnthropicDecision::Throttled(t) => t,
            AnthropicDecision::Admitted(s) => panic!("admitted: {s:?}"),
        }
    }

    #[test]
    fn max_tokens_rule_reserves_then_refunds() {
        let mut q = quota(OtpmRule::MaxTokens, None);
        let AnthropicDecision::Admitted(s) = q.try_admit(0, cost(100, 1_000)) else {
            panic!()
        };
        assert_eq!(s.output.remaining, 200);
        assert_eq!(s.input.remaining, 5_900);
        assert_eq!(s.requests.remaining, 59);
        let t = throttle(q.try_admit(0, cost(10, 300)));
        assert_eq!(t.dimension, AnthropicDimension::OutputTokens);
        // 100 tokens must come back at 1200/min: 5 s.
        assert_eq!(t.retry_after, Some(Duration::from_secs(5)));
        q.complete(0, cost(100, 1_000), 40);
        assert_eq!(q.snapshot(0).output.remaining, 1_160);
        assert!(matches!(
            q.try_admit(0, cost(10, 300)),
            AnthropicDecision::Admitted(_)
        ));
        let big = throttle(q.try_admit(0, cost(10, 1_201)));
        assert_eq!(big.retry_after, None, "max_tokens over OTPM never fits");
    }

    #[test]
    fn generated_rule_ignores_max_tokens_and_charges_output_after() {
        let mut q = quota(OtpmRule::Generated, None);
        assert!(matches!(
            q.try_admit(0, cost(10, 64_000)),
            AnthropicDecision::Admitted(_)
        ));
        assert_eq!(q.snapshot(0).output.remaining, 1_200);
        q.complete(0, cost(10, 64_000), 1_300);
        assert_eq!(q.snapshot(0).output.remaining, 0);
        let t = throttle(q.try_admit(0, cost(10, 5)));
        assert_eq!(t.dimension, AnthropicDimension::OutputTokens);
        // 101 tokens of debt + 1 free: 101 × 50 ms.
        assert_eq!(t.retry_after, Some(Duration::from_millis(5_050)));
        assert!(matches!(
            q.try_admit(5_050_000_000, cost(10, 5)),
            AnthropicDecision::Admitted(_)
        ));
    }

    #[test]
    fn short_interval_enforces_sixty_rpm_as_one_per_second() {
        let mut q = quota(OtpmRule::MaxTokens, Some(Duration::from_secs(1)));
        assert!(matches!(
            q.try_admit(0, cost(1, 1)),
            AnthropicDecision::Admitted(_)
        ));
        let t = throttle(q.try_admit(S / 2, cost(1, 1)));
        assert_eq!(t.dimension, AnthropicDimension::Requests);
        assert_eq!(t.retry_after, Some(Duration::from_millis(500)));
        assert!(matches!(
            q.try_admit(S, cost(1, 1)),
            AnthropicDecision::Admitted(_)
        ));
        let burst = AnthropicLimits {
            rpm: 50,
            itpm: 1,
            otpm: 1,
            rpm_interval: Some(Duration::from_secs(1)),
            otpm_rule: OtpmRule::MaxTokens,
        };
        assert_eq!(burst.request_burst(), 1, "at least one");
        let ten = AnthropicLimits {
            rpm_interval: Some(Duration::from_secs(10)),
            rpm: 600,
            ..burst
        };
        assert_eq!(ten.request_burst(), 100);
    }

    #[test]
    fn longest_wait_refuses_and_input_over_itpm_never_fits() {
        let mut q = quota(OtpmRule::MaxTokens, None);
        assert!(matches!(
            q.try_admit(0, cost(6_000, 600)),
            AnthropicDecision::Admitted(_)
        ));
        let t = throttle(q.try_admit(0, cost(3_000, 900)));
        // input needs 3000 back at 100/s = 30 s; output needs 300 back at 20/s = 15 s.
        assert_eq!(t.dimension, AnthropicDimension::InputTokens);
        assert_eq!(t.retry_after, Some(Duration::from_secs(30)));
        assert_eq!(t.limit, 6_000);
        let never = throttle(q.try_admit(0, cost(6_001, 1)));
        assert_eq!(never.dimension, AnthropicDimension::InputTokens);
        assert_eq!(never.retry_after, None);
        q.reset();
        assert_eq!(q.snapshot(0).input.remaining, 6_000);
    }

    #[test]
    fn count_tokens_bucket_is_separate() {
        let mut r = RequestQuota::new(2);
        assert!(r.try_admit(0).is_ok());
        assert_eq!(r.try_admit(0).map(|b| b.remaining), Ok(0));
        assert_eq!(r.try_admit(0), Err(Duration::from_secs(30)));
    }
}
