//! The `dataset` stage: the windowed, split, normalised dataset, stored as the rows the
//! windows are cut from.

use std::collections::BTreeMap;

use serde_json::json;

use super::{Stage, StageError, StageInputs, StageOutput};
use crate::config::Experiment;
use crate::data::dataset::{DatasetRows, EncodedDataset};
use crate::data::{self, DatasetParams};

/// Windowed, split, normalised dataset.
pub struct Dataset;

/// The `data` settings windowing reads (this stage's and the walk-forward folds').
pub(super) fn dataset_config(e: &Experiment) -> serde_json::Value {
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

/// The windowing parameters of `e`.
pub(super) fn dataset_params(e: &Experiment) -> DatasetParams {
    let d = &e.data;
    DatasetParams {
        sequence_length: d.sequence_length,
        prediction_horizon: d.prediction_horizon,
        action_threshold: d.action_threshold,
        split: [d.split.train, d.split.val, d.split.test],
        relative_prices: d.relative_prices,
        symbol_id: d.symbol_id,
        cross_sessions: d.cross_sessions,
    }
}

/// The feature tables of dependency `i` (a features stage).
pub(super) fn feature_tables(
    inputs: &StageInputs,
    i: usize,
) -> Result<Vec<data::FeatureTable>, StageError> {
    data::blob::decode_feature_tables(&inputs.blob(i, "features")?)
        .map_err(|err| StageError::Failed(format!("features: {err}")))
}

/// The stage output of a dataset's blobs and its shape: the `dataset` blob, and its `rows`,
/// passed on from input `features` (dependency 0) when they are its tables unchanged.
pub(super) fn dataset_output(
    encoded: EncodedDataset,
    inputs: &StageInputs,
) -> Result<StageOutput, StageError> {
    let mut output = StageOutput {
        summary: json!({
            "num_features": encoded.num_features,
            "sequence_length": encoded.sequence_length,
            "prediction_horizon": encoded.prediction_horizon,
            "train": encoded.n[0],
            "val": encoded.n[1],
            "test": encoded.n[2],
        }),
        blobs: BTreeMap::from([("dataset".to_string(), encoded.bytes)]),
        ..StageOutput::default()
    };
    match encoded.rows {
        DatasetRows::Input => {
            let (_, features) = inputs.output(0, "features")?;
            output.passed.insert("rows".to_string(), features.clone());
        }
        DatasetRows::Encoded(bytes) => {
            output.blobs.insert("rows".to_string(), bytes);
        }
    }
    Ok(output)
}

impl Stage for Dataset {
    fn name(&self) -> &'static str {
        "dataset"
    }

    /// 2: the blob stores the rows windows are cut from, not the windows.
    /// 3: nor the labels, actions, symbols and window ends: runs of window ends and the
    /// closes labels read, from which the decoder derives them (the same values); 58 MB
    /// less to hash and write at 2M rows (blob layout 3, see `data::blob`).
    /// 4: the rows are an output of their own, the features blob itself unless symbol ids
    /// are appended: the dataset no longer writes a second copy of the feature rows (128 MB
    /// at 2M rows; blob layout 4). The same windows and labels.
    fn version(&self, _: &Experiment) -> u32 {
        4
    }

    fn config(&self, e: &Experiment) -> serde_json::Value {
        dataset_config(e)
    }

    fn execute(&self, inputs: &StageInputs) -> Result<StageOutput, StageError> {
        let tables = feature_tables(inputs, 0)?;
        let params = dataset_params(inputs.experiment);
        let d = &inputs.experiment.data;
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
        dataset_output(encoded, inputs)
    }
}
