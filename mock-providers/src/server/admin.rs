//! Observability: `GET /_mock/stats` (JSON per key), `POST /_mock/reset`, and
//! `GET /metrics` (Prometheus text format, version 0.0.4).

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;

use serde_json::{json, Map, Value};

use super::state::MockState;

/// `{"requests_total":N,"keys":{"openai/org-mock/gpt-4o":{…},"azure/dep":{…}}}` with, per
/// key: `admitted`, `throttled` by dimension, `tokens_charged` (admission estimates),
/// `tokens_used` (actual usage), `faults` by kind, and the quota's `remaining` now.
/// Anthropic models appear as `anthropic/{model}` with their own counters
/// ([`crate::provider::anthropic::state::AnthropicStats`]) and `remaining` requests, input
/// and output tokens.
pub fn stats_json(state: &MockState) -> Vec<u8> {
    let now = state.clock().now();
    let mut keys = Map::new();
    for slot in state.slots() {
        let s = &slot.stats;
        let q = slot.quota.lock().snapshot(now);
        keys.insert(
            format!("{}/{}", slot.provider, slot.key),
            json!({
                "provider": slot.provider,
                "admitted": s.admitted.load(Relaxed),
                "throttled": {
                    "requests": s.throttled_requests.load(Relaxed),
                    "tokens": s.throttled_tokens.load(Relaxed),
                },
                "tokens_charged": s.tokens_charged.load(Relaxed),
                "tokens_used": s.tokens_used.load(Relaxed),
                "faults": {
                    "error_500": s.faults_500.load(Relaxed),
                    "error_503": s.faults_503.load(Relaxed),
                    "dropped": s.faults_dropped.load(Relaxed),
                    "stalled": s.faults_stalled.load(Relaxed),
                    "insufficient_quota": s.faults_insufficient_quota.load(Relaxed),
                },
                "remaining": {
                    "requests": q.remaining_requests,
                    "tokens": q.remaining_tokens,
                },
            }),
        );
    }
    for slot in state.anthropic().slots() {
        let q = slot.quota.lock().snapshot(now);
        let mut entry = Map::new();
        entry.insert("provider".into(), json!("anthropic"));
        for (name, counter) in slot.stats.fields() {
            entry.insert(name.into(), json!(counter.load(Relaxed)));
        }
        entry.insert(
            "remaining".into(),
            json!({
                "requests": q.requests.remaining,
                "input_tokens": q.input.remaining,
                "output_tokens": q.output.remaining,
            }),
        );
        keys.insert(
            format!("anthropic/{}", slot.config.id),
            Value::Object(entry),
        );
    }
    let body = json!({
        "requests_total": state.0.requests.load(Relaxed),
        "keys": Value::Object(keys),
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// Prometheus text exposition of the same counters, plus remaining-quota gauges.
pub fn metrics_text(state: &MockState) -> String {
    let now = state.clock().now();
    let mut out = String::with_capacity(4096);
    let _ = writeln!(
        out,
        "# HELP mock_requests_total Requests received on completion and embedding routes."
    );
    let _ = writeln!(out, "# TYPE mock_requests_total counter");
    let _ = writeln!(
        out,
        "mock_requests_total {}",
        state.0.requests.load(Relaxed)
    );
    let counters: [(&str, &str); 10] = [
        ("admitted", "Requests admitted by the quota."),
        (
            "throttled_requests",
            "Requests refused on the request dimension (429).",
        ),
        (
            "throttled_tokens",
            "Requests refused on the token dimension (429).",
        ),
        ("tokens_charged", "Tokens charged at admission (estimates)."),
        ("tokens_used", "Tokens used (prompt plus completion)."),
        ("faults_500", "Injected 500 responses."),
        ("faults_503", "Injected 503 responses."),
        ("faults_dropped", "Streams dropped mid-way on purpose."),
        (
            "faults_stalled",
            "Responses stalled before the first byte on purpose.",
        ),
        (
            "faults_insufficient_quota",
            "Injected 429 insufficient_quota responses.",
        ),
    ];
    for (i, (name, help)) in counters.iter().enumerate() {
        let _ = writeln!(out, "# HELP mock_{name}_total {help}");
        let _ = writeln!(out, "# TYPE mock_{name}_total counter");
        for slot in state.slots() {
            let value = slot.stats.fields()[i].1.load(Relaxed);
            let _ = writeln!(
                out,
                "mock_{name}_total{{provider=\"{}\",key=\"{}\"}} {value}",
                slot.provider,
                escape(&slot.key)
            );
        }
    }
    let snapshots: Vec<_> = state
        .slots()
        .iter()
        .map(|s| s.quota.lock().snapshot(now))
        .collect();
    for (name, help, pick) in [
        ("requests", "Requests the quota would still admit now.", 0),
        ("tokens", "Tokens the quota would still admit now.", 1),
    ] {
        let _ = writeln!(out, "# HELP mock_quota_remaining_{name} {help}");
        let _ = writeln!(out, "# TYPE mock_quota_remaining_{name} gauge");
        for (slot, q) in state.slots().iter().zip(&snapshots) {
            let v = if pick == 0 {
                q.remaining_requests
            } else {
                q.remaining_tokens
            };
            let _ = writeln!(
                out,
                "mock_quota_remaining_{name}{{provider=\"{}\",key=\"{}\"}} {v}",
                slot.provider,
                escape(&slot.key)
            );
        }
    }
    anthropic_metrics(state, now, &mut out);
    out
}

/// The Anthropic models' counters (`mock_anthropic_*_total{model=…}`) and remaining
/// gauges (`mock_anthropic_remaining{model=…,dimension=…}`).
fn anthropic_metrics(state: &MockState, now: u64, out: &mut String) {
    let slots = state.anthropic().slots();
    let Some(first) = slots.first() else {
        return;
    };
    for (i, (name, _)) in first.stats.fields().iter().enumerate() {
        let _ = writeln!(
            out,
            "# HELP mock_anthropic_{name}_total Anthropic mock counter {name}."
        );
        let _ = writeln!(out, "# TYPE mock_anthropic_{name}_total counter");
        for slot in slots {
            let value = slot.stats.fields()[i].1.load(Relaxed);
            let model = escape(&slot.config.id);
            let _ = writeln!(
                out,
                "mock_anthropic_{name}_total{{model=\"{model}\"}} {value}"
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP mock_anthropic_remaining Units the Anthropic quota would still admit now."
    );
    let _ = writeln!(out, "# TYPE mock_anthropic_remaining gauge");
    for slot in slots {
        let q = slot.quota.lock().snapshot(now);
        let model = escape(&slot.config.id);
        for (dimension, v) in [
            ("requests", q.requests.remaining),
            ("input_tokens", q.input.remaining),
            ("output_tokens", q.output.remaining),
        ] {
            let _ = writeln!(
                out,
                "mock_anthropic_remaining{{model=\"{model}\",dimension=\"{dimension}\"}} {v}"
            );
        }
    }
}

/// Label-value escaping of the Prometheus text format.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
