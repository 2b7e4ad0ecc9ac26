//! Cross margin (docs/DESIGN.md, "Cross margin"): an account saved by its free balance where an
//! isolated one is liquidated, the stop-out order with several losing positions, negative
//! balance protection, the margin call once a crossing, a loss paid from the balance and other
//! positions' margins, free margin for opens and withdrawals, the mode change, and the trigger
//! keys' false alarms and band crossings (reviews counted, nothing closed).

mod common;

use common::*;
use engine_core::prelude::*;

/// 10 ETH in quantity steps (4 decimals).
fn eth(n: i64) -> Qty {
    Qty(n * 10_000)
}

fn cross(h: &mut Harness, login: &str) -> AccountId {
    let a = h.account(login);
    h.run(CommandKind::SetMarginMode { account: a, mode: MarginMode::Cross }).unwrap();
    a
}

fn open(h: &mut Harness, a: AccountId, market: MarketId, lev: u32, q: Qty) -> PositionView {
    let req = OpenRequest::new(a, market, Side::Long, lev, Size::Quantity(q));
    h.open(req).expect("open accepted")
}

fn level(h: &mut Harness, a: AccountId) -> CrossLevel {
    h.balance(a).margin_level.expect("a cross account shows its level")
}

fn no_margin_calls() -> EngineConfig {
    EngineConfig { margin_call_level: Ppm(0), ..EngineConfig::default() }
}

/// Both accounts hold 5 000 USDC and open 1 BTC long at 50 000, 20x (margin 2 500). The
/// isolated one is liquidated at 47 738.70 ((50 000 − 2 500) / 0.995, rounded up); the cross
/// one's 2 500 of free balance defends it until equity = maintenance margin:
/// 5 000 + (p − 50 000) = 0.005 p, p = 45 226.13.
#[test]
fn a_cross_account_is_saved_by_its_free_balance_where_an_isolated_one_is_liquidated() {
    let mut h = Harness::with(no_margin_calls());
    h.price(BTC, usd(50_000));
    let isolated = h.account("i@x");
    let x = cross(&mut h, "c@x");
    let pi = open(&mut h, isolated, BTC, 20, btc(1));
    let px = open(&mut h, x, BTC, 20, btc(1));
    assert_eq!(pi.liquidation_price, Price(4_773_870));
    assert_eq!(px.liquidation_price, Price(0), "a cross position has no price of its own");

    let from = h.out.len();
    h.price(BTC, usd(47_000));
    let closed = closed_events(&h.events_since(from));
    assert_eq!(closed.iter().map(|v| v.id).collect::<Vec<_>>(), vec![pi.id]);
    assert_eq!(closed[0].close.unwrap().reason, CloseReason::Liquidation);
    let l = level(&mut h, x);
    // 2 500 available + 2 500 margin − 3 000 loss; 0.005 × 47 000.
    assert_eq!((l.equity, l.maintenance_margin), (usdc(2_000), usdc(235)));
    assert_eq!(l.level, Ppm(8_510_638), "2 000 / 235 = 8.510638…");

    // One cent above the stop-out price: still open; one cent below: stopped out.
    h.tick(BTC, Price(4_522_614), Price(4_522_614)).unwrap();
    assert_eq!(h.balance(x).open_positions, 1);
    let from = h.out.len();
    h.tick(BTC, Price(4_522_612), Price(4_522_612)).unwrap();
    let closed = closed_events(&h.events_since(from));
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].close.unwrap().reason, CloseReason::StopOut);
    assert!(changes_since(&h, from).iter().any(|c| matches!(c, Change::StopOut { .. })));
    // What it had left: 5 000 − 4 773.88 of loss, none forgiven.
    assert_eq!(h.balance(x).available, Usdc(226_120_000));
    assert_eq!(h.engine.counters().stop_outs, 1);
}

/// 5 000 USDC; 1 BTC and 0.2 BTC long at 50 000, 100x (margins 500 and 100). At 46 000 equity
/// is 200 against 276 of maintenance: the 1 BTC (the larger loss) is closed first, its loss
/// beyond its margin paid from the balance; then 200 against 46 is above the level: the 0.2
/// BTC stays.
#[test]
fn a_stop_out_closes_the_most_losing_position_first_until_the_level_recovers() {
    let mut h = Harness::with(no_margin_calls());
    h.price(BTC, usd(50_000));
    let x = cross(&mut h, "c@x");
    let small = open(&mut h, x, BTC, 100, Qty(20_000));
    let big = open(&mut h, x, BTC, 100, btc(1));
    let from = h.out.len();
    h.price(BTC, usd(46_000));
    let closed = closed_events(&h.events_since(from));
    assert_eq!(closed.iter().map(|v| v.id).collect::<Vec<_>>(), vec![big.id]);
    let changes = changes_since(&h, from);
    let stop = changes.iter().find_map(|c| match c {
        Change::StopOut { level, .. } => Some(*level),
        _ => None,
    });
    let stop = stop.expect("a stop-out change before the closes");
    assert_eq!((stop.equity, stop.maintenance_margin), (usdc(200), usdc(276)));
    assert!(changes.contains(&Change::MarginAdded {
        position: big.id,
        account: x,
        amount: usdc(3_500),
        margin: usdc(4_000),
        liquidation_price: Price(0),
    }));
    let l = level(&mut h, x);
    assert_eq!((l.equity, l.maintenance_margin), (usdc(200), usdc(46)));
    assert_eq!(h.position(x, small.id).quantity, Qty(20_000));
}

/// The same account gapping to 45 500: equity −400. Both positions close, most losing first;
/// the balance and then nothing is left to pay the last 400, which the house pays (the
/// insurance fund is empty): the account ends at zero, never below.
#[test]
fn a_gap_closes_everything_and_the_account_never_ends_below_zero() {
    let mut h = Harness::with(no_margin_calls());
    h.price(BTC, usd(50_000));
    let x = cross(&mut h, "c@x");
    let small = open(&mut h, x, BTC, 100, Qty(20_000));
    let big = open(&mut h, x, BTC, 100, btc(1));
    let from = h.out.len();
    h.price(BTC, usd(45_500));
    let closed = closed_events(&h.events_since(from));
    assert_eq!(closed.iter().map(|v| v.id).collect::<Vec<_>>(), vec![big.id, small.id]);
    let bad: Vec<_> = h
        .events_since(from)
        .into_iter()
        .filter_map(|e| match e {
            Event::BadDebt { position, amount, house_paid, .. } => {
                Some((position, amount, house_paid))
            }
            _ => None,
        })
        .collect();
    assert_eq!(bad, vec![(small.id, usdc(400), usdc(400))]);
    let b = h.balance(x);
    assert_eq!((b.available, b.open_positions), (Usdc::ZERO, 0));
    assert_eq!(h.engine.counters().stop_outs, 2);
}

/// A manual close losing more than its margin: the balance pays first (`MarginAdded`), then
/// the account's other position (`MarginMoved`); nothing is forgiven.
#[test]
fn a_closing_loss_beyond_its_margin_is_paid_by_the_balance_then_other_margins() {
    let mut h = Harness::new();
    h.price(BTC, usd(50_000));
    h.price(ETH, usd(3_000));
    let x = cross(&mut h, "c@x");
    let b = open(&mut h, x, BTC, 20, btc(1)); // margin 2 500
    let e = open(&mut h, x, ETH, 20, eth(10)); // margin 1 500; 1 000 available
    h.price(BTC, usd(46_000));
    let from = h.out.len();
    let v = h.close(x, b.id, None).unwrap();
    let close = v.close.unwrap();
    assert_eq!((close.realized_pnl, close.payout), (usdc(-4_000), Usdc::ZERO));
    let changes = changes_since(&h, from);
    assert!(changes.contains(&Change::MarginMoved {
        account: x,
        from: e.id,
        to: b.id,
        amount: usdc(500)
    }));
    assert!(!h.events_since(from).iter().any(|e| matches!(e, Event::BadDebt { .. })));
    let acc = h.balance(x);
    assert_eq!((acc.available, acc.locked_margin), (Usdc::ZERO, usdc(1_000)));
    assert_eq!(h.position(x, e.id).margin, usdc(1_000));
}

/// The margin-call notice goes out once a crossing (at 1.5 × maintenance) and re-arms when
/// the account changes above the level.
#[test]
fn the_margin_call_goes_out_once_and_re_arms_above_the_level() {
    let mut h = Harness::new();
    h.price(BTC, usd(50_000));
    let x = cross(&mut h, "c@x");
    open(&mut h, x, BTC, 20, btc(1));
    let calls = |h: &Harness, from: usize| {
        changes_since(h, from)
            .iter()
            .filter(|c| matches!(c, Change::AccountMarginCall { .. }))
            .count()
    };
    // 5 000 + (p − 50 000) = 1.5 × 0.005 p at p = 45 340.05.
    let from = h.out.len();
    h.price(BTC, usd(45_400));
    assert_eq!(calls(&h, from), 0);
    h.price(BTC, usd(45_300));
    h.price(BTC, usd(45_290));
    assert_eq!(calls(&h, from), 1, "once a crossing");
    // Back above by prices alone: not re-armed until the account changes.
    h.price(BTC, usd(46_000));
    h.price(BTC, usd(45_300));
    assert_eq!(calls(&h, from), 1);
    h.price(BTC, usd(46_000));
    h.deposit(x, usdc(1)).unwrap();
    h.price(BTC, usd(45_299));
    assert_eq!(calls(&h, from), 2, "re-armed by the deposit above the level");
}

/// Opens and withdrawals in a cross account are limited by its free margin (available plus
/// its positions' PnL when that is a loss).
#[test]
fn free_margin_limits_opens_and_withdrawals() {
    let mut h = Harness::new();
    h.price(BTC, usd(50_000));
    let x = cross(&mut h, "c@x");
    open(&mut h, x, BTC, 20, btc(1)); // 2 500 available
    h.price(BTC, usd(49_000)); // −1 000: free margin 1 500
    let w = |amount| CommandKind::Withdraw { account: x, amount, key: None };
    assert_eq!(h.run(w(usdc(1_501))), Err(Reason::InsufficientBalance));
    let req = OpenRequest::new(x, BTC, Side::Long, 10, Size::Margin(usdc(1_501)));
    assert_eq!(h.open(req), Err(Reason::InsufficientBalance));
    assert!(h.run(w(usdc(1_500))).is_ok());
    assert_eq!(h.balance(x).available, usdc(1_000));
}

#[test]
fn the_mode_changes_only_without_positions_or_orders() {
    let mut h = Harness::new();
    h.price(BTC, usd(50_000));
    let a = h.account("a@x");
    assert_eq!(h.balance(a).margin_mode, MarginMode::Isolated);
    assert_eq!(h.balance(a).margin_level, None);
    let p = open(&mut h, a, BTC, 20, btc(1));
    let set = |mode| CommandKind::SetMarginMode { account: a, mode };
    assert_eq!(h.run(set(MarginMode::Cross)), Err(Reason::PositionsOpen));
    h.close(a, p.id, None).unwrap();
    assert!(h.run(set(MarginMode::Cross)).is_ok());
    assert_eq!(h.balance(a).margin_mode, MarginMode::Cross);
    assert_eq!(level(&mut h, a).equity, usdc(5_000));
}

/// BTC's band is 20 % wide, ETH's 2 %. The account holds 1 BTC and 10 ETH long at 100x; its
/// BTC key assumes ETH at its band's low edge (2 940), so a BTC tick between the exact
/// stop-out (45 376.88) and that key (45 976.89) is a false alarm: reviewed, re-keyed, nothing
/// closed. A tick above the key reviews nobody; an ETH tick out of its band re-keys the
/// account (one band crossing).
#[test]
fn a_false_alarm_is_reviewed_and_re_keyed_never_closed() {
    let mut cfg = no_margin_calls();
    cfg.markets[0].cross_band_bps = 2_000;
    let mut h = Harness::with(cfg);
    h.price(BTC, usd(50_000));
    h.price(ETH, usd(3_000));
    let x = cross(&mut h, "c@x");
    open(&mut h, x, BTC, 100, btc(1));
    open(&mut h, x, ETH, 100, eth(10));
    let checks = |h: &Harness| h.engine.counters().cross_checks;
    let before = checks(&h);
    // The key of docs/DESIGN.md's example, to the cent: 45 976.89.
    h.price(BTC, Price(4_597_690));
    assert_eq!(checks(&h), before, "above the key: nobody reviewed");
    h.price(BTC, Price(4_597_689));
    assert_eq!(checks(&h), before + 1, "reached the key: reviewed");
    assert_eq!(h.balance(x).open_positions, 2, "and not closed");
    assert_eq!(h.engine.counters().band_crossings, 0);
    h.price(ETH, usd(3_100));
    assert_eq!(h.engine.counters().band_crossings, 1);
    assert_eq!(checks(&h), before + 2);
    // ETH up 1 000 moved the BTC trigger down: 45 950 again reviews nobody.
    h.price(BTC, usd(45_960));
    h.price(BTC, usd(45_950));
    assert_eq!(checks(&h), before + 2);
    assert_eq!(h.balance(x).open_positions, 2);
}

/// A cross account's state survives a snapshot: restored, the same commands give the same
/// outputs and state hash.
#[test]
fn cross_accounts_survive_a_snapshot() {
    let mut h = Harness::new();
    h.price(BTC, usd(50_000));
    let x = cross(&mut h, "c@x");
    open(&mut h, x, BTC, 20, btc(1));
    h.price(BTC, usd(45_300)); // margin call: disarmed
    let cfg = h.engine.config().clone();
    let mut restored = Engine::restore(cfg, &h.engine.snapshot()).unwrap();
    assert_eq!(restored.state_hash(), h.engine.state_hash());
    let from = h.out.len();
    h.price(BTC, usd(45_200));
    let mut out = Vec::new();
    for cmd in &h.log[h.log.len() - 1..] {
        restored.apply(cmd, &mut out);
    }
    assert_eq!(out, h.out[from..].to_vec());
    assert_eq!(restored.state_hash(), h.engine.state_hash());
    assert_eq!(h.balance(x).open_positions, 0, "stopped out at 45 200");
}

/// The operators' risk view lists the cross accounts nearest their stop-out, lowest level
/// first, with their exact levels; an isolated account is not among them.
#[test]
fn the_risk_view_lists_cross_accounts_nearest_their_stop_out() {
    let mut h = Harness::with(no_margin_calls());
    h.price(BTC, usd(50_000));
    let ops = h.account("ops@x");
    h.run(CommandKind::SetRole { login: Login::new("ops@x").unwrap(), admin: true }).unwrap();
    let safe = cross(&mut h, "safe@x");
    let close = cross(&mut h, "close@x");
    let isolated = h.account("i@x");
    open(&mut h, safe, BTC, 10, Qty(10_000)); // 0.1 BTC: level 100
    open(&mut h, close, BTC, 100, btc(1)); // 1 BTC: level 20
    open(&mut h, isolated, BTC, 100, btc(1));
    let from = h.out.len();
    h.run(CommandKind::QueryRisk { by: ops, top: 10 }).unwrap();
    let listed: Vec<(AccountId, Ppm)> = h.out[from..]
        .iter()
        .filter_map(|o| match o {
            Output::Item { item: Item::AccountAtRisk { account, level }, .. } => {
                Some((*account, level.level))
            }
            _ => None,
        })
        .collect();
    // 5 000 / (0.005 × 50 000) = 20; 5 000 / (0.005 × 5 000) = 200.
    assert_eq!(listed, vec![(close, Ppm(20_000_000)), (safe, Ppm(200_000_000))]);
}

/// A client group's own stop-out level (a broker's account types): the same position is
/// stopped out earlier in a group stopping out at 1.5 than at the engine's 1, and moving an
/// account into that group checks it with the new level at once.
#[test]
fn a_groups_stop_out_level_applies_to_its_accounts_and_to_one_moved_into_it() {
    use engine_core::config::GroupConfig;
    let mut cfg = no_margin_calls();
    cfg.groups = vec![
        GroupConfig { name: "standard".into(), ..GroupConfig::default() },
        GroupConfig {
            name: "cautious".into(),
            stop_out_level: Some(Ppm(1_500_000)),
            ..GroupConfig::default()
        },
    ];
    let mut h = Harness::with(cfg);
    h.price(BTC, usd(50_000));
    let ops = h.account("ops@x");
    h.run(CommandKind::SetRole { login: Login::new("ops@x").unwrap(), admin: true }).unwrap();
    let a = cross(&mut h, "a@x");
    let b = cross(&mut h, "b@x");
    let to = |login: &str, group| CommandKind::AdminSetGroup {
        by: ops,
        login: Login::new(login).unwrap(),
        group,
    };
    h.run(to("b@x", 1)).unwrap();
    assert_eq!(level(&mut h, b).level, Ppm(i64::MAX), "no positions yet");
    assert_eq!(h.balance(b).stop_out_level, Ppm(1_500_000));
    open(&mut h, a, BTC, 20, btc(1));
    open(&mut h, b, BTC, 20, btc(1));
    // At 45 500: equity 500 against MM 227.50, level 2.197802: above both levels.
    h.price(BTC, usd(45_500));
    // At 45 400: equity 400 against 227, level 1.762114: above both.
    h.price(BTC, usd(45_400));
    assert_eq!((h.balance(a).open_positions, h.balance(b).open_positions), (1, 1));
    // At 45 330: equity 330 against 226.65, level 1.455989: below 1.5, above 1.
    h.price(BTC, usd(45_330));
    assert_eq!((h.balance(a).open_positions, h.balance(b).open_positions), (1, 0));
    // Moving `a` into the cautious group checks it at 1.5 in the same command.
    h.run(to("a@x", 1)).unwrap();
    assert_eq!(h.balance(a).open_positions, 0);
}

#[test]
fn a_stop_out_level_must_be_at_least_one_and_below_the_margin_call_level() {
    use engine_core::config::GroupConfig;
    let invalid = |cfg: EngineConfig| Engine::new(cfg).is_err();
    assert!(invalid(EngineConfig { stop_out_level: Ppm(999_999), ..EngineConfig::default() }));
    // The default margin-call level is 1.5.
    assert!(invalid(EngineConfig { stop_out_level: Ppm(1_500_000), ..EngineConfig::default() }));
    assert!(!invalid(EngineConfig { stop_out_level: Ppm(1_499_999), ..EngineConfig::default() }));
    let group = |stop| GroupConfig {
        name: "g".into(),
        stop_out_level: Some(Ppm(stop)),
        margin_call_level: Some(Ppm(2_000_000)),
        ..GroupConfig::default()
    };
    let with = |g| EngineConfig { groups: vec![g], ..EngineConfig::default() };
    assert!(!invalid(with(group(1_800_000))), "below its own group's call level");
    assert!(invalid(with(group(2_000_000))));
}

/// Money held for a pending order no longer defends a cross account's positions: an order
/// whose hold would take it past its free margin is refused, as a withdrawal would be (found by
/// the property test: the hold took an account below its stop-out with nobody checking).
#[test]
fn a_pending_orders_hold_must_fit_the_free_margin() {
    let mut h = Harness::with(no_margin_calls());
    h.price(BTC, usd(50_000));
    let x = cross(&mut h, "c@x");
    open(&mut h, x, BTC, 20, btc(1)); // 2 500 available
    h.price(BTC, usd(48_000)); // −2 000: free margin 500
    let order = |margin| OrderRequest {
        account: x,
        market: BTC,
        side: Side::Long,
        kind: OrderKind::Limit,
        price: usd(47_000),
        leverage: 10,
        size: Size::Margin(usdc(margin)),
        take_profit: None,
        stop_loss: None,
        expires_at_ns: None,
        client_order_id: None,
    };
    assert_eq!(h.run(CommandKind::PlaceOrder(order(501))), Err(Reason::InsufficientBalance));
    assert!(h.run(CommandKind::PlaceOrder(order(400))).is_ok());
}

/// Hedged margin: a cross account holding 5 BTC long and 5 BTC short margins only the larger
/// side (a tie: the long) where the market's `hedged_margin_rate` is 0, and both in full at the
/// default 1. With a bid of 49 750 and an ask of 50 250 both legs lose 1 250: equity 2 500
/// against 2 500 of maintenance in full (level 1: stopped out until it recovers) or 1 243.75
/// hedged (level 2.010050: kept).
#[test]
fn a_hedged_account_margins_only_the_larger_side_at_a_zero_hedged_rate() {
    let mut cfg = no_margin_calls();
    cfg.markets[1].hedged_margin_rate = Ppm(0); // ETH: a market with hedged relief
    cfg.markets[0].max_leverage = 100;
    let mut h = Harness::with(cfg);
    h.price(BTC, usd(50_000));
    h.price(ETH, usd(50_000));
    let full = cross(&mut h, "full@x");
    let hedged = cross(&mut h, "hedged@x");
    for (a, market) in [(full, BTC), (hedged, ETH)] {
        let q = if market == BTC { btc(5) } else { eth(5) };
        for side in [Side::Long, Side::Short] {
            h.open(OpenRequest::new(a, market, side, 100, Size::Quantity(q))).unwrap();
        }
    }
    assert_eq!(level(&mut h, full).maintenance_margin, usdc(2_500));
    assert_eq!(level(&mut h, hedged).maintenance_margin, usdc(1_250));
    h.tick(BTC, usd(49_750), usd(50_250)).unwrap();
    h.tick(ETH, usd(49_750), usd(50_250)).unwrap();
    // Stopped out at level 1: the long (equal losses: the lower id) closes, after which the
    // short alone (1 256.25 of maintenance) leaves it above the level.
    assert_eq!(h.balance(full).open_positions, 1, "stopped out at level 1, one leg closed");
    assert_eq!(h.engine.counters().stop_outs, 1);
    let l = level(&mut h, hedged);
    assert_eq!(
        (l.equity, l.maintenance_margin, l.level),
        (usdc(2_500), Usdc(1_243_750_000), Ppm(2_010_050))
    );
    assert_eq!(h.balance(hedged).open_positions, 2);
}
