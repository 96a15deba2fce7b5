//! The numerical building blocks the stages call, computed on fixed inputs and compared bit
//! for bit with digests recorded on an AVX-512 machine: the same bits on every x86-64 CPU.
//! Run natively this checks the widest code paths; CI runs this binary again under qemu's
//! `qemu64` (SSE2, no FMA) and `Haswell` (AVX2 + FMA) CPUs (scripts/ci/cpu_levels.sh), where
//! flex, gemm and our kernels take their other paths. Each op also has a reference test of its
//! documented order of operations, which needs no emulator.

use burn::tensor::activation::{gelu, log_softmax, sigmoid, silu, softmax, tanh};
use burn::tensor::{Device, Tensor, TensorData};

/// Deterministic values in [-scale, scale) (xorshift), exactly representable in f32.
fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
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

fn tensor<const D: usize>(shape: [usize; D], seed: u64, scale: f32, device: &Device) -> Tensor<D> {
    let n = shape.iter().product();
    Tensor::from_data(TensorData::new(values(n, seed, scale), shape), device)
}

fn bits<const D: usize>(t: Tensor<D>) -> Vec<u32> {
    t.into_data()
        .try_to_vec::<f32>()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

/// blake3 of the f32 bits, as hex (the first 16 digits).
fn digest(parts: &[Vec<u32>]) -> String {
    let mut h = blake3::Hasher::new();
    for p in parts {
        for v in p {
            h.update(&v.to_le_bytes());
        }
    }
    h.finalize().to_hex()[..16].to_string()
}

/// `sum` in the documented fixed order (vendor/burn-flex `fixed_order_sum_f32`): element i
/// to partial i % 64 over whole chunks of 64, partials halved pairwise, then the rest in order.
fn reference_sum(xs: &[f32]) -> f32 {
    let whole = xs.len() / 64 * 64;
    let mut p = [0.0f32; 64];
    for (i, &x) in xs[..whole].iter().enumerate() {
        p[i % 64] += x;
    }
    let mut w = 32;
    while w > 0 {
        for i in 0..w {
            p[i] += p[i + w];
        }
        w /= 2;
    }
    let mut s = p[0];
    for &x in &xs[whole..] {
        s += x;
    }
    s
}

#[test]
fn sums_follow_the_fixed_order_on_this_cpu() {
    let device = Device::flex();
    for n in [1, 3, 5, 17, 63, 64, 65, 100, 127, 128, 129, 640, 1000, 4099] {
        let xs = values(n, n as u64, 3.0);
        let t = Tensor::<1>::from_data(TensorData::new(xs.clone(), [n]), &device);
        let got = t.clone().sum().into_scalar::<f32>();
        assert_eq!(got.to_bits(), reference_sum(&xs).to_bits(), "sum of {n}");
        // Rows of a matrix summed along the last dim take the same order.
        let rows = Tensor::<2>::from_data(TensorData::new(xs.repeat(3), [3, n]), &device);
        for r in bits(rows.sum_dim(1)) {
            assert_eq!(r, reference_sum(&xs).to_bits(), "row sum of {n}");
        }
    }
}

/// The product as gemm computes it on every CPU (vendor/gemm-common, gemm-f32): each output
/// a chain of fused multiply-adds along k from 0, in blocks of `kc`, the blocks added in turn.
fn reference_matmul(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    // kc: at most 512; for m or n above 64, k split into equal blocks of at most 512.
    let kc = if m <= 64 && n <= 64 {
        k.min(512)
    } else {
        let blocks = k.div_ceil(512);
        k.div_ceil(blocks)
    };
    let mut out = vec![0.0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut dst = 0.0f32;
            let mut start = 0;
            while start < k {
                let end = (start + kc).min(k);
                let mut acc = 0.0f32;
                for p in start..end {
                    acc = libm::fmaf(a[i * k + p], b[p * n + j], acc);
                }
                dst = if start == 0 { acc } else { dst + acc };
                start = end;
            }
            out[i * n + j] = dst;
        }
    }
    out
}

#[test]
fn matrix_products_follow_the_fused_chain_on_this_cpu() {
    let device = Device::flex();
    let shapes = [
        (2, 3, 2),
        (16, 192, 8),
        (64, 30, 96),
        (7, 513, 5),
        (65, 600, 70),
        (130, 1100, 9),
        (32, 8, 256),
        (5, 40, 1),
    ];
    for (m, k, n) in shapes {
        let a = values(m * k, 1 + m as u64, 1.0);
        let b = values(k * n, 2 + n as u64, 1.0);
        let want: Vec<u32> = reference_matmul(&a, &b, m, k, n)
            .iter()
            .map(|v| v.to_bits())
            .collect();
        let lhs = Tensor::<2>::from_data(TensorData::new(a, [m, k]), &device);
        let rhs = Tensor::<2>::from_data(TensorData::new(b, [k, n]), &device);
        assert_eq!(bits(lhs.matmul(rhs)), want, "{m}x{k} times {k}x{n}");
    }
}

/// Digests of every op family the stages run, forward and backward. Recorded with
/// `HFT_PRINT_DIGESTS=1 cargo test --test same_bits -- --nocapture` on an AVX-512 machine;
/// a change here is a change of results (bump the stage versions that run the op).
#[test]
fn ops_have_the_recorded_bits() {
    let device = Device::flex();
    let ad = Device::flex().autodiff();
    let x3 = |seed| tensor([4, 6, 40], seed, 2.0, &device);
    let mut got: Vec<(&str, String)> = Vec::new();
    let mut record = |name, parts: Vec<Vec<u32>>| got.push((name, digest(&parts)));

    // Products: 2-D, batched, transposed views, vector shapes, k of 1 and 2.
    let mut products = Vec::new();
    for (m, k, n) in [
        (1, 50, 9),
        (9, 50, 1),
        (1, 1, 7),
        (6, 2, 6),
        (3, 700, 4),
        (100, 64, 100),
    ] {
        let a = tensor([m, k], 3 + k as u64, 1.0, &device);
        let b = tensor([k, n], 4 + n as u64, 1.0, &device);
        products.push(bits(a.clone().matmul(b.clone())));
        products.push(bits(
            a.transpose()
                .transpose()
                .matmul(b.clone().transpose().transpose()),
        ));
        let at = tensor([k, m], 5, 1.0, &device).transpose();
        products.push(bits(at.matmul(b)));
    }
    products.push(bits(x3(6).matmul(tensor([4, 40, 12], 7, 1.0, &device))));
    record("matmul", products);

    // Reductions.
    let x = x3(8);
    record(
        "reductions",
        vec![
            bits(x.clone().sum()),
            bits(x.clone().mean()),
            bits(x.clone().sum_dim(0)),
            bits(x.clone().sum_dim(1)),
            bits(x.clone().sum_dim(2)),
            bits(x.clone().mean_dim(2)),
            bits(x.clone().max_dim(2)),
            bits(tensor([5_000_000], 9, 1.0, &device).sum()),
        ],
    );

    // Elementwise transcendental functions and activations.
    let e = x3(10);
    record(
        "unary",
        vec![
            bits(e.clone().exp()),
            bits(e.clone().abs().add_scalar(1e-3).log()),
            bits(e.clone().abs().log1p()),
            bits(e.clone().abs().sqrt()),
            bits(e.clone().sin()),
            bits(e.clone().cos()),
            bits(e.clone().abs().powf_scalar(0.8)),
            bits(e.clone().powi_scalar(3)),
            bits(sigmoid(e.clone())),
            bits(tanh(e.clone())),
            bits(gelu(e.clone())),
            bits(silu(e.clone())),
            bits(e.clone().erf()),
            bits(e.clone().recip()),
        ],
    );
    record(
        "softmax",
        vec![
            bits(softmax(e.clone(), 2)),
            bits(softmax(e.clone(), 1)),
            bits(log_softmax(e.clone(), 2)),
        ],
    );
    let ln = burn::nn::LayerNormConfig::new(40).init(&device);
    record("layer_norm", vec![bits(ln.forward(e))]);

    // Gradients through the same ops (autodiff's backward formulas on flex).
    let w = tensor([40, 16], 11, 0.3, &ad).require_grad();
    let input = tensor([4, 6, 40], 12, 1.0, &ad);
    let ln = burn::nn::LayerNormConfig::new(16).init(&ad);
    let h = ln.forward(gelu(input.matmul(w.clone().unsqueeze())));
    let loss = (log_softmax(h.clone(), 2) * sigmoid(h.clone())).sum()
        + tanh(h.clone()).powf_scalar(2.0).mean()
        + softmax(h, 1).exp().mean();
    let grads = loss.backward();
    record("backward", vec![bits(w.grad(&grads).unwrap())]);

    if std::env::var_os("HFT_PRINT_DIGESTS").is_some() {
        for (name, d) in &got {
            println!("(\"{name}\", \"{d}\"),");
        }
    }
    let want: &[(&str, &str)] = &RECORDED;
    let mismatches: Vec<String> = got
        .iter()
        .zip(want)
        .filter(|((_, g), (_, w))| g != w)
        .map(|((name, g), (_, w))| format!("{name}: {g}, recorded {w}"))
        .collect();
    assert!(mismatches.is_empty(), "other bits: {mismatches:?}");
    assert_eq!(got.len(), want.len());
}

const RECORDED: [(&str, &str); 6] = [
    ("matmul", "144a28abe4fe091c"),
    ("reductions", "159a913e9521c7bd"),
    ("unary", "4b5b28f79701285f"),
    ("softmax", "0c96e0fc28f8cda3"),
    ("layer_norm", "935b6c5170af21bf"),
    ("backward", "ddb88dae257d1369"),
];
