//! `hundredx serve`: the whole system in one process.

use std::path::PathBuf;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use engine_core::prelude::*;
use hundredx::{DurableEngine, DurableOptions, now_ns};
use hundredx_http::{ApiConfig, AppState};
use price_feed::health::FeedHealth;
use price_feed::replay::ReplayPace;
use price_feed::sink::EngineSink;
use price_feed::synthetic::SyntheticConfig;
use price_feed::{FeedKind, FeedOptions};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::args::{DurabilityArgs, EdgeArgs, HistoryArgs, jwt_secret, random_secret};

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
    /// The venue's WebSocket endpoint instead of its public one (a local server can stand in
    /// for it); with several venues, `VENUE=URL`, repeated.
    #[arg(long, visible_alias = "backpack-url")]
    pub feed_url: Vec<String>,
    /// The venue's symbol for an engine market where its default is not right, comma-separated
    /// `ENGINE=VENUE` pairs (`BTC_USDC=BTC-USD`; defaults: Backpack the engine's own, Binance
    /// `BTCUSDC`, OKX and Coinbase `BTC-USDC`).
    #[arg(long, value_delimiter = ',', value_parser = super::args::symbol_pair)]
    pub feed_symbols: Vec<(String, String)>,
    /// With `--feed replay:FILE`: play as fast as possible instead of at the recorded pace.
    #[arg(long)]
    pub replay_fast: bool,
    /// The REST endpoint of the venue whose recent candles fill the chart at start (the feed's
    /// venue, or its first); by default the venue's public one, read only when the feed reads
    /// the venue's public stream too.
    #[arg(long)]
    pub backfill_url: Option<String>,
    /// Do not read a venue's recent candles at start: the chart shows the engine's alone.
    #[arg(long)]
    pub no_backfill: bool,
    /// A running `hundredx hedger`'s status address (its `--metrics-listen`, as
    /// `http://HOST:PORT`): the console shows the A-book's position and P&L from it.
    #[arg(long)]
    pub hedger_url: Option<String>,
    /// Disable `POST /user/deposit` and the demo balance of new accounts.
    #[arg(long)]
    pub no_demo_deposits: bool,
    /// Price feed: a venue (`backpack`, live), `synthetic` (seeded random walk, offline) or
    /// `replay:FILE` (a recording of Backpack's frames).
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

/// `hundredx serve`: the components started in order — the history writer, the engine, the
/// threads beside it (event log, financing, push), the HTTP server and the price feed —
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
        let mut cfg = engine_config(args)?;
        if let FeedKind::Sources(venues) = &feed_kind {
            let n = u8::try_from(venues.len()).context("at most 8 venues")?;
            for m in &mut cfg.markets {
                match m.sources {
                    0 => m.sources = n, // every venue is a source of every market
                    s if s == n => {}
                    s => {
                        bail!("market {} has {s} price sources, --feed names {n} venues", m.symbol)
                    }
                }
            }
        }
        let mut api = ApiConfig::new(jwt_secret, cfg.markets.clone());
        api.set_groups(&cfg.groups);
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

/// The threads beside the engine: the financing scheduler (stopped by the token), the event
/// log and the push fan-out (ending when the engine's subscriptions do); and the price feed's
/// settings, the feed itself running on the async runtime. Started with the API's state, which
/// the HTTP server takes.
struct Beside {
    financing: Option<thread::JoinHandle<()>>,
    events: thread::JoinHandle<()>,
    push: thread::JoinHandle<()>,
    feed: FeedOptions,
    health: Arc<FeedHealth>,
    /// With several venues: each one's health.
    sources: Vec<price_feed::sources::Source>,
}

impl Beside {
    fn start(
        args: &ServeArgs,
        plan: &Plan,
        engine: &EngineHandle,
        stop: CancellationToken,
    ) -> Result<(Beside, Arc<AppState>)> {
        let health = FeedHealth::new(plan.markets.len());
        let sources: Vec<price_feed::sources::Source> = match &plan.feed_kind {
            FeedKind::Sources(venues) => venues
                .iter()
                .map(|&venue| price_feed::sources::Source {
                    venue,
                    health: FeedHealth::new(plan.markets.len()),
                })
                .collect(),
            _ => Vec::new(),
        };
        let feed = feed_options(args, plan, engine)?;
        let events = spawn_event_log(engine.subscribe(Subscription::Events, 4_096))?;
        let interval = Duration::from_secs(args.financing_interval_secs);
        let financing = super::financing::spawn(engine.submitter(), &plan.markets, interval, stop)?;
        let report: Arc<dyn hundredx_http::FeedStatus> = Arc::new(FeedReport {
            kind: plan.feed_kind.name(),
            health: Arc::clone(&health),
            sources: sources.clone(),
        });
        let api = AppState::with_feed(plan.api.clone(), engine.submitter(), Some(report));
        let changes = engine.subscribe(Subscription::ChangesBestEffort, 65_536);
        let push = spawn_push_feed(changes, api.hub())?;
        Ok((Beside { financing, events, push, feed, health, sources }, api))
    }

    /// The threads the token stops (before the engine stops).
    fn join_feeds(&mut self) -> Result<()> {
        if let Some(t) = self.financing.take() {
            t.join().map_err(|_| anyhow::anyhow!("the financing thread panicked"))?;
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

/// The price feed's settings from the flags; a synthetic feed resumes after the recovered prices.
fn feed_options(args: &ServeArgs, plan: &Plan, engine: &EngineHandle) -> Result<FeedOptions> {
    let synthetic = SyntheticConfig {
        seed: args.seed,
        volatility_ppm: args.volatility_ppm,
        ..SyntheticConfig::default()
    };
    let resume = match plan.feed_kind {
        FeedKind::Synthetic => recovered_prices(engine)?,
        _ => Vec::new(),
    };
    Ok(FeedOptions {
        url: super::args::feed_urls(&args.feed_url)?.0,
        urls: super::args::feed_urls(&args.feed_url)?.1,
        symbols: args.feed_symbols.iter().cloned().collect(),
        synthetic,
        synthetic_pause: Duration::from_secs(1) / args.ticks_per_second,
        resume,
        replay_pace: if args.replay_fast { ReplayPace::Flat } else { ReplayPace::Recorded },
        ..FeedOptions::new(plan.markets.clone())
    })
}

/// Serves HTTP and runs the price feed until SIGINT or SIGTERM, then stops both.
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
    if let Some(url) = &args.hedger_url {
        api.attach_hedger(Arc::new(super::hedger::HedgerLink::new(url)?));
    }
    // The console's stress runs read a copy of the state from the data directory.
    let stress =
        hundredx::stress::DataDirStress::new(args.durability.data_dir.clone(), plan.cfg.clone());
    api.attach_stress(Arc::new(stress));
    let backfill = super::backfill::BackfillArgs {
        url: args.backfill_url.clone(),
        off: args.no_backfill,
        feed_url_set: !args.feed_url.is_empty(),
    };
    let backfill = super::backfill::source(&plan.feed_kind, &backfill).map(|source| {
        let symbols = args.feed_symbols.iter().cloned().collect();
        super::backfill::spawn(source, plan.markets.clone(), symbols, Arc::clone(&api), stop)
    });
    // The API holds submitters of the engine: it is the server's alone, and gone with it,
    // before the engine stops.
    let server = tokio::spawn(hundredx_http::serve(listener, api, stop.clone().cancelled_owned()));
    let feed = spawn_feed(&plan.feed_kind, beside, engine, stop);
    log_status_until_signal(engine, Duration::from_secs(args.status_interval)).await;
    stop.cancel();
    let _ = feed.await;
    if let Some(backfill) = backfill {
        let _ = backfill.await;
    }
    server.await.context("HTTP server task")?.context("HTTP server")?;
    Ok(())
}

/// The feed's health as `/healthz` and `/metrics` show it; with several venues, each one's.
struct FeedReport {
    kind: &'static str,
    health: Arc<FeedHealth>,
    sources: Vec<price_feed::sources::Source>,
}

impl hundredx_http::FeedStatus for FeedReport {
    fn health(&self) -> serde_json::Value {
        let now = now_ns();
        let mut health = self.health.summary(self.kind, now);
        if !self.sources.is_empty() {
            let sources: Vec<serde_json::Value> =
                self.sources.iter().map(|s| s.health.summary(s.venue.name(), now)).collect();
            // The feed as a whole: connected while any venue is, its ticks and reconnects summed.
            let sum = |key: &str| sources.iter().filter_map(|s| s[key].as_u64()).sum::<u64>();
            health["connected"] = sources.iter().any(|s| s["connected"] == true).into();
            health["ticks"] = sum("ticks").into();
            health["reconnects"] = sum("reconnects").into();
            health["sources"] = serde_json::Value::Array(sources);
        }
        health
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        self.health.counters()
    }

    fn source_counters(&self) -> Vec<(&'static str, Vec<(&'static str, u64)>)> {
        self.sources.iter().map(|s| (s.venue.name(), s.health.counters())).collect()
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

/// Where each market's price stands after recovery: (market, last update id, last bid). A
/// restarted synthetic feed continues from there, since the engine refuses update ids it has
/// already seen and starting again from 1 would leave every market stale.
fn recovered_prices(engine: &EngineHandle) -> Result<Vec<(MarketId, u64, Price)>> {
    let mut engine = engine.submitter();
    let r = engine
        .call(now_ns(), CommandKind::QueryMarkets, Duration::from_secs(5))
        .map_err(|e| anyhow::anyhow!("reading the recovered prices: {e}"))?;
    let prices = r.items.iter().filter_map(|item| match item {
        Item::Market(m) => Some((m.market, m.update_id, m.bid)),
        _ => None,
    });
    Ok(prices.collect())
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
                Output::Event(Event::PriceGuard { market, mode, fresh, agreeing }) => {
                    warn!(market = market.0, guard = mode.as_str(), fresh, agreeing,
                        "price guard: too few fresh, agreeing sources make the market reduce-only, none heard from halts it, agreement reopens it");
                }
                _ => {}
            }
        }
    })?)
}

/// The price feed into the engine's in-ring, until `stop` is cancelled or a replay ends: several
/// venues as the index's sources ([`price_feed::run_sources`]), any other kind as ticks
/// ([`price_feed::run`] dispatches).
fn spawn_feed(
    kind: &FeedKind,
    beside: &Beside,
    engine: &EngineHandle,
    stop: &CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let (kind, opts, health) = (kind.clone(), beside.feed.clone(), Arc::clone(&beside.health));
    let sink = EngineSink(engine.submitter(), Arc::clone(&health));
    let stopped = stop.clone().cancelled_owned();
    let sources = beside.sources.clone();
    tokio::spawn(async move {
        if let FeedKind::Sources(_) = kind {
            price_feed::run_sources(&sources, opts, sink, stopped).await;
            return info!(feed = kind.name(), "feed stopped");
        }
        match price_feed::run(&kind, opts, health, sink, stopped).await {
            Ok(n) => info!(ticks = n, feed = kind.name(), "feed stopped"),
            Err(e) => warn!(error = %e, feed = kind.name(), "feed failed"),
        }
    })
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
