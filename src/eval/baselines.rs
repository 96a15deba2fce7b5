//! Skill and the baselines of the `evaluate` stage: how the model's forecast errors compare
//! with the persistence forecast (zero future return), the always-up position and the
//! ridge baseline ([`super::ridge`]) on the same test windows. Separate from `metrics.rs`,
//! which holds the model's own figures.

use serde::{Deserialize, Serialize};

use super::backtest::BacktestStats;

/// `1 - MSE / persistence MSE`: above 0 the forecast beats predicting no move, below 0 it
/// is worse than that. `None` where the persistence MSE is 0 (every actual return 0).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Skill {
    /// Over all predicted returns r1..rP.
    pub pooled: Option<f64>,
    /// Per horizon step r1..rP.
    pub per_horizon: Vec<Option<f64>>,
}

/// The baselines' figures on the test windows the model is scored on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baselines {
    /// Every future return predicted as 0: skill 0 by definition; it predicts no direction.
    pub persistence: ForecastBaseline,
    /// Ridge regression on the flattened window; `None` when it could not be fit (no
    /// train windows).
    pub ridge: Option<ForecastBaseline>,
    /// Always long (predicts every r1 up).
    pub buy_and_hold: AlwaysUp,
}

/// A return forecast's errors and skill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForecastBaseline {
    pub mse: f64,
    pub mae: f64,
    /// As [`super::PriceMetrics::directional_accuracy`].
    pub directional_accuracy: Option<f64>,
    pub skill: Skill,
    /// The ridge strength chosen on the val split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda: Option<f64>,
}

/// The always-up position: its direction accuracy (the share of windows whose actual r1
/// rose, among those that moved) and its backtest (as `backtest.buy_and_hold`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlwaysUp {
    pub directional_accuracy: Option<f64>,
    pub total_return: f64,
    pub sharpe: f64,
    pub max_drawdown: f64,
}

impl AlwaysUp {
    pub(crate) fn new(directional_accuracy: Option<f64>, stats: &BacktestStats) -> Self {
        AlwaysUp {
            directional_accuracy,
            total_return: stats.total_return,
            sharpe: stats.sharpe,
            max_drawdown: stats.max_drawdown,
        }
    }
}

/// Forecast errors of `pred` against `y` (both `[n, p]`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Errors {
    pub mse: f64,
    pub mae: f64,
    pub directional_accuracy: Option<f64>,
    /// Squared error summed per horizon step.
    pub se_per_horizon: Vec<f64>,
    pub windows: usize,
}

impl Errors {
    pub(crate) fn of(pred: &[f32], y: &[f32], p: usize) -> Self {
        let p = p.max(1);
        let (mut se, mut ae) = (0.0, 0.0);
        let mut se_per_horizon = vec![0.0; p];
        for (i, (&pred, &actual)) in pred.iter().zip(y).enumerate() {
            let err = f64::from(pred) - f64::from(actual);
            se += err * err;
            ae += err.abs();
            se_per_horizon[i % p] += err * err;
        }
        let (mut moved, mut right_way) = (0usize, 0usize);
        for (pred, real) in pred.chunks(p).zip(y.chunks(p)) {
            if real[0] != 0.0 {
                moved += 1;
                right_way += usize::from(sign(pred[0]) == sign(real[0]));
            }
        }
        let values = y.len().max(1) as f64;
        Errors {
            mse: se / values,
            mae: ae / values,
            directional_accuracy: (moved > 0).then(|| right_way as f64 / moved as f64),
            se_per_horizon,
            windows: y.len() / p,
        }
    }

    /// Skill of these errors against `persistence`'s (the same windows).
    pub(crate) fn skill(&self, persistence: &Errors) -> Skill {
        let ratio = |a: f64, b: f64| (b > 0.0).then(|| 1.0 - a / b);
        Skill {
            pooled: ratio(self.mse, persistence.mse),
            per_horizon: self
                .se_per_horizon
                .iter()
                .zip(&persistence.se_per_horizon)
                .map(|(a, b)| ratio(*a, *b))
                .collect(),
        }
    }

    pub(crate) fn baseline(&self, persistence: &Errors, lambda: Option<f64>) -> ForecastBaseline {
        ForecastBaseline {
            mse: self.mse,
            mae: self.mae,
            directional_accuracy: self.directional_accuracy,
            skill: self.skill(persistence),
            lambda,
        }
    }
}

pub(crate) fn sign(v: f32) -> f64 {
    if v > 0.0 {
        1.0
    } else if v < 0.0 {
        -1.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persistence_has_no_skill_and_a_perfect_forecast_has_skill_one() {
        let y = [0.02f32, -0.01, 0.03, 0.0, -0.02, 0.01];
        let persistence = Errors::of(&[0.0; 6], &y, 2);
        let zero = persistence.skill(&persistence);
        assert_eq!(zero.pooled, Some(0.0));
        assert_eq!(zero.per_horizon, vec![Some(0.0); 2]);
        let perfect = Errors::of(&y, &y, 2).skill(&persistence);
        assert_eq!(perfect.pooled, Some(1.0));
        assert_eq!(perfect.per_horizon, vec![Some(1.0); 2]);
        // Twice the actual return: errors equal to persistence's, skill 0; three times: -3.
        let doubled: Vec<f32> = y.iter().map(|v| 2.0 * v).collect();
        let s = Errors::of(&doubled, &y, 2)
            .skill(&persistence)
            .pooled
            .unwrap();
        assert!(s.abs() < 1e-12, "{s}");
        let tripled: Vec<f32> = y.iter().map(|v| 3.0 * v).collect();
        let s = Errors::of(&tripled, &y, 2)
            .skill(&persistence)
            .pooled
            .unwrap();
        assert!((s + 3.0).abs() < 1e-6, "{s}");
        // Persistence predicts no direction; all-zero actuals give no skill at all.
        assert_eq!(persistence.directional_accuracy, Some(0.0));
        let flat = Errors::of(&[0.0; 2], &[0.0; 2], 1);
        assert_eq!(
            Errors::of(&[1.0; 2], &[0.0; 2], 1).skill(&flat).pooled,
            None
        );
    }
}
