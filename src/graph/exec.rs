//! Executing plans: complete each stage's key, hit the cache or run the stage, record why.
//!
//! Experiments run in parallel on a rayon pool (`-j`); within one, independent ingest
//! stages run in parallel too. Two experiments (or two processes) that need the same key
//! serialise on the key's lock, and the second finds the first one's record: a stage key
//! executes at most once at a time, and once in total unless its outputs get lost.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::stages::{CORRUPT_INPUT_MARK, StageError, StageInputs, StageKind, StageOutput};
use super::{Plan, StageSpec};
use crate::config::{Experiment, LocationMap};
use crate::store::remote::Remote;
use crate::store::{ActionRecord, Digest, StageKey, Store, now_unix};

/// What one build (or dry run) does with one experiment.
pub struct ExperimentJob<'a> {
    pub file: PathBuf,
    pub experiment: &'a Experiment,
    pub locations: &'a LocationMap,
    pub plan: &'a Plan,
    /// Digests of each ingest stage's source (by stage index): its data files in order
    /// (from the stat cache), or its API snapshot.
    pub data_digests: BTreeMap<usize, Vec<Digest>>,
}

/// The key facts of an ingest stage's source: `data_file` (one file), `data_file.0`,
/// `data_file.1`, ... (train/ then test/), or `snapshot` (an API source).
pub fn source_facts(spec: &StageSpec, digests: &[Digest]) -> Vec<(String, String)> {
    let name = |i: usize| match (spec.data_files.len(), spec.data_files.is_empty()) {
        (_, true) => "snapshot".to_string(),
        (1, _) => "data_file".to_string(),
        _ => format!("data_file.{i}"),
    };
    digests
        .iter()
        .enumerate()
        .map(|(i, d)| (name(i), d.to_hex()))
        .collect()
}

#[derive(Debug, Clone, PartialEq)]
pub enum StageState {
    /// Found in the cache.
    Cached,
    /// Executed in this build.
    Ran {
        secs: f64,
    },
    /// Dry run / status: would execute, and why.
    Stale {
        reason: String,
    },
    /// Not attempted because a stage before it failed.
    Skipped,
    Failed(StageError),
}

#[derive(Debug, Clone)]
pub struct StageReport {
    pub id: String,
    pub kind: StageKind,
    pub key: Option<StageKey>,
    /// The (name, value) facts of its inputs that went into `key`.
    pub inputs: Vec<(String, String)>,
    pub state: StageState,
    pub record: Option<ActionRecord>,
    /// `Cached` because it was pulled from the remote cache in this build.
    pub pulled: bool,
}

#[derive(Debug, Clone)]
pub struct ExperimentReport {
    pub name: String,
    pub file: PathBuf,
    pub stages: Vec<StageReport>,
    /// The build changed the experiment's build record (something new was built or a key
    /// moved): the catalog gets a new row.
    pub recorded: bool,
}

impl ExperimentReport {
    pub fn error(&self) -> Option<&StageError> {
        self.stages.iter().find_map(|s| match &s.state {
            StageState::Failed(e) => Some(e),
            _ => None,
        })
    }
}

/// What the last build of an experiment file saw, per stage: enough to explain later why
/// a stage is stale (`hft status`, `--dry-run`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BuildRecord {
    pub file: String,
    pub name: String,
    pub stages: Vec<StageSnapshot>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageSnapshot {
    pub id: String,
    pub version: u32,
    pub key: StageKey,
    pub config: String,
    pub inputs: Vec<(String, String)>,
}

/// Runs (or, with `dry_run`, only classifies) every experiment. Returns one report each,
/// in the order given.
pub fn run_all(
    store: &Store,
    jobs: &[ExperimentJob],
    threads: usize,
    dry_run: bool,
    on_done: &(dyn Fn(&ExperimentReport) + Sync),
) -> Vec<ExperimentReport> {
    run_all_with_remote(store, None, jobs, threads, dry_run, on_done)
}

/// [`run_all`] with a remote cache: a local miss is looked up there (and pulled) before a
/// stage executes, and what executes is pushed to it.
pub fn run_all_with_remote(
    store: &Store,
    remote: Option<&Remote>,
    jobs: &[ExperimentJob],
    threads: usize,
    dry_run: bool,
    on_done: &(dyn Fn(&ExperimentReport) + Sync),
) -> Vec<ExperimentReport> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build();
    TRAINING_CORES.set_width(training_width(threads, jobs.len()));
    let work = || {
        jobs.par_iter()
            .map(|job| {
                let report = run_experiment(store, remote, job, dry_run);
                on_done(&report);
                report
            })
            .collect()
    };
    match pool {
        Ok(pool) => pool.install(work),
        Err(_) => work(),
    }
}

/// The CPU budget of training: the machine's cores, of which every executing train stage
/// holds `width` while it runs on a rayon pool of `width` threads of its own. A sweep thus
/// runs `cores / width` trainings at a time without oversubscribing the CPU, each on cores
/// no other training's tasks are stolen onto. Results do not depend on the width (training
/// is bit-identical across thread counts).
pub struct CoreBudget {
    free: Mutex<usize>,
    freed: Condvar,
    width: AtomicUsize,
}

/// The process's training budget.
pub static TRAINING_CORES: CoreBudget = CoreBudget {
    free: Mutex::new(usize::MAX),
    freed: Condvar::new(),
    width: AtomicUsize::new(0),
};

/// The cores of this machine.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Threads per training when `experiments` experiments are built `jobs` at a time: the
/// cores shared by the trainings that can run at once (one training alone gets them all).
pub fn training_width(jobs: usize, experiments: usize) -> usize {
    (cores() / jobs.min(experiments).max(1)).max(1)
}

/// Cores held by one training; released on drop.
pub struct CoreSlot<'a> {
    budget: &'a CoreBudget,
    held: usize,
}

impl CoreBudget {
    /// Sets the threads per training (at most the cores).
    pub fn set_width(&self, width: usize) {
        self.width.store(width.clamp(1, cores()), Ordering::SeqCst);
    }

    /// Threads per training: as set, or every core.
    pub fn width(&self) -> usize {
        match self.width.load(Ordering::SeqCst) {
            0 => cores(),
            w => w,
        }
    }

    /// Waits until `width` cores are free and holds them.
    pub fn acquire(&self, width: usize) -> CoreSlot<'_> {
        let total = cores();
        let width = width.clamp(1, total);
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        if *free == usize::MAX {
            *free = total;
        }
        while *free < width {
            free = self.freed.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= width;
        CoreSlot {
            budget: self,
            held: width,
        }
    }
}

impl Drop for CoreSlot<'_> {
    fn drop(&mut self) {
        let mut free = self.budget.free.lock().unwrap_or_else(|p| p.into_inner());
        *free += self.held;
        self.budget.freed.notify_all();
    }
}

/// Executes a stage on a thread of its own, outside the experiment pool. Stage code may use
/// rayon (burn does): on a pool worker, a parallel op waiting for its tasks could steal
/// another experiment's job and block on a lock this very thread holds (a training with
/// dropout holds `model`'s RNG lock). Off the pool, its parallel ops use rayon's global pool and the pool's
/// workers only wait. A panic in a stage fails that stage, not the whole build.
///
/// A train stage first takes its cores from [`TRAINING_CORES`] and runs on a pool of that
/// many threads.
pub fn execute_isolated(kind: &StageKind, inputs: &StageInputs) -> Result<StageOutput, StageError> {
    let training = matches!(kind, StageKind::Train);
    let width = TRAINING_CORES.width();
    let _slot = training.then(|| TRAINING_CORES.acquire(width));
    let pool = training
        .then(|| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(width)
                .build()
                .ok()
        })
        .flatten();
    std::thread::scope(|scope| {
        let handle = scope.spawn(|| match &pool {
            Some(pool) => pool.install(|| kind.execute(inputs)),
            None => kind.execute(inputs),
        });
        handle.join().unwrap_or_else(|panic| {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".to_string());
            Err(StageError::Failed(format!(
                "internal error in stage {}: {message}",
                kind.name()
            )))
        })
    })
}

fn run_experiment(
    store: &Store,
    remote: Option<&Remote>,
    job: &ExperimentJob,
    dry_run: bool,
) -> ExperimentReport {
    let previous: Option<BuildRecord> =
        store.get_build_record(&super::experiment_id(&job.file, &job.plan.name));
    // A corrupt blob found while executing means its producer must run again; that can
    // cascade at most once per stage.
    let mut attempts = job.plan.stages.len() + 1;
    // Stages executed by an earlier attempt show as cached in later ones; report them as run.
    let mut ran_before: BTreeMap<StageKey, f64> = BTreeMap::new();
    let mut pulled_before: std::collections::BTreeSet<StageKey> = Default::default();
    loop {
        let mut report = run_experiment_once(store, remote, job, dry_run, previous.as_ref());
        for s in &mut report.stages {
            let Some(key) = &s.key else { continue };
            if s.pulled {
                pulled_before.insert(key.clone());
            } else if s.state == StageState::Cached && pulled_before.contains(key) {
                s.pulled = true;
            }
            match (&s.state, ran_before.get(key)) {
                (StageState::Ran { secs }, _) => {
                    ran_before.insert(key.clone(), *secs);
                }
                (StageState::Cached, Some(secs)) => s.state = StageState::Ran { secs: *secs },
                _ => {}
            }
        }
        let corrupt = report.stages.iter().any(|s| {
            matches!(&s.state, StageState::Failed(StageError::Failed(m)) if m.starts_with(CORRUPT_INPUT_MARK))
        });
        attempts -= 1;
        if !corrupt || attempts == 0 {
            if !dry_run {
                report.recorded = save_build_record(store, job, &report, previous.as_ref());
            }
            return report;
        }
        // Forget every record whose outputs do not verify, then go again.
        for s in &report.stages {
            if let Some(record) = &s.record
                && record
                    .outputs
                    .values()
                    .any(|o| store.get_blob(&o.digest).is_none())
            {
                store.forget_action(&record.key);
            }
        }
    }
}

fn run_experiment_once(
    store: &Store,
    remote: Option<&Remote>,
    job: &ExperimentJob,
    dry_run: bool,
    previous: Option<&BuildRecord>,
) -> ExperimentReport {
    let stages = &job.plan.stages;
    let slots: Vec<Mutex<Option<StageReport>>> = stages.iter().map(|_| Mutex::new(None)).collect();
    // Ingest stages have no dependencies: run them side by side.
    let roots: Vec<usize> = (0..stages.len())
        .filter(|&i| stages[i].deps.is_empty())
        .collect();
    roots.par_iter().for_each(|&i| {
        let r = run_stage(store, remote, job, i, &[], dry_run, previous);
        if let Ok(mut slot) = slots[i].lock() {
            *slot = Some(r);
        }
    });
    let mut done: Vec<Option<StageReport>> = slots
        .into_iter()
        .map(|m| m.into_inner().unwrap_or(None))
        .collect();
    for i in 0..stages.len() {
        if done[i].is_some() {
            continue;
        }
        let deps: Vec<&StageReport> = stages[i]
            .deps
            .iter()
            .filter_map(|&d| done[d].as_ref())
            .collect();
        let r = run_stage(store, remote, job, i, &deps, dry_run, previous);
        done[i] = Some(r);
    }
    ExperimentReport {
        name: job.plan.name.clone(),
        file: job.file.clone(),
        stages: done.into_iter().flatten().collect(),
        recorded: false,
    }
}

/// The key of a stage given its dependencies' records (and data file digest), with the
/// input facts that went into it.
fn stage_key(
    spec: &StageSpec,
    deps: &[&ActionRecord],
    data: &[Digest],
) -> (StageKey, Vec<(String, String)>) {
    let mut inputs = spec.kind.key_inputs(deps);
    inputs.extend(source_facts(spec, data));
    (key_from_inputs(spec, &inputs), inputs)
}

/// The key of a stage from its config and input facts (`hft build --locked` recomputes keys
/// from the facts recorded in the lock).
pub fn key_from_inputs(spec: &StageSpec, inputs: &[(String, String)]) -> StageKey {
    let version = spec.kind.version().to_le_bytes();
    let mut parts: Vec<&[u8]> = vec![
        spec.kind.name().as_bytes(),
        &version,
        spec.config.as_bytes(),
    ];
    for (name, value) in inputs {
        parts.push(name.as_bytes());
        parts.push(value.as_bytes());
    }
    StageKey::compute(&parts)
}

fn run_stage(
    store: &Store,
    remote: Option<&Remote>,
    job: &ExperimentJob,
    i: usize,
    deps: &[&StageReport],
    dry_run: bool,
    previous: Option<&BuildRecord>,
) -> StageReport {
    let spec = &job.plan.stages[i];
    let mut report = StageReport {
        id: spec.id.clone(),
        kind: spec.kind.clone(),
        key: None,
        inputs: Vec::new(),
        state: StageState::Skipped,
        record: None,
        pulled: false,
    };
    let dep_records: Vec<&ActionRecord> = deps.iter().filter_map(|d| d.record.as_ref()).collect();
    if dep_records.len() != spec.deps.len() {
        // Some input is not available: failed upstream, or (dry run) not built yet.
        if dry_run {
            let pending: Vec<&str> = deps
                .iter()
                .filter(|d| d.record.is_none())
                .map(|d| d.id.as_str())
                .collect();
            let mut reasons = explain_config(spec, job, previous);
            reasons.push(format!(
                "after {} re-run{}",
                pending.join(", "),
                if pending.len() > 1 { "" } else { "s" }
            ));
            report.state = StageState::Stale {
                reason: reasons.join("; "),
            };
        }
        return report;
    }
    let digests = job.data_digests.get(&i).map_or(&[][..], Vec::as_slice);
    let (key, inputs) = stage_key(spec, &dep_records, digests);
    report.key = Some(key.clone());
    report.inputs = inputs.clone();
    if let Some(record) = store.get_action(&key) {
        report.state = StageState::Cached;
        report.record = Some(record);
        return report;
    }
    if dry_run {
        report.state = StageState::Stale {
            reason: explain(spec, &key, &inputs, job, previous),
        };
        return report;
    }
    let _lock = match store.lock_stage(&key) {
        Ok(lock) => lock,
        Err(e) => {
            report.state =
                StageState::Failed(StageError::Failed(format!("cannot lock {key}: {e}")));
            return report;
        }
    };
    // Another build may have produced it while we waited for the lock.
    if let Some(record) = store.get_action(&key) {
        report.state = StageState::Cached;
        report.record = Some(record);
        return report;
    }
    // A shared remote cache first: a stage someone else built is pulled, not run.
    if let Some(remote) = remote {
        match remote.fetch(store, &key) {
            Ok(None) => {}
            Ok(Some(record)) => {
                report.state = StageState::Cached;
                report.pulled = true;
                report.record = Some(record);
                return report;
            }
            Err(poisoned) => {
                report.state = StageState::Failed(StageError::Failed(poisoned.to_string()));
                return report;
            }
        }
    }
    // `--executor slurm`: the stage runs as a job while this thread holds the key's lock.
    if let Some(slurm) = super::slurm::executor_for(&spec.kind) {
        let started = Instant::now();
        match slurm.run_stage(store, job, spec, &key) {
            Ok(record) => {
                if let Some(r) = remote {
                    r.push_from_store(store, &record);
                }
                report.state = StageState::Ran {
                    secs: started.elapsed().as_secs_f64(),
                };
                report.record = Some(record);
            }
            Err(e) => report.state = StageState::Failed(e),
        }
        return report;
    }
    let started = Instant::now();
    let stage_inputs = StageInputs {
        experiment: job.experiment,
        store,
        deps: dep_records,
        data_files: &spec.data_files,
        data_digests: digests,
        key: Some(&key),
    };
    let output = match execute_isolated(&spec.kind, &stage_inputs) {
        Ok(o) => o,
        Err(e) => {
            report.state = StageState::Failed(e);
            return report;
        }
    };
    let mut outputs = BTreeMap::new();
    let StageOutput { blobs, summary } = output;
    for (name, bytes) in blobs {
        // Kept in memory for the stages after this one in the same build.
        match store.put_blob_owned(bytes) {
            Ok(r) => {
                outputs.insert(name, r);
            }
            Err(e) => {
                report.state = StageState::Failed(StageError::Failed(format!(
                    "cannot store output `{name}`: {e}"
                )));
                return report;
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let record = ActionRecord {
        key: key.clone(),
        stage: spec.id.clone(),
        outputs,
        summary,
        hft_version: env!("CARGO_PKG_VERSION").to_string(),
        wall_ms: (secs * 1000.0) as u64,
        created: now_unix(),
    };
    if let Err(e) = store.put_action(&record) {
        report.state = StageState::Failed(StageError::Failed(e.to_string()));
        return report;
    }
    if let Some(remote) = remote {
        remote.push_from_store(store, &record);
    }
    report.state = StageState::Ran { secs };
    report.record = Some(record);
    report
}

fn save_build_record(
    store: &Store,
    job: &ExperimentJob,
    report: &ExperimentReport,
    before: Option<&BuildRecord>,
) -> bool {
    let id = super::experiment_id(&job.file, &job.plan.name);
    let mut record = before.cloned().unwrap_or_default();
    record.file = job.file.display().to_string();
    record.name = report.name.clone();
    for (spec, stage) in job.plan.stages.iter().zip(&report.stages) {
        let Some(key) = &stage.key else { continue };
        if stage.record.is_none() {
            continue;
        }
        let snapshot = StageSnapshot {
            id: spec.id.clone(),
            version: spec.kind.version(),
            key: key.clone(),
            config: spec.config.clone(),
            inputs: stage.inputs.clone(),
        };
        match record.stages.iter_mut().find(|s| s.id == spec.id) {
            Some(s) => *s = snapshot,
            None => record.stages.push(snapshot),
        }
    }
    // Stages the experiment no longer has (a removed symbol) are dropped.
    if !job.plan.truncated {
        record
            .stages
            .retain(|s| job.plan.stages.iter().any(|p| p.id == s.id));
    }
    // A no-op build must stay cheap: no write (and no fsync) when nothing changed.
    if before == Some(&record) {
        return false;
    }
    if let Err(e) = store.put_build_record(&id, &record) {
        crate::term::warn(&format!(
            "cannot record the build of {}: {e}",
            job.file.display()
        ));
    }
    true
}

/// Why `spec` (whose key is known and not cached) must run.
fn explain(
    spec: &StageSpec,
    key: &StageKey,
    inputs: &[(String, String)],
    job: &ExperimentJob,
    previous: Option<&BuildRecord>,
) -> String {
    let Some(prev) = previous.and_then(|p| p.stages.iter().find(|s| s.id == spec.id)) else {
        return "never built".to_string();
    };
    if prev.key == *key {
        return "its outputs are gone from the cache (deleted or corrupt)".to_string();
    }
    let mut reasons = explain_config(spec, job, previous);
    for (name, value) in inputs {
        let before = prev.inputs.iter().find(|(n, _)| n == name).map(|(_, v)| v);
        if before != Some(value) {
            let file_index = match name.strip_prefix("data_file") {
                Some("") => Some(0),
                Some(n) => n.strip_prefix('.').and_then(|i| i.parse::<usize>().ok()),
                None => None,
            };
            reasons.push(if let Some(i) = file_index {
                let file = spec
                    .data_files
                    .get(i)
                    .map_or(Path::new("?"), PathBuf::as_path);
                format!("data file {} changed", file.display())
            } else if name == "snapshot" {
                "API snapshot refreshed (hft fetch)".to_string()
            } else if before.is_none() {
                format!("input {name} added")
            } else {
                format!("input {name} changed")
            });
        }
    }
    let names = |v: &[(String, String)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    let (now, before) = (names(inputs), names(&prev.inputs));
    for gone in before.iter().filter(|n| !now.contains(n)) {
        reasons.push(format!("input {gone} removed"));
    }
    if reasons.is_empty() && now != before {
        reasons.push(format!(
            "inputs reordered: [{}] -> [{}]",
            before.join(", "),
            now.join(", ")
        ));
    }
    if reasons.is_empty() {
        reasons.push("its key changed".to_string());
    }
    reasons.join("; ")
}

/// Config and version differences against the last build, naming keys and positions.
fn explain_config(
    spec: &StageSpec,
    job: &ExperimentJob,
    previous: Option<&BuildRecord>,
) -> Vec<String> {
    match previous.and_then(|p| p.stages.iter().find(|s| s.id == spec.id)) {
        Some(prev) => explain_config_change(spec, job, prev),
        None => vec![],
    }
}

/// Config and version differences between a recorded stage and the current one:
/// `optimizer.lr 0.001 -> 0.002 (experiments/a.yaml:7)`.
pub fn explain_config_change(
    spec: &StageSpec,
    job: &ExperimentJob,
    prev: &StageSnapshot,
) -> Vec<String> {
    let mut reasons = Vec::new();
    if prev.version != spec.kind.version() {
        reasons.push(format!(
            "stage version {} -> {}",
            prev.version,
            spec.kind.version()
        ));
    }
    let before: serde_json::Value = serde_json::from_str(&prev.config).unwrap_or_default();
    let after: serde_json::Value = serde_json::from_str(&spec.config).unwrap_or_default();
    let leaves = |v: &serde_json::Value| -> BTreeMap<String, String> {
        crate::config::json_leaves(v, false)
            .into_iter()
            .map(|(k, v)| (k, v.to_string()))
            .collect()
    };
    let (a, b) = (leaves(&before), leaves(&after));
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for k in keys {
        let (old, new) = (a.get(k), b.get(k));
        if old != new {
            let origin = job.locations.find(k);
            let show = |v: Option<&String>| v.cloned().unwrap_or_else(|| "(unset)".to_string());
            reasons.push(format!("{k} {} -> {} ({origin})", show(old), show(new)));
        }
    }
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn trainings_share_the_cores_and_never_exceed_them() {
        let cores = cores();
        assert_eq!(training_width(1, 10), cores, "one at a time: every core");
        assert_eq!(training_width(64, 1), cores, "one experiment: every core");
        assert_eq!(training_width(64, 64), 1);
        assert_eq!(training_width(2, 8), (cores / 2).max(1));
        let budget = CoreBudget {
            free: Mutex::new(usize::MAX),
            freed: Condvar::new(),
            width: AtomicUsize::new(0),
        };
        assert_eq!(budget.width(), cores);
        budget.set_width(1);
        let (running, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        std::thread::scope(|scope| {
            for _ in 0..4 * cores {
                scope.spawn(|| {
                    let _slot = budget.acquire(budget.width());
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    running.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        assert!(most.load(Ordering::SeqCst) <= cores);
        assert_eq!(*budget.free.lock().unwrap(), cores, "every slot returned");
        // A width over the cores is held as all of them, never waited on forever.
        drop(budget.acquire(cores + 5));
    }
}
