//! Service mode: `hundredx engine | api | feed --redis URL`, three processes talking through Redis
//! streams (DESIGN.md, "Redis-bridged protocol").

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result};
use backpack_feed::client::{ClientConfig, FeedHealth, TickSink};
use engine_core::prelude::*;
use hundredx::{DurableEngine, DurableOptions, RedisApi};
use hundredx_http::{ApiConfig, AppState};
use redis_bridge::bridge::{EngineBridgeConfig, RedisEngineClient, run_engine_bridge};
use redis_bridge::signing::BridgeKey;
use redis_bridge::target::RedisTarget;
use tracing::{info, warn};

/// `hundredx engine`: the engine with its journal, fed from `engine-stream` and `price-stream`.
pub fn engine(
    target: &RedisTarget,
    key: BridgeKey,
    consumer: &str,
    cfg: EngineConfig,
    durability: &DurableOptions,
) -> Result<()> {
    let durable = DurableEngine::start(cfg, durability)?;
    let events = durable.handle.subscribe(Subscription::Events, 65_536);
    let mut bridge_cfg = EngineBridgeConfig::new(target.clone(), key);
    bridge_cfg.consumer = consumer.to_owned();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let submitter = durable.handle.submitter();
    runtime.block_on(async move {
        info!(redis = %target.redacted(), consumer = %bridge_cfg.consumer, "engine: serving engine-stream");
        run_engine_bridge(bridge_cfg, submitter, events, hundredx::shutdown_signal()).await
    })?;
    // The bridge's event copier is a blocking task waiting on engine events until the engine
    // stops, which happens below: do not wait for it here.
    runtime.shutdown_timeout(Duration::from_secs(1));
    let (state, last_seq) = durable.shutdown()?;
    info!(last_seq, state_hash = %engine_core::hash::hex(&state.state_hash()), "engine stopped cleanly");
    Ok(())
}

fn random_u64() -> Result<u64> {
    use std::io::Read;
    let mut b = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .context("reading /dev/urandom")?;
    Ok(u64::from_le_bytes(b))
}

/// `hundredx api`: the HTTP API, reaching the engine through Redis. Several may run at once.
pub fn api(
    target: &RedisTarget,
    key: BridgeKey,
    instance: Option<String>,
    listen: std::net::SocketAddr,
    api_cfg: ApiConfig,
) -> Result<()> {
    let tag = random_u64()?;
    let instance = instance.unwrap_or_else(|| format!("api-{:06x}", tag & 0xff_ffff));
    // Request ids: a random 23-bit instance tag above a 40-bit counter, never 0.
    let id_base = ((tag & 0x7f_ffff) | 1) << 40;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async move {
        let timeout = api_cfg.limits.reply_timeout;
        let connect =
            || RedisEngineClient::connect(target, key.clone(), &instance, id_base, timeout);
        let Some(client) = retry_until_connected(target, "api", connect).await else {
            return Ok(());
        };
        let state = AppState::with_client(api_cfg, Arc::new(RedisApi(client)), None);
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        println!("hundredx api {instance} listening on http://{}", listener.local_addr()?);
        hundredx_http::serve(listener, state, hundredx::shutdown_signal()).await?;
        anyhow::Ok(())
    })
}

/// Calls `connect` until it succeeds (backoff 100 ms doubling to 10 s, each failure logged with
/// the redacted URL) or a shutdown signal arrives (`None`): a Redis that starts after us, or
/// restarts, is waited for, and Ctrl-C / SIGTERM still stop us meanwhile.
async fn retry_until_connected<
    T,
    E: std::fmt::Display,
    F: std::future::Future<Output = Result<T, E>>,
>(
    target: &RedisTarget,
    who: &str,
    mut connect: impl FnMut() -> F,
) -> Option<T> {
    let mut backoff = Duration::from_millis(100);
    let stop = hundredx::shutdown_signal();
    tokio::pin!(stop);
    loop {
        match connect().await {
            Ok(c) => return Some(c),
            Err(e) => {
                warn!(who, redis = %target.redacted(), error = %e, retry_in = ?backoff, "Redis unreachable");
            }
        }
        tokio::select! {
            () = &mut stop => return None,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// Publishes ticks to `price-stream` (trimmed), from any feed.
pub struct RedisSink(tokio::sync::mpsc::UnboundedSender<Tick>);

impl TickSink for RedisSink {
    fn publish(&mut self, tick: Tick) {
        let _ = self.0.send(tick);
    }
}

/// Starts the `price-stream` writer (signed entries); returns the sink feeding it, or `None` if
/// a shutdown signal came while Redis was unreachable.
pub async fn redis_sink(target: &RedisTarget, key: BridgeKey) -> Result<Option<RedisSink>> {
    let client = target.client()?;
    let connect = || redis::aio::ConnectionManager::new(client.clone());
    let Some(mut con) = retry_until_connected(target, "feed", connect).await else {
        return Ok(None);
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Tick>();
    tokio::spawn(async move {
        while let Some(t) = rx.recv().await {
            let body = redis_bridge::wire::encode_tick(&t);
            let r: redis::RedisResult<()> =
                redis_bridge::bridge::signed_xadd(&key, redis_bridge::PRICE_STREAM, 100_000, &body)
                    .query_async(&mut con)
                    .await;
            if let Err(e) = r {
                // A tick is superseded by the next one: log, do not queue forever.
                warn!(error = %e, "feed: price-stream write failed");
            }
        }
    });
    Ok(Some(RedisSink(tx)))
}

/// `hundredx feed --redis`: a feed writing `price-stream`.
pub fn feed(
    target: &RedisTarget,
    key: BridgeKey,
    kind: &str,
    backpack_url: &str,
    markets: Vec<MarketConfig>,
    seed: u64,
) -> Result<()> {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async move {
        let Some(mut sink) = redis_sink(target, key).await? else { return Ok(()) };
        let health = FeedHealth::new(markets.len());
        match kind {
            "backpack" => {
                backpack_feed::client::run(
                    ClientConfig::new(backpack_url, markets),
                    Arc::clone(&health),
                    sink,
                    hundredx::shutdown_signal(),
                )
                .await;
            }
            "synthetic" => {
                let mut f = backpack_feed::synthetic::SyntheticFeed::new(
                    backpack_feed::synthetic::SyntheticConfig { seed, ..Default::default() },
                    &markets,
                );
                let mut every = tokio::time::interval(Duration::from_millis(33));
                let stop = hundredx::shutdown_signal();
                tokio::pin!(stop);
                loop {
                    tokio::select! {
                        () = &mut stop => break,
                        _ = every.tick() => {
                            if let Some(t) = f.next_tick(crate::now_ns() / 1_000) {
                                health.ticks.fetch_add(1, Ordering::Relaxed);
                                sink.publish(t);
                            }
                        }
                    }
                }
            }
            other => match other.strip_prefix("replay:") {
                Some(path) => {
                    let n = backpack_feed::client::replay(
                        std::path::Path::new(path),
                        &markets,
                        &health,
                        &mut sink,
                        true,
                    )
                    .await?;
                    info!(ticks = n, "replay finished");
                    tokio::time::sleep(Duration::from_millis(200)).await; // let the writer drain
                }
                None => anyhow::bail!(
                    "unknown feed {other:?}: expected backpack, synthetic or replay:FILE"
                ),
            },
        }
        info!(ticks = health.ticks.load(Ordering::Relaxed), "feed stopped");
        anyhow::Ok(())
    })
}
