//! A key's limits turned into what the script needs: Redis key names, one encoded
//! parameter block per dimension, the capacities checked without a round trip, the idle
//! TTL. Resolved once per key and cached; pure, so it is unit-tested without Redis.

use std::time::Duration;

use crate::limiter::backoff::RetryPolicy;
use crate::limiter::config::{
    ConfigError, Limit, RateLimitConfig, RateLimitType, Strategy, TokenAccounting,
};
use crate::limiter::{Cost, Denial, LimitKey};

use super::settings::RedisSettings;

/// Largest scaled quantity the script keeps exact (Lua numbers are doubles: 2^53, with
/// one bit of room for sums of two such values).
const EXACT_LIMIT: u128 = 1 << 52;

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
    /// KEYS: the state hash first, then one side key per dimension.
    pub keys: Vec<String>,
    /// ARGV[2..]: idle TTL (ms), dimension count, 7 values per dimension.
    pub head: Vec<String>,
    /// The dimensions, in the config's stable order.
    pub dims: Vec<DimPlan>,
    /// Reconciliation rule of the key.
    pub accounting: TokenAccounting,
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
        let mut head = Vec::with_capacity(2 + limits.len() * 7);
        let mut dims = Vec::with_capacity(limits.len());
        let mut longest = Duration::ZERO;
        let mut has_conc = false;
        head.push(String::new()); // TTL, filled below
        head.push(limits.len().to_string());
        for limit in limits {
            let code = code(cfg.strategy, limit.kind);
            let label = format!("{code}:{}", kind_label(limit.kind));
            keys.push(format!("{base}:{label}"));
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
            head.extend([
                code.to_owned(),
                label,
                limit.amount.to_string(),
                limit.burst.to_string(),
                window_us.to_string(),
                unit.to_string(),
                rate.to_string(),
            ]);
            dims.push(DimPlan { limit, capacity });
        }
        let mut ttl = settings.idle_ttl.max(longest * 2);
        if has_conc {
            ttl = ttl.max(settings.lease_ttl);
        }
        head[0] = ttl.as_millis().max(1).to_string();
        Ok(Self {
            key: key.clone(),
            keys,
            head,
            dims,
            accounting: cfg.accounting,
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

/// Per-dimension changes `record_usage` applies: `(request delta, token delta)`, each
/// positive for a refund, negative for an extra charge.
///
/// `Actual` gives back `estimate − actual` (or charges the excess). `Estimate` keeps the
/// charge whatever the actual usage — except for a permit that charged nothing at
/// admission (an after-the-fact report such as `update_usage`): there the actual usage is
/// all there is, and it is charged.
pub(crate) fn reconcile(accounting: TokenAccounting, charged: Cost, actual: Cost) -> (i64, i64) {
    let delta = |est: u64, act: u64| {
        i64::try_from(est)
            .unwrap_or(i64::MAX)
            .saturating_sub(i64::try_from(act).unwrap_or(i64::MAX))
    };
    if accounting == TokenAccounting::Estimate && charged != Cost::ZERO {
        return (0, 0);
    }
    (
        delta(charged.requests, actual.requests),
        delta(charged.tokens, actual.tokens),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limiter::config::Limits;

    fn settings() -> RedisSettings {
        RedisSettings::new("redis://127.0.0.1:1")
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
        assert_eq!(p.keys[0], "hub:rl:{openai/gpt%2F4%7Bx%7D}");
        assert_eq!(p.keys[1], "hub:rl:{openai/gpt%2F4%7Bx%7D}:gcra:rpm");
        // 60 per 60 000 000 µs: gcd 60 → unit 1 000 000 scaled units per request, rate 1.
        assert_eq!(
            &p.head[1..9],
            ["2", "gcra", "gcra:rpm", "60", "60", "60000000", "1000000", "1"]
        );
        // 7 per 60 s: coprime → unit 60 000 000, rate 7.
        assert_eq!(&p.head[13..16], ["60000000", "60000000", "7"]);
        assert_eq!(p.head[0], "600000", "idle TTL in ms");
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
        assert_eq!(p.head[0], "180000");
    }

    #[test]
    fn reconcile_refunds_actual_and_keeps_estimates() {
        use TokenAccounting::*;
        assert_eq!(
            reconcile(Actual, Cost::request(100), Cost::request(30)),
            (0, 70)
        );
        assert_eq!(
            reconcile(Actual, Cost::request(100), Cost::request(130)),
            (0, -30)
        );
        assert_eq!(
            reconcile(Estimate, Cost::request(100), Cost::request(30)),
            (0, 0)
        );
        assert_eq!(reconcile(Estimate, Cost::ZERO, Cost::tokens(40)), (0, -40));
    }
}
