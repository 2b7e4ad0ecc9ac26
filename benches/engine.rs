//! Criterion micro-benchmarks of the engine's hot paths, on `Engine::apply` directly (the code the
//! engine thread runs for each ring slot):
//!
//! - `tick_no_trigger/{n}`: one price tick with `n` open positions (with TP, SL and liquidation
//!   prices indexed) of which none triggers. Must be flat in `n`.
//! - `tick_resting_orders/{n}`: one quiet tick with `n` pending limit and stop orders resting
//!   away from the price (both sides). Must be flat in `n`.
//! - `tick_trailing/{n}`: one quiet tick with `n` open positions each holding a trailing stop
//!   (set while the price fell, so their peaks form ~n/100 groups), alternating a new best bid
//!   for the top group with a step back. Must be flat in `n`.
//! - `open_close`: open a position and close it, with 100k others open.
//! - `netting`: a netting account's addition and reduction, and a reversal there and back.
//! - `edit_position`: set a position's take-profit (alternating two values) / add margin to it,
//!   with 100k others open.
//! - `liquidation_cascade`: one tick that liquidates 10k positions; throughput is per liquidation,
//!   each including its `PositionClosed` event.
//!
//! Run: `cargo bench --bench engine` (`HX_MC_OFF=1` runs with margin calls off, to tell their
//! share). Figures are in docs/BENCHMARKS.md.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use engine_core::prelude::*;

const T0: u64 = 1_700_000_000_000_000_000;
const BTC: MarketId = MarketId(0);
const MID: i64 = 6_000_000; // 60 000.00

struct Bench {
    engine: Engine,
    out: Vec<Output>,
    update_id: u64,
    rid: u64,
}

impl Bench {
    fn new(max_positions: u32) -> Bench {
        Bench::with_sources(max_positions, 0)
    }

    /// BTC made from `sources` price sources (0: plain ticks). The first price is a tick either
    /// way, from every source.
    fn with_sources(max_positions: u32, sources: u8) -> Bench {
        Bench::with_config(max_positions, sources, Vec::new())
    }

    /// As [`Bench::with_sources`], with client `groups`: each new bench account is moved to the
    /// next group in turn (by an operator account, `bench-ops@x`).
    fn with_config(
        max_positions: u32,
        sources: u8,
        groups: Vec<engine_core::config::GroupConfig>,
    ) -> Bench {
        Bench::with_market(max_positions, (sources, groups), |_| {})
    }

    /// As [`Bench::with_config`], with BTC's configuration changed by `tune` first.
    fn with_market(
        max_positions: u32,
        (sources, groups): (u8, Vec<engine_core::config::GroupConfig>),
        tune: impl FnOnce(&mut engine_core::config::MarketConfig),
    ) -> Bench {
        let mut cfg = EngineConfig {
            max_open_positions: max_positions + 16,
            max_pending_orders: max_positions + 16,
            max_orders_per_account: 10_000,
            max_accounts: 20_000,
            closed_history_per_account: 64,
            margin_call_level: Ppm(std::env::var("HX_MC_OFF").map_or(1_500_000, |_| 0)),
            ..EngineConfig::default()
        };
        cfg.markets[0].sources = sources;
        tune(&mut cfg.markets[0]);
        cfg.groups = groups;
        let mut b = Bench {
            engine: Engine::new(cfg).unwrap(),
            out: Vec::with_capacity(64),
            update_id: 0,
            rid: 0,
        };
        if sources == 0 {
            b.tick(MID, MID);
        }
        for s in 0..sources {
            b.quote(s, MID, MID);
        }
        b
    }

    /// Source `source` quotes `bid`/`ask` (its update id: the bench's, increasing).
    fn quote(&mut self, source: u8, bid: i64, ask: i64) {
        self.update_id += 1;
        let tick = Tick {
            market: BTC,
            bid: Price(bid),
            ask: Price(ask),
            update_id: self.update_id,
            exchange_time_us: 0,
        };
        let kind = CommandKind::SourceQuote { source: SourceId(source), tick };
        self.out.clear();
        self.engine.apply(&Command::new(RequestId::NONE, T0, kind), &mut self.out);
    }

    fn apply(&mut self, kind: CommandKind) -> Option<Result<ReplyData, Reason>> {
        self.out.clear();
        self.rid += 1;
        self.engine.apply(&Command::new(RequestId(self.rid), T0, kind), &mut self.out);
        self.out.iter().rev().find_map(|o| match o {
            Output::Reply { result, .. } => Some(*result),
            _ => None,
        })
    }

    fn tick(&mut self, bid: i64, ask: i64) {
        self.update_id += 1;
        let tick = Tick {
            market: BTC,
            bid: Price(bid),
            ask: Price(ask),
            update_id: self.update_id,
            exchange_time_us: 0,
        };
        self.out.clear();
        self.engine
            .apply(&Command::new(RequestId::NONE, T0, CommandKind::PriceTick(tick)), &mut self.out);
    }

    fn account(&mut self, i: u32) -> AccountId {
        let login = Login::new(&format!("bench{i}@x")).unwrap();
        let kind = CommandKind::CreateAccount { login, credential: Credential::empty() };
        let Some(Ok(ReplyData::AccountCreated { account })) = self.apply(kind) else {
            panic!("account")
        };
        // 10^7 USDC: 10 000 orders or 100 positions of ~150 USDC each, and 10 000 accounts stay
        // within the money ceiling (10^12 USDC all accounts together).
        let deposit =
            CommandKind::Deposit { account, amount: Usdc::from_whole(10_000_000), key: None };
        let Some(Ok(_)) = self.apply(deposit) else { panic!("deposit") };
        let groups = self.engine.config().groups.len();
        if groups > 1 {
            let ops = Login::new("bench-ops@x").unwrap();
            if i == 0 {
                let kind =
                    CommandKind::CreateAccount { login: ops, credential: Credential::empty() };
                let Some(Ok(_)) = self.apply(kind) else { panic!("operator") };
                let Some(Ok(_)) = self.apply(CommandKind::SetRole { login: ops, admin: true })
                else {
                    panic!("role")
                };
            }
            let by = AccountId(2); // the operator: created right after the first account
            let group = u16::try_from(i as usize % groups).unwrap_or(0);
            let kind = CommandKind::AdminSetGroup { by, login, group };
            let Some(Ok(ReplyData::Group { .. })) = self.apply(kind) else { panic!("group") };
        }
        account
    }

    /// `n` positions spread over leverages 2..=50, both sides, with TP and SL far from the mid:
    /// every index is populated and nothing triggers near 60 000.
    fn populate(&mut self, n: u32, leverage: impl Fn(u32) -> u32, far_triggers: bool) {
        let mut account = self.account(0);
        for i in 0..n {
            // Accounts hold the default limit of 100 positions each.
            if i > 0 && i % 100 == 0 {
                account = self.account(i / 100);
            }
            let side = if i % 2 == 0 { Side::Long } else { Side::Short };
            let spread = i64::from(i % 1_000);
            let (tp, sl) = match side {
                Side::Long => (MID * 3 / 2 + spread, MID / 2 - spread),
                Side::Short => (MID / 2 - spread, MID * 3 / 2 + spread),
            };
            let req = OpenRequest {
                account,
                market: BTC,
                side,
                leverage: leverage(i),
                size: Size::Margin(Usdc::from_whole(100 + i64::from(i % 50))),
                expected_price: None,
                max_slippage_bps: 0,
                take_profit: far_triggers.then_some(Price(tp)),
                stop_loss: far_triggers.then_some(Price(sl)),
                client_order_id: None,
            };
            match self.apply(CommandKind::OpenPosition(req)) {
                Some(Ok(ReplyData::Opened(_))) => {}
                other => panic!("populate: {other:?}"),
            }
        }
        assert_eq!(self.engine.open_positions(), n as usize);
    }
}

fn tick_no_trigger(c: &mut Criterion) {
    let mut group = c.benchmark_group("tick_no_trigger");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(4));
    for n in [1_000u32, 100_000, 1_000_000] {
        let mut b = Bench::new(n);
        b.populate(n, |i| 2 + i % 49, true);
        let mut flip = 0i64;
        group.bench_function(n.to_string(), |bencher| {
            bencher.iter(|| {
                flip ^= 1;
                b.tick(black_box(MID + flip), MID + flip);
            })
        });
        assert_eq!(b.engine.open_positions(), n as usize, "nothing triggered");
    }
    group.finish();
}

fn tick_resting_orders(c: &mut Criterion) {
    let mut group = c.benchmark_group("tick_resting_orders");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(4));
    for n in [1_000u32, 100_000, 1_000_000] {
        let mut b = Bench::new(n);
        let mut account = b.account(0);
        for i in 0..n {
            if i > 0 && i % 10_000 == 0 {
                account = b.account(i / 10_000);
            }
            // Long limits below, long stops above, short limits above, short stops below: all
            // at least 5 % away, spread over 1 000 prices.
            let away = MID / 20 + i64::from(i % 1_000);
            let (side, kind, price) = match i % 4 {
                0 => (Side::Long, OrderKind::Limit, MID - away),
                1 => (Side::Long, OrderKind::Stop, MID + away),
                2 => (Side::Short, OrderKind::Limit, MID + away),
                _ => (Side::Short, OrderKind::Stop, MID - away),
            };
            let req = OrderRequest {
                account,
                market: BTC,
                side,
                kind,
                price: Price(price),
                leverage: 10,
                size: Size::Margin(Usdc::from_whole(10)),
                take_profit: None,
                stop_loss: None,
                expires_at_ns: None,
                client_order_id: None,
            };
            match b.apply(CommandKind::PlaceOrder(req)) {
                Some(Ok(ReplyData::Order(_))) => {}
                other => panic!("place: {other:?}"),
            }
        }
        let mut flip = 0i64;
        group.bench_function(n.to_string(), |bencher| {
            bencher.iter(|| {
                flip ^= 1;
                b.tick(black_box(MID + flip), MID + flip);
            })
        });
        assert_eq!(b.engine.snapshot().orders.len(), n as usize, "nothing filled");
    }
    group.finish();
}

fn tick_trailing(c: &mut Criterion) {
    let mut group = c.benchmark_group("tick_trailing");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(4));
    for n in [1_000u32, 100_000, 1_000_000] {
        let mut b = Bench::new(n);
        b.populate(n, |i| 2 + i % 19, false);
        // Position i + 1 belongs to account i / 100 + 1 (populate's blocks of 100). The bid
        // steps down a tick every 100 stops: each block trails from a lower peak.
        let mut bid = MID;
        for i in 0..n {
            if i % 100 == 0 {
                bid -= 1;
                b.tick(bid, bid + 10);
            }
            let distance = if i % 2 == 0 {
                TrailDistance::Price(Price(MID / 20 + i64::from(i % 1_000)))
            } else {
                TrailDistance::Bps(500 + i % 1_000)
            };
            let kind = CommandKind::SetTrailingStop {
                account: AccountId(i / 100 + 1),
                position: PositionId(u64::from(i) + 1),
                distance: Some(distance),
                key: None,
            };
            match b.apply(kind) {
                Some(Ok(ReplyData::Position(_))) => {}
                other => panic!("trail: {other:?}"),
            }
        }
        let mut flip = 0i64;
        group.bench_function(n.to_string(), |bencher| {
            bencher.iter(|| {
                flip ^= 1;
                b.tick(black_box(bid + flip), bid + 10 + flip);
            })
        });
        assert_eq!(b.engine.open_positions(), n as usize, "nothing triggered");
    }
    group.finish();
}

/// 100k positions open (with TP, SL and liquidation prices indexed), a funded trader, and the
/// open request (with TP and SL) the trader's benchmarks send.
fn trader_among_100k() -> (Bench, AccountId, OpenRequest) {
    populated_trader(Bench::new(100_000))
}

/// `b` with 100k positions open and a funded trader, and the trader's open request.
fn populated_trader(mut b: Bench) -> (Bench, AccountId, OpenRequest) {
    b.populate(100_000, |i| 2 + i % 49, true);
    let trader = b.account(u32::MAX);
    let req = OpenRequest {
        account: trader,
        market: BTC,
        side: Side::Long,
        leverage: 20,
        size: Size::Margin(Usdc::from_whole(250)),
        expected_price: Some(Price(MID)),
        max_slippage_bps: 10,
        take_profit: Some(Price(MID * 2)),
        stop_loss: Some(Price(MID / 2)),
        client_order_id: None,
    };
    (b, trader, req)
}

/// One open of `req` and the close of what it opened.
fn open_then_close(b: &mut Bench, trader: AccountId, req: OpenRequest) {
    let Some(Ok(ReplyData::Opened(p))) = b.apply(CommandKind::OpenPosition(black_box(req))) else {
        panic!("open")
    };
    b.apply(CommandKind::ClosePosition {
        account: trader,
        position: p.id,
        quantity: None,
        key: None,
    });
}

fn open_close(c: &mut Criterion) {
    let mut group = c.benchmark_group("open_close");
    group.throughput(Throughput::Elements(1));
    let (mut b, trader, req) = trader_among_100k();
    group.bench_function("open+close with 100k open", |bencher| {
        bencher.iter(|| open_then_close(&mut b, trader, req))
    });
    group.finish();
}

/// Edits of one position's triggers and margin with 100k others open: a TP/SL edit moves only its
/// own index keys, an added margin the liquidation and margin-call keys.
fn edit_position(c: &mut Criterion) {
    let mut group = c.benchmark_group("edit_position");
    group.throughput(Throughput::Elements(1));
    let (mut b, trader, req) = trader_among_100k();
    let Some(Ok(ReplyData::Opened(p))) = b.apply(CommandKind::OpenPosition(req)) else {
        panic!("open")
    };
    let set = |tp: i64| CommandKind::SetTriggers {
        account: trader,
        position: p.id,
        take_profit: Some(Price(tp)),
        stop_loss: Some(Price(MID / 2)),
        key: None,
    };
    assert!(matches!(b.apply(set(MID * 3)), Some(Ok(_))), "the edit is accepted");
    let add =
        CommandKind::AddMargin { account: trader, position: p.id, amount: Usdc(1), key: None };
    assert!(matches!(b.apply(add), Some(Ok(_))), "the margin is added");
    let mut flip = false;
    group.bench_function("set take-profit with 100k open", |bencher| {
        bencher.iter(|| {
            flip = !flip;
            b.apply(set(black_box(if flip { MID * 2 } else { MID * 3 })));
        })
    });
    group.bench_function("add margin with 100k open", |bencher| {
        bencher.iter(|| b.apply(black_box(add)))
    });
    group.finish();
}

fn liquidation_cascade(c: &mut Criterion) {
    const N: u32 = 10_000;
    let mut group = c.benchmark_group("liquidation_cascade");
    group.throughput(Throughput::Elements(u64::from(N)));
    group.sample_size(20);
    let mut b = Bench::new(N);
    b.populate(N, |_| 50, false); // longs liq ~59 100, shorts ~60 900
    let template = b.engine;
    group.bench_function("10k positions in one tick", |bencher| {
        bencher.iter_batched(
            || (template.clone(), Vec::with_capacity(2 * N as usize + 8)),
            |(mut engine, mut out)| {
                // The bid falls through every long's liquidation price, the ask rises through
                // every short's: one tick liquidates all 10k.
                let tick = Tick {
                    market: BTC,
                    bid: Price(MID / 2),
                    ask: Price(MID * 2),
                    update_id: 99,
                    exchange_time_us: 0,
                };
                engine.apply(
                    &Command::new(RequestId::NONE, T0, CommandKind::PriceTick(tick)),
                    &mut out,
                );
                debug_assert_eq!(engine.open_positions(), 0);
                (engine, out)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

/// What the engine thread pays per snapshot: a copy of its state (serializing and writing it
/// happen on the snapshot writer's thread). Before the maps' copies were sized to their
/// entries it copied the whole reservation: 310–530 ms for an empty engine.
fn snapshot_copy(c: &mut Criterion) {
    let mut group = c.benchmark_group("snapshot_copy");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(4));
    for n in [0u32, 100_000] {
        // Reserved for a million positions, like a production engine.
        let mut b = Bench::new(1_000_000);
        b.populate(n, |i| 2 + i % 49, true);
        group.bench_function(n.to_string(), |bencher| {
            bencher.iter_batched(|| (), |()| black_box(b.engine.clone()), BatchSize::PerIteration)
        });
    }
    group.finish();
}

/// One source's quote into a market of five sources with 100k open positions: kept, the index
/// made again (medians over five, on the stack), and, when the index moves, the quiet tick.
/// The sources take turns, each alternating between two prices a tick apart: the median
/// moves about every other quote.
fn source_quote(c: &mut Criterion) {
    let mut group = c.benchmark_group("source_quote");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(4));
    let mut b = Bench::with_sources(100_000, 5);
    b.populate(100_000, |i| 2 + i % 49, true);
    let mut turn = 0u64;
    group.bench_function("5 sources, 100k open", |bencher| {
        bencher.iter(|| {
            turn += 1;
            let flip = i64::try_from((turn / 5) % 2).unwrap_or(0);
            let source = u8::try_from(turn % 5).unwrap_or(0);
            b.quote(source, black_box(MID + flip), MID + flip);
        })
    });
    assert_eq!(b.engine.open_positions(), 100_000, "nothing triggered");
    group.finish();
}

/// The quiet tick with 1M positions whose accounts are spread over 10 client groups, each
/// with its own markup and commission: group terms are charged on fills only, trigger keys do
/// not depend on them, so the tick costs what it does without groups.
fn tick_no_trigger_groups(c: &mut Criterion) {
    use engine_core::config::{GroupConfig, GroupMarket};
    let mut group = c.benchmark_group("tick_no_trigger_groups");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(4));
    let n = 1_000_000u32;
    let groups: Vec<GroupConfig> = (0..10)
        .map(|g| GroupConfig {
            name: format!("g{g}"),
            swap_free: false,
            margin_call_level: None,
            stop_out_level: None,
            markets: vec![GroupMarket {
                symbol: "BTC_USDC".into(),
                markup_ticks: 10 * g,
                commission_rate: Ppm(50 * g),
                ..GroupMarket::default()
            }],
        })
        .collect();
    let mut b = Bench::with_config(n, 0, groups);
    b.populate(n, |i| 2 + i % 49, true);
    let mut flip = 0i64;
    group.bench_function("1000000 positions, 10 groups", |bencher| {
        bencher.iter(|| {
            flip ^= 1;
            b.tick(black_box(MID + flip), MID + flip);
        })
    });
    assert_eq!(b.engine.open_positions(), n as usize, "nothing triggered");
    group.finish();
}

/// The open + close of a trader whose client group charges every way (markup in ticks and bps,
/// commission as a rate and per lot) on a market with open-interest and skew caps and three
/// leverage brackets, 100k open: what a broker's fill costs beside the plain `open_close`.
fn open_close_group(c: &mut Criterion) {
    use engine_core::config::{GroupConfig, GroupMarket};
    let mut group = c.benchmark_group("open_close_group");
    group.throughput(Throughput::Elements(1));
    let raw = GroupMarket {
        symbol: "BTC_USDC".into(),
        markup_ticks: 10,
        markup_bps: 1,
        commission_rate: Ppm(50),
        commission_per_lot: Usdc::from_whole(1),
        ..GroupMarket::default()
    };
    let groups = vec![
        GroupConfig { name: "default".into(), ..GroupConfig::default() },
        GroupConfig { name: "raw".into(), markets: vec![raw], ..GroupConfig::default() },
    ];
    let b = Bench::with_market(100_000, (0, groups), |m| {
        use engine_core::config::Bracket;
        m.open_interest_cap_steps = i64::MAX / 4;
        m.skew_cap_steps = i64::MAX / 4;
        // Three brackets; the trader's 5 000 of notional falls in the second.
        let bracket = |cap: Option<i64>, max_leverage, rate| Bracket {
            notional_cap: cap.map(Usdc::from_whole),
            max_leverage,
            maintenance_margin_rate: Ppm(rate),
        };
        // HX_NO_BRACKETS=1 measures the same without them (for attribution).
        if std::env::var_os("HX_NO_BRACKETS").is_none() {
            m.brackets = vec![
                bracket(Some(1_000), m.max_leverage, m.maintenance_margin_rate.0),
                bracket(Some(100_000), 50, 10_000),
                bracket(None, 20, 25_000),
            ];
        }
    });
    // The trader is account u32::MAX: u32::MAX % 2, the raw group.
    let (mut b, trader, req) = populated_trader(b);
    let revenue = b.engine.summary().commission_revenue;
    group.bench_function("open+close, charging group, caps, brackets, 100k open", |bencher| {
        bencher.iter(|| open_then_close(&mut b, trader, req));
        // Here, not after the group: a filter that skips this bench skips the check too.
        assert!(b.engine.summary().commission_revenue > revenue, "the group was charged");
    });
    group.finish();
}

/// A netting account's orders with 100k others open: an addition then a reduction of the same
/// size (the position goes back to where it was), and a reversal there and back. Beside
/// `open_close`, what netting costs on top of an open and a close.
fn netting(c: &mut Criterion) {
    let mut group = c.benchmark_group("netting");
    group.throughput(Throughput::Elements(1));
    let (mut b, trader, req) = trader_among_100k();
    let mode = CommandKind::SetPositionMode { account: trader, mode: PositionMode::Netting };
    assert!(matches!(b.apply(mode), Some(Ok(ReplyData::PositionMode { .. }))));
    let q = |n: i64| Size::Quantity(Qty(n * 1_000));
    let order = |side, size| OpenRequest {
        side,
        size,
        expected_price: None,
        take_profit: None,
        stop_loss: None,
        ..req
    };
    let Some(Ok(ReplyData::Opened(p))) =
        b.apply(CommandKind::OpenPosition(order(Side::Long, q(2))))
    else {
        panic!("open")
    };
    group.bench_function("add+reduce, 100k open", |bencher| {
        bencher.iter(|| {
            b.apply(CommandKind::OpenPosition(black_box(order(Side::Long, q(1)))));
            b.apply(CommandKind::OpenPosition(black_box(order(Side::Short, q(1)))));
        })
    });
    let Some(Ok(ReplyData::Position(v))) =
        b.apply(CommandKind::QueryPosition { account: trader, position: p.id })
    else {
        panic!("query")
    };
    assert_eq!(v.quantity, Qty(2_000), "every addition was reduced again");
    group.bench_function("reverse there and back, 100k open", |bencher| {
        bencher.iter(|| {
            b.apply(CommandKind::OpenPosition(black_box(order(Side::Short, q(4)))));
            b.apply(CommandKind::OpenPosition(black_box(order(Side::Long, q(4)))));
        })
    });
    group.finish();
}

/// Stress replay (docs/DESIGN.md, "Stress replay"): a copy of a 100k-position book run
/// through a 100-step crash of BTC by 20 % (the 2x..50x spread of leverages liquidates about
/// two thirds of the longs on the way). The copy is restored from a snapshot outside the
/// timing: what is timed is the engine applying the path and the report being gathered.
fn stress_replay(c: &mut Criterion) {
    let mut group = c.benchmark_group("stress_replay");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    let mut b = Bench::new(100_000);
    b.populate(100_000, |i| 2 + i % 49, false);
    let snap = b.engine.snapshot();
    let cfg = b.engine.config().clone();
    let now = hundredx::stress::markets(&mut b.engine);
    let path = hundredx::stress::crash(&now, &[(BTC, -200_000)], 100);
    group.throughput(Throughput::Elements(path.len() as u64));
    group.bench_function("100k positions, 100-step crash of 20 %", |bencher| {
        bencher.iter_batched(
            || Engine::restore(cfg.clone(), &snap).unwrap(),
            |engine| {
                let (report, _) = hundredx::stress::run(engine, black_box(&path));
                assert!(!report.liquidated.is_empty());
                report
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(
    benches,
    stress_replay,
    netting,
    open_close_group,
    source_quote,
    tick_no_trigger_groups,
    snapshot_copy,
    tick_no_trigger,
    tick_resting_orders,
    tick_trailing,
    open_close,
    edit_position,
    liquidation_cascade
);
criterion_main!(benches);
