//! Snapshots: written atomically off the engine thread; old ones pruned with the journal they
//! cover.

use std::fs::{self, File};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crossbeam_channel::Receiver;
use engine_core::persist::encode_snapshot;
use engine_core::processor::SnapshotRequest;
use engine_core::state::Engine;
use tracing::{info, warn};

use super::data_dir::{numbered, sync_dir};
use super::error::io;
use super::{DataDir, Result, SNAPSHOT_EXT};

/// Whether writing a snapshot also deletes the journal segments it makes unnecessary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalPruning {
    /// Delete segments wholly covered by the oldest snapshot kept.
    Prune,
    /// Keep the whole journal (so `replay --from-scratch` can audit everything).
    Keep,
}

/// Writes snapshots handed over by the engine thread, then prunes.
#[derive(Debug)]
pub struct SnapshotWriter {
    data: DataDir,
    keep: usize,
    pruning: JournalPruning,
    /// A reader's committed sequence (the history store's): the newest snapshot at or before
    /// it and the journal after that snapshot stay, so the reader can catch up after a crash.
    retain: Option<Arc<AtomicU64>>,
    /// Told `(seq, state hash)` of every snapshot written (replication compares them).
    written: Option<crossbeam_channel::Sender<(u64, [u8; 32])>>,
}

impl SnapshotWriter {
    /// A writer keeping the newest `keep` (>= 1) snapshots, pruning the journal they cover or not.
    pub fn new(data: &DataDir, keep: usize, pruning: JournalPruning) -> SnapshotWriter {
        SnapshotWriter {
            data: data.clone(),
            keep: keep.max(1),
            pruning,
            retain: None,
            written: None,
        }
    }

    /// Also reports `(seq, state hash)` of each snapshot written to `tx` (never blocking).
    pub fn reporting(
        self,
        tx: Option<crossbeam_channel::Sender<(u64, [u8; 32])>>,
    ) -> SnapshotWriter {
        SnapshotWriter { written: tx, ..self }
    }

    /// Also keeps what a reader at sequence `retain` still needs (see the field).
    pub fn retaining(self, retain: Option<Arc<AtomicU64>>) -> SnapshotWriter {
        SnapshotWriter { retain, ..self }
    }

    /// Serves `rx` until the engine drops its sender.
    pub fn run(self, rx: Receiver<SnapshotRequest>) {
        for req in rx {
            if let Err(e) = self.write(req.seq, &req.engine) {
                warn!(seq = req.seq, error = %format!("{e:#}"), "snapshot failed");
            }
        }
    }

    /// Writes the snapshot of `engine` at `seq` atomically and prunes old files.
    pub fn write(&self, seq: u64, engine: &Engine) -> Result<PathBuf> {
        let started = Instant::now();
        let hash = engine.state_hash();
        let bytes = encode_snapshot(seq, &hash, &engine.snapshot());
        let dir = self.data.snapshots();
        let path = numbered(&dir, seq, SNAPSHOT_EXT);
        let tmp = path.with_extension("tmp");
        {
            let mut f = File::create(&tmp).map_err(io("creating", &tmp))?;
            f.write_all(&bytes).and_then(|()| f.sync_all()).map_err(io("writing", &tmp))?;
        }
        fs::rename(&tmp, &path).map_err(io("renaming", &tmp))?;
        sync_dir(&dir)?;
        info!(seq, bytes = bytes.len(), ms = ?started.elapsed(),
            hash = %engine_core::hash::hex(&hash), "snapshot written");
        self.prune()?;
        if let Some(tx) = &self.written {
            let _ = tx.try_send((seq, hash));
        }
        Ok(path)
    }

    /// Deletes all but the newest `keep` snapshots, and (if pruning) every journal segment whose
    /// records all precede the oldest snapshot kept. The newest segment is never deleted. With
    /// a reader to retain for, the newest snapshot at or before its sequence counts as kept too;
    /// if there is none, no segment is deleted.
    pub fn prune(&self) -> Result<()> {
        let snaps = self.data.snapshot_files()?;
        let mut drop_n = snaps.len().saturating_sub(self.keep);
        let mut prune_journal = self.pruning == JournalPruning::Prune;
        if let Some(retain) = &self.retain {
            let reader_at = retain.load(Ordering::Acquire);
            match snaps.iter().rposition(|(seq, _)| *seq <= reader_at) {
                Some(needed) => drop_n = drop_n.min(needed),
                None => prune_journal = false,
            }
        }
        for (_, path) in &snaps[..drop_n] {
            fs::remove_file(path).map_err(io("deleting", path))?;
        }
        let Some(&(oldest_kept, _)) = snaps.get(drop_n) else { return Ok(()) };
        if !prune_journal {
            return Ok(());
        }
        let segments = self.data.segments()?;
        for pair in segments.windows(2) {
            let (_, path) = &pair[0];
            let (next_first, _) = pair[1];
            // Segment holds seqs first..next_first-1; all covered by the snapshot?
            if next_first.saturating_sub(1) <= oldest_kept {
                fs::remove_file(path).map_err(io("deleting", path))?;
                info!(segment = %path.display(), "journal segment pruned");
            }
        }
        Ok(())
    }
}
