//! The `features` stage: [`Bars`] -> [`FeatureTable`], per `reference/features.md`.
//!
//! Every feature at bar t uses bars <= t only and is computed in f64 over the whole series in
//! O(n). Rolling means and standard deviations slide a Welford-style window and re-sum the
//! window from scratch every `w` steps, so float drift stays bounded by `w` updates while the
//! cost stays O(1) amortised; rolling max/min use monotonic deques. The arithmetic is fixed,
//! so the same bars give bit-identical tables.
//!
//! ## Appended bars
//!
//! [`compute_with_state`] also returns a [`FeatureState`]; [`extend`] continues from it when
//! bars are appended and computes only the new rows, bit for bit what a full computation gives.
//! Every primitive runs over a range of bars `from..n` with the same operations in the same
//! order whether `from` is 0 or the first new bar: EMAs and Wilder averages continue from the
//! saved values; rolling means and standard deviations replay from their last re-summation
//! (at most `2w - 1` values back), so they need no saved accumulator; rolling extremes rescan
//! the last `w` values (an extreme is exact whatever index holds it).
//!
//! ## Warm-up
//!
//! [`lookback`] is the number of leading bars at which a feature is not yet defined (or, for
//! recursive averages, not yet meaningful); [`compute`] drops the largest of the selected
//! features' look-backs, so every kept row has every feature.
//!
//! | feature | warm-up rows | why |
//! | --- | --- | --- |
//! | open, high, low, close, volume, high_low_ratio, close_open_ratio | 0 | the bar itself |
//! | log_return, price_change_1 | 1 | needs C[t-1] |
//! | price_change_2, price_change_5 | 2, 5 | needs C[t-k] |
//! | ma_w (5, 10, 20, 50) | w - 1 | w closes |
//! | ema_w (5, 10, 20, 50) | w - 1 | seeded with C[0]; kept from the bar where an SMA of the same span would exist, so ema_w and ma_w start together |
//! | rsi_14 | 14 | the first average needs 14 changes, C[0..=14] |
//! | macd | 25 | ema_26's warm-up |
//! | macd_signal, macd_histogram | 33 | macd's 25 plus the signal EMA's own 9 - 1 (it is seeded with macd[0]) |
//! | bb_upper, bb_lower, bb_width, bb_position | 19 | 20 closes |
//! | volume_ratio | 19 | 20 volumes |
//! | resistance_distance, support_distance | 19 | 20 highs / lows |
//! | volatility | 20 | 20 log returns, the first of which is at bar 1 |
//! | volatility_ratio | 79 | 60 volatilities, the first of which is at bar 20 |
//!
//! ## Degenerate windows
//!
//! - `bb_position` is 0.5 when the 20-bar standard deviation is 0. A window of identical closes
//!   can leave rounding residue around 1e-16 of the price, so "0" means `s <= 1e-12 * ma_20`.
//! - `volume_ratio` is 1 when the 20-bar mean volume is 0 (files without volume).
//! - `volatility_ratio` is 1 when the 60-bar mean volatility is 0 (constant prices), by the same
//!   reasoning as `volume_ratio`.
//! - `rsi_14` is 100 when the average loss is 0 (including when nothing moved).
//!
//! ## Layout
//!
//! [`definitions`] is the one table of features (name, warm-up, price units, saved averages,
//! formula); `cache` computes each feature's series from it, over the primitives of `series`;
//! `state` is [`FeatureState`] and its binary format, `extend` the incremental continuation.

mod cache;
pub mod definitions;
mod extend;
mod series;
mod state;

use std::borrow::Cow;

use rayon::prelude::*;

use super::ingest::{DataError, fmt_ts, validate};
use super::{Bars, FeatureTable};
use cache::Cache;
pub use definitions::{
    ALL_FEATURES, FEATURES, FeatureDef, Formula, feature, is_price_level, lookback,
};
use extend::state_after;
pub use extend::{extend, extend_owned};
pub use state::FeatureState;

const RSI_PERIOD: usize = 14;
const MACD_FAST: usize = 12;
const MACD_SLOW: usize = 26;
const MACD_SIGNAL: usize = 9;
const BB_WINDOW: usize = 20;
/// Window of volume_ratio, volatility and support/resistance.
const WINDOW: usize = 20;
const VOL_RATIO_WINDOW: usize = 60;
/// Below this fraction of ma_20 the Bollinger standard deviation counts as 0.
const FLAT_STD: f64 = 1e-12;

/// Computes the named features of one symbol and drops the warm-up rows.
///
/// Errors on invalid bars, an empty or unknown feature name, too few bars for the warm-up, or a
/// non-finite value (e.g. prices so extreme that a ratio overflows).
pub fn compute(bars: &Bars, symbol: &str, names: &[String]) -> Result<FeatureTable, DataError> {
    compute_with_state(bars, symbol, names).map(|(table, _)| table)
}

/// Like [`compute`], also returning the state after the last bar, from which [`extend`]
/// continues when bars are appended. The table is exactly `compute`'s.
pub fn compute_with_state(
    bars: &Bars,
    symbol: &str,
    names: &[String],
) -> Result<(FeatureTable, FeatureState), DataError> {
    let fail = |message: String| DataError::Features {
        symbol: symbol.to_string(),
        message,
    };
    validate(bars).map_err(|e| fail(e.to_string()))?;
    let warm = warm_up(names).map_err(fail)?;
    let n = bars.close.len();
    if n <= warm {
        return Err(fail(format!(
            "{n} bars, but the selected features need {warm} warm-up bars plus at least one row"
        )));
    }
    let (values, recursive) = compute_rows(bars, symbol, names, warm, 0, &[])?;
    let table = FeatureTable {
        symbol: symbol.to_string(),
        names: names.to_vec(),
        timestamps: bars.timestamps.get(warm..).unwrap_or_default().to_vec(),
        close: bars.close.get(warm..).unwrap_or_default().to_vec(),
        values,
    };
    let state = state_after(bars, names, recursive);
    Ok((table, state))
}

/// The largest look-back of `names`; errors on an empty list or an unknown name.
fn warm_up(names: &[String]) -> Result<usize, String> {
    if names.is_empty() {
        return Err("no features selected".into());
    }
    let mut warm = 0;
    for name in names {
        let l = lookback(name).ok_or_else(|| {
            format!(
                "unknown feature '{name}' (known: {})",
                ALL_FEATURES.join(", ")
            )
        })?;
        warm = warm.max(l);
    }
    Ok(warm)
}

/// Rows `max(warm, from)..n` of the table (row-major) and the recursive averages after the last
/// bar, continuing from `resume` (the averages after bar `from - 1`; empty when `from` is 0).
/// `bars` must be valid and `names` known.
fn compute_rows(
    bars: &Bars,
    symbol: &str,
    names: &[String],
    warm: usize,
    from: usize,
    resume: &[(String, f64)],
) -> Result<(Vec<f64>, Recursive), DataError> {
    let fail = |message: String| DataError::Features {
        symbol: symbol.to_string(),
        message,
    };
    let n = bars.close.len();
    let first = warm.max(from);

    // One pass per column, columns in parallel; series several features share (Bollinger,
    // MACD, volatility, RSI) are computed once, by whichever column asks first.
    let cache = Cache::new(bars, from, resume);
    let columns: Vec<Cow<[f64]>> = names.par_iter().map(|name| cache.series(name)).collect();

    let rows = n.saturating_sub(first);
    let k = names.len();
    // Columns hold bars `from..n`.
    let value = |t: usize, j: usize| -> f64 {
        columns
            .get(j)
            .and_then(|c| c.get(t - from))
            .copied()
            .unwrap_or(f64::NAN)
    };
    // Row-major interleave, blocks of rows in parallel.
    const BLOCK_ROWS: usize = 4096;
    // Written once, without zeroing first (reused memory would be cleared on one core).
    let mut values: Vec<f64> = Vec::with_capacity(rows * k);
    let finite = values.spare_capacity_mut()[..rows * k]
        .par_chunks_mut((BLOCK_ROWS * k).max(1))
        .enumerate()
        .map(|(b, block)| {
            let mut finite = true;
            for (i, row) in block.chunks_exact_mut(k).enumerate() {
                let t = first + b * BLOCK_ROWS + i;
                for (j, out) in row.iter_mut().enumerate() {
                    let v = value(t, j);
                    out.write(v);
                    finite &= v.is_finite();
                }
            }
            finite
        })
        .reduce(|| true, |a, b| a && b);
    // SAFETY: the blocks cover the first `rows * k` slots, a whole number of rows of `k`
    // each (`k` divides the block length and the total), and every slot of a row is written.
    unsafe { values.set_len(rows * k) };
    if !finite {
        // Name the first offender in row-major order.
        for t in first..n {
            for (j, name) in names.iter().enumerate() {
                let v = value(t, j);
                if !v.is_finite() {
                    return Err(fail(format!(
                        "feature '{name}' is not finite ({v:?}) at {}",
                        fmt_ts(bars.timestamps.get(t).copied().unwrap_or_default())
                    )));
                }
            }
        }
    }

    let mut recursive = Vec::new();
    for (name, column) in names.iter().zip(&columns) {
        if feature(name).is_some_and(|d| matches!(d.formula, Formula::Ema(_)))
            && let Some(&last) = column.last()
        {
            recursive.push((name.clone(), last));
        }
    }
    if let Some(m) = cache.macd.get() {
        for (key, last) in [
            ("macd_fast", m.fast_last),
            ("macd_slow", m.slow_last),
            ("macd_signal", m.signal.last().copied()),
        ] {
            if let Some(last) = last {
                recursive.push((key.to_string(), last));
            }
        }
    }
    if let Some((_, Some((gain, loss)))) = cache.rsi.get() {
        recursive.push(("rsi_gain".to_string(), *gain));
        recursive.push(("rsi_loss".to_string(), *loss));
    }
    Ok((values, recursive))
}

/// Recursive averages by key (see [`recursive_keys`]).
type Recursive = Vec<(String, f64)>;

/// The Wilder RSI's average gain and average loss.
type WilderAverages = (f64, f64);

#[cfg(test)]
mod tests {
    use super::series::{ema, rsi};
    use super::*;

    /// blake3 of a table's timestamps, closes and values (bit patterns), in that order.
    fn table_digest(t: &FeatureTable) -> String {
        let mut h = blake3::Hasher::new();
        for ts in &t.timestamps {
            h.update(&ts.to_le_bytes());
        }
        for v in t.close.iter().chain(&t.values) {
            h.update(&v.to_bits().to_le_bytes());
        }
        h.finalize().to_hex().to_string()
    }

    /// One digest over every single-feature table and the all-features table of a few series.
    fn golden_digest() -> String {
        let inputs = [
            crate::data::synthetic::generate(11, 3000, 40.0, 300),
            crate::data::synthetic::generate(5, 700, 10.0, 86_400),
            series(),
        ];
        let all: Vec<String> = ALL_FEATURES.iter().map(|s| s.to_string()).collect();
        let mut h = blake3::Hasher::new();
        for bars in &inputs {
            h.update(table_digest(&compute(bars, "G", &all).unwrap()).as_bytes());
            for name in ALL_FEATURES {
                h.update(table_digest(&column(bars, name)).as_bytes());
            }
        }
        h.finalize().to_hex().to_string()
    }

    /// `compute`'s bytes are pinned (the cache and a committed lockfile depend on them): the
    /// digest was taken from the implementation before the incremental path existed, and
    /// retaken when the synthetic bars and `log_return` moved to the `libm` crate (features
    /// version 2, ingest 3 for synthetic bars: issue 24).
    #[test]
    fn compute_bytes_are_unchanged() {
        assert_eq!(golden_digest(), GOLDEN);
    }

    const GOLDEN: &str = "97ce533d4ae933de07ca2712e3020827edf4c65a091b285de511d7eac5777095";

    #[test]
    fn same_table_whatever_the_thread_count() {
        let bars = crate::data::synthetic::generate(11, 3000, 40.0, 300);
        let names: Vec<String> = ALL_FEATURES.iter().map(|s| s.to_string()).collect();
        let tables: Vec<FeatureTable> = [1, 2, 5]
            .iter()
            .map(|&threads| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                pool.install(|| compute(&bars, "S", &names).unwrap())
            })
            .collect();
        assert!(tables.windows(2).all(|w| w[0] == w[1]));
        let bits = |t: &FeatureTable| t.values.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&tables[0]), bits(&tables[2]));
    }

    /// 100 bars: close = 10 + (t % 7) * 0.5 + t * 0.1, open = previous close (10 at t = 0),
    /// high = max(o, c) + 0.25, low = min(o, c) - 0.25, volume = 1000 + (t % 5) * 100.
    pub(super) fn all_names() -> Vec<String> {
        ALL_FEATURES.iter().map(|s| s.to_string()).collect()
    }

    pub(super) fn series() -> Bars {
        let n = 100;
        let close: Vec<f64> = (0..n)
            .map(|t| 10.0 + (t % 7) as f64 * 0.5 + t as f64 * 0.1)
            .collect();
        let open: Vec<f64> = (0..n)
            .map(|t| if t == 0 { 10.0 } else { close[t - 1] })
            .collect();
        Bars {
            timestamps: (0..n as i64).map(|t| 1_000_000 + t * 86_400).collect(),
            high: (0..n).map(|t| open[t].max(close[t]) + 0.25).collect(),
            low: (0..n).map(|t| open[t].min(close[t]) - 0.25).collect(),
            volume: (0..n).map(|t| 1000.0 + (t % 5) as f64 * 100.0).collect(),
            open,
            close,
        }
    }

    fn column(bars: &Bars, name: &str) -> FeatureTable {
        compute(bars, "T", &[name.to_string()]).unwrap()
    }

    fn close_to(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * (1.0 + b.abs())
    }

    /// Expected (warm-up, value at the first kept row, value at the last row), computed by an
    /// independent straightforward Python script (full-window sums, no sliding updates).
    const EXPECTED: &[(&str, usize, f64, f64)] = &[
        ("open", 0, 10.0, 19.8),
        ("high", 0, 10.25, 20.65),
        ("low", 0, 9.75, 19.55),
        ("close", 0, 10.0, 20.4),
        ("volume", 0, 1000.0, 1400.0),
        ("log_return", 1, 0.058268908123975824, 0.02985296314968113),
        (
            "price_change_1",
            1,
            0.06000000000000005,
            0.030303030303030276,
        ),
        (
            "price_change_2",
            2,
            0.11999999999999988,
            -0.10132158590308382,
        ),
        (
            "price_change_5",
            5,
            0.30000000000000004,
            -0.02392344497607657,
        ),
        ("ma_5", 4, 11.2, 21.3),
        ("ma_10", 9, 11.65, 20.85),
        ("ma_20", 19, 12.375, 20.475),
        ("ma_50", 49, 13.92, 18.93),
        ("ema_5", 4, 11.437037037037038, 20.85225837785333),
        ("ema_10", 9, 11.560600802573102, 20.80509597610706),
        ("ema_20", 19, 12.423896353519336, 20.387984518521414),
        ("ema_50", 49, 14.099200314490753, 18.945786086707397),
        ("rsi_14", 14, 55.38461538461538, 51.364437432528476),
        ("macd", 25, 0.708651966449894, 0.6304891915002706),
        ("macd_signal", 33, 0.7143028995991636, 0.7082232390283214),
        (
            "macd_histogram",
            33,
            0.07163845952201298,
            -0.0777340475280508,
        ),
        ("bb_upper", 19, 14.910536899439851, 22.73390052435856),
        ("bb_lower", 19, 9.839463100560149, 18.216099475641442),
        ("bb_width", 19, 0.4097837413236123, 0.2206496238689679),
        ("bb_position", 19, 0.899323709398069, 0.4833990033666268),
        ("high_low_ratio", 0, 1.0512820512820513, 1.0562659846547313),
        ("close_open_ratio", 0, 1.0, 1.0303030303030303),
        ("volume_ratio", 19, 1.1666666666666667, 1.1666666666666667),
        ("volatility", 20, 0.08684131409251213, 0.06265059623163796),
        (
            "volatility_ratio",
            79,
            0.846299478758773,
            0.8612344871034769,
        ),
        (
            "resistance_distance",
            19,
            0.017361111111111112,
            0.12500000000000022,
        ),
        (
            "support_distance",
            19,
            0.3229166666666667,
            0.11029411764705883,
        ),
    ];

    #[test]
    fn every_feature_matches_independent_values() {
        let bars = series();
        assert_eq!(EXPECTED.len(), ALL_FEATURES.len());
        for (&(name, warm, first, last), &listed) in EXPECTED.iter().zip(ALL_FEATURES) {
            assert_eq!(name, listed);
            assert_eq!(lookback(name), Some(warm), "{name}");
            let t = column(&bars, name);
            assert_eq!(t.values.len(), 100 - warm, "{name}");
            assert_eq!(t.timestamps.first(), Some(&bars.timestamps[warm]), "{name}");
            assert_eq!(t.close.first(), Some(&bars.close[warm]), "{name}");
            let (a, b) = (t.values[0], t.values[t.values.len() - 1]);
            assert!(close_to(a, first), "{name}: first {a} vs {first}");
            assert!(close_to(b, last), "{name}: last {b} vs {last}");
        }
    }

    #[test]
    fn small_hand_computed_values() {
        let bars = series();
        // Closes 10, 10.6, 11.2, 11.8, 12.4: ma_5 at t = 4 is 56 / 5.
        let t = column(&bars, "ma_5");
        assert!(close_to(t.values[0], 11.2), "{}", t.values[0]);
        // ema_5 has alpha 1/3: 10, 10.2, 10.5333.., 10.9555.., 11.4370..
        let e = ema(&bars.close, 5, 0, None);
        assert_eq!(e[0], 10.0);
        assert!(close_to(e[1], 10.2));
        assert!(close_to(e[2], 10.2 + (11.2 - 10.2) / 3.0));
        assert!(close_to(e[4], 11.437037037037037));
        // First RSI: 14 changes; t = 1..6 are +0.6, t = 7 is -2.9, t = 8..13 are +0.6,
        // t = 14 is -2.9. gain = 12 * 0.6 / 14, loss = 2 * 2.9 / 14: RSI = 100 * 7.2 / 13.
        let r = column(&bars, "rsi_14");
        assert!(close_to(r.values[0], 100.0 * 7.2 / 13.0), "{}", r.values[0]);
    }

    #[test]
    fn degenerate_windows() {
        let n = 90;
        let flat = Bars {
            timestamps: (0..n as i64).collect(),
            open: vec![0.1; n],
            high: vec![0.1; n],
            low: vec![0.1; n],
            close: vec![0.1; n],
            volume: vec![0.0; n],
        };
        let names: Vec<String> = ALL_FEATURES.iter().map(|s| s.to_string()).collect();
        let t = compute(&flat, "FLAT", &names).unwrap();
        assert_eq!(t.timestamps.len(), n - 79);
        assert_eq!(t.timestamps[0], 79);
        let at = |name: &str| {
            let j = names.iter().position(|x| x == name).unwrap();
            t.values[j]
        };
        assert_eq!(at("bb_position"), 0.5);
        assert_eq!(at("volume_ratio"), 1.0);
        assert_eq!(at("volatility_ratio"), 1.0);
        assert_eq!(at("rsi_14"), 100.0);
        assert_eq!(at("volatility"), 0.0);
        assert_eq!(at("log_return"), 0.0);

        // Only rises: the average loss is 0, so RSI is 100.
        let up: Vec<f64> = (0..30).map(|t| 10.0 + t as f64).collect();
        let r = rsi(&up, 14, 0, None).0;
        assert_eq!(r[14], 100.0);
        assert_eq!(r[29], 100.0);
        assert!(r[13].is_nan());
    }

    #[test]
    fn warm_up_is_the_largest_lookback() {
        let bars = series();
        let names = vec![
            "close".to_string(),
            "ma_20".to_string(),
            "rsi_14".to_string(),
        ];
        let t = compute(&bars, "T", &names).unwrap();
        assert_eq!(t.names, names);
        assert_eq!(t.timestamps.len(), 81);
        assert_eq!(t.timestamps[0], bars.timestamps[19]);
        assert_eq!(t.values.len(), 81 * 3);
        // Row-major: row 0 is (close[19], ma_20[19], rsi_14[19]).
        assert_eq!(t.values[0], bars.close[19]);
        assert!(close_to(t.values[1], 12.375));
    }

    #[test]
    fn errors() {
        let bars = series();
        let e = compute(&bars, "T", &["nope".to_string()]).unwrap_err();
        assert!(e.to_string().contains("unknown feature 'nope'"));
        assert!(compute(&bars, "T", &[]).is_err());
        let short = Bars {
            timestamps: bars.timestamps[..79].to_vec(),
            open: bars.open[..79].to_vec(),
            high: bars.high[..79].to_vec(),
            low: bars.low[..79].to_vec(),
            close: bars.close[..79].to_vec(),
            volume: bars.volume[..79].to_vec(),
        };
        let e = compute(&short, "T", &["volatility_ratio".to_string()]).unwrap_err();
        assert!(e.to_string().contains("79 bars"), "{e}");
        assert!(compute(&short, "T", &["ma_50".to_string()]).is_ok());
        let mut broken = bars.clone();
        broken.volume.pop();
        assert!(compute(&broken, "T", &["close".to_string()]).is_err());
    }
}
