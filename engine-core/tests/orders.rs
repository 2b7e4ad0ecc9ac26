//! Pending orders, TP/SL edits, margin calls and trailing stops: scenarios with every figure worked out by hand
//! in the comment beside it (`Harness::run` checks conservation after every command), and
//! properties of when an order fills.

mod common;

use common::*;
use engine_core::prelude::*;
use proptest::prelude::*;

fn funded(h: &mut Harness, login: &str) -> AccountId {
    let a = h.account(login);
    h.deposit(a, usdc(100_000)).unwrap(); // + the 5 000 demo deposit
    a
}

fn order_req(
    a: AccountId,
    side: Side,
    kind: OrderKind,
    price: Price,
    lev: u32,
    q: Qty,
) -> OrderRequest {
    OrderRequest {
        account: a,
        market: BTC,
        side,
        kind,
        price,
        leverage: lev,
        size: Size::Quantity(q),
        take_profit: None,
        stop_loss: None,
        expires_at_ns: None,
        client_order_id: None,
    }
}

fn place(h: &mut Harness, req: OrderRequest) -> Result<OrderView, Reason> {
    match h.run(CommandKind::PlaceOrder(req))? {
        ReplyData::Order(o) => Ok(o),
        other => panic!("place replied {other:?}"),
    }
}

fn orders(h: &mut Harness, account: AccountId) -> Vec<OrderView> {
    let from = h.out.len();
    h.run(CommandKind::QueryOrders { account }).unwrap();
    h.out[from..]
        .iter()
        .filter_map(|o| match o {
            Output::Item { item: Item::Order(v), .. } => Some(*v),
            _ => None,
        })
        .collect()
}

/// The margin calls recorded since output `from`.
fn margin_calls(h: &Harness, from: usize) -> Vec<Change> {
    changes_since(h, from).into_iter().filter(|c| matches!(c, Change::MarginCall { .. })).collect()
}

#[test]
fn a_limit_long_reserves_its_margin_and_fills_on_the_first_tick_at_or_below_it() {
    let mut h = Harness::new();
    let a = funded(&mut h, "t@x");
    h.price(BTC, usd(60_000));
    // 1 BTC at 59 000, 10x: reserved = ceil(59 000 * 1 / 10) = 5 900 (no open fee).
    let o =
        place(&mut h, order_req(a, Side::Long, OrderKind::Limit, usd(59_000), 10, btc(1))).unwrap();
    assert_eq!(o.reserved, usdc(5_900));
    let b = h.balance(a);
    assert_eq!((b.available, b.order_margin, b.equity), (usdc(99_100), usdc(5_900), usdc(105_000)));
    // Ask one cent above the limit: nothing.
    let from = h.out.len();
    h.tick(BTC, usd(59_000), Price(5_900_001)).unwrap();
    assert_eq!(changes_since(&h, from).len(), 1, "only the price: {:?}", changes_since(&h, from));
    // Ask 58 999 <= 59 000: fills at the ask (better than the limit).
    let from = h.out.len();
    h.tick(BTC, usd(58_990), usd(58_999)).unwrap();
    let ch = changes_since(&h, from);
    let Change::Opened { position, entry_price, margin, .. } = ch[1] else { panic!("{ch:?}") };
    assert_eq!((entry_price, margin), (usd(58_999), Usdc(5_899_900_000))); // ceil(58 999 / 10)
    assert_eq!(
        ch[2],
        Change::OrderEnded {
            order: o.id,
            account: a,
            market: BTC,
            released: usdc(5_900),
            end: OrderEnd::Filled(position),
        }
    );
    // 105 000 - 5 899.90 margin.
    let b = h.balance(a);
    assert_eq!((b.available, b.order_margin), (Usdc(99_100_100_000), Usdc::ZERO));
    assert!(orders(&mut h, a).is_empty());
    assert_eq!(h.position(a, position).quantity, btc(1));
}

#[test]
fn stops_trigger_on_the_worse_side_and_fill_at_the_ticks_price() {
    let mut h = Harness::new();
    let a = funded(&mut h, "t@x");
    h.price(BTC, usd(60_000));
    // Short stop at 59 500: sells when the bid falls to it or below.
    let o =
        place(&mut h, order_req(a, Side::Short, OrderKind::Stop, usd(59_500), 5, btc(2))).unwrap();
    assert_eq!(o.reserved, usdc(23_800)); // 2 * 59 500 / 5
    h.price(BTC, usd(59_501));
    assert_eq!(orders(&mut h, a).len(), 1);
    // The bid gaps to 59 000: fills there (a stop gives no price guarantee).
    let from = h.out.len();
    h.tick(BTC, usd(59_000), usd(59_010)).unwrap();
    let ch = changes_since(&h, from);
    let Change::Opened { side, entry_price, margin, .. } = ch[1] else { panic!("{ch:?}") };
    assert_eq!((side, entry_price, margin), (Side::Short, usd(59_000), usdc(23_600)));
    // 105 000 - 23 600.
    assert_eq!(h.balance(a).available, usdc(81_400));
}

#[test]
fn orders_on_the_wrong_side_or_already_expired_are_refused_and_change_nothing() {
    let mut h = Harness::new();
    let a = funded(&mut h, "t@x");
    h.price(BTC, usd(60_000));
    let before = h.business();
    let cases = [
        (Side::Long, OrderKind::Limit, usd(60_000)), // ask <= limit now: would fill at once
        (Side::Long, OrderKind::Stop, usd(60_000)),
        (Side::Short, OrderKind::Limit, usd(59_000)),
        (Side::Short, OrderKind::Stop, usd(61_000)),
    ];
    for (side, kind, price) in cases {
        let r = place(&mut h, order_req(a, side, kind, price, 10, btc(1)));
        assert_eq!(r, Err(Reason::InvalidOrderPrice), "{side:?} {kind:?}");
    }
    let expired = OrderRequest {
        expires_at_ns: Some(h.now),
        ..order_req(a, Side::Long, OrderKind::Limit, usd(50_000), 10, btc(1))
    };
    assert_eq!(place(&mut h, expired), Err(Reason::InvalidExpiry));
    let tp_below = OrderRequest {
        take_profit: Some(usd(49_000)),
        ..order_req(a, Side::Long, OrderKind::Limit, usd(50_000), 10, btc(1))
    };
    assert_eq!(place(&mut h, tp_below), Err(Reason::InvalidTakeProfit));
    let too_big = order_req(a, Side::Long, OrderKind::Limit, usd(50_000), 1, btc(3));
    assert_eq!(place(&mut h, too_big), Err(Reason::InsufficientBalance)); // 150 000 > 105 000
    let mut after = h.business();
    after.markets = before.markets.clone();
    assert_eq!(after, before);
}

#[test]
fn an_expired_order_never_fills_and_a_cancelled_one_gives_everything_back() {
    let mut h = Harness::new();
    let a = funded(&mut h, "t@x");
    let b = funded(&mut h, "u@x");
    h.price(BTC, usd(60_000));
    let gtt = OrderRequest {
        expires_at_ns: Some(h.now + 10_000_000_000),
        ..order_req(a, Side::Long, OrderKind::Limit, usd(59_000), 10, btc(1))
    };
    let o = place(&mut h, gtt).unwrap();
    h.advance(9_999_999_999);
    h.price(BTC, usd(59_500));
    assert_eq!(orders(&mut h, a).len(), 1, "live one nanosecond before its expiry");
    h.advance(1);
    // The tick that would fill it arrives exactly at its expiry: it expires first.
    let from = h.out.len();
    h.price(BTC, usd(58_000));
    let ch = changes_since(&h, from);
    assert!(
        matches!(ch[0], Change::OrderEnded { order, end: OrderEnd::Expired, .. } if order == o.id),
        "{ch:?}"
    );
    assert!(!ch.iter().any(|c| matches!(c, Change::Opened { .. })));
    assert_eq!(h.balance(a).available, usdc(105_000));

    let o =
        place(&mut h, order_req(a, Side::Long, OrderKind::Limit, usd(50_000), 10, btc(1))).unwrap();
    let cancel = |account, order| CommandKind::CancelOrder { account, order, key: None };
    assert_eq!(h.run(cancel(b, o.id)), Err(Reason::UnknownOrder), "not b's order");
    assert_eq!(h.run(cancel(a, o.id)), Ok(ReplyData::Order(o)));
    assert_eq!(h.run(cancel(a, o.id)), Err(Reason::UnknownOrder));
    assert_eq!(h.balance(a).available, usdc(105_000));
}

#[test]
fn a_fill_the_engine_would_refuse_cancels_the_order_with_the_reason() {
    let mut h = Harness::new();
    let a = funded(&mut h, "t@x");
    h.price(BTC, usd(60_000));
    // Long stop at 61 000, 1 BTC at 100x: reserved 610.
    let o =
        place(&mut h, order_req(a, Side::Long, OrderKind::Stop, usd(61_000), 100, btc(1))).unwrap();
    assert_eq!(o.reserved, usdc(610));
    h.run(CommandKind::Withdraw { account: a, amount: usdc(104_390), key: None }).unwrap();
    assert_eq!(h.balance(a).available, Usdc::ZERO);
    // The ask gaps to 70 000: the margin would be 700 > 610 held + 0 available.
    let from = h.out.len();
    h.price(BTC, usd(70_000));
    let ch = changes_since(&h, from);
    assert_eq!(
        ch[1],
        Change::OrderEnded {
            order: o.id,
            account: a,
            market: BTC,
            released: usdc(610),
            end: OrderEnd::Rejected(Reason::InsufficientBalance),
        }
    );
    assert_eq!(h.balance(a).available, usdc(610));
}

#[test]
fn take_profit_and_stop_loss_can_be_set_changed_and_removed_on_an_open_position() {
    let mut h = Harness::new();
    let a = funded(&mut h, "t@x");
    h.price(BTC, usd(60_000));
    let p = h.open(h.open_req(a, Side::Long, 10, Size::Quantity(btc(1)))).unwrap();
    let set = |tp: Option<i64>, sl: Option<i64>| CommandKind::SetTriggers {
        account: a,
        position: p.id,
        take_profit: tp.map(usd),
        stop_loss: sl.map(usd),
        key: None,
    };
    // Against the mark (bid 60 000): a TP must be above, an SL below.
    assert_eq!(h.run(set(Some(60_000), None)), Err(Reason::InvalidTakeProfit));
    assert_eq!(h.run(set(None, Some(60_000))), Err(Reason::InvalidStopLoss));
    let v = match h.run(set(Some(62_000), Some(58_000))).unwrap() {
        ReplyData::Position(v) => v,
        other => panic!("{other:?}"),
    };
    assert_eq!((v.take_profit, v.stop_loss), (Some(usd(62_000)), Some(usd(58_000))));
    // Removed: 57 000 passes the old stop without closing.
    h.run(set(None, None)).unwrap();
    h.price(BTC, usd(57_000));
    assert_eq!(h.position(a, p.id).status, PositionStatus::Open);
    // Set again against the new mark (57 000); the TP fires at 61 000: PnL from the entry,
    // 61 000 - 60 000 = +1 000.
    h.run(set(Some(61_000), None)).unwrap();
    h.price(BTC, usd(60_999));
    assert_eq!(h.position(a, p.id).status, PositionStatus::Open);
    let from = h.out.len();
    h.price(BTC, usd(61_000));
    let closed = closed_events(&h.events_since(from));
    let info = closed[0].close.unwrap();
    assert_eq!((info.reason, info.realized_pnl), (CloseReason::TakeProfit, usdc(1_000)));
    assert_eq!(h.run(set(Some(62_000), None)), Err(Reason::PositionClosed));
}

#[test]
fn a_margin_call_fires_once_per_crossing_of_the_level() {
    let mut h = Harness::new();
    let a = funded(&mut h, "t@x");
    h.price(BTC, usd(60_000));
    // 1 BTC at 60 000, 50x: margin 1 200. Level 1.5 x mmr 0.5 % = 0.75 %: called where
    // 1 200 + (p - 60 000) = 0.0075 p, p = 58 800 / 0.9925 = 59 244.3325 -> 59 244.34 (rounded
    // toward the mark: a little early). Liquidated at 58 800 / 0.995 -> 59 095.48.
    let p = h.open(h.open_req(a, Side::Long, 50, Size::Quantity(btc(1)))).unwrap();
    assert_eq!(p.liquidation_price, Price(5_909_548));
    let from = h.out.len();
    h.price(BTC, Price(5_924_435));
    assert!(margin_calls(&h, from).is_empty());
    h.price(BTC, Price(5_924_434));
    assert_eq!(
        margin_calls(&h, from),
        vec![Change::MarginCall {
            position: p.id,
            account: a,
            market: BTC,
            mark: Price(5_924_434),
            margin_call_price: Price(5_924_434),
            liquidation_price: Price(5_909_548),
        }]
    );
    h.price(BTC, usd(59_200));
    h.price(BTC, usd(59_100));
    assert_eq!(margin_calls(&h, from).len(), 1, "once while below");
    h.price(BTC, Price(5_924_435)); // back above: re-armed
    h.price(BTC, usd(59_150));
    assert_eq!(margin_calls(&h, from).len(), 2, "again after crossing back");
    // Added margin moves the level away: 2 200 margin -> (60 000 - 2 200) / 0.9925 = 58 236.78.
    h.run(CommandKind::AddMargin { account: a, position: p.id, amount: usdc(1_000), key: None })
        .unwrap();
    h.price(BTC, usd(58_300));
    assert_eq!(margin_calls(&h, from).len(), 2);
    h.price(BTC, Price(5_823_678));
    assert_eq!(margin_calls(&h, from).len(), 3);
}

#[test]
fn pending_orders_and_margin_state_survive_a_snapshot() {
    let mut h = Harness::new();
    let a = funded(&mut h, "t@x");
    h.price(BTC, usd(60_000));
    let gtt = OrderRequest {
        expires_at_ns: Some(h.now + 1_000_000_000),
        ..order_req(a, Side::Short, OrderKind::Limit, usd(61_000), 10, btc(1))
    };
    place(&mut h, gtt).unwrap();
    place(&mut h, order_req(a, Side::Long, OrderKind::Stop, usd(62_000), 10, btc(1))).unwrap();
    h.open(h.open_req(a, Side::Long, 50, Size::Quantity(btc(1)))).unwrap();
    h.price(BTC, usd(59_200)); // margin call: disarmed
    let snap = h.engine.snapshot();
    let r = Engine::restore(h.engine.config().clone(), &snap).unwrap();
    assert_eq!(r.state_hash(), h.engine.state_hash());
    assert_eq!(r.snapshot(), snap);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Over a random path of asks, a long limit fills on exactly the first tick whose ask is at
    /// or below it, at that ask, and never before; an order that expires first never fills.
    #[test]
    fn a_limit_fills_exactly_on_the_first_crossing_tick(
        limit_off in 1i64..500,
        moves in proptest::collection::vec(-100i64..100, 1..60),
        expiry_ticks in proptest::option::of(1usize..60),
    ) {
        let mut h = Harness::new();
        let a = funded(&mut h, "t@x");
        let start = 6_000_000i64;
        h.price(BTC, Price(start));
        let limit = start - limit_off;
        let step = 1_000_000_000u64;
        let req = OrderRequest {
            expires_at_ns: expiry_ticks.map(|n| h.now + n as u64 * step),
            ..order_req(a, Side::Long, OrderKind::Limit, Price(limit), 10, btc(1))
        };
        let o = place(&mut h, req).unwrap();
        let mut ask = start;
        let mut expected = None;
        for (i, m) in moves.iter().enumerate() {
            ask += m;
            h.advance(step);
            let live = expiry_ticks.is_none_or(|n| i + 1 < n);
            if expected.is_none() && live && ask <= limit {
                expected = Some((i, ask));
            }
            let from = h.out.len();
            h.tick(BTC, Price(ask - 1), Price(ask)).unwrap();
            let filled = changes_since(&h, from).into_iter().find_map(|c| match c {
                Change::OrderEnded { order, end: OrderEnd::Filled(p), .. } if order == o.id => Some(p),
                _ => None,
            });
            match (filled, expected) {
                (Some(p), Some((at, px))) => {
                    prop_assert_eq!(at, i);
                    prop_assert_eq!(h.position(a, p).entry_price, Price(px));
                    return Ok(());
                }
                (Some(_), None) => prop_assert!(false, "filled at tick {} before crossing or after expiry", i),
                (None, Some(_)) => prop_assert!(false, "crossed at tick {} without filling", i),
                (None, None) => {}
            }
        }
    }
}

fn trail(
    h: &mut Harness,
    a: AccountId,
    p: PositionId,
    d: Option<TrailDistance>,
) -> Result<PositionView, Reason> {
    let kind = CommandKind::SetTrailingStop { account: a, position: p, distance: d, key: None };
    match h.run(kind)? {
        ReplyData::Position(v) => Ok(v),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_trailing_stop_follows_the_best_mark_and_closes_when_the_mark_falls_its_distance_behind() {
    let mut h = Harness::new();
    let a = funded(&mut h, "t@x");
    h.price(BTC, usd(60_000));
    let long = h.open(h.open_req(a, Side::Long, 2, Size::Quantity(btc(1)))).unwrap();
    let short = h.open(h.open_req(a, Side::Short, 2, Size::Quantity(btc(1)))).unwrap();
    assert_eq!(
        trail(&mut h, a, long.id, Some(TrailDistance::Price(usd(60_000)))),
        Err(Reason::InvalidTrailingStop)
    );
    assert_eq!(
        trail(&mut h, a, long.id, Some(TrailDistance::Bps(0))),
        Err(Reason::InvalidTrailingStop)
    );
    // Long: 1 000 behind the best bid; short: 2 % above the best ask.
    let v = trail(&mut h, a, long.id, Some(TrailDistance::Price(usd(1_000)))).unwrap();
    assert_eq!(v.trailing_stop.map(|t| t.stop_price), Some(usd(59_000)));
    let v = trail(&mut h, a, short.id, Some(TrailDistance::Bps(200))).unwrap();
    assert_eq!(v.trailing_stop.map(|t| t.stop_price), Some(usd(61_200))); // 60 000 * 1.02
    // Up to 62 000: the long's stop follows to 61 000; the short's stays at 61 200 and fires.
    let from = h.out.len();
    h.price(BTC, usd(62_000));
    let closed = closed_events(&h.events_since(from));
    assert_eq!(closed.len(), 1);
    let c = closed[0].close.unwrap();
    assert_eq!(
        (closed[0].id, c.reason, c.exit_price),
        (short.id, CloseReason::TrailingStop, usd(62_000))
    );
    assert_eq!(h.position(a, long.id).trailing_stop.map(|t| t.stop_price), Some(usd(61_000)));
    // Down to 61 500: the stop stays at 61 000 (it never follows the mark down).
    h.price(BTC, usd(61_500));
    assert_eq!(h.position(a, long.id).trailing_stop.map(|t| t.stop_price), Some(usd(61_000)));
    h.price(BTC, Price(6_100_001));
    assert_eq!(h.position(a, long.id).status, PositionStatus::Open);
    let from = h.out.len();
    h.price(BTC, usd(60_900));
    let closed = closed_events(&h.events_since(from));
    let c = closed[0].close.unwrap();
    // Closed at the tick's bid, 60 900: PnL +900.
    assert_eq!(
        (c.reason, c.exit_price, c.realized_pnl),
        (CloseReason::TrailingStop, usd(60_900), usdc(900))
    );
}

#[test]
fn a_removed_or_replaced_trailing_stop_no_longer_fires_and_survives_a_snapshot() {
    let mut h = Harness::new();
    let a = funded(&mut h, "t@x");
    h.price(BTC, usd(60_000));
    let p = h.open(h.open_req(a, Side::Long, 2, Size::Quantity(btc(1)))).unwrap();
    let q = h.open(h.open_req(a, Side::Long, 2, Size::Quantity(btc(1)))).unwrap();
    trail(&mut h, a, p.id, Some(TrailDistance::Price(usd(100)))).unwrap();
    trail(&mut h, a, q.id, Some(TrailDistance::Bps(100))).unwrap();
    h.price(BTC, usd(61_000)); // peaks 61 000: stops 60 900 and 60 390
    trail(&mut h, a, p.id, None).unwrap();
    // Replaced: restarts from the current mark, 61 000 -> 59 000.
    trail(&mut h, a, q.id, Some(TrailDistance::Price(usd(2_000)))).unwrap();
    let snap = h.engine.snapshot();
    let r = Engine::restore(h.engine.config().clone(), &snap).unwrap();
    assert_eq!(r.state_hash(), h.engine.state_hash());
    h.price(BTC, usd(60_000));
    assert_eq!(h.position(a, p.id).status, PositionStatus::Open);
    assert_eq!(h.position(a, q.id).status, PositionStatus::Open);
    assert_eq!(h.position(a, q.id).trailing_stop.map(|t| t.stop_price), Some(usd(59_000)));
}

/// Brute force: each stop's peak is the best mark since it was set; it fires on the first tick
/// whose mark is at or beyond `stop(peak)`.
fn reference_stop(side: Side, peak: i64, d: TrailDistance) -> i64 {
    match (side, d) {
        (Side::Long, TrailDistance::Price(p)) => peak - p.0,
        (Side::Short, TrailDistance::Price(p)) => peak + p.0,
        // ceil(peak * (1 - bps)) for a long, floor(peak * (1 + bps)) for a short.
        (Side::Long, TrailDistance::Bps(b)) => (peak * (10_000 - i64::from(b)) + 9_999) / 10_000,
        (Side::Short, TrailDistance::Bps(b)) => peak * (10_000 + i64::from(b)) / 10_000,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Trailing stops set at random times with random distances, over a random price path,
    /// close on exactly the tick a brute-force reference says, at that tick's mark.
    #[test]
    fn trailing_stops_agree_with_a_brute_force_reference(
        path in proptest::collection::vec((-300i64..300, 0i64..50), 5..80),
        stops in proptest::collection::vec((0usize..80, any::<bool>(), any::<bool>(), 1i64..900), 1..12),
    ) {
        let mut h = Harness::new();
        let a = funded(&mut h, "t@x");
        h.deposit(a, usdc(1_000_000)).unwrap();
        let mut mid = 6_000_000i64;
        // The last applied bid and ask: a stop starts from these.
        let mut last = (mid, mid + 10);
        h.tick(BTC, Price(last.0), Price(last.1)).unwrap();
        // (position, side, distance, peak, expected close tick)
        let mut live: Vec<(PositionId, Side, TrailDistance, i64, Option<usize>)> = Vec::new();
        for (i, &(mv, spread)) in path.iter().enumerate() {
            for &(_, long, bps, size) in stops.iter().filter(|s| s.0 == i) {
                let side = if long { Side::Long } else { Side::Short };
                let p = h.open(h.open_req(a, side, 1, Size::Quantity(btc(1)))).unwrap();
                let d = if bps { TrailDistance::Bps(u32::try_from(size).unwrap()) } else { TrailDistance::Price(Price(size * 100)) };
                trail(&mut h, a, p.id, Some(d)).unwrap();
                live.push((p.id, side, d, if long { last.0 } else { last.1 }, None));
            }
            mid = (mid + mv * 100).max(1_000_000);
            let (bid, ask) = (mid, mid + spread);
            let from = h.out.len();
            h.tick(BTC, Price(bid), Price(ask)).unwrap();
            last = (bid, ask);
            let closed = closed_events(&h.events_since(from));
            for s in live.iter_mut().filter(|s| s.4.is_none()) {
                let mark = if s.1 == Side::Long { bid } else { ask };
                s.3 = if s.1 == Side::Long { s.3.max(mark) } else { s.3.min(mark) };
                let stop = reference_stop(s.1, s.3, s.2);
                let fired = if s.1 == Side::Long { mark <= stop } else { mark >= stop };
                let engine = closed.iter().find(|v| v.id == s.0);
                prop_assert_eq!(fired, engine.is_some(), "position {:?} at tick {} (stop {})", s.0, i, stop);
                if let Some(v) = engine {
                    let c = v.close.unwrap();
                    prop_assert_eq!((c.reason, c.exit_price), (CloseReason::TrailingStop, Price(mark)));
                    s.4 = Some(i);
                }
            }
        }
    }
}

#[test]
fn a_position_opened_in_the_slot_a_liquidation_freed_in_the_same_tick_is_not_called_for_it() {
    // The tick liquidates A (its armed margin-call entry stays in the index for that tick's
    // margin-call pass), then fills an order into B, which reuses A's slab slot. The pass takes
    // A's stale entry by slot: B must not be called for A's level, and stays indexed for its own.
    let mut h = Harness::new();
    let a = funded(&mut h, "reuse@x");
    h.price(BTC, usd(60_000));
    let pa = h.open(h.open_req(a, Side::Long, 50, Size::Quantity(btc(1)))).unwrap();
    assert_eq!(pa.liquidation_price, Price(5_909_548)); // called at 59 244.34
    place(&mut h, order_req(a, Side::Long, OrderKind::Limit, usd(59_000), 50, btc(1))).unwrap();
    let from = h.out.len();
    h.price(BTC, usd(59_000));
    let closed = closed_events(&h.events_since(from));
    assert_eq!(closed.len(), 1, "A liquidated");
    assert_eq!(closed[0].close.unwrap().reason, CloseReason::Liquidation);
    let open = h.engine.open_positions();
    assert_eq!(open, 1, "B opened by the fill");
    assert!(
        margin_calls(&h, from).is_empty(),
        "B is above its own level: {:?}",
        margin_calls(&h, from)
    );
    // B (entry 59 000, margin 1 180): called at (59 000 - 1 180) / 0.9925 = 58 256.93 -> 58 256.93
    // rounded toward the mark; once, by its own entry.
    let b = PositionId(pa.id.0 + 1);
    let from = h.out.len();
    h.price(BTC, usd(58_300));
    assert!(margin_calls(&h, from).is_empty());
    h.price(BTC, usd(58_250));
    assert_eq!(margin_calls(&h, from).len(), 1);
    assert!(
        matches!(margin_calls(&h, from)[0], Change::MarginCall { position, .. } if position == b)
    );
    h.close(a, b, None).expect("B closes: its index entries are consistent");
    assert_eq!(h.engine.open_positions(), 0);
}
