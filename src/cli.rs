//! The `hft` command line.
//!
//! Exit codes: 0 success; 1 a stage failed while executing (I/O, training diverged);
//! 2 bad input: usage, config or data errors, each message naming file, line and key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};

use crate::config::ConfigError;
use crate::graph::exec::{self, ExperimentJob, ExperimentReport, StageState};
use crate::graph::stages::StageError;
use crate::graph::{self, DataFile, Database, ExperimentSource, Parsed, Plan};
use crate::report;
use crate::store::{CACHE_DIR_ENV, StatCache, Store};

#[derive(Parser, Debug)]
#[command(
    name = "hft",
    version,
    about = "Train stock-forecasting models the way a build system builds software"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Build every experiment under PATHS (default `experiments/`): run stale stages, reuse
    /// cached ones.
    Build {
        #[command(flatten)]
        common: Common,
        /// Print the plan (what would run and why, what hits) and execute nothing.
        #[arg(long)]
        dry_run: bool,
        /// Experiments built in parallel (default: number of CPUs).
        #[arg(short = 'j', long)]
        jobs: Option<usize>,
    },
    /// Show which stages are stale and why (which key in which file, which input changed).
    Status {
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Args, Debug)]
pub struct Common {
    /// Experiment files or folders searched for *.yaml / *.yml.
    pub paths: Vec<PathBuf>,
    /// The store (default `$HFT_CACHE_DIR`, else `cache/`).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// One line per experiment instead of one per stage.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Entry point used by `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Build {
            common,
            dry_run,
            jobs,
        } => build(&common, dry_run, jobs).into(),
        Command::Status { common } => build(&common, true, None).into(),
    }
}

/// Exit status of a command, kept as an enum until the end so `status` can reuse `build`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    StageFailed,
    BadInput,
}

impl From<Outcome> for ExitCode {
    fn from(o: Outcome) -> ExitCode {
        match o {
            Outcome::Ok => ExitCode::SUCCESS,
            Outcome::StageFailed => ExitCode::from(1),
            Outcome::BadInput => ExitCode::from(2),
        }
    }
}

impl Outcome {
    fn worst(self, other: Outcome) -> Outcome {
        use Outcome::*;
        match (self, other) {
            (BadInput, _) | (_, BadInput) => BadInput,
            (StageFailed, _) | (_, StageFailed) => StageFailed,
            _ => Ok,
        }
    }
}

fn config_errors(errors: &[ConfigError]) -> Outcome {
    for e in errors {
        eprintln!("error: {e}");
    }
    Outcome::BadInput
}

fn fail(message: &str) -> Outcome {
    eprintln!("error: {message}");
    Outcome::BadInput
}

/// `hft build` and (with `dry_run`) `hft status` / `hft build --dry-run`.
fn build(common: &Common, dry_run: bool, jobs: Option<usize>) -> Outcome {
    let started = Instant::now();
    let files = match find_experiments(&common.paths) {
        Ok(f) => f,
        Err(m) => return fail(&m),
    };
    let cache_dir = cache_dir(common.cache_dir.as_deref());
    let store = match Store::open(&cache_dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot open the cache: {e}");
            return Outcome::StageFailed;
        }
    };

    // Parse and plan every experiment before executing anything: a typo in the tenth file
    // should not surface after the first nine have trained.
    let db = Database::default();
    let mut planned: Vec<(PathBuf, &Parsed, &Plan)> = Vec::new();
    let mut errors: Vec<ConfigError> = Vec::new();
    let sources: Vec<(PathBuf, ExperimentSource)> = files
        .iter()
        .filter_map(|f| match crate::config::read_text(f) {
            Ok(text) => Some((f.clone(), ExperimentSource::new(&db, f.clone(), text))),
            Err(e) => {
                errors.push(e);
                None
            }
        })
        .collect();
    for (file, source) in &sources {
        match (
            graph::parse_experiment(&db, *source),
            graph::plan_experiment(&db, *source),
        ) {
            (Ok(parsed), Ok(plan)) => planned.push((file.clone(), parsed, plan)),
            (Err(e), _) | (_, Err(e)) => errors.push(e.clone()),
        }
    }
    let mut by_name: BTreeMap<&str, &Path> = BTreeMap::new();
    for (file, parsed, plan) in &planned {
        if let Some(other) = by_name.insert(&plan.name, file) {
            errors.push(ConfigError {
                file: file.clone(),
                pos: parsed.locations.find("name"),
                key: "name".to_string(),
                message: format!(
                    "experiment name `{}` is also used by {}",
                    plan.name,
                    other.display()
                ),
            });
        }
    }
    if !errors.is_empty() {
        return config_errors(&errors);
    }

    // Data files: digests from the stat cache, fed to salsa as inputs.
    let mut stat_cache = StatCache::load(&store);
    let mut jobs_list = Vec::new();
    for (file, parsed, plan) in &planned {
        let mut data_digests = BTreeMap::new();
        for (i, stage) in plan.stages.iter().enumerate() {
            let Some(path) = &stage.data_file else {
                continue;
            };
            match stat_cache.digest(path) {
                Ok((digest, _)) => {
                    let input = DataFile::new(&db, path.clone(), digest);
                    data_digests.insert(i, *input.digest(&db));
                }
                Err(e) => {
                    let symbols = &parsed.experiment.data.symbols;
                    let index = symbols
                        .iter()
                        .position(|s| stage.id == format!("ingest:{s}"));
                    let key = format!("data.symbols[{}]", index.unwrap_or(0));
                    let what = if e.kind() == std::io::ErrorKind::NotFound {
                        "does not exist".to_string()
                    } else {
                        format!("cannot be read: {e}")
                    };
                    errors.push(ConfigError {
                        file: file.clone(),
                        pos: parsed.locations.find(&key),
                        message: format!(
                            "no data file for `{}`: {} {what} (data.path is `{}`)",
                            stage.id.trim_start_matches("ingest:"),
                            path.display(),
                            parsed.experiment.data.path
                        ),
                        key,
                    });
                }
            }
        }
        jobs_list.push(ExperimentJob {
            file: file.clone(),
            experiment: &parsed.experiment,
            locations: &parsed.locations,
            plan,
            data_digests,
        });
    }
    if let Err(e) = stat_cache.save(&store) {
        report::warn(&format!("cannot save the stat cache: {e}"));
    }
    if !errors.is_empty() {
        return config_errors(&errors);
    }

    let threads = jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let quiet = common.quiet;
    report::set_quiet(quiet);
    let print =
        move |r: &ExperimentReport| report::print_block(&experiment_lines(r, dry_run, quiet));
    let reports = exec::run_all(&store, &jobs_list, threads, dry_run, &print);

    let mut outcome = Outcome::Ok;
    let (mut ran, mut cached, mut stale, mut failed) = (0, 0, 0, 0);
    for r in &reports {
        for s in &r.stages {
            match &s.state {
                StageState::Ran { .. } => ran += 1,
                StageState::Cached => cached += 1,
                StageState::Stale { .. } => stale += 1,
                StageState::Failed(e) => {
                    failed += 1;
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
                eprintln!("error: {}/{}: {e}", r.name, s.id);
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let summary = if dry_run {
        format!(
            "{} experiments: {stale} stages would run, {cached} up to date ({})",
            reports.len(),
            report::duration(secs)
        )
    } else {
        format!(
            "{} experiments: {ran} stages ran, {cached} cached, {failed} failed ({})",
            reports.len(),
            report::duration(secs)
        )
    };
    if !dry_run
        && reports
            .iter()
            .any(|r| r.stages.iter().any(|s| s.id == "evaluate"))
    {
        let experiments: Vec<&crate::config::Experiment> =
            jobs_list.iter().map(|j| j.experiment).collect();
        report::print_block(&[String::new()]);
        report::print_block(&report::results_table(&reports, &experiments));
    }
    report::print_block(&[summary]);
    outcome
}

/// The lines printed for one experiment once it is done.
fn experiment_lines(r: &ExperimentReport, dry_run: bool, quiet: bool) -> Vec<String> {
    let mut lines = Vec::new();
    if quiet {
        let state = match r.error() {
            Some(e) => format!("FAILED: {e}"),
            None => {
                let ran = r
                    .stages
                    .iter()
                    .filter(|s| matches!(s.state, StageState::Ran { .. }))
                    .count();
                let stale = r
                    .stages
                    .iter()
                    .filter(|s| matches!(s.state, StageState::Stale { .. }))
                    .count();
                if dry_run {
                    format!("{stale} stale of {}", r.stages.len())
                } else {
                    format!("{ran} ran of {}", r.stages.len())
                }
            }
        };
        lines.push(format!("{} ({}): {state}", r.name, r.file.display()));
        return lines;
    }
    lines.push(format!("{} ({})", r.name, r.file.display()));
    let width = r.stages.iter().map(|s| s.id.len()).max().unwrap_or(0);
    for s in &r.stages {
        let key = s
            .key
            .as_ref()
            .map(|k| k.short().to_string())
            .unwrap_or_default();
        let what = match &s.state {
            StageState::Cached => format!("cached   {key}"),
            StageState::Ran { secs } => format!("ran      {key}  {}", report::duration(*secs)),
            StageState::Stale { reason } => format!("stale    {reason}"),
            StageState::Skipped => "skipped  (an earlier stage failed)".to_string(),
            StageState::Failed(e) => format!("FAILED   {e}"),
        };
        let what = if dry_run && matches!(s.state, StageState::Cached) {
            format!("fresh    {key}")
        } else {
            what
        };
        lines.push(format!("  {:width$}  {what}", s.id));
    }
    lines
}

fn cache_dir(flag: Option<&Path>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .or_else(|| std::env::var_os(CACHE_DIR_ENV).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("cache"))
}

/// Every `*.yaml` / `*.yml` under the given paths (files are taken as they are), sorted.
pub fn find_experiments(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let default = [PathBuf::from("experiments")];
    let paths = if paths.is_empty() {
        &default[..]
    } else {
        paths
    };
    let mut files = Vec::new();
    for p in paths {
        if p.is_file() {
            files.push(p.clone());
            continue;
        }
        if !p.is_dir() {
            return Err(format!("{}: no such file or directory", p.display()));
        }
        for entry in walkdir::WalkDir::new(p)
            .follow_links(true)
            .sort_by_file_name()
        {
            let entry = entry.map_err(|e| format!("{}: {e}", p.display()))?;
            let is_yaml = entry
                .path()
                .extension()
                .is_some_and(|x| x == "yaml" || x == "yml");
            if entry.file_type().is_file() && is_yaml {
                files.push(entry.into_path());
            }
        }
    }
    // The same file reached twice (`experiments` and `./experiments/a.yaml`) is one.
    let mut seen = std::collections::BTreeSet::new();
    files.retain(|f| seen.insert(std::fs::canonicalize(f).unwrap_or_else(|_| f.clone())));
    if files.is_empty() {
        return Err(format!(
            "no experiment files (*.yaml, *.yml) under {}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(files)
}
