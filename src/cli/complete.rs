//! Dynamic shell completion (clap_complete's `COMPLETE=$SHELL hft`): experiment names for
//! `show`, `explain`, `predict` and `export`, config key paths for `--set` and `--filter`,
//! and metric names for `compare --metric` / `--sort`, read from the project at the moment
//! of completion. Completion never fails: what cannot be read offers nothing.

use std::collections::BTreeSet;
use std::ffi::OsStr;

use clap_complete::engine::CompletionCandidate;

use crate::usecase::Selection;

/// What completion matches against: the word typed so far.
fn typed(current: &OsStr) -> String {
    current.to_string_lossy().into_owned()
}

fn candidates(all: impl IntoIterator<Item = String>, prefix: &str) -> Vec<CompletionCandidate> {
    all.into_iter()
        .filter(|c| c.starts_with(prefix))
        .map(CompletionCandidate::new)
        .collect()
}

/// The store at the default cache folder, if there is one (completion creates nothing).
fn store() -> Option<crate::store::Store> {
    let dir = super::cache_dir(None);
    if !dir.join(crate::store::STORE_MARKER).exists() {
        return None;
    }
    crate::store::Store::open(&dir).ok()
}

/// The experiments under `experiments/`, resolved (templates, matrix; a search's trials as
/// far as the store knows them).
fn experiments() -> Vec<crate::config::Experiment> {
    let db = crate::graph::Database::default();
    let Ok(loaded) = crate::usecase::select::load_experiments(&db, &Selection::default()) else {
        return Vec::new();
    };
    let loaded = match store() {
        Some(store) => match crate::usecase::search::replay(&db, &store, loaded) {
            Ok((loaded, _)) => loaded,
            Err(_) => return Vec::new(),
        },
        None => loaded,
    };
    loaded.into_iter().map(|l| l.parsed.experiment).collect()
}

/// Experiment names, and experiment files (which the same arguments accept).
pub fn experiment_names(current: &OsStr) -> Vec<CompletionCandidate> {
    let prefix = typed(current);
    let mut names: BTreeSet<String> = experiments().into_iter().map(|e| e.name).collect();
    if let Ok(files) = crate::usecase::select::find_experiments(&[]) {
        names.extend(files.iter().map(|f| f.display().to_string()));
    }
    candidates(names, &prefix)
}

/// `PATH=` for every config leaf of the project's experiments (`optimizer.lr=`).
pub fn config_keys(current: &OsStr) -> Vec<CompletionCandidate> {
    let prefix = typed(current);
    let mut keys = BTreeSet::new();
    for e in experiments() {
        let json = serde_json::to_value(&e).unwrap_or_default();
        for (k, _) in crate::config::json_leaves(&json, false) {
            keys.insert(format!("{k}="));
        }
    }
    candidates(keys, &prefix)
}

/// Metric names of the catalog's rows, and the aliases `compare` knows.
pub fn metric_names(current: &OsStr) -> Vec<CompletionCandidate> {
    let prefix = typed(current);
    let mut names: BTreeSet<String> = ["skill", "dsr", "deflated_sharpe", "all"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if let Some(store) = store() {
        let catalog = crate::catalog::Catalog::load_latest(&store);
        for row in catalog.latest().values() {
            names.extend(row.metrics.keys().cloned());
            names.extend(row.config.keys().cloned());
        }
    }
    candidates(names, &prefix)
}

/// The script that registers dynamic completion for `shell` (what `COMPLETE=SHELL hft`
/// prints).
pub fn registration(shell: clap_complete::Shell) -> std::io::Result<()> {
    use clap_complete::env::{Bash, Elvish, EnvCompleter, Fish, Powershell, Zsh};
    let completer: &dyn EnvCompleter = match shell {
        clap_complete::Shell::Bash => &Bash,
        clap_complete::Shell::Elvish => &Elvish,
        clap_complete::Shell::Fish => &Fish,
        clap_complete::Shell::PowerShell => &Powershell,
        clap_complete::Shell::Zsh => &Zsh,
        _ => &Bash,
    };
    completer.write_registration("COMPLETE", "hft", "hft", "hft", &mut std::io::stdout())
}
