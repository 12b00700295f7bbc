//! What an admitted request answers: the generated choices with their real token counts,
//! or the embedding vectors; pure given the request, its number and the configured seed.

use rand::rngs::SmallRng;

use super::request::{Body as Req, ParsedRequest};
use super::respond;
use super::state::Inner;
use crate::config::ModelConfig;
use crate::generation::text::{generate_text, GeneratedText};
use crate::generation::tokenizer::{count_chat_messages, ChatMessageText};
use crate::generation::{embedding, fnv1a, output_rng, rng_for};

/// The choices of a chat or legacy completion and its token counts.
pub(super) struct Generated {
    pub choices: Vec<GeneratedText>,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

/// The text generator for a request: keyed by the request's `seed` and prompt when it
/// gives one, by the prompt alone at temperature 0, else by the request number.
fn text_rng(inner: &Inner, parsed: &ParsedRequest, number: u64) -> SmallRng {
    let seed = inner.config.seed;
    let params = parsed.params();
    let prompt_hash = || match &parsed.body {
        Req::Chat { messages, .. } => messages
            .iter()
            .fold(0u64, |h, m| h.rotate_left(5) ^ fnv1a(m.content.as_bytes())),
        Req::Completion { prompts, .. } => prompts
            .iter()
            .fold(0u64, |h, p| h.rotate_left(5) ^ fnv1a(p.as_bytes())),
        Req::Embedding { .. } => 0,
    };
    match params.map(|p| (p.seed, p.temperature)) {
        Some((Some(s), _)) => rng_for(seed ^ s as u64, prompt_hash()),
        Some((None, Some(0.0))) => rng_for(seed, prompt_hash()),
        _ => output_rng(seed, number),
    }
}

pub(super) fn generate(
    inner: &Inner,
    model: &ModelConfig,
    parsed: &ParsedRequest,
    number: u64,
) -> Generated {
    let encoding = model.encoding;
    let mut rng = text_rng(inner, parsed, number);
    let (prompt_tokens, params) = match &parsed.body {
        Req::Chat { messages, params } => {
            let texts = messages.iter().map(|m| ChatMessageText {
                role: &m.role,
                name: m.name.as_deref(),
                content: &m.content,
            });
            (count_chat_messages(encoding, texts), params)
        }
        Req::Completion { prompts, params } => (
            prompts
                .iter()
                .fold(0u32, |t, p| t.saturating_add(encoding.count_cached(p))),
            params,
        ),
        Req::Embedding { .. } => {
            return Generated {
                choices: Vec::new(),
                prompt_tokens: 0,
                completion_tokens: 0,
            }
        }
    };
    let cap = params.max_tokens.unwrap_or(model.default_max_tokens);
    let choices: Vec<_> = (0..parsed.choices())
        .map(|_| {
            let natural = match params.mock_output_tokens {
                Some(n) => n,
                None => inner.config.output_tokens.sample(&mut rng),
            };
            generate_text(encoding, natural, Some(cap), &params.stop, &mut rng)
        })
        .collect();
    let completion_tokens = choices.iter().fold(0u32, |t, c| t.saturating_add(c.tokens));
    Generated {
        choices,
        prompt_tokens,
        completion_tokens,
    }
}

/// The embeddings body and the prompt tokens it used.
pub(super) fn embeddings(
    inner: &Inner,
    model: &ModelConfig,
    parsed: &ParsedRequest,
) -> (Vec<u8>, u32) {
    let Req::Embedding {
        inputs,
        token_inputs,
        base64,
        dimensions,
    } = &parsed.body
    else {
        return (Vec::new(), 0);
    };
    let dims = dimensions.unwrap_or(model.dimensions);
    let encoding = model.encoding;
    let tokens = inputs.iter().zip(token_inputs).fold(0u32, |t, (s, n)| {
        t.saturating_add(n.unwrap_or_else(|| encoding.count_cached(s)))
    });
    let vectors = inputs
        .iter()
        .map(|s| embedding(s, dims, inner.config.seed))
        .collect();
    (
        respond::embeddings(&model.id, vectors, *base64, tokens),
        tokens,
    )
}
