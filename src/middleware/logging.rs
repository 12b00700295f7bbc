//! [`LoggingMiddleware`]: one structured `tracing` event per provider attempt, keyed by a
//! request id, so a call can be followed through retries and fallbacks.
//!
//! Fields: `request_id`, `provider`, `model`, `attempt` (0 = first try of this provider),
//! `latency_ms` (this attempt, on the injected clock), `tokens_in` / `tokens_out`,
//! `outcome` (`success`, `cache_hit`, `error`, `cancelled`) and, for errors, `error_class`
//! ([`ConnectorError::error_type`]) and `status`. Prompts, response text, provider error
//! messages (they can quote the key or the prompt) and credentials are never logged.
//!
//! Levels: `debug` when an attempt starts and at a stream's first token, `info` when it
//! succeeds, `warn` when it fails.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::cache::CACHE_STATUS;
use super::{ErrorAction, Middleware, MiddlewareContext, MiddlewareError, StreamEnd};
use crate::clock::{Clock, Nanos};
use crate::provider::{CompletionRequest, CompletionResponse, ConnectorError};

/// Metadata key of the call's request id (kept when a caller already set one).
pub const REQUEST_ID: &str = "request_id";

/// Context value: when this attempt's `on_request` ran.
struct Started(Nanos);

/// Logs each attempt with `tracing`; see the module docs for the fields.
#[derive(Debug, Clone)]
pub struct LoggingMiddleware {
    clock: Arc<dyn Clock>,
}

impl LoggingMiddleware {
    /// Times attempts with `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self { clock }
    }

    /// Milliseconds since this attempt's `on_request`.
    fn latency_ms(&self, ctx: &MiddlewareContext) -> u64 {
        let start = ctx
            .extensions
            .get::<Started>()
            .map_or(ctx.started_at, |s| s.0);
        let d = Duration::from_nanos(self.clock.now().saturating_sub(start));
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
    }
}

/// The request id, model and attempt every event carries.
fn ids(ctx: &MiddlewareContext) -> (&str, &str, &str, u32) {
    let id = ctx.metadata.get(REQUEST_ID).map_or("", String::as_str);
    let model = ctx.model.as_str();
    (id, ctx.provider_id.as_str(), model, ctx.attempt)
}

#[async_trait]
impl Middleware for LoggingMiddleware {
    fn name(&self) -> &str {
        "logging"
    }

    async fn on_request(
        &self,
        request: &mut CompletionRequest,
        ctx: &mut MiddlewareContext,
    ) -> Result<(), MiddlewareError> {
        ctx.metadata
            .entry(REQUEST_ID.to_owned())
            .or_insert_with(|| format!("req_{:016x}", rand::random::<u64>()));
        ctx.extensions.insert(Started(self.clock.now()));
        let (request_id, provider, model, attempt) = ids(ctx);
        tracing::debug!(
            request_id,
            provider,
            model,
            attempt,
            stream = request.stream,
            messages = request.messages.len(),
            max_tokens = request.max_tokens,
            "llm request started"
        );
        Ok(())
    }

    async fn on_response(
        &self,
        response: &mut CompletionResponse,
        ctx: &mut MiddlewareContext,
    ) -> Result<(), MiddlewareError> {
        let hit = ctx.metadata.get(CACHE_STATUS).map(String::as_str) == Some("hit");
        let latency_ms = self.latency_ms(ctx);
        let (request_id, provider, model, attempt) = ids(ctx);
        tracing::info!(
            request_id,
            provider,
            model,
            attempt,
            latency_ms,
            tokens_in = response.usage.input_tokens,
            tokens_out = response.usage.output_tokens,
            finish_reason = response.finish_reason.as_ref().map(|f| f.as_str()),
            outcome = if hit { "cache_hit" } else { "success" },
            "llm request finished"
        );
        Ok(())
    }

    async fn on_error(
        &self,
        error: &ConnectorError,
        ctx: &mut MiddlewareContext,
    ) -> Result<ErrorAction, MiddlewareError> {
        let latency_ms = self.latency_ms(ctx);
        let (request_id, provider, model, attempt) = ids(ctx);
        tracing::warn!(
            request_id,
            provider,
            model,
            attempt,
            latency_ms,
            outcome = "error",
            error_class = error.error_type(),
            status = error.status(),
            retryable = error.is_retryable(),
            "llm request failed"
        );
        Ok(ErrorAction::Propagate)
    }

    async fn on_first_token(&self, ctx: &mut MiddlewareContext) {
        let ttft_ms = self.latency_ms(ctx);
        let (request_id, provider, model, attempt) = ids(ctx);
        tracing::debug!(
            request_id,
            provider,
            model,
            attempt,
            ttft_ms,
            "llm stream first token"
        );
    }

    async fn on_stream_end(
        &self,
        end: &StreamEnd,
        ctx: &mut MiddlewareContext,
    ) -> Result<(), MiddlewareError> {
        let latency_ms = self.latency_ms(ctx);
        let (request_id, provider, model, attempt) = ids(ctx);
        let (tokens_in, tokens_out) = (end.usage.input_tokens, end.usage.output_tokens);
        match &end.error {
            Some(e) => tracing::warn!(
                request_id,
                provider,
                model,
                attempt,
                latency_ms,
                tokens_in,
                tokens_out,
                usage_reported = end.usage_reported,
                outcome = "error",
                error_class = e.error_type(),
                "llm stream broke"
            ),
            None => tracing::info!(
                request_id,
                provider,
                model,
                attempt,
                latency_ms,
                tokens_in,
                tokens_out,
                usage_reported = end.usage_reported,
                chunks = end.chunks,
                outcome = if end.cancelled {
                    "cancelled"
                } else {
                    "success"
                },
                "llm stream finished"
            ),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use parking_lot::Mutex;
    use tracing_subscriber::fmt::MakeWriter;

    use super::*;
    use crate::clock::ManualClock;
    use crate::middleware::tests_support::{Scripted, ScriptedStep};
    use crate::middleware::{AuthMiddleware, Pipeline, ProviderSet, StaticCredentials};
    use crate::provider::{LLMProvider, Message, Usage};

    /// A `MakeWriter` appending everything to one shared buffer.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Buffer {
            self.clone()
        }
    }

    const PROMPT: &str = "the secret launch code is swordfish";
    const KEY: &str = "sk-very-secret-key-0042";

    #[tokio::test]
    async fn events_carry_ids_latency_tokens_and_outcome_but_never_prompt_or_key() {
        let buf = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(buf.clone())
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        let clock = Arc::new(ManualClock::new(0));
        let provider = Arc::new(Scripted::new(
            "p",
            vec![
                ScriptedStep::Fail(ConnectorError::Network {
                    message: "reset".into(),
                }),
                ScriptedStep::Answer {
                    usage: Usage {
                        input_tokens: 11,
                        output_tokens: 7,
                    },
                    delay: Duration::from_millis(250),
                },
            ],
            clock.clone(),
        ));
        let set: ProviderSet = [("p".to_owned(), provider.clone() as Arc<dyn LLMProvider>)]
            .into_iter()
            .collect();
        #[derive(Debug)]
        struct RetryOnce;
        #[async_trait]
        impl Middleware for RetryOnce {
            fn name(&self) -> &str {
                "retry_once"
            }
            async fn on_error(
                &self,
                _e: &ConnectorError,
                ctx: &mut MiddlewareContext,
            ) -> Result<ErrorAction, MiddlewareError> {
                Ok(if ctx.attempt == 0 {
                    ErrorAction::Retry
                } else {
                    ErrorAction::Propagate
                })
            }
        }
        let pipe = Pipeline::new(clock.clone())
            .with(Arc::new(RetryOnce))
            .with(Arc::new(AuthMiddleware::new(Arc::new(
                StaticCredentials::new([("p", KEY)]),
            ))))
            .with(Arc::new(LoggingMiddleware::new(clock.clone())));
        let mut ctx = MiddlewareContext::new("p", 0);
        let request = CompletionRequest::new("gpt-4o-mini", vec![Message::user(PROMPT)]);
        pipe.execute_with(&set, request, &mut ctx)
            .await
            .expect("the retry succeeds");
        assert_eq!(
            provider.credentials(),
            [KEY, KEY],
            "the key reached the provider"
        );

        let out = String::from_utf8(buf.0.lock().clone()).expect("utf-8");
        let id = ctx.metadata.get(REQUEST_ID).expect("a request id");
        assert!(id.starts_with("req_") && id.len() == 20, "{id}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4, "{out}");
        for line in &lines {
            assert!(line.contains(&format!("request_id=\"{id}\"")), "{line}");
            assert!(line.contains("provider=\"p\""), "{line}");
            assert!(line.contains("model=\"gpt-4o-mini\""), "{line}");
        }
        assert!(
            lines[0].contains("DEBUG") && lines[0].contains("attempt=0"),
            "{out}"
        );
        assert!(lines[1].contains("WARN"), "{out}");
        assert!(lines[1].contains("outcome=\"error\""), "{out}");
        assert!(lines[1].contains("error_class=\"network\""), "{out}");
        assert!(lines[2].contains("attempt=1"), "{out}");
        let done = lines[3];
        assert!(
            done.contains("INFO") && done.contains("attempt=1"),
            "{done}"
        );
        assert!(done.contains("latency_ms=250"), "{done}");
        assert!(
            done.contains("tokens_in=11") && done.contains("tokens_out=7"),
            "{done}"
        );
        assert!(done.contains("outcome=\"success\""), "{done}");
        assert!(!out.contains("swordfish"), "prompt leaked: {out}");
        assert!(
            !out.contains(KEY) && !out.contains("0042"),
            "key leaked: {out}"
        );
    }
}
