//! Operator controls: the role, market modes, limits for new positions, the risk view.
//! `Harness::run` checks conservation after every command.

mod common;

use common::*;
use engine_core::prelude::*;

fn set_market(
    h: &mut Harness,
    by: AccountId,
    mode: Option<MarketMode>,
    lev: Option<u32>,
    mmr: Option<Ppm>,
) -> Result<ReplyData, Reason> {
    h.run(CommandKind::AdminSetMarket {
        by,
        market: BTC,
        mode,
        max_leverage: lev,
        maintenance_margin_rate: mmr,
    })
}

fn operator(h: &mut Harness) -> AccountId {
    let ops = h.account("ops@x");
    let login = Login::new("ops@x").unwrap();
    assert_eq!(
        h.run(CommandKind::SetRole { login, admin: true }),
        Ok(ReplyData::Role { account: ops, admin: true })
    );
    ops
}

#[test]
fn only_an_operator_changes_a_market_and_a_halt_stops_new_exposure_not_closes() {
    let mut h = Harness::new();
    let t = h.account("t@x");
    h.deposit(t, usdc(100_000)).unwrap();
    h.price(BTC, usd(60_000));
    assert_eq!(set_market(&mut h, t, Some(MarketMode::Halted), None, None), Err(Reason::NotAdmin));
    let ops = operator(&mut h);
    let p = h.open(h.open_req(t, Side::Long, 10, Size::Quantity(btc(1)))).unwrap();
    let limit = OrderRequest {
        account: t,
        market: BTC,
        side: Side::Long,
        kind: OrderKind::Limit,
        price: usd(59_000),
        leverage: 10,
        size: Size::Quantity(btc(1)),
        take_profit: None,
        stop_loss: None,
        expires_at_ns: None,
        client_order_id: None,
    };
    let Ok(ReplyData::Order(o)) = h.run(CommandKind::PlaceOrder(limit)) else { panic!() };
    let Ok(ReplyData::Market(v)) = set_market(&mut h, ops, Some(MarketMode::Halted), None, None)
    else {
        panic!()
    };
    assert_eq!(v.mode, MarketMode::Halted);
    assert_eq!(
        h.open(h.open_req(t, Side::Long, 10, Size::Quantity(btc(1)))),
        Err(Reason::MarketHalted)
    );
    assert_eq!(h.run(CommandKind::PlaceOrder(limit)), Err(Reason::MarketHalted));
    // The resting order triggers while halted: it ends with the reason, its hold returns.
    let from = h.out.len();
    h.price(BTC, usd(59_000));
    let ended =
        h.out[from..].iter().find_map(|out| match out {
            Output::Change(ChangeRecord {
                change: Change::OrderEnded { order, end, .. }, ..
            }) if *order == o.id => Some(*end),
            _ => None,
        });
    assert_eq!(ended, Some(OrderEnd::Rejected(Reason::MarketHalted)));
    // Closing and adding margin go on.
    h.run(CommandKind::AddMargin { account: t, position: p.id, amount: usdc(10), key: None })
        .unwrap();
    h.close(t, p.id, Some(Qty(50_000))).unwrap();
    set_market(&mut h, ops, Some(MarketMode::ReduceOnly), None, None).unwrap();
    assert_eq!(
        h.open(h.open_req(t, Side::Short, 10, Size::Quantity(btc(1)))),
        Err(Reason::MarketReduceOnly)
    );
    set_market(&mut h, ops, Some(MarketMode::Open), None, None).unwrap();
    assert!(h.open(h.open_req(t, Side::Short, 10, Size::Quantity(btc(1)))).is_ok());
    // Revoked: refused at once.
    let login = Login::new("ops@x").unwrap();
    h.run(CommandKind::SetRole { login, admin: false }).unwrap();
    assert_eq!(set_market(&mut h, ops, None, Some(20), None), Err(Reason::NotAdmin));
}

#[test]
fn new_limits_apply_to_new_positions_and_open_ones_keep_their_rate() {
    let mut h = Harness::new();
    let t = h.account("t@x");
    h.deposit(t, usdc(100_000)).unwrap();
    h.price(BTC, usd(60_000));
    let ops = operator(&mut h);
    // Before: 1 BTC at 10x, mmr 0.5 %: liquidation at 54 000 / 0.995 = 54 271.36.
    let old = h.open(h.open_req(t, Side::Long, 10, Size::Quantity(btc(1)))).unwrap();
    assert_eq!(old.liquidation_price, Price(5_427_136));
    assert_eq!(
        set_market(&mut h, ops, None, Some(20), Some(Ppm(60_000))),
        Err(Reason::InvalidRequest)
    ); // 6 % x 20 >= 1
    set_market(&mut h, ops, None, Some(20), Some(Ppm(10_000))).unwrap();
    assert_eq!(
        h.open(h.open_req(t, Side::Long, 21, Size::Quantity(btc(1)))),
        Err(Reason::InvalidLeverage)
    );
    // After: mmr 1 %: 54 000 / 0.99 = 54 545.4545 -> 54 545.46.
    let new = h.open(h.open_req(t, Side::Long, 10, Size::Quantity(btc(1)))).unwrap();
    assert_eq!(new.liquidation_price, Price(5_454_546));
    // The old position keeps 0.5 %: adding 1 000 margin gives 53 000 / 0.995 = 53 266.34.
    let Ok(ReplyData::Position(v)) = h.run(CommandKind::AddMargin {
        account: t,
        position: old.id,
        amount: usdc(1_000),
        key: None,
    }) else {
        panic!()
    };
    assert_eq!(v.liquidation_price, Price(5_326_634));
    let snap = h.engine.snapshot();
    let r = Engine::restore(h.engine.config().clone(), &snap).unwrap();
    assert_eq!(r.state_hash(), h.engine.state_hash());
}

#[test]
fn the_risk_view_shows_exposure_and_the_positions_nearest_liquidation_first() {
    let mut h = Harness::new();
    let t = h.account("t@x");
    h.deposit(t, usdc(100_000)).unwrap();
    h.price(BTC, usd(60_000));
    let ops = operator(&mut h);
    let far = h.open(h.open_req(t, Side::Long, 2, Size::Quantity(btc(1)))).unwrap();
    let near = h.open(h.open_req(t, Side::Long, 50, Size::Quantity(btc(1)))).unwrap();
    let short = h.open(h.open_req(t, Side::Short, 20, Size::Quantity(btc(2)))).unwrap();
    let from = h.out.len();
    assert!(h.run(CommandKind::QueryRisk { by: t, top: 5 }).is_err(), "operators only");
    let Ok(ReplyData::Risk { open_positions, .. }) =
        h.run(CommandKind::QueryRisk { by: ops, top: 5 })
    else {
        panic!()
    };
    assert_eq!(open_positions, 3);
    let items: Vec<Item> = h.out[from..]
        .iter()
        .filter_map(|o| if let Output::Item { item, .. } = o { Some(*item) } else { None })
        .collect();
    let btc_long = items.iter().find_map(|i| match i {
        Item::Exposure(e) if e.market == BTC && e.side == Side::Long => Some(*e),
        _ => None,
    });
    let e = btc_long.unwrap();
    // 2 longs, 2 BTC, 120 000 at the bid.
    assert_eq!((e.positions, e.open_interest, e.notional), (2, btc(2), usdc(120_000)));
    let at_risk: Vec<PositionId> = items
        .iter()
        .filter_map(|i| if let Item::AtRisk(r) = i { Some(r.position) } else { None })
        .collect();
    // 50x long ~1.5 % away, 20x short ~4.5 %, 2x long ~50 %.
    assert_eq!(at_risk, vec![near.id, short.id, far.id]);
}

/// The risk view's open result per market side: the traders' unrealized P&L at the mark, kept
/// in O(1) from the side's entry sum (the house's is its negative), equal to the positions'
/// own within their rounding, and followed through a partial close and a restore.
#[test]
fn the_risk_view_shows_each_sides_open_result_from_its_entry_sum() {
    let mut h = Harness::new();
    let t = h.account("t@x");
    h.deposit(t, usdc(100_000)).unwrap();
    let ops = operator(&mut h);
    h.price(BTC, usd(60_000));
    let a = h.open(h.open_req(t, Side::Long, 10, Size::Quantity(btc(1)))).unwrap();
    h.price(BTC, usd(61_000));
    h.open(h.open_req(t, Side::Long, 10, Size::Quantity(btc(2)))).unwrap();
    h.open(h.open_req(t, Side::Short, 10, Size::Quantity(btc(1)))).unwrap();
    h.close(t, a.id, Some(Qty(btc(1).0 / 2))).unwrap();
    h.price(BTC, usd(62_000));
    let exposure = |h: &mut Harness| {
        let from = h.out.len();
        h.run(CommandKind::QueryRisk { by: ops, top: 0 }).unwrap();
        items_since(h, from)
            .into_iter()
            .filter_map(|i| match i {
                Item::Exposure(e) if e.market == BTC => Some((e.side, e.unrealized_pnl)),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    // Longs: 0.5 from 60 000 and 2 from 61 000, at 62 000: 1 000 + 2 000; the short from
    // 61 000: −1 000.
    let want = vec![(Side::Long, usdc(3_000)), (Side::Short, usdc(-1_000))];
    assert_eq!(exposure(&mut h), want);
    let positions: i128 = h.balance(t).unrealized_pnl.0;
    assert_eq!(positions, usdc(2_000).0, "the positions' own sum agrees");
    let snap = h.engine.snapshot();
    h.engine = Engine::restore(h.engine.config().clone(), &snap).unwrap();
    assert_eq!(exposure(&mut h), want, "rebuilt from the positions on restore");
}
