//! `optimizer`: the settings every optimizer reads. Everything else in the section (`betas`,
//! `eps`, the `sgd:` ... `shampoo:` sub-sections) belongs to the selected type's registry
//! entry (`optim::OPTIMIZERS`); config keeps it raw in [`OptimizerConfig::options`].

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::options::{Invalid, Options, check_positive, fail};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OptimizerConfig {
    /// Registry name: `adamw`, `sgd`, `lion`, `adafactor`, `muon`, `shampoo`. Default `adamw`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Peak learning rate (the schedule scales it). Default 1e-3.
    pub lr: f64,
    /// Weight decay, never applied to biases and norms (rank-1 parameters). Decoupled
    /// (`w -= lr * weight_decay * w`) for every optimizer except `sgd`, where it is the L2
    /// penalty added to the gradient, as in PyTorch's SGD. Default 0.01.
    pub weight_decay: f64,
    /// Every other key of `optimizer:`: the options of the selected type, read and checked
    /// by its registry entry; after loading, with their defaults filled in.
    #[serde(flatten)]
    pub options: Options,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig {
            kind: "adamw".to_string(),
            lr: 1e-3,
            weight_decay: 0.01,
            options: Options::new(),
        }
    }
}

impl OptimizerConfig {
    /// The section's own keys, in order (for unknown-key messages).
    pub const FIELDS: &'static [&'static str] = &["type", "lr", "weight_decay"];

    /// Range checks of the shared settings (the registry checks the type and its options).
    pub fn validate_shared(&self) -> Result<(), Invalid> {
        check_positive("optimizer.lr", self.lr)?;
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return fail("optimizer.weight_decay", "must be >= 0");
        }
        Ok(())
    }

    /// The shared part of the stage key; the registry adds the options the type reads
    /// (`OptimizerConfig::key_value`, in `optim`).
    pub fn shared_key_value(&self) -> serde_json::Value {
        json!({
            "type": self.kind,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
        })
    }
}
