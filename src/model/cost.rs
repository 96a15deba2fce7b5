//! A rough size of each registry model: the multiply-adds of one window's forward pass. The
//! build starts the costliest trainings of a sweep first, so that the last ones left
//! running, each on one core while the other cores idle, are short (longest processing
//! time first). Nothing else reads it, and results never depend on the order trainings run
//! in, so an estimate that is off only costs some idle time at a build's end.

use super::transformer::TransformerOptions;
use super::{Dims, dit::DitModelOptions, registry::options_of};
use crate::config::ModelConfig;

/// Multiply-adds of one window's forward pass of `cfg`'s model for windows of `dims`;
/// `None` for a type this table does not know (scheduled as the cheapest).
pub fn forward_cost(cfg: &ModelConfig, dims: Dims) -> Option<f64> {
    let h = cfg.hidden_size as f64;
    let layers = cfg.num_layers as f64;
    let seq = dims.sequence_length as f64;
    let features = dims.num_features as f64;
    // A recurrent layer of `gates` gates: per step, the gates from the input and the state.
    let recurrent = |gates: f64| {
        let first = gates * h * (features + h);
        let rest = gates * h * (2.0 * h) * (layers - 1.0).max(0.0);
        seq * (first + rest)
    };
    // An encoder layer: the four projections, the feed-forward and the attention scores.
    let encoder =
        |ff: f64| seq * features * h + layers * seq * (4.0 * h * h + 2.0 * h * ff + 2.0 * seq * h);
    match cfg.kind.as_str() {
        "mlp" => Some(seq * features * h + (layers - 1.0).max(0.0) * h * h),
        "lstm" => Some(recurrent(4.0)),
        "gru" => Some(recurrent(3.0)),
        "transformer" => {
            let o: TransformerOptions = options_of(cfg).ok()?;
            Some(encoder(o.ff_size(cfg) as f64))
        }
        // The encoder of the context plus a denoiser of about its size.
        "dit" => {
            let o: DitModelOptions = options_of(cfg).ok()?;
            Some(2.0 * encoder(o.encoder().ff_size(cfg) as f64))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::registry::MODELS;

    fn model(kind: &str, hidden: usize) -> ModelConfig {
        ModelConfig {
            kind: kind.to_string(),
            hidden_size: hidden,
            ..ModelConfig::default()
        }
    }

    const DIMS: Dims = Dims {
        num_features: 14,
        sequence_length: 30,
        horizon: 5,
    };

    #[test]
    fn every_registry_model_has_a_cost() {
        for spec in MODELS {
            let cost = forward_cost(&model(spec.name, 64), DIMS);
            assert!(cost.is_some_and(|c| c > 0.0), "{}: {cost:?}", spec.name);
        }
        assert_eq!(forward_cost(&model("nonesuch", 64), DIMS), None);
    }

    #[test]
    fn costs_order_models_as_their_trainings_take() {
        let cost = |kind: &str, hidden: usize| forward_cost(&model(kind, hidden), DIMS).unwrap();
        // What the 48-training sweep of BENCHMARKS.md measured: mlp well under the
        // recurrent layers, gru under lstm; and every model grows with its width.
        assert!(cost("mlp", 64) * 5.0 < cost("gru", 64));
        assert!(cost("gru", 64) < cost("lstm", 64));
        for spec in MODELS {
            assert!(cost(spec.name, 32) < cost(spec.name, 128), "{}", spec.name);
        }
    }
}
