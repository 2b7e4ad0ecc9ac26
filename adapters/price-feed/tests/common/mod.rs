//! What the venue tests share: a mock WebSocket server on 127.0.0.1:0, a collecting sink, and
//! waiting on a condition.
#![allow(dead_code)] // each test binary uses its own part

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use engine_core::prelude::*;
use ground::ports::TickSink;
use tokio::net::TcpListener;

/// A sink that keeps every tick.
#[derive(Clone, Default)]
pub struct Collect(pub Arc<Mutex<Vec<Tick>>>);

impl TickSink for Collect {
    fn publish(&mut self, tick: Tick) {
        self.0.lock().unwrap().push(tick);
    }
}

/// A mock server: connection `n` (0-based) is handled by `script(n, socket)`.
pub async fn mock<F, Fut>(script: F) -> (String, Arc<AtomicU64>)
where
    F: Fn(u64, tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>) -> Fut
        + Send
        + Sync
        + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&connections);
    let script = Arc::new(script);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let n = count.fetch_add(1, Ordering::SeqCst);
            let script = Arc::clone(&script);
            tokio::spawn(async move {
                if let Ok(ws) = tokio_tungstenite::accept_async(tcp).await {
                    script(n, ws).await;
                }
            });
        }
    });
    (url, connections)
}

/// Waits until `cond` holds, at most 10 s.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
