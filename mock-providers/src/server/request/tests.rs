//! Tests of [`super::parse`]: fields read, errors naming their `param`, embedding inputs,
//! and the fast chat path agreeing with the general reader.

use super::*;

fn err(body: &str, op: Operation) -> serde_json::Value {
    let e = parse(body.as_bytes(), op, true).unwrap_err();
    assert_eq!(e.status, 400);
    serde_json::from_str(&e.body).unwrap()
}

#[test]
fn chat_fields_are_read() {
    let body = r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"hi"}],"name":"x"}],
        "max_tokens":5,"max_completion_tokens":7,"n":2,"stop":["a","b"],"stream":true,
        "stream_options":{"include_usage":true},"temperature":0.5,"seed":-3,"user":"u","extra":{"ok":1}}"#;
    let r = parse(body.as_bytes(), Operation::Chat, true).unwrap();
    assert_eq!(r.model.as_deref(), Some("m"));
    let p = r.params().unwrap();
    assert_eq!(p.max_tokens, Some(7), "max_completion_tokens wins");
    assert_eq!((p.n, p.stream, p.include_usage), (2, true, true));
    assert_eq!(p.stop, ["a", "b"]);
    assert_eq!((p.temperature, p.seed), (Some(0.5), Some(-3)));
    assert_eq!(r.prompt_estimate(), 1, "ceil(2 chars / 4)");
    assert_eq!(r.choices(), 2);
}

#[test]
fn errors_name_the_param() {
    let e = err(r#"{"model":"m"}"#, Operation::Chat);
    assert_eq!(e["error"]["param"], "messages");
    assert_eq!(e["error"]["code"], "missing_required_parameter");
    let e = err(
        r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":"5"}"#,
        Operation::Chat,
    );
    assert_eq!(
        e["error"]["message"],
        "Invalid type for 'max_tokens': expected an integer, but got a string instead."
    );
    assert_eq!(e["error"]["param"], "max_tokens");
    let e = err(
        r#"{"model":"m","messages":[{"role":"robot","content":"x"}]}"#,
        Operation::Chat,
    );
    assert_eq!(e["error"]["param"], "messages[0].role");
    let e = err(
        r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream_options":{}}"#,
        Operation::Chat,
    );
    assert_eq!(e["error"]["param"], "stream_options");
    let e = err(
        r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":3}"#,
        Operation::Chat,
    );
    assert_eq!(e["error"]["code"], "decimal_above_max_value");
    let e = err(r#"{"messages":[]}"#, Operation::Chat);
    assert_eq!(e["error"]["param"], "model");
    let e = err(r#"{"model":"m","input":{"a":1}}"#, Operation::Embedding);
    assert_eq!(e["error"]["param"], "input");
    let e = err(r#"[1,2]"#, Operation::Chat);
    assert_eq!(e["error"]["code"], "invalid_type");
    let e = err(r#"{"model":"m",,}"#, Operation::Chat);
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("We could not parse the JSON body"));
}

#[test]
fn embedding_inputs_and_formats() {
    let r = parse(
        br#"{"model":"e","input":["ab",[1,2,3]],"encoding_format":"base64","dimensions":8}"#,
        Operation::Embedding,
        true,
    )
    .unwrap();
    let Body::Embedding {
        inputs,
        token_inputs,
        base64,
        dimensions,
    } = r.body
    else {
        panic!()
    };
    assert_eq!(inputs.len(), 2);
    assert_eq!(token_inputs, [None, Some(3)]);
    assert!(base64);
    assert_eq!(dimensions, Some(8));
}

#[test]
fn fast_path_agrees_with_the_general_reader() {
    let msg = r#""messages":[{"role":"user","content":"hi"}]"#;
    let bodies = [
        format!(r#"{{"model":"m",{msg}}}"#),
        format!(r#"{{"model":"m",{msg},"max_tokens":5,"max_completion_tokens":7,"n":2}}"#),
        format!(
            r#"{{"model":"m",{msg},"stop":"x","stream":true,"stream_options":{{"include_usage":true}}}}"#
        ),
        format!(
            r#"{{"model":"m",{msg},"stop":["a","b","c","d"],"temperature":0,"seed":-1,"user":"u"}}"#
        ),
        format!(r#"{{"model":"m",{msg},"stop":["a","b","c","d","e"]}}"#),
        format!(r#"{{"model":"m",{msg},"stop":[]}}"#),
        format!(r#"{{"model":"m",{msg},"stream_options":{{"include_usage":true}}}}"#),
        format!(r#"{{"model":"m",{msg},"stream_options":null,"stream":null}}"#),
        format!(r#"{{"model":"m",{msg},"max_tokens":0}}"#),
        format!(r#"{{"model":"m",{msg},"max_tokens":5.0}}"#),
        format!(r#"{{"model":"m",{msg},"max_tokens":1e2}}"#),
        format!(r#"{{"model":"m",{msg},"max_tokens":null,"n":null,"temperature":null}}"#),
        format!(r#"{{"model":"m",{msg},"n":129}}"#),
        format!(r#"{{"model":"m",{msg},"mock_output_tokens":44}}"#),
        format!(r#"{{"model":"m",{msg},"mock_output_tokens":0}}"#),
        format!(r#"{{"model":"m",{msg},"mock_output_tokens":"44"}}"#),
        format!(r#"{{"model":"m",{msg},"temperature":2.5}}"#),
        format!(r#"{{"model":"m",{msg},"temperature":2}}"#),
        format!(r#"{{"model":"m",{msg},"seed":18446744073709551615}}"#),
        format!(r#"{{"model":"m",{msg},"user":null,"tools":[{{"x":1}}]}}"#),
        format!(r#"{{"model":null,{msg}}}"#),
        format!(r#"{{{msg}}}"#),
        format!(r#"{{"model":"m",{msg},"model":"n"}}"#),
        r#"{"model":"m","messages":[]}"#.to_owned(),
        r#"{"model":"m","messages":[{"role":"robot","content":"x"}]}"#.to_owned(),
        r#"{"model":"m","messages":[{"role":"assistant","content":null}]}"#.to_owned(),
        r#"{"model":"m","messages":[{"role":"user","content":null}]}"#.to_owned(),
        r#"{"model":"m","messages":[{"role":"user"}]}"#.to_owned(),
        r#"{"model":"m","messages":[{"role":"user","content":"a\"b\u00e9","name":"x"}]}"#
            .to_owned(),
        r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}"#
            .to_owned(),
        r#"{"model":"m","messages":[{"role":"user","content":"x","name":null}]}"#.to_owned(),
        r#"[1]"#.to_owned(),
        r#"{"#.to_owned(),
    ];
    for body in &bodies {
        for required in [true, false] {
            let slow = parse_slow(body.as_bytes(), Operation::Chat, required);
            if let Some(fast) = fast_chat::parse(body.as_bytes(), required) {
                assert_eq!(
                    slow.as_ref().ok(),
                    Some(&fast),
                    "{body} (required {required})"
                );
            }
        }
    }
    // The common case does take the fast path.
    assert!(fast_chat::parse(bodies[0].as_bytes(), true).is_some());
    assert!(fast_chat::parse(bodies[2].as_bytes(), true).is_some());
}
