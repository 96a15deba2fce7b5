//! Blobs under `objects/`: written once under their digest, verified whenever read, and
//! the large ones this process wrote lately kept in memory for the next stage. A stage's
//! large outputs may also be held (hashed, not yet written: [`HeldBlob`]) while the next
//! stage runs. Separate from the action records that name them, which have their own life
//! cycle.

use std::collections::VecDeque;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Digest, OutputRef, Store};

/// Large blobs this process stored lately, so that the next stage of the same build takes
/// its input from memory instead of reading it back and hashing it again. They are the very
/// bytes their digest was computed from, so using them needs no verification.
#[derive(Debug, Default)]
pub(super) struct RecentBlobs {
    /// Oldest first.
    entries: VecDeque<(Digest, Arc<Vec<u8>>)>,
    bytes: usize,
    /// Blobs hashed but not yet written ([`Store::hold_blob`]): never evicted, since no
    /// other copy of their bytes exists until [`Store::write_held`] has run.
    held: Vec<(Digest, Arc<Vec<u8>>)>,
}

/// A stage output hashed and held in memory, not yet under `objects/`: through the handle
/// that holds it (and its clones) it reads as stored ([`Store::get_blob`],
/// [`Store::get_blob_shared`], [`Store::has_blob`]) until [`Store::write_held`] writes it.
/// Dropped unwritten (a failed write, a panic), it is let go: only the action record that
/// would name it makes a blob count, and that is written after it.
#[derive(Debug)]
pub struct HeldBlob {
    pub output: OutputRef,
    bytes: Arc<Vec<u8>>,
    store: Store,
}

impl Drop for HeldBlob {
    fn drop(&mut self) {
        if let Ok(mut recent) = self.store.recent.lock() {
            recent.release(&self.output.digest, &self.bytes);
        }
        self.store.released.notify_all();
    }
}

/// Blobs from this size on are hashed while they are written ([`Store::put_large_blob`]).
const OVERLAP_MIN_BYTES: usize = 8 << 20;
/// Blobs smaller than this are cheap to read back and are not kept.
const RECENT_MIN_BYTES: usize = 1 << 20;
/// At most this many bytes of recent blobs are kept (the oldest go first).
const RECENT_MAX_BYTES: usize = 512 << 20;

/// Whether bytes of this size are kept as a recent blob ([`Store::keep_data_bytes`]).
pub(super) fn worth_keeping(size: u64) -> bool {
    (RECENT_MIN_BYTES as u64..=RECENT_MAX_BYTES as u64).contains(&size)
}

impl RecentBlobs {
    fn get(&self, d: &Digest) -> Option<Arc<Vec<u8>>> {
        self.held
            .iter()
            .chain(self.entries.iter().rev())
            .find(|(digest, _)| digest == d)
            .map(|(_, bytes)| bytes.clone())
    }

    fn get_held(&self, d: &Digest) -> Option<Arc<Vec<u8>>> {
        self.held
            .iter()
            .find(|(digest, _)| digest == d)
            .map(|(_, bytes)| bytes.clone())
    }

    /// Drops one hold of `d` (two stages may hold the same bytes).
    fn release(&mut self, d: &Digest, bytes: &Arc<Vec<u8>>) {
        if let Some(i) = self
            .held
            .iter()
            .position(|(digest, b)| digest == d && Arc::ptr_eq(b, bytes))
        {
            self.held.swap_remove(i);
        }
    }

    fn insert(&mut self, d: Digest, bytes: Arc<Vec<u8>>) {
        let len = bytes.len();
        let kept = self.entries.iter().any(|(digest, _)| *digest == d);
        if !worth_keeping(len as u64) || kept {
            return;
        }
        while self.bytes + len > RECENT_MAX_BYTES {
            match self.entries.pop_front() {
                Some((_, old)) => self.bytes -= old.len(),
                None => break,
            }
        }
        self.bytes += len;
        self.entries.push_back((d, bytes));
    }

    /// Takes `d`'s bytes out of the recent blobs.
    fn remove(&mut self, d: &Digest) -> Option<Arc<Vec<u8>>> {
        let i = self.entries.iter().position(|(digest, _)| digest == d)?;
        let (_, old) = self.entries.remove(i)?;
        self.bytes -= old.len();
        Some(old)
    }
}

impl Store {
    /// Deletes the blob of a superseded resumable checkpoint, by the training that wrote it
    /// (which holds its stage key's lock). Only for such blobs: no action record names them,
    /// and their bytes (weights, optimizer state and step of one training) are written by
    /// nothing else. A failure only leaves the blob for `hft gc`.
    pub fn discard_checkpoint_blob(&self, d: &Digest) {
        let _ = std::fs::remove_file(self.blob_path(d));
        if let Ok(mut recent) = self.recent.lock() {
            recent.remove(d);
        }
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        let hex = d.to_hex();
        self.root.join("objects").join(&hex[..2]).join(&hex[2..])
    }

    /// The folders the blobs are sharded into (each [`Store::blob_path`]'s parent), relative
    /// to the store's root, sorted; none before the first blob.
    pub fn blob_folders(&self) -> Vec<PathBuf> {
        let Ok(listing) = std::fs::read_dir(self.root.join("objects")) else {
            return Vec::new();
        };
        let mut folders: Vec<PathBuf> = listing
            .flatten()
            .map(|e| Path::new("objects").join(e.file_name()))
            .collect();
        folders.sort_unstable();
        folders
    }

    /// Writes `bytes` as a blob (no-op when already present and intact).
    pub fn put_blob(&self, bytes: &[u8]) -> io::Result<OutputRef> {
        if bytes.len() >= OVERLAP_MIN_BYTES {
            return self.put_large_blob(bytes);
        }
        let digest = Digest::of(bytes);
        let path = self.blob_path(&digest);
        let present = fs::metadata(&path)
            .map(|m| m.len() == bytes.len() as u64)
            .unwrap_or(false);
        if !present || self.read_verified(&path, &digest).is_none() {
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir).map_err(|e| {
                    io::Error::new(e.kind(), format!("cannot create {}: {e}", dir.display()))
                })?;
            }
            self.write_atomic(&path, bytes, true)?;
        }
        Ok(OutputRef {
            digest,
            size: bytes.len() as u64,
        })
    }

    /// [`Store::put_blob`] of a large blob: the disk writes the temporary file while the
    /// cores hash the bytes for its name, instead of one after the other. A blob found
    /// already present then costs a write it did not need; that is rare (a stage re-run
    /// that gives the same bytes) and the price of not waiting for the hash.
    fn put_large_blob(&self, bytes: &[u8]) -> io::Result<OutputRef> {
        let (digest, tmp) = std::thread::scope(|s| {
            let writer = s.spawn(|| self.write_tmp(bytes, true));
            let digest = Digest::of(bytes);
            let tmp = writer
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the blob writer panicked")));
            (digest, tmp)
        });
        self.publish_blob(bytes, &digest, tmp, |path, d| {
            self.read_verified(path, d).is_some()
        })
    }

    /// Puts the written temporary file `tmp` of `bytes` under `digest` (or removes it when
    /// the blob is already there, as `intact` judges).
    fn publish_blob(
        &self,
        bytes: &[u8],
        digest: &Digest,
        tmp: io::Result<PathBuf>,
        intact: impl Fn(&Path, &Digest) -> bool,
    ) -> io::Result<OutputRef> {
        let path = self.blob_path(digest);
        let cannot = |e: io::Error| {
            io::Error::new(e.kind(), format!("cannot write {}: {e}", path.display()))
        };
        let tmp = tmp.map_err(cannot)?;
        let present = fs::metadata(&path)
            .map(|m| m.len() == bytes.len() as u64)
            .unwrap_or(false);
        if present && intact(&path, digest) {
            let _ = fs::remove_file(&tmp);
        } else {
            if let Some(dir) = path.parent()
                && let Err(e) = fs::create_dir_all(dir)
            {
                let _ = fs::remove_file(&tmp);
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot create {}: {e}", dir.display()),
                ));
            }
            self.publish(&tmp, &path).map_err(cannot)?;
        }
        Ok(OutputRef {
            digest: *digest,
            size: bytes.len() as u64,
        })
    }

    /// Hashes `bytes` (unless `digest` is theirs, taken by the caller) and holds them in
    /// memory as a blob to be written later ([`Store::write_held`]), readable through this
    /// handle meanwhile.
    pub fn hold_blob(&self, bytes: Vec<u8>, digest: Option<Digest>) -> HeldBlob {
        debug_assert!(digest.is_none_or(|d| d == Digest::of(&bytes)));
        let output = OutputRef {
            digest: digest.unwrap_or_else(|| Digest::of(&bytes)),
            size: bytes.len() as u64,
        };
        let bytes = Arc::new(bytes);
        if let Ok(mut recent) = self.recent.lock() {
            recent.held.push((output.digest, bytes.clone()));
        }
        HeldBlob {
            output,
            bytes,
            store: self.clone(),
        }
    }

    /// Writes a held blob under its digest; from then on it is an ordinary recent blob.
    /// Uses no thread pool (it runs beside stages that may be waiting for the caller's
    /// key lock) and hashes nothing but an already present blob, serially.
    pub fn write_held(&self, held: HeldBlob) -> io::Result<OutputRef> {
        let bytes: &[u8] = &held.bytes;
        let tmp = self.write_tmp(bytes, true);
        let stored = self.publish_blob(bytes, &held.output.digest, tmp, |path, d| {
            fs::read(path).is_ok_and(|b| blake3::hash(&b).as_bytes() == &d.0)
        })?;
        if let Ok(mut recent) = self.recent.lock() {
            recent.insert(stored.digest, held.bytes.clone());
        }
        Ok(stored)
    }

    /// Waits until no stage of this process holds blob `r` unwritten ([`Store::hold_blob`]),
    /// then checks that it is stored: a stage that passes an input on as its own output
    /// ([`crate::graph::stages::StageOutput::passed`]) writes its record only then.
    pub fn wait_stored(&self, r: &OutputRef) -> io::Result<()> {
        let mut recent = self
            .recent
            .lock()
            .map_err(|_| io::Error::other("the store's blob table is poisoned"))?;
        while recent.get_held(&r.digest).is_some() {
            recent = self
                .released
                .wait(recent)
                .map_err(|_| io::Error::other("the store's blob table is poisoned"))?;
        }
        drop(recent);
        if self.has_blob(r) {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "blob {} was not stored (the stage that produced it failed to write it)",
                    r.digest.short()
                ),
            ))
        }
    }

    /// Whether blob `d` is held unwritten ([`Store::hold_blob`]).
    pub fn is_held(&self, d: &Digest) -> bool {
        self.recent
            .lock()
            .is_ok_and(|recent| recent.get_held(d).is_some())
    }

    /// [`Store::put_blob`], keeping a large blob in memory for [`Store::get_blob_shared`]
    /// in this process.
    pub fn put_blob_owned(&self, bytes: Vec<u8>) -> io::Result<OutputRef> {
        let stored = self.put_blob(&bytes)?;
        if let Ok(mut recent) = self.recent.lock() {
            recent.insert(stored.digest, Arc::new(bytes));
        }
        Ok(stored)
    }

    /// Keeps a data file's bytes, just read and hashed to `digest` when planning, for the
    /// ingest that parses them ([`Store::take_data_bytes`]). Among the recent blobs: bytes
    /// are named by their digest whatever their origin, and the budget bounds them.
    pub fn keep_data_bytes(&self, digest: Digest, bytes: Vec<u8>) {
        if let Ok(mut recent) = self.recent.lock() {
            recent.insert(digest, Arc::new(bytes));
        }
    }

    /// Bytes with this digest kept in memory, taken out of it (the ingest holds them only
    /// while it parses them); `None`: read the file.
    pub fn take_data_bytes(&self, d: &Digest) -> Option<Arc<Vec<u8>>> {
        self.recent.lock().ok()?.remove(d)
    }

    /// The blob's bytes: from memory if this process stored it lately
    /// ([`Store::put_blob_owned`]), else read and verified as by [`Store::get_blob`].
    pub fn get_blob_shared(&self, d: &Digest) -> Option<Arc<Vec<u8>>> {
        if let Some(bytes) = self.recent.lock().ok().and_then(|r| r.get(d)) {
            return Some(bytes);
        }
        self.get_blob(d).map(Arc::new)
    }

    /// The blob's bytes, verified. A missing or corrupt blob is `None` (and a corrupt one is
    /// removed so that the next write replaces it).
    pub fn get_blob(&self, d: &Digest) -> Option<Vec<u8>> {
        if let Some(held) = self.recent.lock().ok().and_then(|r| r.get_held(d)) {
            return Some(held.as_ref().clone());
        }
        let path = self.blob_path(d);
        let bytes = self.read_verified(&path, d);
        if bytes.is_none() && path.exists() {
            crate::term::warn(&format!(
                "blob {} is corrupt (its bytes no longer hash to its name); discarding it",
                d.short()
            ));
            let _ = fs::remove_file(&path);
        }
        bytes
    }

    fn read_verified(&self, path: &Path, d: &Digest) -> Option<Vec<u8>> {
        let bytes = fs::read(path).ok()?;
        (Digest::of(&bytes) == *d).then_some(bytes)
    }

    /// Cheap presence check used on cache hits: the blob exists with the recorded size.
    /// Content is verified when the bytes are read.
    pub fn has_blob(&self, r: &OutputRef) -> bool {
        let held = self.recent.lock().ok().and_then(|h| h.get_held(&r.digest));
        if let Some(bytes) = held {
            return bytes.len() as u64 == r.size;
        }
        fs::metadata(self.blob_path(&r.digest))
            .map(|m| m.len() == r.size)
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::temp_store;

    /// No temporary file of a blob write is left behind.
    fn assert_no_tmp_files(store: &Store) {
        let left: Vec<_> = fs::read_dir(store.root().join("tmp"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn blobs_round_trip_and_corruption_is_a_miss() {
        let (dir, store) = temp_store();
        let r = store.put_blob(b"hello").unwrap();
        assert_eq!(store.get_blob(&r.digest).unwrap(), b"hello");
        let path = store.blob_path(&r.digest);
        let mut perms = fs::metadata(&path).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        fs::set_permissions(&path, perms).unwrap();
        fs::write(&path, b"hellp").unwrap();
        assert!(store.get_blob(&r.digest).is_none());
        assert!(!path.exists(), "corrupt blob removed");
        store.put_blob(b"hello").unwrap();
        assert_eq!(store.get_blob(&r.digest).unwrap(), b"hello");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn blobs_hashed_while_written_are_stored_once_under_their_digest() {
        let (dir, store) = temp_store();
        let big: Vec<u8> = (0..OVERLAP_MIN_BYTES + 4097)
            .map(|i| (i % 253) as u8)
            .collect();
        let r = store.put_blob(&big).unwrap();
        assert_eq!(r.digest, Digest::of(&big));
        let path = store.blob_path(&r.digest);
        assert!(fs::read(&path).unwrap() == big);
        assert!(fs::metadata(&path).unwrap().permissions().readonly());
        // Stored again: found present, and no temporary file is left behind.
        assert_eq!(store.put_blob(&big).unwrap(), r);
        assert_no_tmp_files(&store);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn large_blobs_stored_by_this_process_are_read_from_memory() {
        let (dir, store) = temp_store();
        let big = vec![7u8; RECENT_MIN_BYTES];
        let r = store.put_blob_owned(big.clone()).unwrap();
        assert_eq!(
            fs::read(store.blob_path(&r.digest)).unwrap(),
            big,
            "stored on disk"
        );
        let first = store.get_blob_shared(&r.digest).unwrap();
        // Another handle on the same store in this process shares the memory.
        let again = store.clone().get_blob_shared(&r.digest).unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(*first, big);
        // Small blobs are read back from disk (and verified) as before.
        let small = store.put_blob_owned(b"small".to_vec()).unwrap();
        assert_eq!(*store.get_blob_shared(&small.digest).unwrap(), b"small");
        assert!(store.recent.lock().unwrap().get(&small.digest).is_none());
        // The oldest go first once the budget is full.
        let mut recent = RecentBlobs::default();
        let blob = |b: u8| {
            (
                Digest::of(&[b]),
                Arc::new(vec![b; RECENT_MAX_BYTES / 3 + 1]),
            )
        };
        let (a, b, c) = (blob(1), blob(2), blob(3));
        for (d, bytes) in [&a, &b, &c] {
            recent.insert(*d, bytes.clone());
        }
        assert!(recent.get(&a.0).is_none() && recent.get(&b.0).is_some());
        assert!(recent.get(&c.0).is_some() && recent.bytes <= RECENT_MAX_BYTES);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn waiting_for_a_held_blob_ends_when_it_is_written_or_let_go() {
        let (_dir, store) = temp_store();
        // Written while another thread waits: stored.
        let held = store.hold_blob(vec![7u8; 4096], None);
        let r = held.output.clone();
        assert!(store.is_held(&r.digest));
        std::thread::scope(|scope| {
            let waiter = scope.spawn(|| store.wait_stored(&r));
            std::thread::sleep(std::time::Duration::from_millis(20));
            store.write_held(held).unwrap();
            waiter.join().unwrap().unwrap();
        });
        assert!(!store.is_held(&r.digest));
        // Let go unwritten (a failed write): the waiter hears it was not stored.
        let lost = store.hold_blob(vec![9u8; 4096], None);
        let l = lost.output.clone();
        std::thread::scope(|scope| {
            let waiter = scope.spawn(|| store.wait_stored(&l));
            std::thread::sleep(std::time::Duration::from_millis(20));
            drop(lost);
            let e = waiter.join().unwrap().unwrap_err();
            assert!(e.to_string().contains("was not stored"), "{e}");
        });
        // Neither held nor stored: no wait, an error.
        assert!(store.wait_stored(&l).is_err());
        assert!(store.wait_stored(&r).is_ok());
    }

    #[test]
    fn held_blobs_read_as_stored_until_written_and_vanish_when_dropped_unwritten() {
        let (dir, store) = temp_store();
        let bytes = vec![3u8; 2 * RECENT_MIN_BYTES];
        let held = store.hold_blob(bytes.clone(), None);
        let r = held.output.clone();
        assert_eq!(r.digest, Digest::of(&bytes));
        assert!(!store.blob_path(&r.digest).exists(), "not written yet");
        // Readable through this handle and its clones as if it were stored.
        let other = store.clone();
        assert!(other.has_blob(&r));
        assert!(!other.has_blob(&OutputRef {
            size: 1,
            ..r.clone()
        }));
        assert_eq!(other.get_blob(&r.digest).unwrap(), bytes);
        assert_eq!(*other.get_blob_shared(&r.digest).unwrap(), bytes);

        // Written: on disk, read-only, and still served from memory.
        assert_eq!(store.write_held(held).unwrap(), r);
        let path = store.blob_path(&r.digest);
        assert_eq!(fs::read(&path).unwrap(), bytes);
        assert!(fs::metadata(&path).unwrap().permissions().readonly());
        assert!(store.recent.lock().unwrap().held.is_empty());
        assert_eq!(*store.get_blob_shared(&r.digest).unwrap(), bytes);
        // Held and written again (a stage re-run with the same bytes): found present.
        assert_eq!(
            store
                .write_held(store.hold_blob(bytes.clone(), None))
                .unwrap(),
            r
        );

        // Dropped unwritten (a failed stage): gone from memory, never on disk.
        let lost = vec![4u8; 16];
        let held = store.hold_blob(lost.clone(), None);
        let d = held.output.digest;
        drop(held);
        assert!(store.get_blob(&d).is_none());
        assert!(!store.has_blob(&OutputRef {
            digest: d,
            size: 16
        }));
        assert!(!store.blob_path(&d).exists());
        assert_no_tmp_files(&store);
        fs::remove_dir_all(dir).unwrap();
    }
}
