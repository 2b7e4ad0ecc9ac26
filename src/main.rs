//! `hundredx`: the binary that wires the engine to its adapters.
//!
//! - `hundredx serve`: the whole system in one process — the engine thread between its rings,
//!   its journal and snapshots under `--data-dir`, the HTTP API on `--listen`, and a price feed
//!   (`backpack`, `synthetic` or `replay:FILE`).
//! - `hundredx feed --record FILE`: records Backpack's frames for later replay.
//! - `hundredx replay --data-dir D`: re-applies a journal offline and prints the state hash and
//!   a summary, for audits.
//! - `hundredx snapshot --data-dir D`: recovers a stopped engine's state and writes a snapshot
//!   (compacting the journal).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::path::PathBuf;

mod service;

use anyhow::{Context, Result, bail};
use backpack_feed::client::{ClientConfig, EngineSink, FeedHealth, TickSink};
use backpack_feed::synthetic::{SyntheticConfig, SyntheticFeed};
use clap::{Parser, Subcommand};
use engine_core::prelude::*;
use engine_core::processor::SnapshotPolicy;
use hundredx::durability::{DataDir, SnapshotWriter, SyncPolicy, recover};
use hundredx::{DurableEngine, DurableOptions};
use hundredx_http::{ApiConfig, AppState};
use tracing::{info, warn};

#[derive(Parser, Debug)]
#[command(name = "hundredx", version, about = "A leveraged-trading engine built the LMAX way")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the engine embedded, with a price feed, in one process (no Redis).
    Serve(ServeArgs),
    /// Re-apply a data directory's journal offline; print the final state hash and a summary.
    Replay(ReplayArgs),
    /// Recover a stopped engine's state and write a snapshot of it (prunes old journal).
    Snapshot(DataArgs),
    /// Price feed on its own: `--redis URL` writes `price-stream` (service mode); `--record FILE`
    /// writes Backpack's raw bookTicker frames (JSON lines, playable with `--feed replay:FILE`).
    Feed(FeedArgs),
    /// Service mode: the engine (with its journal) serving `engine-stream` and `price-stream`.
    Engine(EngineArgs),
    /// Service mode: the HTTP API reaching the engine through Redis (several may run at once).
    Api(ApiArgs),
    /// Crash drill for the durability tests: a steady workload printing `ACK <request id>` for
    /// every applied state change, until killed.
    #[command(hide = true)]
    Drill(DrillArgs),
}

/// How service-mode processes reach Redis and trust each other (secrets: `hundredx::secrets`).
#[derive(clap::Args, Debug)]
struct RedisArgs {
    /// Redis URL: `redis://host:port/`, `rediss://host:port/` (TLS), `redis://user@host/` (ACL
    /// user). A URL with a password goes in HUNDREDX_REDIS_URL or --redis-url-file, not here.
    #[arg(long, env = "HUNDREDX_REDIS_URL", hide_env_values = true)]
    redis: Option<String>,
    /// A file holding the Redis URL (e.g. with an ACL user's password).
    #[arg(long)]
    redis_url_file: Option<PathBuf>,
    /// CA certificate (PEM) trusted for `rediss://` instead of the system's roots.
    #[arg(long, env = "HUNDREDX_REDIS_CA_FILE")]
    redis_ca_file: Option<PathBuf>,
    /// A file holding the bridge secret (else HUNDREDX_BRIDGE_SECRET): engine, api and feed
    /// sign and check every stream entry with it (HMAC-SHA256). At least 32 bytes.
    #[arg(long)]
    bridge_secret_file: Option<PathBuf>,
}

impl RedisArgs {
    fn given(&self) -> bool {
        self.redis.is_some() || self.redis_url_file.is_some()
    }

    fn link(
        &self,
    ) -> Result<(redis_bridge::target::RedisTarget, redis_bridge::signing::BridgeKey)> {
        let target = hundredx::secrets::redis_target(
            self.redis.as_deref(),
            self.redis_url_file.as_deref(),
            self.redis_ca_file.as_deref(),
        )?;
        let key = hundredx::secrets::bridge_key(self.bridge_secret_file.as_deref())?;
        Ok((target, key))
    }
}

#[derive(clap::Args, Debug)]
struct FeedArgs {
    /// Write every frame received to this file (JSON lines).
    #[arg(long)]
    record: Option<PathBuf>,
    /// Publish ticks to this Redis's `price-stream` (signed with the bridge secret).
    #[command(flatten)]
    redis: RedisArgs,
    /// With --redis: `backpack`, `synthetic` or `replay:FILE`.
    #[arg(long, default_value = "backpack")]
    feed: String,
    /// Seed of the synthetic feed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Backpack WebSocket endpoint.
    #[arg(long, default_value = backpack_feed::DEFAULT_BACKPACK_URL)]
    backpack_url: String,
    /// Markets, comma-separated (default: BTC_USDC, ETH_USDC, SOL_USDC).
    #[arg(long, value_delimiter = ',')]
    markets: Vec<String>,
}

#[derive(clap::Args, Debug)]
struct EngineArgs {
    #[command(flatten)]
    redis: RedisArgs,
    /// This engine's stable consumer name in the `engine` group.
    #[arg(long, default_value = "engine-1")]
    consumer: String,
    /// JSON configuration (markets, limits), as for serve.
    #[arg(long)]
    config: Option<PathBuf>,
    /// New accounts start with nothing (the demo balance is the engine's to give).
    #[arg(long)]
    no_demo_deposits: bool,
    #[command(flatten)]
    durability: DurabilityArgs,
}

#[derive(clap::Args, Debug)]
struct ApiArgs {
    #[command(flatten)]
    redis: RedisArgs,
    /// Address of the HTTP API.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// This instance's name: its replies come on `callback-queue:<instance>` (default: random).
    #[arg(long)]
    instance: Option<String>,
    /// A file holding the HS256 secret shared by every api instance (else HUNDREDX_JWT_SECRET;
    /// at least 16 bytes). Required in service mode.
    #[arg(long)]
    jwt_secret_file: Option<PathBuf>,
    /// JSON configuration (markets), as the engine's.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Disable `POST /user/deposit` (new accounts' demo balance: `engine --no-demo-deposits`).
    #[arg(long)]
    no_demo_deposits: bool,
    #[command(flatten)]
    edge: EdgeArgs,
}

/// The HTTP edge's most-used limits as flags; every limit is in `--config FILE`, section `http`.
#[derive(clap::Args, Debug)]
struct EdgeArgs {
    /// Connections served at once (the next one gets 503); lowered to fit the descriptor limit.
    #[arg(long)]
    max_connections: Option<usize>,
    /// Reverse proxies whose X-Forwarded-For is believed, comma-separated CIDRs (e.g. 10.0.0.0/8).
    #[arg(long, value_delimiter = ',')]
    trusted_proxies: Vec<ipnet::IpNet>,
    /// Origins allowed by CORS, comma-separated (`*` for any). Default: no CORS.
    #[arg(long, value_delimiter = ',')]
    cors_origins: Vec<String>,
}

impl EdgeArgs {
    /// The limits from `config` (section `http`) with these flags on top, fitted to the
    /// descriptor limit (raised to the hard limit first).
    fn limits(&self, config: Option<&std::path::Path>) -> Result<hundredx_http::Limits> {
        let mut l = hundredx::config_file::load_http(config)?;
        if let Some(n) = self.max_connections {
            l.server.max_connections = n;
        }
        if !self.trusted_proxies.is_empty() {
            l.trusted_proxies.clone_from(&self.trusted_proxies);
        }
        if !self.cors_origins.is_empty() {
            l.cors_origins.clone_from(&self.cors_origins);
        }
        l.validate().map_err(|e| anyhow::anyhow!(e))?;
        fit_to_descriptors(&mut l);
        Ok(l)
    }
}

/// Descriptors kept for everything but client connections: journal segments, snapshots,
/// Redis, the feed, logs.
const RESERVED_FDS: u64 = 64;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, then keeps the connection cap below it, so
/// client sockets can never take the descriptors the journal and the rest need.
fn fit_to_descriptors(l: &mut hundredx_http::Limits) {
    let soft = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            warn!(error = %e, "could not read or raise the descriptor limit");
            return;
        }
    };
    let room = usize::try_from(soft.saturating_sub(RESERVED_FDS)).unwrap_or(usize::MAX).max(1);
    if l.server.max_connections > room {
        warn!(
            max_connections = l.server.max_connections,
            fd_limit = soft,
            lowered_to = room,
            "connection cap lowered to fit the descriptor limit"
        );
        l.server.max_connections = room;
    }
    info!(fd_limit = soft, max_connections = l.server.max_connections, "connection limits");
}

#[derive(clap::Args, Debug)]
struct DataArgs {
    /// Data directory (journal, snapshots).
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
    /// The JSON configuration `serve` ran with, if any (markets must match the data).
    #[arg(long)]
    config: Option<PathBuf>,
}

impl DataArgs {
    fn engine_config(&self) -> Result<EngineConfig> {
        match &self.config {
            Some(path) => hundredx::config_file::load(path, EngineConfig::default()),
            None => Ok(EngineConfig::default()),
        }
    }
}

#[derive(clap::Args, Debug)]
struct ReplayArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Ignore snapshots: replay the whole journal from its first record.
    #[arg(long)]
    from_scratch: bool,
}

#[derive(clap::Args, Debug)]
struct DurabilityArgs {
    /// Data directory (journal, snapshots).
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
    /// Journal sync policy: `fsync` (every batch: no reply before its command is on disk),
    /// `interval:<ms>`, or `none`.
    #[arg(long, default_value = "fsync")]
    sync: SyncPolicy,
    /// Snapshot after this many commands.
    #[arg(long, default_value_t = 1_000_000)]
    snapshot_every: u64,
    /// Snapshot after this many seconds (of command time).
    #[arg(long, default_value_t = 300)]
    snapshot_secs: u64,
    /// Snapshots kept; older ones and the journal they cover are pruned.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=100))]
    keep_snapshots: u64,
    /// Keep the whole journal (no pruning), so `replay --from-scratch` can audit everything.
    #[arg(long)]
    keep_journal: bool,
    /// Journal segment size in MiB.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    segment_mib: u64,
}

impl DurabilityArgs {
    fn options(&self) -> DurableOptions {
        DurableOptions {
            data_dir: self.data_dir.clone(),
            sync: self.sync,
            segment_bytes: self.segment_mib << 20,
            snapshots: SnapshotPolicy {
                every_commands: Some(self.snapshot_every.max(1)),
                every_ns: Some(self.snapshot_secs.max(1).saturating_mul(1_000_000_000)),
            },
            keep_snapshots: usize::try_from(self.keep_snapshots).unwrap_or(3),
            prune_journal: !self.keep_journal,
            exit_on_fail_stop: true,
        }
    }
}

#[derive(clap::Args, Debug)]
struct DrillArgs {
    #[command(flatten)]
    durability: DurabilityArgs,
    /// Workload seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    #[command(flatten)]
    durability: DurabilityArgs,
    /// Address of the HTTP API.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// A file holding the HS256 secret for JWTs (else HUNDREDX_JWT_SECRET; at least 16 bytes).
    /// Without one, a random secret is generated and tokens do not survive a restart.
    #[arg(long)]
    jwt_secret_file: Option<PathBuf>,
    /// JSON file with markets and engine limits (see `hundredx::config_file`); flags win.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Markets to trade, comma-separated, from the configured ones (default: all).
    #[arg(long, value_delimiter = ',')]
    markets: Vec<String>,
    /// Backpack WebSocket endpoint (a local server can stand in for it).
    #[arg(long, default_value = backpack_feed::DEFAULT_BACKPACK_URL)]
    backpack_url: String,
    /// With `--feed replay:FILE`: play as fast as possible instead of at the recorded pace.
    #[arg(long)]
    replay_fast: bool,
    /// Disable `POST /user/deposit` and the demo balance of new accounts.
    #[arg(long)]
    no_demo_deposits: bool,
    /// Price feed: `backpack` (live), `synthetic` (seeded random walk, offline) or `replay:FILE`.
    #[arg(long, default_value = "backpack")]
    feed: String,
    /// Seed of the synthetic feed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Synthetic ticks per second, all markets together (1..=1000000).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    ticks_per_second: u32,
    /// Largest synthetic move per tick, in parts per million of the price.
    #[arg(long, default_value_t = 500)]
    volatility_ppm: i64,
    /// Pin the engine thread to this core.
    #[arg(long)]
    pin_core: Option<usize>,
    /// Busy-spin the engine thread (lowest latency, burns a core). Default: adaptive, near-zero
    /// CPU when idle.
    #[arg(long)]
    busy_spin: bool,
    /// Seconds between status log lines.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    status_interval: u64,
    #[command(flatten)]
    edge: EdgeArgs,
}

pub(crate) fn now_ns() -> u64 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve(args) => serve(args),
        Command::Replay(args) => replay(args),
        Command::Snapshot(args) => snapshot(args),
        Command::Drill(args) => drill(args),
        Command::Feed(args) => feed(args),
        Command::Engine(args) => {
            let mut cfg = match &args.config {
                Some(p) => hundredx::config_file::load(p, EngineConfig::default())?,
                None => EngineConfig::default(),
            };
            cfg.demo_deposits &= !args.no_demo_deposits;
            let (target, key) = args.redis.link()?;
            service::engine(&target, key, &args.consumer, cfg, &args.durability.options())
        }
        Command::Api(args) => {
            let Some(jwt_secret) = jwt_secret(args.jwt_secret_file.as_deref())? else {
                bail!("service mode needs HUNDREDX_JWT_SECRET or --jwt-secret-file");
            };
            let cfg = match &args.config {
                Some(p) => hundredx::config_file::load(p, EngineConfig::default())?,
                None => EngineConfig::default(),
            };
            let mut api = ApiConfig::new(jwt_secret, cfg.markets);
            api.demo_deposits = !args.no_demo_deposits;
            api.limits = args.edge.limits(args.config.as_deref())?;
            let (target, key) = args.redis.link()?;
            service::api(&target, key, args.instance, args.listen, api)
        }
    }
}

fn serve(args: ServeArgs) -> Result<()> {
    let feed_kind = FeedKind::parse(&args.feed)?;
    let edge_limits = args.edge.limits(args.config.as_deref())?;
    let base = match &args.config {
        Some(path) => hundredx::config_file::load(path, EngineConfig::default())?,
        None => EngineConfig::default(),
    };
    let mut markets = base.markets.clone();
    if !args.markets.is_empty() {
        for m in &args.markets {
            if !markets.iter().any(|d| &d.symbol == m) {
                let known: Vec<&str> = markets.iter().map(|d| d.symbol.as_str()).collect();
                bail!("unknown market {m:?}: configured markets are {}", known.join(", "));
            }
        }
        markets.retain(|d| args.markets.contains(&d.symbol));
    }
    let jwt_secret = match jwt_secret(args.jwt_secret_file.as_deref())? {
        Some(s) => s,
        None => {
            warn!(
                "no HUNDREDX_JWT_SECRET / --jwt-secret-file: generated a random secret; tokens will not survive a restart"
            );
            random_secret()?
        }
    };
    let cfg = EngineConfig {
        pin_core: args.pin_core,
        markets,
        demo_deposits: base.demo_deposits && !args.no_demo_deposits,
        wait: if args.busy_spin { WaitMode::BusySpin } else { WaitMode::Adaptive },
        ..base
    };
    let demo_deposits = cfg.demo_deposits;
    let symbols: Vec<String> = cfg.markets.iter().map(|m| m.symbol.clone()).collect();
    let markets_cfg = cfg.markets.clone();
    let mut synthetic = SyntheticFeed::new(
        SyntheticConfig {
            seed: args.seed,
            volatility_ppm: args.volatility_ppm,
            ..SyntheticConfig::default()
        },
        &cfg.markets,
    );
    let durable = DurableEngine::start(cfg, &args.durability.options())?;
    let engine = &durable.handle;
    info!(markets = ?symbols, feed = %args.feed, "engine started");
    let feed_health = FeedHealth::new(markets_cfg.len());

    let events = engine.subscribe(Subscription::Events, 4_096);
    let stop = Arc::new(AtomicBool::new(false));
    let feed_thread = match &feed_kind {
        FeedKind::Synthetic => {
            let stop = Arc::clone(&stop);
            let mut submitter = engine.submitter();
            let pause = Duration::from_secs(1) / args.ticks_per_second;
            let health = Arc::clone(&feed_health);
            Some(thread::Builder::new().name("hundredx-feed".into()).spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let now = now_ns();
                    if let Some(tick) = synthetic.next_tick(now / 1_000) {
                        health.ticks.fetch_add(1, Ordering::Relaxed);
                        if let Some(slot) = health.last_tick_ns.get(usize::from(tick.market.0)) {
                            slot.store(now, Ordering::Relaxed);
                        }
                        // Never spin on a full ring: a dropped price is superseded anyway.
                        if submitter.try_send(now, CommandKind::PriceTick(tick)).is_err() {
                            health.ticks_dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    thread::sleep(pause);
                }
            })?)
        }
        _ => None,
    };
    let events_thread = thread::Builder::new().name("hundredx-events".into()).spawn(move || {
        for output in events {
            match output {
                Output::Event(Event::PositionClosed(v)) => {
                    let c = v
                        .close
                        .unwrap_or_else(|| unreachable!("closed positions carry close info"));
                    info!(position = v.id.0, account = v.account.0, reason = c.reason.as_str(),
                        pnl = %c.realized_pnl, payout = %c.payout, "position closed");
                }
                Output::Event(Event::BadDebt {
                    position,
                    amount,
                    insurance_paid,
                    house_paid,
                    ..
                }) => {
                    warn!(position = position.0, %amount, %insurance_paid, %house_paid, "bad debt");
                }
                Output::Event(Event::PriceRejected { market, reason, update_id }) => {
                    warn!(market = market.0, reason = reason.code(), update_id, "price rejected");
                }
                _ => {}
            }
        }
    })?;

    let mut api_cfg = ApiConfig::new(jwt_secret, durable.handle.config_markets());
    api_cfg.demo_deposits = demo_deposits;
    api_cfg.limits = edge_limits;
    let report: Arc<dyn hundredx_http::FeedStatus> =
        Arc::new(FeedReport { kind: feed_kind.name(), health: Arc::clone(&feed_health) });
    let api_state = AppState::with_feed(api_cfg, engine.submitter(), Some(report));
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        let addr = listener.local_addr()?;
        println!("hundredx listening on http://{addr}");
        println!("markets: {}", symbols.join(", "));
        println!(
            "try:  curl -s -X POST http://{addr}/api/v1/user/signup -H 'content-type: application/json' \\\n        -d '{{\"email\":\"me@example.com\",\"password\":\"correct horse\"}}'"
        );
        let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(hundredx_http::serve(listener, api_state, async {
            let _ = http_stopped.await;
        }));
        let (stop_feed, feed_stopped) = tokio::sync::oneshot::channel::<()>();
        let feed_task = match &feed_kind {
            FeedKind::Backpack => {
                let cfg = ClientConfig::new(&args.backpack_url, markets_cfg.clone());
                let sink = EngineSink(engine.submitter(), Arc::clone(&feed_health));
                Some(tokio::spawn(backpack_feed::client::run(cfg, Arc::clone(&feed_health), sink, async {
                    let _ = feed_stopped.await;
                })))
            }
            FeedKind::Replay(path) => {
                let (path, markets, health) = (path.clone(), markets_cfg.clone(), Arc::clone(&feed_health));
                let mut sink = EngineSink(engine.submitter(), Arc::clone(&feed_health));
                let paced = !args.replay_fast;
                Some(tokio::spawn(async move {
                    match backpack_feed::client::replay(&path, &markets, &health, &mut sink, paced).await {
                        Ok(n) => info!(ticks = n, file = %path.display(), "replay finished"),
                        Err(e) => warn!(error = %e, file = %path.display(), "replay failed"),
                    }
                    drop(feed_stopped);
                }))
            }
            FeedKind::Synthetic => None,
        };
        let mut status = tokio::time::interval(Duration::from_secs(args.status_interval));
        status.tick().await;
        loop {
            tokio::select! {
                () = hundredx::shutdown_signal() => break,
                _ = status.tick() => {
                    let c = engine.counters();
                    info!(commands = c.commands, ticks = c.ticks_applied, ticks_rejected = c.ticks_rejected,
                        opened = c.opened, liquidations = c.liquidations, events_dropped = engine.events_dropped(),
                        "status");
                }
            }
        }
        let _ = stop_feed.send(());
        if let Some(t) = feed_task {
            let _ = t.await;
        }
        let _ = stop_http.send(());
        server.await.context("HTTP server task")?.context("HTTP server")?;
        anyhow::Ok(())
    })?;
    drop(runtime);

    stop.store(true, Ordering::Relaxed);
    if let Some(t) = feed_thread {
        t.join().map_err(|_| anyhow::anyhow!("feed thread panicked"))?;
    }
    let (state, last_seq) = durable.shutdown()?;
    events_thread.join().map_err(|_| anyhow::anyhow!("events thread panicked"))?;
    let s = state.summary();
    info!(last_seq, accounts = s.accounts, open_positions = s.open_positions,
        state_hash = %engine_core::hash::hex(&s.hash), "engine stopped cleanly");
    Ok(())
}

/// Which price feed `serve` runs.
#[derive(Debug, Clone)]
enum FeedKind {
    Backpack,
    Synthetic,
    Replay(PathBuf),
}

impl FeedKind {
    fn parse(s: &str) -> Result<FeedKind> {
        match s {
            "backpack" => Ok(FeedKind::Backpack),
            "synthetic" => Ok(FeedKind::Synthetic),
            f => match f.strip_prefix("replay:") {
                Some(path) if !path.is_empty() => {
                    let path = PathBuf::from(path);
                    if !path.is_file() {
                        bail!("replay file {} not found", path.display());
                    }
                    Ok(FeedKind::Replay(path))
                }
                _ => bail!("unknown feed {f:?}: expected backpack, synthetic or replay:FILE"),
            },
        }
    }

    fn name(&self) -> &'static str {
        match self {
            FeedKind::Backpack => "backpack",
            FeedKind::Synthetic => "synthetic",
            FeedKind::Replay(_) => "replay",
        }
    }
}

/// The feed's health as `/healthz` and `/metrics` show it.
struct FeedReport {
    kind: &'static str,
    health: Arc<FeedHealth>,
}

impl hundredx_http::FeedStatus for FeedReport {
    fn health(&self) -> serde_json::Value {
        let h = &self.health;
        let now = now_ns();
        let ages: Vec<Option<u64>> = h
            .last_tick_ns
            .iter()
            .map(|t| t.load(Ordering::Relaxed))
            .map(|t| (t > 0).then(|| now.saturating_sub(t) / 1_000_000))
            .collect();
        serde_json::json!({
            "kind": self.kind,
            "connected": h.connected.load(Ordering::Relaxed),
            "reconnects": h.reconnects.load(Ordering::Relaxed),
            "ticks": h.ticks.load(Ordering::Relaxed),
            "last_tick_age_ms": ages,
        })
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let h = &self.health;
        let mut v = vec![
            ("connected", u64::from(h.connected.load(Ordering::Relaxed))),
            ("connects", h.connects.load(Ordering::Relaxed)),
            ("reconnects", h.reconnects.load(Ordering::Relaxed)),
            ("connect_failures", h.connect_failures.load(Ordering::Relaxed)),
            ("watchdog_timeouts", h.watchdog_timeouts.load(Ordering::Relaxed)),
            ("frames", h.frames.load(Ordering::Relaxed)),
            ("ticks", h.ticks.load(Ordering::Relaxed)),
            ("duplicates", h.duplicates.load(Ordering::Relaxed)),
            ("error_frames", h.error_frames.load(Ordering::Relaxed)),
            ("ticks_dropped", h.ticks_dropped.load(Ordering::Relaxed)),
        ];
        for (label, n) in backpack_feed::client::ERROR_LABELS.iter().zip(&h.parse_errors) {
            v.push((label, n.load(Ordering::Relaxed)));
        }
        v
    }
}

/// Records raw frames, one per line.
struct Recorder(std::io::BufWriter<std::fs::File>);

impl TickSink for Recorder {
    fn publish(&mut self, _: Tick) {}

    fn raw(&mut self, frame: &str) {
        use std::io::Write;
        if let Err(e) = writeln!(self.0, "{frame}").and_then(|()| self.0.flush()) {
            warn!(error = %e, "recording failed");
        }
    }
}

fn feed(args: FeedArgs) -> Result<()> {
    let mut markets = MarketConfig::defaults();
    if !args.markets.is_empty() {
        markets.retain(|m| args.markets.contains(&m.symbol));
    }
    if args.redis.given() {
        let (target, key) = args.redis.link()?;
        return service::feed(&target, key, &args.feed, &args.backpack_url, markets, args.seed);
    }
    let Some(path) = args.record else {
        bail!("give --redis URL (publish to price-stream) or --record FILE");
    };
    let file =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let health = FeedHealth::new(markets.len());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(backpack_feed::client::run(
        ClientConfig::new(&args.backpack_url, markets),
        Arc::clone(&health),
        Recorder(std::io::BufWriter::new(file)),
        hundredx::shutdown_signal(),
    ));
    info!(frames = health.frames.load(Ordering::Relaxed), file = %path.display(), "recording stopped");
    Ok(())
}

/// The JWT secret from `--jwt-secret-file` or HUNDREDX_JWT_SECRET (at least 16 bytes), if any.
fn jwt_secret(file: Option<&std::path::Path>) -> Result<Option<Vec<u8>>> {
    match hundredx::secrets::read(hundredx::secrets::JWT_SECRET_ENV, file)? {
        Some(s) if s.len() < 16 => {
            bail!(
                "the JWT secret (HUNDREDX_JWT_SECRET / --jwt-secret-file) must be at least 16 bytes"
            )
        }
        other => Ok(other),
    }
}

/// 32 random bytes, hex: the JWT secret when none is configured.
fn random_secret() -> Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom for a JWT secret")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>().into_bytes())
}

fn replay(args: ReplayArgs) -> Result<()> {
    let data = DataDir::create(&args.data.data_dir)?;
    let (engine, report) = recover(&data, &args.data.engine_config()?, !args.from_scratch, true)?;
    let s = engine.summary();
    let c = engine.counters();
    println!("data dir        {}", args.data.data_dir.display());
    println!(
        "snapshot used   {}",
        if report.snapshot_seq == 0 { "none".to_string() } else { report.snapshot_seq.to_string() }
    );
    println!(
        "replayed        {} records in {:?} ({} /s)",
        report.replayed,
        report.elapsed,
        hundredx::durability::per_second(report.replayed, report.elapsed)
    );
    if let Some((seg, at)) = &report.torn_tail {
        println!("torn tail       {} at byte {at} (ignored)", seg.display());
    }
    println!("last seq        {}", report.last_seq);
    println!("state hash      {}", engine_core::hash::hex(&s.hash));
    println!("accounts        {}", s.accounts);
    println!("open positions  {}", s.open_positions);
    println!("net deposits    {}", s.net_deposits);
    println!("available       {}", s.total_available);
    println!("locked margin   {}", s.total_margin);
    println!("insurance fund  {}", s.insurance_fund);
    println!("house balance   {}", s.house_balance);
    println!("liquidations    {} (bad debt {})", c.liquidations, c.bad_debts);
    engine.check_conservation().map_err(|e| anyhow::anyhow!("conservation check failed: {e}"))?;
    println!("conservation    ok");
    Ok(())
}

fn snapshot(args: DataArgs) -> Result<()> {
    let data = DataDir::create(&args.data_dir)?;
    let _lock = data.lock()?;
    let (engine, report) = recover(&data, &args.engine_config()?, true, false)?;
    let path = SnapshotWriter::new(&data, 3, true).write(report.last_seq, &engine)?;
    println!(
        "{} (seq {}, hash {})",
        path.display(),
        report.last_seq,
        engine_core::hash::hex(&engine.state_hash())
    );
    Ok(())
}

fn drill(args: DrillArgs) -> Result<()> {
    use std::io::Write;
    let durable = DurableEngine::start(EngineConfig::default(), &args.durability.options())?;
    let mut engine = durable.handle.submitter();
    let timeout = Duration::from_secs(10);
    let mut accounts = Vec::new();
    for i in 0..10 {
        let login = Login::new(&format!("drill{i}@x")).context("login")?;
        let r = engine.call(now_ns(), CommandKind::QueryCredential { login }, timeout)?;
        let account = match r.result {
            Ok(ReplyData::Credential { account, .. }) => account,
            _ => {
                let kind = CommandKind::CreateAccount { login, credential: Credential::empty() };
                match engine.call(now_ns(), kind, timeout)?.result {
                    Ok(ReplyData::AccountCreated { account }) => account,
                    other => bail!("create account: {other:?}"),
                }
            }
        };
        accounts.push(account);
    }
    let mut feed = SyntheticFeed::new(
        SyntheticConfig { seed: args.seed, volatility_ppm: 3_000, ..SyntheticConfig::default() },
        &MarketConfig::defaults()[..1],
    );
    // Continue the price's update ids above what the engine has seen.
    let r = engine.call(now_ns(), CommandKind::QueryMarkets, timeout)?;
    let base_update = r
        .items
        .iter()
        .find_map(|i| match i {
            Item::Market(m) if m.market.0 == 0 => Some(m.update_id),
            _ => None,
        })
        .unwrap_or(0);
    let stdout = std::io::stdout();
    let mut x = args.seed | 1;
    let mut open_ids: Vec<(AccountId, PositionId)> = Vec::new();
    loop {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let account = accounts[usize::try_from(x % 10).unwrap_or(0)];
        let kind = match x % 7 {
            0..=2 => {
                let mut t = feed.next_tick(now_ns() / 1_000).context("tick")?;
                t.update_id += base_update;
                CommandKind::PriceTick(t)
            }
            3 | 4 => CommandKind::OpenPosition(OpenRequest {
                account,
                market: MarketId(0),
                side: if x & 8 == 0 { Side::Long } else { Side::Short },
                leverage: u32::try_from(x % 50 + 1).unwrap_or(1),
                size: Size::Margin(Usdc::from_whole(10)),
                expected_price: None,
                max_slippage_bps: 0,
                take_profit: None,
                stop_loss: None,
                client_order_id: None,
            }),
            5 if !open_ids.is_empty() => {
                let (account, position) =
                    open_ids.swap_remove(usize::try_from(x % open_ids.len() as u64).unwrap_or(0));
                CommandKind::ClosePosition { account, position, quantity: None, key: None }
            }
            _ => CommandKind::Deposit { account, amount: Usdc::from_whole(1), key: None },
        };
        let r = engine.call(now_ns(), kind, timeout)?;
        if let Ok(data) = r.result {
            if let ReplyData::Opened(v) = data {
                open_ids.push((v.account, v.id));
            }
            let mut out = stdout.lock();
            writeln!(out, "ACK {}", r.request_id.0)?;
            out.flush()?;
        }
    }
}
