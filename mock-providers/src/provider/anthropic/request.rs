//! `POST /v1/messages` and `/v1/messages/count_tokens` bodies: validated with the real
//! API's messages where they are known (the wire facts in
//! `/work/shared/reference/anthropic-wire-facts.md`), and reduced to what the mock needs —
//! the prompt's text in order, where its cache breakpoint is, `max_tokens`, stop sequences,
//! `stream`.

use serde_json::{Map, Value};

use super::errors::AnthropicError;

/// Top-level fields `/v1/messages` accepts (the 2026 SDK's parameters); any other is
/// "Extra inputs are not permitted".
const MESSAGE_FIELDS: [&str; 20] = [
    "model",
    "max_tokens",
    "messages",
    "system",
    "stop_sequences",
    "temperature",
    "top_p",
    "top_k",
    "stream",
    "metadata",
    "tools",
    "tool_choice",
    "service_tier",
    "thinking",
    "output_config",
    "cache_control",
    "container",
    "inference_geo",
    "context_management",
    "mcp_servers",
];

/// Top-level fields `/v1/messages/count_tokens` accepts.
const COUNT_FIELDS: [&str; 10] = [
    "model",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "thinking",
    "output_config",
    "cache_control",
    "context_management",
    "mcp_servers",
];

/// Which route the body came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/messages`.
    Messages,
    /// `POST /v1/messages/count_tokens`.
    CountTokens,
}

/// One piece of prompt text in order: tools, then system, then messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// `tools`, `system`, `user` or `assistant`.
    pub role: String,
    /// The text the mock counts (text blocks' text; other blocks' JSON).
    pub text: String,
    /// The block carries `cache_control`: the prompt up to and including it is cached.
    pub breakpoint: bool,
}

/// A validated request.
#[derive(Debug, Clone, PartialEq)]
pub struct MessagesRequest {
    /// The `model` field.
    pub model: String,
    /// `max_tokens` (0 for count_tokens).
    pub max_tokens: u64,
    /// The prompt in order.
    pub parts: Vec<Part>,
    /// `stop_sequences`.
    pub stop_sequences: Vec<String>,
    /// `stream`.
    pub stream: bool,
    /// `temperature == 0`: the text is determined by the prompt.
    pub deterministic: bool,
}

fn invalid(message: impl Into<String>) -> AnthropicError {
    AnthropicError::invalid_request(message)
}

/// Parses and validates `bytes` for `endpoint`.
pub fn parse(bytes: &[u8], endpoint: Endpoint) -> Result<MessagesRequest, AnthropicError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        invalid(format!(
            "There was an error parsing the body of your request: {e}"
        ))
    })?;
    let Value::Object(body) = value else {
        return Err(invalid("Input should be a valid dictionary"));
    };
    let allowed: &[&str] = match endpoint {
        Endpoint::Messages => &MESSAGE_FIELDS,
        Endpoint::CountTokens => &COUNT_FIELDS,
    };
    if let Some(extra) = body.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(invalid(format!("{extra}: Extra inputs are not permitted")));
    }
    let model = match body.get("model") {
        None => return Err(invalid("model: Field required")),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(invalid("model: Input should be a valid string")),
    };
    let max_tokens = match endpoint {
        Endpoint::CountTokens => 0,
        Endpoint::Messages => match body.get("max_tokens") {
            None => return Err(invalid("max_tokens: Field required")),
            Some(v) => match v.as_i64() {
                Some(n) if n < 0 => {
                    return Err(invalid(
                        "max_tokens: Input should be greater than or equal to 0",
                    ))
                }
                Some(n) => n.unsigned_abs(),
                None => return Err(invalid("max_tokens: Input should be a valid integer")),
            },
        },
    };
    let mut parts = Vec::new();
    if let Some(tools) = body.get("tools") {
        let Value::Array(list) = tools else {
            return Err(invalid("tools: Input should be a valid list"));
        };
        for (i, tool) in list.iter().enumerate() {
            if tool.get("name").and_then(Value::as_str).is_none() {
                return Err(invalid(format!("tools.{i}.name: Field required")));
            }
            parts.push(Part {
                role: "tools".into(),
                text: tool.to_string(),
                breakpoint: tool.get("cache_control").is_some(),
            });
        }
    }
    if let Some(system) = body.get("system") {
        content(system, "system", "system", &mut parts)?;
    }
    let messages = match body.get("messages") {
        None => return Err(invalid("messages: Field required")),
        Some(Value::Array(m)) => m,
        Some(_) => return Err(invalid("messages: Input should be a valid list")),
    };
    if messages.is_empty() {
        return Err(invalid("messages: at least one message is required"));
    }
    for (i, m) in messages.iter().enumerate() {
        let Value::Object(m) = m else {
            return Err(invalid(format!(
                "messages.{i}: Input should be a valid dictionary"
            )));
        };
        let role = match m.get("role").and_then(Value::as_str) {
            Some(r @ ("user" | "assistant")) => r,
            Some(_) => {
                return Err(invalid(format!(
                    "messages.{i}.role: Input should be 'user' or 'assistant'"
                )))
            }
            None => return Err(invalid(format!("messages.{i}.role: Field required"))),
        };
        let Some(c) = m.get("content") else {
            return Err(invalid(format!("messages.{i}.content: Field required")));
        };
        content(c, role, &format!("messages.{i}.content"), &mut parts)?;
    }
    let stop_sequences = stop_sequences(&body)?;
    if let Some(t) = body.get("temperature") {
        match t.as_f64() {
            Some(x) if x > 1.0 => {
                return Err(invalid(
                    "temperature: Input should be less than or equal to 1",
                ))
            }
            Some(x) if x < 0.0 => {
                return Err(invalid(
                    "temperature: Input should be greater than or equal to 0",
                ))
            }
            Some(_) => {}
            None => return Err(invalid("temperature: Input should be a valid number")),
        }
    }
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(invalid("stream: Input should be a valid boolean")),
    };
    let deterministic = body.get("temperature").and_then(Value::as_f64) == Some(0.0);
    Ok(MessagesRequest {
        model,
        max_tokens,
        parts,
        stop_sequences,
        stream,
        deterministic,
    })
}

fn stop_sequences(body: &Map<String, Value>) -> Result<Vec<String>, AnthropicError> {
    let Some(v) = body.get("stop_sequences") else {
        return Ok(Vec::new());
    };
    let Value::Array(list) = v else {
        return Err(invalid("stop_sequences: Input should be a valid list"));
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, s) in list.iter().enumerate() {
        let Some(s) = s.as_str() else {
            return Err(invalid(format!(
                "stop_sequences.{i}: Input should be a valid string"
            )));
        };
        if s.trim().is_empty() {
            return Err(invalid(
                "stop_sequences: each stop sequence must contain non-whitespace",
            ));
        }
        out.push(s.to_owned());
    }
    Ok(out)
}

/// Appends the parts of a `system` or message `content`: a string, or a list of blocks.
fn content(v: &Value, role: &str, at: &str, parts: &mut Vec<Part>) -> Result<(), AnthropicError> {
    match v {
        Value::String(s) => parts.push(Part {
            role: role.to_owned(),
            text: s.clone(),
            breakpoint: false,
        }),
        Value::Array(blocks) => {
            for (j, b) in blocks.iter().enumerate() {
                let Some(kind) = b.get("type").and_then(Value::as_str) else {
                    return Err(invalid(format!("{at}.{j}.type: Field required")));
                };
                let text = match kind {
                    "text" => match b.get("text").and_then(Value::as_str) {
                        Some(t) => t.to_owned(),
                        None => return Err(invalid(format!("{at}.{j}.text: Field required"))),
                    },
                    _ => b.to_string(),
                };
                parts.push(Part {
                    role: role.to_owned(),
                    text,
                    breakpoint: b.get("cache_control").is_some(),
                });
            }
        }
        _ => {
            return Err(invalid(format!(
                "{at}: Input should be a valid string or a valid list"
            )))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> String {
        let e = parse(body.as_bytes(), Endpoint::Messages).unwrap_err();
        e.message().to_owned()
    }

    #[test]
    fn real_messages_for_common_mistakes() {
        let msgs = r#""messages":[{"role":"user","content":"hi"}]"#;
        assert_eq!(
            err(&format!(r#"{{"model":"m",{msgs}}}"#)),
            "max_tokens: Field required"
        );
        assert_eq!(
            err(r#"{"model":"m","max_tokens":5,"messages":[]}"#),
            "messages: at least one message is required"
        );
        assert_eq!(
            err(&format!(
                r#"{{"model":"m","max_tokens":5,{msgs},"stop_sequences":[" "]}}"#
            )),
            "stop_sequences: each stop sequence must contain non-whitespace"
        );
        assert_eq!(
            err(&format!(r#"{{"model":"m","max_tokens":5,{msgs},"n":2}}"#)),
            "n: Extra inputs are not permitted"
        );
        assert_eq!(
            err(&format!(
                r#"{{"model":"m","max_tokens":5,{msgs},"temperature":1.5}}"#
            )),
            "temperature: Input should be less than or equal to 1"
        );
    }

    #[test]
    fn blocks_system_tools_and_breakpoints_in_prompt_order() {
        let body = r#"{"model":"m","max_tokens":5,"stream":true,
            "tools":[{"name":"t","input_schema":{"type":"object"}}],
            "system":[{"type":"text","text":"be brief","cache_control":{"type":"ephemeral"}}],
            "messages":[{"role":"user","content":[{"type":"text","text":"hello"}]},
                        {"role":"assistant","content":"hi"}]}"#;
        let r = parse(body.as_bytes(), Endpoint::Messages).unwrap();
        let roles: Vec<_> = r.parts.iter().map(|p| p.role.as_str()).collect();
        assert_eq!(roles, ["tools", "system", "user", "assistant"]);
        assert!(r.parts[1].breakpoint && !r.parts[2].breakpoint);
        assert!(r.stream);
        let count = r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#;
        assert_eq!(
            parse(count.as_bytes(), Endpoint::CountTokens)
                .unwrap()
                .max_tokens,
            0
        );
    }
}
