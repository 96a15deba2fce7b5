//! Where a stage executes once its key is known and missing: [`Executor`], with
//! [`LocalExecutor`] (in this process, on a thread of its own) and the Slurm one
//! (`graph::slurm`). The store protocol around it (lock, re-check, remote cache) stays in
//! `exec::run_stage`; an executor only turns a locked key into a stored action record.
//!
//! Also the CPU budget local trainings share ([`TRAINING_CORES`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use super::StageSpec;
use super::exec::ExperimentJob;
use super::stages::{StageError, StageInputs, StageKind, StageOutput};
use crate::store::{ActionRecord, Digest, HeldBlob, OutputRef, StageKey, Store, now_unix};

/// One stage to execute: its key is complete, locked by the caller, and in neither the
/// local nor the remote cache.
pub struct StageJob<'a> {
    pub job: &'a ExperimentJob<'a>,
    pub spec: &'a StageSpec,
    /// Records of the stages it depends on, in `StageSpec::deps` order.
    pub deps: Vec<&'a ActionRecord>,
    /// The digests of an ingest's source that went into the key.
    pub data_digests: &'a [Digest],
    pub key: &'a StageKey,
}

/// A stage executed and recorded.
pub struct Executed {
    /// The action record: in the store (its blobs first), or to be stored by `unstored`.
    pub record: ActionRecord,
    /// How long it took, as reported (`StageState::Ran`), waiting included.
    pub secs: f64,
    /// Of `secs`, the time it waited for cores or the RNG (`crate::waits`).
    pub waited: f64,
    /// `Some`: neither the record nor its large blobs are in the store yet; the caller stores
    /// them ([`Unstored::store`]) before it releases the key's lock. Dropped unstored, the
    /// stage is simply not cached (nothing half-written is left).
    pub unstored: Option<Unstored>,
}

/// Outputs of this size and more in all are held in memory and stored later
/// ([`Unstored`]): the disk's time for them is worth hiding; smaller ones are stored at once.
const HOLD_MIN_BYTES: usize = 8 << 20;

/// A local stage's large outputs, hashed and held in memory by the store (readable through
/// it as if stored), and the blobs still to write before its record. The caller stores them
/// ([`Unstored::store`]) while it holds the stage's key lock, in the background while the
/// next stage runs: the feature pipeline's 300 MB of blobs reach the disk while the next
/// stage computes, instead of before it starts (`graph::exec::run_stage`).
pub struct Unstored {
    blobs: Vec<HeldBlob>,
    /// Outputs passed on from inputs that their own stage is still writing.
    awaited: Vec<OutputRef>,
}

impl Unstored {
    /// Writes the blobs and waits for the awaited ones, then writes `record` (a record never
    /// names a missing blob).
    pub fn store(self, store: &Store, record: &ActionRecord) -> std::io::Result<()> {
        for held in self.blobs {
            store.write_held(held)?;
        }
        for r in &self.awaited {
            store.wait_stored(r)?;
        }
        store.put_action(record)
    }
}

/// Executes stages: stores a stage's output blobs, then its action record under its key.
pub trait Executor: Sync {
    fn run(&self, store: &Store, stage: StageJob) -> Result<Executed, StageError>;
}

/// Executes every stage in this process ([`execute_isolated`]).
pub struct LocalExecutor;

impl Executor for LocalExecutor {
    fn run(&self, store: &Store, stage: StageJob) -> Result<Executed, StageError> {
        let StageJob {
            spec,
            deps,
            data_digests,
            key,
            job,
        } = stage;
        let started = Instant::now();
        let stage_inputs = StageInputs {
            experiment: job.experiment,
            store,
            deps,
            data_files: &spec.data_files,
            data_digests,
            key: Some(key),
        };
        let (output, waited) = execute_isolated_timed(&spec.kind, &stage_inputs);
        let output = output?;
        let mut outputs = BTreeMap::new();
        let StageOutput {
            blobs,
            passed,
            mut digests,
            summary,
        } = output;
        // An input passed on is named by the record once it is stored: an input still being
        // written in the background holds the record back too.
        let mut awaited = Vec::new();
        for (name, r) in passed {
            if store.is_held(&r.digest) {
                awaited.push(r.clone());
            } else if !store.has_blob(&r) {
                return Err(StageError::Failed(format!(
                    "output `{name}` is input blob {}, which is not in the store",
                    r.digest.short()
                )));
            }
            outputs.insert(name, r);
        }
        let hold =
            blobs.values().map(Vec::len).sum::<usize>() >= HOLD_MIN_BYTES || !awaited.is_empty();
        let mut held = Vec::new();
        for (name, bytes) in blobs {
            if hold {
                let blob = store.hold_blob(bytes, digests.remove(&name));
                outputs.insert(name, blob.output.clone());
                held.push(blob);
                continue;
            }
            // Kept in memory for the stages after this one in the same build.
            match store.put_blob_owned(bytes) {
                Ok(r) => {
                    outputs.insert(name, r);
                }
                Err(e) => {
                    return Err(StageError::Failed(format!(
                        "cannot store output `{name}`: {e}"
                    )));
                }
            }
        }
        let secs = started.elapsed().as_secs_f64();
        let record = ActionRecord {
            key: key.clone(),
            stage: spec.id.clone(),
            outputs,
            summary: summary.into(),
            hft_version: env!("CARGO_PKG_VERSION").to_string(),
            wall_ms: (secs * 1000.0) as u64,
            created: now_unix(),
            digest: None,
        };
        if hold {
            return Ok(Executed {
                record,
                secs,
                waited,
                unstored: Some(Unstored {
                    blobs: held,
                    awaited,
                }),
            });
        }
        store
            .put_action(&record)
            .map_err(|e| StageError::Failed(e.to_string()))?;
        Ok(Executed {
            record,
            secs,
            waited,
            unstored: None,
        })
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
/// dropout holds `model`'s RNG lock). Off the pool, its parallel ops use rayon's global pool
/// and the pool's workers only wait. A panic in a stage fails that stage, not the whole
/// build.
///
/// A train stage first takes its cores from [`TRAINING_CORES`] and runs on a pool of that
/// many threads.
pub fn execute_isolated(kind: &StageKind, inputs: &StageInputs) -> Result<StageOutput, StageError> {
    execute_isolated_timed(kind, inputs).0
}

/// [`execute_isolated`], with the seconds the stage waited for its cores and for the RNG
/// (`crate::waits`).
pub fn execute_isolated_timed(
    kind: &StageKind,
    inputs: &StageInputs,
) -> (Result<StageOutput, StageError>, f64) {
    let training = matches!(kind, StageKind::Train | StageKind::FoldTrain { .. });
    let width = TRAINING_CORES.width();
    crate::waits::take();
    let _slot = training.then(|| crate::waits::waited(|| TRAINING_CORES.acquire(width)));
    let cores_wait = crate::waits::take();
    let pool = training
        .then(|| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(width)
                .build()
                .ok()
        })
        .flatten();
    // The stage runs on another thread (and a training on its pool's): its waits are
    // collected there.
    let run = || {
        let output = kind.execute(inputs);
        (output, crate::waits::take())
    };
    std::thread::scope(|scope| {
        let handle = scope.spawn(|| match &pool {
            Some(pool) => pool.install(run),
            None => run(),
        });
        let (output, waited) = handle.join().unwrap_or_else(|panic| {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".to_string());
            let failed = Err(StageError::Failed(format!(
                "internal error in stage {}: {message}",
                kind.name()
            )));
            (failed, 0.0)
        });
        (output, waited + cores_wait)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
