//! Retry delays: how long to wait before retry number `attempt` after an error.
//!
//! A [`BackoffStrategy`] computes a delay from the attempt number alone; [`RetryPolicy`]
//! wraps one with the rules that do not depend on the curve: give up on non-retryable
//! errors and after `max_retries`, and let a server-reported retry-after win. Errors reach
//! this module as a neutral [`ErrorInfo`], so no provider's error type is known here.

use std::fmt;
use std::time::Duration;

use rand::{Rng, RngCore};
use serde::Deserialize;

use crate::units::de_duration;

/// A provider-neutral description of a failed call, built by the connector that saw it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErrorInfo {
    /// Whether trying again can succeed (the connector's `is_retryable()`).
    pub retryable: bool,
    /// Whether the server refused for quota (a 429 or its equivalent); pauses the key.
    pub rate_limited: bool,
    /// The server's own wait, if it sent one (retry-after / retry-after-ms / reset).
    pub retry_after: Option<Duration>,
    /// The HTTP status, if there was a response.
    pub status: Option<u16>,
}

impl ErrorInfo {
    /// A rate-limit refusal with the server's wait, if any.
    pub fn rate_limited(retry_after: Option<Duration>) -> Self {
        Self {
            retryable: true,
            rate_limited: true,
            retry_after,
            status: Some(429),
        }
    }
}

/// A curve of retry delays. `attempt` is 1 for the first retry. Implementations are pure
/// but for the random source they are given.
pub trait BackoffStrategy: Send + Sync + fmt::Debug {
    /// The delay before retry `attempt`; always within `0 ..= self.max_delay(attempt)`.
    fn delay(&self, attempt: u32, rng: &mut dyn RngCore) -> Duration;

    /// The largest delay [`delay`](Self::delay) can return for `attempt`.
    fn max_delay(&self, attempt: u32) -> Duration;
}

/// `min(cap, base · factor^(attempt−1))`, scaled by a random factor in `[1 − jitter, 1]`
/// (openai-python uses base 0.5 s, factor 2, cap 8 s, jitter 0.25).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exponential {
    /// Delay of the first retry, before jitter.
    pub base: Duration,
    /// Growth per attempt, ≥ 1.
    pub factor: f64,
    /// Largest delay.
    pub cap: Duration,
    /// Fraction `[0, 1]` by which a delay may be shortened at random.
    pub jitter: f64,
}

impl Exponential {
    fn ceiling(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(64) as i32;
        let secs = self.base.as_secs_f64() * self.factor.max(1.0).powi(exp);
        Duration::from_secs_f64(secs.min(self.cap.as_secs_f64()))
    }
}

impl BackoffStrategy for Exponential {
    fn delay(&self, attempt: u32, rng: &mut dyn RngCore) -> Duration {
        let jitter = self.jitter.clamp(0.0, 1.0);
        let scale = if jitter > 0.0 {
            1.0 - jitter * rng.random::<f64>()
        } else {
            1.0
        };
        self.ceiling(attempt).mul_f64(scale)
    }

    fn max_delay(&self, attempt: u32) -> Duration {
        self.ceiling(attempt)
    }
}

/// "Full jitter": uniform in `[0, min(cap, base · 2^(attempt−1))]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FullJitter {
    /// Ceiling of the first retry's delay.
    pub base: Duration,
    /// Largest delay.
    pub cap: Duration,
}

impl BackoffStrategy for FullJitter {
    fn delay(&self, attempt: u32, rng: &mut dyn RngCore) -> Duration {
        self.max_delay(attempt).mul_f64(rng.random::<f64>())
    }

    fn max_delay(&self, attempt: u32) -> Duration {
        Exponential {
            base: self.base,
            factor: 2.0,
            cap: self.cap,
            jitter: 0.0,
        }
        .ceiling(attempt)
    }
}

/// "Decorrelated jitter", stateless form: uniform in `[base, min(cap, base · 3^attempt)]`
/// — the range the stateful formula `min(cap, rand(base, previous · 3))` reaches when each
/// previous delay was at its maximum. Never below `base` (unless `cap < base`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecorrelatedJitter {
    /// Smallest delay.
    pub base: Duration,
    /// Largest delay.
    pub cap: Duration,
}

impl BackoffStrategy for DecorrelatedJitter {
    fn delay(&self, attempt: u32, rng: &mut dyn RngCore) -> Duration {
        let lo = self.base.min(self.cap).as_secs_f64();
        let hi = self.max_delay(attempt).as_secs_f64();
        Duration::from_secs_f64(lo + (hi - lo) * rng.random::<f64>())
    }

    fn max_delay(&self, attempt: u32) -> Duration {
        Exponential {
            base: self.base,
            factor: 3.0,
            cap: self.cap,
            jitter: 0.0,
        }
        .ceiling(attempt.saturating_add(1))
    }
}

/// Which curve [`BackoffConfig`] builds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackoffKind {
    /// [`Exponential`].
    Exponential,
    /// [`FullJitter`].
    #[default]
    FullJitter,
    /// [`DecorrelatedJitter`].
    DecorrelatedJitter,
}

/// Retry configuration as written in TOML:
/// `backoff = { kind = "full_jitter", base = "500ms", cap = "20s", max_retries = 4 }`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackoffConfig {
    /// The curve.
    #[serde(default)]
    pub kind: BackoffKind,
    /// First delay (or its ceiling, for the jittered curves). Default 500 ms.
    #[serde(default = "default_base", deserialize_with = "de_duration")]
    pub base: Duration,
    /// Growth per attempt for `exponential`. Default 2.
    #[serde(default = "default_factor")]
    pub factor: f64,
    /// Jitter fraction for `exponential`, `[0, 1]`. Default 0.25.
    #[serde(default = "default_jitter")]
    pub jitter: f64,
    /// Largest computed delay. Default 8 s.
    #[serde(default = "default_cap", deserialize_with = "de_duration")]
    pub cap: Duration,
    /// Retries after the first try; attempt `max_retries + 1` gets `None`. Default 2.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// A server retry-after is used as is up to this long; a longer one means "do not
    /// retry" (as openai-python v3 does). Default 120 s.
    #[serde(default = "default_retry_after_cap", deserialize_with = "de_duration")]
    pub retry_after_cap: Duration,
}

fn default_base() -> Duration {
    Duration::from_millis(500)
}
fn default_factor() -> f64 {
    2.0
}
fn default_jitter() -> f64 {
    0.25
}
fn default_cap() -> Duration {
    Duration::from_secs(8)
}
fn default_max_retries() -> u32 {
    2
}
fn default_retry_after_cap() -> Duration {
    Duration::from_secs(120)
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            kind: BackoffKind::default(),
            base: default_base(),
            factor: default_factor(),
            jitter: default_jitter(),
            cap: default_cap(),
            max_retries: default_max_retries(),
            retry_after_cap: default_retry_after_cap(),
        }
    }
}

impl BackoffConfig {
    /// The retry policy this config describes.
    pub fn policy(&self) -> RetryPolicy {
        let curve: Box<dyn BackoffStrategy> = match self.kind {
            BackoffKind::Exponential => Box::new(Exponential {
                base: self.base,
                factor: self.factor,
                cap: self.cap,
                jitter: self.jitter,
            }),
            BackoffKind::FullJitter => Box::new(FullJitter {
                base: self.base,
                cap: self.cap,
            }),
            BackoffKind::DecorrelatedJitter => Box::new(DecorrelatedJitter {
                base: self.base,
                cap: self.cap,
            }),
        };
        RetryPolicy {
            curve,
            max_retries: self.max_retries,
            retry_after_cap: self.retry_after_cap,
        }
    }
}

/// The retry-after-aware wrapper: decides whether to retry and how long to wait.
#[derive(Debug)]
pub struct RetryPolicy {
    /// The curve used when the server gives no wait.
    pub curve: Box<dyn BackoffStrategy>,
    /// Retries after the first try.
    pub max_retries: u32,
    /// Longest server retry-after honoured; longer means give up.
    pub retry_after_cap: Duration,
}

impl RetryPolicy {
    /// The delay before retry `attempt` (1-based) after `error`: `None` when the error is
    /// not retryable, `attempt > max_retries`, or the server asks for more than
    /// `retry_after_cap`; the server's positive retry-after when it sent one; else the curve.
    pub fn delay(
        &self,
        attempt: u32,
        error: &ErrorInfo,
        rng: &mut dyn RngCore,
    ) -> Option<Duration> {
        if !error.retryable || attempt == 0 || attempt > self.max_retries {
            return None;
        }
        match error.retry_after {
            Some(ra) if ra > self.retry_after_cap => None,
            Some(ra) if !ra.is_zero() => Some(ra),
            _ => Some(self.curve.delay(attempt, rng)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn curves(base_ms: u64, cap_ms: u64) -> Vec<Box<dyn BackoffStrategy>> {
        let base = Duration::from_millis(base_ms);
        let cap = Duration::from_millis(cap_ms);
        vec![
            Box::new(Exponential {
                base,
                factor: 2.0,
                cap,
                jitter: 0.25,
            }),
            Box::new(FullJitter { base, cap }),
            Box::new(DecorrelatedJitter { base, cap }),
        ]
    }

    proptest! {
        #[test]
        fn delays_stay_within_documented_bounds_and_cap(
            base_ms in 1u64..5_000, cap_ms in 1u64..60_000, attempt in 1u32..100, seed: u64,
        ) {
            let mut rng = StdRng::seed_from_u64(seed);
            for curve in curves(base_ms, cap_ms) {
                let max = curve.max_delay(attempt);
                prop_assert!(max <= Duration::from_millis(cap_ms), "{curve:?} max {max:?}");
                let d = curve.delay(attempt, &mut rng);
                prop_assert!(d <= max, "{curve:?} attempt {attempt}: {d:?} > {max:?}");
            }
        }

        #[test]
        fn exponential_delay_is_at_least_its_unjittered_share(
            base_ms in 1u64..5_000, attempt in 1u32..20, seed: u64,
        ) {
            let e = Exponential { base: Duration::from_millis(base_ms), factor: 2.0,
                cap: Duration::from_secs(3600), jitter: 0.25 };
            let d = e.delay(attempt, &mut StdRng::seed_from_u64(seed));
            prop_assert!(d >= e.max_delay(attempt).mul_f64(0.75) - Duration::from_nanos(1));
        }

        #[test]
        fn decorrelated_jitter_never_below_base(base_ms in 1u64..1_000, attempt in 1u32..30, seed: u64) {
            let j = DecorrelatedJitter { base: Duration::from_millis(base_ms), cap: Duration::from_secs(60) };
            prop_assert!(j.delay(attempt, &mut StdRng::seed_from_u64(seed)) >= Duration::from_millis(base_ms));
        }
    }

    #[test]
    fn policy_prefers_server_wait_and_gives_up_when_told() {
        let p = BackoffConfig::default().policy();
        let mut rng = StdRng::seed_from_u64(1);
        let ra = ErrorInfo::rate_limited(Some(Duration::from_millis(1234)));
        assert_eq!(p.delay(1, &ra, &mut rng), Some(Duration::from_millis(1234)));
        assert_eq!(p.delay(3, &ra, &mut rng), None, "past max_retries");
        let long = ErrorInfo::rate_limited(Some(Duration::from_secs(121)));
        assert_eq!(p.delay(1, &long, &mut rng), None, "beyond retry_after_cap");
        let fatal = ErrorInfo {
            retryable: false,
            ..ErrorInfo::default()
        };
        assert_eq!(p.delay(1, &fatal, &mut rng), None);
        let plain = ErrorInfo {
            retryable: true,
            ..ErrorInfo::default()
        };
        let d = p.delay(2, &plain, &mut rng).unwrap();
        assert!(
            d <= Duration::from_secs(1),
            "full jitter attempt 2 ≤ 1 s: {d:?}"
        );
    }

    #[test]
    fn config_parses_from_toml() {
        let c: BackoffConfig =
            toml::from_str("kind = \"decorrelated_jitter\"\nbase = \"100ms\"\ncap = \"20s\"")
                .unwrap();
        assert_eq!(c.kind, BackoffKind::DecorrelatedJitter);
        assert_eq!(c.cap, Duration::from_secs(20));
        assert!(toml::from_str::<BackoffConfig>("kinds = \"x\"").is_err());
    }
}
