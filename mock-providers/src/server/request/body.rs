//! Readers for the operation-specific parts of a request body: chat `messages`, legacy
//! `prompt`, and embeddings `input` with its format options. Text fields are moved out of
//! the parsed document, not copied.

use serde_json::{Map, Value};

use super::super::errors::ApiError;
use super::fields::{int_at_least, missing, valid_role, wrong_type};
use super::types::{Body, Message};

/// The `messages` of a chat request, moved out of `obj`.
pub(super) fn messages(obj: &mut Map<String, Value>) -> Result<Vec<Message>, ApiError> {
    let list = match obj.remove("messages") {
        None => return Err(missing("messages")),
        Some(Value::Array(a)) => a,
        Some(v) => return Err(wrong_type("messages", "an array", &v)),
    };
    if list.is_empty() {
        return Err(ApiError::invalid_request(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
            Some("messages"),
            Some("empty_array"),
        ));
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, m) in list.into_iter().enumerate() {
        let Value::Object(mut m) = m else {
            return Err(wrong_type(&format!("messages[{i}]"), "an object", &m));
        };
        let role = match m.remove("role") {
            None => return Err(missing(&format!("messages[{i}].role"))),
            Some(Value::String(r)) => r,
            Some(v) => return Err(wrong_type(&format!("messages[{i}].role"), "a string", &v)),
        };
        if !valid_role(&role) {
            return Err(ApiError::invalid_request(
                &format!("Invalid value: '{role}'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'."),
                Some(&format!("messages[{i}].role")),
                Some("invalid_value"),
            ));
        }
        let content = match m.remove("content") {
            None | Some(Value::Null) if role == "assistant" => String::new(),
            None => return Err(missing(&format!("messages[{i}].content"))),
            Some(Value::String(s)) => s,
            Some(Value::Array(parts)) => text_parts(&parts, i)?,
            Some(v) => {
                let param = format!("messages[{i}].content");
                return Err(wrong_type(
                    &param,
                    "one of a string or array of objects",
                    &v,
                ));
            }
        };
        let name = match m.remove("name") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(v) => return Err(wrong_type(&format!("messages[{i}].name"), "a string", &v)),
        };
        out.push(Message {
            role,
            name,
            content,
        });
    }
    Ok(out)
}

/// Joins the `text` of content parts; other part types (images, audio) add no text.
fn text_parts(parts: &[Value], i: usize) -> Result<String, ApiError> {
    let mut text = String::new();
    for (j, p) in parts.iter().enumerate() {
        let Value::Object(p) = p else {
            return Err(wrong_type(
                &format!("messages[{i}].content[{j}]"),
                "an object",
                p,
            ));
        };
        if let Some(t) = p.get("text") {
            let Value::String(t) = t else {
                let param = format!("messages[{i}].content[{j}].text");
                return Err(wrong_type(&param, "a string", t));
            };
            text.push_str(t);
        }
    }
    Ok(text)
}

/// The `prompt` of a legacy completion (a string or an array of strings), moved out of `obj`.
pub(super) fn prompts(obj: &mut Map<String, Value>) -> Result<Vec<String>, ApiError> {
    match obj.remove("prompt") {
        None => Err(missing("prompt")),
        Some(Value::String(s)) => Ok(vec![s]),
        Some(Value::Array(a)) => a
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s),
                v => Err(wrong_type(&format!("prompt[{i}]"), "a string", &v)),
            })
            .collect(),
        Some(v) => Err(wrong_type(
            "prompt",
            "one of a string or array of strings",
            &v,
        )),
    }
}

/// The `input`, `encoding_format` and `dimensions` of an embeddings request.
pub(super) fn embedding(obj: &mut Map<String, Value>) -> Result<Body, ApiError> {
    let (inputs, token_inputs) = match obj.get("input") {
        None => return Err(missing("input")),
        Some(Value::String(s)) => (vec![s.clone()], vec![None]),
        Some(Value::Array(a)) if a.iter().all(Value::is_u64) && !a.is_empty() => {
            (vec![render_tokens(a)], vec![Some(len_u32(a.len()))])
        }
        Some(Value::Array(a)) => {
            let mut inputs = Vec::with_capacity(a.len());
            let mut tokens = Vec::with_capacity(a.len());
            for (i, v) in a.iter().enumerate() {
                match v {
                    Value::String(s) => {
                        inputs.push(s.clone());
                        tokens.push(None);
                    }
                    Value::Array(t) if t.iter().all(Value::is_u64) => {
                        inputs.push(render_tokens(t));
                        tokens.push(Some(len_u32(t.len())));
                    }
                    v => return Err(wrong_type(&format!("input[{i}]"), "a string", v)),
                }
            }
            (inputs, tokens)
        }
        Some(v) => {
            return Err(wrong_type(
                "input",
                "one of a string or array of strings",
                v,
            ))
        }
    };
    let empty = |(s, t): (&String, &Option<u32>)| match t {
        None => s.is_empty(),
        Some(n) => *n == 0,
    };
    if inputs.is_empty() || inputs.iter().zip(&token_inputs).any(empty) {
        return Err(ApiError::invalid_request(
            "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.",
            Some("input"),
            None,
        ));
    }
    let base64 = match obj.get("encoding_format") {
        None | Some(Value::Null) => false,
        Some(Value::String(f)) if f == "float" => false,
        Some(Value::String(f)) if f == "base64" => true,
        Some(Value::String(f)) => {
            return Err(ApiError::invalid_request(
                &format!("Invalid value: '{f}'. Supported values are: 'float' and 'base64'."),
                Some("encoding_format"),
                Some("invalid_value"),
            ))
        }
        Some(v) => return Err(wrong_type("encoding_format", "a string", v)),
    };
    let dimensions = int_at_least(obj, "dimensions", 1, 65_536)?.map(|d| d as usize);
    Ok(Body::Embedding {
        inputs,
        token_inputs,
        base64,
        dimensions,
    })
}

/// Token ids rendered as text (space-separated), standing in for the input they encode.
fn render_tokens(tokens: &[Value]) -> String {
    tokens
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `n` as `u32`, saturating.
fn len_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
