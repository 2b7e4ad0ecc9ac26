//! `hundredx feed`: record a venue's frames, or publish ticks to `price-stream`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::{Context, Result, bail};
use engine_core::prelude::*;
use ground::ports::TickSink;
use price_feed::health::FeedHealth;
use price_feed::{FeedKind, FeedOptions};
use tracing::{info, warn};

use super::args::RedisArgs;

#[derive(clap::Args, Debug)]
pub struct FeedArgs {
    /// Write every frame received to this file (JSON lines).
    #[arg(long)]
    pub record: Option<PathBuf>,
    /// Publish ticks to this Redis's `price-stream` (signed with the bridge secret).
    #[command(flatten)]
    pub redis: RedisArgs,
    /// A venue (`backpack`); with --redis also `synthetic` or `replay:FILE`.
    #[arg(long, default_value = "backpack")]
    pub feed: String,
    /// Seed of the synthetic feed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// The venue's WebSocket endpoint instead of its public one.
    #[arg(long, visible_alias = "backpack-url")]
    pub feed_url: Vec<String>,
    /// The venue's symbol for an engine market where its default is not right, comma-separated
    /// `ENGINE=VENUE` pairs (`BTC_USDC=BTC-USD`; defaults: Backpack the engine's own, Binance
    /// `BTCUSDC`, OKX and Coinbase `BTC-USDC`).
    #[arg(long, value_delimiter = ',', value_parser = super::args::symbol_pair)]
    pub feed_symbols: Vec<(String, String)>,
    /// Markets, comma-separated (default: BTC_USDC, ETH_USDC, SOL_USDC).
    #[arg(long, value_delimiter = ',')]
    pub markets: Vec<String>,
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

pub fn run(args: FeedArgs) -> Result<()> {
    let mut markets = MarketConfig::defaults();
    if !args.markets.is_empty() {
        markets.retain(|m| args.markets.contains(&m.symbol));
    }
    let kind = FeedKind::parse(&args.feed)?;
    let opts = FeedOptions {
        url: super::args::feed_urls(&args.feed_url)?.0,
        urls: super::args::feed_urls(&args.feed_url)?.1,
        symbols: args.feed_symbols.iter().cloned().collect(),
        synthetic: price_feed::synthetic::SyntheticConfig { seed: args.seed, ..Default::default() },
        ..FeedOptions::new(markets)
    };
    if args.redis.given() {
        let (target, key) = args.redis.link()?;
        return super::service::feed(&target, key, &kind, opts);
    }
    let Some(path) = args.record else {
        bail!("give --redis URL (publish to price-stream) or --record FILE");
    };
    let FeedKind::Venue(_) = kind else {
        bail!("--record records a venue's frames: --feed {} is none", args.feed);
    };
    let file =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let health = FeedHealth::new(opts.markets.len());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let recorder = Recorder(std::io::BufWriter::new(file));
    let stop = hundredx::shutdown_signal();
    runtime.block_on(price_feed::run(&kind, opts, Arc::clone(&health), recorder, stop))?;
    info!(frames = health.frames.load(Ordering::Relaxed), file = %path.display(), "recording stopped");
    Ok(())
}
