//! The bridge against a real `redis-server` that the test starts itself (a free port, a temp dir,
//! no persistence, killed on drop). Needs the `redis-server` binary: `apt-get install
//! redis-server` (CI installs it).

use std::time::{Duration, Instant};

use engine_core::prelude::*;
use redis_bridge::bridge::{
    DEAD_LETTER_STREAM, EngineBridgeConfig, RedisEngineClient, run_engine_bridge,
};
use redis_bridge::test_support::RedisServer;
use redis_bridge::{ENGINE_STREAM, PRICE_STREAM, wire};

fn redis() -> (RedisServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (RedisServer::start(dir.path()), dir)
}

async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap()
}

async fn start_engine(url: &str) -> (EngineHandle, tokio::sync::oneshot::Sender<()>) {
    let handle = EngineHandle::start(EngineConfig::default()).unwrap();
    let events = handle.subscribe(Subscription::Events, 1024);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(run_engine_bridge(
        EngineBridgeConfig::new(url),
        handle.submitter(),
        events,
        async {
            let _ = stopped.await;
        },
    ));
    (handle, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_and_replies_flow_through_redis_to_each_api_instance() {
    let (redis, _dir) = redis();
    let (_engine, _stop) = start_engine(&redis.url).await;
    let t = Duration::from_secs(5);
    let a = RedisEngineClient::connect(&redis.url, "api-1", 1 << 40, t).await.unwrap();
    let b = RedisEngineClient::connect(&redis.url, "api-2", 2 << 40, t).await.unwrap();

    let login = Login::new("a@x").unwrap();
    let r = a
        .send_request_and_wait(CommandKind::CreateAccount {
            login,
            credential: Credential::empty(),
        })
        .await
        .unwrap();
    let Ok(ReplyData::AccountCreated { account }) = r.result else { panic!("{r:?}") };

    // A price through price-stream, as `hundredx feed` writes it.
    let tick = Tick {
        market: MarketId(0),
        bid: Price(6_000_000),
        ask: Price(6_000_000),
        update_id: 1,
        exchange_time_us: 0,
    };
    let _: () = redis::cmd("XADD")
        .arg(PRICE_STREAM)
        .arg("*")
        .arg("data")
        .arg(wire::encode_tick(&tick))
        .query_async(&mut raw(&redis.url).await)
        .await
        .unwrap();
    let open = OpenRequest {
        account,
        market: MarketId(0),
        side: Side::Long,
        leverage: 10,
        size: Size::Margin(Usdc::from_whole(100)),
        expected_price: None,
        max_slippage_bps: 0,
        take_profit: None,
        stop_loss: None,
        client_order_id: None,
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let opened = loop {
        let r = a.send_request_and_wait(CommandKind::OpenPosition(open)).await.unwrap();
        match r.result {
            Ok(ReplyData::Opened(v)) => break v,
            Err(Reason::NoPrice) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(opened.entry_price, Price(6_000_000));

    // Both instances at once: each gets exactly its own replies.
    let (ra, rb) = tokio::join!(
        a.send_request_and_wait(CommandKind::QueryPositions {
            account,
            status: PositionStatus::Open
        }),
        b.send_request_and_wait(CommandKind::QueryAccount { account }),
    );
    assert!(
        matches!(ra.unwrap(), Response { result: Ok(ReplyData::List { count: 1 }), ref items, .. } if items.len() == 1)
    );
    assert!(matches!(b_result(rb.unwrap()), Ok(ReplyData::Account(_))));
    let closed = b
        .send_request_and_wait(CommandKind::ClosePosition {
            account,
            position: opened.id,
            quantity: None,
            key: None,
        })
        .await
        .unwrap();
    assert!(matches!(closed.result, Ok(ReplyData::Closed(_))));
    assert_eq!((a.in_flight(), b.in_flight()), (0, 0));
    assert_eq!(a.late_replies() + b.late_replies(), 0, "no instance saw another's reply");
}

fn b_result(r: Response) -> Result<ReplyData, Reason> {
    r.result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_entries_get_an_error_reply_go_to_dead_letter_and_do_not_stop_the_engine() {
    let (redis, _dir) = redis();
    let (_engine, _stop) = start_engine(&redis.url).await;
    let mut con = raw(&redis.url).await;
    for junk in [
        "not json",
        r#"{"id":"77","reply_to":"callback-queue:probe","kind":"Explode","payload":{}}"#,
        r#"{"id":"78","reply_to":"callback-queue:probe","kind":"Deposit","payload":{"account":1}}"#,
    ] {
        let _: () = redis::cmd("XADD")
            .arg(ENGINE_STREAM)
            .arg("*")
            .arg("data")
            .arg(junk)
            .query_async(&mut con)
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let dead: usize =
            redis::cmd("XLEN").arg(DEAD_LETTER_STREAM).query_async(&mut con).await.unwrap();
        let replies: usize =
            redis::cmd("XLEN").arg("callback-queue:probe").query_async(&mut con).await.unwrap();
        if dead == 3 && replies == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "dead letters {dead}, error replies {replies}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let replies: Vec<redis::Value> = redis::cmd("XRANGE")
        .arg("callback-queue:probe")
        .arg("-")
        .arg("+")
        .query_async(&mut con)
        .await
        .unwrap();
    let text = format!("{replies:?}");
    assert!(
        text.contains("invalid_request") && text.contains("77") && text.contains("78"),
        "{text}"
    );
    // The engine still serves.
    let c = RedisEngineClient::connect(&redis.url, "api-1", 1 << 40, Duration::from_secs(5))
        .await
        .unwrap();
    let r = c.send_request_and_wait(CommandKind::QueryMarkets).await.unwrap();
    assert!(matches!(r.result, Ok(ReplyData::List { count: 3 })));
    // Everything is acknowledged (the ack follows the reply's XADD, so give it a moment).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pending: (u64, redis::Value, redis::Value, redis::Value) = redis::cmd("XPENDING")
            .arg(ENGINE_STREAM)
            .arg("engine")
            .query_async(&mut con)
            .await
            .unwrap();
        if pending.0 == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "entries left pending: {pending:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_after_its_timeout_does_not_leak_a_waiter() {
    let (redis, _dir) = redis();
    // No engine yet: the request times out; the engine starts later and answers it late.
    let c = RedisEngineClient::connect(&redis.url, "api-1", 1 << 40, Duration::from_millis(200))
        .await
        .unwrap();
    let r = c.send_request_and_wait(CommandKind::QueryMarkets).await;
    assert!(matches!(r, Err(redis_bridge::bridge::BridgeError::Timeout)), "{r:?}");
    assert_eq!(c.in_flight(), 0, "the waiter was removed on timeout");
    let (_engine, _stop) = start_engine(&redis.url).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.late_replies() == 0 {
        assert!(Instant::now() < deadline, "the late reply never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(c.in_flight(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poisoned_reply_to_is_dead_lettered_and_other_replies_flow() {
    let (redis, _dir) = redis();
    let (_engine, _stop) = start_engine(&redis.url).await;
    let mut con = raw(&redis.url).await;
    // A reply_to naming a key that is not a stream: every XADD to it fails with WRONGTYPE.
    let _: () = redis::cmd("SET")
        .arg("callback-queue:poison")
        .arg("x")
        .query_async(&mut con)
        .await
        .unwrap();
    let poisoned =
        r#"{"id":"91","reply_to":"callback-queue:poison","kind":"QueryMarkets","payload":null}"#;
    let _: () = redis::cmd("XADD")
        .arg(ENGINE_STREAM)
        .arg("*")
        .arg("data")
        .arg(poisoned)
        .query_async(&mut con)
        .await
        .unwrap();
    let client = RedisEngineClient::connect(&redis.url, "api-ok", 1 << 40, Duration::from_secs(5))
        .await
        .unwrap();
    for _ in 0..3 {
        let r = client.send_request_and_wait(CommandKind::QueryMarkets).await;
        assert!(r.is_ok(), "a poisoned reply blocked the others: {r:?}");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let dead: Vec<redis::Value> = redis::cmd("XRANGE")
            .arg(DEAD_LETTER_STREAM)
            .arg("-")
            .arg("+")
            .query_async(&mut con)
            .await
            .unwrap();
        if format!("{dead:?}").contains("callback-queue:poison") {
            break;
        }
        assert!(Instant::now() < deadline, "the poisoned reply was not dead-lettered: {dead:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
