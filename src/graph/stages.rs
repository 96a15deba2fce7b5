//! The stages: what each reads from the config, what goes into its key, how it executes.
//!
//! Adding a stage is one variant here plus its arms: `name`, `version`, `config` (the exact
//! subtree it reads), `key_inputs` (which facts of its inputs it depends on) and `execute`.
//! Bump a stage's version whenever its outputs would change for the same inputs (a feature
//! definition, a file layout): old cache entries then stop matching instead of being reused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::json;

use crate::config::{Experiment, OnBadRows, SourceKind, canonical_json};
use crate::data::{self, Bars, Dataset, DatasetParams};
use crate::store::{ActionRecord, Digest, StageKey, Store};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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
}

/// What a stage produced: named blobs plus small facts for downstream keys and reports.
#[derive(Debug, Default)]
pub struct StageOutput {
    pub blobs: BTreeMap<String, Vec<u8>>,
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

/// `builds/partial-<key>.json`: the latest resumable checkpoint of an unfinished training.
#[derive(serde::Serialize, serde::Deserialize)]
struct Partial {
    step: usize,
    digest: String,
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
        let record = self
            .deps
            .get(i)
            .ok_or_else(|| StageError::Failed(format!("missing input #{i}")))?;
        let out = record.outputs.get(name).ok_or_else(|| {
            StageError::Failed(format!("input {} has no output `{name}`", record.stage))
        })?;
        self.store
            .get_blob_shared(&out.digest)
            .ok_or_else(|| StageError::Failed(corrupt_input(record, name)))
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

impl StageKind {
    /// Stage name as shown to users and hashed into keys.
    pub fn name(&self) -> &'static str {
        match self {
            StageKind::Ingest { .. } => "ingest",
            StageKind::Features => "features",
            StageKind::Dataset => "dataset",
            StageKind::Init => "init",
            StageKind::Train => "train",
            StageKind::Evaluate => "evaluate",
        }
    }

    /// Bumped whenever the stage's code would produce different outputs from equal inputs.
    pub fn version(&self) -> u32 {
        match self {
            StageKind::Ingest { .. } => 1,
            StageKind::Features => 1,
            // 2: the blob stores the rows windows are cut from, not the windows.
            StageKind::Dataset => 2,
            StageKind::Init => 1,
            // 2: lstm and gru gates as one GEMM per step, tanh through the sigmoid.
            // 3: lstm on flex as one fused operation per layer, flex's GELU and exp
            // vectorised (other roundings).
            // 4: transformer and dit linear layers as one row matmul over the batch (the
            // weight gradient summed in another order).
            StageKind::Train => 4,
            // 2: metrics version 2 (per-symbol metrics).
            // 3: forecasts by the fused lstm layer and the vectorised GELU and exp.
            // 4: transformer and dit forecasts through row matmuls.
            StageKind::Evaluate => 4,
        }
    }

    /// Canonical JSON of exactly the config this stage reads.
    pub fn config(&self, e: &Experiment) -> String {
        let d = &e.data;
        let value = match self {
            StageKind::Ingest { symbol } => {
                // The file's path is not part of the key: its bytes are (as an input
                // digest); an API snapshot's digest likewise stands for the request.
                let mut v = match d.source {
                    SourceKind::Local | SourceKind::Api => {
                        json!({"data": {"source": d.source, "symbol": symbol}})
                    }
                    SourceKind::Synthetic => json!({"data": {
                        "source": d.source, "symbol": symbol, "synthetic": d.synthetic,
                    }}),
                };
                // Added after the first release: left out at their defaults, so existing
                // keys (and caches) stay valid.
                if d.on_bad_rows != OnBadRows::Error {
                    v["data"]["on_bad_rows"] = json!(d.on_bad_rows);
                }
                if let Some(start) = &d.start {
                    v["data"]["start"] = json!(start.trim());
                }
                if let Some(end) = &d.end {
                    v["data"]["end"] = json!(end.trim());
                }
                v
            }
            StageKind::Features => json!({"data": {"features": d.features}}),
            StageKind::Dataset => {
                let mut v = json!({"data": {
                    "sequence_length": d.sequence_length,
                    "prediction_horizon": d.prediction_horizon,
                    "action_threshold": d.action_threshold,
                    "split": d.split,
                    "relative_prices": d.relative_prices,
                }});
                // Left out at their defaults, as above.
                if d.symbol_id {
                    v["data"]["symbol_id"] = json!(true);
                }
                if !d.cross_sessions {
                    v["data"]["cross_sessions"] = json!(false);
                }
                v
            }
            StageKind::Init => json!({"model": e.model.key_value(), "seed": e.seed}),
            // The model config is read again to rebuild the architecture the weights fit.
            StageKind::Train => json!({
                "model": e.model.key_value(),
                "optimizer": e.optimizer.key_value(),
                "training": e.training.key_value(),
                "seed": e.seed,
            }),
            StageKind::Evaluate => json!({
                "model": e.model.key_value(),
                "evaluation": e.evaluation.key_value(),
            }),
        };
        canonical_json(&value)
    }

    /// The facts about this stage's inputs that go into its key, as (name, value) pairs.
    /// By default every output digest of every dependency.
    pub fn key_inputs(&self, deps: &[&ActionRecord]) -> Vec<(String, String)> {
        if let StageKind::Init = self {
            // Initial weights depend on the dataset's shape only, not on its values.
            return deps
                .iter()
                .flat_map(|r| {
                    ["num_features", "sequence_length", "prediction_horizon"]
                        .map(|k| (format!("{}.{k}", r.stage), r.summary[k].to_string()))
                })
                .collect();
        }
        deps.iter()
            .flat_map(|r| {
                r.outputs
                    .iter()
                    .filter(|(name, _)| self.reads_output(name))
                    .map(|(name, out)| (format!("{}.{name}", r.stage), out.digest.to_hex()))
            })
            .collect()
    }

    /// Whether this stage reads dependency output `name` (and so keys on its digest).
    fn reads_output(&self, name: &str) -> bool {
        match self {
            // The training log is for people; evaluation needs only the checkpoint.
            StageKind::Evaluate => name != "log",
            _ => true,
        }
    }

    pub fn execute(&self, inputs: &StageInputs) -> Result<StageOutput, StageError> {
        let e = inputs.experiment;
        match self {
            StageKind::Ingest { symbol } => {
                let opts = ingest_options(&e.data);
                let ingested = match e.data.source {
                    SourceKind::Local => {
                        if inputs.data_files.is_empty() {
                            return Err(StageError::Failed("ingest has no data file".into()));
                        }
                        let mut files = Vec::with_capacity(inputs.data_files.len());
                        for (i, path) in inputs.data_files.iter().enumerate() {
                            let bytes = std::fs::read(path).map_err(|err| {
                                StageError::BadInput(format!(
                                    "cannot read {}: {err}",
                                    path.display()
                                ))
                            })?;
                            // The key was computed from the digest seen when planning; if
                            // the file changed since, these bytes belong under another key.
                            if inputs.data_digests.get(i) != Some(&Digest::of(&bytes)) {
                                return Err(StageError::Failed(format!(
                                    "{} changed during the build; run the build again",
                                    path.display()
                                )));
                            }
                            files.push((path.clone(), bytes));
                        }
                        data::ingest::parse_files(&files, &opts)
                            .map_err(|err| StageError::BadInput(err.to_string()))?
                    }
                    SourceKind::Api => {
                        let digest = inputs.data_digests.first().ok_or_else(|| {
                            StageError::Failed(format!("no API snapshot for {symbol}"))
                        })?;
                        let bytes = inputs.store.get_blob(digest).ok_or_else(|| {
                            StageError::Failed(format!(
                                "the API snapshot of {symbol} ({}) is missing or corrupt in \
                                 the cache; run `hft fetch` to download it again",
                                digest.short()
                            ))
                        })?;
                        let name = format!("snapshot of {symbol} ({})", digest.short());
                        data::ingest::parse_csv_with(Path::new(&name), &bytes, &opts)
                            .map_err(|err| StageError::BadInput(err.to_string()))?
                    }
                    SourceKind::Synthetic => {
                        let s = &e.data.synthetic;
                        // Each symbol gets its own series from the one configured seed.
                        let seed = s.seed
                            ^ u64::from_le_bytes(
                                Digest::of(symbol.as_bytes()).0[..8]
                                    .try_into()
                                    .unwrap_or([0; 8]),
                            );
                        let bars =
                            data::synthetic::generate(seed, s.bars, s.start_price, s.bar_seconds);
                        let bars = filter_time(bars, opts.start, opts.end).ok_or_else(|| {
                            StageError::BadInput(format!(
                                "synthetic bars of {symbol}: none left between data.start and \
                                 data.end"
                            ))
                        })?;
                        data::ingest::Ingested {
                            bars,
                            dropped: vec![],
                            notes: vec![],
                        }
                    }
                };
                if !ingested.dropped.is_empty() {
                    let first = &ingested.dropped[0];
                    crate::term::warn(&format!(
                        "ingest:{symbol}: dropped {} bad row{} (data.on_bad_rows: drop); first: \
                         {}",
                        ingested.dropped.len(),
                        if ingested.dropped.len() == 1 { "" } else { "s" },
                        first.message
                    ));
                }
                for note in &ingested.notes {
                    crate::term::warn(&format!("ingest:{symbol}: {note}"));
                }
                let mut summary = bars_summary(symbol, &ingested.bars);
                summary["dropped"] = json!(ingested.dropped.len());
                if !ingested.notes.is_empty() {
                    summary["notes"] = json!(ingested.notes);
                }
                Ok(StageOutput {
                    summary,
                    blobs: BTreeMap::from([("bars".to_string(), ingested.bars.to_bytes())]),
                })
            }
            StageKind::Features => {
                let names = &e.data.features;
                // An audit (no key) recomputes from scratch and leaves no memo behind.
                let incremental = inputs.key.is_some();
                let previous = if incremental {
                    previous_features(inputs.store, names, inputs.deps.as_slice())
                } else {
                    BTreeMap::new()
                };
                let mut tables = Vec::with_capacity(inputs.deps.len());
                let mut states = Vec::with_capacity(inputs.deps.len());
                let mut computed_rows = 0usize;
                for (i, record) in inputs.deps.iter().enumerate() {
                    let bars = Bars::from_bytes(&inputs.blob(i, "bars")?)
                        .map_err(|err| StageError::Failed(format!("{}: {err}", record.stage)))?;
                    let symbol = record
                        .stage
                        .strip_prefix("ingest:")
                        .unwrap_or(&record.stage);
                    // Bars only appended since a previous run: compute the new rows alone
                    // (bit-identical to a full run); any mismatch falls back to a full run.
                    let continued = previous
                        .get(symbol)
                        .and_then(|p| p.continuable(&bars))
                        .and_then(|(table, state)| {
                            data::features::extend_owned(table, &state, &bars, symbol, names).ok()
                        });
                    let (table, state, rows) = match continued {
                        Some(done) => done,
                        None => data::features::compute_with_state(&bars, symbol, names)
                            .map(|(t, s)| {
                                let rows = t.timestamps.len();
                                (t, s, rows)
                            })
                            .map_err(|err| StageError::BadInput(format!("{symbol}: {err}")))?,
                    };
                    computed_rows += rows;
                    tables.push(table);
                    states.push(state);
                }
                let rows: usize = tables.iter().map(|t| t.timestamps.len()).sum();
                let blob = data::blob::encode_feature_tables(&tables);
                if incremental {
                    remember_features(inputs.store, names, &inputs.deps, &blob, &states);
                }
                Ok(StageOutput {
                    summary: json!({
                        "rows": rows,
                        "features": e.data.features.len(),
                        // Rows computed in this run; the rest continued a previous run.
                        "computed_rows": computed_rows,
                    }),
                    blobs: BTreeMap::from([("features".to_string(), blob)]),
                })
            }
            StageKind::Dataset => {
                let tables = data::blob::decode_feature_tables(&inputs.blob(0, "features")?)
                    .map_err(|err| StageError::Failed(format!("features: {err}")))?;
                let d = &e.data;
                let params = DatasetParams {
                    sequence_length: d.sequence_length,
                    prediction_horizon: d.prediction_horizon,
                    action_threshold: d.action_threshold,
                    split: [d.split.train, d.split.val, d.split.test],
                    relative_prices: d.relative_prices,
                    symbol_id: d.symbol_id,
                    cross_sessions: d.cross_sessions,
                };
                // The blob holds the rows the windows are cut from, S times smaller than
                // the windows (see `data::blob`).
                let encoded = data::dataset::build_encoded(&tables, &params)
                    .map_err(|err| StageError::BadInput(err.to_string()))?;
                // Evaluation runs on the test split: without a test window, training would
                // run only for evaluate to fail.
                if encoded.n[2] == 0 {
                    return Err(StageError::BadInput(format!(
                        "dataset: the test split has no windows (train {}, val {}, test 0): a \
                         window needs sequence_length + prediction_horizon = {} consecutive \
                         rows inside the test share of each symbol; add bars, raise \
                         data.split.test, or lower data.sequence_length",
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
            StageKind::Init => {
                let shape = &inputs
                    .deps
                    .first()
                    .ok_or_else(|| StageError::Failed("init has no dataset input".to_string()))?
                    .summary;
                let dim = |k: &str| shape[k].as_u64().unwrap_or(0) as usize;
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
                })
            }
            StageKind::Train => {
                let weights = inputs.blob(0, "weights")?;
                let dataset = load_dataset(inputs, 1)?;
                let progress = crate::term::TrainingProgress::new(&e.name, 0);
                let store = inputs.store;
                let partial = inputs.key.map(|k| format!("partial-{k}"));
                // A checkpoint left by an interrupted run, if its blob still verifies.
                let from = partial
                    .as_deref()
                    .and_then(|id| store.get_build_record::<Partial>(id))
                    .and_then(|p| Digest::from_hex(&p.digest))
                    .and_then(|d| store.get_blob(&d));
                let mut save = |step: usize, bytes: Vec<u8>| -> Result<(), String> {
                    let Some(id) = &partial else { return Ok(()) };
                    let blob = store.put_blob(&bytes).map_err(|e| e.to_string())?;
                    let digest = blob.digest.to_hex();
                    store
                        .put_build_record(id, &Partial { step, digest })
                        .map_err(|e| e.to_string())
                };
                let output = crate::train::train_resumable(
                    &dataset,
                    &e.model,
                    &e.optimizer,
                    &e.training,
                    e.seed,
                    &weights,
                    &mut |p: &crate::train::Progress| match &p.finished_epoch {
                        Some(log) => progress.epoch(&epoch_line(log, p.epochs)),
                        None => progress.step(
                            p.epoch,
                            p.step as u64,
                            p.total_steps as u64,
                            p.loss,
                            p.samples_per_sec,
                        ),
                    },
                    Some(crate::train::Resume {
                        from,
                        save: &mut save,
                    }),
                );
                progress.finish();
                let output = output.map_err(|err| StageError::Failed(err.to_string()))?;
                if let Some(id) = &partial {
                    store.remove_build_record(id);
                }
                // Outputs must be pure functions of the key, so wall-clock figures stay out
                // of the log blob and go to the action record's summary instead.
                let mut log = serde_json::to_value(&output.log)
                    .map_err(|err| StageError::Failed(err.to_string()))?;
                if let Some(epochs) = log["epochs"].as_array_mut() {
                    for epoch in epochs {
                        if let Some(o) = epoch.as_object_mut() {
                            o.remove("samples_per_sec");
                        }
                    }
                }
                let log = serde_json::to_vec_pretty(&log)
                    .map_err(|err| StageError::Failed(err.to_string()))?;
                let speeds: Vec<f64> = output
                    .log
                    .epochs
                    .iter()
                    .map(|l| l.samples_per_sec)
                    .collect();
                Ok(StageOutput {
                    summary: json!({
                        // Steps that ran: early stopping or skipped f16 steps end short.
                        "steps": output.log.epochs.last().map(|l| l.step).unwrap_or(0),
                        "planned_steps": output.log.total_steps,
                        "stopped_early": output.log.stopped_early,
                        "best_epoch": output.log.best_epoch,
                        "best_val_loss": output.log.best_val_loss,
                        "final_val_loss": output.log.final_val_loss,
                        "samples_per_sec": speeds,
                    }),
                    blobs: BTreeMap::from([
                        ("checkpoint".to_string(), output.checkpoint),
                        ("log".to_string(), log),
                    ]),
                })
            }
            StageKind::Evaluate => {
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
                })
            }
        }
    }
}

/// `builds/features-<names, symbol>.json`: the last features run of one symbol under one
/// feature list, so that a run over the same bars plus appended ones computes only the new
/// rows. A cache of a cache: anything missing or inconsistent means a full computation.
#[derive(serde::Serialize, serde::Deserialize)]
struct FeaturesMemo {
    /// The ingest `bars` blob the table was computed from.
    bars: String,
    /// The features blob holding the table, and the table's index in it.
    features: String,
    index: usize,
    /// The `FeatureState` after the last bar (its own blob).
    state: String,
}

fn features_memo_id(names: &[String], symbol: &str) -> String {
    let text = format!("features memo v1\0{}\0{symbol}", names.join("\0"));
    format!("features-{}", Digest::of(text.as_bytes()).short())
}

/// A previous run of one symbol, loaded lazily.
struct PreviousFeatures<'a> {
    store: &'a Store,
    memo: FeaturesMemo,
}

impl PreviousFeatures<'_> {
    /// The previous table and state, if `bars` extends the bars they were computed from.
    fn continuable(
        &self,
        bars: &Bars,
    ) -> Option<(data::FeatureTable, data::features::FeatureState)> {
        let old =
            Bars::from_bytes(&self.store.get_blob(&Digest::from_hex(&self.memo.bars)?)?).ok()?;
        let n = old.timestamps.len();
        let prefix = |a: &[f64], b: &[f64]| {
            b.len() >= n && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
        };
        let same_prefix = bars.timestamps.get(..n) == Some(&old.timestamps[..])
            && prefix(&old.open, &bars.open)
            && prefix(&old.high, &bars.high)
            && prefix(&old.low, &bars.low)
            && prefix(&old.close, &bars.close)
            && prefix(&old.volume, &bars.volume);
        if !same_prefix {
            return None;
        }
        let state_bytes = self.store.get_blob(&Digest::from_hex(&self.memo.state)?)?;
        let state = data::features::FeatureState::from_bytes(&state_bytes).ok()?;
        let blob = self
            .store
            .get_blob(&Digest::from_hex(&self.memo.features)?)?;
        let table = data::blob::decode_feature_tables(&blob)
            .ok()?
            .into_iter()
            .nth(self.memo.index)?;
        Some((table, state))
    }
}

/// The remembered previous run of each input symbol.
fn previous_features<'a>(
    store: &'a Store,
    names: &[String],
    deps: &[&ActionRecord],
) -> BTreeMap<String, PreviousFeatures<'a>> {
    deps.iter()
        .filter_map(|r| {
            let symbol = r.stage.strip_prefix("ingest:")?;
            let memo: FeaturesMemo = store.get_build_record(&features_memo_id(names, symbol))?;
            Some((symbol.to_string(), PreviousFeatures { store, memo }))
        })
        .collect()
}

/// Records this run for the next one (best effort: a failure only costs a full run later).
fn remember_features(
    store: &Store,
    names: &[String],
    deps: &[&ActionRecord],
    features_blob: &[u8],
    states: &[data::features::FeatureState],
) {
    let features = Digest::of(features_blob).to_hex();
    for (index, (record, state)) in deps.iter().zip(states).enumerate() {
        let (Some(symbol), Some(bars)) = (
            record.stage.strip_prefix("ingest:"),
            record.outputs.get("bars"),
        ) else {
            continue;
        };
        let Ok(state_blob) = store.put_blob(&state.to_bytes()) else {
            continue;
        };
        let memo = FeaturesMemo {
            bars: bars.digest.to_hex(),
            features: features.clone(),
            index,
            state: state_blob.digest.to_hex(),
        };
        let _ = store.put_build_record(&features_memo_id(names, symbol), &memo);
    }
}

/// What the ingest stage reads of `data` besides its source.
pub fn ingest_options(d: &crate::config::DataConfig) -> data::ingest::IngestOptions {
    let (start, end) = d.time_range();
    data::ingest::IngestOptions {
        on_bad_rows: match d.on_bad_rows {
            OnBadRows::Error => data::ingest::BadRows::Error,
            OnBadRows::Drop => data::ingest::BadRows::Drop,
        },
        start,
        end,
    }
}

/// The bars with `start <= t < end`; `None` when none are left.
fn filter_time(bars: Bars, start: Option<i64>, end: Option<i64>) -> Option<Bars> {
    if start.is_none() && end.is_none() {
        return Some(bars);
    }
    let keep = |t: i64| start.is_none_or(|s| t >= s) && end.is_none_or(|e| t < e);
    let lo = bars.timestamps.iter().position(|&t| keep(t))?;
    let hi = bars.timestamps.iter().rposition(|&t| keep(t))? + 1;
    let cut = |v: &[f64]| v[lo..hi].to_vec();
    Some(Bars {
        timestamps: bars.timestamps[lo..hi].to_vec(),
        open: cut(&bars.open),
        high: cut(&bars.high),
        low: cut(&bars.low),
        close: cut(&bars.close),
        volume: cut(&bars.volume),
    })
}

fn load_dataset(inputs: &StageInputs, i: usize) -> Result<Dataset, StageError> {
    Dataset::from_bytes(&inputs.blob(i, "dataset")?)
        .map_err(|err| StageError::Failed(format!("dataset: {err}")))
}

fn epoch_line(l: &crate::train::EpochLog, epochs: usize) -> String {
    let val = l
        .val_loss
        .map(|v| format!("{v:.4}"))
        .unwrap_or_else(|| "-".to_string());
    format!(
        "epoch {}/{epochs} step {} train loss {:.4} val loss {val} lr {:.2e} {:.0} samples/s",
        l.epoch, l.step, l.train_loss, l.lr, l.samples_per_sec
    )
}

fn bars_summary(symbol: &str, bars: &Bars) -> serde_json::Value {
    json!({
        "symbol": symbol,
        "rows": bars.timestamps.len(),
        "first": bars.timestamps.first(),
        "last": bars.timestamps.last(),
    })
}
