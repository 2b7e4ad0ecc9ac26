//! The trading page in a real browser: Debian's `chromium` driven by `playwright-core`
//! (tests/browser/terminal.mjs; `npm ci` there installs it — it downloads no browser), against a
//! real `serve` on port 0 playing a price recording crafted here. Needs `chromium` and `node`
//! (`apt-get install chromium nodejs npm`); scripts/test installs them when missing.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn need(program: &str, package: &str) {
    let found = Command::new("sh").args(["-c", &format!("command -v {program}")]).output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "{program} not found: install it with `apt-get install {package}`"
    );
}

/// BTC_USDC every 250 ms: around 60 000 (moving a dollar at a time) for 40 s; then 59 170 for
/// 40 s — below the margin-call level of a 50x long opened before (entry 60 001..60 005: called
/// at or below ~59 245..59 249) but above its liquidation price (~59 096..59 100); then 58 000,
/// through the liquidation price, for 60 s more.
fn recording(path: &Path) {
    let mut out = String::new();
    let t0: u64 = 1_732_000_000_000_000;
    for i in 0..560u64 {
        let bid = match i {
            0..160 => 6_000_000 + (i % 5) * 100,
            160..320 => 5_917_000,
            _ => 5_800_000,
        };
        let (bid, ask) = (bid, bid + 100);
        let px = |p: u64| format!("{}.{:02}", p / 100, p % 100);
        let e = t0 + i * 250_000;
        out += &format!(
            r#"{{"stream":"bookTicker.BTC_USDC","data":{{"e":"bookTicker","E":{e},"s":"BTC_USDC","a":"{}","A":"1","b":"{}","B":"1","u":{},"T":{e}}}}}"#,
            px(ask),
            px(bid),
            i + 1
        );
        out.push('\n');
    }
    std::fs::write(path, out).unwrap();
}

/// Chromium, node and playwright-core are here (`npm ci` in tests/browser when missing):
/// the directory of the browser scripts.
fn browser_ready() -> std::path::PathBuf {
    need("chromium", "chromium");
    need("node", "nodejs npm");
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    if !browser_dir.join("node_modules/playwright-core").exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&browser_dir)
            .status()
            .expect("npm (apt-get install npm)");
        assert!(status.success(), "npm ci in tests/browser failed");
    }
    browser_dir
}

#[test]
fn the_trading_page_in_chromium() {
    let browser_dir = browser_ready();
    let dir = tempfile::tempdir().unwrap();
    let feed = dir.path().join("prices.jsonl");
    recording(&feed);
    let data = dir.path().join("data");
    // BTC with two leverage brackets: up to 10 000 of notional the market's own 100x, above it
    // 50x (the page shows an order's bracket).
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        r#"{"markets":[{"symbol":"BTC_USDC","price_decimals":2,"qty_decimals":5,"brackets":[
            {"notional_cap":"10000","max_leverage":100,"maintenance_margin_rate":"0.005"},
            {"max_leverage":50,"maintenance_margin_rate":"0.01"}]}]}"#,
    )
    .unwrap();
    let (_serve, addr) = address_of(hundredx(&[
        "serve",
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--feed",
        &format!("replay:{}", feed.display()),
        "--markets",
        "BTC_USDC",
    ]));
    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("terminal.png");
    let out = Command::new("node")
        .arg(browser_dir.join("terminal.mjs"))
        .env("HX_URL", format!("http://{addr}/"))
        .env("CHROMIUM", "/usr/bin/chromium")
        .env("SCREENSHOT", &screenshot)
        .output()
        .unwrap();
    let log =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{log}");
    assert!(out.status.success(), "the browser test failed:\n{log}");
    assert!(screenshot.exists(), "a screenshot was saved");
}

/// The operator console in Chromium (tests/browser/desk.mjs): a trader is turned away; the
/// operator sees live prices and the house's book by push, opens an account, pays it and
/// suspends it with reasons, finds both in the audit log and the payment in today's report,
/// stresses a copy of the book, and reinstates the account.
#[test]
fn the_operator_console_in_chromium() {
    let browser_dir = browser_ready();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        r#"{"markets":[{"symbol":"BTC_USDC","price_decimals":2,"qty_decimals":5}]}"#,
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let serve = || {
        address_of(hundredx(&[
            "serve",
            "--data-dir",
            data,
            "--config",
            config,
            "--listen",
            "127.0.0.1:0",
            "--feed",
            "synthetic",
        ]))
    };
    let (_server, addr, _ops) = with_operator(serve, data, config);
    let trader = sign_in(&addr, "trader@example.com");
    let open = r#"{"market":"BTC_USDC","side":"long","leverage":50,"margin":"100"}"#;
    let (status, body) =
        until(201, 20, || http(&addr, "POST", "/api/v1/positions", Some(&trader), Some(open)));
    assert_eq!(status, 201, "{body}");
    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("desk.png");
    let out = Command::new("node")
        .arg(browser_dir.join("desk.mjs"))
        .env("HX_URL", format!("http://{addr}/admin"))
        .env("CHROMIUM", "/usr/bin/chromium")
        .env("SCREENSHOT", &screenshot)
        .env("OPS_EMAIL", "ops@example.com")
        .env("TRADER_EMAIL", "trader@example.com")
        .env("PASSWORD", "correct horse battery")
        .output()
        .unwrap();
    let log =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{log}");
    assert!(out.status.success(), "the console test failed:\n{log}");
    assert!(screenshot.exists(), "a screenshot was saved");
}
