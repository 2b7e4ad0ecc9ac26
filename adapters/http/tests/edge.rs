//! The edge as an attacker meets it, over real sockets on 127.0.0.1:0: bounded password hashing,
//! the connection cap, header and idle timeouts, idempotency nobody else can break, trusted
//! proxies, sign-in limits that do not lock the owner out, closed metric labels, cached public
//! reads. Each test asserts behaviour (counts, statuses, closed sockets), never timing figures.

use std::sync::Arc;
use std::time::{Duration, Instant};

use engine_core::prelude::*;
use hundredx_http::{ApiConfig, AppState, now_ns};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Edge {
    addr: std::net::SocketAddr,
    state: Arc<AppState>,
    engine: EngineHandle,
    _stop: tokio::sync::oneshot::Sender<()>,
}

struct Reply {
    status: u16,
    head: String,
    body: Value,
}

/// Limits loose enough that only the one under test bites.
fn loose(c: &mut ApiConfig) {
    let l = &mut c.limits;
    l.signin_per_ip_per_minute = 100_000;
    l.signin_per_login_ip_per_minute = 100_000;
    l.signin_per_login_per_minute = 100_000;
    l.signup_per_ip_per_minute = 100_000;
    l.trading_per_second = 100_000;
    l.public_per_ip_per_second = 100_000;
}

impl Edge {
    async fn start(tweak: impl FnOnce(&mut ApiConfig)) -> Edge {
        let engine = EngineHandle::start(EngineConfig {
            max_open_positions: 10_000,
            ..EngineConfig::default()
        })
        .unwrap();
        let mut cfg =
            ApiConfig::new(b"edge-test-secret-long-enough".to_vec(), MarketConfig::defaults());
        loose(&mut cfg);
        tweak(&mut cfg);
        let state = AppState::new(cfg, engine.submitter());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(hundredx_http::serve(listener, Arc::clone(&state), async {
            let _ = stopped.await;
        }));
        Edge { addr, state, engine, _stop: stop }
    }

    fn price(&mut self, update_id: u64) {
        let tick = Tick {
            market: MarketId(0),
            bid: Price(6_000_000),
            ask: Price(6_000_000),
            update_id,
            exchange_time_us: 0,
        };
        let r = self.engine.call(now_ns(), CommandKind::PriceTick(tick), Duration::from_secs(5));
        assert!(r.unwrap().result.is_ok());
    }

    async fn send(&self, head: &str, body: Option<&Value>) -> Reply {
        request(self.addr, head, body).await
    }

    async fn post(&self, path: &str, extra: &str, body: Value) -> Reply {
        self.send(&format!("POST {path} HTTP/1.1{extra}"), Some(&body)).await
    }

    async fn user(&self, email: &str) -> String {
        let creds = json!({ "email": email, "password": "correct horse" });
        assert_eq!(self.post("/api/v1/user/signup", "", creds.clone()).await.status, 202);
        let r = self.post("/api/v1/user/signin", "", creds).await;
        assert_eq!(r.status, 200, "{}", r.body);
        format!("\r\nAuthorization: Bearer {}", r.body["token"].as_str().unwrap())
    }
}

/// Reads until EOF or error; returns how long the server took to close.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit.saturating_sub(started.elapsed()), s.read(&mut buf)).await
        {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sign_ins_keep_hashing_bounded_and_shed_the_rest_with_busy() {
    let e = Edge::start(|c| {
        c.limits.hash_concurrency = 2;
        c.limits.hash_queue = 2;
    })
    .await;
    e.user("owner@example.com").await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let addr = e.addr;
        tasks.push(tokio::spawn(async move { Edge::send_to(addr, i).await }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    let busy = statuses.iter().filter(|(s, _)| *s == 503).count();
    let answered = statuses.iter().filter(|(s, _)| *s == 401).count();
    assert_eq!(busy + answered, 40, "{statuses:?}");
    assert!(busy > 0 && answered >= 2, "busy {busy}, answered {answered}");
    assert!(statuses.iter().all(|(s, h)| *s != 503 || h.contains("retry-after: 1")));
    let stats = e.state.hasher().stats();
    assert!(stats.in_flight_max <= 2, "{stats:?}");
    assert_eq!(stats.rejected, busy as u64);
    // The owner still gets in once the burst is over.
    let creds = json!({ "email": "owner@example.com", "password": "correct horse" });
    assert_eq!(e.post("/api/v1/user/signin", "", creds).await.status, 200);
}

impl Edge {
    /// A sign-in with a wrong password from a fresh connection: (status, head).
    async fn send_to(addr: std::net::SocketAddr, i: u32) -> (u16, String) {
        let body = json!({ "email": format!("nobody{i}@example.com"), "password": "wrong horse!" });
        let r = request(addr, "POST /api/v1/user/signin HTTP/1.1", Some(&body)).await;
        (r.status, r.head)
    }
}

/// One request on a fresh connection (`Connection: close`); the whole response.
async fn request(addr: std::net::SocketAddr, head: &str, body: Option<&Value>) -> Reply {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    let req = format!(
        "{head}\r\nHost: t\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf))
        .await
        .expect("a response in time")
        .unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Reply {
        status,
        head: head.to_lowercase(),
        body: serde_json::from_str(body).unwrap_or(Value::String(body.into())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cap_refuses_the_next_one_with_503() {
    let e = Edge::start(|c| c.limits.server.max_connections = 3).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(e.addr).await.unwrap());
    }
    wait_open(&e, 3).await;
    assert_refused_unread(TcpStream::connect(e.addr).await.unwrap()).await;
    assert_eq!(e.state.server_stats().refused.load(std::sync::atomic::Ordering::Relaxed), 1);
    drop(held);
    wait_open(&e, 0).await;
    let r = e.send("GET /api/v1/markets HTTP/1.1", None).await;
    assert_eq!(r.status, 200, "a slot is free again");
}

/// The server's canned `503 too_many_connections` arrives on `s` unasked, and it is closed.
async fn assert_refused_unread(mut s: TcpStream) {
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 503") && text.contains("too_many_connections"), "{text}");
}

/// Waits (on the server's own count, not a timer) until `n` connections are open.
async fn wait_open(e: &Edge, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while e.state.server_stats().open.load(std::sync::atomic::Ordering::Relaxed) != n {
        assert!(Instant::now() < deadline, "never {n} connections open");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A connection from `source` (any 127.0.0.0/8 address: each test client is its own host).
async fn connect_from(source: [u8; 4], to: std::net::SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(std::net::SocketAddr::from((source, 0))).unwrap();
    socket.connect(to).await.unwrap()
}

/// What the server answers a `GET /api/v1/markets` on `s` (keep-alive): the status line's code,
/// or None when it closed instead.
async fn markets_on(s: &mut TcpStream) -> Option<u16> {
    s.write_all(b"GET /api/v1/markets HTTP/1.1\r\nHost: t\r\n\r\n").await.ok()?;
    let mut buf = vec![0u8; 16 * 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await.ok()?.ok()?;
    let text = String::from_utf8_lossy(&buf[..n]);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// The attack: one address opened 1,100 keep-alive connections and every other address got 503
/// for 40 s. Now one address holds at most `max_connections_per_address`, and when the server is
/// full the address holding the most gives up its oldest connection to a newcomer from elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_hold_every_connection_and_the_top_holder_is_shed_first() {
    let e = Edge::start(|c| {
        c.limits.server.max_connections = 12;
        c.limits.server.max_connections_per_address = 8;
    })
    .await;
    let stats = e.state.server_stats();
    use std::sync::atomic::Ordering::Relaxed;
    // The hog: 8 served keep-alive connections, then the 9th from its address is refused.
    let mut hog = Vec::new();
    for _ in 0..8 {
        let mut s = connect_from([127, 0, 0, 2], e.addr).await;
        assert_eq!(markets_on(&mut s).await, Some(200));
        hog.push(s);
    }
    assert_refused_unread(connect_from([127, 0, 0, 2], e.addr).await).await;
    assert_eq!(stats.refused_per_address.load(Relaxed), 1);
    // Others fill the rest: 4 addresses with one connection each; the server is full.
    let mut others = Vec::new();
    for i in 0..4u8 {
        let mut s = connect_from([127, 0, 1, i + 1], e.addr).await;
        assert_eq!(markets_on(&mut s).await, Some(200));
        others.push(s);
    }
    wait_open(&e, 12).await;
    // A newcomer from a fifth address is served: the hog's oldest connection is shed.
    let mut newcomer = connect_from([127, 0, 2, 1], e.addr).await;
    assert_eq!(markets_on(&mut newcomer).await, Some(200), "the newcomer is served");
    assert_eq!(stats.shed.load(Relaxed), 1);
    assert!(closed_within(&mut hog[0], Duration::from_secs(10)).await.is_some(), "oldest shed");
    for s in &mut others {
        assert_eq!(markets_on(s).await, Some(200), "the small holders keep their connections");
    }
    assert_eq!(markets_on(&mut hog[7]).await, Some(200), "the hog keeps the rest");
}

/// Every route is rate limited per address, and a 429 closes the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_rate_limited_and_a_429_closes_the_connection() {
    let e = Edge::start(|c| c.limits.any_per_ip_per_second = 5).await;
    let mut s = connect_from([127, 0, 3, 1], e.addr).await;
    let mut statuses = Vec::new();
    for _ in 0..20 {
        if s.write_all(b"GET /favicon.ico HTTP/1.1\r\nHost: t\r\n\r\n").await.is_err() {
            break;
        }
        let mut buf = vec![0u8; 16 * 1024];
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {
                let text = String::from_utf8_lossy(&buf[..n]).to_string();
                statuses.push(text[9..12].to_string());
                if text.starts_with("HTTP/1.1 429") {
                    assert!(text.to_ascii_lowercase().contains("connection: close"), "{text}");
                    assert!(closed_within(&mut s, Duration::from_secs(10)).await.is_some());
                    break;
                }
            }
            _ => break,
        }
    }
    assert_eq!(statuses.last().map(String::as_str), Some("429"), "{statuses:?}");
    assert!(statuses.len() <= 6, "at most the burst of 5 before the 429: {statuses:?}");
    // Another address is not affected.
    let mut other = connect_from([127, 0, 3, 2], e.addr).await;
    assert_eq!(markets_on(&mut other).await, Some(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let e = Edge::start(|c| {
        c.limits.server.idle_timeout = Duration::from_millis(400);
        c.limits.server.header_timeout = Duration::from_secs(30);
    })
    .await;
    // One served request on a keep-alive connection, then silence.
    let mut s = TcpStream::connect(e.addr).await.unwrap();
    s.write_all(b"GET /api/v1/markets HTTP/1.1\r\nHost: t\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let shed = closed_within(&mut s, Duration::from_secs(10)).await;
    assert!(shed.is_some(), "the idle connection was never closed");
    // A connection that never sends a byte is shed the same way.
    let mut silent = TcpStream::connect(e.addr).await.unwrap();
    assert!(closed_within(&mut silent, Duration::from_secs(10)).await.is_some());
    assert!(e.state.server_stats().idle_closed.load(std::sync::atomic::Ordering::Relaxed) >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_header_is_cut_after_the_header_timeout() {
    let e = Edge::start(|c| {
        c.limits.server.header_timeout = Duration::from_millis(500);
        c.limits.server.idle_timeout = Duration::from_secs(60);
    })
    .await;
    let mut s = TcpStream::connect(e.addr).await.unwrap();
    // Slowloris: a byte every 100 ms keeps the socket busy but never finishes the head.
    let head = b"GET /api/v1/markets HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut sent = 0;
    let started = Instant::now();
    for b in head {
        if s.write_all(&[*b]).await.is_err() {
            break;
        }
        sent += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        sent < head.len(),
        "the server let a {}-byte trickle run {:?}",
        sent,
        started.elapsed()
    );
    assert!(closed_within(&mut s, Duration::from_secs(5)).await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_victims_client_order_id_survives_other_accounts_flood() {
    let mut e = Edge::start(|_| {}).await;
    e.price(1);
    let victim = e.user("victim@example.com").await;
    let order = json!({ "market": "BTC_USDC", "side": "long", "leverage": 10, "margin": "100",
        "client_order_id": "victim-1" });
    let first = e.post("/api/v1/positions", &victim, order.clone()).await;
    assert_eq!(first.status, 201, "{}", first.body);
    for n in 0..4 {
        let attacker = e.user(&format!("attacker{n}@example.com")).await;
        for i in 0..60 {
            // Cheap rejected opens (leverage 0 fails at the edge; 100x on 0.01 margin in the
            // engine), each with a fresh id.
            let junk = json!({ "market": "BTC_USDC", "side": "long", "leverage": 100,
                "margin": "0.01", "client_order_id": format!("a{n}-{i}") });
            let r = e.post("/api/v1/positions", &attacker, junk).await;
            assert_eq!(r.status, 422, "{}", r.body);
        }
    }
    let retry = e.post("/api/v1/positions", &victim, order.clone()).await;
    assert_eq!((retry.status, &retry.body["id"]), (201, &first.body["id"]), "{}", retry.body);
    let open = e.send(&format!("GET /api/v1/positions HTTP/1.1{victim}"), None).await;
    assert_eq!(open.body["positions"].as_array().unwrap().len(), 1, "opened once");
    // The same id with a different body is refused, not answered with the first result.
    let changed = json!({ "market": "BTC_USDC", "side": "short", "leverage": 10, "margin": "100",
        "client_order_id": "victim-1" });
    let r = e.post("/api/v1/positions", &victim, changed).await;
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (409, Some("client_order_id_reused")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_make_deposits_close_and_margin_safe_to_retry() {
    let mut e = Edge::start(|_| {}).await;
    e.price(1);
    let t = e.user("a@example.com").await;
    let keyed = |k: &str| format!("{t}\r\nIdempotency-Key: {k}");
    let d1 = e.post("/api/v1/user/deposit", &keyed("dep-1"), json!({ "amount": "10" })).await;
    let d2 = e.post("/api/v1/user/deposit", &keyed("dep-1"), json!({ "amount": "10" })).await;
    assert_eq!((d1.status, d2.status), (200, 200));
    assert_eq!(d1.body, d2.body, "the retry returns the first result");
    assert_eq!(d2.body["available"], "5010.000000", "applied once");
    let other = e.post("/api/v1/user/deposit", &keyed("dep-1"), json!({ "amount": "11" })).await;
    assert_eq!(
        (other.status, other.body["error"]["code"].as_str()),
        (409, Some("idempotency_key_reused"))
    );
    let bad = e.post("/api/v1/user/deposit", &keyed("has space"), json!({ "amount": "1" })).await;
    assert_eq!(bad.body["error"]["code"], "invalid_idempotency_key");

    let p = e
        .post(
            "/api/v1/positions",
            &t,
            json!({ "market": "BTC_USDC", "side": "long",
        "leverage": 10, "margin": "100" }),
        )
        .await;
    let id = p.body["id"].as_str().unwrap();
    let m = format!("/api/v1/positions/{id}/margin");
    let m1 = e.post(&m, &keyed("m-1"), json!({ "amount": "5" })).await;
    let m2 = e.post(&m, &keyed("m-1"), json!({ "amount": "5" })).await;
    assert_eq!((m1.status, m2.body["margin"].as_str()), (200, Some("105.000000")));
    let c = format!("/api/v1/positions/{id}/close");
    let c1 = e.post(&c, &keyed("c-1"), json!({})).await;
    let c2 = e.post(&c, &keyed("c-1"), json!({})).await;
    assert_eq!((c1.status, c2.status), (200, 200), "{}", c2.body);
    assert_eq!(c1.body, c2.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let trusted = Edge::start(|c| {
        c.limits.signup_per_ip_per_minute = 1;
        c.limits.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let signup =
        |i: u32| json!({ "email": format!("u{i}@example.com"), "password": "correct horse" });
    let xff = |ip: &str| format!("\r\nX-Forwarded-For: {ip}");
    assert_eq!(trusted.post("/api/v1/user/signup", &xff("10.0.0.1"), signup(1)).await.status, 202);
    assert_eq!(trusted.post("/api/v1/user/signup", &xff("10.0.0.2"), signup(2)).await.status, 202);
    assert_eq!(trusted.post("/api/v1/user/signup", &xff("10.0.0.1"), signup(3)).await.status, 429);

    let untrusted = Edge::start(|c| c.limits.signup_per_ip_per_minute = 1).await;
    assert_eq!(
        untrusted.post("/api/v1/user/signup", &xff("10.0.0.1"), signup(1)).await.status,
        202
    );
    let r = untrusted.post("/api/v1/user/signup", &xff("10.0.0.2"), signup(2)).await;
    assert_eq!(r.status, 429, "an untrusted peer's header is ignored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guesser_rotating_addresses_does_not_lock_the_owner_out() {
    let e = Edge::start(|c| {
        c.limits.signin_per_login_ip_per_minute = 2;
        c.limits.signin_per_login_per_minute = 100;
        c.limits.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    e.user("victim@example.com").await;
    let wrong = json!({ "email": "victim@example.com", "password": "wrong horse!" });
    let mut refused = 0;
    for i in 0..30 {
        let r = e
            .post("/api/v1/user/signin", &format!("\r\nX-Forwarded-For: 10.1.0.{i}"), wrong.clone())
            .await;
        assert!(r.status == 401 || r.status == 429, "{}", r.status);
        refused += 1;
        // The same address again is slowed down.
        let again = e
            .post("/api/v1/user/signin", &format!("\r\nX-Forwarded-For: 10.1.0.{i}"), wrong.clone())
            .await;
        let third = e
            .post("/api/v1/user/signin", &format!("\r\nX-Forwarded-For: 10.1.0.{i}"), wrong.clone())
            .await;
        assert!(again.status == 401 && third.status == 429, "{} {}", again.status, third.status);
    }
    assert_eq!(refused, 30);
    let right = json!({ "email": "victim@example.com", "password": "correct horse" });
    for _ in 0..2 {
        let r =
            e.post("/api/v1/user/signin", "\r\nX-Forwarded-For: 192.0.2.7", right.clone()).await;
        assert_eq!(r.status, 200, "the owner signs in: {}", r.body);
    }
}

/// Guesses for one login from rotating addresses used to reach the per-login ceiling (the owner
/// got 429), and a flood of unknown logins filled the hash pool (the owner got 503). A sign-in
/// carrying the device token of an earlier sign-in of that login has a ceiling and a hashing
/// lane of its own: the owner gets in through both floods; the flood's guesses do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remembered_device_signs_the_owner_in_through_a_guessing_flood_and_a_full_hash_pool() {
    let e = Edge::start(|c| {
        c.limits.signin_per_login_per_minute = 5;
        c.limits.hash_concurrency = 1;
        c.limits.hash_queue = 1;
        c.limits.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let (owner, at_home) = ("owner@example.com", "\r\nX-Forwarded-For: 192.0.2.7");
    let right = json!({ "email": owner, "password": "correct horse" });
    assert_eq!(e.post("/api/v1/user/signup", at_home, right.clone()).await.status, 202);
    let first = e.post("/api/v1/user/signin", at_home, right.clone()).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let device = first.body["device"].as_str().unwrap().to_owned();
    let remembered = json!({ "email": owner, "password": "correct horse", "device": device });

    // The guessing flood spends the login's ceiling: without the device, the owner is refused.
    let wrong = json!({ "email": owner, "password": "wrong horse!", "device": "forged.token.x" });
    for i in 0..10 {
        let r = e
            .post("/api/v1/user/signin", &format!("\r\nX-Forwarded-For: 10.2.0.{i}"), wrong.clone())
            .await;
        assert!(r.status == 401 || r.status == 429, "{}", r.status);
    }
    let locked = e.post("/api/v1/user/signin", at_home, right.clone()).await;
    assert_eq!(locked.status, 429, "the flood reached the ceiling: {}", locked.body);
    for _ in 0..3 {
        let r = e.post("/api/v1/user/signin", at_home, remembered.clone()).await;
        assert_eq!(r.status, 200, "the owner's device gets in: {}", r.body);
        assert!(r.body["device"].is_string());
    }
    // Another login's device token is no key to this one.
    let other = json!({ "email": "guesser@example.com", "password": "correct horse" });
    assert_eq!(
        e.post("/api/v1/user/signup", "\r\nX-Forwarded-For: 10.3.0.1", other.clone()).await.status,
        202
    );
    let theirs = e.post("/api/v1/user/signin", "\r\nX-Forwarded-For: 10.3.0.1", other).await;
    let stolen =
        json!({ "email": owner, "password": "correct horse", "device": theirs.body["device"] });
    assert_eq!(e.post("/api/v1/user/signin", at_home, stolen).await.status, 429);

    // A flood of unknown logins keeps the hash pool (1 thread, 1 waiting) full the whole time.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let busy = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut flood = Vec::new();
    for t in 0..12u32 {
        let (addr, stop, busy) = (e.addr, Arc::clone(&stop), Arc::clone(&busy));
        flood.push(tokio::spawn(async move {
            let mut i = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (status, _) = Edge::send_to(addr, t * 100_000 + i).await;
                if status == 503 {
                    busy.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                i += 1;
            }
        }));
    }
    let full = || busy.load(std::sync::atomic::Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(30);
    while full() < 20 {
        assert!(Instant::now() < deadline, "the flood never filled the pool");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let before = full();
    for _ in 0..3 {
        let r = e.post("/api/v1/user/signin", at_home, remembered.clone()).await;
        assert_eq!(r.status, 200, "the owner's device gets in during the flood: {}", r.body);
    }
    let during = full() - before;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for f in flood {
        f.await.unwrap();
    }
    assert!(during > 0, "the flood was refused busy while the owner signed in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_labels_come_from_a_closed_set() {
    let e = Edge::start(|_| {}).await;
    for i in 0..30 {
        let r = e.send(&format!("JUNKMETHOD{i} /api/v1/markets HTTP/1.1"), None).await;
        assert!(r.status >= 400 && r.status < 500, "{}", r.status);
        e.send(&format!("GET /no/such/route/{i} HTTP/1.1"), None).await;
    }
    let m = e.send("GET /metrics HTTP/1.1", None).await;
    let text = m.body.as_str().unwrap().to_string();
    assert!(!text.contains("JUNKMETHOD") && !text.contains("/no/such"), "{text}");
    assert!(text.contains("method=\"other\"") && text.contains("route=\"unmatched\""), "{text}");
    assert!(text.len() < 64 * 1024, "{} bytes", text.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_reads_are_served_from_a_cache_not_the_engine_ring() {
    let mut e = Edge::start(|c| c.limits.markets_cache = Duration::from_secs(5)).await;
    e.price(1);
    let before = e.engine.counters().commands;
    for _ in 0..100 {
        assert_eq!(e.send("GET /api/v1/markets HTTP/1.1", None).await.status, 200);
    }
    let after = e.engine.counters().commands;
    assert!(after - before <= 2, "{} engine commands for 100 reads", after - before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_tokens_and_inputs_at_the_edge() {
    let mut e = Edge::start(|c| c.limits.cors_origins = vec!["https://app.example".into()]).await;
    e.price(1);
    let t = e.user("h@example.com").await;
    let r = e.send(&format!("GET /api/v1/user/balance HTTP/1.1{t}"), None).await;
    assert!(r.head.contains("x-content-type-options: nosniff"), "{}", r.head);
    assert!(r.head.contains("cache-control: no-store"), "{}", r.head);
    // The scheme is case-insensitive.
    let lower = t.replace("Bearer", "bearer");
    assert_eq!(
        e.send(&format!("GET /api/v1/user/balance HTTP/1.1{lower}"), None).await.status,
        200
    );
    // CORS: the configured origin only.
    let pre = "OPTIONS /api/v1/positions HTTP/1.1\r\nOrigin: https://app.example\r\nAccess-Control-Request-Method: POST";
    let r = e.send(pre, None).await;
    assert!(r.head.contains("access-control-allow-origin: https://app.example"), "{}", r.head);
    let r = e.send(&pre.replace("app.example", "evil.example"), None).await;
    assert!(!r.head.contains("access-control-allow-origin"), "{}", r.head);
    // Slippage above 100% is an error, not a silent clamp.
    let body = json!({ "market": "BTC_USDC", "side": "long", "leverage": 10, "margin": "100",
        "expected_price": "60000", "max_slippage_bps": 10_001 });
    let r = e.post("/api/v1/positions", &t, body).await;
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (400, Some("invalid_slippage")));
    // Amounts are plain decimals: no sign, no spaces.
    for amount in ["+5", " 5 ", "5 "] {
        let r = e.post("/api/v1/user/deposit", &t, json!({ "amount": amount })).await;
        assert_eq!(r.status, 400, "{amount:?}: {}", r.body);
    }
    // Control characters in ids and logins are refused.
    let body = json!({ "market": "BTC_USDC", "side": "long", "leverage": 10, "margin": "100",
        "client_order_id": "a\u{7}b" });
    assert_eq!(
        e.post("/api/v1/positions", &t, body).await.body["error"]["code"],
        "invalid_client_order_id"
    );
    let r = e
        .post(
            "/api/v1/user/signup",
            "",
            json!({ "email": "a\u{1}@example.com", "password": "correct horse" }),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = e
        .post(
            "/api/v1/user/signup",
            "",
            json!({ "email": "w@example.com", "password": "aaaaaaaaaaaa" }),
        )
        .await;
    assert_eq!(r.body["error"]["code"], "weak_password");
    // A bad query string is JSON like every other error.
    let r = e.send(&format!("GET /api/v1/positions?status=open&bogus=1 HTTP/1.1{t}"), None).await;
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (400, Some("invalid_query")));
    // Error messages carry no library text.
    let r = e.post("/api/v1/user/deposit", &t, json!({ "amount": "1", "x": 1 })).await;
    let msg = r.body["error"]["message"].as_str().unwrap();
    assert!(!msg.contains('`') && !msg.contains("line"), "{msg}");
}
