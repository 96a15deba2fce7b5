//! Reduced precision: the forward and backward passes in bf16 or f16 on a working copy of
//! the f32 master weights, the loss in f32, and dynamic loss scaling for f16.

use burn::tensor::{FloatDType, Tensor};

use crate::model::{PriceTerm, TrainForecast};

/// A model's training outputs in f32, for the loss.
pub(super) fn to_f32(out: TrainForecast, dtype: Option<FloatDType>) -> TrainForecast {
    if dtype.is_none() {
        return out;
    }
    let f32 = |t: Tensor<2>| t.cast(FloatDType::F32);
    TrainForecast {
        action: f32(out.action),
        price: match out.price {
            PriceTerm::Forecast(p) => PriceTerm::Forecast(f32(p)),
            PriceTerm::Loss(l) => PriceTerm::Loss(l.cast(FloatDType::F32)),
        },
    }
}

/// Dynamic loss scaling for f16, whose range is too small for raw gradients: the loss is
/// multiplied by `scale` before the backward pass and the gradients divided by it after.
/// An overflow halves the scale and skips the step; 2000 clean steps in a row double it.
/// Other precisions use a fixed scale of 1, and an overflow is a divergence.
#[derive(Debug)]
pub(super) struct LossScale {
    dynamic: bool,
    pub(super) scale: f64,
    pub(super) clean_steps: usize,
}

impl LossScale {
    const INITIAL: f64 = 65_536.0;
    const GROWTH_INTERVAL: usize = 2000;

    pub(super) fn new(dtype: Option<FloatDType>) -> LossScale {
        let dynamic = dtype == Some(FloatDType::F16);
        LossScale {
            dynamic,
            scale: if dynamic { Self::INITIAL } else { 1.0 },
            clean_steps: 0,
        }
    }

    /// After an overflow: whether to skip the step and retry at half the scale (`false`:
    /// the overflow is a divergence).
    pub(super) fn back_off(&mut self) -> bool {
        if !self.dynamic || self.scale <= 1.0 {
            return false;
        }
        self.scale /= 2.0;
        self.clean_steps = 0;
        true
    }

    pub(super) fn grow(&mut self) {
        if !self.dynamic {
            return;
        }
        self.clean_steps += 1;
        if self.clean_steps == Self::GROWTH_INTERVAL {
            self.scale = (self.scale * 2.0).min(Self::INITIAL * 256.0);
            self.clean_steps = 0;
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{DType, Device};

    use crate::config::TrainingConfig;
    use crate::config::sections::Precision;
    use crate::model::tests::{label, pools_mean, variants};
    use crate::model::{self, Dims};
    use crate::train::Checkpoint;
    use crate::train::tests::{in_pool, opt, quiet, run, tcfg, toy_dataset};

    /// bf16 and f16 forward/backward passes on flex, with f32 master weights: every model
    /// trains, the loss falls, runs are bit-identical across thread counts, and the
    /// checkpoint holds f32 weights that differ from the f32 run's.
    #[test]
    fn reduced_precision_trains_every_model_deterministically() {
        let data = toy_dataset([32, 8, 0], 16);
        let models = variants().into_iter().filter(|m| !pools_mean(m));
        for m in models {
            let m = quiet(m);
            let f32_run = run(&data, &m, &opt(1e-2), &tcfg(10, 8), 3).unwrap();
            for precision in [Precision::Bf16, Precision::F16] {
                let name = format!("{} in {}", label(&m), precision.name());
                let t = TrainingConfig {
                    precision,
                    ..tcfg(10, 8)
                };
                let in_pool = |threads: usize| {
                    in_pool(threads, || run(&data, &m, &opt(1e-2), &t, 3))
                        .unwrap_or_else(|e| panic!("{name}: {e}"))
                };
                let one = in_pool(1);
                let (first, last) = (&one.log.epochs[0], &one.log.epochs[9]);
                assert!(
                    last.train_loss < 0.9 * first.train_loss,
                    "{name}: {} -> {}",
                    first.train_loss,
                    last.train_loss
                );
                // f16 may skip a few steps while the loss scale finds its level; bf16 has
                // f32's range and never does.
                let skipped = one.log.skipped_steps;
                match precision {
                    Precision::F16 => assert!(skipped < 10, "{name}: {skipped} skipped"),
                    _ => assert_eq!(skipped, 0, "{name}"),
                }
                assert!(
                    one.checkpoint == in_pool(2).checkpoint,
                    "{name}: threads differ"
                );
                let ckpt = Checkpoint::decode(&one.checkpoint).unwrap();
                let net = model::load(&m, Dims::of(&data), &ckpt.weights, &Device::flex()).unwrap();
                for p in net.flat_params().values() {
                    assert_eq!(p.dtype(), DType::F32, "{name}: master weights are f32");
                }
                assert!(one.checkpoint != f32_run.checkpoint, "{name}: same as f32");
            }
        }
    }

    #[test]
    fn f16_loss_scale_backs_off_on_overflow_and_grows_back() {
        let mut s = LossScale::new(Some(FloatDType::F16));
        assert_eq!(s.scale, 65_536.0);
        assert!(s.back_off());
        assert_eq!(s.scale, 32_768.0);
        for _ in 0..LossScale::GROWTH_INTERVAL {
            s.grow();
        }
        assert_eq!(s.scale, 65_536.0);
        while s.scale > 1.0 {
            assert!(s.back_off());
        }
        assert!(!s.back_off(), "at scale 1 an overflow is a divergence");
        // bf16 and f32 never scale: an overflow is a divergence.
        let mut fixed = LossScale::new(Some(FloatDType::BF16));
        assert_eq!(fixed.scale, 1.0);
        assert!(!fixed.back_off());
    }
}
