//! Walk-forward evaluation: every fold's model scored on its own test windows, and the
//! out-of-sample figures of all folds' test predictions together (the headline figures of an
//! experiment with `evaluation.walk_forward`).
//!
//! Each fold keeps its own baselines: persistence, and the ridge forecast fit on that fold's
//! train split (strength chosen on its val split), so the pooled ridge figures are those of
//! a ridge refit fold by fold, like the model.

use serde::Serialize;

use super::metrics::{metrics, strategy_bars};
use super::{
    Band, EvalError, Metrics, Predictions, RidgeForecast, bars_per_year, check_test, fit_ridge,
    predict, predictions_csv, score,
};
use crate::config::{EvaluationConfig, ModelConfig};
use crate::data::{Dataset, Split};

/// One fold to score: its dataset and its trained checkpoint.
pub struct FoldInput<'a> {
    pub index: usize,
    pub dataset: &'a Dataset,
    pub checkpoint: &'a [u8],
}

/// One fold's results, as the `folds` output of the `walk_forward` stage holds them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FoldResult {
    pub index: usize,
    /// First and last window-end timestamps (Unix seconds) of its train split.
    pub train: [i64; 2],
    /// First and last window-end timestamps of its test windows.
    pub test: [i64; 2],
    /// Train, val and test windows.
    pub windows: [usize; 3],
    /// Its test windows' metrics (no per-symbol breakdown).
    pub metrics: Metrics,
    /// The strategy's per-bar returns on its test windows, in time order (what the
    /// Probability of Backtest Overfitting resamples).
    pub strategy_returns: Vec<f64>,
}

pub struct WalkForwardOutput {
    /// Over every fold's test windows together, pooled and per symbol.
    pub metrics: Metrics,
    pub folds: Vec<FoldResult>,
    /// [`predictions_csv`] of every fold's test windows, in fold order.
    pub predictions: Vec<u8>,
}

/// Scores every fold, then all folds' test predictions together. The folds must share
/// their symbols (they come from one experiment's feature tables).
pub fn walk_forward(
    folds: &[FoldInput],
    model_cfg: &ModelConfig,
    ecfg: &EvaluationConfig,
) -> Result<WalkForwardOutput, EvalError> {
    let first = folds
        .first()
        .ok_or_else(|| EvalError::Config("walk-forward has no folds to evaluate".into()))?;
    let mut merged = Merged::default();
    let mut results = Vec::with_capacity(folds.len());
    for fold in folds {
        let d = fold.dataset;
        if d.symbols != first.dataset.symbols {
            return Err(EvalError::Config(format!(
                "walk-forward fold {} has symbols {:?}, fold {} {:?}",
                fold.index, d.symbols, first.index, first.dataset.symbols
            )));
        }
        check_test(d, ecfg)?;
        let preds = predict(d, model_cfg, fold.checkpoint, &d.test)?;
        let ridge = fit_ridge(d, preds.horizon);
        let bpy = bars_per_year(d.bar_seconds);
        let span = |s: &Split| match (s.timestamp.iter().min(), s.timestamp.iter().max()) {
            (Some(&a), Some(&b)) => [a, b],
            _ => [0, 0],
        };
        results.push(FoldResult {
            index: fold.index,
            train: span(&d.train),
            test: span(&d.test),
            windows: [d.train.n, d.val.n, d.test.n],
            metrics: metrics(&d.test, &preds, ridge.as_ref(), ecfg, bpy),
            strategy_returns: strategy_bars(&d.test, &preds, ecfg),
        });
        merged.push(&d.test, &preds, ridge.as_ref());
    }
    // The latest fold's bar spacing annualises the pooled figures (every fold's is the
    // median spacing of its own rows, equal for regular bars).
    let last = folds.last().map_or(first.dataset, |f| f.dataset);
    let bpy = bars_per_year(last.bar_seconds);
    let ridge = merged
        .ridge
        .take()
        .filter(|r| r.price.len() == merged.preds.price.len());
    let pooled = score(
        &first.dataset.symbols,
        &merged.split,
        &merged.preds,
        ridge.as_ref(),
        ecfg,
        bpy,
    );
    Ok(WalkForwardOutput {
        metrics: pooled,
        predictions: predictions_csv(first.dataset, &merged.split, &merged.preds),
        folds: results,
    })
}

/// Every fold's test windows and forecasts, concatenated.
#[derive(Default)]
struct Merged {
    split: Split,
    preds: Predictions,
    /// The folds' ridge forecasts; `lambda` is the latest fold's.
    ridge: Option<RidgeForecast>,
    /// Some fold had no ridge fit: the pooled ridge figures are left out.
    ridge_missing: bool,
}

impl Merged {
    fn push(&mut self, test: &Split, preds: &Predictions, ridge: Option<&RidgeForecast>) {
        let s = &mut self.split;
        s.n += test.n;
        s.y.extend_from_slice(&test.y);
        s.action.extend_from_slice(&test.action);
        s.symbol.extend_from_slice(&test.symbol);
        s.timestamp.extend_from_slice(&test.timestamp);
        let p = &mut self.preds;
        p.horizon = preds.horizon;
        p.price.extend_from_slice(&preds.price);
        p.logits.extend_from_slice(&preds.logits);
        if let Some(b) = &preds.band {
            let band = p.band.get_or_insert_with(|| Band {
                levels: b.levels,
                lower: Vec::new(),
                upper: Vec::new(),
            });
            band.lower.extend_from_slice(&b.lower);
            band.upper.extend_from_slice(&b.upper);
        }
        match ridge {
            Some(r) if !self.ridge_missing => {
                let merged = self.ridge.get_or_insert_with(|| RidgeForecast {
                    price: Vec::new(),
                    lambda: r.lambda,
                });
                merged.price.extend_from_slice(&r.price);
                merged.lambda = r.lambda;
            }
            _ => {
                self.ridge_missing = true;
                self.ridge = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::cfg;
    use crate::train::tests::{opt, run, tcfg, toy_dataset};

    #[test]
    fn pooled_figures_are_the_folds_test_windows_together() {
        let model_cfg = cfg("mlp");
        let datasets = [toy_dataset([32, 8, 12], 3), toy_dataset([40, 8, 10], 4)];
        let checkpoints: Vec<Vec<u8>> = datasets
            .iter()
            .map(|d| {
                run(d, &model_cfg, &opt(1e-2), &tcfg(1, 8), 1)
                    .unwrap()
                    .checkpoint
            })
            .collect();
        let inputs: Vec<FoldInput> = datasets
            .iter()
            .zip(&checkpoints)
            .enumerate()
            .map(|(index, (dataset, c))| FoldInput {
                index,
                dataset,
                checkpoint: c,
            })
            .collect();
        let ecfg = EvaluationConfig::default();
        let out = walk_forward(&inputs, &model_cfg, &ecfg).unwrap();
        assert_eq!(out.folds.len(), 2);
        assert_eq!(out.metrics.windows, 12 + 10);
        // Each fold alone is what `evaluate` reports for it (without per-symbol figures).
        for (fold, input) in out.folds.iter().zip(&inputs) {
            let alone = super::super::evaluate(input.dataset, &model_cfg, input.checkpoint, &ecfg)
                .unwrap()
                .metrics;
            let mut expected = alone;
            expected.per_symbol.clear();
            assert_eq!(fold.metrics, expected);
            assert_eq!(
                fold.windows,
                [
                    input.dataset.train.n,
                    input.dataset.val.n,
                    input.dataset.test.n
                ]
            );
            assert!(!fold.strategy_returns.is_empty());
        }
        // Pooled squared errors are the windows' average over both folds.
        let m = |i: usize| &out.folds[i].metrics;
        let pooled_mse = (m(0).price.mse * 12.0 + m(1).price.mse * 10.0) / 22.0;
        assert!((out.metrics.price.mse - pooled_mse).abs() < 1e-9);
        let persistence =
            (m(0).price.persistence_mse * 12.0 + m(1).price.persistence_mse * 10.0) / 22.0;
        assert!((out.metrics.price.persistence_mse - persistence).abs() < 1e-12);
        let skill = out.metrics.skill.pooled.unwrap();
        assert!(
            (skill - (1.0 - out.metrics.price.mse / out.metrics.price.persistence_mse)).abs()
                < 1e-12
        );
        // The CSV lists every fold's test windows, in fold order.
        let text = String::from_utf8(out.predictions).unwrap();
        assert_eq!(text.lines().count(), 1 + 22);
        assert!(walk_forward(&[], &model_cfg, &ecfg).is_err());
    }
}
