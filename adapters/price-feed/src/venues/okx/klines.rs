//! OKX's candlesticks (<https://www.okx.com/docs-v5/en/#order-book-trading-market-data-get-candlesticks>):
//! `GET /api/v5/market/candles?instId=BTC-USDC&bar=1m&limit=300` answers `{"code":"0","msg":"",
//! "data":[["1597026383085","3.721","3.743","3.677","3.708","8422410",…,"1"],…]}`, newest first,
//! each `[ts ms, open, high, low, close, volume, …, confirm]` as strings. Bars `1m 5m 15m 1H 4H`
//! and `1Dutc` (the daily bar aligned to UTC, as the engine's); at most 300 a request.

use serde::Deserialize;

use crate::frame::{MarketRef, ParseError, from_json};
use crate::klines::{Klines, VenueCandle, candle};

/// OKX's candlestick endpoint.
#[derive(Debug, Clone, Copy, Default)]
pub struct OkxKlines;

#[derive(Deserialize)]
struct Reply<'a> {
    #[serde(borrow)]
    code: Option<&'a str>,
    #[serde(borrow, default)]
    data: Vec<Vec<&'a str>>,
}

impl Klines for OkxKlines {
    fn rest_url(&self) -> &'static str {
        "https://www.okx.com"
    }

    fn path(&self, symbol: &str, span: &str, _: u64, limit: u32, _: u64) -> Option<String> {
        let bar = match span {
            "1m" | "5m" | "15m" => span,
            "1h" => "1H",
            "4h" => "4H",
            "1d" => "1Dutc",
            _ => return None,
        };
        Some(format!("/api/v5/market/candles?instId={symbol}&bar={bar}&limit={limit}"))
    }

    fn parse(&self, body: &str, market: MarketRef) -> Result<Vec<VenueCandle>, ParseError> {
        let reply: Reply<'_> = from_json(body)?;
        if reply.code != Some("0") {
            return Err(ParseError::Malformed(format!("code {:?}", reply.code)));
        }
        reply
            .data
            .iter()
            .map(|row| {
                let text = |i: usize| row.get(i).copied().unwrap_or("");
                let start = text(0).parse().map_err(|_| ParseError::BadInteger("ts"))?;
                candle(market, start, [text(1), text(2), text(3), text(4)])
            })
            .collect()
    }
}
