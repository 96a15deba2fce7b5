//! The build use case: `hft build` (run stale stages, reuse cached ones, record the lock,
//! the catalog and the no-op memo) and `hft status` (its dry run: what would run and why).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use super::inputs::make_jobs;
use super::memos::PartialBuilt;
use super::select::{Loaded, load_experiments_indexed, watch_selection_parts};
use super::status_memo::{Checked, check};
use super::{Failure, Message, Outcome, Selection, noop, open_store};
use crate::graph::exec::{self, ExperimentReport, StageState};
use crate::graph::executor::{Executor, LocalExecutor};
use crate::graph::index::FileIndex;
use crate::graph::slurm::SlurmExecutor;
use crate::graph::stages::StageError;
use crate::graph::{self, Database, memo};
use crate::lock::{Known, LOCK_FILE, Lockfile};

/// How a build was asked to run.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    pub select: Selection,
    /// The store (already resolved: see [`super::cache_dir`]).
    pub cache_dir: PathBuf,
    /// The lockfile recorded after a build and checked by `locked` (`hft.lock`).
    pub lock_file: PathBuf,
    /// Classify every stage (what would run and why) and execute nothing.
    pub dry_run: bool,
    /// Experiments built in parallel (default: the number of CPUs).
    pub jobs: Option<usize>,
    /// Fail before executing if a stage key differs from the lock, after if an output does;
    /// never rewrite the lock.
    pub locked: bool,
    /// Build only up to this stage.
    pub until: Option<String>,
    /// A remote cache URL, and whether only to pull from it.
    pub remote: Option<String>,
    pub remote_read_only: bool,
    /// Where stages that must run execute: `None` in this process, or Slurm
    /// (`--executor slurm`, which sends the stages it names and runs the rest here).
    pub executor: Option<SlurmExecutor>,
    /// Keep the no-op memo (off with `HFT_NO_MEMO`).
    pub memo: bool,
    /// Let the memo answer a build where nothing changed (off for `--json`, whose document
    /// the memo does not hold).
    pub answer_from_memo: bool,
    /// Take unchanged experiment files from the per-file index (off with `HFT_NO_INDEX`).
    pub index: bool,
}

impl BuildRequest {
    /// A build of `select` into the store at `cache_dir`, every option at its default.
    pub fn new(select: Selection, cache_dir: PathBuf) -> BuildRequest {
        BuildRequest {
            select,
            cache_dir,
            lock_file: PathBuf::from(LOCK_FILE),
            dry_run: false,
            jobs: None,
            locked: false,
            until: None,
            remote: None,
            remote_read_only: false,
            executor: None,
            memo: true,
            answer_from_memo: true,
            index: std::env::var_os(graph::index::DISABLE_ENV).is_none(),
        }
    }
}

/// Stages by what happened to them, over every experiment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub ran: usize,
    pub cached: usize,
    pub pulled: usize,
    pub stale: usize,
    pub failed: usize,
}

/// A build (or dry run) that planned and classified or executed every stage.
#[derive(Debug)]
pub struct Built {
    pub dry_run: bool,
    pub outcome: Outcome,
    /// One report per experiment, in selection order.
    pub reports: Vec<ExperimentReport>,
    /// Each report's resolved config, for the results table.
    pub experiments: Vec<crate::config::Experiment>,
    pub counts: Counts,
    pub secs: f64,
    /// What went wrong after the stages ran (failed stages, a lock or catalog that could not
    /// be written), in order.
    pub messages: Vec<Message>,
    /// With a remote cache: ((objects, bytes) pulled, (objects, bytes) pushed).
    pub transferred: Option<((u64, u64), (u64, u64))>,
    /// The searches among the experiments, with their trials.
    pub searches: Vec<super::search::SearchProgress>,
}

/// A no-op build answered from the memo: the text the build it replays printed.
#[derive(Debug)]
pub struct Unchanged {
    /// Each experiment's lines, verbose and quiet.
    pub experiments: Vec<(Vec<String>, Vec<String>)>,
    /// The results table's cells (empty when no experiment evaluates).
    pub results: Vec<Vec<String>>,
    /// Stages, all cached.
    pub stages: usize,
    /// Lines after the results table (each search's line).
    pub notes: Vec<String>,
    pub secs: f64,
    pub warnings: Vec<String>,
}

#[derive(Debug)]
pub enum BuildResult {
    Unchanged(Unchanged),
    Built(Built),
    /// The stale files built, every other experiment answered from the memo.
    Partial(Box<PartialBuilt>),
}

impl BuildResult {
    pub fn outcome(&self) -> Outcome {
        match self {
            BuildResult::Unchanged(_) => Outcome::Ok,
            BuildResult::Built(b) => b.outcome,
            BuildResult::Partial(p) => p.built.outcome,
        }
    }
}

/// What `hft status` surveys.
#[derive(Debug, Clone)]
pub struct StatusRequest {
    pub select: Selection,
    pub cache_dir: PathBuf,
}

/// `hft status`: every selected experiment planned against the store, each stage cached or
/// stale with its reason; nothing executes and nothing is recorded. `on_done` sees each
/// experiment's report as soon as it is classified.
pub fn status(
    req: &StatusRequest,
    on_done: &(dyn Fn(&ExperimentReport) + Sync),
) -> Result<Built, Failure> {
    let build_req = BuildRequest {
        dry_run: true,
        memo: false,
        ..BuildRequest::new(req.select.clone(), req.cache_dir.clone())
    };
    match build(&build_req, on_done)? {
        BuildResult::Built(b) => Ok(b),
        // A dry run never consults the memo.
        BuildResult::Unchanged(_) | BuildResult::Partial(_) => Err(Failure {
            outcome: Outcome::StageFailed,
            errors: vec!["a dry run was answered from the no-op memo".to_string()],
        }),
    }
}

/// A status as the command line asks it (not `--json`, whose document the memo does not
/// hold).
#[derive(Debug)]
pub enum Surveyed {
    Built(Built),
    /// Nothing changed since a status that found every stage up to date.
    Unchanged(super::status_memo::StatusUnchanged),
    /// Only some experiments changed since: those were planned, the rest answered from the
    /// memo.
    Partial(Box<super::status_memo::StatusPartial>),
}

/// [`status`], answered from the status memo when nothing it depends on changed (off with
/// `HFT_NO_MEMO`), and writing that memo when every stage is up to date.
pub fn status_memoized(
    req: &StatusRequest,
    on_done: &(dyn Fn(&ExperimentReport) + Sync),
) -> Result<Surveyed, Failure> {
    let started = Instant::now();
    let build_req = BuildRequest {
        dry_run: true,
        memo: std::env::var_os(memo::DISABLE_ENV).is_none(),
        ..BuildRequest::new(req.select.clone(), req.cache_dir.clone())
    };
    if build_req.memo {
        use super::status_memo::{StatusPartial, StatusUnchanged, id};
        let store = open_store(&req.cache_dir)?;
        let id = id(&noop::invocation_parts(&build_req), "status");
        match check(&store, &id, &req.select.paths) {
            Some(Checked::Unchanged(m)) => {
                return Ok(Surveyed::Unchanged(StatusUnchanged::new(m, started)));
            }
            // The stale files planned on their own; anything unexpected (an error, a name
            // that is now used twice) plans everything, which reports it as usual.
            Some(Checked::Partial(p)) => {
                let stale = BuildRequest {
                    select: Selection {
                        paths: p.stale.clone(),
                        ..req.select.clone()
                    },
                    ..build_req.clone()
                };
                if let Ok(BuildResult::Built(built)) = run(&stale, &|_| {}, Some(&p)) {
                    let answer = StatusPartial {
                        partial: p,
                        built,
                        secs: started.elapsed().as_secs_f64(),
                    };
                    return Ok(Surveyed::Partial(Box::new(answer)));
                }
            }
            None => {}
        }
    }
    match build(&build_req, on_done)? {
        BuildResult::Built(b) => Ok(Surveyed::Built(b)),
        BuildResult::Unchanged(_) | BuildResult::Partial(_) => Err(Failure {
            outcome: Outcome::StageFailed,
            errors: vec!["a dry run was answered from the no-op memo".to_string()],
        }),
    }
}

/// `hft build` (and, with `dry_run`, `hft status` / `hft build --dry-run`). `on_done` sees
/// each experiment's report as soon as it is done (the command line prints it then).
pub fn build(
    req: &BuildRequest,
    on_done: &(dyn Fn(&ExperimentReport) + Sync),
) -> Result<BuildResult, Failure> {
    run(req, on_done, None)
}

/// [`build`]; with `partial`, a status of the files a status memo no longer answers, which
/// rewrites that memo from its kept answers and these.
fn run(
    req: &BuildRequest,
    on_done: &(dyn Fn(&ExperimentReport) + Sync),
    partial: Option<&super::status_memo::Partial>,
) -> Result<BuildResult, Failure> {
    let dry_run = req.dry_run;
    let started = Instant::now();
    let started_ns = memo::now_ns();
    let store = open_store(&req.cache_dir)?.remembering_hits();
    // Checked before the no-op fast path, so that a malformed URL is always an error.
    let remote = match req.remote.as_deref() {
        Some(url) => Some(
            crate::store::remote::Remote::open(url, req.remote_read_only)
                .map_err(Failure::bad_input)?,
        ),
        None => None,
    };
    let lock_path = req.lock_file.as_path();
    // Where the selection's folders and files end in `watched`.
    let mut selection_split = (0, 0);
    // The no-op fast path: nothing this build depends on changed since the last one.
    let use_memo = !dry_run && req.memo;
    // A build of the stale files writes the memos of the build it stands for.
    let memo_id = use_memo.then(|| match partial.and_then(|p| p.noop_id.clone()) {
        Some(id) => id,
        None => memo::invocation_id(&noop::invocation_parts(req)),
    });
    if let Some(id) = &memo_id
        && partial.is_none()
        && req.answer_from_memo
        && (!req.locked || lock_path.exists())
        && let Some(m) = memo::check(&store, id)
    {
        return Ok(BuildResult::Unchanged(noop::replay(&store, m, started)));
    }
    // A status or build with every option at its default keeps per-experiment answers.
    let plain = req.memo
        && req.until.is_none()
        && !req.locked
        && req.remote.is_none()
        && req.executor.is_none();
    let answers_id = match partial {
        Some(p) => Some(p.id().to_string()),
        None => (plain && (dry_run || req.answer_from_memo)).then(|| {
            let kind = if dry_run { "status" } else { "build" };
            super::status_memo::id(&noop::invocation_parts(req), kind)
        }),
    };
    // After an edit, only the stale files are built; the rest are answered from the memo.
    let checked = match (&answers_id, &memo_id, partial) {
        (Some(id), Some(_), None) => check(&store, id, &req.select.paths),
        _ => None,
    };
    if let Some(Checked::Unchanged(m)) = checked {
        return Ok(BuildResult::Unchanged(super::memos::replay(
            &store, m, started,
        )));
    }
    if let Some(Checked::Partial(mut p)) = checked {
        p.noop_id = memo_id.clone();
        let stale = BuildRequest {
            select: Selection {
                paths: p.stale.clone(),
                ..req.select.clone()
            },
            ..req.clone()
        };
        // Anything unexpected (an error, a name now used twice) builds everything, which
        // reports it as usual.
        if let Ok(BuildResult::Built(built)) = run(&stale, on_done, Some(&p)) {
            let answer = PartialBuilt::new(p, built, started);
            return Ok(BuildResult::Partial(Box::new(answer)));
        }
    }
    let status_id = answers_id.clone().filter(|_| dry_run);
    // The blob folders before any blob is checked, for the per-experiment answers (a build
    // of the stale files keeps those its check took).
    let mut blob_dirs = match (&answers_id, partial) {
        (Some(_), None) => super::status_memo::blob_dirs(&store),
        _ => Vec::new(),
    };
    // Fingerprints of the selection before anything is read, for the memos: the folders
    // searched, then the files found (the status memo keeps the two apart).
    let mut watched = match (&memo_id, &status_id) {
        (None, None) => Vec::new(),
        _ => {
            let (mut dirs, files) = watch_selection_parts(&req.select.paths);
            let split = (dirs.len(), dirs.len() + files.len());
            dirs.extend(files);
            selection_split = split;
            dirs
        }
    };
    let db = Database::default();
    let mut index = req
        .index
        .then(|| FileIndex::load(&store, &req.select.overrides));
    let mut planned = load_experiments_indexed(&db, &req.select, index.as_mut())?;
    if let Some(index) = index {
        index.save(&store);
    }
    if let Some(p) = partial
        && !p.fits(planned.iter().map(|l| l.plan.name.as_str()))
    {
        return Err(Failure::bad_input("an experiment name is used twice"));
    }
    if let Some(until) = &req.until {
        for l in &mut planned {
            l.plan = l.plan.until(until);
        }
    }
    // A dry run reads the lock only to check keys against it (`--locked`); a build reads it
    // before executing (a malformed lock is an error then, not after training) and hands it
    // to `lock::update` with the fingerprint it had, so it is not parsed twice.
    // A build without `--locked` trusts the text this hft last wrote without parsing it
    // (`lock::Known`): it only splices the built experiments into it.
    let lock_fingerprint = memo::fingerprint(lock_path);
    let (lock, known) = if dry_run && !req.locked {
        (None, None)
    } else if req.locked {
        (Lockfile::load(lock_path).map_err(Failure::bad_input)?, None)
    } else {
        (
            None,
            Known::read(lock_path, &store).map_err(Failure::bad_input)?,
        )
    };
    if req.locked && lock.is_none() {
        return Err(Failure::bad_input(format!(
            "--locked: there is no {LOCK_FILE}; run `hft build` first"
        )));
    }
    let locked_problems = |jobs: &[exec::ExperimentJob]| -> Result<(), Failure> {
        let (Some(existing), true) = (&lock, req.locked) else {
            return Ok(());
        };
        let problems = crate::lock::check_keys(existing, jobs);
        if problems.is_empty() {
            return Ok(());
        }
        Err(Failure {
            outcome: Outcome::BadInput,
            errors: problems.iter().map(|p| format!("--locked: {p}")).collect(),
        })
    };
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let executor: &dyn Executor = match &req.executor {
        Some(slurm) => slurm,
        None => &LocalExecutor,
    };

    // Searches first, round by round: each round's trials are built (and printed) as they
    // finish; a dry run, or a build cut short by `--until`, only walks the rounds built.
    let mut round_reports: BTreeMap<String, ExperimentReport> = BTreeMap::new();
    let (planned, searches) = if dry_run || req.until.is_some() {
        super::search::replay(&db, &store, planned)?
    } else {
        super::search::expand(&db, planned, &mut |round: &[Loaded]| {
            let jobs = make_jobs(&db, &store, round, &mut watched, true)?;
            locked_problems(&jobs)?;
            let width = req.jobs.unwrap_or(cores).clamp(1, jobs.len().max(1));
            let width = match req.executor {
                Some(_) => width,
                None => width.min(4 * cores.max(1)),
            };
            let reports = exec::run_all_on(
                executor,
                &store,
                remote.as_ref(),
                &jobs,
                width,
                false,
                on_done,
            );
            for r in &reports {
                round_reports.insert(r.name.clone(), r.clone());
            }
            Ok(reports)
        })?
    };
    let jobs_list = make_jobs(&db, &store, &planned, &mut watched, !dry_run)?;
    watched.extend(db.templates_read());
    watched.extend(db.data_folders_read());
    locked_problems(&jobs_list)?;

    let threads = jobs_width(req.jobs, cores, jobs_list.len(), req.executor.is_some());
    // The searches' trials were printed as their rounds finished.
    let print_new = |r: &ExperimentReport| {
        if !round_reports.contains_key(&r.name) {
            on_done(r)
        }
    };
    let mut reports = exec::run_all_on(
        executor,
        &store,
        remote.as_ref(),
        &jobs_list,
        threads,
        dry_run,
        &print_new,
    );
    // A trial's report is its round's, which executed it (this pass found it cached).
    for r in &mut reports {
        if let Some(ran) = round_reports.remove(&r.name) {
            *r = ran;
        }
    }
    let mut messages = Vec::new();
    if !dry_run {
        match (lock, req.locked) {
            (Some(existing), true) => {
                let problems = crate::lock::check_outputs(&existing, &reports);
                if !problems.is_empty() {
                    return Err(Failure {
                        outcome: Outcome::StageFailed,
                        errors: problems.iter().map(|p| format!("--locked: {p}")).collect(),
                    });
                }
            }
            _ => {
                let known = known.zip(lock_fingerprint);
                if let Err(e) = crate::lock::update(lock_path, &store, &jobs_list, &reports, known)
                {
                    messages.push(Message::Warning(format!("cannot write {LOCK_FILE}: {e}")));
                }
            }
        }
    }

    let mut outcome = Outcome::Ok;
    let mut counts = Counts::default();
    // A stale stage shared by several experiments (one dataset under a sweep) runs once.
    let mut stale = std::collections::BTreeSet::new();
    for r in &reports {
        let ids = stage_identities(r);
        for (s, id) in r.stages.iter().zip(ids) {
            match &s.state {
                StageState::Ran { .. } => counts.ran += 1,
                StageState::Cached if s.pulled => counts.pulled += 1,
                StageState::Cached => counts.cached += 1,
                StageState::Stale { .. } => {
                    if stale.insert(id) {
                        counts.stale += 1;
                    }
                }
                StageState::Failed(e) => {
                    counts.failed += 1;
                    outcome = outcome.worst(match e {
                        StageError::BadInput(_) => Outcome::BadInput,
                        StageError::Failed(_) => Outcome::StageFailed,
                    });
                }
                StageState::Skipped => {}
            }
        }
    }
    for r in &reports {
        for s in &r.stages {
            if let StageState::Failed(e) = &s.state {
                messages.push(Message::Error(format!("{}/{}: {e}", r.name, s.id)));
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    if !dry_run {
        let rows: Vec<crate::catalog::CatalogRow> = reports
            .iter()
            .zip(&jobs_list)
            .filter(|(r, _)| r.recorded || r.error().is_some())
            .filter_map(|(r, j)| {
                let id = graph::experiment_id(&j.file, &j.plan.name);
                crate::catalog::CatalogRow::from_report(&id, j.experiment, r)
            })
            .collect();
        // A build of the stale files logs the build it stands for.
        let (kept, kept_stages) = partial.map_or((0, 0), |p| {
            (p.kept().count(), p.kept().map(|e| e.stages).sum::<usize>())
        });
        let entry = crate::catalog::BuildEntry {
            at: crate::store::now_unix(),
            experiments: reports.len() + kept,
            ran: counts.ran,
            cached: counts.cached + counts.pulled + kept_stages,
            failed: counts.failed,
            secs,
        };
        // A read-only (shared) cache serves hits; its derived data just stays as it is.
        if let Err(e) = crate::catalog::append(&store, &rows, &entry)
            && e.kind() != std::io::ErrorKind::ReadOnlyFilesystem
        {
            messages.push(Message::Warning(format!(
                "cannot update the experiment catalog: {e}"
            )));
        }
    }
    let notes: Vec<String> = searches.iter().map(|s| s.summary_line()).collect();
    if let Some(id) = &memo_id {
        let all_built = reports
            .iter()
            .all(|r| r.stages.iter().all(|s| s.record.is_some()));
        // The per-experiment answers weigh each racy fingerprint themselves.
        let trusted = answers_id.is_some() || !memo::is_racy(&watched, started_ns);
        if outcome == Outcome::Ok && all_built && trusted {
            // Written after the lock: its fingerprint is the one the next build will see.
            watched.push((lock_path.to_path_buf(), memo::fingerprint(lock_path)));
            super::memos::save_build(
                &store,
                (id, answers_id.as_deref()),
                &jobs_list,
                &reports,
                (
                    std::mem::take(&mut watched),
                    selection_split,
                    lock_path,
                    std::mem::take(&mut blob_dirs),
                ),
                notes.clone(),
                started_ns,
                partial,
            );
        } else {
            memo::forget(&store, id);
            if let Some(answers) = &answers_id {
                memo::forget(&store, answers);
            }
        }
    }
    if let Some(id) = &status_id {
        if outcome == Outcome::Ok
            && messages.is_empty()
            && store.damaged_records() == 0
            && crate::term::warnings() == 0
        {
            let read = super::memos::split(
                std::mem::take(&mut watched),
                selection_split,
                None,
                std::mem::take(&mut blob_dirs),
            );
            let describe = |i: usize| {
                let lines = super::status_memo::status_entry_lines(&reports[i]);
                (lines, Vec::new(), false)
            };
            let saved = super::status_memo::save(
                &store, id, &reports, &describe, read, notes, started_ns, partial,
            );
            super::memos::drop_aside(saved);
        } else if partial.is_none() {
            // A partial status leaves the memo it started from: it answers only what it
            // answered, and the files that warned are planned (and warn) again.
            memo::forget(&store, id);
        }
    }
    store.forget_hits();
    Ok(BuildResult::Built(Built {
        dry_run,
        outcome,
        searches,
        experiments: jobs_list.iter().map(|j| j.experiment.clone()).collect(),
        reports,
        counts,
        secs,
        messages,
        transferred: remote.as_ref().map(|r| r.transferred()),
    }))
}

/// What each stage of `r` computes: its key when known, else (upstream not built yet) a
/// digest of its name, version, config and its dependencies' identities, so that a dry run
/// recognises a stage several experiments share before any of it exists.
fn stage_identities(r: &ExperimentReport) -> Vec<String> {
    let mut ids: Vec<String> = Vec::with_capacity(r.stages.len());
    for (i, s) in r.stages.iter().enumerate() {
        let id = match (&s.key, r.plan.stages.get(i)) {
            (Some(key), _) => key.0.clone(),
            (None, Some(spec)) => {
                let version = spec.version.to_le_bytes();
                let mut parts: Vec<&[u8]> = vec![
                    spec.kind.name().as_bytes(),
                    &version,
                    spec.config.as_bytes(),
                ];
                let deps: Vec<&str> = spec
                    .deps
                    .iter()
                    .filter_map(|&d| ids.get(d).map(String::as_str))
                    .collect();
                parts.extend(deps.iter().map(|d| d.as_bytes()));
                crate::store::StageKey::compute(&parts).0
            }
            (None, None) => format!("{}/{}", r.name, s.id),
        };
        ids.push(id);
    }
    ids
}

/// The experiments built side by side: `-j` (default: the cores), but never more than there
/// are experiments, nor (executing locally) more than four per core: `-j 100000` would
/// otherwise start that many threads. A Slurm build's threads only wait for their jobs.
fn jobs_width(asked: Option<usize>, cores: usize, experiments: usize, slurm: bool) -> usize {
    let wanted = asked.unwrap_or(cores).max(1);
    let mut width = wanted.min(experiments.max(1));
    if !slurm {
        width = width.min(4 * cores.max(1));
    }
    // Said when the cap is what limits it (not when there are just few experiments to
    // build, which needs no warning).
    if let Some(asked) = asked
        && width < asked
        && (width < experiments || asked > 4 * cores.max(1))
    {
        crate::term::warn(&format!(
            "-j {asked}: building at most {width} experiment(s) at a time ({experiments} to \
             build, at most four per core on {cores} cores)"
        ));
    }
    width
}

#[cfg(test)]
mod tests {
    use super::jobs_width;

    #[test]
    fn the_pool_is_capped_by_experiments_and_cores() {
        assert_eq!(jobs_width(Some(100_000), 2, 3, false), 3);
        assert_eq!(jobs_width(Some(100_000), 2, 50, false), 8);
        assert_eq!(jobs_width(Some(100_000), 2, 50, true), 50);
        assert_eq!(jobs_width(None, 16, 2, false), 2);
        assert_eq!(jobs_width(Some(1), 16, 20, false), 1);
        assert_eq!(jobs_width(None, 4, 0, false), 1);
    }
}
