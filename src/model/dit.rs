//! `dit`: a diffusion-transformer forecaster.
//!
//! A transformer encoder (as `transformer`'s: input projection, positions, pre-norm layers,
//! pooling) turns the window into a context vector; the action head reads it. The returns
//! are generated: a DiT denoiser (Peebles & Xie, 2023) learns to predict the noise added to
//! the future return path (in train-std units) under a DDPM cosine schedule (Nichol &
//! Dhariwal, 2021). Each path step is a token; each block is self-attention and a GELU MLP,
//! both modulated by adaLN-Zero from the context plus a timestep embedding, so every block
//! starts as the identity and the output layer at zero.
//!
//! The point forecast is a price head on the context (as every model's, its output layer
//! zero-initialised, so an untrained dit forecasts persistence), trained by squared error
//! beside the denoiser: the mean of a few sampled paths is a noisy estimate of the
//! conditional mean (its sampling noise and the samples' over-dispersion cost 10-15% of MSE
//! on a planted signal). The band is the 10% and 90% quantiles of `samples` paths drawn
//! with deterministic DDIM (η = 0) over `sampling_steps` steps, from noise generated on the
//! host from `dit.seed`: a forward pass is a pure function of its input and never touches
//! burn's RNG. Training draws timesteps and noise from burn's RNG, which the
//! trainer seeds per micro-batch, so training stays deterministic too.

use std::f64::consts::PI;

use burn::module::{Initializer, Module, Param};
use burn::nn::attention::{MultiHeadAttention, MultiHeadAttentionConfig};
use burn::nn::transformer::TransformerEncoder;
use burn::nn::{Dropout, DropoutConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::{gelu, silu};
use burn::tensor::{DType, Device, Distribution, FloatDType, Tensor, TensorData};

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::encoder::{encode, linear_rows, self_attention};
use super::heads::Heads;
use super::registry::{ModelOptions, options_of};
use super::transformer::{EncoderParts, Pooling, Positions, TransformerOptions, pool, positions};
use super::{Dims, Forecast, Forecaster, ModelError, Net, PriceTerm, TrainForecast};
use crate::config::ModelConfig;
use crate::config::options::{Invalid, Options, fail};

/// `model.dit`: the diffusion settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DitOptions {
    /// Steps T of the DDPM cosine noise schedule the denoiser is trained on. Default 100.
    pub diffusion_steps: usize,
    /// DDIM steps per sample when forecasting (evenly spaced over T). Default 10.
    pub sampling_steps: usize,
    /// Samples per forecast: the forecast is their mean, the band their 10% and 90%
    /// quantiles. Default 16.
    pub samples: usize,
    /// Seed of the sampling noise (training noise follows the experiment seed). Default 0.
    pub seed: u64,
}

impl Default for DitOptions {
    fn default() -> Self {
        DitOptions {
            diffusion_steps: 100,
            sampling_steps: 10,
            samples: 16,
            seed: 0,
        }
    }
}

/// The keys of `model:` a `dit` reads: its context encoder's (as a transformer's) and the
/// `dit:` sub-section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DitModelOptions {
    pub num_heads: usize,
    pub ff_size: Option<usize>,
    pub pooling: Pooling,
    pub positions: Positions,
    pub dit: DitOptions,
}

impl Default for DitModelOptions {
    fn default() -> Self {
        let t = TransformerOptions::default();
        DitModelOptions {
            num_heads: t.num_heads,
            ff_size: t.ff_size,
            pooling: t.pooling,
            positions: t.positions,
            dit: DitOptions::default(),
        }
    }
}

impl DitModelOptions {
    /// The encoder's options.
    pub fn encoder(&self) -> TransformerOptions {
        TransformerOptions {
            num_heads: self.num_heads,
            ff_size: self.ff_size,
            pooling: self.pooling,
            positions: self.positions,
        }
    }
}

impl ModelOptions for DitModelOptions {
    const KEYS: &'static [&'static str] = &["num_heads", "ff_size", "pooling", "positions", "dit"];

    fn validate(&self, model: &ModelConfig) -> Result<(), Invalid> {
        self.encoder().validate(model)?;
        let o = &self.dit;
        if !(1..=10_000).contains(&o.diffusion_steps) {
            return fail("model.dit.diffusion_steps", "must be between 1 and 10000");
        }
        if !(1..=o.diffusion_steps).contains(&o.sampling_steps) {
            return fail(
                "model.dit.sampling_steps",
                format!(
                    "must be between 1 and diffusion_steps ({})",
                    o.diffusion_steps
                ),
            );
        }
        if !(2..=1000).contains(&o.samples) {
            return fail(
                "model.dit.samples",
                "must be between 2 and 1000 (quantiles need two)",
            );
        }
        Ok(())
    }

    fn key_value(&self, model: &ModelConfig, key: &mut Options) {
        self.encoder().key_value(model, key);
        key.insert("dit".into(), json!(self.dit));
    }
}

/// Offset of the cosine schedule (Nichol & Dhariwal's `s`), keeping early noise levels from
/// being vanishingly small.
const COSINE_OFFSET: f64 = 0.008;
/// Floor of ᾱ at the last step (instead of clipping β at 0.999): pure noise, but a finite
/// DDIM step.
const MIN_ALPHA_BAR: f64 = 1e-5;
/// Denoised samples are clipped to this many train standard deviations, which keeps an
/// early inaccurate DDIM step from blowing up.
const CLIP: f64 = 5.0;

#[derive(Module, Debug)]
pub struct Dit {
    input: Linear,
    pos_embedding: Option<Param<Tensor<2>>>,
    encoder: TransformerEncoder,
    norm: LayerNorm,
    pool_query: Option<Param<Tensor<1>>>,
    dropout: Dropout,
    /// The price (point forecast) and action heads, as every model's.
    heads: Heads,
    denoiser: Denoiser,
    d_model: usize,
    mean_pool: bool,
    diffusion_steps: usize,
    sampling_steps: usize,
    samples: usize,
    seed: u64,
}

/// The noise predictor: path tokens, timestep embedding, adaLN-Zero blocks, output layer.
#[derive(Module, Debug)]
struct Denoiser {
    /// Each path step's value to a `d`-vector.
    path_in: Linear,
    /// Learned position of each path step `[horizon, d]`.
    path_embedding: Param<Tensor<2>>,
    time_in: Linear,
    time_out: Linear,
    blocks: Vec<DitBlock>,
    /// Final adaLN (shift, scale), zero-initialised.
    final_modulation: Linear,
    /// Zero-initialised, so the untrained model predicts zero noise.
    final_out: Linear,
    d_model: usize,
}

#[derive(Module, Debug)]
struct DitBlock {
    attention: MultiHeadAttention,
    ff_in: Linear,
    ff_out: Linear,
    /// Shift, scale and gate of the attention and MLP branches from the condition;
    /// zero-initialised (adaLN-Zero).
    modulation: Linear,
    dropout: Dropout,
}

pub fn build(cfg: &ModelConfig, dims: Dims, device: &Device) -> Result<Box<dyn Net>, ModelError> {
    let d = cfg.hidden_size;
    let options: DitModelOptions = options_of(cfg)?;
    let encoder = options.encoder();
    let o = &options.dit;
    if o.diffusion_steps == 0
        || o.sampling_steps == 0
        || o.sampling_steps > o.diffusion_steps
        || o.samples < 2
    {
        return Err(ModelError::Config(format!(
            "dit needs 1 <= sampling_steps ({}) <= diffusion_steps ({}) and samples ({}) >= 2",
            o.sampling_steps, o.diffusion_steps, o.samples
        )));
    }
    let parts = EncoderParts::new(cfg, &encoder, dims, device)?;
    let d_ff = encoder.ff_size(cfg);
    let zeros = |d_in: usize, d_out: usize| {
        LinearConfig::new(d_in, d_out)
            .with_initializer(Initializer::Zeros)
            .init(device)
    };
    let blocks = (0..cfg.num_layers)
        .map(|_| DitBlock {
            attention: MultiHeadAttentionConfig::new(d, encoder.num_heads)
                .with_dropout(cfg.dropout)
                .init(device),
            ff_in: LinearConfig::new(d, d_ff).init(device),
            ff_out: LinearConfig::new(d_ff, d).init(device),
            modulation: zeros(d, 6 * d),
            dropout: DropoutConfig::new(cfg.dropout).init(),
        })
        .collect();
    let half = (d / 2).max(1);
    let denoiser = Denoiser {
        path_in: LinearConfig::new(1, d).init(device),
        path_embedding: Initializer::Normal {
            mean: 0.0,
            std: 0.02,
        }
        .init([dims.horizon, d], device),
        time_in: LinearConfig::new(2 * half, d).init(device),
        time_out: LinearConfig::new(d, d).init(device),
        blocks,
        final_modulation: zeros(d, 2 * d),
        final_out: zeros(d, 1),
        d_model: d,
    };
    Ok(Box::new(Dit {
        input: LinearConfig::new(dims.num_features, d).init(device),
        pos_embedding: parts.pos_embedding,
        encoder: parts.encoder,
        norm: LayerNormConfig::new(d).init(device),
        pool_query: parts.pool_query,
        dropout: DropoutConfig::new(cfg.dropout).init(),
        heads: Heads::new(d, dims.horizon, device),
        denoiser,
        d_model: d,
        mean_pool: encoder.pooling == Pooling::Mean,
        diffusion_steps: o.diffusion_steps,
        sampling_steps: o.sampling_steps,
        samples: o.samples,
        seed: o.seed,
    }))
}

impl Dit {
    /// The context vector `[batch, d]` of windows `x`.
    fn encode(&self, x: Tensor<3>) -> Tensor<2> {
        let [batch, _, _] = x.dims();
        let h = linear_rows(&self.input, x.clone())
            + positions(self.pos_embedding.as_ref(), &x, self.d_model);
        let h = encode(&self.encoder, self.dropout.forward(h));
        let h = self.norm.forward(h);
        pool(h, self.pool_query.as_ref(), self.mean_pool).reshape([batch, self.d_model])
    }
}

impl Forecaster for Dit {
    fn forward(&self, x: Tensor<3>) -> Forecast {
        let context = self.encode(x);
        let point = self.heads.forward(context.clone());
        let [batch, _] = context.dims();
        let horizon = self.denoiser.path_embedding.val().dims()[0];
        let (n, total) = (self.samples, self.diffusion_steps);
        let rows = n * batch;
        let device = context.device();
        let dtype = context.dtype();
        // Sample-major: rows k*batch..(k+1)*batch are sample k of every window.
        let context = context.repeat_dim(0, n);
        let mut path = in_dtype(
            Tensor::from_data(
                TensorData::new(host_normals(self.seed, rows * horizon), [rows, horizon]),
                &device,
            ),
            dtype,
        );
        let steps = self.sampling_steps;
        for i in (1..=steps).rev() {
            let t = (i * total).div_ceil(steps);
            let t_prev = ((i - 1) * total).div_ceil(steps);
            let (ab, ab_prev) = (alpha_bar(t, total), alpha_bar(t_prev, total));
            let time = in_dtype(Tensor::full([rows], t as f64, &device), dtype);
            let eps = self.denoiser.forward(path.clone(), time, context.clone());
            let x0 = (path - eps.clone().mul_scalar((1.0 - ab).sqrt()))
                .div_scalar(ab.sqrt())
                .clamp(-CLIP, CLIP);
            path = x0.mul_scalar(ab_prev.sqrt()) + eps.mul_scalar((1.0 - ab_prev).sqrt());
        }
        let sorted = path.reshape([n, batch, horizon]).sort(0);
        Forecast {
            price: point.price,
            action: point.action,
            band: Some([quantile(&sorted, 0.1), quantile(&sorted, 0.9)]),
        }
    }

    /// The action head on the context, and the noise-prediction error at a random timestep
    /// (uniform over 1..=T) with fresh Gaussian noise, as the price term.
    fn train_forward(&self, x: Tensor<3>, y: Tensor<2>) -> TrainForecast {
        let context = self.encode(x);
        let heads = self.heads.forward(context.clone());
        let [batch, horizon] = y.dims();
        let device = y.device();
        let total = self.diffusion_steps as f64;
        let u: Tensor<2> = Tensor::random([batch, 1], Distribution::Uniform(0.0, 1.0), &device);
        let t = u
            .mul_scalar(total)
            .floor()
            .add_scalar(1.0)
            .clamp(1.0, total);
        let ab = alpha_bar_tensor(t.clone(), total);
        let noise: Tensor<2> =
            Tensor::random([batch, horizon], Distribution::Normal(0.0, 1.0), &device);
        let point_error = (to_f32(heads.price) - y.clone()).square().mean();
        let noisy = y * ab.clone().sqrt() + noise.clone() * ab.neg().add_scalar(1.0).sqrt();
        let dtype = context.dtype();
        let eps = self.denoiser.forward(
            in_dtype(noisy, dtype),
            in_dtype(t.reshape([batch]), dtype),
            context,
        );
        // The denoiser's noise-prediction error and the point forecast's squared error.
        let loss = (to_f32(eps) - noise).square().mean() + point_error;
        TrainForecast {
            action: heads.action,
            price: PriceTerm::Loss(loss),
        }
    }
}

impl Denoiser {
    /// Predicted noise `[rows, horizon]` of `path` at timesteps `t` `[rows]`, conditioned on
    /// `context` `[rows, d]`.
    fn forward(&self, path: Tensor<2>, t: Tensor<1>, context: Tensor<2>) -> Tensor<2> {
        let [rows, horizon] = path.dims();
        let d = self.d_model;
        let tokens = linear_rows(&self.path_in, path.reshape([rows, horizon, 1]))
            + self.path_embedding.val().unsqueeze_dim(0);
        let time = self
            .time_out
            .forward(silu(self.time_in.forward(timestep_embedding(
                t,
                self.time_in.weight.val().dims()[0] / 2,
            ))));
        let condition = silu(context + time);
        let mut h = tokens;
        for block in &self.blocks {
            h = block.forward(h, condition.clone());
        }
        let m = self.final_modulation.forward(condition);
        let (shift, scale) = (chunk(&m, 0, d), chunk(&m, 1, d));
        let out = linear_rows(&self.final_out, modulate(normalize(h), shift, scale));
        out.reshape([rows, horizon])
    }
}

impl DitBlock {
    fn forward(&self, h: Tensor<3>, condition: Tensor<2>) -> Tensor<3> {
        let [_, _, d] = h.dims();
        let m = self.modulation.forward(condition);
        let part = |k: usize| chunk(&m, k, d);
        let attended = self_attention(
            &self.attention,
            modulate(normalize(h.clone()), part(0), part(1)),
        );
        let h = h + part(2) * self.dropout.forward(attended);
        let fed = linear_rows(
            &self.ff_out,
            gelu(linear_rows(
                &self.ff_in,
                modulate(normalize(h.clone()), part(3), part(4)),
            )),
        );
        h + part(5) * self.dropout.forward(fed)
    }
}

/// Chunk `k` of width `d` of a modulation `[rows, n * d]`, as `[rows, 1, d]` to broadcast
/// over the tokens.
fn chunk(m: &Tensor<2>, k: usize, d: usize) -> Tensor<3> {
    m.clone().narrow(1, k * d, d).unsqueeze_dim(1)
}

/// adaLN: `x * (1 + scale) + shift`.
fn modulate(x: Tensor<3>, shift: Tensor<3>, scale: Tensor<3>) -> Tensor<3> {
    x * scale.add_scalar(1.0) + shift
}

/// Layer normalisation over the last dimension without learned affine (adaLN supplies it).
fn normalize(x: Tensor<3>) -> Tensor<3> {
    let centred = x.clone() - x.mean_dim(2);
    let var = centred.clone().square().mean_dim(2);
    centred / var.add_scalar(1e-6).sqrt()
}

/// Sinusoidal embedding `[rows, 2 * half]` of timesteps `t` `[rows]`: `sin(t f_k)` then
/// `cos(t f_k)` for frequencies `f_k = 10000^(-k / half)`.
fn timestep_embedding(t: Tensor<1>, half: usize) -> Tensor<2> {
    let [rows] = t.dims();
    let half = half.max(1);
    let freqs: Vec<f32> = (0..half)
        .map(|k| (-(10_000f64.ln()) * k as f64 / half as f64).exp() as f32)
        .collect();
    let freqs = in_dtype(
        Tensor::<2>::from_data(TensorData::new(freqs, [1, half]), &t.device()),
        t.dtype(),
    );
    let args = t.reshape([rows, 1]) * freqs;
    Tensor::cat(vec![args.clone().sin(), args.cos()], 1)
}

/// ᾱ at integer timestep `t` of `total` under the cosine schedule; 1 at `t = 0`.
pub fn alpha_bar(t: usize, total: usize) -> f64 {
    if t == 0 {
        return 1.0;
    }
    let f = |t: f64| {
        ((t / total as f64 + COSINE_OFFSET) / (1.0 + COSINE_OFFSET) * PI / 2.0)
            .cos()
            .powi(2)
    };
    (f(t as f64) / f(0.0)).clamp(MIN_ALPHA_BAR, 1.0)
}

/// [`alpha_bar`] of a tensor of (float) timesteps.
fn alpha_bar_tensor(t: Tensor<2>, total: f64) -> Tensor<2> {
    let f0 = (COSINE_OFFSET / (1.0 + COSINE_OFFSET) * PI / 2.0)
        .cos()
        .powi(2);
    t.div_scalar(total)
        .add_scalar(COSINE_OFFSET)
        .mul_scalar(PI / 2.0 / (1.0 + COSINE_OFFSET))
        .cos()
        .square()
        .div_scalar(f0)
        .clamp(MIN_ALPHA_BAR, 1.0)
}

/// Quantile `q` over dimension 0 of sorted samples `[n, batch, horizon]`, interpolating
/// linearly between order statistics (numpy's default).
fn quantile(sorted: &Tensor<3>, q: f64) -> Tensor<2> {
    let [n, batch, horizon] = sorted.dims();
    let pos = q * (n - 1) as f64;
    let lo = pos.floor() as usize;
    let frac = pos - lo as f64;
    let at = |i: usize| {
        sorted
            .clone()
            .narrow(0, i.min(n - 1), 1)
            .reshape([batch, horizon])
    };
    if frac == 0.0 {
        at(lo)
    } else {
        at(lo).mul_scalar(1.0 - frac) + at(lo + 1).mul_scalar(frac)
    }
}

fn in_dtype<const D: usize>(t: Tensor<D>, dtype: DType) -> Tensor<D> {
    if t.dtype() == dtype {
        t
    } else {
        t.cast(FloatDType::from(dtype))
    }
}

fn to_f32<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    in_dtype(t, DType::F32)
}

/// `count` standard normal draws from a splitmix64 stream seeded with `seed` (Box-Muller),
/// independent of burn's RNG.
fn host_normals(seed: u64, count: usize) -> Vec<f32> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        // 53 random bits in (0, 1].
        (((z ^ (z >> 31)) >> 11) + 1) as f64 / (1u64 << 53) as f64
    };
    let mut out = Vec::with_capacity(count + 1);
    while out.len() < count {
        let (u, v) = (next(), next());
        let r = (-2.0 * u.ln()).sqrt();
        out.push((r * (2.0 * PI * v).cos()) as f32);
        out.push((r * (2.0 * PI * v).sin()) as f32);
    }
    out.truncate(count);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_schedule_falls_from_one_to_the_floor() {
        assert_eq!(alpha_bar(0, 100), 1.0);
        let values: Vec<f64> = (0..=100).map(|t| alpha_bar(t, 100)).collect();
        assert!(
            values
                .windows(2)
                .all(|w| w[1] < w[0] || w[1] == MIN_ALPHA_BAR)
        );
        assert_eq!(values[100], MIN_ALPHA_BAR);
        // Halfway, the cosine schedule keeps about half the signal variance.
        assert!((values[50] - 0.49).abs() < 0.02, "{}", values[50]);
        // The tensor form agrees with the host form.
        let device = Device::flex();
        let t = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 50.0, 99.0], [3, 1]), &device);
        let got: Vec<f64> = alpha_bar_tensor(t, 100.0)
            .into_data()
            .iter::<f64>()
            .collect();
        for (g, t) in got.iter().zip([1, 50, 99]) {
            assert!((g - alpha_bar(t, 100)).abs() < 1e-5, "{g} at {t}");
        }
    }

    #[test]
    fn host_noise_is_seeded_standard_normal() {
        let a = host_normals(3, 20_001);
        assert_eq!(a.len(), 20_001);
        assert_eq!(a, host_normals(3, 20_001));
        assert_ne!(a[..10], host_normals(4, 10)[..]);
        let n = a.len() as f64;
        let mean = a.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = a
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n;
        assert!(
            mean.abs() < 0.03 && (var - 1.0).abs() < 0.05,
            "{mean} {var}"
        );
    }

    #[test]
    fn quantiles_interpolate_between_order_statistics() {
        let device = Device::flex();
        // Five samples of one value: 0, 1, 2, 3, 4 (sorted).
        let sorted = Tensor::<3>::from_data(
            TensorData::new(vec![0.0f32, 1.0, 2.0, 3.0, 4.0], [5, 1, 1]),
            &device,
        );
        let q = |p| f64::from(quantile(&sorted, p).into_scalar::<f32>());
        assert!((q(0.1) - 0.4).abs() < 1e-6);
        assert!((q(0.9) - 3.6).abs() < 1e-6);
        assert_eq!(q(0.5), 2.0);
    }
}
