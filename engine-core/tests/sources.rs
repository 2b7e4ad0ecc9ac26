//! The index price from several sources, through the engine (docs/DESIGN.md, "Index price"):
//! a wick on one venue liquidates nobody, two venues agreeing carry the index, silence guards
//! the market and agreement reopens it, and replay or a snapshot give the same state hash.

mod common;

use common::*;
use engine_core::prelude::*;

/// BTC with three sources (two must agree), 1 s freshness, 2 s quiet period.
fn config() -> EngineConfig {
    let mut cfg = EngineConfig::default();
    let m = &mut cfg.markets[0];
    m.sources = 3;
    m.min_sources = 2;
    m.max_source_age_ns = 1_000_000_000;
    m.guard_quiet_ns = 2_000_000_000;
    cfg
}

struct Venues {
    update_ids: [u64; 3],
}

impl Venues {
    fn quote(
        &mut self,
        h: &mut Harness,
        source: u8,
        bid: Price,
        ask: Price,
    ) -> Result<ReplyData, Reason> {
        let i = usize::from(source);
        self.update_ids[i] += 1;
        let tick =
            Tick { market: BTC, bid, ask, update_id: self.update_ids[i], exchange_time_us: 0 };
        h.run(CommandKind::SourceQuote { source: SourceId(source), tick })
    }

    /// Every source quotes `p` (bid = ask).
    fn all(&mut self, h: &mut Harness, p: Price) {
        for s in 0..3 {
            self.quote(h, s, p, p).unwrap();
        }
    }
}

fn market(h: &mut Harness) -> MarketView {
    h.run(CommandKind::QueryMarkets).unwrap();
    h.out
        .iter()
        .rev()
        .find_map(|o| match o {
            Output::Item { item: Item::Market(m), .. } if m.market == BTC => Some(*m),
            _ => None,
        })
        .expect("the market's view")
}

fn guards(events: &[Event]) -> Vec<MarketMode> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::PriceGuard { mode, .. } => Some(*mode),
            _ => None,
        })
        .collect()
}

#[test]
fn a_wick_on_one_of_three_venues_liquidates_nobody_and_two_agreeing_carry_the_index() {
    let mut h = Harness::with(config());
    let mut v = Venues { update_ids: [0; 3] };
    let a = h.account("t@x");
    v.all(&mut h, usd(60_000));
    assert_eq!((market(&mut h).bid, market(&mut h).ask), (usd(60_000), usd(60_000)));
    // 100x long: liquidated near 59 700.
    let p = h.open(h.open_req(a, Side::Long, 100, Size::Quantity(btc(1)))).unwrap();
    let from = h.out.len();
    v.quote(&mut h, 2, usd(30_000), usd(30_000)).unwrap(); // one venue prints half the price
    assert!(closed_events(&h.events_since(from)).is_empty(), "the wick moved nothing");
    assert_eq!(market(&mut h).bid, usd(60_000));
    assert_eq!(h.position(a, p.id).status, PositionStatus::Open);
    // Two venues agreeing on a lower price carry the index: the position is liquidated at it.
    v.quote(&mut h, 0, usd(59_000), usd(59_000)).unwrap();
    assert!(closed_events(&h.events_since(from)).is_empty(), "one venue of three is not enough");
    v.quote(&mut h, 1, usd(59_000), usd(59_000)).unwrap();
    let closed = closed_events(&h.events_since(from));
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].close.unwrap().reason, CloseReason::Liquidation);
    assert_eq!(closed[0].close.unwrap().exit_price, usd(59_000));
}

#[test]
fn silence_guards_the_market_reduce_only_then_halted_and_agreement_reopens_it() {
    let mut h = Harness::with(config());
    let mut v = Venues { update_ids: [0; 3] };
    let a = h.account("t@x");
    h.deposit(a, usdc(100_000)).unwrap();
    v.all(&mut h, usd(60_000));
    let p = h.open(h.open_req(a, Side::Long, 10, Size::Quantity(btc(1)))).unwrap();
    let from = h.out.len();
    h.advance(1_500_000_000); // past max_source_age: every source is stale
    h.run(CommandKind::SourceCheck).unwrap();
    assert_eq!(guards(&h.events_since(from)), [MarketMode::ReduceOnly]);
    let refused = h.open(h.open_req(a, Side::Long, 10, Size::Quantity(btc(1))));
    assert_eq!(refused.unwrap_err(), Reason::MarketReduceOnly);
    h.advance(1_000_000_000); // past twice the age: nothing heard at all
    h.run(CommandKind::SourceCheck).unwrap();
    assert_eq!(guards(&h.events_since(from)), [MarketMode::ReduceOnly, MarketMode::Halted]);
    // Closing still works while guarded (at the last good index).
    assert!(h.close(a, p.id, None).is_ok());
    // The venues come back and agree: reduce-only at once (no source is silent), open after the
    // quiet period.
    v.all(&mut h, usd(60_100));
    assert_eq!(
        guards(&h.events_since(from)),
        [MarketMode::ReduceOnly, MarketMode::Halted, MarketMode::ReduceOnly]
    );
    h.advance(1_000_000_000);
    v.all(&mut h, usd(60_100));
    assert_eq!(
        h.open(h.open_req(a, Side::Long, 10, Size::Quantity(btc(1)))).unwrap_err(),
        Reason::MarketReduceOnly
    );
    h.advance(1_000_000_000);
    v.all(&mut h, usd(60_200));
    assert_eq!(guards(&h.events_since(from)).last(), Some(&MarketMode::Open));
    assert!(h.open(h.open_req(a, Side::Long, 10, Size::Quantity(btc(1)))).is_ok());
}

#[test]
fn quotes_are_checked_per_source() {
    let mut h = Harness::with(config());
    let mut v = Venues { update_ids: [0; 3] };
    v.all(&mut h, usd(60_000));
    let tick = Tick { market: BTC, bid: usd(1), ask: usd(1), update_id: 1, exchange_time_us: 0 };
    let stale = h.run(CommandKind::SourceQuote { source: SourceId(0), tick });
    assert_eq!(stale, Err(Reason::StaleUpdate), "each source's update id must increase");
    let unknown = h.run(CommandKind::SourceQuote { source: SourceId(3), tick });
    assert_eq!(unknown, Err(Reason::UnknownSource));
    let crossed = v.quote(&mut h, 1, usd(60_001), usd(60_000));
    assert_eq!(crossed, Err(Reason::InvalidPrice));
    // A market without sources takes none.
    let eth = Tick { market: ETH, ..tick };
    assert_eq!(
        h.run(CommandKind::SourceQuote { source: SourceId(0), tick: eth }),
        Err(Reason::UnknownSource)
    );
}

#[test]
fn replay_and_a_snapshot_give_the_same_index_and_state_hash() {
    let mut h = Harness::with(config());
    let mut v = Venues { update_ids: [0; 3] };
    let a = h.account("t@x");
    h.deposit(a, usdc(100_000)).unwrap();
    v.all(&mut h, usd(60_000));
    h.open(h.open_req(a, Side::Long, 50, Size::Quantity(btc(1)))).unwrap();
    v.quote(&mut h, 2, usd(10_000), usd(10_001)).unwrap();
    h.advance(700_000_000);
    v.quote(&mut h, 0, usd(59_900), usd(59_910)).unwrap();
    let snap = h.engine.snapshot();
    let mut restored = Engine::restore(h.engine.config().clone(), &snap).unwrap();
    assert_eq!(restored.state_hash(), h.engine.state_hash());
    // The rest of the run, on both.
    let start = h.log.len();
    h.advance(700_000_000);
    v.quote(&mut h, 1, usd(59_800), usd(59_805)).unwrap();
    h.run(CommandKind::SourceCheck).unwrap();
    for cmd in &h.log[start..] {
        restored.apply(cmd, &mut Vec::new());
    }
    assert_eq!(restored.state_hash(), h.engine.state_hash());
    let mut replayed = Engine::new(h.engine.config().clone()).unwrap();
    for cmd in &h.log {
        replayed.apply(cmd, &mut Vec::new());
    }
    assert_eq!(replayed.state_hash(), h.engine.state_hash());
    assert_eq!(replayed.snapshot(), h.engine.snapshot());
}

/// docs/DESIGN.md, "Which price each rule uses": the worked example, to the cent.
#[test]
fn the_designs_worked_example_liquidates_at_the_index_bid_that_fired_it() {
    let mut cfg = config();
    cfg.markets[0].maintenance_margin_rate = Ppm(5_000);
    cfg.markets[0].max_deviation_bps = 100;
    let mut h = Harness::with(cfg);
    let mut v = Venues { update_ids: [0; 3] };
    let a = h.account("t@x");
    h.deposit(a, usdc(10_000)).unwrap();
    v.all(&mut h, usd(60_000));
    let p = h.open(h.open_req(a, Side::Long, 10, Size::Quantity(btc(1)))).unwrap();
    assert_eq!((p.margin, p.liquidation_price), (usdc(6_000), Price(5_427_136)));
    let cents = Price;
    let from = h.out.len();
    v.quote(&mut h, 2, cents(4_000_000), cents(4_000_010)).unwrap();
    v.quote(&mut h, 0, cents(5_430_000), cents(5_430_010)).unwrap();
    v.quote(&mut h, 1, cents(5_428_000), cents(5_428_010)).unwrap();
    assert_eq!(market(&mut h).bid, cents(5_429_000), "index mid 54 290.05");
    assert!(closed_events(&h.events_since(from)).is_empty());
    v.quote(&mut h, 0, cents(5_427_000), cents(5_427_010)).unwrap();
    assert!(closed_events(&h.events_since(from)).is_empty(), "mid 54 280.05: bid 54 280.00");
    v.quote(&mut h, 1, cents(5_426_800), cents(5_426_810)).unwrap();
    let closed = closed_events(&h.events_since(from));
    assert_eq!(closed.len(), 1, "{closed:?}");
    let close = closed[0].close.unwrap();
    assert_eq!((close.reason, close.exit_price), (CloseReason::Liquidation, cents(5_426_900)));
}

/// The index against each venue, for operators' screens: every source's latest quote and its
/// time, a venue never heard from at zero.
#[test]
fn each_sources_latest_quote_is_listed() {
    let mut h = Harness::with(config());
    let mut v = Venues { update_ids: [0; 3] };
    v.quote(&mut h, 0, usd(60_000), usd(60_001)).unwrap();
    h.advance(5);
    v.quote(&mut h, 2, usd(60_010), usd(60_012)).unwrap();
    let from = h.out.len();
    assert!(matches!(
        h.run(CommandKind::QuerySources { market: BTC }),
        Ok(ReplyData::List { count: 3 })
    ));
    let quotes: Vec<(u8, Price, Price, u64)> = items_since(&h, from)
        .into_iter()
        .filter_map(|i| match i {
            Item::SourceQuote { source, bid, ask, at_ns, .. } => Some((source.0, bid, ask, at_ns)),
            _ => None,
        })
        .collect();
    assert_eq!(
        quotes,
        vec![
            (0, usd(60_000), usd(60_001), T0),
            (1, Price(0), Price(0), 0),
            (2, usd(60_010), usd(60_012), T0 + 5),
        ]
    );
    assert_eq!(
        h.run(CommandKind::QuerySources { market: MarketId(9) }),
        Err(Reason::UnknownMarket)
    );
}
