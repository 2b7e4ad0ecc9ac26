//! The journal: the engine's input stage, appending state-changing commands in ring order.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use engine_core::command::Command;
use engine_core::persist::{MAX_RECORD_BYTES, encode_record};
use engine_core::processor::InputStage;
use tracing::warn;

use super::data_dir::{numbered, sync_dir};
use super::error::io;
use super::{DataDir, Result, SEGMENT_EXT, SyncPolicy};

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
        let thread = std::thread::Builder::new()
            .name("hundredx-fsync".into())
            .spawn(move || {
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
            })
            .map_err(io("starting the fsync thread for", Path::new("journal")))?;
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
        let segment_bytes_max = segment_bytes_max.max(MAX_RECORD_BYTES as u64);
        let file = Arc::new(open_segment(&dir, first_seq, segment_bytes_max)?);
        let dir_handle = File::open(&dir).map_err(io("opening", &dir))?;
        let failed = Arc::new(AtomicBool::new(false));
        let syncer = match policy {
            SyncPolicy::Interval(every) => Some(Syncer::start(&file, every, Arc::clone(&failed))?),
            _ => None,
        };
        let spare = Some(open_spare(&dir, segment_bytes_max)?);
        Ok(Journal {
            dir,
            dir_handle,
            spare,
            policy,
            segment_bytes_max,
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
        self.rotate_if_full(seq)?;
        let n = encode_record(seq, cmd, &mut self.record);
        self.file.write_all(&self.record[..n])?;
        self.wrote(n);
        Ok(())
    }

    fn write_record(&mut self, seq: u64, record: &[u8]) -> std::io::Result<()> {
        self.rotate_if_full(seq)?;
        self.file.write_all(record)?;
        self.wrote(record.len());
        Ok(())
    }

    fn rotate_if_full(&mut self, next_seq: u64) -> std::io::Result<()> {
        if self.segment_bytes >= self.segment_bytes_max {
            self.rotate(next_seq)?;
        }
        Ok(())
    }

    fn wrote(&mut self, n: usize) {
        self.segment_bytes += n as u64;
        self.unsynced = true;
    }

    /// As [`InputStage::on_command`] for a record already encoded by
    /// [`engine_core::persist::encode_record`] (the replicated stage encodes each command once,
    /// for Redis and for this journal).
    pub fn on_encoded(&mut self, seq: u64, record: &[u8], end_of_batch: bool) {
        if let Err(e) = self.write_record(seq, record) {
            self.fail(seq, &e);
        }
        if end_of_batch && let Err(e) = self.sync_batch() {
            self.fail(seq, &e);
        }
    }

    fn rotate(&mut self, next_seq: u64) -> std::io::Result<()> {
        self.file.flush()?;
        self.file.get_ref().0.sync_data()?;
        // The spare was opened ahead of time: renaming it needs no descriptor.
        let file = match self.spare.take() {
            Some(f) => f,
            None => open_spare(&self.dir, self.segment_bytes_max).map_err(std::io::Error::other)?,
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
        match open_spare(&self.dir, self.segment_bytes_max) {
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

/// Reserves a segment's blocks up front (`fallocate` with `KEEP_SIZE`: the file's length stays
/// what was written, so recovery reads exactly as before): appends then write into allocated
/// blocks, and the filesystem allocates nothing on the write or sync path. Where the
/// filesystem cannot (`EOPNOTSUPP`), nothing is reserved and the journal works as before.
fn preallocate(file: &File, bytes: u64) {
    use rustix::fs::{FallocateFlags, fallocate};
    if let Err(e) = fallocate(file, FallocateFlags::KEEP_SIZE, 0, bytes) {
        tracing::debug!(error = %e, "journal: segment not pre-allocated");
    }
}

/// Opens (truncating) the spare segment for the next rotation, `bytes` reserved.
fn open_spare(dir: &Path, bytes: u64) -> Result<File> {
    let path = dir.join(SPARE_SEGMENT);
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)
        .map_err(io("opening", &path))?;
    preallocate(&file, bytes);
    Ok(file)
}

/// Opens the segment starting at `first_seq`, `bytes` reserved.
fn open_segment(dir: &Path, first_seq: u64, bytes: u64) -> Result<File> {
    let path = numbered(dir, first_seq, SEGMENT_EXT);
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io("opening journal segment", &path))?;
    preallocate(&file, bytes);
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
        // Give back the pre-allocated blocks past the end (the length itself is unchanged).
        let file = &self.file.get_ref().0;
        if let Err(e) = file.metadata().and_then(|m| file.set_len(m.len())) {
            warn!(error = %e, "journal: could not release the segment's reserved space");
        }
    }
}
