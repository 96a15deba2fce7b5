//! The `ingest` stage: CSV bytes -> validated [`Bars`].
//!
//! Accepted layouts (header names are matched after lowercasing and dropping everything that is
//! not a letter or digit, so `Adj Close`, `adj_close` and `<CLOSE>` all work):
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
//! Rows may come in any order (exports are often newest first); they are sorted by time.
//! Every problem is reported as `file:line: column 'name': what is wrong`, line 1 being the
//! header. OHLC consistency allows a relative tolerance of [`OHLC_TOLERANCE`] for float noise in
//! exported files; values inside that tolerance are clamped so the invariant holds exactly.

use std::fmt;
use std::path::Path;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime};

use super::Bars;

/// Relative slack for `high >= max(open, close)` and `low <= min(open, close)`: exporters that
/// round each column separately produce violations around 1e-15; real errors are far larger.
pub const OHLC_TOLERANCE: f64 = 1e-9;

/// Unix seconds outside 1900..2200 are almost certainly milliseconds or garbage.
const MIN_UNIX: i64 = -2_208_988_800;
const MAX_UNIX: i64 = 7_258_118_400;

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

/// The bar columns whose values [`check_row`] validates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Open,
    High,
    Low,
    Close,
    Volume,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::Open => "open",
            Field::High => "high",
            Field::Low => "low",
            Field::Close => "close",
            Field::Volume => "volume",
        }
    }
}

/// The per-row rules shared by CSV ingest and [`validate`]: finite positive prices, OHLC
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
/// row, strictly increasing timestamps, and the per-row price/volume rules of CSV ingest.
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

/// Where each role lives in the header (index and the name as written).
#[derive(Default)]
struct Columns {
    found: Vec<(Role, usize)>,
}

impl Columns {
    fn get(&self, r: Role) -> Option<usize> {
        self.found.iter().find(|(x, _)| *x == r).map(|&(_, i)| i)
    }
}

/// How a row's timestamp is assembled from its columns.
enum TimeSource {
    /// One column holding a full date-time or Unix seconds.
    Single { col: usize, allow_unix: bool },
    /// A date column plus a time-of-day column.
    DateAndTime { date: usize, time: usize },
}

/// Reads a CSV of bars. `path_for_messages` only names the file in errors.
///
/// Never panics, whatever the bytes: every problem is a [`DataError::Source`] naming the file,
/// the 1-based line and, where one is to blame, the column.
pub fn parse_csv(path_for_messages: &Path, bytes: &[u8]) -> Result<Bars, DataError> {
    let file = path_for_messages.display().to_string();
    let err = |line: u64, column: Option<&str>, message: String| DataError::Source {
        file: file.clone(),
        line,
        column: column.map(str::to_string),
        message,
    };
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    // One record buffer, reused for every row (what `byte_records()` would allocate anew).
    let mut header = csv::ByteRecord::new();
    match reader.read_byte_record(&mut header) {
        Ok(false) => return Err(err(1, None, "the file is empty (no header row)".into())),
        Err(e) => return Err(csv_error(&file, &e)),
        Ok(true) => {}
    }
    let header_line = header.position().map_or(1, |p| p.line());
    let names: Vec<String> = header
        .iter()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    let name_of = |i: usize| names.get(i).map_or("?", String::as_str);

    let mut columns = Columns::default();
    for (i, name) in names.iter().enumerate() {
        let Some(r) = role(&normalise(name)) else {
            continue;
        };
        if let Some(prev) = columns.get(r) {
            return Err(err(
                header_line,
                Some(name),
                format!(
                    "column appears twice (columns {} '{}' and {} '{}' mean the same)",
                    prev + 1,
                    name_of(prev),
                    i + 1,
                    name
                ),
            ));
        }
        columns.found.push((r, i));
    }
    let found_list = || {
        names
            .iter()
            .map(|n| format!("'{n}'"))
            .collect::<Vec<_>>()
            .join(", ")
    };

    let time_source = match (
        columns.get(Role::DateTime),
        columns.get(Role::Date),
        columns.get(Role::Time),
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
            return Err(err(
                header_line,
                Some("date"),
                format!(
                    "missing required column (a date, datetime or timestamp column); found {}",
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
        *slot = columns.get(r).ok_or_else(|| {
            err(
                header_line,
                Some(label),
                format!("missing required column; found {}", found_list()),
            )
        })?;
    }
    let [c_open, c_high, c_low, c_close] = required;
    let c_adj = columns.get(Role::AdjClose);
    let c_volume = columns.get(Role::Volume);

    // Data rows are roughly the same length: reserve from the first data line's length.
    let line_len = |from: usize| {
        let rest = bytes.get(from..).unwrap_or_default();
        rest.iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| i + 1)
    };
    let first_row_len = line_len(line_len(0)).max(16);
    let mut rows: Vec<Row> = Vec::with_capacity(bytes.len() / first_row_len + 1);
    let mut record = csv::ByteRecord::new();
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(csv_error(&file, &e)),
        }
        let line = record.position().map_or(0, |p| p.line());
        let text = |col: usize| -> Result<&str, DataError> {
            let raw = record.get(col).unwrap_or_default();
            std::str::from_utf8(raw)
                .map_err(|_| err(line, Some(name_of(col)), "invalid UTF-8 in value".into()))
        };
        let number = |col: usize| -> Result<f64, DataError> {
            let s = text(col)?;
            if s.is_empty() {
                return Err(err(line, Some(name_of(col)), "empty value".into()));
            }
            s.parse::<f64>().map_err(|_| {
                err(
                    line,
                    Some(name_of(col)),
                    format!("cannot parse '{}' as a number", shorten(s)),
                )
            })
        };
        let timestamp = match time_source {
            TimeSource::Single { col, allow_unix } => parse_datetime(text(col)?, allow_unix)
                .map_err(|m| err(line, Some(name_of(col)), m))?,
            TimeSource::DateAndTime { date, time } => {
                let d = parse_date(text(date)?).map_err(|m| err(line, Some(name_of(date)), m))?;
                let t = parse_time(text(time)?).map_err(|m| err(line, Some(name_of(time)), m))?;
                d.and_time(t).and_utc().timestamp()
            }
        };
        let open = number(c_open)?;
        let high = number(c_high)?;
        let low = number(c_low)?;
        let close = number(c_close)?;
        let volume = match c_volume {
            Some(c) => number(c)?,
            None => 0.0,
        };
        check_row(open, high, low, close, volume).map_err(|(field, message)| {
            let col = match field {
                Field::Open => c_open,
                Field::High => c_high,
                Field::Low => c_low,
                Field::Close => c_close,
                Field::Volume => c_volume.unwrap_or(c_close),
            };
            err(line, Some(name_of(col)), message)
        })?;
        let adj = match c_adj {
            Some(c) => {
                let a = number(c)?;
                if !a.is_finite() || a <= 0.0 {
                    return Err(err(
                        line,
                        Some(name_of(c)),
                        format!("adjusted close must be a finite positive price, got {a:?}"),
                    ));
                }
                Some(a)
            }
            None => None,
        };
        rows.push(Row {
            line,
            timestamp,
            open,
            high,
            low,
            close,
            adj,
            volume,
        });
    }
    if rows.is_empty() {
        return Err(err(
            header_line,
            None,
            "no data rows after the header".into(),
        ));
    }

    // Stable: equal timestamps keep file order, so the duplicate check names lines in order.
    rows.sort_by_key(|r| r.timestamp);
    let time_col = match time_source {
        TimeSource::Single { col, .. } | TimeSource::DateAndTime { date: col, .. } => col,
    };
    for pair in rows.windows(2) {
        if let [a, b] = pair
            && a.timestamp == b.timestamp
        {
            let (first, second) = (a.line.min(b.line), a.line.max(b.line));
            return Err(err(
                second,
                Some(name_of(time_col)),
                format!(
                    "duplicate timestamp {} (also on line {first})",
                    fmt_ts(a.timestamp)
                ),
            ));
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
        let (mut o, mut h, mut l, mut c) = (r.open, r.high, r.low, r.close);
        if let Some(adj) = r.adj {
            let factor = adj / c;
            o *= factor;
            h *= factor;
            l *= factor;
            c = adj;
            // An adjustment factor far outside any real split or dividend can overflow
            // (or flush to zero) the scaled prices.
            if let Some(bad) = [o, h, l].into_iter().find(|x| !x.is_finite() || *x <= 0.0) {
                return Err(err(
                    r.line,
                    c_adj.map(name_of),
                    format!(
                        "adjusted close {adj:?} against close {:?} scales the prices to {bad:?}; \
                         check the adjusted close column",
                        r.close
                    ),
                ));
            }
        }
        // Clamp tolerance-level violations (and the rounding of the adjustment) so
        // high >= max(open, close) and low <= min(open, close) hold exactly downstream.
        h = h.max(o).max(c);
        l = l.min(o).min(c);
        bars.timestamps.push(r.timestamp);
        bars.open.push(o);
        bars.high.push(h);
        bars.low.push(l);
        bars.close.push(c);
        bars.volume.push(r.volume);
    }
    Ok(bars)
}

/// One parsed CSV row, before sorting and adjustment.
struct Row {
    line: u64,
    timestamp: i64,
    open: f64,
    high: f64,
    low: f64,
    close: f64,
    adj: Option<f64>,
    volume: f64,
}

fn csv_error(file: &str, e: &csv::Error) -> DataError {
    let (line, message) = match e.kind() {
        csv::ErrorKind::UnequalLengths {
            pos,
            expected_len,
            len,
        } => (
            pos.as_ref().map_or(0, |p| p.line()),
            format!("row has {len} fields but the header has {expected_len}"),
        ),
        _ => (e.position().map_or(0, |p| p.line()), e.to_string()),
    };
    DataError::Source {
        file: file.to_string(),
        line,
        column: None,
        message,
    }
}

/// Long garbage values are cut in messages.
fn shorten(s: &str) -> String {
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
fn parse_date(s: &str) -> Result<NaiveDate, String> {
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
fn parse_time(s: &str) -> Result<NaiveTime, String> {
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
fn parse_datetime(s: &str, allow_unix: bool) -> Result<i64, String> {
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

// TEMPORARY integration shim (replaced by the ingest branch's row pipeline on merge).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BadRows {
    #[default]
    Error,
    Drop,
}
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IngestOptions {
    pub on_bad_rows: BadRows,
    pub start: Option<i64>,
    pub end: Option<i64>,
}
#[derive(Debug, Clone, PartialEq)]
pub struct DroppedRow {
    pub file: String,
    pub line: u64,
    pub message: String,
}
#[derive(Debug, Clone, PartialEq)]
pub struct Ingested {
    pub bars: Bars,
    pub dropped: Vec<DroppedRow>,
    pub notes: Vec<String>,
}
pub fn parse_csv_with(
    path_for_messages: &Path,
    bytes: &[u8],
    _opts: &IngestOptions,
) -> Result<Ingested, DataError> {
    Ok(Ingested {
        bars: parse_csv(path_for_messages, bytes)?,
        dropped: vec![],
        notes: vec![],
    })
}
pub fn parse_files(
    files: &[(std::path::PathBuf, Vec<u8>)],
    opts: &IngestOptions,
) -> Result<Ingested, DataError> {
    let (p, b) = files
        .first()
        .ok_or_else(|| DataError::Dataset("no files".into()))?;
    parse_csv_with(p, b, opts)
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
        assert_eq!(m, "x.csv:2: column 'Open': invalid UTF-8 in value");
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
