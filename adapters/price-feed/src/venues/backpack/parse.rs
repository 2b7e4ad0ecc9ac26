//! Backpack's bookTicker frames into engine ticks, exactly. No I/O.
//!
//! A frame is `{"stream": "bookTicker.<SYMBOL>", "data": {...}}` where `data` carries
//! `e` ("bookTicker"), `E` (event time, µs), `s` (symbol), `a`/`A` (best ask price/size),
//! `b`/`B` (best bid price/size), `u` (update id), `T` (engine time, µs). `u`, `E` and `T` arrive as
//! strings or numbers. Prices are made exact by [`crate::frame::quote`].
//!
//! Subscription acknowledgements (`{"id":…,"result":null}`) are [`Frame::Ack`]; error frames
//! (`{"error":…}`) are [`Frame::Error`]; anything else that is not a valid bookTicker is a
//! [`ParseError`], counted by the caller.

use serde::Deserialize;
use serde::de::{self, Deserializer};

use crate::frame::{Frame, Markets, ParseError, QuoteFields, StreamEnvelope, from_json, quote};

/// An integer that may arrive as a JSON string or number.
#[derive(Debug, Clone, Copy)]
struct Int(Option<u64>);

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = Int;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an integer as a string or number")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Int, E> {
                Ok(Int(Some(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Int, E> {
                Ok(Int(u64::try_from(v).ok()))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Int, E> {
                Ok(Int(None))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Int, E> {
                Ok(Int(v.parse().ok()))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
struct Data<'a> {
    #[serde(rename = "e", borrow)]
    event: Option<&'a str>,
    #[serde(rename = "E")]
    event_time: Option<Int>,
    #[serde(rename = "s", borrow)]
    symbol: Option<&'a str>,
    #[serde(rename = "a", borrow)]
    ask: Option<&'a str>,
    #[serde(rename = "b", borrow)]
    bid: Option<&'a str>,
    #[serde(rename = "u")]
    update_id: Option<Int>,
    #[serde(rename = "T")]
    engine_time: Option<Int>,
}

fn int(v: Option<Int>, field: &'static str) -> Result<u64, ParseError> {
    v.ok_or(ParseError::MissingField(field))?.0.ok_or(ParseError::BadInteger(field))
}

/// Parses one text frame.
pub fn parse_frame(text: &str, markets: &Markets) -> Result<Frame, ParseError> {
    let env: StreamEnvelope<'_, Data<'_>> = from_json(text)?;
    let (stream, data) = match env.open() {
        Ok(opened) => opened,
        Err(other) => return other,
    };
    if stream.is_some_and(|s| !s.starts_with("bookTicker.")) {
        return Err(ParseError::NotBookTicker);
    }
    if data.event.is_some_and(|e| e != "bookTicker") {
        return Err(ParseError::NotBookTicker);
    }
    let symbol = data.symbol.ok_or(ParseError::MissingField("s"))?;
    let market = markets.get(symbol).ok_or_else(|| ParseError::UnknownSymbol(symbol.to_owned()))?;
    let fields = QuoteFields { bid: "b", ask: "a" };
    // Prices are checked before the integers: a bad price is the cause a reader wants to see.
    let mut tick = quote(market, (data.bid, data.ask), fields, 0, 0)?;
    tick.update_id = int(data.update_id, "u")?;
    tick.exchange_time_us = int(data.event_time, "E")?;
    let _engine_time = int(data.engine_time, "T")?;
    Ok(Frame::Tick(tick))
}

#[cfg(test)]
mod tests {
    use engine_core::command::{MarketId, Tick};
    use engine_core::config::MarketConfig;
    use engine_core::num::Price;

    use super::*;

    fn markets() -> Markets {
        Markets::new(&MarketConfig::defaults())
    }

    #[test]
    fn the_fixture_parses_exactly() {
        let text = include_str!("../../../test_data/backpack/book_ticker.jsonl");
        let frames: Vec<_> = text.lines().map(|l| parse_frame(l, &markets())).collect();
        assert_eq!(
            frames[0],
            Ok(Frame::Tick(Tick {
                market: MarketId(0),
                bid: Price(6_199_950),
                ask: Price(6_200_050),
                update_id: 1_001,
                exchange_time_us: 1_732_000_000_000_000,
            }))
        );
        // u/E/T as numbers parse the same.
        assert!(matches!(frames[1], Ok(Frame::Tick(Tick { update_id: 1_002, .. }))));
        assert!(frames.iter().all(|f| matches!(f, Ok(Frame::Tick(_)))), "{frames:?}");
    }

    #[test]
    fn every_malformed_case_is_an_error_value() {
        let m = markets();
        let ok = r#"{"stream":"bookTicker.BTC_USDC","data":{"e":"bookTicker","E":1,"s":"BTC_USDC","a":"2.00","A":"1","b":"1.00","B":"1","u":"5","T":1}}"#;
        assert!(matches!(parse_frame(ok, &m), Ok(Frame::Tick(_))));
        let with = |from: &str, to: &str| ok.replace(from, to);
        let cases: Vec<(String, &str)> = vec![
            ("not json".into(), "malformed"),
            ("".into(), "malformed"),
            ("[1,2]".into(), "malformed"),
            (r#"{"stream":"x"}"#.into(), "missing_field"),
            (with(r#""s":"BTC_USDC","#, ""), "missing_field"),
            (with(r#""a":"2.00","#, ""), "missing_field"),
            (with(r#""u":"5","#, ""), "missing_field"),
            (with(r#""E":1,"#, ""), "missing_field"),
            (with(r#""a":"2.00""#, r#""a":"two""#), "bad_price"),
            (with(r#""a":"2.00""#, r#""a":"2.001""#), "bad_price"),
            (with(r#""a":"2.00""#, r#""a":2.0"#), "malformed"),
            (with(r#""b":"1.00""#, r#""b":"-1.00""#), "price_out_of_range"),
            (with(r#""b":"1.00""#, r#""b":"0""#), "price_out_of_range"),
            (with(r#""b":"1.00""#, r#""b":"3.00""#), "crossed"),
            (with("BTC_USDC\",\"a", "DOGE_USDC\",\"a"), "unknown_symbol"),
            (with(r#""u":"5""#, r#""u":"x""#), "bad_integer"),
            (with(r#""u":"5""#, r#""u":-5"#), "bad_integer"),
            (with(r#""u":"5""#, r#""u":1.5"#), "malformed"),
            (with("bookTicker.BTC", "depth.BTC"), "not_book_ticker"),
            (with(r#""e":"bookTicker""#, r#""e":"trade""#), "not_book_ticker"),
        ];
        for (frame, label) in cases {
            match parse_frame(&frame, &m) {
                Err(e) => assert_eq!(e.label(), label, "{frame}"),
                Ok(f) => panic!("{frame} parsed as {f:?}"),
            }
        }
        assert_eq!(parse_frame(r#"{"id":1,"result":null}"#, &m), Ok(Frame::Ack));
        assert!(matches!(
            parse_frame(r#"{"error":{"code":4000,"message":"bad"}}"#, &m),
            Ok(Frame::Error(_))
        ));
    }

    proptest::proptest! {
        #[test]
        fn the_parser_never_panics_on_any_text(s in ".{0,300}") {
            let _ = parse_frame(&s, &markets());
        }

        #[test]
        fn prices_round_trip_exactly_or_are_refused(bid in 1i64..10_000_000, spread in 0i64..1000, extra in 0u8..3) {
            let m = markets();
            let fmt = |v: i64| format!("{}.{:02}{}", v / 100, v % 100, "7".repeat(usize::from(extra)));
            let f = format!(r#"{{"stream":"bookTicker.BTC_USDC","data":{{"e":"bookTicker","E":"1","s":"BTC_USDC","a":"{}","A":"1","b":"{}","B":"1","u":9,"T":"1"}}}}"#, fmt(bid + spread), fmt(bid));
            match parse_frame(&f, &m) {
                Ok(Frame::Tick(t)) => { proptest::prop_assert_eq!(extra, 0); proptest::prop_assert_eq!((t.bid.0, t.ask.0), (bid, bid + spread)); }
                Err(e) => { proptest::prop_assert!(extra > 0); proptest::prop_assert_eq!(e.label(), "bad_price"); }
                Ok(other) => proptest::prop_assert!(false, "{other:?}"),
            }
        }
    }
}
