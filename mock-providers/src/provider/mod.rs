//! Providers whose wire dialect is not OpenAI's, one folder each.
//!
//! OpenAI and Azure OpenAI are one dialect (the same bodies, SSE and parameters; Azure
//! differs in paths, auth, quota and its gateway's error envelope), served by one pipeline
//! in [`crate::server`] with a [`crate::server::errors::Flavor`] switch and quota engines in
//! [`crate::quota`]. A provider with its own dialect lives here, whole: configuration,
//! quota engine, request validation, bodies, SSE, headers and handlers. The server only
//! mounts its routes and keeps its state (see the root `DESIGN.md`, "Why is the Anthropic
//! mock one folder beside the OpenAI pipeline?").
//!
//! - [`anthropic`]: the Anthropic Messages API.

pub mod anthropic;
