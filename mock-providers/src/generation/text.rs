//! Deterministic completion text built from whole tokens, so its token count is known
//! without re-encoding it.
//!
//! The vocabulary is a fixed list of common English words, kept (per encoding, once) only
//! where `" word"` and `" Word"` each encode to exactly one token, plus `"."`. tiktoken's
//! pre-tokenizer splits text into pieces at exactly these boundaries (a space-led word, a lone
//! full stop), so text made of `n` such pieces encodes to `n` tokens; the test
//! `generated_text_encodes_to_its_token_count` checks that for both encodings.

use std::borrow::Cow;
use std::sync::LazyLock;

use rand::Rng;

use super::tokenizer::Encoding;

const WORDS: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "that",
    "for",
    "it",
    "as",
    "was",
    "with",
    "be",
    "by",
    "on",
    "not",
    "he",
    "this",
    "are",
    "or",
    "his",
    "from",
    "at",
    "which",
    "but",
    "have",
    "an",
    "had",
    "they",
    "you",
    "were",
    "their",
    "one",
    "all",
    "we",
    "can",
    "her",
    "has",
    "there",
    "been",
    "if",
    "more",
    "when",
    "will",
    "would",
    "who",
    "so",
    "no",
    "time",
    "people",
    "what",
    "about",
    "out",
    "up",
    "into",
    "only",
    "some",
    "could",
    "them",
    "other",
    "than",
    "then",
    "its",
    "also",
    "two",
    "first",
    "new",
    "like",
    "over",
    "these",
    "any",
    "may",
    "after",
    "most",
    "where",
    "made",
    "through",
    "many",
    "before",
    "must",
    "well",
    "back",
    "years",
    "much",
    "way",
    "should",
    "because",
    "each",
    "just",
    "those",
    "how",
    "work",
    "state",
    "system",
    "model",
    "limit",
    "rate",
    "request",
    "token",
    "service",
    "answer",
    "question",
    "data",
    "result",
    "value",
    "point",
    "number",
    "part",
    "place",
    "case",
    "world",
    "life",
    "hand",
    "day",
    "water",
    "light",
    "small",
    "large",
    "great",
    "good",
    "long",
    "high",
    "old",
    "right",
    "different",
    "following",
    "important",
    "simple",
    "clear",
    "every",
    "under",
    "between",
    "during",
    "without",
    "again",
    "still",
    "never",
    "always",
    "often",
    "here",
];

/// Pieces of the vocabulary for one encoding.
#[derive(Debug)]
struct Vocabulary {
    /// `" word"` pieces, each one token.
    words: Vec<String>,
    /// `" Word"` pieces (sentence starts), each one token.
    capitalized: Vec<String>,
    /// `"Word"` pieces (the first token of a text), each one token.
    openers: Vec<String>,
}

impl Vocabulary {
    fn build(encoding: Encoding) -> Self {
        let single = |s: &String| encoding.count(s) == 1;
        let words: Vec<String> = WORDS.iter().map(|w| format!(" {w}")).collect();
        let upper = |w: &&str| {
            let mut c = w.chars();
            let first = c.next().map(|f| f.to_ascii_uppercase()).unwrap_or(' ');
            format!("{first}{}", c.as_str())
        };
        let openers: Vec<String> = WORDS.iter().map(upper).collect();
        let capitalized: Vec<String> = openers.iter().map(|w| format!(" {w}")).collect();
        Self {
            words: words.into_iter().filter(single).collect(),
            capitalized: capitalized.into_iter().filter(single).collect(),
            openers: openers.into_iter().filter(single).collect(),
        }
    }

    fn get(encoding: Encoding) -> &'static Self {
        static O200K: LazyLock<Vocabulary> =
            LazyLock::new(|| Vocabulary::build(Encoding::O200kBase));
        static CL100K: LazyLock<Vocabulary> =
            LazyLock::new(|| Vocabulary::build(Encoding::Cl100kBase));
        match encoding {
            Encoding::O200kBase => &O200K,
            Encoding::Cl100kBase => &CL100K,
        }
    }
}

/// Why generation ended, as in OpenAI's `finish_reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// The text ended naturally or at a stop sequence.
    Stop,
    /// Cut at `max_tokens`.
    Length,
}

impl FinishReason {
    /// `"stop"` or `"length"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
        }
    }
}

/// One generated completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedText {
    /// The text in streaming order, one token per piece (the piece that completed a stop
    /// sequence is cut before it, or dropped when nothing of it remains).
    pub pieces: Vec<Cow<'static, str>>,
    /// The pieces joined.
    pub text: String,
    /// Tokens generated (the `completion_tokens` this choice adds to `usage`), counting the
    /// tokens consumed by a stop sequence.
    pub tokens: u32,
    /// Why it ended.
    pub finish_reason: FinishReason,
}

/// Generates `target` tokens of text (capped at `max_tokens`, which then makes the finish
/// reason `length`), stopping early, with finish reason `stop`, at the first occurrence of
/// any of `stop`. Deterministic for a given `rng` state. `target` is at least 1.
pub fn generate_text<R: Rng + ?Sized>(
    encoding: Encoding,
    target: u32,
    max_tokens: Option<u32>,
    stop: &[String],
    rng: &mut R,
) -> GeneratedText {
    let vocab = Vocabulary::get(encoding);
    let target = target.max(1);
    let (count, finish_reason) = match max_tokens {
        Some(cap) if cap < target => (cap, FinishReason::Length),
        _ => (target, FinishReason::Stop),
    };
    let longest_stop = stop.iter().map(String::len).max().unwrap_or(0);
    let mut pieces: Vec<Cow<'static, str>> = Vec::with_capacity(count as usize);
    let mut text = String::with_capacity(count as usize * 6);
    let mut sentence_left = 0u32;
    let mut after_full_stop = false;
    for i in 1..=count {
        let piece: &'static str = if i == 1 {
            sentence_left = rng.random_range(6..16);
            pick(&vocab.openers, rng)
        } else if i == count && finish_reason == FinishReason::Stop && !after_full_stop {
            // A natural ending closes its sentence.
            "."
        } else if after_full_stop {
            sentence_left = rng.random_range(6..16);
            pick(&vocab.capitalized, rng)
        } else if sentence_left == 0 && i + 1 < count {
            // Never two full stops in a row: ".." would be one token, not two.
            "."
        } else {
            sentence_left = sentence_left.saturating_sub(1);
            pick(&vocab.words, rng)
        };
        after_full_stop = piece == ".";
        let before = text.len();
        text.push_str(piece);
        pieces.push(Cow::Borrowed(piece));
        if longest_stop > 0 {
            let from = floor_char_boundary(&text, before.saturating_sub(longest_stop));
            if let Some(at) = first_stop(&text[from..], stop).map(|i| from + i) {
                cut_at(&mut pieces, &mut text, at);
                return GeneratedText {
                    pieces,
                    text,
                    tokens: i,
                    finish_reason: FinishReason::Stop,
                };
            }
        }
    }
    GeneratedText {
        pieces,
        text,
        tokens: count,
        finish_reason,
    }
}

fn pick<R: Rng + ?Sized>(list: &'static [String], rng: &mut R) -> &'static str {
    list[rng.random_range(0..list.len())].as_str()
}

fn first_stop(text: &str, stop: &[String]) -> Option<usize> {
    stop.iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()))
        .min()
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Truncates `text` to `at` bytes and trims `pieces` to match.
fn cut_at(pieces: &mut Vec<Cow<'static, str>>, text: &mut String, at: usize) {
    text.truncate(at);
    let mut len = 0;
    let mut keep = 0;
    for p in pieces.iter() {
        if len + p.len() > at {
            break;
        }
        len += p.len();
        keep += 1;
    }
    let partial = text[len..].to_owned();
    pieces.truncate(keep);
    if !partial.is_empty() {
        pieces.push(Cow::Owned(partial));
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn generated_text_encodes_to_its_token_count() {
        for encoding in [Encoding::O200kBase, Encoding::Cl100kBase] {
            assert!(Vocabulary::get(encoding).words.len() > 100);
            assert!(Vocabulary::get(encoding).capitalized.len() > 50);
            assert!(Vocabulary::get(encoding).openers.len() > 50);
            for seed in 0..200 {
                let mut rng = SmallRng::seed_from_u64(seed);
                let target = 1 + (seed as u32 * 7) % 300;
                let g = generate_text(encoding, target, None, &[], &mut rng);
                assert_eq!(g.tokens, target);
                assert_eq!(g.pieces.len() as u32, target);
                assert_eq!(encoding.count(&g.text), target, "{encoding:?} {:?}", g.text);
                assert_eq!(g.pieces.concat(), g.text);
                assert_eq!(g.finish_reason, FinishReason::Stop);
            }
        }
    }

    #[test]
    fn same_seed_same_text() {
        let a = generate_text(
            Encoding::O200kBase,
            50,
            None,
            &[],
            &mut SmallRng::seed_from_u64(7),
        );
        let b = generate_text(
            Encoding::O200kBase,
            50,
            None,
            &[],
            &mut SmallRng::seed_from_u64(7),
        );
        assert_eq!(a, b);
    }

    #[test]
    fn max_tokens_caps_with_length() {
        let mut rng = SmallRng::seed_from_u64(1);
        let g = generate_text(Encoding::Cl100kBase, 100, Some(10), &[], &mut rng);
        assert_eq!((g.tokens, g.finish_reason), (10, FinishReason::Length));
        assert_eq!(Encoding::Cl100kBase.count(&g.text), 10);
    }

    #[test]
    fn stop_sequence_cuts_before_it() {
        let mut rng = SmallRng::seed_from_u64(3);
        let full = generate_text(Encoding::O200kBase, 200, None, &[], &mut rng);
        // Stop at the first full stop of the sentence-structured text.
        let stop = vec![".".to_owned()];
        let mut rng = SmallRng::seed_from_u64(3);
        let g = generate_text(Encoding::O200kBase, 200, None, &stop, &mut rng);
        let at = full.text.find('.').expect("200 tokens hold a sentence");
        assert_eq!(g.text, full.text[..at]);
        assert_eq!(g.pieces.concat(), g.text);
        assert_eq!(g.finish_reason, FinishReason::Stop);
        assert!(g.tokens < 200);
    }
}
