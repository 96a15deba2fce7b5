//! The metrics of the `evaluate` stage: forecast errors against the persistence forecast,
//! direction and action accuracy, band calibration, and the backtest of the positions the
//! predictions take. Definitions follow `features.md` ("Trading metrics").

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::backtest::{BacktestStats, portfolio, portfolio_bars, summarize};
use super::baselines::{AlwaysUp, Baselines, Errors, Skill, sign};
use super::deflated::DeflatedSharpe;
use super::uncertainty::{DmTest, Intervals, uncertainty};
use super::{Band, Predictions};
use crate::config::{EvaluationConfig, Signal};
use crate::data::Split;

/// Bumped whenever a metric is added, removed or redefined.
/// 2: `per_symbol` (datasets of two or more symbols).
/// 3: `skill` (against persistence, pooled and per horizon step) and `baselines`
/// (persistence, ridge, always-up).
/// 4: `deflated_sharpe` (the strategy's deflated Sharpe ratio as one trial, with what a
/// deflation by the catalog's trial count needs).
pub const METRICS_VERSION: u32 = 4;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub metrics_version: u32,
    /// Always `test`.
    pub split: String,
    /// Test windows evaluated.
    pub windows: usize,
    pub price: PriceMetrics,
    pub action: ActionMetrics,
    pub backtest: BacktestMetrics,
    /// `1 - price.mse / price.persistence_mse`, pooled and per horizon step.
    #[serde(default)]
    pub skill: Skill,
    /// The baselines on the same windows; absent from metrics before version 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baselines: Option<Baselines>,
    /// Confidence intervals of the headline figures (stationary block bootstrap); absent
    /// from metrics before version 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci: Option<Intervals>,
    /// Diebold-Mariano test of the forecast against persistence; absent where it is
    /// undefined (fewer than two windows, equal losses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dm_test: Option<DmTest>,
    /// Probabilistic Sharpe ratio of the strategy against 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probabilistic_sharpe: Option<f64>,
    /// The deflated Sharpe ratio (Bailey and López de Prado, 2014) as one trial: the
    /// evaluation cannot know how many trials exist, so `hft compare`, `show` and the report
    /// deflate it by the catalog's count of trials on the same dataset. Absent before
    /// version 4, or where it is undefined (constant bar returns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deflated_sharpe: Option<DeflatedSharpe>,
    /// The same metrics over each symbol's test windows alone (the fields above are
    /// pooled over every symbol); empty for a single-symbol dataset.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub per_symbol: BTreeMap<String, Metrics>,
}

/// Forecast errors over all predicted returns r1..rP, in return units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceMetrics {
    pub mse: f64,
    pub mae: f64,
    /// Share of windows where sign(predicted r1) = sign(actual r1), among windows whose
    /// actual r1 is not zero; `None` when there are none.
    pub directional_accuracy: Option<f64>,
    /// The same errors for the persistence forecast (every return predicted as 0).
    pub persistence_mse: f64,
    pub persistence_mae: f64,
    /// For probabilistic models (`dit`): how often the actual returns fall in the band.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub band: Option<BandMetrics>,
}

/// Calibration of a predicted band, over all predicted returns r1..rP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BandMetrics {
    /// The quantile levels of the band's lower and upper edges.
    pub levels: [f64; 2],
    /// Share of actual returns inside `[lower, upper]`; `levels[1] - levels[0]` (0.8) when
    /// the band is calibrated.
    pub coverage: f64,
    /// Mean of `upper - lower`, in return units.
    pub mean_width: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionMetrics {
    /// Share of windows whose argmax action equals the label.
    pub accuracy: f64,
    pub predicted: ClassCounts,
    pub actual: ClassCounts,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassCounts {
    pub buy: usize,
    pub hold: usize,
    pub sell: usize,
}

impl ClassCounts {
    fn add(&mut self, class: u8) {
        match class {
            0 => self.buy += 1,
            1 => self.hold += 1,
            _ => self.sell += 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BacktestMetrics {
    pub signal: Signal,
    pub cost_bps: f64,
    /// Sharpe annualisation factor, from the dataset's bar spacing.
    pub bars_per_year: f64,
    pub strategy: BacktestStats,
    pub buy_and_hold: BacktestStats,
}

/// The ridge baseline's test predictions (`[n, horizon]`, as `Predictions::price`) and
/// the strength chosen on val.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RidgeForecast {
    pub price: Vec<f32>,
    pub lambda: f64,
}

/// All metrics of `preds` (from [`super::predict`] on `split`) against `split`'s targets,
/// with the baselines (`ridge`: its forecast on the same windows, when it was fit).
pub(crate) fn metrics(
    split: &Split,
    preds: &Predictions,
    ridge: Option<&RidgeForecast>,
    ecfg: &EvaluationConfig,
    bars_per_year: f64,
) -> Metrics {
    let p = preds.horizon;
    let n = split.n;
    let model = Errors::of(&preds.price, &split.y, p);
    let zeros = vec![0.0f32; split.y.len()];
    let persistence = Errors::of(&zeros, &split.y, p);
    let ones = vec![1.0f32; split.y.len()];
    let always_up = Errors::of(&ones, &split.y, p);

    let mut correct = 0;
    let (mut predicted, mut actual) = (ClassCounts::default(), ClassCounts::default());
    for i in 0..n {
        let action = preds.action(i);
        correct += usize::from(action == split.action[i]);
        predicted.add(action);
        actual.add(split.action[i]);
    }
    let (positions, r1) = positions_and_returns(split, preds, ecfg.signal);

    let run = |positions: &[f64]| {
        portfolio(
            &split.symbol,
            &split.timestamp,
            positions,
            &r1,
            ecfg.cost_bps,
            bars_per_year,
        )
    };
    let buy_and_hold = run(&vec![1.0; n]);
    // The strategy's bar returns: summarized for the backtest, resampled for its interval.
    let (_, strategy_bars, strategy_trades) = portfolio_bars(
        &split.symbol,
        &split.timestamp,
        &positions,
        &r1,
        ecfg.cost_bps,
    );
    let sure = uncertainty(&preds.price, &split.y, p, &strategy_bars, bars_per_year);
    let mut persistence_figures = persistence.baseline(&persistence, None);
    // Predicting no move is never right about a direction: undefined, not 0.
    persistence_figures.directional_accuracy = None;
    let baselines = Baselines {
        persistence: persistence_figures,
        ridge: ridge
            .map(|r| Errors::of(&r.price, &split.y, p).baseline(&persistence, Some(r.lambda))),
        buy_and_hold: AlwaysUp::new(always_up.directional_accuracy, &buy_and_hold),
    };
    Metrics {
        metrics_version: METRICS_VERSION,
        split: "test".into(),
        windows: n,
        price: PriceMetrics {
            mse: model.mse,
            mae: model.mae,
            directional_accuracy: model.directional_accuracy,
            persistence_mse: persistence.mse,
            persistence_mae: persistence.mae,
            band: preds.band.as_ref().map(|b| band_metrics(b, &split.y)),
        },
        action: ActionMetrics {
            accuracy: correct as f64 / n.max(1) as f64,
            predicted,
            actual,
        },
        backtest: BacktestMetrics {
            signal: ecfg.signal,
            cost_bps: ecfg.cost_bps,
            bars_per_year,
            strategy: summarize(&strategy_bars, bars_per_year, strategy_trades),
            buy_and_hold,
        },
        skill: model.skill(&persistence),
        baselines: Some(baselines),
        ci: Some(sure.ci),
        dm_test: sure.dm_test,
        probabilistic_sharpe: sure.probabilistic_sharpe,
        deflated_sharpe: DeflatedSharpe::of_returns(&strategy_bars),
        per_symbol: BTreeMap::new(),
    }
}

/// Each window's backtest position and its realised next return.
fn positions_and_returns(
    split: &Split,
    preds: &Predictions,
    signal: Signal,
) -> (Vec<f64>, Vec<f64>) {
    let p = preds.horizon;
    (0..split.n)
        .map(|i| {
            let position = position(signal, preds.action(i), preds.price[i * p]);
            (position, f64::from(split.y[i * p]))
        })
        .unzip()
}

/// The strategy's per-bar returns on `split`, the series its backtest summarizes.
pub(crate) fn strategy_bars(
    split: &Split,
    preds: &Predictions,
    ecfg: &EvaluationConfig,
) -> Vec<f64> {
    let (positions, r1) = positions_and_returns(split, preds, ecfg.signal);
    portfolio_bars(
        &split.symbol,
        &split.timestamp,
        &positions,
        &r1,
        ecfg.cost_bps,
    )
    .1
}

/// Coverage and width of `band` against the actual returns `y` (same layout).
fn band_metrics(band: &Band, y: &[f32]) -> BandMetrics {
    let (mut inside, mut width, mut count) = (0usize, 0.0, 0usize);
    for ((lo, hi), actual) in band.lower.iter().zip(&band.upper).zip(y) {
        inside += usize::from(lo <= actual && actual <= hi);
        width += f64::from(hi - lo);
        count += 1;
    }
    let count = count.max(1) as f64;
    BandMetrics {
        levels: band.levels,
        coverage: inside as f64 / count,
        mean_width: width / count,
    }
}

/// The position the backtest takes on a window: long (+1), flat (0) or short (-1), from
/// its predicted action (0 buy, 1 hold, 2 sell) or from the sign of its predicted next-bar
/// return `pred_r1`, as `signal` says. The report's equity curve takes the same.
pub fn position(signal: Signal, action: u8, pred_r1: f32) -> f64 {
    match signal {
        Signal::Action => 1.0 - f64::from(action),
        Signal::Price => sign(pred_r1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn band_coverage_counts_returns_inside_the_band() {
        let band = Band {
            levels: [0.1, 0.9],
            lower: vec![-1.0, 0.0, 0.5, -0.2],
            upper: vec![1.0, 0.1, 0.6, 0.2],
        };
        // Inside, on the lower edge, above, below.
        let m = band_metrics(&band, &[0.0, 0.0, 0.7, -0.3]);
        assert_eq!(m.coverage, 0.5);
        assert!((m.mean_width - (2.0 + 0.1 + 0.1 + 0.4) / 4.0).abs() < 1e-6);
    }

    #[test]
    fn metrics_count_directions_actions_and_errors() {
        let split = Split {
            n: 3,
            x: Default::default(),
            y: vec![0.02, -0.01, 0.0],
            action: vec![0, 2, 1],
            symbol: vec![0; 3],
            timestamp: vec![1, 2, 3],
        };
        let preds = Predictions {
            horizon: 1,
            price: vec![0.01, 0.01, -0.3],
            logits: vec![2.0, 0.0, 0.0, 0.0, 0.0, 2.0, 2.0, 0.0, 0.0],
            band: None,
        };
        let ecfg = EvaluationConfig {
            cost_bps: 0.0,
            signal: Signal::Action,
            walk_forward: None,
        };
        let m = metrics(&split, &preds, None, &ecfg, 252.0);
        assert_eq!(m.price.directional_accuracy, Some(0.5));
        let mse = 0.0001 + 0.0004 + 0.09; // f32 inputs: agree to ~1e-8
        assert!((m.price.mse - mse / 3.0).abs() < 1e-8, "{:?}", m.price);
        assert!((m.action.accuracy - 2.0 / 3.0).abs() < 1e-12);
        let counts = |buy, hold, sell| ClassCounts { buy, hold, sell };
        assert_eq!(m.action.predicted, counts(2, 0, 1));
        assert_eq!(m.action.actual, counts(1, 1, 1));
        // Positions +1, -1, +1 earn 2%, 1%, 0.
        let strategy = &m.backtest.strategy;
        assert!((strategy.total_return - (1.02 * 1.01 - 1.0)).abs() < 1e-7);
        assert_eq!(strategy.trades, 3);
        let by_price = metrics(
            &split,
            &preds,
            None,
            &EvaluationConfig {
                signal: Signal::Price,
                ..ecfg
            },
            252.0,
        );
        // Positions +1, +1, -1 earn 2%, -1%, 0.
        let total = by_price.backtest.strategy.total_return;
        assert!((total - (1.02 * 0.99 - 1.0)).abs() < 1e-7);
    }
}
