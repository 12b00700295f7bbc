//! Field-level validation shared by every body reader: the OpenAI error wording for a
//! missing field, a wrong type, an out-of-range integer, and the accepted chat roles. One
//! place words these errors so the readers (and `fast_chat`) agree.

use serde_json::{Map, Value};

use super::super::errors::ApiError;

/// The chat roles OpenAI accepts.
pub(super) fn valid_role(role: &str) -> bool {
    matches!(
        role,
        "system" | "assistant" | "user" | "function" | "tool" | "developer"
    )
}

/// An optional integer field within `min..=max`.
pub(super) fn int_at_least(
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

/// `Missing required parameter` for `param`.
pub(super) fn missing(param: &str) -> ApiError {
    ApiError::invalid_request(
        &format!("Missing required parameter: '{param}'."),
        Some(param),
        Some("missing_required_parameter"),
    )
}

/// `Invalid type for` `param`: `expected` wanted, `got` given.
pub(super) fn wrong_type(param: &str, expected: &str, got: &Value) -> ApiError {
    ApiError::invalid_request(
        &format!(
            "Invalid type for '{param}': expected {expected}, but got {} instead.",
            type_name(got)
        ),
        Some(param),
        Some("invalid_type"),
    )
}

/// OpenAI's name for a JSON value's type (`a string`, `a decimal`, ...).
pub(super) fn type_name(v: &Value) -> &'static str {
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
