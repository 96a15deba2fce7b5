//! The status memo: `hft status` answered without planning 10,000 experiments, reading
//! 30,000 action records or checking their seals, when little or nothing changed. A build
//! keeps one too (its lines and results row per experiment): after an edit it builds only
//! the stale files and answers every other experiment from it (`usecase/build.rs`).
//!
//! A status that found every stage cached (no warning, no damaged record) writes
//! `memo/<invocation>.json` (the no-op memo's name with `status` added): the paths every
//! answer depends on (templates, data files and folders: any change there plans in full),
//! the folders searched and the experiment files found in them, each action record it read
//! with its full stat fingerprint (an edit that keeps the size changes its ctime) and its
//! blobs' sizes, and per experiment: its file, the records it hit and the lines it printed.
//!
//! The next status stats those. If all are unchanged it prints the lines. If only some
//! experiments' files or records changed (an edited experiment, a build that ran one, a
//! removed blob), only their files are planned again ([`Partial`]); every other experiment
//! prints its memo lines, and the memo is rewritten from both. A record last used over an
//! hour ago is planned again too (a status's read refreshes gc's order of use). Anything
//! else (a template, a data file, an added or removed experiment file, a search) plans in
//! full.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::text::{experiment_lines, status_lines};
use crate::graph::exec::{ExperimentReport, StageState};
use crate::graph::memo::{self, Watched};
use crate::store::{Fingerprint, StageKey, Store};

const VERSION: u32 = 3;

/// The store's blob folders (`objects/xx`, relative to its root) with their fingerprints
/// from before a run checked any blob.
pub type BlobDirs = Vec<(String, Option<Fingerprint>)>;

/// The fingerprints of the store's blob folders, taken before a run checks any blob.
///
/// Why: a folder unchanged since then vouches for every blob in it that the run found, as
/// the run found it (a blob removed, added or renamed changes its folder's mtime and ctime;
/// blobs are read-only files, so a size changed in place takes a deliberate write), so the
/// next check stats only the blobs of folders that changed: 60,000 `stat`s were a third of
/// a 10,000-experiment status. A folder changed within [`memo::RACY_WINDOW_MS`] of now is
/// left unknown (`None`): a second change in the same tick would not show.
pub fn blob_dirs(store: &Store) -> BlobDirs {
    use rayon::prelude::*;
    let now = now_ns();
    store
        .blob_folders()
        .into_par_iter()
        .map(|folder| {
            let fp = memo::fingerprint(&store.root().join(&folder))
                .filter(|fp| !memo::is_racy(&[(PathBuf::new(), Some(fp.clone()))], now));
            (folder.display().to_string(), fp)
        })
        .collect()
}

/// An action record an answer hit.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    key: String,
    fingerprint: Option<Fingerprint>,
    /// Its outputs' blobs (relative to the store root) and their sizes.
    blobs: Vec<(String, u64)>,
}

/// One experiment's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    file: PathBuf,
    name: String,
    /// Indices into [`StatusMemo::records`].
    records: Vec<usize>,
    pub stages: usize,
    /// Its lines: status's default, with -v and with -q; a build's, and with -q. Shared
    /// (as are the row and the records): a memo rewritten after an edit carries 10,000 kept
    /// answers over, and deep copies of them were a tenth of that build.
    pub lines: Arc<Vec<Vec<String>>>,
    /// A build's: its row of the results table, and whether it evaluates.
    #[serde(default)]
    pub row: Arc<Vec<String>>,
    #[serde(default)]
    pub evaluates: bool,
}

/// An experiment's status lines (default, -v, -q).
pub fn status_entry_lines(r: &ExperimentReport) -> Vec<Vec<String>> {
    vec![
        status_lines(r, false),
        status_lines(r, true),
        experiment_lines(r, true, true),
    ]
}

#[derive(Debug, Serialize, Deserialize)]
pub struct StatusMemo {
    version: u32,
    /// Paths every answer may depend on (templates, data files and folders).
    watched: Watched,
    /// The folders searched for experiment files.
    dirs: Watched,
    /// The experiment files found, in order, fingerprinted before they were read.
    files: Watched,
    records: Vec<Arc<Record>>,
    /// The answers of every experiment whose stages were all up to date.
    pub experiments: Vec<Entry>,
    /// Files with an experiment that was not up to date: planned every time (to say why).
    replan: Vec<PathBuf>,
    /// Lines after the experiments (each search's line).
    pub notes: Vec<String>,
    /// The blob folders as the run that wrote this memo began (see [`blob_dirs`]).
    blob_dirs: BlobDirs,
}

impl StatusMemo {
    /// Stages, all up to date.
    pub fn stages(&self) -> usize {
        self.experiments.iter().map(|e| e.stages).sum()
    }
}

/// What the memo says about this status.
#[derive(Debug)]
pub enum Checked {
    /// Nothing changed: the memo is the answer.
    Unchanged(StatusMemo),
    /// Some experiments changed: plan their files again.
    Partial(Partial),
}

/// A memo some of whose experiments still hold.
#[derive(Debug)]
pub struct Partial {
    id: String,
    memo: StatusMemo,
    /// Per memo experiment: whether its answer still holds.
    kept: Vec<bool>,
    /// The folders and experiment files as this status found them.
    dirs: Watched,
    files: Watched,
    /// The files to plan again, in selection order.
    pub stale: Vec<PathBuf>,
    /// A build's no-op memo, written beside this one.
    pub noop_id: Option<String>,
    /// When this status started (fingerprints taken since are racy).
    started_ns: i128,
    /// The blob folders as this check found them, before it checked any blob.
    blob_dirs: BlobDirs,
}

impl Partial {
    /// The experiments answered from the memo.
    pub fn kept(&self) -> impl Iterator<Item = &Entry> {
        self.memo
            .experiments
            .iter()
            .zip(&self.kept)
            .filter(|(_, k)| **k)
            .map(|(e, _)| e)
    }

    /// Whether experiments of these names (in the stale files) can stand beside the kept
    /// ones: no name is used twice (planning in full would reject that).
    pub fn fits<'a>(&self, mut names: impl Iterator<Item = &'a str>) -> bool {
        let kept: HashSet<&str> = self.kept().map(|e| e.name.as_str()).collect();
        names.all(|n| !kept.contains(n))
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The results table over every experiment, in selection order, given the stale files'
    /// (file, row, evaluates); empty when none evaluates.
    pub fn results<'a>(
        &'a self,
        header: &'a [String],
        planned: &'a [(PathBuf, Vec<String>, bool)],
    ) -> Vec<&'a [String]> {
        // Each row placed by its file's position in the listing, then sorted (stably: a
        // file's kept experiments, then its planned ones). Keyed by the paths' bytes (all
        // from this memo's listing): hashing a `Path` walks its components, and a map of
        // one list per file was a third of this table's cost at 10,000 experiments.
        let mut position: HashMap<&OsStr, usize> = HashMap::with_capacity(self.files.len());
        for (i, (file, _)) in self.files.iter().enumerate() {
            // A file listed twice keeps its first place, as the full table does.
            position.entry(file.as_os_str()).or_insert(i);
        }
        let kept = self
            .kept()
            .map(|e| (&e.file, e.row.as_slice(), e.evaluates));
        let stale = planned.iter().map(|(f, row, ev)| (f, row.as_slice(), *ev));
        let mut placed: Vec<(usize, &[String], bool)> = kept
            .chain(stale)
            .filter_map(|(file, row, ev)| Some((*position.get(file.as_os_str())?, row, ev)))
            .collect();
        placed.sort_by_key(|&(i, _, _)| i);
        let any = placed.iter().any(|&(_, _, evaluates)| evaluates);
        let mut rows = Vec::with_capacity(placed.len() + 1);
        rows.push(header);
        rows.extend(placed.into_iter().map(|(_, row, _)| row));
        if any { rows } else { Vec::new() }
    }
}

/// The memo's id for a status (`kind` "status") or a build ("build") of `parts` (the no-op
/// memo's invocation parts).
pub fn id(parts: &[String], kind: &str) -> String {
    let mut parts = parts.to_vec();
    parts.push(format!("{kind}-memo={VERSION}"));
    memo::invocation_id(&parts)
}

fn path(store: &Store, id: &str) -> PathBuf {
    store.root().join("memo").join(format!("{id}.json"))
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

/// What the memo of the status of `paths` still answers (see the module docs). A full hit
/// counts as a use of each record for gc (as a status's read does): a record last used over
/// an hour ago is touched, which leaves those experiments to be planned next time.
pub fn check(store: &Store, id: &str, paths: &[PathBuf]) -> Option<Checked> {
    use rayon::prelude::*;
    let started_ns = memo::now_ns();
    let blob_dirs = blob_dirs(store);
    let bytes = std::fs::read(path(store, id)).ok()?;
    let m: StatusMemo = serde_json::from_slice(&bytes).ok()?;
    if m.version != VERSION || !memo::unchanged(store, &m.watched, &[]) {
        return None;
    }
    // A folder that changed may hold other files; the same files is all that matters.
    let dirs_same = m.dirs.par_iter().all(|(p, fp)| memo::fingerprint(p) == *fp);
    let (dirs, files) = if dirs_same {
        let files = m
            .files
            .par_iter()
            .map(|(p, _)| (p.clone(), memo::fingerprint(p)))
            .collect();
        (m.dirs.clone(), files)
    } else {
        super::select::watch_selection_parts(paths)
    };
    if files.len() != m.files.len() || files.iter().zip(&m.files).any(|(a, b)| a.0 != b.0) {
        return None;
    }
    let changed: HashSet<&Path> = files
        .iter()
        .zip(&m.files)
        .filter(|(a, b)| a.1 != b.1)
        .map(|(a, _)| a.0.as_path())
        .collect();
    let every = crate::store::TOUCH_EVERY.as_nanos() as i128;
    let now = now_ns();
    // Blob folders unchanged since the memo's run began: their blobs are as it found them.
    let now_dirs: HashMap<&str, &Fingerprint> = blob_dirs
        .iter()
        .filter_map(|(dir, fp)| Some((dir.as_str(), fp.as_ref()?)))
        .collect();
    let same_dirs: HashSet<&str> = m
        .blob_dirs
        .iter()
        .filter(|(dir, fp)| fp.is_some() && now_dirs.get(dir.as_str()).copied() == fp.as_ref())
        .map(|(dir, _)| dir.as_str())
        .collect();
    // A blob's `rel` is its path relative to the root, as `blob_folders` lists its folder.
    let blob_holds = |rel: &str, size: u64| {
        Path::new(rel)
            .parent()
            .and_then(Path::to_str)
            .is_some_and(|dir| same_dirs.contains(dir))
            || std::fs::metadata(store.root().join(rel)).is_ok_and(|m| m.len() == size)
    };
    // Per record: (unchanged, due for gc's touch).
    let state: Vec<(bool, bool)> = m
        .records
        .par_iter()
        .map(|r| {
            let fp = memo::fingerprint(&store.action_path(&StageKey(r.key.clone())));
            let same =
                fp == r.fingerprint && r.blobs.iter().all(|(rel, size)| blob_holds(rel, *size));
            let due = fp.is_some_and(|fp| now - fp.mtime_ns >= every);
            (same, due)
        })
        .collect();
    let holds = |e: &Entry, due_ok: bool| {
        !changed.contains(e.file.as_path())
            && e.records.iter().all(|&i| {
                state
                    .get(i)
                    .is_some_and(|&(same, due)| same && (due_ok || !due))
            })
    };
    if changed.is_empty() && m.replan.is_empty() && m.experiments.iter().all(|e| holds(e, true)) {
        for (r, (_, due)) in m.records.iter().zip(&state) {
            if *due {
                store.touch_action(&StageKey(r.key.clone()));
            }
        }
        return Some(Checked::Unchanged(m));
    }
    if !m.notes.is_empty() {
        return None;
    }
    let kept: Vec<bool> = m.experiments.iter().map(|e| holds(e, false)).collect();
    let mut stale_files: HashSet<&Path> = changed;
    stale_files.extend(m.replan.iter().map(PathBuf::as_path));
    for (e, k) in m.experiments.iter().zip(&kept) {
        if !k {
            stale_files.insert(e.file.as_path());
        }
    }
    // Planning most of the files again is no faster than planning all of them.
    if stale_files.len() * 2 > files.len().max(1) {
        return None;
    }
    let mut seen = HashSet::new();
    let stale = files
        .iter()
        .filter(|(p, _)| stale_files.contains(p.as_path()) && seen.insert(p.clone()))
        .map(|(p, _)| p.clone())
        .collect();
    Some(Checked::Partial(Partial {
        id: id.to_string(),
        memo: m,
        kept,
        dirs,
        files,
        stale,
        noop_id: None,
        started_ns,
        blob_dirs,
    }))
}

/// What a status or build read besides the store, as [`save`] keeps it.
pub struct Read {
    /// The folders searched and the experiment files found (`watch_selection_parts`).
    pub dirs: Watched,
    pub files: Watched,
    /// Everything else: templates, data files and folders, a build's lock.
    pub rest: Watched,
    /// What this run wrote itself among `rest` (a build's lock): its fingerprint replaces
    /// the base memo's instead of proving that it changed under the run.
    pub wrote: Option<PathBuf>,
    /// The blob folders as the run began ([`blob_dirs`]).
    pub blob_dirs: BlobDirs,
}

/// An experiment's entry as [`save`] writes it: (its lines, its results row, whether it
/// evaluates), for report `i`.
pub type Describe<'a> = &'a (dyn Fn(usize) -> (Vec<Vec<String>>, Vec<String>, bool) + Sync);

/// Writes the memo of a status of `reports`, given what it read; with `base`, `reports` are
/// the stale files' experiments and the kept ones come from `base`. Nothing when a search's
/// line would have to be merged, a path changed while it was read, or a fingerprint is too
/// recent to trust (see [`memo::is_racy`]): then the old memo is dropped, or with `base`
/// kept (it still answers only what it answered).
#[allow(clippy::too_many_arguments)]
pub fn save(
    store: &Store,
    id: &str,
    reports: &[ExperimentReport],
    describe: Describe,
    read: Read,
    notes: Vec<String>,
    started_ns: i128,
    base: Option<&Partial>,
) -> Option<StatusMemo> {
    let Some(m) = assemble(store, reports, describe, read, notes, started_ns, base) else {
        if base.is_none() {
            memo::forget(store, id);
        }
        return None;
    };
    let written = std::fs::create_dir_all(store.root().join("memo")).and_then(|_| {
        let bytes = serde_json::to_vec(&m).map_err(std::io::Error::other)?;
        store.write_disposable(&path(store, id), &bytes)
    });
    if written.is_err() {
        memo::forget(store, id);
        return None;
    }
    Some(m)
}

/// The memo [`save`] writes, or `None` when it must not be written.
fn assemble(
    store: &Store,
    reports: &[ExperimentReport],
    describe: Describe,
    read: Read,
    notes: Vec<String>,
    started_ns: i128,
    base: Option<&Partial>,
) -> Option<StatusMemo> {
    let wrote = read.wrote;
    let (mut dirs, mut files, mut watched) = (read.dirs, read.files, read.rest);
    let mut blob_dirs = read.blob_dirs;
    let mut racy_since = started_ns;
    if let Some(p) = base {
        if !notes.is_empty() {
            return None;
        }
        // The kept answers stand on the base's paths: one that reads otherwise now
        // changed while this status ran.
        let old: BTreeMap<&PathBuf, &Option<Fingerprint>> = p
            .memo
            .watched
            .iter()
            .filter(|(path, _)| wrote.as_ref() != Some(path))
            .map(|(p, fp)| (p, fp))
            .collect();
        if watched
            .iter()
            .any(|(path, fp)| old.get(path).is_some_and(|o| *o != fp))
        {
            return None;
        }
        let new: HashSet<PathBuf> = watched.iter().map(|(p, _)| p.clone()).collect();
        watched.extend(
            p.memo
                .watched
                .iter()
                .filter(|(path, _)| !new.contains(path))
                .cloned(),
        );
        dirs = p.dirs.clone();
        files = p.files.clone();
        racy_since = p.started_ns;
        // Taken before the kept answers' blobs were checked, and before this run's.
        blob_dirs = p.blob_dirs.clone();
    }
    // What this run wrote itself is as fresh as it is: its fingerprint was taken after.
    let read: Watched = watched
        .iter()
        .filter(|(p, _)| wrote.as_ref() != Some(p))
        .cloned()
        .collect();
    if memo::is_racy(&read, racy_since) {
        return None;
    }
    // A file or folder changed within a timestamp tick of this run could change again
    // unseen: such a file is planned again next time, and such a folder re-listed.
    let racy =
        |fp: &Option<Fingerprint>| memo::is_racy(&[(PathBuf::new(), fp.clone())], racy_since);
    for (_, fp) in &mut dirs {
        if racy(fp) {
            *fp = None;
        }
    }
    let racy_files: HashSet<PathBuf> = files
        .iter()
        .filter(|(_, fp)| racy(fp))
        .map(|(p, _)| p.clone())
        .collect();
    let mut records: Vec<Arc<Record>> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut by_file: HashMap<PathBuf, Vec<Entry>> = HashMap::new();
    if let Some(p) = base {
        for e in p.kept() {
            let mut e = e.clone();
            for i in &mut e.records {
                let r = &p.memo.records[*i];
                *i = *index.entry(r.key.clone()).or_insert_with(|| {
                    records.push(r.clone());
                    records.len() - 1
                });
            }
            by_file.entry(e.file.clone()).or_default().push(e);
        }
    }
    // A file with a stage to run is planned again each time, all its experiments with it.
    let mut replan: Vec<PathBuf> = Vec::new();
    let mut replanned: HashSet<&Path> = HashSet::new();
    for f in files
        .iter()
        .map(|(p, _)| p)
        .filter(|p| racy_files.contains(*p))
    {
        if replanned.insert(f) {
            replan.push(f.clone());
        }
    }
    for r in reports {
        let cached = r.stages.iter().all(|s| {
            s.record.is_some() && matches!(s.state, StageState::Cached | StageState::Ran { .. })
        });
        if !cached && replanned.insert(&r.file) {
            replan.push(r.file.clone());
        }
    }
    for (n, r) in reports.iter().enumerate() {
        if replanned.contains(r.file.as_path()) {
            continue;
        }
        let mut ids = Vec::new();
        for s in &r.stages {
            let Some(record) = &s.record else { continue };
            let i = *index.entry(record.key.0.clone()).or_insert_with(|| {
                let blobs = record
                    .outputs
                    .values()
                    .filter_map(|out| {
                        let path = store.blob_path(&out.digest);
                        let rel = path.strip_prefix(store.root()).ok()?;
                        Some((rel.display().to_string(), out.size))
                    })
                    .collect();
                records.push(Arc::new(Record {
                    key: record.key.0.clone(),
                    fingerprint: memo::fingerprint(&store.action_path(&record.key)),
                    blobs,
                }));
                records.len() - 1
            });
            ids.push(i);
        }
        let (lines, row, evaluates) = describe(n);
        by_file.entry(r.file.clone()).or_default().push(Entry {
            file: r.file.clone(),
            name: r.name.clone(),
            records: ids,
            stages: r.stages.len(),
            lines: Arc::new(lines),
            row: Arc::new(row),
            evaluates,
        });
    }
    // Selection order: each file's experiments in the order its plan gave them.
    let mut experiments = Vec::new();
    for (path, _) in &files {
        experiments.extend(by_file.remove(path).unwrap_or_default());
    }
    let listed: HashSet<&PathBuf> = files.iter().map(|(p, _)| p).collect();
    if !by_file.is_empty() || replan.iter().any(|f| !listed.contains(f)) {
        return None;
    }
    Some(StatusMemo {
        version: VERSION,
        watched,
        dirs,
        files,
        records,
        experiments,
        replan,
        notes,
        blob_dirs,
    })
}

/// A status answered from its memo.
#[derive(Debug)]
pub struct StatusUnchanged {
    pub memo: StatusMemo,
    pub secs: f64,
}

impl StatusUnchanged {
    pub fn new(memo: StatusMemo, started: Instant) -> StatusUnchanged {
        StatusUnchanged {
            memo,
            secs: started.elapsed().as_secs_f64(),
        }
    }
}

/// A status that planned the stale files again and took every other experiment's answer
/// from the memo.
#[derive(Debug)]
pub struct StatusPartial {
    /// The memo's answers, the kept ones lent out by [`StatusPartial::kept`] (not copied).
    pub partial: Partial,
    pub built: super::build::Built,
    pub secs: f64,
}

impl StatusPartial {
    /// The experiments answered from the memo.
    pub fn kept(&self) -> impl Iterator<Item = &Entry> {
        self.partial.kept()
    }
}
