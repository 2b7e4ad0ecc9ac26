//! The raw Redis bridge (no HTTP): open-loop requests through `engine-stream` -> engine ->
//! `callback-queue`, latency from each request's planned send time (HDR); and price ticks through
//! `price-stream`. Starts its own `redis-server` on a free port (`apt-get install redis-server`).
//!
//! Run: `cargo bench --bench bridge` (`-- --quick` for a smoke run).

#![allow(clippy::cast_precision_loss, clippy::float_arithmetic)]

use ground::ports::EngineClient;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use engine_core::prelude::*;
use hdrhistogram::Histogram;
use redis_bridge::bridge::{EngineBridgeConfig, run_engine_bridge};
use redis_bridge::client::RedisEngineClient;
use redis_bridge::test_support;
use redis_bridge::{PRICE_STREAM, wire};

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rates: &[u64] = if quick { &[1_000] } else { &[1_000, 5_000, 10_000, 20_000, 40_000] };
    let secs = if quick { 1 } else { 3 };
    let dir = tempfile::tempdir().unwrap();
    let redis = redis_bridge::test_support::RedisServer::start(dir.path());
    let url = redis.url.clone();
    let handle = EngineHandle::start(EngineConfig::default()).unwrap();
    let events = handle.subscribe(Subscription::Events, 1024);
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        tokio::spawn(run_engine_bridge(EngineBridgeConfig::new(test_support::target(&url), test_support::test_key()), handle.submitter(), events, std::future::pending()));
        let client = Arc::new(RedisEngineClient::connect(&test_support::target(&url), test_support::test_key(), "bench", 1 << 40, Duration::from_secs(5)).await.unwrap());
        let login = Login::new("bench@x").unwrap();
        let account = loop {
            if let Ok(Response { result: Ok(ReplyData::AccountCreated { account }), .. }) =
                client.call(CommandKind::CreateAccount { login, credential: Credential::empty() }).await
            {
                break account;
            }
        };
        println!("# Redis bridge, open loop: deposits through engine-stream -> engine -> reply stream, {secs} s per rate\n");
        println!("| offered req/s | achieved req/s | p50 | p90 | p99 | p99.9 | max | timeouts |");
        println!("|---|---|---|---|---|---|---|---|");
        for &rate in rates {
            let hist = Arc::new(std::sync::Mutex::new(Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap()));
            let failed = Arc::new(AtomicU64::new(0));
            let total = rate * secs;
            let interval = Duration::from_nanos(1_000_000_000 / rate);
            let start = Instant::now();
            let mut tasks = Vec::new();
            for i in 0..total {
                let planned = start + interval * u32::try_from(i).unwrap();
                if planned > Instant::now() {
                    tokio::time::sleep_until(planned.into()).await;
                }
                let (c, h, f) = (Arc::clone(&client), Arc::clone(&hist), Arc::clone(&failed));
                tasks.push(tokio::spawn(async move {
                    let r = c.call(CommandKind::Deposit { account, amount: Usdc(1), key: None }).await;
                    if r.is_err() {
                        f.fetch_add(1, Ordering::Relaxed);
                    }
                    let _ = h.lock().unwrap().record(u64::try_from(planned.elapsed().as_nanos()).unwrap_or(u64::MAX).max(1));
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
            let el = start.elapsed();
            let h = hist.lock().unwrap();
            let ms = |q: f64| format!("{:.2} ms", h.value_at_quantile(q) as f64 / 1e6);
            println!(
                "| {rate} | {:.0} | {} | {} | {} | {} | {:.2} ms | {} |",
                total as f64 / el.as_secs_f64(), ms(0.5), ms(0.9), ms(0.99), ms(0.999), h.max() as f64 / 1e6,
                failed.load(Ordering::Relaxed)
            );
        }

        // Ticks: pipelined XADDs into price-stream; time until the engine applied them all.
        let n: u64 = if quick { 10_000 } else { 200_000 };
        let mut con = redis::Client::open(url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
        let key = test_support::test_key(); // once: the feed keeps its key too
        let before = handle.counters().ticks_applied;
        let start = Instant::now();
        for chunk in (0..n).collect::<Vec<_>>().chunks(1_000) {
            let mut pipe = redis::pipe();
            for &i in chunk {
                let t = Tick { market: MarketId(0), bid: Price(6_000_000), ask: Price(6_000_010), update_id: i + 1, exchange_time_us: 0 };
                pipe.add_command(redis_bridge::entries::signed_xadd(&key, PRICE_STREAM, 1_000_000, &wire::encode_tick(&t))).ignore();
            }
            let _: () = pipe.query_async(&mut con).await.unwrap();
        }
        while handle.counters().ticks_applied < before + n && start.elapsed() < Duration::from_secs(60) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let el = start.elapsed();
        println!("\nTicks through price-stream: {} applied in {:?}: **{:.0} ticks/s**", handle.counters().ticks_applied - before, el, n as f64 / el.as_secs_f64());
    });
    // The bridge's event copier blocks on the engine's event channel until the engine stops:
    // do not wait for it (dropping the runtime would, forever).
    rt.shutdown_timeout(Duration::from_secs(1));
    drop(handle);
}
