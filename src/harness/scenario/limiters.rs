//! Checks of how requests are limited and judged: the `[retry]` table, every
//! `[[limiter]]` (turned into the library's `RateLimitConfig` and validated by it), the
//! thresholds, and the warnings about settings that will probably not do what was meant.

use std::time::Duration;

use super::error::{Locator, Problem};
use super::fields::{check_name, not_used};
use super::raw::{RawLimiter, RawRetry, RawStrategy, RawThresholds};
use super::{LimiterSpec, ProviderSpec, RetrySpec, Target, Threshold, Workload};
use crate::limiter::{
    Backend, ConfigError, RateLimitConfig, RateLimitType, Strategy, TokenAccounting, Unit,
};

/// Most retries accepted.
const MAX_RETRIES: u32 = 20;

pub(crate) fn retry(r: &RawRetry, loc: &Locator<'_>) -> Result<RetrySpec, Problem> {
    if loc.is_written("retry.backoff.max_retries") {
        return Err(Problem::new(
            "retry.backoff.max_retries",
            "set retry.max_retries instead (one retry budget for the whole scenario)",
        ));
    }
    let mut backoff = r.backoff.clone().unwrap_or_default();
    let max_retries = r.max_retries.unwrap_or(backoff.max_retries);
    if max_retries > MAX_RETRIES {
        return Err(Problem::new(
            "retry.max_retries",
            format!("{max_retries} is above the maximum of {MAX_RETRIES}"),
        ));
    }
    backoff.max_retries = max_retries;
    let field = |f: &str| format!("retry.backoff.{f}");
    if backoff.base.is_zero() {
        return Err(Problem::new(field("base"), "must be longer than zero"));
    }
    if backoff.cap < backoff.base {
        return Err(Problem::new(
            field("cap"),
            format!("{:?} is below base {:?}", backoff.cap, backoff.base),
        ));
    }
    if !(backoff.factor.is_finite() && backoff.factor >= 1.0) {
        return Err(Problem::new(
            field("factor"),
            format!("{} must be >= 1", backoff.factor),
        ));
    }
    if !(0.0..=1.0).contains(&backoff.jitter) {
        return Err(Problem::new(
            field("jitter"),
            format!("{} must be within 0..=1", backoff.jitter),
        ));
    }
    Ok(RetrySpec {
        max_retries,
        backoff,
    })
}

pub(crate) fn limiters(raw: &[RawLimiter], retry: &RetrySpec) -> Result<Vec<LimiterSpec>, Problem> {
    if raw.is_empty() {
        return Err(Problem::new(
            "limiter",
            "at least one [[limiter]] is required (strategy = \"none\" runs without a limiter)",
        ));
    }
    let mut out: Vec<LimiterSpec> = Vec::with_capacity(raw.len());
    for (i, l) in raw.iter().enumerate() {
        let field = |f: &str| format!("limiter[{i}].{f}");
        let name = check_name(&field("name"), &l.name)?;
        if let Some(j) = out.iter().position(|o| o.name == name) {
            return Err(Problem::new(
                field("name"),
                format!("{name:?} is already the name of limiter[{j}]"),
            ));
        }
        let set = [
            ("limits", l.limits.is_some()),
            ("headroom", l.headroom.is_some()),
            ("burst", l.burst.is_some()),
            ("accounting", l.accounting.is_some()),
            ("charge_at", l.charge_at.is_some()),
            ("max_wait", l.max_wait.is_some()),
            ("max_waiters", l.max_waiters.is_some()),
            ("pause_jitter", l.pause_jitter.is_some()),
            ("backend", l.backend.is_some()),
            ("redis_url", l.redis_url.is_some()),
        ];
        let strategy = match l.strategy {
            RawStrategy::None => {
                for (f, present) in set {
                    not_used(
                        field(f),
                        present,
                        "by strategy = \"none\" (the baseline has no limiter)",
                    )?;
                }
                out.push(LimiterSpec {
                    name,
                    strategy: None,
                    limit: None,
                    backend: Backend::Memory,
                    redis_url: None,
                });
                continue;
            }
            RawStrategy::TokenBucket => Strategy::TokenBucket,
            RawStrategy::Gcra => Strategy::Gcra,
            RawStrategy::SlidingLog => Strategy::SlidingLog,
            RawStrategy::SlidingCounter => Strategy::SlidingCounter,
            RawStrategy::LeakyBucket => Strategy::LeakyBucket,
        };
        let limits = l.limits.clone().ok_or_else(|| {
            Problem::new(
                field("limits"),
                "required for a strategy other than \"none\", e.g. limits = { rpm = 300, tpm = 40000 }",
            )
        })?;
        if limits == Default::default() {
            return Err(Problem::new(
                field("limits"),
                "sets no limit: give at least one of rps, rpm, tpm, itpm, otpm, requests, tokens, \
                 input_tokens, output_tokens, concurrent",
            ));
        }
        let defaults = RateLimitConfig::default();
        let cfg = RateLimitConfig {
            strategy,
            limits,
            headroom: l.headroom.unwrap_or(defaults.headroom),
            burst: l.burst,
            accounting: l.accounting.unwrap_or(defaults.accounting),
            charge_at: l.charge_at.unwrap_or(defaults.charge_at),
            max_wait: l.max_wait,
            max_waiters: l.max_waiters.unwrap_or(defaults.max_waiters),
            backoff: retry.backoff.clone(),
            pause_jitter: l.pause_jitter.unwrap_or(defaults.pause_jitter),
        };
        if cfg.max_waiters == 0 {
            return Err(Problem::new(field("max_waiters"), "must be at least 1"));
        }
        cfg.dimensions().map_err(|e| {
            let path = match &e {
                ConfigError::Invalid { field: f, .. }
                    if matches!(*f, "headroom" | "burst" | "pause_jitter") =>
                {
                    field(f)
                }
                ConfigError::Invalid { field: f, .. } => field(&format!("limits.{f}")),
                ConfigError::Toml(_) => field("limits"),
            };
            Problem::new(path, e)
        })?;
        let backend = l.backend.unwrap_or_default();
        match (backend, &l.redis_url) {
            (Backend::Redis, None) => return Err(Problem::new(
                field("redis_url"),
                "required with backend = \"redis\", e.g. redis_url = \"redis://127.0.0.1:6379\"",
            )),
            (Backend::Memory, Some(_)) => {
                return Err(Problem::new(
                    field("redis_url"),
                    "only used with backend = \"redis\"",
                ))
            }
            _ => {}
        }
        out.push(LimiterSpec {
            name,
            strategy: Some(strategy),
            limit: Some(cfg),
            backend,
            redis_url: l.redis_url.clone(),
        });
    }
    Ok(out)
}

pub(super) fn thresholds(
    raw: &RawThresholds,
    provider: &ProviderSpec,
) -> Result<Vec<Threshold>, Problem> {
    raw.entries()
        .into_iter()
        .map(|(metric, expr)| {
            let path = format!("thresholds.{metric}");
            if metric == "quota_utilisation" && provider.quota.and_then(|q| q.tpm).is_none() {
                return Err(Problem::new(
                    path,
                    "needs the emulated quota's TPM: target = \"mock\" with provider.quota.tpm",
                ));
            }
            Threshold::parse(metric, expr).map_err(|e| Problem::new(path, e))
        })
        .collect()
}

/// The most requests `cfg` can admit in any interval of length `window`, from its request
/// dimensions (`None` when it has none): a token bucket or GCRA its burst plus the refill,
/// a sliding window its amount per window covered, a leaky bucket one per pace.
pub(super) fn worst_case_requests(cfg: &RateLimitConfig, window: Duration) -> Option<u64> {
    let dims = cfg.dimensions().ok()?;
    dims.iter()
        .filter(|d| d.kind.unit() == Unit::Requests)
        .filter(|d| d.kind != RateLimitType::Concurrent)
        .filter_map(|d| {
            let own = d.kind.window()?.as_secs_f64();
            let w = window.as_secs_f64();
            let refill = (d.amount as f64 * w / own).floor() as u64;
            Some(match cfg.strategy {
                Strategy::TokenBucket | Strategy::Gcra => d.burst.saturating_add(refill),
                Strategy::SlidingLog | Strategy::SlidingCounter => {
                    d.amount.saturating_mul((w / own).ceil().max(1.0) as u64)
                }
                Strategy::LeakyBucket => refill.saturating_add(1),
            })
        })
        .min()
}

/// The largest admission estimate a request of `w` can have, in tokens: prompt
/// characters / 4 plus `max_tokens` ([`Workload::largest_estimate`]). `None` when prompt
/// lengths are unbounded.
pub(super) fn largest_estimate(w: &Workload) -> Option<u64> {
    w.largest_estimate()
}

/// Settings that parse but will probably not do what was meant.
pub(super) fn warnings(
    provider: &ProviderSpec,
    w: &Workload,
    limiters: &[LimiterSpec],
) -> Vec<String> {
    let mut out = Vec::new();
    if provider.target == Target::Url && limiters.len() > 1 {
        out.push(format!(
            "target = \"url\": the endpoint's quota is not reset between the {} limiters: each one starts with what the previous left of it (pass --pause to `hub run` to wait between limiters, e.g. --pause 60s for per-minute quotas)",
            limiters.len()
        ));
    }
    let largest = largest_estimate(w);
    if let Some(est) = largest {
        for l in limiters {
            let Some(cfg) = &l.limit else { continue };
            for d in cfg.dimensions().unwrap_or_default() {
                // Input dimensions count the prompt, output ones `max_tokens`.
                let est = match d.kind.unit() {
                    Unit::Requests => continue,
                    Unit::Tokens => est,
                    Unit::InputTokens => w.prompt_tokens.max().unwrap_or(est),
                    Unit::OutputTokens => w.max_tokens,
                };
                if est > d.burst {
                    out.push(format!(
                        "limiter {}: the largest request is estimated at about {est} tokens, above the {} capacity {}: such requests can never be admitted",
                        l.name, d.kind, d.burst
                    ));
                }
            }
        }
    }
    let Some(q) = provider.quota else {
        return out;
    };
    if let (Some(est), Some(tpm)) = (largest, q.tpm) {
        if est > tpm {
            out.push(format!(
                "workload: the largest request is estimated at about {est} tokens (prompt characters / 4 + max_tokens), above the quota's {tpm} TPM: the mock rejects it as too large"
            ));
        }
    }
    for l in limiters {
        let Some(cfg) = &l.limit else { continue };
        let dims = cfg.dimensions().unwrap_or_default();
        for d in &dims {
            let (limit, quota, unit) = match d.kind {
                RateLimitType::RequestsPerMinute => (d.amount, q.rpm, "RPM"),
                RateLimitType::TokensPerMinute => (d.amount, q.tpm, "TPM"),
                RateLimitType::InputTokensPerMinute => (d.amount, q.itpm, "ITPM"),
                RateLimitType::OutputTokensPerMinute => (d.amount, q.otpm, "OTPM"),
                _ => continue,
            };
            if let Some(quota) = quota.filter(|&quota| limit > quota) {
                out.push(format!(
                    "limiter {}: {limit} {unit} after headroom is above the quota's {quota} {unit}: expect 429s",
                    l.name
                ));
            }
        }
        for (quota, unit, name) in [
            (q.itpm, Unit::InputTokens, "input"),
            (q.otpm, Unit::OutputTokens, "output"),
        ] {
            let Some(quota) = quota else { continue };
            // A per-minute limit on this part, or on all tokens at most this part's quota.
            let covered = dims.iter().any(|d| match d.kind {
                RateLimitType::TokensPerMinute => d.amount <= quota,
                k if k.unit() == unit => true,
                _ => false,
            });
            if !covered {
                out.push(format!(
                    "limiter {}: nothing limits {name} tokens, but the quota allows {quota} {name} tokens per minute: expect 429s on {name} tokens",
                    l.name
                ));
            }
        }
        let counts_tokens = dims.iter().any(|d| d.kind.unit().is_tokens());
        // The Anthropic mock reconciles to actual usage itself (exact input, unused
        // max_tokens refunded), so only the OpenAI-dialect quotas warrant this warning.
        let mock_keeps_estimate = provider.kind != super::ProviderKind::Anthropic;
        if counts_tokens && mock_keeps_estimate && cfg.accounting == TokenAccounting::Actual {
            out.push(format!(
                "limiter {}: accounting = \"actual\" refunds the unused estimate, but the mock charges the estimate (prompt characters / 4 + max_tokens) and refunds nothing: only the server's remaining-tokens headers keep this limiter from over-admitting",
                l.name
            ));
        }
        if let (Some(window), Some(allowed)) = (q.rpm_window, q.requests_per_window()) {
            match worst_case_requests(cfg, window) {
                Some(n) if n > allowed => out.push(format!(
                    "limiter {}: can admit up to {n} requests in {window:?}; the deployment allows {allowed}: expect 429s on bursts",
                    l.name
                )),
                None => out.push(format!(
                    "limiter {}: no request limit; the deployment allows {allowed} requests per {window:?}",
                    l.name
                )),
                Some(_) => {}
            }
        }
    }
    out
}
