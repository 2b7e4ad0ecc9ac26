//! Service mode with real processes: `redis-server` (started by the test: a free port, a temp dir,
//! no persistence, killed on drop — needs `apt-get install redis-server`), `hundredx engine`,
//! `hundredx feed --redis` and two `hundredx api` processes. The trading lifecycle goes
//! HTTP -> api -> Redis -> engine -> Redis -> api -> HTTP.

use ground::ports::EngineClient;
use std::process::{Command, Stdio};

use redis_bridge::test_support::RedisServer;
use std::time::{Duration, Instant};

mod common;

use common::*;

/// Starts an api process and returns it with its HTTP address.
fn api(redis: &str, instance: &str) -> (Proc, String) {
    let p = hundredx(&["api", "--redis", redis, "--listen", "127.0.0.1:0", "--instance", instance]);
    address_of(p)
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
    use redis_bridge::client::RedisEngineClient;
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
        let account = common::ha::account_named(&client, "k@x").await;
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
                        if matches!(c.call(kind).await, Ok(Response { result: Ok(_), .. })) {
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
                client.call(CommandKind::QueryAccount { account }).await
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
        let hash = match client.call(CommandKind::QueryStateHash).await {
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

/// A CA and a server certificate for 127.0.0.1, as PEM files in `dir`: (ca, cert, key).
fn tls_files(dir: &std::path::Path) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    let path = |name: &str, pem: String| {
        let p = dir.join(name);
        std::fs::write(&p, pem).unwrap();
        p.to_str().unwrap().to_owned()
    };
    (
        path("ca.pem", ca.pem()),
        path("server.pem", server.pem()),
        path("server.key", server_key.serialize_pem()),
    )
}

/// Service mode as an operator should run it: Redis over TLS only, the sample ACL file
/// (docs/redis-acl.conf) with one user per role, passwords only in the environment. The whole
/// lifecycle works; each role is refused what it does not need; no password reaches argv or logs.
#[test]
fn service_mode_over_tls_with_one_acl_user_per_role() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = tls_files(dir.path());
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let acl = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/redis-acl.conf");
    let p = port.to_string();
    let _redis = RedisServer::start_with(
        dir.path(),
        port,
        &[
            "--port",
            "0",
            "--tls-port",
            &p,
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca,
            "--tls-auth-clients",
            "no",
            "--aclfile",
            acl,
        ],
    );
    let url = |user: &str| {
        format!("rediss://hundredx-{user}:CHANGE-ME-{user}-password@127.0.0.1:{port}/")
    };
    let log = dir.path().join("stderr.log");
    let stderr =
        || Stdio::from(std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap());
    let role_env =
        |user: &str| [("HUNDREDX_REDIS_URL", url(user)), ("HUNDREDX_REDIS_CA_FILE", ca.clone())];
    let as_env = |e: &[(&'static str, String); 2]| -> Vec<(&'static str, String)> { e.to_vec() };
    let start = |args: &[&str], user: &str| {
        let env = as_env(&role_env(user));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        hundredx_with(args, &env, stderr())
    };
    let data = dir.path().join("engine");
    let engine =
        start(&["engine", "--sync", "fsync", "--data-dir", data.to_str().unwrap()], "engine");
    let _feed = start(&["feed", "--feed", "synthetic"], "feed");
    let (api_proc, a) =
        address_of(start(&["api", "--listen", "127.0.0.1:0", "--instance", "api-1"], "api"));
    let store = dir.path().join("history.sqlite");
    let store_url = history::Store::sqlite_url(&store);
    let history_proc = start(&["history", "--database", &store_url], "history");

    assert_eq!(until(200, 20, || http(&a, "GET", "/api/v1/markets", None, None)).0, 200);
    let creds = r#"{"email":"tls@example.com","password":"correct horse"}"#;
    assert_eq!(http(&a, "POST", "/api/v1/user/signup", None, Some(creds)).0, 202);
    let (status, body) = http(&a, "POST", "/api/v1/user/signin", None, Some(creds));
    assert_eq!(status, 200, "{body}");
    let token = field(&body, "token");
    let open = r#"{"market":"BTC_USDC","side":"long","leverage":10,"margin":"100"}"#;
    let (status, body) =
        until(201, 20, || http(&a, "POST", "/api/v1/positions", Some(&token), Some(open)));
    assert_eq!(status, 201, "prices from the feed user reached the engine: {body}");

    // The history user reads the engine's changes: the account and the open reach its store.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let markets = engine_core::config::MarketConfig::defaults();
    let reader = rt.block_on(history::Store::open(&store_url, &markets, 1)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while rt.block_on(reader.cursor()).unwrap().seq < 2 {
        assert!(Instant::now() < deadline, "the history process got no changes as its ACL user");
        std::thread::sleep(Duration::from_millis(50));
    }

    // What each role may not do.
    rt.block_on(async {
        let connect = |user: &str| {
            redis_bridge::target::RedisTarget::new(&url(user))
                .with_ca_pem(std::fs::read(&ca).unwrap())
                .client()
                .unwrap()
        };
        let mut api_con = connect("api").get_multiplexed_async_connection().await.unwrap();
        let forged_tick: redis::RedisResult<()> = redis::cmd("XADD")
            .arg("price-stream")
            .arg("*")
            .arg("data")
            .arg("{}")
            .query_async(&mut api_con)
            .await;
        assert_eq!(forged_tick.unwrap_err().code(), Some("NOPERM"), "api may not write prices");
        let peek: redis::RedisResult<redis::Value> = redis::cmd("XRANGE")
            .arg("engine-stream")
            .arg("-")
            .arg("+")
            .query_async(&mut api_con)
            .await;
        assert_eq!(peek.unwrap_err().code(), Some("NOPERM"), "api may not read other requests");
        let mut feed_con = connect("feed").get_multiplexed_async_connection().await.unwrap();
        let forged: redis::RedisResult<()> = redis::cmd("XADD")
            .arg("engine-stream")
            .arg("*")
            .arg("data")
            .arg("{}")
            .query_async(&mut feed_con)
            .await;
        assert_eq!(forged.unwrap_err().code(), Some("NOPERM"), "feed may not write requests");
        let mut history_con = connect("history").get_multiplexed_async_connection().await.unwrap();
        let forged: redis::RedisResult<()> = redis::cmd("XADD")
            .arg("engine-events")
            .arg("*")
            .arg("data")
            .arg("{}")
            .query_async(&mut history_con)
            .await;
        assert_eq!(forged.unwrap_err().code(), Some("NOPERM"), "history may not write changes");
        let anonymous =
            redis_bridge::target::RedisTarget::new(&format!("rediss://127.0.0.1:{port}/"))
                .with_ca_pem(std::fs::read(&ca).unwrap())
                .client()
                .unwrap();
        let refused = match anonymous.get_multiplexed_async_connection().await {
            Err(_) => true,
            Ok(mut c) => {
                redis::cmd("XLEN").arg("engine-stream").query_async::<u64>(&mut c).await.is_err()
            }
        };
        assert!(refused, "the default user is off");
        let plain = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
        let plain = tokio::time::timeout(Duration::from_secs(3), async {
            let mut c = plain.get_multiplexed_async_connection().await?;
            redis::cmd("PING").query_async::<String>(&mut c).await
        })
        .await;
        assert!(!matches!(plain, Ok(Ok(_))), "plaintext is refused on the TLS port");
    });

    // Secrets: not in any process's argv, not in any log line.
    for pid in [engine.0.id(), api_proc.0.id(), history_proc.0.id()] {
        let argv = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        assert!(!String::from_utf8_lossy(&argv).contains("CHANGE-ME"), "a password in argv");
    }
    drop((engine, api_proc, history_proc));
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("127.0.0.1"), "the processes logged their Redis target: {logged}");
    assert!(
        !logged.contains("CHANGE-ME")
            && !logged.contains(redis_bridge::test_support::TEST_BRIDGE_SECRET)
    );
}

#[test]
fn a_redis_password_on_the_command_line_is_refused() {
    let out = Command::new(BIN)
        .args(["engine", "--redis", "redis://u:hunter2hunter2@127.0.0.1:1/"])
        .env("HUNDREDX_BRIDGE_SECRET", redis_bridge::test_support::TEST_BRIDGE_SECRET)
        .env_remove("HUNDREDX_REDIS_URL")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("HUNDREDX_REDIS_URL") && !err.contains("hunter2"), "{err}");
    let out = Command::new(BIN)
        .args(["engine", "--redis", "redis://127.0.0.1:1/"])
        .env_remove("HUNDREDX_BRIDGE_SECRET")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("HUNDREDX_BRIDGE_SECRET"), "{err}");
}

/// A 503 says what is actually wrong: with Redis out of memory the api answers
/// `redis_unavailable` naming it (not a generic "engine unavailable"), and recovers with Redis.
#[test]
fn a_redis_out_of_memory_is_named_in_the_503_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path());
    let url = redis.url.clone();
    let data = dir.path().join("engine");
    let _engine = hundredx(&["engine", "--redis", &url, "--data-dir", data.to_str().unwrap()]);
    let (_api, a) = api(&url, "api-oom");
    assert_eq!(until(200, 20, || http(&a, "GET", "/api/v1/markets", None, None)).0, 200);
    let admin = redis::Client::open(url.as_str()).unwrap();
    let mut con = admin.get_connection().unwrap();
    let _: () = redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg("1").query(&mut con).unwrap();
    let creds = r#"{"email":"oom@example.com","password":"correct horse"}"#;
    // Sign-up hashes first, then writes to Redis: refused with the cause named.
    let (status, body) = http(&a, "POST", "/api/v1/user/signup", None, Some(creds));
    assert_eq!(status, 503, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "redis_unavailable", "{body}");
    assert!(v["error"]["message"].as_str().unwrap().contains("out of memory"), "{body}");
    assert!(!body.contains("OOM command not allowed"), "Redis's own text stays inside: {body}");
    let _: () = redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg("0").query(&mut con).unwrap();
    assert_eq!(
        until(202, 20, || http(&a, "POST", "/api/v1/user/signup", None, Some(creds))).0,
        202
    );
}

/// Push in service mode: a browser connected to either api instance gets the user's changes,
/// whichever instance (or none) the request went through.
#[test]
fn both_api_instances_push_a_users_changes() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path());
    let url = redis.url.clone();
    let data = dir.path().join("engine");
    let _engine = hundredx(&["engine", "--redis", &url, "--data-dir", data.to_str().unwrap()]);
    let _feed = hundredx(&["feed", "--redis", &url, "--feed", "synthetic"]);
    let (_api1, a1) = api(&url, "api-1");
    let (_api2, a2) = api(&url, "api-2");
    assert_eq!(until(200, 20, || http(&a1, "GET", "/api/v1/markets", None, None)).0, 200);
    let token = sign_up(&a1, "push@example.com");
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut clients: Vec<_> = rt.block_on(async {
        let mut out = Vec::new();
        for addr in [&a1, &a2] {
            let url = format!("ws://{addr}/api/v1/ws");
            let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
            let auth = serde_json::json!({"op": "auth", "token": token}).to_string();
            ws.send(Message::Text(auth.into())).await.unwrap();
            let sub = r#"{"op":"subscribe","channels":["positions"]}"#;
            ws.send(Message::Text(sub.into())).await.unwrap();
            // Subscribed before the open: a push sent before the subscription took would be
            // missed (the test once failed so on a loaded machine).
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                assert!(Instant::now() < deadline, "no subscription acknowledged");
                let m = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.unwrap();
                let Some(Ok(Message::Text(t))) = m else { continue };
                let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                if v["op"] == "subscribed" {
                    break;
                }
            }
            out.push(ws);
        }
        out
    });
    let open = r#"{"market":"BTC_USDC","side":"long","leverage":10,"margin":"100"}"#;
    let (status, body) =
        until(201, 20, || http(&a1, "POST", "/api/v1/positions", Some(&token), Some(open)));
    assert_eq!(status, 201, "{body}");
    let id = field(&body, "id");
    rt.block_on(async {
        for ws in &mut clients {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                assert!(Instant::now() < deadline, "no push of the open");
                let m = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.unwrap();
                let Some(Ok(Message::Text(t))) = m else { continue };
                let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                if v["channel"] == "positions" && v["data"]["event"] == "opened" {
                    assert_eq!(v["data"]["position_id"], id.as_str());
                    break;
                }
            }
        }
    });
}

/// A genuine, signed `engine-events` entry written again (by anyone who can write to Redis) was
/// accepted again by the api's tail: an old price pushed as live, a change pushed to its owner
/// twice. The tail now refuses changes at or before the last it handed on, and entries signed
/// too long ago, and counts them (`push{counter="replayed"}`).
#[test]
fn a_replayed_engine_events_entry_is_not_pushed_again() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path());
    let url = redis.url.clone();
    let data = dir.path().join("engine");
    let _engine = hundredx(&["engine", "--redis", &url, "--data-dir", data.to_str().unwrap()]);
    let _feed = hundredx(&["feed", "--redis", &url, "--feed", "synthetic"]);
    let (_api, addr) = api(&url, "api-replay");
    assert_eq!(until(200, 20, || http(&addr, "GET", "/api/v1/markets", None, None)).0, 200);
    let token = sign_up(&addr, "replay@example.com");
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut ws = rt.block_on(async {
        let (mut ws, _) =
            tokio_tungstenite::connect_async(format!("ws://{addr}/api/v1/ws")).await.unwrap();
        let auth = serde_json::json!({"op": "auth", "token": token}).to_string();
        ws.send(Message::Text(auth.into())).await.unwrap();
        let sub = r#"{"op":"subscribe","channels":["positions"]}"#;
        ws.send(Message::Text(sub.into())).await.unwrap();
        ws
    });
    // Every "opened" push until one for `id` arrives: the ids pushed on the way.
    let mut opened_until = |id: &str| -> Vec<String> {
        rt.block_on(async {
            let mut seen = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                let Ok(Some(Ok(Message::Text(t)))) =
                    tokio::time::timeout(Duration::from_secs(20), ws.next()).await
                else {
                    continue;
                };
                let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                if v["channel"] == "positions" && v["data"]["event"] == "opened" {
                    let pushed = v["data"]["position_id"].as_str().unwrap().to_owned();
                    seen.push(pushed.clone());
                    if pushed == id {
                        return seen;
                    }
                }
            }
            panic!("no push of position {id}: {seen:?}");
        })
    };
    let open = r#"{"market":"BTC_USDC","side":"long","leverage":10,"margin":"100"}"#;
    let (status, body) =
        until(201, 20, || http(&addr, "POST", "/api/v1/positions", Some(&token), Some(open)));
    assert_eq!(status, 201, "{body}");
    let first = field(&body, "id");
    assert_eq!(opened_until(&first), vec![first.clone()]);

    // Everything on engine-events so far, written again with its genuine signature.
    let mut con = redis::Client::open(url.as_str()).unwrap().get_connection().unwrap();
    let all: redis::streams::StreamRangeReply =
        redis::cmd("XRANGE").arg("engine-events").arg("-").arg("+").query(&mut con).unwrap();
    let mut replayed = 0u64;
    for e in &all.ids {
        let (Some(d), Some(ts), Some(sig)) =
            (e.get::<String>("data"), e.get::<String>("ts"), e.get::<String>("sig"))
        else {
            continue;
        };
        replayed += u64::from(d.contains("\"prev\""));
        let _: String = redis::cmd("XADD")
            .arg("engine-events")
            .arg("*")
            .arg("data")
            .arg(d)
            .arg("ts")
            .arg(ts)
            .arg("sig")
            .arg(sig)
            .query(&mut con)
            .unwrap();
    }
    assert!(replayed > 0, "the stream held changes to replay");
    let counted = || {
        let (_, m) = http(&addr, "GET", "/metrics", None, None);
        m.lines()
            .find(|l| l.starts_with("hundredx_push{counter=\"replayed\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while counted() < replayed {
        assert!(Instant::now() < deadline, "replays refused: {} of {replayed}", counted());
        std::thread::sleep(Duration::from_millis(50));
    }
    // The next genuine change is pushed, and the first position was not pushed again first.
    let (status, body) =
        until(201, 20, || http(&addr, "POST", "/api/v1/positions", Some(&token), Some(open)));
    assert_eq!(status, 201, "{body}");
    let second = field(&body, "id");
    assert_eq!(opened_until(&second), vec![second.clone()], "nothing replayed was pushed");
}

/// A request applied just before the engine died, whose entry comes to the restarted engine
/// again (pending, or a captured copy written back within the 30 s a signature is accepted): the
/// restarted bridge remembers the request ids its journal applied in the last minute and refuses
/// it as a replay (dead-lettered) before it reaches the engine — whose own request-id window
/// (100k commands) would only catch it while it is that recent — so it is applied once.
#[test]
fn a_restarted_engine_does_not_apply_a_journaled_request_again() {
    use engine_core::prelude::*;
    use redis_bridge::client::RedisEngineClient;
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path());
    let url = redis.url.clone();
    let data = dir.path().join("engine");
    let data_s = data.to_str().unwrap().to_owned();
    let start = || hundredx(&["engine", "--redis", &url, "--sync", "fsync", "--data-dir", &data_s]);
    let mut engine = start();
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let target = redis_bridge::test_support::target(&url);
        let key = redis_bridge::test_support::test_key();
        let client = RedisEngineClient::connect(
            &target,
            key,
            "replay-test",
            6 << 40,
            Duration::from_secs(2),
        )
        .await
        .unwrap();
        let account = common::ha::account_named(&client, "r@x").await;
        let deposit = CommandKind::Deposit { account, amount: Usdc::from_whole(1), key: None };
        let r = client.call(deposit).await.unwrap();
        assert!(r.result.is_ok(), "{r:?}");
        // The deposit's entry, as an eavesdropper (or Redis's redelivery) would have it.
        let mut con = redis::Client::open(url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let entries: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
            .arg("engine-stream")
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut con)
            .await
            .unwrap();
        let e = &entries.ids[0];
        let field = |k: &str| -> String { e.get(k).unwrap() };
        let (body, ts, sig) = (field("data"), field("ts"), field("sig"));

        let _ = engine.0.kill();
        let _ = engine.0.wait();
        engine = start();
        let _: String = redis::cmd("XADD")
            .arg("engine-stream")
            .arg("*")
            .arg("data")
            .arg(&body)
            .arg("ts")
            .arg(&ts)
            .arg("sig")
            .arg(&sig)
            .query_async(&mut con)
            .await
            .unwrap();
        // The restarted engine reads it, refuses it as a replay and dead-letters it.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let dead: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
                .arg("engine-dead-letter")
                .arg("-")
                .arg("+")
                .query_async(&mut con)
                .await
                .unwrap();
            let causes: Vec<String> =
                dead.ids.iter().filter_map(|d| d.get::<String>("error")).collect();
            if causes.iter().any(|c| c == "replayed") {
                break;
            }
            assert!(Instant::now() < deadline, "the copy was not refused: {causes:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let a = match client.call(CommandKind::QueryAccount { account }).await {
            Ok(Response { result: Ok(ReplyData::Account(a)), .. }) => a,
            other => panic!("{other:?}"),
        };
        assert_eq!(a.available, Usdc::from_whole(5_001), "the deposit was applied once");
        drop(engine);
    });
}

/// `hundredx api --backfill binance`: an api process with no history store answers the chart
/// with the venue's recent candles alone, marked as the venue's; without `--backfill` it reads
/// no venue and keeps no candles (404).
#[test]
fn an_api_process_fills_the_charts_past_from_a_venue_when_told_to() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (rest, asked) = runtime.block_on(klines());
    let args = ["api", "--redis", &redis.url, "--listen", "127.0.0.1:0", "--backfill"];
    let (_api, addr) =
        address_of(hundredx(&[&args[..], &["binance", "--backfill-url", &rest]].concat()));
    let path = "/api/v1/candles?market=BTC_USDC&interval=1m";
    let (status, body) = until(200, 20, || http(&addr, "GET", path, None, None));
    assert_eq!(status, 200, "{body}");
    let v = json(&body);
    assert_eq!(v["venue"], "binance", "{body}");
    let candles = v["candles"].as_array().unwrap();
    assert_eq!(candles.len(), 2, "{body}");
    assert!(candles.iter().all(|c| c["source"] == "venue"), "{body}");
    // The three default markets, one request a span each (the later spans may still be read).
    let all_read = Instant::now() + Duration::from_secs(20);
    while asked.load(std::sync::atomic::Ordering::SeqCst) < 18 && Instant::now() < all_read {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 18);
    let (_plain, addr) = api(&redis.url, "plain");
    let (status, body) = until(404, 20, || http(&addr, "GET", path, None, None));
    assert_eq!(status, 404, "{body}");
    assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 18, "the plain api asked nothing");
    drop(runtime);
}

/// A sign-out holds on every api instance: a session's token used on the second instance (so
/// that instance has confirmed it), then signed out everywhere through the first, is refused by
/// the second — from the `sessions_revoked` change it reads off Redis, and within
/// `sessions::CONFIRMED_FOR` (2 s) in any case.
#[test]
fn a_sign_out_everywhere_holds_on_the_other_api_instance() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path());
    let url = redis.url.clone();
    let data = dir.path().join("engine");
    let _engine = hundredx(&["engine", "--redis", &url, "--data-dir", data.to_str().unwrap()]);
    let (_api1, a1) = api(&url, "api-1");
    let (_api2, a2) = api(&url, "api-2");
    let token = sign_up(&a1, "everywhere@example.com");
    let (status, body) =
        until(200, 20, || http(&a2, "GET", "/api/v1/user/balance", Some(&token), None));
    assert_eq!(status, 200, "the token works on the second instance: {body}");
    let (status, body) =
        http(&a1, "POST", "/api/v1/user/signout", Some(&token), Some(r#"{"scope":"all"}"#));
    assert_eq!(status, 200, "{body}");
    let signed_out = Instant::now();
    let deadline = signed_out + Duration::from_secs(20);
    loop {
        let (status, body) = http(&a2, "GET", "/api/v1/user/balance", Some(&token), None);
        if status == 401 {
            assert!(body.contains("unknown_session"), "{body}");
            break;
        }
        assert_eq!(status, 200, "{body}");
        assert!(Instant::now() < deadline, "the second instance still takes the signed-out token");
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("refused by the other instance {:?} after the sign-out", signed_out.elapsed());
    // And the first, at once.
    let (status, _) = http(&a1, "GET", "/api/v1/user/balance", Some(&token), None);
    assert_eq!(status, 401);
}
