//! The per-file index: an experiment file whose text, templates and data folder listings are
//! what they were is not parsed, resolved or planned again.
//!
//! `index/<id>/` in the store maps each experiment file (its path as selected) to the
//! blake3 of its text, the digest of every template and data folder listing its parse and
//! plan read (`Read`), and its experiments as parsed (config, where each value was set) and
//! planned (stages, their versions and canonical configs). `<id>` digests everything else
//! those depend on: the index version, the hft binary (its version and stat fingerprint),
//! the working directory and the `--set` overrides. Entries are keyed on contents, not
//! stat fingerprints, so a file edited within one timestamp tick is still seen.
//!
//! Only what parses and plans cleanly is kept: a file with a config error, a symbol without
//! data files, or a `search:` is parsed every time, and an experiment whose config does not
//! come back from JSON as the same value (a float that does not round-trip) is not stored.
//! An index that cannot be read or parsed is an empty one; writes are atomic.
//!
//! The map is split over [`SHARDS`] files by a digest of each file's path (`00.json` ...),
//! read in parallel; a build that re-parses one file rewrites one shard, not the whole
//! index (38 MB at 10,000 experiments).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Database, Db, Parsed, Plan, StageSpec};
use crate::config::{Experiment, LocationMap, Origin, Pos};
use crate::store::{Digest, Store};

/// Set (to anything) to parse and plan every file, without the index.
pub const DISABLE_ENV: &str = "HFT_NO_INDEX";
const INDEX_VERSION: u32 = 2;
/// Files the index is split over.
pub const SHARDS: usize = 16;

/// What a parse or plan read besides the experiment file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Read {
    Template(PathBuf),
    Folder(PathBuf),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Dep {
    /// `true`: a data folder; `false`: a template.
    folder: bool,
    path: PathBuf,
    digest: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    text: String,
    deps: Vec<Dep>,
    experiments: Vec<Stored>,
}

/// One experiment of a file: `Parsed` and `Plan` in a form serde writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    experiment: Experiment,
    /// Key path, source (an index into `File::sources`), line, column.
    locations: Vec<(String, usize, u64, u64)>,
    name: String,
    stages: Vec<StageSpec>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    version: u32,
    /// The origins' sources (file paths, `--set` texts), each once.
    sources: Vec<String>,
    entries: BTreeMap<PathBuf, Entry>,
}

/// The index of one invocation context, loaded once and saved if anything changed.
pub struct FileIndex {
    dir: PathBuf,
    shards: Vec<Shard>,
}

/// One of the index's files, as loaded.
struct Shard {
    path: PathBuf,
    file: File,
    /// `file.sources` by text, so adding an origin is not a scan of every source.
    source_ids: std::collections::HashMap<String, usize>,
    /// `file.sources` as origins hold them, made once (not once per lookup).
    shared: Vec<std::sync::Arc<str>>,
    changed: bool,
    /// Read from disk (a shard no selected file falls in is never read).
    loaded: bool,
}

impl Shard {
    fn unread(path: PathBuf) -> Shard {
        Shard {
            path,
            file: File::default(),
            source_ids: Default::default(),
            shared: Vec::new(),
            changed: false,
            loaded: false,
        }
    }

    fn load(path: PathBuf) -> Shard {
        let file = std::fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<File>(&bytes).ok())
            .filter(|f| f.version == INDEX_VERSION)
            .unwrap_or_default();
        let source_ids = file
            .sources
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), i))
            .collect();
        let shared = file.sources.iter().map(|s| s.as_str().into()).collect();
        Shard {
            path,
            file,
            source_ids,
            shared,
            changed: false,
            loaded: true,
        }
    }

    fn source_index(&mut self, source: &str) -> usize {
        if let Some(&i) = self.source_ids.get(source) {
            return i;
        }
        self.file.sources.push(source.to_string());
        self.source_ids
            .insert(source.to_string(), self.file.sources.len() - 1);
        self.file.sources.len() - 1
    }
}

/// The shard that holds `path`'s entry.
fn shard_of(path: &Path) -> usize {
    let digest = Digest::of(path.as_os_str().as_encoded_bytes());
    usize::from(digest.0[0]) % SHARDS
}

impl FileIndex {
    /// The index for these overrides in this store (empty when absent or unreadable). Its
    /// shards are read by [`FileIndex::prefetch`], or when an entry is added to them.
    pub fn load(store: &Store, overrides: &[String]) -> FileIndex {
        let dir = store
            .root()
            .join("index")
            .join(super::memo::context_digest(INDEX_VERSION, overrides));
        let shards = (0..SHARDS)
            .map(|i| Shard::unread(dir.join(format!("{i:02x}.json"))))
            .collect();
        FileIndex { dir, shards }
    }

    /// Reads (in parallel) the shards that hold `files`' entries: a status that plans one
    /// file again reads one shard (2.4 MB at 10,000 experiments), not 38 MB.
    pub fn prefetch(&mut self, files: &[PathBuf]) {
        use rayon::prelude::*;
        let mut wanted = [false; SHARDS];
        for f in files {
            wanted[shard_of(f)] = true;
        }
        self.shards
            .par_iter_mut()
            .enumerate()
            .filter(|(i, s)| wanted[*i] && !s.loaded)
            .for_each(|(_, s)| *s = Shard::load(std::mem::take(&mut s.path)));
    }

    /// The folder of this context's shards.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The experiments of `path` if its text and everything its parse read are unchanged.
    /// Reading the templates and folders through `db` also lets the no-op memo watch them.
    pub fn lookup(&self, db: &Database, path: &Path, text: &str) -> Option<Vec<(Parsed, Plan)>> {
        let shard = &self.shards[shard_of(path)];
        let entry = shard.file.entries.get(path)?;
        if entry.text != Digest::of(text.as_bytes()).to_hex() {
            return None;
        }
        for dep in &entry.deps {
            if dep_digest(db, dep.folder, &dep.path) != dep.digest {
                return None;
            }
        }
        entry
            .experiments
            .iter()
            .map(|s| {
                let locations = s
                    .locations
                    .iter()
                    .map(|(key, source, line, column)| {
                        let origin = Origin {
                            source: shard.shared.get(*source)?.clone(),
                            pos: Pos {
                                line: *line,
                                column: *column,
                            },
                        };
                        Some((key.clone(), origin))
                    })
                    .collect::<Option<LocationMap>>()?;
                let parsed = Parsed {
                    experiment: s.experiment.clone(),
                    locations,
                    search_base: false,
                };
                let plan = Plan {
                    name: s.name.clone(),
                    stages: s.stages.clone(),
                    truncated: false,
                    data_errors: vec![],
                };
                Some((parsed, plan))
            })
            .collect()
    }

    /// Keeps what `path` parsed and planned to, given what the parse read (`reads`, from
    /// [`Database::take_reads`]). Files the index does not keep (see the module docs) are
    /// skipped.
    pub fn insert(
        &mut self,
        db: &Database,
        path: &Path,
        text: &str,
        reads: &[Read],
        experiments: &[(&Parsed, &Plan)],
    ) {
        let shard = &mut self.shards[shard_of(path)];
        // Written back whole: the entries already there must be read first.
        if !shard.loaded {
            *shard = Shard::load(std::mem::take(&mut shard.path));
        }
        let mut stored = Vec::with_capacity(experiments.len());
        for (parsed, plan) in experiments {
            let keepable = !parsed.search_base
                && parsed.experiment.search.is_none()
                && plan.data_errors.is_empty()
                && !plan.truncated
                && round_trips(&parsed.experiment);
            if !keepable {
                return;
            }
            let locations = parsed
                .locations
                .entries()
                .map(|(key, origin)| {
                    let source = shard.source_index(&origin.source);
                    (key.clone(), source, origin.pos.line, origin.pos.column)
                })
                .collect();
            stored.push(Stored {
                experiment: parsed.experiment.clone(),
                locations,
                name: plan.name.clone(),
                stages: plan.stages.clone(),
            });
        }
        let mut reads = reads.to_vec();
        reads.sort();
        reads.dedup();
        let deps = reads
            .into_iter()
            .map(|r| {
                let (folder, path) = match r {
                    Read::Template(p) => (false, p),
                    Read::Folder(p) => (true, p),
                };
                let digest = dep_digest(db, folder, &path);
                Dep {
                    folder,
                    path,
                    digest,
                }
            })
            .collect();
        let entry = Entry {
            text: Digest::of(text.as_bytes()).to_hex(),
            deps,
            experiments: stored,
        };
        shard.file.entries.insert(path.to_path_buf(), entry);
        shard.changed = true;
    }

    /// Writes the shards an entry was added to, leaving out files that no longer exist
    /// (errors only cost the next build its speed). The shards are written, and dropped,
    /// in parallel: freeing 10,000 entries one by one was a tenth of a large status.
    pub fn save(self, store: &Store) {
        use rayon::prelude::*;
        let dir = self.dir;
        let any = self.shards.iter().any(|s| s.changed);
        let made = if any {
            std::fs::create_dir_all(&dir)
        } else {
            Ok(())
        };
        let written = made.and_then(|_| {
            self.shards
                .into_par_iter()
                .filter(|shard| shard.changed)
                .try_for_each(|mut shard| {
                    shard.file.version = INDEX_VERSION;
                    shard.file.entries.retain(|path, _| path.exists());
                    let bytes = serde_json::to_vec(&shard.file).map_err(std::io::Error::other)?;
                    store.write_disposable(&shard.path, &bytes)
                })
        });
        if let Err(e) = written
            && e.kind() != std::io::ErrorKind::ReadOnlyFilesystem
        {
            crate::term::warn(&format!("cannot write the experiment index: {e}"));
        }
    }
}

/// The digest of what a template (its text, or why it could not be read) or a data folder
/// (whether it exists, and its listing) gives a parse now.
fn dep_digest(db: &Database, folder: bool, path: &Path) -> String {
    let text = if folder {
        let f = db.data_folder(path);
        format!("{}\0{}", f.exists(db), f.listing(db).join("\0"))
    } else {
        match db.template(path).text(db) {
            Ok(text) => format!("ok\0{text}"),
            Err(message) => format!("err\0{message}"),
        }
    };
    Digest::of(text.as_bytes()).to_hex()
}

/// Whether the config comes back from JSON as an equal value that is written the same way
/// (a float serde_json would not read back exactly is not trusted to the index).
fn round_trips(e: &Experiment) -> bool {
    let Ok(json) = serde_json::to_string(e) else {
        return false;
    };
    serde_json::from_str::<Experiment>(&json).is_ok_and(|back| {
        back == *e && serde_json::to_string(&back).is_ok_and(|again| again == json)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_configs_that_come_back_from_json_unchanged_are_kept() {
        let mut e = Experiment::default();
        assert!(round_trips(&e));
        e.optimizer.lr = 0.1 + 0.2;
        assert!(round_trips(&e), "a float serde_json reads back exactly");
        e.optimizer.lr = f64::NAN;
        assert!(!round_trips(&e), "NaN is written as null");
    }

    #[test]
    fn an_unreadable_index_is_an_empty_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("cache")).unwrap();
        let index = FileIndex::load(&store, &[]);
        let path = Path::new("a.yaml");
        std::fs::create_dir_all(index.dir()).unwrap();
        let shard = &index.shards[shard_of(path)].path;
        std::fs::write(shard, b"{\"version\": 2, \"entries\": [").unwrap();
        let mut again = FileIndex::load(&store, &[]);
        again.prefetch(&[path.to_path_buf()]);
        assert!(again.shards[shard_of(path)].loaded);
        assert!(again.shards.iter().all(|s| s.file.entries.is_empty()));
        let db = Database::default();
        assert!(again.lookup(&db, path, "name: a\n").is_none());
    }

    #[test]
    fn files_spread_over_the_shards() {
        let used: std::collections::BTreeSet<usize> = (0..200)
            .map(|i| shard_of(Path::new(&format!("experiments/gen_{i:05}.yaml"))))
            .collect();
        assert_eq!(used.len(), SHARDS);
    }
}
