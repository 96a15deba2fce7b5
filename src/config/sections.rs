//! The config sections read by the training stages: `model`, `optimizer`, `training`,
//! `evaluation`. Each type holds its documented defaults and its own range checks, which
//! return the offending key path and a message (the loader adds file and position).

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::unknown_name;

/// A failed check: (key path, message).
pub type Invalid = (String, String);

fn fail<T>(key: &str, message: impl Into<String>) -> Result<T, Invalid> {
    Err((key.to_string(), message.into()))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Registry name: `mlp`, `lstm`, `transformer`. Default `lstm`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Width of hidden layers / model dimension. Default 64.
    pub hidden_size: usize,
    /// Stacked layers. Default 2.
    pub num_layers: usize,
    /// Default 0.1.
    pub dropout: f64,
    /// Attention heads (transformer). Default 4.
    pub num_heads: usize,
    /// Feed-forward width (transformer). Default: 4 * hidden_size.
    pub ff_size: Option<usize>,
    /// How the transformer summarises the sequence: `last` or `mean`. Default `last`.
    pub pooling: Pooling,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            kind: "lstm".to_string(),
            hidden_size: 64,
            num_layers: 2,
            dropout: 0.1,
            num_heads: 4,
            ff_size: None,
            pooling: Pooling::Last,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    Last,
    Mean,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimizerConfig {
    /// Registry name. Default `adamw`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Peak learning rate. Default 1e-3.
    pub lr: f64,
    /// Decoupled weight decay (not applied to biases and norms). Default 0.01.
    pub weight_decay: f64,
    /// Default [0.9, 0.999].
    pub betas: [f64; 2],
    /// Default 1e-8.
    pub eps: f64,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig {
            kind: "adamw".to_string(),
            lr: 1e-3,
            weight_decay: 0.01,
            betas: [0.9, 0.999],
            eps: 1e-8,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainingConfig {
    /// Passes over the train windows. Default 10.
    pub epochs: usize,
    /// Stop after this many optimizer steps, if set (overrides `epochs`).
    pub max_steps: Option<usize>,
    /// Default 32.
    pub batch_size: usize,
    /// Linear warm-up steps before cosine decay. Default 50.
    pub warmup_steps: usize,
    /// The cosine schedule decays to lr * min_lr_ratio. Default 0.1.
    pub min_lr_ratio: f64,
    /// Clip gradients to this global norm; 0 disables. Default 1.0.
    pub grad_clip: f64,
    /// Cross-entropy label smoothing on the action head. Default 0.1.
    pub label_smoothing: f64,
    /// Weight of the price MSE beside the action cross-entropy. Default 0.5.
    pub price_weight: f64,
}

impl Default for TrainingConfig {
    fn default() -> Self {
        TrainingConfig {
            epochs: 10,
            max_steps: None,
            batch_size: 32,
            warmup_steps: 50,
            min_lr_ratio: 0.1,
            grad_clip: 1.0,
            label_smoothing: 0.1,
            price_weight: 0.5,
        }
    }
}

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

impl ModelConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        let models = crate::model::MODEL_NAMES;
        if !models.contains(&self.kind.as_str()) {
            return fail("model.type", unknown_name("model type", &self.kind, models));
        }
        if self.hidden_size == 0 {
            return fail("model.hidden_size", "must be at least 1");
        }
        if self.num_layers == 0 {
            return fail("model.num_layers", "must be at least 1");
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return fail(
                "model.dropout",
                format!("must be in [0, 1) (got {})", self.dropout),
            );
        }
        if self.kind == "transformer"
            && (self.num_heads == 0 || !self.hidden_size.is_multiple_of(self.num_heads))
        {
            return fail(
                "model.num_heads",
                format!(
                    "must divide hidden_size ({} is not a multiple of {})",
                    self.hidden_size, self.num_heads
                ),
            );
        }
        if self.ff_size == Some(0) {
            return fail("model.ff_size", "must be at least 1");
        }
        Ok(())
    }

    /// The settings that matter for this `type`, as hashed into stage keys: a transformer's
    /// `num_heads` is not an LSTM's business, so changing it must not re-run an LSTM.
    pub fn key_value(&self) -> serde_json::Value {
        let mut v = json!({
            "type": self.kind,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "dropout": self.dropout,
        });
        if self.kind == "transformer" {
            v["num_heads"] = json!(self.num_heads);
            v["ff_size"] = json!(self.ff_size.unwrap_or(4 * self.hidden_size));
            v["pooling"] = json!(self.pooling);
        }
        v
    }
}

impl OptimizerConfig {
    /// What the `train` key hashes: the settings this optimizer type reads.
    pub fn key_value(&self) -> serde_json::Value {
        json!(self)
    }

    pub fn validate(&self) -> Result<(), Invalid> {
        let optimizers = crate::optim::OPTIMIZER_NAMES;
        if !optimizers.contains(&self.kind.as_str()) {
            return fail(
                "optimizer.type",
                unknown_name("optimizer", &self.kind, optimizers),
            );
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return fail(
                "optimizer.lr",
                format!("must be positive (got {})", self.lr),
            );
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return fail("optimizer.weight_decay", "must be >= 0");
        }
        for (i, b) in self.betas.iter().enumerate() {
            if !(0.0..1.0).contains(b) {
                return fail(&format!("optimizer.betas[{i}]"), "must be in [0, 1)");
            }
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return fail("optimizer.eps", "must be positive");
        }
        Ok(())
    }
}

impl TrainingConfig {
    /// What the `train` key hashes.
    pub fn key_value(&self) -> serde_json::Value {
        json!(self)
    }

    pub fn validate(&self) -> Result<(), Invalid> {
        if self.epochs == 0 && self.max_steps.is_none() {
            return fail("training.epochs", "must be at least 1 (or set max_steps)");
        }
        if self.max_steps == Some(0) {
            return fail("training.max_steps", "must be at least 1");
        }
        if self.batch_size == 0 {
            return fail("training.batch_size", "must be at least 1");
        }
        if !(self.min_lr_ratio.is_finite() && (0.0..=1.0).contains(&self.min_lr_ratio)) {
            return fail("training.min_lr_ratio", "must be in [0, 1]");
        }
        if !(self.grad_clip.is_finite() && self.grad_clip >= 0.0) {
            return fail("training.grad_clip", "must be >= 0 (0 disables clipping)");
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return fail("training.label_smoothing", "must be in [0, 1)");
        }
        if !(self.price_weight.is_finite() && self.price_weight >= 0.0) {
            return fail("training.price_weight", "must be >= 0");
        }
        Ok(())
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
