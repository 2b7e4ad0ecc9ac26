//! Open-interest and skew limits per market (docs/DESIGN.md, "Open-interest and skew limits"):
//! each side's open quantity and the difference between the sides are capped, one step below a
//! cap is accepted and one step above refused with its own code, an open that narrows the skew
//! is always allowed, a pending order's fill meets the same caps, and the heavier side pays the
//! skew financing rate scaled by the skew.

mod common;

use common::*;
use engine_core::prelude::*;

const STEP: i64 = 1; // one quantity step (0.00001 BTC)
/// 0.001 BTC: the smallest open above the minimum margin (1 USDC at 10x and 60 000).
const SMALL: Qty = Qty(100);

fn config(oi_cap: i64, skew_cap: i64) -> EngineConfig {
    let mut cfg = EngineConfig::default();
    cfg.markets[0].open_interest_cap_steps = oi_cap;
    cfg.markets[0].skew_cap_steps = skew_cap;
    cfg
}

fn trader(h: &mut Harness, login: &str) -> AccountId {
    let a = h.account(login);
    h.deposit(a, usdc(1_000_000)).unwrap();
    a
}

fn open(h: &mut Harness, a: AccountId, side: Side, q: Qty) -> Result<PositionView, Reason> {
    h.open(h.open_req(a, side, 10, Size::Quantity(q)))
}

#[test]
fn each_sides_open_quantity_is_capped_to_the_step() {
    let mut h = Harness::with(config(btc(2).0, 0));
    h.price(BTC, usd(60_000));
    let a = trader(&mut h, "a@x");
    open(&mut h, a, Side::Long, btc(1)).unwrap();
    let over = Qty(btc(1).0 + STEP);
    assert_eq!(open(&mut h, a, Side::Long, over), Err(Reason::OpenInterestCap), "one step above");
    let last = open(&mut h, a, Side::Long, btc(1)).unwrap(); // exactly at the cap
    assert_eq!(open(&mut h, a, Side::Long, SMALL), Err(Reason::OpenInterestCap));
    // The other side has its own cap.
    open(&mut h, a, Side::Short, btc(2)).unwrap();
    assert_eq!(open(&mut h, a, Side::Short, SMALL), Err(Reason::OpenInterestCap));
    // A close frees its quantity.
    h.close(a, last.id, None).unwrap();
    open(&mut h, a, Side::Long, btc(1)).unwrap();
    assert_eq!(Reason::OpenInterestCap.code(), "open_interest_cap");
}

#[test]
fn the_skew_is_capped_but_an_open_that_narrows_it_is_always_allowed() {
    let mut h = Harness::with(config(0, btc(1).0));
    h.price(BTC, usd(60_000));
    let a = trader(&mut h, "a@x");
    open(&mut h, a, Side::Long, Qty(btc(1).0 - STEP)).unwrap(); // one step below the cap
    assert_eq!(open(&mut h, a, Side::Long, Qty(SMALL.0 + STEP)), Err(Reason::SkewCap));
    open(&mut h, a, Side::Short, Qty(SMALL.0 - STEP)).unwrap(); // narrows it
    open(&mut h, a, Side::Long, SMALL).unwrap(); // skew exactly 1 BTC: at the cap
    assert_eq!(open(&mut h, a, Side::Long, SMALL), Err(Reason::SkewCap), "above the cap");
    open(&mut h, a, Side::Short, Qty(btc(1).0 / 2)).unwrap(); // narrows it to 0.5
    open(&mut h, a, Side::Long, Qty(btc(1).0 / 2)).unwrap(); // back to 1: allowed
    // A short of 3 BTC swings the skew to 2 BTC the other way: refused.
    assert_eq!(open(&mut h, a, Side::Short, btc(3)), Err(Reason::SkewCap));
    // Under a cap lowered below today's skew (a restart with a new configuration), an open
    // that narrows the skew is still allowed, one that widens it is not.
    let mut h = Harness::with(config(0, btc(1).0));
    h.price(BTC, usd(60_000));
    let b = trader(&mut h, "b@x");
    open(&mut h, b, Side::Long, btc(1)).unwrap();
    h.engine = Engine::restore(config(0, btc(1).0 / 2), &h.engine.snapshot()).unwrap();
    assert_eq!(open(&mut h, b, Side::Long, SMALL), Err(Reason::SkewCap));
    open(&mut h, b, Side::Short, SMALL).unwrap();
}

#[test]
fn a_pending_orders_fill_meets_the_caps_and_is_rejected_with_the_reason() {
    let mut h = Harness::with(config(btc(1).0, 0));
    h.price(BTC, usd(60_000));
    let a = trader(&mut h, "a@x");
    let order = OrderRequest {
        account: a,
        market: BTC,
        side: Side::Long,
        kind: OrderKind::Limit,
        price: usd(59_000),
        leverage: 10,
        size: Size::Quantity(Qty(btc(1).0 / 2)),
        take_profit: None,
        stop_loss: None,
        expires_at_ns: None,
        client_order_id: None,
    };
    h.run(CommandKind::PlaceOrder(order)).unwrap();
    open(&mut h, a, Side::Long, Qty(btc(1).0 / 2 + STEP)).unwrap();
    let from = h.out.len();
    h.price(BTC, usd(59_000));
    let end = h.out[from..].iter().find_map(|o| match o {
        Output::Change(ChangeRecord { change: Change::OrderEnded { end, .. }, .. }) => Some(*end),
        _ => None,
    });
    assert_eq!(end, Some(OrderEnd::Rejected(Reason::OpenInterestCap)));
}

#[test]
fn the_heavier_side_pays_the_skew_financing_rate_scaled_by_the_skew() {
    let mut cfg = config(0, 0);
    cfg.markets[0].skew_financing_rate = Ppm(1_000); // 0.1 % at full skew
    cfg.markets[0].financing_long_rate = Ppm(100);
    cfg.markets[0].financing_short_rate = Ppm(100);
    let mut h = Harness::with(cfg);
    h.price(BTC, usd(60_000));
    let a = trader(&mut h, "a@x");
    let long = open(&mut h, a, Side::Long, btc(3)).unwrap();
    let short = open(&mut h, a, Side::Short, btc(1)).unwrap();
    h.run(CommandKind::ChargeFinancing { market: BTC, period: 1 }).unwrap();
    let taken = |h: &mut Harness, p: &PositionView| p.margin.0 - h.position(a, p.id).margin.0;
    // Skew 2 of 4 BTC: the longs pay 0.01 % + 0.1 % × 1/2 = 0.06 % of 180 000 = 108.00; the
    // shorts pay their 0.01 % of 60 000 = 6.00 alone.
    assert_eq!(taken(&mut h, &long), 108_000_000);
    assert_eq!(taken(&mut h, &short), 6_000_000);
}

#[test]
fn each_side_may_have_a_cap_of_its_own() {
    let mut cfg = config(btc(2).0, 0);
    cfg.markets[0].open_interest_cap_short_steps = btc(1).0;
    let mut h = Harness::with(cfg);
    h.price(BTC, usd(60_000));
    let a = trader(&mut h, "a@x");
    open(&mut h, a, Side::Short, btc(1)).unwrap();
    assert_eq!(
        open(&mut h, a, Side::Short, SMALL),
        Err(Reason::OpenInterestCap),
        "the shorts' 1 BTC"
    );
    open(&mut h, a, Side::Long, btc(2)).unwrap(); // the longs keep the market's 2 BTC
    assert_eq!(open(&mut h, a, Side::Long, SMALL), Err(Reason::OpenInterestCap));
}
