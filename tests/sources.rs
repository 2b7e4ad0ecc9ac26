//! `serve --feed binance,okx,coinbase`: three local mock venues (127.0.0.1:0, each speaking its
//! own protocol), the index made in the engine, a wick on one venue that moves nothing, per-
//! source health in `/healthz` and `/metrics`, and `hundredx replay` of the journal with
//! several venues live giving the same state hash as the run.

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{BIN, address_of, http, hundredx, sign_in, sign_up};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

/// A venue's frame for BTC at `bid`/`ask` with update id `u`.
fn frame(venue: &str, bid: &str, ask: &str, u: u64) -> String {
    match venue {
        "binance" => format!(
            r#"{{"stream":"btcusdc@bookTicker","data":{{"u":{u},"s":"BTCUSDC","b":"{bid}","B":"1","a":"{ask}","A":"1"}}}}"#
        ),
        "okx" => format!(
            r#"{{"arg":{{"channel":"bbo-tbt","instId":"BTC-USDC"}},"data":[{{"asks":[["{ask}","1","0","1"]],"bids":[["{bid}","1","0","1"]],"ts":"1732000000000","seqId":{u}}}]}}"#
        ),
        _ => format!(
            r#"{{"type":"ticker","sequence":{u},"product_id":"BTC-USDC","best_bid":"{bid}","best_ask":"{ask}","time":"2024-11-19T07:06:40.000123Z"}}"#
        ),
    }
}

/// A mock venue: after the subscription, a quote every 50 ms (so no source goes stale);
/// `wick` switches it to a print at half the price.
async fn venue(name: &'static str, wick: Arc<AtomicBool>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let wick = Arc::clone(&wick);
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else { return };
                let _subscribe = ws.next().await;
                for u in 1.. {
                    let (bid, ask) = if wick.load(Ordering::SeqCst) {
                        ("30000.00", "30000.00")
                    } else {
                        ("60000.00", "60000.10")
                    };
                    if ws.send(Message::text(frame(name, bid, ask, u))).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            });
        }
    });
    url
}

fn wait(secs: u64, mut ok: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn three_venues_make_the_index_a_wick_on_one_moves_nothing_and_replay_agrees() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let wick = Arc::new(AtomicBool::new(false));
    let names = ["binance", "okx", "coinbase"];
    // binance's mock gets the wick switch.
    let binance = runtime.block_on(venue("binance", Arc::clone(&wick)));
    let okx = runtime.block_on(venue("okx", Arc::new(AtomicBool::new(false))));
    let coinbase = runtime.block_on(venue("coinbase", Arc::new(AtomicBool::new(false))));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        r#"{"markets":[{"symbol":"BTC_USDC","price_decimals":2,"qty_decimals":5,"sources":3}]}"#,
    )
    .unwrap();
    let data = dir.path().join("data");
    let feed_urls: Vec<String> = [("binance", &binance), ("okx", &okx), ("coinbase", &coinbase)]
        .iter()
        .map(|(n, u)| format!("--feed-url={n}={u}"))
        .collect();
    let mut args = vec![
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--feed",
        "binance,okx,coinbase",
        "--no-history",
        // The whole journal stays, for the replay from scratch below (the server restarts once).
        "--keep-journal",
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ];
    args.extend(feed_urls.iter().map(String::as_str));
    // An operator, for the index against each venue (the role from the command line, against
    // the stopped data directory).
    let (first, addr) = address_of(hundredx(&args));
    sign_up(&addr, "ops@example.com");
    drop(first);
    let grant = Command::new(BIN)
        .args(["admin", "grant", "ops@example.com", "--config", config.to_str().unwrap()])
        .args(["--data-dir", data.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(grant.status.success(), "{}", String::from_utf8_lossy(&grant.stderr));
    let (serve, addr) = address_of(hundredx(&args));
    let ops = sign_in(&addr, "ops@example.com");
    // The index of 60000.00/60000.10 from three agreeing venues is that quote.
    let btc = || http(&addr, "GET", "/api/v1/markets", None, None).1;
    assert!(wait(20, || btc().contains(r#""bid":"60000.00""#)), "{}", btc());
    let health = || http(&addr, "GET", "/healthz", None, None).1;
    let ticks = |name: &str| -> u64 {
        let v: serde_json::Value = serde_json::from_str(&health()).unwrap();
        let sources = v["feed"]["sources"].as_array().cloned().unwrap_or_default();
        let s = sources.iter().find(|s| s["kind"] == name).cloned().unwrap_or_default();
        s["ticks"].as_u64().unwrap_or(0)
    };
    assert!(names.iter().all(|n| ticks(n) > 0), "{}", health());
    let feed: serde_json::Value = serde_json::from_str(&health()).unwrap();
    assert_eq!(feed["feed"]["connected"], true, "{feed}");
    // One venue prints half the price for a while: the index does not move.
    wick.store(true, Ordering::SeqCst);
    let before = ticks("binance");
    assert!(wait(20, || ticks("binance") > before + 10), "the wick reached the feed");
    // The feed counts a tick when it arrives; the market's summary follows when the engine has
    // applied it (on a loaded machine, a moment later): wait for it, then check the price.
    let left_out = r#""sources":{"configured":3,"fresh":3,"agreeing":2}"#;
    let left = wait(20, || {
        let listed = btc();
        assert!(listed.contains(r#""bid":"60000.00""#), "the index moved: {listed}");
        listed.contains(left_out)
    });
    assert!(left, "the wick is left out: {}", btc());
    let listed = btc();
    assert!(listed.contains(r#""bid":"60000.00""#), "the index did not move: {listed}");
    assert!(listed.contains(r#""price_guard":"open""#), "{listed}");
    // The desk sees which venue is off, and by how much.
    let (status, body) =
        http(&addr, "GET", "/api/v1/admin/markets/BTC_USDC/sources", Some(&ops), None);
    assert_eq!(status, 200, "{body}");
    let view: serde_json::Value = serde_json::from_str(&body).unwrap();
    let by_name = |n: &str| {
        view["sources"].as_array().unwrap().iter().find(|s| s["source"] == n).cloned().unwrap()
    };
    assert!(by_name("binance")["deviation_bps"].as_u64() > Some(4_000), "{body}");
    assert_eq!(by_name("okx")["deviation_bps"], 0, "{body}");
    assert_eq!(
        (by_name("coinbase")["fresh"].as_bool(), view["index_bid"].as_str()),
        (Some(true), Some("60000.00")),
        "{body}"
    );
    let metrics = http(&addr, "GET", "/metrics", None, None).1;
    assert!(metrics.contains(r#"hundredx_feed_source{source="okx",counter="ticks"}"#), "{metrics}");
    // Stop; replay the whole journal from scratch: the same state hash as the clean stop's.
    let _ = Command::new("kill").args(["-TERM", &serve.0.id().to_string()]).status();
    let mut serve = serve;
    assert!(serve.0.wait().unwrap().success());
    let replay = |scratch: bool| {
        let mut c = Command::new(BIN);
        c.args([
            "replay",
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ]);
        if scratch {
            c.arg("--from-scratch");
        }
        let out = c.stderr(Stdio::null()).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let hash = text.lines().find(|l| l.starts_with("state hash")).unwrap().to_owned();
        (hash, text)
    };
    let (from_snapshot, _) = replay(false);
    let (from_scratch, text) = replay(true);
    assert_eq!(from_snapshot, from_scratch, "{text}");
    assert!(text.contains("conservation    ok"), "{text}");
    drop(runtime);
}

#[test]
fn a_fresh_install_charts_the_venues_recent_candles_before_its_own() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let binance = runtime.block_on(venue("binance", Arc::new(AtomicBool::new(false))));
    let (rest, asked) = runtime.block_on(common::klines());
    let dir = tempfile::tempdir().unwrap();
    let serve = |data: &str, extra: &[&str]| {
        let data = dir.path().join(data);
        let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--feed", "binance", "--markets"];
        args.extend(["BTC_USDC", "--feed-url", &binance, "--data-dir", data.to_str().unwrap()]);
        args.extend(extra);
        address_of(hundredx(&args))
    };
    let candles = |addr: &str| {
        let (_, body) =
            http(addr, "GET", "/api/v1/candles?market=BTC_USDC&interval=1m", None, None);
        serde_json::from_str::<serde_json::Value>(&body).unwrap_or_default()
    };
    let sources = |v: &serde_json::Value| -> Vec<String> {
        let list = v["candles"].as_array().cloned().unwrap_or_default();
        list.iter().map(|c| c["source"].as_str().unwrap_or("").to_owned()).collect()
    };
    let (_serve, addr) = serve("a", &["--backfill-url", &rest]);
    // The venue's two candles first, then the engine's own from its first tick on.
    assert!(
        wait(30, || sources(&candles(&addr)).last().is_some_and(|s| s == "engine")
            && sources(&candles(&addr)).contains(&"venue".to_owned())),
        "{}",
        candles(&addr)
    );
    let got = candles(&addr);
    assert_eq!(got["venue"], "binance", "{got}");
    let list = got["candles"].as_array().unwrap();
    assert_eq!(
        (&list[0]["time"], &list[0]["open"]),
        (&1_733_580_000_000u64.into(), &"60000.00".into())
    );
    assert_eq!(
        (&list[1]["time"], &list[1]["source"]),
        (&1_733_580_060_000u64.into(), &"venue".into())
    );
    assert_eq!(list[1]["ticks"], 0, "{got}");
    assert!(list[2..].iter().all(|c| c["source"] == "engine"), "{got}");
    // One request a span (the later spans may still be read).
    assert!(wait(20, || asked.load(Ordering::SeqCst) >= 6));
    assert_eq!(asked.load(Ordering::SeqCst), 6, "one request a span");
    // --no-backfill: the engine's candles alone, and the venue is not asked.
    let (_off, addr) = serve("b", &["--backfill-url", &rest, "--no-backfill"]);
    assert!(wait(30, || !sources(&candles(&addr)).is_empty()), "{}", candles(&addr));
    let got = candles(&addr);
    assert!(got["venue"].is_null() && sources(&got).iter().all(|s| s == "engine"), "{got}");
    assert_eq!(asked.load(Ordering::SeqCst), 6);
    drop(runtime);
}
