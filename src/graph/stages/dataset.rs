//! The `dataset` stage: the windowed, split, normalised dataset, stored as the rows the
//! windows are cut from.

use std::collections::BTreeMap;

use serde_json::json;

use super::{Stage, StageError, StageInputs, StageOutput};
use crate::config::Experiment;
use crate::data::{self, DatasetParams};

/// Windowed, split, normalised dataset.
pub struct Dataset;

impl Stage for Dataset {
    fn name(&self) -> &'static str {
        "dataset"
    }

    /// 2: the blob stores the rows windows are cut from, not the windows.
    fn version(&self, _: &Experiment) -> u32 {
        2
    }

    fn config(&self, e: &Experiment) -> serde_json::Value {
        let d = &e.data;
        let mut v = json!({"data": {
            "sequence_length": d.sequence_length,
            "prediction_horizon": d.prediction_horizon,
            "action_threshold": d.action_threshold,
            "split": d.split,
            "relative_prices": d.relative_prices,
        }});
        // Added after the first release: left out at their defaults, so existing keys (and
        // caches) stay valid.
        if d.symbol_id {
            v["data"]["symbol_id"] = json!(true);
        }
        if !d.cross_sessions {
            v["data"]["cross_sessions"] = json!(false);
        }
        v
    }

    fn execute(&self, inputs: &StageInputs) -> Result<StageOutput, StageError> {
        let tables = data::blob::decode_feature_tables(&inputs.blob(0, "features")?)
            .map_err(|err| StageError::Failed(format!("features: {err}")))?;
        let d = &inputs.experiment.data;
        let params = DatasetParams {
            sequence_length: d.sequence_length,
            prediction_horizon: d.prediction_horizon,
            action_threshold: d.action_threshold,
            split: [d.split.train, d.split.val, d.split.test],
            relative_prices: d.relative_prices,
            symbol_id: d.symbol_id,
            cross_sessions: d.cross_sessions,
        };
        // The blob holds the rows the windows are cut from, S times smaller than the
        // windows (see `data::blob`).
        let encoded = data::dataset::build_encoded(&tables, &params)
            .map_err(|err| StageError::BadInput(err.to_string()))?;
        // Evaluation runs on the test split: without a test window, training would run
        // only for evaluate to fail.
        if encoded.n[2] == 0 {
            return Err(StageError::BadInput(format!(
                "dataset: the test split has no windows (train {}, val {}, test 0): a window \
                 needs sequence_length + prediction_horizon = {} consecutive rows inside the \
                 test share of each symbol; add bars, raise data.split.test, or lower \
                 data.sequence_length",
                encoded.n[0],
                encoded.n[1],
                d.sequence_length + d.prediction_horizon
            )));
        }
        Ok(StageOutput {
            summary: json!({
                "num_features": encoded.num_features,
                "sequence_length": encoded.sequence_length,
                "prediction_horizon": encoded.prediction_horizon,
                "train": encoded.n[0],
                "val": encoded.n[1],
                "test": encoded.n[2],
            }),
            blobs: BTreeMap::from([("dataset".to_string(), encoded.bytes)]),
        })
    }
}
