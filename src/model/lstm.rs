//! `lstm`: stacked LSTM layers; the last hidden state of the top layer feeds the heads.
//!
//! In f32 on flex each layer is one fused operation with its own backward pass
//! (`lstm_fused.rs`). Elsewhere (wgpu, cuda, reduced precision) the layer is composed of burn
//! ops, written here rather than stacking `burn::nn::Lstm` and shaped by where flex spent its
//! time before the fused layer (see `benches/ref/lstm_ref.yaml`): scalar `tanhf`, the sigmoid's
//! `expf` and one autodiff node per elementwise op.
//!
//! - One GEMM per step: `[x_t, 1, h_{t-1}] · [W_in; b; W_h]`. The stacked weight is built once
//!   per forward pass (a handful of small ops on the weights), so the bias add and the second
//!   matmul per step, and their backward passes, are gone.
//! - One sigmoid per step over all four gates. The cell gate's columns of the stacked weight are
//!   doubled, so `2σ(2a) - 1 = tanh(a)` gives its tanh; the cell's tanh likewise. Autodiff
//!   recomputes an activation in its backward pass, and glibc's scalar `tanhf` costs about five
//!   `expf`: a sigmoid is the cheapest nonlinearity flex has.
//! - The steps stay separate `[batch, hidden]` tensors between layers. burn's layer writes each
//!   step into a `[batch, seq, hidden]` output, and the gradient of every such write (or of a
//!   per-step slice of a large tensor) is a full-size tensor: quadratic in the sequence length.
//!
//! The parameters are the plain formulation's (`input` with bias, `hidden` without), so
//! weights blobs do not depend on how the layer computes; `reference_forward` (tests) is the
//! textbook cell on the same parameters.

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::activation::sigmoid;
use burn::tensor::{DType, Device, FloatDType, Tensor, TensorData};

use super::{Dims, Forecast, Forecaster, Heads, ModelError, Net};
use super::{fused, lstm_fused};
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

    /// `[W_in; b; W_h]` `[d_input + 1 + d_hidden, 4 * d_hidden]` with the cell gate's columns
    /// doubled (exact in floating point), for [`step`](LstmLayer::step).
    fn stacked_weight(&self) -> Tensor<2> {
        let d = self.d_hidden;
        let w_in = self.input.weight.val();
        let mut parts = vec![w_in.clone()];
        if let Some(b) = &self.input.bias {
            parts.push(b.val().reshape([1, 4 * d]));
        } else {
            parts.push(w_in.clone().narrow(0, 0, 1).zeros_like());
        }
        parts.push(self.hidden.weight.val());
        let w = Tensor::cat(parts, 0);
        let scale: Vec<f32> = (0..4 * d)
            .map(|i| if i / d == 2 { 2.0 } else { 1.0 })
            .collect();
        let scale: Tensor<2> = Tensor::from_data(TensorData::new(scale, [1, 4 * d]), &w.device());
        // In the weights' dtype, so that reduced-precision passes stay in one format.
        let scale = match w.dtype() {
            DType::F32 => scale,
            dtype => scale.cast(FloatDType::from(dtype)),
        };
        w * scale
    }

    /// One step from `x1` (the input with a trailing column of ones) and the previous state;
    /// `w` is [`stacked_weight`](LstmLayer::stacked_weight).
    fn step(
        &self,
        w: &Tensor<2>,
        x1: Tensor<2>,
        state: Option<(Tensor<2>, Tensor<2>)>,
    ) -> (Tensor<2>, Tensor<2>) {
        let d = self.d_hidden;
        let [_, k] = x1.dims();
        let gates = match &state {
            Some((h, _)) => Tensor::cat(vec![x1, h.clone()], 1).matmul(w.clone()),
            // No previous state: only the input rows of the weight.
            None => x1.matmul(w.clone().narrow(0, 0, k)),
        };
        let s = sigmoid(gates);
        let gate = |k: usize| s.clone().narrow(1, k * d, d);
        // tanh(a) = 2σ(2a) - 1, the doubling done in the weight.
        let fresh = gate(0) * gate(2).mul_scalar(2.0).sub_scalar(1.0);
        let c = match state {
            Some((_, c)) => gate(1) * c + fresh,
            None => fresh,
        };
        let tanh_c = sigmoid(c.clone().mul_scalar(2.0))
            .mul_scalar(2.0)
            .sub_scalar(1.0);
        (gate(3) * tanh_c, c)
    }

    /// Runs the layer over a `[batch, seq, d_input]` window by the fused operation (only where
    /// [`fused::supports`] it). Returns every step's hidden state `[batch, seq, hidden]`.
    fn forward_fused(&self, x: Tensor<3>) -> Tensor<3> {
        let zero_bias = || Tensor::zeros([4 * self.d_hidden], &x.device());
        let bias = self.input.bias.as_ref().map_or_else(zero_bias, |b| b.val());
        lstm_fused::lstm_sequence(x, self.input.weight.val(), bias, self.hidden.weight.val())
    }

    /// Runs the layer over `[batch, d_input]` steps; `ones` is `[batch, 1]` of ones. Returns
    /// the hidden state of each step.
    fn forward(&self, steps: Vec<Tensor<2>>, ones: &Tensor<2>) -> Vec<Tensor<2>> {
        let w = self.stacked_weight();
        let mut state = None;
        let mut out = Vec::with_capacity(steps.len());
        for x in steps {
            let x1 = Tensor::cat(vec![x, ones.clone()], 1);
            let (h, c) = self.step(&w, x1, state);
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

impl Lstm {
    /// The top layer's last hidden state `[batch, hidden]`, before the final dropout.
    fn encode(&self, x: Tensor<3>) -> Tensor<2> {
        let [batch, seq, features] = x.dims();
        if fused::supports(&x) && seq > 0 {
            let mut sequence = x;
            for (i, layer) in self.layers.iter().enumerate() {
                if i > 0 {
                    // Dropout between layers, as in PyTorch's `nn.LSTM`.
                    sequence = self.dropout.forward(sequence);
                }
                sequence = layer.forward_fused(sequence);
            }
            let hidden = sequence.dims()[2];
            return sequence.narrow(1, seq - 1, 1).reshape([batch, hidden]);
        }
        let ones = x
            .clone()
            .narrow(1, 0, 1)
            .narrow(2, 0, 1)
            .reshape([batch, 1])
            .ones_like();
        let mut steps: Vec<Tensor<2>> = (0..seq)
            .map(|t| x.clone().narrow(1, t, 1).reshape([batch, features]))
            .collect();
        for (i, layer) in self.layers.iter().enumerate() {
            if i > 0 {
                // Dropout between layers, as in PyTorch's `nn.LSTM`.
                steps = steps.into_iter().map(|s| self.dropout.forward(s)).collect();
            }
            steps = layer.forward(steps, &ones);
        }
        // An empty window (never built: `Dims` requires a step) summarises to zeros.
        steps
            .pop()
            .unwrap_or_else(|| Tensor::zeros([batch, self.d_hidden], &x.device()))
    }
}

impl Forecaster for Lstm {
    fn forward(&self, x: Tensor<3>) -> Forecast {
        let last = self.encode(x);
        self.heads.forward(self.dropout.forward(last))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;
    use burn::tensor::activation::tanh;

    /// The textbook cell on the same parameters: two matmuls, three sigmoids, two tanhs.
    fn reference_step(
        layer: &LstmLayer,
        x: Tensor<2>,
        state: Option<(Tensor<2>, Tensor<2>)>,
    ) -> (Tensor<2>, Tensor<2>) {
        let d = layer.d_hidden;
        let gates = match &state {
            Some((h, _)) => layer.input.forward(x) + layer.hidden.forward(h.clone()),
            None => layer.input.forward(x),
        };
        let gate = |k: usize| gates.clone().narrow(1, k * d, d);
        let fresh = sigmoid(gate(0)) * tanh(gate(2));
        let c = match state {
            Some((_, c)) => sigmoid(gate(1)) * c + fresh,
            None => fresh,
        };
        (sigmoid(gate(3)) * tanh(c.clone()), c)
    }

    fn reference_forward(layer: &LstmLayer, steps: Vec<Tensor<2>>) -> Vec<Tensor<2>> {
        let mut state = None;
        let mut out = Vec::new();
        for x in steps {
            let (h, c) = reference_step(layer, x, state);
            out.push(h.clone());
            state = Some((h, c));
        }
        out
    }

    fn max_abs_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        let (a, b) = (
            a.into_data().try_to_vec::<f32>().unwrap(),
            b.into_data().try_to_vec::<f32>().unwrap(),
        );
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    /// flex's sigmoid is the vectorised one of `vendor/burn-flex` (see ARCHITECTURE.md):
    /// within 3e-7 relative of the libm formula everywhere, saturating cleanly, and the same
    /// bits whether the tensor is owned (in place) or shared or strided (copied).
    #[test]
    fn sigmoid_is_accurate_and_the_same_on_every_path() {
        let device = Device::flex();
        let xs: Vec<f32> = (-4000..=4000).map(|i| i as f32 * 0.025).collect();
        let n = xs.len();
        let owned: Tensor<1> = Tensor::from_data(TensorData::new(xs.clone(), [n]), &device);
        let kept = owned.clone();
        let shared = sigmoid(owned.clone())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let in_place = sigmoid(owned).into_data().try_to_vec::<f32>().unwrap();
        let strided: Tensor<2> = kept.reshape([n / 3, 3]).transpose();
        let strided = sigmoid(strided).transpose().reshape([n]);
        let strided = strided.into_data().try_to_vec::<f32>().unwrap();
        for (i, &x) in xs.iter().enumerate() {
            let libm = if x >= 0.0 {
                1.0 / (1.0 + libm::exp(-x as f64))
            } else {
                let e = libm::exp(x as f64);
                e / (1.0 + e)
            };
            let got = in_place[i] as f64;
            let tolerance = 3e-7 * libm + f32::MIN_POSITIVE as f64;
            assert!(
                (got - libm).abs() <= tolerance,
                "sigmoid({x}) = {got}, not {libm}"
            );
            assert_eq!(in_place[i].to_bits(), shared[i].to_bits(), "{x}: shared");
            assert_eq!(in_place[i].to_bits(), strided[i].to_bits(), "{x}: strided");
        }
        assert_eq!(in_place[n - 1], 1.0);
        assert!(in_place[0] >= 0.0 && in_place[0] < 1e-38);
    }

    /// Checks `layer_under_test` (steps in, steps out) against the textbook cell: outputs and
    /// every gradient agree to float tolerance.
    fn assert_matches_the_textbook_cell(
        layer_under_test: impl Fn(&LstmLayer, &Tensor<3>) -> Vec<Tensor<2>>,
    ) {
        let device = Device::flex().autodiff();
        let (batch, seq, d_in, d) = (5, 7, 3, 6);
        let _rng = super::super::rng_lock();
        device.seed(11);
        let mut layer = LstmLayer::new(d_in, d, &device);
        // Weights large enough to saturate some gates.
        let scaled = |p: &Param<Tensor<2>>| Param::from_tensor(p.val().mul_scalar(3.0).detach());
        layer.input.weight = scaled(&layer.input.weight);
        layer.hidden.weight = scaled(&layer.hidden.weight);
        let x: Tensor<3> =
            Tensor::random([batch, seq, d_in], Distribution::Normal(0.0, 1.0), &device)
                .require_grad();
        let steps = |x: &Tensor<3>| -> Vec<Tensor<2>> {
            (0..seq)
                .map(|t| x.clone().narrow(1, t, 1).reshape([batch, d_in]))
                .collect()
        };
        // A loss that weighs every step and unit differently.
        let weights: Tensor<2> =
            Tensor::random([batch, d], Distribution::Normal(0.0, 1.0), &device);
        let loss = |out: Vec<Tensor<2>>| -> Tensor<1> {
            out.into_iter()
                .enumerate()
                .map(|(t, h)| (h * weights.clone()).sum().mul_scalar(1.0 + t as f64))
                .reduce(|a, b| a + b)
                .unwrap()
        };
        let tested_out = layer_under_test(&layer, &x);
        let plain_out = reference_forward(&layer, steps(&x));
        assert_eq!(tested_out.len(), plain_out.len());
        for (a, b) in tested_out.iter().zip(&plain_out) {
            let diff = max_abs_diff(a.clone().inner(), b.clone().inner());
            assert!(diff < 1e-5, "forward differs by {diff}");
        }
        let g_tested = loss(tested_out).backward();
        let g_plain = loss(plain_out).backward();
        let grads = |g: &burn::tensor::Gradients| {
            (
                layer.input.weight.val().grad(g).unwrap(),
                layer.input.bias.as_ref().unwrap().val().grad(g).unwrap(),
                layer.hidden.weight.val().grad(g).unwrap(),
                x.grad(g).unwrap(),
            )
        };
        let (a, b) = (grads(&g_tested), grads(&g_plain));
        let scale = max_abs_diff(b.0.clone(), b.0.zeros_like()).max(1.0);
        for (name, diff) in [
            ("input.weight", max_abs_diff(a.0, b.0)),
            ("input.bias", max_abs_diff(a.1, b.1)),
            ("hidden.weight", max_abs_diff(a.2, b.2)),
            ("x", max_abs_diff(a.3, b.3)),
        ] {
            assert!(
                diff < 2e-5 * scale,
                "gradient of {name} differs by {diff} (scale {scale})"
            );
        }
    }

    /// The composed layer (one GEMM and one sigmoid over the gates per step, tanh by sigmoid),
    /// which devices other than flex run.
    #[test]
    fn composed_layer_matches_the_textbook_cell_outputs_and_gradients() {
        assert_matches_the_textbook_cell(|layer, x| {
            let [batch, seq, d_in] = x.dims();
            let steps = (0..seq)
                .map(|t| x.clone().narrow(1, t, 1).reshape([batch, d_in]))
                .collect();
            layer.forward(steps, &Tensor::ones([batch, 1], &x.device()))
        });
    }

    /// The fused operation with its own backward pass (`lstm_fused.rs`).
    #[test]
    fn fused_layer_matches_the_textbook_cell_outputs_and_gradients() {
        assert_matches_the_textbook_cell(|layer, x| {
            assert!(fused::supports(x));
            let out = layer.forward_fused(x.clone());
            let [batch, seq, d] = out.dims();
            (0..seq)
                .map(|t| out.clone().narrow(1, t, 1).reshape([batch, d]))
                .collect()
        });
    }

    /// Inference (no autodiff) gives the same bits as a training forward pass.
    #[test]
    fn fused_layer_without_autodiff_gives_the_same_outputs() {
        let device = Device::flex().autodiff();
        let _rng = super::super::rng_lock();
        device.seed(5);
        let layer = LstmLayer::new(4, 8, &device);
        let x: Tensor<3> = Tensor::random([3, 6, 4], Distribution::Normal(0.0, 1.0), &device);
        let tracked = layer.forward_fused(x.clone().require_grad()).into_data();
        let plain_x: Tensor<3> = Tensor::from_data(x.into_data(), &Device::flex());
        let plain = layer.valid().forward_fused(plain_x).into_data();
        assert_eq!(plain, tracked);
    }
}
