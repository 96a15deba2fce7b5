//! `search`: hyperparameter search over a space of config values (random, TPE, successive
//! halving). The section only describes the search; `crate::search` proposes the trials and
//! `usecase::search` builds them. A trial is the experiment with the proposed values set,
//! named like a matrix point.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Most trials one search may run (the same bound as a matrix's points).
pub const MAX_TRIALS: usize = 1024;

/// How trials are proposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SearchMethod {
    /// Every trial drawn independently from the space.
    Random,
    /// Tree-structured Parzen estimator: after `startup` random trials, each batch of
    /// `batch` trials is drawn where good results were more likely than bad ones.
    Tpe,
    /// Successive halving: `trials` random configurations at the smallest budget, the best
    /// `1/reduction` of each rung promoted to `reduction` times the budget.
    Asha,
}

/// Whether the objective is better low or high.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Minimize,
    Maximize,
}

/// One searched value's domain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Domain {
    /// A real number, uniform between the two bounds.
    Uniform([f64; 2]),
    /// A positive real number, uniform in its logarithm.
    LogUniform([f64; 2]),
    /// A whole number between the two bounds, both included.
    Int([i64; 2]),
    /// A positive whole number, uniform in its logarithm.
    LogInt([i64; 2]),
    /// One of the listed values.
    Choice(Vec<serde_json::Value>),
}

/// `search.asha`: the budget a trial is promoted in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AshaConfig {
    /// The config key holding the budget. Default `training.epochs`.
    #[serde(default = "default_budget_key")]
    pub budget: String,
    /// The first rung's budget.
    pub min: u64,
    /// The last rung's budget.
    pub max: u64,
    /// Each rung keeps the best `1/reduction` and multiplies the budget by it. Default 3.
    #[serde(default = "default_reduction")]
    pub reduction: u64,
}

fn default_budget_key() -> String {
    "training.epochs".to_string()
}

fn default_reduction() -> u64 {
    3
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchConfig {
    pub method: SearchMethod,
    /// Trials to run (ASHA: configurations in the first rung).
    pub trials: usize,
    /// Seeds the proposals (not the trainings: those keep the experiment's `seed`).
    #[serde(default)]
    pub seed: u64,
    /// TPE: trials proposed together, each batch from the results of all earlier ones (so
    /// the trials do not depend on `-j`). Default 4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<usize>,
    /// TPE: random trials before the first modelled one. Default 10 (Optuna's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup: Option<usize>,
    /// The metric to optimise, by any name `hft compare` knows. Default: the validation loss
    /// of the selected epoch (`train.selected_val_loss`), or `skill` with walk-forward.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objective: Option<String>,
    /// Default: `minimize` for losses and errors, `maximize` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    /// Config key path -> domain (`optimizer.lr: {log_uniform: [1e-4, 1e-2]}`).
    pub space: BTreeMap<String, Domain>,
    /// Required by `method: asha`, refused otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asha: Option<AshaConfig>,
}

/// Keys a search may not set: they name the experiment, its data or the search itself.
const UNSEARCHABLE: [&str; 6] = [
    "name",
    "search",
    "description",
    "data.path",
    "data.source",
    "data.symbols",
];

impl SearchConfig {
    pub const DEFAULT_BATCH: usize = 4;
    pub const DEFAULT_STARTUP: usize = 10;

    pub fn batch(&self) -> usize {
        self.batch.unwrap_or(Self::DEFAULT_BATCH)
    }

    pub fn startup(&self) -> usize {
        self.startup.unwrap_or(Self::DEFAULT_STARTUP)
    }

    /// The objective's metric name, given whether the experiment evaluates walk-forward.
    pub fn objective(&self, walk_forward: bool) -> String {
        match &self.objective {
            Some(o) => o.clone(),
            None if walk_forward => "skill".to_string(),
            None => "train.selected_val_loss".to_string(),
        }
    }

    pub fn direction(&self, walk_forward: bool) -> Direction {
        self.direction
            .unwrap_or_else(|| default_direction(&self.objective(walk_forward)))
    }

    /// Checks the section; errors name the key under `search`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |key: &str, message: String| Err((format!("search.{key}"), message));
        if self.trials == 0 || self.trials > MAX_TRIALS {
            return bad(
                "trials",
                format!("must be from 1 to {MAX_TRIALS} (it is {})", self.trials),
            );
        }
        if self.batch == Some(0) {
            return bad("batch", "must be at least 1".to_string());
        }
        if self.method != SearchMethod::Tpe && (self.batch.is_some() || self.startup.is_some()) {
            let key = if self.batch.is_some() {
                "batch"
            } else {
                "startup"
            };
            return bad(key, "applies to `method: tpe` only".to_string());
        }
        if self.space.is_empty() {
            return bad(
                "space",
                "is empty: give at least one key to search, e.g. \
                 `optimizer.lr: {log_uniform: [1e-4, 1e-2]}`"
                    .to_string(),
            );
        }
        for (key, domain) in &self.space {
            let at = format!("space.{key}");
            if UNSEARCHABLE
                .iter()
                .any(|u| key == u || key.starts_with(&format!("{u}.")))
                || key.starts_with("search")
            {
                return bad(&at, format!("`{key}` cannot be searched"));
            }
            if key.split('.').any(str::is_empty) {
                return bad(&at, "is not a key path like `optimizer.lr`".to_string());
            }
            domain.validate().or_else(|m| bad(&at, m))?;
        }
        match (self.method, &self.asha) {
            (SearchMethod::Asha, None) => bad(
                "asha",
                "`method: asha` needs `asha: {min: 1, max: 27}` (the budget's range, in \
                 `training.epochs` unless `budget` names another key)"
                    .to_string(),
            ),
            (SearchMethod::Asha, Some(a)) => {
                if a.min == 0 || a.min >= a.max {
                    return bad(
                        "asha.min",
                        format!(
                            "must be at least 1 and below `max` ({} and {})",
                            a.min, a.max
                        ),
                    );
                }
                if a.reduction < 2 {
                    return bad("asha.reduction", "must be at least 2".to_string());
                }
                if self.space.contains_key(&a.budget) {
                    return bad(
                        &format!("space.{}", a.budget),
                        "is the ASHA budget: the search sets it".to_string(),
                    );
                }
                Ok(())
            }
            (_, Some(_)) => bad("asha", "applies to `method: asha` only".to_string()),
            _ => Ok(()),
        }
    }
}

impl Domain {
    fn validate(&self) -> Result<(), String> {
        let ordered = |lo: f64, hi: f64| {
            if !(lo.is_finite() && hi.is_finite()) || lo >= hi {
                Err(format!(
                    "needs two finite bounds, low below high ({lo}, {hi})"
                ))
            } else {
                Ok(())
            }
        };
        match self {
            Domain::Uniform([lo, hi]) => ordered(*lo, *hi),
            Domain::LogUniform([lo, hi]) => {
                ordered(*lo, *hi)?;
                if *lo <= 0.0 {
                    return Err(format!("log_uniform needs a positive low bound ({lo})"));
                }
                Ok(())
            }
            Domain::Int([lo, hi]) => ordered(*lo as f64, *hi as f64),
            Domain::LogInt([lo, hi]) => {
                ordered(*lo as f64, *hi as f64)?;
                if *lo <= 0 {
                    return Err(format!("log_int needs a positive low bound ({lo})"));
                }
                Ok(())
            }
            Domain::Choice(values) if values.is_empty() => {
                Err("choice needs at least one value".to_string())
            }
            Domain::Choice(values) => {
                let nested = values.iter().any(|v| v.is_object() || v.is_array());
                if nested {
                    return Err("choice values must be numbers, strings or booleans".to_string());
                }
                Ok(())
            }
        }
    }
}

/// Losses and errors are minimised, everything else (skill, Sharpe, accuracy) maximised.
pub fn default_direction(metric: &str) -> Direction {
    let last = metric.rsplit('.').next().unwrap_or(metric);
    let lower = ["loss", "mse", "mae", "rmse", "mape", "pbo", "brier"];
    if lower.iter().any(|l| last.contains(l)) {
        Direction::Minimize
    } else {
        Direction::Maximize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> SearchConfig {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn a_space_reads_every_domain() {
        let s = spec(
            "method: tpe\ntrials: 8\nspace:\n  optimizer.lr: {log_uniform: [1.0e-4, 1.0e-2]}\n  \
             model.hidden_size: {choice: [32, 64]}\n  model.dropout: {uniform: [0, 0.3]}\n  \
             model.num_layers: {int: [1, 3]}\n  training.batch_size: {log_int: [16, 128]}\n",
        );
        assert_eq!(s.space.len(), 5);
        assert_eq!(s.space["model.num_layers"], Domain::Int([1, 3]));
        assert!(s.validate().is_ok());
        assert_eq!(s.objective(false), "train.selected_val_loss");
        assert_eq!(s.direction(false), Direction::Minimize);
        assert_eq!(s.objective(true), "skill");
        assert_eq!(s.direction(true), Direction::Maximize);
    }

    #[test]
    fn bad_searches_name_their_key() {
        let err = |yaml: &str| spec(yaml).validate().unwrap_err().0;
        assert_eq!(
            err("method: random\ntrials: 0\nspace: {optimizer.lr: {uniform: [0, 1]}}\n"),
            "search.trials"
        );
        assert_eq!(
            err("method: random\ntrials: 3\nspace: {optimizer.lr: {log_uniform: [0, 1]}}\n"),
            "search.space.optimizer.lr"
        );
        assert_eq!(
            err("method: random\ntrials: 3\nspace: {data.path: {choice: [a]}}\n"),
            "search.space.data.path"
        );
        assert_eq!(
            err("method: asha\ntrials: 3\nspace: {optimizer.lr: {uniform: [0, 1]}}\n"),
            "search.asha"
        );
        assert_eq!(
            err(
                "method: asha\ntrials: 3\nasha: {min: 3, max: 3}\nspace: {optimizer.lr: {uniform: [0, 1]}}\n"
            ),
            "search.asha.min"
        );
        assert_eq!(
            err("method: random\ntrials: 3\nbatch: 2\nspace: {optimizer.lr: {uniform: [0, 1]}}\n"),
            "search.batch"
        );
    }
}
