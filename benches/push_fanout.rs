//! Push fan-out: N WebSocket clients (each its own account, subscribed to `prices` and its own
//! `positions`) on one `serve`-like process (engine + HTTP adapter + push hub, one runtime of 2
//! workers), 3 markets at 30 ticks/s each, 20 opens/s spread over the accounts. Measured, per
//! client count: push latency from a tick's submission to each client receiving its price, and
//! from an open's submission to its owner receiving it (HDR); the process's CPU; the engine's own
//! round trip (a deposit, p50/p99) with the clients attached. Clients run in a second runtime of
//! the same process (this machine has two cores: they compete, which is reported, not hidden).
//!
//! Run: `cargo bench --bench push_fanout` (`-- --quick` for a smoke run).

#![allow(clippy::cast_precision_loss, clippy::float_arithmetic)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use engine_core::prelude::*;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use hundredx_http::{ApiConfig, AppState, now_ns};
use tokio_tungstenite::tungstenite::Message;

const SECRET: &[u8] = b"push-bench-secret-of-enough-length";

type Sent = Arc<Mutex<HashMap<String, Instant>>>;

#[path = "support/cpu.rs"]
mod cpu;

/// CPU clock ticks used so far by this process's threads whose name starts with `prefix` ("" for
/// all).
fn cpu_ticks(prefix: &str) -> u64 {
    cpu::cpu_ticks(|name| name.starts_with(prefix))
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let counts: &[usize] = if quick { &[0, 50] } else { &[0, 250, 1_000] };
    let secs = if quick { 2 } else { 10 };
    let hz: &[u32] = if quick { &[20] } else { &[10, 20, 50] };
    println!("# Push fan-out: 3 markets x 30 ticks/s, 20 opens/s, {secs} s per row\n");
    println!(
        "| clients | price polls/s | price push p50 | p99 | max | open push p50 | p99 | CPU % server (HTTP + push) | CPU % clients | CPU % engine threads | engine deposit p50 | p99 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for &n in counts {
        for &h in hz {
            if n == 0 && h != hz[0] {
                continue;
            }
            run(n, h, secs);
        }
    }
}

fn run(clients: usize, hz: u32, secs: u64) {
    let runtime = |name: &str| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(name)
            .enable_all()
            .build()
            .unwrap()
    };
    let (server_rt, client_rt) = (runtime("srv"), runtime("cli"));
    let mut engine =
        EngineHandle::start(EngineConfig { max_accounts: 10_000, ..EngineConfig::default() })
            .unwrap();
    let mut cfg = ApiConfig::new(SECRET.to_vec(), MarketConfig::defaults());
    cfg.limits.push.per_ip = 10_000;
    cfg.limits.push.max_connections = 10_000;
    cfg.limits.push.price_updates_per_second = hz;
    cfg.limits.server.max_connections = 10_000;
    let state = AppState::new(cfg, engine.submitter());
    let feed = engine.subscribe(Subscription::ChangesBestEffort, 65_536);
    let hub = state.hub();
    std::thread::spawn(move || {
        for o in feed {
            if let Output::Change(c) = o {
                hub.publish(&c);
            }
        }
    });
    let addr = server_rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(hundredx_http::serve(l, Arc::clone(&state), std::future::pending()));
        addr
    });
    let tokens = hundredx_http::auth::Tokens::new(SECRET, 3_600, 86_400);
    let mut accounts = Vec::new();
    for i in 0..clients.max(1) {
        let login = Login::new(&format!("u{i}@x")).unwrap();
        let r = engine
            .call(
                now_ns(),
                CommandKind::CreateAccount { login, credential: Credential::empty() },
                Duration::from_secs(5),
            )
            .unwrap();
        let Ok(ReplyData::AccountCreated { account }) = r.result else { panic!("{r:?}") };
        accounts.push(account);
    }
    let prices_sent: Sent = Arc::default();
    let opens_sent: Sent = Arc::default();
    let price_hist =
        Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(1_000, 60_000_000_000, 3).unwrap()));
    let open_hist =
        Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(1_000, 60_000_000_000, 3).unwrap()));
    // Connect and subscribe every client before the measured window.
    let ready = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for a in accounts.iter().take(clients) {
        // A token names its session: open one in the engine, as a sign-in does.
        let expires_at_ns = now_ns() + 3_600_000_000_000;
        let new = NewSession { account: *a, expires_at_ns, client: SessionClient::default() };
        let r =
            engine.call(now_ns(), CommandKind::OpenSession(new), Duration::from_secs(5)).unwrap();
        let Ok(ReplyData::Session(session)) = r.result else { panic!("{r:?}") };
        let token = tokens.issue(a.0, false, session.id.0, expires_at_ns / 1_000_000_000).unwrap();
        let (ps, os, ph, oh, ready) = (
            Arc::clone(&prices_sent),
            Arc::clone(&opens_sent),
            Arc::clone(&price_hist),
            Arc::clone(&open_hist),
            Arc::clone(&ready),
        );
        client_rt.spawn(async move {
            use tokio_tungstenite::tungstenite::client::IntoClientRequest;
            let mut req = format!("ws://{addr}/api/v1/ws").into_client_request().unwrap();
            let bearer = format!("Bearer {token}").parse().unwrap();
            req.headers_mut().insert("authorization", bearer);
            let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
            ws.send(Message::Text(
                r#"{"op":"subscribe","channels":["prices","positions"]}"#.into(),
            ))
            .await
            .unwrap();
            ready.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            while let Some(Ok(m)) = ws.next().await {
                let Message::Text(t) = m else { continue };
                let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap_or_default();
                let now = Instant::now();
                let key = match (v["channel"].as_str(), v["data"]["event"].as_str()) {
                    (Some("prices"), _) => {
                        format!("{}:{}", v["data"]["market"], v["data"]["update_id"])
                    }
                    (Some("positions"), Some("opened")) => format!("{}", v["data"]["position_id"]),
                    _ => continue,
                };
                let (sent, hist) = if v["channel"] == "prices" { (&ps, &ph) } else { (&os, &oh) };
                let t0 = sent.lock().unwrap().get(&key).copied();
                if let Some(t0) = t0 {
                    let ns = u64::try_from(now.duration_since(t0).as_nanos()).unwrap_or(u64::MAX);
                    hist.lock().unwrap().saturating_record(ns);
                }
            }
        });
    }
    while ready.load(std::sync::atomic::Ordering::Relaxed) < clients {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(500));
    // Ticks: 3 markets x 30/s; opens: 20/s, each for the next account, closed right after.
    let mut update = [0u64; 3];
    let mut mids = [6_000_000i64, 300_000, 15_000];
    let mut deposit = Histogram::<u64>::new_with_bounds(1_000, 60_000_000_000, 3).unwrap();
    let cpu0 = [cpu_ticks("srv"), cpu_ticks("cli"), cpu_ticks("hundredx")];
    let started = Instant::now();
    let mut step = 0u64;
    while started.elapsed() < Duration::from_secs(secs) {
        let due = started + Duration::from_millis(step * 1_000 / 90);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let m = usize::try_from(step % 3).unwrap();
        update[m] += 1;
        mids[m] += if step % 7 < 3 { 10 } else { -10 };
        let market = MarketId(u16::try_from(m).unwrap());
        let tick = Tick {
            market,
            bid: Price(mids[m]),
            ask: Price(mids[m] + 10),
            update_id: update[m],
            exchange_time_us: 0,
        };
        let symbol = ["BTC_USDC", "ETH_USDC", "SOL_USDC"][m];
        prices_sent.lock().unwrap().insert(format!("\"{symbol}\":{}", update[m]), Instant::now());
        let _ = engine.call(now_ns(), CommandKind::PriceTick(tick), Duration::from_secs(5));
        if step.is_multiple_of(9) && clients > 0 {
            let account = accounts[usize::try_from(step / 9).unwrap() % clients];
            let size = Size::Margin(Usdc::from_whole(10));
            let req = OpenRequest::new(account, MarketId(0), Side::Long, 10, size);
            let t0 = Instant::now();
            let r = engine
                .call(now_ns(), CommandKind::OpenPosition(req), Duration::from_secs(5))
                .unwrap();
            if let Ok(ReplyData::Opened(v)) = r.result {
                opens_sent.lock().unwrap().insert(format!("\"{}\"", v.id.0), t0);
                let _ = engine.call(
                    now_ns(),
                    CommandKind::ClosePosition {
                        account,
                        position: v.id,
                        quantity: None,
                        key: None,
                    },
                    Duration::from_secs(5),
                );
            }
        }
        if step.is_multiple_of(3) {
            let t0 = Instant::now();
            let _ = engine.call(
                now_ns(),
                CommandKind::Deposit { account: accounts[0], amount: Usdc(1), key: None },
                Duration::from_secs(5),
            );
            deposit.saturating_record(u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX));
        }
        step += 1;
    }
    let elapsed = started.elapsed();
    let pct =
        |prefix: &str, before: u64| (cpu_ticks(prefix) - before) as f64 / elapsed.as_secs_f64();
    let (srv, cli, eng) = (pct("srv", cpu0[0]), pct("cli", cpu0[1]), pct("hundredx", cpu0[2]));
    std::thread::sleep(Duration::from_millis(300));
    let ms = |h: &Histogram<u64>, q: f64| format!("{:.1} ms", h.value_at_quantile(q) as f64 / 1e6);
    let (ph, oh) = (price_hist.lock().unwrap(), open_hist.lock().unwrap());
    let (p50, p99, pmax) = if !ph.is_empty() {
        (ms(&ph, 0.5), ms(&ph, 0.99), format!("{:.1} ms", ph.max() as f64 / 1e6))
    } else {
        ("—".into(), "—".into(), "—".into())
    };
    let (o50, o99) =
        if !oh.is_empty() { (ms(&oh, 0.5), ms(&oh, 0.99)) } else { ("—".into(), "—".into()) };
    let us = |q: f64| format!("{} µs", deposit.value_at_quantile(q) / 1_000);
    println!(
        "| {clients} | {hz} | {p50} | {p99} | {pmax} | {o50} | {o99} | {srv:.0} | {cli:.0} | {eng:.0} | {} | {} |",
        us(0.5),
        us(0.99)
    );
    client_rt.shutdown_timeout(Duration::from_secs(1));
    server_rt.shutdown_timeout(Duration::from_secs(1));
    drop(state);
    let _ = engine.shutdown();
}
