//! The row pipeline every format shares: checked rows (from the CSV or the Parquet
//! reader) are put in time order ([`validate_rows`]), bad rows become errors or dropped
//! rows per [`BadRows`], and the date window is applied ([`finish_one`]).

use std::path::Path;

use super::DataError;
use super::error::ColumnPrefix;
use super::format::{ColumnMap, FileFormat};
use super::rows::{Row, fmt_ts};
use crate::data::Bars;

/// What every row-level error ends with: the two ways out.
pub(super) const DROP_HINT: &str =
    "(fix the row, or set `data.on_bad_rows: drop` to skip bad rows)";

/// What to do with rows that fail a row-level check (`data.on_bad_rows`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BadRows {
    /// Fail the ingest on the first bad row.
    #[default]
    Error,
    /// Skip bad rows, listing each in [`Ingested::dropped`].
    Drop,
}

/// How to ingest: what the `data` section says beyond the file itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IngestOptions {
    pub on_bad_rows: BadRows,
    /// Keep bars with timestamp >= start (Unix seconds).
    pub start: Option<i64>,
    /// Keep bars with timestamp < end (Unix seconds; the caller passes the day after `data.end`).
    pub end: Option<i64>,
    /// `data.columns`: roles mapped to columns by name or position.
    pub columns: ColumnMap,
    /// `data.format`: how the file spells its values (CSV).
    pub format: FileFormat,
}

impl IngestOptions {
    /// The defaults: bad rows are errors, no date window, nothing declared.
    pub const DEFAULT: IngestOptions = IngestOptions {
        on_bad_rows: BadRows::Error,
        start: None,
        end: None,
        columns: ColumnMap::NONE,
        format: FileFormat::NONE,
    };
}

/// A row skipped under [`BadRows::Drop`].
#[derive(Debug, Clone, PartialEq)]
pub struct DroppedRow {
    pub file: String,
    /// The CSV line (the header is line 1), or the Parquet data row (counting from 1).
    pub line: u64,
    /// What the error would have said after `file:line: ` (`column 'Close': close must be
    /// a finite positive price, got -1.0`), without the advice on how to skip it.
    pub message: String,
}

/// The result of an ingest: the bars and what the user should be told about them.
#[derive(Debug, Clone, PartialEq)]
pub struct Ingested {
    pub bars: Bars,
    /// Rows dropped under BadRows::Drop, each with the message it would have failed with.
    pub dropped: Vec<DroppedRow>,
    /// Things the user should know that are not errors ("rows were in descending order; sorted").
    pub notes: Vec<String>,
    /// The layouts recognised (`AAA.csv: nasdaq.com export ...`), one per file read in a
    /// layout other than plain UTF-8 comma-separated CSV with a one-line header.
    pub layouts: Vec<String>,
}

/// A row-level problem, before it becomes an error (under [`BadRows::Error`]) or a
/// [`DroppedRow`] (under [`BadRows::Drop`]).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Problem {
    /// The CSV line or the Parquet data row.
    pub at: u64,
    pub column: Option<String>,
    pub message: String,
}

/// How a file's rows are numbered in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Numbering {
    /// CSV: `file:line:`, the header on `header_line`.
    Lines { header_line: u64 },
    /// Parquet: `file: row N`, data rows counted from 1.
    Rows,
}

/// A file being ingested, as messages name it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Source {
    pub file: String,
    numbering: Numbering,
}

impl Source {
    pub(super) fn csv(path: &Path, header_line: u64) -> Source {
        Source {
            file: path.display().to_string(),
            numbering: Numbering::Lines { header_line },
        }
    }

    pub(super) fn parquet(path: &Path) -> Source {
        Source {
            file: path.display().to_string(),
            numbering: Numbering::Rows,
        }
    }

    /// "line" or "row": how this file's places are called in messages.
    pub(super) fn unit(&self) -> &'static str {
        match self.numbering {
            Numbering::Lines { .. } => "line",
            Numbering::Rows => "row",
        }
    }

    /// An error about the file as a whole (CSV: on the header line).
    pub(super) fn file_error(&self, column: Option<&str>, message: String) -> DataError {
        match self.numbering {
            Numbering::Lines { header_line } => DataError::Source {
                file: self.file.clone(),
                line: header_line,
                column: column.map(str::to_string),
                message,
            },
            Numbering::Rows => DataError::Table {
                file: self.file.clone(),
                row: None,
                column: column.map(str::to_string),
                message,
            },
        }
    }

    /// An error at one line or row.
    pub(super) fn error_at(&self, at: u64, column: Option<&str>, message: String) -> DataError {
        match self.numbering {
            Numbering::Lines { .. } => DataError::Source {
                file: self.file.clone(),
                line: at,
                column: column.map(str::to_string),
                message,
            },
            Numbering::Rows => DataError::Table {
                file: self.file.clone(),
                row: Some(at),
                column: column.map(str::to_string),
                message,
            },
        }
    }

    /// A row-level problem as the error it is under [`BadRows::Error`].
    pub(super) fn row_error(&self, p: Problem) -> DataError {
        self.error_at(
            p.at,
            p.column.as_deref(),
            format!("{} {DROP_HINT}", p.message),
        )
    }

    fn dropped(&self, p: Problem) -> DroppedRow {
        DroppedRow {
            file: self.file.clone(),
            line: p.at,
            message: format!("{}{}", ColumnPrefix(p.column.as_deref()), p.message),
        }
    }
}

/// One file's rows after every row-level check, in time order, before the date window.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Validated {
    pub source: Source,
    pub rows: Vec<Row>,
    /// Row-level problems (only under [`BadRows::Drop`]), in no particular order.
    pub problems: Vec<Problem>,
    pub notes: Vec<String>,
    /// The time column's name, for duplicates across files.
    pub time_column: String,
    /// The layout recognised, when not the plain one.
    pub layout: Option<String>,
}

/// The order phase of every format: `rows` as read (each already checked) become a
/// [`Validated`] in strictly ascending time order, or the error to report.
///
/// Ascending files (the common case) pass in one scan. A file whose rows mostly descend
/// is reversed (with a note). Then a row equal in time to an earlier one is a duplicate
/// (the first in the file wins) and a row that goes back in time is out of order; both
/// are row-level problems, unless more than one row in a hundred (and more than one) is out
/// of order, which means the file has no consistent order at all.
pub(super) fn validate_rows(
    source: Source,
    rows: Vec<Row>,
    mut problems: Vec<Problem>,
    time_column: String,
    mode: BadRows,
) -> Result<Validated, DataError> {
    if rows.is_empty() {
        let message = match problems.iter().min_by_key(|p| p.at) {
            None => match source.numbering {
                Numbering::Lines { .. } => "no data rows after the header".to_string(),
                Numbering::Rows => "the file has no data rows".to_string(),
            },
            Some(first) => format!(
                "no rows left: all {} data rows are bad and were dropped (the first, {} {}: \
                 {}{}); fix the file",
                problems.len(),
                source.unit(),
                first.at,
                ColumnPrefix(first.column.as_deref()),
                first.message
            ),
        };
        return Err(source.file_error(None, message));
    }
    let mut notes = Vec::new();
    // The common case, a file already in ascending order, checked on every core.
    if strictly_ascending(&rows) {
        return Ok(Validated {
            source,
            rows,
            problems,
            notes,
            time_column,
            layout: None,
        });
    }
    // Not strictly ascending: some pair is out of order or equal in time.
    let (mut ascending, mut descending) = (0usize, 0usize);
    for pair in rows.windows(2) {
        if let [a, b] = pair {
            match b.timestamp.cmp(&a.timestamp) {
                std::cmp::Ordering::Greater => ascending += 1,
                std::cmp::Ordering::Less => descending += 1,
                std::cmp::Ordering::Equal => {}
            }
        }
    }
    let reversed = descending > ascending;
    let mut rows = rows;
    if reversed {
        rows.reverse();
    }
    let unit = source.unit();
    let duplicate = |row: &Row, first: &Row| Problem {
        at: row.at,
        column: Some(time_column.clone()),
        message: format!(
            "duplicate timestamp {} (also on {unit} {})",
            fmt_ts(row.timestamp),
            first.at
        ),
    };
    let n = rows.len();
    let mut kept: Vec<Row> = Vec::with_capacity(n);
    let mut order_problems: Vec<Problem> = Vec::new();
    let mut out_of_order = 0usize;
    // The out-of-order row earliest in the file, and the row it contradicts.
    let mut first_out_of_order: Option<(Row, Row)> = None;
    for row in rows {
        let Some(last) = kept.last_mut() else {
            kept.push(row);
            continue;
        };
        if row.timestamp > last.timestamp {
            kept.push(row);
        } else if row.timestamp == last.timestamp {
            // Keep whichever comes first in the file.
            if row.at < last.at {
                order_problems.push(duplicate(last, &row));
                *last = row;
            } else {
                order_problems.push(duplicate(&row, last));
            }
        } else {
            let last = *last;
            match kept.binary_search_by_key(&row.timestamp, |k| k.timestamp) {
                Ok(i) => {
                    if let Some(earlier) = kept.get_mut(i) {
                        if row.at < earlier.at {
                            order_problems.push(duplicate(earlier, &row));
                            *earlier = row;
                        } else {
                            order_problems.push(duplicate(&row, earlier));
                        }
                    }
                }
                Err(_) => {
                    out_of_order += 1;
                    if first_out_of_order.is_none_or(|(r, _)| row.at < r.at) {
                        first_out_of_order = Some((row, last));
                    }
                    let direction = if reversed {
                        "descending (newest first)"
                    } else {
                        "ascending"
                    };
                    order_problems.push(Problem {
                        at: row.at,
                        column: Some(time_column.clone()),
                        message: format!(
                            "row out of time order: {} in a file otherwise {direction} \
                             (compare {unit} {}: {})",
                            fmt_ts(row.timestamp),
                            last.at,
                            fmt_ts(last.timestamp)
                        ),
                    });
                }
            }
        }
    }
    if out_of_order > (n / 100).max(1)
        && let Some((row, other)) = first_out_of_order
    {
        return Err(source.error_at(
            row.at,
            Some(&time_column),
            format!(
                "rows are in no consistent time order (neither ascending nor descending; \
                 {out_of_order} of {n} rows out of order): {} comes after {} on {unit} {}; \
                 sort the file by time, oldest first",
                fmt_ts(row.timestamp),
                fmt_ts(other.timestamp),
                other.at
            ),
        ));
    }
    // Most rows repeating a timestamp is the file's layout (intraday bars whose time of
    // day was lost), not a few bad rows: dropping them is not offered.
    let duplicates = order_problems.len() - out_of_order;
    if mode == BadRows::Error
        && duplicates >= 2
        && duplicates * 2 > n
        && let Some(first) = order_problems
            .iter()
            .filter(|p| p.message.starts_with("duplicate"))
            .min_by_key(|p| p.at)
    {
        return Err(source.error_at(
            first.at,
            first.column.as_deref(),
            format!(
                "{}; {duplicates} of {n} rows repeat an earlier timestamp, so the times of day \
                 are probably missing: read them from a `Time` column (or map one with \
                 `data.columns.time`)",
                first.message
            ),
        ));
    }
    if mode == BadRows::Error
        && let Some(first) = order_problems.iter().min_by_key(|p| p.at)
    {
        return Err(source.row_error(first.clone()));
    }
    problems.append(&mut order_problems);
    if reversed {
        notes.push(format!(
            "{}: rows were in descending time order (newest first); sorted oldest first",
            source.file
        ));
    }
    Ok(Validated {
        source,
        rows: kept,
        problems,
        notes,
        time_column,
        layout: None,
    })
}

/// Rows (or pairs of rows) per parallel task in the whole-file passes below.
const PAR_ROWS: usize = 1 << 15;

/// Whether every row's timestamp is after the previous row's.
fn strictly_ascending(rows: &[Row]) -> bool {
    use rayon::prelude::*;
    rows.par_windows(2)
        .with_min_len(PAR_ROWS)
        .all(|w| w[1].timestamp > w[0].timestamp)
}

/// Applies the date window and builds the result. `label` names the input(s) in the error
/// for an empty window.
pub(super) fn finish(
    label: &str,
    mut rows: Vec<Row>,
    dropped: Vec<DroppedRow>,
    mut notes: Vec<String>,
    layouts: Vec<String>,
    opts: &IngestOptions,
) -> Result<Ingested, DataError> {
    if opts.start.is_some() || opts.end.is_some() {
        let span = rows
            .first()
            .zip(rows.last())
            .map(|(a, b)| (a.timestamp, b.timestamp));
        let start = opts.start.unwrap_or(i64::MIN);
        let end = opts.end.unwrap_or(i64::MAX);
        rows.retain(|r| r.timestamp >= start && r.timestamp < end);
        if rows.is_empty() {
            let mut window = Vec::new();
            if let Some(s) = opts.start {
                window.push(format!("from {}", fmt_ts(s)));
            }
            if let Some(e) = opts.end {
                window.push(format!("before {}", fmt_ts(e)));
            }
            let had = span.map_or(String::new(), |(a, b)| {
                format!(" (the data runs from {} to {})", fmt_ts(a), fmt_ts(b))
            });
            return Err(DataError::Table {
                file: label.to_string(),
                row: None,
                column: None,
                message: format!(
                    "no bars {} (data.start / data.end){had}; widen the date range",
                    window.join(" and ")
                ),
            });
        }
    }
    notes.extend(split_note(label, &rows));
    Ok(Ingested {
        bars: columns(&rows),
        dropped,
        notes,
        layouts,
    })
}

/// A close-to-close move larger than this between consecutive bars (|log return| > ln 3:
/// a tripling, or a fall to a third) is almost always a split the prices were not adjusted
/// for, not a market move.
pub(super) const SPLIT_JUMP: f64 = 3.0;

/// The rows as columns, filled on every core, each task its stretch of all six. The
/// columns are written once, without zeroing first (reused memory would be cleared on one
/// core).
fn columns(rows: &[Row]) -> Bars {
    use rayon::prelude::*;
    let n = rows.len();
    let mut bars = Bars {
        timestamps: Vec::with_capacity(n),
        open: Vec::with_capacity(n),
        high: Vec::with_capacity(n),
        low: Vec::with_capacity(n),
        close: Vec::with_capacity(n),
        volume: Vec::with_capacity(n),
    };
    let prices = (
        bars.open.spare_capacity_mut()[..n].par_chunks_mut(PAR_ROWS),
        bars.high.spare_capacity_mut()[..n].par_chunks_mut(PAR_ROWS),
        bars.low.spare_capacity_mut()[..n].par_chunks_mut(PAR_ROWS),
        bars.close.spare_capacity_mut()[..n].par_chunks_mut(PAR_ROWS),
        bars.volume.spare_capacity_mut()[..n].par_chunks_mut(PAR_ROWS),
    );
    (
        rows.par_chunks(PAR_ROWS),
        bars.timestamps.spare_capacity_mut()[..n].par_chunks_mut(PAR_ROWS),
        prices.into_par_iter(),
    )
        .into_par_iter()
        .for_each(|(rows, t, (o, h, l, c, v))| {
            for (i, r) in rows.iter().enumerate() {
                t[i].write(r.timestamp);
                o[i].write(r.open);
                h[i].write(r.high);
                l[i].write(r.low);
                c[i].write(r.close);
                v[i].write(r.volume);
            }
        });
    // SAFETY: the chunks of `rows` and of each column's first `n` slots pair up one to
    // one (same length, same chunk size), and every row writes its slot in all six.
    unsafe {
        bars.timestamps.set_len(n);
        bars.open.set_len(n);
        bars.high.set_len(n);
        bars.low.set_len(n);
        bars.close.set_len(n);
        bars.volume.set_len(n);
    }
    bars
}

/// Whether the close moves by more than [`SPLIT_JUMP`] from `a` to `b`. Ratios well inside
/// the bounds skip the logarithm (its outcome there is certain); the rest take it, so the
/// answer is the logarithm's to the last bit.
fn jump(a: &Row, b: &Row, limit: f64) -> bool {
    let ratio = b.close / a.close;
    if ratio > 0.5 && ratio < 2.0 {
        return false;
    }
    libm::log(ratio).abs() > limit
}

/// The warning for unadjusted splits: the first jump (file and line) and how many there are.
fn split_note(label: &str, rows: &[Row]) -> Option<String> {
    use rayon::prelude::*;
    let limit = libm::log(SPLIT_JUMP);
    let is_jump = |w: &[Row]| jump(&w[0], &w[1], limit);
    let first = rows
        .par_windows(2)
        .with_min_len(PAR_ROWS)
        .position_first(is_jump)?;
    let more = rows
        .get(first + 1..)
        .unwrap_or_default()
        .par_windows(2)
        .with_min_len(PAR_ROWS)
        .filter(|w| is_jump(w))
        .count();
    let (a, b) = (rows[first], rows[first + 1]);
    Some(format!(
        "{label}:{}: the close goes from {:?} to {:?} ({} to {}, a {:.2}x move){}: an \
         unadjusted split? Read split-adjusted prices (an `Adj Close` column, or \
         `data.columns.adj_close`), or the model learns the split as a return",
        b.at,
        a.close,
        b.close,
        fmt_ts(a.timestamp),
        fmt_ts(b.timestamp),
        b.close / a.close,
        if more == 0 {
            String::new()
        } else {
            format!(
                " and {more} more such move{}",
                if more == 1 { "" } else { "s" }
            )
        }
    ))
}

/// The problems of a file as dropped rows, in file order.
pub(super) fn dropped_rows(source: &Source, mut problems: Vec<Problem>) -> Vec<DroppedRow> {
    problems.sort_by_key(|p| p.at);
    problems.into_iter().map(|p| source.dropped(p)).collect()
}

/// One file's [`Validated`] through the date window.
pub(super) fn finish_one(v: Validated, opts: &IngestOptions) -> Result<Ingested, DataError> {
    let dropped = dropped_rows(&v.source, v.problems);
    let layouts = v
        .layout
        .iter()
        .map(|l| format!("{}: {l}", v.source.file))
        .collect();
    finish(&v.source.file, v.rows, dropped, v.notes, layouts, opts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::ingest::testutil::*;
    #[allow(unused_imports)]
    use crate::data::ingest::*;

    #[test]
    fn drop_mode_skips_and_lists_every_bad_row() {
        let text = format!(
            "{HEAD}2020-01-01,10,11,9,10,5\n\
             2020-01-02,10,12,9,-1,5\n\
             2020-01-03,10,11\n\
             2020-01-04,10,11,9,10,5\n\
             2020-01-04,10,11,9,10,6\n\
             2020-01-05,10,10.5,9,11,5\n\
             2020-01-06,nan,11,9,10,5\n\
             bad-date,10,11,9,10,5\n\
             2020-01-07,10,11,9,10,\n\
             2020-01-08,10,11,9,10,7\n"
        );
        assert!(with(&text, &IngestOptions::default()).is_err());
        let got = with(&text, &DROP).unwrap();
        assert_eq!(
            got.bars.timestamps,
            vec![
                ts("2020-01-01 00:00:00"),
                ts("2020-01-04 00:00:00"),
                ts("2020-01-08 00:00:00")
            ]
        );
        // The first of two rows with one timestamp wins.
        assert_eq!(got.bars.volume, vec![5.0, 5.0, 7.0]);
        let lines: Vec<u64> = got.dropped.iter().map(|d| d.line).collect();
        assert_eq!(lines, vec![3, 4, 6, 7, 8, 9, 10]);
        assert!(got.dropped.iter().all(|d| d.file == "data/TEST.csv"));
        let messages: Vec<&str> = got.dropped.iter().map(|d| d.message.as_str()).collect();
        assert!(
            messages[0].starts_with("column 'Close': close must be"),
            "{messages:?}"
        );
        assert_eq!(messages[1], "row has 3 fields but the header has 6");
        assert_eq!(
            messages[2],
            "column 'Date': duplicate timestamp 2020-01-04 00:00:00 (also on line 5)"
        );
        assert!(
            messages[3].starts_with("column 'High': high 10.5"),
            "{messages:?}"
        );
        assert!(messages[5].starts_with("column 'Date': cannot parse 'bad-date'"));
        assert_eq!(messages[6], "column 'Volume': empty value");
        assert!(messages.iter().all(|m| !m.contains("on_bad_rows")));
        assert!(got.notes.is_empty());
    }

    #[test]
    fn a_file_with_every_row_bad_is_an_error_in_both_modes() {
        let text = format!("{HEAD}2020-01-01,10,11,9,-10,5\n2020-01-02,0,11,9,10,5\n");
        let m = with(&text, &DROP).unwrap_err().to_string();
        assert!(
            m.starts_with("data/TEST.csv:1: no rows left: all 2 data rows are bad"),
            "{m}"
        );
        assert!(m.contains("line 2: column 'Close'"), "{m}");
    }

    #[test]
    fn descending_files_are_sorted_with_a_note() {
        let text = format!(
            "{HEAD}2020-01-03,10,11,9,10,3\n2020-01-02,10,11,9,10,2\n2020-01-01,10,11,9,10,1\n"
        );
        let got = with(&text, &IngestOptions::default()).unwrap();
        assert_eq!(got.bars.volume, vec![1.0, 2.0, 3.0]);
        assert_eq!(
            got.notes,
            vec![
                "data/TEST.csv: rows were in descending time order (newest first); sorted oldest first"
                    .to_string()
            ]
        );
        // A duplicate in a descending file names the later line, the earlier one wins.
        let text = format!(
            "{HEAD}2020-01-03,10,11,9,10,3\n2020-01-02,10,11,9,10,2\n2020-01-02,10,11,9,10,9\n2020-01-01,10,11,9,10,1\n"
        );
        let m = message(&text);
        assert!(
            m.starts_with("data/TEST.csv:4: column 'Date': duplicate timestamp 2020-01-02 00:00:00 (also on line 3)"),
            "{m}"
        );
        let got = with(&text, &DROP).unwrap();
        assert_eq!(got.bars.volume, vec![1.0, 2.0, 3.0]);
        assert_eq!(got.dropped.len(), 1);
        assert_eq!(got.dropped[0].line, 4);
    }

    #[test]
    fn one_row_out_of_order_is_a_row_level_problem() {
        let mut text = HEAD.to_string();
        for day in [1, 2, 4, 3, 5, 6, 7] {
            text.push_str(&format!("2020-01-{day:02},10,11,9,10,{day}\n"));
        }
        let m = message(&text);
        assert!(
            m.starts_with("data/TEST.csv:5: column 'Date': row out of time order: 2020-01-03 00:00:00 in a file otherwise ascending (compare line 4: 2020-01-04 00:00:00)"),
            "{m}"
        );
        assert!(m.ends_with(DROP_HINT), "{m}");
        let got = with(&text, &DROP).unwrap();
        assert_eq!(got.bars.volume, vec![1.0, 2.0, 4.0, 5.0, 6.0, 7.0]);
        assert_eq!(got.dropped.len(), 1);
        assert_eq!(got.dropped[0].line, 5);
    }

    #[test]
    fn rows_in_no_consistent_order_are_an_error_in_both_modes() {
        let mut text = HEAD.to_string();
        for day in [5, 1, 9, 3, 7, 2, 8, 4, 6] {
            text.push_str(&format!("2020-01-{day:02},10,11,9,10,{day}\n"));
        }
        for opts in [IngestOptions::default(), DROP] {
            let m = with(&text, &opts).unwrap_err().to_string();
            assert!(
                m.starts_with(
                    "data/TEST.csv:3: column 'Date': rows are in no consistent time order"
                ),
                "{m}"
            );
            assert!(m.contains("sort the file by time"), "{m}");
            assert!(!m.contains("on_bad_rows"), "{m}");
        }
    }

    #[test]
    fn start_and_end_filter_after_validation() {
        let text = format!(
            "{HEAD}2020-01-01,10,11,9,10,1\n2020-01-02,10,11,9,10,2\n2020-01-03,10,11,9,10,3\n2020-01-04,10,11,9,-10,4\n"
        );
        let window = IngestOptions {
            on_bad_rows: BadRows::Error,
            start: Some(ts("2020-01-02 00:00:00")),
            end: Some(ts("2020-01-03 00:00:00")),
            ..IngestOptions::DEFAULT
        };
        // The bad row outside the window still fails the ingest.
        let m = with(&text, &window).unwrap_err().to_string();
        assert!(m.starts_with("data/TEST.csv:5: column 'Close'"), "{m}");
        let window = IngestOptions {
            on_bad_rows: BadRows::Drop,
            ..window
        };
        let got = with(&text, &window).unwrap();
        assert_eq!(got.bars.volume, vec![2.0]);
        assert_eq!(got.dropped.len(), 1);
        let only_start = IngestOptions {
            start: Some(ts("2020-01-02 00:00:00")),
            ..DROP
        };
        assert_eq!(
            with(&text, &only_start).unwrap().bars.volume,
            vec![2.0, 3.0]
        );
        let empty = IngestOptions {
            start: Some(ts("2021-01-01 00:00:00")),
            end: Some(ts("2022-01-01 00:00:00")),
            ..DROP
        };
        let m = with(&text, &empty).unwrap_err().to_string();
        assert_eq!(
            m,
            "data/TEST.csv: no bars from 2021-01-01 00:00:00 and before 2022-01-01 00:00:00 \
             (data.start / data.end) (the data runs from 2020-01-01 00:00:00 to 2020-01-03 \
             00:00:00); widen the date range"
        );
    }

    #[test]
    fn timestamps_repeated_by_most_rows_are_the_layout_not_bad_rows() {
        let mut text = HEAD.to_string();
        for day in 1..=4 {
            for bar in 0..5 {
                text.push_str(&format!("2020-01-{day:02},10,11,9,10,{bar}\n"));
            }
        }
        let m = message(&text);
        assert!(
            m.starts_with("data/TEST.csv:3: column 'Date': duplicate timestamp"),
            "{m}"
        );
        assert!(
            m.contains("16 of 20 rows repeat") && m.contains("Time"),
            "{m}"
        );
        assert!(!m.contains("on_bad_rows"), "{m}");
    }

    #[test]
    fn real_world_shapes_keep_working() {
        let text = "\u{feff}Date,Open,High,Low,Close,Volume\r\n01/02/2020,10,11,9,10,5\r\n01/03/2020,10,11,9,10,6\r\n\r\n\r\n  \r\n";
        let got = with(text, &IngestOptions::default()).unwrap();
        assert_eq!(got.bars.volume, vec![5.0, 6.0]);
        assert!(got.dropped.is_empty() && got.notes.is_empty());
    }
}
