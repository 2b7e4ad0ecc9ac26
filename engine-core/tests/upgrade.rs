//! Snapshots written by earlier releases restore in this one with their request window: a
//! retried request is answered with its first reply, whatever the views have gained since.

use engine_core::persist::{HashShape, decode_snapshot};
use engine_core::prelude::*;

/// Written by bc87e5b (HXSNAP04, before cross margin, whose account view had 7 fields): an
/// account created, a price, a deposit of 100, an open of 1 BTC at 50 000 (10x), a withdrawal
/// of 50. Its request window holds two account replies and an open's.
const HXSNAP04: &[u8] = include_bytes!("fixtures/hxsnap04-window.bin");

#[test]
fn an_hxsnap04_snapshot_restores_with_its_request_window() {
    let file = decode_snapshot(HXSNAP04).expect("an HXSNAP04 file decodes");
    assert_eq!(file.seq, 5);
    let engine = Engine::restore(EngineConfig::default(), &file.snapshot).expect("restores");
    assert_eq!(file.hash_shape, HashShape::BeforeCross);
    assert_eq!(
        engine.state_hash_in(file.hash_shape),
        file.state_hash,
        "the hash it was written with"
    );
    assert_ne!(engine.state_hash(), file.state_hash, "today's hash encodes today's views");
    let view = |available: i128, locked: i128, open_positions: u32| AccountView {
        id: AccountId(1),
        available: Usdc(available),
        locked_margin: Usdc(locked),
        order_margin: Usdc::ZERO,
        unrealized_pnl: Usdc::ZERO,
        equity: Usdc(available + locked),
        open_positions,
        margin_mode: MarginMode::Isolated,
        margin_level: None,
        margin_call_level: Ppm(0),
        stop_out_level: Ppm(0),
    };
    let deposit = engine.remembered_reply(RequestId(3));
    assert_eq!(deposit, Some(Ok(ReplyData::Account(view(5_100_000_000, 0, 0)))));
    let withdrawal = engine.remembered_reply(RequestId(5));
    assert_eq!(withdrawal, Some(Ok(ReplyData::Account(view(50_000_000, 5_000_000_000, 1)))));
    let Some(Ok(ReplyData::Opened(p))) = engine.remembered_reply(RequestId(4)) else {
        panic!("the open's reply is remembered");
    };
    assert_eq!(
        (p.id, p.quantity, p.liquidation_price),
        (PositionId(1), Qty(100_000), Price(4_522_614))
    );
}

/// Written by 3645cf6 (HXSNAP05, cross margin, before netting): a second account in cross
/// margin holding 1 BTC short at 20x besides the first's deposit, open and withdrawal.
const HXSNAP05: &[u8] = include_bytes!("fixtures/hxsnap05-window.bin");

#[test]
fn an_hxsnap05_snapshot_restores_with_its_cross_account_and_every_account_hedging() {
    let file = decode_snapshot(HXSNAP05).expect("an HXSNAP05 file decodes");
    assert_eq!((file.seq, file.hash_shape), (8, HashShape::Current));
    let mut engine = Engine::restore(EngineConfig::default(), &file.snapshot).expect("restores");
    assert_eq!(engine.state_hash(), file.state_hash, "the hash it was written with");
    let Some(Ok(ReplyData::Account(v))) = engine.remembered_reply(RequestId(7)) else {
        panic!("the mode change's reply is remembered");
    };
    assert_eq!((v.margin_mode, v.stop_out_level), (MarginMode::Cross, Ppm(1_000_000)));
    let mut out = Vec::new();
    let query = CommandKind::QueryPositionMode { account: AccountId(2) };
    engine.apply(&Command::new(RequestId(100), 1_700_000_000_000_000_100, query), &mut out);
    let reply = out.iter().find_map(|o| match o {
        Output::Reply { result, .. } => Some(*result),
        _ => None,
    });
    let hedging = ReplyData::PositionMode { account: AccountId(2), mode: PositionMode::Hedging };
    assert_eq!(reply, Some(Ok(hedging)));
    let account = engine.apply_collect(&Command::new(
        RequestId(101),
        1_700_000_000_000_000_101,
        CommandKind::QueryAccount { account: AccountId(2) },
    ));
    assert!(
        matches!(
            account[..],
            [Output::Reply {
                result: Ok(ReplyData::Account(AccountView {
                    margin_mode: MarginMode::Cross,
                    open_positions: 1,
                    ..
                })),
                ..
            }]
        ),
        "{account:?}"
    );
}
