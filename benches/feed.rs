//! Backpack bookTicker frame parsing (criterion): frames per second on one core, per-frame
//! latency. The feed must never be the bottleneck (target >= 1M frames/s).
//!
//! Run: `cargo bench --bench feed`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use engine_core::config::MarketConfig;
use price_feed::frame::{Dedup, Frame, Markets};
use price_feed::venues::backpack::parse::parse_frame;

fn parse(c: &mut Criterion) {
    let markets = Markets::new(&MarketConfig::defaults());
    let frames: Vec<&str> =
        include_str!("../adapters/price-feed/test_data/backpack/book_ticker.jsonl")
            .lines()
            .collect();
    let mut group = c.benchmark_group("feed_parse");
    group.throughput(Throughput::Elements(1));
    let mut i = 0;
    group.bench_function("bookTicker frame -> Tick", |b| {
        b.iter(|| {
            i = (i + 1) % frames.len();
            black_box(parse_frame(black_box(frames[i]), &markets)).ok()
        })
    });
    let mut dedup = Dedup::default();
    let mut u = 0u64;
    group.bench_function("parse + dedup", |b| {
        b.iter(|| {
            u += 1;
            if let Ok(Frame::Tick(mut t)) = parse_frame(black_box(frames[0]), &markets) {
                t.update_id = u;
                black_box(dedup.accept(&t));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
