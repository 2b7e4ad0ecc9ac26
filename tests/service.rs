//! Service mode with real processes: `redis-server` (started by the test: a free port, a temp dir,
//! no persistence, killed on drop — needs `apt-get install redis-server`), `hundredx engine`,
//! `hundredx feed --redis` and two `hundredx api` processes. The trading lifecycle goes
//! HTTP -> api -> Redis -> engine -> Redis -> api -> HTTP.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};

use redis_bridge::test_support::RedisServer;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_hundredx");
const SECRET: &str = "service-test-secret-0123456789";

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn hundredx(args: &[&str]) -> Proc {
    Proc(
        Command::new(BIN)
            .args(args)
            .env("HUNDREDX_JWT_SECRET", SECRET)
            .env("HUNDREDX_BRIDGE_SECRET", redis_bridge::test_support::TEST_BRIDGE_SECRET)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Starts an api process and returns it with its HTTP address.
fn api(redis: &str, instance: &str) -> (Proc, String) {
    let mut p =
        hundredx(&["api", "--redis", redis, "--listen", "127.0.0.1:0", "--instance", instance]);
    let mut lines = BufReader::new(p.0.stdout.take().unwrap()).lines();
    let first = lines.next().expect("api prints its address").unwrap();
    let addr = first.rsplit("http://").next().unwrap().trim().to_string();
    (p, addr)
}

fn http(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n");
    if let Some(t) = token {
        req += &format!("Authorization: Bearer {t}\r\n");
    }
    if let Some(b) = body {
        req += &format!("Content-Type: application/json\r\nContent-Length: {}\r\n", b.len());
    }
    req += "\r\n";
    req += body.unwrap_or("");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    (head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0), body.to_string())
}

/// Repeats `request` every 100 ms until it returns `want` or `secs` pass; returns the last reply.
fn until(want: u16, secs: u64, mut request: impl FnMut() -> (u16, String)) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let r = request();
        if r.0 == want || Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn field(json: &str, name: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    v[name].as_str().map(str::to_owned).unwrap_or_default()
}

#[test]
fn trading_lifecycle_through_three_kinds_of_process_and_redis() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path());
    let url = redis.url.clone();
    let data = dir.path().join("engine");
    let _engine = hundredx(&[
        "engine",
        "--redis",
        &url,
        "--sync",
        "fsync",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    let _feed = hundredx(&["feed", "--redis", &url, "--feed", "synthetic"]);
    let (_api1, a1) = api(&url, "api-1");
    let (_api2, a2) = api(&url, "api-2");

    let creds = r#"{"email":"svc@example.com","password":"correct horse"}"#;
    // The engine may still be starting: 503/504 until it answers.
    // Readiness through a read, so retries do not spend the sign-up limit.
    assert_eq!(until(200, 20, || http(&a1, "GET", "/api/v1/markets", None, None)).0, 200);
    let (status, body) = http(&a1, "POST", "/api/v1/user/signup", None, Some(creds));
    assert_eq!(status, 202, "{body}");
    // Sign in through the other api process: one engine, one state.
    let (status, body) = http(&a2, "POST", "/api/v1/user/signin", None, Some(creds));
    assert_eq!(status, 200, "{body}");
    let token = field(&body, "token");

    let open = r#"{"market":"BTC_USDC","side":"long","leverage":10,"margin":"100"}"#;
    // 422 no_price until the feed's first price reached the engine.
    let (status, body) =
        until(201, 20, || http(&a1, "POST", "/api/v1/positions", Some(&token), Some(open)));
    assert_eq!(status, 201, "{body}");
    let id = field(&body, "id");
    let (status, body) = http(&a2, "GET", &format!("/api/v1/positions/{id}"), Some(&token), None);
    assert_eq!((status, field(&body, "status")), (200, "open".to_string()), "{body}");
    let (status, body) =
        http(&a2, "POST", &format!("/api/v1/positions/{id}/close"), Some(&token), None);
    assert_eq!((status, field(&body, "close_reason")), (200, "manual".to_string()), "{body}");
    let (status, body) = http(&a1, "GET", "/api/v1/user/balance", Some(&token), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(field(&body, "locked_margin"), "0.000000");
}

/// Redis goes away and comes back empty on the same port: the engine and the api reconnect and
/// traffic resumes.
#[test]
fn every_process_reconnects_after_a_redis_restart() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path());
    let (url, port) = (redis.url.clone(), redis.port);
    let data = dir.path().join("engine");
    let _engine = hundredx(&[
        "engine",
        "--redis",
        &url,
        "--sync",
        "none",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    let (_api, addr) = api(&url, "api-r");
    // Probe with a read (not rate limited) until the engine answers through Redis.
    let until_engine_answers =
        || until(200, 30, || http(&addr, "GET", "/api/v1/markets", None, None));
    assert_eq!(until_engine_answers().0, 200);
    let r = http(
        &addr,
        "POST",
        "/api/v1/user/signup",
        None,
        Some(r#"{"email":"r1@example.com","password":"correct horse"}"#),
    );
    assert_eq!(r.0, 202, "{}", r.1);
    drop(redis); // killed
    std::thread::sleep(Duration::from_millis(300));
    let _redis = RedisServer::start_on(dir.path(), port);
    let r = until_engine_answers();
    assert_eq!(r.0, 200, "traffic resumes after the restart: {}", r.1);
    let r = http(
        &addr,
        "POST",
        "/api/v1/user/signup",
        None,
        Some(r#"{"email":"r2@example.com","password":"correct horse"}"#),
    );
    assert_eq!(r.0, 202, "writes resume too: {}", r.1);
}

/// The engine is killed with requests in flight and restarted: every request is applied exactly
/// once (deposits of 1 USDC add up to exactly the number sent), and the restarted engine's state
/// equals an offline replay of its journal.
#[test]
fn engine_kill_9_with_requests_in_flight_applies_each_exactly_once() {
    use engine_core::prelude::*;
    use redis_bridge::bridge::RedisEngineClient;
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path());
    let url = redis.url.clone();
    let data = dir.path().join("engine");
    let data_s = data.to_str().unwrap().to_owned();
    let start_engine =
        || hundredx(&["engine", "--redis", &url, "--sync", "fsync", "--data-dir", &data_s]);
    let mut engine = start_engine();
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let client = RedisEngineClient::connect(
            &redis_bridge::test_support::target(&url),
            redis_bridge::test_support::test_key(),
            "kill-test",
            5 << 40,
            Duration::from_secs(2),
        )
        .await
        .unwrap();
        let login = Login::new("k@x").unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let account = loop {
            match client
                .send_request_and_wait(CommandKind::CreateAccount {
                    login,
                    credential: Credential::empty(),
                })
                .await
            {
                Ok(Response { result: Ok(ReplyData::AccountCreated { account }), .. }) => {
                    break account;
                }
                other => assert!(Instant::now() < deadline, "engine never answered: {other:?}"),
            }
        };
        let client = std::sync::Arc::new(client);
        // 300 deposits in flight from 10 tasks; the engine dies a third of the way through.
        let sent = 300u64;
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let c = std::sync::Arc::clone(&client);
                tokio::spawn(async move {
                    let mut ok = 0u64;
                    for _ in 0..30 {
                        let kind = CommandKind::Deposit {
                            account,
                            amount: Usdc::from_whole(1),
                            key: None,
                        };
                        if matches!(
                            c.send_request_and_wait(kind).await,
                            Ok(Response { result: Ok(_), .. })
                        ) {
                            ok += 1;
                        }
                    }
                    ok
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(150)).await;
        let _ = engine.0.kill(); // SIGKILL mid-stream
        let _ = engine.0.wait();
        tokio::time::sleep(Duration::from_millis(300)).await;
        engine = start_engine();
        let mut ok = 0;
        for t in tasks {
            ok += t.await.unwrap();
        }
        // Everything sent is in engine-stream: the restarted engine applies what was pending and
        // what was never delivered, each once. Wait until the balance says so.
        let deadline = Instant::now() + Duration::from_secs(30);
        let balance = loop {
            if let Ok(Response { result: Ok(ReplyData::Account(a)), .. }) =
                client.send_request_and_wait(CommandKind::QueryAccount { account }).await
                && (a.available == Usdc::from_whole(5_000 + i64::try_from(sent).unwrap())
                    || Instant::now() > deadline)
            {
                break a.available;
            }
            assert!(Instant::now() < deadline, "engine did not come back");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(
            balance,
            Usdc::from_whole(5_000 + i64::try_from(sent).unwrap()),
            "every deposit applied exactly once ({ok} acknowledged)"
        );
        assert!(ok <= sent);
        let hash = match client.send_request_and_wait(CommandKind::QueryStateHash).await {
            Ok(Response { result: Ok(ReplyData::State(s)), .. }) => engine_core::hash::hex(&s.hash),
            other => panic!("{other:?}"),
        };
        drop(engine); // stop it before the offline replay (the data dir is locked while it runs)
        let out = std::process::Command::new(BIN)
            .args(["replay", "--data-dir", &data_s])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(&hash), "replay of the journal reaches the same state: {text}");
    });
}
