//! Atomic writes: every file appears under its final name only once complete and fsynced
//! (temporary file under `tmp/` + fsync + rename). Temporary files carry their writer's
//! token, whose owner record stays flock'ed while the writer lives, so opening a store
//! clears exactly the partial writes of dead processes.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use super::{Digest, Store};

pub(super) static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Store {
    /// Writes `bytes` to `path` atomically: tmp file, fsync, rename, fsync the directory.
    pub fn write_atomic(&self, path: &Path, bytes: &[u8], read_only: bool) -> io::Result<()> {
        let result = self
            .write_tmp(bytes, read_only)
            .and_then(|tmp| self.publish(&tmp, path));
        result.map_err(|e: io::Error| {
            io::Error::new(e.kind(), format!("cannot write {}: {e}", path.display()))
        })
    }

    /// Writes a file that only saves work (a memo, an index shard, a lock's map) the way
    /// [`Store::write_atomic`] does, through a temporary file renamed over `path` (readers
    /// see the old file or the new one), but buffered and not fsynced.
    ///
    /// Why: such a file is read back by the next run, which now finds it in the page cache;
    /// written around the cache and synced, the 17 MB memo of a 10,000-experiment project
    /// cost a tenth of a build after an edit, and as much again to read back. A crash may
    /// leave it missing or torn: every reader parses it as JSON (a torn file does not
    /// parse), checks its version and what it vouches for, and otherwise recomputes.
    pub fn write_disposable(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let token = self.writer_token()?;
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = self.root.join("tmp").join(format!("{token}-{n}.tmp"));
        let written = fs::write(&tmp, bytes).and_then(|()| fs::rename(&tmp, path));
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written
            .map_err(|e| io::Error::new(e.kind(), format!("cannot write {}: {e}", path.display())))
    }

    /// The first half of [`Store::write_atomic`]: `bytes` in a new temporary file of this
    /// writer, fsynced (and read-only if asked), ready for [`Store::publish`].
    pub(super) fn write_tmp(&self, bytes: &[u8], read_only: bool) -> io::Result<PathBuf> {
        let token = self.writer_token()?;
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = self.root.join("tmp").join(format!("{token}-{n}.tmp"));
        let written = (|| {
            // Large files around the page cache (`store::direct`).
            let f = super::direct::write_new_file(&tmp, bytes)?;
            f.sync_all()?;
            if read_only {
                let mut perms = f.metadata()?.permissions();
                perms.set_readonly(true);
                fs::set_permissions(&tmp, perms)?;
            }
            Ok(())
        })();
        match written {
            Ok(()) => Ok(tmp),
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// The second half of [`Store::write_atomic`]: the temporary file renamed to `path`,
    /// and the directory fsynced.
    pub(super) fn publish(&self, tmp: &Path, path: &Path) -> io::Result<()> {
        let published = fs::rename(tmp, path).and_then(|()| match path.parent() {
            Some(dir) => File::open(dir)?.sync_all(),
            None => Ok(()),
        });
        if published.is_err() {
            let _ = fs::remove_file(tmp);
        }
        published
    }

    /// This process's writer token. Temporary files are named after it, and
    /// `tmp/<token>.owner` stays flock'ed for the life of the process: the kernel drops the
    /// lock when the process dies, however it dies, and unlike a pid this works across PID
    /// namespaces (containers sharing one cache).
    fn writer_token(&self) -> io::Result<String> {
        static OWNERS: Mutex<BTreeMap<PathBuf, (String, File)>> = Mutex::new(BTreeMap::new());
        let mut owners = OWNERS
            .lock()
            .map_err(|_| io::Error::other("owner table poisoned"))?;
        if let Some((token, _)) = owners.get(&self.root) {
            return Ok(token.clone());
        }
        for attempt in 0..8 {
            let seed = format!(
                "{}-{:?}-{}-{attempt}",
                std::process::id(),
                SystemTime::now(),
                self.root.display()
            );
            let token = Digest::of(seed.as_bytes()).short();
            let path = self.root.join("tmp").join(format!("{token}.owner"));
            let file = File::create(&path)?;
            file.lock()?;
            // Between creating the record and locking it, another process opening the
            // store may have taken it for a dead writer's and removed it; writing under a
            // token without a record would let the next open delete our temporary files.
            if is_same_file(&file, &path) {
                owners.insert(self.root.clone(), (token.clone(), file));
                return Ok(token);
            }
        }
        Err(io::Error::other(format!(
            "cannot register as a writer in {}: its owner record keeps disappearing",
            self.root.join("tmp").display()
        )))
    }

    /// Deletes temporary files whose writer is gone (its owner lock can be taken).
    pub(super) fn clean_stale_tmp(&self) {
        let dir = self.root.join("tmp");
        let Ok(entries) = fs::read_dir(&dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let Some(token) = name.strip_suffix(".owner") else {
                if !name.ends_with(".tmp") || !dir.join(owner_of(&name)).exists() {
                    // A temporary file without a live owner record: an older layout or
                    // a crash between creating the file and the owner record.
                    let _ = fs::remove_file(entry.path());
                }
                continue;
            };
            let Ok(owner) = OpenOptions::new().write(true).open(entry.path()) else {
                continue;
            };
            if owner.try_lock().is_ok() {
                // Its process is gone: remove its partial writes, then the record.
                if let Ok(all) = fs::read_dir(&dir) {
                    for f in all.flatten() {
                        let n = f.file_name();
                        if n.to_string_lossy().starts_with(&format!("{token}-")) {
                            let _ = fs::remove_file(f.path());
                        }
                    }
                }
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// Whether `path` still names the file open as `file`.
fn is_same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// `tok-3.tmp` -> `tok.owner`.
fn owner_of(tmp_name: &str) -> String {
    let token = tmp_name.split('-').next().unwrap_or(tmp_name);
    format!("{token}.owner")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::temp_store;

    #[test]
    fn stale_tmp_files_are_removed_on_open() {
        let (dir, store) = temp_store();
        // A dead writer: its owner record exists but nobody holds the lock.
        let owner = store.root().join("tmp").join("deadbeef.owner");
        let junk = store.root().join("tmp").join("deadbeef-0.tmp");
        fs::write(&owner, b"").unwrap();
        fs::write(&junk, b"partial").unwrap();
        // A live writer: this process, which holds its owner lock.
        store.put_blob(b"x").unwrap();
        let live = store
            .root()
            .join("tmp")
            .join(format!("{}-999.tmp", store.writer_token().unwrap()));
        fs::write(&live, b"in progress").unwrap();
        Store::open(&dir).unwrap();
        assert!(!junk.exists() && !owner.exists());
        assert!(live.exists(), "a live writer's file is kept");
        fs::remove_dir_all(dir).unwrap();
    }
}
