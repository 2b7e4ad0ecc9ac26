//! The data directory: its layout, its lock, and its numbered files.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use super::error::{DurabilityError, io};
use super::{JOURNAL_DIR, Result, SEGMENT_EXT, SNAPSHOT_DIR, SNAPSHOT_EXT};

/// Paths of a data directory.
#[derive(Clone, Debug)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// Creates the directory layout if missing.
    pub fn create(root: &Path) -> Result<DataDir> {
        for sub in [JOURNAL_DIR, SNAPSHOT_DIR] {
            let dir = root.join(sub);
            fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
        }
        Ok(DataDir { root: root.to_path_buf() })
    }

    /// An existing data directory, read as it is (nothing created): for tools that must not
    /// write, such as `hundredx stress`.
    pub fn open_existing(root: &Path) -> Result<DataDir> {
        for sub in [JOURNAL_DIR, SNAPSHOT_DIR] {
            let dir = root.join(sub);
            if !dir.is_dir() {
                return Err(io("finding", &dir)(std::io::ErrorKind::NotFound.into()));
            }
        }
        Ok(DataDir { root: root.to_path_buf() })
    }

    /// Takes the directory's lock file: one process per data directory.
    pub fn lock(&self) -> Result<File> {
        let path = self.root.join("LOCK");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io("opening", &path))?;
        f.try_lock().map_err(|_| DurabilityError::Locked(self.root.clone()))?;
        Ok(f)
    }

    pub(crate) fn journal(&self) -> PathBuf {
        self.root.join(JOURNAL_DIR)
    }

    pub(crate) fn snapshots(&self) -> PathBuf {
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
    for entry in fs::read_dir(dir).map_err(io("listing", dir))? {
        let path = entry.map_err(io("listing", dir))?.path();
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

pub(crate) fn numbered(dir: &Path, n: u64, ext: &str) -> PathBuf {
    dir.join(format!("{n:020}.{ext}"))
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io("syncing", dir))
}
