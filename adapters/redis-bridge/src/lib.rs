//! Redis streams <-> engine rings (service mode).
//!
//! Skeleton only: the bridge (`engine-stream` consumer group, reply streams, `engine-events`,
//! `send_request_and_wait`) is built by the redis-bridge issue. It will depend on `engine-core`
//! and never the reverse.

/// The stream the engine consumes requests from (DESIGN.md, "Redis-bridged protocol").
pub const ENGINE_STREAM: &str = "engine-stream";
/// The stream price ticks are published to by `hundredx feed`.
pub const PRICE_STREAM: &str = "price-stream";
/// The stream every unsolicited event and state change is published to.
pub const ENGINE_EVENTS_STREAM: &str = "engine-events";
