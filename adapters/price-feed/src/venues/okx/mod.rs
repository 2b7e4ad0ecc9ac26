//! OKX: the public `bbo-tbt` channel, tick-by-tick best bid and offer
//! (<https://www.okx.com/docs-v5/en/#order-book-trading-market-data-ws-order-book-channel>).
//! Instrument ids are the engine's symbols with a dash (`BTC_USDC` -> `BTC-USDC`). OKX closes
//! a connection that has been silent for 30 s: the client sends the text `ping` every 20 s and
//! the server answers `pong`.
//!
//! A push is `{"arg":{"channel":"bbo-tbt","instId":"BTC-USDC"},"data":[{"asks":[["62000.5",
//! "0.4","0","3"]],"bids":[["61999.5","0.3","0","2"]],"ts":"1732000000000","seqId":123}]}`:
//! each level is `[price, size, "0", orders]`, `ts` the event time in ms as a string, `seqId`
//! the book's sequence. `{"event":"subscribe",…}` acknowledges; `{"event":"error","code":…,
//! "msg":…}` is an error.

pub mod klines;

use std::time::Duration;

use serde::Deserialize;

use crate::connector::Connector;
use crate::frame::{Frame, Markets, ParseError, QuoteFields, from_json, quote};

/// OKX's bbo-tbt channel.
#[derive(Debug, Clone, Copy, Default)]
pub struct Okx;

#[derive(Deserialize)]
struct Arg<'a> {
    #[serde(borrow)]
    channel: Option<&'a str>,
    #[serde(rename = "instId", borrow)]
    inst_id: Option<&'a str>,
}

#[derive(Deserialize)]
struct Book<'a> {
    #[serde(borrow, default)]
    asks: Vec<Vec<&'a str>>,
    #[serde(borrow, default)]
    bids: Vec<Vec<&'a str>>,
    #[serde(borrow)]
    ts: Option<&'a str>,
    #[serde(rename = "seqId")]
    seq_id: Option<u64>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    event: Option<&'a str>,
    #[serde(borrow)]
    arg: Option<Arg<'a>>,
    #[serde(borrow, default)]
    data: Vec<Book<'a>>,
    msg: Option<serde_json::Value>,
}

/// The best level's price: the first element of the first level.
fn best<'a>(levels: &[Vec<&'a str>]) -> Option<&'a str> {
    levels.first().and_then(|l| l.first()).copied()
}

impl Connector for Okx {
    fn name(&self) -> &'static str {
        "okx"
    }

    fn default_url(&self) -> &'static str {
        "wss://ws.okx.com:8443/ws/v5/public"
    }

    fn symbol(&self, engine_symbol: &str) -> String {
        engine_symbol.replace('_', "-")
    }

    fn subscribe(&self, markets: &Markets) -> Vec<String> {
        let args: Vec<serde_json::Value> = markets
            .symbols()
            .map(|s| serde_json::json!({ "channel": "bbo-tbt", "instId": s }))
            .collect();
        vec![serde_json::json!({ "op": "subscribe", "args": args }).to_string()]
    }

    fn parse(&self, text: &str, markets: &Markets) -> Result<Frame, ParseError> {
        if text == "pong" {
            return Ok(Frame::Ack);
        }
        let env: Envelope<'_> = from_json(text)?;
        match env.event {
            Some("error") => return Ok(Frame::Error(format!("{:?}", env.msg))),
            Some(_) => return Ok(Frame::Ack),
            None => {}
        }
        let arg = env.arg.ok_or(ParseError::MissingField("arg"))?;
        if arg.channel != Some("bbo-tbt") {
            return Err(ParseError::NotBookTicker);
        }
        let symbol = arg.inst_id.ok_or(ParseError::MissingField("instId"))?;
        let market =
            markets.get(symbol).ok_or_else(|| ParseError::UnknownSymbol(symbol.to_owned()))?;
        let book = env.data.first().ok_or(ParseError::MissingField("data"))?;
        let fields = QuoteFields { bid: "bids", ask: "asks" };
        let mut tick = quote(market, (best(&book.bids), best(&book.asks)), fields, 0, 0)?;
        tick.update_id = book.seq_id.ok_or(ParseError::MissingField("seqId"))?;
        let ts = book.ts.ok_or(ParseError::MissingField("ts"))?;
        let ms: u64 = ts.parse().map_err(|_| ParseError::BadInteger("ts"))?;
        tick.exchange_time_us = ms.checked_mul(1_000).ok_or(ParseError::BadInteger("ts"))?;
        Ok(Frame::Tick(tick))
    }

    /// `ping` every 20 s: OKX drops a connection silent for 30 s.
    fn keepalive(&self) -> Option<(Duration, String)> {
        Some((Duration::from_secs(20), "ping".to_owned()))
    }

    fn klines(&self) -> Option<&'static dyn crate::klines::Klines> {
        Some(&klines::OkxKlines)
    }
}

#[cfg(test)]
mod tests {
    use engine_core::command::MarketId;
    use engine_core::config::MarketConfig;
    use engine_core::num::Price;

    use super::*;

    fn markets() -> Markets {
        Markets::for_venue(&MarketConfig::defaults(), &Okx, &Default::default())
    }

    #[test]
    fn the_fixture_parses_exactly_with_okx_instrument_ids() {
        let text = include_str!("../../../test_data/okx/bbo_tbt.jsonl");
        let frames: Vec<_> = text.lines().map(|l| Okx.parse(l, &markets())).collect();
        assert_eq!(frames[0], Ok(Frame::Ack));
        let Ok(Frame::Tick(t)) = &frames[1] else { panic!("{frames:?}") };
        assert_eq!(
            (t.market, t.bid, t.ask, t.update_id),
            (MarketId(0), Price(6_199_950), Price(6_200_050), 123)
        );
        assert_eq!(t.exchange_time_us, 1_732_000_000_000_000);
        assert!(frames[1..].iter().all(|f| matches!(f, Ok(Frame::Tick(_)))), "{frames:?}");
        let sub = Okx.subscribe(&markets());
        assert!(sub[0].contains(r#"{"channel":"bbo-tbt","instId":"BTC-USDC"}"#), "{sub:?}");
    }

    #[test]
    fn every_malformed_case_is_an_error_value() {
        let m = markets();
        let ok = r#"{"arg":{"channel":"bbo-tbt","instId":"BTC-USDC"},"data":[{"asks":[["2.00","1","0","1"]],"bids":[["1.00","1","0","1"]],"ts":"5","seqId":9}]}"#;
        assert!(matches!(Okx.parse(ok, &m), Ok(Frame::Tick(_))));
        let with = |from: &str, to: &str| ok.replace(from, to);
        let cases = [
            ("{".to_owned(), "malformed"),
            (with(r#","seqId":9"#, ""), "missing_field"),
            (with(r#""ts":"5""#, r#""ts":"x""#), "bad_integer"),
            (with(r#"[["1.00","1","0","1"]]"#, "[]"), "missing_field"),
            (with(r#""2.00""#, r#""2.001""#), "bad_price"),
            (with(r#""1.00""#, r#""3.00""#), "crossed"),
            (with("BTC-USDC", "DOGE-USDC"), "unknown_symbol"),
            (with("bbo-tbt", "books5"), "not_book_ticker"),
            (
                with(
                    r#""data":[{"asks":[["2.00","1","0","1"]],"bids":[["1.00","1","0","1"]],"ts":"5","seqId":9}]"#,
                    r#""data":[]"#,
                ),
                "missing_field",
            ),
        ];
        for (frame, label) in cases {
            match Okx.parse(&frame, &m) {
                Err(e) => assert_eq!(e.label(), label, "{frame}"),
                Ok(f) => panic!("{frame} parsed as {f:?}"),
            }
        }
        assert_eq!(Okx.parse("pong", &m), Ok(Frame::Ack));
        let error =
            r#"{"event":"error","code":"60012","msg":"Invalid request","connId":"a4d3ae55"}"#;
        assert!(matches!(Okx.parse(error, &m), Ok(Frame::Error(_))));
    }
}
