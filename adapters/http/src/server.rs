//! The HTTP/1 server loop: a connection cap, header / body / idle timeouts, and an accept loop
//! that survives descriptor exhaustion.
//!
//! `axum::serve` has none of these knobs, and the public internet needs all of them: idle or
//! slow sockets held open for minutes starved a server of descriptors until every request timed
//! out. Here:
//!
//! - at most [`ServerLimits::max_connections`] sockets are held — HTTP connections and the push
//!   sockets upgraded from them alike (an upgraded socket keeps its slot: one descriptor budget);
//! - at most [`ServerLimits::max_connections_per_address`] from one address (IPv6: one /64),
//!   trusted proxies excepted; one more gets a canned `503` and is closed unread;
//! - when every slot is taken, the address holding the most gives up its oldest connection
//!   (a request in flight is answered first) so a newcomer from elsewhere is served: one
//!   address cannot hold the server;
//! - a request head must arrive within [`ServerLimits::header_timeout`] (hyper's timer, which
//!   starts when the server waits for a request: after connect and after each response);
//! - a request body must arrive within [`ServerLimits::body_timeout`] (a hard deadline);
//! - a connection that moves no byte for [`ServerLimits::idle_timeout`] is shut down gracefully
//!   (a request in flight still gets its response);
//! - an `accept` error (e.g. `EMFILE`) is logged and retried after a pause: never a busy loop,
//!   never the end of the server.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::ServiceExt;

/// Limits of the server loop. Every one is configurable (`--config`, section `http`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerLimits {
    /// Sockets held at once (HTTP and upgraded push sockets); when full, the top holder is shed.
    pub max_connections: usize,
    /// Sockets held at once from one address (an IPv6 /64); one more is answered `503`.
    pub max_connections_per_address: usize,
    /// A request head must be complete this long after the server starts waiting for it.
    #[serde(with = "millis", rename = "header_timeout_ms")]
    pub header_timeout: Duration,
    /// A request body must be complete this long after its head.
    #[serde(with = "millis", rename = "body_timeout_ms")]
    pub body_timeout: Duration,
    /// A connection that moves no byte this long is closed (after any response in flight).
    #[serde(with = "millis", rename = "idle_timeout_ms")]
    pub idle_timeout: Duration,
    /// Connections still open this long after shutdown starts are dropped.
    #[serde(with = "millis", rename = "shutdown_grace_ms")]
    pub shutdown_grace: Duration,
}

impl Default for ServerLimits {
    /// 1024 connections, 10 s for a head, 10 s for a body, 60 s idle, 10 s to drain on shutdown.
    fn default() -> Self {
        ServerLimits {
            max_connections: 1024,
            max_connections_per_address: 64,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

impl ServerLimits {
    /// Checks every limit; returns what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        let ms = |d: Duration| d.as_millis();
        if self.max_connections == 0 || self.max_connections > 1_000_000 {
            return Err("http.max_connections must be 1..=1000000".into());
        }
        // Above max_connections it never binds (the cap is lowered to the descriptor limit at
        // start, so it may well end up below the per-address default).
        if self.max_connections_per_address == 0 || self.max_connections_per_address > 1_000_000 {
            return Err("http.max_connections_per_address must be 1..=1000000".into());
        }
        for (name, d) in [
            ("header_timeout_ms", self.header_timeout),
            ("body_timeout_ms", self.body_timeout),
            ("idle_timeout_ms", self.idle_timeout),
        ] {
            if !(100..=3_600_000).contains(&ms(d)) {
                return Err(format!("http.{name} must be 100..=3600000"));
            }
        }
        Ok(())
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// Counters of the server loop, shown in `/metrics`.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Connections open now.
    pub open: AtomicU64,
    /// Connections refused because `max_connections` were open.
    pub refused: AtomicU64,
    /// Connections refused because their address held `max_connections_per_address`.
    pub refused_per_address: AtomicU64,
    /// Connections closed to make room for another address's (the top holder's oldest).
    pub shed: AtomicU64,
    /// `accept` calls that failed (e.g. out of descriptors).
    pub accept_errors: AtomicU64,
    /// Connections closed for idling.
    pub idle_closed: AtomicU64,
}

const BUSY_BODY: &str =
    r#"{"error":{"code":"too_many_connections","message":"too many connections, retry later"}}"#;

fn busy_response() -> String {
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{BUSY_BODY}",
        BUSY_BODY.len()
    )
}

/// The key an address is limited by: an IPv4 address itself, an IPv6 address by its /64 (one
/// subscriber's allocation: a host has 2^64 addresses to rotate through), an IPv4-mapped IPv6
/// address as the IPv4 address it is.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Sheds in progress past `max_connections` at most: a shed connection closes after its
/// response in flight, and its newcomer is served meanwhile. Well inside the 64 descriptors
/// kept below the process's limit for the journal and snapshots.
const SHEDDING_MAX: usize = 16;
/// A shed connection still open this long after the signal is dropped.
const SHED_GRACE: Duration = Duration::from_secs(5);

/// Every socket the server holds, by address key: the caps, and whom to shed when full.
#[derive(Debug, Default)]
pub struct ConnTable {
    inner: Mutex<TableInner>,
    /// Woken whenever a socket is given back (shutdown waits on it for the table to empty).
    released: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct TableInner {
    /// Per address key, its sockets oldest first: (id, shed signal).
    by_key: HashMap<IpAddr, Vec<(u64, watch::Sender<bool>)>>,
    open: usize,
    shedding: usize,
    next_id: u64,
}

/// Why a socket was not admitted.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Every slot is taken and no other address holds more than this one would.
    Full,
    /// This address holds `max_connections_per_address`.
    PerAddress,
}

/// One socket's place in the [`ConnTable`], given back when the last holder drops it: the HTTP
/// connection's task, and — after a WebSocket upgrade — the push connection (it reaches the
/// handler as a request extension).
#[derive(Debug)]
pub struct ConnSlot {
    table: Arc<ConnTable>,
    key: IpAddr,
    id: u64,
    shed: watch::Receiver<bool>,
}

impl ConnSlot {
    /// Resolves once this socket is to be given up for another address's.
    pub async fn shed(&self) {
        let mut rx = self.shed.clone();
        let _ = rx.wait_for(|shed| *shed).await;
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut t = self.table.lock();
        if let Some(list) = t.by_key.get_mut(&self.key) {
            if let Some(i) = list.iter().position(|(id, _)| *id == self.id) {
                let (_, tx) = list.remove(i);
                if *tx.borrow() {
                    t.shedding = t.shedding.saturating_sub(1);
                }
            }
            if t.by_key.get(&self.key).is_some_and(Vec::is_empty) {
                t.by_key.remove(&self.key);
            }
        }
        t.open = t.open.saturating_sub(1);
        drop(t);
        self.table.released.notify_waiters();
    }
}

impl ConnTable {
    fn lock(&self) -> std::sync::MutexGuard<'_, TableInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sockets held now.
    pub fn open(&self) -> usize {
        self.lock().open
    }

    /// Takes a slot for a socket from `ip` (`exempt`: a trusted proxy, not held to the
    /// per-address cap), shedding the top holder's oldest socket when every slot is taken.
    pub fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        exempt: PerAddressCap,
        limits: &ServerLimits,
        stats: &ServerStats,
    ) -> Result<ConnSlot, Refused> {
        let key = address_key(ip);
        let mut t = self.lock();
        let own = t.by_key.get(&key).map_or(0, Vec::len);
        if exempt == PerAddressCap::Applies && own >= limits.max_connections_per_address {
            return Err(Refused::PerAddress);
        }
        if t.open >= limits.max_connections {
            if t.shedding >= SHEDDING_MAX {
                return Err(Refused::Full);
            }
            // The address holding the most live (not already shed) sockets gives one up, if it
            // holds more than the newcomer's address would.
            let top = t
                .by_key
                .iter()
                .map(|(k, list)| (list.iter().filter(|(_, tx)| !*tx.borrow()).count(), *k))
                .max();
            match top {
                Some((n, victim)) if n > own + 1 => {
                    let list = t.by_key.get(&victim).map(Vec::as_slice).unwrap_or_default();
                    if let Some((_, tx)) = list.iter().find(|(_, tx)| !*tx.borrow()) {
                        let _ = tx.send(true);
                    }
                    t.shedding += 1;
                    stats.shed.fetch_add(1, Ordering::Relaxed);
                }
                _ => return Err(Refused::Full),
            }
        }
        let id = t.next_id;
        t.next_id += 1;
        let (tx, rx) = watch::channel(false);
        t.by_key.entry(key).or_default().push((id, tx));
        t.open += 1;
        Ok(ConnSlot { table: Arc::clone(self), key, id, shed: rx })
    }
}

/// Whether a socket is held to the per-address cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PerAddressCap {
    /// An ordinary client.
    Applies,
    /// A trusted reverse proxy: it carries many clients' connections.
    Exempt,
}

/// Serves `app` on `listener` within `limits` until `shutdown` resolves, then lets open
/// connections finish (up to `limits.shutdown_grace`).
pub async fn run(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    edge: Edge,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let Edge { stats, table, trusted_proxies } = edge;
    let (stop_tx, stop_rx) = watch::channel(false);
    let epoch = Instant::now();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut last_error_log: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE / ENFILE / ECONNABORTED: the listener is fine, the moment is not.
                stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                if last_error_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    tracing::warn!(error = %e, "accept failed; pausing before the next accept");
                    last_error_log = Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let cap = if trusted_proxies.iter().any(|n| n.contains(&peer.ip())) {
            PerAddressCap::Exempt
        } else {
            PerAddressCap::Applies
        };
        let slot = match table.admit(peer.ip(), cap, &limits, &stats) {
            Ok(slot) => Arc::new(slot),
            Err(why) => {
                let counter = match why {
                    Refused::Full => &stats.refused,
                    Refused::PerAddress => &stats.refused_per_address,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(refuse(stream));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn = Connection {
            app: app.clone(),
            limits: limits.clone(),
            stats: Arc::clone(&stats),
            stop: stop_rx.clone(),
            epoch,
        };
        tokio::spawn(conn.serve(stream, peer, slot));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let deadline = tokio::time::Instant::now() + limits.shutdown_grace;
    let _ = tokio::time::timeout_at(deadline, async {
        loop {
            // Registered before the check, so a release between the two is not missed.
            let released = table.released.notified();
            if table.open() == 0 {
                return;
            }
            released.await;
        }
    })
    .await;
    if table.open() > 0 {
        tracing::warn!("connections still open after the shutdown grace period; dropping them");
    }
    Ok(())
}

/// What the server loop shares with the rest of the edge: its counters, the table of every
/// socket (the push API keeps an upgraded socket's slot), and the proxies exempt from the
/// per-address cap.
#[derive(Clone, Debug, Default)]
pub struct Edge {
    /// Counters for `/metrics`.
    pub stats: Arc<ServerStats>,
    /// Every socket held.
    pub table: Arc<ConnTable>,
    /// Peers not held to the per-address cap.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// Answers `503` without reading the request, then closes.
async fn refuse(mut stream: TcpStream) {
    let _ =
        tokio::time::timeout(Duration::from_secs(1), stream.write_all(busy_response().as_bytes()))
            .await;
    let _ = stream.shutdown().await;
}

struct Connection {
    app: Router,
    limits: ServerLimits,
    stats: Arc<ServerStats>,
    stop: watch::Receiver<bool>,
    epoch: Instant,
}

impl Connection {
    async fn serve(mut self, stream: TcpStream, peer: SocketAddr, slot: Arc<ConnSlot>) {
        self.stats.open.fetch_add(1, Ordering::Relaxed);
        let shed_slot = Arc::clone(&slot);
        let shed = shed_slot.shed();
        let mut shed = std::pin::pin!(shed);
        let mut shed_at: Option<Instant> = None;
        let activity = Arc::new(AtomicU64::new(self.now_ms()));
        let io = TokioIo::new(Tracked {
            inner: stream,
            activity: Arc::clone(&activity),
            epoch: self.epoch,
        });
        let app = self.app.clone();
        let service = tower::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let mut req = req.map(axum::body::Body::new);
            req.extensions_mut().insert(ConnectInfo(peer));
            req.extensions_mut().insert(Arc::clone(&slot));
            app.clone().oneshot(req)
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_timeout)
            .keep_alive(true)
            .max_buf_size(64 * 1024)
            .serve_connection(io, TowerToHyperService::new(service))
            // A WebSocket upgrade hands the socket to the push API (its own caps and timeouts).
            .with_upgrades();
        let mut conn = std::pin::pin!(conn);
        let idle_ms = u64::try_from(self.limits.idle_timeout.as_millis()).unwrap_or(u64::MAX);
        let mut check = tokio::time::interval(self.limits.idle_timeout / 4);
        let mut closing = false;
        loop {
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    break;
                }
                _ = check.tick() => {
                    if shed_at.is_some_and(|t| t.elapsed() >= SHED_GRACE) {
                        break; // shed, and its response in flight did not finish in time
                    }
                    if !closing
                        && self.now_ms().saturating_sub(activity.load(Ordering::Relaxed)) >= idle_ms
                    {
                        self.stats.idle_closed.fetch_add(1, Ordering::Relaxed);
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                    }
                }
                () = &mut shed, if shed_at.is_none() => {
                    shed_at = Some(Instant::now());
                    check = tokio::time::interval(SHED_GRACE / 4);
                    if !closing {
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                    }
                }
                r = self.stop.changed(), if !closing => {
                    if r.is_err() || *self.stop.borrow() {
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                    }
                }
            }
        }
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// A socket that records when it last moved a byte (for the idle timeout).
struct Tracked {
    inner: TcpStream,
    activity: Arc<AtomicU64>,
    epoch: Instant,
}

impl Tracked {
    fn touch(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.activity.store(now, Ordering::Relaxed);
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_response_content_length_is_exact() {
        let text = busy_response();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())), "{head}");
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "too_many_connections");
    }

    #[test]
    fn limits_parse_from_milliseconds_and_validate() {
        let l: ServerLimits =
            serde_json::from_str(r#"{"max_connections": 5, "idle_timeout_ms": 1500}"#).unwrap();
        assert_eq!(l.max_connections, 5);
        assert_eq!(l.idle_timeout, Duration::from_millis(1500));
        assert_eq!(l.header_timeout, ServerLimits::default().header_timeout);
        assert!(l.validate().is_ok());
        assert!(ServerLimits { max_connections: 0, ..l.clone() }.validate().is_err());
        assert!(ServerLimits { body_timeout: Duration::ZERO, ..l }.validate().is_err());
    }
}
