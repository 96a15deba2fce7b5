//! `gru`: stacked GRU layers; the last hidden state of the top layer feeds the heads.
//!
//! Written here rather than stacking `burn::nn::Gru`, for the reason `lstm.rs` gives: burn's
//! layer writes each step into a `[batch, seq, hidden]` output whose gradient is a full-size
//! tensor per step. Equations as PyTorch's `nn.GRU` (reset gate applied to the projected
//! hidden state, bias included):
//!
//! ```text
//! r = σ(W_ir x + b_ir + W_hr h + b_hr)      z = σ(W_iz x + b_iz + W_hz h + b_hz)
//! n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))      h' = (1 - z) ⊙ n + z ⊙ h
//! ```

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::activation::{sigmoid, tanh};
use burn::tensor::{Device, Tensor};

use super::{Dims, Forecast, Forecaster, Heads, ModelError, Net};
use crate::config::ModelConfig;

/// One GRU layer; gates are ordered reset, update, candidate.
#[derive(Module, Debug)]
pub struct GruLayer {
    input: Linear,
    hidden: Linear,
    d_hidden: usize,
}

impl GruLayer {
    fn new(d_input: usize, d_hidden: usize, device: &Device) -> Self {
        GruLayer {
            input: LinearConfig::new(d_input, 3 * d_hidden).init(device),
            hidden: LinearConfig::new(d_hidden, 3 * d_hidden).init(device),
            d_hidden,
        }
    }

    /// One step: the new hidden state from input `x` and the previous one (zeros at the
    /// first step, where the hidden projection reduces to its bias).
    fn cell(&self, x: Tensor<2>, h: Option<Tensor<2>>) -> Tensor<2> {
        let d = self.d_hidden;
        let xi = self.input.forward(x);
        let hh = match &h {
            Some(h) => self.hidden.forward(h.clone()),
            // In the input's dtype, so that reduced-precision passes stay in one format.
            None => self.hidden.forward(xi.clone().narrow(1, 0, d).zeros_like()),
        };
        let part = |t: &Tensor<2>, k: usize| t.clone().narrow(1, k * d, d);
        let r = sigmoid(part(&xi, 0) + part(&hh, 0));
        let z = sigmoid(part(&xi, 1) + part(&hh, 1));
        let n = tanh(part(&xi, 2) + r * part(&hh, 2));
        match h {
            // (1 - z) n + z h = n + z (h - n)
            Some(h) => n.clone() + z * (h - n),
            None => n.clone() - z * n,
        }
    }

    /// Runs the layer over `[batch, d_input]` steps; returns the hidden state of each step.
    fn forward(&self, steps: Vec<Tensor<2>>) -> Vec<Tensor<2>> {
        let mut h = None;
        let mut out = Vec::with_capacity(steps.len());
        for x in steps {
            let next = self.cell(x, h);
            out.push(next.clone());
            h = Some(next);
        }
        out
    }
}

#[derive(Module, Debug)]
pub struct Gru {
    layers: Vec<GruLayer>,
    dropout: Dropout,
    heads: Heads,
    d_hidden: usize,
}

pub fn build(cfg: &ModelConfig, dims: Dims, device: &Device) -> Result<Box<dyn Net>, ModelError> {
    let layers = (0..cfg.num_layers)
        .map(|i| {
            let d_in = if i == 0 {
                dims.num_features
            } else {
                cfg.hidden_size
            };
            GruLayer::new(d_in, cfg.hidden_size, device)
        })
        .collect();
    Ok(Box::new(Gru {
        layers,
        dropout: DropoutConfig::new(cfg.dropout).init(),
        heads: Heads::new(cfg.hidden_size, dims.horizon, device),
        d_hidden: cfg.hidden_size,
    }))
}

impl Forecaster for Gru {
    fn forward(&self, x: Tensor<3>) -> Forecast {
        let [batch, seq, features] = x.dims();
        let mut steps: Vec<Tensor<2>> = (0..seq)
            .map(|t| x.clone().narrow(1, t, 1).reshape([batch, features]))
            .collect();
        for (i, layer) in self.layers.iter().enumerate() {
            if i > 0 {
                steps = steps.into_iter().map(|s| self.dropout.forward(s)).collect();
            }
            steps = layer.forward(steps);
        }
        // An empty window (never built: `Dims` requires a step) summarises to zeros.
        let last = steps
            .pop()
            .unwrap_or_else(|| Tensor::zeros([batch, self.d_hidden], &x.device()));
        self.heads.forward(self.dropout.forward(last))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    /// One step of a 1-unit GRU against the equations evaluated by hand.
    #[test]
    fn cell_matches_the_gru_equations() {
        let device = Device::flex();
        let mut layer = GruLayer::new(1, 1, &device);
        let set = |l: &mut Linear, w: [f32; 3], b: [f32; 3]| {
            l.weight = burn::module::Param::from_data(TensorData::new(w.to_vec(), [1, 3]), &device);
            l.bias = Some(burn::module::Param::from_data(
                TensorData::new(b.to_vec(), [3]),
                &device,
            ));
        };
        set(&mut layer.input, [0.5, -1.0, 2.0], [0.1, 0.2, 0.3]);
        set(&mut layer.hidden, [1.5, 0.25, -0.5], [-0.1, 0.0, 0.4]);
        let (x, h) = (0.7f64, -0.3f64);
        let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
        let r = sig(0.5 * x + 0.1 + 1.5 * h - 0.1);
        let z = sig(-x + 0.2 + 0.25 * h);
        let n = (2.0 * x + 0.3 + r * (-0.5 * h + 0.4)).tanh();
        let want = (1.0 - z) * n + z * h;
        let got = layer.cell(
            Tensor::from_data(TensorData::new(vec![x as f32], [1, 1]), &device),
            Some(Tensor::from_data(
                TensorData::new(vec![h as f32], [1, 1]),
                &device,
            )),
        );
        let got = f64::from(got.into_scalar::<f32>());
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }
}
