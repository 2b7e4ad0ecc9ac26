//! What a feed has done, shared with `/healthz` and `/metrics`: counters by a closed set of
//! names (bounded metric labels) and each market's last tick time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use engine_core::command::Tick;

use crate::frame::{ERROR_LABELS, ParseError};

/// What the feed has done; shared with health and metrics.
#[derive(Debug)]
pub struct FeedHealth {
    /// Connected and subscribed now.
    pub connected: AtomicBool,
    /// Successful connections (the first included).
    pub connects: AtomicU64,
    /// Connections lost or abandoned (closed, error, watchdog).
    pub reconnects: AtomicU64,
    /// Failed connection attempts.
    pub connect_failures: AtomicU64,
    /// Watchdog expiries.
    pub watchdog_timeouts: AtomicU64,
    /// Text frames received.
    pub frames: AtomicU64,
    /// Ticks published.
    pub ticks: AtomicU64,
    /// Ticks dropped as duplicates or out of order.
    pub duplicates: AtomicU64,
    /// Error frames from the server.
    pub error_frames: AtomicU64,
    /// Ticks dropped because the engine's in-ring was full.
    pub ticks_dropped: AtomicU64,
    /// Frames that did not parse, by [`ERROR_LABELS`].
    pub parse_errors: [AtomicU64; ERROR_LABELS.len()],
    /// Receive time (ns since the epoch) of the last tick, per market id.
    pub last_tick_ns: Vec<AtomicU64>,
}

impl FeedHealth {
    /// Health for `markets` markets.
    pub fn new(markets: usize) -> Arc<FeedHealth> {
        Arc::new(FeedHealth {
            connected: AtomicBool::new(false),
            connects: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            watchdog_timeouts: AtomicU64::new(0),
            frames: AtomicU64::new(0),
            ticks: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            error_frames: AtomicU64::new(0),
            ticks_dropped: AtomicU64::new(0),
            parse_errors: Default::default(),
            last_tick_ns: (0..markets).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    /// The health summary `/healthz` shows: `kind` (the feed's name), connected, reconnects,
    /// ticks, and each market's last tick age in ms at `now_ns` (`null` before its first tick).
    pub fn summary(&self, kind: &str, now_ns: u64) -> serde_json::Value {
        let ages: Vec<Option<u64>> = self
            .last_tick_ns
            .iter()
            .map(|t| t.load(Ordering::Relaxed))
            .map(|t| (t > 0).then(|| now_ns.saturating_sub(t) / 1_000_000))
            .collect();
        serde_json::json!({
            "kind": kind,
            "connected": self.connected.load(Ordering::Relaxed),
            "reconnects": self.reconnects.load(Ordering::Relaxed),
            "ticks": self.ticks.load(Ordering::Relaxed),
            "last_tick_age_ms": ages,
        })
    }

    /// Every counter by a fixed name (a closed set, for metrics labels).
    pub fn counters(&self) -> Vec<(&'static str, u64)> {
        let mut v = vec![
            ("connected", u64::from(self.connected.load(Ordering::Relaxed))),
            ("connects", self.connects.load(Ordering::Relaxed)),
            ("reconnects", self.reconnects.load(Ordering::Relaxed)),
            ("connect_failures", self.connect_failures.load(Ordering::Relaxed)),
            ("watchdog_timeouts", self.watchdog_timeouts.load(Ordering::Relaxed)),
            ("frames", self.frames.load(Ordering::Relaxed)),
            ("ticks", self.ticks.load(Ordering::Relaxed)),
            ("duplicates", self.duplicates.load(Ordering::Relaxed)),
            ("error_frames", self.error_frames.load(Ordering::Relaxed)),
            ("ticks_dropped", self.ticks_dropped.load(Ordering::Relaxed)),
        ];
        for (label, n) in ERROR_LABELS.iter().zip(&self.parse_errors) {
            v.push((label, n.load(Ordering::Relaxed)));
        }
        v
    }

    /// Counts a frame that did not parse, by its cause.
    pub fn count_error(&self, e: &ParseError) {
        self.parse_errors[e.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a tick about to be published, received at `now_ns`.
    pub fn count_tick(&self, tick: &Tick, now_ns: u64) {
        if let Some(slot) = self.last_tick_ns.get(usize::from(tick.market.0)) {
            slot.store(now_ns, Ordering::Relaxed);
        }
        self.ticks.fetch_add(1, Ordering::Relaxed);
    }
}
