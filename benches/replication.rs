//! What replication costs and how long a takeover takes (docs/BENCHMARKS.md, "Replication").
//!
//! Real processes on one machine: Redis primary + replica + three sentinels, `hundredx engine`
//! processes (release build), and a closed-loop client of deposits through Redis.
//!
//! 1. **Cost**: the same load (64 concurrent requests, 8 s) against a plain `hundredx engine`
//!    and against a replicated leader (`--standby`, a standby following it): throughput and
//!    round-trip percentiles. The difference is the append to `engine-journal` + `WAIT 1` per
//!    batch (and the standby's reads).
//! 2. **Takeover**: 10 rounds of kill -9 of the leader under load; each round reports the
//!    client-visible outage (kill → first acknowledged reply after it) and the new leader's own
//!    figure (lease won → serving engine-stream). The killed engine is restarted as a standby
//!    before the next round. Lease 1 s (`--lease-ms 1000`).
//!
//! `cargo bench --bench replication` (`-- cost` or `-- takeover` for one part).

#[path = "../tests/common/ha.rs"]
#[allow(dead_code)]
mod ha;

use ground::ports::EngineClient;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use engine_core::prelude::*;
use ha::*;
use hdrhistogram::Histogram;
use redis_bridge::client::RedisEngineClient;

const BIN: &str = env!("CARGO_BIN_EXE_hundredx");
const CONCURRENCY: usize = 64;
const RUN: Duration = Duration::from_secs(8);
/// The default snapshot interval (the tests' 100 would measure snapshots: each one stops the
/// engine thread for a copy of the state).
const SNAPSHOTS: Option<u64> = Some(1_000_000);

fn main() {
    let which = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    if which.as_deref().is_none_or(|w| w == "cost") {
        for replicated in [false, true] {
            cost(&rt, replicated);
        }
    }
    if which.as_deref().is_none_or(|w| w == "takeover") {
        takeover(&rt, 10);
    }
}

/// Closed loop: `CONCURRENCY` tasks, each one deposit at a time, for `RUN`.
async fn closed_loop(c: Arc<RedisEngineClient>, account: AccountId) -> (u64, Histogram<u64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (c, stop, done) = (Arc::clone(&c), Arc::clone(&stop), Arc::clone(&done));
            tokio::spawn(async move {
                let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    let kind =
                        CommandKind::Deposit { account, amount: Usdc::from_whole(1), key: None };
                    let t = Instant::now();
                    if let Ok(Response { result: Ok(_), .. }) = c.call(kind).await {
                        h.saturating_record(
                            u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX),
                        );
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
                h
            })
        })
        .collect();
    tokio::time::sleep(RUN).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    for t in tasks {
        all.add(t.await.unwrap()).unwrap();
    }
    (done.load(Ordering::Relaxed), all)
}

fn cost(rt: &tokio::runtime::Runtime, replicated: bool) {
    let dir = tempfile::tempdir().unwrap();
    let ha = RedisHa::start(dir.path());
    let url = &ha.url;
    let a = EngineProc::start_as(BIN, url, dir.path(), "engine-a", replicated, SNAPSHOTS);
    // a leads before b starts (else either may win the lease).
    assert!(!replicated || a.wait_leading(Duration::from_secs(20)), "{}", a.log_text());
    let _b =
        replicated.then(|| EngineProc::start_as(BIN, url, dir.path(), "engine-b", true, SNAPSHOTS));
    rt.block_on(async {
        let c = Arc::new(client(url, "bench", 21).await);
        let account = account(&c).await;
        let _ = closed_loop(Arc::clone(&c), account).await; // warm-up
        let (n, h) = closed_loop(c, account).await;
        println!(
            "cost {:<10} {:>7} req/s  p50 {:>6} µs  p99 {:>6} µs  p99.9 {:>6} µs  max {:>7} µs",
            if replicated { "replicated" } else { "plain" },
            n / RUN.as_secs(),
            h.value_at_quantile(0.50),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.max()
        );
    });
}

fn takeover(rt: &tokio::runtime::Runtime, rounds: usize) {
    let dir = tempfile::tempdir().unwrap();
    let ha = RedisHa::start(dir.path());
    let a = EngineProc::start_as(BIN, &ha.url, dir.path(), "engine-a", true, SNAPSHOTS);
    assert!(a.wait_leading(Duration::from_secs(20)), "{}", a.log_text());
    let mut engines =
        [a, EngineProc::start_as(BIN, &ha.url, dir.path(), "engine-b", true, SNAPSHOTS)];
    rt.block_on(async {
        let c = Arc::new(client(&ha.url, "bench-takeover", 22).await);
        let account = account(&c).await;
        let load = Load::spawn(Arc::clone(&c), account, 8);
        let mut outages = Vec::new();
        let mut leader = 0;
        for round in 1..=rounds {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let standby = 1 - leader;
            let before = engines[standby].log_text().matches("serving engine-stream").count();
            let killed = Instant::now();
            engines[leader].kill();
            assert!(wait_for(Duration::from_secs(20), || {
                engines[standby].log_text().matches("serving engine-stream").count() > before
            }));
            assert!(wait_for(Duration::from_secs(20), || load.first_ok_after(killed).is_some()));
            let outage = load.first_ok_after(killed).unwrap() - killed;
            let log = engines[standby].log_text();
            let inner: String = log
                .rsplit("takeover_ms")
                .next()
                .and_then(|s| s.split_once("Some("))
                .map(|(_, rest)| rest.chars().take_while(char::is_ascii_digit).collect())
                .unwrap_or_default();
            println!(
                "takeover round {round:>2}: outage {:>5} ms (lease won → serving: {inner} ms)",
                outage.as_millis()
            );
            outages.push(u64::try_from(outage.as_millis()).unwrap_or(u64::MAX));
            engines[leader].restart(BIN, &ha.url);
            leader = standby;
        }
        load.stop.store(true, Ordering::Relaxed);
        outages.sort_unstable();
        println!(
            "takeover over {rounds} rounds: p50 {} ms, max {} ms (min {} ms)",
            outages[outages.len() / 2],
            outages[outages.len() - 1],
            outages[0]
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
        let journal = read_journal(&ha.url);
        let acked = load.acked.lock().unwrap().clone();
        let deposits = check_exactly_once(&journal, &acked);
        println!(
            "takeover: {} acknowledged, {deposits} deposits in the log, each once",
            acked.len()
        );
    });
}
