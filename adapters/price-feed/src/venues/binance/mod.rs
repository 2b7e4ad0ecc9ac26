//! Binance spot: the `<symbol>@bookTicker` stream on the combined-stream endpoint
//! (<https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams>, "Individual
//! Symbol Book Ticker Streams"). Symbols are the engine's without the underscore (`BTC_USDC` ->
//! `BTCUSDC`), lower case in stream names. The server pings (every 20 s) and the client
//! answers; a connection lasts at most 24 h, then the client reconnects.
//!
//! A frame is `{"stream":"btcusdc@bookTicker","data":{"u":400900217,"s":"BTCUSDC",
//! "b":"25.35190000","B":"31.21","a":"25.36520000","A":"40.66"}}`: `u` the order book's update
//! id, `b`/`a` the best bid/ask as decimal strings. The spot stream carries no event time.
//! `{"result":null,"id":1}` acknowledges the subscription; `{"error":{…},"id":1}` or
//! `{"code":…,"msg":…}` is an error.

pub mod klines;

use serde::Deserialize;

use crate::connector::Connector;
use crate::frame::{Frame, Markets, ParseError, QuoteFields, StreamEnvelope, from_json, quote};

/// Binance spot's bookTicker streams.
#[derive(Debug, Clone, Copy, Default)]
pub struct Binance;

#[derive(Deserialize)]
struct Data<'a> {
    #[serde(rename = "u")]
    update_id: Option<u64>,
    #[serde(rename = "s", borrow)]
    symbol: Option<&'a str>,
    #[serde(rename = "b", borrow)]
    bid: Option<&'a str>,
    #[serde(rename = "a", borrow)]
    ask: Option<&'a str>,
}

impl Connector for Binance {
    fn name(&self) -> &'static str {
        "binance"
    }

    fn default_url(&self) -> &'static str {
        "wss://stream.binance.com:9443/stream"
    }

    fn symbol(&self, engine_symbol: &str) -> String {
        engine_symbol.replace('_', "")
    }

    /// One SUBSCRIBE naming every market's `<symbol>@bookTicker` (at most 1024 streams a
    /// connection, far above any market list).
    fn subscribe(&self, markets: &Markets) -> Vec<String> {
        let params: Vec<String> =
            markets.symbols().map(|s| format!("{}@bookTicker", s.to_lowercase())).collect();
        vec![serde_json::json!({ "method": "SUBSCRIBE", "params": params, "id": 1 }).to_string()]
    }

    fn parse(&self, text: &str, markets: &Markets) -> Result<Frame, ParseError> {
        let env: StreamEnvelope<'_, Data<'_>> = from_json(text)?;
        let (stream, data) = match env.open() {
            Ok(opened) => opened,
            Err(other) => return other,
        };
        if stream.is_some_and(|s| !s.ends_with("@bookTicker")) {
            return Err(ParseError::NotBookTicker);
        }
        let symbol = data.symbol.ok_or(ParseError::MissingField("s"))?;
        let market =
            markets.get(symbol).ok_or_else(|| ParseError::UnknownSymbol(symbol.to_owned()))?;
        let fields = QuoteFields { bid: "b", ask: "a" };
        let mut tick = quote(market, (data.bid, data.ask), fields, 0, 0)?;
        tick.update_id = data.update_id.ok_or(ParseError::MissingField("u"))?;
        Ok(Frame::Tick(tick))
    }

    fn klines(&self) -> Option<&'static dyn crate::klines::Klines> {
        Some(&klines::BinanceKlines)
    }
}

#[cfg(test)]
mod tests {
    use engine_core::command::MarketId;
    use engine_core::config::MarketConfig;
    use engine_core::num::Price;

    use super::*;

    fn markets() -> Markets {
        Markets::for_venue(&MarketConfig::defaults(), &Binance, &Default::default())
    }

    #[test]
    fn the_fixture_parses_exactly_with_binance_symbols() {
        let text = include_str!("../../../test_data/binance/book_ticker.jsonl");
        let frames: Vec<_> = text.lines().map(|l| Binance.parse(l, &markets())).collect();
        assert_eq!(frames[0], Ok(Frame::Ack));
        let Ok(Frame::Tick(t)) = &frames[1] else { panic!("{frames:?}") };
        assert_eq!(
            (t.market, t.bid, t.ask, t.update_id),
            (MarketId(0), Price(6_199_950), Price(6_200_050), 400_900_217)
        );
        assert!(frames[1..].iter().all(|f| matches!(f, Ok(Frame::Tick(_)))), "{frames:?}");
        assert_eq!(
            Binance.subscribe(&markets()),
            [
                r#"{"id":1,"method":"SUBSCRIBE","params":["btcusdc@bookTicker","ethusdc@bookTicker","solusdc@bookTicker"]}"#
            ]
        );
    }

    #[test]
    fn every_malformed_case_is_an_error_value() {
        let m = markets();
        let ok = r#"{"stream":"btcusdc@bookTicker","data":{"u":7,"s":"BTCUSDC","b":"1.00","B":"1","a":"2.00","A":"1"}}"#;
        assert!(matches!(Binance.parse(ok, &m), Ok(Frame::Tick(_))));
        let with = |from: &str, to: &str| ok.replace(from, to);
        let cases = [
            ("nope".to_owned(), "malformed"),
            (with(r#""u":7,"#, ""), "missing_field"),
            (with(r#""u":7"#, r#""u":"7""#), "malformed"),
            (with(r#""a":"2.00""#, r#""a":"2.001""#), "bad_price"),
            (with(r#""b":"1.00""#, r#""b":"3.00""#), "crossed"),
            (with(r#""b":"1.00""#, r#""b":"0.00""#), "price_out_of_range"),
            (with("\"BTCUSDC\"", "\"BTC_USDC\""), "unknown_symbol"),
            (with("@bookTicker", "@trade"), "not_book_ticker"),
        ];
        for (frame, label) in cases {
            match Binance.parse(&frame, &m) {
                Err(e) => assert_eq!(e.label(), label, "{frame}"),
                Ok(f) => panic!("{frame} parsed as {f:?}"),
            }
        }
        assert!(matches!(
            Binance.parse(r#"{"error":{"code":2,"msg":"Invalid request"},"id":1}"#, &m),
            Ok(Frame::Error(_))
        ));
        assert!(matches!(
            Binance.parse(r#"{"code":-1121,"msg":"Invalid symbol."}"#, &m),
            Ok(Frame::Error(_))
        ));
    }
}
