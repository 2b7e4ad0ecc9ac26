//! The live client is venue-neutral: a made-up venue (two subscribe frames, a text keepalive,
//! its own frame shape) works through the same client, against a local mock server.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Collect, mock, wait_until};
use engine_core::prelude::*;
use futures_util::{SinkExt, StreamExt};
use price_feed::Connector;
use price_feed::client::{ClientConfig, run};
use price_feed::frame::{Frame, Markets, ParseError, QuoteFields, quote};
use price_feed::health::FeedHealth;
use tokio_tungstenite::tungstenite::Message;

/// Frames are `SYMBOL BID ASK ID`; one subscribe frame per market; it wants `"hb"` every 50 ms.
#[derive(Debug)]
struct Plain;

impl Connector for Plain {
    fn name(&self) -> &'static str {
        "plain"
    }

    fn default_url(&self) -> &'static str {
        "ws://unused"
    }

    fn subscribe(&self, markets: &Markets) -> Vec<String> {
        markets.symbols().map(|s| format!("sub {s}")).collect()
    }

    fn parse(&self, text: &str, markets: &Markets) -> Result<Frame, ParseError> {
        if text == "ok" {
            return Ok(Frame::Ack);
        }
        let parts: Vec<&str> = text.split(' ').collect();
        let [symbol, bid, ask, id] = parts[..] else {
            return Err(ParseError::Malformed(text.to_owned()));
        };
        let market =
            markets.get(symbol).ok_or_else(|| ParseError::UnknownSymbol(symbol.to_owned()))?;
        let id = id.parse().map_err(|_| ParseError::BadInteger("id"))?;
        let fields = QuoteFields { bid: "bid", ask: "ask" };
        quote(market, (Some(bid), Some(ask)), fields, id, 0).map(Frame::Tick)
    }

    fn keepalive(&self) -> Option<(Duration, String)> {
        Some((Duration::from_millis(50), "hb".to_owned()))
    }
}

#[tokio::test]
async fn any_connector_subscribes_its_way_keeps_alive_and_its_frames_become_ticks() {
    let received: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = Arc::clone(&received);
    let (url, _) = mock(move |_, mut ws| {
        let log = Arc::clone(&log);
        async move {
            for frame in ["ok", "BTC_USDC 62000.00 62000.50 7", "BTC_USDC 1.001 2 8", "x"] {
                ws.send(Message::text(frame)).await.unwrap();
            }
            ws.send(Message::text("ETH_USDC 3000.00 3000.10 9")).await.unwrap();
            while let Some(Ok(Message::Text(t))) = ws.next().await {
                log.lock().unwrap().push(t.to_string());
            }
        }
    })
    .await;
    let markets = MarketConfig::defaults();
    let cfg =
        ClientConfig { watchdog: Duration::from_secs(10), ..ClientConfig::new(&url, markets) };
    let health = FeedHealth::new(3);
    let sink = Collect::default();
    let ticks = Arc::clone(&sink.0);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(run(&Plain, cfg, Arc::clone(&health), sink, async {
        let _ = stopped.await;
    }));
    let beats = || received.lock().unwrap().iter().filter(|t| *t == "hb").count();
    wait_until("three keepalives", || beats() >= 3).await;
    wait_until("two ticks", || ticks.lock().unwrap().len() == 2).await;
    let _ = stop.send(());
    task.await.unwrap();

    let got = received.lock().unwrap().clone();
    assert_eq!(got[..3], ["sub BTC_USDC", "sub ETH_USDC", "sub SOL_USDC"], "{got:?}");
    let ticks = ticks.lock().unwrap().clone();
    assert_eq!(
        (ticks[0].market, ticks[0].bid, ticks[0].ask),
        (MarketId(0), Price(6_200_000), Price(6_200_050))
    );
    assert_eq!((ticks[1].market, ticks[1].update_id), (MarketId(1), 9));
    let errors: Vec<(&str, u64)> = health.counters().into_iter().filter(|(_, n)| *n > 0).collect();
    assert!(errors.contains(&("bad_price", 1)), "{errors:?}");
    assert!(errors.contains(&("malformed", 1)), "{errors:?}");
    assert!(errors.contains(&("ticks", 2)), "{errors:?}");
}
