//! The `ingest` stage for Parquet files (through the arrow-rs `parquet` crate).
//!
//! Columns are found by name exactly as in CSV ([`super::ingest`]: `Date`, `Adj Close`,
//! `timestamp`, ...), and every row goes through the same checks, order phase and date
//! window. What Parquet adds is types:
//!
//! - the time column: a timestamp of any unit (s, ms, us, ns; with or without a time zone:
//!   the values are UTC either way, and a zone-less one is taken as UTC as in CSV), `date32`,
//!   `date64`, a string (parsed as CSV text is), or integer Unix seconds (`int32`/`int64`;
//!   `YYYYMMDD` integers in a `date` column). A separate `time` column may be `time32`,
//!   `time64` or a string. Sub-second parts are dropped, as in CSV.
//! - prices and volume: `float32`/`float64`, signed and unsigned integers, `decimal128`.
//!
//! A null is a bad value of its row. Rows are numbered from 1 across row groups (the first
//! row of the second group follows the last of the first); row groups are decoded in
//! parallel, and the result does not depend on how many threads do it.

use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Date64Type, Decimal128Type, Float32Type, Float64Type, Int8Type, Int16Type,
    Int32Type, Int64Type, Time32MillisecondType, Time32SecondType, Time64MicrosecondType,
    Time64NanosecondType, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, LargeStringArray, RecordBatch, StringArray};
use arrow_schema::{DataType, TimeUnit};
use bytes::Bytes;
use chrono::{NaiveDate, NaiveTime, Timelike};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use rayon::prelude::*;

use super::ingest::{
    BadRows, DataError, IngestOptions, Ingested, Layout, MAX_UNIX, MIN_UNIX, Problem, RawBar, Row,
    Source, TimeSource, Validated, finish_one, make_row, parse_date, parse_datetime, parse_time,
    shorten, validate_rows,
};

/// The Parquet magic, at the start and at the end of every file.
const MAGIC: &[u8] = b"PAR1";

/// Rows decoded at a time within a row group.
const BATCH_ROWS: usize = 8192;

const SECONDS_PER_DAY: i64 = 86_400;

/// Reads a Parquet file of bars under `opts`. `path_for_messages` only names the file in
/// messages.
///
/// Never panics on bad bytes: every problem is a [`DataError::Table`] naming the file, the
/// data row (counting from 1) where one is to blame, and the column.
pub fn parse_parquet(
    path_for_messages: &Path,
    bytes: &[u8],
    opts: &IngestOptions,
) -> Result<Ingested, DataError> {
    finish_one(
        validate_parquet(path_for_messages, bytes, opts.on_bad_rows)?,
        opts,
    )
}

/// How a time column is used in a [`Layout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimeUse {
    /// The whole timestamp; integers are Unix seconds when `allow_unix`, else `YYYYMMDD`.
    Full { allow_unix: bool },
    /// The date part, a time-of-day column beside it.
    Date,
    /// Seconds since midnight.
    TimeOfDay,
}

/// Whether a column of type `dt` can serve as `usage`.
fn time_type_ok(dt: &DataType, usage: TimeUse) -> bool {
    let text = matches!(dt, DataType::Utf8 | DataType::LargeUtf8);
    match usage {
        TimeUse::Full { .. } | TimeUse::Date => {
            text || matches!(
                dt,
                DataType::Timestamp(_, _)
                    | DataType::Date32
                    | DataType::Date64
                    | DataType::Int32
                    | DataType::Int64
            )
        }
        TimeUse::TimeOfDay => text || matches!(dt, DataType::Time32(_) | DataType::Time64(_)),
    }
}

fn number_type_ok(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Float32
            | DataType::Float64
            | DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
            | DataType::Decimal128(_, _)
    )
}

/// The row checks and the order phase of a Parquet file.
pub(super) fn validate_parquet(
    path: &Path,
    bytes: &[u8],
    mode: BadRows,
) -> Result<Validated, DataError> {
    let source = Source::parquet(path);
    if bytes.is_empty() {
        return Err(source.file_error(
            None,
            "the file is empty; export the data again (or remove the file)".to_string(),
        ));
    }
    if !bytes.starts_with(MAGIC) {
        return Err(source.file_error(
            None,
            "not a Parquet file (it does not start with the bytes PAR1); write it as Parquet, \
             or give a CSV file a .csv name"
                .to_string(),
        ));
    }
    if bytes.len() < 3 * MAGIC.len() || !bytes.ends_with(MAGIC) {
        return Err(source.file_error(
            None,
            "the Parquet file is truncated (it does not end with the bytes PAR1); copy or \
             export it again"
                .to_string(),
        ));
    }
    let data = Bytes::copy_from_slice(bytes);
    // The Arrow schema a writer embeds restores types Parquet has no name for (arrow-rs
    // writes `date64` and `time32(s)` as plain integers); where it gives types this reader
    // does not take (dictionary or view strings), the Parquet schema alone does.
    let mut first_error = None;
    for skip_arrow_metadata in [false, true] {
        let options = ArrowReaderOptions::new().with_skip_arrow_metadata(skip_arrow_metadata);
        let meta = ArrowReaderMetadata::load(&data, options).map_err(|e| {
            source.file_error(
                None,
                format!(
                    "cannot read the Parquet metadata ({}); the file is corrupt: export it \
                     again",
                    shorten(&e.to_string())
                ),
            )
        })?;
        check_chunks(&source, &meta, bytes.len())?;
        let names: Vec<String> = meta
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let layout = Layout::from_names(&names)
            .map_err(|(column, message)| source.file_error(Some(&column), message))?;
        match check_types(&source, &meta, &names, &layout) {
            Ok(()) => return read_rows(source, &data, &meta, &names, &layout, mode),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.unwrap_or_else(|| source.file_error(None, "unreadable".to_string())))
}

/// Column chunks must lie inside the file: the decoder asserts (panics) on negative
/// offsets, so corrupt metadata is caught here first.
fn check_chunks(source: &Source, meta: &ArrowReaderMetadata, len: usize) -> Result<(), DataError> {
    let len = i64::try_from(len).unwrap_or(i64::MAX);
    for (g, group) in meta.metadata().row_groups().iter().enumerate() {
        let bad_rows = group.num_rows() < 0;
        let bad_chunk = group.columns().iter().any(|c| {
            let start = c.dictionary_page_offset().unwrap_or(c.data_page_offset());
            let size = c.compressed_size();
            start < 0
                || size < 0
                || c.data_page_offset() < 0
                || start.checked_add(size).is_none_or(|end| end > len)
        });
        if bad_rows || bad_chunk {
            return Err(source.file_error(
                None,
                format!(
                    "row group {} of the Parquet file points outside the file; the file is \
                     corrupt: export it again",
                    g + 1
                ),
            ));
        }
    }
    Ok(())
}

/// Types are checked once, for the file: a wrong type is no row's fault.
fn check_types(
    source: &Source,
    meta: &ArrowReaderMetadata,
    names: &[String],
    layout: &Layout,
) -> Result<(), DataError> {
    let schema = meta.schema();
    let name_of = |i: usize| names.get(i).map_or("?", String::as_str);
    let type_of = |col: usize| {
        schema
            .fields()
            .get(col)
            .map_or(DataType::Null, |f| f.data_type().clone())
    };
    let mut time_uses = Vec::new();
    match layout.time {
        TimeSource::Single { col, allow_unix } => {
            time_uses.push((col, TimeUse::Full { allow_unix }));
        }
        TimeSource::DateAndTime { date, time } => {
            time_uses.push((date, TimeUse::Date));
            time_uses.push((time, TimeUse::TimeOfDay));
        }
    }
    for &(col, usage) in &time_uses {
        let dt = type_of(col);
        if !time_type_ok(&dt, usage) {
            let expected = match usage {
                TimeUse::TimeOfDay => "a time of day (time32, time64) or a string",
                _ => "a timestamp, a date (date32, date64), a string or integer Unix seconds",
            };
            return Err(source.file_error(
                Some(name_of(col)),
                format!(
                    "a {dt} column cannot hold times here; expected {expected}: convert the \
                     column when writing the file"
                ),
            ));
        }
    }
    let number_columns = [
        Some(layout.open),
        Some(layout.high),
        Some(layout.low),
        Some(layout.close),
        layout.adj,
        layout.volume,
    ];
    for col in number_columns.into_iter().flatten() {
        let dt = type_of(col);
        if !number_type_ok(&dt) {
            return Err(source.file_error(
                Some(name_of(col)),
                format!(
                    "a {dt} column cannot hold prices or volumes; expected a float, integer or \
                     decimal column: convert it when writing the file"
                ),
            ));
        }
    }
    Ok(())
}

/// Decodes the row groups in parallel and hands the rows to the shared order phase.
fn read_rows(
    source: Source,
    data: &Bytes,
    meta: &ArrowReaderMetadata,
    names: &[String],
    layout: &Layout,
    mode: BadRows,
) -> Result<Validated, DataError> {
    let name_of = |i: usize| names.get(i).map_or("?", String::as_str);
    let columns = layout.columns();
    let mask = ProjectionMask::roots(meta.parquet_schema(), columns.iter().copied());
    // The first data row of each row group, counting from 1 across groups.
    let groups = meta.metadata().row_groups();
    let mut first_rows = Vec::with_capacity(groups.len());
    let mut next = 1u64;
    for g in groups {
        first_rows.push(next);
        next = next.saturating_add(u64::try_from(g.num_rows()).unwrap_or(0));
    }
    let group = GroupReader {
        data,
        meta,
        mask: &mask,
        layout,
        columns: &columns,
        names,
        source: &source,
        mode,
    };
    let results: Vec<Result<GroupRows, DataError>> = first_rows
        .par_iter()
        .enumerate()
        .map(|(i, &first_row)| group.read(i, first_row))
        .collect();
    let mut rows: Vec<Row> = Vec::with_capacity(
        results
            .iter()
            .map(|r| r.as_ref().map_or(0, |g| g.rows.len()))
            .sum(),
    );
    let mut problems = Vec::new();
    // In group order, so the error reported is the earliest whatever the thread count.
    for result in results {
        let mut g = result?;
        if mode == BadRows::Error
            && let Some(p) = g.problems.pop()
        {
            return Err(source.row_error(p));
        }
        rows.append(&mut g.rows);
        problems.append(&mut g.problems);
    }
    let time_column = name_of(layout.time_column()).to_string();
    validate_rows(source, rows, problems, time_column, mode)
}

/// What one row group gave.
struct GroupRows {
    rows: Vec<Row>,
    /// Under [`BadRows::Error`], at most one: reading stops at the first.
    problems: Vec<Problem>,
}

/// Everything a row group's decoder needs, shared by all groups.
struct GroupReader<'a> {
    data: &'a Bytes,
    meta: &'a ArrowReaderMetadata,
    mask: &'a ProjectionMask,
    layout: &'a Layout,
    /// The projected columns (original indexes, ascending): batch column `k` is `columns[k]`.
    columns: &'a [usize],
    names: &'a [String],
    source: &'a Source,
    mode: BadRows,
}

impl GroupReader<'_> {
    fn read(&self, group: usize, first_row: u64) -> Result<GroupRows, DataError> {
        let corrupt = |e: &dyn std::fmt::Display| {
            self.source.file_error(
                None,
                format!(
                    "cannot decode row group {} of the Parquet file ({}); the file is \
                     corrupt: export it again",
                    group + 1,
                    shorten(&e.to_string())
                ),
            )
        };
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(
            self.data.clone(),
            self.meta.clone(),
        )
        .with_projection(self.mask.clone())
        .with_row_groups(vec![group])
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| corrupt(&e))?;
        let mut out = GroupRows {
            rows: Vec::new(),
            problems: Vec::new(),
        };
        let mut at = first_row;
        let mut reader = reader;
        loop {
            // The decoder asserts on some corruptions it does not report as errors: a
            // corrupt file must be an error, never a crash of the build.
            let next = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reader.next()))
                .map_err(|_| corrupt(&"the decoder gave up"))?;
            let Some(batch) = next else {
                break;
            };
            let batch = batch.map_err(|e| corrupt(&e))?;
            let stop = self.read_batch(&batch, &mut at, &mut out)?;
            if stop {
                break;
            }
        }
        Ok(out)
    }

    /// Appends the batch's rows (and problems) to `out`, `at` being the first row's number.
    /// True when reading should stop (the first problem under [`BadRows::Error`]).
    fn read_batch(
        &self,
        batch: &RecordBatch,
        at: &mut u64,
        out: &mut GroupRows,
    ) -> Result<bool, DataError> {
        let array = |col: usize| -> Result<&dyn Array, DataError> {
            self.columns
                .binary_search(&col)
                .ok()
                .and_then(|k| batch.columns().get(k))
                .map(|a| a.as_ref())
                .ok_or_else(|| {
                    self.source.file_error(
                        self.names.get(col).map(String::as_str),
                        "the column is missing from a row group; the file is corrupt: export \
                         it again"
                            .to_string(),
                    )
                })
        };
        let times = |col: usize| -> Result<TimeColumn<'_>, DataError> {
            let a = array(col)?;
            TimeColumn::new(a).ok_or_else(|| self.unexpected_type(col, a))
        };
        let numbers = |col: usize| -> Result<NumberColumn<'_>, DataError> {
            let a = array(col)?;
            NumberColumn::new(a).ok_or_else(|| self.unexpected_type(col, a))
        };
        let layout = self.layout;
        let time = match layout.time {
            TimeSource::Single { col, allow_unix } => {
                BatchTime::Single(col, times(col)?, TimeUse::Full { allow_unix })
            }
            TimeSource::DateAndTime { date, time } => {
                BatchTime::DateAndTime(date, times(date)?, time, times(time)?)
            }
        };
        let cols = BatchColumns {
            time,
            open: (layout.open, numbers(layout.open)?),
            high: (layout.high, numbers(layout.high)?),
            low: (layout.low, numbers(layout.low)?),
            close: (layout.close, numbers(layout.close)?),
            adj: layout.adj.map(|c| numbers(c).map(|n| (c, n))).transpose()?,
            volume: layout
                .volume
                .map(|c| numbers(c).map(|n| (c, n)))
                .transpose()?,
        };
        out.rows.reserve(batch.num_rows());
        for i in 0..batch.num_rows() {
            let row_at = *at;
            *at = at.saturating_add(1);
            match cols.row(i, row_at, layout) {
                Ok(row) => out.rows.push(row),
                Err((col, message)) => {
                    out.problems.push(Problem {
                        at: row_at,
                        column: self.names.get(col).cloned(),
                        message,
                    });
                    if self.mode == BadRows::Error {
                        return Ok(true);
                    }
                }
            }
        }
        Ok(false)
    }

    fn unexpected_type(&self, col: usize, a: &dyn Array) -> DataError {
        self.source.file_error(
            self.names.get(col).map(String::as_str),
            format!(
                "unexpected column type {} in a row group; the file is corrupt: export it again",
                a.data_type()
            ),
        )
    }
}

/// The time columns of one batch.
enum BatchTime<'a> {
    Single(usize, TimeColumn<'a>, TimeUse),
    DateAndTime(usize, TimeColumn<'a>, usize, TimeColumn<'a>),
}

/// One batch's columns, each with its index in the file's schema (for messages).
struct BatchColumns<'a> {
    time: BatchTime<'a>,
    open: (usize, NumberColumn<'a>),
    high: (usize, NumberColumn<'a>),
    low: (usize, NumberColumn<'a>),
    close: (usize, NumberColumn<'a>),
    adj: Option<(usize, NumberColumn<'a>)>,
    volume: Option<(usize, NumberColumn<'a>)>,
}

impl BatchColumns<'_> {
    /// Row `i` of the batch (data row `at` of the file) as a checked row; the error names
    /// the column index to blame.
    fn row(&self, i: usize, at: u64, layout: &Layout) -> Result<Row, (usize, String)> {
        let timestamp = match &self.time {
            BatchTime::Single(col, t, usage) => t.seconds(i, *usage).map_err(|m| (*col, m))?,
            BatchTime::DateAndTime(dc, d, tc, t) => {
                let day = d.seconds(i, TimeUse::Date).map_err(|m| (*dc, m))?;
                let time = t.seconds(i, TimeUse::TimeOfDay).map_err(|m| (*tc, m))?;
                day.saturating_add(time)
            }
        };
        let number = |(col, n): &(usize, NumberColumn<'_>)| n.get(i).map_err(|m| (*col, m));
        let raw = RawBar {
            open: number(&self.open)?,
            high: number(&self.high)?,
            low: number(&self.low)?,
            close: number(&self.close)?,
            adj: self.adj.as_ref().map(number).transpose()?,
            volume: match &self.volume {
                Some(v) => number(v)?,
                None => 0.0,
            },
        };
        make_row(at, timestamp, raw).map_err(|(field, m)| (layout.column(field), m))
    }
}

const NULL: &str = "empty value (null)";

/// A time column of one batch, by type.
struct TimeColumn<'a> {
    array: &'a dyn Array,
    values: TimeValues<'a>,
}

enum TimeValues<'a> {
    /// A timestamp (any unit) or `date64`: ticks of `1 / per_second` s since the epoch.
    Ticks {
        values: &'a [i64],
        per_second: i64,
    },
    /// `date32`: days since the epoch.
    Days(&'a [i32]),
    Int32(&'a [i32]),
    Int64(&'a [i64]),
    /// `time32` / `time64`: ticks since midnight.
    TimeOfDay32 {
        values: &'a [i32],
        per_second: i64,
    },
    TimeOfDay64 {
        values: &'a [i64],
        per_second: i64,
    },
    Utf8(&'a StringArray),
    LargeUtf8(&'a LargeStringArray),
}

fn per_second(unit: &TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => 1,
        TimeUnit::Millisecond => 1_000,
        TimeUnit::Microsecond => 1_000_000,
        TimeUnit::Nanosecond => 1_000_000_000,
    }
}

impl<'a> TimeColumn<'a> {
    fn new(array: &'a dyn Array) -> Option<TimeColumn<'a>> {
        let values = match array.data_type() {
            DataType::Timestamp(unit, _) => {
                let values: &[i64] = match unit {
                    TimeUnit::Second => array.as_primitive_opt::<TimestampSecondType>()?.values(),
                    TimeUnit::Millisecond => array
                        .as_primitive_opt::<TimestampMillisecondType>()?
                        .values(),
                    TimeUnit::Microsecond => array
                        .as_primitive_opt::<TimestampMicrosecondType>()?
                        .values(),
                    TimeUnit::Nanosecond => array
                        .as_primitive_opt::<TimestampNanosecondType>()?
                        .values(),
                };
                TimeValues::Ticks {
                    values,
                    per_second: per_second(unit),
                }
            }
            DataType::Date64 => TimeValues::Ticks {
                values: array.as_primitive_opt::<Date64Type>()?.values(),
                per_second: 1_000,
            },
            DataType::Date32 => TimeValues::Days(array.as_primitive_opt::<Date32Type>()?.values()),
            DataType::Int32 => TimeValues::Int32(array.as_primitive_opt::<Int32Type>()?.values()),
            DataType::Int64 => TimeValues::Int64(array.as_primitive_opt::<Int64Type>()?.values()),
            DataType::Time32(unit) => TimeValues::TimeOfDay32 {
                values: match unit {
                    TimeUnit::Second => array.as_primitive_opt::<Time32SecondType>()?.values(),
                    _ => array.as_primitive_opt::<Time32MillisecondType>()?.values(),
                },
                per_second: per_second(unit),
            },
            DataType::Time64(unit) => TimeValues::TimeOfDay64 {
                values: match unit {
                    TimeUnit::Microsecond => {
                        array.as_primitive_opt::<Time64MicrosecondType>()?.values()
                    }
                    _ => array.as_primitive_opt::<Time64NanosecondType>()?.values(),
                },
                per_second: per_second(unit),
            },
            DataType::Utf8 => TimeValues::Utf8(array.as_string_opt::<i32>()?),
            DataType::LargeUtf8 => TimeValues::LargeUtf8(array.as_string_opt::<i64>()?),
            _ => return None,
        };
        Some(TimeColumn { array, values })
    }

    /// Row `i` as Unix seconds (or seconds since midnight for [`TimeUse::TimeOfDay`]).
    fn seconds(&self, i: usize, usage: TimeUse) -> Result<i64, String> {
        if self.array.is_null(i) {
            return Err(NULL.to_string());
        }
        let missing = || "value missing from the column; the file is corrupt".to_string();
        let integer = |v: i64| match usage {
            TimeUse::Full { allow_unix: true } => unix_seconds(v),
            _ => yyyymmdd(v),
        };
        let ticks = |v: i64, per_second: i64| match usage {
            TimeUse::TimeOfDay => time_of_day(v.div_euclid(per_second)),
            TimeUse::Date => {
                let s = v.div_euclid(per_second);
                Ok(s - s.rem_euclid(SECONDS_PER_DAY))
            }
            TimeUse::Full { .. } => Ok(v.div_euclid(per_second)),
        };
        let text = |s: &str| match usage {
            TimeUse::Full { allow_unix } => parse_datetime(s, allow_unix),
            TimeUse::Date => parse_date(s).map(midnight),
            TimeUse::TimeOfDay => parse_time(s).map(|t| i64::from(t.num_seconds_from_midnight())),
        };
        match &self.values {
            TimeValues::Ticks { values, per_second } => {
                ticks(*values.get(i).ok_or_else(missing)?, *per_second)
            }
            TimeValues::Days(values) => {
                Ok(i64::from(*values.get(i).ok_or_else(missing)?) * SECONDS_PER_DAY)
            }
            TimeValues::Int32(values) => integer(i64::from(*values.get(i).ok_or_else(missing)?)),
            TimeValues::Int64(values) => integer(*values.get(i).ok_or_else(missing)?),
            TimeValues::TimeOfDay32 { values, per_second } => {
                ticks(i64::from(*values.get(i).ok_or_else(missing)?), *per_second)
            }
            TimeValues::TimeOfDay64 { values, per_second } => {
                ticks(*values.get(i).ok_or_else(missing)?, *per_second)
            }
            TimeValues::Utf8(a) => text(a.value(i)),
            TimeValues::LargeUtf8(a) => text(a.value(i)),
        }
    }
}

fn midnight(d: NaiveDate) -> i64 {
    d.and_time(NaiveTime::MIN).and_utc().timestamp()
}

/// An integer timestamp, checked as CSV checks a Unix-seconds column.
fn unix_seconds(ts: i64) -> Result<i64, String> {
    if (MIN_UNIX..=MAX_UNIX).contains(&ts) {
        Ok(ts)
    } else {
        Err(format!(
            "Unix timestamp {ts} is outside the years 1900..2200 (seconds are expected, not \
             milliseconds)"
        ))
    }
}

/// An integer date such as 20200131.
fn yyyymmdd(v: i64) -> Result<i64, String> {
    let date = (10_000_000..=99_999_999)
        .contains(&v)
        .then(|| {
            let (y, m, d) = (v / 10_000, v / 100 % 100, v % 100);
            NaiveDate::from_ymd_opt(
                i32::try_from(y).ok()?,
                u32::try_from(m).ok()?,
                u32::try_from(d).ok()?,
            )
        })
        .flatten();
    date.map(midnight).ok_or_else(|| {
        format!(
            "cannot read the integer {v} as a date (expected YYYYMMDD; Unix seconds belong in \
             a timestamp column)"
        )
    })
}

fn time_of_day(seconds: i64) -> Result<i64, String> {
    if (0..SECONDS_PER_DAY).contains(&seconds) {
        Ok(seconds)
    } else {
        Err(format!(
            "time of day {seconds} s is not within a day (0..86400 s)"
        ))
    }
}

/// A price or volume column of one batch, by type.
struct NumberColumn<'a> {
    array: &'a dyn Array,
    values: NumberValues<'a>,
}

enum NumberValues<'a> {
    F64(&'a [f64]),
    F32(&'a [f32]),
    I8(&'a [i8]),
    I16(&'a [i16]),
    I32(&'a [i32]),
    I64(&'a [i64]),
    U8(&'a [u8]),
    U16(&'a [u16]),
    U32(&'a [u32]),
    U64(&'a [u64]),
    /// Unscaled values and `10^scale`.
    Decimal(&'a [i128], f64),
}

impl<'a> NumberColumn<'a> {
    fn new(array: &'a dyn Array) -> Option<NumberColumn<'a>> {
        let values = match array.data_type() {
            DataType::Float64 => {
                NumberValues::F64(array.as_primitive_opt::<Float64Type>()?.values())
            }
            DataType::Float32 => {
                NumberValues::F32(array.as_primitive_opt::<Float32Type>()?.values())
            }
            DataType::Int8 => NumberValues::I8(array.as_primitive_opt::<Int8Type>()?.values()),
            DataType::Int16 => NumberValues::I16(array.as_primitive_opt::<Int16Type>()?.values()),
            DataType::Int32 => NumberValues::I32(array.as_primitive_opt::<Int32Type>()?.values()),
            DataType::Int64 => NumberValues::I64(array.as_primitive_opt::<Int64Type>()?.values()),
            DataType::UInt8 => NumberValues::U8(array.as_primitive_opt::<UInt8Type>()?.values()),
            DataType::UInt16 => NumberValues::U16(array.as_primitive_opt::<UInt16Type>()?.values()),
            DataType::UInt32 => NumberValues::U32(array.as_primitive_opt::<UInt32Type>()?.values()),
            DataType::UInt64 => NumberValues::U64(array.as_primitive_opt::<UInt64Type>()?.values()),
            DataType::Decimal128(_, scale) => NumberValues::Decimal(
                array.as_primitive_opt::<Decimal128Type>()?.values(),
                10f64.powi(i32::from(*scale)),
            ),
            _ => return None,
        };
        Some(NumberColumn { array, values })
    }

    fn get(&self, i: usize) -> Result<f64, String> {
        if self.array.is_null(i) {
            return Err(NULL.to_string());
        }
        // Integers above 2^53 round to the nearest f64, as a CSV value of that size would.
        #[allow(clippy::cast_precision_loss)]
        let value = match &self.values {
            NumberValues::F64(v) => v.get(i).copied(),
            NumberValues::F32(v) => v.get(i).map(|&x| f64::from(x)),
            NumberValues::I8(v) => v.get(i).map(|&x| f64::from(x)),
            NumberValues::I16(v) => v.get(i).map(|&x| f64::from(x)),
            NumberValues::I32(v) => v.get(i).map(|&x| f64::from(x)),
            NumberValues::I64(v) => v.get(i).map(|&x| x as f64),
            NumberValues::U8(v) => v.get(i).map(|&x| f64::from(x)),
            NumberValues::U16(v) => v.get(i).map(|&x| f64::from(x)),
            NumberValues::U32(v) => v.get(i).map(|&x| f64::from(x)),
            NumberValues::U64(v) => v.get(i).map(|&x| x as f64),
            NumberValues::Decimal(v, divisor) => v.get(i).map(|&x| x as f64 / divisor),
        };
        value.ok_or_else(|| "value missing from the column; the file is corrupt".to_string())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{
        ArrayRef, Date32Array, Date64Array, Decimal128Array, Float32Array, Float64Array,
        Int32Array, Int64Array, Time32SecondArray, Time64NanosecondArray,
        TimestampMicrosecondArray, TimestampMillisecondArray, TimestampNanosecondArray,
        TimestampSecondArray, UInt32Array,
    };
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;

    use super::*;
    use crate::data::ingest::{DroppedRow, parse_file, validate};

    const DAY: i64 = 86_400;
    /// 2020-01-01 00:00:00 UTC.
    const T0: i64 = 1_577_836_800;

    /// A Parquet file of `columns`, `rows_per_group` rows per row group.
    fn write(columns: Vec<(&str, ArrayRef)>, rows_per_group: usize) -> Vec<u8> {
        let batch = RecordBatch::try_from_iter(columns).unwrap();
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(rows_per_group))
            .build();
        let mut out = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), Some(props)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        out
    }

    fn prices(n: usize) -> Vec<(&'static str, ArrayRef)> {
        let close: Vec<f64> = (0..n).map(|i| 10.0 + i as f64).collect();
        vec![
            (
                "Open",
                Arc::new(Float64Array::from(close.clone())) as ArrayRef,
            ),
            (
                "High",
                Arc::new(Float64Array::from(
                    close.iter().map(|c| c + 1.0).collect::<Vec<_>>(),
                )),
            ),
            (
                "Low",
                Arc::new(Float64Array::from(
                    close.iter().map(|c| c - 1.0).collect::<Vec<_>>(),
                )),
            ),
            ("Close", Arc::new(Float64Array::from(close))),
        ]
    }

    fn with_time(name: &'static str, time: ArrayRef, n: usize) -> Vec<(&'static str, ArrayRef)> {
        let mut cols = vec![(name, time)];
        cols.extend(prices(n));
        cols
    }

    fn parse(bytes: &[u8], opts: &IngestOptions) -> Result<Ingested, DataError> {
        parse_parquet(Path::new("data/X.parquet"), bytes, opts)
    }

    fn ok(bytes: &[u8]) -> Ingested {
        let got = parse(bytes, &IngestOptions::default()).unwrap();
        validate(&got.bars).unwrap();
        got
    }

    fn err(bytes: &[u8]) -> String {
        parse(bytes, &IngestOptions::default())
            .unwrap_err()
            .to_string()
    }

    const DROP: IngestOptions = IngestOptions {
        on_bad_rows: BadRows::Drop,
        start: None,
        end: None,
    };

    fn days(n: i64) -> Vec<i64> {
        (0..n).map(|i| T0 + i * DAY).collect()
    }

    #[test]
    fn every_timestamp_unit_and_date_type() {
        let secs = days(5);
        let expected = secs.clone();
        let scaled = |k: i64| secs.iter().map(|s| s * k + k / 3).collect::<Vec<_>>();
        let cases: Vec<(&str, ArrayRef)> = vec![
            ("s", Arc::new(TimestampSecondArray::from(secs.clone()))),
            (
                "ms",
                Arc::new(TimestampMillisecondArray::from(scaled(1_000))),
            ),
            (
                "us tz",
                Arc::new(
                    TimestampMicrosecondArray::from(scaled(1_000_000))
                        .with_timezone("America/New_York"),
                ),
            ),
            (
                "ns utc",
                Arc::new(
                    TimestampNanosecondArray::from(scaled(1_000_000_000)).with_timezone("UTC"),
                ),
            ),
            (
                "date32",
                Arc::new(Date32Array::from(
                    secs.iter().map(|s| (s / DAY) as i32).collect::<Vec<_>>(),
                )),
            ),
            (
                "date64",
                Arc::new(Date64Array::from(
                    secs.iter().map(|s| s * 1000).collect::<Vec<_>>(),
                )),
            ),
            ("int64", Arc::new(Int64Array::from(secs.clone()))),
            (
                "int32",
                Arc::new(Int32Array::from(
                    secs.iter().map(|&s| s as i32).collect::<Vec<_>>(),
                )),
            ),
            (
                "utf8",
                Arc::new(StringArray::from(
                    secs.iter()
                        .map(|&s| crate::data::ingest::fmt_ts(s))
                        .collect::<Vec<_>>(),
                )),
            ),
            (
                "large utf8",
                Arc::new(LargeStringArray::from(vec![
                    "01/01/2020",
                    "01/02/2020",
                    "2020-01-03",
                    "2020-01-04T00:00:00Z",
                    "2020-01-05 00:00",
                ])),
            ),
        ];
        for (what, array) in cases {
            let bytes = write(with_time("timestamp", array, 5), 2);
            let got = ok(&bytes);
            assert_eq!(got.bars.timestamps, expected, "{what}");
            assert_eq!(got.bars.close, vec![10.0, 11.0, 12.0, 13.0, 14.0], "{what}");
        }
        // YYYYMMDD integers in a date column.
        let ymd = Int32Array::from(vec![20200101, 20200102, 20200103, 20200104, 20200105]);
        assert_eq!(
            ok(&write(with_time("Date", Arc::new(ymd), 5), 5))
                .bars
                .timestamps,
            expected
        );
        // Milliseconds where seconds belong are caught as in CSV.
        let ms = Int64Array::from(secs.iter().map(|s| s * 1000).collect::<Vec<_>>());
        let m = err(&write(with_time("timestamp", Arc::new(ms), 5), 5));
        assert!(
            m.starts_with("data/X.parquet: row 1 (counting data rows from 1): column 'timestamp': Unix timestamp 1577836800000 is outside"),
            "{m}"
        );
    }

    #[test]
    fn date_and_time_columns() {
        let date = Date32Array::from(vec![18262, 18262, 18263]);
        let time = Time32SecondArray::from(vec![34_200, 34_500, 34_200]);
        let mut cols: Vec<(&str, ArrayRef)> =
            vec![("Date", Arc::new(date)), ("Time", Arc::new(time))];
        cols.extend(prices(3));
        let got = ok(&write(cols, 10));
        assert_eq!(
            got.bars.timestamps,
            vec![T0 + 34_200, T0 + 34_500, T0 + DAY + 34_200]
        );
        let date = StringArray::from(vec!["2020-01-01", "2020-01-01"]);
        let time = Time64NanosecondArray::from(vec![34_200_000_000_000, 90_000_000_000_000]);
        let mut cols: Vec<(&str, ArrayRef)> =
            vec![("Date", Arc::new(date)), ("Time", Arc::new(time))];
        cols.extend(prices(2));
        let m = err(&write(cols, 10));
        assert!(m.starts_with("data/X.parquet: row 2 (counting data rows from 1): column 'Time': time of day 90000 s"), "{m}");
    }

    #[test]
    fn every_price_type() {
        let n = 3;
        let ts: ArrayRef = Arc::new(TimestampSecondArray::from(days(3)));
        let cases: Vec<(&str, ArrayRef, ArrayRef)> = vec![
            (
                "f32",
                Arc::new(Float32Array::from(vec![10.5f32, 11.5, 12.5])),
                Arc::new(Float32Array::from(vec![100f32, 0.0, 7.0])),
            ),
            (
                "i64",
                Arc::new(Int64Array::from(vec![10, 11, 12])),
                Arc::new(Int64Array::from(vec![100, 0, 7])),
            ),
            (
                "i32",
                Arc::new(Int32Array::from(vec![10, 11, 12])),
                Arc::new(UInt32Array::from(vec![100, 0, 7])),
            ),
            (
                "decimal",
                Arc::new(
                    Decimal128Array::from(vec![1050i128, 1150, 1250])
                        .with_precision_and_scale(9, 2)
                        .unwrap(),
                ),
                Arc::new(Int32Array::from(vec![100, 0, 7])),
            ),
        ];
        for (what, close, volume) in cases {
            let cols: Vec<(&str, ArrayRef)> = vec![
                ("Datetime", ts.clone()),
                ("open", close.clone()),
                ("high", close.clone()),
                ("low", close.clone()),
                ("close", close),
                ("vol", volume),
            ];
            let got = ok(&write(cols, 2));
            assert_eq!(got.bars.timestamps.len(), n, "{what}");
            assert_eq!(got.bars.volume, vec![100.0, 0.0, 7.0], "{what}");
            let expected = if what == "f32" || what == "decimal" {
                vec![10.5, 11.5, 12.5]
            } else {
                vec![10.0, 11.0, 12.0]
            };
            assert_eq!(got.bars.close, expected, "{what}");
        }
        let mut cols = with_time(
            "timestamp",
            Arc::new(TimestampSecondArray::from(days(3))),
            3,
        );
        cols.push((
            "Adj Close",
            Arc::new(Float64Array::from(vec![5.0, 5.5, 6.0])),
        ));
        let got = ok(&write(cols, 2));
        assert_eq!(got.bars.close, vec![5.0, 5.5, 6.0]);
        assert_eq!(got.bars.open, vec![5.0, 5.5, 6.0]);
    }

    #[test]
    fn nulls_and_bad_values_name_row_and_column() {
        let close = Float64Array::from(vec![Some(10.0), Some(11.0), None, Some(13.0), Some(-1.0)]);
        let cols: Vec<(&str, ArrayRef)> = vec![
            (
                "Date",
                Arc::new(Date32Array::from(vec![18262, 18263, 18264, 18265, 18266])),
            ),
            (
                "Open",
                Arc::new(Float64Array::from(vec![10.0, 11.0, 12.0, 13.0, 14.0])),
            ),
            (
                "High",
                Arc::new(Float64Array::from(vec![10.0, 11.0, 12.0, 13.0, 14.0])),
            ),
            (
                "Low",
                Arc::new(Float64Array::from(vec![10.0, 11.0, 12.0, 13.0, 14.0])),
            ),
            ("Close", Arc::new(close)),
        ];
        // Row groups of 2: the null is in the second group, the negative price in the third.
        let bytes = write(cols, 2);
        let m = err(&bytes);
        assert!(m.starts_with("data/X.parquet: row 3 (counting data rows from 1): column 'Close': empty value (null) (fix the row"), "{m}");
        let got = parse(&bytes, &DROP).unwrap();
        assert_eq!(got.bars.close, vec![10.0, 11.0, 13.0]);
        assert_eq!(
            got.dropped,
            vec![
                DroppedRow {
                    file: "data/X.parquet".into(),
                    line: 3,
                    message: "column 'Close': empty value (null)".into()
                },
                DroppedRow {
                    file: "data/X.parquet".into(),
                    line: 5,
                    message: "column 'Close': close must be a finite positive price, got -1.0"
                        .into()
                },
            ]
        );
        let null_time = TimestampSecondArray::from(vec![Some(T0), None]);
        let m = err(&write(with_time("timestamp", Arc::new(null_time), 2), 2));
        assert!(m.starts_with("data/X.parquet: row 2 (counting data rows from 1): column 'timestamp': empty value (null)"), "{m}");
    }

    #[test]
    fn order_duplicates_and_window_work_across_row_groups() {
        // Descending over four row groups: sorted, with a note.
        let desc: Vec<i64> = days(7).into_iter().rev().collect();
        let got = ok(&write(
            with_time("timestamp", Arc::new(TimestampSecondArray::from(desc)), 7),
            2,
        ));
        assert_eq!(got.bars.timestamps, days(7));
        assert_eq!(got.notes.len(), 1);
        // A duplicate across row groups names both rows.
        let mut dup = days(5);
        dup[3] = dup[2];
        let bytes = write(
            with_time("timestamp", Arc::new(TimestampSecondArray::from(dup)), 5),
            3,
        );
        let m = err(&bytes);
        assert!(m.starts_with("data/X.parquet: row 4 (counting data rows from 1): column 'timestamp': duplicate timestamp 2020-01-03 00:00:00 (also on row 3)"), "{m}");
        assert_eq!(parse(&bytes, &DROP).unwrap().bars.timestamps.len(), 4);
        let window = IngestOptions {
            start: Some(T0 + DAY),
            end: Some(T0 + 3 * DAY),
            ..DROP
        };
        let got = parse(
            &write(
                with_time(
                    "timestamp",
                    Arc::new(TimestampSecondArray::from(days(5))),
                    5,
                ),
                2,
            ),
            &window,
        )
        .unwrap();
        assert_eq!(got.bars.timestamps, vec![T0 + DAY, T0 + 2 * DAY]);
    }

    #[test]
    fn many_row_groups_decode_in_parallel_to_the_same_bars() {
        let n = 5000;
        let bytes = write(
            with_time(
                "timestamp",
                Arc::new(TimestampSecondArray::from(days(n))),
                n as usize,
            ),
            97,
        );
        let many = ok(&bytes);
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| ok(&bytes));
        assert_eq!(many, one);
        assert_eq!(many.bars.timestamps, days(n));
    }

    #[test]
    fn file_level_problems() {
        let m = err(b"Date,Open,High,Low,Close\n2020-01-01,1,1,1,1\n");
        assert!(m.starts_with("data/X.parquet: not a Parquet file"), "{m}");
        assert!(err(b"").starts_with("data/X.parquet: the file is empty"));
        let good = write(
            with_time(
                "timestamp",
                Arc::new(TimestampSecondArray::from(days(3))),
                3,
            ),
            2,
        );
        for cut in [4, 8, good.len() / 2, good.len() - 1] {
            let m = err(&good[..cut]);
            assert!(m.contains("truncated"), "{cut}: {m}");
        }
        // The end magic in place but the footer broken.
        let mut broken = good.clone();
        let len = broken.len();
        broken[len - 8..len - 4].copy_from_slice(&[0xff, 0xff, 0xff, 0x7f]);
        assert!(err(&broken).contains("cannot read the Parquet metadata"));
        let m = err(&write(prices(2), 2));
        assert!(
            m.starts_with("data/X.parquet: column 'date': missing required column"),
            "{m}"
        );
        let floats = Float64Array::from(vec![1.0, 2.0]);
        let m = err(&write(with_time("timestamp", Arc::new(floats), 2), 2));
        assert!(
            m.starts_with("data/X.parquet: column 'timestamp': a Float64 column cannot hold times"),
            "{m}"
        );
        let mut cols = with_time(
            "timestamp",
            Arc::new(TimestampSecondArray::from(days(2))),
            2,
        );
        cols[4] = ("Close", Arc::new(StringArray::from(vec!["1", "2"])));
        let m = err(&write(cols, 2));
        assert!(
            m.starts_with("data/X.parquet: column 'Close': a Utf8 column cannot hold prices"),
            "{m}"
        );
        // Content decides over the name: a Parquet file named .csv is read as Parquet.
        let got = parse_file(Path::new("x.csv"), &good, &IngestOptions::default()).unwrap();
        assert_eq!(got.bars.timestamps, days(3));
    }

    #[test]
    fn corrupt_pages_never_panic() {
        let good = write(
            with_time(
                "timestamp",
                Arc::new(TimestampSecondArray::from(days(50))),
                50,
            ),
            7,
        );
        let mut state = 0x2545_F491_4F6C_DD1D_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..300 {
            let mut v = good.clone();
            for _ in 0..(next() % 4 + 1) {
                let i = (next() % v.len() as u64) as usize;
                v[i] = (next() & 0xff) as u8;
            }
            for mode in [IngestOptions::default(), DROP] {
                if let Ok(got) = parse(&v, &mode) {
                    validate(&got.bars).unwrap();
                }
            }
        }
    }
}
