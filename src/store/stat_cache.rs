//! The stat cache (`statcache.json`) and file hashing: data files are hashed once and
//! then recognised by their stat fingerprint, so an unchanged large file is never re-read.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Digest, Store};

/// The stat fingerprint of a data file: unchanged fingerprint means unchanged bytes is the
/// usual build-tool bet (make, cargo, git, DVC); ctime catches edits that restore mtime. Touching a file changes mtime, which forces a
/// re-hash, but the digest, and therefore every key, stays the same.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub size: u64,
    pub mtime_ns: i128,
    /// Changes on any write or metadata change, even when a tool restores the mtime.
    pub ctime_ns: i128,
    pub inode: u64,
}

impl Fingerprint {
    pub fn of(meta: &fs::Metadata) -> Fingerprint {
        use std::os::unix::fs::MetadataExt;
        Fingerprint {
            size: meta.len(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
            ctime_ns: meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128,
            inode: meta.ino(),
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct StatCacheFile {
    entries: BTreeMap<String, (Fingerprint, Digest)>,
}

/// Persisted map from data file to (fingerprint, digest), so that an unchanged large file
/// is never re-hashed.
#[derive(Debug, Default)]
pub struct StatCache {
    path: Option<PathBuf>,
    file: StatCacheFile,
    dirty: bool,
    /// Large files hashed through this cache are read into memory and handed to this store
    /// for the ingest ([`StatCache::keeping_bytes`]).
    keep: Option<Store>,
}

impl StatCache {
    pub fn load(store: &Store) -> StatCache {
        let path = store.root().join("statcache.json");
        let file = fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        StatCache {
            path: Some(path),
            file,
            dirty: false,
            keep: None,
        }
    }

    /// From now on, a file this cache must hash (new, or changed since) is read into
    /// memory, hashed, and its bytes left with `store` for this process's ingest
    /// ([`Store::take_data_bytes`]): a build then reads each new data file once instead of
    /// once to hash it and again to parse it. Files over the store's budget for recent
    /// blobs are hashed in place as before.
    pub fn keeping_bytes(mut self, store: &Store) -> StatCache {
        self.keep = Some(store.clone());
        self
    }

    /// The digest of the file at `path`, from the cache when its fingerprint is unchanged.
    pub fn digest(&mut self, path: &Path) -> io::Result<(Digest, Fingerprint)> {
        let canonical = fs::canonicalize(path)?;
        let key = canonical.to_string_lossy().into_owned();
        let meta = fs::metadata(&canonical)?;
        check_data_file(&canonical, &meta)?;
        let fp = Fingerprint::of(&meta);
        if let Some((cached_fp, digest)) = self.file.entries.get(&key)
            && *cached_fp == fp
        {
            return Ok((*digest, fp));
        }
        let digest = match &self.keep {
            Some(store) if super::blobs::worth_keeping(fp.size) => {
                let bytes = read_file(&canonical)?;
                let digest = Digest::of(&bytes);
                store.keep_data_bytes(digest, bytes);
                digest
            }
            _ => hash_file(&canonical)?,
        };
        self.file.entries.insert(key, (fp.clone(), digest));
        self.dirty = true;
        Ok((digest, fp))
    }

    /// Writes the cache back if anything changed. Losing a race with another process only
    /// costs a re-hash later: entries are validated by fingerprint on every use.
    pub fn save(&mut self, store: &Store) -> io::Result<()> {
        if let (true, Some(path)) = (self.dirty, &self.path) {
            let bytes = serde_json::to_vec(&self.file).map_err(io::Error::other)?;
            store.write_atomic(path, &bytes, false)?;
            self.dirty = false;
        }
        Ok(())
    }
}

/// The largest data file hft reads: far above any OHLCV file (a year of one-second bars of
/// one symbol is about 2 GB as CSV), and a bound on what a mistaken path can make it read.
pub const MAX_DATA_FILE_BYTES: u64 = 64 << 30;

/// Data files are regular files (a link to `/dev/zero` or a FIFO would be read forever)
/// of at most [`MAX_DATA_FILE_BYTES`].
pub fn check_data_file(path: &Path, meta: &fs::Metadata) -> io::Result<()> {
    let invalid = |m: String| io::Error::new(io::ErrorKind::InvalidInput, m);
    if meta.is_dir() {
        return Err(invalid(format!(
            "{} is a folder, not a data file",
            path.display()
        )));
    }
    if !meta.is_file() {
        return Err(invalid(format!(
            "{} is not a regular file (a device, a pipe or a socket); data files must be \
             regular files",
            path.display()
        )));
    }
    if meta.len() > MAX_DATA_FILE_BYTES {
        return Err(invalid(format!(
            "{} is {} bytes, over hft's limit of {MAX_DATA_FILE_BYTES} bytes (64 GiB) for one \
             data file; split it by symbol or period",
            path.display(),
            meta.len()
        )));
    }
    Ok(())
}

/// A data file's bytes, as `std::fs::read` gives them. Large files are read in stretches
/// by several threads (the copy out of the page cache is most of the cost); a file whose
/// length changed under the read is read again the ordinary way (a digest of the bytes decides what
/// they are).
pub fn read_file(path: &Path) -> io::Result<Vec<u8>> {
    use rayon::prelude::*;
    use std::os::unix::fs::FileExt;
    const STRETCH: usize = 8 << 20;
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    if len < 2 * STRETCH as u64 {
        drop(file);
        return std::fs::read(path);
    }
    let Ok(len) = usize::try_from(len) else {
        return std::fs::read(path);
    };
    // Zeroed memory comes from the allocator untouched: each stretch's pages are first
    // written by the thread that reads it.
    let mut bytes = vec![0u8; len];
    let read = bytes
        .par_chunks_mut(STRETCH)
        .enumerate()
        .try_for_each(|(i, out)| file.read_exact_at(out, (i * STRETCH) as u64));
    let mut past_end = [0u8; 1];
    match (read, file.read_at(&mut past_end, len as u64)) {
        (Ok(()), Ok(0)) => Ok(bytes),
        _ => {
            drop(bytes);
            std::fs::read(path)
        }
    }
}

/// blake3 of a file, memory-mapped and multi-threaded for large files.
///
/// The digest is the plain blake3 of the bytes whatever the strategy (blake3's tree makes a
/// parallel hash equal to a sequential one). Below `PARALLEL_HASH_BYTES` a single-threaded
/// read is cheaper than mapping the file and spreading it over threads; files that cannot be
/// mapped (pipes, some special files) are read the ordinary way by blake3 itself.
pub fn hash_file(path: &Path) -> io::Result<Digest> {
    /// Below this size threads cost more than they save.
    const PARALLEL_HASH_BYTES: u64 = 4 << 20;
    let mut h = blake3::Hasher::new();
    let file = File::open(path)?;
    if file.metadata()?.len() >= PARALLEL_HASH_BYTES {
        drop(file);
        h.update_mmap_rayon(path)?;
    } else {
        h.update_reader(file)?;
    }
    Ok(Digest(*h.finalize().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::temp_store;

    #[test]
    fn a_build_reads_a_new_large_file_once_and_leaves_its_bytes_for_the_ingest() {
        let (dir, store) = temp_store();
        let large = dir.join("large.csv");
        let bytes: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 251) as u8).collect();
        fs::write(&large, &bytes).unwrap();
        let small = dir.join("small.csv");
        fs::write(&small, b"date,close\n2024-01-02,1\n").unwrap();

        // Status and other readers hash in place and keep nothing.
        let (digest, _) = StatCache::load(&store).digest(&large).unwrap();
        assert_eq!(digest, Digest::of(&bytes));
        assert!(store.take_data_bytes(&digest).is_none());

        // A build's stat cache keeps a file it had to hash, with the same digest.
        let mut cache = StatCache::load(&store).keeping_bytes(&store);
        assert_eq!(cache.digest(&large).unwrap().0, digest);
        let kept = store.take_data_bytes(&digest).expect("kept for the ingest");
        assert_eq!(*kept, bytes);
        assert!(store.take_data_bytes(&digest).is_none(), "taken once");
        // Small files are cheap to read again.
        let (small_digest, _) = cache.digest(&small).unwrap();
        assert!(store.take_data_bytes(&small_digest).is_none());
        // Known to the cache (same fingerprint): not read at all.
        assert_eq!(cache.digest(&large).unwrap().0, digest);
        assert!(store.take_data_bytes(&digest).is_none());
        fs::remove_dir_all(dir).unwrap();
    }
}
