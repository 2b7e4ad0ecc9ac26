//! The writer: takes the engine's change records from a channel, batches them and writes each
//! batch once. It never holds the engine back: while the store cannot take a batch, it keeps
//! draining the channel into a bounded backlog and retries with backoff; a failure that retries do
//! not fix, or a backlog past its bound, *degrades* history (its routes answer 503, metrics and
//! health say so) while trading goes on. The journal behind the store's cursor is kept, so the
//! next start catches the store up from it.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use engine_core::event::{ChangeRecord, Output};
use tracing::{error, info, warn};

use crate::{Cursor, HistoryError, Result, Store};

/// First wait after a failed write; it doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(50);
/// Longest wait between two tries of a failing batch.
const RETRY_MAX: Duration = Duration::from_secs(30);
/// Longest one write may take before it counts as failed (a pool waiting for a database that
/// is away).
const ATTEMPT_MAX: Duration = Duration::from_secs(10);
/// How long a stopping writer keeps trying to commit what it holds (the rest is replayed from
/// the journal at the next start).
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(30);

pub use ground::history::WriterStatus;

/// Writes what arrives on a channel of engine outputs (a `Subscription::Changes`).
#[derive(Debug)]
pub struct Writer {
    store: Store,
    batch_max: usize,
    backlog_max: usize,
    status: Arc<WriterStatus>,
}

/// One attempt's outcome.
enum Attempt {
    Written,
    /// Try again after the backoff.
    Failed,
}

impl Writer {
    /// A writer into `store`, committing at most `batch_max` changes per transaction and holding
    /// at most `backlog_max` changes (beyond its channel) while the store cannot take them.
    pub fn new(store: Store, batch_max: usize) -> Writer {
        let batch_max = batch_max.max(1);
        Writer { store, batch_max, backlog_max: batch_max * 16, status: Arc::default() }
    }

    /// The backlog's bound (changes held while the store is failing), at least one batch.
    pub fn with_backlog(mut self, backlog_max: usize) -> Writer {
        self.backlog_max = backlog_max.max(self.batch_max);
        self
    }

    /// Its status, shared.
    pub fn status(&self) -> Arc<WriterStatus> {
        Arc::clone(&self.status)
    }

    /// One try at `batch`, at most [`ATTEMPT_MAX`] long, with the status kept current: a
    /// failure that is not the database being away marks history degraded (and logs it as an
    /// error). Success does not clear that mark: the caller knows whether it may
    /// ([`Writer::recovered`]).
    async fn attempt(&self, batch: &[ChangeRecord], now_ns: u64) -> Attempt {
        let s = &self.status;
        match tokio::time::timeout(ATTEMPT_MAX, self.store.write(batch)).await {
            Ok(Ok(cursor)) => {
                s.stalled.store(false, Ordering::Relaxed);
                self.committed(batch, cursor, now_ns);
                return Attempt::Written;
            }
            Ok(Err(e)) if !e.is_transient() => {
                if s.degraded.swap(true, Ordering::AcqRel) {
                    warn!(error = %e, "history store still refuses the batch; retrying");
                } else {
                    error!(error = %e, "ALERT: history store refused a batch; history is \
                        degraded (503) while the engine keeps trading; retrying");
                }
            }
            Ok(Err(e)) => {
                s.stalled.store(true, Ordering::Relaxed);
                warn!(error = %e, "history store unavailable; retrying");
            }
            Err(_) => {
                s.stalled.store(true, Ordering::Relaxed);
                warn!(after = ?ATTEMPT_MAX, "history store did not answer; retrying");
            }
        }
        s.errors.fetch_add(1, Ordering::Relaxed);
        Attempt::Failed
    }

    /// A batch committed after a failure: history is no longer degraded.
    fn recovered(&self) {
        if self.status.degraded.swap(false, Ordering::AcqRel) {
            info!("history store writes again: no longer degraded");
        }
    }

    /// Writes `batch`, retrying any failure with backoff (up to 30 s apart) until it commits or
    /// `stop` resolves (then the error is returned and nothing was written). For a reader whose
    /// source holds the backlog itself (service mode's Redis stream).
    pub async fn write_retrying(
        &self,
        batch: &[ChangeRecord],
        now_ns: impl Fn() -> u64,
        stop: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    ) -> Result<()> {
        let mut stop = stop;
        let mut backoff = RETRY_FIRST;
        loop {
            if let Attempt::Written = self.attempt(batch, now_ns()).await {
                self.recovered();
                return Ok(());
            }
            tokio::select! {
                () = &mut stop => return Err(HistoryError::Mismatch("stopped before the batch committed".into())),
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(RETRY_MAX);
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
    /// store's connections live here). A second thread moves what arrives into a bounded backlog
    /// whatever the store does, so the sender (the engine's reply thread) never waits on the
    /// database.
    pub fn run(self, rx: Receiver<Output>, now_ns: impl Fn() -> u64) -> Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| HistoryError::Db(sqlx::Error::Io(e)))?;
        let shared = Arc::new(Shared {
            log: Mutex::new(Backlog::new(self.backlog_max)),
            ready: Condvar::new(),
        });
        let drain = {
            let (shared, status) = (Arc::clone(&shared), Arc::clone(&self.status));
            std::thread::Builder::new()
                .name("hundredx-history-drain".into())
                .spawn(move || shared.drain(&rx, &status))
                .map_err(|e| HistoryError::Db(sqlx::Error::Io(e)))?
        };
        let mut batch = Vec::with_capacity(self.batch_max);
        let mut backoff = RETRY_FIRST;
        let mut last_log = Instant::now();
        let mut flush_until: Option<Instant> = None;
        loop {
            let closed = {
                let mut log = shared.lock();
                while log.items.is_empty() && !log.closed {
                    log = shared
                        .ready
                        .wait_timeout(log, Duration::from_secs(1))
                        .map_or_else(|e| e.into_inner().0, |(g, _)| g);
                }
                log.front(self.batch_max, &mut batch);
                log.closed
            };
            if closed {
                let deadline = *flush_until.get_or_insert_with(|| Instant::now() + SHUTDOWN_FLUSH);
                if batch.is_empty() || Instant::now() >= deadline {
                    break;
                }
            }
            match rt.block_on(self.attempt(&batch, now_ns())) {
                Attempt::Written => {
                    let mut log = shared.lock();
                    log.pop(batch.len());
                    // A backlog that overflowed meanwhile stays degraded: what follows is lost
                    // to this run (the journal replays it at the next start).
                    if !log.overflowed {
                        self.recovered();
                    }
                    backoff = RETRY_FIRST;
                }
                Attempt::Failed => {
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(RETRY_MAX);
                }
            }
            if last_log.elapsed() >= Duration::from_secs(60) {
                last_log = Instant::now();
                let s = &self.status;
                info!(
                    written = s.written.load(Ordering::Relaxed),
                    seq = s.written_seq.load(Ordering::Relaxed),
                    lag_ms = s.lag_ms.load(Ordering::Relaxed),
                    backlog = shared.lock().items.len(),
                    "history store"
                );
            }
        }
        let left = shared.lock().items.len();
        if left > 0 {
            warn!(
                left,
                "history: stopping with changes unwritten (the kept journal replays them \
                at the next start)"
            );
        }
        let _ = drain.join();
        rt.block_on(self.store.close());
        Ok(())
    }
}

/// The backlog and its wake-up, shared by the drain and the writer.
struct Shared {
    log: Mutex<Backlog>,
    ready: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Backlog> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves every output into the backlog until the senders are gone.
    fn drain(&self, rx: &Receiver<Output>, status: &WriterStatus) {
        while let Ok(o) = rx.recv() {
            let mut log = self.lock();
            log.push(o, status);
            while let Ok(o) = rx.try_recv() {
                log.push(o, status);
            }
            drop(log);
            self.ready.notify_one();
        }
        self.lock().closed = true;
        self.ready.notify_one();
    }
}

/// The changes received but not yet committed, at most `max`. When it would pass `max` the
/// writer gives up on this process's run: it drops the backlog and everything after (counted in
/// `dropped`), marks history degraded, and writes nothing more — a store with a hole would be
/// worse than a stale one. The journal after the store's cursor is kept (the snapshot pruner
/// retains it), so the next start replays it into the store.
struct Backlog {
    items: VecDeque<ChangeRecord>,
    max: usize,
    overflowed: bool,
    /// Every sender is gone.
    closed: bool,
}

impl Backlog {
    fn new(max: usize) -> Backlog {
        Backlog { items: VecDeque::new(), max, overflowed: false, closed: false }
    }

    fn push(&mut self, o: Output, status: &WriterStatus) {
        let Output::Change(c) = o else { return };
        if self.overflowed {
            status.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.items.len() >= self.max {
            self.overflowed = true;
            status.degraded.store(true, Ordering::Release);
            status.dropped.fetch_add(self.items.len() as u64 + 1, Ordering::Relaxed);
            self.items = VecDeque::new();
            error!(
                max = self.max,
                "ALERT: the history store fell too far behind; history is \
                degraded until the next start, which catches it up from the journal"
            );
            return;
        }
        self.items.push_back(c);
    }

    fn front(&self, n: usize, into: &mut Vec<ChangeRecord>) {
        into.clear();
        into.extend(self.items.iter().take(n).copied());
    }

    fn pop(&mut self, n: usize) {
        self.items.drain(..n.min(self.items.len()));
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
                        status.degraded.store(true, Ordering::Release);
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
