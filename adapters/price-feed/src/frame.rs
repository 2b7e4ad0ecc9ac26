//! What every venue's parser produces, whatever the venue: a [`Frame`] or a [`ParseError`],
//! prices made exact by [`quote`], markets looked up by the venue's symbol in [`Markets`], and
//! repeats dropped by [`Dedup`]. Pure: no I/O.

use engine_core::command::{MarketId, Tick};
use engine_core::config::MarketConfig;
use engine_core::num::{DecimalError, Price, parse_fixed};
use serde::Deserialize;

/// A configured market as a venue's parser needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarketRef {
    /// The engine's market id.
    pub id: MarketId,
    /// Decimals of the market's price.
    pub price_decimals: u32,
    /// Highest price accepted, in ticks.
    pub max_price_ticks: i64,
}

/// A venue's symbol -> market lookup, built once per connection from the engine's markets.
#[derive(Debug, Clone)]
pub struct Markets {
    entries: Vec<(String, MarketRef)>,
}

impl Markets {
    /// From the engine's markets, in market-id order, under their engine symbols (`BTC_USDC`).
    pub fn new(markets: &[MarketConfig]) -> Markets {
        Markets::mapped(markets, |m| m.symbol.clone())
    }

    /// The markets under the symbols `symbol` gives each (see `Markets::for_venue`).
    pub fn mapped(markets: &[MarketConfig], symbol: impl Fn(&MarketConfig) -> String) -> Markets {
        let entries = markets
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                let id = MarketId(u16::try_from(i).ok()?);
                let r = MarketRef {
                    id,
                    price_decimals: m.price_decimals,
                    max_price_ticks: m.max_price_ticks,
                };
                Some((symbol(m), r))
            })
            .collect();
        Markets { entries }
    }

    /// The market whose symbol (the venue's) is `symbol`.
    pub fn get(&self, symbol: &str) -> Option<MarketRef> {
        self.entries.iter().find(|e| e.0 == symbol).map(|e| e.1)
    }

    /// The symbols (the venue's), in market-id order: what to subscribe to.
    pub fn symbols(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.0.as_str())
    }
}

/// What a frame was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A valid best bid/ask for a configured market.
    Tick(Tick),
    /// A subscription acknowledgement, a heartbeat or another control reply.
    Ack,
    /// The server reported an error.
    Error(String),
}

/// Why a frame was not a usable tick. Each has a stable label ([`ParseError::label`]) counted
/// per cause in the feed's health.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not JSON, or JSON of the wrong shape.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// A field is missing.
    #[error("missing field {0}")]
    MissingField(&'static str),
    /// A stream or event other than the venue's best bid/offer.
    #[error("not a best bid/offer frame")]
    NotBookTicker,
    /// The symbol is not configured.
    #[error("unknown symbol {0}")]
    UnknownSymbol(String),
    /// A price is not a decimal or has too many decimals for its market.
    #[error("bad price {field}: {error}")]
    BadPrice {
        /// The venue's field name.
        field: &'static str,
        /// Why.
        error: DecimalError,
    },
    /// A price is zero, negative or above the market's limit.
    #[error("price out of range")]
    PriceOutOfRange,
    /// The ask is below the bid.
    #[error("crossed book: ask below bid")]
    Crossed,
    /// An update id or a time is not a non-negative integer.
    #[error("bad integer in {0}")]
    BadInteger(&'static str),
    /// A binary WebSocket frame.
    #[error("binary frame")]
    Binary,
}

/// Labels of parse-error counters, in the order of [`ParseError::index`].
pub const ERROR_LABELS: [&str; 9] = [
    "malformed",
    "missing_field",
    "not_book_ticker",
    "unknown_symbol",
    "bad_price",
    "price_out_of_range",
    "crossed",
    "bad_integer",
    "binary",
];

impl ParseError {
    /// Position of this cause in [`ERROR_LABELS`] (a `match`: a new cause must be placed).
    pub fn index(&self) -> usize {
        match self {
            ParseError::Malformed(_) => 0,
            ParseError::MissingField(_) => 1,
            ParseError::NotBookTicker => 2,
            ParseError::UnknownSymbol(_) => 3,
            ParseError::BadPrice { .. } => 4,
            ParseError::PriceOutOfRange => 5,
            ParseError::Crossed => 6,
            ParseError::BadInteger(_) => 7,
            ParseError::Binary => 8,
        }
    }

    /// A stable label for counters.
    pub fn label(&self) -> &'static str {
        ERROR_LABELS[self.index()]
    }
}

/// Parses a frame's JSON, or says it is malformed.
pub fn from_json<'a, T: Deserialize<'a>>(text: &'a str) -> Result<T, ParseError> {
    serde_json::from_str(text).map_err(|e| ParseError::Malformed(e.to_string()))
}

/// The envelope Backpack and Binance share: `{"stream": …, "data": …}` for a stream's message,
/// `{"id": …, "result": …}` for an acknowledgement, `{"error": …}` (or Binance's
/// `{"code": …, "msg": …}`) for an error.
#[derive(Debug, Deserialize)]
pub struct StreamEnvelope<'a, D> {
    /// The stream's name.
    #[serde(borrow)]
    pub stream: Option<&'a str>,
    /// The stream's message.
    pub data: Option<D>,
    error: Option<serde_json::Value>,
    msg: Option<serde_json::Value>,
    id: Option<serde_json::Value>,
}

impl<'a, D> StreamEnvelope<'a, D> {
    /// The stream's name and message, or what the frame is instead (an error frame, an
    /// acknowledgement, or a frame with neither).
    pub fn open(self) -> Result<(Option<&'a str>, D), Result<Frame, ParseError>> {
        if let Some(err) = self.error.or(self.msg) {
            return Err(Ok(Frame::Error(err.to_string())));
        }
        match self.data {
            Some(data) => Ok((self.stream, data)),
            None if self.id.is_some() => Err(Ok(Frame::Ack)),
            None => Err(Err(ParseError::MissingField("data"))),
        }
    }
}

/// Field names of one venue's quote, for the errors [`quote`] returns.
#[derive(Debug, Clone, Copy)]
pub struct QuoteFields {
    /// The bid price's field.
    pub bid: &'static str,
    /// The ask price's field.
    pub ask: &'static str,
}

/// A best bid/ask as text, exactly as the venue sent it, made into a tick: exact decimals (more
/// than the market allows is an error, never a rounded price), positive, within the market's
/// limit, not crossed. The same checks for every venue.
pub fn quote(
    market: MarketRef,
    (bid, ask): (Option<&str>, Option<&str>),
    fields: QuoteFields,
    update_id: u64,
    exchange_time_us: u64,
) -> Result<Tick, ParseError> {
    let price = |text: Option<&str>, field: &'static str| {
        price(market, text.ok_or(ParseError::MissingField(field))?, field)
    };
    let bid = price(bid, fields.bid)?;
    let ask = price(ask, fields.ask)?;
    if bid.0 <= 0 || ask.0 <= 0 || ask.0 > market.max_price_ticks {
        return Err(ParseError::PriceOutOfRange);
    }
    if ask < bid {
        return Err(ParseError::Crossed);
    }
    Ok(Tick { market: market.id, bid, ask, update_id, exchange_time_us })
}

/// A venue's price text (the venue's `field`) in `market`'s ticks, exactly: more decimals than
/// the market has is an error, never a rounded price.
pub fn price(market: MarketRef, text: &str, field: &'static str) -> Result<Price, ParseError> {
    parse_fixed(text, market.price_decimals)
        .map(Price)
        .map_err(|error| ParseError::BadPrice { field, error })
}

/// Drops duplicate and out-of-order ticks per market by update id.
#[derive(Debug, Clone, Default)]
pub struct Dedup {
    last: Vec<u64>,
}

impl Dedup {
    /// True if `t` is newer than the last tick accepted for its market (and records it).
    pub fn accept(&mut self, t: &Tick) -> bool {
        let i = usize::from(t.market.0);
        if self.last.len() <= i {
            self.last.resize(i + 1, 0);
        }
        if t.update_id <= self.last[i] && self.last[i] != 0 {
            return false;
        }
        self.last[i] = t.update_id;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_drops_repeats_and_reorders() {
        let mut d = Dedup::default();
        let t = |u| Tick {
            market: MarketId(1),
            bid: Price(1),
            ask: Price(1),
            update_id: u,
            exchange_time_us: 0,
        };
        assert!(d.accept(&t(5)));
        assert!(!d.accept(&t(5)));
        assert!(!d.accept(&t(4)));
        assert!(d.accept(&t(6)));
    }

    #[test]
    fn every_label_is_its_own_index() {
        for (i, label) in ERROR_LABELS.iter().enumerate() {
            assert_eq!(ERROR_LABELS.iter().position(|l| l == label), Some(i));
        }
        assert_eq!(ParseError::Binary.label(), "binary");
        assert_eq!(ParseError::Crossed.label(), "crossed");
    }
}
