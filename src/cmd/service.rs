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

use super::args::{DurabilityArgs, EdgeArgs, FeedKind, RedisArgs, jwt_secret};
use anyhow::bail;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct EngineArgs {
    #[command(flatten)]
    pub redis: RedisArgs,
    /// This engine's stable consumer name in the `engine` group.
    #[arg(long, default_value = "engine-1")]
    pub consumer: String,
    /// JSON configuration (markets, limits), as for serve.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// New accounts start with nothing (the demo balance is the engine's to give).
    #[arg(long)]
    pub no_demo_deposits: bool,
    #[command(flatten)]
    pub durability: DurabilityArgs,
}

#[derive(clap::Args, Debug)]
pub struct ApiArgs {
    #[command(flatten)]
    pub redis: RedisArgs,
    /// Address of the HTTP API.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// This instance's name: its replies come on `callback-queue:<instance>` (default: random).
    #[arg(long)]
    pub instance: Option<String>,
    /// A file holding the HS256 secret shared by every api instance (else HUNDREDX_JWT_SECRET;
    /// at least 16 bytes). Required in service mode.
    #[arg(long)]
    pub jwt_secret_file: Option<PathBuf>,
    /// JSON configuration (markets), as the engine's.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Disable `POST /user/deposit` (new accounts' demo balance: `engine --no-demo-deposits`).
    #[arg(long)]
    pub no_demo_deposits: bool,
    #[command(flatten)]
    pub edge: EdgeArgs,
}

/// `hundredx engine` from its flags.
pub fn run_engine(args: EngineArgs) -> Result<()> {
    let mut cfg = hundredx::config_file::load_engine(args.config.as_deref())?;
    cfg.demo_deposits &= !args.no_demo_deposits;
    let (target, key) = args.redis.link()?;
    engine(&target, key, &args.consumer, cfg, &args.durability.options())
}

/// `hundredx api` from its flags.
pub fn run_api(args: ApiArgs) -> Result<()> {
    let Some(jwt_secret) = jwt_secret(args.jwt_secret_file.as_deref())? else {
        bail!("service mode needs HUNDREDX_JWT_SECRET or --jwt-secret-file");
    };
    let cfg = hundredx::config_file::load_engine(args.config.as_deref())?;
    let mut api = ApiConfig::new(jwt_secret, cfg.markets);
    api.demo_deposits = !args.no_demo_deposits;
    api.limits = args.edge.limits(args.config.as_deref())?;
    let (target, key) = args.redis.link()?;
    api_main(&target, key, args.instance, args.listen, api)
}

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
pub fn api_main(
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
        let stop = hundredx::shutdown_signal();
        tokio::pin!(stop);
        let Some(client) = target.retry("api", connect, stop).await else {
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
    let stop = hundredx::shutdown_signal();
    tokio::pin!(stop);
    let Some(mut con) = target.retry("feed", connect, stop).await else {
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
    kind: &FeedKind,
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
            FeedKind::Backpack => {
                backpack_feed::client::run(
                    ClientConfig::new(backpack_url, markets),
                    Arc::clone(&health),
                    sink,
                    hundredx::shutdown_signal(),
                )
                .await;
            }
            FeedKind::Synthetic => {
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
                            if let Some(t) = f.next_tick(hundredx::now_ns() / 1_000) {
                                health.ticks.fetch_add(1, Ordering::Relaxed);
                                sink.publish(t);
                            }
                        }
                    }
                }
            }
            FeedKind::Replay(path) => {
                let n =
                    backpack_feed::client::replay(path, &markets, &health, &mut sink, true).await?;
                info!(ticks = n, "replay finished");
                tokio::time::sleep(Duration::from_millis(200)).await; // let the writer drain
            }
        }
        info!(ticks = health.ticks.load(Ordering::Relaxed), "feed stopped");
        anyhow::Ok(())
    })
}
