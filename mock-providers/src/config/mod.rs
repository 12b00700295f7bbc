//! The mock's configuration: one TOML file, or plain structs built in code.
//!
//! Every struct has public fields, a `Default` and `deny_unknown_fields`, so the hub's
//! harness can build a config from a scenario without a builder, and a typo in a file is an
//! error naming its line and field ([`MockConfig::from_toml_str`]). A table left out of a
//! file takes its default; a list given in a file (`[[models]]`, `[[deployments]]`,
//! `[[organizations]]`) replaces the default list as a whole.

mod load;

use std::time::Duration;

use serde::Deserialize;

pub use load::ConfigError;

use crate::generation::tokenizer::Encoding;
use crate::generation::{LatencyConfig, OutputTokens};
use crate::provider::anthropic::AnthropicConfig;
use crate::quota::{AzureLimits, OpenAiLimits, Replenish};
use crate::units::de_duration;

/// Everything the mock serves and how.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MockConfig {
    /// Seed of every random draw (text, lengths, latencies, faults); a run with the same
    /// seed and the same request sequence answers the same.
    pub seed: u64,
    /// Request bodies larger than this many bytes get 413.
    pub max_body_bytes: usize,
    /// The Azure region reported in `x-ms-region`.
    pub region: String,
    /// The latency model; zero-latency mode by default.
    pub latency: LatencyConfig,
    /// The distribution of a completion's natural length, in tokens.
    pub output_tokens: OutputTokens,
    /// Which response headers are sent.
    pub headers: HeaderSwitches,
    /// OpenAI organizations and their API keys.
    pub organizations: Vec<OrganizationConfig>,
    /// OpenAI models: encoding, kind, quotas, faults. Azure deployments refer to them.
    pub models: Vec<ModelConfig>,
    /// Azure deployments: quotas and faults.
    pub deployments: Vec<DeploymentConfig>,
    /// Keys accepted by the Azure routes (`api-key` or `Authorization: Bearer`); empty =
    /// any non-empty key.
    pub azure_keys: Vec<String>,
    /// The Anthropic Messages API mock (`[anthropic]`, models in `[[anthropic.models]]`).
    pub anthropic: AnthropicConfig,
}

impl Default for MockConfig {
    /// Starts and serves with no file: organization `org-mock` accepting any non-empty key;
    /// models gpt-4o-mini and gpt-4o (o200k_base), gpt-3.5-turbo and gpt-4 (cl100k_base),
    /// text-embedding-3-small; Azure deployments `gpt-4o-mini` and `text-embedding-3-small`;
    /// Anthropic's [`AnthropicConfig::default`]; generous quotas; zero-latency mode; seed 0;
    /// bodies up to 8 MiB.
    fn default() -> Self {
        Self {
            seed: 0,
            max_body_bytes: 8 * 1024 * 1024,
            region: "eastus".to_owned(),
            latency: LatencyConfig::zero_latency(),
            output_tokens: OutputTokens::default(),
            headers: HeaderSwitches::default(),
            organizations: vec![OrganizationConfig::default()],
            models: vec![
                ModelConfig::chat("gpt-4o-mini", Encoding::O200kBase, 30_000, 150_000_000),
                ModelConfig::chat("gpt-4o", Encoding::O200kBase, 10_000, 30_000_000),
                ModelConfig::chat("gpt-3.5-turbo", Encoding::Cl100kBase, 10_000, 50_000_000),
                ModelConfig::chat("gpt-4", Encoding::Cl100kBase, 10_000, 1_000_000),
                ModelConfig::embedding("text-embedding-3-small", 10_000, 10_000_000),
            ],
            deployments: vec![
                DeploymentConfig::new("gpt-4o-mini", "gpt-4o-mini", 1_000_000),
                DeploymentConfig::new(
                    "text-embedding-3-small",
                    "text-embedding-3-small",
                    1_000_000,
                ),
            ],
            azure_keys: Vec::new(),
            anthropic: AnthropicConfig::default(),
        }
    }
}

/// Switches for the response headers a client may or may not get (to test clients that
/// lack one, e.g. `retry-after-ms`). All on by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeaderSwitches {
    /// `x-ratelimit-limit-*`, `x-ratelimit-remaining-*`, `x-ratelimit-reset-*`.
    pub rate_limit: bool,
    /// `retry-after` (whole seconds, rounded up) on 429.
    pub retry_after: bool,
    /// `retry-after-ms` (milliseconds, rounded up) on 429.
    pub retry_after_ms: bool,
    /// `x-request-id` (and Azure's `apim-request-id`).
    pub request_id: bool,
    /// `openai-processing-ms`, `openai-organization`, `openai-version` (OpenAI routes).
    pub openai_meta: bool,
    /// `x-ms-region` (Azure routes).
    pub region: bool,
    /// `x-rate-limit-reset-tokens` on Azure 429s (seconds until the token count resets).
    pub azure_reset_tokens: bool,
    /// `policy-id: DeploymentRatelimit-Token|DeploymentRatelimit-Call` on Azure 429s.
    pub policy_id: bool,
}

impl Default for HeaderSwitches {
    fn default() -> Self {
        Self {
            rate_limit: true,
            retry_after: true,
            retry_after_ms: true,
            request_id: true,
            openai_meta: true,
            region: true,
            azure_reset_tokens: true,
            policy_id: true,
        }
    }
}

/// An OpenAI organization: its quota state is kept per (organization, model).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrganizationConfig {
    /// The id in 429 messages and `openai-organization`, e.g. `org-mock`.
    pub id: String,
    /// Keys belonging to this organization. When no organization lists keys, any non-empty
    /// key is accepted and belongs to the first organization.
    pub keys: Vec<String>,
}

impl Default for OrganizationConfig {
    fn default() -> Self {
        Self {
            id: "org-mock".to_owned(),
            keys: Vec::new(),
        }
    }
}

/// What a model serves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// `/chat/completions` and `/completions`.
    #[default]
    Chat,
    /// `/embeddings`.
    Embedding,
}

/// An OpenAI model (also what an Azure deployment serves).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Model id, e.g. `gpt-4o-mini` (required).
    pub id: String,
    /// Tokenizer for `usage` counts.
    pub encoding: Encoding,
    /// Chat/completions or embeddings.
    pub kind: ModelKind,
    /// OpenAI requests per minute, per organization.
    pub rpm: u64,
    /// OpenAI tokens per minute, per organization, charged at the admission estimate.
    pub tpm: u64,
    /// How spent OpenAI quota comes back (continuous token bucket, or 60-s sliding window).
    pub replenish: Replenish,
    /// Tokens assumed for the admission estimate when a request gives neither `max_tokens`
    /// nor `max_completion_tokens` (OpenAI routes), and the generation cap then.
    pub default_max_tokens: u32,
    /// Embedding width when the request gives no `dimensions`.
    pub dimensions: usize,
    /// `owned_by` in `/v1/models`.
    pub owned_by: String,
    /// Faults injected on this model's OpenAI routes.
    pub faults: FaultConfig,
}

impl Default for ModelConfig {
    /// An unnamed o200k chat model with 10 000 RPM and 10 000 000 TPM (the id must be set).
    fn default() -> Self {
        Self {
            id: String::new(),
            encoding: Encoding::O200kBase,
            kind: ModelKind::Chat,
            rpm: 10_000,
            tpm: 10_000_000,
            replenish: Replenish::Continuous,
            default_max_tokens: 1024,
            dimensions: 1536,
            owned_by: "system".to_owned(),
            faults: FaultConfig::default(),
        }
    }
}

impl ModelConfig {
    /// A chat model with the given encoding, requests per minute and tokens per minute.
    pub fn chat(id: &str, encoding: Encoding, rpm: u64, tpm: u64) -> Self {
        Self {
            id: id.to_owned(),
            encoding,
            rpm,
            tpm,
            ..Self::default()
        }
    }

    /// A cl100k embedding model (1536 dimensions) with the given RPM and TPM.
    pub fn embedding(id: &str, rpm: u64, tpm: u64) -> Self {
        Self {
            id: id.to_owned(),
            encoding: Encoding::Cl100kBase,
            kind: ModelKind::Embedding,
            rpm,
            tpm,
            ..Self::default()
        }
    }

    /// The quota limits of one (organization, this model).
    pub fn limits(&self) -> OpenAiLimits {
        OpenAiLimits {
            rpm: self.rpm,
            tpm: self.tpm,
            replenish: self.replenish,
        }
    }
}

/// An Azure OpenAI deployment.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeploymentConfig {
    /// Deployment name in the URL (required).
    pub name: String,
    /// The model it serves: an id from `models` (encoding, kind, response `model`).
    pub model: String,
    /// Tokens per minute, charged at the admission estimate (`max_tokens` or 16).
    pub tpm: u64,
    /// Requests per minute; absent = 6 per 1000 TPM.
    pub rpm: Option<u64>,
    /// The short window RPM is enforced over: `10s` (default) or `1s`.
    #[serde(deserialize_with = "de_duration")]
    pub rpm_window: Duration,
    /// Faults injected on this deployment.
    pub faults: FaultConfig,
}

impl Default for DeploymentConfig {
    /// An unnamed deployment of gpt-4o-mini with 100 000 TPM over 10-s request windows.
    fn default() -> Self {
        Self {
            name: String::new(),
            model: "gpt-4o-mini".to_owned(),
            tpm: 100_000,
            rpm: None,
            rpm_window: Duration::from_secs(10),
            faults: FaultConfig::default(),
        }
    }
}

impl DeploymentConfig {
    /// A deployment `name` serving `model` with `tpm` tokens per minute (RPM from TPM).
    pub fn new(name: &str, model: &str, tpm: u64) -> Self {
        Self {
            name: name.to_owned(),
            model: model.to_owned(),
            tpm,
            ..Self::default()
        }
    }

    /// The deployment's quota limits.
    pub fn limits(&self) -> AzureLimits {
        let from_tpm = AzureLimits::from_tpm(self.tpm, self.rpm_window);
        AzureLimits {
            rpm: self.rpm.unwrap_or(from_tpm.rpm),
            ..from_tpm
        }
    }
}

/// Faults injected into admitted requests (after the quota charged them). Probabilities are
/// per request, in `0.0..=1.0`, drawn from the seeded generator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultConfig {
    /// Probability of OpenAI's 429 `insufficient_quota` (billing quota used up), checked
    /// before the rate limits and not charged to them; it carries no retry advice
    /// (`retry-after`, `retry-after-ms`, `x-should-retry`) since waiting does not help.
    pub insufficient_quota: f64,
    /// Probability of a 500 with the provider's `server_error` body.
    pub error_500: f64,
    /// Probability of a 503 with the provider's overloaded body.
    pub error_503: f64,
    /// Probability that a streamed response's connection is dropped mid-stream (after
    /// about half its chunks, with no `[DONE]`).
    pub drop_mid_stream: f64,
    /// Probability of a stall before the first byte of the response.
    pub stall: f64,
    /// How long a stall lasts.
    #[serde(deserialize_with = "de_duration")]
    pub stall_for: Duration,
    /// When set, `x-should-retry: true|false` on every 429 and 5xx of this model or
    /// deployment (the official SDKs obey it over their own rules).
    pub should_retry: Option<bool>,
}
