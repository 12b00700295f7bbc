//! A scripted in-process provider for the middleware unit tests (the integration tests in
//! `tests/` use the real mock over HTTP).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{self, StreamExt};
use parking_lot::Mutex;

use crate::clock::ManualClock;
use crate::limiter::ResponseMeta;
use crate::provider::{
    Choice, ChunkStream, CompletionRequest, CompletionResponse, ConfigError, ConnectorError,
    HealthStatus, LLMProvider, Message, ProviderConfig, ProviderMetadata, RateLimits, StreamChunk,
    Usage,
};

/// What the provider does on its next call.
#[derive(Debug, Clone)]
pub(crate) enum ScriptedStep {
    /// Fail with this error (a call or a stream open).
    Fail(ConnectorError),
    /// Answer "ok" with `usage`, after advancing the clock by `delay`.
    Answer { usage: Usage, delay: Duration },
    /// Open a stream yielding these items.
    Stream(Vec<Result<StreamChunk, ConnectorError>>),
}

/// Plays its steps in order, one per call; records the credential of each call.
#[derive(Debug)]
pub(crate) struct Scripted {
    id: String,
    steps: Mutex<VecDeque<ScriptedStep>>,
    credentials: Mutex<Vec<String>>,
    clock: Arc<ManualClock>,
}

impl Scripted {
    pub fn new(id: &str, steps: Vec<ScriptedStep>, clock: Arc<ManualClock>) -> Self {
        Self {
            id: id.to_owned(),
            steps: Mutex::new(steps.into()),
            credentials: Mutex::new(Vec::new()),
            clock,
        }
    }

    /// The credential each call carried (`""` = none), in call order.
    pub fn credentials(&self) -> Vec<String> {
        self.credentials.lock().clone()
    }

    /// Calls made.
    pub fn calls(&self) -> usize {
        self.credentials.lock().len()
    }

    fn next(&self, request: &CompletionRequest) -> ScriptedStep {
        self.credentials.lock().push(
            request
                .credential
                .as_ref()
                .map_or_else(String::new, |k| k.expose().to_owned()),
        );
        self.steps
            .lock()
            .pop_front()
            .unwrap_or(ScriptedStep::Fail(ConnectorError::Network {
                message: "script exhausted".into(),
            }))
    }
}

#[async_trait]
impl LLMProvider for Scripted {
    fn provider_id(&self) -> &str {
        &self.id
    }

    async fn send_completion(
        &self,
        request: CompletionRequest,
    ) -> Result<CompletionResponse, ConnectorError> {
        match self.next(&request) {
            ScriptedStep::Fail(e) => Err(e),
            ScriptedStep::Answer { usage, delay } => {
                self.clock.advance(delay);
                Ok(CompletionResponse {
                    id: "chatcmpl-1".into(),
                    model: request.model,
                    choices: vec![Choice {
                        index: 0,
                        message: Message::assistant("ok"),
                        finish_reason: None,
                    }],
                    finish_reason: None,
                    usage,
                    meta: ResponseMeta::default(),
                })
            }
            ScriptedStep::Stream(_) => Err(ConnectorError::Network {
                message: "a stream step for a plain call".into(),
            }),
        }
    }

    async fn open_stream(
        &self,
        request: CompletionRequest,
    ) -> Result<(ResponseMeta, ChunkStream), ConnectorError> {
        match self.next(&request) {
            ScriptedStep::Fail(e) => Err(e),
            ScriptedStep::Stream(items) => {
                Ok((ResponseMeta::default(), stream::iter(items).boxed()))
            }
            ScriptedStep::Answer { .. } => Err(ConnectorError::Network {
                message: "a plain step for a stream".into(),
            }),
        }
    }

    async fn get_metadata(&self) -> Result<ProviderMetadata, ConnectorError> {
        Ok(ProviderMetadata {
            provider_id: self.id.clone(),
            api_version: "v1".into(),
            models: Vec::new(),
            rate_limits: RateLimits::default(),
        })
    }

    fn validate_config(&self, _config: &dyn ProviderConfig) -> Result<(), ConfigError> {
        Ok(())
    }

    async fn health_check(&self) -> Result<HealthStatus, ConnectorError> {
        Ok(HealthStatus::Healthy)
    }
}
