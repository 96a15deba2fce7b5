//! The `dataset` stage: [`FeatureTable`]s -> windowed, labelled, normalised [`Dataset`].
//!
//! ## Splits (per symbol, chronological)
//!
//! With `n` rows, shares `[a, b, c]`, horizon `P` and sequence length `S`:
//!
//! ```text
//! b1 = floor(n * a + 1e-9)            (clamped to n)
//! b2 = floor(n * (a + b) + 1e-9)      (clamped to b1..=n)
//! train rows  [0, b1)
//! gap         [b1, b1 + P)            left out
//! val rows    [b1 + P, b2)            (empty when b1 + P >= b2)
//! gap         [b2, b2 + P)            left out
//! test rows   [b2 + P, n)
//! ```
//!
//! The `1e-9` absorbs products like `0.7 * 10 = 6.999...`. A window ending at row t uses
//! inputs t-S+1..=t and targets t+1..=t+P, all inside one split's rows `[lo, hi)`, so
//! `t` runs over `lo+S-1 ..= hi-1-P` (a split with fewer than `S + P` rows has no windows).
//! Together with the P-row gaps, the last target of a split is at least P+1 rows before the
//! first input of the next one.
//!
//! ## Labels
//!
//! From the raw (adjusted) closes in [`FeatureTable::close`], never from features:
//! `y[h-1] = C[t+h] / C[t] - 1` for h = 1..=P; action 0 (buy) if `y[0] > theta`, 2 (sell) if
//! `y[0] < -theta`, else 1 (hold).
//!
//! ## Inputs and normalisation
//!
//! With `relative_prices`, each price-level feature value in a window becomes
//! `x / C[t] - 1`, C[t] the close of the window's last row; this is per window, so the same
//! row has different values in different windows. The normalisation statistics are then
//! fitted on exactly what the model is fed in the train split: for each feature, the mean and
//! the population standard deviation (divide by the count) over every row of every train
//! window (a row counts once per window it appears in), after the relative transform. A
//! standard deviation below 1e-12 (a constant feature) is replaced by 1. Val and test use the
//! train statistics unchanged. Everything is computed in f64; only the stored `x` and `y` are
//! f32.
//!
//! Windows are ordered by symbol (in the order of `tables`) and then by time.
//!
//! ## Sessions
//!
//! A gap between two consecutive bars of more than [`SESSION_GAP_FACTOR`] times the symbol's
//! median bar spacing starts a new session (intraday: overnight; daily bars: weekends and
//! holidays stay inside one session). With `cross_sessions: false` a window's rows
//! `t-S+1 ..= t+P` must all lie in one session; windows are otherwise unaffected.
//!
//! ## Symbol id
//!
//! With `symbol_id`, each table gets one more column per symbol, `symbol=NAME`, 1 on that
//! symbol's rows and 0 elsewhere, normalised like any other (non-price) column.

pub mod folds;
pub mod inference;
mod windows;

use std::borrow::Cow;
use std::ops::Range;

use super::ingest::DataError;
use super::{Dataset, DatasetParams, FeatureTable};
use windows::Plan;
pub(super) use windows::{WindowRuns, label, normalise_window, tiled_constants};

/// Absorbs float error in `n * share` before flooring.
const SHARE_EPS: f64 = 1e-9;
/// Shares must sum to 1 within this.
const SHARE_SUM_TOLERANCE: f64 = 1e-6;
/// A feature whose train standard deviation is below this is scaled by 1 instead.
const STD_FLOOR: f64 = 1e-12;
/// A gap over this many median bar spacings starts a new session.
pub const SESSION_GAP_FACTOR: i64 = 4;

/// The session of each row: a gap over [`SESSION_GAP_FACTOR`] median spacings (of these
/// timestamps) starts the next one.
pub fn sessions(timestamps: &[i64]) -> Vec<u32> {
    let mut gaps: Vec<i64> = timestamps
        .windows(2)
        .map(|w| w[1].saturating_sub(w[0]))
        .collect();
    gaps.sort_unstable();
    let median = gaps
        .get(gaps.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or(0);
    let limit = median.saturating_mul(SESSION_GAP_FACTOR);
    let mut session = 0u32;
    let mut out = Vec::with_capacity(timestamps.len());
    for (i, &t) in timestamps.iter().enumerate() {
        if i > 0 && t.saturating_sub(timestamps[i - 1]) > limit {
            session += 1;
        }
        out.push(session);
    }
    out
}

/// `ends` cut into the runs of window ends whose rows `end-S+1 ..= end+P` share a session.
fn within_sessions(
    ends: Range<usize>,
    session: &[u32],
    sequence_length: usize,
    horizon: usize,
) -> Vec<Range<usize>> {
    let mut runs = Vec::new();
    let mut start: Option<usize> = None;
    for end in ends.clone() {
        let first = session.get(end + 1 - sequence_length);
        let last = session.get(end + horizon);
        let ok = first.is_some() && first == last;
        match (ok, start) {
            (true, None) => start = Some(end),
            (false, Some(s)) => {
                runs.push(s..end);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        runs.push(s..ends.end);
    }
    runs
}

/// The tables with the `symbol=NAME` columns of [`DatasetParams::symbol_id`] appended.
fn with_symbol_ids(tables: &[FeatureTable]) -> Vec<FeatureTable> {
    let k = tables.len();
    tables
        .iter()
        .enumerate()
        .map(|(sym, t)| {
            let mut names = t.names.clone();
            names.extend(tables.iter().map(|o| format!("symbol={}", o.symbol)));
            let width = t.names.len();
            let mut values = Vec::with_capacity(t.timestamps.len() * (width + k));
            for row in t.values.chunks_exact(width.max(1)) {
                values.extend_from_slice(row);
                values.extend((0..k).map(|i| if i == sym { 1.0 } else { 0.0 }));
            }
            FeatureTable {
                symbol: t.symbol.clone(),
                names,
                timestamps: t.timestamps.clone(),
                close: t.close.clone(),
                values,
            }
        })
        .collect()
}

/// The row ranges of train, val and test for `rows` rows (see the module docs).
pub fn split_ranges(rows: usize, shares: [f64; 3], horizon: usize) -> [Range<usize>; 3] {
    let boundary = |share: f64| -> usize {
        let b = (rows as f64 * share + SHARE_EPS).floor();
        if b.is_finite() && b > 0.0 {
            (b as usize).min(rows)
        } else {
            0
        }
    };
    let b1 = boundary(shares[0]);
    let b2 = boundary(shares[0] + shares[1]).clamp(b1, rows);
    [
        0..b1,
        b1.saturating_add(horizon).min(b2)..b2,
        b2.saturating_add(horizon).min(rows)..rows,
    ]
}

/// The window end rows t inside split rows `r`: `r.start+S-1 ..= r.end-1-P`.
pub fn window_ends(r: &Range<usize>, sequence_length: usize, horizon: usize) -> Range<usize> {
    let first = r.start + sequence_length.saturating_sub(1);
    let stop = r.end.saturating_sub(horizon);
    first..stop.max(first)
}

/// `tables`, with the symbol id columns appended when `params.symbol_id` asks for them.
fn with_ids_if_asked<'t>(
    tables: &'t [FeatureTable],
    params: &DatasetParams,
) -> Cow<'t, [FeatureTable]> {
    if params.symbol_id {
        Cow::Owned(with_symbol_ids(tables))
    } else {
        Cow::Borrowed(tables)
    }
}

/// Builds the train/val/test windows of all `tables` (see the module docs for the rules).
pub fn build(tables: &[FeatureTable], params: &DatasetParams) -> Result<Dataset, DataError> {
    let tables = with_ids_if_asked(tables, params);
    let plan = Plan::new(&tables, params)?;
    let mut d = plan.labels();
    let width = plan.sequence_length * plan.k;
    for (which, split) in [&mut d.train, &mut d.val, &mut d.test]
        .into_iter()
        .enumerate()
    {
        let mut x = vec![0.0; split.n * width];
        plan.fill_x(which, &mut x);
        split.x = super::Windows::Dense(x);
    }
    Ok(d)
}

/// The dataset stage's blobs (see `blob` for their layout): the `dataset` blob (the
/// normalisation and the windows as runs of window ends, not the windows themselves nor
/// their labels) and the `rows` the windows are cut from, in the features layout. A window
/// overlaps the next one in all but one row, so the windows are `sequence_length` times
/// larger than the rows they are cut from (60x at the usual settings);
/// [`Dataset::from_blobs`] rebuilds them on load, value for value what [`build`] computes.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedDataset {
    pub bytes: Vec<u8>,
    pub rows: DatasetRows,
    pub num_features: usize,
    pub sequence_length: usize,
    pub prediction_horizon: usize,
    /// Windows in train, val and test.
    pub n: [usize; 3],
}

/// The feature rows a dataset's windows are cut from.
#[derive(Debug, Clone, PartialEq)]
pub enum DatasetRows {
    /// The feature tables it was built from, unchanged: the features stage's own blob,
    /// which the dataset stage names again instead of writing a copy.
    Input,
    /// Other tables (the symbol id columns appended, or a fold's rows), encoded.
    Encoded(Vec<u8>),
}

impl DatasetRows {
    /// The rows blob: these bytes, or `input` (the encoded tables the dataset was built
    /// from) when they are the input's.
    pub fn bytes<'a>(&'a self, input: &'a [u8]) -> &'a [u8] {
        match self {
            DatasetRows::Input => input,
            DatasetRows::Encoded(bytes) => bytes,
        }
    }
}

#[cfg(test)]
impl EncodedDataset {
    /// The dataset these blobs hold, built from `tables` (whose blob the rows may be).
    pub fn decode(&self, tables: &[FeatureTable]) -> Result<Dataset, super::blob::BlobError> {
        let input = super::blob::encode_feature_tables(tables);
        let rows = std::sync::Arc::new(self.rows.bytes(&input).to_vec());
        Dataset::from_blobs(&self.bytes, &rows)
    }
}

/// The dataset blobs of `tables`: `Dataset::from_blobs(&e.bytes, e.rows.bytes(input))`
/// equals `build(t, p)?`, with `e = build_encoded(t, p)?` and `input` the features blob of
/// `t`.
pub fn build_encoded(
    tables: &[FeatureTable],
    params: &DatasetParams,
) -> Result<EncodedDataset, DataError> {
    let tables = with_ids_if_asked(tables, params);
    let plan = Plan::new(&tables, params)?;
    // Labels are not stored: the decoder derives them from the closes (`blob`).
    let d = plan.unlabelled();
    let runs = plan.window_runs()?;
    let rows = match &tables {
        Cow::Borrowed(_) => DatasetRows::Input,
        Cow::Owned(with_ids) => DatasetRows::Encoded(super::blob::encode_feature_tables(with_ids)),
    };
    Ok(EncodedDataset {
        bytes: super::blob::encode_dataset(&d, &runs),
        rows,
        num_features: plan.k,
        sequence_length: plan.sequence_length,
        prediction_horizon: plan.horizon,
        n: [0, 1, 2].map(|which| plan.count(which)),
    })
}

fn check_params(p: &DatasetParams) -> Result<(), DataError> {
    let fail = |m: String| Err(DataError::Dataset(m));
    if p.sequence_length == 0 {
        return fail("sequence_length must be at least 1".into());
    }
    if p.prediction_horizon == 0 {
        return fail("prediction_horizon must be at least 1".into());
    }
    if !p.action_threshold.is_finite() || p.action_threshold < 0.0 {
        return fail(format!(
            "action_threshold must be a finite number >= 0, got {}",
            p.action_threshold
        ));
    }
    if p.split.iter().any(|s| !s.is_finite() || *s < 0.0)
        || (p.split.iter().sum::<f64>() - 1.0).abs() > SHARE_SUM_TOLERANCE
    {
        return fail(format!(
            "split shares must be >= 0 and sum to 1, got {:?}",
            p.split
        ));
    }
    Ok(())
}

/// Shape and value checks, so that indexing in [`build`] cannot go out of bounds and labels
/// cannot divide by a non-positive close.
fn check_table(t: &FeatureTable, names: &[String]) -> Result<(), DataError> {
    let fail = |m: String| Err(DataError::Dataset(format!("table '{}': {m}", t.symbol)));
    if t.names != names {
        return fail(format!(
            "features {:?} differ from the first table's {:?}",
            t.names, names
        ));
    }
    let rows = t.timestamps.len();
    if t.close.len() != rows {
        return fail(format!("{} closes for {rows} rows", t.close.len()));
    }
    if rows.checked_mul(names.len()) != Some(t.values.len()) {
        return fail(format!(
            "{} values for {rows} rows of {} features",
            t.values.len(),
            names.len()
        ));
    }
    // Whole-table scans on every core (the first bad close is the one named, as in one pass).
    use rayon::prelude::*;
    const PER_TASK: usize = 1 << 15;
    if t.timestamps
        .par_windows(2)
        .with_min_len(PER_TASK)
        .any(|w| w[1] <= w[0])
    {
        return fail("timestamps are not strictly increasing".into());
    }
    if let Some(c) = t
        .close
        .par_iter()
        .with_min_len(PER_TASK)
        .find_first(|c| !c.is_finite() || **c <= 0.0)
    {
        return fail(format!("close {c:?} is not a finite positive price"));
    }
    if t.values
        .par_iter()
        .with_min_len(PER_TASK)
        .any(|v| !v.is_finite())
    {
        return fail("a feature value is not finite".into());
    }
    Ok(())
}

/// The median spacing of consecutive timestamps over all symbols (lower median; 0 when no
/// table has two rows).
fn median_spacing(tables: &[FeatureTable]) -> i64 {
    let mut diffs: Vec<i64> = tables
        .iter()
        .flat_map(|t| t.timestamps.windows(2).map(|w| w[1].saturating_sub(w[0])))
        .collect();
    if diffs.is_empty() {
        return 0;
    }
    diffs.sort_unstable();
    diffs[(diffs.len() - 1) / 2]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Split;

    /// `rows` rows of two features: "close" (price level) and "volume"-like "index".
    pub(super) fn table(symbol: &str, rows: usize, offset: f64) -> FeatureTable {
        let close: Vec<f64> = (0..rows)
            .map(|i| offset + 100.0 + (i % 5) as f64 + i as f64 * 0.5)
            .collect();
        let values = close
            .iter()
            .enumerate()
            .flat_map(|(i, &c)| [c, i as f64])
            .collect();
        FeatureTable {
            symbol: symbol.to_string(),
            names: vec!["close".to_string(), "volume".to_string()],
            timestamps: (0..rows as i64).map(|i| 1_000 + i * 60).collect(),
            close,
            values,
        }
    }

    pub(super) fn params(s: usize, p: usize) -> DatasetParams {
        DatasetParams {
            sequence_length: s,
            prediction_horizon: p,
            action_threshold: 0.01,
            split: [0.7, 0.15, 0.15],
            relative_prices: true,
            symbol_id: false,
            cross_sessions: true,
        }
    }

    fn row_of(t: &FeatureTable, ts: i64) -> usize {
        t.timestamps.iter().position(|&x| x == ts).unwrap()
    }

    /// `sessions` sessions of `per` one-minute bars, a night between them.
    fn intraday(symbol: &str, sessions: usize, per: usize) -> FeatureTable {
        let mut t = table(symbol, sessions * per, 0.0);
        t.timestamps = (0..sessions * per)
            .map(|i| (i / per) as i64 * 86_400 + (i % per) as i64 * 60)
            .collect();
        t
    }

    #[test]
    fn sessions_split_at_gaps_over_four_median_spacings() {
        assert_eq!(sessions(&[0, 60, 120, 86_400, 86_460]), [0, 0, 0, 1, 1]);
        // Daily bars: a weekend (3 days) and a long holiday (4 days) stay in one session.
        let day = 86_400;
        assert_eq!(
            sessions(&[0, day, 2 * day, 5 * day, 6 * day, 10 * day]),
            [0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            sessions(&[0, day, 2 * day, 3 * day, 30 * day]),
            [0, 0, 0, 0, 1]
        );
        assert!(sessions(&[]).is_empty());
        assert_eq!(sessions(&[5]), [0]);
    }

    #[test]
    fn windows_can_be_kept_inside_sessions() {
        let (s, p) = (5, 2);
        let t = intraday("AAA", 20, 30);
        let crossing = build(std::slice::from_ref(&t), &params(s, p)).unwrap();
        let inside = build(
            std::slice::from_ref(&t),
            &DatasetParams {
                cross_sessions: false,
                ..params(s, p)
            },
        )
        .unwrap();
        assert!(inside.train.n < crossing.train.n);
        let session = sessions(&t.timestamps);
        for split in [&inside.train, &inside.val, &inside.test] {
            for &ts in &split.timestamp {
                let end = row_of(&t, ts);
                assert_eq!(
                    session[end + 1 - s],
                    session[end + p],
                    "window ending {end}"
                );
            }
        }
        // Every window inside one session is kept.
        let expected = crossing
            .train
            .timestamp
            .iter()
            .filter(|&&ts| {
                let end = row_of(&t, ts);
                session[end + 1 - s] == session[end + p]
            })
            .count();
        assert_eq!(inside.train.n, expected);
        // The direct blob agrees with the dataset.
        let encoded = build_encoded(
            std::slice::from_ref(&t),
            &DatasetParams {
                cross_sessions: false,
                ..params(s, p)
            },
        )
        .unwrap();
        assert_eq!(encoded.decode(std::slice::from_ref(&t)).unwrap(), inside);
    }

    #[test]
    fn symbol_id_appends_one_column_per_symbol() {
        let tables = [table("AAA", 80, 0.0), table("BBB", 80, 50.0)];
        let with = DatasetParams {
            symbol_id: true,
            ..params(4, 1)
        };
        let d = build(&tables, &with).unwrap();
        assert_eq!(
            d.feature_names,
            ["close", "volume", "symbol=AAA", "symbol=BBB"]
        );
        let k = d.feature_names.len();
        // Equal windows from each symbol: the column is +1 / -1 after z-scoring.
        for (i, &sym) in d.train.symbol.iter().enumerate() {
            let row = &d.train.x.values()[i * 4 * k..(i * 4 + 1) * k];
            let (own, other) = if sym == 0 {
                (row[2], row[3])
            } else {
                (row[3], row[2])
            };
            assert!(own > 0.9 && other < -0.9, "{row:?}");
        }
        let plain = build(&tables, &params(4, 1)).unwrap();
        assert_eq!(plain.train.n, d.train.n);
        assert_eq!(plain.train.y, d.train.y);
        let encoded = build_encoded(&tables, &with).unwrap();
        assert_eq!(encoded.decode(&tables).unwrap(), d);
        assert_eq!(encoded.num_features, 4);
    }

    #[test]
    fn boundary_arithmetic() {
        // 100 rows, P = 3: train 0..70, val 73..85, test 88..100.
        assert_eq!(
            split_ranges(100, [0.7, 0.15, 0.15], 3),
            [0..70, 73..85, 88..100]
        );
        // 0.7 * 10 is 7.000000000000001 and 0.3 * 10 is 3.0000000000000004; 0.1*3 edge cases.
        assert_eq!(split_ranges(10, [0.7, 0.2, 0.1], 1), [0..7, 8..9, 10..10]);
        assert_eq!(
            split_ranges(10, [1.0, 0.0, 0.0], 2),
            [0..10, 10..10, 10..10]
        );
        assert_eq!(window_ends(&(0..70), 10, 3), 9..67);
        assert_eq!(window_ends(&(73..85), 10, 3), 82..82);
        assert_eq!(window_ends(&(0..5), 10, 3).len(), 0);
    }

    #[test]
    fn splits_are_purged_and_contained() {
        let tables = [table("A", 200, 0.0), table("B", 150, 50.0)];
        let d = build(&tables, &params(10, 3)).unwrap();
        assert_eq!(d.symbols, vec!["A", "B"]);
        assert_eq!(d.bar_seconds, 60);
        // A: train 0..140 -> ends 9..=136 (128); val 143..170 -> 152..=166 (15);
        // test 173..200 -> 182..=196 (15). B: train 0..105 -> 93; val 108..127 (19 rows) -> 7;
        // test 130..150 (20 rows) -> 8.
        assert_eq!(d.train.n, 128 + 93);
        assert_eq!(d.val.n, 15 + 7);
        assert_eq!(d.test.n, 15 + 8);
        for (sym, t) in tables.iter().enumerate() {
            let ends = |split: &Split| -> Vec<usize> {
                split
                    .timestamp
                    .iter()
                    .zip(&split.symbol)
                    .filter(|(_, s)| **s as usize == sym)
                    .map(|(&ts, _)| row_of(t, ts))
                    .collect()
            };
            let (tr, va, te) = (ends(&d.train), ends(&d.val), ends(&d.test));
            // Ordered by time within the symbol.
            assert!(tr.windows(2).all(|w| w[0] < w[1]));
            let last_train_target = tr.iter().max().unwrap() + 3;
            let first_val_input = va.iter().min().unwrap() - 9;
            let last_val_target = va.iter().max().unwrap() + 3;
            let first_test_input = te.iter().min().unwrap() - 9;
            assert!(last_train_target + 3 < first_val_input);
            assert!(last_val_target + 3 < first_test_input);
        }
        // Symbol-major order.
        assert!(d.train.symbol.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(d.train.x.values().len(), d.train.n * 10 * 2);
        assert_eq!(d.train.y.len(), d.train.n * 3);
    }

    #[test]
    fn labels_come_from_raw_closes() {
        let t = table("A", 120, 0.0);
        let mut p = params(5, 2);
        p.action_threshold = 0.004;
        let d = build(std::slice::from_ref(&t), &p).unwrap();
        for i in 0..d.train.n {
            let end = row_of(&t, d.train.timestamp[i]);
            for h in 1..=2 {
                let expected = (t.close[end + h] / t.close[end] - 1.0) as f32;
                assert_eq!(d.train.y[i * 2 + h - 1], expected);
            }
            let r1 = t.close[end + 1] / t.close[end] - 1.0;
            let action = if r1 > 0.004 {
                0
            } else if r1 < -0.004 {
                2
            } else {
                1
            };
            assert_eq!(d.train.action[i], action);
        }
        assert!(d.train.action.contains(&0) && d.train.action.contains(&2));
        // The close column's pattern has steps of +1.5 (~+1.4%) and -3.5: with theta = 0.02
        // every +1.5 step is a hold.
        p.action_threshold = 0.02;
        let d = build(std::slice::from_ref(&t), &p).unwrap();
        assert!(!d.train.action.contains(&0));
    }

    #[test]
    fn relative_transform_and_train_only_normalisation() {
        let t = table("A", 300, 0.0);
        let d = build(std::slice::from_ref(&t), &params(4, 1)).unwrap();
        // Recompute the train statistics by hand from the windows.
        let [train, _, _] = split_ranges(300, [0.7, 0.15, 0.15], 1);
        let mut rel = Vec::new();
        let mut idx = Vec::new();
        for end in window_ends(&train, 4, 1) {
            for r in end - 3..=end {
                rel.push(t.close[r] / t.close[end] - 1.0);
                idx.push(r as f64);
            }
        }
        let stats = |v: &[f64]| {
            let m = v.iter().sum::<f64>() / v.len() as f64;
            let sd = (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
            (m, sd)
        };
        let (m0, s0) = stats(&rel);
        let (m1, s1) = stats(&idx);
        assert!((d.norm_mean[0] - m0).abs() < 1e-12 && (d.norm_std[0] - s0).abs() < 1e-12);
        assert!((d.norm_mean[1] - m1).abs() < 1e-9 && (d.norm_std[1] - s1).abs() < 1e-9);
        // The first train window's last row: close relative to itself is 0.
        let last = 3 * 2;
        assert_eq!(d.train.x.values()[last], ((0.0 - m0) / s0) as f32);
        // Val is normalised with the train statistics: its own mean differs from 0.
        let val_idx: Vec<f64> = (0..d.val.n * 4)
            .map(|i| d.val.x.values()[i * 2 + 1] as f64)
            .collect();
        assert!(stats(&val_idx).0 > 1.0);
        let first_val_end = row_of(&t, d.val.timestamp[0]);
        let expected = ((first_val_end as f64 - 3.0 - m1) / s1) as f32;
        assert_eq!(d.val.x.values()[1], expected);

        // Without the transform the raw close is z-scored.
        let mut p = params(4, 1);
        p.relative_prices = false;
        let d = build(std::slice::from_ref(&t), &p).unwrap();
        let raw: Vec<f64> = window_ends(&train, 4, 1)
            .flat_map(|end| (end - 3..=end).map(|r| t.close[r]))
            .collect();
        assert!((d.norm_mean[0] - stats(&raw).0).abs() < 1e-9);
    }

    #[test]
    fn constant_feature_uses_unit_std_and_empty_splits_are_fine() {
        let mut t = table("A", 40, 0.0);
        for r in 0..40 {
            t.values[r * 2 + 1] = 5.0;
        }
        let mut p = params(3, 1);
        p.split = [1.0, 0.0, 0.0];
        let d = build(&[t], &p).unwrap();
        assert_eq!(d.norm_std[1], 1.0);
        assert_eq!(d.norm_mean[1], 5.0);
        assert_eq!(d.val.n, 0);
        assert!(d.val.x.values().is_empty() && d.test.timestamp.is_empty());
    }

    #[test]
    fn errors() {
        let t = table("A", 20, 0.0);
        let e = build(std::slice::from_ref(&t), &params(30, 5))
            .unwrap_err()
            .to_string();
        assert!(e.contains("train split has no windows"), "{e}");
        assert!(e.contains("'A': 20 rows -> train 14, val 0, test 0"), "{e}");
        assert!(e.contains("= 35"), "{e}");
        assert!(build(&[], &params(3, 1)).is_err());
        assert!(build(&[t.clone(), t.clone()], &params(3, 1)).is_err());
        let mut bad = t.clone();
        bad.values.pop();
        assert!(build(&[bad], &params(3, 1)).is_err());
        let mut bad = t.clone();
        bad.close[3] = 0.0;
        assert!(build(&[bad], &params(3, 1)).is_err());
        let mut other = table("B", 20, 0.0);
        other.names[1] = "ma_5".into();
        assert!(build(&[t.clone(), other], &params(3, 1)).is_err());
        let mut p = params(3, 1);
        p.split = [0.5, 0.2, 0.2];
        assert!(build(std::slice::from_ref(&t), &p).is_err());
        assert!(build(std::slice::from_ref(&t), &params(0, 1)).is_err());
        assert!(build(std::slice::from_ref(&t), &params(3, 0)).is_err());
    }

    #[test]
    fn deterministic() {
        let tables = [table("A", 200, 0.0), table("B", 150, 50.0)];
        let a = build(&tables, &params(10, 3)).unwrap();
        let b = build(&tables, &params(10, 3)).unwrap();
        assert_eq!(a, b);
        let encode = || build_encoded(&tables, &params(10, 3)).unwrap().bytes;
        assert_eq!(encode(), encode());
    }
}
