//! The push API over real sockets: an engine, the HTTP adapter on port 0, the engine's changes
//! fed to the hub as `serve` does, and WebSocket clients (tokio-tungstenite).

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use engine_core::prelude::*;
use futures_util::{SinkExt, StreamExt};
use hundredx_http::{ApiConfig, AppState, now_ns};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

struct Server {
    addr: std::net::SocketAddr,
    engine: EngineHandle,
    state: Arc<AppState>,
    update_id: u64,
}

impl Server {
    async fn start(tweak: impl FnOnce(&mut ApiConfig)) -> Server {
        let engine = EngineHandle::start(EngineConfig::default()).unwrap();
        let mut cfg =
            ApiConfig::new(b"ws-test-secret-of-enough-length".to_vec(), MarketConfig::defaults());
        cfg.limits.push.price_updates_per_second = 50;
        cfg.limits.push.refresh_ms = 100;
        tweak(&mut cfg);
        let state = AppState::new(cfg, engine.submitter());
        let changes = engine.subscribe(Subscription::ChangesBestEffort, 65_536);
        let hub = state.hub();
        std::thread::spawn(move || {
            for o in changes {
                if let Output::Change(c) = o {
                    hub.publish(&c);
                }
            }
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(hundredx_http::serve(listener, Arc::clone(&state), std::future::pending()));
        Server { addr, engine, state, update_id: 0 }
    }

    fn price(&mut self, bid: i64) {
        self.update_id += 1;
        common::apply_tick(&mut self.engine.submitter(), 0, bid, bid + 100, self.update_id);
    }

    async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
        let body = body.to_string();
        let mut r = format!(
            "POST {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
        if let Some(t) = token {
            r += &format!("Authorization: Bearer {t}\r\n");
        }
        r += "\r\n";
        r += &body;
        let mut s = TcpStream::connect(self.addr).await.unwrap();
        s.write_all(r.as_bytes()).await.unwrap();
        let mut buf = String::new();
        s.read_to_string(&mut buf).await.unwrap();
        let (head, body) = buf.split_once("\r\n\r\n").unwrap_or((&buf, ""));
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        (status, serde_json::from_str(body).unwrap_or_default())
    }

    /// Signs up and in; returns (token, account).
    async fn user(&self, email: &str) -> (String, AccountId) {
        let creds = json!({"email": email, "password": "correct horse battery"});
        assert_eq!(self.post("/api/v1/user/signup", None, &creds).await.0, 202);
        let (status, body) = self.post("/api/v1/user/signin", None, &creds).await;
        assert_eq!(status, 200, "{body}");
        let id: u32 = body["user_id"].as_str().unwrap().parse().unwrap();
        (body["token"].as_str().unwrap().to_string(), AccountId(id))
    }

    /// A push connection, signed in on the upgrade (`Authorization: Bearer`) when `token`.
    async fn connect(&self, token: Option<&str>) -> Ws {
        tokio_tungstenite::connect_async(self.upgrade(token)).await.unwrap().0
    }

    fn upgrade(
        &self,
        token: Option<&str>,
    ) -> tokio_tungstenite::tungstenite::handshake::client::Request {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = format!("ws://{}/api/v1/ws", self.addr).into_client_request().unwrap();
        if let Some(t) = token {
            req.headers_mut().insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        req
    }

    fn open(&mut self, account: AccountId, lev: u32, margin: i64) -> PositionView {
        open(&mut self.engine.submitter(), account, lev, margin)
    }

    fn close(&mut self, account: AccountId, position: PositionId) {
        close(&mut self.engine.submitter(), account, position);
    }
}

fn open(engine: &mut Submitter, account: AccountId, lev: u32, margin: i64) -> PositionView {
    {
        let req = OpenRequest {
            account,
            market: MarketId(0),
            side: Side::Long,
            leverage: lev,
            size: Size::Margin(Usdc::from_whole(margin)),
            expected_price: None,
            max_slippage_bps: 0,
            take_profit: None,
            stop_loss: None,
            client_order_id: None,
        };
        let r =
            engine.call(now_ns(), CommandKind::OpenPosition(req), Duration::from_secs(5)).unwrap();
        match r.result {
            Ok(ReplyData::Opened(v)) => v,
            other => panic!("{other:?}"),
        }
    }
}

fn close(engine: &mut Submitter, account: AccountId, position: PositionId) {
    let kind = CommandKind::ClosePosition { account, position, quantity: None, key: None };
    let r = engine.call(now_ns(), kind, Duration::from_secs(5)).unwrap();
    assert!(r.result.is_ok(), "{r:?}");
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// The next JSON text message (pings are answered by the client library), within `secs`.
async fn next(ws: &mut Ws, secs: u64) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(secs), ws.next())
            .await
            .expect("a message in time");
        match m {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(t.as_str()).unwrap(),
            Some(Ok(Message::Close(f))) => return json!({"closed": f.map(|f| u16::from(f.code))}),
            Some(Ok(_)) => continue,
            other => return json!({"ended": format!("{other:?}")}),
        }
    }
}

/// Messages until one on `channel` matches `pred`.
async fn until(ws: &mut Ws, channel: &str, pred: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..500 {
        let m = next(ws, 5).await;
        if m["channel"] == channel && pred(&m["data"]) {
            return m;
        }
    }
    panic!("no matching {channel} message");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prices_are_pushed_numbered_and_private_channels_need_auth() {
    let mut s = Server::start(|_| {}).await;
    s.price(6_000_000);
    let mut ws = s.connect(None).await;
    send(&mut ws, json!({"op": "subscribe", "channels": ["prices"]})).await;
    assert_eq!(next(&mut ws, 5).await, json!({"op": "subscribed", "channels": ["prices"]}));
    let first = until(&mut ws, "prices", |d| d["market"] == "BTC_USDC").await;
    assert_eq!((first["seq"].as_u64(), first["data"]["bid"].as_str()), (Some(1), Some("60000.00")));
    s.price(6_000_500);
    let second = until(&mut ws, "prices", |d| d["bid"] == "60005.00").await;
    assert_eq!(second["seq"], 2, "numbered without gaps");
    send(&mut ws, json!({"op": "subscribe", "channels": ["positions"]})).await;
    assert_eq!(next(&mut ws, 5).await["code"], "auth_required");
    send(&mut ws, json!({"op": "auth", "token": "not-a-token"})).await;
    assert_eq!(next(&mut ws, 5).await["code"], "unauthorized");
    send(&mut ws, json!({"op": "subscribe", "channels": ["trades"]})).await;
    assert_eq!(next(&mut ws, 5).await["code"], "unknown_channel");
    send(&mut ws, json!({"op": "ping"})).await;
    assert_eq!(next(&mut ws, 5).await, json!({"op": "pong"}));
    // A bad token on the upgrade is refused before any socket is handed over.
    match tokio_tungstenite::connect_async(s.upgrade(Some("junk"))).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("a bad token on the upgrade: {other:?}"),
    }
}

/// The first frame until it closes: its close code (`None`: ended without a close frame).
async fn close_code(ws: &mut Ws, within: Duration) -> Option<u16> {
    tokio::time::timeout(within, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(Some(f)))) => return Some(u16::from(f.code)),
                Some(Ok(_)) => {}
                _ => return None,
            }
        }
    })
    .await
    .expect("the connection stayed open")
}

/// A token in the URL ends up in proxies' access logs: `?token=` is refused (400
/// `token_in_url`) even when the token is valid; the auth frame and the header sign in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_in_the_url_is_refused_and_the_auth_frame_signs_in() {
    let s = Server::start(|_| {}).await;
    let (token, account) = s.user("url@example.com").await;
    let url = format!("ws://{}/api/v1/ws?token={token}", s.addr);
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            assert_eq!(r.status(), 400);
            let body: Value =
                serde_json::from_slice(r.body().as_deref().unwrap_or_default()).unwrap_or_default();
            assert_eq!(body["error"]["code"], "token_in_url", "{body}");
        }
        other => panic!("a token in the URL: {other:?}"),
    }
    let mut ws = s.connect(None).await;
    send(&mut ws, json!({"op": "auth", "token": token})).await;
    let m = next(&mut ws, 5).await;
    assert_eq!(m, json!({"op": "authed", "user_id": account.0.to_string()}));
}

/// A push connection outlived its token: REST answered 401 after `exp` while the socket kept
/// pushing private frames. Now it is closed 4004 `token_expired` when the token expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_connection_is_closed_when_its_token_expires() {
    let s = Server::start(|c| c.token_ttl = Duration::from_secs(2)).await;
    let (token, _) = s.user("expiring@example.com").await;
    let mut header = s.connect(Some(&token)).await;
    let mut framed = s.connect(None).await;
    send(&mut framed, json!({"op": "auth", "token": token})).await;
    assert_eq!(next(&mut framed, 5).await["op"], "authed");
    for ws in [&mut header, &mut framed] {
        send(ws, json!({"op": "subscribe", "channels": ["balance"]})).await;
        assert_eq!(close_code(ws, Duration::from_secs(30)).await, Some(4004));
    }
}

/// 69,983 subscribe frames on one connection cost 12 CPU-seconds in 20. Past
/// `client_frames_per_second` (burst twice that) the connection is closed 4008 `rate_limited`,
/// and a client within the allowance (8 frames, under the burst of 10) is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_flooding_frames_is_closed_and_one_within_the_allowance_is_served() {
    let s = Server::start(|c| c.limits.push.client_frames_per_second = 5).await;
    let mut calm = s.connect(None).await;
    for _ in 0..8 {
        send(&mut calm, json!({"op": "ping"})).await;
        assert_eq!(next(&mut calm, 5).await, json!({"op": "pong"}));
    }
    let mut flood = s.connect(None).await;
    let sub = json!({"op": "subscribe", "channels": ["prices"]});
    for _ in 0..200 {
        if flood.send(Message::Text(sub.to_string().into())).await.is_err() {
            break;
        }
    }
    assert_eq!(close_code(&mut flood, Duration::from_secs(30)).await, Some(4008));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prices_reach_a_connection_at_most_price_updates_per_second_latest_wins() {
    let mut s = Server::start(|c| c.limits.push.price_updates_per_second = 4).await;
    s.price(6_000_000);
    let mut ws = s.connect(None).await;
    send(&mut ws, json!({"op": "subscribe", "channels": ["prices"]})).await;
    assert_eq!(next(&mut ws, 5).await, json!({"op": "subscribed", "channels": ["prices"]}));
    until(&mut ws, "prices", |d| d["bid"] == "60000.00").await;
    // 300 ticks as fast as the engine takes them.
    let started = tokio::time::Instant::now();
    for i in 1..=300 {
        s.price(6_000_000 + i * 100);
    }
    let seen = std::cell::Cell::new(0u32);
    let last = until(&mut ws, "prices", |d| {
        seen.set(seen.get() + 1);
        d["bid"] == "60300.00"
    })
    .await;
    let (seen, ms) = (seen.get(), started.elapsed().as_millis());
    // At 4 a second the pump sends once per 250 ms: at most one message per started 250 ms
    // since the first tick (plus one already due), and the latest always arrives.
    let bound = u32::try_from(ms / 250).unwrap_or(u32::MAX).saturating_add(3);
    assert!(seen <= bound, "{seen} price messages in {ms} ms at 4 a second (bound {bound})");
    assert_eq!(last["data"]["update_id"], 301, "the latest price wins");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_callers_changes_are_pushed_and_a_liquidation_reaches_its_owner() {
    let mut s = Server::start(|_| {}).await;
    let (alice_token, alice) = s.user("alice@example.com").await;
    let (_, bob) = s.user("bob@example.com").await;
    s.price(6_000_000);
    let mut ws = s.connect(Some(&alice_token)).await;
    send(&mut ws, json!({"op": "subscribe", "channels": ["positions", "balance", "notices"]}))
        .await;
    assert_eq!(next(&mut ws, 5).await["op"], "subscribed");
    let balance = until(&mut ws, "balance", |_| true).await;
    assert_eq!(balance["data"]["available"], "5000.000000");
    // Bob trades: nothing of it reaches alice.
    let b = s.open(bob, 10, 100);
    s.close(bob, b.id);
    // Alice opens at 50x; the price falls through her liquidation price.
    let p = s.open(alice, 50, 100);
    let opened = until(&mut ws, "positions", |d| d["event"] == "opened").await;
    assert_eq!(opened["data"]["position_id"], p.id.0.to_string(), "her own open, not bob's");
    s.price(p.liquidation_price.0 - 1_000);
    // Within that tick: the close with its reason, and the notice. Every message she gets is
    // about her position, numbered per channel without gaps.
    let (mut closed, mut notice) = (None, None);
    let mut positions_seqs = vec![opened["seq"].as_u64().unwrap()];
    while closed.is_none() || notice.is_none() {
        let m = next(&mut ws, 5).await;
        match m["channel"].as_str() {
            Some("positions") => {
                positions_seqs.push(m["seq"].as_u64().unwrap());
                if m["data"]["event"] == "closed" {
                    closed = Some(m);
                }
            }
            Some("notices") => notice = Some(m),
            _ => {}
        }
    }
    let (closed, notice) = (closed.unwrap(), notice.unwrap());
    assert_eq!(closed["data"]["reason"], "liquidation");
    assert_eq!(closed["data"]["position_id"], p.id.0.to_string());
    assert_eq!(
        (notice["seq"].as_u64(), notice["data"]["notice"].as_str()),
        (Some(1), Some("liquidation"))
    );
    assert_eq!(notice["data"]["position"]["position_id"], p.id.0.to_string());
    assert!(positions_seqs.windows(2).all(|w| w[1] == w[0] + 1), "{positions_seqs:?}");
    assert_ne!(b.id, p.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_fill_and_a_margin_call_are_pushed_to_their_owner() {
    let mut s = Server::start(|_| {}).await;
    let (token, _) = s.user("alice@example.com").await;
    s.price(6_000_000);
    let mut ws = s.connect(Some(&token)).await;
    send(&mut ws, json!({"op": "subscribe", "channels": ["orders", "notices"]})).await;
    assert_eq!(next(&mut ws, 5).await["op"], "subscribed");
    let order = json!({ "market": "BTC_USDC", "side": "long", "type": "limit", "price": "59900",
        "leverage": 50, "quantity": "0.01" });
    let (status, placed) = s.post("/api/v1/orders", Some(&token), &order).await;
    assert_eq!(status, 201, "{placed}");
    let pushed = until(&mut ws, "orders", |d| d["event"] == "placed").await;
    assert_eq!(pushed["data"]["id"], placed["id"]);
    // The ask (bid + 1.00) falls to 59 891: filled there.
    s.price(5_989_000);
    let filled = until(&mut ws, "orders", |d| d["event"] == "filled").await;
    assert_eq!(filled["data"]["order_id"], placed["id"]);
    assert!(filled["data"]["position_id"].is_string());
    // Entry 59 891, margin 11.9782: called below (59 891 - 1 197.82) / 0.9925 = 59 136.71,
    // liquidated at or below / 0.995 = 58 988.13. A bid of 59 000 is between: a call only.
    s.price(5_900_000);
    let call = until(&mut ws, "notices", |d| d["notice"] == "margin_call").await;
    assert_eq!(call["data"]["position_id"], filled["data"]["position_id"]);
    assert_eq!(
        (call["data"]["mark"].as_str(), call["data"]["margin_call_price"].as_str()),
        (Some("59000.00"), Some("59136.71"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_is_cut_off_and_the_others_get_every_message() {
    let s = Server::start(|c| {
        c.limits.push.send_timeout_ms = 1_000;
    })
    .await;
    let (token, account) = s.user("carol@example.com").await;
    let mut s = s;
    s.price(6_000_000);
    let mut fast = s.connect(Some(&token)).await;
    let mut slow = s.connect(Some(&token)).await;
    for ws in [&mut fast, &mut slow] {
        send(ws, json!({"op": "subscribe", "channels": ["positions"]})).await;
        assert_eq!(next(ws, 5).await["op"], "subscribed");
    }
    // The fast client reads everything on its own task.
    let reader = tokio::spawn(async move {
        let (mut seqs, mut events) = (Vec::new(), 0);
        while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(3), fast.next()).await
        {
            if let Message::Text(t) = m {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["channel"] == "positions" {
                    seqs.push(v["seq"].as_u64().unwrap());
                    events += usize::from(v["data"]["event"] != "marks");
                }
            }
        }
        (seqs, events)
    });
    // The slow one reads nothing while 2 x 12 000 position events go out, a few at a time.
    let rounds = 12_000;
    let mut engine = s.engine.submitter();
    let mut update_id = s.update_id;
    tokio::task::spawn_blocking(move || {
        for i in 0..rounds {
            let p = open(&mut engine, account, 10, 10);
            close(&mut engine, account, p.id);
            if i % 100 == 0 {
                std::thread::sleep(Duration::from_millis(5));
                // Keep the price fresh (5 s max age) however long a busy machine takes.
                update_id += 1;
                common::apply_tick(&mut engine, 0, 6_000_000, 6_000_100, update_id);
            }
        }
    })
    .await
    .unwrap();
    let (seqs, events) = reader.await.unwrap();
    assert_eq!(events, 2 * rounds, "the fast client got every open and close");
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "numbered without a gap");
    let stats = &s.state.hub().stats;
    assert_eq!(stats.slow_closed.load(Ordering::Relaxed), 1, "the slow client was cut off");
    // The slow client finds the end of its stream, not 24 000 events.
    let mut got = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(5), slow.next()).await {
            Ok(Some(Ok(Message::Text(_)))) => got += 1,
            Ok(Some(Ok(Message::Close(f)))) => {
                assert_eq!(f.map(|f| u16::from(f.code)), Some(4001));
                break;
            }
            Ok(Some(Ok(_))) => {}
            _ => break, // reset without a close frame: its buffer was full
        }
    }
    assert!(got < 2 * rounds, "the slow client did not get everything: {got}");
}

/// The AsyncAPI document is served, every `$ref` in it resolves, and it names exactly the
/// channels the server accepts.
#[tokio::test]
async fn the_asyncapi_document_describes_the_protocol() {
    let doc: Value = serde_json::from_str(hundredx_http::push::ASYNCAPI).unwrap();
    assert_eq!(doc["asyncapi"], "3.0.0");
    assert!(common::assert_refs_resolve(&doc) > 10);
    let names = &doc["components"]["schemas"]["channelNames"]["items"]["anyOf"][0]["enum"];
    let names: Vec<&str> = names.as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(names, hundredx_http::push::CHANNELS);
    let s = Server::start(|_| {}).await;
    let (status, body) = {
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        c.write_all(b"GET /api/v1/asyncapi.json HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut buf = String::new();
        c.read_to_string(&mut buf).await.unwrap();
        let (head, body) = buf.split_once("\r\n\r\n").unwrap();
        (head.split(' ').nth(1).unwrap().to_string(), body.to_string())
    };
    assert_eq!(status, "200");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), doc);
}

/// A client that sends nothing, not even a pong (it never reads its pings), is closed 4002;
/// connections beyond the per-address cap are refused with 429.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_clients_are_closed_and_connections_are_capped() {
    let s = Server::start(|c| {
        c.limits.push.heartbeat_ms = 100;
        c.limits.push.idle_timeout_ms = 400;
        c.limits.push.per_ip = 2;
    })
    .await;
    let mut silent = s.connect(None).await;
    let _second = s.connect(None).await;
    let third = tokio_tungstenite::connect_async(format!("ws://{}/api/v1/ws", s.addr)).await;
    match third {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 429),
        other => panic!("a third connection from one address: {other:?}"),
    }
    // Not reading means not answering pings: after the idle timeout the server closes both.
    let idle_closed = || s.state.hub().stats.idle_closed.load(Ordering::Relaxed);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while idle_closed() < 2 {
        assert!(std::time::Instant::now() < deadline, "idle connections closed: {}", idle_closed());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The client library answers the queued pings first and finds the socket closed, or reads
    // the close frame: either way the stream ends, and a close frame, if read, says why.
    let mut ended = false;
    while let Ok(m) = tokio::time::timeout(Duration::from_secs(5), silent.next()).await {
        match m {
            Some(Ok(Message::Close(f))) => {
                assert_eq!(f.map(|f| u16::from(f.code)), Some(4002));
                ended = true;
                break;
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => {
                ended = true;
                break;
            }
        }
    }
    assert!(ended, "the silent connection was closed");
    assert_eq!(idle_closed(), 2, "both connections were silent");
    // The slots are given back (once each closing handshake ends): a new connection is
    // accepted again.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let again = tokio_tungstenite::connect_async(format!("ws://{}/api/v1/ws", s.addr)).await;
        if again.is_ok() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the slots never came back: {again:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Candles are pushed from the history store: subscribe to `candles.BTC_USDC.1m`, move the
/// price, and the candle's close and high follow, numbered on that channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candles_are_pushed_from_the_history_store() {
    let mut s = Server::start(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let url = history::Store::sqlite_url(&dir.path().join("h.sqlite"));
    let changes = s.engine.subscribe(Subscription::Changes, 65_536);
    let writer =
        history::spawn_writer(&url, &MarketConfig::defaults(), 256, changes, now_ns).unwrap();
    let store = history::Store::open(&url, &MarketConfig::defaults(), 2).await.unwrap();
    s.state.attach_history(Arc::new(store), Some(writer.status));
    s.price(6_000_000);
    let mut ws = s.connect(None).await;
    send(
        &mut ws,
        json!({"op": "subscribe", "channels": ["candles.BTC_USDC.1m", "candles.NOPE.1m"]}),
    )
    .await;
    assert_eq!(next(&mut ws, 5).await["code"], "unknown_channel");
    send(&mut ws, json!({"op": "subscribe", "channels": ["candles.BTC_USDC.1m"]})).await;
    assert_eq!(
        next(&mut ws, 5).await,
        json!({"op": "subscribed", "channels": ["candles.BTC_USDC.1m"]})
    );
    let first = until(&mut ws, "candles.BTC_USDC.1m", |d| d["close"] == "60000.00").await;
    s.price(6_010_000);
    let second = until(&mut ws, "candles.BTC_USDC.1m", |d| d["close"] == "60100.00").await;
    assert!(second["seq"].as_u64() > first["seq"].as_u64());
    assert_eq!(second["data"]["high"], "60100.00");
}

/// A client frame that declares more than the 4 KiB limit is refused on its header: the server
/// closes the connection instead of buffering the declared length as its bytes arrive
/// (tungstenite's own frame limit, 16 MiB, used to apply first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_declaring_more_than_the_limit_is_refused_before_its_payload() {
    let s = Server::start(|_| {}).await;
    let mut sock = TcpStream::connect(s.addr).await.unwrap();
    let upgrade = "GET /api/v1/ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    sock.write_all(upgrade.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        sock.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    assert!(String::from_utf8_lossy(&head).starts_with("HTTP/1.1 101"));
    // A masked binary frame declaring 8 MiB (64-bit length), then 64 KiB of it.
    let mut frame = vec![0x82u8, 0x80 | 127];
    frame.extend_from_slice(&(8u64 << 20).to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4]);
    sock.write_all(&frame).await.unwrap();
    let chunk = vec![0u8; 4_096];
    let mut sent = 0usize;
    let mut closed = false;
    for _ in 0..16 {
        if sock.write_all(&chunk).await.is_err() {
            closed = true;
            break;
        }
        sent += chunk.len();
    }
    // The server answers with a close frame (1009, message too big) or just closes; either
    // way it stops reading: reading from our side ends within the deadline.
    if !closed {
        let mut buf = vec![0u8; 1_024];
        let ended = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match sock.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(ended.is_ok(), "the server still reads a frame declaring 8 MiB after {sent} bytes");
    }
}

/// Anonymous clients have a budget of their own (per address and a life limit) so they cannot
/// hold every push slot, and every push socket keeps its server slot: one descriptor budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_push_is_capped_and_expires_and_push_sockets_keep_their_server_slot() {
    let s = Server::start(|c| {
        c.limits.push.anonymous_per_ip = 2;
        c.limits.push.anonymous_life_ms = 1_000;
        c.limits.push.heartbeat_ms = 200;
    })
    .await;
    let (token, _) = s.user("owner@example.com").await;
    let mut anon1 = s.connect(None).await;
    let _anon2 = s.connect(None).await;
    let url = format!("ws://{}/api/v1/ws", s.addr);
    let third = tokio_tungstenite::connect_async(url).await;
    match third {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 429),
        other => panic!("a third anonymous connection from one address: {other:?}"),
    }
    // A signed-in trader from the same address still connects.
    let mut owner = s.connect(Some(&token)).await;
    // Three push sockets, each holding its server slot after the HTTP exchange ended.
    let table = s.state.edge().table;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while table.open() != 3 {
        assert!(std::time::Instant::now() < deadline, "push sockets hold {} slots", table.open());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Metrics count them: the three push sockets and the metrics request's own.
    let mut m = TcpStream::connect(s.addr).await.unwrap();
    m.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut text = String::new();
    m.read_to_string(&mut text).await.unwrap();
    assert!(text.contains("hundredx_edge{counter=\"sockets_held\"} 4"), "{text}");
    // The anonymous connection is closed at its life limit (4003); the owner's is not.
    let code = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match anon1.next().await {
                Some(Ok(Message::Close(Some(f)))) => return Some(u16::from(f.code)),
                Some(Ok(_)) => {}
                _ => return None,
            }
        }
    })
    .await
    .expect("the anonymous connection outlived its life limit");
    assert_eq!(code, Some(4003));
    send(&mut owner, json!({"op": "subscribe", "channels": ["balance"]})).await;
    let m = next(&mut owner, 10).await;
    assert_eq!(m["op"], "subscribed", "the signed-in connection still serves: {m}");
}

/// The push API signs in with an API key too: an `auth` frame signed with a `read` key (the
/// message `AUTH\n/api/v1/ws\n\n{timestamp}\n{window}\n`) gets the owner's private channels;
/// a bad signature and a key without `read` are refused with their codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_key_signs_the_push_connection_in() {
    use base64::Engine as _;
    use ed25519_dalek::Signer;
    let s = Server::start(|_| {}).await;
    let (token, account) = s.user("keyed@example.com").await;
    let b64 = base64::engine::general_purpose::STANDARD;
    let add = |pk: &ed25519_dalek::SigningKey, scopes: Value| json!({"label": "push", "public_key": b64.encode(pk.verifying_key().as_bytes()), "scopes": scopes});
    let reader = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
    let trader = ed25519_dalek::SigningKey::from_bytes(&[4; 32]);
    let (status, _) =
        s.post("/api/v1/user/api-keys", Some(&token), &add(&reader, json!(["read"]))).await;
    assert_eq!(status, 201);
    let (status, _) =
        s.post("/api/v1/user/api-keys", Some(&token), &add(&trader, json!(["trade"]))).await;
    assert_eq!(status, 201);
    let auth = |k: &ed25519_dalek::SigningKey, forge: bool| {
        let ts = now_ns() / 1_000_000;
        let msg = hundredx_http::keys::message("AUTH", "/api/v1/ws", "", ts, 5_000, b"");
        let sig = k.sign(if forge { b"something else" } else { &msg[..] });
        json!({"op": "auth", "api_key": b64.encode(k.verifying_key().as_bytes()), "timestamp": ts,
            "window": 5_000, "signature": b64.encode(sig.to_bytes())})
    };
    let mut ws = s.connect(None).await;
    send(&mut ws, auth(&reader, true)).await;
    assert_eq!(next(&mut ws, 5).await["code"], "invalid_signature");
    send(&mut ws, auth(&trader, false)).await;
    assert_eq!(next(&mut ws, 5).await["code"], "missing_scope");
    send(&mut ws, auth(&reader, false)).await;
    assert_eq!(next(&mut ws, 5).await, json!({"op": "authed", "user_id": account.0.to_string()}));
    send(&mut ws, json!({"op": "subscribe", "channels": ["balance"]})).await;
    let balance = until(&mut ws, "balance", |_| true).await;
    assert!(balance["data"]["available"].is_string(), "{balance}");
    // Revoked by its owner's session: the connection it signed in is closed 4005.
    let (status, keys) = s.post("/api/v1/user/api-keys", Some(&token), &json!({})).await;
    assert_eq!(status, 400, "{keys}");
    let mut del = "DELETE /api/v1/user/api-keys/1 HTTP/1.1
Host: t
Connection: close
"
    .to_string();
    del += &format!("Authorization: Bearer {token}\r\n\r\n");
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(del.as_bytes()).await.unwrap();
    let mut reply = String::new();
    c.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert_eq!(close_code(&mut ws, Duration::from_secs(10)).await, Some(4005));
}

/// A push connection belongs to the session whose token signed it in: signing that session out
/// (here from another session, "others") closes it 4006 `signed_out`; the caller's own stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_a_session_out_closes_its_push_connections() {
    let s = Server::start(|_| {}).await;
    let (first, _) = s.user("two@example.com").await;
    let creds = json!({ "email": "two@example.com", "password": "correct horse battery" });
    let (status, second) = s.post("/api/v1/user/signin", None, &creds).await;
    assert_eq!(status, 200);
    let second = second["token"].as_str().unwrap().to_string();
    let mut old = s.connect(Some(&first)).await;
    let mut mine = s.connect(Some(&second)).await;
    for ws in [&mut old, &mut mine] {
        send(ws, json!({"op": "subscribe", "channels": ["balance"]})).await;
        assert_eq!(next(ws, 10).await["op"], "subscribed");
    }
    let (status, body) =
        s.post("/api/v1/user/signout", Some(&second), &json!({"scope": "others"})).await;
    assert_eq!((status, body["signed_out"].as_u64()), (200, Some(1)), "{body}");
    assert_eq!(close_code(&mut old, Duration::from_secs(10)).await, Some(4006));
    send(&mut mine, json!({"op": "subscribe", "channels": ["positions"]})).await;
    let mut subscribed = false;
    for _ in 0..100 {
        let m = next(&mut mine, 10).await;
        assert!(m.get("closed").is_none() && m.get("ended").is_none(), "mine closed: {m}");
        if m["op"] == "subscribed" {
            subscribed = true;
            break;
        }
    }
    assert!(subscribed, "the caller's own connection still serves");
    // A signed-out token cannot open a new connection either.
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{}/api/v1/ws", s.addr).into_client_request().unwrap();
    req.headers_mut().insert("authorization", format!("Bearer {first}").parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("a signed-out token connected: {other:?}"),
    }
}

/// The operators' `risk` channel: the house's risk view pushed when it changes (a new
/// position moves the exposure and the house's open result); a trader's subscription is
/// refused, the engine checking the role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_get_the_risk_view_by_push_and_traders_do_not() {
    use engine_core::command::{CommandKind, Login};
    let mut s = Server::start(|_| {}).await;
    s.price(6_000_000);
    let (trader_token, trader) = s.user("t@example.com").await;
    let (_, _) = s.user("ops@example.com").await;
    let role = CommandKind::SetRole { login: Login::new("ops@example.com").unwrap(), admin: true };
    s.engine.submitter().call(1, role, Duration::from_secs(5)).unwrap();
    let creds = json!({"email": "ops@example.com", "password": "correct horse battery"});
    let ops =
        s.post("/api/v1/user/signin", None, &creds).await.1["token"].as_str().unwrap().to_owned();
    let mut ws = s.connect(Some(&ops)).await;
    send(&mut ws, json!({"op": "subscribe", "channels": ["risk"]})).await;
    let first = until(&mut ws, "risk", |d| d["open_positions"] == 0).await;
    assert_eq!(first["data"]["exposure"][0]["market"], "BTC_USDC", "{first}");
    s.open(trader, 10, 1_000);
    let moved = until(&mut ws, "risk", |d| d["open_positions"] == 1).await;
    let long = &moved["data"]["exposure"][0];
    assert_eq!(
        (long["side"].as_str(), long["positions"].as_u64()),
        (Some("long"), Some(1)),
        "{moved}"
    );
    let (traders, house) =
        (long["unrealized_pnl"].as_str().unwrap(), long["house_unrealized_pnl"].as_str().unwrap());
    assert_eq!(traders.trim_start_matches('-'), house.trim_start_matches('-'), "{moved}");
    let mut theirs = s.connect(Some(&trader_token)).await;
    send(&mut theirs, json!({"op": "subscribe", "channels": ["risk"]})).await;
    assert_eq!(next(&mut theirs, 5).await, json!({"op": "subscribed", "channels": ["risk"]}));
    assert_eq!(next(&mut theirs, 5).await["code"], "forbidden");
}
