//! Writing the windows: the [`Plan`] of a build (each split's window ends, the
//! normalisation fitted on the train windows), the inputs and labels it fills, and the
//! runs of window ends the dataset blob stores in place of the windows ([`WindowRuns`]).

use std::ops::Range;

use rayon::prelude::*;

use super::{
    STD_FLOOR, check_params, check_table, median_spacing, sessions, split_ranges, window_ends,
    within_sessions,
};
use crate::data::features::is_price_level;
use crate::data::ingest::DataError;
use crate::data::{Dataset, DatasetParams, FeatureTable, Split};

/// What the dataset blob stores in place of its windows and labels: per split, its windows
/// as runs of consecutive window ends in the rows of the tables (which the dataset's `rows`
/// blob holds, in the features layout: `data::blob`).
pub(in crate::data) struct WindowRuns {
    /// Per split, per run of windows (in storage order), three numbers: the symbol, the
    /// first window's last row (counted from its table's first row), and how many windows
    /// the run holds, each ending one row after the previous one.
    pub runs: [Vec<u32>; 3],
    /// Per column: expressed relative to the window's last close.
    pub relative: Vec<bool>,
    /// `data.action_threshold`, which the actions are derived with.
    pub action_threshold: f64,
}

/// The labels of the window ending at row `end` of `close`: `r[h] = C[end+h] / C[end] - 1`
/// for `h = 1..=p` appended to `y`, and the action of `r[1]` against `theta` (0 buy, 1 hold,
/// 2 sell). The one definition the dataset stage and the blob's decoder both use.
pub(in crate::data) fn label(
    close: &[f64],
    end: usize,
    p: usize,
    theta: f64,
    y: &mut Vec<f32>,
) -> u8 {
    let c0 = close[end];
    let r1 = close[end + 1] / c0 - 1.0;
    y.extend((1..=p).map(|h| (close[end + h] / c0 - 1.0) as f32));
    if r1 > theta {
        0
    } else if r1 < -theta {
        2
    } else {
        1
    }
}

/// `(relative, mean, std)` of column `i % k` at position `i` of a window's `S * k` values,
/// for [`normalise_window`].
pub(in crate::data) fn tiled_constants(
    relative: &[bool],
    mean: &[f64],
    std: &[f64],
    sequence_length: usize,
) -> Vec<(bool, f64, f64)> {
    let k = relative.len().min(mean.len()).min(std.len());
    (0..sequence_length * k)
        .map(|i| (relative[i % k], mean[i % k], std[i % k]))
        .collect()
}

/// The normalised inputs of one window from its raw rows (`S * k` values) and the close of
/// its last row: one flat pass against per-position copies of the column constants
/// (vectorisable), each value computed exactly as `((v' - mean) / std) as f32`. The one
/// definition both [`build`] and the blob's decoder use, so a window rebuilt on load is bit
/// for bit the one built here.
#[inline]
pub(in crate::data) fn normalise_window(
    rows: &[f64],
    last_close: f64,
    tiled: &[(bool, f64, f64)],
    out: &mut [f32],
) {
    for ((o, &v), &(rel, m, sd)) in out.iter_mut().zip(rows).zip(tiled) {
        let r = v / last_close - 1.0;
        let v = if rel { r } else { v };
        *o = ((v - m) / sd) as f32;
    }
}

/// Everything [`build`] decides before writing windows: the window ends of each split and
/// the normalisation statistics.
pub(super) struct Plan<'a> {
    tables: &'a [FeatureTable],
    params: &'a DatasetParams,
    pub(super) sequence_length: usize,
    pub(super) horizon: usize,
    pub(super) k: usize,
    /// Per column: expressed relative to the window's last close.
    relative: Vec<bool>,
    /// Per split: (symbol index, window end rows).
    ends: [Vec<(usize, Range<usize>)>; 3],
    mean: Vec<f64>,
    std: Vec<f64>,
    /// (relative, mean, std) of column `i % k` at position `i` of a window's `S * k` values.
    tiled: Vec<(bool, f64, f64)>,
}

impl<'a> Plan<'a> {
    /// The plan of the usual split: each symbol's rows cut by `params.split` (see the module
    /// docs of `dataset`).
    pub(super) fn new(
        tables: &'a [FeatureTable],
        params: &'a DatasetParams,
    ) -> Result<Self, DataError> {
        check_params(params)?;
        let (s, p) = (params.sequence_length, params.prediction_horizon);
        let ranges: Vec<[Range<usize>; 3]> = tables
            .iter()
            .map(|t| split_ranges(t.timestamps.len(), params.split, p))
            .collect();
        let layout = ranges
            .iter()
            .map(|r| r.clone().map(|range| window_ends(&range, s, p)))
            .collect();
        Plan::with_layout(tables, params, layout, || {
            let detail: Vec<String> = tables
                .iter()
                .zip(&ranges)
                .map(|(t, [a, b, c])| {
                    format!(
                        "'{}': {} rows -> train {}, val {}, test {}",
                        t.symbol,
                        t.timestamps.len(),
                        a.len(),
                        b.len(),
                        c.len()
                    )
                })
                .collect();
            format!(
                "({}; splits are separated by {p}-row gaps, and features drop their warm-up \
                 rows first)",
                detail.join("; ")
            )
        })
    }

    /// The plan of explicit window ends: per symbol, the ends of its train, val and test
    /// windows (every window's rows inside the table), before the session filter.
    /// `why_no_train` details the error when no train window is left.
    pub(super) fn with_layout(
        tables: &'a [FeatureTable],
        params: &'a DatasetParams,
        layout: Vec<[Range<usize>; 3]>,
        why_no_train: impl FnOnce() -> String,
    ) -> Result<Self, DataError> {
        let fail = |m: String| DataError::Dataset(m);
        check_params(params)?;
        let (s, p) = (params.sequence_length, params.prediction_horizon);
        let first = tables
            .first()
            .ok_or_else(|| fail("no feature tables (no symbols)".into()))?;
        let names = &first.names;
        let k = names.len();
        if k == 0 {
            return Err(fail("no features selected".into()));
        }
        for (i, t) in tables.iter().enumerate() {
            check_table(t, names)?;
            if tables[..i].iter().any(|o| o.symbol == t.symbol) {
                return Err(fail(format!("symbol '{}' appears twice", t.symbol)));
            }
        }
        u32::try_from(tables.len()).map_err(|_| fail("too many symbols".into()))?;

        // Window end rows per split, per symbol.
        let mut ends: [Vec<(usize, Range<usize>)>; 3] = Default::default();
        for (sym, (t, splits)) in tables.iter().zip(layout).enumerate() {
            let rows = t.timestamps.len();
            let session = (!params.cross_sessions).then(|| sessions(&t.timestamps));
            for (which, all) in splits.into_iter().enumerate() {
                // Every row a window reads must exist.
                let all = all.start.max(s.saturating_sub(1))..all.end.min(rows.saturating_sub(p));
                let all = all.start..all.end.max(all.start);
                match &session {
                    None => ends[which].push((sym, all)),
                    Some(session) => ends[which].extend(
                        within_sessions(all, session, s, p)
                            .into_iter()
                            .map(|run| (sym, run)),
                    ),
                }
            }
        }
        if ends[0].iter().all(|(_, e)| e.is_empty()) {
            return Err(fail(format!(
                "the train split has no windows: a window needs sequence_length + \
                 prediction_horizon = {} consecutive rows inside one split{} {}; \
                 add bars, or lower data.sequence_length or data.prediction_horizon",
                s + p,
                if params.cross_sessions {
                    ""
                } else {
                    " and one session (data.cross_sessions is false)"
                },
                why_no_train()
            )));
        }

        let relative: Vec<bool> = names
            .iter()
            .map(|n| params.relative_prices && is_price_level(n))
            .collect();
        let mut plan = Plan {
            tables,
            params,
            sequence_length: s,
            horizon: p,
            k,
            relative,
            ends,
            mean: Vec::new(),
            std: Vec::new(),
            tiled: Vec::new(),
        };
        plan.fit_normalisation();
        plan.tiled = tiled_constants(&plan.relative, &plan.mean, &plan.std, s);
        Ok(plan)
    }

    pub(super) fn count(&self, which: usize) -> usize {
        self.ends[which].iter().map(|(_, e)| e.len()).sum()
    }

    /// Mean and population standard deviation of every column over every row of every train
    /// window, after the relative transform (a row counts once per window it lies in), in
    /// f64. The plain columns are fitted together in one scan of the rows while the
    /// price-level ones are fitted in parallel; each column's sums run in a fixed order, so
    /// the result does not depend on the thread count.
    fn fit_normalisation(&mut self) {
        let total = (self.count(0) * self.sequence_length) as f64;
        let (plain, relative): (Vec<usize>, Vec<usize>) =
            (0..self.k).partition(|&c| !self.relative[c]);
        let (plain_moments, relative_moments) = rayon::join(
            || self.weighted_moments(&plain, total),
            || {
                relative
                    .par_iter()
                    .map(|&c| self.relative_moments(c, total))
                    .collect::<Vec<_>>()
            },
        );
        let mut moments = vec![(0.0, 0.0); self.k];
        for (c, m) in plain.iter().zip(plain_moments) {
            moments[*c] = m;
        }
        for (c, m) in relative.iter().zip(relative_moments) {
            moments[*c] = m;
        }
        for (mean, variance) in moments {
            self.mean.push(mean);
            let sd = variance.sqrt();
            self.std.push(if sd.is_finite() && sd >= STD_FLOOR {
                sd
            } else {
                1.0
            });
        }
    }

    /// Mean and population variance of each plain column of `cols`: a row's value is the
    /// same in every window, so each row is visited once with its multiplicity (the number
    /// of train windows it lies in) instead of once per window; two passes over the rows,
    /// every column of `cols` in each (one stream through memory; each column's sum is the
    /// same sequence of additions as on its own).
    fn weighted_moments(&self, cols: &[usize], total: f64) -> Vec<(f64, f64)> {
        let (k, s) = (self.k, self.sequence_length);
        let visit = |f: &mut dyn FnMut(f64, &[f64])| {
            for (sym, ends) in self.ends[0].iter().filter(|(_, e)| !e.is_empty()) {
                let values = &self.tables[*sym].values;
                let (a, last) = (ends.start, ends.end - 1);
                // Windows ending at a..=last cover rows a+1-s..=last; row r lies in those
                // ending at max(a, r)..=min(last, r+s-1).
                for r in a + 1 - s..=last {
                    let m = (last.min(r + s - 1) + 1 - a.max(r)) as f64;
                    f(m, &values[r * k..(r + 1) * k]);
                }
            }
        };
        let mut sums = vec![0.0; cols.len()];
        visit(&mut |m, row| {
            for (sum, &c) in sums.iter_mut().zip(cols) {
                *sum += m * row[c];
            }
        });
        let means: Vec<f64> = sums.iter().map(|sum| sum / total).collect();
        let mut squares = vec![0.0; cols.len()];
        visit(&mut |m, row| {
            for ((squares, &c), &mean) in squares.iter_mut().zip(cols).zip(&means) {
                let v = row[c];
                *squares += m * (v - mean) * (v - mean);
            }
        });
        means
            .into_iter()
            .zip(squares)
            .map(|(mean, squares)| (mean, squares / total))
            .collect()
    }

    /// Mean and population variance of price-level column `c` relative to each window's
    /// last close C: with `d = v - C` over a window's rows, the window contributes
    /// `D1 / C` to the sum and `D2 / C^2 - 2 mean D1 / C + S mean^2` to the squared
    /// deviations (`D1 = sum d`, `D2 = sum d^2`). The per-window sums are computed in
    /// parallel, then added in window order.
    fn relative_moments(&self, c: usize, total: f64) -> (f64, f64) {
        let (k, s) = (self.k, self.sequence_length);
        let mut per_window: Vec<(f64, f64)> = Vec::with_capacity(self.count(0));
        for (sym, ends) in self.ends[0].iter().filter(|(_, e)| !e.is_empty()) {
            let t = &self.tables[*sym];
            // Column `c` of the rows these windows read, contiguous: `LANES` consecutive
            // windows then read `LANES` consecutive values per row.
            let first = ends.start + 1 - s;
            let column: Vec<f64> = t.values[first * k..ends.end * k]
                .iter()
                .skip(c)
                .step_by(k)
                .copied()
                .collect();
            let closes = &t.close[ends.clone()];
            let mut part = vec![(0.0, 0.0); ends.len()];
            part.par_chunks_mut(1024)
                .zip(closes.par_chunks(1024))
                .enumerate()
                .for_each(|(block, (out, closes))| {
                    // Window `i` of the block reads column[w..w + s], `w` its index among
                    // all of them.
                    let base = block * 1024;
                    window_deviations(&column[base..], closes, s, out);
                });
            per_window.extend(part);
        }
        let sum: f64 = per_window.iter().map(|(a, _)| a).sum();
        let mean = sum / total;
        let sm2 = s as f64 * mean * mean;
        let squares: f64 = per_window
            .iter()
            .map(|(a, b)| b - 2.0 * mean * a + sm2)
            .sum();
        (mean, (squares / total).max(0.0))
    }

    /// Writes the normalised windows of split `which` into `out` (`S * k` values per
    /// window, in storage order). Windows are independent, so they are filled in parallel;
    /// each value is computed exactly as in a sequential pass.
    pub(super) fn fill_x(&self, which: usize, out: &mut [f32]) {
        let width = self.sequence_length * self.k;
        if width == 0 {
            return;
        }
        let mut rest = out;
        for (sym, range) in &self.ends[which] {
            let (here, tail) = rest.split_at_mut((range.len() * width).min(rest.len()));
            rest = tail;
            let t = &self.tables[*sym];
            here.par_chunks_mut(width)
                .with_min_len(64)
                .enumerate()
                .for_each(|(i, window)| self.window(t, range.start + i, window));
        }
    }

    /// The normalised inputs of the window ending at row `end` of `t`.
    fn window(&self, t: &FeatureTable, end: usize, out: &mut [f32]) {
        let k = self.k;
        let first = end + 1 - self.sequence_length;
        let rows = &t.values[first * k..(end + 1) * k];
        normalise_window(rows, t.close[end], &self.tiled, out);
    }

    /// The runs of window ends (for the blob).
    pub(super) fn window_runs(&self) -> Result<WindowRuns, DataError> {
        let too_many = |sym: usize| {
            DataError::Dataset(format!(
                "symbol '{}' has over {} rows",
                self.tables[sym].symbol,
                u32::MAX
            ))
        };
        let mut runs: [Vec<u32>; 3] = Default::default();
        for (which, ends) in self.ends.iter().enumerate() {
            for (sym, range) in ends.iter().filter(|(_, r)| !r.is_empty()) {
                let run = [*sym, range.start, range.len()]
                    .map(|v| u32::try_from(v).map_err(|_| too_many(*sym)));
                for v in run {
                    runs[which].push(v?);
                }
            }
        }
        Ok(WindowRuns {
            runs,
            relative: self.relative.clone(),
            action_threshold: self.params.action_threshold,
        })
    }

    /// The dataset's description without windows or labels: symbols, feature names,
    /// shape, spacing and the normalisation (every split empty).
    pub(super) fn unlabelled(&self) -> Dataset {
        Dataset {
            symbols: self.tables.iter().map(|t| t.symbol.clone()).collect(),
            feature_names: self.tables[0].names.clone(),
            sequence_length: self.sequence_length,
            prediction_horizon: self.horizon,
            bar_seconds: median_spacing(self.tables),
            norm_mean: self.mean.clone(),
            norm_std: self.std.clone(),
            train: Split::default(),
            val: Split::default(),
            test: Split::default(),
        }
    }

    /// The dataset without inputs: labels, symbols, timestamps, window counts and the
    /// normalisation statistics (every split's `x` empty).
    pub(super) fn labels(&self) -> Dataset {
        let p = self.horizon;
        let theta = self.params.action_threshold;
        let [train, val, test] = [0, 1, 2].map(|which| {
            let n = self.count(which);
            let mut split = Split {
                n,
                ..Split::default()
            };
            split.y.reserve(n * p);
            split.action.reserve(n);
            split.symbol.reserve(n);
            split.timestamp.reserve(n);
            for (sym, range) in &self.ends[which] {
                let t = &self.tables[*sym];
                for end in range.clone() {
                    split
                        .action
                        .push(label(&t.close, end, p, theta, &mut split.y));
                    split.symbol.push(*sym as u32);
                    split.timestamp.push(t.timestamps[end]);
                }
            }
            split
        });
        Dataset {
            train,
            val,
            test,
            ..self.unlabelled()
        }
    }
}

/// Windows summed side by side: independent sums, each in its own order.
const LANES: usize = 8;

/// For window `i` (reading `column[i..i + s]`, last close `closes[i]`), with `d = v - close`
/// over its values: `(sum d / close, sum d^2 / close^2)`, each sum in row order. `LANES`
/// windows are summed at once, one accumulator each, so the additions of one window are
/// the same sequence as alone (the same bits) while the lanes fill the vector unit.
fn window_deviations(column: &[f64], closes: &[f64], s: usize, out: &mut [(f64, f64)]) {
    let one = |i: usize| {
        let close = closes[i];
        let (mut d1, mut d2) = (0.0, 0.0);
        for &v in &column[i..i + s] {
            let d = v - close;
            d1 += d;
            d2 += d * d;
        }
        (d1 / close, d2 / (close * close))
    };
    let lanes = out.len() / LANES * LANES;
    for i in (0..lanes).step_by(LANES) {
        let close: [f64; LANES] = std::array::from_fn(|l| closes[i + l]);
        let (mut d1, mut d2) = ([0.0; LANES], [0.0; LANES]);
        for j in 0..s {
            let v = &column[i + j..i + j + LANES];
            for l in 0..LANES {
                let d = v[l] - close[l];
                d1[l] += d;
                d2[l] += d * d;
            }
        }
        for l in 0..LANES {
            out[i + l] = (d1[l] / close[l], d2[l] / (close[l] * close[l]));
        }
    }
    for (i, slot) in out.iter_mut().enumerate().skip(lanes) {
        *slot = one(i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::dataset::tests::params;
    use crate::data::dataset::{build, build_encoded};

    #[test]
    fn windows_summed_side_by_side_give_each_window_its_own_bits() {
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            100.0 + (state >> 11) as f64 / (1u64 << 53) as f64
        };
        for (windows, s) in [(1, 1), (7, 3), (8, 60), (37, 5), (1024, 60), (1030, 2)] {
            let column: Vec<f64> = (0..windows + s - 1).map(|_| next()).collect();
            let closes: Vec<f64> = (0..windows).map(|_| next()).collect();
            let mut out = vec![(0.0, 0.0); windows];
            window_deviations(&column, &closes, s, &mut out);
            for (i, got) in out.iter().enumerate() {
                let (mut d1, mut d2) = (0.0f64, 0.0f64);
                for &v in &column[i..i + s] {
                    let d = v - closes[i];
                    d1 += d;
                    d2 += d * d;
                }
                let want = (d1 / closes[i], d2 / (closes[i] * closes[i]));
                assert_eq!(
                    (got.0.to_bits(), got.1.to_bits()),
                    (want.0.to_bits(), want.1.to_bits()),
                    "window {i} of {windows}, s = {s}"
                );
            }
        }
    }

    /// The normalisation and inputs by the definition, sequentially: one pass over all
    /// columns of every row of every train window for the sums, one for the squares, one
    /// over every split's rows for `x`. With `stats`, `x` is normalised with those instead.
    fn sequential_reference(
        tables: &[FeatureTable],
        p: &DatasetParams,
        stats: Option<(&[f64], &[f64])>,
    ) -> Dataset {
        let (s, h) = (p.sequence_length, p.prediction_horizon);
        let k = tables[0].names.len();
        let rel: Vec<bool> = tables[0]
            .names
            .iter()
            .map(|n| p.relative_prices && is_price_level(n))
            .collect();
        let ends: Vec<Vec<(usize, Range<usize>)>> = (0..3)
            .map(|which| {
                tables
                    .iter()
                    .enumerate()
                    .map(|(sym, t)| {
                        let r = split_ranges(t.timestamps.len(), p.split, h);
                        (sym, window_ends(&r[which], s, h))
                    })
                    .collect()
            })
            .collect();
        let rows = |which: usize| -> Vec<Vec<f64>> {
            let mut out = Vec::new();
            for (sym, range) in &ends[which] {
                let t = &tables[*sym];
                for end in range.clone() {
                    for r in end + 1 - s..=end {
                        out.push(
                            (0..k)
                                .map(|j| {
                                    let v = t.values[r * k + j];
                                    if rel[j] { v / t.close[end] - 1.0 } else { v }
                                })
                                .collect(),
                        );
                    }
                }
            }
            out
        };
        let train = rows(0);
        let mut sum = vec![0.0; k];
        for row in &train {
            for (a, v) in sum.iter_mut().zip(row) {
                *a += v;
            }
        }
        let mean: Vec<f64> = sum.iter().map(|v| v / train.len() as f64).collect();
        let mut sq = vec![0.0; k];
        for row in &train {
            for ((a, v), m) in sq.iter_mut().zip(row).zip(&mean) {
                *a += (v - m) * (v - m);
            }
        }
        let std: Vec<f64> = sq
            .iter()
            .map(|q| {
                let sd = (q / train.len() as f64).sqrt();
                if sd.is_finite() && sd >= STD_FLOOR {
                    sd
                } else {
                    1.0
                }
            })
            .collect();
        let (mean, std) = match stats {
            Some((m, sd)) => (m.to_vec(), sd.to_vec()),
            None => (mean, std),
        };
        let mut d = build(tables, p).unwrap();
        for (which, split) in [&mut d.train, &mut d.val, &mut d.test]
            .into_iter()
            .enumerate()
        {
            split.x = rows(which)
                .iter()
                .flat_map(|row| {
                    row.iter()
                        .zip(&mean)
                        .zip(&std)
                        .map(|((v, m), sd)| ((v - m) / sd) as f32)
                        .collect::<Vec<_>>()
                })
                .collect();
        }
        d.norm_mean = mean;
        d.norm_std = std;
        d
    }

    #[test]
    fn parallel_build_and_direct_blob_match_the_sequential_computation() {
        use crate::data::{features, synthetic};
        // One block of columns, and more columns than one block holds.
        let small = ["close", "log_return", "ma_20", "rsi_14", "volume_ratio"];
        let large = [
            "close",
            "log_return",
            "ma_20",
            "rsi_14",
            "volume_ratio",
            "open",
            "high",
            "ema_10",
            "bb_position",
            "macd",
            "volatility",
        ];
        for set in [&small[..], &large[..]] {
            let names: Vec<String> = set.iter().map(|s| s.to_string()).collect();
            let tables: Vec<FeatureTable> = (0..3u64)
                .map(|i| {
                    let bars = synthetic::generate(i, 700 + 150 * i as usize, 30.0, 300);
                    features::compute(&bars, &format!("S{i}"), &names).unwrap()
                })
                .collect();
            for relative_prices in [true, false] {
                let mut p = params(37, 4);
                p.relative_prices = relative_prices;
                let by_definition = sequential_reference(&tables, &p, None);
                let fitted = build(&tables, &p).unwrap();
                // The fit's closed forms agree with the definition to float precision...
                for (c, name) in set.iter().enumerate() {
                    let close = |a: f64, b: f64| (a - b).abs() <= 1e-11 * a.abs().max(1.0);
                    let (m, sd) = (fitted.norm_mean[c], fitted.norm_std[c]);
                    let (m0, sd0) = (by_definition.norm_mean[c], by_definition.norm_std[c]);
                    assert!(
                        close(m, m0) && close(sd, sd0),
                        "{name}: {m} {sd} vs {m0} {sd0}"
                    );
                }
                // ... and the windows are exactly the definition's with the fitted statistics.
                let expected =
                    sequential_reference(&tables, &p, Some((&fitted.norm_mean, &fitted.norm_std)));
                let mut expected_bytes = None;
                for threads in [1, 2, 3, 7] {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .unwrap();
                    let (d, e) = pool.install(|| {
                        (
                            build(&tables, &p).unwrap(),
                            build_encoded(&tables, &p).unwrap(),
                        )
                    });
                    assert_eq!(d, expected, "{threads} threads");
                    // The blob rebuilds the windows bit for bit, and does not depend on
                    // the thread count.
                    assert!(
                        e.decode(&tables).unwrap() == expected,
                        "{threads} threads: windows rebuilt from the blob differ"
                    );
                    let first = expected_bytes.get_or_insert_with(|| e.bytes.clone());
                    assert!(e.bytes == *first, "{threads} threads: blob differs");
                    // The rows, not the windows: far smaller than `S * k` floats a window.
                    let windows = 4 * 37 * set.len() * (d.train.n + d.val.n + d.test.n);
                    assert!(
                        e.bytes.len() * 5 < windows,
                        "blob {} bytes, windows {windows}",
                        e.bytes.len()
                    );
                    assert_eq!(e.n, [d.train.n, d.val.n, d.test.n]);
                    assert_eq!(
                        (e.num_features, e.sequence_length, e.prediction_horizon),
                        (set.len(), 37, 4)
                    );
                }
            }
        }
    }
}
