//! The `init` stage: the model's initial weights, keyed on the dataset's shape only.

use std::collections::BTreeMap;

use serde_json::json;

use super::{Stage, StageError, StageInputs, StageOutput};
use crate::config::Experiment;
use crate::store::ActionRecord;

/// The model's initial weights.
pub struct Init;

/// The dataset summary facts the weights' shape depends on.
const SHAPE: [&str; 3] = ["num_features", "sequence_length", "prediction_horizon"];

impl Stage for Init {
    fn name(&self) -> &'static str {
        "init"
    }

    /// 2: the heads' output layers start at zero (an untrained model forecasts persistence).
    /// 3: normal initial values (transformer's learned positions, dit's path embedding) by
    /// `model::normal` (Box-Muller on libm), not rand_distr's ziggurat on the platform's libm.
    /// Plus how far the model's implementation version has moved past 4 (where every model
    /// started): a model whose parameters change re-initialises; the others keep their keys.
    fn version(&self, e: &Experiment) -> u32 {
        let model = crate::model::implementation_version(&e.model.kind).unwrap_or(4);
        3 + model.saturating_sub(4)
    }

    fn config(&self, e: &Experiment) -> serde_json::Value {
        json!({"model": e.model.key_value(), "seed": e.seed})
    }

    /// Initial weights depend on the dataset's shape only, not on its values.
    fn key_inputs(&self, deps: &[&ActionRecord]) -> Vec<(String, String)> {
        deps.iter()
            .flat_map(|r| SHAPE.map(|k| (format!("{}.{k}", r.stage), r.summary[k].to_string())))
            .collect()
    }

    fn execute(&self, inputs: &StageInputs) -> Result<StageOutput, StageError> {
        let e = inputs.experiment;
        let shape = &inputs
            .deps
            .first()
            .ok_or_else(|| StageError::Failed("init has no dataset input".to_string()))?
            .summary;
        let dim = |k: &str| shape[k].as_u64().unwrap_or(0) as usize;
        let dims = crate::model::Dims {
            num_features: dim("num_features"),
            sequence_length: dim("sequence_length"),
            horizon: dim("prediction_horizon"),
        };
        // A model too big for this machine is the config's fault: refused before allocating.
        let available = crate::model::available_memory();
        crate::model::check_fits(&e.model, dims, e.training.batch_size, available).map_err(
            |err| match err {
                crate::model::ModelError::TooLarge(m) => StageError::BadInput(m),
                other => StageError::Failed(other.to_string()),
            },
        )?;
        let weights = crate::model::init_weights(
            &e.model,
            e.seed,
            dim("num_features"),
            dim("sequence_length"),
            dim("prediction_horizon"),
        )
        .map_err(|err| StageError::Failed(err.to_string()))?;
        Ok(StageOutput {
            summary: json!({"model": e.model.kind, "bytes": weights.len()}),
            blobs: BTreeMap::from([("weights".to_string(), weights)]),
            ..StageOutput::default()
        })
    }
}
