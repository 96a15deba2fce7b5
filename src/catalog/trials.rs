//! Trials on a dataset: what only a build system knows about multiple testing. Every
//! distinct evaluation (evaluate stage key) the catalog remembers whose dataset stage has
//! the same key is one trial on that dataset, over the whole catalog history, not only the
//! experiments' latest rows: a learning rate tried and abandoned was still tried. Their
//! count and the variance of their per-bar Sharpe ratios deflate a Sharpe ratio
//! (`eval::deflated`); compaction keeps the newest row of every trial so the count survives
//! it.

use std::collections::BTreeMap;
use std::fs;

use serde::Deserialize;

use super::{CatalogRow, ROWS_FILE};
use crate::eval::deflated::{TrialCount, trial_sharpe};
use crate::store::Store;

/// The stage whose key identifies a trial's data.
const DATASET_STAGE: &str = "dataset";
/// The stages whose key identifies a trial, the first a row has: the evaluation, or a
/// walk-forward experiment's aggregate.
const TRIAL_STAGES: [&str; 2] = ["evaluate", "walk_forward"];

/// (dataset key, trial key) of a row, when it evaluated something.
pub(super) fn trial_id(row: &CatalogRow) -> Option<(&str, &str)> {
    let dataset = row.key_of(DATASET_STAGE)?;
    let trial = TRIAL_STAGES.iter().find_map(|s| row.key_of(s))?;
    Some((dataset, trial))
}

/// Every trial the catalog remembers: dataset key -> trial key -> per-bar Sharpe ratio.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Trials {
    by_dataset: BTreeMap<String, BTreeMap<String, f64>>,
}

impl Trials {
    /// The trials of `rows` (any order; a trial seen twice has the same metrics).
    pub fn from_rows<'a>(rows: impl IntoIterator<Item = &'a CatalogRow>) -> Trials {
        let mut t = Trials::default();
        for row in rows {
            if let (Some((dataset, trial)), Some(sr)) = (trial_id(row), trial_sharpe(&row.metrics))
            {
                t.add(dataset, trial, sr);
            }
        }
        t
    }

    /// The trials of the whole catalog of `store`, parsing of each row only its stage keys
    /// and the three metrics a trial's Sharpe ratio needs, lines in parallel (so `compare`
    /// stays fast); merged in file order.
    pub fn load(store: &Store) -> Trials {
        use rayon::prelude::*;
        #[derive(Deserialize)]
        struct Stage {
            id: String,
            key: String,
        }
        #[derive(Deserialize)]
        struct Metrics {
            #[serde(rename = "deflated_sharpe.sharpe")]
            sharpe: Option<f64>,
            #[serde(rename = "backtest.strategy.sharpe")]
            annual: Option<f64>,
            #[serde(rename = "backtest.bars_per_year")]
            bars_per_year: Option<f64>,
        }
        #[derive(Deserialize)]
        struct Row {
            stages: Vec<Stage>,
            metrics: Metrics,
        }
        let mut t = Trials::default();
        let Ok(text) = fs::read_to_string(store.root().join(ROWS_FILE)) else {
            return t;
        };
        let lines: Vec<&str> = text.lines().collect();
        let found: Vec<(String, String, f64)> = lines
            .par_iter()
            .filter_map(|line| {
                let row = serde_json::from_str::<Row>(line).ok()?;
                let key = |id: &str| row.stages.iter().find(|s| s.id == id).map(|s| &s.key);
                let dataset = key(DATASET_STAGE)?;
                let trial = TRIAL_STAGES.iter().find_map(|s| key(s))?;
                let m = &row.metrics;
                let metrics: BTreeMap<String, f64> = [
                    ("deflated_sharpe.sharpe", m.sharpe),
                    ("backtest.strategy.sharpe", m.annual),
                    ("backtest.bars_per_year", m.bars_per_year),
                ]
                .into_iter()
                .filter_map(|(k, v)| Some((k.to_string(), v?)))
                .collect();
                Some((dataset.clone(), trial.clone(), trial_sharpe(&metrics)?))
            })
            .collect();
        for (dataset, trial, sr) in &found {
            t.add(dataset, trial, *sr);
        }
        t
    }

    fn add(&mut self, dataset: &str, trial: &str, sharpe: f64) {
        if sharpe.is_finite() {
            self.by_dataset
                .entry(dataset.to_string())
                .or_default()
                .insert(trial.to_string(), sharpe);
        }
    }

    /// The trials on `dataset`, with `this` (a trial key and its per-bar Sharpe ratio)
    /// counted among them whether or not the catalog has it yet.
    pub fn count(&self, dataset: &str, this: Option<(&str, f64)>) -> TrialCount {
        let mut srs: BTreeMap<&str, f64> = self
            .by_dataset
            .get(dataset)
            .map(|t| t.iter().map(|(k, v)| (k.as_str(), *v)).collect())
            .unwrap_or_default();
        if let Some((key, sr)) = this.filter(|(_, sr)| sr.is_finite()) {
            srs.insert(key, sr);
        }
        let n = srs.len();
        let sharpe_variance = if n < 2 {
            0.0
        } else {
            let mean = srs.values().sum::<f64>() / n as f64;
            srs.values().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1) as f64
        };
        TrialCount {
            trials: n.max(1),
            sharpe_variance,
        }
    }

    /// The trials on the dataset of `row` (counting `row`); `None` when it evaluated nothing.
    pub fn count_for(&self, row: &CatalogRow) -> Option<TrialCount> {
        let (dataset, trial) = trial_id(row)?;
        let sr = trial_sharpe(&row.metrics)?;
        Some(self.count(dataset, Some((trial, sr))))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{BuildEntry, Catalog, CatalogStage, HISTORY, append};
    use super::*;

    /// Experiment `id`'s row trying `trial` on `dataset`, with per-bar Sharpe `sr`.
    fn trial_row(id: &str, at: u64, dataset: &str, trial: &str, sr: f64) -> CatalogRow {
        let mut row = CatalogRow::for_test(id, at, &[]);
        for (stage, key) in [("dataset", dataset), ("evaluate", trial)] {
            row.stages.push(CatalogStage {
                id: stage.to_string(),
                key: key.to_string(),
                outputs: BTreeMap::new(),
                wall_ms: 0,
                ran: true,
            });
        }
        row.metrics.insert("deflated_sharpe.sharpe".to_string(), sr);
        row
    }

    #[test]
    fn trials_are_distinct_evaluations_on_one_dataset_over_all_history() {
        let rows = [
            trial_row("a", 1, "d1", "e1", 0.1),
            // `a` rebuilt with another setting: a second trial, though `a` has one row now.
            trial_row("a", 2, "d1", "e2", 0.3),
            // `b` evaluates what `a` first did (a shared key): not a new trial.
            trial_row("b", 3, "d1", "e1", 0.1),
            trial_row("c", 4, "d2", "e3", 0.5),
        ];
        let t = Trials::from_rows(&rows);
        let on_d1 = t.count("d1", None);
        assert_eq!(on_d1.trials, 2);
        assert!((on_d1.sharpe_variance - 0.02).abs() < 1e-15, "{on_d1:?}");
        assert_eq!(
            t.count("d2", None),
            TrialCount {
                trials: 1,
                sharpe_variance: 0.0
            }
        );
        // An evaluation the catalog lacks counts once.
        assert_eq!(t.count("d1", Some(("e9", 0.2))).trials, 3);
        assert_eq!(t.count("d1", Some(("e2", 0.3))).trials, 2);
        assert_eq!(t.count_for(&rows[3]).unwrap().trials, 1);
        assert_eq!(t.count_for(&CatalogRow::for_test("x", 1, &["k"])), None);

        // Loading from the store's file gives the same trials as the full rows.
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        append(&store, &rows, &BuildEntry::for_test(1, 0)).unwrap();
        assert_eq!(Trials::load(&store), t);
    }

    #[test]
    fn rows_before_metrics_version_4_count_by_their_backtest_sharpe() {
        let mut old = trial_row("a", 1, "d", "e1", 0.0);
        old.metrics.remove("deflated_sharpe.sharpe");
        old.metrics
            .insert("backtest.strategy.sharpe".to_string(), 1.5);
        old.metrics
            .insert("backtest.bars_per_year".to_string(), 9.0);
        let rows = [old, trial_row("b", 1, "d", "e2", 0.7)];
        let c = Trials::from_rows(&rows).count("d", None);
        assert_eq!(c.trials, 2);
        // Sharpe ratios 0.5 and 0.7.
        assert!((c.sharpe_variance - 0.02).abs() < 1e-15, "{c:?}");
    }

    #[test]
    fn compaction_keeps_every_trial() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // One experiment rebuilt 30 times, each time a new trial, then without evaluating.
        for at in 0..30 {
            let row = trial_row("a", at, "d", &format!("e{at}"), at as f64 / 1000.0);
            append(&store, &[row], &BuildEntry::for_test(1, 0)).unwrap();
        }
        for at in 30..200 {
            let row = CatalogRow::for_test("a", at, &[]);
            append(&store, &[row], &BuildEntry::for_test(1, 0)).unwrap();
        }
        let c = Catalog::load(&store);
        assert!(c.rows.len() < 200, "compacted to {}", c.rows.len());
        assert_eq!(c.history("a")[0].built_at, 199);
        assert!(c.history("a").len() >= HISTORY + 30);
        assert_eq!(Trials::load(&store).count("d", None).trials, 30);
    }
}
