//! The registry of `training.schedule`: each entry's name, whether it reads the shared
//! `warmup_steps` and `min_lr_ratio`, and its options type (its sub-section of `training:`)
//! with their checks, their part of the train key and the curve they describe. Separate from
//! the curves (`mod.rs`) because this is where the config meets the schedules.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Kind;
use crate::config::TrainingConfig;
use crate::config::options::{self, Invalid, Options, Owner, check_unit, fail};
use crate::config::sections::DEFAULT_WARMUP_STEPS;

/// The options a schedule reads from `training:` besides the shared settings: its
/// sub-section, named after it. Missing keys take the defaults.
pub trait ScheduleOptions: Serialize + DeserializeOwned + Default {
    /// The keys of `training:` it reads.
    const KEYS: &'static [&'static str];

    fn validate(&self) -> Result<(), Invalid> {
        Ok(())
    }

    /// The curve these options describe.
    fn kind(&self) -> Kind;
}

/// How a schedule starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Warmup {
    /// `warmup_steps` of linear warm-up.
    Linear,
    /// A warm-up of its own, named by this setting (`one_cycle.pct_start`).
    Own(&'static str),
}

/// One registry entry.
pub struct ScheduleSpec {
    /// The `training.schedule` value that selects it.
    pub name: &'static str,
    pub warmup: Warmup,
    /// Whether it has a floor of `lr * min_lr_ratio`.
    pub min_lr_ratio: bool,
    /// The keys of `training:` its options type reads.
    pub keys: &'static [&'static str],
    resolve: fn(&TrainingConfig) -> Result<Options, Invalid>,
    key_value: fn(&TrainingConfig) -> Options,
    kind: fn(&TrainingConfig) -> Kind,
}

impl ScheduleSpec {
    /// The curve of `t`'s settings (read as this schedule's).
    pub fn kind(&self, t: &TrainingConfig) -> Kind {
        (self.kind)(t)
    }

    const fn new<O: ScheduleOptions>(
        name: &'static str,
        warmup: Warmup,
        min_lr_ratio: bool,
    ) -> Self {
        ScheduleSpec {
            name,
            warmup,
            min_lr_ratio,
            keys: O::KEYS,
            resolve: resolve_as::<O>,
            key_value: key_value_as::<O>,
            kind: kind_as::<O>,
        }
    }
}

/// The registry: `training.schedule` -> what it reads and its curve.
pub const SCHEDULES: &[ScheduleSpec] = &[
    ScheduleSpec::new::<ConstantSettings>("constant", Warmup::Linear, false),
    ScheduleSpec::new::<CosineSettings>("warmup_cosine", Warmup::Linear, true),
    ScheduleSpec::new::<HoldSettings>("warmup_hold_cosine", Warmup::Linear, true),
    ScheduleSpec::new::<OneCycleSettings>("one_cycle", Warmup::Own("one_cycle.pct_start"), false),
    ScheduleSpec::new::<StepSettings>("step", Warmup::Linear, false),
    ScheduleSpec::new::<PlateauSettings>("plateau", Warmup::Linear, true),
];

/// Looks a schedule up in the registry.
pub fn spec(name: &str) -> Option<&'static ScheduleSpec> {
    SCHEDULES.iter().find(|s| s.name == name)
}

/// Reads `training`'s schedule settings as the selected schedule's: an unknown schedule or
/// key, a setting of another schedule, a wrong value type or range is an error naming the
/// key; the sub-section is put back with defaults filled in.
pub fn resolve_options(t: &mut TrainingConfig) -> Result<(), Invalid> {
    let owners: Vec<Owner> = SCHEDULES
        .iter()
        .map(|s| Owner {
            name: s.name,
            keys: s.keys,
        })
        .collect();
    options::check_unknown(
        "training",
        TrainingConfig::FIELDS,
        "schedule",
        &owners,
        &t.options,
    )?;
    let name = t.schedule.clone();
    let Some(spec) = spec(&name) else {
        let known: Vec<String> = SCHEDULES.iter().map(|s| format!("`{}`", s.name)).collect();
        let message = format!(
            "unknown variant `{name}`, expected one of {}",
            known.join(", ")
        );
        return fail(
            "training.schedule",
            crate::config::explain_serde_error(&message),
        );
    };
    if let (Some(_), Warmup::Own(own)) = (t.warmup_steps, spec.warmup) {
        return fail(
            "training.warmup_steps",
            format!("schedule `{name}` does not read it (its warm-up is {own})"),
        );
    }
    if t.min_lr_ratio.is_some() && !spec.min_lr_ratio {
        let readers: Vec<&str> = SCHEDULES
            .iter()
            .filter(|s| s.min_lr_ratio)
            .map(|s| s.name)
            .collect();
        return fail(
            "training.min_lr_ratio",
            format!(
                "schedule `{name}` does not read it ({} do)",
                options::and_list(&readers)
            ),
        );
    }
    options::check_foreign("training", &owners, &name, &t.options, |key, by| {
        let own = by.first().copied().unwrap_or(key);
        format!(
            "settings of schedule `{own}`, but training.schedule is `{name}`; \
             remove them or set schedule: {own}"
        )
    })?;
    t.options = (spec.resolve)(t)?;
    Ok(())
}

fn resolve_as<O: ScheduleOptions>(t: &TrainingConfig) -> Result<Options, Invalid> {
    let o: O = options::parse("training", &t.options)?;
    o.validate()?;
    Ok(options::to_options(&o))
}

fn key_value_as<O: ScheduleOptions>(t: &TrainingConfig) -> Options {
    let o: O = options::parse("training", &t.options).unwrap_or_default();
    options::to_options(&o)
}

fn kind_as<O: ScheduleOptions>(t: &TrainingConfig) -> Kind {
    options::parse::<O>("training", &t.options)
        .unwrap_or_default()
        .kind()
}

impl TrainingConfig {
    /// `warmup_steps` with its default (0 where the schedule has no linear warm-up).
    pub fn warmup_steps(&self) -> usize {
        match spec(&self.schedule).map(|s| s.warmup) {
            Some(Warmup::Linear) => self.warmup_steps.unwrap_or(DEFAULT_WARMUP_STEPS),
            _ => 0,
        }
    }

    /// What the `train` key hashes: every setting the run reads, defaults filled in,
    /// schedule settings only for the selected schedule.
    pub fn key_value(&self) -> Value {
        let mut v = self.shared_key_value();
        if let (Some(spec), Value::Object(map)) = (spec(&self.schedule), &mut v) {
            if spec.warmup == Warmup::Linear {
                map.insert("warmup_steps".into(), json!(self.warmup_steps()));
            }
            if spec.min_lr_ratio {
                map.insert("min_lr_ratio".into(), json!(self.min_lr_ratio()));
            }
            map.extend((spec.key_value)(self));
        }
        v
    }
}

/// What `constant` reads of its own: nothing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConstantSettings {}

impl ScheduleOptions for ConstantSettings {
    const KEYS: &'static [&'static str] = &[];

    fn kind(&self) -> Kind {
        Kind::Constant
    }
}

/// What `warmup_cosine` reads of its own: nothing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CosineSettings {}

impl ScheduleOptions for CosineSettings {
    const KEYS: &'static [&'static str] = &[];

    fn kind(&self) -> Kind {
        Kind::WarmupCosine
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

    fn kind(&self) -> Kind {
        Kind::WarmupHoldCosine {
            hold: self.warmup_hold_cosine.hold_steps,
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

    fn kind(&self) -> Kind {
        let o = &self.one_cycle;
        Kind::OneCycle {
            pct_start: o.pct_start,
            div: o.div_factor,
            final_div: o.final_div_factor,
        }
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

    fn kind(&self) -> Kind {
        Kind::Step {
            size: self.step.step_size.max(1),
            gamma: self.step.gamma,
        }
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

    fn kind(&self) -> Kind {
        let o = &self.plateau;
        Kind::Plateau {
            factor: o.factor,
            patience: o.patience,
            threshold: o.threshold,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::as_options;

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

    fn check(t: &TrainingConfig) -> Result<(), Invalid> {
        t.validate()?;
        resolve_options(&mut t.clone())
    }

    #[test]
    fn schedule_settings_belong_to_their_schedule() {
        let t = TrainingConfig {
            warmup_steps: Some(5),
            ..training("one_cycle")
        };
        let (key, msg) = check(&t).unwrap_err();
        assert_eq!(key, "training.warmup_steps");
        assert_eq!(
            msg,
            "schedule `one_cycle` does not read it (its warm-up is one_cycle.pct_start)"
        );
        let t = TrainingConfig {
            min_lr_ratio: Some(0.5),
            ..training("step")
        };
        let (key, msg) = check(&t).unwrap_err();
        assert_eq!(key, "training.min_lr_ratio");
        assert_eq!(
            msg,
            "schedule `step` does not read it (warmup_cosine, warmup_hold_cosine and plateau do)"
        );
        let t = with(training("step"), json!({"plateau": {}}));
        let (key, msg) = check(&t).unwrap_err();
        assert_eq!(key, "training.plateau");
        assert_eq!(
            msg,
            "settings of schedule `plateau`, but training.schedule is `step`; remove them or \
             set schedule: plateau"
        );
        let t = TrainingConfig {
            min_delta: Some(0.1),
            ..TrainingConfig::default()
        };
        assert_eq!(check(&t).unwrap_err().0, "training.min_delta");
        let t = TrainingConfig {
            ema_decay: Some(1.0),
            ..TrainingConfig::default()
        };
        assert_eq!(check(&t).unwrap_err().0, "training.ema_decay");
        let (key, msg) = check(&training("warmup_cosin")).unwrap_err();
        assert_eq!(key, "training.schedule");
        assert!(
            msg.starts_with("unknown variant `warmup_cosin`, expected one of `constant`"),
            "{msg}"
        );
        assert!(msg.contains("did you mean `warmup_cosine`"), "{msg}");
        let t = with(training("step"), json!({"step": {"gamma": 2.0}}));
        assert_eq!(check(&t).unwrap_err().0, "training.step.gamma");
        let t = with(training("plateau"), json!({"pateince": 3}));
        let (key, msg) = check(&t).unwrap_err();
        assert_eq!(key, "training.pateince");
        assert!(msg.contains("did you mean `patience`"), "{msg}");
        for s in SCHEDULES {
            check(&training(s.name)).unwrap();
        }
    }

    #[test]
    fn training_key_holds_only_the_selected_schedule() {
        let cosine = training("warmup_cosine").key_value();
        assert_eq!(cosine["warmup_steps"], json!(50));
        assert_eq!(cosine["min_lr_ratio"], json!(0.1));
        assert!(cosine.get("one_cycle").is_none() && cosine.get("min_delta").is_none());
        let cycle = training("one_cycle").key_value();
        assert!(cycle.get("warmup_steps").is_none());
        assert_eq!(cycle["one_cycle"]["pct_start"], json!(0.3));
        let stopping = TrainingConfig {
            patience: Some(3),
            ..TrainingConfig::default()
        };
        assert_eq!(stopping.key_value()["min_delta"], json!(0.0));
        // Resolving fills the defaults in and keeps the key.
        let mut resolved = training("plateau");
        resolve_options(&mut resolved).unwrap();
        assert_eq!(resolved.options["plateau"]["patience"], json!(2));
        assert_eq!(resolved.key_value(), training("plateau").key_value());
    }
}
