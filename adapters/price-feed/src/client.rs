//! The live client, one for every venue (tokio-tungstenite over rustls/ring). I/O only: what a
//! venue says and how its frames read is its [`Connector`]'s.
//!
//! The client connects, sends the venue's subscribe frames, and reads forever: WebSocket pings
//! are answered, the venue's own keepalive sent when it has one, error frames logged and counted,
//! duplicates dropped by update id. It reconnects with capped exponential backoff and jitter
//! after a failed connect, a closed or broken connection, or when the watchdog sees no frame for
//! a while; it subscribes again each time. Health ([`FeedHealth`]) is shared for `/healthz` and
//! `/metrics`.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use engine_core::config::MarketConfig;
use futures_util::{SinkExt, StreamExt};
use ground::backoff::Backoff;
use ground::ports::TickSink;
use ground::time::now_ns;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio_tungstenite::tungstenite::Message;
use tracing::{info, warn};

use crate::connector::Connector;
use crate::frame::{Dedup, Frame, Markets, ParseError};
use crate::health::FeedHealth;

/// Settings of the live client.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// WebSocket endpoint (the venue's [`Connector::default_url`], or a local stand-in).
    pub url: String,
    /// Markets to subscribe to (engine order).
    pub markets: Vec<MarketConfig>,
    /// The venue's symbol per engine symbol, where its default mapping is not right.
    pub symbols: BTreeMap<String, String>,
    /// First reconnect delay.
    pub backoff_initial: Duration,
    /// Largest reconnect delay.
    pub backoff_max: Duration,
    /// Reconnect when no frame arrives for this long.
    pub watchdog: Duration,
    /// Give up a connection attempt after this long.
    pub connect_timeout: Duration,
    /// Send the venue's keepalive this often instead of its own period (tests).
    pub keepalive_period: Option<Duration>,
}

impl ClientConfig {
    /// Defaults: 250 ms .. 30 s backoff, 15 s watchdog, 10 s connect timeout.
    pub fn new(url: &str, markets: Vec<MarketConfig>) -> ClientConfig {
        ClientConfig {
            url: url.to_owned(),
            markets,
            symbols: BTreeMap::new(),
            backoff_initial: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            watchdog: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(10),
            keepalive_period: None,
        }
    }
}

/// Installs the ring crypto provider for rustls once (rustls features select none by default).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// How a connection (or an attempt at one) ended.
enum Ended {
    Shutdown,
    /// Connected, then lost (closed, broken, watchdog): counted as a reconnect.
    Lost,
    /// Never connected.
    Failed,
}

/// One connection's state, shared by [`run`]'s loop and the read loop.
struct Session<'a, S> {
    venue: &'a dyn Connector,
    cfg: &'a ClientConfig,
    health: &'a FeedHealth,
    markets: Markets,
    dedup: Dedup,
    sink: S,
}

/// Runs the live client for `venue` until `shutdown` resolves.
pub async fn run<S: TickSink>(
    venue: &dyn Connector,
    cfg: ClientConfig,
    health: Arc<FeedHealth>,
    sink: S,
    shutdown: impl Future<Output = ()>,
) {
    install_crypto_provider();
    let markets = Markets::for_venue(&cfg.markets, venue, &cfg.symbols);
    let mut session =
        Session { venue, cfg: &cfg, health: &health, markets, dedup: Dedup::default(), sink };
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
        let ended = match ws {
            Ok(Ok((mut ws, _))) => {
                let ended = session.serve(&mut ws, &mut backoff, &mut shutdown).await;
                if matches!(ended, Ended::Shutdown) {
                    let _ = ws.close(None).await;
                }
                ended
            }
            Ok(Err(e)) => {
                health.connect_failures.fetch_add(1, Ordering::Relaxed);
                warn!(venue = venue.name(), url = %cfg.url, error = %e, "feed: connect failed");
                Ended::Failed
            }
            Err(_) => {
                health.connect_failures.fetch_add(1, Ordering::Relaxed);
                warn!(venue = venue.name(), url = %cfg.url, "feed: connect timed out");
                Ended::Failed
            }
        };
        let wait = match ended {
            Ended::Shutdown => return,
            Ended::Failed => backoff.next(),
            Ended::Lost => {
                health.reconnects.fetch_add(1, Ordering::Relaxed);
                backoff.next()
            }
        };
        warn!(venue = venue.name(), retry_in = ?wait, "feed: reconnecting");
        tokio::select! { () = &mut shutdown => return, () = tokio::time::sleep(wait) => {} }
    }
}

impl<S: TickSink> Session<'_, S> {
    /// Subscribes on a fresh connection, then reads until it is lost or `shutdown`.
    async fn serve<W, F>(
        &mut self,
        ws: &mut W,
        backoff: &mut Backoff,
        shutdown: &mut std::pin::Pin<&mut F>,
    ) -> Ended
    where
        W: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>>
            + futures_util::Sink<Message>
            + Unpin,
        F: Future<Output = ()>,
    {
        for frame in self.venue.subscribe(&self.markets) {
            if ws.send(Message::text(frame)).await.is_err() {
                warn!(venue = self.venue.name(), "feed: subscribe failed");
                return Ended::Lost;
            }
        }
        self.health.connects.fetch_add(1, Ordering::Relaxed);
        self.health.connected.store(true, Ordering::Relaxed);
        backoff.reset();
        info!(venue = self.venue.name(), url = %self.cfg.url, "feed: connected and subscribed");
        let ended = self.read_loop(ws, shutdown).await;
        self.health.connected.store(false, Ordering::Relaxed);
        ended
    }

    async fn read_loop<W, F>(&mut self, ws: &mut W, shutdown: &mut std::pin::Pin<&mut F>) -> Ended
    where
        W: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>>
            + futures_util::Sink<Message>
            + Unpin,
        F: Future<Output = ()>,
    {
        let (watchdog, health) = (self.cfg.watchdog, self.health);
        let keepalive = self.venue.keepalive();
        let period = keepalive.as_ref().map_or(Duration::from_secs(3_600), |k| k.0);
        let period = self.cfg.keepalive_period.unwrap_or(period);
        let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        loop {
            let next = tokio::select! {
                () = shutdown.as_mut() => return Ended::Shutdown,
                _ = beat.tick(), if keepalive.is_some() => {
                    let frame = keepalive.as_ref().map(|k| k.1.clone()).unwrap_or_default();
                    if ws.send(Message::text(frame)).await.is_err() {
                        return Ended::Lost;
                    }
                    continue;
                }
                n = tokio::time::timeout(watchdog, ws.next()) => n,
            };
            let msg = match next {
                Err(_) => {
                    health.watchdog_timeouts.fetch_add(1, Ordering::Relaxed);
                    warn!(silent_for = ?watchdog, "feed: watchdog: no frame, reconnecting");
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
                    self.sink.raw(&text);
                    let frame = self.venue.parse(&text, &self.markets);
                    handle(health, &mut self.dedup, &mut self.sink, frame);
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
}

/// What one parsed frame does: a new tick is published, a repeat counted, an error frame
/// logged, a parse error counted by cause.
pub(crate) fn handle<S: TickSink>(
    health: &FeedHealth,
    dedup: &mut Dedup,
    sink: &mut S,
    frame: Result<Frame, ParseError>,
) {
    match frame {
        Ok(Frame::Tick(t)) => {
            if !dedup.accept(&t) {
                health.duplicates.fetch_add(1, Ordering::Relaxed);
                return;
            }
            health.count_tick(&t, now_ns());
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
