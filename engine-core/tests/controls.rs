//! Safety controls for programs (docs/DESIGN.md, "Safety controls"): cancel all, close all,
//! amending a pending order in place, and the dead-man's switch fired on command time. Figures
//! are worked out in the comments; `Harness::run` checks conservation after every command.

mod common;

use common::*;
use engine_core::prelude::*;

const SECOND: u64 = 1_000_000_000;

fn funded(h: &mut Harness, login: &str) -> AccountId {
    let a = h.account(login);
    h.deposit(a, usdc(100_000)).unwrap(); // + the 5 000 demo deposit
    a
}

fn limit_long(a: AccountId, market: MarketId, price: Price) -> OrderRequest {
    OrderRequest {
        account: a,
        market,
        side: Side::Long,
        kind: OrderKind::Limit,
        price,
        leverage: 10,
        size: Size::Quantity(btc(1)),
        take_profit: None,
        stop_loss: None,
        expires_at_ns: None,
        client_order_id: None,
    }
}

fn place(h: &mut Harness, req: OrderRequest) -> OrderView {
    match h.run(CommandKind::PlaceOrder(req)) {
        Ok(ReplyData::Order(o)) => o,
        other => panic!("place: {other:?}"),
    }
}

fn pending(h: &mut Harness, a: AccountId) -> Vec<OrderId> {
    let from = h.out.len();
    h.run(CommandKind::QueryOrders { account: a }).unwrap();
    items_since(h, from)
        .into_iter()
        .filter_map(|i| if let Item::Order(o) = i { Some(o.id) } else { None })
        .collect()
}

#[test]
fn cancel_all_releases_every_hold_of_the_account_or_of_one_market_and_nobody_elses() {
    let mut h = Harness::new();
    let (a, b) = (funded(&mut h, "a@x"), funded(&mut h, "b@x"));
    h.price(BTC, usd(60_000));
    h.price(ETH, usd(60_000));
    let o1 = place(&mut h, limit_long(a, BTC, usd(59_000)));
    let o2 = place(&mut h, limit_long(a, ETH, usd(59_000)));
    let o3 = place(&mut h, limit_long(a, BTC, usd(58_000)));
    let theirs = place(&mut h, limit_long(b, BTC, usd(59_000)));
    // One market: BTC's two, ascending id; ETH's stays.
    let from = h.out.len();
    let r = h.run(CommandKind::CancelAllOrders { account: a, market: Some(BTC), key: None });
    assert_eq!(r, Ok(ReplyData::Bulk { done: 2, failed: 0, first_failure: None }));
    let ids: Vec<OrderId> = items_since(&h, from)
        .into_iter()
        .filter_map(|i| if let Item::Order(o) = i { Some(o.id) } else { None })
        .collect();
    assert_eq!(ids, vec![o1.id, o3.id]);
    let ended = changes_since(&h, from)
        .into_iter()
        .filter(|c| matches!(c, Change::OrderEnded { end: OrderEnd::Cancelled, .. }))
        .count();
    assert_eq!(ended, 2);
    assert_eq!(pending(&mut h, a), vec![o2.id]);
    // The rest: ETH's; the account holds nothing for orders any more.
    let r = h.run(CommandKind::CancelAllOrders { account: a, market: None, key: None });
    assert_eq!(r, Ok(ReplyData::Bulk { done: 1, failed: 0, first_failure: None }));
    let bal = h.balance(a);
    assert_eq!((bal.available, bal.order_margin), (usdc(105_000), Usdc::ZERO));
    // Nothing left: done 0, still accepted. The other account's order stands.
    let r = h.run(CommandKind::CancelAllOrders { account: a, market: None, key: None });
    assert_eq!(r, Ok(ReplyData::Bulk { done: 0, failed: 0, first_failure: None }));
    assert_eq!(pending(&mut h, b), vec![theirs.id]);
    let bad = CommandKind::CancelAllOrders { account: a, market: Some(MarketId(99)), key: None };
    assert_eq!(h.run(bad), Err(Reason::UnknownMarket));
}

#[test]
fn close_all_closes_every_position_it_can_and_counts_the_ones_it_cannot() {
    let mut h = Harness::new();
    let (a, b) = (funded(&mut h, "a@x"), funded(&mut h, "b@x"));
    h.price(BTC, usd(60_000));
    h.price(ETH, usd(3_000));
    let size = Size::Margin(usdc(1_000));
    let p1 = h.open(h.open_req(a, Side::Long, 5, size)).unwrap();
    let p2 = h.open(OpenRequest::new(a, ETH, Side::Short, 5, size)).unwrap();
    let p3 = h.open(h.open_req(a, Side::Short, 2, size)).unwrap();
    let theirs = h.open(h.open_req(b, Side::Long, 5, size)).unwrap();
    // ETH's price goes stale: its position cannot close now; BTC's two close.
    h.advance(3_600 * SECOND);
    h.price(BTC, usd(61_000));
    let from = h.out.len();
    let r = h.run(CommandKind::CloseAllPositions { account: a, market: None, key: None });
    assert_eq!(
        r,
        Ok(ReplyData::Bulk { done: 2, failed: 1, first_failure: Some(Reason::StalePrice) })
    );
    let closed: Vec<PositionId> = items_since(&h, from)
        .into_iter()
        .filter_map(|i| if let Item::Position(p) = i { Some(p.id) } else { None })
        .collect();
    assert_eq!(closed, vec![p1.id, p3.id]);
    assert_eq!(h.position(a, p2.id).status, PositionStatus::Open);
    assert_eq!(h.position(b, theirs.id).status, PositionStatus::Open, "not another's");
    // ETH prices again: the one market's close-all closes it.
    h.price(ETH, usd(3_000));
    let r = h.run(CommandKind::CloseAllPositions { account: a, market: Some(ETH), key: None });
    assert_eq!(r, Ok(ReplyData::Bulk { done: 1, failed: 0, first_failure: None }));
    assert_eq!(h.balance(a).open_positions, 0);
}

#[test]
fn a_repeated_close_all_with_its_key_closes_nothing_more() {
    let mut h = Harness::new();
    let a = funded(&mut h, "a@x");
    h.price(BTC, usd(60_000));
    h.open(h.open_req(a, Side::Long, 5, Size::Margin(usdc(1_000)))).unwrap();
    let key = IdempotencyKey::new("flat-1");
    let first = h.run(CommandKind::CloseAllPositions { account: a, market: None, key });
    assert_eq!(first, Ok(ReplyData::Bulk { done: 1, failed: 0, first_failure: None }));
    let p = h.open(h.open_req(a, Side::Long, 5, Size::Margin(usdc(1_000)))).unwrap();
    let again = h.run(CommandKind::CloseAllPositions { account: a, market: None, key });
    assert_eq!(again, first, "the first result; the new position is not touched");
    assert_eq!(h.position(a, p.id).status, PositionStatus::Open);
    let other = h.run(CommandKind::CloseAllPositions { account: a, market: Some(BTC), key });
    assert_eq!(other, Err(Reason::IdempotencyKeyReused));
}

#[test]
fn an_amended_order_keeps_its_id_and_holds_what_its_new_terms_need() {
    let mut h = Harness::new();
    let a = funded(&mut h, "a@x");
    h.price(BTC, usd(60_000));
    // 1 BTC at 59 000, 10x: holds 5 900.
    let o = place(&mut h, limit_long(a, BTC, usd(59_000)));
    assert_eq!(o.reserved, usdc(5_900));
    // To 2 BTC at 58 000 with a stop-loss: holds 2 × 58 000 / 10 = 11 600.
    let edit = OrderEdit {
        price: Some(usd(58_000)),
        size: Some(Size::Quantity(btc(2))),
        stop_loss: Some(Some(usd(55_000))),
        ..OrderEdit::default()
    };
    let from = h.out.len();
    let r = h.run(CommandKind::AmendOrder { account: a, order: o.id, edit, key: None });
    let Ok(ReplyData::Order(amended)) = r else { panic!("{r:?}") };
    assert_eq!((amended.id, amended.reserved, amended.price), (o.id, usdc(11_600), usd(58_000)));
    assert_eq!((amended.stop_loss, amended.placed_at_ns), (Some(usd(55_000)), o.placed_at_ns));
    assert_eq!(
        changes_since(&h, from),
        vec![Change::OrderAmended { order: amended, released: usdc(5_900) }]
    );
    let bal = h.balance(a);
    assert_eq!((bal.available, bal.order_margin), (usdc(93_400), usdc(11_600)));
    // It fills as amended: at 58 000, not at 59 000.
    h.price(BTC, usd(58_500));
    assert_eq!(pending(&mut h, a), vec![o.id]);
    let from = h.out.len();
    h.price(BTC, usd(58_000));
    let opened = changes_since(&h, from)
        .into_iter()
        .find_map(|c| if let Change::Opened { quantity, .. } = c { Some(quantity) } else { None });
    assert_eq!(opened, Some(btc(2)));
}

#[test]
fn a_refused_amendment_leaves_the_order_exactly_as_it_was() {
    let mut h = Harness::new();
    let a = funded(&mut h, "a@x");
    h.price(BTC, usd(60_000));
    let o1 = place(&mut h, limit_long(a, BTC, usd(59_000)));
    let o2 = place(&mut h, limit_long(a, BTC, usd(57_000)));
    let before = h.business();
    let hash = h.summary().hash;
    let refusals = [
        // Crossed now: a long limit above the ask would fill at once.
        (OrderEdit { price: Some(usd(61_000)), ..OrderEdit::default() }, Reason::InvalidOrderPrice),
        // 20 BTC at 10x holds 118 000 > the 105 000 − 5 700 available.
        (
            OrderEdit { size: Some(Size::Quantity(btc(20))), ..OrderEdit::default() },
            Reason::InsufficientBalance,
        ),
        // Already past.
        (
            OrderEdit { expires_at_ns: Some(Some(T0)), ..OrderEdit::default() },
            Reason::InvalidExpiry,
        ),
        // Nothing to change.
        (OrderEdit::default(), Reason::InvalidRequest),
    ];
    for (edit, reason) in refusals {
        let r = h.run(CommandKind::AmendOrder { account: a, order: o1.id, edit, key: None });
        assert_eq!(r, Err(reason), "{edit:?}");
    }
    let b = funded(&mut h, "b@x");
    let not_theirs = OrderEdit { price: Some(usd(58_000)), ..OrderEdit::default() };
    let r =
        h.run(CommandKind::AmendOrder { account: b, order: o1.id, edit: not_theirs, key: None });
    assert_eq!(r, Err(Reason::UnknownOrder));
    // Same orders, same holds, same order of the account's list (o1 went back before o2).
    assert_eq!(pending(&mut h, a), vec![o1.id, o2.id]);
    let mut after = h.business();
    after.accounts.pop(); // b
    after.next_position_id = before.next_position_id;
    assert_eq!(after.orders, before.orders);
    assert_eq!(after.accounts, before.accounts);
    assert_ne!(h.summary().hash, hash, "b's account is new state");
}

#[test]
fn the_dead_mans_switch_cancels_every_order_at_its_time_unless_renewed_or_disarmed() {
    let mut h = Harness::new();
    let (a, b) = (funded(&mut h, "a@x"), funded(&mut h, "b@x"));
    h.price(BTC, usd(60_000));
    let o1 = place(&mut h, limit_long(a, BTC, usd(59_000)));
    let o2 = place(&mut h, limit_long(a, BTC, usd(58_000)));
    let theirs = place(&mut h, limit_long(b, BTC, usd(59_000)));
    let arm = |ms| CommandKind::ScheduleCancel { account: a, after_ms: ms };
    for short_or_long in [1_000, 86_400_001] {
        assert_eq!(h.run(arm(Some(short_or_long))), Err(Reason::InvalidRequest));
    }
    assert_eq!(
        h.run(arm(Some(10_000))),
        Ok(ReplyData::CancelSchedule { at_ns: Some(T0 + 10 * SECOND) })
    );
    // Renewed 8 s later: now due at 18 s.
    h.advance(8 * SECOND);
    assert_eq!(
        h.run(arm(Some(10_000))),
        Ok(ReplyData::CancelSchedule { at_ns: Some(T0 + 18 * SECOND) })
    );
    // A tick at 17.9 s: nothing fires.
    h.advance(9_900_000_000);
    h.price(BTC, usd(60_000));
    assert_eq!(pending(&mut h, a), vec![o1.id, o2.id]);
    // The first command at or after 18 s (any: a tick here) cancels both, before it applies.
    h.advance(100_000_000);
    let from = h.out.len();
    h.price(BTC, usd(60_000));
    let ch = changes_since(&h, from);
    assert_eq!(
        ch[0],
        Change::CancelScheduleFired { account: a, at_ns: T0 + 18 * SECOND, cancelled: 2 }
    );
    assert!(
        matches!(ch[1], Change::OrderEnded { order, end: OrderEnd::Cancelled, .. } if order == o1.id)
    );
    assert!(
        matches!(ch[2], Change::OrderEnded { order, end: OrderEnd::Cancelled, .. } if order == o2.id)
    );
    assert!(pending(&mut h, a).is_empty());
    assert_eq!(h.balance(a).order_margin, Usdc::ZERO);
    assert_eq!(pending(&mut h, b), vec![theirs.id], "not another account's");
    // Fired once: disarmed after.
    h.advance(60 * SECOND);
    let from = h.out.len();
    h.price(BTC, usd(60_000));
    assert!(
        !changes_since(&h, from).iter().any(|c| matches!(c, Change::CancelScheduleFired { .. }))
    );
    // Disarmed before its time: nothing fires.
    let o3 = place(&mut h, limit_long(a, BTC, usd(59_000)));
    h.run(arm(Some(5_000))).unwrap();
    assert_eq!(h.run(arm(None)), Ok(ReplyData::CancelSchedule { at_ns: None }));
    h.advance(10 * SECOND);
    h.price(BTC, usd(60_000));
    assert_eq!(pending(&mut h, a), vec![o3.id]);
}

#[test]
fn an_armed_switch_survives_a_snapshot_and_fires_the_same_after_restore() {
    let mut h = Harness::new();
    let a = funded(&mut h, "a@x");
    h.price(BTC, usd(60_000));
    place(&mut h, limit_long(a, BTC, usd(59_000)));
    h.run(CommandKind::ScheduleCancel { account: a, after_ms: Some(30_000) }).unwrap();
    let snap = h.engine.snapshot();
    let mut restored = Engine::restore(h.engine.config().clone(), &snap).unwrap();
    assert_eq!(restored.state_hash(), h.engine.state_hash());
    // The same tick 31 s later on both: the switch fires on each, the same way.
    let tick = Tick {
        market: BTC,
        bid: usd(60_000),
        ask: usd(60_000),
        update_id: 99,
        exchange_time_us: 0,
    };
    let cmd = Command::new(RequestId::NONE, h.now + 31 * SECOND, CommandKind::PriceTick(tick));
    let (mut live_out, mut restored_out) = (Vec::new(), Vec::new());
    h.engine.apply(&cmd, &mut live_out);
    restored.apply(&cmd, &mut restored_out);
    assert_eq!(live_out, restored_out);
    assert!(restored_out.iter().any(|o| matches!(
        o,
        Output::Change(ChangeRecord {
            change: Change::CancelScheduleFired { cancelled: 1, .. },
            ..
        })
    )));
    assert_eq!(restored.state_hash(), h.engine.state_hash());
    assert!(pending(&mut h, a).is_empty());
}
