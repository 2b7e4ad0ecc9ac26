//! Tiered margin (docs/DESIGN.md, "Tiered margin"): leverage brackets by notional at entry,
//! each with its maximum leverage and maintenance rate, and the maintenance amount that keeps
//! maintenance margin continuous. Bracket edges one step below and above each cap, the
//! liquidation price with the maintenance amount to the cent, a partial close that moves a
//! position down a bracket, snapshots, and the configuration's rules.

mod common;

use common::*;
use engine_core::config::{Bracket, MarketConfig};
use engine_core::prelude::*;

/// BTC (2 price, 5 quantity decimals): up to 50 000 USDC of notional 100x at 0.5 %, up to
/// 250 000 50x at 1 % (maintenance amount 250), above that 20x at 2.5 % (amount 4 000).
fn brackets() -> Vec<Bracket> {
    vec![
        Bracket {
            notional_cap: Some(usdc(50_000)),
            max_leverage: 100,
            maintenance_margin_rate: Ppm(5_000),
        },
        Bracket {
            notional_cap: Some(usdc(250_000)),
            max_leverage: 50,
            maintenance_margin_rate: Ppm(10_000),
        },
        Bracket { notional_cap: None, max_leverage: 20, maintenance_margin_rate: Ppm(25_000) },
    ]
}

fn config() -> EngineConfig {
    let mut cfg = EngineConfig::default();
    cfg.markets[0].brackets = brackets();
    cfg.margin_call_level = Ppm(0);
    cfg
}

fn trader(h: &mut Harness) -> AccountId {
    let a = h.account("t@x");
    h.deposit(a, usdc(1_000_000)).unwrap();
    a
}

fn open(h: &mut Harness, a: AccountId, lev: u32, q: Qty) -> Result<PositionView, Reason> {
    h.open(h.open_req(a, Side::Long, lev, Size::Quantity(q)))
}

#[test]
fn a_positions_bracket_is_its_notional_at_entry_to_the_step() {
    let mut h = Harness::with(config());
    h.price(BTC, usd(50_000));
    let a = trader(&mut h);
    // 1 BTC at 50 000.00 is exactly the first cap: 100x.
    assert!(open(&mut h, a, 100, btc(1)).is_ok());
    // One step more (0.50 USDC of notional): the second bracket, 50x at most.
    let over = Qty(btc(1).0 + 1);
    assert_eq!(open(&mut h, a, 100, over), Err(Reason::LeverageAboveBracket));
    assert_eq!(open(&mut h, a, 51, over), Err(Reason::LeverageAboveBracket));
    assert!(open(&mut h, a, 50, over).is_ok());
    // 5 BTC = 250 000: still the second; one step more: the third, 20x.
    assert!(open(&mut h, a, 50, btc(5)).is_ok());
    let over = Qty(btc(5).0 + 1);
    assert_eq!(open(&mut h, a, 21, over), Err(Reason::LeverageAboveBracket));
    assert!(open(&mut h, a, 20, over).is_ok());
    assert_eq!(Reason::LeverageAboveBracket.code(), "leverage_above_bracket");
}

#[test]
fn the_liquidation_price_counts_the_brackets_maintenance_amount_to_the_cent() {
    let mut h = Harness::with(config());
    h.price(BTC, usd(50_000));
    let a = trader(&mut h);
    // 2 BTC at 50 000 (100 000 of notional, the second bracket) at 50x: margin 2 000.
    // Liquidation: (100 000 − 2 000 − 250) / (2 × 0.99) = 49 368.686… → 49 368.69 (up).
    let p = open(&mut h, a, 50, btc(2)).unwrap();
    assert_eq!((p.margin, p.liquidation_price), (usdc(2_000), Price(4_936_869)));
    // Without the maintenance amount it would be (100 000 − 2 000) / 1.98 = 49 494.95.
    h.price(BTC, Price(4_936_870));
    assert_eq!(h.position(a, p.id).status, PositionStatus::Open, "one cent above");
    let from = h.out.len();
    h.price(BTC, Price(4_936_869));
    let closed = closed_events(&h.events_since(from));
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].close.unwrap().reason, CloseReason::Liquidation);
}

#[test]
fn a_partial_close_moves_a_position_down_a_bracket_and_snapshots_agree() {
    let mut h = Harness::with(config());
    h.price(BTC, usd(50_000));
    let a = trader(&mut h);
    let p = open(&mut h, a, 50, btc(2)).unwrap();
    // Half closed: 1 BTC left (50 000, the first bracket, 0.5 % and no maintenance amount),
    // margin 1 000: (50 000 − 1 000) / 0.995 = 49 246.231… → 49 246.24.
    h.close(a, p.id, Some(btc(1))).unwrap();
    let left = h.position(a, p.id);
    assert_eq!((left.quantity, left.margin), (btc(1), usdc(1_000)));
    assert_eq!(left.liquidation_price, Price(4_924_624));
    let restored = Engine::restore(h.engine.config().clone(), &h.engine.snapshot()).unwrap();
    assert_eq!(restored.state_hash(), h.engine.state_hash());
    // Operators cannot set a bracketed market's rate (the brackets hold it).
    let ops = h.account("ops@x");
    h.run(CommandKind::SetRole { login: Login::new("ops@x").unwrap(), admin: true }).unwrap();
    let set = CommandKind::AdminSetMarket {
        by: ops,
        market: BTC,
        mode: None,
        max_leverage: None,
        maintenance_margin_rate: Some(Ppm(6_000)),
    };
    assert_eq!(h.run(set), Err(Reason::InvalidRequest));
}

#[test]
fn brackets_follow_the_configurations_rules() {
    let with = |b: Vec<Bracket>| {
        let mut cfg = EngineConfig::default();
        cfg.markets[0].brackets = b;
        cfg.validate()
    };
    assert!(with(brackets()).is_ok());
    let mut m = MarketConfig::new("BTC_USDC", 2, 5);
    m.brackets = brackets();
    assert_eq!(m.maintenance_amounts(), [Usdc::ZERO, usdc(250), usdc(4_000)]);
    let mut first = brackets();
    first[0].max_leverage = 90; // not the market's own
    assert!(with(first).is_err());
    let mut falling = brackets();
    falling[2].maintenance_margin_rate = Ppm(9_000);
    assert!(with(falling).is_err());
    let mut fraction = brackets();
    fraction[0].notional_cap = Some(Usdc(50_000_500_000)); // not whole USDC
    assert!(with(fraction).is_err());
    let mut capped_last = brackets();
    capped_last[2].notional_cap = Some(usdc(1_000_000));
    assert!(with(capped_last).is_err());
    let mut too_much = brackets();
    too_much[1].max_leverage = 100; // 100 × 1 % = 1: liquidated at once
    assert!(with(too_much).is_err());
    assert!(MarketConfig::new("X", 2, 5).brackets.is_empty(), "none by default");
}

#[test]
fn the_margin_call_counts_the_maintenance_amount_too() {
    let mut cfg = config();
    cfg.margin_call_level = Ppm(1_500_000); // warn at 1.5 × maintenance margin
    let mut h = Harness::with(cfg);
    h.price(BTC, usd(50_000));
    let a = trader(&mut h);
    // Equity = 1.5 × (1 % × notional − 250): (100 000 − 2 000 − 1.5 × 250) / (2 × 0.985)
    // = 49 555.837… → 49 555.84.
    let p = open(&mut h, a, 50, btc(2)).unwrap();
    let called = |h: &Harness, from: usize| {
        h.out[from..].iter().any(|o| {
            matches!(o, Output::Change(ChangeRecord { change: Change::MarginCall { position, .. }, .. }) if *position == p.id)
        })
    };
    let from = h.out.len();
    h.price(BTC, Price(4_955_585));
    assert!(!called(&h, from), "one cent above");
    h.price(BTC, Price(4_955_584));
    assert!(called(&h, from));
}

/// A client group's own brackets on BTC (the market has none): up to 10 000 USDC of notional
/// 100x at 0.5 %, above that 20x at 2 % (maintenance amount 10 000 × 1.5 % = 150).
fn pro_config() -> EngineConfig {
    use engine_core::config::{GroupConfig, GroupMarket};
    let pro = GroupMarket {
        symbol: "BTC_USDC".into(),
        brackets: vec![
            Bracket {
                notional_cap: Some(usdc(10_000)),
                max_leverage: 100,
                maintenance_margin_rate: Ppm(5_000),
            },
            Bracket { notional_cap: None, max_leverage: 20, maintenance_margin_rate: Ppm(20_000) },
        ],
        ..GroupMarket::default()
    };
    let mut cfg = EngineConfig { margin_call_level: Ppm(0), ..EngineConfig::default() };
    cfg.groups = vec![
        GroupConfig { name: "standard".into(), ..GroupConfig::default() },
        GroupConfig { name: "pro".into(), markets: vec![pro], ..GroupConfig::default() },
    ];
    cfg
}

#[test]
fn a_groups_brackets_apply_to_its_accounts_and_a_position_keeps_them_until_resized() {
    let mut h = Harness::with(pro_config());
    h.price(BTC, usd(50_000));
    let ops = h.account("ops@x");
    h.run(CommandKind::SetRole { login: Login::new("ops@x").unwrap(), admin: true }).unwrap();
    let move_to = |h: &mut Harness, login: &str, group| {
        let login = Login::new(login).unwrap();
        h.run(CommandKind::AdminSetGroup { by: ops, login, group }).unwrap();
    };
    let standard = trader(&mut h);
    assert!(open(&mut h, standard, 100, btc(1)).is_ok(), "the market's terms: no brackets");
    let pro = h.account("p@x");
    h.deposit(pro, usdc(100_000)).unwrap();
    move_to(&mut h, "p@x", 1);
    // 1 BTC at 50 000 is above the group's first cap: 20x at most.
    assert_eq!(open(&mut h, pro, 100, btc(1)), Err(Reason::LeverageAboveBracket));
    assert_eq!(open(&mut h, pro, 21, btc(1)), Err(Reason::LeverageAboveBracket));
    let p = open(&mut h, pro, 20, btc(1)).unwrap();
    // 2 500 + 150 + (p − 50 000) = 0.02 p: p = 48 316.326… → 48 316.33 (up).
    let liq = engine_core::math::Scale::new(2, 5).liquidation_price(
        Side::Long,
        usd(50_000),
        btc(1),
        usdc(2_650),
        Ppm(20_000),
    );
    assert_eq!((p.liquidation_price, liq), (Price(4_831_633), Price(4_831_633)));
    // 0.2 BTC (10 000, the first cap exactly): 100x.
    assert!(open(&mut h, pro, 100, Qty(20_000)).is_ok());

    // Moved back: the open position keeps the group's brackets, and a snapshot keeps them.
    move_to(&mut h, "p@x", 0);
    assert_eq!(h.position(pro, p.id).liquidation_price, Price(4_831_633));
    let restored = Engine::restore(h.engine.config().clone(), &h.engine.snapshot()).unwrap();
    assert_eq!(restored.state_hash(), h.engine.state_hash());
    h.engine = restored;
    assert_eq!(h.position(pro, p.id).liquidation_price, Price(4_831_633));
    // Its margin changes: the account's group's terms now (the market's 0.5 %, no amount):
    // 2 600 + (p − 50 000) = 0.005 p, p = 47 638.190… → 47 638.20.
    let add = CommandKind::AddMargin { account: pro, position: p.id, amount: usdc(100), key: None };
    h.run(add).unwrap();
    assert_eq!(h.position(pro, p.id).liquidation_price, Price(4_763_820));
}

#[test]
fn a_groups_brackets_follow_the_same_rules() {
    let mut cfg = pro_config();
    assert!(cfg.validate().is_ok());
    cfg.groups[1].markets[0].brackets[0].max_leverage = 101; // above the market's 100
    assert!(cfg.validate().is_err());
    let mut cfg = pro_config();
    cfg.groups[1].markets[0].brackets[1].maintenance_margin_rate = Ppm(4_000); // falling
    assert!(cfg.validate().is_err());
    let mut cfg = pro_config();
    cfg.groups[1].markets[0].brackets[1].notional_cap = Some(usdc(20_000)); // the last capped
    assert!(cfg.validate().is_err());
}
