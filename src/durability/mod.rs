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
//! - [`recent_requests`] lists the request ids journaled lately (a restarted bridge refuses
//!   them if Redis delivers their entries again).
//! - [`recover`] loads the newest snapshot that decodes and whose state hash matches, replays the
//!   journal after it, cuts off a torn last record, and returns the engine ready to run.

mod data_dir;
mod error;
mod journal;
mod recent;
mod recovery;
mod snapshots;

use std::str::FromStr;
use std::time::Duration;

pub use data_dir::DataDir;
pub use error::DurabilityError;
pub use journal::Journal;
pub use recent::recent_requests;
pub use recovery::{RecoveryReport, Start, TornTail, recover, recover_into, recover_until};
pub use snapshots::{JournalPruning, SnapshotWriter};

/// What the durability layer returns.
pub type Result<T> = std::result::Result<T, DurabilityError>;

pub(crate) const JOURNAL_DIR: &str = "journal";
pub(crate) const SNAPSHOT_DIR: &str = "snapshots";
pub(crate) const SEGMENT_EXT: &str = "log";
pub(crate) const SNAPSHOT_EXT: &str = "snap";

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

    fn from_str(s: &str) -> std::result::Result<Self, String> {
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

/// `n` per `elapsed`, per second, in integers.
pub fn per_second(n: u64, elapsed: Duration) -> u64 {
    let ns = elapsed.as_nanos().max(1);
    u64::try_from(u128::from(n) * 1_000_000_000 / ns).unwrap_or(u64::MAX)
}
