//! `data`: where bars come from (local files, generated, an HTTP API), which symbols and
//! dates, the features and the windows cut from them, and the split. Its range checks
//! ([`validate_data`]) run before the other sections'.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::did_you_mean;
pub use crate::data::ingest::{ColumnMap, ColumnRef, FileFormat};

/// Largest accepted `data.sequence_length`.
pub const MAX_SEQUENCE_LENGTH: usize = 100_000;
/// Largest accepted `data.prediction_horizon`.
pub const MAX_HORIZON: usize = 10_000;

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
    /// Which column holds each role (`date`, `close`, ...), by name or position (from 1).
    /// Default: found by the usual names and the recognised layouts.
    #[serde(skip_serializing_if = "ColumnMap::is_empty")]
    pub columns: ColumnMap,
    /// How a CSV file spells its values (delimiter, decimal mark, thousands separator,
    /// currency, date, time zone, header). Default: found from the file.
    #[serde(skip_serializing_if = "FileFormat::is_empty")]
    pub format: FileFormat,
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
            columns: ColumnMap::NONE,
            format: FileFormat::NONE,
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
    /// A planted signal with a known optimal forecast instead of the stylised generator.
    /// Default none. Left out of the serialized config when absent, so the ingest keys of
    /// configs without one do not move.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<SignalConfig>,
}

/// `data.synthetic.signal`: log returns follow AR(p) with Gaussian noise, plus an optional
/// sinusoid (see [`crate::data::synthetic::Signal`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalConfig {
    /// AR coefficients, lag 1 first (at most [`MAX_AR_ORDER`]; sum of |a| below 1). Default
    /// none (white noise).
    #[serde(default)]
    pub ar: Vec<f64>,
    /// Standard deviation of the innovations, per bar.
    pub noise: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seasonal: Option<SeasonalConfig>,
}

/// `data.synthetic.signal.seasonal`: `amplitude * sin(2 pi i / period)` added to bar i's
/// log return.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeasonalConfig {
    /// Bars per cycle, at least 2.
    pub period: f64,
    pub amplitude: f64,
}

/// Largest accepted AR order in `data.synthetic.signal.ar`.
pub const MAX_AR_ORDER: usize = 20;

impl SignalConfig {
    /// The generator's view of this signal.
    pub fn signal(&self) -> crate::data::synthetic::Signal {
        crate::data::synthetic::Signal {
            ar: self.ar.clone(),
            noise: self.noise,
            seasonal: self.seasonal.as_ref().map(|s| (s.period, s.amplitude)),
        }
    }
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        SyntheticConfig {
            bars: 1500,
            seed: 7,
            start_price: 100.0,
            bar_seconds: 86_400,
            signal: None,
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

/// Range and consistency checks of `data`. Returns the offending key path and message.
pub fn validate_data(d: &DataConfig) -> Result<(), (String, String)> {
    fn fail<T>(key: &str, message: impl Into<String>) -> Result<T, (String, String)> {
        Err((key.to_string(), message.into()))
    }
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
    d.columns.check()?;
    d.format.check()?;
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
    if let Some(sig) = &syn.signal {
        validate_signal(sig)?;
    }
    Ok(())
}

/// Checks of `data.synthetic.signal`: a stationary AR part, a usable noise level and period.
fn validate_signal(sig: &SignalConfig) -> Result<(), (String, String)> {
    let fail = |key: &str, message: String| Err((format!("data.synthetic.signal.{key}"), message));
    if sig.ar.len() > MAX_AR_ORDER {
        return fail(
            "ar",
            format!("at most {MAX_AR_ORDER} coefficients (got {})", sig.ar.len()),
        );
    }
    for (i, a) in sig.ar.iter().enumerate() {
        if !a.is_finite() {
            return fail(
                &format!("ar[{i}]"),
                format!("must be a finite number (got {a})"),
            );
        }
    }
    // A sufficient condition for stationarity (every root outside the unit circle).
    let sum: f64 = sig.ar.iter().map(|a| a.abs()).sum();
    if sum >= 1.0 {
        return fail(
            "ar",
            format!(
                "the sum of |coefficients| must be below 1 so the process is stationary (got {sum})"
            ),
        );
    }
    // Up to 1 (100% log-return noise per bar) keeps prices far from overflow for normal lengths.
    if !(sig.noise.is_finite() && sig.noise > 0.0 && sig.noise <= 1.0) {
        return fail(
            "noise",
            format!(
                "must be a standard deviation above 0 and at most 1 (got {})",
                sig.noise
            ),
        );
    }
    if let Some(s) = &sig.seasonal {
        if !(s.period.is_finite() && s.period >= 2.0) {
            return fail(
                "seasonal.period",
                format!("must be at least 2 bars (got {})", s.period),
            );
        }
        if !(s.amplitude.is_finite() && s.amplitude.abs() <= 1.0) {
            return fail(
                "seasonal.amplitude",
                format!("must be a number between -1 and 1 (got {})", s.amplitude),
            );
        }
    }
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{ConfigError, Experiment, Registries, canonical_json, parse_str};

    fn parse(text: &str) -> Result<Experiment, ConfigError> {
        parse_str(Path::new("exp.yaml"), text, "exp", &Registries::UNCHECKED)
    }

    #[test]
    fn no_signal_serializes_as_before() {
        let e = parse("data: {source: synthetic}").unwrap();
        assert_eq!(e.data.synthetic.signal, None);
        let json = canonical_json(&e.data.synthetic);
        assert_eq!(
            json,
            r#"{"bar_seconds":86400,"bars":1500,"seed":7,"start_price":100.0}"#
        );
    }

    #[test]
    fn signal_parses_and_converts() {
        let e = parse(
            "data:\n  source: synthetic\n  synthetic:\n    signal: {ar: [0.3], noise: 0.01, \
             seasonal: {period: 5, amplitude: 0.002}}\n",
        )
        .unwrap();
        let sig = e.data.synthetic.signal.as_ref().unwrap().signal();
        assert_eq!(sig.ar, vec![0.3]);
        assert_eq!(sig.noise, 0.01);
        assert_eq!(sig.seasonal, Some((5.0, 0.002)));
        assert!(canonical_json(&e.data.synthetic).contains("\"signal\""));
        // Without ar: white noise.
        let e = parse("data: {synthetic: {signal: {noise: 0.02}}}").unwrap();
        assert!(e.data.synthetic.signal.unwrap().ar.is_empty());
    }

    #[test]
    fn bad_signals_name_the_key() {
        let many = format!("[{}]", vec!["0.01"; 21].join(", "));
        for (text, key, says) in [
            (
                "{ar: [0.6, -0.5], noise: 0.01}",
                "data.synthetic.signal.ar",
                "stationary",
            ),
            (
                "{ar: [1.0], noise: 0.01}",
                "data.synthetic.signal.ar",
                "stationary",
            ),
            (
                &format!("{{ar: {many}, noise: 0.01}}"),
                "data.synthetic.signal.ar",
                "at most 20",
            ),
            (
                "{ar: [0.3], noise: 0}",
                "data.synthetic.signal.noise",
                "above 0",
            ),
            (
                "{ar: [0.3], noise: -0.1}",
                "data.synthetic.signal.noise",
                "above 0",
            ),
            (
                "{ar: [0.3], noise: 1.5}",
                "data.synthetic.signal.noise",
                "above 0",
            ),
            (
                "{noise: 0.01, seasonal: {period: 1, amplitude: 0.1}}",
                "data.synthetic.signal.seasonal.period",
                "at least 2",
            ),
            (
                "{noise: 0.01, seasonal: {period: 5, amplitude: 2}}",
                "data.synthetic.signal.seasonal.amplitude",
                "number",
            ),
        ] {
            let err = parse(&format!(
                "data: {{source: synthetic, synthetic: {{signal: {text}}}}}"
            ))
            .unwrap_err();
            assert_eq!(err.key, key, "{text}: {}", err.message);
            assert!(err.message.contains(says), "{text}: {}", err.message);
        }
        // Unknown and missing keys are errors too (the parser already rejects NaN).
        assert!(parse("data: {synthetic: {signal: {ar: [.nan], noise: 0.01}}}").is_err());
        assert!(parse("data: {synthetic: {signal: {noise: 0.01, ma: [0.2]}}}").is_err());
        assert!(parse("data: {synthetic: {signal: {ar: [0.2]}}}").is_err());
    }
}
