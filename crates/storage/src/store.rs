//! Fragments on disk, content-addressed by their Merkle root.
//!
//! Layout: `<dir>/<first 2 hex chars>/<64 hex chars>.frag`. A write goes to a unique temporary
//! file in `<dir>/tmp/`, is fsynced, renamed into place, and the directory is fsynced, so
//! a crash leaves either the whole fragment or nothing under its final name. At most
//! `max_concurrent_writes` writes run at once; further writes fail fast with
//! [`StoreError::Busy`] so the caller can retry elsewhere instead of queueing unboundedly.
//! Reads verify the content against the root (DESIGN.md invariant 6): a corrupted file is
//! reported as [`StoreError::Corrupt`], never returned.

use crate::{merkle, Hash};
use std::{
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
};
use thiserror::Error;

/// Largest fragment a store accepts (a 32 MiB segment at k = 1, plus codec padding).
pub const MAX_FRAGMENT_SIZE_BYTES: usize = 32 * 1024 * 1024 + 64;
/// Subdirectory for in-progress writes (fragment shard directories are 2 hex characters).
const TMP_DIR: &str = "tmp";
/// Default bound on concurrent fragment writes.
pub const DEFAULT_MAX_CONCURRENT_WRITES: usize = 16;

/// Why a fragment operation failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The content does not hash to the root it was stored or requested under.
    #[error("fragment {root} failed verification against its root; it will be repaired from other nodes")]
    Corrupt {
        /// Hex root.
        root: String,
    },
    /// The fragment is not stored here.
    #[error("fragment {root} is not stored on this node")]
    NotFound {
        /// Hex root.
        root: String,
    },
    /// Too many writes in flight.
    #[error("fragment store busy ({max} writes in flight); retry later or on another node")]
    Busy {
        /// The configured bound.
        max: usize,
    },
    /// The fragment exceeds [`MAX_FRAGMENT_SIZE_BYTES`].
    #[error("fragment of {size_bytes} bytes exceeds the {max_bytes}-byte limit")]
    Oversize {
        /// Size offered.
        size_bytes: usize,
        /// The limit.
        max_bytes: usize,
    },
    /// The disk failed.
    #[error("fragment store I/O error at {path}: {source}; check the data directory's disk")]
    Io {
        /// Path involved.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

fn hex(h: &Hash) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A directory of fragments.
#[derive(Clone)]
pub struct FragmentStore {
    dir: PathBuf,
    max_concurrent_writes: usize,
    in_flight: Arc<AtomicUsize>,
    temp_seq: Arc<AtomicU64>,
}

/// Releases a write slot when dropped (also on error paths).
struct WriteSlot(Arc<AtomicUsize>);
impl Drop for WriteSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl FragmentStore {
    /// Opens (creating if needed) a store in `dir`, removing temporary files a crash left.
    pub fn open(dir: &Path, max_concurrent_writes: usize) -> Result<Self, StoreError> {
        assert!(max_concurrent_writes > 0, "write bound must be positive");
        // Every temporary file lives in one directory, so clearing a crash's leftovers never
        // has to walk the fragments themselves.
        let tmp = dir.join(TMP_DIR);
        match fs::remove_dir_all(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&tmp)(e)),
        }
        fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            max_concurrent_writes,
            in_flight: Arc::new(AtomicUsize::new(0)),
            temp_seq: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Where the fragment `root` lives on disk (drills and tests damage fragments there).
    pub fn path_of(&self, root: &Hash) -> PathBuf {
        let h = hex(root);
        self.dir.join(&h[..2]).join(format!("{h}.frag"))
    }

    /// Stores `data`, which must hash to `root`; idempotent. Returns once it is durable.
    pub fn put(&self, root: &Hash, data: &[u8]) -> Result<(), StoreError> {
        if data.len() > MAX_FRAGMENT_SIZE_BYTES {
            return Err(StoreError::Oversize {
                size_bytes: data.len(),
                max_bytes: MAX_FRAGMENT_SIZE_BYTES,
            });
        }
        if merkle::root_of(data) != *root {
            return Err(StoreError::Corrupt { root: hex(root) });
        }
        let path = self.path_of(root);
        if path.exists() {
            return Ok(());
        }
        let prev = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let _slot = WriteSlot(self.in_flight.clone());
        if prev >= self.max_concurrent_writes {
            return Err(StoreError::Busy {
                max: self.max_concurrent_writes,
            });
        }
        let parent = path.parent().expect("fragment path has a parent");
        fs::create_dir_all(parent).map_err(io_err(parent))?;
        let seq = self.temp_seq.fetch_add(1, Ordering::Relaxed);
        let tmp =
            self.dir
                .join(TMP_DIR)
                .join(format!("{}.{}.{seq}.tmp", hex(root), std::process::id()));
        let result = (|| {
            let mut f = fs::File::create(&tmp).map_err(io_err(&tmp))?;
            f.write_all(data).map_err(io_err(&tmp))?;
            f.sync_all().map_err(io_err(&tmp))?;
            fs::rename(&tmp, &path).map_err(io_err(&path))?;
            // The rename is durable only once the directory entry is.
            fs::File::open(parent)
                .and_then(|d| d.sync_all())
                .map_err(io_err(parent))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Reads and verifies the fragment stored under `root`.
    pub fn get(&self, root: &Hash) -> Result<Vec<u8>, StoreError> {
        let path = self.path_of(root);
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound { root: hex(root) })
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        if merkle::root_of(&data) != *root {
            return Err(StoreError::Corrupt { root: hex(root) });
        }
        Ok(data)
    }

    /// Reads the fragment under `root` without verifying it, for callers that verify what
    /// they receive anyway (the gateway checks every fragment against its manifest root).
    pub fn read_unverified(&self, root: &Hash) -> Result<Vec<u8>, StoreError> {
        let path = self.path_of(root);
        match fs::read(&path) {
            Ok(d) => Ok(d),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(StoreError::NotFound { root: hex(root) })
            }
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Size in bytes of the fragment file under `root` (not verified), so a server can reserve
    /// memory for it before reading it.
    pub fn size_of(&self, root: &Hash) -> Result<u64, StoreError> {
        let path = self.path_of(root);
        match fs::metadata(&path) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(StoreError::NotFound { root: hex(root) })
            }
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// True if a fragment file exists under `root` (not verified).
    pub fn contains(&self, root: &Hash) -> bool {
        self.path_of(root).exists()
    }

    /// Deletes the fragment under `root`; deleting a missing fragment is not an error.
    pub fn delete(&self, root: &Hash) -> Result<(), StoreError> {
        let path = self.path_of(root);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_idempotent_and_verified() {
        let dir = tempfile::tempdir().unwrap();
        let store = FragmentStore::open(dir.path(), 4).unwrap();
        let data = vec![7u8; 10_000];
        let root = merkle::root_of(&data);
        assert!(matches!(
            store.size_of(&root),
            Err(StoreError::NotFound { .. })
        ));
        store.put(&root, &data).unwrap();
        store.put(&root, &data).unwrap();
        assert_eq!(store.get(&root).unwrap(), data);
        assert_eq!(store.size_of(&root).unwrap(), data.len() as u64);
        // Wrong root for the content: refused, nothing stored.
        let other = merkle::root_of(b"other");
        assert!(matches!(
            store.put(&other, &data),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(!store.contains(&other));
        assert!(matches!(
            store.get(&other),
            Err(StoreError::NotFound { .. })
        ));
        store.delete(&root).unwrap();
        store.delete(&root).unwrap();
        assert!(matches!(store.get(&root), Err(StoreError::NotFound { .. })));
    }

    #[test]
    fn bit_rot_is_detected_on_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = FragmentStore::open(dir.path(), 4).unwrap();
        let data: Vec<u8> = (0..9000u32).map(|i| i as u8).collect();
        let root = merkle::root_of(&data);
        store.put(&root, &data).unwrap();
        let path = store.path_of(&root);
        let mut bytes = fs::read(&path).unwrap();
        bytes[4500] ^= 0x10;
        fs::write(&path, bytes).unwrap();
        assert!(matches!(store.get(&root), Err(StoreError::Corrupt { .. })));
    }

    #[test]
    fn leftover_temp_files_are_removed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let shard = dir.path().join(TMP_DIR);
        fs::create_dir_all(&shard).unwrap();
        let tmp = shard.join("ab00.1.0.tmp");
        fs::write(&tmp, b"partial").unwrap();
        FragmentStore::open(dir.path(), 1).unwrap();
        assert!(!tmp.exists());
    }

    #[test]
    fn concurrent_writes_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let store = FragmentStore::open(dir.path(), 2).unwrap();
        // Hold both slots, as two in-flight writes would.
        store.in_flight.store(2, Ordering::SeqCst);
        let data = b"x".to_vec();
        let root = merkle::root_of(&data);
        assert!(matches!(
            store.put(&root, &data),
            Err(StoreError::Busy { max: 2 })
        ));
        store.in_flight.store(1, Ordering::SeqCst);
        store.put(&root, &data).unwrap();
        assert_eq!(store.in_flight.load(Ordering::SeqCst), 1, "slot released");
        let big = vec![0u8; MAX_FRAGMENT_SIZE_BYTES + 1];
        assert!(matches!(
            store.put(&[0; 32], &big),
            Err(StoreError::Oversize { .. })
        ));
    }
}
