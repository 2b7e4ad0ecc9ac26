//! `hundredx feed`: record Backpack frames, or publish ticks to `price-stream`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::{Context, Result, bail};
use backpack_feed::client::{ClientConfig, FeedHealth};
use engine_core::prelude::*;
use ground::ports::TickSink;
use tracing::{info, warn};

use super::args::{FeedKind, RedisArgs};

#[derive(clap::Args, Debug)]
pub struct FeedArgs {
    /// Write every frame received to this file (JSON lines).
    #[arg(long)]
    pub record: Option<PathBuf>,
    /// Publish ticks to this Redis's `price-stream` (signed with the bridge secret).
    #[command(flatten)]
    pub redis: RedisArgs,
    /// With --redis: `backpack`, `synthetic` or `replay:FILE`.
    #[arg(long, default_value = "backpack")]
    pub feed: String,
    /// Seed of the synthetic feed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Backpack WebSocket endpoint.
    #[arg(long, default_value = backpack_feed::DEFAULT_BACKPACK_URL)]
    pub backpack_url: String,
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
    if args.redis.given() {
        let (target, key) = args.redis.link()?;
        let kind = FeedKind::parse(&args.feed)?;
        return super::service::feed(&target, key, &kind, &args.backpack_url, markets, args.seed);
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
