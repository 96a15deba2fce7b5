//! Listing and sweeping the whole store: every blob and action record with its size and
//! mtime, the store's size and counts, and removal in the order that keeps it consistent.
//! What to remove is not decided here (that is gc's policy, above the store).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::{ActionRecord, Digest, PinKind, Store, is_lower_hex, is_stage_key};

/// One blob file under `objects/`.
#[derive(Debug, Clone)]
pub struct BlobFile {
    pub path: PathBuf,
    pub size: u64,
}

/// Every blob, and the files under `objects/` whose names the store never writes.
#[derive(Debug, Default)]
pub struct Blobs {
    pub files: BTreeMap<Digest, BlobFile>,
    pub strays: Vec<PathBuf>,
}

/// One action record file under `actions/`.
#[derive(Debug)]
pub struct ActionFile {
    pub path: PathBuf,
    pub size: u64,
    /// Its last use: a cache hit touches it.
    pub mtime: SystemTime,
    /// The parsed record, or why it does not parse.
    pub record: Result<ActionRecord, String>,
    /// Whether the file is as written (`actions::seal_intact`); `None`: unsealed.
    pub sealed: Option<bool>,
}

/// Every action record, and the files under `actions/` whose names the store never writes.
#[derive(Debug, Default)]
pub struct Actions {
    /// Stage key -> its record file.
    pub files: BTreeMap<String, ActionFile>,
    pub strays: Vec<PathBuf>,
}

/// Sizes and counts of the store itself (what `hft cache stats` prints before the catalog).
#[derive(Debug, Clone, Default, Serialize)]
pub struct StoreStats {
    pub root: PathBuf,
    /// Every file under the store.
    pub bytes: u64,
    pub blobs: usize,
    pub blob_bytes: u64,
    pub actions: usize,
    pub action_bytes: u64,
    /// Files under `builds/`: per-experiment build records, checkpoints, audit records.
    pub build_records: usize,
    /// Resumable training checkpoints (`builds/partial-<key>.json`).
    pub checkpoints: usize,
    /// Finished trainings' final states (`builds/continuation-<prefix>-<epochs>.json`).
    pub continuations: usize,
}

impl Store {
    /// Every blob under `objects/`, by digest, with its size.
    pub fn scan_blobs(&self) -> io::Result<Blobs> {
        let mut blobs = Blobs::default();
        for shard in read_dir(&self.root.join("objects"))? {
            let shard_name = shard.file_name().to_string_lossy().into_owned();
            let is_dir = shard.file_type().map(|t| t.is_dir()).unwrap_or(false);
            if !is_dir || !is_lower_hex(&shard_name, 2) {
                blobs.strays.push(shard.path());
                continue;
            }
            for file in read_dir(&shard.path())? {
                let name = file.file_name().to_string_lossy().into_owned();
                let digest = is_lower_hex(&name, 62)
                    .then(|| Digest::from_hex(&format!("{shard_name}{name}")))
                    .flatten();
                let meta = file.metadata();
                match (digest, meta) {
                    (Some(d), Ok(meta)) if meta.is_file() => {
                        blobs.files.insert(
                            d,
                            BlobFile {
                                path: file.path(),
                                size: meta.len(),
                            },
                        );
                    }
                    // Gone since listed (a build discarding a corrupt blob).
                    (_, Err(e)) if e.kind() == io::ErrorKind::NotFound => {}
                    _ => blobs.strays.push(file.path()),
                }
            }
        }
        Ok(blobs)
    }

    /// Every action record under `actions/`, by stage key, parsed.
    pub fn scan_actions(&self) -> io::Result<Actions> {
        let mut actions = Actions::default();
        for file in read_dir(&self.root.join("actions"))? {
            let name = file.file_name().to_string_lossy().into_owned();
            let path = file.path();
            let Some(key) = name.strip_suffix(".json").filter(|k| is_stage_key(k)) else {
                actions.strays.push(path);
                continue;
            };
            let meta = match file.metadata() {
                Ok(meta) if meta.is_file() => meta,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                _ => {
                    actions.strays.push(path);
                    continue;
                }
            };
            let mut sealed = None;
            let record = match fs::read(&path) {
                Ok(bytes) => {
                    sealed = super::actions::seal_intact(&bytes);
                    serde_json::from_slice::<ActionRecord>(&bytes).map_err(|e| e.to_string())
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => Err(format!("cannot read it: {e}")),
            };
            actions.files.insert(
                key.to_string(),
                ActionFile {
                    path,
                    size: meta.len(),
                    mtime: meta.modified().unwrap_or(UNIX_EPOCH),
                    record,
                    sealed,
                },
            );
        }
        Ok(actions)
    }

    /// Bytes of every file under the store; files vanishing meanwhile (a build's
    /// temporary files) are skipped.
    pub fn total_bytes(&self) -> u64 {
        walkdir::WalkDir::new(&self.root)
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file())
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum()
    }

    /// Sizes and counts of blobs, action records and build records.
    pub fn stats(&self) -> io::Result<StoreStats> {
        let blobs = self.scan_blobs()?;
        let actions = self.scan_actions()?;
        let records = self.build_record_ids()?;
        let count = |kind: PinKind| {
            records
                .iter()
                .filter(|id| PinKind::of_record(id).is_some_and(|(k, _)| k == kind))
                .count()
        };
        Ok(StoreStats {
            root: self.root.clone(),
            bytes: self.total_bytes(),
            blobs: blobs.files.len(),
            blob_bytes: blobs.files.values().map(|b| b.size).sum(),
            actions: actions.files.len(),
            action_bytes: actions.files.values().map(|a| a.size).sum(),
            build_records: records.len(),
            checkpoints: count(PinKind::Checkpoint),
            continuations: count(PinKind::Continuation),
        })
    }

    /// Deletes `records` (action and build records), then `blobs`, then the shard folders
    /// left empty and the per-key lock files. Records go first: a removal stopped half-way
    /// leaves orphan blobs, never a record that names a missing blob. Needs a store opened
    /// with [`Store::open_exclusive`]: a running build may have written blobs that no
    /// record names yet, and may hold a stage lock.
    pub fn remove(&self, records: &[&Path], blobs: &[&Path]) -> io::Result<()> {
        self.require_exclusive()?;
        for path in records.iter().chain(blobs) {
            remove_file(path)?;
        }
        self.remove_empty_shards()?;
        self.remove_stage_locks()
    }

    /// An error unless this handle has the store to itself.
    pub fn require_exclusive(&self) -> io::Result<()> {
        if self.exclusive {
            return Ok(());
        }
        Err(io::Error::other(format!(
            "gc needs the cache at {} to itself: open it with Store::open_exclusive",
            self.root.display()
        )))
    }

    /// `objects/xx/` directories left empty.
    fn remove_empty_shards(&self) -> io::Result<()> {
        for shard in read_dir(&self.root.join("objects"))? {
            let path = shard.path();
            if path.is_dir() && read_dir(&path)?.is_empty() {
                fs::remove_dir(&path).map_err(|e| {
                    io::Error::new(e.kind(), format!("cannot remove {}: {e}", path.display()))
                })?;
            }
        }
        Ok(())
    }

    /// Per-key lock files accumulate one per key ever built. With the store held
    /// exclusively no process holds or waits on one (they are taken only through an open
    /// Store), and the next build recreates what it needs.
    fn remove_stage_locks(&self) -> io::Result<()> {
        for file in read_dir(&self.root.join("locks"))? {
            let name = file.file_name().to_string_lossy().into_owned();
            if name.strip_suffix(".lock").is_some_and(is_stage_key) {
                remove_file(&file.path())?;
            }
        }
        Ok(())
    }
}

/// The entries of `dir`, sorted by name; errors name the folder.
pub(super) fn read_dir(dir: &Path) -> io::Result<Vec<fs::DirEntry>> {
    let entries = fs::read_dir(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot list {}: {e}", dir.display())))?;
    let mut out = Vec::new();
    for entry in entries {
        out.push(entry.map_err(|e| {
            io::Error::new(e.kind(), format!("cannot list {}: {e}", dir.display()))
        })?);
    }
    out.sort_by_key(|e| e.file_name());
    Ok(out)
}

/// Removes a file; one already gone is not an error.
fn remove_file(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io::Error::new(
            e.kind(),
            format!("cannot remove {}: {e}", path.display()),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{StageKey, temp_store, test_action};
    use std::time::Duration;

    #[test]
    fn scans_list_blobs_and_records_and_stats_count_them() {
        let (dir, store) = temp_store();
        let key = test_action(&store, "features", &[b"x", b"y"]);
        test_action(&store, "train", &[b"z"]);
        store.put_build_record("some-id", &1).unwrap();
        store
            .put_build_record(&format!("partial-{}", StageKey::compute(&[b"p"])), &1)
            .unwrap();
        let blobs = store.scan_blobs().unwrap();
        assert_eq!(blobs.files.len(), 3);
        assert!(blobs.strays.is_empty());
        let actions = store.scan_actions().unwrap();
        assert_eq!(
            actions.files[&key.0].record.as_ref().unwrap().stage,
            "features"
        );
        let s = store.stats().unwrap();
        assert_eq!(
            (s.blobs, s.actions, s.build_records, s.checkpoints),
            (3, 2, 2, 1)
        );
        assert_eq!(s.blob_bytes, 3);
        assert!(s.bytes >= s.blob_bytes + s.action_bytes);
        assert_eq!(s.bytes, store.total_bytes());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn removal_needs_the_store_to_itself_and_clears_empty_shards_and_locks() {
        let (dir, store) = temp_store();
        let key = test_action(&store, "train", &[b"w"]);
        drop(store.lock_stage(&key).unwrap());
        let blob = store.blob_path(&Digest::of(b"w"));
        let record = store.action_path(&key);
        let err = store.remove(&[&record], &[&blob]).unwrap_err();
        assert!(err.to_string().contains("open_exclusive"), "{err}");
        drop(store);
        let store = Store::open_exclusive(&dir, Duration::ZERO).unwrap();
        store.remove(&[&record], &[&blob]).unwrap();
        assert!(!record.exists() && !blob.exists());
        assert!(blob.parent().is_some_and(|shard| !shard.exists()));
        assert!(!dir.join("locks").join(format!("{key}.lock")).exists());
        assert!(dir.join("locks/store.lock").exists());
        fs::remove_dir_all(dir).unwrap();
    }
}
