//! Durations on the wire and in configuration.
//!
//! Providers write durations two ways the mocks must reproduce: OpenAI's reset headers and
//! 429 messages use Go's `time.Duration` text (`20ms`, `1.2s`, `6m0s`), and `retry-after`
//! is whole seconds. Configuration files use human strings (`"250ms"`, `"10s"`). This crate
//! depends on nothing of the hub, so it carries its own small parser and formatter.

use std::fmt::Write;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Nanoseconds since an epoch chosen by whoever supplies `now` (see [`crate::clock`]).
pub type Nanos = u64;

/// Nanoseconds in one millisecond.
pub const NANOS_PER_MS: u64 = 1_000_000;
/// Nanoseconds in one second.
pub const NANOS_PER_SEC: u64 = 1_000_000_000;

/// Converts a [`Duration`] to nanoseconds, saturating at `u64::MAX` (about 584 years).
pub fn nanos(d: Duration) -> Nanos {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Rounds a duration up to whole milliseconds, so a client that waits the advertised time
/// never arrives early.
pub fn ceil_ms(d: Duration) -> u64 {
    nanos(d).div_ceil(NANOS_PER_MS)
}

/// Rounds a duration up to whole seconds (the `retry-after` header's unit).
pub fn ceil_secs(d: Duration) -> u64 {
    nanos(d).div_ceil(NANOS_PER_SEC)
}

/// Formats a duration as Go's `time.Duration.String()` does, after rounding it up to whole
/// milliseconds: `0s`, `7ms`, `20s`, `18.642s`, `6m0s`, `2m5.5s`, `1h0m0s`.
///
/// OpenAI's `x-ratelimit-reset-*` headers and the "Please try again in …" text use this form.
pub fn go_duration_ms(d: Duration) -> String {
    let mut out = String::with_capacity(12);
    write_go_duration_ms(&mut out, d);
    out
}

/// Appends [`go_duration_ms`]`(d)` to `out` (no intermediate string).
pub fn write_go_duration_ms(out: &mut impl Write, d: Duration) {
    let ms = ceil_ms(d);
    // Writing to a string or buffer cannot fail; the results are ignored.
    if ms == 0 {
        let _ = out.write_str("0s");
    } else if ms < 1_000 {
        let _ = write!(out, "{ms}ms");
    } else {
        let hours = ms / 3_600_000;
        let minutes = (ms / 60_000) % 60;
        let secs = (ms / 1_000) % 60;
        let frac = ms % 1_000;
        if hours > 0 {
            let _ = write!(out, "{hours}h{minutes}m");
        } else if minutes > 0 {
            let _ = write!(out, "{minutes}m");
        }
        let _ = write!(out, "{secs}");
        if frac > 0 {
            // Milliseconds as a decimal fraction without trailing zeros: 500 -> ".5".
            let (digits, width) = match frac {
                f if f % 100 == 0 => (f / 100, 1),
                f if f % 10 == 0 => (f / 10, 2),
                f => (f, 3),
            };
            let _ = write!(out, ".{digits:0width$}");
        }
        let _ = out.write_str("s");
    }
}

/// An error from [`parse_duration`]: the text that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {text:?}: expected a number with a unit (ns, us, ms, s, m, h), e.g. \"250ms\" or \"2m5.5s\"")]
pub struct DurationError {
    /// The rejected text.
    pub text: String,
}

/// Parses a human duration: one or more `<number><unit>` parts with units `ns`, `us`/`µs`,
/// `ms`, `s`, `m`, `h` (`"250ms"`, `"10s"`, `"2m5.5s"`, `"1h"`), or `"0"`.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let err = || DurationError {
        text: text.to_owned(),
    };
    let s = text.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(err());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        if num_len == 0 {
            return Err(err());
        }
        let value: f64 = rest[..num_len].parse().map_err(|_| err())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(err()),
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| err())
}

/// Serde adapter: reads a [`Duration`] from a human string (see [`parse_duration`]).
pub fn de_duration<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(de)?;
    parse_duration(&text).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_format_matches_provider_examples() {
        let ms = Duration::from_millis;
        assert_eq!(go_duration_ms(Duration::ZERO), "0s");
        assert_eq!(go_duration_ms(ms(20)), "20ms");
        assert_eq!(go_duration_ms(ms(1_200)), "1.2s");
        assert_eq!(go_duration_ms(ms(20_000)), "20s");
        assert_eq!(go_duration_ms(ms(18_642)), "18.642s");
        assert_eq!(go_duration_ms(ms(360_000)), "6m0s");
        assert_eq!(go_duration_ms(ms(125_500)), "2m5.5s");
        assert_eq!(go_duration_ms(ms(1_050)), "1.05s");
        assert_eq!(go_duration_ms(ms(61_005)), "1m1.005s");
        assert_eq!(go_duration_ms(ms(3_600_000)), "1h0m0s");
        // Rounded up, never down: a client waiting the advertised time is never early.
        assert_eq!(go_duration_ms(Duration::from_nanos(1)), "1ms");
        assert_eq!(go_duration_ms(Duration::from_micros(19_999_001)), "20s");
    }

    #[test]
    fn parses_human_durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m5.5s"), Ok(Duration::from_millis(125_500)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("15us"), Ok(Duration::from_micros(15)));
        for bad in ["", "ms", "10", "10 parsecs", "1.2.3s", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn ceilings_round_up() {
        assert_eq!(ceil_ms(Duration::from_nanos(1)), 1);
        assert_eq!(ceil_ms(Duration::from_millis(20)), 20);
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(20)), 20);
    }
}
