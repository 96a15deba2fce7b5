//! The `ingest` stage for Parquet files (through the arrow-rs `parquet` crate).
//!
//! Columns are found by name exactly as in CSV ([`super`]: `Date`, `Adj Close`,
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
//!
//! `decode` turns a row group's Arrow columns into checked rows; this file finds the
//! columns, checks their types and hands the rows to the shared pipeline.

mod decode;
#[cfg(test)]
mod tests;

use std::path::Path;

use arrow_schema::DataType;
use bytes::Bytes;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use rayon::prelude::*;

use super::columns::{Layout, TimeSource, resolve_map};
use super::pipeline::{
    BadRows, IngestOptions, Ingested, Source, Validated, finish_one, validate_rows,
};
use super::rows::Row;
use super::{DataError, shorten};
use decode::{GroupReader, GroupRows};

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
    finish_one(validate_parquet(path_for_messages, bytes, opts)?, opts)
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
    opts: &IngestOptions,
) -> Result<Validated, DataError> {
    let mode = opts.on_bad_rows;
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
        let mapped = resolve_map(&opts.columns, &names)
            .map_err(|(column, message)| source.file_error(Some(&column), message))?;
        let layout = Layout::from_names(&names, &mapped)
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
