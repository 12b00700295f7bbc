//! The Messages stream byte for byte: the mock's rendering of the live 2026 capture in
//! `fixtures/anthropic_text_stream_2026.sse` (copied verbatim from the wire-facts reference,
//! S8 `text.sse.stream.jsonl`) equals the capture once its whitespace padding before each
//! data line's final `}` is removed; over HTTP the event order, framing, cumulative usage
//! and text match the non-streamed answer; the overloaded error event and a dropped
//! connection; pacing under paused time; the quota settled when the stream ends.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use common::{message, mock, ANTHROPIC, CLAUDE};
use http_body_util::BodyExt;
use mock_providers::generation::{LatencyConfig, LatencyModel, OutputTokens};
use mock_providers::provider::anthropic::sse::{render_all, StreamPlan};
use mock_providers::provider::anthropic::wire::{Stop, Tokens};
use mock_providers::provider::anthropic::{AnthropicFaults, OverloadedAt};
use mock_providers::MockConfig;
use rand::SeedableRng;
use serde_json::Value;
use tower::ServiceExt;

const CAPTURE: &str = include_str!("fixtures/anthropic_text_stream_2026.sse");

/// The capture without its padding: spaces before the final `}` of a data line removed.
fn unpadded(capture: &str) -> String {
    capture
        .split('\n')
        .map(|line| match line.strip_suffix('}') {
            Some(head) if line.starts_with("data: ") => format!("{}}}", head.trim_end()),
            _ => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn rendering_the_captured_stream_reproduces_it_byte_for_byte() {
    let sent = Arc::new(AtomicU64::new(u64::MAX));
    let settled = sent.clone();
    let plan = StreamPlan {
        id: "msg_015hKP7NT8qN5auYNUXVc5ZA".into(),
        request_id: "req_unused".into(),
        model: "claude-haiku-4-5-20251001".into(),
        pieces: vec!["hi".into()],
        stop: Stop::EndTurn,
        tokens: Tokens {
            input: 11,
            cache_creation: 0,
            cache_read: 0,
            output: 4,
        },
        ttft: Duration::ZERO,
        latency: LatencyModel::new(&LatencyConfig::zero_latency()),
        rng: rand::rngs::SmallRng::seed_from_u64(0),
        overloaded: None,
        drop_after: None,
        settle: Some(Box::new(move |n| settled.store(n, Ordering::SeqCst))),
        padding: None,
    };
    let expected = unpadded(CAPTURE);
    assert!(expected.len() < CAPTURE.len(), "the capture is padded");
    let got = String::from_utf8(render_all(plan)).unwrap();
    assert_eq!(got, expected);
    assert_eq!(
        sent.load(Ordering::SeqCst),
        4,
        "settled with the output tokens"
    );
}

/// Splits a stream into (event, data) pairs, asserting the framing: `event: X\ndata: Y\n\n`
/// and `data.type == X`.
fn events(body: &[u8]) -> Vec<(String, Value)> {
    let text = std::str::from_utf8(body).unwrap();
    assert!(text.ends_with("\n\n"), "{text:?}");
    assert!(!text.contains("[DONE]"));
    text.strip_suffix("\n\n")
        .unwrap()
        .split("\n\n")
        .map(|e| {
            let (head, data) = e.split_once('\n').unwrap_or_else(|| panic!("{e:?}"));
            let name = head
                .strip_prefix("event: ")
                .unwrap_or_else(|| panic!("{e:?}"));
            let data = data
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("{e:?}"));
            assert!(!data.contains('\n'), "one data line: {e:?}");
            let v: Value = serde_json::from_str(data).unwrap();
            assert_eq!(v["type"], name, "{e:?}");
            (name.to_owned(), v)
        })
        .collect()
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(n, _)| n.as_str()).collect()
}

#[tokio::test]
async fn stream_over_http_matches_the_plain_answer() {
    let m = mock(MockConfig {
        output_tokens: OutputTokens::Fixed { tokens: 6 },
        ..MockConfig::default()
    });
    let plain = m
        .anthropic(
            "/v1/messages",
            &message(CLAUDE, "same prompt", 50, r#""temperature":0"#),
        )
        .await
        .json();
    let r = m
        .anthropic(
            "/v1/messages",
            &message(
                CLAUDE,
                "same prompt",
                50,
                r#""temperature":0,"stream":true"#,
            ),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/event-stream; charset=utf-8")
    );
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    assert!(r
        .header("anthropic-ratelimit-output-tokens-remaining")
        .is_some());
    let ev = events(&r.body);
    assert_eq!(
        names(&ev),
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let start = &ev[0].1["message"];
    assert_eq!(start["content"], serde_json::json!([]));
    assert_eq!(start["stop_reason"], Value::Null);
    assert_eq!(start["usage"]["output_tokens"], 1);
    assert_eq!(
        start["usage"]["input_tokens"],
        plain["usage"]["input_tokens"]
    );
    let text: String = ev
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .map(|(_, v)| v["delta"]["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(text, plain["content"][0]["text"].as_str().unwrap());
    let delta = &ev[10].1;
    assert_eq!(delta["delta"]["stop_reason"], plain["stop_reason"]);
    assert_eq!(delta["usage"]["output_tokens"], 6, "cumulative usage");
    assert_eq!(
        delta["usage"]["input_tokens"],
        plain["usage"]["input_tokens"]
    );
}

fn overloaded_config(at: OverloadedAt) -> MockConfig {
    let mut config = MockConfig {
        output_tokens: OutputTokens::Fixed { tokens: 6 },
        ..MockConfig::default()
    };
    config.anthropic.models[2].faults = AnthropicFaults {
        stream_overloaded: 1.0,
        stream_overloaded_at: at,
        ..AnthropicFaults::default()
    };
    config
}

#[tokio::test]
async fn overloaded_error_event_inside_a_200_stream() {
    let body = message(CLAUDE, "x", 50, r#""stream":true"#);
    let m = mock(overloaded_config(OverloadedAt::Middle));
    let r = m.anthropic("/v1/messages", &body).await;
    assert_eq!(r.status, 200);
    let ev = events(&r.body);
    assert_eq!(
        names(&ev),
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "error"
        ]
    );
    let rid = r.header("request-id").unwrap();
    let last = r.text();
    let error_frame = last.rsplit("event: error\n").next().unwrap();
    assert_eq!(
        error_frame,
        format!(
            "data: {{\"type\":\"error\",\"error\":{{\"details\":null,\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}},\"request_id\":\"{rid}\"}}\n\n"
        )
    );
    let m = mock(overloaded_config(OverloadedAt::Start));
    let r = m.anthropic("/v1/messages", &body).await;
    assert_eq!(r.status, 200);
    assert_eq!(names(&events(&r.body)), ["error"]);
    let stats = &m.state.anthropic().slot(CLAUDE).unwrap().stats;
    assert_eq!(stats.faults_overloaded_event.load(Ordering::Relaxed), 1);
    assert_eq!(
        stats.output_tokens.load(Ordering::Relaxed),
        0,
        "nothing sent"
    );
}

#[tokio::test]
async fn dropped_stream_ends_with_an_error_after_half_its_events() {
    let mut config = MockConfig {
        output_tokens: OutputTokens::Fixed { tokens: 6 },
        ..MockConfig::default()
    };
    config.anthropic.models[2].faults.drop_mid_stream = 1.0;
    let m = mock(config);
    let mut req = Request::post("/v1/messages");
    for (k, v) in ANTHROPIC {
        req = req.header(k, v);
    }
    let req = req
        .body(Body::from(message(CLAUDE, "x", 50, r#""stream":true"#)))
        .unwrap();
    let resp = m.router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let (mut received, mut failed) = (Vec::new(), false);
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => received.extend_from_slice(f.data_ref().map(|d| &d[..]).unwrap_or_default()),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(failed, "the body ends with an error");
    // 12 events in the whole stream: 6 sent, the last of them the third delta.
    let ev = events(&received);
    assert_eq!(ev.len(), 6);
    assert_eq!(ev[5].0, "content_block_delta");
    let stats = &m.state.anthropic().slot(CLAUDE).unwrap().stats;
    assert_eq!(
        stats.output_tokens.load(Ordering::Relaxed),
        3,
        "settled with what was sent"
    );
}

#[tokio::test(start_paused = true)]
async fn paced_stream_follows_ttft_and_per_token_intervals_and_settles_at_the_end() {
    let config = MockConfig {
        latency: LatencyConfig {
            zero: false,
            ttft_median: Duration::from_millis(400),
            ttft_p99: Duration::from_millis(400),
            per_token: Duration::from_millis(25),
            per_token_sigma: 0.0,
        },
        output_tokens: OutputTokens::Fixed { tokens: 4 },
        ..MockConfig::default()
    };
    let m = mock(config);
    let mut req = Request::post("/v1/messages");
    for (k, v) in ANTHROPIC {
        req = req.header(k, v);
    }
    let req = req
        .body(Body::from(message(CLAUDE, "x", 1_000, r#""stream":true"#)))
        .unwrap();
    let start = tokio::time::Instant::now();
    let resp = m.router.clone().oneshot(req).await.unwrap();
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "headers before the first event"
    );
    // max_tokens is reserved while the stream runs.
    let output = |m: &common::Mock| {
        m.state
            .anthropic()
            .slot(CLAUDE)
            .unwrap()
            .quota
            .lock()
            .snapshot(m.clock_now())
            .output
            .remaining
    };
    assert_eq!(output(&m), 400_000 - 1_000);
    let mut body = resp.into_body();
    let mut arrivals = Vec::new();
    while let Some(frame) = body.frame().await {
        frame.unwrap();
        arrivals.push(start.elapsed().as_millis());
    }
    // start, block start, ping, first delta at TTFT; then a delta every 25 ms; then the end.
    assert_eq!(arrivals, [400, 400, 400, 400, 425, 450, 475, 475, 475, 475]);
    assert_eq!(
        output(&m),
        400_000 - 4,
        "refunded to the 4 generated tokens"
    );
}

fn paced(tokens: u32) -> MockConfig {
    MockConfig {
        latency: LatencyConfig {
            zero: false,
            ttft_median: Duration::from_millis(400),
            ttft_p99: Duration::from_millis(400),
            per_token: Duration::from_millis(25),
            per_token_sigma: 0.0,
        },
        output_tokens: OutputTokens::Fixed { tokens },
        ..MockConfig::default()
    }
}

fn request(body: String) -> Request<Body> {
    let mut req = Request::post("/v1/messages");
    for (k, v) in ANTHROPIC {
        req = req.header(k, v);
    }
    req.body(Body::from(body)).unwrap()
}

fn output_remaining(m: &common::Mock) -> u64 {
    let slot = m.state.anthropic().slot(CLAUDE).unwrap().clone();
    let now = m.clock_now();
    let remaining = slot.quota.lock().snapshot(now).output.remaining;
    remaining
}

#[tokio::test(start_paused = true)]
async fn a_client_that_goes_away_settles_what_was_generated() {
    // Non-streamed: dropped while the response is prepared; its 5 tokens were generated.
    let m = mock(paced(5));
    let call = m
        .router
        .clone()
        .oneshot(request(message(CLAUDE, "x", 1_000, "")));
    assert!(tokio::time::timeout(Duration::from_millis(100), call)
        .await
        .is_err());
    assert_eq!(output_remaining(&m), 400_000 - 5);
    // Streamed: dropped after the first delta; one token was sent.
    let m = mock(paced(5));
    let resp = m
        .router
        .clone()
        .oneshot(request(message(CLAUDE, "x", 1_000, r#""stream":true"#)))
        .await
        .unwrap();
    let mut body = resp.into_body();
    for _ in 0..4 {
        body.frame().await.unwrap().unwrap();
    }
    assert_eq!(
        output_remaining(&m),
        400_000 - 1_000,
        "reserved while streaming"
    );
    drop(body);
    assert_eq!(output_remaining(&m), 400_000 - 1);
}

#[tokio::test]
async fn an_empty_stream_still_carries_the_overloaded_event() {
    let m = mock(overloaded_config(OverloadedAt::Middle));
    let r = m
        .anthropic("/v1/messages", &message(CLAUDE, "x", 0, r#""stream":true"#))
        .await;
    assert_eq!(names(&events(&r.body)), ["message_start", "ping", "error"]);
    let m = mock(MockConfig::default());
    let r = m
        .anthropic("/v1/messages", &message(CLAUDE, "x", 0, r#""stream":true"#))
        .await;
    assert_eq!(
        names(&events(&r.body)),
        ["message_start", "ping", "message_delta", "message_stop"]
    );
}

#[tokio::test]
async fn padded_streams_are_the_unpadded_stream_plus_spaces() {
    let body = message(CLAUDE, "pad me", 50, r#""temperature":0,"stream":true"#);
    let plain = mock(MockConfig::default())
        .anthropic("/v1/messages", &body)
        .await
        .text();
    let mut config = MockConfig::default();
    config.anthropic.sse_padding = true;
    let padded = mock(config).anthropic("/v1/messages", &body).await.text();
    assert_ne!(padded, plain);
    assert!(
        padded.contains("data: {\"type\": \"ping\"}\n"),
        "ping is never padded"
    );
    assert!(padded.contains(" }\n"), "{padded}");
    assert_eq!(unpadded(&padded), plain);
    assert_eq!(
        names(&events(padded.as_bytes())).len(),
        names(&events(plain.as_bytes())).len()
    );
}
