//! The `hundredx` crate: wiring of the engine to its adapters, and durability.
//!
//! - [`durability`]: journal (input stage), snapshot writer, recovery.
//! - [`stress`]: a price path applied to a copy of the state, and what the engine did.
//! - [`config_file`]: `serve --config FILE` (markets and limits as JSON).
//! - [`DurableEngine`]: recover from a data directory, then run the engine with its journal and
//!   snapshot writer; shut down with a final snapshot.
//!
//! The binary (`src/main.rs`) parses the command line and runs `serve`, `replay`, `snapshot`.

pub mod config_file;
pub mod durability;
pub mod replication;
pub mod secrets;
pub mod stress;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use durability::{
    DataDir, Journal, JournalPruning, RecoveryReport, SnapshotWriter, Start, SyncPolicy, TornTail,
    recover, recover_into,
};
use engine_core::config::EngineConfig;
use engine_core::processor::{EngineHandle, SnapshotPolicy, StartOptions, Subscription};
use engine_core::state::Engine;
use tracing::info;

/// How a durable engine journals and snapshots.
#[derive(Clone, Debug)]
pub struct DurableOptions {
    /// The data directory.
    pub data_dir: PathBuf,
    /// When the journal syncs.
    pub sync: SyncPolicy,
    /// Journal segment size before rotation.
    pub segment_bytes: u64,
    /// When the engine snapshots.
    pub snapshots: SnapshotPolicy,
    /// Snapshots kept (older ones are deleted).
    pub keep_snapshots: usize,
    /// Delete journal segments wholly covered by the oldest snapshot kept, or keep the whole
    /// journal so `hundredx replay --from-scratch` can audit everything.
    pub pruning: JournalPruning,
    /// After a journal write failure, exit the process with [`EXIT_FAIL_STOP`] so a supervisor
    /// restarts it and recovery runs (on by default; tests that inspect the failure turn it off).
    pub exit_on_fail_stop: bool,
    /// Rings, wait strategy and pinning of the engine thread.
    pub runtime: engine_core::config::RuntimeConfig,
    /// A read model fed every state change (the history store's writer), if any.
    pub changes: Option<ChangesTap>,
    /// Replicated mode: the journal also goes to `engine-journal` (see [`replication`]).
    pub replication: Option<ReplicatedStage>,
}

/// What [`DurableEngine::start`] needs to put the replicated journal in front of the local one.
#[derive(Clone, Debug)]
pub struct ReplicatedStage {
    /// Redis, lease, WAIT.
    pub opts: replication::ReplicationOptions,
    /// Shared with the [`replication::node::Node`].
    pub shared: Arc<replication::Shared>,
    /// The snapshot writer reports `(seq, state hash)` here for the node to compare.
    pub hashes: crossbeam_channel::Sender<(u64, [u8; 32])>,
}

/// Where the engine's state changes go, losslessly, and from where: recovery starts at a
/// snapshot at or before `after_seq` and replays the journal, sending the changes after
/// `(after_seq, after_n)` first; then every live change follows (a
/// [`engine_core::processor::Subscription::Changes`] registered before the first command). The
/// journal behind `retain_seq` (what the reader has committed) is never pruned.
#[derive(Clone, Debug)]
pub struct ChangesTap {
    /// The reader's cursor: the last change it holds.
    pub after_seq: u64,
    /// See `after_seq` (-1: none of that command's changes).
    pub after_n: i64,
    /// The reader's channel (a full channel holds the engine back: nothing is dropped).
    pub tx: crossbeam_channel::Sender<engine_core::event::Output>,
    /// The sequence the reader has committed, kept current by it.
    pub retain_seq: Arc<std::sync::atomic::AtomicU64>,
}

/// Sends the replayed changes after the tap's cursor to its channel.
struct TapSink<'a>(&'a ChangesTap);

impl engine_core::event::Sink for TapSink<'_> {
    fn emit(&mut self, output: engine_core::event::Output) {
        if let engine_core::event::Output::Change(c) = output
            && (c.seq, i64::from(c.n)) > (self.0.after_seq, self.0.after_n)
        {
            // A reader that hung up is restarting with the process; nothing to keep it for.
            let _ = self.0.tx.send(output);
        }
    }
}

/// The exit code of a fail-stop (`EX_IOERR`).
pub const EXIT_FAIL_STOP: i32 = 74;

impl DurableOptions {
    /// `fsync`, 64 MiB segments, a snapshot every million commands or 5 minutes, keep 3.
    pub fn new(data_dir: &Path) -> DurableOptions {
        DurableOptions {
            data_dir: data_dir.to_path_buf(),
            sync: SyncPolicy::Fsync,
            segment_bytes: 64 << 20,
            snapshots: SnapshotPolicy {
                every_commands: Some(1_000_000),
                every_ns: Some(300_000_000_000),
                aligned: true,
            },
            keep_snapshots: 3,
            pruning: JournalPruning::Prune,
            exit_on_fail_stop: true,
            runtime: engine_core::config::RuntimeConfig::default(),
            changes: None,
            replication: None,
        }
    }
}

/// A running engine with its journal and snapshot writer.
#[derive(Debug)]
pub struct DurableEngine {
    /// Submit commands and subscribe here.
    pub handle: EngineHandle,
    /// What recovery found on start.
    pub recovery: RecoveryReport,
    writer: JoinHandle<()>,
    data: DataDir,
    keep_snapshots: usize,
    pruning: JournalPruning,
    retain: Option<Arc<std::sync::atomic::AtomicU64>>,
    journal_failed: Arc<AtomicBool>,
    _lock: File,
}

impl DurableEngine {
    /// Recovers from `opts.data_dir` (creating it if new) and starts the engine.
    pub fn start(cfg: EngineConfig, opts: &DurableOptions) -> Result<DurableEngine> {
        let data = DataDir::create(&opts.data_dir)?;
        let lock = data.lock()?;
        let (engine, recovery) = match &opts.changes {
            None => recover(&data, &cfg, Start::LatestSnapshot, TornTail::Truncate)?,
            Some(tap) => {
                let start = Start::AtOrBefore(tap.after_seq);
                recover_into(&data, &cfg, start, TornTail::Truncate, &mut TapSink(tap)).context(
                    "recovering from a snapshot at or before the history store's cursor (a \
                         store older than the kept journal cannot catch up: rebuild it with \
                         `hundredx history rebuild` from a kept journal, or move it aside)",
                )?
            }
        };
        assert_eq!(engine.seq(), recovery.last_seq, "recovered state and journal disagree");
        let first_seq = recovery.last_seq + 1;
        let journal = Journal::open(&data, first_seq, opts.sync, opts.segment_bytes)?;
        let journal_failed = journal.failed_flag();
        let (tx, rx) = crossbeam_channel::bounded(1);
        let retain = opts.changes.as_ref().map(|t| Arc::clone(&t.retain_seq));
        let writer = SnapshotWriter::new(&data, opts.keep_snapshots, opts.pruning)
            .retaining(retain.clone())
            .reporting(opts.replication.as_ref().map(|r| r.hashes.clone()));
        let writer = std::thread::Builder::new()
            .name("hundredx-snapshots".into())
            .spawn(move || writer.run(rx))?;
        let options = StartOptions {
            input_stage: Some(match &opts.replication {
                None => Box::new(journal),
                Some(r) => Box::new(replication::stage::ReplicatedJournal::new(
                    journal,
                    Arc::clone(&r.shared),
                    r.opts.clone(),
                )),
            }),
            snapshots: Some((opts.snapshots, tx)),
            runtime: opts.runtime,
            subscribers: opts
                .changes
                .iter()
                .map(|t| (Subscription::Changes, t.tx.clone()))
                .collect(),
        };
        let handle = EngineHandle::start_with(engine, options).context("starting the engine")?;
        if opts.exit_on_fail_stop {
            spawn_fail_stop_watchdog(Arc::clone(&journal_failed))?;
        }
        info!(data_dir = %opts.data_dir.display(), first_seq, sync = ?opts.sync, "engine running with journal");
        Ok(DurableEngine {
            handle,
            recovery,
            writer,
            data,
            keep_snapshots: opts.keep_snapshots,
            pruning: opts.pruning,
            retain,
            journal_failed,
            _lock: lock,
        })
    }

    /// `(request id, ms)` of the commands journaled at or after `since_ms` (at most `max`, the
    /// newest): requests this engine applied before it restarted.
    pub fn recent_requests(&self, since_ms: u64, max: usize) -> Result<Vec<(u64, u64)>> {
        Ok(durability::recent_requests(&self.data, since_ms, max)?)
    }

    /// True once the journal failed to write (the engine has stopped applying commands).
    pub fn journal_failed(&self) -> bool {
        self.journal_failed.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Drains the rings, flushes the journal, writes a final snapshot so the next start replays
    /// nothing, and returns the final state and its last sequence.
    pub fn shutdown(self) -> Result<(Engine, u64)> {
        let DurableEngine {
            handle, recovery, writer, data, keep_snapshots, pruning, retain, ..
        } = self;
        let (engine, last_seq) = handle.shutdown_at().context("stopping the engine")?;
        writer.join().map_err(|_| anyhow::anyhow!("snapshot writer panicked"))?;
        let newest = data.snapshot_files()?.last().map_or(0, |s| s.0);
        if last_seq > newest.max(recovery.snapshot_seq) {
            SnapshotWriter::new(&data, keep_snapshots, pruning)
                .retaining(retain)
                .write(last_seq, &engine)?;
        }
        Ok((engine, last_seq))
    }
}

/// Exits the process soon after the journal fails: the engine has stopped applying commands
/// (nothing after the failure may be applied: it may not be durable), so staying up only serves
/// 503s and hangs shutdown. A supervisor restarts the process and recovery runs.
fn spawn_fail_stop_watchdog(failed: Arc<AtomicBool>) -> Result<()> {
    std::thread::Builder::new().name("hundredx-failstop".into()).spawn(move || {
        while !failed.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        tracing::error!(
            exit_code = EXIT_FAIL_STOP,
            "FAIL-STOP: the journal could not write; exiting so that recovery runs on restart"
        );
        std::process::exit(EXIT_FAIL_STOP);
    })?;
    Ok(())
}

/// Wall-clock time in nanoseconds since the Unix epoch: the receive time adapters stamp on
/// commands (the engine itself never reads a clock). The HTTP adapter's, not a second copy.
pub use ground::time::now_ns;

/// Resolves on SIGINT (Ctrl-C) or SIGTERM (what systemd and container runtimes send): every
/// command stops the same clean way on either, final snapshot included.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops cleanly");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => info!("SIGINT: shutting down"),
        () = term => info!("SIGTERM: shutting down"),
    }
}
