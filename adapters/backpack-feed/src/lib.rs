//! Backpack Exchange bookTicker feed, plus synthetic and replay feeds.
//!
//! Skeleton only: the WebSocket client, parser and offline feeds are built by the feed issue.
//! It will depend on `engine-core` and never the reverse.

/// Default public WebSocket endpoint.
pub const DEFAULT_BACKPACK_URL: &str = "wss://ws.backpack.exchange";
