//! Price feeds for the engine: Backpack Exchange's bookTicker stream, and offline feeds.
//!
//! Layout (nautilus-style: pure parsing apart from I/O):
//! - [`parse`]: bookTicker frames -> engine ticks, exactly; duplicate/out-of-order filtering.
//!   Tested on `test_data/` fixtures and by proptest.
//! - [`synthetic`]: a seeded random walk per market, for machines without internet and for
//!   reproducible runs. Pure: it produces [`engine_core::command::Tick`]s, the caller decides
//!   where they go and at what pace.
//!
//! - [`client`]: the live WebSocket client (reconnecting, watchdog, health), the replay feed and
//!   the `ground::ports::TickSink` they publish into (the engine's in-ring, or Redis in service mode).

pub mod client;
pub mod parse;
pub mod synthetic;

/// Default public WebSocket endpoint.
pub const DEFAULT_BACKPACK_URL: &str = "wss://ws.backpack.exchange";
