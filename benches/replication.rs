//! What replication costs and how long a takeover takes, on Redis (`WAIT`) and on NATS
//! JetStream (a Raft majority), in one run (docs/BENCHMARKS.md, "Replication").
//!
//! Real processes on one machine: Redis primary + replica + three sentinels (requests and
//! replies, and the Redis journal), a three-node NATS cluster when the journal is on
//! JetStream, `hundredx engine` processes (release build), and a closed-loop client through
//! Redis with a price published every 50 ms.
//!
//! 1. **Cost**: 64 concurrent clients, each opening a position and closing it, 8 s after an
//!    8 s warm-up, against a plain `hundredx engine`, a replicated leader on Redis
//!    (`--standby`, a standby following) and one on JetStream (`--journal nats://…`):
//!    throughput (opens + closes) and the percentiles of an open's round trip.
//! 2. **Takeover**: 10 rounds per backend of kill -9 of the leader under a deposit load; each
//!    round reports the client-visible outage (kill → first acknowledged reply to a request
//!    sent after it). The killed engine is restarted as a standby before the next round.
//!    Lease 1 s (`--lease-ms 1000`). Afterwards every acknowledged request is checked to be in
//!    the journal exactly once.
//!
//! `cargo bench --bench replication` (`-- cost` or `-- takeover [redis|nats]` for one part).

#[path = "../tests/common/ha.rs"]
#[allow(dead_code)]
mod ha;
#[path = "../tests/common/nats.rs"]
#[allow(dead_code)]
mod nats;

use ground::ports::EngineClient;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use engine_core::prelude::*;
use ha::*;
use hdrhistogram::Histogram;
use nats::NatsCluster;
use redis_bridge::client::RedisEngineClient;

const BIN: &str = env!("CARGO_BIN_EXE_hundredx");
const CONCURRENCY: usize = 64;
const RUN: Duration = Duration::from_secs(8);
/// The default snapshot interval (the tests' 100 would measure snapshots: each one stops the
/// engine thread for a copy of the state).
const SNAPSHOTS: Option<u64> = Some(1_000_000);

/// Where the replicated journal lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    /// Not replicated: a plain `hundredx engine`.
    Plain,
    /// `engine-journal` on Redis, `WAIT 1`.
    Redis,
    /// The journal on a three-node JetStream cluster.
    Nats,
}

/// The deployment one measurement runs on: Redis always, NATS when the journal is there.
struct Deployment {
    _dir: tempfile::TempDir,
    ha: RedisHa,
    nats: Option<NatsCluster>,
    dir: std::path::PathBuf,
}

impl Deployment {
    fn start(backend: Backend) -> Deployment {
        let dir = tempfile::tempdir().unwrap();
        let ha = RedisHa::start(dir.path());
        let nats = (backend == Backend::Nats).then(|| NatsCluster::start(dir.path()));
        if std::env::var_os("HUNDREDX_BENCH_KEEP").is_some() {
            eprintln!("keeping {}", dir.path().display());
            let kept = dir.path().to_owned();
            std::mem::forget(dir);
            return Deployment { dir: kept, _dir: tempfile::tempdir().unwrap(), ha, nats };
        }
        Deployment { dir: dir.path().to_owned(), _dir: dir, ha, nats }
    }

    fn engine(&self, backend: Backend, node: &str) -> EngineProc {
        let replicated = backend != Backend::Plain;
        let mut e = EngineProc::start_as(BIN, &self.ha.url, &self.dir, node, replicated, SNAPSHOTS);
        if let Some(n) = &self.nats {
            e.kill();
            e.args.extend(["--journal".to_owned(), n.url()]);
            e.restart(BIN, &self.ha.url);
        }
        e
    }

    fn journal(&self) -> Vec<(u64, Command)> {
        match &self.nats {
            Some(n) => nats::read_journal(&n.url()),
            None => read_journal(&self.ha.url),
        }
    }
}

fn main() {
    let which = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    if which.as_deref().is_none_or(|w| w == "cost") {
        for backend in [Backend::Plain, Backend::Redis, Backend::Nats] {
            cost(&rt, backend);
        }
    }
    // `-- takeover nats`: one backend only.
    let only = std::env::args().nth(2).map(|b| b.to_ascii_lowercase());
    if which.as_deref().is_none_or(|w| w == "takeover") {
        for backend in [Backend::Redis, Backend::Nats] {
            if only.as_ref().is_some_and(|o| *o != format!("{backend:?}").to_ascii_lowercase()) {
                continue;
            }
            takeover(&rt, backend, 10);
        }
    }
}

/// Closed loop: `CONCURRENCY` tasks, each opening a position then closing it, for `RUN`.
/// Returns the requests acknowledged (opens + closes) and the opens' round trips (µs).
async fn closed_loop(c: Arc<RedisEngineClient>, account: AccountId) -> (u64, Histogram<u64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (c, stop, done) = (Arc::clone(&c), Arc::clone(&stop), Arc::clone(&done));
            tokio::spawn(async move {
                let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    let open = OpenRequest::new(
                        account,
                        MarketId(0),
                        Side::Long,
                        10,
                        Size::Margin(Usdc::from_whole(10)),
                    );
                    let t = Instant::now();
                    let r = c.call(CommandKind::OpenPosition(open)).await;
                    let Ok(Response { result: Ok(ReplyData::Opened(v)), .. }) = r else {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    h.saturating_record(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
                    done.fetch_add(1, Ordering::Relaxed);
                    let close = CommandKind::ClosePosition {
                        account,
                        position: v.id,
                        quantity: None,
                        key: None,
                    };
                    if let Ok(Response { result: Ok(_), .. }) = c.call(close).await {
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

fn cost(rt: &tokio::runtime::Runtime, backend: Backend) {
    let d = Deployment::start(backend);
    let url = &d.ha.url;
    let a = d.engine(backend, "engine-a");
    // a leads before b starts (else either may win the lease).
    let replicated = backend != Backend::Plain;
    assert!(!replicated || a.wait_leading(Duration::from_secs(30)), "{}", a.log_text());
    let _b = replicated.then(|| d.engine(backend, "engine-b"));
    let stop = Arc::new(AtomicBool::new(false));
    publish_prices(url, Arc::clone(&stop));
    rt.block_on(async {
        let c = Arc::new(client(url, "bench", 21).await);
        let account = account(&c).await;
        let _ = closed_loop(Arc::clone(&c), account).await; // warm-up
        let (n, h) = closed_loop(c, account).await;
        println!(
            "cost {:<6} {:>7} req/s  open p50 {:>6} µs  p99 {:>6} µs  p99.9 {:>6} µs  max {:>7} µs",
            format!("{backend:?}"),
            n / RUN.as_secs(),
            h.value_at_quantile(0.50),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.max()
        );
    });
    stop.store(true, Ordering::Relaxed);
}

fn takeover(rt: &tokio::runtime::Runtime, backend: Backend, rounds: usize) {
    let d = Deployment::start(backend);
    let ha = &d.ha;
    let a = d.engine(backend, "engine-a");
    assert!(a.wait_leading(Duration::from_secs(30)), "{}", a.log_text());
    let mut engines = [a, d.engine(backend, "engine-b")];
    let acked = rt.block_on(async {
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
            let took = wait_for(Duration::from_secs(20), || {
                engines[standby].log_text().matches("serving engine-stream").count() > before
            });
            let serving = killed.elapsed();
            let log = engines[standby].log_text();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            assert!(took, "the standby took over: {}", tail.join("\n"));
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
                "takeover {backend:?} round {round:>2}: outage {:>5} ms (kill → serving ≤ {} ms; \
                 lease won → serving: {inner} ms)",
                outage.as_millis(),
                serving.as_millis()
            );
            outages.push(u64::try_from(outage.as_millis()).unwrap_or(u64::MAX));
            engines[leader].restart(BIN, &ha.url);
            leader = standby;
        }
        load.stop.store(true, Ordering::Relaxed);
        outages.sort_unstable();
        println!(
            "takeover {backend:?} over {rounds} rounds: p50 {} ms, max {} ms (min {} ms)",
            outages[outages.len() / 2],
            outages[outages.len() - 1],
            outages[0]
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
        load.acked.lock().unwrap().clone()
    });
    let journal = d.journal(); // blocking: outside the runtime
    let deposits = check_exactly_once(&journal, &acked);
    println!(
        "takeover {backend:?}: {} acknowledged, {deposits} deposits in the log, each once",
        acked.len()
    );
}
