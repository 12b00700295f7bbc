//! What each request of a scenario looks like: prompt length, `max_tokens`, streamed or not,
//! and the prompt text itself.
//!
//! Every limiter of a scenario must see the same requests, so a request's shape is drawn
//! from a generator seeded by (scenario seed, request id) alone — never from a shared
//! stream whose position depends on timing. Prompt text is built from words that are one
//! token each in both `o200k_base` and `cl100k_base`, so its token count is exact by
//! construction (checked with tiktoken in the tests) without tokenizing at run time.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal, Normal};

use super::batch::workload::RequestFile;
use super::trace::{TraceRequest, TraceSpec};

/// Salt of the per-request workload generator (see [`sub_seed`]).
const WORKLOAD_SALT: u64 = 0x776f_726b_6c6f_6164; // "workload"

/// Tokens a single user message adds around its text in a chat request (3 per message,
/// 1 for the role `user`, 3 priming the reply, per OpenAI's cookbook). The usage a server
/// reports for a prompt built with [`prompt_text`]`(n, _)` is `n + CHAT_FRAMING_TOKENS`.
pub const CHAT_FRAMING_TOKENS: u64 = 7;

/// An independent seed for stream `salt`, item `index` of a scenario seeded with `seed`
/// (splitmix64 finalisers over the three): different salts or indices give unrelated
/// generators, the same inputs always the same one.
pub fn sub_seed(seed: u64, salt: u64, index: u64) -> u64 {
    splitmix64(splitmix64(seed ^ splitmix64(salt)) ^ index)
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A distribution of token counts. Draws are rounded to whole tokens and clamped to
/// `min..=max` (`max` absent = no upper clamp).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TokenDist {
    /// Always `value` tokens.
    Constant {
        /// Tokens.
        value: u64,
    },
    /// Uniform over `min..=max` tokens.
    Uniform {
        /// Fewest tokens.
        min: u64,
        /// Most tokens (≥ `min`).
        max: u64,
    },
    /// Normal with the given mean and standard deviation (tokens), clamped.
    Normal {
        /// Mean, tokens.
        mean: f64,
        /// Standard deviation, tokens (0 = always the mean).
        stdev: f64,
        /// Lower clamp, tokens.
        min: u64,
        /// Upper clamp, tokens; none = unbounded.
        max: Option<u64>,
    },
    /// Log-normal whose own mean and standard deviation (tokens, not those of the
    /// underlying normal) are given, clamped.
    LogNormal {
        /// Mean of the distribution, tokens (> 0).
        mean: f64,
        /// Standard deviation of the distribution, tokens (0 = always the mean).
        stdev: f64,
        /// Lower clamp, tokens.
        min: u64,
        /// Upper clamp, tokens; none = unbounded.
        max: Option<u64>,
    },
}

impl TokenDist {
    /// The distribution's name as written in a scenario (`dist = "…"`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Constant { .. } => "constant",
            Self::Uniform { .. } => "uniform",
            Self::Normal { .. } => "normal",
            Self::LogNormal { .. } => "lognormal",
        }
    }

    /// Draws a token count.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> u64 {
        match *self {
            Self::Constant { value } => value,
            Self::Uniform { min, max } => rng.random_range(min..=max.max(min)),
            Self::Normal {
                mean,
                stdev,
                min,
                max,
            } => {
                let draw = Normal::new(mean, stdev).map_or(mean, |d| d.sample(rng));
                clamp_round(draw, min, max)
            }
            Self::LogNormal {
                mean,
                stdev,
                min,
                max,
            } => {
                let (median, sigma) = lognormal_median_sigma(mean, stdev);
                let draw = LogNormal::new(median.ln(), sigma).map_or(mean, |d| d.sample(rng));
                clamp_round(draw, min, max)
            }
        }
    }

    /// The largest value a draw can take, `None` when unbounded.
    pub fn max(&self) -> Option<u64> {
        match *self {
            Self::Constant { value } => Some(value),
            Self::Uniform { max, .. } => Some(max),
            Self::Normal { max, .. } | Self::LogNormal { max, .. } => max,
        }
    }

    /// The mean before clamping, tokens (for plans and expected-load arithmetic).
    pub fn mean(&self) -> f64 {
        match *self {
            Self::Constant { value } => value as f64,
            Self::Uniform { min, max } => (min as f64 + max as f64) / 2.0,
            Self::Normal { mean, .. } | Self::LogNormal { mean, .. } => mean,
        }
    }
}

impl std::fmt::Display for TokenDist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let clamp = |f: &mut std::fmt::Formatter<'_>, min: u64, max: Option<u64>| match max {
            Some(max) => write!(f, ", clamped to {min}..={max}"),
            None => write!(f, ", at least {min}"),
        };
        match *self {
            Self::Constant { value } => write!(f, "{value} tokens"),
            Self::Uniform { min, max } => write!(f, "uniform {min}..={max} tokens"),
            Self::Normal {
                mean,
                stdev,
                min,
                max,
            } => {
                write!(f, "normal mean {mean} stdev {stdev} tokens")?;
                clamp(f, min, max)
            }
            Self::LogNormal {
                mean,
                stdev,
                min,
                max,
            } => {
                write!(f, "lognormal mean {mean} stdev {stdev} tokens")?;
                clamp(f, min, max)
            }
        }
    }
}

/// The median and shape `sigma` (of the underlying normal) of the log-normal whose own mean
/// and standard deviation are `mean` and `stdev`: `sigma² = ln(1 + (stdev/mean)²)`,
/// `median = mean / sqrt(1 + (stdev/mean)²)`. This is the parameterisation the mock's
/// output-length model takes.
pub fn lognormal_median_sigma(mean: f64, stdev: f64) -> (f64, f64) {
    let cv2 = (stdev / mean).powi(2);
    let sigma2 = (1.0 + cv2).ln();
    (mean / (1.0 + cv2).sqrt(), sigma2.sqrt())
}

fn clamp_round(draw: f64, min: u64, max: Option<u64>) -> u64 {
    // `as` saturates: NaN → 0, +inf → u64::MAX; the clamp then bounds it.
    let v = draw.round().max(0.0) as u64;
    v.max(min).min(max.unwrap_or(u64::MAX))
}

/// The requests a scenario sends (the `[workload]` table).
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// Prompt length, tokens of text (chat framing adds [`CHAT_FRAMING_TOKENS`]); at least 1.
    pub prompt_tokens: TokenDist,
    /// `max_tokens` sent with every request, tokens (≥ 1).
    pub max_tokens: u64,
    /// Natural completion length, tokens, before the `max_tokens` cap. The embedded mock
    /// draws output lengths from this distribution; real servers decide their own.
    pub output_tokens: TokenDist,
    /// Fraction of requests sent with `stream = true`, in `0..=1`.
    pub stream: f64,
    /// A recorded trace to replay instead of drawing lengths and arrivals: prompt and
    /// output lengths and `max_tokens` come from its rows ([`Workload::trace_shape`]).
    pub trace: Option<TraceSpec>,
    /// Characters per token of the generated prompt text.
    pub chars_per_token: CharsPerToken,
    /// A request file offered as one batch at the run start (`[workload] requests`):
    /// each line's size replayed ([`RequestFile`]).
    pub requests: Option<RequestFile>,
}

/// Characters per token of generated prompt text. Servers estimate a prompt as characters
/// / 4 at admission; natural text has more characters per token than 4, so the estimate
/// exceeds the true count — a client counting tokens is charged more than it thinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CharsPerToken {
    /// Exactly 4 (the default): the servers' estimate equals the token count.
    #[default]
    Four,
    /// The same ratio for every prompt, in thousandths (4500 = 4.5 characters per token).
    Fixed(u32),
    /// A realistic mix: each prompt's ratio drawn uniformly from 4.0 to 5.0 (mean 4.5,
    /// English prose in `o200k_base` / `cl100k_base`), seeded per request.
    Natural,
}

impl CharsPerToken {
    /// The mean ratio, characters per token.
    pub fn mean(self) -> f64 {
        match self {
            Self::Four => 4.0,
            Self::Fixed(m) => f64::from(m) / 1000.0,
            Self::Natural => 4.5,
        }
    }

    /// The largest ratio a prompt can have, characters per token.
    pub fn max(self) -> f64 {
        match self {
            Self::Natural => 5.0,
            other => other.mean(),
        }
    }
}

impl std::fmt::Display for CharsPerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Natural => f.write_str("natural (4 to 5 per request)"),
            other => write!(f, "{}", other.mean()),
        }
    }
}

/// Salt of the per-request characters-per-token draw (see [`sub_seed`]); its own stream, so
/// the other draws of a request do not depend on it.
const CHARS_SALT: u64 = 0x6368_6172_732f_746b; // "chars/tk"

/// A prompt's characters for `tokens` tokens at `milli` thousandths of a character per
/// token: exactly what [`prompt_text_at`] produces.
pub fn prompt_chars(tokens: u64, milli: u32) -> u64 {
    tokens * u64::from(milli) / 1000
}

/// One request's drawn shape. Depends only on (scenario seed, request id), so every
/// limiter run of a scenario sends the same requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestShape {
    /// Prompt length, tokens of text (≥ 1); generate it with [`prompt_text`].
    pub prompt_tokens: u64,
    /// `max_tokens` to send, tokens.
    pub max_tokens: u64,
    /// Whether to stream the response.
    pub stream: bool,
    /// Seed for [`prompt_text`], so the text is as reproducible as the length.
    pub prompt_seed: u64,
    /// The completion length [`Workload::output_tokens`] gives this request, tokens, capped
    /// at `max_tokens`. A server decides the real length; use this only where none does
    /// (virtual-time simulation).
    pub output_tokens: u64,
    /// Characters per token of its prompt text, in thousandths (4000 = 4): generate it
    /// with [`prompt_text_at`]; it has [`prompt_chars`] characters.
    pub chars_per_token_milli: u32,
}

impl Workload {
    /// The shape of replayed trace request `request_id` of a scenario seeded with `seed`:
    /// lengths and `max_tokens` from the trace row; streaming and the prompt's text drawn
    /// as for any request. `output_tokens` is the trace's generated count (at least 1,
    /// capped at `max_tokens`), which the server is asked to produce exactly.
    pub fn trace_shape(&self, seed: u64, request_id: u64, row: &TraceRequest) -> RequestShape {
        let mut rng = StdRng::seed_from_u64(sub_seed(seed, WORKLOAD_SALT, request_id));
        let stream = rng.random::<f64>() < self.stream;
        let prompt_seed = rng.random::<u64>();
        RequestShape {
            prompt_tokens: row.prompt_tokens.max(1),
            max_tokens: row.max_tokens,
            stream,
            prompt_seed,
            output_tokens: row.output_tokens.clamp(1, row.max_tokens.max(1)),
            chars_per_token_milli: row
                .chars_per_token_milli
                .unwrap_or_else(|| self.chars_milli(seed, request_id)),
        }
    }

    /// Request `request_id`'s characters per token, thousandths.
    fn chars_milli(&self, seed: u64, request_id: u64) -> u32 {
        match self.chars_per_token {
            CharsPerToken::Four => 4000,
            CharsPerToken::Fixed(m) => m,
            CharsPerToken::Natural => StdRng::seed_from_u64(sub_seed(seed, CHARS_SALT, request_id))
                .random_range(4000..=5000),
        }
    }

    /// The mean admission estimate of a request, tokens: mean prompt + mean `max_tokens`
    /// (generated prompts have four characters per token, so that is what the server
    /// charges); for a trace, over the rows of its window.
    pub fn mean_estimate(&self) -> f64 {
        if let Some(r) = &self.requests {
            return r.charge_sum as f64 / r.count.max(1) as f64;
        }
        match &self.trace {
            Some(t) => {
                let n = t.scan.in_window.max(1) as f64;
                let output = t.scan.output_tokens as f64 / n;
                self.charged_prompt(t.scan.prompt_tokens as f64 / n)
                    + t.max_tokens.for_output(output.round() as u64) as f64
            }
            None => self.charged_prompt(self.prompt_tokens.mean()) + self.max_tokens as f64,
        }
    }

    /// What a server's characters / 4 estimate makes of `tokens` prompt tokens of text at
    /// the workload's mean characters per token.
    fn charged_prompt(&self, tokens: f64) -> f64 {
        tokens * (self.chars_per_token.mean() / 4.0).max(1.0)
    }

    /// The largest admission estimate a request can have, tokens (prompt characters / 4 +
    /// `max_tokens`), `None` when prompt lengths are unbounded.
    pub fn largest_estimate(&self) -> Option<u64> {
        if let Some(r) = &self.requests {
            return Some(r.charge_max);
        }
        match &self.trace {
            Some(t) => Some(
                self.largest_prompt(t.scan.max_prompt_tokens)
                    .saturating_add(t.max_tokens.for_output(t.scan.max_output_tokens)),
            ),
            None => Some(
                self.largest_prompt(self.prompt_tokens.max()?)
                    .saturating_add(self.max_tokens),
            ),
        }
    }

    fn largest_prompt(&self, tokens: u64) -> u64 {
        let ratio = (self.chars_per_token.max() / 4.0).max(1.0);
        (tokens as f64 * ratio).ceil() as u64
    }

    /// The shape of request `request_id` of a scenario seeded with `seed`.
    pub fn shape(&self, seed: u64, request_id: u64) -> RequestShape {
        let mut rng = StdRng::seed_from_u64(sub_seed(seed, WORKLOAD_SALT, request_id));
        let prompt_tokens = self.prompt_tokens.sample(&mut rng).max(1);
        let stream = rng.random::<f64>() < self.stream;
        let prompt_seed = rng.random::<u64>();
        let output_tokens = self
            .output_tokens
            .sample(&mut rng)
            .clamp(1, self.max_tokens.max(1));
        RequestShape {
            prompt_tokens,
            max_tokens: self.max_tokens,
            stream,
            prompt_seed,
            output_tokens,
            chars_per_token_milli: self.chars_milli(seed, request_id),
        }
    }
}

/// Common English words that are one token each, with and without a leading space, in
/// both `o200k_base` and `cl100k_base` (checked in the tests with tiktoken).
const WORDS: &[&str] = &[
    "a", "the", "of", "and", "to", "in", "is", "it", "that", "for", "was", "on", "are", "as",
    "with", "they", "be", "at", "one", "have", "this", "from", "or", "had", "by", "word", "but",
    "what", "some", "we", "can", "out", "other", "were", "all", "there", "when", "up", "use",
    "your", "how", "said", "an", "each", "she", "which", "do", "their", "time", "if", "will",
    "way", "about", "many", "then", "them", "write", "would", "like", "so", "these", "her", "long",
    "make", "thing", "see", "him", "two", "has", "look", "more", "day", "could", "go", "come",
    "did", "number", "sound", "no", "most", "people", "my", "over", "know", "water", "than",
    "call", "first", "who", "may", "down", "side", "been", "now", "find", "any", "new", "work",
    "part", "take", "get", "place", "made", "live", "where", "after", "back", "little", "only",
    "round", "man", "year", "came", "show", "every", "good", "me", "give", "our", "under", "name",
    "very", "through", "just", "form", "sentence", "great", "think", "say", "help", "low", "line",
    "turn", "cause", "much", "mean", "before", "move", "right", "boy", "old", "too", "same",
    "tell", "does", "set", "three", "want", "air", "well", "also", "play", "small", "end", "put",
    "home", "read", "hand", "port", "large", "spell", "add", "even", "land", "here", "must", "big",
    "high", "such", "follow", "act", "why", "ask", "men", "change", "went", "light", "kind", "off",
    "need", "house", "picture", "try", "us", "again", "animal", "point", "mother", "world", "near",
    "build", "self", "earth", "father", "head", "stand", "own", "page", "should", "country",
    "found", "answer", "school", "grow", "study", "still", "learn", "plant", "cover", "food",
    "sun", "four", "between", "state", "keep", "eye", "never", "last", "let", "thought", "city",
    "tree", "cross", "farm", "hard", "start", "might", "story", "far", "sea", "draw", "left",
    "late", "run", "while", "press", "close", "night", "real", "life", "few", "north", "open",
    "next", "white", "children", "begin", "got", "walk", "example", "ease", "paper", "group",
    "always", "music", "those", "both", "mark", "often", "letter", "until", "mile", "river", "car",
    "care", "second", "book", "carry", "science", "eat", "room", "friend", "idea", "fish", "stop",
    "once", "base", "hear", "horse", "cut", "sure", "watch", "color", "face", "wood", "main",
    "plain", "girl", "usual", "young", "ready", "above", "ever", "red", "list", "though", "feel",
    "talk", "bird", "soon", "body", "dog", "family", "direct", "pose", "leave", "song", "measure",
    "door", "product", "black", "short", "class", "wind", "question", "complete", "ship", "area",
    "half", "rock", "order", "fire", "south", "problem", "piece", "pass", "since", "top", "whole",
    "king", "space", "heard", "best", "hour", "better", "true", "during", "five", "remember",
    "step", "early", "hold", "west", "ground", "interest", "reach", "fast", "verb", "sing",
    "listen", "six", "table", "travel", "less", "ten", "simple", "war", "lay", "against",
    "pattern", "slow", "center", "love", "person", "money", "serve", "appear", "road", "map",
    "rain", "rule", "pull", "cold", "notice", "voice", "unit", "power", "town", "fine", "fly",
    "fall", "lead", "cry", "dark", "machine", "note", "wait", "plan", "figure", "star", "box",
    "noun", "field", "rest", "correct", "able", "done", "drive", "stood", "contain", "front",
    "week", "final", "green", "quick", "develop", "warm", "free", "minute", "strong", "special",
    "mind", "clear", "tail", "produce", "fact", "street", "inch", "multiply", "nothing", "course",
    "stay", "wheel", "full", "force", "blue", "object", "surface", "deep", "moon", "foot",
    "system", "busy", "test", "record", "boat", "common", "gold", "possible", "plane", "dry",
    "ago", "ran", "check", "game", "shape", "hot", "miss", "heat", "snow", "bring", "yes", "fill",
    "east", "paint", "language", "among",
];

/// Characters per token of [`prompt_text`], exactly: a server estimating a prompt as
/// characters / 4 (OpenAI, Azure and the mock do, for admission) estimates exactly its
/// token count, so a client estimate of `prompt tokens + max_tokens` matches the charge.
pub const PROMPT_CHARS_PER_TOKEN: u64 = 4;

/// Words per sentence: each sentence ends with a `.` (itself one token).
const SENTENCE_WORDS: std::ops::RangeInclusive<u64> = 6..=16;

/// The longest word in [`WORDS`], in characters.
const MAX_WORD_LEN: usize = 8;

/// [`WORDS`] grouped by length: `by_length()[n]` holds the words of `n` characters.
fn by_length() -> &'static [Vec<&'static str>; MAX_WORD_LEN + 1] {
    static BY_LENGTH: std::sync::OnceLock<[Vec<&'static str>; MAX_WORD_LEN + 1]> =
        std::sync::OnceLock::new();
    BY_LENGTH.get_or_init(|| {
        let mut out: [Vec<&'static str>; MAX_WORD_LEN + 1] = Default::default();
        for w in WORDS {
            if let Some(bucket) = out.get_mut(w.len()) {
                bucket.push(w);
            }
        }
        out
    })
}

/// Prompt text of exactly `tokens` tokens of ordinary text in `o200k_base` and
/// `cl100k_base` (the gpt-4o and gpt-3.5/4 encodings) and exactly
/// [`PROMPT_CHARS_PER_TOKEN`]` × tokens` characters: lowercase words and full stops, one
/// token each, chosen deterministically from `seed`, each word's length picked so the
/// running character count stays within a few characters of 4 per token and ends on it.
/// Chat framing adds [`CHAT_FRAMING_TOKENS`] to the prompt tokens a server reports.
pub fn prompt_text(tokens: u64, seed: u64) -> String {
    prompt_text_at(tokens, seed, 4000)
}

/// [`prompt_text`] at `milli` thousandths of a character per token instead of 4: the same
/// one-token words, their lengths chosen so the text has exactly [`prompt_chars`]`(tokens,
/// milli)` characters when the words allow it (ratios from 3.5 to 7); still exactly
/// `tokens` tokens.
pub fn prompt_text_at(tokens: u64, seed: u64, milli: u32) -> String {
    let mut rng = StdRng::seed_from_u64(seed);
    let words = by_length();
    // Capped so a wild `tokens` cannot pre-allocate much; the string grows as needed.
    let mut out = String::with_capacity((tokens.min(1 << 20) * PROMPT_CHARS_PER_TOKEN) as usize);
    let mut chars: i64 = 0;
    let mut sentence_left = rng.random_range(SENTENCE_WORDS);
    for i in 0..tokens {
        let last = i + 1 == tokens;
        // A full stop ends a sentence; never first, never last, never twice in a row.
        if sentence_left == 0 && i > 0 && !last {
            out.push('.');
            chars += 1;
            sentence_left = rng.random_range(SENTENCE_WORDS);
            continue;
        }
        let space = i64::from(i > 0);
        if i > 0 {
            out.push(' ');
        }
        // Letters that would put the count exactly on 4 per token after this word.
        let target = prompt_chars(i + 1, milli) as i64;
        let exact = target - chars - space;
        let spread = if last { 0 } else { 2 };
        let lo = (exact - spread).clamp(1, MAX_WORD_LEN as i64) as usize;
        let hi = (exact + spread).clamp(1, MAX_WORD_LEN as i64) as usize;
        let candidates: usize = (lo..=hi).map(|n| words[n].len()).sum();
        let pick = rng.random_range(0..candidates.max(1));
        // Every length in 1..=MAX_WORD_LEN has words (tested), so `pick` is in range.
        let word = (lo..=hi)
            .flat_map(|n| words[n].iter())
            .nth(pick)
            .copied()
            .unwrap_or("the");
        out.push_str(word);
        chars += space + word.len() as i64;
        sentence_left = sentence_left.saturating_sub(1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tiktoken_rs::CoreBPE;

    fn encodings() -> [(&'static str, &'static CoreBPE); 2] {
        [
            ("o200k_base", tiktoken_rs::o200k_base_singleton()),
            ("cl100k_base", tiktoken_rs::cl100k_base_singleton()),
        ]
    }

    #[test]
    fn every_word_is_one_token_with_and_without_a_leading_space() {
        for (name, bpe) in encodings() {
            let multi: Vec<_> = WORDS
                .iter()
                .filter(|w| {
                    bpe.encode_ordinary(w).len() != 1
                        || bpe.encode_ordinary(&format!(" {w}")).len() != 1
                })
                .collect();
            assert!(multi.is_empty(), "{name}: not one token: {multi:?}");
        }
    }

    #[test]
    fn prompt_text_has_exactly_the_asked_token_count() {
        for (name, bpe) in encodings() {
            for tokens in (1u64..200).chain([401, 1000, 4000]) {
                let text = prompt_text(tokens, 1000 + tokens);
                let counted = bpe.encode_ordinary(&text).len() as u64;
                assert_eq!(counted, tokens, "{name}: {text:?}");
            }
        }
        assert_eq!(prompt_text(0, 1), "");
    }

    #[test]
    fn prompt_text_has_exactly_four_characters_per_token() {
        for tokens in (1..300).chain([1000, 4000, 20_000]) {
            let text = prompt_text(tokens, tokens * 7);
            assert_eq!(
                text.len() as u64,
                PROMPT_CHARS_PER_TOKEN * tokens,
                "{text:?}"
            );
        }
    }

    #[test]
    fn every_word_length_up_to_the_longest_is_available() {
        for (n, bucket) in by_length().iter().enumerate().skip(1) {
            assert!(!bucket.is_empty(), "no word of {n} characters");
        }
        assert!(WORDS
            .iter()
            .all(|w| w.len() <= MAX_WORD_LEN && w.is_ascii()));
    }

    #[test]
    fn prompt_text_at_other_ratios_keeps_the_token_count_and_hits_the_characters() {
        for (tokens, milli) in [
            (1u64, 4500u32),
            (50, 4500),
            (333, 4200),
            (800, 5000),
            (120, 3500),
            (64, 7000),
        ] {
            let text = prompt_text_at(tokens, tokens + 3, milli);
            assert_eq!(
                text.chars().count() as u64,
                prompt_chars(tokens, milli),
                "{tokens} at {milli}"
            );
            for (name, bpe) in encodings() {
                assert_eq!(
                    bpe.encode_ordinary(&text).len() as u64,
                    tokens,
                    "{name} {tokens} at {milli}"
                );
            }
        }
        assert_eq!(prompt_text_at(300, 9, 4000), prompt_text(300, 9));
    }

    #[test]
    fn natural_ratios_are_drawn_per_request_between_4_and_5() {
        let w = Workload {
            prompt_tokens: TokenDist::Constant { value: 100 },
            max_tokens: 10,
            output_tokens: TokenDist::Constant { value: 10 },
            stream: 0.0,
            trace: None,
            chars_per_token: CharsPerToken::Natural,
            requests: None,
        };
        let ratios: Vec<u32> = (0..500)
            .map(|id| w.shape(1, id).chars_per_token_milli)
            .collect();
        assert!(ratios.iter().all(|m| (4000..=5000).contains(m)));
        let mean = ratios.iter().map(|&m| f64::from(m)).sum::<f64>() / 500.0;
        assert!((mean - 4500.0).abs() < 60.0, "{mean}");
        let four = Workload {
            chars_per_token: CharsPerToken::Four,
            ..w.clone()
        };
        let shape = four.shape(1, 7);
        assert_eq!(shape.chars_per_token_milli, 4000);
        assert_eq!(
            Workload {
                chars_per_token: CharsPerToken::Natural,
                ..four
            }
            .shape(1, 7)
            .prompt_seed,
            shape.prompt_seed,
            "the ratio has its own stream: the other draws do not move"
        );
    }

    #[test]
    fn prompt_text_is_deterministic_per_seed() {
        assert_eq!(prompt_text(300, 42), prompt_text(300, 42));
        assert_ne!(prompt_text(300, 42), prompt_text(300, 43));
    }

    #[test]
    fn lognormal_parameters_give_the_asked_mean() {
        let (median, sigma) = lognormal_median_sigma(400.0, 200.0);
        let mean = (median.ln() + sigma * sigma / 2.0).exp();
        assert!((mean - 400.0).abs() < 1e-9, "{mean}");
        let var = ((sigma * sigma).exp() - 1.0) * mean * mean;
        assert!((var.sqrt() - 200.0).abs() < 1e-9);
    }
}
