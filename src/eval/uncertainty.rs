//! How sure the headline figures are: bootstrap confidence intervals of the strategy's
//! Sharpe ratio, the forecast's skill and its directional accuracy, the probabilistic Sharpe
//! ratio, and a Diebold-Mariano test of the forecast against persistence. Separate from
//! `metrics.rs` (the point figures) and built on `stats` (the statistics themselves).
//!
//! Deterministic: the bootstrap is seeded with [`BOOTSTRAP_SEED`] and runs on one thread, so
//! the same predictions give the same intervals, bit for bit (they are in `metrics.json`,
//! which is a stage output).

use serde::{Deserialize, Serialize};

use super::baselines::sign;
use super::stats::{
    default_mean_block, diebold_mariano, probabilistic_sharpe_ratio_of, sharpe,
    stationary_bootstrap_ci, stationary_bootstrap_ci_indices,
};

/// The confidence level of every interval.
pub const CI_LEVEL: f64 = 0.9;
/// Bootstrap resamples per interval.
pub const RESAMPLES: usize = 1000;
/// The bootstrap's seed: fixed, so that intervals are a pure function of the predictions.
pub const BOOTSTRAP_SEED: u64 = 0x005e_edc1;

/// A confidence interval; absent when the figure is undefined on the sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub lower: f64,
    pub upper: f64,
}

/// `ci` in `metrics.json`: stationary block bootstrap intervals (Politis and Romano, 1994),
/// mean block length `n^(1/3)`, percentile method.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Intervals {
    pub level: f64,
    pub resamples: usize,
    /// Of `backtest.strategy.sharpe`, resampling the strategy's bar returns.
    pub sharpe: Option<Interval>,
    /// Of `skill.pooled`, resampling test windows (model and persistence errors together).
    pub skill: Option<Interval>,
    /// Of `price.directional_accuracy`, resampling test windows.
    pub directional_accuracy: Option<Interval>,
}

/// `dm_test` in `metrics.json`: Diebold-Mariano (1995) with the Harvey, Leybourne and
/// Newbold (1997) correction, the model's squared error against persistence's per window
/// (mean over the horizon), HAC variance with `horizon - 1` lags. A negative statistic
/// means the model's loss is lower; `p_value` is two-sided.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DmTest {
    pub statistic: f64,
    pub p_value: f64,
}

/// The uncertainty of one evaluation.
pub(crate) struct Uncertainty {
    pub ci: Intervals,
    pub dm_test: Option<DmTest>,
    /// Probability that the strategy's true (per-bar) Sharpe ratio is above 0 (Bailey and
    /// López de Prado, 2012), given its skewness and kurtosis.
    pub probabilistic_sharpe: Option<f64>,
}

/// The uncertainty of a forecast `pred` of returns `y` (both `[window][horizon]` flattened,
/// horizon `p`) and of the strategy bar returns `bars`.
pub(crate) fn uncertainty(
    pred: &[f32],
    y: &[f32],
    p: usize,
    bars: &[f64],
    bars_per_year: f64,
) -> Uncertainty {
    let p = p.max(1);
    let windows = y.len() / p;
    // Per window: the model's and persistence's summed squared errors, and whether r1's
    // direction was right (None where the actual r1 is 0).
    let mut model_se = Vec::with_capacity(windows);
    let mut persistence_se = Vec::with_capacity(windows);
    let mut direction = Vec::with_capacity(windows);
    for (pw, yw) in pred.chunks(p).zip(y.chunks(p)).take(windows) {
        let (mut m, mut z) = (0.0, 0.0);
        for (&a, &b) in pw.iter().zip(yw) {
            let (a, b) = (f64::from(a), f64::from(b));
            m += (a - b) * (a - b);
            z += b * b;
        }
        model_se.push(m);
        persistence_se.push(z);
        direction.push((yw[0] != 0.0).then(|| sign(pw[0]) == sign(yw[0])));
    }
    let skill_of = |idx: &[usize]| {
        let (m, z) = idx.iter().fold((0.0, 0.0), |(m, z), &i| {
            (m + model_se[i], z + persistence_se[i])
        });
        if z > 0.0 { 1.0 - m / z } else { f64::NAN }
    };
    let accuracy_of = |idx: &[usize]| {
        let (moved, right) = idx
            .iter()
            .filter_map(|&i| direction[i])
            .fold((0usize, 0usize), |(n, r), ok| (n + 1, r + usize::from(ok)));
        if moved == 0 {
            f64::NAN
        } else {
            right as f64 / moved as f64
        }
    };
    let block = default_mean_block(windows);
    let interval = |ci: Option<(f64, f64)>| ci.map(|(lower, upper)| Interval { lower, upper });
    let ci = Intervals {
        level: CI_LEVEL,
        resamples: RESAMPLES,
        sharpe: interval(stationary_bootstrap_ci(
            bars,
            |r| sharpe(r, bars_per_year),
            CI_LEVEL,
            RESAMPLES,
            default_mean_block(bars.len()),
            BOOTSTRAP_SEED,
        )),
        skill: interval(stationary_bootstrap_ci_indices(
            windows,
            skill_of,
            CI_LEVEL,
            RESAMPLES,
            block,
            BOOTSTRAP_SEED,
        )),
        directional_accuracy: interval(stationary_bootstrap_ci_indices(
            windows,
            accuracy_of,
            CI_LEVEL,
            RESAMPLES,
            block,
            BOOTSTRAP_SEED,
        )),
    };
    let per_step = |se: &[f64]| se.iter().map(|s| s / p as f64).collect::<Vec<_>>();
    let dm_test =
        diebold_mariano(&per_step(&model_se), &per_step(&persistence_se), p).map(|t| DmTest {
            statistic: t.statistic,
            p_value: t.p_value,
        });
    Uncertainty {
        ci,
        dm_test,
        probabilistic_sharpe: probabilistic_sharpe_ratio_of(bars, 0.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Returns with a planted AR(1) so forecasts have something to get right.
    fn series(n: usize, p: usize) -> Vec<f32> {
        let mut x = 0.1f64;
        (0..n * p)
            .map(|i| {
                x = 0.5 * x + ((i * 7919 % 1000) as f64 / 1000.0 - 0.5) * 0.02;
                x as f32
            })
            .collect()
    }

    #[test]
    fn a_perfect_forecast_has_skill_one_and_beats_persistence() {
        let y = series(200, 2);
        let bars: Vec<f64> = y.iter().step_by(2).map(|&r| f64::from(r).abs()).collect();
        let u = uncertainty(&y, &y, 2, &bars, 252.0);
        let skill = u.ci.skill.unwrap();
        assert_eq!((skill.lower, skill.upper), (1.0, 1.0));
        let acc = u.ci.directional_accuracy.unwrap();
        assert_eq!((acc.lower, acc.upper), (1.0, 1.0));
        let dm = u.dm_test.unwrap();
        assert!(dm.statistic < 0.0 && dm.p_value < 0.01, "{dm:?}");
        // Every bar gained: the strategy's Sharpe is surely above 0.
        assert!(u.probabilistic_sharpe.unwrap() > 0.99);
    }

    #[test]
    fn persistence_itself_has_no_skill_and_no_dm_difference() {
        let y = series(100, 1);
        let zeros = vec![0.0f32; y.len()];
        let bars: Vec<f64> = y.iter().map(|&r| f64::from(r)).collect();
        let u = uncertainty(&zeros, &y, 1, &bars, 252.0);
        let skill = u.ci.skill.unwrap();
        assert_eq!((skill.lower, skill.upper), (0.0, 0.0));
        // Zero loss differential: no variance, no test.
        assert!(u.dm_test.is_none());
        // A forecast of no move is never right about a direction.
        let acc = u.ci.directional_accuracy.unwrap();
        assert_eq!((acc.lower, acc.upper), (0.0, 0.0));
    }

    #[test]
    fn intervals_are_deterministic_and_contain_the_point_figure() {
        let y = series(300, 1);
        let noisy: Vec<f32> = y
            .iter()
            .enumerate()
            .map(|(i, &r)| r + if i % 3 == 0 { 0.01 } else { -0.004 })
            .collect();
        let bars: Vec<f64> = y.iter().map(|&r| f64::from(r)).collect();
        let a = uncertainty(&noisy, &y, 1, &bars, 252.0);
        let b = uncertainty(&noisy, &y, 1, &bars, 252.0);
        assert_eq!(a.ci, b.ci);
        let point = sharpe(&bars, 252.0);
        let s = a.ci.sharpe.unwrap();
        assert!(s.lower <= point && point <= s.upper, "{s:?} vs {point}");
        assert!(s.lower < s.upper);
    }
}
