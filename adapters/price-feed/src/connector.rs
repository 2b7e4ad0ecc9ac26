//! The venue seam (after barter-rs `barter-data/src/exchange/`): what differs from one venue to
//! the next, and nothing else. The live client ([`crate::client`]), the replay feed
//! ([`crate::replay`]) and health ([`crate::health`]) are written once, for every venue.
//!
//! A venue is one folder under `venues/` with a type implementing [`Connector`], and one line
//! in [`crate::venues::ALL`].

use std::collections::BTreeMap;
use std::time::Duration;

use engine_core::config::MarketConfig;

use crate::frame::{Frame, Markets, ParseError};
use crate::klines::Klines;

/// One venue's public best bid/offer stream.
pub trait Connector: Send + Sync + std::fmt::Debug {
    /// The venue's name: `--feed <name>`, and the feed's name in `/healthz`.
    fn name(&self) -> &'static str;

    /// The venue's public WebSocket endpoint (overridden by `--feed-url`, e.g. for a local mock).
    fn default_url(&self) -> &'static str;

    /// The venue's symbol for an engine market (`BTC_USDC`) when the configuration names none
    /// (`--feed-symbols`): Backpack's are the engine's own.
    fn symbol(&self, engine_symbol: &str) -> String {
        engine_symbol.to_owned()
    }

    /// The frames sent after each connect: subscribe to every market in `markets` (under the
    /// venue's symbols).
    fn subscribe(&self, markets: &Markets) -> Vec<String>;

    /// One text frame: a tick, a control reply, a server error, or why it is none of these.
    fn parse(&self, text: &str, markets: &Markets) -> Result<Frame, ParseError>;

    /// An application-level keepalive the venue expects, as (period, frame); `None` for a venue
    /// that keeps the connection alive with WebSocket pings (answered by the client).
    fn keepalive(&self) -> Option<(Duration, String)> {
        None
    }

    /// The venue's public candles, for the chart's backfill at start; `None` for a venue that
    /// has none.
    fn klines(&self) -> Option<&'static dyn Klines> {
        None
    }
}

impl Markets {
    /// The same under `venue`'s symbols: `symbols` (engine symbol -> the venue's, from the
    /// configuration) where it names one, else the venue's default mapping
    /// ([`Connector::symbol`]).
    pub fn for_venue(
        markets: &[MarketConfig],
        venue: &dyn Connector,
        symbols: &BTreeMap<String, String>,
    ) -> Markets {
        Markets::mapped(markets, |m| {
            symbols.get(&m.symbol).cloned().unwrap_or_else(|| venue.symbol(&m.symbol))
        })
    }
}
