//! The validated shapes a request body is read into ([`ParsedRequest`] and its parts) and
//! the figures admission derives from them; kept apart from the readers so the pipeline,
//! the answer builders and the fast chat path can depend on the shapes alone.

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
    /// `mock_output_tokens`, a mock-only extension: generate exactly this many tokens
    /// (still capped by `max_tokens`) instead of drawing the length — how a trace replay
    /// makes each response as long as the recorded one. Real providers reject the field.
    pub mock_output_tokens: Option<u32>,
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
