//! Redis streams <-> engine rings (service mode).
//!
//! - [`wire`]: the JSON carried in stream entries (requests, replies, ticks); pure.
//! - [`signing`]: every entry is signed (HMAC-SHA256 under the shared bridge secret, bound to
//!   its destination stream and time) and checked; a replay guard refuses copies; pure.
//! - [`target`]: where Redis is (`redis://`, `rediss://` with an optional CA), password redacted.
//! - [`bridge`]: the engine side (consumer group `engine` on `engine-stream` and `price-stream`,
//!   pending entries re-read after a restart, stale ones reclaimed with XAUTOCLAIM, replies
//!   XADDed to each request's `reply_to` and the request XACKed only then, refused and malformed
//!   entries to a dead-letter stream, events to `engine-events`).
//! - [`client`]: the API side, [`client::RedisEngineClient`], a `ground::ports::EngineClient`.
//! - [`entries`]: what both sides share: a signed entry, the consumer groups, the errors.
//! - [`changes`]: the engine's numbered state changes on `engine-events`, published exactly once
//!   (a cursor key in the same MULTI/EXEC) and chained so a reader can tell a gap.
//! - [`http_client`]: the client's failures in the ports' terms.
//! - [`price_sink`]: any price feed into `price-stream` (`hundredx feed --redis`).
//! - [`link`]: a reconnecting connection that follows the master across a Sentinel promotion.
//! - `test_support` (feature `test-support`, tests and benchmarks only): a throwaway
//!   `redis-server`.

pub mod bridge;
pub mod changes;
pub mod client;
pub mod entries;
pub mod http_client;
pub mod link;
pub mod price_sink;
pub mod signing;
pub mod target;
#[cfg(feature = "test-support")]
pub mod test_support;
pub mod wire;

/// The stream the engine consumes requests from (docs/DESIGN.md, "Redis-bridged protocol").
pub const ENGINE_STREAM: &str = "engine-stream";
/// The stream price ticks are published to by `hundredx feed`.
pub const PRICE_STREAM: &str = "price-stream";
/// The stream every unsolicited event and state change is published to.
pub const ENGINE_EVENTS_STREAM: &str = "engine-events";
/// Entries `engine-events` keeps (approximately, `MAXLEN ~`), events and changes together: a
/// reader of changes (the history store) must not fall further behind than this; if it does it
/// sees the gap and stops rather than skip (see [`changes`]).
pub const ENGINE_EVENTS_MAXLEN: usize = 1_000_000;
