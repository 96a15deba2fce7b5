//! burn-nn's transformer encoder, computed with every linear layer as one row matmul.
//!
//! `Linear::forward` on a `[batch, seq, d]` input runs as `batch` separate `[seq, d]`
//! matmuls against the shared weight: burn 0.22's matmul transform policy folds the batch
//! into the rows only when that makes the output squarer, which a 60-step window over 384
//! outputs does not. On flex each of those small matmuls re-packs the weight, and the weight
//! gradient comes out as a `[batch, d_in, d_out]` tensor that is then summed over the batch:
//! about a third of transformer-ref's training time in a profile. [`linear_rows`] reshapes to
//! `[batch * seq, d]` first, so the forward, the input gradient and the weight gradient are
//! each one large matmul.
//!
//! [`encode`] is `TransformerEncoder::forward` without masks, on the same modules (the same
//! parameters and records): the same layer order, norms, softmax, dropouts and residuals,
//! only the linear layers computed through [`linear_rows`].

use burn::nn::Linear;
use burn::nn::activation::Activation;
use burn::nn::attention::MultiHeadAttention;
use burn::nn::transformer::{PositionWiseFeedForward, TransformerEncoder, TransformerEncoderLayer};
use burn::tensor::Tensor;
use burn::tensor::activation::{quiet_softmax, softmax};

use super::norm_fused::layer_norm;
use super::{attention_fused, linear_fused};

/// `linear.forward(x)` as one `[batch * seq, d_in] x [d_in, d_out]` matmul (fused with its
/// bias in f32 on flex, `linear_fused.rs`).
pub(super) fn linear_rows(linear: &Linear, x: Tensor<3>) -> Tensor<3> {
    linear_fused::linear_rows(linear, x, false)
}

/// `encoder.forward(TransformerEncoderInput::new(x))`, linear layers as row matmuls.
pub(super) fn encode(encoder: &TransformerEncoder, x: Tensor<3>) -> Tensor<3> {
    encoder.layers.iter().fold(x, encoder_layer)
}

/// `TransformerEncoderLayer::forward` without masks. burn-nn normalises with `norm_2` before
/// attention and `norm_1` before the feed-forward when `norm_first`: kept as is, so the
/// parameters mean what they mean there.
fn encoder_layer(x: Tensor<3>, layer: &TransformerEncoderLayer) -> Tensor<3> {
    if layer.norm_first && layer.dropout.prob == 0.0 {
        // Without dropout on the branches, each residual addition is done by the branch's
        // last linear layer (`linear_fused::linear_rows_residual`): the same bits.
        let x = self_attention_residual(&layer.mha, layer_norm(&layer.norm_2, x.clone()), x);
        return feed_forward_residual(&layer.pwff, layer_norm(&layer.norm_1, x.clone()), x);
    }
    let attend = |h: Tensor<3>| layer.dropout.forward(self_attention(&layer.mha, h));
    let feed = |h: Tensor<3>| layer.dropout.forward(feed_forward(&layer.pwff, h));
    if layer.norm_first {
        let x = x.clone() + attend(layer_norm(&layer.norm_2, x));
        x.clone() + feed(layer_norm(&layer.norm_1, x))
    } else {
        let x = layer_norm(&layer.norm_1, x.clone() + attend(x));
        layer_norm(&layer.norm_2, x.clone() + feed(x))
    }
}

/// `MultiHeadAttention::forward(MhaInput::self_attn(x)).context`.
/// In f32 on flex, without attention dropout, the core runs as one fused operation
/// (`attention_fused.rs`); elsewhere it is composed of burn ops.
pub(super) fn self_attention(mha: &MultiHeadAttention, x: Tensor<3>) -> Tensor<3> {
    match fused_context(mha, x.clone()) {
        Some(context) => linear_rows(&mha.output, context),
        None => composed_attention(mha, x),
    }
}

/// `residual + self_attention(mha, x)`.
fn self_attention_residual(
    mha: &MultiHeadAttention,
    x: Tensor<3>,
    residual: Tensor<3>,
) -> Tensor<3> {
    match fused_context(mha, x.clone()) {
        Some(context) => linear_fused::linear_rows_residual(&mha.output, context, residual),
        None => residual + composed_attention(mha, x),
    }
}

/// The attention's context before its output projection, by the fused attention core where
/// it runs (f32 on flex, no attention dropout, plain softmax).
fn fused_context(mha: &MultiHeadAttention, x: Tensor<3>) -> Option<Tensor<3>> {
    if !(attention_fused::supports(&x) && mha.dropout.prob == 0.0 && !mha.quiet_softmax) {
        return None;
    }
    let (q, k, v) = (
        linear_rows(&mha.query, x.clone()),
        linear_rows(&mha.key, x.clone()),
        linear_rows(&mha.value, x),
    );
    Some(attention_fused::multi_head_attention(q, k, v, mha.n_heads))
}

/// [`self_attention`] composed of burn ops, as burn-nn computes it.
pub(super) fn composed_attention(mha: &MultiHeadAttention, x: Tensor<3>) -> Tensor<3> {
    let [batch, seq, d_model] = x.dims();
    let heads = |linear: &Linear| {
        linear_rows(linear, x.clone())
            .reshape([batch, seq, mha.n_heads, mha.d_k])
            .swap_dims(1, 2)
    };
    let (query, key, value) = (heads(&mha.query), heads(&mha.key), heads(&mha.value));
    let scores = query
        .matmul(key.transpose())
        .div_scalar((mha.d_k as f32).sqrt());
    let weights = if mha.quiet_softmax {
        quiet_softmax(scores, 3)
    } else {
        softmax(scores, 3)
    };
    let context = mha
        .dropout
        .forward(weights)
        .matmul(value)
        .swap_dims(1, 2)
        .reshape([batch, seq, d_model]);
    linear_rows(&mha.output, context)
}

/// `PositionWiseFeedForward::forward`.
fn feed_forward(ff: &PositionWiseFeedForward, x: Tensor<3>) -> Tensor<3> {
    linear_rows(&ff.linear_outer, inner_feed_forward(ff, x))
}

/// `residual + feed_forward(ff, x)`.
fn feed_forward_residual(
    ff: &PositionWiseFeedForward,
    x: Tensor<3>,
    residual: Tensor<3>,
) -> Tensor<3> {
    linear_fused::linear_rows_residual(&ff.linear_outer, inner_feed_forward(ff, x), residual)
}

/// The feed-forward's hidden activations, after its dropout.
fn inner_feed_forward(ff: &PositionWiseFeedForward, x: Tensor<3>) -> Tensor<3> {
    let h = match &ff.activation {
        // GELU over the GEMM's output, in the same pass.
        Activation::Gelu(gelu) if !gelu.approximate => {
            linear_fused::linear_rows(&ff.linear_inner, x, true)
        }
        activation => activation.forward(linear_rows(&ff.linear_inner, x)),
    };
    ff.dropout.forward(h)
}

#[cfg(test)]
mod tests {
    use burn::nn::transformer::{TransformerEncoderConfig, TransformerEncoderInput};
    use burn::tensor::{Device, Distribution, Tensor};

    use super::encode;

    /// The same outputs and parameter gradients as burn-nn's own forward, pre- and post-norm,
    /// to float tolerance (the matmuls are blocked differently).
    #[test]
    fn encode_matches_burn_nn() {
        let device = Device::flex().autodiff();
        for norm_first in [true, false] {
            let encoder = TransformerEncoderConfig::new(16, 24, 4, 2)
                .with_dropout(0.0)
                .with_norm_first(norm_first)
                .init(&device);
            let x: Tensor<3> = Tensor::random([3, 7, 16], Distribution::Normal(0.0, 1.0), &device);
            let ours = encode(&encoder, x.clone());
            let theirs = encoder.forward(TransformerEncoderInput::new(x));
            let close = |a: Tensor<2>, b: Tensor<2>, what: &str| {
                let (a, b) = (a.into_data(), b.into_data());
                let (a, b) = (
                    a.try_to_vec::<f32>().unwrap(),
                    b.try_to_vec::<f32>().unwrap(),
                );
                assert_eq!(a.len(), b.len());
                let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
                for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                    assert!(
                        (x - y).abs() <= 1e-5 * scale,
                        "{what} (norm_first {norm_first}) [{i}]: {x} vs {y}"
                    );
                }
            };
            close(
                ours.clone().reshape([21, 16]),
                theirs.clone().reshape([21, 16]),
                "output",
            );
            // A weighted sum: the plain sum of a post-norm output has a zero gradient up to
            // rounding noise, which two formulations need not share.
            let w: Tensor<3> = Tensor::random([3, 7, 16], Distribution::Normal(0.0, 1.0), &device);
            let (g_ours, g_theirs) = (
                (ours * w.clone()).sum().backward(),
                (theirs * w).sum().backward(),
            );
            let layer = &encoder.layers[0];
            let weights = [
                ("query", &layer.mha.query.weight),
                ("value", &layer.mha.value.weight),
                ("output", &layer.mha.output.weight),
                ("ff inner", &layer.pwff.linear_inner.weight),
                ("ff outer", &layer.pwff.linear_outer.weight),
            ];
            for (what, w) in weights {
                close(w.grad(&g_ours).unwrap(), w.grad(&g_theirs).unwrap(), what);
            }
            let bias = layer.pwff.linear_inner.bias.as_ref().unwrap();
            close(
                bias.grad(&g_ours).unwrap().reshape([1, 24]),
                bias.grad(&g_theirs).unwrap().reshape([1, 24]),
                "ff inner bias",
            );
        }
    }

    /// The row matmuls are large enough for flex to split them across threads (over 192^3
    /// multiply-adds): outputs and gradients keep the same bits on 1, 2 and 3 threads.
    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let device = Device::flex().autodiff();
        let encoder = TransformerEncoderConfig::new(64, 256, 4, 1)
            .with_dropout(0.0)
            .with_norm_first(true)
            .init(&device);
        let values: Vec<f32> = (0..64 * 40 * 64)
            .map(|i| ((i as f32) * 0.618_034).fract() - 0.5)
            .collect();
        let run = |threads: usize| {
            crate::model::tests::on_threads(threads, || {
                let x: Tensor<3> = Tensor::from_data(
                    burn::tensor::TensorData::new(values.clone(), [64, 40, 64]),
                    &device,
                );
                let y = encode(&encoder, x);
                let grads = y.clone().sum().backward();
                let layer = &encoder.layers[0];
                let bits = |t: Tensor<2>| {
                    let v = t.into_data().try_to_vec::<f32>().unwrap();
                    v.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
                };
                (
                    bits(y.reshape([64 * 40, 64])),
                    bits(layer.pwff.linear_inner.weight.grad(&grads).unwrap()),
                    bits(layer.mha.query.weight.grad(&grads).unwrap()),
                )
            })
        };
        let one = run(1);
        assert_eq!(one, run(2));
        assert_eq!(one, run(3));
    }
}
