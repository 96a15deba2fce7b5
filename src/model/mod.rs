//! Models: the registry, the contract every architecture meets, and weights blobs.
//!
//! A model maps a window `[batch, sequence_length, features]` to a [`Forecast`]: predicted
//! returns `[batch, horizon]` (in units of the train-split standard deviation of each horizon)
//! and action logits `[batch, 3]` (buy, hold, sell). An architecture is one file with a
//! `build` function plus one line in [`MODELS`]. Training and evaluation see a model only
//! through [`Net`], an object-safe view of a burn module, so they have no per-model code.
//!
//! Weights are burn "burnpack" module records. Parameter ids are derived from module paths
//! (burn draws them from OS entropy), so the same weights always give the same bytes.

mod blob;
pub mod dit;
mod encoder;
pub mod gru;
mod heads;
pub mod lstm;
mod lstm_fused;
pub mod mlp;
pub mod transformer;

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device, FloatDType, Gradients, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::config::ModelConfig;
use crate::data::{Dataset, Split};

pub(crate) use blob::{decode as decode_blob, encode as encode_blob};
pub use heads::Heads;

/// A model's builder: hyper-parameters, dataset shapes and device in, the model out with its
/// parameters still lazy (initialised or loaded by [`build`] and [`load`]).
pub type BuildFn = fn(&ModelConfig, Dims, &Device) -> Result<Box<dyn Net>, ModelError>;

/// One registry entry.
pub struct ModelSpec {
    /// The `model.type` value that selects it.
    pub name: &'static str,
    pub build: BuildFn,
}

impl ModelSpec {
    const fn new(name: &'static str, build: BuildFn) -> Self {
        ModelSpec { name, build }
    }
}

/// The registry: `model.type` -> builder.
pub const MODELS: &[ModelSpec] = &[
    ModelSpec::new("mlp", mlp::build),
    ModelSpec::new("lstm", lstm::build),
    ModelSpec::new("gru", gru::build),
    ModelSpec::new("transformer", transformer::build),
    ModelSpec::new("dit", dit::build),
];

/// Names accepted by `model.type`, in registry order.
pub const MODEL_NAMES: &[&str] = &{
    let mut names = [""; MODELS.len()];
    let mut i = 0;
    while i < MODELS.len() {
        names[i] = MODELS[i].name;
        i += 1;
    }
    names
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
        ("x", split.x.len(), n.checked_mul(dims.window_len())),
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
    let mut x = Vec::with_capacity(indices.len() * w);
    for &i in indices {
        x.extend_from_slice(&split.x[i * w..(i + 1) * w]);
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

/// Looks a model type up in the registry.
pub fn spec(kind: &str) -> Result<&'static ModelSpec, ModelError> {
    MODELS
        .iter()
        .find(|m| m.name == kind)
        .ok_or_else(|| ModelError::UnknownModel(kind.to_string()))
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
    // A panic while holding the lock leaves nothing to repair: every user re-seeds.
    RNG_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Tracks the module path during a traversal.
#[derive(Default)]
struct PathStack(Vec<String>);

impl PathStack {
    fn enter(&mut self, name: &str) {
        self.0.push(name.to_string());
    }
    fn exit(&mut self) {
        self.0.pop();
    }
    fn path(&self) -> String {
        self.0.join(".")
    }
}

/// Sets each parameter's id from a hash of its module path.
#[derive(Default)]
struct PathIds(PathStack);

impl ModuleMapper for PathIds {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.0.enter(name);
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.0.exit();
    }
    fn map_float<const D: usize>(&mut self, mut param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.id = path_id(&self.0.path());
        param
    }
}

fn path_id(path: &str) -> ParamId {
    let hash = blake3::hash(path.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_bytes()[..8]);
    ParamId::from(u64::from_le_bytes(first))
}

/// Reads every float parameter, which initialises lazy ones.
struct ForceInit;

impl ModuleVisitor for ForceInit {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let _ = param.val();
    }
}

#[derive(Default)]
struct FiniteCheck {
    path: PathStack,
    first_bad: Option<String>,
}

impl ModuleVisitor for FiniteCheck {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.enter(name);
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.exit();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if self.first_bad.is_none() && !param.val().is_finite().all().into_scalar::<bool>() {
            self.first_bad = Some(self.path.path());
        }
    }
}

/// Casts every parameter to a float dtype, keeping its id and whether it is trainable.
struct CastParams(FloatDType);

impl ModuleMapper for CastParams {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, value, mapper) = param.consume();
        let tracked = value.is_autodiff();
        let require_grad = value.is_require_grad();
        let cast = value.inner().cast(self.0);
        let value = if tracked {
            let value = Tensor::from_inner(cast);
            if require_grad {
                value.require_grad()
            } else {
                value
            }
        } else {
            cast
        };
        Param::from_mapped_value(id, value, mapper)
    }
}

/// Converts gradients to a dtype and scales them, parameter by parameter.
struct CastGradients<'a> {
    grads: &'a mut GradientsParams,
    dtype: FloatDType,
    scale: f64,
}

impl ModuleVisitor for CastGradients<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = self.grads.remove::<D>(param.id) {
            let mut grad = grad.cast(self.dtype);
            if self.scale != 1.0 {
                grad = grad.mul_scalar(self.scale);
            }
            self.grads.register(param.id, grad);
        }
    }
}

/// Collects detached, flattened parameter values by id.
#[derive(Default)]
struct FlatParams(HashMap<ParamId, Tensor<1>>);

impl ModuleVisitor for FlatParams {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val().inner();
        let n = value.shape().num_elements();
        self.0.insert(param.id, value.reshape([n]));
    }
}

/// One step of an exponential moving average towards `raw`'s values.
struct Ema {
    raw: HashMap<ParamId, Tensor<1>>,
    decay: f64,
}

impl ModuleMapper for Ema {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(raw) = self.raw.remove(&param.id) else {
            return param;
        };
        let decay = self.decay;
        param.map(|ema| {
            let dims = ema.dims();
            if raw.dims()[0] != ema.shape().num_elements() {
                return ema;
            }
            ema.mul_scalar(decay) + raw.reshape(dims).mul_scalar(1.0 - decay)
        })
    }
}

#[derive(Default)]
struct ParamLister {
    path: PathStack,
    params: Vec<ParamMeta>,
}

impl ModuleVisitor for ParamLister {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.enter(name);
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.exit();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.params.push(ParamMeta {
            id: param.id,
            path: self.path.path(),
            rank: D,
            shape: param.val().dims().to_vec(),
        });
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

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
        ModelConfig {
            kind: kind.to_string(),
            hidden_size: 8,
            num_layers: 2,
            dropout: 0.1,
            num_heads: 2,
            ff_size: None,
            pooling: crate::config::Pooling::Last,
            positions: crate::config::sections::Positions::Sinusoidal,
            // Few samples and steps keep the tests fast; the defaults are checked in `dit`.
            dit: (kind == "dit").then_some(crate::config::sections::DitOptions {
                diffusion_steps: 50,
                sampling_steps: 5,
                samples: 4,
                seed: 0,
            }),
        }
    }

    /// Every registered model, plus the transformer's non-default pooling and positions.
    pub(crate) fn variants() -> Vec<ModelConfig> {
        use crate::config::sections::Positions;
        let mut all: Vec<ModelConfig> = MODEL_NAMES.iter().map(|k| cfg(k)).collect();
        all.push(ModelConfig {
            pooling: crate::config::Pooling::Attention,
            positions: Positions::Learned,
            ..cfg("transformer")
        });
        all.push(ModelConfig {
            pooling: crate::config::Pooling::Mean,
            ..cfg("transformer")
        });
        all
    }

    /// A short name for test messages.
    pub(crate) fn label(c: &ModelConfig) -> String {
        if c.kind == "transformer" {
            format!("transformer/{:?}/{:?}", c.pooling, c.positions)
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
    fn registry_names_match_the_config_list() {
        let names: Vec<&str> = MODELS.iter().map(|m| m.name).collect();
        assert_eq!(names, MODEL_NAMES);
    }

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
        let mut c = cfg("transformer");
        c.num_heads = 3;
        assert!(init_weights(&c, 1, 3, 5, 2).is_err());
        assert!(init_weights(&cfg("gruu"), 1, 3, 5, 2).is_err());
        assert!(init_weights(&cfg("mlp"), 1, 0, 5, 2).is_err());
        let mut c = cfg("mlp");
        c.dropout = 1.0;
        assert!(init_weights(&c, 1, 3, 5, 2).is_err());
        assert!(read_weights(b"garbage").is_err());
    }
}
