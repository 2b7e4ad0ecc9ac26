//! `hundredx hedger` (docs/DESIGN.md, "A-book hedging"): follows the clients' open exposure in
//! the history store (the engine's changes, as `serve` or the `history` process writes them),
//! routes the A-book groups one-for-one and the rest beyond each market's band to a liquidity
//! venue (Backpack's order API, signed with the key in `HUNDREDX_VENUE_KEY` or a file), and
//! keeps its own journal in `--state-dir`. `/metrics` and `/status` on `--metrics-listen`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use base64::Engine as _;
use engine_core::config::MarketConfig;
use engine_core::num::parse_fixed;
use hedger::plan::Policy;
use hedger::run::{Config, Hedger, MarketHedge, Status};
use hedger::venue::backpack::Backpack;
use hedger::{Book, BoxFuture, Exposure};

use super::args::DataArgs;

#[derive(clap::Args, Debug)]
pub struct HedgerArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// The history store to follow (`postgres://…`, or `sqlite://PATH`); default: `serve`'s,
    /// `history.sqlite` in the data directory.
    #[arg(long = "history-database", env = "HUNDREDX_HISTORY_DATABASE", hide_env_values = true)]
    pub history_database: Option<String>,
    /// The venue's REST API.
    #[arg(long, default_value = "https://api.backpack.exchange")]
    pub venue_url: String,
    /// A file holding the venue API key's ED25519 seed, base64 (else `HUNDREDX_VENUE_KEY`).
    #[arg(long)]
    pub venue_key_file: Option<PathBuf>,
    /// Where the hedger keeps its journal (default: `hedger/` in the data directory).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// A hedged market with its venue symbol, band and minimum order in base units:
    /// `BTC_USDC=BTC_USDC_PERP:0.5:0.001` (repeatable).
    #[arg(long = "hedge", required = true)]
    pub hedge: Vec<String>,
    /// Client groups hedged one-for-one (the A-book), comma-separated names.
    #[arg(long, value_delimiter = ',')]
    pub a_book_groups: Vec<String>,
    /// Time between rounds.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub interval_ms: u64,
    /// Failed rounds in a row before it stops hedging.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub max_errors: u32,
    /// The venue's answer timeout.
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub venue_timeout_ms: u64,
    /// Serve `/metrics` and `/status` here.
    #[arg(long)]
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// The clients' exposure from the history store.
struct HistoryBook {
    store: history::Store,
    symbols: Vec<String>,
    a_book: Vec<u16>,
}

impl Book for HistoryBook {
    fn exposure(&self) -> BoxFuture<'_, Result<BTreeMap<String, Exposure>, String>> {
        Box::pin(async move {
            let rows = self.store.open_exposure(&self.a_book).await.map_err(|e| e.to_string())?;
            Ok(rows
                .into_iter()
                .filter_map(|(m, a_book, b_book)| {
                    let symbol = self.symbols.get(usize::from(m.0))?.clone();
                    Some((symbol, Exposure { a_book, b_book }))
                })
                .collect())
        })
    }
}

pub fn run(args: HedgerArgs) -> Result<()> {
    let cfg = args.data.engine_config()?;
    let markets = hedged_markets(&args.hedge, &cfg.markets)?;
    let a_book = args
        .a_book_groups
        .iter()
        .map(|name| {
            let i = cfg
                .groups
                .iter()
                .position(|g| &g.name == name)
                .or((name == "default").then_some(0));
            i.and_then(|i| u16::try_from(i).ok())
                .with_context(|| format!("no client group {name:?}"))
        })
        .collect::<Result<Vec<u16>>>()?;
    let seed = venue_seed(args.venue_key_file.as_deref())?;
    let url = match &args.history_database {
        Some(u) => super::args::check_database_url(u)?,
        None => history::Store::sqlite_url(&args.data.data_dir.join("history.sqlite")),
    };
    let state_dir = args.state_dir.clone().unwrap_or_else(|| args.data.data_dir.join("hedger"));
    let journal = hedger::journal::Journal::open(&state_dir)?;
    let state_dir_for_status = state_dir.clone();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async move {
        let store = history::Store::open(&url, &cfg.markets, 2).await.context("opening the history store")?;
        let symbols = cfg.markets.iter().map(|m| m.symbol.clone()).collect();
        let book = HistoryBook { store, symbols, a_book };
        let venue = Backpack::new(&args.venue_url, seed, Duration::from_millis(args.venue_timeout_ms))?;
        tracing::info!(venue = %args.venue_url, api_key = %venue.api_key(), markets = ?markets.keys().collect::<Vec<_>>(), "hedger: starting");
        let h = Hedger::new(venue, book, journal, Config { markets, max_errors: args.max_errors });
        if let Some(listen) = args.metrics_listen {
            serve_status(listen, h.status(), state_dir_for_status).await?;
        }
        h.run(Duration::from_millis(args.interval_ms), hundredx::shutdown_signal()).await;
        tracing::info!("hedger: stopped");
        Ok(())
    })
}

/// `--hedge SYMBOL=VENUE:BAND:MIN` for each market.
fn hedged_markets(
    specs: &[String],
    markets: &[MarketConfig],
) -> Result<BTreeMap<String, MarketHedge>> {
    let mut out = BTreeMap::new();
    for spec in specs {
        let bad = || format!("--hedge {spec:?}: SYMBOL=VENUE_SYMBOL:BAND:MIN_ORDER");
        let (symbol, rest) = spec.split_once('=').with_context(bad)?;
        let mut parts = rest.split(':');
        let (Some(venue), Some(band), Some(min), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            bail!(bad());
        };
        let m = markets
            .iter()
            .find(|m| m.symbol == symbol)
            .with_context(|| format!("no market {symbol}"))?;
        let steps =
            |v: &str| parse_fixed(v, m.qty_decimals).map_err(|e| anyhow::anyhow!("{}: {e}", bad()));
        let policy = Policy { band: steps(band)?, min_order: steps(min)?.max(1) };
        out.insert(
            symbol.to_owned(),
            MarketHedge { venue_symbol: venue.to_owned(), qty_decimals: m.qty_decimals, policy },
        );
    }
    Ok(out)
}

/// The venue key's 32-byte seed: from a file, else the environment (never the command line).
fn venue_seed(file: Option<&std::path::Path>) -> Result<[u8; 32]> {
    let text = match file {
        Some(f) => {
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?
        }
        None => std::env::var("HUNDREDX_VENUE_KEY")
            .context("the venue key: set HUNDREDX_VENUE_KEY or --venue-key-file")?,
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .context("the venue key is not base64")?;
    <[u8; 32]>::try_from(bytes)
        .map_err(|_| anyhow::anyhow!("the venue key is not a 32-byte ED25519 seed"))
}

/// `/metrics` and `/status` from the hedger's status.
async fn serve_status(
    listen: std::net::SocketAddr,
    status: Arc<Mutex<Status>>,
    state_dir: PathBuf,
) -> Result<()> {
    let listener =
        tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
    tracing::info!(addr = %listener.local_addr()?, "hedger: /metrics and /status");
    let read = move || status.lock().map(|s| s.clone()).unwrap_or_default();
    let for_status = read.clone();
    let app = Router::new()
        .route(
            "/status",
            get(move || {
                let s = for_status();
                async move { axum::Json(s) }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let s = read();
                async move { metrics(&s) }
            }),
        )
        .route(
            "/days",
            get(move |q: axum::extract::Query<DaysQuery>| days(state_dir.clone(), q.0)),
        );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "hedger status listener ended");
        }
    });
    Ok(())
}

/// `/days?from=D&to=D` (days since the epoch; at most 366).
#[derive(Debug, serde::Deserialize)]
struct DaysQuery {
    from: u64,
    to: u64,
}

async fn days(state_dir: PathBuf, q: DaysQuery) -> axum::response::Response {
    if q.to < q.from || q.to - q.from > 366 {
        return (axum::http::StatusCode::BAD_REQUEST, "from..=to, at most 366 days")
            .into_response();
    }
    let read =
        tokio::task::spawn_blocking(move || hedger::journal::days(&state_dir, q.from, q.to)).await;
    match read {
        Ok(Ok(days)) => axum::Json(days).into_response(),
        Ok(Err(e)) => (axum::http::StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
        Err(e) => (axum::http::StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

fn metrics(s: &Status) -> axum::response::Response {
    use prometheus_client::encoding::EncodeLabelSet;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::gauge::Gauge;
    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct Counter {
        counter: &'static str,
    }
    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct Market {
        market: String,
    }
    let mut registry = prometheus_client::registry::Registry::with_prefix("hundredx");
    let hedger = Family::<Counter, Gauge>::default();
    registry.register(
        "hedger",
        "The hedger (halted, consecutive_errors, orders, pending, rounds, cash_micro_usdc)",
        hedger.clone(),
    );
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    for (counter, v) in [
        ("halted", i64::from(s.halted.is_some())),
        ("consecutive_errors", i64::from(s.consecutive_errors)),
        ("orders", n(s.orders)),
        ("pending", n(s.pending as u64)),
        ("rounds", n(s.rounds)),
        ("cash_micro_usdc", i64::try_from(s.cash_micros).unwrap_or(i64::MAX)),
    ] {
        hedger.get_or_create(&Counter { counter }).set(v);
    }
    let position = Family::<Market, Gauge>::default();
    registry.register(
        "hedger_position_steps",
        "The hedge position per market, in its quantity steps",
        position.clone(),
    );
    for (market, v) in &s.positions {
        position.get_or_create(&Market { market: market.clone() }).set(*v);
    }
    let mut out = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], out)
        .into_response()
}

/// `serve --hedger-url`: the console's view of a running hedger's `/status`.
#[derive(Debug)]
pub struct HedgerLink {
    url: String,
    client: reqwest::Client,
}

impl HedgerLink {
    /// A link to the hedger whose `--metrics-listen` answers at `url` (`http://HOST:PORT`).
    pub fn new(url: &str) -> Result<HedgerLink> {
        // reqwest's TLS needs the process's crypto provider (a plain-HTTP link too).
        price_feed::client::install_crypto_provider();
        let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
        Ok(HedgerLink { url: url.trim_end_matches('/').to_owned(), client })
    }

    async fn get(&self, path: &str) -> Result<String, String> {
        let resp = self
            .client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("hedger answered {}", resp.status()));
        }
        let body = resp.text().await.map_err(|e| e.to_string())?;
        if body.len() > 1 << 20 {
            return Err("hedger reply too large".into());
        }
        Ok(body)
    }
}

impl ground::ports::HedgeStatus for HedgerLink {
    fn status(&self) -> BoxFuture<'_, Result<String, String>> {
        Box::pin(self.get("/status"))
    }

    fn days(&self, from_day: u64, to_day: u64) -> BoxFuture<'_, Result<String, String>> {
        Box::pin(async move { self.get(&format!("/days?from={from_day}&to={to_day}")).await })
    }
}
