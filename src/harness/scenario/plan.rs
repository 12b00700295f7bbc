//! The resolved plan `hub check` prints: what a run of the scenario will do, with every
//! default filled in and every limit resolved to the numbers the limiter will enforce, so a
//! reader can check the arithmetic (offered load against quota) before spending a run.

use std::fmt::Write;
use std::time::Duration;

use super::limiters::worst_case_requests;
use super::{Arrival, Scenario, Target};
use crate::harness::schedule::open_loop_requests;
use crate::limiter::backoff::BackoffKind;
use crate::limiter::{ChargeTime, RateLimitConfig, RateLimitType, TokenAccounting, Unit};

/// Schedules expected to be longer than this many requests are not counted for the plan.
const MAX_COUNTED: u64 = 5_000_000;

pub(super) fn render(s: &Scenario) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_plan(&mut out, s);
    out
}

/// A duration as a scenario would write it (`0s` rather than `0ns`).
fn secs(d: Duration) -> String {
    if d.is_zero() {
        "0s".to_owned()
    } else {
        format!("{d:?}")
    }
}

fn write_plan(out: &mut String, s: &Scenario) -> std::fmt::Result {
    writeln!(
        out,
        "scenario {} ({}), seed {}, {} per limiter in {} phase(s)",
        s.name,
        s.origin,
        s.seed,
        secs(s.duration()),
        s.phases.len()
    )?;
    let p = &s.provider;
    write!(out, "provider: {} model {}", p.kind.id(), p.model)?;
    if let Some(d) = &p.deployment {
        write!(out, ", deployment {d}")?;
    }
    match p.target {
        Target::Mock => writeln!(out, ", embedded mock (reset before each limiter)")?,
        Target::Url => writeln!(
            out,
            ", url {} (key from ${}{})",
            p.url.as_deref().unwrap_or(""),
            p.api_key_env.as_deref().unwrap_or(""),
            p.api_version
                .as_deref()
                .map(|v| format!(", api-version {v}"))
                .unwrap_or_default()
        )?,
    }
    if p.target == Target::Mock {
        match p.quota {
            Some(q) => {
                let n = |v: Option<u64>| v.map_or("mock default".to_owned(), |v| v.to_string());
                match (q.itpm, q.otpm) {
                    (None, None) => {
                        write!(out, "  quota: {} RPM, {} TPM", n(q.rpm), n(q.tpm))?;
                    }
                    (itpm, otpm) => write!(
                        out,
                        "  quota: {} RPM, {} ITPM, {} OTPM",
                        n(q.rpm),
                        n(itpm),
                        n(otpm)
                    )?,
                }
                if let (Some(w), Some(per)) = (q.rpm_window, q.requests_per_window()) {
                    write!(
                        out,
                        ", requests enforced per {} ({per} per window)",
                        secs(w)
                    )?;
                }
                let charged = if p.kind == super::ProviderKind::Anthropic {
                    "input tokens counted exactly, max_tokens reserved against OTPM until the answer ends"
                } else {
                    "tokens charged at admission: prompt characters / 4 + max_tokens"
                };
                writeln!(out, "; {charged}")?;
            }
            None => writeln!(out, "  quota: the mock's defaults")?,
        }
        match p.latency {
            Some(l) => writeln!(
                out,
                "  latency: TTFT median {}, p99 {}, {} per token",
                secs(l.ttft_median),
                secs(l.ttft_p99),
                secs(l.per_token)
            )?,
            None => writeln!(out, "  latency: zero (answers at once)")?,
        }
    }
    writeln!(out, "phases:")?;
    let mut at = Duration::ZERO;
    let mut expected = 0.0;
    // The schedule is deterministic: count what this seed actually schedules per phase
    // (skipped for very long schedules, where the expectation is as good).
    let expected_total: f64 = s.phases.iter().filter_map(|p| p.expected_requests()).sum();
    let scheduled: Option<Vec<u64>> = (expected_total <= MAX_COUNTED as f64)
        .then(|| {
            let mut counts = vec![0u64; s.phases.len()];
            for r in open_loop_requests(s).ok()? {
                counts[r.phase] += 1;
            }
            Some(counts)
        })
        .flatten();
    for (i, ph) in s.phases.iter().enumerate() {
        let end = at + ph.duration;
        let what = match ph.arrival {
            Arrival::Poisson { rate } => format!("poisson, mean {:.3}/s", rate.per_second()),
            Arrival::Constant { rate } => format!("constant {:.3}/s", rate.per_second()),
            Arrival::Gamma { rate, burstiness } => format!(
                "gamma, mean {:.3}/s, burstiness (cv) {burstiness}",
                rate.per_second()
            ),
            Arrival::Closed {
                concurrency,
                think_time,
            } => format!(
                "closed loop, {concurrency} users, think time {}",
                secs(think_time)
            ),
            Arrival::Trace { rate } => match &s.workload.trace {
                Some(t) => format!(
                    "trace replay of {} ({}, {} rows, {} in the window from {} for {}), speed {}, rate scale {}, mean {rate:.3}/s",
                    t.path.display(),
                    t.format.name(),
                    t.scan.rows,
                    t.scan.in_window,
                    secs(t.start),
                    secs(t.window()),
                    t.speed,
                    t.rate_scale
                ),
                None => format!("trace replay, mean {rate:.3}/s"),
            },
            Arrival::Batch { requests } => format!(
                "batch: the {requests} requests of {} at once; the run lasts until all have ended (no drain cut)",
                s.workload
                    .requests
                    .as_ref()
                    .map_or("the request file".to_owned(), |f| f.path.display().to_string())
            ),
        };
        let count = match (ph.expected_requests(), &scheduled) {
            (Some(n), Some(counts)) => format!(
                ", ~{n:.0} requests expected, {} scheduled by this seed",
                counts[i]
            ),
            (Some(n), None) => format!(", ~{n:.0} requests expected"),
            (None, _) => String::new(),
        };
        expected += ph.expected_requests().unwrap_or(0.0);
        writeln!(out, "  [{i}] {}..{}: {what}{count}", secs(at), secs(end))?;
        at = end;
    }
    if s.phases.iter().any(|p| p.arrival.is_open_loop()) {
        match &scheduled {
            Some(counts) => writeln!(
                out,
                "  open loop offers {} requests per limiter run (~{expected:.0} expected)",
                counts.iter().sum::<u64>()
            )?,
            None => writeln!(
                out,
                "  open loop offers ~{expected:.0} requests per limiter run"
            )?,
        }
    }
    let w = &s.workload;
    match (&w.trace, &w.requests) {
        (_, Some(f)) => writeln!(
            out,
            "workload: each line of the request file replayed with its prompt's tokens and characters and its max_tokens: admission estimate mean {:.0} tokens, max {}, {} in all; {:.0}% streamed",
            f.charge_sum as f64 / f.count.max(1) as f64,
            f.charge_max,
            f.charge_sum,
            w.stream * 100.0
        )?,
        (Some(t), None) => {
            let n = t.scan.in_window.max(1);
            writeln!(
                out,
                "workload: from the trace: prompt mean {:.0} tokens (max {}), output mean {:.0} tokens (max {}), the mock producing each row's exact output; max_tokens {}; {:.0}% streamed",
                t.scan.prompt_tokens as f64 / n as f64,
                t.scan.max_prompt_tokens,
                t.scan.output_tokens as f64 / n as f64,
                t.scan.max_output_tokens,
                t.max_tokens,
                w.stream * 100.0
            )?
        }
        (None, None) => writeln!(
            out,
            "workload: prompt {}; max_tokens {}; output {}; {:.0}% streamed",
            w.prompt_tokens,
            w.max_tokens,
            w.output_tokens,
            w.stream * 100.0
        )?,
    }
    if w.chars_per_token != Default::default() {
        writeln!(
            out,
            "  prompt text: {} characters per token, so the servers' characters / 4 estimate is about {:.0}% of the true count",
            w.chars_per_token,
            w.chars_per_token.mean() / 4.0 * 100.0
        )?;
    }
    let b = &s.retry.backoff;
    writeln!(
        out,
        "retry: up to {} retries, {} backoff base {} cap {}, server retry-after honoured up to {}",
        s.retry.max_retries,
        backoff_kind(b.kind),
        secs(b.base),
        secs(b.cap),
        secs(b.retry_after_cap)
    )?;
    writeln!(
        out,
        "limiters (each runs all phases in turn, same seed, key {}):",
        s.limit_key()
    )?;
    for l in &s.limiters {
        match &l.limit {
            None => writeln!(out, "  {}: none (no limiter, retries only)", l.name)?,
            Some(cfg) => writeln!(
                out,
                "  {}: {} {}",
                l.name,
                l.strategy_name(),
                describe_limit(cfg, s)
            )?,
        }
    }
    if s.thresholds.is_empty() {
        writeln!(out, "thresholds: none")?;
    } else {
        let list: Vec<String> = s.thresholds.iter().map(|t| t.to_string()).collect();
        writeln!(out, "thresholds (per limiter): {}", list.join(", "))?;
    }
    for w in &s.warnings {
        writeln!(out, "warning: {w}")?;
    }
    Ok(())
}

fn describe_limit(cfg: &RateLimitConfig, s: &Scenario) -> String {
    let mut parts: Vec<String> = Vec::new();
    for d in cfg.dimensions().unwrap_or_default() {
        let what = match d.kind {
            RateLimitType::RequestsPerSecond => format!("{} RPS", d.amount),
            RateLimitType::RequestsPerMinute => format!("{} RPM", d.amount),
            RateLimitType::RequestsPer(w) => format!("{} requests/{}", d.amount, secs(w)),
            RateLimitType::TokensPerMinute => format!("{} TPM", d.amount),
            RateLimitType::TokensPer(w) => format!("{} tokens/{}", d.amount, secs(w)),
            RateLimitType::InputTokensPerMinute => format!("{} ITPM", d.amount),
            RateLimitType::InputTokensPer(w) => {
                format!("{} input tokens/{}", d.amount, secs(w))
            }
            RateLimitType::OutputTokensPerMinute => format!("{} OTPM", d.amount),
            RateLimitType::OutputTokensPer(w) => {
                format!("{} output tokens/{}", d.amount, secs(w))
            }
            RateLimitType::Concurrent => format!("{} concurrent", d.amount),
        };
        if d.kind == RateLimitType::Concurrent || d.burst == d.amount {
            parts.push(what);
        } else {
            parts.push(format!("{what} (burst {})", d.burst));
        }
    }
    let mut out = parts.join(", ");
    write!(
        out,
        "; headroom {}, accounting {}",
        cfg.headroom,
        match cfg.accounting {
            TokenAccounting::Actual => "actual",
            TokenAccounting::Estimate => "estimate",
        }
    )
    .ok();
    let usage: Vec<&str> = [
        (Unit::Tokens, "tokens"),
        (Unit::InputTokens, "input"),
        (Unit::OutputTokens, "output"),
    ]
    .into_iter()
    .filter(|&(u, _)| cfg.charge_at.of(u) == ChargeTime::Usage)
    .map(|(_, name)| name)
    .collect();
    if !usage.is_empty() {
        write!(out, ", charged at usage: {}", usage.join(", ")).ok();
    }
    if let Some(w) = cfg.max_wait {
        write!(out, ", max wait {}", secs(w)).ok();
    }
    if let Some(window) = s.provider.quota.and_then(|q| q.rpm_window) {
        if let Some(n) = worst_case_requests(cfg, window) {
            write!(out, "; at most {n} requests in any {}", secs(window)).ok();
        }
    }
    out
}

fn backoff_kind(k: BackoffKind) -> &'static str {
    match k {
        BackoffKind::Exponential => "exponential",
        BackoffKind::FullJitter => "full_jitter",
        BackoffKind::DecorrelatedJitter => "decorrelated_jitter",
    }
}
