//! Durability: the input journal, snapshots and recovery (LMAX style).
//!
//! Layout under the data directory:
//!
//! ```text
//! journal/00000000000000000001.log    segment: records from seq 1 (engine_core::persist format)
//! journal/00000000000000812345.log    next segment, named by its first seq
//! snapshots/00000000000000800000.snap state after seq 800000
//! LOCK                                held while a process uses the directory
//! ```
//!
//! - [`Journal`] is the engine's input stage: every command is appended in ring order; at the
//!   end of each batch it flushes and, per [`SyncPolicy`], `fdatasync`s. With `fsync` the engine
//!   sees a batch only after it is on disk, so no reply leaves before its command is durable.
//! - [`SnapshotWriter`] serializes the copies the engine thread hands over, writes them
//!   atomically (temp file, fsync, rename, fsync directory), keeps the newest few and prunes
//!   journal segments wholly covered by the oldest snapshot kept.
//! - [`recover`] loads the newest snapshot that decodes and whose state hash matches, replays the
//!   journal after it, cuts off a torn last record, and returns the engine ready to run.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use crossbeam_channel::Receiver;
use engine_core::command::Command;
use engine_core::config::EngineConfig;
use engine_core::event::{Output, Sink};
use engine_core::persist::{
    MAX_RECORD_BYTES, RecordError, RecordReader, decode_snapshot, encode_record, encode_snapshot,
};
use engine_core::processor::{InputStage, SnapshotRequest};
use engine_core::state::Engine;
use tracing::{info, warn};

const JOURNAL_DIR: &str = "journal";
const SNAPSHOT_DIR: &str = "snapshots";
const SEGMENT_EXT: &str = "log";
const SNAPSHOT_EXT: &str = "snap";

/// When the journal calls `fdatasync`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncPolicy {
    /// At the end of every batch (group commit): a reply implies its command is on disk.
    Fsync,
    /// By a background thread, every this long, if anything was written since the last sync.
    /// Every batch is still written to the OS at its end, so a process crash loses nothing; a
    /// machine crash loses at most the last interval.
    Interval(Duration),
    /// Never (only at rotation and shutdown): for benchmarks and throwaway runs.
    None,
}

impl FromStr for SyncPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fsync" => Ok(SyncPolicy::Fsync),
            "none" => Ok(SyncPolicy::None),
            _ => match s.strip_prefix("interval:").map(str::parse::<u64>) {
                Some(Ok(ms)) if ms > 0 && ms <= 60_000 => {
                    Ok(SyncPolicy::Interval(Duration::from_millis(ms)))
                }
                _ => Err(format!("{s:?}: expected fsync, none or interval:<1..=60000 ms>")),
            },
        }
    }
}

/// Paths of a data directory.
#[derive(Clone, Debug)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// Creates the directory layout if missing.
    pub fn create(root: &Path) -> Result<DataDir> {
        for sub in [JOURNAL_DIR, SNAPSHOT_DIR] {
            fs::create_dir_all(root.join(sub))
                .with_context(|| format!("creating {}", root.join(sub).display()))?;
        }
        Ok(DataDir { root: root.to_path_buf() })
    }

    /// Takes the directory's lock file: one process per data directory.
    pub fn lock(&self) -> Result<File> {
        let path = self.root.join("LOCK");
        let f = OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
        f.try_lock().map_err(|_| {
            anyhow::anyhow!("{} is in use by another hundredx process", self.root.display())
        })?;
        Ok(f)
    }

    fn journal(&self) -> PathBuf {
        self.root.join(JOURNAL_DIR)
    }

    fn snapshots(&self) -> PathBuf {
        self.root.join(SNAPSHOT_DIR)
    }

    /// Journal segments as (first seq, path), ascending.
    pub fn segments(&self) -> Result<Vec<(u64, PathBuf)>> {
        numbered_files(&self.journal(), SEGMENT_EXT)
    }

    /// Snapshot files as (seq, path), ascending.
    pub fn snapshot_files(&self) -> Result<Vec<(u64, PathBuf)>> {
        numbered_files(&self.snapshots(), SNAPSHOT_EXT)
    }
}

fn numbered_files(dir: &Path, ext: &str) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some(ext) {
            continue;
        }
        if let Some(n) = path.file_stem().and_then(|s| s.to_str()).and_then(|s| s.parse().ok()) {
            out.push((n, path));
        }
    }
    out.sort();
    Ok(out)
}

fn numbered(dir: &Path, n: u64, ext: &str) -> PathBuf {
    dir.join(format!("{n:020}.{ext}"))
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("syncing {}", dir.display()))
}

/// Name of the segment file opened ahead of time (renamed at rotation; never replayed).
const SPARE_SEGMENT: &str = "next-segment.spare";

/// The journaller: the engine's input stage.
///
/// It never needs a new file descriptor at the moment it rotates: the next segment is opened
/// ahead of time (`next-segment.spare`, renamed into place at rotation) and the directory handle
/// used to sync renames is held open. A process whose descriptors are exhausted by sockets can
/// therefore still rotate; if the spare cannot be replaced, the next rotation tries once more.
pub struct Journal {
    dir: PathBuf,
    dir_handle: File,
    spare: Option<File>,
    policy: SyncPolicy,
    segment_bytes_max: u64,
    file: BufWriter<SharedFile>,
    segment_bytes: u64,
    record: [u8; MAX_RECORD_BYTES],
    /// Records appended since the last end of batch (a batch of queries needs no flush).
    unsynced: bool,
    failed: Arc<AtomicBool>,
    syncer: Option<Syncer>,
}

/// The interval policy's background `fdatasync`: a second handle on the current segment.
struct Syncer {
    shared: Arc<SyncerShared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A segment shared with the background syncer without a second descriptor (`dup` needs one).
#[derive(Clone)]
struct SharedFile(Arc<File>);

impl Write for SharedFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        (&*self.0).write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        (&*self.0).flush()
    }
}

struct SyncerShared {
    file: std::sync::Mutex<Arc<File>>,
    dirty: AtomicBool,
    stop: AtomicBool,
    failed: Arc<AtomicBool>,
}

impl Syncer {
    fn start(file: &Arc<File>, every: Duration, failed: Arc<AtomicBool>) -> Result<Syncer> {
        let shared = Arc::new(SyncerShared {
            file: std::sync::Mutex::new(Arc::clone(file)),
            dirty: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            failed,
        });
        let s = Arc::clone(&shared);
        let thread =
            std::thread::Builder::new().name("hundredx-fsync".into()).spawn(move || {
                while !s.stop.load(Ordering::Relaxed) {
                    std::thread::park_timeout(every);
                    if s.dirty.swap(false, Ordering::AcqRel) {
                        let file = s.file.lock().unwrap_or_else(|e| e.into_inner());
                        if let Err(e) = file.sync_data() {
                            s.failed.store(true, Ordering::SeqCst);
                            tracing::error!(error = %e, "journal fdatasync failed");
                        }
                    }
                }
            })?;
        Ok(Syncer { shared, thread: Some(thread) })
    }

    fn switch_to(&self, file: &Arc<File>) {
        *self.shared.file.lock().unwrap_or_else(|e| e.into_inner()) = Arc::clone(file);
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("dir", &self.dir).field("policy", &self.policy).finish()
    }
}

impl Journal {
    /// Opens a new segment starting at `first_seq`.
    pub fn open(
        data: &DataDir,
        first_seq: u64,
        policy: SyncPolicy,
        segment_bytes_max: u64,
    ) -> Result<Journal> {
        let dir = data.journal();
        let file = Arc::new(open_segment(&dir, first_seq)?);
        let dir_handle = File::open(&dir).with_context(|| format!("opening {}", dir.display()))?;
        let failed = Arc::new(AtomicBool::new(false));
        let syncer = match policy {
            SyncPolicy::Interval(every) => Some(Syncer::start(&file, every, Arc::clone(&failed))?),
            _ => None,
        };
        let spare = Some(open_spare(&dir)?);
        Ok(Journal {
            dir,
            dir_handle,
            spare,
            policy,
            segment_bytes_max: segment_bytes_max.max(MAX_RECORD_BYTES as u64),
            file: BufWriter::with_capacity(1 << 18, SharedFile(file)),
            segment_bytes: 0,
            record: [0; MAX_RECORD_BYTES],
            unsynced: false,
            failed,
            syncer,
        })
    }

    /// Set once a write or sync failed (the journal then stops the engine: fail-stop).
    pub fn failed_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.failed)
    }

    fn append(&mut self, seq: u64, cmd: &Command) -> std::io::Result<()> {
        if self.segment_bytes >= self.segment_bytes_max {
            self.rotate(seq)?;
        }
        let n = encode_record(seq, cmd, &mut self.record);
        self.file.write_all(&self.record[..n])?;
        self.segment_bytes += n as u64;
        self.unsynced = true;
        Ok(())
    }

    fn rotate(&mut self, next_seq: u64) -> std::io::Result<()> {
        self.file.flush()?;
        self.file.get_ref().0.sync_data()?;
        // The spare was opened ahead of time: renaming it needs no descriptor.
        let file = match self.spare.take() {
            Some(f) => f,
            None => open_spare(&self.dir).map_err(std::io::Error::other)?,
        };
        std::fs::rename(self.dir.join(SPARE_SEGMENT), numbered(&self.dir, next_seq, SEGMENT_EXT))?;
        self.dir_handle.sync_all()?;
        let file = Arc::new(file);
        if let Some(s) = &self.syncer {
            s.switch_to(&file);
        }
        self.file = BufWriter::with_capacity(1 << 18, SharedFile(file));
        self.segment_bytes = 0;
        self.refill_spare();
        Ok(())
    }

    /// Opens the next spare segment; on failure (e.g. no descriptor free) logs and leaves it to
    /// the next rotation, which tries again before it would fail.
    fn refill_spare(&mut self) {
        match open_spare(&self.dir) {
            Ok(f) => self.spare = Some(f),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "journal: could not open the spare segment yet")
            }
        }
    }

    fn sync_batch(&mut self) -> std::io::Result<()> {
        if !self.unsynced {
            return Ok(());
        }
        self.unsynced = false;
        self.file.flush()?;
        match (&self.policy, &self.syncer) {
            (SyncPolicy::Fsync, _) => self.file.get_ref().0.sync_data()?,
            (SyncPolicy::Interval(_), Some(s)) => s.shared.dirty.store(true, Ordering::Release),
            _ => {}
        }
        Ok(())
    }

    fn fail(&self, seq: u64, e: &std::io::Error) -> ! {
        self.failed.store(true, Ordering::SeqCst);
        // Fail-stop: nothing after this command may be applied, because it may not be durable.
        // The engine thread waits on this stage forever; the process watchdog
        // ([`crate::DurableEngine`]) then exits so a supervisor restarts it and recovery runs.
        tracing::error!(seq, error = %e, "journal write failed: the engine stops accepting commands");
        panic!("journal write failed at seq {seq}: {e}");
    }
}

/// Opens (truncating) the spare segment for the next rotation.
fn open_spare(dir: &Path) -> Result<File> {
    let path = dir.join(SPARE_SEGMENT);
    OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))
}

fn open_segment(dir: &Path, first_seq: u64) -> Result<File> {
    let path = numbered(dir, first_seq, SEGMENT_EXT);
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("opening journal segment {}", path.display()))?;
    sync_dir(dir)?;
    Ok(file)
}

impl InputStage for Journal {
    fn on_command(&mut self, seq: u64, cmd: &Command, end_of_batch: bool) {
        if let Err(e) = self.append(seq, cmd) {
            self.fail(seq, &e);
        }
        if end_of_batch && let Err(e) = self.sync_batch() {
            self.fail(seq, &e);
        }
    }

    fn end_batch(&mut self) {
        if let Err(e) = self.sync_batch() {
            self.fail(0, &e);
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.syncer = None; // stop the background syncer first
        let synced = self.file.flush().and_then(|()| self.file.get_ref().0.sync_data());
        if let Err(e) = synced {
            warn!(error = %e, "journal: final flush failed");
        }
    }
}

/// Writes snapshots handed over by the engine thread, then prunes.
#[derive(Debug)]
pub struct SnapshotWriter {
    data: DataDir,
    keep: usize,
    prune_journal: bool,
}

impl SnapshotWriter {
    /// A writer keeping the newest `keep` (>= 1) snapshots, and pruning the journal they cover
    /// if `prune_journal`.
    pub fn new(data: &DataDir, keep: usize, prune_journal: bool) -> SnapshotWriter {
        SnapshotWriter { data: data.clone(), keep: keep.max(1), prune_journal }
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
            let mut f =
                File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &path)?;
        sync_dir(&dir)?;
        info!(seq, bytes = bytes.len(), ms = ?started.elapsed(),
            hash = %engine_core::hash::hex(&hash), "snapshot written");
        self.prune()?;
        Ok(path)
    }

    /// Deletes all but the newest `keep` snapshots, and (if pruning) every journal segment whose
    /// records all precede the oldest snapshot kept. The newest segment is never deleted.
    pub fn prune(&self) -> Result<()> {
        let snaps = self.data.snapshot_files()?;
        let drop_n = snaps.len().saturating_sub(self.keep);
        for (_, path) in &snaps[..drop_n] {
            fs::remove_file(path)?;
        }
        let Some(&(oldest_kept, _)) = snaps.get(drop_n) else { return Ok(()) };
        if !self.prune_journal {
            return Ok(());
        }
        let segments = self.data.segments()?;
        for pair in segments.windows(2) {
            let (_, path) = &pair[0];
            let (next_first, _) = pair[1];
            // Segment holds seqs first..next_first-1; all covered by the snapshot?
            if next_first.saturating_sub(1) <= oldest_kept {
                fs::remove_file(path)?;
                info!(segment = %path.display(), "journal segment pruned");
            }
        }
        Ok(())
    }
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

/// `n` per `elapsed`, per second, in integers.
pub fn per_second(n: u64, elapsed: Duration) -> u64 {
    let ns = elapsed.as_nanos().max(1);
    u64::try_from(u128::from(n) * 1_000_000_000 / ns).unwrap_or(u64::MAX)
}

/// Discards outputs during replay.
struct Discard;

impl Sink for Discard {
    #[inline]
    fn emit(&mut self, _: Output) {}
}

/// Recovers the engine from `data`: newest valid snapshot, then the journal after it.
///
/// `use_snapshots = false` replays the whole journal from the first record (an audit). With
/// `read_only`, a torn tail is reported but not truncated.
pub fn recover(
    data: &DataDir,
    cfg: &EngineConfig,
    use_snapshots: bool,
    read_only: bool,
) -> Result<(Engine, RecoveryReport)> {
    let started = Instant::now();
    let (mut engine, snapshot_seq, snapshots_rejected) = if use_snapshots {
        load_newest_snapshot(data, cfg)?
    } else {
        (Engine::new(cfg.clone())?, 0, 0)
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
        let last_segment = i + 1 == segments.len();
        if let Some((next_first, _)) = segments.get(i + 1)
            && *next_first <= report.last_seq + 1
        {
            continue; // wholly before what we already have
        }
        if *first > report.last_seq + 1 {
            bail!(
                "journal gap: have state up to seq {}, next segment {} starts at {first}",
                report.last_seq,
                path.display()
            );
        }
        let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let mut reader = RecordReader::new(&bytes);
        for rec in reader.by_ref() {
            let (seq, cmd) = match rec {
                Ok(r) => r,
                Err(e) => {
                    handle_bad_record(path, e, last_segment, read_only, &mut report)?;
                    break;
                }
            };
            if seq <= report.last_seq {
                continue;
            }
            if seq != report.last_seq + 1 {
                bail!(
                    "journal out of order in {}: seq {seq} after {}",
                    path.display(),
                    report.last_seq
                );
            }
            engine.apply(&cmd, &mut Discard);
            report.last_seq = seq;
            report.replayed += 1;
            // Reading the clock costs more than applying a tick: look every 64k records.
            if report.replayed.is_multiple_of(65_536)
                && progress.elapsed() >= Duration::from_secs(2)
            {
                progress = Instant::now();
                let rate = per_second(report.replayed, started.elapsed());
                info!(
                    replayed = report.replayed,
                    seq,
                    events_per_s = rate,
                    "recovery: replaying journal"
                );
            }
        }
    }
    report.elapsed = started.elapsed();
    let rate = per_second(report.replayed, report.elapsed);
    info!(snapshot_seq, replayed = report.replayed, last_seq = report.last_seq,
        elapsed = ?report.elapsed, events_per_s = rate,
        hash = %engine_core::hash::hex(&engine.state_hash()), "recovered");
    Ok((engine, report))
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
        bail!(
            "journal {} is corrupt at byte {at} ({e}): not a torn write; refusing to start",
            path.display()
        );
    }
    report.torn_tail = Some((path.to_path_buf(), at));
    if read_only {
        warn!(segment = %path.display(), offset = at, "torn last record ignored (read-only)");
        return Ok(());
    }
    warn!(segment = %path.display(), offset = at, error = %e, "torn last record cut off");
    let f = OpenOptions::new().write(true).open(path)?;
    f.set_len(at)?;
    f.sync_all()?;
    Ok(())
}

fn load_newest_snapshot(data: &DataDir, cfg: &EngineConfig) -> Result<(Engine, u64, usize)> {
    let mut rejected = 0;
    for (seq, path) in data.snapshot_files()?.into_iter().rev() {
        let loaded = fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| decode_snapshot(&b).map_err(|e| e.to_string()))
            .and_then(|f| {
                let engine =
                    Engine::restore(cfg.clone(), &f.snapshot).map_err(|e| e.to_string())?;
                if engine.state_hash() != f.state_hash || f.seq != seq {
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
