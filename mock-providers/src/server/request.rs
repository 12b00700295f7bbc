//! Reading request bodies the way the providers validate them: every field the mock
//! honours is type-checked and range-checked with OpenAI's own error wording and `param`;
//! unknown extra fields are accepted.

use serde_json::{Map, Value};

use super::errors::ApiError;

/// The sampling parameters shared by chat and legacy completions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SamplingParams {
    /// `max_completion_tokens`, else `max_tokens`.
    pub max_tokens: Option<u32>,
    /// Choices to generate (1..=128).
    pub n: u32,
    /// Stop sequences (up to 4).
    pub stop: Vec<String>,
    /// Stream as server-sent events.
    pub stream: bool,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
    /// `temperature` (0..=2).
    pub temperature: Option<f64>,
    /// `seed`: same seed and prompt give the same text.
    pub seed: Option<i64>,
    /// `user` (accepted, echoed nowhere).
    pub user: Option<String>,
}

/// One chat message's text.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Role.
    pub role: String,
    /// Optional name.
    pub name: Option<String>,
    /// Text content (text parts joined).
    pub content: String,
}

/// What a request asks for, after validation.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// `/chat/completions`.
    Chat {
        /// Messages in order.
        messages: Vec<Message>,
        /// Sampling parameters.
        params: SamplingParams,
    },
    /// `/completions` (legacy).
    Completion {
        /// One prompt per entry.
        prompts: Vec<String>,
        /// Sampling parameters.
        params: SamplingParams,
    },
    /// `/embeddings`.
    Embedding {
        /// One input per entry (token arrays rendered as text).
        inputs: Vec<String>,
        /// Tokens per input when given as token arrays.
        token_inputs: Vec<Option<u32>>,
        /// Base64 of little-endian f32 instead of float arrays.
        base64: bool,
        /// Requested width.
        dimensions: Option<usize>,
    },
}

/// A validated request: its model field (required on OpenAI routes) and body.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedRequest {
    /// The `model` field, when present.
    pub model: Option<String>,
    /// What is asked for.
    pub body: Body,
}

impl ParsedRequest {
    /// The prompt part of the admission estimate, in tokens: `ceil(characters / 4)` of the
    /// prompt text, plus the length of inputs given as token arrays.
    pub fn prompt_estimate(&self) -> u64 {
        let chars = |s: &String| s.chars().count() as u64;
        let (text_chars, tokens): (u64, u64) = match &self.body {
            Body::Chat { messages, .. } => (messages.iter().map(|m| chars(&m.content)).sum(), 0),
            Body::Completion { prompts, .. } => (prompts.iter().map(chars).sum(), 0),
            Body::Embedding {
                inputs,
                token_inputs,
                ..
            } => inputs
                .iter()
                .zip(token_inputs)
                .fold((0, 0), |(c, t), (s, n)| match n {
                    Some(n) => (c, t + u64::from(*n)),
                    None => (c + chars(s), t),
                }),
        };
        text_chars.div_ceil(4) + tokens
    }

    /// Completions generated per request: `n`, times the prompts of a legacy completion.
    pub fn choices(&self) -> u64 {
        match &self.body {
            Body::Chat { params, .. } => u64::from(params.n),
            Body::Completion { prompts, params } => prompts.len() as u64 * u64::from(params.n),
            Body::Embedding { .. } => 0,
        }
    }

    /// The sampling parameters (`None` for embeddings).
    pub fn params(&self) -> Option<&SamplingParams> {
        match &self.body {
            Body::Chat { params, .. } | Body::Completion { params, .. } => Some(params),
            Body::Embedding { .. } => None,
        }
    }
}

/// Which operation a route serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Chat completions.
    Chat,
    /// Legacy completions.
    Completion,
    /// Embeddings.
    Embedding,
}

/// The chat roles OpenAI accepts.
pub(super) fn valid_role(role: &str) -> bool {
    matches!(
        role,
        "system" | "assistant" | "user" | "function" | "tool" | "developer"
    )
}

/// Parses and validates `bytes` for `op`; `model_required` on OpenAI routes.
///
/// A well-formed chat request takes a typed fast path (`server::fast_chat`); anything it
/// does not accept is read here, the one place that words errors.
pub fn parse(bytes: &[u8], op: Operation, model_required: bool) -> Result<ParsedRequest, ApiError> {
    if op == Operation::Chat {
        if let Some(parsed) = super::fast_chat::parse(bytes, model_required) {
            return Ok(parsed);
        }
    }
    parse_slow(bytes, op, model_required)
}

/// The general reader behind [`parse`] (public to the crate so tests can compare paths).
pub(crate) fn parse_slow(
    bytes: &[u8],
    op: Operation,
    model_required: bool,
) -> Result<ParsedRequest, ApiError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|_| ApiError::invalid_json())?;
    let Value::Object(mut obj) = value else {
        return Err(ApiError::invalid_request(
            &format!(
                "Invalid type for request body: expected an object, but got {} instead.",
                type_name(&value)
            ),
            None,
            Some("invalid_type"),
        ));
    };
    let model = match obj.get("model") {
        None | Some(Value::Null) if model_required => return Err(missing("model")),
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(v) => return Err(wrong_type("model", "a string", v)),
    };
    // The fields read as text are moved out of the parsed document, not copied.
    let body = match op {
        Operation::Chat => Body::Chat {
            messages: messages(&mut obj)?,
            params: sampling(&obj)?,
        },
        Operation::Completion => Body::Completion {
            prompts: prompts(&mut obj)?,
            params: sampling(&obj)?,
        },
        Operation::Embedding => embedding(&mut obj)?,
    };
    Ok(ParsedRequest { model, body })
}

fn messages(obj: &mut Map<String, Value>) -> Result<Vec<Message>, ApiError> {
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

fn prompts(obj: &mut Map<String, Value>) -> Result<Vec<String>, ApiError> {
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

fn embedding(obj: &mut Map<String, Value>) -> Result<Body, ApiError> {
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

fn render_tokens(tokens: &[Value]) -> String {
    tokens
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

fn len_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn sampling(obj: &Map<String, Value>) -> Result<SamplingParams, ApiError> {
    let max_tokens = match int_at_least(obj, "max_completion_tokens", 1, u64::from(u32::MAX))? {
        Some(v) => Some(v),
        None => int_at_least(obj, "max_tokens", 1, u64::from(u32::MAX))?,
    };
    let n = int_at_least(obj, "n", 1, 128)?.unwrap_or(1);
    let stop = match obj.get("stop") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) if a.len() > 4 => {
            return Err(ApiError::invalid_request(
                &format!("Invalid 'stop': array too long. Expected an array with maximum length 4, but got an array with length {} instead.", a.len()),
                Some("stop"),
                Some("array_above_max_length"),
            ))
        }
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.clone()),
                v => Err(wrong_type(&format!("stop[{i}]"), "a string", v)),
            })
            .collect::<Result<_, _>>()?,
        Some(v) => return Err(wrong_type("stop", "one of a string or array of strings", v)),
    };
    let stream = match obj.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(v) => return Err(wrong_type("stream", "a boolean", v)),
    };
    let include_usage = match obj.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(_) if !stream => {
            return Err(ApiError::invalid_request(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                Some("stream_options"),
                None,
            ))
        }
        Some(Value::Object(o)) => match o.get("include_usage") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(v) => return Err(wrong_type("stream_options.include_usage", "a boolean", v)),
        },
        Some(v) => return Err(wrong_type("stream_options", "an object", v)),
    };
    let temperature = match obj.get("temperature") {
        None | Some(Value::Null) => None,
        Some(Value::Number(x)) => {
            let t = x.as_f64().unwrap_or(f64::NAN);
            if !(0.0..=2.0).contains(&t) {
                let (which, bound) = if t < 0.0 {
                    ("below minimum", ">= 0")
                } else {
                    ("above maximum", "<= 2")
                };
                return Err(ApiError::invalid_request(
                    &format!("Invalid 'temperature': decimal {which} value. Expected a value {bound}, but got {x} instead."),
                    Some("temperature"),
                    Some(if t < 0.0 { "decimal_below_min_value" } else { "decimal_above_max_value" }),
                ));
            }
            Some(t)
        }
        Some(v) => return Err(wrong_type("temperature", "a number", v)),
    };
    let seed = match obj.get("seed") {
        None | Some(Value::Null) => None,
        Some(Value::Number(x)) if x.is_i64() || x.is_u64() => Some(
            x.as_i64()
                .unwrap_or_else(|| x.as_u64().map_or(0, |u| u as i64)),
        ),
        Some(v) => return Err(wrong_type("seed", "an integer", v)),
    };
    let user = match obj.get("user") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(v) => return Err(wrong_type("user", "a string", v)),
    };
    Ok(SamplingParams {
        max_tokens: max_tokens.map(|v| u32::try_from(v).unwrap_or(u32::MAX)),
        n: u32::try_from(n).unwrap_or(1),
        stop,
        stream,
        include_usage,
        temperature,
        seed,
        user,
    })
}

/// An optional integer field within `min..=max`.
fn int_at_least(
    obj: &Map<String, Value>,
    key: &str,
    min: u64,
    max: u64,
) -> Result<Option<u64>, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(x)) if x.is_u64() || x.is_i64() => {
            let v = x
                .as_i64()
                .map_or_else(|| x.as_u64().map_or(0, |u| u as i128), i128::from);
            if v < i128::from(min) {
                return Err(ApiError::invalid_request(
                    &format!("Invalid '{key}': integer below minimum value. Expected a value >= {min}, but got {v} instead."),
                    Some(key),
                    Some("integer_below_min_value"),
                ));
            }
            if v > i128::from(max) {
                return Err(ApiError::invalid_request(
                    &format!("Invalid '{key}': integer above maximum value. Expected a value <= {max}, but got {v} instead."),
                    Some(key),
                    Some("integer_above_max_value"),
                ));
            }
            Ok(Some(v as u64))
        }
        Some(v) => Err(wrong_type(key, "an integer", v)),
    }
}

fn missing(param: &str) -> ApiError {
    ApiError::invalid_request(
        &format!("Missing required parameter: '{param}'."),
        Some(param),
        Some("missing_required_parameter"),
    )
}

fn wrong_type(param: &str, expected: &str, got: &Value) -> ApiError {
    ApiError::invalid_request(
        &format!(
            "Invalid type for '{param}': expected {expected}, but got {} instead.",
            type_name(got)
        ),
        Some(param),
        Some("invalid_type"),
    )
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a decimal",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
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
}
