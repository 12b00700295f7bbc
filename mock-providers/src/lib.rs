//! Mock OpenAI, Azure OpenAI and Anthropic servers that enforce quotas like the real services.
//!
//! Any OpenAI or Anthropic client (the hub's connectors, the official SDKs, curl) can point
//! at a [`MockServer`] unchanged. The Anthropic Messages API (`/v1/messages`, count_tokens,
//! the model list) lives whole in [`provider::anthropic`]; what follows describes the OpenAI
//! dialect. It answers chat completions (plain and SSE, with
//! `stream_options.include_usage`), legacy completions, embeddings (float or base64) and the
//! model list, on OpenAI's paths (`/v1/...`) and Azure's
//! (`/openai/deployments/{deployment}/...?api-version=...`), and throttles with the real
//! services' 429 bodies and headers computed from an exact quota engine. This crate depends
//! on nothing of the hub: it is an independent implementation of provider behaviour.
//!
//! # Parts
//! - [`quota`]: pure quota state machines (`now` passed in) the hub's simulator reuses.
//! - [`generation`]: seeded pure sampling of text, output length and latency.
//! - [`config`]: [`MockConfig`], one TOML file or plain structs.
//! - [`server`]: the axum routes ([`app`]); [`MockServer`] binds and serves them.
//! - [`provider`]: providers with their own dialect, one folder each (Anthropic).
//! - [`clock`]: the injected clock; only the server reads it.
//!
//! # Decisions (where the providers leave room)
//! - **Default config** (no file): organization `org-mock`; models gpt-4o-mini, gpt-4o
//!   (o200k_base), gpt-3.5-turbo, gpt-4 (cl100k_base), text-embedding-3-small; Azure
//!   deployments `gpt-4o-mini` and `text-embedding-3-small` (1 000 000 TPM each, so
//!   6 000 RPM, 1 000 per 10 s); OpenAI quotas 10 000–30 000 RPM; zero-latency mode.
//! - **Auth**: any non-empty key unless keys are configured (then only those); a missing
//!   key is 401. OpenAI keys map to organizations; `OpenAI-Organization` may pick one the
//!   key belongs to.
//! - **OpenAI admission estimate**: `ceil(prompt chars / 4) + max_tokens × n` (for
//!   `max_completion_tokens` likewise; when neither is given, the model's
//!   `default_max_tokens`, 1024 by default). Legacy completions multiply by the prompts too.
//!   Embeddings charge the prompt estimate only. Tokens are charged at the estimate and
//!   never reconciled with usage (`/_mock/stats` reports both).
//! - **OpenAI replenishment**: continuous (a token bucket per dimension, capacity = the
//!   per-minute limit, refilled at that limit per minute), which is what OpenAI's headers
//!   show ("Limit 3, Used 3 … try again in 20s"; reset `1s` after one request at 60 RPM). A
//!   full bucket plus a minute of refill admits up to twice the limit within one 60-s span;
//!   `replenish = "sliding"` gives a hard bound of the limit in every 60-s window instead.
//!   A request whose estimate exceeds the TPM is refused with "Request too large" (type
//!   `tokens`) and no `retry-after`, since waiting never helps.
//! - **Azure**: estimate `ceil(prompt chars / 4) + (max_tokens or 16) × n`; RPM = 6 per
//!   1000 TPM (or `rpm`), enforced as an exact sliding window of `rpm_window` (10 s, or 1 s)
//!   allowing `rpm × window / 60 s` requests (at least 1); the token count resets at every
//!   minute boundary of the clock's epoch. A request over the TPM is told to retry at the
//!   minute's reset.
//! - **Headers**: OpenAI sends the six `x-ratelimit-*` headers (resets as Go durations,
//!   rounded up to the millisecond), `x-request-id`, `openai-processing-ms` (the modelled
//!   latency), `openai-organization`, `openai-version`; Azure sends remaining requests and
//!   tokens, `x-request-id`, `apim-request-id`, `x-ms-region`, and on 429 `retry-after`,
//!   `retry-after-ms`, `x-rate-limit-reset-tokens`, `policy-id`. `retry-after` is whole
//!   seconds rounded up, `retry-after-ms` milliseconds rounded up, so a client that waits
//!   the advertised time is admitted. Each group is switchable ([`config::HeaderSwitches`]).
//! - **Generation**: text is whole tokens of an English vocabulary, so `usage` counts are
//!   exact tiktoken counts; each encoding is loaded once, lazily, and shared. Output length
//!   is drawn from [`generation::OutputTokens`] and capped by `max_tokens` (finish reason
//!   `length`); stop sequences cut the text (finish reason `stop`). A request with `seed`
//!   (or temperature 0) gets text determined by that seed and its prompt.
//! - **Latency**: time to first token log-normal (median and p99), per-token intervals
//!   log-normal around `per_token`; a non-streamed response waits their sum; streams are
//!   paced chunk by chunk. Zero-latency mode writes everything at once.
//! - **Faults** (per model or deployment, after quota admission, so they are charged):
//!   500, 503, a stall before the first byte, a connection dropped mid-stream, and
//!   `x-should-retry` on every rate-limit 429 and 5xx. OpenAI's 429 `insufficient_quota`
//!   (billing quota used up) is drawn before admission instead: uncharged, and with no
//!   retry advice (`retry-after`, `retry-after-ms`, `x-should-retry`) since waiting does not
//!   help; Azure routes answer it with the same OpenAI body.
//! - **Azure model list**: `GET /openai/models?api-version=…` (what health checks call)
//!   lists the configured models in Azure's shape, with the key checked as on the
//!   deployment routes.
//! - **Time**: quota decisions read the injected [`clock::MockClock`]; latency waits use
//!   tokio's timer (so they follow tokio's paused time in tests).

pub mod clock;
pub mod config;
pub mod generation;
pub mod provider;
pub mod quota;
pub mod server;
pub mod units;

use std::net::SocketAddr;
use std::sync::Arc;

pub use config::{ConfigError, MockConfig};
pub use server::{app, MockState};

use clock::{MockClock, SystemClock};

/// Why a mock server could not start.
#[derive(Debug, thiserror::Error)]
pub enum MockError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The address could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Starts mock servers in the current tokio runtime.
#[derive(Debug)]
pub struct MockServer;

impl MockServer {
    /// Binds `127.0.0.1:0` and serves in a spawned task.
    pub async fn start(config: MockConfig) -> Result<MockHandle, MockError> {
        Self::start_on(config, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Binds the given address and serves in a spawned task.
    pub async fn start_on(config: MockConfig, addr: SocketAddr) -> Result<MockHandle, MockError> {
        Self::start_with_clock(config, addr, Arc::new(SystemClock::new())).await
    }

    /// Binds `addr` and serves with quota time read from `clock` (a
    /// [`clock::ManualClock`] or [`clock::TokioClock`] in tests).
    pub async fn start_with_clock(
        config: MockConfig,
        addr: SocketAddr,
        clock: Arc<dyn MockClock>,
    ) -> Result<MockHandle, MockError> {
        let state = MockState::with_clock(config, clock)?;
        state.warm_up();
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| MockError::Bind { addr, source })?;
        let bound = listener
            .local_addr()
            .map_err(|source| MockError::Bind { addr, source })?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let router = app(state.clone());
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            if let Err(e) = axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(error = %e, "mock server stopped with an error");
            }
        });
        Ok(MockHandle {
            addr: bound,
            state,
            stop,
            task,
        })
    }
}

/// A running mock server.
#[derive(Debug)]
pub struct MockHandle {
    addr: SocketAddr,
    state: MockState,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl MockHandle {
    /// `http://127.0.0.1:PORT` (no trailing slash; OpenAI routes are under `/v1`, Azure
    /// routes under `/openai`, Anthropic's under `/v1/messages` and `/v1/models`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's state (quota keys, counters, reset).
    pub fn state(&self) -> &MockState {
        &self.state
    }

    /// Stops accepting, lets open requests finish, and waits for the server task.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}
