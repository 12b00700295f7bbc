//! What every strategy shares: a [`Limit`] normalised into integer parameters
//! ([`Params`]), the longest window honoured exactly ([`MAX_WINDOW_NANOS`]), and the
//! saturating conversion of scaled waits to nanoseconds ([`saturate`]).
//!
//! Kept apart from [`algorithm`](super::algorithm), which dispatches to the strategies, so
//! the strategies depend on this module and `algorithm` on them, never both ways.

use crate::clock::Nanos;

use super::config::Limit;

/// The longest window the strategies honour exactly, in nanoseconds (2^62 ns ≈ 146 years).
/// Longer windows are treated as this long; it keeps every scaled product inside `u128`.
pub const MAX_WINDOW_NANOS: u64 = 1 << 62;

/// A [`Limit`] normalised for the state machines: `amount ≥ 1`, `1 ≤ burst ≤ amount`,
/// `1 ≤ window ≤ MAX_WINDOW_NANOS` nanoseconds. Malformed limits (zero amount, burst out
/// of range) are clamped into range instead of panicking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Params {
    /// Units (requests or tokens) per window, ≥ 1.
    pub(super) amount: u64,
    /// Bucket capacity in units, `1 ..= amount`.
    pub(super) burst: u64,
    /// The window in nanoseconds, `1 ..= MAX_WINDOW_NANOS`.
    pub(super) window: u64,
}

impl Params {
    /// The normalised parameters of `limit` (a `Concurrent` limit gets a 1 ns window; it
    /// never reaches a strategy).
    pub(super) fn of(limit: &Limit) -> Self {
        let amount = limit.amount.max(1);
        let window = limit.kind.window().map_or(1, |w| {
            u64::try_from(w.as_nanos())
                .unwrap_or(u64::MAX)
                .clamp(1, MAX_WINDOW_NANOS)
        });
        Self {
            amount,
            burst: limit.burst.clamp(1, amount),
            window,
        }
    }
}

/// Converts a scaled wait to nanoseconds, saturating at `Nanos::MAX` ("never").
#[inline]
pub(super) fn saturate(n: u128) -> Nanos {
    u64::try_from(n).unwrap_or(Nanos::MAX)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::limiter::config::RateLimitType;

    #[test]
    fn malformed_limits_are_clamped_not_panicking() {
        let limit = Limit {
            kind: RateLimitType::RequestsPer(Duration::ZERO),
            amount: 0,
            burst: 0,
        };
        assert_eq!(
            Params::of(&limit),
            Params {
                amount: 1,
                burst: 1,
                window: 1
            }
        );
        let huge = Limit {
            kind: RateLimitType::TokensPer(Duration::MAX),
            amount: 5,
            burst: 9,
        };
        let p = Params::of(&huge);
        assert_eq!((p.burst, p.window), (5, MAX_WINDOW_NANOS));
    }
}
