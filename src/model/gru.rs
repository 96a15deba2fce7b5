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
use burn::tensor::activation::sigmoid;
use burn::tensor::{DType, Device, FloatDType, Tensor, TensorData};

use super::{Dims, Forecast, Forecaster, Heads, ModelError, Net, fused, gru_fused};
use crate::config::ModelConfig;

/// One GRU layer; gates are ordered reset, update, candidate.
///
/// Computed as `lstm.rs` computes its cell: each projection is one GEMM of `[x, 1]` (or
/// `[h, 1]`) with the bias as the weight's last row, built once per forward pass with the
/// candidate's columns doubled so that `2σ(2a) - 1` gives its tanh (flex's scalar `tanhf`,
/// recomputed again in the backward pass, costs about five `expf`); one sigmoid covers both
/// the reset and update gates. `reference_step` (tests) is the plain formulation.
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

    /// `[W; b]` `[d_in + 1, 3 * d_hidden]` of `linear` with the candidate's columns doubled
    /// (exact in floating point).
    fn stacked(&self, linear: &Linear) -> Tensor<2> {
        let d = self.d_hidden;
        let w = linear.weight.val();
        let b = match &linear.bias {
            Some(b) => b.val().reshape([1, 3 * d]),
            None => w.clone().narrow(0, 0, 1).zeros_like(),
        };
        let w = Tensor::cat(vec![w, b], 0);
        let scale: Vec<f32> = (0..3 * d)
            .map(|i| if i / d == 2 { 2.0 } else { 1.0 })
            .collect();
        let scale: Tensor<2> = Tensor::from_data(TensorData::new(scale, [1, 3 * d]), &w.device());
        // In the weights' dtype, so that reduced-precision passes stay in one format.
        let scale = match w.dtype() {
            DType::F32 => scale,
            dtype => scale.cast(FloatDType::from(dtype)),
        };
        w * scale
    }

    /// One step: the new hidden state from `x1` (the input with a trailing column of ones)
    /// and the previous state (zeros at the first step, where the hidden projection reduces
    /// to its bias); `wi`, `wh` are [`stacked`](GruLayer::stacked) `input` and `hidden`.
    fn step(
        &self,
        wi: &Tensor<2>,
        wh: &Tensor<2>,
        x1: Tensor<2>,
        ones: &Tensor<2>,
        h: Option<Tensor<2>>,
    ) -> Tensor<2> {
        let d = self.d_hidden;
        let xi = x1.matmul(wi.clone());
        let hh = match &h {
            Some(h) => Tensor::cat(vec![h.clone(), ones.clone()], 1).matmul(wh.clone()),
            None => ones.clone().matmul(wh.clone().narrow(0, d, 1)),
        };
        let rz = sigmoid(xi.clone().narrow(1, 0, 2 * d) + hh.clone().narrow(1, 0, 2 * d));
        let r = rz.clone().narrow(1, 0, d);
        let z = rz.narrow(1, d, d);
        // tanh(a) = 2σ(2a) - 1, the doubling done in the weights.
        let n = sigmoid(xi.narrow(1, 2 * d, d) + r * hh.narrow(1, 2 * d, d))
            .mul_scalar(2.0)
            .sub_scalar(1.0);
        match h {
            // (1 - z) n + z h = n + z (h - n)
            Some(h) => n.clone() + z * (h - n),
            None => n.clone() - z * n,
        }
    }

    /// Runs the layer over a `[batch, seq, d_input]` window by the fused operation (only where
    /// [`fused::supports`] it). Returns every step's hidden state `[batch, seq, hidden]`.
    fn forward_fused(&self, x: Tensor<3>) -> Tensor<3> {
        let bias = |linear: &Linear| match &linear.bias {
            Some(b) => b.val(),
            None => Tensor::zeros([3 * self.d_hidden], &x.device()),
        };
        gru_fused::gru_sequence(
            x.clone(),
            self.input.weight.val(),
            bias(&self.input),
            self.hidden.weight.val(),
            bias(&self.hidden),
        )
    }

    /// Runs the layer over `[batch, d_input]` steps; `ones` is `[batch, 1]` of ones. Returns
    /// the hidden state of each step.
    fn forward(&self, steps: Vec<Tensor<2>>, ones: &Tensor<2>) -> Vec<Tensor<2>> {
        let (wi, wh) = (self.stacked(&self.input), self.stacked(&self.hidden));
        let mut h = None;
        let mut out = Vec::with_capacity(steps.len());
        for x in steps {
            let x1 = Tensor::cat(vec![x, ones.clone()], 1);
            let next = self.step(&wi, &wh, x1, ones, h);
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
        if fused::supports(&x) && seq > 0 {
            let mut sequence = x;
            for (i, layer) in self.layers.iter().enumerate() {
                if i > 0 {
                    // Dropout between layers, as in PyTorch's `nn.GRU`.
                    sequence = self.dropout.forward(sequence);
                }
                sequence = layer.forward_fused(sequence);
            }
            let last = sequence
                .narrow(1, seq - 1, 1)
                .reshape([batch, self.d_hidden]);
            return self.heads.forward(self.dropout.forward(last));
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
                steps = steps.into_iter().map(|s| self.dropout.forward(s)).collect();
            }
            steps = layer.forward(steps, &ones);
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
    use burn::module::Param;
    use burn::tensor::activation::tanh;
    use burn::tensor::{Distribution, TensorData};

    /// The plain formulation on the same parameters: two linears, two sigmoids, one tanh.
    fn reference_step(layer: &GruLayer, x: Tensor<2>, h: Option<Tensor<2>>) -> Tensor<2> {
        let d = layer.d_hidden;
        let xi = layer.input.forward(x);
        let hh = match &h {
            Some(h) => layer.hidden.forward(h.clone()),
            None => layer
                .hidden
                .forward(xi.clone().narrow(1, 0, d).zeros_like()),
        };
        let part = |t: &Tensor<2>, k: usize| t.clone().narrow(1, k * d, d);
        let r = sigmoid(part(&xi, 0) + part(&hh, 0));
        let z = sigmoid(part(&xi, 1) + part(&hh, 1));
        let n = tanh(part(&xi, 2) + r * part(&hh, 2));
        match h {
            Some(h) => n.clone() + z * (h - n),
            None => n.clone() - z * n,
        }
    }

    /// One step of a 1-unit GRU against the equations evaluated by hand.
    #[test]
    fn cell_matches_the_gru_equations() {
        let device = Device::flex();
        let mut layer = GruLayer::new(1, 1, &device);
        let set = |l: &mut Linear, w: [f32; 3], b: [f32; 3]| {
            l.weight = Param::from_data(TensorData::new(w.to_vec(), [1, 3]), &device);
            l.bias = Some(Param::from_data(TensorData::new(b.to_vec(), [3]), &device));
        };
        set(&mut layer.input, [0.5, -1.0, 2.0], [0.1, 0.2, 0.3]);
        set(&mut layer.hidden, [1.5, 0.25, -0.5], [-0.1, 0.0, 0.4]);
        let (x, h) = (0.7f64, -0.3f64);
        let sig = |v: f64| 1.0 / (1.0 + libm::exp(-v));
        let r = sig(0.5 * x + 0.1 + 1.5 * h - 0.1);
        let z = sig(-x + 0.2 + 0.25 * h);
        let n = libm::tanh(2.0 * x + 0.3 + r * (-0.5 * h + 0.4));
        let want = (1.0 - z) * n + z * h;
        let one = |v: f64| Tensor::<2>::from_data(TensorData::new(vec![v as f32], [1, 1]), &device);
        let (wi, wh) = (layer.stacked(&layer.input), layer.stacked(&layer.hidden));
        let x1 = Tensor::cat(vec![one(x), one(1.0)], 1);
        let got = layer.step(&wi, &wh, x1, &one(1.0), Some(one(h)));
        let got = f64::from(got.into_scalar::<f32>());
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }

    fn max_abs_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        let a = a.into_data().try_to_vec::<f32>().unwrap();
        let b = b.into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    /// Checks `layer_under_test` (a window in, steps out) against the plain cell: outputs and
    /// every gradient agree to float tolerance.
    fn assert_matches_the_plain_cell(
        layer_under_test: impl Fn(&GruLayer, &Tensor<3>) -> Vec<Tensor<2>>,
    ) {
        let device = Device::flex().autodiff();
        let (batch, seq, d_in, d) = (5, 7, 3, 6);
        let _rng = super::super::rng_lock();
        device.seed(12);
        let mut layer = GruLayer::new(d_in, d, &device);
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
        let weights: Tensor<2> =
            Tensor::random([batch, d], Distribution::Normal(0.0, 1.0), &device);
        let loss = |out: Vec<Tensor<2>>| -> Tensor<1> {
            out.into_iter()
                .enumerate()
                .map(|(t, h)| (h * weights.clone()).sum().mul_scalar(1.0 + t as f64))
                .reduce(|a, b| a + b)
                .unwrap()
        };
        let fused_out = layer_under_test(&layer, &x);
        let mut h = None;
        let mut plain_out = Vec::new();
        for s in steps(&x) {
            let next = reference_step(&layer, s, h);
            plain_out.push(next.clone());
            h = Some(next);
        }
        assert_eq!(fused_out.len(), plain_out.len());
        for (a, b) in fused_out.iter().zip(&plain_out) {
            let diff = max_abs_diff(a.clone().inner(), b.clone().inner());
            assert!(diff < 1e-5, "forward differs by {diff}");
        }
        let g_fused = loss(fused_out).backward();
        let g_plain = loss(plain_out).backward();
        let grads = |g: &burn::tensor::Gradients| {
            let bias = |l: &Linear| l.bias.as_ref().unwrap().val().grad(g).unwrap();
            (
                [
                    layer.input.weight.val().grad(g).unwrap(),
                    layer.hidden.weight.val().grad(g).unwrap(),
                ],
                [bias(&layer.input), bias(&layer.hidden)],
                x.grad(g).unwrap(),
            )
        };
        let (a, b) = (grads(&g_fused), grads(&g_plain));
        let scale = max_abs_diff(b.0[0].clone(), b.0[0].zeros_like()).max(1.0);
        let mut diffs = vec![("x", max_abs_diff(a.2, b.2))];
        for (name, (p, q)) in ["input.weight", "hidden.weight"]
            .into_iter()
            .zip(a.0.into_iter().zip(b.0))
        {
            diffs.push((name, max_abs_diff(p, q)));
        }
        for (name, (p, q)) in ["input.bias", "hidden.bias"]
            .into_iter()
            .zip(a.1.into_iter().zip(b.1))
        {
            diffs.push((name, max_abs_diff(p, q)));
        }
        for (name, diff) in diffs {
            assert!(
                diff < 2e-5 * scale,
                "gradient of {name} differs by {diff} (scale {scale})"
            );
        }
    }

    /// The composed layer (stacked weights, tanh by sigmoid), which devices other than flex
    /// run.
    #[test]
    fn composed_layer_matches_the_plain_cell_outputs_and_gradients() {
        assert_matches_the_plain_cell(|layer, x| {
            let [batch, seq, d_in] = x.dims();
            let steps = (0..seq)
                .map(|t| x.clone().narrow(1, t, 1).reshape([batch, d_in]))
                .collect();
            layer.forward(steps, &Tensor::ones([batch, 1], &x.device()))
        });
    }

    /// The fused operation with its own backward pass (`gru_fused.rs`).
    #[test]
    fn fused_layer_matches_the_plain_cell_outputs_and_gradients() {
        assert_matches_the_plain_cell(|layer, x| {
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
        let layer = GruLayer::new(4, 8, &device);
        let x: Tensor<3> = Tensor::random([3, 6, 4], Distribution::Normal(0.0, 1.0), &device);
        let tracked = layer.forward_fused(x.clone().require_grad()).into_data();
        let plain_x: Tensor<3> = Tensor::from_data(x.into_data(), &Device::flex());
        let plain = layer.valid().forward_fused(plain_x).into_data();
        assert_eq!(plain, tracked);
    }
}
