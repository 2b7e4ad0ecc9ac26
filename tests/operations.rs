//! Operations over real processes: the operator role granted only by `hundredx admin` against
//! a stopped engine's data directory, then used over HTTP; financing charged by `serve`'s
//! scheduler and shown in the statement.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn serve(data: &str, config: &str) -> (Proc, String) {
    let args = [
        "serve",
        "--data-dir",
        data,
        "--config",
        config,
        "--listen",
        "127.0.0.1:0",
        "--feed",
        "synthetic",
        "--financing-interval-secs",
        "2",
    ];
    address_of(hundredx_with(&args, &[], Stdio::null()))
}

fn open_long(addr: &str, token: &str) -> (u16, String) {
    let open = r#"{"market":"BTC_USDC","side":"long","leverage":5,"margin":"100"}"#;
    http(addr, "POST", "/api/v1/positions", Some(token), Some(open))
}

#[test]
fn the_operator_role_comes_from_the_command_line_and_financing_from_the_scheduler() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data").display().to_string();
    let config = dir.path().join("config.json").display().to_string();
    let markets = r#"{"markets":[{"symbol":"BTC_USDC","price_decimals":2,"qty_decimals":5,
        "financing_long_rate":"0.001"}]}"#;
    std::fs::write(&config, markets).unwrap();
    let (server, addr) = serve(&data, &config);
    let trader = sign_up(&addr, "trader@example.com");
    let ops = sign_up(&addr, "ops@example.com");
    let (status, body) = until(201, 20, || open_long(&addr, &trader));
    assert_eq!(status, 201, "{body}");
    // Every 2 s the scheduler charges 0.1 % of the long's notional to its margin: the
    // statement shows it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, ledger) = http(&addr, "GET", "/api/v1/user/ledger", Some(&trader), None);
        if ledger.contains(r#""kind":"financing""#) {
            break;
        }
        assert!(Instant::now() < deadline, "no financing in the statement: {ledger}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Nobody gets the role over HTTP.
    let halt = r#"{"mode":"halted"}"#;
    let (status, _) = http(&addr, "PUT", "/api/v1/admin/markets/BTC_USDC", Some(&ops), Some(halt));
    assert_eq!(status, 403);
    drop(server); // kill -9: the data directory's lock goes with the process

    let grant = |email: &str| {
        Command::new(BIN)
            .args(["admin", "grant", email, "--data-dir", &data, "--config", &config])
            .output()
            .unwrap()
    };
    let out = grant("nobody@example.com");
    assert!(!out.status.success(), "an unknown login is refused");
    let out = grant("ops@example.com");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("now holds the operator role"), "{stdout}");

    let (_server, addr) = serve(&data, &config);
    let creds = r#"{"email":"ops@example.com","password":"correct horse battery"}"#;
    let (status, body) =
        until(200, 20, || http(&addr, "POST", "/api/v1/user/signin", None, Some(creds)));
    assert_eq!((status, json(&body)["admin"].as_bool()), (200, Some(true)), "{body}");
    let ops = field(&body, "token");
    let (status, body) =
        http(&addr, "PUT", "/api/v1/admin/markets/BTC_USDC", Some(&ops), Some(halt));
    assert_eq!((status, json(&body)["mode"].as_str()), (200, Some("halted")), "{body}");
    let trader = sign_in(&addr, "trader@example.com");
    let (status, body) = until(422, 20, || open_long(&addr, &trader));
    assert_eq!((status, json(&body)["error"]["code"].as_str()), (422, Some("market_halted")));
    let (status, body) = http(&addr, "GET", "/api/v1/admin/risk", Some(&ops), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["exposure"][0]["positions"], 1, "{body}");
}
