//! The `hundredx` binary over a real process: `serve` starts, applies synthetic ticks, logs its
//! status, and stops cleanly on SIGINT; feeds that are not built yet fail with a clear message.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_hundredx");

#[test]
fn serve_with_an_unavailable_feed_says_so() {
    for feed in ["backpack", "replay:x.jsonl", "nonsense"] {
        let out = Command::new(BIN)
            .args(["serve", "--feed", feed])
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{feed}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--feed synthetic") || err.contains("unknown feed"), "{feed}: {err}");
    }
}

#[test]
fn serve_runs_the_synthetic_feed_and_stops_cleanly_on_sigint() {
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
        ])
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
    let killed = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
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
