//! The bridge against a real `redis-server` that the test starts itself (a free port, a temp dir,
//! no persistence, killed on drop). Needs the `redis-server` binary: `apt-get install
//! redis-server` (CI installs it).

use ground::ports::EngineClient;
use std::time::{Duration, Instant};

use engine_core::prelude::*;
use std::sync::Arc;

use redis_bridge::bridge::{
    BridgeStats, DEAD_LETTER_STREAM, EngineBridgeConfig, run_engine_bridge,
};
use redis_bridge::client::RedisEngineClient;
use redis_bridge::entries::signed_xadd;
use redis_bridge::signing::BridgeKey;
use redis_bridge::target::RedisTarget;
use redis_bridge::test_support::RedisServer;
use redis_bridge::{ENGINE_STREAM, PRICE_STREAM, wire};

const SECRET: &[u8] = b"bridge-test-secret-0123456789abcdef";

fn key() -> BridgeKey {
    BridgeKey::new(SECRET).unwrap()
}

async fn client(url: &str, instance: &str, tag: u64, timeout: Duration) -> RedisEngineClient {
    RedisEngineClient::connect(&RedisTarget::new(url), key(), instance, tag << 40, timeout)
        .await
        .unwrap()
}

/// XADD as the bridge writes (signed with the shared secret).
async fn xadd_signed(con: &mut redis::aio::MultiplexedConnection, stream: &str, body: &str) {
    signed_xadd(&key(), stream, 1_000, body).query_async::<()>(con).await.unwrap();
}

/// XADD with arbitrary extra fields, as an attacker with write access to Redis could.
async fn xadd_raw(
    con: &mut redis::aio::MultiplexedConnection,
    stream: &str,
    fields: &[(&str, &str)],
) {
    let mut c = redis::cmd("XADD");
    c.arg(stream).arg("*");
    for (k, v) in fields {
        c.arg(*k).arg(*v);
    }
    c.query_async::<()>(con).await.unwrap();
}

fn redis() -> (RedisServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (RedisServer::start(dir.path()), dir)
}

async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap()
}

async fn start_engine(url: &str) -> (EngineHandle, tokio::sync::oneshot::Sender<()>) {
    let (handle, stop, _) = start_engine_with_stats(url).await;
    (handle, stop)
}

async fn start_engine_with_stats(
    url: &str,
) -> (EngineHandle, tokio::sync::oneshot::Sender<()>, Arc<BridgeStats>) {
    let handle = EngineHandle::start(EngineConfig::default()).unwrap();
    let events = handle.subscribe(Subscription::Events, 1024);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let cfg = EngineBridgeConfig::new(RedisTarget::new(url), key());
    let stats = Arc::clone(&cfg.stats);
    tokio::spawn(run_engine_bridge(cfg, handle.submitter(), events, async {
        let _ = stopped.await;
    }));
    (handle, stop, stats)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_and_replies_flow_through_redis_to_each_api_instance() {
    let (redis, _dir) = redis();
    let (_engine, _stop) = start_engine(&redis.url).await;
    let t = Duration::from_secs(5);
    let a = client(&redis.url, "api-1", 1, t).await;
    let b = client(&redis.url, "api-2", 2, t).await;

    let login = Login::new("a@x").unwrap();
    let r = a
        .call(CommandKind::CreateAccount { login, credential: Credential::empty() })
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
    xadd_signed(&mut raw(&redis.url).await, PRICE_STREAM, &wire::encode_tick(&tick)).await;
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
        let r = a.call(CommandKind::OpenPosition(open)).await.unwrap();
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
        a.call(CommandKind::QueryPositions { account, status: PositionStatus::Open }),
        b.call(CommandKind::QueryAccount { account }),
    );
    assert!(
        matches!(ra.unwrap(), Response { result: Ok(ReplyData::List { count: 1 }), ref items, .. } if items.len() == 1)
    );
    assert!(matches!(b_result(rb.unwrap()), Ok(ReplyData::Account(_))));
    let closed = b
        .call(CommandKind::ClosePosition {
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

/// The operator role and financing are the engine process's own: signed or not, they are
/// refused on engine-stream and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_only_commands_are_refused_on_the_stream() {
    let (redis, _dir) = redis();
    let (engine, _stop) = start_engine(&redis.url).await;
    let a = client(&redis.url, "api-1", 1, Duration::from_secs(5)).await;
    let login = Login::new("ops@x").unwrap();
    let created = a
        .call(CommandKind::CreateAccount { login, credential: Credential::empty() })
        .await
        .unwrap();
    assert!(matches!(created.result, Ok(ReplyData::AccountCreated { .. })));
    let before = engine.submitter().call(0, CommandKind::QueryStateHash, Duration::from_secs(5));
    for kind in [
        CommandKind::SetRole { login, admin: true },
        CommandKind::ChargeFinancing { market: MarketId(0), period: 1 },
    ] {
        let r = a.call(kind).await.unwrap();
        assert_eq!(r.result, Err(Reason::InvalidRequest), "{kind:?}");
    }
    let after = engine.submitter().call(0, CommandKind::QueryStateHash, Duration::from_secs(5));
    assert_eq!(before.unwrap().result, after.unwrap().result, "nothing changed");
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
        r#"{"id":"78","reply_to":"callback-queue:probe","kind":"deposit","payload":{"account":1}}"#,
    ] {
        xadd_signed(&mut con, ENGINE_STREAM, junk).await;
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
    let c = client(&redis.url, "api-1", 1, Duration::from_secs(5)).await;
    let r = c.call(CommandKind::QueryMarkets).await.unwrap();
    assert!(matches!(r.result, Ok(ReplyData::List { count: 3 })));
    // Everything is acknowledged (the ack follows the reply's XADD, so give it a moment).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pending = pending(&mut con).await;
        if pending == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{pending} entries left pending");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_after_its_timeout_does_not_leak_a_waiter() {
    let (redis, _dir) = redis();
    // No engine yet: the request times out; the engine starts later and answers it late.
    let c = client(&redis.url, "api-1", 1, Duration::from_millis(200)).await;
    let r = c.call(CommandKind::QueryMarkets).await;
    assert!(matches!(r, Err(ground::ports::PortError::Timeout)), "{r:?}");
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
        r#"{"id":"91","reply_to":"callback-queue:poison","kind":"query_markets","payload":null}"#;
    xadd_signed(&mut con, ENGINE_STREAM, poisoned).await;
    let client = client(&redis.url, "api-ok", 1, Duration::from_secs(5)).await;
    for _ in 0..3 {
        let r = client.call(CommandKind::QueryMarkets).await;
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

/// Entries of `engine-stream` delivered to the engine's group and not yet acknowledged.
async fn pending(con: &mut redis::aio::MultiplexedConnection) -> u64 {
    let summary: (u64, redis::Value, redis::Value, redis::Value) =
        redis::cmd("XPENDING").arg(ENGINE_STREAM).arg("engine").query_async(con).await.unwrap();
    summary.0
}

async fn balance(c: &RedisEngineClient, account: AccountId) -> Usdc {
    let r = c.call(CommandKind::QueryAccount { account }).await.unwrap();
    let Ok(ReplyData::Account(v)) = r.result else { panic!("{r:?}") };
    v.available
}

/// The entries of a stream as (id, [(field, value)]).
async fn entries(
    con: &mut redis::aio::MultiplexedConnection,
    stream: &str,
) -> Vec<(String, Vec<(String, String)>)> {
    let r: redis::streams::StreamRangeReply =
        redis::cmd("XRANGE").arg(stream).arg("-").arg("+").query_async(con).await.unwrap();
    r.ids
        .into_iter()
        .map(|e| {
            let mut f: Vec<(String, String)> = e
                .map
                .iter()
                .map(|(k, v)| (k.clone(), redis::from_redis_value(v.clone()).unwrap()))
                .collect();
            f.sort();
            (e.id, f)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_entries_are_dead_lettered_counted_and_change_nothing() {
    let (redis, _dir) = redis();
    let (_engine, _stop, stats) = start_engine_with_stats(&redis.url).await;
    let c = client(&redis.url, "api-1", 1, Duration::from_secs(5)).await;
    let mut con = raw(&redis.url).await;
    let r = c
        .call(CommandKind::CreateAccount {
            login: Login::new("victim@x").unwrap(),
            credential: Credential::empty(),
        })
        .await
        .unwrap();
    let Ok(ReplyData::AccountCreated { account }) = r.result else { panic!("{r:?}") };
    let start = balance(&c, account).await;
    let deposit = CommandKind::Deposit { account, amount: Usdc::from_whole(7), key: None };
    c.call(deposit).await.unwrap().result.unwrap();
    let before = balance(&c, account).await;
    assert_eq!(before, start.checked_add(Usdc::from_whole(7)).unwrap());

    // What an attacker with XADD rights on Redis could write.
    let forged = |id: u64| {
        let kind = CommandKind::Deposit { account, amount: Usdc::from_whole(1_000_000), key: None };
        wire::encode_request(RequestId(id), "callback-queue:forger", &kind)
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string();
    let wrong = BridgeKey::new(b"not the secret, though long enough").unwrap();
    let old_ts = "1000";
    let stale_sig = key().sign(ENGINE_STREAM, 1_000, &forged(903));
    let other_stream_sig = key().sign(PRICE_STREAM, now_ms.parse().unwrap(), &forged(904));
    xadd_raw(&mut con, ENGINE_STREAM, &[("data", &forged(901))]).await;
    let wrong_sig = wrong.sign(ENGINE_STREAM, now_ms.parse().unwrap(), &forged(902));
    xadd_raw(
        &mut con,
        ENGINE_STREAM,
        &[("data", &forged(902)), ("ts", &now_ms), ("sig", &wrong_sig)],
    )
    .await;
    xadd_raw(
        &mut con,
        ENGINE_STREAM,
        &[("data", &forged(903)), ("ts", old_ts), ("sig", &stale_sig)],
    )
    .await;
    xadd_raw(
        &mut con,
        ENGINE_STREAM,
        &[("data", &forged(904)), ("ts", &now_ms), ("sig", &other_stream_sig)],
    )
    .await;
    // A Redis reader copies the victim's genuine, signed deposit and writes it again.
    let genuine = entries(&mut con, ENGINE_STREAM)
        .await
        .into_iter()
        .find(|(_, f)| f.iter().any(|(k, v)| k == "data" && v.contains("\"deposit\"")))
        .expect("the genuine deposit is in engine-stream");
    let copy: Vec<(&str, &str)> = genuine.1.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    xadd_raw(&mut con, ENGINE_STREAM, &copy).await;
    // And a forged price that would move the market.
    let tick = Tick {
        market: MarketId(0),
        bid: Price(1),
        ask: Price(2),
        update_id: 99,
        exchange_time_us: 0,
    };
    xadd_raw(&mut con, PRICE_STREAM, &[("data", &wire::encode_tick(&tick))]).await;

    let deadline = Instant::now() + Duration::from_secs(10);
    while stats.refused() < 6 {
        assert!(Instant::now() < deadline, "refused so far: {stats:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(
        (
            stats.unsigned.load(Relaxed),
            stats.bad_signature.load(Relaxed),
            stats.stale.load(Relaxed),
            stats.replayed.load(Relaxed),
        ),
        (2, 2, 1, 1),
        "unsigned request + unsigned tick, wrong key + wrong stream, old, copied"
    );
    assert_eq!(balance(&c, account).await, before, "no forged deposit applied");
    let r = c.call(CommandKind::QueryMarkets).await.unwrap();
    assert!(r.items.iter().all(|i| !format!("{i:?}").contains("bid: Price(1)")), "{r:?}");
    let dead = entries(&mut con, DEAD_LETTER_STREAM).await;
    assert_eq!(dead.len(), 6, "{dead:?}");
    let causes: Vec<&str> = dead
        .iter()
        .flat_map(|(_, f)| f.iter().filter(|(k, _)| k == "error").map(|(_, v)| v.as_str()))
        .collect();
    assert_eq!(
        causes,
        ["unsigned", "bad_signature", "stale", "bad_signature", "replayed", "unsigned"]
    );
    let forger_replies: usize =
        redis::cmd("XLEN").arg("callback-queue:forger").query_async(&mut con).await.unwrap();
    assert_eq!(forger_replies, 0, "a forged entry gets no reply (its reply_to is the forger's)");
    assert_eq!(pending(&mut con).await, 0, "refused entries are acknowledged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_reply_is_dropped_and_the_genuine_one_still_arrives() {
    let (redis, _dir) = redis();
    let c = Arc::new(client(&redis.url, "api-1", 1, Duration::from_secs(10)).await);
    let mut con = raw(&redis.url).await;
    // No engine yet: the request waits while the forger answers it first.
    let waiting = {
        let c = Arc::clone(&c);
        tokio::spawn(async move { c.call(CommandKind::QueryMarkets).await })
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let request = loop {
        if let Some((_, f)) = entries(&mut con, ENGINE_STREAM).await.pop() {
            break f.into_iter().find(|(k, _)| k == "data").unwrap().1;
        }
        assert!(Instant::now() < deadline, "the request never reached engine-stream");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let id = wire::decode_request(&request).unwrap().id;
    let fake = wire::encode_reply(&Response {
        request_id: id,
        result: Ok(ReplyData::List { count: 0 }),
        items: vec![],
        seq: 0,
    });
    let wrong = BridgeKey::new(b"not the secret, though long enough").unwrap();
    xadd_raw(&mut con, "callback-queue:api-1", &[("data", &fake)]).await;
    let ts = "1";
    let sig = wrong.sign("callback-queue:api-1", 1, &fake);
    xadd_raw(&mut con, "callback-queue:api-1", &[("data", &fake), ("ts", ts), ("sig", &sig)]).await;
    // Signed by us, but for another stream: not a reply to this instance.
    let sig = key().sign("callback-queue:api-2", 1, &fake);
    xadd_raw(&mut con, "callback-queue:api-1", &[("data", &fake), ("ts", ts), ("sig", &sig)]).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while c.refused_replies() < 3 {
        assert!(Instant::now() < deadline, "refused {}", c.refused_replies());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!waiting.is_finished(), "a forged reply was taken");
    let (_engine, _stop) = start_engine(&redis.url).await;
    let r = waiting.await.unwrap().unwrap();
    assert!(matches!(r.result, Ok(ReplyData::List { count: 3 })), "the engine's own reply: {r:?}");
    assert_eq!(c.refused_replies(), 3);
}

/// Service mode with several venues (`hundredx feed --redis --feed a,b,c`): each venue's quote
/// through `price-stream` becomes the engine's `SourceQuote`, the clock its `SourceCheck`; a
/// print far from the other two is left out of the index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_quotes_through_price_stream_make_the_index() {
    let (redis, _dir) = redis();
    let mut cfg = EngineConfig::default();
    cfg.markets[0].sources = 3;
    let handle = EngineHandle::start(cfg).unwrap();
    let events = handle.subscribe(Subscription::Events, 1024);
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let bridge = EngineBridgeConfig::new(RedisTarget::new(&redis.url), key());
    tokio::spawn(run_engine_bridge(bridge, handle.submitter(), events, async {
        let _ = stopped.await;
    }));
    let mut con = raw(&redis.url).await;
    let quote = |source: u8, bid: i64, u: u64| {
        let tick = Tick {
            market: MarketId(0),
            bid: Price(bid),
            ask: Price(bid),
            update_id: u,
            exchange_time_us: 0,
        };
        wire::encode_price(&wire::PriceEntry::Quote(SourceId(source), tick))
    };
    for (source, bid) in [(0, 6_000_000), (1, 6_000_000), (2, 3_000_000)] {
        xadd_signed(&mut con, PRICE_STREAM, &quote(source, bid, 1)).await;
    }
    xadd_signed(&mut con, PRICE_STREAM, &wire::encode_price(&wire::PriceEntry::Check)).await;
    let mut submitter = handle.submitter();
    let deadline = Instant::now() + Duration::from_secs(5);
    let (bid, sources) = loop {
        let r = submitter
            .call(ground::time::now_ns(), CommandKind::QueryMarkets, Duration::from_secs(2))
            .unwrap();
        let bid = r.items.iter().find_map(|i| match i {
            Item::Market(m) if m.market == MarketId(0) => Some(m.bid),
            _ => None,
        });
        let sources = r.items.iter().find_map(|i| match i {
            Item::MarketSources { fresh, agreeing, .. } => Some((*fresh, *agreeing)),
            _ => None,
        });
        if sources == Some((3, 2)) || Instant::now() > deadline {
            break (bid, sources);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(sources, Some((3, 2)), "three quotes in, the third left out");
    assert_eq!(bid, Some(Price(6_000_000)), "the index is the two that agree");
}
