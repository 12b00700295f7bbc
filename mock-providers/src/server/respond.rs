//! Success bodies in the providers' JSON shapes (chat, legacy completions, embeddings,
//! models), serialized from borrowed structs.

use std::io::Write as _;

use base64::Engine as _;
use serde::Serialize;

use crate::config::{ModelConfig, ModelKind};
use crate::generation::text::GeneratedText;

/// Token usage of one request.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Usage {
    /// Prompt tokens (tiktoken).
    pub prompt_tokens: u32,
    /// Completion tokens over all choices.
    pub completion_tokens: u32,
    /// Their sum.
    pub total_tokens: u32,
    /// `{"reasoning_tokens":0}` as OpenAI sends for chat.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_tokens_details: Option<Details>,
}

/// Completion token details.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Details {
    /// Always 0 (the mock does not reason).
    pub reasoning_tokens: u32,
}

impl Usage {
    /// Usage of a chat/completions request.
    pub fn new(prompt_tokens: u32, completion_tokens: u32, chat: bool) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens.saturating_add(completion_tokens),
            completion_tokens_details: chat.then_some(Details {
                reasoning_tokens: 0,
            }),
        }
    }
}

/// What every completion response shares.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    /// `chatcmpl-…` or `cmpl-…`.
    pub id: &'a str,
    /// Unix seconds.
    pub created: u64,
    /// The model id.
    pub model: &'a str,
    /// `fp_…`.
    pub fingerprint: &'a str,
}

/// A `chat.completion` body, written straight into one buffer sized for it (the same
/// bytes `serde_json` gives for the derived shape: see `chat_body_matches_serde`).
pub fn chat(env: &Envelope<'_>, choices: &[GeneratedText], usage: Usage) -> Vec<u8> {
    let text: usize = choices.iter().map(|c| c.text.len()).sum();
    let mut out = Vec::with_capacity(
        300 + env.id.len()
            + env.model.len()
            + env.fingerprint.len()
            + 130 * choices.len()
            + text
            + text / 8,
    );
    out.extend_from_slice(b"{\"id\":");
    json_str(&mut out, env.id);
    out.extend_from_slice(b",\"object\":\"chat.completion\",\"created\":");
    json_num(&mut out, env.created);
    out.extend_from_slice(b",\"model\":");
    json_str(&mut out, env.model);
    out.extend_from_slice(b",\"choices\":[");
    for (index, c) in choices.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"index\":");
        json_num(&mut out, index as u64);
        out.extend_from_slice(b",\"message\":{\"role\":\"assistant\",\"content\":");
        json_str(&mut out, &c.text);
        out.extend_from_slice(b",\"refusal\":null},\"logprobs\":null,\"finish_reason\":\"");
        out.extend_from_slice(c.finish_reason.as_str().as_bytes());
        out.extend_from_slice(b"\"}");
    }
    out.extend_from_slice(b"],\"usage\":");
    // Writing into a Vec cannot fail; a failure would only shorten the body.
    let _ = serde_json::to_writer(&mut out, &usage);
    out.extend_from_slice(b",\"system_fingerprint\":");
    json_str(&mut out, env.fingerprint);
    out.push(b'}');
    out
}

/// `s` as a JSON string, escaped exactly as `serde_json` escapes it.
fn json_str(out: &mut Vec<u8>, s: &str) {
    let _ = serde_json::to_writer(&mut *out, s);
}

fn json_num(out: &mut Vec<u8>, n: u64) {
    let _ = write!(out, "{n}");
}

#[derive(Serialize)]
struct TextResponse<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<TextChoice<'a>>,
    usage: Usage,
    system_fingerprint: &'a str,
}

#[derive(Serialize)]
struct TextChoice<'a> {
    text: &'a str,
    index: usize,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

/// A legacy `text_completion` body.
pub fn completion(env: &Envelope<'_>, choices: &[GeneratedText], usage: Usage) -> Vec<u8> {
    let body = TextResponse {
        id: env.id,
        object: "text_completion",
        created: env.created,
        model: env.model,
        choices: choices
            .iter()
            .enumerate()
            .map(|(index, c)| TextChoice {
                text: &c.text,
                index,
                logprobs: None,
                finish_reason: c.finish_reason.as_str(),
            })
            .collect(),
        usage,
        system_fingerprint: env.fingerprint,
    };
    serde_json::to_vec(&body).unwrap_or_default()
}

#[derive(Serialize)]
#[serde(untagged)]
enum Vector {
    Float(Vec<f32>),
    Base64(String),
}

#[derive(Serialize)]
struct EmbeddingItem {
    object: &'static str,
    index: usize,
    embedding: Vector,
}

#[derive(Serialize)]
struct EmbeddingUsage {
    prompt_tokens: u32,
    total_tokens: u32,
}

#[derive(Serialize)]
struct EmbeddingResponse<'a> {
    object: &'static str,
    data: Vec<EmbeddingItem>,
    model: &'a str,
    usage: EmbeddingUsage,
}

/// An embeddings `list` body: float arrays, or base64 of little-endian f32 when asked.
pub fn embeddings(
    model: &str,
    vectors: Vec<Vec<f32>>,
    base64: bool,
    prompt_tokens: u32,
) -> Vec<u8> {
    let data = vectors
        .into_iter()
        .enumerate()
        .map(|(index, v)| EmbeddingItem {
            object: "embedding",
            index,
            embedding: if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Vector::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                Vector::Float(v)
            },
        })
        .collect();
    let body = EmbeddingResponse {
        object: "list",
        data,
        model,
        usage: EmbeddingUsage {
            prompt_tokens,
            total_tokens: prompt_tokens,
        },
    };
    serde_json::to_vec(&body).unwrap_or_default()
}

#[derive(Serialize)]
struct ModelObject<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    owned_by: &'a str,
}

/// When the mock's models were "created" (a fixed Unix time, 2024-05-10).
const MODEL_CREATED: u64 = 1_715_367_049;

fn model_object(m: &ModelConfig) -> ModelObject<'_> {
    ModelObject {
        id: &m.id,
        object: "model",
        created: MODEL_CREATED,
        owned_by: &m.owned_by,
    }
}

#[derive(Serialize)]
struct ModelList<'a> {
    object: &'static str,
    data: Vec<ModelObject<'a>>,
}

/// `GET /v1/models`.
pub fn model_list(models: &[ModelConfig]) -> Vec<u8> {
    let body = ModelList {
        object: "list",
        data: models.iter().map(model_object).collect(),
    };
    serde_json::to_vec(&body).unwrap_or_default()
}

/// `GET /v1/models/{id}`.
pub fn model(m: &ModelConfig) -> Vec<u8> {
    serde_json::to_vec(&model_object(m)).unwrap_or_default()
}

/// When the mock's models stop serving inference in Azure's list (a fixed Unix time,
/// 2027-01-01).
const MODEL_DEPRECATED: u64 = 1_798_761_600;

#[derive(Serialize)]
struct AzureCapabilities {
    fine_tune: bool,
    inference: bool,
    completion: bool,
    chat_completion: bool,
    embeddings: bool,
}

#[derive(Serialize)]
struct AzureDeprecation {
    inference: u64,
}

#[derive(Serialize)]
struct AzureModel<'a> {
    status: &'static str,
    capabilities: AzureCapabilities,
    lifecycle_status: &'static str,
    deprecation: AzureDeprecation,
    id: &'a str,
    created_at: u64,
    object: &'static str,
}

#[derive(Serialize)]
struct AzureModelList<'a> {
    data: Vec<AzureModel<'a>>,
    object: &'static str,
}

/// Azure's `GET /openai/models`: every configured model in Azure's shape (`status`,
/// `capabilities`, `lifecycle_status`, `deprecation`, `id`, `created_at`, `object`).
pub fn azure_model_list(models: &[ModelConfig]) -> Vec<u8> {
    let data = models
        .iter()
        .map(|m| {
            let chat = m.kind == ModelKind::Chat;
            AzureModel {
                status: "succeeded",
                capabilities: AzureCapabilities {
                    fine_tune: false,
                    inference: true,
                    completion: chat,
                    chat_completion: chat,
                    embeddings: !chat,
                },
                lifecycle_status: "generally-available",
                deprecation: AzureDeprecation {
                    inference: MODEL_DEPRECATED,
                },
                id: &m.id,
                created_at: MODEL_CREATED,
                object: "model",
            }
        })
        .collect();
    let body = AzureModelList {
        data,
        object: "list",
    };
    serde_json::to_vec(&body).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::generation::text::FinishReason;

    #[derive(Serialize)]
    struct ChatResponse<'a> {
        id: &'a str,
        object: &'static str,
        created: u64,
        model: &'a str,
        choices: Vec<ChatChoice<'a>>,
        usage: Usage,
        system_fingerprint: &'a str,
    }

    #[derive(Serialize)]
    struct ChatChoice<'a> {
        index: usize,
        message: ChatMessage<'a>,
        logprobs: Option<()>,
        finish_reason: &'static str,
    }

    #[derive(Serialize)]
    struct ChatMessage<'a> {
        role: &'static str,
        content: &'a str,
        refusal: Option<()>,
    }

    fn serde_chat(env: &Envelope<'_>, choices: &[GeneratedText], usage: Usage) -> Vec<u8> {
        let body = ChatResponse {
            id: env.id,
            object: "chat.completion",
            created: env.created,
            model: env.model,
            choices: choices
                .iter()
                .enumerate()
                .map(|(index, c)| ChatChoice {
                    index,
                    message: ChatMessage {
                        role: "assistant",
                        content: &c.text,
                        refusal: None,
                    },
                    logprobs: None,
                    finish_reason: c.finish_reason.as_str(),
                })
                .collect(),
            usage,
            system_fingerprint: env.fingerprint,
        };
        serde_json::to_vec(&body).unwrap()
    }

    fn choice(text: &str, finish_reason: FinishReason) -> GeneratedText {
        GeneratedText {
            pieces: vec![Cow::Owned(text.to_owned())],
            text: text.to_owned(),
            tokens: 3,
            finish_reason,
        }
    }

    #[test]
    fn chat_body_matches_serde() {
        let env = Envelope {
            id: "chatcmpl-abc\"1",
            created: 1_715_367_049,
            model: "gpt-4o-mini",
            fingerprint: "fp_0123456789",
        };
        let cases = [
            vec![choice("Hello there.", FinishReason::Stop)],
            vec![
                choice("", FinishReason::Length),
                choice(
                    "quote \" back\\slash \n tab\t \u{1} é ✓ 😀",
                    FinishReason::Stop,
                ),
                choice(" The rate limit", FinishReason::Length),
            ],
            vec![],
        ];
        for choices in &cases {
            for usage in [Usage::new(12, 34, true), Usage::new(0, u32::MAX, false)] {
                assert_eq!(
                    String::from_utf8(chat(&env, choices, usage)).unwrap(),
                    String::from_utf8(serde_chat(&env, choices, usage)).unwrap()
                );
            }
        }
    }
}
