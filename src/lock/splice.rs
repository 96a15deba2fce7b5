//! The lock written in pieces: its head (version, environment, data) and one chunk per
//! experiment, so that a build that changed a few experiments of 10,000 rewrites their
//! chunks and copies the others' text, instead of parsing and serialising 36 MB.
//!
//! The text is the same bytes as `toml::to_string` of the whole lock (tests compare them):
//! the head's tables, then each experiment's tables, every table after a blank line. Beside
//! each lock it writes, hft keeps a map in the store (`memo/lock-<path>.json`): the text's
//! digest and where each experiment's chunk lies. A later build trusts the lock's text
//! without parsing it only while its digest is the map's, that is, while it is the text this
//! hft wrote; anything else (a hand edit, a git checkout, another hft) is parsed in full.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Environment, LOCK_VERSION, LockedExperiment, Lockfile, Recording};
use crate::store::{Digest, Store};

const MAP_VERSION: u32 = 2;

/// This hft: its version and its binary's fingerprint (a rebuilt hft parses in full once).
fn context() -> String {
    crate::graph::memo::context_digest(MAP_VERSION, &[])
}

/// The comment every lock starts with.
const PREAMBLE: &str = "# hft.lock: written by `hft build`, checked by `hft build --locked` and\n\
                        # `hft audit --locked`. Do not edit by hand.\n";

/// What the head of a lock holds (the experiments are chunks).
#[derive(Serialize, Deserialize)]
struct Head {
    version: u32,
    environment: Environment,
    #[serde(default)]
    data: BTreeMap<String, String>,
}

/// Where a lock's pieces lie in its text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockMap {
    version: u32,
    /// The hft that wrote it ([`context`]): another hft may serialise a chunk otherwise.
    context: String,
    /// The digest of the whole text (hex).
    digest: String,
    /// The head's length: the chunks follow, each after a blank line.
    head_end: usize,
    /// Per experiment in name order: (name, file, start, end) of its chunk, and the
    /// [`entry_digest`] of what the chunk holds.
    experiments: Vec<(String, String, usize, usize, String)>,
}

/// A lock's text with its map.
#[derive(Debug, Clone)]
pub struct Written {
    pub text: String,
    pub map: LockMap,
}

impl Written {
    /// `text` with the map that trusts it: its digest, where its head ends and where each
    /// experiment's chunk lies.
    fn new(
        text: String,
        head_end: usize,
        experiments: Vec<(String, String, usize, usize, String)>,
    ) -> Written {
        let digest = Digest::of(text.as_bytes()).to_hex();
        Written {
            text,
            map: LockMap {
                version: MAP_VERSION,
                context: context(),
                digest,
                head_end,
                experiments,
            },
        }
    }
}

/// A digest of everything an experiment's chunk writes (its file and each stage's fields):
/// equal digests, equal chunks, so a build copies the old chunk of an entry it recorded
/// unchanged instead of serialising it again.
fn entry_digest(experiment: &LockedExperiment) -> String {
    let mut h = blake3::Hasher::new();
    let mut field = |bytes: &[u8]| {
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(experiment.file.as_bytes());
    for (id, stage) in &experiment.stages {
        field(id.as_bytes());
        field(stage.key.as_bytes());
        field(&stage.version.to_le_bytes());
        field(stage.config.as_bytes());
        field(&(stage.inputs.len() as u64).to_le_bytes());
        for (name, value) in &stage.inputs {
            field(name.as_bytes());
            field(value.as_bytes());
        }
        field(&(stage.outputs.len() as u64).to_le_bytes());
        for (name, digest) in &stage.outputs {
            field(name.as_bytes());
            field(digest.as_bytes());
        }
    }
    h.finalize().to_hex()[..32].to_string()
}

/// One experiment's tables as the whole lock writes them.
fn chunk(name: &str, experiment: &LockedExperiment) -> String {
    #[derive(Serialize)]
    struct One<'a> {
        experiments: BTreeMap<&'a str, &'a LockedExperiment>,
    }
    let one = One {
        experiments: BTreeMap::from([(name, experiment)]),
    };
    toml::to_string(&one).unwrap_or_default()
}

fn head(version: u32, environment: &Environment, data: &BTreeMap<String, String>) -> String {
    let head = Head {
        version,
        environment: environment.clone(),
        data: data.clone(),
    };
    format!("{PREAMBLE}{}", toml::to_string(&head).unwrap_or_default())
}

/// Assembles a text from its head and its chunks (name, file, text, entry digest) in name
/// order.
fn assemble<'a>(
    head: String,
    chunks: impl ExactSizeIterator<Item = (&'a str, &'a str, &'a str, &'a str)> + Clone,
) -> Written {
    // Sized once: grown by doubling, a 36 MB lock was copied several times into fresh pages.
    let body: usize = chunks.clone().map(|(_, _, chunk, _)| chunk.len() + 1).sum();
    let mut text = String::with_capacity(head.len() + body);
    text.push_str(&head);
    let head_end = text.len();
    let mut experiments = Vec::with_capacity(chunks.len());
    for (name, file, chunk, digest) in chunks {
        text.push('\n');
        let start = text.len();
        text.push_str(chunk);
        experiments.push((
            name.to_string(),
            file.to_string(),
            start,
            text.len(),
            digest.to_string(),
        ));
    }
    Written::new(text, head_end, experiments)
}

/// The whole lock's text, chunk by chunk. A lock without experiments is serialised whole
/// (its empty `[experiments]` table is not a chunk).
pub fn render(lock: &Lockfile) -> Written {
    if lock.experiments.is_empty() {
        let body = toml::to_string(lock).unwrap_or_default();
        let text = format!("{PREAMBLE}{body}");
        let head_end = text.len();
        return Written::new(text, head_end, Vec::new());
    }
    let chunks: Vec<(&str, &str, String, String)> = lock
        .experiments
        .iter()
        .map(|(name, e)| {
            (
                name.as_str(),
                e.file.as_str(),
                chunk(name, e),
                entry_digest(e),
            )
        })
        .collect();
    assemble(
        head(lock.version, &lock.environment, &lock.data),
        chunks
            .iter()
            .map(|(n, f, c, d)| (*n, *f, c.as_str(), d.as_str())),
    )
}

/// `old` with a build recorded: the head re-written, the chunks of experiments it dropped
/// left out, those it built serialised, every other chunk copied. `None` when `old` has no
/// experiments or its head does not parse (the caller then takes the full path).
pub fn splice(old: &Written, recording: &Recording) -> Option<Written> {
    let map = &old.map;
    if map.experiments.is_empty() {
        return None;
    }
    let head_text = old.text.get(..map.head_end)?;
    let mut parsed: Head = toml::from_str(head_text.strip_prefix(PREAMBLE)?).ok()?;
    for (path, digest) in &recording.data {
        parsed.data.insert(path.clone(), digest.clone());
    }
    // Name -> (file, chunk text, entry digest), old and new, in name order.
    type Entry<'t> = (
        &'t str,
        std::borrow::Cow<'t, str>,
        std::borrow::Cow<'t, str>,
    );
    let mut merged: BTreeMap<&str, Entry<'_>> = BTreeMap::new();
    for (name, file, start, end, digest) in &map.experiments {
        if recording.keeps(name, file) {
            let text = old.text.get(*start..*end)?;
            merged.insert(name, (file, text.into(), digest.as_str().into()));
        }
    }
    for (name, experiment) in &recording.experiments {
        let digest = entry_digest(experiment);
        // Recorded as it was: the old chunk is its text.
        if merged
            .get(name.as_str())
            .is_some_and(|(_, _, old)| *old == digest)
        {
            continue;
        }
        let text = chunk(name, experiment);
        merged.insert(name, (&experiment.file, text.into(), digest.into()));
    }
    if merged.is_empty() {
        return None;
    }
    Some(assemble(
        head(LOCK_VERSION, &Environment::current(), &parsed.data),
        merged
            .iter()
            .map(|(n, (f, c, d))| (*n, *f, c.as_ref(), d.as_ref())),
    ))
}

/// Where the map of the lock at `path` is kept in `store`.
fn map_path(store: &Store, path: &Path) -> std::path::PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let id = Digest::of(absolute.as_os_str().as_encoded_bytes()).short();
    store.root().join("memo").join(format!("lock-{id}.json"))
}

/// `text` (the lock's bytes) with its map, if the map in `store` is of exactly this text.
pub fn trusted(store: &Store, path: &Path, text: String) -> Result<Written, String> {
    let map = std::fs::read(map_path(store, path))
        .ok()
        .and_then(|b| serde_json::from_slice::<LockMap>(&b).ok())
        .filter(|m| m.version == MAP_VERSION && m.context == context());
    match map {
        Some(map) if Digest::of(text.as_bytes()).to_hex() == map.digest => {
            Ok(Written { text, map })
        }
        _ => Err(text),
    }
}

/// Keeps the map of the text just written at `path` (an error only costs the next build
/// a full parse).
pub fn save_map(store: &Store, path: &Path, map: &LockMap) {
    let file = map_path(store, path);
    let _ = std::fs::create_dir_all(store.root().join("memo")).and_then(|_| {
        let bytes = serde_json::to_vec(map).map_err(std::io::Error::other)?;
        store.write_disposable(&file, &bytes)
    });
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::lock::LockedStage;

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
            from[self.below(from.len())]
        }
    }

    /// Names a lock may hold, bare and quoted (dots, quotes, brackets, spaces, unicode).
    const NAMES: [&str; 10] = [
        "gen_0",
        "gen_1",
        "a.b",
        "exp[model.hidden_size=8]",
        "quo\"te",
        "sp ace",
        "ünï",
        "back\\slash",
        "z-9",
        "it's",
    ];

    fn experiment(rng: &mut Rng, dir: &Path) -> LockedExperiment {
        let files = ["a.yaml", "b.yaml", "gone.yaml"];
        let mut stages = BTreeMap::new();
        for _ in 0..rng.below(4) {
            let id = rng.pick(&["train", "ingest:SYNA", "evaluate", "fold.1", "x\"y"]);
            let config = rng
                .pick(&["{\"lr\":0.1}", "{\"s\":\"it's\"}", "", "multi\nline", "'"])
                .to_string();
            let inputs = (0..rng.below(3))
                .map(|i| (format!("in.{i}"), format!("{:x}", rng.next())))
                .collect();
            let outputs = (0..rng.below(3))
                .map(|i| (format!("out{i}"), format!("{:064x}", rng.next())))
                .collect();
            stages.insert(
                id.to_string(),
                LockedStage {
                    key: format!("k1-{:x}", rng.next()),
                    version: rng.below(9) as u32,
                    config,
                    inputs,
                    outputs,
                },
            );
        }
        LockedExperiment {
            file: dir.join(rng.pick(&files)).display().to_string(),
            stages,
        }
    }

    fn whole(lock: &Lockfile) -> String {
        format!("{PREAMBLE}{}", toml::to_string(lock).unwrap())
    }

    #[test]
    fn chunks_are_the_bytes_of_the_whole_lock() {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..200 {
            let mut lock = Lockfile::new();
            for _ in 0..rng.below(3) {
                let path = rng.pick(&["data/a.csv", "da\"ta.csv", "ü.csv"]);
                lock.data
                    .insert(path.to_string(), format!("{:064x}", rng.next()));
            }
            for _ in 0..rng.below(6) {
                let name = rng.pick(&NAMES).to_string();
                lock.experiments
                    .insert(name, experiment(&mut rng, dir.path()));
            }
            let written = render(&lock);
            assert_eq!(written.text, whole(&lock), "round {round}");
            assert_eq!(toml::from_str::<Lockfile>(&written.text).unwrap(), lock);
            for (name, _, start, end, _) in &written.map.experiments {
                let chunk = &written.text[*start..*end];
                assert_eq!(chunk, super::chunk(name, &lock.experiments[name]));
            }
        }
    }

    #[test]
    fn a_spliced_lock_is_the_full_path_s_text() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), "").unwrap();
        std::fs::write(dir.path().join("b.yaml"), "").unwrap();
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let mut spliced_rounds = 0;
        for _ in 0..100 {
            let mut lock = Lockfile::new();
            for _ in 0..1 + rng.below(8) {
                let name = rng.pick(&NAMES).to_string();
                lock.experiments
                    .insert(name, experiment(&mut rng, dir.path()));
            }
            let mut old = render(&lock);
            // A few builds in a row, each spliced into the previous one's text.
            for _ in 0..4 {
                let mut recording = Recording {
                    files: BTreeSet::new(),
                    names: BTreeSet::new(),
                    data: Vec::new(),
                    experiments: BTreeMap::new(),
                };
                for _ in 0..rng.below(4) {
                    let name = rng.pick(&NAMES).to_string();
                    let e = experiment(&mut rng, dir.path());
                    recording.files.insert(e.file.clone());
                    recording.names.insert(name.clone());
                    if rng.below(3) > 0 {
                        recording.experiments.insert(name, e);
                    }
                }
                // Entries recorded again as they were: their old chunks are copied.
                let kept: Vec<(String, LockedExperiment)> = lock
                    .experiments
                    .iter()
                    .filter(|_| rng.below(2) == 0)
                    .map(|(n, e)| (n.clone(), e.clone()))
                    .collect();
                for (name, e) in kept {
                    recording.files.insert(e.file.clone());
                    recording.names.insert(name.clone());
                    recording.experiments.entry(name).or_insert(e);
                }
                if rng.below(2) == 0 {
                    let file = dir.path().join(rng.pick(&["a.yaml", "b.yaml"]));
                    recording.files.insert(file.display().to_string());
                }
                for _ in 0..rng.below(3) {
                    let path = rng.pick(&["data/a.csv", "da\"ta.csv"]);
                    recording
                        .data
                        .push((path.to_string(), format!("{:064x}", rng.next())));
                }
                recording.apply(&mut lock);
                let full = render(&lock);
                assert_eq!(full.text, whole(&lock));
                match splice(&old, &recording) {
                    Some(spliced) => {
                        assert_eq!(spliced.text, full.text);
                        assert_eq!(spliced.map, full.map);
                        spliced_rounds += 1;
                    }
                    // Only when there is nothing to splice into or nothing left.
                    None => assert!(old.map.experiments.is_empty() || lock.experiments.is_empty()),
                }
                old = full;
            }
        }
        assert!(spliced_rounds > 200, "{spliced_rounds}");
    }

    #[test]
    fn only_the_text_its_map_was_written_for_is_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("cache")).unwrap();
        let path = dir.path().join("hft.lock");
        let mut rng = Rng(7);
        let mut lock = Lockfile::new();
        lock.experiments
            .insert("a".to_string(), experiment(&mut rng, dir.path()));
        let written = render(&lock);
        assert!(
            trusted(&store, &path, written.text.clone()).is_err(),
            "no map yet"
        );
        save_map(&store, &path, &written.map);
        assert!(trusted(&store, &path, written.text.clone()).is_ok());
        let edited = written.text.replacen("version = 1", "version = 2", 1);
        assert!(trusted(&store, &path, edited).is_err());
        let other = dir.path().join("other").join("hft.lock");
        assert!(
            trusted(&store, &other, written.text).is_err(),
            "another lock's map"
        );
    }
}
