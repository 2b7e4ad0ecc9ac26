//! What can go wrong with the data directory, typed: the binary adds context, tests match.

use std::path::{Path, PathBuf};

use engine_core::config::ConfigError;

/// A durability failure.
#[derive(Debug, thiserror::Error)]
pub enum DurabilityError {
    /// A file operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done ("opening", "syncing", ...).
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// The operating system's answer.
        #[source]
        source: std::io::Error,
    },
    /// Another process holds the directory's lock.
    #[error("{} is in use by another hundredx process", .0.display())]
    Locked(PathBuf),
    /// Records are missing between the state recovered so far and the next segment.
    #[error("journal gap: have state up to seq {have}, next segment {} starts at {first}", path.display())]
    Gap {
        /// Last sequence recovered.
        have: u64,
        /// First sequence of the next segment.
        first: u64,
        /// The next segment.
        path: PathBuf,
    },
    /// A record's sequence is not the next one.
    #[error("journal out of order in {}: seq {seq} after {after}", path.display())]
    OutOfOrder {
        /// The segment.
        path: PathBuf,
        /// The record's sequence.
        seq: u64,
        /// The sequence before it.
        after: u64,
    },
    /// Damage that is not a torn last write: recovery refuses to guess.
    #[error("journal {} is corrupt at byte {at} ({why}): not a torn write; refusing to start", path.display())]
    Corrupt {
        /// The segment.
        path: PathBuf,
        /// Byte offset of the bad record.
        at: u64,
        /// What the decoder said.
        why: String,
    },
    /// The configuration given does not validate.
    #[error("engine configuration: {0}")]
    Config(#[from] ConfigError),
}

/// `map_err` for an I/O result: `.map_err(io("opening", &path))?`.
pub(crate) fn io(
    action: &'static str,
    path: &Path,
) -> impl FnOnce(std::io::Error) -> DurabilityError {
    let path = path.to_path_buf();
    move |source| DurabilityError::Io { action, path, source }
}
