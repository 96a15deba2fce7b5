//! `hft.lock`: per experiment and stage, the key, the facts its key was computed from and
//! the output digests, plus the data file digests and the environment that produced them.
//!
//! Deterministic text (TOML, every table sorted by name), so two builds of the same
//! experiments write the same bytes and a change shows as a small diff. `hft build --locked`
//! checks keys against it before executing anything; `hft audit --locked` checks outputs.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::located::line_column;
use crate::graph::exec::{
    ExperimentJob, ExperimentReport, StageSnapshot, explain_config_change, key_from_inputs,
};
use crate::store::{Fingerprint, StageKey, Store};

mod splice;

/// Bumped when the lock layout changes.
pub const LOCK_VERSION: u32 = 1;

/// The file name, written in the directory hft runs in.
pub const LOCK_FILE: &str = "hft.lock";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Lockfile {
    pub version: u32,
    pub environment: Environment,
    /// Data file path -> blake3 digest of its bytes.
    #[serde(default)]
    pub data: BTreeMap<String, String>,
    /// Experiment name -> its stages.
    #[serde(default)]
    pub experiments: BTreeMap<String, LockedExperiment>,
}

/// What produced the outputs: results are only comparable under the same environment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Environment {
    pub hft: String,
    pub burn: String,
    pub backend: String,
    pub device: String,
    pub precision: String,
}

impl Environment {
    pub fn current() -> Environment {
        Environment {
            hft: env!("CARGO_PKG_VERSION").to_string(),
            burn: "0.22".to_string(),
            backend: "flex".to_string(),
            device: "cpu".to_string(),
            precision: "f32".to_string(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LockedExperiment {
    pub file: String,
    /// Stage id (`ingest:AAPL`, `train`, ...) -> what it was locked at.
    pub stages: BTreeMap<String, LockedStage>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LockedStage {
    pub key: String,
    /// Stage version and the canonical config it read: what `--locked` diffs to say why a
    /// key changed.
    pub version: u32,
    pub config: String,
    /// The (name, value) facts of its inputs that went into the key, in key order.
    pub inputs: Vec<(String, String)>,
    /// Output name -> digest.
    pub outputs: BTreeMap<String, String>,
}

impl Lockfile {
    pub fn new() -> Lockfile {
        Lockfile {
            version: LOCK_VERSION,
            environment: Environment::current(),
            ..Lockfile::default()
        }
    }

    /// Reads a lockfile; `Ok(None)` when there is none. Errors name the file, the line and
    /// column, and what to do.
    pub fn load(path: &Path) -> Result<Option<Lockfile>, String> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let text = Self::text_of(path, bytes)?;
        Self::parse_file(path, &text).map(Some)
    }

    /// The lock file's bytes as text, or an error that says where they are not UTF-8.
    fn text_of(path: &Path, bytes: Vec<u8>) -> Result<String, String> {
        String::from_utf8(bytes).map_err(|e| {
            let valid = e.utf8_error().valid_up_to();
            let (line, column) = line_column(e.as_bytes(), valid);
            located(path, line, column, "not UTF-8 text")
        })
    }

    /// Parses the text of the lock file at `path`; errors name the file, line and column.
    fn parse_file(path: &Path, text: &str) -> Result<Lockfile, String> {
        Self::parse_located(text).map_err(|(offset, message)| {
            let (line, column) = line_column(text.as_bytes(), offset);
            located(path, line, column, &message)
        })
    }

    /// Parses lockfile text; errors say where (line and column) and what is wrong.
    pub fn parse(text: &str) -> Result<Lockfile, String> {
        Self::parse_located(text).map_err(|(offset, message)| {
            let (line, column) = line_column(text.as_bytes(), offset);
            format!("line {line}, column {column}: {message}")
        })
    }

    /// [`Lockfile::parse`] with the error's byte offset kept apart from its message.
    fn parse_located(text: &str) -> Result<Lockfile, (usize, String)> {
        // A lock merged by git with conflicting builds on both sides: say so rather than
        // report the TOML error the markers cause.
        let mut start = 0usize;
        for line in text.split_inclusive('\n') {
            if ["<<<<<<<", "=======", ">>>>>>>"]
                .iter()
                .any(|marker| line.starts_with(marker))
            {
                return Err((
                    start,
                    "merge conflict markers; a lock is not merged by hand".to_string(),
                ));
            }
            start += line.len();
        }
        let lock: Lockfile = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            (offset, e.message().trim_end().to_string())
        })?;
        if lock.version != LOCK_VERSION {
            // Point at the `version = ...` line itself.
            let offset = text
                .lines()
                .scan(0usize, |start, line| {
                    let here = *start;
                    *start += line.len() + 1;
                    Some((here, line))
                })
                .find(|(_, line)| line.trim_start().starts_with("version"))
                .map_or(0, |(here, _)| here);
            return Err((
                offset,
                format!(
                    "version: lock version {} is not {LOCK_VERSION} (written by another \
                     version of hft?)",
                    lock.version
                ),
            ));
        }
        lock.validate(text)?;
        Ok(lock)
    }

    /// What parsing cannot check: every digest is 64 hex digits, every key has the key
    /// scheme, and every stage's key is the key of its recorded version, config and inputs
    /// (so a hand edit of any of them is found here, not trusted later). Errors point at the
    /// offending text.
    fn validate(&self, text: &str) -> Result<(), (usize, String)> {
        // The offset of the first occurrence of `needle` at or after `from` (0 if absent).
        let at = |needle: &str, from: usize| {
            text.get(from..)
                .and_then(|t| t.find(needle))
                .map_or(from, |i| from + i)
        };
        let is_digest = |d: &str| d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit());
        for (path, digest) in &self.data {
            if !is_digest(digest) {
                return Err((
                    at(&format!("\"{digest}\""), at("[data]", 0)),
                    format!("data.\"{path}\": `{digest}` is not a blake3 digest (64 hex digits)"),
                ));
            }
        }
        for (name, experiment) in &self.experiments {
            for (id, stage) in &experiment.stages {
                // Where the entry's table starts, searched only for an error: a search per
                // stage over the whole text made reading a 60,000-stage lock quadratic.
                let here = || {
                    let table = format!("stages.{}]", toml_key(id));
                    at(&format!("[experiments.{}.{table}", toml_key(name)), 0)
                };
                let path = format!("experiments.{name}.stages.{id}");
                let key_ok = stage
                    .key
                    .strip_prefix(&format!("{}-", crate::store::KEY_SCHEME))
                    .is_some_and(is_digest);
                if !key_ok {
                    return Err((
                        at("key", here()),
                        format!(
                            "{path}.key: `{}` is not a stage key (k1- and 64 hex digits)",
                            stage.key
                        ),
                    ));
                }
                for (output, digest) in &stage.outputs {
                    if !is_digest(digest) {
                        return Err((
                            at(&format!("\"{digest}\""), here()),
                            format!(
                                "{path}.outputs.{output}: `{digest}` is not a blake3 digest \
                                 (64 hex digits)"
                            ),
                        ));
                    }
                }
                let kind = id.split(':').next().unwrap_or(id);
                let expected = crate::graph::key::key_from_parts(
                    kind,
                    stage.version,
                    &stage.config,
                    &stage.inputs,
                );
                if expected.0 != stage.key {
                    return Err((
                        here(),
                        format!(
                            "{path}: its key is not the key of its version, config and inputs: \
                             the entry was edited by hand"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The lock's text: the same bytes as `toml::to_string` of the whole lock after the
    /// comment, written one experiment at a time (see [`splice`]).
    pub fn to_text(&self) -> String {
        splice::render(self).text
    }

    /// Writes the lock atomically (temporary file + rename), only when its text changed.
    pub fn save(&self, path: &Path) -> std::io::Result<bool> {
        let text = self.to_text();
        let old = std::fs::read_to_string(path).ok();
        write_if_changed(path, &text, old.as_deref())
    }
}

/// Writes `text` to `path` atomically unless `old` (the file's text) is the same.
fn write_if_changed(path: &Path, text: &str, old: Option<&str>) -> std::io::Result<bool> {
    if old == Some(text) {
        return Ok(false);
    }
    // One temporary name per process: concurrent builds must not share it.
    let tmp = path.with_extension(format!("lock.{}.tmp", std::process::id()));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(true)
}

/// An error in the lock file at `path`, with what to do about it.
fn located(path: &Path, line: usize, column: usize, message: &str) -> String {
    format!(
        "{}:{line}:{column}: {message}; {LOCK_FILE} is written by `hft build`: restore it from \
         version control, or delete it and run `hft build` (without --locked) to write it again",
        path.display()
    )
}

/// The lock a build read before executing, for [`update`] to record the build in.
#[derive(Debug)]
pub enum Known {
    /// Parsed in full.
    Parsed(Lockfile),
    /// The text as this hft wrote it (its digest is its map's), not parsed: [`update`]
    /// splices the built experiments into it.
    Trusted(splice::Written),
}

impl Known {
    /// Reads the lock at `path` for a build: trusted without parsing while it is the text
    /// this hft last wrote there (the map in `store` says), else parsed in full (errors as
    /// [`Lockfile::load`]'s). `Ok(None)` when there is none.
    pub fn read(path: &Path, store: &Store) -> Result<Option<Known>, String> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let text = Lockfile::text_of(path, bytes)?;
        match splice::trusted(store, path, text) {
            Ok(written) => Ok(Some(Known::Trusted(written))),
            Err(text) => Lockfile::parse_file(path, &text).map(|l| Some(Known::Parsed(l))),
        }
    }
}

/// A TOML key as the lock writes it in a table header: bare when it can be, else quoted.
fn toml_key(key: &str) -> String {
    if !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        key.to_string()
    } else {
        format!("\"{}\"", key.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// Records a build in the lockfile at `path`: re-read, merged and written while holding an
/// flock on the folder that holds it, so concurrent builds in one project each add their
/// experiments instead of the last writer dropping the others'. `known` is the lock this
/// build read earlier with the file's fingerprint from before that read: while the file
/// still has that fingerprint it is what re-reading would give (a 60,000-stage lock takes
/// half a second to parse), and every write replaces the file (a new inode). A trusted
/// text has the build spliced into it; the bytes are those of the full path.
pub fn update(
    path: &Path,
    store: &Store,
    jobs: &[ExperimentJob],
    reports: &[ExperimentReport],
    known: Option<(Known, Fingerprint)>,
) -> Result<bool, String> {
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let guard = std::fs::File::open(folder)
        .and_then(|f| f.lock().map(|_| f))
        .map_err(|e| format!("cannot lock {}: {e}", folder.display()))?;
    let now = std::fs::metadata(path).ok().map(|m| Fingerprint::of(&m));
    let current = match known {
        Some((known, fingerprint)) if now.as_ref() == Some(&fingerprint) => Some(known),
        _ => Known::read(path, store)?,
    };
    let recording = Recording::of(jobs, reports);
    let mapped = matches!(current, Some(Known::Trusted(_)));
    let (old, written) = match current {
        Some(Known::Trusted(old)) => match splice::splice(&old, &recording) {
            Some(written) => (Some(old.text), written),
            None => {
                let mut lock = Lockfile::parse_file(path, &old.text)?;
                recording.apply(&mut lock);
                (Some(old.text), splice::render(&lock))
            }
        },
        Some(Known::Parsed(mut lock)) => {
            recording.apply(&mut lock);
            let old = std::fs::read_to_string(path).ok();
            (old, splice::render(&lock))
        }
        None => {
            let mut lock = Lockfile::new();
            recording.apply(&mut lock);
            (None, splice::render(&lock))
        }
    };
    let saved = write_if_changed(path, &written.text, old.as_deref())
        .map_err(|e| format!("cannot write {}: {e}", path.display()));
    if saved.as_ref().is_ok_and(|&changed| changed || !mapped) {
        splice::save_map(store, path, &written.map);
    }
    drop(guard);
    saved
}

/// What a build records in the lock: the experiments it built, the data digests they read,
/// and which entries it drops.
pub struct Recording {
    /// Files this build read, and the experiments it found in them.
    files: std::collections::BTreeSet<String>,
    names: std::collections::BTreeSet<String>,
    /// Data file path -> digest, in the order recorded.
    data: Vec<(String, String)>,
    /// Fully built experiments, by name (a later one replaces an earlier).
    experiments: BTreeMap<String, LockedExperiment>,
}

impl Recording {
    /// The stages of fully built experiments.
    pub fn of(jobs: &[ExperimentJob], reports: &[ExperimentReport]) -> Recording {
        // Sets, not lists: 10,000 experiments against 10,000 entries is 10^8 comparisons.
        let mut recording = Recording {
            files: jobs.iter().map(|j| j.file.display().to_string()).collect(),
            names: jobs.iter().map(|j| j.plan.name.clone()).collect(),
            data: Vec::new(),
            experiments: BTreeMap::new(),
        };
        for (job, report) in jobs.iter().zip(reports) {
            if job.plan.truncated || report.stages.iter().any(|s| s.record.is_none()) {
                continue;
            }
            let mut stages = BTreeMap::new();
            for (s, spec) in report.stages.iter().zip(&report.plan.stages) {
                let (Some(key), Some(record)) = (&s.key, &s.record) else {
                    continue;
                };
                stages.insert(
                    s.id.clone(),
                    LockedStage {
                        key: key.0.clone(),
                        version: spec.version,
                        config: spec.config.clone(),
                        inputs: s.inputs.clone(),
                        outputs: record
                            .outputs
                            .iter()
                            .map(|(n, o)| (n.clone(), o.digest.to_hex()))
                            .collect(),
                    },
                );
            }
            for (i, spec) in job.plan.stages.iter().enumerate() {
                if let Some(digests) = job.data_digests.get(&i) {
                    for (path, d) in spec.data_files.iter().zip(digests) {
                        recording
                            .data
                            .push((path.display().to_string(), d.to_hex()));
                    }
                }
            }
            recording.experiments.insert(
                report.name.clone(),
                LockedExperiment {
                    file: job.file.display().to_string(),
                    stages,
                },
            );
        }
        recording
    }

    /// Whether an entry of the lock stays: entries whose file is gone, or whose file this
    /// build read and no longer defines (a removed matrix point), are dropped; other files'
    /// entries are kept as they were.
    fn keeps(&self, name: &str, file: &str) -> bool {
        Path::new(file).exists() && (!self.files.contains(file) || self.names.contains(name))
    }

    /// Records it in `lock`.
    fn apply(&self, lock: &mut Lockfile) {
        lock.version = LOCK_VERSION;
        lock.environment = Environment::current();
        lock.experiments.retain(|name, e| self.keeps(name, &e.file));
        for (path, digest) in &self.data {
            lock.data.insert(path.clone(), digest.clone());
        }
        for (name, experiment) in &self.experiments {
            lock.experiments.insert(name.clone(), experiment.clone());
        }
    }
}

/// Records the stages of fully built experiments; other entries are kept as they were.
pub fn record(lock: &mut Lockfile, jobs: &[ExperimentJob], reports: &[ExperimentReport]) {
    Recording::of(jobs, reports).apply(lock);
}

/// `--locked`, before anything executes: every stage key, recomputed from the current
/// config and the input facts recorded in the lock, must equal the locked key; data files
/// must have their locked digests. Returns one message per difference.
pub fn check_keys(lock: &Lockfile, jobs: &[ExperimentJob]) -> Vec<String> {
    let mut problems = Vec::new();
    let now = Environment::current();
    if lock.environment != now {
        let locked = &lock.environment;
        let differences: Vec<String> = [
            ("hft", &locked.hft, &now.hft),
            ("burn", &locked.burn, &now.burn),
            ("backend", &locked.backend, &now.backend),
            ("device", &locked.device, &now.device),
            ("precision", &locked.precision, &now.precision),
        ]
        .iter()
        .filter(|(_, a, b)| a != b)
        .map(|(what, a, b)| format!("{what} {a} in the lock, {b} here"))
        .collect();
        problems.push(format!(
            "the environment differs from the lock's: {}; results are compared only within one \
             environment (rebuild without --locked to write a new lock)",
            differences.join(", ")
        ));
    }
    // The [data] table is checked against the files as they are now.
    for job in jobs {
        for (i, spec) in job.plan.stages.iter().enumerate() {
            let Some(digests) = job.data_digests.get(&i) else {
                continue;
            };
            for (path, digest) in spec.data_files.iter().zip(digests) {
                let shown = path.display().to_string();
                match lock.data.get(&shown) {
                    Some(locked) if *locked != digest.to_hex() => problems.push(format!(
                        "data file {shown}: its digest is {} but {LOCK_FILE}'s [data] has {}",
                        digest.short(),
                        &locked[..locked.len().min(12)]
                    )),
                    _ => {}
                }
            }
        }
    }
    for job in jobs {
        let name = &job.plan.name;
        let Some(locked) = lock.experiments.get(name) else {
            problems.push(format!("{name}: not in {LOCK_FILE}"));
            continue;
        };
        for (i, spec) in job.plan.stages.iter().enumerate() {
            let Some(stage) = locked.stages.get(&spec.id) else {
                problems.push(format!("{name}/{}: not in {LOCK_FILE}", spec.id));
                continue;
            };
            if let Some(now) = job.data_digests.get(&i) {
                let facts = crate::graph::exec::source_facts(spec, now);
                let changed = facts.iter().find(|(k, v)| {
                    stage
                        .inputs
                        .iter()
                        .find(|(lk, _)| lk == k)
                        .map(|(_, lv)| lv)
                        != Some(v)
                });
                if let Some((fact, _)) = changed {
                    let what = match fact.as_str() {
                        "snapshot" => "its API snapshot".to_string(),
                        _ => {
                            let index = fact
                                .strip_prefix("data_file.")
                                .and_then(|n| n.parse::<usize>().ok())
                                .unwrap_or(0);
                            let path = spec.data_files.get(index);
                            format!(
                                "data file {}",
                                path.map_or("?".to_string(), |p| p.display().to_string())
                            )
                        }
                    };
                    problems.push(format!(
                        "{name}/{}: {what} changed since it was locked",
                        spec.id
                    ));
                    continue;
                }
            }
            let key = key_from_inputs(spec, &stage.inputs);
            if key.0 != stage.key {
                let snapshot = StageSnapshot {
                    id: spec.id.clone(),
                    version: stage.version,
                    key: StageKey(stage.key.clone()),
                    config: stage.config.clone(),
                    inputs: stage.inputs.clone(),
                };
                let mut why = explain_config_change(spec, job, &snapshot);
                if why.is_empty() {
                    why.push("its key scheme changed".to_string());
                }
                problems.push(format!(
                    "{name}/{}: key would change from the lock: {}",
                    spec.id,
                    why.join("; ")
                ));
            }
        }
    }
    problems
}

/// `--locked`, after executing: outputs must equal the locked digests.
pub fn check_outputs(lock: &Lockfile, reports: &[ExperimentReport]) -> Vec<String> {
    let mut problems = Vec::new();
    for report in reports {
        let Some(locked) = lock.experiments.get(&report.name) else {
            continue;
        };
        for s in &report.stages {
            // Stages known only once executed (walk-forward folds) were not checked before.
            let Some(stage) = locked.stages.get(&s.id) else {
                if s.record.is_some() {
                    problems.push(format!("{}/{}: not in {LOCK_FILE}", report.name, s.id));
                }
                continue;
            };
            if let Some(key) = s.key.as_ref().filter(|k| k.0 != stage.key) {
                problems.push(format!(
                    "{}/{}: key {key} differs from the locked {}",
                    report.name, s.id, stage.key
                ));
            }
            let Some(record) = &s.record else {
                continue;
            };
            for (name, out) in &record.outputs {
                if stage.outputs.get(name) != Some(&out.digest.to_hex()) {
                    problems.push(format!(
                        "{}/{}: output `{name}` is {} but the lock has {}: not reproduced",
                        report.name,
                        s.id,
                        out.digest.short(),
                        stage
                            .outputs
                            .get(name)
                            .map(String::as_str)
                            .unwrap_or("nothing")
                    ));
                }
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Lockfile {
        let mut lock = Lockfile::new();
        lock.data
            .insert("trainingdata/A.csv".to_string(), "ab".repeat(32));
        let mut stages = BTreeMap::new();
        let config = "{\"optimizer\":{\"lr\":0.001}}".to_string();
        let inputs = vec![("init.weights".to_string(), "cd".repeat(32))];
        stages.insert(
            "train".to_string(),
            LockedStage {
                key: crate::graph::key::key_from_parts("train", 1, &config, &inputs).0,
                version: 1,
                config,
                inputs,
                outputs: BTreeMap::from([("checkpoint".to_string(), "ef".repeat(32))]),
            },
        );
        lock.experiments.insert(
            "exp[model.hidden_size=8]".to_string(),
            LockedExperiment {
                file: "experiments/exp.yaml".to_string(),
                stages,
            },
        );
        lock
    }

    #[test]
    fn round_trips_and_is_stable() {
        let lock = sample();
        let text = lock.to_text();
        assert_eq!(Lockfile::parse(&text).unwrap(), lock);
        assert_eq!(Lockfile::parse(&text).unwrap().to_text(), text);
    }

    #[test]
    fn hand_edits_are_found_with_their_line() {
        let text = sample().to_text();
        let edits = [
            // (from, to, what the message names)
            (
                "\"lr\":0.001",
                "\"lr\":0.002",
                "the entry was edited by hand",
            ),
            (
                "version = 1\nconfig",
                "version = 2\nconfig",
                "the entry was edited by hand",
            ),
            (
                &"ef".repeat(32),
                "not-a-digest",
                "outputs.checkpoint: `not-a-digest` is not a blake3",
            ),
            (
                &"ab".repeat(32),
                "xyz",
                "data.\"trainingdata/A.csv\": `xyz`",
            ),
            ("key = \"k1-", "key = \"k2-", "is not a stage key"),
        ];
        for (from, to, says) in edits {
            assert!(text.contains(from), "{from} not in\n{text}");
            let edited = text.replacen(from, to, 1);
            let err = Lockfile::parse(&edited).unwrap_err();
            assert!(err.contains(says), "{from} -> {to}: {err}");
            assert!(err.starts_with("line "), "{err}");
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in ["", "version = 2", "[[[", "version = \"x\"", "\u{0}\u{1}"] {
            assert!(Lockfile::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn errors_say_where() {
        let text = sample().to_text().replacen("version = 1", "version = 7", 1);
        let err = Lockfile::parse(&text).unwrap_err();
        assert!(
            err.starts_with("line 3, column 1: version: lock version 7"),
            "{err}"
        );
        let conflicted = format!("version = 1\n<<<<<<< HEAD\n{}", sample().to_text());
        let err = Lockfile::parse(&conflicted).unwrap_err();
        assert!(err.starts_with("line 2, column 1: merge conflict"), "{err}");
        let err = Lockfile::parse("version = 1\n[environment]\nhft = [\n").unwrap_err();
        assert!(err.starts_with("line 3,"), "{err}");
        assert_eq!(line_column("ab\ncdé\nf".as_bytes(), 7), (2, 4));
        assert_eq!(line_column(b"abc", 99), (1, 4));
    }
}
