//! The HTTP/1 server loop: a connection cap, header / body / idle timeouts, and an accept loop
//! that survives descriptor exhaustion.
//!
//! `axum::serve` has none of these knobs, and the public internet needs all of them: idle or
//! slow sockets held open for minutes starved a server of descriptors until every request timed
//! out. Here:
//!
//! - at most [`ServerLimits::max_connections`] connections are served; the next one gets a
//!   canned `503` and is closed before anything of it is read;
//! - a request head must arrive within [`ServerLimits::header_timeout`] (hyper's timer, which
//!   starts when the server waits for a request: after connect and after each response);
//! - a request body must arrive within [`ServerLimits::body_timeout`] (a hard deadline);
//! - a connection that moves no byte for [`ServerLimits::idle_timeout`] is shut down gracefully
//!   (a request in flight still gets its response);
//! - an `accept` error (e.g. `EMFILE`) is logged and retried after a pause: never a busy loop,
//!   never the end of the server.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

/// Limits of the server loop. Every one is configurable (`--config`, section `http`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerLimits {
    /// Connections served at once; one more is answered `503` and closed.
    pub max_connections: usize,
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

/// Serves `app` on `listener` within `limits` until `shutdown` resolves, then lets open
/// connections finish (up to `limits.shutdown_grace`).
pub async fn run(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    stats: Arc<ServerStats>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
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
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(refuse(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conn = Connection {
            app: app.clone(),
            limits: limits.clone(),
            stats: Arc::clone(&stats),
            stop: stop_rx.clone(),
            epoch,
        };
        tokio::spawn(async move {
            conn.serve(stream, peer).await;
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(limits.shutdown_grace, slots.acquire_many(all)).await.is_err() {
        tracing::warn!("connections still open after the shutdown grace period; dropping them");
    }
    Ok(())
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
    async fn serve(mut self, stream: TcpStream, peer: SocketAddr) {
        self.stats.open.fetch_add(1, Ordering::Relaxed);
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
                _ = check.tick(), if !closing => {
                    if self.now_ms().saturating_sub(activity.load(Ordering::Relaxed)) >= idle_ms {
                        self.stats.idle_closed.fetch_add(1, Ordering::Relaxed);
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
