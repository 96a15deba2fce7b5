//! The `ingest` stage: CSV or Parquet bytes -> validated [`Bars`].
//!
//! Accepted layouts (column names are matched after lowercasing and dropping everything that
//! is not a letter or digit, so `Adj Close`, `adj_close` and `<CLOSE>` all work; Parquet
//! files use the same names, see [`parquet`]):
//!
//! - time: a `datetime` or `timestamp` column; otherwise a `date` column plus an optional `time`
//!   column (`HH:MM` or `HH:MM:SS`); otherwise a lone `time` column. Values may be ISO dates
//!   (`2020-01-31`), ISO date-times (`2020-01-31 09:30`, `2020-01-31T09:30:00Z`, RFC 3339 with an
//!   offset), US dates (`01/31/2020`, optionally with a time), `YYYY/MM/DD`, `YYYYMMDD`, or (in a
//!   `timestamp`/`datetime`/lone `time` column) integer Unix seconds. Times without an offset are
//!   taken as UTC.
//! - prices: `open`, `high`, `low`, `close` are required; `adj close` / `adjusted close` is
//!   optional and, when present, replaces the close with O/H/L scaled by `adj / close` of the
//!   row (features.md, "Inputs").
//! - `volume` (or `vol`) is optional (0 when absent); any other column is ignored.
//!
//! One pipeline serves both formats: each row is parsed and checked on its own, then the
//! rows are put in time order, then the optional `data.start` / `data.end` window is applied.
//!
//! - Row-level problems (an unparseable number or date, an empty value or null, a non-finite
//!   or non-positive price, high/low inconsistent with open/close, a negative volume, a CSV
//!   row whose width differs from the header's, a duplicate timestamp, a row out of time
//!   order in an otherwise ordered file) fail the ingest under [`BadRows::Error`] (the
//!   default) and are dropped, and listed in [`Ingested::dropped`], under [`BadRows::Drop`].
//! - File-level problems (an empty file, no header, a missing or repeated column, not a
//!   Parquet file, no rows left, rows in no consistent time order) fail in both modes.
//! - A file in descending time order (newest first, as many exports are) is sorted, with a
//!   note in [`Ingested::notes`]. A file in ascending order is taken as it is; a few rows
//!   out of that order are row-level problems, more than one row in a hundred (and more
//!   than one row) means the file has no consistent order.
//!
//! Every problem names the file, where in it (`file:line:` for CSV, line 1 being the header;
//! `file: row N` for Parquet, N counting data rows from 1) and the column, and says what to
//! do. OHLC consistency allows a relative tolerance of [`OHLC_TOLERANCE`] for float noise in
//! exported files; values inside that tolerance are clamped so the invariant holds exactly.
//!
//! One file per concept: `error` (the error type), `columns` (column roles), `rows` (the
//! per-row rules), `dates` (timestamps), `pipeline` (order, bad rows, date window), and the
//! two readers, `csv_reader` (with `split`, CSV bytes to records) and [`parquet`], which
//! share all of them and not each other.

mod columns;
mod csv_reader;
mod dates;
mod error;
mod format;
mod numbers;
pub mod parquet;
mod pipeline;
mod rows;
mod sink;
mod sniff;
mod split;
#[cfg(test)]
mod testutil;

use std::path::{Path, PathBuf};

use crate::data::Bars;

pub use error::DataError;
use error::shorten;
pub use format::{ColumnMap, ColumnRef, FileFormat};
pub use pipeline::{BadRows, DroppedRow, IngestOptions, Ingested};
pub(crate) use rows::fmt_ts;
pub use rows::{OHLC_TOLERANCE, validate};

use csv_reader::validate_csv;
use pipeline::{Problem, Validated, dropped_rows, finish, finish_one};
use rows::Row;

/// Reads a CSV of bars with the default options (bad rows are errors, no date window).
/// `path_for_messages` only names the file in errors.
///
/// Never panics, whatever the bytes: every problem is a [`DataError::Source`] naming the file,
/// the 1-based line and, where one is to blame, the column.
pub fn parse_csv(path_for_messages: &Path, bytes: &[u8]) -> Result<Bars, DataError> {
    parse_csv_with(path_for_messages, bytes, &IngestOptions::default()).map(|i| i.bars)
}

/// Reads a CSV of bars under `opts`. `path_for_messages` only names the file in messages.
pub fn parse_csv_with(
    path_for_messages: &Path,
    bytes: &[u8],
    opts: &IngestOptions,
) -> Result<Ingested, DataError> {
    finish_one(validate_csv(path_for_messages, bytes, opts)?, opts)
}

/// Reads a data file of bars, CSV or Parquet: Parquet when the bytes start and end with
/// the Parquet magic `PAR1`, or else when the name ends in `.parquet` or `.pq`; CSV
/// otherwise (`.csv`, `.txt`, anything else).
pub fn parse_file(
    path_for_messages: &Path,
    bytes: &[u8],
    opts: &IngestOptions,
) -> Result<Ingested, DataError> {
    finish_one(validate_file(path_for_messages, bytes, opts)?, opts)
}

/// Whether [`parse_file`] reads these bytes as Parquet.
fn is_parquet(path: &Path, bytes: &[u8]) -> bool {
    const MAGIC: &[u8] = b"PAR1";
    if bytes.len() >= 2 * MAGIC.len() && bytes.starts_with(MAGIC) && bytes.ends_with(MAGIC) {
        return true;
    }
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet") || e.eq_ignore_ascii_case("pq"))
}

fn validate_file(path: &Path, bytes: &[u8], opts: &IngestOptions) -> Result<Validated, DataError> {
    if is_parquet(path, bytes) {
        parquet::validate_parquet(path, bytes, opts)
    } else {
        validate_csv(path, bytes, opts)
    }
}

/// Several files of one symbol (e.g. train/AAPL.csv then test/AAPL.csv): each parsed, then
/// concatenated in time order; a timestamp present in two files is an error naming both files
/// and lines (dropped, first file wins, under Drop). The date window applies to the whole.
pub fn parse_files<B: AsRef<[u8]> + Sync>(
    files: &[(PathBuf, B)],
    opts: &IngestOptions,
) -> Result<Ingested, DataError> {
    use rayon::prelude::*;
    let mode = opts.on_bad_rows;
    // Every file in parallel; the first error in the given order is the one reported.
    let results: Vec<Result<Validated, DataError>> = files
        .par_iter()
        .map(|(path, bytes)| validate_file(path, bytes.as_ref(), opts))
        .collect();
    let mut validated = Vec::with_capacity(results.len());
    for r in results {
        validated.push(r?);
    }
    let label = validated
        .iter()
        .map(|v| v.source.file.as_str())
        .collect::<Vec<_>>()
        .join(" + ");
    if validated.len() <= 1 {
        let Some(v) = validated.pop() else {
            return Err(DataError::Table {
                file: "(no files)".to_string(),
                row: None,
                column: None,
                message: "no data files to ingest; name at least one".to_string(),
            });
        };
        return finish_one(v, opts);
    }
    // Each file is already in order: a stable sort of the concatenation merges the runs,
    // and keeps files in the given order among equal timestamps.
    let total = validated.iter().map(|v| v.rows.len()).sum();
    let mut all: Vec<(usize, Row)> = Vec::with_capacity(total);
    for (i, v) in validated.iter_mut().enumerate() {
        all.extend(std::mem::take(&mut v.rows).into_iter().map(|r| (i, r)));
    }
    all.sort_by_key(|(_, r)| r.timestamp);
    let mut rows: Vec<Row> = Vec::with_capacity(total);
    let mut first: Option<(usize, Row)> = None;
    for (i, row) in all {
        if let Some((fi, f)) = first
            && f.timestamp == row.timestamp
        {
            let (Some(v), Some(other)) = (validated.get(i), validated.get(fi)) else {
                continue;
            };
            let problem = Problem {
                at: row.at,
                column: Some(v.time_column.clone()),
                message: format!(
                    "duplicate timestamp {} (also in {} {} {}); keep each bar in one file",
                    fmt_ts(row.timestamp),
                    other.source.file,
                    other.source.unit(),
                    f.at
                ),
            };
            if mode == BadRows::Error {
                return Err(v.source.row_error(problem));
            }
            if let Some(v) = validated.get_mut(i) {
                v.problems.push(problem);
            }
            continue;
        }
        first = Some((i, row));
        rows.push(row);
    }
    let mut dropped = Vec::new();
    let mut notes = Vec::new();
    let mut layouts = Vec::new();
    for v in validated {
        if let Some(l) = &v.layout {
            layouts.push(format!("{}: {l}", v.source.file));
        }
        dropped.extend(dropped_rows(&v.source, v.problems));
        notes.extend(v.notes);
    }
    finish(&label, rows, dropped, notes, layouts, opts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::ingest::testutil::*;
    #[allow(unused_imports)]
    use crate::data::ingest::*;

    fn file(name: &str, text: &str) -> (PathBuf, Vec<u8>) {
        (PathBuf::from(name), text.as_bytes().to_vec())
    }

    #[test]
    fn parse_files_concatenates_in_time_order() {
        let train = file(
            "train/X.csv",
            &format!("{HEAD}2020-01-01,10,11,9,10,1\n2020-01-02,10,11,9,10,2\n"),
        );
        let test = file(
            "test/X.csv",
            &format!("{HEAD}2020-01-04,10,11,9,10,4\n2020-01-03,10,11,9,10,3\n"),
        );
        // Given in either order, the bars come out in time order.
        for files in [
            vec![train.clone(), test.clone()],
            vec![test.clone(), train.clone()],
        ] {
            let got = parse_files(&files, &IngestOptions::default()).unwrap();
            assert_eq!(got.bars.volume, vec![1.0, 2.0, 3.0, 4.0]);
            assert_eq!(got.notes.len(), 1, "{:?}", got.notes);
            assert!(got.notes[0].starts_with("test/X.csv: rows were in descending"));
        }
        let one = parse_files(std::slice::from_ref(&train), &IngestOptions::default()).unwrap();
        assert_eq!(one.bars.volume, vec![1.0, 2.0]);
        assert!(parse_files::<Vec<u8>>(&[], &IngestOptions::default()).is_err());
        let window = IngestOptions {
            start: Some(ts("2020-01-02 00:00:00")),
            end: Some(ts("2020-01-04 00:00:00")),
            ..IngestOptions::default()
        };
        let got = parse_files(&[train, test], &window).unwrap();
        assert_eq!(got.bars.volume, vec![2.0, 3.0]);
    }

    #[test]
    fn a_timestamp_in_two_files_names_both() {
        let train = file(
            "train/X.csv",
            &format!("{HEAD}2020-01-01,10,11,9,10,1\n2020-01-02,10,11,9,10,2\n"),
        );
        let test = file(
            "test/X.csv",
            "date,open,high,low,close,volume\n2020-01-02,10,11,9,10,20\n2020-01-03,10,11,9,10,3\n",
        );
        let files = [train, test];
        let m = parse_files(&files, &IngestOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            m.starts_with("test/X.csv:2: column 'date': duplicate timestamp 2020-01-02 00:00:00 (also in train/X.csv line 3); keep each bar in one file"),
            "{m}"
        );
        assert!(m.ends_with(DROP_HINT), "{m}");
        let got = parse_files(&files, &DROP).unwrap();
        assert_eq!(got.bars.volume, vec![1.0, 2.0, 3.0]);
        assert_eq!(got.dropped.len(), 1);
        assert_eq!(got.dropped[0].file, "test/X.csv");
        assert_eq!(got.dropped[0].line, 2);
    }

    #[test]
    fn parse_file_dispatches_on_content_then_name() {
        let csv = format!("{HEAD}2020-01-01,10,11,9,10,1\n");
        for name in ["a.csv", "a.txt", "a"] {
            let got = parse_file(Path::new(name), csv.as_bytes(), &IngestOptions::default());
            assert_eq!(got.unwrap().bars.volume, vec![1.0], "{name}");
        }
        for name in ["a.parquet", "a.PQ"] {
            let m = parse_file(Path::new(name), csv.as_bytes(), &IngestOptions::default())
                .unwrap_err()
                .to_string();
            assert!(m.starts_with(&format!("{name}: not a Parquet file")), "{m}");
        }
    }

    fn shared_data() -> Option<std::path::PathBuf> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
        if dir.is_dir() {
            Some(dir)
        } else {
            eprintln!("note: {} not found, skipping real-data test", dir.display());
            None
        }
    }

    fn load(path: &Path) -> Bars {
        let bytes = std::fs::read(path).unwrap();
        parse_csv(path, &bytes).unwrap()
    }

    #[test]
    fn real_daily_files_load() {
        let Some(dir) = shared_data() else { return };
        let mut count = 0;
        for entry in std::fs::read_dir(dir.join("daily")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "csv") {
                let b = load(&path);
                validate(&b).unwrap();
                assert!(b.timestamps.len() > 2000, "{}", path.display());
                count += 1;
            }
        }
        assert!(count >= 5);
        let orcl = load(&dir.join("daily/ORCL.csv"));
        assert_eq!(orcl.timestamps.len(), 5036);
        assert_eq!(orcl.timestamps[0], ts("1995-01-03 00:00:00"));
        assert!((orcl.close[0] - 1.883304).abs() < 1e-12);
        // open scaled by adj/close of the row: 2.179012 * 1.883304 / 2.117284.
        assert!((orcl.open[0] - 2.179012 * 1.883304 / 2.117284).abs() < 1e-12);
        let aapl = load(&dir.join("daily/AAPL.csv"));
        assert_eq!(aapl.timestamps.len(), 2768);
        assert_eq!(aapl.close[0], 19.608213424682617);
    }

    #[test]
    fn real_intraday_file_loads() {
        let Some(dir) = shared_data() else { return };
        let b = load(&dir.join("intraday/IDX-5min-2006.csv"));
        assert_eq!(b.timestamps.len(), 2142);
        assert_eq!(b.timestamps[0], ts("2006-01-02 09:05:00"));
        assert_eq!(b.timestamps[1] - b.timestamps[0], 300);
        let mut diffs: Vec<i64> = b.timestamps.windows(2).map(|w| w[1] - w[0]).collect();
        diffs.sort_unstable();
        assert_eq!(diffs[diffs.len() / 2], 300);
        assert!(b.volume.iter().all(|&v| v == 0.0));
    }
}
