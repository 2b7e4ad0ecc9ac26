//! Open-loop HTTP load on the whole system in one process, as `serve` runs it: the engine with
//! its journal (`fsync`), the HTTP API, a synthetic price feed. The generator sends trading
//! requests — alternately `POST /api/v1/positions` and `POST /api/v1/positions/{id}/close` — at a
//! fixed offered rate; each request's latency is measured from its *planned* send time (no
//! coordinated omission) into an HDR histogram.
//!
//! Run: `cargo bench --bench http_load` (`-- --quick` for a smoke run, `-- --sync=interval:10`
//! for another journal policy, `-- --redis` for the API reaching the engine through Redis). Client and server share
//! this 2-core machine, so the figures are a lower bound for a server with its own cores.

#![allow(clippy::cast_precision_loss, clippy::float_arithmetic)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use engine_core::prelude::*;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hundredx::durability::SyncPolicy;
use hundredx::{DurableEngine, DurableOptions};
use hundredx_http::{ApiConfig, AppState, now_ns};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use price_feed::synthetic::{SyntheticConfig, SyntheticFeed};

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// The longest a request may take before it counts as an error (status 0).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

async fn call(
    c: &HttpClient,
    base: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, serde_json::Value) {
    let mut req =
        hyper::Request::post(format!("{base}{path}")).header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = req.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
    // Bounded, so a saturated run always ends and reports (one once never did; the likely
    // cause, not verified: past ~10k connections this process — client and server share its
    // descriptors — cannot accept them all, and a connection waits in the listen backlog).
    match tokio::time::timeout(CALL_TIMEOUT, c.request(req)).await {
        Ok(Ok(resp)) => {
            let status = resp.status().as_u16();
            let bytes = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
        }
        _ => (0, serde_json::Value::Null),
    }
}

#[path = "support/harness.rs"]
#[allow(dead_code)] // the ring latency harness; only its scheduling counters are used here
mod harness;

use harness::Sched;

/// Per thread name (threads of one name summed), the scheduling counters of this process.
fn threads() -> std::collections::BTreeMap<String, Sched> {
    let mut by_name = std::collections::BTreeMap::new();
    for task in std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else { continue };
        let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let e = by_name.entry(name.trim().to_owned()).or_insert_with(Sched::default);
        *e = e.plus(Sched::of(tid));
    }
    by_name
}

/// Wake-ups and CPU per request by thread between two [`threads`] readings.
fn per_request(
    before: &std::collections::BTreeMap<String, Sched>,
    after: &std::collections::BTreeMap<String, Sched>,
    requests: u64,
) -> String {
    let n = requests.max(1) as f64;
    after
        .iter()
        .filter_map(|(name, a)| {
            let d = a.since(before.get(name).copied().unwrap_or_default());
            (d.run_ns as f64 / n >= 500.0).then(|| {
                format!(
                    "{name}: {:.2} wake-ups, {:.1} µs CPU",
                    d.woken as f64 / n,
                    d.run_ns as f64 / n / 1e3
                )
            })
        })
        .collect::<Vec<_>>()
        .join("; ")
}

struct Run {
    hist: Histogram<u64>,
    ok: u64,
    failed: u64,
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rates: Vec<u64> = std::env::args()
        .find_map(|a| {
            a.strip_prefix("--rates=")
                .map(|r| r.split(',').filter_map(|x| x.parse().ok()).collect())
        })
        .unwrap_or_else(
            || if quick { vec![500] } else { vec![2_000, 5_000, 10_000, 15_000, 20_000] },
        );
    let secs = if quick { 1 } else { 5 };
    let users = if quick { 4 } else { 40 };

    let sync: SyncPolicy = std::env::args()
        .find_map(|a| a.strip_prefix("--sync=").map(str::to_owned))
        .map_or(SyncPolicy::Fsync, |s| s.parse().expect("--sync=fsync|interval:<ms>|none"));
    let dir = tempfile::tempdir().unwrap();
    let opts = DurableOptions { sync, ..DurableOptions::new(dir.path()) };
    let cfg = EngineConfig { max_positions_per_account: 10_000, ..EngineConfig::default() };
    let markets = cfg.markets.clone();
    let durable = DurableEngine::start(cfg, &opts).unwrap();
    let mut feed_sub = durable.handle.submitter();
    let stop_feed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let feed_thread = {
        let stop = Arc::clone(&stop_feed);
        let mut feed = SyntheticFeed::new(
            SyntheticConfig { volatility_ppm: 50, ..SyntheticConfig::default() },
            &markets,
        );
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let now = now_ns();
                if let Some(t) = feed.next_tick(now / 1_000) {
                    feed_sub.send(now, CommandKind::PriceTick(t));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let mut api = ApiConfig::new(b"bench-secret-0123456789".to_vec(), markets);
    api.limits.trading_per_second = 1_000_000;
    api.limits.signin_per_login_ip_per_minute = 1_000_000;
    api.limits.signin_per_ip_per_minute = 1_000_000;
    api.limits.signup_per_ip_per_minute = 1_000_000;
    api.limits.server.max_connections = 100_000;
    // One generator, one address, 40 accounts: the per-address and per-account allowances
    // that guard against one client would throttle the load being measured.
    api.limits.server.max_connections_per_address = 100_000;
    api.limits.any_per_ip_per_second = 1_000_000;
    api.limits.authed_per_second = 1_000_000;
    let over_redis = std::env::args().any(|a| a == "--redis");
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    // With --redis: the API reaches the engine through Redis (service mode in one process):
    // HTTP -> RedisEngineClient -> engine-stream -> bridge -> engine -> reply stream -> HTTP.
    let redis = over_redis.then(|| redis_bridge::test_support::RedisServer::start(dir.path()));
    let state = match &redis {
        None => AppState::new(api, durable.handle.submitter()),
        Some(r) => {
            let url = r.url.clone();
            let events = durable.handle.subscribe(Subscription::Events, 65_536);
            let submitter = durable.handle.submitter();
            let client = rt.block_on(async {
                tokio::spawn(redis_bridge::bridge::run_engine_bridge(
                    redis_bridge::bridge::EngineBridgeConfig::new(
                        redis_bridge::test_support::target(&url),
                        redis_bridge::test_support::test_key(),
                    ),
                    submitter,
                    events,
                    std::future::pending(),
                ));
                redis_bridge::client::RedisEngineClient::connect(
                    &redis_bridge::test_support::target(&url),
                    redis_bridge::test_support::test_key(),
                    "load",
                    1 << 40,
                    api.limits.reply_timeout,
                )
                .await
                .unwrap()
            });
            AppState::with_client(api, Arc::new(client), None)
        }
    };
    if over_redis {
        println!("(API over Redis: HTTP -> Redis -> engine -> Redis -> HTTP)");
    }
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(hundredx_http::serve(listener, state, std::future::pending()));
        let client: HttpClient = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(1_024).build_http();
        tokio::time::sleep(Duration::from_millis(200)).await;

        let mut tokens = Vec::new();
        for u in 0..users {
            let creds = format!(r#"{{"email":"load{u}@example.com","password":"correct horse"}}"#);
            call(&client, &base, "/api/v1/user/signup", None, &creds).await;
            let (_, v) = call(&client, &base, "/api/v1/user/signin", None, &creds).await;
            let t = v["token"].as_str().expect("token").to_string();
            call(&client, &base, "/api/v1/user/deposit", Some(&t), r#"{"amount":"1000000000"}"#).await;
            tokens.push(t);
        }
        println!("# HTTP load: open-loop, alternating open / close, {users} users, {secs} s per rate, journal {sync:?}\n");
        println!("| offered req/s | achieved req/s | p50 | p90 | p99 | p99.9 | max | errors |");
        println!("|---|---|---|---|---|---|---|---|");
        let tokens = Arc::new(tokens);
        let mut wakes = Vec::new();
        for &rate in &rates {
            let run = Arc::new(Mutex::new(Run { hist: Histogram::new_with_bounds(1, 60_000_000_000, 3).unwrap(), ok: 0, failed: 0 }));
            let open_ids: Arc<Mutex<VecDeque<(usize, String)>>> = Arc::new(Mutex::new(VecDeque::new()));
            let total = rate * secs;
            let interval = Duration::from_nanos(1_000_000_000 / rate);
            let threads_before = threads();
            let start = Instant::now();
            let mut handles = Vec::with_capacity(usize::try_from(total).unwrap());
            for i in 0..total {
                let planned = start + interval * u32::try_from(i).unwrap();
                let now = Instant::now();
                if planned > now {
                    tokio::time::sleep_until(planned.into()).await;
                }
                let (client, base, tokens, run, open_ids) = (client.clone(), base.clone(), Arc::clone(&tokens), Arc::clone(&run), Arc::clone(&open_ids));
                handles.push(tokio::spawn(async move {
                    let user = usize::try_from(i).unwrap() % tokens.len();
                    let to_close = if i % 2 == 1 { open_ids.lock().unwrap().pop_front() } else { None };
                    let ok = match to_close {
                        Some((u, id)) => {
                            let (st, _) = call(&client, &base, &format!("/api/v1/positions/{id}/close"), Some(&tokens[u]), "{}").await;
                            st == 200
                        }
                        None => {
                            let body = r#"{"market":"BTC_USDC","side":"long","leverage":10,"margin":"10"}"#;
                            let (st, v) = call(&client, &base, "/api/v1/positions", Some(&tokens[user]), body).await;
                            if let Some(id) = v["id"].as_str() {
                                open_ids.lock().unwrap().push_back((user, id.to_string()));
                            }
                            st == 201
                        }
                    };
                    let lat = u64::try_from(planned.elapsed().as_nanos()).unwrap_or(u64::MAX);
                    let mut r = run.lock().unwrap();
                    r.hist.record(lat.max(1)).unwrap();
                    if ok { r.ok += 1 } else { r.failed += 1 }
                }));
            }
            for h in handles {
                h.await.unwrap();
            }
            let elapsed = start.elapsed();
            wakes.push((rate, per_request(&threads_before, &threads(), total)));
            let r = run.lock().unwrap();
            let ms = |q: f64| format!("{:.2} ms", r.hist.value_at_quantile(q) as f64 / 1e6);
            println!(
                "| {rate} | {:.0} | {} | {} | {} | {} | {:.2} ms | {} |",
                (r.ok + r.failed) as f64 / elapsed.as_secs_f64(),
                ms(0.5), ms(0.9), ms(0.99), ms(0.999),
                r.hist.max() as f64 / 1e6,
                r.failed
            );
        }
        // Where a request's hand-offs and CPU go, per thread (this process: generator included).
        println!("\nPer request, by thread (voluntary context switches = sleeps woken; CPU from schedstat):\n");
        for (rate, line) in wakes {
            println!("- {rate}/s: {line}");
        }
    });
    // The server task holds a submitter: the engine stops once every one is gone. (A blocking
    // task of the Redis bridge waits on engine events: do not wait for it.)
    rt.shutdown_timeout(Duration::from_secs(1));
    stop_feed.store(true, std::sync::atomic::Ordering::Relaxed);
    feed_thread.join().unwrap();
    durable.shutdown().unwrap();
}
