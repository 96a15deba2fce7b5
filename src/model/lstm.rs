//! `lstm`: stacked LSTM layers; the last hidden state of the top layer feeds the heads.
//!
//! Written here rather than stacking `burn::nn::Lstm`: two fused `[d, 4h]` matmuls per step
//! instead of eight, and the steps stay separate tensors between layers. burn's layer writes
//! each step into a `[batch, seq, hidden]` output, and the gradient of every such write is a
//! full-size tensor: quadratic in the sequence length. Measured on flex, one thread, 2 layers,
//! hidden 128: equal at seq 60 / batch 256, 35% faster at seq 240 / batch 128.

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::activation::{sigmoid, tanh};
use burn::tensor::{Device, Tensor, TensorData};

use super::{Dims, Forecast, Forecaster, Heads, ModelError, Net};
use crate::config::ModelConfig;

/// One LSTM layer; gates are ordered input, forget, cell, output.
#[derive(Module, Debug)]
pub struct LstmLayer {
    input: Linear,
    hidden: Linear,
    d_hidden: usize,
}

impl LstmLayer {
    fn new(d_input: usize, d_hidden: usize, device: &Device) -> Self {
        let mut input = LinearConfig::new(d_input, 4 * d_hidden).init(device);
        // Forget-gate bias 1, the rest 0 (Jozefowicz et al., 2015): the cell starts out
        // remembering, so gradients survive long windows instead of vanishing (and, on the
        // way, turning into slow denormal floats).
        let bias: Vec<f32> = (0..4 * d_hidden)
            .map(|i| if i / d_hidden == 1 { 1.0 } else { 0.0 })
            .collect();
        input.bias = Some(Param::from_data(
            TensorData::new(bias, [4 * d_hidden]),
            device,
        ));
        LstmLayer {
            input,
            hidden: LinearConfig::new(d_hidden, 4 * d_hidden)
                .with_bias(false)
                .init(device),
            d_hidden,
        }
    }

    /// One step: `(h, c)` from input `x` and the previous state.
    fn cell(&self, x: Tensor<2>, state: Option<(Tensor<2>, Tensor<2>)>) -> (Tensor<2>, Tensor<2>) {
        let d = self.d_hidden;
        let gates = match &state {
            Some((h, _)) => self.input.forward(x) + self.hidden.forward(h.clone()),
            None => self.input.forward(x),
        };
        let gate = |k: usize| gates.clone().narrow(1, k * d, d);
        let fresh = sigmoid(gate(0)) * tanh(gate(2));
        let c = match state {
            Some((_, c)) => sigmoid(gate(1)) * c + fresh,
            None => fresh,
        };
        (sigmoid(gate(3)) * tanh(c.clone()), c)
    }

    /// Runs the layer over `[batch, d_input]` steps; returns the hidden state of each step.
    fn forward(&self, steps: Vec<Tensor<2>>) -> Vec<Tensor<2>> {
        let mut state = None;
        let mut out = Vec::with_capacity(steps.len());
        for x in steps {
            let (h, c) = self.cell(x, state);
            out.push(h.clone());
            state = Some((h, c));
        }
        out
    }
}

#[derive(Module, Debug)]
pub struct Lstm {
    layers: Vec<LstmLayer>,
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
            LstmLayer::new(d_in, cfg.hidden_size, device)
        })
        .collect();
    Ok(Box::new(Lstm {
        layers,
        dropout: DropoutConfig::new(cfg.dropout).init(),
        heads: Heads::new(cfg.hidden_size, dims.horizon, device),
        d_hidden: cfg.hidden_size,
    }))
}

impl Forecaster for Lstm {
    fn forward(&self, x: Tensor<3>) -> Forecast {
        let [batch, seq, features] = x.dims();
        let mut steps: Vec<Tensor<2>> = (0..seq)
            .map(|t| x.clone().narrow(1, t, 1).reshape([batch, features]))
            .collect();
        for (i, layer) in self.layers.iter().enumerate() {
            if i > 0 {
                // Dropout between layers, as in PyTorch's `nn.LSTM`.
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
