//! Every close explained (docs/DESIGN.md, "Every close explained"): each take-profit,
//! stop-loss, trailing stop, liquidation, margin call and stop-out records what fired and the
//! rule's inputs right before the change it explains, and on a market made from several venues
//! each source's quote.

mod common;

use common::*;
use engine_core::prelude::*;

/// The `explained` change right before the close (or call) of `position`, and what follows it.
fn explained_before(changes: &[Change], position: PositionId) -> (Change, Change) {
    let at = changes
        .iter()
        .position(|c| matches!(c, Change::Explained { position: p, .. } if *p == position))
        .unwrap_or_else(|| panic!("no explanation of {position:?} in {changes:?}"));
    (changes[at], changes[at + 1])
}

fn open(
    h: &mut Harness,
    a: AccountId,
    lev: u32,
    tp: Option<Price>,
    sl: Option<Price>,
) -> PositionView {
    let mut req = OpenRequest::new(a, BTC, Side::Long, lev, Size::Quantity(btc(1)));
    req.take_profit = tp;
    req.stop_loss = sl;
    h.open(req).unwrap()
}

#[test]
fn take_profit_stop_loss_and_liquidation_say_what_fired_and_with_which_inputs() {
    let mut h =
        Harness::with(EngineConfig { margin_call_level: Ppm(0), ..EngineConfig::default() });
    h.price(BTC, usd(50_000));
    let a = h.account("a@x");
    h.deposit(a, usdc(100_000)).unwrap();
    let tp = open(&mut h, a, 10, Some(usd(51_000)), None);
    let sl = open(&mut h, a, 10, None, Some(usd(49_500)));
    let liq = open(&mut h, a, 50, None, None);

    let from = h.out.len();
    h.tick(BTC, usd(51_000), Price(5_100_010)).unwrap();
    let (why, next) = explained_before(&changes_since(&h, from), tp.id);
    let Change::Explained { trigger, trigger_price, bid, ask, margin, maintenance_rate, .. } = why
    else {
        unreachable!()
    };
    assert_eq!((trigger, trigger_price), (Trigger::TakeProfit, usd(51_000)));
    assert_eq!((bid, ask), (usd(51_000), Price(5_100_010)));
    assert_eq!((margin, maintenance_rate), (usdc(5_000), Ppm(5_000)));
    assert!(matches!(next, Change::Closed { reason: CloseReason::TakeProfit, .. }), "{next:?}");

    let from = h.out.len();
    h.price(BTC, usd(49_400));
    let changes = changes_since(&h, from);
    let (why, _) = explained_before(&changes, sl.id);
    let from = h.out.len();
    h.price(BTC, usd(49_200));
    let changes = changes_since(&h, from);
    assert!(
        matches!(why, Change::Explained { trigger: Trigger::StopLoss, trigger_price, .. } if trigger_price == usd(49_500))
    );
    // 50x of 1 BTC at 50 000: margin 1 000, liquidated at ⌈49 000 / 0.995⌉ = 49 246.24.
    let (why, next) = explained_before(&changes, liq.id);
    let Change::Explained { trigger, trigger_price, margin, .. } = why else { unreachable!() };
    assert_eq!(
        (trigger, trigger_price, margin),
        (Trigger::Liquidation, Price(4_924_624), usdc(1_000))
    );
    assert_eq!(trigger_price, liq.liquidation_price);
    assert!(matches!(next, Change::Closed { reason: CloseReason::Liquidation, .. }), "{next:?}");
}

#[test]
fn a_trailing_stop_and_a_margin_call_name_their_prices() {
    let mut h = Harness::new(); // margin calls at 1.5
    h.price(BTC, usd(50_000));
    let a = h.account("a@x");
    h.deposit(a, usdc(100_000)).unwrap();
    let called = open(&mut h, a, 50, None, None);
    let trailing = open(&mut h, a, 10, None, None);
    let distance = TrailDistance::Price(usd(500));
    let kind = CommandKind::SetTrailingStop {
        account: a,
        position: trailing.id,
        distance: Some(distance),
        key: None,
    };
    h.run(kind).unwrap();
    h.price(BTC, usd(50_200)); // the stop follows to 49 700
    let from = h.out.len();
    h.price(BTC, usd(49_600));
    let changes = changes_since(&h, from);
    let (why, next) = explained_before(&changes, trailing.id);
    assert!(
        matches!(why, Change::Explained { trigger: Trigger::TrailingStop, trigger_price, .. } if trigger_price == usd(49_700)),
        "{why:?}"
    );
    assert!(matches!(next, Change::Closed { reason: CloseReason::TrailingStop, .. }));
    // 50x: called at ⌈(50 000 − 1 000) / (1 − 1.5 × 0.005)⌉ = 49 370.28.
    let from = h.out.len();
    h.price(BTC, usd(49_300));
    let changes = changes_since(&h, from);
    let (why, next) = explained_before(&changes, called.id);
    let Change::Explained { trigger, trigger_price, call_level, .. } = why else { unreachable!() };
    let Change::MarginCall { margin_call_price, .. } = next else { panic!("{next:?}") };
    assert_eq!(
        (trigger, trigger_price, call_level),
        (Trigger::MarginCall, margin_call_price, Ppm(1_500_000))
    );
}

#[test]
fn a_stop_out_explains_each_close_after_the_accounts_level() {
    let mut h =
        Harness::with(EngineConfig { margin_call_level: Ppm(0), ..EngineConfig::default() });
    h.price(BTC, usd(50_000));
    let x = h.account("x@x");
    h.run(CommandKind::SetMarginMode { account: x, mode: MarginMode::Cross }).unwrap();
    let p = open(&mut h, x, 100, None, None);
    let from = h.out.len();
    h.price(BTC, usd(45_000));
    let changes = changes_since(&h, from);
    let stop = changes.iter().position(|c| matches!(c, Change::StopOut { .. })).unwrap();
    let (why, next) = explained_before(&changes[stop..], p.id);
    assert!(matches!(
        why,
        Change::Explained { trigger: Trigger::StopOut, trigger_price: Price(0), .. }
    ));
    // Then its loss beyond its margin is paid from the balance, then it closes.
    assert!(matches!(next, Change::MarginAdded { .. }), "{next:?}");
    assert!(matches!(changes.last(), Some(Change::Closed { reason: CloseReason::StopOut, .. })));
}

/// BTC made from three venues: the liquidation's explanation carries each venue's quote.
#[test]
fn on_a_market_made_from_venues_each_sources_quote_is_recorded() {
    let mut cfg = EngineConfig { margin_call_level: Ppm(0), ..EngineConfig::default() };
    cfg.markets[0].sources = 3;
    let mut h = Harness::with(cfg);
    let mut ids = [0u64; 3];
    let mut quote = |h: &mut Harness, s: u8, bid: Price, ask: Price| {
        ids[usize::from(s)] += 1;
        let tick =
            Tick { market: BTC, bid, ask, update_id: ids[usize::from(s)], exchange_time_us: 0 };
        h.run(CommandKind::SourceQuote { source: SourceId(s), tick }).unwrap();
    };
    for s in 0..3 {
        quote(&mut h, s, usd(50_000), usd(50_000));
    }
    let a = h.account("a@x");
    let p = open(&mut h, a, 50, None, None);
    quote(&mut h, 0, usd(49_000), usd(49_001));
    // The second venue down too: the median (49 100) is past the liquidation price (49 246.24).
    let from = h.out.len();
    quote(&mut h, 1, usd(49_100), usd(49_101));
    let changes = changes_since(&h, from);
    let (why, quotes) = explained_before(&changes, p.id);
    assert!(matches!(why, Change::Explained { trigger: Trigger::Liquidation, .. }));
    let Change::SourceQuotes { quotes, fresh, agreeing, position, .. } = quotes else {
        panic!("{quotes:?}")
    };
    assert_eq!(position, p.id);
    let third = (usd(50_000), usd(50_000));
    assert_eq!(&quotes[..3], &[(usd(49_000), usd(49_001)), (usd(49_100), usd(49_101)), third]);
    assert_eq!(&quotes[3..], &[(Price(0), Price(0)); 5], "five sources not configured");
    // Mids 49 000.50, 49 100.50, 50 000: the third is 1.8 % from the median, past 1 %.
    assert_eq!((fresh, agreeing), (3, 2));
}
