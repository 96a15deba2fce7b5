//! Walk-forward folds: successive train/val/test datasets over time, each a pure function
//! of the rows it reads, so that appending bars adds folds and leaves earlier ones equal.
//!
//! ## The timeline
//!
//! Bars are counted on the timeline: the sorted distinct timestamps of every symbol's
//! feature rows (after the warm-up). With `T` bars, horizon `P`, and fold `k` from 0:
//!
//! ```text
//! hi        = train_bars + k * step            end of the training rows (exclusive)
//! lo        = 0 (expanding) | hi - train_bars (rolling)
//! val_start = hi - val_bars
//! test      = [hi + embargo, hi + embargo + test_bars)     test window ends
//! the fold exists when hi + embargo + test_bars + P <= T    (every label is known)
//! ```
//!
//! Positions become each symbol's rows through its first row at or after the position's
//! timestamp. Within a symbol, train windows lie wholly (inputs and labels) in rows
//! `[lo, val_start)` and val windows in `[val_start + P, hi)`, as in the usual split (see
//! `dataset`): a train label never reaches the rows after `hi`, which purges the label
//! horizon (López de Prado's purging); `embargo` leaves further bars out. A test window ends
//! in the fold's test range and reads the `S - 1` rows before it as inputs, which are known
//! at its end: test windows of successive folds tile the timeline when `step` is
//! `test_bars`.
//!
//! ## Purity
//!
//! Each symbol's table is cut to the rows the fold's windows read before anything is
//! computed (normalisation, bar spacing, sessions), and a fold's positions depend only on
//! the bars before its last label: bars appended later change neither.

use std::ops::Range;

use serde::Serialize;

use super::{DatasetRows, EncodedDataset, window_ends, windows::Plan, with_ids_if_asked};
use crate::data::ingest::DataError;
use crate::data::{DatasetParams, FeatureTable};

/// How a fold's training rows grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FoldWindow {
    /// From the first bar.
    Expanding,
    /// The last `train_bars` bars.
    Rolling,
}

/// The walk-forward settings, in bars of the timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct FoldParams {
    pub window: FoldWindow,
    pub train_bars: usize,
    pub val_bars: usize,
    pub test_bars: usize,
    pub step: usize,
    pub embargo: usize,
    /// Keep only the latest this many folds.
    pub max_folds: Option<usize>,
}

/// One fold, in timeline positions (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fold {
    pub index: usize,
    /// Training rows, validation included.
    pub train: Range<usize>,
    /// The first validation row (`train.end` without validation).
    pub val_start: usize,
    /// Test window ends.
    pub test: Range<usize>,
}

/// The sorted distinct timestamps of every table's rows.
pub fn timeline(tables: &[FeatureTable]) -> Vec<i64> {
    let mut all: Vec<i64> = tables
        .iter()
        .flat_map(|t| t.timestamps.iter().copied())
        .collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// Fold `k` of a timeline of `bars` bars, if the timeline holds it (every label known).
pub fn fold_at(k: usize, bars: usize, params: &FoldParams, horizon: usize) -> Option<Fold> {
    let hi = params
        .train_bars
        .checked_add(k.checked_mul(params.step.max(1))?)?;
    let test_start = hi.checked_add(params.embargo)?;
    let test_end = test_start.checked_add(params.test_bars)?;
    if test_end.checked_add(horizon)? > bars {
        return None;
    }
    let lo = match params.window {
        FoldWindow::Expanding => 0,
        FoldWindow::Rolling => hi - params.train_bars,
    };
    Some(Fold {
        index: k,
        train: lo..hi,
        val_start: hi.saturating_sub(params.val_bars).max(lo),
        test: test_start..test_end,
    })
}

/// Every fold a timeline of `bars` bars holds (the latest `max_folds` of them), in time
/// order.
pub fn layout(bars: usize, params: &FoldParams, horizon: usize) -> Vec<Fold> {
    let all: Vec<Fold> = (0..)
        .map_while(|k| fold_at(k, bars, params, horizon))
        .collect();
    let skip = params.max_folds.map_or(0, |m| all.len().saturating_sub(m));
    all.into_iter().skip(skip).collect()
}

/// The dataset blob of one fold (`dataset::build_encoded` over the fold's windows): the
/// tables are cut to the rows the fold reads first, so the blob is a function of those rows.
pub fn build_fold_encoded(
    tables: &[FeatureTable],
    params: &DatasetParams,
    fold: &Fold,
    timeline: &[i64],
) -> Result<EncodedDataset, DataError> {
    let (s, p) = (params.sequence_length, params.prediction_horizon);
    let mut cut = Vec::with_capacity(tables.len());
    let mut layout = Vec::with_capacity(tables.len());
    for t in tables {
        let n = t.timestamps.len();
        // A position's row: the symbol's first row at or after the position's bar.
        let row = |pos: usize| match timeline.get(pos) {
            Some(ts) => t.timestamps.partition_point(|x| x < ts),
            None => n,
        };
        let valid = |e: Range<usize>| {
            let e = e.start.max(s.saturating_sub(1))..e.end.min(n.saturating_sub(p));
            e.start..e.end.max(e.start)
        };
        let (lo, val_start, hi) = (
            row(fold.train.start),
            row(fold.val_start),
            row(fold.train.end),
        );
        let splits = [
            valid(window_ends(&(lo..val_start), s, p)),
            valid(window_ends(
                &(val_start.saturating_add(p).min(hi)..hi),
                s,
                p,
            )),
            valid(row(fold.test.start)..row(fold.test.end)),
        ];
        // The rows any window reads: from the first input of the earliest to the last
        // label of the latest.
        let read = splits
            .iter()
            .filter(|e| !e.is_empty())
            .map(|e| (e.start + 1 - s, e.end - 1 + p + 1))
            .reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)));
        let (first, end) = read.unwrap_or((0, 0));
        let k = t.names.len();
        cut.push(FeatureTable {
            symbol: t.symbol.clone(),
            names: t.names.clone(),
            timestamps: t.timestamps[first..end].to_vec(),
            close: t.close[first..end].to_vec(),
            values: t.values[first * k..end * k].to_vec(),
        });
        layout.push(splits.map(|e| {
            if e.is_empty() {
                0..0
            } else {
                e.start - first..e.end - first
            }
        }));
    }
    let cut = with_ids_if_asked(&cut, params);
    let plan = Plan::with_layout(&cut, params, layout, || {
        format!(
            "in walk-forward fold {} (training bars {}..{} of the timeline)",
            fold.index, fold.train.start, fold.val_start
        )
    })?;
    // Labels are not stored: the decoder derives them from the closes (`blob`).
    let d = plan.unlabelled();
    let runs = plan.window_runs()?;
    Ok(EncodedDataset {
        bytes: crate::data::blob::encode_dataset(&d, &runs),
        // Cut to the fold's rows: a fold's blobs change only when its own rows do.
        rows: DatasetRows::Encoded(crate::data::blob::encode_feature_tables(&cut)),
        num_features: plan.k,
        sequence_length: plan.sequence_length,
        prediction_horizon: plan.horizon,
        n: [0, 1, 2].map(|which| plan.count(which)),
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{params, table};
    use super::*;

    fn fold_params(window: FoldWindow) -> FoldParams {
        FoldParams {
            window,
            train_bars: 100,
            val_bars: 30,
            test_bars: 20,
            step: 20,
            embargo: 2,
            max_folds: None,
        }
    }

    #[test]
    fn layout_arithmetic() {
        // 200 bars, P = 3: fold k tests ends 102+20k .. 122+20k and needs 125+20k <= 200.
        let folds = layout(200, &fold_params(FoldWindow::Expanding), 3);
        assert_eq!(folds.len(), 4);
        assert_eq!(
            folds[0],
            Fold {
                index: 0,
                train: 0..100,
                val_start: 70,
                test: 102..122
            }
        );
        assert_eq!(folds[3].test, 162..182);
        assert_eq!(folds[3].train, 0..160);
        let rolling = layout(200, &fold_params(FoldWindow::Rolling), 3);
        assert_eq!(rolling[3].train, 60..160);
        assert_eq!(rolling[3].val_start, 130);
        // The latest folds only.
        let last = FoldParams {
            max_folds: Some(2),
            ..fold_params(FoldWindow::Expanding)
        };
        let kept: Vec<usize> = layout(200, &last, 3).iter().map(|f| f.index).collect();
        assert_eq!(kept, [2, 3]);
        // Too few bars: no fold.
        assert!(layout(124, &fold_params(FoldWindow::Expanding), 3).is_empty());
        assert_eq!(layout(125, &fold_params(FoldWindow::Expanding), 3).len(), 1);
        // Absurd sizes do not overflow.
        let huge = FoldParams {
            train_bars: usize::MAX,
            ..fold_params(FoldWindow::Expanding)
        };
        assert!(layout(200, &huge, 3).is_empty());
    }

    #[test]
    fn appending_bars_adds_folds_and_keeps_earlier_ones_bit_identical() {
        let (s, p) = (5, 3);
        let full = table("A", 260, 0.0);
        let cut = |rows: usize| FeatureTable {
            symbol: full.symbol.clone(),
            names: full.names.clone(),
            timestamps: full.timestamps[..rows].to_vec(),
            close: full.close[..rows].to_vec(),
            values: full.values[..rows * 2].to_vec(),
        };
        let fp = fold_params(FoldWindow::Expanding);
        let blobs = |t: &FeatureTable| -> Vec<Vec<u8>> {
            let line = timeline(std::slice::from_ref(t));
            layout(line.len(), &fp, p)
                .iter()
                .map(|f| {
                    build_fold_encoded(std::slice::from_ref(t), &params(s, p), f, &line)
                        .unwrap()
                        .bytes
                })
                .collect()
        };
        let before = blobs(&cut(200));
        let after = blobs(&cut(220));
        assert_eq!((before.len(), after.len()), (4, 5));
        assert_eq!(after[..4], before[..]);
        // The usual dataset changes with the same appended bars.
        let whole = |t: &FeatureTable| {
            super::super::build_encoded(std::slice::from_ref(t), &params(s, p))
                .unwrap()
                .bytes
        };
        assert_ne!(whole(&cut(200)), whole(&cut(220)));
    }

    #[test]
    fn fold_windows_are_purged_and_test_windows_tile_the_timeline() {
        let (s, p) = (5, 3);
        let t = table("A", 260, 0.0);
        let tables = [t.clone(), table("B", 260, 40.0)];
        let line = timeline(&tables);
        let fp = fold_params(FoldWindow::Expanding);
        let folds = layout(line.len(), &fp, p);
        let mut tested = Vec::new();
        for f in &folds {
            let encoded = build_fold_encoded(&tables, &params(s, p), f, &line).unwrap();
            let d = encoded.decode(&tables).unwrap();
            let row = |ts: i64| t.timestamps.iter().position(|&x| x == ts).unwrap();
            let a_rows = |split: &crate::data::Split| -> Vec<usize> {
                split
                    .timestamp
                    .iter()
                    .zip(&split.symbol)
                    .filter(|(_, s)| **s == 0)
                    .map(|(&ts, _)| row(ts))
                    .collect()
            };
            let (train, val, test) = (a_rows(&d.train), a_rows(&d.val), a_rows(&d.test));
            // Train labels stay before validation inputs, validation labels before the
            // fold's end, and the embargo before the first test window.
            assert!(train.iter().all(|&e| e + p < f.val_start));
            assert!(
                val.iter()
                    .all(|&e| e + 1 - s >= f.val_start + p && e + p < f.train.end)
            );
            assert_eq!(test, (f.test.start..f.test.end).collect::<Vec<_>>());
            assert_eq!(d.test.n, 2 * fp.test_bars);
            assert_eq!(d.symbols, ["A", "B"]);
            tested.extend(test);
        }
        // Successive folds' test windows follow each other without gaps or overlaps.
        assert!(tested.windows(2).all(|w| w[1] == w[0] + 1));
    }
}
