//! The use cases of hft as a library: `build` (and `status`, its dry run), the survey that
//! `ls`, `show`, `explain`, `report` and `gc` share, `audit`, `fetch`, and `predict` and
//! `export` (using a trained model, found through `trained`).
//!
//! Each takes a request (which experiments, which store, which options) and returns values:
//! per-experiment reports, an [`Outcome`] (the exit category) and the messages to show. The
//! command line (`crate::cli`) only turns arguments into requests and renders the answers,
//! so a build can be tested without the binary. Warnings that arise while work is under way
//! go through `crate::term`, as they do from the graph and the store.

pub mod audit;
pub mod build;
pub mod export;
pub mod fetch;
pub mod filter;
pub mod forecasts;
pub mod inputs;
pub mod memos;
mod noop;
pub mod predict;
pub mod search;
pub mod select;
pub mod status_memo;
pub mod survey;
pub mod text;
pub mod trained;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::config::ConfigError;
use crate::store::{CACHE_DIR_ENV, Store};

pub use select::{Loaded, Selection};

/// Exit category of a use case, kept as an enum until the end so that `status` can reuse
/// `build` and a caller can combine several.
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
    /// The more serious of two outcomes: bad input over a failed stage over success.
    pub fn worst(self, other: Outcome) -> Outcome {
        use Outcome::*;
        match (self, other) {
            (BadInput, _) | (_, BadInput) => BadInput,
            (StageFailed, _) | (_, StageFailed) => StageFailed,
            _ => Ok,
        }
    }
}

/// A use case that stopped before it could report anything else: its exit category and its
/// error messages (each shown as `error: MESSAGE`), in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub outcome: Outcome,
    pub errors: Vec<String>,
}

impl Failure {
    /// One message about the user's input (exit 2).
    pub fn bad_input(message: impl Into<String>) -> Failure {
        Failure {
            outcome: Outcome::BadInput,
            errors: vec![message.into()],
        }
    }

    /// Config errors, each naming file, line and key (exit 2).
    pub fn config(errors: &[ConfigError]) -> Failure {
        Failure {
            outcome: Outcome::BadInput,
            errors: errors.iter().map(ToString::to_string).collect(),
        }
    }
}

/// What a use case reports besides its values, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Shown as `error: ...`.
    Error(String),
    /// Shown as `warning: ...`; the use case went on.
    Warning(String),
}

/// The store of `--cache-dir`, else `$HFT_CACHE_DIR`, else `cache/`.
pub fn cache_dir(flag: Option<&Path>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .or_else(|| std::env::var_os(CACHE_DIR_ENV).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("cache"))
}

/// Opens the store at `dir`; failing to is an environment problem (exit 1), or bad input
/// when the path cannot be a store.
pub fn open_store(dir: &Path) -> Result<Store, Failure> {
    Store::open(dir).map_err(|e| Failure {
        outcome: store_error_outcome(&e),
        errors: vec![format!("cannot open the cache: {e}")],
    })
}

/// A cache path that cannot be a store (a file where a folder belongs) is the user's input
/// and exits 2; other failures to open it (permissions, I/O) exit 1.
pub fn store_error_outcome(e: &std::io::Error) -> Outcome {
    if e.kind() == std::io::ErrorKind::InvalidInput {
        Outcome::BadInput
    } else {
        Outcome::StageFailed
    }
}
