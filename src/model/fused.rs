//! Kernels shared by the fused recurrent layers (`lstm_fused.rs`, `gru_fused.rs`): flex
//! tensors as f32 slices, a strided GEMM on flex's `gemm`, a branch-free tanh and the SIMD
//! dispatch of elementwise passes.
//!
//! Results do not depend on the thread count: the GEMMs split their output, never a sum, and
//! every elementwise pass computes each element the same way on every SIMD width (plain IEEE
//! operations, no FMA contraction).

use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{DispatchDevice, Flex, TensorMetadata};
use burn::tensor::{DType, Tensor, TensorData};
use burn_flex::ops::activation::exp_f32;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Whether the fused layers run `x` (f32 on flex, with or without autodiff).
pub fn supports(x: &Tensor<3>) -> bool {
    x.dtype() == DType::F32 && matches!(x.device().inner().as_dispatch(), DispatchDevice::Flex(_))
}

pub(super) fn dense(t: FloatTensor<Flex>) -> FloatTensor<Flex> {
    assert_eq!(t.dtype(), DType::F32, "the fused layers compute in f32");
    t.to_contiguous()
}

pub(super) fn f32s(t: &FloatTensor<Flex>) -> &[f32] {
    // Invariant: every tensor reaching here went through `dense` (contiguous f32).
    #[allow(clippy::expect_used)]
    t.as_slice::<f32>()
        .expect("a contiguous f32 tensor (made so by `dense`)")
}

/// The values of a flex tensor as an owned vector: its own buffer when nothing else holds it,
/// else a copy.
pub(super) fn into_f32s(t: FloatTensor<Flex>) -> Vec<f32> {
    assert_eq!(t.dtype(), DType::F32, "the fused layers compute in f32");
    // Invariant: an f32 tensor's data converts to f32 values.
    #[allow(clippy::expect_used)]
    t.into_data()
        .try_into_vec::<f32>()
        .expect("an f32 tensor's values")
}

pub(super) fn from_f32s<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> FloatTensor<Flex> {
    Flex::float_from_data(TensorData::new(values, shape), &Default::default())
}

/// Rows per parallel task in the elementwise passes: enough that a task outweighs rayon's
/// cost of handing it out.
pub(super) fn elementwise_min_rows(gates: usize) -> usize {
    (8192 / gates.max(1)).max(1)
}

/// A read-only `rows × cols` matrix in a slice: element (r, c) at `r * row_stride + c *
/// col_stride`.
#[derive(Clone, Copy)]
pub(super) struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> Mat<'a> {
    /// Row-major rows, `row_stride` apart.
    pub(super) fn rows(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        Mat::checked(data, rows, cols, row_stride, 1)
    }

    /// The transpose of the row-major `cols × rows` matrix whose rows are `stride` apart.
    pub(super) fn transposed(data: &'a [f32], rows: usize, cols: usize, stride: usize) -> Self {
        Mat::checked(data, rows, cols, 1, stride)
    }

    fn checked(
        data: &'a [f32],
        rows: usize,
        cols: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> Self {
        assert!(rows > 0 && cols > 0, "empty matrix {rows} × {cols}");
        let last = (rows - 1) * row_stride + (cols - 1) * col_stride;
        assert!(
            last < data.len(),
            "matrix {rows} × {cols} outside its {} values",
            data.len()
        );
        Mat {
            data,
            rows,
            cols,
            row_stride,
            col_stride,
        }
    }
}

/// The destination of [`matmul`]: element (r, c) at `r * row_stride + c * col_stride`, added
/// to or overwritten.
pub(super) struct Out<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
    accumulate: bool,
}

impl<'a> Out<'a> {
    pub(super) fn new(
        data: &'a mut [f32],
        rows: usize,
        cols: usize,
        row_stride: usize,
        accumulate: bool,
    ) -> Self {
        Out::checked(data, rows, cols, row_stride, 1, accumulate)
    }

    /// The transpose of the row-major `cols × rows` block whose rows are `stride` apart.
    ///
    /// Why: the recurrent layers' per-step products are computed transposed (`Wᵀ · hᵀ`), so
    /// that gemm reads the weight as a column-major left-hand side and the states unpacked as
    /// its right-hand side: upstream's orientation packed both operands at every step, the
    /// strided state rows on one thread. Each element is the same sum of the same products in
    /// the same order (kc does not depend on the orientation), so the bits do not move.
    pub(super) fn transposed(
        data: &'a mut [f32],
        rows: usize,
        cols: usize,
        stride: usize,
        accumulate: bool,
    ) -> Self {
        Out::checked(data, rows, cols, 1, stride, accumulate)
    }

    fn checked(
        data: &'a mut [f32],
        rows: usize,
        cols: usize,
        row_stride: usize,
        col_stride: usize,
        accumulate: bool,
    ) -> Self {
        assert!(rows > 0 && cols > 0, "empty output {rows} × {cols}");
        assert!(
            (rows - 1) * row_stride + (cols - 1) * col_stride < data.len(),
            "output outside its slice"
        );
        // Distinct elements at distinct places: gemm's threads write them concurrently.
        assert!(
            rows == 1
                || cols == 1
                || row_stride >= cols * col_stride
                || col_stride >= rows * row_stride,
            "output elements overlap"
        );
        Out {
            data,
            rows,
            cols,
            row_stride,
            col_stride,
            accumulate,
        }
    }
}

/// The sizes of one recurrent layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LayerDims {
    pub batch: usize,
    pub seq: usize,
    pub input: usize,
    pub hidden: usize,
}

impl LayerDims {
    /// From `x` `[batch, seq, input]` and `w_h` `[hidden, gates * hidden]`; `op` names the
    /// operation in the panic a shape mismatch (a bug in the caller) gives.
    pub(super) fn of(
        x: &FloatTensor<Flex>,
        w_h: &FloatTensor<Flex>,
        gates: usize,
        op: &str,
    ) -> Self {
        let (xs, ws) = (x.shape(), w_h.shape());
        assert!(
            xs.len() == 3 && ws.len() == 2 && ws[1] == gates * ws[0],
            "{op}: x {xs:?}, w_h {ws:?}"
        );
        LayerDims {
            batch: xs[0],
            seq: xs[1],
            input: xs[2],
            hidden: ws[0],
        }
    }
}

/// Buffers kept on the thread that dropped them, for [`scratch`]: at most this many.
const SCRATCH_KEPT: usize = 8;

thread_local! {
    static SCRATCH_POOL: std::cell::RefCell<Vec<Vec<f32>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `len` values left from an earlier use of the buffer (zeros when new): for buffers whose
/// every element is written before it is read. Dropped, the buffer goes back to its thread's
/// pool.
///
/// Why: the recurrent layers' traces and gradient buffers are tens of megabytes per call;
/// zeroing fresh ones before overwriting them was about 5% of lstm-ref's training.
pub(crate) struct Scratch {
    buf: Vec<f32>,
    len: usize,
}

pub(crate) fn scratch(len: usize) -> Scratch {
    let reused = SCRATCH_POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        // The smallest buffer that fits, so that small requests leave large buffers alone.
        let best = (0..pool.len())
            .filter(|&i| pool[i].len() >= len)
            .min_by_key(|&i| pool[i].len());
        best.map(|i| pool.swap_remove(i))
    });
    Scratch {
        buf: reused.unwrap_or_else(|| vec![0.0; len]),
        len,
    }
}

impl std::ops::Deref for Scratch {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.buf[..self.len]
    }
}

impl std::ops::DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.buf[..self.len]
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        if buf.is_empty() {
            return;
        }
        // `try_with`: a buffer dropped while its thread exits is simply freed.
        let _ = SCRATCH_POOL.try_with(|pool| {
            let mut pool = pool.borrow_mut();
            if pool.len() < SCRATCH_KEPT {
                pool.push(buf);
            } else if let Some(smallest) = pool.iter_mut().min_by_key(|b| b.len()) {
                // Keep the larger of the two.
                if smallest.len() < buf.len() {
                    *smallest = buf;
                }
            }
        });
    }
}

/// Asks the CPU to start loading `data` into its caches.
///
/// Why: a recurrent backward pass reads each batch row's forward trace for the step, a few
/// KiB per row at rows a whole sequence apart, from memory; loading the next row's while the
/// current one is computed hides the latency. It changes no value.
#[inline(always)]
pub(super) fn prefetch(data: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    for line in data.chunks(16) {
        // SAFETY: a prefetch only hints the cache; the address is inside `data`.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                line.as_ptr().cast(),
            )
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

/// `h_{t-1}` for every row `(batch, step)` of `hidden` `[batch, seq, h]` (zero at the first
/// step), for the recurrent weight's gradient, in a [`scratch`] buffer.
pub(super) fn previous_hidden_scratch(d: LayerDims, hidden: &[f32]) -> Scratch {
    beside_previous_hidden(d, None, hidden)
}

/// Each row `(batch, step)` of `x` `[batch, seq, input]` followed by `h_{t-1}` of that row
/// (zero at the first step), in a [`scratch`] buffer `[batch, seq, input + h]`.
///
/// Why: the input and recurrent weights' gradients are both `rowsᵀ · dgates`; side by side
/// they are one product, which packs `dgates` once instead of twice. Each gradient element
/// is the same sum in the same order either way.
pub(super) fn inputs_beside_previous_hidden(d: LayerDims, x: &[f32], hidden: &[f32]) -> Scratch {
    beside_previous_hidden(d, Some(x), hidden)
}

fn beside_previous_hidden(d: LayerDims, x: Option<&[f32]>, hidden: &[f32]) -> Scratch {
    let (h, input) = (d.hidden, x.map_or(0, |_| d.input));
    let width = input + h;
    let mut out = scratch(d.batch * d.seq * width);
    if width == 0 {
        return out;
    }
    // One batch row's steps per task, on the pool: a copy, so the bits cannot depend on it.
    out.par_chunks_mut(d.seq * width)
        .enumerate()
        .for_each(|(b, rows)| {
            for (step, row) in rows.chunks_exact_mut(width).enumerate() {
                let at = b * d.seq + step;
                if let Some(x) = x {
                    row[..input].copy_from_slice(&x[at * input..][..input]);
                }
                match step {
                    0 => row[input..].fill(0.0),
                    _ => row[input..].copy_from_slice(&hidden[(at - 1) * h..][..h]),
                }
            }
        });
    out
}

/// The `cols × rows` row-major transpose of the row-major `rows × cols` matrix `data`.
///
/// Why: gemm packs a right-hand side whose columns are strided one element at a time
/// (scalar loads), and the backward passes multiply by `W_hᵀ` at every step; transposed once
/// per call the packing reads rows. The product's bits do not change: the same values meet in
/// the same order.
pub(super) fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    assert_eq!(data.len(), rows * cols, "transpose: {rows} × {cols}");
    let mut out = Vec::with_capacity(rows * cols);
    for c in 0..cols {
        out.extend((0..rows).map(|r| data[r * cols + c]));
    }
    out
}

/// Batch rows per lane group of a recurrence: the batch split evenly over the current pool's
/// threads.
///
/// Why: the rows of a batch never meet in a recurrent layer's steps, so each group runs on one
/// thread through every step, its per-step products on that thread ([`matmul_here`]): one
/// hand-off per layer instead of two per step (a product shared by the pool, then the gate
/// pass), and each group's states stay in its core's cache. Every element is computed by the
/// same code in the same order whatever the grouping, so the bits do not depend on it.
pub(super) fn lane_rows(batch: usize) -> usize {
    batch.div_ceil(rayon::current_num_threads().max(1)).max(1)
}

/// While it lives, this thread's per-step products ([`matmul_here`]) keep their packed
/// left-hand side: a recurrence multiplies by the same weight at every step, and gemm packed
/// all of it into its panel layout each time (6% of lstm-ref's training). The microkernels
/// read the same values from the same layout either way, so the bits do not change.
pub(super) struct RecurrentWeightKept {
    _scope: gemm_common::gemm::KeptLhsScope,
}

impl RecurrentWeightKept {
    /// # Safety
    /// Every left-hand side this thread multiplies while the value lives (a lane group's
    /// recurrent weight) must stay unchanged until it is dropped.
    pub(super) unsafe fn new() -> Self {
        // SAFETY: the caller's contract.
        Self {
            _scope: unsafe { gemm_common::gemm::keep_packed_lhs() },
        }
    }
}

/// `out (+)= lhs · rhs` by the `gemm` crate (flex's own), on the current rayon pool when the
/// product is large enough to share.
pub(super) fn matmul(out: Out<'_>, lhs: Mat<'_>, rhs: Mat<'_>) {
    matmul_with(out, lhs, rhs, true);
}

/// [`matmul`] on the calling thread alone: for products inside a task of the pool (see
/// [`lane_rows`]). The same bits: gemm's threads split the output, never a sum.
pub(super) fn matmul_here(out: Out<'_>, lhs: Mat<'_>, rhs: Mat<'_>) {
    matmul_with(out, lhs, rhs, false);
}

fn matmul_with(out: Out<'_>, lhs: Mat<'_>, rhs: Mat<'_>, share: bool) {
    assert!(
        lhs.rows == out.rows && rhs.rows == lhs.cols && rhs.cols == out.cols,
        "matmul shapes"
    );
    // SAFETY: `Mat::checked` and `Out::new` proved every element the strides reach lies inside
    // its slice, initialised; `out` is borrowed mutably, so it aliases neither input.
    unsafe {
        gemm_into(
            out.data.as_mut_ptr(),
            [out.row_stride, out.col_stride],
            out.accumulate,
            lhs,
            rhs,
            share,
        )
    }
}

/// `lhs · rhs` written over `out`, an uninitialised `rows × cols` block whose rows are
/// `row_stride` apart: [`matmul`] without accumulating, for outputs the product fills, so
/// that no pass zeroes them first. The same bits as [`matmul`] into a zeroed buffer (gemm
/// with `read_dst` false writes each element without reading it).
pub(super) fn matmul_uninit(
    out: &mut [MaybeUninit<f32>],
    row_stride: usize,
    lhs: Mat<'_>,
    rhs: Mat<'_>,
) {
    let (m, n) = (lhs.rows, rhs.cols);
    assert_eq!(rhs.rows, lhs.cols, "matmul shapes");
    assert!(
        m == 0 || (m - 1) * row_stride + n <= out.len(),
        "output outside its slice"
    );
    // SAFETY: the assertion keeps every output element inside `out`, borrowed mutably (so
    // it aliases neither input); with `read_dst` false gemm only writes it (its destination
    // scale is never applied to a read value), so its uninitialised elements are never read.
    unsafe {
        gemm_into(
            out.as_mut_ptr().cast::<f32>(),
            [row_stride, 1],
            false,
            lhs,
            rhs,
            true,
        )
    }
}

/// `dst (+)= lhs · rhs` by the `gemm` crate (flex's own), `dst`'s element (r, c) at `r *
/// row_stride + c * col_stride`; split across the current rayon pool when `share` and the
/// product is large enough to share.
///
/// SAFETY: `dst` must be valid for writes of those `lhs.rows × rhs.cols` elements, each at a
/// distinct place, alias neither input, and be initialised when `read_dst`.
unsafe fn gemm_into(
    dst: *mut f32,
    [row_stride, col_stride]: [usize; 2],
    read_dst: bool,
    lhs: Mat<'_>,
    rhs: Mat<'_>,
    share: bool,
) {
    let (m, n, k) = (lhs.rows, rhs.cols, lhs.cols);
    let parallelism = if share && m * n * k >= 64 * 64 * 64 && rayon::current_num_threads() > 1 {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the caller's contract; `Mat::checked` proved the inputs' strides stay inside
    // their slices.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            col_stride as isize,
            row_stride as isize,
            read_dst,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// The elements of `out` after a pass wrote every one of them.
///
/// # Safety
/// Every element of `out` must have been written.
pub(super) unsafe fn assume_written(out: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: the caller wrote every element; `MaybeUninit<f32>` has `f32`'s layout.
    unsafe { &mut *(std::ptr::from_mut(out) as *mut [f32]) }
}

/// tanh in f32 without branches or calls: Cephes' `tanhf` (an odd polynomial below 0.625,
/// `1 - 2 / (e^{2|x|} + 1)` above), within 2 ulp-ish of libm.
#[inline(always)]
pub(super) fn tanh_f32(x: f32) -> f32 {
    let a = x.abs();
    let z = x * x;
    let small =
        ((((-5.704_988_7e-3 * z + 2.063_909e-2) * z - 5.373_971_6e-2) * z + 1.333_144_2e-1) * z
            - 3.333_328e-1)
            * z
            * x
            + x;
    let large = 1.0 - 2.0 / (exp_f32(2.0 * a) + 1.0);
    if a < 0.625 { small } else { large }.copysign(x)
}

/// Runs `$body` compiled for AVX-512 or AVX2 where the CPU has them (same bits: the body uses
/// plain IEEE operations, which each width computes identically).
macro_rules! widest_simd {
    ($vis:vis $name:ident($($arg:ident: $ty:ty),*) $body:block) => {
        // The passes take their slices one by one, however many: that is their signature.
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx512($($arg: $ty),*) { body($($arg),*) }
                #[target_feature(enable = "avx2")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2($($arg: $ty),*) { body($($arg),*) }
                if std::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F (checked just above).
                    return unsafe { avx512($($arg),*) };
                }
                if std::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2 (checked just above).
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}
pub(super) use widest_simd;

/// `sum[j] += Σ_r rows[r * stride + j]` over the rows in order, for every column j of `sum`,
/// the columns split into one contiguous block per thread of the pool.
///
/// Why: a bias gradient is such a sum over every row of the gate gradients (31 MB per layer
/// at lstm-ref's shapes); each thread reads its block of every row in one pass, where tasks
/// of 64 columns read each row in eight strided passes. Each column's sum is the same
/// sequence of additions however the columns are split.
pub(super) fn column_sums(sum: &mut [f32], rows: &[f32], stride: usize) {
    let threads = rayon::current_num_threads().max(1);
    let block = sum.len().div_ceil(threads).next_multiple_of(16).max(16);
    sum.par_chunks_mut(block)
        .enumerate()
        .for_each(|(c, part)| add_column_sums(part, &rows[c * block..], stride));
}

widest_simd!(add_column_sums(sum: &mut [f32], rows: &[f32], stride: usize) {
    // `sum[j] += rows[r * stride + j]` for every row r in order, in one call (a call per row
    // and column block cost more than the additions).
    let n = sum.len();
    if n == 0 {
        return;
    }
    for row in rows.chunks(stride) {
        for (s, r) in sum.iter_mut().zip(&row[..n]) {
            *s += r;
        }
    }
});

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A tensor's values, for comparing them.
    pub(crate) fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    /// `a` agrees with the reference `b` to float tolerance (relative to `b`'s largest value).
    pub(crate) fn assert_close(a: &[f32], b: &[f32], what: &str) {
        assert_eq!(a.len(), b.len(), "{what}");
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= 2e-5 * scale, "{what}[{i}]: {x} vs {y}");
        }
    }

    pub(crate) fn pseudo_random(n: usize, seed: u64, scale: f32) -> Vec<f32> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
            })
            .collect()
    }

    /// `wᵀ · rhs` as a recurrent step computes it (the weight column-major, the states read
    /// in place), on this thread.
    fn step_product(w: &[f32], rhs: &[f32], (g, h, n): (usize, usize, usize)) -> Vec<f32> {
        let mut out = vec![0.0; g * n];
        matmul_here(
            Out::transposed(&mut out, g, n, g, false),
            Mat::transposed(w, g, h, g),
            Mat::transposed(rhs, h, n, h),
        );
        out
    }

    /// A weight kept packed gives the bits of one packed at every product, and a kept one is
    /// forgotten when its scope ends: the weight changed in place afterwards is packed anew.
    #[test]
    fn kept_recurrent_weight_same_bits_and_forgotten_after_its_scope() {
        let dims = (512, 128, 100);
        let (g, h, n) = dims;
        let mut w = pseudo_random(h * g, 1, 0.1);
        let states: Vec<Vec<f32>> = (0..3).map(|s| pseudo_random(n * h, 10 + s, 1.0)).collect();
        let fresh: Vec<Vec<f32>> = states.iter().map(|x| step_product(&w, x, dims)).collect();
        {
            // SAFETY: `w` is not written while the scope lives.
            let _kept = unsafe { RecurrentWeightKept::new() };
            for (x, expected) in states.iter().zip(&fresh) {
                let got = step_product(&w, x, dims);
                assert!(
                    got.iter()
                        .zip(expected)
                        .all(|(a, b)| a.to_bits() == b.to_bits())
                );
            }
        }
        // The same address, new values: an optimizer step between two sequences.
        w.iter_mut().for_each(|v| *v *= -0.5);
        let changed = step_product(&w, &states[0], dims);
        // SAFETY: `w` is not written while the scope lives.
        let _kept = unsafe { RecurrentWeightKept::new() };
        let kept = step_product(&w, &states[0], dims);
        assert_ne!(changed, fresh[0]);
        assert!(
            kept.iter()
                .zip(&changed)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
    }

    #[test]
    fn tanh_is_accurate_and_odd() {
        for i in -4000..=4000 {
            let x = i as f32 * 0.0025 * (1.0 + (i as f32).abs() * 0.01);
            let got = tanh_f32(x) as f64;
            let want = libm::tanh(x as f64);
            assert!(
                (got - want).abs() <= 3e-7 * want.abs() + 1e-38,
                "tanh({x}) = {got}, not {want}"
            );
            assert_eq!(tanh_f32(-x).to_bits(), (-tanh_f32(x)).to_bits());
        }
        assert_eq!(tanh_f32(100.0), 1.0);
        assert_eq!(tanh_f32(f32::MAX), 1.0);
    }

    #[test]
    fn transpose_swaps_rows_and_columns() {
        let m = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        assert_eq!(transpose(&m, 2, 3), [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        assert_eq!(transpose(&transpose(&m, 2, 3), 3, 2), m);
    }
}
