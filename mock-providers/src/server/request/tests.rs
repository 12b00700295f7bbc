//! Tests of [`super::parse`]: fields read, errors naming their `param`, embedding inputs.

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
