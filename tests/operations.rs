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

/// The back office over real processes (docs/DESIGN.md, "Account controls"): an operator pays,
/// suspends, reinstates and grants credit to a trader, each with a reason; the trader sees it
/// in its answers and its statement; the audit log shows who did what and why, newest first.
#[test]
fn an_operator_acts_on_an_account_with_a_reason_and_the_audit_log_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data").display().to_string();
    let config = dir.path().join("config.json").display().to_string();
    let markets = r#"{"markets":[{"symbol":"BTC_USDC","price_decimals":2,"qty_decimals":5}]}"#;
    std::fs::write(&config, markets).unwrap();
    let (server, addr) = serve(&data, &config);
    let trader = sign_up(&addr, "trader@example.com");
    sign_up(&addr, "ops@example.com");
    drop(server);
    let out = Command::new(BIN)
        .args(["admin", "grant", "ops@example.com", "--data-dir", &data, "--config", &config])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (_server, addr) = serve(&data, &config);
    let ops = until(200, 20, || {
        let creds = r#"{"email":"ops@example.com","password":"correct horse battery"}"#;
        http(&addr, "POST", "/api/v1/user/signin", None, Some(creds))
    });
    let ops = field(&ops.1, "token");
    drop(trader); // its session's token held the old server's secret
    let trader = sign_in(&addr, "trader@example.com");
    let act = |who: &str, body: &str| {
        let path = "/api/v1/admin/accounts/trader@example.com/actions";
        http(&addr, "POST", path, Some(who), Some(body))
    };
    // Refused without a reason, or by a trader: nothing changes.
    let (status, body) = act(&ops, r#"{"action":"adjust_balance","amount":"250","reason":" "}"#);
    assert_eq!((status, json(&body)["error"]["code"].as_str()), (400, Some("reason_required")));
    let (status, _) = act(&trader, r#"{"action":"suspend","reason":"x"}"#);
    assert_eq!(status, 403);
    let (status, body) =
        act(&ops, r#"{"action":"adjust_balance","amount":"250.5","reason":"refund, ticket 7"}"#);
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["withdrawable"], "5250.500000", "{body}");
    // Suspended: the trader may look, not trade.
    let (status, body) = act(&ops, r#"{"action":"suspend","reason":"chargeback review"}"#);
    assert_eq!((status, json(&body)["status"].as_str()), (200, Some("suspended")), "{body}");
    let (status, body) = until(403, 20, || open_long(&addr, &trader));
    assert_eq!(json(&body)["error"]["code"], "account_suspended", "{status} {body}");
    let (_, body) = http(&addr, "GET", "/api/v1/user/controls", Some(&trader), None);
    assert_eq!(json(&body)["status"], "suspended", "{body}");
    let (status, _) = act(&ops, r#"{"action":"reinstate","reason":"review closed"}"#);
    assert_eq!(status, 200);
    // Credit: counted in what it trades with, never withdrawable.
    let (status, body) = act(&ops, r#"{"action":"adjust_credit","amount":"100","reason":"bonus"}"#);
    assert_eq!((status, json(&body)["credit"].as_str()), (200, Some("100.000000")), "{body}");
    let all = r#"{"amount":"5350.5"}"#;
    let (status, body) = http(&addr, "POST", "/api/v1/user/withdraw", Some(&trader), Some(all));
    assert_eq!(json(&body)["error"]["code"], "insufficient_balance", "{status} {body}");
    let mine = r#"{"amount":"5250.5"}"#;
    let (status, body) = http(&addr, "POST", "/api/v1/user/withdraw", Some(&trader), Some(mine));
    assert_eq!(status, 200, "{body}");
    // The audit log: newest first, with who and why (once the history store caught up).
    let deadline = Instant::now() + Duration::from_secs(30);
    let entries = loop {
        let (status, body) = http(&addr, "GET", "/api/v1/admin/audit", Some(&ops), None);
        let entries = json(&body)["entries"].as_array().cloned().unwrap_or_default();
        if status == 200 && entries.len() >= 5 {
            break entries;
        }
        assert!(Instant::now() < deadline, "audit log: {status} {body}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let actions: Vec<(&str, &str)> = entries
        .iter()
        .filter_map(|e| Some((e["action"].as_str()?, e["reason"].as_str()?)))
        .collect();
    assert_eq!(
        actions,
        [
            ("adjust_credit", "bonus"),
            ("reinstate", "review closed"),
            ("suspend", "chargeback review"),
            ("adjust_balance", "refund, ticket 7"),
        ]
    );
    assert_eq!(entries.last().unwrap()["kind"], "role_set", "the grant from the command line");
    let (status, _) = http(&addr, "GET", "/api/v1/admin/audit", Some(&trader), None);
    assert_eq!(status, 403, "operators only");
    // The trader's statement shows the payment and the credit.
    let (_, ledger) = http(&addr, "GET", "/api/v1/user/ledger", Some(&trader), None);
    let kinds: Vec<String> = json(&ledger)["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| format!("{} {}", e["kind"].as_str().unwrap(), e["amount"].as_str().unwrap()))
        .collect();
    assert!(kinds.contains(&"adjustment 250.500000".to_owned()), "{kinds:?}");
    assert!(kinds.contains(&"credit 100.000000".to_owned()), "{kinds:?}");
}
