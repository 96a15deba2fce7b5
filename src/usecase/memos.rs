//! A build's memo: its per-experiment answers (`status_memo`'s format, with each
//! experiment's lines and results row as a no-op rerun prints them), which answer a no-op
//! build whole and a build after an edit in part; and a build of the stale files as the
//! command line prints it. Builds with `--locked`, `--until`, a remote or Slurm keep the
//! plain no-op memo (`graph/memo.rs`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::build::Built;
use super::noop;
use super::status_memo::{self, Partial, Read};
use super::text::{experiment_lines, results_rows};
use crate::graph::exec::{ExperimentJob, ExperimentReport};
use crate::graph::memo::{self, Watched};
use crate::store::Store;

/// `watched` as the memos keep it: the selection's folders up to `split.0`, its files up to
/// `split.1`, the rest after (of which this run wrote `wrote`).
pub fn split(
    mut watched: Watched,
    split: (usize, usize),
    wrote: Option<PathBuf>,
    blob_dirs: status_memo::BlobDirs,
) -> Read {
    let rest = watched.split_off(split.1);
    let files = watched.split_off(split.0);
    Read {
        dirs: watched,
        files,
        rest,
        wrote,
        blob_dirs,
    }
}

/// The results table's header.
fn header() -> Vec<String> {
    results_rows(&[], &[]).swap_remove(0)
}

/// Whether `r` has a stage the results table reports.
fn evaluates(r: &ExperimentReport) -> bool {
    r.stages
        .iter()
        .any(|s| s.id == "evaluate" || s.id == "walk_forward")
}

/// An experiment's answer as a no-op rerun prints it: its lines (verbose, quiet), its row
/// of the results table and whether it evaluates.
fn describe(
    r: &ExperimentReport,
    e: &crate::config::Experiment,
) -> (Vec<Vec<String>>, Vec<String>, bool) {
    let cached = noop::as_cached(r);
    let lines = vec![
        experiment_lines(&cached, false, false),
        experiment_lines(&cached, false, true),
    ];
    let row = results_rows(std::slice::from_ref(&cached), &[e])
        .pop()
        .unwrap_or_default();
    (lines, row, evaluates(r))
}

/// Writes the memo of a build that ended fully built: with `ids.1`, its per-experiment
/// answers (merged with `partial`'s kept ones), and the plain no-op memo `ids.0` is dropped
/// (answering from it would cost a parse of it first); else the plain no-op memo.
/// `watched` is what it read (see [`split`]) and its lock.
#[allow(clippy::too_many_arguments)]
pub fn save_build(
    store: &Store,
    ids: (&str, Option<&str>),
    jobs: &[ExperimentJob],
    reports: &[ExperimentReport],
    watched: (Watched, (usize, usize), &Path, status_memo::BlobDirs),
    notes: Vec<String>,
    started_ns: i128,
    partial: Option<&Partial>,
) {
    let (noop_id, answers_id) = ids;
    let (watched, selection, lock, blob_dirs) = watched;
    let Some(answers_id) = answers_id else {
        memo::save(
            store,
            noop_id,
            &noop::noop_memo(store, jobs, reports, watched, notes),
        );
        return;
    };
    memo::forget(store, noop_id);
    let read = split(watched, selection, Some(lock.to_path_buf()), blob_dirs);
    let describe = |i: usize| describe(&reports[i], jobs[i].experiment);
    let answers = status_memo::save(
        store, answers_id, reports, &describe, read, notes, started_ns, partial,
    );
    drop_aside(answers);
}

/// A kept experiment's lines as a build prints them: (verbose, quiet).
fn build_lines(e: &status_memo::Entry) -> (Vec<String>, Vec<String>) {
    let (verbose, quiet) = build_lines_of(e);
    (verbose.to_vec(), quiet.to_vec())
}

/// [`build_lines`], borrowed.
fn build_lines_of(e: &status_memo::Entry) -> (&[String], &[String]) {
    let line = |i: usize| e.lines.get(i).map_or(&[][..], Vec::as_slice);
    (line(0), line(1))
}

/// A build where nothing changed, answered from its memo.
pub fn replay(
    store: &Store,
    m: status_memo::StatusMemo,
    started: Instant,
) -> super::build::Unchanged {
    let experiments = m.experiments.iter().map(build_lines).collect();
    let mut results = vec![header()];
    results.extend(m.experiments.iter().map(|e| e.row.to_vec()));
    if !m.experiments.iter().any(|e| e.evaluates) {
        results.clear();
    }
    let (notes, stages) = (m.notes.clone(), m.stages());
    drop_aside(m);
    noop::finish(store, (experiments, results, notes), stages, started)
}

/// Drops `value` on a thread of its own: freeing 10,000 experiments' answers one
/// allocation at a time was a tenth of a build after an edit, and the process may well
/// exit first.
pub fn drop_aside<T: Send + 'static>(value: T) {
    std::thread::spawn(move || drop(value));
}

/// A build of the stale files, with every other experiment answered from the memo.
///
/// It keeps the memo's answers and lends the kept ones out when printed: copying 10,000
/// experiments' lines and rows was a tenth of a build after an edit.
#[derive(Debug)]
pub struct PartialBuilt {
    partial: Partial,
    /// The results table's header.
    header: Vec<String>,
    /// The stale files' experiments: (file, results row, evaluates).
    planned: Vec<(PathBuf, Vec<String>, bool)>,
    pub built: Built,
    pub secs: f64,
}

impl PartialBuilt {
    pub fn new(partial: Partial, built: Built, started: Instant) -> PartialBuilt {
        let configs: Vec<&crate::config::Experiment> = built.experiments.iter().collect();
        let rows = results_rows(&built.reports, &configs);
        let planned: Vec<(PathBuf, Vec<String>, bool)> = built
            .reports
            .iter()
            .zip(rows.into_iter().skip(1))
            .map(|(r, row)| (r.file.clone(), row, evaluates(r)))
            .collect();
        PartialBuilt {
            partial,
            header: header(),
            planned,
            built,
            secs: started.elapsed().as_secs_f64(),
        }
    }

    /// The kept experiments' lines as a build prints them: (verbose, quiet).
    pub fn kept(&self) -> impl Iterator<Item = (&[String], &[String])> {
        self.partial.kept().map(build_lines_of)
    }

    /// Stages of the kept experiments.
    pub fn kept_stages(&self) -> usize {
        self.partial.kept().map(|e| e.stages).sum()
    }

    /// The results table over every experiment, header first (empty when none evaluates).
    pub fn results(&self) -> Vec<&[String]> {
        self.partial.results(&self.header, &self.planned)
    }
}
