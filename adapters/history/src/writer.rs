//! The writer: takes the engine's change records from a channel, batches them, writes each batch
//! once, and retries (never skips) while the database is away.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use engine_core::event::{ChangeRecord, Output};
use tracing::{info, warn};

use crate::{Cursor, HistoryError, Result, Store};

/// What the writer has done, for health and metrics.
#[derive(Debug, Default)]
pub struct WriterStatus {
    /// Journal sequence of the last change committed (shared with the snapshot pruner, which
    /// keeps the journal after it).
    pub written_seq: Arc<AtomicU64>,
    /// Changes committed by this process.
    pub written: AtomicU64,
    /// Batches committed.
    pub batches: AtomicU64,
    /// Failed attempts (each retried).
    pub errors: AtomicU64,
    /// Commit time of the last batch minus the receive time of its last command (ms): how far
    /// behind the engine the store is.
    pub lag_ms: AtomicU64,
    /// True while the database is unreachable.
    pub stalled: AtomicBool,
    /// Set when the writer stopped on an error it must not skip (see [`Writer::write`]).
    pub failed: AtomicBool,
}

/// Writes what arrives on a channel of engine outputs (a `Subscription::Changes`).
#[derive(Debug)]
pub struct Writer {
    store: Store,
    batch_max: usize,
    status: Arc<WriterStatus>,
}

impl Writer {
    /// A writer into `store`, committing at most `batch_max` changes per transaction.
    pub fn new(store: Store, batch_max: usize) -> Writer {
        Writer { store, batch_max: batch_max.max(1), status: Arc::default() }
    }

    /// Its status, shared.
    pub fn status(&self) -> Arc<WriterStatus> {
        Arc::clone(&self.status)
    }

    /// Writes `batch` (retrying transient failures with backoff until `give_up` says stop);
    /// a non-transient failure is returned: the store and the engine disagree, which is a bug
    /// or an operator's mistake, and must stop the process rather than be skipped.
    pub async fn write(&self, batch: &[ChangeRecord], now_ns: impl Fn() -> u64) -> Result<()> {
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.store.write(batch).await {
                Ok(cursor) => {
                    self.status.stalled.store(false, Ordering::Relaxed);
                    self.committed(batch, cursor, now_ns());
                    return Ok(());
                }
                Err(e) if e.is_transient() => {
                    self.status.errors.fetch_add(1, Ordering::Relaxed);
                    self.status.stalled.store(true, Ordering::Relaxed);
                    warn!(error = %e, retry_in = ?backoff, "history store unavailable; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn committed(&self, batch: &[ChangeRecord], cursor: Option<Cursor>, now_ns: u64) {
        let Some(last) = batch.last() else { return };
        let s = &self.status;
        if let Some(c) = cursor {
            s.written_seq.store(c.seq, Ordering::Release);
        }
        s.written.fetch_add(batch.len() as u64, Ordering::Relaxed);
        s.batches.fetch_add(1, Ordering::Relaxed);
        s.lag_ms.store(now_ns.saturating_sub(last.at_ns) / 1_000_000, Ordering::Relaxed);
    }

    /// Serves `rx` until every sender is gone, on this thread (it builds its own runtime: the
    /// store's connections live here). Batches what is already waiting, up to `batch_max`.
    pub fn run(self, rx: Receiver<Output>, now_ns: impl Fn() -> u64) -> Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| HistoryError::Db(sqlx::Error::Io(e)))?;
        let mut batch = Vec::with_capacity(self.batch_max);
        let mut last_log = Instant::now();
        loop {
            batch.clear();
            match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(o) => push(&mut batch, o),
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            }
            while batch.len() < self.batch_max {
                match rx.try_recv() {
                    Ok(o) => push(&mut batch, o),
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                continue;
            }
            rt.block_on(self.write(&batch, &now_ns))?;
            if last_log.elapsed() >= Duration::from_secs(60) {
                last_log = Instant::now();
                let s = &self.status;
                info!(
                    written = s.written.load(Ordering::Relaxed),
                    seq = s.written_seq.load(Ordering::Relaxed),
                    lag_ms = s.lag_ms.load(Ordering::Relaxed),
                    "history store"
                );
            }
        }
        rt.block_on(self.store.close());
        Ok(())
    }
}

/// A writer running on a thread of its own (named `hundredx-history`).
#[derive(Debug)]
pub struct RunningWriter {
    /// The store's cursor when the writer started: the engine must replay the changes after it.
    pub cursor: Cursor,
    /// What the writer has done.
    pub status: Arc<WriterStatus>,
    /// The thread; it ends (with the writer's result) once every sender of its channel is gone.
    pub thread: std::thread::JoinHandle<Result<()>>,
}

/// Opens the store at `url` on a new thread, runs the migrations, reads the cursor and serves
/// `rx` there (see [`Writer::run`]).
pub fn spawn_writer(
    url: &str,
    markets: &[engine_core::config::MarketConfig],
    batch_max: usize,
    rx: Receiver<Output>,
    now_ns: fn() -> u64,
) -> Result<RunningWriter> {
    let (url, markets) = (url.to_owned(), markets.to_vec());
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
    let thread = std::thread::Builder::new()
        .name("hundredx-history".into())
        .spawn(move || {
            let opened = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| HistoryError::Db(sqlx::Error::Io(e)))
                .and_then(|rt| {
                    let store = rt.block_on(Store::open(&url, &markets, 1))?;
                    let cursor = rt.block_on(store.cursor())?;
                    Ok((store, cursor))
                });
            match opened {
                Ok((store, cursor)) => {
                    let writer = Writer::new(store, batch_max);
                    writer.status.written_seq.store(cursor.seq, Ordering::Release);
                    let status = writer.status();
                    let _ = ready_tx.send(Ok((cursor, writer.status())));
                    let result = writer.run(rx, now_ns);
                    if let Err(e) = &result {
                        tracing::error!(error = %e, "history writer stopped");
                        status.failed.store(true, Ordering::Release);
                    }
                    result
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    Ok(())
                }
            }
        })
        .map_err(|e| HistoryError::Db(sqlx::Error::Io(e)))?;
    let (cursor, status) = ready_rx
        .recv()
        .map_err(|_| HistoryError::Mismatch("the history writer died while opening".into()))??;
    Ok(RunningWriter { cursor, status, thread })
}

fn push(batch: &mut Vec<ChangeRecord>, o: Output) {
    if let Output::Change(c) = o {
        batch.push(c);
    }
}
