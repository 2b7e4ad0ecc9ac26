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
use tracing::{info, warn};

/// `hundredx engine`: the engine with its journal, fed from `engine-stream` and `price-stream`.
pub fn engine(
    redis: &str,
    consumer: &str,
    cfg: EngineConfig,
    durability: &DurableOptions,
) -> Result<()> {
    let durable = DurableEngine::start(cfg, durability)?;
    let events = durable.handle.subscribe(Subscription::Events, 65_536);
    let mut bridge_cfg = EngineBridgeConfig::new(redis);
    bridge_cfg.consumer = consumer.to_owned();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let submitter = durable.handle.submitter();
    runtime.block_on(async move {
        info!(redis, consumer = %bridge_cfg.consumer, "engine: serving engine-stream");
        run_engine_bridge(bridge_cfg, submitter, events, async {
            let _ = tokio::signal::ctrl_c().await;
            info!("ctrl-c: shutting down");
        })
        .await
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
    redis: &str,
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
        let client =
            RedisEngineClient::connect(redis, &instance, id_base, api_cfg.limits.reply_timeout)
                .await?;
        let state = AppState::with_client(api_cfg, Arc::new(RedisApi(client)), None);
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        println!("hundredx api {instance} listening on http://{}", listener.local_addr()?);
        hundredx_http::serve(listener, state, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
        anyhow::Ok(())
    })
}

/// Publishes ticks to `price-stream` (trimmed), from any feed.
pub struct RedisSink(tokio::sync::mpsc::UnboundedSender<Tick>);

impl TickSink for RedisSink {
    fn publish(&mut self, tick: Tick) {
        let _ = self.0.send(tick);
    }
}

/// Starts the `price-stream` writer; returns the sink feeding it.
pub async fn redis_sink(redis: &str) -> Result<RedisSink> {
    let client = redis::Client::open(redis)?;
    let mut con = redis::aio::ConnectionManager::new(client).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Tick>();
    tokio::spawn(async move {
        while let Some(t) = rx.recv().await {
            let body = redis_bridge::wire::encode_tick(&t);
            let r: redis::RedisResult<()> = redis::cmd("XADD")
                .arg(redis_bridge::PRICE_STREAM)
                .arg("MAXLEN")
                .arg("~")
                .arg(100_000)
                .arg("*")
                .arg("data")
                .arg(body)
                .query_async(&mut con)
                .await;
            if let Err(e) = r {
                // A tick is superseded by the next one: log, do not queue forever.
                warn!(error = %e, "feed: price-stream write failed");
            }
        }
    });
    Ok(RedisSink(tx))
}

/// `hundredx feed --redis`: a feed writing `price-stream`.
pub fn feed(
    redis: &str,
    kind: &str,
    backpack_url: &str,
    markets: Vec<MarketConfig>,
    seed: u64,
) -> Result<()> {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async move {
        let mut sink = redis_sink(redis).await?;
        let health = FeedHealth::new(markets.len());
        match kind {
            "backpack" => {
                backpack_feed::client::run(
                    ClientConfig::new(backpack_url, markets),
                    Arc::clone(&health),
                    sink,
                    async {
                        let _ = tokio::signal::ctrl_c().await;
                    },
                )
                .await;
            }
            "synthetic" => {
                let mut f = backpack_feed::synthetic::SyntheticFeed::new(
                    backpack_feed::synthetic::SyntheticConfig { seed, ..Default::default() },
                    &markets,
                );
                let mut every = tokio::time::interval(Duration::from_millis(33));
                loop {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => break,
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
