//! Coinbase Exchange's product candles
//! (<https://docs.cdp.coinbase.com/api-reference/exchange-api/rest-api/products/get-product-candles>):
//! `GET /products/BTC-USD/candles?granularity=60` answers up to 300 candles ending now, newest
//! first, each `[time s, low, high, open, close, volume]` as JSON numbers. Granularities are 60,
//! 300, 900, 3600, 21600 and 86400 seconds: no 4-hour candles.

use crate::frame::{MarketRef, ParseError, from_json};
use crate::klines::{Klines, VenueCandle, candle};

/// Coinbase Exchange's candle endpoint.
#[derive(Debug, Clone, Copy, Default)]
pub struct CoinbaseKlines;

impl Klines for CoinbaseKlines {
    fn rest_url(&self) -> &'static str {
        "https://api.exchange.coinbase.com"
    }

    fn path(&self, symbol: &str, _: &str, span_secs: u64, _: u32, _: u64) -> Option<String> {
        [60, 300, 900, 3_600, 86_400]
            .contains(&span_secs)
            .then(|| format!("/products/{symbol}/candles?granularity={span_secs}"))
    }

    fn parse(&self, body: &str, market: MarketRef) -> Result<Vec<VenueCandle>, ParseError> {
        let rows: Vec<Vec<serde_json::Number>> = from_json(body)?;
        rows.iter()
            .map(|row| {
                // The numbers' own text (serde_json keeps it: arbitrary_precision), never a float.
                let text: Vec<String> = row.iter().map(ToString::to_string).collect();
                let text = |i: usize| text.get(i).map_or("", String::as_str);
                let secs: u64 = text(0).parse().map_err(|_| ParseError::BadInteger("time"))?;
                let start = secs.checked_mul(1_000).ok_or(ParseError::BadInteger("time"))?;
                // [time, low, high, open, close]
                candle(market, start, [text(3), text(2), text(1), text(4)])
            })
            .collect()
    }
}
