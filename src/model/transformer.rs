//! `transformer`: input projection, positions (sinusoidal or learned), a pre-norm encoder
//! (GELU feed-forward), a final layer norm, then pooling (last step, mean, or attention with
//! a learned query) into the heads.

use burn::module::{Initializer, Module, Param};
use burn::nn::transformer::{TransformerEncoder, TransformerEncoderConfig};
use burn::nn::{Dropout, DropoutConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::softmax;
use burn::tensor::{DType, Device, FloatDType, Tensor, TensorData};

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::encoder::{encode, linear_rows};
use super::registry::{ModelOptions, options_of};
use super::{Dims, Forecast, Forecaster, Heads, ModelError, Net};
use crate::config::ModelConfig;
use crate::config::options::{Invalid, Options, fail};

/// How the encoder summarises the sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    Last,
    Mean,
    /// A learned query attends over the steps.
    Attention,
}

/// Position encoding of the encoder's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Positions {
    /// Fixed.
    Sinusoidal,
    /// One trained vector per step of the window.
    Learned,
}

/// The keys of `model:` a `transformer` reads (and `dit` for its context encoder).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TransformerOptions {
    /// Attention heads; must divide hidden_size. Default 4.
    pub num_heads: usize,
    /// Feed-forward width. Default: 4 * hidden_size.
    pub ff_size: Option<usize>,
    /// `last`, `mean` or `attention`. Default `last`.
    pub pooling: Pooling,
    /// `sinusoidal` or `learned`. Default `sinusoidal`.
    pub positions: Positions,
}

impl Default for TransformerOptions {
    fn default() -> Self {
        TransformerOptions {
            num_heads: 4,
            ff_size: None,
            pooling: Pooling::Last,
            positions: Positions::Sinusoidal,
        }
    }
}

impl TransformerOptions {
    /// `ff_size` with its default.
    pub fn ff_size(&self, model: &ModelConfig) -> usize {
        self.ff_size.unwrap_or(4 * model.hidden_size)
    }
}

impl ModelOptions for TransformerOptions {
    const KEYS: &'static [&'static str] = &["num_heads", "ff_size", "pooling", "positions"];

    fn validate(&self, model: &ModelConfig) -> Result<(), Invalid> {
        if self.num_heads == 0 || !model.hidden_size.is_multiple_of(self.num_heads) {
            return fail(
                "model.num_heads",
                format!(
                    "must divide hidden_size ({} is not a multiple of {})",
                    model.hidden_size, self.num_heads
                ),
            );
        }
        if let Some(ff) = self.ff_size
            && !(1..=crate::config::model::MAX_FF_SIZE).contains(&ff)
        {
            return fail(
                "model.ff_size",
                format!(
                    "must be between 1 and {} (got {ff})",
                    crate::config::model::MAX_FF_SIZE
                ),
            );
        }
        Ok(())
    }

    fn key_value(&self, model: &ModelConfig, key: &mut Options) {
        key.insert("num_heads".into(), json!(self.num_heads));
        key.insert("ff_size".into(), json!(self.ff_size(model)));
        key.insert("pooling".into(), json!(self.pooling));
        // Added after the first release: the old default is left out so that existing
        // transformer keys (and caches) stay valid.
        if self.positions != Positions::Sinusoidal {
            key.insert("positions".into(), json!(self.positions));
        }
    }
}

#[derive(Module, Debug)]
pub struct Transformer {
    input: Linear,
    /// Learned positions `[sequence_length, d]`; `None` for the fixed sinusoidal table.
    pos_embedding: Option<Param<Tensor<2>>>,
    encoder: TransformerEncoder,
    norm: LayerNorm,
    /// Attention pooling's query `[d]`; `None` for last-step or mean pooling.
    pool_query: Option<Param<Tensor<1>>>,
    dropout: Dropout,
    heads: Heads,
    d_model: usize,
    mean_pool: bool,
}

pub fn build(cfg: &ModelConfig, dims: Dims, device: &Device) -> Result<Box<dyn Net>, ModelError> {
    let d = cfg.hidden_size;
    let o: TransformerOptions = options_of(cfg)?;
    let parts = EncoderParts::new(cfg, &o, dims, device)?;
    Ok(Box::new(Transformer {
        input: LinearConfig::new(dims.num_features, d).init(device),
        pos_embedding: parts.pos_embedding,
        encoder: parts.encoder,
        norm: LayerNormConfig::new(d).init(device),
        pool_query: parts.pool_query,
        dropout: DropoutConfig::new(cfg.dropout).init(),
        heads: Heads::new(d, dims.horizon, device),
        d_model: d,
        mean_pool: o.pooling == Pooling::Mean,
    }))
}

impl Forecaster for Transformer {
    fn forward(&self, x: Tensor<3>) -> Forecast {
        let [batch, _, _] = x.dims();
        let d = self.d_model;
        let positions = positions(self.pos_embedding.as_ref(), &x, d);
        let h = linear_rows(&self.input, x) + positions;
        let h = encode(&self.encoder, self.dropout.forward(h));
        let h = super::norm_fused::layer_norm(&self.norm, h);
        let pooled = pool(h, self.pool_query.as_ref(), self.mean_pool);
        self.heads.forward(pooled.reshape([batch, d]))
    }
}

/// The encoder stack and the optional learned positions and pooling query of a transformer
/// over the window (shared with `dit`'s context encoder).
pub(super) struct EncoderParts {
    pub encoder: TransformerEncoder,
    pub pos_embedding: Option<Param<Tensor<2>>>,
    pub pool_query: Option<Param<Tensor<1>>>,
}

impl EncoderParts {
    pub fn new(
        cfg: &ModelConfig,
        o: &TransformerOptions,
        dims: Dims,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let d = cfg.hidden_size;
        if o.num_heads == 0 || !d.is_multiple_of(o.num_heads) {
            return Err(ModelError::Config(format!(
                "num_heads ({}) must divide hidden_size ({d})",
                o.num_heads
            )));
        }
        let d_ff = o.ff_size(cfg);
        if d_ff == 0 {
            return Err(ModelError::Config("ff_size must be at least 1".into()));
        }
        let encoder = TransformerEncoderConfig::new(d, d_ff, o.num_heads, cfg.num_layers)
            .with_dropout(cfg.dropout)
            .with_norm_first(true)
            .init(device);
        // Small random positions (GPT-2's 0.02), drawn lazily like every other parameter.
        let pos_embedding = (o.positions == Positions::Learned)
            .then(|| super::normal::normal_param([dims.sequence_length, d], 0.02, device));
        // A zero query starts as mean pooling; its gradient is not zero (it is the
        // score-weighted spread of the steps), so it learns which steps to read.
        let pool_query =
            (o.pooling == Pooling::Attention).then(|| Initializer::Zeros.init([d], device));
        Ok(EncoderParts {
            encoder,
            pos_embedding,
            pool_query,
        })
    }
}

/// Position encodings `[1, seq, d]` for windows `x`, in `x`'s dtype: the learned table when
/// there is one, else the sinusoidal one.
pub(super) fn positions(learned: Option<&Param<Tensor<2>>>, x: &Tensor<3>, d: usize) -> Tensor<3> {
    let [_, seq, _] = x.dims();
    match learned {
        // The model is built for one sequence length: the window always has it.
        Some(table) => table.val().narrow(0, 0, seq).unsqueeze_dim(0),
        None => {
            let table: Tensor<3> =
                Tensor::from_data(TensorData::new(sinusoids(seq, d), [1, seq, d]), &x.device());
            // In the input's dtype, so that reduced-precision passes stay in one format.
            match x.dtype() {
                DType::F32 => table,
                dtype => table.cast(FloatDType::from(dtype)),
            }
        }
    }
}

/// Summarises encoded steps `h` `[batch, seq, d]` into `[batch, 1, d]`: attention with a
/// learned query when there is one, else the mean or the last step.
pub(super) fn pool(h: Tensor<3>, query: Option<&Param<Tensor<1>>>, mean: bool) -> Tensor<3> {
    let [_, seq, d] = h.dims();
    match query {
        Some(query) => {
            // Scaled dot-product scores of each step against the query, softmax over the
            // steps, then the weighted sum of the steps.
            let scores = h
                .clone()
                .matmul(query.val().reshape([1, d, 1]))
                .div_scalar((d as f64).sqrt());
            (h * softmax(scores, 1)).sum_dim(1)
        }
        None if mean => h.mean_dim(1),
        None => h.narrow(1, seq.saturating_sub(1), 1),
    }
}

/// The sinusoidal position table `[len, d]` of "Attention is all you need": even columns
/// `sin(pos / 10000^(2i/d))`, odd columns the matching cosine. Any `d`, odd included.
fn sinusoids(len: usize, d: usize) -> Vec<f32> {
    let mut table = Vec::with_capacity(len * d);
    for pos in 0..len {
        for col in 0..d {
            let even = (col - col % 2) as f64;
            let angle = pos as f64 / libm::pow(10_000f64, even / d as f64);
            let v = if col % 2 == 0 {
                libm::sin(angle)
            } else {
                libm::cos(angle)
            };
            table.push(v as f32);
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sinusoid_table_matches_the_formula() {
        let t = sinusoids(3, 4);
        assert_eq!(&t[..4], &[0.0, 1.0, 0.0, 1.0]);
        assert!((t[4] - libm::sinf(1f32)).abs() < 1e-7);
        assert!((t[7] - libm::cos(1.0f64 / 100.0) as f32).abs() < 1e-7);
    }

    /// flex's GELU, its gradient and exp are the vectorised ones of `vendor/burn-flex`
    /// (ARCHITECTURE.md): accurate against f64 references, saturating and overflowing like
    /// IEEE, and the same bits whether computed in place or on a copy.
    #[test]
    fn vendored_gelu_and_exp_are_accurate() {
        use burn::tensor::activation::gelu;
        let device = Device::flex().autodiff();
        let xs: Vec<f32> = (-2400..=2400).map(|i| i as f32 * 0.005).collect();
        let n = xs.len();
        let x: Tensor<1> = Tensor::from_data(TensorData::new(xs.clone(), [n]), &device);
        let x = x.require_grad();
        let y = gelu(x.clone());
        let grads = y.clone().sum().backward();
        let dy = x
            .grad(&grads)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let y = y.into_data().try_to_vec::<f32>().unwrap();
        let phi = |x: f64| 0.5 * libm::erfc(-x / std::f64::consts::SQRT_2);
        for (i, &x) in xs.iter().enumerate() {
            let x64 = x as f64;
            let want = x64 * phi(x64);
            let want_grad =
                phi(x64) + x64 * libm::exp(-0.5 * x64 * x64) / (2.0 * std::f64::consts::PI).sqrt();
            assert!(
                (y[i] as f64 - want).abs() <= 1e-6 * want.abs() + 1e-7,
                "gelu({x}) = {}, not {want}",
                y[i]
            );
            assert!(
                (dy[i] as f64 - want_grad).abs() <= 1e-6 * want_grad.abs() + 1e-7,
                "gelu'({x}) = {}, not {want_grad}",
                dy[i]
            );
        }
        let plain = Device::flex();
        let e: Vec<f32> = (-1100..=1000).map(|i| i as f32 * 0.1).collect();
        let t: Tensor<1> = Tensor::from_data(TensorData::new(e.clone(), [e.len()]), &plain);
        let kept = t.clone();
        let shared = kept.clone().exp().into_data().try_to_vec::<f32>().unwrap();
        let in_place = t.exp().into_data().try_to_vec::<f32>().unwrap();
        drop(kept);
        for (i, &x) in e.iter().enumerate() {
            let want = libm::exp(x as f64);
            let got = in_place[i] as f64;
            if x > 88.722_84 {
                assert_eq!(got, f64::INFINITY, "exp({x})");
            } else {
                // Relative accuracy, down through the subnormals (whose spacing is 2^-149).
                let subnormal_ulp = f64::from(f32::from_bits(1));
                assert!(
                    (got - want).abs() <= 3e-7 * want + subnormal_ulp,
                    "exp({x}) = {got}, not {want}"
                );
            }
            assert_eq!(
                in_place[i].to_bits(),
                shared[i].to_bits(),
                "exp({x}): shared"
            );
        }
        // A strided view (a transpose) gets the same values as its contiguous copy.
        let grid: Tensor<2> =
            Tensor::from_data(TensorData::new(e[..2100].to_vec(), [30, 70]), &plain);
        let strided = grid.clone().transpose().exp().into_data();
        let copied = grid.exp().transpose().into_data();
        assert_eq!(strided, copied, "exp of a strided view");
        let tiny: Tensor<1> = Tensor::from_data(TensorData::new(vec![-104.0f32], [1]), &plain);
        assert_eq!(tiny.exp().into_data().try_to_vec::<f32>().unwrap()[0], 0.0);
        let nan: Tensor<1> = Tensor::from_data(TensorData::new(vec![f32::NAN], [1]), &plain);
        assert!(nan.exp().into_data().try_to_vec::<f32>().unwrap()[0].is_nan());
    }
}
