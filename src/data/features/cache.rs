//! The per-call cache of intermediate series (Bollinger, MACD, RSI, volatility) shared by
//! several features, and each feature's series computed from its [`Formula`].

use std::borrow::Cow;
use std::sync::OnceLock;

use super::definitions::{Formula, feature};
use super::series::{
    ema, log_returns, price_change, replay_start, rolling_extreme, rolling_mean_std, rsi,
    volatility, volatility_returns_start, with_rolling_mean,
};
use super::{
    BB_WINDOW, FLAT_STD, MACD_FAST, MACD_SIGNAL, MACD_SLOW, RSI_PERIOD, VOL_RATIO_WINDOW, WINDOW,
    WilderAverages,
};
use crate::data::Bars;

/// macd and its signal over bars `from..n`, and the last values of the two EMAs behind macd.
pub(super) struct Macd {
    pub(super) macd: Vec<f64>,
    pub(super) signal: Vec<f64>,
    pub(super) fast_last: Option<f64>,
    pub(super) slow_last: Option<f64>,
}

/// Intermediate series shared by several features, computed once per call (by the first
/// column that needs them; the others wait). Every series holds bars `from..n`, except
/// `volatility`, which starts at [`Cache::volatility_start`].
pub(super) struct Cache<'a> {
    bars: &'a Bars,
    /// The first bar computed: 0 for a full computation, the first new bar for `extend`.
    from: usize,
    /// The recursive averages after bar `from - 1`.
    resume: &'a [(String, f64)],
    bollinger: OnceLock<(Vec<f64>, Vec<f64>)>,
    pub(super) macd: OnceLock<Macd>,
    volatility: OnceLock<Vec<f64>>,
    /// The log returns of bars `returns_start()..n`: the `log_return` feature's and the
    /// ones volatility reads, computed once.
    returns: OnceLock<Vec<f64>>,
    /// RSI and its averages after the last bar (`None` before they exist).
    pub(super) rsi: OnceLock<(Vec<f64>, Option<WilderAverages>)>,
}

impl<'a> Cache<'a> {
    pub(super) fn new(bars: &'a Bars, from: usize, resume: &'a [(String, f64)]) -> Self {
        Cache {
            bars,
            from,
            resume,
            bollinger: OnceLock::new(),
            macd: OnceLock::new(),
            volatility: OnceLock::new(),
            returns: OnceLock::new(),
            rsi: OnceLock::new(),
        }
    }

    /// The saved average `key` (none when computing from the first bar).
    fn resumed(&self, key: &str) -> Option<f64> {
        if self.from == 0 {
            return None;
        }
        self.resume.iter().find(|(k, _)| k == key).map(|&(_, v)| v)
    }

    /// ma_20 and the sample standard deviation of the closes over 20 bars.
    fn bollinger(&self) -> &(Vec<f64>, Vec<f64>) {
        let close = &self.bars.close;
        self.bollinger
            .get_or_init(|| rolling_mean_std(close, 0, BB_WINDOW, true, self.from))
    }

    fn macd(&self) -> &Macd {
        let close = &self.bars.close;
        self.macd.get_or_init(|| {
            let fast = ema(close, MACD_FAST, self.from, self.resumed("macd_fast"));
            let slow = ema(close, MACD_SLOW, self.from, self.resumed("macd_slow"));
            let macd: Vec<f64> = fast.iter().zip(&slow).map(|(f, s)| f - s).collect();
            let signal = ema(&macd, MACD_SIGNAL, 0, self.resumed("macd_signal"));
            Macd {
                macd,
                signal,
                fast_last: fast.last().copied(),
                slow_last: slow.last().copied(),
            }
        })
    }

    fn rsi(&self) -> &(Vec<f64>, Option<WilderAverages>) {
        let close = &self.bars.close;
        self.rsi.get_or_init(|| {
            let saved = self.resumed("rsi_gain").zip(self.resumed("rsi_loss"));
            rsi(close, RSI_PERIOD, self.from, saved)
        })
    }

    /// The first bar of the cached volatility: early enough for volatility_ratio's 60-bar mean
    /// to replay from its last re-summation.
    fn volatility_start(&self) -> usize {
        let from_mean = self.from.saturating_sub(WINDOW);
        self.from
            .min(WINDOW + replay_start(from_mean, VOL_RATIO_WINDOW))
    }

    /// Volatility over bars `volatility_start()..n`.
    fn volatility(&self) -> &Vec<f64> {
        self.volatility.get_or_init(|| {
            volatility(
                self.returns(),
                self.returns_start(),
                self.volatility_start(),
            )
        })
    }

    /// The first bar of the cached log returns: `from`, or earlier where volatility reads
    /// earlier ones.
    fn returns_start(&self) -> usize {
        self.from
            .min(volatility_returns_start(self.volatility_start()))
    }

    /// Log returns over bars `returns_start()..n` (NaN at bar 0).
    fn returns(&self) -> &Vec<f64> {
        self.returns
            .get_or_init(|| log_returns(&self.bars.close, self.returns_start()))
    }

    /// The series of one feature over bars `from..n`; warm-up entries are NaN or not yet
    /// meaningful.
    pub(super) fn series(&self, name: &str) -> Cow<'_, [f64]> {
        let b = self.bars;
        let own = |column: &'a [f64]| Cow::Borrowed(column.get(self.from..).unwrap_or_default());
        let Some(def) = feature(name) else {
            // `compute` checks names against the table first.
            return Cow::Owned(vec![f64::NAN; b.close.len().saturating_sub(self.from)]);
        };
        if let Some(column) = bar_column(b, def.formula) {
            return own(column);
        }
        match self.shared(def.formula) {
            Some(series) => Cow::Borrowed(series),
            None => Cow::Owned(self.computed(def.name, def.formula)),
        }
    }

    /// The feature's series over bars `from..n` when it is one the cache holds for several
    /// features (lent, not copied); `None` for the others.
    fn shared(&self, formula: Formula) -> Option<&[f64]> {
        fn skip(series: &[f64], n: usize) -> &[f64] {
            series.get(n..).unwrap_or_default()
        }
        Some(match formula {
            Formula::LogReturn => skip(self.returns(), self.from - self.returns_start()),
            // ma_20 is the Bollinger mean, computed once for both.
            Formula::Ma(BB_WINDOW) => &self.bollinger().0,
            Formula::Rsi => &self.rsi().0,
            Formula::Macd => &self.macd().macd,
            Formula::MacdSignal => &self.macd().signal,
            Formula::Volatility => skip(self.volatility(), self.from - self.volatility_start()),
            _ => return None,
        })
    }

    /// A feature computed for itself alone, over bars `from..n`.
    fn computed(&self, name: &str, formula: Formula) -> Vec<f64> {
        let b = self.bars;
        let from = self.from;
        let tail = |column: &'a [f64]| column.get(from..).unwrap_or_default();
        let c = &b.close;
        let zip = |x: &[f64], y: &[f64], f: fn(f64, f64) -> f64| -> Vec<f64> {
            x.iter().zip(y).map(|(&a, &b)| f(a, b)).collect()
        };
        match formula {
            Formula::PriceChange(k) => price_change(c, k, from),
            Formula::Ma(w) => rolling_mean_std(c, 0, w, false, from).0,
            // An EMA's saved average is keyed by its name.
            Formula::Ema(w) => ema(c, w, from, self.resumed(name)),
            Formula::MacdHistogram => {
                let m = self.macd();
                zip(&m.macd, &m.signal, |m, s| m - s)
            }
            Formula::BbUpper => {
                let (m, s) = self.bollinger();
                zip(m, s, |m, s| m + 2.0 * s)
            }
            Formula::BbLower => {
                let (m, s) = self.bollinger();
                zip(m, s, |m, s| m - 2.0 * s)
            }
            Formula::BbWidth => {
                // (upper - lower) / ma_20, with upper and lower rounded as the features are.
                let (m, s) = self.bollinger();
                zip(m, s, |m, s| ((m + 2.0 * s) - (m - 2.0 * s)) / m)
            }
            Formula::BbPosition => {
                let (m, s) = self.bollinger();
                m.iter()
                    .zip(s)
                    .zip(tail(c))
                    .map(|((&m, &s), &c)| {
                        if s <= FLAT_STD * m.abs() {
                            0.5
                        } else {
                            let (upper, lower) = (m + 2.0 * s, m - 2.0 * s);
                            (c - lower) / (upper - lower)
                        }
                    })
                    .collect()
            }
            Formula::HighLowRatio => zip(tail(&b.high), tail(&b.low), |h, l| h / l),
            Formula::CloseOpenRatio => zip(tail(c), tail(&b.open), |c, o| c / o),
            Formula::VolumeRatio => {
                with_rolling_mean(
                    &b.volume,
                    WINDOW,
                    from,
                    |v, m| {
                        if m == 0.0 { 1.0 } else { v / m }
                    },
                )
            }
            Formula::VolatilityRatio => {
                // The 60-bar mean runs over volatilities from bar WINDOW on (index j = bar -
                // WINDOW), replayed from its last re-summation before `from`.
                let vol = self.volatility();
                let vol_start = self.volatility_start();
                let from_mean = from.saturating_sub(WINDOW);
                let mean_start = replay_start(from_mean, VOL_RATIO_WINDOW);
                let input = vol
                    .get((WINDOW + mean_start).saturating_sub(vol_start)..)
                    .unwrap_or_default();
                let mean =
                    rolling_mean_std(input, mean_start, VOL_RATIO_WINDOW, false, from_mean).0;
                (from..c.len())
                    .map(|t| {
                        let v = t
                            .checked_sub(vol_start)
                            .and_then(|i| vol.get(i))
                            .copied()
                            .unwrap_or(f64::NAN);
                        let m = t
                            .checked_sub(WINDOW)
                            .and_then(|j| j.checked_sub(from_mean))
                            .and_then(|i| mean.get(i))
                            .copied()
                            .unwrap_or(f64::NAN);
                        if m == 0.0 { 1.0 } else { v / m }
                    })
                    .collect()
            }
            Formula::ResistanceDistance => {
                let top = rolling_extreme(&b.high, WINDOW, |a, b| a >= b, from);
                zip(&top, tail(c), |h, c| (h - c) / c)
            }
            Formula::SupportDistance => {
                let bottom = rolling_extreme(&b.low, WINDOW, |a, b| a <= b, from);
                zip(&bottom, tail(c), |l, c| (c - l) / c)
            }
            // The raw columns and the shared series are lent by `series`.
            Formula::Open | Formula::High | Formula::Low | Formula::Close | Formula::Volume => {
                bar_column(b, formula).map_or_else(Vec::new, |x| tail(x).to_vec())
            }
            Formula::LogReturn
            | Formula::Rsi
            | Formula::Macd
            | Formula::MacdSignal
            | Formula::Volatility => self.shared(formula).map_or_else(Vec::new, <[f64]>::to_vec),
        }
    }
}

/// The bar column a raw feature is (`open`, ..., `volume`); `None` for a derived one.
fn bar_column(b: &Bars, formula: Formula) -> Option<&[f64]> {
    Some(match formula {
        Formula::Open => &b.open,
        Formula::High => &b.high,
        Formula::Low => &b.low,
        Formula::Close => &b.close,
        Formula::Volume => &b.volume,
        _ => return None,
    })
}
