//! Candle backfill against a local mock of each venue's kline endpoint (127.0.0.1:0), serving
//! recorded-shape fixtures written from each venue's documentation: the documented request
//! (path, symbol, interval names, Backpack's start time, Coinbase's granularities), the body's
//! shape made into exact candles oldest first, and a failing, malformed or oversized answer
//! failing its market and span only.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{RawQuery, Request};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use engine_core::config::MarketConfig;
use engine_core::num::Price;
use price_feed::backfill::{BackfillError, fetch};
use price_feed::klines::BACKFILL_BODY_BYTES_MAX;
use price_feed::venues;

const NOW_MS: u64 = 1_733_580_180_000;

fn fixture(venue: &str) -> String {
    let path = format!("{}/test_data/{venue}/klines.json", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(path).unwrap()
}

/// A kline server answering every request with `answer(path and query)`, recording each.
async fn server(
    answer: impl Fn(&str) -> (StatusCode, String) + Clone + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let app = axum::Router::new().fallback(move |RawQuery(q): RawQuery, req: Request| {
        let answer = answer.clone();
        let log = Arc::clone(&log);
        async move {
            let url = format!("{}?{}", req.uri().path(), q.unwrap_or_default());
            log.lock().unwrap().push(url.clone());
            answer(&url).into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

fn btc() -> Vec<MarketConfig> {
    vec![MarketConfig::new("BTC_USDC", 2, 5)]
}

#[tokio::test]
async fn every_venue_is_asked_its_documented_way_and_its_candles_are_exact_oldest_first() {
    // (venue, the 1m request it must make, the second candle's start)
    let cases = [
        ("binance", "/api/v3/klines?symbol=BTCUSDC&interval=1m&limit=300", 1_733_580_060_000),
        ("okx", "/api/v5/market/candles?instId=BTC-USDC&bar=1m&limit=300", 1_733_580_060_000),
        ("coinbase", "/products/BTC-USDC/candles?granularity=60", 1_733_580_060_000),
        // 300 minutes before NOW_MS, in seconds; the empty 14:01 candle is skipped.
        (
            "backpack",
            "/api/v1/klines?symbol=BTC_USDC&interval=1m&startTime=1733562180",
            1_733_580_120_000,
        ),
    ];
    for (name, request, second) in cases {
        let venue = venues::by_name(name).unwrap();
        let body = fixture(name);
        let (url, seen) = server(move |_| (StatusCode::OK, body.clone())).await;
        let got = fetch(venue, &url, (&btc(), &BTreeMap::new()), 300, NOW_MS).await;
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen[0], request, "{name}");
        let spans: Vec<&str> = got.iter().map(|b| b.span).collect();
        let want: &[&str] = if name == "coinbase" {
            &["1m", "5m", "15m", "1h", "1d"] // no 4-hour granularity
        } else {
            &["1m", "5m", "15m", "1h", "4h", "1d"]
        };
        assert_eq!(spans, want, "{name}");
        assert_eq!(seen.len(), want.len(), "{name}: one request a span");
        let candles = got[0].candles.as_ref().unwrap();
        assert_eq!(candles.len(), 2, "{name}");
        let (a, b) = (candles[0], candles[1]);
        assert_eq!(a.start_ms, 1_733_580_000_000, "{name}");
        assert_eq!(
            (a.open, a.high, a.low, a.close),
            (Price(6_000_000), Price(6_001_050), Price(5_999_000), Price(6_000_525)),
            "{name}"
        );
        assert_eq!((b.start_ms, b.close), (second, Price(6_001_500)), "{name}");
    }
    let okx = |span: &str| {
        venues::by_name("okx")
            .and_then(|v| v.klines())
            .and_then(|k| k.path("BTC-USDC", span, 0, 10, 0))
            .unwrap()
    };
    assert!(okx("1h").contains("bar=1H") && okx("4h").contains("bar=4H"));
    assert!(okx("1d").contains("bar=1Dutc"), "the daily bar aligned to UTC, as the engine's");
}

#[tokio::test]
async fn a_failing_malformed_or_oversized_answer_fails_its_span_only() {
    let binance = venues::by_name("binance").unwrap();
    let good = fixture("binance");
    let (url, _) = server(move |url| match url {
        u if u.contains("interval=5m") => (StatusCode::INTERNAL_SERVER_ERROR, "down".into()),
        u if u.contains("interval=15m") => (StatusCode::OK, r#"[[1,"x"]]"#.into()),
        u if u.contains("interval=1h") => (StatusCode::OK, "[".repeat(BACKFILL_BODY_BYTES_MAX + 1)),
        // More decimals than the market's: never a rounded price.
        u if u.contains("interval=4h") => {
            (StatusCode::OK, good.replace("60000.00000000", "60000.001"))
        }
        _ => (StatusCode::OK, good.clone()),
    })
    .await;
    let got = fetch(binance, &url, (&btc(), &BTreeMap::new()), 300, NOW_MS).await;
    let outcome = |span: &str| &got.iter().find(|b| b.span == span).unwrap().candles;
    assert_eq!(outcome("1m").as_ref().unwrap().len(), 2);
    assert!(matches!(outcome("5m"), Err(BackfillError::Request(_))), "{:?}", outcome("5m"));
    assert!(matches!(outcome("15m"), Err(BackfillError::Parse(_))), "{:?}", outcome("15m"));
    assert!(matches!(outcome("1h"), Err(BackfillError::TooLarge)), "{:?}", outcome("1h"));
    assert!(matches!(outcome("4h"), Err(BackfillError::Parse(_))), "{:?}", outcome("4h"));
    assert_eq!(outcome("1d").as_ref().unwrap().len(), 2, "the next span is read all the same");
    // Asking for fewer keeps the latest.
    let got = fetch(binance, &url, (&btc(), &BTreeMap::new()), 1, NOW_MS).await;
    let latest = got[0].candles.as_ref().unwrap();
    assert_eq!(latest.iter().map(|c| c.start_ms).collect::<Vec<_>>(), [1_733_580_060_000]);
}
