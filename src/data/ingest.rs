//! The `ingest` stage: CSV or Parquet bytes -> validated [`Bars`].
//!
//! Accepted layouts (column names are matched after lowercasing and dropping everything that
//! is not a letter or digit, so `Adj Close`, `adj_close` and `<CLOSE>` all work; Parquet
//! files use the same names, see [`super::parquet`]):
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

use std::fmt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime};

use super::Bars;

/// Relative slack for `high >= max(open, close)` and `low <= min(open, close)`: exporters that
/// round each column separately produce violations around 1e-15; real errors are far larger.
pub const OHLC_TOLERANCE: f64 = 1e-9;

/// Unix seconds outside 1900..2200 are almost certainly milliseconds or garbage.
pub(super) const MIN_UNIX: i64 = -2_208_988_800;
pub(super) const MAX_UNIX: i64 = 7_258_118_400;

/// What every row-level error ends with: the two ways out.
const DROP_HINT: &str = "(fix the row, or set `data.on_bad_rows: drop` to skip bad rows)";

/// Everything that can go wrong in the data layer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DataError {
    /// A problem at a specific place in a source file.
    #[error("{file}:{line}: {}{message}", ColumnPrefix(.column.as_deref()))]
    Source {
        file: String,
        /// 1-based line in the file; the header is line 1.
        line: u64,
        /// The column as written in the file's header, when one is to blame.
        column: Option<String>,
        message: String,
    },
    /// A problem in a file whose rows have no lines (Parquet), or in a file as a whole.
    #[error("{file}: {}{}{message}", RowPrefix(.row.as_ref()), ColumnPrefix(.column.as_deref()))]
    Table {
        file: String,
        /// 1-based data row (the first row of the first row group is row 1), when one row
        /// is to blame.
        row: Option<u64>,
        /// The column as named in the file, when one is to blame.
        column: Option<String>,
        message: String,
    },
    /// In-memory bars that break an invariant (synthetic data, decoded blobs).
    #[error("bars: row {index}: {}{message}", ColumnPrefix(.column.as_deref()))]
    Bars {
        index: usize,
        column: Option<String>,
        message: String,
    },
    /// The feature stage cannot produce a table.
    #[error("features for '{symbol}': {message}")]
    Features { symbol: String, message: String },
    /// The dataset stage cannot produce a dataset.
    #[error("dataset: {0}")]
    Dataset(String),
}

struct ColumnPrefix<'a>(Option<&'a str>);

impl fmt::Display for ColumnPrefix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(c) => write!(f, "column '{c}': "),
            None => Ok(()),
        }
    }
}

struct RowPrefix<'a>(Option<&'a u64>);

impl fmt::Display for RowPrefix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(r) => write!(f, "row {r} (counting data rows from 1): "),
            None => Ok(()),
        }
    }
}

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
}

/// The bar columns whose values [`check_row`] and [`make_row`] validate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Field {
    Open,
    High,
    Low,
    Close,
    AdjClose,
    Volume,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::Open => "open",
            Field::High => "high",
            Field::Low => "low",
            Field::Close => "close",
            Field::AdjClose => "adjusted close",
            Field::Volume => "volume",
        }
    }
}

/// The per-row rules shared by ingest and [`validate`]: finite positive prices, OHLC
/// consistency (within [`OHLC_TOLERANCE`]), finite non-negative volume.
fn check_row(o: f64, h: f64, l: f64, c: f64, v: f64) -> Result<(), (Field, String)> {
    for (field, x) in [
        (Field::Open, o),
        (Field::High, h),
        (Field::Low, l),
        (Field::Close, c),
    ] {
        if !x.is_finite() || x <= 0.0 {
            return Err((
                field,
                format!(
                    "{} must be a finite positive price, got {x:?}",
                    field.name()
                ),
            ));
        }
    }
    let top = o.max(c);
    if h < top * (1.0 - OHLC_TOLERANCE) {
        return Err((
            Field::High,
            format!("high {h:?} is below max(open, close) = {top:?}"),
        ));
    }
    let bottom = o.min(c);
    if l > bottom * (1.0 + OHLC_TOLERANCE) {
        return Err((
            Field::Low,
            format!("low {l:?} is above min(open, close) = {bottom:?}"),
        ));
    }
    if !v.is_finite() {
        return Err((Field::Volume, format!("volume {v:?} is not finite")));
    }
    if v < 0.0 {
        return Err((Field::Volume, format!("volume {v:?} is negative")));
    }
    Ok(())
}

/// Checks the invariants every [`Bars`] value must satisfy: equal column lengths, at least one
/// row, strictly increasing timestamps, and the per-row price/volume rules of ingest.
pub fn validate(bars: &Bars) -> Result<(), DataError> {
    let n = bars.timestamps.len();
    for (name, len) in [
        ("open", bars.open.len()),
        ("high", bars.high.len()),
        ("low", bars.low.len()),
        ("close", bars.close.len()),
        ("volume", bars.volume.len()),
    ] {
        if len != n {
            return Err(DataError::Bars {
                index: 0,
                column: Some(name.to_string()),
                message: format!("{len} values but {n} timestamps"),
            });
        }
    }
    if n == 0 {
        return Err(DataError::Bars {
            index: 0,
            column: None,
            message: "no bars".to_string(),
        });
    }
    let rows = bars
        .open
        .iter()
        .zip(&bars.high)
        .zip(&bars.low)
        .zip(&bars.close)
        .zip(&bars.volume);
    for (index, ((((&o, &h), &l), &c), &v)) in rows.enumerate() {
        check_row(o, h, l, c, v).map_err(|(field, message)| DataError::Bars {
            index,
            column: Some(field.name().to_string()),
            message,
        })?;
    }
    for (index, pair) in bars.timestamps.windows(2).enumerate() {
        if let [a, b] = pair
            && b <= a
        {
            return Err(DataError::Bars {
                index: index + 1,
                column: Some("timestamp".to_string()),
                message: format!(
                    "timestamp {} is not after the previous one ({})",
                    fmt_ts(*b),
                    fmt_ts(*a)
                ),
            });
        }
    }
    Ok(())
}

/// A timestamp for messages: `2020-01-31 09:30:00`, or the raw number when out of range.
pub(crate) fn fmt_ts(ts: i64) -> String {
    match DateTime::from_timestamp(ts, 0) {
        Some(dt) => dt.format("%Y-%m-%d %H:%M:%S").to_string(),
        None => ts.to_string(),
    }
}

/// Header names reduced to what identifies them: lowercase letters and digits only.
fn normalise(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// The role of a header column, after [`normalise`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    DateTime,
    Date,
    Time,
    Open,
    High,
    Low,
    Close,
    AdjClose,
    Volume,
}

fn role(normalised: &str) -> Option<Role> {
    Some(match normalised {
        "datetime" | "timestamp" => Role::DateTime,
        "date" => Role::Date,
        "time" => Role::Time,
        "open" => Role::Open,
        "high" => Role::High,
        "low" => Role::Low,
        "close" => Role::Close,
        "adjclose" | "adjustedclose" => Role::AdjClose,
        "volume" | "vol" => Role::Volume,
        _ => return None,
    })
}

/// How a row's timestamp is assembled from its columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TimeSource {
    /// One column holding a full date-time or (when `allow_unix`) Unix seconds.
    Single { col: usize, allow_unix: bool },
    /// A date column plus a time-of-day column.
    DateAndTime { date: usize, time: usize },
}

/// Where the bar columns are, as indexes into the header (CSV) or the schema (Parquet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Layout {
    pub time: TimeSource,
    pub open: usize,
    pub high: usize,
    pub low: usize,
    pub close: usize,
    pub adj: Option<usize>,
    pub volume: Option<usize>,
}

impl Layout {
    /// Finds each role among the column names. The error names the column to blame (as
    /// written, or the role's name when it is missing) and what is wrong.
    pub(super) fn from_names(names: &[String]) -> Result<Layout, (String, String)> {
        let name_of = |i: usize| names.get(i).map_or("?", String::as_str);
        let mut found: Vec<(Role, usize)> = Vec::new();
        let get =
            |found: &[(Role, usize)], r: Role| found.iter().find(|(x, _)| *x == r).map(|&(_, i)| i);
        for (i, name) in names.iter().enumerate() {
            let Some(r) = role(&normalise(name)) else {
                continue;
            };
            if let Some(prev) = get(&found, r) {
                return Err((
                    name.clone(),
                    format!(
                        "column appears twice (columns {} '{}' and {} '{}' mean the same); \
                         rename or remove one",
                        prev + 1,
                        name_of(prev),
                        i + 1,
                        name
                    ),
                ));
            }
            found.push((r, i));
        }
        let found_list = || {
            names
                .iter()
                .map(|n| format!("'{n}'"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let time = match (
            get(&found, Role::DateTime),
            get(&found, Role::Date),
            get(&found, Role::Time),
        ) {
            (Some(col), _, _) => TimeSource::Single {
                col,
                allow_unix: true,
            },
            (None, Some(date), Some(time)) => TimeSource::DateAndTime { date, time },
            (None, Some(col), None) => TimeSource::Single {
                col,
                allow_unix: false,
            },
            (None, None, Some(col)) => TimeSource::Single {
                col,
                allow_unix: true,
            },
            (None, None, None) => {
                return Err((
                    "date".to_string(),
                    format!(
                        "missing required column (a date, datetime or timestamp column); \
                         found {}",
                        found_list()
                    ),
                ));
            }
        };
        let mut required = [0usize; 4];
        for (slot, (r, label)) in required.iter_mut().zip([
            (Role::Open, "open"),
            (Role::High, "high"),
            (Role::Low, "low"),
            (Role::Close, "close"),
        ]) {
            *slot = get(&found, r).ok_or_else(|| {
                (
                    label.to_string(),
                    format!("missing required column; found {}", found_list()),
                )
            })?;
        }
        let [open, high, low, close] = required;
        Ok(Layout {
            time,
            open,
            high,
            low,
            close,
            adj: get(&found, Role::AdjClose),
            volume: get(&found, Role::Volume),
        })
    }

    /// The column a [`Field`] is read from (volume falls back to close: it never fails when
    /// there is no volume column, since it is then 0).
    pub(super) fn column(&self, field: Field) -> usize {
        match field {
            Field::Open => self.open,
            Field::High => self.high,
            Field::Low => self.low,
            Field::Close => self.close,
            Field::AdjClose => self.adj.unwrap_or(self.close),
            Field::Volume => self.volume.unwrap_or(self.close),
        }
    }

    /// The column duplicate and ordering problems are blamed on.
    pub(super) fn time_column(&self) -> usize {
        match self.time {
            TimeSource::Single { col, .. } | TimeSource::DateAndTime { date: col, .. } => col,
        }
    }

    /// Every column the layout reads, ascending.
    pub(super) fn columns(&self) -> Vec<usize> {
        let mut out = vec![self.open, self.high, self.low, self.close];
        match self.time {
            TimeSource::Single { col, .. } => out.push(col),
            TimeSource::DateAndTime { date, time } => out.extend([date, time]),
        }
        out.extend(self.adj);
        out.extend(self.volume);
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// One validated row: prices already adjusted and clamped, not yet in time order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Row {
    /// The CSV line or the Parquet data row, for messages.
    pub at: u64,
    pub timestamp: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
}

/// A row's values as read, before the checks and the adjusted close.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct RawBar {
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub adj: Option<f64>,
    pub volume: f64,
}

/// The row checks of every format: [`check_row`], then the adjusted close (which replaces
/// the close and scales O/H/L to match), then the clamp of tolerance-level OHLC violations.
pub(super) fn make_row(at: u64, timestamp: i64, raw: RawBar) -> Result<Row, (Field, String)> {
    check_row(raw.open, raw.high, raw.low, raw.close, raw.volume)?;
    let (mut o, mut h, mut l, mut c) = (raw.open, raw.high, raw.low, raw.close);
    if let Some(adj) = raw.adj {
        if !adj.is_finite() || adj <= 0.0 {
            return Err((
                Field::AdjClose,
                format!("adjusted close must be a finite positive price, got {adj:?}"),
            ));
        }
        let factor = adj / c;
        o *= factor;
        h *= factor;
        l *= factor;
        c = adj;
        // An adjustment factor far outside any real split or dividend can overflow (or
        // flush to zero) the scaled prices.
        if let Some(bad) = [o, h, l].into_iter().find(|x| !x.is_finite() || *x <= 0.0) {
            return Err((
                Field::AdjClose,
                format!(
                    "adjusted close {adj:?} against close {:?} scales the prices to {bad:?}; \
                     check the adjusted close column",
                    raw.close
                ),
            ));
        }
    }
    // Clamp tolerance-level violations (and the rounding of the adjustment) so
    // high >= max(open, close) and low <= min(open, close) hold exactly downstream.
    h = h.max(o).max(c);
    l = l.min(o).min(c);
    Ok(Row {
        at,
        timestamp,
        open: o,
        high: h,
        low: l,
        close: c,
        volume: raw.volume,
    })
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
    fn csv(path: &Path, header_line: u64) -> Source {
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
    let (mut ascending, mut descending, mut equal) = (0usize, 0usize, 0usize);
    for pair in rows.windows(2) {
        if let [a, b] = pair {
            match b.timestamp.cmp(&a.timestamp) {
                std::cmp::Ordering::Greater => ascending += 1,
                std::cmp::Ordering::Less => descending += 1,
                std::cmp::Ordering::Equal => equal += 1,
            }
        }
    }
    let mut notes = Vec::new();
    if descending == 0 && equal == 0 {
        return Ok(Validated {
            source,
            rows,
            problems,
            notes,
            time_column,
        });
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
    })
}

/// Applies the date window and builds the result. `label` names the input(s) in the error
/// for an empty window.
fn finish(
    label: &str,
    mut rows: Vec<Row>,
    dropped: Vec<DroppedRow>,
    notes: Vec<String>,
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
    let n = rows.len();
    let mut bars = Bars {
        timestamps: Vec::with_capacity(n),
        open: Vec::with_capacity(n),
        high: Vec::with_capacity(n),
        low: Vec::with_capacity(n),
        close: Vec::with_capacity(n),
        volume: Vec::with_capacity(n),
    };
    for r in rows {
        bars.timestamps.push(r.timestamp);
        bars.open.push(r.open);
        bars.high.push(r.high);
        bars.low.push(r.low);
        bars.close.push(r.close);
        bars.volume.push(r.volume);
    }
    Ok(Ingested {
        bars,
        dropped,
        notes,
    })
}

/// The problems of a file as dropped rows, in file order.
fn dropped_rows(source: &Source, mut problems: Vec<Problem>) -> Vec<DroppedRow> {
    problems.sort_by_key(|p| p.at);
    problems.into_iter().map(|p| source.dropped(p)).collect()
}

/// One file's [`Validated`] through the date window.
pub(super) fn finish_one(v: Validated, opts: &IngestOptions) -> Result<Ingested, DataError> {
    let dropped = dropped_rows(&v.source, v.problems);
    finish(&v.source.file, v.rows, dropped, v.notes, opts)
}

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
    finish_one(
        validate_csv(path_for_messages, bytes, opts.on_bad_rows)?,
        opts,
    )
}

/// Reads a data file of bars, CSV or Parquet: Parquet when the bytes start and end with
/// the Parquet magic `PAR1`, or else when the name ends in `.parquet` or `.pq`; CSV
/// otherwise (`.csv`, `.txt`, anything else).
pub fn parse_file(
    path_for_messages: &Path,
    bytes: &[u8],
    opts: &IngestOptions,
) -> Result<Ingested, DataError> {
    finish_one(
        validate_file(path_for_messages, bytes, opts.on_bad_rows)?,
        opts,
    )
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

fn validate_file(path: &Path, bytes: &[u8], mode: BadRows) -> Result<Validated, DataError> {
    if is_parquet(path, bytes) {
        super::parquet::validate_parquet(path, bytes, mode)
    } else {
        validate_csv(path, bytes, mode)
    }
}

/// Several files of one symbol (e.g. train/AAPL.csv then test/AAPL.csv): each parsed, then
/// concatenated in time order; a timestamp present in two files is an error naming both files
/// and lines (dropped, first file wins, under Drop). The date window applies to the whole.
pub fn parse_files(
    files: &[(PathBuf, Vec<u8>)],
    opts: &IngestOptions,
) -> Result<Ingested, DataError> {
    use rayon::prelude::*;
    let mode = opts.on_bad_rows;
    // Every file in parallel; the first error in the given order is the one reported.
    let results: Vec<Result<Validated, DataError>> = files
        .par_iter()
        .map(|(path, bytes)| validate_file(path, bytes, mode))
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
    for v in validated {
        dropped.extend(dropped_rows(&v.source, v.problems));
        notes.extend(v.notes);
    }
    finish(&label, rows, dropped, notes, opts)
}

/// The reader every CSV path uses: no header handling (ours), rows of any width (reported
/// by us with their line). Fields are trimmed where they are read ([`field`]): the csv
/// crate's own trimming builds a new record, two allocations per row.
fn csv_reader(bytes: &[u8]) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes)
}

/// Field `col` of `record` without surrounding ASCII whitespace (what `csv::Trim::All`
/// removes); empty when the record is shorter.
fn field(record: &csv::ByteRecord, col: usize) -> &[u8] {
    record.get(col).unwrap_or_default().trim_ascii()
}

/// The row checks and the order phase of a CSV file.
fn validate_csv(path: &Path, bytes: &[u8], mode: BadRows) -> Result<Validated, DataError> {
    let file = path.display().to_string();
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = csv_reader(bytes);
    // One record buffer, reused for every row (what `byte_records()` would allocate anew).
    let mut header = csv::ByteRecord::new();
    match reader.read_byte_record(&mut header) {
        Ok(false) => {
            return Err(Source::csv(path, 1).file_error(
                None,
                "the file is empty (no header row); a data file starts with a header such \
                 as Date,Open,High,Low,Close,Volume"
                    .into(),
            ));
        }
        Err(e) => return Err(csv_error(&file, &e)),
        Ok(true) => {}
    }
    let source = Source::csv(path, header.position().map_or(1, |p| p.line()));
    let names: Vec<String> = header
        .iter()
        .map(|f| String::from_utf8_lossy(f.trim_ascii()).into_owned())
        .collect();
    let layout = Layout::from_names(&names)
        .map_err(|(column, message)| source.file_error(Some(&column), message))?;

    // Where the data rows start; the reader may point at the `\n` of a CRLF.
    let data_start = (reader.position().byte() as usize).min(bytes.len());
    let data = bytes.get(data_start..).unwrap_or_default();
    let rows = CsvRows {
        bytes,
        width: header.len(),
        layout: &layout,
        names: &names,
        mode,
    };
    // Large files are parsed in chunks of whole lines in parallel. A quote could hide a
    // line break inside a field, so a file with any quote is read in one pass.
    let parsed = if data.len() >= 2 * PARALLEL_CSV_CHUNK && memchr::memchr(b'"', data).is_none() {
        rows.parallel(data_start)
    } else {
        None
    };
    let (rows, problems) = match parsed {
        Some(parsed) => parsed,
        None => match rows.parse(&mut reader, 0, LineCounter::new(bytes)) {
            Ok(parsed) => parsed,
            Err(RowsError::Row(p)) => return Err(source.row_error(p)),
            Err(RowsError::Csv(e)) => return Err(csv_error(&file, &e)),
        },
    };
    let time_column = names
        .get(layout.time_column())
        .map_or("?", String::as_str)
        .to_string();
    validate_rows(source, rows, problems, time_column, mode)
}

/// Bytes of CSV data rows per task when a large file is parsed in parallel. Tiny in unit
/// tests, so that every test file of a few lines goes through the parallel path too.
#[cfg(not(test))]
const PARALLEL_CSV_CHUNK: usize = 4 << 20;
#[cfg(test)]
const PARALLEL_CSV_CHUNK: usize = 64;

/// Rows in file order, and the row-level problems (under [`BadRows::Drop`]).
type ParsedRows = (Vec<Row>, Vec<Problem>);

/// Why parsing CSV rows stopped.
enum RowsError {
    /// The first bad row, under [`BadRows::Error`].
    Row(Problem),
    /// The csv reader itself failed.
    Csv(csv::Error),
}

/// What parsing a file's data rows needs.
struct CsvRows<'a> {
    /// The whole file (after a BOM), which line numbers count in.
    bytes: &'a [u8],
    /// Fields in the header.
    width: usize,
    layout: &'a Layout,
    names: &'a [String],
    mode: BadRows,
}

impl CsvRows<'_> {
    /// The rows `reader` yields, in file order, and (under [`BadRows::Drop`]) the problems.
    /// Its byte offsets count from `base` in the file; `lines` is positioned at or before
    /// `base`.
    fn parse<R: std::io::Read>(
        &self,
        reader: &mut csv::Reader<R>,
        base: usize,
        mut lines: LineCounter<'_>,
    ) -> Result<ParsedRows, RowsError> {
        let name_of = |i: usize| self.names.get(i).map_or("?", String::as_str);
        let mut rows: Vec<Row> = Vec::new();
        let mut problems = Vec::new();
        let mut record = csv::ByteRecord::new();
        let mut first = true;
        loop {
            match reader.read_byte_record(&mut record) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => return Err(RowsError::Csv(e)),
            }
            if first {
                // Data rows are roughly the same length: reserve from the first one's.
                let at = base + record.position().map_or(0, |p| p.byte() as usize);
                let rest = self.bytes.get(at..).unwrap_or_default();
                let len = memchr::memchr(b'\n', rest).map_or(rest.len(), |i| i + 1);
                rows.reserve(rest.len() / len.max(16) + 1);
                first = false;
            }
            let line = record
                .position()
                .map_or(0, |p| lines.line_at(base + p.byte() as usize));
            let result = if record.len() == self.width {
                csv_row(&record, line, self.layout).map_err(|(col, message)| Problem {
                    at: line,
                    column: Some(name_of(col).to_string()),
                    message,
                })
            } else if record.len() == 1 && field(&record, 0).is_empty() {
                // A line of blanks (the reader already skips empty ones).
                continue;
            } else {
                Err(Problem {
                    at: line,
                    column: None,
                    message: format!(
                        "row has {} fields but the header has {}",
                        record.len(),
                        self.width
                    ),
                })
            };
            match result {
                Ok(row) => rows.push(row),
                Err(p) if self.mode == BadRows::Error => return Err(RowsError::Row(p)),
                Err(p) => problems.push(p),
            }
        }
        Ok((rows, problems))
    }

    /// [`CsvRows::parse`] of the data rows from `data_start` on, in chunks of whole lines
    /// in parallel, concatenated in file order: the same rows and problems, and under
    /// [`BadRows::Error`] the same first bad row. `None` if a chunk's reader failed (the
    /// caller reads the file in one pass for the message).
    fn parallel(&self, data_start: usize) -> Option<ParsedRows> {
        use rayon::prelude::*;
        // Chunk boundaries just after a `\n`.
        let mut bounds = vec![data_start];
        let mut at = data_start;
        while self.bytes.len() - at > PARALLEL_CSV_CHUNK {
            let probe = at + PARALLEL_CSV_CHUNK;
            match memchr::memchr(b'\n', self.bytes.get(probe..)?) {
                Some(i) if probe + i + 1 < self.bytes.len() => {
                    at = probe + i + 1;
                    bounds.push(at);
                }
                _ => break,
            }
        }
        bounds.push(self.bytes.len());
        // The line each chunk starts on.
        let newlines: Vec<u64> = bounds
            .par_windows(2)
            .map(|w| {
                memchr::memchr_iter(b'\n', self.bytes.get(w[0]..w[1]).unwrap_or_default()).count()
                    as u64
            })
            .collect();
        let before = memchr::memchr_iter(b'\n', self.bytes.get(..data_start)?).count() as u64;
        let start_lines: Vec<u64> = newlines
            .iter()
            .scan(before + 1, |line, n| {
                let this = *line;
                *line += n;
                Some(this)
            })
            .collect();
        let chunks: Vec<Result<ParsedRows, RowsError>> = bounds
            .par_windows(2)
            .zip(start_lines.par_iter())
            .map(|(w, &line)| {
                let chunk = self.bytes.get(w[0]..w[1]).unwrap_or_default();
                let mut reader = csv_reader(chunk);
                let lines = LineCounter {
                    bytes: self.bytes,
                    at: w[0],
                    line,
                };
                self.parse(&mut reader, w[0], lines)
            })
            .collect();
        let mut rows = Vec::with_capacity(
            chunks
                .iter()
                .map(|c| c.as_ref().map_or(0, |(r, _)| r.len()))
                .sum(),
        );
        let mut problems = Vec::new();
        for chunk in chunks {
            match chunk {
                Ok((mut r, mut p)) => {
                    rows.append(&mut r);
                    problems.append(&mut p);
                }
                // A bad row (under `BadRows::Error`) or a reader failure: the one-pass
                // read finds and reports it exactly as for a small file.
                Err(RowsError::Row(_)) | Err(RowsError::Csv(_)) => return None,
            }
        }
        Some((rows, problems))
    }
}

/// One CSV record (of the header's width) as a checked row; the error names the column
/// index to blame.
fn csv_row(record: &csv::ByteRecord, line: u64, layout: &Layout) -> Result<Row, (usize, String)> {
    let text = |col: usize| -> Result<&str, (usize, String)> {
        std::str::from_utf8(field(record, col))
            .map_err(|_| (col, "invalid UTF-8 in value".to_string()))
    };
    let number = |col: usize| -> Result<f64, (usize, String)> {
        parse_number(text(col)?).map_err(|m| (col, m))
    };
    let timestamp = match layout.time {
        TimeSource::Single { col, allow_unix } => {
            parse_datetime(text(col)?, allow_unix).map_err(|m| (col, m))?
        }
        TimeSource::DateAndTime { date, time } => {
            let d = parse_date(text(date)?).map_err(|m| (date, m))?;
            let t = parse_time(text(time)?).map_err(|m| (time, m))?;
            d.and_time(t).and_utc().timestamp()
        }
    };
    let raw = RawBar {
        open: number(layout.open)?,
        high: number(layout.high)?,
        low: number(layout.low)?,
        close: number(layout.close)?,
        adj: layout.adj.map(number).transpose()?,
        volume: match layout.volume {
            Some(c) => number(c)?,
            None => 0.0,
        },
    };
    make_row(line, timestamp, raw).map_err(|(field, m)| (layout.column(field), m))
}

/// A price or volume as written in a CSV cell.
fn parse_number(s: &str) -> Result<f64, String> {
    if s.is_empty() {
        return Err("empty value".to_string());
    }
    s.parse::<f64>().map_err(|_| {
        let advice = if s.starts_with(['$', '€', '£', '¥']) || s.ends_with(['$', '€', '£', '¥'])
        {
            ": remove the currency symbol"
        } else if s.contains(',') && s.bytes().any(|b| b.is_ascii_digit()) {
            ": remove the thousands separator (write 1234.50, not 1,234.50) and use a \
             decimal point"
        } else {
            ""
        };
        format!("cannot parse '{}' as a number{advice}", shorten(s))
    })
}

/// Physical line numbers from byte offsets. The csv crate's own line count is one short on
/// every row of a file with CRLF line endings; counting `\n` bytes gives what an editor
/// shows.
/// Rows arrive in file order, so counting on from the previous row keeps it one pass.
struct LineCounter<'a> {
    bytes: &'a [u8],
    at: usize,
    line: u64,
}

impl<'a> LineCounter<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        LineCounter {
            bytes,
            at: 0,
            line: 1,
        }
    }

    /// The 1-based line of the record starting at byte offset `byte`. After a CRLF the
    /// reader reports the record as starting at the `\n`; a record never starts with a line
    /// break, so those are skipped first.
    fn line_at(&mut self, mut byte: usize) -> u64 {
        while matches!(self.bytes.get(byte), Some(b'\r' | b'\n')) {
            byte += 1;
        }
        if byte < self.at {
            (self.at, self.line) = (0, 1);
        }
        let end = byte.min(self.bytes.len());
        let newlines = self
            .bytes
            .get(self.at..end)
            .map_or(0, |s| s.iter().filter(|&&b| b == b'\n').count());
        self.line += newlines as u64;
        self.at = end;
        self.line
    }
}

fn csv_error(file: &str, e: &csv::Error) -> DataError {
    DataError::Source {
        file: file.to_string(),
        line: e.position().map_or(0, |p| p.line()),
        column: None,
        message: e.to_string(),
    }
}

/// Long garbage values are cut in messages.
pub(super) fn shorten(s: &str) -> String {
    const MAX: usize = 40;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(MAX).collect();
        out.push_str("...");
        out
    }
}

const DATE_FORMATS: &[&str] = &["%Y-%m-%d", "%m/%d/%Y", "%Y/%m/%d"];
const DATETIME_FORMATS: &[&str] = &[
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%d %H:%M",
    "%m/%d/%Y %H:%M:%S%.f",
    "%m/%d/%Y %H:%M",
    "%Y/%m/%d %H:%M:%S%.f",
    "%Y/%m/%d %H:%M",
];

/// The value of `N` ASCII digits at `b[at..]`, if they are all digits.
fn digits<const N: usize>(b: &[u8], at: usize) -> Option<u32> {
    let d = b.get(at..at + N)?;
    d.iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

/// The common ISO date `YYYY-MM-DD` without chrono's format interpreter; `None` for anything
/// else (including invalid dates), which then takes the general path. Where it answers, it
/// answers as `NaiveDate::parse_from_str(s, "%Y-%m-%d")` does.
fn fast_iso_date(b: &[u8]) -> Option<NaiveDate> {
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, m, d) = (digits::<4>(b, 0)?, digits::<2>(b, 5)?, digits::<2>(b, 8)?);
    NaiveDate::from_ymd_opt(i32::try_from(y).ok()?, m, d)
}

/// `HH:MM:SS` without chrono's format interpreter; `None` for anything else (including a
/// leap second), which then takes the general path.
fn fast_hms(b: &[u8]) -> Option<NaiveTime> {
    if b.len() != 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    NaiveTime::from_hms_opt(digits::<2>(b, 0)?, digits::<2>(b, 3)?, digits::<2>(b, 6)?)
}

/// The common date-times `YYYY-MM-DD HH:MM:SS` and `YYYY-MM-DDTHH:MM:SS` (and a bare ISO
/// date) as Unix seconds; `None` for anything else, which then takes the general path of
/// [`parse_datetime`]. Where it answers, it answers as that path does: these strings are
/// not RFC 3339 (no offset), and `%Y-%m-%d %H:%M:%S%.f` (after `T` becomes a space) or
/// `%Y-%m-%d` parse them to the same value.
fn fast_datetime(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    match b.len() {
        10 => Some(
            fast_iso_date(b)?
                .and_time(NaiveTime::MIN)
                .and_utc()
                .timestamp(),
        ),
        19 if b[10] == b' ' || b[10] == b'T' => {
            let date = fast_iso_date(&b[..10])?;
            let time = fast_hms(&b[11..])?;
            Some(date.and_time(time).and_utc().timestamp())
        }
        _ => None,
    }
}

/// A date without a time of day: ISO, US `MM/DD/YYYY`, `YYYY/MM/DD` or `YYYYMMDD`.
pub(super) fn parse_date(s: &str) -> Result<NaiveDate, String> {
    if let Some(d) = fast_iso_date(s.as_bytes()) {
        return Ok(d);
    }
    if s.len() == 8
        && s.bytes().all(|b| b.is_ascii_digit())
        && let Ok(d) = NaiveDate::parse_from_str(s, "%Y%m%d")
    {
        return Ok(d);
    }
    DATE_FORMATS
        .iter()
        .find_map(|f| NaiveDate::parse_from_str(s, f).ok())
        .ok_or_else(|| {
            format!(
                "cannot parse '{}' as a date (expected YYYY-MM-DD, MM/DD/YYYY or YYYYMMDD)",
                shorten(s)
            )
        })
}

/// A time of day: `HH:MM` or `HH:MM:SS`.
pub(super) fn parse_time(s: &str) -> Result<NaiveTime, String> {
    if let Some(t) = fast_hms(s.as_bytes()) {
        return Ok(t);
    }
    NaiveTime::parse_from_str(s, "%H:%M:%S")
        .or_else(|_| NaiveTime::parse_from_str(s, "%H:%M"))
        .map_err(|_| {
            format!(
                "cannot parse '{}' as a time of day (expected HH:MM or HH:MM:SS)",
                shorten(s)
            )
        })
}

/// A full timestamp in Unix seconds. Fractional seconds are dropped (bars are at least a
/// second apart; two bars in one second are reported as duplicates).
pub(super) fn parse_datetime(s: &str, allow_unix: bool) -> Result<i64, String> {
    if let Some(ts) = fast_datetime(s) {
        return Ok(ts);
    }
    let digits = s.strip_prefix('-').unwrap_or(s);
    if allow_unix && !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        let ts: i64 = s
            .parse()
            .map_err(|_| format!("Unix timestamp '{}' is out of range", shorten(s)))?;
        if !(MIN_UNIX..=MAX_UNIX).contains(&ts) {
            return Err(format!(
                "Unix timestamp {ts} is outside the years 1900..2200 (seconds are expected, not \
                 milliseconds)"
            ));
        }
        return Ok(ts);
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Ok(dt.timestamp());
    }
    let plain = s
        .strip_suffix(['Z', 'z'])
        .unwrap_or(s)
        .replacen('T', " ", 1);
    if let Some(dt) = DATETIME_FORMATS
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(&plain, f).ok())
    {
        return Ok(dt.and_utc().timestamp());
    }
    if let Ok(d) = parse_date(&plain) {
        return Ok(d.and_time(NaiveTime::MIN).and_utc().timestamp());
    }
    Err(format!(
        "cannot parse '{}' as a date or date-time (expected e.g. 2020-01-31, \
         2020-01-31 09:30:00, 2020-01-31T09:30:00Z, 01/31/2020{})",
        shorten(s),
        if allow_unix { " or Unix seconds" } else { "" }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Bars, DataError> {
        parse_csv(Path::new("data/TEST.csv"), text.as_bytes())
    }

    fn ts(s: &str) -> i64 {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
            .map(|d| d.and_utc().timestamp())
            .unwrap_or(i64::MIN)
    }

    fn message(text: &str) -> String {
        match parse(text) {
            Ok(b) => panic!("expected an error, got {b:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn line_numbers_are_physical_lines_whatever_the_line_endings() {
        let mut rows = vec!["Date,Open,High,Low,Close,Volume".to_string()];
        for d in 1..=20 {
            rows.push(format!("2020-01-{d:02},10,11,9,10.5,100"));
        }
        rows[11] = "2020-01-11,10,11,9,abc,100".to_string();
        for (ending, name) in [("\n", "LF"), ("\r\n", "CRLF")] {
            let text = rows.join(ending) + ending;
            let m = message(&text);
            assert!(
                m.starts_with("data/TEST.csv:12: column 'Close'"),
                "{name}: {m}"
            );
            // A quoted field spanning two lines counts both.
            let quoted = text.replacen("2020-01-03,10,", "2020-01-03,\"10\n\",", 1);
            let m = message(&quoted);
            assert!(
                m.contains("data/TEST.csv:13:") || m.contains("data/TEST.csv:4:"),
                "{m}"
            );
        }
    }

    #[test]
    fn large_files_parse_in_parallel_chunks_exactly_as_in_one_pass() {
        // 3000 rows in 64-byte chunks (the test-build chunk size): a few hundred chunks,
        // boundaries at every kind of place, blank lines and bad rows among them.
        let mut lines = vec!["Date,Open,High,Low,Close,Volume".to_string()];
        for i in 0..3000u32 {
            let day = chrono::NaiveDate::from_ymd_opt(2000, 1, 1).unwrap()
                + chrono::Days::new(u64::from(i));
            lines.push(match i {
                500 => String::new(),
                901 => "   ".to_string(),
                1200 => format!("{day},10,11,9,x,100"),
                2999 => format!("{day},10,11,9,10.5"),
                _ => format!("{day},10.{},11.5,9,10.5,{}", i % 7, 100 + i),
            });
        }
        for ending in ["\n", "\r\n"] {
            let text = lines.join(ending) + ending;
            let bytes = text.as_bytes();
            let layout =
                Layout::from_names(&lines[0].split(',').map(str::to_string).collect::<Vec<_>>())
                    .unwrap();
            let names: Vec<String> = lines[0].split(',').map(str::to_string).collect();
            let rows = CsvRows {
                bytes,
                width: 6,
                layout: &layout,
                names: &names,
                mode: BadRows::Drop,
            };
            let mut reader = csv_reader(bytes);
            let mut header = csv::ByteRecord::new();
            assert!(reader.read_byte_record(&mut header).unwrap());
            let start = reader.position().byte() as usize;
            let Ok(one_pass) = rows.parse(&mut reader, 0, LineCounter::new(bytes)) else {
                panic!("one pass failed");
            };
            let chunked = rows.parallel(start).unwrap();
            assert_eq!(chunked.0, one_pass.0, "{ending:?}: rows");
            assert_eq!(chunked.1, one_pass.1, "{ending:?}: problems");
            assert_eq!(one_pass.0.len(), 2996);
            let at: Vec<u64> = one_pass.1.iter().map(|p| p.at).collect();
            assert_eq!(at, [1202, 3001], "{ending:?}");
            // Under `error` the first bad row is reported, with its line.
            let m = message(&text);
            assert!(m.starts_with("data/TEST.csv:1202: column 'Close'"), "{m}");
        }
    }

    #[test]
    fn iso_dates() {
        let b = parse(
            "Date,Open,High,Low,Close,Volume\n\
             2020-01-02,10,11,9,10.5,100\n\
             2020-01-03,10.5,12,10,11,200\n",
        )
        .unwrap();
        assert_eq!(
            b.timestamps,
            vec![ts("2020-01-02 00:00:00"), ts("2020-01-03 00:00:00")]
        );
        assert_eq!(b.open, vec![10.0, 10.5]);
        assert_eq!(b.high, vec![11.0, 12.0]);
        assert_eq!(b.low, vec![9.0, 10.0]);
        assert_eq!(b.close, vec![10.5, 11.0]);
        assert_eq!(b.volume, vec![100.0, 200.0]);
        validate(&b).unwrap();
    }

    #[test]
    fn us_dates_descending_and_extra_columns() {
        let b = parse(
            "date,open,high,low,close,volume,OpenInterest,Symbol\n\
             01/03/2020,10.5,12,10,11,200,7,X\n\
             1/2/2020,10,11,9,10.5,100,7,X\n",
        )
        .unwrap();
        assert_eq!(
            b.timestamps,
            vec![ts("2020-01-02 00:00:00"), ts("2020-01-03 00:00:00")]
        );
        assert_eq!(b.close, vec![10.5, 11.0]);
        assert_eq!(b.volume, vec![100.0, 200.0]);
    }

    #[test]
    fn separate_time_column_and_missing_volume() {
        let b = parse(
            "Date,Time,Open,High,Low,Close\n\
             2006-01-02,09:05:00,1,2,1,2\n\
             2006-01-02,09:10,2,3,2,3\n",
        )
        .unwrap();
        assert_eq!(
            b.timestamps,
            vec![ts("2006-01-02 09:05:00"), ts("2006-01-02 09:10:00")]
        );
        assert_eq!(b.volume, vec![0.0, 0.0]);
    }

    #[test]
    fn datetime_and_unix_columns() {
        let b = parse(
            "datetime,open,high,low,close\n\
             2020-01-02T09:30:00Z,1,2,1,2\n\
             2020-01-02 09:31,1,2,1,2\n\
             2020-01-02T09:32:00+00:00,1,2,1,2\n",
        )
        .unwrap();
        assert_eq!(
            b.timestamps,
            vec![
                ts("2020-01-02 09:30:00"),
                ts("2020-01-02 09:31:00"),
                ts("2020-01-02 09:32:00")
            ]
        );
        // pandas writes tz-aware indexes with a space and an offset.
        let b = parse("Datetime,Open,High,Low,Close\n2020-01-02 09:30:00-05:00,1,2,1,2\n").unwrap();
        assert_eq!(b.timestamps, vec![ts("2020-01-02 14:30:00")]);
        let b = parse("timestamp,open,high,low,close\n1577957400,1,2,1,2\n").unwrap();
        assert_eq!(b.timestamps, vec![1_577_957_400]);
        assert!(
            message("timestamp,open,high,low,close\n1577957400000,1,2,1,2\n")
                .contains("milliseconds")
        );
    }

    #[test]
    fn an_adjusted_close_that_overflows_the_prices_is_an_error() {
        let e = parse(
            "Date,Open,High,Low,Close,Adj Close,Volume\n\
             2020-01-02,1e-300,1e-300,1e-300,1e-300,1e300,1\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains(":2: column 'Adj Close': adjusted close"), "{e}");
    }

    #[test]
    fn adjusted_close_scales_every_price() {
        let b = parse(
            "Date,Open,High,Low,Close,Adj Close,Volume\n\
             2020-01-02,10,12,8,10,5,100\n",
        )
        .unwrap();
        assert_eq!(b.close, vec![5.0]);
        assert_eq!(b.open, vec![5.0]);
        assert_eq!(b.high, vec![6.0]);
        assert_eq!(b.low, vec![4.0]);
        for header in ["adj_close", "adjclose", "Adjusted Close", "ADJ CLOSE"] {
            let text = format!("date,open,high,low,close,{header}\n2020-01-02,10,12,8,10,5\n");
            assert_eq!(parse(&text).unwrap().close, vec![5.0], "{header}");
        }
        // The scaled high may round below the adjusted close; it is clamped to it.
        let b = parse("date,open,high,low,close,adj close\n2020-01-02,3,3.3,3,3.3,1.1\n").unwrap();
        validate(&b).unwrap();
        assert_eq!(b.close, vec![1.1]);
        assert!(b.high[0] >= b.close[0]);
    }

    #[test]
    fn whitespace_bom_and_crlf() {
        let b = parse("\u{feff}Date , Open,High,Low,Close\r\n 2020-01-02 , 1 ,2,1,2\r\n").unwrap();
        assert_eq!(b.close, vec![2.0]);
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let head = "Date,Open,High,Low,Close,Volume\n2020-01-01,10,11,9,10,5\n";
        let cases = [
            (
                "2020-01-02,10,10.5,9,11,5\n",
                "data/TEST.csv:3: column 'High': high 10.5 is below max(open, close) = 11.0",
            ),
            (
                "2020-01-02,10,12,10.5,11,5\n",
                "data/TEST.csv:3: column 'Low': low 10.5 is above min(open, close) = 10.0",
            ),
            (
                "2020-01-02,abc,12,9,11,5\n",
                "data/TEST.csv:3: column 'Open': cannot parse 'abc'",
            ),
            (
                "2020-01-02,10,12,9,-1,5\n",
                "data/TEST.csv:3: column 'Close': close must be",
            ),
            (
                "2020-01-02,10,12,9,inf,5\n",
                "data/TEST.csv:3: column 'Close': close must be",
            ),
            (
                "2020-01-02,0,12,9,11,5\n",
                "data/TEST.csv:3: column 'Open': open must be",
            ),
            (
                "2020-01-02,10,12,9,11,-5\n",
                "data/TEST.csv:3: column 'Volume': volume -5.0 is negative",
            ),
            (
                "2020-13-45,10,12,9,11,5\n",
                "data/TEST.csv:3: column 'Date': cannot parse '2020-13-45'",
            ),
            (
                "2020-01-02,10,12,9,11\n",
                "data/TEST.csv:3: row has 5 fields but the header has 6",
            ),
            (
                "2020-01-02,10,12,9,,5\n",
                "data/TEST.csv:3: column 'Close': empty value",
            ),
            (
                "2020-01-02,10,12,9,11,5\n2020-01-01,10,12,9,11,5\n",
                "data/TEST.csv:4: column 'Date': duplicate timestamp 2020-01-01 00:00:00 (also on line 2)",
            ),
        ];
        for (rows, expected) in cases {
            let m = message(&format!("{head}{rows}"));
            assert!(
                m.starts_with(expected),
                "{m:?} should start with {expected:?}"
            );
        }
        let m = message("Date,Open,High,Low,Volume\n2020-01-01,1,1,1,1\n");
        assert!(m.starts_with("data/TEST.csv:1: column 'close': missing required column; found 'Date', 'Open', 'High', 'Low', 'Volume'"), "{m}");
        let m = message("Day,Open,High,Low,Close\n2020-01-01,1,1,1,1\n");
        assert!(
            m.starts_with("data/TEST.csv:1: column 'date': missing required column"),
            "{m}"
        );
        let m = message("Date,Close,close,Open,High,Low\n");
        assert!(
            m.contains(":1: column 'close': column appears twice"),
            "{m}"
        );
        assert!(message("").starts_with("data/TEST.csv:1: the file is empty"));
        assert!(message("Date,Open,High,Low,Close\n").contains(":1: no data rows"));
        let m = message("Date,Open,High,Low,Close,Adj Close\n2020-01-01,1,1,1,1,0\n");
        assert!(
            m.starts_with("data/TEST.csv:2: column 'Adj Close': adjusted close"),
            "{m}"
        );
        let m = message("Date,Time,Open,High,Low,Close\n2020-01-01,25:00,1,1,1,1\n");
        assert!(
            m.starts_with("data/TEST.csv:2: column 'Time': cannot parse '25:00'"),
            "{m}"
        );
        let m = parse_csv(
            Path::new("x.csv"),
            b"Date,Open,High,Low,Close\n2020-01-01,\xff,1,1,1\n",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            m,
            format!("x.csv:2: column 'Open': invalid UTF-8 in value {DROP_HINT}")
        );
    }

    fn with(text: &str, opts: &IngestOptions) -> Result<Ingested, DataError> {
        parse_csv_with(Path::new("data/TEST.csv"), text.as_bytes(), opts)
    }

    const DROP: IngestOptions = IngestOptions {
        on_bad_rows: BadRows::Drop,
        start: None,
        end: None,
    };

    const HEAD: &str = "Date,Open,High,Low,Close,Volume\n";

    #[test]
    fn row_level_errors_say_how_to_skip_the_row() {
        let m = message(&format!(
            "{HEAD}2020-01-01,10,11,9,10,5\n2020-01-02,10,12,9,-1,5\n"
        ));
        assert!(
            m.starts_with("data/TEST.csv:3: column 'Close': close must be"),
            "{m}"
        );
        assert!(m.ends_with(DROP_HINT), "{m}");
        // File-level problems have no such way out.
        assert!(!message("").contains("on_bad_rows"));
        assert!(!message("Date,Open,High,Low\n2020-01-01,1,1,1\n").contains("on_bad_rows"));
    }

    #[test]
    fn currency_symbols_and_thousands_separators_are_named() {
        let m = message(&format!("{HEAD}2020-01-01,$10,11,9,10,5\n"));
        assert!(
            m.starts_with("data/TEST.csv:2: column 'Open': cannot parse '$10' as a number: remove the currency symbol"),
            "{m}"
        );
        let m = message(&format!("{HEAD}2020-01-01,10,11,9,10,\"1,234.50\"\n"));
        assert!(
            m.starts_with("data/TEST.csv:2: column 'Volume': cannot parse '1,234.50' as a number: remove the thousands separator"),
            "{m}"
        );
    }

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
    fn real_world_shapes_keep_working() {
        let text = "\u{feff}Date,Open,High,Low,Close,Volume\r\n01/02/2020,10,11,9,10,5\r\n01/03/2020,10,11,9,10,6\r\n\r\n\r\n  \r\n";
        let got = with(text, &IngestOptions::default()).unwrap();
        assert_eq!(got.bars.volume, vec![5.0, 6.0]);
        assert!(got.dropped.is_empty() && got.notes.is_empty());
    }

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
        assert!(parse_files(&[], &IngestOptions::default()).is_err());
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

    /// The general (chrono format) path of the timestamp parsers, for comparison with the
    /// fast paths.
    fn slow_datetime(s: &str) -> Option<i64> {
        if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
            return Some(dt.timestamp());
        }
        let plain = s.replacen('T', " ", 1);
        DATETIME_FORMATS
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(&plain, f).ok())
            .map(|dt| dt.and_utc().timestamp())
            .or_else(|| {
                DATE_FORMATS
                    .iter()
                    .find_map(|f| NaiveDate::parse_from_str(&plain, f).ok())
                    .map(|d| d.and_time(NaiveTime::MIN).and_utc().timestamp())
            })
    }

    #[test]
    fn fast_timestamp_paths_agree_with_chrono() {
        let mut cases: Vec<String> = [
            "2020-01-31 09:30:00",
            "2020-01-31T09:30:00",
            "2020-02-29 23:59:59",
            "2021-02-29 10:00:00",
            "2020-13-01 00:00:00",
            "2020-01-32",
            "2020-00-10",
            "0000-01-01 00:00:00",
            "9999-12-31 23:59:59",
            "1969-07-20 20:17:40",
            "2020-01-31 24:00:00",
            "2020-01-31 23:60:00",
            "2020-06-30 23:59:60",
            "2020-01-31 9:30:00",
            "2020-1-31 09:30:00",
            "+2020-01-31 09:30",
            "2020-01-31x09:30:00",
            "2020/01/31 09:30:00",
            "2020-01-31",
            "１２３４-01-01",
            "2020-0a-31",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // Every date of a few years at odd times.
        let mut d = NaiveDate::from_ymd_opt(1999, 12, 25).unwrap();
        for i in 0..1200u32 {
            cases.push(format!(
                "{} {:02}:{:02}:{:02}",
                d.format("%Y-%m-%d"),
                i % 24,
                (i * 7) % 60,
                (i * 13) % 60
            ));
            cases.push(d.format("%Y-%m-%d").to_string());
            d = d.succ_opt().unwrap();
        }
        for s in &cases {
            if let Some(fast) = fast_datetime(s) {
                assert_eq!(Some(fast), slow_datetime(s), "{s}");
            }
            let general = slow_datetime(s);
            assert_eq!(parse_datetime(s, true).ok(), general, "{s}");
            if s.len() == 10 {
                let slow = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok();
                assert_eq!(fast_iso_date(s.as_bytes()).or(slow), slow, "{s}");
            }
        }
        assert!(fast_datetime("2020-01-31 09:30:00").is_some());
        for t in [
            "09:30:00", "23:59:59", "00:00:00", "24:00:00", "12:60:00", "23:59:60", "9:30:00",
        ] {
            let slow = NaiveTime::parse_from_str(t, "%H:%M:%S").ok();
            assert_eq!(fast_hms(t.as_bytes()).or(slow), slow, "{t}");
            assert_eq!(parse_time(t).ok(), slow, "{t}");
        }
    }

    #[test]
    fn ohlc_tolerance_is_clamped() {
        let b = parse("Date,Open,High,Low,Close\n2020-01-01,10,9.99999999999,9,10\n").unwrap();
        assert_eq!(b.high, vec![10.0]);
        validate(&b).unwrap();
    }

    #[test]
    fn garbage_never_panics() {
        // A small xorshift stream: random bytes, and random mutations of a valid file.
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let valid = b"Date,Time,Open,High,Low,Close,Adj Close,Volume\n2020-01-02,09:30,10,11,9,10.5,5,100\n2020-01-03,09:30,10.5,12,10,11,6,200\n";
        let alphabet = b"0123456789,.-:/ \n\r\"TZtimeDaOpnHighLowClsVu\xff\xfe";
        for round in 0..1500 {
            let bytes: Vec<u8> = if round % 2 == 0 {
                let len = (next() % 200) as usize;
                (0..len)
                    .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                    .collect()
            } else {
                let mut v = valid.to_vec();
                for _ in 0..(next() % 4 + 1) {
                    let i = (next() % v.len() as u64) as usize;
                    v[i] = (next() & 0xff) as u8;
                }
                v
            };
            if let Ok(b) = parse_csv(Path::new("g.csv"), &bytes) {
                validate(&b).unwrap();
            }
        }
    }

    #[test]
    fn validate_rejects_broken_bars() {
        let good = Bars {
            timestamps: vec![1, 2],
            open: vec![1.0, 1.0],
            high: vec![2.0, 2.0],
            low: vec![0.5, 0.5],
            close: vec![1.5, 1.5],
            volume: vec![0.0, 0.0],
        };
        validate(&good).unwrap();
        let mut b = good.clone();
        b.timestamps = vec![2, 2];
        assert!(
            validate(&b)
                .unwrap_err()
                .to_string()
                .contains("row 1: column 'timestamp'")
        );
        let mut b = good.clone();
        b.close.pop();
        assert!(validate(&b).is_err());
        let mut b = good.clone();
        b.low[1] = 1.2;
        assert_eq!(
            validate(&b).unwrap_err().to_string(),
            "bars: row 1: column 'low': low 1.2 is above min(open, close) = 1.0"
        );
        let empty = Bars {
            timestamps: vec![],
            open: vec![],
            high: vec![],
            low: vec![],
            close: vec![],
            volume: vec![],
        };
        assert!(validate(&empty).is_err());
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
