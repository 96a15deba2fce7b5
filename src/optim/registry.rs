//! The optimizer registry: `optimizer.type` -> the entry that builds the optimizer and owns
//! its options. An entry carries its builder and its options type ([`OptimizerOptions`]):
//! which keys of `optimizer:` it reads (flat `betas`/`eps`, or its sub-section `sgd:`, ...),
//! how it checks them and what the train key hashes of them. Adding an optimizer is one file
//! (its `build` and options type) plus one line in [`OPTIMIZERS`].
//!
//! Separate from `mod.rs` (building, parameter groups, clipping) because this is where the
//! config meets the optimizers.

use burn::optim::ModuleOptimizer;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{OptimError, builtin, shampoo};
use crate::config::options::{self, Invalid, Options, Owner};
use crate::config::{OptimizerConfig, unknown_name};
use crate::model::ParamMeta;

/// Builds an optimizer for a model's parameters.
pub type BuildFn = fn(&OptimizerConfig, &[ParamMeta]) -> Result<ModuleOptimizer, OptimError>;

/// The options an optimizer type reads from `optimizer:` besides `type`, `lr` and
/// `weight_decay`. Missing keys take the type's defaults (`#[serde(default)]`).
pub trait OptimizerOptions: Serialize + DeserializeOwned + Default {
    /// The keys of `optimizer:` it reads: the fields of the type, in order.
    const KEYS: &'static [&'static str];

    /// Range checks, against the shared settings where they depend on them.
    fn validate(&self, _optimizer: &OptimizerConfig) -> Result<(), Invalid> {
        Ok(())
    }

    /// What the train key hashes of these options, defaults filled in: by default all of
    /// them as they serialise.
    fn key_value(&self, _optimizer: &OptimizerConfig, key: &mut Options) {
        key.extend(options::to_options(self));
    }
}

/// One registry entry.
pub struct OptimizerSpec {
    /// The `optimizer.type` value that selects it.
    pub name: &'static str,
    pub build: BuildFn,
    /// The keys of `optimizer:` its options type reads.
    pub keys: &'static [&'static str],
    resolve: fn(&OptimizerConfig) -> Result<Options, Invalid>,
    key_value: fn(&OptimizerConfig) -> Options,
}

impl OptimizerSpec {
    const fn new<O: OptimizerOptions>(name: &'static str, build: BuildFn) -> Self {
        OptimizerSpec {
            name,
            build,
            keys: O::KEYS,
            resolve: resolve_as::<O>,
            key_value: key_value_as::<O>,
        }
    }
}

/// The registry: `optimizer.type` -> builder and options.
pub const OPTIMIZERS: &[OptimizerSpec] = &[
    OptimizerSpec::new::<builtin::AdamwSettings>("adamw", builtin::adamw),
    OptimizerSpec::new::<builtin::SgdSettings>("sgd", builtin::sgd),
    OptimizerSpec::new::<builtin::LionSettings>("lion", builtin::lion),
    OptimizerSpec::new::<builtin::AdafactorSettings>("adafactor", builtin::adafactor),
    OptimizerSpec::new::<builtin::MuonSettings>("muon", builtin::muon),
    OptimizerSpec::new::<shampoo::ShampooSettings>("shampoo", shampoo::build),
];

/// Names accepted by `optimizer.type`, in registry order.
pub const OPTIMIZER_NAMES: &[&str] = &{
    let mut names = [""; OPTIMIZERS.len()];
    let mut i = 0;
    while i < OPTIMIZERS.len() {
        names[i] = OPTIMIZERS[i].name;
        i += 1;
    }
    names
};

/// Looks an optimizer type up in the registry.
pub fn spec(kind: &str) -> Option<&'static OptimizerSpec> {
    OPTIMIZERS.iter().find(|o| o.name == kind)
}

fn owners() -> Vec<Owner> {
    OPTIMIZERS
        .iter()
        .map(|o| Owner {
            name: o.name,
            keys: o.keys,
        })
        .collect()
}

/// Reads `optimizer`'s options as its type's: unknown keys, keys of another type, value
/// types and ranges are errors naming the key; the options are put back with defaults
/// filled in.
pub fn resolve_options(optimizer: &mut OptimizerConfig) -> Result<(), Invalid> {
    let owners = owners();
    options::check_unknown(
        "optimizer",
        OptimizerConfig::FIELDS,
        "type",
        &owners,
        &optimizer.options,
    )?;
    let kind = optimizer.kind.clone();
    let Some(spec) = spec(&kind) else {
        return Err((
            "optimizer.type".to_string(),
            unknown_name("optimizer", &kind, OPTIMIZER_NAMES),
        ));
    };
    // A flat key of another type that the selected type spells in its own sub-section
    // (lion's `lion.betas`) is pointed to.
    let own = own_spellings(spec, &owners);
    options::check_foreign(
        "optimizer",
        &owners,
        &kind,
        &optimizer.options,
        |key, by| {
            if by == [key] {
                format!(
                    "settings of `{key}`, but optimizer.type is `{kind}`; \
                 remove them or set type: {key}"
                )
            } else {
                let by = options::and_list(by);
                format!("`{kind}` does not read {key} ({by} do){own}; remove it")
            }
        },
    )?;
    optimizer.options = (spec.resolve)(optimizer)?;
    Ok(())
}

/// `; lion's own are optimizer.lion.betas` where the selected type's sub-section has a
/// field named like a flat key of other types; empty otherwise.
fn own_spellings(spec: &OptimizerSpec, owners: &[Owner]) -> String {
    let defaults = (spec.resolve)(&OptimizerConfig {
        kind: spec.name.to_string(),
        ..OptimizerConfig::default()
    })
    .unwrap_or_default();
    let Some(Value::Object(section)) = defaults.get(spec.name) else {
        return String::new();
    };
    let flat: Vec<String> = owners
        .iter()
        .flat_map(|o| o.keys.iter())
        .filter(|k| !owners.iter().any(|o| o.name == **k) && section.contains_key(**k))
        .map(|k| format!("optimizer.{}.{k}", spec.name))
        .fold(Vec::new(), |mut all, k| {
            if !all.contains(&k) {
                all.push(k);
            }
            all
        });
    if flat.is_empty() {
        return String::new();
    }
    let flat: Vec<&str> = flat.iter().map(String::as_str).collect();
    format!("; {}'s own are {}", spec.name, options::and_list(&flat))
}

/// `optimizer`'s options as `O`, defaults filled in; a config error for the builders.
pub(crate) fn options_of<O: OptimizerOptions>(
    optimizer: &OptimizerConfig,
) -> Result<O, OptimError> {
    options::parse("optimizer", &optimizer.options)
        .map_err(|(key, message)| OptimError::Config(key, message))
}

fn resolve_as<O: OptimizerOptions>(optimizer: &OptimizerConfig) -> Result<Options, Invalid> {
    let o: O = options::parse("optimizer", &optimizer.options)?;
    o.validate(optimizer)?;
    Ok(options::to_options(&o))
}

fn key_value_as<O: OptimizerOptions>(optimizer: &OptimizerConfig) -> Options {
    // Loaded configs have been read already; one built in code that does not read falls
    // back to the defaults, as a missing key would.
    let o: O = options::parse("optimizer", &optimizer.options).unwrap_or_default();
    let mut key = Options::new();
    o.key_value(optimizer, &mut key);
    key
}

impl OptimizerConfig {
    /// What the `train` key hashes: the settings this optimizer type reads, defaults filled
    /// in. For `adamw` this is exactly the pre-registry form, so existing keys stay valid.
    pub fn key_value(&self) -> Value {
        let mut v = self.shared_key_value();
        if let (Some(spec), Value::Object(map)) = (spec(&self.kind), &mut v) {
            map.extend((spec.key_value)(self));
        }
        v
    }

    /// Every check the loader makes: the shared settings, then the type and its options.
    pub fn validate(&self) -> Result<(), Invalid> {
        self.validate_shared()?;
        resolve_options(&mut self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn opt(v: Value) -> OptimizerConfig {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn registry_names_match_the_config_list() {
        let names: Vec<&str> = OPTIMIZERS.iter().map(|o| o.name).collect();
        assert_eq!(names, OPTIMIZER_NAMES);
    }

    /// The keys an entry declares are exactly its options type's fields.
    #[test]
    fn declared_keys_are_the_fields_of_the_options_type() {
        for o in OPTIMIZERS {
            let mut cfg = opt(json!({"type": o.name}));
            resolve_options(&mut cfg).unwrap();
            let fields: Vec<&str> = cfg.options.keys().map(String::as_str).collect();
            let mut keys = o.keys.to_vec();
            keys.sort_unstable();
            assert_eq!(fields, keys, "{}", o.name);
        }
    }

    #[test]
    fn an_option_of_another_optimizer_is_an_error_naming_the_key() {
        let lion = opt(json!({"type": "lion", "betas": [0.9, 0.99]}));
        let (key, msg) = lion.validate().unwrap_err();
        assert_eq!(key, "optimizer.betas");
        assert_eq!(
            msg,
            "`lion` does not read betas (adamw, muon and shampoo do); lion's own are \
             optimizer.lion.betas; remove it"
        );
        let lion = opt(json!({"type": "lion", "eps": 1e-6}));
        assert_eq!(
            lion.validate().unwrap_err().1,
            "`lion` does not read eps (adamw, muon and shampoo do); lion's own are \
             optimizer.lion.betas; remove it"
        );

        let sgd = opt(json!({"type": "sgd", "muon": {}}));
        let (key, msg) = sgd.validate().unwrap_err();
        assert_eq!(key, "optimizer.muon");
        assert_eq!(
            msg,
            "settings of `muon`, but optimizer.type is `sgd`; remove them or set type: muon"
        );

        let eps = opt(json!({"type": "adafactor", "eps": 1e-6}));
        let (key, msg) = eps.validate().unwrap_err();
        assert_eq!(key, "optimizer.eps");
        assert_eq!(
            msg,
            "`adafactor` does not read eps (adamw, muon and shampoo do); remove it"
        );

        // The AdamW moments are Muon's and Shampoo's too (their AdamW parts).
        for kind in ["adamw", "muon", "shampoo"] {
            opt(json!({"type": kind, "betas": [0.8, 0.9], "eps": 1e-6}))
                .validate()
                .unwrap();
        }
        let (key, msg) = opt(json!({"type": "adamw", "lrr": 0.1}))
            .validate()
            .unwrap_err();
        assert_eq!(key, "optimizer.lrr");
        assert!(msg.contains("did you mean `lr`"), "{msg}");
    }

    #[test]
    fn optimizer_ranges_are_checked_per_type() {
        let bad = |v: Value| opt(v).validate().unwrap_err().0;
        assert_eq!(
            bad(json!({"type": "sgd", "sgd": {"momentum": 0.0, "nesterov": true}})),
            "optimizer.sgd.nesterov"
        );
        assert_eq!(
            bad(json!({"type": "lion", "lion": {"betas": [0.9, 1.0]}})),
            "optimizer.lion.betas[1]"
        );
        assert_eq!(
            bad(json!({"type": "muon", "muon": {"ns_steps": 0}})),
            "optimizer.muon.ns_steps"
        );
        assert_eq!(
            bad(json!({"type": "adafactor", "adafactor": {"decay_rate": 0.5}})),
            "optimizer.adafactor.decay_rate"
        );
        assert_eq!(
            bad(json!({"type": "adamw", "betas": [0.9, 1.5]})),
            "optimizer.betas[1]"
        );
        assert_eq!(bad(json!({"type": "adamw", "lr": -1.0})), "optimizer.lr");
        let (key, msg) = opt(json!({"type": "adamz"})).validate().unwrap_err();
        assert_eq!(key, "optimizer.type");
        assert!(msg.contains("did you mean `adamw`"), "{msg}");
    }

    #[test]
    fn optimizer_key_holds_what_the_type_reads_with_defaults_filled() {
        // AdamW keeps the pre-registry form.
        assert_eq!(
            opt(json!({"type": "adamw"})).key_value(),
            json!({"type": "adamw", "lr": 1e-3, "weight_decay": 0.01,
                   "betas": [0.9, 0.999], "eps": 1e-8})
        );
        let lion = opt(json!({"type": "lion"})).key_value();
        assert_eq!(lion["lion"]["betas"], json!([0.9, 0.99]));
        assert!(lion.get("betas").is_none() && lion.get("eps").is_none());
        // Spelling a default out does not change the key.
        let spelled = opt(json!({"type": "lion", "lion": {"betas": [0.9, 0.99]}}));
        assert_eq!(spelled.key_value(), lion);
        let muon = opt(json!({"type": "muon", "lr": 0.02})).key_value();
        assert_eq!(muon["muon"]["adamw_lr"], json!(0.02));
        assert_eq!(muon["betas"], json!([0.9, 0.999]));
        // Resolving fills the defaults in and keeps the key.
        let mut resolved = opt(json!({"type": "muon", "lr": 0.02}));
        resolve_options(&mut resolved).unwrap();
        assert_eq!(resolved.options["muon"]["ns_steps"], json!(5));
        assert_eq!(resolved.key_value(), muon);
    }
}
