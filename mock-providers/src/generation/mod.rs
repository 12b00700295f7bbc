//! The generation model: what a mock completion says, how long it is and how slowly it
//! arrives, as seeded pure functions usable without a server (the hub's simulator samples
//! the same latencies and lengths the server would).
//!
//! - Output length: drawn from [`OutputTokens`] (fixed, uniform or log-normal), capped by
//!   `max_tokens` (finish reason `length`).
//! - Text: whole tokens of a fixed English vocabulary ([`text`]); token counts are real
//!   tiktoken counts ([`tokenizer`]).
//! - Latency: [`LatencyModel`] — time to first token log-normal with the configured median
//!   and 99th percentile; per-token intervals log-normal around `per_token`.
//! - Randomness: [`rng_for`] derives an independent generator from the configured seed and a
//!   per-request salt, so runs are reproducible request by request.

pub mod text;
pub mod tokenizer;

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal, StandardNormal};
use serde::Deserialize;

use crate::units::de_duration;

/// z-score of the 99th percentile of a standard normal distribution.
const Z_P99: f64 = 2.326_347_874;

/// A generator seeded from `seed` and `salt` (e.g. a request number or a prompt hash),
/// mixed so that nearby salts give unrelated streams.
pub fn rng_for(seed: u64, salt: u64) -> SmallRng {
    SmallRng::seed_from_u64(splitmix64(seed ^ splitmix64(salt)))
}

/// Mixed into the seed of the latency streams, so they differ from the text streams.
const LATENCY_SALT: u64 = 0x006c_6174_656e_6379;

/// The stream a server with `seed` draws request number `number`'s latency from: the time
/// to first token, then each further token's interval. The simulator draws from the same
/// stream to reproduce a live run's latencies request by request.
pub fn latency_rng(seed: u64, number: u64) -> SmallRng {
    rng_for(seed ^ LATENCY_SALT, number)
}

/// The stream a server with `seed` draws request number `number`'s output from when the
/// request sets neither `seed` nor temperature 0: its natural length
/// ([`OutputTokens::sample`]) first, then its text.
pub fn output_rng(seed: u64, number: u64) -> SmallRng {
    rng_for(seed, number)
}

/// SplitMix64's finalizer: a fast, well-mixing bijection on `u64`.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a, a stable 64-bit hash of bytes (seeds from prompt text; not for security).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The distribution of a completion's natural length, in tokens (before `max_tokens`).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(tag = "distribution", rename_all = "lowercase", deny_unknown_fields)]
pub enum OutputTokens {
    /// Always `tokens`.
    Fixed {
        /// Tokens per completion (at least 1).
        tokens: u32,
    },
    /// Uniform over `min..=max` tokens.
    Uniform {
        /// Fewest tokens (at least 1).
        min: u32,
        /// Most tokens (at least `min`).
        max: u32,
    },
    /// Log-normal with the given median (tokens) and shape `sigma` (of the underlying
    /// normal; 0 = always the median), clamped to `1..=max`.
    LogNormal {
        /// Median tokens.
        median: u32,
        /// Shape; 0.5 gives a p99 of about 3.2 × the median.
        sigma: f64,
        /// Upper clamp, in tokens.
        max: u32,
    },
}

impl Default for OutputTokens {
    /// Log-normal, median 64 tokens, sigma 0.5, at most 1024.
    fn default() -> Self {
        Self::LogNormal {
            median: 64,
            sigma: 0.5,
            max: 1024,
        }
    }
}

impl OutputTokens {
    /// Draws a natural completion length in tokens (at least 1).
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> u32 {
        let n = match *self {
            Self::Fixed { tokens } => tokens,
            Self::Uniform { min, max } => rng.random_range(min..=max.max(min)),
            Self::LogNormal { median, sigma, max } => {
                let draw = lognormal(f64::from(median.max(1)), sigma, rng);
                // `as` saturates a finite or infinite f64 into u32.
                (draw.round() as u32).min(max)
            }
        };
        n.max(1)
    }

    /// A description of what is wrong, or `None` when the parameters are usable.
    pub fn problem(&self) -> Option<String> {
        match *self {
            Self::Uniform { min, max } if min > max => {
                Some(format!("uniform min {min} exceeds max {max}"))
            }
            Self::LogNormal { sigma, .. } if !(sigma.is_finite() && sigma >= 0.0) => {
                Some(format!("log-normal sigma {sigma} must be finite and >= 0"))
            }
            _ => None,
        }
    }
}

/// A log-normal draw with the given median and shape (`sigma` 0 or invalid = the median).
fn lognormal<R: Rng + ?Sized>(median: f64, sigma: f64, rng: &mut R) -> f64 {
    if sigma > 0.0 && sigma.is_finite() && median > 0.0 {
        LogNormal::new(median.ln(), sigma).map_or(median, |d| d.sample(rng))
    } else {
        median
    }
}

/// The latency model, as configured (`[latency]` in the TOML file).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LatencyConfig {
    /// Zero-latency mode: no waits at all; streams are sent in one write.
    pub zero: bool,
    /// Median time to first token.
    #[serde(deserialize_with = "de_duration")]
    pub ttft_median: Duration,
    /// 99th percentile of the time to first token (at least the median).
    #[serde(deserialize_with = "de_duration")]
    pub ttft_p99: Duration,
    /// Median interval between tokens.
    #[serde(deserialize_with = "de_duration")]
    pub per_token: Duration,
    /// Shape of the per-token interval's log-normal (0 = every interval is `per_token`).
    pub per_token_sigma: f64,
}

impl Default for LatencyConfig {
    /// A modelled latency (not zero): TTFT median 200 ms, p99 1 s; 10 ms per token, sigma
    /// 0.2. [`crate::MockConfig::default`] uses [`LatencyConfig::zero_latency`] instead.
    fn default() -> Self {
        Self {
            zero: false,
            ttft_median: Duration::from_millis(200),
            ttft_p99: Duration::from_secs(1),
            per_token: Duration::from_millis(10),
            per_token_sigma: 0.2,
        }
    }
}

impl LatencyConfig {
    /// Zero-latency mode with the default model's parameters kept for reference.
    pub fn zero_latency() -> Self {
        Self {
            zero: true,
            ..Self::default()
        }
    }

    /// A description of what is wrong, or `None` when the parameters are usable.
    pub fn problem(&self) -> Option<String> {
        if self.ttft_p99 < self.ttft_median {
            return Some(format!(
                "ttft_p99 {:?} is below ttft_median {:?}",
                self.ttft_p99, self.ttft_median
            ));
        }
        if !(self.per_token_sigma.is_finite() && self.per_token_sigma >= 0.0) {
            return Some(format!(
                "per_token_sigma {} must be finite and >= 0",
                self.per_token_sigma
            ));
        }
        None
    }
}

/// Samples time to first token and per-token intervals (see [`LatencyConfig`]).
#[derive(Debug, Clone, Copy)]
pub struct LatencyModel {
    zero: bool,
    ttft: Option<LogNormal<f64>>,
    ttft_median: f64,
    per_token: Option<LogNormal<f64>>,
    per_token_median: f64,
}

impl LatencyModel {
    /// The model for `config` (an unusable shape falls back to constant medians).
    pub fn new(config: &LatencyConfig) -> Self {
        let ttft_median = config.ttft_median.as_secs_f64();
        let p99 = config.ttft_p99.as_secs_f64();
        let ttft_sigma = if ttft_median > 0.0 && p99 > ttft_median {
            (p99 / ttft_median).ln() / Z_P99
        } else {
            0.0
        };
        let per_token_median = config.per_token.as_secs_f64();
        let make = |median: f64, sigma: f64| {
            (median > 0.0 && sigma > 0.0 && sigma.is_finite())
                .then(|| LogNormal::new(median.ln(), sigma).ok())
                .flatten()
        };
        Self {
            zero: config.zero,
            ttft: make(ttft_median, ttft_sigma),
            ttft_median,
            per_token: make(per_token_median, config.per_token_sigma),
            per_token_median,
        }
    }

    /// True in zero-latency mode.
    pub fn is_zero(&self) -> bool {
        self.zero
    }

    /// Time to first token (zero in zero-latency mode).
    pub fn ttft<R: Rng + ?Sized>(&self, rng: &mut R) -> Duration {
        self.draw(self.ttft, self.ttft_median, rng)
    }

    /// The interval before one more token (zero in zero-latency mode).
    pub fn per_token<R: Rng + ?Sized>(&self, rng: &mut R) -> Duration {
        self.draw(self.per_token, self.per_token_median, rng)
    }

    /// Time to first token plus `tokens - 1` intervals: a non-streamed response's latency.
    pub fn total<R: Rng + ?Sized>(&self, tokens: u32, rng: &mut R) -> Duration {
        if self.zero {
            return Duration::ZERO;
        }
        let mut total = self.ttft(rng);
        for _ in 1..tokens {
            total += self.per_token(rng);
        }
        total
    }

    fn draw<R: Rng + ?Sized>(
        &self,
        dist: Option<LogNormal<f64>>,
        median: f64,
        rng: &mut R,
    ) -> Duration {
        if self.zero {
            return Duration::ZERO;
        }
        let secs = dist.map_or(median, |d| d.sample(rng));
        Duration::try_from_secs_f64(secs).unwrap_or(Duration::ZERO)
    }
}

/// A deterministic unit-length embedding of `text` with `dims` components: the same text
/// and seed always give the same vector.
pub fn embedding(text: &str, dims: usize, seed: u64) -> Vec<f32> {
    let mut rng = rng_for(seed, fnv1a(text.as_bytes()));
    let mut v: Vec<f32> = (0..dims)
        .map(|_| -> f32 { StandardNormal.sample(&mut rng) })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_lengths_follow_their_distribution() {
        let mut rng = rng_for(1, 2);
        assert_eq!(OutputTokens::Fixed { tokens: 7 }.sample(&mut rng), 7);
        assert_eq!(OutputTokens::Fixed { tokens: 0 }.sample(&mut rng), 1);
        let u = OutputTokens::Uniform { min: 5, max: 9 };
        assert!((0..1000).all(|_| (5..=9).contains(&u.sample(&mut rng))));
        let l = OutputTokens::LogNormal {
            median: 100,
            sigma: 0.5,
            max: 10_000,
        };
        let mut draws: Vec<u32> = (0..4001).map(|_| l.sample(&mut rng)).collect();
        draws.sort_unstable();
        let median = draws[2000];
        assert!((90..=110).contains(&median), "median {median}");
    }

    #[test]
    fn ttft_matches_median_and_p99() {
        let model = LatencyModel::new(&LatencyConfig {
            zero: false,
            ttft_median: Duration::from_millis(200),
            ttft_p99: Duration::from_millis(1000),
            per_token: Duration::from_millis(10),
            per_token_sigma: 0.0,
        });
        let mut rng = rng_for(3, 4);
        let mut d: Vec<Duration> = (0..20_000).map(|_| model.ttft(&mut rng)).collect();
        d.sort_unstable();
        let (p50, p99) = (d[10_000].as_secs_f64(), d[19_800].as_secs_f64());
        assert!((0.18..0.22).contains(&p50), "p50 {p50}");
        assert!((0.85..1.15).contains(&p99), "p99 {p99}");
        assert_eq!(model.per_token(&mut rng), Duration::from_millis(10));
    }

    #[test]
    fn zero_latency_never_waits() {
        let model = LatencyModel::new(&LatencyConfig::zero_latency());
        let mut rng = rng_for(0, 0);
        assert_eq!(model.total(500, &mut rng), Duration::ZERO);
    }

    #[test]
    fn embeddings_are_deterministic_unit_vectors() {
        let a = embedding("hello", 64, 9);
        assert_eq!(a, embedding("hello", 64, 9));
        assert_ne!(a, embedding("hello!", 64, 9));
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4);
    }
}
