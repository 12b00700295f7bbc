//! Counting the HTTP attempts of each batch request inside the Hub: the Hub's lifecycle
//! (limiter, retries, fallback) stays the Hub's own, and each connector it builds is
//! wrapped so that every attempt adds one to the counter of the request being run (a
//! tokio task-local set around the call).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use async_trait::async_trait;

use crate::clock::Clock;
use crate::limiter::ResponseMeta;
use crate::plugin::{ConnectorPlugin, PluginRegistry};
use crate::provider::{
    admission::AdmissionRule, ChunkStream, CompletionRequest, CompletionResponse, ConfigError,
    ConnectorError, HealthStatus, LLMProvider, ProviderConfig, ProviderMetadata,
};

tokio::task_local! {
    /// The attempt counter of the request the current task runs.
    pub static ATTEMPTS: Arc<AtomicU32>;
}

fn count() {
    let _ = ATTEMPTS.try_with(|n| n.fetch_add(1, Ordering::Relaxed));
}

/// `registry` with every plugin's providers wrapped to count attempts.
pub fn counting(registry: &PluginRegistry, names: &[String]) -> PluginRegistry {
    let mut out = registry.clone();
    for name in names {
        out.register(Arc::new(CountingPlugin {
            name: name.clone(),
            inner: registry.clone(),
        }));
    }
    out
}

#[derive(Debug)]
struct CountingPlugin {
    name: String,
    inner: PluginRegistry,
}

impl ConnectorPlugin for CountingPlugin {
    fn name(&self) -> &str {
        &self.name
    }

    fn create(
        &self,
        config: &HashMap<String, String>,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<dyn LLMProvider>, ConfigError> {
        let inner = self
            .inner
            .create(&self.name, config, clock)
            .map_err(|e| match e {
                crate::plugin::PluginError::Config { source, .. } => source,
                // Only registered names are wrapped, so the inner plugin exists.
                other => ConfigError::InvalidParameter {
                    name: "kind",
                    reason: other.to_string(),
                },
            })?;
        Ok(Arc::new(Counting { inner }))
    }
}

/// A provider that counts each attempt, then delegates.
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn LLMProvider>,
}

#[async_trait]
impl LLMProvider for Counting {
    fn provider_id(&self) -> &str {
        self.inner.provider_id()
    }

    fn admission_rule(&self) -> AdmissionRule {
        self.inner.admission_rule()
    }

    fn max_retries(&self) -> Option<u32> {
        self.inner.max_retries()
    }

    async fn send_completion(
        &self,
        request: CompletionRequest,
    ) -> Result<CompletionResponse, ConnectorError> {
        count();
        self.inner.send_completion(request).await
    }

    async fn open_stream(
        &self,
        request: CompletionRequest,
    ) -> Result<(ResponseMeta, ChunkStream), ConnectorError> {
        count();
        self.inner.open_stream(request).await
    }

    async fn get_metadata(&self) -> Result<ProviderMetadata, ConnectorError> {
        self.inner.get_metadata().await
    }

    fn validate_config(&self, config: &dyn ProviderConfig) -> Result<(), ConfigError> {
        self.inner.validate_config(config)
    }

    async fn health_check(&self) -> Result<HealthStatus, ConnectorError> {
        self.inner.health_check().await
    }
}
