#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]
//! The processor path (submitter -> in-ring -> engine thread -> out-ring -> reply thread) gives the
//! same outputs and state hash as calling `Engine::apply` directly on the same input.

use std::time::Duration;

use engine_core::prelude::*;

const T0: u64 = 1_700_000_000_000_000_000;
const TIMEOUT: Duration = Duration::from_secs(10);

/// A deterministic mixed workload: accounts, ticks with occasional crashes, opens, closes.
fn workload(n: usize) -> Vec<(bool, u64, CommandKind)> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut cmds = Vec::new();
    for i in 0..20u32 {
        let login = Login::new(&format!("user{i}@example.com")).unwrap();
        let kind = CommandKind::CreateAccount { login, credential: Credential::new("h").unwrap() };
        cmds.push((true, T0, kind));
    }
    let mut mid = 6_000_000i64;
    let mut update_id = 0;
    for i in 0..n {
        let ts = T0 + i as u64 * 1_000_000;
        let r = next();
        match r % 10 {
            0..=4 => {
                let bps = (r >> 8) as i64 % 200 - 100;
                let bps = if (r >> 20) % 50 == 0 { bps * 20 } else { bps };
                mid = (mid * (10_000 + bps) / 10_000).max(100);
                update_id += 1;
                let tick = Tick {
                    market: MarketId(0),
                    bid: Price(mid),
                    ask: Price(mid + 50),
                    update_id,
                    exchange_time_us: 0,
                };
                // Feed ticks carry no request id, like a price feed's.
                cmds.push((false, ts, CommandKind::PriceTick(tick)));
            }
            5..=7 => {
                let req = OpenRequest {
                    account: AccountId((r >> 8) as u32 % 20 + 1),
                    market: MarketId(0),
                    side: if r & 1 == 0 { Side::Long } else { Side::Short },
                    leverage: (r >> 16) as u32 % 100 + 1,
                    size: Size::Margin(Usdc::from_whole((r >> 24) as i64 % 200 + 1)),
                    expected_price: None,
                    max_slippage_bps: 0,
                    take_profit: None,
                    stop_loss: None,
                    client_order_id: None,
                };
                cmds.push((true, ts, CommandKind::OpenPosition(req)));
            }
            8 => {
                let kind = CommandKind::ClosePosition {
                    account: AccountId((r >> 8) as u32 % 20 + 1),
                    position: PositionId((r >> 16) % (i as u64 / 3 + 1) + 1),
                    quantity: None,
                    key: None,
                };
                cmds.push((true, ts, kind));
            }
            _ => {
                let account = AccountId((r >> 8) as u32 % 20 + 1);
                cmds.push((
                    true,
                    ts,
                    CommandKind::QueryPositions { account, status: PositionStatus::Open },
                ));
            }
        }
    }
    cmds
}

#[test]
fn ring_path_matches_direct_apply() {
    let cmds = workload(20_000);

    // Direct: request ids assigned 1, 2, ... in submission order, as the handle does.
    let mut engine = Engine::new(EngineConfig::default()).unwrap();
    let mut direct = Vec::new();
    let mut rid = 0;
    for &(reply, ts, kind) in &cmds {
        let request_id = if reply {
            rid += 1;
            RequestId(rid)
        } else {
            RequestId::NONE
        };
        engine.apply(&Command::new(request_id, ts, kind), &mut direct);
    }
    assert!(engine.counters().liquidations > 0, "the workload should liquidate something");

    // Through the rings, with a small in-ring so producers wrap and wait.
    let runtime =
        RuntimeConfig { in_ring_size: 256, out_ring_size: 256, ..RuntimeConfig::default() };
    let options = engine_core::processor::StartOptions { runtime, ..Default::default() };
    let mut handle =
        EngineHandle::start_with(Engine::new(EngineConfig::default()).unwrap(), options).unwrap();
    let all = handle.subscribe(Subscription::All, direct.len() + 16);
    let mut tickets = Vec::new();
    for &(reply, ts, kind) in &cmds {
        if reply {
            tickets.push(handle.submit(ts, kind).unwrap());
        } else {
            handle.send(ts, kind);
        }
    }
    let mut items = 0;
    for t in tickets {
        let r = t.wait_timeout(TIMEOUT).expect("reply");
        items += r.items.len();
    }
    let counters = handle.counters();
    assert_eq!(handle.events_dropped(), 0);
    let final_state = handle.shutdown().unwrap();
    let through: Vec<Output> = all.try_iter().collect();

    assert_eq!(through.len(), direct.len());
    assert!(through == direct, "ring outputs differ from direct apply");
    assert_eq!(final_state.state_hash(), engine.state_hash());
    assert_eq!(final_state.counters(), engine.counters());
    assert_eq!(counters, engine.counters(), "counters published at end of batch");
    let direct_items = direct.iter().filter(|o| matches!(o, Output::Item { .. })).count();
    assert_eq!(items, direct_items, "tickets carry their list items");
}

#[test]
fn replies_route_to_the_right_caller_from_many_threads() {
    let mut handle = EngineHandle::start(EngineConfig::default()).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let mut s = handle.submitter();
            std::thread::spawn(move || {
                let mut ids = Vec::new();
                for i in 0..200 {
                    let login = Login::new(&format!("t{t}-{i}@x")).unwrap();
                    let kind = CommandKind::CreateAccount { login, credential: Credential::empty() };
                    let r = s.call(T0, kind, TIMEOUT).unwrap();
                    let Ok(ReplyData::AccountCreated { account }) = r.result else { panic!("{r:?}") };
                    // Read back through the engine: the login maps to the id we were given.
                    let r = s.call(T0, CommandKind::QueryCredential { login }, TIMEOUT).unwrap();
                    assert!(matches!(r.result, Ok(ReplyData::Credential { account: a, .. }) if a == account));
                    ids.push(account.0);
                }
                ids
            })
        })
        .collect();
    let mut all: Vec<u32> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    all.sort_unstable();
    assert_eq!(all, (1..=800).collect::<Vec<_>>());
    let s = handle.call(T0, CommandKind::QueryStateHash, TIMEOUT).unwrap();
    assert!(matches!(s.result, Ok(ReplyData::State(st)) if st.accounts == 800));
    assert_eq!(handle.shutdown().unwrap().summary().accounts, 800);
}

#[test]
fn try_variants_publish_when_there_is_room() {
    let mut handle = EngineHandle::start(EngineConfig::default()).unwrap();
    let t = handle.try_submit(T0, CommandKind::QueryMarkets).unwrap();
    assert_eq!(t.wait_timeout(TIMEOUT).unwrap().items.len(), 3);
    handle.try_send(T0, CommandKind::Noop).unwrap();
    handle.shutdown().unwrap();
}

#[test]
fn unsolicited_events_reach_subscribers() {
    let mut handle = EngineHandle::start(EngineConfig::default()).unwrap();
    let events = handle.subscribe(Subscription::Events, 64);
    let tick = Tick {
        market: MarketId(0),
        bid: Price(0),
        ask: Price(1),
        update_id: 1,
        exchange_time_us: 0,
    };
    handle.send(T0, CommandKind::PriceTick(tick));
    let got = events.recv_timeout(TIMEOUT).unwrap();
    assert!(matches!(
        got,
        Output::Event(Event::PriceRejected { reason: Reason::InvalidPrice, .. })
    ));
    handle.shutdown().unwrap();
}

#[test]
fn pinning_to_a_missing_core_is_a_config_error_not_a_panic() {
    let runtime = RuntimeConfig { pin_core: Some(10_000), ..RuntimeConfig::default() };
    let options = engine_core::processor::StartOptions { runtime, ..Default::default() };
    assert!(matches!(
        EngineHandle::start_with(Engine::new(EngineConfig::default()).unwrap(), options),
        Err(engine_core::config::ConfigError::NoSuchCore(10_000))
    ));
}

/// A stage that makes each batch "durable" slowly and records how far it got.
struct SlowJournal {
    durable_upto: std::sync::Arc<std::sync::atomic::AtomicU64>,
    pending: u64,
}

impl engine_core::processor::InputStage for SlowJournal {
    fn on_command(&mut self, seq: u64, _cmd: &Command, end_of_batch: bool) {
        self.pending = seq;
        if end_of_batch {
            std::thread::sleep(Duration::from_millis(2));
            self.durable_upto.store(self.pending, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn end_batch(&mut self) {
        std::thread::sleep(Duration::from_millis(2));
        self.durable_upto.store(self.pending, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn no_reply_leaves_before_the_input_stage_finished_its_batch_and_snapshots_carry_their_seq() {
    replies_wait_for_the_stage_and_snapshots_carry_their_seq(false);
}

#[test]
fn the_same_with_the_input_stage_on_the_engine_thread() {
    replies_wait_for_the_stage_and_snapshots_carry_their_seq(true);
}

fn replies_wait_for_the_stage_and_snapshots_carry_their_seq(inline: bool) {
    use engine_core::processor::{SnapshotPolicy, StartOptions};
    use std::sync::atomic::Ordering;
    let durable = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (snap_tx, snap_rx) = crossbeam_channel::bounded(4);
    // An engine whose state already holds 100 journaled commands: the journal continues at 101.
    let mut engine = Engine::new(EngineConfig::default()).unwrap();
    for i in 0..100u64 {
        let login = Login::new(&format!("before{i}@x")).unwrap();
        let cmd = Command {
            request_id: RequestId(1_000_000 + i),
            ts_ns: T0,
            kind: CommandKind::CreateAccount { login, credential: Credential::empty() },
        };
        engine.apply_collect(&cmd);
    }
    assert_eq!(engine.seq(), 100);
    let options = StartOptions {
        input_stage: Some(Box::new(SlowJournal { durable_upto: durable.clone(), pending: 0 })),
        snapshots: Some((
            SnapshotPolicy { every_commands: Some(50), every_ns: None, aligned: false },
            snap_tx,
        )),
        runtime: RuntimeConfig { inline_input_stage: inline, ..RuntimeConfig::default() },
        subscribers: Vec::new(),
    };
    let mut handle = EngineHandle::start_with(engine, options).unwrap();
    for i in 0..120u64 {
        let login = Login::new(&format!("u{i}@x")).unwrap();
        let r = handle
            .call(
                T0,
                CommandKind::CreateAccount { login, credential: Credential::empty() },
                TIMEOUT,
            )
            .unwrap();
        assert!(r.result.is_ok());
        // Command i has journal seq 101 + i; its reply implies it was made durable.
        assert!(
            durable.load(Ordering::SeqCst) >= 101 + i,
            "reply {i} before its batch was durable"
        );
        // A query between them takes no journal sequence and counts toward no snapshot.
        let q = handle.call(T0, CommandKind::QueryMarkets, TIMEOUT).unwrap();
        assert!(q.result.is_ok());
    }
    let r = handle.call(T0, CommandKind::AdminSnapshot, TIMEOUT).unwrap();
    assert_eq!(r.result, Ok(ReplyData::SnapshotRequested));
    let (engine, last_seq) = handle.shutdown_at().unwrap();
    // The last state change was account 120 at seq 101 + 119; queries and the snapshot
    // request itself (read-only) took none.
    assert_eq!(last_seq, 101 + 119);
    let seqs: Vec<(u64, u32)> =
        snap_rx.try_iter().map(|s| (s.seq, s.engine.summary().accounts)).collect();
    // Every 50 state changes of this run (seq 150, 200) and on demand (at seq 220); the 100
    // accounts from before the start are in each.
    assert_eq!(seqs, vec![(150, 150), (200, 200), (220, 220)]);
    assert_eq!((engine.summary().accounts, engine.seq()), (220, 220));
}

/// A stage that records every sequence it is shown and how far it has made "durable".
struct RecordingJournal {
    seen: std::sync::Arc<std::sync::Mutex<Vec<u64>>>,
    durable_upto: std::sync::Arc<std::sync::atomic::AtomicU64>,
    pending: u64,
}

impl engine_core::processor::InputStage for RecordingJournal {
    fn on_command(&mut self, seq: u64, _cmd: &Command, end_of_batch: bool) {
        self.seen.lock().unwrap().push(seq);
        self.pending = seq;
        if end_of_batch {
            self.end_batch();
        }
    }

    fn end_batch(&mut self) {
        self.durable_upto.store(self.pending, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Batches far larger than what the inline stage holds at once (it ends its batch early): the
/// stage sees every state-changing command once, in order, with dense sequences; no reply
/// leaves before its command is durable; queries in between take no sequence.
#[test]
fn large_batches_through_the_inline_stage_are_durable_before_any_reply() {
    use engine_core::processor::StartOptions;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    let seen = Arc::new(Mutex::new(Vec::new()));
    let durable = Arc::new(AtomicU64::new(0));
    let stage = RecordingJournal {
        seen: Arc::clone(&seen),
        durable_upto: Arc::clone(&durable),
        pending: 0,
    };
    let options = StartOptions {
        input_stage: Some(Box::new(stage)),
        runtime: RuntimeConfig { inline_input_stage: true, ..RuntimeConfig::default() },
        ..StartOptions::default()
    };
    let mut handle =
        EngineHandle::start_with(Engine::new(EngineConfig::default()).unwrap(), options).unwrap();
    let login = Login::new("big@x").unwrap();
    let created = handle
        .call(T0, CommandKind::CreateAccount { login, credential: Credential::empty() }, TIMEOUT)
        .unwrap();
    let Ok(ReplyData::AccountCreated { account }) = created.result else { panic!("{created:?}") };
    let early = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = crossbeam_channel::unbounded();
    let mut s = handle.submitter();
    let n = 5_000u64;
    for k in 0..n {
        // Seq 1 was the account; deposit k is seq 2 + k.
        let (durable, early, done) = (Arc::clone(&durable), Arc::clone(&early), done_tx.clone());
        let on_reply = Box::new(move |r: Response| {
            if durable.load(Ordering::SeqCst) < 2 + k {
                early.store(true, Ordering::SeqCst);
            }
            done.send(r.result.is_ok()).unwrap();
        });
        let kind = CommandKind::Deposit { account, amount: Usdc::from_whole(1), key: None };
        s.submit_with_id(RequestId((1 << 50) + k), T0, kind, on_reply).unwrap();
        if k % 1_000 == 0 {
            s.send(T0, CommandKind::QueryMarkets);
        }
    }
    let ok = (0..n).filter(|_| done_rx.recv_timeout(TIMEOUT).unwrap()).count();
    assert_eq!(ok as u64, n, "every deposit applied");
    assert!(!early.load(Ordering::SeqCst), "a reply left before its command was durable");
    drop(s); // the last submitter: the engine stops when every one is gone
    let (engine, last_seq) = handle.shutdown_at().unwrap();
    assert_eq!(last_seq, 1 + n);
    assert_eq!(*seen.lock().unwrap(), (1..=1 + n).collect::<Vec<u64>>());
    assert_eq!(engine.seq(), 1 + n);
}

#[test]
fn caller_chosen_request_ids_are_deduplicated_by_the_engine() {
    let handle = EngineHandle::start(EngineConfig::default()).unwrap();
    let mut s = handle.submitter();
    let ask = |s: &mut Submitter, id: u64| {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let login = Login::new("same@x").unwrap();
        let kind = CommandKind::CreateAccount { login, credential: Credential::empty() };
        s.submit_with_id(RequestId(id), T0, kind, Box::new(move |r| tx.send(r).unwrap()))
            .map(|()| rx)
    };
    let first = ask(&mut s, 1 << 50).unwrap().recv_timeout(TIMEOUT).unwrap();
    // A redelivery of the same request: the first reply again, not a duplicate-login rejection.
    let again = ask(&mut s, 1 << 50).unwrap().recv_timeout(TIMEOUT).unwrap();
    assert_eq!(first.result, again.result);
    assert!(matches!(first.result, Ok(ReplyData::AccountCreated { .. })));
    // A different id is a different request: now the login is taken.
    let other = ask(&mut s, (1 << 50) + 1).unwrap().recv_timeout(TIMEOUT).unwrap();
    assert_eq!(other.result, Err(Reason::DuplicateLogin));
    assert!(matches!(ask(&mut s, 0), Err(EngineError::DuplicateInFlight)));
    drop(s);
    assert_eq!(handle.counters().duplicates, 1);
    handle.shutdown().unwrap();
}
