//! Learning-rate schedules. Every schedule is a function of the optimizer step (0-based,
//! counting optimizer steps, not micro-batches) and the run's total steps; `plateau` also
//! reads the validation loss at the end of each epoch. All arithmetic is in f64 on the host,
//! so rates are the same on every machine.
//!
//! [`SCHEDULES`] (in `registry`) is the registry of `training.schedule`: each entry says
//! whether it reads the shared `warmup_steps` and `min_lr_ratio`, and carries its options
//! type (its sub-section of `training:`), their checks, its part of the train key and its
//! curve ([`Curve`]). The curves of the built-in schedules and the maths they share
//! ([`lr_at`], [`cosine`], [`one_cycle`]) are here; a new schedule is a file of its own
//! plus one line in `SCHEDULES`.

mod builtin;
mod registry;

use std::f64::consts::PI;
use std::sync::Arc;

use crate::config::TrainingConfig;

pub use builtin::{
    ConstantSettings, CosineSettings, HoldOptions, HoldSettings, OneCycleOptions, OneCycleSettings,
    PlateauOptions, PlateauSettings, StepOptions, StepSettings,
};
pub use registry::{SCHEDULES, ScheduleOptions, ScheduleSpec, Warmup, resolve_options, spec};

/// The learning rate of every step of one run.
#[derive(Debug, Clone)]
pub struct Scheduler {
    curve: Arc<dyn Curve>,
    lr: f64,
    total_steps: usize,
    warmup: usize,
    min_ratio: f64,
    /// `plateau`: the current multiplier and what it is derived from.
    plateau: PlateauState,
}

/// What a curve is evaluated against: the run's shape and the shared settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Run {
    /// Peak learning rate.
    pub lr: f64,
    pub total_steps: usize,
    /// Linear warm-up steps (0 for a schedule with a warm-up of its own); curves are asked
    /// only for the steps after it.
    pub warmup: usize,
    /// `min_lr_ratio`, with its default.
    pub min_ratio: f64,
    /// The multiplier a `plateau` rule has reached (1 otherwise).
    pub scale: f64,
}

/// A learning-rate curve: a schedule's options, read.
pub trait Curve: std::fmt::Debug + Send + Sync {
    /// The rate of optimizer step `step` (0-based, at or after `run.warmup`).
    fn lr(&self, step: usize, run: &Run) -> f64;

    /// How many leading steps (from step 0, at or after `run.warmup`) have rates that do
    /// not depend on `run.total_steps`: `usize::MAX` when no step's does (`constant`,
    /// `step`, `plateau`), the warm-up and hold for `warmup_hold_cosine`, 0 for a curve
    /// shaped by the run's length (`warmup_cosine` decays over it, `one_cycle` peaks at a
    /// share of it). A training lengthened by more epochs continues from the shorter one's
    /// final state only when every step that one ran is among them, so the continued run
    /// is a fresh run bit for bit. Every schedule must say; none is assumed either way.
    fn fixed_steps(&self, run: &Run) -> usize;

    /// The rule that lowers the rate when the validation loss stops improving, for a
    /// schedule that reads it after every epoch.
    fn plateau(&self) -> Option<PlateauRule> {
        None
    }
}

/// Multiply the rate by `factor` after `patience` epochs without a validation loss below
/// `best * (1 - threshold)`, down to `lr * min_lr_ratio`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlateauRule {
    pub factor: f64,
    pub patience: usize,
    pub threshold: f64,
}

#[derive(Debug, Clone, PartialEq)]
struct PlateauState {
    scale: f64,
    best: Option<f64>,
    bad_epochs: usize,
}

impl Scheduler {
    /// The schedule of `t` for peak rate `lr` over `total_steps` optimizer steps.
    pub fn new(lr: f64, t: &TrainingConfig, total_steps: usize) -> Scheduler {
        // Loaded configs name a registered schedule; one built in code that does not
        // gets the default schedule, as an unset one would.
        let curve = match spec(&t.schedule) {
            Some(s) => s.curve(t),
            None => Arc::new(CosineSettings {}),
        };
        Scheduler {
            curve,
            lr,
            total_steps,
            warmup: t.warmup_steps(),
            min_ratio: t.min_lr_ratio(),
            plateau: PlateauState {
                scale: 1.0,
                best: None,
                bad_epochs: 0,
            },
        }
    }

    /// Whether the schedule needs a validation loss after every epoch.
    pub fn needs_validation(&self) -> bool {
        self.curve.plateau().is_some()
    }

    /// The learning rate of optimizer step `step` (0-based).
    pub fn lr(&self, step: usize) -> f64 {
        let (lr, warmup) = (self.lr, self.warmup);
        if step < warmup {
            return lr * (step + 1) as f64 / warmup as f64;
        }
        self.curve.lr(step, &self.run())
    }

    /// How many leading steps have rates that do not depend on the run's total steps: the
    /// linear warm-up (the same whatever the total), or more when the curve says so
    /// ([`Curve::fixed_steps`]).
    pub fn fixed_steps(&self) -> usize {
        self.warmup.max(self.curve.fixed_steps(&self.run()))
    }

    fn run(&self) -> Run {
        Run {
            lr: self.lr,
            total_steps: self.total_steps,
            warmup: self.warmup,
            min_ratio: self.min_ratio,
            scale: self.plateau.scale,
        }
    }

    /// `plateau`'s accumulated state `(scale, best, bad_epochs)`, for resumable checkpoints.
    pub fn state(&self) -> (f64, Option<f64>, usize) {
        let p = &self.plateau;
        (p.scale, p.best, p.bad_epochs)
    }

    /// Restores what [`state`](Scheduler::state) returned.
    pub fn set_state(&mut self, scale: f64, best: Option<f64>, bad_epochs: usize) {
        self.plateau = PlateauState {
            scale,
            best,
            bad_epochs,
        };
    }

    /// Reports an epoch's validation loss; `plateau` lowers its multiplier after
    /// `patience` epochs without an improvement below `best * (1 - threshold)`, down to
    /// `min_lr_ratio`. Other schedules ignore it.
    pub fn end_epoch(&mut self, val_loss: Option<f64>) {
        let Some(PlateauRule {
            factor,
            patience,
            threshold,
        }) = self.curve.plateau()
        else {
            return;
        };
        let Some(v) = val_loss else { return };
        let p = &mut self.plateau;
        match p.best {
            Some(best) if v >= best * (1.0 - threshold) => {
                p.bad_epochs += 1;
                if p.bad_epochs > patience {
                    p.scale = (p.scale * factor).max(self.min_ratio);
                    p.bad_epochs = 0;
                }
            }
            _ => {
                p.best = Some(v);
                p.bad_epochs = 0;
            }
        }
    }
}

/// Linear warm-up from `lr / warmup` to `lr` over `warmup` steps, then cosine decay to
/// `lr * min_ratio` at the last step (`warmup_cosine`).
pub fn lr_at(step: usize, total_steps: usize, warmup: usize, lr: f64, min_ratio: f64) -> f64 {
    if step < warmup {
        return lr * (step + 1) as f64 / warmup as f64;
    }
    cosine(
        step - warmup,
        total_steps.saturating_sub(warmup),
        lr,
        min_ratio,
    )
}

/// Cosine from `lr` at step 0 to `lr * min_ratio` at step `steps - 1` (and after).
pub fn cosine(step: usize, steps: usize, lr: f64, min_ratio: f64) -> f64 {
    let last = steps.saturating_sub(1);
    let progress = if last == 0 {
        0.0
    } else {
        (step as f64 / last as f64).min(1.0)
    };
    lr * (min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + (PI * progress).cos()))
}

/// PyTorch's `OneCycleLR` with cosine annealing and two phases: from `lr / div` up to `lr`
/// at step `pct_start * total - 1`, then down to `lr / (div * final_div)` at the last step.
pub fn one_cycle(
    step: usize,
    total: usize,
    lr: f64,
    pct_start: f64,
    div: f64,
    final_div: f64,
) -> f64 {
    let initial = lr / div;
    let min = initial / final_div;
    let peak_at = (pct_start * total as f64 - 1.0).max(0.0);
    let end = (total as f64 - 1.0).max(peak_at);
    let s = step as f64;
    let anneal = |from: f64, to: f64, pct: f64| to + (from - to) / 2.0 * (1.0 + (PI * pct).cos());
    if s <= peak_at {
        let pct = if peak_at == 0.0 { 1.0 } else { s / peak_at };
        anneal(initial, lr, pct)
    } else {
        let span = end - peak_at;
        let pct = if span == 0.0 {
            1.0
        } else {
            ((s - peak_at) / span).min(1.0)
        };
        anneal(lr, min, pct)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::as_options;
    use serde_json::{Value, json};

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12 * b.abs().max(1.0)
    }

    fn sched(t: TrainingConfig, total: usize) -> Scheduler {
        Scheduler::new(1.0, &t, total)
    }

    fn training(schedule: &str) -> TrainingConfig {
        TrainingConfig {
            schedule: schedule.to_string(),
            ..TrainingConfig::default()
        }
    }

    fn with(t: TrainingConfig, options: Value) -> TrainingConfig {
        TrainingConfig {
            options: as_options(options),
            ..t
        }
    }

    #[test]
    fn warmup_cosine_warms_up_then_decays_to_the_floor() {
        let lr = |s| lr_at(s, 10, 2, 1.0, 0.1);
        assert_eq!(lr(0), 0.5);
        assert_eq!(lr(1), 1.0);
        assert!(close(lr(2), 1.0));
        assert!(lr(5) < lr(4));
        assert!(close(lr(9), 0.1));
        assert!(close(lr(50), 0.1));
        // No warm-up, one step: the peak rate.
        assert_eq!(lr_at(0, 1, 0, 0.3, 0.1), 0.3);
        // The scheduler gives the same values for the default schedule.
        let s = sched(
            TrainingConfig {
                warmup_steps: Some(2),
                ..training("warmup_cosine")
            },
            10,
        );
        for step in 0..12 {
            assert_eq!(s.lr(step), lr(step), "step {step}");
        }
        // Halfway through the decay: the midpoint between peak and floor.
        assert!(close(lr_at(6, 12, 1, 1.0, 0.0), 0.5));
    }

    #[test]
    fn constant_is_flat_after_the_warmup() {
        let s = sched(
            TrainingConfig {
                warmup_steps: Some(4),
                ..training("constant")
            },
            100,
        );
        assert_eq!(s.lr(0), 0.25);
        assert_eq!(s.lr(3), 1.0);
        assert_eq!(s.lr(99), 1.0);
    }

    #[test]
    fn warmup_hold_cosine_holds_the_peak_then_decays() {
        let t = TrainingConfig {
            warmup_steps: Some(2),
            min_lr_ratio: Some(0.0),
            ..with(
                training("warmup_hold_cosine"),
                json!({"warmup_hold_cosine": {"hold_steps": 3}}),
            )
        };
        let s = sched(t, 10);
        assert_eq!(s.lr(1), 1.0);
        assert_eq!(s.lr(4), 1.0);
        // The decay runs over steps 5..=9: its midpoint, step 7, is half the peak.
        assert_eq!(s.lr(5), 1.0);
        assert!(close(s.lr(7), 0.5));
        assert!(close(s.lr(9), 0.0));
    }

    #[test]
    fn one_cycle_matches_pytorch_values() {
        // torch.optim.lr_scheduler.OneCycleLR(max_lr=1, total_steps=10, pct_start=0.3,
        // div_factor=25, final_div_factor=1e4): peak at step 2 (0.3 * 10 - 1).
        let t = with(training("one_cycle"), json!({"one_cycle": {}}));
        let s = sched(t, 10);
        assert!(close(s.lr(0), 0.04));
        assert!(close(s.lr(1), 0.52));
        assert!(close(s.lr(2), 1.0));
        // Step 9 ends at lr / (25 * 1e4).
        assert!(close(s.lr(9), 4e-6));
        // Halfway down (step 5.5 is not a step; 2 + 7 * 0.5): check monotone decay instead.
        for step in 3..10 {
            assert!(s.lr(step) < s.lr(step - 1), "step {step}");
        }
    }

    #[test]
    fn step_decays_by_gamma_every_period_after_the_warmup() {
        let t = TrainingConfig {
            warmup_steps: Some(2),
            ..with(
                training("step"),
                json!({"step": {"step_size": 3, "gamma": 0.1}}),
            )
        };
        let s = sched(t, 100);
        assert_eq!(s.lr(0), 0.5);
        assert_eq!(s.lr(2), 1.0);
        assert_eq!(s.lr(4), 1.0);
        assert!(close(s.lr(5), 0.1));
        assert!(close(s.lr(7), 0.1));
        assert!(close(s.lr(8), 0.01));
        assert!(close(s.lr(11), 0.001));
    }

    #[test]
    fn plateau_reduces_after_patience_epochs_down_to_the_floor() {
        let t = TrainingConfig {
            warmup_steps: Some(0),
            min_lr_ratio: Some(0.2),
            ..with(
                training("plateau"),
                json!({"plateau": {"factor": 0.5, "patience": 1, "threshold": 0.0}}),
            )
        };
        let mut s = sched(t, 100);
        assert!(s.needs_validation());
        let mut rates = Vec::new();
        for v in [1.0, 0.9, 0.95, 0.95, 0.8, 0.9, 0.9, 0.9, 0.9] {
            s.end_epoch(Some(v));
            rates.push(s.lr(10));
        }
        // Improvements at 1.0, 0.9, 0.8; two bad epochs in a row (patience 1) halve the rate.
        assert_eq!(rates, [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25, 0.2]);
    }

    /// What each schedule declares of its fixed steps holds: those steps' rates are the
    /// same bits whatever the run's length, and the length-shaped schedules do depend on it
    /// soon after.
    #[test]
    fn fixed_steps_have_the_same_rates_at_every_length() {
        for spec in SCHEDULES {
            let mut t = TrainingConfig {
                warmup_steps: (spec.warmup == Warmup::Linear).then_some(3),
                ..training(spec.name)
            };
            if spec.name == "warmup_hold_cosine" {
                t = with(t, json!({"warmup_hold_cosine": {"hold_steps": 4}}));
            }
            if spec.name == "step" {
                t = with(t, json!({"step": {"step_size": 2}}));
            }
            let short = sched(t.clone(), 12);
            let fixed = short.fixed_steps();
            assert_eq!(fixed, sched(t.clone(), 40).fixed_steps(), "{}", spec.name);
            let expected = match spec.name {
                "constant" | "step" | "plateau" => usize::MAX,
                "warmup_hold_cosine" => 7,
                "warmup_cosine" => 3,
                _ => 0,
            };
            assert_eq!(fixed, expected, "{}", spec.name);
            for total in [13, 20, 40] {
                let long = sched(t.clone(), total);
                for step in 0..fixed.min(12) {
                    assert_eq!(
                        short.lr(step).to_bits(),
                        long.lr(step).to_bits(),
                        "{} step {step}",
                        spec.name
                    );
                }
                // The first step after them is still at zero progress into the decay;
                // the one after moves with the length.
                if fixed < 12 {
                    assert_ne!(short.lr(fixed + 1), long.lr(fixed + 1), "{}", spec.name);
                }
            }
        }
    }
}
