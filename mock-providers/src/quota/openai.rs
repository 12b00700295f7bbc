//! OpenAI's quota for one (organization, model): RPM and TPM.

use std::time::Duration;

use serde::Deserialize;

use super::meter::{ContinuousMeter, SlidingMeter, Wait};
use super::{Admission, Decision, Nanos, QuotaEngine, QuotaSnapshot, Throttle, Waits};

const MINUTE: Duration = Duration::from_secs(60);

/// How spent quota comes back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Replenish {
    /// A token bucket per dimension, refilled continuously at `limit` per minute (OpenAI's
    /// observed behaviour: "Limit 3, Used 3 … try again in 20s"). Any interval of length `t`
    /// admits at most `limit + limit·t/60 s`, so a full bucket plus a minute of refill can
    /// admit up to twice the limit within one 60-s span.
    #[default]
    Continuous,
    /// Each unit comes back exactly 60 s after it was spent: never more than the limit in
    /// any 60-s window (stricter than OpenAI; for testing limiters against a hard bound).
    Sliding,
}

/// The limits of one (organization, model).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenAiLimits {
    /// Requests per minute.
    pub rpm: u64,
    /// Tokens per minute (charged at the admission estimate).
    pub tpm: u64,
    /// How spent quota comes back.
    pub replenish: Replenish,
}

#[derive(Debug, Clone)]
enum Meter {
    Continuous(ContinuousMeter),
    Sliding(SlidingMeter),
}

impl Meter {
    fn new(limit: u64, replenish: Replenish) -> Self {
        match replenish {
            Replenish::Continuous => Self::Continuous(ContinuousMeter::new(limit, MINUTE)),
            Replenish::Sliding => Self::Sliding(SlidingMeter::new(limit, MINUTE)),
        }
    }

    fn limit(&self) -> u64 {
        match self {
            Self::Continuous(m) => m.limit(),
            Self::Sliding(m) => m.limit(),
        }
    }

    fn wait(&mut self, now: Nanos, cost: u64) -> Wait {
        match self {
            Self::Continuous(m) => m.wait(now, cost),
            Self::Sliding(m) => m.wait(now, cost),
        }
    }

    fn used(&mut self, now: Nanos) -> u64 {
        match self {
            Self::Continuous(m) => m.used(now),
            Self::Sliding(m) => m.used(now),
        }
    }

    fn charge(&mut self, now: Nanos, cost: u64) {
        match self {
            Self::Continuous(m) => m.charge(now, cost),
            Self::Sliding(m) => m.charge(now, cost),
        }
    }

    fn time_to_reset(&self, now: Nanos) -> Duration {
        match self {
            Self::Continuous(m) => m.time_to_reset(now),
            Self::Sliding(m) => m.time_to_reset(now),
        }
    }

    fn reset(&mut self) {
        match self {
            Self::Continuous(m) => m.reset(),
            Self::Sliding(m) => m.reset(),
        }
    }
}

/// OpenAI's quota for one (organization, model): RPM and TPM admitted all-or-nothing, the
/// token dimension charged at the admission estimate.
#[derive(Debug, Clone)]
pub struct OpenAiQuota {
    requests: Meter,
    tokens: Meter,
}

impl OpenAiQuota {
    /// A fresh quota at full capacity.
    pub fn new(limits: OpenAiLimits) -> Self {
        Self {
            requests: Meter::new(limits.rpm, limits.replenish),
            tokens: Meter::new(limits.tpm, limits.replenish),
        }
    }
}

impl QuotaEngine for OpenAiQuota {
    fn try_admit(&mut self, now: Nanos, tokens: u64) -> Decision {
        let waits = Waits {
            requests: self.requests.wait(now, 1),
            tokens: self.tokens.wait(now, tokens),
        };
        match waits.refusal() {
            None => {
                self.requests.charge(now, 1);
                self.tokens.charge(now, tokens);
                Decision::Admitted(Admission {
                    snapshot: self.snapshot(now),
                })
            }
            Some((dimension, retry_after)) => {
                let (meter, requested) = match dimension {
                    super::Dimension::Requests => (&mut self.requests, 1),
                    super::Dimension::Tokens => (&mut self.tokens, tokens),
                };
                let (limit, used) = (meter.limit(), meter.used(now));
                Decision::Throttled(Throttle {
                    dimension,
                    retry_after,
                    limit,
                    used,
                    requested,
                    snapshot: self.snapshot(now),
                })
            }
        }
    }

    fn snapshot(&mut self, now: Nanos) -> QuotaSnapshot {
        let used_requests = self.requests.used(now);
        let used_tokens = self.tokens.used(now);
        QuotaSnapshot {
            limit_requests: self.requests.limit(),
            remaining_requests: self.requests.limit() - used_requests,
            reset_requests: self.requests.time_to_reset(now),
            limit_tokens: self.tokens.limit(),
            remaining_tokens: self.tokens.limit() - used_tokens,
            reset_tokens: self.tokens.time_to_reset(now),
        }
    }

    fn reset(&mut self) {
        self.requests.reset();
        self.tokens.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::super::Dimension;
    use super::*;

    const S: Nanos = 1_000_000_000;

    fn quota(rpm: u64, tpm: u64, replenish: Replenish) -> OpenAiQuota {
        OpenAiQuota::new(OpenAiLimits {
            rpm,
            tpm,
            replenish,
        })
    }

    fn throttle(d: Decision) -> Throttle {
        match d {
            Decision::Throttled(t) => t,
            Decision::Admitted(a) => panic!("expected a throttle, got {a:?}"),
        }
    }

    #[test]
    fn fourth_request_at_3_rpm_waits_20s() {
        let mut q = quota(3, 1_000, Replenish::Continuous);
        for left in [2, 1, 0] {
            match q.try_admit(0, 10) {
                Decision::Admitted(a) => assert_eq!(a.snapshot.remaining_requests, left),
                d => panic!("{d:?}"),
            }
        }
        let t = throttle(q.try_admit(0, 10));
        assert_eq!(t.dimension, Dimension::Requests);
        assert_eq!((t.limit, t.used, t.requested), (3, 3, 1));
        assert_eq!(t.retry_after, Some(Duration::from_secs(20)));
        assert!(matches!(q.try_admit(20 * S, 10), Decision::Admitted(_)));
    }

    #[test]
    fn tokens_refuse_with_the_longer_wait() {
        let mut q = quota(100, 1_000, Replenish::Continuous);
        assert!(matches!(q.try_admit(0, 900), Decision::Admitted(_)));
        let t = throttle(q.try_admit(0, 400));
        assert_eq!(t.dimension, Dimension::Tokens);
        assert_eq!((t.limit, t.used, t.requested), (1_000, 900, 400));
        // 300 tokens must come back at 1000/min: 18 s.
        assert_eq!(t.retry_after, Some(Duration::from_secs(18)));
        assert_eq!(t.snapshot.remaining_tokens, 100);
    }

    #[test]
    fn request_larger_than_tpm_never_fits() {
        let mut q = quota(100, 1_000, Replenish::Continuous);
        let t = throttle(q.try_admit(0, 1_001));
        assert!(t.too_large());
        assert_eq!(t.dimension, Dimension::Tokens);
        assert_eq!(q.snapshot(0).remaining_requests, 100, "nothing charged");
    }

    #[test]
    fn sliding_mode_waits_for_the_oldest_request_to_leave_the_minute() {
        let mut q = quota(3, 1_000, Replenish::Sliding);
        for i in 0..3 {
            assert!(matches!(q.try_admit(i * S, 1), Decision::Admitted(_)));
        }
        let t = throttle(q.try_admit(3 * S, 1));
        assert_eq!(t.retry_after, Some(Duration::from_secs(57)));
        q.reset();
        assert!(matches!(q.try_admit(3 * S, 1), Decision::Admitted(_)));
    }
}
