//! Fail-stop and descriptor starvation over a real `hundredx serve` process.
//!
//! - A journal that cannot write makes the process exit with code 74 and a clear log line (it
//!   used to stay up serving 503s, with the feed spinning on a full ring).
//! - With a low `RLIMIT_NOFILE` and idle sockets held open, the journal still rotates and the
//!   engine keeps applying commands: the connection cap stays below the descriptor limit, and the
//!   next segment is opened ahead of time.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_hundredx");

/// Starts `serve` with a fast synthetic feed and 1 MiB segments (so segments rotate quickly);
/// returns the child and its HTTP address.
fn serve(data: &std::path::Path, prefix: &[&str]) -> (Child, String) {
    let mut cmd = if prefix.is_empty() {
        Command::new(BIN)
    } else {
        let mut c = Command::new(prefix[0]);
        c.args(&prefix[1..]).arg(BIN);
        c
    };
    let mut child = cmd
        .args(["serve", "--listen", "127.0.0.1:0", "--feed", "synthetic"])
        .args(["--ticks-per-second", "200000", "--segment-mib", "1", "--sync", "none"])
        .arg("--data-dir")
        .arg(data)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hundredx (prlimit comes with util-linux)");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("serve printed its address").unwrap();
        if let Some(a) = line.strip_prefix("hundredx listening on http://") {
            break a.to_string();
        }
    };
    // Keep reading: a closed pipe would make the child's next println fail.
    std::thread::spawn(move || lines.for_each(drop));
    (child, addr)
}

fn segments(data: &std::path::Path) -> usize {
    std::fs::read_dir(data.join("journal"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn a_journal_write_failure_exits_the_process_with_a_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    std::fs::create_dir_all(&journal).unwrap();
    // The next segment will be this spare, renamed into place: writes to it fail (ENOSPC).
    std::os::unix::fs::symlink("/dev/full", journal.join("next-segment.spare")).unwrap();
    let (mut child, _) = serve(dir.path(), &[]);
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "still running after a journal failure"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(status.code(), Some(74), "{err}");
    assert!(err.contains("FAIL-STOP"), "{err}");
}

#[test]
fn with_few_descriptors_and_idle_sockets_the_journal_still_rotates() {
    let dir = tempfile::tempdir().unwrap();
    // 128 descriptors: the cap becomes 128 - 64 reserved = 64 connections.
    let (mut child, addr) = serve(dir.path(), &["prlimit", "--nofile=128:128", "--"]);
    let held: Vec<TcpStream> = (0..150).filter_map(|_| TcpStream::connect(&addr).ok()).collect();
    assert!(held.len() >= 64, "{} sockets", held.len());
    let first = segments(dir.path());
    let started = Instant::now();
    while segments(dir.path()) < first + 3 {
        assert!(child.try_wait().unwrap().is_none(), "the server died while starved");
        assert!(started.elapsed() < Duration::from_secs(60), "no rotation while starved");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(held);
    std::thread::sleep(Duration::from_millis(500));
    // Still serving: a fresh connection gets an answer from the engine.
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /api/v1/markets HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    assert!(body.starts_with("HTTP/1.1 200") && body.contains("BTC_USDC"), "{body}");
    let _ = child.kill();
    let mut err = String::new();
    let _ = child.wait();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(!err.contains("journal write failed"), "{err}");
}
