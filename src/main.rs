//! `hundredx`: the binary that wires the engine to its adapters.
//!
//! - `hundredx serve`: the whole system in one process — the engine thread between its rings and
//!   a price feed. The HTTP API, journal and live Backpack feed arrive with their issues; until
//!   then `serve` runs the engine against the synthetic feed and logs what it does.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use backpack_feed::synthetic::{SyntheticConfig, SyntheticFeed};
use clap::{Parser, Subcommand};
use engine_core::prelude::*;
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
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
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
}

fn now_ns() -> u64 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match Cli::parse().command {
        Command::Serve(args) => serve(args),
    }
}

fn serve(args: ServeArgs) -> Result<()> {
    match args.feed.as_str() {
        "synthetic" => {}
        "backpack" => bail!(
            "the live Backpack feed is not available yet (it is built by the feed issue); \
             run with `--feed synthetic`"
        ),
        f if f.starts_with("replay:") => {
            bail!("the replay feed is not available yet; run with `--feed synthetic`")
        }
        other => bail!("unknown feed {other:?}: expected backpack, synthetic or replay:FILE"),
    }
    let cfg = EngineConfig {
        pin_core: args.pin_core,
        wait: if args.busy_spin { WaitMode::BusySpin } else { WaitMode::Adaptive },
        ..EngineConfig::default()
    };
    let symbols: Vec<String> = cfg.markets.iter().map(|m| m.symbol.clone()).collect();
    let mut feed = SyntheticFeed::new(
        SyntheticConfig {
            seed: args.seed,
            volatility_ppm: args.volatility_ppm,
            ..SyntheticConfig::default()
        },
        &cfg.markets,
    );
    let engine = EngineHandle::start(cfg).context("starting the engine")?;
    info!(markets = ?symbols, feed = "synthetic", seed = args.seed, "engine started");

    let events = engine.subscribe(Subscription::Events, 4_096);
    let stop = Arc::new(AtomicBool::new(false));
    let feed_thread = {
        let stop = Arc::clone(&stop);
        let mut submitter = engine.submitter();
        let pause = Duration::from_secs(1) / args.ticks_per_second;
        thread::Builder::new().name("hundredx-feed".into()).spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let now = now_ns();
                if let Some(tick) = feed.next_tick(now / 1_000) {
                    submitter.send(now, CommandKind::PriceTick(tick));
                }
                thread::sleep(pause);
            }
        })?
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

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut status = tokio::time::interval(Duration::from_secs(args.status_interval));
        status.tick().await;
        loop {
            tokio::select! {
                r = tokio::signal::ctrl_c() => {
                    r.context("waiting for ctrl-c")?;
                    info!("ctrl-c: shutting down");
                    return anyhow::Ok(());
                }
                _ = status.tick() => {
                    let c = engine.counters();
                    info!(commands = c.commands, ticks = c.ticks_applied, ticks_rejected = c.ticks_rejected,
                        opened = c.opened, liquidations = c.liquidations, events_dropped = engine.events_dropped(),
                        "status");
                }
            }
        }
    })?;

    stop.store(true, Ordering::Relaxed);
    feed_thread.join().map_err(|_| anyhow::anyhow!("feed thread panicked"))?;
    let state = engine.shutdown().context("stopping the engine")?;
    events_thread.join().map_err(|_| anyhow::anyhow!("events thread panicked"))?;
    let s = state.summary();
    info!(accounts = s.accounts, open_positions = s.open_positions, state_hash = %engine_core::hash::hex(&s.hash),
        "engine stopped cleanly");
    Ok(())
}
