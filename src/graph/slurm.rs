//! Running `train` (and, if asked, `evaluate`) stages as Slurm jobs (`hft build --executor
//! slurm`).
//!
//! The submitting build completes the stage's key as usual, finds it missing, takes the
//! key's lock, and then, instead of executing, submits one `sbatch` job that runs the hidden
//! `hft exec-stage --key KEY ...` in the project folder. The job re-plans the experiment
//! against the shared store, refuses unless it computes the same key, executes that one stage
//! and stores its outputs and action record. The submitter polls `squeue` until the job is
//! gone, reads its final state (`scontrol show job`, else `sacct`), and on success takes the
//! action record from the store like any cache hit; the build then continues with the stages
//! after it.
//!
//! Locking: the key's flock belongs to the submitting process and is held for the job's whole
//! life, queue time included, so a second build of the same key waits and then finds the
//! job's record. The job does not take it (it would wait on its own submitter forever); it
//! runs only because its submitter holds it. A submitter killed while its job runs releases
//! the lock and another build may execute the same key beside the orphan job: harmless,
//! since outputs are a pure function of the key and every store write is atomic.
//!
//! The store must be the same folder on the submitting host and on the compute nodes (a
//! shared filesystem path): the job reads the upstream records from it and writes into it.
//!
//! [`SlurmExecutor`] is an [`Executor`]: the stages it is not asked to send run locally.
//! `--executor slurm` puts one in the build request, which hands it to `exec::run_all_on`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::StageSpec;
use super::exec::ExperimentJob;
use super::executor::{Executed, Executor, LocalExecutor, StageJob, execute_isolated};
use super::stages::{StageError, StageInputs, StageKind};
use crate::config::sections::Resources;
use crate::store::{ActionRecord, StageKey, Store, now_unix};

/// Lines of a failed job's log quoted in its error.
pub const LOG_TAIL_LINES: usize = 20;

/// How a build submits stages to Slurm: fixed for the whole invocation.
#[derive(Debug, Clone)]
pub struct SlurmExecutor {
    /// Stage names executed as jobs (`train`, and `evaluate` when asked).
    pub stages: Vec<String>,
    /// The hft binary the jobs run (must be readable at this path on the compute nodes).
    pub exe: PathBuf,
    /// The store, as an absolute path (the same path on every node).
    pub cache_dir: PathBuf,
    /// The project folder the build runs in; jobs run there (relative `data.path`s).
    pub workdir: PathBuf,
    /// The build's `--set` overrides, passed on so the job resolves the same config.
    pub overrides: Vec<String>,
    /// Extra `sbatch` arguments for the site (`HFT_SBATCH_ARGS`: `--account=x --qos=y`).
    pub extra_args: Vec<String>,
    /// The longest pause between two polls of `squeue`.
    pub max_poll: Duration,
}

/// The Slurm job that executed each key in this process, for reports.
static JOBS: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());

/// Jobs submitted and not yet ended, cancelled if the build is interrupted.
static IN_FLIGHT: Mutex<BTreeSet<u64>> = Mutex::new(BTreeSet::new());

/// Cancels (`scancel`) every job this process submitted that has not ended yet: an
/// interrupted build (Ctrl-C) leaves no job behind it in the queue.
pub fn cancel_in_flight() {
    let ids: Vec<String> = match IN_FLIGHT.lock() {
        Ok(jobs) => jobs.iter().map(u64::to_string).collect(),
        Err(_) => return,
    };
    if !ids.is_empty() {
        eprintln!("cancelling Slurm jobs {}", ids.join(", "));
        let _ = Command::new("scancel").args(&ids).status();
    }
}

/// The Slurm job that executed `key` in this build, if one did.
pub fn job_of(key: &StageKey) -> Option<u64> {
    JOBS.lock().ok()?.get(&key.0).copied()
}

/// Whether `sbatch` can be run here (checked before a `--executor slurm` build plans).
pub fn check_available() -> Result<(), String> {
    match Command::new("sbatch").arg("--version").output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "`sbatch --version` failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!(
            "--executor slurm needs Slurm's `sbatch` on PATH ({e}); install the Slurm client \
             or build with --executor local"
        )),
    }
}

impl Executor for SlurmExecutor {
    /// Stages of the kinds in `stages` run as jobs; the others locally.
    fn run(&self, store: &Store, stage: StageJob) -> Result<Executed, StageError> {
        if !self.sends(&stage.spec.kind) {
            return LocalExecutor.run(store, stage);
        }
        let started = Instant::now();
        let (record, queued) = self.run_stage(store, stage.job, stage.spec, stage.key)?;
        // Time in the queue is waiting, shown apart from the job's run.
        Ok(Executed {
            record,
            secs: started.elapsed().as_secs_f64(),
            waited: queued.as_secs_f64(),
            unstored: None,
        })
    }
}

impl SlurmExecutor {
    /// Whether stages of this kind go to Slurm.
    pub fn sends(&self, kind: &StageKind) -> bool {
        // A walk-forward fold trains (and is scored) like the experiment's own model.
        let name = match kind.name() {
            "fold_train" => "train",
            "walk_forward" => "evaluate",
            other => other,
        };
        self.stages.iter().any(|s| s == name)
    }

    /// Executes stage `spec` of `job` (key `key`, locked by the caller, not in the store) as
    /// one Slurm job and returns the action record the job stored, and how long the job
    /// waited in the queue.
    pub fn run_stage(
        &self,
        store: &Store,
        job: &ExperimentJob,
        spec: &StageSpec,
        key: &StageKey,
    ) -> Result<(ActionRecord, Duration), StageError> {
        let failed = |m: String| StageError::Failed(m);
        let log_dir = self.cache_dir.join("slurm");
        std::fs::create_dir_all(&log_dir)
            .map_err(|e| failed(format!("cannot create {}: {e}", log_dir.display())))?;
        let command = exec_stage_command(
            &self.exe,
            &ExecStageCall {
                file: &job.file,
                experiment: &job.plan.name,
                stage: &spec.id,
                key,
                cache_dir: &self.cache_dir,
                overrides: &self.overrides,
            },
        );
        let args = sbatch_args(
            job.experiment.training.resources.as_ref(),
            &job_name(&job.plan.name, &spec.id, key),
            &log_dir.join(format!("{}-%j.log", key.0)),
            &self.workdir,
            &self.extra_args,
            &command,
        );
        let output = Command::new("sbatch")
            .args(&args)
            .current_dir(&self.workdir)
            .output()
            .map_err(|e| failed(format!("cannot run sbatch: {e}")))?;
        if !output.status.success() {
            return Err(failed(format!(
                "sbatch refused the job of {} ({}): {}; check training.resources against what \
                 the cluster offers (`sinfo -o '%P %c %m %G %l'`)",
                spec.id,
                key.short(),
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let id = parse_job_id(&stdout).ok_or_else(|| {
            failed(format!(
                "sbatch printed no job id for {} (output: `{}`)",
                spec.id,
                stdout.trim()
            ))
        })?;
        if let Ok(mut jobs) = JOBS.lock() {
            jobs.insert(key.0.clone(), id);
        }
        // One line on stderr, like training progress: the build may wait long in the queue.
        eprintln!("{}/{}: submitted as Slurm job {id}", job.plan.name, spec.id);
        let log = log_dir.join(format!("{}-{id}.log", key.0));
        if let Ok(mut in_flight) = IN_FLIGHT.lock() {
            in_flight.insert(id);
        }
        let ended = self.wait(id);
        if let Ok(mut in_flight) = IN_FLIGHT.lock() {
            in_flight.remove(&id);
        }
        let (state, exit_code, queued) = ended.map_err(failed)?;
        if state != "COMPLETED" || exit_code != "0:0" {
            // Out of time is the one failure with a known remedy.
            let hint = if state == "TIMEOUT" {
                if job.experiment.training.checkpoint_every.is_some() {
                    "; the next build resumes it from its last checkpoint (or raise \
                     training.resources.time)"
                } else {
                    "; raise training.resources.time, or set training.checkpoint_every so that \
                     the next build resumes instead of starting over"
                }
            } else {
                ""
            };
            return Err(failed(format!(
                "Slurm job {id} {state} (exit code {exit_code}){hint}; {}",
                log_tail(&log, LOG_TAIL_LINES)
            )));
        }
        let record = store.get_action(key).ok_or_else(|| {
            failed(format!(
                "Slurm job {id} completed but its result ({}) is not in the cache {}: the jobs \
                 must write to the same store as the build (a path shared by this host and the \
                 compute nodes); {}",
                key.short(),
                self.cache_dir.display(),
                log_tail(&log, LOG_TAIL_LINES)
            ))
        })?;
        Ok((record, queued))
    }

    /// Polls until job `id` has ended; returns its final state, its exit code and how long
    /// it was PENDING (seen at the polls' resolution).
    fn wait(&self, id: u64) -> Result<(String, String, Duration), String> {
        let mut pause = Duration::from_millis(250);
        let mut errors = 0;
        let submitted = Instant::now();
        let mut pending = Duration::ZERO;
        loop {
            std::thread::sleep(pause);
            pause = (pause * 3 / 2).min(self.max_poll);
            let queued = match squeue_state(id) {
                Ok(state) => state,
                // The controller may be briefly unreachable; a long job must survive that.
                Err(e) => {
                    errors += 1;
                    if errors >= 30 {
                        return Err(format!("cannot follow Slurm job {id}: {e}"));
                    }
                    continue;
                }
            };
            errors = 0;
            // The time spent PENDING is the queue's, not the stage's: counted as waiting
            // (seen at the polls' resolution).
            if queued.as_deref() == Some("PENDING") {
                pending = submitted.elapsed();
            }
            if queued.as_deref().is_some_and(|s| !is_terminal(s)) {
                continue;
            }
            match final_state(id) {
                Some((state, exit)) if is_terminal(&state) => return Ok((state, exit, pending)),
                Some(_) => continue,
                None => match queued {
                    Some(state) => return Ok((state, "?".to_string(), pending)),
                    None => {
                        return Err(format!(
                            "Slurm job {id} left the queue, but neither `scontrol show job` nor \
                             `sacct` knows how it ended"
                        ));
                    }
                },
            }
        }
    }
}

/// What the job is to execute.
pub struct ExecStageCall<'a> {
    pub file: &'a Path,
    pub experiment: &'a str,
    pub stage: &'a str,
    pub key: &'a StageKey,
    pub cache_dir: &'a Path,
    pub overrides: &'a [String],
}

/// The shell command a job runs: `hft exec-stage ...`, every word quoted.
pub fn exec_stage_command(exe: &Path, call: &ExecStageCall) -> String {
    let mut words: Vec<String> = vec![
        exe.display().to_string(),
        "exec-stage".into(),
        "--key".into(),
        call.key.0.clone(),
        "--file".into(),
        call.file.display().to_string(),
        "--experiment".into(),
        call.experiment.to_string(),
        "--stage".into(),
        call.stage.to_string(),
        "--cache-dir".into(),
        call.cache_dir.display().to_string(),
    ];
    for o in call.overrides {
        words.push("--set".into());
        words.push(o.clone());
    }
    words
        .iter()
        .map(|w| shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `word` as one POSIX shell word.
pub fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// A job's name as `squeue` shows it: the experiment and stage first (what a user looks
/// for), then the key's short form (what tells two runs apart); other characters than
/// letters, digits and `-_.:=` become `_`, and the experiment and stage are cut to 48 bytes.
pub fn job_name(experiment: &str, stage: &str, key: &StageKey) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.:=".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let mut name = format!("hft:{}/{}", clean(experiment), clean(stage));
    if name.len() > 48 {
        let mut cut = 48;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        name.truncate(cut);
    }
    format!("{name}:{}", key.short())
}

/// The arguments of `sbatch` for one stage job.
pub fn sbatch_args(
    resources: Option<&Resources>,
    job_name: &str,
    log: &Path,
    workdir: &Path,
    extra: &[String],
    command: &str,
) -> Vec<String> {
    let mut args = vec![
        "--parsable".to_string(),
        format!("--job-name={job_name}"),
        format!("--output={}", log.display()),
        format!("--chdir={}", workdir.display()),
        "--ntasks=1".to_string(),
    ];
    if let Some(r) = resources {
        if let Some(cpus) = r.cpus {
            args.push(format!("--cpus-per-task={cpus}"));
        }
        if let Some(mem) = &r.mem {
            args.push(format!("--mem={mem}"));
        }
        if let Some(time) = &r.time {
            args.push(format!("--time={time}"));
        }
        if let Some(partition) = &r.partition {
            args.push(format!("--partition={partition}"));
        }
        if let Some(gpus) = r.gpus.filter(|&g| g > 0) {
            args.push(format!("--gres=gpu:{gpus}"));
        }
    }
    args.extend(extra.iter().cloned());
    args.push(format!("--wrap={command}"));
    args
}

/// The job id `sbatch --parsable` printed (`42` or `42;cluster`).
pub fn parse_job_id(stdout: &str) -> Option<u64> {
    let line = stdout.lines().map(str::trim).rfind(|l| !l.is_empty())?;
    line.split(';').next()?.trim().parse().ok()
}

/// Whether a job in this state has ended (`CANCELLED by 0` counts by its first word).
pub fn is_terminal(state: &str) -> bool {
    const ENDED: [&str; 11] = [
        "COMPLETED",
        "FAILED",
        "TIMEOUT",
        "CANCELLED",
        "OUT_OF_MEMORY",
        "NODE_FAIL",
        "PREEMPTED",
        "BOOT_FAIL",
        "DEADLINE",
        "REVOKED",
        "SPECIAL_EXIT",
    ];
    let word = state.split_whitespace().next().unwrap_or("");
    ENDED.contains(&word.trim_end_matches('+'))
}

/// `JobState` and `ExitCode` from `scontrol show job ID`.
pub fn parse_scontrol(text: &str) -> Option<(String, String)> {
    let field = |name: &str| {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .map(str::to_string)
    };
    let state = field("JobState=")?;
    Some((state, field("ExitCode=").unwrap_or_else(|| "?".to_string())))
}

/// State and exit code from `sacct -n -X -P -o State,ExitCode` (the first line: the job,
/// not its steps).
pub fn parse_sacct(text: &str) -> Option<(String, String)> {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    let (state, exit) = line.split_once('|')?;
    let state = state.split_whitespace().next()?.trim_end_matches('+');
    Some((state.to_string(), exit.trim().to_string()))
}

/// The job's state in the queue; `None` once it has left it.
fn squeue_state(id: u64) -> Result<Option<String>, String> {
    let output = Command::new("squeue")
        .args(["-h", "-j", &id.to_string(), "-o", "%T"])
        .output()
        .map_err(|e| format!("cannot run squeue: {e}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        // An ended job purged from the controller's memory.
        if stderr.contains("Invalid job id") {
            return Ok(None);
        }
        return Err(format!("squeue failed: {}", stderr.trim()));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    Ok(stdout
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_string))
}

/// How the job ended, from the controller (`scontrol`, while it remembers the job) or the
/// accounting database (`sacct`, where the cluster has one).
fn final_state(id: u64) -> Option<(String, String)> {
    let run = |program: &str, args: &[&str]| -> Option<String> {
        let output = Command::new(program).args(args).output().ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let id = id.to_string();
    run("scontrol", &["show", "job", &id])
        .and_then(|t| parse_scontrol(&t))
        .or_else(|| {
            run(
                "sacct",
                &["-n", "-X", "-P", "-j", &id, "-o", "State,ExitCode"],
            )
            .and_then(|t| parse_sacct(&t))
        })
}

/// The last `n` lines of a job's log, introduced, for an error message.
pub fn log_tail(log: &Path, n: usize) -> String {
    match std::fs::read(log) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines.get(lines.len().saturating_sub(n)..).unwrap_or(&[]);
            if tail.is_empty() {
                return format!("its log {} is empty", log.display());
            }
            let quoted: Vec<String> = tail.iter().map(|l| format!("    | {l}")).collect();
            let what = match tail.len() {
                1 => "line".to_string(),
                n => format!("{n} lines"),
            };
            format!(
                "the last {what} of {}:\n{}",
                log.display(),
                quoted.join("\n")
            )
        }
        Err(e) => format!(
            "its log {} cannot be read ({e}); is the cache folder shared with the compute nodes?",
            log.display()
        ),
    }
}

/// Executes stage `spec` (index `i` of the executed plan) of `job` from the records of its
/// inputs and stores its outputs and action record under `key` (what `hft exec-stage` does
/// inside the job). The caller has checked that `key` is the stage's key; no key lock is
/// taken (the submitter holds it).
pub fn execute_and_record(
    store: &Store,
    job: &ExperimentJob,
    spec: &StageSpec,
    i: usize,
    deps: Vec<&ActionRecord>,
    key: &StageKey,
) -> Result<ActionRecord, StageError> {
    let digests = job.data_digests.get(&i).map_or(&[][..], Vec::as_slice);
    let started = Instant::now();
    let inputs = StageInputs {
        experiment: job.experiment,
        store,
        deps,
        data_files: &spec.data_files,
        data_digests: digests,
        key: Some(key),
    };
    let output = execute_isolated(&spec.kind, &inputs)?;
    let mut outputs = BTreeMap::new();
    for (name, bytes) in &output.blobs {
        let stored = store.put_blob(bytes).map_err(|e| {
            StageError::Failed(format!("cannot store output `{name}` in the cache: {e}"))
        })?;
        outputs.insert(name.clone(), stored);
    }
    // Passed-on inputs were stored by their own stage's job, before this one started.
    for (name, r) in &output.passed {
        if !store.has_blob(r) {
            return Err(StageError::Failed(format!(
                "output `{name}` is input blob {}, which is not in the cache",
                r.digest.short()
            )));
        }
        outputs.insert(name.clone(), r.clone());
    }
    let record = ActionRecord {
        key: key.clone(),
        stage: spec.id.clone(),
        outputs,
        summary: output.summary.into(),
        hft_version: env!("CARGO_PKG_VERSION").to_string(),
        wall_ms: started.elapsed().as_millis() as u64,
        created: now_unix(),
        digest: None,
    };
    store
        .put_action(&record)
        .map_err(|e| StageError::Failed(e.to_string()))?;
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_are_named_after_experiment_and_stage() {
        let key = StageKey::compute(&[b"x"]);
        let name = job_name("sweep[optimizer.lr=0.001]", "fold_train:3", &key);
        assert_eq!(
            name,
            format!("hft:sweep_optimizer.lr=0.001_/fold_train:3:{}", key.short())
        );
        let long = job_name(&"é".repeat(40), "train", &key);
        assert!(long.len() <= 48 + 1 + key.short().len(), "{long}");
        assert!(!long.contains('é'));
    }

    #[test]
    fn sbatch_args_carry_every_resource_and_the_command_last() {
        let resources = Resources {
            cpus: Some(4),
            gpus: Some(2),
            mem: Some("16G".to_string()),
            time: Some("2:00:00".to_string()),
            partition: Some("gpu".to_string()),
        };
        let args = sbatch_args(
            Some(&resources),
            "hft-k1-abc",
            Path::new("/c/slurm/k1-abc-%j.log"),
            Path::new("/proj"),
            &["--account=ml".to_string()],
            "hft exec-stage",
        );
        assert_eq!(
            args,
            [
                "--parsable",
                "--job-name=hft-k1-abc",
                "--output=/c/slurm/k1-abc-%j.log",
                "--chdir=/proj",
                "--ntasks=1",
                "--cpus-per-task=4",
                "--mem=16G",
                "--time=2:00:00",
                "--partition=gpu",
                "--gres=gpu:2",
                "--account=ml",
                "--wrap=hft exec-stage",
            ]
        );
        // Nothing given, nothing asked: the site's defaults apply; zero GPUs asks for none.
        let none = Resources {
            gpus: Some(0),
            ..Resources::default()
        };
        let args = sbatch_args(Some(&none), "j", Path::new("l"), Path::new("w"), &[], "c");
        assert_eq!(
            args,
            [
                "--parsable",
                "--job-name=j",
                "--output=l",
                "--chdir=w",
                "--ntasks=1",
                "--wrap=c"
            ]
        );
    }

    #[test]
    fn the_job_command_quotes_every_word() {
        let key = StageKey("k1-00ff".to_string());
        let overrides = vec!["optimizer.lr=1e-3".to_string(), "name=it's".to_string()];
        let command = exec_stage_command(
            Path::new("/opt/my hft/hft"),
            &ExecStageCall {
                file: Path::new("experiments/sweep.yaml"),
                experiment: "sweep-lr-0.001",
                stage: "train",
                key: &key,
                cache_dir: Path::new("/shared/cache"),
                overrides: &overrides,
            },
        );
        assert_eq!(
            command,
            "'/opt/my hft/hft' exec-stage --key k1-00ff --file experiments/sweep.yaml \
             --experiment sweep-lr-0.001 --stage train --cache-dir /shared/cache \
             --set optimizer.lr=1e-3 --set 'name=it'\\''s'"
        );
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a;b"), "'a;b'");
        assert_eq!(shell_quote("$(x)"), "'$(x)'");
    }

    #[test]
    fn job_ids_states_and_exit_codes_parse() {
        assert_eq!(parse_job_id("42\n"), Some(42));
        assert_eq!(parse_job_id("17;cluster-a\n"), Some(17));
        assert_eq!(parse_job_id("warning: x\n99\n"), Some(99));
        assert_eq!(parse_job_id(""), None);
        assert_eq!(parse_job_id("Submitted batch job 5"), None);

        for s in [
            "COMPLETED",
            "FAILED",
            "TIMEOUT",
            "CANCELLED by 0",
            "OUT_OF_MEMORY",
            "NODE_FAIL",
        ] {
            assert!(is_terminal(s), "{s}");
        }
        for s in [
            "PENDING",
            "RUNNING",
            "COMPLETING",
            "CONFIGURING",
            "SUSPENDED",
            "",
        ] {
            assert!(!is_terminal(s), "{s}");
        }

        let scontrol = "JobId=3 JobName=hft-k1-abc\n   UserId=root(0) GroupId=root(0)\n   \
                        JobState=TIMEOUT Reason=TimeLimit Dependency=(null)\n   Requeue=1 \
                        Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:15\n";
        assert_eq!(
            parse_scontrol(scontrol),
            Some(("TIMEOUT".to_string(), "0:15".to_string()))
        );
        assert_eq!(
            parse_scontrol("slurm_load_jobs error: Invalid job id"),
            None
        );

        assert_eq!(
            parse_sacct("CANCELLED by 0|0:0\n"),
            Some(("CANCELLED".to_string(), "0:0".to_string()))
        );
        assert_eq!(
            parse_sacct("FAILED|1:0\n"),
            Some(("FAILED".to_string(), "1:0".to_string()))
        );
        assert_eq!(parse_sacct(""), None);
    }

    #[test]
    fn the_log_tail_quotes_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("job.log");
        let text: String = (1..=30).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&log, text).unwrap();
        let tail = log_tail(&log, LOG_TAIL_LINES);
        assert!(tail.starts_with("the last 20 lines of "), "{tail}");
        assert!(tail.contains("    | line 11\n") && tail.ends_with("    | line 30"));
        assert!(!tail.contains("line 10\n"));
        let missing = log_tail(&dir.path().join("none.log"), 5);
        assert!(missing.contains("cannot be read"), "{missing}");
    }
}
