//! Shampoo (Gupta, Koren & Singer, 2018) with AdamW grafting (Agarwal et al., 2020); burn
//! has none, so it is written here as a burn [`Optimizer`].
//!
//! For a weight with gradient `G` (higher ranks reshaped to `[rows, cols]`, the last
//! dimension as columns):
//!
//! ```text
//! L = b2 L + (1 - b2) G Gᵀ            R = b2 R + (1 - b2) Gᵀ G
//! P = L^-1/4 G R^-1/4                  (roots recomputed every `precondition_every` steps)
//! P ← P · ‖A‖ / ‖P‖                    A: the AdamW direction m̂ / (√v̂ + eps), per layer
//! B = μ B + (1 - μ) P,  B̂ = B / (1 - μ^t)
//! W ← W (1 - lr wd) - lr B̂
//! ```
//!
//! Grafting borrows AdamW's step size per layer and keeps Shampoo's direction, so `lr` means
//! what it means for AdamW. The inverse roots come from a symmetric eigendecomposition in f64
//! on the host (nalgebra), with eigenvalues clamped at 0 and damped by `epsilon` times the
//! largest: deterministic, and exact where a coupled Newton iteration in f32 is not.
//! Rank-1 parameters and weights with a dimension above `max_precond_dim` use AdamW.

use burn::module::{ParamGroup, ParamId};
use burn::optim::{ModuleOptimizer, Optimizer, RecordState, StateSink, StateSource};
use burn::tensor::{Device, Tensor, TensorData};
use nalgebra::DMatrix;

use serde::{Deserialize, Serialize};

use super::builtin::{DEFAULT_BETAS, DEFAULT_EPS, Moments};
use super::registry::{OptimizerOptions, options_of};
use super::{OptimError, with_decay_groups};
use crate::config::OptimizerConfig;
use crate::config::options::{Invalid, check_positive, check_unit, fail};
use crate::model::ParamMeta;

/// `optimizer.shampoo` (Gupta et al., 2018), with AdamW grafting (Agarwal et al., 2020).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShampooOptions {
    /// Momentum of the grafted update. Default 0.9.
    pub momentum: f64,
    /// Decay of the statistics `L = b2 L + (1 - b2) G G^T` (and `R`). Default 0.999.
    pub beta2: f64,
    /// Damping added to the statistics' eigenvalues before the inverse fourth root, relative
    /// to the largest eigenvalue. Default 1e-6.
    pub epsilon: f64,
    /// Recompute the inverse roots every this many steps (and at the first). Default 10.
    pub precondition_every: usize,
    /// Weights with a dimension above this use AdamW instead. Default 1024.
    pub max_precond_dim: usize,
}

impl Default for ShampooOptions {
    fn default() -> Self {
        ShampooOptions {
            momentum: 0.9,
            beta2: 0.999,
            epsilon: 1e-6,
            precondition_every: 10,
            max_precond_dim: 1024,
        }
    }
}

fn default_betas() -> [f64; 2] {
    DEFAULT_BETAS
}

fn default_eps() -> f64 {
    DEFAULT_EPS
}

/// What `shampoo` reads: the AdamW moments (grafting, and the AdamW group) and its
/// sub-section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShampooSettings {
    #[serde(default = "default_betas")]
    pub betas: [f64; 2],
    #[serde(default = "default_eps")]
    pub eps: f64,
    #[serde(default)]
    pub shampoo: ShampooOptions,
}

impl Default for ShampooSettings {
    fn default() -> Self {
        ShampooSettings {
            betas: DEFAULT_BETAS,
            eps: DEFAULT_EPS,
            shampoo: ShampooOptions::default(),
        }
    }
}

impl ShampooSettings {
    pub fn moments(&self) -> Moments {
        Moments {
            betas: self.betas,
            eps: self.eps,
        }
    }
}

impl OptimizerOptions for ShampooSettings {
    const KEYS: &'static [&'static str] = &["betas", "eps", "shampoo"];

    fn validate(&self, _: &OptimizerConfig) -> Result<(), Invalid> {
        self.moments().validate()?;
        let o = &self.shampoo;
        check_unit("optimizer.shampoo.momentum", o.momentum)?;
        check_unit("optimizer.shampoo.beta2", o.beta2)?;
        check_positive("optimizer.shampoo.epsilon", o.epsilon)?;
        if o.precondition_every == 0 {
            return fail("optimizer.shampoo.precondition_every", "must be at least 1");
        }
        if o.max_precond_dim == 0 {
            return fail("optimizer.shampoo.max_precond_dim", "must be at least 1");
        }
        Ok(())
    }
}

/// The optimizer for [`handles`] parameters.
#[derive(Debug, Clone)]
pub struct Shampoo {
    pub momentum: f64,
    pub beta2: f64,
    pub epsilon: f64,
    pub precondition_every: usize,
    /// AdamW moments of the grafting direction.
    pub betas: [f64; 2],
    pub eps: f64,
    pub weight_decay: f64,
}

/// Whether Shampoo preconditions this parameter: rank 2 or more, both sides of its 2-D view
/// at most `max_dim`.
pub fn handles(p: &ParamMeta, max_dim: usize) -> bool {
    let (rows, cols) = matrix_view(&p.shape);
    p.rank >= 2 && rows <= max_dim && cols <= max_dim
}

/// `[rows, cols]` of a parameter's 2-D view: all leading dimensions by the last.
fn matrix_view(shape: &[usize]) -> (usize, usize) {
    match shape.split_last() {
        Some((&cols, lead)) => (lead.iter().product(), cols),
        None => (1, 1),
    }
}

/// Shampoo on [`handles`] weights; AdamW on the rest, without decay on rank-1 parameters.
pub fn build(cfg: &OptimizerConfig, params: &[ParamMeta]) -> Result<ModuleOptimizer, OptimError> {
    let settings: ShampooSettings = options_of(cfg)?;
    let moments = settings.moments();
    let o = settings.shampoo;
    let base = moments.adamw_config();
    let adamw = with_decay_groups(params, cfg.weight_decay, |wd| {
        base.clone().with_weight_decay(wd as f32).build()
    });
    let matrices: Vec<ParamId> = params
        .iter()
        .filter(|p| handles(p, o.max_precond_dim))
        .map(|p| p.id)
        .collect();
    let shampoo = Shampoo {
        momentum: o.momentum,
        beta2: o.beta2,
        epsilon: o.epsilon,
        precondition_every: o.precondition_every.max(1),
        betas: moments.betas,
        eps: moments.eps,
        weight_decay: cfg.weight_decay,
    };
    Ok(adamw.with_group(ParamGroup::from_ids(matrices), shampoo, None))
}

/// Per-parameter state.
#[derive(Clone)]
pub struct ShampooState<const D: usize> {
    /// Steps taken (1 after the first).
    pub step: u64,
    /// AdamW first and second moments, for the grafting norm.
    pub m: Tensor<D>,
    pub v: Tensor<D>,
    /// Momentum of the grafted update.
    pub buffer: Tensor<D>,
    /// Statistics `[rows, rows]` and `[cols, cols]`.
    pub l: Tensor<2>,
    pub r: Tensor<2>,
    /// Their damped inverse fourth roots, as of the last recomputation.
    pub l_root: Tensor<2>,
    pub r_root: Tensor<2>,
}

impl Optimizer for Shampoo {
    type State<const D: usize> = ShampooState<D>;

    fn step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let dims = grad.dims();
        let (rows, cols) = matrix_view(&dims);
        let device = grad.device();
        let g = grad.clone().reshape([rows, cols]);
        let [b1, b2a] = self.betas;
        let mut s = match state {
            Some(s) => s,
            None => ShampooState {
                step: 0,
                m: Tensor::zeros(dims, &device),
                v: Tensor::zeros(dims, &device),
                buffer: Tensor::zeros(dims, &device),
                l: Tensor::zeros([rows, rows], &device),
                r: Tensor::zeros([cols, cols], &device),
                l_root: Tensor::eye(rows, &device),
                r_root: Tensor::eye(cols, &device),
            },
        };
        s.step += 1;
        let t = s.step as i32;

        let b2 = self.beta2;
        s.l = s.l.mul_scalar(b2) + g.clone().matmul(g.clone().transpose()).mul_scalar(1.0 - b2);
        s.r = s.r.mul_scalar(b2) + g.clone().transpose().matmul(g.clone()).mul_scalar(1.0 - b2);
        if (s.step - 1).is_multiple_of(self.precondition_every as u64) {
            s.l_root = inverse_fourth_root(&s.l, self.epsilon, &device).unwrap_or(s.l_root);
            s.r_root = inverse_fourth_root(&s.r, self.epsilon, &device).unwrap_or(s.r_root);
        }
        let preconditioned = s.l_root.clone().matmul(g).matmul(s.r_root.clone());

        s.m = s.m.mul_scalar(b1) + grad.clone().mul_scalar(1.0 - b1);
        s.v = s.v.mul_scalar(b2a) + grad.square().mul_scalar(1.0 - b2a);
        let m_hat = s.m.clone().div_scalar(1.0 - b1.powi(t));
        let v_hat = s.v.clone().div_scalar(1.0 - b2a.powi(t));
        let adam = m_hat / (v_hat.sqrt().add_scalar(self.eps));

        let adam_norm = frobenius(adam.clone().reshape([rows, cols]));
        let p_norm = frobenius(preconditioned.clone());
        // A zero Shampoo direction (all-zero statistics) takes AdamW's direction instead.
        let direction = if p_norm > 0.0 && p_norm.is_finite() {
            preconditioned.mul_scalar(adam_norm / p_norm).reshape(dims)
        } else {
            adam
        };

        let mu = self.momentum;
        s.buffer = s.buffer.mul_scalar(mu) + direction.mul_scalar(1.0 - mu);
        let update = s.buffer.clone().div_scalar(1.0 - mu.powi(t));
        let decayed = if self.weight_decay > 0.0 {
            tensor.mul_scalar(1.0 - lr * self.weight_decay)
        } else {
            tensor
        };
        (decayed - update.mul_scalar(lr), Some(s))
    }

    fn to_device<const D: usize>(s: Self::State<D>, device: &Device) -> Self::State<D> {
        ShampooState {
            step: s.step,
            m: s.m.to_device(device),
            v: s.v.to_device(device),
            buffer: s.buffer.to_device(device),
            l: s.l.to_device(device),
            r: s.r.to_device(device),
            l_root: s.l_root.to_device(device),
            r_root: s.r_root.to_device(device),
        }
    }
}

/// The Frobenius norm, summed on the host in f64 (in element order, so it does not depend on
/// the thread count).
fn frobenius(t: Tensor<2>) -> f64 {
    let data = t.into_data();
    data.iter::<f64>().map(|v| v * v).sum::<f64>().sqrt()
}

/// `(A + damping)^-1/4` of a symmetric positive semi-definite matrix: eigenvalues clamped at
/// 0, plus `epsilon` times the largest. `None` when `A` is zero or not finite (the caller
/// keeps its previous root).
pub fn inverse_fourth_root(a: &Tensor<2>, epsilon: f64, device: &Device) -> Option<Tensor<2>> {
    let [n, _] = a.dims();
    let values: Vec<f64> = a.clone().into_data().iter::<f64>().collect();
    let root = inverse_fourth_root_host(&values, n, epsilon)?;
    let root: Vec<f32> = root.iter().map(|&v| v as f32).collect();
    Some(Tensor::from_data(TensorData::new(root, [n, n]), device))
}

/// [`inverse_fourth_root`] on a row-major `n x n` slice, in f64.
pub fn inverse_fourth_root_host(a: &[f64], n: usize, epsilon: f64) -> Option<Vec<f64>> {
    if a.len() != n * n || a.iter().any(|v| !v.is_finite()) {
        return None;
    }
    // Symmetrise: G Gᵀ is symmetric in exact arithmetic, not always in f32.
    let m = DMatrix::from_fn(n, n, |i, j| 0.5 * (a[i * n + j] + a[j * n + i]));
    let eig = m.try_symmetric_eigen(f64::EPSILON, 10_000)?;
    let largest = eig.eigenvalues.iter().copied().fold(0.0, f64::max);
    if largest <= 0.0 {
        return None;
    }
    let damping = epsilon * largest;
    let scales: Vec<f64> = eig
        .eigenvalues
        .iter()
        .map(|&l| libm::pow(l.max(0.0) + damping, -0.25))
        .collect();
    let q = &eig.eigenvectors;
    let mut out = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            out[i * n + j] = (0..n).map(|k| q[(i, k)] * scales[k] * q[(j, k)]).sum();
        }
    }
    Some(out)
}

fn scalar(step: u64) -> TensorData {
    TensorData::new(vec![step as i64], [1])
}

impl<const D: usize> RecordState for ShampooState<D> {
    fn state_flatten(&self, prefix: &str, out: &mut StateSink) {
        out.push_tensor(prefix, "step", scalar(self.step));
        for (name, t) in [("m", &self.m), ("v", &self.v), ("buffer", &self.buffer)] {
            out.push_tensor(prefix, name, t.to_data());
        }
        for (name, t) in [
            ("l", &self.l),
            ("r", &self.r),
            ("l_root", &self.l_root),
            ("r_root", &self.r_root),
        ] {
            out.push_tensor(prefix, name, t.to_data());
        }
    }

    fn state_unflatten(prefix: &str, src: &mut StateSource, device: &Device) -> Option<Self> {
        let step = src.take_tensor(prefix, "step")?.iter::<i64>().next()?;
        let mut nd = |name: &str| -> Option<Tensor<D>> {
            let data = src.take_tensor(prefix, name)?;
            (data.shape().len() == D).then(|| Tensor::from_data(data, device))
        };
        let (m, v, buffer) = (nd("m")?, nd("v")?, nd("buffer")?);
        let mut two = |name: &str| -> Option<Tensor<2>> {
            let data = src.take_tensor(prefix, name)?;
            (data.shape().len() == 2).then(|| Tensor::from_data(data, device))
        };
        Some(ShampooState {
            step: u64::try_from(step).ok()?,
            m,
            v,
            buffer,
            l: two("l")?,
            r: two("r")?,
            l_root: two("l_root")?,
            r_root: two("r_root")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::tests::{host, metas, tensor, toy};
    use burn::optim::GradientsParams;

    /// `Q diag(λ) Qᵀ` for a 2-D rotation `Q` by `theta`.
    fn rotated(theta: f64, l: [f64; 2]) -> Vec<f64> {
        let (c, s) = (libm::cos(theta), libm::sin(theta));
        let q = [[c, -s], [s, c]];
        let mut out = vec![0.0; 4];
        for i in 0..2 {
            for j in 0..2 {
                out[i * 2 + j] = (0..2).map(|k| q[i][k] * l[k] * q[j][k]).sum();
            }
        }
        out
    }

    #[test]
    fn inverse_fourth_root_matches_independent_cases() {
        // Known spectrum: (Q diag(16, 1) Qᵀ)^-1/4 = Q diag(1/2, 1) Qᵀ.
        let a = rotated(0.3, [16.0, 1.0]);
        let got = inverse_fourth_root_host(&a, 2, 1e-15).unwrap();
        let want = rotated(0.3, [0.5, 1.0]);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-12, "{got:?} vs {want:?}");
        }
        // A diagonal 3x3 case, and the defining property X⁴ A = I on a dense SPD matrix.
        let d = [1.0, 0.0, 0.0, 0.0, 16.0, 0.0, 0.0, 0.0, 81.0];
        let got = inverse_fourth_root_host(&d, 3, 1e-15).unwrap();
        for (i, want) in [1.0, 0.5, 1.0 / 3.0].iter().enumerate() {
            assert!((got[i * 4] - want).abs() < 1e-12, "{got:?}");
        }
        let spd = [4.0, 1.0, 0.5, 1.0, 3.0, 0.2, 0.5, 0.2, 2.0];
        let x = DMatrix::from_row_slice(3, 3, &inverse_fourth_root_host(&spd, 3, 1e-15).unwrap());
        let a = DMatrix::from_row_slice(3, 3, &spd);
        let identity = &x * &x * &x * &x * a;
        assert!((identity - DMatrix::<f64>::identity(3, 3)).abs().max() < 1e-10);
        // Damping: a singular matrix still has a root; zero or non-finite ones have none.
        assert!(inverse_fourth_root_host(&[1.0, 0.0, 0.0, 0.0], 2, 1e-6).is_some());
        assert!(inverse_fourth_root_host(&[0.0; 4], 2, 1e-6).is_none());
        assert!(inverse_fourth_root_host(&[f64::NAN, 0.0, 0.0, 1.0], 2, 1e-6).is_none());
    }

    /// The first Shampoo step by hand on a 2x2 weight: with b2 statistics from one gradient
    /// `G`, `L = (1 - b2) G Gᵀ`, `R = (1 - b2) Gᵀ G`; `L^-1/4 G R^-1/4` rescaled to the norm of
    /// AdamW's first direction (`g / (|g| + eps)` elementwise); momentum's bias correction
    /// makes the first update that direction itself.
    #[test]
    fn first_step_matches_a_hand_computed_case() {
        let w = [1.0, 2.0, -1.0, 0.5];
        let model = toy(&w, 2);
        let params = metas(&model);
        let (lr, wd, b2) = (0.1, 0.3, 0.99);
        let cfg = OptimizerConfig {
            kind: "shampoo".into(),
            lr,
            weight_decay: wd,
            options: crate::model::tests::as_options(
                serde_json::json!({"shampoo": {"beta2": b2, "epsilon": 1e-12}}),
            ),
        };
        let mut optim = super::super::build(&cfg, &params).unwrap();
        let g = [0.5, -1.0, 2.0, 0.25];
        let mut grads = GradientsParams::new();
        grads.register(model.body.weight.id, tensor(&g, [2, 2]));
        let stepped = optim.step(lr, model, grads);

        let gm = DMatrix::from_row_slice(2, 2, &g);
        let l = (&gm * gm.transpose()) * (1.0 - b2);
        let r = (gm.transpose() * &gm) * (1.0 - b2);
        // Independent roots: closed form for a 2x2 SPD matrix via its eigenvalues.
        let root = |m: &DMatrix<f64>| {
            let (a, b, d) = (m[(0, 0)], m[(0, 1)], m[(1, 1)]);
            let mean = 0.5 * (a + d);
            let gap = (0.25 * (a - d) * (a - d) + b * b).sqrt();
            let (l1, l2) = (mean + gap, mean - gap);
            // Projector onto l1's eigenvector: (M - l2 I) / (l1 - l2).
            let p1 = (m - DMatrix::identity(2, 2) * l2) / (l1 - l2);
            let p2 = DMatrix::identity(2, 2) - &p1;
            p1 * libm::pow(l1, -0.25) + p2 * libm::pow(l2, -0.25)
        };
        let p = root(&l) * &gm * root(&r);
        let adam_norm = g
            .iter()
            .map(|v| (v / (v.abs() + 1e-8)).powi(2))
            .sum::<f64>()
            .sqrt();
        let p = &p * (adam_norm / p.norm());
        let got = host(stepped.body.weight.val());
        for i in 0..4 {
            let want = w[i] * (1.0 - lr * wd) - lr * p[(i / 2, i % 2)];
            assert!(
                (got[i] - want).abs() < 1e-5,
                "{got:?}: element {i} wants {want}"
            );
        }
    }

    /// The state survives a byte round trip: a restored optimizer takes the same next step.
    #[test]
    fn state_round_trips_through_the_optimizer_record() {
        let model = toy(&[1.0, 2.0, -1.0, 0.5], 2);
        let params = metas(&model);
        let cfg = OptimizerConfig {
            kind: "shampoo".into(),
            options: crate::model::tests::as_options(
                serde_json::json!({"shampoo": {"precondition_every": 2}}),
            ),
            ..OptimizerConfig::default()
        };
        let grads = |scale: f64| {
            let mut g = GradientsParams::new();
            g.register(
                model.body.weight.id,
                tensor(&[0.5 * scale, -1.0, 2.0, 0.25], [2, 2]),
            );
            g.register(
                model.body.bias.as_ref().unwrap().id,
                tensor(&[0.1, scale], [2]),
            );
            g
        };
        let mut original = super::super::build(&cfg, &params).unwrap();
        let mut stepped = model.clone();
        for scale in [1.0, -0.5, 2.0] {
            stepped = original.step(1e-2, stepped, grads(scale));
        }
        let bytes = original.into_bytes().unwrap();
        let mut restored = super::super::build(&cfg, &params)
            .unwrap()
            .from_bytes(bytes)
            .unwrap();
        let a = original.step(1e-2, stepped.clone(), grads(0.3));
        let b = restored.step(1e-2, stepped, grads(0.3));
        assert_eq!(host(a.body.weight.val()), host(b.body.weight.val()));
        assert_eq!(
            host(a.body.bias.unwrap().val()),
            host(b.body.bias.unwrap().val())
        );
    }

    #[test]
    fn rank_one_and_oversized_parameters_use_adamw() {
        let meta = |shape: &[usize]| ParamMeta {
            id: ParamId::new(),
            path: "w".into(),
            rank: shape.len(),
            shape: shape.to_vec(),
        };
        assert!(handles(&meta(&[8, 4]), 8));
        assert!(!handles(&meta(&[8]), 8));
        assert!(!handles(&meta(&[9, 4]), 8));
        // Rank 3 is viewed as [2 * 4, 3].
        assert!(handles(&meta(&[2, 4, 3]), 8));
        assert!(!handles(&meta(&[3, 4, 3]), 8));
    }

    /// Least squares `min ‖X W - Y‖²` with inputs whose covariance has condition number 10⁶
    /// along rotated axes, which a per-coordinate method (AdamW) cannot undo and Shampoo's
    /// left preconditioner (about `(XᵀX)^-1/2`) largely can. Both run with default settings,
    /// the same budget and cosine decay, each at its best rate from the same grid. AdamW
    /// stalls near 4e-5 after about 100 steps; Shampoo keeps going and ends about 3x lower
    /// (asserted: 2x).
    #[test]
    fn shampoo_beats_adamw_on_ill_conditioned_least_squares() {
        let (n, d, k) = (64usize, 6usize, 2usize);
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut normal = move || {
            // Box-Muller on splitmix64 draws.
            let mut next = || {
                seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = seed;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
            };
            let (u, v) = (next().max(1e-12), next());
            (-2.0 * libm::log(u)).sqrt() * libm::cos(2.0 * std::f64::consts::PI * v)
        };
        // X = Z diag(scales) Q with Q a fixed dense orthogonal matrix (Householder).
        let scales: Vec<f64> = (0..d)
            .map(|i| libm::pow(10f64, -3.0 * i as f64 / (d - 1) as f64))
            .collect();
        let h: Vec<f64> = (0..d).map(|i| 1.0 + i as f64).collect();
        let hh: f64 = h.iter().map(|v| v * v).sum();
        let q = |i: usize, j: usize| f64::from(u8::from(i == j)) - 2.0 * h[i] * h[j] / hh;
        let z: Vec<f64> = (0..n * d).map(|_| normal()).collect();
        let x: Vec<f64> = (0..n * d)
            .map(|idx| {
                let (r, c) = (idx / d, idx % d);
                (0..d).map(|m| z[r * d + m] * scales[m] * q(m, c)).sum()
            })
            .collect();
        let w_true: Vec<f64> = (0..d * k).map(|_| normal()).collect();
        let y: Vec<f64> = (0..n * k)
            .map(|idx| {
                let (r, c) = (idx / k, idx % k);
                (0..d).map(|m| x[r * d + m] * w_true[m * k + c]).sum()
            })
            .collect();
        let device = Device::flex().autodiff();
        let x_t = Tensor::<2>::from_data(
            TensorData::new(x.iter().map(|&v| v as f32).collect::<Vec<_>>(), [n, d]),
            &device,
        );
        let y_t = Tensor::<2>::from_data(
            TensorData::new(y.iter().map(|&v| v as f32).collect::<Vec<_>>(), [n, k]),
            &device,
        );

        let final_loss = |kind: &str, lr: f64| -> f64 {
            let mut model = toy(&vec![0.0; d * k], k);
            model.body.bias = None;
            let params = metas(&model);
            let cfg = OptimizerConfig {
                kind: kind.into(),
                lr,
                weight_decay: 0.0,
                ..OptimizerConfig::default()
            };
            let mut optim = super::super::build(&cfg, &params).unwrap();
            let mut loss_value = f64::INFINITY;
            let steps = 300;
            for step in 0..steps {
                let pred = model.body.forward(x_t.clone());
                let loss = (pred - y_t.clone()).square().mean();
                loss_value = f64::from(loss.clone().into_scalar::<f32>());
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                // Cosine decay to 0, so the final loss measures convergence rather than the
                // jitter of a fixed step size.
                model = optim.step(crate::optim::lr_at(step, steps, 0, lr, 0.0), model, grads);
            }
            if loss_value.is_finite() {
                loss_value
            } else {
                f64::INFINITY
            }
        };
        let best = |kind: &str| {
            [1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0]
                .iter()
                .map(|&lr| final_loss(kind, lr))
                .fold(f64::INFINITY, f64::min)
        };
        let (shampoo, adamw) = (best("shampoo"), best("adamw"));
        assert!(
            shampoo < adamw / 2.0,
            "shampoo {shampoo:e} vs adamw {adamw:e}"
        );
    }
}
