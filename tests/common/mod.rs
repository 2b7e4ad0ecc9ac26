//! Helpers the process-level tests share: run `hundredx` with the test secrets, read its
//! address, speak plain HTTP/1.1, retry until a status.
#![allow(dead_code)] // each test binary uses a different subset

pub mod ha;
pub mod nats;
pub mod netns;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_hundredx");
pub const SECRET: &str = "service-test-secret-0123456789";

/// A child process, killed on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn hundredx(args: &[&str]) -> Proc {
    hundredx_with(args, &[], Stdio::null())
}

/// Runs `hundredx args` with the test's secrets plus `env`, its stderr to `stderr`.
pub fn hundredx_with(args: &[&str], env: &[(&str, &str)], stderr: Stdio) -> Proc {
    Proc(
        Command::new(BIN)
            .args(args)
            .env("HUNDREDX_JWT_SECRET", SECRET)
            .env("HUNDREDX_BRIDGE_SECRET", redis_bridge::test_support::TEST_BRIDGE_SECRET)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap(),
    )
}

/// Waits for the "listening on http://…" line of an api or serve process.
pub fn address_of(mut p: Proc) -> (Proc, String) {
    let mut lines = BufReader::new(p.0.stdout.take().unwrap()).lines();
    let first = lines.next().expect("the process prints its address").unwrap();
    let addr = first.rsplit("http://").next().unwrap().trim().to_string();
    // Keep reading what else it prints: a closed pipe would kill it on its next line.
    std::thread::spawn(move || lines.for_each(drop));
    (p, addr)
}

pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n");
    if let Some(t) = token {
        req += &format!("Authorization: Bearer {t}\r\n");
    }
    if let Some(b) = body {
        req += &format!("Content-Type: application/json\r\nContent-Length: {}\r\n", b.len());
    }
    req += "\r\n";
    req += body.unwrap_or("");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    (head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0), body.to_string())
}

/// Repeats `request` every 100 ms until it returns `want` or `secs` pass; returns the last reply.
pub fn until(want: u16, secs: u64, mut request: impl FnMut() -> (u16, String)) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let r = request();
        if r.0 == want || Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn field(json: &str, name: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    v[name].as_str().map(str::to_owned).unwrap_or_default()
}

// ----- trading over HTTP -----

pub fn sign_up(addr: &str, email: &str) -> String {
    let creds = format!(r#"{{"email":"{email}","password":"correct horse battery"}}"#);
    let (status, body) = http(addr, "POST", "/api/v1/user/signup", None, Some(&creds));
    assert_eq!(status, 202, "{body}");
    let (status, body) = http(addr, "POST", "/api/v1/user/signin", None, Some(&creds));
    assert_eq!(status, 200, "{body}");
    field(&body, "token")
}

pub fn sign_in(addr: &str, email: &str) -> String {
    let creds = format!(r#"{{"email":"{email}","password":"correct horse battery"}}"#);
    let (status, body) =
        until(200, 20, || http(addr, "POST", "/api/v1/user/signin", None, Some(&creds)));
    assert_eq!(status, 200, "{body}");
    field(&body, "token")
}

/// Opens a position, closes half (a closed part with its own id), then the rest: two closed
/// rows per round.
pub fn trade_round(addr: &str, token: &str, side: &str) -> bool {
    let open = format!(r#"{{"market":"BTC_USDC","side":"{side}","leverage":20,"margin":"50"}}"#);
    let (status, body) = http(addr, "POST", "/api/v1/positions", Some(token), Some(&open));
    if status != 201 {
        return false;
    }
    let id = field(&body, "id");
    let path = format!("/api/v1/positions/{id}/close");
    let qty = field(&body, "quantity");
    let half = format!(r#"{{"quantity":"{}"}}"#, half_of(&qty));
    let _ = http(addr, "POST", &path, Some(token), Some(&half));
    let _ = http(addr, "POST", &path, Some(token), None);
    true
}

/// Half of a decimal quantity with 5 decimals, rounded down to a step (at least one step).
pub fn half_of(q: &str) -> String {
    let steps = micros(q, 5) / 2;
    format!("{}.{:05}", steps / 100_000, (steps % 100_000).max(1))
}

/// A decimal string as an integer count of 10^-decimals.
pub fn micros(s: &str, decimals: u32) -> i128 {
    let neg = s.starts_with('-');
    let s = s.trim_start_matches('-');
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let mut frac = frac.to_string();
    while frac.len() < decimals as usize {
        frac.push('0');
    }
    let v: i128 = format!("{int}{frac}").parse().unwrap();
    if neg { -v } else { v }
}

pub fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_default()
}

/// A local stand-in for Binance's kline endpoint serving `adapters/price-feed`'s fixture (two
/// candles of December 2024) for every span; counts the requests.
pub async fn klines() -> (String, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    let path =
        concat!(env!("CARGO_MANIFEST_DIR"), "/adapters/price-feed/test_data/binance/klines.json");
    let body = std::fs::read_to_string(path).unwrap();
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let count = std::sync::Arc::clone(&asked);
    let app = axum::Router::new().route(
        "/api/v3/klines",
        axum::routing::get(move || {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let body = body.clone();
            async move { ([("content-type", "application/json")], body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, asked)
}

/// `YYYY-MM-DD` of a day since the epoch (Howard Hinnant's civil_from_days).
pub fn utc_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Today, UTC, in days since the epoch.
pub fn today() -> i64 {
    let secs =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    i64::try_from(secs / 86_400).unwrap()
}

/// A server with an operator: `serve` starts it, `trader@example.com` and `ops@example.com`
/// sign up, it stops, `hundredx admin grant` gives ops the role against its data directory
/// (the only way to), and `serve` starts it again. The server, its address, ops's token.
pub fn with_operator(
    serve: impl Fn() -> (Proc, String),
    data: &str,
    config: &str,
) -> (Proc, String, String) {
    let (server, addr) = serve();
    sign_up(&addr, "trader@example.com");
    sign_up(&addr, "ops@example.com");
    drop(server);
    let out = Command::new(BIN)
        .args(["admin", "grant", "ops@example.com", "--data-dir", data, "--config", config])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (server, addr) = serve();
    let ops = sign_in(&addr, "ops@example.com");
    (server, addr, ops)
}
