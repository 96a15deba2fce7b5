//! The content-addressed store under `cache/`.
//!
//! ```text
//! cache/
//!   objects/ab/cdef...   blobs, named by the blake3 digest of their bytes, read-only
//!   actions/k1-....json  stage key -> ActionRecord (output digests + metadata)
//!   builds/<id>.json     per experiment file: what its last build saw (for `status`)
//!   locks/k1-....lock    one per stage key, flock'ed while that stage executes
//!   locks/store.lock     flock'ed shared by every open Store, exclusive by `hft gc`
//!   tmp/                 partial writes; renamed into place only when complete
//!   statcache.json       data file path -> (size, mtime, inode) -> digest
//! ```
//!
//! Invariants: every file appears under its final name only once complete and fsynced
//! (temporary file + fsync + rename), so a killed build leaves at most garbage in `tmp/`.
//! An action record is written after all its blobs. A blob is verified against its digest
//! whenever its bytes are read; a mismatch is a miss (with a warning), never used.

pub mod housekeeping;
pub mod remote;

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Version of the key scheme; every key starts with it, so a future change of what goes
/// into a key can never be confused with entries made under this one.
pub const KEY_SCHEME: &str = "k1";

/// The environment variable that overrides the cache location.
pub const CACHE_DIR_ENV: &str = "HFT_CACHE_DIR";

/// A blake3 digest of some bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(pub [u8; 32]);

/// Below this, splitting the hash over threads costs more than it saves.
const PARALLEL_HASH_BYTES: usize = 4 << 20;

impl Digest {
    pub fn of(bytes: &[u8]) -> Digest {
        // Large outputs (multi-GB datasets) hash on every core; the digest is the same.
        if bytes.len() >= PARALLEL_HASH_BYTES {
            let mut h = blake3::Hasher::new();
            h.update_rayon(bytes);
            return Digest(*h.finalize().as_bytes());
        }
        Digest(*blake3::hash(bytes).as_bytes())
    }

    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }

    pub fn from_hex(s: &str) -> Option<Digest> {
        blake3::Hash::from_hex(s)
            .ok()
            .map(|h| Digest(*h.as_bytes()))
    }

    /// First 12 hex digits, for humans.
    pub fn short(&self) -> String {
        self.to_hex()[..12].to_string()
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.short())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::from_hex(&s).ok_or_else(|| serde::de::Error::custom("not a blake3 hex digest"))
    }
}

/// A stage key: `k1-<blake3 hex>`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct StageKey(pub String);

impl StageKey {
    /// Hashes the parts that define what a stage computes. Parts are length-prefixed so
    /// that no two different part lists can produce the same byte stream.
    pub fn compute(parts: &[&[u8]]) -> StageKey {
        let mut h = blake3::Hasher::new();
        h.update(KEY_SCHEME.as_bytes());
        for p in parts {
            h.update(&(p.len() as u64).to_le_bytes());
            h.update(p);
        }
        StageKey(format!("{KEY_SCHEME}-{}", h.finalize().to_hex()))
    }

    pub fn short(&self) -> &str {
        let end = (KEY_SCHEME.len() + 13).min(self.0.len());
        &self.0[..end]
    }
}

impl fmt::Display for StageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One output blob of an executed stage, with the stat fingerprint it had when written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutputRef {
    pub digest: Digest,
    pub size: u64,
}

/// What `actions/<key>.json` holds: the result of executing one stage key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActionRecord {
    pub key: StageKey,
    pub stage: String,
    pub outputs: BTreeMap<String, OutputRef>,
    /// Small facts about the outputs that downstream keys or reports need (shapes, counts).
    pub summary: serde_json::Value,
    pub hft_version: String,
    pub wall_ms: u64,
    /// Seconds since the Unix epoch when the record was written.
    pub created: u64,
}

/// A handle on one cache directory.
///
/// Every handle holds `locks/store.lock` for its whole life: shared for builds and every
/// other reader or writer, exclusive for `hft gc`, so that gc never deletes a blob that a
/// running build has written but not yet named in an action record. The lock is an flock
/// on the handle's own open file, so it is released when the last clone is dropped, or by
/// the kernel when the process dies.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
    _lock: Arc<File>,
    exclusive: bool,
    recent: Arc<Mutex<RecentBlobs>>,
}

/// Large blobs this process stored lately, so that the next stage of the same build takes
/// its input from memory instead of reading it back and hashing it again. They are the very
/// bytes their digest was computed from, so using them needs no verification.
#[derive(Debug, Default)]
struct RecentBlobs {
    /// Oldest first.
    entries: VecDeque<(Digest, Arc<Vec<u8>>)>,
    bytes: usize,
}

/// Blobs smaller than this are cheap to read back and are not kept.
const RECENT_MIN_BYTES: usize = 1 << 20;
/// At most this many bytes of recent blobs are kept (the oldest go first).
const RECENT_MAX_BYTES: usize = 512 << 20;

impl RecentBlobs {
    fn get(&self, d: &Digest) -> Option<Arc<Vec<u8>>> {
        self.entries
            .iter()
            .rev()
            .find(|(digest, _)| digest == d)
            .map(|(_, bytes)| bytes.clone())
    }

    fn insert(&mut self, d: Digest, bytes: Arc<Vec<u8>>) {
        let len = bytes.len();
        if !(RECENT_MIN_BYTES..=RECENT_MAX_BYTES).contains(&len) || self.get(&d).is_some() {
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
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The file every open store holds an flock on.
const STORE_LOCK: &str = "store.lock";

impl Store {
    /// Opens (creating if needed) the store at `root` and clears partial writes left by
    /// processes that no longer run. Waits while `hft gc` holds the store.
    pub fn open(root: &Path) -> io::Result<Store> {
        create_layout(root)?;
        let (lock, path) = open_store_lock(root)?;
        match lock.try_lock_shared() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                crate::term::warn(&format!(
                    "the cache at {} is being garbage-collected; waiting for `hft gc` to finish",
                    root.display()
                ));
                lock.lock_shared().map_err(|e| lock_error(&path, e))?;
            }
            Err(fs::TryLockError::Error(e)) => return Err(lock_error(&path, e)),
        }
        let store = Store {
            root: root.to_path_buf(),
            _lock: Arc::new(lock),
            exclusive: false,
            recent: Arc::default(),
        };
        store.clean_stale_tmp();
        Ok(store)
    }

    /// Opens the store for `hft gc`: alone, with no build, status or audit using it. Waits
    /// up to `wait` for the others to finish (saying so once), then fails with an error of
    /// kind `WouldBlock`. A process must not hold a [`Store::open`] handle on the same
    /// root while calling this: its own shared lock would block it.
    pub fn open_exclusive(root: &Path, wait: Duration) -> io::Result<Store> {
        create_layout(root)?;
        let (lock, path) = open_store_lock(root)?;
        let deadline = Instant::now().checked_add(wait);
        let mut told = false;
        loop {
            match lock.try_lock() {
                Ok(()) => break,
                Err(fs::TryLockError::WouldBlock) => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Err(io::Error::new(
                            io::ErrorKind::WouldBlock,
                            format!(
                                "the cache at {} is in use by another hft process (build, \
                                 status or audit) and gc needs it to itself; try again when \
                                 that process has finished",
                                root.display()
                            ),
                        ));
                    }
                    if !told {
                        crate::term::warn(&format!(
                            "the cache at {} is in use by another hft process; waiting for it \
                             to finish",
                            root.display()
                        ));
                        told = true;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(fs::TryLockError::Error(e)) => return Err(lock_error(&path, e)),
            }
        }
        let store = Store {
            root: root.to_path_buf(),
            _lock: Arc::new(lock),
            exclusive: true,
            recent: Arc::default(),
        };
        store.clean_stale_tmp();
        Ok(store)
    }

    /// Whether this handle was opened by [`Store::open_exclusive`].
    pub fn is_exclusive(&self) -> bool {
        self.exclusive
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        let hex = d.to_hex();
        self.root.join("objects").join(&hex[..2]).join(&hex[2..])
    }

    fn action_path(&self, key: &StageKey) -> PathBuf {
        self.root.join("actions").join(format!("{}.json", key.0))
    }

    /// Writes `bytes` as a blob (no-op when already present and intact).
    pub fn put_blob(&self, bytes: &[u8]) -> io::Result<OutputRef> {
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

    /// [`Store::put_blob`], keeping a large blob in memory for [`Store::get_blob_shared`]
    /// in this process.
    pub fn put_blob_owned(&self, bytes: Vec<u8>) -> io::Result<OutputRef> {
        let stored = self.put_blob(&bytes)?;
        if let Ok(mut recent) = self.recent.lock() {
            recent.insert(stored.digest, Arc::new(bytes));
        }
        Ok(stored)
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
        fs::metadata(self.blob_path(&r.digest))
            .map(|m| m.len() == r.size)
            .unwrap_or(false)
    }

    /// The action record for `key`, if present, parseable and all its blobs present.
    pub fn get_action(&self, key: &StageKey) -> Option<ActionRecord> {
        let bytes = fs::read(self.action_path(key)).ok()?;
        let record: ActionRecord = match serde_json::from_slice(&bytes) {
            Ok(r) => r,
            Err(_) => {
                crate::term::warn(&format!(
                    "action record {} is unreadable; treating as a miss",
                    key.short()
                ));
                return None;
            }
        };
        if record.key != *key {
            return None;
        }
        for (name, out) in &record.outputs {
            if !self.has_blob(out) {
                crate::term::warn(&format!(
                    "output `{name}` of {} ({}) is missing from the store; rebuilding",
                    record.stage,
                    key.short()
                ));
                return None;
            }
        }
        self.touch_action(key);
        Some(record)
    }

    /// Marks an action record as just used: its mtime is what `gc --max-size` evicts by.
    /// One open and one utimes, no fsync; a failure (a read-only shared cache) only makes
    /// the entry look older.
    pub fn touch_action(&self, key: &StageKey) {
        let _ = OpenOptions::new()
            .write(true)
            .open(self.action_path(key))
            .and_then(|f| f.set_modified(SystemTime::now()));
    }

    pub fn put_action(&self, record: &ActionRecord) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(record).map_err(io::Error::other)?;
        self.write_atomic(&self.action_path(&record.key), &bytes, false)
    }

    /// Removes an action record (used when one of its blobs turned out to be corrupt).
    pub fn forget_action(&self, key: &StageKey) {
        let _ = fs::remove_file(self.action_path(key));
    }

    /// Reads a small JSON document stored by name under `builds/`.
    pub fn get_build_record<T: serde::de::DeserializeOwned>(&self, id: &str) -> Option<T> {
        let bytes = fs::read(self.root.join("builds").join(format!("{id}.json"))).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Removes a build record; a missing one is not an error.
    pub fn remove_build_record(&self, id: &str) {
        let _ = fs::remove_file(self.root.join("builds").join(format!("{id}.json")));
    }

    pub fn put_build_record<T: Serialize>(&self, id: &str, value: &T) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
        let path = self.root.join("builds").join(format!("{id}.json"));
        self.write_atomic(&path, &bytes, false)
    }

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

    /// Writes `bytes` to `path` atomically: tmp file, fsync, rename, fsync the directory.
    pub fn write_atomic(&self, path: &Path, bytes: &[u8], read_only: bool) -> io::Result<()> {
        let result = (|| {
            let token = self.writer_token()?;
            let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
            let tmp = self.root.join("tmp").join(format!("{token}-{n}.tmp"));
            let written = (|| {
                let mut f = File::create(&tmp)?;
                f.write_all(bytes)?;
                f.sync_all()?;
                if read_only {
                    let mut perms = f.metadata()?.permissions();
                    perms.set_readonly(true);
                    fs::set_permissions(&tmp, perms)?;
                }
                drop(f);
                fs::rename(&tmp, path)?;
                if let Some(dir) = path.parent() {
                    File::open(dir)?.sync_all()?;
                }
                Ok(())
            })();
            if written.is_err() {
                let _ = fs::remove_file(&tmp);
            }
            written
        })();
        result.map_err(|e: io::Error| {
            io::Error::new(e.kind(), format!("cannot write {}: {e}", path.display()))
        })
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
    fn clean_stale_tmp(&self) {
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

/// Creates the store's folders. A file where a folder belongs (`--cache-dir` naming a
/// regular file, or a `cache/objects` file) is the user's input, not the environment, so
/// it is an `InvalidInput` error that says what to point at instead.
fn create_layout(root: &Path) -> io::Result<()> {
    let not_a_folder = |path: &Path, what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is a file, not a folder; {what}", path.display()),
        )
    };
    if root.exists() && !root.is_dir() {
        return Err(not_a_folder(
            root,
            "the cache must be a folder (it is created when missing): point --cache-dir or \
             HFT_CACHE_DIR at one",
        ));
    }
    for sub in ["objects", "actions", "builds", "locks", "tmp"] {
        let path = root.join(sub);
        if path.exists() && !path.is_dir() {
            return Err(not_a_folder(
                &path,
                "this is not an hft cache; point --cache-dir or HFT_CACHE_DIR at another folder",
            ));
        }
        fs::create_dir_all(&path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot create {}: {e}", root.join(sub).display()),
            )
        })?;
    }
    Ok(())
}

fn open_store_lock(root: &Path) -> io::Result<(File, PathBuf)> {
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

fn lock_error(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("cannot lock {}: {e}", path.display()))
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

/// Held while a stage executes; dropping it releases the lock.
pub struct StageLock {
    _file: File,
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

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
        }
    }

    /// The digest of the file at `path`, from the cache when its fingerprint is unchanged.
    pub fn digest(&mut self, path: &Path) -> io::Result<(Digest, Fingerprint)> {
        let canonical = fs::canonicalize(path)?;
        let key = canonical.to_string_lossy().into_owned();
        let fp = Fingerprint::of(&fs::metadata(&canonical)?);
        if let Some((cached_fp, digest)) = self.file.entries.get(&key)
            && *cached_fp == fp
        {
            return Ok((*digest, fp));
        }
        let digest = hash_file(&canonical)?;
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

    fn temp_store() -> (PathBuf, Store) {
        let dir = std::env::temp_dir().join(format!(
            "hft-store-test-{}-{}",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        let store = Store::open(&dir).unwrap();
        (dir, store)
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
    fn keys_are_versioned_and_unambiguous() {
        let a = StageKey::compute(&[b"ab", b"c"]);
        let b = StageKey::compute(&[b"a", b"bc"]);
        assert_ne!(a, b);
        assert!(a.0.starts_with("k1-"));
    }

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

    #[test]
    fn a_cache_hit_marks_the_action_record_used() {
        let (dir, store) = temp_store();
        let out = store.put_blob(b"out").unwrap();
        let key = StageKey::compute(&[b"touch"]);
        store
            .put_action(&ActionRecord {
                key: key.clone(),
                stage: "features".to_string(),
                outputs: BTreeMap::from([("bars".to_string(), out)]),
                summary: serde_json::Value::Null,
                hft_version: "test".to_string(),
                wall_ms: 0,
                created: 0,
            })
            .unwrap();
        let path = store.action_path(&key);
        let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert!(store.get_action(&key).is_some());
        let used = fs::metadata(&path).unwrap().modified().unwrap();
        assert!(used > old + Duration::from_secs(3600), "{used:?}");
        fs::remove_dir_all(dir).unwrap();
    }
}
