//! The admission estimate: what a provider charges a request against its token quota
//! before the request runs. One rule per provider, owned by the provider layer and used by
//! every driver of the request lifecycle — the Hub's pipeline, the live harness and the
//! simulator — so a limiter is charged what the server will charge.
//!
//! Both OpenAI and Azure OpenAI estimate the prompt from its characters (about four per
//! token) and add the output budget: `max(prompt tokens, ⌈prompt chars / 4⌉) +
//! max_tokens × n`. They differ in the output budget of a request without `max_tokens`:
//! OpenAI assumes the model's default completion budget (1024 tokens on the mock), Azure
//! assumes 16 (see the wire facts in `DESIGN.md`).

use tiktoken_rs::CoreBPE;

use super::CompletionRequest;
use crate::limiter::Cost;

/// Tokens the OpenAI chat format adds per message (separators, besides the role's own
/// tokens), per name, and per reply primer; the documented cookbook figures for current
/// models, which the mock's counter follows too.
const TOKENS_PER_MESSAGE: u64 = 3;
const TOKENS_PER_NAME: u64 = 1;
const TOKENS_PER_REPLY: u64 = 3;
/// Tokens of a role word (`user`, `system`, …: one token each in both encodings).
const TOKENS_PER_ROLE: u64 = 1;

/// How large a request is, as far as admission is concerned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestSize {
    /// Prompt tokens (the client's own count), in tokens.
    pub prompt_tokens: u64,
    /// Prompt characters (Unicode scalar values of every message's content).
    pub prompt_chars: u64,
    /// The output budget per choice the request sets (`max_tokens` or
    /// `max_completion_tokens`), in tokens; `None` when it sets none.
    pub max_tokens: Option<u64>,
    /// Choices asked for (`n`); 0 is read as 1.
    pub n: u32,
}

impl RequestSize {
    /// The size of `request`: prompt tokens counted with tiktoken (encoding chosen by model
    /// name, plus the chat format's per-message, role, name and reply overhead), characters
    /// of every message, `max_tokens` (else `max_completion_tokens` from the provider
    /// parameters) and `n`.
    pub fn of(request: &CompletionRequest) -> Self {
        let bpe = encoding(&request.model);
        let count = |text: &str| bpe.encode_with_special_tokens(text).len() as u64;
        let (tokens, chars) =
            request
                .messages
                .iter()
                .fold((TOKENS_PER_REPLY, 0u64), |(t, c), m| {
                    let name = m.name.as_deref().map_or(0, |n| TOKENS_PER_NAME + count(n));
                    (
                        t + TOKENS_PER_MESSAGE + TOKENS_PER_ROLE + count(&m.content) + name,
                        c + m.content.chars().count() as u64,
                    )
                });
        let max_tokens = request.max_tokens.map(u64::from).or_else(|| {
            request
                .provider_params
                .get("max_completion_tokens")
                .and_then(serde_json::Value::as_u64)
        });
        Self {
            prompt_tokens: tokens,
            prompt_chars: chars,
            max_tokens,
            n: request.n.unwrap_or(1),
        }
    }
}

impl RequestSize {
    /// The size of a chat request with one user message of `content_tokens` tokens and
    /// `content_chars` characters (the chat format's per-message and reply overhead added,
    /// as [`of`](Self::of) counts it), one choice: for callers that know the prompt's size
    /// without its text (the simulator).
    pub fn user_message(content_tokens: u64, content_chars: u64, max_tokens: Option<u64>) -> Self {
        Self {
            prompt_tokens: content_tokens + TOKENS_PER_MESSAGE + TOKENS_PER_ROLE + TOKENS_PER_REPLY,
            prompt_chars: content_chars,
            max_tokens,
            n: 1,
        }
    }
}

/// A provider's admission rule: `max(prompt tokens, ⌈prompt chars / 4⌉) + output budget × n`,
/// where the output budget is the request's `max_tokens` or the provider's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionRule {
    /// Output tokens per choice assumed when a request sets no `max_tokens`.
    pub default_max_tokens: u64,
}

impl AdmissionRule {
    /// OpenAI (and compatible servers): 1024 output tokens assumed when `max_tokens` is absent.
    pub const OPENAI: Self = Self {
        default_max_tokens: 1024,
    };

    /// Azure OpenAI: 16 output tokens assumed when `max_tokens` is absent.
    pub const AZURE: Self = Self {
        default_max_tokens: 16,
    };

    /// The tokens the provider charges `size` at admission:
    /// [`input_tokens`](Self::input_tokens) + [`output_tokens`](Self::output_tokens).
    pub fn tokens(&self, size: &RequestSize) -> u64 {
        self.input_tokens(size)
            .saturating_add(self.output_tokens(size))
    }

    /// The input part of the admission estimate: `max(prompt tokens, ⌈prompt chars / 4⌉)`.
    pub fn input_tokens(&self, size: &RequestSize) -> u64 {
        size.prompt_tokens.max(size.prompt_chars.div_ceil(4))
    }

    /// The output part of the admission estimate: the output budget (`max_tokens`, else
    /// the provider's default) × `n`.
    pub fn output_tokens(&self, size: &RequestSize) -> u64 {
        let output = size.max_tokens.unwrap_or(self.default_max_tokens);
        output.saturating_mul(u64::from(size.n.max(1)))
    }

    /// The cost to acquire for `size`: one request and [`tokens`](Self::tokens), split into
    /// the prompt estimate (input) and the output budget × `n` (output), so input- and
    /// output-token limits count their part.
    pub fn estimate(&self, size: &RequestSize) -> Cost {
        Cost::request(0).with_split(self.input_tokens(size), self.output_tokens(size))
    }
}

/// The tiktoken encoding a model name implies: `o200k_base` for the gpt-4o / o-series /
/// gpt-4.1 / gpt-5 families, else `cl100k_base`. Each is loaded once per process.
pub fn encoding(model: &str) -> &'static CoreBPE {
    let o200k = ["gpt-4o", "gpt-4.1", "gpt-5", "o1", "o3", "o4"]
        .iter()
        .any(|p| model.starts_with(p));
    if o200k {
        tiktoken_rs::o200k_base_singleton()
    } else {
        tiktoken_rs::cl100k_base_singleton()
    }
}

/// Tokens of `text` in `model`'s encoding (no message overhead); counts streamed output
/// when a provider reports no usage.
pub fn text_tokens(model: &str, text: &str) -> u64 {
    encoding(model).encode_with_special_tokens(text).len() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::Message;

    fn size(tokens: u64, chars: u64, max: Option<u64>, n: u32) -> RequestSize {
        RequestSize {
            prompt_tokens: tokens,
            prompt_chars: chars,
            max_tokens: max,
            n,
        }
    }

    #[test]
    fn the_prompt_counts_the_larger_of_tokens_and_chars_over_four() {
        let r = AdmissionRule::OPENAI;
        assert_eq!(r.tokens(&size(100, 300, Some(50), 1)), 150);
        assert_eq!(r.tokens(&size(100, 450, Some(50), 1)), 113 + 50);
        assert_eq!(r.tokens(&size(100, 401, Some(0), 1)), 101);
    }

    #[test]
    fn the_output_budget_is_multiplied_by_n_and_defaults_per_provider() {
        assert_eq!(AdmissionRule::OPENAI.tokens(&size(10, 0, Some(20), 3)), 70);
        assert_eq!(AdmissionRule::OPENAI.tokens(&size(10, 0, None, 0)), 1034);
        assert_eq!(AdmissionRule::AZURE.tokens(&size(10, 0, None, 2)), 42);
        let est = AdmissionRule::AZURE.estimate(&size(10, 0, Some(5), 1));
        assert_eq!((est.requests, est.tokens), (1, 15));
        assert_eq!(est, Cost::request(15).with_split(10, 5));
        let est = AdmissionRule::OPENAI.estimate(&size(10, 0, Some(20), 3));
        assert_eq!((est.input(), est.output(), est.tokens), (10, 60, 70));
    }

    #[test]
    fn a_request_is_sized_with_tiktoken_chars_and_its_output_budget() {
        let mut req = CompletionRequest::new("gpt-4o-mini", vec![Message::user("Hello there")]);
        let s = RequestSize::of(&req);
        assert_eq!(
            s.prompt_tokens,
            2 + 7,
            "content, 3 per message, the role, 3 for the reply"
        );
        assert_eq!(s.prompt_chars, 11);
        assert_eq!(s.max_tokens, None);
        req.provider_params
            .insert("max_completion_tokens".into(), 77.into());
        assert_eq!(RequestSize::of(&req).max_tokens, Some(77));
        let req = req.with_max_tokens(12);
        assert_eq!(RequestSize::of(&req).max_tokens, Some(12));
        assert_eq!(
            RequestSize::user_message(2, 11, Some(12)),
            RequestSize::of(&req),
            "the same size, from the counts alone"
        );
    }
}
