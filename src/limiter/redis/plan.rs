//! A key's limits turned into what the script needs: Redis key names, the packed plan
//! (one parameter block per dimension), the capacities checked without a round trip, the
//! idle TTL. Resolved once per key and cached; pure, so it is unit-tested without Redis.

use std::time::Duration;

use crate::limiter::backoff::RetryPolicy;
use crate::limiter::config::{
    ChargeAt, ConfigError, Limit, RateLimitConfig, RateLimitType, Strategy, TokenAccounting,
};
use crate::limiter::{Cost, Denial, LimitKey};

use crate::limiter::backend::RedisSettings;

/// Largest scaled quantity the script keeps exact (Lua numbers are doubles: 2^53, with
/// one bit of room for sums of two such values).
const EXACT_LIMIT: u128 = 1 << 52;

/// The script's number for each strategy name (see `lua/limiter.lua`).
fn code_number(code: &str) -> u8 {
    match code {
        "tb" => 1,
        "gcra" => 2,
        "leaky" => 3,
        "log" => 4,
        "ctr" => 5,
        _ => 6, // conc
    }
}

/// Appends `v` as the script reads numbers: a little-endian IEEE double. Every value the
/// limiter sends is an integer below 2^53 (checked for the scaled quantities), so the
/// double is exact — the same number the script used to parse from decimal text.
pub(crate) fn put(out: &mut Vec<u8>, v: f64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// The script's name for each strategy.
fn code(strategy: Strategy, kind: RateLimitType) -> &'static str {
    if kind == RateLimitType::Concurrent {
        return "conc";
    }
    match strategy {
        Strategy::TokenBucket => "tb",
        Strategy::Gcra => "gcra",
        // Documented choice: a leaky bucket runs as GCRA with zero tolerance — the same
        // pacing (one unit per window/amount, no burst), without a client-side queue.
        Strategy::LeakyBucket => "leaky",
        Strategy::SlidingLog => "log",
        Strategy::SlidingCounter => "ctr",
    }
}

/// A short name for the dimension, unique within a key (part of field and key names).
fn kind_label(kind: RateLimitType) -> String {
    match kind {
        RateLimitType::RequestsPerSecond => "rps".into(),
        RateLimitType::RequestsPerMinute => "rpm".into(),
        RateLimitType::RequestsPer(w) => format!("req{}", w.as_micros()),
        RateLimitType::TokensPerMinute => "tpm".into(),
        RateLimitType::TokensPer(w) => format!("tok{}", w.as_micros()),
        RateLimitType::InputTokensPerMinute => "itpm".into(),
        RateLimitType::InputTokensPer(w) => format!("itok{}", w.as_micros()),
        RateLimitType::OutputTokensPerMinute => "otpm".into(),
        RateLimitType::OutputTokensPer(w) => format!("otok{}", w.as_micros()),
        RateLimitType::Concurrent => "conc".into(),
    }
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// One dimension as the client sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DimPlan {
    /// The resolved limit.
    pub limit: Limit,
    /// The largest cost that can ever be admitted, in the dimension's unit.
    pub capacity: u64,
}

/// Everything needed to call the script for one key.
#[derive(Debug)]
pub(crate) struct KeyPlan {
    /// The key.
    pub key: LimitKey,
    /// KEYS: the state key first, then the side key of each sliding-log and concurrency
    /// dimension, in dimension order.
    pub keys: Vec<String>,
    /// The idle TTL in ms, as decimal text.
    pub ttl_ms: String,
    /// The packed plan: dimension count, then per dimension its code, label, amount,
    /// burst, window (µs), unit and rate (layout in `lua/limiter.lua`).
    pub plan: Vec<u8>,
    /// The dimensions, in the config's stable order.
    pub dims: Vec<DimPlan>,
    /// Reconciliation rule of the key.
    pub accounting: TokenAccounting,
    /// When each token unit is charged (applied to estimates before admission).
    pub charge_at: ChargeAt,
    /// Longest `acquire` wait; `None` = unbounded.
    pub max_wait: Option<Duration>,
    /// Most local `acquire` waiters.
    pub max_waiters: usize,
    /// Jitter fraction added to a pause's wait.
    pub pause_jitter: f64,
    /// Retry policy for `backoff_delay`.
    pub retry: RetryPolicy,
}

impl KeyPlan {
    /// Resolves `config` (`None` = unlimited) for `key` under `settings`.
    pub fn new(
        key: &LimitKey,
        config: Option<&RateLimitConfig>,
        settings: &RedisSettings,
    ) -> Result<Self, ConfigError> {
        let default = RateLimitConfig::default();
        let cfg = config.unwrap_or(&default);
        let limits = if config.is_some() {
            cfg.dimensions()?
        } else {
            Vec::new()
        };
        let base = format!("{}:{{{}}}", settings.key_prefix, key_tag(key));
        let mut keys = vec![base.clone()];
        let mut plan = Vec::with_capacity(1 + limits.len() * 60);
        let mut dims = Vec::with_capacity(limits.len());
        let mut longest = Duration::ZERO;
        let mut has_conc = false;
        plan.push(
            u8::try_from(limits.len()).map_err(|_| ConfigError::Invalid {
                field: "limits",
                value: limits.len().to_string(),
                reason: "at most 255 dimensions per key on redis",
            })?,
        );
        for limit in limits {
            let code = code(cfg.strategy, limit.kind);
            let label = format!("{code}:{}", kind_label(limit.kind));
            if matches!(code, "log" | "conc") {
                keys.push(format!("{base}:{label}"));
            }
            let (window_us, unit, rate, capacity) = match limit.kind.window() {
                Some(w) => {
                    let window_us = w.as_micros().max(1);
                    let g = gcd(u128::from(limit.amount), window_us);
                    let (unit, rate) = (window_us / g, u128::from(limit.amount) / g);
                    let capacity = match cfg.strategy {
                        Strategy::TokenBucket | Strategy::Gcra => limit.burst,
                        _ => limit.amount,
                    };
                    // Buckets keep levels in scaled units up to amount · unit; the
                    // windows count plain units (the counter's weighting may round
                    // beyond 2^53, which only blurs an estimate that is approximate).
                    let scaled = matches!(code, "tb" | "gcra" | "leaky");
                    if scaled && u128::from(limit.amount) * unit >= EXACT_LIMIT {
                        return Err(ConfigError::Invalid {
                            field: "limits",
                            value: format!("{} per {w:?}", limit.amount),
                            reason: "too large for exact arithmetic in redis \
                                     (amount × window in µs / gcd must stay below 2^52)",
                        });
                    }
                    longest = longest.max(w);
                    (window_us, unit, rate, capacity)
                }
                None => {
                    has_conc = true;
                    (1, 1, 1, limit.amount)
                }
            };
            plan.push(code_number(code));
            plan.push(u8::try_from(label.len()).map_err(|_| ConfigError::Invalid {
                field: "limits",
                value: label.clone(),
                reason: "dimension name too long for redis (255 bytes at most)",
            })?);
            plan.extend_from_slice(label.as_bytes());
            // u64/u128 → f64 rounds to nearest, as parsing the decimal text did.
            for v in [
                limit.amount as f64,
                limit.burst as f64,
                window_us as f64,
                unit as f64,
                rate as f64,
            ] {
                put(&mut plan, v);
            }
            dims.push(DimPlan { limit, capacity });
        }
        let mut ttl = settings.idle_ttl.max(longest * 2);
        if has_conc {
            ttl = ttl.max(settings.lease_ttl);
        }
        Ok(Self {
            key: key.clone(),
            keys,
            ttl_ms: ttl.as_millis().max(1).to_string(),
            plan,
            dims,
            accounting: cfg.accounting,
            charge_at: cfg.charge_at,
            max_wait: cfg.max_wait,
            max_waiters: cfg.max_waiters,
            pause_jitter: cfg.pause_jitter,
            retry: cfg.backoff.policy(),
        })
    }

    /// `Denial::Exceeds` for the first dimension whose capacity `estimate` can never fit.
    pub fn exceeds(&self, estimate: Cost) -> Option<Denial> {
        self.dims.iter().find_map(|d| {
            let cost = d.limit.kind.cost_of(estimate);
            (cost > d.capacity).then_some(Denial::Exceeds {
                dimension: d.limit.kind,
                cost,
                capacity: d.capacity,
            })
        })
    }

    /// The estimate's cost in each dimension's unit, in dimension order.
    pub fn costs(&self, estimate: Cost) -> impl Iterator<Item = u64> + '_ {
        self.dims
            .iter()
            .map(move |d| d.limit.kind.cost_of(estimate))
    }

    /// Whether a dimension needs the admission's sequence number later (log entries,
    /// concurrency leases).
    pub fn has_lease(&self) -> bool {
        self.dims
            .iter()
            .any(|d| d.limit.kind == RateLimitType::Concurrent)
    }
}

/// The key's identity inside a Redis hash tag: parts percent-escaped so that `/`, `{`,
/// `}` and `%` in a name can neither collide with another key nor break the tag.
fn key_tag(key: &LimitKey) -> String {
    fn esc(out: &mut String, part: &str) {
        for c in part.chars() {
            match c {
                '/' => out.push_str("%2F"),
                '{' => out.push_str("%7B"),
                '}' => out.push_str("%7D"),
                '%' => out.push_str("%25"),
                c => out.push(c),
            }
        }
    }
    let mut out = String::new();
    esc(&mut out, &key.provider);
    out.push('/');
    esc(&mut out, &key.model);
    if let Some(d) = &key.deployment {
        out.push('/');
        esc(&mut out, d);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limiter::config::Limits;

    fn settings() -> RedisSettings {
        RedisSettings::new("redis://127.0.0.1:1")
    }

    #[test]
    fn input_and_output_token_dimensions_get_their_own_names_and_side_keys() {
        let cfg = RateLimitConfig::from_toml(
            "strategy = \"sliding_log\"\nlimits = { tpm = 900, itpm = 600, otpm = 300, \
             input_tokens = \"60/1s\", output_tokens = \"30/1s\" }\n\
             charge_at = { output = \"usage\" }",
        )
        .unwrap();
        let p = KeyPlan::new(&LimitKey::new("p", "m"), Some(&cfg), &settings()).unwrap();
        let labels: Vec<String> = decode(&p.plan).into_iter().map(|d| d.1).collect();
        assert_eq!(
            labels,
            [
                "log:tpm",
                "log:itpm",
                "log:itok1000000",
                "log:otpm",
                "log:otok1000000"
            ]
        );
        let sides: Vec<&str> = p.keys[1..]
            .iter()
            .map(|k| k.rsplit(':').next().unwrap())
            .collect();
        assert_eq!(sides, ["tpm", "itpm", "itok1000000", "otpm", "otok1000000"]);
        assert_eq!(p.charge_at, cfg.charge_at);
        // Admission sees the estimate as charged: the output part charged at usage is free
        // on output dimensions (the total, charged at admission, still counts it).
        let est = Cost::request(0).with_split(50, 800);
        assert_eq!(p.exceeds(p.charge_at.admission_cost(est)), None);
        assert_eq!(
            p.exceeds(est).and_then(|d| d.dimension()),
            Some(RateLimitType::OutputTokensPerMinute)
        );
    }

    #[test]
    fn encodes_scaled_units_reduced_by_gcd() {
        let cfg = RateLimitConfig::new(
            Strategy::Gcra,
            Limits {
                rpm: Some(60),
                tpm: Some(7),
                ..Limits::default()
            },
        );
        let key = LimitKey::new("openai", "gpt/4{x}");
        let p = KeyPlan::new(&key, Some(&cfg), &settings()).unwrap();
        // Buckets keep no side key.
        assert_eq!(p.keys, ["hub:rl:{openai/gpt%2F4%7Bx%7D}"]);
        let dims = decode(&p.plan);
        // 60 per 60 000 000 µs: gcd 60 → unit 1 000 000 scaled units per request, rate 1.
        assert_eq!(
            dims[0],
            (
                2,
                "gcra:rpm".into(),
                [60.0, 60.0, 60_000_000.0, 1_000_000.0, 1.0]
            )
        );
        // 7 per 60 s: coprime → unit 60 000 000, rate 7.
        assert_eq!(
            dims[1],
            (
                2,
                "gcra:tpm".into(),
                [7.0, 7.0, 60_000_000.0, 60_000_000.0, 7.0]
            )
        );
        assert_eq!(p.ttl_ms, "600000", "idle TTL in ms");
    }

    /// The plan as the script reads it: `(code, label, [amount, burst, window, unit, rate])`.
    fn decode(plan: &[u8]) -> Vec<(u8, String, [f64; 5])> {
        let n = usize::from(plan[0]);
        let mut at = 1;
        let mut out = Vec::new();
        for _ in 0..n {
            let code = plan[at];
            let len = usize::from(plan[at + 1]);
            let label = String::from_utf8(plan[at + 2..at + 2 + len].to_vec()).unwrap();
            at += 2 + len;
            let mut v = [0.0; 5];
            for x in &mut v {
                *x = f64::from_le_bytes(plan[at..at + 8].try_into().unwrap());
                at += 8;
            }
            out.push((code, label, v));
        }
        assert_eq!(at, plan.len());
        out
    }

    #[test]
    fn side_keys_only_for_logs_and_leases() {
        let cfg = RateLimitConfig::new(
            Strategy::SlidingLog,
            Limits {
                rps: Some(5),
                tpm: Some(100),
                concurrent: Some(2),
                ..Limits::default()
            },
        );
        let p = KeyPlan::new(&LimitKey::new("p", "m"), Some(&cfg), &settings()).unwrap();
        let dims = decode(&p.plan);
        let with_side: Vec<String> = dims
            .iter()
            .filter(|d| d.0 == 4 || d.0 == 6)
            .map(|d| format!("hub:rl:{{p/m}}:{}", d.1))
            .collect();
        assert_eq!(p.keys[0], "hub:rl:{p/m}");
        assert_eq!(p.keys[1..], with_side[..]);
        assert_eq!(
            p.keys.len(),
            1 + dims.len(),
            "every dimension here has a side key"
        );
    }

    #[test]
    fn capacity_is_burst_for_buckets_and_amount_for_windows() {
        let limits = Limits {
            tpm: Some(1000),
            ..Limits::default()
        };
        let mut cfg = RateLimitConfig::new(Strategy::TokenBucket, limits.clone());
        cfg.burst = Some(0.5);
        let p = KeyPlan::new(&LimitKey::new("p", "m"), Some(&cfg), &settings()).unwrap();
        assert_eq!(
            p.exceeds(Cost::request(501)),
            Some(Denial::Exceeds {
                dimension: RateLimitType::TokensPerMinute,
                cost: 501,
                capacity: 500
            })
        );
        assert_eq!(p.exceeds(Cost::request(500)), None);
        cfg.strategy = Strategy::SlidingLog;
        let p = KeyPlan::new(&LimitKey::new("p", "m"), Some(&cfg), &settings()).unwrap();
        assert_eq!(p.exceeds(Cost::request(1000)), None);
    }

    #[test]
    fn rejects_limits_beyond_exact_arithmetic() {
        let cfg = RateLimitConfig::new(
            Strategy::TokenBucket,
            Limits {
                tpm: Some(150_000_001),
                ..Limits::default()
            },
        );
        let e = KeyPlan::new(&LimitKey::new("p", "m"), Some(&cfg), &settings()).unwrap_err();
        assert!(e.to_string().contains("exact arithmetic"), "{e}");
    }

    #[test]
    fn ttl_covers_two_windows_and_leases() {
        let mut s = settings();
        s.idle_ttl = Duration::from_secs(1);
        let cfg = RateLimitConfig::new(
            Strategy::SlidingCounter,
            Limits {
                tokens: Some(crate::units::parse_rate("5/90s").unwrap()),
                ..Limits::default()
            },
        );
        let p = KeyPlan::new(&LimitKey::new("p", "m"), Some(&cfg), &s).unwrap();
        assert_eq!(p.ttl_ms, "180000");
    }
}
