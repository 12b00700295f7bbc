//! The Anthropic mock's success routes in process: Messages (shape, usage, stop reasons,
//! headers), count_tokens (equal to a message's input), the prompt cache, the model list
//! with paging, and `/v1/models` still serving OpenAI to OpenAI clients.

mod common;

use common::{message, mock, Mock, ANTHROPIC, CLAUDE, OPENAI_KEY};
use mock_providers::generation::OutputTokens;
use mock_providers::MockConfig;
use serde_json::Value;

fn fixed(tokens: u32) -> MockConfig {
    MockConfig {
        output_tokens: OutputTokens::Fixed { tokens },
        ..MockConfig::default()
    }
}

fn input_total(usage: &Value) -> u64 {
    [
        "input_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
    ]
    .iter()
    .map(|k| usage[k].as_u64().unwrap())
    .sum()
}

#[tokio::test]
async fn message_has_the_2026_shape_and_headers() {
    let m = mock(fixed(12));
    let r = m
        .anthropic("/v1/messages", &message(CLAUDE, "Hello there", 100, ""))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let b = r.json();
    // The 2026 wire's field order: `model` first, `diagnostics` last.
    let text = r.text();
    assert!(
        text.starts_with(&format!(r#"{{"model":"{CLAUDE}","id":"msg_011C"#)),
        "{text}"
    );
    assert!(
        text.contains(r#""type":"message","role":"assistant","content":[{"type":"text","text":"#)
    );
    assert!(text.contains(r#"],"container":null,"stop_reason":"end_turn","stop_sequence":null,"stop_details":null,"usage":{"input_tokens":"#));
    assert!(text.contains(r#""cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":0},"output_tokens":12,"service_tier":"standard","inference_geo":"not_available"},"diagnostics":null}"#), "{text}");
    assert_eq!(b["model"], CLAUDE);
    assert_eq!(b["type"], "message");
    assert_eq!(b["role"], "assistant");
    assert!(b["id"].as_str().unwrap().starts_with("msg_011C"));
    assert_eq!(b["content"][0]["type"], "text");
    assert!(!b["content"][0]["text"].as_str().unwrap().is_empty());
    assert_eq!(b["stop_reason"], "end_turn");
    assert_eq!(b["stop_sequence"], Value::Null);
    let u = &b["usage"];
    assert_eq!(u["output_tokens"], 12);
    assert_eq!(u["cache_creation_input_tokens"], 0);
    assert_eq!(u["cache_read_input_tokens"], 0);
    assert_eq!(u["service_tier"], "standard");
    assert!(u["input_tokens"].as_u64().unwrap() > 3);
    let rid = r.header("request-id").unwrap();
    assert!(rid.starts_with("req_011C") && rid.len() == 28, "{rid}");
    assert!(r.header("anthropic-organization-id").is_some());
    for dim in ["requests", "tokens", "input-tokens", "output-tokens"] {
        for what in ["limit", "remaining", "reset"] {
            let name = format!("anthropic-ratelimit-{dim}-{what}");
            assert!(r.header(&name).is_some(), "missing {name}");
        }
    }
    assert_eq!(
        r.header("anthropic-ratelimit-requests-remaining"),
        Some("999")
    );
    assert!(r.header("retry-after").is_none());
}

#[tokio::test]
async fn stop_reasons_max_tokens_and_stop_sequence() {
    let m = mock(fixed(40));
    let b = m
        .anthropic("/v1/messages", &message(CLAUDE, "long", 5, ""))
        .await
        .json();
    assert_eq!(b["stop_reason"], "max_tokens");
    assert_eq!(b["usage"]["output_tokens"], 5);
    // 40 tokens of text hold a full stop (sentences are 6 to 16 words); stopping on it cuts
    // the text before the first one.
    let b = m
        .anthropic(
            "/v1/messages",
            &message(CLAUDE, "long", 100, r#""stop_sequences":["zzz","."]"#),
        )
        .await
        .json();
    assert_eq!(b["stop_reason"], "stop_sequence", "{b}");
    assert_eq!(b["stop_sequence"], ".");
    let text = b["content"][0]["text"].as_str().unwrap_or("");
    assert!(!text.contains('.'), "{text:?}");
    assert!(b["usage"]["output_tokens"].as_u64().unwrap() < 40);
    // max_tokens 0 pre-warms: no content.
    let b = m
        .anthropic("/v1/messages", &message(CLAUDE, "warm", 0, ""))
        .await
        .json();
    assert_eq!(b["content"], serde_json::json!([]));
    assert_eq!(b["stop_reason"], "max_tokens");
}

#[tokio::test]
async fn bearer_auth_and_every_configured_version_are_accepted() {
    let m = mock(MockConfig::default());
    // The Python SDK 2.17 sends its api_key as a Bearer token with version 2026-10-21.
    for version in ["2023-01-01", "2023-06-01", "2026-10-21"] {
        let headers = [
            ("authorization", "Bearer sk-ant-oat-1"),
            ("anthropic-version", version),
        ];
        let r = m
            .call(
                "POST",
                "/v1/messages",
                &headers,
                &message(CLAUDE, "hi", 8, ""),
            )
            .await;
        assert_eq!(r.status, 200, "{version}: {}", r.text());
    }
}

#[tokio::test]
async fn count_tokens_equals_the_input_a_message_reports() {
    let m = mock(MockConfig::default());
    let extra =
        r#""system":"You are terse.","tools":[{"name":"get","input_schema":{"type":"object"}}]"#;
    let body = message(CLAUDE, "How many tokens is this?", 10, extra);
    let usage = m.anthropic("/v1/messages", &body).await.json()["usage"].clone();
    let count_body = body.replace(r#""max_tokens":10,"#, "");
    let r = m.anthropic("/v1/messages/count_tokens", &count_body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.text(),
        format!("{{\"input_tokens\":{}}}", input_total(&usage))
    );
    assert_eq!(r.header("anthropic-ratelimit-requests-limit"), Some("2000"));
    // count_tokens does not touch the messages buckets.
    let stats = &m.state.anthropic().slot(CLAUDE).unwrap().stats;
    assert_eq!(
        stats
            .count_tokens
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    let again = m.anthropic("/v1/messages", &body).await;
    assert_eq!(
        again.header("anthropic-ratelimit-requests-remaining"),
        Some("998")
    );
}

#[tokio::test]
async fn cache_write_then_read_and_reads_are_not_charged_to_itpm() {
    let m = mock(fixed(3));
    let long = "Context. ".repeat(200);
    let body = format!(
        r#"{{"model":"{CLAUDE}","max_tokens":3,"system":[{{"type":"text","text":"{long}","cache_control":{{"type":"ephemeral"}}}}],"messages":[{{"role":"user","content":"q"}}]}}"#
    );
    let first = m.anthropic("/v1/messages", &body).await;
    let u1 = first.json()["usage"].clone();
    let written = u1["cache_creation_input_tokens"].as_u64().unwrap();
    assert!(written > 200, "{u1}");
    assert_eq!(u1["cache_read_input_tokens"], 0);
    let itpm_after_first: u64 = first
        .header("anthropic-ratelimit-input-tokens-remaining")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        itpm_after_first,
        2_000_000 - u1["input_tokens"].as_u64().unwrap() - written
    );
    let second = m.anthropic("/v1/messages", &body).await;
    let u2 = second.json()["usage"].clone();
    assert_eq!(u2["cache_read_input_tokens"].as_u64(), Some(written));
    assert_eq!(u2["cache_creation_input_tokens"], 0);
    assert_eq!(input_total(&u1), input_total(&u2));
    let itpm_after_second: u64 = second
        .header("anthropic-ratelimit-input-tokens-remaining")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        itpm_after_first - itpm_after_second,
        u2["input_tokens"].as_u64().unwrap(),
        "only the uncached input is charged"
    );
    // Five minutes after its last use the entry is gone.
    m.clock.advance(std::time::Duration::from_secs(300));
    let third = m.anthropic("/v1/messages", &body).await.json();
    assert_eq!(
        third["usage"]["cache_creation_input_tokens"].as_u64(),
        Some(written)
    );
}

async fn models(m: &Mock, query: &str) -> Value {
    let r = m
        .call("GET", &format!("/v1/models{query}"), &ANTHROPIC, "")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

#[tokio::test]
async fn model_list_pages_and_single_model() {
    let m = mock(MockConfig::default());
    let all = models(&m, "").await;
    let ids: Vec<&str> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "claude-opus-4-5-20251101",
            "claude-haiku-4-5-20251001",
            "claude-sonnet-4-5-20250929"
        ]
    );
    assert_eq!(all["has_more"], false);
    assert_eq!(all["first_id"], ids[0]);
    assert_eq!(all["last_id"], ids[2]);
    assert_eq!(all["data"][0]["type"], "model");
    assert_eq!(all["data"][0]["display_name"], "Claude Opus 4.5");
    assert_eq!(all["data"][0]["created_at"], "2025-11-01T00:00:00Z");
    assert!(all.get("object").is_none());
    let page = models(&m, "?limit=2").await;
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    assert_eq!(page["has_more"], true);
    let next = models(
        &m,
        &format!("?limit=2&after_id={}", page["last_id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(next["data"][0]["id"], ids[2]);
    assert_eq!(next["has_more"], false);
    let back = models(&m, &format!("?limit=1&before_id={}", ids[2])).await;
    assert_eq!(back["data"][0]["id"], ids[1]);
    assert_eq!(back["has_more"], true);
    let one = m
        .call("GET", &format!("/v1/models/{CLAUDE}"), &ANTHROPIC, "")
        .await;
    assert_eq!(one.json()["id"], CLAUDE);
    // The same path without Anthropic headers is OpenAI's list.
    let openai = m.call("GET", "/v1/models", &[OPENAI_KEY], "").await.json();
    assert_eq!(openai["object"], "list");
}

#[tokio::test]
async fn stats_metrics_and_reset_cover_anthropic_models() {
    let m = mock(fixed(4));
    m.anthropic("/v1/messages", &message(CLAUDE, "hi", 10, ""))
        .await;
    let stats = m.call("GET", "/_mock/stats", &[], "").await.json();
    let key = &stats["keys"][format!("anthropic/{CLAUDE}")];
    assert_eq!(key["provider"], "anthropic");
    assert_eq!(key["admitted"], 1);
    assert_eq!(key["output_tokens"], 4);
    assert_eq!(key["remaining"]["requests"], 999);
    assert_eq!(key["remaining"]["output_tokens"], 400_000 - 4);
    let metrics = m.call("GET", "/metrics", &[], "").await.text();
    assert!(
        metrics.contains(&format!(
            "mock_anthropic_admitted_total{{model=\"{CLAUDE}\"}} 1"
        )),
        "{metrics}"
    );
    assert!(metrics.contains(&format!(
        "mock_anthropic_remaining{{model=\"{CLAUDE}\",dimension=\"requests\"}} 999"
    )));
    assert_eq!(m.call("POST", "/_mock/reset", &[], "").await.status, 200);
    let stats = m.call("GET", "/_mock/stats", &[], "").await.json();
    let key = &stats["keys"][format!("anthropic/{CLAUDE}")];
    assert_eq!(key["admitted"], 0);
    assert_eq!(key["remaining"]["requests"], 1_000);
}
