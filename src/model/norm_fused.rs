//! Fused layer normalisation over the last dimension: a burn backend extension (`NormOps`)
//! with its own backward pass, for f32 on flex. Other devices and dtypes take burn's
//! `LayerNorm::forward`.
//!
//! Why: burn 0.22's autodiff composes `layer_norm` of nine tensor ops (two means, a
//! subtraction, a square, a square root, a division, the affine map), each a pass over the
//! activations that allocates its output, and about twice as many in the backward pass; a
//! transformer normalises five times per step. Here the forward pass is one pass over each
//! row, the backward pass one pass for the input's gradient and one for the parameters'.
//!
//! Results do not depend on the thread count: rows are split across threads, each writing
//! only its own rows; the parameters' gradients are column sums taken row by row in order,
//! column blocks split across threads (vectorised across columns, which keeps each column's
//! order).

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, DispatchDevice, Flex, TensorMetadata, backend_extension};
use burn::nn::LayerNorm;
use burn::tensor::{DType, Tensor};
use rayon::prelude::*;

use super::fused::{assume_written, dense, f32s, from_f32s, widest_simd};
use std::mem::MaybeUninit;

/// burn's `LayerNormConfig` default, which every layer norm of hft's models is built with
/// (`LayerNorm` keeps its epsilon private).
const EPSILON: f32 = 1e-5;

#[backend_extension(Flex, Autodiff)]
pub trait NormOps: Backend {
    /// `(x - mean) / sqrt(var + 1e-5) * gamma + beta` over the last dimension of `x`
    /// `[rows.., d]`; `gamma` and `beta` `[d]`.
    fn layer_norm_rows(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

/// `norm.forward(x)`: fused where `x` is f32 on flex and the norm has a bias, else burn's.
pub fn layer_norm(norm: &LayerNorm, x: Tensor<3>) -> Tensor<3> {
    let fused = x.dtype() == DType::F32
        && matches!(x.device().inner().as_dispatch(), DispatchDevice::Flex(_));
    match (&norm.beta, fused) {
        (Some(beta), true) => Tensor::from_dispatch(<Dispatch as NormOps>::layer_norm_rows(
            x.into_dispatch(),
            norm.gamma.val().into_dispatch(),
            beta.val().into_dispatch(),
        )),
        _ => norm.forward(x),
    }
}

impl NormOps for Flex {
    fn layer_norm_rows(
        x: FloatTensor<Flex>,
        gamma: FloatTensor<Flex>,
        beta: FloatTensor<Flex>,
    ) -> FloatTensor<Flex> {
        let (x, gamma, beta) = (dense(x), dense(gamma), dense(beta));
        let shape = x.shape();
        let d = width(&x, &gamma);
        let (y, _, _) = forward(d, f32s(&x), f32s(&gamma), f32s(&beta));
        from_f32s_shaped(y, shape)
    }
}

impl<C: CheckpointStrategy> NormOps for Autodiff<Flex, C> {
    fn layer_norm_rows(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let nodes = [x.node(), gamma.node(), beta.node()];
        let (x, gamma, beta) = (
            dense(x.into_primitive()),
            dense(gamma.into_primitive()),
            dense(beta.into_primitive()),
        );
        let shape = x.shape();
        let d = width(&x, &gamma);
        let (y, normalized, inv_std) = forward(d, f32s(&x), f32s(&gamma), f32s(&beta));
        let y = from_f32s_shaped(y, shape.clone());
        match NormBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let state = NormState {
                    shape,
                    d,
                    gamma,
                    normalized: from_f32s_shaped(normalized, x.shape()),
                    inv_std: from_f32s(inv_std.clone(), [inv_std.len()]),
                };
                prep.finish(state, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }
}

#[derive(Debug)]
struct NormBackward;

/// What the backward pass reads: the normalised rows and each row's 1 / std.
#[derive(Clone, Debug)]
struct NormState {
    shape: burn::tensor::Shape,
    d: usize,
    gamma: FloatTensor<Flex>,
    normalized: FloatTensor<Flex>,
    inv_std: FloatTensor<Flex>,
}

impl Backward<Flex, 3> for NormBackward {
    type State = NormState;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let dy = dense(grads.consume::<Flex>(&ops.node));
        let s = ops.state;
        let (normalized, inv_std) = (f32s(&s.normalized), f32s(&s.inv_std));
        if let Some(node) = node_x {
            let dx = backward_input(s.d, f32s(&s.gamma), normalized, inv_std, f32s(&dy));
            grads.register::<Flex>(node.id, from_f32s_shaped(dx, s.shape.clone()));
        }
        if node_gamma.is_some() || node_beta.is_some() {
            let (d_gamma, d_beta) = backward_params(s.d, normalized, f32s(&dy));
            if let Some(node) = node_gamma {
                grads.register::<Flex>(node.id, from_f32s(d_gamma, [s.d]));
            }
            if let Some(node) = node_beta {
                grads.register::<Flex>(node.id, from_f32s(d_beta, [s.d]));
            }
        }
    }
}

fn width(x: &FloatTensor<Flex>, gamma: &FloatTensor<Flex>) -> usize {
    let (xs, gs) = (x.shape(), gamma.shape());
    assert!(
        !xs.is_empty() && gs.len() == 1 && xs[xs.len() - 1] == gs[0],
        "layer_norm_rows: x {xs:?}, gamma {gs:?}"
    );
    gs[0]
}

fn from_f32s_shaped(values: Vec<f32>, shape: burn::tensor::Shape) -> FloatTensor<Flex> {
    use burn::backend::ops::FloatTensorOps;
    let n = values.len();
    Flex::float_reshape(from_f32s(values, [n]), shape)
}

/// Rows per parallel task: enough that a task outweighs rayon's cost of handing it out.
fn min_rows(d: usize) -> usize {
    (16384 / d.max(1)).max(1)
}

/// Rows whose in-order sums advance side by side.
///
/// Why: a row's sum in order is a chain of dependent additions (128 for d 128, each waiting
/// on the last); eight rows' chains interleaved keep the adder busy. Each row is still summed
/// in its own order, so the bits do not change.
const ROWS_TOGETHER: usize = 8;

/// Tasks of whole groups of [`ROWS_TOGETHER`] rows.
fn min_groups(d: usize) -> usize {
    min_rows(d).div_ceil(ROWS_TOGETHER)
}

/// The output, the normalised rows `(x - mean) / std` and each row's `1 / std`.
pub(crate) fn forward(
    d: usize,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let rows = x.len().checked_div(d).unwrap_or(0);
    let mut inv_std = vec![0.0f32; rows];
    if rows == 0 {
        return (vec![0.0; x.len()], vec![0.0; x.len()], inv_std);
    }
    assert_eq!(x.len(), rows * d, "layer norm rows");
    // Unzeroed: `norm_rows` writes every element of its rows (zeroing the two buffers first
    // was most of the profile's memset).
    let (mut y, mut normalized) = (Vec::with_capacity(x.len()), Vec::with_capacity(x.len()));
    let group = ROWS_TOGETHER * d;
    y.spare_capacity_mut()[..x.len()]
        .par_chunks_mut(group)
        .zip(normalized.spare_capacity_mut()[..x.len()].par_chunks_mut(group))
        .zip(inv_std.par_chunks_mut(ROWS_TOGETHER))
        .zip(x.par_chunks(group))
        .with_min_len(min_groups(d))
        .for_each(|(((y, n), r), x)| norm_rows(x, gamma, beta, n, y, r));
    // SAFETY: every group of rows wrote all of its `y` and `normalized` elements above.
    unsafe {
        y.set_len(x.len());
        normalized.set_len(x.len());
    }
    (y, normalized, inv_std)
}

widest_simd!(norm_rows(x: &[f32], gamma: &[f32], beta: &[f32], n: &mut [MaybeUninit<f32>], y: &mut [MaybeUninit<f32>], r: &mut [f32]) {
    // Per row: the sum in order, the mean, `n = x − mean` and the sum of its squares in
    // order, then `1 / std` and the affine map; a full group sums its rows side by side.
    let d = gamma.len();
    let sums = in_order_sums(x, d, r.len(), |v| v);
    for ((x, n), s) in x.chunks_exact(d).zip(n.chunks_exact_mut(d)).zip(sums) {
        let mean = s / d as f32;
        for (n, v) in n.iter_mut().zip(x) {
            n.write(v - mean);
        }
    }
    // SAFETY: the loop above wrote every element of `n` (`r.len()` whole rows).
    let n = unsafe { assume_written(n) };
    let squares = in_order_sums(n, d, r.len(), |v| v * v);
    for (((y, n), r), q) in y.chunks_exact_mut(d).zip(n.chunks_exact_mut(d)).zip(r.iter_mut()).zip(squares) {
        let inv = 1.0 / (q / d as f32 + EPSILON).sqrt();
        for (((y, n), g), b) in y.iter_mut().zip(n.iter_mut()).zip(gamma).zip(beta) {
            *n *= inv;
            y.write(*n * g + b);
        }
        *r = inv;
    }
});

/// `Σ f(v)` over each of the first `rows` rows (`d` wide) of `values`, each in its row's
/// order; a full group of [`ROWS_TOGETHER`] rows advances its sums side by side (the same
/// additions, independent chains interleaved).
#[inline(always)]
fn in_order_sums(
    values: &[f32],
    d: usize,
    rows: usize,
    f: impl Fn(f32) -> f32,
) -> [f32; ROWS_TOGETHER] {
    let mut sums = [0.0f32; ROWS_TOGETHER];
    if rows == ROWS_TOGETHER {
        let row: [&[f32]; ROWS_TOGETHER] = std::array::from_fn(|i| &values[i * d..][..d]);
        for j in 0..d {
            for (s, row) in sums.iter_mut().zip(&row) {
                *s += f(row[j]);
            }
        }
    } else {
        for (s, row) in sums.iter_mut().zip(values.chunks_exact(d).take(rows)) {
            for &v in row {
                *s += f(v);
            }
        }
    }
    sums
}

/// `dx = inv_std · (g − mean(g) − n · mean(g · n))` with `g = dy · gamma`, row by row.
pub(crate) fn backward_input(
    d: usize,
    gamma: &[f32],
    normalized: &[f32],
    inv_std: &[f32],
    dy: &[f32],
) -> Vec<f32> {
    if dy.is_empty() {
        return Vec::new();
    }
    assert!(
        normalized.len() == dy.len() && inv_std.len() * d == dy.len(),
        "layer norm backward rows"
    );
    // Unzeroed: `input_rows` writes every element before reading it.
    let mut dx = Vec::with_capacity(dy.len());
    let group = ROWS_TOGETHER * d;
    dx.spare_capacity_mut()[..dy.len()]
        .par_chunks_mut(group)
        .zip(normalized.par_chunks(group))
        .zip(dy.par_chunks(group))
        .zip(inv_std.par_chunks(ROWS_TOGETHER))
        .with_min_len(min_groups(d))
        .for_each(|(((dx, n), dy), r)| input_rows(dx, n, dy, gamma, r));
    // SAFETY: every group of rows wrote all of its elements above.
    unsafe { dx.set_len(dy.len()) };
    dx
}

widest_simd!(input_rows(dx: &mut [MaybeUninit<f32>], n: &[f32], dy: &[f32], gamma: &[f32], r: &[f32]) {
    let d = gamma.len();
    for (dx, dy) in dx.chunks_exact_mut(d).zip(dy.chunks_exact(d)) {
        for ((g, dy), gamma) in dx.iter_mut().zip(dy).zip(gamma) {
            g.write(dy * gamma);
        }
    }
    // SAFETY: the loop above wrote every element (`dx` is whole rows, as `dy`).
    let dx = unsafe { assume_written(dx) };
    let (mut sum_g, mut sum_gn) = ([0.0f32; ROWS_TOGETHER], [0.0f32; ROWS_TOGETHER]);
    if r.len() == ROWS_TOGETHER {
        // The same sums as the per-row loop below, the rows' chains interleaved.
        let g: [&[f32]; ROWS_TOGETHER] = std::array::from_fn(|i| &dx[i * d..][..d]);
        let n: [&[f32]; ROWS_TOGETHER] = std::array::from_fn(|i| &n[i * d..][..d]);
        for j in 0..d {
            for (((s, sn), g), n) in sum_g.iter_mut().zip(sum_gn.iter_mut()).zip(&g).zip(&n) {
                *s += g[j];
                *sn += g[j] * n[j];
            }
        }
    } else {
        for (((g, n), s), sn) in dx.chunks_exact(d).zip(n.chunks_exact(d)).zip(&mut sum_g).zip(&mut sum_gn) {
            for (g, n) in g.iter().zip(n) {
                *s += g;
                *sn += g * n;
            }
        }
    }
    for ((((dx, n), &r), s), sn) in dx.chunks_exact_mut(d).zip(n.chunks_exact(d)).zip(r).zip(sum_g).zip(sum_gn) {
        let (mean_g, mean_gn) = (s / d as f32, sn / d as f32);
        for (g, n) in dx.iter_mut().zip(n) {
            *g = r * (*g - mean_g - n * mean_gn);
        }
    }
});

/// `(Σ dy · n, Σ dy)` over the rows, in row order.
pub(crate) fn backward_params(d: usize, normalized: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let (mut d_gamma, mut d_beta) = (vec![0.0f32; d], vec![0.0f32; d]);
    if d > 0 {
        // Column blocks across threads, each column still summed in row order by one task.
        d_gamma
            .par_chunks_mut(COLUMN_BLOCK)
            .zip(d_beta.par_chunks_mut(COLUMN_BLOCK))
            .enumerate()
            .for_each(|(block, (dg, db))| {
                column_sums(dg, db, normalized, dy, d, block * COLUMN_BLOCK)
            });
    }
    (d_gamma, d_beta)
}

/// Columns per parallel task of the parameters' gradients: four AVX-512 vectors, 256
/// contiguous bytes of each row (one cache line per row left the prefetcher behind). Any
/// width gives the same bits: each column is summed in row order by one task.
const COLUMN_BLOCK: usize = 64;

widest_simd!(column_sums(d_gamma: &mut [f32], d_beta: &mut [f32], normalized: &[f32], dy: &[f32], d: usize, first: usize) {
    let width = d_gamma.len();
    if width == COLUMN_BLOCK {
        // A full block sums in registers (local arrays of constant width), not in the
        // outputs loaded and stored at every row: the same additions in the same order.
        let (mut dg, mut db) = ([0.0f32; COLUMN_BLOCK], [0.0f32; COLUMN_BLOCK]);
        for (n, dy) in normalized.chunks_exact(d).zip(dy.chunks_exact(d)) {
            let (n, dy) = (&n[first..first + COLUMN_BLOCK], &dy[first..first + COLUMN_BLOCK]);
            for (((dg, db), n), dy) in dg.iter_mut().zip(db.iter_mut()).zip(n).zip(dy) {
                *dg += dy * n;
                *db += dy;
            }
        }
        for ((o, a), (p, b)) in d_gamma.iter_mut().zip(dg).zip(d_beta.iter_mut().zip(db)) {
            *o += a;
            *p += b;
        }
        return;
    }
    for (n, dy) in normalized.chunks_exact(d).zip(dy.chunks_exact(d)) {
        let (n, dy) = (&n[first..first + width], &dy[first..first + width]);
        for (((dg, db), n), dy) in d_gamma.iter_mut().zip(d_beta.iter_mut()).zip(n).zip(dy) {
            *dg += dy * n;
            *db += dy;
        }
    }
});

#[cfg(test)]
mod tests {
    use burn::module::Param;
    use burn::nn::LayerNormConfig;
    use burn::tensor::{Device, Distribution, TensorData};

    use super::super::fused::tests::{assert_close, values};
    use super::*;

    /// Outputs and the gradients of the input, scale and shift match burn's composed
    /// `LayerNorm::forward` (trained parameters, not the initial ones and zeros).
    #[test]
    fn fused_norm_matches_burn_outputs_and_gradients() {
        let device = Device::flex().autodiff();
        for (batch, seq, d) in [(3, 7, 16), (2, 5, 13), (1, 1, 1)] {
            let mut norm = LayerNormConfig::new(d).init(&device);
            norm.gamma =
                Param::from_tensor(Tensor::random([d], Distribution::Normal(1.0, 0.5), &device));
            norm.beta = Some(Param::from_tensor(Tensor::random(
                [d],
                Distribution::Normal(0.0, 0.5),
                &device,
            )));
            let x: Tensor<3> =
                Tensor::random([batch, seq, d], Distribution::Normal(0.5, 2.0), &device)
                    .require_grad();
            let weights: Tensor<3> =
                Tensor::random([batch, seq, d], Distribution::Normal(0.0, 1.0), &device);
            let fused = layer_norm(&norm, x.clone());
            let reference = norm.forward(x.clone());
            let what = format!("{batch}x{seq}x{d}");
            assert_close(
                &values(fused.clone()),
                &values(reference.clone()),
                &format!("{what}: output"),
            );
            let g_fused = (fused * weights.clone()).sum().backward();
            let g_reference = (reference * weights).sum().backward();
            assert_close(
                &values(x.grad(&g_fused).unwrap()),
                &values(x.grad(&g_reference).unwrap()),
                &format!("{what}: dx"),
            );
            let beta = norm.beta.as_ref().unwrap();
            for (name, p) in [("gamma", &norm.gamma), ("beta", beta)] {
                assert_close(
                    &values(p.grad(&g_fused).unwrap()),
                    &values(p.grad(&g_reference).unwrap()),
                    &format!("{what}: d{name}"),
                );
            }
        }
    }

    /// Without autodiff the operation gives the same bits as with it.
    #[test]
    fn fused_norm_without_autodiff_gives_the_same_outputs() {
        let data: Vec<f32> = (0..2 * 5 * 12)
            .map(|i| ((i as f32) * 0.618).fract())
            .collect();
        let run = |device: &Device| {
            let norm = LayerNormConfig::new(12).init(device);
            let x = Tensor::<3>::from_data(TensorData::new(data.clone(), [2, 5, 12]), device);
            values(layer_norm(&norm, x))
                .into_iter()
                .map(f32::to_bits)
                .collect::<Vec<_>>()
        };
        assert_eq!(run(&Device::flex()), run(&Device::flex().autodiff()));
    }

    /// The kernels give the same bits on a pool of one, two and three threads, with enough
    /// rows to split.
    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let d = 64;
        let rows = 2000;
        let x: Vec<f32> = (0..rows * d)
            .map(|i| ((i as f32) * 0.618_034).fract() * 4.0 - 1.0)
            .collect();
        let dy: Vec<f32> = (0..rows * d)
            .map(|i| ((i as f32) * 0.414_213).fract() - 0.5)
            .collect();
        let gamma: Vec<f32> = (0..d).map(|i| 0.5 + i as f32 * 0.01).collect();
        let beta: Vec<f32> = (0..d).map(|i| i as f32 * -0.02).collect();
        let run = |threads: usize| {
            crate::model::tests::on_threads(threads, || {
                let (y, n, r) = forward(d, &x, &gamma, &beta);
                let dx = backward_input(d, &gamma, &n, &r, &dy);
                let (dg, db) = backward_params(d, &n, &dy);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                (bits(&y), bits(&dx), bits(&dg), bits(&db))
            })
        };
        let one = run(1);
        assert_eq!(one, run(2));
        assert_eq!(one, run(3));
    }
}
