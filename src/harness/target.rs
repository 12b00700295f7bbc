//! What a live run sends to: an embedded mock server configured from the scenario (quota,
//! latency, output lengths, seed), or a real OpenAI-compatible / Azure endpoint by URL.

use std::sync::Arc;

use mock_providers::config::{DeploymentConfig, ModelConfig};
use mock_providers::generation::tokenizer::Encoding;
use mock_providers::generation::{LatencyConfig, OutputTokens};
use mock_providers::provider::anthropic::AnthropicModelConfig;
use mock_providers::{MockConfig, MockServer};

use crate::clock::SystemClock;
use crate::plugin::{Endpoint, EndpointUrl};
use crate::provider::LLMProvider;

use super::scenario::{ProviderKind, Scenario, Target, TokenDist};
use super::workload::lognormal_median_sigma;

/// The target could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The embedded mock server did not start.
    #[error("cannot start the embedded mock server: {0}")]
    Mock(String),
    /// The connector configuration was rejected.
    #[error("provider configuration: {0}")]
    Config(#[from] crate::provider::ConfigError),
    /// A URL target without its key.
    #[error("environment variable `{0}` (api_key_env) is not set")]
    MissingKey(String),
    /// A URL target without a URL.
    #[error("provider.target = \"url\" needs provider.url")]
    MissingUrl,
}

/// A running target and the connector that talks to it.
#[derive(Debug)]
pub struct LiveTarget {
    /// The connector every request goes through.
    pub provider: Arc<dyn LLMProvider>,
    mock: Option<mock_providers::MockHandle>,
}

impl LiveTarget {
    /// Starts the scenario's target: a fresh mock (reset quota) or a connector to the URL.
    pub async fn start(s: &Scenario) -> Result<Self, TargetError> {
        let plugin = s.provider.kind.plugin();
        let (url, key, mock) = match s.provider.target {
            Target::Mock => {
                let handle = MockServer::start(mock_config(s))
                    .await
                    .map_err(|e| TargetError::Mock(e.to_string()))?;
                let root = EndpointUrl::Root(handle.base_url());
                (root, "mock-key".to_owned(), Some(handle))
            }
            Target::Url => {
                let url = s.provider.url.clone().ok_or(TargetError::MissingUrl)?;
                let var = s
                    .provider
                    .api_key_env
                    .clone()
                    .unwrap_or_else(|| plugin.api_key_env().to_owned());
                let key = std::env::var(&var).map_err(|_| TargetError::MissingKey(var))?;
                (EndpointUrl::Given(url), key, None)
            }
        };
        let endpoint = Endpoint {
            url,
            api_key: key,
            model: s.provider.model.clone(),
            deployment: s.provider.deployment.clone(),
            api_version: s.provider.api_version.clone(),
            max_retries: s.retry.max_retries,
        };
        let provider = plugin.connect(&endpoint, Arc::new(SystemClock::new()))?;
        Ok(Self { provider, mock })
    }

    /// Stops the mock server, if any.
    pub async fn shutdown(self) {
        if let Some(m) = self.mock {
            m.shutdown().await;
        }
    }
}

/// The tokenizer a model name implies (o200k for the gpt-4o / o-series families).
pub fn encoding_for(model: &str) -> Encoding {
    if model.starts_with("gpt-4o")
        || model.starts_with("o1")
        || model.starts_with("o3")
        || model.starts_with("gpt-4.1")
        || model.starts_with("gpt-5")
    {
        Encoding::O200kBase
    } else {
        Encoding::Cl100kBase
    }
}

/// The mock's output-length distribution for the scenario's `output_tokens` (a normal is
/// approximated by the log-normal with the same mean and deviation; the mock has no normal).
pub fn output_tokens(d: &TokenDist) -> OutputTokens {
    let cap = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    match *d {
        TokenDist::Constant { value } => OutputTokens::Fixed { tokens: cap(value) },
        TokenDist::Uniform { min, max } => OutputTokens::Uniform {
            min: cap(min),
            max: cap(max),
        },
        TokenDist::Normal {
            mean, stdev, max, ..
        }
        | TokenDist::LogNormal {
            mean, stdev, max, ..
        } => {
            let (median, sigma) = lognormal_median_sigma(mean, stdev);
            OutputTokens::LogNormal {
                median: cap(median.round().max(1.0) as u64),
                sigma,
                max: cap(max.unwrap_or(u64::from(u32::MAX))),
            }
        }
    }
}

/// The embedded mock's configuration for a scenario: one model (OpenAI, Anthropic) or
/// deployment (Azure) with the scenario's quota, latency model, output lengths and seed.
pub fn mock_config(s: &Scenario) -> MockConfig {
    let mut cfg = MockConfig {
        seed: s.seed,
        output_tokens: output_tokens(&s.workload.output_tokens),
        latency: match &s.provider.latency {
            Some(l) => LatencyConfig {
                zero: false,
                ttft_median: l.ttft_median,
                ttft_p99: l.ttft_p99,
                per_token: l.per_token,
                ..LatencyConfig::default()
            },
            None => LatencyConfig::zero_latency(),
        },
        ..MockConfig::default()
    };
    let quota = s.provider.quota.as_ref();
    let (rpm, tpm, window) = (
        quota.and_then(|q| q.rpm),
        quota.and_then(|q| q.tpm),
        quota.and_then(|q| q.rpm_window),
    );
    let model = s.provider.model.clone();
    let base = ModelConfig::default();
    // Only the scenario's model (and deployment) exist, so a typo shows as a 404.
    cfg.models = vec![ModelConfig::chat(
        &model,
        encoding_for(&model),
        rpm.unwrap_or(base.rpm),
        tpm.unwrap_or(base.tpm),
    )];
    cfg.deployments = Vec::new();
    match s.provider.kind {
        ProviderKind::Openai => {}
        ProviderKind::Anthropic => {
            let base = AnthropicModelConfig::default();
            let mut m = AnthropicModelConfig::with_limits(
                &model,
                rpm.unwrap_or(base.rpm),
                quota.and_then(|q| q.itpm).unwrap_or(base.itpm),
                quota.and_then(|q| q.otpm).unwrap_or(base.otpm),
            );
            m.encoding = encoding_for(&model);
            cfg.anthropic.models = vec![m];
            cfg.anthropic.rpm_interval = window;
        }
        ProviderKind::Azure => {
            let base = DeploymentConfig::default();
            cfg.deployments = vec![DeploymentConfig {
                name: s
                    .provider
                    .deployment
                    .clone()
                    .unwrap_or_else(|| model.clone()),
                model,
                tpm: tpm.unwrap_or(base.tpm),
                rpm,
                rpm_window: window.unwrap_or(base.rpm_window),
                ..base
            }];
        }
    }
    cfg
}
