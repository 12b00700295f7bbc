//! llm-connector-hub: find, prove and keep the right client-side rate limits for LLM APIs.
//!
//! - [`limiter`]: one provider-agnostic rate-limiter contract with token-bucket, GCRA,
//!   sliding-window (log and counter) and leaky-bucket strategies, several dimensions at
//!   once, keyed per provider/model/deployment, shared across threads ([`limiter::KeyedLimiter`])
//!   and processes ([`limiter::redis::RedisLimiter`]); public invariant checkers.
//! - [`provider`]: the OpenAI and Azure OpenAI connectors (plain and SSE streaming).
//! - [`middleware`], [`cache`], [`metrics`], [`selector`], [`plugin`], [`generator`]: the hub
//!   around the connectors — a middleware pipeline with rate limiting, retry, fallback and
//!   caching; metrics; provider selection; connector plugins; the Generator integration
//!   contract (acquire before, record after, per parallel request).
//! - [`hub`]: the [`Hub`](hub::Hub) facade over all of that — providers, limits, middleware
//!   order, selector and cache from one TOML file; `complete` and `stream`.
//! - [`harness`]: scenario files driven live or in virtual time, reports and charts;
//!   [`cli`] is the `hub` command line over it.
//! - [`clock`]: injected time, so every limiter is testable without sleeping;
//!   [`units`]: human durations and rates in configuration.

pub mod cache;
pub mod cli;
pub mod clock;
pub mod gateway;
pub mod generator;
pub mod harness;
pub mod hub;
pub mod lifecycle;
pub mod limiter;
pub mod metrics;
pub mod middleware;
pub mod plugin;
pub mod provider;
pub mod selector;
pub mod units;

/// The README's examples, compiled and run as doc tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
