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
    let (_server, addr, ops) = with_operator(|| serve(&data, &config), &data, &config);
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
    // The desk's view of the account.
    let (status, body) =
        http(&addr, "GET", "/api/v1/admin/accounts/trader@example.com", Some(&ops), None);
    let view = json(&body);
    assert_eq!((status, &view["controls"]["credit"]), (200, &serde_json::json!("100.000000")));
    assert_eq!(view["controls"]["status"], "active", "{body}");
    // Signed in before the restart and after it: both sessions live.
    assert_eq!(view["sessions"].as_array().map(Vec::len), Some(2), "{body}");
    assert_eq!(view["positions"], serde_json::json!([]), "{body}");
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

/// The daily report over real processes (docs/DESIGN.md, "Daily report"): trades with a
/// group's markup and commission, the markets' fees, financing charged by the scheduler, an
/// operator's payment, charge and credit; the report's totals, summed over its days, equal
/// what the engine holds on the house's lines (house balance, insurance fund, spread and
/// commission revenue) to the micro-USDC, and its spread and commission columns the revenue
/// lines.
#[test]
fn the_daily_report_reconciles_with_the_house_lines_to_the_micro_usdc() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data").display().to_string();
    let config = dir.path().join("config.json").display().to_string();
    let markets = r#"{"markets":[{"symbol":"BTC_USDC","price_decimals":2,"qty_decimals":5,
        "open_fee_rate":"0.0002","close_fee_rate":"0.0003","financing_long_rate":"0.001"}],
        "groups":[{"name":"raw","markets":[{"symbol":"BTC_USDC","markup_bps":1,
        "commission_per_lot":"3.5"}]}]}"#;
    std::fs::write(&config, markets).unwrap();
    let (_server, addr, ops) = with_operator(|| serve(&data, &config), &data, &config);
    let trader = sign_in(&addr, "trader@example.com");
    let (status, body) = until(201, 20, || open_long(&addr, &trader));
    assert_eq!(status, 201, "{body}");
    for side in ["long", "short", "long", "short"] {
        assert!(trade_round(&addr, &trader, side));
    }
    let act = |body: &str| {
        let path = "/api/v1/admin/accounts/trader@example.com/actions";
        http(&addr, "POST", path, Some(&ops), Some(body))
    };
    for body in [
        r#"{"action":"adjust_balance","amount":"10.25","reason":"goodwill"}"#,
        r#"{"action":"adjust_balance","amount":"-3","reason":"fee correction"}"#,
        r#"{"action":"adjust_credit","amount":"7","reason":"bonus"}"#,
    ] {
        assert_eq!(act(body).0, 200);
    }
    let today = today();
    let path = format!(
        "/api/v1/admin/reports/daily?from={}&to={}",
        utc_date(today - 1),
        utc_date(today + 1)
    );
    let sum = |days: &[serde_json::Value], column: &str| -> i128 {
        days.iter().map(|d| micros(d[column].as_str().unwrap(), 6)).sum()
    };
    // The store follows the engine a moment behind, and the scheduler charges financing every
    // 2 s: read both until they agree (they must, at some instant between two charges).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, risk) = http(&addr, "GET", "/api/v1/admin/risk", Some(&ops), None);
        let (status, report) = http(&addr, "GET", &path, Some(&ops), None);
        let (risk, report) = (json(&risk), json(&report));
        let line = |name: &str| micros(risk[name].as_str().unwrap_or("0"), 6);
        let days = report["days"].as_array().cloned().unwrap_or_default();
        let lines = line("house_balance")
            + line("insurance_fund")
            + line("spread_revenue")
            + line("commission_revenue");
        let agreed = status == 200
            && sum(&days, "total") == lines
            && sum(&days, "spread_markup") == line("spread_revenue")
            && sum(&days, "commission") == line("commission_revenue")
            && sum(&days, "financing") > 0
            && sum(&days, "adjustments") == -7_250_000
            && sum(&days, "credit") == -7_000_000;
        if agreed {
            assert!(sum(&days, "market_fees") > 0 && sum(&days, "spread_markup") > 0, "{report}");
            break;
        }
        assert!(Instant::now() < deadline, "never reconciled: {risk} against {report}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, csv) = http(&addr, "GET", &format!("{path}&format=csv"), Some(&ops), None);
    assert_eq!(status, 200);
    assert!(csv.starts_with("day,spread_markup,commission,"), "{csv}");
    // Any account's statement of a day, for an operator only.
    let day = utc_date(today);
    let statement = "/api/v1/admin/accounts/trader@example.com/statement?format=jsonl";
    let (status, lines) = http(&addr, "GET", statement, Some(&ops), None);
    assert_eq!(status, 200, "{lines}");
    assert!(lines.contains(r#""kind":"adjustment""#) && lines.contains(&day), "{lines}");
    assert_eq!(http(&addr, "GET", statement, Some(&trader), None).0, 403);
    let (status, body) = http(
        &addr,
        "GET",
        "/api/v1/admin/reports/daily?from=2026-01-01&to=2027-06-01",
        Some(&ops),
        None,
    );
    assert_eq!((status, json(&body)["error"]["code"].as_str()), (400, Some("invalid_query")));
}

/// The console's stress run over real processes (docs/DESIGN.md, "Stress replay"): a bundled
/// gap on a copy of the live state names the 50x long it would liquidate, and the live
/// position is still open afterwards.
#[test]
fn an_operator_stresses_todays_book_and_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data").display().to_string();
    let config = dir.path().join("config.json").display().to_string();
    std::fs::write(
        &config,
        r#"{"markets":[{"symbol":"BTC_USDC","price_decimals":2,"qty_decimals":5}]}"#,
    )
    .unwrap();
    let (_server, addr, ops) = with_operator(|| serve(&data, &config), &data, &config);
    let trader = sign_in(&addr, "trader@example.com");
    let open = r#"{"market":"BTC_USDC","side":"long","leverage":50,"margin":"100"}"#;
    let (status, body) =
        until(201, 20, || http(&addr, "POST", "/api/v1/positions", Some(&trader), Some(open)));
    assert_eq!(status, 201, "{body}");
    let id: u64 = field(&body, "id").parse().unwrap();
    let (status, body) = http(&addr, "GET", "/api/v1/admin/stress", Some(&ops), None);
    assert_eq!((status, json(&body)["scenarios"][1].as_str()), (200, Some("gap-10")), "{body}");
    let run = |scenario: &str| {
        let body = format!(r#"{{"scenario":"{scenario}"}}"#);
        http(&addr, "POST", "/api/v1/admin/stress", Some(&ops), Some(&body))
    };
    let (status, body) = run("gap-10");
    assert_eq!(status, 200, "{body}");
    let report = json(&body);
    assert_eq!(report["liquidated"][0]["position"].as_u64(), Some(id), "{body}");
    assert_eq!(report["open_positions"][1], 0, "{body}");
    let (status, body) = run("meteor");
    assert_eq!((status, json(&body)["error"]["code"].as_str()), (400, Some("invalid_scenario")));
    let (status, _) = http(
        &addr,
        "POST",
        "/api/v1/admin/stress",
        Some(&trader),
        Some(r#"{"scenario":"gap-10"}"#),
    );
    assert_eq!(status, 403);
    let (_, positions) = http(&addr, "GET", "/api/v1/positions", Some(&trader), None);
    assert_eq!(json(&positions)["positions"][0]["id"], id.to_string(), "still open: {positions}");
}

/// The runbook's procedures on a test deployment (docs/OPERATIONS.md, "Runbook"): an online
/// back-up of a serving data directory (snapshots, then the journal), a clean stop (SIGTERM),
/// a restore from the back-up under a rotated JWT secret (tokens signed with the old one are
/// refused, sign-in works, the state is the back-up's: what happened after it is not there),
/// and the upgrade gate (`hundredx replay` of the data directory: conservation holds, nothing
/// left to replay after the clean stop's snapshot). Fail-over: tests/replication.rs.
#[test]
fn the_runbook_backs_up_stops_restores_under_a_new_secret_and_checks_before_an_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let (live, backup) = (dir.path().join("live"), dir.path().join("backup"));
    let serve = |data: &std::path::Path, secret: &str| {
        let args = [
            "serve",
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--feed",
            "synthetic",
        ];
        address_of(hundredx_with(&args, &[("HUNDREDX_JWT_SECRET", secret)], Stdio::null()))
    };
    let old_secret = "the-first-jwt-secret-0123456789";
    let (mut server, addr) = serve(&live, old_secret);
    let token = sign_up(&addr, "trader@example.com");
    let deposit = |token: &str, amount: &str| {
        let body = format!(r#"{{"amount":"{amount}"}}"#);
        http(&addr, "POST", "/api/v1/user/deposit", Some(token), Some(&body))
    };
    assert_eq!(deposit(&token, "100").0, 200);
    let (_, balance) = http(&addr, "GET", "/api/v1/user/balance", Some(&token), None);
    let before = json(&balance)["available"].as_str().unwrap().to_owned();
    // Online back-up: snapshots first, then the journal (which then covers from the newest
    // copied snapshot on; a record cut mid-copy is a torn tail the restore drops).
    for sub in ["snapshots", "journal"] {
        std::fs::create_dir_all(backup.join(sub)).unwrap();
        for e in std::fs::read_dir(live.join(sub)).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, backup.join(sub).join(p.file_name().unwrap())).unwrap();
        }
    }
    assert_eq!(deposit(&token, "55").0, 200, "after the back-up: not in it");
    // A clean stop: SIGTERM, exit 0.
    let killed = Command::new("kill").args(["-TERM", &server.0.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let status = server.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
    // Restore under a rotated secret.
    let (_restored, addr) = serve(&backup, "the-second-jwt-secret-987654321");
    let (status, _) =
        until(401, 20, || http(&addr, "GET", "/api/v1/user/balance", Some(&token), None));
    assert_eq!(status, 401, "the old secret's tokens are refused");
    let token = sign_in(&addr, "trader@example.com");
    let (_, balance) = http(&addr, "GET", "/api/v1/user/balance", Some(&token), None);
    assert_eq!(json(&balance)["available"].as_str(), Some(before.as_str()), "{balance}");
    drop(_restored);
    // The upgrade gate on the stopped live directory: the new binary replays it.
    let out = Command::new(BIN).args(["replay", "--data-dir"]).arg(&live).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        text.contains("conservation    ok") && text.contains("replayed        0 records"),
        "{text}"
    );
}
