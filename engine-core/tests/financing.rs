//! Financing (swap): scenarios with hand-computed figures. `Harness::run` checks conservation
//! after every command.

mod common;

use common::*;
use engine_core::prelude::*;

fn config(swap_free: &[&str]) -> EngineConfig {
    let mut cfg = EngineConfig::default();
    cfg.markets[0].financing_long_rate = Ppm(100); // 0.01 % per period
    cfg.markets[0].financing_short_rate = Ppm(-50); // shorts are paid 0.005 %
    cfg.swap_free_logins = swap_free.iter().map(|s| s.to_string()).collect();
    cfg
}

fn charge(h: &mut Harness, period: u64) -> Result<ReplyData, Reason> {
    h.run(CommandKind::ChargeFinancing { market: BTC, period })
}

#[test]
fn longs_pay_shorts_are_paid_from_and_into_margin_once_per_period() {
    let mut h = Harness::with(config(&["free@x"]));
    let a = h.account("t@x");
    let free = h.account("free@x");
    h.deposit(a, usdc(100_000)).unwrap();
    h.deposit(free, usdc(100_000)).unwrap();
    h.price(BTC, usd(60_000));
    let long = h.open(h.open_req(a, Side::Long, 10, Size::Quantity(btc(1)))).unwrap();
    let short = h.open(h.open_req(a, Side::Short, 10, Size::Quantity(btc(1)))).unwrap();
    let exempt = h.open(h.open_req(free, Side::Long, 10, Size::Quantity(btc(1)))).unwrap();
    let house = h.summary().house_balance;
    h.price(BTC, usd(61_000));
    // Long: 0.0001 * 61 000 = 6.10 from its 6 000 margin; short (valued at the ask, 61 000):
    // paid 0.00005 * 61 000 = 3.05. The swap-free account is not touched.
    assert_eq!(
        charge(&mut h, 7),
        Ok(ReplyData::Financing { market: BTC, period: 7, positions: 2, net: Usdc(3_050_000) })
    );
    assert_eq!(h.position(a, long.id).margin, Usdc(5_993_900_000));
    assert_eq!(h.position(a, short.id).margin, Usdc(6_003_050_000));
    assert_eq!(h.position(free, exempt.id).margin, usdc(6_000));
    assert_eq!(h.summary().house_balance, Usdc(house.0 + 3_050_000));
    // The liquidation price moved: closer for the long, further for the short.
    assert!(h.position(a, long.id).liquidation_price > long.liquidation_price);
    assert!(h.position(a, short.id).liquidation_price > short.liquidation_price);
    // A redelivered or older period is refused and changes nothing.
    let before = h.business();
    assert_eq!(charge(&mut h, 7), Err(Reason::FinancingAlreadyCharged));
    assert_eq!(charge(&mut h, 6), Err(Reason::FinancingAlreadyCharged));
    assert_eq!(h.business(), before);
    assert!(charge(&mut h, 8).is_ok());
}

#[test]
fn a_charge_that_leaves_a_position_liquidatable_liquidates_it_at_once() {
    let mut cfg = config(&[]);
    cfg.markets[0].financing_long_rate = Ppm(10_000); // 1 %, the maximum
    let mut h = Harness::with(cfg);
    let a = h.account("t@x");
    h.price(BTC, usd(60_000));
    // 100x: margin 600, liquidation at (60 000 - 600) / 0.995 = 59 698.50 -> 59 698.50.
    let p = h.open(h.open_req(a, Side::Long, 100, Size::Quantity(btc(1)))).unwrap();
    h.price(BTC, usd(59_800));
    // 1 % of 59 800 = 598: margin 2 left, far below the maintenance margin: liquidated now.
    let from = h.out.len();
    charge(&mut h, 1).unwrap();
    let closed = closed_events(&h.events_since(from));
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].id, p.id);
    assert_eq!(closed[0].close.unwrap().reason, CloseReason::Liquidation);
}

#[test]
fn financing_is_replayed_exactly_and_survives_a_snapshot() {
    let mut h = Harness::with(config(&[]));
    let a = h.account("t@x");
    h.deposit(a, usdc(100_000)).unwrap();
    h.price(BTC, usd(60_000));
    h.open(h.open_req(a, Side::Long, 5, Size::Quantity(btc(2)))).unwrap();
    charge(&mut h, 1).unwrap();
    let snap = h.engine.snapshot();
    let mut r = Engine::restore(h.engine.config().clone(), &snap).unwrap();
    assert_eq!(r.state_hash(), h.engine.state_hash());
    let again = r.apply_collect(&Command::new(
        RequestId(999),
        h.now,
        CommandKind::ChargeFinancing { market: BTC, period: 1 },
    ));
    assert!(matches!(
        again[..],
        [Output::Reply { result: Err(Reason::FinancingAlreadyCharged), .. }]
    ));
    let mut replayed = Engine::new(h.engine.config().clone()).unwrap();
    let mut out = Vec::new();
    for cmd in &h.log {
        replayed.apply(cmd, &mut out);
    }
    assert_eq!(replayed.state_hash(), h.engine.state_hash());
}
