//! Candle backfill: a venue's public kline (candlestick) endpoint read once at start, so a fresh
//! install's chart shows the market's recent history instead of nothing. The candles are shown
//! as the venue's, before the engine's own take over (docs/DESIGN.md, `GET /api/v1/candles`);
//! they never reach the engine.
//!
//! What differs per venue is behind [`Klines`] (the request and the body's shape); the fetch is
//! written once (`crate::backfill::fetch`), bounded in time and in bytes. Pure: no I/O.

use std::time::Duration;

use engine_core::num::Price;

use crate::frame::{MarketRef, ParseError, price};

/// One venue candle in the market's price ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VenueCandle {
    /// Bucket start, ms since the epoch (UTC).
    pub start_ms: u64,
    /// First trade price.
    pub open: Price,
    /// Highest.
    pub high: Price,
    /// Lowest.
    pub low: Price,
    /// Last.
    pub close: Price,
}

/// A venue's public kline endpoint.
pub trait Klines: Send + Sync {
    /// The venue's public REST base URL (overridden by `--backfill-url`, e.g. for a local mock).
    fn rest_url(&self) -> &'static str;

    /// The path and query of the latest `limit` candles of `span` (`1m` … `1d`, see
    /// `ground::history::SPANS`, `span_secs` long) for `symbol` (the venue's), at `now_ms`;
    /// `None` when the venue has no such interval.
    fn path(
        &self,
        symbol: &str,
        span: &str,
        span_secs: u64,
        limit: u32,
        now_ms: u64,
    ) -> Option<String>;

    /// The candles a body holds, oldest first, in `market`'s ticks.
    fn parse(&self, body: &str, market: MarketRef) -> Result<Vec<VenueCandle>, ParseError>;
}

/// Most candles asked for per market and span (the chart's default window is 200).
pub const BACKFILL_CANDLES_MAX: u32 = 300;
/// Largest body read (300 Binance klines are ~60 KiB).
pub const BACKFILL_BODY_BYTES_MAX: usize = 1 << 20;
/// How long one request may take, connect included.
pub const BACKFILL_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A candle's four prices from the venue's text: exact in the market's decimals (more decimals
/// than the market has is an error, never a rounded price), positive, within the market's
/// limit, high ≥ open, close ≥ low.
pub fn candle(
    market: MarketRef,
    start_ms: u64,
    [open, high, low, close]: [&str; 4],
) -> Result<VenueCandle, ParseError> {
    let c = VenueCandle {
        start_ms,
        open: price(market, open, "open")?,
        high: price(market, high, "high")?,
        low: price(market, low, "low")?,
        close: price(market, close, "close")?,
    };
    let prices = [c.open, c.high, c.low, c.close];
    if prices.iter().any(|p| p.0 <= 0 || p.0 > market.max_price_ticks)
        || prices.iter().any(|&p| p > c.high || p < c.low)
    {
        return Err(ParseError::PriceOutOfRange);
    }
    Ok(c)
}

/// Oldest first, one candle per start (a venue that sends newest first, or repeats, is put in
/// order).
pub fn ordered(mut candles: Vec<VenueCandle>) -> Vec<VenueCandle> {
    candles.sort_by_key(|c| c.start_ms);
    candles.dedup_by_key(|c| c.start_ms);
    candles
}

#[cfg(test)]
mod tests {
    use super::*;

    use engine_core::command::MarketId;

    const BTC: MarketRef =
        MarketRef { id: MarketId(0), price_decimals: 2, max_price_ticks: 1 << 40 };

    #[test]
    fn a_candle_is_exact_in_the_markets_decimals_and_consistent() {
        let c = candle(BTC, 60_000, ["100.10", "101.00000000", "99.5", "100.25"]).unwrap();
        assert_eq!(
            (c.open, c.high, c.low, c.close),
            (Price(10_010), Price(10_100), Price(9_950), Price(10_025))
        );
        for bad in [
            ["100.101", "101", "99", "100"],
            ["100", "99", "98", "100"],
            ["100", "101", "100.5", "100"],
            ["0", "101", "0", "100"],
            ["x", "101", "99", "100"],
        ] {
            assert!(candle(BTC, 0, bad).is_err(), "{bad:?}");
        }
        let a = |start_ms| VenueCandle { start_ms, ..c };
        let got = ordered(vec![a(3), a(1), a(2), a(1)]);
        assert_eq!(got.iter().map(|c| c.start_ms).collect::<Vec<_>>(), [1, 2, 3]);
    }
}
