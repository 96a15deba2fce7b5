//! Which experiments a use case works on: the experiment files under the selected paths,
//! resolved (templates, matrix, `--set` overrides), validated, planned and filtered.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::Failure;
use super::filter::Condition;
use crate::config::ConfigError;
use crate::graph::index::FileIndex;
use crate::graph::{self, Database, ExperimentSource, Parsed, Plan, memo};

/// Which experiments, and the overrides applied to them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Experiment files or folders searched for *.yaml / *.yml (default `experiments/`).
    pub paths: Vec<PathBuf>,
    /// `PATH=VALUE` overrides applied to every selected experiment (`--set`).
    pub overrides: Vec<String>,
    /// Conditions every kept experiment matches (`--filter`).
    pub filters: Vec<String>,
}

/// One selected experiment: its file, resolved config and stages.
pub struct Loaded {
    pub file: PathBuf,
    /// The file as read (its text and overrides), from which a search's trials resolve.
    pub source: ExperimentSource,
    pub parsed: Parsed,
    pub plan: Plan,
}

/// The paths searched: the given ones, else `experiments/`.
fn searched(paths: &[PathBuf]) -> Vec<PathBuf> {
    if paths.is_empty() {
        vec![PathBuf::from("experiments")]
    } else {
        paths.to_vec()
    }
}

fn is_yaml(path: &Path) -> bool {
    path.extension().is_some_and(|x| x == "yaml" || x == "yml")
}

/// Names no one means as an experiment: macOS resource forks (`._exp.yaml`), editor lock
/// files (`.#exp.yaml`, often a dangling link) and office lock files (`~$exp.yaml`).
fn is_junk(name: &std::ffi::OsStr) -> bool {
    let name = name.to_string_lossy();
    name.starts_with("._") || name.starts_with(".#") || name.starts_with("~$")
}

/// Everything under `root` (itself included), following links, in file-name order, without
/// junk files ([`is_junk`]).
fn walk(root: &Path) -> walkdir::FilterEntry<walkdir::IntoIter, fn(&walkdir::DirEntry) -> bool> {
    fn keep(entry: &walkdir::DirEntry) -> bool {
        entry.depth() == 0 || !is_junk(entry.file_name())
    }
    walkdir::WalkDir::new(root)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(keep as fn(&walkdir::DirEntry) -> bool)
}

/// Every `*.yaml` / `*.yml` under the given paths (files are taken as they are), sorted.
pub fn find_experiments(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let paths = searched(paths);
    let mut files = Vec::new();
    for p in &paths {
        if p.is_file() {
            files.push(p.clone());
            continue;
        }
        if !p.is_dir() {
            return Err(format!("{}: no such file or directory", p.display()));
        }
        for entry in walk(p) {
            let entry = match entry {
                Ok(entry) => entry,
                // A lock file that is a dangling link cannot be followed: it is no experiment.
                Err(e) if e.path().and_then(Path::file_name).is_some_and(is_junk) => continue,
                Err(e) => return Err(format!("{}: {e}", p.display())),
            };
            if entry.file_type().is_file() && is_yaml(entry.path()) {
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

/// The experiment files and every folder searched for them, fingerprinted for the no-op
/// memo: a new file in a folder changes the folder's mtime. Unreadable entries are skipped
/// (the build that follows reports them).
pub fn watch_selection(paths: &[PathBuf]) -> memo::Watched {
    let (mut dirs, files) = watch_selection_parts(paths);
    dirs.extend(files);
    dirs
}

/// [`watch_selection`] in two: the folders searched, and the experiment files found in them
/// (in the order [`find_experiments`] finds them).
pub fn watch_selection_parts(paths: &[PathBuf]) -> (memo::Watched, memo::Watched) {
    let (mut dirs, mut files) = (Vec::new(), Vec::new());
    for p in searched(paths) {
        for entry in walk(&p).flatten() {
            let dir = entry.file_type().is_dir();
            if dir || is_yaml(entry.path()) {
                let path = entry.into_path();
                let fp = memo::fingerprint(&path);
                if dir { &mut dirs } else { &mut files }.push((path, fp));
            }
        }
    }
    (dirs, files)
}

/// Finds, resolves (templates, matrix, overrides), validates, filters and plans every
/// experiment under the selected paths. Every config error is returned, so a typo in the
/// tenth file surfaces before the first nine train.
pub fn load_experiments(db: &Database, select: &Selection) -> Result<Vec<Loaded>, Failure> {
    load_experiments_indexed(db, select, None)
}

/// [`load_experiments`], taking each file whose text and reads are unchanged from `index`
/// and adding the files it parsed to it.
pub fn load_experiments_indexed(
    db: &Database,
    select: &Selection,
    mut index: Option<&mut FileIndex>,
) -> Result<Vec<Loaded>, Failure> {
    let files = find_experiments(&select.paths).map_err(Failure::bad_input)?;
    if let Some(ix) = index.as_deref_mut() {
        ix.prefetch(&files);
    }
    let filters = select
        .filters
        .iter()
        .map(|f| Condition::parse_for_selection(f))
        .collect::<Result<Vec<_>, _>>()
        .map_err(Failure::bad_input)?;
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
        if let Some(hit) = index.as_deref().and_then(|ix| ix.lookup(db, file, &text)) {
            let source =
                ExperimentSource::new(db, file.clone(), text, select.overrides.clone(), None);
            loaded.extend(hit.into_iter().map(|(parsed, plan)| Loaded {
                file: file.clone(),
                source,
                parsed,
                plan,
            }));
            continue;
        }
        // What this file's parse reads, from here on.
        db.take_reads();
        let source = ExperimentSource::new(db, file.clone(), text, select.overrides.clone(), None);
        if let (Some(ix), Ok(parsed), Ok(plans)) = (
            index.as_deref_mut(),
            graph::parse_experiments(db, source),
            graph::plan_experiments(db, source),
        ) {
            let reads = db.take_reads();
            let pairs: Vec<_> = parsed.iter().zip(plans).collect();
            ix.insert(db, file, source.text(db), &reads, &pairs);
        }
        match (
            graph::parse_experiments(db, source),
            graph::plan_experiments(db, source),
        ) {
            (Ok(parsed), Ok(plans)) => {
                for (parsed, plan) in parsed.iter().zip(plans) {
                    loaded.push(Loaded {
                        file: file.clone(),
                        source,
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
        return Err(Failure::config(&errors));
    }
    // Without filters there is nothing to match (turning 10,000 configs into JSON for it
    // took a twentieth of a large status).
    if !filters.is_empty() {
        loaded.retain(|l| {
            let config = serde_json::to_value(&l.parsed.experiment).unwrap_or_default();
            filters.iter().all(|f| f.matches_config(&config))
        });
    }
    if loaded.is_empty() {
        return Err(Failure::bad_input("no experiment matches the filters"));
    }
    Ok(loaded)
}
