//! Any price feed into `price-stream` (`hundredx feed --redis`): [`RedisSink`] is the feed's
//! [`TickSink`], each tick a signed, trimmed entry.

use engine_core::command::Tick;
use ground::ports::TickSink;
use tracing::warn;

use crate::signing::BridgeKey;
use crate::target::RedisTarget;

/// Publishes ticks to `price-stream` (trimmed), from any feed.
#[derive(Debug)]
pub struct RedisSink(tokio::sync::mpsc::UnboundedSender<Tick>);

impl TickSink for RedisSink {
    fn publish(&mut self, tick: Tick) {
        let _ = self.0.send(tick);
    }
}

/// Starts the `price-stream` writer (signed entries); returns the sink feeding it, or `None` if
/// a shutdown signal came while Redis was unreachable.
pub async fn redis_sink(
    target: &RedisTarget,
    key: BridgeKey,
    stop: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> redis::RedisResult<Option<RedisSink>> {
    let connect = || crate::link::Link::connect(target);
    let Some(mut con) = target.retry("feed", connect, stop).await else {
        return Ok(None);
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Tick>();
    tokio::spawn(async move {
        while let Some(t) = rx.recv().await {
            let body = crate::wire::encode_tick(&t);
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
    Ok(Some(RedisSink(tx)))
}
