//! The back office's account controls (docs/DESIGN.md, "Account controls"): suspend,
//! close-only and reinstate gate exactly what they say; balance adjustments and credit move
//! money between the house and the account inside the conservation identity (which the
//! harness checks after every command); credit can be traded and lost but never withdrawn;
//! every action names who and why, and snapshots and replays keep it.

mod common;

use common::*;
use engine_core::command::Note;
use engine_core::desk::{AccountAction, AccountStatus};
use engine_core::prelude::*;

fn operator(h: &mut Harness) -> AccountId {
    let ops = h.account("ops@x");
    h.run(CommandKind::SetRole { login: Login::new("ops@x").unwrap(), admin: true }).unwrap();
    ops
}

fn act(
    h: &mut Harness,
    (by, account): (AccountId, AccountId),
    action: AccountAction,
) -> Result<engine_core::access::AccountControls, Reason> {
    let note = Note::new("ticket 4711").unwrap();
    match h.run(CommandKind::AdminAccount { by, account, action, note })? {
        ReplyData::Controls(c) => Ok(c),
        other => panic!("admin account replied {other:?}"),
    }
}

fn limit_long(a: AccountId, price: Price) -> OrderRequest {
    OrderRequest {
        account: a,
        market: BTC,
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

fn house(h: &Harness) -> i128 {
    h.summary().house_balance.0
}

#[test]
fn a_suspended_account_may_only_query_and_is_still_liquidated() {
    let mut h = Harness::new();
    let ops = operator(&mut h);
    let a = h.account("a@x");
    h.deposit(a, usdc(100_000)).unwrap();
    h.price(BTC, usd(60_000));
    let p = h.open(h.open_req(a, Side::Long, 50, Size::Margin(usdc(1_000)))).unwrap();
    h.run(CommandKind::PlaceOrder(limit_long(a, usd(50_000)))).unwrap();
    let from = h.out.len();
    let c = act(&mut h, (ops, a), AccountAction::SetStatus(AccountStatus::Suspended)).unwrap();
    assert_eq!(c.status, AccountStatus::Suspended);
    // Its pending order was cancelled with it: a fill would have opened exposure.
    let changes = changes_since(&h, from);
    assert!(matches!(changes[0], Change::OrderEnded { account, .. } if account == a));
    assert!(matches!(
        changes.last(),
        Some(Change::AccountControlled { account, by, note, .. })
            if *account == a && *by == ops && note.as_str() == "ticket 4711"
    ));
    let refused = [
        CommandKind::Deposit { account: a, amount: usdc(1), key: None },
        CommandKind::Withdraw { account: a, amount: usdc(1), key: None },
        CommandKind::OpenPosition(h.open_req(a, Side::Long, 10, Size::Margin(usdc(100)))),
        CommandKind::ClosePosition { account: a, position: p.id, quantity: None, key: None },
        CommandKind::PlaceOrder(limit_long(a, usd(50_000))),
        CommandKind::CloseAllPositions { account: a, market: None, key: None },
        CommandKind::ScheduleCancel { account: a, after_ms: Some(60_000) },
    ];
    for kind in refused {
        assert_eq!(h.run(kind), Err(Reason::AccountSuspended), "{kind:?}");
    }
    // Queries answer; another account trades on.
    assert_eq!(h.balance(a).open_positions, 1);
    let b = h.account("b@x");
    h.open(h.open_req(b, Side::Long, 10, Size::Margin(usdc(100)))).unwrap();
    // The engine still closes its position at its liquidation price.
    h.price(BTC, p.liquidation_price);
    assert_eq!(h.balance(a).open_positions, 0);
    // Reinstated, it trades again.
    act(&mut h, (ops, a), AccountAction::SetStatus(AccountStatus::Active)).unwrap();
    h.open(h.open_req(a, Side::Long, 10, Size::Margin(usdc(100)))).unwrap();
}

#[test]
fn a_close_only_account_reduces_but_never_adds_exposure() {
    let mut h = Harness::new();
    let ops = operator(&mut h);
    let a = h.account("a@x");
    h.deposit(a, usdc(100_000)).unwrap();
    h.price(BTC, usd(60_000));
    let p = h.open(h.open_req(a, Side::Long, 10, Size::Quantity(btc(2)))).unwrap();
    act(&mut h, (ops, a), AccountAction::SetStatus(AccountStatus::CloseOnly)).unwrap();
    let open = h.open_req(a, Side::Long, 10, Size::Margin(usdc(100)));
    assert_eq!(h.open(open), Err(Reason::AccountCloseOnly));
    let short = h.open_req(a, Side::Short, 10, Size::Margin(usdc(100)));
    assert_eq!(h.open(short), Err(Reason::AccountCloseOnly), "a hedge is new exposure");
    let order = CommandKind::PlaceOrder(limit_long(a, usd(50_000)));
    assert_eq!(h.run(order), Err(Reason::AccountCloseOnly));
    // Close part, deposit, withdraw, add margin: all allowed.
    h.close(a, p.id, Some(btc(1))).unwrap();
    h.deposit(a, usdc(10)).unwrap();
    h.run(CommandKind::Withdraw { account: a, amount: usdc(10), key: None }).unwrap();
    let add = CommandKind::AddMargin { account: a, position: p.id, amount: usdc(5), key: None };
    h.run(add).unwrap();
    h.close(a, p.id, None).unwrap();
}

#[test]
fn a_netting_close_only_account_may_still_reduce_with_an_opposite_order() {
    let mut h = Harness::new();
    let ops = operator(&mut h);
    let a = h.account("a@x");
    h.deposit(a, usdc(100_000)).unwrap();
    h.run(CommandKind::SetPositionMode { account: a, mode: PositionMode::Netting }).unwrap();
    h.price(BTC, usd(60_000));
    h.open(h.open_req(a, Side::Long, 10, Size::Quantity(btc(2)))).unwrap();
    act(&mut h, (ops, a), AccountAction::SetStatus(AccountStatus::CloseOnly)).unwrap();
    let reduce = h.open_req(a, Side::Short, 10, Size::Quantity(btc(1)));
    h.open(reduce).unwrap();
    let reverse = h.open_req(a, Side::Short, 10, Size::Quantity(btc(3)));
    assert_eq!(h.open(reverse), Err(Reason::AccountCloseOnly), "a reversal opens the rest");
}

#[test]
fn a_balance_adjustment_moves_money_between_the_house_and_the_account_only() {
    let mut h = Harness::new();
    let ops = operator(&mut h);
    let a = h.account("a@x"); // 5 000 demo deposit
    let (before, house_before) = (h.balance(a).available, house(&h));
    let c = act(&mut h, (ops, a), AccountAction::AdjustBalance(usdc(250))).unwrap();
    assert_eq!(h.balance(a).available, Usdc(before.0 + usdc(250).0));
    assert_eq!(house(&h), house_before - usdc(250).0);
    assert_eq!(c.withdrawable, h.balance(a).available);
    act(&mut h, (ops, a), AccountAction::AdjustBalance(Usdc(-usdc(5_250).0))).unwrap();
    assert_eq!(h.balance(a).available, Usdc::ZERO);
    assert_eq!(house(&h), house_before + usdc(5_000).0);
    // Nothing left to take: refused, nothing changed.
    let take = AccountAction::AdjustBalance(Usdc(-1));
    assert_eq!(act(&mut h, (ops, a), take), Err(Reason::InsufficientBalance));
    assert_eq!(
        act(&mut h, (ops, a), AccountAction::AdjustBalance(Usdc::ZERO)),
        Err(Reason::InvalidAmount)
    );
    let too_big = AccountAction::AdjustBalance(Usdc(engine_core::config::MAX_AMOUNT.0 + 1));
    assert_eq!(act(&mut h, (ops, a), too_big), Err(Reason::InvalidAmount));
}

#[test]
fn operators_act_with_a_reason_on_other_accounts_only() {
    let mut h = Harness::new();
    let ops = operator(&mut h);
    let a = h.account("a@x");
    let pay = AccountAction::AdjustBalance(usdc(1));
    let blank = Note::new("   ").unwrap();
    let kind = CommandKind::AdminAccount { by: ops, account: a, action: pay, note: blank };
    assert_eq!(h.run(kind), Err(Reason::ReasonRequired));
    assert_eq!(act(&mut h, (ops, ops), pay), Err(Reason::OwnAccount));
    assert_eq!(act(&mut h, (a, ops), pay), Err(Reason::NotAdmin));
    assert_eq!(act(&mut h, (ops, AccountId(99)), pay), Err(Reason::UnknownAccount));
    let from = h.out.len();
    assert_eq!(act(&mut h, (ops, a), AccountAction::MoveGroup(7)), Err(Reason::UnknownGroup));
    assert!(changes_since(&h, from).is_empty(), "a refusal changes nothing");
}

#[test]
fn credit_is_traded_and_lost_but_never_withdrawn() {
    let mut h = Harness::new();
    let ops = operator(&mut h);
    let a = h.account("a@x");
    let all = h.balance(a).available;
    h.run(CommandKind::Withdraw { account: a, amount: all, key: None }).unwrap();
    let house_before = house(&h);
    let c = act(&mut h, (ops, a), AccountAction::AdjustCredit(usdc(1_000))).unwrap();
    assert_eq!((c.credit, c.withdrawable), (usdc(1_000), Usdc::ZERO));
    assert_eq!(house(&h), house_before - usdc(1_000).0);
    let w = |amount| CommandKind::Withdraw { account: a, amount, key: None };
    assert_eq!(h.run(w(usdc(1))), Err(Reason::InsufficientBalance));
    // It trades with the credit; a profit is its own, the credit stays credit.
    h.price(BTC, usd(60_000));
    let p = h.open(h.open_req(a, Side::Long, 10, Size::Margin(usdc(500)))).unwrap();
    h.price(BTC, usd(66_000));
    h.close(a, p.id, None).unwrap();
    let view = h.balance(a);
    let profit = view.available.0 - usdc(1_000).0;
    assert!(profit > 0, "{view:?}");
    h.run(w(Usdc(profit + 1))).unwrap_err();
    h.run(w(Usdc(profit))).unwrap();
    // A loss takes credit with it: 10x long at 60 000 loses ~all its margin at 54 100.
    h.price(BTC, usd(60_000));
    let p = h.open(h.open_req(a, Side::Long, 10, Size::Margin(usdc(900)))).unwrap();
    h.price(BTC, usd(54_700));
    h.close(a, p.id, None).unwrap();
    let money = h.balance(a).available;
    assert!(money < usdc(1_000), "{money:?}");
    // New money never brings lost credit back: the deposit is all withdrawable.
    let from = h.out.len();
    h.deposit(a, usdc(2_000)).unwrap();
    let lost = changes_since(&h, from);
    assert!(
        matches!(lost[0], Change::CreditLost { account, amount, credit }
            if account == a && credit == money && amount == Usdc(usdc(1_000).0 - money.0)),
        "{lost:?}"
    );
    let c = act(&mut h, (ops, a), AccountAction::AdjustCredit(Usdc(-money.0))).unwrap();
    assert_eq!((c.credit, c.withdrawable), (Usdc::ZERO, usdc(2_000)));
    let more = AccountAction::AdjustCredit(Usdc(-1));
    assert_eq!(act(&mut h, (ops, a), more), Err(Reason::InvalidAmount));
}

#[test]
fn revoking_access_signs_out_every_session_and_every_key() {
    let mut h = Harness::new();
    let ops = operator(&mut h);
    let a = h.account("a@x");
    for pk in 1..=2u8 {
        let key = engine_core::command::NewApiKey {
            account: a,
            public_key: [pk; 32],
            label: engine_core::command::KeyLabel::new("bot").unwrap(),
            scopes: engine_core::command::KeyScopes(1),
            networks: [None; 4],
            expires_at_ns: None,
        };
        h.run(CommandKind::CreateApiKey(key)).unwrap();
    }
    let client = SessionClient {
        addr: [0; 16],
        v6: false,
        agent: engine_core::command::InlineStr::new("ua").unwrap(),
    };
    let session = NewSession { account: a, expires_at_ns: h.now + 1_000_000_000_000, client };
    h.run(CommandKind::OpenSession(session)).unwrap();
    act(&mut h, (ops, a), AccountAction::RevokeAccess).unwrap();
    assert_eq!(h.run(CommandKind::QueryApiKey { public_key: [1; 32] }), Err(Reason::UnknownApiKey));
    assert_eq!(h.run(CommandKind::QueryApiKey { public_key: [2; 32] }), Err(Reason::UnknownApiKey));
    assert!(matches!(
        h.run(CommandKind::QuerySessions { account: a }),
        Ok(ReplyData::Sessions { count: 0, .. })
    ));
}

#[test]
fn controls_survive_snapshots_and_replay_with_the_same_state_hash() {
    let mut h = Harness::new();
    let ops = operator(&mut h);
    let (a, b) = (h.account("a@x"), h.account("b@x"));
    act(&mut h, (ops, a), AccountAction::SetStatus(AccountStatus::Suspended)).unwrap();
    act(&mut h, (ops, b), AccountAction::AdjustCredit(usdc(300))).unwrap();
    act(&mut h, (ops, b), AccountAction::SetStatus(AccountStatus::CloseOnly)).unwrap();
    let snap = h.engine.snapshot();
    let mut restored = Engine::restore(h.engine.config().clone(), &snap).unwrap();
    assert_eq!(restored.state_hash(), h.engine.state_hash());
    let mut replayed = Engine::new(h.engine.config().clone()).unwrap();
    for cmd in &h.log {
        replayed.apply(cmd, &mut Vec::new());
    }
    assert_eq!(replayed.state_hash(), h.engine.state_hash());
    // The restored engine enforces them.
    let mut out = Vec::new();
    let deposit = CommandKind::Deposit { account: a, amount: usdc(1), key: None };
    restored.apply(&Command::new(RequestId(9_999), h.now, deposit), &mut out);
    assert!(matches!(
        out.last(),
        Some(Output::Reply { result: Err(Reason::AccountSuspended), .. })
    ));
    let query = CommandKind::QueryControls { account: b };
    restored.apply(&Command::new(RequestId(10_000), h.now, query), &mut out);
    assert!(matches!(
        out.last(),
        Some(Output::Reply { result: Ok(ReplyData::Controls(c)), .. })
            if c.credit == usdc(300) && c.status == AccountStatus::CloseOnly
    ));
}
