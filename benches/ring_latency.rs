//! Open-loop latency and throughput of the engine behind the disruptor rings, with crossbeam and
//! std mpsc baselines measured in the same run, plus memory per open position. Writes the tables
//! to stdout and a percentile plot to `docs/latency.svg`.
//!
//! Run: `cargo bench --bench ring_latency` (several minutes; `-- --quick` runs in seconds;
//! `-- --memory` measures memory per open position only; `-- --disruptor` skips the baselines;
//! `-- --no-hiccup` runs without the hiccup meter, to see what the meter itself costs;
//! `-- --ring-slots 4096` sizes the rings).
//! See `support/harness.rs` for the method.

#![allow(clippy::cast_precision_loss, clippy::float_arithmetic, clippy::cast_possible_truncation)]

#[path = "support/harness.rs"]
#[allow(dead_code)] // shared with tests/bench_harness.rs, which reads what this does not
mod harness;

use harness::{HarnessConfig, Pipeline, RateResult, preloaded_engine, rss_bytes, run};
use plotters::prelude::*;

const QUANTILES: [(f64, &str); 6] =
    [(0.5, "p50"), (0.9, "p90"), (0.99, "p99"), (0.999, "p99.9"), (0.9999, "p99.99"), (1.0, "max")];

fn fmt_ns(ns: u64) -> String {
    if ns < 10_000 {
        format!("{ns} ns")
    } else if ns < 10_000_000 {
        format!("{:.1} µs", ns as f64 / 1e3)
    } else {
        format!("{:.1} ms", ns as f64 / 1e6)
    }
}

fn table(results: &[RateResult]) {
    println!(
        "| pipeline | offered/s | achieved/s | p50 | p90 | p99 | p99.9 | p99.99 | max | liquidations |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in results {
        let q: Vec<String> = QUANTILES
            .iter()
            .map(|(q, _)| {
                fmt_ns(if *q >= 1.0 { r.hist.max() } else { r.hist.value_at_quantile(*q) })
            })
            .collect();
        let sat = if r.sustained() { "" } else { " (saturated)" };
        println!(
            "| {} | {} | {}{sat} | {} | {} | {} | {} | {} | {} | {} |",
            r.pipeline.name(),
            r.offered,
            r.achieved,
            q[0],
            q[1],
            q[2],
            q[3],
            q[4],
            q[5],
            r.liquidations
        );
    }
}

fn q_ns(h: &hdrhistogram::Histogram<u64>, q: f64) -> u64 {
    if h.is_empty() {
        0
    } else if q >= 1.0 {
        h.max()
    } else {
        h.value_at_quantile(q)
    }
}

fn per_s(n: u64, r: &RateResult) -> f64 {
    n as f64 / r.measured.as_secs_f64().max(1e-9)
}

/// Where each run's time went: the engine's own service time (measured inside the engine
/// thread), the liquidation cascades apart, the platform's hiccups per core and the pinned
/// threads' preemptions and run-queue wait.
fn attribution(results: &[RateResult]) {
    println!(
        "| pipeline | offered/s | engine's own p50 | p99 | p99.9 | p99.99 | max | cascades: n, largest (positions, time) | hiccup core 0 p99 / p99.99 / max | hiccup core 1 p99 / p99.99 / max | engine thread: preempted/s, run-queue wait | generator: preempted/s, run-queue wait |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in results {
        let e = &r.engine;
        let s = |q| fmt_ns(q_ns(&e.service, q));
        let hic = |k: usize| {
            r.hiccups.get(k).map_or("-".to_owned(), |h| {
                format!(
                    "{} / {} / {}",
                    fmt_ns(q_ns(h, 0.99)),
                    fmt_ns(q_ns(h, 0.9999)),
                    fmt_ns(q_ns(h, 1.0))
                )
            })
        };
        let sched = |x: &harness::Sched| {
            format!("{:.0}/s, {:.2} ms/s", per_s(x.preemptions, r), per_s(x.wait_ns, r) / 1e6)
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {}, {} in {} | {} | {} | {} | {} |",
            r.pipeline.name(),
            r.offered,
            s(0.5),
            s(0.99),
            s(0.999),
            s(0.9999),
            s(1.0),
            e.cascades.len(),
            e.cascade_size_max,
            fmt_ns(e.cascade_size_max_ns),
            hic(0),
            hic(1),
            sched(&r.engine_sched),
            sched(&r.generator_sched),
        );
    }
}

/// The engine's own service time by command kind (cascades apart).
fn by_kind(results: &[RateResult]) {
    println!(
        "| pipeline | offered/s | core 0 <-> 1 round trip, before / after | command | count | p50 | p99 | p99.9 | p99.99 | max |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in results.iter().filter(|r| r.pipeline == Pipeline::Disruptor) {
        let trip = r.round_trip_ns.map_or("-".to_owned(), |(a, b)| format!("{a} / {b} ns"));
        for (h, kind) in r.engine.by_kind.iter().zip(harness::KINDS).filter(|(h, _)| !h.is_empty())
        {
            println!(
                "| {} | {} | {trip} | {kind} | {} | {} | {} | {} | {} | {} |",
                r.pipeline.name(),
                r.offered,
                h.len(),
                fmt_ns(q_ns(h, 0.5)),
                fmt_ns(q_ns(h, 0.99)),
                fmt_ns(q_ns(h, 0.999)),
                fmt_ns(q_ns(h, 0.9999)),
                fmt_ns(q_ns(h, 1.0)),
            );
        }
    }
}

/// With `--split-hand-offs`: the two hand-offs of every command beside `apply` alone.
fn hand_offs(results: &[RateResult]) {
    println!(
        "| pipeline | offered/s | hand-in p50 / p99 | apply p50 / p99 (outside cascades) | hand-out p50 / p99 |"
    );
    println!("|---|---|---|---|---|");
    for r in results {
        let Some(h) = &r.engine.hand_offs else { continue };
        let two = |x: &hdrhistogram::Histogram<u64>| {
            format!("{} / {}", fmt_ns(q_ns(x, 0.5)), fmt_ns(q_ns(x, 0.99)))
        };
        println!(
            "| {} | {} | {} | {} | {} |",
            r.pipeline.name(),
            r.offered,
            two(&h.hand_in),
            two(&r.engine.service),
            two(&h.hand_out)
        );
    }
}

/// Per percentile, for each sustained run: end to end, the engine's own share and the
/// platform's (the larger core hiccup at that percentile of time); what is left is transport
/// and queueing behind whichever stalled.
fn shares(results: &[RateResult]) {
    println!(
        "| pipeline | offered/s | percentile | end to end | engine's own | share | platform hiccup | share |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in results.iter().filter(|r| r.sustained()) {
        for (q, name) in &QUANTILES[1..] {
            let l = q_ns(&r.hist, *q).max(1);
            let e = q_ns(&r.engine.service, *q);
            let h = r.hiccups.iter().map(|h| q_ns(h, *q)).max().unwrap_or(0);
            println!(
                "| {} | {} | {name} | {} | {} | {:.0}% | {} | {:.0}% |",
                r.pipeline.name(),
                r.offered,
                fmt_ns(l),
                fmt_ns(e),
                (e as f64 * 100.0 / l as f64).min(100.0),
                fmt_ns(h),
                (h as f64 * 100.0 / l as f64).min(100.0),
            );
        }
    }
}

/// The highest offered rate a pipeline sustained (all replies, >= 90% achieved).
fn knee(results: &[RateResult], p: Pipeline) -> Option<u64> {
    results.iter().filter(|r| r.pipeline == p && r.sustained()).map(|r| r.offered).max()
}

fn plot(results: &[RateResult], path: &str) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let x = |q: f64| -(1.0 - q.min(0.99999)).log10();
    let max_us = results
        .iter()
        .filter(|r| r.sustained())
        .map(|r| r.hist.max() as f64 / 1e3)
        .fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "hundredx: latency by percentile (open loop, from planned send time)",
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.25f64..4.2f64, (0.05f64..max_us * 1.5).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (µs, log)")
        .x_labels(5)
        .x_label_formatter(&|v| match (v * 10.0).round() as i64 {
            3 => "50%".into(),
            10 => "90%".into(),
            20 => "99%".into(),
            30 => "99.9%".into(),
            40 => "99.99%".into(),
            _ => String::new(),
        })
        .draw()?;
    for (k, r) in results.iter().filter(|r| r.sustained()).enumerate() {
        let color = Palette99::pick(k).to_rgba();
        let points: Vec<(f64, f64)> = [0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999]
            .iter()
            .map(|q| (x(*q), (r.hist.value_at_quantile(*q) as f64 / 1e3).max(0.05)))
            .collect();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(format!("{} {}k/s", r.pipeline.name(), r.offered / 1000))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
    root.present()?;
    Ok(())
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    if std::env::args().any(|a| a == "--memory") {
        memory(quick);
        return;
    }
    let mut cfg = if quick { HarnessConfig::quick() } else { HarnessConfig::full() };
    // `--no-hiccup` measures the observer effect of the meter; `--disruptor` skips the baselines.
    cfg.hiccup = !std::env::args().any(|a| a == "--no-hiccup");
    // `--split-hand-offs`: the engine's own time without the commands' and replies' trips
    // between the cores (timed apart; see `harness::HandOffs`).
    cfg.split_hand_offs = std::env::args().any(|a| a == "--split-hand-offs");
    if std::env::args().any(|a| a == "--disruptor") {
        cfg.pipelines = vec![Pipeline::Disruptor];
    }
    // `--ring-slots N`: the command ring's size (the result ring's is twice that).
    let args: Vec<String> = std::env::args().collect();
    if let Some(n) = args.windows(2).find(|w| w[0] == "--ring-slots").map(|w| &w[1]) {
        cfg.ring_slots = n.parse().expect("--ring-slots takes a power of two");
    }
    println!(
        "# Ring latency: {} accounts, {} preloaded positions, {:?} measured + {:?} warm-up per rate{}\n",
        cfg.accounts,
        cfg.preload,
        cfg.run,
        cfg.warmup,
        if cfg.pin { ", engine pinned to core 1, generator to core 0, busy-spin" } else { "" }
    );
    println!(
        "Hiccup meter: {}; rings: {} command slots, {} result slots\n",
        if cfg.hiccup { "on (a thread per core sleeping 1 ms)" } else { "off" },
        cfg.ring_slots,
        cfg.ring_slots * 2
    );
    let results = run(&cfg, |line| eprintln!("{line}"));
    table(&results);
    println!("\n## Where the time goes\n");
    let what = if cfg.split_hand_offs {
        "`Engine::apply` alone (the command copied out of its slot before, the outputs moved into the out-ring after: the hand-offs, timed apart below)"
    } else {
        "`Engine::apply` timed inside the engine thread, the replies' hand-off into the out-ring included"
    };
    println!(
        "Engine's own: {what}, commands that liquidated apart (one clock-read pair costs {} and is included).\n",
        fmt_ns(results.first().map_or(0, |r| r.engine.clock_ns))
    );
    attribution(&results);
    println!();
    by_kind(&results);
    println!();
    if cfg.split_hand_offs {
        hand_offs(&results);
        println!();
    }
    shares(&results);
    println!();
    let d = knee(&results, Pipeline::Disruptor);
    let c = knee(&results, Pipeline::Crossbeam);
    let m = knee(&results, Pipeline::Mpsc);
    println!("Highest sustained offered rate: disruptor {d:?}, crossbeam {c:?}, std mpsc {m:?}");
    if let (Some(d), Some(c)) = (d, c) {
        println!(
            "disruptor / crossbeam: {:.2}x (at the resolution of the rate sweep)",
            d as f64 / c as f64
        );
    }
    let svg = if quick { "target/latency-quick.svg" } else { "docs/latency.svg" };
    match plot(&results, svg) {
        Ok(()) => println!("plot: {svg}"),
        Err(e) => eprintln!("plot failed: {e}"),
    }

    memory(quick);
}

/// Memory per open position: RSS before and after opening them.
fn memory(quick: bool) {
    let n: u32 = if quick { 20_000 } else { 1_000_000 };
    let before = rss_bytes().unwrap_or(0);
    let engine = preloaded_engine(10_000, n, 0);
    let after = rss_bytes().unwrap_or(0);
    println!(
        "\nMemory: {} open positions in 10k accounts: RSS {} MiB (+{} MiB for the engine), {} bytes per open position (slab, trigger indexes, open lists, accounts)",
        engine.open_positions(),
        after >> 20,
        (after.saturating_sub(before)) >> 20,
        after.saturating_sub(before) / u64::from(n)
    );
}
