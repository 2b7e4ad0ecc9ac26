//! Plays a recording (JSON lines, as `hundredx feed --record` writes them) through the venue's
//! parser, so that a replayed run sees exactly what the live one saw.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use engine_core::command::Tick;
use engine_core::config::MarketConfig;
use ground::ports::TickSink;
use std::sync::atomic::Ordering;

use crate::client::handle;
use crate::connector::Connector;
use crate::frame::{Dedup, Frame, Markets};
use crate::health::FeedHealth;

/// How fast a recording is replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayPace {
    /// At the recorded pace (the frames' own event times).
    Recorded,
    /// As fast as the sink takes them.
    Flat,
}

/// Plays the frames recorded from `venue` at `path` into `sink`: at the recorded pace (from the
/// frames' event times) or as fast as possible. Returns the number of ticks published.
pub async fn replay<S: TickSink>(
    venue: &dyn Connector,
    path: &std::path::Path,
    (markets, symbols): (&[MarketConfig], &BTreeMap<String, String>),
    health: &FeedHealth,
    sink: &mut S,
    pace: ReplayPace,
) -> std::io::Result<u64> {
    let text = std::fs::read_to_string(path)?; // recordings are small; read before pacing starts
    let markets = Markets::for_venue(markets, venue, symbols);
    let mut dedup = Dedup::default();
    let started = Instant::now();
    let mut first_us: Option<u64> = None;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        health.frames.fetch_add(1, Ordering::Relaxed);
        let frame = venue.parse(line, &markets);
        if pace == ReplayPace::Recorded
            && let Ok(Frame::Tick(t)) = &frame
        {
            let first = *first_us.get_or_insert(t.exchange_time_us);
            let due = started + Duration::from_micros(t.exchange_time_us.saturating_sub(first));
            tokio::time::sleep_until(due.into()).await;
        }
        handle(health, &mut dedup, sink, frame);
    }
    Ok(health.ticks.load(Ordering::Relaxed))
}

/// The ticks of a recording's text, parsed and deduplicated by the venue's own code as a live
/// feed's would be, unpaced; at most `max` (then `None`: the caller says it is too long).
pub fn ticks_of(
    venue: &dyn Connector,
    text: &str,
    (markets, symbols): (&[MarketConfig], &BTreeMap<String, String>),
    max: usize,
) -> Option<Vec<Tick>> {
    struct Keep(Vec<Tick>);
    impl TickSink for Keep {
        fn publish(&mut self, tick: Tick) {
            self.0.push(tick);
        }
    }
    let markets_of = Markets::for_venue(markets, venue, symbols);
    let health = FeedHealth::new(markets.len());
    let mut dedup = Dedup::default();
    let mut keep = Keep(Vec::new());
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        handle(&health, &mut dedup, &mut keep, venue.parse(line, &markets_of));
        if keep.0.len() > max {
            return None;
        }
    }
    Some(keep.0)
}
