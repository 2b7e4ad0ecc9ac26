//! Several venues at once, each one of a market's price sources (docs/DESIGN.md, "Index
//! price"): every venue runs its own live client, its ticks tagged with its source id, and a
//! clock says every half second that time passes, so the engine's guards see silence too.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use engine_core::command::{SourceId, Tick};
pub use ground::ports::SourceSink;
use ground::ports::TickSink;

use crate::client::{self, ClientConfig};
use crate::connector::Connector;
use crate::health::FeedHealth;

/// How often the engine is told that time passes (`SourceCheck`).
pub const CHECK_EVERY: Duration = Duration::from_millis(500);

/// One source's view of a [`SourceSink`]: the [`TickSink`] its client publishes into.
#[derive(Debug, Clone)]
pub struct Tagged<S> {
    source: SourceId,
    inner: S,
}

impl<S: SourceSink> TickSink for Tagged<S> {
    fn publish(&mut self, tick: Tick) {
        self.inner.quote(self.source, tick);
    }
}

/// One venue of several: its connector and its health.
#[derive(Debug, Clone)]
pub struct Source {
    /// The venue.
    pub venue: &'static dyn Connector,
    /// Its client's health (per source in `/healthz` and `/metrics`).
    pub health: Arc<FeedHealth>,
}

/// Runs every venue of `sources` (source id = position) and the clock, into clones of `sink`,
/// until `shutdown`. `cfg(venue)` gives each venue's client settings.
pub async fn run<S: SourceSink + Clone>(
    sources: &[Source],
    cfg: impl Fn(&'static dyn Connector) -> ClientConfig,
    sink: S,
    shutdown: impl Future<Output = ()>,
) {
    let stop = tokio_util::sync::CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, s) in sources.iter().enumerate() {
        let source = SourceId(u8::try_from(i).expect("at most 8 sources (SOURCES_MAX)"));
        let tagged = Tagged { source, inner: sink.clone() };
        let (venue, health, stopped) = (s.venue, Arc::clone(&s.health), stop.clone());
        let cfg = cfg(venue);
        tasks.spawn(async move {
            client::run(venue, cfg, health, tagged, stopped.cancelled_owned()).await;
        });
    }
    let mut clock = sink;
    let mut every = tokio::time::interval(CHECK_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = every.tick() => clock.check(),
        }
    }
    stop.cancel();
    while tasks.join_next().await.is_some() {}
}
