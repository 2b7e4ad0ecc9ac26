//! Redis streams <-> engine rings (service mode).
//!
//! Built so far: [`wire`], the JSON carried in stream entries (requests, replies, ticks), pure and
//! tested. Still to build (the redis-bridge issue): the engine-side consumer group and reply
//! writer, the API-side `send_request_and_wait`, and the `engine | api | feed` subcommands.

pub mod wire;

/// The stream the engine consumes requests from (DESIGN.md, "Redis-bridged protocol").
pub const ENGINE_STREAM: &str = "engine-stream";
/// The stream price ticks are published to by `hundredx feed`.
pub const PRICE_STREAM: &str = "price-stream";
/// The stream every unsolicited event and state change is published to.
pub const ENGINE_EVENTS_STREAM: &str = "engine-events";
