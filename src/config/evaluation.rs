//! `evaluation`: the backtest settings the evaluate stage reads, and the walk-forward folds
//! (`evaluation.walk_forward`) the fold stages read.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::options::{Invalid, fail};

/// Which head drives the backtest position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// argmax of the action head: buy +1, hold 0, sell -1.
    Action,
    /// sign of the predicted next return.
    Price,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvaluationConfig {
    /// Cost per unit of position change, in basis points. Default 5.
    pub cost_bps: f64,
    /// Default `action`.
    pub signal: Signal,
    /// Walk-forward evaluation: train and test on successive time folds (the `fold_*` and
    /// `walk_forward` stages). Default: off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub walk_forward: Option<WalkForwardConfig>,
}

impl Default for EvaluationConfig {
    fn default() -> Self {
        EvaluationConfig {
            cost_bps: 5.0,
            signal: Signal::Action,
            walk_forward: None,
        }
    }
}

/// How a walk-forward fold's training rows grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WindowKind {
    /// Every fold trains on everything before its test rows.
    #[default]
    Expanding,
    /// Every fold trains on the `train_bars` bars before its test rows.
    Rolling,
}

/// `evaluation.walk_forward`: fold `k` (from 0) trains on the bars before
/// `train_bars + k * step` (all of them, or the last `train_bars` when `rolling`), the last
/// `val_bars` of which validate; it tests on the `test_bars` windows ending from `embargo`
/// bars after that. Bars are counted on the timeline of all symbols (after the features'
/// warm-up); the layout is in `data::dataset::folds`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalkForwardConfig {
    /// Keep only the latest this many folds. Default: every fold the data holds, so
    /// appending bars adds folds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folds: Option<usize>,
    /// `expanding` (default) or `rolling`.
    #[serde(default)]
    pub window: WindowKind,
    /// Bars before the first fold's test (expanding), or in every fold's training rows
    /// (rolling), validation included.
    pub train_bars: usize,
    /// The last bars of each fold's training rows that validate it (early stopping,
    /// `training.select`). Default: `test_bars`; 0 trains without validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_bars: Option<usize>,
    /// Test windows per fold.
    pub test_bars: usize,
    /// Bars from one fold to the next. Default: `test_bars`, so the folds' test windows tile
    /// the timeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<usize>,
    /// Bars left out between a fold's training rows and its first test window (on top of
    /// the purge of the label horizon). Default 0.
    #[serde(default)]
    pub embargo: usize,
}

/// Bounds that keep fold arithmetic far from overflow.
const MAX_BARS: usize = 1 << 32;

impl WalkForwardConfig {
    pub fn val_bars(&self) -> usize {
        self.val_bars.unwrap_or(self.test_bars)
    }

    pub fn step(&self) -> usize {
        self.step.unwrap_or(self.test_bars)
    }

    /// Range checks; `window_rows` is `sequence_length + prediction_horizon`, the rows one
    /// window with its labels spans.
    pub fn validate(&self, window_rows: usize) -> Result<(), Invalid> {
        let key = |k: &str| format!("evaluation.walk_forward.{k}");
        let bars = |k: &str, v: usize, min: usize| -> Result<(), Invalid> {
            if v < min || v > MAX_BARS {
                return fail(&key(k), format!("must be between {min} and {MAX_BARS}"));
            }
            Ok(())
        };
        if let Some(f) = self.folds {
            bars("folds", f, 1)?;
        }
        bars("test_bars", self.test_bars, 1)?;
        bars("train_bars", self.train_bars, 1)?;
        bars("step", self.step(), 1)?;
        bars("embargo", self.embargo, 0)?;
        let val = self.val_bars();
        bars("val_bars", val, 0)?;
        if val > 0 && val < window_rows {
            return fail(
                &key("val_bars"),
                format!(
                    "{val} bars hold no validation window: one needs sequence_length + \
                     prediction_horizon = {window_rows}; raise it or set 0 (no validation)"
                ),
            );
        }
        if self.train_bars < val + window_rows {
            return fail(
                &key("train_bars"),
                format!(
                    "{} bars leave no training window beside {val} validation bars: a window \
                     needs sequence_length + prediction_horizon = {window_rows} more",
                    self.train_bars
                ),
            );
        }
        Ok(())
    }
}

impl EvaluationConfig {
    /// What the `evaluate` key hashes: the backtest settings (walk-forward is read by the
    /// fold stages, whose keys hold it).
    pub fn key_value(&self) -> serde_json::Value {
        json!({"cost_bps": self.cost_bps, "signal": self.signal})
    }

    pub fn validate(&self) -> Result<(), Invalid> {
        if !(self.cost_bps.is_finite() && self.cost_bps >= 0.0) {
            return fail("evaluation.cost_bps", "must be >= 0");
        }
        Ok(())
    }
}
