#![allow(clippy::cast_precision_loss, clippy::float_arithmetic)]
//! Durability figures (a plain bench binary that prints tables; HDR histograms for latency):
//!
//! 1. journal append throughput per sync policy (the journal stage alone, batches of 256);
//! 2. engine throughput through the rings with no journal and with each policy (1M ticks), and
//!    for the ring latency harness's mix (90% ticks, 10% opens, closes and margin adds, 100k
//!    positions open);
//! 3. round-trip latency of a request (submit -> reply) without a journal and with `fsync`,
//!    closed loop, one client: the latency `fsync` adds to the ring-to-ring path;
//! 4. recovery rate: replaying a journal of 1M commands from scratch.
//!
//! Run: `cargo bench --bench durability` (add `-- --quick` for a smoke run).

use std::time::{Duration, Instant};

use engine_core::prelude::*;
use engine_core::processor::{InputStage, StartOptions};
use hdrhistogram::Histogram;
use hundredx::durability::{DataDir, Journal, Start, SyncPolicy, TornTail, per_second, recover};

#[path = "support/harness.rs"]
#[allow(dead_code)] // the ring latency harness; only its mix and preloaded engine are used here
mod harness;

const T0: u64 = 1_700_000_000_000_000_000;

fn tick(i: u64) -> CommandKind {
    let wiggle = i64::try_from(i % 100).unwrap_or(0);
    CommandKind::PriceTick(Tick {
        market: MarketId(0),
        bid: Price(6_000_000 + wiggle),
        ask: Price(6_000_050 + wiggle),
        update_id: i + 1,
        exchange_time_us: 0,
    })
}

fn policies() -> [(&'static str, SyncPolicy); 3] {
    [
        ("none", SyncPolicy::None),
        ("interval:10ms", SyncPolicy::Interval(Duration::from_millis(10))),
        ("fsync", SyncPolicy::Fsync),
    ]
}

fn journal_append(n: u64) {
    println!("\n## 1. Journal append, batches of 256 ({n} commands)\n");
    println!("| policy | events/s | ns/event |");
    println!("|---|---|---|");
    for (name, policy) in policies() {
        timed_appends(name, policy, n, |j, seq, cmd, end| j.on_command(seq, cmd, end));
    }
    // The same ticks in the fixed 67-byte layout written before the compact one (format 2).
    let mut buf = [0u8; engine_core::persist::MAX_RECORD_BYTES];
    let interval = SyncPolicy::Interval(Duration::from_millis(10));
    timed_appends(
        "interval:10ms, fixed 67-byte ticks (before)",
        interval,
        n,
        |j, seq, cmd, end| {
            let len = engine_core::persist::encode_tick_fixed(seq, cmd, &mut buf);
            j.on_encoded(seq, &buf[..len], end);
        },
    );
}

/// Appends `n` ticks to a fresh journal with `append(journal, seq, command, end_of_batch)`, in
/// batches of 256, and prints the rate (the final flush and sync included).
fn timed_appends(
    name: &str,
    policy: SyncPolicy,
    n: u64,
    mut append: impl FnMut(&mut Journal, u64, &Command, bool),
) {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::create(dir.path()).unwrap();
    let mut j = Journal::open(&data, 1, policy, 64 << 20).unwrap();
    let start = Instant::now();
    for i in 0..n {
        let cmd = Command::new(RequestId::NONE, T0 + i, tick(i));
        append(&mut j, i + 1, &cmd, i % 256 == 255);
    }
    drop(j); // final flush + sync
    let el = start.elapsed();
    println!("| {name} | {} | {} |", per_second(n, el), el.as_nanos() / u128::from(n));
}

/// A fresh default engine with the journal (if any) on its own thread, or on the engine thread
/// (`inline`).
fn start(journal: Option<(&DataDir, SyncPolicy)>, inline: bool) -> EngineHandle {
    start_engine(Engine::new(EngineConfig::default()).unwrap(), journal, inline)
}

/// As [`start`], for a given engine.
fn start_engine(
    engine: Engine,
    journal: Option<(&DataDir, SyncPolicy)>,
    inline: bool,
) -> EngineHandle {
    let options = StartOptions {
        input_stage: journal.map(|(d, p)| {
            Box::new(Journal::open(d, 1, p, 256 << 20).unwrap()) as Box<dyn InputStage>
        }),
        snapshots: None,
        runtime: RuntimeConfig { inline_input_stage: inline, ..RuntimeConfig::default() },
        subscribers: Vec::new(),
    };
    EngineHandle::start_with(engine, options).unwrap()
}

fn ring_throughput(n: u64) {
    println!("\n## 2. Engine throughput through the rings, {n} ticks from one producer\n");
    println!("| journal | events/s, median of 5 | vs no journal |");
    println!("|---|---|---|");
    let mut runs: Vec<(String, Option<SyncPolicy>, bool)> =
        vec![("no journal".into(), None, false)];
    for (n, p) in policies() {
        runs.push((n.into(), Some(p), false));
        runs.push((format!("{n}, on the engine thread"), Some(p), true));
    }
    flood_rows(runs, n, || Engine::new(EngineConfig::default()).unwrap(), tick, n);
}

/// The journal under the ring latency harness's mix (10 000 accounts, 100 000 positions open;
/// 90% ticks, 10% opens, closes and margin adds), sent as fast as one producer can: the issue's
/// "within 10% of the journal-less pipeline for the benchmark mix".
fn mix_throughput(n: u64) {
    const ACCOUNTS: u32 = 10_000;
    const PRELOAD: u32 = 100_000;
    println!(
        "\n## 2b. Engine throughput through the rings, {n} commands of the benchmark mix \
         ({PRELOAD} positions open, {ACCOUNTS} accounts), one producer\n"
    );
    println!("| journal | commands/s, median of 5 | vs no journal |");
    println!("|---|---|---|");
    let mut mix = harness::Mix::new(ACCOUNTS, PRELOAD);
    let commands: Vec<CommandKind> = (0..n).map(|_| mix.next_command()).collect();
    let ticks = commands.iter().filter(|k| matches!(k, CommandKind::PriceTick(_))).count();
    let interval = Some(SyncPolicy::Interval(Duration::from_millis(10)));
    let runs = vec![
        ("no journal".into(), None, false),
        ("interval:10ms".into(), interval, false),
        ("interval:10ms, on the engine thread".into(), interval, true),
    ];
    let headroom = u32::try_from(n).unwrap();
    flood_rows(
        runs,
        n,
        || harness::preloaded_engine(ACCOUNTS, PRELOAD, headroom),
        |i| commands[usize::try_from(i).unwrap()],
        ticks as u64,
    );
}

/// A row per `(name, journal policy, on the engine thread)`: `n` commands `kind(i)` sent as
/// fast as one producer can to a fresh `engine()`, then a query (its reply means every command
/// before it was applied, `ticks` of them ticks); the median of 5 runs with the min and max,
/// and its difference from the first (journal-less) row.
fn flood_rows(
    runs: Vec<(String, Option<SyncPolicy>, bool)>,
    n: u64,
    engine: impl Fn() -> Engine,
    kind: impl Fn(u64) -> CommandKind,
    ticks: u64,
) {
    let mut base = 0;
    for (name, policy, inline) in runs {
        // Five runs, median: one run is a few tens of ms and this machine is shared.
        let mut rates: Vec<u64> = (0..5)
            .map(|_| {
                let dir = tempfile::tempdir().unwrap();
                let data = DataDir::create(dir.path()).unwrap();
                let engine = engine();
                let ticks_before = engine.counters().ticks_applied;
                let mut h = start_engine(engine, policy.map(|p| (&data, p)), inline);
                let started = Instant::now();
                for i in 0..n {
                    h.send(T0 + i, kind(i));
                }
                h.call(T0 + n, CommandKind::QueryMarkets, Duration::from_secs(60)).unwrap();
                let el = started.elapsed();
                assert_eq!(h.counters().ticks_applied - ticks_before, ticks, "every tick applied");
                drop(h.shutdown().unwrap());
                per_second(n, el)
            })
            .collect();
        rates.sort_unstable();
        let rate = rates[2];
        if policy.is_none() {
            base = rate;
        }
        let pct = (i128::from(rate) - i128::from(base)) * 100 / i128::from(base.max(1));
        println!("| {name} | {rate} (min {}, max {}) | {pct:+}% |", rates[0], rates[4]);
    }
}

fn latency(calls: u64) {
    println!("\n## 3. Round trip submit -> reply, closed loop, one client ({calls} calls)\n");
    println!("| journal | p50 | p90 | p99 | p99.9 | max |");
    println!("|---|---|---|---|---|---|");
    let interval = Some(SyncPolicy::Interval(Duration::from_millis(10)));
    let runs: [(&str, Option<SyncPolicy>, bool); 5] = [
        ("no journal", None, false),
        ("interval:10ms", interval, false),
        ("interval:10ms, on the engine thread", interval, true),
        ("fsync", Some(SyncPolicy::Fsync), false),
        ("fsync, on the engine thread", Some(SyncPolicy::Fsync), true),
    ];
    for (name, policy, inline) in runs {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::create(dir.path()).unwrap();
        let mut h = start(policy.map(|p| (&data, p)), inline);
        let mut hist = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).unwrap();
        for i in 0..calls {
            let t = Instant::now();
            h.call(T0 + i, tick(i), Duration::from_secs(10)).unwrap();
            hist.record(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX)).unwrap();
        }
        drop(h.shutdown().unwrap());
        let us = |q: f64| format!("{:.1} µs", hist.value_at_quantile(q) as f64 / 1_000.0);
        println!(
            "| {name} | {} | {} | {} | {} | {:.1} µs |",
            us(0.5),
            us(0.9),
            us(0.99),
            us(0.999),
            hist.max() as f64 / 1_000.0
        );
    }
}

fn replay_rate(n: u64) {
    println!("\n## 4. Recovery: replay {n} journaled commands from scratch\n");
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::create(dir.path()).unwrap();
    {
        // A realistic mix: accounts, 90% ticks, opens and closes.
        let mut j = Journal::open(&data, 1, SyncPolicy::None, 1 << 30).unwrap();
        let mut engine = Engine::new(EngineConfig::default()).unwrap();
        let mut out = Vec::new();
        let mut seq = 0;
        let mut write = |j: &mut Journal, engine: &mut Engine, cmd: Command| {
            seq += 1;
            j.on_command(seq, &cmd, seq % 256 == 0);
            out.clear();
            engine.apply(&cmd, &mut out);
        };
        for a in 0..1_000u32 {
            let login = Login::new(&format!("r{a}@x")).unwrap();
            write(
                &mut j,
                &mut engine,
                Command::new(
                    RequestId(u64::from(a) + 1),
                    T0,
                    CommandKind::CreateAccount { login, credential: Credential::empty() },
                ),
            );
        }
        for i in 0..n - 1_000 {
            let rid = RequestId(10_000 + i);
            let kind = if i % 10 == 9 {
                CommandKind::OpenPosition(OpenRequest {
                    account: AccountId(u32::try_from(i % 1_000).unwrap() + 1),
                    market: MarketId(0),
                    side: if i % 20 == 9 { Side::Long } else { Side::Short },
                    leverage: 10,
                    size: Size::Margin(Usdc::from_whole(1)),
                    expected_price: None,
                    max_slippage_bps: 0,
                    take_profit: None,
                    stop_loss: None,
                    client_order_id: None,
                })
            } else {
                tick(i)
            };
            // Feed ticks carry no request id (no reply, not remembered), as in production.
            let rid = if matches!(kind, CommandKind::PriceTick(_)) { RequestId::NONE } else { rid };
            write(&mut j, &mut engine, Command::new(rid, T0 + i, kind));
        }
    }
    let (engine, report) =
        recover(&data, &EngineConfig::default(), Start::Scratch, TornTail::Report).unwrap();
    println!(
        "replayed {} commands in {:?}: **{} events/s** ({} open positions at the end)",
        report.replayed,
        report.elapsed,
        per_second(report.replayed, report.elapsed),
        engine.open_positions()
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let scale = if quick { 100 } else { 1 };
    println!("# hundredx durability bench{}", if quick { " (--quick)" } else { "" });
    journal_append(2_000_000 / scale);
    ring_throughput(1_000_000 / scale);
    mix_throughput(1_000_000 / scale);
    latency(5_000 / scale);
    replay_rate(1_000_000 / scale);
}
