//! Tests of the SSE parser and chunk decoder: line endings, comments, splits, endings.

use proptest::prelude::*;

use super::*;
use crate::provider::types::{FinishReason, Usage};

/// Feeds `pieces` in order and finishes, as the stream adapter does.
fn decode_all(pieces: &[&[u8]], expect_usage: bool) -> Result<Vec<StreamChunk>, ConnectorError> {
    let mut parser = SseParser::new();
    let mut decoder = ChunkDecoder::new(expect_usage);
    let mut events = Vec::new();
    let mut out = VecDeque::new();
    for p in pieces {
        parser.feed(p, &mut events);
        for e in events.drain(..) {
            decoder.on_event(&e, &mut out)?;
        }
    }
    decoder.finish(parser.finish(), &mut out)?;
    Ok(out.into_iter().collect())
}

fn content_event(index: u32, text: &str) -> String {
    let chunk = serde_json::json!({
        "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": index, "delta": {"content": text}, "logprobs": null, "finish_reason": null}]
    });
    format!("data: {chunk}\n\n")
}

const ROLE: &str = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n";
const FINISH: &str =
    "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n";
const USAGE: &str = "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}\n\n";
const DONE: &str = "data: [DONE]\n\n";

fn text(index: u32, s: &str) -> StreamChunk {
    StreamChunk {
        delta: s.into(),
        index,
        ..StreamChunk::default()
    }
}

fn finish(index: u32) -> StreamChunk {
    StreamChunk {
        index,
        finish_reason: Some(FinishReason::Stop),
        ..StreamChunk::default()
    }
}

fn usage(input: u64, output: u64) -> StreamChunk {
    StreamChunk {
        usage: Some(Usage {
            input_tokens: input,
            output_tokens: output,
        }),
        ..StreamChunk::default()
    }
}

fn full_stream() -> String {
    [
        ROLE.to_string(),
        content_event(0, "Hel"),
        content_event(0, "lo"),
        FINISH.into(),
        USAGE.into(),
        DONE.into(),
    ]
    .concat()
}

#[test]
fn whole_stream_yields_text_finish_and_usage() {
    let chunks = decode_all(&[full_stream().as_bytes()], true).unwrap();
    assert_eq!(
        chunks,
        vec![text(0, "Hel"), text(0, "lo"), finish(0), usage(9, 2)]
    );
}

#[test]
fn crlf_and_lone_cr_line_endings_are_lines() {
    let s = full_stream();
    for sep in ["\r\n", "\r"] {
        let converted = s.replace('\n', sep);
        let chunks = decode_all(&[converted.as_bytes()], true).unwrap();
        assert_eq!(chunks.len(), 4, "separator {sep:?}");
    }
    // `\r` at the end of one read and `\n` at the start of the next is one line end.
    let s = s.replace('\n', "\r\n");
    let cut = s.find("\r\n").unwrap() + 1;
    let chunks = decode_all(&[&s.as_bytes()[..cut], &s.as_bytes()[cut..]], true).unwrap();
    assert_eq!(chunks.len(), 4);
}

#[test]
fn comments_event_ids_and_retry_fields_are_ignored() {
    let s = format!(
        ": keep-alive\n\n{}id: 7\nretry: 100\n{}: ping\n{DONE}",
        content_event(0, "a"),
        FINISH
    );
    assert_eq!(
        decode_all(&[s.as_bytes()], false).unwrap(),
        vec![text(0, "a"), finish(0)]
    );
}

#[test]
fn several_events_in_one_read_and_one_event_over_many_reads() {
    let s = full_stream();
    let bytes = s.as_bytes();
    let one_by_one: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(
        decode_all(&one_by_one, true).unwrap(),
        decode_all(&[bytes], true).unwrap()
    );
}

#[test]
fn multi_line_data_is_joined_with_newlines() {
    let mut p = SseParser::new();
    let mut out = Vec::new();
    p.feed(b"event: x\ndata: a\ndata:b\n\ndata\n\n", &mut out);
    assert_eq!(
        out,
        vec![
            SseEvent {
                event: Some("x".into()),
                data: "a\nb".into()
            },
            SseEvent {
                event: None,
                data: String::new()
            },
        ]
    );
}

#[test]
fn events_after_done_are_ignored() {
    let s = format!(
        "{}{FINISH}{DONE}{}",
        content_event(0, "a"),
        content_event(0, "zzz")
    );
    assert_eq!(decode_all(&[s.as_bytes()], false).unwrap().len(), 2);
}

#[test]
fn stream_without_done_or_finish_reason_is_an_error() {
    let s = format!("{ROLE}{}", content_event(0, "partial"));
    let err = decode_all(&[s.as_bytes()], true).unwrap_err();
    assert_eq!(err.error_type(), "stream");
    assert!(err.to_string().contains("unfinished"), "{err}");
    assert!(err.is_retryable());
}

#[test]
fn empty_stream_is_an_error() {
    assert!(matches!(
        decode_all(&[b""], false),
        Err(ConnectorError::Stream { .. })
    ));
}

#[test]
fn missing_usage_chunk_is_an_error_only_when_it_was_requested() {
    let s = format!("{}{FINISH}", content_event(0, "a"));
    assert!(decode_all(&[s.as_bytes()], false).is_ok());
    let err = decode_all(&[s.as_bytes()], true).unwrap_err();
    assert!(err.to_string().contains("usage"), "{err}");
}

#[test]
fn finished_stream_without_done_and_without_final_blank_line_is_accepted() {
    let s = format!("{}{FINISH}{}", content_event(0, "a"), USAGE.trim_end());
    assert_eq!(decode_all(&[s.as_bytes()], true).unwrap().len(), 3);
}

#[test]
fn stream_cut_inside_an_event_is_an_error() {
    let s = full_stream();
    let cut = s.find("\"lo\"").unwrap();
    let err = decode_all(&[&s.as_bytes()[..cut]], true).unwrap_err();
    assert!(err.to_string().contains("inside an event"), "{err}");
}

#[test]
fn error_payloads_and_error_events_are_stream_errors() {
    let s = "data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}\n\n";
    let err = decode_all(&[s.as_bytes()], false).unwrap_err();
    assert!(err.to_string().contains("overloaded"), "{err}");
    let s = "event: error\ndata: {\"message\":\"bad\"}\n\n";
    assert!(matches!(
        decode_all(&[s.as_bytes()], false),
        Err(ConnectorError::Stream { .. })
    ));
    let s = "data: not json\n\n";
    assert!(decode_all(&[s.as_bytes()], false)
        .unwrap_err()
        .to_string()
        .contains("unparseable chunk"));
}

#[test]
fn several_choices_must_all_finish() {
    let finish1 =
        "data: {\"choices\":[{\"index\":1,\"delta\":{},\"finish_reason\":\"length\"}]}\n\n";
    let s = format!("{}{}{FINISH}", content_event(0, "a"), content_event(1, "b"));
    assert!(decode_all(&[s.as_bytes()], false).is_err());
    let s = format!("{s}{finish1}");
    let chunks = decode_all(&[s.as_bytes()], false).unwrap();
    assert_eq!(chunks[3].finish_reason, Some(FinishReason::Length));
}

/// A valid stream of random deltas (multi-byte characters included), with random line
/// endings and comments, and the chunks it must decode to.
fn arb_stream() -> impl Strategy<Value = (Vec<u8>, Vec<StreamChunk>)> {
    let delta = "[a-zé€😀 \\n\"\\\\]{1,12}";
    (
        prop::collection::vec(delta, 1..12),
        prop::sample::select(vec!["\n", "\r\n", "\r"]),
        any::<bool>(),
        (0u64..5000, 0u64..5000),
    )
        .prop_map(|(deltas, eol, comments, (pt, ct))| {
            let mut s = ROLE.to_string();
            let mut expected = Vec::new();
            for d in &deltas {
                if comments {
                    s.push_str(": keep-alive\n\n");
                }
                s.push_str(&content_event(0, d));
                expected.push(text(0, d));
            }
            s.push_str(FINISH);
            expected.push(finish(0));
            let u = format!(
                "data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":{pt},\"completion_tokens\":{ct}}}}}\n\n"
            );
            s.push_str(&u);
            expected.push(usage(pt, ct));
            s.push_str(DONE);
            (s.replace('\n', eol).into_bytes(), expected)
        })
}

proptest! {
    #[test]
    fn any_split_of_a_valid_stream_decodes_to_the_same_chunks(
        (bytes, expected) in arb_stream(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..40),
    ) {
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
        points.sort_unstable();
        points.dedup();
        let mut pieces = Vec::new();
        let mut start = 0;
        for p in points {
            pieces.push(&bytes[start..p]);
            start = p;
        }
        pieces.push(&bytes[start..]);
        let decoded = decode_all(&pieces, true).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(decoded, expected);
    }

    #[test]
    fn any_strict_prefix_of_a_valid_stream_without_done_is_an_error_or_complete(
        (bytes, expected) in arb_stream(),
        cut in any::<prop::sample::Index>(),
    ) {
        // Cutting before `[DONE]` either loses something (an error) or happens after the
        // usage chunk (everything already decoded): never a shorter "success".
        let cut = cut.index(bytes.len());
        match decode_all(&[&bytes[..cut]], true) {
            Ok(chunks) => prop_assert_eq!(chunks, expected),
            Err(e) => prop_assert_eq!(e.error_type(), "stream"),
        }
    }
}
