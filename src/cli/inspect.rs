//! Looking at experiments without building them: `hft ls`, `show`, `explain`, `report`.
//!
//! Each plans the selected experiments against the store (the survey of
//! `crate::usecase::survey`: a dry run with keys, hits and reasons); `compare`, which reads
//! only the catalog, is `super::compare`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::{Common, Outcome, fail, survey};
use crate::catalog::{Catalog, CatalogRow, Trials};
use crate::eval::deflated::{Deflated, deflate, insert_deflated};
use crate::graph::exec::{ExperimentJob, ExperimentReport, StageState};
use crate::report;
use crate::store::Store;
use crate::term;

pub use super::compare::{
    CompareArgs, Comparison, Condition, Format, HEADLINE_METRICS, compare, compare_rows,
};

/// A metric value for a table cell: four significant digits.
pub(super) fn number(x: f64) -> String {
    if x == 0.0 {
        return "0".to_string();
    }
    if (1e-3..1e5).contains(&x.abs()) {
        let digits = (3 - libm::log10(x.abs()).floor() as i32).clamp(0, 6) as usize;
        format!("{x:.digits$}")
    } else {
        format!("{x:.3e}")
    }
}

fn age(at: u64) -> String {
    let secs = crate::store::now_unix().saturating_sub(at);
    match secs {
        0..60 => format!("{secs}s ago"),
        60..3600 => format!("{}m ago", secs / 60),
        3600..86400 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86400),
    }
}

/// Where an experiment stands: `built` (every stage cached), `stale` (some stage would run),
/// `failed` (its last build failed and it is not built), `new` (never built).
fn state_of(report: &ExperimentReport, last: Option<&CatalogRow>) -> (&'static str, Vec<String>) {
    let stale: Vec<String> = report
        .stages
        .iter()
        .filter(|s| !matches!(s.state, StageState::Cached))
        .map(|s| s.id.clone())
        .collect();
    let state = if stale.is_empty() {
        "built"
    } else if last.is_some_and(|r| r.error.is_some()) {
        "failed"
    } else if stale.len() == report.stages.len() && last.is_none() {
        "new"
    } else {
        "stale"
    };
    (state, stale)
}

/// The row the catalog would hold for this experiment now, or its last row when the
/// current stages are not all built (so `ls` shows the last known results of a stale one).
fn current_row(
    job: &ExperimentJob,
    report: &ExperimentReport,
    last: Option<&CatalogRow>,
) -> Option<CatalogRow> {
    let id = crate::graph::experiment_id(&job.file, &job.plan.name);
    let now = CatalogRow::from_report(&id, job.experiment, report);
    match now {
        Some(row) if row.metrics.contains_key("backtest.strategy.sharpe") => Some(row),
        _ => last.cloned(),
    }
}

/// `hft ls`.
pub fn ls(common: &Common, json_out: bool) -> Outcome {
    survey(common, |store, jobs, reports| {
        let catalog = Catalog::load(store);
        let latest = catalog.latest();
        let mut items = Vec::new();
        for (job, r) in jobs.iter().zip(reports) {
            let id = crate::graph::experiment_id(&job.file, &job.plan.name);
            let last = latest.get(id.as_str()).copied();
            let (state, stale) = state_of(r, last);
            let row = current_row(job, r, last);
            items.push((job, state, stale, row, last));
        }
        if json_out {
            let list: Vec<Value> = items
                .iter()
                .map(|(job, state, stale, row, last)| {
                    json!({
                        "name": job.plan.name,
                        "file": job.file.display().to_string(),
                        "state": state,
                        "stale_stages": stale,
                        "model": job.experiment.model.kind,
                        "optimizer": job.experiment.optimizer.kind,
                        "metrics": row.as_ref().map(|r| r.metrics.clone()).unwrap_or_default(),
                        "last_built": last.map(|l| l.built_at),
                        "error": last.and_then(|l| l.error.clone()),
                    })
                })
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&list).unwrap_or_default()
            );
            return Outcome::Ok;
        }
        let mut rows = vec![
            [
                "experiment",
                "state",
                "model",
                "optimizer",
                "val loss (sel.)",
                "dir acc",
                "sharpe",
                "buy&hold",
                "built",
            ]
            .map(str::to_string)
            .to_vec(),
        ];
        for (job, state, stale, row, last) in &items {
            let metric = |k: &str| {
                row.as_ref()
                    .and_then(|r| r.metrics.get(k))
                    .map(|&x| super::compare::shown(k, x))
                    .unwrap_or_else(|| "-".to_string())
            };
            let state_text = match *state {
                "stale" => format!("stale ({})", stale.join(", ")),
                s => s.to_string(),
            };
            let colour = match *state {
                "built" => "green",
                "failed" => "red",
                _ => "yellow",
            };
            rows.push(vec![
                job.plan.name.clone(),
                term::paint(&state_text, colour),
                job.experiment.model.kind.clone(),
                job.experiment.optimizer.kind.clone(),
                // The selected epoch's: the weights evaluated (the last epoch's before
                // `training.select` existed).
                if row
                    .as_ref()
                    .is_some_and(|r| r.metrics.contains_key("train.selected_val_loss"))
                {
                    metric("train.selected_val_loss")
                } else {
                    metric("train.final_val_loss")
                },
                metric("price.directional_accuracy"),
                metric("backtest.strategy.sharpe"),
                metric("backtest.buy_and_hold.sharpe"),
                last.map(|l| age(l.built_at))
                    .unwrap_or_else(|| "never".to_string()),
            ]);
        }
        term::print_block(&term::table(&rows));
        Outcome::Ok
    })
    .unwrap_or_else(|o| o)
}

/// The index of the experiment called `name` (or defined in the file `name`); exit 2,
/// with the closest name, when there is none.
fn pick(name: &str, jobs: &[ExperimentJob]) -> Result<usize, Outcome> {
    crate::usecase::trained::pick(name, jobs).map_err(super::report_failure)
}

/// The selection for a one-experiment command: a file given as EXP is searched by itself.
fn select_for(experiment: &str, common: &Common) -> Common {
    let mut paths = common.select.paths.clone();
    if Path::new(experiment).is_file() && paths.is_empty() {
        paths = vec![PathBuf::from(experiment)];
    }
    Common {
        select: super::Select {
            paths,
            overrides: common.select.overrides.clone(),
            filters: common.select.filters.clone(),
        },
        cache_dir: common.cache_dir.clone(),
        quiet: common.quiet,
    }
}

fn stage_state_name(state: &StageState) -> &'static str {
    match state {
        StageState::Cached => "built",
        StageState::Ran { .. } => "ran",
        StageState::Stale { .. } => "stale",
        StageState::Skipped => "skipped",
        StageState::Failed(_) => "failed",
    }
}

/// `hft show EXP`.
pub fn show(experiment: &str, common: &Common, json_out: bool) -> Outcome {
    let common = select_for(experiment, common);
    survey(&common, |store, jobs, reports| {
        let i = match pick(experiment, jobs) {
            Ok(i) => i,
            Err(o) => return o,
        };
        let (job, r) = (&jobs[i], &reports[i]);
        let config = serde_json::to_value(job.experiment).unwrap_or_default();
        let stages: Vec<Value> = r
            .stages
            .iter()
            .map(|s| {
                let record = s.record.as_ref();
                json!({
                    "id": s.id,
                    "state": stage_state_name(&s.state),
                    "reason": match &s.state { StageState::Stale { reason } => Some(reason), _ => None },
                    "key": s.key.as_ref().map(|k| k.0.clone()),
                    "outputs": record.map(|rec| rec.outputs.iter().map(|(n, o)| (n.clone(), json!({"digest": o.digest.to_hex(), "bytes": o.size}))).collect::<BTreeMap<_, _>>()),
                    "wall_ms": record.map(|rec| rec.wall_ms),
                    "built_at": record.map(|rec| rec.created),
                    "summary": record.map(|rec| rec.summary.as_ref().clone()),
                })
            })
            .collect();
        let deflated = deflated_sharpe(store, job, r);
        // A stage that is stale now still has the last build's results: shown, marked so.
        let previous: Option<crate::graph::exec::BuildRecord> = store
            .get_build_record(&crate::graph::experiment_id(&job.file, &job.plan.name));
        let mut from_last_build = false;
        let mut record_of = |id: &str| -> Option<crate::store::ActionRecord> {
            let current = r.stages.iter().find(|s| s.id == id);
            if let Some(rec) = current.and_then(|s| s.record.clone()) {
                return Some(rec);
            }
            let last = previous.as_ref()?.stages.iter().find(|s| s.id == id)?;
            let rec = store.get_action(&last.key)?;
            from_last_build = true;
            Some(rec)
        };
        let train_record = record_of("train");
        let metrics = record_of("evaluate").map(|rec| rec.summary.as_ref().clone());
        let walk_forward = record_of("walk_forward").map(|rec| rec.summary.as_ref().clone());
        let train_log = train_record
            .and_then(|rec| store.get_blob(&rec.outputs.get("log")?.digest))
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok());
        if json_out {
            let doc = json!({
                "name": job.plan.name,
                "file": job.file.display().to_string(),
                "config": config,
                "stages": stages,
                "train_log": train_log,
                "metrics": metrics,
                "walk_forward": walk_forward,
                // The results above are the last build's, and a stage is stale now.
                "results_stale": from_last_build,
                "deflated_sharpe": deflated,
            });
            println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
            return Outcome::Ok;
        }
        let mut lines = vec![format!("# {} ({})", job.plan.name, job.file.display())];
        lines.push(String::new());
        lines.push("## config".to_string());
        let config_rows: Vec<Vec<String>> = crate::config::json_leaves(&config, false)
            .into_iter()
            .map(|(k, v)| {
                // The origin follows the value: a long list must not push it off screen.
                let value = match job.locations.get(&k) {
                    Some(origin) => format!("{v}  # {origin}"),
                    None => v.to_string(),
                };
                vec![format!("{k}:"), value]
            })
            .collect();
        lines.extend(term::table(&config_rows));
        lines.push(String::new());
        lines.push("## stages".to_string());
        let mut stage_rows = vec![
            ["stage", "state", "key", "outputs", "time", "built"]
                .map(str::to_string)
                .to_vec(),
        ];
        for s in &r.stages {
            let record = s.record.as_ref();
            stage_rows.push(vec![
                s.id.clone(),
                match &s.state {
                    StageState::Stale { reason } => format!("stale: {reason}"),
                    other => stage_state_name(other).to_string(),
                },
                s.key.as_ref().map(|k| k.0.clone()).unwrap_or_default(),
                record
                    .map(|rec| {
                        rec.outputs
                            .iter()
                            .map(|(n, o)| format!("{n}={} ({} B)", o.digest.short(), o.size))
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .unwrap_or_default(),
                record
                    .map(|rec| term::duration(rec.wall_ms as f64 / 1000.0))
                    .unwrap_or_default(),
                record.map(|rec| age(rec.created)).unwrap_or_default(),
            ]);
        }
        lines.extend(term::table(&stage_rows));
        if from_last_build {
            lines.push(String::new());
            lines.push(
                "note: the results below are the last build's; the config or data changed since \
                 (stale stages above): `hft build` brings them up to date"
                    .to_string(),
            );
        }
        if let Some(log) = &train_log {
            lines.push(String::new());
            lines.push("## training log".to_string());
            let selected = log["selected_epoch"].as_u64();
            let mut rows = vec![
                ["epoch", "step", "train loss", "val loss", "lr"]
                    .map(str::to_string)
                    .to_vec(),
            ];
            for e in log["epochs"].as_array().into_iter().flatten() {
                let num = |k: &str| e[k].as_f64().map(number).unwrap_or_else(|| "-".into());
                let mark = if e["epoch"].as_u64().is_some_and(|n| Some(n) == selected) {
                    " *"
                } else {
                    ""
                };
                rows.push(vec![
                    format!("{}{mark}", e["epoch"]),
                    e["step"].to_string(),
                    num("train_loss"),
                    num("val_loss"),
                    e["lr"].as_f64().map(|x| format!("{x:.2e}")).unwrap_or_default(),
                ]);
            }
            lines.extend(term::table(&rows));
            if let Some(best) = log["best_epoch"].as_u64() {
                lines.push(format!("best epoch {best}"));
            }
            if let Some(n) = selected {
                let loss = log["selected_val_loss"]
                    .as_f64()
                    .map(|x| format!(", val loss (selected epoch {n}) {}", number(x)))
                    .unwrap_or_default();
                let rule = log["select"].as_str().unwrap_or("best_val");
                lines.push(format!(
                    "* selected epoch {n} ({rule}): the checkpoint's weights{loss}"
                ));
            }
            if let Some(note) = log["select_note"].as_str() {
                lines.push(format!("note: {note}"));
            }
        }
        let leaves = |m: &Value| -> Vec<Vec<String>> {
            crate::config::json_leaves(m, false)
                .into_iter()
                .filter(|(k, _)| !k.starts_with("walk_forward."))
                .map(|(k, v)| {
                    let text = v.as_f64().map(number).unwrap_or_else(|| v.to_string());
                    vec![format!("{k}:"), text]
                })
                .collect()
        };
        if let Some(wf) = &walk_forward {
            lines.push(String::new());
            lines.extend(fold_table(wf));
            lines.push(String::new());
            lines.push(format!(
                "## metrics (walk-forward: every fold's test windows, out of sample, {} folds)",
                wf["walk_forward"]["folds"]
            ));
            lines.extend(term::table(&leaves(wf)));
        }
        if let Some(m) = &metrics {
            lines.push(String::new());
            lines.push(if walk_forward.is_some() {
                "## metrics (the single split's test windows)".to_string()
            } else {
                "## metrics (test split)".to_string()
            });
            lines.extend(term::table(&leaves(m)));
        }
        if let Some(d) = deflated {
            lines.push(format!(
                "deflated Sharpe {} over {} trials on this dataset (the catalog's; \
                 variance of their per-bar Sharpe {})",
                number(d.value),
                d.trials,
                number(d.sharpe_variance)
            ));
        }
        term::print_block(&lines);
        Outcome::Ok
    })
    .unwrap_or_else(|o| o)
}

/// The per-fold table of a `walk_forward` summary; a negative skill is marked `!`.
fn fold_table(wf: &Value) -> Vec<String> {
    let mut rows = vec![
        [
            "fold",
            "test from",
            "test to",
            "windows",
            "mse",
            "persistence",
            "skill",
            "dir. acc.",
            "sharpe",
        ]
        .map(str::to_string)
        .to_vec(),
    ];
    for f in wf["walk_forward"]["per_fold"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let num = |k: &str| f[k].as_f64().map(number).unwrap_or_else(|| "-".into());
        let day = |i: usize| f["test"][i].as_i64().map(term::date).unwrap_or_default();
        let skill = match f["skill"].as_f64() {
            Some(x) if x < 0.0 => format!("{} !", number(x)),
            Some(x) => number(x),
            None => "-".into(),
        };
        rows.push(vec![
            f["index"].to_string(),
            day(0),
            day(1),
            f["windows"].to_string(),
            num("mse"),
            num("persistence_mse"),
            skill,
            num("directional_accuracy"),
            num("sharpe"),
        ]);
    }
    let mut lines = vec!["## walk-forward folds (! = worse than persistence)".to_string()];
    lines.extend(term::table(&rows));
    lines
}

/// The deflated Sharpe ratio of an experiment's current evaluation over the trials the
/// catalog has seen on its dataset (this one counted); `None` when it is not evaluated or
/// its metrics predate the one-trial figure.
fn deflated_sharpe(store: &Store, job: &ExperimentJob, r: &ExperimentReport) -> Option<Deflated> {
    let id = crate::graph::experiment_id(&job.file, &job.plan.name);
    let row = CatalogRow::from_report(&id, job.experiment, r)?;
    deflate(&row.metrics, Trials::load(store).count_for(&row)?)
}

/// A JSON output blob of a built stage.
fn blob_json(store: &Store, r: &ExperimentReport, stage: &str, output: &str) -> Option<Value> {
    let bytes = blob(store, r, stage, output)?;
    serde_json::from_slice(&bytes).ok()
}

fn blob(store: &Store, r: &ExperimentReport, stage: &str, output: &str) -> Option<Vec<u8>> {
    let record = r.stages.iter().find(|s| s.id == stage)?.record.as_ref()?;
    store.get_blob(&record.outputs.get(output)?.digest)
}
/// Why one stage would run: its own causes, with "after X re-runs" replaced by X's causes;
/// each cause with the index of the stage it belongs to.
fn root_causes(
    report: &ExperimentReport,
    i: usize,
    seen: &mut BTreeSet<usize>,
) -> Vec<(usize, String)> {
    if !seen.insert(i) {
        return vec![];
    }
    let StageState::Stale { reason } = &report.stages[i].state else {
        return vec![];
    };
    let mut causes = Vec::new();
    for part in reason.split("; ") {
        if let Some(rest) = part.strip_prefix("after ") {
            let upstream = rest
                .trim_end_matches(" re-runs")
                .trim_end_matches(" re-run");
            for id in upstream.split(", ") {
                if let Some(j) = report.stages.iter().position(|s| s.id == id) {
                    causes.extend(root_causes(report, j, seen));
                }
            }
        } else {
            causes.push((i, part.to_string()));
        }
    }
    causes
}

/// `hft explain EXP`.
pub fn explain(experiment: &str, common: &Common, json_out: bool) -> Outcome {
    let common = select_for(experiment, common);
    survey(&common, |store, jobs, reports| {
        let i = match pick(experiment, jobs) {
            Ok(i) => i,
            Err(o) => return o,
        };
        let (job, r) = (&jobs[i], &reports[i]);
        let previous: Option<crate::graph::exec::BuildRecord> = store
            .get_build_record(&crate::graph::experiment_id(&job.file, &job.plan.name));
        // Cause -> the stages it makes run, in stage order.
        let mut by_cause: Vec<(String, Vec<String>)> = Vec::new();
        let mut per_stage = Vec::new();
        for (k, s) in r.stages.iter().enumerate() {
            let causes = match &s.state {
                StageState::Stale { .. } => {
                    let mut causes: Vec<String> = root_causes(r, k, &mut BTreeSet::new())
                        .into_iter()
                        .map(|(origin, c)| detail_cause(store, r, origin, &c, previous.as_ref()))
                        .collect();
                    causes.dedup();
                    causes
                }
                _ => vec![],
            };
            for c in &causes {
                match by_cause.iter_mut().find(|(x, _)| x == c) {
                    Some((_, stages)) => stages.push(s.id.clone()),
                    None => by_cause.push((c.clone(), vec![s.id.clone()])),
                }
            }
            per_stage.push((s, causes));
        }
        let hits: Vec<String> = r
            .stages
            .iter()
            .filter(|s| matches!(s.state, StageState::Cached))
            .map(|s| s.id.clone())
            .collect();
        if json_out {
            let doc = json!({
                "name": job.plan.name,
                "file": job.file.display().to_string(),
                "last_build": previous.is_some(),
                "stages": per_stage.iter().map(|(s, causes)| json!({
                    "id": s.id,
                    "action": if matches!(s.state, StageState::Cached) { "hit" } else { "run" },
                    "key": s.key.as_ref().map(|k| k.0.clone()),
                    "causes": causes,
                })).collect::<Vec<_>>(),
                "causes": by_cause.iter().map(|(c, stages)| json!({"cause": c, "stages": stages})).collect::<Vec<_>>(),
                "hits": hits,
            });
            println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
            return Outcome::Ok;
        }
        let mut lines = vec![format!("{} ({})", job.plan.name, job.file.display())];
        if by_cause.is_empty() {
            lines.push("  everything hits: a build would execute nothing".to_string());
        }
        for (cause, stages) in &by_cause {
            lines.push(format!("  {cause}: {} re-run", stages.join(", ")));
        }
        if !hits.is_empty() && !by_cause.is_empty() {
            lines.push(format!("  hit: {}", hits.join(", ")));
        }
        lines.push(String::new());
        let width = r.stages.iter().map(|s| s.id.len()).max().unwrap_or(0);
        for (s, causes) in &per_stage {
            let what = match &s.state {
                StageState::Cached => format!(
                    "hit  {}",
                    s.key.as_ref().map(|k| k.short().to_string()).unwrap_or_default()
                ),
                _ => format!("run  {}", causes.join("; ")),
            };
            lines.push(format!("  {:width$}  {what}", s.id));
        }
        term::print_block(&lines);
        Outcome::Ok
    })
    .unwrap_or_else(|o| o)
}

/// A cause with the facts a user needs next: row counts of a changed data file, the hft
/// version that built the previous output.
fn detail_cause(
    store: &Store,
    report: &ExperimentReport,
    stage: usize,
    cause: &str,
    previous: Option<&crate::graph::exec::BuildRecord>,
) -> String {
    let Some(spec) = report.plan.stages.get(stage) else {
        return cause.to_string();
    };
    let prev_record = previous
        .and_then(|p| p.stages.iter().find(|s| s.id == spec.id))
        .and_then(|s| store.get_action(&s.key));
    if cause.starts_with("data file ") {
        let before = prev_record
            .as_ref()
            .and_then(|r| r.summary["rows"].as_u64())
            .map(|n| n.to_string())
            .unwrap_or_else(|| "?".to_string());
        // Data rows in every file of the symbol (CSV rows; other formats show `?`).
        let now = spec
            .data_files
            .iter()
            .map(|f| count_rows(f))
            .sum::<Option<usize>>()
            .map(|n| n.to_string())
            .unwrap_or_else(|| "?".to_string());
        return format!("{cause} ({before} -> {now} rows)");
    }
    if cause == "its key changed"
        && let Some(rec) = &prev_record
        && rec.hft_version != env!("CARGO_PKG_VERSION")
    {
        return format!("hft {} -> {}", rec.hft_version, env!("CARGO_PKG_VERSION"));
    }
    cause.to_string()
}

/// Data rows of a CSV file (lines after the header, blank lines not counted).
fn count_rows(path: &Path) -> Option<usize> {
    let is_csv = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv") || e.eq_ignore_ascii_case("txt"));
    if !is_csv {
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    Some(
        text.lines()
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .count(),
    )
}

/// `hft report -o FILE`.
pub fn html_report(common: &Common, output: &Path) -> Outcome {
    survey(common, |store, jobs, reports| {
        let trials = Trials::load(store);
        let mut experiments = Vec::new();
        for (job, r) in jobs.iter().zip(reports) {
            let id = crate::graph::experiment_id(&job.file, &job.plan.name);
            let mut row = CatalogRow::from_report(&id, job.experiment, r);
            if let Some(row) = &mut row
                && let Some(count) = trials.count_for(row)
            {
                insert_deflated(&mut row.metrics, count);
            }
            let json = serde_json::to_value(job.experiment).unwrap_or_default();
            experiments.push(report::html::ReportExperiment {
                name: job.plan.name.clone(),
                file: job.file.display().to_string(),
                model: job.experiment.model.kind.clone(),
                optimizer: job.experiment.optimizer.kind.clone(),
                config: crate::config::json_leaves(&json, false)
                    .into_iter()
                    .map(|(k, v)| (k, v.to_string()))
                    .collect(),
                metrics: row.map(|r| r.metrics).unwrap_or_default(),
                // Walk-forward: the latest fold's training, every fold's test windows.
                train_log: blob_json(store, r, "train", "log").or_else(|| {
                    let latest = r
                        .stages
                        .iter()
                        .rev()
                        .find(|s| s.id.starts_with("fold_train:"))?;
                    blob_json(store, r, &latest.id, "log")
                }),
                predictions: blob(store, r, "evaluate", "predictions")
                    .or_else(|| blob(store, r, "walk_forward", "predictions")),
                folds: r
                    .stages
                    .iter()
                    .find(|s| s.id == "walk_forward")
                    .and_then(|s| s.record.as_ref())
                    .and_then(|rec| rec.summary["walk_forward"]["per_fold"].as_array().cloned()),
                folds_blob: blob(
                    store,
                    r,
                    crate::eval::overfitting::WALK_FORWARD_STAGE,
                    crate::eval::overfitting::FOLDS_OUTPUT,
                ),
            });
        }
        let html = match report::html::render(&experiments) {
            Ok(h) => h,
            Err(e) => return fail(&format!("cannot render the report: {e}")),
        };
        if let Err(e) = std::fs::write(output, html) {
            eprintln!("error: cannot write {}: {e}", output.display());
            return Outcome::StageFailed;
        }
        let built = experiments
            .iter()
            .filter(|e| e.predictions.is_some())
            .count();
        println!(
            "wrote {} ({} experiments, {built} evaluated)",
            output.display(),
            experiments.len()
        );
        // Results lost to a damaged cache are not "not built": say so, and fail.
        let damaged = store.damaged_records();
        if damaged > 0 {
            eprintln!(
                "error: {damaged} cached stage result(s) are damaged (see the warnings above), \
                 so the report leaves them out; `hft build` rebuilds them"
            );
            return Outcome::StageFailed;
        }
        Outcome::Ok
    })
    .unwrap_or_else(|o| o)
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_four_significant_digits() {
        assert_eq!(number(0.123456), "0.1235");
        assert_eq!(number(12.3456), "12.35");
        assert_eq!(number(0.0), "0");
        assert_eq!(number(1.5e-7), "1.500e-7");
    }

    #[test]
    fn counts_are_whole_and_accuracies_percentages_in_tables() {
        use super::super::compare::shown;
        assert_eq!(shown("backtest.strategy.trades", 12.0), "12");
        assert_eq!(shown("action.predicted.buy", 732.0), "732");
        assert_eq!(shown("price.directional_accuracy", 0.46153), "46.2%");
        assert_eq!(shown("action.accuracy", 0.652), "65.2%");
        assert_eq!(shown("backtest.strategy.sharpe", 12.0), "12.00");
    }
}
