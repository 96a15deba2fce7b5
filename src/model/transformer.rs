//! `transformer`: input projection, sinusoidal positions, a pre-norm encoder (GELU
//! feed-forward), a final layer norm, then last-token (or mean) pooling into the heads.

use burn::module::Module;
use burn::nn::transformer::{
    TransformerEncoder, TransformerEncoderConfig, TransformerEncoderInput,
};
use burn::nn::{Dropout, DropoutConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::{Device, Tensor, TensorData};

use super::{Dims, Forecast, Forecaster, Heads, ModelError, Net};
use crate::config::{ModelConfig, Pooling};

#[derive(Module, Debug)]
pub struct Transformer {
    input: Linear,
    encoder: TransformerEncoder,
    norm: LayerNorm,
    dropout: Dropout,
    heads: Heads,
    d_model: usize,
    mean_pool: bool,
}

pub fn build(cfg: &ModelConfig, dims: Dims, device: &Device) -> Result<Box<dyn Net>, ModelError> {
    let d = cfg.hidden_size;
    if cfg.num_heads == 0 || !d.is_multiple_of(cfg.num_heads) {
        return Err(ModelError::Config(format!(
            "num_heads ({}) must divide hidden_size ({d})",
            cfg.num_heads
        )));
    }
    let d_ff = cfg.ff_size.unwrap_or(4 * d);
    if d_ff == 0 {
        return Err(ModelError::Config("ff_size must be at least 1".into()));
    }
    let encoder = TransformerEncoderConfig::new(d, d_ff, cfg.num_heads, cfg.num_layers)
        .with_dropout(cfg.dropout)
        .with_norm_first(true)
        .init(device);
    Ok(Box::new(Transformer {
        input: LinearConfig::new(dims.num_features, d).init(device),
        encoder,
        norm: LayerNormConfig::new(d).init(device),
        dropout: DropoutConfig::new(cfg.dropout).init(),
        heads: Heads::new(d, dims.horizon, device),
        d_model: d,
        mean_pool: cfg.pooling == Pooling::Mean,
    }))
}

impl Forecaster for Transformer {
    fn forward(&self, x: Tensor<3>) -> Forecast {
        let [batch, seq, _] = x.dims();
        let d = self.d_model;
        let positions = TensorData::new(sinusoids(seq, d), [1, seq, d]);
        let h = self.input.forward(x.clone()) + Tensor::from_data(positions, &x.device());
        let h = self
            .encoder
            .forward(TransformerEncoderInput::new(self.dropout.forward(h)));
        let h = self.norm.forward(h);
        let pooled = if self.mean_pool {
            h.mean_dim(1)
        } else {
            h.narrow(1, seq.saturating_sub(1), 1)
        };
        self.heads.forward(pooled.reshape([batch, d]))
    }
}

/// The sinusoidal position table `[len, d]` of "Attention is all you need": even columns
/// `sin(pos / 10000^(2i/d))`, odd columns the matching cosine. Any `d`, odd included.
fn sinusoids(len: usize, d: usize) -> Vec<f32> {
    let mut table = Vec::with_capacity(len * d);
    for pos in 0..len {
        for col in 0..d {
            let even = (col - col % 2) as f64;
            let angle = pos as f64 / 10_000f64.powf(even / d as f64);
            let v = if col % 2 == 0 {
                angle.sin()
            } else {
                angle.cos()
            };
            table.push(v as f32);
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sinusoid_table_matches_the_formula() {
        let t = sinusoids(3, 4);
        assert_eq!(&t[..4], &[0.0, 1.0, 0.0, 1.0]);
        assert!((t[4] - 1f32.sin()).abs() < 1e-7);
        assert!((t[7] - (1.0f64 / 100.0).cos() as f32).abs() < 1e-7);
    }
}
