//! Faults in the spirit of Jepsen, on the JetStream journal (docs/REPLICATION.md): every NATS
//! node and every engine on a host of its own (a network namespace, `tests/common/netns.rs`),
//! Redis and the clients on the test's host. Clients deposit, open, close and withdraw with
//! unique request ids while a seeded schedule injects faults: kill -9 of any engine or NATS node,
//! SIGSTOP of the leader past its lease, the leader cut off from the whole NATS cluster, the
//! leader cut off from the clients (Redis), one NATS node cut off from the other two, and a
//! bridge (two NATS nodes that cannot see each other, both seeing the third), and a jump of one
//! engine's wall clock by a minute, forward or back, and back again (libfaketime). After each fault
//! the cut is healed and exited processes are restarted, as a supervisor would.
//!
//! The checker then reads the whole client history and the journal: the journal is dense; every
//! acknowledged operation is in it exactly once; no request id appears twice (so nothing
//! unacknowledged was applied twice); the serving engine's state equals a from-scratch replay
//! of the journal, whose conservation identity holds; and every engine, stopped at the end,
//! holds exactly the replay of the journal up to where it stopped.
//!
//! The test command runs a short schedule (`HUNDREDX_FAULTS`, default 6 faults, seed
//! `HUNDREDX_FAULT_SEED`, default 1); `scripts/partitions` runs long ones. Needs root (network
//! namespaces), iproute2, nats-server, redis-server and faketime.

use ground::ports::EngineClient;
use std::process::{Child, Command as Process, Stdio};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

mod common;

use common::BIN;
use common::ha::*;
use common::nats::NatsCluster;
use common::netns::Net;
use engine_core::prelude::*;
use redis_bridge::client::RedisEngineClient;

const LEASE: Duration = Duration::from_millis(1_000);
/// libfaketime (Debian's `faketime`), the variant for multithreaded programs: every engine runs
/// under it, its offset read from a file at every clock read, so a fault can move one engine's
/// wall clock while it runs.
const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";
/// Hosts: three NATS nodes, then the two engines.
const ENGINE_HOSTS: [usize; 2] = [3, 4];

/// A redis-server for requests and replies, on the test's host, reachable from the others.
struct Redis(Child);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn redis_on(dir: &std::path::Path, addr: &str, port: u16) -> Redis {
    let child = Process::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", &format!("127.0.0.1 {addr}")])
        .args(["--protected-mode", "no", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start redis-server ({e}): apt-get install redis-server")
        });
    assert!(
        wait_for(Duration::from_secs(10), || std::net::TcpStream::connect((addr, port)).is_ok()),
        "redis-server on {addr}:{port}"
    );
    Redis(child)
}

/// xorshift64: the schedule from its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// What the clients did: every acknowledged request id by kind, and when replies came.
#[derive(Default)]
struct History {
    acked: Mutex<Vec<(u64, &'static str)>>,
    sent: AtomicU64,
    /// Requests answered or timed out: equal to `sent` when none is in flight.
    answered: AtomicU64,
    stop: AtomicBool,
}

impl History {
    fn acked_count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }
}

/// `tasks` clients, each on its own account: deposit 5, open, close, withdraw 1, again.
fn spawn_clients(c: &Arc<RedisEngineClient>, accounts: &[AccountId]) -> Arc<History> {
    let h = Arc::new(History::default());
    for &account in accounts {
        let (c, h) = (Arc::clone(c), Arc::clone(&h));
        tokio::spawn(async move {
            let mut open: Option<PositionId> = None;
            let mut step = 0u64;
            while !h.stop.load(Ordering::Relaxed) {
                let (kind, name) = match (step % 4, open) {
                    (0, _) => (
                        CommandKind::Deposit { account, amount: Usdc::from_whole(5), key: None },
                        "deposit",
                    ),
                    (1, _) => (
                        CommandKind::OpenPosition(OpenRequest::new(
                            account,
                            MarketId(0),
                            Side::Long,
                            5,
                            Size::Margin(Usdc::from_whole(10)),
                        )),
                        "open",
                    ),
                    (2, Some(position)) => (
                        CommandKind::ClosePosition { account, position, quantity: None, key: None },
                        "close",
                    ),
                    _ => (
                        CommandKind::Withdraw { account, amount: Usdc::from_whole(1), key: None },
                        "withdraw",
                    ),
                };
                h.sent.fetch_add(1, Ordering::Relaxed);
                let r = c.call(kind).await;
                h.answered.fetch_add(1, Ordering::Relaxed);
                match r {
                    Ok(Response { request_id, result: Ok(data), .. }) => {
                        if let ReplyData::Opened(v) = data {
                            open = Some(v.id);
                        }
                        if name == "close" {
                            open = None;
                        }
                        h.acked.lock().unwrap().push((request_id.0, name));
                        step += 1;
                    }
                    // A business refusal (no price yet, say) is an answer too: move on.
                    Ok(_) => step += 1,
                    // No answer (a fault): the same step again, as a new request.
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        });
    }
    h
}

/// The engine that leads now: alive, and the last to log that it serves.
fn leader(engines: &mut [EngineProc; 2]) -> Option<usize> {
    let mut best: Option<(String, usize)> = None;
    for (i, e) in engines.iter_mut().enumerate() {
        let alive = e.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)));
        let log = e.log_text();
        let Some(line) = log.lines().rev().find(|l| l.contains("serving engine-stream")) else {
            continue;
        };
        let stamp = line.chars().skip_while(|c| !c.is_ascii_digit()).take(27).collect::<String>();
        if alive && best.as_ref().is_none_or(|(s, _)| stamp > *s) {
            best = Some((stamp, i));
        }
    }
    best.map(|b| b.1)
}

/// Restarts every engine that exited (deposed: 75; killed), as `Restart=always` would.
fn supervise(engines: &mut [EngineProc; 2], url: &str, log: &mut Vec<String>) {
    for e in engines.iter_mut() {
        let exited = match e.child.as_mut() {
            None => Some(None),
            Some(c) => c.try_wait().ok().flatten().map(|s| s.code()),
        };
        if let Some(code) = exited {
            assert_ne!(code, Some(70), "{} diverged: {}", e.node, e.log_text());
            log.push(format!("{} exited {code:?}, restarted", e.node));
            e.child = None;
            e.restart(BIN, url);
        }
    }
}

#[test]
fn faults_on_jetstream_lose_nothing_acknowledged_and_apply_nothing_twice() {
    let faults: u64 =
        std::env::var("HUNDREDX_FAULTS").ok().and_then(|v| v.parse().ok()).unwrap_or(6);
    let seed: u64 =
        std::env::var("HUNDREDX_FAULT_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let dir = tempfile::tempdir().unwrap();
    let net = Net::new(5);
    let root = net.root();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let _redis = redis_on(dir.path(), &root, port);
    let url = format!("redis://{root}:{port}/");
    let hosts = (0..3).map(|i| (net.hosts[i].1.clone(), net.on(i))).collect();
    let mut nats = NatsCluster::start_on(dir.path(), hosts);
    let journal_url = nats.url();
    let mut engines = ["engine-a", "engine-b"].map(|name| {
        EngineProc {
            child: None,
            replicated: true,
            args: ["--sync", "fsync", "--snapshot-every", "500", "--journal", &journal_url]
                .map(String::from)
                .to_vec(),
            node: name.to_owned(),
            data: dir.path().join(name),
            log: dir.path().join(format!("{name}.log")),
            prefix: Vec::new(),
        } // EngineProc::restart adds `--lease-ms 1000` (LEASE)
    });
    assert!(
        std::path::Path::new(FAKETIME).exists(),
        "{FAKETIME} is missing: install it with `apt-get install faketime`"
    );
    let clocks: Vec<std::path::PathBuf> =
        ["a", "b"].iter().map(|n| dir.path().join(format!("clock-{n}"))).collect();
    for (i, e) in engines.iter_mut().enumerate() {
        std::fs::write(&clocks[i], "+0\n").unwrap();
        e.prefix = net.on(ENGINE_HOSTS[i]);
        e.prefix.extend([
            "env".to_owned(),
            format!("LD_PRELOAD={FAKETIME}"),
            format!("FAKETIME_TIMESTAMP_FILE={}", clocks[i].display()),
            "FAKETIME_NO_CACHE=1".to_owned(),
            // The wall clock only, as NTP or an operator steps it: CLOCK_MONOTONIC never goes
            // back on a real machine (moving it made every tokio timer fire at once).
            "FAKETIME_DONT_FAKE_MONOTONIC=1".to_owned(),
        ]);
        e.restart(BIN, &url);
        if i == 0 {
            assert!(e.wait_leading(Duration::from_secs(60)), "a leads: {}", e.log_text());
        }
    }
    let prices_stop = Arc::new(AtomicBool::new(false));
    publish_prices(&url, Arc::clone(&prices_stop));
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let c = Arc::new(rt.block_on(client(&url, "faults", 31)));
    let accounts: Vec<AccountId> = rt.block_on(async {
        let mut v = Vec::new();
        for i in 0..6 {
            v.push(account_named(&c, &format!("jepsen{i}@x")).await);
        }
        v
    });
    let history = rt.block_on(async { spawn_clients(&c, &accounts) });
    assert!(wait_for(Duration::from_secs(60), || history.acked_count() > 100), "the load runs");

    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut events: Vec<String> = Vec::new();
    for step in 1..=faults {
        let before = history.acked_count();
        let Some(l) = leader(&mut engines) else {
            panic!("no leader before fault {step}: {events:?}")
        };
        let hold = Duration::from_millis(1_500 + rng.below(1_500));
        let fault = rng.below(8);
        let what = match fault {
            0 => {
                engines[l].kill();
                format!("kill -9 leader {}", engines[l].node)
            }
            1 => {
                let n = usize::try_from(rng.below(3)).unwrap();
                nats.nodes[n].kill();
                std::thread::sleep(hold);
                nats.restart(n);
                format!("kill -9 NATS n{} for {hold:?}", n + 1)
            }
            2 => {
                engines[l].signal("STOP");
                std::thread::sleep(LEASE * 3);
                engines[l].signal("CONT");
                format!("SIGSTOP leader {} for {:?}", engines[l].node, LEASE * 3)
            }
            3 => {
                for n in 0..3 {
                    net.cut(ENGINE_HOSTS[l], &net.hosts[n].1);
                }
                std::thread::sleep(hold.max(LEASE * 3));
                net.heal();
                format!("leader {} cut off from every NATS node", engines[l].node)
            }
            4 => {
                net.cut(ENGINE_HOSTS[l], &root);
                std::thread::sleep(hold);
                net.heal();
                format!("leader {} cut off from the clients (Redis) for {hold:?}", engines[l].node)
            }
            5 => {
                let n = usize::try_from(rng.below(3)).unwrap();
                for m in (0..3).filter(|m| *m != n) {
                    net.cut(n, &net.hosts[m].1);
                }
                std::thread::sleep(hold);
                net.heal();
                format!("NATS n{} cut off from the other two for {hold:?}", n + 1)
            }
            6 => {
                let e = usize::try_from(rng.below(2)).unwrap();
                let jump = if rng.below(2) == 0 { "+60" } else { "-60" };
                std::fs::write(&clocks[e], format!("{jump}\n")).unwrap();
                std::thread::sleep(hold);
                std::fs::write(&clocks[e], "+0\n").unwrap();
                let role = if e == l { "leader" } else { "standby" };
                format!(
                    "{role} {}'s wall clock jumped {jump} s for {hold:?}, then back",
                    engines[e].node
                )
            }
            _ => {
                let a = usize::try_from(rng.below(3)).unwrap();
                let b = (a + 1 + usize::try_from(rng.below(2)).unwrap()) % 3;
                net.cut(a, &net.hosts[b].1);
                std::thread::sleep(hold);
                net.heal();
                format!("bridge: n{} and n{} cut, both see the third, for {hold:?}", a + 1, b + 1)
            }
        };
        events.push(format!("fault {step}: {what}"));
        // Whatever the fault, service resumes: a deposed or killed engine comes back as a
        // standby, and the clients are answered again.
        let resumed = wait_for(Duration::from_secs(60), || {
            supervise(&mut engines, &url, &mut events);
            history.acked_count() > before + 50
        });
        assert!(
            resumed,
            "no service after {what}: {events:?}\n{}\n{}\n{}",
            engines[0].log_text().lines().rev().take(20).collect::<Vec<_>>().join("\n"),
            engines[1].log_text().lines().rev().take(20).collect::<Vec<_>>().join("\n"),
            nats.logs()
        );
    }
    history.stop.store(true, Ordering::Relaxed);
    prices_stop.store(true, Ordering::Relaxed);
    // Every request in flight answered or timed out: the client history is final.
    let settled = wait_for(Duration::from_secs(30), || {
        history.sent.load(Ordering::Relaxed) == history.answered.load(Ordering::Relaxed)
    });
    assert!(settled, "requests still in flight after 30 s");

    check(&rt, &c, &url, &journal_url, &history, &mut engines, &events);
}

/// The checker: the journal against the client history, the engines against the journal.
fn check(
    rt: &tokio::runtime::Runtime,
    c: &RedisEngineClient,
    url: &str,
    journal_url: &str,
    history: &History,
    engines: &mut [EngineProc; 2],
    events: &[String],
) {
    let acked = history.acked.lock().unwrap().clone();
    // The serving engine holds exactly the replay of the journal. A request whose client gave
    // up may still be applied a moment later: the comparison counts only when the journal is
    // the same before and after the state hash is asked for (queries are not journaled).
    let hash = || {
        rt.block_on(async {
            match c.call(CommandKind::QueryStateHash).await {
                Ok(Response { result: Ok(ReplyData::State(s)), .. }) => {
                    engine_core::hash::hex(&s.hash)
                }
                other => panic!("state hash: {other:?}"),
            }
        })
    };
    let mut journal = common::nats::read_journal(journal_url);
    let (served, replay) = loop {
        let served = hash();
        let after = common::nats::read_journal(journal_url);
        if after.len() == journal.len() {
            break (served, replay(&journal));
        }
        journal = after;
    };
    let ids: Vec<u64> = acked.iter().map(|a| a.0).collect();
    check_exactly_once(&journal, &ids);
    replay.check_conservation().expect("the conservation identity holds after the replay");
    let want = engine_core::hash::hex(&replay.state_hash());
    assert_eq!(served, want, "the serving engine = replay of the journal");
    // Every engine, stopped, holds the replay of the journal up to where it stopped. One the
    // last fault deposed is restarted first, and stopped once it follows.
    supervise(engines, url, &mut Vec::new());
    for e in engines.iter() {
        let ready = wait_for(Duration::from_secs(60), || {
            let log = e.log_text();
            let start = log.rfind("engine running with journal").unwrap_or(0);
            log[start..].contains("following engine-journal") || log[start..].contains("serving")
        });
        assert!(ready, "{} rejoined: {}", e.node, e.log_text());
    }
    for e in engines.iter_mut() {
        e.signal("TERM");
        let _ = e.exit_code(Duration::from_secs(30));
        let log = e.log_text();
        let line = log
            .lines()
            .rev()
            .find(|l| l.contains("engine stopped cleanly"))
            .unwrap_or_else(|| panic!("{} did not stop cleanly: {}", e.node, log));
        let field = |name: &str| -> String {
            let plain =
                line.replace("\u{1b}[3m", "").replace("\u{1b}[0m", "").replace("\u{1b}[2m", "");
            let at = plain.find(&format!("{name}=")).expect("field") + name.len() + 1;
            plain[at..].chars().take_while(|c| c.is_ascii_alphanumeric()).collect()
        };
        let last: usize = field("last_seq").parse().unwrap();
        assert!(last <= journal.len(), "{} holds more than the journal", e.node);
        assert_eq!(
            field("state_hash"),
            replay_hash(&journal[..last]),
            "{} = replay to {last}",
            e.node
        );
    }
    let mut kinds = std::collections::BTreeMap::new();
    for (_, k) in &acked {
        *kinds.entry(*k).or_insert(0usize) += 1;
    }
    println!(
        "JetStream: {} operations sent, {} acknowledged {kinds:?}, {} commands journaled, \
         {} faults, 0 violations\n{}",
        history.sent.load(Ordering::Relaxed),
        acked.len(),
        journal.len(),
        events.iter().filter(|e| e.starts_with("fault")).count(),
        events.join("\n")
    );
}
