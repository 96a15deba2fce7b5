//! `evaluation`: the backtest settings the evaluate stage reads.

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
}

impl Default for EvaluationConfig {
    fn default() -> Self {
        EvaluationConfig {
            cost_bps: 5.0,
            signal: Signal::Action,
        }
    }
}

impl EvaluationConfig {
    /// What the `evaluate` key hashes.
    pub fn key_value(&self) -> serde_json::Value {
        json!(self)
    }

    pub fn validate(&self) -> Result<(), Invalid> {
        if !(self.cost_bps.is_finite() && self.cost_bps >= 0.0) {
            return fail("evaluation.cost_bps", "must be >= 0");
        }
        Ok(())
    }
}
