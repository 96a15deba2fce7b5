//! Decoding one row group: Arrow columns of any supported type (timestamps, dates, times,
//! strings, floats, integers, decimals) to checked rows, nulls and bad values as problems.

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
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ParquetRecordBatchReaderBuilder};

use super::super::columns::{Layout, TimeSource};
use super::super::dates::{MAX_UNIX, MIN_UNIX, parse_date, parse_datetime, parse_time};
use super::super::pipeline::{BadRows, Problem, Source};
use super::super::rows::{RawBar, Row, make_row};
use super::super::{DataError, shorten};
use super::{BATCH_ROWS, SECONDS_PER_DAY, TimeUse};

/// What one row group gave.
pub(super) struct GroupRows {
    pub(super) rows: Vec<Row>,
    /// Under [`BadRows::Error`], at most one: reading stops at the first.
    pub(super) problems: Vec<Problem>,
}

/// Everything a row group's decoder needs, shared by all groups.
pub(super) struct GroupReader<'a> {
    pub(super) data: &'a Bytes,
    pub(super) meta: &'a ArrowReaderMetadata,
    pub(super) mask: &'a ProjectionMask,
    pub(super) layout: &'a Layout,
    /// The projected columns (original indexes, ascending): batch column `k` is `columns[k]`.
    pub(super) columns: &'a [usize],
    pub(super) names: &'a [String],
    pub(super) source: &'a Source,
    pub(super) mode: BadRows,
}

impl GroupReader<'_> {
    pub(super) fn read(&self, group: usize, first_row: u64) -> Result<GroupRows, DataError> {
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
    pub(super) fn read_batch(
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

    pub(super) fn unexpected_type(&self, col: usize, a: &dyn Array) -> DataError {
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
pub(super) enum BatchTime<'a> {
    Single(usize, TimeColumn<'a>, TimeUse),
    DateAndTime(usize, TimeColumn<'a>, usize, TimeColumn<'a>),
}

/// One batch's columns, each with its index in the file's schema (for messages).
pub(super) struct BatchColumns<'a> {
    pub(super) time: BatchTime<'a>,
    pub(super) open: (usize, NumberColumn<'a>),
    pub(super) high: (usize, NumberColumn<'a>),
    pub(super) low: (usize, NumberColumn<'a>),
    pub(super) close: (usize, NumberColumn<'a>),
    pub(super) adj: Option<(usize, NumberColumn<'a>)>,
    pub(super) volume: Option<(usize, NumberColumn<'a>)>,
}

impl BatchColumns<'_> {
    /// Row `i` of the batch (data row `at` of the file) as a checked row; the error names
    /// the column index to blame.
    pub(super) fn row(&self, i: usize, at: u64, layout: &Layout) -> Result<Row, (usize, String)> {
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

pub(super) const NULL: &str = "empty value (null)";

/// A time column of one batch, by type.
pub(super) struct TimeColumn<'a> {
    pub(super) array: &'a dyn Array,
    pub(super) values: TimeValues<'a>,
}

pub(super) enum TimeValues<'a> {
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

pub(super) fn per_second(unit: &TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => 1,
        TimeUnit::Millisecond => 1_000,
        TimeUnit::Microsecond => 1_000_000,
        TimeUnit::Nanosecond => 1_000_000_000,
    }
}

impl<'a> TimeColumn<'a> {
    pub(super) fn new(array: &'a dyn Array) -> Option<TimeColumn<'a>> {
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
    pub(super) fn seconds(&self, i: usize, usage: TimeUse) -> Result<i64, String> {
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

pub(super) fn midnight(d: NaiveDate) -> i64 {
    d.and_time(NaiveTime::MIN).and_utc().timestamp()
}

/// An integer timestamp, checked as CSV checks a Unix-seconds column.
pub(super) fn unix_seconds(ts: i64) -> Result<i64, String> {
    // `20220527` in a timestamp column is a date, not 1970-08-23 (as in CSV).
    if (10_000_000..=99_999_999).contains(&ts) {
        return yyyymmdd(ts).map_err(|_| {
            format!(
                "{ts} is neither a YYYYMMDD date nor plausible Unix seconds (eight digits are \
                 1970-1973); write the timestamps as dates or as Unix seconds of today's years"
            )
        });
    }
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
pub(super) fn yyyymmdd(v: i64) -> Result<i64, String> {
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

pub(super) fn time_of_day(seconds: i64) -> Result<i64, String> {
    if (0..SECONDS_PER_DAY).contains(&seconds) {
        Ok(seconds)
    } else {
        Err(format!(
            "time of day {seconds} s is not within a day (0..86400 s)"
        ))
    }
}

/// A price or volume column of one batch, by type.
pub(super) struct NumberColumn<'a> {
    pub(super) array: &'a dyn Array,
    pub(super) values: NumberValues<'a>,
}

pub(super) enum NumberValues<'a> {
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
    pub(super) fn new(array: &'a dyn Array) -> Option<NumberColumn<'a>> {
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

    pub(super) fn get(&self, i: usize) -> Result<f64, String> {
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
