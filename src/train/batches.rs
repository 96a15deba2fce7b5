//! What the loss is computed on: labels and returns as loss targets (scaled returns,
//! label-smoothed classes), windows gathered into device batches, and the mean loss over
//! a split (validation).

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Tensor, TensorData};

use super::TrainError;
use crate::data::Split;
use crate::model::{self, Dims, Forecast, Net, PriceTerm, TrainForecast};

/// How labels and returns become loss targets.
pub(super) struct Targets {
    pub(super) std: Vec<f32>,
    pub(super) smoothing: f64,
    pub(super) price_weight: f64,
}

impl Targets {
    /// Cross-entropy of the action head against label-smoothed targets `q`, plus
    /// `price_weight` times the MSE of the price head against scaled returns `y`.
    pub(super) fn loss(&self, out: Forecast, y: Tensor<2>, q: Tensor<2>) -> Tensor<1> {
        let ce = (log_softmax(out.action, 1) * q).sum_dim(1).mean().neg();
        let mse = (out.price - y).square().mean();
        ce + mse.mul_scalar(self.price_weight)
    }

    /// [`loss`](Targets::loss) of a training pass: the price term is the squared error of
    /// a point forecast, or the model's own loss (a diffusion model's noise error).
    pub(super) fn train_loss(&self, out: TrainForecast, y: Tensor<2>, q: Tensor<2>) -> Tensor<1> {
        let ce = (log_softmax(out.action, 1) * q).sum_dim(1).mean().neg();
        let price = match out.price {
            PriceTerm::Forecast(p) => (p - y).square().mean(),
            PriceTerm::Loss(l) => l,
        };
        ce + price.mul_scalar(self.price_weight)
    }
}

/// Standard deviation of each horizon's train returns; 1 where it is 0 or undefined, so
/// scaling never divides by zero.
pub(super) fn target_std(split: &Split, horizon: usize) -> Vec<f32> {
    (0..horizon)
        .map(|h| {
            let values = split
                .y
                .iter()
                .skip(h)
                .step_by(horizon)
                .map(|&v| f64::from(v));
            let n = split.n as f64;
            let mean = values.clone().sum::<f64>() / n;
            let var = values.map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
            let std = var.sqrt();
            if std.is_finite() && std > 1e-12 {
                std as f32
            } else {
                1.0
            }
        })
        .collect()
}

/// A batch on the device: windows, scaled returns, smoothed label distributions.
pub(super) struct Batch {
    pub(super) x: Tensor<3>,
    pub(super) y: Tensor<2>,
    pub(super) q: Tensor<2>,
}

impl Batch {
    pub(super) fn gather(
        split: &Split,
        indices: &[usize],
        dims: Dims,
        targets: &Targets,
        device: &Device,
    ) -> Batch {
        let p = dims.horizon;
        let mut y = Vec::with_capacity(indices.len() * p);
        let mut q = Vec::with_capacity(indices.len() * 3);
        let eps = targets.smoothing as f32;
        for &i in indices {
            let row = &split.y[i * p..(i + 1) * p];
            y.extend(row.iter().zip(&targets.std).map(|(v, s)| v / s));
            let label = usize::from(split.action[i]);
            q.extend((0..3).map(|c| eps / 3.0 + if c == label { 1.0 - eps } else { 0.0 }));
        }
        let b = indices.len();
        Batch {
            x: model::windows(split, indices, dims, device),
            y: Tensor::from_data(TensorData::new(y, [b, p]), device),
            q: Tensor::from_data(TensorData::new(q, [b, 3]), device),
        }
    }
}

/// Mean loss over a split with dropout off, in f32 on `device`; `None` for an empty split.
pub(super) fn mean_loss(
    net: &dyn Net,
    split: &Split,
    dims: Dims,
    targets: &Targets,
    device: &Device,
) -> Result<Option<f64>, TrainError> {
    if split.n == 0 {
        return Ok(None);
    }
    let net = net.inference();
    let all: Vec<usize> = (0..split.n).collect();
    let mut sum = 0.0;
    for indices in all.chunks(model::INFERENCE_BATCH) {
        let batch = Batch::gather(split, indices, dims, targets, device);
        let loss = targets.loss(net.forward(batch.x), batch.y, batch.q);
        sum += f64::from(loss.into_scalar::<f32>()) * indices.len() as f64;
    }
    Ok(Some(sum / split.n as f64))
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TrainingConfig;
    use crate::model::tests::{label, variants};
    use crate::optim;
    use crate::train::Checkpoint;
    use crate::train::tests::{flat_grad, opt, quiet, run, targets, tcfg, toy_dataset};

    /// Every parameter gets a non-zero gradient from the training objective (after three
    /// steps: adaLN-Zero layers pass no gradient until their zero weights have moved), and
    /// a handful of windows can be fitted almost exactly: the forecast of the trained model
    /// (for `dit`, the mean of its samples) on them has a loss near zero.
    #[test]
    fn each_model_overfits_a_handful_of_windows() {
        let data = toy_dataset([4, 0, 0], 2);
        let dims = Dims::of(&data);
        let targets = targets(&data, 0.0);
        for m in variants() {
            let kind = label(&m);
            let model_cfg = quiet(m);
            let device = Device::flex().autodiff();
            let mut net = model::build(&model_cfg, dims, 1, &device).unwrap();
            let mut optim = optim::build(&opt(1e-2), &net.params()).unwrap();
            let batch = Batch::gather(&data.train, &[0, 1, 2, 3], dims, &targets, &device);
            // Dropout and diffusion noise draw from burn's process-wide RNG: hold its lock
            // (after `build`, which takes it too) so parallel tests keep their draws.
            let rng = model::rng_lock();
            for step in 0..4 {
                device.seed(step);
                let out = net.train_forward(batch.x.clone(), batch.y.clone());
                let loss = targets.train_loss(out, batch.y.clone(), batch.q.clone());
                let grads = net.gradients(loss.backward());
                if step == 3 {
                    for p in net.params() {
                        let norm: f64 = flat_grad(&grads, &p)
                            .iter()
                            .map(|&v| f64::from(v) * f64::from(v))
                            .sum();
                        assert!(norm > 0.0, "{kind}: no gradient reaches {}", p.path);
                    }
                }
                net = net.step(&mut optim, 1e-2, grads);
            }
            drop(rng);

            // A diffusion model learns the mean only through noise-prediction errors at
            // random noise levels: it needs more steps, and its forecast is an average of
            // samples, not an exact fit.
            let (epochs, tolerance) = if model_cfg.kind == "dit" {
                (400, 0.05)
            } else {
                (150, 0.02)
            };
            // The default sampler: the tests' few samples and steps average too coarsely.
            let model_cfg = crate::model::tests::default_sampler(model_cfg);
            let t = TrainingConfig {
                label_smoothing: 0.0,
                grad_clip: 0.0,
                ..tcfg(epochs, 4)
            };
            let out = run(&data, &model_cfg, &opt(1e-2), &t, 5).unwrap();
            let ckpt = Checkpoint::decode(&out.checkpoint).unwrap();
            let trained = model::load(&model_cfg, dims, &ckpt.weights, &Device::flex()).unwrap();
            let fit = mean_loss(
                trained.as_ref(),
                &data.train,
                dims,
                &targets,
                &Device::flex(),
            )
            .unwrap()
            .unwrap();
            assert!(fit < tolerance, "{kind}: loss on the fitted windows {fit}");
        }
    }
}
