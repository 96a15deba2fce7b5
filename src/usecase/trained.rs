//! An experiment's trained model, as `hft predict` and `hft export` read it: the records of
//! its dataset, train and (for export) evaluate stages, its checkpoint and the dataset's
//! normalisation, found without executing anything.
//!
//! Where they come from: the current plan's stages when they are built; otherwise the
//! stages of the experiment's last build (its build record), provided every setting those
//! stages read is still what the file says. That is the case of bars appended to the
//! experiment's data (or a refreshed API snapshot): the ingest keys move, the model does
//! not, and new bars are scored with the model trained on the old ones, never refitted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::Experiment;
use crate::data::blob::DatasetHeader;
use crate::graph::exec::{BuildRecord, ExperimentJob, ExperimentReport, explain_config_change};
use crate::graph::stages::StageKind;
use crate::store::{ActionRecord, Digest, Store};

use super::Failure;

/// The stages a trained model is made of, in plan order.
pub const MODEL_STAGES: [&str; 3] = ["dataset", "train", "evaluate"];

/// One experiment's trained model.
#[derive(Debug, Clone)]
pub struct Trained {
    pub name: String,
    pub file: PathBuf,
    pub experiment: Experiment,
    /// Stage id -> action record of the stages asked for.
    pub records: BTreeMap<String, ActionRecord>,
    /// Stage id -> key, of every stage of the build the model comes from.
    pub keys: BTreeMap<String, String>,
    /// Stage id -> output name -> digest (hex), of the same stages.
    pub outputs: BTreeMap<String, BTreeMap<String, String>>,
    pub header: DatasetHeader,
    pub dataset_digest: Digest,
    pub checkpoint: Vec<u8>,
    pub checkpoint_digest: Digest,
    /// Built from the experiment's current data; `false` when its data changed since.
    pub current: bool,
    /// Shown as `warning: ...`.
    pub warnings: Vec<String>,
}

/// The index of the experiment called `name` (or defined in the file `name`).
pub fn pick(name: &str, jobs: &[ExperimentJob]) -> Result<usize, Failure> {
    if let Some(i) = jobs.iter().position(|j| j.plan.name == name) {
        return Ok(i);
    }
    let as_file = Path::new(name);
    if as_file.is_file() {
        let want = std::fs::canonicalize(as_file).ok();
        if let Some(i) = jobs
            .iter()
            .position(|j| std::fs::canonicalize(&j.file).ok() == want)
        {
            return Ok(i);
        }
    }
    let names = jobs.iter().map(|j| j.plan.name.as_str());
    let hint = match crate::config::did_you_mean(name, names) {
        Some(best) => format!("; did you mean `{best}`?"),
        None => String::new(),
    };
    Err(Failure::bad_input(format!(
        "no experiment named `{name}`{hint}"
    )))
}

/// The trained model of `job`, with the records of `stages` (a subset of
/// [`MODEL_STAGES`]); exit 2 when it is not built.
pub fn resolve(
    store: &Store,
    job: &ExperimentJob,
    report: &ExperimentReport,
    stages: &[&str],
) -> Result<Trained, Failure> {
    let name = &job.plan.name;
    let build_hint = format!("`hft build {}`", job.file.display());
    let not_built = || {
        Failure::bad_input(format!(
            "experiment `{name}` is not built (no trained model for it in the cache); build \
             it first: {build_hint}"
        ))
    };
    // With walk-forward, the model is the latest fold's: its dataset (and normalisation),
    // its training, and the walk-forward scoring stand for `dataset`, `train`, `evaluate`.
    let build: Option<BuildRecord> =
        store.get_build_record(&crate::graph::experiment_id(&job.file, name));
    let stage_id = model_stage_ids(job, report, build.as_ref());
    let wanted: Vec<(&str, String)> = stages.iter().map(|s| (*s, stage_id(s))).collect();
    let canonical = |id: &str| -> Option<&str> {
        wanted
            .iter()
            .find(|(_, actual)| actual == id)
            .map(|(name, _)| *name)
    };
    let current = wanted.iter().all(|(_, id)| {
        report
            .stages
            .iter()
            .any(|s| s.id == *id && s.record.is_some())
    });
    let mut keys = BTreeMap::new();
    let mut outputs = BTreeMap::new();
    let mut records = BTreeMap::new();
    let mut warnings = Vec::new();
    let outputs_of = |r: &ActionRecord| -> BTreeMap<String, String> {
        r.outputs
            .iter()
            .map(|(n, o)| (n.clone(), o.digest.to_hex()))
            .collect()
    };
    if current {
        for s in &report.stages {
            if let (Some(key), Some(record)) = (&s.key, &s.record) {
                keys.insert(s.id.clone(), key.0.clone());
                outputs.insert(s.id.clone(), outputs_of(record));
                if let Some(name) = canonical(&s.id) {
                    records.insert(name.to_string(), record.clone());
                }
            }
        }
    } else {
        // The last build's stages, if nothing they read has changed but the data.
        let build = build.as_ref().ok_or_else(not_built)?;
        let mut changed = Vec::new();
        for spec in &job.plan.stages {
            if matches!(spec.kind, StageKind::Ingest { .. }) {
                continue;
            }
            // Evaluation settings matter only to what reads the evaluation.
            if spec.id == "evaluate" && !stages.contains(&"evaluate") {
                continue;
            }
            let Some(prev) = build.stages.iter().find(|s| s.id == spec.id) else {
                return Err(not_built());
            };
            changed.extend(explain_config_change(spec, job, prev));
        }
        if !changed.is_empty() {
            return Err(Failure::bad_input(format!(
                "experiment `{name}` was trained with other settings than its file now has \
                 ({}); the trained model cannot read what these settings describe: rebuild it \
                 with {build_hint}",
                changed.join("; ")
            )));
        }
        for snapshot in &build.stages {
            let Some(record) = store.get_action(&snapshot.key) else {
                continue;
            };
            keys.insert(snapshot.id.clone(), snapshot.key.0.clone());
            outputs.insert(snapshot.id.clone(), outputs_of(&record));
            if let Some(name) = canonical(&snapshot.id) {
                records.insert(name.to_string(), record);
            }
        }
        if stages.iter().any(|s| !records.contains_key(*s)) {
            return Err(not_built());
        }
        warnings.push(format!(
            "the data of `{name}` changed since it was trained: using the model of its last \
             build (train {}), trained on the earlier bars; {build_hint} retrains it",
            records
                .get("train")
                .map_or("?".to_string(), |r| r.key.short().to_string())
        ));
    }
    let blob = |stage: &str, output: &str| -> Result<(Vec<u8>, Digest), Failure> {
        let record = records.get(stage).ok_or_else(not_built)?;
        let out = record.outputs.get(output).ok_or_else(not_built)?;
        let bytes = store.get_blob(&out.digest).ok_or_else(|| {
            Failure::bad_input(format!(
                "the {stage} output of `{name}` ({}) is missing or corrupt in the cache; \
                 rebuild it with {build_hint}",
                out.digest.short()
            ))
        })?;
        Ok((bytes, out.digest))
    };
    let (dataset, dataset_digest) = blob("dataset", "dataset")?;
    let header = DatasetHeader::from_bytes(&dataset).map_err(|e| Failure {
        outcome: super::Outcome::StageFailed,
        errors: vec![format!("the dataset of `{name}` is unreadable: {e}")],
    })?;
    let (checkpoint, checkpoint_digest) = blob("train", "checkpoint")?;
    Ok(Trained {
        name: name.clone(),
        file: job.file.clone(),
        experiment: job.experiment.clone(),
        records,
        keys,
        outputs,
        header,
        dataset_digest,
        checkpoint,
        checkpoint_digest,
        current,
        warnings,
    })
}

/// The stage that stands for `dataset`, `train` or `evaluate` in `job`: itself, or with
/// walk-forward the latest fold's dataset and training and the `walk_forward` scoring (the
/// latest fold of this plan when it is built, else of the last build).
fn model_stage_ids<'a>(
    job: &ExperimentJob,
    report: &'a ExperimentReport,
    build: Option<&'a BuildRecord>,
) -> impl Fn(&str) -> String + 'a {
    let walk_forward = job.experiment.evaluation.walk_forward.is_some();
    let latest = |ids: &mut dyn Iterator<Item = &'a str>| -> Option<usize> {
        ids.filter_map(|id| id.strip_prefix("fold_train:")?.parse().ok())
            .max()
    };
    let fold = if walk_forward {
        latest(
            &mut report
                .stages
                .iter()
                .filter(|s| s.record.is_some())
                .map(|s| s.id.as_str()),
        )
        .or_else(|| build.and_then(|b| latest(&mut b.stages.iter().map(|s| s.id.as_str()))))
    } else {
        None
    };
    move |id: &str| match (fold, id) {
        (Some(k), "dataset") => format!("fold_dataset:{k}"),
        (Some(k), "train") => format!("fold_train:{k}"),
        (Some(_), "evaluate") => "walk_forward".to_string(),
        _ => id.to_string(),
    }
}
