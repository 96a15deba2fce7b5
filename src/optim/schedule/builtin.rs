//! The built-in schedules' options and curves: `constant`, `warmup_cosine`,
//! `warmup_hold_cosine`, `one_cycle`, `step` and `plateau`. A new schedule is a file like
//! this one (its options type, implementing `ScheduleOptions` and [`Curve`]) plus one line
//! in `SCHEDULES`.

use serde::{Deserialize, Serialize};

use super::registry::ScheduleOptions;
use super::{Curve, PlateauRule, Run, cosine, lr_at, one_cycle};
use crate::config::options::{Invalid, check_unit, fail};

/// What `constant` reads of its own: nothing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConstantSettings {}

impl ScheduleOptions for ConstantSettings {
    const KEYS: &'static [&'static str] = &[];
}

impl Curve for ConstantSettings {
    fn fixed_steps(&self, _run: &Run) -> usize {
        usize::MAX
    }

    fn lr(&self, _step: usize, run: &Run) -> f64 {
        run.lr
    }
}

/// What `warmup_cosine` reads of its own: nothing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CosineSettings {}

impl ScheduleOptions for CosineSettings {
    const KEYS: &'static [&'static str] = &[];
}

impl Curve for CosineSettings {
    /// The decay spans the run: only the warm-up (the scheduler's) is fixed.
    fn fixed_steps(&self, _run: &Run) -> usize {
        0
    }

    fn lr(&self, step: usize, run: &Run) -> f64 {
        lr_at(step, run.total_steps, run.warmup, run.lr, run.min_ratio)
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

/// What `warmup_hold_cosine` reads: its sub-section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HoldSettings {
    pub warmup_hold_cosine: HoldOptions,
}

impl ScheduleOptions for HoldSettings {
    const KEYS: &'static [&'static str] = &["warmup_hold_cosine"];
}

impl Curve for HoldSettings {
    /// The warm-up and the hold; the decay after them spans the rest of the run.
    fn fixed_steps(&self, run: &Run) -> usize {
        run.warmup
            .saturating_add(self.warmup_hold_cosine.hold_steps)
    }

    fn lr(&self, step: usize, run: &Run) -> f64 {
        let decay_from = run
            .warmup
            .saturating_add(self.warmup_hold_cosine.hold_steps);
        if step < decay_from {
            run.lr
        } else {
            cosine(
                step - decay_from,
                run.total_steps.saturating_sub(decay_from),
                run.lr,
                run.min_ratio,
            )
        }
    }
}

/// What `one_cycle` reads: its sub-section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OneCycleSettings {
    pub one_cycle: OneCycleOptions,
}

impl ScheduleOptions for OneCycleSettings {
    const KEYS: &'static [&'static str] = &["one_cycle"];

    fn validate(&self) -> Result<(), Invalid> {
        let o = &self.one_cycle;
        if !(o.pct_start > 0.0 && o.pct_start < 1.0) {
            return fail("training.one_cycle.pct_start", "must be in (0, 1)");
        }
        if !(o.div_factor.is_finite() && o.div_factor >= 1.0) {
            return fail("training.one_cycle.div_factor", "must be >= 1");
        }
        if !(o.final_div_factor.is_finite() && o.final_div_factor >= 1.0) {
            return fail("training.one_cycle.final_div_factor", "must be >= 1");
        }
        Ok(())
    }
}

impl Curve for OneCycleSettings {
    /// The peak is at a share of the run: no step is fixed.
    fn fixed_steps(&self, _run: &Run) -> usize {
        0
    }

    fn lr(&self, step: usize, run: &Run) -> f64 {
        let o = &self.one_cycle;
        one_cycle(
            step,
            run.total_steps,
            run.lr,
            o.pct_start,
            o.div_factor,
            o.final_div_factor,
        )
    }
}

/// What `step` reads: its sub-section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StepSettings {
    pub step: StepOptions,
}

impl ScheduleOptions for StepSettings {
    const KEYS: &'static [&'static str] = &["step"];

    fn validate(&self) -> Result<(), Invalid> {
        let o = &self.step;
        if o.step_size == 0 {
            return fail("training.step.step_size", "must be at least 1");
        }
        if !(o.gamma.is_finite() && o.gamma > 0.0 && o.gamma <= 1.0) {
            return fail("training.step.gamma", "must be in (0, 1]");
        }
        Ok(())
    }
}

impl Curve for StepSettings {
    /// Periods count from the warm-up, whatever the run's length.
    fn fixed_steps(&self, _run: &Run) -> usize {
        usize::MAX
    }

    fn lr(&self, step: usize, run: &Run) -> f64 {
        let periods = (step - run.warmup) / self.step.step_size.max(1);
        run.lr * self.step.gamma.powi(periods.min(i32::MAX as usize) as i32)
    }
}

/// What `plateau` reads: its sub-section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlateauSettings {
    pub plateau: PlateauOptions,
}

impl ScheduleOptions for PlateauSettings {
    const KEYS: &'static [&'static str] = &["plateau"];

    fn validate(&self) -> Result<(), Invalid> {
        let o = &self.plateau;
        if !(o.factor.is_finite() && o.factor > 0.0 && o.factor < 1.0) {
            return fail("training.plateau.factor", "must be in (0, 1)");
        }
        check_unit("training.plateau.threshold", o.threshold)
    }
}

impl Curve for PlateauSettings {
    /// The multiplier follows the validation losses, never the run's length.
    fn fixed_steps(&self, _run: &Run) -> usize {
        usize::MAX
    }

    fn lr(&self, _step: usize, run: &Run) -> f64 {
        run.lr * run.scale
    }

    fn plateau(&self) -> Option<PlateauRule> {
        let o = &self.plateau;
        Some(PlateauRule {
            factor: o.factor,
            patience: o.patience,
            threshold: o.threshold,
        })
    }
}
