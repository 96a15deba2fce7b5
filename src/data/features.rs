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

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::OnceLock;

use rayon::prelude::*;

use super::ingest::{DataError, fmt_ts, validate};
use super::{Bars, FeatureTable};

/// Every feature name, in the order of features.md.
pub const ALL_FEATURES: &[&str] = &[
    "open",
    "high",
    "low",
    "close",
    "volume",
    "log_return",
    "price_change_1",
    "price_change_2",
    "price_change_5",
    "ma_5",
    "ma_10",
    "ma_20",
    "ma_50",
    "ema_5",
    "ema_10",
    "ema_20",
    "ema_50",
    "rsi_14",
    "macd",
    "macd_signal",
    "macd_histogram",
    "bb_upper",
    "bb_lower",
    "bb_width",
    "bb_position",
    "high_low_ratio",
    "close_open_ratio",
    "volume_ratio",
    "volatility",
    "volatility_ratio",
    "resistance_distance",
    "support_distance",
];

/// Features measured in price units, which the dataset stage can express relative to the
/// window's last close.
pub fn is_price_level(name: &str) -> bool {
    matches!(
        name,
        "open"
            | "high"
            | "low"
            | "close"
            | "ma_5"
            | "ma_10"
            | "ma_20"
            | "ma_50"
            | "ema_5"
            | "ema_10"
            | "ema_20"
            | "ema_50"
            | "bb_upper"
            | "bb_lower"
    )
}

/// Leading bars that are warm-up for `name` (see the module table); `None` for an unknown name.
pub fn lookback(name: &str) -> Option<usize> {
    Some(match name {
        "open" | "high" | "low" | "close" | "volume" | "high_low_ratio" | "close_open_ratio" => 0,
        "log_return" | "price_change_1" => 1,
        "price_change_2" => 2,
        "price_change_5" => 5,
        "ma_5" | "ema_5" => 4,
        "ma_10" | "ema_10" => 9,
        "ma_20" | "ema_20" => 19,
        "ma_50" | "ema_50" => 49,
        "rsi_14" => RSI_PERIOD,
        "macd" => MACD_SLOW - 1,
        "macd_signal" | "macd_histogram" => MACD_SLOW - 1 + MACD_SIGNAL - 1,
        "bb_upper" | "bb_lower" | "bb_width" | "bb_position" => BB_WINDOW - 1,
        "volume_ratio" | "resistance_distance" | "support_distance" => WINDOW - 1,
        "volatility" => WINDOW,
        "volatility_ratio" => WINDOW + VOL_RATIO_WINDOW - 1,
        _ => return None,
    })
}

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

/// Bars before a state's last bar that [`extend`] may read again. The deepest read is
/// volatility_ratio's: its 60-bar mean replays from the last re-summed window (up to 118
/// volatilities back), each of which replays its own 20-bar window (38 log returns back), each
/// of which needs the previous close: 157 bars. A digest of these bars is kept in the state so
/// a changed prefix there is an error rather than a silently different table.
const CONTEXT_BARS: usize = 256;

/// What [`FeatureState::from_bytes`] names as the symbol in its errors (a state has none).
const STATE_SUBJECT: &str = "saved feature state";
const STATE_MAGIC: &[u8; 8] = b"HFTFSTAT";
const STATE_VERSION: u32 = 1;
const DIGEST_LEN: usize = 32;

/// Computes the named features of one symbol and drops the warm-up rows.
///
/// Errors on invalid bars, an empty or unknown feature name, too few bars for the warm-up, or a
/// non-finite value (e.g. prices so extreme that a ratio overflows).
pub fn compute(bars: &Bars, symbol: &str, names: &[String]) -> Result<FeatureTable, DataError> {
    compute_with_state(bars, symbol, names).map(|(table, _)| table)
}

/// Everything needed to continue the feature computation after the last bar of the bars it was
/// computed from: the recursive averages at that bar (EMAs, the MACD EMAs and signal, the Wilder
/// RSI averages) and a digest of the bars the continuation reads again. Rolling means, standard
/// deviations and extremes need no saved accumulator: they re-sum from scratch every `w` bars,
/// so [`extend`] replays them exactly from the last re-summation point.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureState {
    /// The selected features, in column order.
    names: Vec<String>,
    /// Bars consumed.
    bars: usize,
    /// Timestamp of the last bar consumed.
    last_timestamp: i64,
    /// blake3 of the last [`CONTEXT_BARS`] bars consumed (see [`context_digest`]).
    context_digest: [u8; DIGEST_LEN],
    /// Recursive averages after the last bar, by key (see [`recursive_keys`]), sorted by key.
    recursive: Recursive,
}

impl FeatureState {
    /// The number of bars this state has consumed.
    pub fn bars(&self) -> usize {
        self.bars
    }

    /// The features this state belongs to, in column order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Version 1, little-endian: magic `HFTFSTAT`, version u32, bars u64, last timestamp i64,
    /// context digest (32 bytes), names (u32 count, then u32 length + UTF-8 each), recursive
    /// averages (u32 count, then u32 length + UTF-8 key + f64 bits each), and a blake3 digest of
    /// everything before it (32 bytes).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + 16 * (self.names.len() + self.recursive.len()));
        out.extend_from_slice(STATE_MAGIC);
        out.extend_from_slice(&STATE_VERSION.to_le_bytes());
        out.extend_from_slice(&(self.bars as u64).to_le_bytes());
        out.extend_from_slice(&self.last_timestamp.to_le_bytes());
        out.extend_from_slice(&self.context_digest);
        let put_str = |out: &mut Vec<u8>, s: &str| {
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        };
        out.extend_from_slice(&(self.names.len() as u32).to_le_bytes());
        for name in &self.names {
            put_str(&mut out, name);
        }
        out.extend_from_slice(&(self.recursive.len() as u32).to_le_bytes());
        for (key, value) in &self.recursive {
            put_str(&mut out, key);
            out.extend_from_slice(&value.to_bits().to_le_bytes());
        }
        let checksum = blake3::hash(&out);
        out.extend_from_slice(checksum.as_bytes());
        out
    }

    /// Decodes [`FeatureState::to_bytes`]; errors (never panics) on truncated, corrupted or
    /// foreign bytes, naming the byte offset.
    pub fn from_bytes(bytes: &[u8]) -> Result<FeatureState, DataError> {
        let fail = |at: usize, what: String| DataError::Features {
            symbol: STATE_SUBJECT.to_string(),
            message: format!(
                "byte {at}: {what}; discard the state and compute the features in full"
            ),
        };
        let header = STATE_MAGIC.len() + 4;
        if bytes.len() < header + DIGEST_LEN {
            return Err(fail(
                bytes.len(),
                format!(
                    "truncated: {} bytes, a state has at least {}",
                    bytes.len(),
                    header + DIGEST_LEN
                ),
            ));
        }
        if !bytes.starts_with(STATE_MAGIC) {
            return Err(fail(0, "not a feature state (bad magic)".into()));
        }
        let mut r = StateReader {
            bytes,
            at: STATE_MAGIC.len(),
        };
        let version = u32::from_le_bytes(r.array().map_err(|e| fail(r.at, e))?);
        if version != STATE_VERSION {
            return Err(fail(
                STATE_MAGIC.len(),
                format!("version {version}, this build reads version {STATE_VERSION}"),
            ));
        }
        let body_len = bytes.len() - DIGEST_LEN;
        let (body, checksum) = bytes.split_at(body_len);
        if blake3::hash(body).as_bytes() != checksum {
            return Err(fail(body_len, "checksum mismatch (corrupted)".into()));
        }
        r.bytes = body;
        let bars = u64::from_le_bytes(r.array().map_err(|e| fail(r.at, e))?);
        let bars = usize::try_from(bars)
            .map_err(|_| fail(r.at, format!("{bars} bars do not fit this machine")))?;
        let last_timestamp = i64::from_le_bytes(r.array().map_err(|e| fail(r.at, e))?);
        let context_digest: [u8; DIGEST_LEN] = r.array().map_err(|e| fail(r.at, e))?;
        let count = r.count(4).map_err(|e| fail(r.at, e))?;
        let mut names = Vec::with_capacity(count);
        for _ in 0..count {
            names.push(r.string().map_err(|e| fail(r.at, e))?);
        }
        let count = r.count(12).map_err(|e| fail(r.at, e))?;
        let mut recursive: Recursive = Vec::with_capacity(count);
        for _ in 0..count {
            let key = r.string().map_err(|e| fail(r.at, e))?;
            let value = f64::from_bits(u64::from_le_bytes(r.array().map_err(|e| fail(r.at, e))?));
            if recursive.last().is_some_and(|(last, _)| *last >= key) {
                return Err(fail(r.at, format!("key '{key}' out of order")));
            }
            recursive.push((key, value));
        }
        if r.at != body.len() {
            return Err(fail(
                r.at,
                format!("{} unexpected trailing bytes", body.len() - r.at),
            ));
        }
        Ok(FeatureState {
            names,
            bars,
            last_timestamp,
            context_digest,
            recursive,
        })
    }
}

/// A bounds-checked cursor over state bytes; errors say what was expected.
struct StateReader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl StateReader<'_> {
    fn take(&mut self, len: usize) -> Result<&[u8], String> {
        let end = self.at.checked_add(len);
        match end.and_then(|end| self.bytes.get(self.at..end)) {
            Some(s) => {
                self.at += len;
                Ok(s)
            }
            None => Err(format!(
                "truncated: needs {len} bytes, {} left",
                self.bytes.len().saturating_sub(self.at)
            )),
        }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let s = self.take(N)?;
        let mut out = [0; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    /// A u32 count of items of at least `min_item` bytes each, checked against what is left
    /// (so garbage cannot make us allocate).
    fn count(&mut self, min_item: usize) -> Result<usize, String> {
        let count = u32::from_le_bytes(self.array()?) as usize;
        let left = self.bytes.len().saturating_sub(self.at);
        if count.saturating_mul(min_item) > left {
            return Err(format!("{count} items cannot fit in the {left} bytes left"));
        }
        Ok(count)
    }

    fn string(&mut self) -> Result<String, String> {
        let len = u32::from_le_bytes(self.array()?) as usize;
        let s = self.take(len)?;
        String::from_utf8(s.to_vec()).map_err(|_| "a name that is not UTF-8".to_string())
    }
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

/// Continues `prev_table` (computed by [`compute_with_state`] or [`extend`] together with
/// `prev_state`) over `bars` = the same bars plus appended ones: computes only the new rows and
/// returns (table, state, rows computed), equal bit for bit to `compute_with_state(bars, ..)`.
///
/// The caller must have checked that the old bars are an unchanged prefix of `bars`; this
/// checks the last bar's timestamp and the bars the continuation reads again (a digest), and
/// errors on a state or table of other features, symbol or length. A table still inside the
/// warm-up (or empty) is recomputed in full, and rows computed then says so.
pub fn extend(
    prev_table: &FeatureTable,
    prev_state: &FeatureState,
    bars: &Bars,
    symbol: &str,
    names: &[String],
) -> Result<(FeatureTable, FeatureState, usize), DataError> {
    match plan_extension(prev_table, prev_state, bars, symbol, names)? {
        Extension::Full => full_recompute(bars, symbol, names),
        Extension::UpToDate => Ok((prev_table.clone(), prev_state.clone(), 0)),
        Extension::Tail { warm } => append_rows(prev_table.clone(), prev_state, bars, names, warm),
    }
}

/// [`extend`] taking the previous table by value, so its rows are not copied (they are most of
/// the cost of a small extension of a long series).
pub fn extend_owned(
    prev_table: FeatureTable,
    prev_state: &FeatureState,
    bars: &Bars,
    symbol: &str,
    names: &[String],
) -> Result<(FeatureTable, FeatureState, usize), DataError> {
    match plan_extension(&prev_table, prev_state, bars, symbol, names)? {
        Extension::Full => full_recompute(bars, symbol, names),
        Extension::UpToDate => Ok((prev_table, prev_state.clone(), 0)),
        Extension::Tail { warm } => append_rows(prev_table, prev_state, bars, names, warm),
    }
}

/// What [`extend`] has to do.
enum Extension {
    /// The previous table cannot be continued (still inside the warm-up).
    Full,
    /// No bar was appended.
    UpToDate,
    /// Compute the appended bars' rows.
    Tail { warm: usize },
}

fn full_recompute(
    bars: &Bars,
    symbol: &str,
    names: &[String],
) -> Result<(FeatureTable, FeatureState, usize), DataError> {
    let (table, state) = compute_with_state(bars, symbol, names)?;
    let rows = table.timestamps.len();
    Ok((table, state, rows))
}

/// Checks that `prev_table` and `prev_state` belong to `names`, `symbol` and a prefix of `bars`.
fn plan_extension(
    prev_table: &FeatureTable,
    prev_state: &FeatureState,
    bars: &Bars,
    symbol: &str,
    names: &[String],
) -> Result<Extension, DataError> {
    let fail = |message: String| DataError::Features {
        symbol: symbol.to_string(),
        message,
    };
    let recompute = "compute the features in full";
    if prev_state.names != names {
        return Err(fail(format!(
            "the saved feature state is for features [{}], not [{}]; {recompute}",
            prev_state.names.join(", "),
            names.join(", ")
        )));
    }
    if prev_table.names != names || prev_table.symbol != symbol {
        return Err(fail(format!(
            "the previous table is for '{}' with features [{}], not '{symbol}' with [{}]; \
             {recompute}",
            prev_table.symbol,
            prev_table.names.join(", "),
            names.join(", ")
        )));
    }
    let warm = warm_up(names).map_err(fail)?;
    let n = bars.timestamps.len();
    if [&bars.open, &bars.high, &bars.low, &bars.close, &bars.volume]
        .iter()
        .any(|column| column.len() != n)
    {
        // The full check names the column (its length check comes first, so this is O(1)).
        validate(bars).map_err(|e| fail(e.to_string()))?;
    }
    let old = prev_state.bars;
    if old <= warm || prev_table.timestamps.is_empty() {
        return Ok(Extension::Full);
    }
    if n < old {
        return Err(fail(format!(
            "{n} bars, fewer than the {old} the saved state has seen (the data shrank); \
             {recompute}"
        )));
    }
    let rows = old - warm;
    let k = names.len();
    if prev_table.timestamps.len() != rows
        || prev_table.close.len() != rows
        || prev_table.values.len() != rows.saturating_mul(k)
    {
        return Err(fail(format!(
            "the previous table has {} rows of {} values, but a state of {old} bars needs {rows} \
             rows of {k}; {recompute}",
            prev_table.timestamps.len(),
            prev_table.values.len() / k.max(1)
        )));
    }
    let last = bars.timestamps.get(old - 1).copied();
    if last != Some(prev_state.last_timestamp)
        || prev_table.timestamps.last() != Some(&prev_state.last_timestamp)
    {
        return Err(fail(format!(
            "bar {old} is at {}, but the saved state ends at {}; {recompute}",
            fmt_ts(last.unwrap_or_default()),
            fmt_ts(prev_state.last_timestamp)
        )));
    }
    if context_digest(bars, old) != prev_state.context_digest {
        return Err(fail(format!(
            "the {} bars up to {} differ from those the saved state was computed from; \
             {recompute}",
            old.min(CONTEXT_BARS),
            fmt_ts(prev_state.last_timestamp)
        )));
    }
    let expected = recursive_keys(names);
    let saved: Vec<&str> = prev_state
        .recursive
        .iter()
        .map(|(k, _)| k.as_str())
        .collect();
    if saved != expected {
        return Err(fail(format!(
            "the saved feature state holds [{}], features [{}] need [{}]; {recompute}",
            saved.join(", "),
            names.join(", "),
            expected.join(", ")
        )));
    }
    Ok(if n == old {
        Extension::UpToDate
    } else {
        Extension::Tail { warm }
    })
}

/// Appends the rows of bars `prev_state.bars..` to `table` (checked by [`plan_extension`]).
fn append_rows(
    mut table: FeatureTable,
    prev_state: &FeatureState,
    bars: &Bars,
    names: &[String],
    warm: usize,
) -> Result<(FeatureTable, FeatureState, usize), DataError> {
    let old = prev_state.bars;
    let symbol = table.symbol.clone();
    // The old bars were validated by the run that saved the state; check the new ones and the
    // step from the last old bar, reporting rows as the full check would.
    let from_row = old - 1;
    let tail = |column: &[f64]| column.get(from_row..).unwrap_or_default().to_vec();
    let tail_bars = Bars {
        timestamps: bars.timestamps.get(from_row..).unwrap_or_default().to_vec(),
        open: tail(&bars.open),
        high: tail(&bars.high),
        low: tail(&bars.low),
        close: tail(&bars.close),
        volume: tail(&bars.volume),
    };
    validate(&tail_bars).map_err(|e| {
        let e = match e {
            DataError::Bars {
                index,
                column,
                message,
            } => DataError::Bars {
                index: index + from_row,
                column,
                message,
            },
            other => other,
        };
        DataError::Features {
            symbol: symbol.clone(),
            message: e.to_string(),
        }
    })?;
    let (values, recursive) = compute_rows(bars, &symbol, names, warm, old, &prev_state.recursive)?;
    let rows = bars.close.len() - old;
    // Exact growth: a long table's buffer is not doubled for a few rows.
    table.values.reserve_exact(values.len());
    table.timestamps.reserve_exact(rows);
    table.close.reserve_exact(rows);
    table.values.extend_from_slice(&values);
    table
        .timestamps
        .extend_from_slice(bars.timestamps.get(old..).unwrap_or_default());
    table
        .close
        .extend_from_slice(bars.close.get(old..).unwrap_or_default());
    Ok((table, state_after(bars, names, recursive), rows))
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

/// The keys of the recursive averages `names` need, sorted and distinct.
fn recursive_keys(names: &[String]) -> Vec<&'static str> {
    let mut keys: Vec<&'static str> = Vec::new();
    for name in names {
        match name.as_str() {
            "ema_5" => keys.push("ema_5"),
            "ema_10" => keys.push("ema_10"),
            "ema_20" => keys.push("ema_20"),
            "ema_50" => keys.push("ema_50"),
            "macd" | "macd_signal" | "macd_histogram" => {
                keys.extend(["macd_fast", "macd_signal", "macd_slow"])
            }
            "rsi_14" => keys.extend(["rsi_gain", "rsi_loss"]),
            _ => {}
        }
    }
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// blake3 of bars `n - CONTEXT_BARS..n` (from 0 when fewer): timestamp and OHLCV bits per row.
fn context_digest(bars: &Bars, n: usize) -> [u8; DIGEST_LEN] {
    let mut h = blake3::Hasher::new();
    for t in n.saturating_sub(CONTEXT_BARS)..n {
        h.update(
            &bars
                .timestamps
                .get(t)
                .copied()
                .unwrap_or_default()
                .to_le_bytes(),
        );
        for column in [&bars.open, &bars.high, &bars.low, &bars.close, &bars.volume] {
            let v = column.get(t).copied().unwrap_or(f64::NAN);
            h.update(&v.to_bits().to_le_bytes());
        }
    }
    *h.finalize().as_bytes()
}

fn state_after(bars: &Bars, names: &[String], mut recursive: Recursive) -> FeatureState {
    let n = bars.close.len();
    recursive.sort_by(|a, b| a.0.cmp(&b.0));
    recursive.dedup_by(|a, b| a.0 == b.0);
    FeatureState {
        names: names.to_vec(),
        bars: n,
        last_timestamp: bars.timestamps.last().copied().unwrap_or_default(),
        context_digest: context_digest(bars, n),
        recursive,
    }
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
    let mut values = vec![0.0; rows * k];
    let finite = values
        .par_chunks_mut(BLOCK_ROWS * k)
        .enumerate()
        .map(|(b, block)| {
            let mut finite = true;
            for (i, row) in block.chunks_exact_mut(k).enumerate() {
                let t = first + b * BLOCK_ROWS + i;
                for (j, out) in row.iter_mut().enumerate() {
                    *out = value(t, j);
                    finite &= out.is_finite();
                }
            }
            finite
        })
        .reduce(|| true, |a, b| a && b);
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
        if name.starts_with("ema_")
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

/// macd and its signal over bars `from..n`, and the last values of the two EMAs behind macd.
struct Macd {
    macd: Vec<f64>,
    signal: Vec<f64>,
    fast_last: Option<f64>,
    slow_last: Option<f64>,
}

/// Intermediate series shared by several features, computed once per call (by the first
/// column that needs them; the others wait). Every series holds bars `from..n`, except
/// `volatility`, which starts at [`Cache::volatility_start`].
struct Cache<'a> {
    bars: &'a Bars,
    /// The first bar computed: 0 for a full computation, the first new bar for [`extend`].
    from: usize,
    /// The recursive averages after bar `from - 1`.
    resume: &'a [(String, f64)],
    bollinger: OnceLock<(Vec<f64>, Vec<f64>)>,
    macd: OnceLock<Macd>,
    volatility: OnceLock<Vec<f64>>,
    /// RSI and its averages after the last bar (`None` before they exist).
    rsi: OnceLock<(Vec<f64>, Option<WilderAverages>)>,
}

impl<'a> Cache<'a> {
    fn new(bars: &'a Bars, from: usize, resume: &'a [(String, f64)]) -> Self {
        Cache {
            bars,
            from,
            resume,
            bollinger: OnceLock::new(),
            macd: OnceLock::new(),
            volatility: OnceLock::new(),
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
        let close = &self.bars.close;
        self.volatility
            .get_or_init(|| volatility(close, self.volatility_start()))
    }

    /// The series of one feature over bars `from..n`; warm-up entries are NaN or not yet
    /// meaningful.
    fn series(&self, name: &str) -> Cow<'a, [f64]> {
        let b = self.bars;
        let own = |column: &'a [f64]| Cow::Borrowed(column.get(self.from..).unwrap_or_default());
        match name {
            "open" => own(&b.open),
            "high" => own(&b.high),
            "low" => own(&b.low),
            "close" => own(&b.close),
            "volume" => own(&b.volume),
            _ => Cow::Owned(self.derived(name)),
        }
    }

    /// A feature that is not a raw bar column, over bars `from..n`.
    fn derived(&self, name: &str) -> Vec<f64> {
        let b = self.bars;
        let from = self.from;
        let tail = |column: &'a [f64]| column.get(from..).unwrap_or_default();
        let c = &b.close;
        let zip = |x: &[f64], y: &[f64], f: fn(f64, f64) -> f64| -> Vec<f64> {
            x.iter().zip(y).map(|(&a, &b)| f(a, b)).collect()
        };
        match name {
            "log_return" => log_returns(c, from),
            "price_change_1" => price_change(c, 1, from),
            "price_change_2" => price_change(c, 2, from),
            "price_change_5" => price_change(c, 5, from),
            "ma_5" => rolling_mean_std(c, 0, 5, false, from).0,
            "ma_10" => rolling_mean_std(c, 0, 10, false, from).0,
            "ma_20" => self.bollinger().0.clone(),
            "ma_50" => rolling_mean_std(c, 0, 50, false, from).0,
            "ema_5" => ema(c, 5, from, self.resumed("ema_5")),
            "ema_10" => ema(c, 10, from, self.resumed("ema_10")),
            "ema_20" => ema(c, 20, from, self.resumed("ema_20")),
            "ema_50" => ema(c, 50, from, self.resumed("ema_50")),
            "rsi_14" => self.rsi().0.clone(),
            "macd" => self.macd().macd.clone(),
            "macd_signal" => self.macd().signal.clone(),
            "macd_histogram" => {
                let m = self.macd();
                zip(&m.macd, &m.signal, |m, s| m - s)
            }
            "bb_upper" => {
                let (m, s) = self.bollinger();
                zip(m, s, |m, s| m + 2.0 * s)
            }
            "bb_lower" => {
                let (m, s) = self.bollinger();
                zip(m, s, |m, s| m - 2.0 * s)
            }
            "bb_width" => {
                // (upper - lower) / ma_20, with upper and lower rounded as the features are.
                let (m, s) = self.bollinger();
                zip(m, s, |m, s| ((m + 2.0 * s) - (m - 2.0 * s)) / m)
            }
            "bb_position" => {
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
            "high_low_ratio" => zip(tail(&b.high), tail(&b.low), |h, l| h / l),
            "close_open_ratio" => zip(tail(c), tail(&b.open), |c, o| c / o),
            "volume_ratio" => {
                let mean = rolling_mean_std(&b.volume, 0, WINDOW, false, from).0;
                zip(
                    tail(&b.volume),
                    &mean,
                    |v, m| if m == 0.0 { 1.0 } else { v / m },
                )
            }
            "volatility" => {
                let vol = self.volatility();
                vol.get(from - self.volatility_start()..)
                    .unwrap_or_default()
                    .to_vec()
            }
            "volatility_ratio" => {
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
            "resistance_distance" => {
                let top = rolling_extreme(&b.high, WINDOW, |a, b| a >= b, from);
                zip(&top, tail(c), |h, c| (h - c) / c)
            }
            "support_distance" => {
                let bottom = rolling_extreme(&b.low, WINDOW, |a, b| a <= b, from);
                zip(&bottom, tail(c), |l, c| (c - l) / c)
            }
            // `compute` checks names against `lookback` first.
            _ => vec![f64::NAN; c.len().saturating_sub(from)],
        }
    }
}

/// `x` moved right by `by` places, NaN in front: for series computed on a defined suffix.
fn shifted(x: &[f64], by: usize) -> Vec<f64> {
    let mut out = vec![f64::NAN; by];
    out.extend_from_slice(x);
    out
}

/// ln(C[t] / C[t-1]) for t in `from..n`; NaN at t = 0.
fn log_returns(c: &[f64], from: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(c.len().saturating_sub(from));
    if from == 0 && !c.is_empty() {
        out.push(f64::NAN);
    }
    let pairs = c.get(from.saturating_sub(1)..).unwrap_or_default();
    out.extend(
        pairs
            .iter()
            .zip(pairs.iter().skip(1))
            .map(|(a, b)| (b / a).ln()),
    );
    out
}

/// C[t] / C[t-k] - 1 for t in `from..n`; NaN for t < k.
fn price_change(c: &[f64], k: usize, from: usize) -> Vec<f64> {
    let mut out = vec![f64::NAN; k.min(c.len()).saturating_sub(from)];
    let first = from.max(k);
    let old = c.get(first - k..).unwrap_or_default();
    let new = c.get(first..).unwrap_or_default();
    out.extend(old.iter().zip(new).map(|(old, new)| new / old - 1.0));
    out
}

/// Recursive EMA with alpha = 2 / (w + 1) over `x[from..]`, continuing from `prev` (the EMA at
/// `from - 1`) or, without one, seeded with `x[from]`: e[t] = alpha * x[t] + (1 - alpha) * e[t-1].
fn ema(x: &[f64], w: usize, from: usize, prev: Option<f64>) -> Vec<f64> {
    let alpha = 2.0 / (w as f64 + 1.0);
    let rest = x.get(from..).unwrap_or_default();
    let mut out = Vec::with_capacity(rest.len());
    let mut e = prev;
    for &v in rest {
        let next = match e {
            Some(e) => alpha * v + (1.0 - alpha) * e,
            None => v,
        };
        e = Some(next);
        out.push(next);
    }
    out
}

/// Wilder RSI over bars `from..n`, continuing from `avg` (the average gain and loss after bar
/// `from - 1`; `None` while they do not exist yet). The first averages are plain means of the
/// first `p` gains/losses (defined at t = p), then avg = ((p - 1) * avg + x) / p. 100 when the
/// average loss is 0. Also returns the averages after the last bar.
fn rsi(
    c: &[f64],
    p: usize,
    from: usize,
    mut avg: Option<WilderAverages>,
) -> (Vec<f64>, Option<WilderAverages>) {
    let pf = p as f64;
    let value = |(g, l): WilderAverages| {
        if l == 0.0 {
            100.0
        } else {
            100.0 - 100.0 / (1.0 + g / l)
        }
    };
    let mut out = Vec::with_capacity(c.len().saturating_sub(from));
    let mut prev_close = from.checked_sub(1).and_then(|i| c.get(i)).copied();
    for (t, &close) in c.iter().enumerate().skip(from) {
        avg = match (avg, prev_close) {
            (Some((gain, loss)), Some(prev)) => {
                let d = close - prev;
                Some((
                    ((pf - 1.0) * gain + d.max(0.0)) / pf,
                    ((pf - 1.0) * loss + (-d).max(0.0)) / pf,
                ))
            }
            (None, _) if t == p && p > 0 => {
                let (mut gain, mut loss) = (0.0, 0.0);
                // The first p changes, C[i+1] - C[i] for i < p.
                let first = c.get(..=p).unwrap_or_default();
                for (a, b) in first.iter().zip(first.iter().skip(1)) {
                    let d = b - a;
                    gain += d.max(0.0);
                    loss += (-d).max(0.0);
                }
                Some((gain / pf, loss / pf))
            }
            (other, _) => other,
        };
        prev_close = Some(close);
        out.push(avg.map_or(f64::NAN, value));
    }
    (out, avg)
}

/// The start of the last window, among those ending at or before `max(end, w - 1)`, that
/// re-sums from scratch (its start is a multiple of `w`; see [`rolling_mean_std`]).
fn replay_start(end: usize, w: usize) -> usize {
    if w == 0 || end + 1 < w {
        0
    } else {
        (end + 1 - w) / w * w
    }
}

/// Rolling mean and sample standard deviation (n - 1) over `w` values of a series whose
/// element `base + i` is `x[i]`, for window ends `from..base + x.len()` (NaN before index
/// `w - 1`). Slides mean and M2 with Welford's add/remove update and re-sums the window exactly
/// (two passes) whenever the window starts at a multiple of `w`: so the values from `from` on
/// depend only on elements from [`replay_start`]`(from, w)` on, where `x` must start at the
/// latest, and a computation started there (with `base` > 0) replays the full one bit for bit.
/// Without `with_std` the standard deviations are left NaN (the means are the same either way).
fn rolling_mean_std(
    x: &[f64],
    base: usize,
    w: usize,
    with_std: bool,
    from: usize,
) -> (Vec<f64>, Vec<f64>) {
    let n = base + x.len();
    let len = n.saturating_sub(from);
    let mut mean_out = vec![f64::NAN; len];
    let mut std_out = vec![f64::NAN; len];
    if w == 0 || n < w {
        return (mean_out, std_out);
    }
    let wf = w as f64;
    let denom = if w > 1 { wf - 1.0 } else { 1.0 };
    let at = |i: usize| {
        i.checked_sub(base)
            .and_then(|i| x.get(i))
            .copied()
            .unwrap_or(f64::NAN)
    };
    let (mut mean, mut m2) = (0.0_f64, 0.0_f64);
    for end in replay_start(from, w) + w - 1..n {
        let start = end + 1 - w;
        if start.is_multiple_of(w) {
            let window = start.checked_sub(base).and_then(|s| x.get(s..s + w));
            match window {
                Some(window) => {
                    mean = window.iter().sum::<f64>() / wf;
                    if with_std {
                        m2 = window.iter().map(|v| (v - mean) * (v - mean)).sum();
                    }
                }
                // `x` starts too late: a caller's bug, surfaced by the finiteness check.
                None => (mean, m2) = (f64::NAN, f64::NAN),
            }
        } else {
            let (old, new) = (at(start - 1), at(end));
            let prev_mean = mean;
            mean += (new - old) / wf;
            if with_std {
                m2 += (new - old) * (new - mean + old - prev_mean);
                m2 = m2.max(0.0);
            }
        }
        if let Some(j) = end.checked_sub(from) {
            if let Some(out) = mean_out.get_mut(j) {
                *out = mean;
            }
            if with_std && let Some(out) = std_out.get_mut(j) {
                *out = (m2 / denom).sqrt();
            }
        }
    }
    (mean_out, std_out)
}

/// Sample standard deviation of the log returns over 20 bars, for bars `from..n`. The rolling
/// window runs over log returns from bar 1 on (index i = bar - 1) and is replayed from its last
/// re-summation before `from`.
fn volatility(c: &[f64], from: usize) -> Vec<f64> {
    let from_index = from.saturating_sub(1);
    let start = replay_start(from_index, WINDOW);
    let returns = log_returns(c, start + 1);
    let std = rolling_mean_std(&returns, start, WINDOW, true, from_index).1;
    if from == 0 { shifted(&std, 1) } else { std }
}

/// Rolling max (`keep(a, b) = a >= b`) or min (`a <= b`) over `w` values with a monotonic
/// deque of indices, for indices `from..n`; defined from index `w - 1` (NaN before). The scan
/// starts `w` values before `from`: a window's extreme is the same value whichever index of
/// it the deque holds, so that is exact.
fn rolling_extreme(x: &[f64], w: usize, keep: fn(f64, f64) -> bool, from: usize) -> Vec<f64> {
    let scan = from.saturating_sub(w);
    let part = x.get(scan..).unwrap_or_default();
    let mut out = Vec::with_capacity(x.len().saturating_sub(from));
    let mut deque: VecDeque<usize> = VecDeque::with_capacity(w + 1);
    for (i, &v) in part.iter().enumerate() {
        while let Some(&back) = deque.back() {
            if part.get(back).is_some_and(|&b| keep(v, b)) {
                deque.pop_back();
            } else {
                break;
            }
        }
        deque.push_back(i);
        if let Some(&front) = deque.front()
            && front + w <= i
        {
            deque.pop_front();
        }
        if scan + i >= from {
            let extreme = match deque.front() {
                Some(&front) if scan + i + 1 >= w => part.get(front).copied(),
                _ => None,
            };
            out.push(extreme.unwrap_or(f64::NAN));
        }
    }
    out
}

#[cfg(test)]
mod tests {
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
    /// digest was taken from the implementation before the incremental path existed.
    #[test]
    fn compute_bytes_are_unchanged() {
        assert_eq!(golden_digest(), GOLDEN);
    }

    const GOLDEN: &str = "81cbcea0376c9cd2135da9ef5f2e17911637041136910b44b25aa5035dc7a16e";

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
    fn series() -> Bars {
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

    #[test]
    fn rolling_helpers_match_naive_on_long_series() {
        // Sliding updates with periodic re-summation stay within float noise of the naive sums.
        let x: Vec<f64> = (0..5000)
            .map(|i| 1000.0 + ((i * 7919) % 113) as f64 * 0.37 - (i % 17) as f64)
            .collect();
        let (m, s) = rolling_mean_std(&x, 0, 20, true, 0);
        assert_eq!(rolling_mean_std(&x, 0, 20, false, 0).0[19..], m[19..]);
        let mx = rolling_extreme(&x, 20, |a, b| a >= b, 0);
        let mn = rolling_extreme(&x, 20, |a, b| a <= b, 0);
        for end in 19..x.len() {
            let w = &x[end - 19..=end];
            let mean = w.iter().sum::<f64>() / 20.0;
            let var = w.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 19.0;
            assert!((m[end] - mean).abs() < 1e-9);
            assert!((s[end] - var.sqrt()).abs() < 1e-9);
            assert_eq!(mx[end], w.iter().cloned().fold(f64::MIN, f64::max));
            assert_eq!(mn[end], w.iter().cloned().fold(f64::MAX, f64::min));
        }
    }

    // ---- incremental computation ----

    fn all_names() -> Vec<String> {
        ALL_FEATURES.iter().map(|s| s.to_string()).collect()
    }

    /// The first `m` bars.
    fn head(bars: &Bars, m: usize) -> Bars {
        Bars {
            timestamps: bars.timestamps[..m].to_vec(),
            open: bars.open[..m].to_vec(),
            high: bars.high[..m].to_vec(),
            low: bars.low[..m].to_vec(),
            close: bars.close[..m].to_vec(),
            volume: bars.volume[..m].to_vec(),
        }
    }

    /// Tables equal bit for bit (NaN-safe, and -0.0 differs from 0.0).
    fn assert_same_table(a: &FeatureTable, b: &FeatureTable, what: &str) {
        assert_eq!(a.symbol, b.symbol, "{what}");
        assert_eq!(a.names, b.names, "{what}");
        assert_eq!(a.timestamps, b.timestamps, "{what}");
        let bits = |x: &[f64]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&a.close), bits(&b.close), "{what}: close");
        assert_eq!(a.values.len(), b.values.len(), "{what}: values");
        let k = a.names.len();
        if let Some(i) =
            (0..a.values.len()).find(|&i| a.values[i].to_bits() != b.values[i].to_bits())
        {
            panic!(
                "{what}: row {} feature '{}': {:?} vs {:?}",
                i / k,
                a.names[i % k],
                a.values[i],
                b.values[i]
            );
        }
    }

    /// extend(compute_with_state(prefix)) against compute_with_state(full), tables and states.
    fn check_split(bars: &Bars, names: &[String], old: usize, added: usize) {
        let what = format!("{names:?} {old} + {added}");
        let full_bars = head(bars, old + added);
        let (prev_table, prev_state) = compute_with_state(&head(bars, old), "S", names).unwrap();
        let (table, state, rows) = extend(&prev_table, &prev_state, &full_bars, "S", names)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let (want_table, want_state) = compute_with_state(&full_bars, "S", names).unwrap();
        assert_eq!(rows, added, "{what}: rows computed");
        assert_same_table(&table, &want_table, &what);
        assert_eq!(state.to_bytes(), want_state.to_bytes(), "{what}: state");
        assert_eq!(state, want_state, "{what}: state");
    }

    #[test]
    fn extend_equals_full_computation_for_every_feature() {
        let bars = crate::data::synthetic::generate(23, 3600, 40.0, 300);
        let mut lists: Vec<Vec<String>> =
            ALL_FEATURES.iter().map(|s| vec![s.to_string()]).collect();
        lists.push(all_names());
        for names in &lists {
            let warm = names.iter().filter_map(|n| lookback(n)).max().unwrap();
            // Just after the warm-up, then around re-summation points of the 20-, 50- and
            // 60-bar windows (the 60-bar one runs from bar 20), the middle, and the last bar.
            let mut splits = vec![warm + 1, warm + 2, warm + 30];
            splits.extend([
                99, 100, 101, 119, 120, 121, 139, 140, 141, 150, 151, 199, 200,
            ]);
            splits.extend([1500, 2999, 3099]);
            splits.retain(|&s| s > warm);
            splits.sort_unstable();
            splits.dedup();
            for &old in &splits {
                for added in [1, 10, 500] {
                    check_split(&bars, names, old, added);
                }
            }
        }
    }

    #[test]
    fn extend_on_the_reference_series() {
        // The hand-checked series, flat bars (degenerate windows) and one-bar-at-a-time growth.
        let bars = series();
        for names in [all_names(), vec!["rsi_14".to_string(), "ma_5".to_string()]] {
            for old in 80..99 {
                check_split(&bars, &names, old, 1);
            }
        }
        let n = 200;
        let flat = Bars {
            timestamps: (0..n as i64).collect(),
            open: vec![0.1; n],
            high: vec![0.1; n],
            low: vec![0.1; n],
            close: vec![0.1; n],
            volume: vec![0.0; n],
        };
        check_split(&flat, &all_names(), 80, 120);
        check_split(&flat, &all_names(), 150, 1);
    }

    #[test]
    fn chained_extends_equal_the_full_computation() {
        let bars = crate::data::synthetic::generate(7, 3021, 25.0, 86_400);
        let names = all_names();
        let (mut table, mut state) = compute_with_state(&head(&bars, 3000), "S", &names).unwrap();
        for (end, added) in [(3010, 10), (3020, 10), (3021, 1)] {
            let rows;
            (table, state, rows) = extend(&table, &state, &head(&bars, end), "S", &names).unwrap();
            assert_eq!(rows, added);
            assert_eq!(state.bars(), end);
            let (want_table, want_state) =
                compute_with_state(&head(&bars, end), "S", &names).unwrap();
            assert_same_table(&table, &want_table, &format!("chain to {end}"));
            assert_eq!(state, want_state);
        }
        // Through bytes, as the stage would store and reload it.
        let state = FeatureState::from_bytes(&state.to_bytes()).unwrap();
        let more = crate::data::synthetic::generate(7, 3100, 25.0, 86_400);
        let (t, _, rows) = extend_owned(table, &state, &more, "S", &names).unwrap();
        assert_eq!(rows, 79);
        assert_same_table(&t, &compute(&more, "S", &names).unwrap(), "owned");
    }

    #[test]
    fn appending_ten_bars_computes_ten_rows() {
        let bars = crate::data::synthetic::generate(3, 3010, 40.0, 300);
        let names = all_names();
        let (prev, state) = compute_with_state(&head(&bars, 3000), "S", &names).unwrap();
        let (table, _, rows) = extend(&prev, &state, &bars, "S", &names).unwrap();
        assert_eq!(rows, 10);
        assert_eq!(table.timestamps.len(), 3010 - 79);
        // Nothing appended: the same table, nothing computed.
        let (same, same_state, rows) =
            extend(&prev, &state, &head(&bars, 3000), "S", &names).unwrap();
        assert_eq!(rows, 0);
        assert_same_table(&same, &prev, "up to date");
        assert_eq!(same_state, state);
    }

    #[test]
    fn a_table_inside_the_warm_up_is_recomputed_in_full() {
        let bars = crate::data::synthetic::generate(5, 300, 40.0, 300);
        let names = all_names();
        let (table, mut state) = compute_with_state(&head(&bars, 100), "S", &names).unwrap();
        // A state that saw only warm-up bars, and an empty table.
        state.bars = 50;
        let empty = FeatureTable {
            timestamps: vec![],
            close: vec![],
            values: vec![],
            ..table
        };
        let (t, s, rows) = extend(&empty, &state, &bars, "S", &names).unwrap();
        let (want_t, want_s) = compute_with_state(&bars, "S", &names).unwrap();
        assert_eq!(rows, 300 - 79);
        assert_same_table(&t, &want_t, "fallback");
        assert_eq!(s, want_s);
    }

    #[test]
    fn extend_reads_no_bar_before_the_context() {
        // Changing bars more than CONTEXT_BARS before the split changes no appended row: the
        // replay reads only what the state's digest covers.
        let bars = crate::data::synthetic::generate(9, 3100, 40.0, 300);
        let names = all_names();
        let (prev, state) = compute_with_state(&head(&bars, 3000), "S", &names).unwrap();
        let mut other = bars.clone();
        for t in 0..3000 - CONTEXT_BARS {
            for column in [
                &mut other.open,
                &mut other.high,
                &mut other.low,
                &mut other.close,
            ] {
                column[t] *= 1.5;
            }
            other.volume[t] += 7.0;
        }
        let (a, _, _) = extend(&prev, &state, &bars, "S", &names).unwrap();
        let (b, _, _) = extend(&prev, &state, &other, "S", &names).unwrap();
        assert_same_table(&a, &b, "outside the context");
        // One bar inside the context is a mismatch.
        other.close[3000 - CONTEXT_BARS] *= 1.0001;
        let e = extend(&prev, &state, &other, "S", &names).unwrap_err();
        assert!(e.to_string().contains("differ from those"), "{e}");
    }

    #[test]
    fn extend_rejects_mismatches() {
        let bars = crate::data::synthetic::generate(13, 500, 40.0, 300);
        let names = all_names();
        let (prev, state) = compute_with_state(&head(&bars, 400), "S", &names).unwrap();
        let err = |t: &FeatureTable, s: &FeatureState, b: &Bars, sym: &str, n: &[String]| {
            extend(t, s, b, sym, n).unwrap_err().to_string()
        };
        // A state from a different feature list.
        let fewer: Vec<String> = names[..20].to_vec();
        let (other_table, other_state) =
            compute_with_state(&head(&bars, 400), "S", &fewer).unwrap();
        let e = err(&prev, &other_state, &bars, "S", &names);
        assert!(e.contains("saved feature state is for features"), "{e}");
        let e = err(&other_table, &state, &bars, "S", &fewer);
        assert!(e.contains("saved feature state is for features"), "{e}");
        let e = err(&other_table, &other_state, &bars, "S", &names);
        assert!(e.contains("saved feature state is for features"), "{e}");
        // The same list in another order is another table.
        let mut reordered = names.clone();
        reordered.swap(0, 1);
        assert!(extend(&prev, &state, &bars, "S", &reordered).is_err());
        // A table of another symbol or length.
        let e = err(&prev, &state, &bars, "T", &names);
        assert!(e.contains("previous table is for 'S'"), "{e}");
        let (short, _) = compute_with_state(&head(&bars, 399), "S", &names).unwrap();
        let e = err(&short, &state, &bars, "S", &names);
        assert!(e.contains("rows"), "{e}");
        // Bars that are not a continuation: shorter, another last timestamp, changed context.
        let e = err(&prev, &state, &head(&bars, 350), "S", &names);
        assert!(e.contains("fewer than the 400"), "{e}");
        let mut moved = bars.clone();
        moved.timestamps[399] += 1;
        let e = err(&prev, &state, &moved, "S", &names);
        assert!(e.contains("saved state ends at"), "{e}");
        let mut changed = bars.clone();
        changed.volume[390] += 1.0;
        let e = err(&prev, &state, &changed, "S", &names);
        assert!(e.contains("differ from those"), "{e}");
        // A state missing an average.
        let mut partial = state.clone();
        partial.recursive.retain(|(k, _)| k != "rsi_gain");
        let e = err(&prev, &partial, &bars, "S", &names);
        assert!(e.contains("need ["), "{e}");
        // Unequal column lengths, as the full check says it.
        let mut broken = bars.clone();
        broken.volume.pop();
        assert_eq!(
            err(&prev, &state, &broken, "S", &names),
            compute(&broken, "S", &names).unwrap_err().to_string()
        );
    }

    #[test]
    fn invalid_appended_bars_fail_as_the_full_computation_does() {
        let bars = crate::data::synthetic::generate(17, 420, 40.0, 300);
        let names = all_names();
        let (prev, state) = compute_with_state(&head(&bars, 400), "S", &names).unwrap();
        let mut bad_close = bars.clone();
        bad_close.close[405] = -1.0;
        let mut bad_step = bars.clone();
        bad_step.timestamps[400] = bad_step.timestamps[399];
        for broken in [bad_close, bad_step] {
            let e = extend(&prev, &state, &broken, "S", &names).unwrap_err();
            let want = compute(&broken, "S", &names).unwrap_err();
            assert_eq!(e.to_string(), want.to_string());
        }
    }

    #[test]
    fn state_bytes_round_trip_and_reject_garbage() {
        let bars = crate::data::synthetic::generate(19, 400, 40.0, 300);
        let (_, state) = compute_with_state(&bars, "S", &all_names()).unwrap();
        let bytes = state.to_bytes();
        let back = FeatureState::from_bytes(&bytes).unwrap();
        assert_eq!(back, state);
        assert_eq!(back.to_bytes(), bytes);
        // Every truncation, every flipped byte, extra bytes, and garbage.
        for len in 0..bytes.len() {
            assert!(
                FeatureState::from_bytes(&bytes[..len]).is_err(),
                "truncated to {len}"
            );
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x5a;
            assert!(FeatureState::from_bytes(&b).is_err(), "byte {i} flipped");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(FeatureState::from_bytes(&longer).is_err());
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in [0, 1, 7, 44, 45, 100, 4096] {
            let garbage: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            assert!(FeatureState::from_bytes(&garbage).is_err());
        }
        // Well-formed checksums over bad bodies: a huge count, a bad version, a bad name.
        let seal = |mut body: Vec<u8>| {
            let sum = blake3::hash(&body);
            body.extend_from_slice(sum.as_bytes());
            body
        };
        let mut head_only = bytes[..8 + 4 + 8 + 8 + 32].to_vec();
        head_only.extend_from_slice(&u32::MAX.to_le_bytes());
        let e = FeatureState::from_bytes(&seal(head_only)).unwrap_err();
        assert!(e.to_string().contains("cannot fit"), "{e}");
        let mut body = bytes[..bytes.len() - 32].to_vec();
        body[8] = 2;
        let e = FeatureState::from_bytes(&seal(body)).unwrap_err();
        assert!(e.to_string().contains("version 2"), "{e}");
        let mut body = bytes[..bytes.len() - 32].to_vec();
        body[8 + 4 + 8 + 8 + 32 + 4 + 4] = 0xff; // the first byte of the first name
        let e = FeatureState::from_bytes(&seal(body)).unwrap_err();
        assert!(e.to_string().contains("UTF-8"), "{e}");
        let e = FeatureState::from_bytes(b"HFTFSTAT").unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
    }

    /// Timing of `extend` against the full computation (prints; run with `--ignored
    /// --nocapture`, in release for meaningful figures).
    #[test]
    #[ignore]
    fn extend_timing() {
        use std::time::Instant;
        let names = all_names();
        for n in [3000, 2_000_000] {
            let bars = crate::data::synthetic::generate(29, n + 10, 40.0, 300);
            let (prev, state) = compute_with_state(&head(&bars, n), "S", &names).unwrap();
            // The fastest of a few runs of `f`, which times what it measures itself (not the
            // drop of its result).
            let best = |f: &mut dyn FnMut() -> f64| {
                let runs = if n > 100_000 { 3 } else { 50 };
                (0..runs).map(|_| f()).fold(f64::INFINITY, f64::min)
            };
            let full = best(&mut || {
                let t = Instant::now();
                let out = compute_with_state(&bars, "S", &names).unwrap();
                let elapsed = t.elapsed().as_secs_f64();
                drop(out);
                elapsed
            });
            let ext = best(&mut || {
                let t = Instant::now();
                let out = extend(&prev, &state, &bars, "S", &names).unwrap();
                let elapsed = t.elapsed().as_secs_f64();
                drop(out);
                elapsed
            });
            let clone = best(&mut || {
                let t = Instant::now();
                let out = prev.clone();
                let elapsed = t.elapsed().as_secs_f64();
                drop(out);
                elapsed
            });
            let owned = best(&mut || {
                let table = prev.clone();
                let t = Instant::now();
                let out = extend_owned(table, &state, &bars, "S", &names).unwrap();
                let elapsed = t.elapsed().as_secs_f64();
                drop(out);
                elapsed
            });
            let (_, _, rows) = extend(&prev, &state, &bars, "S", &names).unwrap();
            eprintln!(
                "{n} + 10 bars, {} features: full {:.3} ms, extend {:.3} ms ({:.1}x; of \
                 which copying the previous table {:.3} ms), extend_owned {:.3} ms ({:.1}x); \
                 rows computed {rows}",
                names.len(),
                full * 1e3,
                ext * 1e3,
                full / ext,
                clone * 1e3,
                owned * 1e3,
                full / owned
            );
        }
    }
}
