//! The `hft` command line.
//!
//! Exit codes: 0 success; 1 a stage failed while executing (I/O, training diverged);
//! 2 bad input: usage, config or data errors, each message naming file, line and key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};

use crate::config::ConfigError;
use crate::graph::exec::{self, ExperimentJob, ExperimentReport, StageState};
use crate::graph::stages::StageError;
use crate::graph::{self, DataFile, Database, ExperimentSource, Parsed, Plan, memo};
use crate::lock::{LOCK_FILE, Lockfile};
use crate::store::{CACHE_DIR_ENV, StatCache, Store};
use crate::term;

mod exec_stage;
mod housekeeping;
pub mod inspect;
mod results;

/// Printed at the end of `hft --help`.
const EXIT_CODES: &str = "Exit codes:\n  0    success\n  1    a stage failed while executing (I/O, a diverged training), an audit \
did not reproduce, or `cache verify` found a problem\n  2    bad input: usage, config or data errors (each message names file, line and key)\n  130  interrupted (Ctrl-C); a checkpointing training resumes at the next build\n\n\
Environment:\n  HFT_CACHE_DIR  the store (default `cache/`)\n  HFT_NO_MEMO    always plan no-op builds in full (for benchmarks and debugging)\n  HFT_EXECUTOR   where `hft build` executes stages: local (default) or slurm\n  NO_COLOR       no colours in output";

#[derive(Parser, Debug)]
#[command(
    name = "hft",
    version,
    about = "Train stock-forecasting models the way a build system builds software",
    after_help = EXIT_CODES
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
        #[arg(short = 'j', long, value_parser = parse_jobs)]
        jobs: Option<usize>,
        /// Fail before executing anything if a stage key differs from hft.lock, and after
        /// executing if an output does; never rewrite the lock.
        #[arg(long)]
        locked: bool,
        /// Print one JSON document (every experiment's stages, states, keys, the totals)
        /// instead of text.
        #[arg(long)]
        json: bool,
        /// Build only up to this stage (`--until dataset`: data stages, no training).
        #[arg(long, value_name = "STAGE", value_parser = clap::builder::PossibleValuesParser::new(graph::STAGE_ORDER))]
        until: Option<String>,
        #[command(flatten)]
        executor: exec_stage::ExecutorArgs,
        /// A remote cache shared between machines (`s3://bucket/prefix`, `file:///folder`,
        /// `https://host/path`): a local miss is pulled from it, what runs is pushed to it.
        /// S3 credentials come from the AWS_* environment variables.
        #[arg(long, value_name = "URL", env = crate::store::remote::REMOTE_ENV)]
        remote: Option<String>,
        /// Only pull from `--remote`, never push (CI consumers of a shared cache).
        #[arg(long, requires = "remote")]
        remote_read_only: bool,
    },
    /// Show which stages are stale and why (which key in which file, which input changed).
    Status {
        #[command(flatten)]
        common: Common,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Re-execute built stages bypassing the cache and compare with what was recorded.
    Audit {
        #[command(flatten)]
        common: Common,
        /// Audit only this stage (`train`, `dataset`, `ingest:AAPL`, ...).
        #[arg(long)]
        stage: Option<String>,
        /// Audit N experiments picked deterministically (spread over the name order).
        #[arg(long)]
        sample: Option<usize>,
        /// Compare with hft.lock instead of the cache's records.
        #[arg(long)]
        locked: bool,
        /// Tolerance class, for every stage or one (`train=ulp:4`): bitwise (default),
        /// ulp:N, metric:EPS.
        #[arg(long, value_name = "[STAGE=]CLASS")]
        tolerance: Vec<String>,
        /// Print the results as JSON.
        #[arg(long)]
        json: bool,
        /// Also write a JUnit XML report here.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
    },
    /// Write a new experiment file that extends a template.
    New {
        /// The experiment's name (the file is `DIR/NAME.yaml`).
        name: String,
        /// Template name in `templates/` (`quick_test`) or a path to a template file.
        #[arg(long, default_value = "default")]
        template: String,
        /// Folder to write into.
        #[arg(long, default_value = "experiments")]
        dir: PathBuf,
    },
    /// Execute one stage whose key `hft build --executor slurm` computed (what its Slurm
    /// jobs run).
    #[command(hide = true)]
    ExecStage(exec_stage::ExecStageArgs),
    /// Inspect resolved configs.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// List experiments: state (built, stale, failed, new), model, optimizer, key metrics.
    Ls {
        #[command(flatten)]
        common: Common,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One experiment in full: resolved config, stage keys and output digests, timings,
    /// training log, metrics.
    Show {
        /// Experiment name, or an experiment file.
        experiment: String,
        #[command(flatten)]
        common: Common,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Compare the last builds of experiments: the config values that differ between them
    /// and their metrics, one row each (reads the catalog only: fast on thousands).
    Compare {
        /// Experiment files or folders (default `experiments/`).
        paths: Vec<PathBuf>,
        /// Sort by a metric or config value (`backtest.strategy.sharpe`, `optimizer.lr`).
        #[arg(long, value_name = "KEY")]
        sort: Option<String>,
        /// Sort descending (with --sort) or reverse the name order.
        #[arg(long, short = 'r')]
        reverse: bool,
        /// Keep experiments matching KEY OP VALUE, OP one of = != > >= < <= ~ (contains):
        /// `--filter 'backtest.strategy.sharpe>1' --filter model.type=lstm` (all must match).
        #[arg(long = "filter", value_name = "EXPR")]
        filters: Vec<String>,
        /// Metric columns (repeatable; `all` for every metric). Default: headline metrics.
        #[arg(long = "metric", value_name = "KEY")]
        metrics: Vec<String>,
        #[arg(long, conflicts_with_all = ["csv", "md"])]
        json: bool,
        #[arg(long, conflicts_with = "md")]
        csv: bool,
        /// Markdown table.
        #[arg(long)]
        md: bool,
        /// The store (default `$HFT_CACHE_DIR`, else `cache/`).
        #[arg(long)]
        cache_dir: Option<PathBuf>,
    },
    /// Why each stage of an experiment would re-run or hit: the config keys, data files and
    /// versions that changed since its last build.
    Explain {
        /// Experiment name, or an experiment file.
        experiment: String,
        #[command(flatten)]
        common: Common,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a self-contained HTML report (metrics, loss and equity curves, predictions,
    /// config differences) of the selected experiments.
    Report {
        #[command(flatten)]
        common: Common,
        /// The HTML file to write.
        #[arg(short, long, default_value = "report.html")]
        output: PathBuf,
    },
    /// Remove cache entries that no current experiment or hft.lock reaches, then the least
    /// recently used ones above a size budget.
    Gc {
        #[command(flatten)]
        common: Common,
        /// Also keep what the last N builds of each experiment produced.
        #[arg(long, default_value_t = 0, value_name = "N")]
        keep_last: usize,
        /// Size budget for the store: 500M, 20G, 1048576.
        #[arg(long, value_name = "SIZE")]
        max_size: Option<String>,
        /// Print what would be freed; delete nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Check and describe the store.
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
    /// Download the bars of every `data.source: api` experiment under PATHS again and
    /// replace their snapshots (a build only fetches a request it has never snapshotted).
    /// Credentials come from the environment (Alpaca: APCA_API_KEY_ID, APCA_API_SECRET_KEY).
    Fetch {
        #[command(flatten)]
        common: Common,
    },
    /// Print a shell completion script: `hft completions bash > /etc/bash_completion.d/hft`.
    Completions { shell: clap_complete::Shell },
    /// Write man pages (hft.1 and one per subcommand) into a folder.
    Man {
        #[arg(default_value = "man")]
        dir: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum CacheCommand {
    /// Re-hash every blob and check every action record; exit 1 if anything is corrupt or
    /// missing.
    Verify {
        /// The store (default `$HFT_CACHE_DIR`, else `cache/`).
        #[arg(long)]
        cache_dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Size, counts, and the hit rate of the last builds.
    Stats {
        /// The store (default `$HFT_CACHE_DIR`, else `cache/`).
        #[arg(long)]
        cache_dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print an experiment's fully resolved config and where every value came from.
    Show {
        /// Experiment name, or an experiment file.
        experiment: String,
        #[command(flatten)]
        select: Select,
    },
}

/// Which experiments a command works on, and the overrides applied to them.
#[derive(Args, Debug)]
pub struct Select {
    /// Experiment files or folders searched for *.yaml / *.yml (default `experiments/`).
    pub paths: Vec<PathBuf>,
    /// Override a value in every selected experiment: `--set optimizer.lr=1e-3` (typed as
    /// YAML would type it; repeatable; wins over files and templates).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub overrides: Vec<String>,
    /// Keep only experiments whose resolved value matches: `--filter optimizer.type=muon`
    /// (repeatable; all must match).
    #[arg(long = "filter", value_name = "PATH=VALUE")]
    pub filters: Vec<String>,
}

#[derive(Args, Debug)]
pub struct Common {
    #[command(flatten)]
    pub select: Select,
    /// The store (default `$HFT_CACHE_DIR`, else `cache/`).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// One line per experiment instead of one per stage.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `-j N`: a whole number of at least 1.
fn parse_jobs(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{text}` is not a whole number")),
    }
}

/// Entry point used by `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Ctrl-C lets a checkpointing training save and stop (exit 130, resumed by the next
    // build); anything else, or a second Ctrl-C, exits at once.
    let _ = ctrlc::set_handler(|| {
        if !crate::train::RESUMABLE_RUNNING.load(Ordering::SeqCst)
            || crate::train::INTERRUPTED.swap(true, Ordering::SeqCst)
        {
            graph::slurm::cancel_in_flight();
            std::process::exit(130);
        }
    });
    let code = match cli.command {
        Command::Build {
            common,
            dry_run,
            jobs,
            locked,
            json,
            until,
            executor,
            remote,
            remote_read_only,
        } => match executor.install(&common) {
            Ok(()) => build(
                &common,
                &BuildArgs {
                    dry_run,
                    jobs,
                    locked,
                    json,
                    until,
                    remote,
                    remote_read_only,
                },
            ),
            Err(outcome) => outcome,
        }
        .into(),
        Command::ExecStage(args) => exec_stage::run(&args).into(),
        Command::Status { common, json } => build(
            &common,
            &BuildArgs {
                dry_run: true,
                json,
                ..BuildArgs::default()
            },
        )
        .into(),
        Command::Audit {
            common,
            stage,
            sample,
            locked,
            tolerance,
            json,
            junit,
        } => audit(
            &common,
            &AuditArgs {
                stage,
                sample,
                locked,
                tolerance,
                json,
                junit,
            },
        )
        .into(),
        Command::New {
            name,
            template,
            dir,
        } => new_experiment(&name, &template, &dir).into(),
        Command::Config {
            command: ConfigCommand::Show { experiment, select },
        } => config_show(&experiment, &select).into(),
        Command::Ls { common, json } => inspect::ls(&common, json).into(),
        Command::Fetch { common } => fetch(&common).into(),
        Command::Show {
            experiment,
            common,
            json,
        } => inspect::show(&experiment, &common, json).into(),
        Command::Compare {
            paths,
            sort,
            reverse,
            filters,
            metrics,
            json,
            csv,
            md,
            cache_dir,
        } => inspect::compare(&inspect::CompareArgs {
            paths,
            cache_dir,
            sort,
            reverse,
            filters,
            metrics,
            format: match (json, csv, md) {
                (true, _, _) => inspect::Format::Json,
                (_, true, _) => inspect::Format::Csv,
                (_, _, true) => inspect::Format::Markdown,
                _ => inspect::Format::Table,
            },
        })
        .into(),
        Command::Explain {
            experiment,
            common,
            json,
        } => inspect::explain(&experiment, &common, json).into(),
        Command::Report { common, output } => inspect::html_report(&common, &output).into(),
        Command::Gc {
            common,
            keep_last,
            max_size,
            dry_run,
            json,
        } => housekeeping::gc(&common, keep_last, max_size.as_deref(), dry_run, json).into(),
        Command::Cache {
            command: CacheCommand::Verify { cache_dir, json },
        } => housekeeping::verify(cache_dir.as_deref(), json).into(),
        Command::Cache {
            command: CacheCommand::Stats { cache_dir, json },
        } => housekeeping::stats(cache_dir.as_deref(), json).into(),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "hft", &mut std::io::stdout());
            Outcome::Ok.into()
        }
        Command::Man { dir } => man_pages(&dir).into(),
    };
    if crate::train::INTERRUPTED.load(Ordering::SeqCst) {
        return ExitCode::from(130);
    }
    code
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

pub(crate) fn fail(message: &str) -> Outcome {
    eprintln!("error: {message}");
    Outcome::BadInput
}

/// `hft build` and (with `dry_run`) `hft status` / `hft build --dry-run`.
/// How `hft build` / `hft status` was asked to run.
#[derive(Debug, Default)]
struct BuildArgs {
    dry_run: bool,
    jobs: Option<usize>,
    locked: bool,
    json: bool,
    until: Option<String>,
    /// `--remote` and `--remote-read-only`.
    remote: Option<String>,
    remote_read_only: bool,
}

fn build(common: &Common, args: &BuildArgs) -> Outcome {
    let BuildArgs {
        dry_run,
        jobs,
        locked,
        json,
        ..
    } = *args;
    let started = Instant::now();
    let started_ns = memo::now_ns();
    let store = match open_store(common) {
        Ok(s) => s,
        Err(outcome) => return outcome,
    };
    // Checked before the no-op fast path, so that a malformed URL is always an error.
    let remote = match args.remote.as_deref() {
        Some(url) => match crate::store::remote::Remote::open(url, args.remote_read_only) {
            Ok(r) => Some(r),
            Err(e) => return fail(&e),
        },
        None => None,
    };
    let lock_path = Path::new(LOCK_FILE);
    // The no-op fast path: nothing this build depends on changed since the last one.
    let use_memo = !dry_run && std::env::var_os(memo::DISABLE_ENV).is_none();
    let memo_id = use_memo.then(|| memo::invocation_id(&invocation_parts(common, args)));
    if let Some(id) = &memo_id
        && !json
        && (!locked || lock_path.exists())
        && let Some(m) = memo::check(&store, id)
    {
        return print_memo(&store, &m, common.quiet, started);
    }
    // Fingerprints of the selection before anything is read, for the memo.
    let mut watched = match memo_id {
        Some(_) => watch_selection(&common.select.paths),
        None => Vec::new(),
    };
    let db = Database::default();
    let mut planned = match load_experiments(&db, &common.select) {
        Ok(p) => p,
        Err(outcome) => return outcome,
    };
    if let Some(until) = &args.until {
        for l in &mut planned {
            l.plan = l.plan.until(until);
        }
    }
    let jobs_list = match make_jobs(&db, &store, &planned, &mut watched, !dry_run) {
        Ok(j) => j,
        Err(outcome) => return outcome,
    };
    watched.extend(db.templates_read());
    watched.extend(db.data_folders_read());

    let lock = match Lockfile::load(lock_path) {
        Ok(l) => l,
        Err(e) => return fail(&e),
    };
    if locked {
        let Some(existing) = &lock else {
            return fail(&format!(
                "--locked: there is no {LOCK_FILE}; run `hft build` first"
            ));
        };
        let problems = crate::lock::check_keys(existing, &jobs_list);
        if !problems.is_empty() {
            for p in &problems {
                eprintln!("error: --locked: {p}");
            }
            return Outcome::BadInput;
        }
    }

    let threads = jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let quiet = common.quiet || json;
    term::set_quiet(quiet);
    let print = move |r: &ExperimentReport| {
        if !json {
            term::print_block(&experiment_lines(r, dry_run, quiet))
        }
    };
    let reports = exec::run_all_with_remote(
        &store,
        remote.as_ref(),
        &jobs_list,
        threads,
        dry_run,
        &print,
    );
    if !dry_run {
        match (&lock, locked) {
            (Some(existing), true) => {
                let problems = crate::lock::check_outputs(existing, &reports);
                for p in &problems {
                    eprintln!("error: --locked: {p}");
                }
                if !problems.is_empty() {
                    return Outcome::StageFailed;
                }
            }
            _ => {
                if let Err(e) = crate::lock::update(lock_path, &jobs_list, &reports) {
                    term::warn(&format!("cannot write {LOCK_FILE}: {e}"));
                }
            }
        }
    }

    let mut outcome = Outcome::Ok;
    let (mut ran, mut cached, mut stale, mut failed, mut pulled) = (0, 0, 0, 0, 0);
    for r in &reports {
        for s in &r.stages {
            match &s.state {
                StageState::Ran { .. } => ran += 1,
                StageState::Cached if s.pulled => pulled += 1,
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
        let entry = crate::catalog::BuildEntry {
            at: crate::store::now_unix(),
            experiments: reports.len(),
            ran,
            cached: cached + pulled,
            failed,
            secs,
        };
        // A read-only (shared) cache serves hits; its derived data just stays as it is.
        if let Err(e) = crate::catalog::append(&store, &rows, &entry)
            && e.kind() != std::io::ErrorKind::ReadOnlyFilesystem
        {
            term::warn(&format!("cannot update the experiment catalog: {e}"));
        }
    }
    let summary = if dry_run {
        format!(
            "{} experiments: {stale} stages would run, {cached} up to date ({})",
            reports.len(),
            term::duration(secs)
        )
    } else {
        let pulled = match pulled {
            0 => String::new(),
            n => format!("{n} pulled, "),
        };
        format!(
            "{} experiments: {ran} stages ran, {pulled}{cached} cached, {failed} failed ({})",
            reports.len(),
            term::duration(secs)
        )
    };
    if let Some(id) = &memo_id {
        let all_built = reports
            .iter()
            .all(|r| r.stages.iter().all(|s| s.record.is_some()));
        if outcome == Outcome::Ok && all_built && !memo::is_racy(&watched, started_ns) {
            // Written after the lock: its fingerprint is the one the next build will see.
            watched.push((lock_path.to_path_buf(), memo::fingerprint(lock_path)));
            memo::save(
                &store,
                id,
                &noop_memo(&store, &jobs_list, &reports, watched),
            );
        } else {
            memo::forget(&store, id);
        }
    }
    if json {
        let doc = serde_json::json!({
            "dry_run": dry_run,
            "experiments": reports.iter().map(report_json).collect::<Vec<_>>(),
            "ran": ran,
            "cached": cached,
            "pulled": pulled,
            "stale": stale,
            "failed": failed,
            "secs": secs,
        });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return outcome;
    }
    if !dry_run
        && reports
            .iter()
            .any(|r| r.stages.iter().any(|s| s.id == "evaluate"))
    {
        let experiments: Vec<&crate::config::Experiment> =
            jobs_list.iter().map(|j| j.experiment).collect();
        term::print_block(&[String::new()]);
        term::print_block(&results::results_table(&reports, &experiments));
    }
    term::print_block(&[summary]);
    outcome
}

/// What decides a build's outcome besides the files it reads: the memo's name.
fn invocation_parts(common: &Common, args: &BuildArgs) -> Vec<String> {
    let select = &common.select;
    let mut parts = vec![
        format!("cache={}", cache_dir(common.cache_dir.as_deref()).display()),
        format!("until={:?}", args.until),
        format!("locked={}", args.locked),
    ];
    parts.extend(select.paths.iter().map(|p| format!("path={}", p.display())));
    parts.extend(select.overrides.iter().map(|o| format!("set={o}")));
    parts.extend(select.filters.iter().map(|f| format!("filter={f}")));
    parts
}

/// The experiment files and every folder searched for them, fingerprinted: a new file in a
/// folder changes the folder's mtime.
fn watch_selection(paths: &[PathBuf]) -> memo::Watched {
    let default = [PathBuf::from("experiments")];
    let paths = if paths.is_empty() {
        &default[..]
    } else {
        paths
    };
    let mut watched = Vec::new();
    for p in paths {
        for entry in walkdir::WalkDir::new(p)
            .follow_links(true)
            .into_iter()
            .flatten()
        {
            let is_yaml = entry
                .path()
                .extension()
                .is_some_and(|x| x == "yaml" || x == "yml");
            if entry.file_type().is_dir() || is_yaml {
                let path = entry.into_path();
                let fp = memo::fingerprint(&path);
                watched.push((path, fp));
            }
        }
    }
    watched
}

/// What a no-op rerun of this (fully built) build looks like.
fn noop_memo(
    store: &Store,
    jobs: &[ExperimentJob],
    reports: &[ExperimentReport],
    watched: memo::Watched,
) -> memo::Memo {
    let mut entries = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let cached: Vec<ExperimentReport> = reports
        .iter()
        .map(|r| {
            let mut r = r.clone();
            for s in &mut r.stages {
                s.state = StageState::Cached;
            }
            r
        })
        .collect();
    for r in reports {
        for s in &r.stages {
            let Some(record) = &s.record else { continue };
            let action = format!("actions/{}.json", record.key.0);
            if seen.insert(action.clone())
                && let Ok(m) = std::fs::metadata(store.root().join(&action))
            {
                entries.push((action, m.len()));
            }
            for out in record.outputs.values() {
                let path = store.blob_path(&out.digest);
                if let Ok(rel) = path.strip_prefix(store.root()) {
                    let rel = rel.display().to_string();
                    if seen.insert(rel.clone()) {
                        entries.push((rel, out.size));
                    }
                }
            }
        }
    }
    let experiments = cached
        .iter()
        .map(|r| {
            (
                experiment_lines(r, false, false),
                experiment_lines(r, false, true),
            )
        })
        .collect();
    let has_results = reports
        .iter()
        .any(|r| r.stages.iter().any(|s| s.id == "evaluate"));
    let results = if has_results {
        let configs: Vec<&crate::config::Experiment> = jobs.iter().map(|j| j.experiment).collect();
        results::results_rows(&cached, &configs)
    } else {
        Vec::new()
    };
    memo::Memo {
        version: memo::Memo::VERSION,
        watched,
        entries,
        experiments,
        results,
        stages: reports.iter().map(|r| r.stages.len()).sum(),
    }
}

/// The output of a no-op build, from its memo.
fn print_memo(store: &Store, m: &memo::Memo, quiet: bool, started: Instant) -> Outcome {
    for (verbose, quiet_lines) in &m.experiments {
        term::print_block(if quiet { quiet_lines } else { verbose });
    }
    // Hits count as uses for gc's least-recently-used order.
    for (rel, _) in &m.entries {
        if let Some(key) = rel
            .strip_prefix("actions/")
            .and_then(|f| f.strip_suffix(".json"))
        {
            store.touch_action(&crate::store::StageKey(key.to_string()));
        }
    }
    if !m.results.is_empty() {
        term::print_block(&[String::new()]);
        term::print_block(&term::table(&m.results));
    }
    let secs = started.elapsed().as_secs_f64();
    let entry = crate::catalog::BuildEntry {
        at: crate::store::now_unix(),
        experiments: m.experiments.len(),
        ran: 0,
        cached: m.stages,
        failed: 0,
        secs,
    };
    if let Err(e) = crate::catalog::append(store, &[], &entry)
        && e.kind() != std::io::ErrorKind::ReadOnlyFilesystem
    {
        term::warn(&format!("cannot update the experiment catalog: {e}"));
    }
    term::print_block(&[format!(
        "{} experiments: 0 stages ran, {} cached, 0 failed ({}; nothing changed since the last build)",
        m.experiments.len(),
        m.stages,
        term::duration(secs)
    )]);
    Outcome::Ok
}

/// Experiments with their data files fingerprinted (stat cache) and fed to salsa; the data
/// files' fingerprints are added to `watched`. API sources use their recorded snapshot; a
/// request never snapshotted is fetched now when `allow_fetch` (a build), else an error.
fn make_jobs<'a>(
    db: &Database,
    store: &Store,
    planned: &'a [Loaded],
    watched: &mut memo::Watched,
    allow_fetch: bool,
) -> Result<Vec<ExperimentJob<'a>>, Outcome> {
    let mut errors: Vec<ConfigError> = Vec::new();

    // Data files: digests from the stat cache, fed to salsa as inputs.
    let mut stat_cache = StatCache::load(store);
    let mut jobs_list = Vec::new();
    for Loaded { file, parsed, plan } in planned {
        let mut data_digests = BTreeMap::new();
        let e = &parsed.experiment;
        errors.extend(plan.data_errors.iter().cloned());
        for (i, stage) in plan.stages.iter().enumerate() {
            let graph::StageKind::Ingest { symbol } = &stage.kind else {
                continue;
            };
            let symbol_key = || {
                let index = e.data.symbols.listed().iter().position(|s| s == symbol);
                match index {
                    Some(i) => format!("data.symbols[{i}]"),
                    None => "data.symbols".to_string(),
                }
            };
            if e.data.source == crate::config::SourceKind::Api {
                let req = crate::fetch::request(e, symbol);
                let record = crate::fetch::record_path(store, &req);
                let digest = match crate::fetch::recorded(store, &req) {
                    Some((_, digest)) => Ok(digest),
                    None if allow_fetch => crate::fetch::snapshot_for_build(store, e, symbol),
                    None => Err(format!(
                        "no snapshot of `{symbol}` from the API yet; run `hft fetch` (or `hft \
                         build`, which fetches it once)"
                    )),
                };
                match digest {
                    Ok(digest) => {
                        watched.push((record.clone(), memo::fingerprint(&record)));
                        data_digests.insert(i, vec![digest]);
                    }
                    Err(message) => {
                        let key = symbol_key();
                        errors.push(ConfigError::at(&parsed.locations.find(&key), &key, message));
                    }
                }
                continue;
            }
            let mut digests = Vec::with_capacity(stage.data_files.len());
            for path in &stage.data_files {
                match stat_cache.digest(path) {
                    Ok((digest, fingerprint)) => {
                        watched.push((path.clone(), Some(fingerprint)));
                        let input = DataFile::new(db, path.clone(), digest);
                        digests.push(*input.digest(db));
                    }
                    Err(err) => {
                        let key = symbol_key();
                        let what = if err.kind() == std::io::ErrorKind::NotFound {
                            "does not exist".to_string()
                        } else {
                            format!("cannot be read: {err}")
                        };
                        let message = format!(
                            "no data file for `{symbol}`: {} {what} (data.path is `{}`)",
                            path.display(),
                            e.data.path
                        );
                        errors.push(ConfigError::at(&parsed.locations.find(&key), &key, message));
                    }
                }
            }
            if !stage.data_files.is_empty() {
                data_digests.insert(i, digests);
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
    if let Err(e) = stat_cache.save(store) {
        term::warn(&format!("cannot save the stat cache: {e}"));
    }
    if !errors.is_empty() {
        return Err(config_errors(&errors));
    }
    Ok(jobs_list)
}

/// `hft fetch`: every API request of the selected experiments, fetched again (each request
/// once, even when several experiments share it).
fn fetch(common: &Common) -> Outcome {
    let store = match open_store(common) {
        Ok(s) => s,
        Err(outcome) => return outcome,
    };
    let db = Database::default();
    let planned = match load_experiments(&db, &common.select) {
        Ok(p) => p,
        Err(outcome) => return outcome,
    };
    let mut seen = std::collections::BTreeSet::new();
    let mut outcome = Outcome::Ok;
    let mut lines = Vec::new();
    for l in &planned {
        let e = &l.parsed.experiment;
        if e.data.source != crate::config::SourceKind::Api {
            continue;
        }
        for symbol in e.data.symbols.listed() {
            let req = crate::fetch::request(e, symbol);
            if !seen.insert(crate::fetch::record_id(&req)) {
                continue;
            }
            match crate::fetch::refresh(&store, &req) {
                Ok((record, changed)) => lines.push(format!(
                    "{symbol:<10} {} rows, {} page{}, {}  {}",
                    record.rows,
                    record.pages,
                    if record.pages == 1 { "" } else { "s" },
                    if changed { "new snapshot" } else { "unchanged" },
                    record.url
                )),
                Err(message) => {
                    eprintln!("error: {}: {symbol}: {message}", l.plan.name);
                    outcome = outcome.worst(Outcome::StageFailed);
                }
            }
        }
    }
    if seen.is_empty() {
        return fail("no experiment with `data.source: api` among the selected ones");
    }
    if !common.quiet {
        term::print_block(&lines);
    }
    outcome
}

/// What `hft audit` was asked for.
struct AuditArgs {
    stage: Option<String>,
    sample: Option<usize>,
    locked: bool,
    tolerance: Vec<String>,
    json: bool,
    junit: Option<PathBuf>,
}

/// `hft audit`: exit 0 when every audited stage reproduces, 1 when one diverges or fails.
fn audit(common: &Common, args: &AuditArgs) -> Outcome {
    use crate::audit::Tolerance;
    let mut default_tolerance = Tolerance::Bitwise;
    let mut per_stage: BTreeMap<String, Tolerance> = BTreeMap::new();
    for t in &args.tolerance {
        let parsed = match t.split_once('=') {
            Some((stage, _)) if !graph::STAGE_ORDER.contains(&stage.trim()) => {
                let hint =
                    match crate::config::did_you_mean(stage, graph::STAGE_ORDER.iter().copied()) {
                        Some(best) => format!("did you mean `{best}`?"),
                        None => format!("stages are {}", graph::STAGE_ORDER.join(", ")),
                    };
                Err(format!("`{t}`: no stage `{stage}`; {hint}"))
            }
            Some((stage, class)) => Tolerance::parse(class).map(|c| {
                per_stage.insert(stage.trim().to_string(), c);
            }),
            None => Tolerance::parse(t).map(|c| default_tolerance = c),
        };
        if let Err(e) = parsed {
            return fail(&format!("--tolerance: {e}"));
        }
    }
    let store = match open_store(common) {
        Ok(s) => s,
        Err(outcome) => return outcome,
    };
    let db = Database::default();
    let planned = match load_experiments(&db, &common.select) {
        Ok(p) => p,
        Err(outcome) => return outcome,
    };
    let jobs_list = match make_jobs(&db, &store, &planned, &mut Vec::new(), false) {
        Ok(j) => j,
        Err(outcome) => return outcome,
    };
    let lock = if args.locked {
        match Lockfile::load(Path::new(LOCK_FILE)) {
            Ok(Some(l)) => Some(l),
            Ok(None) => return fail(&format!("--locked: there is no {LOCK_FILE}")),
            Err(e) => return fail(&e),
        }
    } else {
        None
    };
    // A deterministic sample spread over the name order.
    let mut chosen: Vec<&ExperimentJob> = jobs_list.iter().collect();
    chosen.sort_by(|a, b| a.plan.name.cmp(&b.plan.name));
    if let Some(n) = args.sample.filter(|&n| n > 0 && n < chosen.len()) {
        let step = chosen.len() as f64 / n as f64;
        chosen = (0..n).map(|i| chosen[(i as f64 * step) as usize]).collect();
    }
    // Look every stage up (no execution) to find the recorded outputs and their inputs.
    let owned: Vec<ExperimentJob> = chosen
        .iter()
        .map(|j| ExperimentJob {
            file: j.file.clone(),
            experiment: j.experiment,
            locations: j.locations,
            plan: j.plan,
            data_digests: j.data_digests.clone(),
        })
        .collect();
    let reports = exec::run_all(&store, &owned, 1, true, &|_| {});
    let tolerance_for = |stage: &str| *per_stage.get(stage).unwrap_or(&default_tolerance);
    let results = crate::audit::audit(
        &store,
        &chosen,
        &reports,
        args.stage.as_deref(),
        lock.as_ref(),
        &tolerance_for,
    );
    if let Some(path) = &args.junit
        && let Err(e) = std::fs::write(path, crate::audit::junit(&results))
    {
        term::warn(&format!("cannot write {}: {e}", path.display()));
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&results).unwrap_or_default()
        );
    } else {
        let mut rows = vec![vec![
            "experiment".to_string(),
            "stage".to_string(),
            "tolerance".to_string(),
            "result".to_string(),
            "detail".to_string(),
        ]];
        for r in &results {
            rows.push(vec![
                r.experiment.clone(),
                r.stage.clone(),
                r.tolerance.clone(),
                r.status.clone(),
                r.detail.clone(),
            ]);
        }
        term::print_block(&term::table(&rows));
    }
    let bad: Vec<&crate::audit::StageAudit> =
        results.iter().filter(|r| r.status != "pass").collect();
    if let Some(first) = bad.iter().find(|r| r.status == "diverged") {
        eprintln!(
            "error: first divergence: {}/{}: {}",
            first.experiment, first.stage, first.detail
        );
    }
    if results.is_empty() {
        return fail("no stage matched");
    }
    if bad.is_empty() {
        eprintln!("audit: {} stages reproduced", results.len());
        Outcome::Ok
    } else {
        eprintln!(
            "audit: {} of {} stages did not reproduce",
            bad.len(),
            results.len()
        );
        Outcome::StageFailed
    }
}

/// One selected experiment: its file, resolved config and stages.
pub struct Loaded {
    pub file: PathBuf,
    pub parsed: Parsed,
    pub plan: Plan,
}

/// Finds, resolves (templates, matrix, overrides), validates, filters and plans every
/// experiment under the selected paths. Every config error is printed before returning, so
/// a typo in the tenth file surfaces before the first nine train.
fn load_experiments(db: &Database, select: &Select) -> Result<Vec<Loaded>, Outcome> {
    let files = find_experiments(&select.paths).map_err(|m| fail(&m))?;
    let filters = parse_filters(&select.filters).map_err(|m| fail(&m))?;
    let mut errors: Vec<ConfigError> = Vec::new();
    let mut loaded = Vec::new();
    for file in &files {
        let text = match crate::config::read_text(file) {
            Ok(t) => t,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let source = ExperimentSource::new(db, file.clone(), text, select.overrides.clone());
        match (
            graph::parse_experiments(db, source),
            graph::plan_experiments(db, source),
        ) {
            (Ok(parsed), Ok(plans)) => {
                for (parsed, plan) in parsed.iter().zip(plans) {
                    loaded.push(Loaded {
                        file: file.clone(),
                        parsed: parsed.clone(),
                        plan: plan.clone(),
                    });
                }
            }
            (Err(e), _) | (_, Err(e)) => errors.push(e.clone()),
        }
    }
    let mut by_name: BTreeMap<String, PathBuf> = BTreeMap::new();
    for l in &loaded {
        if let Some(other) = by_name.insert(l.plan.name.clone(), l.file.clone()) {
            errors.push(ConfigError::at(
                &l.parsed.locations.find("name"),
                "name",
                format!(
                    "experiment name `{}` is also used by {}",
                    l.plan.name,
                    other.display()
                ),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(config_errors(&errors));
    }
    loaded.retain(|l| matches_filters(&l.parsed.experiment, &filters));
    if loaded.is_empty() {
        return Err(fail("no experiment matches the filters"));
    }
    Ok(loaded)
}

/// `path=value` filters, the value typed as YAML would type it.
fn parse_filters(filters: &[String]) -> Result<Vec<(String, serde_json::Value)>, String> {
    filters
        .iter()
        .map(|f| {
            let (path, value) = f
                .split_once('=')
                .ok_or_else(|| format!("--filter {f}: expected PATH=VALUE"))?;
            let node = crate::config::located::parse(value, "--filter")
                .map_err(|(_, m)| format!("--filter {f}: {m}"))?;
            let value = node.to_json(&mut crate::config::LocationMap::default());
            Ok((path.trim().to_string(), value))
        })
        .collect()
}

fn matches_filters(e: &crate::config::Experiment, filters: &[(String, serde_json::Value)]) -> bool {
    let json = serde_json::to_value(e).unwrap_or_default();
    filters.iter().all(|(path, want)| {
        let pointer = format!("/{}", path.replace('.', "/"));
        match json.pointer(&pointer) {
            // 64 and 64.0 are the same value.
            Some(have) => {
                have == want || (have.as_f64().is_some() && have.as_f64() == want.as_f64())
            }
            None => false,
        }
    })
}

/// `hft new NAME --template T`.
fn new_experiment(name: &str, template: &str, dir: &Path) -> Outcome {
    let template_path = if template.ends_with(".yaml") || template.ends_with(".yml") {
        PathBuf::from(template)
    } else {
        PathBuf::from("templates").join(format!("{template}.yaml"))
    };
    if !template_path.is_file() {
        let known: Vec<String> = std::fs::read_dir("templates")
            .map(|d| {
                d.flatten()
                    .filter_map(|e| {
                        let n = e.file_name().to_string_lossy().into_owned();
                        n.strip_suffix(".yaml").map(str::to_string)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let hint = match crate::config::did_you_mean(template, known.iter().map(String::as_str)) {
            Some(best) => format!("; did you mean `{best}`?"),
            None => format!("; templates: {}", known.join(", ")),
        };
        return fail(&format!("no template {}{hint}", template_path.display()));
    }
    let valid_name = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !valid_name {
        return fail(&format!(
            "`{name}` is not a file-friendly name (letters, digits, _ - .)"
        ));
    }
    let file = dir.join(format!("{name}.yaml"));
    if file.exists() {
        return fail(&format!("{} already exists", file.display()));
    }
    let text = format!(
        "# Created by `hft new {name} --template {template}`.\n\
         # Every key of {} applies; keys set here win (see `hft config show {name}`).\n\
         extends: {}\n\
         name: {name}\n\
         description: \"\"\n",
        template_path.display(),
        template_path.display()
    );
    // The new file must resolve: a broken template is reported now, not at the next build.
    let db = Database::default();
    let source = ExperimentSource::new(&db, file.clone(), text.clone(), Vec::new());
    if let Err(e) = graph::parse_experiments(&db, source) {
        eprintln!("error: {e}");
        return Outcome::BadInput;
    }
    if let Err(e) = std::fs::create_dir_all(dir).and_then(|_| std::fs::write(&file, text)) {
        return fail(&format!("cannot write {}: {e}", file.display()));
    }
    println!("wrote {}", file.display());
    Outcome::Ok
}

/// `hft config show EXP`: every resolved value and where it was set.
fn config_show(experiment: &str, select: &Select) -> Outcome {
    let db = Database::default();
    let mut select_all = Select {
        paths: select.paths.clone(),
        overrides: select.overrides.clone(),
        filters: select.filters.clone(),
    };
    let as_file = Path::new(experiment);
    if as_file.is_file() {
        select_all.paths = vec![as_file.to_path_buf()];
    }
    let loaded = match load_experiments(&db, &select_all) {
        Ok(l) => l,
        Err(o) => return o,
    };
    let chosen: Vec<&Loaded> = if as_file.is_file() {
        loaded.iter().collect()
    } else {
        loaded
            .iter()
            .filter(|l| l.plan.name == experiment)
            .collect()
    };
    if chosen.is_empty() {
        let names: Vec<&str> = loaded.iter().map(|l| l.plan.name.as_str()).collect();
        let hint = match crate::config::did_you_mean(experiment, names.iter().copied()) {
            Some(best) => format!("; did you mean `{best}`?"),
            None => String::new(),
        };
        return fail(&format!("no experiment named `{experiment}`{hint}"));
    }
    for l in chosen {
        let mut rows = Vec::new();
        let json = serde_json::to_value(&l.parsed.experiment).unwrap_or_default();
        for (path, value) in crate::config::json_leaves(&json, false) {
            let value = value.to_string();
            let from = match l.parsed.locations.get(&path) {
                Some(origin) => origin.to_string(),
                None if path == "name" => "the file name".to_string(),
                None => "default".to_string(),
            };
            rows.push(vec![format!("{path}:"), value, format!("# {from}")]);
        }
        println!("# {} ({})", l.plan.name, l.file.display());
        term::print_block(&term::table(&rows));
    }
    Outcome::Ok
}

/// One experiment of `hft build --json` / `hft status --json`.
fn report_json(r: &ExperimentReport) -> serde_json::Value {
    let stages: Vec<serde_json::Value> = r
        .stages
        .iter()
        .map(|s| {
            let (state, detail) = match &s.state {
                StageState::Cached if s.pulled => ("pulled", None),
                StageState::Cached => ("cached", None),
                StageState::Ran { secs } => ("ran", Some(serde_json::json!(secs))),
                StageState::Stale { reason } => ("stale", Some(serde_json::json!(reason))),
                StageState::Skipped => ("skipped", None),
                StageState::Failed(e) => ("failed", Some(serde_json::json!(e.to_string()))),
            };
            let mut v = serde_json::json!({
                "id": s.id,
                "state": state,
                "key": s.key.as_ref().map(|k| k.0.clone()),
                "outputs": s.record.as_ref().map(|rec| rec.outputs.iter().map(|(n, o)| (n.clone(), o.digest.to_hex())).collect::<BTreeMap<_, _>>()),
            });
            let name = match state {
                "ran" => "secs",
                "stale" => "reason",
                _ => "error",
            };
            if let Some(d) = detail {
                v[name] = d;
            }
            if let Some(job) = s.key.as_ref().and_then(graph::slurm::job_of) {
                v["slurm_job"] = serde_json::json!(job);
            }
            v
        })
        .collect();
    serde_json::json!({
        "name": r.name,
        "file": r.file.display().to_string(),
        "stages": stages,
    })
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
            StageState::Cached if s.pulled => format!("pulled   {key}"),
            StageState::Cached => format!("cached   {key}"),
            StageState::Ran { secs } => {
                let job = s.key.as_ref().and_then(graph::slurm::job_of);
                let job = job
                    .map(|id| format!("  (slurm job {id})"))
                    .unwrap_or_default();
                format!("ran      {key}  {}{job}", term::duration(*secs))
            }
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

/// The store of `--cache-dir` / `$HFT_CACHE_DIR` / `cache/`; failing to open it is an
/// environment problem (exit 1), not bad input.
fn open_store(common: &Common) -> Result<Store, Outcome> {
    open_store_at(common.cache_dir.as_deref())
}

fn open_store_at(flag: Option<&Path>) -> Result<Store, Outcome> {
    Store::open(&cache_dir(flag)).map_err(|e| {
        eprintln!("error: cannot open the cache: {e}");
        store_error_outcome(&e)
    })
}

/// A cache path that cannot be a store (a file where a folder belongs) is the user's input
/// and exits 2; other failures to open it (permissions, I/O) exit 1.
pub(crate) fn store_error_outcome(e: &std::io::Error) -> Outcome {
    if e.kind() == std::io::ErrorKind::InvalidInput {
        Outcome::BadInput
    } else {
        Outcome::StageFailed
    }
}

/// Plans the selected experiments against the store without executing anything (what
/// `hft status` does) and hands the plans and their dry-run reports to `f`.
fn survey<R>(
    common: &Common,
    f: impl FnOnce(&Store, &[ExperimentJob], &[ExperimentReport]) -> R,
) -> Result<R, Outcome> {
    let store = open_store(common)?;
    survey_in(&store, common, f)
}

/// [`survey`] on a store the caller opened (gc plans on its exclusive one).
fn survey_in<R>(
    store: &Store,
    common: &Common,
    f: impl FnOnce(&Store, &[ExperimentJob], &[ExperimentReport]) -> R,
) -> Result<R, Outcome> {
    let db = Database::default();
    let planned = load_experiments(&db, &common.select)?;
    let jobs = make_jobs(&db, store, &planned, &mut Vec::new(), false)?;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let reports = exec::run_all(store, &jobs, threads, true, &|_| {});
    Ok(f(store, &jobs, &reports))
}

/// `hft man DIR`: roff pages generated from the clap definitions.
fn man_pages(dir: &Path) -> Outcome {
    use clap::CommandFactory;
    let written =
        std::fs::create_dir_all(dir).and_then(|_| clap_mangen::generate_to(Cli::command(), dir));
    match written {
        Ok(()) => {
            println!("wrote man pages to {}", dir.display());
            Outcome::Ok
        }
        Err(e) => {
            eprintln!("error: cannot write man pages to {}: {e}", dir.display());
            Outcome::StageFailed
        }
    }
}

pub(crate) fn cache_dir(flag: Option<&Path>) -> PathBuf {
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
