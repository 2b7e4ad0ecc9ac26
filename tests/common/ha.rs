//! Replicated service mode for tests and the failover benchmark: a Sentinel deployment
//! ([`RedisHa`]), engines in `--standby` mode, a steady deposit load that records every
//! acknowledged request, and the checks on `engine-journal` (exactly once, replay hash).

use ground::ports::EngineClient;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use engine_core::prelude::*;
use redis_bridge::client::RedisEngineClient;
use redis_bridge::target::RedisTarget;
use redis_bridge::test_support::{TEST_BRIDGE_SECRET, test_key};

#[allow(unused_imports)] // each test binary uses a different subset
pub use redis_bridge::test_support::RedisHa;

/// A `hundredx engine --standby` process, killed on drop; its log in `<dir>/<node>.log`.
pub struct EngineProc {
    pub child: Option<Child>,
    /// `--standby` (replicated); off: a plain `hundredx engine` (the baseline of the benchmark).
    pub replicated: bool,
    /// Journal and snapshot flags: `--sync fsync`, and a snapshot (so a state-hash comparison)
    /// every 100 commands.
    pub args: Vec<String>,
    pub node: String,
    pub data: PathBuf,
    pub log: PathBuf,
    /// What runs it (`ip netns exec <ns>` on a test host), if anything.
    pub prefix: Vec<String>,
}

impl Drop for EngineProc {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl EngineProc {
    /// Starts engine `node` (replicated) with its data under `dir`.
    pub fn start(bin: &str, url: &str, dir: &Path, node: &str) -> EngineProc {
        EngineProc::start_as(bin, url, dir, node, true, None)
    }

    /// Starts engine `node`, replicated or not, with its data under `dir`; `snapshot_every`
    /// replaces the tests' 100.
    pub fn start_as(
        bin: &str,
        url: &str,
        dir: &Path,
        node: &str,
        replicated: bool,
        snapshot_every: Option<u64>,
    ) -> EngineProc {
        let data = dir.join(node);
        let log = dir.join(format!("{node}.log"));
        let args = ["--sync", "fsync", "--snapshot-every", "100"].map(String::from).to_vec();
        let mut p = EngineProc {
            child: None,
            replicated,
            args,
            node: node.into(),
            data,
            log,
            prefix: Vec::new(),
        };
        if let Some(n) = snapshot_every {
            p.args[3] = n.to_string();
        }
        p.restart(bin, url);
        p
    }

    /// Starts replicated engine `node` with extra arguments (e.g. `--metrics-listen`).
    pub fn start_with(bin: &str, url: &str, dir: &Path, node: &str, extra: &[&str]) -> EngineProc {
        let data = dir.join(node);
        let log = dir.join(format!("{node}.log"));
        let mut args = ["--sync", "fsync", "--snapshot-every", "100"].map(String::from).to_vec();
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let mut p = EngineProc {
            child: None,
            replicated: true,
            args,
            node: node.into(),
            data,
            log,
            prefix: Vec::new(),
        };
        p.restart(bin, url);
        p
    }

    /// Starts it again (after a kill), appending to its log.
    pub fn restart(&mut self, bin: &str, url: &str) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let mut cmd = match self.prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Process::new(first);
                c.args(rest).arg(bin);
                c
            }
            None => Process::new(bin),
        };
        cmd.arg("engine");
        if self.replicated {
            cmd.arg("--standby");
        }
        let child = cmd
            .args(["--consumer", &self.node, "--redis", url])
            .arg("--data-dir")
            .arg(&self.data)
            .args(["--lease-ms", "1000", "--keep-journal"])
            .args(&self.args)
            .env("HUNDREDX_BRIDGE_SECRET", TEST_BRIDGE_SECRET)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `signal` (`STOP`, `CONT`) to it.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let ok = Process::new("kill").args([&format!("-{signal}"), &pid]).status().unwrap();
        assert!(ok.success(), "kill -{signal} {pid}");
    }

    /// Its exit code once it exits by itself within `within`.
    pub fn exit_code(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        let c = self.child.as_mut()?;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = c.try_wait() {
                self.child = None;
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until its log says it serves `engine-stream` (it leads).
    pub fn wait_leading(&self, within: Duration) -> bool {
        wait_for(within, || self.log_text().contains("serving engine-stream"))
    }
}

pub fn wait_for(within: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// An API-side client through Sentinel.
pub async fn client(url: &str, instance: &str, tag: u64) -> RedisEngineClient {
    RedisEngineClient::connect(
        &RedisTarget::new(url),
        test_key(),
        instance,
        tag << 40,
        Duration::from_secs(2),
    )
    .await
    .unwrap()
}

/// Creates the test account, retrying until an engine answers.
pub async fn account(c: &RedisEngineClient) -> AccountId {
    account_named(c, "ha@x").await
}

/// Creates account `login`, retrying until an engine answers (an earlier try applied but
/// answered too late is found by its login).
pub async fn account_named(c: &RedisEngineClient, login: &str) -> AccountId {
    let login = Login::new(login).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match c.call(CommandKind::CreateAccount { login, credential: Credential::empty() }).await {
            Ok(Response { result: Ok(ReplyData::AccountCreated { account }), .. }) => {
                return account;
            }
            // An earlier try was applied but its reply came too late.
            Ok(Response { result: Err(Reason::DuplicateLogin), .. }) => {
                if let Ok(Response { result: Ok(ReplyData::Credential { account, .. }), .. }) =
                    c.call(CommandKind::QueryCredential { login }).await
                {
                    return account;
                }
            }
            other => assert!(Instant::now() < deadline, "no engine answered: {other:?}"),
        }
    }
}

/// Deposits of 1 USDC from `tasks` tasks until `stop`; every acknowledged request id recorded.
#[derive(Default)]
pub struct Load {
    pub acked: Mutex<Vec<u64>>,
    pub sent: std::sync::atomic::AtomicU64,
    /// (sent, answered, ok) of every request, for the outage's length.
    pub timeline: Mutex<Vec<(Instant, Instant, bool)>>,
    pub stop: AtomicBool,
}

impl Load {
    pub fn spawn(client: Arc<RedisEngineClient>, account: AccountId, tasks: usize) -> Arc<Load> {
        let load = Arc::new(Load::default());
        for _ in 0..tasks {
            let (c, l) = (Arc::clone(&client), Arc::clone(&load));
            tokio::spawn(async move {
                while !l.stop.load(Ordering::Relaxed) {
                    let kind =
                        CommandKind::Deposit { account, amount: Usdc::from_whole(1), key: None };
                    l.sent.fetch_add(1, Ordering::Relaxed);
                    let sent = Instant::now();
                    let r = c.call(kind).await;
                    let ok = matches!(&r, Ok(Response { result: Ok(_), .. }));
                    if let Ok(Response { request_id, result: Ok(_), .. }) = r {
                        l.acked.lock().unwrap().push(request_id.0);
                    }
                    l.timeline.lock().unwrap().push((sent, Instant::now(), ok));
                    if !ok {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            });
        }
        load
    }

    /// When the first request sent after `t` was acknowledged (a reply the old leader wrote
    /// before `t` does not count).
    pub fn first_ok_after(&self, t: Instant) -> Option<Instant> {
        let timeline = self.timeline.lock().unwrap();
        timeline.iter().filter(|(sent, _, ok)| *ok && *sent > t).map(|x| x.1).min()
    }

    pub fn acked_count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }
}

/// Every command in `engine-journal`, in order, from the master the sentinels name.
pub fn read_journal(url: &str) -> Vec<(u64, Command)> {
    let client = RedisTarget::new(url).resolve_blocking().unwrap();
    let mut con = client.get_connection().unwrap();
    let mut out = Vec::new();
    let mut after = "-".to_owned();
    loop {
        let r: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg("engine-journal")
            .arg(&after)
            .arg("+")
            .arg("COUNT")
            .arg(10_000)
            .query(&mut con)
            .unwrap();
        if r.ids.is_empty() {
            return out;
        }
        for e in &r.ids {
            let bytes: Vec<u8> = e.get("r").unwrap();
            let (seq, cmd) =
                engine_core::persist::RecordReader::new(&bytes).next().unwrap().unwrap();
            assert_eq!(format!("{seq}-0"), e.id, "entry id is the journal sequence");
            out.push((seq, cmd));
        }
        after = format!("({}", r.ids.last().unwrap().id);
    }
}

/// Checks the log against the load: dense from 1; every acknowledged request in it exactly
/// once; no request id twice. Returns the number of deposits in the log.
pub fn check_exactly_once(journal: &[(u64, Command)], acked: &[u64]) -> usize {
    for (i, (seq, _)) in journal.iter().enumerate() {
        assert_eq!(*seq, i as u64 + 1, "engine-journal is dense from 1");
    }
    let mut count: HashMap<u64, usize> = HashMap::new();
    let mut deposits = 0;
    for (_, c) in journal {
        if c.request_id.0 != 0 {
            *count.entry(c.request_id.0).or_default() += 1;
        }
        deposits += usize::from(matches!(c.kind, CommandKind::Deposit { .. }));
    }
    if let Some((id, n)) = count.iter().find(|(_, n)| **n > 1) {
        panic!("request {id} applied {n} times");
    }
    for id in acked {
        assert_eq!(count.get(id), Some(&1), "acknowledged request {id} is in the log once");
    }
    deposits
}

/// The state hash of a from-scratch replay of `journal` with the default configuration.
pub fn replay_hash(journal: &[(u64, Command)]) -> String {
    engine_core::hash::hex(&replay(journal).state_hash())
}

/// The engine a from-scratch replay of `journal` gives, with the default configuration.
pub fn replay(journal: &[(u64, Command)]) -> engine_core::state::Engine {
    let cfg = hundredx::config_file::load_engine(None).unwrap();
    let mut engine = engine_core::state::Engine::new(cfg).unwrap();
    for (_, c) in journal {
        let _ = engine.apply_collect(c);
    }
    engine
}

/// The serving engine's state hash and the account's balance, once every deposit in the log
/// is applied (retrying through a takeover).
pub async fn settle(c: &RedisEngineClient, account: AccountId, deposits: usize) -> String {
    let want = Usdc::from_whole(5_000 + i64::try_from(deposits).unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Response { result: Ok(ReplyData::Account(a)), .. }) =
            c.call(CommandKind::QueryAccount { account }).await
        {
            assert!(a.available <= want, "more deposits applied than journaled: {a:?}");
            if a.available == want {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the balance never reached {want:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    match c.call(CommandKind::QueryStateHash).await {
        Ok(Response { result: Ok(ReplyData::State(s)), .. }) => engine_core::hash::hex(&s.hash),
        other => panic!("state hash: {other:?}"),
    }
}

/// Stops the load, lets replies in flight time out, then checks the log against it: every
/// acknowledged request in `engine-journal` exactly once, no request twice, the balance equal to
/// the deposits in the log, and the serving engine's state hash equal to a from-scratch replay.
pub async fn stop_and_check(url: &str, c: &RedisEngineClient, account: AccountId, load: &Load) {
    let url = url.to_owned();
    stop_and_check_with(move || read_journal(&url), c, account, load).await;
}

/// [`stop_and_check`] against the journal `read` returns (read on a blocking thread).
pub async fn stop_and_check_with(
    read: impl FnOnce() -> Vec<(u64, Command)> + Send + 'static,
    c: &RedisEngineClient,
    account: AccountId,
    load: &Load,
) {
    load.stop.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let journal = tokio::task::spawn_blocking(read).await.unwrap();
    let acked = load.acked.lock().unwrap().clone();
    let deposits = check_exactly_once(&journal, &acked);
    assert!(deposits >= acked.len(), "every acknowledged deposit is in the log");
    let hash = settle(c, account, deposits).await;
    assert_eq!(hash, replay_hash(&journal), "state = from-scratch replay of engine-journal");
}

/// Publishes a fresh BTC price into `price-stream` every 50 ms until `stop` (opens need a live
/// price; service mode has no feed in the tests). `url`: plain or through Sentinel.
pub fn publish_prices(url: &str, stop: Arc<AtomicBool>) {
    let client = RedisTarget::new(url).resolve_blocking().unwrap();
    let key = test_key();
    std::thread::spawn(move || {
        let mut con = client.get_connection().unwrap();
        let mut update = 1u64;
        while !stop.load(Ordering::Relaxed) {
            let wobble = i64::try_from(update % 7).unwrap() * 10;
            let t = Tick {
                market: MarketId(0),
                bid: Price(6_000_000 + wobble),
                ask: Price(6_000_020 + wobble),
                update_id: update,
                exchange_time_us: hundredx::now_ns() / 1_000,
            };
            let body = redis_bridge::wire::encode_tick(&t);
            let xadd =
                redis_bridge::entries::signed_xadd(&key, redis_bridge::PRICE_STREAM, 10_000, &body);
            let _: redis::RedisResult<String> = xadd.query(&mut con);
            update += 1;
            std::thread::sleep(Duration::from_millis(50));
        }
    });
}
