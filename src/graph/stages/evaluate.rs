//! The `evaluate` stage: test-split metrics and predictions. Like training, its version is
//! the model implementation's (forecasts change with the model's kernels).

use std::collections::BTreeMap;

use serde_json::json;

use super::{Stage, StageError, StageInputs, StageOutput, load_dataset, output_digests};
use crate::config::Experiment;
use crate::store::ActionRecord;

/// Test-split metrics and predictions.
pub struct Evaluate {
    /// The version of a model type's implementation (`model.type`).
    pub model_version: fn(&str) -> u32,
}

/// The evaluate stage with the model registry's versions.
pub const EVALUATE: Evaluate = Evaluate { model_version };

/// Evaluation's own version, added to the model implementation's: bumped when the metrics
/// or the backtest change for every model. Both only ever increase, so the sum never comes
/// back to an earlier value for one model type. History of the shared number before versions
/// were per implementation: 2, metrics version 2 (per-symbol metrics); 3, forecasts by the
/// fused lstm layer and the vectorised GELU and exp; 4, transformer and dit forecasts
/// through row matmuls (now every model's registry version 4 plus 0 here). Own versions:
/// 1, metrics version 3 (skill against persistence and the persistence, ridge and
/// always-up baselines); 2, metrics version 4 (`deflated_sharpe`, the one-trial figure);
/// 3, the same bits on every x86-64 CPU: statistics on the `libm` crate, flex's softmax,
/// layer norm and sums in a fixed order, gemm's kc pinned (issue 24).
const OWN_VERSION: u32 = 3;

/// The version of evaluating with the implementation of `model_type`: evaluation's own plus
/// the model registry's ([`crate::model::ModelSpec::version`]).
fn model_version(model_type: &str) -> u32 {
    OWN_VERSION + crate::model::implementation_version(model_type).unwrap_or(0)
}

/// What scoring a checkpoint reads (this stage's and `walk_forward`'s): the model, to
/// rebuild the architecture, and the backtest settings.
pub(super) fn scoring_config(e: &Experiment) -> serde_json::Value {
    json!({
        "model": e.model.key_value(),
        "evaluation": e.evaluation.key_value(),
    })
}

/// The key inputs of a scoring stage: every output of its inputs but training logs, which
/// are for people.
pub(super) fn scoring_inputs(deps: &[&ActionRecord]) -> Vec<(String, String)> {
    output_digests(deps, |name| name != "log")
}

impl Stage for Evaluate {
    fn name(&self) -> &'static str {
        "evaluate"
    }

    fn version(&self, e: &Experiment) -> u32 {
        (self.model_version)(&e.model.kind)
    }

    fn config(&self, e: &Experiment) -> serde_json::Value {
        scoring_config(e)
    }

    fn key_inputs(&self, deps: &[&ActionRecord]) -> Vec<(String, String)> {
        scoring_inputs(deps)
    }

    fn execute(&self, inputs: &StageInputs) -> Result<StageOutput, StageError> {
        let e = inputs.experiment;
        let checkpoint = inputs.blob(0, "checkpoint")?;
        let dataset = load_dataset(inputs, 1)?;
        let out = crate::eval::evaluate(&dataset, &e.model, &checkpoint, &e.evaluation)
            .map_err(|err| StageError::Failed(err.to_string()))?;
        let metrics = serde_json::to_value(&out.metrics)
            .map_err(|err| StageError::Failed(err.to_string()))?;
        let bytes = serde_json::to_vec_pretty(&metrics)
            .map_err(|err| StageError::Failed(err.to_string()))?;
        Ok(StageOutput {
            summary: metrics,
            blobs: BTreeMap::from([
                ("metrics".to_string(), bytes),
                ("predictions".to_string(), out.predictions),
            ]),
            ..StageOutput::default()
        })
    }
}
