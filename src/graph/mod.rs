//! The build graph: experiments -> stages -> keys.
//!
//! A salsa database holds what the graph is computed from: experiment files (path + text)
//! and data files (path + content digest, from the stat cache). Tracked functions parse and
//! validate an experiment and turn it into a [`Plan`]: its stages, what config subtree each
//! one reads (canonical JSON) and which stages feed it. Keys need the output digests of
//! upstream stages, which exist only once those are built or found in the cache, so the
//! executor (`exec`) completes each key just before it looks the stage up.
//!
//! The stage kinds: `stages` (one file each). What goes into a key: `key`. The store
//! protocol of one stage: `exec::run_stage`. Where stages execute (this process, Slurm):
//! `executor`, `slurm`. Why a stage must run: `explain`.

pub mod exec;
pub mod executor;
pub mod explain;
pub mod index;
pub mod key;
pub mod memo;
pub mod slurm;
pub mod stages;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::config::{self, ConfigError, Experiment, SourceKind};
use crate::store::{Digest, Fingerprint};

pub use stages::StageKind;

/// An experiment file to build: its contents and the `--set` overrides applied to it.
#[salsa::input]
pub struct ExperimentSource {
    #[returns(ref)]
    pub path: PathBuf,
    #[returns(ref)]
    pub text: String,
    #[returns(ref)]
    pub overrides: Vec<String>,
    /// One trial of the file's `search:` (`None`: the file's own experiments).
    #[returns(ref)]
    pub trial: Option<config::resolve::Trial>,
}

/// A template file, read on first use (its text, or why it could not be read).
#[salsa::input]
pub struct TemplateFile {
    #[returns(ref)]
    pub path: PathBuf,
    #[returns(ref)]
    pub text: Result<String, String>,
}

/// A data file and the digest of its bytes (from the stat cache, so unchanged files are
/// not re-hashed).
#[salsa::input]
pub struct DataFile {
    #[returns(ref)]
    pub path: PathBuf,
    pub digest: Digest,
}

/// A local data folder: the names of the data files in it and its split folders
/// (`data::layout::list_folder`), read on first use.
#[salsa::input]
pub struct DataFolder {
    #[returns(ref)]
    pub path: PathBuf,
    #[returns(ref)]
    pub listing: Vec<String>,
    pub exists: bool,
}

/// The database interface tracked functions see: templates and data folders become inputs
/// on first read (salsa's lazy-input pattern), so an edit invalidates exactly their users.
#[salsa::db]
pub trait Db: salsa::Database {
    fn template(&self, path: &Path) -> TemplateFile;
    fn data_folder(&self, path: &Path) -> DataFolder;
}

#[salsa::db]
#[derive(Clone, Default)]
pub struct Database {
    storage: salsa::Storage<Self>,
    /// Each template read, with its stat fingerprint taken before the read (`None`: it could
    /// not be read), for the no-op memo.
    templates: Arc<Mutex<TemplateTable>>,
    /// Each data folder listed, with the fingerprints of it and its split folders taken
    /// before the listing (a new file changes a folder's mtime), for the no-op memo.
    data_folders: Arc<Mutex<FolderTable>>,
    /// Every template and data folder asked for since the last [`Database::take_reads`], so
    /// the per-file index knows what one file's parse and plan read.
    reads: Arc<Mutex<Vec<index::Read>>>,
}

type TemplateTable = BTreeMap<PathBuf, (TemplateFile, Option<Fingerprint>)>;
type FolderTable = BTreeMap<PathBuf, (DataFolder, memo::Watched)>;

impl Database {
    /// The templates read so far and their fingerprints from before they were read.
    pub fn templates_read(&self) -> memo::Watched {
        let templates = self.templates.lock().unwrap_or_else(|p| p.into_inner());
        templates
            .iter()
            .map(|(path, (_, fp))| (path.clone(), fp.clone()))
            .collect()
    }

    /// The templates and data folders asked for since the last call, in order.
    pub fn take_reads(&self) -> Vec<index::Read> {
        let mut reads = self.reads.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut *reads)
    }

    fn note_read(&self, read: index::Read) {
        let mut reads = self.reads.lock().unwrap_or_else(|p| p.into_inner());
        reads.push(read);
    }

    /// The data folders listed so far, with their fingerprints from before the listing.
    pub fn data_folders_read(&self) -> memo::Watched {
        let folders = self.data_folders.lock().unwrap_or_else(|p| p.into_inner());
        folders
            .values()
            .flat_map(|(_, watched)| watched.iter().cloned())
            .collect()
    }
}

#[salsa::db]
impl salsa::Database for Database {}

#[salsa::db]
impl Db for Database {
    fn template(&self, path: &Path) -> TemplateFile {
        self.note_read(index::Read::Template(path.to_path_buf()));
        let mut templates = self.templates.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((t, _)) = templates.get(path) {
            return *t;
        }
        let fingerprint = std::fs::metadata(path).ok().map(|m| Fingerprint::of(&m));
        let text = config::read_text(path).map_err(|e| e.message);
        let t = TemplateFile::new(self, path.to_path_buf(), text);
        templates.insert(path.to_path_buf(), (t, fingerprint));
        t
    }

    fn data_folder(&self, path: &Path) -> DataFolder {
        self.note_read(index::Read::Folder(path.to_path_buf()));
        let mut folders = self.data_folders.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((f, _)) = folders.get(path) {
            return *f;
        }
        let watched: memo::Watched = std::iter::once(path.to_path_buf())
            .chain(
                crate::data::layout::SPLIT_FOLDERS
                    .iter()
                    .map(|s| path.join(s)),
            )
            .map(|p| {
                let fp = memo::fingerprint(&p);
                (p, fp)
            })
            .collect();
        let listing = crate::data::layout::list_folder(path);
        let f = DataFolder::new(self, path.to_path_buf(), listing, path.is_dir());
        folders.insert(path.to_path_buf(), (f, watched));
        f
    }
}

/// A parsed experiment with where each of its values was set (for messages, `status` and
/// `config show`).
pub type Parsed = config::Resolved;

/// Every experiment the file defines (one per matrix point), resolved and validated.
#[salsa::tracked(returns(ref))]
pub fn parse_experiments(
    db: &dyn Db,
    source: ExperimentSource,
) -> Result<Vec<Parsed>, ConfigError> {
    let path = source.path(db);
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut read_template = |p: &Path| db.template(p).text(db).clone();
    config::resolve_file(
        path,
        source.text(db),
        &stem,
        source.overrides(db),
        source.trial(db).as_ref(),
        &mut read_template,
        &crate::model::REGISTRIES,
    )
}

/// One stage of one experiment, before its key is known.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StageSpec {
    /// Unique within the experiment: `ingest:AAPL`, `features`, ...
    pub id: String,
    pub kind: StageKind,
    /// The stage's version for this experiment (`Stage::version`): part of its key.
    pub version: u32,
    /// Canonical JSON of the config this stage reads, rooted at the experiment's top-level
    /// keys (`{"data":{"sequence_length":30}}`), so a diff of two of them names real keys.
    pub config: String,
    /// Indices (into `Plan::stages`) of the stages whose outputs this one reads.
    pub deps: Vec<usize>,
    /// The data files a local ingest stage reads, in order (`train/S.csv`, `test/S.csv`).
    pub data_files: Vec<PathBuf>,
}

/// An experiment's stages in dependency order (every dep precedes its user).
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub name: String,
    pub stages: Vec<StageSpec>,
    /// Cut short by `hft build --until`: the stages after the cut are not forgotten (build
    /// record, lock) just because this build does not reach them.
    pub truncated: bool,
    /// Why some symbol has no data files (`data.source: local`): reported by whatever
    /// needs the data (build, status), not by `config show`.
    pub data_errors: Vec<ConfigError>,
}

impl Plan {
    /// The plan up to and including the stages of kind `until` (`features`, `dataset`, ...).
    pub fn until(&self, until: &str) -> Plan {
        // The walk-forward stages all rank as `walk_forward`, the last.
        let rank = |name: &str| {
            let name = match name {
                "fold_plan" | "fold_dataset" | "fold_train" => "walk_forward",
                other => other,
            };
            STAGE_ORDER.iter().position(|k| *k == name)
        };
        let limit = rank(until).unwrap_or(STAGE_ORDER.len());
        let stages: Vec<StageSpec> = self
            .stages
            .iter()
            .take_while(|s| rank(s.kind.name()).is_some_and(|r| r <= limit))
            .cloned()
            .collect();
        Plan {
            name: self.name.clone(),
            truncated: stages.len() < self.stages.len(),
            stages,
            data_errors: self.data_errors.clone(),
        }
    }
}

/// Stage kinds in pipeline order (what `--until` accepts); `walk_forward` stands for every
/// stage of walk-forward evaluation (`fold_plan`, `fold_dataset`, `fold_train`).
pub const STAGE_ORDER: [&str; 7] = [
    "ingest",
    "features",
    "dataset",
    "init",
    "train",
    "evaluate",
    "walk_forward",
];

#[salsa::tracked(returns(ref))]
pub fn plan_experiments(db: &dyn Db, source: ExperimentSource) -> Result<Vec<Plan>, ConfigError> {
    let parsed = parse_experiments(db, source)
        .as_ref()
        .map_err(Clone::clone)?;
    Ok(parsed
        .iter()
        .map(|p| {
            let (files, errors) = data_files(db, p);
            let mut plan = plan(&p.experiment, &files);
            plan.data_errors = errors;
            plan
        })
        .collect())
}

/// Each symbol's data files (`data.source: local`, through the data folder's listing) or,
/// for other sources, each listed symbol with no files.
/// A symbol whose files cannot be resolved keeps its stage, with no files, and an error.
fn data_files(
    db: &dyn Db,
    p: &Parsed,
) -> (Vec<crate::data::layout::SymbolFiles>, Vec<ConfigError>) {
    use crate::data::layout::{self, SymbolFiles};
    let d = &p.experiment.data;
    if d.source != SourceKind::Local {
        let files = without_files(d.symbols.listed());
        return (files, vec![]);
    }
    let folder = db.data_folder(Path::new(&d.path));
    let listing = folder.listing(db);
    let at = |key: &str, message: String| ConfigError::at(&p.locations.find(key), key, message);
    if !folder.exists(db) {
        let message = if Path::new(&d.path).is_file() {
            format!(
                "`{}` is a file, not a folder: data.path names the folder that holds the \
                 SYMBOL.csv files (this one would be data.path: {} with symbols: [{}])",
                d.path,
                Path::new(&d.path)
                    .parent()
                    .map(|p| p.display().to_string())
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| ".".to_string()),
                Path::new(&d.path)
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default()
            )
        } else {
            format!(
                "the folder `{}` does not exist (relative to the folder hft runs in); put the \
                 SYMBOL.csv files there or point data.path at them",
                d.path
            )
        };
        let files = without_files(d.symbols.listed());
        return (files, vec![at("data.path", message)]);
    }
    let symbols = match &d.symbols {
        config::Symbols::All => {
            let all = layout::all_symbols(listing);
            if all.is_empty() {
                let message = format!(
                    "`all` found no data files (.csv, .parquet) in data.path `{}`",
                    d.path
                );
                return (vec![], vec![at("data.symbols", message)]);
            }
            all
        }
        config::Symbols::List(list) => list.clone(),
    };
    let key_of = |i: usize| match &d.symbols {
        config::Symbols::All => "data.symbols".to_string(),
        config::Symbols::List(_) => format!("data.symbols[{i}]"),
    };
    let mut errors = Vec::new();
    let files = symbols
        .iter()
        .enumerate()
        .map(|(i, s)| {
            layout::resolve(listing, s).unwrap_or_else(|m| {
                errors.push(at(&key_of(i), format!("{m} in data.path `{}`", d.path)));
                SymbolFiles {
                    symbol: s.clone(),
                    files: vec![],
                }
            })
        })
        .collect();
    (files, errors)
}

/// Each symbol, with no data files (non-local sources, or files that cannot be resolved).
fn without_files(symbols: &[String]) -> Vec<crate::data::layout::SymbolFiles> {
    symbols
        .iter()
        .map(|s| crate::data::layout::SymbolFiles {
            symbol: s.clone(),
            files: vec![],
        })
        .collect()
}

/// The stages of one experiment, given each symbol's data files (relative to `data.path`).
pub fn plan(e: &Experiment, symbols: &[crate::data::layout::SymbolFiles]) -> Plan {
    let mut stages = Vec::new();
    for s in symbols {
        let symbol = &s.symbol;
        let data_files = s
            .files
            .iter()
            .map(|f| Path::new(&e.data.path).join(f))
            .collect();
        let kind = StageKind::Ingest {
            symbol: symbol.clone(),
        };
        stages.push(StageSpec {
            id: format!("ingest:{symbol}"),
            version: kind.version(e),
            config: kind.config(e),
            kind,
            deps: vec![],
            data_files,
        });
    }
    let ingests: Vec<usize> = (0..stages.len()).collect();
    let mut push = |kind: StageKind, deps: Vec<usize>| -> usize {
        stages.push(StageSpec {
            id: kind.name().to_string(),
            version: kind.version(e),
            config: kind.config(e),
            kind,
            deps,
            data_files: vec![],
        });
        stages.len() - 1
    };
    let features = push(StageKind::Features, ingests);
    let dataset = push(StageKind::Dataset, vec![features]);
    let init = push(StageKind::Init, vec![dataset]);
    if e.evaluation.walk_forward.is_some() {
        // Walk-forward folds take the place of the one split's training and evaluation;
        // the fold stages follow once `fold_plan` has counted the folds (`stages::folds`).
        push(StageKind::FoldPlan, vec![features]);
    } else {
        let train = push(StageKind::Train, vec![init, dataset]);
        push(StageKind::Evaluate, vec![train, dataset]);
    }
    Plan {
        name: e.name.clone(),
        stages,
        truncated: false,
        data_errors: vec![],
    }
}

/// A stable id for one experiment of a file (canonical path + name), used to find its last
/// build.
pub fn experiment_id(path: &Path, name: &str) -> String {
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    Digest::of(format!("{}\0{name}", canonical.display()).as_bytes()).short()
}
