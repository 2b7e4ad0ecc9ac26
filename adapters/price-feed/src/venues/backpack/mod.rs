//! Backpack Exchange: the public `bookTicker.<SYMBOL>` stream
//! (<https://docs.backpack.exchange/#tag/Streams>). Symbols are the engine's own
//! (`BTC_USDC`); the server keeps the connection alive with WebSocket pings, which the client
//! answers.

pub mod klines;
pub mod parse;

use crate::connector::Connector;
use crate::frame::{Frame, Markets, ParseError};

/// Backpack's bookTicker stream.
#[derive(Debug, Clone, Copy, Default)]
pub struct Backpack;

impl Connector for Backpack {
    fn name(&self) -> &'static str {
        "backpack"
    }

    fn default_url(&self) -> &'static str {
        "wss://ws.backpack.exchange"
    }

    /// One SUBSCRIBE frame naming every market's `bookTicker.<SYMBOL>` stream.
    fn subscribe(&self, markets: &Markets) -> Vec<String> {
        let params: Vec<String> = markets.symbols().map(|s| format!("bookTicker.{s}")).collect();
        vec![serde_json::json!({ "method": "SUBSCRIBE", "params": params }).to_string()]
    }

    fn parse(&self, text: &str, markets: &Markets) -> Result<Frame, ParseError> {
        parse::parse_frame(text, markets)
    }

    fn klines(&self) -> Option<&'static dyn crate::klines::Klines> {
        Some(&klines::BackpackKlines)
    }
}
