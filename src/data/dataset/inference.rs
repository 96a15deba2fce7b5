//! Windows for scoring new bars with a trained model: the dataset stage's windowing and its
//! normalisation (fitted on the train split, read from the dataset blob), applied unchanged
//! to the feature rows of other bars. Nothing is refitted: a window of bars the dataset
//! stage also saw comes out bit for bit as that stage cut it (the same
//! [`normalise_window`]).

use std::ops::Range;

use super::{normalise_window, sessions, tiled_constants};
use crate::data::FeatureTable;
use crate::data::blob::DatasetHeader;
use crate::data::ingest::DataError;

/// The prefix of the one-hot columns `data.symbol_id` appends (`symbol=AAPL`).
pub const SYMBOL_COLUMN: &str = "symbol=";

/// The one-hot `symbol=NAME` columns the model was trained with, in column order (empty
/// when `data.symbol_id` was off).
pub fn symbol_columns(header: &DatasetHeader) -> Vec<&str> {
    header
        .feature_names
        .iter()
        .filter_map(|n| n.strip_prefix(SYMBOL_COLUMN))
        .collect()
}

/// The feature names the features stage computes for this model (the columns without the
/// symbol ids), in column order.
pub fn base_features(header: &DatasetHeader) -> Vec<String> {
    header
        .feature_names
        .iter()
        .filter(|n| !n.starts_with(SYMBOL_COLUMN))
        .cloned()
        .collect()
}

/// The rows of `table` that end a window: every row from `S - 1` on, and, when windows may
/// not cross sessions, only those whose `S` input rows lie in one session (the targets of a
/// new window are in the future, so unlike the dataset stage nothing after `t` is asked).
pub fn window_ends(
    table: &FeatureTable,
    sequence_length: usize,
    cross_sessions: bool,
) -> Vec<usize> {
    let rows = table.timestamps.len();
    let first = sequence_length.saturating_sub(1);
    if rows <= first {
        return Vec::new();
    }
    let all: Range<usize> = first..rows;
    if cross_sessions {
        return all.collect();
    }
    let session = sessions(&table.timestamps);
    all.filter(|&end| session[end + 1 - sequence_length] == session[end])
        .collect()
}

/// What [`inference_rows`] returns: the rows `[rows, k]` and the per-position constants.
pub type InferenceRows = (Vec<f64>, Vec<(bool, f64, f64)>);

/// The rows windows of `table` are cut from for the model of `header`: each row's base
/// features (in the header's order) with the symbol id columns of `header` appended for
/// `table.symbol`, `[rows, k]` (their closes are the table's), and the normalisation
/// constants of a window's `S * k` values. With them, [`crate::data::Windows::Rows`] cuts any window on
/// demand: memory grows with the rows, not with the windows.
///
/// Errors when the table's columns are not the model's, or the model has symbol ids and
/// none for this symbol.
pub fn inference_rows(
    table: &FeatureTable,
    header: &DatasetHeader,
) -> Result<InferenceRows, DataError> {
    let fail = |m: String| DataError::Dataset(m);
    let base = base_features(header);
    if table.names != base {
        return Err(fail(format!(
            "'{}': features {:?}, but the model was trained with {:?}",
            table.symbol, table.names, base
        )));
    }
    let ids = symbol_columns(header);
    let one_hot: Vec<f64> = if ids.is_empty() {
        Vec::new()
    } else {
        let Some(own) = ids.iter().position(|s| *s == table.symbol) else {
            return Err(fail(format!(
                "symbol '{}' has no id in the model (data.symbol_id is on and it was trained \
                 on {}); score only those symbols, or retrain with this one",
                table.symbol,
                ids.join(", ")
            )));
        };
        (0..ids.len())
            .map(|i| if i == own { 1.0 } else { 0.0 })
            .collect()
    };
    let (s, k_base) = (header.sequence_length, base.len());
    let k = k_base + one_hot.len();
    if header.feature_names.len() != k || header.norm_mean.len() != k || header.norm_std.len() != k
    {
        return Err(fail(format!(
            "the dataset header has {} columns, {} means and {} deviations for {k} inputs",
            header.feature_names.len(),
            header.norm_mean.len(),
            header.norm_std.len()
        )));
    }
    let tiled = tiled_constants(&header.relative, &header.norm_mean, &header.norm_std, s);
    let mut rows = Vec::with_capacity(table.timestamps.len() * k);
    for row in table.values.chunks_exact(k_base.max(1)) {
        rows.extend_from_slice(row);
        rows.extend_from_slice(&one_hot);
    }
    Ok((rows, tiled))
}

/// The normalised windows (`[ends.len(), S, k]`) of `table` ending at rows `ends`, cut from
/// [`inference_rows`] with the dataset's own window function.
pub fn inference_windows(
    table: &FeatureTable,
    header: &DatasetHeader,
    ends: &[usize],
) -> Result<Vec<f32>, DataError> {
    let (rows, tiled) = inference_rows(table, header)?;
    let s = header.sequence_length;
    let k = header.feature_names.len();
    let width = s * k;
    let mut x = vec![0f32; ends.len() * width];
    for (window, &end) in x.chunks_exact_mut(width.max(1)).zip(ends) {
        if end + 1 < s || end >= table.timestamps.len() {
            return Err(DataError::Dataset(format!(
                "'{}': no window of {s} rows ends at row {end}",
                table.symbol
            )));
        }
        let first = end + 1 - s;
        normalise_window(
            &rows[first * k..(end + 1) * k],
            table.close[end],
            &tiled,
            window,
        );
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::DatasetParams;
    use crate::data::dataset::build;
    use crate::data::dataset::tests::{params, table};

    fn header_of(d: &crate::data::Dataset, relative: Vec<bool>) -> DatasetHeader {
        DatasetHeader {
            symbols: d.symbols.clone(),
            feature_names: d.feature_names.clone(),
            sequence_length: d.sequence_length,
            prediction_horizon: d.prediction_horizon,
            bar_seconds: d.bar_seconds,
            relative,
            norm_mean: d.norm_mean.clone(),
            norm_std: d.norm_std.clone(),
        }
    }

    /// The windows of the bars the dataset stage saw are its windows, bit for bit, with the
    /// symbol ids of a multi-symbol model.
    #[test]
    fn windows_of_known_rows_are_the_datasets() {
        let tables = [table("AAA", 90, 0.0), table("BBB", 80, 50.0)];
        let p = DatasetParams {
            symbol_id: true,
            ..params(4, 2)
        };
        let d = build(&tables, &p).unwrap();
        let header = header_of(&d, vec![true, false, false, false]);
        assert_eq!(symbol_columns(&header), ["AAA", "BBB"]);
        assert_eq!(base_features(&header), ["close", "volume"]);
        let width = 4 * 4;
        for (sym, t) in tables.iter().enumerate() {
            let ends: Vec<usize> = d
                .test
                .timestamp
                .iter()
                .zip(&d.test.symbol)
                .filter(|(_, s)| **s as usize == sym)
                .map(|(ts, _)| t.timestamps.iter().position(|x| x == ts).unwrap())
                .collect();
            let x = inference_windows(t, &header, &ends).unwrap();
            let first = d
                .test
                .symbol
                .iter()
                .position(|s| *s as usize == sym)
                .unwrap();
            assert_eq!(
                x,
                d.test.x.values()[first * width..(first + ends.len()) * width]
            );
        }
        let mut other = table("CCC", 30, 0.0);
        other.symbol = "CCC".into();
        let e = inference_windows(&other, &header, &[5])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("'CCC' has no id") && e.contains("AAA, BBB"),
            "{e}"
        );
        let mut renamed = tables[0].clone();
        renamed.names[1] = "rsi_14".into();
        let e = inference_windows(&renamed, &header, &[5])
            .unwrap_err()
            .to_string();
        assert!(e.contains("trained with"), "{e}");
        assert!(inference_windows(&tables[0], &header, &[2]).is_err());
    }

    #[test]
    fn window_ends_stay_inside_sessions_when_asked() {
        let mut t = table("AAA", 10, 0.0);
        t.timestamps = vec![
            0, 60, 120, 180, 86_400, 86_460, 86_520, 86_580, 86_640, 86_700,
        ];
        assert_eq!(window_ends(&t, 3, true), (2..10).collect::<Vec<_>>());
        assert_eq!(window_ends(&t, 3, false), [2, 3, 6, 7, 8, 9]);
        assert!(window_ends(&t, 11, true).is_empty());
    }
}
