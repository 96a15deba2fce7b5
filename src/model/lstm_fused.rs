//! The fused LSTM layer: a burn backend extension (`LstmOps`) with its own backward pass, for
//! f32 on flex. Other devices and dtypes take the composed layer in `lstm.rs`.
//!
//! Why: composed of burn ops, one layer costs about fifteen autodiff nodes per time step, each
//! allocating its output, plus the per-step slices and concatenations; on the reference LSTM
//! that overhead was as large as the matrix products (BENCHMARKS.md). Here a whole layer over
//! the whole window is one node:
//!
//! - forward: one GEMM projects the inputs of every step (`x · W_in + b`); then per step one
//!   GEMM adds `h_{t-1} · W_h` in place and one pass computes the gates, cell and hidden state;
//! - backward through time: per step one pass for the gate gradients and one GEMM
//!   (`dgates_{t+1} · W_hᵀ`) for the recurrent part of `dh`; then the weight and input
//!   gradients as three large GEMMs over all steps at once.
//!
//! The steps run in lane groups of batch rows, each group through every step on one thread
//! (`fused::lane_rows`): one hand-off per layer instead of two per step.
//!
//! Results do not depend on the thread count (see `fused.rs`). `lstm.rs`'s tests compare
//! outputs and gradients with the textbook cell built from burn ops.

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
    f32s, from_f32s, inputs_beside_previous_hidden, lane_rows, matmul, matmul_here, prefetch,
    scratch, tanh_f32, transpose, widest_simd,
};

#[backend_extension(Flex, Autodiff)]
pub trait LstmOps: Backend {
    /// One LSTM layer over a whole window, from a zero state: `x` `[batch, seq, input]`,
    /// `w_in` `[input, 4 * hidden]`, `bias` `[4 * hidden]`, `w_h` `[hidden, 4 * hidden]` (gates
    /// ordered input, forget, cell, output). Returns every step's hidden state
    /// `[batch, seq, hidden]`.
    fn lstm_sequence(
        x: FloatTensor<Self>,
        w_in: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        w_h: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

/// The layer through the fused operation; see [`LstmOps::lstm_sequence`]. Call only where
/// [`super::fused::supports`] holds.
pub fn lstm_sequence(x: Tensor<3>, w_in: Tensor<2>, bias: Tensor<1>, w_h: Tensor<2>) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as LstmOps>::lstm_sequence(
        x.into_dispatch(),
        w_in.into_dispatch(),
        bias.into_dispatch(),
        w_h.into_dispatch(),
    ))
}

impl LstmOps for Flex {
    fn lstm_sequence(
        x: FloatTensor<Flex>,
        w_in: FloatTensor<Flex>,
        bias: FloatTensor<Flex>,
        w_h: FloatTensor<Flex>,
    ) -> FloatTensor<Flex> {
        let (x, w_in, bias, w_h) = (dense(x), dense(w_in), dense(bias), dense(w_h));
        let dims = LayerDims::of(&x, &w_h, 4, "lstm_sequence");
        let trace = forward(dims, f32s(&x), f32s(&w_in), f32s(&bias), f32s(&w_h));
        from_f32s(trace.hidden, [dims.batch, dims.seq, dims.hidden])
    }
}

impl<C: CheckpointStrategy> LstmOps for Autodiff<Flex, C> {
    fn lstm_sequence(
        x: FloatTensor<Self>,
        w_in: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        w_h: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let nodes = [x.node(), w_in.node(), bias.node(), w_h.node()];
        let (x, w_in, bias, w_h) = (
            dense(x.into_primitive()),
            dense(w_in.into_primitive()),
            dense(bias.into_primitive()),
            dense(w_h.into_primitive()),
        );
        let dims = LayerDims::of(&x, &w_h, 4, "lstm_sequence");
        let trace = forward(dims, f32s(&x), f32s(&w_in), f32s(&bias), f32s(&w_h));
        let hidden = from_f32s(trace.hidden, [dims.batch, dims.seq, dims.hidden]);
        match LstmBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let state = LstmState {
                    dims,
                    x,
                    w_in,
                    w_h,
                    hidden: hidden.clone(),
                    gates: Arc::new(trace.gates),
                    cells: Arc::new(trace.cells),
                    tanh_cells: Arc::new(trace.tanh_cells),
                };
                prep.finish(state, hidden)
            }
            OpsKind::UnTracked(prep) => prep.finish(hidden),
        }
    }
}

#[derive(Debug)]
struct LstmBackward;

/// What the backward pass reads: the inputs and the forward pass's activations.
#[derive(Clone)]
struct LstmState {
    dims: LayerDims,
    x: FloatTensor<Flex>,
    w_in: FloatTensor<Flex>,
    w_h: FloatTensor<Flex>,
    hidden: FloatTensor<Flex>,
    gates: Arc<Scratch>,
    cells: Arc<Scratch>,
    tanh_cells: Arc<Scratch>,
}

impl std::fmt::Debug for LstmState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LstmState")
            .field("dims", &self.dims)
            .finish_non_exhaustive()
    }
}

impl Backward<Flex, 4> for LstmBackward {
    type State = LstmState;

    fn backward(
        self,
        ops: Ops<Self::State, 4>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_w_in, node_bias, node_w_h] = ops.parents;
        let d_hidden = dense(grads.consume::<Flex>(&ops.node));
        let s = ops.state;
        let d = s.dims;
        let trace = TraceView {
            gates: &s.gates,
            cells: &s.cells,
            tanh_cells: &s.tanh_cells,
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
        let gates = 4 * d.hidden;
        if let (Some(node), Some(dx)) = (node_x, g.x) {
            grads.register::<Flex>(node.id, from_f32s(dx, [d.batch, d.seq, d.input]));
        }
        if let Some(node) = node_w_in {
            grads.register::<Flex>(node.id, from_f32s(g.w_in, [d.input, gates]));
        }
        if let Some(node) = node_bias {
            grads.register::<Flex>(node.id, from_f32s(g.bias, [gates]));
        }
        if let Some(node) = node_w_h {
            grads.register::<Flex>(node.id, from_f32s(g.w_h, [d.hidden, gates]));
        }
    }
}

/// The forward pass's activations, all row-major with rows `(batch, step)`. The buffers the
/// backward pass alone reads are [`scratch`] buffers, every element written (not zeroed first).
pub(crate) struct Trace {
    /// `[batch, seq, 4 * hidden]`: σ(i), σ(f), tanh(g), σ(o).
    pub gates: Scratch,
    /// `[batch, seq, hidden]`: the cell state c.
    pub cells: Scratch,
    /// `[batch, seq, hidden]`: tanh(c).
    pub tanh_cells: Scratch,
    /// `[batch, seq, hidden]`: the hidden state h = σ(o) tanh(c).
    pub hidden: Vec<f32>,
}

/// A [`Trace`] borrowed, wherever its parts are kept.
#[derive(Clone, Copy)]
pub(crate) struct TraceView<'a> {
    pub gates: &'a [f32],
    pub cells: &'a [f32],
    pub tanh_cells: &'a [f32],
    pub hidden: &'a [f32],
}

#[cfg(test)]
impl Trace {
    pub fn view(&self) -> TraceView<'_> {
        TraceView {
            gates: &self.gates,
            cells: &self.cells,
            tanh_cells: &self.tanh_cells,
            hidden: &self.hidden,
        }
    }
}

pub(crate) fn forward(d: LayerDims, x: &[f32], w_in: &[f32], bias: &[f32], w_h: &[f32]) -> Trace {
    let (h, g) = (d.hidden, 4 * d.hidden);
    let rows = d.batch * d.seq;
    assert_eq!(x.len(), rows * d.input);
    assert_eq!((w_in.len(), bias.len(), w_h.len()), (d.input * g, g, h * g));
    // Pre-activations of every step: b + x_t · W_in, then + h_{t-1} · W_h step by step, then
    // replaced by the activations in place. The bias is copied into every row, on the pool.
    let mut gates = scratch(rows * g);
    gates
        .par_chunks_mut(g.max(1))
        .with_min_len(elementwise_min_rows(g))
        .for_each(|row| row.copy_from_slice(bias));
    let mut trace = Trace {
        gates: scratch(0),
        cells: scratch(rows * h),
        tanh_cells: scratch(rows * h),
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
    // Each lane group of batch rows through every step on one thread (see `lane_rows`).
    let lanes = lane_rows(d.batch);
    gates
        .par_chunks_mut(lanes * block)
        .zip(trace.cells.par_chunks_mut(lanes * state_block))
        .zip(trace.tanh_cells.par_chunks_mut(lanes * state_block))
        .zip(trace.hidden.par_chunks_mut(lanes * state_block))
        .for_each(|(((gates, cells), tanh_cells), hidden)| {
            let group = cells.len() / state_block;
            // SAFETY: this group's only products are the steps' by `w_h`, borrowed unchanged
            // for the whole call.
            let _kept = unsafe { RecurrentWeightKept::new() };
            for step in 0..d.seq {
                if step > 0 {
                    // Transposed, gatesᵀ += W_hᵀ · h_{t-1}ᵀ: see `Out::transposed`.
                    matmul_here(
                        Out::transposed(&mut gates[step * g..], g, group, block, true),
                        Mat::transposed(w_h, g, h, g),
                        Mat::transposed(&hidden[(step - 1) * h..], h, group, state_block),
                    );
                }
                for b in 0..group {
                    let (row, state) = (b * block + step * g, b * state_block + step * h);
                    let (done, now) = cells.split_at_mut(state);
                    let previous = step.checked_sub(1).map(|_| &done[state - h..]);
                    cell_forward(
                        &mut gates[row..][..g],
                        previous,
                        &mut now[..h],
                        &mut tanh_cells[state..][..h],
                        &mut hidden[state..][..h],
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
    pub bias: Vec<f32>,
    pub w_h: Vec<f32>,
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
    let (h, g) = (d.hidden, 4 * d.hidden);
    let rows = d.batch * d.seq;
    assert_eq!(d_hidden.len(), rows * h);
    let block = d.seq * g;
    // Gradients of the pre-activations, rows (batch, step); every element written by the
    // gate passes.
    let mut d_gates = scratch(rows * g);
    if rows > 0 && h > 0 {
        // W_hᵀ `[gates, hidden]`, for the recurrent part of dh at every step.
        let w_h_t = transpose(w_h, h, g);
        // Each lane group of batch rows back through every step on one thread (see
        // `lane_rows`).
        let lanes = lane_rows(d.batch);
        d_gates
            .par_chunks_mut(lanes * block)
            .enumerate()
            .for_each(|(chunk, d_gates)| {
                let group = d_gates.len() / block;
                // The recurrent part of dh_t: dgates_{t+1} · W_hᵀ (zero at the last step).
                let mut d_h_recurrent = vec![0.0f32; group * h];
                // dc_{t+1} · f_{t+1}, carried back a step.
                let mut d_c_carry = vec![0.0f32; group * h];
                // SAFETY: this group's only products are the steps' by `w_h_t`, unchanged
                // until it is dropped at the end of the call.
                let _kept = unsafe { RecurrentWeightKept::new() };
                for step in (0..d.seq).rev() {
                    if step + 1 < d.seq {
                        // Transposed, dhᵀ = W_h · dgates_{t+1}ᵀ (W_h read column-major from
                        // its transpose): see `Out::transposed`.
                        matmul_here(
                            Out::transposed(&mut d_h_recurrent, h, group, h, false),
                            Mat::transposed(&w_h_t, h, g, h),
                            Mat::transposed(&d_gates[(step + 1) * g..], g, group, block),
                        );
                    }
                    for b in 0..group {
                        let row = (chunk * lanes + b) * d.seq + step;
                        if b + 1 < group {
                            let next = row + d.seq;
                            prefetch(&trace.gates[next * g..][..g]);
                            prefetch(&trace.tanh_cells[next * h..][..h]);
                            if step > 0 {
                                prefetch(&trace.cells[(next - 1) * h..][..h]);
                            }
                        }
                        let previous = step
                            .checked_sub(1)
                            .map(|_| &trace.cells[(row - 1) * h..][..h]);
                        cell_backward(
                            &mut d_gates[b * block + step * g..][..g],
                            &trace.gates[row * g..][..g],
                            previous,
                            &trace.tanh_cells[row * h..][..h],
                            &d_hidden[row * h..][..h],
                            &d_h_recurrent[b * h..][..h],
                            &mut d_c_carry[b * h..][..h],
                        );
                    }
                }
            });
    }
    if rows == 0 || h == 0 {
        return LayerGrads {
            x: want_x.then(|| vec![0.0; x.len()]),
            w_in: vec![0.0; d.input * g],
            bias: vec![0.0; g],
            w_h: vec![0.0; h * g],
        };
    }
    // [dW_in; dW_h] = [x_t, h_{t-1}]ᵀ · dgates, one product (see
    // `inputs_beside_previous_hidden`).
    let width = d.input + h;
    let beside = inputs_beside_previous_hidden(d, x, trace.hidden);
    let mut w_both = vec![0.0; width * g];
    matmul(
        Out::new(&mut w_both, width, g, g, false),
        Mat::transposed(&beside, width, rows, width),
        Mat::rows(&d_gates, rows, g, g),
    );
    drop(beside);
    let w_h = w_both.split_off(d.input * g);
    let mut grads = LayerGrads {
        x: None,
        w_in: w_both,
        bias: vec![0.0; g],
        w_h,
    };
    // The bias gradient sums each column over the rows in order.
    column_sums(&mut grads.bias, &d_gates, g);
    if want_x {
        let mut dx = vec![0.0f32; x.len()];
        // Transposed, dxᵀ = W_in · dgatesᵀ: gemm reads dgates' rows in place instead of
        // packing all of them (the same products summed in the same order).
        matmul(
            Out::transposed(&mut dx, d.input, rows, d.input, false),
            Mat::rows(w_in, d.input, g, g),
            Mat::transposed(&d_gates, g, rows, g),
        );
        grads.x = Some(dx);
    }
    grads
}

widest_simd!(cell_forward(
    gates: &mut [f32],
    previous_cell: Option<&[f32]>,
    cell: &mut [f32],
    tanh_cell: &mut [f32],
    hidden: &mut [f32]
) {
    let h = cell.len();
    let (input_forget, rest) = gates.split_at_mut(2 * h);
    let (g, o) = rest.split_at_mut(h);
    let (o, tanh_cell, hidden) = (&mut o[..h], &mut tanh_cell[..h], &mut hidden[..h]);
    // The activations in passes of one function each, then the cell: a row's values stay in
    // L1 between passes, and each loop keeps its constants in registers (one pass doing all
    // five functions spilled them). Each element gets the same operations either way.
    for x in input_forget.iter_mut() {
        *x = sigmoid_f32(*x);
    }
    for x in g.iter_mut() {
        *x = tanh_f32(*x);
    }
    for x in o.iter_mut() {
        *x = sigmoid_f32(*x);
    }
    let (i, f) = input_forget.split_at(h);
    let (i, f, g) = (&i[..h], &f[..h], &g[..h]);
    match previous_cell {
        // The first step starts from a zero cell (`f * 0.0` kept: it is what gave the bits).
        None => {
            for j in 0..h {
                let c = f[j] * 0.0 + i[j] * g[j];
                cell[j] = c;
                tanh_cell[j] = tanh_f32(c);
            }
        }
        Some(previous) => {
            let previous = &previous[..h];
            for j in 0..h {
                let c = f[j] * previous[j] + i[j] * g[j];
                cell[j] = c;
                tanh_cell[j] = tanh_f32(c);
            }
        }
    }
    for j in 0..h {
        hidden[j] = o[j] * tanh_cell[j];
    }
});

widest_simd!(cell_backward(
    d_gates: &mut [f32],
    gates: &[f32],
    previous_cell: Option<&[f32]>,
    tanh_cell: &[f32],
    d_hidden: &[f32],
    d_hidden_recurrent: &[f32],
    d_cell_carry: &mut [f32]
) {
    let h = tanh_cell.len();
    let (i, f, g, o) = (&gates[..h], &gates[h..2 * h], &gates[2 * h..3 * h], &gates[3 * h..4 * h]);
    let (di, rest) = d_gates.split_at_mut(h);
    let (df, rest) = rest.split_at_mut(h);
    let (dg, d_o) = rest.split_at_mut(h);
    let (d_o, d_hidden, d_hidden_recurrent, d_cell_carry) = (
        &mut d_o[..h],
        &d_hidden[..h],
        &d_hidden_recurrent[..h],
        &mut d_cell_carry[..h],
    );
    for j in 0..h {
        let dh = d_hidden[j] + d_hidden_recurrent[j];
        let tc = tanh_cell[j];
        let dc = dh * o[j] * (1.0 - tc * tc) + d_cell_carry[j];
        d_o[j] = dh * tc * o[j] * (1.0 - o[j]);
        di[j] = dc * g[j] * i[j] * (1.0 - i[j]);
        dg[j] = dc * i[j] * (1.0 - g[j] * g[j]);
        // Reuses df for dc until the previous cell is known.
        df[j] = dc;
        d_cell_carry[j] = dc * f[j];
    }
    match previous_cell {
        Some(previous) => {
            let previous = &previous[..h];
            for j in 0..h {
                df[j] = df[j] * previous[j] * f[j] * (1.0 - f[j]);
            }
        }
        None => df.fill(0.0),
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
        let g = 4 * d.hidden;
        let x = pseudo_random(d.batch * d.seq * d.input, 1, 1.0);
        let w_in = pseudo_random(d.input * g, 2, 0.5);
        let bias = pseudo_random(g, 3, 0.5);
        let w_h = pseudo_random(d.hidden * g, 4, 0.3);
        let d_hidden = pseudo_random(d.batch * d.seq * d.hidden, 5, 1.0);
        let run = |threads: usize| {
            crate::model::tests::on_threads(threads, || {
                let trace = forward(d, &x, &w_in, &bias, &w_h);
                let grads = backward(d, &x, &w_in, &w_h, trace.view(), &d_hidden, true);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                (
                    bits(&trace.hidden),
                    bits(grads.x.as_ref().unwrap()),
                    bits(&grads.w_in),
                    bits(&grads.bias),
                    bits(&grads.w_h),
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
