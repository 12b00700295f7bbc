//! The gateway's Prometheus metrics, per tenant and upstream: requests admitted, queued
//! (waited before admission), refused by dimension, upstream 429s, the queue wait
//! histogram, tokens reserved against tokens used, and in shadow mode what enforcing
//! would have delayed or refused. Labels are tenant names and upstream ids — never keys.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

/// Upper bounds of the wait histogram's buckets, in seconds.
pub const WAIT_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Default, Clone)]
struct Series {
    admitted: u64,
    queued: u64,
    refused: BTreeMap<String, u64>,
    upstream_429: u64,
    wait_buckets: [u64; WAIT_BUCKETS.len()],
    wait_count: u64,
    wait_sum: f64,
    tokens_reserved: u64,
    tokens_used: u64,
    shadow_delayed: u64,
    shadow_refused: u64,
}

/// The gateway's counters (cheap to update from every request).
#[derive(Debug, Default)]
pub struct GatewayMetrics {
    /// Tenant → upstream → series (looked up by `&str`: no allocation once a pair exists).
    series: Mutex<BTreeMap<String, BTreeMap<String, Series>>>,
    in_flight: AtomicI64,
}

/// A snapshot of one (tenant, upstream) pair, for tests and reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PairStats {
    /// Requests admitted.
    pub admitted: u64,
    /// Requests admitted after waiting in the queue.
    pub queued: u64,
    /// Refusals by dimension (`never_fits:<dim>`, `timeout:<dim>`, `unavailable`).
    pub refused: BTreeMap<String, u64>,
    /// Upstream 429s seen.
    pub upstream_429: u64,
    /// Tokens reserved at admission.
    pub tokens_reserved: u64,
    /// Tokens charged after the answer (reported usage, or what was streamed).
    pub tokens_used: u64,
    /// Shadow mode: requests that enforcing would have queued.
    pub shadow_delayed: u64,
    /// Shadow mode: requests that enforcing would have refused at once (never fits).
    pub shadow_refused: u64,
}

impl GatewayMetrics {
    /// Empty metrics.
    pub fn new() -> Self {
        Self::default()
    }

    fn with(&self, tenant: &str, upstream: &str, f: impl FnOnce(&mut Series)) {
        let mut all = self.series.lock();
        if !all.contains_key(tenant) {
            all.insert(tenant.to_owned(), BTreeMap::new());
        }
        let Some(per) = all.get_mut(tenant) else {
            return;
        };
        if !per.contains_key(upstream) {
            per.insert(upstream.to_owned(), Series::default());
        }
        if let Some(s) = per.get_mut(upstream) {
            f(s);
        }
    }

    /// A request was admitted after waiting `waited`, reserving `tokens`.
    pub fn admitted(&self, tenant: &str, upstream: &str, waited: Duration, tokens: u64) {
        self.with(tenant, upstream, |s| {
            s.admitted += 1;
            if !waited.is_zero() {
                s.queued += 1;
            }
            let secs = waited.as_secs_f64();
            if let Some(i) = WAIT_BUCKETS.iter().position(|b| secs <= *b) {
                s.wait_buckets[i] += 1;
            }
            s.wait_count += 1;
            s.wait_sum += secs;
            s.tokens_reserved += tokens;
        });
    }

    /// A request was refused; `why` names the dimension (`timeout:tokens per minute (TPM)`).
    pub fn refused(&self, tenant: &str, upstream: &str, why: String) {
        self.with(tenant, upstream, |s| {
            *s.refused.entry(why).or_default() += 1
        });
    }

    /// The upstream answered 429.
    pub fn upstream_throttled(&self, tenant: &str, upstream: &str) {
        self.with(tenant, upstream, |s| s.upstream_429 += 1);
    }

    /// `tokens` were charged after an answer.
    pub fn used(&self, tenant: &str, upstream: &str, tokens: u64) {
        self.with(tenant, upstream, |s| s.tokens_used += tokens);
    }

    /// Shadow mode: enforcing would have queued (`refused` false) or refused the request.
    pub fn shadow(&self, tenant: &str, upstream: &str, refused: bool) {
        self.with(tenant, upstream, |s| {
            if refused {
                s.shadow_refused += 1;
            } else {
                s.shadow_delayed += 1;
            }
        });
    }

    /// A request started (+1) or ended (−1) being handled.
    pub fn in_flight_add(&self, delta: i64) {
        self.in_flight.fetch_add(delta, Ordering::Relaxed);
    }

    /// Requests being handled now (streams until their end).
    pub fn in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// One pair's counters.
    pub fn pair(&self, tenant: &str, upstream: &str) -> PairStats {
        let s = self
            .series
            .lock()
            .get(tenant)
            .and_then(|per| per.get(upstream))
            .cloned()
            .unwrap_or_default();
        PairStats {
            admitted: s.admitted,
            queued: s.queued,
            refused: s.refused,
            upstream_429: s.upstream_429,
            tokens_reserved: s.tokens_reserved,
            tokens_used: s.tokens_used,
            shadow_delayed: s.shadow_delayed,
            shadow_refused: s.shadow_refused,
        }
    }

    /// Everything in Prometheus text format.
    pub fn prometheus_text(&self) -> String {
        let series: Vec<((String, String), Series)> = self
            .series
            .lock()
            .iter()
            .flat_map(|(t, per)| {
                per.iter()
                    .map(move |(u, s)| ((t.clone(), u.clone()), s.clone()))
            })
            .collect();
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, get: &dyn Fn(&Series) -> u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for ((t, u), s) in &series {
                let _ = writeln!(
                    out,
                    "{name}{{tenant=\"{}\",upstream=\"{}\"}} {}",
                    esc(t),
                    esc(u),
                    get(s)
                );
            }
        };
        counter(
            &mut out,
            "hub_gateway_admitted_total",
            "Requests admitted.",
            &|s| s.admitted,
        );
        counter(
            &mut out,
            "hub_gateway_queued_total",
            "Requests admitted after waiting in the queue.",
            &|s| s.queued,
        );
        counter(
            &mut out,
            "hub_gateway_upstream_429_total",
            "Upstream 429 answers.",
            &|s| s.upstream_429,
        );
        counter(
            &mut out,
            "hub_gateway_tokens_reserved_total",
            "Tokens reserved at admission.",
            &|s| s.tokens_reserved,
        );
        counter(
            &mut out,
            "hub_gateway_tokens_used_total",
            "Tokens charged after the answer.",
            &|s| s.tokens_used,
        );
        counter(
            &mut out,
            "hub_gateway_shadow_delayed_total",
            "Shadow mode: requests enforcing would have queued.",
            &|s| s.shadow_delayed,
        );
        counter(
            &mut out,
            "hub_gateway_shadow_refused_total",
            "Shadow mode: requests enforcing would have refused.",
            &|s| s.shadow_refused,
        );
        let _ = writeln!(out, "# HELP hub_gateway_refused_total Requests refused, by dimension.\n# TYPE hub_gateway_refused_total counter");
        for ((t, u), s) in &series {
            for (why, n) in &s.refused {
                let _ = writeln!(
                    out,
                    "hub_gateway_refused_total{{tenant=\"{}\",upstream=\"{}\",reason=\"{}\"}} {n}",
                    esc(t),
                    esc(u),
                    esc(why)
                );
            }
        }
        let _ = writeln!(out, "# HELP hub_gateway_wait_seconds Time in the admission queue.\n# TYPE hub_gateway_wait_seconds histogram");
        for ((t, u), s) in &series {
            let labels = format!("tenant=\"{}\",upstream=\"{}\"", esc(t), esc(u));
            let mut acc = 0;
            for (b, n) in WAIT_BUCKETS.iter().zip(s.wait_buckets) {
                acc += n;
                let _ = writeln!(
                    out,
                    "hub_gateway_wait_seconds_bucket{{{labels},le=\"{b}\"}} {acc}"
                );
            }
            let _ = writeln!(
                out,
                "hub_gateway_wait_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                s.wait_count
            );
            let _ = writeln!(
                out,
                "hub_gateway_wait_seconds_sum{{{labels}}} {}",
                s.wait_sum
            );
            let _ = writeln!(
                out,
                "hub_gateway_wait_seconds_count{{{labels}}} {}",
                s.wait_count
            );
        }
        let _ = writeln!(out, "# HELP hub_gateway_in_flight Requests being handled.\n# TYPE hub_gateway_in_flight gauge\nhub_gateway_in_flight {}", self.in_flight());
        out
    }
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
