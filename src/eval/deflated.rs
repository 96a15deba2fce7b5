//! The Deflated Sharpe Ratio (Bailey and López de Prado, 2014) of a strategy: the
//! probability that its true Sharpe ratio is above the best one N trials would show by luck.
//!
//! The evaluate stage cannot know N (its output is a pure function of its key, and trials
//! are other builds), so `metrics.json` holds the figure for one trial together with what
//! deflating it needs ([`DeflatedSharpe`]); `hft compare`, `hft show` and the report deflate
//! it by the trials the catalog has seen on the same dataset ([`deflate`]), without reading
//! predictions again.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::stats::{deflated_sharpe_ratio, moments, sharpe};

/// The derived metric `compare` and the report show: the deflated Sharpe ratio over the
/// catalog's trials on the experiment's dataset (not in `metrics.json`).
pub const DSR_METRIC: &str = "dsr";
/// The trial count [`DSR_METRIC`] was deflated by.
pub const DSR_TRIALS_METRIC: &str = "dsr.trials";

/// `deflated_sharpe` in `metrics.json`: the strategy's deflated Sharpe ratio as one trial
/// (the probabilistic Sharpe ratio against 0) and the figures a deflation by N trials needs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DeflatedSharpe {
    /// Always 1 here: the evaluate stage sees one trial.
    pub trials: usize,
    /// The deflated Sharpe ratio for `trials` trials.
    pub value: f64,
    /// The strategy's per-bar (not annualised) Sharpe ratio.
    pub sharpe: f64,
    /// Bar returns it was measured on.
    pub observations: usize,
    pub skewness: f64,
    /// Not excess: 3 for a normal distribution.
    pub kurtosis: f64,
}

impl DeflatedSharpe {
    /// The one-trial figure of the strategy's bar returns; `None` for fewer than two bars,
    /// constant returns, or moments the normal approximation cannot take.
    pub fn of_returns(bars: &[f64]) -> Option<DeflatedSharpe> {
        let m = moments(bars)?;
        let sr = sharpe(bars, 1.0);
        let value = deflated_sharpe_ratio(sr, bars.len(), m.skewness, m.kurtosis, 1, 0.0)?;
        Some(DeflatedSharpe {
            trials: 1,
            value,
            sharpe: sr,
            observations: bars.len(),
            skewness: m.skewness,
            kurtosis: m.kurtosis,
        })
    }

    /// The figure as flattened metrics hold it (`deflated_sharpe.sharpe`, ...: a catalog
    /// row's metrics, or `metrics.json` through `config::json_leaves`).
    pub fn from_metrics(metrics: &BTreeMap<String, f64>) -> Option<DeflatedSharpe> {
        let get = |k: &str| metrics.get(&format!("deflated_sharpe.{k}")).copied();
        Some(DeflatedSharpe {
            trials: get("trials")? as usize,
            value: get("value")?,
            sharpe: get("sharpe")?,
            observations: get("observations")? as usize,
            skewness: get("skewness")?,
            kurtosis: get("kurtosis")?,
        })
    }

    /// The deflated Sharpe ratio over `trials` trials whose per-bar Sharpe ratios have
    /// variance `sharpe_variance` (this strategy among them). `None` where undefined.
    pub fn deflate(&self, trials: usize, sharpe_variance: f64) -> Option<f64> {
        deflated_sharpe_ratio(
            self.sharpe,
            self.observations,
            self.skewness,
            self.kurtosis,
            trials,
            sharpe_variance,
        )
    }
}

/// The trials of one dataset, as the catalog counts them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TrialCount {
    /// Distinct evaluations on the dataset.
    pub trials: usize,
    /// Sample variance (n - 1) of their per-bar Sharpe ratios; 0 for one trial.
    pub sharpe_variance: f64,
}

/// An experiment's deflated Sharpe ratio, as `compare`, `show` and the report give it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Deflated {
    pub value: f64,
    pub trials: usize,
    pub sharpe_variance: f64,
}

/// The deflated Sharpe ratio of the experiment whose metrics are `metrics`, over `count`;
/// `None` when its metrics have no `deflated_sharpe` (before metrics version 4) or the
/// figure is undefined.
pub fn deflate(metrics: &BTreeMap<String, f64>, count: TrialCount) -> Option<Deflated> {
    let one = DeflatedSharpe::from_metrics(metrics)?;
    Some(Deflated {
        value: one.deflate(count.trials, count.sharpe_variance)?,
        trials: count.trials,
        sharpe_variance: count.sharpe_variance,
    })
}

/// Adds the derived [`DSR_METRIC`] and [`DSR_TRIALS_METRIC`] to flattened metrics, where
/// [`deflate`] is defined.
pub fn insert_deflated(metrics: &mut BTreeMap<String, f64>, count: TrialCount) {
    if let Some(d) = deflate(metrics, count) {
        metrics.insert(DSR_METRIC.to_string(), d.value);
        metrics.insert(DSR_TRIALS_METRIC.to_string(), d.trials as f64);
    }
}

/// The per-bar Sharpe ratio a trial's flattened metrics give: `deflated_sharpe.sharpe`, or
/// for metrics before version 4 the backtest's annualised ratio over
/// sqrt(`backtest.bars_per_year`) (the same number: `stats::sharpe` scales by it).
pub fn trial_sharpe(metrics: &BTreeMap<String, f64>) -> Option<f64> {
    metrics.get("deflated_sharpe.sharpe").copied().or_else(|| {
        let annual = metrics.get("backtest.strategy.sharpe")?;
        let bars = metrics
            .get("backtest.bars_per_year")
            .filter(|b| **b > 0.0)?;
        Some(annual / bars.sqrt())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::stats::probabilistic_sharpe_ratio_of;

    fn bars() -> Vec<f64> {
        (0..120)
            .map(|i| 0.001 + 0.01 * (((i * 37) % 17) as f64 / 17.0 - 0.5))
            .collect()
    }

    fn flattened(d: &DeflatedSharpe) -> BTreeMap<String, f64> {
        let json = serde_json::json!({ "deflated_sharpe": d });
        crate::config::json_leaves(&json, false)
            .into_iter()
            .map(|(k, v)| (k, v.as_f64().unwrap()))
            .collect()
    }

    #[test]
    fn one_trial_is_the_probabilistic_sharpe_and_round_trips_through_metrics() {
        let b = bars();
        let one = DeflatedSharpe::of_returns(&b).unwrap();
        assert_eq!(one.trials, 1);
        assert_eq!(Some(one.value), probabilistic_sharpe_ratio_of(&b, 0.0));
        assert_eq!(one.observations, 120);
        let m = flattened(&one);
        assert_eq!(DeflatedSharpe::from_metrics(&m), Some(one));
        assert_eq!(trial_sharpe(&m), Some(one.sharpe));
        assert_eq!(DeflatedSharpe::of_returns(&[0.0; 10]), None);
    }

    #[test]
    fn more_trials_deflate_more() {
        let one = DeflatedSharpe::of_returns(&bars()).unwrap();
        let m = flattened(&one);
        let at = |trials| {
            deflate(
                &m,
                TrialCount {
                    trials,
                    sharpe_variance: 0.01,
                },
            )
            .unwrap()
            .value
        };
        assert_eq!(at(1), one.value);
        assert!(
            at(2) < at(1) && at(20) < at(2),
            "{} {} {}",
            at(1),
            at(2),
            at(20)
        );
        let mut with = m.clone();
        insert_deflated(
            &mut with,
            TrialCount {
                trials: 20,
                sharpe_variance: 0.01,
            },
        );
        assert_eq!(with[DSR_METRIC], at(20));
        assert_eq!(with[DSR_TRIALS_METRIC], 20.0);
        // Old metrics: nothing to deflate, nothing added.
        let mut old = BTreeMap::from([("price.mse".to_string(), 1.0)]);
        insert_deflated(
            &mut old,
            TrialCount {
                trials: 2,
                sharpe_variance: 0.1,
            },
        );
        assert_eq!(old.len(), 1);
    }

    #[test]
    fn old_metrics_give_the_per_bar_sharpe_from_the_backtest() {
        let m = BTreeMap::from([
            ("backtest.strategy.sharpe".to_string(), 2.0),
            ("backtest.bars_per_year".to_string(), 4.0),
        ]);
        assert_eq!(trial_sharpe(&m), Some(1.0));
        assert_eq!(trial_sharpe(&BTreeMap::new()), None);
    }
}
