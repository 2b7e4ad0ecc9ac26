//! Binance spot's klines (<https://developers.binance.com/docs/binance-spot-api-docs/rest-api/market-data-endpoints>,
//! "Kline/Candlestick data"): `GET /api/v3/klines?symbol=BTCUSDC&interval=1m&limit=300`, the
//! latest candles oldest first, each `[open time ms, "open", "high", "low", "close", "volume",
//! close time ms, …]`. Interval names are the engine's spans (`1m` … `1d`), UTC.

use serde_json::Value;

use crate::frame::{MarketRef, ParseError, from_json};
use crate::klines::{Klines, VenueCandle, candle};

/// Binance spot's kline endpoint.
#[derive(Debug, Clone, Copy, Default)]
pub struct BinanceKlines;

impl Klines for BinanceKlines {
    fn rest_url(&self) -> &'static str {
        "https://api.binance.com"
    }

    fn path(&self, symbol: &str, span: &str, _: u64, limit: u32, _: u64) -> Option<String> {
        Some(format!("/api/v3/klines?symbol={symbol}&interval={span}&limit={limit}"))
    }

    fn parse(&self, body: &str, market: MarketRef) -> Result<Vec<VenueCandle>, ParseError> {
        let rows: Vec<Vec<Value>> = from_json(body)?;
        rows.iter()
            .map(|row| {
                let start = row.first().and_then(Value::as_u64);
                let start = start.ok_or(ParseError::BadInteger("open time"))?;
                let text = |i: usize| row.get(i).and_then(Value::as_str).unwrap_or("");
                candle(market, start, [text(1), text(2), text(3), text(4)])
            })
            .collect()
    }
}
