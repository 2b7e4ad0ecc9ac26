//! Service mode: `hundredx engine | api | feed --redis URL`, three processes talking through Redis
//! streams (docs/DESIGN.md, "Redis-bridged protocol").

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result};
use engine_core::prelude::*;
use hundredx::ReplicatedStage;
use hundredx::replication::log::RedisLog;
use hundredx::replication::node::{Node, Takeover};
use hundredx::replication::{ReplicationOptions, Shared, single};
use hundredx::{DurableEngine, DurableOptions};
use hundredx_http::{ApiConfig, AppState};
use price_feed::health::FeedHealth;
use price_feed::{FeedKind, FeedOptions};
use redis_bridge::bridge::{EngineBridgeConfig, run_engine_bridge};
use redis_bridge::client::RedisEngineClient;
use redis_bridge::signing::BridgeKey;
use redis_bridge::target::RedisTarget;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::args::{DurabilityArgs, EdgeArgs, RedisArgs, jwt_secret};
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
    /// Financing period, as for serve (the engine process runs the scheduler).
    #[arg(long, default_value_t = 28_800, value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub financing_interval_secs: u64,
    #[command(flatten)]
    pub replication: super::args::ReplicationArgs,
    /// Serve this engine's `/metrics` here (its counters; replicated, whether it leads and the
    /// last sequence it journaled). Off by default.
    #[arg(long)]
    pub metrics_listen: Option<std::net::SocketAddr>,
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
    /// The history store the `history` process writes (`postgres://…`; with a password, in
    /// HUNDREDX_HISTORY_DATABASE): closed positions and the statement are read there.
    #[arg(long = "history-database", env = "HUNDREDX_HISTORY_DATABASE", hide_env_values = true)]
    pub history_database: Option<String>,
    /// A venue (`backpack`, `binance`, `okx`, `coinbase`) whose recent candles fill the chart
    /// before the engine's own, read once at start from its public kline endpoint (none by
    /// default: an api process reaches no venue unless told to).
    #[arg(long)]
    pub backfill: Option<String>,
    /// That venue's REST endpoint instead of its public one (a local server can stand in).
    #[arg(long, requires = "backfill")]
    pub backfill_url: Option<String>,
    /// The venue's symbol for an engine market where its default is not right, comma-separated
    /// `ENGINE=VENUE` pairs, as `hundredx feed` takes them.
    #[arg(long, value_delimiter = ',', value_parser = super::args::symbol_pair)]
    pub feed_symbols: Vec<(String, String)>,
}

/// `hundredx engine` from its flags.
pub fn run_engine(args: EngineArgs) -> Result<()> {
    let mut cfg = hundredx::config_file::load_engine(args.config.as_deref())?;
    cfg.demo_deposits &= !args.no_demo_deposits;
    let (target, key) = args.redis.link()?;
    let financing = Duration::from_secs(args.financing_interval_secs);
    let r = &args.replication;
    let ha = r.options(&target, &key, &args.consumer, !args.durability.keep_journal)?;
    let single_lease = Duration::from_millis(r.lease_ms);
    let opts = EngineOptions {
        consumer: &args.consumer,
        financing,
        ha,
        single_lease,
        metrics_listen: args.metrics_listen,
    };
    engine(&target, key, cfg, &args.durability.options(), opts)
}

/// How `hundredx engine` runs, besides Redis, its configuration and its data directory.
#[derive(Debug)]
pub struct EngineOptions<'a> {
    /// Its consumer name in the `engine` group (and its node name when replicated).
    pub consumer: &'a str,
    /// Financing period.
    pub financing: Duration,
    /// Replicated mode, if on.
    pub ha: Option<ReplicationOptions>,
    /// The lease a plain (not replicated) engine holds while it serves.
    pub single_lease: Duration,
    /// Where its `/metrics` is served, if anywhere.
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// `hundredx api` from its flags.
pub fn run_api(args: ApiArgs) -> Result<()> {
    let Some(jwt_secret) = jwt_secret(args.jwt_secret_file.as_deref())? else {
        bail!("service mode needs HUNDREDX_JWT_SECRET or --jwt-secret-file");
    };
    let cfg = hundredx::config_file::load_engine(args.config.as_deref())?;
    let mut api = ApiConfig::new(jwt_secret, cfg.markets);
    api.set_groups(&cfg.groups);
    api.demo_deposits = !args.no_demo_deposits;
    api.limits = args.edge.limits(args.config.as_deref())?;
    let (target, key) = args.redis.link()?;
    let history =
        args.history_database.as_deref().map(super::args::check_database_url).transpose()?;
    let backfill = match args.backfill.as_deref() {
        None => None,
        Some(name) => {
            let Some(venue) = price_feed::venues::by_name(name) else {
                bail!("--backfill {name:?}: not a venue");
            };
            let url = args.backfill_url.as_deref();
            let Some(source) = super::backfill::endpoint(venue, url) else {
                bail!("--backfill {name}: the venue has no candles")
            };
            Some((source, args.feed_symbols.iter().cloned().collect()))
        }
    };
    let opts = ApiOptions { instance: args.instance, listen: args.listen, history, backfill };
    api_main(&target, key, api, opts)
}

/// How `hundredx api` runs, besides Redis and its API configuration.
#[derive(Debug)]
pub struct ApiOptions {
    /// Its instance name (default: random).
    pub instance: Option<String>,
    /// Where it listens.
    pub listen: std::net::SocketAddr,
    /// The history store to read, if any.
    pub history: Option<String>,
    /// A venue and its REST endpoint to fill the chart's past from, with symbol overrides.
    pub backfill: Option<Backfill>,
}

/// A venue, its REST endpoint, and the venue's symbol per engine symbol where not the default.
pub type Backfill =
    ((&'static dyn price_feed::Connector, String), std::collections::BTreeMap<String, String>);

/// `hundredx engine`: the engine with its journal, fed from `engine-stream` and `price-stream`,
/// publishing its state changes to `engine-events` exactly once (see
/// `redis_bridge::changes`). Redis comes first: the last change published decides where
/// recovery starts, so that what a crash kept from Redis is published now.
///
/// With `ha` (replicated mode) the engine first follows `engine-journal` as a standby and
/// serves `engine-stream` only once it leads (see [`hundredx::replication`]).
///
/// The components, started in order: the lease (a plain engine), the changes publisher, the
/// engine, following (replicated), the financing scheduler, the bridge. A signal cancels one
/// [`CancellationToken`], which every component watches; they are stopped in reverse, and the
/// lease last of all, by a token of its own: a standby must not take over while this engine
/// still applies.
pub fn engine(
    target: &RedisTarget,
    key: BridgeKey,
    cfg: EngineConfig,
    durability: &DurableOptions,
    opts: EngineOptions<'_>,
) -> Result<()> {
    let mut life = Lifecycle {
        runtime: tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?,
        stop: CancellationToken::new(),
        release: CancellationToken::new(),
        leases: Vec::new(),
    };
    life.runtime.spawn(cancel_on_signal(life.stop.clone()));
    if opts.ha.is_none() {
        life.leases.push(hold_single_lease(target, &key, &opts, life.release.clone())?);
    }
    let served = serve_engine(&mut life, target, key, cfg, durability, opts);
    // The bridge's event copier is a blocking task waiting on engine events, which ended with
    // the engine: do not wait for it longer.
    life.runtime.shutdown_timeout(Duration::from_secs(1));
    life.release.cancel();
    for lease in life.leases {
        lease.join().map_err(|_| anyhow::anyhow!("lease thread panicked"))?;
    }
    served
}

/// What `hundredx engine` stops by: `stop` (a signal, or the bridge ending) for everything
/// beside the lease, then `release` for the lease threads in `leases`.
struct Lifecycle {
    runtime: tokio::runtime::Runtime,
    stop: CancellationToken,
    release: CancellationToken,
    leases: Vec<std::thread::JoinHandle<()>>,
}

/// A signal cancels `stop`.
async fn cancel_on_signal(stop: CancellationToken) {
    hundredx::shutdown_signal().await;
    stop.cancel();
}

/// Every engine that consumes engine-stream holds the lease: a plain one takes it before it
/// publishes or consumes anything, refuses to start when another engine leads, and renews it
/// until `release`.
fn hold_single_lease(
    target: &RedisTarget,
    key: &BridgeKey,
    opts: &EngineOptions<'_>,
    release: CancellationToken,
) -> Result<std::thread::JoinHandle<()>> {
    let token = format!("{}{}:{:016x}", single::SINGLE_PREFIX, opts.consumer, random_u64()?);
    let mut log = RedisLog::new(target.clone(), key.clone(), Duration::from_secs(5));
    single::claim(&mut log, &token, opts.single_lease).context("taking the engine lease")?;
    Ok(single::keep(log, token, opts.single_lease, release)?)
}

/// The engine's components between the lease and its release; a replicated leader's lease
/// thread joins `life.leases` once it leads.
fn serve_engine(
    life: &mut Lifecycle,
    target: &RedisTarget,
    key: BridgeKey,
    cfg: EngineConfig,
    durability: &DurableOptions,
    opts: EngineOptions<'_>,
) -> Result<()> {
    let (runtime, stop) = (&life.runtime, &life.stop);
    let markets = cfg.markets.clone();
    let connect = || async {
        let mut con = redis_bridge::link::Link::connect(target).await?;
        let published = redis_bridge::changes::published(&mut con).await?;
        redis::RedisResult::Ok((con, published))
    };
    let Some((link, published)) =
        runtime.block_on(target.retry("engine", connect, std::pin::pin!(stop.cancelled())))
    else {
        return Ok(());
    };
    let Publisher { tap, prev, task } = Publisher::start(runtime, link, key.clone(), published)?;
    let (stage, node) = replication(opts.ha, durability)?;
    let shared = stage.as_ref().map(|s| Arc::clone(&s.shared));
    let options = DurableOptions { changes: Some(tap), replication: stage, ..durability.clone() };
    let durable = DurableEngine::start(cfg, &options)?;
    if let Some(listen) = opts.metrics_listen {
        let submitter = durable.handle.submitter();
        super::engine_metrics::spawn(runtime, listen, submitter, shared, stop.clone())?;
    }
    drop(options); // the last copy of the changes sender but the engine's: the publisher ends with it
    let _ = prev.send(published_before(published, &durable));
    let mut bridge = EngineBridgeConfig::new(target.clone(), key);
    bridge.consumer = opts.consumer.to_owned();
    let mut won_at = None;
    match node {
        // Requests applied before a crash whose entries are still pending (the acknowledgement
        // comes after the reply) come back: refused as replays, never applied twice.
        None => {
            let since_ms = (hundredx::now_ns() / 1_000_000).saturating_sub(60_000);
            bridge.applied = durable.recent_requests(since_ms, bridge.replay_capacity)?;
        }
        // Replicated: the log's last minute, remembered while following it.
        Some(node) => match follow_until_leading(runtime, node, &durable, stop)? {
            Some((takeover, node)) => {
                bridge.applied = takeover.recent;
                bridge.claim_at_start = true;
                won_at = Some(takeover.won_at);
                life.leases.push(node.lead(life.release.clone())?);
            }
            None => return stop_engine(runtime, durable, task),
        },
    }
    let events = durable.handle.subscribe(Subscription::Events, 65_536);
    let submitter = durable.handle.submitter();
    let financing =
        super::financing::spawn(submitter.clone(), &markets, opts.financing, stop.clone())?;
    let served = runtime.block_on(async {
        info!(redis = %target.redacted(), consumer = %bridge.consumer,
            takeover_ms = ?won_at.map(|t| t.elapsed().as_millis()), "engine: serving engine-stream");
        run_engine_bridge(bridge, submitter, events, stop.cancelled()).await
    });
    stop.cancel(); // the bridge may have ended on its own: everything beside it stops too
    if let Some(t) = financing {
        t.join().map_err(|_| anyhow::anyhow!("financing thread panicked"))?;
    }
    let stopped = stop_engine(runtime, durable, task);
    served.map_err(anyhow::Error::from).and(stopped)
}

/// Replicated mode's input stage and node, if on.
fn replication(
    ha: Option<ReplicationOptions>,
    durability: &DurableOptions,
) -> Result<(Option<ReplicatedStage>, Option<Node>)> {
    let Some(opts) = ha else {
        return Ok((None, None));
    };
    let (tx, rx) = crossbeam_channel::bounded(64);
    let shared = Arc::new(Shared::new(format!("{}:{:016x}", opts.node, random_u64()?)));
    let node = Node::new(opts.clone(), Arc::clone(&shared), durability.data_dir.clone(), rx);
    Ok((Some(ReplicatedStage { opts, shared, hashes: tx }), Some(node)))
}

/// The change before the first one this engine will publish: what Redis recorded, or for a new
/// engine nothing; `None` when Redis lost its record, so that a reader must not take the next
/// change for the one after what it holds.
fn published_before(published: Option<(u64, i64)>, durable: &DurableEngine) -> Option<(u64, i64)> {
    match published {
        Some(p) => Some(p),
        None if durable.recovery.last_seq == 0 => Some((0, -1)),
        None => {
            warn!(
                "engine-events: no record of what was published (Redis lost its data?); \
                   readers will see a gap and stop until rebuilt"
            );
            None
        }
    }
}

/// Follows `engine-journal` until this engine leads (`Some`) or `stop` is cancelled (`None`).
fn follow_until_leading(
    runtime: &tokio::runtime::Runtime,
    mut node: Node,
    durable: &DurableEngine,
    stop: &CancellationToken,
) -> Result<Option<(Takeover, Node)>> {
    let local_seq = durable.recovery.last_seq;
    node.check_start(local_seq)?;
    let mut submitter = durable.handle.submitter();
    let token = stop.clone();
    let follower = runtime.spawn_blocking(move || {
        let r = node.follow(&mut submitter, local_seq, &token);
        (node, r)
    });
    let (node, r) = runtime.block_on(follower).context("standby thread")?;
    match r? {
        Some(t) if !stop.is_cancelled() => Ok(Some((t, node))),
        _ => Ok(None), // the lease, if just won, expires by itself
    }
}

/// Stops the engine with a final snapshot and lets its last changes reach `engine-events`.
fn stop_engine(
    runtime: &tokio::runtime::Runtime,
    durable: DurableEngine,
    task: tokio::task::JoinHandle<()>,
) -> Result<()> {
    let (state, last_seq) = durable.shutdown()?;
    // The last changes reach engine-events before we go (or, if Redis is away, at next start).
    let drained =
        runtime.block_on(async { tokio::time::timeout(Duration::from_secs(5), task).await });
    if drained.is_err() {
        warn!("engine-events: changes not all published; they will be at the next start");
    }
    info!(last_seq, state_hash = %engine_core::hash::hex(&state.state_hash()), "engine stopped cleanly");
    Ok(())
}

/// The changes publisher of `hundredx engine`, running before recovery does (recovery's replay
/// is its first input).
struct Publisher {
    tap: hundredx::ChangesTap,
    /// The change before the first one it will publish, known once recovery is done.
    prev: tokio::sync::oneshot::Sender<Option<(u64, i64)>>,
    task: tokio::task::JoinHandle<()>,
}

impl Publisher {
    fn start(
        runtime: &tokio::runtime::Runtime,
        con: redis_bridge::link::Link,
        key: BridgeKey,
        published: Option<(u64, i64)>,
    ) -> Result<Publisher> {
        let (tx, rx) = crossbeam_channel::bounded::<Output>(65_536);
        let (fwd_tx, fwd_rx) = tokio::sync::mpsc::channel(4_096);
        runtime.spawn_blocking(move || {
            for o in rx {
                if let Output::Change(c) = o
                    && fwd_tx.blocking_send(c).is_err()
                {
                    break;
                }
            }
        });
        let published_seq =
            Arc::new(std::sync::atomic::AtomicU64::new(published.map_or(0, |p| p.0)));
        let (prev_tx, prev_rx) = tokio::sync::oneshot::channel();
        let seq = Arc::clone(&published_seq);
        let known = published;
        let task = runtime.spawn(async move {
            // What recovery replays comes after `published`; only if Redis knew nothing does
            // the first entry's predecessor wait for recovery to say whether the engine is new.
            let prev = match known {
                Some(p) => Some(p),
                None => prev_rx.await.unwrap_or(None),
            };
            let maxlen = redis_bridge::ENGINE_EVENTS_MAXLEN;
            redis_bridge::changes::publish_changes(con, key, maxlen, fwd_rx, prev, seq).await;
        });
        // Without a record in Redis nothing is replayed (the reader cannot be helped by it).
        let (after_seq, after_n) = published.unwrap_or((u64::MAX, i64::MAX));
        let tap = hundredx::ChangesTap { after_seq, after_n, tx, retain_seq: published_seq };
        Ok(Publisher { tap, prev: prev_tx, task })
    }
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
    api_cfg: ApiConfig,
    opts: ApiOptions,
) -> Result<()> {
    let ApiOptions { instance, listen, history, backfill } = opts;
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
        let markets = api_cfg.markets.clone();
        let state = AppState::with_client(api_cfg, Arc::new(client), None);
        // Push: every instance follows the engine's changes itself, so a browser may connect
        // to any of them.
        let hub = state.hub();
        let (tail_target, tail_key) = (target.clone(), key.clone());
        tokio::spawn(async move {
            let publish = |c: &engine_core::event::ChangeRecord| hub.publish(c);
            let replayed = Arc::clone(&hub.stats.replayed);
            redis_bridge::changes::tail_changes(
                &tail_target,
                tail_key,
                publish,
                replayed,
                std::future::pending(),
            )
            .await;
        });
        if let Some(url) = history {
            // The `history` process writes it; opening migrates too (under sqlx's lock), so
            // either may start first.
            let store = history::Store::open(&url, &markets, 4).await.with_context(|| {
                format!("opening the history store {}", super::history::redact(&url))
            })?;
            state.attach_history(Arc::new(store), None);
        }
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        println!("hundredx api {instance} listening on http://{}", listener.local_addr()?);
        let stop = tokio_util::sync::CancellationToken::new();
        let backfill = backfill.map(|(source, symbols)| {
            super::backfill::spawn(source, markets.clone(), symbols, Arc::clone(&state), &stop)
        });
        let served = hundredx_http::serve(listener, state, hundredx::shutdown_signal()).await;
        stop.cancel();
        if let Some(backfill) = backfill {
            let _ = backfill.await;
        }
        served?;
        anyhow::Ok(())
    })
}

/// `hundredx feed --redis`: a feed writing `price-stream`, until a signal (or a replay's end).
pub fn feed(
    target: &RedisTarget,
    key: BridgeKey,
    kind: &FeedKind,
    opts: FeedOptions,
) -> Result<()> {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async move {
        let stop = hundredx::shutdown_signal();
        tokio::pin!(stop);
        let sink = redis_bridge::price_sink::redis_sink(target, key, stop).await?;
        let Some((sink, writer)) = sink else {
            return Ok(());
        };
        let dropped = Arc::clone(&sink.dropped);
        let health = FeedHealth::new(opts.markets.len());
        let stop = hundredx::shutdown_signal();
        // The sink is dropped when the feed ends: the writer then writes what it holds and ends.
        let ticks = match kind {
            // Each venue a source of the index the engine makes (its `--config` must give the
            // markets as many `sources`).
            FeedKind::Sources(venues) => {
                let sources: Vec<price_feed::sources::Source> = venues
                    .iter()
                    .map(|&venue| price_feed::sources::Source {
                        venue,
                        health: FeedHealth::new(opts.markets.len()),
                    })
                    .collect();
                price_feed::run_sources(&sources, opts, sink, stop).await;
                sources.iter().map(|s| s.health.ticks.load(Ordering::Relaxed)).sum()
            }
            _ => price_feed::run(kind, opts, Arc::clone(&health), sink, stop).await?,
        };
        if tokio::time::timeout(Duration::from_secs(5), writer).await.is_err() {
            warn!("feed: price-stream writer still busy after 5 s; leaving it");
        }
        let dropped = dropped.load(Ordering::Relaxed);
        info!(ticks, dropped, feed = kind.name(), "feed stopped");
        anyhow::Ok(())
    })
}
