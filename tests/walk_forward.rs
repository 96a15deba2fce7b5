//! Walk-forward evaluation as build targets: the fold stages appear once the folds are
//! counted, a rebuild executes nothing, and appending one fold's worth of bars to the data
//! file adds one fold whose training is the only one that runs. One tiny MLP on one local
//! CSV symbol.

mod common;

use common::{Project, csv_bars};
use hft::graph::exec::{ExperimentReport, StageState};
use hft::usecase::build::{self, BuildRequest, BuildResult, Built, StatusRequest};
use hft::usecase::{Outcome, Selection};

const EXPERIMENT: &str = "\
name: wf
seed: 3
data:
  source: local
  path: trainingdata
  symbols: [AAA]
  features: [close, log_return, ma_5]
  sequence_length: 8
  prediction_horizon: 2
model: {type: mlp, hidden_size: 8, num_layers: 1, dropout: 0.0}
training: {max_steps: 3, batch_size: 16, warmup_steps: 1}
evaluation:
  walk_forward: {train_bars: 80, val_bars: 20, test_bars: 20, embargo: 1}
";

fn project(tag: &str, bars: usize) -> (Project, BuildRequest) {
    let p = Project::new(tag);
    p.write("trainingdata/AAA.csv", &csv_bars(bars, 1));
    p.write("experiments/wf.yaml", EXPERIMENT);
    let select = Selection {
        paths: vec![p.path("experiments/wf.yaml")],
        overrides: vec![format!("data.path={}", p.path("trainingdata").display())],
        filters: vec![],
    };
    let mut req = BuildRequest::new(select, p.path("cache"));
    req.lock_file = p.path("hft.lock");
    req.jobs = Some(1);
    req.memo = false;
    (p, req)
}

fn built(req: &BuildRequest) -> Built {
    match build::build(req, &|_| {}).unwrap() {
        BuildResult::Built(b) => b,
        BuildResult::Unchanged(u) => panic!("answered from the memo: {u:?}"),
        BuildResult::Partial(p) => panic!("answered partly from the memo: {p:?}"),
    }
}

fn ids(reports: &[ExperimentReport], state: fn(&StageState) -> bool) -> Vec<String> {
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

fn trainings(ids: &[String]) -> Vec<&str> {
    ids.iter()
        .map(String::as_str)
        .filter(|id| id.starts_with("fold_train:") || *id == "train")
        .collect()
}

#[test]
fn folds_are_stages_and_appended_bars_train_only_the_new_fold() {
    // 200 bars, 4 of them features' warm-up: fold k tests bars 81+20k..101+20k and needs
    // 103+20k <= 196, so folds 0..=4.
    let (p, req) = project("wf-append", 200);
    let first = built(&req);
    assert_eq!(first.outcome, Outcome::Ok, "{:?}", first.messages);
    let executed = ids(&first.reports, ran);
    assert_eq!(
        trainings(&executed),
        [
            "fold_train:0",
            "fold_train:1",
            "fold_train:2",
            "fold_train:3",
            "fold_train:4"
        ]
    );
    assert!(executed.contains(&"walk_forward".to_string()));
    assert!(!executed.contains(&"evaluate".to_string()));

    // The headline metrics are the folds' test windows together.
    let report = &first.reports[0];
    let wf = report
        .stages
        .iter()
        .find(|s| s.id == "walk_forward")
        .and_then(|s| s.record.clone())
        .unwrap();
    let m = &wf.summary;
    assert_eq!(m["walk_forward"]["folds"], 5);
    assert_eq!(m["windows"], 5 * 20);
    assert!(m["skill"]["pooled"].is_number(), "{m}");
    assert!(m["baselines"]["persistence"]["mse"].is_number());
    assert!(m["ci"]["skill"]["lower"].is_number());
    let per_fold = m["walk_forward"]["per_fold"].as_array().unwrap();
    assert_eq!(per_fold.len(), 5);
    assert!(per_fold.iter().all(|f| f["windows"] == 20));
    // The folds blob carries each fold's strategy returns (for `compare --pbo`).
    assert!(wf.outputs.contains_key("folds"));
    let lock = std::fs::read_to_string(p.path("hft.lock")).unwrap();
    assert!(lock.contains("fold_train:4"), "{lock}");

    // A rebuild executes nothing.
    let again = built(&req);
    assert!(ids(&again.reports, ran).is_empty());

    // `status` sees the folds through the cached `fold_plan`: a new learning rate makes
    // every fold's training and the scoring stale, nothing before them.
    let text = std::fs::read_to_string(p.path("experiments/wf.yaml")).unwrap();
    p.write(
        "experiments/wf.yaml",
        &text.replace("seed: 3\n", "seed: 3\noptimizer: {lr: 0.002}\n"),
    );
    let status = build::status(
        &StatusRequest {
            select: req.select.clone(),
            cache_dir: req.cache_dir.clone(),
        },
        &|_| {},
    )
    .unwrap();
    let stale = ids(&status.reports, |s| matches!(s, StageState::Stale { .. }));
    assert_eq!(stale.len(), 6, "{stale:?}");
    assert!(
        stale[..5].iter().all(|id| id.starts_with("fold_train:")),
        "{stale:?}"
    );
    assert_eq!(stale[5], "walk_forward");
    p.write("experiments/wf.yaml", &text);

    // One fold's worth of bars appended: one new fold, and its training the only one.
    p.write("trainingdata/AAA.csv", &csv_bars(220, 1));
    let third = built(&req);
    assert_eq!(third.outcome, Outcome::Ok, "{:?}", third.messages);
    let executed = ids(&third.reports, ran);
    assert_eq!(trainings(&executed), ["fold_train:5"], "{executed:?}");
    let cached = ids(&third.reports, |s| *s == StageState::Cached);
    for k in 0..5 {
        assert!(cached.contains(&format!("fold_train:{k}")), "{cached:?}");
    }
    let wf = third.reports[0]
        .stages
        .iter()
        .find(|s| s.id == "walk_forward")
        .and_then(|s| s.record.clone())
        .unwrap();
    assert_eq!(wf.summary["walk_forward"]["folds"], 6);
}

#[test]
fn too_little_data_for_one_fold_is_a_clear_error() {
    let (_p, req) = project("wf-short", 90);
    let b = built(&req);
    assert_eq!(b.outcome, Outcome::BadInput);
    let error = b.reports[0].error().unwrap().to_string();
    assert!(error.contains("evaluation.walk_forward"), "{error}");
    assert!(error.contains("holds no fold"), "{error}");
}

/// `hft compare --pbo` over a real walk-forward sweep: every point's folds line up, and the
/// probability of backtest overfitting comes out of their strategy returns.
#[test]
fn a_walk_forward_sweep_has_a_probability_of_backtest_overfitting() {
    let p = Project::new("wf-pbo");
    p.write("trainingdata/AAA.csv", &csv_bars(200, 2));
    p.write(
        "experiments/wf.yaml",
        &format!("{EXPERIMENT}matrix:\n  optimizer.lr: [0.001, 0.01, 0.1]\n"),
    );
    let built = p.hft(&["build", "-q"]);
    assert_eq!(built.code, 0, "{}", built.stderr);
    let run = p.hft(&["compare", "--pbo", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let pbo: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(pbo["trials"], 3, "{pbo}");
    assert_eq!(pbo["folds"].as_array().unwrap().len(), 5, "{pbo}");
    // Five folds: the first is dropped for an even split, C(4, 2) = 6 combinations.
    assert_eq!(
        (pbo["blocks"].as_u64(), pbo["combinations"].as_u64()),
        (Some(4), Some(6))
    );
    let value = pbo["pbo"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&value), "{pbo}");
    // The deflated Sharpe counts the three trials on the one dataset.
    let compare = p.hft(&["compare", "--json"]);
    assert!(
        compare.stdout.contains("\"trials\": 3"),
        "{}",
        compare.stdout
    );
    // The model of a walk-forward experiment is its latest fold's: predict and export use it.
    let point = "wf[optimizer.lr=0.01]";
    let predicted = p.hft(&["predict", point, "-o", "forecasts.csv"]);
    assert_eq!(predicted.code, 0, "{}", predicted.stderr);
    let csv = std::fs::read_to_string(p.path("forecasts.csv")).unwrap();
    assert!(csv.starts_with("symbol,timestamp,"), "{csv}");
    assert!(csv.lines().count() > 100, "{csv}");
    let exported = p.hft(&["export", point, "-o", "export"]);
    assert_eq!(exported.code, 0, "{}", exported.stderr);
    let card = std::fs::read_to_string(p.path("export/model.json")).unwrap();
    assert!(
        card.contains("fold_train:4"),
        "the latest fold's training: {card}"
    );
}
