//! The text of a build's report: the lines of each experiment and the results table. It
//! lives beside the use case because the no-op memo stores this text and replays it when
//! nothing changed; the command line prints the same lines for a build that ran.

use crate::graph::exec::{ExperimentReport, StageState};
use crate::term::{self, table};

/// The lines printed for one experiment once it is done.
pub fn experiment_lines(r: &ExperimentReport, dry_run: bool, quiet: bool) -> Vec<String> {
    let mut lines = Vec::new();
    if quiet {
        let state = match r.error() {
            Some(e) => format!("FAILED: {e}"),
            None => {
                let ran = r
                    .stages
                    .iter()
                    .filter(|s| matches!(s.state, StageState::Ran { .. }))
                    .count();
                let stale = r
                    .stages
                    .iter()
                    .filter(|s| matches!(s.state, StageState::Stale { .. }))
                    .count();
                if dry_run {
                    format!("{stale} stale of {}", r.stages.len())
                } else {
                    format!("{ran} ran of {}", r.stages.len())
                }
            }
        };
        lines.push(format!("{} ({}): {state}", r.name, r.file.display()));
        return lines;
    }
    lines.push(format!("{} ({})", r.name, r.file.display()));
    let width = r.stages.iter().map(|s| s.id.len()).max().unwrap_or(0);
    for s in &r.stages {
        let key = s
            .key
            .as_ref()
            .map(|k| k.short().to_string())
            .unwrap_or_default();
        let what = match &s.state {
            StageState::Cached if s.pulled => format!("pulled   {key}"),
            StageState::Cached => format!("cached   {key}"),
            StageState::Ran { secs } => {
                let job = s.key.as_ref().and_then(crate::graph::slurm::job_of);
                let job = job
                    .map(|id| format!("  (slurm job {id})"))
                    .unwrap_or_default();
                // Time spent waiting (for cores, the RNG, a Slurm queue) is not the
                // stage's work.
                let waited = if s.waited >= 0.05 {
                    format!(" (waited {})", term::duration(s.waited))
                } else {
                    String::new()
                };
                // A training that continued from a shorter one ran only the epochs after it.
                let continued = s
                    .record
                    .as_ref()
                    .and_then(|r| r.summary["continued_from_epoch"].as_u64())
                    .map(|epoch| format!(" (continued from epoch {epoch})"))
                    .unwrap_or_default();
                format!(
                    "ran      {key}  {}{continued}{waited}{job}",
                    term::duration(*secs)
                )
            }
            StageState::Stale { reason } => format!("stale    {reason}"),
            StageState::Skipped => "skipped  (an earlier stage failed)".to_string(),
            // A long message (a Slurm log's tail) is printed whole once, after the stages.
            StageState::Failed(e) => {
                let text = e.to_string();
                match text.split_once('\n') {
                    Some((first, _)) => format!("FAILED   {first} (the rest below)"),
                    None => format!("FAILED   {text}"),
                }
            }
        };
        let what = if dry_run && matches!(s.state, StageState::Cached) {
            format!("fresh    {key}")
        } else {
            what
        };
        lines.push(format!("  {:width$}  {what}", s.id));
    }
    lines
}

/// The lines `hft status` prints for one experiment: what would run and why; the stages
/// that are up to date only with `verbose` (they are most of a big project's lines).
pub fn status_lines(r: &ExperimentReport, verbose: bool) -> Vec<String> {
    let all = experiment_lines(r, true, false);
    if verbose {
        return all;
    }
    let fresh = r
        .stages
        .iter()
        .filter(|s| matches!(s.state, StageState::Cached))
        .count();
    if fresh == r.stages.len() {
        return vec![format!(
            "{} ({}): up to date ({} stages)",
            r.name,
            r.file.display(),
            fresh
        )];
    }
    let mut lines: Vec<String> = all
        .into_iter()
        .enumerate()
        .filter(|(i, _)| {
            // Line 0 is the header; line i + 1 is stage i.
            *i == 0
                || !matches!(
                    r.stages.get(i - 1).map(|s| &s.state),
                    Some(StageState::Cached)
                )
        })
        .map(|(_, l)| l)
        .collect();
    if fresh > 0 {
        lines.push(format!("  ({fresh} up to date; -v lists them)"));
    }
    lines
}

/// The table printed after a build: one row per experiment with its headline results.
pub fn results_table(
    reports: &[ExperimentReport],
    experiments: &[&crate::config::Experiment],
) -> Vec<String> {
    table(&results_rows(reports, experiments))
}

/// The cells of [`results_table`], header first.
pub fn results_rows(
    reports: &[ExperimentReport],
    experiments: &[&crate::config::Experiment],
) -> Vec<Vec<String>> {
    let mut rows = vec![
        [
            "experiment",
            "model",
            "optimizer",
            "ran/cached",
            "val loss (sel.)",
            "skill",
            "dir acc",
            "sharpe",
            "buy&hold",
        ]
        .map(str::to_string)
        .to_vec(),
    ];
    for (r, e) in reports.iter().zip(experiments) {
        let count = |f: fn(&StageState) -> bool| r.stages.iter().filter(|s| f(&s.state)).count();
        let ran = count(|s| matches!(s, StageState::Ran { .. }));
        let cached = count(|s| matches!(s, StageState::Cached));
        let summary = |stage: &str| {
            r.stages
                .iter()
                .find(|s| s.id == stage)
                .and_then(|s| s.record.as_ref())
                .map(|rec| rec.summary.clone())
                .unwrap_or_default()
        };
        // With walk-forward, the folds' out-of-sample figures and the latest fold's training
        // take the place of the one split's.
        let walk_forward = summary("walk_forward");
        let (metrics, train) = if walk_forward.is_null() {
            (summary("evaluate"), summary("train"))
        } else {
            let latest = r
                .stages
                .iter()
                .rev()
                .find(|s| s.id.starts_with("fold_train:"))
                .and_then(|s| s.record.as_ref())
                .map(|rec| rec.summary.clone())
                .unwrap_or_default();
            (walk_forward, latest)
        };
        let num = |v: &serde_json::Value, fmt: fn(f64) -> String| {
            v.as_f64().map(fmt).unwrap_or_else(|| "-".to_string())
        };
        // The selected epoch's loss: the weights `evaluate` scored. A record from before
        // `training.select` holds the last epoch's weights, whose loss is `final_val_loss`.
        let val_loss = if train["selected_val_loss"].is_null() {
            &train["final_val_loss"]
        } else {
            &train["selected_val_loss"]
        };
        rows.push(vec![
            r.name.clone(),
            e.model.kind.clone(),
            e.optimizer.kind.clone(),
            if r.error().is_some() {
                "FAILED".to_string()
            } else {
                format!("{ran}/{cached}")
            },
            num(val_loss, |x| format!("{x:.4}")),
            // Skill against persistence; `!` marks a forecast worse than predicting no move
            // (plain text: the memo replays this table on any terminal).
            num(&metrics["skill"]["pooled"], |x| {
                if x < 0.0 {
                    format!("{x:.3}!")
                } else {
                    format!("{x:.3}")
                }
            }),
            num(&metrics["price"]["directional_accuracy"], |x| {
                format!("{:.1}%", 100.0 * x)
            }),
            num(&metrics["backtest"]["strategy"]["sharpe"], |x| {
                format!("{x:.2}")
            }),
            num(&metrics["backtest"]["buy_and_hold"]["sharpe"], |x| {
                format!("{x:.2}")
            }),
        ]);
    }
    rows
}
