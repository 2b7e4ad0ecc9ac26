//! Netting accounts (docs/DESIGN.md, "Netting"): one position per market; an order on its side
//! adds at the weighted average entry (rounded against the trader); an opposite order reduces,
//! closes or reverses it, all or nothing; reductions go on in a reduce-only market; pending
//! orders net like market orders; the mode survives a snapshot; hedging stays the default.

mod common;

use common::*;
use engine_core::math::Scale;
use engine_core::prelude::*;

/// A market with fees, so that every addition and close pays one.
fn fees() -> EngineConfig {
    let mut cfg = EngineConfig { margin_call_level: Ppm(0), ..EngineConfig::default() };
    cfg.markets[0].open_fee_rate = Ppm(500);
    cfg.markets[0].close_fee_rate = Ppm(500);
    cfg.markets[0].min_qty = 1_000; // 0.01 BTC
    cfg
}

fn netting(h: &mut Harness, login: &str) -> AccountId {
    let a = h.account(login);
    h.run(CommandKind::SetPositionMode { account: a, mode: PositionMode::Netting }).unwrap();
    a
}

fn order(
    h: &mut Harness,
    a: AccountId,
    side: Side,
    lev: u32,
    q: Qty,
) -> Result<PositionView, Reason> {
    h.open(OpenRequest::new(a, BTC, side, lev, Size::Quantity(q)))
}

fn open_positions(h: &mut Harness, account: AccountId) -> Vec<PositionView> {
    let from = h.out.len();
    h.run(CommandKind::QueryPositions { account, status: PositionStatus::Open }).unwrap();
    h.out[from..]
        .iter()
        .filter_map(|o| match o {
            Output::Item { item: Item::Position(v), .. } => Some(*v),
            _ => None,
        })
        .collect()
}

/// Long 1 BTC at 50 000, then 2 BTC at 50 001.01 (both 20x): one position of 3 BTC at
/// (50 000 × 1 + 50 001.01 × 2) / 3 = 50 000.6733…, rounded up to 50 000.68 for a long; margin
/// 2 500 + 5 000.101; the addition's fee 0.05% of 100 002.02 = 50.00101.
#[test]
fn an_order_on_the_positions_side_adds_at_the_weighted_average_entry_rounded_against_the_trader() {
    let mut h = Harness::with(fees());
    h.price(BTC, usd(50_000));
    let a = netting(&mut h, "n@x");
    h.deposit(a, usdc(10_000)).unwrap();
    let first = order(&mut h, a, Side::Long, 20, btc(1)).unwrap();
    let before = h.balance(a).available;
    h.price(BTC, Price(5_000_101));
    let from = h.out.len();
    let whole = order(&mut h, a, Side::Long, 20, btc(2)).unwrap();
    assert_eq!(whole.id, first.id, "the position keeps its id");
    assert_eq!((whole.quantity, whole.entry_price), (btc(3), Price(5_000_068)));
    assert_eq!(whole.margin, Usdc(7_500_101_000));
    let liq = Scale::new(2, 5).liquidation_price(
        Side::Long,
        Price(5_000_068),
        btc(3),
        Usdc(7_500_101_000),
        Ppm(5_000),
    );
    assert_eq!(whole.liquidation_price, liq, "derived from the whole, as for an open");
    let increased = changes_since(&h, from);
    assert!(increased.contains(&Change::Increased {
        position: first.id,
        account: a,
        market: BTC,
        side: Side::Long,
        added_quantity: btc(2),
        price: Price(5_000_101),
        quantity: btc(3),
        entry_price: Price(5_000_068),
        added_margin: Usdc(5_000_101_000),
        margin: Usdc(7_500_101_000),
        leverage: 20,
        fee: Usdc(50_001_010),
        charges: Usdc::ZERO,
        liquidation_price: liq,
        take_profit: None,
        stop_loss: None,
    }));
    let after = h.balance(a);
    assert_eq!(after.available, Usdc(before.0 - 5_000_101_000 - 50_001_010));
    assert_eq!(after.open_positions, 1);

    // A short's average rounds down: 1 at 50 000 and 2 at 50 001.01 → 50 000.67.
    h.price(BTC, usd(50_000));
    let s = netting(&mut h, "s@x");
    h.deposit(s, usdc(10_000)).unwrap();
    order(&mut h, s, Side::Short, 20, btc(1)).unwrap();
    h.price(BTC, Price(5_000_101));
    let whole = order(&mut h, s, Side::Short, 20, btc(2)).unwrap();
    assert_eq!(whole.entry_price, Price(5_000_067));
}

/// Long 2 BTC at 50 000; at 51 000 a short of 0.5 closes 0.5 (PnL +500, reason `netted`) and
/// leaves 1.5 under the same id; a short of 1.5 closes the rest.
#[test]
fn an_opposite_order_reduces_then_closes_the_position_with_its_realized_pnl() {
    let mut h = Harness::with(fees());
    h.price(BTC, usd(50_000));
    let a = netting(&mut h, "n@x");
    let p = order(&mut h, a, Side::Long, 50, btc(2)).unwrap();
    assert_eq!(p.margin, usdc(2_000));
    h.price(BTC, usd(51_000));
    let from = h.out.len();
    let left = order(&mut h, a, Side::Short, 50, Qty(50_000)).unwrap();
    assert_eq!((left.id, left.quantity, left.side), (p.id, Qty(150_000), Side::Long));
    assert_eq!(left.margin, usdc(1_500), "the margin released pro rata");
    let closed = closed_events(&h.events_since(from));
    assert_eq!(closed.len(), 1);
    let info = closed[0].close.unwrap();
    assert_eq!((info.reason, info.realized_pnl), (CloseReason::Netted, usdc(500)));
    // 0.05% of 25 500.
    assert_eq!(info.fee, Usdc(12_750_000));
    assert!(!changes_since(&h, from).iter().any(|c| matches!(c, Change::Opened { .. })));

    let from = h.out.len();
    let gone = order(&mut h, a, Side::Short, 50, Qty(150_000)).unwrap();
    assert_eq!((gone.id, gone.close.map(|c| c.reason)), (p.id, Some(CloseReason::Netted)));
    assert_eq!(closed_events(&h.events_since(from)).len(), 1);
    assert_eq!(h.balance(a).open_positions, 0);
    // A reduction that would leave less than the market's minimum is refused.
    order(&mut h, a, Side::Long, 50, btc(1)).unwrap();
    assert_eq!(order(&mut h, a, Side::Short, 50, Qty(99_500)), Err(Reason::QuantityTooSmall));
}

/// Long 1 BTC at 50 000 (20x); at 49 000 a short of 3 BTC (10x) closes it (PnL −1 000) and opens
/// 2 BTC short at 49 000 under a new id, margin 9 800: one position, the other side.
#[test]
fn an_opposite_order_larger_than_the_position_reverses_it() {
    let mut h = Harness::with(fees());
    h.price(BTC, usd(50_000));
    let a = netting(&mut h, "n@x");
    h.deposit(a, usdc(20_000)).unwrap();
    let long = order(&mut h, a, Side::Long, 20, btc(1)).unwrap();
    h.price(BTC, usd(49_000));
    let from = h.out.len();
    let short = order(&mut h, a, Side::Short, 10, btc(3)).unwrap();
    assert_ne!(short.id, long.id);
    assert_eq!((short.side, short.quantity, short.entry_price), (Side::Short, btc(2), usd(49_000)));
    assert_eq!(short.margin, usdc(9_800));
    let closed = closed_events(&h.events_since(from));
    assert_eq!(closed.iter().map(|v| v.id).collect::<Vec<_>>(), vec![long.id]);
    assert_eq!(closed[0].close.unwrap().realized_pnl, usdc(-1_000));
    let positions = open_positions(&mut h, a);
    assert_eq!(positions.iter().map(|v| v.id).collect::<Vec<_>>(), vec![short.id]);
    // The close, then the open: their changes in that order, both fees paid.
    let kinds: Vec<_> = changes_since(&h, from)
        .into_iter()
        .filter(|c| matches!(c, Change::Closed { .. } | Change::Opened { .. }))
        .collect();
    assert!(
        matches!(kinds[..], [Change::Closed { .. }, Change::Opened { fee, .. }] if fee == Usdc(49_000_000))
    );
}

/// A reversal that the close's payout makes affordable goes through; one that is still too
/// large is refused and changes nothing, the position included.
#[test]
fn a_reversal_is_all_or_nothing_and_counts_what_the_close_pays() {
    let mut h = Harness::with(fees());
    h.price(BTC, usd(50_000));
    let a = netting(&mut h, "n@x");
    // 5 000 − 2 500 margin − 25 fee: 2 475 available.
    let long = order(&mut h, a, Side::Long, 20, btc(1)).unwrap();
    assert_eq!(h.balance(a).available, usdc(2_475));
    h.price(BTC, usd(55_000));
    // The rest, 1 BTC at 20x, needs 2 750 + 27.50: more than available now, less once the close
    // has paid 2 500 + 5 000 − 27.50.
    let short = order(&mut h, a, Side::Short, 20, btc(2)).unwrap();
    assert_eq!((short.side, short.quantity), (Side::Short, btc(1)));

    let before = h.business();
    let positions = open_positions(&mut h, a);
    assert_eq!(order(&mut h, a, Side::Long, 1, btc(3)), Err(Reason::InsufficientBalance));
    assert_eq!(open_positions(&mut h, a), positions, "the position is untouched");
    let after = h.business();
    assert_eq!((after.accounts, after.positions), (before.accounts, before.positions));
    assert!(long.id < short.id);
}

/// In a reduce-only market a netting account may reduce and close, not add or reverse; in a
/// halted one it may still reduce.
#[test]
fn reductions_go_on_in_a_reduce_only_market_and_additions_and_reversals_do_not() {
    let mut h = Harness::with(fees());
    h.price(BTC, usd(50_000));
    let ops = h.account("ops@x");
    h.run(CommandKind::SetRole { login: Login::new("ops@x").unwrap(), admin: true }).unwrap();
    let a = netting(&mut h, "n@x");
    order(&mut h, a, Side::Long, 50, btc(2)).unwrap();
    let mode = |h: &mut Harness, mode| {
        h.run(CommandKind::AdminSetMarket {
            by: ops,
            market: BTC,
            mode: Some(mode),
            max_leverage: None,
            maintenance_margin_rate: None,
        })
        .unwrap();
    };
    mode(&mut h, MarketMode::ReduceOnly);
    assert_eq!(order(&mut h, a, Side::Long, 50, btc(1)), Err(Reason::MarketReduceOnly));
    assert_eq!(order(&mut h, a, Side::Short, 50, btc(3)), Err(Reason::MarketReduceOnly));
    assert_eq!(order(&mut h, a, Side::Short, 50, btc(1)).unwrap().quantity, btc(1));
    mode(&mut h, MarketMode::Halted);
    assert_eq!(order(&mut h, a, Side::Short, 50, Qty(50_000)).unwrap().quantity, Qty(50_000));
    // A hedging account's opposite order is an open: refused.
    let hedger = h.account("h@x");
    assert_eq!(order(&mut h, hedger, Side::Short, 50, btc(1)), Err(Reason::MarketHalted));
}

/// A pending order of a netting account nets when it fills: a limit sell under a long reduces
/// it, and the order ends filled with the position's id.
#[test]
fn a_pending_order_nets_when_it_fills() {
    let mut h = Harness::with(fees());
    h.price(BTC, usd(50_000));
    let a = netting(&mut h, "n@x");
    let p = order(&mut h, a, Side::Long, 50, btc(2)).unwrap();
    let req = OrderRequest {
        account: a,
        market: BTC,
        side: Side::Short,
        kind: OrderKind::Limit,
        price: usd(51_000),
        leverage: 50,
        size: Size::Quantity(btc(1)),
        take_profit: None,
        stop_loss: None,
        expires_at_ns: None,
        client_order_id: None,
    };
    h.run(CommandKind::PlaceOrder(req)).unwrap();
    let from = h.out.len();
    h.price(BTC, usd(51_000));
    let ended = changes_since(&h, from)
        .into_iter()
        .find_map(|c| if let Change::OrderEnded { end, .. } = c { Some(end) } else { None });
    assert_eq!(ended, Some(OrderEnd::Filled(p.id)));
    let positions = open_positions(&mut h, a);
    assert_eq!(
        positions.iter().map(|v| (v.id, v.quantity)).collect::<Vec<_>>(),
        vec![(p.id, btc(1))]
    );
}

/// Hedging is the default (both sides held at once); the mode changes only with nothing open;
/// a netting cross account reverses within its free margin; the mode survives a snapshot.
#[test]
fn the_mode_needs_an_empty_account_is_kept_in_snapshots_and_hedging_is_the_default() {
    let mut h = Harness::with(fees());
    h.price(BTC, usd(50_000));
    let hedger = h.account("h@x");
    order(&mut h, hedger, Side::Long, 50, btc(1)).unwrap();
    order(&mut h, hedger, Side::Short, 50, btc(1)).unwrap();
    assert_eq!(h.balance(hedger).open_positions, 2);
    let set = CommandKind::SetPositionMode { account: hedger, mode: PositionMode::Netting };
    assert_eq!(h.run(set), Err(Reason::PositionsOpen));

    let a = netting(&mut h, "n@x");
    h.run(CommandKind::SetMarginMode { account: a, mode: MarginMode::Cross }).unwrap();
    order(&mut h, a, Side::Long, 20, btc(1)).unwrap();
    h.price(BTC, usd(49_000));
    let short = order(&mut h, a, Side::Short, 20, btc(2)).unwrap();
    assert_eq!(
        (short.side, short.quantity, short.liquidation_price),
        (Side::Short, btc(1), Price(0))
    );

    let restored = Engine::restore(h.engine.config().clone(), &h.engine.snapshot()).unwrap();
    assert_eq!(restored.state_hash(), h.engine.state_hash());
    h.engine = restored;
    let whole = order(&mut h, a, Side::Short, 20, Qty(50_000)).unwrap();
    assert_eq!((whole.id, whole.quantity), (short.id, Qty(150_000)), "still netting");
}
