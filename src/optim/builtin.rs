//! The optimizers burn implements (AdamW, SGD, Lion, Adafactor, Muon), each with its
//! options type: what it reads from `optimizer:`, its checks and its part of the train key.
//! Separate from the registry so that a new optimizer is a file of its own beside these.

use burn::module::{ParamGroup, ParamId};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{
    AdafactorConfig, AdamWConfig, AdjustLrFn, LionConfig, ModuleOptimizer, MuonConfig, SgdConfig,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::registry::{OptimizerOptions, options_of};
use super::{OptimError, ScaledLr, with_decay_groups};
use crate::config::OptimizerConfig;
use crate::config::options::{Invalid, Options, check_positive, check_unit, fail};
use crate::model::ParamMeta;

/// AdamW moment decay rates when `optimizer.betas` is not given.
pub const DEFAULT_BETAS: [f64; 2] = [0.9, 0.999];
/// AdamW denominator epsilon when `optimizer.eps` is not given.
pub const DEFAULT_EPS: f64 = 1e-8;

/// `optimizer.betas` and `optimizer.eps`: the AdamW moments, read by `adamw`, and by `muon`
/// and `shampoo` for their AdamW parts (and Shampoo's grafting).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Moments {
    pub betas: [f64; 2],
    pub eps: f64,
}

impl Moments {
    pub fn validate(&self) -> Result<(), Invalid> {
        for (i, b) in self.betas.iter().enumerate() {
            check_unit(&format!("optimizer.betas[{i}]"), *b)?;
        }
        check_positive("optimizer.eps", self.eps)
    }

    /// burn's AdamW with these moments.
    pub fn adamw_config(&self) -> AdamWConfig {
        let [b1, b2] = self.betas;
        AdamWConfig::new()
            .with_beta_1(b1 as f32)
            .with_beta_2(b2 as f32)
            .with_epsilon(self.eps as f32)
    }
}

fn default_betas() -> [f64; 2] {
    DEFAULT_BETAS
}

fn default_eps() -> f64 {
    DEFAULT_EPS
}

/// What `adamw` reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdamwSettings {
    /// Moment decay rates. Default [0.9, 0.999].
    #[serde(default = "default_betas")]
    pub betas: [f64; 2],
    /// Denominator epsilon. Default 1e-8.
    #[serde(default = "default_eps")]
    pub eps: f64,
}

impl Default for AdamwSettings {
    fn default() -> Self {
        AdamwSettings {
            betas: DEFAULT_BETAS,
            eps: DEFAULT_EPS,
        }
    }
}

impl AdamwSettings {
    pub fn moments(&self) -> Moments {
        Moments {
            betas: self.betas,
            eps: self.eps,
        }
    }
}

impl OptimizerOptions for AdamwSettings {
    const KEYS: &'static [&'static str] = &["betas", "eps"];

    fn validate(&self, _: &OptimizerConfig) -> Result<(), Invalid> {
        self.moments().validate()
    }
}

/// What `sgd` reads: its sub-section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SgdSettings {
    pub sgd: SgdOptions,
}

impl OptimizerOptions for SgdSettings {
    const KEYS: &'static [&'static str] = &["sgd"];

    fn validate(&self, _: &OptimizerConfig) -> Result<(), Invalid> {
        let o = &self.sgd;
        check_unit("optimizer.sgd.momentum", o.momentum)?;
        if o.nesterov && o.momentum == 0.0 {
            return fail("optimizer.sgd.nesterov", "needs a momentum above 0");
        }
        Ok(())
    }
}

/// What `lion` reads: its sub-section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LionSettings {
    pub lion: LionOptions,
}

impl OptimizerOptions for LionSettings {
    const KEYS: &'static [&'static str] = &["lion"];

    fn validate(&self, _: &OptimizerConfig) -> Result<(), Invalid> {
        for (i, b) in self.lion.betas.iter().enumerate() {
            check_unit(&format!("optimizer.lion.betas[{i}]"), *b)?;
        }
        Ok(())
    }
}

/// What `adafactor` reads: its sub-section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AdafactorSettings {
    pub adafactor: AdafactorOptions,
}

impl OptimizerOptions for AdafactorSettings {
    const KEYS: &'static [&'static str] = &["adafactor"];

    fn validate(&self, _: &OptimizerConfig) -> Result<(), Invalid> {
        let o = &self.adafactor;
        if !(o.decay_rate.is_finite() && o.decay_rate < 0.0) {
            return fail(
                "optimizer.adafactor.decay_rate",
                format!("must be negative (got {})", o.decay_rate),
            );
        }
        check_positive("optimizer.adafactor.clip_threshold", o.clip_threshold)
    }
}

/// What `muon` reads: the AdamW moments (for its AdamW group) and its sub-section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MuonSettings {
    #[serde(default = "default_betas")]
    pub betas: [f64; 2],
    #[serde(default = "default_eps")]
    pub eps: f64,
    #[serde(default)]
    pub muon: MuonOptions,
}

impl Default for MuonSettings {
    fn default() -> Self {
        MuonSettings {
            betas: DEFAULT_BETAS,
            eps: DEFAULT_EPS,
            muon: MuonOptions::default(),
        }
    }
}

impl MuonSettings {
    pub fn moments(&self) -> Moments {
        Moments {
            betas: self.betas,
            eps: self.eps,
        }
    }

    /// The AdamW group's peak learning rate, with its default (`optimizer.lr`).
    pub fn adamw_lr(&self, optimizer: &OptimizerConfig) -> f64 {
        self.muon.adamw_lr.unwrap_or(optimizer.lr)
    }
}

impl OptimizerOptions for MuonSettings {
    const KEYS: &'static [&'static str] = &["betas", "eps", "muon"];

    fn validate(&self, _: &OptimizerConfig) -> Result<(), Invalid> {
        self.moments().validate()?;
        let o = &self.muon;
        check_unit("optimizer.muon.momentum", o.momentum)?;
        if !(1..=100).contains(&o.ns_steps) {
            return fail("optimizer.muon.ns_steps", "must be between 1 and 100");
        }
        if let Some(lr) = o.adamw_lr {
            check_positive("optimizer.muon.adamw_lr", lr)?;
        }
        Ok(())
    }

    fn key_value(&self, optimizer: &OptimizerConfig, key: &mut Options) {
        let mut muon = self.muon.clone();
        muon.adamw_lr = Some(self.adamw_lr(optimizer));
        key.insert("betas".into(), json!(self.betas));
        key.insert("eps".into(), json!(self.eps));
        key.insert("muon".into(), json!(muon));
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

/// AdamW, with weight decay on [`decays`](super::decays) parameters only.
pub fn adamw(cfg: &OptimizerConfig, params: &[ParamMeta]) -> Result<ModuleOptimizer, OptimError> {
    let base = options_of::<AdamwSettings>(cfg)?.moments().adamw_config();
    Ok(with_decay_groups(params, cfg.weight_decay, |wd| {
        base.clone().with_weight_decay(wd as f32).build()
    }))
}

/// SGD with heavy-ball or Nesterov momentum (no dampening, as PyTorch's default) and an L2
/// penalty as weight decay.
pub fn sgd(cfg: &OptimizerConfig, params: &[ParamMeta]) -> Result<ModuleOptimizer, OptimError> {
    let o = options_of::<SgdSettings>(cfg)?.sgd;
    let momentum = (o.momentum > 0.0).then_some(MomentumConfig {
        momentum: o.momentum,
        dampening: 0.0,
        nesterov: o.nesterov,
    });
    Ok(with_decay_groups(params, cfg.weight_decay, |wd| {
        SgdConfig::new()
            .with_momentum(momentum.clone())
            .with_weight_decay((wd > 0.0).then(|| WeightDecayConfig::new(wd as f32)))
            .build()
    }))
}

/// Lion: the sign of an interpolated momentum, with decoupled weight decay.
pub fn lion(cfg: &OptimizerConfig, params: &[ParamMeta]) -> Result<ModuleOptimizer, OptimError> {
    let [b1, b2] = options_of::<LionSettings>(cfg)?.lion.betas;
    Ok(with_decay_groups(params, cfg.weight_decay, |wd| {
        LionConfig::new()
            .with_beta_1(b1 as f32)
            .with_beta_2(b2 as f32)
            .with_weight_decay(wd as f32)
            .build()
    }))
}

/// burn's Adafactor (factored second moments for matrices), with decoupled weight decay.
pub fn adafactor(
    cfg: &OptimizerConfig,
    params: &[ParamMeta],
) -> Result<ModuleOptimizer, OptimError> {
    let o = options_of::<AdafactorSettings>(cfg)?.adafactor;
    Ok(with_decay_groups(params, cfg.weight_decay, |wd| {
        AdafactorConfig::new()
            .with_decay_rate(o.decay_rate)
            .with_clip_threshold(o.clip_threshold as f32)
            .with_scale_parameter(o.scale_parameter)
            .with_relative_step(o.relative_step)
            .with_weight_decay(wd as f32)
            .build()
    }))
}

/// Whether Muon handles this parameter: a 2-D weight of the model's body. Biases and norms
/// (rank 1), embeddings and the output heads stay with AdamW, as in Jordan et al. (2024):
/// orthogonalising a head or an embedding table is not what Muon's argument covers.
pub fn muon_handles(p: &ParamMeta) -> bool {
    p.rank == 2 && !p.path.starts_with("heads.") && !p.path.contains("embedding")
}

/// Muon on [`muon_handles`] matrices; AdamW (at `muon.adamw_lr`, scheduled like `lr`) on the
/// rest, without decay on rank-1 parameters.
pub fn muon(cfg: &OptimizerConfig, params: &[ParamMeta]) -> Result<ModuleOptimizer, OptimError> {
    let settings = options_of::<MuonSettings>(cfg)?;
    let factor = settings.adamw_lr(cfg) / cfg.lr;
    let base = settings.moments().adamw_config();
    let o = settings.muon;
    let adamw = with_decay_groups(params, cfg.weight_decay, |wd| ScaledLr {
        inner: base.clone().with_weight_decay(wd as f32).build(),
        factor,
    });
    let matrices: Vec<ParamId> = params
        .iter()
        .filter(|p| muon_handles(p))
        .map(|p| p.id)
        .collect();
    let muon = MuonConfig::new()
        .with_momentum(MomentumConfig {
            momentum: o.momentum,
            dampening: 0.0,
            nesterov: o.nesterov,
        })
        .with_ns_steps(o.ns_steps)
        .with_adjust_lr_fn(match o.adjust_lr {
            MuonLrAdjust::MatchRmsAdamw => AdjustLrFn::MatchRmsAdamW,
            MuonLrAdjust::Original => AdjustLrFn::Original,
        })
        .with_weight_decay(
            (cfg.weight_decay > 0.0).then(|| WeightDecayConfig::new(cfg.weight_decay as f32)),
        )
        .build();
    Ok(adamw.with_group(ParamGroup::from_ids(matrices), muon, None))
}
