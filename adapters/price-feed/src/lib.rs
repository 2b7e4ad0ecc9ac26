//! Price feeds for the engine: live venues behind one seam, and offline feeds.
//!
//! Layout (barter-rs style: one trait, one folder per venue; nautilus style: pure parsing apart
//! from I/O):
//! - [`connector`]: the [`Connector`] trait, what differs per venue (URL, subscribe frames,
//!   parse, keepalive).
//! - [`venues`]: one folder per venue ([`venues::backpack`]), and [`venues::ALL`].
//! - [`frame`]: what every parser produces, the exact price checks ([`frame::quote`]) and the
//!   dedup by update id. Pure.
//! - [`client`]: the live WebSocket client, written once (reconnect with backoff and jitter,
//!   watchdog, keepalive, dedup, health).
//! - [`health`]: counters and last-tick times for `/healthz` and `/metrics`.
//! - [`klines`]: what a venue's candles look like (pure); [`backfill`]: reading them once at
//!   start for the chart.
//! - [`synthetic`]: a seeded random walk per market (machines without internet, reproducible
//!   runs); [`replay`]: a recording played through its venue's parser.
//! - [`sink`]: the engine's in-ring as a `ground::ports::TickSink`.
//! - [`sources`]: several venues at once, each a source of the markets' index price.
//!
//! [`FeedKind`] is what `--feed` names, parsed here, and [`run`] is the one place that starts
//! each kind.

pub mod backfill;
pub mod client;
pub mod connector;
pub mod frame;
pub mod health;
pub mod klines;
pub mod replay;
pub mod sink;
pub mod sources;
pub mod synthetic;
pub mod venues;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use engine_core::command::MarketId;
use engine_core::config::MarketConfig;
use engine_core::num::Price;
use ground::ports::TickSink;

pub use connector::Connector;

use crate::client::ClientConfig;
use crate::health::FeedHealth;
use crate::replay::ReplayPace;
use crate::synthetic::{SyntheticConfig, SyntheticFeed};

/// Which price feed runs: `--feed <venue>`, `<venue>,<venue>,…`, `synthetic` or `replay:FILE`.
#[derive(Debug, Clone)]
pub enum FeedKind {
    /// A live venue.
    Venue(&'static dyn Connector),
    /// Several live venues, each a source of every market's index price (source id = order).
    Sources(Vec<&'static dyn Connector>),
    /// The seeded random walk.
    Synthetic,
    /// A recording of `venue`'s frames.
    Replay {
        /// Whose frames the file holds.
        venue: &'static dyn Connector,
        /// The recording.
        path: PathBuf,
    },
}

/// `--feed` named no feed.
#[derive(Debug, thiserror::Error)]
pub enum FeedKindError {
    /// Not a venue, `synthetic` or `replay:FILE`.
    #[error("unknown feed {0:?}: expected one of {1}, synthetic or replay:FILE")]
    Unknown(String, String),
    /// `replay:FILE` names no file.
    #[error("replay file {0} not found")]
    NoFile(PathBuf),
    /// A list of venues with a repeat, or longer than a market's sources may be.
    #[error("--feed {0:?}: give 2 to 8 different venues")]
    Sources(String),
}

impl FeedKind {
    /// From `--feed`. `replay:FILE` plays a recording of the default venue (Backpack), as
    /// `hundredx feed --record` makes.
    pub fn parse(s: &str) -> Result<FeedKind, FeedKindError> {
        if s == "synthetic" {
            return Ok(FeedKind::Synthetic);
        }
        if let Some(venue) = venues::by_name(s) {
            return Ok(FeedKind::Venue(venue));
        }
        if s.contains(',') {
            return FeedKind::parse_sources(s);
        }
        match s.strip_prefix("replay:") {
            Some(path) if !path.is_empty() => {
                let path = PathBuf::from(path);
                if !path.is_file() {
                    return Err(FeedKindError::NoFile(path));
                }
                Ok(FeedKind::Replay { venue: venues::ALL[0], path })
            }
            _ => {
                let names: Vec<&str> = venues::ALL.iter().map(|v| v.name()).collect();
                Err(FeedKindError::Unknown(s.to_owned(), names.join(", ")))
            }
        }
    }

    fn parse_sources(s: &str) -> Result<FeedKind, FeedKindError> {
        let mut list: Vec<&'static dyn Connector> = Vec::new();
        for name in s.split(',') {
            let venue = venues::by_name(name).ok_or_else(|| {
                let names: Vec<&str> = venues::ALL.iter().map(|v| v.name()).collect();
                FeedKindError::Unknown(name.to_owned(), names.join(", "))
            })?;
            if list.iter().any(|v| v.name() == venue.name()) {
                return Err(FeedKindError::Sources(s.to_owned()));
            }
            list.push(venue);
        }
        if list.len() > engine_core::limits::SOURCES_MAX {
            return Err(FeedKindError::Sources(s.to_owned()));
        }
        Ok(FeedKind::Sources(list))
    }

    /// The feed's name in `/healthz`.
    pub fn name(&self) -> &'static str {
        match self {
            FeedKind::Venue(v) => v.name(),
            FeedKind::Sources(_) => "sources",
            FeedKind::Synthetic => "synthetic",
            FeedKind::Replay { .. } => "replay",
        }
    }
}

/// How a feed runs, whatever its kind (each kind reads what concerns it).
#[derive(Debug, Clone)]
pub struct FeedOptions {
    /// The engine's markets, in market-id order.
    pub markets: Vec<MarketConfig>,
    /// A venue's endpoint instead of its public one (a local mock, a proxy).
    pub url: Option<String>,
    /// Each venue's endpoint by name, when several run (`--feed-url okx=wss://…`).
    pub urls: BTreeMap<String, String>,
    /// The venue's symbol per engine symbol, where the venue's default mapping is not right
    /// (e.g. `BTC_USDC` -> `BTC-USD` on Coinbase).
    pub symbols: BTreeMap<String, String>,
    /// The synthetic walk's settings.
    pub synthetic: SyntheticConfig,
    /// Pause between two synthetic ticks.
    pub synthetic_pause: Duration,
    /// Where the synthetic walk resumes each market: (market, last update id, last bid).
    pub resume: Vec<(MarketId, u64, Price)>,
    /// How fast a recording plays.
    pub replay_pace: ReplayPace,
}

impl FeedOptions {
    /// Defaults for `markets`: public endpoints, seed 42, 30 synthetic ticks a second, recorded
    /// pace.
    pub fn new(markets: Vec<MarketConfig>) -> FeedOptions {
        FeedOptions {
            markets,
            url: None,
            urls: BTreeMap::new(),
            symbols: BTreeMap::new(),
            synthetic: SyntheticConfig::default(),
            synthetic_pause: Duration::from_millis(33),
            resume: Vec::new(),
            replay_pace: ReplayPace::Recorded,
        }
    }
}

/// Runs the feed `kind` into `sink` until `shutdown` (a replay also ends with its file).
/// Returns the ticks published. Several venues ([`FeedKind::Sources`]) go through
/// [`run_sources`] instead: their quotes are not plain ticks.
pub async fn run<S: TickSink>(
    kind: &FeedKind,
    opts: FeedOptions,
    health: Arc<FeedHealth>,
    mut sink: S,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<u64> {
    match kind {
        FeedKind::Venue(venue) => {
            let url = opts.url.as_deref().unwrap_or(venue.default_url());
            let cfg =
                ClientConfig { symbols: opts.symbols, ..ClientConfig::new(url, opts.markets) };
            client::run(*venue, cfg, Arc::clone(&health), sink, shutdown).await;
        }
        FeedKind::Synthetic => {
            let mut feed = SyntheticFeed::new(opts.synthetic, &opts.markets);
            for &(market, update_id, bid) in &opts.resume {
                feed.resume(market, update_id, bid);
            }
            synthetic::drive(feed, opts.synthetic_pause, &health, &mut sink, shutdown).await;
        }
        FeedKind::Sources(_) => {
            let why = "several venues make an index: run them with price_feed::run_sources";
            return Err(std::io::Error::new(std::io::ErrorKind::Unsupported, why));
        }
        FeedKind::Replay { venue, path } => {
            let pace = opts.replay_pace;
            let markets = (&opts.markets[..], &opts.symbols);
            let replayed = replay::replay(*venue, path, markets, &health, &mut sink, pace);
            tokio::select! {
                r = replayed => { r?; }
                () = shutdown => {}
            }
        }
    }
    Ok(health.ticks.load(std::sync::atomic::Ordering::Relaxed))
}

/// Runs several venues (`sources`, in source-id order, with their health) into `sink` until
/// `shutdown`, with the clock that lets the engine's guards see silence.
pub async fn run_sources<S: sources::SourceSink + Clone>(
    sources: &[sources::Source],
    opts: FeedOptions,
    sink: S,
    shutdown: impl Future<Output = ()>,
) {
    let cfg = |venue: &'static dyn Connector| {
        let url =
            opts.urls.get(venue.name()).cloned().unwrap_or_else(|| venue.default_url().to_owned());
        ClientConfig {
            symbols: opts.symbols.clone(),
            ..ClientConfig::new(&url, opts.markets.clone())
        }
    };
    sources::run(sources, cfg, sink, shutdown).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_venue_is_named_once_and_parses_from_its_name() {
        for v in venues::ALL {
            assert!(
                matches!(FeedKind::parse(v.name()), Ok(FeedKind::Venue(p)) if p.name() == v.name())
            );
            assert_eq!(venues::ALL.iter().filter(|o| o.name() == v.name()).count(), 1);
        }
        assert!(matches!(FeedKind::parse("synthetic"), Ok(FeedKind::Synthetic)));
        let e = FeedKind::parse("nasdaq").unwrap_err().to_string();
        assert!(e.contains("backpack") && e.contains("synthetic"), "{e}");
        assert!(matches!(FeedKind::parse("replay:/no/such/file"), Err(FeedKindError::NoFile(_))));
        assert!(FeedKind::parse("replay:").is_err());
        let Ok(FeedKind::Sources(list)) = FeedKind::parse("binance,okx,coinbase") else {
            panic!("three venues")
        };
        assert_eq!(
            list.iter().map(|v| v.name()).collect::<Vec<_>>(),
            ["binance", "okx", "coinbase"]
        );
        assert!(matches!(FeedKind::parse("okx,okx"), Err(FeedKindError::Sources(_))));
        assert!(matches!(FeedKind::parse("okx,nasdaq"), Err(FeedKindError::Unknown(..))));
    }
}
