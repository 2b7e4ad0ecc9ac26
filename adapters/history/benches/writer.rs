//! The history writer into SQLite and into PostgreSQL (a cluster of its own, `apt-get install
//! postgresql`): (1) how many changes per second it commits flat out, in batches as the writer
//! makes them; (2) open loop at a fixed offered rate, the lag of every change from when it was
//! offered to when its transaction committed (HDR), as the engine would see it through a
//! `Subscription::Changes`.
//!
//! Run: `cargo bench -p history --bench writer` (`-- --quick` for a smoke run).

#![allow(clippy::cast_precision_loss, clippy::float_arithmetic)]

use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;
use engine_core::prelude::*;
use hdrhistogram::Histogram;
use history::Store;
use history::test_support::{PgServer, session};

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let commands = if quick { 20_000 } else { 400_000 };
    let (_, changes) = session(5, commands);
    let rates: &[u64] = if quick { &[5_000] } else { &[5_000, 20_000, 40_000] };
    let secs = if quick { 1 } else { 5 };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pg = PgServer::start();
    println!(
        "# History writer: {} changes from a random session, batches of up to 4096\n",
        changes.len()
    );
    println!("| store | changes/s flat out | per change |");
    println!("|---|---|---|");
    let sqlite_url = |name: &str| Store::sqlite_url(&dir.path().join(name));
    for (name, url) in [
        ("SQLite (WAL, synchronous=FULL)", sqlite_url("flat.sqlite")),
        ("PostgreSQL (fsync on)", pg.url.clone()),
    ] {
        let store = rt.block_on(Store::open(&url, &MarketConfig::defaults(), 1)).unwrap();
        let started = Instant::now();
        for batch in changes.chunks(4_096) {
            rt.block_on(store.write(batch)).unwrap();
        }
        let el = started.elapsed();
        let per_s = changes.len() as f64 / el.as_secs_f64();
        println!(
            "| {name} | {per_s:.0} | {:.1} µs |",
            el.as_secs_f64() * 1e6 / changes.len() as f64
        );
    }
    println!("\n# Open loop: lag from offered to committed, {secs} s per rate\n");
    println!("| store | offered/s | achieved/s | p50 | p90 | p99 | p99.9 | max | batches |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (i, &rate) in rates.iter().enumerate() {
        let pg_db = format!("lag{i}");
        rt.block_on(async {
            let admin = Store::open(&pg.url, &MarketConfig::defaults(), 1).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {pg_db}")))
                .execute(admin.pool())
                .await
                .unwrap();
        });
        let pg_url = format!("postgres://postgres@127.0.0.1:{}/{pg_db}", pg.port);
        for (name, url) in
            [("SQLite", sqlite_url(&format!("lag{i}.sqlite"))), ("PostgreSQL", pg_url)]
        {
            let store = rt.block_on(Store::open(&url, &MarketConfig::defaults(), 1)).unwrap();
            let (hist, achieved, batches) = open_loop(&rt, &store, &changes, rate, secs);
            let q = |p: f64| Duration::from_nanos(hist.value_at_quantile(p));
            println!(
                "| {name} | {rate} | {achieved:.0} | {:?} | {:?} | {:?} | {:?} | {:?} | {batches} |",
                q(0.5),
                q(0.9),
                q(0.99),
                q(0.999),
                Duration::from_nanos(hist.max())
            );
        }
    }
}

/// Offers `rate` changes per second for `secs` (renumbered so each run is new to the store),
/// writes them as the writer does (whatever is waiting, up to 4096 per transaction), and
/// records each change's lag from its planned offer time to its commit.
fn open_loop(
    rt: &tokio::runtime::Runtime,
    store: &Store,
    changes: &[ChangeRecord],
    rate: u64,
    secs: u64,
) -> (Histogram<u64>, f64, u64) {
    let total = usize::try_from(rate * secs).unwrap().min(changes.len());
    let (tx, rx) = crossbeam_channel::bounded::<(Instant, ChangeRecord)>(65_536);
    let offered: Vec<ChangeRecord> = changes[..total].to_vec();
    let producer = std::thread::spawn(move || {
        let start = Instant::now();
        let interval = Duration::from_nanos(1_000_000_000 / rate);
        for (i, c) in offered.into_iter().enumerate() {
            let planned = start + interval * u32::try_from(i).unwrap();
            while Instant::now() < planned {
                std::hint::spin_loop();
            }
            tx.send((planned, c)).unwrap();
        }
    });
    let mut hist = Histogram::<u64>::new_with_bounds(1_000, 600_000_000_000, 3).unwrap();
    let (mut batch, mut planned) = (Vec::with_capacity(4_096), Vec::with_capacity(4_096));
    let started = Instant::now();
    let mut batches = 0;
    loop {
        batch.clear();
        planned.clear();
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok((p, c)) => {
                planned.push(p);
                batch.push(c);
            }
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        }
        while batch.len() < 4_096 {
            match rx.try_recv() {
                Ok((p, c)) => {
                    planned.push(p);
                    batch.push(c);
                }
                Err(_) => break,
            }
        }
        rt.block_on(store.write(&batch)).unwrap();
        batches += 1;
        let now = Instant::now();
        for p in &planned {
            hist.saturating_record(
                u64::try_from(now.duration_since(*p).as_nanos()).unwrap_or(u64::MAX),
            );
        }
    }
    producer.join().unwrap();
    (hist, total as f64 / started.elapsed().as_secs_f64(), batches)
}
