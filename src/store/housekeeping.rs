//! Cache housekeeping: `hft gc`, `hft cache verify`, `hft cache stats`.
//!
//! gc keeps what is reachable from its roots (the current experiments' keys and hft.lock's)
//! and from the last `keep_last` catalog rows of every experiment: their action records,
//! the blobs those name, and the audit records of their keys. Blobs of resumable training
//! checkpoints (`builds/partial-<key>.json`) are kept while the record exists. Then, above
//! `max_size`, it evicts the least recently used entries that are not roots (an action
//! record's mtime is touched on every cache hit). It deletes action records before blobs,
//! so an interrupted gc leaves orphan blobs, never a record naming a missing blob. It needs
//! the store to itself ([`Store::open_exclusive`]): a running build may have written blobs
//! that no action record names yet.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{ActionRecord, Digest, KEY_SCHEME, Store, hash_file, now_unix};
use crate::catalog::{BuildEntry, Catalog};

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
}

/// One stage key whose action record (and audit record, if any) gc removes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GcEntry {
    pub key: String,
    /// The stage that produced it; `None` when the record is unreadable or absent (an
    /// audit record alone).
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

#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    pub blobs_checked: usize,
    pub blob_bytes_checked: u64,
    pub actions_checked: usize,
    /// Blobs whose bytes do not hash to their name (or that cannot be read).
    pub corrupt_blobs: usize,
    /// Action record outputs whose blob is absent.
    pub missing_blobs: usize,
    /// Action record outputs whose blob has another size than recorded.
    pub size_mismatches: usize,
    /// Action records that do not parse or whose key is not their file name.
    pub bad_actions: usize,
    /// Files under `objects/` or `actions/` whose names the store never writes.
    pub stray_files: usize,
    /// Problems, one line each, naming the file (`corrupt blob /…/objects/1a/2b…: …`).
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CacheStats {
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
    pub catalog_rows: usize,
    pub catalog_experiments: usize,
    /// Builds the catalog remembers.
    pub builds_recorded: usize,
    /// The last [`RECENT_BUILDS`] builds, oldest first.
    pub recent_builds: Vec<BuildStats>,
    /// cached / (ran + cached) over `recent_builds`; `None` when they checked no stage.
    pub hit_rate: Option<f64>,
}

/// How many builds `cache stats` summarises.
pub const RECENT_BUILDS: usize = 10;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BuildStats {
    /// Seconds since the Unix epoch.
    pub at: u64,
    pub experiments: usize,
    pub ran: usize,
    pub cached: usize,
    pub failed: usize,
    pub secs: f64,
    /// cached / (ran + cached); `None` when the build checked no stage.
    pub hit_rate: Option<f64>,
}

/// Removes what nothing reaches, then evicts least recently used entries above
/// `max_size` (see the module documentation); in a dry run, only says what it would do.
/// Needs a store opened with [`Store::open_exclusive`].
pub fn gc(store: &Store, catalog: &Catalog, options: &GcOptions) -> io::Result<GcReport> {
    if !store.is_exclusive() {
        return Err(io::Error::other(format!(
            "gc needs the cache at {} to itself: open it with Store::open_exclusive",
            store.root().display()
        )));
    }
    let blobs = scan_blobs(store)?;
    let actions = scan_actions(store)?;
    let records = scan_build_records(store)?;
    let bytes_before = tree_bytes(store.root());

    // Every stage key with something in the store: an action record, an audit record, or
    // both. An audit record lives and dies with its key.
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
    for (key, audit) in &records.audits {
        let entry = entries.entry(key.as_str()).or_default();
        entry.audit = Some(audit);
        entry.bytes += audit.size;
        entry.last_used = entry.last_used.max(audit.mtime);
        entry.refs.extend(audit.digests.iter().copied());
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
        refcount.get(d).copied().unwrap_or(0) == 0 && !records.pinned.contains(d)
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
        // Records first: a gc stopped half-way leaves orphan blobs, never a record that
        // names a missing blob.
        for (key, _) in &removed {
            let entry = &entries[key];
            for path in [entry.action.map(|a| &a.path), entry.audit.map(|a| &a.path)]
                .into_iter()
                .flatten()
            {
                remove(path)?;
            }
        }
        for d in &removed_blobs {
            remove(&blobs.files[d].path)?;
        }
        remove_empty_shards(store)?;
        remove_stage_locks(store)?;
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
        checkpoint_blobs_kept: records
            .pinned
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
    })
}

/// Re-hashes every blob (in parallel) and checks every action record against the blobs it
/// names. Changes nothing, so it may run beside builds.
pub fn verify(store: &Store) -> io::Result<VerifyReport> {
    let blobs = scan_blobs(store)?;
    let actions = scan_actions(store)?;
    let mut report = VerifyReport {
        blobs_checked: blobs.files.len(),
        blob_bytes_checked: blobs.files.values().map(|b| b.size).sum(),
        actions_checked: actions.files.len(),
        stray_files: blobs.strays.len() + actions.strays.len(),
        ..VerifyReport::default()
    };
    for path in blobs.strays.iter().chain(&actions.strays) {
        report.problems.push(format!(
            "stray file {}: not a name the store writes",
            path.display()
        ));
    }

    // Who uses each blob, to say what a corruption breaks.
    let mut users: BTreeMap<Digest, String> = BTreeMap::new();
    for (key, action) in &actions.files {
        let record = match &action.record {
            Ok(record) => record,
            Err(e) => {
                report.bad_actions += 1;
                report.problems.push(format!(
                    "unreadable action record {}: {e}",
                    action.path.display()
                ));
                continue;
            }
        };
        if record.key.0 != *key {
            report.bad_actions += 1;
            report.problems.push(format!(
                "action record {} holds the record of another key ({})",
                action.path.display(),
                record.key
            ));
            continue;
        }
        for (name, out) in &record.outputs {
            users
                .entry(out.digest)
                .or_insert_with(|| format!("output `{name}` of {} {}", record.stage, key));
            let path = store.blob_path(&out.digest);
            // Looked up now rather than in the scan: a concurrent build may have written
            // this record's blobs after the scan listed objects/.
            match fs::metadata(&path) {
                Ok(meta) if meta.len() == out.size => {}
                Ok(meta) => {
                    report.size_mismatches += 1;
                    report.problems.push(format!(
                        "blob {} has size {}, but action record {} records {} for output \
                         `{name}` of {}",
                        path.display(),
                        meta.len(),
                        action.path.display(),
                        out.size,
                        record.stage
                    ));
                }
                Err(_) => {
                    report.missing_blobs += 1;
                    report.problems.push(format!(
                        "missing blob {}: output `{name}` of {} in action record {}",
                        path.display(),
                        record.stage,
                        action.path.display()
                    ));
                }
            }
        }
    }

    let corrupt: Vec<(&Digest, &BlobFile, String)> = blobs
        .files
        .par_iter()
        .filter_map(|(digest, blob)| match hash_file(&blob.path) {
            Ok(actual) if actual == *digest => None,
            Ok(actual) => Some((
                digest,
                blob,
                format!("its bytes hash to {}", actual.short()),
            )),
            // Removed since the scan (a build discarding a corrupt blob): nothing to check.
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => Some((digest, blob, format!("cannot read it: {e}"))),
        })
        .collect();
    for (digest, blob, why) in corrupt {
        report.corrupt_blobs += 1;
        let used = users
            .get(digest)
            .map(|u| format!(" (used as {u})"))
            .unwrap_or_default();
        report
            .problems
            .push(format!("corrupt blob {}: {why}{used}", blob.path.display()));
    }
    Ok(report)
}

/// Sizes and counts of the store, and the hit rate of the last [`RECENT_BUILDS`] builds.
pub fn stats(store: &Store, catalog: &Catalog) -> io::Result<CacheStats> {
    let blobs = scan_blobs(store)?;
    let actions = scan_actions(store)?;
    let builds_dir = store.root().join("builds");
    let mut build_records = 0;
    let mut checkpoints = 0;
    for entry in read_dir(&builds_dir)? {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".json") {
            build_records += 1;
            checkpoints += usize::from(name.starts_with("partial-"));
        }
    }
    let recent: Vec<BuildStats> = catalog.builds
        [catalog.builds.len().saturating_sub(RECENT_BUILDS)..]
        .iter()
        .map(BuildStats::from)
        .collect();
    let ran: usize = recent.iter().map(|b| b.ran).sum();
    let cached: usize = recent.iter().map(|b| b.cached).sum();
    Ok(CacheStats {
        root: store.root().to_path_buf(),
        bytes: tree_bytes(store.root()),
        blobs: blobs.files.len(),
        blob_bytes: blobs.files.values().map(|b| b.size).sum(),
        actions: actions.files.len(),
        action_bytes: actions.files.values().map(|a| a.size).sum(),
        build_records,
        checkpoints,
        catalog_rows: catalog.rows.len(),
        catalog_experiments: catalog.latest().len(),
        builds_recorded: catalog.builds.len(),
        recent_builds: recent,
        hit_rate: hit_rate(ran, cached),
    })
}

impl From<&BuildEntry> for BuildStats {
    fn from(b: &BuildEntry) -> BuildStats {
        BuildStats {
            at: b.at,
            experiments: b.experiments,
            ran: b.ran,
            cached: b.cached,
            failed: b.failed,
            secs: b.secs,
            hit_rate: hit_rate(b.ran, b.cached),
        }
    }
}

fn hit_rate(ran: usize, cached: usize) -> Option<f64> {
    (ran + cached > 0).then(|| cached as f64 / (ran + cached) as f64)
}

impl GcReport {
    /// Most removed entries listed by [`GcReport::lines`].
    pub const LISTED: usize = 20;

    /// A human summary: what was (or would be) freed, what is left, and why not less.
    pub fn lines(&self) -> Vec<String> {
        let verb = if self.dry_run {
            "would remove"
        } else {
            "removed"
        };
        let mut lines = vec![format!(
            "{verb} {} and {}, {} {}",
            plural(self.actions_removed, "action record"),
            plural(self.blobs_removed, "blob"),
            if self.dry_run { "freeing" } else { "freed" },
            human_bytes(self.bytes_freed)
        )];
        lines.push(format!(
            "store: {} -> {}, keeping {} and {} ({} of the current experiments or hft.lock)",
            human_bytes(self.bytes_before),
            human_bytes(self.bytes_left),
            plural(self.actions_kept, "action record"),
            plural(self.blobs_kept, "blob"),
            self.roots_present
        ));
        if self.checkpoint_blobs_kept > 0 {
            lines.push(format!(
                "kept {} of unfinished trainings (resumable checkpoints)",
                plural(self.checkpoint_blobs_kept, "blob")
            ));
        }
        if let (true, Some(budget)) = (self.over_budget, self.max_size) {
            lines.push(format!(
                "the store stays above --max-size {}: gc never removes the entries of the \
                 current experiments, hft.lock or unfinished trainings, nor the catalog and \
                 build records",
                human_bytes(budget)
            ));
        }
        let now = now_unix();
        for entry in self.removed.iter().take(Self::LISTED) {
            let short = &entry.key[..(KEY_SCHEME.len() + 13).min(entry.key.len())];
            let why = match entry.reason {
                GcReason::Unreachable => "unreachable",
                GcReason::LeastRecentlyUsed => "least recently used",
            };
            lines.push(format!(
                "  {verb} {:<12} {short}  {why}, last used {}",
                entry.stage.as_deref().unwrap_or("?"),
                ago(now.saturating_sub(entry.last_used))
            ));
        }
        if self.removed.len() > Self::LISTED {
            lines.push(format!(
                "  … and {} more",
                plural(self.removed.len() - Self::LISTED, "entry")
            ));
        }
        lines
    }
}

impl VerifyReport {
    /// Nothing corrupt, missing, mismatched, unreadable or stray.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// Each problem, then a summary line.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = self.problems.clone();
        let checked = format!(
            "checked {} ({}) and {}",
            plural(self.blobs_checked, "blob"),
            human_bytes(self.blob_bytes_checked),
            plural(self.actions_checked, "action record")
        );
        if self.is_clean() {
            lines.push(format!("{checked}: no problems"));
        } else {
            let counts = [
                (self.corrupt_blobs, "corrupt"),
                (self.missing_blobs, "missing"),
                (self.size_mismatches, "of the wrong size"),
                (self.bad_actions, "unreadable records"),
                (self.stray_files, "stray files"),
            ]
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{n} {what}"))
            .collect::<Vec<_>>()
            .join(", ");
            lines.push(format!(
                "{checked}: {} ({counts})",
                plural(self.problems.len(), "problem")
            ));
        }
        lines
    }
}

impl CacheStats {
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![
            format!("cache {}: {}", self.root.display(), human_bytes(self.bytes)),
            format!(
                "  blobs            {:>8}  {}",
                self.blobs,
                human_bytes(self.blob_bytes)
            ),
            format!(
                "  action records   {:>8}  {}",
                self.actions,
                human_bytes(self.action_bytes)
            ),
            format!(
                "  build records    {:>8}  ({} resumable checkpoints)",
                self.build_records, self.checkpoints
            ),
            format!(
                "  catalog rows     {:>8}  ({})",
                self.catalog_rows,
                plural(self.catalog_experiments, "experiment")
            ),
        ];
        if self.recent_builds.is_empty() {
            lines.push("no builds recorded yet".to_string());
            return lines;
        }
        let ran: usize = self.recent_builds.iter().map(|b| b.ran).sum();
        let cached: usize = self.recent_builds.iter().map(|b| b.cached).sum();
        let failed: usize = self.recent_builds.iter().map(|b| b.failed).sum();
        lines.push(format!(
            "last {}: hit rate {} ({ran} ran, {cached} cached, {failed} failed)",
            plural(self.recent_builds.len(), "build"),
            percent(self.hit_rate)
        ));
        for b in &self.recent_builds {
            let at = chrono::DateTime::from_timestamp(b.at as i64, 0)
                .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_else(|| b.at.to_string());
            lines.push(format!(
                "  {at}  hit rate {:>4}  {} ran, {} cached, {} failed, {}, {}",
                percent(b.hit_rate),
                b.ran,
                b.cached,
                b.failed,
                plural(b.experiments, "experiment"),
                crate::term::duration(b.secs)
            ));
        }
        lines
    }
}

/// `812 B`, `3.4 KiB`, `1.2 GiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn percent(rate: Option<f64>) -> String {
    rate.map(|r| format!("{:.0}%", r * 100.0))
        .unwrap_or_else(|| "-".to_string())
}

fn plural(n: usize, what: &str) -> String {
    match (n, what.strip_suffix('y')) {
        (1, _) => format!("1 {what}"),
        (_, Some(stem)) => format!("{n} {stem}ies"),
        _ => format!("{n} {what}s"),
    }
}

fn ago(secs: u64) -> String {
    match secs {
        0..60 => "just now".to_string(),
        60..3600 => format!("{}m ago", secs / 60),
        3600..86_400 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86_400),
    }
}

/// One stage key's files in the store.
struct Entry<'a> {
    action: Option<&'a ActionFile>,
    audit: Option<&'a AuditFile>,
    bytes: u64,
    last_used: SystemTime,
    /// Blobs it keeps alive: its outputs and the divergent outputs of its audits.
    refs: BTreeSet<Digest>,
}

impl Default for Entry<'_> {
    fn default() -> Self {
        Entry {
            action: None,
            audit: None,
            bytes: 0,
            last_used: UNIX_EPOCH,
            refs: BTreeSet::new(),
        }
    }
}

struct BlobFile {
    path: PathBuf,
    size: u64,
}

struct Blobs {
    files: BTreeMap<Digest, BlobFile>,
    strays: Vec<PathBuf>,
}

struct ActionFile {
    path: PathBuf,
    size: u64,
    mtime: SystemTime,
    record: Result<ActionRecord, String>,
}

struct Actions {
    /// Stage key -> its record file.
    files: BTreeMap<String, ActionFile>,
    strays: Vec<PathBuf>,
}

struct AuditFile {
    path: PathBuf,
    size: u64,
    mtime: SystemTime,
    digests: Vec<Digest>,
}

struct BuildRecords {
    /// Blobs of resumable checkpoints and API snapshots: kept while their record exists.
    pinned: BTreeSet<Digest>,
    /// Stage key -> `builds/audit-<key>.json`.
    audits: BTreeMap<String, AuditFile>,
}

/// `builds/partial-<key>.json` as the train stage writes it; only the blob matters here.
#[derive(Deserialize)]
struct Partial {
    digest: String,
}

fn read_dir(dir: &Path) -> io::Result<Vec<fs::DirEntry>> {
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

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `k1-<64 hex>` for a well-formed stage key.
fn is_key(s: &str) -> bool {
    s.strip_prefix(KEY_SCHEME)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|hex| is_lower_hex(hex, 64))
}

fn scan_blobs(store: &Store) -> io::Result<Blobs> {
    let mut blobs = Blobs {
        files: BTreeMap::new(),
        strays: Vec::new(),
    };
    for shard in read_dir(&store.root().join("objects"))? {
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

fn scan_actions(store: &Store) -> io::Result<Actions> {
    let mut actions = Actions {
        files: BTreeMap::new(),
        strays: Vec::new(),
    };
    for file in read_dir(&store.root().join("actions"))? {
        let name = file.file_name().to_string_lossy().into_owned();
        let path = file.path();
        let Some(key) = name.strip_suffix(".json").filter(|k| is_key(k)) else {
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
        let record = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<ActionRecord>(&bytes).map_err(|e| e.to_string()),
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
            },
        );
    }
    Ok(actions)
}

fn scan_build_records(store: &Store) -> io::Result<BuildRecords> {
    let mut records = BuildRecords {
        pinned: BTreeSet::new(),
        audits: BTreeMap::new(),
    };
    for file in read_dir(&store.root().join("builds"))? {
        let name = file.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".json") else {
            continue;
        };
        let path = file.path();
        // Unreadable records pin nothing: the train stage and audit ignore them too.
        let Ok(bytes) = fs::read(&path) else {
            continue;
        };
        // API snapshots (`builds/snapshot-<request>.json`) are data, not derived: pinned.
        if stem.strip_prefix("partial-").is_some_and(is_key) || stem.starts_with("snapshot-") {
            if let Some(d) = serde_json::from_slice::<Partial>(&bytes)
                .ok()
                .and_then(|p| Digest::from_hex(&p.digest))
            {
                records.pinned.insert(d);
            }
        } else if let Some(key) = stem.strip_prefix("audit-").filter(|k| is_key(k)) {
            let digests = serde_json::from_slice::<BTreeMap<String, Vec<String>>>(&bytes)
                .map(|seen| {
                    seen.values()
                        .flatten()
                        .filter_map(|d| Digest::from_hex(d))
                        .collect()
                })
                .unwrap_or_default();
            let meta = file.metadata().ok();
            records.audits.insert(
                key.to_string(),
                AuditFile {
                    path,
                    size: meta.as_ref().map(|m| m.len()).unwrap_or(0),
                    mtime: meta.and_then(|m| m.modified().ok()).unwrap_or(UNIX_EPOCH),
                    digests,
                },
            );
        }
    }
    Ok(records)
}

/// Bytes of every file under `root`; files vanishing meanwhile (a build's temporary
/// files) are skipped.
fn tree_bytes(root: &Path) -> u64 {
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn remove(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io::Error::new(
            e.kind(),
            format!("cannot remove {}: {e}", path.display()),
        )),
        _ => Ok(()),
    }
}

/// `objects/xx/` directories left empty.
fn remove_empty_shards(store: &Store) -> io::Result<()> {
    for shard in read_dir(&store.root().join("objects"))? {
        let path = shard.path();
        if path.is_dir() && read_dir(&path)?.is_empty() {
            fs::remove_dir(&path).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot remove {}: {e}", path.display()))
            })?;
        }
    }
    Ok(())
}

/// Per-key lock files accumulate one per key ever built. With the store held exclusively
/// no process holds or waits on one (they are taken only through an open Store), and the
/// next build recreates what it needs.
fn remove_stage_locks(store: &Store) -> io::Result<()> {
    for file in read_dir(&store.root().join("locks"))? {
        let name = file.file_name().to_string_lossy().into_owned();
        if name.strip_suffix(".lock").is_some_and(is_key) {
            remove(&file.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{CatalogRow, CatalogStage};
    use crate::store::{OutputRef, StageKey};
    use std::fs::File;
    use std::time::Duration;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_exclusive(dir.path(), Duration::ZERO).unwrap();
        (dir, store)
    }

    /// An action record for `stage` whose outputs are the given blobs.
    fn action(store: &Store, stage: &str, outputs: &[&[u8]]) -> StageKey {
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
                summary: serde_json::Value::Null,
                hft_version: "test".to_string(),
                wall_ms: 1,
                created: 1,
            })
            .unwrap();
        key
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
        CatalogRow {
            id: id.to_string(),
            name: id.to_string(),
            file: format!("experiments/{id}.yaml"),
            built_at: at,
            error: None,
            model: "mlp".to_string(),
            optimizer: "adamw".to_string(),
            config: BTreeMap::new(),
            stages: keys
                .iter()
                .map(|k| CatalogStage {
                    id: "train".to_string(),
                    key: k.0.clone(),
                    outputs: BTreeMap::new(),
                    wall_ms: 0,
                    ran: true,
                })
                .collect(),
            metrics: BTreeMap::new(),
        }
    }

    fn writable(path: &Path) {
        let mut perms = fs::metadata(path).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        fs::set_permissions(path, perms).unwrap();
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
        assert_eq!(report.bytes_left, tree_bytes(store.root()));
        assert!(store.get_action(&kept).is_some(), "a root still hits");
        for shard in fs::read_dir(store.root().join("objects")).unwrap() {
            let shard = shard.unwrap().path();
            assert!(fs::read_dir(&shard).unwrap().next().is_some(), "{shard:?}");
        }
        assert!(verify(&store).unwrap().is_clean());
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
        let before = tree_bytes(store.root());
        let dry = gc(&store, &Catalog::default(), &options).unwrap();
        assert!(dry.dry_run && dry.bytes_freed > 0);
        assert_eq!(tree_bytes(store.root()), before);
        assert!(has_action(&store, &gone) && has(&store, b"gone") && has(&store, b"orphan"));
        assert!(dry.lines()[0].starts_with("would remove 1 action record and 2 blobs"));
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
        let total = tree_bytes(store.root());
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
        assert!(report.lines().iter().any(|l| l.contains("stays above")));
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

    #[test]
    fn gc_refuses_a_shared_store() {
        let dir = tempfile::tempdir().unwrap();
        let shared = Store::open(dir.path()).unwrap();
        let err = gc(&shared, &Catalog::default(), &GcOptions::default()).unwrap_err();
        assert!(err.to_string().contains("open_exclusive"), "{err}");
    }

    #[test]
    fn verify_finds_corrupt_missing_and_stray_files_and_changes_nothing() {
        let (_dir, store) = store();
        action(&store, "features", &[b"fine"]);
        action(&store, "train", &[b"flipped"]);
        action(&store, "evaluate", &[b"lost"]);
        assert!(verify(&store).unwrap().is_clean());

        let flipped = store.blob_path(&Digest::of(b"flipped"));
        writable(&flipped);
        fs::write(&flipped, b"flipper").unwrap();
        fs::remove_file(store.blob_path(&Digest::of(b"lost"))).unwrap();
        fs::write(store.root().join("objects/stray.txt"), b"?").unwrap();
        fs::write(store.root().join("actions/k1-nothex.json"), b"{").unwrap();

        let report = verify(&store).unwrap();
        assert!(!report.is_clean());
        assert_eq!(report.blobs_checked, 2);
        assert_eq!(report.actions_checked, 3);
        assert_eq!(
            (
                report.corrupt_blobs,
                report.missing_blobs,
                report.stray_files
            ),
            (1, 1, 2)
        );
        let text = report.lines().join("\n");
        assert!(
            text.contains(&format!("corrupt blob {}", flipped.display())),
            "{text}"
        );
        assert!(text.contains("output `out0` of train"), "{text}");
        assert!(text.contains("missing blob"), "{text}");
        assert!(flipped.exists(), "verify removes nothing");
    }

    #[test]
    fn verify_reports_unreadable_and_misfiled_records() {
        let (_dir, store) = store();
        let a = action(&store, "features", &[b"a"]);
        let b = action(&store, "features", &[b"b"]);
        fs::copy(store.action_path(&a), store.action_path(&b)).unwrap();
        let bad = StageKey::compute(&[b"bad"]);
        fs::write(store.action_path(&bad), b"{\"key\":").unwrap();
        let report = verify(&store).unwrap();
        assert_eq!(report.bad_actions, 2, "{:?}", report.problems);
        let text = report.problems.join("\n");
        assert!(text.contains(&store.action_path(&bad).display().to_string()));
        assert!(text.contains("another key"));
    }

    #[test]
    fn stats_count_the_store_and_the_hit_rate_of_recent_builds() {
        let (_dir, store) = store();
        action(&store, "features", &[b"x", b"y"]);
        action(&store, "train", &[b"z"]);
        store.put_build_record("some-id", &1).unwrap();
        let build = |ran, cached| BuildEntry {
            at: 1_700_000_000,
            experiments: 1,
            ran,
            cached,
            failed: 0,
            secs: 1.0,
        };
        let mut builds = vec![build(100, 0)];
        builds.extend((0..RECENT_BUILDS).map(|i| build(1, i % 2 * 2)));
        let catalog = Catalog {
            rows: vec![row("a", 1, &[]), row("a", 2, &[]), row("b", 1, &[])],
            builds,
        };
        let s = stats(&store, &catalog).unwrap();
        assert_eq!((s.blobs, s.actions, s.build_records), (3, 2, 1));
        assert_eq!((s.catalog_rows, s.catalog_experiments), (3, 2));
        assert_eq!(s.blob_bytes, 3);
        assert!(s.bytes >= s.blob_bytes + s.action_bytes);
        assert_eq!(s.recent_builds.len(), RECENT_BUILDS);
        assert_eq!(s.builds_recorded, RECENT_BUILDS + 1);
        // 10 ran, 10 cached over the last ten builds; the old 100-stage build is out.
        assert_eq!(s.hit_rate, Some(0.5));
        assert_eq!(s.recent_builds[0].hit_rate, Some(0.0));
        assert!(s.lines().iter().any(|l| l.contains("hit rate 50%")));
        let empty = stats(&store, &Catalog::default()).unwrap();
        assert_eq!(empty.hit_rate, None);
    }

    #[test]
    fn sizes_print_in_binary_units() {
        assert_eq!(human_bytes(812), "812 B");
        assert_eq!(human_bytes(3 << 20), "3.0 MiB");
    }
}
