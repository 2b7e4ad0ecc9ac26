//! Cross margin's cost (docs/DESIGN.md, "Cross margin"), on `Engine::apply` directly:
//!
//! - `cross_tick_no_trigger/{n}`: one quiet BTC tick with `n` open positions in `n / 10` cross
//!   accounts over 3 markets (10 each, both sides, leverage 2..=50, every account with trigger
//!   keys in the markets it holds). Must be flat in `n` and review nobody.
//! - `cross_band_crossing/{accounts}`: a BTC tick that leaves the band (alternating ±3 %), so
//!   every cross account holding BTC is reviewed exactly and re-keyed; the throughput is per
//!   re-keyed account.
//! - Memory per open position for the 1M-position engine (resident memory before and after
//!   building it, printed once).
//!
//! Run: `cargo bench --bench cross` (`HX_ISOLATED=1`: the same accounts and positions isolated,
//! for comparison). Figures are in docs/BENCHMARKS.md.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use engine_core::prelude::*;

const T0: u64 = 1_700_000_000_000_000_000;
const MIDS: [i64; 3] = [6_000_000, 300_000, 15_000];
const PER_ACCOUNT: u32 = 10;

struct Bench {
    engine: Engine,
    out: Vec<Output>,
    update_ids: [u64; 3],
}

impl Bench {
    fn apply(&mut self, kind: CommandKind) -> Result<ReplyData, Reason> {
        self.out.clear();
        self.engine.apply(&Command::new(RequestId(1), T0, kind), &mut self.out);
        self.out
            .iter()
            .rev()
            .find_map(|o| match o {
                Output::Reply { result, .. } => Some(*result),
                _ => None,
            })
            .expect("a reply")
    }

    fn tick(&mut self, market: usize, bid: i64) {
        self.update_ids[market] += 1;
        let tick = Tick {
            market: MarketId(u16::try_from(market).expect("3 markets")),
            bid: Price(bid),
            ask: Price(bid + 2),
            update_id: self.update_ids[market],
            exchange_time_us: 0,
        };
        self.out.clear();
        self.engine
            .apply(&Command::new(RequestId::NONE, T0, CommandKind::PriceTick(tick)), &mut self.out);
    }

    /// `n` positions in `n / 10` cross accounts of 2 000 USDC each: 10 positions of 100 USDC
    /// of margin each over the 3 markets, both sides, leverage 2..=50 (levels 8 and up: every
    /// account has keys, none near them).
    fn new(n: u32) -> Bench {
        let accounts = n / PER_ACCOUNT;
        let cfg = EngineConfig {
            max_accounts: accounts + 16,
            max_open_positions: n + 16,
            // The open lists are reserved at this: 10 a account here, not the default 100.
            max_positions_per_account: 16,
            closed_history_per_account: 16,
            request_id_window: 0,
            idempotency_keys_per_account: 0,
            demo_deposits: false,
            ..EngineConfig::default()
        };
        let mut b =
            Bench { engine: Engine::new(cfg).unwrap(), out: Vec::new(), update_ids: [0; 3] };
        for (m, mid) in MIDS.into_iter().enumerate() {
            b.tick(m, mid);
        }
        for a in 0..accounts {
            let login = Login::new(&format!("x{a}@x")).unwrap();
            let kind = CommandKind::CreateAccount { login, credential: Credential::empty() };
            let Ok(ReplyData::AccountCreated { account }) = b.apply(kind) else {
                panic!("account")
            };
            let amount = Usdc::from_whole(2_000);
            b.apply(CommandKind::Deposit { account, amount, key: None }).expect("deposit");
            if std::env::var_os("HX_ISOLATED").is_none() {
                let mode = CommandKind::SetMarginMode { account, mode: MarginMode::Cross };
                b.apply(mode).expect("mode");
            }
            for i in 0..PER_ACCOUNT {
                let open = OpenRequest::new(
                    account,
                    MarketId(u16::try_from(i % 3).unwrap()),
                    if (a + i) % 2 == 0 { Side::Long } else { Side::Short },
                    2 + (a + i) % 49,
                    Size::Margin(Usdc::from_whole(100)),
                );
                match b.apply(CommandKind::OpenPosition(open)) {
                    Ok(ReplyData::Opened(_)) => {}
                    other => panic!("open: {other:?}"),
                }
            }
        }
        assert_eq!(b.engine.open_positions(), n as usize);
        b
    }
}

/// Resident memory of this process, bytes (Linux `/proc/self/statm`).
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

fn cross_tick_no_trigger(c: &mut Criterion) {
    let mut group = c.benchmark_group("cross_tick_no_trigger");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(4));
    // The largest first, in a fresh process: its memory is measured before anything is freed.
    for n in [1_000_000u32, 100_000, 1_000] {
        let before = rss_bytes();
        let mut b = Bench::new(n);
        if n == 1_000_000 {
            let grown = rss_bytes().saturating_sub(before);
            println!(
                "memory: {n} open positions in {} cross accounts over 3 markets: +{} MiB, {} bytes per open position",
                n / PER_ACCOUNT,
                grown >> 20,
                grown / u64::from(n)
            );
        }
        let checks = b.engine.counters().cross_checks;
        let mut flip = 0i64;
        group.bench_function(n.to_string(), |bencher| {
            bencher.iter(|| {
                flip ^= 1;
                b.tick(0, black_box(MIDS[0] + flip));
            })
        });
        assert_eq!(b.engine.counters().cross_checks, checks, "a quiet tick reviews nobody");
        assert_eq!(b.engine.open_positions(), n as usize, "nothing closed");
    }
    group.finish();
}

fn cross_band_crossing(c: &mut Criterion) {
    let mut group = c.benchmark_group("cross_band_crossing");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(8));
    for accounts in [1_000u32, 10_000] {
        let mut b = Bench::new(accounts * PER_ACCOUNT);
        group.throughput(Throughput::Elements(u64::from(accounts)));
        let crossings = b.engine.counters().band_crossings;
        let (mut up, mut ticks) = (false, 0u64);
        group.bench_function(accounts.to_string(), |bencher| {
            bencher.iter(|| {
                up = !up;
                ticks += 1;
                b.tick(0, if up { MIDS[0] * 103 / 100 } else { MIDS[0] });
            })
        });
        let crossed = b.engine.counters().band_crossings - crossings;
        assert_eq!(crossed, ticks, "every tick left the band");
        assert_eq!(b.engine.counters().stop_outs, 0, "and stopped nobody out");
    }
    group.finish();
}

criterion_group!(benches, cross_tick_no_trigger, cross_band_crossing);
criterion_main!(benches);
