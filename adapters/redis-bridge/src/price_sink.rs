//! Any price feed into `price-stream` (`hundredx feed --redis`): [`RedisSink`] is the feed's
//! [`TickSink`], each tick a signed, trimmed entry.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use engine_core::command::{SourceId, Tick};
use ground::ports::{SourceSink, TickSink};
use tokio::sync::mpsc;
use tracing::warn;

use crate::signing::BridgeKey;
use crate::target::RedisTarget;
use crate::wire::PriceEntry;

/// Ticks waiting for the `price-stream` writer. A feed is faster than Redis only when Redis is
/// in trouble; then a price is superseded by the next one, and a waiting tick is worth nothing.
pub const PRICE_QUEUE_TICKS: usize = 4_096;

/// Publishes ticks, or several sources' quotes and their clock, to `price-stream` (trimmed),
/// from any feed. Never waits: an entry the writer's queue cannot take is dropped and counted in
/// [`RedisSink::dropped`].
#[derive(Debug, Clone)]
pub struct RedisSink {
    tx: mpsc::Sender<PriceEntry>,
    /// Entries dropped because the writer's queue was full.
    pub dropped: Arc<AtomicU64>,
}

impl RedisSink {
    fn send(&mut self, entry: PriceEntry) {
        if self.tx.try_send(entry).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl TickSink for RedisSink {
    fn publish(&mut self, tick: Tick) {
        self.send(PriceEntry::Tick(tick));
    }
}

impl SourceSink for RedisSink {
    fn quote(&mut self, source: SourceId, tick: Tick) {
        self.send(PriceEntry::Quote(source, tick));
    }

    fn check(&mut self) {
        self.send(PriceEntry::Check);
    }
}

/// Starts the `price-stream` writer (signed entries); returns the sink feeding it and the
/// writer's task, which ends once every tick the sink took is written and the sink is dropped.
/// `None` if a shutdown signal came while Redis was unreachable.
pub async fn redis_sink(
    target: &RedisTarget,
    key: BridgeKey,
    stop: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> redis::RedisResult<Option<(RedisSink, tokio::task::JoinHandle<()>)>> {
    let connect = || crate::link::Link::connect(target);
    let Some(mut con) = target.retry("feed", connect, stop).await else {
        return Ok(None);
    };
    let (tx, mut rx) = mpsc::channel::<PriceEntry>(PRICE_QUEUE_TICKS);
    let writer = tokio::spawn(async move {
        while let Some(entry) = rx.recv().await {
            let body = crate::wire::encode_price(&entry);
            let r: redis::RedisResult<()> =
                crate::entries::signed_xadd(&key, crate::PRICE_STREAM, 100_000, &body)
                    .query_async(&mut con)
                    .await;
            if let Err(e) = r {
                // A tick is superseded by the next one: log, do not queue forever.
                warn!(error = %e, "feed: price-stream write failed");
            }
        }
    });
    Ok(Some((RedisSink { tx, dropped: Arc::default() }, writer)))
}
