//! Optimizers: the registry (`registry`: each entry owns its options), learning-rate
//! schedules and global-norm gradient clipping.
//!
//! An optimizer is a burn [`ModuleOptimizer`], so any burn optimizer (or a custom
//! `burn::optim::Optimizer`, like [`shampoo`]) fits; its builder sees every parameter's path,
//! rank and shape to form parameter groups (no weight decay on biases and norms; Muon and
//! Shampoo on matrices only, AdamW on the rest). A group's optimizer is chosen once per
//! parameter, on its first step, by burn's "last matching group wins" rule.

mod builtin;
pub mod registry;
pub mod schedule;
pub mod shampoo;

use burn::module::{Module, ModuleVisitor, Param, ParamGroup};
use burn::optim::{GradientsParams, ModuleOptimizer, Optimizer};
use burn::tensor::{Device, Tensor};

use crate::config::OptimizerConfig;
use crate::model::ParamMeta;

pub use builtin::{
    AdafactorOptions, AdafactorSettings, AdamwSettings, DEFAULT_BETAS, DEFAULT_EPS, LionOptions,
    LionSettings, Moments, MuonLrAdjust, MuonOptions, MuonSettings, SgdOptions, SgdSettings,
    muon_handles,
};
pub use registry::{
    BuildFn, OPTIMIZER_NAMES, OPTIMIZERS, OptimizerOptions, OptimizerSpec, resolve_options,
};
pub use schedule::{Scheduler, lr_at};
pub use shampoo::{ShampooOptions, ShampooSettings};

#[derive(Debug, thiserror::Error)]
pub enum OptimError {
    #[error("unknown optimizer `{0}`; known: {known}", known = OPTIMIZER_NAMES.join(", "))]
    Unknown(String),
    #[error("invalid optimizer setting {0}: {1}")]
    Config(String, String),
}

/// Looks the optimizer up and builds it for `params`. The config is checked again here
/// (the loader already did), so a config built in code cannot reach a burn assertion.
pub fn build(cfg: &OptimizerConfig, params: &[ParamMeta]) -> Result<ModuleOptimizer, OptimError> {
    let spec = registry::spec(&cfg.kind).ok_or_else(|| OptimError::Unknown(cfg.kind.clone()))?;
    cfg.validate()
        .map_err(|(key, message)| OptimError::Config(key, message))?;
    (spec.build)(cfg, params)
}

/// Whether weight decay applies: to matrices and other weights of rank >= 2, not to biases
/// and normalisation scales/offsets (rank 1), which decay would only distort.
pub fn decays(p: &ParamMeta) -> bool {
    p.rank >= 2
}

/// Ids of the parameters that must not decay.
fn no_decay_group(params: &[ParamMeta]) -> ParamGroup {
    ParamGroup::from_ids(params.iter().filter(|p| !decays(p)).map(|p| p.id).collect())
}

/// `optim` with weight decay `wd` on [`decays`] parameters and none on the others: `make`
/// builds the optimizer for a given decay.
pub(crate) fn with_decay_groups<O: Optimizer>(
    params: &[ParamMeta],
    wd: f64,
    make: impl Fn(f64) -> O,
) -> ModuleOptimizer {
    ModuleOptimizer::from(make(wd)).with_group(no_decay_group(params), make(0.0), None)
}

/// An optimizer run at a fixed multiple of the scheduled learning rate: a second peak rate
/// that follows the same schedule (Muon's AdamW group).
#[derive(Clone)]
pub struct ScaledLr<O> {
    pub inner: O,
    pub factor: f64,
}

impl<O: Optimizer> Optimizer for ScaledLr<O> {
    type State<const D: usize> = O::State<D>;

    fn step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        self.inner.step(lr * self.factor, tensor, grad, state)
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        O::to_device(state, device)
    }
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
pub(crate) mod tests {
    use super::*;
    use burn::module::ParamId;
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::TensorData;

    /// A body layer and a head, named as in the models, to check parameter groups.
    #[derive(Module, Debug)]
    pub(crate) struct Toy {
        pub body: Linear,
        pub heads: Linear,
    }

    /// A gradient-like tensor (no autodiff).
    pub(crate) fn tensor<const D: usize>(values: &[f64], shape: [usize; D]) -> Tensor<D> {
        let v: Vec<f32> = values.iter().map(|&x| x as f32).collect();
        Tensor::from_data(TensorData::new(v, shape), &Device::flex())
    }

    /// A trainable parameter (on the autodiff device, as in training).
    fn param<const D: usize>(values: &[f64], shape: [usize; D]) -> Param<Tensor<D>> {
        let v: Vec<f32> = values.iter().map(|&x| x as f32).collect();
        Param::from_data(TensorData::new(v, shape), &Device::flex().autodiff())
    }

    pub(crate) fn host<const D: usize>(t: Tensor<D>) -> Vec<f64> {
        t.into_data().iter::<f64>().collect()
    }

    pub(crate) fn toy(body_weight: &[f64], d_out_body: usize) -> Toy {
        let device = Device::flex().autodiff();
        let d_in = body_weight.len() / d_out_body;
        let mut body = LinearConfig::new(d_in, d_out_body).init(&device);
        body.weight = param(body_weight, [d_in, d_out_body]);
        body.bias = Some(param(&vec![0.5; d_out_body], [d_out_body]));
        let mut heads = LinearConfig::new(d_out_body, 1).init(&device);
        heads.weight = param(&vec![1.0; d_out_body], [d_out_body, 1]);
        heads.bias = Some(param(&[0.0], [1]));
        Toy { body, heads }
    }

    pub(crate) fn metas(t: &Toy) -> Vec<ParamMeta> {
        let mut out = Vec::new();
        let mut add = |id: ParamId, path: &str, shape: Vec<usize>| {
            out.push(ParamMeta {
                id,
                path: path.to_string(),
                rank: shape.len(),
                shape,
            })
        };
        add(
            t.body.weight.id,
            "body.weight",
            t.body.weight.val().dims().to_vec(),
        );
        if let Some(b) = &t.body.bias {
            add(b.id, "body.bias", b.val().dims().to_vec());
        }
        add(
            t.heads.weight.id,
            "heads.weight",
            t.heads.weight.val().dims().to_vec(),
        );
        if let Some(b) = &t.heads.bias {
            add(b.id, "heads.bias", b.val().dims().to_vec());
        }
        out
    }

    /// Muon's first step on a 2x2 matrix whose gradient is `R(θ) diag(3, 1)`: Newton-Schulz
    /// keeps the singular vectors and maps each normalised singular value s through the
    /// quintic `a s + b s³ + c s⁵` five times, which is computed here in plain f64. The bias
    /// (AdamW, no decay, at `adamw_lr`) and the head's weight (AdamW with decay) get AdamW's
    /// first step, `g / (|g| + eps)`.
    #[test]
    fn muon_update_matches_a_hand_computed_case() {
        let w = [1.0, -0.5, 0.25, 2.0];
        let model = toy(&w, 2);
        let params = metas(&model);
        let (lr, adamw_lr, wd) = (0.1, 0.05, 0.2);
        let cfg = OptimizerConfig {
            kind: "muon".into(),
            lr,
            weight_decay: wd,
            options: crate::model::tests::as_options(
                serde_json::json!({"muon": {"adamw_lr": adamw_lr}}),
            ),
        };
        let mut optim = build(&cfg, &params).unwrap();

        let theta: f64 = 0.6;
        let (c, s) = (libm::cos(theta), libm::sin(theta));
        // R(θ) diag(3, 1): columns scaled.
        let g = [3.0 * c, -s, 3.0 * s, c];
        let bias_grad = [0.3, -0.2];
        let head_grad = [-1.0, 4.0];
        let mut grads = GradientsParams::new();
        grads.register(model.body.weight.id, tensor(&g, [2, 2]));
        grads.register(
            model.body.bias.as_ref().unwrap().id,
            tensor(&bias_grad, [2]),
        );
        grads.register(model.heads.weight.id, tensor(&head_grad, [2, 1]));
        let stepped = optim.step(lr, model, grads);

        let (a, b, cc) = (3.4445, -4.775, 2.0315);
        let quintic = |mut x: f64| {
            for _ in 0..5 {
                x = a * x + b * x.powi(3) + cc * x.powi(5);
            }
            x
        };
        let norm = 10f64.sqrt();
        let (p1, p2) = (quintic(3.0 / norm), quintic(1.0 / norm));
        let ortho = [p1 * c, -p2 * s, p1 * s, p2 * c];
        let scale = 0.2 * 2f64.sqrt();
        let want: Vec<f64> = w
            .iter()
            .zip(ortho)
            .map(|(w, o)| w * (1.0 - lr * wd) - lr * scale * o)
            .collect();
        let got = host(stepped.body.weight.val());
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-4, "muon: {got:?} vs {want:?}");
        }
        // The orthogonalised update is close to R(θ) itself (singular values near 1).
        assert!(
            (p1 - 1.0).abs() < 0.35 && (p2 - 1.0).abs() < 0.35,
            "{p1} {p2}"
        );

        let adam = |g: f64| g / (g.abs() + 1e-8);
        let bias = host(stepped.body.bias.unwrap().val());
        for (got, g) in bias.iter().zip(bias_grad) {
            let want = 0.5 - adamw_lr * adam(g);
            assert!((got - want).abs() < 1e-6, "bias {got} vs {want}");
        }
        let head = host(stepped.heads.weight.val());
        for (got, g) in head.iter().zip(head_grad) {
            let want = 1.0 * (1.0 - adamw_lr * wd) - adamw_lr * adam(g);
            assert!((got - want).abs() < 1e-6, "head {got} vs {want}");
        }
    }

    #[test]
    fn muon_leaves_vectors_heads_and_embeddings_to_adamw() {
        let meta = |path: &str, shape: &[usize]| ParamMeta {
            id: ParamId::new(),
            path: path.into(),
            rank: shape.len(),
            shape: shape.to_vec(),
        };
        assert!(muon_handles(&meta(
            "encoder.layers.0.mha.query.weight",
            &[8, 8]
        )));
        assert!(!muon_handles(&meta(
            "encoder.layers.0.mha.query.bias",
            &[8]
        )));
        assert!(!muon_handles(&meta("heads.price.out.weight", &[8, 2])));
        assert!(!muon_handles(&meta("pos_embedding", &[30, 8])));
    }

    /// One SGD step with Nesterov momentum and an L2 penalty: on the first step the
    /// velocity is the gradient, so the update is `(1 + μ)(g + wd w)`; rank-1 parameters
    /// get no penalty.
    #[test]
    fn sgd_update_matches_a_hand_computed_case() {
        let w = [1.0, -2.0];
        let model = toy(&w, 1);
        let params = metas(&model);
        let cfg = OptimizerConfig {
            kind: "sgd".into(),
            lr: 0.1,
            weight_decay: 0.5,
            options: crate::model::tests::as_options(
                serde_json::json!({"sgd": {"momentum": 0.9, "nesterov": true}}),
            ),
        };
        let mut optim = build(&cfg, &params).unwrap();
        let mut grads = GradientsParams::new();
        grads.register(model.body.weight.id, tensor(&[0.2, 0.4], [2, 1]));
        grads.register(model.body.bias.as_ref().unwrap().id, tensor(&[1.0], [1]));
        let stepped = optim.step(0.1, model, grads);
        let got = host(stepped.body.weight.val());
        let want = [
            1.0 - 0.1 * 1.9 * (0.2 + 0.5 * 1.0),
            -2.0 - 0.1 * 1.9 * (0.4 + 0.5 * -2.0),
        ];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{got:?} vs {want:?}");
        }
        let bias = host(stepped.body.bias.unwrap().val());
        assert!((bias[0] - (0.5 - 0.1 * 1.9)).abs() < 1e-6, "{bias:?}");
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
