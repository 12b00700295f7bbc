//! What the gateway reads of a client's body — and only reads: the model, whether it
//! streams, and its size for the admission estimate. The body is forwarded as its bytes;
//! the one change ever made is asking for `stream_options.include_usage` on a stream
//! that did not ask, spliced into the bytes.

use axum::body::Bytes;
use serde_json::{Map, Value};

use super::errors::{Family, GatewayError};
use super::upstream::Operation;
use crate::provider::admission::{encoding, RequestSize};

/// Tokens the chat format adds per message, per name and for the reply (as
/// [`RequestSize::of`] counts them).
const PER_MESSAGE: u64 = 3 + 1;
const PER_NAME: u64 = 1;
const PER_REPLY: u64 = 3;

/// What admission and forwarding need of a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspected {
    /// `model`, when the body names one.
    pub model: Option<String>,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// Whether it asked for the usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
    /// Its size for the estimate.
    pub size: RequestSize,
}

/// A 400 naming `param` (boxed: the error is large and the happy path small).
fn bad(family: Family, message: String, param: &str) -> Box<GatewayError> {
    Box::new(GatewayError::invalid(family, message, Some(param)))
}

/// Reads `body` for `op`; a body that is not JSON, or lacks or mistypes what `op` needs,
/// is a 400 naming the parameter. `model_required`: OpenAI routes need `model`; Azure's
/// take the deployment from the path.
pub fn inspect(
    family: Family,
    op: Operation,
    body: &[u8],
    model_required: bool,
) -> Result<Inspected, Box<GatewayError>> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        Box::new(GatewayError::invalid(
            family,
            format!("We could not parse the JSON body of your request: {e}"),
            None,
        ))
    })?;
    let Value::Object(o) = value else {
        return Err(Box::new(GatewayError::invalid(
            family,
            "The request body must be a JSON object.",
            None,
        )));
    };
    let model = match o.get("model") {
        Some(Value::String(m)) if !m.is_empty() => Some(m.clone()),
        None if !model_required => None,
        None => {
            return Err(bad(
                family,
                "you must provide a model parameter".into(),
                "model",
            ))
        }
        Some(_) => {
            return Err(bad(
                family,
                "`model` must be a non-empty string".into(),
                "model",
            ))
        }
    };
    let stream = match o.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(bad(family, "`stream` must be a boolean".into(), "stream")),
    };
    let include_usage = match o.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(Value::Object(so)) => match so.get("include_usage") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(bad(
                    family,
                    "`stream_options.include_usage` must be a boolean".into(),
                    "stream_options.include_usage",
                ))
            }
        },
        Some(_) => {
            return Err(bad(
                family,
                "`stream_options` must be an object".into(),
                "stream_options",
            ))
        }
    };
    let count = |field: &str| -> Result<Option<u64>, Box<GatewayError>> {
        match o.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .filter(|n| *n <= u64::from(u32::MAX))
                .map(Some)
                .ok_or_else(|| {
                    bad(
                        family,
                        format!("`{field}` must be a non-negative integer"),
                        field,
                    )
                }),
        }
    };
    let max_tokens = count("max_tokens")?.or(count("max_completion_tokens")?);
    let n = match count("n")? {
        None => 1,
        Some(0) => return Err(bad(family, "`n` must be at least 1".into(), "n")),
        Some(n) => n.min(128) as u32,
    };
    let bpe = encoding(model.as_deref().unwrap_or(""));
    let tokens = |t: &str| bpe.encode_with_special_tokens(t).len() as u64;
    let chars = |t: &str| t.chars().count() as u64;
    let size = match op {
        Operation::Chat => {
            let Some(Value::Array(messages)) = o.get("messages") else {
                return Err(bad(
                    family,
                    "`messages` must be a non-empty array".into(),
                    "messages",
                ));
            };
            if messages.is_empty() {
                return Err(bad(
                    family,
                    "`messages` must be a non-empty array".into(),
                    "messages",
                ));
            }
            let (mut t, mut c) = (PER_REPLY, 0u64);
            for (i, m) in messages.iter().enumerate() {
                let param = format!("messages[{i}]");
                let Value::Object(m) = m else {
                    return Err(bad(family, format!("`{param}` must be an object"), &param));
                };
                if !matches!(m.get("role"), Some(Value::String(_))) {
                    return Err(bad(
                        family,
                        format!("`{param}.role` must be a string"),
                        &format!("{param}.role"),
                    ));
                }
                let text = content_text(m).ok_or_else(|| {
                    bad(
                        family,
                        format!("`{param}.content` must be a string, an array of parts or null"),
                        &format!("{param}.content"),
                    )
                })?;
                t += PER_MESSAGE + tokens(&text);
                if let Some(Value::String(name)) = m.get("name") {
                    t += PER_NAME + tokens(name);
                }
                c += chars(&text);
            }
            RequestSize {
                prompt_tokens: t,
                prompt_chars: c,
                max_tokens,
                n,
            }
        }
        Operation::Completions => {
            let prompts = texts(o.get("prompt")).ok_or_else(|| {
                bad(
                    family,
                    "`prompt` must be a string or an array of strings or tokens".into(),
                    "prompt",
                )
            })?;
            let count = prompts.len().max(1) as u32;
            RequestSize {
                prompt_tokens: prompts.iter().map(|p| p.tokens(&tokens)).sum(),
                prompt_chars: prompts.iter().map(|p| p.chars()).sum(),
                max_tokens,
                n: n.saturating_mul(count),
            }
        }
        Operation::Embeddings => {
            let inputs = texts(o.get("input")).ok_or_else(|| {
                bad(
                    family,
                    "`input` must be a string or an array of strings or tokens".into(),
                    "input",
                )
            })?;
            RequestSize {
                prompt_tokens: inputs.iter().map(|p| p.tokens(&tokens)).sum(),
                prompt_chars: inputs.iter().map(|p| p.chars()).sum(),
                max_tokens: Some(0),
                n: 1,
            }
        }
    };
    Ok(Inspected {
        model,
        stream,
        include_usage,
        size,
    })
}

/// A chat message's text: its string content, or its text parts joined; `None` when
/// `content` has another type.
fn content_text(m: &Map<String, Value>) -> Option<String> {
    match m.get("content") {
        None | Some(Value::Null) => Some(String::new()),
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Array(parts)) => {
            let mut out = String::new();
            for p in parts {
                match p {
                    Value::Object(p) => {
                        if let Some(Value::String(t)) = p.get("text") {
                            out.push_str(t);
                        }
                    }
                    Value::String(s) => out.push_str(s),
                    _ => return None,
                }
            }
            Some(out)
        }
        Some(_) => None,
    }
}

/// One prompt or input: text, or tokens already.
enum Piece {
    Text(String),
    Tokens(u64),
}

impl Piece {
    fn tokens(&self, count: &impl Fn(&str) -> u64) -> u64 {
        match self {
            Self::Text(t) => count(t),
            Self::Tokens(n) => *n,
        }
    }

    fn chars(&self) -> u64 {
        match self {
            Self::Text(t) => t.chars().count() as u64,
            Self::Tokens(n) => n.saturating_mul(4),
        }
    }
}

/// A prompt / input field: a string, an array of strings, an array of token ids, or an
/// array of token arrays.
fn texts(v: Option<&Value>) -> Option<Vec<Piece>> {
    match v? {
        Value::String(s) => Some(vec![Piece::Text(s.clone())]),
        Value::Array(items) if items.iter().all(Value::is_u64) => {
            Some(vec![Piece::Tokens(items.len() as u64)])
        }
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Some(Piece::Text(s.clone())),
                Value::Array(t) if t.iter().all(Value::is_u64) => {
                    Some(Piece::Tokens(t.len() as u64))
                }
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// `body` asking for the usage chunk: `"stream_options":{"include_usage":true}` spliced
/// in before the object's closing brace when the body has no `stream_options`; else
/// (a rare `stream_options` without it) the body re-encoded with it set.
pub fn with_include_usage(body: &Bytes) -> Bytes {
    let has_options = serde_json::from_slice::<Map<String, Value>>(body)
        .map(|o| o.contains_key("stream_options"))
        .unwrap_or(true);
    if !has_options {
        let end = body
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
            .filter(|&i| body[i] == b'}');
        if let Some(end) = end {
            let empty = body[..end]
                .iter()
                .rposition(|b| !b.is_ascii_whitespace())
                .is_some_and(|i| body[i] == b'{');
            let mut out = Vec::with_capacity(body.len() + 48);
            out.extend_from_slice(&body[..end]);
            if !empty {
                out.push(b',');
            }
            out.extend_from_slice(br#""stream_options":{"include_usage":true}"#);
            out.extend_from_slice(&body[end..]);
            return Bytes::from(out);
        }
    }
    match serde_json::from_slice::<Map<String, Value>>(body) {
        Ok(mut o) => {
            let so = o
                .entry("stream_options")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(so) = so {
                so.insert("include_usage".into(), Value::Bool(true));
            }
            serde_json::to_vec(&o)
                .map(Bytes::from)
                .unwrap_or_else(|_| body.clone())
        }
        Err(_) => body.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: &str) -> Result<Inspected, Box<GatewayError>> {
        inspect(Family::Openai, Operation::Chat, body.as_bytes(), true)
    }

    #[test]
    fn a_chat_body_is_sized_as_the_connectors_size_it() {
        use crate::provider::{CompletionRequest, Message};
        let i = chat(r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello there"}],"max_tokens":12}"#)
            .expect("valid");
        let r = CompletionRequest::new("gpt-4o-mini", vec![Message::user("Hello there")])
            .with_max_tokens(12);
        assert_eq!(i.size, RequestSize::of(&r));
        assert_eq!(i.model.as_deref(), Some("gpt-4o-mini"));
        assert!(!i.stream);
    }

    #[test]
    fn bad_bodies_name_their_parameter() {
        let cases = [
            ("{", None),
            ("[]", None),
            (
                r#"{"messages":[{"role":"user","content":"x"}]}"#,
                Some("model"),
            ),
            (r#"{"model":"m"}"#, Some("messages")),
            (r#"{"model":"m","messages":[]}"#, Some("messages")),
            (
                r#"{"model":"m","messages":[{"content":"x"}]}"#,
                Some("messages[0].role"),
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":5}]}"#,
                Some("messages[0].content"),
            ),
            (
                r#"{"model":"m","messages":[{"role":"user"}],"stream":"yes"}"#,
                Some("stream"),
            ),
            (
                r#"{"model":"m","messages":[{"role":"user"}],"max_tokens":-1}"#,
                Some("max_tokens"),
            ),
            (
                r#"{"model":"m","messages":[{"role":"user"}],"n":0}"#,
                Some("n"),
            ),
        ];
        for (body, param) in cases {
            let e = chat(body).expect_err(body);
            assert_eq!(e.status, 400, "{body}");
            assert_eq!(e.body["error"]["param"].as_str(), param, "{body}");
        }
    }

    #[test]
    fn embeddings_charge_their_input_only() {
        let i = inspect(
            Family::Openai,
            Operation::Embeddings,
            br#"{"model":"text-embedding-3-small","input":["abcd","efgh"]}"#,
            true,
        )
        .expect("valid");
        assert_eq!(i.size.max_tokens, Some(0));
        assert_eq!(i.size.prompt_chars, 8);
    }

    #[test]
    fn include_usage_is_spliced_into_the_bytes() {
        let b = Bytes::from_static(b"{\"model\":\"m\", \"temperature\":0.70000000000000001 }\n");
        let out = with_include_usage(&b);
        assert_eq!(
            &out[..],
            &b"{\"model\":\"m\", \"temperature\":0.70000000000000001 ,\"stream_options\":{\"include_usage\":true}}\n"[..]
        );
        let v: Value = serde_json::from_slice(&with_include_usage(&Bytes::from_static(
            b"{\"stream_options\":{\"include_usage\":false}}",
        )))
        .expect("json");
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(
            &with_include_usage(&Bytes::from_static(b"{}"))[..],
            b"{\"stream_options\":{\"include_usage\":true}}"
        );
    }
}
