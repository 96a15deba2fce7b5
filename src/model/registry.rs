//! The model registry: `model.type` -> the entry that builds the architecture and owns its
//! options. An entry carries its builder, the version of its numerics and its options type
//! ([`ModelOptions`]): which keys of `model:` it reads, how it checks them and what it adds
//! to the stage key. Adding a model is one file (its `build` and options type) plus one line
//! in [`MODELS`].
//!
//! Separate from `mod.rs` (the model contract and weights) because this is where the config
//! meets the models: [`REGISTRIES`] is what `config::resolve_file` is handed, since config
//! imports neither `model` nor `optim`.

use burn::tensor::Device;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{Dims, ModelError, Net, dit, gru, lstm, mlp, transformer};
use crate::config::options::{self, Invalid, Options, Owner};
use crate::config::{ModelConfig, Registries, unknown_name};

/// A model's builder: hyper-parameters, dataset shapes and device in, the model out with its
/// parameters still lazy (initialised or loaded by `model::build` and `model::load`).
pub type BuildFn = fn(&ModelConfig, Dims, &Device) -> Result<Box<dyn Net>, ModelError>;

/// The options a model type reads from `model:` besides `type`, `hidden_size`,
/// `num_layers` and `dropout`: flat keys (`num_heads`) or a sub-section (`dit:`). Missing
/// keys take the type's defaults (`#[serde(default)]`).
pub trait ModelOptions: Serialize + DeserializeOwned + Default {
    /// The keys of `model:` it reads: the fields of the type, in order.
    const KEYS: &'static [&'static str];

    /// Range checks, against the shared settings where they depend on them.
    fn validate(&self, _model: &ModelConfig) -> Result<(), Invalid> {
        Ok(())
    }

    /// Adds what the stage key hashes of these options to `key`, defaults filled in.
    fn key_value(&self, _model: &ModelConfig, _key: &mut Options) {}
}

/// The options of a model that reads none.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct NoOptions {}

impl ModelOptions for NoOptions {
    const KEYS: &'static [&'static str] = &[];
}

/// One registry entry.
pub struct ModelSpec {
    /// The `model.type` value that selects it.
    pub name: &'static str,
    pub build: BuildFn,
    /// Version of this implementation's numerics: what it trains and forecasts for given
    /// weights and data. The train and evaluate keys hash it, so bumping it re-runs this
    /// type's stages (and only this type's). Bump it when a change moves results.
    pub version: u32,
    /// The keys of `model:` its options type reads.
    pub keys: &'static [&'static str],
    resolve: fn(&ModelConfig) -> Result<Options, Invalid>,
    key_value: fn(&ModelConfig) -> Options,
}

impl ModelSpec {
    const fn new<O: ModelOptions>(name: &'static str, build: BuildFn, version: u32) -> Self {
        ModelSpec {
            name,
            build,
            version,
            keys: O::KEYS,
            resolve: resolve_as::<O>,
            key_value: key_value_as::<O>,
        }
    }
}

/// The registry: `model.type` -> builder and options.
// Versions: every entry starts at 4, the train/evaluate version all models shared before
// versions became per implementation (2: lstm and gru gates as one GEMM per step; 3: the
// fused lstm layer, vectorised GELU and exp; 4: transformer and dit row matmuls), so that no
// cached key moved. dit 5: a price head on the context gives the point forecast (the samples
// give the band), as the other models' heads do. gru 5: the fused layer on flex
// (`gru_fused.rs`: tanh by its own polynomial, not 2σ(2a) - 1). transformer 5, dit 6:
// attention, layer norms and the encoder's linear layers (GELU included) as fused
// operations on flex.
pub const MODELS: &[ModelSpec] = &[
    ModelSpec::new::<NoOptions>("mlp", mlp::build, 4),
    ModelSpec::new::<NoOptions>("lstm", lstm::build, 4),
    ModelSpec::new::<NoOptions>("gru", gru::build, 5),
    ModelSpec::new::<transformer::TransformerOptions>("transformer", transformer::build, 5),
    ModelSpec::new::<dit::DitModelOptions>("dit", dit::build, 6),
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

/// What `config::resolve_file` is handed: every registry that owns options.
pub const REGISTRIES: Registries = Registries {
    model: resolve_options,
    optimizer: crate::optim::resolve_options,
    schedule: crate::optim::schedule::resolve_options,
};

/// Looks a model type up in the registry.
pub fn spec(kind: &str) -> Result<&'static ModelSpec, ModelError> {
    MODELS
        .iter()
        .find(|m| m.name == kind)
        .ok_or_else(|| ModelError::UnknownModel(kind.to_string()))
}

/// The version of `model_type`'s numerics ([`ModelSpec::version`]); `None` for an unknown
/// type.
pub fn implementation_version(model_type: &str) -> Option<u32> {
    spec(model_type).ok().map(|s| s.version)
}

fn owners() -> Vec<Owner> {
    MODELS
        .iter()
        .map(|m| Owner {
            name: m.name,
            keys: m.keys,
        })
        .collect()
}

/// Reads `model`'s options as its type's: unknown keys, keys of another type, value types
/// and ranges are errors naming the key; the options are put back with defaults filled in.
pub fn resolve_options(model: &mut ModelConfig) -> Result<(), Invalid> {
    let owners = owners();
    options::check_unknown(
        "model",
        ModelConfig::FIELDS,
        "type",
        &owners,
        &model.options,
    )?;
    let spec = spec(&model.kind).map_err(|_| {
        (
            "model.type".to_string(),
            unknown_name("model type", &model.kind, MODEL_NAMES),
        )
    })?;
    let kind = model.kind.clone();
    options::check_foreign("model", &owners, &kind, &model.options, |_key, by| {
        let by = options::and_list(by);
        format!("read by {by}, not by {kind}; remove it or set model.type")
    })?;
    model.options = (spec.resolve)(model)?;
    Ok(())
}

/// `model`'s options as `O`, defaults filled in; a config error for the builders.
pub(crate) fn options_of<O: ModelOptions>(model: &ModelConfig) -> Result<O, ModelError> {
    options::parse("model", &model.options)
        .map_err(|(key, message)| ModelError::Config(format!("{key}: {message}")))
}

fn resolve_as<O: ModelOptions>(model: &ModelConfig) -> Result<Options, Invalid> {
    let o: O = options::parse("model", &model.options)?;
    o.validate(model)?;
    Ok(options::to_options(&o))
}

fn key_value_as<O: ModelOptions>(model: &ModelConfig) -> Options {
    // Loaded configs have been read already; one built in code that does not read falls
    // back to the defaults, as a missing key would.
    let o: O = options::parse("model", &model.options).unwrap_or_default();
    let mut key = Options::new();
    o.key_value(model, &mut key);
    key
}

impl ModelConfig {
    /// The settings that matter for this `type`, as hashed into stage keys: a transformer's
    /// `num_heads` is not an LSTM's business, so changing it must not re-run an LSTM.
    pub fn key_value(&self) -> Value {
        let mut v = self.shared_key_value();
        if let (Ok(spec), Value::Object(map)) = (spec(&self.kind), &mut v) {
            map.extend((spec.key_value)(self));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn model(v: Value) -> ModelConfig {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn registry_names_match_the_config_list() {
        let names: Vec<&str> = MODELS.iter().map(|m| m.name).collect();
        assert_eq!(names, MODEL_NAMES);
    }

    /// Every entry started at the train/evaluate version the keys shared before, so no key
    /// moved; since, dit (5: its price head; 6: fused encoder operations), transformer (5:
    /// fused encoder operations) and gru (5: the fused layer) have moved.
    #[test]
    fn every_implementation_starts_at_version_4() {
        for name in MODEL_NAMES {
            let expected = match *name {
                "dit" => 6,
                "transformer" | "gru" => 5,
                _ => 4,
            };
            assert_eq!(implementation_version(name), Some(expected), "{name}");
        }
        assert_eq!(implementation_version("nope"), None);
    }

    /// The keys an entry declares are exactly its options type's fields.
    #[test]
    fn declared_keys_are_the_fields_of_the_options_type() {
        for m in MODELS {
            let mut cfg = model(json!({"type": m.name}));
            resolve_options(&mut cfg).unwrap();
            let fields: Vec<&str> = cfg.options.keys().map(String::as_str).collect();
            let mut keys = m.keys.to_vec();
            keys.sort_unstable();
            assert_eq!(fields, keys, "{}", m.name);
        }
    }

    #[test]
    fn an_option_of_another_model_type_is_an_error_naming_its_owners() {
        let mut lstm = model(json!({"type": "lstm", "num_heads": 2}));
        let (key, msg) = resolve_options(&mut lstm).unwrap_err();
        assert_eq!(key, "model.num_heads");
        assert_eq!(
            msg,
            "read by transformer and dit, not by lstm; remove it or set model.type"
        );
        let mut mlp = model(json!({"type": "mlp", "dit": {"samples": 8}}));
        let (key, msg) = resolve_options(&mut mlp).unwrap_err();
        assert_eq!(key, "model.dit");
        assert!(msg.starts_with("read by dit, not by mlp"), "{msg}");
        // Null is "not given", as for any optional key.
        resolve_options(&mut model(json!({"type": "gru", "ff_size": null}))).unwrap();
        let mut typo = model(json!({"type": "transformer", "num_head": 2}));
        let (key, msg) = resolve_options(&mut typo).unwrap_err();
        assert_eq!(key, "model.num_head");
        assert!(msg.contains("did you mean `num_heads`"), "{msg}");
        let (key, msg) = resolve_options(&mut model(json!({"type": "lstmm"}))).unwrap_err();
        assert_eq!(key, "model.type");
        assert!(msg.contains("did you mean `lstm`"), "{msg}");
    }

    #[test]
    fn options_are_resolved_with_defaults_and_ranges_checked() {
        let mut t = model(json!({"type": "transformer", "hidden_size": 8, "num_heads": 2}));
        resolve_options(&mut t).unwrap();
        assert_eq!(
            Value::Object(t.options.clone()),
            json!({"num_heads": 2, "ff_size": null, "pooling": "last", "positions": "sinusoidal"})
        );
        let bad = |v: Value| resolve_options(&mut model(v)).unwrap_err().0;
        assert_eq!(
            bad(json!({"type": "transformer", "hidden_size": 6, "num_heads": 4})),
            "model.num_heads"
        );
        assert_eq!(
            bad(json!({"type": "transformer", "ff_size": 0})),
            "model.ff_size"
        );
        assert_eq!(
            bad(json!({"type": "dit", "dit": {"sampling_steps": 200}})),
            "model.dit.sampling_steps"
        );
        assert_eq!(
            bad(json!({"type": "dit", "dit": {"samples": 1}})),
            "model.dit.samples"
        );
        assert_eq!(
            bad(json!({"type": "transformer", "pooling": "max"})),
            "model.pooling"
        );
    }
}
