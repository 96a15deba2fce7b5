//! The `hft` command line.
//!
//! Exit codes: 0 success; 1 a stage failed while executing (I/O, training diverged);
//! 2 bad input: usage, config or data errors, each message naming file, line and key.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;

use clap::{Args, Parser, Subcommand};
use clap_complete::engine::ArgValueCompleter;

use crate::graph::exec::{ExperimentJob, ExperimentReport};
use crate::graph::{self, Database, memo};
use crate::store::Store;
use crate::term;
use crate::usecase::{Failure, Message, Selection};

mod audit;
mod author;
mod build;
pub mod compare;
pub(crate) mod complete;
mod exec_stage;
mod housekeeping;
pub mod inspect;
mod predict;
mod search;

pub use crate::usecase::select::find_experiments;
pub use crate::usecase::{Loaded, Outcome};

/// Printed at the end of `hft --help`.
const EXIT_CODES: &str = "Exit codes:\n  0    success\n  1    a stage failed while executing (I/O, a diverged training), an audit \
did not reproduce, or `cache verify` found a problem\n  2    bad input: usage, config or data errors (each message names file, line and key)\n  130  interrupted (Ctrl-C); a checkpointing training resumes at the next build\n\n\
Environment:\n  HFT_CACHE_DIR  the store (default `cache/`)\n  HFT_NO_MEMO    always plan no-op builds in full (for benchmarks and debugging)\n  HFT_NO_INDEX   parse and plan every experiment file, without the per-file index\n  HFT_EXECUTOR   where `hft build` executes stages: local (default) or slurm\n  NO_COLOR       no colours in output";

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
        /// List the stages that are up to date too (by default only what would run).
        #[arg(short, long)]
        verbose: bool,
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
        #[arg(add = ArgValueCompleter::new(complete::experiment_names))]
        experiment: String,
        #[command(flatten)]
        common: Common,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Score bars with an experiment's trained model, without retraining: its features,
    /// normalisation and windows; the experiment's own data by default (the latest bars
    /// included). CSV (symbol, ISO timestamp, returns, prices, action probabilities).
    Predict(predict::PredictArgs),
    /// Write an experiment's trained model to DIR: model.safetensors, model.json (the model
    /// card), config.yaml, metrics.json, predictions.csv.
    Export(predict::ExportArgs),
    /// Compare the last builds of experiments: the config values that differ between them
    /// and their metrics, one row each (reads the catalog only: fast on thousands).
    Compare {
        /// Experiment files or folders (default `experiments/`).
        paths: Vec<PathBuf>,
        /// Sort by a metric or config value (`backtest.strategy.sharpe`, `optimizer.lr`).
        #[arg(long, value_name = "KEY", add = ArgValueCompleter::new(complete::metric_names))]
        sort: Option<String>,
        /// Sort descending (with --sort) or reverse the name order.
        #[arg(long, short = 'r')]
        reverse: bool,
        /// Keep experiments matching KEY OP VALUE, OP one of = != > >= < <= ~ (contains):
        /// `--filter 'backtest.strategy.sharpe>1' --filter model.type=lstm` (all must match).
        #[arg(long = "filter", value_name = "EXPR", add = ArgValueCompleter::new(complete::metric_names))]
        filters: Vec<String>,
        /// Metric columns (repeatable; `all` for every metric). Default: headline metrics.
        /// `dsr` (alias `deflated_sharpe`) is the Sharpe ratio deflated by the trials the
        /// catalog has seen on the same dataset, `dsr.trials` their count.
        #[arg(long = "metric", value_name = "KEY", add = ArgValueCompleter::new(complete::metric_names))]
        metrics: Vec<String>,
        /// Print the probability of backtest overfitting (CSCV) of the compared experiments
        /// as a sweep, from their walk-forward folds, instead of the table.
        #[arg(long, conflicts_with_all = ["csv", "md"])]
        pbo: bool,
        #[arg(long, conflicts_with_all = ["csv", "md"])]
        json: bool,
        #[arg(long, conflicts_with = "md")]
        csv: bool,
        /// Markdown table.
        #[arg(long)]
        md: bool,
        /// The whole table on one line per experiment however wide (by default a table
        /// wider than the terminal, or 160 columns when piped, is printed transposed).
        #[arg(long, conflicts_with_all = ["json", "csv", "md", "pbo"])]
        wide: bool,
        /// The store (default `$HFT_CACHE_DIR`, else `cache/`).
        #[arg(long)]
        cache_dir: Option<PathBuf>,
    },
    /// Why each stage of an experiment would re-run or hit: the config keys, data files and
    /// versions that changed since its last build.
    Explain {
        /// Experiment name, or an experiment file.
        #[arg(add = ArgValueCompleter::new(complete::experiment_names))]
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
    /// Hyperparameter searches (`search:` in an experiment file).
    Search {
        #[command(subcommand)]
        command: SearchCommand,
    },
    /// Print the script that registers shell completion (of commands, options, experiment
    /// names, config keys and metrics): `source <(hft completions bash)` in ~/.bashrc.
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
pub enum SearchCommand {
    /// Each search's trials so far: objective, budget, promoted or pruned, the best, and
    /// what the next build would run.
    Status {
        #[command(flatten)]
        common: Common,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print an experiment's fully resolved config and where every value came from.
    Show {
        /// Experiment name, or an experiment file.
        #[arg(add = ArgValueCompleter::new(complete::experiment_names))]
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
    #[arg(long = "set", value_name = "PATH=VALUE", add = ArgValueCompleter::new(complete::config_keys))]
    pub overrides: Vec<String>,
    /// Keep only experiments whose resolved value matches: `--filter optimizer.type=muon`
    /// (repeatable; all must match).
    #[arg(long = "filter", value_name = "PATH=VALUE", add = ArgValueCompleter::new(complete::config_keys))]
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
/// Training allocates and frees the same large tensors every step. glibc serves blocks over
/// its mmap threshold (128 KiB to 32 MiB, adapting) with fresh mappings, so each step paid
/// page faults and kernel page zeroing again: about 13% of transformer-ref's training time
/// in a profile. Served from the heap and not trimmed back, freed blocks are reused: 1.1x faster
/// training, the same peak RSS (BENCHMARKS.md). One arena (`one_arena`, every command but
/// `status`): the worker threads' own arenas (64 MiB heaps, unmapped when empty) still faulted
/// in a fresh heap for large tensors, 10% of transformer-ref's time; with one arena it
/// trained 1.12x faster (BENCHMARKS.md). `status` trains nothing; its threads parse records
/// and allocate small blocks, and with one arena they spent a quarter of its time waiting on
/// the allocator's lock.
fn tune_allocator(one_arena: bool) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it is called before any thread starts
    // (argument parsing starts none).
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        if one_arena {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = one_arena;
}

pub fn main() -> ExitCode {
    // `COMPLETE=bash hft ...` (the registered completion script) answers and exits here.
    clap_complete::CompleteEnv::with_factory(<Cli as clap::CommandFactory>::command).complete();
    let cli = Cli::parse();
    // Before the Ctrl-C handler's thread, the first this process starts.
    tune_allocator(!matches!(cli.command, Command::Status { .. }));
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
        } => match executor.choose(&common) {
            Ok(executor) => build::build(
                &common,
                &build::BuildArgs {
                    dry_run,
                    jobs,
                    locked,
                    json,
                    until,
                    remote,
                    remote_read_only,
                    executor,
                },
            ),
            Err(outcome) => outcome,
        }
        .into(),
        Command::ExecStage(args) => exec_stage::run(&args).into(),
        Command::Status {
            common,
            json,
            verbose,
        } => build::status(&common, json, verbose).into(),
        Command::Audit {
            common,
            stage,
            sample,
            locked,
            tolerance,
            json,
            junit,
        } => audit::audit(
            &common,
            &audit::AuditArgs {
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
        } => author::new_experiment(&name, &template, &dir).into(),
        Command::Config {
            command: ConfigCommand::Show { experiment, select },
        } => author::config_show(&experiment, &select).into(),
        Command::Ls { common, json } => inspect::ls(&common, json).into(),
        Command::Search {
            command: SearchCommand::Status { common, json },
        } => search::status(&common, json).into(),
        Command::Fetch { common } => build::fetch(&common).into(),
        Command::Show {
            experiment,
            common,
            json,
        } => inspect::show(&experiment, &common, json).into(),
        Command::Predict(args) => predict::run_predict(&args).into(),
        Command::Export(args) => predict::run_export(&args).into(),
        Command::Compare {
            paths,
            sort,
            reverse,
            filters,
            metrics,
            pbo,
            json,
            csv,
            md,
            wide,
            cache_dir,
        } => compare::compare(&compare::CompareArgs {
            paths,
            cache_dir,
            sort,
            reverse,
            filters,
            metrics,
            format: match (json, csv, md) {
                (true, _, _) => compare::Format::Json,
                (_, true, _) => compare::Format::Csv,
                (_, _, true) => compare::Format::Markdown,
                _ => compare::Format::Table,
            },
            pbo,
            wide,
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
        Command::Completions { shell } => match complete::registration(shell) {
            Ok(()) => Outcome::Ok.into(),
            Err(e) => fail(&format!("cannot write the completion script: {e}")).into(),
        },
        Command::Man { dir } => author::man_pages(&dir).into(),
    };
    if crate::train::INTERRUPTED.load(Ordering::SeqCst) {
        return ExitCode::from(130);
    }
    code
}

/// Prints a use case's failure (each message as `error: ...`) and returns its exit category.
pub(crate) fn report_failure(failure: Failure) -> Outcome {
    for e in &failure.errors {
        eprintln!("error: {e}");
    }
    failure.outcome
}

/// Prints a use case's messages in the order they happened.
pub(crate) fn print_messages(messages: &[Message]) {
    for m in messages {
        match m {
            Message::Error(e) => eprintln!("error: {e}"),
            Message::Warning(w) => term::warn(w),
        }
    }
}

pub(crate) fn fail(message: &str) -> Outcome {
    eprintln!("error: {message}");
    Outcome::BadInput
}

impl Select {
    /// The selection as the use cases take it.
    pub fn selection(&self) -> Selection {
        Selection {
            paths: self.paths.clone(),
            overrides: self.overrides.clone(),
            filters: self.filters.clone(),
        }
    }
}

/// [`crate::usecase::select::load_experiments`], its errors printed.
fn load_experiments(db: &Database, select: &Select) -> Result<Vec<Loaded>, Outcome> {
    crate::usecase::select::load_experiments(db, &select.selection()).map_err(report_failure)
}

/// [`crate::usecase::inputs::make_jobs`], its errors printed.
fn make_jobs<'a>(
    db: &Database,
    store: &Store,
    planned: &'a [Loaded],
    watched: &mut memo::Watched,
    allow_fetch: bool,
) -> Result<Vec<ExperimentJob<'a>>, Outcome> {
    crate::usecase::inputs::make_jobs(db, store, planned, watched, allow_fetch)
        .map_err(report_failure)
}

/// The store of `--cache-dir` / `$HFT_CACHE_DIR` / `cache/`; failing to open it is an
/// environment problem (exit 1), not bad input.
fn open_store_at(flag: Option<&Path>) -> Result<Store, Outcome> {
    crate::usecase::open_store(&cache_dir(flag)).map_err(report_failure)
}

/// [`open_store_at`] for commands that only read a store: a missing folder is an error.
fn open_existing_store_at(flag: Option<&Path>) -> Result<Store, Outcome> {
    let dir = cache_dir(flag);
    Store::open_existing(&dir).map_err(|e| {
        eprintln!("error: cannot open the cache: {e}");
        store_error_outcome(&e)
    })
}

pub(crate) use crate::usecase::store_error_outcome;

/// Plans the selected experiments against the store without executing anything (what
/// `hft status` does) and hands the plans and their dry-run reports to `f`.
fn survey<R>(
    common: &Common,
    f: impl FnOnce(&Store, &[ExperimentJob], &[ExperimentReport]) -> R,
) -> Result<R, Outcome> {
    let store = open_store_at(common.cache_dir.as_deref())?;
    survey_in(&store, common, f)
}

/// [`survey`] on a store the caller opened (gc plans on its exclusive one).
fn survey_in<R>(
    store: &Store,
    common: &Common,
    f: impl FnOnce(&Store, &[ExperimentJob], &[ExperimentReport]) -> R,
) -> Result<R, Outcome> {
    crate::usecase::survey::survey(store, &common.select.selection(), f).map_err(report_failure)
}

pub(crate) fn cache_dir(flag: Option<&Path>) -> PathBuf {
    crate::usecase::cache_dir(flag)
}
