//! Human units in configuration: durations (`"250ms"`, `"10m"`, `"6m0s"`, `"1.2s"`) and
//! rates (`"500/min"`, `"10/s"`, `"10/10s"`).
//!
//! One parser serves config files, scenario files and provider headers (OpenAI's reset
//! headers are Go durations such as `2m5.5s`), so they all accept the same spellings.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A value that is not a duration or rate this module understands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {input:?}: {reason}")]
pub struct UnitError {
    what: &'static str,
    input: String,
    reason: &'static str,
}

impl UnitError {
    fn new(what: &'static str, input: &str, reason: &'static str) -> Self {
        Self {
            what,
            input: input.to_owned(),
            reason,
        }
    }
}

/// Parses a duration: one or more `<number><unit>` parts, `number` possibly fractional,
/// `unit` one of `ns`, `us`/`µs`, `ms`, `s`, `m`/`min`, `h`. Examples: `"250ms"`, `"1.5s"`,
/// `"6m0s"`, `"2m5.5s"`, `"1h30m"`. A bare `"0"` is zero. Whitespace between parts is allowed.
pub fn parse_duration(input: &str) -> Result<Duration, UnitError> {
    let err = |reason| UnitError::new("duration", input, reason);
    let s = input.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(err("empty"));
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        rest = rest.trim_start();
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(err("expected a number"));
        }
        let value: f64 = rest[..num_len]
            .parse()
            .map_err(|_| err("malformed number"))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.' || c.is_whitespace())
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" | "sec" | "secs" => 1.0,
            "m" | "min" | "mins" => 60.0,
            "h" | "hr" | "hrs" => 3600.0,
            "" => return Err(err("missing unit (ns, us, ms, s, m, h)")),
            _ => return Err(err("unknown unit (ns, us, ms, s, m, h)")),
        };
        rest = &rest[unit_len..];
        total += value * scale;
    }
    if !total.is_finite() || total > 1e12 {
        return Err(err("out of range"));
    }
    Ok(Duration::from_secs_f64(total))
}

/// An amount per window, e.g. `500/min` = 500 per 60 s. The amount's unit (requests or
/// tokens) is given by where the rate is used.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// How many per window (may be fractional only for arrival rates, e.g. `0.5/s`).
    pub amount: f64,
    /// The window the amount refers to; never zero.
    pub per: Duration,
}

impl Rate {
    /// The rate in units per second.
    pub fn per_second(&self) -> f64 {
        self.amount / self.per.as_secs_f64()
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{:?}", self.amount, self.per)
    }
}

/// Parses a rate `<amount>/<window>` where window is `s`, `sec`, `min`, `m`, `h` or any
/// duration such as `10s`: `"500/min"`, `"10/s"`, `"10/10s"`, `"0.5/s"`.
pub fn parse_rate(input: &str) -> Result<Rate, UnitError> {
    let err = |reason| UnitError::new("rate", input, reason);
    let (amount, window) = input
        .trim()
        .split_once('/')
        .ok_or_else(|| err("expected <amount>/<window>, e.g. 500/min"))?;
    let amount: f64 = amount.trim().parse().map_err(|_| err("malformed amount"))?;
    if !amount.is_finite() || amount < 0.0 {
        return Err(err("amount must be a non-negative number"));
    }
    let window = window.trim();
    let per = match window {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        other => parse_duration(other).map_err(|_| err("malformed window"))?,
    };
    if per.is_zero() {
        return Err(err("window must be longer than zero"));
    }
    Ok(Rate { amount, per })
}

/// Serde adapter: a duration written as a human string. Use with
/// `#[serde(deserialize_with = "crate::units::de_duration")]`.
pub fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

/// Serde adapter for `Option<Duration>` written as a human string.
pub fn de_opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|s| parse_duration(&s).map_err(serde::de::Error::custom))
        .transpose()
}

/// Serde adapter: a rate written as `"500/min"`.
pub fn de_rate<'de, D: Deserializer<'de>>(d: D) -> Result<Rate, D::Error> {
    let s = String::deserialize(d)?;
    parse_rate(&s).map_err(serde::de::Error::custom)
}

/// Serde adapter for `Option<Rate>`.
pub fn de_opt_rate<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Rate>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|s| parse_rate(&s).map_err(serde::de::Error::custom))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_and_human_durations() {
        let ms = Duration::from_millis;
        assert_eq!(parse_duration("20ms").unwrap(), ms(20));
        assert_eq!(parse_duration("1.2s").unwrap(), ms(1200));
        assert_eq!(parse_duration("6m0s").unwrap(), ms(360_000));
        assert_eq!(parse_duration("2m5.5s").unwrap(), ms(125_500));
        assert_eq!(parse_duration("10m").unwrap(), ms(600_000));
        assert_eq!(parse_duration("1h30m").unwrap(), ms(5_400_000));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("1h 2m").unwrap(), ms(3_720_000));
    }

    #[test]
    fn rejects_bad_durations_with_reason() {
        for bad in ["", "5", "ms", "1.2.3s", "5 parsecs", "-1s"] {
            let e = parse_duration(bad).unwrap_err().to_string();
            assert!(e.contains("invalid duration"), "{bad}: {e}");
        }
    }

    #[test]
    fn parses_rates() {
        let r = parse_rate("500/min").unwrap();
        assert_eq!((r.amount, r.per), (500.0, Duration::from_secs(60)));
        assert_eq!(parse_rate("10/10s").unwrap().per, Duration::from_secs(10));
        assert!((parse_rate("0.5/s").unwrap().per_second() - 0.5).abs() < 1e-12);
        assert!(parse_rate("10").is_err());
        assert!(parse_rate("10/0s").is_err());
        assert!(parse_rate("x/s").is_err());
    }
}
