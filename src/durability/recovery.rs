//! Recovery: the newest snapshot that verifies, then the journal after it.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use engine_core::config::EngineConfig;
use engine_core::event::{Output, Sink};
use engine_core::persist::{RecordError, RecordReader, decode_snapshot};
use engine_core::state::Engine;
use tracing::{info, warn};

use super::error::{DurabilityError, io};
use super::{DataDir, Result, per_second};

/// Where recovery starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// From the newest snapshot that verifies (an older one if it does not), then the journal.
    LatestSnapshot,
    /// From an empty engine, replaying the whole journal (an audit).
    Scratch,
    /// From the newest snapshot at or before this sequence (an empty engine if there is none),
    /// so that replay re-emits every change after it: a read model that lags the engine (the
    /// history store) catches up from the journal.
    AtOrBefore(u64),
}

/// What recovery does with a torn last record (a crash mid-write).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TornTail {
    /// Cut it off, so the journal can be appended to again (before running).
    Truncate,
    /// Report it, change nothing (offline tools).
    Report,
}

/// What [`recover`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Seq of the snapshot used (0: started empty).
    pub snapshot_seq: u64,
    /// Snapshots skipped because they were damaged or did not verify.
    pub snapshots_rejected: usize,
    /// Journal records applied after the snapshot.
    pub replayed: u64,
    /// Seq of the last command in the recovered state.
    pub last_seq: u64,
    /// A torn last record was cut off (or, read-only, ignored) at this (segment, offset).
    pub torn_tail: Option<(PathBuf, u64)>,
    /// Time spent.
    pub elapsed: Duration,
}

/// Discards outputs during replay.
struct Discard;

impl Sink for Discard {
    #[inline]
    fn emit(&mut self, _: Output) {}
}

/// Recovers the engine from `data`: newest valid snapshot, then the journal after it.
///
/// See [`Start`] and [`TornTail`]. Damage anywhere but the last record, or a gap in the
/// sequence, is an error: recovery refuses to guess.
pub fn recover(
    data: &DataDir,
    cfg: &EngineConfig,
    start: Start,
    torn_tail: TornTail,
) -> Result<(Engine, RecoveryReport)> {
    recover_into(data, cfg, start, torn_tail, &mut Discard)
}

/// As [`recover`], writing the outputs of the replayed commands to `sink` (the same outputs
/// they had live: the engine is deterministic).
pub fn recover_into<S: Sink>(
    data: &DataDir,
    cfg: &EngineConfig,
    start: Start,
    torn_tail: TornTail,
    sink: &mut S,
) -> Result<(Engine, RecoveryReport)> {
    recover_until(data, cfg, (start, u64::MAX), torn_tail, sink)
}

/// As [`recover_into`], stopping after the command at journal sequence `until` (the state a
/// past command left: `hundredx explain`).
pub fn recover_until<S: Sink>(
    data: &DataDir,
    cfg: &EngineConfig,
    (start, until): (Start, u64),
    torn_tail: TornTail,
    sink: &mut S,
) -> Result<(Engine, RecoveryReport)> {
    let started = Instant::now();
    let (mut engine, snapshot_seq, snapshots_rejected) = match start {
        Start::LatestSnapshot => load_newest_snapshot(data, cfg, u64::MAX)?,
        Start::AtOrBefore(seq) => load_newest_snapshot(data, cfg, seq)?,
        Start::Scratch => (Engine::new(cfg.clone())?, 0, 0),
    };
    let mut report = RecoveryReport {
        snapshot_seq,
        snapshots_rejected,
        replayed: 0,
        last_seq: snapshot_seq,
        torn_tail: None,
        elapsed: Duration::ZERO,
    };
    let segments = data.segments()?;
    let mut progress = Instant::now();
    for (i, (first, path)) in segments.iter().enumerate() {
        if report.last_seq >= until {
            break;
        }
        let last_segment = i + 1 == segments.len();
        if let Some((next_first, _)) = segments.get(i + 1)
            && *next_first <= report.last_seq + 1
        {
            continue; // wholly before what we already have
        }
        if *first > report.last_seq + 1 {
            return Err(DurabilityError::Gap {
                have: report.last_seq,
                first: *first,
                path: path.clone(),
            });
        }
        let tail = if last_segment { TailOf::Last(torn_tail) } else { TailOf::Inner };
        let mut replay = Replay { engine: &mut engine, report: &mut report, sink, until };
        replay.segment(path, tail, &mut progress, started)?;
    }
    report.elapsed = started.elapsed();
    let rate = per_second(report.replayed, report.elapsed);
    info!(snapshot_seq, replayed = report.replayed, last_seq = report.last_seq,
        elapsed = ?report.elapsed, events_per_s = rate,
        hash = %engine_core::hash::hex(&engine.state_hash()), "recovered");
    Ok((engine, report))
}

/// Where a segment stands: only the last one may end in a torn record.
#[derive(Clone, Copy)]
enum TailOf {
    Inner,
    Last(TornTail),
}

/// Replays onto `engine`, counting in `report`, outputs to `sink`.
struct Replay<'a, S> {
    engine: &'a mut Engine,
    report: &'a mut RecoveryReport,
    sink: &'a mut S,
    /// The last sequence to apply.
    until: u64,
}

impl<S: Sink> Replay<'_, S> {
    /// Applies one segment's records after `report.last_seq`, in order; a bad record ends it
    /// (see [`handle_bad_record`]). Logs progress at most every 2 s.
    fn segment(
        &mut self,
        path: &Path,
        tail: TailOf,
        progress: &mut Instant,
        started: Instant,
    ) -> Result<()> {
        let bytes = fs::read(path).map_err(io("reading", path))?;
        for rec in RecordReader::new(&bytes) {
            let (seq, cmd) = match rec {
                Ok(r) => r,
                Err(e) => {
                    let (last_segment, read_only) = match tail {
                        TailOf::Inner => (false, true),
                        TailOf::Last(t) => (true, t == TornTail::Report),
                    };
                    return handle_bad_record(path, e, last_segment, read_only, self.report);
                }
            };
            if seq <= self.report.last_seq {
                continue;
            }
            if seq > self.until {
                break;
            }
            if seq != self.report.last_seq + 1 {
                return Err(DurabilityError::OutOfOrder {
                    path: path.to_path_buf(),
                    seq,
                    after: self.report.last_seq,
                });
            }
            self.engine.apply(&cmd, self.sink);
            self.report.last_seq = seq;
            self.report.replayed += 1;
            // Reading the clock costs more than applying a tick: look every 64k records.
            if self.report.replayed.is_multiple_of(65_536)
                && progress.elapsed() >= Duration::from_secs(2)
            {
                *progress = Instant::now();
                let rate = per_second(self.report.replayed, started.elapsed());
                info!(
                    replayed = self.report.replayed,
                    seq,
                    events_per_s = rate,
                    "recovery: replaying journal"
                );
            }
        }
        Ok(())
    }
}

fn handle_bad_record(
    path: &Path,
    e: RecordError,
    last_segment: bool,
    read_only: bool,
    report: &mut RecoveryReport,
) -> Result<()> {
    let at = e.offset() as u64;
    if !last_segment || matches!(e, RecordError::Undecodable { .. }) {
        return Err(DurabilityError::Corrupt { path: path.to_path_buf(), at, why: e.to_string() });
    }
    report.torn_tail = Some((path.to_path_buf(), at));
    if read_only {
        warn!(segment = %path.display(), offset = at, "torn last record ignored (read-only)");
        return Ok(());
    }
    warn!(segment = %path.display(), offset = at, error = %e, "torn last record cut off");
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(at).and_then(|()| f.sync_all()))
        .map_err(io("truncating the torn tail of", path))
}

/// The newest snapshot at or before `at_most` that verifies, or an empty engine.
fn load_newest_snapshot(
    data: &DataDir,
    cfg: &EngineConfig,
    at_most: u64,
) -> Result<(Engine, u64, usize)> {
    let mut rejected = 0;
    for (seq, path) in data.snapshot_files()?.into_iter().rev().filter(|(s, _)| *s <= at_most) {
        let loaded = fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| decode_snapshot(&b).map_err(|e| e.to_string()))
            .and_then(|f| {
                let engine =
                    Engine::restore(cfg.clone(), &f.snapshot).map_err(|e| e.to_string())?;
                // Written by an earlier release: its hash as that release computed it.
                let hash = engine.state_hash_in(f.hash_shape);
                if hash != f.state_hash || f.seq != seq || engine.seq() != seq {
                    return Err("state hash or seq differs from the recorded one".to_string());
                }
                Ok(engine)
            });
        match loaded {
            Ok(engine) => {
                info!(seq, snapshot = %path.display(), "snapshot loaded");
                return Ok((engine, seq, rejected));
            }
            Err(why) => {
                rejected += 1;
                warn!(snapshot = %path.display(), why, "snapshot unusable, trying an older one");
            }
        }
    }
    Ok((Engine::new(cfg.clone())?, 0, rejected))
}
