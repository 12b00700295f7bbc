//! The sampling parameters chat and legacy completions share (`max_tokens`, `n`, `stop`,
//! `stream`, `stream_options`, `temperature`, `seed`, `user`), each checked against the
//! provider's type and range rules; its own file because it is the longest single reader.

use serde_json::{Map, Value};

use super::super::errors::ApiError;
use super::fields::{int_at_least, wrong_type};
use super::types::SamplingParams;

/// The sampling parameters of a chat or legacy completion request, range-checked.
pub(super) fn sampling(obj: &Map<String, Value>) -> Result<SamplingParams, ApiError> {
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
    let mock_output_tokens = int_at_least(obj, "mock_output_tokens", 1, u64::from(u32::MAX))?
        .map(|v| u32::try_from(v).unwrap_or(u32::MAX));
    Ok(SamplingParams {
        mock_output_tokens,
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
