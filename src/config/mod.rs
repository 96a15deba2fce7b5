//! Experiment files: typed schema, the one place defaults live, validation with positions,
//! and the canonical form that stage keys are computed from.
//!
//! Loading goes: YAML text -> located tree (`located`) -> JSON value -> typed [`Experiment`]
//! (serde, every field defaulted) -> range checks. Every error names the file, line, column
//! and key path. The canonical form of a section is its typed value serialised with sorted
//! keys, so comments, key order, number spelling (`1e-3` vs `0.001`) and formatting never
//! change a key.
//!
//! The options of a selected model, optimizer or schedule type belong to its registry entry
//! (in `model` and `optim`), which config does not import: [`resolve_file`] takes the
//! registries as [`Registries`] and calls them where it validates (see `options`).

pub mod data;
pub mod evaluation;
pub mod located;
pub mod model;
pub mod optimizer;
pub mod options;
pub mod resolve;
pub mod resources;
pub mod search;
pub mod sections;
pub mod training;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use data::{
    ApiConfig, ApiProvider, DataConfig, MAX_HORIZON, MAX_SEQUENCE_LENGTH, OnBadRows, SourceKind,
    SplitConfig, Symbols, SyntheticConfig, default_features, is_symbol, parse_date_key,
};
pub use evaluation::{EvaluationConfig, Signal, WalkForwardConfig, WindowKind};
pub use located::{LocationMap, Origin, Pos};
pub use model::ModelConfig;
pub use optimizer::OptimizerConfig;
pub use options::{Invalid, Options, Registries};
pub use search::SearchConfig;
pub use training::TrainingConfig;

/// Largest experiment file we read: configs are hand-written, anything bigger is a mistake.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// A config problem, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub pos: Pos,
    /// Dotted key path (`data.split.train`); empty for whole-file problems.
    pub key: String,
    pub message: String,
}

impl ConfigError {
    /// An error at `origin`; an override's origin (line 0) names the override instead of a
    /// file position.
    pub fn at(origin: &Origin, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: PathBuf::from(&*origin.source),
            pos: origin.pos,
            key: key.to_string(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pos.line == 0 {
            write!(f, "{}: ", self.file.display())?;
        } else {
            write!(
                f,
                "{}:{}:{}: ",
                self.file.display(),
                self.pos.line,
                self.pos.column
            )?;
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// One experiment, every value resolved (defaults filled in).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Experiment {
    /// Unique among the experiments of a build. Default: the file name without extension.
    pub name: String,
    /// Free text; read by no stage.
    pub description: String,
    /// Seeds model initialisation, dropout and shuffling. Default 42.
    pub seed: u64,
    pub data: DataConfig,
    pub model: ModelConfig,
    pub optimizer: OptimizerConfig,
    pub training: TrainingConfig,
    pub evaluation: EvaluationConfig,
    /// Hyperparameter search: the file defines the trials it proposes instead of one
    /// experiment. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search: Option<SearchConfig>,
}

impl Default for Experiment {
    fn default() -> Self {
        Experiment {
            name: String::new(),
            description: String::new(),
            seed: 42,
            data: DataConfig::default(),
            model: ModelConfig::default(),
            optimizer: OptimizerConfig::default(),
            training: TrainingConfig::default(),
            evaluation: EvaluationConfig::default(),
            search: None,
        }
    }
}

/// Reads an experiment file's text, refusing oversized or non-UTF-8 files.
pub fn read_text(path: &Path) -> Result<String, ConfigError> {
    let whole_file = |message: String| ConfigError {
        file: path.to_path_buf(),
        pos: Pos { line: 1, column: 1 },
        key: String::new(),
        message,
    };
    let too_big = |size: String| {
        whole_file(format!(
            "file is {size} bytes; config files are limited to {MAX_CONFIG_BYTES} bytes"
        ))
    };
    let meta = std::fs::metadata(path).map_err(|e| whole_file(format!("cannot read: {e}")))?;
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(too_big(meta.len().to_string()));
    }
    // Read at most one byte past the limit: the file may be growing, or be a device or a
    // pipe whose size metadata does not tell.
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| {
            use std::io::Read;
            f.take(MAX_CONFIG_BYTES + 1).read_to_end(&mut bytes)
        })
        .map_err(|e| whole_file(format!("cannot read: {e}")))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(too_big(format!("more than {MAX_CONFIG_BYTES}")));
    }
    String::from_utf8(bytes).map_err(|e| {
        // Point at the first invalid byte: the line and column an editor shows.
        let valid = e.utf8_error().valid_up_to();
        let (line, column) = located::line_column(e.as_bytes(), valid);
        ConfigError {
            pos: Pos {
                line: line as u64,
                column: column as u64,
            },
            ..whole_file(format!(
                "not UTF-8 (invalid byte at offset {valid}); save the file as UTF-8"
            ))
        }
    })
}

/// Parses experiment text; `default_name` is used when the file sets no `name`.
pub fn parse_str(
    file: &Path,
    text: &str,
    default_name: &str,
    registries: &Registries,
) -> Result<Experiment, ConfigError> {
    let mut no_templates = |p: &Path| Err(format!("{} is not available here", p.display()));
    let mut all = resolve_file(
        file,
        text,
        default_name,
        &[],
        None,
        &mut no_templates,
        registries,
    )?;
    match all.len() {
        1 => Ok(all.remove(0).experiment),
        n => Err(ConfigError::at(
            &located::Origin::new(&file.display().to_string(), Pos { line: 1, column: 1 }),
            "matrix",
            format!("defines {n} experiments; expected one"),
        )),
    }
}

/// One resolved experiment and where each of its values was set.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub experiment: Experiment,
    pub locations: LocationMap,
    /// A file's `search:` experiment itself, which is never built: its trials are.
    pub search_base: bool,
}

/// Every experiment an experiment file defines (one, or one per matrix point), with its
/// templates merged and `overrides` (`path=value`) applied, typed and validated.
/// `default_name` names experiments that set no `name`. The `registries` read the options
/// of the selected model, optimizer and schedule types (config imports neither `model` nor
/// `optim`; the caller passes `model::REGISTRIES`).
pub fn resolve_file(
    file: &Path,
    text: &str,
    default_name: &str,
    overrides: &[String],
    trial: Option<&resolve::Trial>,
    read_template: &mut resolve::TemplateReader,
    registries: &Registries,
) -> Result<Vec<Resolved>, ConfigError> {
    let blank = text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'));
    if blank {
        return Err(ConfigError::at(
            &located::Origin::new(
                &file.display().to_string(),
                located::Pos { line: 1, column: 1 },
            ),
            "",
            "the file is empty: an experiment needs at least a `data` section \
             (templates/base.yaml lists every key with its default)",
        ));
    }
    let points = resolve::resolve(file, text, overrides, trial, read_template)
        .map_err(|e| ConfigError::at(&e.origin, &e.key, e.message))?;
    points
        .into_iter()
        .map(|point| {
            let mut locations = LocationMap::default();
            let json = point.tree.to_json(&mut locations);
            let mut experiment: Experiment =
                serde_path_to_error::deserialize(json).map_err(|e| {
                    let path = json_path(e.path());
                    let message = explain_serde_error(&e.inner().to_string());
                    ConfigError::at(&locations.find(&path), &path, message)
                })?;
            if experiment.name.is_empty() {
                experiment.name = default_name.to_string();
            }
            if let Some(c) = experiment.name.chars().find(|c| c.is_control()) {
                return Err(ConfigError::at(
                    &locations.find("name"),
                    "name",
                    format!(
                        "must be one line of printable text (it holds {c:?}): names label \
                         files, tables and the lockfile"
                    ),
                ));
            }
            experiment.name.push_str(&point.suffix);
            if let Err((key, message)) = validate(&mut experiment, registries) {
                return Err(ConfigError::at(&locations.find(&key), &key, message));
            }
            check_data_path(&experiment, &locations)?;
            Ok(Resolved {
                search_base: experiment.search.is_some() && trial.is_none(),
                experiment,
                locations,
            })
        })
        .collect()
}

/// A local `data.path` must stay inside the project directory unless it was given on the
/// command line (`--set data.path=...`): a config file shared with you cannot make hft read
/// files elsewhere on your machine.
fn check_data_path(e: &Experiment, locations: &LocationMap) -> Result<(), ConfigError> {
    if e.data.source != SourceKind::Local || !resolve::escapes_project(Path::new(&e.data.path)) {
        return Ok(());
    }
    let origin = locations.find("data.path");
    if origin.pos.line == 0 && origin.source.starts_with("--set ") {
        return Ok(());
    }
    Err(ConfigError::at(
        &origin,
        "data.path",
        format!(
            "`{}` is outside the project directory; give data outside it on the command \
             line instead: --set data.path={}",
            e.data.path, e.data.path
        ),
    ))
}

/// Renders serde_path_to_error's path as `data.split[0].train`.
pub(crate) fn json_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in path.iter() {
        match seg {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {}
        }
    }
    out
}

/// Adds "did you mean" to serde's unknown-field / unknown-variant messages.
pub(crate) fn explain_serde_error(message: &str) -> String {
    // A whole number too big for its type reaches serde as a float: say what it is.
    if let Some(rest) = message.strip_prefix("invalid type: floating point `")
        && let Some((number, expected)) = rest.split_once("`, expected ")
        && let Some(max) = match expected {
            "u64" | "usize" => Some(u64::MAX.to_string()),
            "u32" => Some(u32::MAX.to_string()),
            "i64" => Some(i64::MAX.to_string()),
            _ => None,
        }
        && number
            .parse::<f64>()
            .is_ok_and(|x| x.fract() == 0.0 && x.abs() >= 9.0e15)
    {
        return format!("{number} is out of range: a whole number from 0 to {max}");
    }
    if message.contains("expected a string") {
        // YAML reads `ON`, `NO` or `0700` as a bool or number; tickers need quotes.
        return format!("{message}; quote the value if it is text (e.g. \"ON\")");
    }
    let is_unknown = message.starts_with("unknown field") || message.starts_with("unknown variant");
    if !is_unknown {
        return message.to_string();
    }
    let quoted: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
    match quoted.split_first() {
        Some((given, expected)) => match did_you_mean(given, expected.iter().copied()) {
            Some(best) => format!("{message}; did you mean `{best}`?"),
            None => message.to_string(),
        },
        None => message.to_string(),
    }
}

/// The closest candidate to `given`, if any is close enough to be a plausible typo.
pub fn did_you_mean<'a>(given: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (strsim::damerau_levenshtein(given, c), c))
        .filter(|(d, c)| {
            // A typo, or an abbreviation / elaboration (`lrate` for `lr`).
            let close = *d <= (c.len().max(given.len()) / 3).max(2);
            let prefix = c.len() >= 2 && (given.starts_with(c) || c.starts_with(given));
            close || prefix
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Range and consistency checks, and the registries' reading of the type-specific options
/// (which fills in their defaults). Returns the offending key path and message.
pub fn validate(e: &mut Experiment, registries: &Registries) -> Result<(), (String, String)> {
    data::validate_data(&e.data)?;
    e.model.validate_shared()?;
    (registries.model)(&mut e.model)?;
    e.optimizer.validate_shared()?;
    (registries.optimizer)(&mut e.optimizer)?;
    e.training.validate()?;
    (registries.schedule)(&mut e.training)?;
    e.evaluation.validate()?;
    if let Some(w) = &e.evaluation.walk_forward {
        w.validate(e.data.sequence_length + e.data.prediction_horizon)?;
    }
    if let Some(s) = &e.search {
        s.validate()?;
    }
    Ok(())
}

pub(crate) fn unknown_name(what: &str, given: &str, known: &[&str]) -> String {
    match did_you_mean(given, known.iter().copied()) {
        Some(best) => format!("unknown {what} `{given}`; did you mean `{best}`?"),
        None => format!("unknown {what} `{given}`; known: {}", known.join(", ")),
    }
}

/// Leaves of a JSON value by dotted path (`optimizer.lr`); arrays are expanded by index
/// (`betas[0]`) when `expand_arrays`, else kept whole as one leaf.
pub fn json_leaves(v: &serde_json::Value, expand_arrays: bool) -> Vec<(String, serde_json::Value)> {
    fn walk(
        prefix: &str,
        v: &serde_json::Value,
        expand: bool,
        out: &mut Vec<(String, serde_json::Value)>,
    ) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, child) in map {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&p, child, expand, out);
                }
            }
            serde_json::Value::Array(items) if expand => {
                for (i, child) in items.iter().enumerate() {
                    walk(&format!("{prefix}[{i}]"), child, expand, out);
                }
            }
            other => out.push((prefix.to_string(), other.clone())),
        }
    }
    let mut out = Vec::new();
    walk("", v, expand_arrays, &mut out);
    out
}

/// Canonical bytes of a serialisable value: JSON with object keys sorted at every level and
/// numbers in serde_json's shortest round-trip form. Stage keys hash exactly these bytes.
pub fn canonical_json<T: Serialize>(value: &T) -> String {
    fn sort(v: serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(map) => {
                let mut entries: Vec<(String, serde_json::Value)> = map.into_iter().collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                serde_json::Value::Object(entries.into_iter().map(|(k, v)| (k, sort(v))).collect())
            }
            serde_json::Value::Array(items) => {
                serde_json::Value::Array(items.into_iter().map(sort).collect())
            }
            // -0.0 and 0.0 are the same setting: one key.
            serde_json::Value::Number(n) if n.as_f64() == Some(0.0) && n.is_f64() => {
                serde_json::Value::from(0.0)
            }
            other => other,
        }
    }
    // Serialising our own config types cannot fail: they hold no maps with non-string keys
    // and no non-finite floats (validation rejects those).
    let value = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
    sort(value).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Experiment, ConfigError> {
        parse_str(Path::new("exp.yaml"), text, "exp", &Registries::UNCHECKED)
    }

    #[test]
    fn an_empty_file_is_an_error_and_defaults_fill_the_rest() {
        let err = parse("# to do\n\n").unwrap_err();
        assert!(err.message.contains("the file is empty"), "{}", err.message);
        let e = parse("seed: 1\n").unwrap();
        assert_eq!(e.name, "exp");
        assert_eq!(e.data, DataConfig::default());
    }

    #[test]
    fn unknown_key_suggests_the_closest() {
        let err = parse("evaluation:\n  signal: price\n  cost_bp: 0.1\n").unwrap_err();
        assert_eq!(err.key, "evaluation.cost_bp");
        assert_eq!(err.pos.line, 3);
        assert!(
            err.message.contains("did you mean `cost_bps`"),
            "{}",
            err.message
        );
    }

    #[test]
    fn walk_forward_settings_are_checked_with_their_key() {
        let ok = parse(
            "evaluation:\n  walk_forward: {train_bars: 200, test_bars: 40, window: rolling}\n",
        )
        .unwrap();
        let w = ok.evaluation.walk_forward.clone().unwrap();
        assert_eq!((w.val_bars(), w.step(), w.embargo), (40, 40, 0));
        assert_eq!(w.window, WindowKind::Rolling);
        // The evaluate key does not read walk-forward settings.
        assert_eq!(
            ok.evaluation.key_value(),
            EvaluationConfig::default().key_value()
        );
        // Defaults: sequence_length 30 + prediction_horizon 5 rows per window.
        let cases = [
            (
                "{train_bars: 200, test_bars: 40, val_bars: 20}",
                "walk_forward.val_bars",
                "35",
            ),
            (
                "{train_bars: 60, test_bars: 40}",
                "walk_forward.train_bars",
                "no training window",
            ),
            (
                "{train_bars: 200, test_bars: 0}",
                "walk_forward.test_bars",
                "between 1",
            ),
            (
                "{train_bars: 200, test_bars: 40, folds: 0}",
                "walk_forward.folds",
                "between 1",
            ),
            (
                "{train_bars: 200, test_bars: 40, step: 0}",
                "walk_forward.step",
                "between 1",
            ),
            (
                "{train_bars: 200, test_bar: 40}",
                "walk_forward",
                "test_bars",
            ),
            (
                "{train_bars: 200, test_bars: 40, window: growing}",
                "walk_forward",
                "expanding",
            ),
        ];
        for (value, key, says) in cases {
            let err = parse(&format!("evaluation:\n  walk_forward: {value}\n")).unwrap_err();
            assert!(
                err.key.contains(key),
                "{value}: {} {}",
                err.key,
                err.message
            );
            assert!(err.message.contains(says), "{value}: {}", err.message);
            assert_eq!(err.pos.line, 2, "{value}");
        }
    }

    #[test]
    fn wrong_type_names_line_and_key() {
        let err = parse("data:\n  sequence_length: ten\n").unwrap_err();
        assert_eq!(err.key, "data.sequence_length");
        assert_eq!((err.pos.line, err.pos.column), (2, 3));
    }

    #[test]
    fn splits_must_sum_to_one() {
        let err = parse("data:\n  split: {train: 0.5, val: 0.2, test: 0.2}\n").unwrap_err();
        assert_eq!(err.key, "data.split");
        assert_eq!(err.pos.line, 2);
        assert!(err.message.contains("sum to 1"));
    }

    #[test]
    fn unknown_feature_is_rejected_with_suggestion() {
        let err = parse("data:\n  features: [close, rsi14]\n").unwrap_err();
        assert_eq!(err.key, "data.features[1]");
        assert!(
            err.message.contains("did you mean `rsi_14`"),
            "{}",
            err.message
        );
    }

    fn resolve_with(text: &str, overrides: &[&str]) -> Result<Vec<Resolved>, ConfigError> {
        let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        let mut none = |p: &Path| Err(format!("{} not found", p.display()));
        resolve_file(
            Path::new("exp.yaml"),
            text,
            "exp",
            &overrides,
            None,
            &mut none,
            &Registries::UNCHECKED,
        )
    }

    #[test]
    fn data_paths_outside_the_project_need_the_command_line() {
        for bad in ["../outside", "/etc", "data/../../x"] {
            let text = format!("seed: 1\ndata:\n  source: local\n  path: {bad}\n");
            let err = resolve_with(&text, &[]).unwrap_err();
            assert_eq!(err.key, "data.path", "{bad}");
            assert_eq!(err.pos.line, 4, "{bad}");
            assert!(
                err.message.contains("outside the project directory"),
                "{}",
                err.message
            );
            assert!(
                err.message.contains(&format!("--set data.path={bad}")),
                "{}",
                err.message
            );
            // Given on the command line, it is the user's explicit choice.
            let ok = resolve_with(&text, &[&format!("data.path={bad}")]).unwrap();
            assert_eq!(ok[0].experiment.data.path, bad);
        }
        // A matrix value is part of the file.
        let err = resolve_with("matrix:\n  data.path: [data, ../up]\n", &[]).unwrap_err();
        assert_eq!((err.key.as_str(), err.pos.line), ("data.path", 2));
        // Synthetic experiments read no path.
        assert!(resolve_with("data: {source: synthetic, path: ../x}", &[]).is_ok());
        assert!(resolve_with("data: {path: data/../trainingdata}", &[]).is_ok());
    }

    #[test]
    fn negative_zero_is_zero() {
        let a = parse("data: {action_threshold: 0.0}").unwrap();
        let b = parse("data: {action_threshold: -0.0}").unwrap();
        assert_eq!(canonical_json(&a), canonical_json(&b));
    }

    #[test]
    fn huge_windows_are_rejected() {
        let err = parse("data: {sequence_length: 18446744073709551615}").unwrap_err();
        assert_eq!(err.key, "data.sequence_length");
    }

    #[test]
    fn boolean_looking_tickers_get_a_quoting_hint() {
        let err = parse("data: {symbols: [ON]}").unwrap_err();
        assert!(err.message.contains("quote"), "{}", err.message);
    }

    #[test]
    fn canonical_form_ignores_order_comments_and_number_spelling() {
        let a = parse("# c\nseed: 1\noptimizer: {lr: 0.001, type: adamw}\n").unwrap();
        let b = parse("optimizer:\n  type: adamw   # same\n  lr: 1e-3\nseed: 1\n").unwrap();
        assert_eq!(canonical_json(&a), canonical_json(&b));
    }
}
