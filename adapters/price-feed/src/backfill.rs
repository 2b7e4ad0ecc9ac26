//! The chart's backfill, run once at start: every market's candles of every span from one
//! venue's kline endpoint ([`crate::klines::Klines`]), one request at a time, each bounded in
//! time ([`BACKFILL_REQUEST_TIMEOUT`]) and bytes ([`BACKFILL_BODY_BYTES_MAX`]).

use std::collections::BTreeMap;

use engine_core::command::MarketId;
use engine_core::config::MarketConfig;
use ground::history::SPANS;

use crate::connector::Connector;
use crate::frame::{Markets, ParseError};
use crate::klines::{
    BACKFILL_BODY_BYTES_MAX, BACKFILL_CANDLES_MAX, BACKFILL_REQUEST_TIMEOUT, VenueCandle, ordered,
};

/// Why one backfill request gave nothing.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    /// Connect, TLS, timeout or a non-2xx status.
    #[error("request failed: {0}")]
    Request(#[from] reqwest::Error),
    /// The body passed [`BACKFILL_BODY_BYTES_MAX`].
    #[error("body over {BACKFILL_BODY_BYTES_MAX} bytes")]
    TooLarge,
    /// Not the venue's documented shape, or a price that does not fit the market.
    #[error("bad body: {0}")]
    Parse(#[from] ParseError),
}

/// One market's candles of one span, or why there are none.
#[derive(Debug)]
pub struct Backfilled {
    /// The engine's market.
    pub market: MarketId,
    /// The span (`1m` …).
    pub span: &'static str,
    /// Oldest first.
    pub candles: Result<Vec<VenueCandle>, BackfillError>,
}

/// Reads the latest `limit` candles of every market in every span the venue has from
/// `venue`'s kline endpoint at `rest_url`, one request at a time. A failed request fails its
/// market and span only.
pub async fn fetch(
    venue: &dyn Connector,
    rest_url: &str,
    (markets, symbols): (&[MarketConfig], &BTreeMap<String, String>),
    limit: u32,
    now_ms: u64,
) -> Vec<Backfilled> {
    let Some(klines) = venue.klines() else { return Vec::new() };
    crate::client::install_crypto_provider();
    let client = match reqwest::Client::builder().timeout(BACKFILL_REQUEST_TIMEOUT).build() {
        Ok(client) => client,
        Err(e) => {
            tracing::warn!(error = %e, "backfill: no HTTP client");
            return Vec::new();
        }
    };
    let limit = limit.min(BACKFILL_CANDLES_MAX);
    let venue_markets = Markets::for_venue(markets, venue, symbols);
    let mut out = Vec::new();
    for symbol in venue_markets.symbols() {
        let market = venue_markets.get(symbol).expect("listed by the same table");
        for &(span, secs) in &SPANS {
            let secs = u64::try_from(secs).expect("spans are positive");
            let Some(path) = klines.path(symbol, span, secs, limit, now_ms) else { continue };
            let url = format!("{}{path}", rest_url.trim_end_matches('/'));
            let candles = get(&client, &url).await.and_then(|body| {
                let mut got = ordered(klines.parse(&body, market)?);
                let skip = got.len().saturating_sub(usize::try_from(limit).unwrap_or(usize::MAX));
                got.drain(..skip);
                Ok(got)
            });
            out.push(Backfilled { market: market.id, span, candles });
        }
    }
    out
}

/// The body of a GET, at most [`BACKFILL_BODY_BYTES_MAX`] bytes, read as it arrives.
async fn get(client: &reqwest::Client, url: &str) -> Result<String, BackfillError> {
    let mut res = client.get(url).send().await?.error_for_status()?;
    let mut body = Vec::new();
    while let Some(chunk) = res.chunk().await? {
        if body.len() + chunk.len() > BACKFILL_BODY_BYTES_MAX {
            return Err(BackfillError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|e| ParseError::Malformed(e.to_string()).into())
}
