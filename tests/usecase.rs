//! The build use case called as a library, without the binary: a build, a second build
//! that executes nothing, an edit of `optimizer.lr` that re-runs only train and evaluate,
//! `status` naming what is stale, and a config error naming file and key. One tiny MLP on
//! one synthetic symbol, a few steps.

mod common;

use std::path::{Path, PathBuf};

use common::{Project, csv_bars};
use hft::graph::exec::{ExperimentReport, StageState};
use hft::usecase::build::{self, BuildRequest, BuildResult, Built, StatusRequest};
use hft::usecase::{Outcome, Selection};

const EXPERIMENT: &str = "\
name: tiny
seed: 1
data:
  source: local
  path: trainingdata
  symbols: [AAA]
  features: [close, log_return, ma_5]
  sequence_length: 8
  prediction_horizon: 2
  split: {train: 0.6, val: 0.2, test: 0.2}
model: {type: mlp, hidden_size: 8, num_layers: 1, dropout: 0.0}
training: {max_steps: 3, batch_size: 16, warmup_steps: 1}
";

/// A scratch project: the experiment file, its data, and a request building it. Every path
/// is absolute (the tests share the process's working folder); `data.path` comes as an
/// override, as a path given on the command line may leave the project.
fn project(tag: &str) -> (Project, BuildRequest) {
    let p = Project::new(tag);
    p.write("trainingdata/AAA.csv", &csv_bars(200, 1));
    p.write("experiments/tiny.yaml", EXPERIMENT);
    let select = Selection {
        paths: vec![p.path("experiments/tiny.yaml")],
        overrides: vec![format!("data.path={}", p.path("trainingdata").display())],
        filters: vec![],
    };
    let mut req = BuildRequest::new(select, p.path("cache"));
    req.lock_file = p.path("hft.lock");
    req.jobs = Some(1);
    (p, req)
}

fn built(result: BuildResult) -> Built {
    match result {
        BuildResult::Built(b) => b,
        BuildResult::Unchanged(u) => panic!("answered from the memo: {u:?}"),
        BuildResult::Partial(p) => panic!("answered partly from the memo: {p:?}"),
    }
}

/// The stages of the one experiment in a state.
fn stages(reports: &[ExperimentReport], state: fn(&StageState) -> bool) -> Vec<String> {
    reports
        .iter()
        .flat_map(|r| r.stages.iter())
        .filter(|s| state(&s.state))
        .map(|s| s.id.clone())
        .collect()
}

fn ran(s: &StageState) -> bool {
    matches!(s, StageState::Ran { .. })
}

fn edit(p: &Project, rel: &str, from: &str, to: &str) {
    let path: PathBuf = p.path(rel);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from));
    std::fs::write(&path, text.replace(from, to)).unwrap();
}

#[test]
fn builds_reuses_and_reruns_only_what_an_edit_reaches() {
    let (p, req) = project("usecase-build");
    let first = built(build::build(&req, &|_| {}).unwrap());
    assert_eq!(first.outcome, Outcome::Ok, "{:?}", first.messages);
    assert_eq!(
        stages(&first.reports, ran),
        [
            "ingest:AAA",
            "features",
            "dataset",
            "init",
            "train",
            "evaluate"
        ]
    );
    assert_eq!(first.counts.ran, 6);
    assert!(Path::new(&req.lock_file).is_file(), "the lock is written");

    // Nothing changed: answered from the no-op memo, and without it every stage hits.
    match build::build(&req, &|_| {}).unwrap() {
        BuildResult::Unchanged(u) => assert_eq!(u.stages, 6),
        BuildResult::Built(b) => assert!(stages(&b.reports, ran).is_empty()),
        BuildResult::Partial(p) => assert!(stages(&p.built.reports, ran).is_empty()),
    }
    let planned = BuildRequest {
        memo: false,
        ..req.clone()
    };
    let second = built(build::build(&planned, &|_| {}).unwrap());
    assert!(stages(&second.reports, ran).is_empty());
    assert_eq!(second.counts.cached, 6);

    // A new learning rate: status names train and evaluate stale, a build re-runs just them.
    edit(
        &p,
        "experiments/tiny.yaml",
        "seed: 1\n",
        "seed: 1\noptimizer: {lr: 0.002}\n",
    );
    let status_req = StatusRequest {
        select: req.select.clone(),
        cache_dir: req.cache_dir.clone(),
    };
    let status = build::status(&status_req, &|_| {}).unwrap();
    assert!(status.dry_run);
    assert_eq!(
        stages(&status.reports, |s| matches!(s, StageState::Stale { .. })),
        ["train", "evaluate"]
    );
    let reason = status.reports[0]
        .stages
        .iter()
        .find_map(|s| match &s.state {
            StageState::Stale { reason } if s.id == "train" => Some(reason.clone()),
            _ => None,
        })
        .unwrap();
    assert!(reason.contains("optimizer.lr"), "{reason}");
    assert_eq!(status.counts.stale, 2);
    assert_eq!(status.counts.ran, 0);

    let third = built(build::build(&req, &|_| {}).unwrap());
    assert_eq!(stages(&third.reports, ran), ["train", "evaluate"]);
    assert_eq!(third.outcome, Outcome::Ok);
}

#[test]
fn a_config_error_names_file_line_and_key() {
    let (p, req) = project("usecase-config-error");
    edit(
        &p,
        "experiments/tiny.yaml",
        "seed: 1\n",
        "seed: 1\noptimizer: {lrr: 0.1}\n",
    );
    let failure = build::build(&req, &|_| {}).unwrap_err();
    assert_eq!(failure.outcome, Outcome::BadInput);
    assert_eq!(failure.errors.len(), 1, "{:?}", failure.errors);
    let error = &failure.errors[0];
    assert!(error.contains("tiny.yaml:3:"), "{error}");
    assert!(error.contains("optimizer.lrr"), "{error}");
    assert!(error.contains("did you mean `lr`"), "{error}");
    assert!(p.action_records().is_empty(), "nothing executed");
}

#[test]
fn filters_select_experiments_by_resolved_value() {
    let (p, mut req) = project("usecase-filter");
    req.dry_run = true;
    req.select.filters = vec!["model.type=lstm".to_string()];
    let failure = build::build(&req, &|_| {}).unwrap_err();
    assert_eq!(failure.errors, ["no experiment matches the filters"]);
    req.select.filters = vec!["seed>=1".to_string(), "model.type=mlp".to_string()];
    let b = built(build::build(&req, &|_| {}).unwrap());
    assert_eq!(b.reports.len(), 1);
    req.select.filters = vec!["model.type".to_string()];
    let failure = build::build(&req, &|_| {}).unwrap_err();
    assert_eq!(failure.errors, ["--filter model.type: expected PATH=VALUE"]);
    drop(p);
}
