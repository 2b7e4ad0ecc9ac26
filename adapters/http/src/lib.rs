//! The HTTP API (axum, JWT) in front of the engine.
//!
//! Skeleton only: routes, auth and error shapes are built by the HTTP issue, following
//! DESIGN.md's HTTP table. It will depend on `engine-core` and never the reverse.

/// Prefix of every versioned route.
pub const API_PREFIX: &str = "/api/v1";
