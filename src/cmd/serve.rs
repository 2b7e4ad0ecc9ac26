//! `hundredx serve`: the whole system in one process.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use backpack_feed::client::{ClientConfig, EngineSink, FeedHealth, ReplayPace};
use backpack_feed::synthetic::{SyntheticConfig, SyntheticFeed};
use engine_core::prelude::*;
use hundredx::{DurableEngine, DurableOptions, now_ns};
use hundredx_http::{ApiConfig, AppState};
use tracing::{info, warn};

use super::args::{DurabilityArgs, EdgeArgs, FeedKind, HistoryArgs, jwt_secret, random_secret};

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub durability: DurabilityArgs,
    /// Address of the HTTP API.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// A file holding the HS256 secret for JWTs (else HUNDREDX_JWT_SECRET; at least 16 bytes).
    /// Without one, a random secret is generated and tokens do not survive a restart.
    #[arg(long)]
    pub jwt_secret_file: Option<PathBuf>,
    /// JSON file with markets and engine limits (see `hundredx::config_file`); flags win.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Markets to trade, comma-separated, from the configured ones (default: all).
    #[arg(long, value_delimiter = ',')]
    pub markets: Vec<String>,
    /// Backpack WebSocket endpoint (a local server can stand in for it).
    #[arg(long, default_value = backpack_feed::DEFAULT_BACKPACK_URL)]
    pub backpack_url: String,
    /// With `--feed replay:FILE`: play as fast as possible instead of at the recorded pace.
    #[arg(long)]
    pub replay_fast: bool,
    /// Disable `POST /user/deposit` and the demo balance of new accounts.
    #[arg(long)]
    pub no_demo_deposits: bool,
    /// Price feed: `backpack` (live), `synthetic` (seeded random walk, offline) or `replay:FILE`.
    #[arg(long, default_value = "backpack")]
    pub feed: String,
    /// Seed of the synthetic feed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Synthetic ticks per second, all markets together (1..=1000000).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub ticks_per_second: u32,
    /// Largest synthetic move per tick, in parts per million of the price.
    #[arg(long, default_value_t = 500)]
    pub volatility_ppm: i64,
    /// Pin the engine thread to this core.
    #[arg(long)]
    pub pin_core: Option<usize>,
    /// Financing period: markets with a financing rate are charged at every UTC multiple of
    /// it (default 8 h, as perpetual venues fund).
    #[arg(long, default_value_t = 28_800, value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub financing_interval_secs: u64,
    /// Busy-spin the engine thread (lowest latency, burns a core). Default: adaptive, near-zero
    /// CPU when idle.
    #[arg(long)]
    pub busy_spin: bool,
    /// Seconds between status log lines.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub status_interval: u64,
    #[command(flatten)]
    pub edge: EdgeArgs,
    #[command(flatten)]
    pub history: HistoryArgs,
}

/// `hundredx serve`. Longer than the ~70-line rule on purpose: this is the process's wiring in
/// start order (engine, feed, event log, HTTP, then the reverse on a signal), each step a call.
pub fn run(args: ServeArgs) -> Result<()> {
    let feed_kind = FeedKind::parse(&args.feed)?;
    let edge_limits = args.edge.limits(args.config.as_deref())?;
    let jwt_secret = match jwt_secret(args.jwt_secret_file.as_deref())? {
        Some(s) => s,
        None => {
            warn!(
                "no HUNDREDX_JWT_SECRET / --jwt-secret-file: generated a random secret; tokens will not survive a restart"
            );
            random_secret()?
        }
    };
    let cfg = engine_config(&args)?;
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
    let history = super::history::start(&args.history, &args.durability.data_dir, &cfg.markets)?;
    let options = DurableOptions {
        runtime: RuntimeConfig {
            pin_core: args.pin_core,
            wait: if args.busy_spin { WaitMode::BusySpin } else { WaitMode::Adaptive },
            ..args.durability.options().runtime
        },
        changes: history.as_ref().map(|h| h.tap.clone()),
        ..args.durability.options()
    };
    let durable = DurableEngine::start(cfg, &options)?;
    drop(options); // its copy of the history's sender: the writer ends when the engine does
    let engine = &durable.handle;
    info!(markets = ?symbols, feed = %args.feed, "engine started");
    resume_synthetic(&mut synthetic, engine)?;
    let feed_health = FeedHealth::new(markets_cfg.len());

    let events = engine.subscribe(Subscription::Events, 4_096);
    let stop = Arc::new(AtomicBool::new(false));
    let feed_thread = match &feed_kind {
        FeedKind::Synthetic => Some(spawn_synthetic(
            synthetic,
            engine.submitter(),
            Arc::clone(&feed_health),
            Arc::clone(&stop),
            Duration::from_secs(1) / args.ticks_per_second,
        )?),
        _ => None,
    };
    let events_thread = spawn_event_log(events)?;
    let financing_thread = super::financing::spawn(
        engine.submitter(),
        &markets_cfg,
        Duration::from_secs(args.financing_interval_secs),
        Arc::clone(&stop),
    )?;

    let mut api_cfg = ApiConfig::new(jwt_secret, durable.handle.config_markets());
    api_cfg.demo_deposits = demo_deposits;
    api_cfg.limits = edge_limits;
    let report: Arc<dyn hundredx_http::FeedStatus> =
        Arc::new(FeedReport { kind: feed_kind.name(), health: Arc::clone(&feed_health) });
    let api_state = AppState::with_feed(api_cfg, engine.submitter(), Some(report));
    let push_thread = spawn_push_feed(
        engine.subscribe(Subscription::ChangesBestEffort, 65_536),
        api_state.hub(),
    )?;
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
        if let Some(h) = &history {
            let store = history::Store::open(&h.url, &markets_cfg, args.history.read_connections)
                .await
                .context("opening the history store for reading")?;
            api_state.attach_history(Arc::new(store), Some(Arc::clone(&h.status)));
        }
        let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(hundredx_http::serve(listener, api_state, async {
            let _ = http_stopped.await;
        }));
        let (stop_feed, feed_stopped) = tokio::sync::oneshot::channel::<()>();
        let feed_task =
            spawn_async_feed(&args, &feed_kind, engine, &markets_cfg, &feed_health, feed_stopped);
        log_status_until_signal(engine, Duration::from_secs(args.status_interval)).await;
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
    if let Some(t) = financing_thread {
        t.join().map_err(|_| anyhow::anyhow!("financing thread panicked"))?;
    }
    let (state, last_seq) = durable.shutdown()?;
    if let Some(h) = history {
        h.finish()?;
    }
    events_thread.join().map_err(|_| anyhow::anyhow!("events thread panicked"))?;
    push_thread.join().map_err(|_| anyhow::anyhow!("push thread panicked"))?;
    let s = state.summary();
    info!(last_seq, accounts = s.accounts, open_positions = s.open_positions,
        state_hash = %engine_core::hash::hex(&s.hash), "engine stopped cleanly");
    Ok(())
}

/// The feed's health as `/healthz` and `/metrics` show it.
struct FeedReport {
    kind: &'static str,
    health: Arc<FeedHealth>,
}

impl hundredx_http::FeedStatus for FeedReport {
    fn health(&self) -> serde_json::Value {
        self.health.summary(self.kind, now_ns())
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        self.health.counters()
    }
}

/// The engine configuration `serve` runs with: `--config` (or the defaults), then the flags.
fn engine_config(args: &ServeArgs) -> Result<EngineConfig> {
    let base = hundredx::config_file::load_engine(args.config.as_deref())?;
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
    Ok(EngineConfig {
        markets,
        demo_deposits: base.demo_deposits && !args.no_demo_deposits,
        ..base
    })
}

/// The synthetic feed on its own thread, `pause` between ticks, until `stop`. Never spins on a
/// full ring: a dropped price is superseded anyway (counted in `ticks_dropped`).
fn spawn_synthetic(
    mut synthetic: SyntheticFeed,
    mut submitter: engine_core::processor::Submitter,
    health: Arc<FeedHealth>,
    stop: Arc<AtomicBool>,
    pause: Duration,
) -> Result<thread::JoinHandle<()>> {
    Ok(thread::Builder::new().name("hundredx-feed".into()).spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let now = now_ns();
            if let Some(tick) = synthetic.next_tick(now / 1_000) {
                health.ticks.fetch_add(1, Ordering::Relaxed);
                if let Some(slot) = health.last_tick_ns.get(usize::from(tick.market.0)) {
                    slot.store(now, Ordering::Relaxed);
                }
                if submitter.try_send(now, CommandKind::PriceTick(tick)).is_err() {
                    health.ticks_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            thread::sleep(pause);
        }
    })?)
}

/// Hands the engine's state changes to the push API's fan-out until the engine stops.
fn spawn_push_feed(
    changes: crossbeam_channel::Receiver<Output>,
    hub: Arc<hundredx_http::push::Hub>,
) -> Result<thread::JoinHandle<()>> {
    Ok(thread::Builder::new().name("hundredx-push".into()).spawn(move || {
        for output in changes {
            if let Output::Change(c) = output {
                hub.publish(&c);
            }
        }
    })?)
}

/// A restarted synthetic feed continues after the recovered prices: the engine refuses update
/// ids it has already seen, so starting again from 1 would leave every market stale.
fn resume_synthetic(
    feed: &mut SyntheticFeed,
    engine: &engine_core::processor::EngineHandle,
) -> Result<()> {
    let mut engine = engine.submitter();
    let r = engine
        .call(now_ns(), CommandKind::QueryMarkets, Duration::from_secs(5))
        .map_err(|e| anyhow::anyhow!("reading the recovered prices: {e}"))?;
    for item in &r.items {
        if let Item::Market(m) = item {
            feed.resume(m.market, m.update_id, m.bid);
        }
    }
    Ok(())
}

/// Logs what the engine did on its own (closes by TP/SL/liquidation, bad debt, rejected prices)
/// until the engine stops.
fn spawn_event_log(events: crossbeam_channel::Receiver<Output>) -> Result<thread::JoinHandle<()>> {
    Ok(thread::Builder::new().name("hundredx-events".into()).spawn(move || {
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
    })?)
}

/// The feeds that run on the async runtime (Backpack's WebSocket, a replayed recording), until
/// `stopped` resolves; the synthetic feed has a thread of its own ([`spawn_synthetic`]).
fn spawn_async_feed(
    args: &ServeArgs,
    kind: &FeedKind,
    engine: &EngineHandle,
    markets: &[MarketConfig],
    health: &Arc<FeedHealth>,
    stopped: tokio::sync::oneshot::Receiver<()>,
) -> Option<tokio::task::JoinHandle<()>> {
    let sink = || EngineSink(engine.submitter(), Arc::clone(health));
    match kind {
        FeedKind::Backpack => {
            let sink = sink();
            let cfg = ClientConfig::new(&args.backpack_url, markets.to_vec());
            Some(tokio::spawn(backpack_feed::client::run(cfg, Arc::clone(health), sink, async {
                let _ = stopped.await;
            })))
        }
        FeedKind::Replay(path) => {
            let (path, markets, health) = (path.clone(), markets.to_vec(), Arc::clone(health));
            let pace = if args.replay_fast { ReplayPace::Flat } else { ReplayPace::Recorded };
            let mut sink = sink();
            Some(tokio::spawn(async move {
                match backpack_feed::client::replay(&path, &markets, &health, &mut sink, pace).await
                {
                    Ok(n) => info!(ticks = n, file = %path.display(), "replay finished"),
                    Err(e) => warn!(error = %e, file = %path.display(), "replay failed"),
                }
                drop(stopped);
            }))
        }
        FeedKind::Synthetic => None,
    }
}

/// Logs the engine's counters every `every` until SIGINT or SIGTERM.
async fn log_status_until_signal(engine: &EngineHandle, every: Duration) {
    let mut status = tokio::time::interval(every);
    status.tick().await;
    let stop_signal = hundredx::shutdown_signal();
    tokio::pin!(stop_signal);
    loop {
        tokio::select! {
            () = &mut stop_signal => return,
            _ = status.tick() => {
                let c = engine.counters();
                info!(commands = c.commands, ticks = c.ticks_applied, ticks_rejected = c.ticks_rejected,
                    opened = c.opened, liquidations = c.liquidations, events_dropped = engine.events_dropped(),
                    "status");
            }
        }
    }
}
