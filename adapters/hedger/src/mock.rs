//! A local mock of Backpack's order API for tests (feature `test-support`): it checks every
//! request's ED25519 signature against the documented signing string, and can fill, fill in
//! part, refuse, fail, or take an order and answer too late; quantities in 10^-5 of the base
//! asset, every fill at 60 000.00.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde_json::{Value, json};

use crate::venue::backpack::signing_string;

/// The seed the tests sign with.
pub const SEED: [u8; 32] = [7; 32];
/// Every fill's price (whole USDC); quantities in 10^-5 BTC.
pub const PRICE: i128 = 60_000;

/// How the mock answers an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Fills it whole.
    Fill,
    /// Fills this many per mille of each order.
    Partial(i64),
    /// 400: refused, nothing taken.
    Refuse,
    /// 503: nothing taken.
    Fail,
    /// Takes the order, then answers too late for the client.
    TakeThenHang,
}

/// The mock's state, shared with the test.
#[derive(Debug)]
pub struct Mock {
    /// How it answers the next orders.
    pub mode: Mode,
    /// Every order it took.
    pub orders: Vec<Value>,
    /// Orders received (signed correctly).
    pub posts: usize,
    /// The account's net position in steps.
    pub position: i64,
    /// Added to the reported position (a venue that diverges from the journal).
    pub phantom: i64,
    /// Requests whose signature did not verify.
    pub bad_signatures: usize,
}

/// The mock's state as the test holds it.
pub type Shared = Arc<Mutex<Mock>>;

fn verify(headers: &HeaderMap, instruction: &str, fields: &[(&str, String)]) -> bool {
    let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let (Ok(ts), Ok(window)) = (h("x-timestamp").parse::<u64>(), h("x-window").parse::<u64>())
    else {
        return false;
    };
    let Ok(key) = B64.decode(h("x-api-key")) else { return false };
    let Ok(sig) = B64.decode(h("x-signature")) else { return false };
    let (Ok(key), Ok(sig)) = (<[u8; 32]>::try_from(key), <[u8; 64]>::try_from(sig)) else {
        return false;
    };
    let Ok(key) = VerifyingKey::from_bytes(&key) else { return false };
    let signed = signing_string(instruction, fields, ts, window);
    key.verify(signed.as_bytes(), &Signature::from_bytes(&sig)).is_ok()
}

fn qty_str(steps: i64) -> String {
    format!("{}.{:05}", steps / 100_000, steps % 100_000)
}

async fn execute(State(m): State<Shared>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let fields: Vec<(&str, String)> = ["clientId", "orderType", "quantity", "side", "symbol"]
        .iter()
        .map(|k| (*k, body[*k].as_str().map_or_else(|| body[*k].to_string(), str::to_owned)))
        .collect();
    let mode = {
        let mut s = m.lock().expect("mock");
        if !verify(&headers, "orderExecute", &fields) {
            s.bad_signatures += 1;
            return (StatusCode::UNAUTHORIZED, Json(json!({"code":"INVALID_SIGNATURE"})))
                .into_response();
        }
        s.posts += 1;
        s.mode
    };
    match mode {
        Mode::Refuse => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"code":"INSUFFICIENT_MARGIN","message":"no"})),
            )
                .into_response();
        }
        Mode::Fail => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
        _ => {}
    }
    let qty: i64 = {
        let q = body["quantity"].as_str().unwrap_or("0.0");
        let (i, f) = q.split_once('.').unwrap_or((q, "0"));
        i.parse::<i64>().unwrap_or(0) * 100_000 + f.parse::<i64>().unwrap_or(0)
    };
    let executed = match mode {
        Mode::Partial(permille) => qty * permille / 1000,
        _ => qty,
    };
    let buy = body["side"] == "Bid";
    let quote = i128::from(executed) * PRICE; // micro-USDC: steps (1e-5) × 60 000 × 1e6 / 1e5
    let order = json!({
        "id": format!("o{}", body["clientId"]), "clientId": body["clientId"], "symbol": body["symbol"],
        "side": body["side"], "orderType": "Market", "quantity": body["quantity"],
        "executedQuantity": qty_str(executed),
        "executedQuoteQuantity": format!("{}.{:06}", quote / 1_000_000, quote % 1_000_000),
        "status": if executed == qty { "Filled" } else { "PartiallyFilled" },
    });
    {
        let mut s = m.lock().expect("mock");
        s.position += if buy { executed } else { -executed };
        s.orders.push(order.clone());
    }
    if mode == Mode::TakeThenHang {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    Json(order).into_response()
}

async fn query_order(
    State(m): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let fields: Vec<(&str, String)> = q.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    if !verify(&headers, "orderQuery", &fields) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    // Market orders are never open: 404, as Backpack answers for an order no longer open.
    let _ = m;
    StatusCode::NOT_FOUND.into_response()
}

async fn history(
    State(m): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let fields: Vec<(&str, String)> = q.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    if !verify(&headers, "orderHistoryQueryAll", &fields) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    Json(Value::from(m.lock().expect("mock").orders.clone())).into_response()
}

async fn position(State(m): State<Shared>, headers: HeaderMap) -> Response {
    if !verify(&headers, "positionQuery", &[]) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let s = m.lock().expect("mock");
    Json(json!([{"symbol": "BTC_USDC_PERP", "netQuantity": qty_str(s.position + s.phantom)}]))
        .into_response()
}

/// Starts the mock on a free port: its base URL and its state.
pub async fn start() -> (String, Shared) {
    let state: Shared = Arc::new(Mutex::new(Mock {
        mode: Mode::Fill,
        orders: Vec::new(),
        posts: 0,
        position: 0,
        phantom: 0,
        bad_signatures: 0,
    }));
    let app = axum::Router::new()
        .route("/api/v1/order", get(query_order).post(execute))
        .route("/wapi/v1/history/orders", get(history))
        .route("/api/v1/position", get(position))
        .with_state(Arc::clone(&state));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("mock");
    let url = format!("http://{}", listener.local_addr().expect("mock"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("mock") });
    (url, state)
}
