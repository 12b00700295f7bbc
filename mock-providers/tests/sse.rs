//! Server-sent events parsed byte-exactly: every event is `data: <json>\n\n`, the stream
//! ends with `data: [DONE]\n\n`, chunks follow OpenAI's order (role, content, finish, usage),
//! the streamed text and usage equal the non-streamed answer for the same seed, and paced
//! streams follow the latency model under paused time.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use common::{chat, mock, OPENAI_KEY};
use http_body_util::BodyExt;
use mock_providers::generation::tokenizer::Encoding;
use mock_providers::generation::{LatencyConfig, OutputTokens};
use mock_providers::MockConfig;
use serde_json::{json, Value};
use tower::ServiceExt;

/// Splits an SSE body into its JSON chunks, asserting the exact framing.
fn parse_sse(body: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(body).expect("utf-8 stream");
    assert!(
        text.ends_with("data: [DONE]\n\n"),
        "stream must end with [DONE]: {text:?}"
    );
    let events: Vec<&str> = text
        .strip_suffix("\n\n")
        .expect("ends with a blank line")
        .split("\n\n")
        .collect();
    let (done, chunks) = events.split_last().expect("at least [DONE]");
    assert_eq!(*done, "data: [DONE]");
    chunks
        .iter()
        .map(|e| {
            let json = e
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("event without `data: `: {e:?}"));
            assert!(!json.contains('\n'), "one line per event: {e:?}");
            serde_json::from_str(json).unwrap_or_else(|err| panic!("bad chunk {json:?}: {err}"))
        })
        .collect()
}

#[tokio::test]
async fn chat_stream_is_byte_exact_and_matches_the_non_streamed_answer() {
    let m = mock(MockConfig::default());
    let extra = r#""seed":7,"max_tokens":50"#;
    let plain = m
        .post(
            "/v1/chat/completions",
            &chat("gpt-4o-mini", "Stream me", extra),
        )
        .await
        .json();
    let extra = r#""seed":7,"max_tokens":50,"stream":true,"stream_options":{"include_usage":true}"#;
    let r = m
        .post(
            "/v1/chat/completions",
            &chat("gpt-4o-mini", "Stream me", extra),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/event-stream; charset=utf-8")
    );
    assert!(r.header("x-ratelimit-remaining-requests").is_some());
    let chunks = parse_sse(&r.body);

    let id = chunks[0]["id"].as_str().unwrap();
    assert!(id.starts_with("chatcmpl-"));
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["id"], id, "one id per stream");
        assert_eq!(c["model"], "gpt-4o-mini");
        assert!(c["system_fingerprint"].as_str().unwrap().starts_with("fp_"));
    }
    let (usage_chunk, choice_chunks) = chunks.split_last().unwrap();
    assert_eq!(
        choice_chunks[0]["choices"][0]["delta"],
        json!({"role":"assistant","content":""})
    );
    let (finish, contents) = choice_chunks[1..].split_last().unwrap();
    let mut text = String::new();
    for c in contents {
        let choice = &c["choices"][0];
        assert!(choice["finish_reason"].is_null());
        assert!(
            c["usage"].is_null() && c.get("usage").is_some(),
            "usage:null on every chunk"
        );
        let delta = choice["delta"].as_object().unwrap();
        assert_eq!(delta.len(), 1, "content-only delta: {delta:?}");
        text.push_str(delta["content"].as_str().unwrap());
    }
    assert_eq!(finish["choices"][0]["delta"], json!({}));
    let plain_choice = &plain["choices"][0];
    assert_eq!(
        finish["choices"][0]["finish_reason"],
        plain_choice["finish_reason"]
    );
    assert_eq!(text, plain_choice["message"]["content"].as_str().unwrap());
    assert_eq!(
        contents.len() as u32,
        Encoding::O200kBase.count(&text),
        "one token per chunk"
    );
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"], plain["usage"]);
}

#[tokio::test]
async fn stream_without_include_usage_has_no_usage_field() {
    let m = mock(MockConfig::default());
    let r = m
        .post(
            "/v1/chat/completions",
            &chat("gpt-4o", "x", r#""stream":true,"n":2,"max_tokens":4"#),
        )
        .await;
    let chunks = parse_sse(&r.body);
    assert!(chunks.iter().all(|c| c.get("usage").is_none()));
    let finishes: Vec<u64> = chunks
        .iter()
        .filter(|c| !c["choices"][0]["finish_reason"].is_null())
        .map(|c| c["choices"][0]["index"].as_u64().unwrap())
        .collect();
    assert_eq!(finishes, [0, 1], "one finish chunk per choice");
}

#[tokio::test]
async fn legacy_completion_stream_uses_text_completion_chunks() {
    let m = mock(MockConfig::default());
    let body = r#"{"model":"gpt-3.5-turbo","prompt":"x","stream":true,"max_tokens":3,"stream_options":{"include_usage":true}}"#;
    let chunks = parse_sse(&m.post("/v1/completions", body).await.body);
    assert!(chunks.iter().all(|c| c["object"] == "text_completion"));
    assert_eq!(
        chunks.len(),
        3 + 1 + 1,
        "three tokens, a finish chunk, a usage chunk"
    );
    assert_eq!(chunks[3]["choices"][0]["finish_reason"], "length");
    assert_eq!(chunks[4]["usage"]["completion_tokens"], 3);
}

#[tokio::test(start_paused = true)]
async fn paced_stream_follows_ttft_and_per_token_intervals() {
    let config = MockConfig {
        latency: LatencyConfig {
            zero: false,
            ttft_median: Duration::from_millis(400),
            ttft_p99: Duration::from_millis(400),
            per_token: Duration::from_millis(25),
            per_token_sigma: 0.0,
        },
        output_tokens: OutputTokens::Fixed { tokens: 5 },
        ..MockConfig::default()
    };
    let m = mock(config);
    let req = Request::post("/v1/chat/completions")
        .header(OPENAI_KEY.0, OPENAI_KEY.1)
        .body(Body::from(chat("gpt-4o", "x", r#""stream":true"#)))
        .unwrap();
    let start = tokio::time::Instant::now();
    let resp = m.router.clone().oneshot(req).await.unwrap();
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "headers before the first token"
    );
    let mut body = resp.into_body();
    let mut arrivals = Vec::new();
    let mut all = Vec::new();
    while let Some(frame) = body.frame().await {
        let data = frame.unwrap().into_data().unwrap();
        arrivals.push(start.elapsed().as_millis());
        all.extend_from_slice(&data);
    }
    // role + first token at TTFT, then one token every 25 ms, then finish and [DONE].
    assert_eq!(arrivals, [400, 400, 425, 450, 475, 500, 500, 500]);
    assert_eq!(parse_sse(&all).len(), 7);
}

#[tokio::test(start_paused = true)]
async fn a_long_stream_lasts_its_modelled_time_not_its_rounded_up_sleeps() {
    // 5.1 ms per token: a timer that rounds each relative sleep up to its 1-ms tick would
    // make 199 intervals last 199 × 6 ms; paced against an absolute schedule they last
    // 199 × 5.1 ms (+ at most one tick).
    let config = MockConfig {
        latency: LatencyConfig {
            zero: false,
            ttft_median: Duration::from_millis(100),
            ttft_p99: Duration::from_millis(100),
            per_token: Duration::from_micros(5_100),
            per_token_sigma: 0.0,
        },
        output_tokens: OutputTokens::Fixed { tokens: 200 },
        ..MockConfig::default()
    };
    let m = mock(config);
    let req = Request::post("/v1/chat/completions")
        .header(OPENAI_KEY.0, OPENAI_KEY.1)
        .body(Body::from(chat(
            "gpt-4o",
            "x",
            r#""stream":true,"max_tokens":200"#,
        )))
        .unwrap();
    let start = tokio::time::Instant::now();
    let resp = m.router.clone().oneshot(req).await.unwrap();
    resp.into_body().collect().await.expect("whole stream");
    let modelled = Duration::from_millis(100) + Duration::from_micros(5_100) * 199;
    let took = start.elapsed();
    assert!(
        took >= modelled && took <= modelled + Duration::from_millis(1),
        "{took:?} for a modelled {modelled:?}"
    );
}
