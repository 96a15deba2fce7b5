//! A build's memos: its per-experiment answers (`status_memo`'s format, with each
//! experiment's lines and results row as a no-op rerun prints them) and the no-op memo
//! derived from them; and a build of the stale files as the command line prints it.

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
pub fn split(mut watched: Watched, split: (usize, usize), wrote: Option<PathBuf>) -> Read {
    let rest = watched.split_off(split.1);
    let files = watched.split_off(split.0);
    Read {
        dirs: watched,
        files,
        rest,
        wrote,
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

/// Writes the memos of a build that ended fully built: with `ids.1`, its per-experiment
/// answers (merged with `partial`'s kept ones) and the no-op memo derived from them; else
/// the no-op memo alone. `watched` is what it read (see [`split`]) and its lock. False when
/// the no-op memo could not be derived (the caller drops it).
#[allow(clippy::too_many_arguments)]
pub fn save_build(
    store: &Store,
    ids: (&str, Option<&str>),
    jobs: &[ExperimentJob],
    reports: &[ExperimentReport],
    watched: (Watched, (usize, usize), &Path),
    notes: Vec<String>,
    started_ns: i128,
    partial: Option<&Partial>,
) -> bool {
    let (noop_id, answers_id) = ids;
    let (watched, selection, lock) = watched;
    let Some(answers_id) = answers_id else {
        memo::save(
            store,
            noop_id,
            &noop::noop_memo(store, jobs, reports, watched, notes),
        );
        return true;
    };
    let read = split(watched, selection, Some(lock.to_path_buf()));
    let describe = |i: usize| describe(&reports[i], jobs[i].experiment);
    let answers = status_memo::save(
        store, answers_id, reports, &describe, read, notes, started_ns, partial,
    );
    match answers.and_then(|m| m.to_noop(header())) {
        Some(noop) => {
            memo::save(store, noop_id, &noop);
            true
        }
        None => false,
    }
}

/// A build of the stale files, with every other experiment answered from the memo.
#[derive(Debug)]
pub struct PartialBuilt {
    /// The kept experiments' lines: (verbose, quiet).
    pub kept: Vec<(Vec<String>, Vec<String>)>,
    pub kept_stages: usize,
    /// The results table over every experiment, header first (empty when none evaluates).
    pub results: Vec<Vec<String>>,
    pub built: Built,
    pub secs: f64,
}

impl PartialBuilt {
    pub fn new(p: &Partial, built: Built, started: Instant) -> PartialBuilt {
        let configs: Vec<&crate::config::Experiment> = built.experiments.iter().collect();
        let rows = results_rows(&built.reports, &configs);
        let planned: Vec<(PathBuf, Vec<String>, bool)> = built
            .reports
            .iter()
            .zip(rows.into_iter().skip(1))
            .map(|(r, row)| (r.file.clone(), row, evaluates(r)))
            .collect();
        let line = |e: &status_memo::Entry, i: usize| e.lines.get(i).cloned().unwrap_or_default();
        PartialBuilt {
            kept: p.kept().map(|e| (line(e, 0), line(e, 1))).collect(),
            kept_stages: p.kept().map(|e| e.stages).sum(),
            results: p.results(header(), &planned),
            built,
            secs: started.elapsed().as_secs_f64(),
        }
    }
}
