//! The chart's history at start: a venue's recent candles, read once from its public kline
//! endpoint and shown before the engine's own (docs/DESIGN.md, `GET /api/v1/candles`). They
//! never reach the engine; a venue that cannot be read leaves the chart to the engine's candles.

use std::sync::Arc;

use engine_core::config::MarketConfig;
use hundredx_http::AppState;
use price_feed::klines::BACKFILL_CANDLES_MAX;
use price_feed::{Connector, FeedKind};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Which venue's candles, from where: `--backfill-url` names the endpoint; without it, the
/// venue's public one, and only when the feed reads the venue's public stream too (a feed from
/// a local or private endpoint never makes the server reach the internet for candles).
#[derive(Debug, Clone)]
pub struct BackfillArgs {
    /// The REST endpoint, or `None` for the venue's public one.
    pub url: Option<String>,
    /// `--no-backfill`.
    pub off: bool,
    /// Whether the feed's endpoint was set (`--feed-url`).
    pub feed_url_set: bool,
}

/// The venue and endpoint to read for `kind`, if any.
pub fn source(kind: &FeedKind, args: &BackfillArgs) -> Option<(&'static dyn Connector, String)> {
    let venue = match kind {
        FeedKind::Venue(v) => *v,
        FeedKind::Sources(list) => *list.first()?,
        FeedKind::Synthetic | FeedKind::Replay { .. } => return None,
    };
    // Off, or a feed from elsewhere without an endpoint named for the candles.
    if args.off || (args.url.is_none() && args.feed_url_set) {
        return None;
    }
    endpoint(venue, args.url.as_deref())
}

/// `venue` with `url`, or its public kline endpoint; `None` for a venue without candles.
pub fn endpoint(
    venue: &'static dyn Connector,
    url: Option<&str>,
) -> Option<(&'static dyn Connector, String)> {
    let public = venue.klines()?.rest_url();
    Some((venue, url.unwrap_or(public).to_owned()))
}

/// Reads the venue's candles for every market and span in the background and hands each set
/// to `api` as it arrives; gives up when `stop` is cancelled.
pub fn spawn(
    (venue, url): (&'static dyn Connector, String),
    markets: Vec<MarketConfig>,
    symbols: std::collections::BTreeMap<String, String>,
    api: Arc<AppState>,
    stop: &CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let stop = stop.clone();
    tokio::spawn(async move {
        let now_ms = ground::time::now_ms();
        let fetched = price_feed::backfill::fetch(
            venue,
            &url,
            (&markets, &symbols),
            BACKFILL_CANDLES_MAX,
            now_ms,
        );
        let got = tokio::select! {
            got = fetched => got,
            () = stop.cancelled() => return,
        };
        let (mut sets, mut candles) = (0usize, 0usize);
        for b in got {
            match b.candles {
                Ok(list) => {
                    sets += 1;
                    candles += list.len();
                    let list = list.iter().map(|c| ground::history::Candle {
                        start_ns: c.start_ms.saturating_mul(1_000_000),
                        open: c.open,
                        high: c.high,
                        low: c.low,
                        close: c.close,
                        ticks: 0,
                    });
                    api.attach_venue_candles(venue.name(), (b.market, b.span), list.collect());
                }
                Err(e) => warn!(venue = venue.name(), market = b.market.0, span = b.span,
                    error = %e, "backfill: no venue candles"),
            }
        }
        info!(venue = venue.name(), sets, candles, "backfill: venue candles read");
    })
}
