//! Reading request bodies the way the providers validate them: every field the mock
//! honours is type-checked and range-checked with OpenAI's own error wording and `param`;
//! unknown extra fields are accepted.
//!
//! Split by seam: `types` holds the validated shapes, `body` the operation-specific
//! readers, `sampling` the shared sampling parameters, `fields` the error wording every
//! reader uses, `fast_chat` the typed fast path for well-formed chat requests; this file
//! is the entry point.

use serde_json::Value;

use super::errors::ApiError;

mod body;
mod fast_chat;
mod fields;
mod sampling;
mod types;

#[cfg(test)]
mod tests;

use fields::{missing, type_name, wrong_type};
pub use types::{Body, Message, Operation, ParsedRequest, SamplingParams};

/// Parses and validates `bytes` for `op`; `model_required` on OpenAI routes.
///
/// A well-formed chat request takes a typed fast path (`fast_chat`); anything it
/// does not accept is read here, the one place that words errors.
pub fn parse(bytes: &[u8], op: Operation, model_required: bool) -> Result<ParsedRequest, ApiError> {
    if op == Operation::Chat {
        if let Some(parsed) = fast_chat::parse(bytes, model_required) {
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
            messages: body::messages(&mut obj)?,
            params: sampling::sampling(&obj)?,
        },
        Operation::Completion => Body::Completion {
            prompts: body::prompts(&mut obj)?,
            params: sampling::sampling(&obj)?,
        },
        Operation::Embedding => body::embedding(&mut obj)?,
    };
    Ok(ParsedRequest { model, body })
}
