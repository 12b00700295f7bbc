//! Connectors: the hub specification's [`LLMProvider`] contract and its real
//! implementations, [`OpenAIConnector`] (OpenAI and any OpenAI-compatible server),
//! [`AzureConnector`] (Azure OpenAI deployments) and [`AnthropicConnector`] (the Anthropic
//! Messages API, all of it in the [`anthropic`] folder).
//!
//! This is the only part of the crate that knows provider wire formats. It hands the rest
//! of the crate neutral values: [`CompletionResponse`] / [`StreamChunk`] with exact
//! [`Usage`], a classified [`ConnectorError`] with `is_retryable()` and a limiter-facing
//! [`ErrorInfo`](crate::limiter::ErrorInfo), and — for every response, success or error —
//! the [`ResponseMeta`] the configured header profile read, which the limiter's
//! `record_usage` needs.
//!
//! Layout: [`types`] (neutral types), [`error`] (the error classes), [`config`]
//! (configuration), `wire` (the OpenAI JSON format), `error_map` (status/body → class),
//! [`sse`] (incremental event parsing), `stream` (bytes → chunk stream), `http` (the shared
//! transport), [`metadata`] (cache and model catalog), [`openai`], [`azure`].

use std::fmt;

use async_trait::async_trait;
use reqwest::RequestBuilder;

use crate::limiter::ResponseMeta;

pub mod admission;
pub mod anthropic;
pub mod azure;
pub mod config;
pub mod error;
mod error_map;
pub mod headers;
mod http;
pub mod metadata;
pub mod openai;
pub mod sse;
mod stream;
pub mod types;
mod wire;

pub use anthropic::{AnthropicConfig, AnthropicConnector};
pub use azure::AzureConnector;
pub use config::{
    ApiKey, AzureAuth, AzureConfig, ConfigError, OpenAiConfig, ProviderConfig, REDACTED,
};
pub use error::{ConnectorError, RateLimitDimension};
pub(crate) use error_map::{
    from_response as error_from_response, from_transport as error_from_transport,
};
pub use http::{default_client, HEALTH_TIMEOUT};
pub use openai::OpenAIConnector;
pub use stream::ChunkStream;
pub use types::{
    Choice, CompletionRequest, CompletionResponse, FinishReason, HealthStatus, Message, ModelInfo,
    Pricing, ProviderMetadata, RateLimits, Role, StreamChunk, Usage,
};

/// A client of one LLM provider (the hub specification's core trait). Object-safe:
/// callers hold `Arc<dyn LLMProvider>`. All methods are cancellation-safe: dropping a
/// future aborts the HTTP request and leaves no state behind.
#[async_trait]
pub trait LLMProvider: Send + Sync + fmt::Debug {
    /// The provider's id, lowercase, constant for the object's lifetime (`"openai"`,
    /// `"azure"`, or the configured id of a compatible server).
    fn provider_id(&self) -> &str;

    /// How the provider charges a request against its token quota at admission — the
    /// estimate the request lifecycle acquires. Default: OpenAI's rule.
    fn admission_rule(&self) -> admission::AdmissionRule {
        admission::AdmissionRule::OPENAI
    }

    /// A cap on retries after the first try for requests to this provider (its config's
    /// `max_retries`), applied by the request lifecycle on top of the limiter's backoff
    /// policy; `None` = no cap of its own.
    fn max_retries(&self) -> Option<u32> {
        None
    }

    /// Sends `request` as one non-streaming completion, within the configured timeout. The
    /// response's `meta` carries the header view for `record_usage`; errors carry theirs in
    /// [`ConnectorError::meta`].
    async fn send_completion(
        &self,
        request: CompletionRequest,
    ) -> Result<CompletionResponse, ConnectorError>;

    /// Sends `request` as a streaming completion and returns, once the response headers
    /// arrived (within the timeout), their [`ResponseMeta`] and the stream of chunks. The
    /// stream's last item is the usage chunk when the connector requested it; a stream that
    /// breaks or ends early yields a [`ConnectorError::Stream`] last.
    async fn open_stream(
        &self,
        request: CompletionRequest,
    ) -> Result<(ResponseMeta, ChunkStream), ConnectorError>;

    /// [`open_stream`](Self::open_stream) without the response meta (the hub
    /// specification's signature).
    async fn stream_completion(
        &self,
        request: CompletionRequest,
    ) -> Result<ChunkStream, ConnectorError> {
        Ok(self.open_stream(request).await?.1)
    }

    /// Models, prices, limits and API version; cached for an hour of the connector's clock.
    async fn get_metadata(&self) -> Result<ProviderMetadata, ConnectorError>;

    /// Checks that `config` is for this provider and valid (never judging a key's prefix).
    fn validate_config(&self, config: &dyn ProviderConfig) -> Result<(), ConfigError>;

    /// Probes the provider's model list within [`HEALTH_TIMEOUT`] (5 s): `Healthy` on
    /// success, `Degraded` on 429 or 5xx, `Unhealthy` on anything else (unreachable,
    /// timeout, bad credentials). These connectors always return `Ok`.
    async fn health_check(&self) -> Result<HealthStatus, ConnectorError>;
}

/// [`LLMProvider::validate_config`] for a connector whose id is `own_id`.
fn check_config(own_id: &str, config: &dyn ProviderConfig) -> Result<(), ConfigError> {
    if config.provider_id() != own_id {
        return Err(ConfigError::ProviderMismatch {
            expected: own_id.to_owned(),
            found: config.provider_id().to_owned(),
        });
    }
    config.validate()
}

/// Runs a health probe: `request` within `min(timeout, HEALTH_TIMEOUT)`.
async fn probe(
    transport: &http::Transport,
    request: RequestBuilder,
    timeout: std::time::Duration,
) -> HealthStatus {
    match transport.send(request, timeout.min(HEALTH_TIMEOUT)).await {
        Ok(_) => HealthStatus::Healthy,
        Err(e) if e.status().is_some_and(|s| s == 429 || s >= 500) => HealthStatus::Degraded {
            reason: e.to_string(),
        },
        Err(e) => HealthStatus::Unhealthy {
            reason: e.to_string(),
        },
    }
}
