//! Experiment files: typed schema, the one place defaults live, validation with positions,
//! and the canonical form that stage keys are computed from.
//!
//! Loading goes: YAML text -> located tree (`located`) -> JSON value -> typed [`Experiment`]
//! (serde, every field defaulted) -> range checks. Every error names the file, line, column
//! and key path. The canonical form of a section is its typed value serialised with sorted
//! keys, so comments, key order, number spelling (`1e-3` vs `0.001`) and formatting never
//! change a key.

pub mod located;
pub mod resolve;
pub mod sections;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use located::{LocationMap, Origin, Pos};
pub use sections::{
    EvaluationConfig, ModelConfig, OptimizerConfig, Pooling, Signal, TrainingConfig,
};

/// Largest accepted `data.sequence_length`.
pub const MAX_SEQUENCE_LENGTH: usize = 100_000;
/// Largest accepted `data.prediction_horizon`.
pub const MAX_HORIZON: usize = 10_000;

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
        }
    }
}

/// Where bars come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// CSV or Parquet files under `data.path` (layouts: `data::layout`).
    Local,
    /// Seeded generated bars (`data.synthetic`): runs anywhere with no data.
    Synthetic,
    /// Bars fetched over HTTP (`data.api`), snapshotted into the store on first use.
    Api,
}

/// `data.symbols`: a list, or `all` (every symbol found under `data.path`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Symbols {
    All,
    List(Vec<String>),
}

impl Symbols {
    /// The listed symbols; empty for `all` (resolved against the data folder when planning).
    pub fn listed(&self) -> &[String] {
        match self {
            Symbols::All => &[],
            Symbols::List(v) => v,
        }
    }
}

impl Serialize for Symbols {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Symbols::All => s.serialize_str("all"),
            Symbols::List(v) => v.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Symbols {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Symbols;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of symbols or `all`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Symbols, E> {
                if v == "all" {
                    Ok(Symbols::All)
                } else {
                    Err(E::custom(format!(
                        "expected a list of symbols (`[{v}]`) or `all`, got `{v}`"
                    )))
                }
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Symbols, A::Error> {
                Vec::<String>::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
                    .map(Symbols::List)
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// `data.on_bad_rows`: what a bad data row does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnBadRows {
    /// The build stops with a message naming the file, line and column.
    #[default]
    Error,
    /// The row is left out; how many were is reported.
    Drop,
}

/// `data.api.provider`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiProvider {
    /// Alpaca market data v2 (`/v2/stocks/{symbol}/bars`, JSON, paginated).
    Alpaca,
    /// Stooq's CSV download (`/q/d/l/?s=aapl.us&i=d`).
    Stooq,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Default `alpaca`.
    pub provider: ApiProvider,
    /// Default: the provider's public endpoint (`https://data.alpaca.markets`,
    /// `https://stooq.com`).
    pub base_url: Option<String>,
    /// Bar interval: `1d` (default), `1w`, `1h`, `15min`, `5min`, `1min`.
    pub interval: String,
    /// Seconds per HTTP request before it is retried. Default 30.
    pub timeout_secs: f64,
    /// Retries after a timeout, a connection error, HTTP 429 or 5xx. Default 3.
    pub retries: u32,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            provider: ApiProvider::Alpaca,
            base_url: None,
            interval: "1d".to_string(),
            timeout_secs: 30.0,
            retries: 3,
        }
    }
}

impl ApiConfig {
    pub fn base_url(&self) -> &str {
        match (&self.base_url, self.provider) {
            (Some(url), _) => url,
            (None, ApiProvider::Alpaca) => "https://data.alpaca.markets",
            (None, ApiProvider::Stooq) => "https://stooq.com",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Default `local`.
    pub source: SourceKind,
    /// Folder of `SYMBOL.csv` / `SYMBOL.parquet` files (or `train/` and `test/` folders, or
    /// dated exports `SYMBOL-YYYY-MM-DD.csv`), relative to the directory hft runs in.
    /// Default `trainingdata/`.
    pub path: String,
    /// A list, or `all` (every symbol under `data.path`). Default `[SYNTH]`.
    pub symbols: Symbols,
    pub synthetic: SyntheticConfig,
    pub api: ApiConfig,
    /// Keep bars on or after this date (`YYYY-MM-DD`). Default: no limit.
    pub start: Option<String>,
    /// Keep bars on or before this date (`YYYY-MM-DD`, the whole day). Default: no limit.
    pub end: Option<String>,
    /// `error` (default) or `drop`.
    pub on_bad_rows: OnBadRows,
    /// Add one 0/1 input per symbol (which symbol a window is from). Default false.
    pub symbol_id: bool,
    /// Whether a window may span a session gap (intraday: overnight). Default true.
    pub cross_sessions: bool,
    /// Feature names (see `hft features` / features.md). Default: [`default_features`].
    pub features: Vec<String>,
    /// Bars per input window. Default 30.
    pub sequence_length: usize,
    /// Future returns predicted per window. Default 5.
    pub prediction_horizon: usize,
    /// |r1| above this is buy/sell, else hold. Default 0.01.
    pub action_threshold: f64,
    pub split: SplitConfig,
    /// Express price-level features relative to each window's last close. Default true.
    pub relative_prices: bool,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            source: SourceKind::Local,
            path: "trainingdata/".to_string(),
            symbols: Symbols::List(vec!["SYNTH".to_string()]),
            synthetic: SyntheticConfig::default(),
            api: ApiConfig::default(),
            start: None,
            end: None,
            on_bad_rows: OnBadRows::Error,
            symbol_id: false,
            cross_sessions: true,
            features: default_features(),
            sequence_length: 30,
            prediction_horizon: 5,
            action_threshold: 0.01,
            split: SplitConfig::default(),
            relative_prices: true,
        }
    }
}

/// The feature set used when `data.features` is not given.
pub fn default_features() -> Vec<String> {
    [
        "close",
        "volume",
        "log_return",
        "price_change_5",
        "ma_20",
        "ema_10",
        "rsi_14",
        "macd",
        "macd_signal",
        "bb_position",
        "bb_width",
        "high_low_ratio",
        "volume_ratio",
        "volatility",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyntheticConfig {
    /// Bars per symbol. Default 1500.
    pub bars: usize,
    /// Generator seed (each symbol mixes in its name). Default 7. Separate from the
    /// experiment seed so that changing the model seed does not regenerate data.
    pub seed: u64,
    /// First close. Default 100.
    pub start_price: f64,
    /// Spacing of bars in seconds; 86400 gives weekday daily bars. Default 86400.
    pub bar_seconds: i64,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        SyntheticConfig {
            bars: 1500,
            seed: 7,
            start_price: 100.0,
            bar_seconds: 86_400,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SplitConfig {
    /// Shares of each symbol's bars, in time order. Defaults 0.7 / 0.15 / 0.15.
    pub train: f64,
    pub val: f64,
    pub test: f64,
}

impl Default for SplitConfig {
    fn default() -> Self {
        SplitConfig {
            train: 0.7,
            val: 0.15,
            test: 0.15,
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
        let before = e.as_bytes().get(..valid).unwrap_or_default();
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let column = String::from_utf8_lossy(before.get(line_start..).unwrap_or_default())
            .chars()
            .count() as u64
            + 1;
        ConfigError {
            pos: Pos {
                line: before.iter().filter(|&&b| b == b'\n').count() as u64 + 1,
                column,
            },
            ..whole_file(format!(
                "not UTF-8 (invalid byte at offset {valid}); save the file as UTF-8"
            ))
        }
    })
}

/// Parses experiment text; `default_name` is used when the file sets no `name`.
pub fn parse_str(file: &Path, text: &str, default_name: &str) -> Result<Experiment, ConfigError> {
    let mut no_templates = |p: &Path| Err(format!("{} is not available here", p.display()));
    let mut all = resolve_file(file, text, default_name, &[], &mut no_templates)?;
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
}

/// Every experiment an experiment file defines (one, or one per matrix point), with its
/// templates merged and `overrides` (`path=value`) applied, typed and validated.
/// `default_name` names experiments that set no `name`.
pub fn resolve_file(
    file: &Path,
    text: &str,
    default_name: &str,
    overrides: &[String],
    read_template: &mut resolve::TemplateReader,
) -> Result<Vec<Resolved>, ConfigError> {
    let points = resolve::resolve(file, text, overrides, read_template)
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
            experiment.name.push_str(&point.suffix);
            if let Err((key, message)) = validate(&experiment) {
                return Err(ConfigError::at(&locations.find(&key), &key, message));
            }
            check_data_path(&experiment, &locations)?;
            Ok(Resolved {
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
fn json_path(path: &serde_path_to_error::Path) -> String {
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
fn explain_serde_error(message: &str) -> String {
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

/// Range and consistency checks. Returns the offending key path and message.
pub fn validate(e: &Experiment) -> Result<(), (String, String)> {
    fn fail<T>(key: &str, message: impl Into<String>) -> Result<T, (String, String)> {
        Err((key.to_string(), message.into()))
    }
    let d = &e.data;
    let symbols = d.symbols.listed();
    if d.symbols == Symbols::All && d.source != SourceKind::Local {
        return fail(
            "data.symbols",
            "`all` means every symbol under data.path and needs `data.source: local`; list the symbols",
        );
    }
    if d.symbols != Symbols::All && symbols.is_empty() {
        return fail("data.symbols", "needs at least one symbol");
    }
    for (i, s) in symbols.iter().enumerate() {
        if !is_symbol(s) {
            return fail(
                &format!("data.symbols[{i}]"),
                format!("`{s}` is not a symbol (letters, digits and . - _ ^ =, at most 32)"),
            );
        }
        if symbols[..i].contains(s) {
            return fail(
                &format!("data.symbols[{i}]"),
                format!("`{s}` is listed twice"),
            );
        }
    }
    if d.features.is_empty() {
        return fail("data.features", "needs at least one feature");
    }
    for (i, f) in d.features.iter().enumerate() {
        if crate::data::features::lookback(f).is_none() {
            let all = crate::data::features::ALL_FEATURES;
            let hint = match did_you_mean(f, all.iter().copied()) {
                Some(best) => format!("; did you mean `{best}`?"),
                None => format!("; known features: {}", all.join(", ")),
            };
            return fail(
                &format!("data.features[{i}]"),
                format!("unknown feature `{f}`{hint}"),
            );
        }
        if d.features[..i].contains(f) {
            return fail(
                &format!("data.features[{i}]"),
                format!("`{f}` is listed twice"),
            );
        }
    }
    // Upper bounds keep index arithmetic far from overflow; real windows are far smaller.
    if !(1..=MAX_SEQUENCE_LENGTH).contains(&d.sequence_length) {
        return fail(
            "data.sequence_length",
            format!("must be between 1 and {MAX_SEQUENCE_LENGTH}"),
        );
    }
    if !(1..=MAX_HORIZON).contains(&d.prediction_horizon) {
        return fail(
            "data.prediction_horizon",
            format!("must be between 1 and {MAX_HORIZON}"),
        );
    }
    if !(d.action_threshold.is_finite() && d.action_threshold >= 0.0) {
        return fail("data.action_threshold", "must be a finite number >= 0");
    }
    let s = &d.split;
    for (key, v) in [("train", s.train), ("val", s.val), ("test", s.test)] {
        if !(v.is_finite() && (0.0..=1.0).contains(&v)) {
            return fail(
                &format!("data.split.{key}"),
                format!("must be a share between 0 and 1 (got {v})"),
            );
        }
    }
    if s.train <= 0.0 {
        return fail("data.split.train", "must be above 0");
    }
    if s.test <= 0.0 {
        return fail(
            "data.split.test",
            "must be above 0: evaluation runs on the test split",
        );
    }
    let sum = s.train + s.val + s.test;
    if (sum - 1.0).abs() > 1e-9 {
        return fail(
            "data.split",
            format!("train + val + test must sum to 1 (got {sum})"),
        );
    }
    let start = match &d.start {
        Some(s) => Some(parse_date_key("data.start", s)?),
        None => None,
    };
    let end = match &d.end {
        Some(s) => Some(parse_date_key("data.end", s)?),
        None => None,
    };
    if let (Some(a), Some(b)) = (start, end)
        && b < a
    {
        return fail("data.end", format!("{b} is before data.start {a}"));
    }
    if d.source == SourceKind::Api {
        let api = &d.api;
        if !(api.timeout_secs.is_finite() && api.timeout_secs > 0.0 && api.timeout_secs <= 3600.0) {
            return fail(
                "data.api.timeout_secs",
                "must be between 0 and 3600 seconds",
            );
        }
        if api.retries > 20 {
            return fail("data.api.retries", "must be at most 20");
        }
        let url = api.base_url();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return fail(
                "data.api.base_url",
                format!("`{url}` is not an http:// or https:// URL"),
            );
        }
        if api.interval.trim().is_empty() {
            return fail(
                "data.api.interval",
                "needs a bar interval such as `1d` or `5min`",
            );
        }
    }
    let syn = &d.synthetic;
    if d.source == SourceKind::Synthetic {
        if syn.bars < 10 {
            return fail("data.synthetic.bars", "must be at least 10");
        }
        if syn.bars > 50_000_000 {
            return fail("data.synthetic.bars", "must be at most 50000000");
        }
    }
    if !(syn.start_price.is_finite() && syn.start_price > 0.0) {
        return fail("data.synthetic.start_price", "must be a positive number");
    }
    if !(1..=31_536_000).contains(&syn.bar_seconds) {
        return fail(
            "data.synthetic.bar_seconds",
            "must be between 1 and 31536000 (one year)",
        );
    }

    e.model.validate()?;
    e.optimizer.validate()?;
    e.training.validate()?;
    e.evaluation.validate()?;
    Ok(())
}

/// Whether `s` can name a symbol (and so a data file).
pub fn is_symbol(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '^' | '='))
}

/// `YYYY-MM-DD` for `data.start` / `data.end`.
pub fn parse_date_key(key: &str, s: &str) -> Result<chrono::NaiveDate, (String, String)> {
    chrono::NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").map_err(|_| {
        (
            key.to_string(),
            format!("`{s}` is not a date; write it as YYYY-MM-DD (e.g. 2015-01-31)"),
        )
    })
}

impl DataConfig {
    /// The date filters as Unix seconds: bars with `start <= t < end` are kept (`end` is the
    /// day after `data.end`, so that whole day is in). Validation has checked the dates.
    pub fn time_range(&self) -> (Option<i64>, Option<i64>) {
        let day = |s: &Option<String>, plus: i64| {
            s.as_deref()
                .and_then(|s| chrono::NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok())
                .map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc().timestamp() + plus)
        };
        (day(&self.start, 0), day(&self.end, 86_400))
    }
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
        parse_str(Path::new("exp.yaml"), text, "exp")
    }

    #[test]
    fn empty_file_is_all_defaults_named_after_the_file() {
        let e = parse("").unwrap();
        assert_eq!(e.name, "exp");
        assert_eq!(e.data, DataConfig::default());
    }

    #[test]
    fn unknown_key_suggests_the_closest() {
        let err = parse("optimizer:\n  type: adamw\n  lrr: 0.1\n").unwrap_err();
        assert_eq!(err.key, "optimizer.lrr");
        assert_eq!(err.pos.line, 3);
        assert!(err.message.contains("did you mean `lr`"), "{}", err.message);
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
        resolve_file(Path::new("exp.yaml"), text, "exp", &overrides, &mut none)
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
