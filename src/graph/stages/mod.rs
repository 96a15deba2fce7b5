//! The stages: what each reads from the config, what goes into its key, how it executes.
//!
//! Each stage kind is one implementation of [`Stage`], in a file of its own, keeping its
//! name, version, the config subtree it reads, the facts of its inputs it keys on and its
//! execution together. [`StageKind`] is the identity plans and records use; it dispatches to
//! the implementation in [`StageKind::stage`], the one place kinds are matched. Adding a
//! stage is one variant, one file, and one arm there. What the key is made of:
//! `graph::key`.

mod continuation;
pub mod dataset;
pub mod evaluate;
pub mod features;
pub mod folds;
pub mod ingest;
pub mod init;
pub mod train;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

pub use ingest::ingest_options;

use crate::config::{Experiment, canonical_json};
use crate::store::{ActionRecord, Digest, OutputRef, StageKey, Store};

/// One kind of stage.
pub trait Stage {
    /// Stage name as shown to users and hashed into keys.
    fn name(&self) -> &'static str;

    /// Bumped whenever the stage's code would produce different outputs from equal inputs
    /// (a feature definition, a file layout, a model's kernels): old cache entries then stop
    /// matching instead of being reused. It may depend on the experiment (train and evaluate
    /// take the version of the model implementation they run).
    fn version(&self, e: &Experiment) -> u32;

    /// Exactly the config this stage reads, rooted at the experiment's top-level keys
    /// (`{"data":{"sequence_length":30}}`), so a diff of two of them names real keys.
    fn config(&self, e: &Experiment) -> serde_json::Value;

    /// The facts about this stage's inputs that go into its key, as (name, value) pairs.
    /// By default every output digest of every dependency.
    fn key_inputs(&self, deps: &[&ActionRecord]) -> Vec<(String, String)> {
        output_digests(deps, |_| true)
    }

    fn execute(&self, inputs: &StageInputs) -> Result<StageOutput, StageError>;
}

/// `stage.output` and digest of every output of `deps` the stage reads.
fn output_digests(deps: &[&ActionRecord], reads: fn(&str) -> bool) -> Vec<(String, String)> {
    deps.iter()
        .flat_map(|r| {
            r.outputs
                .iter()
                .filter(|(name, _)| reads(name))
                .map(|(name, out)| (format!("{}.{name}", r.stage), out.digest.to_hex()))
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum StageKind {
    /// One symbol's bars from its source.
    Ingest { symbol: String },
    /// Feature tables of every symbol.
    Features,
    /// Windowed, split, normalised dataset.
    Dataset,
    /// The model's initial weights.
    Init,
    /// The trained checkpoint and the training log.
    Train,
    /// Test-split metrics and predictions.
    Evaluate,
    /// The walk-forward folds the data holds (`evaluation.walk_forward`).
    FoldPlan,
    /// One walk-forward fold's dataset.
    FoldDataset { fold: usize },
    /// One walk-forward fold's training.
    FoldTrain { fold: usize },
    /// Every fold scored, and all folds' test windows together.
    WalkForward { folds: Vec<usize> },
}

impl StageKind {
    /// The implementation of this kind.
    pub fn stage(&self) -> Box<dyn Stage + '_> {
        match self {
            StageKind::Ingest { symbol } => Box::new(ingest::Ingest { symbol }),
            StageKind::Features => Box::new(features::Features),
            StageKind::Dataset => Box::new(dataset::Dataset),
            StageKind::Init => Box::new(init::Init),
            StageKind::Train => Box::new(train::TRAIN),
            StageKind::Evaluate => Box::new(evaluate::EVALUATE),
            StageKind::FoldPlan => Box::new(folds::FoldPlan),
            StageKind::FoldDataset { fold } => Box::new(folds::FoldDataset { fold: *fold }),
            StageKind::FoldTrain { fold } => Box::new(train::fold_train(*fold)),
            StageKind::WalkForward { folds: list } => Box::new(folds::WalkForward {
                folds: list,
                model_version: folds::walk_forward_version,
            }),
        }
    }

    /// Stage name as shown to users and hashed into keys.
    pub fn name(&self) -> &'static str {
        self.stage().name()
    }

    /// The stage's version for experiment `e` (see [`Stage::version`]).
    pub fn version(&self, e: &Experiment) -> u32 {
        self.stage().version(e)
    }

    /// Canonical JSON of exactly the config this stage reads.
    pub fn config(&self, e: &Experiment) -> String {
        canonical_json(&self.stage().config(e))
    }

    /// The facts about this stage's inputs that go into its key (see [`Stage::key_inputs`]).
    pub fn key_inputs(&self, deps: &[&ActionRecord]) -> Vec<(String, String)> {
        self.stage().key_inputs(deps)
    }

    pub fn execute(&self, inputs: &StageInputs) -> Result<StageOutput, StageError> {
        self.stage().execute(inputs)
    }
}

/// What a stage produced: named blobs plus small facts for downstream keys and reports.
#[derive(Debug, Default)]
pub struct StageOutput {
    pub blobs: BTreeMap<String, Vec<u8>>,
    /// Outputs that are input blobs passed on unchanged: already in the store (or being
    /// written by the stage that produced them), so only named again by this stage's record.
    pub passed: BTreeMap<String, OutputRef>,
    /// Digests the stage already took of some of its `blobs` (for a record of its own), so
    /// that the executor does not hash those bytes a second time.
    pub digests: BTreeMap<String, Digest>,
    pub summary: serde_json::Value,
}

/// Why a stage could not produce its outputs.
#[derive(Debug, Clone, PartialEq)]
pub enum StageError {
    /// The user's data is wrong (bad CSV row, too few bars): exit code 2.
    BadInput(String),
    /// The computation failed (I/O, training diverged, ...): exit code 1.
    Failed(String),
}

impl std::fmt::Display for StageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StageError::BadInput(m) | StageError::Failed(m) => f.write_str(m),
        }
    }
}

/// Everything a stage may read while executing.
pub struct StageInputs<'a> {
    pub experiment: &'a Experiment,
    pub store: &'a Store,
    /// Records of the stages this one depends on, in `StageSpec::deps` order.
    pub deps: Vec<&'a ActionRecord>,
    /// The data files of a local ingest, in reading order.
    pub data_files: &'a [PathBuf],
    /// The digests of the source that went into the key (one per data file, or the API
    /// snapshot's): the bytes read must match them.
    pub data_digests: &'a [Digest],
    /// The stage's key, under which training keeps resumable checkpoints; `None` (audit)
    /// always runs from scratch.
    pub key: Option<&'a StageKey>,
}

impl StageInputs<'_> {
    /// The verified bytes of output `name` of dependency `i`.
    pub fn blob(&self, i: usize, name: &str) -> Result<Arc<Vec<u8>>, StageError> {
        let (record, out) = self.output(i, name)?;
        self.store
            .get_blob_shared(&out.digest)
            .ok_or_else(|| StageError::Failed(corrupt_input(record, name)))
    }

    /// Output `name` of dependency `i` (its record and the blob's reference).
    pub fn output(&self, i: usize, name: &str) -> Result<(&ActionRecord, &OutputRef), StageError> {
        let record = self
            .deps
            .get(i)
            .ok_or_else(|| StageError::Failed(format!("missing input #{i}")))?;
        let out = record.outputs.get(name).ok_or_else(|| {
            StageError::Failed(format!("input {} has no output `{name}`", record.stage))
        })?;
        Ok((record, out))
    }
}

/// The message used when an input blob vanished or failed verification; the executor
/// recognises it and rebuilds the producer.
pub fn corrupt_input(record: &ActionRecord, name: &str) -> String {
    format!(
        "{CORRUPT_INPUT_MARK} output `{name}` of {} ({})",
        record.stage,
        record.key.short()
    )
}
pub const CORRUPT_INPUT_MARK: &str = "corrupt or missing input blob:";

/// The dataset of dependency `i`.
fn load_dataset(inputs: &StageInputs, i: usize) -> Result<crate::data::Dataset, StageError> {
    crate::data::Dataset::from_blobs(&inputs.blob(i, "dataset")?, &inputs.blob(i, "rows")?)
        .map_err(|err| StageError::Failed(format!("dataset: {err}")))
}
