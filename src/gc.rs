//! The gc policy: what `hft gc` keeps and what it removes from the store.
//!
//! gc keeps what is reachable from its roots (the current experiments' keys and hft.lock's)
//! and from the last `keep_last` catalog rows of every experiment: their action records,
//! the blobs those name, and the audit and continuation records of their keys (with the
//! blobs those name). Blobs of resumable training checkpoints and API snapshots are kept
//! while their record exists. Then, above
//! `max_size`, it evicts the least recently used entries that are not roots (an action
//! record's mtime is touched on every cache hit).
//!
//! This sits above the store and the catalog: the store lists its files and typed pins and
//! removes what it is told (records before blobs, so an interrupted gc leaves orphan
//! blobs, never a record naming a missing blob); the catalog gives the history. gc needs
//! the store to itself ([`Store::open_exclusive`]): a running build may have written blobs
//! that no action record names yet.
//!
//! gc also removes memos (`memo/`) that no run has written for [`MEMO_MAX_AGE`]: each hft
//! binary and option set writes its own, so without this every upgrade left its memos
//! behind (17 MB each at 10,000 experiments). A memo only saves work: one removed while
//! still in use costs its next run a full plan.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::catalog::Catalog;
use crate::graph::exec::ExperimentReport;
use crate::lock::Lockfile;
use crate::store::scan::ActionFile;
use crate::store::{Digest, PinFile, PinKind, Store};

/// What `hft gc` may keep and remove.
#[derive(Debug, Clone, Default)]
pub struct GcOptions {
    /// Stage keys of the current experiments and of hft.lock: never removed.
    pub roots: BTreeSet<String>,
    /// Also keep the keys of the last N catalog rows of every experiment.
    pub keep_last: usize,
    /// After removing unreachable entries, remove least-recently-used reachable-by-history
    /// ones until the store is at most this many bytes (roots are never removed).
    pub max_size: Option<u64>,
    pub dry_run: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    /// Nothing was deleted: the counts say what would have been.
    pub dry_run: bool,
    pub actions_removed: usize,
    pub blobs_removed: usize,
    pub bytes_freed: u64,
    /// Bytes of the whole store before gc.
    pub bytes_before: u64,
    pub bytes_left: u64,
    pub actions_kept: usize,
    pub blobs_kept: usize,
    /// Root keys that have an action record in the store.
    pub roots_present: usize,
    /// Blobs kept because a resumable training checkpoint record names them.
    pub checkpoint_blobs_kept: usize,
    pub max_size: Option<u64>,
    /// The store is still above `max_size` although only roots and checkpoints are left;
    /// those are never removed.
    pub over_budget: bool,
    /// The removed (or, in a dry run, removable) entries, least recently used first.
    pub removed: Vec<GcEntry>,
    /// Memos not written for [`MEMO_MAX_AGE`], and their bytes (not in `bytes_freed`,
    /// which counts the store's records and blobs).
    pub memos_removed: usize,
    pub memo_bytes_freed: u64,
}

/// How long a memo no run has written is kept (see the module docs).
pub const MEMO_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// The memo files under `memo/` last written before `now - MEMO_MAX_AGE`, with their sizes.
fn stale_memos(store: &Store, now: SystemTime) -> Vec<(PathBuf, u64)> {
    let Some(horizon) = now.checked_sub(MEMO_MAX_AGE) else {
        return Vec::new();
    };
    let Ok(listing) = std::fs::read_dir(store.root().join("memo")) else {
        return Vec::new();
    };
    let mut stale: Vec<(PathBuf, u64)> = listing
        .flatten()
        .filter_map(|entry| {
            let meta = entry.metadata().ok()?;
            let written = meta.modified().ok()?;
            (meta.is_file() && written < horizon).then(|| (entry.path(), meta.len()))
        })
        .collect();
    stale.sort();
    stale
}

/// One stage key whose action record (and audit and continuation records, if any) gc
/// removes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GcEntry {
    pub key: String,
    /// The stage that produced it; `None` when the record is unreadable or absent (an
    /// audit or continuation record alone).
    pub stage: Option<String>,
    pub reason: GcReason,
    /// Seconds since the Unix epoch of its last cache hit (or its creation).
    pub last_used: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GcReason {
    /// Reached by no root and no kept catalog row.
    Unreachable,
    /// Reachable from catalog history only, and evicted to get under `max_size`.
    LeastRecentlyUsed,
}

/// Every stage key the current plans name, cached or not yet: roots.
pub fn plan_roots(reports: &[ExperimentReport]) -> BTreeSet<String> {
    reports
        .iter()
        .flat_map(|r| r.stages.iter().filter_map(|s| s.key.as_ref()))
        .map(|k| k.0.clone())
        .collect()
}

/// Every stage key hft.lock records: roots.
pub fn lock_roots(lock: &Lockfile) -> impl Iterator<Item = String> + '_ {
    lock.experiments
        .values()
        .flat_map(|e| e.stages.values().map(|s| s.key.clone()))
}

/// Removes what nothing reaches, then evicts least recently used entries above
/// `max_size` (see the module documentation); in a dry run, only says what it would do.
/// Needs a store opened with [`Store::open_exclusive`].
pub fn gc(store: &Store, catalog: &Catalog, options: &GcOptions) -> io::Result<GcReport> {
    store.require_exclusive()?;
    let blobs = store.scan_blobs()?;
    let actions = store.scan_actions()?;
    let pins = store.pins()?;
    let bytes_before = store.total_bytes();

    // What pins what: checkpoints and API snapshots keep their blobs while their record
    // exists; an audit record keeps the divergent outputs of its key while the key lives,
    // and a continuation the final state of the training that wrote it, as that training's
    // checkpoint is kept. A continuation that names no training is an entry of its own,
    // which no root reaches.
    let mut pinned: BTreeSet<Digest> = BTreeSet::new();
    let mut owned: Vec<(&str, &PinFile)> = Vec::new();
    for file in &pins {
        match file.pin.kind {
            PinKind::Checkpoint | PinKind::Snapshot => {
                pinned.extend(file.pin.digests.iter().copied())
            }
            PinKind::Audit | PinKind::Continuation => owned.push((
                file.pin.owner.as_deref().unwrap_or(file.pin.id.as_str()),
                file,
            )),
        }
    }

    // Every stage key with something in the store: an action record, audit or
    // continuation records, or both. Those records live and die with their key.
    let mut entries: BTreeMap<&str, Entry> = BTreeMap::new();
    for (key, action) in &actions.files {
        let entry = entries.entry(key.as_str()).or_default();
        entry.action = Some(action);
        entry.bytes += action.size;
        entry.last_used = action.mtime;
        if let Ok(record) = &action.record {
            entry.refs.extend(record.outputs.values().map(|o| o.digest));
        }
    }
    for (key, file) in owned {
        let entry = entries.entry(key).or_default();
        entry.records.push(file);
        entry.bytes += file.size;
        entry.last_used = entry.last_used.max(file.mtime);
        entry.refs.extend(file.pin.digests.iter().copied());
    }

    let mut reachable: BTreeSet<&str> = options.roots.iter().map(String::as_str).collect();
    if options.keep_last > 0 {
        for id in catalog.latest().keys() {
            for row in catalog.history(id).into_iter().take(options.keep_last) {
                reachable.extend(row.stages.iter().map(|s| s.key.as_str()));
            }
        }
    }

    let mut removed: Vec<(&str, GcReason)> = Vec::new();
    let mut refcount: BTreeMap<Digest, usize> = BTreeMap::new();
    for (key, entry) in &entries {
        if reachable.contains(key) {
            for d in &entry.refs {
                *refcount.entry(*d).or_default() += 1;
            }
        } else {
            removed.push((key, GcReason::Unreachable));
        }
    }
    // Unreachable first, oldest first within each reason.
    removed.sort_by_key(|(key, _)| (entries[key].last_used, *key));
    let freeable = |d: &Digest, refcount: &BTreeMap<Digest, usize>| {
        refcount.get(d).copied().unwrap_or(0) == 0 && !pinned.contains(d)
    };
    let mut removed_blobs: BTreeSet<Digest> = blobs
        .files
        .keys()
        .filter(|d| freeable(d, &refcount))
        .copied()
        .collect();
    let mut freed: u64 = removed.iter().map(|(k, _)| entries[k].bytes).sum::<u64>()
        + removed_blobs
            .iter()
            .map(|d| blobs.files[d].size)
            .sum::<u64>();

    let mut over_budget = false;
    if let Some(budget) = options.max_size {
        let mut candidates: Vec<(&str, &Entry)> = entries
            .iter()
            .filter(|(key, _)| reachable.contains(*key) && !options.roots.contains(**key))
            .map(|(key, entry)| (*key, entry))
            .collect();
        candidates.sort_by_key(|(key, entry)| (entry.last_used, *key));
        for (key, entry) in candidates {
            if bytes_before.saturating_sub(freed) <= budget {
                break;
            }
            removed.push((key, GcReason::LeastRecentlyUsed));
            freed += entry.bytes;
            for d in &entry.refs {
                if let Some(n) = refcount.get_mut(d) {
                    *n -= 1;
                }
                if freeable(d, &refcount)
                    && let Some(blob) = blobs.files.get(d)
                    && removed_blobs.insert(*d)
                {
                    freed += blob.size;
                }
            }
        }
        over_budget = bytes_before.saturating_sub(freed) > budget;
    }

    if !options.dry_run {
        // The store removes records first: a gc stopped half-way leaves orphan blobs,
        // never a record that names a missing blob.
        let records: Vec<&Path> = removed
            .iter()
            .flat_map(|(key, _)| {
                let entry = &entries[key];
                let action = entry.action.map(|a| a.path.as_path());
                action
                    .into_iter()
                    .chain(entry.records.iter().map(|r| r.path.as_path()))
            })
            .collect();
        let blob_files: Vec<&Path> = removed_blobs
            .iter()
            .map(|d| blobs.files[d].path.as_path())
            .collect();
        store.remove(&records, &blob_files)?;
    }
    let memos = stale_memos(store, SystemTime::now());
    if !options.dry_run {
        for (path, _) in &memos {
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
    }

    let removed_keys: BTreeSet<&str> = removed.iter().map(|(k, _)| *k).collect();
    Ok(GcReport {
        dry_run: options.dry_run,
        actions_removed: removed
            .iter()
            .filter(|(k, _)| entries[k].action.is_some())
            .count(),
        blobs_removed: removed_blobs.len(),
        bytes_freed: freed,
        bytes_before,
        bytes_left: bytes_before.saturating_sub(freed),
        actions_kept: actions
            .files
            .keys()
            .filter(|k| !removed_keys.contains(k.as_str()))
            .count(),
        blobs_kept: blobs.files.len() - removed_blobs.len(),
        roots_present: options
            .roots
            .iter()
            .filter(|k| actions.files.contains_key(*k))
            .count(),
        checkpoint_blobs_kept: pinned
            .iter()
            .filter(|d| blobs.files.contains_key(d))
            .count(),
        max_size: options.max_size,
        over_budget,
        removed: removed
            .iter()
            .map(|(key, reason)| {
                let entry = &entries[key];
                GcEntry {
                    key: key.to_string(),
                    stage: entry
                        .action
                        .and_then(|a| a.record.as_ref().ok())
                        .map(|r| r.stage.clone()),
                    reason: *reason,
                    last_used: unix_secs(entry.last_used),
                }
            })
            .collect(),
        memos_removed: memos.len(),
        memo_bytes_freed: memos.iter().map(|(_, size)| size).sum(),
    })
}

/// One stage key's files in the store.
struct Entry<'a> {
    action: Option<&'a ActionFile>,
    /// Its audit and continuation records.
    records: Vec<&'a PinFile>,
    bytes: u64,
    last_used: SystemTime,
    /// Blobs it keeps alive: its outputs, the divergent outputs of its audits, its
    /// continuation.
    refs: BTreeSet<Digest>,
}

impl Default for Entry<'_> {
    fn default() -> Self {
        Entry {
            action: None,
            records: Vec::new(),
            bytes: 0,
            last_used: UNIX_EPOCH,
            refs: BTreeSet::new(),
        }
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::CatalogRow;
    use crate::store::{StageKey, test_action as action};
    use std::fs::{self, File};
    use std::time::Duration;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_exclusive(dir.path(), Duration::ZERO).unwrap();
        (dir, store)
    }

    #[test]
    fn memos_no_run_wrote_for_a_week_are_removed() {
        let (_d, store) = store();
        let memo = store.root().join("memo");
        fs::create_dir_all(&memo).unwrap();
        let (old, recent) = (memo.join("old.json"), memo.join("recent.json"));
        fs::write(&old, b"{}").unwrap();
        fs::write(&recent, b"{}").unwrap();
        let eight_days_ago = SystemTime::now() - Duration::from_secs(8 * 24 * 3600);
        File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(eight_days_ago)
            .unwrap();
        let dry = gc(
            &store,
            &Catalog::default(),
            &GcOptions {
                dry_run: true,
                ..GcOptions::default()
            },
        )
        .unwrap();
        assert_eq!((dry.memos_removed, dry.memo_bytes_freed), (1, 2));
        assert!(old.exists() && recent.exists(), "a dry run deletes nothing");
        let report = gc(&store, &Catalog::default(), &GcOptions::default()).unwrap();
        assert_eq!(report.memos_removed, 1);
        assert!(!old.exists() && recent.exists());
    }

    fn has(store: &Store, bytes: &[u8]) -> bool {
        store.blob_path(&Digest::of(bytes)).exists()
    }

    fn has_action(store: &Store, key: &StageKey) -> bool {
        store.action_path(key).exists()
    }

    fn roots(keys: &[&StageKey]) -> BTreeSet<String> {
        keys.iter().map(|k| k.0.clone()).collect()
    }

    fn set_last_used(store: &Store, key: &StageKey, secs_ago: u64) {
        File::options()
            .write(true)
            .open(store.action_path(key))
            .unwrap()
            .set_modified(SystemTime::now() - Duration::from_secs(secs_ago))
            .unwrap();
    }

    fn row(id: &str, at: u64, keys: &[&StageKey]) -> CatalogRow {
        let keys: Vec<&str> = keys.iter().map(|k| k.0.as_str()).collect();
        CatalogRow::for_test(id, at, &keys)
    }

    /// A root sharing one blob with an unreachable entry, plus an orphan blob.
    fn mixed(store: &Store) -> (StageKey, StageKey) {
        let kept = action(store, "features", &[b"kept", b"shared"]);
        let gone = action(store, "train", &[b"gone", b"shared"]);
        store.put_blob(b"orphan").unwrap();
        (kept, gone)
    }

    #[test]
    fn gc_removes_exactly_what_no_root_reaches() {
        let (_dir, store) = store();
        let (kept, gone) = mixed(&store);
        let options = GcOptions {
            roots: roots(&[&kept]),
            ..GcOptions::default()
        };
        let report = gc(&store, &Catalog::default(), &options).unwrap();
        assert_eq!((report.actions_removed, report.blobs_removed), (1, 2));
        assert_eq!((report.actions_kept, report.blobs_kept), (1, 2));
        assert_eq!(report.roots_present, 1);
        assert!(has_action(&store, &kept) && !has_action(&store, &gone));
        assert!(has(&store, b"kept") && has(&store, b"shared"));
        assert!(!has(&store, b"gone") && !has(&store, b"orphan"));
        assert_eq!(report.removed[0].stage.as_deref(), Some("train"));
        assert_eq!(report.removed[0].reason, GcReason::Unreachable);
        assert_eq!(report.bytes_left, store.total_bytes());
        assert!(store.get_action(&kept).is_some(), "a root still hits");
        for shard in fs::read_dir(store.root().join("objects")).unwrap() {
            let shard = shard.unwrap().path();
            assert!(fs::read_dir(&shard).unwrap().next().is_some(), "{shard:?}");
        }
        assert!(crate::store::verify::verify(&store).unwrap().is_clean());
    }

    #[test]
    fn a_dry_run_reports_the_same_and_deletes_nothing() {
        let (_dir, store) = store();
        let (kept, gone) = mixed(&store);
        let options = GcOptions {
            roots: roots(&[&kept]),
            dry_run: true,
            ..GcOptions::default()
        };
        let before = store.total_bytes();
        let dry = gc(&store, &Catalog::default(), &options).unwrap();
        assert!(dry.dry_run && dry.bytes_freed > 0);
        assert_eq!(store.total_bytes(), before);
        assert!(has_action(&store, &gone) && has(&store, b"gone") && has(&store, b"orphan"));
        assert_eq!((dry.actions_removed, dry.blobs_removed), (1, 2));
        let real = gc(
            &store,
            &Catalog::default(),
            &GcOptions {
                dry_run: false,
                ..options
            },
        )
        .unwrap();
        assert_eq!(real.bytes_freed, dry.bytes_freed);
        assert_eq!(real.removed, dry.removed);
    }

    #[test]
    fn keep_last_keeps_each_experiments_recent_history() {
        let (_dir, store) = store();
        let v1 = action(&store, "train", &[b"v1"]);
        let v2 = action(&store, "train", &[b"v2"]);
        let v3 = action(&store, "train", &[b"v3"]);
        let other = action(&store, "train", &[b"other"]);
        let catalog = Catalog {
            rows: vec![
                row("a", 1, &[&v1]),
                row("b", 1, &[&other]),
                row("a", 2, &[&v2]),
                row("a", 3, &[&v3]),
            ],
            builds: vec![],
        };
        let options = GcOptions {
            roots: roots(&[&v3]),
            keep_last: 2,
            ..GcOptions::default()
        };
        gc(&store, &catalog, &options).unwrap();
        assert!(has_action(&store, &v2) && has_action(&store, &v3));
        assert!(has_action(&store, &other), "b's last row");
        assert!(!has_action(&store, &v1) && !has(&store, b"v1"));
        // keep_last 0: only roots.
        gc(
            &store,
            &catalog,
            &GcOptions {
                keep_last: 0,
                ..options
            },
        )
        .unwrap();
        assert!(has_action(&store, &v3));
        assert!(!has_action(&store, &v2) && !has_action(&store, &other));
    }

    #[test]
    fn max_size_evicts_least_recently_used_non_roots_only() {
        let (_dir, store) = store();
        let big = |c: u8| vec![c; 10_000];
        let (r, old, new) = (big(1), big(2), big(3));
        let root = action(&store, "train", &[&r]);
        let old_key = action(&store, "train", &[&old, b"common"]);
        let new_key = action(&store, "train", &[&new, b"common"]);
        set_last_used(&store, &root, 9000);
        set_last_used(&store, &old_key, 5000);
        set_last_used(&store, &new_key, 100);
        let catalog = Catalog {
            rows: vec![row("a", 1, &[&old_key]), row("a", 2, &[&new_key])],
            builds: vec![],
        };
        let total = store.total_bytes();
        let options = GcOptions {
            roots: roots(&[&root]),
            keep_last: 10,
            max_size: Some(total - 5_000),
            dry_run: false,
        };
        let report = gc(&store, &catalog, &options).unwrap();
        assert_eq!(report.removed.len(), 1);
        assert_eq!(report.removed[0].reason, GcReason::LeastRecentlyUsed);
        assert!(!has_action(&store, &old_key) && !has(&store, &old));
        assert!(has_action(&store, &new_key) && has(&store, &new));
        assert!(has(&store, b"common"), "still used by the newer entry");
        assert!(!report.over_budget && report.bytes_left <= total - 5_000);

        // A budget below the roots: everything else goes, the roots stay, and it says so.
        let report = gc(
            &store,
            &catalog,
            &GcOptions {
                max_size: Some(1),
                ..options
            },
        )
        .unwrap();
        assert!(report.over_budget);
        assert!(!has_action(&store, &new_key) && !has(&store, b"common"));
        assert!(has_action(&store, &root) && has(&store, &r));
    }

    #[test]
    fn resumable_checkpoints_and_audited_outputs_are_kept_with_their_records() {
        let (_dir, store) = store();
        let train = action(&store, "train", &[b"weights"]);
        let checkpoint = store.put_blob(b"HFT-RSUM checkpoint").unwrap();
        let partial = format!("partial-{}", StageKey::compute(&[b"unfinished"]));
        store
            .put_build_record(
                &partial,
                &serde_json::json!({"step": 4, "digest": checkpoint.digest.to_hex()}),
            )
            .unwrap();
        let divergent = store.put_blob(b"divergent weights").unwrap();
        store
            .put_build_record(
                &format!("audit-{train}"),
                &serde_json::json!({"out0": [Digest::of(b"weights").to_hex(),
                                             divergent.digest.to_hex()]}),
            )
            .unwrap();
        let options = GcOptions {
            roots: roots(&[&train]),
            ..GcOptions::default()
        };
        let report = gc(&store, &Catalog::default(), &options).unwrap();
        assert_eq!(report.blobs_removed, 0);
        assert_eq!(report.checkpoint_blobs_kept, 1);
        assert!(has(&store, b"HFT-RSUM checkpoint") && has(&store, b"divergent weights"));

        // Without roots the audit record goes with its key; the checkpoint stays while its
        // record does.
        gc(&store, &Catalog::default(), &GcOptions::default()).unwrap();
        assert!(!has(&store, b"divergent weights") && !has(&store, b"weights"));
        assert!(
            !store
                .root()
                .join(format!("builds/audit-{train}.json"))
                .exists()
        );
        assert!(has(&store, b"HFT-RSUM checkpoint"));
        store.remove_build_record(&partial);
        gc(&store, &Catalog::default(), &GcOptions::default()).unwrap();
        assert!(!has(&store, b"HFT-RSUM checkpoint"));
    }

    /// A continuation lives and dies with the training that wrote it: kept (with its blob)
    /// while that key is reached, removed with it, least recently used included; one that
    /// names no training is reached by nothing.
    #[test]
    fn continuations_are_kept_and_collected_with_their_training() {
        let (_dir, store) = store();
        let short = action(&store, "train", &[b"3-epoch checkpoint"]);
        let long = action(&store, "train", &[b"9-epoch checkpoint"]);
        let prefix = StageKey::compute(&[b"the training but its epochs"]);
        let record = |epochs: usize, key: &str, state: &[u8]| {
            let blob = store.put_blob(state).unwrap();
            let id = format!("{prefix}-{epochs}");
            let body = serde_json::json!({"key": key, "digest": blob.digest.to_hex()});
            store
                .put_pin_record(PinKind::Continuation, &id, &body)
                .unwrap();
            store.root().join(format!("builds/continuation-{id}.json"))
        };
        let short_path = record(3, &short.0, b"3-epoch state");
        let long_path = record(9, &long.0, b"9-epoch state");
        let stray_path = record(5, "not a key", b"stray state");
        let options = GcOptions {
            roots: roots(&[&short, &long]),
            ..GcOptions::default()
        };
        let report = gc(&store, &Catalog::default(), &options).unwrap();
        assert_eq!((report.actions_removed, report.blobs_removed), (0, 1));
        assert!(has(&store, b"3-epoch state") && has(&store, b"9-epoch state"));
        assert!(short_path.exists() && long_path.exists());
        assert!(!stray_path.exists() && !has(&store, b"stray state"));

        // The 9-epoch training alone is a root: the 3-epoch one goes with its state.
        let options = GcOptions {
            roots: roots(&[&long]),
            ..GcOptions::default()
        };
        let report = gc(&store, &Catalog::default(), &options).unwrap();
        assert_eq!(report.removed.len(), 1);
        assert_eq!(report.removed[0].key, short.0);
        assert!(!short_path.exists() && !has(&store, b"3-epoch state"));
        assert!(long_path.exists() && has(&store, b"9-epoch state"));
        assert!(crate::store::verify::verify(&store).unwrap().is_clean());
    }

    #[test]
    fn gc_refuses_a_shared_store() {
        let dir = tempfile::tempdir().unwrap();
        let shared = Store::open(dir.path()).unwrap();
        let err = gc(&shared, &Catalog::default(), &GcOptions::default()).unwrap_err();
        assert!(err.to_string().contains("open_exclusive"), "{err}");
    }
}
