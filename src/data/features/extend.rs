//! The incremental continuation: [`extend`] computes only the rows of appended bars from a
//! saved [`FeatureState`], bit for bit what a full computation gives.

use super::state::{DIGEST_LEN, FeatureState};
use super::{Recursive, compute_rows, compute_with_state, feature, warm_up};
use crate::data::ingest::{DataError, fmt_ts, validate};
use crate::data::{Bars, FeatureTable};

/// Bars before a state's last bar that [`extend`] may read again. The deepest read is
/// volatility_ratio's: its 60-bar mean replays from the last re-summed window (up to 118
/// volatilities back), each of which replays its own 20-bar window (38 log returns back), each
/// of which needs the previous close: 157 bars. A digest of these bars is kept in the state so
/// a changed prefix there is an error rather than a silently different table.
pub(super) const CONTEXT_BARS: usize = 256;

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

/// The keys of the recursive averages `names` need, sorted and distinct.
pub(super) fn recursive_keys(names: &[String]) -> Vec<&'static str> {
    let mut keys: Vec<&'static str> = names
        .iter()
        .filter_map(|name| feature(name))
        .flat_map(|d| d.recursive.iter().copied())
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// blake3 of bars `n - CONTEXT_BARS..n` (from 0 when fewer): timestamp and OHLCV bits per row.
pub(super) fn context_digest(bars: &Bars, n: usize) -> [u8; DIGEST_LEN] {
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

pub(super) fn state_after(bars: &Bars, names: &[String], mut recursive: Recursive) -> FeatureState {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::features::tests::{all_names, series};
    use crate::data::features::{ALL_FEATURES, compute, lookback};

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
