//! The fast path for well-formed chat requests: a typed, borrowing parse instead of a
//! `serde_json::Value` tree, for the common case only.
//!
//! It accepts a request only when it is certain the general reader
//! ([`super::parse_slow`]) would accept it with the same result; anything unusual
//! (content parts, an invalid value, a duplicate key) returns `None` and goes the general
//! way, which alone words errors. `fast_path_agrees_with_the_general_reader` checks this.

use std::borrow::Cow;

use serde::Deserialize;

use super::fields::valid_role;
use super::types::{Body, Message, ParsedRequest, SamplingParams};

#[derive(Deserialize)]
struct Chat<'a> {
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow)]
    messages: Vec<ChatMessage<'a>>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    n: Option<u64>,
    #[serde(borrow)]
    stop: Option<Stop<'a>>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    temperature: Option<f64>,
    seed: Option<i64>,
    #[serde(borrow)]
    user: Option<Cow<'a, str>>,
    mock_output_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct ChatMessage<'a> {
    #[serde(borrow)]
    role: Cow<'a, str>,
    #[serde(borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Stop<'a> {
    #[serde(borrow)]
    One(Cow<'a, str>),
    #[serde(borrow)]
    Many(Vec<Cow<'a, str>>),
}

#[derive(Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

/// The parsed request, or `None` when the general reader must decide.
pub fn parse(bytes: &[u8], model_required: bool) -> Option<ParsedRequest> {
    let c: Chat<'_> = serde_json::from_slice(bytes).ok()?;
    if (model_required && c.model.is_none()) || c.messages.is_empty() {
        return None;
    }
    let in_range = |v: Option<u64>, max: u64| v.is_none_or(|v| (1..=max).contains(&v));
    if !in_range(c.max_tokens, u64::from(u32::MAX))
        || !in_range(c.max_completion_tokens, u64::from(u32::MAX))
        || !in_range(c.n, 128)
        || !in_range(c.mock_output_tokens, u64::from(u32::MAX))
        || c.temperature.is_some_and(|t| !(0.0..=2.0).contains(&t))
    {
        return None;
    }
    let stream = c.stream.unwrap_or(false);
    if c.stream_options.is_some() && !stream {
        return None;
    }
    let stop = match c.stop {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s.into_owned()],
        Some(Stop::Many(v)) if v.len() <= 4 => v.into_iter().map(Cow::into_owned).collect(),
        Some(Stop::Many(_)) => return None,
    };
    let mut messages = Vec::with_capacity(c.messages.len());
    for m in c.messages {
        if !valid_role(&m.role) {
            return None;
        }
        let content = match m.content {
            Some(text) => text.into_owned(),
            None if m.role == "assistant" => String::new(),
            None => return None,
        };
        messages.push(Message {
            role: m.role.into_owned(),
            name: m.name.map(Cow::into_owned),
            content,
        });
    }
    let to_u32 = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    let params = SamplingParams {
        max_tokens: c.max_completion_tokens.or(c.max_tokens).map(to_u32),
        n: c.n.map_or(1, to_u32),
        stop,
        stream,
        include_usage: c
            .stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
        temperature: c.temperature,
        seed: c.seed,
        user: c.user.map(Cow::into_owned),
        mock_output_tokens: c.mock_output_tokens.map(to_u32),
    };
    Some(ParsedRequest {
        model: c.model.map(Cow::into_owned),
        body: Body::Chat { messages, params },
    })
}
