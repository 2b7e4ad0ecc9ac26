//! `hundredx serve`: the whole system in one process.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use backpack_feed::client::{ClientConfig, EngineSink, FeedHealth, ReplayPace};
use backpack_feed::synthetic::{SyntheticConfig, SyntheticFeed};
use engine_core::prelude::*;
use hundredx::{DurableEngine, DurableOptions, now_ns};
use hundredx_http::{ApiConfig, AppState};
use tokio_util::sync::CancellationToken;
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
/// `hundredx serve`: the components started in order — the history writer, the engine, the
/// threads beside it (feed, event log, financing, push), the HTTP server and the async feed —
/// and stopped in reverse by one mechanism: a signal cancels [`CancellationToken`], every
/// component watches it, and each is joined after the ones started after it.
pub fn run(args: ServeArgs) -> Result<()> {
    let plan = Plan::from_args(&args)?;
    let history = super::history::start(&args.history, &args.durability.data_dir, &plan.markets)?;
    let durable = start_engine(&args, plan.cfg.clone(), history.as_ref())?;
    info!(markets = ?plan.symbols(), feed = %args.feed, "engine started");
    let stop = CancellationToken::new();
    let (mut beside, api) = Beside::start(&args, &plan, &durable.handle, stop.clone())?;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let store = history.as_ref().map(|h| (h.url.clone(), Arc::clone(&h.status)));
    let served = runtime.block_on(serve_until_signal(
        &args,
        &plan,
        &durable.handle,
        &beside,
        api,
        store,
        &stop,
    ));
    drop(runtime);
    stop.cancel(); // whatever ended the serving, everything beside the engine stops now
    served?;
    beside.join_feeds()?;
    let (state, last_seq) = durable.shutdown()?;
    if let Some(h) = history {
        h.finish()?;
    }
    beside.join_readers()?;
    let s = state.summary();
    info!(last_seq, accounts = s.accounts, open_positions = s.open_positions,
        state_hash = %engine_core::hash::hex(&s.hash), "engine stopped cleanly");
    Ok(())
}

/// What `serve` decided from its arguments before starting anything.
struct Plan {
    feed_kind: FeedKind,
    cfg: EngineConfig,
    markets: Vec<MarketConfig>,
    api: ApiConfig,
}

impl Plan {
    fn from_args(args: &ServeArgs) -> Result<Plan> {
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
        let cfg = engine_config(args)?;
        let mut api = ApiConfig::new(jwt_secret, cfg.markets.clone());
        api.demo_deposits = cfg.demo_deposits;
        api.limits = edge_limits;
        Ok(Plan { feed_kind, markets: cfg.markets.clone(), cfg, api })
    }

    fn symbols(&self) -> Vec<String> {
        self.markets.iter().map(|m| m.symbol.clone()).collect()
    }
}

/// The engine behind its journal, its changes tapped by the history writer (if any).
fn start_engine(
    args: &ServeArgs,
    cfg: EngineConfig,
    history: Option<&super::history::Embedded>,
) -> Result<DurableEngine> {
    let options = DurableOptions {
        runtime: RuntimeConfig {
            pin_core: args.pin_core,
            wait: if args.busy_spin { WaitMode::BusySpin } else { WaitMode::Adaptive },
            ..args.durability.options().runtime
        },
        changes: history.map(|h| h.tap.clone()),
        ..args.durability.options()
    };
    // `options` (and its copy of the history's sender) is dropped on return: the writer ends
    // when the engine does.
    DurableEngine::start(cfg, &options)
}

/// The threads beside the engine: the synthetic feed and the financing scheduler (stopped by
/// the token), the event log and the push fan-out (ending when the engine's subscriptions do).
/// Started with the API's state, which the HTTP server takes.
struct Beside {
    feed: Option<thread::JoinHandle<()>>,
    financing: Option<thread::JoinHandle<()>>,
    events: thread::JoinHandle<()>,
    push: thread::JoinHandle<()>,
    health: Arc<FeedHealth>,
}

impl Beside {
    fn start(
        args: &ServeArgs,
        plan: &Plan,
        engine: &EngineHandle,
        stop: CancellationToken,
    ) -> Result<(Beside, Arc<AppState>)> {
        let health = FeedHealth::new(plan.markets.len());
        let feed = match &plan.feed_kind {
            FeedKind::Synthetic => {
                let mut synthetic = SyntheticFeed::new(
                    SyntheticConfig {
                        seed: args.seed,
                        volatility_ppm: args.volatility_ppm,
                        ..SyntheticConfig::default()
                    },
                    &plan.markets,
                );
                resume_synthetic(&mut synthetic, engine)?;
                let pause = Duration::from_secs(1) / args.ticks_per_second;
                let (submitter, health) = (engine.submitter(), Arc::clone(&health));
                Some(spawn_synthetic(synthetic, submitter, health, stop.clone(), pause)?)
            }
            _ => None,
        };
        let events = spawn_event_log(engine.subscribe(Subscription::Events, 4_096))?;
        let interval = Duration::from_secs(args.financing_interval_secs);
        let financing = super::financing::spawn(engine.submitter(), &plan.markets, interval, stop)?;
        let report: Arc<dyn hundredx_http::FeedStatus> =
            Arc::new(FeedReport { kind: plan.feed_kind.name(), health: Arc::clone(&health) });
        let api = AppState::with_feed(plan.api.clone(), engine.submitter(), Some(report));
        let changes = engine.subscribe(Subscription::ChangesBestEffort, 65_536);
        let push = spawn_push_feed(changes, api.hub())?;
        Ok((Beside { feed, financing, events, push, health }, api))
    }

    /// The threads the token stops (before the engine stops).
    fn join_feeds(&mut self) -> Result<()> {
        for t in [self.feed.take(), self.financing.take()].into_iter().flatten() {
            t.join().map_err(|_| anyhow::anyhow!("a feed thread panicked"))?;
        }
        Ok(())
    }

    /// The threads that end with the engine's subscriptions (after the engine stops).
    fn join_readers(self) -> Result<()> {
        self.events.join().map_err(|_| anyhow::anyhow!("events thread panicked"))?;
        self.push.join().map_err(|_| anyhow::anyhow!("push thread panicked"))?;
        Ok(())
    }
}

/// Serves HTTP (and runs the async feed) until SIGINT or SIGTERM, then stops both.
async fn serve_until_signal(
    args: &ServeArgs,
    plan: &Plan,
    engine: &EngineHandle,
    beside: &Beside,
    api: Arc<AppState>,
    history: Option<(String, Arc<history::WriterStatus>)>,
    stop: &CancellationToken,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    println!("hundredx listening on http://{addr}");
    println!("markets: {}", plan.symbols().join(", "));
    println!(
        "try:  curl -s -X POST http://{addr}/api/v1/user/signup -H 'content-type: application/json' \\\n        -d '{{\"email\":\"me@example.com\",\"password\":\"correct horse\"}}'"
    );
    if let Some((url, status)) = history {
        let store = history::Store::open(&url, &plan.markets, args.history.read_connections)
            .await
            .context("opening the history store for reading")?;
        api.attach_history(Arc::new(store), Some(status));
    }
    // The API holds submitters of the engine: it is the server's alone, and gone with it,
    // before the engine stops.
    let server = tokio::spawn(hundredx_http::serve(listener, api, stop.clone().cancelled_owned()));
    let feed = spawn_async_feed(args, &plan.feed_kind, engine, &plan.markets, &beside.health, stop);
    log_status_until_signal(engine, Duration::from_secs(args.status_interval)).await;
    stop.cancel();
    if let Some(t) = feed {
        let _ = t.await;
    }
    server.await.context("HTTP server task")?.context("HTTP server")?;
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
    stop: CancellationToken,
    pause: Duration,
) -> Result<thread::JoinHandle<()>> {
    Ok(thread::Builder::new().name("hundredx-feed".into()).spawn(move || {
        while !stop.is_cancelled() {
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
/// `stop` is cancelled; the synthetic feed has a thread of its own ([`spawn_synthetic`]).
fn spawn_async_feed(
    args: &ServeArgs,
    kind: &FeedKind,
    engine: &EngineHandle,
    markets: &[MarketConfig],
    health: &Arc<FeedHealth>,
    stop: &CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    let sink = || EngineSink(engine.submitter(), Arc::clone(health));
    match kind {
        FeedKind::Backpack => {
            let sink = sink();
            let cfg = ClientConfig::new(&args.backpack_url, markets.to_vec());
            let stopped = stop.clone().cancelled_owned();
            Some(tokio::spawn(backpack_feed::client::run(cfg, Arc::clone(health), sink, stopped)))
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
