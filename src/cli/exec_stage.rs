//! `hft build --executor slurm` (choosing and setting up the executor) and the hidden
//! `hft exec-stage`, which a Slurm job runs to execute exactly one stage of a build.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{Common, Outcome, Select, fail};
use crate::graph::slurm::{self, SlurmExecutor};
use crate::graph::stages::StageError;
use crate::graph::{Database, exec};

/// Environment variable naming the executor when `--executor` is not given.
pub const EXECUTOR_ENV: &str = "HFT_EXECUTOR";
/// The hft binary jobs run, when not this one (a path the compute nodes can read).
pub const SLURM_EXE_ENV: &str = "HFT_SLURM_EXE";
/// Extra `sbatch` arguments, split on whitespace (`--account=ml --qos=short`).
pub const SBATCH_ARGS_ENV: &str = "HFT_SBATCH_ARGS";
/// The longest pause between two polls of a job, in seconds (default 15).
pub const POLL_ENV: &str = "HFT_SLURM_POLL_SECS";

/// Where `hft build` executes stages.
#[derive(Args, Debug, Default)]
pub struct ExecutorArgs {
    /// Where stages execute: `local` (this process, the default) or `slurm` (each train
    /// stage as an sbatch job, resources from `training.resources`; the cache must be a path
    /// the compute nodes share). Default `$HFT_EXECUTOR`, else local.
    #[arg(long, value_name = "EXECUTOR", value_parser = ["local", "slurm"])]
    pub executor: Option<String>,
    /// Stages sent to Slurm with `--executor slurm` (comma-separated; train always goes):
    /// `train,evaluate` sends evaluate too.
    #[arg(
        long,
        value_name = "STAGES",
        value_delimiter = ',',
        default_value = "train",
        value_parser = ["train", "evaluate"]
    )]
    pub slurm_stages: Vec<String>,
}

impl ExecutorArgs {
    /// The executor asked for: `None` for local, else the Slurm executor, set up and
    /// checked (`sbatch` on PATH); bad input is exit 2.
    pub fn choose(&self, common: &Common) -> Result<Option<SlurmExecutor>, Outcome> {
        let from_env = std::env::var(EXECUTOR_ENV).ok().filter(|v| !v.is_empty());
        let executor = self.executor.clone().or(from_env);
        match executor.as_deref() {
            None | Some("local") => return Ok(None),
            Some("slurm") => {}
            Some(other) => {
                return Err(fail(&format!(
                    "{EXECUTOR_ENV}=`{other}` is not an executor; use local or slurm"
                )));
            }
        }
        slurm::check_available().map_err(|m| fail(&m))?;
        let absolute = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
        let cache_dir = absolute(super::cache_dir(common.cache_dir.as_deref()));
        let workdir = std::env::current_dir()
            .map_err(|e| fail(&format!("cannot read the current folder: {e}")))?;
        let exe = match std::env::var_os(SLURM_EXE_ENV) {
            Some(path) => absolute(PathBuf::from(path)),
            None => std::env::current_exe()
                .map_err(|e| fail(&format!("cannot find the hft binary for the jobs: {e}")))?,
        };
        let extra_args = std::env::var(SBATCH_ARGS_ENV)
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let max_poll = match std::env::var(POLL_ENV) {
            Ok(text) => match text.trim().parse::<f64>() {
                Ok(secs) if secs.is_finite() && secs > 0.0 => Duration::from_secs_f64(secs),
                _ => {
                    return Err(fail(&format!(
                        "{POLL_ENV}=`{text}` is not a positive number of seconds"
                    )));
                }
            },
            Err(_) => Duration::from_secs(15),
        };
        let mut stages = vec!["train".to_string()];
        stages.extend(self.slurm_stages.iter().filter(|s| *s != "train").cloned());
        Ok(Some(SlurmExecutor {
            stages,
            exe,
            cache_dir,
            workdir,
            overrides: common.select.overrides.clone(),
            extra_args,
            max_poll,
        }))
    }
}

/// `hft exec-stage`: what one Slurm job runs.
#[derive(Args, Debug)]
pub struct ExecStageArgs {
    /// The key the submitting build computed; the stage is executed only if it still is.
    #[arg(long)]
    pub key: String,
    /// The experiment file.
    #[arg(long)]
    pub file: PathBuf,
    /// The experiment's name (a matrix point's derived name).
    #[arg(long)]
    pub experiment: String,
    /// The stage id (`train`, `evaluate`).
    #[arg(long)]
    pub stage: String,
    /// The build's overrides.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub overrides: Vec<String>,
    /// The shared store.
    #[arg(long)]
    pub cache_dir: PathBuf,
}

/// Re-plans the experiment against the store, checks the stage's key, executes the stage
/// and stores its outputs and action record. Exit 0 also when the key is already stored.
pub fn run(args: &ExecStageArgs) -> Outcome {
    let store = match super::open_store_at(Some(&args.cache_dir)) {
        Ok(s) => s,
        Err(outcome) => return outcome,
    };
    let db = Database::default();
    let select = Select {
        paths: vec![args.file.clone()],
        overrides: args.overrides.clone(),
        filters: vec![],
    };
    let loaded = match super::load_experiments(&db, &select) {
        Ok(l) => l,
        Err(outcome) => return outcome,
    };
    // A search's trial is found by walking the search's built rounds.
    let mut loaded = match crate::usecase::search::replay(&db, &store, loaded) {
        Ok((l, _)) => l,
        Err(failure) => return super::report_failure(failure),
    };
    loaded.retain(|l| l.plan.name == args.experiment);
    if loaded.is_empty() {
        return fail(&format!(
            "{} defines no experiment named `{}` (any more); nothing executed",
            args.file.display(),
            args.experiment
        ));
    }
    let mut watched = Vec::new();
    let jobs = match super::make_jobs(&db, &store, &loaded, &mut watched, false) {
        Ok(j) => j,
        Err(outcome) => return outcome,
    };
    // A dry run completes every key it can from the store's records.
    let reports = exec::run_all(&store, &jobs, 1, true, &|_| {});
    let (Some(job), Some(report)) = (jobs.first(), reports.first()) else {
        return fail("nothing was planned");
    };
    // The executed plan: walk-forward fold stages appear once their folds are counted.
    let Some((index, spec)) = report
        .plan
        .stages
        .iter()
        .enumerate()
        .find(|(_, s)| s.id == args.stage)
    else {
        return fail(&format!(
            "experiment `{}` has no stage `{}`",
            args.experiment, args.stage
        ));
    };
    let Some(stage) = report.stages.get(index) else {
        return fail("the dry run reported fewer stages than planned");
    };
    let Some(key) = &stage.key else {
        let missing: Vec<&str> = spec
            .deps
            .iter()
            .filter_map(|&d| report.stages.get(d))
            .filter(|d| d.record.is_none())
            .map(|d| d.id.as_str())
            .collect();
        eprintln!(
            "error: {}/{}: its inputs ({}) are not in the cache {}; the job must see the store \
             the build submitted it from (a path shared with the compute nodes)",
            args.experiment,
            args.stage,
            missing.join(", "),
            args.cache_dir.display()
        );
        return Outcome::StageFailed;
    };
    if key.0 != args.key {
        return fail(&format!(
            "{}/{}: the key computed here is {key}, the build submitted {}: the config or the \
             data changed after submission; nothing executed (build again)",
            args.experiment, args.stage, args.key
        ));
    }
    if stage.record.is_some() {
        println!(
            "{}/{}: already in the cache ({key})",
            args.experiment, args.stage
        );
        return Outcome::Ok;
    }
    let deps = spec
        .deps
        .iter()
        .filter_map(|&d| report.stages.get(d).and_then(|s| s.record.as_ref()))
        .collect();
    match slurm::execute_and_record(&store, job, spec, index, deps, key) {
        Ok(record) => {
            println!(
                "{}/{}: stored {key} ({} outputs, {:.1}s)",
                args.experiment,
                args.stage,
                record.outputs.len(),
                record.wall_ms as f64 / 1000.0
            );
            Outcome::Ok
        }
        Err(e) => {
            eprintln!("error: {}/{}: {e}", args.experiment, args.stage);
            match e {
                StageError::BadInput(_) => Outcome::BadInput,
                StageError::Failed(_) => Outcome::StageFailed,
            }
        }
    }
}
