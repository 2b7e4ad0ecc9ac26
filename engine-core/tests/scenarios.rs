//! Table-driven scenarios at docs/DESIGN.md's rounding rules. Every figure is worked out by hand in the
//! comment beside it; `Harness::run` also checks conservation after every command.

mod common;

use common::*;
use engine_core::prelude::*;

fn funded(h: &mut Harness, login: &str) -> AccountId {
    let a = h.account(login);
    h.deposit(a, usdc(100_000)).unwrap();
    a
}

fn open_qty(h: &mut Harness, a: AccountId, side: Side, lev: u32, q: Qty) -> PositionView {
    let req = h.open_req(a, side, lev, Size::Quantity(q));
    h.open(req).expect("open accepted")
}

#[test]
fn liquidation_prices_at_1x_10x_100x_and_the_engine_liquidates_exactly_there() {
    // 1 BTC at 60 000.00. Long liq = (e*q - m)/(q*0.995) rounded up; short (e*q + m)/(q*1.005)
    // rounded down (see math::tests for the arithmetic).
    let cases: &[(Side, u32, i64)] = &[
        (Side::Long, 1, 0),
        (Side::Long, 10, 5_427_136),
        (Side::Long, 100, 5_969_850),
        (Side::Short, 1, 11_940_298),
        (Side::Short, 10, 6_567_164),
        (Side::Short, 100, 6_029_850),
    ];
    for &(side, lev, liq) in cases {
        let mut h = Harness::new();
        let a = funded(&mut h, "t@x");
        h.price(BTC, usd(60_000));
        let p = open_qty(&mut h, a, side, lev, btc(1));
        assert_eq!(p.margin, usdc(60_000 / i64::from(lev)), "{side:?} {lev}x margin");
        assert_eq!(p.liquidation_price, Price(liq), "{side:?} {lev}x liquidation price");
        if liq == 0 {
            // A 1x long can lose at most its margin: never liquidated, even at the lowest price.
            let from = h.out.len();
            h.price(BTC, Price(1));
            assert!(closed_events(&h.events_since(from)).is_empty());
            continue;
        }
        let (before, at) = match side {
            Side::Long => (Price(liq + 1), Price(liq)),
            Side::Short => (Price(liq - 1), Price(liq)),
        };
        let from = h.out.len();
        h.price(BTC, before);
        assert!(closed_events(&h.events_since(from)).is_empty(), "{side:?} {lev}x early");
        assert_eq!(h.position(a, p.id).status, PositionStatus::Open);
        let from = h.out.len();
        h.price(BTC, at);
        let closed = closed_events(&h.events_since(from));
        assert_eq!(closed.len(), 1, "{side:?} {lev}x liquidated at its price");
        let info = closed[0].close.unwrap();
        assert_eq!(info.reason, CloseReason::Liquidation);
        assert_eq!(info.exit_price, at);
    }
}

#[test]
fn liquidation_fee_goes_to_the_insurance_fund_and_the_rest_to_the_trader() {
    let mut h = Harness::new();
    let a = funded(&mut h, "t@x");
    h.price(BTC, usd(60_000));
    let p = open_qty(&mut h, a, Side::Long, 10, btc(1));
    let from = h.out.len();
    h.price(BTC, Price(5_427_136));
    let info = closed_events(&h.events_since(from))[0].close.unwrap();
    // equity = 6000 + (54 271.36 - 60 000) = 271.36; fee = min(271.36, ceil(0.005 * 54 271.36)
    // = 271.3568) = 271.3568; payout = 0.0032 USDC.
    assert_eq!(info.realized_pnl, Usdc(-5_728_640_000));
    assert_eq!(info.fee, Usdc(271_356_800));
    assert_eq!(info.payout, Usdc(3_200));
    let s = h.summary();
    assert_eq!(s.insurance_fund, Usdc(271_356_800));
    assert_eq!(s.house_balance, Usdc(5_728_640_000));
    assert_eq!(h.balance(a).available, Usdc(105_000_000_000 - 6_000_000_000 + 3_200));
    assert_eq!(
        h.run(CommandKind::ClosePosition { account: a, position: p.id, quantity: None, key: None }),
        Err(Reason::PositionClosed)
    );
}

#[test]
fn partial_close_releases_margin_pro_rata_and_keeps_the_liquidation_price() {
    let mut h = Harness::new();
    let a = funded(&mut h, "t@x");
    h.price(BTC, usd(60_000));
    let p = open_qty(&mut h, a, Side::Long, 10, btc(1));
    h.price(BTC, usd(61_000));
    // Close 0.4 BTC: PnL 0.4 * 1000 = 400, margin released 0.4 * 6000 = 2400, payout 2800.
    let part = h.close(a, p.id, Some(Qty(40_000))).unwrap();
    assert_eq!(part.status, PositionStatus::Closed);
    assert_eq!(part.quantity, Qty(40_000));
    assert_eq!(part.margin, usdc(2_400));
    let info = part.close.unwrap();
    assert_eq!((info.realized_pnl, info.payout), (usdc(400), usdc(2_800)));
    assert_eq!((info.exit_price, info.reason), (usd(61_000), CloseReason::Manual));
    // Remaining 0.6 BTC with 3600: (36 000 - 3600) / (0.6 * 0.995) = 54 271.356.. -> 54 271.36.
    let rest = h.position(a, p.id);
    assert_eq!((rest.quantity, rest.margin), (Qty(60_000), usdc(3_600)));
    assert_eq!(rest.liquidation_price, Price(5_427_136));
    assert_eq!(rest.unrealized_pnl, usdc(600));
    // Bad partial quantities change nothing.
    let before = h.business();
    for (q, why) in [
        (Qty(0), Reason::InvalidQuantity),
        (Qty(-5), Reason::InvalidQuantity),
        (Qty(60_001), Reason::InvalidQuantity),
    ] {
        assert_eq!(h.close(a, p.id, Some(q)), Err(why));
    }
    assert_eq!(h.business(), before);
    let last = h.close(a, p.id, None).unwrap();
    assert_eq!(last.close.unwrap().payout, usdc(4_200));
    assert_eq!(h.balance(a).available, usdc(106_000));
    h.run(CommandKind::QueryPositions { account: a, status: PositionStatus::Closed }).unwrap();
    assert_eq!(h.out.iter().filter(|o| matches!(o, Output::Item { .. })).count(), 2);
    // The closed part has an id of its own (a closed list never repeats one), and names the
    // position it came from; the final close keeps the position's id.
    assert_ne!(part.id, p.id);
    assert_eq!(info.position, p.id);
    assert_eq!((last.id, last.close.unwrap().position), (p.id, p.id));
    let ids: Vec<PositionId> = h
        .out
        .iter()
        .filter_map(|o| match o {
            Output::Item { item: Item::Position(v), .. } => Some(v.id),
            _ => None,
        })
        .collect();
    assert_eq!(ids, [p.id, part.id], "newest first, each id once");
    assert_eq!(h.position(a, part.id).quantity, Qty(40_000), "the part is found by its id");
    // A later open does not reuse the part's id.
    let next = open_qty(&mut h, a, Side::Long, 10, btc(1));
    assert!(next.id.0 > part.id.0);
}

#[test]
fn partial_close_cannot_leave_less_than_the_minimum_quantity() {
    let mut cfg = EngineConfig::default();
    cfg.markets[0].min_qty = 1_000; // 0.01 BTC
    let mut h = Harness::with(cfg);
    let a = funded(&mut h, "t@x");
    h.price(BTC, usd(60_000));
    let p = open_qty(&mut h, a, Side::Long, 10, Qty(1_500));
    assert_eq!(h.close(a, p.id, Some(Qty(600))), Err(Reason::QuantityTooSmall));
    assert!(h.close(a, p.id, Some(Qty(500))).is_ok());
}

#[test]
fn take_profit_and_stop_loss_close_at_the_tick_price_when_it_gaps_past_the_trigger() {
    let mut h = Harness::new();
    let a = funded(&mut h, "t@x");
    h.price(BTC, usd(60_000));
    let with = |h: &Harness, side, tp: i64, sl: i64| OpenRequest {
        take_profit: Some(usd(tp)),
        stop_loss: Some(usd(sl)),
        ..h.open_req(a, side, 10, Size::Quantity(btc(1)))
    };
    let l1 = h.open(with(&h, Side::Long, 61_000, 59_000)).unwrap();
    let l2 = h.open(with(&h, Side::Long, 61_500, 59_500)).unwrap();
    let s3 = h.open(with(&h, Side::Short, 59_000, 61_000)).unwrap();
    let from = h.out.len();
    h.price(BTC, usd(62_000)); // gaps past both TPs and the short's SL
    let closed = closed_events(&h.events_since(from));
    let got: Vec<_> = closed
        .iter()
        .map(|v| {
            (
                v.id,
                v.close.unwrap().reason,
                v.close.unwrap().exit_price,
                v.close.unwrap().realized_pnl,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (l1.id, CloseReason::TakeProfit, usd(62_000), usdc(2_000)),
            (l2.id, CloseReason::TakeProfit, usd(62_000), usdc(2_000)),
            (s3.id, CloseReason::StopLoss, usd(62_000), usdc(-2_000)),
        ]
    );

    h.price(BTC, usd(60_000));
    let l4 = h.open(with(&h, Side::Long, 61_000, 59_000)).unwrap();
    let s5 = h.open(with(&h, Side::Short, 59_000, 61_000)).unwrap();
    let from = h.out.len();
    h.price(BTC, usd(58_000));
    let got: Vec<_> = closed_events(&h.events_since(from))
        .iter()
        .map(|v| (v.id, v.close.unwrap().reason, v.close.unwrap().realized_pnl))
        .collect();
    assert_eq!(
        got,
        vec![
            (l4.id, CloseReason::StopLoss, usdc(-2_000)),
            (s5.id, CloseReason::TakeProfit, usdc(2_000))
        ]
    );
}

#[test]
fn on_one_tick_stop_losses_run_before_liquidations_whatever_the_ids() {
    let mut h = Harness::new();
    let a = funded(&mut h, "t@x");
    h.price(BTC, usd(60_000));
    let liq = open_qty(&mut h, a, Side::Long, 100, btc(1)); // liq 59 698.50, lower id
    let sl = h
        .open(OpenRequest {
            stop_loss: Some(usd(59_800)),
            ..h.open_req(a, Side::Long, 10, Size::Quantity(btc(1)))
        })
        .unwrap();
    let from = h.out.len();
    h.price(BTC, usd(59_000));
    let order: Vec<_> = closed_events(&h.events_since(from))
        .iter()
        .map(|v| (v.id, v.close.unwrap().reason))
        .collect();
    assert_eq!(order, vec![(sl.id, CloseReason::StopLoss), (liq.id, CloseReason::Liquidation)]);
}

#[test]
fn bad_debt_is_paid_by_the_insurance_fund_then_the_house() {
    let mut h = Harness::new();
    let a = funded(&mut h, "a@x");
    let b = funded(&mut h, "b@x");
    h.price(BTC, usd(60_000));
    open_qty(&mut h, a, Side::Long, 10, btc(1));
    h.price(BTC, Price(5_427_136)); // fund gets 271.3568 (previous test)
    assert_eq!(h.summary().insurance_fund, Usdc(271_356_800));

    h.price(BTC, usd(60_000));
    let p = open_qty(&mut h, b, Side::Long, 100, btc(1)); // margin 600, liq 59 698.50
    let available = h.balance(b).available;
    let from = h.out.len();
    h.price(BTC, usd(58_000)); // equity 600 - 2000 = -1400
    let events = h.events_since(from);
    assert_eq!(
        events[0],
        Event::BadDebt {
            position: p.id,
            account: b,
            amount: usdc(1_400),
            insurance_paid: Usdc(271_356_800),
            house_paid: Usdc(1_128_643_200),
        }
    );
    let info = closed_events(&events)[0].close.unwrap();
    assert_eq!(
        (info.reason, info.payout, info.fee),
        (CloseReason::Liquidation, Usdc::ZERO, Usdc::ZERO)
    );
    assert_eq!(h.balance(b).available, available, "a trader's balance never goes negative");
    let s = h.summary();
    assert_eq!(s.insurance_fund, Usdc::ZERO);
    // House: +5728.64 from a's loss; +600 margin +271.3568 from the fund for b.
    assert_eq!(s.house_balance, Usdc(6_599_996_800));
}

#[test]
fn close_fee_is_charged_on_the_exit_notional_to_the_house() {
    let mut cfg = EngineConfig::default();
    cfg.markets[0].close_fee_rate = Ppm(1_000); // 0.1%
    let mut h = Harness::with(cfg);
    let a = funded(&mut h, "a@x");
    h.price(BTC, usd(60_000));
    let p = open_qty(&mut h, a, Side::Long, 100, btc(1)); // liq 59 698.50
    h.price(BTC, Price(5_969_851)); // one tick above liq: equity 298.51
    let from = h.out.len();
    let closed = h.close(a, p.id, None).unwrap();
    // fee = ceil(0.001 * 59 698.51) = 59.69851; payout = 600 - 301.49 - 59.69851 = 238.81149
    let info = closed.close.unwrap();
    assert_eq!(info.fee, Usdc(59_698_510));
    assert_eq!(info.payout, Usdc(238_811_490));
    assert!(h.events_since(from).is_empty());
}

#[test]
fn slippage_is_checked_against_the_expected_price() {
    let mut h = Harness::new();
    let a = funded(&mut h, "t@x");
    let req = |h: &Harness, side| OpenRequest {
        expected_price: Some(usd(60_000)),
        max_slippage_bps: 10, // long: ask <= 60 060; short: bid >= 59 940
        ..h.open_req(a, side, 10, Size::Margin(usdc(100)))
    };
    h.tick(BTC, usd(60_000), usd(60_061)).unwrap();
    assert_eq!(h.open(req(&h, Side::Long)), Err(Reason::SlippageExceeded));
    h.tick(BTC, usd(60_000), usd(60_060)).unwrap();
    assert_eq!(h.open(req(&h, Side::Long)).unwrap().entry_price, usd(60_060));
    h.tick(BTC, usd(59_939), usd(60_000)).unwrap();
    assert_eq!(h.open(req(&h, Side::Short)), Err(Reason::SlippageExceeded));
    h.tick(BTC, usd(59_940), usd(60_000)).unwrap();
    assert_eq!(h.open(req(&h, Side::Short)).unwrap().entry_price, usd(59_940));
}

#[test]
fn missing_and_stale_prices_are_rejected() {
    let mut h = Harness::new();
    let a = funded(&mut h, "t@x");
    let req = h.open_req(a, Side::Long, 10, Size::Margin(usdc(100)));
    assert_eq!(h.open(req), Err(Reason::NoPrice));
    h.price(BTC, usd(60_000));
    h.now += 5_000_000_001; // max_price_age 5 s, by receive time
    assert_eq!(h.open(req), Err(Reason::StalePrice));
    h.now -= 1;
    let p = h.open(req).unwrap();
    h.now += 10_000_000_000;
    assert_eq!(h.close(a, p.id, None), Err(Reason::StalePrice));
    h.price(BTC, usd(60_000));
    assert!(h.close(a, p.id, None).is_ok());
    // Age is measured from when the tick was received (the command's time), never from the
    // exchange's own event time: two clocks would be compared, and a skewed exchange clock
    // could make every price stale or none. `h.price` stamps exchange time 0 (1970): fresh above.
    // A tick the exchange stamps an hour ahead is still stale 5 s after we received it.
    let ahead_us = h.now / 1_000 + 3_600_000_000;
    h.run(CommandKind::PriceTick(Tick {
        market: BTC,
        bid: usd(60_000),
        ask: usd(60_000),
        update_id: 1_000,
        exchange_time_us: ahead_us,
    }))
    .unwrap();
    assert!(h.open(req).is_ok());
    h.now += 5_000_000_001;
    assert_eq!(h.open(req), Err(Reason::StalePrice));
}

#[test]
fn margin_form_rounds_quantity_down_and_locks_exactly_the_margin() {
    let mut h = Harness::new();
    let a = h.account("t@x");
    h.tick(BTC, usd(60_000), Price(6_000_050)).unwrap();
    let p = h.open(h.open_req(a, Side::Long, 10, Size::Margin(usdc(100)))).unwrap();
    // 1000 / 60 000.50 = 0.016666.. -> 0.01666 BTC; entry at the ask.
    assert_eq!((p.quantity, p.margin, p.entry_price), (Qty(1_666), usdc(100), Price(6_000_050)));
    // uPnL is valued at the bid: (60 000.00 - 60 000.50) * 0.01666 = -0.00833.
    assert_eq!(p.unrealized_pnl, Usdc(-8_330));
    let bal = h.balance(a);
    assert_eq!((bal.available, bal.locked_margin), (usdc(4_900), usdc(100)));
    assert_eq!(bal.equity, Usdc(5_000_000_000 - 8_330));
}

#[test]
fn open_fee_is_charged_on_the_notional_and_goes_to_the_house() {
    let mut cfg = EngineConfig::default();
    cfg.markets[0].open_fee_rate = Ppm(500); // 0.05%
    let mut h = Harness::with(cfg);
    let a = h.account("t@x");
    h.price(BTC, usd(60_000));
    h.open(h.open_req(a, Side::Long, 10, Size::Margin(usdc(100)))).unwrap();
    // N = 1000, fee 0.5.
    assert_eq!(h.balance(a).available, Usdc(4_900_000_000 - 500_000));
    assert_eq!(h.summary().house_balance, Usdc(500_000));
    // Insufficient for margin + fee: 4899.5 available, asks 4899.5 margin + 2.44975 fee.
    let all_in = h.open_req(a, Side::Long, 1, Size::Margin(Usdc(4_899_500_000)));
    assert_eq!(h.open(all_in), Err(Reason::InsufficientBalance));
}

#[test]
fn add_margin_moves_the_liquidation_price_away() {
    let mut h = Harness::new();
    let a = funded(&mut h, "t@x");
    h.price(BTC, usd(60_000));
    let p = open_qty(&mut h, a, Side::Long, 10, btc(1));
    let after = match h.run(CommandKind::AddMargin {
        account: a,
        position: p.id,
        amount: usdc(1_000),
        key: None,
    }) {
        Ok(ReplyData::Position(v)) => v,
        other => panic!("{other:?}"),
    };
    // (60 000 - 7000) / 0.995 = 53 266.331.. -> 53 266.34
    assert_eq!((after.margin, after.liquidation_price), (usdc(7_000), Price(5_326_634)));
    let from = h.out.len();
    h.price(BTC, Price(5_427_136)); // the old liquidation price
    h.price(BTC, Price(5_326_635));
    assert!(closed_events(&h.events_since(from)).is_empty());
    h.price(BTC, Price(5_326_634));
    assert_eq!(closed_events(&h.events_since(from)).len(), 1);
}

#[test]
fn opening_a_position_that_is_liquidatable_at_once_is_refused() {
    let mut h = Harness::new();
    let a = funded(&mut h, "t@x");
    // Wide spread: a 100x long fills at the ask (60 000) and is valued at the bid (59 000),
    // below its liquidation price 59 698.50.
    h.tick(BTC, usd(59_000), usd(60_000)).unwrap();
    let req = h.open_req(a, Side::Long, 100, Size::Quantity(btc(1)));
    assert_eq!(h.open(req), Err(Reason::WouldLiquidate));
    let req = h.open_req(a, Side::Long, 10, Size::Quantity(btc(1)));
    assert!(h.open(req).is_ok());
}

#[test]
fn client_order_id_never_opens_twice() {
    let mut h = Harness::new();
    let a = funded(&mut h, "a@x");
    let b = funded(&mut h, "b@x");
    h.price(BTC, usd(60_000));
    let coid = ClientOrderId::new("order-1").unwrap();
    let req = |h: &Harness, acct| OpenRequest {
        client_order_id: Some(coid),
        ..h.open_req(acct, Side::Long, 10, Size::Margin(usdc(100)))
    };
    let first = h.open(req(&h, a)).unwrap();
    let available = h.balance(a).available;
    assert_eq!(h.open(req(&h, a)), Ok(first));
    h.close(a, first.id, None).unwrap();
    assert_eq!(h.open(req(&h, a)), Ok(first), "still the first result after it closed");
    assert_eq!(h.balance(a).open_positions, 0);
    assert!(h.balance(a).available > available);
    let other = h.open(req(&h, b)).unwrap();
    assert_ne!(other.id, first.id, "client order ids are per account");
    // The same id with a different body is refused, not answered with the first result.
    let changed = OpenRequest { leverage: 20, ..req(&h, a) };
    assert_eq!(h.open(changed), Err(Reason::ClientOrderIdReused));
    // A rejection changed nothing, so it is not remembered: the corrected retry opens.
    let bad =
        OpenRequest { client_order_id: ClientOrderId::new("order-2"), leverage: 0, ..req(&h, a) };
    assert_eq!(h.open(bad), Err(Reason::InvalidLeverage));
    assert!(h.open(OpenRequest { leverage: 10, ..bad }).is_ok());
}

#[test]
fn other_accounts_cannot_evict_a_client_order_id() {
    // The attack that broke the global window: many cheap rejected opens from other accounts.
    let cfg = EngineConfig { idempotency_keys_per_account: 4, ..EngineConfig::default() };
    let mut h = Harness::with(cfg);
    let victim = funded(&mut h, "victim@x");
    h.price(BTC, usd(60_000));
    let req = |h: &Harness, acct, id: &str| OpenRequest {
        client_order_id: ClientOrderId::new(id),
        ..h.open_req(acct, Side::Long, 10, Size::Margin(usdc(100)))
    };
    let first = h.open(req(&h, victim, "victim-order")).unwrap();
    for n in 0..40 {
        let attacker = funded(&mut h, &format!("attacker{n}@x"));
        for i in 0..50 {
            let flood = OpenRequest { leverage: 0, ..req(&h, attacker, &format!("f{i}")) };
            assert_eq!(h.open(flood), Err(Reason::InvalidLeverage));
            let ok =
                OpenRequest { size: Size::Margin(usdc(1)), ..req(&h, attacker, &format!("g{i}")) };
            let _ = h.open(ok);
        }
    }
    assert_eq!(h.open(req(&h, victim, "victim-order")), Ok(first), "the retry returns the first");
    assert_eq!(h.balance(victim).open_positions, 1);
}

#[test]
fn idempotency_keys_cover_deposits_closes_and_margin() {
    let mut h = Harness::new();
    let a = funded(&mut h, "a@x");
    let b = funded(&mut h, "b@x");
    h.price(BTC, usd(60_000));
    let key = IdempotencyKey::new("dep-1");
    let deposit = |account, whole| CommandKind::Deposit { account, amount: usdc(whole), key };
    let before = h.balance(a).available;
    let first = h.run(deposit(a, 7));
    assert_eq!(h.run(deposit(a, 7)), first, "a retry returns the first result");
    assert_eq!(h.balance(a).available, Usdc(before.0 + usdc(7).0), "applied once");
    assert_eq!(h.run(deposit(a, 8)), Err(Reason::IdempotencyKeyReused));
    // Another account's identical key is its own.
    let b_before = h.balance(b).available;
    h.run(deposit(b, 7)).unwrap();
    assert_eq!(h.balance(b).available, Usdc(b_before.0 + usdc(7).0));

    let p = h.open(h.open_req(a, Side::Long, 10, Size::Margin(usdc(100)))).unwrap();
    let key = IdempotencyKey::new("m-1");
    let add = CommandKind::AddMargin { account: a, position: p.id, amount: usdc(5), key };
    let r = h.run(add).unwrap();
    assert_eq!(h.run(add), Ok(r));
    let key = IdempotencyKey::new("c-1");
    let close = CommandKind::ClosePosition { account: a, position: p.id, quantity: None, key };
    let closed = h.run(close).unwrap();
    assert_eq!(h.run(close), Ok(closed), "not position_closed: the first result");
    h.engine.check_conservation().unwrap();
}

#[test]
fn idempotency_keys_expire_by_command_time() {
    let cfg = EngineConfig { idempotency_ttl_ns: 1_000, ..EngineConfig::default() };
    let mut h = Harness::with(cfg);
    let a = funded(&mut h, "a@x");
    let key = IdempotencyKey::new("k");
    let deposit = CommandKind::Deposit { account: a, amount: usdc(1), key };
    let before = h.balance(a).available;
    h.run(deposit).unwrap();
    h.run(deposit).unwrap();
    assert_eq!(h.balance(a).available, Usdc(before.0 + usdc(1).0));
    h.advance(2_000);
    h.run(deposit).unwrap();
    assert_eq!(h.balance(a).available, Usdc(before.0 + usdc(2).0), "forgotten after the ttl");
}

#[test]
fn a_reused_request_id_never_returns_another_commands_result() {
    let mut h = Harness::new();
    let a = funded(&mut h, "a@x");
    let b = funded(&mut h, "b@x");
    let rid = RequestId(9_999_999);
    let out = h.engine.apply_collect(&Command::new(
        rid,
        h.now,
        CommandKind::Deposit { account: a, amount: usdc(1), key: None },
    ));
    assert!(
        matches!(out.last(), Some(Output::Reply { result: Ok(ReplyData::Account(v)), .. }) if v.id == a)
    );
    // The same id for b's deposit: refused, nothing applied, a's balance not shown.
    let before = h.balance(b).available;
    let out = h.engine.apply_collect(&Command::new(
        rid,
        h.now,
        CommandKind::Deposit { account: b, amount: usdc(1), key: None },
    ));
    assert!(matches!(
        out.last(),
        Some(Output::Reply { request_id, result: Err(Reason::RequestIdReused), .. })
            if *request_id == rid
    ));
    assert_eq!(h.balance(b).available, before);
}

#[test]
fn client_order_id_window_is_bounded_oldest_forgotten() {
    let cfg = EngineConfig { idempotency_keys_per_account: 2, ..EngineConfig::default() };
    let mut h = Harness::with(cfg);
    let a = funded(&mut h, "a@x");
    h.price(BTC, usd(60_000));
    let req = |h: &Harness, id: &str| OpenRequest {
        client_order_id: ClientOrderId::new(id),
        ..h.open_req(a, Side::Long, 10, Size::Margin(usdc(100)))
    };
    let p1 = h.open(req(&h, "1")).unwrap();
    h.open(req(&h, "2")).unwrap();
    h.open(req(&h, "3")).unwrap();
    assert_ne!(h.open(req(&h, "1")).unwrap().id, p1.id, "evicted from the window");
}

#[test]
fn closed_history_is_bounded_newest_kept() {
    let cfg = EngineConfig { closed_history_per_account: 3, ..EngineConfig::default() };
    let mut h = Harness::with(cfg);
    let a = funded(&mut h, "a@x");
    h.price(BTC, usd(60_000));
    for _ in 0..5 {
        let p = h.open(h.open_req(a, Side::Long, 10, Size::Margin(usdc(100)))).unwrap();
        h.close(a, p.id, None).unwrap();
    }
    let from = h.out.len();
    let reply = h.run(CommandKind::QueryPositions { account: a, status: PositionStatus::Closed });
    assert_eq!(reply, Ok(ReplyData::List { count: 3 }));
    let ids: Vec<u64> = h.out[from..]
        .iter()
        .filter_map(|o| match o {
            Output::Item { item: Item::Position(v), .. } => Some(v.id.0),
            _ => None,
        })
        .collect();
    assert_eq!(ids, vec![5, 4, 3]);
}

#[test]
fn per_account_position_limit() {
    let cfg = EngineConfig { max_positions_per_account: 2, ..EngineConfig::default() };
    let mut h = Harness::with(cfg);
    let a = funded(&mut h, "a@x");
    h.price(BTC, usd(60_000));
    let req = h.open_req(a, Side::Long, 10, Size::Margin(usdc(100)));
    h.open(req).unwrap();
    h.open(req).unwrap();
    assert_eq!(h.open(req), Err(Reason::TooManyPositions));
}

#[test]
fn bad_input_gets_its_reason_code_and_changes_nothing() {
    let mut h = Harness::new();
    let a = funded(&mut h, "a@x");
    let b = funded(&mut h, "b@x");
    h.price(BTC, usd(60_000));
    let pb = h.open(h.open_req(b, Side::Long, 10, Size::Margin(usdc(100)))).unwrap();
    let base = h.open_req(a, Side::Long, 10, Size::Margin(usdc(100)));
    let open = |r: OpenRequest| CommandKind::OpenPosition(r);
    let tick = |market, bid, ask, update_id| {
        CommandKind::PriceTick(Tick { market, bid, ask, update_id, exchange_time_us: 0 })
    };
    let cases: Vec<(CommandKind, Reason)> = vec![
        (CommandKind::Noop, Reason::InvalidRequest),
        (open(OpenRequest { market: MarketId(9), ..base }), Reason::UnknownMarket),
        (open(OpenRequest { account: AccountId(99), ..base }), Reason::UnknownAccount),
        (open(OpenRequest { account: AccountId(0), ..base }), Reason::UnknownAccount),
        (open(OpenRequest { leverage: 0, ..base }), Reason::InvalidLeverage),
        (open(OpenRequest { leverage: 101, ..base }), Reason::InvalidLeverage),
        (open(OpenRequest { leverage: u32::MAX, ..base }), Reason::InvalidLeverage),
        (open(OpenRequest { size: Size::Margin(Usdc(0)), ..base }), Reason::InvalidAmount),
        (open(OpenRequest { size: Size::Margin(Usdc(-1)), ..base }), Reason::InvalidAmount),
        (open(OpenRequest { size: Size::Margin(Usdc(i128::MAX)), ..base }), Reason::InvalidAmount),
        (open(OpenRequest { size: Size::Quantity(Qty(0)), ..base }), Reason::InvalidQuantity),
        (
            open(OpenRequest { size: Size::Quantity(Qty(i64::MAX)), ..base }),
            Reason::InvalidQuantity,
        ),
        (open(OpenRequest { size: Size::Quantity(Qty(-3)), ..base }), Reason::InvalidQuantity),
        (
            open(OpenRequest { size: Size::Margin(usdc(200_000)), ..base }),
            Reason::InsufficientBalance,
        ),
        (open(OpenRequest { size: Size::Margin(Usdc(1)), ..base }), Reason::QuantityTooSmall),
        (
            open(OpenRequest { size: Size::Margin(Usdc(900_000)), leverage: 100, ..base }),
            Reason::MarginTooSmall,
        ),
        (open(OpenRequest { take_profit: Some(usd(59_000)), ..base }), Reason::InvalidTakeProfit),
        (open(OpenRequest { take_profit: Some(Price(-1)), ..base }), Reason::InvalidTakeProfit),
        (open(OpenRequest { stop_loss: Some(usd(61_000)), ..base }), Reason::InvalidStopLoss),
        (open(OpenRequest { stop_loss: Some(Price(i64::MAX)), ..base }), Reason::InvalidStopLoss),
        (open(OpenRequest { expected_price: Some(Price(0)), ..base }), Reason::InvalidPrice),
        (open(OpenRequest { market: ETH, ..base }), Reason::NoPrice),
        (CommandKind::Deposit { account: a, amount: Usdc(0), key: None }, Reason::InvalidAmount),
        (CommandKind::Deposit { account: a, amount: Usdc(-5), key: None }, Reason::InvalidAmount),
        (
            CommandKind::Deposit { account: a, amount: Usdc(i128::MAX), key: None },
            Reason::InvalidAmount,
        ),
        (
            CommandKind::Deposit { account: AccountId(77), amount: usdc(1), key: None },
            Reason::UnknownAccount,
        ),
        (
            CommandKind::Withdraw { account: a, amount: usdc(1_000_000), key: None },
            Reason::InsufficientBalance,
        ),
        (CommandKind::Withdraw { account: a, amount: Usdc(-1), key: None }, Reason::InvalidAmount),
        (
            CommandKind::ClosePosition { account: a, position: pb.id, quantity: None, key: None },
            Reason::UnknownPosition,
        ),
        (
            CommandKind::ClosePosition {
                account: a,
                position: PositionId(999),
                quantity: None,
                key: None,
            },
            Reason::UnknownPosition,
        ),
        (
            CommandKind::AddMargin { account: a, position: pb.id, amount: usdc(1), key: None },
            Reason::UnknownPosition,
        ),
        (
            CommandKind::AddMargin { account: b, position: pb.id, amount: Usdc(0), key: None },
            Reason::InvalidAmount,
        ),
        (
            CommandKind::AddMargin {
                account: b,
                position: pb.id,
                amount: usdc(1_000_000),
                key: None,
            },
            Reason::InsufficientBalance,
        ),
        (CommandKind::QueryPosition { account: a, position: pb.id }, Reason::UnknownPosition),
        (CommandKind::QueryAccount { account: AccountId(u32::MAX) }, Reason::UnknownAccount),
        (
            CommandKind::QueryCredential { login: Login::new("nobody@x").unwrap() },
            Reason::UnknownAccount,
        ),
        (
            CommandKind::CreateAccount {
                login: Login::new("a@x").unwrap(),
                credential: Credential::empty(),
            },
            Reason::DuplicateLogin,
        ),
        (
            CommandKind::CreateAccount { login: Login::empty(), credential: Credential::empty() },
            Reason::InvalidLogin,
        ),
        (tick(MarketId(7), usd(1), usd(1), 100), Reason::UnknownMarket),
        (tick(BTC, Price(0), usd(1), 100), Reason::InvalidPrice),
        (tick(BTC, Price(-5), usd(1), 100), Reason::InvalidPrice),
        (tick(BTC, usd(2), usd(1), 100), Reason::InvalidPrice),
        (tick(BTC, usd(1), Price(i64::MAX), 100), Reason::PriceOutOfRange),
        (tick(BTC, usd(60_000), usd(60_000), 1), Reason::StaleUpdate),
    ];
    for (kind, why) in cases {
        let before = h.business();
        assert_eq!(h.run(kind).map(|_| ()), Err(why), "{kind:?}");
        assert!(h.business() == before, "{kind:?} changed state");
    }
    let rejected = h.engine.counters().ticks_rejected;
    assert_eq!(rejected, 6);
}

#[test]
fn queries_report_balances_positions_markets_and_credentials() {
    let mut h = Harness::new();
    let a = funded(&mut h, "a@x");
    h.price(BTC, usd(60_000));
    let p = h.open(h.open_req(a, Side::Short, 5, Size::Quantity(Qty(50_000)))).unwrap();
    h.price(BTC, usd(59_000));
    let bal = h.balance(a);
    // margin 0.5 * 60 000 / 5 = 6000; uPnL (60 000 - 59 000) * 0.5 = 500.
    assert_eq!((bal.locked_margin, bal.unrealized_pnl), (usdc(6_000), usdc(500)));
    assert_eq!(bal.equity, usdc(105_000 - 6_000 + 6_000 + 500));
    assert_eq!(h.position(a, p.id).unrealized_pnl, usdc(500));
    let from = h.out.len();
    assert_eq!(h.run(CommandKind::QueryMarkets), Ok(ReplyData::List { count: 3 }));
    let first = h.out[from];
    assert!(
        matches!(first, Output::Item { item: Item::Market(m), .. } if m.bid == usd(59_000) && m.update_id == 2)
    );
    let cred = h.run(CommandKind::QueryCredential { login: Login::new("a@x").unwrap() });
    assert_eq!(
        cred,
        Ok(ReplyData::Credential {
            account: a,
            credential: Credential::new("hash").unwrap(),
            admin: false
        })
    );
}

#[test]
fn a_tick_without_request_id_gets_no_reply() {
    let mut h = Harness::new();
    let tick = Tick { market: BTC, bid: usd(1), ask: usd(1), update_id: 1, exchange_time_us: 0 };
    h.engine.apply(&Command::new(RequestId::NONE, T0, CommandKind::PriceTick(tick)), &mut h.out);
    // No reply: only the state change (the applied price, for candles).
    assert!(matches!(
        h.out[..],
        [Output::Change(ChangeRecord { change: Change::PriceApplied { .. }, .. })]
    ));
    h.out.clear();
    h.engine.apply(&Command::new(RequestId::NONE, T0, CommandKind::PriceTick(tick)), &mut h.out);
    assert!(matches!(
        h.out[..],
        [Output::Event(Event::PriceRejected { reason: Reason::StaleUpdate, .. })]
    ));
}

#[test]
fn a_repeated_request_id_is_answered_again_not_applied_again() {
    let mut h = Harness::new();
    let a = h.account("a@x");
    let deposit = Command::new(
        RequestId(777),
        T0,
        CommandKind::Deposit { account: a, amount: usdc(10), key: None },
    );
    let first = h.engine.apply_collect(&deposit);
    let again = h.engine.apply_collect(&deposit);
    // The same reply, and no second state change for read models.
    let is_change = |o: &Output| matches!(o, Output::Change(_));
    assert!(matches!(first[..], [Output::Change(_), Output::Reply { .. }]), "{first:?}");
    // The same answer; its `seq` is the engine's at the retry (a read model there holds the
    // first application too).
    let answer = |o: &Output| match *o {
        Output::Reply { request_id, result, .. } => Some((request_id, result)),
        _ => None,
    };
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(answer(&first[1]), answer(&again[0]));
    assert!(!again.iter().any(is_change));
    assert_eq!(h.balance(a).available, usdc(5_010));
    assert_eq!(h.engine.counters().duplicates, 1);
    // Rejections are remembered too: the retry of a refused withdrawal stays refused.
    let w = Command::new(
        RequestId(778),
        T0,
        CommandKind::Withdraw { account: a, amount: usdc(6_000), key: None },
    );
    assert!(matches!(
        h.engine.apply_collect(&w)[..],
        [Output::Reply { result: Err(Reason::InsufficientBalance), .. }]
    ));
    h.deposit(a, usdc(5_000)).unwrap();
    assert!(matches!(
        h.engine.apply_collect(&w)[..],
        [Output::Reply { result: Err(Reason::InsufficientBalance), .. }]
    ));
    assert_eq!(h.engine.max_request_id(), 778.max(h.log.last().unwrap().request_id.0));
}

#[test]
fn a_decimal_close_quantity_is_converted_with_the_positions_market_exactly() {
    let mut h = Harness::new();
    let a = funded(&mut h, "t@x");
    h.price(BTC, usd(60_000));
    let p = open_qty(&mut h, a, Side::Long, 10, btc(1));
    let close = |h: &mut Harness, s: &str| {
        let d = ExactDecimal::parse(s).unwrap();
        let kind = CommandKind::ClosePosition {
            account: a,
            position: p.id,
            quantity: Some(CloseSize::Decimal(d)),
            key: None,
        };
        h.run(kind)
    };
    // BTC_USDC has 5 quantity decimals: 0.000001 BTC is not a whole number of steps.
    let before = h.business();
    assert_eq!(close(&mut h, "0.000001"), Err(Reason::InvalidQuantity));
    assert_eq!(close(&mut h, "2"), Err(Reason::InvalidQuantity), "more than the position");
    assert_eq!(h.business(), before);
    let Ok(ReplyData::Closed(part)) = close(&mut h, "0.25000") else { panic!("not closed") };
    assert_eq!(part.quantity, Qty(25_000));
    assert_eq!(h.position(a, p.id).quantity, Qty(75_000));
}

#[test]
fn every_state_change_is_numbered_by_journal_sequence_with_checkpoints_between() {
    let mut h = Harness::new();
    let a = h.account("a@x"); // seq 1: AccountCreated (n 0)
    h.deposit(a, usdc(7)).unwrap(); // seq 2: Deposited
    let rejected = h.deposit(AccountId(99), usdc(1)); // seq 3: rejected, changes nothing
    assert_eq!(rejected, Err(Reason::UnknownAccount));
    h.run(CommandKind::QueryAccount { account: a }).unwrap(); // a query takes no seq
    let changes = |h: &Harness| -> Vec<ChangeRecord> {
        h.out
            .iter()
            .filter_map(|o| if let Output::Change(c) = o { Some(*c) } else { None })
            .collect()
    };
    let got = changes(&h);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!((got[0].seq, got[0].n), (1, 0));
    assert!(matches!(got[0].change, Change::AccountCreated { account, .. } if account == a));
    assert_eq!((got[1].seq, got[1].n, got[1].at_ns), (2, 0, T0));
    assert_eq!(got[1].change, Change::Deposited { account: a, amount: usdc(7) });
    assert_eq!(h.engine.seq(), 3);
    // Rejected commands still take journal sequences; at each multiple of CHECKPOINT_EVERY a
    // checkpoint is emitted so that a reader's cursor advances through changeless stretches.
    while h.engine.seq() < 2 * CHECKPOINT_EVERY {
        let _ = h.deposit(AccountId(99), usdc(1));
    }
    let checkpoints: Vec<(u64, u32)> = changes(&h)
        .iter()
        .filter(|c| c.change == Change::Checkpoint)
        .map(|c| (c.seq, c.n))
        .collect();
    assert_eq!(checkpoints, vec![(CHECKPOINT_EVERY, 0), (2 * CHECKPOINT_EVERY, 0)]);
}

#[test]
fn opens_are_refused_once_position_ids_reach_their_limit() {
    // Ids share a word with the slab slot (id << 24 | slot): 2^40 over the engine's life. The
    // engine refuses an open past it with a typed reason, never wraps or panics.
    let mut h = Harness::new();
    let a = funded(&mut h, "limit@x");
    h.price(BTC, usd(60_000));
    let first = open_qty(&mut h, a, Side::Long, 10, btc(1));
    let mut snap = h.engine.snapshot();
    snap.next_position_id = engine_core::slab::POSITION_ID_LIMIT - 1;
    h.engine = Engine::restore(h.engine.config().clone(), &snap).expect("restores");
    let last = open_qty(&mut h, a, Side::Short, 10, btc(1));
    assert_eq!(last.id, PositionId(engine_core::slab::POSITION_ID_LIMIT - 1));
    let req = h.open_req(a, Side::Long, 10, Size::Quantity(btc(1)));
    assert_eq!(h.open(req), Err(Reason::PositionCapacity));
    // Both open positions still answer by id, and close.
    assert_eq!(h.position(a, first.id).id, first.id);
    h.close(a, last.id, None).expect("the last id closes");
    // Closed parts of partial closes may take ids past it (they are never open); an open
    // position past it in a snapshot is refused.
    let mut bad = h.engine.snapshot();
    bad.positions[0].id = PositionId(engine_core::slab::POSITION_ID_LIMIT);
    bad.next_position_id = engine_core::slab::POSITION_ID_LIMIT + 1;
    assert!(Engine::restore(h.engine.config().clone(), &bad).is_err());
}

/// The attack that stopped `serve`: repeated deposits of the largest amount push a balance past
/// what 64-bit stores hold. The engine refuses the deposit that would take the money all
/// accounts hold past `MAX_AMOUNT`, from any account, and nothing else changes.
#[test]
fn deposits_past_the_money_ceiling_are_refused_with_balance_limit() {
    use engine_core::config::MAX_AMOUNT;
    let mut h = Harness::new();
    let a = h.account("a@x");
    let b = h.account("b@x");
    let held = |h: &Harness| {
        let s = h.summary();
        s.total_available.0 + s.total_margin.0
    };
    let start = held(&h);
    let room = MAX_AMOUNT.0 - start;
    // Half the room for each account (MAX_AMOUNT itself is a valid single amount).
    h.deposit(a, Usdc(room / 2)).unwrap();
    h.deposit(b, Usdc(room - room / 2)).unwrap();
    assert_eq!(held(&h), MAX_AMOUNT.0, "exactly at the ceiling is allowed");
    // The state hash also covers the request-id window (which remembers refusals): compare money.
    let money = |h: &mut Harness| (h.summary().net_deposits, h.balance(a), h.balance(b));
    let before = money(&mut h);
    for account in [a, b] {
        assert_eq!(h.deposit(account, Usdc(1)), Err(Reason::BalanceLimit));
        assert_eq!(h.deposit(account, MAX_AMOUNT), Err(Reason::BalanceLimit));
    }
    assert_eq!(money(&mut h), before, "a refused deposit moves no money");
    // Money can leave and come back up to the ceiling.
    h.run(CommandKind::Withdraw { account: a, amount: usdc(5), key: None }).unwrap();
    assert_eq!(h.deposit(b, usdc(6)), Err(Reason::BalanceLimit));
    h.deposit(b, usdc(5)).unwrap();
    assert_eq!(held(&h), MAX_AMOUNT.0);
    // Every balance stays within what a signed 64-bit micro-USDC column holds.
    assert!(h.balance(a).available.0 <= i128::from(i64::MAX));
}

/// A sign-up's demo credit counts against the same ceiling.
#[test]
fn a_sign_up_credit_past_the_ceiling_is_refused() {
    use engine_core::config::MAX_AMOUNT;
    let cfg =
        EngineConfig { demo_deposits: true, initial_balance: MAX_AMOUNT, ..Default::default() };
    let mut h = Harness::with(cfg);
    h.account("first@x");
    let second = h.run(CommandKind::CreateAccount {
        login: Login::new("second@x").unwrap(),
        credential: Credential::new("hash").unwrap(),
    });
    assert_eq!(second, Err(Reason::BalanceLimit));
}
