//! The live Backpack client (tokio-tungstenite over rustls/ring) and the replay feed. I/O only:
//! every frame goes through [`crate::parse`].
//!
//! The client connects, subscribes to `bookTicker.<SYMBOL>` for every market, and reads forever:
//! pings are answered, error frames logged and counted, duplicates dropped by update id. It
//! reconnects with capped exponential backoff and jitter after a failed connect, a closed or
//! broken connection, or when the watchdog sees no frame for a while; it resubscribes each time.
//! Health ([`FeedHealth`]) is shared for `/healthz` and `/metrics`.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use engine_core::command::{CommandKind, Tick};
use engine_core::config::MarketConfig;
use engine_core::processor::Submitter;
use futures_util::{SinkExt, StreamExt};
use ground::backoff::Backoff;
use ground::time::now_ns;
use tokio_tungstenite::tungstenite::Message;
use tracing::{info, warn};

use ground::ports::TickSink;

use crate::parse::{Dedup, Frame, Markets, ParseError, parse_frame};

/// Publishes ticks into the engine's in-ring, stamped with the receive time.
#[derive(Debug)]
pub struct EngineSink(pub Submitter, pub Arc<FeedHealth>);

impl TickSink for EngineSink {
    /// Never spins on a full ring: a price is superseded by the next one, so a tick the engine
    /// cannot take now is dropped and counted (`ticks_dropped`). A feed that spun here burned
    /// most of a core once the engine had stopped (e.g. after a journal fail-stop).
    fn publish(&mut self, tick: Tick) {
        if self.0.try_send(now_ns(), CommandKind::PriceTick(tick)).is_err() {
            self.1.ticks_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Labels of parse-error counters, in [`FeedHealth::parse_errors`] order.
pub const ERROR_LABELS: [&str; 9] = [
    "malformed",
    "missing_field",
    "not_book_ticker",
    "unknown_symbol",
    "bad_price",
    "price_out_of_range",
    "crossed",
    "bad_integer",
    "binary",
];

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
    pub parse_errors: [AtomicU64; 9],
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

    fn count_error(&self, e: &ParseError) {
        if let Some(i) = ERROR_LABELS.iter().position(|l| *l == e.label()) {
            self.parse_errors[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Settings of the live client.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// WebSocket endpoint (`wss://ws.backpack.exchange`, or a local stand-in).
    pub url: String,
    /// Markets to subscribe to (engine order).
    pub markets: Vec<MarketConfig>,
    /// First reconnect delay.
    pub backoff_initial: Duration,
    /// Largest reconnect delay.
    pub backoff_max: Duration,
    /// Reconnect when no frame arrives for this long.
    pub watchdog: Duration,
    /// Give up a connection attempt after this long.
    pub connect_timeout: Duration,
}

impl ClientConfig {
    /// Defaults: 250 ms .. 30 s backoff, 15 s watchdog, 10 s connect timeout.
    pub fn new(url: &str, markets: Vec<MarketConfig>) -> ClientConfig {
        ClientConfig {
            url: url.to_owned(),
            markets,
            backoff_initial: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            watchdog: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// The SUBSCRIBE frame for every market.
pub fn subscribe_frame(markets: &Markets) -> String {
    let params: Vec<String> = markets.symbols().map(|s| format!("bookTicker.{s}")).collect();
    serde_json::json!({ "method": "SUBSCRIBE", "params": params }).to_string()
}

/// Installs the ring crypto provider for rustls once (rustls features select none by default).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

enum Ended {
    Shutdown,
    Lost,
}

/// Runs the live client until `shutdown` resolves.
pub async fn run<S: TickSink>(
    cfg: ClientConfig,
    health: Arc<FeedHealth>,
    mut sink: S,
    shutdown: impl Future<Output = ()>,
) {
    install_crypto_provider();
    let markets = Markets::new(&cfg.markets);
    let subscribe = subscribe_frame(&markets);
    let mut dedup = Dedup::default();
    // Equal jitter: many clients cut off at once do not come back at once.
    let mut backoff = Backoff::jittered(cfg.backoff_initial, cfg.backoff_max, now_ns());
    tokio::pin!(shutdown);
    loop {
        let connect = tokio::time::timeout(
            cfg.connect_timeout,
            tokio_tungstenite::connect_async(cfg.url.as_str()),
        );
        let ws = tokio::select! {
            () = &mut shutdown => return,
            r = connect => r,
        };
        let mut ws = match ws {
            Ok(Ok((ws, _))) => ws,
            Ok(Err(e)) => {
                health.connect_failures.fetch_add(1, Ordering::Relaxed);
                let wait = backoff.next();
                warn!(url = %cfg.url, error = %e, retry_in = ?wait, "feed: connect failed");
                tokio::select! { () = &mut shutdown => return, () = tokio::time::sleep(wait) => continue }
            }
            Err(_) => {
                health.connect_failures.fetch_add(1, Ordering::Relaxed);
                let wait = backoff.next();
                warn!(url = %cfg.url, retry_in = ?wait, "feed: connect timed out");
                tokio::select! { () = &mut shutdown => return, () = tokio::time::sleep(wait) => continue }
            }
        };
        if let Err(e) = ws.send(Message::text(subscribe.clone())).await {
            warn!(error = %e, "feed: subscribe failed");
            health.reconnects.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        health.connects.fetch_add(1, Ordering::Relaxed);
        health.connected.store(true, Ordering::Relaxed);
        backoff.reset();
        info!(url = %cfg.url, "feed: connected and subscribed");
        let ended =
            read_loop(&cfg, &health, &markets, &mut dedup, &mut sink, &mut ws, &mut shutdown).await;
        health.connected.store(false, Ordering::Relaxed);
        match ended {
            Ended::Shutdown => {
                let _ = ws.close(None).await;
                return;
            }
            Ended::Lost => {
                health.reconnects.fetch_add(1, Ordering::Relaxed);
                let wait = backoff.next();
                warn!(retry_in = ?wait, "feed: connection lost, reconnecting");
                tokio::select! { () = &mut shutdown => return, () = tokio::time::sleep(wait) => {} }
            }
        }
    }
}

async fn read_loop<S, W, F>(
    cfg: &ClientConfig,
    health: &FeedHealth,
    markets: &Markets,
    dedup: &mut Dedup,
    sink: &mut S,
    ws: &mut W,
    shutdown: &mut std::pin::Pin<&mut F>,
) -> Ended
where
    S: TickSink,
    W: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>>
        + futures_util::Sink<Message>
        + Unpin,
    F: Future<Output = ()>,
{
    loop {
        let next = tokio::select! {
            () = shutdown.as_mut() => return Ended::Shutdown,
            n = tokio::time::timeout(cfg.watchdog, ws.next()) => n,
        };
        let msg = match next {
            Err(_) => {
                health.watchdog_timeouts.fetch_add(1, Ordering::Relaxed);
                warn!(silent_for = ?cfg.watchdog, "feed: watchdog: no frame, reconnecting");
                return Ended::Lost;
            }
            Ok(None) => return Ended::Lost,
            Ok(Some(Err(e))) => {
                warn!(error = %e, "feed: read error");
                return Ended::Lost;
            }
            Ok(Some(Ok(m))) => m,
        };
        match msg {
            Message::Text(text) => {
                health.frames.fetch_add(1, Ordering::Relaxed);
                sink.raw(&text);
                handle_text(health, markets, dedup, sink, &text);
            }
            Message::Binary(_) => health.count_error(&ParseError::Binary),
            Message::Ping(payload) => {
                // tungstenite queues the Pong; send it now rather than on the next read.
                if ws.send(Message::Pong(payload)).await.is_err() {
                    return Ended::Lost;
                }
            }
            Message::Close(_) => return Ended::Lost,
            Message::Pong(_) | Message::Frame(_) => {}
        }
    }
}

fn handle_text<S: TickSink>(
    health: &FeedHealth,
    markets: &Markets,
    dedup: &mut Dedup,
    sink: &mut S,
    text: &str,
) {
    match parse_frame(text, markets) {
        Ok(Frame::Tick(t)) => {
            if !dedup.accept(&t) {
                health.duplicates.fetch_add(1, Ordering::Relaxed);
                return;
            }
            if let Some(slot) = health.last_tick_ns.get(usize::from(t.market.0)) {
                slot.store(now_ns(), Ordering::Relaxed);
            }
            health.ticks.fetch_add(1, Ordering::Relaxed);
            sink.publish(t);
        }
        Ok(Frame::Ack) => {}
        Ok(Frame::Error(e)) => {
            health.error_frames.fetch_add(1, Ordering::Relaxed);
            warn!(error = %e, "feed: error frame");
        }
        Err(e) => {
            health.count_error(&e);
            tracing::debug!(error = %e, "feed: frame rejected");
        }
    }
}

/// How fast a recording is replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayPace {
    /// At the recorded pace (the frames' own event times).
    Recorded,
    /// As fast as the sink takes them.
    Flat,
}

/// Plays recorded frames (JSON lines, as `hundredx feed --record` writes them) into `sink`:
/// at the recorded pace (from the frames' event times) or as fast as possible. Returns the
/// number of ticks published.
pub async fn replay<S: TickSink>(
    path: &std::path::Path,
    markets: &[MarketConfig],
    health: &FeedHealth,
    sink: &mut S,
    pace: ReplayPace,
) -> std::io::Result<u64> {
    let text = std::fs::read_to_string(path)?; // recordings are small; read before pacing starts
    let markets = Markets::new(markets);
    let mut dedup = Dedup::default();
    let started = Instant::now();
    let mut first_us: Option<u64> = None;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        health.frames.fetch_add(1, Ordering::Relaxed);
        if pace == ReplayPace::Recorded
            && let Ok(Frame::Tick(t)) = parse_frame(line, &markets)
        {
            let first = *first_us.get_or_insert(t.exchange_time_us);
            let due = started + Duration::from_micros(t.exchange_time_us.saturating_sub(first));
            tokio::time::sleep_until(due.into()).await;
        }
        handle_text(health, &markets, &mut dedup, sink, line);
    }
    Ok(health.ticks.load(Ordering::Relaxed))
}
