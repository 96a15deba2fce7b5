//! The content-addressed store under `cache/`.
//!
//! ```text
//! cache/
//!   objects/ab/cdef...   blobs, named by the blake3 digest of their bytes, read-only
//!   actions/k1-....json  stage key -> ActionRecord (output digests + metadata)
//!   builds/<id>.json     small named records: an experiment's last build (for `status`),
//!                        checkpoints, snapshots and audits that pin blobs (records.rs)
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
//!
//! The store knows nothing of stages, plans or the catalog: blobs.rs, actions.rs and
//! records.rs read and write its three kinds of file, atomic.rs and locks.rs keep them
//! consistent across processes, scan.rs and verify.rs look at the whole store, and what
//! gc keeps is decided above it, by the gc module.

mod actions;
pub use actions::TOUCH_EVERY;
mod atomic;
mod blobs;
pub use blobs::HeldBlob;
mod direct;
mod locks;
pub mod records;
pub mod remote;
pub mod scan;
mod stat_cache;
mod summary;
pub mod verify;

pub use locks::StageLock;
pub use records::{Pin, PinFile, PinKind};
pub use stat_cache::{Fingerprint, StatCache, hash_file, read_file};
pub use summary::Summary;

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use blobs::RecentBlobs;
use locks::{lock_error, open_store_lock};

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

/// Whether `s` is a well-formed stage key, `k1-<64 lowercase hex>`: what the store names
/// action records, stage locks and the records that belong to a key after.
pub fn is_stage_key(s: &str) -> bool {
    s.strip_prefix(KEY_SCHEME)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|hex| is_lower_hex(hex, 64))
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
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
    /// Shared: 10,000 experiments' reports hold copies of the same records.
    pub summary: Summary,
    pub hft_version: String,
    pub wall_ms: u64,
    /// Seconds since the Unix epoch when the record was written.
    pub created: u64,
    /// blake3 of the record's file as written without this field, set by
    /// [`Store::put_action`] (see `actions::seal_intact`): a record edited after it was
    /// written is a miss, and `cache verify` names it. Absent in records written before hft
    /// sealed them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// Remembered action records by key, with the size of each one's file as read.
type Hits = std::collections::HashMap<StageKey, (ActionRecord, u64)>;

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
    /// Signalled (with `recent` locked) whenever a held blob is let go, written or not
    /// ([`Store::wait_stored`]).
    released: Arc<std::sync::Condvar>,
    /// Action records found damaged (a missing or truncated blob, an edited record) through
    /// this handle: read-only commands report them instead of printing stale results.
    damaged: Arc<std::sync::atomic::AtomicUsize>,
    /// Action records already found intact through this handle (see
    /// [`Store::remembering_hits`]); `None`: every look-up reads the record.
    /// Each with the size of its file as read (what the no-op memo records).
    hits: Option<Arc<Mutex<Hits>>>,
}

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
            released: Arc::default(),
            damaged: Arc::default(),
            hits: None,
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
            released: Arc::default(),
            damaged: Arc::default(),
            hits: None,
        };
        store.clean_stale_tmp();
        Ok(store)
    }

    /// This handle, answering a second look-up of an action record it found intact from
    /// memory: 10,000 experiments sharing their data stages look each shared record up
    /// 10,000 times. Records it writes or forgets are dropped from memory. For one build or
    /// status, which sees the store as it was (another process only adds records; gc waits
    /// for it to finish).
    pub fn remembering_hits(mut self) -> Store {
        self.hits = Some(Arc::default());
        self
    }

    /// Forgets the remembered records, freeing them on every core (30,000 of them, one by
    /// one, were a thirtieth of a large status).
    pub fn forget_hits(&self) {
        use rayon::prelude::*;
        let Some(hits) = &self.hits else { return };
        let hits = std::mem::take(&mut *hits.lock().unwrap_or_else(|p| p.into_inner()));
        hits.into_par_iter().for_each(drop);
    }

    /// Whether this handle was opened by [`Store::open_exclusive`].
    pub fn is_exclusive(&self) -> bool {
        self.exclusive
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// How many damaged action records this handle has come across (see `get_action`).
    pub fn damaged_records(&self) -> usize {
        self.damaged.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn note_damaged(&self) {
        self.damaged
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// [`Store::open`] for commands that only read a store (`cache verify`, `cache
    /// stats`): a folder that does not exist is an error (a mistyped path), not a new,
    /// empty store.
    pub fn open_existing(root: &Path) -> io::Result<Store> {
        if !root.as_os_str().is_empty() && !root.exists() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "there is no cache at {} (hft creates one on the first build); check \
                     --cache-dir or HFT_CACHE_DIR",
                    root.display()
                ),
            ));
        }
        Store::open(root)
    }
}

/// The file that marks a folder as an hft store, holding the store's format. hft writes
/// into its cache folder and deletes stale temporary files from it, so a folder without it
/// that holds anything is never taken for one.
pub const STORE_MARKER: &str = "HFT-STORE";
/// The folders of a store.
const STORE_FOLDERS: [&str; 5] = ["objects", "actions", "builds", "locks", "tmp"];
/// The marker's text: the store layout's format version.
const STORE_FORMAT: &str = "hft store, format 1\n";

/// Creates the store's folders and marker. A file where a folder belongs (`--cache-dir`
/// naming a regular file, or a `cache/objects` file), an empty path, or a folder with
/// other contents and no marker (`--cache-dir .`, `~`) is the user's input, not the
/// environment, so it is an `InvalidInput` error that says what to point at instead.
fn create_layout(root: &Path) -> io::Result<()> {
    let invalid = |message: String| io::Error::new(io::ErrorKind::InvalidInput, message);
    let not_a_folder = |path: &Path, what: &str| {
        invalid(format!(
            "{} is a file, not a folder; {what}",
            path.display()
        ))
    };
    if root.as_os_str().is_empty() {
        return Err(invalid(
            "the cache path is empty (is HFT_CACHE_DIR set to an empty value?); unset it for \
             the default `cache/`, or name a folder"
                .to_string(),
        ));
    }
    if root.exists() && !root.is_dir() {
        return Err(not_a_folder(
            root,
            "the cache must be a folder (it is created when missing): point --cache-dir or \
             HFT_CACHE_DIR at one",
        ));
    }
    for sub in STORE_FOLDERS {
        let path = root.join(sub);
        if path.exists() && !path.is_dir() {
            return Err(not_a_folder(
                &path,
                "this is not an hft cache; point --cache-dir or HFT_CACHE_DIR at another folder",
            ));
        }
    }
    claim_marker(root)?;
    for sub in STORE_FOLDERS {
        fs::create_dir_all(root.join(sub)).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot create {}: {e}", root.join(sub).display()),
            )
        })?;
    }
    Ok(())
}

/// What the marker file says.
enum Marker {
    Absent,
    Ours,
    /// Empty or a prefix of [`STORE_FORMAT`]: another hft is writing it right now (or
    /// was killed while writing those few bytes).
    Partial,
    Foreign(String),
}

fn read_marker(marker: &Path) -> io::Result<Marker> {
    match fs::read_to_string(marker) {
        Ok(text) if text == STORE_FORMAT => Ok(Marker::Ours),
        Ok(text) if STORE_FORMAT.starts_with(&text) => Ok(Marker::Partial),
        Ok(text) => Ok(Marker::Foreign(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Marker::Absent),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("{}: {e}", marker.display()),
        )),
    }
}

/// Makes sure `root` carries the store marker, writing it into an empty folder (or a
/// store from before the marker). The marker is claimed with `create_new` before any
/// folder is made, so builds that start together on a new cache agree: the one that
/// creates it writes it, the others wait for its text; none of them mistakes the
/// folders another is creating for someone else's files.
fn claim_marker(root: &Path) -> io::Result<()> {
    use std::io::Write as _;
    let marker = root.join(STORE_MARKER);
    let write_error =
        |e: io::Error| io::Error::new(e.kind(), format!("cannot write {}: {e}", marker.display()));
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match read_marker(&marker)? {
            Marker::Ours => return Ok(()),
            Marker::Foreign(text) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{} says `{}`, a store format this hft ({}) does not know: a newer \
                         hft wrote it; use that version or another cache folder",
                        marker.display(),
                        text.trim(),
                        env!("CARGO_PKG_VERSION")
                    ),
                ));
            }
            Marker::Partial if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            // Left half-written by a killed hft: the text is ours, so finish it.
            Marker::Partial => return fs::write(&marker, STORE_FORMAT).map_err(write_error),
            Marker::Absent => {
                if root.is_dir() && !is_empty_or_legacy_store(root)? {
                    if marker.exists() {
                        continue; // another hft claimed it while we listed the folder
                    }
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!(
                            "{} is not an hft cache (no {STORE_MARKER} file) and is not \
                             empty: hft writes into its cache folder and deletes stale \
                             temporary files there, so it will not use this one; point \
                             --cache-dir or HFT_CACHE_DIR at a new or empty folder",
                            root.display()
                        ),
                    ));
                }
                fs::create_dir_all(root).map_err(|e| {
                    io::Error::new(e.kind(), format!("cannot create {}: {e}", root.display()))
                })?;
                match fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&marker)
                {
                    Ok(mut file) => {
                        return file.write_all(STORE_FORMAT.as_bytes()).map_err(write_error);
                    }
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(write_error(e)),
                }
            }
        }
    }
}

/// An empty folder (placeholders for git aside), or a store written before the marker existed (its `objects` and
/// `actions` folders, and nothing a store does not hold).
fn is_empty_or_legacy_store(root: &Path) -> io::Result<bool> {
    const STORE_ENTRIES: [&str; 13] = [
        "objects",
        "actions",
        "builds",
        "locks",
        "tmp",
        "memo",
        "index",
        "builds.jsonl",
        "catalog.jsonl",
        "catalog.check.json",
        "statcache.json",
        ".gitignore",
        ".gitkeep",
    ];
    let mut names = Vec::new();
    for entry in fs::read_dir(root)? {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    let legacy = root.join("objects").is_dir()
        && root.join("actions").is_dir()
        && names.iter().all(|n| STORE_ENTRIES.contains(&n.as_str()));
    // A project's `cache/` may hold only a placeholder for git.
    let empty = names.iter().all(|n| n == ".gitkeep" || n == ".gitignore");
    Ok(empty || legacy)
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A fresh store in a folder of its own, for the tests of the store's modules.
#[cfg(test)]
pub(crate) fn temp_store() -> (PathBuf, Store) {
    let dir = std::env::temp_dir().join(format!(
        "hft-store-test-{}-{}",
        std::process::id(),
        atomic::TMP_COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    #[allow(clippy::unwrap_used)]
    let store = Store::open(&dir).unwrap();
    (dir, store)
}

/// An action record for `stage` whose outputs are the given blobs, for tests.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn test_action(store: &Store, stage: &str, outputs: &[&[u8]]) -> StageKey {
    let mut parts: Vec<&[u8]> = vec![stage.as_bytes()];
    parts.extend(outputs);
    let key = StageKey::compute(&parts);
    let outputs: BTreeMap<String, OutputRef> = outputs
        .iter()
        .enumerate()
        .map(|(i, b)| (format!("out{i}"), store.put_blob(b).unwrap()))
        .collect();
    store
        .put_action(&ActionRecord {
            key: key.clone(),
            stage: stage.to_string(),
            outputs,
            summary: serde_json::Value::Null.into(),
            hft_version: "test".to_string(),
            wall_ms: 1,
            created: 1,
            digest: None,
        })
        .unwrap();
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_versioned_and_unambiguous() {
        let a = StageKey::compute(&[b"ab", b"c"]);
        let b = StageKey::compute(&[b"a", b"bc"]);
        assert_ne!(a, b);
        assert!(a.0.starts_with("k1-"));
    }

    /// Builds that start together on a new cache each see the folders the others are
    /// creating; none may take them for a stranger's files (it failed CI once).
    #[test]
    fn concurrent_first_opens_of_a_new_store_all_succeed() {
        for round in 0..20 {
            let root =
                std::env::temp_dir().join(format!("hft-store-race-{}-{round}", std::process::id()));
            let _ = fs::remove_dir_all(&root);
            let results: Vec<io::Result<Store>> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..6).map(|_| scope.spawn(|| Store::open(&root))).collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("an open panicked"))
                    .collect()
            });
            for result in results {
                if let Err(e) = result {
                    panic!("round {round}: {e}");
                }
            }
            assert_eq!(
                fs::read_to_string(root.join(STORE_MARKER)).ok().as_deref(),
                Some(STORE_FORMAT)
            );
            let _ = fs::remove_dir_all(&root);
        }
    }

    /// A marker left half-written by a killed hft is finished, not refused.
    #[test]
    fn a_half_written_marker_is_completed() {
        let root = std::env::temp_dir().join(format!("hft-store-half-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).unwrap();
        fs::write(root.join(STORE_MARKER), &STORE_FORMAT[..5]).unwrap();
        Store::open(&root).unwrap();
        assert_eq!(
            fs::read_to_string(root.join(STORE_MARKER)).unwrap(),
            STORE_FORMAT
        );
        let _ = fs::remove_dir_all(&root);
    }
}
