//! Walk-forward evaluation as build targets (`evaluation.walk_forward`):
//!
//! - `fold_plan` reads the feature tables and lists the folds the data holds;
//! - per fold `k`, `fold_dataset:k` cuts that fold's windows from the feature tables (its
//!   blob depends only on the rows it reads) and `fold_train:k` trains on it from the
//!   experiment's initial weights;
//! - `walk_forward` scores every fold and all folds' test windows together.
//!
//! How many folds there are is known only once the features exist, so the fold stages are
//! added to the plan when `fold_plan` is done ([`expand`], called by the executor). Keys
//! follow the rows: appending bars re-runs `fold_plan` and the (cheap) fold datasets, whose
//! blobs come out identical for the earlier folds, so their trainings are found in the
//! cache and only the new folds train. The fold layout itself: `data::dataset::folds`.

use std::collections::BTreeMap;

use serde_json::json;

use super::dataset::{dataset_config, dataset_output, dataset_params, feature_tables};
use super::{Stage, StageError, StageInputs, StageKind, StageOutput, load_dataset};
use crate::config::{Experiment, WalkForwardConfig, WindowKind};
use crate::data::dataset::folds::{self, FoldParams, FoldWindow};
use crate::graph::StageSpec;
use crate::store::ActionRecord;

/// The fold settings of `w` (the latest `folds` kept when `all` is false: a fold's own rows
/// do not depend on how many folds are kept).
fn fold_params(w: &WalkForwardConfig) -> FoldParams {
    FoldParams {
        window: match w.window {
            WindowKind::Expanding => FoldWindow::Expanding,
            WindowKind::Rolling => FoldWindow::Rolling,
        },
        train_bars: w.train_bars,
        val_bars: w.val_bars(),
        test_bars: w.test_bars,
        step: w.step(),
        embargo: w.embargo,
        max_folds: w.folds,
    }
}

/// The walk-forward settings of `e`, or why a fold stage has none.
fn walk_forward(e: &Experiment) -> Result<&WalkForwardConfig, StageError> {
    e.evaluation
        .walk_forward
        .as_ref()
        .ok_or_else(|| StageError::Failed("evaluation.walk_forward is not set".into()))
}

/// What one fold's rows depend on, resolved (an explicit default gives the same key).
fn fold_key_config(w: &WalkForwardConfig) -> serde_json::Value {
    json!({
        "window": w.window,
        "train_bars": w.train_bars,
        "val_bars": w.val_bars(),
        "test_bars": w.test_bars,
        "step": w.step(),
        "embargo": w.embargo,
    })
}

/// Lists the folds the feature tables hold.
pub struct FoldPlan;

impl Stage for FoldPlan {
    fn name(&self) -> &'static str {
        "fold_plan"
    }

    fn version(&self, _: &Experiment) -> u32 {
        1
    }

    fn config(&self, e: &Experiment) -> serde_json::Value {
        let mut wf = e
            .evaluation
            .walk_forward
            .as_ref()
            .map(fold_key_config)
            .unwrap_or_default();
        if let Some(f) = e.evaluation.walk_forward.as_ref().and_then(|w| w.folds) {
            wf["folds"] = json!(f);
        }
        json!({
            "data": {
                "sequence_length": e.data.sequence_length,
                "prediction_horizon": e.data.prediction_horizon,
            },
            "evaluation": {"walk_forward": wf},
        })
    }

    fn execute(&self, inputs: &StageInputs) -> Result<StageOutput, StageError> {
        let e = inputs.experiment;
        let w = walk_forward(e)?;
        let tables = feature_tables(inputs, 0)?;
        let line = folds::timeline(&tables);
        let p = e.data.prediction_horizon;
        let layout = folds::layout(line.len(), &fold_params(w), p);
        if layout.is_empty() {
            return Err(StageError::BadInput(format!(
                "evaluation.walk_forward: the data holds no fold: {} bars (after the features' \
                 warm-up), and the first fold needs train_bars {} + embargo {} + test_bars {} \
                 + prediction_horizon {p} = {}; add bars or lower train_bars/test_bars",
                line.len(),
                w.train_bars,
                w.embargo,
                w.test_bars,
                w.train_bars + w.embargo + w.test_bars + p
            )));
        }
        let at = |pos: usize| line.get(pos).copied();
        let listed: Vec<serde_json::Value> = layout
            .iter()
            .map(|f| {
                json!({
                    "index": f.index,
                    "bars": {"train": f.train, "val_start": f.val_start, "test": f.test},
                    "train_from": at(f.train.start),
                    "val_from": at(f.val_start),
                    "test_from": at(f.test.start),
                    "test_to": f.test.end.checked_sub(1).and_then(at),
                })
            })
            .collect();
        let indices: Vec<usize> = layout.iter().map(|f| f.index).collect();
        let blob = serde_json::to_vec_pretty(&json!({"bars": line.len(), "folds": listed}))
            .map_err(|err| StageError::Failed(err.to_string()))?;
        Ok(StageOutput {
            summary: json!({"bars": line.len(), "folds": indices}),
            blobs: BTreeMap::from([("fold_plan".to_string(), blob)]),
            ..StageOutput::default()
        })
    }
}

/// One fold's windowed dataset.
pub struct FoldDataset {
    pub fold: usize,
}

impl Stage for FoldDataset {
    fn name(&self) -> &'static str {
        "fold_dataset"
    }

    /// 2: the dataset blob's layout 3 (labels derived from the closes, see `data::blob`).
    /// 3: layout 4 (the fold's rows a blob of their own, `rows`).
    fn version(&self, _: &Experiment) -> u32 {
        3
    }

    fn config(&self, e: &Experiment) -> serde_json::Value {
        let mut v = dataset_config(e);
        if let Some(w) = &e.evaluation.walk_forward {
            v["evaluation"] = json!({"walk_forward": fold_key_config(w), "fold": self.fold});
        }
        v
    }

    fn execute(&self, inputs: &StageInputs) -> Result<StageOutput, StageError> {
        let e = inputs.experiment;
        let w = walk_forward(e)?;
        let tables = feature_tables(inputs, 0)?;
        let line = folds::timeline(&tables);
        let p = e.data.prediction_horizon;
        let fold = folds::fold_at(self.fold, line.len(), &fold_params(w), p).ok_or_else(|| {
            StageError::BadInput(format!(
                "walk-forward fold {} does not fit the {} bars of the data any more",
                self.fold,
                line.len()
            ))
        })?;
        let encoded = folds::build_fold_encoded(&tables, &dataset_params(e), &fold, &line)
            .map_err(|err| StageError::BadInput(err.to_string()))?;
        dataset_output(encoded, inputs)
    }
}

/// Scores every fold's checkpoint on its test windows, and all of them together.
pub struct WalkForward<'a> {
    /// The folds, in the order of the dependencies: `fold_train:k` for each, then
    /// `fold_dataset:k` for each.
    pub folds: &'a [usize],
    /// The version of evaluating with a model type's implementation (as `evaluate`'s).
    pub model_version: fn(&str) -> u32,
}

/// `walk_forward`'s own version, added to the model implementation's.
/// 2: scored with evaluate's version 3 numerics (the same bits on every x86-64 CPU).
const OWN_VERSION: u32 = 2;

/// The version of scoring folds with the implementation of `model_type`.
pub fn walk_forward_version(model_type: &str) -> u32 {
    OWN_VERSION + crate::model::implementation_version(model_type).unwrap_or(0)
}

impl Stage for WalkForward<'_> {
    fn name(&self) -> &'static str {
        "walk_forward"
    }

    fn version(&self, e: &Experiment) -> u32 {
        (self.model_version)(&e.model.kind)
    }

    fn config(&self, e: &Experiment) -> serde_json::Value {
        super::evaluate::scoring_config(e)
    }

    /// Every fold's checkpoint and dataset.
    fn key_inputs(&self, deps: &[&ActionRecord]) -> Vec<(String, String)> {
        super::evaluate::scoring_inputs(deps)
    }

    fn execute(&self, inputs: &StageInputs) -> Result<StageOutput, StageError> {
        let e = inputs.experiment;
        let n = self.folds.len();
        let mut datasets = Vec::with_capacity(n);
        let mut checkpoints = Vec::with_capacity(n);
        for i in 0..n {
            checkpoints.push(inputs.blob(i, "checkpoint")?);
            datasets.push(load_dataset(inputs, n + i)?);
        }
        let fold_inputs: Vec<crate::eval::walk_forward::FoldInput> = self
            .folds
            .iter()
            .zip(datasets.iter().zip(&checkpoints))
            .map(
                |(&index, (dataset, checkpoint))| crate::eval::walk_forward::FoldInput {
                    index,
                    dataset,
                    checkpoint: checkpoint.as_slice(),
                },
            )
            .collect();
        let out = crate::eval::walk_forward::walk_forward(&fold_inputs, &e.model, &e.evaluation)
            .map_err(|err| StageError::Failed(err.to_string()))?;
        let failed = |err: serde_json::Error| StageError::Failed(err.to_string());
        let mut metrics = serde_json::to_value(&out.metrics).map_err(failed)?;
        // What the pooled figures are made of, and each fold's headline figures.
        let table: Vec<serde_json::Value> = out
            .folds
            .iter()
            .map(|f| {
                json!({
                    "index": f.index,
                    "test": f.test,
                    "windows": f.metrics.windows,
                    "mse": f.metrics.price.mse,
                    "persistence_mse": f.metrics.price.persistence_mse,
                    "skill": f.metrics.skill.pooled,
                    "ridge_skill": f.metrics.baselines.as_ref()
                        .and_then(|b| b.ridge.as_ref())
                        .and_then(|r| r.skill.pooled),
                    "directional_accuracy": f.metrics.price.directional_accuracy,
                    "sharpe": f.metrics.backtest.strategy.sharpe,
                })
            })
            .collect();
        metrics["walk_forward"] = json!({"folds": n, "per_fold": table});
        let metrics_bytes = serde_json::to_vec_pretty(&metrics).map_err(failed)?;
        let folds_bytes =
            serde_json::to_vec_pretty(&json!({"folds": out.folds})).map_err(failed)?;
        Ok(StageOutput {
            summary: metrics,
            blobs: BTreeMap::from([
                ("metrics".to_string(), metrics_bytes),
                ("folds".to_string(), folds_bytes),
                ("predictions".to_string(), out.predictions),
            ]),
            ..StageOutput::default()
        })
    }
}

/// The fold stages of a plan whose `fold_plan` stage (index `fold_plan`) listed `summary`'s
/// folds: every `fold_dataset:k` (after the features), every `fold_train:k` (from the
/// initial weights), then `walk_forward`, to be appended to `stages`.
pub fn expand(
    e: &Experiment,
    stages: &[StageSpec],
    fold_plan: usize,
    summary: &serde_json::Value,
) -> Vec<StageSpec> {
    let folds: Vec<usize> = summary["folds"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_u64().and_then(|k| usize::try_from(k).ok()))
                .collect()
        })
        .unwrap_or_default();
    let features = stages.get(fold_plan).and_then(|s| s.deps.first().copied());
    let init = stages.iter().position(|s| s.kind == StageKind::Init);
    let (Some(features), Some(init), false) = (features, init, folds.is_empty()) else {
        return Vec::new();
    };
    let mut out: Vec<StageSpec> = Vec::with_capacity(2 * folds.len() + 1);
    let spec = |kind: StageKind, deps: Vec<usize>| StageSpec {
        id: match &kind {
            StageKind::FoldDataset { fold } | StageKind::FoldTrain { fold } => {
                format!("{}:{fold}", kind.name())
            }
            _ => kind.name().to_string(),
        },
        version: kind.version(e),
        config: kind.config(e),
        kind,
        deps,
        data_files: vec![],
    };
    let first = stages.len();
    for &fold in &folds {
        out.push(spec(StageKind::FoldDataset { fold }, vec![features]));
    }
    for (i, &fold) in folds.iter().enumerate() {
        out.push(spec(StageKind::FoldTrain { fold }, vec![init, first + i]));
    }
    let trains = first + folds.len()..first + 2 * folds.len();
    let deps = trains.chain(first..first + folds.len()).collect();
    out.push(spec(StageKind::WalkForward { folds }, deps));
    out
}
