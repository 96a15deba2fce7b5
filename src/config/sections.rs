//! The config sections read by the training stages: `model`, `optimizer`, `training`,
//! `evaluation`. Each type holds its documented defaults and its own range checks, which
//! return the offending key path and a message (the loader adds file and position).
//!
//! Settings that only one optimizer (or learning-rate schedule) reads live in a sub-section
//! named after it (`optimizer.muon`, `training.one_cycle`); the few shared ones are flat.
//! A setting the selected type does not read is an error naming the key, never silently
//! ignored: optional keys are `Option`s so that "given" and "defaulted" stay apart, and
//! `key_value()` hashes exactly what the selected type reads, defaults filled in.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::unknown_name;

/// A failed check: (key path, message).
pub type Invalid = (String, String);

fn fail<T>(key: &str, message: impl Into<String>) -> Result<T, Invalid> {
    Err((key.to_string(), message.into()))
}

/// `Ok` when `v` is finite and in `[lo, hi)`.
fn check_unit(key: &str, v: f64) -> Result<(), Invalid> {
    if v.is_finite() && (0.0..1.0).contains(&v) {
        Ok(())
    } else {
        fail(key, format!("must be in [0, 1) (got {v})"))
    }
}

fn check_positive(key: &str, v: f64) -> Result<(), Invalid> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        fail(key, format!("must be a positive number (got {v})"))
    }
}

// ---------------------------------------------------------------------------------------
// model

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Registry name: `mlp`, `lstm`, `gru`, `transformer`, ... Default `lstm`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Width of hidden layers / model dimension. Default 64.
    pub hidden_size: usize,
    /// Stacked layers. Default 2.
    pub num_layers: usize,
    /// Default 0.1.
    pub dropout: f64,
    /// Attention heads (transformer). Default 4.
    pub num_heads: usize,
    /// Feed-forward width (transformer). Default: 4 * hidden_size.
    pub ff_size: Option<usize>,
    /// How the transformer summarises the sequence: `last`, `mean` or `attention` (a learned
    /// query attends over the steps). Default `last`.
    pub pooling: Pooling,
    /// Transformer position encoding: `sinusoidal` (fixed) or `learned` (one trained vector
    /// per step of the window). Default `sinusoidal`.
    pub positions: Positions,
    /// Settings of the diffusion forecaster (`type: dit`); its context encoder and denoiser
    /// also read `hidden_size`, `num_layers`, `num_heads`, `ff_size`, `dropout`, and the
    /// encoder `pooling` and `positions`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dit: Option<DitOptions>,
}

/// `model.dit`.
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

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            kind: "lstm".to_string(),
            hidden_size: 64,
            num_layers: 2,
            dropout: 0.1,
            num_heads: 4,
            ff_size: None,
            pooling: Pooling::Last,
            positions: Positions::Sinusoidal,
            dit: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    Last,
    Mean,
    Attention,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Positions {
    Sinusoidal,
    Learned,
}

impl ModelConfig {
    /// `dit` with its defaults.
    pub fn dit(&self) -> DitOptions {
        self.dit.clone().unwrap_or_default()
    }

    /// Whether this type has attention heads (and so reads `num_heads`, `ff_size`,
    /// `pooling` and `positions`).
    pub fn is_attention(&self) -> bool {
        matches!(self.kind.as_str(), "transformer" | "dit")
    }

    pub fn validate(&self) -> Result<(), Invalid> {
        let models = crate::model::MODEL_NAMES;
        if !models.contains(&self.kind.as_str()) {
            return fail("model.type", unknown_name("model type", &self.kind, models));
        }
        if self.hidden_size == 0 {
            return fail("model.hidden_size", "must be at least 1");
        }
        if self.num_layers == 0 {
            return fail("model.num_layers", "must be at least 1");
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return fail(
                "model.dropout",
                format!("must be in [0, 1) (got {})", self.dropout),
            );
        }
        if self.is_attention()
            && (self.num_heads == 0 || !self.hidden_size.is_multiple_of(self.num_heads))
        {
            return fail(
                "model.num_heads",
                format!(
                    "must divide hidden_size ({} is not a multiple of {})",
                    self.hidden_size, self.num_heads
                ),
            );
        }
        if self.ff_size == Some(0) {
            return fail("model.ff_size", "must be at least 1");
        }
        if self.kind == "dit" {
            let o = self.dit();
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
        }
        Ok(())
    }

    /// The settings that matter for this `type`, as hashed into stage keys: a transformer's
    /// `num_heads` is not an LSTM's business, so changing it must not re-run an LSTM.
    pub fn key_value(&self) -> serde_json::Value {
        let mut v = json!({
            "type": self.kind,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "dropout": self.dropout,
        });
        if self.is_attention() {
            v["num_heads"] = json!(self.num_heads);
            v["ff_size"] = json!(self.ff_size.unwrap_or(4 * self.hidden_size));
            v["pooling"] = json!(self.pooling);
            // Added after the first release: the old default is left out so that existing
            // transformer keys (and caches) stay valid.
            if self.positions != Positions::Sinusoidal {
                v["positions"] = json!(self.positions);
            }
        }
        if self.kind == "dit" {
            v["dit"] = json!(self.dit());
        }
        v
    }
}

// ---------------------------------------------------------------------------------------
// optimizer

/// AdamW moment decay rates when `optimizer.betas` is not given.
pub const DEFAULT_BETAS: [f64; 2] = [0.9, 0.999];
/// AdamW denominator epsilon when `optimizer.eps` is not given.
pub const DEFAULT_EPS: f64 = 1e-8;

/// Optimizers whose update uses AdamW moments (`betas`, `eps`): AdamW itself, and Muon and
/// Shampoo for the parameters they leave to AdamW (and Shampoo's grafting).
const READS_ADAM_MOMENTS: &[&str] = &["adamw", "muon", "shampoo"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimizerConfig {
    /// Registry name: `adamw`, `sgd`, `lion`, `adafactor`, `muon`, `shampoo`. Default `adamw`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Peak learning rate (the schedule scales it). Default 1e-3.
    pub lr: f64,
    /// Weight decay, never applied to biases and norms (rank-1 parameters). Decoupled
    /// (`w -= lr * weight_decay * w`) for every optimizer except `sgd`, where it is the L2
    /// penalty added to the gradient, as in PyTorch's SGD. Default 0.01.
    pub weight_decay: f64,
    /// AdamW moment decay rates; read by `adamw`, and by `muon` and `shampoo` for their
    /// AdamW parts. Default [0.9, 0.999].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub betas: Option<[f64; 2]>,
    /// AdamW denominator epsilon; read where `betas` is. Default 1e-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eps: Option<f64>,
    /// Settings of `type: sgd`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sgd: Option<SgdOptions>,
    /// Settings of `type: lion`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lion: Option<LionOptions>,
    /// Settings of `type: adafactor`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adafactor: Option<AdafactorOptions>,
    /// Settings of `type: muon`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub muon: Option<MuonOptions>,
    /// Settings of `type: shampoo`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shampoo: Option<ShampooOptions>,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig {
            kind: "adamw".to_string(),
            lr: 1e-3,
            weight_decay: 0.01,
            betas: None,
            eps: None,
            sgd: None,
            lion: None,
            adafactor: None,
            muon: None,
            shampoo: None,
        }
    }
}

/// `optimizer.sgd`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SgdOptions {
    /// Heavy-ball momentum (no dampening); 0 is plain SGD. Default 0.9.
    pub momentum: f64,
    /// Nesterov momentum; needs `momentum` > 0. Default false.
    pub nesterov: bool,
}

impl Default for SgdOptions {
    fn default() -> Self {
        SgdOptions {
            momentum: 0.9,
            nesterov: false,
        }
    }
}

/// `optimizer.lion` (Chen et al., 2023: "Symbolic discovery of optimization algorithms").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LionOptions {
    /// Interpolation rate of the update (`betas[0]`) and decay of the momentum (`betas[1]`).
    /// Default [0.9, 0.99].
    pub betas: [f64; 2],
}

impl Default for LionOptions {
    fn default() -> Self {
        LionOptions { betas: [0.9, 0.99] }
    }
}

/// `optimizer.adafactor` (Shazeer & Stern, 2018), burn's implementation: factored second
/// moments for matrices, update clipping, optional relative step size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdafactorOptions {
    /// Second-moment decay exponent: step t weighs new statistics by t^decay_rate.
    /// Negative. Default -0.8.
    pub decay_rate: f64,
    /// Updates are scaled down to an RMS of at most this. Default 1.0.
    pub clip_threshold: f64,
    /// Scale each update by the parameter's RMS (the paper's relative updates). Default
    /// false, so that `lr` means what it means for the other optimizers.
    pub scale_parameter: bool,
    /// Cap the step size at 1/sqrt(t) as well as the scheduled `lr`. Default false.
    pub relative_step: bool,
}

impl Default for AdafactorOptions {
    fn default() -> Self {
        AdafactorOptions {
            decay_rate: -0.8,
            clip_threshold: 1.0,
            scale_parameter: false,
            relative_step: false,
        }
    }
}

/// How Muon scales its orthogonalised update per matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MuonLrAdjust {
    /// `0.2 * sqrt(max(rows, cols))`: the update's RMS matches AdamW's, so one `lr` suits
    /// both groups (Liu et al., 2025, "Muon is scalable for LLM training").
    MatchRmsAdamw,
    /// `sqrt(max(1, rows / cols))` on burn's `[d_in, d_out]` weights (Jordan et al., 2024);
    /// wants a much larger `lr` (about 0.02) than AdamW.
    Original,
}

/// `optimizer.muon`: Muon (momentum, then Newton-Schulz orthogonalisation) on the 2-D weight
/// matrices of the body; AdamW on everything else (biases, norms, embeddings, heads).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MuonOptions {
    /// Default 0.95.
    pub momentum: f64,
    /// Default true.
    pub nesterov: bool,
    /// Newton-Schulz iterations. Default 5.
    pub ns_steps: usize,
    /// Peak learning rate of the AdamW group (scheduled like `lr`). Default: `optimizer.lr`.
    pub adamw_lr: Option<f64>,
    /// Default `match_rms_adamw`.
    pub adjust_lr: MuonLrAdjust,
}

impl Default for MuonOptions {
    fn default() -> Self {
        MuonOptions {
            momentum: 0.95,
            nesterov: true,
            ns_steps: 5,
            adamw_lr: None,
            adjust_lr: MuonLrAdjust::MatchRmsAdamw,
        }
    }
}

/// `optimizer.shampoo` (Gupta et al., 2018), with AdamW grafting (Agarwal et al., 2020).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShampooOptions {
    /// Momentum of the grafted update. Default 0.9.
    pub momentum: f64,
    /// Decay of the statistics `L = b2 L + (1 - b2) G G^T` (and `R`). Default 0.999.
    pub beta2: f64,
    /// Damping added to the statistics' eigenvalues before the inverse fourth root, relative
    /// to the largest eigenvalue. Default 1e-6.
    pub epsilon: f64,
    /// Recompute the inverse roots every this many steps (and at the first). Default 10.
    pub precondition_every: usize,
    /// Weights with a dimension above this use AdamW instead. Default 1024.
    pub max_precond_dim: usize,
}

impl Default for ShampooOptions {
    fn default() -> Self {
        ShampooOptions {
            momentum: 0.9,
            beta2: 0.999,
            epsilon: 1e-6,
            precondition_every: 10,
            max_precond_dim: 1024,
        }
    }
}

impl OptimizerConfig {
    /// `betas` with its default.
    pub fn betas(&self) -> [f64; 2] {
        self.betas.unwrap_or(DEFAULT_BETAS)
    }

    /// `eps` with its default.
    pub fn eps(&self) -> f64 {
        self.eps.unwrap_or(DEFAULT_EPS)
    }

    pub fn sgd(&self) -> SgdOptions {
        self.sgd.clone().unwrap_or_default()
    }

    pub fn lion(&self) -> LionOptions {
        self.lion.clone().unwrap_or_default()
    }

    pub fn adafactor(&self) -> AdafactorOptions {
        self.adafactor.clone().unwrap_or_default()
    }

    pub fn muon(&self) -> MuonOptions {
        self.muon.clone().unwrap_or_default()
    }

    pub fn shampoo(&self) -> ShampooOptions {
        self.shampoo.clone().unwrap_or_default()
    }

    /// Muon's AdamW-group peak learning rate, with its default.
    pub fn muon_adamw_lr(&self) -> f64 {
        self.muon().adamw_lr.unwrap_or(self.lr)
    }

    /// What the `train` key hashes: the settings this optimizer type reads, defaults filled
    /// in. For `adamw` this is exactly the pre-registry form, so existing keys stay valid.
    pub fn key_value(&self) -> serde_json::Value {
        let mut v = json!({
            "type": self.kind,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
        });
        if READS_ADAM_MOMENTS.contains(&self.kind.as_str()) {
            v["betas"] = json!(self.betas());
            v["eps"] = json!(self.eps());
        }
        match self.kind.as_str() {
            "sgd" => v["sgd"] = json!(self.sgd()),
            "lion" => v["lion"] = json!(self.lion()),
            "adafactor" => v["adafactor"] = json!(self.adafactor()),
            "muon" => {
                let mut muon = self.muon();
                muon.adamw_lr = Some(self.muon_adamw_lr());
                v["muon"] = json!(muon);
            }
            "shampoo" => v["shampoo"] = json!(self.shampoo()),
            _ => {}
        }
        v
    }

    pub fn validate(&self) -> Result<(), Invalid> {
        let optimizers = crate::optim::OPTIMIZER_NAMES;
        let kind = self.kind.as_str();
        if !optimizers.contains(&kind) {
            return fail(
                "optimizer.type",
                unknown_name("optimizer", &self.kind, optimizers),
            );
        }
        check_positive("optimizer.lr", self.lr)?;
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return fail("optimizer.weight_decay", "must be >= 0");
        }
        self.check_ownership()?;
        for (i, b) in self.betas().iter().enumerate() {
            check_unit(&format!("optimizer.betas[{i}]"), *b)?;
        }
        check_positive("optimizer.eps", self.eps())?;
        match kind {
            "sgd" => {
                let o = self.sgd();
                check_unit("optimizer.sgd.momentum", o.momentum)?;
                if o.nesterov && o.momentum == 0.0 {
                    return fail("optimizer.sgd.nesterov", "needs a momentum above 0");
                }
            }
            "lion" => {
                for (i, b) in self.lion().betas.iter().enumerate() {
                    check_unit(&format!("optimizer.lion.betas[{i}]"), *b)?;
                }
            }
            "adafactor" => {
                let o = self.adafactor();
                if !(o.decay_rate.is_finite() && o.decay_rate < 0.0) {
                    return fail(
                        "optimizer.adafactor.decay_rate",
                        format!("must be negative (got {})", o.decay_rate),
                    );
                }
                check_positive("optimizer.adafactor.clip_threshold", o.clip_threshold)?;
            }
            "muon" => {
                let o = self.muon();
                check_unit("optimizer.muon.momentum", o.momentum)?;
                if !(1..=100).contains(&o.ns_steps) {
                    return fail("optimizer.muon.ns_steps", "must be between 1 and 100");
                }
                if let Some(lr) = o.adamw_lr {
                    check_positive("optimizer.muon.adamw_lr", lr)?;
                }
            }
            "shampoo" => {
                let o = self.shampoo();
                check_unit("optimizer.shampoo.momentum", o.momentum)?;
                check_unit("optimizer.shampoo.beta2", o.beta2)?;
                check_positive("optimizer.shampoo.epsilon", o.epsilon)?;
                if o.precondition_every == 0 {
                    return fail("optimizer.shampoo.precondition_every", "must be at least 1");
                }
                if o.max_precond_dim == 0 {
                    return fail("optimizer.shampoo.max_precond_dim", "must be at least 1");
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Every given setting must be one the selected type reads.
    fn check_ownership(&self) -> Result<(), Invalid> {
        let kind = self.kind.as_str();
        if !READS_ADAM_MOMENTS.contains(&kind) {
            let own = if kind == "lion" {
                "; lion's own are optimizer.lion.betas"
            } else {
                ""
            };
            for (key, given) in [("betas", self.betas.is_some()), ("eps", self.eps.is_some())] {
                if given {
                    return fail(
                        &format!("optimizer.{key}"),
                        format!(
                            "`{kind}` does not read {key} (adamw, muon and shampoo do){own}; \
                             remove it"
                        ),
                    );
                }
            }
        }
        let sections = [
            ("sgd", self.sgd.is_some()),
            ("lion", self.lion.is_some()),
            ("adafactor", self.adafactor.is_some()),
            ("muon", self.muon.is_some()),
            ("shampoo", self.shampoo.is_some()),
        ];
        for (name, given) in sections {
            if given && name != kind {
                return fail(
                    &format!("optimizer.{name}"),
                    format!(
                        "settings of `{name}`, but optimizer.type is `{kind}`; \
                         remove them or set type: {name}"
                    ),
                );
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// training

/// Learning-rate schedules (all count optimizer steps, not micro-batches).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// `lr` after the linear warm-up.
    Constant,
    /// Linear warm-up, then cosine decay to `lr * min_lr_ratio` at the last step.
    WarmupCosine,
    /// Linear warm-up, `lr` for `warmup_hold_cosine.hold_steps`, then cosine decay.
    WarmupHoldCosine,
    /// Cosine up from `lr / div_factor` to `lr` over `pct_start` of the run, then cosine
    /// down to `lr / (div_factor * final_div_factor)` (PyTorch's `OneCycleLR`).
    OneCycle,
    /// After the warm-up, `lr * gamma^(k)` with k the number of whole `step_size` periods.
    Step,
    /// After the warm-up, multiply by `plateau.factor` when the validation loss has not
    /// improved for `plateau.patience` epochs, down to `lr * min_lr_ratio`.
    Plateau,
}

impl Schedule {
    fn name(self) -> &'static str {
        match self {
            Schedule::Constant => "constant",
            Schedule::WarmupCosine => "warmup_cosine",
            Schedule::WarmupHoldCosine => "warmup_hold_cosine",
            Schedule::OneCycle => "one_cycle",
            Schedule::Step => "step",
            Schedule::Plateau => "plateau",
        }
    }

    /// Whether the schedule starts with `warmup_steps` of linear warm-up.
    pub fn reads_warmup(self) -> bool {
        self != Schedule::OneCycle
    }

    /// Whether the schedule has a floor of `lr * min_lr_ratio`.
    pub fn reads_min_lr_ratio(self) -> bool {
        matches!(
            self,
            Schedule::WarmupCosine | Schedule::WarmupHoldCosine | Schedule::Plateau
        )
    }
}

/// `training.warmup_hold_cosine`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HoldOptions {
    /// Steps at the peak `lr` between the warm-up and the decay. Default 100.
    pub hold_steps: usize,
}

impl Default for HoldOptions {
    fn default() -> Self {
        HoldOptions { hold_steps: 100 }
    }
}

/// `training.one_cycle`; defaults as PyTorch's `OneCycleLR`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OneCycleOptions {
    /// Share of the steps spent rising to `lr`. Default 0.3.
    pub pct_start: f64,
    /// The first step's rate is `lr / div_factor`. Default 25.
    pub div_factor: f64,
    /// The last step's rate is `lr / (div_factor * final_div_factor)`. Default 1e4.
    pub final_div_factor: f64,
}

impl Default for OneCycleOptions {
    fn default() -> Self {
        OneCycleOptions {
            pct_start: 0.3,
            div_factor: 25.0,
            final_div_factor: 1e4,
        }
    }
}

/// `training.step`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StepOptions {
    /// Optimizer steps per decay period (counted after the warm-up). Default 100.
    pub step_size: usize,
    /// Multiplier per period. Default 0.5.
    pub gamma: f64,
}

impl Default for StepOptions {
    fn default() -> Self {
        StepOptions {
            step_size: 100,
            gamma: 0.5,
        }
    }
}

/// `training.plateau`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlateauOptions {
    /// Multiplier applied on a plateau. Default 0.5.
    pub factor: f64,
    /// Epochs without improvement tolerated before reducing. Default 2.
    pub patience: usize,
    /// An improvement is a validation loss below `best * (1 - threshold)`. Default 1e-4.
    pub threshold: f64,
}

impl Default for PlateauOptions {
    fn default() -> Self {
        PlateauOptions {
            factor: 0.5,
            patience: 2,
            threshold: 1e-4,
        }
    }
}

/// `warmup_steps` when not given.
pub const DEFAULT_WARMUP_STEPS: usize = 50;
/// `min_lr_ratio` when not given.
pub const DEFAULT_MIN_LR_RATIO: f64 = 0.1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainingConfig {
    /// Passes over the train windows. Default 10.
    pub epochs: usize,
    /// Stop after this many optimizer steps, if set (overrides `epochs`).
    pub max_steps: Option<usize>,
    /// Windows per micro-batch (one forward/backward pass). Default 32.
    pub batch_size: usize,
    /// Micro-batches whose gradients are summed into one optimizer step: the effective batch
    /// is `batch_size * grad_accum_steps`. Default 1.
    pub grad_accum_steps: usize,
    /// Learning-rate schedule. Default `warmup_cosine`.
    pub schedule: Schedule,
    /// Linear warm-up steps; read by every schedule but `one_cycle`. Default 50.
    pub warmup_steps: Option<usize>,
    /// Floor of the schedule as a share of `lr`; read by `warmup_cosine`,
    /// `warmup_hold_cosine` and `plateau`. Default 0.1.
    pub min_lr_ratio: Option<f64>,
    /// Settings of `schedule: warmup_hold_cosine`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup_hold_cosine: Option<HoldOptions>,
    /// Settings of `schedule: one_cycle`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub one_cycle: Option<OneCycleOptions>,
    /// Settings of `schedule: step`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<StepOptions>,
    /// Settings of `schedule: plateau`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plateau: Option<PlateauOptions>,
    /// Clip gradients to this global norm; 0 disables. Default 1.0.
    pub grad_clip: f64,
    /// Cross-entropy label smoothing on the action head. Default 0.1.
    pub label_smoothing: f64,
    /// Weight of the price MSE beside the action cross-entropy. Default 0.5.
    pub price_weight: f64,
    /// Early stopping: stop after this many epochs without the validation loss improving by
    /// more than `min_delta`. Default: off.
    pub patience: Option<usize>,
    /// Early stopping's smallest improvement that counts; read only with `patience`.
    /// Default 0.
    pub min_delta: Option<f64>,
    /// Keep an exponential moving average of the weights with this decay, validate and
    /// evaluate on it (the checkpoint carries both). Default: off.
    pub ema_decay: Option<f64>,
    /// Where to train: `cpu` (burn's flex backend), `wgpu`, `cuda` or `cuda:N` (GPU `N`).
    /// GPU backends need a build with the cargo feature of the same name. Default `cpu`.
    pub device: String,
    /// Data-parallel training on several GPUs of one node: a count `N` (GPUs 0..N) or a list
    /// of GPU indices. Each micro-batch is split into one shard per device and the shards'
    /// gradients are averaged into one optimizer step, which equals one device with the
    /// whole batch up to float summation order. Default 1; `cpu` has one device.
    pub devices: Devices,
    /// Float format of the forward and backward passes: `f32`, `bf16` or `f16`. Reduced
    /// precision keeps f32 master weights (the optimizer and checkpoint see only those);
    /// `f16` adds dynamic loss scaling. Default `f32`.
    pub precision: Precision,
    /// Save a resumable checkpoint every this many optimizer steps, so an interrupted build
    /// resumes instead of restarting. Default off. Not in the train key: a resumed run ends
    /// bit-identical to an uninterrupted one, so it cannot change results.
    pub checkpoint_every: Option<usize>,
    /// What a Slurm job of this experiment's train (and evaluate) stage asks for
    /// (`hft build --executor slurm`). Not in any key: resources do not change outputs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
}

/// `training.resources`: what one Slurm job asks the scheduler for. Every field is
/// optional; an unset one leaves the site's default (`sbatch` without that flag).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Resources {
    /// CPU cores of the job's one task (`--cpus-per-task`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u32>,
    /// GPUs (`--gres=gpu:N`); 0 asks for none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpus: Option<u32>,
    /// Memory of the node share (`--mem`): a whole number with an optional K, M, G or T
    /// suffix (`8G`, `500M`); megabytes without one.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "text_or_whole_number"
    )]
    pub mem: Option<String>,
    /// Wall-clock limit (`--time`) in a Slurm format: `MM`, `MM:SS`, `HH:MM:SS`, `D-HH`,
    /// `D-HH:MM` or `D-HH:MM:SS`.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "text_or_whole_number"
    )]
    pub time: Option<String>,
    /// Partition (`--partition`); the cluster's default partition when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
}

/// `mem: 4096` and `time: 30` (YAML integers) mean what `"4096"` and `"30"` do.
fn text_or_whole_number<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string (`8G`, `2:00:00`) or a whole number")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
    }
    d.deserialize_any(Visitor)
}

impl Resources {
    /// Checks each value's form, so a typo fails before anything is submitted.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.cpus == Some(0) {
            return fail("training.resources.cpus", "must be at least 1");
        }
        if let Some(mem) = &self.mem {
            let digits = mem.trim_end_matches(['K', 'M', 'G', 'T', 'k', 'm', 'g', 't']);
            let suffix_len = mem.len() - digits.len();
            if digits.is_empty()
                || suffix_len > 1
                || !digits.bytes().all(|b| b.is_ascii_digit())
                || digits.bytes().all(|b| b == b'0')
            {
                return fail(
                    "training.resources.mem",
                    format!(
                        "`{mem}` is not a memory size; write a whole number with an optional \
                         K, M, G or T suffix (`8G`, `500M`)"
                    ),
                );
            }
        }
        if let Some(time) = &self.time
            && !is_slurm_time(time)
        {
            return fail(
                "training.resources.time",
                format!(
                    "`{time}` is not a Slurm time limit; write MM, MM:SS, HH:MM:SS, D-HH, \
                     D-HH:MM or D-HH:MM:SS (`2:00:00` is two hours)"
                ),
            );
        }
        if let Some(p) = &self.partition
            && (p.is_empty()
                || !p
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b)))
        {
            return fail(
                "training.resources.partition",
                format!("`{p}` is not a partition name (letters, digits, `_`, `-`, `.`)"),
            );
        }
        Ok(())
    }
}

/// Whether `text` is one of the time formats `sbatch --time` accepts.
fn is_slurm_time(text: &str) -> bool {
    let number = |s: &str| !s.is_empty() && s.len() <= 6 && s.bytes().all(|b| b.is_ascii_digit());
    let (days, rest) = match text.split_once('-') {
        Some((d, rest)) => (Some(d), rest),
        None => (None, text),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    // Without days: MM, MM:SS, HH:MM:SS; with them: D-HH, D-HH:MM, D-HH:MM:SS.
    parts.iter().all(|p| number(p)) && days.is_none_or(number) && (1..=3).contains(&parts.len())
}

/// `training.precision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    F32,
    Bf16,
    F16,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        }
    }
}

/// `training.devices`: how many devices train data-parallel, or which.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Devices {
    /// Devices `0..N`.
    Count(usize),
    /// These device indices, in shard order.
    List(Vec<usize>),
}

/// By hand, for an error that says what is expected (an untagged enum's says only that
/// no variant matched).
impl<'de> Deserialize<'de> for Devices {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Devices;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a device count such as 2, or a list of device indices such as [0, 2]")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Devices, E> {
                usize::try_from(n)
                    .map(Devices::Count)
                    .map_err(|_| E::custom(format!("{n} devices is too many")))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Devices, E> {
                match u64::try_from(n) {
                    Ok(n) => self.visit_u64(n),
                    Err(_) => Err(E::invalid_value(serde::de::Unexpected::Signed(n), &self)),
                }
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Devices, A::Error> {
                let mut list = Vec::new();
                while let Some(index) = seq.next_element::<usize>()? {
                    list.push(index);
                }
                Ok(Devices::List(list))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl Default for Devices {
    fn default() -> Self {
        Devices::Count(1)
    }
}

impl Devices {
    /// How many devices share each micro-batch: what changes results (float summation
    /// order), so what the train key holds; which devices they are does not.
    pub fn count(&self) -> usize {
        match self {
            Devices::Count(n) => *n,
            Devices::List(list) => list.len(),
        }
    }

    /// The device indices, in shard order.
    pub fn indices(&self) -> Vec<usize> {
        match self {
            Devices::Count(n) => (0..*n).collect(),
            Devices::List(list) => list.clone(),
        }
    }

    /// Range checks that need no hardware: at least one device, no index twice, and only
    /// device 0 (or a count of 1) where the backend has one device or names its own index.
    fn validate(&self, device: &str, backend: Backend) -> Result<(), Invalid> {
        let key = "training.devices";
        let indices = self.indices();
        if indices.is_empty() {
            return fail(
                key,
                "must be at least 1 (or a non-empty list of device indices)",
            );
        }
        if indices.len() > 1024 {
            return fail(key, "at most 1024 devices");
        }
        let mut sorted = indices.clone();
        sorted.sort_unstable();
        if let Some(pair) = sorted.windows(2).find(|w| w.first() == w.get(1)) {
            let index = pair.first().copied().unwrap_or_default();
            return fail(key, format!("lists device {index} twice"));
        }
        if *self == Devices::Count(1) {
            return Ok(());
        }
        match backend {
            Backend::Cuda(_) if device != "cuda" => fail(
                key,
                format!(
                    "training.device `{device}` names one GPU; with training.devices write \
                     `device: cuda` and list the GPUs in training.devices"
                ),
            ),
            Backend::Cpu if indices != [0] => fail(
                key,
                format!(
                    "`{device}` (burn's flex backend) has one device, so data-parallel training \
                     needs a GPU backend (training.device: wgpu or cuda); set training.devices: 1"
                ),
            ),
            Backend::Cpu | Backend::Cuda(_) | Backend::Wgpu => Ok(()),
        }
    }
}

/// A parsed `training.device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// burn's pure-Rust CPU backend (flex).
    Cpu,
    /// wgpu's default adapter (Vulkan, Metal or DirectX).
    Wgpu,
    /// CUDA GPU with this index.
    Cuda(usize),
}

impl Backend {
    /// The backend kind, without a device index: what the train key holds, since the index
    /// does not change results and the kind does.
    pub fn kind(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Wgpu => "wgpu",
            Backend::Cuda(_) => "cuda",
        }
    }

    /// Whether this build has the backend compiled in.
    pub fn compiled_in(self) -> bool {
        match self {
            Backend::Cpu => true,
            Backend::Wgpu => cfg!(feature = "wgpu"),
            Backend::Cuda(_) => cfg!(feature = "cuda"),
        }
    }

    /// Whether the backend can train in `precision` at all (a device may still lack it,
    /// which training checks when it opens the device).
    pub fn trains_in(self, precision: Precision) -> bool {
        match (self, precision) {
            // WGSL has no bf16.
            (Backend::Wgpu, Precision::Bf16) => false,
            _ => true,
        }
    }
}

impl Default for TrainingConfig {
    fn default() -> Self {
        TrainingConfig {
            epochs: 10,
            max_steps: None,
            batch_size: 32,
            grad_accum_steps: 1,
            schedule: Schedule::WarmupCosine,
            warmup_steps: None,
            min_lr_ratio: None,
            warmup_hold_cosine: None,
            one_cycle: None,
            step: None,
            plateau: None,
            grad_clip: 1.0,
            label_smoothing: 0.1,
            price_weight: 0.5,
            patience: None,
            min_delta: None,
            ema_decay: None,
            device: "cpu".to_string(),
            devices: Devices::default(),
            precision: Precision::F32,
            checkpoint_every: None,
            resources: None,
        }
    }
}

impl TrainingConfig {
    /// `warmup_steps` with its default (0 where the schedule has no warm-up).
    pub fn warmup_steps(&self) -> usize {
        if self.schedule.reads_warmup() {
            self.warmup_steps.unwrap_or(DEFAULT_WARMUP_STEPS)
        } else {
            0
        }
    }

    /// `min_lr_ratio` with its default.
    pub fn min_lr_ratio(&self) -> f64 {
        self.min_lr_ratio.unwrap_or(DEFAULT_MIN_LR_RATIO)
    }

    pub fn min_delta(&self) -> f64 {
        self.min_delta.unwrap_or(0.0)
    }

    /// Parses `device`.
    pub fn backend(&self) -> Result<Backend, Invalid> {
        let bad = || {
            (
                "training.device".to_string(),
                format!(
                    "unknown device `{}`; expected cpu, wgpu, cuda or cuda:N",
                    self.device
                ),
            )
        };
        match self.device.as_str() {
            "cpu" => Ok(Backend::Cpu),
            "wgpu" => Ok(Backend::Wgpu),
            "cuda" => Ok(Backend::Cuda(0)),
            other => match other.strip_prefix("cuda:") {
                Some(index) if !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()) => {
                    index.parse().map(Backend::Cuda).map_err(|_| bad())
                }
                _ => Err(bad()),
            },
        }
    }

    /// What the `train` key hashes: every setting the run reads, defaults filled in,
    /// schedule settings only for the selected schedule.
    pub fn key_value(&self) -> serde_json::Value {
        let mut v = json!({
            "epochs": self.epochs,
            "max_steps": self.max_steps,
            "batch_size": self.batch_size,
            "grad_accum_steps": self.grad_accum_steps,
            "schedule": self.schedule,
            "grad_clip": self.grad_clip,
            "label_smoothing": self.label_smoothing,
            "price_weight": self.price_weight,
            "patience": self.patience,
            "ema_decay": self.ema_decay,
            "device": self.backend().map_or("invalid", Backend::kind),
            "precision": self.precision,
        });
        // Only when not 1, so keys from before `devices` existed stay the same.
        if self.devices.count() != 1 {
            v["devices"] = json!(self.devices.count());
        }
        if self.schedule.reads_warmup() {
            v["warmup_steps"] = json!(self.warmup_steps());
        }
        if self.schedule.reads_min_lr_ratio() {
            v["min_lr_ratio"] = json!(self.min_lr_ratio());
        }
        if self.patience.is_some() {
            v["min_delta"] = json!(self.min_delta());
        }
        match self.schedule {
            Schedule::WarmupHoldCosine => {
                v["warmup_hold_cosine"] = json!(self.warmup_hold_cosine.clone().unwrap_or_default())
            }
            Schedule::OneCycle => {
                v["one_cycle"] = json!(self.one_cycle.clone().unwrap_or_default())
            }
            Schedule::Step => v["step"] = json!(self.step.clone().unwrap_or_default()),
            Schedule::Plateau => v["plateau"] = json!(self.plateau.clone().unwrap_or_default()),
            Schedule::Constant | Schedule::WarmupCosine => {}
        }
        v
    }

    pub fn validate(&self) -> Result<(), Invalid> {
        if self.epochs == 0 && self.max_steps.is_none() {
            return fail("training.epochs", "must be at least 1 (or set max_steps)");
        }
        if self.max_steps == Some(0) {
            return fail("training.max_steps", "must be at least 1");
        }
        if self.batch_size == 0 {
            return fail("training.batch_size", "must be at least 1");
        }
        if !(1..=1_000_000).contains(&self.grad_accum_steps) {
            return fail("training.grad_accum_steps", "must be between 1 and 1000000");
        }
        self.check_schedule()?;
        if !(self.grad_clip.is_finite() && self.grad_clip >= 0.0) {
            return fail("training.grad_clip", "must be >= 0 (0 disables clipping)");
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return fail("training.label_smoothing", "must be in [0, 1)");
        }
        if !(self.price_weight.is_finite() && self.price_weight >= 0.0) {
            return fail("training.price_weight", "must be >= 0");
        }
        if self.patience == Some(0) {
            return fail("training.patience", "must be at least 1");
        }
        if let Some(d) = self.min_delta {
            if self.patience.is_none() {
                return fail(
                    "training.min_delta",
                    "is an early-stopping setting, read only with training.patience",
                );
            }
            if !(d.is_finite() && d >= 0.0) {
                return fail("training.min_delta", "must be >= 0");
            }
        }
        if let Some(d) = self.ema_decay
            && !(d.is_finite() && d > 0.0 && d < 1.0)
        {
            return fail("training.ema_decay", "must be in (0, 1)");
        }
        let backend = self.backend()?;
        if !backend.compiled_in() {
            let kind = backend.kind();
            return fail(
                "training.device",
                format!(
                    "`{}` needs the `{kind}` backend, which this build of hft does not have; \
                     rebuild with `cargo build --release --features {kind}`",
                    self.device
                ),
            );
        }
        self.devices.validate(&self.device, backend)?;
        if !backend.trains_in(self.precision) {
            return fail(
                "training.precision",
                format!(
                    "the {} backend cannot train in {}; use f16 or f32",
                    backend.kind(),
                    self.precision.name()
                ),
            );
        }
        if let Some(r) = &self.resources {
            r.validate()?;
        }
        Ok(())
    }

    fn check_schedule(&self) -> Result<(), Invalid> {
        let s = self.schedule;
        let name = s.name();
        if self.warmup_steps.is_some() && !s.reads_warmup() {
            return fail(
                "training.warmup_steps",
                format!("schedule `{name}` does not read it (its warm-up is one_cycle.pct_start)"),
            );
        }
        if self.min_lr_ratio.is_some() && !s.reads_min_lr_ratio() {
            return fail(
                "training.min_lr_ratio",
                format!(
                    "schedule `{name}` does not read it (warmup_cosine, warmup_hold_cosine \
                     and plateau do)"
                ),
            );
        }
        if !(0.0..=1.0).contains(&self.min_lr_ratio()) {
            return fail("training.min_lr_ratio", "must be in [0, 1]");
        }
        let sections = [
            (
                Schedule::WarmupHoldCosine,
                self.warmup_hold_cosine.is_some(),
            ),
            (Schedule::OneCycle, self.one_cycle.is_some()),
            (Schedule::Step, self.step.is_some()),
            (Schedule::Plateau, self.plateau.is_some()),
        ];
        for (owner, given) in sections {
            if given && owner != s {
                let own = owner.name();
                return fail(
                    &format!("training.{own}"),
                    format!(
                        "settings of schedule `{own}`, but training.schedule is `{name}`; \
                         remove them or set schedule: {own}"
                    ),
                );
            }
        }
        if let Some(o) = &self.one_cycle {
            if !(o.pct_start > 0.0 && o.pct_start < 1.0) {
                return fail("training.one_cycle.pct_start", "must be in (0, 1)");
            }
            if !(o.div_factor.is_finite() && o.div_factor >= 1.0) {
                return fail("training.one_cycle.div_factor", "must be >= 1");
            }
            if !(o.final_div_factor.is_finite() && o.final_div_factor >= 1.0) {
                return fail("training.one_cycle.final_div_factor", "must be >= 1");
            }
        }
        if let Some(o) = &self.step {
            if o.step_size == 0 {
                return fail("training.step.step_size", "must be at least 1");
            }
            if !(o.gamma.is_finite() && o.gamma > 0.0 && o.gamma <= 1.0) {
                return fail("training.step.gamma", "must be in (0, 1]");
            }
        }
        if let Some(o) = &self.plateau {
            if !(o.factor.is_finite() && o.factor > 0.0 && o.factor < 1.0) {
                return fail("training.plateau.factor", "must be in (0, 1)");
            }
            check_unit("training.plateau.threshold", o.threshold)?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// evaluation

/// Which head drives the backtest position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// argmax of the action head: buy +1, hold 0, sell -1.
    Action,
    /// sign of the predicted next return.
    Price,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvaluationConfig {
    /// Cost per unit of position change, in basis points. Default 5.
    pub cost_bps: f64,
    /// Default `action`.
    pub signal: Signal,
}

impl Default for EvaluationConfig {
    fn default() -> Self {
        EvaluationConfig {
            cost_bps: 5.0,
            signal: Signal::Action,
        }
    }
}

impl EvaluationConfig {
    /// What the `evaluate` key hashes.
    pub fn key_value(&self) -> serde_json::Value {
        json!(self)
    }

    pub fn validate(&self) -> Result<(), Invalid> {
        if !(self.cost_bps.is_finite() && self.cost_bps >= 0.0) {
            return fail("evaluation.cost_bps", "must be >= 0");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opt(kind: &str) -> OptimizerConfig {
        OptimizerConfig {
            kind: kind.into(),
            ..OptimizerConfig::default()
        }
    }

    #[test]
    fn an_option_of_another_optimizer_is_an_error_naming_the_key() {
        let lion = OptimizerConfig {
            betas: Some([0.9, 0.99]),
            ..opt("lion")
        };
        let (key, msg) = lion.validate().unwrap_err();
        assert_eq!(key, "optimizer.betas");
        assert!(msg.contains("optimizer.lion.betas"), "{msg}");

        let sgd = OptimizerConfig {
            muon: Some(MuonOptions::default()),
            ..opt("sgd")
        };
        let (key, msg) = sgd.validate().unwrap_err();
        assert_eq!(key, "optimizer.muon");
        assert!(msg.contains("`sgd`"), "{msg}");

        let eps = OptimizerConfig {
            eps: Some(1e-6),
            ..opt("adafactor")
        };
        assert_eq!(eps.validate().unwrap_err().0, "optimizer.eps");

        // The AdamW moments are Muon's and Shampoo's too (their AdamW parts).
        for kind in ["adamw", "muon"] {
            let ok = OptimizerConfig {
                betas: Some([0.8, 0.9]),
                eps: Some(1e-6),
                ..opt(kind)
            };
            ok.validate().unwrap();
        }
    }

    #[test]
    fn optimizer_ranges_are_checked_per_type() {
        let bad = OptimizerConfig {
            sgd: Some(SgdOptions {
                momentum: 0.0,
                nesterov: true,
            }),
            ..opt("sgd")
        };
        assert_eq!(bad.validate().unwrap_err().0, "optimizer.sgd.nesterov");
        let bad = OptimizerConfig {
            lion: Some(LionOptions { betas: [0.9, 1.0] }),
            ..opt("lion")
        };
        assert_eq!(bad.validate().unwrap_err().0, "optimizer.lion.betas[1]");
        let bad = OptimizerConfig {
            muon: Some(MuonOptions {
                ns_steps: 0,
                ..MuonOptions::default()
            }),
            ..opt("muon")
        };
        assert_eq!(bad.validate().unwrap_err().0, "optimizer.muon.ns_steps");
        let bad = OptimizerConfig {
            adafactor: Some(AdafactorOptions {
                decay_rate: 0.5,
                ..AdafactorOptions::default()
            }),
            ..opt("adafactor")
        };
        assert_eq!(
            bad.validate().unwrap_err().0,
            "optimizer.adafactor.decay_rate"
        );
        let (key, msg) = opt("adamz").validate().unwrap_err();
        assert_eq!(key, "optimizer.type");
        assert!(msg.contains("did you mean `adamw`"), "{msg}");
    }

    #[test]
    fn optimizer_key_holds_what_the_type_reads_with_defaults_filled() {
        // AdamW keeps the pre-registry form.
        assert_eq!(
            opt("adamw").key_value(),
            json!({"type": "adamw", "lr": 1e-3, "weight_decay": 0.01,
                   "betas": [0.9, 0.999], "eps": 1e-8})
        );
        let lion = opt("lion").key_value();
        assert_eq!(lion["lion"]["betas"], json!([0.9, 0.99]));
        assert!(lion.get("betas").is_none() && lion.get("eps").is_none());
        // Spelling a default out does not change the key.
        let spelled = OptimizerConfig {
            lion: Some(LionOptions::default()),
            ..opt("lion")
        };
        assert_eq!(spelled.key_value(), lion);
        let muon = OptimizerConfig {
            lr: 0.02,
            ..opt("muon")
        }
        .key_value();
        assert_eq!(muon["muon"]["adamw_lr"], json!(0.02));
        assert_eq!(muon["betas"], json!([0.9, 0.999]));
    }

    fn training(schedule: Schedule) -> TrainingConfig {
        TrainingConfig {
            schedule,
            ..TrainingConfig::default()
        }
    }

    #[test]
    fn schedule_settings_belong_to_their_schedule() {
        let t = TrainingConfig {
            warmup_steps: Some(5),
            ..training(Schedule::OneCycle)
        };
        assert_eq!(t.validate().unwrap_err().0, "training.warmup_steps");
        let t = TrainingConfig {
            min_lr_ratio: Some(0.5),
            ..training(Schedule::Step)
        };
        assert_eq!(t.validate().unwrap_err().0, "training.min_lr_ratio");
        let t = TrainingConfig {
            plateau: Some(PlateauOptions::default()),
            ..training(Schedule::Step)
        };
        let (key, msg) = t.validate().unwrap_err();
        assert_eq!(key, "training.plateau");
        assert!(msg.contains("`step`"), "{msg}");
        let t = TrainingConfig {
            min_delta: Some(0.1),
            ..TrainingConfig::default()
        };
        assert_eq!(t.validate().unwrap_err().0, "training.min_delta");
        let t = TrainingConfig {
            ema_decay: Some(1.0),
            ..TrainingConfig::default()
        };
        assert_eq!(t.validate().unwrap_err().0, "training.ema_decay");
        for s in [
            Schedule::Constant,
            Schedule::WarmupCosine,
            Schedule::WarmupHoldCosine,
            Schedule::OneCycle,
            Schedule::Step,
            Schedule::Plateau,
        ] {
            training(s).validate().unwrap();
        }
    }

    #[test]
    fn training_devices_are_checked_and_only_their_count_is_keyed() {
        let on = |device: &str, devices: Devices| TrainingConfig {
            device: device.into(),
            devices,
            ..TrainingConfig::default()
        };
        // One device keeps the keys of configs from before `devices` existed.
        let one = on("cpu", Devices::Count(1));
        one.validate().unwrap();
        assert!(one.key_value().get("devices").is_none());
        assert_eq!(one.key_value(), TrainingConfig::default().key_value());
        on("cpu", Devices::List(vec![0])).validate().unwrap();
        // flex has one device: data parallel on it is a config error naming the key.
        for devices in [
            Devices::Count(2),
            Devices::List(vec![1]),
            Devices::List(vec![0, 1]),
        ] {
            let (key, msg) = on("cpu", devices).validate().unwrap_err();
            assert_eq!(key, "training.devices");
            assert!(msg.contains("one device"), "{msg}");
        }
        for (devices, why) in [
            (Devices::Count(0), "at least 1"),
            (Devices::List(vec![]), "at least 1"),
            (Devices::List(vec![0, 2, 0]), "device 0 twice"),
        ] {
            let (key, msg) = devices.validate("cuda", Backend::Cuda(0)).unwrap_err();
            assert_eq!(key, "training.devices");
            assert!(msg.contains(why), "{msg}");
        }
        // The count changes the float summation order, so it is keyed; which GPUs is not.
        let two = on("cuda", Devices::Count(2));
        let listed = on("cuda", Devices::List(vec![2, 3]));
        assert_eq!(two.key_value()["devices"], json!(2));
        assert_eq!(two.key_value(), listed.key_value());
        assert_ne!(two.key_value(), on("cuda", Devices::Count(1)).key_value());
        Devices::Count(2)
            .validate("cuda", Backend::Cuda(0))
            .unwrap();
        Devices::Count(2).validate("wgpu", Backend::Wgpu).unwrap();
        let (key, msg) = Devices::Count(2)
            .validate("cuda:1", Backend::Cuda(1))
            .unwrap_err();
        assert_eq!(key, "training.devices");
        assert!(msg.contains("device: cuda"), "{msg}");
        if cfg!(feature = "cuda") {
            two.validate().unwrap();
        } else {
            // The missing backend is reported first, under its own key.
            assert_eq!(two.validate().unwrap_err().0, "training.device");
        }
        let parsed: TrainingConfig =
            serde_json::from_value(json!({"device": "cuda", "devices": [0, 2]})).unwrap();
        assert_eq!(parsed.devices, Devices::List(vec![0, 2]));
        let parsed: TrainingConfig = serde_json::from_value(json!({"devices": 3})).unwrap();
        assert_eq!(parsed.devices, Devices::Count(3));
    }

    #[test]
    fn devices_parse_and_missing_backends_are_config_errors() {
        let on = |device: &str| TrainingConfig {
            device: device.into(),
            ..TrainingConfig::default()
        };
        assert_eq!(on("cpu").backend(), Ok(Backend::Cpu));
        assert_eq!(on("cuda").backend(), Ok(Backend::Cuda(0)));
        assert_eq!(on("cuda:3").backend(), Ok(Backend::Cuda(3)));
        for bad in ["gpu", "cuda:", "cuda:x", "cuda:-1", "CPU"] {
            let (key, msg) = on(bad).validate().unwrap_err();
            assert_eq!(key, "training.device", "{bad}");
            assert!(msg.contains("expected cpu, wgpu, cuda or cuda:N"), "{msg}");
        }
        for (device, feature) in [("wgpu", "wgpu"), ("cuda:1", "cuda")] {
            let result = on(device).validate();
            if cfg!(feature = "wgpu") && feature == "wgpu"
                || cfg!(feature = "cuda") && feature == "cuda"
            {
                result.unwrap();
            } else {
                let (key, msg) = result.unwrap_err();
                assert_eq!(key, "training.device");
                assert!(msg.contains(&format!("--features {feature}")), "{msg}");
            }
        }
        // The index is not part of the key; the kind and the precision are.
        assert_eq!(on("cuda:0").key_value(), on("cuda:1").key_value());
        assert_ne!(on("cpu").key_value(), on("cuda").key_value());
        let bf16 = TrainingConfig {
            precision: Precision::Bf16,
            ..on("cpu")
        };
        bf16.validate().unwrap();
        assert_ne!(bf16.key_value(), on("cpu").key_value());
        assert!(!Backend::Wgpu.trains_in(Precision::Bf16));
    }

    #[test]
    fn training_key_holds_only_the_selected_schedule() {
        let cosine = training(Schedule::WarmupCosine).key_value();
        assert_eq!(cosine["warmup_steps"], json!(50));
        assert_eq!(cosine["min_lr_ratio"], json!(0.1));
        assert!(cosine.get("one_cycle").is_none() && cosine.get("min_delta").is_none());
        let cycle = training(Schedule::OneCycle).key_value();
        assert!(cycle.get("warmup_steps").is_none());
        assert_eq!(cycle["one_cycle"]["pct_start"], json!(0.3));
        let stopping = TrainingConfig {
            patience: Some(3),
            ..TrainingConfig::default()
        };
        assert_eq!(stopping.key_value()["min_delta"], json!(0.0));
    }

    /// Checkpointing cannot change results (a resumed run is bit-identical), so it stays
    /// out of the train key and turning it on reuses the cache.
    #[test]
    fn checkpoint_every_is_not_in_the_train_key() {
        let on = TrainingConfig {
            checkpoint_every: Some(5),
            ..TrainingConfig::default()
        };
        assert_eq!(on.key_value(), TrainingConfig::default().key_value());
    }

    /// Where a training runs (Slurm resources) cannot change what it computes.
    #[test]
    fn resources_are_not_in_the_train_key_and_are_checked() {
        let resources = Resources {
            cpus: Some(4),
            gpus: Some(1),
            mem: Some("8G".to_string()),
            time: Some("1-02:00:00".to_string()),
            partition: Some("gpu-a100".to_string()),
        };
        let with = TrainingConfig {
            resources: Some(resources.clone()),
            ..TrainingConfig::default()
        };
        assert_eq!(with.key_value(), TrainingConfig::default().key_value());
        with.validate().unwrap();
        for time in ["30", "30:00", "2:00:00", "1-0", "1-2:30", "0:00:01"] {
            assert!(is_slurm_time(time), "{time}");
        }
        for time in ["", "1:2:3:4", "1h", "-1", "1-", "a:00", "1-2:3:4:5"] {
            assert!(!is_slurm_time(time), "{time}");
        }
        let bad = |r: Resources| r.validate().unwrap_err().0;
        let base = || resources.clone();
        assert_eq!(
            bad(Resources {
                cpus: Some(0),
                ..base()
            }),
            "training.resources.cpus"
        );
        for mem in ["", "G", "8GB", "0", "-1G", "1.5G"] {
            let r = Resources {
                mem: Some(mem.to_string()),
                ..base()
            };
            assert_eq!(bad(r), "training.resources.mem", "{mem}");
        }
        let r = Resources {
            time: Some("2h".to_string()),
            ..base()
        };
        assert_eq!(bad(r), "training.resources.time");
        let r = Resources {
            partition: Some("a b".to_string()),
            ..base()
        };
        assert_eq!(bad(r), "training.resources.partition");
    }
}
