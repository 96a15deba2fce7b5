//! The probability of backtest overfitting of a sweep (`hft compare --pbo`, the report's
//! section): each experiment's walk-forward folds, read from the `folds` blob of its
//! `walk_forward` stage, aligned on the folds every experiment has, and split by CSCV
//! ([`super::stats::pbo_cscv`]): the experiments are the trials, the folds the blocks.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::stats::{Pbo, block_groups, pbo_cscv};

/// The stage whose `folds` output holds an experiment's walk-forward fold returns.
pub const WALK_FORWARD_STAGE: &str = "walk_forward";
/// The output of [`WALK_FORWARD_STAGE`] read here.
pub const FOLDS_OUTPUT: &str = "folds";
/// What to tell a user whose experiments have no folds.
pub const NEEDS_FOLDS: &str = "PBO needs walk-forward folds: set evaluation.walk_forward";

/// The part of the `folds` blob PBO reads; every other field is ignored.
#[derive(Deserialize)]
struct FoldsDoc {
    folds: Vec<FoldDoc>,
}

#[derive(Deserialize)]
struct FoldDoc {
    index: usize,
    strategy_returns: Vec<f64>,
}

/// A `folds` blob's strategy returns by fold index (the JSON document
/// `{"folds": [{"index": 0, "strategy_returns": [...], ...}, ...]}`).
pub fn parse_fold_returns(bytes: &[u8]) -> Result<BTreeMap<usize, Vec<f64>>, String> {
    let doc: FoldsDoc = serde_json::from_slice(bytes).map_err(|e| format!("folds: {e}"))?;
    let mut out = BTreeMap::new();
    for f in doc.folds {
        if out.insert(f.index, f.strategy_returns).is_some() {
            return Err(format!("folds: fold {} listed twice", f.index));
        }
    }
    Ok(out)
}

/// The PBO of a sweep, with what it was computed over.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepPbo {
    pub pbo: f64,
    /// Experiments (trials).
    pub trials: usize,
    /// The fold indices every experiment has, in order: the blocks before CSCV's
    /// preparation (an odd count drops the first; more than 16 are grouped).
    pub folds: Vec<usize>,
    /// Folds some experiment lacks, left out.
    pub dropped_folds: Vec<usize>,
    /// Blocks CSCV split, after that preparation.
    pub blocks: usize,
    pub combinations: usize,
    pub degradation_slope: Option<f64>,
    pub probability_of_loss: f64,
    pub logits: Vec<f64>,
}

/// PBO over `trials` (each experiment's returns by fold index): only the folds common to
/// all take part. An error says why it cannot be computed (fewer than two trials, or too
/// few common folds).
pub fn sweep_pbo(trials: &[BTreeMap<usize, Vec<f64>>]) -> Result<SweepPbo, String> {
    if trials.len() < 2 {
        return Err(format!(
            "PBO needs at least two experiments with walk-forward folds (found {})",
            trials.len()
        ));
    }
    let all: BTreeSet<usize> = trials.iter().flat_map(|t| t.keys().copied()).collect();
    let common: Vec<usize> = all
        .iter()
        .copied()
        .filter(|i| trials.iter().all(|t| t.contains_key(i)))
        .collect();
    let dropped: Vec<usize> = all
        .difference(&common.iter().copied().collect())
        .copied()
        .collect();
    if block_groups(common.len()).len() < 2 {
        return Err(format!(
            "PBO needs at least two folds common to every experiment (found {})",
            common.len()
        ));
    }
    let matrix: Vec<Vec<Vec<f64>>> = trials
        .iter()
        .map(|t| common.iter().map(|i| t[i].clone()).collect())
        .collect();
    let Pbo {
        pbo,
        trials,
        blocks,
        combinations,
        logits,
        degradation_slope,
        probability_of_loss,
    } = pbo_cscv(&matrix).ok_or("PBO is undefined on these folds (a return is not finite)")?;
    Ok(SweepPbo {
        pbo,
        trials,
        folds: common,
        dropped_folds: dropped,
        blocks,
        combinations,
        degradation_slope,
        probability_of_loss,
        logits,
    })
}

impl SweepPbo {
    /// One sentence for a terminal or the report.
    pub fn sentence(&self) -> String {
        let slope = self
            .degradation_slope
            .map(|s| format!("; out-of-sample Sharpe against in-sample slope {s:.2}"))
            .unwrap_or_default();
        format!(
            "PBO {:.2} over {} trials, {} folds, {} combinations (CSCV); the in-sample best \
             lost out of sample in {:.0}% of them{slope}",
            self.pbo,
            self.trials,
            self.blocks,
            self.combinations,
            100.0 * self.probability_of_loss,
        )
    }

    /// Which folds were left out or merged, when any were; `None` otherwise.
    pub fn fold_note(&self) -> Option<String> {
        let mut notes = Vec::new();
        if !self.dropped_folds.is_empty() {
            notes.push(format!(
                "folds {:?} are not in every experiment and were left out",
                self.dropped_folds
            ));
        }
        if self.blocks != self.folds.len() {
            notes.push(format!(
                "{} common folds made {} blocks (an odd count drops the first fold, more than \
                 16 are grouped)",
                self.folds.len(),
                self.blocks
            ));
        }
        (!notes.is_empty()).then(|| notes.join("; "))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A `folds` blob of `fold -> returns`, with a field PBO does not read.
    pub(crate) fn blob(folds: &[(usize, Vec<f64>)]) -> Vec<u8> {
        let folds: Vec<_> = folds
            .iter()
            .map(|(i, r)| serde_json::json!({"index": i, "strategy_returns": r, "test_rows": [0, 1]}))
            .collect();
        serde_json::to_vec(&serde_json::json!({ "folds": folds, "window": "expanding" })).unwrap()
    }

    /// Returns of trial `t` on fold `f`: uniform noise (sd 0.0029, from a splitmix64 hash
    /// of trial, fold and bar), plus `edge` a bar for trial 0.
    pub(crate) fn returns(t: usize, f: usize, edge: f64) -> Vec<f64> {
        (0..20u64)
            .map(|i| {
                let mut z =
                    ((t as u64) << 40 | (f as u64) << 20 | i).wrapping_add(0x9e37_79b9_7f4a_7c15);
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                z ^= z >> 31;
                let x = (z >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
                0.01 * x + if t == 0 { edge } else { 0.0 }
            })
            .collect()
    }

    fn sweep(trials: usize, folds: usize, edge: f64) -> Vec<BTreeMap<usize, Vec<f64>>> {
        (0..trials)
            .map(|t| {
                let b = blob(
                    &(0..folds)
                        .map(|f| (f, returns(t, f, edge)))
                        .collect::<Vec<_>>(),
                );
                parse_fold_returns(&b).unwrap()
            })
            .collect()
    }

    #[test]
    fn folds_blobs_parse_to_returns_by_index() {
        let b = blob(&[(1, vec![0.5]), (0, vec![0.1, -0.2])]);
        let folds = parse_fold_returns(&b).unwrap();
        assert_eq!(folds[&0], vec![0.1, -0.2]);
        assert_eq!(folds.keys().copied().collect::<Vec<_>>(), vec![0, 1]);
        let twice = blob(&[(1, vec![0.5]), (1, vec![0.1])]);
        assert!(
            parse_fold_returns(&twice)
                .unwrap_err()
                .contains("fold 1 listed twice")
        );
        let err = parse_fold_returns(br#"{"folds": [{"index": 0}]}"#).unwrap_err();
        assert!(err.contains("strategy_returns"), "{err}");
    }

    #[test]
    fn a_skilled_trial_has_low_pbo_and_noise_does_not() {
        let skilled = sweep_pbo(&sweep(6, 8, 0.004)).unwrap();
        assert_eq!(
            (skilled.trials, skilled.blocks, skilled.combinations),
            (6, 8, 70)
        );
        assert!(skilled.pbo < 0.05, "{skilled:?}");
        assert_eq!(skilled.fold_note(), None);
        // Without the edge the selection is luck (this draw: 0.2; the scipy-checked
        // no-skill case of `stats::pbo` is 0.47).
        let noise = sweep_pbo(&sweep(6, 8, 0.0)).unwrap();
        assert!(
            noise.pbo >= 0.15 && noise.pbo > skilled.pbo + 0.1,
            "{noise:?}"
        );
        assert!(
            skilled.sentence().starts_with("PBO 0.0"),
            "{}",
            skilled.sentence()
        );
        assert!(
            skilled
                .sentence()
                .contains("6 trials, 8 folds, 70 combinations")
        );
    }

    #[test]
    fn only_common_folds_count_and_too_few_is_an_error() {
        let mut trials = sweep(3, 6, 0.0);
        trials[1].remove(&5);
        trials[2].insert(9, vec![0.1, 0.2]);
        let p = sweep_pbo(&trials).unwrap();
        assert_eq!(p.folds, vec![0, 1, 2, 3, 4]);
        assert_eq!(p.dropped_folds, vec![5, 9]);
        // Five common folds: the first is dropped, four blocks remain.
        assert_eq!((p.blocks, p.combinations), (4, 6));
        let note = p.fold_note().unwrap();
        assert!(
            note.contains("[5, 9]") && note.contains("5 common folds made 4"),
            "{note}"
        );
        assert!(
            sweep_pbo(&trials[..1])
                .unwrap_err()
                .contains("at least two experiments")
        );
        let few = sweep(2, 1, 0.0);
        assert!(sweep_pbo(&few).unwrap_err().contains("two folds common"));
    }
}
