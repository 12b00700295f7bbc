//! Real token counts with tiktoken: `o200k_base` (gpt-4o family) and `cl100k_base`
//! (gpt-3.5-turbo, gpt-4, text-embedding-3-*).
//!
//! Each encoding is loaded once, lazily, and shared by every request (tiktoken-rs's
//! process-wide singletons); nothing here loads per request. Counts of short texts are
//! memoised ([`Encoding::count_cached`]): roles, system prompts and repeated user prompts
//! recur across requests, and tiktoken's regex pre-tokenizer dominates the mock's CPU time.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::LazyLock;

use parking_lot::Mutex;
use serde::Deserialize;
use tiktoken_rs::CoreBPE;

/// Texts longer than this many bytes are counted, not memoised.
const MEMO_MAX_TEXT: usize = 4096;
/// Entries per memo shard before the shard is cleared.
const MEMO_SHARD_ENTRIES: usize = 2048;
const MEMO_SHARDS: usize = 16;

/// Token counts of short texts, per encoding, in shards cleared when full. Each text is
/// hashed once (keyed SipHash); the maps are keyed by that hash and keep the text, so a
/// lookup is exact: a text whose hash is held by another text is counted, not memoised.
struct Memo {
    hasher: RandomState,
    shards: Vec<Mutex<Shard>>,
}

/// Text hash → the text and its token count.
type Shard = HashMap<u64, (Box<str>, u32), BuildHasherDefault<Prehashed>>;

/// A hasher for keys that already are hashes.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl Memo {
    fn new() -> Self {
        Self {
            hasher: RandomState::new(),
            shards: (0..MEMO_SHARDS)
                .map(|_| Mutex::new(HashMap::default()))
                .collect(),
        }
    }

    fn get_or(&self, text: &str, count: impl FnOnce() -> u32) -> u32 {
        let hash = self.hasher.hash_one(text);
        let shard = &self.shards[(hash >> 40) as usize % MEMO_SHARDS];
        let held = match shard.lock().get(&hash) {
            Some((t, n)) if &**t == text => return *n,
            Some(_) => true,
            None => false,
        };
        let n = count();
        if !held {
            let mut map = shard.lock();
            if map.len() >= MEMO_SHARD_ENTRIES {
                map.clear();
            }
            map.insert(hash, (text.into(), n));
        }
        n
    }
}

/// A tiktoken encoding a model uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// `o200k_base`: gpt-4o, gpt-4o-mini, o-series.
    O200kBase,
    /// `cl100k_base`: gpt-3.5-turbo, gpt-4, embeddings.
    Cl100kBase,
}

impl Encoding {
    /// The shared tokenizer (loaded on first use, then reused).
    pub fn bpe(self) -> &'static CoreBPE {
        match self {
            Self::O200kBase => tiktoken_rs::o200k_base_singleton(),
            Self::Cl100kBase => tiktoken_rs::cl100k_base_singleton(),
        }
    }

    /// The encoding's name, e.g. `"o200k_base"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::O200kBase => "o200k_base",
            Self::Cl100kBase => "cl100k_base",
        }
    }

    /// Tokens in `text` (ordinary text: special-token strings count as plain text).
    pub fn count(self, text: &str) -> u32 {
        saturate(self.bpe().encode_ordinary(text).len())
    }

    /// [`Self::count`], memoised for texts up to 4 KiB (same result, computed once per
    /// distinct text while it stays in the bounded memo).
    pub fn count_cached(self, text: &str) -> u32 {
        static O200K: LazyLock<Memo> = LazyLock::new(Memo::new);
        static CL100K: LazyLock<Memo> = LazyLock::new(Memo::new);
        if text.len() > MEMO_MAX_TEXT {
            return self.count(text);
        }
        let memo = match self {
            Self::O200kBase => &O200K,
            Self::Cl100kBase => &CL100K,
        };
        memo.get_or(text, || self.count(text))
    }

    /// [`Self::count`] of a chat role: the roles OpenAI accepts are counted once per
    /// encoding, anything else as text.
    pub fn count_role(self, role: &str) -> u32 {
        const ROLES: [&str; 6] = [
            "system",
            "user",
            "assistant",
            "tool",
            "function",
            "developer",
        ];
        static O200K: LazyLock<[u32; 6]> =
            LazyLock::new(|| ROLES.map(|r| Encoding::O200kBase.count(r)));
        static CL100K: LazyLock<[u32; 6]> =
            LazyLock::new(|| ROLES.map(|r| Encoding::Cl100kBase.count(r)));
        let counts = match self {
            Self::O200kBase => &O200K,
            Self::Cl100kBase => &CL100K,
        };
        match ROLES.iter().position(|&r| r == role) {
            Some(i) => counts[i],
            None => self.count_cached(role),
        }
    }
}

fn saturate(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// One chat message as the token counter sees it: role, optional name, text content.
#[derive(Debug, Clone, Copy)]
pub struct ChatMessageText<'a> {
    /// `system`, `user`, `assistant`, `tool`, …
    pub role: &'a str,
    /// The optional `name` field.
    pub name: Option<&'a str>,
    /// The text content (text parts joined; empty when the content is null).
    pub content: &'a str,
}

/// Prompt tokens of a chat request, counted the way OpenAI's cookbook does for current
/// models: 3 tokens of framing per message, 1 more per `name`, the role, name and content
/// tokens, and 3 tokens priming the reply.
pub fn count_chat_prompt(encoding: Encoding, messages: &[ChatMessageText<'_>]) -> u32 {
    count_chat_messages(encoding, messages.iter().copied())
}

/// [`count_chat_prompt`] over any sequence of messages (no slice to build).
pub fn count_chat_messages<'a>(
    encoding: Encoding,
    messages: impl IntoIterator<Item = ChatMessageText<'a>>,
) -> u32 {
    let mut total: u32 = 3;
    for m in messages {
        total = total
            .saturating_add(3)
            .saturating_add(encoding.count_role(m.role))
            .saturating_add(encoding.count_cached(m.content));
        if let Some(name) = m.name {
            total = total
                .saturating_add(1)
                .saturating_add(encoding.count_cached(name));
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_known_strings() {
        assert_eq!(Encoding::Cl100kBase.count("hello world"), 2);
        assert_eq!(Encoding::O200kBase.count("hello world"), 2);
        assert_eq!(Encoding::Cl100kBase.count(""), 0);
    }

    #[test]
    fn memoised_counts_equal_fresh_counts() {
        for text in [
            "hello world",
            "hello world",
            "",
            "ünïcödé text, twice",
            &"long ".repeat(2000),
        ] {
            for e in [Encoding::O200kBase, Encoding::Cl100kBase] {
                assert_eq!(e.count_cached(text), e.count(text), "{text:?}");
                assert_eq!(e.count_cached(text), e.count(text), "{text:?} (memoised)");
            }
        }
    }

    #[test]
    fn role_counts_equal_fresh_counts() {
        for e in [Encoding::O200kBase, Encoding::Cl100kBase] {
            for role in [
                "system",
                "user",
                "assistant",
                "tool",
                "function",
                "developer",
                "robot",
            ] {
                assert_eq!(e.count_role(role), e.count(role), "{e:?} {role}");
            }
        }
    }

    #[test]
    fn memo_is_exact_when_hashes_collide() {
        let memo = Memo::new();
        assert_eq!(memo.get_or("abc", || 3), 3);
        assert_eq!(memo.get_or("abc", || 99), 3, "memoised");
        // Plant a different text under the hash of "xyz": it must not be taken for it.
        let hash = memo.hasher.hash_one("xyz");
        let shard = &memo.shards[(hash >> 40) as usize % MEMO_SHARDS];
        shard.lock().insert(hash, ("other".into(), 42));
        assert_eq!(memo.get_or("xyz", || 7), 7);
        assert_eq!(memo.get_or("xyz", || 8), 8, "counted again, not memoised");
    }

    #[test]
    fn chat_prompt_adds_framing() {
        let msgs = [ChatMessageText {
            role: "user",
            name: None,
            content: "hello world",
        }];
        // 3 (priming) + 3 (framing) + 1 ("user") + 2 ("hello world").
        assert_eq!(count_chat_prompt(Encoding::O200kBase, &msgs), 9);
    }
}
