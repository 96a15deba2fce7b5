//! The no-op memo of a build: its name (what decides a build's outcome besides the files it
//! reads), what a no-op rerun of a fully built build looks like, and answering a rerun
//! from it.

use std::time::Instant;

use super::build::{BuildRequest, Unchanged};
use super::text::{experiment_lines, results_rows};
use crate::graph::exec::{ExperimentJob, ExperimentReport, StageReport, StageState};
use crate::graph::memo;
use crate::store::Store;

/// What decides a build's outcome besides the files it reads: the memo's name.
pub fn invocation_parts(req: &BuildRequest) -> Vec<String> {
    let select = &req.select;
    let mut parts = vec![
        format!("cache={}", req.cache_dir.display()),
        format!("until={:?}", req.until),
        format!("locked={}", req.locked),
    ];
    parts.extend(select.paths.iter().map(|p| format!("path={}", p.display())));
    parts.extend(select.overrides.iter().map(|o| format!("set={o}")));
    parts.extend(select.filters.iter().map(|f| format!("filter={f}")));
    parts
}

/// What a no-op rerun of this (fully built) build looks like.
pub fn noop_memo(
    store: &Store,
    jobs: &[ExperimentJob],
    reports: &[ExperimentReport],
    watched: memo::Watched,
    notes: Vec<String>,
) -> memo::Memo {
    let mut entries = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    // Each report as a no-op rerun will see it: every stage cached. The lines and the
    // results table read neither the plan nor the input facts, so those are not copied
    // (10,000 reports' worth was a twentieth of a build).
    let cached: Vec<ExperimentReport> = reports.iter().map(as_cached).collect();
    for r in reports {
        for s in &r.stages {
            let Some(record) = &s.record else { continue };
            let action = format!("actions/{}.json", record.key.0);
            if seen.insert(action.clone())
                && let Some(size) = store.action_size(&record.key)
            {
                entries.push((action, size));
            }
            for out in record.outputs.values() {
                let path = store.blob_path(&out.digest);
                if let Ok(rel) = path.strip_prefix(store.root()) {
                    let rel = rel.display().to_string();
                    if seen.insert(rel.clone()) {
                        entries.push((rel, out.size));
                    }
                }
            }
        }
    }
    let experiments = cached
        .iter()
        .map(|r| {
            (
                experiment_lines(r, false, false),
                experiment_lines(r, false, true),
            )
        })
        .collect();
    let has_results = reports.iter().any(|r| {
        r.stages
            .iter()
            .any(|s| s.id == "evaluate" || s.id == "walk_forward")
    });
    let results = if has_results {
        let configs: Vec<&crate::config::Experiment> = jobs.iter().map(|j| j.experiment).collect();
        results_rows(&cached, &configs)
    } else {
        Vec::new()
    };
    memo::Memo {
        version: memo::Memo::VERSION,
        watched,
        entries,
        experiments,
        results,
        notes,
        stages: reports.iter().map(|r| r.stages.len()).sum(),
    }
}

/// `r` as a no-op rerun will see it: every stage cached. The lines and the results table
/// read neither the plan nor the input facts, so those are not copied (10,000 reports'
/// worth was a twentieth of a build).
pub fn as_cached(r: &ExperimentReport) -> ExperimentReport {
    ExperimentReport {
        name: r.name.clone(),
        file: r.file.clone(),
        plan: crate::graph::Plan {
            name: r.plan.name.clone(),
            stages: Vec::new(),
            truncated: r.plan.truncated,
            data_errors: Vec::new(),
        },
        stages: r
            .stages
            .iter()
            .map(|s| StageReport {
                id: s.id.clone(),
                kind: s.kind.clone(),
                key: s.key.clone(),
                inputs: Vec::new(),
                state: StageState::Cached,
                record: s.record.clone(),
                pulled: s.pulled,
                waited: s.waited,
            })
            .collect(),
        recorded: r.recorded,
    }
}

/// A no-op build answered from its memo: its hits count as uses for gc's
/// least-recently-used order, and the build is logged in the catalog.
pub fn replay(store: &Store, m: memo::Memo, started: Instant) -> Unchanged {
    // As a hit does: only a record last used over TOUCH_EVERY ago is touched (touching
    // all 30,000 of a large project was most of a no-op build, and left every
    // per-experiment answer of the build memo stale).
    {
        use rayon::prelude::*;
        let now = std::time::SystemTime::now();
        m.entries.par_iter().for_each(|(rel, _)| {
            let Some(key) = rel
                .strip_prefix("actions/")
                .and_then(|f| f.strip_suffix(".json"))
            else {
                return;
            };
            let key = crate::store::StageKey(key.to_string());
            let due = std::fs::metadata(store.action_path(&key))
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age >= crate::store::TOUCH_EVERY);
            if due {
                store.touch_action(&key);
            }
        });
    }
    finish(
        store,
        (m.experiments, m.results, m.notes),
        m.stages,
        started,
    )
}

/// What a no-op build prints: each experiment's (verbose, quiet) lines, the results
/// table, the notes.
pub type ReplayText = (
    Vec<(Vec<String>, Vec<String>)>,
    Vec<Vec<String>>,
    Vec<String>,
);

/// A no-op build's answer, logged in the catalog.
pub fn finish(store: &Store, text: ReplayText, stages: usize, started: Instant) -> Unchanged {
    let (experiments, results, notes) = text;
    let mut warnings = Vec::new();
    let entry = crate::catalog::BuildEntry {
        at: crate::store::now_unix(),
        experiments: experiments.len(),
        ran: 0,
        cached: stages,
        failed: 0,
        secs: started.elapsed().as_secs_f64(),
    };
    if let Err(e) = crate::catalog::append(store, &[], &entry)
        && e.kind() != std::io::ErrorKind::ReadOnlyFilesystem
    {
        warnings.push(format!("cannot update the experiment catalog: {e}"));
    }
    Unchanged {
        experiments,
        results,
        notes,
        stages,
        secs: started.elapsed().as_secs_f64(),
        warnings,
    }
}
