//! API keys: OpenAI's `Authorization: Bearer`, Azure's `api-key` (or Bearer).
//!
//! With no keys configured, any non-empty key is accepted (OpenAI keys then belong to the
//! first organization); with keys configured, only those. A missing key is a 401.

use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;

use super::errors::{ApiError, Flavor};
use super::state::Inner;

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, key) = value.split_once(' ')?;
    let key = key.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !key.is_empty()).then_some(key)
}

/// The organization index the request acts for, or the 401 to send.
pub fn openai(inner: &Inner, headers: &HeaderMap) -> Result<usize, ApiError> {
    let key = bearer(headers).ok_or_else(|| ApiError::unauthorized(Flavor::OpenAi, None))?;
    let owner = match &inner.openai_keys {
        None => None,
        Some(keys) => Some(
            *keys
                .get(key)
                .ok_or_else(|| ApiError::unauthorized(Flavor::OpenAi, Some(key)))?,
        ),
    };
    match headers
        .get("openai-organization")
        .and_then(|v| v.to_str().ok())
    {
        None => Ok(owner.unwrap_or(0)),
        Some(wanted) => {
            let index = inner
                .config
                .organizations
                .iter()
                .position(|o| o.id == wanted.trim());
            match (index, owner) {
                (Some(i), None) => Ok(i),
                (Some(i), Some(o)) if i == o => Ok(i),
                _ => Err(ApiError::mismatched_organization()),
            }
        }
    }
}

/// Ok when the Azure key is acceptable, else the 401 to send.
pub fn azure(inner: &Inner, headers: &HeaderMap) -> Result<(), ApiError> {
    let key = headers
        .get("api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .or_else(|| bearer(headers));
    match (key, &inner.azure_keys) {
        (Some(_), None) => Ok(()),
        (Some(k), Some(keys)) if keys.contains(k) => Ok(()),
        (k, _) => Err(ApiError::unauthorized(Flavor::Azure, k)),
    }
}
