//! Azure OpenAI's quota for one deployment: TPM, and RPM enforced over short windows.

use std::time::Duration;

use super::meter::{FixedMeter, SlidingMeter};
use super::{Admission, Decision, Dimension, Nanos, QuotaEngine, QuotaSnapshot, Throttle, Waits};

const MINUTE: Duration = Duration::from_secs(60);

/// The limits of one deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AzureLimits {
    /// Tokens per minute, charged at the admission estimate; the running count resets at
    /// every minute boundary of the clock's epoch.
    pub tpm: u64,
    /// Requests per minute; Azure grants 6 per 1000 TPM ([`AzureLimits::from_tpm`]).
    pub rpm: u64,
    /// The short window over which requests are enforced (10 s by default, 1 s on some
    /// deployments): at most `rpm × window / 60 s` (at least 1) requests per window.
    pub rpm_window: Duration,
}

impl AzureLimits {
    /// Azure's rule: RPM = 6 per 1000 TPM, enforced over `rpm_window`.
    pub fn from_tpm(tpm: u64, rpm_window: Duration) -> Self {
        Self {
            tpm,
            rpm: tpm.saturating_mul(6) / 1_000,
            rpm_window,
        }
    }

    /// Requests admitted per `rpm_window`: `rpm × window / 60 s`, rounded down, at least 1.
    /// A 60-RPM deployment gets 10 per 10 s, so its 11th request within 10 s is refused.
    pub fn requests_per_window(&self) -> u64 {
        let per = u128::from(self.rpm) * self.rpm_window.as_nanos() / MINUTE.as_nanos();
        u64::try_from(per).unwrap_or(u64::MAX).max(1)
    }
}

/// Azure's quota for one deployment: requests over a sliding short window, tokens as a
/// running per-minute count; admitted all-or-nothing.
#[derive(Debug, Clone)]
pub struct AzureQuota {
    requests: SlidingMeter,
    tokens: FixedMeter,
}

impl AzureQuota {
    /// A fresh quota at full capacity.
    pub fn new(limits: AzureLimits) -> Self {
        Self {
            requests: SlidingMeter::new(limits.requests_per_window(), limits.rpm_window),
            tokens: FixedMeter::new(limits.tpm, MINUTE),
        }
    }
}

impl QuotaEngine for AzureQuota {
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
                let (limit, used, requested) = match dimension {
                    Dimension::Requests => (self.requests.limit(), self.requests.used(now), 1),
                    Dimension::Tokens => (self.tokens.limit(), self.tokens.used(now), tokens),
                };
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
        QuotaSnapshot {
            limit_requests: self.requests.limit(),
            remaining_requests: self.requests.limit() - self.requests.used(now),
            reset_requests: self.requests.time_to_reset(now),
            limit_tokens: self.tokens.limit(),
            remaining_tokens: self.tokens.limit() - self.tokens.used(now),
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
    use super::*;

    const S: Nanos = 1_000_000_000;

    #[test]
    fn sixty_rpm_refuses_the_eleventh_request_in_ten_seconds() {
        let limits = AzureLimits::from_tpm(10_000, Duration::from_secs(10));
        assert_eq!(limits.rpm, 60);
        let mut q = AzureQuota::new(limits);
        for i in 0..10u64 {
            match q.try_admit(i * S / 2, 16) {
                Decision::Admitted(a) => assert_eq!(a.snapshot.remaining_requests, 9 - i),
                d => panic!("{d:?}"),
            }
        }
        let Decision::Throttled(t) = q.try_admit(5 * S, 16) else {
            panic!("11th request admitted")
        };
        assert_eq!(t.dimension, Dimension::Requests);
        assert_eq!(t.retry_after, Some(Duration::from_secs(5)));
        assert!(matches!(q.try_admit(10 * S, 16), Decision::Admitted(_)));
    }

    #[test]
    fn token_count_resets_at_the_minute() {
        let mut q = AzureQuota::new(AzureLimits::from_tpm(1_000, Duration::from_secs(10)));
        assert!(matches!(q.try_admit(0, 900), Decision::Admitted(_)));
        let Decision::Throttled(t) = q.try_admit(15 * S, 200) else {
            panic!("over TPM admitted")
        };
        assert_eq!(t.dimension, Dimension::Tokens);
        assert_eq!((t.limit, t.used, t.requested), (1_000, 900, 200));
        assert_eq!(t.retry_after, Some(Duration::from_secs(45)));
        assert_eq!(t.snapshot.reset_tokens, Duration::from_secs(45));
        assert!(matches!(q.try_admit(60 * S, 1_000), Decision::Admitted(_)));
    }

    #[test]
    fn one_second_windows_divide_rpm_by_sixty() {
        let limits = AzureLimits::from_tpm(100_000, Duration::from_secs(1));
        assert_eq!(limits.rpm, 600);
        assert_eq!(limits.requests_per_window(), 10);
        let small = AzureLimits::from_tpm(1_000, Duration::from_secs(1));
        assert_eq!(
            small.requests_per_window(),
            1,
            "at least one request per window"
        );
    }
}
