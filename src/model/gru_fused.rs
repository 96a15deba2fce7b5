//! The fused GRU layer: a burn backend extension (`GruOps`) with its own backward pass, for f32
//! on flex, as `lstm_fused.rs` is for the LSTM. Other devices and dtypes take the composed layer
//! in `gru.rs`.
//!
//! Why: composed of burn ops a GRU step is about a dozen autodiff nodes, each allocating its
//! output, plus the per-step slices and concatenations; at the sweep benchmark's shapes that ran
//! at a quarter of the fused LSTM's samples/s (BENCHMARKS.md). Here a whole layer over the whole
//! window is one node:
//!
//! - forward: one GEMM projects the inputs of every step (`x · W_in + b_in`); then per step one
//!   GEMM `h_{t-1} · W_h` and one pass that computes the gates and the new hidden state;
//! - backward through time: per step one pass for the gate gradients and one GEMM
//!   (`dhh_{t+1} · W_hᵀ`) for the recurrent part of `dh`; then the weight and input gradients
//!   as three large GEMMs over all steps at once.
//!
//! The steps run in lane groups of batch rows, each group through every step on one thread
//! (`fused::lane_rows`).
//!
//! Equations as PyTorch's `nn.GRU` (`gru.rs`), gates ordered reset, update, candidate. Results
//! do not depend on the thread count (see `fused.rs`). `gru.rs`'s tests compare outputs and
//! gradients with the plain cell built from burn ops.

use std::sync::Arc;

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, backend_extension};
use burn::tensor::Tensor;
use burn_flex::ops::activation::sigmoid_f32;
use rayon::prelude::*;

use super::fused::{
    LayerDims, Mat, Out, RecurrentWeightKept, Scratch, column_sums, dense, elementwise_min_rows,
    f32s, from_f32s, lane_rows, matmul, matmul_here, prefetch, previous_hidden_scratch, scratch,
    tanh_f32, transpose, widest_simd,
};

#[backend_extension(Flex, Autodiff)]
pub trait GruOps: Backend {
    /// One GRU layer over a whole window, from a zero state: `x` `[batch, seq, input]`, `w_in`
    /// `[input, 3 * hidden]`, `b_in` `[3 * hidden]`, `w_h` `[hidden, 3 * hidden]`, `b_h`
    /// `[3 * hidden]`. Returns every step's hidden state `[batch, seq, hidden]`.
    fn gru_sequence(
        x: FloatTensor<Self>,
        w_in: FloatTensor<Self>,
        b_in: FloatTensor<Self>,
        w_h: FloatTensor<Self>,
        b_h: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

/// The layer through the fused operation; see [`GruOps::gru_sequence`]. Call only where
/// [`super::fused::supports`] holds.
pub fn gru_sequence(
    x: Tensor<3>,
    w_in: Tensor<2>,
    b_in: Tensor<1>,
    w_h: Tensor<2>,
    b_h: Tensor<1>,
) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as GruOps>::gru_sequence(
        x.into_dispatch(),
        w_in.into_dispatch(),
        b_in.into_dispatch(),
        w_h.into_dispatch(),
        b_h.into_dispatch(),
    ))
}

impl GruOps for Flex {
    fn gru_sequence(
        x: FloatTensor<Flex>,
        w_in: FloatTensor<Flex>,
        b_in: FloatTensor<Flex>,
        w_h: FloatTensor<Flex>,
        b_h: FloatTensor<Flex>,
    ) -> FloatTensor<Flex> {
        let (x, w_in, b_in, w_h, b_h) =
            (dense(x), dense(w_in), dense(b_in), dense(w_h), dense(b_h));
        let dims = LayerDims::of(&x, &w_h, 3, "gru_sequence");
        let trace = forward(
            dims,
            f32s(&x),
            f32s(&w_in),
            f32s(&b_in),
            f32s(&w_h),
            f32s(&b_h),
        );
        from_f32s(trace.hidden, [dims.batch, dims.seq, dims.hidden])
    }
}

impl<C: CheckpointStrategy> GruOps for Autodiff<Flex, C> {
    fn gru_sequence(
        x: FloatTensor<Self>,
        w_in: FloatTensor<Self>,
        b_in: FloatTensor<Self>,
        w_h: FloatTensor<Self>,
        b_h: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let nodes = [x.node(), w_in.node(), b_in.node(), w_h.node(), b_h.node()];
        let (x, w_in, b_in, w_h, b_h) = (
            dense(x.into_primitive()),
            dense(w_in.into_primitive()),
            dense(b_in.into_primitive()),
            dense(w_h.into_primitive()),
            dense(b_h.into_primitive()),
        );
        let dims = LayerDims::of(&x, &w_h, 3, "gru_sequence");
        let trace = forward(
            dims,
            f32s(&x),
            f32s(&w_in),
            f32s(&b_in),
            f32s(&w_h),
            f32s(&b_h),
        );
        let hidden = from_f32s(trace.hidden, [dims.batch, dims.seq, dims.hidden]);
        match GruBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let state = GruState {
                    dims,
                    x,
                    w_in,
                    w_h,
                    hidden: hidden.clone(),
                    gates: Arc::new(trace.gates),
                    hh_n: Arc::new(trace.hh_n),
                };
                prep.finish(state, hidden)
            }
            OpsKind::UnTracked(prep) => prep.finish(hidden),
        }
    }
}

#[derive(Debug)]
struct GruBackward;

/// What the backward pass reads: the inputs and the forward pass's activations.
#[derive(Clone)]
struct GruState {
    dims: LayerDims,
    x: FloatTensor<Flex>,
    w_in: FloatTensor<Flex>,
    w_h: FloatTensor<Flex>,
    hidden: FloatTensor<Flex>,
    gates: Arc<Scratch>,
    hh_n: Arc<Scratch>,
}

impl std::fmt::Debug for GruState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GruState")
            .field("dims", &self.dims)
            .finish_non_exhaustive()
    }
}

impl Backward<Flex, 5> for GruBackward {
    type State = GruState;

    fn backward(
        self,
        ops: Ops<Self::State, 5>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_w_in, node_b_in, node_w_h, node_b_h] = ops.parents;
        let d_hidden = dense(grads.consume::<Flex>(&ops.node));
        let s = ops.state;
        let d = s.dims;
        let trace = TraceView {
            gates: &s.gates,
            hh_n: &s.hh_n,
            hidden: f32s(&s.hidden),
        };
        let g = backward(
            d,
            f32s(&s.x),
            f32s(&s.w_in),
            f32s(&s.w_h),
            trace,
            f32s(&d_hidden),
            node_x.is_some(),
        );
        let gates = 3 * d.hidden;
        if let (Some(node), Some(dx)) = (node_x, g.x) {
            grads.register::<Flex>(node.id, from_f32s(dx, [d.batch, d.seq, d.input]));
        }
        if let Some(node) = node_w_in {
            grads.register::<Flex>(node.id, from_f32s(g.w_in, [d.input, gates]));
        }
        if let Some(node) = node_b_in {
            grads.register::<Flex>(node.id, from_f32s(g.b_in, [gates]));
        }
        if let Some(node) = node_w_h {
            grads.register::<Flex>(node.id, from_f32s(g.w_h, [d.hidden, gates]));
        }
        if let Some(node) = node_b_h {
            grads.register::<Flex>(node.id, from_f32s(g.b_h, [gates]));
        }
    }
}

/// The forward pass's activations, all row-major with rows `(batch, step)`. The buffers the
/// backward pass alone reads are [`scratch`] buffers, every element written (not zeroed first).
pub(crate) struct Trace {
    /// `[batch, seq, 3 * hidden]`: r, z and n.
    pub gates: Scratch,
    /// `[batch, seq, hidden]`: `h_{t-1} · W_hn + b_hn`, which the reset gate scales.
    pub hh_n: Scratch,
    /// `[batch, seq, hidden]`: the hidden state.
    pub hidden: Vec<f32>,
}

/// A [`Trace`] borrowed, wherever its parts are kept.
#[derive(Clone, Copy)]
pub(crate) struct TraceView<'a> {
    pub gates: &'a [f32],
    pub hh_n: &'a [f32],
    pub hidden: &'a [f32],
}

#[cfg(test)]
impl Trace {
    pub fn view(&self) -> TraceView<'_> {
        TraceView {
            gates: &self.gates,
            hh_n: &self.hh_n,
            hidden: &self.hidden,
        }
    }
}

pub(crate) fn forward(
    d: LayerDims,
    x: &[f32],
    w_in: &[f32],
    b_in: &[f32],
    w_h: &[f32],
    b_h: &[f32],
) -> Trace {
    let (h, g) = (d.hidden, 3 * d.hidden);
    let rows = d.batch * d.seq;
    assert_eq!(x.len(), rows * d.input);
    assert_eq!(
        (w_in.len(), b_in.len(), w_h.len(), b_h.len()),
        (d.input * g, g, h * g, g)
    );
    // Input projections of every step (`b_in + x_t · W_in`), replaced by the gates in place.
    // The bias is copied into every row, on the pool.
    let mut gates = scratch(rows * g);
    gates
        .par_chunks_mut(g.max(1))
        .with_min_len(elementwise_min_rows(g))
        .for_each(|row| row.copy_from_slice(b_in));
    let mut trace = Trace {
        gates: scratch(0),
        hh_n: scratch(rows * h),
        hidden: vec![0.0; rows * h],
    };
    if rows == 0 || h == 0 {
        trace.gates = gates;
        return trace;
    }
    // Transposed, gatesᵀ += W_inᵀ · xᵀ: gemm reads x's rows in place instead of packing
    // all of them (the same products summed in the same order).
    matmul(
        Out::transposed(&mut gates, g, rows, g, true),
        Mat::transposed(w_in, g, d.input, g),
        Mat::transposed(x, d.input, rows, d.input),
    );
    let (block, state_block) = (d.seq * g, d.seq * h);
    let zero_state = vec![0.0f32; h];
    // Each lane group of batch rows through every step on one thread (see `lane_rows`).
    let lanes = lane_rows(d.batch);
    gates
        .par_chunks_mut(lanes * block)
        .zip(trace.hh_n.par_chunks_mut(lanes * state_block))
        .zip(trace.hidden.par_chunks_mut(lanes * state_block))
        .for_each(|((gates, hh_n), hidden)| {
            let group = hh_n.len() / state_block;
            // `h_{t-1} · W_h` of the current step, zero at the first (a zero state).
            let mut projected = vec![0.0f32; group * g];
            // SAFETY: this group's only products are the steps' by `w_h`, borrowed unchanged
            // for the whole call.
            let _kept = unsafe { RecurrentWeightKept::new() };
            for step in 0..d.seq {
                if step > 0 {
                    // Transposed, projectedᵀ = W_hᵀ · h_{t-1}ᵀ: see `Out::transposed`.
                    matmul_here(
                        Out::transposed(&mut projected, g, group, g, false),
                        Mat::transposed(w_h, g, h, g),
                        Mat::transposed(&hidden[(step - 1) * h..], h, group, state_block),
                    );
                }
                for b in 0..group {
                    let (row, state) = (b * block + step * g, b * state_block + step * h);
                    let (done, now) = hidden.split_at_mut(state);
                    let previous = match step {
                        0 => &zero_state[..],
                        _ => &done[state - h..],
                    };
                    cell_forward(
                        &mut gates[row..][..g],
                        &projected[b * g..][..g],
                        b_h,
                        previous,
                        &mut hh_n[state..][..h],
                        &mut now[..h],
                    );
                }
            }
        });
    trace.gates = gates;
    trace
}

/// Gradients of one layer; `x` only when asked for.
pub(crate) struct LayerGrads {
    pub x: Option<Vec<f32>>,
    pub w_in: Vec<f32>,
    pub b_in: Vec<f32>,
    pub w_h: Vec<f32>,
    pub b_h: Vec<f32>,
}

/// Backpropagation through time from `d_hidden`, the loss's gradient with respect to every
/// step's hidden state `[batch, seq, hidden]`.
pub(crate) fn backward(
    d: LayerDims,
    x: &[f32],
    w_in: &[f32],
    w_h: &[f32],
    trace: TraceView<'_>,
    d_hidden: &[f32],
    want_x: bool,
) -> LayerGrads {
    let (h, g) = (d.hidden, 3 * d.hidden);
    let rows = d.batch * d.seq;
    assert_eq!(d_hidden.len(), rows * h);
    let block = d.seq * g;
    // Gradients of the input side's pre-activations and of `h_{t-1} · W_h + b_h`, rows
    // (batch, step); they differ only in the candidate's third (r scales the hidden side).
    // Every element written by the gate passes.
    let mut d_input_side = scratch(rows * g);
    let mut d_hidden_side = scratch(rows * g);
    if rows > 0 && h > 0 {
        let zero_state = vec![0.0f32; h];
        // W_hᵀ `[gates, hidden]`, for the recurrent part of dh at every step.
        let w_h_t = transpose(w_h, h, g);
        // Each lane group of batch rows back through every step on one thread (see
        // `lane_rows`).
        let lanes = lane_rows(d.batch);
        d_input_side
            .par_chunks_mut(lanes * block)
            .zip(d_hidden_side.par_chunks_mut(lanes * block))
            .enumerate()
            .for_each(|(chunk, (d_input_side, d_hidden_side))| {
                let group = d_input_side.len() / block;
                // The part of dh_t through W_h: dhh_{t+1} · W_hᵀ (zero at the last step).
                let mut d_h_recurrent = vec![0.0f32; group * h];
                // dh_{t+1} · z_{t+1}, the part of dh_t through the update gate's blend.
                let mut d_h_carry = vec![0.0f32; group * h];
                // SAFETY: this group's only products are the steps' by `w_h_t`, unchanged
                // until it is dropped at the end of the call.
                let _kept = unsafe { RecurrentWeightKept::new() };
                for step in (0..d.seq).rev() {
                    if step + 1 < d.seq {
                        // Transposed, dhᵀ = W_h · dhh_{t+1}ᵀ (W_h read column-major from its
                        // transpose): see `Out::transposed`.
                        matmul_here(
                            Out::transposed(&mut d_h_recurrent, h, group, h, false),
                            Mat::transposed(&w_h_t, h, g, h),
                            Mat::transposed(&d_hidden_side[(step + 1) * g..], g, group, block),
                        );
                    }
                    for b in 0..group {
                        let row = (chunk * lanes + b) * d.seq + step;
                        if b + 1 < group {
                            let next = row + d.seq;
                            prefetch(&trace.gates[next * g..][..g]);
                            prefetch(&trace.hh_n[next * h..][..h]);
                            if step > 0 {
                                prefetch(&trace.hidden[(next - 1) * h..][..h]);
                            }
                        }
                        let previous = match step {
                            0 => &zero_state[..],
                            _ => &trace.hidden[(row - 1) * h..][..h],
                        };
                        let at = b * block + step * g;
                        cell_backward(
                            &mut d_input_side[at..][..g],
                            &mut d_hidden_side[at..][..g],
                            &trace.gates[row * g..][..g],
                            &trace.hh_n[row * h..][..h],
                            previous,
                            &d_hidden[row * h..][..h],
                            &d_h_recurrent[b * h..][..h],
                            &mut d_h_carry[b * h..][..h],
                        );
                    }
                }
            });
    }
    // h_{t-1} for every row (zero at the first step), for dW_h.
    let previous_hidden = previous_hidden_scratch(d, trace.hidden);
    let mut grads = LayerGrads {
        x: None,
        w_in: vec![0.0; d.input * g],
        b_in: vec![0.0; g],
        w_h: vec![0.0; h * g],
        b_h: vec![0.0; g],
    };
    if rows == 0 || h == 0 {
        grads.x = want_x.then(|| vec![0.0; x.len()]);
        return grads;
    }
    matmul(
        Out::new(&mut grads.w_in, d.input, g, g, false),
        Mat::transposed(x, d.input, rows, d.input),
        Mat::rows(&d_input_side, rows, g, g),
    );
    matmul(
        Out::new(&mut grads.w_h, h, g, g, false),
        Mat::transposed(&previous_hidden, h, rows, h),
        Mat::rows(&d_hidden_side, rows, g, g),
    );
    // Each bias gradient sums its column over the rows in order.
    column_sums(&mut grads.b_in, &d_input_side, g);
    column_sums(&mut grads.b_h, &d_hidden_side, g);
    if want_x {
        let mut dx = vec![0.0f32; x.len()];
        // Transposed, dxᵀ = W_in · dgatesᵀ: gemm reads the gradient's rows in place instead
        // of packing all of them (the same products summed in the same order).
        matmul(
            Out::transposed(&mut dx, d.input, rows, d.input, false),
            Mat::rows(w_in, d.input, g, g),
            Mat::transposed(&d_input_side, g, rows, g),
        );
        grads.x = Some(dx);
    }
    grads
}

widest_simd!(cell_forward(
    gates: &mut [f32],
    projected: &[f32],
    b_h: &[f32],
    previous: &[f32],
    hh_n: &mut [f32],
    hidden: &mut [f32]
) {
    let h = hidden.len();
    let (r, rest) = gates.split_at_mut(h);
    let (z, n) = rest.split_at_mut(h);
    let (n, hh_n, previous) = (&mut n[..h], &mut hh_n[..h], &previous[..h]);
    let (p_r, p_z, p_n) = (&projected[..h], &projected[h..2 * h], &projected[2 * h..3 * h]);
    let (b_r, b_z, b_n) = (&b_h[..h], &b_h[h..2 * h], &b_h[2 * h..3 * h]);
    // The two gates in passes of their own, then the candidate and the blend: a row's values
    // stay in L1 between passes, and each loop keeps its constants in registers. Each
    // element gets the same operations as in one pass.
    for j in 0..h {
        r[j] = sigmoid_f32(r[j] + (p_r[j] + b_r[j]));
    }
    for j in 0..h {
        z[j] = sigmoid_f32(z[j] + (p_z[j] + b_z[j]));
    }
    for j in 0..h {
        let hn = p_n[j] + b_n[j];
        let candidate = tanh_f32(n[j] + r[j] * hn);
        // (1 - z) n + z h = n + z (h - n)
        (n[j], hh_n[j], hidden[j]) = (candidate, hn, candidate + z[j] * (previous[j] - candidate));
    }
});

widest_simd!(cell_backward(
    d_input_side: &mut [f32],
    d_hidden_side: &mut [f32],
    gates: &[f32],
    hh_n: &[f32],
    previous: &[f32],
    d_hidden: &[f32],
    d_hidden_recurrent: &[f32],
    d_hidden_carry: &mut [f32]
) {
    let h = hh_n.len();
    let (r, z, n) = (&gates[..h], &gates[h..2 * h], &gates[2 * h..3 * h]);
    let (dx_r, rest) = d_input_side.split_at_mut(h);
    let (dx_z, dx_n) = rest.split_at_mut(h);
    let (dh_r, rest) = d_hidden_side.split_at_mut(h);
    let (dh_z, dh_n) = rest.split_at_mut(h);
    let (dx_n, dh_n) = (&mut dx_n[..h], &mut dh_n[..h]);
    let (previous, d_hidden, d_hidden_recurrent, d_hidden_carry) = (
        &previous[..h],
        &d_hidden[..h],
        &d_hidden_recurrent[..h],
        &mut d_hidden_carry[..h],
    );
    for j in 0..h {
        let dh = d_hidden[j] + d_hidden_recurrent[j] + d_hidden_carry[j];
        let (r, z, n) = (r[j], z[j], n[j]);
        let d_n = dh * (1.0 - z) * (1.0 - n * n);
        let d_z = dh * (previous[j] - n) * z * (1.0 - z);
        let d_r = d_n * hh_n[j] * r * (1.0 - r);
        dx_r[j] = d_r;
        dx_z[j] = d_z;
        dx_n[j] = d_n;
        dh_r[j] = d_r;
        dh_z[j] = d_z;
        dh_n[j] = d_n * r;
        d_hidden_carry[j] = dh * z;
    }
});

#[cfg(test)]
mod tests {
    use super::super::fused::tests::pseudo_random;
    use super::*;

    /// The kernels give the same bits on a pool of one, two and three threads, with sizes
    /// large enough that the GEMMs and the elementwise passes do split.
    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let d = LayerDims {
            batch: 96,
            seq: 5,
            input: 7,
            hidden: 48,
        };
        let g = 3 * d.hidden;
        let x = pseudo_random(d.batch * d.seq * d.input, 1, 1.0);
        let w_in = pseudo_random(d.input * g, 2, 0.5);
        let b_in = pseudo_random(g, 3, 0.5);
        let w_h = pseudo_random(d.hidden * g, 4, 0.3);
        let b_h = pseudo_random(g, 6, 0.5);
        let d_hidden = pseudo_random(d.batch * d.seq * d.hidden, 5, 1.0);
        let run = |threads: usize| {
            crate::model::tests::on_threads(threads, || {
                let trace = forward(d, &x, &w_in, &b_in, &w_h, &b_h);
                let grads = backward(d, &x, &w_in, &w_h, trace.view(), &d_hidden, true);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                (
                    bits(&trace.hidden),
                    bits(grads.x.as_ref().unwrap()),
                    bits(&grads.w_in),
                    bits(&grads.b_in),
                    bits(&grads.w_h),
                    bits(&grads.b_h),
                )
            })
        };
        let one = run(1);
        assert_eq!(one, run(2));
        assert_eq!(one, run(3));
        // Uneven lane groups (see `fused::lane_rows`).
        assert_eq!(one, run(7));
    }
}
