//! The `hundredx` binary over a real process: `serve` starts, applies synthetic ticks, logs its
//! status, and stops cleanly on SIGINT; a recording replays into the engine; bad feeds are refused.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_hundredx");

#[test]
fn serve_with_a_bad_feed_says_so() {
    let dir = tempfile::tempdir().unwrap();
    for (feed, says) in [("replay:no-such-file.jsonl", "not found"), ("nonsense", "unknown feed")] {
        let out = Command::new(BIN)
            .args(["serve", "--feed", feed])
            .arg("--data-dir")
            .arg(dir.path())
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{feed}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{feed}: {err}");
    }
}

/// A configuration error is one clear line with its causes, and no backtrace even when
/// `RUST_BACKTRACE` is set (as it often is on developers' machines).
#[test]
fn an_error_prints_its_message_and_causes_never_a_backtrace() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--feed", "nonsense"])
        .arg("--data-dir")
        .arg(dir.path())
        .env("RUST_BACKTRACE", "full")
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("Error: ") && err.contains("unknown feed"), "{err}");
    assert!(!err.to_lowercase().contains("backtrace"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

/// `serve --feed replay:FILE` plays the recorded fixture into the engine; the API shows its prices.
#[test]
fn serve_replays_a_recording_into_the_engine() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/adapters/price-feed/test_data/backpack/book_ticker.jsonl"
    );
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--replay-fast", "--feed"])
        .arg(format!("replay:{fixture}"))
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let addr = first.rsplit("http://").next().unwrap().trim().to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.write_all(b"GET /api/v1/markets HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        if resp.contains("61989.90") || Instant::now() > deadline {
            break resp;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    let _ = child.wait();
    // The fixture's last BTC frame: bid 61989.90, ask 61990.00; ETH and SOL arrived too.
    assert!(body.contains(r#""bid":"61989.90""#) && body.contains(r#""ask":"61990.00""#), "{body}");
    assert!(body.contains(r#""bid":"3050.01""#) && body.contains(r#""bid":"236.46""#), "{body}");
}

#[test]
fn serve_runs_the_synthetic_feed_and_stops_cleanly_on_sigint() {
    serve_stops_cleanly_on("-INT");
}

/// systemd and container runtimes stop services with SIGTERM: the same clean stop, final
/// snapshot included.
#[test]
fn serve_stops_cleanly_on_sigterm() {
    serve_stops_cleanly_on("-TERM");
}

fn serve_stops_cleanly_on(signal: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--feed",
            "synthetic",
            "--status-interval",
            "1",
            "--ticks-per-second",
            "200",
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let logs = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(logs).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let wait_for = |what: &dyn Fn(&str) -> bool| loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if what(&line) => return line,
            Ok(_) => {}
            Err(e) => panic!("serve did not log what was expected: {e}"),
        }
    };
    wait_for(&|l| l.contains("engine started"));
    // A status line with ticks applied, so the feed reaches the engine through the ring.
    wait_for(&|l| l.contains("status") && !l.contains("ticks=0 "));
    let killed = Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let name = if signal == "-TERM" { "SIGTERM" } else { "SIGINT" };
    wait_for(&|l| l.contains(&format!("{name}: shutting down")));
    wait_for(&|l| l.contains("engine stopped cleanly"));
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    // The clean stop left a snapshot; replay agrees with it.
    let out = Command::new(BIN).arg("replay").arg("--data-dir").arg(dir.path()).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("conservation    ok") && text.contains("replayed        0 records"),
        "{text}"
    );
}

/// `hundredx explain`: a journal in which a 50x long is liquidated, with a snapshot before the
/// liquidation; the command finds the close, prints what fired and its inputs, and replays to
/// it from the first record and from the snapshot, both giving the same close and hash.
#[test]
fn explain_replays_a_liquidation_from_the_journal_and_from_a_snapshot() {
    use engine_core::command::Command as EngineCommand;
    use engine_core::prelude::{
        AccountId, CommandKind, Credential, Engine, EngineConfig, Login, MarketId, OpenRequest,
        Price, Qty, RequestId, Side, Size, Tick,
    };
    use engine_core::processor::InputStage;
    use hundredx::durability::{DataDir, Journal, JournalPruning, SnapshotWriter, SyncPolicy};
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::create(dir.path()).unwrap();
    let mut engine = Engine::new(EngineConfig::default()).unwrap();
    let mut journal = Journal::open(&data, 1, SyncPolicy::None, 0).unwrap();
    let tick = |update_id, p| {
        let t = Tick {
            market: MarketId(0),
            bid: Price(p),
            ask: Price(p),
            update_id,
            exchange_time_us: 0,
        };
        CommandKind::PriceTick(t)
    };
    let login = Login::new("t@x").unwrap();
    let open =
        OpenRequest::new(AccountId(1), MarketId(0), Side::Long, 50, Size::Quantity(Qty(100_000)));
    let commands = [
        CommandKind::CreateAccount { login, credential: Credential::empty() },
        tick(1, 5_000_000),
        CommandKind::OpenPosition(open),
        tick(2, 4_980_000),
        tick(3, 4_920_000), // past 49 246.24: liquidated
    ];
    let mut out = Vec::new();
    for (i, kind) in commands.into_iter().enumerate() {
        let seq = u64::try_from(i).unwrap() + 1;
        let cmd = EngineCommand::new(RequestId(seq), 1_700_000_000_000_000_000 + seq, kind);
        journal.on_command(seq, &cmd, true);
        engine.apply(&cmd, &mut out);
        if seq == 4 {
            SnapshotWriter::new(&data, 3, JournalPruning::Keep).write(4, &engine).unwrap();
        }
    }
    drop(journal);
    assert_eq!(engine.open_positions(), 0, "the position was liquidated");
    let run = |position: &str| {
        Command::new(BIN)
            .args(["explain", "--data-dir"])
            .arg(dir.path())
            .args(["--position", position])
            .output()
            .unwrap()
    };
    let found = run("1");
    let text = String::from_utf8_lossy(&found.stdout);
    assert!(found.status.success(), "{text}{}", String::from_utf8_lossy(&found.stderr));
    let hash = engine_core::hash::hex(&engine.state_hash());
    for line in [
        "seq 5 ",
        ": liquidation",
        "BTC_USDC long 1.00000 at 50000.00",
        "reached 49246.24 (bid 49200.00, ask 49200.00)",
        "margin 1000.000000, maintenance rate 0.005000",
        // (1 000 − 800) / 246 = 0.813008: at or below 1, liquidated.
        "at the mark 49200.00: PnL -800.000000, maintenance margin 246.000000, level 0.813008",
        "closed at 49200.00",
        &format!("replayed from the first record to 5: the same close, state hash {hash}"),
        &format!("replayed from the snapshot at 4 to 5: the same close, state hash {hash}"),
        "verified",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    let none = run("2");
    assert!(!none.status.success());
    assert!(String::from_utf8_lossy(&none.stderr).contains("nothing fired on it"));
}

/// `hundredx stress` (docs/DESIGN.md, "Stress replay") on a data directory written by a real
/// journal and snapshot: a synthetic crash and the bundled recorded one report exactly the
/// positions whose liquidation prices they reach, and not one byte of the directory changes.
#[test]
fn stress_reports_who_a_crash_would_liquidate_and_touches_nothing() {
    use engine_core::command::Command as EngineCommand;
    use engine_core::prelude::{
        AccountId, CommandKind, Credential, Engine, EngineConfig, Login, MarketId, OpenRequest,
        Price, RequestId, Side, Size, Tick, Usdc,
    };
    use engine_core::processor::InputStage;
    use hundredx::durability::{DataDir, Journal, JournalPruning, SnapshotWriter, SyncPolicy};
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::create(dir.path()).unwrap();
    let mut engine = Engine::new(EngineConfig::default()).unwrap();
    let mut journal = Journal::open(&data, 1, SyncPolicy::None, 0).unwrap();
    let tick = |market, p| {
        let t = Tick {
            market: MarketId(market),
            bid: Price(p),
            ask: Price(p),
            update_id: 1,
            exchange_time_us: 0,
        };
        CommandKind::PriceTick(t)
    };
    let mut commands = vec![tick(0, 6_000_000), tick(1, 300_000)];
    // Accounts 1..=3 on BTC: 50x long, 2x long, 10x short; account 4: 20x long on ETH.
    let books =
        [(0, Side::Long, 50), (0, Side::Long, 2), (0, Side::Short, 10), (1, Side::Long, 20)];
    for (i, &(market, side, leverage)) in books.iter().enumerate() {
        let login = Login::new(&format!("t{i}@x")).unwrap();
        commands.push(CommandKind::CreateAccount { login, credential: Credential::empty() });
        let account = AccountId(u32::try_from(i).unwrap() + 1);
        let size = Size::Margin(Usdc::from_whole(1_000));
        commands.push(CommandKind::OpenPosition(OpenRequest::new(
            account,
            MarketId(market),
            side,
            leverage,
            size,
        )));
    }
    let mut out = Vec::new();
    let n = commands.len();
    for (i, kind) in commands.into_iter().enumerate() {
        let seq = u64::try_from(i).unwrap() + 1;
        let cmd = EngineCommand::new(RequestId(seq), 1_700_000_000_000_000_000 + seq, kind);
        journal.on_command(seq, &cmd, true);
        engine.apply(&cmd, &mut out);
        if i == 5 {
            SnapshotWriter::new(&data, 3, JournalPruning::Keep).write(seq, &engine).unwrap();
        }
    }
    drop(journal);
    assert_eq!(engine.open_positions(), 4, "{n} commands");
    let files = || {
        let mut all = Vec::new();
        for sub in ["journal", "snapshots"] {
            for e in std::fs::read_dir(dir.path().join(sub)).unwrap() {
                let p = e.unwrap().path();
                all.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
        all.sort();
        all
    };
    let before = files();
    let stress = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(["stress", "--data-dir"])
            .arg(dir.path())
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.success(), text, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    // −20 % on BTC: the 50x long (liquidated near −2 %) goes; the 2x long and the short stay;
    // ETH does not move.
    let (ok, text, err) = stress(&["--crash", "BTC_USDC=-20%", "--json"]);
    assert!(ok, "{text}{err}");
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    let liquidated: Vec<u64> = report["liquidated"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["position"].as_u64().unwrap())
        .collect();
    assert_eq!(liquidated, [1], "{text}");
    assert_eq!(report["open_positions"], serde_json::json!([4, 3]), "{text}");
    // The bundled flash crash: BTC −25 % and ETH −30 %, from today's prices.
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/flash-crash.jsonl");
    let (ok, text, err) = stress(&["--feed", &format!("replay:{scenario}"), "--json"]);
    assert!(ok, "{text}{err}");
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut liquidated: Vec<u64> = report["liquidated"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["position"].as_u64().unwrap())
        .collect();
    liquidated.sort_unstable();
    assert_eq!(liquidated, [1, 4], "the 50x BTC and the 20x ETH longs: {text}");
    let (ok, text, _) = stress(&["--crash", "BTC_USDC=-20%"]);
    assert!(ok && text.contains("liquidated: account 1 position 1 BTC_USDC long"), "{text}");
    let (ok, _, err) = stress(&["--crash", "DOGE_USDC=-20%"]);
    assert!(!ok && err.contains("no market DOGE_USDC"), "{err}");
    let (ok, _, err) = stress(&[]);
    assert!(!ok && err.contains("give one of"), "{err}");
    assert!(files() == before, "stress wrote to the data directory");
}
