//! Models: the registry, the contract every architecture meets, and weights blobs.
//!
//! A model maps a window `[batch, sequence_length, features]` to a [`Forecast`]: predicted
//! returns `[batch, horizon]` (in units of the train-split standard deviation of each horizon)
//! and action logits `[batch, 3]` (buy, hold, sell). An architecture is one file with a
//! `build` function and its options type plus one line in [`MODELS`] (`registry`, which
//! also owns the `model:` keys each type reads). Training and evaluation see a model only
//! through [`Net`], an object-safe view of a burn module, so they have no per-model code.
//!
//! Weights are burn "burnpack" module records. Parameter ids are derived from module paths
//! (burn draws them from OS entropy), so the same weights always give the same bytes.

mod attention_fused;
mod blob;
pub mod cost;
pub mod dit;
mod encoder;
mod fused;
pub mod gru;
mod gru_fused;
mod heads;
mod linear_fused;
pub mod lstm;
mod lstm_fused;
pub mod mlp;
mod norm_fused;
mod normal;
pub mod registry;
pub mod transformer;
mod visitors;

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use burn::module::{Module, ParamId};
use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device, FloatDType, Gradients, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::config::ModelConfig;
use crate::data::{Dataset, Split};

pub(crate) use blob::{decode as decode_blob, encode as encode_blob};
pub use heads::Heads;
use visitors::{
    CastGradients, CastParams, Ema, FiniteCheck, FlatParams, ForceInit, ParamLister, PathIds,
};

pub use registry::{
    BuildFn, MODEL_NAMES, MODELS, ModelOptions, ModelSpec, REGISTRIES, implementation_version,
    resolve_options, spec,
};

/// A model, training data or weights blob that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("unknown model type `{0}`; known: {known}", known = MODEL_NAMES.join(", "))]
    UnknownModel(String),
    #[error("invalid model: {0}")]
    Config(String),
    #[error("{0}")]
    Blob(String),
    #[error("dataset: {0}")]
    Data(String),
    /// The model would not fit in memory: the user's config, refused before allocating.
    #[error("{0}")]
    TooLarge(String),
}

/// Shapes a model is built for, fixed by the dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dims {
    pub num_features: usize,
    pub sequence_length: usize,
    pub horizon: usize,
}

impl Dims {
    /// The shapes of `dataset`'s windows.
    pub fn of(dataset: &Dataset) -> Dims {
        Dims {
            num_features: dataset.num_features(),
            sequence_length: dataset.sequence_length,
            horizon: dataset.prediction_horizon,
        }
    }

    /// Values per window.
    fn window_len(&self) -> usize {
        self.sequence_length.saturating_mul(self.num_features)
    }

    fn check(&self) -> Result<(), ModelError> {
        if self.num_features == 0 || self.sequence_length == 0 || self.horizon == 0 {
            return Err(ModelError::Config(format!(
                "features ({}), sequence_length ({}) and horizon ({}) must all be at least 1",
                self.num_features, self.sequence_length, self.horizon
            )));
        }
        Ok(())
    }
}

/// Checks that a split's arrays have the lengths its `n` and `dims` imply and that labels are
/// 0, 1 or 2, so that later indexing cannot go out of bounds.
pub fn check_split(split: &Split, dims: Dims, name: &str) -> Result<(), ModelError> {
    let n = split.n;
    let lengths = [
        ("x", split.x.value_count(), n.checked_mul(dims.window_len())),
        ("y", split.y.len(), n.checked_mul(dims.horizon)),
        ("action", split.action.len(), Some(n)),
        ("symbol", split.symbol.len(), Some(n)),
        ("timestamp", split.timestamp.len(), Some(n)),
    ];
    for (field, got, want) in lengths {
        if Some(got) != want {
            return Err(ModelError::Data(format!(
                "{name} split: `{field}` has {got} values, expected {} for {n} windows of {dims:?}",
                want.map_or("an overflowing count".to_string(), |w| w.to_string())
            )));
        }
    }
    if let Some(bad) = split.action.iter().find(|&&a| a > 2) {
        return Err(ModelError::Data(format!(
            "{name} split: action label {bad} (expected 0 buy, 1 hold, 2 sell)"
        )));
    }
    Ok(())
}

/// Windows `indices` of `split` as a `[len, sequence_length, features]` tensor.
pub fn windows(split: &Split, indices: &[usize], dims: Dims, device: &Device) -> Tensor<3> {
    let w = dims.window_len();
    let mut x = vec![0.0; indices.len() * w];
    if w > 0 {
        for (&i, out) in indices.iter().zip(x.chunks_mut(w)) {
            split.x.fill(i, out);
        }
    }
    let shape = [indices.len(), dims.sequence_length, dims.num_features];
    Tensor::from_data(TensorData::new(x, shape), device)
}

/// Windows per forward pass when only predicting (no gradients kept).
pub const INFERENCE_BATCH: usize = 256;

/// The two heads' outputs for a batch.
#[derive(Debug, Clone)]
pub struct Forecast {
    /// `[batch, horizon]`, returns divided by their train-split standard deviation.
    pub price: Tensor<2>,
    /// `[batch, 3]`: buy, hold, sell logits.
    pub action: Tensor<2>,
    /// A probabilistic forecaster's 10% and 90% quantiles of each return, in `price`'s
    /// units; `None` for point forecasters.
    pub band: Option<[Tensor<2>; 2]>,
}

/// What a training step needs from a model.
#[derive(Debug, Clone)]
pub struct TrainForecast {
    /// `[batch, 3]`: buy, hold, sell logits.
    pub action: Tensor<2>,
    pub price: PriceTerm,
}

/// How a model is trained on the returns.
#[derive(Debug, Clone)]
pub enum PriceTerm {
    /// A point forecast `[batch, horizon]`, trained by mean squared error.
    Forecast(Tensor<2>),
    /// The model's own loss on the returns (a diffusion model's noise-prediction error), a
    /// scalar weighted like the squared error.
    Loss(Tensor<1>),
}

/// What an architecture implements.
pub trait Forecaster: Module + 'static {
    /// `x`: `[batch, sequence_length, features]`.
    fn forward(&self, x: Tensor<3>) -> Forecast;

    /// The training-time outputs for windows `x` with scaled targets `y` `[batch,
    /// horizon]`: by default [`forward`](Forecaster::forward)'s point forecast; a generative
    /// model returns its own loss instead.
    fn train_forward(&self, x: Tensor<3>, y: Tensor<2>) -> TrainForecast {
        let _ = y;
        let out = Forecaster::forward(self, x);
        TrainForecast {
            action: out.action,
            price: PriceTerm::Forecast(out.price),
        }
    }
}

/// A parameter as optimizers see it: which decay and update rules apply depends on its path
/// and rank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamMeta {
    pub id: ParamId,
    /// Module path, e.g. `encoder.layers.0.mha.query.weight`.
    pub path: String,
    pub rank: usize,
    /// Dimensions, e.g. `[d_in, d_out]` for a linear layer's weight.
    pub shape: Vec<usize>,
}

/// Object-safe view of a built model: everything the trainer and evaluator do with one.
pub trait Net: Send {
    fn forward(&self, x: Tensor<3>) -> Forecast;
    /// See [`Forecaster::train_forward`].
    fn train_forward(&self, x: Tensor<3>, y: Tensor<2>) -> TrainForecast;
    /// A copy for inference: no autodiff, dropout off.
    fn inference(&self) -> Box<dyn Net>;
    /// Parameters in module order.
    fn params(&self) -> Vec<ParamMeta>;
    /// How many numbers the parameters hold, without initialising lazy ones.
    fn param_count(&self) -> usize;
    /// The path of the first parameter holding a NaN or infinity, if any.
    fn non_finite_param(&self) -> Option<String>;
    /// Gradients of this model's parameters from a backward pass.
    fn gradients(&self, grads: Gradients) -> GradientsParams;
    /// Scales `grads` so their global L2 norm is at most `max_norm` (0 disables); returns
    /// the norm before clipping.
    fn clip_grad_norm(&self, grads: &mut GradientsParams, max_norm: f64) -> f64;
    /// `sum + more`, parameter by parameter (gradient accumulation).
    fn add_gradients(&self, sum: GradientsParams, more: GradientsParams) -> GradientsParams;
    /// This model's weights moved towards `raw`'s: `decay * self + (1 - decay) * raw`, for
    /// an exponential moving average. `raw` must be the same architecture (its parameters
    /// are matched by id); parameters it lacks are left as they are.
    fn ema_step(self: Box<Self>, raw: &dyn Net, decay: f64) -> Box<dyn Net>;
    /// Every parameter's value, detached from autodiff and flattened, by id.
    fn flat_params(&self) -> HashMap<ParamId, Tensor<1>>;
    /// A copy whose parameters are `dtype` leaves with the same ids (a mixed-precision
    /// working copy of f32 master weights); trainable when this model is.
    fn cast(&self, dtype: FloatDType) -> Box<dyn Net>;
    /// `grads` converted to `dtype` and multiplied by `scale` (loss-scaling undone).
    fn cast_gradients(
        &self,
        grads: GradientsParams,
        dtype: FloatDType,
        scale: f64,
    ) -> GradientsParams;
    /// One optimizer update.
    fn step(
        self: Box<Self>,
        optim: &mut ModuleOptimizer,
        lr: f64,
        grads: GradientsParams,
    ) -> Box<dyn Net>;
    /// The weights as a burnpack record.
    fn weights(&self) -> Result<Vec<u8>, ModelError>;
    /// Replaces the weights with a burnpack record of the same architecture.
    fn load_weights(self: Box<Self>, record: &[u8]) -> Result<Box<dyn Net>, ModelError>;
    /// Gives parameters ids derived from their module paths.
    fn with_path_ids(self: Box<Self>) -> Box<dyn Net>;
    /// Initialises lazy parameters now, in module order, so the draws from the RNG do not
    /// depend on which parameter happens to be used first.
    fn init_params(&self);
}

impl<M: Forecaster> Net for M {
    fn forward(&self, x: Tensor<3>) -> Forecast {
        Forecaster::forward(self, x)
    }

    fn train_forward(&self, x: Tensor<3>, y: Tensor<2>) -> TrainForecast {
        Forecaster::train_forward(self, x, y)
    }

    fn inference(&self) -> Box<dyn Net> {
        Box::new(Module::valid(self))
    }

    fn params(&self) -> Vec<ParamMeta> {
        let mut v = ParamLister::default();
        self.visit(&mut v);
        v.params
    }

    fn param_count(&self) -> usize {
        Module::num_params(self)
    }

    fn non_finite_param(&self) -> Option<String> {
        let mut v = FiniteCheck::default();
        self.visit(&mut v);
        v.first_bad
    }

    fn gradients(&self, grads: Gradients) -> GradientsParams {
        GradientsParams::from_grads(grads, self)
    }

    fn clip_grad_norm(&self, grads: &mut GradientsParams, max_norm: f64) -> f64 {
        crate::optim::clip_grad_norm(self, grads, max_norm)
    }

    fn add_gradients(&self, sum: GradientsParams, more: GradientsParams) -> GradientsParams {
        let mut acc = GradientsAccumulator::<M>::new();
        acc.accumulate(self, sum);
        acc.accumulate(self, more);
        acc.grads()
    }

    fn ema_step(self: Box<Self>, raw: &dyn Net, decay: f64) -> Box<dyn Net> {
        let mut mapper = Ema {
            raw: raw.flat_params(),
            decay,
        };
        Box::new((*self).map(&mut mapper))
    }

    fn flat_params(&self) -> HashMap<ParamId, Tensor<1>> {
        let mut v = FlatParams::default();
        self.visit(&mut v);
        v.0
    }

    fn cast(&self, dtype: FloatDType) -> Box<dyn Net> {
        Box::new(self.clone().map(&mut CastParams(dtype)))
    }

    fn cast_gradients(
        &self,
        mut grads: GradientsParams,
        dtype: FloatDType,
        scale: f64,
    ) -> GradientsParams {
        self.visit(&mut CastGradients {
            grads: &mut grads,
            dtype,
            scale,
        });
        grads
    }

    fn step(
        self: Box<Self>,
        optim: &mut ModuleOptimizer,
        lr: f64,
        grads: GradientsParams,
    ) -> Box<dyn Net> {
        Box::new(optim.step(lr, *self, grads))
    }

    fn weights(&self) -> Result<Vec<u8>, ModelError> {
        let bytes = self
            .clone()
            .into_record()
            .into_bytes()
            .map_err(|e| ModelError::Blob(format!("cannot serialise weights: {e}")))?;
        Ok(bytes.to_vec())
    }

    fn load_weights(self: Box<Self>, record: &[u8]) -> Result<Box<dyn Net>, ModelError> {
        let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(record.to_vec()))
            .map_err(|e| ModelError::Blob(format!("weights are unreadable: {e}")))?;
        let loaded = (*self).try_load_record(record).map_err(|e| {
            ModelError::Blob(format!("weights do not fit this model configuration: {e}"))
        })?;
        Ok(Box::new(loaded))
    }

    fn with_path_ids(self: Box<Self>) -> Box<dyn Net> {
        Box::new((*self).map(&mut PathIds::default()))
    }

    fn init_params(&self) {
        self.visit(&mut ForceInit);
    }
}

/// Builds a model with fresh parameters drawn from burn's RNG seeded with `seed`.
pub fn build(
    cfg: &ModelConfig,
    dims: Dims,
    seed: u64,
    device: &Device,
) -> Result<Box<dyn Net>, ModelError> {
    let _rng = rng_lock();
    device.seed(seed);
    let net = construct(cfg, dims, device)?;
    net.init_params();
    Ok(net)
}

/// Builds a model and loads a burnpack record into it. Draws nothing from the RNG (the
/// parameters are lazy and replaced before they are ever initialised), so it is safe while
/// a training runs on another thread.
pub fn load(
    cfg: &ModelConfig,
    dims: Dims,
    record: &[u8],
    device: &Device,
) -> Result<Box<dyn Net>, ModelError> {
    construct(cfg, dims, device)?.load_weights(record)
}

/// The registry's builder behind checks of what it cannot catch itself; parameters are
/// still lazy.
fn construct(cfg: &ModelConfig, dims: Dims, device: &Device) -> Result<Box<dyn Net>, ModelError> {
    dims.check()?;
    if cfg.hidden_size == 0 || cfg.num_layers == 0 {
        return Err(ModelError::Config(
            "hidden_size and num_layers must be at least 1".into(),
        ));
    }
    if !(0.0..1.0).contains(&cfg.dropout) {
        return Err(ModelError::Config(format!(
            "dropout must be in [0, 1) (got {})",
            cfg.dropout
        )));
    }
    Ok((spec(&cfg.kind)?.build)(cfg, dims, device)?.with_path_ids())
}

/// What a weights blob says about itself, checked when it is loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightsMeta {
    pub model: String,
    pub dims: Dims,
}

impl WeightsMeta {
    /// Errors when the blob was made for another model type or dataset shape.
    pub fn expect(&self, kind: &str, dims: Dims) -> Result<(), ModelError> {
        if self.model != kind || self.dims != dims {
            return Err(ModelError::Blob(format!(
                "weights were built for a `{}` model on {:?}, but the experiment asks for `{kind}` on {dims:?}",
                self.model, self.dims
            )));
        }
        Ok(())
    }

    pub(crate) fn to_json(&self) -> Vec<u8> {
        // A string and integers: serialisation cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub(crate) fn from_json(bytes: &[u8], what: &str) -> Result<Self, ModelError> {
        serde_json::from_slice(bytes)
            .map_err(|e| ModelError::Blob(format!("{what} header is unreadable: {e}")))
    }
}

const WEIGHTS_MAGIC: &[u8; 8] = b"HFT-WGTS";

/// The `init` stage: a model's initial weights, byte-stable for the same inputs.
///
/// Blob layout: the container of `blob.rs` with magic `HFT-WGTS` and two sections, `META`
/// (JSON [`WeightsMeta`]) and `BPK ` (burnpack module record, parameters in module order).
pub fn init_weights(
    cfg: &ModelConfig,
    seed: u64,
    num_features: usize,
    sequence_length: usize,
    horizon: usize,
) -> Result<Vec<u8>, ModelError> {
    let dims = Dims {
        num_features,
        sequence_length,
        horizon,
    };
    let record = build(cfg, dims, seed, &Device::flex())?.weights()?;
    let meta = WeightsMeta {
        model: cfg.kind.clone(),
        dims,
    };
    Ok(encode_blob(
        WEIGHTS_MAGIC,
        &[(*b"META", &meta.to_json()), (*b"BPK ", &record)],
    ))
}

/// Refuses, before a parameter is allocated, a model whose training would not fit in
/// `available` bytes of memory: f32 weights, their gradients and up to three optimizer
/// states (Adam's two moments, an EMA copy), plus the activations a batch keeps for the
/// backward pass (about eight floats per hidden unit, time step and layer). The estimate is
/// rough on purpose: it tells a typo (`hidden_size: 100000000`) from a big model, and says
/// by how much.
pub fn check_fits(
    cfg: &ModelConfig,
    dims: Dims,
    batch_size: usize,
    available: u64,
) -> Result<(), ModelError> {
    let net = construct(cfg, dims, &Device::flex())?;
    let params = net.param_count() as u128;
    let weights = params * 4 * 5;
    // A transformer's feed-forward layer is its widest.
    let ff = cfg
        .options
        .get("ff_size")
        .and_then(serde_json::Value::as_u64);
    let width = (cfg.hidden_size as u128).max(ff.map_or(0, u128::from));
    let activations =
        batch_size as u128 * dims.sequence_length as u128 * width * cfg.num_layers as u128 * 8 * 4;
    let needed = weights + activations;
    if needed <= u128::from(available) {
        return Ok(());
    }
    let gib = |b: u128| b as f64 / f64::from(1u32 << 30);
    Err(ModelError::TooLarge(format!(
        "training this {} would need about {:.1} GiB ({params} parameters with their gradients \
         and optimizer state: {:.1} GiB; activations of a batch of {batch_size}: {:.1} GiB), \
         {:.0}x the {:.1} GiB of memory available; lower model.hidden_size, model.num_layers, \
         model.ff_size or training.batch_size",
        cfg.kind,
        gib(needed),
        gib(weights),
        gib(activations),
        needed as f64 / available.max(1) as f64,
        gib(u128::from(available)),
    )))
}

/// The memory this process may use: the machine's available memory (`MemAvailable` of
/// /proc/meminfo), or 16 GiB where that cannot be read.
pub fn available_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            kib.checked_mul(1024)
        })
        .unwrap_or(16 << 30)
}

/// Splits a weights blob into its header and burnpack record.
pub fn read_weights(blob: &[u8]) -> Result<(WeightsMeta, &[u8]), ModelError> {
    let sections = decode_blob(blob, WEIGHTS_MAGIC, "weights blob")?;
    let meta = WeightsMeta::from_json(sections.get(b"META")?, "weights blob")?;
    Ok((meta, sections.get(b"BPK ")?))
}

static RNG_LOCK: Mutex<()> = Mutex::new(());

/// Whether training `cfg` draws from burn's RNG: dropout above 0 (burn's dropout draws
/// nothing at 0) or the diffusion noise of `dit`.
pub(crate) fn draws_while_training(cfg: &ModelConfig) -> bool {
    cfg.dropout > 0.0 || cfg.kind == "dit"
}

/// Serialises users of burn's random number generator, which is process-global: two
/// initialisations or trainings on threads of one process would interleave their draws.
/// Held by [`build`] and for the whole of a training.
pub(crate) fn rng_lock() -> MutexGuard<'static, ()> {
    // A panic while holding the lock leaves nothing to repair: every user re-seeds. The
    // wait for another training to release it is waiting, not the stage's work.
    crate::waits::waited(|| RNG_LOCK.lock().unwrap_or_else(|e| e.into_inner()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// `f` run on a rayon pool of its own with `threads` threads (flex and the fused
    /// kernels use the current pool), for tests that results keep their bits.
    pub(crate) fn on_threads<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(f)
    }

    pub(crate) fn cfg(kind: &str) -> ModelConfig {
        let options = match kind {
            "transformer" => json!({"num_heads": 2}),
            // Few samples and steps keep the tests fast; the defaults are checked in `dit`.
            "dit" => json!({
                "num_heads": 2,
                "dit": {"diffusion_steps": 50, "sampling_steps": 5, "samples": 4, "seed": 0},
            }),
            _ => json!({}),
        };
        ModelConfig {
            kind: kind.to_string(),
            hidden_size: 8,
            num_layers: 2,
            dropout: 0.1,
            options: as_options(options),
        }
    }

    pub(crate) fn as_options(v: serde_json::Value) -> crate::config::Options {
        match v {
            serde_json::Value::Object(map) => map,
            _ => crate::config::Options::new(),
        }
    }

    /// `c` with its options `changes` merged in.
    pub(crate) fn with_options(c: &ModelConfig, changes: serde_json::Value) -> ModelConfig {
        let mut c = c.clone();
        c.options.extend(as_options(changes));
        c
    }

    /// `c` with `dit`'s default sampler (where it has `dit` settings).
    pub(crate) fn default_sampler(mut c: ModelConfig) -> ModelConfig {
        if let Some(dit) = c.options.get_mut("dit") {
            *dit = json!({});
        }
        c
    }

    /// Whether `c` pools by the mean (the transformer variant some tests skip).
    pub(crate) fn pools_mean(c: &ModelConfig) -> bool {
        c.options.get("pooling") == Some(&json!("mean"))
    }

    /// Every registered model, plus the transformer's non-default pooling and positions.
    pub(crate) fn variants() -> Vec<ModelConfig> {
        let mut all: Vec<ModelConfig> = MODEL_NAMES.iter().map(|k| cfg(k)).collect();
        let t = cfg("transformer");
        all.push(with_options(
            &t,
            json!({"pooling": "attention", "positions": "learned"}),
        ));
        all.push(with_options(&t, json!({"pooling": "mean"})));
        all
    }

    /// A short name for test messages.
    pub(crate) fn label(c: &ModelConfig) -> String {
        if c.kind == "transformer" {
            let get = |k: &str, default: &str| {
                c.options
                    .get(k)
                    .and_then(|v| v.as_str())
                    .unwrap_or(default)
                    .to_string()
            };
            format!(
                "transformer/{}/{}",
                get("pooling", "last"),
                get("positions", "sinusoidal")
            )
        } else {
            c.kind.clone()
        }
    }

    const DIMS: Dims = Dims {
        num_features: 3,
        sequence_length: 5,
        horizon: 2,
    };

    #[test]
    fn every_model_maps_windows_to_both_heads() {
        let device = Device::flex();
        for c in variants() {
            let net = build(&c, DIMS, 1, &device).unwrap();
            let out = net.forward(Tensor::zeros([4, 5, 3], &device));
            assert_eq!(out.price.dims(), [4, 2], "{}", label(&c));
            assert_eq!(out.action.dims(), [4, 3], "{}", label(&c));
        }
    }

    /// The heads' output layers start at zero: an untrained model forecasts no move (the
    /// persistence forecast) and prefers no action. `dit` forecasts by sampling, so only its
    /// action head is a plain head.
    #[test]
    fn an_untrained_model_forecasts_no_move_and_no_action() {
        let device = Device::flex();
        for c in variants() {
            let net = build(&c, DIMS, 1, &device).unwrap().inference();
            let x = Tensor::random([4, 5, 3], burn::tensor::Distribution::Default, &device);
            let out = net.forward(x);
            let zeros = |t: Tensor<2>| t.into_data().iter::<f32>().all(|v| v == 0.0);
            assert!(zeros(out.action), "{}", label(&c));
            if c.kind != "dit" {
                assert!(zeros(out.price), "{}", label(&c));
            }
        }
    }

    #[test]
    fn learned_positions_and_attention_pooling_are_parameters_of_their_own() {
        let device = Device::flex();
        let c = &variants()[MODEL_NAMES.len()];
        let params = build(c, DIMS, 1, &device).unwrap().params();
        let find = |path: &str| params.iter().find(|p| p.path == path).cloned();
        assert_eq!(find("pos_embedding").unwrap().shape, [5, 8]);
        assert_eq!(find("pool_query").unwrap().shape, [8]);
        let plain = build(&cfg("transformer"), DIMS, 1, &device)
            .unwrap()
            .params();
        assert_eq!(plain.len() + 2, params.len());
    }

    #[test]
    fn init_weights_are_byte_stable_and_seeded() {
        for m in variants() {
            let a = init_weights(&m, 1, 3, 5, 2).unwrap();
            let b = init_weights(&m, 1, 3, 5, 2).unwrap();
            let c = init_weights(&m, 2, 3, 5, 2).unwrap();
            assert_eq!(a, b, "{}", label(&m));
            assert_ne!(a, c, "{}", label(&m));
        }
    }

    #[test]
    fn weights_round_trip_and_shape_mismatch_is_an_error() {
        let device = Device::flex();
        let blob = init_weights(&cfg("lstm"), 3, 3, 5, 2).unwrap();
        let (meta, record) = read_weights(&blob).unwrap();
        meta.expect("lstm", DIMS).unwrap();
        assert!(meta.expect("mlp", DIMS).is_err());
        let net = load(&cfg("lstm"), DIMS, record, &device).unwrap();
        assert_eq!(net.weights().unwrap(), record);

        let mut wider = cfg("lstm");
        wider.hidden_size = 9;
        let err = load(&wider, DIMS, record, &device).err().unwrap();
        assert!(err.to_string().contains("do not fit"), "{err}");
    }

    #[test]
    fn loading_draws_nothing_from_the_rng() {
        let device = Device::flex();
        for m in variants() {
            let blob = init_weights(&m, 3, 3, 5, 2).unwrap();
            let (_, record) = read_weights(&blob).unwrap();
            let draw = |load_between: bool| {
                let _rng = rng_lock();
                device.seed(5);
                if load_between {
                    load(&m, DIMS, record, &device).unwrap();
                }
                Tensor::<1>::random([4], burn::tensor::Distribution::Default, &device).into_data()
            };
            assert_eq!(draw(false), draw(true), "{}", label(&m));
        }
    }

    #[test]
    fn bad_configs_are_errors_not_panics() {
        let c = with_options(&cfg("transformer"), json!({"num_heads": 3}));
        assert!(init_weights(&c, 1, 3, 5, 2).is_err());
        assert!(init_weights(&cfg("gruu"), 1, 3, 5, 2).is_err());
        assert!(init_weights(&cfg("mlp"), 1, 0, 5, 2).is_err());
        let mut c = cfg("mlp");
        c.dropout = 1.0;
        assert!(init_weights(&c, 1, 3, 5, 2).is_err());
        assert!(read_weights(b"garbage").is_err());
    }
}
