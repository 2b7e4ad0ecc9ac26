//! What wakes connections at a bounded rate: applied prices published at most
//! `price_updates_per_second`, candles read from the history store while anyone subscribes.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;

use crate::AppState;
use crate::convert::{ms, px};

use super::hub::{CandleEntry, Hub, PriceEntry};

/// Publishes applied prices to every connection: at once, or — within `1 / per_second` of the
/// last publication — the latest when that time comes. So each connection wakes at most
/// `per_second` times a second for prices however fast ticks arrive, and a price waits at most
/// that long.
pub(super) async fn pump_prices(hub: Arc<Hub>, per_second: u32) {
    let gap = Duration::from_millis(1_000 / u64::from(per_second.max(1)));
    let mut last = tokio::time::Instant::now() - gap;
    loop {
        hub.price_ready.notified().await;
        tokio::time::sleep_until(last + gap).await;
        last = tokio::time::Instant::now();
        let fresh: Vec<PriceEntry> = {
            let mut pending = hub.pending_prices.lock().unwrap_or_else(|e| e.into_inner());
            pending.drain().map(|(_, p)| p).collect()
        };
        if fresh.is_empty() {
            continue;
        }
        hub.prices.send_modify(|all| {
            let mut next: Vec<PriceEntry> = all
                .iter()
                .filter(|p| !fresh.iter().any(|f| f.market == p.market))
                .cloned()
                .collect();
            next.extend(fresh);
            *all = Arc::new(next);
        });
    }
}

/// Reads the latest candle of every channel from the history store at the price rate, while
/// anyone subscribes to candles, and publishes those that changed. The store is the one source:
/// what is pushed is what `GET /api/v1/candles` returns next.
pub(super) async fn poll_candles(state: Arc<AppState>) {
    let hz = u64::from(state.push_limits().price_updates_per_second.max(1));
    let mut every = tokio::time::interval(Duration::from_millis(1_000 / hz));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let hub = state.hub();
    loop {
        every.tick().await;
        let Some(h) = state.history.get() else { continue };
        if hub.candle_subscribers.load(Ordering::Relaxed) == 0 {
            continue;
        }
        let mut latest = Vec::new();
        for (i, (_, market, span)) in hub.candle_channels.iter().enumerate() {
            let Ok(got) = h.store.candles(*market, span, 1).await else { continue };
            let (Some(c), Some(m)) = (got.last(), hub.markets.get(usize::from(market.0))) else {
                continue;
            };
            let data = json!({"time": ms(c.start_ns), "open": px(c.open, m), "high": px(c.high, m),
                "low": px(c.low, m), "close": px(c.close, m), "ticks": c.ticks});
            latest.push(CandleEntry { channel: i, json: Arc::from(data.to_string()) });
        }
        hub.candles.send_if_modified(|old| {
            let changed = **old != latest;
            if changed {
                *old = Arc::new(latest);
            }
            changed
        });
    }
}
