//! Gaussian draws from burn's RNG with the same bits on every machine.
//!
//! burn's `Distribution::Normal` (and `Initializer::Normal`, which uses it) samples with
//! rand_distr's ziggurat, whose tail and wedge tests call the platform's `exp` and `ln`:
//! glibc picks FMA or non-FMA code by CPU, other libms round otherwise. Here two uniform
//! draws (integer bits to float: exact) become a normal by Box-Muller on flex's `log`,
//! `sqrt` and `cos`, which are the `libm` crate's (vendor/burn-flex) or exact.

use burn::module::{Param, ParamId};
use burn::tensor::{Device, Distribution, Shape, Tensor};

/// Standard normal draws of `shape` from burn's RNG (two uniform draws per element, the
/// first for the radius, the second for the angle).
pub fn standard_normal<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
    let radius_draw: Tensor<D> = Tensor::random(shape, Distribution::Default, device);
    let angle_draw: Tensor<D> = Tensor::random(shape, Distribution::Default, device);
    // 1 - u is in (0, 1], so the logarithm is finite.
    let radius = radius_draw
        .neg()
        .add_scalar(1.0)
        .log()
        .mul_scalar(-2.0)
        .sqrt();
    radius * angle_draw.mul_scalar(std::f64::consts::TAU).cos()
}

/// A parameter of `shape` drawn from N(0, std²) when first used, as burn's
/// `Initializer::Normal` would draw it (lazily, so the draws happen in the same order as
/// every other parameter's), but by [`standard_normal`].
pub fn normal_param<const D: usize>(
    shape: [usize; D],
    std: f64,
    device: &Device,
) -> Param<Tensor<D>> {
    Param::uninitialized(
        ParamId::new(),
        move |device, require_grad| {
            let tensor = standard_normal(shape, device).mul_scalar(std);
            if require_grad {
                tensor.require_grad()
            } else {
                tensor
            }
        },
        device.clone(),
        true,
        Shape::from(shape),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_have_the_moments_of_a_standard_normal() {
        let device = Device::flex();
        let _rng = crate::model::rng_lock();
        device.seed(7);
        let n = 200_000;
        let z: Vec<f32> = standard_normal([n], &device)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let mean = z.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
        let var = z
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n as f64;
        let tail = z.iter().filter(|v| v.abs() > 1.96).count() as f64 / n as f64;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.01, "variance {var}");
        assert!((tail - 0.05).abs() < 0.003, "P(|z| > 1.96) = {tail}");
        assert!(z.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn a_normal_parameter_is_drawn_with_its_std() {
        let device = Device::flex();
        let _rng = crate::model::rng_lock();
        device.seed(3);
        let p = normal_param([64, 32], 0.02, &device);
        let values: Vec<f32> = p.val().into_data().try_to_vec::<f32>().unwrap();
        let rms = (values.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / values.len() as f64)
            .sqrt();
        assert!((rms - 0.02).abs() < 0.002, "rms {rms}");
    }
}
