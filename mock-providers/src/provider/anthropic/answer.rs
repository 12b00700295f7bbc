//! What an admitted request says and what its prompt counts: the mock's token counts
//! (Anthropic's tokenizer is not public), the cached prefix, and the generated answer with
//! its stop reason.

use super::request::MessagesRequest;
use super::wire::Stop;
use crate::generation::text::{generate_text, FinishReason};
use crate::generation::tokenizer::Encoding;
use crate::generation::{fnv1a, output_rng, rng_for, OutputTokens};

/// A prompt's tokens as the mock counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromptTokens {
    /// All input tokens: 1, plus per part 3 of framing and its text's tokens.
    pub total: u64,
    /// The tokens up to and including the last part with `cache_control` (0 without one).
    pub prefix: u64,
    /// A hash of that prefix's roles and texts (the cache key; 0 without one).
    pub prefix_hash: u64,
}

/// Counts `req`'s prompt in `encoding`.
pub fn prompt_tokens(encoding: Encoding, req: &MessagesRequest) -> PromptTokens {
    let last_breakpoint = req.parts.iter().rposition(|p| p.breakpoint);
    let (mut total, mut prefix, mut hash) = (1u64, 0u64, 0u64);
    for (i, p) in req.parts.iter().enumerate() {
        total += 3 + u64::from(encoding.count_cached(&p.text));
        if last_breakpoint.is_some_and(|last| i <= last) {
            prefix = total;
            hash = hash.rotate_left(5) ^ fnv1a(p.role.as_bytes()) ^ fnv1a(p.text.as_bytes());
        }
    }
    PromptTokens {
        total,
        prefix,
        prefix_hash: hash,
    }
}

/// The text of an admitted request: pieces, their token count, and why it stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The text in streaming order, one token per piece.
    pub pieces: Vec<String>,
    /// The pieces joined.
    pub text: String,
    /// Output tokens generated.
    pub tokens: u64,
    /// Why it stopped.
    pub stop: Stop,
}

/// What request `number` under `seed` says: a natural length drawn from `lengths` (the
/// prompt seeds it at temperature 0), capped by `max_tokens` (`max_tokens`), cut before the
/// first stop sequence (`stop_sequence`; the token that completed it counts as generated),
/// else `end_turn`.
pub fn answer(
    seed: u64,
    number: u64,
    lengths: OutputTokens,
    encoding: Encoding,
    req: &MessagesRequest,
) -> Answer {
    let mut rng = if req.deterministic {
        let hash = req
            .parts
            .iter()
            .fold(0u64, |h, p| h.rotate_left(5) ^ fnv1a(p.text.as_bytes()));
        rng_for(seed, hash)
    } else {
        output_rng(seed, number)
    };
    let natural = lengths.sample(&mut rng);
    let cap = u32::try_from(req.max_tokens).unwrap_or(u32::MAX);
    let g = generate_text(encoding, natural, Some(cap), &[], &mut rng);
    let mut stop = match g.finish_reason {
        FinishReason::Length => Stop::MaxTokens,
        FinishReason::Stop => Stop::EndTurn,
    };
    let mut pieces: Vec<String> = Vec::with_capacity(g.pieces.len());
    let mut text = String::with_capacity(g.text.len());
    for (i, piece) in g.pieces.iter().enumerate() {
        let before = text.len();
        text.push_str(piece);
        pieces.push(piece.to_string());
        let hit = req
            .stop_sequences
            .iter()
            .filter_map(|s| {
                let from = floor_boundary(&text, before.saturating_sub(s.len()));
                text[from..].find(s.as_str()).map(|at| (from + at, s))
            })
            .min_by_key(|(at, _)| *at);
        if let Some((at, s)) = hit {
            // Keep the text before the sequence; the piece that completed it still counts
            // as generated.
            text.truncate(at);
            let mut kept = Vec::with_capacity(pieces.len());
            let mut len = 0;
            for p in pieces {
                if len >= at {
                    break;
                }
                let take = (at - len).min(p.len());
                kept.push(p[..take].to_owned());
                len += take;
            }
            stop = Stop::Sequence(s.clone());
            return Answer {
                pieces: kept,
                text,
                tokens: i as u64 + 1,
                stop,
            };
        }
    }
    Answer {
        tokens: u64::from(g.tokens),
        pieces,
        text,
        stop,
    }
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::anthropic::request::{parse, Endpoint};

    fn req(body: &str) -> MessagesRequest {
        parse(body.as_bytes(), Endpoint::Messages).unwrap()
    }

    #[test]
    fn prefix_runs_to_the_last_breakpoint() {
        let plain =
            req(r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hello"}]}"#);
        let p = prompt_tokens(Encoding::Cl100kBase, &plain);
        assert_eq!(p.total, 1 + 3 + 1);
        assert_eq!((p.prefix, p.prefix_hash), (0, 0));
        let cached = req(
            r#"{"model":"m","max_tokens":5,"system":[{"type":"text","text":"hello","cache_control":{"type":"ephemeral"}}],"messages":[{"role":"user","content":"hello"}]}"#,
        );
        let c = prompt_tokens(Encoding::Cl100kBase, &cached);
        assert_eq!((c.total, c.prefix), (1 + 4 + 4, 1 + 4));
        assert_ne!(c.prefix_hash, 0);
    }

    #[test]
    fn a_stop_sequence_spanning_pieces_cuts_the_text_before_it() {
        let body = r#"{"model":"m","max_tokens":200,"temperature":0,"messages":[{"role":"user","content":"x"}]}"#;
        let free = answer(
            1,
            0,
            OutputTokens::Fixed { tokens: 60 },
            Encoding::Cl100kBase,
            &req(body),
        );
        assert_eq!(free.stop, Stop::EndTurn);
        assert_eq!(free.pieces.concat(), free.text);
        // The stop: the last two characters of the 10th piece and the first of the 11th.
        let (a, b) = (&free.pieces[9], &free.pieces[10]);
        let stop = format!("{}{}", &a[a.len() - 2..], &b[..1]);
        let with_stop = body.replace(
            r#""temperature":0"#,
            &format!(r#""temperature":0,"stop_sequences":["{stop}"]"#),
        );
        let cut = answer(
            1,
            0,
            OutputTokens::Fixed { tokens: 60 },
            Encoding::Cl100kBase,
            &req(&with_stop),
        );
        let at = free.text.find(&stop).unwrap();
        let stop_len = stop.len();
        assert_eq!(cut.text, free.text[..at]);
        assert_eq!(cut.pieces.concat(), cut.text);
        assert_eq!(cut.stop, Stop::Sequence(stop));
        // Generated up to the piece that completed the sequence.
        let mut end = 0;
        let completing = free
            .pieces
            .iter()
            .position(|p| {
                end += p.len();
                end >= at + stop_len
            })
            .unwrap();
        assert_eq!(cut.tokens, completing as u64 + 1);
        let capped = answer(
            1,
            0,
            OutputTokens::Fixed { tokens: 60 },
            Encoding::Cl100kBase,
            &req(&body.replace("200", "7")),
        );
        assert_eq!((capped.tokens, capped.stop), (7, Stop::MaxTokens));
    }
}
