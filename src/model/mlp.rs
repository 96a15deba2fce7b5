//! `mlp`: the flattened window through `num_layers` hidden layers; the baseline.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::activation::gelu;
use burn::tensor::{Device, Tensor};

use super::{Dims, Forecast, Forecaster, Heads, ModelError, Net};
use crate::config::ModelConfig;

#[derive(Module, Debug)]
pub struct Mlp {
    layers: Vec<Linear>,
    dropout: Dropout,
    heads: Heads,
}

pub fn build(cfg: &ModelConfig, dims: Dims, device: &Device) -> Result<Box<dyn Net>, ModelError> {
    let input = dims.sequence_length * dims.num_features;
    let layers = (0..cfg.num_layers)
        .map(|i| {
            let d_in = if i == 0 { input } else { cfg.hidden_size };
            LinearConfig::new(d_in, cfg.hidden_size).init(device)
        })
        .collect();
    Ok(Box::new(Mlp {
        layers,
        dropout: DropoutConfig::new(cfg.dropout).init(),
        heads: Heads::new(cfg.hidden_size, dims.horizon, device),
    }))
}

impl Forecaster for Mlp {
    fn forward(&self, x: Tensor<3>) -> Forecast {
        let mut h: Tensor<2> = x.flatten(1, 2);
        for layer in &self.layers {
            h = self.dropout.forward(gelu(layer.forward(h)));
        }
        self.heads.forward(h)
    }
}
