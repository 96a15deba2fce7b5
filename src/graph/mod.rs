//! The build graph: experiments -> stages -> keys.
//!
//! A salsa database holds what the graph is computed from: experiment files (path + text)
//! and data files (path + content digest, from the stat cache). Tracked functions parse and
//! validate an experiment and turn it into a [`Plan`]: its stages, what config subtree each
//! one reads (canonical JSON) and which stages feed it. Keys need the output digests of
//! upstream stages, which exist only once those are built or found in the cache, so the
//! executor (`exec`) completes each key just before it looks the stage up.

pub mod exec;
pub mod memo;
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

/// The database interface tracked functions see: templates become inputs on first read
/// (salsa's lazy-input pattern), so a template edit invalidates exactly its users.
#[salsa::db]
pub trait Db: salsa::Database {
    fn template(&self, path: &Path) -> TemplateFile;
}

#[salsa::db]
#[derive(Clone, Default)]
pub struct Database {
    storage: salsa::Storage<Self>,
    /// Each template read, with its stat fingerprint taken before the read (`None`: it could
    /// not be read), for the no-op memo.
    templates: Arc<Mutex<TemplateTable>>,
}

type TemplateTable = BTreeMap<PathBuf, (TemplateFile, Option<Fingerprint>)>;

impl Database {
    /// The templates read so far and their fingerprints from before they were read.
    pub fn templates_read(&self) -> memo::Watched {
        let templates = self.templates.lock().unwrap_or_else(|p| p.into_inner());
        templates
            .iter()
            .map(|(path, (_, fp))| (path.clone(), fp.clone()))
            .collect()
    }
}

#[salsa::db]
impl salsa::Database for Database {}

#[salsa::db]
impl Db for Database {
    fn template(&self, path: &Path) -> TemplateFile {
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
        &mut read_template,
    )
}

/// One stage of one experiment, before its key is known.
#[derive(Debug, Clone, PartialEq)]
pub struct StageSpec {
    /// Unique within the experiment: `ingest:AAPL`, `features`, ...
    pub id: String,
    pub kind: StageKind,
    /// Canonical JSON of the config this stage reads, rooted at the experiment's top-level
    /// keys (`{"data":{"sequence_length":30}}`), so a diff of two of them names real keys.
    pub config: String,
    /// Indices (into `Plan::stages`) of the stages whose outputs this one reads.
    pub deps: Vec<usize>,
    /// The data file an ingest stage reads, if any.
    pub data_file: Option<PathBuf>,
}

/// An experiment's stages in dependency order (every dep precedes its user).
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub name: String,
    pub stages: Vec<StageSpec>,
    /// Cut short by `hft build --until`: the stages after the cut are not forgotten (build
    /// record, lock) just because this build does not reach them.
    pub truncated: bool,
}

impl Plan {
    /// The plan up to and including the stages of kind `until` (`features`, `dataset`, ...).
    pub fn until(&self, until: &str) -> Plan {
        let rank = |name: &str| STAGE_ORDER.iter().position(|k| *k == name);
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
        }
    }
}

/// Stage kinds in pipeline order (what `--until` accepts).
pub const STAGE_ORDER: [&str; 6] = ["ingest", "features", "dataset", "init", "train", "evaluate"];

#[salsa::tracked(returns(ref))]
pub fn plan_experiments(db: &dyn Db, source: ExperimentSource) -> Result<Vec<Plan>, ConfigError> {
    let parsed = parse_experiments(db, source)
        .as_ref()
        .map_err(Clone::clone)?;
    Ok(parsed.iter().map(|p| plan(&p.experiment)).collect())
}

/// The stages of one experiment.
pub fn plan(e: &Experiment) -> Plan {
    let mut stages = Vec::new();
    for symbol in &e.data.symbols {
        // Only the path: whether it exists is checked where data files become salsa
        // inputs (a tracked function must not read the filesystem behind salsa's back).
        let data_file = match e.data.source {
            SourceKind::Local => Some(Path::new(&e.data.path).join(format!("{symbol}.csv"))),
            SourceKind::Synthetic => None,
        };
        let kind = StageKind::Ingest {
            symbol: symbol.clone(),
        };
        stages.push(StageSpec {
            id: format!("ingest:{symbol}"),
            config: kind.config(e),
            kind,
            deps: vec![],
            data_file,
        });
    }
    let ingests: Vec<usize> = (0..stages.len()).collect();
    let mut push = |kind: StageKind, deps: Vec<usize>| -> usize {
        stages.push(StageSpec {
            id: kind.name().to_string(),
            config: kind.config(e),
            kind,
            deps,
            data_file: None,
        });
        stages.len() - 1
    };
    let features = push(StageKind::Features, ingests);
    let dataset = push(StageKind::Dataset, vec![features]);
    let init = push(StageKind::Init, vec![dataset]);
    let train = push(StageKind::Train, vec![init, dataset]);
    push(StageKind::Evaluate, vec![train, dataset]);
    Plan {
        name: e.name.clone(),
        stages,
        truncated: false,
    }
}

/// A stable id for one experiment of a file (canonical path + name), used to find its last
/// build.
pub fn experiment_id(path: &Path, name: &str) -> String {
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    Digest::of(format!("{}\0{name}", canonical.display()).as_bytes()).short()
}
