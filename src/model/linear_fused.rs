//! Fused linear layer over rows, with an optional GELU: a burn backend extension
//! (`LinearOps`) with its own backward pass, for f32 on flex. Other devices and dtypes take
//! burn's `Linear::forward` (and `Gelu`).
//!
//! Why: composed, `x W + b` is a matmul, then a pass adding the bias (allocating the
//! output again), and GELU a third pass; the backward pass adds GELU's derivative, a product
//! with the incoming gradient and a reduction for the bias, each its own pass, on one thread.
//! Here the bias is written into the output before the GEMM accumulates into it, GELU runs
//! over the GEMM's output in place, split across threads, and the backward pass is one
//! parallel pass for GELU's derivative, the three GEMMs and one column sum.
//!
//! Results do not depend on the thread count: the GEMMs split their output, never a sum; the
//! elementwise passes compute each element alone; the bias gradient sums each column in row
//! order, columns split across threads. GELU and its derivative are flex's (`x Φ(x)`, the
//! same functions of `vendor/burn-flex`).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, DispatchDevice, Flex, TensorMetadata, backend_extension};
use burn::nn::Linear;
use burn::tensor::{DType, Tensor};
use burn_flex::ops::activation::{exp_f32, normal_cdf_f32};
use rayon::prelude::*;
use std::mem::MaybeUninit;

use super::fused::{
    Mat, Out, dense, f32s, from_f32s, into_f32s, matmul, matmul_uninit, widest_simd,
};

#[backend_extension(Flex, Autodiff)]
pub trait LinearOps: Backend {
    /// `x W + b` for `x` `[rows, d_in]`, `w` `[d_in, d_out]`, `b` `[d_out]`; with `gelu`,
    /// GELU (`x Φ(x)`) of it.
    fn linear_rows_fused(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
        gelu: bool,
    ) -> FloatTensor<Self>;

    /// `residual + (x W + b)`, `residual` `[rows, d_out]`: a layer's output added to the
    /// residual stream in a parallel pass over it, not in a pass of its own.
    fn linear_rows_residual_fused(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
        residual: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

/// `residual + linear.forward(x)` for `x` `[batch, seq, d_in]` and `residual` `[batch, seq,
/// d_out]`: fused where `x` is f32 on flex and the layer has a bias, else [`linear_rows`]
/// then an addition. The same bits either way (`b + xW` computed as in [`linear_rows`], then
/// added to the residual).
pub fn linear_rows_residual(linear: &Linear, x: Tensor<3>, residual: Tensor<3>) -> Tensor<3> {
    let [batch, seq, d_in] = x.dims();
    let fused = x.dtype() == DType::F32
        && residual.dtype() == DType::F32
        && matches!(x.device().inner().as_dispatch(), DispatchDevice::Flex(_));
    match (&linear.bias, fused) {
        (Some(bias), true) => {
            let d_out = residual.dims()[2];
            let y =
                Tensor::<2>::from_dispatch(<Dispatch as LinearOps>::linear_rows_residual_fused(
                    x.reshape([batch * seq, d_in]).into_dispatch(),
                    linear.weight.val().into_dispatch(),
                    bias.val().into_dispatch(),
                    residual.reshape([batch * seq, d_out]).into_dispatch(),
                ));
            y.reshape([batch, seq, d_out])
        }
        _ => residual + linear_rows(linear, x, false),
    }
}

/// `linear.forward(x)` (then GELU with `gelu`) for `x` `[batch, seq, d_in]`, as one row
/// matmul: fused where `x` is f32 on flex and the layer has a bias, else burn's ops.
pub fn linear_rows(linear: &Linear, x: Tensor<3>, gelu: bool) -> Tensor<3> {
    let [batch, seq, d_in] = x.dims();
    let rows = x.reshape([batch * seq, d_in]);
    let fused = rows.dtype() == DType::F32
        && matches!(rows.device().inner().as_dispatch(), DispatchDevice::Flex(_));
    let y = match (&linear.bias, fused) {
        (Some(bias), true) => Tensor::from_dispatch(<Dispatch as LinearOps>::linear_rows_fused(
            rows.into_dispatch(),
            linear.weight.val().into_dispatch(),
            bias.val().into_dispatch(),
            gelu,
        )),
        _ => {
            let y = linear.forward(rows);
            if gelu {
                burn::tensor::activation::gelu(y)
            } else {
                y
            }
        }
    };
    let [_, d_out] = y.dims();
    y.reshape([batch, seq, d_out])
}

impl LinearOps for Flex {
    fn linear_rows_fused(
        x: FloatTensor<Flex>,
        w: FloatTensor<Flex>,
        b: FloatTensor<Flex>,
        gelu: bool,
    ) -> FloatTensor<Flex> {
        let (x, w, b) = (dense(x), dense(w), dense(b));
        let d = LinearDims::of(&x, &w);
        let mut y = forward(d, f32s(&x), f32s(&w), f32s(&b));
        if gelu {
            gelu_in_place(&mut y);
        }
        from_f32s(y, [d.rows, d.d_out])
    }

    fn linear_rows_residual_fused(
        x: FloatTensor<Flex>,
        w: FloatTensor<Flex>,
        b: FloatTensor<Flex>,
        residual: FloatTensor<Flex>,
    ) -> FloatTensor<Flex> {
        let (x, w, b, residual) = (dense(x), dense(w), dense(b), dense(residual));
        let d = LinearDims::of(&x, &w);
        let mut y = forward(d, f32s(&x), f32s(&w), f32s(&b));
        add_in_place(&mut y, f32s(&residual));
        from_f32s(y, [d.rows, d.d_out])
    }
}

impl<C: CheckpointStrategy> LinearOps for Autodiff<Flex, C> {
    fn linear_rows_fused(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
        gelu: bool,
    ) -> FloatTensor<Self> {
        let nodes = [x.node(), w.node(), b.node()];
        let (x, w, b) = (
            dense(x.into_primitive()),
            dense(w.into_primitive()),
            dense(b.into_primitive()),
        );
        let d = LinearDims::of(&x, &w);
        let pre = forward(d, f32s(&x), f32s(&w), f32s(&b));
        let (y, pre) = if gelu {
            let y = gelu_of(&pre);
            (y, Some(from_f32s(pre, [d.rows, d.d_out])))
        } else {
            (pre, None)
        };
        let y = from_f32s(y, [d.rows, d.d_out]);
        match LinearBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(LinearState { d, x, w, pre }, y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }

    fn linear_rows_residual_fused(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
        residual: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let nodes = [x.node(), w.node(), b.node(), residual.node()];
        let (x, w, b, residual) = (
            dense(x.into_primitive()),
            dense(w.into_primitive()),
            dense(b.into_primitive()),
            dense(residual.into_primitive()),
        );
        let d = LinearDims::of(&x, &w);
        let mut y = forward(d, f32s(&x), f32s(&w), f32s(&b));
        add_in_place(&mut y, f32s(&residual));
        let y = from_f32s(y, [d.rows, d.d_out]);
        match ResidualBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(LinearState { d, x, w, pre: None }, y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }
}

#[derive(Debug)]
struct LinearBackward;

#[derive(Debug)]
struct ResidualBackward;

impl Backward<Flex, 4> for ResidualBackward {
    type State = LinearState;

    fn backward(
        self,
        ops: Ops<Self::State, 4>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_w, node_b, node_residual] = ops.parents;
        let dy = dense(grads.consume::<Flex>(&ops.node));
        let s = ops.state;
        let d = s.d;
        let g = backward(d, f32s(&s.x), f32s(&s.w), f32s(&dy), node_x.is_some());
        register_linear_grads(
            grads,
            d,
            [node_x, node_w, node_b].map(|n| n.map(|n| n.id)),
            g,
        );
        // The residual stream's gradient is the output's, shared (not copied).
        if let Some(node) = node_residual {
            grads.register::<Flex>(node.id, dy);
        }
    }
}

/// Registers the gradients of a product's input, weight and bias with their nodes.
fn register_linear_grads(
    grads: &mut Gradients,
    d: LinearDims,
    [node_x, node_w, node_b]: [Option<NodeId>; 3],
    g: LinearGrads,
) {
    if let (Some(node), Some(dx)) = (node_x, g.x) {
        grads.register::<Flex>(node, from_f32s(dx, [d.rows, d.d_in]));
    }
    if let Some(node) = node_w {
        grads.register::<Flex>(node, from_f32s(g.w, [d.d_in, d.d_out]));
    }
    if let Some(node) = node_b {
        grads.register::<Flex>(node, from_f32s(g.b, [d.d_out]));
    }
}

/// What the backward pass reads: the inputs and, with GELU, its input.
#[derive(Clone, Debug)]
struct LinearState {
    d: LinearDims,
    x: FloatTensor<Flex>,
    w: FloatTensor<Flex>,
    pre: Option<FloatTensor<Flex>>,
}

impl Backward<Flex, 3> for LinearBackward {
    type State = LinearState;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_w, node_b] = ops.parents;
        let dy = dense(grads.consume::<Flex>(&ops.node));
        let s = ops.state;
        let d = s.d;
        let g = match &s.pre {
            // Through GELU's derivative in `dy`'s own buffer (a copy only when it is shared),
            // the bias gradient summed in the same pass.
            Some(pre) => {
                let mut d_pre = into_f32s(dy);
                let b = gelu_backward_and_column_sums(&mut d_pre, f32s(pre), d.d_out);
                backward_with_bias(d, f32s(&s.x), f32s(&s.w), &d_pre, b, node_x.is_some())
            }
            None => backward(d, f32s(&s.x), f32s(&s.w), f32s(&dy), node_x.is_some()),
        };
        register_linear_grads(
            grads,
            d,
            [node_x, node_w, node_b].map(|n| n.map(|n| n.id)),
            g,
        );
    }
}

/// The sizes of one product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LinearDims {
    pub rows: usize,
    pub d_in: usize,
    pub d_out: usize,
}

impl LinearDims {
    fn of(x: &FloatTensor<Flex>, w: &FloatTensor<Flex>) -> Self {
        let (xs, ws) = (x.shape(), w.shape());
        assert!(
            xs.len() == 2 && ws.len() == 2 && xs[1] == ws[0],
            "linear_rows_fused: x {xs:?}, w {ws:?}"
        );
        LinearDims {
            rows: xs[0],
            d_in: xs[1],
            d_out: ws[1],
        }
    }
}

/// `x W + b`: the bias in every row, then the product added by the GEMM.
pub(crate) fn forward(d: LinearDims, x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
    assert_eq!(
        (x.len(), w.len(), b.len()),
        (d.rows * d.d_in, d.d_in * d.d_out, d.d_out)
    );
    // The bias copied into every row (not a zeroed buffer then written over), rows split
    // across threads.
    let n = d.rows * d.d_out;
    if n == 0 {
        return Vec::new();
    }
    let mut y = Vec::with_capacity(n);
    let rows_per_task = (CHUNK / d.d_out).max(1);
    y.spare_capacity_mut()[..n]
        .par_chunks_mut(rows_per_task * d.d_out)
        .for_each(|rows| {
            for row in rows.chunks_exact_mut(d.d_out) {
                for (y, &b) in row.iter_mut().zip(b) {
                    y.write(b);
                }
            }
        });
    // SAFETY: every row was written above.
    unsafe { y.set_len(n) };
    if d.d_in > 0 {
        matmul(
            Out::new(&mut y, d.rows, d.d_out, d.d_out, true),
            Mat::rows(x, d.rows, d.d_in, d.d_in),
            Mat::rows(w, d.d_in, d.d_out, d.d_out),
        );
    }
    y
}

/// Gradients of one product; `x` only when asked for.
pub(crate) struct LinearGrads {
    pub x: Option<Vec<f32>>,
    pub w: Vec<f32>,
    pub b: Vec<f32>,
}

/// The gradients from `d_out`, the loss's gradient with respect to `x W + b`.
pub(crate) fn backward(
    d: LinearDims,
    x: &[f32],
    w: &[f32],
    d_out: &[f32],
    want_x: bool,
) -> LinearGrads {
    assert_eq!(d_out.len(), d.rows * d.d_out);
    let b = column_sums(d_out, d.d_out);
    backward_with_bias(d, x, w, d_out, b, want_x)
}

/// [`backward`] with the bias gradient `b` (the column sums of `d_out`) already taken.
fn backward_with_bias(
    d: LinearDims,
    x: &[f32],
    w: &[f32],
    d_out: &[f32],
    b: Vec<f32>,
    want_x: bool,
) -> LinearGrads {
    assert_eq!((d_out.len(), b.len()), (d.rows * d.d_out, d.d_out));
    if d.rows == 0 || d.d_in == 0 || d.d_out == 0 {
        return LinearGrads {
            x: want_x.then(|| vec![0.0f32; d.rows * d.d_in]),
            w: vec![0.0f32; d.d_in * d.d_out],
            b,
        };
    }
    // Unzeroed: each product writes all of its output.
    let mut w_grad = Vec::with_capacity(d.d_in * d.d_out);
    matmul_uninit(
        w_grad.spare_capacity_mut(),
        d.d_out,
        Mat::transposed(x, d.d_in, d.rows, d.d_in),
        Mat::rows(d_out, d.rows, d.d_out, d.d_out),
    );
    // SAFETY: the product wrote all `d_in × d_out` elements.
    unsafe { w_grad.set_len(d.d_in * d.d_out) };
    let x_grad = want_x.then(|| {
        let mut dx = Vec::with_capacity(d.rows * d.d_in);
        matmul_uninit(
            dx.spare_capacity_mut(),
            d.d_in,
            Mat::rows(d_out, d.rows, d.d_out, d.d_out),
            Mat::transposed(w, d.d_out, d.d_in, d.d_out),
        );
        // SAFETY: the product wrote all `rows × d_in` elements.
        unsafe { dx.set_len(d.rows * d.d_in) };
        dx
    });
    LinearGrads {
        x: x_grad,
        w: w_grad,
        b,
    }
}

/// Elements per parallel task of the elementwise passes.
const CHUNK: usize = 16 * 1024;

/// Columns per parallel task of [`column_sums`]: four AVX-512 vectors, 256 contiguous bytes
/// of each row (each task walks every row; one or two cache lines per row left the
/// prefetcher behind). The width changes no bits: each column is still summed in row order
/// by one task.
const COLUMN_BLOCK: usize = 64;

/// The sum of each column of the row-major `values` (`cols` wide), in row order.
fn column_sums(values: &[f32], cols: usize) -> Vec<f32> {
    let mut sums = vec![0.0f32; cols];
    if cols == 0 {
        return sums;
    }
    sums.par_chunks_mut(COLUMN_BLOCK)
        .enumerate()
        .for_each(|(block, sums)| add_columns(sums, values, cols, block * COLUMN_BLOCK));
    sums
}

widest_simd!(add_columns(sums: &mut [f32], values: &[f32], cols: usize, first: usize) {
    let width = sums.len();
    if width == COLUMN_BLOCK {
        // A full block sums in registers (a local array of constant width), not in `sums`
        // loaded and stored at every row: the same additions in the same order.
        let mut acc = [0.0f32; COLUMN_BLOCK];
        for row in values.chunks_exact(cols) {
            for (a, v) in acc.iter_mut().zip(&row[first..first + COLUMN_BLOCK]) {
                *a += v;
            }
        }
        for (s, a) in sums.iter_mut().zip(acc) {
            *s += a;
        }
        return;
    }
    for row in values.chunks_exact(cols) {
        for (s, v) in sums.iter_mut().zip(&row[first..first + width]) {
            *s += v;
        }
    }
});

/// `y += residual`, in parallel chunks (each element alone).
fn add_in_place(y: &mut [f32], residual: &[f32]) {
    assert_eq!(y.len(), residual.len(), "residual shape");
    y.par_chunks_mut(CHUNK)
        .zip(residual.par_chunks(CHUNK))
        .for_each(|(y, r)| add_chunk(y, r));
}

widest_simd!(add_chunk(y: &mut [f32], residual: &[f32]) {
    // As flex's `residual + y` (addition commutes bit for bit).
    for (y, r) in y.iter_mut().zip(residual) {
        *y += r;
    }
});

fn gelu_in_place(values: &mut [f32]) {
    values.par_chunks_mut(CHUNK).for_each(gelu_chunk);
}

/// GELU of every element of `pre`, into a new buffer (not a copy then a pass over it).
fn gelu_of(pre: &[f32]) -> Vec<f32> {
    let n = pre.len();
    let mut y = Vec::with_capacity(n);
    y.spare_capacity_mut()[..n]
        .par_chunks_mut(CHUNK)
        .zip(pre.par_chunks(CHUNK))
        .for_each(|(y, x)| gelu_chunk_into(y, x));
    // SAFETY: the chunks above wrote every one of the `n` elements.
    unsafe { y.set_len(n) };
    y
}

widest_simd!(gelu_chunk_into(y: &mut [MaybeUninit<f32>], pre: &[f32]) {
    // `gelu_chunk`'s arithmetic.
    for (y, &x) in y.iter_mut().zip(pre) {
        y.write(x * normal_cdf_f32(x));
    }
});

widest_simd!(gelu_chunk(values: &mut [f32]) {
    // flex's `gelu`: x Φ(x).
    for v in values.iter_mut() {
        *v = *v * normal_cdf_f32(*v);
    }
});

/// GELU's derivative applied to the row-major `grad` (`cols` wide) in place, `pre` GELU's
/// input (flex's `gelu_backward`: `g (Φ(x) + x φ(x))`), returning the sum of each column of
/// the result in row order (the bias gradient).
///
/// Two passes that each stream their rows: the derivative over contiguous chunks, then
/// [`column_sums`]. Why not one pass over column blocks: each block walked every row of two
/// 2 KiB-row buffers (`ff` 512), a few cache lines per row, and stalled on its loads (15% of
/// transformer-ref's profile, against about 4% for the forward GELU's pass). The bits do not
/// depend on it or on the thread count: each element is computed alone, each column summed
/// in row order by one task.
fn gelu_backward_and_column_sums(grad: &mut [f32], pre: &[f32], cols: usize) -> Vec<f32> {
    assert_eq!(grad.len(), pre.len());
    if cols == 0 || grad.is_empty() {
        return vec![0.0f32; cols];
    }
    assert_eq!(grad.len() % cols, 0);
    grad.par_chunks_mut(CHUNK)
        .zip(pre.par_chunks(CHUNK))
        .for_each(|(g, x)| gelu_backward_chunk(g, x));
    column_sums(grad, cols)
}

widest_simd!(gelu_backward_chunk(grad: &mut [f32], pre: &[f32]) {
    let inv_sqrt_2pi: f32 = 1.0 / (2.0 * core::f32::consts::PI).sqrt();
    for (g, &x) in grad.iter_mut().zip(pre) {
        let pdf = inv_sqrt_2pi * exp_f32(-0.5 * x * x);
        *g *= normal_cdf_f32(x) + x * pdf;
    }
});

#[cfg(test)]
mod tests {
    use burn::nn::LinearConfig;
    use burn::tensor::activation::gelu;
    use burn::tensor::{Device, Distribution, TensorData};

    use super::super::fused::tests::{assert_close, values};
    use super::*;

    /// Outputs and the gradients of the input, weight and bias match burn's `Linear` (then
    /// `gelu`), with and without GELU.
    #[test]
    fn fused_linear_matches_burn_outputs_and_gradients() {
        let device = Device::flex().autodiff();
        for (batch, seq, d_in, d_out) in [(3, 7, 16, 24), (2, 5, 13, 3), (1, 1, 1, 1)] {
            for with_gelu in [false, true] {
                let linear = LinearConfig::new(d_in, d_out).init(&device);
                let x: Tensor<3> =
                    Tensor::random([batch, seq, d_in], Distribution::Normal(0.0, 2.0), &device)
                        .require_grad();
                let weights: Tensor<3> =
                    Tensor::random([batch, seq, d_out], Distribution::Normal(0.0, 1.0), &device);
                let fused = linear_rows(&linear, x.clone(), with_gelu);
                let plain = linear.forward(x.clone());
                let reference = if with_gelu { gelu(plain) } else { plain };
                let what = format!("{batch}x{seq}x{d_in}->{d_out}, gelu {with_gelu}");
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
                assert_close(
                    &values(linear.weight.grad(&g_fused).unwrap()),
                    &values(linear.weight.grad(&g_reference).unwrap()),
                    &format!("{what}: dw"),
                );
                let bias = linear.bias.as_ref().unwrap();
                assert_close(
                    &values(bias.grad(&g_fused).unwrap()),
                    &values(bias.grad(&g_reference).unwrap()),
                    &format!("{what}: db"),
                );
            }
        }
    }

    /// The residual form gives the bits of the layer then an addition, outputs and the
    /// gradients of the input, weight, bias and residual stream, with and without autodiff.
    #[test]
    fn residual_form_gives_the_bits_of_the_layer_then_an_addition() {
        let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
        let plain = Device::flex();
        let device = plain.clone().autodiff();
        let linear = LinearConfig::new(12, 20).init(&device);
        let x: Tensor<3> =
            Tensor::random([3, 7, 12], Distribution::Normal(0.0, 2.0), &device).require_grad();
        let r: Tensor<3> =
            Tensor::random([3, 7, 20], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let weights: Tensor<3> =
            Tensor::random([3, 7, 20], Distribution::Normal(0.0, 1.0), &device);
        let fused = linear_rows_residual(&linear, x.clone(), r.clone());
        let reference = r.clone() + linear_rows(&linear, x.clone(), false);
        assert_eq!(bits(values(fused.clone())), bits(values(reference.clone())));
        let mut on_plain = LinearConfig::new(12, 20).init(&plain);
        on_plain.weight = burn::module::Param::from_tensor(Tensor::from_data(
            linear.weight.val().to_data(),
            &plain,
        ));
        on_plain.bias = Some(burn::module::Param::from_tensor(Tensor::from_data(
            linear.bias.as_ref().unwrap().val().to_data(),
            &plain,
        )));
        let without = linear_rows_residual(
            &on_plain,
            Tensor::from_data(x.to_data(), &plain),
            Tensor::from_data(r.to_data(), &plain),
        );
        assert_eq!(bits(values(without)), bits(values(reference.clone())));
        let g_fused = (fused * weights.clone()).sum().backward();
        let g_reference = (reference * weights).sum().backward();
        let bias = linear.bias.as_ref().unwrap();
        assert_eq!(
            bits(values(x.grad(&g_fused).unwrap())),
            bits(values(x.grad(&g_reference).unwrap()))
        );
        assert_eq!(
            bits(values(r.grad(&g_fused).unwrap())),
            bits(values(r.grad(&g_reference).unwrap()))
        );
        assert_eq!(
            bits(values(linear.weight.grad(&g_fused).unwrap())),
            bits(values(linear.weight.grad(&g_reference).unwrap()))
        );
        assert_eq!(
            bits(values(bias.grad(&g_fused).unwrap())),
            bits(values(bias.grad(&g_reference).unwrap()))
        );
    }

    /// Without autodiff the operation gives the same bits as with it.
    #[test]
    fn fused_linear_without_autodiff_gives_the_same_outputs() {
        let data: Vec<f32> = (0..2 * 5 * 12)
            .map(|i| ((i as f32) * 0.618).fract() * 4.0 - 2.0)
            .collect();
        // Same parameters on both devices: initialise once and copy the values.
        let init = LinearConfig::new(12, 9).init(&Device::flex());
        let (w, b) = (
            values(init.weight.val()),
            values(init.bias.as_ref().unwrap().val()),
        );
        let on = |device: &Device| {
            let mut linear = LinearConfig::new(12, 9).init(device);
            linear.weight = burn::module::Param::from_tensor(Tensor::from_data(
                TensorData::new(w.clone(), [12, 9]),
                device,
            ));
            linear.bias = Some(burn::module::Param::from_tensor(Tensor::from_data(
                TensorData::new(b.clone(), [9]),
                device,
            )));
            let x = Tensor::<3>::from_data(TensorData::new(data.clone(), [2, 5, 12]), device);
            values(linear_rows(&linear, x, true))
                .into_iter()
                .map(f32::to_bits)
                .collect::<Vec<_>>()
        };
        assert_eq!(on(&Device::flex()), on(&Device::flex().autodiff()));
    }

    /// The fused GELU backward pass gives the bits of the derivative computed element by
    /// element (flex's `gelu_backward`) and of the plain column sums, on odd widths too.
    #[test]
    fn gelu_backward_and_column_sums_match_the_separate_passes() {
        use super::super::fused::tests::pseudo_random;
        for (rows, cols) in [(5, 3), (40, 97), (3, 200)] {
            let pre = pseudo_random(rows * cols, 7, 3.0);
            let dy = pseudo_random(rows * cols, 8, 1.0);
            let inv_sqrt_2pi: f32 = 1.0 / (2.0 * core::f32::consts::PI).sqrt();
            let want: Vec<f32> = dy
                .iter()
                .zip(&pre)
                .map(|(&g, &x)| {
                    g * (normal_cdf_f32(x) + x * (inv_sqrt_2pi * exp_f32(-0.5 * x * x)))
                })
                .collect();
            let mut got = dy.clone();
            let sums = gelu_backward_and_column_sums(&mut got, &pre, cols);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "{rows}x{cols}: derivative");
            let in_order: Vec<f32> = (0..cols)
                .map(|c| (0..rows).fold(0.0f32, |s, r| s + want[r * cols + c]))
                .collect();
            assert_eq!(bits(&sums), bits(&in_order), "{rows}x{cols}: sums");
            assert_eq!(
                bits(&column_sums(&want, cols)),
                bits(&in_order),
                "{rows}x{cols}: plain sums"
            );
        }
    }

    /// The kernels give the same bits on a pool of one, two and three threads, with sizes
    /// large enough that the GEMMs, the GELU passes and the column sums split.
    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let d = LinearDims {
            rows: 700,
            d_in: 48,
            d_out: 96,
        };
        let wave = |n: usize, k: f32| -> Vec<f32> {
            (0..n)
                .map(|i| ((i as f32) * k).fract() * 4.0 - 2.0)
                .collect()
        };
        let x = wave(d.rows * d.d_in, 0.618_034);
        let w = wave(d.d_in * d.d_out, 0.414_213);
        let b = wave(d.d_out, 0.732_05);
        let dy = wave(d.rows * d.d_out, 0.236_07);
        let run = |threads: usize| {
            crate::model::tests::on_threads(threads, || {
                let pre = forward(d, &x, &w, &b);
                let mut y = pre.clone();
                gelu_in_place(&mut y);
                assert_eq!(
                    y.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    gelu_of(&pre)
                        .iter()
                        .map(|v| v.to_bits())
                        .collect::<Vec<_>>(),
                    "GELU into a new buffer"
                );
                let mut d_pre = dy.clone();
                let sums = gelu_backward_and_column_sums(&mut d_pre, &pre, d.d_out);
                let g = backward(d, &x, &w, &d_pre, true);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&sums), bits(&g.b), "fused column sums");
                (
                    bits(&y),
                    bits(&g.x.unwrap()),
                    bits(&g.w),
                    bits(&g.b),
                    bits(&d_pre),
                )
            })
        };
        let one = run(1);
        assert_eq!(one, run(2));
        assert_eq!(one, run(3));
    }
}
