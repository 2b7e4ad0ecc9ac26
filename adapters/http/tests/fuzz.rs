//! Schema-less fuzzing over real HTTP: arbitrary requests to every operation of the generated
//! OpenAPI document (`openapi::operations`, so a new route is fuzzed without touching this file) — arbitrary JSON
//! and near-valid bodies, hostile path ids and query strings, no / a valid / a forged token, a
//! request signed with a registered API key or hostile signing headers, random idempotency
//! keys — and not one answer may be a 5xx. Every error is JSON with a code.
//!
//! Cases: `PROPTEST_CASES` (default 2048 here; CI runs the default).

use std::time::Duration;

use engine_core::prelude::*;
use hundredx_http::{ApiConfig, AppState, now_ns};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone)]
struct Request {
    route: usize,
    id: String,
    query: String,
    body: Option<String>,
    token: u8,
    key: Option<String>,
}

/// Any JSON, nested a few levels.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        "[-+]?[0-9]{0,40}(\\.[0-9]{0,40})?([eE][-+]?[0-9]{1,4})?"
            .prop_map(|s| serde_json::from_str(&s).unwrap_or(Value::String(s))),
        ".{0,40}".prop_map(Value::String),
        "[-+ ]?[0-9]{0,30}(\\.[0-9]{0,12})?".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An object with the API's own field names and arbitrary values: it gets past the JSON parse
/// more often than pure noise and reaches the validation and the engine.
fn near_valid() -> impl Strategy<Value = Value> {
    let field = prop::sample::select(vec![
        "email",
        "password",
        "amount",
        "market",
        "side",
        "leverage",
        "margin",
        "quantity",
        "expected_price",
        "max_slippage_bps",
        "take_profit",
        "stop_loss",
        "client_order_id",
        "type",
        "price",
        "expires_at",
        "distance",
        "distance_bps",
    ]);
    let value = prop_oneof![
        any_json(),
        prop::sample::select(vec![
            json!("BTC_USDC"),
            json!("long"),
            json!("short"),
            json!("limit"),
            json!("stop"),
            json!(10),
            json!(100),
            json!("100"),
            json!("0.00001"),
            json!("62000.5"),
            json!("fuzz@example.com"),
            json!("correct horse"),
        ]),
    ];
    prop::collection::btree_map(field, value, 0..8)
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
}

fn request() -> impl Strategy<Value = Request> {
    let routes = hundredx_http::openapi::operations().len();
    let id = prop_oneof![
        Just("1".to_owned()),
        Just("0".to_owned()),
        Just("-1".to_owned()),
        Just("18446744073709551616".to_owned()),
        "[0-9]{1,25}",
        "[A-Za-z0-9%._~-]{0,30}",
    ];
    let query = prop_oneof![
        Just(String::new()),
        Just("?status=open".to_owned()),
        Just("?status=closed".to_owned()),
        "\\?[A-Za-z0-9=&%_.-]{0,40}",
    ];
    let body = prop_oneof![
        Just(None),
        any_json().prop_map(|v| Some(v.to_string())),
        near_valid().prop_map(|v| Some(v.to_string())),
        ".{0,64}".prop_map(Some),
    ];
    (0..routes, id, query, body, 0u8..5, prop::option::of("[ -~]{0,50}")).prop_map(
        |(route, id, query, body, token, key)| Request { route, id, query, body, token, key },
    )
}

/// The fuzz user's API key (registered with every scope before the cases run).
fn signing_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[42; 32])
}

async fn send(addr: std::net::SocketAddr, r: &Request, token: &str) -> (u16, String) {
    use base64::Engine as _;
    use ed25519_dalek::Signer;
    let (method, path, _) = &hundredx_http::openapi::operations()[r.route];
    let path = path.replace("{id}", &r.id);
    let mut head =
        format!("{method} {path}{} HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n", r.query);
    let b64 = base64::engine::general_purpose::STANDARD;
    match r.token {
        1 => head += &format!("Authorization: Bearer {token}\r\n"),
        2 => head += "Authorization: Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.\r\n",
        3 => {
            // Signed as documented, with the registered key.
            let key = signing_key();
            let ts = now_ns() / 1_000_000;
            let query = r.query.strip_prefix('?').unwrap_or("");
            let body = r.body.clone().unwrap_or_default();
            let upper = method.to_uppercase();
            let msg =
                hundredx_http::keys::message(&upper, &path, query, ts, 5_000, body.as_bytes());
            head += &format!("X-API-Key: {}\r\n", b64.encode(key.verifying_key().as_bytes()));
            head += &format!("X-Timestamp: {ts}\r\nX-Window: 5000\r\n");
            head += &format!("X-Signature: {}\r\n", b64.encode(key.sign(&msg).to_bytes()));
        }
        4 => {
            // Hostile signing headers.
            let junk = r.key.clone().unwrap_or_default();
            head += &format!("X-API-Key: {junk}\r\nX-Timestamp: {junk}\r\n");
            head += &format!("X-Window: {junk}\r\nX-Signature: {junk}\r\n");
        }
        _ => {}
    }
    if let Some(k) = &r.key {
        head += &format!("Idempotency-Key: {k}\r\n");
    }
    let body = r.body.clone().unwrap_or_default();
    if r.body.is_some() {
        head += &format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len());
    }
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("{head}\r\n{body}").as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf))
        .await
        .expect("an answer in time")
        .unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, text)
}

#[test]
fn arbitrary_requests_to_every_route_never_get_a_5xx() {
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    // A price stays fresh for the whole run (`/healthz` answers 503 once it is stale, and a
    // loaded machine may take longer than the default 5 s over the cases).
    let mut markets = MarketConfig::defaults();
    for m in &mut markets {
        m.max_price_age_ns = 600_000_000_000;
    }
    let engine_cfg = EngineConfig { markets: markets.clone(), ..EngineConfig::default() };
    let mut engine = EngineHandle::start(engine_cfg).unwrap();
    let tick = Tick {
        market: MarketId(0),
        bid: Price(6_200_000),
        ask: Price(6_200_100),
        update_id: 1,
        exchange_time_us: 0,
    };
    let r = engine.call(now_ns(), CommandKind::PriceTick(tick), Duration::from_secs(5)).unwrap();
    assert!(r.result.is_ok(), "{r:?}");
    let mut cfg = ApiConfig::new(b"fuzz-secret-of-enough-length".to_vec(), markets);
    // Limits wide open, so requests reach parsing, validation and the engine, not a 429.
    cfg.limits.trading_per_second = 1_000_000;
    cfg.limits.public_per_ip_per_second = 1_000_000;
    cfg.limits.any_per_ip_per_second = 1_000_000;
    cfg.limits.authed_per_second = 1_000_000;
    cfg.limits.signup_per_ip_per_minute = 1_000_000;
    cfg.limits.signin_per_ip_per_minute = 1_000_000;
    cfg.limits.signin_per_login_per_minute = 1_000_000;
    cfg.limits.signin_per_login_ip_per_minute = 1_000_000;
    let state = AppState::new(cfg, engine.submitter());
    let (addr, token) = rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(hundredx_http::serve(listener, state, std::future::pending()));
        let creds = r#"{"email":"fuzz@example.com","password":"correct horse"}"#;
        let signup = Request {
            route: route("post", "/api/v1/user/signup"),
            id: String::new(),
            query: String::new(),
            body: Some(creds.to_owned()),
            token: 0,
            key: None,
        };
        assert_eq!(send(addr, &signup, "").await.0, 202);
        let signin = Request { route: route("post", "/api/v1/user/signin"), ..signup };
        let (status, text) = send(addr, &signin, "").await;
        assert_eq!(status, 200, "{text}");
        let body: Value = serde_json::from_str(text.split_once("\r\n\r\n").unwrap().1).unwrap();
        let token = body["token"].as_str().unwrap().to_owned();
        use base64::Engine as _;
        let public = base64::engine::general_purpose::STANDARD
            .encode(signing_key().verifying_key().as_bytes());
        let key = json!({"label": "fuzz", "public_key": public,
            "scopes": ["read", "trade", "withdraw"]});
        let add = Request {
            route: route("post", "/api/v1/user/api-keys"),
            id: String::new(),
            query: String::new(),
            body: Some(key.to_string()),
            token: 1,
            key: None,
        };
        let (status, text) = send(addr, &add, &token).await;
        assert_eq!(status, 201, "{text}");
        (addr, token)
    });
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(2_048);
    let mut runner =
        TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    let statuses = std::cell::RefCell::new(std::collections::BTreeMap::<u16, u32>::new());
    let result = runner.run(&request(), |r| {
        let (status, text) = rt.block_on(send(addr, &r, &token));
        *statuses.borrow_mut().entry(status).or_default() += 1;
        prop_assert!((200..500).contains(&status), "{r:?} -> {text}");
        if status >= 400 && status != 405 {
            let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
            let v: Value = serde_json::from_str(body).unwrap_or_default();
            prop_assert!(
                v["error"]["code"].is_string(),
                "an error without a code: {r:?} -> {text}"
            );
        }
        Ok(())
    });
    let statuses = statuses.into_inner();
    println!("statuses: {statuses:?}");
    result.unwrap();
    // The fuzz reached past the parsers: some requests succeeded, some were refused.
    assert!(statuses.keys().any(|s| (200..300).contains(s)), "{statuses:?}");
    assert!(statuses.keys().any(|s| (400..500).contains(s)), "{statuses:?}");
}

fn route(method: &str, path: &str) -> usize {
    hundredx_http::openapi::operations()
        .iter()
        .position(|(m, p, _)| m.eq_ignore_ascii_case(method) && p == path)
        .unwrap()
}
