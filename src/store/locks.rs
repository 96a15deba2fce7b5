//! The store's flocks: `locks/store.lock` (shared by every open store, exclusive for gc)
//! and one `locks/<key>.lock` per stage key while it executes. Flocks die with their
//! process, so a killed build never leaves a lock behind.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use super::{StageKey, Store};

/// The file every open store holds an flock on.
const STORE_LOCK: &str = "store.lock";

impl Store {
    /// Takes the exclusive lock of one stage key, blocking until it is free. The lock is
    /// an flock: the kernel releases it when the holder exits, however it exits, so a
    /// killed build never leaves a lock that blocks the next one.
    pub fn lock_stage(&self, key: &StageKey) -> io::Result<StageLock> {
        let path = self.root.join("locks").join(format!("{}.lock", key.0));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| {
                // A read-only cache serves hits; what must run cannot be stored there.
                let hint = match e.kind() {
                    io::ErrorKind::ReadOnlyFilesystem | io::ErrorKind::PermissionDenied => {
                        format!(
                            " (the cache at {} is not writable: stages that must run cannot \
                             be stored in it)",
                            self.root.display()
                        )
                    }
                    _ => String::new(),
                };
                io::Error::new(
                    e.kind(),
                    format!("cannot open {}: {e}{hint}", path.display()),
                )
            })?;
        file.lock().map_err(|e| lock_error(&path, e))?;
        Ok(StageLock { _file: file })
    }
}

pub(super) fn open_store_lock(root: &Path) -> io::Result<(File, PathBuf)> {
    let path = root.join("locks").join(STORE_LOCK);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .or_else(|e| match e.kind() {
            // A read-only cache (a shared, read-only mount): an flock needs no write
            // access, so hits still hold the store lock against a gc elsewhere.
            io::ErrorKind::ReadOnlyFilesystem | io::ErrorKind::PermissionDenied => {
                File::open(&path).map_err(|_| e)
            }
            _ => Err(e),
        })
        .map_err(|e| io::Error::new(e.kind(), format!("cannot open {}: {e}", path.display())))?;
    Ok((file, path))
}

pub(super) fn lock_error(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("cannot lock {}: {e}", path.display()))
}

/// Held while a stage executes; dropping it releases the lock.
pub struct StageLock {
    _file: File,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::temp_store;
    use std::fs;
    use std::time::Duration;

    #[test]
    fn gc_waits_for_open_stores_and_builds_wait_for_gc() {
        let (dir, store) = temp_store();
        let err = Store::open_exclusive(&dir, Duration::from_millis(50)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert!(
            err.to_string().contains(&dir.display().to_string()),
            "{err}"
        );
        let clone = store.clone();
        drop(store);
        assert!(
            Store::open_exclusive(&dir, Duration::ZERO).is_err(),
            "clones hold it"
        );
        drop(clone);
        let gc = Store::open_exclusive(&dir, Duration::ZERO).unwrap();
        assert!(gc.is_exclusive());
        // A build started during gc proceeds once gc is done.
        let opener = {
            let dir = dir.clone();
            std::thread::spawn(move || Store::open(&dir).map(|s| s.is_exclusive()))
        };
        std::thread::sleep(Duration::from_millis(100));
        assert!(!opener.is_finished(), "a build must wait for gc");
        drop(gc);
        assert!(!opener.join().unwrap().unwrap());
        fs::remove_dir_all(dir).unwrap();
    }
}
