//! The live client with the Backpack venue against a local mock WebSocket server on 127.0.0.1:0 (no internet): subscribe,
//! stream, ping, drop and reconnect, watchdog, refused handshakes with growing backoff, and an
//! end-to-end liquidation through the engine.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use engine_core::prelude::*;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
mod common;

use common::{Collect, mock, wait_until};
use price_feed::client::{ClientConfig, run};
use price_feed::health::FeedHealth;
use price_feed::sink::EngineSink;
use price_feed::venues::backpack::Backpack;
use tokio_tungstenite::tungstenite::Message;

fn frame(symbol: &str, bid: &str, ask: &str, u: u64) -> String {
    format!(
        r#"{{"stream":"bookTicker.{symbol}","data":{{"e":"bookTicker","E":{t},"s":"{symbol}","a":"{ask}","A":"1","b":"{bid}","B":"1","u":"{u}","T":{t}}}}}"#,
        t = 1_732_000_000_000_000u64 + u
    )
}

fn cfg(url: String) -> ClientConfig {
    ClientConfig {
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_millis(400),
        watchdog: Duration::from_millis(400),
        connect_timeout: Duration::from_secs(2),
        ..ClientConfig::new(&url, MarketConfig::defaults())
    }
}

/// What the server saw on one connection.
#[derive(Debug, Default, Clone)]
struct Seen {
    subscribe: Option<String>,
    pong: bool,
}

#[tokio::test]
async fn subscribes_streams_answers_pings_reconnects_and_resubscribes() {
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let log = Arc::clone(&seen);
    let (url, connections) = mock(move |n, mut ws| {
        let log = Arc::clone(&log);
        async move {
            let mut s = Seen::default();
            if let Some(Ok(Message::Text(t))) = ws.next().await {
                s.subscribe = Some(t.to_string());
            }
            ws.send(Message::text(r#"{"id":null,"result":null}"#)).await.unwrap();
            ws.send(Message::Ping(vec![1, 2, 3].into())).await.unwrap();
            let base = n * 10;
            for u in 1..=3 {
                ws.send(Message::text(frame("BTC_USDC", "62000.00", "62000.50", base + u)))
                    .await
                    .unwrap();
            }
            ws.send(Message::text(frame("BTC_USDC", "62000.00", "62000.50", base + 2)))
                .await
                .unwrap(); // duplicate
            ws.send(Message::text("garbage")).await.unwrap();
            ws.send(Message::Binary(vec![0xde, 0xad].into())).await.unwrap();
            ws.send(Message::text(r#"{"error":{"code":4006,"message":"bad"}}"#)).await.unwrap();
            // Read until the client's Pong arrives (it must, while it keeps reading).
            while let Ok(Some(Ok(m))) =
                tokio::time::timeout(Duration::from_secs(2), ws.next()).await
            {
                if matches!(m, Message::Pong(ref p) if p.as_ref() == [1, 2, 3]) {
                    s.pong = true;
                    break;
                }
            }
            log.lock().unwrap().push(s);
            if n == 0 {
                drop(ws); // drop the connection mid-stream: the client must come back
            } else {
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
        }
    })
    .await;
    let health = FeedHealth::new(3);
    let sink = Collect::default();
    let ticks = Arc::clone(&sink.0);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(run(&Backpack, cfg(url), Arc::clone(&health), sink, async {
        let _ = stopped.await;
    }));
    wait_until("two connections with their ticks", || ticks.lock().unwrap().len() >= 6).await;
    wait_until("both connections logged", || seen.lock().unwrap().len() >= 2).await;
    let _ = stop.send(());
    task.await.unwrap();

    let seen = seen.lock().unwrap().clone();
    for s in &seen {
        let sub: serde_json::Value = serde_json::from_str(s.subscribe.as_deref().unwrap()).unwrap();
        assert_eq!(sub["method"], "SUBSCRIBE");
        assert_eq!(
            sub["params"],
            serde_json::json!([
                "bookTicker.BTC_USDC",
                "bookTicker.ETH_USDC",
                "bookTicker.SOL_USDC"
            ])
        );
        assert!(s.pong, "the client answered the ping");
    }
    let ids: Vec<u64> = ticks.lock().unwrap().iter().map(|t| t.update_id).collect();
    assert_eq!(ids, vec![1, 2, 3, 11, 12, 13]);
    assert_eq!(ticks.lock().unwrap()[0].bid, Price(6_200_000));
    assert!(connections.load(Ordering::SeqCst) >= 2);
    assert!(health.reconnects.load(Ordering::SeqCst) >= 1);
    assert_eq!(health.duplicates.load(Ordering::SeqCst), 2);
    assert_eq!(health.parse_errors[0].load(Ordering::SeqCst), 2, "garbage counted as malformed");
    assert_eq!(health.parse_errors[8].load(Ordering::SeqCst), 2, "binary frames counted");
    assert_eq!(health.error_frames.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_silent_server_trips_the_watchdog() {
    let (url, connections) = mock(|_, mut ws| async move {
        let _ = ws.next().await; // the subscribe, then silence
        tokio::time::sleep(Duration::from_secs(30)).await;
    })
    .await;
    let health = FeedHealth::new(3);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task =
        tokio::spawn(run(&Backpack, cfg(url), Arc::clone(&health), Collect::default(), async {
            let _ = stopped.await;
        }));
    wait_until("a second connection after the watchdog", || {
        connections.load(Ordering::SeqCst) >= 2
    })
    .await;
    let _ = stop.send(());
    task.await.unwrap();
    assert!(health.watchdog_timeouts.load(Ordering::SeqCst) >= 1);
}

#[tokio::test]
async fn refused_handshakes_back_off_without_a_busy_loop() {
    // A TCP server that closes every connection at once: every handshake fails.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let attempts = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let log = Arc::clone(&attempts);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            log.lock().unwrap().push(Instant::now());
            drop(tcp);
        }
    });
    let health = FeedHealth::new(3);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = ClientConfig { backoff_max: Duration::from_secs(5), ..cfg(url) };
    let task =
        tokio::spawn(run(&Backpack, config, Arc::clone(&health), Collect::default(), async {
            let _ = stopped.await;
        }));
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    let _ = stop.send(());
    task.await.unwrap();
    let times = attempts.lock().unwrap().clone();
    // 50 ms doubling (with jitter, each wait in [d/2, d]): at most ~6 attempts in 1.6 s.
    assert!((2..=7).contains(&times.len()), "{} attempts", times.len());
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.last().unwrap() > gaps.first().unwrap(), "backoff grows: {gaps:?}");
    assert_eq!(health.connect_failures.load(Ordering::SeqCst), times.len() as u64);
    assert_eq!(health.connects.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_a_scripted_price_path_liquidates_exactly_at_the_crossing() {
    // The engine first, with a 10x long on BTC at 60 000.00 (liquidation price 54 271.36).
    let mut engine = EngineHandle::start(EngineConfig::default()).unwrap();
    let timeout = Duration::from_secs(5);
    let login = Login::new("t@x").unwrap();
    let Ok(ReplyData::AccountCreated { account }) = engine
        .call(1, CommandKind::CreateAccount { login, credential: Credential::empty() }, timeout)
        .unwrap()
        .result
    else {
        panic!("account")
    };
    engine
        .call(
            1,
            CommandKind::Deposit { account, amount: Usdc::from_whole(100_000), key: None },
            timeout,
        )
        .unwrap();
    let events = engine.subscribe(Subscription::Events, 64);

    // The scripted path: 60 000, then down one step at a time around the liquidation price.
    let path = ["60000.00", "55000.00", "54271.38", "54271.37", "54271.36", "54000.00"];
    let (url, _) = mock(move |_, mut ws| async move {
        let _ = ws.next().await;
        for (i, p) in path.iter().enumerate() {
            ws.send(Message::text(frame("BTC_USDC", p, p, i as u64 + 1))).await.unwrap();
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
    })
    .await;
    let health = FeedHealth::new(3);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = ClientConfig { watchdog: Duration::from_secs(10), ..cfg(url) };
    let task = tokio::spawn(run(
        &Backpack,
        config,
        Arc::clone(&health),
        EngineSink(engine.submitter(), Arc::clone(&health)),
        async {
            let _ = stopped.await;
        },
    ));
    wait_until("the first price", || health.ticks.load(Ordering::SeqCst) >= 1).await;
    let open = OpenRequest {
        account,
        market: MarketId(0),
        side: Side::Long,
        leverage: 10,
        size: Size::Quantity(Qty(100_000)),
        expected_price: None,
        max_slippage_bps: 0,
        take_profit: None,
        stop_loss: None,
        client_order_id: None,
    };
    let opened = engine.call(now(), CommandKind::OpenPosition(open), timeout).unwrap();
    let Ok(ReplyData::Opened(p)) = opened.result else { panic!("{opened:?}") };
    assert_eq!(p.liquidation_price, Price(5_427_136));
    let closed = tokio::task::spawn_blocking(move || events.recv_timeout(Duration::from_secs(10)))
        .await
        .unwrap()
        .unwrap();
    let Output::Event(Event::PositionClosed(v)) = closed else { panic!("{closed:?}") };
    let info = v.close.unwrap();
    assert_eq!((info.reason, info.exit_price), (CloseReason::Liquidation, Price(5_427_136)));
    assert_eq!(health.ticks.load(Ordering::SeqCst), 5, "liquidated on the 5th tick, not before");
    let _ = stop.send(());
    task.await.unwrap();
    drop(engine.shutdown());
}

fn now() -> u64 {
    u64::try_from(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos(),
    )
    .unwrap()
}
