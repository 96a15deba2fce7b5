//! The feature catalogue: one row per feature with its warm-up, whether it is in price
//! units, the recursive averages a saved state keeps for it, and how it is computed.
//! Everything that asks about a feature by name (config checks, warm-up, the dataset's
//! relative prices, the state's keys, the computation itself) reads this table.

use super::{BB_WINDOW, MACD_SIGNAL, MACD_SLOW, RSI_PERIOD, VOL_RATIO_WINDOW, WINDOW};

/// How a feature's series is computed from the bars (see `cache::Cache::series`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Formula {
    Open,
    High,
    Low,
    Close,
    Volume,
    LogReturn,
    /// C[t] / C[t-k] - 1.
    PriceChange(usize),
    /// Mean close over `w` bars.
    Ma(usize),
    /// EMA of the close with span `w`.
    Ema(usize),
    Rsi,
    Macd,
    MacdSignal,
    MacdHistogram,
    BbUpper,
    BbLower,
    BbWidth,
    BbPosition,
    HighLowRatio,
    CloseOpenRatio,
    VolumeRatio,
    Volatility,
    VolatilityRatio,
    ResistanceDistance,
    SupportDistance,
}

/// One feature.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FeatureDef {
    pub name: &'static str,
    /// Leading bars that are warm-up (see the table in the module doc of `features`).
    pub lookback: usize,
    /// Measured in price units: the dataset stage can express it relative to the window's
    /// last close.
    pub price_level: bool,
    /// The recursive averages a [`super::FeatureState`] keeps for it, by key.
    pub recursive: &'static [&'static str],
    pub formula: Formula,
}

const fn def(
    name: &'static str,
    lookback: usize,
    price_level: bool,
    recursive: &'static [&'static str],
    formula: Formula,
) -> FeatureDef {
    FeatureDef {
        name,
        lookback,
        price_level,
        recursive,
        formula,
    }
}

const NONE: &[&str] = &[];
const MACD_KEYS: &[&str] = &["macd_fast", "macd_signal", "macd_slow"];
const RSI_KEYS: &[&str] = &["rsi_gain", "rsi_loss"];
const MACD_LOOKBACK: usize = MACD_SLOW - 1;
const SIGNAL_LOOKBACK: usize = MACD_SLOW - 1 + MACD_SIGNAL - 1;

/// Every feature, in the order of features.md.
pub const FEATURES: &[FeatureDef] = &[
    def("open", 0, true, NONE, Formula::Open),
    def("high", 0, true, NONE, Formula::High),
    def("low", 0, true, NONE, Formula::Low),
    def("close", 0, true, NONE, Formula::Close),
    def("volume", 0, false, NONE, Formula::Volume),
    def("log_return", 1, false, NONE, Formula::LogReturn),
    def("price_change_1", 1, false, NONE, Formula::PriceChange(1)),
    def("price_change_2", 2, false, NONE, Formula::PriceChange(2)),
    def("price_change_5", 5, false, NONE, Formula::PriceChange(5)),
    def("ma_5", 4, true, NONE, Formula::Ma(5)),
    def("ma_10", 9, true, NONE, Formula::Ma(10)),
    def("ma_20", 19, true, NONE, Formula::Ma(20)),
    def("ma_50", 49, true, NONE, Formula::Ma(50)),
    def("ema_5", 4, true, &["ema_5"], Formula::Ema(5)),
    def("ema_10", 9, true, &["ema_10"], Formula::Ema(10)),
    def("ema_20", 19, true, &["ema_20"], Formula::Ema(20)),
    def("ema_50", 49, true, &["ema_50"], Formula::Ema(50)),
    def("rsi_14", RSI_PERIOD, false, RSI_KEYS, Formula::Rsi),
    def("macd", MACD_LOOKBACK, false, MACD_KEYS, Formula::Macd),
    def(
        "macd_signal",
        SIGNAL_LOOKBACK,
        false,
        MACD_KEYS,
        Formula::MacdSignal,
    ),
    def(
        "macd_histogram",
        SIGNAL_LOOKBACK,
        false,
        MACD_KEYS,
        Formula::MacdHistogram,
    ),
    def("bb_upper", BB_WINDOW - 1, true, NONE, Formula::BbUpper),
    def("bb_lower", BB_WINDOW - 1, true, NONE, Formula::BbLower),
    def("bb_width", BB_WINDOW - 1, false, NONE, Formula::BbWidth),
    def(
        "bb_position",
        BB_WINDOW - 1,
        false,
        NONE,
        Formula::BbPosition,
    ),
    def("high_low_ratio", 0, false, NONE, Formula::HighLowRatio),
    def("close_open_ratio", 0, false, NONE, Formula::CloseOpenRatio),
    def(
        "volume_ratio",
        WINDOW - 1,
        false,
        NONE,
        Formula::VolumeRatio,
    ),
    def("volatility", WINDOW, false, NONE, Formula::Volatility),
    def(
        "volatility_ratio",
        WINDOW + VOL_RATIO_WINDOW - 1,
        false,
        NONE,
        Formula::VolatilityRatio,
    ),
    def(
        "resistance_distance",
        WINDOW - 1,
        false,
        NONE,
        Formula::ResistanceDistance,
    ),
    def(
        "support_distance",
        WINDOW - 1,
        false,
        NONE,
        Formula::SupportDistance,
    ),
];

const NAMES: [&str; FEATURES.len()] = {
    let mut out = [""; FEATURES.len()];
    let mut i = 0;
    while i < FEATURES.len() {
        out[i] = FEATURES[i].name;
        i += 1;
    }
    out
};

/// Every feature name, in the order of features.md (the names of [`FEATURES`]).
pub const ALL_FEATURES: &[&str] = &NAMES;

/// The definition of `name`; `None` for an unknown name.
pub fn feature(name: &str) -> Option<&'static FeatureDef> {
    FEATURES.iter().find(|d| d.name == name)
}

/// Features measured in price units, which the dataset stage can express relative to the
/// window's last close.
pub fn is_price_level(name: &str) -> bool {
    feature(name).is_some_and(|d| d.price_level)
}

/// Leading bars that are warm-up for `name` (see the module table); `None` for an unknown name.
pub fn lookback(name: &str) -> Option<usize> {
    feature(name).map(|d| d.lookback)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_distinct_and_keys_sorted() {
        for (i, d) in FEATURES.iter().enumerate() {
            assert!(FEATURES[..i].iter().all(|e| e.name != d.name), "{}", d.name);
            assert!(d.recursive.windows(2).all(|w| w[0] < w[1]), "{}", d.name);
        }
        assert_eq!(ALL_FEATURES.len(), 32);
        assert_eq!(ALL_FEATURES[0], "open");
        assert_eq!(ALL_FEATURES[31], "support_distance");
    }
}
