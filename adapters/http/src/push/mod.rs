//! Live push over WebSocket: `GET /api/v1/ws`.
//!
//! Client → server (JSON text frames): `{"op":"subscribe","channels":[…]}`,
//! `{"op":"unsubscribe","channels":[…]}`, `{"op":"auth","token":"<JWT>"}` (or the token on the
//! upgrade as `Authorization: Bearer`; never in the URL — `?token=` is refused with 400
//! `token_in_url`, since URLs end up in proxies' logs), `{"op":"ping"}`. At most
//! `client_frames_per_second` frames a second (burst twice that), else the connection is
//! closed 4008 `rate_limited`; it is closed 4004 `token_expired` when its token expires,
//! unless an `auth` with a newer token of the same account came first, 4005 `key_revoked` when
//! the API key that signed it in is revoked, 4006 `signed_out` when its token's session is.
//! Server → client: `{"channel":…,"seq":n,"data":…}`, with `seq` counting 1, 2, 3… per channel
//! per connection, and `{"op":"subscribed"|"unsubscribed"|"authed"|"pong"|"error",…}` answers.
//!
//! Channels: `prices` (public: the engine's applied bid/ask per market, from its `PriceApplied`
//! changes, published at most `price_updates_per_second` times a second — latest wins),
//! `candles.<MARKET>.<INTERVAL>` (public: the latest candle from the history store), and,
//! after auth, the
//! caller's own `positions` (opened, closed or partially closed with the reason, margin added,
//! and `marks` refreshes with uPnL), `balance` (on every change of the account and every
//! `refresh`), `notices` (liquidation, bad debt, margin calls, a cross account's margin call and stop-out).
//!
//! Nothing here can hold back the engine or another client: prices are a `watch` (latest
//! value), changes go to per-account queues filled with `try_send` (only the owner's connections
//! wake for a change, whatever the number connected). A connection whose queue is full, or whose
//! socket does not take a frame within `send_timeout`, is closed
//! (4001 `slow_consumer`); one silent for `idle_timeout` is closed (4002 `idle`). After any gap
//! a client re-reads state over REST.
//!
//! - `hub.rs`: the fan-out and the caps; `conn.rs`: one connection's protocol; `pump.rs`: prices
//!   and candles at a bounded rate.

mod conn;
mod hub;
mod pump;

pub use conn::CLIENT_FRAME_MAX_BYTES;
pub(crate) use conn::upgrade;
pub use hub::Hub;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize};

use axum::response::{IntoResponse, Response};

/// Limits of the push API (`--config`, section `http.push`).
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushLimits {
    /// WebSocket connections at once (beyond: 503 `busy`).
    pub max_connections: usize,
    /// WebSocket connections at once from one address (an IPv6 /64; beyond: 429).
    pub per_ip: usize,
    /// Of those, connections not signed in (no token on the upgrade) at once: signed-in
    /// traders keep the rest whatever anonymous clients hold (beyond: 503 `busy`).
    pub anonymous_max_connections: usize,
    /// Connections not signed in, at once from one address (beyond: 429).
    pub anonymous_per_ip: usize,
    /// A connection still not signed in this long after it opened is closed (4003
    /// `sign_in_required`; the page reconnects): public prices cannot hold a slot for ever (ms).
    pub anonymous_life_ms: u64,
    /// At most this many price sends a second to one connection (each carries every market
    /// that changed; the latest wins). A price waits up to `1 / price_updates_per_second` for
    /// its send: the default 50 keeps that at 20 ms; 20 halves the push CPU at 1000
    /// connections but lets a price wait 50 ms (docs/BENCHMARKS.md, push fan-out).
    pub price_updates_per_second: u32,
    /// How often `balance` and `positions` marks are refreshed for a subscriber (ms).
    pub refresh_ms: u64,
    /// Ping interval (ms).
    pub heartbeat_ms: u64,
    /// A connection that sends nothing (not even a pong) this long is closed (ms).
    pub idle_timeout_ms: u64,
    /// A frame the socket does not take within this long closes the connection (ms).
    pub send_timeout_ms: u64,
    /// Changes of its account a connection may fall behind before it is closed as slow.
    pub lag_capacity: usize,
    /// Frames a client may send a second (burst twice that); beyond, the connection is closed
    /// (4008 `rate_limited`): each subscribe costs the server work.
    pub client_frames_per_second: u32,
}

impl Default for PushLimits {
    fn default() -> Self {
        PushLimits {
            max_connections: 2_000,
            per_ip: 20,
            anonymous_max_connections: 500,
            anonymous_per_ip: 4,
            anonymous_life_ms: 600_000,
            price_updates_per_second: 50,
            refresh_ms: 1_000,
            heartbeat_ms: 15_000,
            idle_timeout_ms: 60_000,
            send_timeout_ms: 5_000,
            lag_capacity: 4_096,
            client_frames_per_second: 20,
        }
    }
}

impl PushLimits {
    /// Every limit in range.
    pub fn validate(&self) -> Result<(), String> {
        let ok = self.max_connections >= 1
            && self.per_ip >= 1
            && (1..=self.max_connections).contains(&self.anonymous_max_connections)
            && (1..=self.per_ip).contains(&self.anonymous_per_ip)
            && (1_000..=86_400_000).contains(&self.anonymous_life_ms)
            && (1..=100).contains(&self.price_updates_per_second)
            && (50..=60_000).contains(&self.refresh_ms)
            && (100..=300_000).contains(&self.heartbeat_ms)
            && self.idle_timeout_ms > self.heartbeat_ms
            && (10..=60_000).contains(&self.send_timeout_ms)
            && (16..=1_048_576).contains(&self.lag_capacity)
            && (1..=10_000).contains(&self.client_frames_per_second);
        if ok { Ok(()) } else { Err("http.push limits out of range".into()) }
    }
}

/// What the push API has done, for `/metrics`.
#[derive(Debug, Default)]
pub struct PushStats {
    /// Connections open.
    pub open: AtomicUsize,
    /// Frames sent.
    pub sent: AtomicU64,
    /// Connections closed for falling behind.
    pub slow_closed: AtomicU64,
    /// Connections closed for silence.
    pub idle_closed: AtomicU64,
    /// Upgrades refused by the caps.
    pub refused: AtomicU64,
    /// Changes refused by the service-mode tail as replays (a genuine `engine-events` entry
    /// written again): shared with the tail, which counts them.
    pub replayed: Arc<AtomicU64>,
}

/// Every channel a client may name (`risk`: operators only, the house's risk view every
/// refresh when it changed).
pub const CHANNELS: [&str; 6] = ["prices", "positions", "balance", "notices", "orders", "risk"];

/// Nearest liquidations the `risk` channel carries.
pub const RISK_TOP: u32 = 20;

/// The protocol as an AsyncAPI 3.0 document (`GET /api/v1/asyncapi.json`).
pub const ASYNCAPI: &str = include_str!("../../asyncapi.json");

/// `GET /api/v1/asyncapi.json`.
pub(crate) async fn asyncapi() -> Response {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], ASYNCAPI).into_response()
}
