//! Price feeds for the engine: Backpack Exchange's bookTicker stream, and offline feeds.
//!
//! Layout (nautilus-style: pure parsing apart from I/O):
//! - [`parse`]: bookTicker frames -> engine ticks, exactly; duplicate/out-of-order filtering.
//!   Tested on `test_data/` fixtures and by proptest.
//! - [`synthetic`]: a seeded random walk per market, for machines without internet and for
//!   reproducible runs. Pure: it produces [`engine_core::command::Tick`]s, the caller decides
//!   where they go and at what pace.
//!
//! The live WebSocket client, its parser and the replay feed are built by the feed issue.

pub mod parse;
pub mod synthetic;

/// Default public WebSocket endpoint.
pub const DEFAULT_BACKPACK_URL: &str = "wss://ws.backpack.exchange";
