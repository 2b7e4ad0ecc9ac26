//! The hedger against a local mock of Backpack's order API (from its public documentation:
//! signed requests, `POST /api/v1/order`, `GET /api/v1/order`, the order history, positions),
//! which checks every signature and can fill, fill in part, refuse, fail, or take an order and
//! not answer. What must hold: the hedge follows its target; an order whose outcome is unknown
//! is found by its client id and recorded once — never sent twice, across a restart too; the
//! hedger stops when the venue keeps failing or holds something else than the journal.

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
use hedger::journal::Journal;
use hedger::plan::Policy;
use hedger::run::{Config, Hedger, MarketHedge};
use hedger::venue::backpack::{Backpack, signing_string};
use hedger::{Book, BoxFuture, Exposure};
use serde_json::{Value, json};

const SEED: [u8; 32] = [7; 32];
/// BTC at 60 000.00; quantities in 10^-5 BTC.
const PRICE: i128 = 60_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Fill,
    /// Fills this many per mille of each order.
    Partial(i64),
    Refuse,
    Fail,
    /// Takes the order, then answers too late for the client.
    TakeThenHang,
}

#[derive(Debug)]
struct Mock {
    mode: Mode,
    orders: Vec<Value>,
    posts: usize,
    position: i64,
    /// Added to the reported position (a venue that diverges from the journal).
    phantom: i64,
    bad_signatures: usize,
}

type Shared = Arc<Mutex<Mock>>;

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
        let mut s = m.lock().unwrap();
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
        let q = body["quantity"].as_str().unwrap();
        let (i, f) = q.split_once('.').unwrap();
        i.parse::<i64>().unwrap() * 100_000 + f.parse::<i64>().unwrap()
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
        let mut s = m.lock().unwrap();
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
    Json(Value::from(m.lock().unwrap().orders.clone())).into_response()
}

async fn position(State(m): State<Shared>, headers: HeaderMap) -> Response {
    if !verify(&headers, "positionQuery", &[]) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let s = m.lock().unwrap();
    Json(json!([{"symbol": "BTC_USDC_PERP", "netQuantity": qty_str(s.position + s.phantom)}]))
        .into_response()
}

async fn mock() -> (String, Shared) {
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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, state)
}

/// The clients' exposure, set by the test.
#[derive(Clone, Default)]
struct Fixed(Arc<Mutex<BTreeMap<String, Exposure>>>);

impl Fixed {
    fn set(&self, a_book: i64, b_book: i64) {
        self.0.lock().unwrap().insert("BTC_USDC".into(), Exposure { a_book, b_book });
    }
}

impl Book for Fixed {
    fn exposure(&self) -> BoxFuture<'_, Result<BTreeMap<String, Exposure>, String>> {
        let e = self.0.lock().unwrap().clone();
        Box::pin(async move { Ok(e) })
    }
}

fn config() -> Config {
    let btc = MarketHedge {
        venue_symbol: "BTC_USDC_PERP".into(),
        qty_decimals: 5,
        policy: Policy { band: 50_000, min_order: 1_000 }, // 0.5 BTC kept, 0.01 BTC minimum
    };
    Config { markets: BTreeMap::from([("BTC_USDC".to_owned(), btc)]), max_errors: 3 }
}

fn hedger(url: &str, dir: &std::path::Path, book: &Fixed) -> Hedger<Backpack, Fixed> {
    let venue = Backpack::new(url, SEED, Duration::from_millis(500)).unwrap();
    Hedger::new(venue, book.clone(), Journal::open(dir).unwrap(), config())
}

#[tokio::test]
async fn the_hedge_follows_the_a_book_and_the_b_books_excess_with_signed_orders() {
    let (url, venue) = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let book = Fixed::default();
    let mut h = hedger(&url, dir.path(), &book);
    book.set(300_000, 20_000); // 3 BTC A-booked; 0.2 BTC B-book, within its band
    h.step(1).await;
    assert_eq!(venue.lock().unwrap().position, 300_000, "bought 3 BTC");
    h.step(2).await;
    assert_eq!(venue.lock().unwrap().posts, 1, "at its target: nothing sent");
    book.set(300_000, -120_000); // the B-book 1.2 BTC short: 0.7 beyond the band
    h.step(3).await;
    let s = h.status().lock().unwrap().clone();
    assert_eq!((s.positions["BTC_USDC"], venue.lock().unwrap().position), (230_000, 230_000));
    // 3 BTC bought, 0.7 sold at 60 000.
    assert_eq!(s.cash_micros, -i128::from(300_000 - 70_000) * PRICE);
    assert_eq!((s.halted, venue.lock().unwrap().bad_signatures), (None, 0));
}

#[tokio::test]
async fn a_partial_fill_is_recorded_and_the_rest_traded_next_round() {
    let (url, venue) = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let book = Fixed::default();
    let mut h = hedger(&url, dir.path(), &book);
    venue.lock().unwrap().mode = Mode::Partial(400);
    book.set(100_000, 0);
    h.step(1).await;
    assert_eq!(h.status().lock().unwrap().positions["BTC_USDC"], 40_000);
    venue.lock().unwrap().mode = Mode::Fill;
    h.step(2).await;
    let v = venue.lock().unwrap();
    assert_eq!((v.position, v.posts), (100_000, 2));
}

#[tokio::test]
async fn an_order_taken_without_an_answer_is_found_by_its_client_id_not_sent_again_across_a_restart()
 {
    let (url, venue) = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let book = Fixed::default();
    book.set(200_000, 0);
    {
        let mut h = hedger(&url, dir.path(), &book);
        venue.lock().unwrap().mode = Mode::TakeThenHang;
        h.step(1).await; // the client gives up at 500 ms; the venue took the order
        let s = h.status().lock().unwrap().clone();
        assert_eq!((s.pending, s.consecutive_errors), (1, 1), "{s:?}");
    } // the hedger stops (a crash, a deploy)
    venue.lock().unwrap().mode = Mode::Fill;
    let mut h = hedger(&url, dir.path(), &book);
    h.step(2).await;
    let s = h.status().lock().unwrap().clone();
    assert_eq!((s.pending, s.positions["BTC_USDC"]), (0, 200_000), "{s:?}");
    assert_eq!(venue.lock().unwrap().posts, 1, "found by its client id, never sent twice");
    h.step(3).await;
    assert_eq!(venue.lock().unwrap().posts, 1);
}

#[tokio::test]
async fn refusals_and_failures_in_a_row_stop_the_hedger_and_it_says_why() {
    let (url, venue) = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let book = Fixed::default();
    let mut h = hedger(&url, dir.path(), &book);
    book.set(100_000, 0);
    venue.lock().unwrap().mode = Mode::Refuse;
    h.step(1).await;
    assert!(h.status().lock().unwrap().halted.is_none(), "one refusal is retried");
    venue.lock().unwrap().mode = Mode::Fail;
    h.step(2).await;
    h.step(3).await;
    let s = h.status().lock().unwrap().clone();
    assert!(s.halted.as_deref().is_some_and(|w| w.contains("unavailable")), "{s:?}");
    // A 503 took nothing: the order was settled as not found, not counted as a fill.
    venue.lock().unwrap().mode = Mode::Fill;
    let posts = venue.lock().unwrap().posts;
    h.step(4).await;
    assert_eq!(venue.lock().unwrap().posts, posts, "stopped: nothing more is sent");
    assert_eq!(venue.lock().unwrap().position, 0);
}

#[tokio::test]
async fn a_venue_holding_something_else_than_the_journal_stops_the_hedger() {
    let (url, venue) = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let book = Fixed::default();
    let mut h = hedger(&url, dir.path(), &book);
    book.set(100_000, 0);
    h.step(1).await;
    venue.lock().unwrap().phantom = 5_000; // someone traded on the hedge account
    book.set(300_000, 0);
    h.step(2).await;
    let s = h.status().lock().unwrap().clone();
    assert!(s.halted.as_deref().is_some_and(|w| w.contains("the venue holds 105000")), "{s:?}");
    assert_eq!(venue.lock().unwrap().posts, 1, "nothing sent once it diverged");
}
