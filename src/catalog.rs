//! The experiment catalog: an index in the store of what each experiment's builds produced.
//!
//! `hft ls`, `compare`, `report`, `gc --keep-last` and `cache stats` read it instead of
//! walking every action record and blob. Two append-only JSON-lines files under the store:
//!
//! - `catalog.jsonl`: one [`CatalogRow`] per experiment whose build record changed in a
//!   build (or which failed): resolved config leaves, stage keys and output digests, timings,
//!   flattened metrics. The last row of an id is its current state; earlier rows are its
//!   history (kept up to [`HISTORY`] per experiment when the file is compacted, and the
//!   newest row of every trial: [`Trials`]).
//! - `builds.jsonl`: one [`BuildEntry`] per build: how many stages ran, hit or failed.
//!
//! Appends are one `write` each under an flock, so concurrent builds interleave whole lines;
//! a line cut short by a crash is skipped by readers (and dropped by the next compaction).
//! The catalog is derived data: losing it loses history and listings, never a result.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::Experiment;
use crate::graph::exec::{ExperimentReport, StageState};
use crate::store::{Fingerprint, Store, now_unix};

mod compaction;
mod trials;
pub use trials::Trials;

pub const ROWS_FILE: &str = "catalog.jsonl";
pub const BUILDS_FILE: &str = "builds.jsonl";
/// Rows kept per experiment when the catalog is compacted (what `gc --keep-last` can see).
pub const HISTORY: usize = 10;

/// One experiment as one build left it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogRow {
    /// `graph::experiment_id(file, name)`.
    pub id: String,
    pub name: String,
    pub file: String,
    /// Seconds since the Unix epoch.
    pub built_at: u64,
    /// `None` when every stage is built; the first failure's message otherwise.
    pub error: Option<String>,
    pub model: String,
    pub optimizer: String,
    /// Every resolved config leaf (`optimizer.lr` -> `0.001`, values as JSON text).
    pub config: BTreeMap<String, String>,
    pub stages: Vec<CatalogStage>,
    /// Numeric results: the evaluate summary's leaves (`backtest.strategy.sharpe`) and the
    /// training figures (`train.best_val_loss`).
    pub metrics: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogStage {
    pub id: String,
    pub key: String,
    /// Output name -> blob digest (hex).
    pub outputs: BTreeMap<String, String>,
    pub wall_ms: u64,
    /// Executed by this build (false: a cache hit).
    pub ran: bool,
}

/// What one `hft build` did, for `hft cache stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildEntry {
    pub at: u64,
    pub experiments: usize,
    pub ran: usize,
    pub cached: usize,
    pub failed: usize,
    pub secs: f64,
}

/// How many builds `cache stats` summarises.
pub const RECENT_BUILDS: usize = 10;

/// One build as `hft cache stats` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BuildStats {
    /// Seconds since the Unix epoch.
    pub at: u64,
    pub experiments: usize,
    pub ran: usize,
    pub cached: usize,
    pub failed: usize,
    pub secs: f64,
    /// cached / (ran + cached); `None` when the build checked no stage.
    pub hit_rate: Option<f64>,
}

/// What the catalog says for `hft cache stats`: its size and the hit rate of recent builds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CatalogStats {
    pub catalog_rows: usize,
    pub catalog_experiments: usize,
    /// Builds the catalog remembers.
    pub builds_recorded: usize,
    /// The last [`RECENT_BUILDS`] builds, oldest first.
    pub recent_builds: Vec<BuildStats>,
    /// cached / (ran + cached) over `recent_builds`; `None` when they checked no stage.
    pub hit_rate: Option<f64>,
}

impl From<&BuildEntry> for BuildStats {
    fn from(b: &BuildEntry) -> BuildStats {
        BuildStats {
            at: b.at,
            experiments: b.experiments,
            ran: b.ran,
            cached: b.cached,
            failed: b.failed,
            secs: b.secs,
            hit_rate: hit_rate(b.ran, b.cached),
        }
    }
}

fn hit_rate(ran: usize, cached: usize) -> Option<f64> {
    (ran + cached > 0).then(|| cached as f64 / (ran + cached) as f64)
}

impl CatalogRow {
    /// The row for one experiment's report. `None` when nothing of it was built.
    pub fn from_report(
        id: &str,
        experiment: &Experiment,
        report: &ExperimentReport,
    ) -> Option<CatalogRow> {
        let json = serde_json::to_value(experiment).unwrap_or_default();
        let config = crate::config::json_leaves(&json, false)
            .into_iter()
            .map(|(k, v)| (k, v.to_string()))
            .collect();
        let mut stages = Vec::new();
        let mut metrics = BTreeMap::new();
        for s in &report.stages {
            let (Some(key), Some(record)) = (&s.key, &s.record) else {
                continue;
            };
            stages.push(CatalogStage {
                id: s.id.clone(),
                key: key.0.clone(),
                outputs: record
                    .outputs
                    .iter()
                    .map(|(n, o)| (n.clone(), o.digest.to_hex()))
                    .collect(),
                wall_ms: record.wall_ms,
                ran: matches!(s.state, StageState::Ran { .. }),
            });
            // Walk-forward: the latest fold's training stands for the experiment's (folds
            // come in time order, so it is the last one written).
            let prefix = match s.id.as_str() {
                "evaluate" | "walk_forward" => "",
                "train" => "train.",
                id if id.starts_with("fold_train:") => "train.",
                _ => continue,
            };
            for (path, value) in crate::config::json_leaves(&record.summary, false) {
                if let Some(x) = value.as_f64().filter(|x| x.is_finite()) {
                    metrics.insert(format!("{prefix}{path}"), x);
                }
            }
        }
        let error = report.error().map(|e| e.to_string());
        if stages.is_empty() && error.is_none() {
            return None;
        }
        Some(CatalogRow {
            id: id.to_string(),
            name: report.name.clone(),
            file: report.file.display().to_string(),
            built_at: now_unix(),
            error,
            model: experiment.model.kind.clone(),
            optimizer: experiment.optimizer.kind.clone(),
            config,
            stages,
            metrics,
        })
    }

    /// The stage key of `stage` in this row, if it was built.
    pub fn key_of(&self, stage: &str) -> Option<&str> {
        self.stages
            .iter()
            .find(|s| s.id == stage)
            .map(|s| s.key.as_str())
    }
}

/// Everything the catalog holds, oldest first.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub rows: Vec<CatalogRow>,
    pub builds: Vec<BuildEntry>,
}

impl Catalog {
    pub fn load(store: &Store) -> Catalog {
        Catalog {
            rows: read_lines(&store.root().join(ROWS_FILE)),
            builds: read_lines(&store.root().join(BUILDS_FILE)),
        }
    }

    /// Only the last row of each experiment (and no build entries): what `hft compare`
    /// needs. History lines are skipped after a borrowing parse of their id, and the rows
    /// kept are parsed in parallel, so thousands of experiments load in tens of ms.
    pub fn load_latest(store: &Store) -> Catalog {
        use rayon::prelude::*;
        #[derive(Deserialize)]
        struct IdOnly<'a> {
            #[serde(borrow)]
            id: std::borrow::Cow<'a, str>,
        }
        let Ok(text) = fs::read_to_string(store.root().join(ROWS_FILE)) else {
            return Catalog::default();
        };
        let mut seen = std::collections::HashSet::new();
        let mut last_lines: Vec<&str> = text
            .lines()
            .rev()
            .filter(|line| match serde_json::from_str::<IdOnly>(line) {
                Ok(row) => seen.insert(row.id.into_owned()),
                Err(_) => false,
            })
            .collect();
        last_lines.reverse();
        Catalog {
            rows: last_lines
                .par_iter()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect(),
            builds: Vec::new(),
        }
    }

    /// The last row of each experiment, by id.
    pub fn latest(&self) -> BTreeMap<&str, &CatalogRow> {
        let mut latest = BTreeMap::new();
        for row in &self.rows {
            latest.insert(row.id.as_str(), row);
        }
        latest
    }

    /// The rows of one experiment, newest first.
    pub fn history(&self, id: &str) -> Vec<&CatalogRow> {
        self.rows.iter().rev().filter(|r| r.id == id).collect()
    }

    /// Its size and the hit rate of the last [`RECENT_BUILDS`] builds.
    pub fn stats(&self) -> CatalogStats {
        let recent: Vec<BuildStats> = self.builds
            [self.builds.len().saturating_sub(RECENT_BUILDS)..]
            .iter()
            .map(BuildStats::from)
            .collect();
        let ran: usize = recent.iter().map(|b| b.ran).sum();
        let cached: usize = recent.iter().map(|b| b.cached).sum();
        CatalogStats {
            catalog_rows: self.rows.len(),
            catalog_experiments: self.latest().len(),
            builds_recorded: self.builds.len(),
            recent_builds: recent,
            hit_rate: hit_rate(ran, cached),
        }
    }
}

/// The metric a column name stands for: `skill` is the pooled skill against persistence,
/// `deflated_sharpe` the deflated Sharpe ratio over the catalog's trials (`dsr`; the
/// one-trial figure of `metrics.json` is `deflated_sharpe.value`).
pub fn metric_key(key: &str) -> &str {
    match key {
        "skill" => "skill.pooled",
        "deflated_sharpe" => crate::eval::deflated::DSR_METRIC,
        other => other,
    }
}

/// Rows and build entries made up for tests (here, in gc and in the cache commands).
#[cfg(test)]
impl CatalogRow {
    /// Experiment `id` as built at `at`, with a `train` stage for each of `keys`.
    pub(crate) fn for_test(id: &str, at: u64, keys: &[&str]) -> CatalogRow {
        CatalogRow {
            id: id.to_string(),
            name: id.to_string(),
            file: format!("experiments/{id}.yaml"),
            built_at: at,
            error: None,
            model: "mlp".to_string(),
            optimizer: "adamw".to_string(),
            config: BTreeMap::from([("optimizer.lr".to_string(), at.to_string())]),
            stages: keys
                .iter()
                .map(|k| CatalogStage {
                    id: "train".to_string(),
                    key: k.to_string(),
                    outputs: BTreeMap::new(),
                    wall_ms: 0,
                    ran: true,
                })
                .collect(),
            metrics: BTreeMap::from([("price.mse".to_string(), at as f64)]),
        }
    }
}

#[cfg(test)]
impl BuildEntry {
    /// A one-experiment build that ran `ran` stages and found `cached` in the cache.
    pub(crate) fn for_test(ran: usize, cached: usize) -> BuildEntry {
        BuildEntry {
            at: 1_700_000_000,
            experiments: 1,
            ran,
            cached,
            failed: 0,
            secs: 1.0,
        }
    }
}

/// Appends rows (one line each) and one build entry; compacts the catalog when history
/// beyond [`HISTORY`] rows per experiment makes up more than half of it.
pub fn append(store: &Store, rows: &[CatalogRow], build: &BuildEntry) -> io::Result<()> {
    let _lock = lock(store)?;
    let rows_path = store.root().join(ROWS_FILE);
    let mut before = None;
    if !rows.is_empty() {
        let mut text = String::new();
        for row in rows {
            text.push_str(&serde_json::to_string(row).map_err(io::Error::other)?);
            text.push('\n');
        }
        before = Some(fs::metadata(&rows_path).ok().map(|m| Fingerprint::of(&m)));
        append_text(&rows_path, &text)?;
    }
    let mut line = serde_json::to_string(build).map_err(io::Error::other)?;
    line.push('\n');
    append_text(&store.root().join(BUILDS_FILE), &line)?;
    if let Some(before) = before {
        compaction::compact_if_needed(store, before, rows.len())?;
    }
    Ok(())
}

/// Readers skip lines that do not parse: a line cut short by a killed build, or one written
/// by a newer hft.
pub(crate) fn read_lines<T: serde::de::DeserializeOwned>(path: &Path) -> Vec<T> {
    let Ok(text) = fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn append_text(path: &Path, text: &str) -> io::Result<()> {
    let named = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    append_unnamed(path, text).map_err(named)
}

fn append_unnamed(path: &Path, text: &str) -> io::Result<()> {
    let mut f = OpenOptions::new().create(true).append(true).open(path)?;
    // A line cut short by a crash would glue onto the next one: start on a fresh line.
    let len = f.metadata()?.len();
    if len > 0 {
        let mut last = [0u8; 1];
        use std::io::{Read, Seek, SeekFrom};
        let mut r = File::open(path)?;
        r.seek(SeekFrom::Start(len - 1))?;
        r.read_exact(&mut last)?;
        if last[0] != b'\n' {
            f.write_all(b"\n")?;
        }
    }
    f.write_all(text.as_bytes())
}

fn lock(store: &Store) -> io::Result<File> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(store.root().join("locks").join("catalog.lock"))?;
    f.lock()?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, at: u64) -> CatalogRow {
        CatalogRow::for_test(id, at, &[])
    }

    fn entry() -> BuildEntry {
        BuildEntry::for_test(1, 0)
    }

    #[test]
    fn latest_row_wins_and_history_is_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        append(&store, &[row("a", 1), row("b", 1)], &entry()).unwrap();
        append(&store, &[row("a", 2)], &entry()).unwrap();
        let c = Catalog::load(&store);
        let latest = Catalog::load_latest(&store);
        assert_eq!(latest.rows.len(), 2);
        assert_eq!(latest.latest()["a"].built_at, 2);
        assert_eq!(c.latest()["a"].built_at, 2);
        assert_eq!(c.latest()["b"].built_at, 1);
        let h: Vec<u64> = c.history("a").iter().map(|r| r.built_at).collect();
        assert_eq!(h, vec![2, 1]);
        assert_eq!(c.builds.len(), 2);
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_not_glued_to_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        append(&store, &[row("a", 1)], &entry()).unwrap();
        let path = dir.path().join(ROWS_FILE);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"id\":\"b\",\"na").unwrap();
        append(&store, &[row("c", 3)], &entry()).unwrap();
        let c = Catalog::load(&store);
        let ids: Vec<&str> = c.rows.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, vec!["a", "c"]);
    }

    #[test]
    fn compaction_keeps_the_last_rows_of_each_experiment() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for at in 0..150 {
            append(&store, &[row("a", at)], &entry()).unwrap();
        }
        append(&store, &[row("b", 7)], &entry()).unwrap();
        let c = Catalog::load(&store);
        assert!(c.rows.len() < 150, "compacted to {}", c.rows.len());
        let h = c.history("a");
        assert!(h.len() >= HISTORY);
        assert_eq!(h[0].built_at, 149);
        assert_eq!(c.latest()["b"].built_at, 7);
    }

    #[test]
    fn stats_give_the_hit_rate_of_the_recent_builds() {
        let build = BuildEntry::for_test;
        let mut builds = vec![build(100, 0)];
        builds.extend((0..RECENT_BUILDS).map(|i| build(1, i % 2 * 2)));
        let catalog = Catalog {
            rows: vec![row("a", 1), row("a", 2), row("b", 1)],
            builds,
        };
        let s = catalog.stats();
        assert_eq!((s.catalog_rows, s.catalog_experiments), (3, 2));
        assert_eq!(s.recent_builds.len(), RECENT_BUILDS);
        assert_eq!(s.builds_recorded, RECENT_BUILDS + 1);
        // 10 ran, 10 cached over the last ten builds; the old 100-stage build is out.
        assert_eq!(s.hit_rate, Some(0.5));
        assert_eq!(s.recent_builds[0].hit_rate, Some(0.0));
        assert_eq!(Catalog::default().stats().hit_rate, None);
    }
}
