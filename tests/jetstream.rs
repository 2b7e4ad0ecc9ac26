//! The replicated journal on NATS JetStream (docs/REPLICATION.md, "JetStream"): a three-node
//! cluster started by the test on free ports (`apt-get install nats-server`).
//!
//! 1. The log itself, two engines' views in one process: appends fenced by the expected last
//!    sequence, the seal that deposes an older leader, a retry deduplicated, forged messages
//!    skipped and removed, the lease by revision, hashes, trimming.
//! 2. Quorum: with one node of three down appends go on; with two down nothing is
//!    acknowledged; when one comes back everything acknowledged is there.
//! 3. Real processes: Redis for requests and replies, two `hundredx engine --standby --journal
//!    nats://…`, a deposit load; kill -9 of the leader, SIGSTOP of the next past its lease (it
//!    is fenced by the log when it wakes), kill -9 of a NATS node; then every acknowledged
//!    request is in the journal exactly once and the state equals its replay.

use std::sync::Arc;
use std::time::Duration;

mod common;

use common::BIN;
use common::ha::*;
use common::nats::{NatsCluster, log, read_records};
use engine_core::prelude::*;
use hundredx::replication::journal::{AppendError, HashCheck, Kept, ReplicatedLog};
use hundredx::replication::nats::NatsLog;
use redis_bridge::test_support::RedisServer;

/// One cluster at a time: each is three servers (and engines) on a two-core machine.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `n` journal records (deposits) from `first` on, encoded as the stage encodes them.
fn records(first: u64, n: u64) -> Vec<(u64, Vec<u8>)> {
    (first..first + n)
        .map(|seq| {
            let mut buf = [0u8; engine_core::persist::MAX_RECORD_BYTES];
            let cmd = Command {
                ts_ns: 1_000 + seq,
                request_id: RequestId(seq),
                kind: CommandKind::Deposit {
                    account: AccountId(1),
                    amount: Usdc::from_whole(1),
                    key: None,
                },
            };
            let len = engine_core::persist::encode_record(seq, &cmd, &mut buf);
            (seq, buf[..len].to_vec())
        })
        .collect()
}

fn append(l: &mut NatsLog, token: &str, recs: &[(u64, Vec<u8>)]) -> Result<(), AppendError> {
    let refs: Vec<(u64, &[u8])> = recs.iter().map(|(s, b)| (*s, b.as_slice())).collect();
    l.append(token, &refs, 0, Duration::from_secs(1))
}

#[test]
fn the_log_is_fenced_by_its_sequence_and_a_takeover_seals_it() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let cluster = NatsCluster::start(dir.path());
    let url = cluster.url();
    let lease = Duration::from_millis(300);
    let (mut a, mut b) = (log(&url), log(&url));
    let (ta, tb) = ("engine-a:01", "engine-b:02");

    // a leads: takes the vacant lease, seals the empty log, appends.
    assert!(a.try_lead(ta, lease).unwrap(), "the vacant lease is taken");
    assert!(a.seal(ta, 0).unwrap());
    append(&mut a, ta, &records(1, 3)).unwrap();
    append(&mut a, ta, &records(4, 2)).unwrap();
    // A retry of a batch already acknowledged is not written twice.
    append(&mut a, ta, &records(4, 2)).unwrap();
    assert_eq!(b.bounds().unwrap(), Some((1, 5)));
    let seen: Vec<u64> = read_records(&mut b).iter().map(|e| e.0).collect();
    assert_eq!(seen, vec![1, 2, 3, 4, 5], "each record once, in order");
    // Reads continue mid-batch and read back newest first.
    let mid: Vec<u64> =
        b.read_after(2, 10, Duration::ZERO).unwrap().entries.iter().map(|e| e.0).collect();
    assert_eq!(mid, vec![3, 4, 5]);
    let back: Vec<u64> = b.read_back(4, 3).unwrap().entries.iter().map(|e| e.0).collect();
    assert_eq!(back, vec![4, 3, 2]);
    // A standby follows through a consumer the server feeds: what is there, then nothing
    // within the wait, then the next batch as soon as it is committed.
    let mut standby = log(&url);
    let seqs = |r: hundredx::replication::journal::Read| -> Vec<u64> {
        r.entries.iter().map(|e| e.0).collect()
    };
    let wait = Duration::from_secs(5);
    assert_eq!(seqs(standby.read_after(0, 100, wait).unwrap()), vec![1, 2, 3, 4, 5]);
    assert!(standby.read_after(5, 100, Duration::from_millis(200)).unwrap().entries.is_empty());
    // A gap is refused: the log ends at 5.
    assert!(matches!(append(&mut a, ta, &records(7, 1)), Err(AppendError::Gap(_))));

    append(&mut a, ta, &records(6, 1)).unwrap();
    assert_eq!(seqs(standby.read_after(5, 100, wait).unwrap()), vec![6]);

    // b watches a lease that a keeps renewing: never taken.
    assert!(!b.try_lead(tb, lease).unwrap());
    assert_eq!(a.keep(ta, lease).unwrap(), Kept::Renewed);
    std::thread::sleep(lease);
    assert!(!b.try_lead(tb, lease).unwrap(), "renewed within the lease: still a's");
    // a stops renewing (stopped, partitioned…): after a whole lease b takes it.
    assert!(wait_for(Duration::from_secs(10), || b.try_lead(tb, lease).unwrap()), "b leads");
    assert_eq!(b.holder(lease).unwrap().as_deref(), Some(tb));
    // Before b seals, the old leader still appends (its clients get acknowledgements)…
    append(&mut a, ta, &records(7, 1)).unwrap();
    // …so b's seal at 6 fails: it must read on, then seal at the real end.
    assert!(!b.seal(tb, 6).unwrap(), "the log grew: read on");
    assert_eq!(b.read_after(6, 10, Duration::ZERO).unwrap().entries[0].0, 7);
    assert!(b.seal(tb, 7).unwrap());
    // Now the old leader is fenced by the log itself, and told so by the lease.
    let fenced = append(&mut a, ta, &records(8, 1));
    assert!(matches!(fenced, Err(AppendError::Fenced(_))), "{fenced:?}");
    assert_eq!(a.keep(ta, lease).unwrap(), Kept::Lost(tb.to_owned()));
    append(&mut b, tb, &records(8, 2)).unwrap();

    // A message not signed by the bridge key: skipped by readers, removed by the leader.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let first_node = format!("nats://127.0.0.1:{}", cluster.nodes[0].port);
    rt.block_on(async {
        let c = async_nats::connect(first_node).await.unwrap();
        let js = async_nats::jetstream::new(c);
        js.publish(hundredx::replication::nats::SUBJECT, "forged".into())
            .await
            .unwrap()
            .await
            .unwrap();
    });
    let mut reader = log(&url);
    let read = reader.read_after(9, 10, Duration::ZERO).unwrap();
    assert!(read.entries.is_empty() && read.forged.len() == 1, "{read:?}");
    append(&mut b, tb, &records(10, 1)).unwrap();
    let all: Vec<u64> = read_records(&mut reader).iter().map(|e| e.0).collect();
    assert_eq!(all, (1..=10).collect::<Vec<_>>(), "the journal: every record once");

    // State hashes at snapshots: the same, or a difference reported.
    assert_eq!(a.compare_hash(100, "aa").unwrap(), HashCheck::Same);
    assert_eq!(b.compare_hash(100, "aa").unwrap(), HashCheck::Same);
    assert_eq!(b.compare_hash(100, "bb").unwrap(), HashCheck::Differs("aa".into()));

    // Trimming keeps what the engine with the oldest snapshot needs, once two registered.
    b.register("engine-b", 4).unwrap();
    assert_eq!(b.trim().unwrap(), None, "one engine registered: keep everything");
    a.register("engine-a", 6).unwrap();
    assert_eq!(b.trim().unwrap(), Some(4));
    let (first, last) = reader.bounds().unwrap().unwrap();
    assert!(first <= 5 && first > 1 && last == 10, "trimmed below 5: {first}..{last}");
    let after: Vec<u64> =
        reader.read_after(4, 10, Duration::ZERO).unwrap().entries.iter().map(|e| e.0).collect();
    assert_eq!(after, (5..=10).collect::<Vec<_>>());
    b.seen("engine-b").unwrap();
    assert!(b.last_seen().unwrap().iter().any(|(n, age)| n == "engine-b" && *age < 60_000));
    b.release(tb).unwrap();
    assert_eq!(a.holder(lease).unwrap(), None, "released");
}

#[test]
fn a_batch_is_acknowledged_only_by_a_majority_and_none_is_lost() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = NatsCluster::start(dir.path());
    let url = cluster.url();
    let mut a = log(&url);
    let t = "engine-a:01";
    assert!(a.try_lead(t, Duration::from_secs(1)).unwrap());
    assert!(a.seal(t, 0).unwrap());
    append(&mut a, t, &records(1, 10)).unwrap();

    // One node of three down, whichever it is (the stream's leader among them): appends go
    // on once the other two elect a leader.
    cluster.nodes[0].kill();
    let mut next = 11;
    let appended = wait_for(Duration::from_secs(30), || {
        let ok = append(&mut a, t, &records(next, 1)).is_ok();
        next += u64::from(ok);
        ok
    });
    assert!(appended, "appends go on with two nodes of three: {}", cluster.logs());
    append(&mut a, t, &records(next, 5)).unwrap();
    next += 5;

    // Two down: no majority, nothing acknowledged.
    cluster.nodes[1].kill();
    let refused = append(&mut a, t, &records(next, 1));
    assert!(refused.is_err(), "acknowledged without a majority: {refused:?}");

    // One back: a majority again; the batch goes in (once), and every acknowledged one is there.
    cluster.restart(0);
    let back = wait_for(Duration::from_secs(60), || append(&mut a, t, &records(next, 1)).is_ok());
    assert!(back, "appends resume with a majority again: {}", cluster.logs());
    let mut reader = log(&url);
    let all: Vec<u64> = read_records(&mut reader).iter().map(|e| e.0).collect();
    assert_eq!(all, (1..=next).collect::<Vec<_>>(), "{}", cluster.logs());
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

#[test]
fn engines_on_jetstream_fail_over_and_a_stopped_leader_is_fenced_by_the_log() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = NatsCluster::start(dir.path());
    let redis_dir = dir.path().join("redis");
    std::fs::create_dir_all(&redis_dir).unwrap();
    let redis = RedisServer::start(&redis_dir);
    let redis_url = redis.url.clone();
    let nats_url = cluster.url();
    let extra = ["--journal", nats_url.as_str()];
    let mut a = EngineProc::start_with(BIN, &redis_url, dir.path(), "engine-a", &extra);
    assert!(a.wait_leading(Duration::from_secs(30)), "a leads: {}", a.log_text());
    let mut b = EngineProc::start_with(BIN, &redis_url, dir.path(), "engine-b", &extra);
    runtime().block_on(async {
        let c = Arc::new(client(&redis_url, "js-1", 21).await);
        let account = account(&c).await;
        let load = Load::spawn(Arc::clone(&c), account, 8);
        assert!(wait_for(Duration::from_secs(30), || load.acked_count() > 50), "load runs");

        // kill -9 of the leader: b takes over.
        a.kill();
        assert!(b.wait_leading(Duration::from_secs(20)), "b leads: {}", b.log_text());
        let at = load.acked_count();
        assert!(wait_for(Duration::from_secs(20), || load.acked_count() > at + 50), "served");
        a.restart(BIN, &redis_url);

        // SIGSTOP of b past its lease: a (restarted as a standby) takes over and seals; when b
        // wakes, its next append is refused by JetStream and it exits deposed.
        assert!(wait_for(Duration::from_secs(20), || a.log_text().contains("following")));
        b.signal("STOP");
        let led = wait_for(Duration::from_secs(20), || {
            a.log_text().matches("serving engine-stream").count() >= 2
        });
        assert!(led, "a leads again: {}", a.log_text());
        b.signal("CONT");
        assert_eq!(b.exit_code(Duration::from_secs(20)), Some(75), "b deposed: {}", b.log_text());

        // A NATS node dies under load: a majority remains, service goes on.
        cluster.nodes[2].kill();
        let at = load.acked_count();
        assert!(wait_for(Duration::from_secs(30), || load.acked_count() > at + 50), "served");

        let url = nats_url.clone();
        stop_and_check_with(move || common::nats::read_journal(&url), &c, account, &load).await;
    });
}
