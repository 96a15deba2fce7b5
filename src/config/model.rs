//! `model`: the settings every architecture reads. The rest of the section (`num_heads`,
//! `pooling`, `dit`, ...) belongs to the selected type's registry entry (`model::MODELS`),
//! which reads and checks it; config keeps it raw in [`ModelConfig::options`].

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::options::{Invalid, Options, fail};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelConfig {
    /// Registry name: `mlp`, `lstm`, `gru`, `transformer`, ... Default `lstm`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Width of hidden layers / model dimension. Default 64.
    pub hidden_size: usize,
    /// Stacked layers. Default 2.
    pub num_layers: usize,
    /// Default 0.1.
    pub dropout: f64,
    /// Every other key of `model:`: the options of the selected type, read and checked by
    /// its registry entry; after loading, with their defaults filled in.
    #[serde(flatten)]
    pub options: Options,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            kind: "lstm".to_string(),
            hidden_size: 64,
            num_layers: 2,
            dropout: 0.1,
            options: Options::new(),
        }
    }
}

/// Upper bounds of the sizes every model reads: far above any model that fits a machine
/// (the init stage refuses those by their memory; see `model::check_fits`), low enough that
/// no size arithmetic overflows.
pub const MAX_HIDDEN_SIZE: usize = 1 << 16;
pub const MAX_NUM_LAYERS: usize = 1024;
/// Upper bound of a transformer's feed-forward width (`model.ff_size`).
pub const MAX_FF_SIZE: usize = 1 << 20;

impl ModelConfig {
    /// The section's own keys, in order (for unknown-key messages).
    pub const FIELDS: &'static [&'static str] = &["type", "hidden_size", "num_layers", "dropout"];

    /// Range checks of the shared settings (the registry checks the type and its options).
    pub fn validate_shared(&self) -> Result<(), Invalid> {
        if !(1..=MAX_HIDDEN_SIZE).contains(&self.hidden_size) {
            return fail(
                "model.hidden_size",
                format!(
                    "must be between 1 and {MAX_HIDDEN_SIZE} (got {})",
                    self.hidden_size
                ),
            );
        }
        if !(1..=MAX_NUM_LAYERS).contains(&self.num_layers) {
            return fail(
                "model.num_layers",
                format!(
                    "must be between 1 and {MAX_NUM_LAYERS} (got {})",
                    self.num_layers
                ),
            );
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return fail(
                "model.dropout",
                format!("must be in [0, 1) (got {})", self.dropout),
            );
        }
        Ok(())
    }

    /// The shared part of the stage key; the registry adds the options the type reads
    /// (`ModelConfig::key_value`, in `model`).
    pub fn shared_key_value(&self) -> serde_json::Value {
        json!({
            "type": self.kind,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "dropout": self.dropout,
        })
    }
}
