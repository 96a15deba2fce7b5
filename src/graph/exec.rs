//! Executing plans: complete each stage's key, hit the cache or run the stage, record why.
//!
//! Experiments run in parallel on a rayon pool (`-j`); within one, independent ingest
//! stages run in parallel too. Two experiments (or two processes) that need the same key
//! serialise on the key's lock, and the second finds the first one's record: a stage key
//! executes at most once at a time, and once in total unless its outputs get lost.
//!
//! What goes into a key: `graph::key`. The store protocol of one stage: [`run_stage`].
//! Where a stage executes (this process, Slurm): `graph::executor`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::Plan;
use super::executor::{Executed, Executor, LocalExecutor, StageJob, Unstored};
use super::explain::{explain, explain_config};
use super::key::stage_key;
use super::stages::{CORRUPT_INPUT_MARK, StageError, StageKind};
use crate::config::{Experiment, LocationMap};
use crate::store::remote::Remote;
use crate::store::{ActionRecord, Digest, StageKey, StageLock, Store};

// Their old paths, kept for callers.
pub use super::executor::{CoreBudget, CoreSlot, TRAINING_CORES, execute_isolated, training_width};
pub use super::explain::explain_config_change;
pub use super::key::{key_from_inputs, source_facts};

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
    /// Seconds it waited for cores or the RNG before or while it ran: not in `Ran`'s
    /// seconds, which are its work (`crate::waits`).
    pub waited: f64,
}

#[derive(Debug, Clone)]
pub struct ExperimentReport {
    pub name: String,
    pub file: PathBuf,
    /// The plan as executed: the job's, plus the walk-forward fold stages once `fold_plan`
    /// has listed them (`stages::folds::expand`). `stages[i]` reports `plan.stages[i]`.
    pub plan: Plan,
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

/// Runs (or, with `dry_run`, only classifies) every experiment locally, without a remote
/// cache. Returns one report each, in the order given.
pub fn run_all(
    store: &Store,
    jobs: &[ExperimentJob],
    threads: usize,
    dry_run: bool,
    on_done: &(dyn Fn(&ExperimentReport) + Sync),
) -> Vec<ExperimentReport> {
    run_all_on(&LocalExecutor, store, None, jobs, threads, dry_run, on_done)
}

/// Runs (or classifies) every experiment: stages whose keys are missing locally are looked
/// up in `remote` (and pulled) first, then execute on `executor` (and are pushed to
/// `remote`). Returns one report each, in the order given.
pub fn run_all_on(
    executor: &dyn Executor,
    store: &Store,
    remote: Option<&Remote>,
    jobs: &[ExperimentJob],
    threads: usize,
    dry_run: bool,
    on_done: &(dyn Fn(&ExperimentReport) + Sync),
) -> Vec<ExperimentReport> {
    let threads = threads.max(1);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build();
    TRAINING_CORES.set_width(training_width(threads, jobs.len()));
    // One at a time, the order changes nothing but the order of the output.
    let order = if dry_run || threads == 1 {
        (0..jobs.len()).collect()
    } else {
        start_order(jobs.iter().map(|job| job.experiment))
    };
    // Each worker takes the next experiment in `order` when it is free.
    let next = AtomicUsize::new(0);
    let reports: Vec<OnceLock<ExperimentReport>> = jobs.iter().map(|_| OnceLock::new()).collect();
    let worker = || {
        while let Some(&index) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
            let report = run_experiment(executor, store, remote, &jobs[index], dry_run);
            on_done(&report);
            let _ = reports[index].set(report);
        }
    };
    let work = || {
        rayon::scope(|scope| {
            for _ in 0..threads.min(jobs.len()) {
                scope.spawn(|_| worker());
            }
        })
    };
    match pool {
        Ok(pool) => pool.install(work),
        Err(_) => work(),
    }
    // Every index is taken once, and a worker's panic would have ended the scope.
    reports
        .into_iter()
        .filter_map(OnceLock::into_inner)
        .collect()
}

/// The order a build starts experiments in: the costliest training first (longest
/// processing time first), so that the trainings left running at the end of a sweep,
/// while other cores idle, are short; equal costs keep the order given. Results do not
/// depend on it. The cost is `model::cost`'s per-window estimate times the epochs (and
/// the walk-forward folds, when capped).
fn start_order<'a>(experiments: impl Iterator<Item = &'a Experiment>) -> Vec<usize> {
    let cost = |e: &Experiment| {
        let dims = crate::model::Dims {
            num_features: e.data.features.len(),
            sequence_length: e.data.sequence_length,
            horizon: e.data.prediction_horizon,
        };
        let folds = e
            .evaluation
            .walk_forward
            .as_ref()
            .map_or(1, |w| w.folds.unwrap_or(1));
        crate::model::cost::forward_cost(&e.model, dims).unwrap_or(0.0)
            * e.training.epochs.max(1) as f64
            * folds.max(1) as f64
    };
    let costs: Vec<f64> = experiments.map(cost).collect();
    let mut order: Vec<usize> = (0..costs.len()).collect();
    order.sort_by(|&a, &b| costs[b].total_cmp(&costs[a]));
    order
}

fn run_experiment(
    executor: &dyn Executor,
    store: &Store,
    remote: Option<&Remote>,
    job: &ExperimentJob,
    dry_run: bool,
) -> ExperimentReport {
    let previous = Previous::new(store, job);
    // A corrupt blob found while executing means its producer must run again; that can
    // cascade at most once per stage.
    let mut attempts = job.plan.stages.len() + 1;
    // Stages executed by an earlier attempt show as cached in later ones; report them as run.
    let mut ran_before: BTreeMap<StageKey, f64> = BTreeMap::new();
    let mut pulled_before: std::collections::BTreeSet<StageKey> = Default::default();
    loop {
        let mut report = run_experiment_once(executor, store, remote, job, dry_run, &previous);
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
                report.recorded = save_build_record(store, job, &report, previous.get());
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

/// An experiment's last build record, read when first needed: a dry run needs it only to
/// explain a stale stage, and 10,000 experiments' status would otherwise read 10,000.
struct Previous<'a> {
    store: &'a Store,
    job: &'a ExperimentJob<'a>,
    record: std::sync::OnceLock<Option<BuildRecord>>,
}

impl<'a> Previous<'a> {
    fn new(store: &'a Store, job: &'a ExperimentJob<'a>) -> Previous<'a> {
        Previous {
            store,
            job,
            record: std::sync::OnceLock::new(),
        }
    }

    fn get(&self) -> Option<&BuildRecord> {
        self.record
            .get_or_init(|| {
                let id = super::experiment_id(&self.job.file, &self.job.plan.name);
                self.store.get_build_record(&id)
            })
            .as_ref()
    }
}

/// Stages' outputs being stored on threads of their own while later stages run
/// ([`super::executor::Unstored`]), each with the index of its stage; joined before the
/// experiment's report is final.
struct Background<'scope, 'env> {
    scope: &'scope std::thread::Scope<'scope, 'env>,
    writes: Mutex<
        Vec<(
            usize,
            std::thread::ScopedJoinHandle<'scope, std::io::Result<()>>,
        )>,
    >,
}

impl<'scope, 'env> Background<'scope, 'env> {
    /// Stores `unstored` and then `record`, and only then releases the key's `lock`: another
    /// build (or experiment) that needs the key waits for the lock and then finds the record.
    fn store(
        &self,
        stage: usize,
        store: &'env Store,
        unstored: Unstored,
        record: ActionRecord,
        lock: StageLock,
    ) {
        let handle = self.scope.spawn(move || {
            let stored = unstored.store(store, &record);
            drop(lock);
            stored
        });
        self.writes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((stage, handle));
    }

    /// Waits for every write; a stage whose outputs could not be stored fails, without a
    /// record. (Stages after it that ran are sound: their records name their own outputs.)
    fn join(self, done: &mut [Option<StageReport>]) {
        let writes = self.writes.into_inner().unwrap_or_else(|p| p.into_inner());
        for (stage, handle) in writes {
            let error = match handle.join() {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => e.to_string(),
                Err(_) => "the writer panicked".to_string(),
            };
            if let Some(report) = done.get_mut(stage).and_then(Option::as_mut) {
                report.state = not_stored(error);
                report.record = None;
            }
        }
    }
}

/// The state of a stage whose outputs could not be stored.
fn not_stored(error: impl std::fmt::Display) -> StageState {
    StageState::Failed(StageError::Failed(format!("cannot store outputs: {error}")))
}

fn run_experiment_once(
    executor: &dyn Executor,
    store: &Store,
    remote: Option<&Remote>,
    job: &ExperimentJob,
    dry_run: bool,
    previous: &Previous,
) -> ExperimentReport {
    std::thread::scope(|scope| {
        let background = Background {
            scope,
            writes: Mutex::new(Vec::new()),
        };
        let bg = &background;
        let mut plan = job.plan.clone();
        let stages = &plan.stages;
        let slots: Vec<Mutex<Option<StageReport>>> =
            stages.iter().map(|_| Mutex::new(None)).collect();
        // Ingest stages have no dependencies: run them side by side.
        let roots: Vec<usize> = (0..stages.len())
            .filter(|&i| stages[i].deps.is_empty())
            .collect();
        roots.par_iter().for_each(|&i| {
            let r = run_stage(
                executor,
                store,
                remote,
                job,
                &stages[i],
                i,
                &[],
                dry_run,
                previous,
                bg,
            );
            if let Ok(mut slot) = slots[i].lock() {
                *slot = Some(r);
            }
        });
        let mut done: Vec<Option<StageReport>> = slots
            .into_iter()
            .map(|m| m.into_inner().unwrap_or(None))
            .collect();
        // Data files read when planning (`StatCache::keeping_bytes`) and not taken by an
        // ingest that ran (it was cached, or failed first) are not needed any more.
        for digest in roots
            .iter()
            .filter_map(|i| job.data_digests.get(i))
            .flatten()
        {
            store.take_data_bytes(digest);
        }
        let mut i = 0;
        while i < plan.stages.len() {
            if done[i].is_none() {
                let spec = &plan.stages[i];
                let deps: Vec<&StageReport> =
                    spec.deps.iter().filter_map(|&d| done[d].as_ref()).collect();
                let r = run_stage(
                    executor, store, remote, job, spec, i, &deps, dry_run, previous, bg,
                );
                done[i] = Some(r);
            }
            // The fold stages exist once the folds are counted.
            if plan.stages[i].kind == StageKind::FoldPlan
                && let Some(record) = done[i].as_ref().and_then(|r| r.record.as_ref())
            {
                let more =
                    super::stages::folds::expand(job.experiment, &plan.stages, i, &record.summary);
                plan.stages.extend(more);
                done.resize_with(plan.stages.len(), || None);
            }
            i += 1;
        }
        background.join(&mut done);
        ExperimentReport {
            name: job.plan.name.clone(),
            file: job.file.clone(),
            plan,
            stages: done.into_iter().flatten().collect(),
            recorded: false,
        }
    })
}

/// One stage: complete its key, then the store protocol. Every step is as it has always
/// been; the lock file, the lockfile (`hft.lock`) and the remote cache rely on its order.
///
/// 1. Key: from the dependencies' records and the source digests (`graph::key`). A missing
///    input (failed upstream, or not built in a dry run) skips the stage.
/// 2. Hit: the key's action record in the store, every output blob present at its size
///    (contents verify when read): done. A dry run stops here with why the stage would run.
/// 3. Lock the key (`Store::lock_stage`, shared by every build and process on this store),
///    then look again: another build may have produced it while this one waited.
/// 4. Remote cache: if someone else built it, its blobs are pulled and verified, then its
///    record stored; a poisoned entry fails the stage.
/// 5. Execute on the executor, which stores every output blob and then the action record
///    (a record never points at a missing blob), then push it to the remote cache. Large
///    local outputs come back unstored ([`Unstored`]): without a remote they are stored in
///    the `background`, which takes the key's lock with it, while the next stage runs.
///
/// A stage that finds an input blob corrupt or missing fails with [`CORRUPT_INPUT_MARK`];
/// `run_experiment` then forgets every record whose blobs do not verify and runs the
/// experiment again, which rebuilds the producer.
#[allow(clippy::too_many_arguments)]
fn run_stage<'env>(
    executor: &dyn Executor,
    store: &'env Store,
    remote: Option<&Remote>,
    job: &ExperimentJob,
    spec: &super::StageSpec,
    i: usize,
    deps: &[&StageReport],
    dry_run: bool,
    previous: &Previous,
    background: &Background<'_, 'env>,
) -> StageReport {
    let mut report = StageReport {
        id: spec.id.clone(),
        kind: spec.kind.clone(),
        key: None,
        inputs: Vec::new(),
        state: StageState::Skipped,
        record: None,
        pulled: false,
        waited: 0.0,
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
            let mut reasons = explain_config(spec, job, previous.get());
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
            reason: explain(spec, &key, &inputs, job, previous.get()),
        };
        return report;
    }
    let lock = match store.lock_stage(&key) {
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
    // Local, or (`--executor slurm`) a job while this thread holds the key's lock.
    let stage = StageJob {
        job,
        spec,
        deps: dep_records,
        data_digests: digests,
        key: &key,
    };
    match executor.run(store, stage) {
        Ok(Executed {
            record,
            secs,
            waited,
            unstored,
        }) => {
            match unstored {
                None => {}
                // Stored while the next stage runs; the key stays locked until then.
                Some(unstored) if remote.is_none() => {
                    background.store(i, store, unstored, record.clone(), lock)
                }
                // The remote push reads the stored blobs: store them first.
                Some(unstored) => {
                    if let Err(e) = unstored.store(store, &record) {
                        report.state = not_stored(e);
                        return report;
                    }
                }
            }
            if let Some(remote) = remote {
                remote.push_from_store(store, &record);
            }
            report.state = StageState::Ran {
                secs: (secs - waited).max(0.0),
            };
            report.waited = waited;
            report.record = Some(record);
        }
        Err(e) => report.state = StageState::Failed(e),
    }
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
    for (spec, stage) in report.plan.stages.iter().zip(&report.stages) {
        let Some(key) = &stage.key else { continue };
        if stage.record.is_none() {
            continue;
        }
        let snapshot = StageSnapshot {
            id: spec.id.clone(),
            version: spec.version,
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
            .retain(|s| report.plan.stages.iter().any(|p| p.id == s.id));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SourceKind;
    use crate::data::layout::SymbolFiles;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Runs every stage locally, counting them.
    struct Counting(AtomicUsize);

    impl Executor for Counting {
        fn run(&self, store: &Store, stage: StageJob) -> Result<Executed, StageError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            LocalExecutor.run(store, stage)
        }
    }

    #[test]
    fn the_costliest_trainings_start_first() {
        let experiment = |kind: &str, epochs: usize| {
            let mut e = Experiment::default();
            e.model.kind = kind.to_string();
            e.training.epochs = epochs;
            e
        };
        let experiments = [
            experiment("mlp", 10),
            experiment("lstm", 10),
            experiment("gru", 10),
            experiment("mlp", 10),
            experiment("lstm", 1),
            experiment("nonesuch", 10),
        ];
        // lstm > gru > lstm at a tenth of the epochs > mlp; equal costs in the order given,
        // an unknown type last.
        assert_eq!(start_order(experiments.iter()), vec![1, 2, 4, 0, 3, 5]);
    }

    #[test]
    fn missing_stages_execute_on_the_executor_given_and_only_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("cache")).unwrap();
        let mut e = Experiment {
            name: "e".to_string(),
            ..Default::default()
        };
        e.data.source = SourceKind::Synthetic;
        let symbols = [SymbolFiles {
            symbol: "SYNTH".to_string(),
            files: vec![],
        }];
        let plan = super::super::plan(&e, &symbols).until("dataset");
        let locations = LocationMap::default();
        let job = ExperimentJob {
            file: dir.path().join("e.yaml"),
            experiment: &e,
            locations: &locations,
            plan: &plan,
            data_digests: BTreeMap::new(),
        };
        let counting = Counting(AtomicUsize::new(0));
        let jobs = std::slice::from_ref(&job);
        let first = run_all_on(&counting, &store, None, jobs, 1, false, &|_| {});
        assert_eq!(first[0].error(), None);
        assert_eq!(
            counting.0.load(Ordering::SeqCst),
            3,
            "ingest, features, dataset"
        );
        assert!(
            first[0]
                .stages
                .iter()
                .all(|s| matches!(s.state, StageState::Ran { .. }))
        );
        let second = run_all_on(&counting, &store, None, jobs, 1, false, &|_| {});
        assert_eq!(counting.0.load(Ordering::SeqCst), 3, "every key is found");
        assert!(
            second[0]
                .stages
                .iter()
                .all(|s| s.state == StageState::Cached)
        );
        let keys = |r: &[ExperimentReport]| -> Vec<Option<StageKey>> {
            r[0].stages.iter().map(|s| s.key.clone()).collect()
        };
        assert_eq!(keys(&first), keys(&second));
    }
}
