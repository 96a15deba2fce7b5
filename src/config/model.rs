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

impl ModelConfig {
    /// The section's own keys, in order (for unknown-key messages).
    pub const FIELDS: &'static [&'static str] = &["type", "hidden_size", "num_layers", "dropout"];

    /// Range checks of the shared settings (the registry checks the type and its options).
    pub fn validate_shared(&self) -> Result<(), Invalid> {
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
