//! llm-connector-hub: find, prove and keep the right client-side rate limits for LLM APIs.
//!
//! - [`limiter`]: one provider-agnostic rate-limiter contract with token-bucket, GCRA,
//!   sliding-window and leaky-bucket strategies, several dimensions at once, keyed per
//!   provider/model/deployment, shared across threads (and processes through Redis).
//! - [`clock`]: injected time, so every limiter is testable without sleeping.
//! - [`units`]: human durations and rates in configuration.

pub mod cache;
pub mod cli;
pub mod clock;
pub mod generator;
pub mod harness;
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
