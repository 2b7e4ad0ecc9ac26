//! Coinbase Exchange: the public `ticker` channel on the market-data feed
//! (<https://docs.cdp.coinbase.com/exchange/websocket-feed/channels>, "Ticker Channel"): the
//! best bid and ask with every match. Product ids are the engine's symbols with a dash
//! (`BTC_USDC` -> `BTC-USDC`); Coinbase quotes most products in USD, so a configuration maps
//! them (`--feed-symbols BTC_USDC=BTC-USD`). A subscription is required within 5 s of
//! connecting; the server keeps the connection alive with its own frames.
//!
//! A frame is `{"type":"ticker","sequence":37475248783,"product_id":"BTC-USD",
//! "price":"62000.10","best_bid":"61999.50","best_bid_size":"0.3","best_ask":"62000.50",
//! "best_ask_size":"0.4","time":"2024-11-19T07:06:40.000123Z",…}`: `sequence` the product's
//! message sequence, `time` RFC 3339 with microseconds. `subscriptions` and `heartbeat` frames
//! are control frames; `{"type":"error","message":…}` is an error.

pub mod klines;

use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::connector::Connector;
use crate::frame::{Frame, Markets, ParseError, QuoteFields, from_json, quote};

/// Coinbase Exchange's ticker channel.
#[derive(Debug, Clone, Copy, Default)]
pub struct Coinbase;

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<&'a str>,
    sequence: Option<u64>,
    #[serde(borrow)]
    product_id: Option<&'a str>,
    #[serde(borrow)]
    best_bid: Option<&'a str>,
    #[serde(borrow)]
    best_ask: Option<&'a str>,
    #[serde(borrow)]
    time: Option<&'a str>,
    message: Option<serde_json::Value>,
}

/// An RFC 3339 time as µs since the Unix epoch.
fn micros(text: &str) -> Result<u64, ParseError> {
    let t = OffsetDateTime::parse(text, &Rfc3339).map_err(|_| ParseError::BadInteger("time"))?;
    u64::try_from(t.unix_timestamp_nanos() / 1_000).map_err(|_| ParseError::BadInteger("time"))
}

impl Connector for Coinbase {
    fn name(&self) -> &'static str {
        "coinbase"
    }

    fn default_url(&self) -> &'static str {
        "wss://ws-feed.exchange.coinbase.com"
    }

    fn symbol(&self, engine_symbol: &str) -> String {
        engine_symbol.replace('_', "-")
    }

    fn subscribe(&self, markets: &Markets) -> Vec<String> {
        let ids: Vec<&str> = markets.symbols().collect();
        let frame =
            serde_json::json!({ "type": "subscribe", "product_ids": ids, "channels": ["ticker"] });
        vec![frame.to_string()]
    }

    fn parse(&self, text: &str, markets: &Markets) -> Result<Frame, ParseError> {
        let m: Message<'_> = from_json(text)?;
        match m.kind {
            Some("ticker") => {}
            Some("error") => return Ok(Frame::Error(format!("{:?}", m.message))),
            Some("subscriptions" | "heartbeat") => return Ok(Frame::Ack),
            Some(_) => return Err(ParseError::NotBookTicker),
            None => return Err(ParseError::MissingField("type")),
        }
        let symbol = m.product_id.ok_or(ParseError::MissingField("product_id"))?;
        let market =
            markets.get(symbol).ok_or_else(|| ParseError::UnknownSymbol(symbol.to_owned()))?;
        let fields = QuoteFields { bid: "best_bid", ask: "best_ask" };
        let mut tick = quote(market, (m.best_bid, m.best_ask), fields, 0, 0)?;
        tick.update_id = m.sequence.ok_or(ParseError::MissingField("sequence"))?;
        tick.exchange_time_us = micros(m.time.ok_or(ParseError::MissingField("time"))?)?;
        Ok(Frame::Tick(tick))
    }

    fn klines(&self) -> Option<&'static dyn crate::klines::Klines> {
        Some(&klines::CoinbaseKlines)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use engine_core::command::MarketId;
    use engine_core::config::MarketConfig;
    use engine_core::num::Price;

    use super::*;

    /// Coinbase quotes BTC and ETH in USD: the configuration maps the engine's USDC markets.
    fn markets() -> Markets {
        let symbols: BTreeMap<String, String> = [("BTC_USDC", "BTC-USD"), ("ETH_USDC", "ETH-USD")]
            .into_iter()
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .collect();
        Markets::for_venue(&MarketConfig::defaults(), &Coinbase, &symbols)
    }

    #[test]
    fn the_fixture_parses_exactly_with_mapped_product_ids() {
        let text = include_str!("../../../test_data/coinbase/ticker.jsonl");
        let frames: Vec<_> = text.lines().map(|l| Coinbase.parse(l, &markets())).collect();
        assert_eq!(frames[0], Ok(Frame::Ack));
        let Ok(Frame::Tick(t)) = &frames[1] else { panic!("{frames:?}") };
        assert_eq!(
            (t.market, t.bid, t.ask, t.update_id),
            (MarketId(0), Price(6_199_950), Price(6_200_050), 37_475_248_783)
        );
        assert_eq!(t.exchange_time_us, 1_732_000_000_000_123);
        let ticks = frames.iter().filter(|f| matches!(f, Ok(Frame::Tick(_)))).count();
        assert_eq!(ticks, 3, "{frames:?}");
        assert_eq!(frames[3], Ok(Frame::Ack), "a heartbeat is a control frame");
        let sub = Coinbase.subscribe(&markets());
        assert!(sub[0].contains(r#""product_ids":["BTC-USD","ETH-USD","SOL-USDC"]"#), "{sub:?}");
    }

    #[test]
    fn every_malformed_case_is_an_error_value() {
        let m = markets();
        let ok = r#"{"type":"ticker","sequence":5,"product_id":"BTC-USD","best_bid":"1.00","best_ask":"2.00","time":"2024-11-19T07:06:40.000123Z"}"#;
        assert!(matches!(Coinbase.parse(ok, &m), Ok(Frame::Tick(_))));
        let with = |from: &str, to: &str| ok.replace(from, to);
        let cases = [
            ("[".to_owned(), "malformed"),
            (with(r#""sequence":5,"#, ""), "missing_field"),
            (with(r#""type":"ticker","#, ""), "missing_field"),
            (with("2024-11-19T07:06:40.000123Z", "yesterday"), "bad_integer"),
            (with(r#""2.00""#, r#""2.001""#), "bad_price"),
            (with(r#""1.00""#, r#""3.00""#), "crossed"),
            (with("BTC-USD", "DOGE-USD"), "unknown_symbol"),
            (with(r#""ticker""#, r#""match""#), "not_book_ticker"),
        ];
        for (frame, label) in cases {
            match Coinbase.parse(&frame, &m) {
                Err(e) => assert_eq!(e.label(), label, "{frame}"),
                Ok(f) => panic!("{frame} parsed as {f:?}"),
            }
        }
        let error = r#"{"type":"error","message":"Failed to subscribe","reason":"BTC-XYZ is not a valid product"}"#;
        assert!(matches!(Coinbase.parse(error, &m), Ok(Frame::Error(_))));
    }
}
