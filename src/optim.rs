//! Optimizers: the registry, the learning-rate schedule and global-norm gradient clipping.
//!
//! An optimizer is a burn [`ModuleOptimizer`], so any burn optimizer (or a custom
//! `burn::optim::Optimizer`) fits; its builder sees every parameter's path and rank to form
//! parameter groups (no weight decay on biases and norms; later, Muon on matrices only).

use std::f64::consts::PI;

use burn::module::{Module, ModuleVisitor, Param, ParamGroup, ParamId};
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::Tensor;

use crate::config::OptimizerConfig;
use crate::model::ParamMeta;

/// Builds an optimizer for a model's parameters.
pub type BuildFn = fn(&OptimizerConfig, &[ParamMeta]) -> Result<ModuleOptimizer, OptimError>;

/// One registry entry.
pub struct OptimizerSpec {
    /// The `optimizer.type` value that selects it.
    pub name: &'static str,
    pub build: BuildFn,
}

impl OptimizerSpec {
    const fn new(name: &'static str, build: BuildFn) -> Self {
        OptimizerSpec { name, build }
    }
}

/// The registry: `optimizer.type` -> builder.
pub const OPTIMIZERS: &[OptimizerSpec] = &[OptimizerSpec::new("adamw", adamw)];

/// Names accepted by `optimizer.type`, in registry order.
pub const OPTIMIZER_NAMES: &[&str] = &{
    let mut names = [""; OPTIMIZERS.len()];
    let mut i = 0;
    while i < OPTIMIZERS.len() {
        names[i] = OPTIMIZERS[i].name;
        i += 1;
    }
    names
};

#[derive(Debug, thiserror::Error)]
pub enum OptimError {
    #[error("unknown optimizer `{0}`; known: {known}", known = OPTIMIZER_NAMES.join(", "))]
    Unknown(String),
    #[error("invalid optimizer setting: {0}")]
    Config(String),
}

/// Looks the optimizer up and builds it for `params`.
pub fn build(cfg: &OptimizerConfig, params: &[ParamMeta]) -> Result<ModuleOptimizer, OptimError> {
    let spec = OPTIMIZERS
        .iter()
        .find(|o| o.name == cfg.kind)
        .ok_or_else(|| OptimError::Unknown(cfg.kind.clone()))?;
    let finite_positive = |v: f64| v.is_finite() && v > 0.0;
    if !finite_positive(cfg.lr) || !finite_positive(cfg.eps) {
        return Err(OptimError::Config(format!(
            "lr ({}) and eps ({}) must be positive",
            cfg.lr, cfg.eps
        )));
    }
    if !(cfg.weight_decay.is_finite() && cfg.weight_decay >= 0.0)
        || cfg.betas.iter().any(|b| !(0.0..1.0).contains(b))
    {
        return Err(OptimError::Config(format!(
            "weight_decay ({}) must be >= 0 and betas ({:?}) in [0, 1)",
            cfg.weight_decay, cfg.betas
        )));
    }
    (spec.build)(cfg, params)
}

/// Whether decoupled weight decay applies: to matrices and other weights of rank >= 2, not
/// to biases and normalisation scales/offsets (rank 1), which decay would only distort.
pub fn decays(p: &ParamMeta) -> bool {
    p.rank >= 2
}

/// AdamW, with weight decay on [`decays`] parameters only.
fn adamw(cfg: &OptimizerConfig, params: &[ParamMeta]) -> Result<ModuleOptimizer, OptimError> {
    let base = AdamWConfig::new()
        .with_beta_1(cfg.betas[0] as f32)
        .with_beta_2(cfg.betas[1] as f32)
        .with_epsilon(cfg.eps as f32);
    let no_decay: Vec<ParamId> = params.iter().filter(|p| !decays(p)).map(|p| p.id).collect();
    let decayed = base.clone().with_weight_decay(cfg.weight_decay as f32);
    Ok(ModuleOptimizer::from(decayed.build()).with_group(
        ParamGroup::from_ids(no_decay),
        base.with_weight_decay(0.0).build(),
        None,
    ))
}

/// Learning rate at `step` (0-based): linear warm-up from `lr / warmup` to `lr` over
/// `warmup` steps, then cosine decay to `lr * min_ratio` at the last step.
pub fn lr_at(step: usize, total_steps: usize, warmup: usize, lr: f64, min_ratio: f64) -> f64 {
    if step < warmup {
        return lr * (step + 1) as f64 / warmup as f64;
    }
    let decay_steps = total_steps.saturating_sub(warmup).saturating_sub(1);
    let progress = if decay_steps == 0 {
        0.0
    } else {
        ((step - warmup) as f64 / decay_steps as f64).min(1.0)
    };
    lr * (min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + (PI * progress).cos()))
}

/// Scales all gradients by one factor so their global L2 norm is at most `max_norm`
/// (`0` disables clipping). Returns the norm before clipping; NaN or infinite when a
/// gradient is. Norms are summed on the host in f64, in module order, so the result does not
/// depend on the thread count.
pub fn clip_grad_norm<M: Module>(module: &M, grads: &mut GradientsParams, max_norm: f64) -> f64 {
    let mut norm = SquaredNorm { grads, sum: 0.0 };
    module.visit(&mut norm);
    let total = norm.sum.sqrt();
    if max_norm > 0.0 && total > max_norm {
        module.visit(&mut Scale {
            grads,
            factor: max_norm / (total + 1e-6),
        });
    }
    total
}

struct SquaredNorm<'a> {
    grads: &'a GradientsParams,
    sum: f64,
}

impl ModuleVisitor for SquaredNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = self.grads.get::<D>(param.id) {
            let data = grad.into_data();
            self.sum += match data.as_slice::<f32>() {
                Ok(values) => values
                    .iter()
                    .map(|&v| f64::from(v) * f64::from(v))
                    .sum::<f64>(),
                Err(_) => data.iter::<f64>().map(|v| v * v).sum::<f64>(),
            };
        }
    }
}

struct Scale<'a> {
    grads: &'a mut GradientsParams,
    factor: f64,
}

impl ModuleVisitor for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = self.grads.remove::<D>(param.id) {
            self.grads.register(param.id, grad.mul_scalar(self.factor));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_names_match_the_config_list() {
        let names: Vec<&str> = OPTIMIZERS.iter().map(|o| o.name).collect();
        assert_eq!(names, OPTIMIZER_NAMES);
    }

    #[test]
    fn schedule_warms_up_then_decays_to_the_floor() {
        let lr = |s| lr_at(s, 10, 2, 1.0, 0.1);
        assert_eq!(lr(0), 0.5);
        assert_eq!(lr(1), 1.0);
        assert!((lr(2) - 1.0).abs() < 1e-12);
        assert!(lr(5) < lr(4));
        assert!((lr(9) - 0.1).abs() < 1e-12);
        assert!((lr(50) - 0.1).abs() < 1e-12);
        // No warm-up, one step: the peak rate.
        assert_eq!(lr_at(0, 1, 0, 0.3, 0.1), 0.3);
    }

    #[test]
    fn unknown_optimizer_is_an_error() {
        let cfg = OptimizerConfig {
            kind: "adamx".into(),
            ..OptimizerConfig::default()
        };
        let err = build(&cfg, &[]).err().unwrap();
        assert!(err.to_string().contains("adamw"), "{err}");
    }
}
