//! Fused multi-head self-attention: a burn backend extension (`AttentionOps`) with its own
//! backward pass, for f32 on flex. Other devices and dtypes take the composed attention in
//! `encoder.rs`.
//!
//! Why: composed of burn ops, the attention core of one layer is a batched matmul over
//! `batch × heads` small products (each re-packing its operands), a strided copy per head
//! swap, and about five elementwise passes of the softmax over the `[batch, heads, seq, seq]`
//! scores, each allocating its output; the backward pass doubles all of it. Here the core is
//! one node that reads the projected queries, keys and values `[batch, seq, d]` where the
//! linear layers wrote them (head `h` in columns `h·d_k..(h+1)·d_k`) and writes the context
//! in the layout the output projection reads:
//!
//! - forward, per batch row and head: `S = Q Kᵀ` (one GEMM), `P = softmax(S / √d_k)` row by
//!   row, `O = P V` (one GEMM); `P` is kept for the backward pass;
//! - backward: `dP = dO Vᵀ`, `dV = Pᵀ dO`, `dS = P ⊙ (dP − rowsum(dP ⊙ P)) / √d_k`,
//!   `dQ = dS K`, `dK = dSᵀ Q`.
//!
//! Results do not depend on the thread count: the batch rows are split across threads, each
//! writing only its own rows of every output, and each row is computed the same way (plain
//! IEEE operations in a fixed order, the GEMMs by flex's `gemm`, which has the same bits on
//! every x86-64 CPU). `tests` compare outputs and gradients with the composed attention.

use std::sync::Arc;

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, DispatchDevice, Flex, TensorMetadata, backend_extension};
use burn::tensor::{DType, Tensor};
use burn_flex::ops::activation::exp_f32;
use rayon::prelude::*;

use super::fused::{
    Mat, Out, assume_written, dense, f32s, from_f32s, matmul, matmul_uninit, widest_simd,
};

#[backend_extension(Flex, Autodiff)]
pub trait AttentionOps: Backend {
    /// Scaled dot-product self-attention of `heads` heads, without mask or dropout: `q`, `k`,
    /// `v` `[batch, seq, d]` (head `h` in columns `h·d/heads..(h+1)·d/heads`). Returns the
    /// context `[batch, seq, d]`, heads laid out as in the inputs.
    fn multi_head_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        heads: usize,
    ) -> FloatTensor<Self>;
}

/// Whether [`multi_head_attention`] runs `x` (f32 on flex, with or without autodiff).
pub fn supports(x: &Tensor<3>) -> bool {
    x.dtype() == DType::F32 && matches!(x.device().inner().as_dispatch(), DispatchDevice::Flex(_))
}

/// The attention core through the fused operation; see
/// [`AttentionOps::multi_head_attention`]. Call only where [`supports`] holds.
pub fn multi_head_attention(q: Tensor<3>, k: Tensor<3>, v: Tensor<3>, heads: usize) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as AttentionOps>::multi_head_attention(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        heads,
    ))
}

impl AttentionOps for Flex {
    fn multi_head_attention(
        q: FloatTensor<Flex>,
        k: FloatTensor<Flex>,
        v: FloatTensor<Flex>,
        heads: usize,
    ) -> FloatTensor<Flex> {
        let (q, k, v) = (dense(q), dense(k), dense(v));
        let dims = AttentionDims::of(&q, &k, &v, heads);
        let (context, _) = forward(dims, f32s(&q), f32s(&k), f32s(&v));
        from_f32s(context, [dims.batch, dims.seq, dims.d])
    }
}

impl<C: CheckpointStrategy> AttentionOps for Autodiff<Flex, C> {
    fn multi_head_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        heads: usize,
    ) -> FloatTensor<Self> {
        let nodes = [q.node(), k.node(), v.node()];
        let (q, k, v) = (
            dense(q.into_primitive()),
            dense(k.into_primitive()),
            dense(v.into_primitive()),
        );
        let dims = AttentionDims::of(&q, &k, &v, heads);
        let (context, probs) = forward(dims, f32s(&q), f32s(&k), f32s(&v));
        let context = from_f32s(context, [dims.batch, dims.seq, dims.d]);
        match AttentionBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let state = AttentionState {
                    dims,
                    q,
                    k,
                    v,
                    probs: Arc::new(probs),
                };
                prep.finish(state, context)
            }
            OpsKind::UnTracked(prep) => prep.finish(context),
        }
    }
}

#[derive(Debug)]
struct AttentionBackward;

/// What the backward pass reads: the inputs and the attention weights.
#[derive(Clone)]
struct AttentionState {
    dims: AttentionDims,
    q: FloatTensor<Flex>,
    k: FloatTensor<Flex>,
    v: FloatTensor<Flex>,
    probs: Arc<Vec<f32>>,
}

impl std::fmt::Debug for AttentionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttentionState")
            .field("dims", &self.dims)
            .finish_non_exhaustive()
    }
}

impl Backward<Flex, 3> for AttentionBackward {
    type State = AttentionState;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_q, node_k, node_v] = ops.parents;
        let d_context = dense(grads.consume::<Flex>(&ops.node));
        let s = ops.state;
        let d = s.dims;
        let g = backward(
            d,
            f32s(&s.q),
            f32s(&s.k),
            f32s(&s.v),
            &s.probs,
            f32s(&d_context),
        );
        let shape = [d.batch, d.seq, d.d];
        for (node, grad) in [(node_q, g.q), (node_k, g.k), (node_v, g.v)] {
            if let Some(node) = node {
                grads.register::<Flex>(node.id, from_f32s(grad, shape));
            }
        }
    }
}

/// The sizes of one attention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AttentionDims {
    pub batch: usize,
    pub seq: usize,
    pub d: usize,
    pub heads: usize,
}

impl AttentionDims {
    fn of(
        q: &FloatTensor<Flex>,
        k: &FloatTensor<Flex>,
        v: &FloatTensor<Flex>,
        heads: usize,
    ) -> Self {
        let (qs, ks, vs) = (q.shape(), k.shape(), v.shape());
        assert!(
            qs.len() == 3 && qs == ks && qs == vs && heads > 0 && qs[2] % heads == 0,
            "multi_head_attention: q {qs:?}, k {ks:?}, v {vs:?}, {heads} heads"
        );
        AttentionDims {
            batch: qs[0],
            seq: qs[1],
            d: qs[2],
            heads,
        }
    }

    fn d_k(&self) -> usize {
        self.d / self.heads
    }

    /// √d_k in f32, as the composed attention divides by it.
    fn scale(&self) -> f32 {
        (self.d_k() as f32).sqrt()
    }
}

/// The context `[batch, seq, d]` and the attention weights `[batch, heads, seq, seq]`.
pub(crate) fn forward(d: AttentionDims, q: &[f32], k: &[f32], v: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let (seq, dk, row) = (d.seq, d.d_k(), d.seq * d.d);
    assert!(q.len() == d.batch * row && k.len() == q.len() && v.len() == q.len());
    let (n_context, n_probs) = (d.batch * row, d.batch * d.heads * seq * seq);
    if n_context == 0 || dk == 0 {
        return (vec![0.0; n_context], vec![0.0; n_probs]);
    }
    // Unzeroed: the GEMMs write every element (each head its columns of every step).
    let mut context = Vec::with_capacity(n_context);
    let mut probs = Vec::with_capacity(n_probs);
    let scale = d.scale();
    context.spare_capacity_mut()[..n_context]
        .par_chunks_mut(row)
        .zip(probs.spare_capacity_mut()[..n_probs].par_chunks_mut(d.heads * seq * seq))
        .enumerate()
        .for_each(|(b, (context, probs))| {
            let (q, k, v) = (
                &q[b * row..][..row],
                &k[b * row..][..row],
                &v[b * row..][..row],
            );
            for (h, p) in probs.chunks_exact_mut(seq * seq).enumerate() {
                let c = h * dk;
                matmul_uninit(
                    p,
                    seq,
                    Mat::rows(&q[c..], seq, dk, d.d),
                    Mat::transposed(&k[c..], dk, seq, d.d),
                );
                // SAFETY: the product just wrote all of `p` (`seq × seq`, rows `seq` apart).
                let p = unsafe { assume_written(p) };
                softmax_rows(p, seq, scale);
                matmul_uninit(
                    &mut context[c..],
                    d.d,
                    Mat::rows(p, seq, seq, seq),
                    Mat::rows(&v[c..], seq, dk, d.d),
                );
            }
        });
    // SAFETY: every batch row's heads wrote all of its context and weights above.
    unsafe {
        context.set_len(n_context);
        probs.set_len(n_probs);
    }
    (context, probs)
}

/// Gradients of the queries, keys and values, each `[batch, seq, d]`.
pub(crate) struct AttentionGrads {
    pub q: Vec<f32>,
    pub k: Vec<f32>,
    pub v: Vec<f32>,
}

/// Backpropagation from `d_context`, the loss's gradient with respect to the context.
pub(crate) fn backward(
    d: AttentionDims,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    probs: &[f32],
    d_context: &[f32],
) -> AttentionGrads {
    let (seq, dk, row) = (d.seq, d.d_k(), d.seq * d.d);
    let square = seq * seq;
    assert_eq!(d_context.len(), d.batch * row);
    assert_eq!(probs.len(), d.batch * d.heads * square);
    let n = d.batch * row;
    if n == 0 || dk == 0 {
        return AttentionGrads {
            q: vec![0.0; n],
            k: vec![0.0; n],
            v: vec![0.0; n],
        };
    }
    // Unzeroed: the GEMMs write every element (each head its columns of every step).
    let (mut gq, mut gk, mut gv) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let scale = d.scale();
    gq.spare_capacity_mut()[..n]
        .par_chunks_mut(row)
        .zip(gk.spare_capacity_mut()[..n].par_chunks_mut(row))
        .zip(gv.spare_capacity_mut()[..n].par_chunks_mut(row))
        .enumerate()
        .for_each(|(b, ((dq, dkey), dv))| {
            let at = b * row;
            let (q, k, v, dc) = (
                &q[at..][..row],
                &k[at..][..row],
                &v[at..][..row],
                &d_context[at..][..row],
            );
            let mut ds = vec![0.0f32; square];
            for h in 0..d.heads {
                let c = h * dk;
                let p = &probs[(b * d.heads + h) * square..][..square];
                // dP = dO Vᵀ, then dS in place.
                matmul(
                    Out::new(&mut ds, seq, seq, seq, false),
                    Mat::rows(&dc[c..], seq, dk, d.d),
                    Mat::transposed(&v[c..], dk, seq, d.d),
                );
                matmul_uninit(
                    &mut dv[c..],
                    d.d,
                    Mat::transposed(p, seq, seq, seq),
                    Mat::rows(&dc[c..], seq, dk, d.d),
                );
                softmax_backward_rows(&mut ds, p, seq, scale);
                matmul_uninit(
                    &mut dq[c..],
                    d.d,
                    Mat::rows(&ds, seq, seq, seq),
                    Mat::rows(&k[c..], seq, dk, d.d),
                );
                matmul_uninit(
                    &mut dkey[c..],
                    d.d,
                    Mat::transposed(&ds, seq, seq, seq),
                    Mat::rows(&q[c..], seq, dk, d.d),
                );
            }
        });
    // SAFETY: every batch row's heads wrote all of its three gradients above.
    unsafe {
        gq.set_len(n);
        gk.set_len(n);
        gv.set_len(n);
    }
    AttentionGrads {
        q: gq,
        k: gk,
        v: gv,
    }
}

/// Rows of [`softmax_rows`] whose sums advance side by side.
///
/// Why: a row's sum in order is a chain of dependent additions (60 for seq 60, each waiting
/// on the last); eight rows' chains interleaved keep the adder busy. Each row is still
/// summed in its own order, so the bits do not change.
const ROWS_TOGETHER: usize = 8;

/// Lanes of the running maximum in [`softmax_rows`]: one AVX-512 vector.
const MAX_LANES: usize = 16;

widest_simd!(softmax_rows(scores: &mut [f32], seq: usize, scale: f32) {
    // Each row: x / √d_k, minus its maximum, exp, over the sum (summed in order). The
    // maximum is taken lane by lane then across the lanes: the same value in any order
    // (`max` skips NaN; where ±0 tie, `x − max` differs only for x = −0, and exp(±0) = 1).
    for group in scores.chunks_mut(ROWS_TOGETHER * seq) {
        for row in group.chunks_exact_mut(seq) {
            let mut lanes = [f32::NEG_INFINITY; MAX_LANES];
            let mut chunks = row.chunks_exact_mut(MAX_LANES);
            for chunk in &mut chunks {
                for (m, x) in lanes.iter_mut().zip(chunk.iter_mut()) {
                    *x /= scale;
                    *m = m.max(*x);
                }
            }
            for (m, x) in lanes.iter_mut().zip(chunks.into_remainder()) {
                *x /= scale;
                *m = m.max(*x);
            }
            let max = lanes.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            for x in row.iter_mut() {
                *x = exp_f32(*x - max);
            }
        }
        let mut sums = [0.0f32; ROWS_TOGETHER];
        if group.len() == ROWS_TOGETHER * seq {
            for j in 0..seq {
                for (r, s) in sums.iter_mut().enumerate() {
                    *s += group[r * seq + j];
                }
            }
        } else {
            for (row, s) in group.chunks_exact(seq).zip(sums.iter_mut()) {
                for x in row {
                    *s += *x;
                }
            }
        }
        for (row, sum) in group.chunks_exact_mut(seq).zip(sums) {
            for x in row.iter_mut() {
                *x /= sum;
            }
        }
    }
});

widest_simd!(softmax_backward_rows(d: &mut [f32], probs: &[f32], seq: usize, scale: f32) {
    // dS = P ⊙ (dP − Σ dP ⊙ P) / √d_k, row by row (the sum in order).
    for (d, p) in d.chunks_exact_mut(seq).zip(probs.chunks_exact(seq)) {
        let mut dot = 0.0f32;
        for (d, p) in d.iter().zip(p) {
            dot += d * p;
        }
        for (d, p) in d.iter_mut().zip(p) {
            *d = p * (*d - dot) / scale;
        }
    }
});

#[cfg(test)]
mod tests {
    use burn::tensor::activation::softmax;
    use burn::tensor::{Device, TensorData};

    use super::super::fused::tests::{assert_close, pseudo_random, values};
    use super::*;

    /// The attention core as `encoder::composed_attention` computes it from burn ops.
    fn composed(q: Tensor<3>, k: Tensor<3>, v: Tensor<3>, heads: usize) -> Tensor<3> {
        let [batch, seq, d] = q.dims();
        let dk = d / heads;
        let split = |t: Tensor<3>| t.reshape([batch, seq, heads, dk]).swap_dims(1, 2);
        let scores = split(q)
            .matmul(split(k).transpose())
            .div_scalar((dk as f32).sqrt());
        softmax(scores, 3)
            .matmul(split(v))
            .swap_dims(1, 2)
            .reshape([batch, seq, d])
    }

    /// Outputs and the gradients of the queries, keys and values match the composed
    /// attention's, to float tolerance, for one and several heads (odd sizes included).
    #[test]
    fn fused_attention_matches_the_composed_outputs_and_gradients() {
        let device = Device::flex().autodiff();
        for (batch, seq, d, heads) in [(3, 7, 12, 3), (2, 5, 8, 1), (4, 13, 16, 4)] {
            let n = batch * seq * d;
            let tensor = |seed: u64, scale: f32| -> Tensor<3> {
                let data = TensorData::new(pseudo_random(n, seed, scale), [batch, seq, d]);
                Tensor::from_data(data, &device).require_grad()
            };
            let (q, k, v) = (tensor(1, 1.5), tensor(2, 1.5), tensor(3, 1.0));
            let weights = Tensor::from_data(
                TensorData::new(pseudo_random(n, 4, 1.0), [batch, seq, d]),
                &device,
            );
            assert!(supports(&q));
            let fused = multi_head_attention(q.clone(), k.clone(), v.clone(), heads);
            let reference = composed(q.clone(), k.clone(), v.clone(), heads);
            let what = format!("{batch}x{seq}x{d}, {heads} heads");
            assert_close(
                &values(fused.clone()),
                &values(reference.clone()),
                &format!("{what}: output"),
            );
            let g_fused = (fused * weights.clone()).sum().backward();
            let g_reference = (reference * weights).sum().backward();
            for (name, t) in [("q", &q), ("k", &k), ("v", &v)] {
                assert_close(
                    &values(t.grad(&g_fused).unwrap()),
                    &values(t.grad(&g_reference).unwrap()),
                    &format!("{what}: d{name}"),
                );
            }
        }
    }

    /// Without autodiff the operation gives the same bits as with it.
    #[test]
    fn fused_attention_without_autodiff_gives_the_same_outputs() {
        let (batch, seq, d) = (2, 6, 8);
        let data =
            |seed| TensorData::new(pseudo_random(batch * seq * d, seed, 1.0), [batch, seq, d]);
        let run = |device: &Device| {
            let t = |seed| Tensor::<3>::from_data(data(seed), device);
            values(multi_head_attention(t(1), t(2), t(3), 2))
        };
        let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
        assert_eq!(
            bits(run(&Device::flex())),
            bits(run(&Device::flex().autodiff()))
        );
    }

    /// The kernels give the same bits on a pool of one, two and three threads.
    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let d = AttentionDims {
            batch: 24,
            seq: 11,
            d: 24,
            heads: 3,
        };
        let n = d.batch * d.seq * d.d;
        let (q, k, v) = (
            pseudo_random(n, 1, 1.0),
            pseudo_random(n, 2, 1.0),
            pseudo_random(n, 3, 1.0),
        );
        let d_context = pseudo_random(n, 4, 1.0);
        let run = |threads: usize| {
            crate::model::tests::on_threads(threads, || {
                let (context, probs) = forward(d, &q, &k, &v);
                let g = backward(d, &q, &k, &v, &probs, &d_context);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                (
                    bits(&context),
                    bits(&probs),
                    bits(&g.q),
                    bits(&g.k),
                    bits(&g.v),
                )
            })
        };
        let one = run(1);
        assert_eq!(one, run(2));
        assert_eq!(one, run(3));
    }
}
