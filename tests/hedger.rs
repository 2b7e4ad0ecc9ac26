//! `hundredx hedger` over real processes (docs/DESIGN.md, "A-book hedging"): `serve` writes the
//! history store, a trader in a fully A-booked group opens and closes, and the hedger — reading
//! the store, trading on a local mock of Backpack's order API that checks every signature —
//! holds the same position at the venue one-for-one, then none; restarted, it sends nothing
//! twice; its `/metrics` says it hedges.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use common::ha::wait_for;
use common::*;

#[test]
fn the_hedger_holds_an_a_booked_clients_position_at_the_venue_one_for_one() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (venue_url, venue) = rt.block_on(hedger::mock::start());
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
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let metrics = format!("127.0.0.1:{port}");
    let hedger_url = format!("http://{metrics}");
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
            "--hedger-url",
            &hedger_url,
        ]))
    };
    // An operator (the role from the command line, against the stopped data directory).
    let (_serve, addr, ops) = with_operator(serve, data, config);
    let trader = sign_in(&addr, "trader@example.com");
    let (status, body) = http(&addr, "GET", "/api/v1/admin/hedge", Some(&ops), None);
    assert_eq!(
        (status, json(&body)["error"]["code"].as_str()),
        (503, Some("hedger_unavailable")),
        "not started yet"
    );
    let open = r#"{"market":"BTC_USDC","side":"long","leverage":50,"margin":"100"}"#;
    let (status, body) =
        until(201, 20, || http(&addr, "POST", "/api/v1/positions", Some(&trader), Some(open)));
    assert_eq!(status, 201, "{body}");
    let id = field(&body, "id");
    let qty = micros(&field(&body, "quantity"), 5);
    let key = base64::engine::general_purpose::STANDARD.encode(hedger::mock::SEED);
    let start_hedger = || {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.path().join("hedger.log"))
            .unwrap();
        Proc(
            Command::new(BIN)
                .args(["hedger", "--data-dir", data, "--config", config, "--venue-url", &venue_url])
                .args(["--hedge", "BTC_USDC=BTC_USDC_PERP:0:0.00001", "--a-book-groups", "default"])
                .args([
                    "--interval-ms",
                    "200",
                    "--venue-timeout-ms",
                    "1000",
                    "--metrics-listen",
                    &metrics,
                ])
                .env("HUNDREDX_VENUE_KEY", &key)
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        )
    };
    let log = || std::fs::read_to_string(dir.path().join("hedger.log")).unwrap_or_default();
    let hedger_proc = start_hedger();
    let position = || i128::from(venue.lock().unwrap().position);
    wait_until("the hedge to match the client's long", 30, || position() == qty);
    // The hedger records the fill once the venue answered: its metrics follow.
    let recorded = format!(r#"hundredx_hedger_position_steps{{market="BTC_USDC"}} {qty}"#);
    wait_until("the hedger to record it", 10, || scrape(&metrics, "/metrics").contains(&recorded));
    let text = scrape(&metrics, "/metrics");
    assert!(text.contains(r#"hundredx_hedger{counter="halted"} 0"#), "{text}\n{}", log());
    // The console's A-book: the hedge at the engine's mark, its cash and P&L.
    let (status, body) = http(&addr, "GET", "/api/v1/admin/hedge", Some(&ops), None);
    let hedge = json(&body);
    assert_eq!(status, 200, "{body}");
    assert_eq!(micros(hedge["positions"][0]["quantity"].as_str().unwrap(), 5), qty, "{body}");
    let m = |k: &str| micros(hedge[k].as_str().unwrap(), 6);
    assert_eq!(m("pnl"), m("cash") + m("value"), "{body}");
    assert_eq!(http(&addr, "GET", "/api/v1/admin/hedge", Some(&trader), None).0, 403);
    // The client closes: the hedge follows to nothing.
    let (status, body) =
        http(&addr, "POST", &format!("/api/v1/positions/{id}/close"), Some(&trader), Some("{}"));
    assert_eq!(status, 200, "{body}");
    wait_until("the hedge to close", 30, || position() == 0);
    wait_until("the hedger to record it", 10, || {
        scrape(&metrics, "/status").contains(r#""pending":0"#)
    });
    let posts = venue.lock().unwrap().posts;
    assert_eq!((posts, venue.lock().unwrap().bad_signatures), (2, 0), "{}", log());
    // Today's report carries the A-book's P&L: flat at the end of the day, its fills' cash.
    let day = utc_date(today());
    let report = format!("/api/v1/admin/reports/daily?from={day}&to={day}");
    let (_, hedge) = http(&addr, "GET", "/api/v1/admin/hedge", Some(&ops), None);
    let (status, body) = http(&addr, "GET", &report, Some(&ops), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["days"][0]["hedge_pnl"], json(&hedge)["cash"], "{body} {hedge}");
    // Restarted, it finds its journal: nothing is sent again.
    drop(hedger_proc);
    let _again = start_hedger();
    wait_until("two rounds of the restarted hedger", 10, || {
        serde_json::from_str::<serde_json::Value>(&scrape(&metrics, "/status"))
            .is_ok_and(|v| v["rounds"].as_u64() >= Some(2))
    });
    assert_eq!(venue.lock().unwrap().posts, 2, "{}", log());
}

/// `path` on `addr`, or "" while nothing listens there.
fn scrape(addr: &str, path: &str) -> String {
    if std::net::TcpStream::connect(addr).is_err() {
        return String::new();
    }
    http(addr, "GET", path, None, None).1
}

/// Waits on `ok` (polled, up to `secs`), failing with what it waited for.
fn wait_until(what: &str, secs: u64, ok: impl FnMut() -> bool) {
    assert!(wait_for(Duration::from_secs(secs), ok), "timed out waiting for {what}");
}
