//! The JSON carried in the `data` field of stream entries (pure; no I/O). Documented with examples
//! in docs/STREAMS.md.
//!
//! - `engine-stream` request: `{"id": "42", "reply_to": "callback-queue:api-1", "kind":
//!   "Deposit", "payload": {"account": 1, "amount": 5000000}}`. `kind` is a
//!   [`CommandKind`] variant name; `payload` its content as serde writes it (`null` for the unit
//!   variants `QueryMarkets`, `QueryStateHash`, `AdminSnapshot`). Money is in micro-USDC, prices and
//!   quantities in the market's steps: the bridge carries the engine's integers, the API converts.
//! - reply (to the request's `reply_to` stream): `{"id": "42", "ok": true, "data": {...},
//!   "items": [...]}` or `{"id": "42", "ok": false, "error": "insufficient_balance", "items": []}`.
//! - `price-stream` tick: a [`Tick`] as JSON.

use engine_core::command::{CommandKind, RequestId, SourceId, Tick};
use engine_core::event::{Item, Reason, ReplyData};
use engine_core::processor::Response;
use serde_json::{Value, json};

/// A request as read from `engine-stream`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The sender's request id (unique across API processes).
    pub id: RequestId,
    /// The stream the reply goes to.
    pub reply_to: String,
    /// What to do.
    pub kind: CommandKind,
}

/// Why an entry could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Not JSON.
    #[error("not JSON: {0}")]
    NotJson(String),
    /// A required field is missing or has the wrong type.
    #[error("missing or invalid field {0}")]
    Field(&'static str),
    /// `kind` is not a command, or `payload` does not fit it.
    #[error("bad command {kind}: {why}")]
    Command {
        /// The kind given.
        kind: String,
        /// What serde said.
        why: String,
    },
}

fn id_of(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.to_string().parse().ok(),
        _ => None,
    }
    .filter(|id| *id != 0)
}

/// The `reply_to` of an entry, if it has a usable one (even when the rest is malformed), so an
/// error reply can still be sent.
pub fn reply_to_of(data: &str) -> Option<(Option<RequestId>, String)> {
    let v: Value = serde_json::from_str(data).ok()?;
    let to = v.get("reply_to")?.as_str()?.to_owned();
    Some((v.get("id").and_then(id_of).map(RequestId), to))
}

/// Decodes a request.
pub fn decode_request(data: &str) -> Result<Request, WireError> {
    let v: Value = serde_json::from_str(data).map_err(|e| WireError::NotJson(e.to_string()))?;
    let id = v.get("id").and_then(id_of).ok_or(WireError::Field("id"))?;
    let reply_to = v
        .get("reply_to")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or(WireError::Field("reply_to"))?;
    let kind = v.get("kind").and_then(Value::as_str).ok_or(WireError::Field("kind"))?;
    let payload = v.get("payload").cloned().unwrap_or(Value::Null);
    let tagged =
        if payload.is_null() { Value::String(kind.to_owned()) } else { json!({ kind: payload }) };
    let kind_parsed = serde_json::from_value::<CommandKind>(tagged)
        .map_err(|e| WireError::Command { kind: kind.to_owned(), why: e.to_string() })?;
    Ok(Request { id: RequestId(id), reply_to: reply_to.to_owned(), kind: kind_parsed })
}

/// Encodes a request.
pub fn encode_request(id: RequestId, reply_to: &str, kind: &CommandKind) -> String {
    let (name, payload) = match serde_json::to_value(kind).unwrap_or(Value::Null) {
        Value::String(unit) => (unit, Value::Null),
        Value::Object(map) => map.into_iter().next().unwrap_or((String::new(), Value::Null)),
        _ => (String::new(), Value::Null),
    };
    json!({ "id": id.0.to_string(), "reply_to": reply_to, "kind": name, "payload": payload })
        .to_string()
}

/// Encodes a reply.
pub fn encode_reply(r: &Response) -> String {
    let mut v = match &r.result {
        Ok(d) => json!({ "id": r.request_id.0.to_string(), "ok": true, "data": d }),
        Err(e) => json!({ "id": r.request_id.0.to_string(), "ok": false, "error": e.code() }),
    };
    v["seq"] = json!(r.seq);
    v["items"] = serde_json::to_value(&r.items).unwrap_or(Value::Array(Vec::new()));
    v.to_string()
}

/// An error reply for a request the engine never saw (malformed): `invalid_request`.
pub fn encode_error_reply(id: Option<RequestId>, reason: Reason) -> String {
    json!({ "id": id.map_or_else(String::new, |i| i.0.to_string()), "ok": false, "error": reason.code(), "items": [] })
        .to_string()
}

/// Decodes a reply.
pub fn decode_reply(data: &str) -> Result<Response, WireError> {
    let v: Value = serde_json::from_str(data).map_err(|e| WireError::NotJson(e.to_string()))?;
    let id = v.get("id").and_then(id_of).ok_or(WireError::Field("id"))?;
    let items: Vec<Item> = match v.get("items") {
        Some(items) => {
            serde_json::from_value(items.clone()).map_err(|_| WireError::Field("items"))?
        }
        None => Vec::new(),
    };
    let result = if v.get("ok").and_then(Value::as_bool).ok_or(WireError::Field("ok"))? {
        let data = v.get("data").cloned().ok_or(WireError::Field("data"))?;
        Ok(serde_json::from_value::<ReplyData>(data).map_err(|_| WireError::Field("data"))?)
    } else {
        let code = v.get("error").and_then(Value::as_str).ok_or(WireError::Field("error"))?;
        Err(Reason::from_code(code).unwrap_or(Reason::InvalidRequest))
    };
    // Absent from an older engine: 0 (a read then does not wait for its own writes).
    let seq = v.get("seq").and_then(Value::as_u64).unwrap_or(0);
    Ok(Response { request_id: RequestId(id), result, items, seq })
}

/// What a `price-stream` entry carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriceEntry {
    /// One feed's tick (`PriceTick`): the tick's JSON, as always.
    Tick(Tick),
    /// One source's quote for a market's index (`SourceQuote`): `{"source": n, "tick": {…}}`.
    Quote(SourceId, Tick),
    /// The sources' clock (`SourceCheck`): `{"check": true}`.
    Check,
}

impl PriceEntry {
    /// The command it becomes in the engine.
    pub fn command(self) -> CommandKind {
        match self {
            PriceEntry::Tick(t) => CommandKind::PriceTick(t),
            PriceEntry::Quote(source, tick) => CommandKind::SourceQuote { source, tick },
            PriceEntry::Check => CommandKind::SourceCheck,
        }
    }
}

/// Encodes an entry for `price-stream`.
pub fn encode_price(e: &PriceEntry) -> String {
    match e {
        // Byte for byte what a tick's entry was before sources existed.
        PriceEntry::Tick(t) => serde_json::to_string(t).unwrap_or_default(),
        PriceEntry::Quote(source, tick) => json!({ "source": source.0, "tick": tick }).to_string(),
        PriceEntry::Check => json!({ "check": true }).to_string(),
    }
}

/// Encodes a feed's tick for `price-stream` (the entry of [`PriceEntry::Tick`]).
pub fn encode_tick(t: &Tick) -> String {
    encode_price(&PriceEntry::Tick(*t))
}

/// Decodes an entry from `price-stream`.
pub fn decode_price(data: &str) -> Result<PriceEntry, WireError> {
    let v: Value = serde_json::from_str(data).map_err(|e| WireError::NotJson(e.to_string()))?;
    let bad = |e: serde_json::Error| WireError::NotJson(e.to_string());
    if v.get("check") == Some(&Value::Bool(true)) {
        return Ok(PriceEntry::Check);
    }
    match v.get("source") {
        Some(source) => {
            let source = source.as_u64().and_then(|s| u8::try_from(s).ok());
            let source = source.ok_or(WireError::NotJson("source: not 0..=255".into()))?;
            let tick =
                serde_json::from_value(v.get("tick").cloned().unwrap_or_default()).map_err(bad)?;
            Ok(PriceEntry::Quote(SourceId(source), tick))
        }
        None => serde_json::from_value(v).map(PriceEntry::Tick).map_err(bad),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine_core::prelude::*;

    #[test]
    fn every_kind_of_request_round_trips() {
        let open = OpenRequest {
            account: AccountId(3),
            market: MarketId(1),
            side: Side::Short,
            leverage: 25,
            size: Size::Quantity(Qty(12_345)),
            expected_price: Some(Price(300_000)),
            max_slippage_bps: 10,
            take_profit: None,
            stop_loss: Some(Price(310_000)),
            client_order_id: ClientOrderId::new("abc"),
        };
        let kinds = [
            CommandKind::CreateAccount {
                login: Login::new("a@x").unwrap(),
                credential: Credential::new("$argon2id$x").unwrap(),
            },
            CommandKind::Deposit {
                account: AccountId(1),
                amount: Usdc(i128::from(i64::MAX) * 4),
                key: None,
            },
            CommandKind::OpenPosition(open),
            CommandKind::ClosePosition {
                account: AccountId(1),
                position: PositionId(9),
                quantity: None,
                key: None,
            },
            CommandKind::QueryPositions { account: AccountId(1), status: PositionStatus::Closed },
            CommandKind::QueryMarkets,
            CommandKind::AdminSnapshot,
        ];
        for kind in kinds {
            let wire = encode_request(RequestId(42), "callback-queue:api-1", &kind);
            let back = decode_request(&wire).unwrap();
            assert_eq!(
                back,
                Request { id: RequestId(42), reply_to: "callback-queue:api-1".into(), kind },
                "{wire}"
            );
        }
    }

    /// The names on the wire are the protocol: a Rust rename must fail here, not in production.
    #[test]
    fn the_wire_names_are_pinned() {
        let a = AccountId(1);
        let open = OpenRequest {
            account: a,
            market: MarketId(0),
            side: Side::Long,
            leverage: 2,
            size: Size::Margin(Usdc(5)),
            expected_price: None,
            max_slippage_bps: 0,
            take_profit: None,
            stop_loss: None,
            client_order_id: None,
        };
        let login = Login::new("a@x").unwrap();
        let kinds = [
            (
                CommandKind::CreateAccount { login, credential: Credential::empty() },
                "create_account",
            ),
            (CommandKind::Deposit { account: a, amount: Usdc(1), key: None }, "deposit"),
            (CommandKind::Withdraw { account: a, amount: Usdc(1), key: None }, "withdraw"),
            (CommandKind::OpenPosition(open), "open_position"),
            (
                CommandKind::ClosePosition {
                    account: a,
                    position: PositionId(1),
                    quantity: Some(CloseSize::Decimal(ExactDecimal { units: 5, scale: 1 })),
                    key: None,
                },
                "close_position",
            ),
            (
                CommandKind::AddMargin {
                    account: a,
                    position: PositionId(1),
                    amount: Usdc(1),
                    key: None,
                },
                "add_margin",
            ),
            (CommandKind::QueryAccount { account: a }, "query_account"),
            (
                CommandKind::QueryPositions { account: a, status: PositionStatus::Open },
                "query_positions",
            ),
            (CommandKind::QueryPosition { account: a, position: PositionId(1) }, "query_position"),
            (CommandKind::QueryCredential { login }, "query_credential"),
            (CommandKind::QueryMarkets, "query_markets"),
            (CommandKind::QueryStateHash, "query_state_hash"),
            (CommandKind::AdminSnapshot, "admin_snapshot"),
        ];
        for (kind, name) in kinds {
            let v: Value = serde_json::from_str(&encode_request(RequestId(1), "r", &kind)).unwrap();
            assert_eq!(v["kind"], name, "{v}");
        }
        let open_wire: Value = serde_json::from_str(&encode_request(
            RequestId(1),
            "r",
            &CommandKind::OpenPosition(open),
        ))
        .unwrap();
        assert_eq!(open_wire["payload"]["side"], "long");
        assert_eq!(open_wire["payload"]["size"], json!({ "margin": 5 }));
        let close: Value =
            serde_json::from_str(&encode_request(RequestId(1), "r", &kinds_close())).unwrap();
        assert_eq!(close["payload"]["quantity"], json!({ "decimal": { "units": 5, "scale": 1 } }));
        let reply = encode_reply(&Response {
            request_id: RequestId(9),
            result: Ok(ReplyData::AccountCreated { account: a }),
            items: vec![],
            seq: 3,
        });
        assert_eq!(
            serde_json::from_str::<Value>(&reply).unwrap()["data"],
            json!({ "account_created": { "account": 1 } })
        );
        let event =
            Event::PriceRejected { market: MarketId(0), reason: Reason::StaleUpdate, update_id: 3 };
        assert_eq!(
            serde_json::to_value(event).unwrap(),
            json!({ "price_rejected": { "market": 0, "reason": "stale_update", "update_id": 3 } })
        );
    }

    fn kinds_close() -> CommandKind {
        CommandKind::ClosePosition {
            account: AccountId(1),
            position: PositionId(1),
            quantity: Some(CloseSize::Decimal(ExactDecimal { units: 5, scale: 1 })),
            key: None,
        }
    }

    #[test]
    fn malformed_requests_are_typed_errors_and_keep_their_reply_to() {
        let cases = [
            ("not json", "not_json"),
            (r#"{"reply_to":"r","kind":"query_markets"}"#, "field"),
            (r#"{"id":"0","reply_to":"r","kind":"query_markets"}"#, "field"),
            (r#"{"id":"7","kind":"query_markets"}"#, "field"),
            (r#"{"id":"7","reply_to":"r","kind":"Explode"}"#, "command"),
            (r#"{"id":"7","reply_to":"r","kind":"deposit","payload":{"account":1}}"#, "command"),
            (
                r#"{"id":"7","reply_to":"r","kind":"deposit","payload":{"account":1,"amount":"x"}}"#,
                "command",
            ),
        ];
        for (data, want) in cases {
            let got = match decode_request(data) {
                Err(WireError::NotJson(_)) => "not_json",
                Err(WireError::Field(_)) => "field",
                Err(WireError::Command { .. }) => "command",
                Ok(r) => panic!("{data} decoded as {r:?}"),
            };
            assert_eq!(got, want, "{data}");
        }
        assert_eq!(
            reply_to_of(r#"{"id":"7","reply_to":"r","kind":"Explode"}"#),
            Some((Some(RequestId(7)), "r".into()))
        );
        assert_eq!(reply_to_of("junk"), None);
    }

    #[test]
    fn replies_round_trip() {
        let v = PositionView {
            id: PositionId(1),
            account: AccountId(2),
            market: MarketId(0),
            side: Side::Long,
            status: PositionStatus::Open,
            quantity: Qty(5),
            entry_price: Price(6_000_000),
            margin: Usdc(100_000_000),
            leverage: 10,
            liquidation_price: Price(5_427_136),
            take_profit: None,
            stop_loss: None,
            trailing_stop: Some(Trailing {
                distance: TrailDistance::Bps(150),
                stop_price: Price(5_910_000),
            }),
            unrealized_pnl: Usdc(-5),
            opened_at_ns: 1,
            close: None,
        };
        for r in [
            Response {
                request_id: RequestId(5),
                result: Ok(ReplyData::Opened(v)),
                items: vec![],
                seq: 41,
            },
            Response {
                request_id: RequestId(6),
                result: Err(Reason::InsufficientBalance),
                items: vec![],
                seq: 42,
            },
            Response {
                request_id: RequestId(7),
                result: Ok(ReplyData::List { count: 1 }),
                items: vec![Item::Position(v)],
                seq: 0,
            },
        ] {
            assert_eq!(decode_reply(&encode_reply(&r)).unwrap(), r);
        }
        let t = Tick {
            market: MarketId(2),
            bid: Price(1),
            ask: Price(2),
            update_id: 3,
            exchange_time_us: 4,
        };
        for e in [PriceEntry::Tick(t), PriceEntry::Quote(SourceId(2), t), PriceEntry::Check] {
            assert_eq!(decode_price(&encode_price(&e)), Ok(e));
        }
        assert_eq!(
            encode_price(&PriceEntry::Tick(t)),
            serde_json::to_string(&t).unwrap(),
            "a tick's entry is the tick, as before sources"
        );
        assert!(decode_price(r#"{"source":300,"tick":{}}"#).is_err());
    }
}
