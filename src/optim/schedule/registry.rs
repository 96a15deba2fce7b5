//! The registry of `training.schedule`: each entry's name, whether it reads the shared
//! `warmup_steps` and `min_lr_ratio`, and its options type (its sub-section of `training:`)
//! with their checks, their part of the train key and the curve they describe. Separate from
//! the curves (`mod.rs`, `builtin.rs`) because this is where the config meets the
//! schedules.

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{Curve, builtin};
use crate::config::TrainingConfig;
use crate::config::options::{self, Invalid, Options, Owner, fail};
use crate::config::sections::DEFAULT_WARMUP_STEPS;

/// The options a schedule reads from `training:` besides the shared settings: its
/// sub-section, named after it. Missing keys take the defaults.
pub trait ScheduleOptions: Curve + Serialize + DeserializeOwned + Default + 'static {
    /// The keys of `training:` it reads.
    const KEYS: &'static [&'static str];

    fn validate(&self) -> Result<(), Invalid> {
        Ok(())
    }
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
    curve: fn(&TrainingConfig) -> Arc<dyn Curve>,
}

impl ScheduleSpec {
    /// The curve of `t`'s settings (read as this schedule's).
    pub fn curve(&self, t: &TrainingConfig) -> Arc<dyn Curve> {
        (self.curve)(t)
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
            curve: curve_as::<O>,
        }
    }
}

/// The registry: `training.schedule` -> what it reads and its curve.
pub const SCHEDULES: &[ScheduleSpec] = &[
    ScheduleSpec::new::<builtin::ConstantSettings>("constant", Warmup::Linear, false),
    ScheduleSpec::new::<builtin::CosineSettings>("warmup_cosine", Warmup::Linear, true),
    ScheduleSpec::new::<builtin::HoldSettings>("warmup_hold_cosine", Warmup::Linear, true),
    ScheduleSpec::new::<builtin::OneCycleSettings>(
        "one_cycle",
        Warmup::Own("one_cycle.pct_start"),
        false,
    ),
    ScheduleSpec::new::<builtin::StepSettings>("step", Warmup::Linear, false),
    ScheduleSpec::new::<builtin::PlateauSettings>("plateau", Warmup::Linear, true),
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

fn curve_as<O: ScheduleOptions>(t: &TrainingConfig) -> Arc<dyn Curve> {
    Arc::new(options::parse::<O>("training", &t.options).unwrap_or_default())
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
