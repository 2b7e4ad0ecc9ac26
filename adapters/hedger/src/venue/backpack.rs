//! Backpack Exchange's order API (docs.backpack.exchange, "Authentication"): every request is
//! signed with an ED25519 key. The string signed is the instruction, then the request's body
//! (or query) fields in alphabetical order as a query string, then `&timestamp=<ms>&window=<ms>`:
//! `instruction=orderExecute&clientId=7&orderType=Market&quantity=0.01&side=Bid&symbol=BTC_USDC_PERP&timestamp=…&window=5000`;
//! the base64 signature goes in `X-Signature`, the base64 public key in `X-API-Key`, the two
//! numbers in `X-Timestamp` and `X-Window`.
//!
//! - `POST /api/v1/order` (`orderExecute`): `{clientId, orderType: "Market", quantity, side:
//!   "Bid"|"Ask", symbol}` → the order with `status`, `executedQuantity`,
//!   `executedQuoteQuantity`.
//! - `GET /api/v1/order?clientId&symbol` (`orderQuery`): the order while open, else 404; then
//!   `GET /wapi/v1/history/orders?symbol&limit=1000` (`orderHistoryQueryAll`), searched for the
//!   client id.
//! - `GET /api/v1/position` (`positionQuery`): `[{symbol, netQuantity}]`.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer, SigningKey};
use engine_core::num::{format_fixed, parse_fixed_i128};
use serde_json::Value;

use super::{Fill, Order, Venue, VenueError};
use crate::BoxFuture;

/// How long a request may be valid at the venue (its default).
pub const WINDOW_MS: u64 = 5_000;
/// Most bytes of a reply read.
const REPLY_BYTES_MAX: usize = 4 << 20;

/// A Backpack account's signed order API.
pub struct Backpack {
    base: String,
    key: SigningKey,
    client: reqwest::Client,
}

impl std::fmt::Debug for Backpack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key never: only its public half.
        f.debug_struct("Backpack")
            .field("base", &self.base)
            .field("api_key", &self.api_key())
            .finish()
    }
}

/// The string Backpack signs: `instruction=…`, the fields sorted by key, then timestamp and
/// window.
pub fn signing_string(
    instruction: &str,
    fields: &[(&str, String)],
    timestamp_ms: u64,
    window_ms: u64,
) -> String {
    let mut sorted: Vec<&(&str, String)> = fields.iter().collect();
    sorted.sort_by_key(|(k, _)| *k);
    let mut s = format!("instruction={instruction}");
    for (k, v) in sorted {
        s.push('&');
        s.push_str(k);
        s.push('=');
        s.push_str(v);
    }
    s.push_str(&format!("&timestamp={timestamp_ms}&window={window_ms}"));
    s
}

impl Backpack {
    /// A client of the API at `base` (e.g. `https://api.backpack.exchange`) signing with the
    /// 32-byte ED25519 seed `seed`, giving up on a request after `timeout`.
    pub fn new(base: &str, seed: [u8; 32], timeout: Duration) -> Result<Backpack, VenueError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| VenueError::Unavailable(format!("no HTTP client: {e}")))?;
        Ok(Backpack {
            base: base.trim_end_matches('/').to_owned(),
            key: SigningKey::from_bytes(&seed),
            client,
        })
    }

    /// The base64 public key (`X-API-Key`).
    pub fn api_key(&self) -> String {
        B64.encode(self.key.verifying_key().as_bytes())
    }

    async fn call(
        &self,
        (method, path, instruction): (reqwest::Method, &str, &str),
        fields: Vec<(&str, String)>,
    ) -> Result<Option<Value>, VenueError> {
        let ts = ground::time::now_ns() / 1_000_000;
        let signed = signing_string(instruction, &fields, ts, WINDOW_MS);
        let signature = B64.encode(self.key.sign(signed.as_bytes()).to_bytes());
        let url = format!("{}{path}", self.base);
        let mut req = self
            .client
            .request(method.clone(), url)
            .header("X-API-Key", self.api_key())
            .header("X-Signature", signature)
            .header("X-Timestamp", ts.to_string())
            .header("X-Window", WINDOW_MS.to_string());
        req = if method == reqwest::Method::GET {
            req.query(&fields)
        } else {
            let body: serde_json::Map<String, Value> = fields
                .iter()
                .map(|(k, v)| {
                    let v = if *k == "clientId" {
                        v.parse::<u64>().map_or(Value::Null, Value::from)
                    } else {
                        Value::from(v.clone())
                    };
                    ((*k).to_owned(), v)
                })
                .collect();
            req.json(&body)
        };
        let resp = req.send().await.map_err(|e| VenueError::Unavailable(e.to_string()))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| VenueError::Unavailable(e.to_string()))?;
        if bytes.len() > REPLY_BYTES_MAX {
            return Err(VenueError::Unavailable("reply too large".into()));
        }
        let text = String::from_utf8_lossy(&bytes);
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if status.is_client_error() {
            return Err(VenueError::Refused(format!(
                "{status}: {}",
                text.chars().take(200).collect::<String>()
            )));
        }
        if !status.is_success() {
            return Err(VenueError::Unavailable(format!("{status}")));
        }
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| VenueError::Unavailable(format!("unreadable reply: {e}")))
    }
}

/// A decimal string as steps of `decimals` (exact; anything else is the venue's fault).
fn steps(v: &Value, decimals: u32) -> Result<i128, VenueError> {
    let s = v.as_str().unwrap_or("0");
    parse_fixed_i128(s, decimals)
        .map_err(|e| VenueError::Unavailable(format!("quantity {s:?}: {e}")))
}

/// A quote amount as micro-USDC, truncated toward zero past 6 decimals (the venue may report
/// more; the journal keeps what it can hold exactly).
fn micros(v: &Value) -> Result<i128, VenueError> {
    let s = v.as_str().unwrap_or("0");
    let cut = match s.split_once('.') {
        Some((i, f)) if f.len() > 6 => format!("{i}.{}", &f[..6]),
        _ => s.to_owned(),
    };
    parse_fixed_i128(&cut, 6).map_err(|e| VenueError::Unavailable(format!("quote {s:?}: {e}")))
}

/// An order reply as a signed fill.
fn fill_of(v: &Value, decimals: u32) -> Result<Fill, VenueError> {
    let buy = v["side"] == "Bid";
    let executed = i64::try_from(steps(&v["executedQuantity"], decimals)?)
        .map_err(|_| VenueError::Unavailable("quantity out of range".into()))?;
    let quote = i64::try_from(micros(&v["executedQuoteQuantity"])?)
        .map_err(|_| VenueError::Unavailable("quote out of range".into()))?;
    let status = match v["status"].as_str().unwrap_or("") {
        "Filled" => "filled",
        "PartiallyFilled" => "partially_filled",
        "New" => "new",
        "Cancelled" => "cancelled",
        "Expired" => "expired",
        other => return Err(VenueError::Unavailable(format!("status {other:?}"))),
    };
    Ok(Fill {
        status: status.to_owned(),
        executed: if buy { executed } else { -executed },
        quote_micros: if buy { -quote } else { quote },
    })
}

impl Venue for Backpack {
    fn place<'a>(&'a self, o: &'a Order) -> BoxFuture<'a, Result<Fill, VenueError>> {
        Box::pin(async move {
            let fields = vec![
                ("clientId", o.client_id.to_string()),
                ("orderType", "Market".to_owned()),
                ("quantity", format_fixed(i128::from(o.qty.unsigned_abs()), o.qty_decimals)),
                ("side", if o.qty > 0 { "Bid" } else { "Ask" }.to_owned()),
                ("symbol", o.symbol.clone()),
            ];
            let reply =
                self.call((reqwest::Method::POST, "/api/v1/order", "orderExecute"), fields).await?;
            let reply = reply.ok_or_else(|| VenueError::Refused("404 on order execute".into()))?;
            fill_of(&reply, o.qty_decimals)
        })
    }

    fn find<'a>(
        &'a self,
        symbol: &'a str,
        client_id: u32,
        decimals: u32,
    ) -> BoxFuture<'a, Result<Option<Fill>, VenueError>> {
        Box::pin(async move {
            let open = vec![("clientId", client_id.to_string()), ("symbol", symbol.to_owned())];
            if let Some(o) =
                self.call((reqwest::Method::GET, "/api/v1/order", "orderQuery"), open).await?
            {
                return fill_of(&o, decimals).map(Some);
            }
            let history = vec![("limit", "1000".to_owned()), ("symbol", symbol.to_owned())];
            let path = (reqwest::Method::GET, "/wapi/v1/history/orders", "orderHistoryQueryAll");
            let orders = self.call(path, history).await?.unwrap_or(Value::Null);
            let found = orders
                .as_array()
                .into_iter()
                .flatten()
                .find(|o| o["clientId"].as_u64() == Some(u64::from(client_id)));
            found.map(|o| fill_of(o, decimals)).transpose()
        })
    }

    fn position<'a>(
        &'a self,
        symbol: &'a str,
        decimals: u32,
    ) -> BoxFuture<'a, Result<i64, VenueError>> {
        Box::pin(async move {
            let reply = self
                .call((reqwest::Method::GET, "/api/v1/position", "positionQuery"), Vec::new())
                .await?;
            let reply = reply.unwrap_or(Value::Null);
            let Some(p) = reply.as_array().into_iter().flatten().find(|p| p["symbol"] == symbol)
            else {
                return Ok(0);
            };
            i64::try_from(steps(&p["netQuantity"], decimals)?)
                .map_err(|_| VenueError::Unavailable("position out of range".into()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Backpack's own example (docs.backpack.exchange, "Signature Generation").
    #[test]
    fn the_signed_string_is_the_documented_one() {
        let fields = [("symbol", "BTC_USDT".to_owned()), ("orderId", "28".to_owned())];
        assert_eq!(
            signing_string("orderCancel", &fields, 1_614_550_000_000, 5_000),
            "instruction=orderCancel&orderId=28&symbol=BTC_USDT&timestamp=1614550000000&window=5000"
        );
    }

    #[test]
    fn a_reply_is_a_signed_fill_in_steps_and_micros() {
        let v: Value = serde_json::from_str(
            r#"{"side":"Ask","status":"PartiallyFilled","executedQuantity":"0.50000","executedQuoteQuantity":"30000.1234567"}"#,
        )
        .unwrap();
        let f = fill_of(&v, 5).unwrap();
        assert_eq!(
            (f.status.as_str(), f.executed, f.quote_micros),
            ("partially_filled", -50_000, 30_000_123_456)
        );
    }
}
