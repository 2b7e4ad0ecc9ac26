//! The API over real HTTP: a server on 127.0.0.1:0 in front of a real engine, a minimal HTTP/1.1
//! client on a TCP socket. Lifecycle, liquidation, idempotency, isolation, security, limits,
//! junk input (never a 500), and the OpenAPI document against the routes served.

mod common;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use engine_core::prelude::*;
use hundredx_http::{ApiConfig, AppState, now_ns};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SECRET: &[u8] = b"test-secret-of-enough-length";

struct Server {
    addr: std::net::SocketAddr,
    engine: EngineHandle,
    update_ids: Vec<u64>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

struct Reply {
    status: u16,
    headers: String,
    body: Value,
}

impl Server {
    async fn start(tweak: impl FnOnce(&mut ApiConfig)) -> Server {
        Server::start_with(EngineConfig::default(), tweak).await
    }

    async fn start_with(mut engine: EngineConfig, tweak: impl FnOnce(&mut ApiConfig)) -> Server {
        // A price set at the start stays tradable for the whole test: on a loaded machine the
        // sign-ups' password hashing alone can take longer than the default 5 s price age.
        for m in &mut engine.markets {
            m.max_price_age_ns = 600_000_000_000;
        }
        // The API's markets are the engine's, as in `serve`.
        let markets = engine.markets.clone();
        let engine =
            EngineHandle::start(EngineConfig { max_open_positions: 10_000, ..engine }).unwrap();
        let mut cfg = ApiConfig::new(SECRET.to_vec(), markets);
        tweak(&mut cfg);
        let state = AppState::new(cfg, engine.submitter());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(hundredx_http::serve(listener, state, async {
            let _ = stopped.await;
        }));
        Server { addr, engine, update_ids: vec![0; 3], stop: Some(stop) }
    }

    /// Sets a market's price (bid = ask = `p` in whole units of its price step * 100).
    fn price(&mut self, market: u16, bid: i64, ask: i64) {
        let i = usize::from(market);
        self.update_ids[i] += 1;
        common::apply_tick(&mut self.engine.submitter(), market, bid, ask, self.update_ids[i]);
    }

    async fn raw(&self, request: &[u8]) -> Reply {
        raw_at(self.addr, request).await
    }

    async fn req(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> Reply {
        let mut r = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
        if let Some(t) = token {
            r += &format!("Authorization: Bearer {t}\r\n");
        }
        if let Some(b) = body {
            r += &format!("Content-Type: application/json\r\nContent-Length: {}\r\n", b.len());
        }
        r += "\r\n";
        r += body.unwrap_or("");
        let reply = self.raw(r.as_bytes()).await;
        assert_ne!(reply.status, 500, "{method} {path} {body:?} -> 500: {}", reply.body);
        assert_ne!(reply.status, 0, "{method} {path}: no HTTP response");
        if reply.status >= 400 {
            assert!(
                reply.body["error"]["code"].is_string(),
                "{method} {path}: error shape: {}",
                reply.body
            );
        }
        reply
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.req("POST", path, token, Some(&body.to_string())).await
    }

    async fn get(&self, path: &str, token: &str) -> Reply {
        self.req("GET", path, Some(token), None).await
    }

    /// Signs up and in; returns the token and user id.
    async fn user(&self, email: &str) -> (String, String) {
        let creds = json!({ "email": email, "password": "correct horse" });
        let r = self.post("/api/v1/user/signup", None, creds.clone()).await;
        assert_eq!(r.status, 202, "{}", r.body);
        let r = self.post("/api/v1/user/signin", None, creds).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let id = r.body["user_id"].as_str().unwrap().to_string();
        (r.body["token"].as_str().unwrap().to_string(), id)
    }
}

async fn raw_at(addr: std::net::SocketAddr, request: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("response in time")
        .unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = serde_json::from_str(body).unwrap_or(Value::String(body.to_string()));
    Reply { status, headers: head.to_lowercase(), body }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

fn open_body(margin: &str, leverage: u64) -> Value {
    json!({ "market": "BTC_USDC", "side": "long", "leverage": leverage, "margin": margin })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_trading_lifecycle() {
    let mut s = Server::start(|_| {}).await;
    s.price(0, 6_000_000, 6_000_000);
    let (t, _) = s.user("  Trader@Example.com ").await;
    // Logins are normalised: the same person cannot sign up twice by changing case; and the
    // answer is the same as for a new email, so sign-up does not reveal who has an account.
    let other = json!({ "email": "trader@example.COM", "password": "another one" });
    let dup = s.post("/api/v1/user/signup", None, other.clone()).await;
    assert_eq!(dup.status, 202, "{}", dup.body);
    let fresh = s
        .post(
            "/api/v1/user/signup",
            None,
            json!({ "email": "new@example.com", "password": "another one" }),
        )
        .await;
    assert_eq!((fresh.status, &fresh.body), (202, &dup.body));
    let r = s.post("/api/v1/user/signin", None, other).await;
    assert_eq!(r.status, 401, "the taken account kept its own password");

    let r = s.post("/api/v1/user/deposit", Some(&t), json!({ "amount": "1000.5" })).await;
    assert_eq!((r.status, r.body["available"].as_str()), (200, Some("6000.500000")));
    let m = s.req("GET", "/api/v1/markets", None, None).await;
    assert_eq!(m.body["markets"][0]["bid"], "60000.00");

    let body = json!({ "market": "BTC_USDC", "side": "long", "leverage": 10, "quantity": "0.5",
        "take_profit": 70000, "stop_loss": "50000.00" });
    let p = s.post("/api/v1/positions", Some(&t), body).await;
    assert_eq!(p.status, 201, "{}", p.body);
    assert_eq!(p.body["margin"], "3000.000000");
    assert_eq!(p.body["liquidation_price"], "54271.36");
    assert_eq!(p.body["take_profit"], "70000.00");
    let id = p.body["id"].as_str().unwrap().to_string();

    s.price(0, 6_100_000, 6_100_000);
    let b = s.get("/api/v1/user/balance", &t).await;
    assert_eq!(
        b.body,
        json!({ "available": "3000.500000", "locked_margin": "3000.000000",
        "order_margin": "0.000000", "equity": "6500.500000", "unrealized_pnl": "500.000000",
        "margin_mode": "isolated" })
    );
    let one = s.get(&format!("/api/v1/positions/{id}"), &t).await;
    assert_eq!(one.body["unrealized_pnl"], "500.000000");
    let open = s.get("/api/v1/positions?status=open", &t).await;
    assert_eq!(open.body["positions"].as_array().unwrap().len(), 1);

    // Finer than the market's step (5 decimals for BTC): refused by the engine, nothing closed.
    let fine = s
        .post(&format!("/api/v1/positions/{id}/close"), Some(&t), json!({ "quantity": "0.000001" }))
        .await;
    assert_eq!((fine.status, fine.body["error"]["code"].as_str()), (400, Some("invalid_quantity")));
    let part = s
        .post(&format!("/api/v1/positions/{id}/close"), Some(&t), json!({ "quantity": "0.2" }))
        .await;
    assert_eq!(part.body["position_id"], id.as_str(), "the part names its position");
    assert_eq!((part.status, part.body["status"].as_str()), (200, Some("closed")));
    assert_eq!(part.body["realized_pnl"], "200.000000");
    assert_eq!(part.body["close_reason"], "manual");
    let add =
        s.post(&format!("/api/v1/positions/{id}/margin"), Some(&t), json!({ "amount": 100 })).await;
    assert_eq!(add.body["margin"], "1900.000000");
    let rest = s.req("POST", &format!("/api/v1/positions/{id}/close"), Some(&t), None).await;
    assert_eq!((rest.status, rest.body["quantity"].as_str()), (200, Some("0.30000")));
    let closed = s.get("/api/v1/positions?status=closed", &t).await;
    assert_eq!(closed.body["positions"].as_array().unwrap().len(), 2);
    let b = s.get("/api/v1/user/balance", &t).await;
    assert_eq!(b.body["available"], "6500.500000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_price_move_liquidates_and_shows_as_a_closed_position() {
    let mut s = Server::start(|_| {}).await;
    s.price(0, 6_000_000, 6_000_000);
    let (t, _) = s.user("a@example.com").await;
    let p = s.post("/api/v1/positions", Some(&t), open_body("100", 100)).await;
    assert_eq!(p.status, 201, "{}", p.body);
    let liq =
        p.body["liquidation_price"].as_str().unwrap().replace('.', "").parse::<i64>().unwrap();
    s.price(0, liq, liq);
    let closed = s.get("/api/v1/positions?status=closed", &t).await;
    let v = &closed.body["positions"][0];
    assert_eq!(
        (v["close_reason"].as_str(), v["id"].clone()),
        (Some("liquidation"), p.body["id"].clone())
    );
    assert_eq!(v["exit_price"], p.body["liquidation_price"]);

    // Explanations come from the history store (tests/history.rs, with one): without one, 404.
    let id = p.body["id"].as_str().unwrap();
    let why = s.get(&format!("/api/v1/positions/{id}/explain"), &t).await;
    assert_eq!((why.status, why.body["error"]["code"].as_str()), (404, Some("history_disabled")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_order_id_is_idempotent_and_users_are_isolated() {
    let mut s = Server::start(|_| {}).await;
    s.price(0, 6_000_000, 6_000_000);
    let (a, _) = s.user("a@example.com").await;
    let (b, _) = s.user("b@example.com").await;
    let mut body = open_body("100", 10);
    body["client_order_id"] = json!("retry-me");
    let first = s.post("/api/v1/positions", Some(&a), body.clone()).await;
    let again = s.post("/api/v1/positions", Some(&a), body.clone()).await;
    assert_eq!(first.body["id"], again.body["id"]);
    assert_eq!(s.get("/api/v1/positions", &a).await.body["positions"].as_array().unwrap().len(), 1);
    let id = first.body["id"].as_str().unwrap();
    // B sees nothing of A's and can touch nothing: 404, as if it did not exist.
    assert_eq!(s.get(&format!("/api/v1/positions/{id}"), &b).await.status, 404);
    assert_eq!(
        s.post(&format!("/api/v1/positions/{id}/close"), Some(&b), json!({})).await.status,
        404
    );
    assert_eq!(
        s.post(&format!("/api/v1/positions/{id}/margin"), Some(&b), json!({ "amount": "1" }))
            .await
            .status,
        404
    );
    assert!(s.get("/api/v1/positions", &b).await.body["positions"].as_array().unwrap().is_empty());
    // B's own order with the same client order id is B's.
    let theirs = s.post("/api/v1/positions", Some(&b), body).await;
    assert_ne!(theirs.body["id"], first.body["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdrawals_pending_orders_and_tp_sl_edits_over_http() {
    let mut s = Server::start(|_| {}).await;
    s.price(0, 6_000_000, 6_000_000);
    let (t, _) = s.user("a@example.com").await;
    let (other, _) = s.user("b@example.com").await;
    // Withdraw: exact, never below zero, once per Idempotency-Key.
    let w = s.post("/api/v1/user/withdraw", Some(&t), json!({ "amount": "1000.25" })).await;
    assert_eq!((w.status, w.body["available"].as_str()), (200, Some("3999.750000")));
    let w = s.post("/api/v1/user/withdraw", Some(&t), json!({ "amount": "3999.750001" })).await;
    assert_eq!((w.status, w.body["error"]["code"].as_str()), (422, Some("insufficient_balance")));
    let keyed = |amount: &str| {
        let body = json!({ "amount": amount }).to_string();
        format!(
            "POST /api/v1/user/withdraw HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
             Authorization: Bearer {t}\r\nIdempotency-Key: w-1\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let first = s.raw(keyed("100").as_bytes()).await;
    let again = s.raw(keyed("100").as_bytes()).await;
    assert_eq!((first.status, &first.body), (200, &again.body));
    assert_eq!(first.body["available"], "3899.750000", "withdrawn once");
    let reused = s.raw(keyed("5").as_bytes()).await;
    assert_eq!(reused.body["error"]["code"], "idempotency_key_reused");

    // A limit long 0.1 BTC at 59 000, 10x: 590 held.
    let order = |kind: &str, price: &str| {
        json!({ "market": "BTC_USDC", "side": "long", "type": kind, "price": price,
            "leverage": 10, "quantity": "0.1" })
    };
    let o = s.post("/api/v1/orders", Some(&t), order("limit", "59000")).await;
    assert_eq!(o.status, 201, "{}", o.body);
    assert_eq!(
        (o.body["reserved"].as_str(), o.body["type"].as_str()),
        (Some("590.000000"), Some("limit"))
    );
    let b = s.get("/api/v1/user/balance", &t).await;
    assert_eq!(
        (b.body["available"].as_str(), b.body["order_margin"].as_str()),
        (Some("3309.750000"), Some("590.000000"))
    );
    let bad = s.post("/api/v1/orders", Some(&t), order("market", "59000")).await;
    assert_eq!((bad.status, bad.body["error"]["code"].as_str()), (400, Some("invalid_order_type")));
    let now = s.post("/api/v1/orders", Some(&t), order("limit", "61000")).await;
    assert_eq!(
        (now.status, now.body["error"]["code"].as_str()),
        (422, Some("invalid_order_price"))
    );
    let mut past = order("stop", "61000");
    past["expires_at"] = json!(1_000);
    let past = s.post("/api/v1/orders", Some(&t), past).await;
    assert_eq!((past.status, past.body["error"]["code"].as_str()), (400, Some("invalid_expiry")));
    let id = o.body["id"].as_str().unwrap().to_string();
    let theirs = s.req("DELETE", &format!("/api/v1/orders/{id}"), Some(&other), None).await;
    assert_eq!(theirs.status, 404, "another account's order is not found");
    assert!(s.get("/api/v1/orders", &other).await.body["orders"].as_array().unwrap().is_empty());
    let listed = s.get("/api/v1/orders", &t).await;
    assert_eq!(listed.body["orders"][0]["id"], id.as_str());

    // The ask reaches 59 000: it fills there.
    s.price(0, 5_899_000, 5_900_000);
    assert!(s.get("/api/v1/orders", &t).await.body["orders"].as_array().unwrap().is_empty());
    let open = s.get("/api/v1/positions", &t).await;
    let p = &open.body["positions"][0];
    assert_eq!(
        (p["entry_price"].as_str(), p["quantity"].as_str()),
        (Some("59000.00"), Some("0.10000"))
    );
    let pid = p["id"].as_str().unwrap().to_string();

    // TP/SL edits against the mark (bid 58 990).
    let path = format!("/api/v1/positions/{pid}/triggers");
    let set = |body: Value| body.to_string();
    let r = s
        .req(
            "PUT",
            &path,
            Some(&t),
            Some(&set(json!({ "take_profit": "65000", "stop_loss": 55000 }))),
        )
        .await;
    assert_eq!(
        (r.status, r.body["take_profit"].as_str(), r.body["stop_loss"].as_str()),
        (200, Some("65000.00"), Some("55000.00"))
    );
    let r = s.req("PUT", &path, Some(&t), Some(&set(json!({ "take_profit": "58000" })))).await;
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (400, Some("invalid_take_profit")));
    let r = s.req("PUT", &path, Some(&t), Some(&set(json!({ "take_profit": "65000.001" })))).await;
    assert_eq!(r.status, 400, "finer than the market's price step: {}", r.body);
    let r = s.req("PUT", &path, Some(&other), Some(&set(json!({})))).await;
    assert_eq!(r.status, 404);
    let r = s.req("PUT", &path, Some(&t), Some(&set(json!({ "take_profit": null })))).await;
    assert_eq!(
        (r.status, &r.body["take_profit"], &r.body["stop_loss"]),
        (200, &Value::Null, &Value::Null)
    );

    // A trailing stop 500 behind the best bid (58 990 now): 58 490, then it follows a rise.
    let path = format!("/api/v1/positions/{pid}/trailing-stop");
    let r = s.req("PUT", &path, Some(&t), Some(&set(json!({ "distance": "500" })))).await;
    assert_eq!((r.status, &r.body["trailing_stop"]["stop_price"]), (200, &json!("58490.00")));
    let both = json!({ "distance": "500", "distance_bps": 10 });
    let r = s.req("PUT", &path, Some(&t), Some(&set(both))).await;
    assert_eq!(r.status, 400);
    let r = s.req("PUT", &path, Some(&t), Some(&set(json!({ "distance_bps": 5001 })))).await;
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (400, Some("invalid_trailing_stop")));
    s.price(0, 5_950_000, 5_951_000);
    let one = s.get(&format!("/api/v1/positions/{pid}"), &t).await;
    assert_eq!(one.body["trailing_stop"]["stop_price"], "59000.00");
    assert_eq!(one.body["trailing_stop"]["distance"], "500.00");
    s.price(0, 5_900_000, 5_901_000);
    let closed = s.get(&format!("/api/v1/positions/{pid}"), &t).await;
    assert_eq!(closed.body["close_reason"], "trailing_stop");

    // Cancel gives the hold back; twice is 404.
    let o = s.post("/api/v1/orders", Some(&t), order("stop", "61000")).await;
    let id = o.body["id"].as_str().unwrap().to_string();
    let c = s.req("DELETE", &format!("/api/v1/orders/{id}"), Some(&t), None).await;
    assert_eq!((c.status, c.body["id"].as_str()), (200, Some(id.as_str())));
    let c = s.req("DELETE", &format!("/api/v1/orders/{id}"), Some(&t), None).await;
    assert_eq!((c.status, c.body["error"]["code"].as_str()), (404, Some("unknown_order")));
    let b = s.get("/api/v1/user/balance", &t).await;
    assert_eq!(b.body["order_margin"], "0.000000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_halt_markets_and_see_risk_and_nobody_else_can() {
    let mut s = Server::start(|_| {}).await;
    s.price(0, 6_000_000, 6_000_000);
    let (trader, _) = s.user("t@example.com").await;
    let (_, _) = s.user("ops@example.com").await;
    let halt = json!({ "mode": "halted" });
    let r = s
        .req("PUT", "/api/v1/admin/markets/BTC_USDC", Some(&trader), Some(&halt.to_string()))
        .await;
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (403, Some("forbidden")));
    // The role comes only from the engine (the `hundredx admin` command line issues this).
    let login = Login::new("ops@example.com").unwrap();
    let reply = s
        .engine
        .submitter()
        .call(now_ns(), CommandKind::SetRole { login, admin: true }, Duration::from_secs(5))
        .unwrap();
    assert!(matches!(reply.result, Ok(ReplyData::Role { admin: true, .. })));
    let creds = json!({ "email": "ops@example.com", "password": "correct horse" });
    let signed = s.post("/api/v1/user/signin", None, creds).await;
    assert_eq!(
        (&signed.body["admin"], &signed.body["demo_deposits"]),
        (&json!(true), &json!(true))
    );
    let ops = signed.body["token"].as_str().unwrap().to_string();
    let p = s.post("/api/v1/positions", Some(&trader), open_body("100", 50)).await;
    assert_eq!(p.status, 201);

    let r =
        s.req("PUT", "/api/v1/admin/markets/BTC_USDC", Some(&ops), Some(&halt.to_string())).await;
    assert_eq!((r.status, r.body["mode"].as_str()), (200, Some("halted")), "{}", r.body);
    let m = s.req("GET", "/api/v1/markets", None, None).await;
    assert_eq!(m.body["markets"][0]["mode"], "halted");
    let refused = s.post("/api/v1/positions", Some(&trader), open_body("100", 10)).await;
    assert_eq!(
        (refused.status, refused.body["error"]["code"].as_str()),
        (422, Some("market_halted"))
    );
    let id = p.body["id"].as_str().unwrap();
    let closed = s.req("POST", &format!("/api/v1/positions/{id}/close"), Some(&trader), None).await;
    assert_eq!(closed.status, 200, "closes go on while halted");
    let limits = json!({ "mode": "open", "max_leverage": 20, "maintenance_margin_rate": "0.01" });
    let r =
        s.req("PUT", "/api/v1/admin/markets/BTC_USDC", Some(&ops), Some(&limits.to_string())).await;
    assert_eq!((r.status, r.body["max_leverage"].as_u64()), (200, Some(20)));
    assert_eq!(r.body["maintenance_margin_rate"], "0.010000");
    let over = s.post("/api/v1/positions", Some(&trader), open_body("100", 21)).await;
    assert_eq!(over.status, 400, "the new maximum applies: {}", over.body);
    let p = s.post("/api/v1/positions", Some(&trader), open_body("100", 20)).await;
    assert_eq!(p.status, 201);

    let risk = s.get("/api/v1/admin/risk?top=5", &ops).await;
    assert_eq!(risk.status, 200, "{}", risk.body);
    assert_eq!(risk.body["open_positions"], 1);
    assert_eq!(risk.body["at_risk"][0]["position_id"], p.body["id"]);
    assert_eq!(risk.body["accounts_at_risk"], json!([]), "no cross account yet");
    // A cross account that can be stopped out: listed with its level, not among the positions
    // near liquidation (one that no price could stop out has no trigger and is not listed).
    let (x, x_id) = s.user("x@example.com").await;
    s.post("/api/v1/user/margin-mode", Some(&x), json!({ "mode": "cross" })).await;
    // 4 000 at 20x: 80 000 of notional on 5 000 of equity, stopped out about 6 % down.
    let xp = s.post("/api/v1/positions", Some(&x), open_body("4000", 20)).await;
    assert_eq!(xp.status, 201, "{}", xp.body);
    let crossed = s.get("/api/v1/admin/risk?top=5", &ops).await;
    let listed = &crossed.body["accounts_at_risk"][0];
    assert_eq!(listed["user_id"], x_id.as_str(), "{}", crossed.body);
    assert!(listed["margin_level"]["level"].as_str().is_some_and(|l| l.contains('.')), "{listed}");
    assert_eq!(crossed.body["at_risk"].as_array().map(Vec::len), Some(1), "{}", crossed.body);
    let long = &risk.body["exposure"][0];
    assert_eq!(
        (long["market"].as_str(), long["side"].as_str(), long["positions"].as_u64()),
        (Some("BTC_USDC"), Some("long"), Some(1))
    );
    assert_eq!(s.get("/api/v1/admin/risk", &trader).await.status, 403);
    // Above the configuration's 100x too: the engine's limit is the one that counts.
    let wide = json!({ "max_leverage": 200, "maintenance_margin_rate": "0.004" });
    let r =
        s.req("PUT", "/api/v1/admin/markets/BTC_USDC", Some(&ops), Some(&wide.to_string())).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let p = s.post("/api/v1/positions", Some(&trader), open_body("100", 150)).await;
    assert_eq!(p.status, 201, "{}", p.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_demo_deposits_off_the_deposit_route_refuses_and_sign_in_says_so() {
    let s = Server::start(|c| c.demo_deposits = false).await;
    let creds = json!({ "email": "t@example.com", "password": "correct horse" });
    assert_eq!(s.post("/api/v1/user/signup", None, creds.clone()).await.status, 202);
    let signed = s.post("/api/v1/user/signin", None, creds).await;
    assert_eq!(
        (&signed.body["admin"], &signed.body["demo_deposits"]),
        (&json!(false), &json!(false))
    );
    let t = signed.body["token"].as_str().unwrap();
    let r = s.post("/api/v1/user/deposit", Some(t), json!({ "amount": "1" })).await;
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (403, Some("deposits_disabled")));
}

fn token_with(header: Value, claims: Value, secret: &[u8]) -> String {
    use jsonwebtoken::{EncodingKey, Header, encode};
    let alg: jsonwebtoken::Algorithm = serde_json::from_value(header["alg"].clone()).unwrap();
    encode(&Header::new(alg), &claims, &EncodingKey::from_secret(secret)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused() {
    let s = Server::start(|_| {}).await;
    let (good, id) = s.user("a@example.com").await;
    let now = now_ns() / 1_000_000_000;
    let hs256 = json!({ "alg": "HS256" });
    let expired = token_with(
        hs256.clone(),
        json!({ "sub": id, "exp": now - 3600, "iat": now - 7200 }),
        SECRET,
    );
    let wrong_secret = token_with(
        hs256.clone(),
        json!({ "sub": id, "exp": now + 3600, "iat": now }),
        b"another-secret-entirely",
    );
    let hs512 = token_with(
        json!({ "alg": "HS512" }),
        json!({ "sub": id, "exp": now + 3600, "iat": now }),
        SECRET,
    );
    let no_exp = token_with(hs256, json!({ "sub": id, "iat": now }), SECRET);
    let b64 = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let alg_none = format!(
        "{}.{}.",
        b64(json!({ "alg": "none", "typ": "JWT" })),
        b64(json!({ "sub": id, "exp": now + 3600 }))
    );
    let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
    parts[1] = b64(json!({ "sub": "2", "exp": now + 3600, "iat": now })); // someone else
    let tampered = parts.join(".");
    for (name, token) in [
        ("expired", Some(expired.as_str())),
        ("wrong secret", Some(&wrong_secret)),
        ("HS512", Some(&hs512)),
        ("no exp", Some(&no_exp)),
        ("alg none", Some(&alg_none)),
        ("tampered", Some(&tampered)),
        ("garbage", Some("not-a-token")),
        ("missing", None),
    ] {
        let r = s.req("GET", "/api/v1/user/balance", token, None).await;
        assert_eq!(r.status, 401, "{name}: {}", r.body);
    }
    let r = s.req("GET", "/api/v1/user/balance", Some(&good), None).await;
    assert_eq!(r.status, 200);
    let wrong_pw = s
        .post(
            "/api/v1/user/signin",
            None,
            json!({ "email": "a@example.com", "password": "wrong horse" }),
        )
        .await;
    assert_eq!(wrong_pw.status, 401);
    let nobody = s
        .post(
            "/api/v1/user/signin",
            None,
            json!({ "email": "nobody@example.com", "password": "correct horse" }),
        )
        .await;
    assert_eq!(nobody.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_oversized_bodies_and_rate() {
    let s = Server::start(|c| {
        c.limits.signin_per_login_ip_per_minute = 2;
        c.limits.trading_per_second = 2;
    })
    .await;
    let (t, _) = s.user("a@example.com").await; // one sign-in (sign-up has its own limit)
    let big = format!("{{\"amount\": \"1\", \"pad\": \"{}\"}}", "x".repeat(20_000));
    let r = s.req("POST", "/api/v1/user/deposit", Some(&t), Some(&big)).await;
    assert_eq!(r.status, 413, "{}", r.body);
    let creds = json!({ "email": "a@example.com", "password": "correct horse" });
    let r = s.post("/api/v1/user/signin", None, creds.clone()).await;
    assert_eq!(r.status, 200, "second attempt within quota");
    let r = s.post("/api/v1/user/signin", None, creds).await;
    assert_eq!(r.status, 429);
    assert!(r.headers.contains("retry-after:"), "{}", r.headers);
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses
            .push(s.post("/api/v1/user/deposit", Some(&t), json!({ "amount": "1" })).await.status);
    }
    assert!(statuses.contains(&429), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_input_gets_400_or_422_with_a_code_never_500() {
    let mut s = Server::start(|c| c.limits.trading_per_second = 10_000).await;
    s.price(0, 6_000_000, 6_000_000);
    let (t, _) = s.user("a@example.com").await;
    let cases: Vec<(&str, u16, &str)> = vec![
        ("not json at all", 400, "invalid_json"),
        ("{\"market\": \"BTC_USDC\"", 400, "invalid_json"),
        ("[]", 400, "invalid_json"),
        (
            r#"{"market":"BTC_USDC","side":"long","leverage":10,"margin":"1","admin":true}"#,
            400,
            "invalid_json",
        ),
        (
            r#"{"market":"BTC_USDC'; DROP TABLE users;--","side":"long","leverage":10,"margin":"1"}"#,
            400,
            "unknown_market",
        ),
        (
            r#"{"market":"DOGE_USDC","side":"long","leverage":10,"margin":"1"}"#,
            400,
            "unknown_market",
        ),
        (
            r#"{"market":"BTC_USDC","side":"sideways","leverage":10,"margin":"1"}"#,
            400,
            "invalid_side",
        ),
        (
            r#"{"market":"BTC_USDC","side":"long","leverage":0,"margin":"1"}"#,
            400,
            "invalid_leverage",
        ),
        (
            r#"{"market":"BTC_USDC","side":"long","leverage":1000000000,"margin":"1"}"#,
            400,
            "invalid_leverage",
        ),
        (r#"{"market":"BTC_USDC","side":"long","leverage":-1,"margin":"1"}"#, 400, "invalid_json"),
        (
            r#"{"market":"BTC_USDC","side":"long","leverage":1e999,"margin":"1"}"#,
            400,
            "invalid_json",
        ),
        (
            r#"{"market":"BTC_USDC","side":"long","leverage":10,"margin":"-5"}"#,
            400,
            "invalid_number",
        ),
        (
            r#"{"market":"BTC_USDC","side":"long","leverage":10,"margin":"NaN"}"#,
            400,
            "invalid_number",
        ),
        (r#"{"market":"BTC_USDC","side":"long","leverage":10,"margin":NaN}"#, 400, "invalid_json"),
        (
            r#"{"market":"BTC_USDC","side":"long","leverage":10,"margin":1e400}"#,
            400,
            "invalid_number",
        ),
        (
            r#"{"market":"BTC_USDC","side":"long","leverage":10,"margin":"99999999999999999999999999999999999"}"#,
            400,
            "invalid_number",
        ),
        (
            r#"{"market":"BTC_USDC","side":"long","leverage":10,"margin":"1.0000001"}"#,
            400,
            "too_many_decimals",
        ),
        (
            r#"{"market":"BTC_USDC","side":"long","leverage":10,"quantity":"0.000001"}"#,
            400,
            "too_many_decimals",
        ),
        (
            r#"{"market":"BTC_USDC","side":"long","leverage":10,"margin":"1","quantity":"1"}"#,
            400,
            "invalid_request",
        ),
        (r#"{"market":"BTC_USDC","side":"long","leverage":10}"#, 400, "invalid_request"),
        (
            r#"{"market":"BTC_USDC","side":"long","leverage":10,"margin":"1000000"}"#,
            422,
            "insufficient_balance",
        ),
        (
            r#"{"market":"BTC_USDC","side":"long","leverage":10,"margin":"100","take_profit":"1"}"#,
            400,
            "invalid_take_profit",
        ),
        (r#"{"market":"ETH_USDC","side":"long","leverage":10,"margin":"100"}"#, 422, "no_price"),
        (
            r#"{"market":"BTC_USDC","side":"long","leverage":10,"margin":"100","client_order_id":"0123456789012345678901234567890123456789"}"#,
            400,
            "invalid_client_order_id",
        ),
    ];
    for (body, status, code) in cases {
        let r = s.req("POST", "/api/v1/positions", Some(&t), Some(body)).await;
        assert_eq!((r.status, r.body["error"]["code"].as_str()), (status, Some(code)), "{body}");
    }
    for (path, body, status) in [
        ("/api/v1/user/signup", r#"{"email":"' OR 1=1 --","password":"correct horse"}"#, 400),
        ("/api/v1/user/signup", r#"{"email":"x@example.com","password":"short"}"#, 400),
        ("/api/v1/user/signup", r#"{"email":"x@example.com"}"#, 400),
        ("/api/v1/user/deposit", r#"{"amount":"0"}"#, 400),
        ("/api/v1/user/deposit", r#"{"amount":true}"#, 400),
        ("/api/v1/positions/abc/close", r#"{}"#, 404),
        ("/api/v1/positions/99999999999999999999999/close", r#"{}"#, 404),
        // A malformed quantity is refused before any engine round trip (the engine converts
        // well-formed ones with the position's market).
        ("/api/v1/positions/1/close", r#"{"quantity": "x"}"#, 400),
    ] {
        let r = s.req("POST", path, Some(&t), Some(body)).await;
        assert_eq!(r.status, status, "{path} {body}: {}", r.body);
    }
    assert_eq!(s.get("/api/v1/positions?status=maybe", &t).await.status, 400);
    assert_eq!(s.req("GET", "/nope", None, None).await.status, 404);
    assert_eq!(s.req("DELETE", "/api/v1/markets", None, None).await.status, 405);
    let r = s.raw(b"POST /api/v1/user/signin HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi").await;
    assert_eq!(r.status, 415);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_lists_every_route_and_every_listed_route_is_served() {
    // No cache: /healthz must see the price set below at once.
    let mut s = Server::start(|c| c.limits.markets_cache = Duration::ZERO).await;
    let health = s.req("GET", "/healthz", None, None).await;
    assert_eq!((health.status, health.body["status"].as_str()), (503, Some("no_prices")));
    s.price(0, 6_000_000, 6_000_000);
    let doc = s.req("GET", "/api/v1/openapi.json", None, None).await.body;
    assert_eq!(doc["openapi"], "3.1.0");
    let ops = hundredx_http::openapi::operations();
    let listed: Vec<(String, String)> =
        ops.iter().map(|(m, p, _)| (m.clone(), p.clone())).collect();
    let expected = [
        ("DELETE", "/api/v1/orders"),
        ("DELETE", "/api/v1/orders/{id}"),
        ("DELETE", "/api/v1/user/api-keys/{id}"),
        ("DELETE", "/api/v1/user/sessions/{id}"),
        ("GET", "/api/v1/admin/accounts/{account}"),
        ("GET", "/api/v1/admin/accounts/{account}/statement"),
        ("GET", "/api/v1/admin/audit"),
        ("GET", "/api/v1/admin/groups"),
        ("GET", "/api/v1/admin/hedge"),
        ("GET", "/api/v1/admin/markets/{symbol}/sources"),
        ("GET", "/api/v1/admin/reports/daily"),
        ("GET", "/api/v1/admin/risk"),
        ("GET", "/api/v1/admin/stress"),
        ("GET", "/api/v1/candles"),
        ("GET", "/api/v1/markets"),
        ("GET", "/api/v1/openapi.json"),
        ("GET", "/api/v1/orders"),
        ("GET", "/api/v1/positions"),
        ("GET", "/api/v1/positions/{id}"),
        ("GET", "/api/v1/positions/{id}/explain"),
        ("GET", "/api/v1/user/2fa"),
        ("GET", "/api/v1/user/api-keys"),
        ("GET", "/api/v1/user/balance"),
        ("GET", "/api/v1/user/controls"),
        ("GET", "/api/v1/user/ledger"),
        ("GET", "/api/v1/user/position-mode"),
        ("GET", "/api/v1/user/sessions"),
        ("GET", "/api/v1/user/statement"),
        ("GET", "/api/v1/user/terms"),
        ("GET", "/healthz"),
        ("GET", "/metrics"),
        ("PATCH", "/api/v1/orders/{id}"),
        ("POST", "/api/v1/admin/accounts/{account}/actions"),
        ("POST", "/api/v1/admin/stress"),
        ("POST", "/api/v1/orders"),
        ("POST", "/api/v1/orders/batch"),
        ("POST", "/api/v1/orders/cancel-after"),
        ("POST", "/api/v1/positions"),
        ("POST", "/api/v1/positions/close-all"),
        ("POST", "/api/v1/positions/{id}/close"),
        ("POST", "/api/v1/positions/{id}/margin"),
        ("POST", "/api/v1/user/2fa/confirm"),
        ("POST", "/api/v1/user/2fa/disable"),
        ("POST", "/api/v1/user/2fa/enrol"),
        ("POST", "/api/v1/user/api-keys"),
        ("POST", "/api/v1/user/deposit"),
        ("POST", "/api/v1/user/margin-mode"),
        ("POST", "/api/v1/user/password"),
        ("POST", "/api/v1/user/position-mode"),
        ("POST", "/api/v1/user/signin"),
        ("POST", "/api/v1/user/signout"),
        ("POST", "/api/v1/user/signup"),
        ("POST", "/api/v1/user/withdraw"),
        ("PUT", "/api/v1/admin/accounts/{email}/group"),
        ("PUT", "/api/v1/admin/groups/{group}/markets/{symbol}"),
        ("PUT", "/api/v1/admin/markets/{symbol}"),
        ("PUT", "/api/v1/positions/{id}/trailing-stop"),
        ("PUT", "/api/v1/positions/{id}/triggers"),
    ];
    let expected: Vec<(String, String)> =
        expected.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    assert_eq!(listed, expected, "the document lists exactly the API's operations");
    for (method, path) in &listed {
        let concrete = path.replace("{id}", "1");
        let body = (method == "POST" || method == "PUT" || method == "PATCH").then_some("{}");
        let r = s.req(method, &concrete, None, body).await;
        // Served: anything but the router's own "no such route" / "method not allowed".
        let code = r.body["error"]["code"].as_str().unwrap_or("");
        assert!(
            code != "not_found" && code != "method_not_allowed",
            "{method} {path} not served: {}",
            r.body
        );
        // And nothing else is served on that path.
        for other in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
            if !listed.contains(&(other.to_string(), path.clone())) {
                let r = s.req(other, &concrete, None, None).await;
                assert_eq!(r.status, 405, "{other} {path} is served but not documented");
            }
        }
    }
    check_openapi_31(&doc);
    check_enums(&doc);
    let health = s.req("GET", "/healthz", None, None).await;
    assert_eq!((health.status, health.body["engine"].as_str()), (200, Some("alive")));
    let metrics = s.req("GET", "/metrics", None, None).await;
    let text = metrics.body.as_str().unwrap_or("").to_string();
    assert!(
        text.contains("hundredx_http_requests_total")
            && text.contains("hundredx_engine_reply_seconds"),
        "{text}"
    );
    let _ = Arc::new(());
}

/// Closed sets of values are enums in the document (generated clients get them): sides, order
/// types, statuses, close reasons, intervals, statement kinds and every engine reason code.
fn check_enums(doc: &Value) {
    let values = |name: &str| -> Vec<String> {
        let e = doc["components"]["schemas"][name]["enum"].as_array();
        e.unwrap_or_else(|| panic!("{name} is not an enum: {}", doc["components"]["schemas"][name]))
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(values("Side"), ["long", "short"]);
    assert_eq!(values("OrderType"), ["limit", "stop"]);
    assert_eq!(values("PositionStatusName"), ["open", "closed"]);
    assert_eq!(values("Interval"), ["1m", "5m", "15m", "1h", "4h", "1d"]);
    let closes = [
        "manual",
        "take_profit",
        "stop_loss",
        "trailing_stop",
        "liquidation",
        "stop_out",
        "netted",
    ];
    assert_eq!(values("CloseReasonName"), closes);
    assert_eq!(values("MarginModeName"), ["isolated", "cross"]);
    let kinds = ["deposit", "withdrawal", "open_fee", "financing", "realized_pnl", "close_fee"];
    assert_eq!(values("LedgerKind")[..6], kinds);
    assert_eq!(values("LedgerKind")[8..], ["spread_markup", "commission"]);
    let reasons = values("ReasonCode");
    assert_eq!(reasons.len(), engine_core::event::Reason::ALL.len());
    assert!(reasons.contains(&"insufficient_balance".to_owned()));
    assert!(reasons.contains(&"balance_limit".to_owned()));
    // And the fields point at them.
    let open = &doc["components"]["schemas"]["OpenBody"]["properties"]["side"];
    assert_eq!(open["$ref"], "#/components/schemas/Side", "{open}");
}

/// Structural checks of an OpenAPI 3.1 document (no validator crate is at hand offline): every
/// `$ref` resolves, every operation has a 2xx response and documents its errors with the error
/// schema, POST bodies are described, path parameters are declared, the bearer scheme exists.
fn check_openapi_31(doc: &Value) {
    assert!(common::assert_refs_resolve(doc) > 0, "schemas are referenced");
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses =
                op["responses"].as_object().unwrap_or_else(|| panic!("{method} {path}"));
            assert!(responses.keys().any(|k| k.starts_with('2')), "{method} {path}: no 2xx");
            for (status, r) in responses {
                if status.starts_with('4') || status == "503" || status == "504" {
                    let schema = &r["content"]["application/json"]["schema"]["$ref"];
                    let health = path == "/healthz";
                    assert!(
                        health || schema == "#/components/schemas/ErrorBody",
                        "{method} {path} {status}: errors use the error schema, got {r}"
                    );
                }
            }
            if method == "post" {
                assert!(op["requestBody"].is_object(), "{method} {path}: body not described");
            }
            if path.contains("{id}") {
                let params = op["parameters"].as_array().expect("parameters");
                assert!(
                    params.iter().any(|p| p["name"] == "id" && p["in"] == "path"),
                    "{method} {path}: id not declared"
                );
            }
            if op.get("security").is_some() {
                assert!(responses.contains_key("401"), "{method} {path}: 401 not documented");
            }
        }
    }
}

/// Client groups over HTTP: an operator moves an account to `pro`; its round trip pays the
/// group's markup on each side, which the risk view shows on its own line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_move_accounts_between_groups_whose_markup_the_books_show() {
    use engine_core::config::{GroupConfig, GroupMarket};
    let mut engine = EngineConfig::default();
    let pro = GroupMarket {
        symbol: "BTC_USDC".into(),
        markup_ticks: 50,
        markup_bps: 1,
        commission_per_lot: Usdc(2_000_000),
        financing_long_rate: Some(Ppm(300)),
        // Its own brackets: up to 10 000 of notional 50x at 1 %, above that 20x at 2.5 %.
        brackets: vec![
            engine_core::config::Bracket {
                notional_cap: Some(Usdc(10_000_000_000)),
                max_leverage: 50,
                maintenance_margin_rate: Ppm(10_000),
            },
            engine_core::config::Bracket {
                notional_cap: None,
                max_leverage: 20,
                maintenance_margin_rate: Ppm(25_000),
            },
        ],
        ..GroupMarket::default()
    };
    engine.groups = vec![
        GroupConfig {
            name: "default".into(),
            markets: vec![],
            swap_free: false,
            margin_call_level: None,
            stop_out_level: None,
        },
        GroupConfig {
            name: "pro".into(),
            markets: vec![pro],
            swap_free: false,
            margin_call_level: None,
            stop_out_level: None,
        },
    ];
    let groups = engine.groups.clone();
    let mut s = Server::start_with(engine, |cfg| cfg.set_groups(&groups)).await;
    s.price(0, 6_000_000, 6_000_000);
    let (trader, _) = s.user("t@example.com").await;
    let (_, _) = s.user("ops@example.com").await;
    let login = Login::new("ops@example.com").unwrap();
    let reply = s
        .engine
        .submitter()
        .call(now_ns(), CommandKind::SetRole { login, admin: true }, Duration::from_secs(5))
        .unwrap();
    assert!(matches!(reply.result, Ok(ReplyData::Role { admin: true, .. })));
    let creds = json!({ "email": "ops@example.com", "password": "correct horse" });
    let ops = s.post("/api/v1/user/signin", None, creds).await.body["token"]
        .as_str()
        .unwrap()
        .to_string();
    let path = "/api/v1/admin/accounts/t@example.com/group";
    let to = |g: &str| json!({ "group": g }).to_string();
    assert_eq!(s.req("PUT", path, Some(&trader), Some(&to("pro"))).await.status, 403);
    let r = s.req("PUT", path, Some(&ops), Some(&to("gold"))).await;
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (400, Some("invalid_group")));
    let terms = s.get("/api/v1/user/terms", &trader).await;
    assert_eq!(terms.body["group"], "default", "{}", terms.body);
    assert!(terms.body["markets"][0].get("brackets").is_none(), "the market has none");
    let r = s.req("PUT", path, Some(&ops), Some(&to("pro"))).await;
    assert_eq!((r.status, &r.body), (200, &json!({ "email": "t@example.com", "group": "pro" })));
    // Before opening, the trader sees what it will pay and the prices that means.
    let terms = s.get("/api/v1/user/terms", &trader).await;
    let btc = &terms.body["markets"][0];
    assert_eq!((&terms.body["group"], &btc["markup"]), (&json!("pro"), &json!("0.50")));
    // 0.50 and 1 bps (6.00) of markup a side.
    assert_eq!((&btc["quoted_bid"], &btc["quoted_ask"]), (&json!("59993.50"), &json!("60006.50")));
    assert_eq!(
        (&btc["markup_bps"], &btc["commission_per_lot"]),
        (&json!(1), &json!("2.000000")),
        "{btc}"
    );
    let rates = (&btc["financing_long_rate"], &btc["financing_short_rate"]);
    assert_eq!(rates, (&json!("0.000300"), &json!("0.000000")), "the group's, else the market's");
    let brackets = json!([
        { "notional_cap": "10000.000000", "max_leverage": 50,
          "maintenance_margin_rate": "0.010000", "maintenance_amount": "0.000000" },
        { "notional_cap": null, "max_leverage": 20,
          "maintenance_margin_rate": "0.025000", "maintenance_amount": "150.000000" },
    ]);
    assert_eq!(btc["brackets"], brackets, "the group's own brackets");
    // 12 000 of notional at 50x is above the group's first bracket.
    let big = s.post("/api/v1/positions", Some(&trader), open_body("240", 50)).await;
    assert_eq!(big.body["error"]["code"], "leverage_above_bracket", "{}", big.body);
    // 100 USDC at 50x at 60 000: 0.08333 BTC. A side: 0.50 of markup a BTC (0.041665), 1 bps
    // of 4 999.80 (0.49998), 2.00 a lot of commission (0.16666).
    let p = s.post("/api/v1/positions", Some(&trader), open_body("100", 50)).await;
    assert_eq!(p.status, 201, "{}", p.body);
    let pid = p.body["id"].as_str().unwrap().to_string();
    let c =
        s.req("POST", &format!("/api/v1/positions/{pid}/close"), Some(&trader), Some("{}")).await;
    assert_eq!(c.status, 200, "{}", c.body);
    // The desk sees every group's terms; a trader does not.
    let groups = s.get("/api/v1/admin/groups", &ops).await;
    assert_eq!(groups.status, 200, "{}", groups.body);
    let pro = groups.body.as_array().unwrap().iter().find(|g| g["group"] == "pro").unwrap();
    assert_eq!(pro["markets"][0]["markup"], "0.50", "{}", groups.body);
    assert_eq!(s.get("/api/v1/admin/groups", &trader).await.status, 403);
    let risk = s.get("/api/v1/admin/risk", &ops).await;
    assert_eq!(risk.body["spread_revenue"], "1.083290", "{}", risk.body);
    assert_eq!(risk.body["commission_revenue"], "0.333320", "{}", risk.body);
    // The operator edits the group's terms: the trader sees them at once.
    let terms = json!({ "markup": "1.00", "commission_rate": "0.0002", "max_leverage": 20,
        "markup_bps": 3, "financing_short_rate": "-0.0001" })
    .to_string();
    let path = "/api/v1/admin/groups/pro/markets/BTC_USDC";
    assert_eq!(s.req("PUT", path, Some(&trader), Some(&terms)).await.status, 403);
    let r = s.req("PUT", path, Some(&ops), Some(&terms)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!((&r.body["markup"], &r.body["max_leverage"]), (&json!("1.00"), &json!(20)));
    let t = s.get("/api/v1/user/terms", &trader).await;
    let btc = &t.body["markets"][0];
    assert_eq!((&btc["commission_rate"], &btc["max_leverage"]), (&json!("0.000200"), &json!(20)));
    assert_eq!(btc["commission_per_lot"], "2.000000", "an edit keeps what it does not name");
    assert_eq!(btc["markup_bps"], 3);
    let rates = (&btc["financing_long_rate"], &btc["financing_short_rate"]);
    assert_eq!(rates, (&json!("0.000300"), &json!("-0.000100")), "the long side kept");
    assert_eq!(
        (&r.body["markup_bps"], &r.body["financing_short_rate"]),
        (&json!(3), &json!("-0.000100"))
    );
    // Out of range: refused whole, nothing changed.
    let bad = json!({ "markup_bps": 1001, "commission_per_lot": "5" }).to_string();
    let refused = s.req("PUT", path, Some(&ops), Some(&bad)).await;
    let code = refused.body["error"]["code"].as_str();
    assert_eq!((refused.status, code), (400, Some("invalid_request")), "{}", refused.body);
    let t = s.get("/api/v1/user/terms", &trader).await;
    assert_eq!(t.body["markets"][0]["commission_per_lot"], "2.000000", "{}", t.body);
}

/// Tiered margin over HTTP: the markets list shows each bracket with its maintenance amount,
/// and an open above its bracket's leverage is refused with `leverage_above_bracket`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_markets_list_shows_brackets_and_an_open_above_its_bracket_is_refused() {
    use engine_core::config::Bracket;
    let mut engine = EngineConfig::default();
    engine.markets[0].open_interest_cap_short_steps = 50_000_000; // 500 BTC
    engine.markets[0].brackets = vec![
        Bracket {
            notional_cap: Some(Usdc(50_000_000_000)),
            max_leverage: 100,
            maintenance_margin_rate: Ppm(5_000),
        },
        Bracket { notional_cap: None, max_leverage: 50, maintenance_margin_rate: Ppm(10_000) },
    ];
    let mut s = Server::start_with(engine, |_| {}).await;
    s.price(0, 6_000_000, 6_000_000);
    let (trader, _) = s.user("t@example.com").await;
    let markets = s.get("/api/v1/markets", &trader).await;
    let brackets = &markets.body["markets"][0]["brackets"];
    assert_eq!(brackets[0]["notional_cap"], "50000.000000", "{brackets}");
    assert_eq!(brackets[1]["maintenance_amount"], "250.000000", "{brackets}");
    assert!(brackets[1]["notional_cap"].is_null(), "{brackets}");
    assert!(markets.body["markets"][1].get("brackets").is_none(), "a market without brackets");
    let btc = &markets.body["markets"][0];
    assert_eq!(btc["open_interest_cap_short"], "500.00000", "{btc}");
    assert!(btc.get("open_interest_cap_long").is_none() && btc.get("skew_cap").is_none(), "{btc}");
    s.post("/api/v1/user/deposit", Some(&trader), json!({ "amount": "100000" })).await;
    // 1 000 at 100x is 100 000 of notional: the second bracket, 50x at most.
    let r = s.post("/api/v1/positions", Some(&trader), open_body("1000", 100)).await;
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (422, Some("leverage_above_bracket")));
    let r = s.post("/api/v1/positions", Some(&trader), open_body("1000", 50)).await;
    assert_eq!(r.status, 201, "{}", r.body);
}

/// Cross margin over HTTP: the mode is chosen without positions, the balance shows the
/// account's margin level and its levels, and the mode cannot change while a position is open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_chooses_cross_margin_and_sees_its_level() {
    let mut s = Server::start_with(EngineConfig::default(), |_| {}).await;
    s.price(0, 5_000_000, 5_000_000);
    let (trader, _) = s.user("t@example.com").await;
    let b = s.get("/api/v1/user/balance", &trader).await;
    assert_eq!(b.body["margin_mode"], "isolated", "{}", b.body);
    assert!(b.body.get("margin_level").is_none(), "{}", b.body);
    let bad = s.post("/api/v1/user/margin-mode", Some(&trader), json!({ "mode": "both" })).await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    let r = s.post("/api/v1/user/margin-mode", Some(&trader), json!({ "mode": "cross" })).await;
    assert_eq!((r.status, &r.body["margin_mode"]), (200, &json!("cross")), "{}", r.body);
    // 2 500 of margin at 20x: 1 BTC at 50 000; maintenance 0.005 × 50 000 = 250.
    let opened = s.post("/api/v1/positions", Some(&trader), open_body("2500", 20)).await;
    assert_eq!(opened.status, 201, "{}", opened.body);
    assert!(opened.body["liquidation_price"].is_null(), "{}", opened.body);
    let b = s.get("/api/v1/user/balance", &trader).await;
    let level = &b.body["margin_level"];
    assert_eq!(level["equity"], "5000.000000", "{level}");
    assert_eq!(level["maintenance_margin"], "250.000000", "{level}");
    assert_eq!(level["level"], "20.000000", "{level}");
    assert_eq!(
        (&level["margin_call_level"], &level["stop_out_level"]),
        (&json!("1.500000"), &json!("1.000000"))
    );
    let r = s.post("/api/v1/user/margin-mode", Some(&trader), json!({ "mode": "isolated" })).await;
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (422, Some("positions_open")));
}

/// Netting over HTTP: hedging by default; a netting account's second long adds to its position
/// (same id), a larger short reverses it (one position left, the other side), and the mode
/// cannot change while a position is open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_netting_account_adds_to_and_reverses_its_position() {
    let mut s = Server::start_with(EngineConfig::default(), |_| {}).await;
    s.price(0, 5_000_000, 5_000_000);
    let (trader, _) = s.user("n@example.com").await;
    let m = s.get("/api/v1/user/position-mode", &trader).await;
    assert_eq!((m.status, &m.body["mode"]), (200, &json!("hedging")), "{}", m.body);
    let bad = s.post("/api/v1/user/position-mode", Some(&trader), json!({ "mode": "both" })).await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    let r = s.post("/api/v1/user/position-mode", Some(&trader), json!({ "mode": "netting" })).await;
    assert_eq!((r.status, &r.body["mode"]), (200, &json!("netting")), "{}", r.body);

    let first = s.post("/api/v1/positions", Some(&trader), open_body("500", 20)).await;
    assert_eq!(first.status, 201, "{}", first.body);
    let id = first.body["id"].clone();
    let more = s.post("/api/v1/positions", Some(&trader), open_body("500", 20)).await;
    assert_eq!((more.status, &more.body["id"]), (201, &id), "{}", more.body);
    assert_eq!(more.body["quantity"], "0.40000", "{}", more.body);
    // 0.4 BTC long; a short of 0.6 (1 200 at 25x = 30 000 of notional) reverses it.
    let short = json!({ "market": "BTC_USDC", "side": "short", "leverage": 25, "margin": "1200" });
    let rev = s.post("/api/v1/positions", Some(&trader), short).await;
    assert_eq!(rev.status, 201, "{}", rev.body);
    assert_ne!(rev.body["id"], id, "{}", rev.body);
    assert_eq!((&rev.body["side"], &rev.body["quantity"]), (&json!("short"), &json!("0.20000")));
    let open = s.get("/api/v1/positions?status=open", &trader).await;
    assert_eq!(open.body["positions"].as_array().map(Vec::len), Some(1), "{}", open.body);
    let r = s.post("/api/v1/user/position-mode", Some(&trader), json!({ "mode": "hedging" })).await;
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (422, Some("positions_open")));
}

/// A request signed with `key` (docs/API.md, "Signed requests"): the headers and the bytes to
/// send, signed at `ts_ms` for `window_ms`.
fn signed(
    key: &ed25519_dalek::SigningKey,
    (method, path, body): (&str, &str, &str),
    (ts_ms, window_ms): (u64, u64),
) -> String {
    use ed25519_dalek::Signer;
    let b64 = base64::engine::general_purpose::STANDARD;
    let (path_only, query) = path.split_once('?').unwrap_or((path, ""));
    let msg =
        hundredx_http::keys::message(method, path_only, query, ts_ms, window_ms, body.as_bytes());
    let sig = key.sign(&msg);
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    r += &format!("X-API-Key: {}\r\n", b64.encode(key.verifying_key().as_bytes()));
    r += &format!("X-Timestamp: {ts_ms}\r\nX-Window: {window_ms}\r\n");
    r += &format!("X-Signature: {}\r\n", b64.encode(sig.to_bytes()));
    if !body.is_empty() {
        r += &format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len());
    }
    r + "\r\n" + body
}

fn now_ms() -> u64 {
    now_ns() / 1_000_000
}

/// API keys over real sockets: a session creates a key (withdraw off unless asked), the key
/// reads and trades signed; a missing scope, a replay, a stale timestamp, a wrong signature, a
/// foreign address, key management by a key, and (after the session revokes it) the revoked
/// key on another api instance over the same engine are each refused with their own code and
/// change nothing; an expired key stops working at its expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_sign_requests_and_every_refusal_has_its_code() {
    let mut s = Server::start(|_| {}).await;
    s.price(0, 6_000_000, 6_000_000);
    let (session, _) = s.user("bot@example.com").await;
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let b64 = base64::engine::general_purpose::STANDARD;
    let public = b64.encode(key.verifying_key().as_bytes());
    let body = json!({ "label": "bot", "public_key": public, "scopes": ["read", "trade"] });
    let created = s.post("/api/v1/user/api-keys", Some(&session), body).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["scopes"], json!(["read", "trade"]));
    let id = created.body["id"].as_str().unwrap().to_string();
    let listed = s.get("/api/v1/user/api-keys", &session).await;
    assert_eq!(listed.body["keys"][0]["public_key"], json!(public), "{}", listed.body);

    // Reads and trades, signed.
    let balance = s
        .raw(signed(&key, ("GET", "/api/v1/user/balance", ""), (now_ms(), 5_000)).as_bytes())
        .await;
    assert_eq!(balance.status, 200, "{}", balance.body);
    let open = open_body("100", 10).to_string();
    let opened = s
        .raw(signed(&key, ("POST", "/api/v1/positions", &open), (now_ms(), 5_000)).as_bytes())
        .await;
    assert_eq!(opened.status, 201, "{}", opened.body);
    let listed = s
        .raw(
            signed(&key, ("GET", "/api/v1/positions?status=open", ""), (now_ms(), 5_000))
                .as_bytes(),
        )
        .await;
    assert_eq!(listed.body["positions"].as_array().map(Vec::len), Some(1), "{}", listed.body);

    let code = |r: &Reply| (r.status, r.body["error"]["code"].as_str().unwrap_or("").to_string());
    // No withdraw scope.
    let w = json!({ "amount": "1" }).to_string();
    let r = s
        .raw(signed(&key, ("POST", "/api/v1/user/withdraw", &w), (now_ms(), 5_000)).as_bytes())
        .await;
    assert_eq!(code(&r), (403, "missing_scope".into()));
    // The same bytes again: a replay.
    let once = signed(&key, ("GET", "/api/v1/user/balance", ""), (now_ms(), 5_000));
    assert_eq!(s.raw(once.as_bytes()).await.status, 200);
    assert_eq!(code(&s.raw(once.as_bytes()).await), (401, "replayed_signature".into()));
    // Signed 10 s ago with a 5 s window; or too far ahead.
    let stale = signed(&key, ("GET", "/api/v1/user/balance", ""), (now_ms() - 10_000, 5_000));
    assert_eq!(code(&s.raw(stale.as_bytes()).await), (401, "timestamp_outside_window".into()));
    let ahead = signed(&key, ("GET", "/api/v1/user/balance", ""), (now_ms() + 10_000, 5_000));
    assert_eq!(code(&s.raw(ahead.as_bytes()).await), (401, "timestamp_outside_window".into()));
    // A body other than the one signed.
    let forged = signed(&key, ("POST", "/api/v1/positions", &open), (now_ms(), 5_000))
        .replace("\"100\"", "\"900\"");
    assert_eq!(code(&s.raw(forged.as_bytes()).await), (401, "invalid_signature".into()));
    // A key never manages keys.
    let k2 = json!({ "label": "x", "public_key": public }).to_string();
    let r = s
        .raw(signed(&key, ("POST", "/api/v1/user/api-keys", &k2), (now_ms(), 5_000)).as_bytes())
        .await;
    assert_eq!(code(&r), (403, "session_required".into()));
    // Nothing of the refused requests happened: still one position.
    let p = s.get("/api/v1/positions?status=open", &session).await;
    assert_eq!(p.body["positions"].as_array().map(Vec::len), Some(1), "{}", p.body);

    // A key limited to another network is refused from here (127.0.0.1).
    let far = ed25519_dalek::SigningKey::from_bytes(&[8; 32]);
    let body = json!({ "label": "far", "public_key": b64.encode(far.verifying_key().as_bytes()),
        "networks": ["192.0.2.0/24"] });
    assert_eq!(s.post("/api/v1/user/api-keys", Some(&session), body).await.status, 201);
    let r = s
        .raw(signed(&far, ("GET", "/api/v1/user/balance", ""), (now_ms(), 5_000)).as_bytes())
        .await;
    assert_eq!(code(&r), (403, "address_not_allowed".into()));

    // Revoked through this instance; refused by a second api instance over the same engine.
    let second = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let second_addr = second.local_addr().unwrap();
    let cfg = ApiConfig::new(SECRET.to_vec(), MarketConfig::defaults());
    let state = AppState::new(cfg, s.engine.submitter());
    tokio::spawn(hundredx_http::serve(second, state, std::future::pending()));
    let r = raw_at(
        second_addr,
        signed(&key, ("GET", "/api/v1/user/balance", ""), (now_ms(), 5_000)).as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "the key works there too: {}", r.body);
    let revoked =
        s.req("DELETE", &format!("/api/v1/user/api-keys/{id}"), Some(&session), None).await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    let r = raw_at(
        second_addr,
        signed(&key, ("GET", "/api/v1/user/balance", ""), (now_ms(), 5_000)).as_bytes(),
    )
    .await;
    assert_eq!(code(&r), (401, "unknown_api_key".into()));
    let again = s.req("DELETE", &format!("/api/v1/user/api-keys/{id}"), Some(&session), None).await;
    assert_eq!(code(&again), (404, "unknown_api_key".into()));

    // A key that expires in a second: refused once the engine's clock passes it.
    let brief = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let body = json!({ "label": "brief", "public_key": b64.encode(brief.verifying_key().as_bytes()),
        "expires_at": now_ms() + 1_000 });
    assert_eq!(s.post("/api/v1/user/api-keys", Some(&session), body).await.status, 201);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = s
            .raw(signed(&brief, ("GET", "/api/v1/user/balance", ""), (now_ms(), 5_000)).as_bytes())
            .await;
        if r.status == 401 {
            assert_eq!(code(&r), (401, "api_key_expired".into()));
            break;
        }
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(std::time::Instant::now() < deadline, "the key never expired");
        tokio::task::yield_now().await;
    }
}

/// Safety controls a bot calls: a batch with a result per order, an amendment that keeps the
/// id, cancel all (one market, then all), close all, and the dead-man's switch.
#[tokio::test]
async fn a_bot_batches_amends_cancels_all_closes_all_and_arms_its_switch() {
    let mut s = Server::start(|_| {}).await;
    s.price(0, 6_000_000, 6_000_000);
    s.price(1, 300_000, 300_000);
    let (t, _) = s.user("bot@example.com").await;
    let order = |market: &str, price: &str, cid: &str| {
        json!({ "market": market, "side": "long", "type": "limit", "price": price,
            "leverage": 10, "quantity": "0.1", "client_order_id": cid })
    };
    // Three good orders and one crossed: each its own result, in order.
    let batch = json!({ "orders": [order("BTC_USDC", "59000", "b-1"), order("BTC_USDC", "61000", "b-2"),
        order("ETH_USDC", "2900", "b-3"), order("BTC_USDC", "58000", "b-4")] });
    let r = s.post("/api/v1/orders/batch", Some(&t), batch.clone()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let results = r.body["results"].as_array().unwrap().clone();
    let statuses: Vec<u64> = results.iter().map(|x| x["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, vec![201, 422, 201, 201]);
    assert_eq!(results[1]["error"]["code"], "invalid_order_price");
    // The same batch again: the placed ones are not placed twice (their client order ids).
    let again = s.post("/api/v1/orders/batch", Some(&t), batch).await;
    let ids = |v: &Value| -> Vec<Option<String>> {
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["order"]["id"].as_str().map(String::from))
            .collect()
    };
    assert_eq!(ids(&again.body), ids(&r.body));
    assert_eq!(s.get("/api/v1/orders", &t).await.body["orders"].as_array().unwrap().len(), 3);
    let too_many = json!({ "orders": vec![order("BTC_USDC", "59000", "x"); 11] });
    let r = s.post("/api/v1/orders/batch", Some(&t), too_many).await;
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (400, Some("invalid_batch")));

    // Amend the first: a new price and a stop-loss, same id; 0.1 × 58 500 / 10 = 585 held.
    let first = results[0]["order"]["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/orders/{first}");
    let body = json!({ "price": "58500", "stop_loss": "55000" }).to_string();
    let r = s.req("PATCH", &path, Some(&t), Some(&body)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (r.body["id"].as_str(), r.body["reserved"].as_str()),
        (Some(first.as_str()), Some("585.000000"))
    );
    assert_eq!(r.body["stop_loss"], "55000.00");
    // Remove the stop-loss again (null), keep the rest.
    let r = s.req("PATCH", &path, Some(&t), Some(r#"{"stop_loss":null}"#)).await;
    assert_eq!(
        (r.status, r.body.get("stop_loss").and_then(Value::as_str)),
        (200, None),
        "{}",
        r.body
    );
    let crossed = s.req("PATCH", &path, Some(&t), Some(r#"{"price":"61000"}"#)).await;
    assert_eq!(
        (crossed.status, crossed.body["error"]["code"].as_str()),
        (422, Some("invalid_order_price"))
    );
    let nothing = s.req("PATCH", &path, Some(&t), Some("{}")).await;
    assert_eq!(nothing.status, 400);
    let (other, _) = s.user("other@example.com").await;
    let theirs = s.req("PATCH", &path, Some(&other), Some(r#"{"price":"58000"}"#)).await;
    assert_eq!(theirs.status, 404);

    // Cancel BTC's, then the rest.
    let r = s.req("DELETE", "/api/v1/orders?market=BTC_USDC", Some(&t), None).await;
    assert_eq!((r.status, r.body["cancelled"].as_array().unwrap().len()), (200, 2), "{}", r.body);
    let r = s.req("DELETE", "/api/v1/orders", Some(&t), None).await;
    let left: Vec<&str> = r.body["cancelled"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["market"].as_str().unwrap())
        .collect();
    assert_eq!(left, vec!["ETH_USDC"]);
    let b = s.get("/api/v1/user/balance", &t).await;
    assert_eq!(
        (b.body["available"].as_str(), b.body["order_margin"].as_str()),
        (Some("5000.000000"), Some("0.000000"))
    );
    let r = s.req("DELETE", "/api/v1/orders?market=DOGE_USDC", Some(&t), None).await;
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (400, Some("unknown_market")));

    // Close all: two positions close, the other account's stays.
    for market in ["BTC_USDC", "ETH_USDC"] {
        let open = json!({ "market": market, "side": "long", "leverage": 5, "margin": "100" });
        assert_eq!(s.post("/api/v1/positions", Some(&t), open).await.status, 201);
    }
    let mine_too = json!({ "market": "BTC_USDC", "side": "short", "leverage": 5, "margin": "100" });
    assert_eq!(s.post("/api/v1/positions", Some(&other), mine_too).await.status, 201);
    let r = s.post("/api/v1/positions/close-all", Some(&t), json!({})).await;
    assert_eq!(
        (r.status, r.body["closed"].as_array().unwrap().len(), r.body["failed"].as_u64()),
        (200, 2, Some(0)),
        "{}",
        r.body
    );
    let open = s.get("/api/v1/positions?status=open", &other).await;
    assert_eq!(open.body["positions"].as_array().unwrap().len(), 1);

    // The switch: armed, then disarmed; out of range refused.
    let r = s.post("/api/v1/orders/cancel-after", Some(&t), json!({ "after_ms": 60_000 })).await;
    let at = r.body["cancel_at"].as_u64().unwrap();
    assert!(at > now_ms() && at <= now_ms() + 60_000, "{}", r.body);
    let r = s.post("/api/v1/orders/cancel-after", Some(&t), json!({ "after_ms": null })).await;
    assert_eq!((r.status, &r.body["cancel_at"]), (200, &Value::Null));
    let r = s.post("/api/v1/orders/cancel-after", Some(&t), json!({ "after_ms": 10 })).await;
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (400, Some("invalid_request")));
}

/// Sessions: each sign-in is one, listed with where it came from; signing one out, the others,
/// or everywhere refuses their tokens from the next request; a password change keeps the
/// caller's and signs the others out; keys cannot manage sessions.
#[tokio::test]
async fn sign_out_everywhere_and_a_password_change_end_the_other_sessions_at_once() {
    let s = Server::start(|_| {}).await;
    let creds = json!({ "email": "s@example.com", "password": "correct horse" });
    assert_eq!(s.post("/api/v1/user/signup", None, creds.clone()).await.status, 202);
    let mut tokens = Vec::new();
    for _ in 0..3 {
        let r = s.post("/api/v1/user/signin", None, creds.clone()).await;
        assert_eq!(r.status, 200, "{}", r.body);
        tokens.push((
            r.body["token"].as_str().unwrap().to_string(),
            r.body["session_id"].as_str().unwrap().to_string(),
        ));
    }
    let (laptop, phone, bot) = (&tokens[0], &tokens[1], &tokens[2]);
    let list = s.get("/api/v1/user/sessions", &laptop.0).await;
    assert_eq!(list.status, 200, "{}", list.body);
    let sessions = list.body["sessions"].as_array().unwrap().clone();
    assert_eq!(sessions.len(), 3);
    assert_eq!(sessions[0]["id"].as_str(), Some(laptop.1.as_str()));
    assert_eq!(
        (sessions[0]["current"].as_bool(), sessions[1]["current"].as_bool()),
        (Some(true), Some(false))
    );
    assert_eq!(sessions[0]["ip"], "127.0.0.1");
    // Sign the phone out from the laptop: its token is refused at once; the others work.
    let r =
        s.req("DELETE", &format!("/api/v1/user/sessions/{}", phone.1), Some(&laptop.0), None).await;
    assert_eq!((r.status, r.body["signed_out"].as_u64()), (200, Some(1)), "{}", r.body);
    let r = s.get("/api/v1/user/balance", &phone.0).await;
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (401, Some("unknown_session")));
    assert_eq!(s.get("/api/v1/user/balance", &bot.0).await.status, 200);
    // Another account's session id: not the caller's.
    let (other, _) = s.user("o@example.com").await;
    let r = s.req("DELETE", &format!("/api/v1/user/sessions/{}", bot.1), Some(&other), None).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(s.get("/api/v1/user/balance", &bot.0).await.status, 200, "still live");
    // A password change from the laptop: the bot's session ends, the laptop's stays; the old
    // password no longer signs in, the new one does.
    let wrong = json!({ "current_password": "not it at all", "new_password": "battery staple 42" });
    let r = s.post("/api/v1/user/password", Some(&laptop.0), wrong).await;
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (403, Some("wrong_password")));
    let weak = json!({ "current_password": "correct horse", "new_password": "aaaa" });
    assert_eq!(s.post("/api/v1/user/password", Some(&laptop.0), weak).await.status, 400);
    let change =
        json!({ "current_password": "correct horse", "new_password": "battery staple 42" });
    let r = s.post("/api/v1/user/password", Some(&laptop.0), change).await;
    assert_eq!((r.status, r.body["signed_out"].as_u64()), (200, Some(1)), "{}", r.body);
    assert_eq!(s.get("/api/v1/user/balance", &bot.0).await.status, 401);
    assert_eq!(s.get("/api/v1/user/balance", &laptop.0).await.status, 200);
    assert_eq!(s.post("/api/v1/user/signin", None, creds.clone()).await.status, 401);
    let new_creds = json!({ "email": "s@example.com", "password": "battery staple 42" });
    let again = s.post("/api/v1/user/signin", None, new_creds).await;
    assert_eq!(again.status, 200);
    let again = again.body["token"].as_str().unwrap().to_string();
    // Everywhere: both live sessions end, this one included.
    let r = s.post("/api/v1/user/signout", Some(&again), json!({ "scope": "all" })).await;
    assert_eq!((r.status, r.body["signed_out"].as_u64()), (200, Some(2)), "{}", r.body);
    assert_eq!(s.get("/api/v1/user/balance", &laptop.0).await.status, 401);
    assert_eq!(s.get("/api/v1/user/balance", &again).await.status, 401);
    let r = s.post("/api/v1/user/signout", Some(&other), json!({ "scope": "nowhere" })).await;
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (400, Some("invalid_scope")));
    // This session only (the default): the other account's token ends, nothing else.
    let r = s.post("/api/v1/user/signout", Some(&other), json!({})).await;
    assert_eq!((r.status, r.body["signed_out"].as_u64()), (200, Some(1)));
    assert_eq!(s.get("/api/v1/user/balance", &other).await.status, 401);
}

/// Weights a bot can pace itself by: every authenticated answer says what is left of the
/// minute's budget (`RateLimit-Policy`, `RateLimit`, `X-Weight-Used-1m`); a key has a budget of
/// its own within its account's; a statement weighs 50, a batch one per order; over budget is
/// 429 with `Retry-After`, and the account's sessions keep their own budget. Budgets refill
/// continuously (q per minute), so every figure is checked against what may have refilled
/// since its start: the test holds on a loaded machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_says_the_weight_left_and_a_spent_key_gets_429() {
    let mut s = Server::start(|c| {
        c.limits.weight_per_minute_account = 100;
        c.limits.weight_per_minute_key = 10;
    })
    .await;
    s.price(0, 6_000_000, 6_000_000);
    let (session, _) = s.user("weights@example.com").await;
    let header = |r: &Reply, name: &str| -> String {
        r.headers
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
            .unwrap_or_default()
    };
    let used = |r: &Reply| header(r, "x-weight-used-1m").parse::<u64>().unwrap();
    // `got` is `want` less at most what refilled in `since` at q a minute (and one in progress).
    let near = |got: u64, want: u64, since: std::time::Instant, q: u64| {
        let refilled = since.elapsed().as_secs() * q / 60 + 1;
        assert!(got <= want && got + refilled >= want, "{got} used, {want} charged");
    };
    let start = std::time::Instant::now();
    let r = s.get("/api/v1/user/balance", &session).await;
    assert_eq!(header(&r, "ratelimit-policy"), r#""account";q=100;w=60"#);
    // Sign-in is not a weighed request: the balance is the first (1): 99 left, whole in 1 s.
    assert_eq!(header(&r, "ratelimit"), r#""account";r=99;t=1"#, "{}", r.headers);
    assert_eq!(used(&r), 1);
    // A batch of 3 weighs 1 + 3.
    let order = |p: &str| json!({ "market": "BTC_USDC", "side": "long", "type": "limit", "price": p, "leverage": 10, "quantity": "0.01" });
    let r = s
        .post(
            "/api/v1/orders/batch",
            Some(&session),
            json!({ "orders": [order("59000"), order("58000"), order("57000")] }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    near(used(&r), 5, start, 100);

    // A key's budget is its own: 10 a minute.
    let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let b64 = base64::engine::general_purpose::STANDARD;
    let body = json!({ "label": "w", "public_key": b64.encode(key.verifying_key().as_bytes()), "scopes": ["read"] });
    assert_eq!(s.post("/api/v1/user/api-keys", Some(&session), body).await.status, 201);
    let key_start = std::time::Instant::now();
    let mut charged = 0;
    let refused = loop {
        let r =
            s.raw(signed(&key, ("GET", "/api/v1/orders", ""), (now_ms(), 5_000)).as_bytes()).await;
        if r.status == 429 {
            break r;
        }
        assert_eq!(r.status, 200, "{}", r.body);
        charged += 1;
        assert!(header(&r, "ratelimit").starts_with(r#""key";r="#), "{}", r.headers);
        near(used(&r), charged.min(10), key_start, 10);
        assert!(charged < 40, "a key of 10 a minute was never refused");
    };
    assert!(charged >= 10, "refused after {charged}");
    assert_eq!(refused.body["error"]["code"], "rate_limited");
    let retry: u64 = header(&refused, "retry-after").parse().unwrap();
    assert!((1..=7).contains(&retry), "{retry}");
    assert_eq!(header(&refused, "ratelimit"), r#""key";r=0;t=60"#);
    // The session still has the account's budget.
    let r = s.get("/api/v1/user/balance", &session).await;
    assert_eq!(r.status, 200);
    let before = used(&r);
    assert!(before < 100, "{before}");
    // A statement weighs 50 (its route answers 404 here, no history store: the weight is
    // charged before any route runs).
    let at = std::time::Instant::now();
    let r = s.get("/api/v1/user/statement", &session).await;
    near(used(&r), before + 50, at, 100);
}

/// Two-factor sign-in (RFC 6238): enrol (a secret, its otpauth URI and QR code, ten recovery
/// codes), confirm with a code; then sign-in, key creation and withdrawal need one; a code is
/// spent once (its time step, or the recovery code), a wrong one is refused with its code;
/// turning it off needs a code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_factor_sign_in_needs_a_fresh_code_each_time() {
    use totp_rs::{Algorithm, Secret, TOTP};
    // More sign-ins than a minute's default allowance (5 per login and address) happen here;
    // the bound itself is checked at the end.
    let s = Server::start(|c| c.limits.signin_per_login_ip_per_minute = 16).await;
    let (session, _) = s.user("otp@example.com").await;
    let creds = json!({ "email": "otp@example.com", "password": "correct horse" });
    let r = s.get("/api/v1/user/2fa", &session).await;
    assert_eq!((r.status, r.body["enabled"].as_bool()), (200, Some(false)));
    let r = s.post("/api/v1/user/2fa/enrol", Some(&session), json!({})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let secret =
        Secret::Encoded(r.body["secret"].as_str().unwrap().to_string()).to_bytes().unwrap();
    assert!(r.body["otpauth_uri"].as_str().unwrap().starts_with("otpauth://totp/hundredx:"));
    assert!(r.body["qr_svg"].as_str().unwrap().contains("<svg"));
    let recovery: Vec<String> = r.body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(recovery.len(), 10);
    let totp = TOTP::new_unchecked(Algorithm::SHA1, 6, 1, 30, secret, None, String::new());
    let now = now_ms() / 1_000;
    let code_at = |secs: u64| totp.generate(secs);
    // Pending: sign-in needs nothing yet. A wrong code does not confirm.
    assert_eq!(s.post("/api/v1/user/signin", None, creds.clone()).await.status, 200);
    let wrong = if code_at(now) == "000000" { "111111" } else { "000000" };
    let r = s.post("/api/v1/user/2fa/confirm", Some(&session), json!({ "code": wrong })).await;
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (401, Some("invalid_totp")));
    let r =
        s.post("/api/v1/user/2fa/confirm", Some(&session), json!({ "code": code_at(now) })).await;
    assert_eq!((r.status, r.body["enabled"].as_bool()), (200, Some(true)), "{}", r.body);
    // On: a sign-in without a code, or with the code just spent, is refused.
    let r = s.post("/api/v1/user/signin", None, creds.clone()).await;
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (401, Some("totp_required")));
    let mut with = creds.clone();
    with["totp"] = json!(code_at(now));
    let r = s.post("/api/v1/user/signin", None, with.clone()).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (401, Some("invalid_totp")),
        "replayed within its step"
    );
    // The next step's code (one step of skew) signs in, once.
    with["totp"] = json!(code_at(now + 30));
    assert_eq!(s.post("/api/v1/user/signin", None, with.clone()).await.status, 200);
    let r = s.post("/api/v1/user/signin", None, with).await;
    assert_eq!(r.body["error"]["code"], "invalid_totp");
    // A recovery code signs in once.
    let mut by_recovery = creds.clone();
    by_recovery["totp"] = json!(recovery[0].to_uppercase());
    assert_eq!(s.post("/api/v1/user/signin", None, by_recovery.clone()).await.status, 200);
    assert_eq!(s.post("/api/v1/user/signin", None, by_recovery).await.status, 401);
    // A withdrawal and a key need one too.
    let r = s.post("/api/v1/user/withdraw", Some(&session), json!({ "amount": "1" })).await;
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (401, Some("totp_required")));
    let r = s
        .post(
            "/api/v1/user/withdraw",
            Some(&session),
            json!({ "amount": "1", "totp": recovery[1] }),
        )
        .await;
    assert_eq!((r.status, r.body["available"].as_str()), (200, Some("4999.000000")), "{}", r.body);
    let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut body =
        json!({ "label": "k", "public_key": b64.encode(key.verifying_key().as_bytes()) });
    let r = s.post("/api/v1/user/api-keys", Some(&session), body.clone()).await;
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (401, Some("totp_required")));
    body["totp"] = json!(recovery[2]);
    assert_eq!(s.post("/api/v1/user/api-keys", Some(&session), body).await.status, 201);
    let r = s.get("/api/v1/user/2fa", &session).await;
    assert_eq!(r.body["recovery_codes_left"], 7);
    // Enrolling again while on is refused; off needs a code; then sign-in needs none.
    let r = s.post("/api/v1/user/2fa/enrol", Some(&session), json!({})).await;
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (422, Some("totp_state")));
    let r = s.post("/api/v1/user/2fa/disable", Some(&session), json!({ "code": wrong })).await;
    assert_eq!(r.status, 401);
    let r =
        s.post("/api/v1/user/2fa/disable", Some(&session), json!({ "code": recovery[3] })).await;
    assert_eq!((r.status, r.body["enabled"].as_bool()), (200, Some(false)), "{}", r.body);
    assert_eq!(s.post("/api/v1/user/signin", None, creds.clone()).await.status, 200);
    // Guessing codes is bounded like guessing passwords: on again, wrong codes until 429.
    let r = s.post("/api/v1/user/2fa/enrol", Some(&session), json!({})).await;
    let secret =
        Secret::Encoded(r.body["secret"].as_str().unwrap().to_string()).to_bytes().unwrap();
    let totp = TOTP::new_unchecked(Algorithm::SHA1, 6, 1, 30, secret, None, String::new());
    let r = s
        .post(
            "/api/v1/user/2fa/confirm",
            Some(&session),
            json!({ "code": totp.generate(now_ms() / 1_000) }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mut guess = creds;
    guess["totp"] = json!("123456");
    let mut refused = 0;
    for _ in 0..16 {
        let r = s.post("/api/v1/user/signin", None, guess.clone()).await;
        if r.status == 429 {
            break;
        }
        refused += 1;
    }
    assert!(refused < 16, "16 guesses a minute were all answered");
}
