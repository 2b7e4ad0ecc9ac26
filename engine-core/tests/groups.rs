//! Client groups (docs/DESIGN.md, "Client groups"): a round trip at a constant price costs
//! exactly twice the group's markup and commission plus the market's fees, to the micro-USDC,
//! in every group; the revenue lines balance in the conservation equation (checked after every
//! command by the harness); operators move accounts; liquidations pay no group charges; replay
//! and snapshots keep groups and revenue.

mod common;

use common::*;
use engine_core::command::GroupEdit;
use engine_core::config::{GroupConfig, GroupMarket};
use engine_core::prelude::*;

const DEFAULT: u16 = 0;
const STANDARD: u16 = 1;
const PRO: u16 = 2;
const RAW: u16 = 3;

/// `default` (nothing), `standard` (BTC: 50 ticks = 0.50 USDC of markup a side per BTC), `pro`
/// (BTC: 0.05 % commission a side) and `raw` (BTC: 1 bps of markup and 3.50 USDC a lot of
/// commission a side, its own financing rates); BTC's own fees: 0.01 % to open and to close.
fn config() -> EngineConfig {
    let mut cfg = EngineConfig::default();
    cfg.markets[0].open_fee_rate = Ppm(100);
    cfg.markets[0].close_fee_rate = Ppm(100);
    let btc = |markup_ticks, commission_rate| GroupMarket {
        symbol: "BTC_USDC".into(),
        markup_ticks,
        commission_rate: Ppm(commission_rate),
        ..GroupMarket::default()
    };
    let raw = GroupMarket {
        markup_bps: 1,
        commission_per_lot: Usdc(3_500_000),
        financing_long_rate: Some(Ppm(300)),
        financing_short_rate: Some(Ppm(-200)),
        ..btc(0, 0)
    };
    cfg.groups = vec![
        GroupConfig {
            name: "default".into(),
            markets: vec![],
            swap_free: false,
            margin_call_level: None,
            stop_out_level: None,
        },
        GroupConfig {
            name: "standard".into(),
            markets: vec![btc(50, 0)],
            swap_free: false,
            margin_call_level: None,
            stop_out_level: None,
        },
        GroupConfig {
            name: "pro".into(),
            markets: vec![btc(0, 500)],
            swap_free: false,
            margin_call_level: None,
            stop_out_level: None,
        },
        GroupConfig { name: "raw".into(), markets: vec![raw], ..GroupConfig::default() },
    ];
    cfg
}

fn operator(h: &mut Harness) -> AccountId {
    let ops = h.account("ops@x");
    let login = Login::new("ops@x").unwrap();
    h.run(CommandKind::SetRole { login, admin: true }).unwrap();
    ops
}

fn move_to(h: &mut Harness, by: AccountId, login: &str, group: u16) -> Result<ReplyData, Reason> {
    h.run(CommandKind::AdminSetGroup { by, login: Login::new(login).unwrap(), group })
}

#[test]
fn a_round_trip_costs_twice_the_markup_and_commission_plus_fees_in_every_group() {
    let mut h = Harness::with(config());
    let ops = operator(&mut h);
    h.price(BTC, usd(60_000));
    // 1 BTC at 60 000: the market's fee is 6.00 a side.
    let market_fees = 2 * 6_000_000;
    for (login, group, group_cost) in [
        ("d@x", DEFAULT, 0),
        ("s@x", STANDARD, 2 * 500_000),            // 0.50 a side
        ("p@x", PRO, 2 * 30_000_000),              // 0.05 % of 60 000 = 30.00 a side
        ("r@x", RAW, 2 * (6_000_000 + 3_500_000)), // 1 bps of 60 000 = 6.00, and 3.50 a lot
    ] {
        let a = h.account(login);
        h.deposit(a, usdc(100_000)).unwrap();
        assert!(move_to(&mut h, ops, login, group).is_ok());
        let before = h.balance(a).available;
        let (spread0, commission0) = (h.summary().spread_revenue, h.summary().commission_revenue);
        let p = h.open(h.open_req(a, Side::Long, 10, Size::Quantity(btc(1)))).unwrap();
        assert_eq!(p.entry_price, usd(60_000), "the price is the market's, whatever the group");
        h.close(a, p.id, None).unwrap();
        let after = h.balance(a).available;
        assert_eq!(before.0 - after.0, market_fees + group_cost, "{login}");
        let s = h.summary();
        let (spread, commission) =
            (s.spread_revenue.0 - spread0.0, s.commission_revenue.0 - commission0.0);
        assert_eq!(
            spread + commission,
            group_cost,
            "{login}: the group's charges, on their own lines"
        );
    }
    let s = h.summary();
    assert_eq!((s.spread_revenue, s.commission_revenue), (Usdc(13_000_000), Usdc(67_000_000)));
}

#[test]
fn only_operators_move_accounts_to_configured_groups_and_it_applies_from_the_next_command() {
    let mut h = Harness::with(config());
    let ops = operator(&mut h);
    let a = h.account("t@x");
    assert_eq!(move_to(&mut h, a, "t@x", PRO), Err(Reason::NotAdmin));
    assert_eq!(move_to(&mut h, ops, "t@x", 4), Err(Reason::UnknownGroup));
    assert_eq!(move_to(&mut h, ops, "nobody@x", PRO), Err(Reason::UnknownAccount));
    assert_eq!(move_to(&mut h, ops, "t@x", PRO), Ok(ReplyData::Group { account: a, group: PRO }));
    let set = h.out.iter().rev().find_map(|o| match o {
        Output::Change(ChangeRecord {
            change: Change::GroupSet { account, by, group }, ..
        }) => Some((*account, *by, *group)),
        _ => None,
    });
    assert_eq!(set, Some((a, ops, PRO)), "the move is a change of its own, naming the operator");
}

#[test]
fn a_liquidation_pays_no_group_charges_and_groups_survive_replay_and_snapshots() {
    let mut h = Harness::with(config());
    let ops = operator(&mut h);
    let a = h.account("t@x");
    move_to(&mut h, ops, "t@x", STANDARD).unwrap();
    h.price(BTC, usd(60_000));
    let p = h.open(h.open_req(a, Side::Long, 100, Size::Quantity(btc(1)))).unwrap();
    let spread = h.summary().spread_revenue;
    assert_eq!(spread, Usdc(500_000), "the open's markup");
    h.price(BTC, usd(59_000));
    let closed = h.position(a, p.id);
    assert_eq!(closed.status, PositionStatus::Closed);
    assert_eq!(closed.close.unwrap().reason, CloseReason::Liquidation);
    assert_eq!(h.summary().spread_revenue, spread, "nothing more on a liquidation");
    let snap = h.engine.snapshot();
    let restored = Engine::restore(h.engine.config().clone(), &snap).unwrap();
    assert_eq!(restored.state_hash(), h.engine.state_hash());
    assert_eq!(restored.summary().spread_revenue, spread);
    let mut replayed = Engine::new(h.engine.config().clone()).unwrap();
    for cmd in &h.log {
        replayed.apply(cmd, &mut Vec::new());
    }
    assert_eq!(replayed.state_hash(), h.engine.state_hash());
}

#[test]
fn a_group_caps_leverage_below_the_market_and_a_swap_free_group_pays_no_financing() {
    let mut cfg = config();
    cfg.markets[0].financing_long_rate = Ppm(100);
    cfg.groups[1].markets[0].max_leverage = Some(20);
    cfg.groups[2].swap_free = true;
    let mut h = Harness::with(cfg);
    let ops = operator(&mut h);
    h.price(BTC, usd(60_000));
    let (s, p) = (h.account("s@x"), h.account("p@x"));
    for (login, a, group) in [("s@x", s, STANDARD), ("p@x", p, PRO)] {
        h.deposit(a, usdc(100_000)).unwrap();
        move_to(&mut h, ops, login, group).unwrap();
    }
    let over = h.open(h.open_req(s, Side::Long, 21, Size::Quantity(btc(1))));
    assert_eq!(over.unwrap_err(), Reason::InvalidLeverage, "the standard group's 20x");
    assert!(h.open(h.open_req(s, Side::Long, 20, Size::Quantity(btc(1)))).is_ok());
    let free = h.open(h.open_req(p, Side::Long, 50, Size::Quantity(btc(1)))).unwrap();
    let charged = h.run(CommandKind::ChargeFinancing { market: BTC, period: 1 }).unwrap();
    assert!(matches!(charged, ReplyData::Financing { positions: 1, .. }), "{charged:?}");
    assert_eq!(h.position(p, free.id).margin, free.margin, "the pro group is swap-free");
}

#[test]
fn operators_edit_a_groups_terms_from_the_next_command_and_snapshots_keep_them() {
    let mut h = Harness::with(config());
    let ops = operator(&mut h);
    let a = h.account("s@x");
    h.deposit(a, usdc(100_000)).unwrap();
    move_to(&mut h, ops, "s@x", STANDARD).unwrap();
    h.price(BTC, usd(60_000));
    let edit = |h: &mut Harness, by, markup_ticks| {
        h.run(CommandKind::AdminSetGroupTerms {
            by,
            group: STANDARD,
            market: BTC,
            markup_ticks: Some(markup_ticks),
            commission_rate: None,
            max_leverage: None,
        })
    };
    assert_eq!(edit(&mut h, a, 100), Err(Reason::NotAdmin));
    assert_eq!(edit(&mut h, ops, -1), Err(Reason::InvalidRequest));
    let edited = edit(&mut h, ops, 100).unwrap();
    let ReplyData::GroupTerms { terms, .. } = edited else { panic!("{edited:?}") };
    assert_eq!(terms.markup_ticks, 100);
    let before = h.balance(a).available;
    let p = h.open(h.open_req(a, Side::Long, 10, Size::Quantity(btc(1)))).unwrap();
    h.close(a, p.id, None).unwrap();
    // 1.00 of markup a side now, and the market's 6.00 fee a side.
    assert_eq!(before.0 - h.balance(a).available.0, 2 * 1_000_000 + 2 * 6_000_000);
    // The whole edit: bps markup, per-lot commission, the group's own financing.
    let edit_all = |h: &mut Harness, edit| {
        h.run(CommandKind::AdminEditGroup { by: ops, group: STANDARD, market: BTC, edit })
    };
    let bad =
        GroupEdit { markup_bps: Some(2), commission_per_lot: Some(usdc(1)), ..Default::default() };
    let terms = |h: &Harness| (h.engine.snapshot().group_terms, h.engine.snapshot().group_pricing);
    let kept = terms(&h);
    let refused = edit_all(&mut h, GroupEdit { markup_bps: Some(1001), ..bad });
    assert_eq!(refused, Err(Reason::InvalidRequest));
    assert_eq!(terms(&h), kept, "a refused edit changes nothing, not even its valid part");
    let full = GroupEdit {
        markup_ticks: Some(0),
        markup_bps: Some(2),
        commission_per_lot: Some(usdc(1)),
        financing_long_rate: Some(Ppm(500)),
        ..Default::default()
    };
    let ReplyData::GroupTerms { terms, .. } = edit_all(&mut h, full).unwrap() else { panic!() };
    assert_eq!(terms.financing, Some((Ppm(500), Ppm(0))), "the short side keeps the market's");
    let before = h.balance(a).available;
    let p = h.open(h.open_req(a, Side::Long, 10, Size::Quantity(btc(1)))).unwrap();
    h.run(CommandKind::ChargeFinancing { market: BTC, period: 1 }).unwrap();
    // 0.05 % of 60 000 = 30.00 of financing at the group's new rate.
    assert_eq!(p.margin.0 - h.position(a, p.id).margin.0, 30_000_000);
    h.close(a, p.id, None).unwrap();
    // A side: 2 bps of 60 000 = 12.00 of markup, 1.00 a lot, the market's 6.00.
    let cost = before.0 - h.balance(a).available.0;
    assert_eq!(cost, 2 * (12_000_000 + 1_000_000 + 6_000_000) + 30_000_000);
    let changed = h.out.iter().rev().find_map(|o| match o {
        Output::Change(ChangeRecord { change: Change::GroupTermsSet { by, edit, .. }, .. }) => {
            Some((*by, *edit))
        }
        _ => None,
    });
    assert_eq!(changed, Some((ops, full)), "journaled and recorded with who did it");
    let restored = Engine::restore(h.engine.config().clone(), &h.engine.snapshot()).unwrap();
    assert_eq!(restored.state_hash(), h.engine.state_hash(), "the edited terms are kept");
    let mut fresh = Harness::with(config());
    assert_ne!(fresh.engine.snapshot().group_pricing, h.engine.snapshot().group_pricing);
    fresh.engine = restored;
    assert_eq!(fresh.engine.snapshot().group_pricing, h.engine.snapshot().group_pricing);
}

#[test]
fn a_pending_order_holds_the_groups_charges_so_its_fill_can_pay_them() {
    let mut h = Harness::with(config());
    let ops = operator(&mut h);
    let a = h.account("s@x");
    move_to(&mut h, ops, "s@x", STANDARD).unwrap();
    h.price(BTC, usd(60_000));
    // Everything the account has goes into one limit order: margin, the market's fee and the
    // group's markup, all held.
    let available = h.balance(a).available;
    let req = OrderRequest {
        account: a,
        market: BTC,
        side: Side::Long,
        kind: OrderKind::Limit,
        price: usd(59_000),
        leverage: 100,
        size: Size::Quantity(btc(1)),
        take_profit: None,
        stop_loss: None,
        expires_at_ns: None,
        client_order_id: None,
    };
    let placed = h.run(CommandKind::PlaceOrder(req)).unwrap();
    let ReplyData::Order(order) = placed else { panic!("{placed:?}") };
    // 590 margin + 5.90 fee + 0.50 markup.
    assert_eq!(order.reserved, Usdc(596_400_000));
    assert!(order.reserved <= available);
    h.price(BTC, usd(59_000));
    assert_eq!(h.balance(a).order_margin, Usdc::ZERO, "filled");
    assert_eq!(h.summary().spread_revenue, Usdc(500_000));
}

#[test]
fn a_groups_margin_call_level_warns_its_positions_earlier() {
    let mut cfg = config();
    cfg.groups[2].margin_call_level = Some(Ppm(5_000_000)); // pro: warned at 5x the maintenance
    let mut h = Harness::with(cfg);
    let ops = operator(&mut h);
    h.price(BTC, usd(60_000));
    let (d, p) = (h.account("d@x"), h.account("p@x"));
    h.deposit(p, usdc(100_000)).unwrap();
    h.deposit(d, usdc(100_000)).unwrap();
    move_to(&mut h, ops, "p@x", PRO).unwrap();
    let pd = h.open(h.open_req(d, Side::Long, 50, Size::Quantity(btc(1)))).unwrap();
    let pp = h.open(h.open_req(p, Side::Long, 50, Size::Quantity(btc(1)))).unwrap();
    // Equity 1 200 at 60 000; maintenance 0.5 % of the notional ≈ 300. At 59 300 equity is
    // ≈ 500: below 5 × 300 (pro) but above 1.5 × 300 (default).
    let from = h.out.len();
    h.price(BTC, usd(59_300));
    let called: Vec<PositionId> = h.out[from..]
        .iter()
        .filter_map(|o| match o {
            Output::Change(ChangeRecord {
                change: Change::MarginCall { position, .. }, ..
            }) => Some(*position),
            _ => None,
        })
        .collect();
    assert_eq!(called, [pp.id], "only the pro group's position is called");
    assert_ne!(pd.id, pp.id);
}

#[test]
fn bps_markup_and_per_lot_commission_round_up_on_fractions_and_a_group_sets_its_own_financing() {
    let mut cfg = config();
    cfg.markets[0].financing_long_rate = Ppm(100);
    cfg.markets[0].financing_short_rate = Ppm(100);
    let mut h = Harness::with(cfg);
    let ops = operator(&mut h);
    h.price(BTC, usd(60_000));
    let (d, r) = (h.account("d@x"), h.account("r@x"));
    h.deposit(d, usdc(100_000)).unwrap();
    h.deposit(r, usdc(100_000)).unwrap();
    move_to(&mut h, ops, "r@x", RAW).unwrap();
    // 0.333 BTC at 60 000: 1 bps of 19 980 = 1.998, 3.50 × 0.333 = 1.1655 (exact in micros).
    let q = Qty(btc(1).0 / 1000 * 333);
    let (spread0, commission0) = (h.summary().spread_revenue, h.summary().commission_revenue);
    let long = h.open(h.open_req(r, Side::Long, 10, Size::Quantity(q))).unwrap();
    let s = h.summary();
    assert_eq!(s.spread_revenue.0 - spread0.0, 1_998_000);
    assert_eq!(s.commission_revenue.0 - commission0.0, 1_165_500);
    let short = h.open(h.open_req(r, Side::Short, 10, Size::Quantity(btc(1)))).unwrap();
    let plain = h.open(h.open_req(d, Side::Long, 10, Size::Quantity(btc(1)))).unwrap();
    h.run(CommandKind::ChargeFinancing { market: BTC, period: 1 }).unwrap();
    // At 60 000 the raw group pays 0.03 % on its long (19 980 × 0.0003 = 5.994) and earns
    // 0.02 % on its short (12.00); the default group pays the market's 0.01 % (6.00).
    let taken = |h: &mut Harness, a, p: &PositionView| p.margin.0 - h.position(a, p.id).margin.0;
    assert_eq!(taken(&mut h, r, &long), 5_994_000, "the raw group's long rate");
    assert_eq!(taken(&mut h, r, &short), -12_000_000, "the raw group's short rate, paid to it");
    assert_eq!(taken(&mut h, d, &plain), 6_000_000, "the market's rate for the default group");
}
