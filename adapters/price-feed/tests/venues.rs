//! Every venue against a local mock of its protocol (127.0.0.1:0, no internet): its subscribe
//! frame, its fixture frames (written from its public documentation), a malformed frame, a
//! repeated (out-of-order) update, its keepalive answered its way (WebSocket ping, or OKX's
//! text `ping`), then a dropped connection: the client comes back and subscribes again.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Collect, mock, wait_until};
use engine_core::prelude::*;
use futures_util::{SinkExt, StreamExt};
use price_feed::Connector;
use price_feed::client::{ClientConfig, run};
use price_feed::health::FeedHealth;
use price_feed::venues;
use tokio_tungstenite::tungstenite::Message;

/// A venue's fixture: its frames, how many ticks they hold, the symbol mapping it needs, the
/// subscription its documentation asks for, and whether it keeps alive with a text `ping`.
struct Case {
    venue: &'static dyn Connector,
    fixture: &'static str,
    ticks: usize,
    symbols: &'static [(&'static str, &'static str)],
    subscribe: &'static str,
    text_ping: bool,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            venue: &venues::backpack::Backpack,
            fixture: include_str!("../test_data/backpack/book_ticker.jsonl"),
            ticks: include_str!("../test_data/backpack/book_ticker.jsonl").lines().count(),
            symbols: &[],
            subscribe: r#"{"method":"SUBSCRIBE","params":["bookTicker.BTC_USDC","bookTicker.ETH_USDC","bookTicker.SOL_USDC"]}"#,
            text_ping: false,
        },
        Case {
            venue: &venues::binance::Binance,
            fixture: include_str!("../test_data/binance/book_ticker.jsonl"),
            ticks: 3,
            symbols: &[],
            subscribe: r#"{"id":1,"method":"SUBSCRIBE","params":["btcusdc@bookTicker","ethusdc@bookTicker","solusdc@bookTicker"]}"#,
            text_ping: false,
        },
        Case {
            venue: &venues::okx::Okx,
            fixture: include_str!("../test_data/okx/bbo_tbt.jsonl"),
            ticks: 3,
            symbols: &[],
            subscribe: r#"{"args":[{"channel":"bbo-tbt","instId":"BTC-USDC"},{"channel":"bbo-tbt","instId":"ETH-USDC"},{"channel":"bbo-tbt","instId":"SOL-USDC"}],"op":"subscribe"}"#,
            text_ping: true,
        },
        Case {
            venue: &venues::coinbase::Coinbase,
            fixture: include_str!("../test_data/coinbase/ticker.jsonl"),
            ticks: 3,
            symbols: &[("BTC_USDC", "BTC-USD"), ("ETH_USDC", "ETH-USD")],
            subscribe: r#"{"channels":["ticker"],"product_ids":["BTC-USD","ETH-USD","SOL-USDC"],"type":"subscribe"}"#,
            text_ping: false,
        },
    ]
}

/// What the mock saw on each connection: the frames the client sent.
type Seen = Arc<Mutex<Vec<Vec<String>>>>;

/// Connection 0: reads the subscription, sends the fixture, a malformed frame and the last
/// tick again, checks the keepalive, then drops. Later connections: read the subscription and
/// stay.
async fn serve_venue(
    n: u64,
    mut ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    fixture: &'static str,
    text_ping: bool,
    seen: Seen,
) {
    let mut got = Vec::new();
    if let Some(Ok(Message::Text(t))) = ws.next().await {
        got.push(t.to_string());
    }
    seen.lock().unwrap().push(got.clone());
    if n > 0 {
        while let Some(Ok(_)) = ws.next().await {}
        return;
    }
    for line in fixture.lines() {
        ws.send(Message::text(line)).await.unwrap();
    }
    ws.send(Message::text("{not json")).await.unwrap();
    let last_tick = fixture.lines().last().unwrap();
    ws.send(Message::text(last_tick)).await.unwrap(); // a repeat: dropped by update id
    if !text_ping {
        ws.send(Message::Ping(vec![7].into())).await.unwrap();
    }
    // The keepalive, its way: a Pong to our Ping, or the venue's own text ping.
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
        let done = match &m {
            Message::Pong(p) => !text_ping && p.as_ref() == [7],
            Message::Text(t) => text_ping && t.as_str() == "ping",
            _ => false,
        };
        if let Message::Text(t) = &m {
            got.push(t.to_string());
        }
        if done {
            if text_ping {
                ws.send(Message::text("pong")).await.unwrap();
            }
            seen.lock().unwrap()[0] = got.clone();
            seen.lock().unwrap()[0].push("keepalive answered".into());
            break;
        }
    }
    // then drop the connection: the client must come back
}

#[tokio::test]
async fn every_venue_subscribes_streams_keeps_alive_and_comes_back() {
    for case in cases() {
        let name = case.venue.name();
        let seen: Seen = Arc::default();
        let log = Arc::clone(&seen);
        let (fixture, text_ping) = (case.fixture, case.text_ping);
        let (url, connections) =
            mock(move |n, ws| serve_venue(n, ws, fixture, text_ping, Arc::clone(&log))).await;
        let symbols: BTreeMap<String, String> =
            case.symbols.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect();
        let cfg = ClientConfig {
            backoff_initial: Duration::from_millis(20),
            backoff_max: Duration::from_millis(100),
            watchdog: Duration::from_secs(10),
            keepalive_period: Some(Duration::from_millis(100)),
            symbols,
            ..ClientConfig::new(&url, MarketConfig::defaults())
        };
        let health = FeedHealth::new(3);
        let sink = Collect::default();
        let ticks = Arc::clone(&sink.0);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let venue = case.venue;
        let task = tokio::spawn(async move {
            run(venue, cfg, Arc::clone(&health), sink, async {
                let _ = stopped.await;
            })
            .await;
            health
        });
        wait_until(&format!("{name}: a second connection"), || {
            connections.load(std::sync::atomic::Ordering::SeqCst) >= 2
                && seen.lock().unwrap().len() >= 2
        })
        .await;
        let _ = stop.send(());
        let health = task.await.unwrap();

        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen[0][0], case.subscribe, "{name}: the subscription");
        assert_eq!(seen[1][0], case.subscribe, "{name}: subscribed again after the drop");
        assert_eq!(
            seen[0].last().map(String::as_str),
            Some("keepalive answered"),
            "{name}: {seen:?}"
        );
        let ticks = ticks.lock().unwrap().clone();
        assert_eq!(ticks.len(), case.ticks, "{name}: {ticks:?}");
        assert!(ticks.iter().all(|t| t.bid.0 > 0 && t.ask >= t.bid), "{name}: {ticks:?}");
        let counters: BTreeMap<&str, u64> = health.counters().into_iter().collect();
        assert_eq!(counters["malformed"], 1, "{name}: {counters:?}");
        assert_eq!(counters["duplicates"], 1, "{name}: the repeated tick");
        assert!(counters["reconnects"] >= 1, "{name}: {counters:?}");
    }
}

/// Collects source quotes and clock checks.
#[derive(Clone, Default)]
struct Quotes {
    quotes: Arc<Mutex<Vec<(u8, Tick)>>>,
    checks: Arc<std::sync::atomic::AtomicU64>,
}

impl price_feed::sources::SourceSink for Quotes {
    fn quote(&mut self, source: SourceId, tick: Tick) {
        self.quotes.lock().unwrap().push((source.0, tick));
    }

    fn check(&mut self) {
        self.checks.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test]
async fn several_venues_run_at_once_each_quote_tagged_with_its_source() {
    let mut opts = price_feed::FeedOptions::new(MarketConfig::defaults());
    let mut sources = Vec::new();
    for case in cases().into_iter().filter(|c| ["binance", "okx"].contains(&c.venue.name())) {
        let fixture = case.fixture;
        let (url, _) = mock(move |_, mut ws| async move {
            let _subscribe = ws.next().await;
            for line in fixture.lines() {
                ws.send(Message::text(line)).await.unwrap();
            }
            while let Some(Ok(_)) = ws.next().await {}
        })
        .await;
        opts.urls.insert(case.venue.name().to_owned(), url);
        sources.push(price_feed::sources::Source { venue: case.venue, health: FeedHealth::new(3) });
    }
    let sink = Quotes::default();
    let (quotes, checks) = (Arc::clone(&sink.quotes), Arc::clone(&sink.checks));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn({
        let sources = sources.clone();
        async move {
            price_feed::run_sources(&sources, opts, sink, async {
                let _ = stopped.await;
            })
            .await
        }
    });
    wait_until("three quotes from each venue and a clock check", || {
        quotes.lock().unwrap().len() == 6 && checks.load(std::sync::atomic::Ordering::SeqCst) >= 1
    })
    .await;
    let _ = stop.send(());
    run.await.unwrap();
    let quotes = quotes.lock().unwrap().clone();
    let from = |s: u8| {
        quotes
            .iter()
            .filter(|(source, _)| *source == s)
            .map(|(_, t)| t.update_id)
            .collect::<Vec<_>>()
    };
    assert_eq!(from(0), [400_900_217, 400_900_218, 400_900_219], "binance is source 0");
    assert_eq!(from(1), [123, 124, 125], "okx is source 1");
    assert!(sources.iter().all(|s| s.health.ticks.load(std::sync::atomic::Ordering::Relaxed) == 3));
}
