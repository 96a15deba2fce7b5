//! Data parallel: one micro-batch's loss and gradients, split into one shard per device,
//! each shard differentiated on its own replica of the weights and the gradients summed
//! (all-reduced) onto the first device. With one device this is the plain single-device
//! step, bit for bit.

use burn::optim::GradientsParams;
use burn::tensor::{Device, FloatDType};

use super::TrainError;
use super::batches::{Batch, Targets};
use super::precision::to_f32;
use crate::config::ModelConfig;
use crate::data::Split;
use crate::model::{self, Dims, Net};

/// A replica of `net`'s weights on each of `devices` (with autodiff), in `dtype` when set:
/// each data-parallel shard differentiates on its own device. The parameter ids are the
/// master's (path ids), so shard gradients add up under the master's ids.
pub(super) fn replicate(
    net: &dyn Net,
    model_cfg: &ModelConfig,
    dims: Dims,
    devices: &[Device],
    dtype: Option<FloatDType>,
) -> Result<Vec<Box<dyn Net>>, TrainError> {
    if devices.is_empty() {
        return Ok(Vec::new());
    }
    // `Net` moves between devices through its byte-stable record: loading draws nothing.
    let weights = net.weights()?;
    devices
        .iter()
        .map(|device| {
            let replica = model::load(model_cfg, dims, &weights, device)?.with_path_ids();
            Ok(match dtype {
                Some(dtype) => replica.cast(dtype),
                None => replica,
            })
        })
        .collect()
}

/// One micro-batch of an optimizer step, and what its loss is weighted by.
pub(super) struct MicroBatch<'a> {
    pub(super) split: &'a Split,
    pub(super) indices: &'a [usize],
    pub(super) dims: Dims,
    pub(super) targets: &'a Targets,
    /// The forward pass's float format (`None`: f32).
    pub(super) dtype: Option<FloatDType>,
    /// Windows in the whole optimizer step (all its micro-batches).
    pub(super) step_windows: usize,
    pub(super) loss_scale: f64,
}

impl MicroBatch<'_> {
    /// The micro-batch's share of the step loss and its gradients, on the first shard's
    /// device. The windows are split into one contiguous shard per `(net, device)` (fewer
    /// when there are fewer windows); each shard's mean loss is weighted by its share of the
    /// step's windows before `backward`, so the summed shard gradients (the all-reduce) are
    /// the average over all windows: the full-batch gradient up to float summation order.
    /// With one shard this is exactly the single-device computation. `Err` holds a
    /// non-finite loss.
    pub(super) fn gradients(
        &self,
        master: &dyn Net,
        shards: &[(&dyn Net, &Device)],
    ) -> Result<(f64, GradientsParams), f64> {
        // Only a data-parallel step moves gradients between devices.
        let params = if shards.len() > 1 {
            master.params()
        } else {
            Vec::new()
        };
        let per_shard = self.indices.len().div_ceil(shards.len().max(1)).max(1);
        let mut total: Option<(f64, GradientsParams)> = None;
        for (k, (indices, &(net, device))) in self.indices.chunks(per_shard).zip(shards).enumerate()
        {
            let batch = Batch::gather(self.split, indices, self.dims, self.targets, device);
            let x = match self.dtype {
                Some(dtype) => batch.x.cast(dtype),
                None => batch.x,
            };
            // The loss is computed in f32 whatever the precision of the forward pass.
            let out = to_f32(net.train_forward(x, batch.y.clone()), self.dtype);
            let loss = self.targets.train_loss(out, batch.y, batch.q);
            let value = f64::from(loss.clone().into_scalar::<f32>());
            if !value.is_finite() {
                return Err(value);
            }
            let share = indices.len() as f64 / self.step_windows as f64;
            let weight = share * self.loss_scale;
            let loss = if weight == 1.0 {
                loss
            } else {
                loss.mul_scalar(weight)
            };
            let mut more = net.gradients(loss.backward());
            if self.dtype.is_some() {
                more = master.cast_gradients(more, FloatDType::F32, 1.0 / self.loss_scale);
            }
            if k > 0 {
                // All-reduce onto the first device, where the optimizer steps.
                if let Some(&(_, first)) = shards.first() {
                    more = move_gradients(more, &params, first);
                }
            }
            total = Some(match total {
                Some((sum, grads)) => (sum + value * share, master.add_gradients(grads, more)),
                None => (value * share, more),
            });
        }
        Ok(total.unwrap_or_else(|| (0.0, GradientsParams::new())))
    }
}

/// `grads` with every parameter's gradient moved to `device`.
fn move_gradients(
    mut grads: GradientsParams,
    params: &[model::ParamMeta],
    device: &Device,
) -> GradientsParams {
    fn moved<const D: usize>(
        grads: &mut GradientsParams,
        id: burn::module::ParamId,
        device: &Device,
    ) {
        if let Some(g) = grads.remove::<D>(id) {
            grads.register::<D>(id, g.to_device(device));
        }
    }
    for p in params {
        match p.rank {
            1 => moved::<1>(&mut grads, p.id, device),
            2 => moved::<2>(&mut grads, p.id, device),
            3 => moved::<3>(&mut grads, p.id, device),
            4 => moved::<4>(&mut grads, p.id, device),
            5 => moved::<5>(&mut grads, p.id, device),
            _ => moved::<6>(&mut grads, p.id, device),
        }
    }
    grads
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::cfg;
    use crate::train::tests::{flat_grad, quiet, targets, toy_dataset};

    /// The data-parallel gradient path, run with N logical shards on one flex device (the
    /// config refuses N > 1 on cpu; the arithmetic is the same on any device): weights
    /// replicated through `replicate`, shard gradients moved and summed, equal the
    /// full-batch gradient within float tolerance. One shard is bit-identical to the
    /// single-device computation written out (forward, loss, backward on the whole batch).
    #[test]
    fn sharded_gradients_average_to_the_full_batch_gradient() {
        let data = toy_dataset([11, 0, 0], 5);
        let dims = Dims::of(&data);
        let targets = targets(&data, 0.1);
        // 11 windows: shards of uneven sizes (6 + 5, 4 + 4 + 3, ...).
        let indices: Vec<usize> = (0..11).collect();
        for kind in ["mlp", "lstm"] {
            let model_cfg = quiet(cfg(kind));
            let device = Device::flex().autodiff();
            let net = model::build(&model_cfg, dims, 7, &device).unwrap();
            let params = net.params();
            let micro = MicroBatch {
                split: &data.train,
                indices: &indices,
                dims,
                targets: &targets,
                dtype: None,
                step_windows: indices.len(),
                loss_scale: 1.0,
            };
            let batch = Batch::gather(&data.train, &indices, dims, &targets, &device);
            let out = net.train_forward(batch.x, batch.y.clone());
            let loss = targets.train_loss(out, batch.y, batch.q);
            let value = f64::from(loss.clone().into_scalar::<f32>());
            let full = net.gradients(loss.backward());

            let (one_value, one) = micro
                .gradients(net.as_ref(), &[(net.as_ref(), &device)])
                .unwrap();
            assert_eq!(one_value.to_bits(), value.to_bits(), "{kind}");
            for p in &params {
                let (a, b) = (flat_grad(&one, p), flat_grad(&full, p));
                assert!(!a.is_empty(), "{kind}: no gradient for {}", p.path);
                let same = a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(
                    same,
                    "{kind}: one shard differs from one device at {}",
                    p.path
                );
            }

            for n in [2, 3, 4, 11] {
                let further = vec![Device::flex().autodiff(); n - 1];
                let replicas = replicate(net.as_ref(), &model_cfg, dims, &further, None).unwrap();
                let mut shards: Vec<(&dyn Net, &Device)> = vec![(net.as_ref(), &device)];
                shards.extend(replicas.iter().map(|r| r.as_ref()).zip(&further));
                let (sharded_value, sharded) = micro.gradients(net.as_ref(), &shards).unwrap();
                assert!(
                    (sharded_value - value).abs() <= 1e-6 * value.abs(),
                    "{kind}, {n} shards: loss {sharded_value} vs {value}"
                );
                for p in &params {
                    let (a, b) = (flat_grad(&sharded, p), flat_grad(&full, p));
                    assert_eq!(a.len(), b.len(), "{kind}, {n} shards: {}", p.path);
                    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-3);
                    let worst = a
                        .iter()
                        .zip(&b)
                        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
                    assert!(
                        worst <= 1e-5 * scale,
                        "{kind}, {n} shards: {} differs by {worst} (scale {scale})",
                        p.path
                    );
                }
            }
        }
    }
}
