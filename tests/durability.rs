//! Journal, snapshots and recovery on real files; and a crash test with a real process killed by
//! SIGKILL at random moments.

use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use engine_core::prelude::*;
use engine_core::processor::SnapshotPolicy;
use hundredx::durability::{DataDir, Start, SyncPolicy, TornTail, recover};
use hundredx::{DurableEngine, DurableOptions};

const TIMEOUT: Duration = Duration::from_secs(10);
const BIN: &str = env!("CARGO_BIN_EXE_hundredx");

fn options(dir: &Path, sync: SyncPolicy, every: u64) -> DurableOptions {
    DurableOptions {
        sync,
        snapshots: SnapshotPolicy { every_commands: Some(every), every_ns: None, aligned: false },
        keep_snapshots: 3,
        segment_bytes: 16 << 10, // small segments: rotation and pruning get exercised
        ..DurableOptions::new(dir)
    }
}

/// A deterministic workload of accounts, ticks (with crashes), opens, closes and deposits.
struct Workload {
    x: u64,
    update_id: u64,
    mid: i64,
    t: u64,
}

impl Workload {
    fn new(seed: u64, update_id: u64) -> Workload {
        Workload { x: seed | 1, update_id, mid: 6_000_000, t: 1_700_000_000_000_000_000 }
    }

    fn next(&mut self, accounts: u32, positions: u64) -> (u64, CommandKind) {
        self.x ^= self.x << 13;
        self.x ^= self.x >> 7;
        self.x ^= self.x << 17;
        let x = self.x;
        self.t += 1_000_000;
        let account = AccountId(u32::try_from(x % u64::from(accounts)).unwrap() + 1);
        let kind = match x % 8 {
            0..=3 => {
                let bps = i64::try_from(x % 400).unwrap() - 200;
                self.mid = (self.mid * (10_000 + bps) / 10_000).max(1_000);
                self.update_id += 1;
                let tick = Tick {
                    market: MarketId(0),
                    bid: Price(self.mid),
                    ask: Price(self.mid + 10),
                    update_id: self.update_id,
                    exchange_time_us: 0,
                };
                CommandKind::PriceTick(tick)
            }
            4 | 5 => CommandKind::OpenPosition(OpenRequest {
                account,
                market: MarketId(0),
                side: if x & 16 == 0 { Side::Long } else { Side::Short },
                leverage: u32::try_from(x % 100).unwrap() + 1,
                size: Size::Margin(Usdc::from_whole(20)),
                expected_price: None,
                max_slippage_bps: 0,
                take_profit: None,
                stop_loss: None,
                client_order_id: None,
            }),
            6 => CommandKind::ClosePosition {
                account,
                position: PositionId(x % positions.max(1) + 1),
                quantity: None,
                key: None,
            },
            _ => CommandKind::Deposit { account, amount: Usdc::from_whole(5), key: None },
        };
        (self.t, kind)
    }
}

fn create_accounts(h: &mut EngineHandle, n: u32) {
    for i in 0..n {
        let login = Login::new(&format!("u{i}@x")).unwrap();
        let r = h
            .call(1, CommandKind::CreateAccount { login, credential: Credential::empty() }, TIMEOUT)
            .unwrap();
        assert!(r.result.is_ok());
    }
}

fn run(h: &mut EngineHandle, w: &mut Workload, n: usize) {
    let tickets: Vec<_> = (0..n)
        .map(|i| {
            let (ts, kind) = w.next(20, i as u64 / 3);
            h.submit(ts, kind).unwrap()
        })
        .collect();
    for t in tickets {
        t.wait_timeout(TIMEOUT).unwrap();
    }
}

fn live_hash(h: &mut EngineHandle) -> [u8; 32] {
    match h.call(0, CommandKind::QueryStateHash, TIMEOUT).unwrap().result {
        Ok(ReplyData::State(s)) => s.hash,
        other => panic!("{other:?}"),
    }
}

/// Requests a snapshot until one after `seq` is on disk: a request the writer is too busy to take
/// is skipped (counted, not queued), as a periodic one would be on a loaded machine.
fn snapshot_after(h: &mut EngineHandle, data: &DataDir, seq: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let r = h.call(0, CommandKind::AdminSnapshot, TIMEOUT).unwrap();
        assert_eq!(r.result, Ok(ReplyData::SnapshotRequested));
        let asked = Instant::now();
        while asked.elapsed() < Duration::from_secs(1) {
            if data.snapshot_files().unwrap().last().is_some_and(|(s, _)| *s > seq) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    panic!("no snapshot after seq {seq} within 60 s");
}

/// Waits until the snapshot writer has finished what it was handed: the list of snapshots
/// (written, then older ones pruned) unchanged over three looks 100 ms apart.
fn snapshots_settled(data: &DataDir) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = (data.snapshot_files().unwrap(), 0);
    while seen.1 < 2 {
        assert!(Instant::now() < deadline, "snapshots still changing after 60 s: {:?}", seen.0);
        std::thread::sleep(Duration::from_millis(100));
        let now = data.snapshot_files().unwrap();
        seen = if now == seen.0 { (now, seen.1 + 1) } else { (now, 0) };
    }
}

#[test]
fn recovery_from_snapshot_plus_journal_equals_the_live_engine() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = DurableEngine::start(
        EngineConfig::default(),
        &options(dir.path(), SyncPolicy::Interval(Duration::from_millis(5)), 700),
    )
    .unwrap();
    create_accounts(&mut d.handle, 20);
    let mut w = Workload::new(7, 0);
    run(&mut d.handle, &mut w, 3_000);
    let data = DataDir::create(dir.path()).unwrap();
    snapshot_after(&mut d.handle, &data, 3_000);
    run(&mut d.handle, &mut w, 1_500);
    let live = live_hash(&mut d.handle);
    snapshots_settled(&data);

    // While it runs: snapshot + journal tail, and the whole journal from scratch, agree with it.
    let (from_snapshot, report) =
        recover(&data, &EngineConfig::default(), Start::LatestSnapshot, TornTail::Report).unwrap();
    assert!(report.snapshot_seq > 3_000, "{report:?}");
    assert!(report.replayed > 0 && report.replayed < 2_000, "{report:?}");
    assert_eq!(from_snapshot.state_hash(), live);
    let segments = data.segments().unwrap();
    assert!(segments.len() >= 2, "segments rotated");
    assert!(data.snapshot_files().unwrap().len() <= 3, "old snapshots pruned");
    // Pruning removed the oldest segments, so a from-scratch replay must refuse (journal gap) —
    // unless nothing was pruned yet.
    if segments[0].0 > 1 {
        assert!(
            matches!(
                recover(&data, &EngineConfig::default(), Start::Scratch, TornTail::Report),
                Err(hundredx::durability::DurabilityError::Gap { have: 0, .. })
            ),
            "a pruned journal is a typed gap, not a guess"
        );
    }
    let (engine, last_seq) = d.shutdown().unwrap();
    assert_eq!(engine.state_hash(), live);
    assert_eq!(
        last_seq, report.last_seq,
        "recovery saw every state change (queries are not journaled)"
    );

    // Restart: the final snapshot means nothing to replay; the engine continues.
    let mut d =
        DurableEngine::start(EngineConfig::default(), &options(dir.path(), SyncPolicy::None, 700))
            .unwrap();
    assert_eq!((d.recovery.replayed, d.recovery.last_seq), (0, last_seq));
    assert_eq!(live_hash(&mut d.handle), live);
    run(&mut d.handle, &mut w, 100);
    d.shutdown().unwrap().0.check_conservation().unwrap();
}

#[test]
fn a_torn_last_record_is_cut_off_and_the_engine_serves_on() {
    let dir = tempfile::tempdir().unwrap();
    let opts = DurableOptions {
        segment_bytes: 64 << 20,
        pruning: hundredx::durability::JournalPruning::Keep,
        ..options(dir.path(), SyncPolicy::Fsync, 1_000_000)
    };
    let mut d = DurableEngine::start(EngineConfig::default(), &opts).unwrap();
    create_accounts(&mut d.handle, 20);
    run(&mut d.handle, &mut Workload::new(3, 0), 400);
    let (_, last_seq) = d.shutdown().unwrap();
    let data = DataDir::create(dir.path()).unwrap();
    for (_, snap) in data.snapshot_files().unwrap() {
        fs::remove_file(snap).unwrap(); // force a full replay
    }
    let (_, segment) = data.segments().unwrap().pop().unwrap();
    let len = fs::metadata(&segment).unwrap().len();
    OpenOptions::new().write(true).open(&segment).unwrap().set_len(len - 5).unwrap();

    let (_, report) =
        recover(&data, &EngineConfig::default(), Start::LatestSnapshot, TornTail::Report).unwrap();
    assert_eq!(report.last_seq, last_seq - 1, "stops at the last whole record");
    assert!(report.torn_tail.is_some());
    assert_eq!(
        fs::metadata(&segment).unwrap().len(),
        len - 5,
        "read-only recovery leaves the file"
    );

    let mut d = DurableEngine::start(EngineConfig::default(), &opts).unwrap();
    assert_eq!(d.recovery.last_seq, last_seq - 1);
    assert!(fs::metadata(&segment).unwrap().len() < len - 5, "cut at the record boundary");
    run(&mut d.handle, &mut Workload::new(4, 10_000), 100);
    let (engine, _) = d.shutdown().unwrap();
    engine.check_conservation().unwrap();
    let (again, _) =
        recover(&data, &EngineConfig::default(), Start::Scratch, TornTail::Report).unwrap();
    assert_eq!(again.state_hash(), engine.state_hash());
}

#[test]
fn a_corrupt_snapshot_falls_back_to_an_older_one_with_the_same_final_hash() {
    let dir = tempfile::tempdir().unwrap();
    let opts =
        DurableOptions { segment_bytes: 64 << 20, ..options(dir.path(), SyncPolicy::None, 500) };
    let mut d = DurableEngine::start(EngineConfig::default(), &opts).unwrap();
    create_accounts(&mut d.handle, 20);
    let mut w = Workload::new(11, 0);
    let data = DataDir::create(dir.path()).unwrap();
    for _ in 0..4 {
        run(&mut d.handle, &mut w, 600);
        snapshots_settled(&data); // one snapshot at a time: none skipped for a busy writer
    }
    let live = live_hash(&mut d.handle);
    drop(d); // no clean shutdown: no final snapshot
    let snaps = data.snapshot_files().unwrap();
    assert!(snaps.len() >= 2, "{snaps:?}");
    let (newest_seq, newest) = snaps.last().unwrap().clone();
    let mut bytes = fs::read(&newest).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    fs::write(&newest, bytes).unwrap();

    let (engine, report) =
        recover(&data, &EngineConfig::default(), Start::LatestSnapshot, TornTail::Report).unwrap();
    assert_eq!(report.snapshots_rejected, 1);
    assert!(report.snapshot_seq < newest_seq);
    assert!(report.replayed >= newest_seq - report.snapshot_seq, "longer replay");
    assert_eq!(engine.state_hash(), live);
}

#[test]
fn sync_policy_parses() {
    assert_eq!("fsync".parse(), Ok(SyncPolicy::Fsync));
    assert_eq!("none".parse(), Ok(SyncPolicy::None));
    assert_eq!("interval:5".parse(), Ok(SyncPolicy::Interval(Duration::from_millis(5))));
    for bad in ["interval:0", "interval:x", "always", ""] {
        assert!(bad.parse::<SyncPolicy>().is_err(), "{bad}");
    }
}

#[test]
fn a_second_process_cannot_use_the_same_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let d =
        DurableEngine::start(EngineConfig::default(), &options(dir.path(), SyncPolicy::None, 1000))
            .unwrap();
    let err =
        DurableEngine::start(EngineConfig::default(), &options(dir.path(), SyncPolicy::None, 1000))
            .unwrap_err();
    assert!(err.to_string().contains("in use"), "{err:#}");
    d.shutdown().unwrap();
}

/// kill -9 at random moments: every request that got a success reply is in the recovered state;
/// money conserves; snapshot + journal recovery equals a from-scratch replay of the journal. The
/// odd rounds write the journal on the engine thread (`--journal-on-engine-thread`).
#[test]
fn crash_test_kill_9_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut acked_total = 0;
    for round in 0..4u64 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let kill_after = 50 + seed % 400; // a random moment, measured in acknowledgements
        let mut child = Process::new(BIN);
        child
            .args(["drill", "--sync", "fsync", "--snapshot-every", "300", "--segment-mib", "1"])
            .arg("--keep-journal"); // nothing pruned: a from-scratch replay stays possible
        if round % 2 == 1 {
            child.arg("--journal-on-engine-thread"); // the same guarantee, one thread fewer
        }
        let mut child = child
            .arg("--seed")
            .arg((round + 1).to_string())
            .arg("--data-dir")
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut acked = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(rid) = line.strip_prefix("ACK ") {
                acked.push(RequestId(rid.parse().unwrap()));
            }
            if acked.len() as u64 >= kill_after || Instant::now() > deadline {
                break;
            }
        }
        child.kill().unwrap(); // SIGKILL: no flush, no shutdown
        child.wait().unwrap();
        assert_eq!(acked.len() as u64, kill_after, "round {round}: the drill stopped early");
        acked_total += acked.len();

        let data = DataDir::create(dir.path()).unwrap();
        let (engine, report) =
            recover(&data, &EngineConfig::default(), Start::LatestSnapshot, TornTail::Report)
                .unwrap();
        for rid in &acked {
            assert!(
                matches!(engine.remembered_reply(*rid), Some(Ok(_))),
                "round {round}: acknowledged request {} lost (recovered to seq {})",
                rid.0,
                report.last_seq
            );
        }
        engine.check_conservation().unwrap();
        let (scratch, scratch_report) =
            recover(&data, &EngineConfig::default(), Start::Scratch, TornTail::Report).unwrap();
        assert_eq!(scratch_report.last_seq, report.last_seq);
        assert_eq!(scratch.state_hash(), engine.state_hash(), "round {round}");
    }
    assert!(acked_total >= 200);
}

/// Only state changes are journaled: queries neither take a sequence number nor a record, and
/// replaying the journal alone (no snapshot) rebuilds the live state.
#[test]
fn the_journal_holds_state_changes_only() {
    let dir = tempfile::tempdir().unwrap();
    let opts =
        DurableOptions { keep_snapshots: 1, ..options(dir.path(), SyncPolicy::Fsync, 1_000_000) };
    let mut d = DurableEngine::start(EngineConfig::default(), &opts).unwrap();
    create_accounts(&mut d.handle, 3);
    for _ in 0..40 {
        live_hash(&mut d.handle);
        let r = d.handle.call(1, CommandKind::QueryMarkets, TIMEOUT).unwrap();
        assert!(r.result.is_ok());
    }
    let account = AccountId(1);
    let r = d
        .handle
        .call(2, CommandKind::Deposit { account, amount: Usdc::from_whole(5), key: None }, TIMEOUT)
        .unwrap();
    assert!(r.result.is_ok());
    let live = live_hash(&mut d.handle);
    drop(d);
    let data = DataDir::create(dir.path()).unwrap();
    let (engine, report) =
        recover(&data, &EngineConfig::default(), Start::Scratch, TornTail::Report).unwrap();
    assert_eq!(report.replayed, 4, "3 accounts + 1 deposit; 80 queries left no record");
    assert_eq!(report.last_seq, 4);
    assert_eq!(engine.state_hash(), live);
}

/// A lagging reader (the history store) holds pruning back: with its cursor far behind, the
/// snapshot at or before it and the journal after it survive many snapshots, and recovery
/// from there replays every change after the cursor, numbered as they were live.
#[test]
fn a_changes_reader_keeps_the_journal_it_needs_and_gets_every_change_after_its_cursor() {
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;
    let dir = tempfile::tempdir().unwrap();
    let (tx, rx) = crossbeam_channel::unbounded();
    let reader_at = Arc::new(AtomicU64::new(0));
    let tap =
        hundredx::ChangesTap { after_seq: 0, after_n: -1, tx, retain_seq: Arc::clone(&reader_at) };
    let opts = DurableOptions { changes: Some(tap), ..options(dir.path(), SyncPolicy::None, 200) };
    let mut d = DurableEngine::start(EngineConfig::default(), &opts).unwrap();
    drop(opts);
    create_accounts(&mut d.handle, 20);
    let mut w = Workload::new(3, 0);
    run(&mut d.handle, &mut w, 600);
    // The reader has committed up to seq 250; then 3000 more commands, many snapshots.
    reader_at.store(250, std::sync::atomic::Ordering::Release);
    run(&mut d.handle, &mut w, 3_000);
    let (_, last_seq) = d.shutdown().unwrap();
    let live: Vec<ChangeRecord> = rx
        .try_iter()
        .filter_map(|o| if let Output::Change(c) = o { Some(c) } else { None })
        .collect();
    assert_eq!(live.first().map(|c| (c.seq, c.n)), Some((1, 0)), "every change from the start");
    let data = DataDir::create(dir.path()).unwrap();
    let snaps: Vec<u64> = data.snapshot_files().unwrap().iter().map(|s| s.0).collect();
    assert!(snaps.iter().any(|&s| s <= 250), "the snapshot the reader needs is kept: {snaps:?}");
    assert!(snaps.len() > 3, "and the newer ones: {snaps:?}");
    // Recovery for a reader at (250, -1) replays exactly the live changes after it.
    let mut replayed = Vec::new();
    let (_, report) = hundredx::durability::recover_into(
        &data,
        &EngineConfig::default(),
        hundredx::durability::Start::AtOrBefore(250),
        TornTail::Report,
        &mut replayed,
    )
    .unwrap();
    assert_eq!(report.last_seq, last_seq);
    let after: Vec<ChangeRecord> = replayed
        .iter()
        .filter_map(|o| if let Output::Change(c) = o { Some(*c) } else { None })
        .filter(|c| c.seq > 250)
        .collect();
    let live_after: Vec<ChangeRecord> = live.into_iter().filter(|c| c.seq > 250).collect();
    assert!(live_after.len() > 100);
    assert_eq!(after, live_after);
}

#[test]
fn segments_are_preallocated_without_changing_what_recovery_reads() {
    use engine_core::processor::InputStage;
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::create(dir.path()).unwrap();
    let reserve = 8u64 << 20;
    let mut j = hundredx::durability::Journal::open(&data, 1, SyncPolicy::None, reserve).unwrap();
    for i in 0..100u64 {
        let tick = Tick {
            market: MarketId(0),
            bid: Price(6_000_000 + i64::try_from(i).unwrap()),
            ask: Price(6_000_050 + i64::try_from(i).unwrap()),
            update_id: i + 1,
            exchange_time_us: 0,
        };
        j.on_command(i + 1, &Command::new(RequestId::NONE, 1, CommandKind::PriceTick(tick)), true);
    }
    let (_, segment) = data.segments().unwrap().pop().unwrap();
    let open = fs::metadata(&segment).unwrap();
    assert!(
        open.len() > 0 && open.len() < 10_000,
        "the length is what was written: {}",
        open.len()
    );
    assert!(
        open.blocks() * 512 >= reserve,
        "fallocate(KEEP_SIZE) reserved the segment ({} bytes allocated; does this filesystem support fallocate?)",
        open.blocks() * 512
    );
    drop(j);
    let closed = fs::metadata(&segment).unwrap();
    assert_eq!(closed.len(), open.len(), "closing keeps the length");
    assert!(closed.blocks() * 512 < reserve, "closing gives the reserved blocks back");
    let (engine, report) =
        recover(&data, &EngineConfig::default(), Start::Scratch, TornTail::Report).unwrap();
    assert_eq!(report.last_seq, 100, "{report:?}");
    assert!(report.torn_tail.is_none(), "no zeros read as a torn record");
    assert_eq!(engine.counters().ticks_applied, 100);
}
