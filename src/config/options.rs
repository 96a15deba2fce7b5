//! The type-specific part of a section. `model`, `optimizer` and `training` (its schedule)
//! each have a key that selects a registry entry (`model.type`, `optimizer.type`,
//! `training.schedule`); every other key the entry reads is that entry's option. config keeps
//! those options as the raw subtree ([`Options`]) and leaves reading them to the entry that
//! owns them (`model::MODELS`, `optim::OPTIMIZERS`, `optim::schedule::SCHEDULES`), which it
//! does not import: the caller hands the registries in as [`Registries`].
//!
//! Separate from the sections because it is the contract between config and the registries:
//! the range-check helpers and the checks every registry shares (unknown key, a key owned by
//! another type, typed reading with the key path named) live here once.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{ModelConfig, OptimizerConfig, TrainingConfig};

/// A failed check: (key path, message). The loader adds file and position.
pub type Invalid = (String, String);

/// The raw options of a section: every key but the section's own fields. After loading,
/// the selected type's options with their defaults filled in.
pub type Options = serde_json::Map<String, serde_json::Value>;

pub fn fail<T>(key: &str, message: impl Into<String>) -> Result<T, Invalid> {
    Err((key.to_string(), message.into()))
}

/// `Ok` when `v` is finite and in `[0, 1)`.
pub fn check_unit(key: &str, v: f64) -> Result<(), Invalid> {
    if v.is_finite() && (0.0..1.0).contains(&v) {
        Ok(())
    } else {
        fail(key, format!("must be in [0, 1) (got {v})"))
    }
}

pub fn check_positive(key: &str, v: f64) -> Result<(), Invalid> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        fail(key, format!("must be a positive number (got {v})"))
    }
}

/// What the registries do for config: read the options of the selected type out of the raw
/// subtree, check them (unknown keys, keys of another type, value types, ranges) and put them
/// back with defaults filled in, so that `hft config show` prints every value the type reads.
/// Handed in by the caller so that config imports neither `model` nor `optim`.
#[derive(Clone, Copy)]
pub struct Registries {
    pub model: fn(&mut ModelConfig) -> Result<(), Invalid>,
    pub optimizer: fn(&mut OptimizerConfig) -> Result<(), Invalid>,
    pub schedule: fn(&mut TrainingConfig) -> Result<(), Invalid>,
}

impl Registries {
    /// Leaves the options as given, unchecked: for tests of config on its own.
    pub const UNCHECKED: Registries = Registries {
        model: |_| Ok(()),
        optimizer: |_| Ok(()),
        schedule: |_| Ok(()),
    };
}

/// One registry entry as the shared checks see it: its name and the keys of its section it
/// reads (besides the section's own fields).
#[derive(Debug, Clone, Copy)]
pub struct Owner {
    pub name: &'static str,
    pub keys: &'static [&'static str],
}

/// `a`, `a and b`, `a, b and c`.
pub fn and_list(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// The first key of `options` that no entry reads, as serde's unknown-field error with a
/// suggestion. `fields` are the section's own fields in order; the entries' keys are listed
/// right after `selector`, the field that names the type (where they stood as fields).
pub fn check_unknown(
    section: &str,
    fields: &[&str],
    selector: &str,
    owners: &[Owner],
    options: &Options,
) -> Result<(), Invalid> {
    let Some(key) = options
        .keys()
        .find(|k| !owners.iter().any(|o| o.keys.contains(&k.as_str())))
    else {
        return Ok(());
    };
    let mut expected: Vec<&str> = Vec::new();
    for field in fields {
        expected.push(field);
        if *field == selector {
            for k in owners.iter().flat_map(|o| o.keys.iter()) {
                if !expected.contains(k) {
                    expected.push(k);
                }
            }
        }
    }
    let list: Vec<String> = expected.iter().map(|k| format!("`{k}`")).collect();
    let message = format!("unknown field `{key}`, expected one of {}", list.join(", "));
    fail(
        &format!("{section}.{key}"),
        super::explain_serde_error(&message),
    )
}

/// The first given (non-null) key of `options` that `selected` does not read. Keys are
/// checked in registry order; `message(key, owners of the key)` says it in the section's
/// words.
pub fn check_foreign(
    section: &str,
    owners: &[Owner],
    selected: &str,
    options: &Options,
    message: impl Fn(&str, &[&str]) -> String,
) -> Result<(), Invalid> {
    let reads = |name: &str, key: &str| {
        owners
            .iter()
            .any(|o| o.name == name && o.keys.contains(&key))
    };
    let mut seen: Vec<&str> = Vec::new();
    for key in owners.iter().flat_map(|o| o.keys.iter().copied()) {
        if seen.contains(&key) {
            continue;
        }
        seen.push(key);
        let given = options.get(key).is_some_and(|v| !v.is_null());
        if given && !reads(selected, key) {
            let by: Vec<&str> = owners
                .iter()
                .filter(|o| o.keys.contains(&key))
                .map(|o| o.name)
                .collect();
            return fail(&format!("{section}.{key}"), message(key, &by));
        }
    }
    Ok(())
}

/// Reads typed options: missing keys take `T`'s defaults, a wrong value names its key path
/// under `section` (`optimizer.sgd.momentum`).
pub fn parse<T: DeserializeOwned>(section: &str, options: &Options) -> Result<T, Invalid> {
    let value = serde_json::Value::Object(options.clone());
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = super::json_path(e.path());
        let key = if path.is_empty() {
            section.to_string()
        } else {
            format!("{section}.{path}")
        };
        (key, super::explain_serde_error(&e.inner().to_string()))
    })
}

/// Typed options back in the raw form, as `hft config show` prints them.
pub fn to_options<T: Serialize>(options: &T) -> Options {
    // Option types hold plain numbers, strings and lists: serialising cannot fail.
    match serde_json::to_value(options) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => Options::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const OWNERS: &[Owner] = &[
        Owner {
            name: "a",
            keys: &["x", "shared"],
        },
        Owner {
            name: "b",
            keys: &["shared", "b"],
        },
        Owner {
            name: "c",
            keys: &["shared"],
        },
    ];

    fn options(v: serde_json::Value) -> Options {
        match v {
            serde_json::Value::Object(m) => m,
            _ => Options::new(),
        }
    }

    #[test]
    fn unknown_keys_are_listed_after_the_selector_with_a_suggestion() {
        let given = options(json!({"shraed": 1}));
        let (key, msg) =
            check_unknown("s", &["type", "lr", "wd"], "type", OWNERS, &given).unwrap_err();
        assert_eq!(key, "s.shraed");
        assert!(
            msg.starts_with(
                "unknown field `shraed`, expected one of `type`, `x`, `shared`, `b`, `lr`, `wd`"
            ),
            "{msg}"
        );
        assert!(msg.contains("did you mean `shared`"), "{msg}");
        check_unknown("s", &["type"], "type", OWNERS, &options(json!({"b": 1}))).unwrap();
    }

    #[test]
    fn keys_of_other_types_name_their_owners_and_null_is_not_given() {
        let msg = |key: &str, by: &[&str]| format!("{key} by {}", and_list(by));
        let given = options(json!({"b": {}, "x": null}));
        let (key, m) = check_foreign("s", OWNERS, "c", &given, msg).unwrap_err();
        assert_eq!((key.as_str(), m.as_str()), ("s.b", "b by b"));
        check_foreign("s", OWNERS, "b", &given, msg).unwrap();
        let given = options(json!({"x": 1}));
        assert_eq!(
            check_foreign("s", OWNERS, "b", &given, msg).unwrap_err().1,
            "x by a"
        );
        assert_eq!(and_list(&["a", "b", "c"]), "a, b and c");
    }

    #[test]
    fn typed_reading_names_the_key_path() {
        #[derive(serde::Deserialize, Default, Debug)]
        #[serde(default)]
        struct T {
            #[allow(dead_code)]
            n: usize,
        }
        let (key, _) = parse::<T>("s", &options(json!({"n": "ten"}))).unwrap_err();
        assert_eq!(key, "s.n");
        assert_eq!(parse::<T>("s", &Options::new()).unwrap().n, 0);
    }

    /// The field lists behind unknown-key messages are the sections' serde fields.
    #[test]
    fn section_field_lists_match_their_types() {
        fn keys(v: impl Serialize) -> Vec<String> {
            let mut keys: Vec<String> = to_options(&v).keys().cloned().collect();
            keys.sort();
            keys
        }
        fn sorted(fields: &[&str]) -> Vec<String> {
            let mut v: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
            v.sort();
            v
        }
        assert_eq!(keys(ModelConfig::default()), sorted(ModelConfig::FIELDS));
        assert_eq!(
            keys(OptimizerConfig::default()),
            sorted(OptimizerConfig::FIELDS)
        );
        let training = TrainingConfig {
            resources: Some(Default::default()),
            ..TrainingConfig::default()
        };
        assert_eq!(keys(training), sorted(TrainingConfig::FIELDS));
    }
}
