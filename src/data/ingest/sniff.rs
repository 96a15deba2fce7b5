//! Which layout a CSV file is in, from its first lines: the text encoding (UTF-8, or UTF-16
//! decoded here), the delimiter, the header row(s), the columns each recognised layout
//! names its own way, and how its numbers and timestamps are spelled. `data.format` and
//! `data.columns` override what is found.
//!
//! Recognised by their headers: the nasdaq.com export (`Close/Last`, `$` prices), yfinance
//! 0.2.51 and later `download()` files (three header rows: Price / Ticker / Date), Binance klines
//! (an `open_time` header, or none: twelve columns, open time in milliseconds), Stooq bulk
//! files (`<TICKER>,<PER>,<DATE>,<TIME>,...`), Investing.com exports (`Price`, `Vol.` as
//! `80.44M`, `Change %`), MetaTrader 5 exports (`<DATE>\t<TIME>\t<OPEN>...`), files
//! separated by semicolons (with decimal commas) or tabs, and an intraday file whose header
//! lacks the `Time` column its rows have. A file in none of them reads as before.

use std::borrow::Cow;

use super::columns::{Layout, Role, TimeSource, normalise, resolve_map, role};
use super::dates::{Spelling, TimeFormat, parse_datetime, parse_time};
use super::format::{ColumnMap, FileFormat};
use super::numbers::NumberFormat;

/// Records read to recognise a layout.
const SAMPLE: usize = 32;

/// Column names of Binance klines files (data.binance.vision), which have no header.
const BINANCE: [&str; 12] = [
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "count",
    "taker_buy_volume",
    "taker_buy_quote_volume",
    "ignore",
];

/// How to read one CSV file.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Plan {
    pub delimiter: u8,
    /// Records before the first data row (header rows; 0 without a header).
    pub skip: usize,
    /// One name per column of the data rows.
    pub names: Vec<String>,
    /// Roles given a column by `data.columns` or by the layout.
    pub mapped: Vec<(Role, usize)>,
    pub numbers: NumberFormat,
    pub time: TimeFormat,
    /// What was recognised, for the ingest summary; `None` for a plain file.
    pub layout: Option<String>,
    /// Said after a header that cannot be read: what the file looks like.
    pub header_hint: String,
}

/// The bytes of a file as UTF-8 text: a UTF-8 byte-order mark is dropped, UTF-16 (with a
/// byte-order mark, or ASCII text with every other byte zero) is decoded.
pub(super) fn decode(bytes: &[u8]) -> Result<(Cow<'_, [u8]>, Option<&'static str>), String> {
    if let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
        return Ok((Cow::Borrowed(rest), None));
    }
    let zeros_at = |odd: bool| {
        bytes.len() >= 8
            && bytes[..8]
                .iter()
                .enumerate()
                .all(|(i, &b)| (b == 0) == ((i % 2 == 1) == odd))
    };
    let (little, body, name) = if let Some(rest) = bytes.strip_prefix(b"\xFF\xFE") {
        (true, rest, "UTF-16 (little-endian)")
    } else if let Some(rest) = bytes.strip_prefix(b"\xFE\xFF") {
        (false, rest, "UTF-16 (big-endian)")
    } else if zeros_at(true) {
        (true, bytes, "UTF-16 (little-endian, no byte-order mark)")
    } else if zeros_at(false) {
        (false, bytes, "UTF-16 (big-endian, no byte-order mark)")
    } else {
        return Ok((Cow::Borrowed(bytes), None));
    };
    if body.len() % 2 != 0 {
        return Err(format!(
            "the file is {name} but has an odd number of bytes; it is truncated: export it again"
        ));
    }
    let units = body.chunks_exact(2).map(|p| {
        if little {
            u16::from_le_bytes([p[0], p[1]])
        } else {
            u16::from_be_bytes([p[0], p[1]])
        }
    });
    let mut text = String::with_capacity(body.len() / 2);
    for (i, c) in char::decode_utf16(units).enumerate() {
        match c {
            Ok(c) => text.push(c),
            Err(_) => {
                return Err(format!(
                    "the file is {name} with an invalid character at byte {}; save it as UTF-8",
                    2 * i
                ));
            }
        }
    }
    // A byte-order mark written twice (some tools do) is not part of the header.
    let text = text
        .strip_prefix('\u{feff}')
        .map(str::to_string)
        .unwrap_or(text);
    Ok((Cow::Owned(text.into_bytes()), Some(name)))
}

/// The first records of `bytes` split on `delimiter`, fields trimmed.
fn sample(bytes: &[u8], delimiter: u8) -> Vec<Vec<String>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(bytes);
    let mut out = Vec::new();
    let mut record = csv::ByteRecord::new();
    while out.len() < SAMPLE {
        match reader.read_byte_record(&mut record) {
            Ok(true) => out.push(
                record
                    .iter()
                    .map(|f| String::from_utf8_lossy(f.trim_ascii()).into_owned())
                    .collect(),
            ),
            _ => break,
        }
    }
    out
}

/// Header names a layout uses for a role under another name.
fn layout_alias(normalised: &str) -> bool {
    matches!(normalised, "closelast" | "price" | "opentime" | "tickvol")
}

/// How many of `header`'s names hft recognises.
fn score(header: &[String]) -> usize {
    header
        .iter()
        .map(|n| normalise(n))
        .filter(|n| role(n).is_some() || layout_alias(n))
        .count()
}

/// Binance klines without a header: twelve fields, the first a millisecond (or microsecond)
/// time.
fn is_headerless_binance(first: &[String]) -> bool {
    first.len() == BINANCE.len()
        && first
            .first()
            .is_some_and(|f| (13..=16).contains(&f.len()) && f.bytes().all(|b| b.is_ascii_digit()))
}

fn delimiter_name(d: u8) -> String {
    match d {
        b'\t' => "tab".to_string(),
        b';' => "semicolon".to_string(),
        b'|' => "pipe".to_string(),
        b',' => "comma".to_string(),
        other => format!("'{}'", char::from(other)),
    }
}

/// The plan for `bytes` (already decoded) under the user's declarations. The error names
/// the setting to blame (`data.columns.close`) or the column, and what is wrong.
pub(super) fn plan(
    bytes: &[u8],
    format: &FileFormat,
    columns: &ColumnMap,
) -> Result<Plan, (String, String)> {
    let candidates: Vec<u8> = match format.delimiter_byte() {
        Some(d) => vec![d],
        None => vec![b',', b';', b'\t', b'|'],
    };
    let headerless = format.header == Some(false);
    // The delimiter under which the header names the most roles; without any, the one that
    // splits the first line the most (so a message lists the names), commas on a tie.
    // (delimiter, sampled records, (roles named, fields of the first line)).
    type Candidate = (u8, Vec<Vec<String>>, (usize, usize));
    let mut best: Option<Candidate> = None;
    for &d in &candidates {
        let records = sample(bytes, d);
        let first = records.first().map(Vec::as_slice).unwrap_or_default();
        let key = if headerless {
            (0, first.len())
        } else {
            (score(first), first.len())
        };
        if best.as_ref().is_none_or(|(_, _, k)| key > *k) {
            best = Some((d, records, key));
        }
    }
    let Some((delimiter, records, _)) = best else {
        return Err(("".into(), "no delimiter to try".into()));
    };
    let first: Vec<String> = records.first().cloned().unwrap_or_default();
    let mut layouts: Vec<String> = Vec::new();
    let mut numbers = NumberFormat::PLAIN;
    let mut time = TimeFormat::AUTO;
    let mut mapped: Vec<(Role, usize)> = Vec::new();
    let mut skip = 1usize;
    let mut names = first.clone();
    let norm: Vec<String> = first.iter().map(|n| normalise(n)).collect();
    let has = |n: &str| norm.iter().position(|x| x == n);
    if headerless {
        skip = 0;
        let width = first.len();
        names = (1..=width).map(|i| format!("column {i}")).collect();
    } else if score(&first) == 0 && is_headerless_binance(&first) {
        skip = 0;
        names = BINANCE.iter().map(|s| s.to_string()).collect();
        mapped.push((Role::DateTime, 0));
        time.spelling = Spelling::UnixMillis;
        layouts.push("Binance klines (no header; open time in milliseconds)".into());
    } else if norm.first().is_some_and(|n| n == "price")
        && records
            .get(1)
            .and_then(|r| r.first())
            .is_some_and(|f| normalise(f) == "ticker")
    {
        let tickers: std::collections::BTreeSet<&str> = records
            .get(1)
            .map(|r| {
                r.iter()
                    .skip(1)
                    .map(String::as_str)
                    .filter(|t| !t.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if tickers.len() > 1 {
            return Err((
                "Ticker".into(),
                format!(
                    "a yfinance download of {} tickers ({}) in one file; hft reads one symbol \
                     per file: download each ticker on its own (or save \
                     `df.xs(ticker, axis=1, level=1)` per ticker)",
                    tickers.len(),
                    tickers.iter().copied().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        let third = records.get(2).and_then(|r| r.first()).map(|f| normalise(f));
        let date_row = matches!(third.as_deref(), Some("date" | "datetime"));
        skip = if date_row { 3 } else { 2 };
        if let Some(n) = names.first_mut() {
            *n = match (date_row, records.get(2).and_then(|r| r.first())) {
                (true, Some(f)) => f.clone(),
                _ => "Date".to_string(),
            };
        }
        layouts.push("yfinance download() (Price / Ticker / Date header rows)".into());
    } else if let Some(c) = has("closelast") {
        mapped.push((Role::Close, c));
        numbers.currency = Some("$".into());
        numbers.thousands = Some(',');
        layouts.push("nasdaq.com export (Close/Last, prices as $173.07)".into());
    } else if let Some(c) = has("price")
        && has("close").is_none()
        && (has("changepct").is_some() || has("change").is_some())
    {
        mapped.push((Role::Close, c));
        numbers.suffixes = true;
        numbers.thousands = Some(',');
        layouts.push("Investing.com export (Price, Vol. as 80.44M)".into());
    } else if has("ticker").is_some() && has("per").is_some() && has("date").is_some() {
        layouts.push("Stooq bulk file (<TICKER>,<PER>,<DATE>,<TIME>,...)".into());
    } else if first.iter().all(|n| n.starts_with('<'))
        && (has("tickvol").is_some() || has("spread").is_some())
    {
        layouts.push("MetaTrader 5 export (<DATE> <TIME> <OPEN> ...)".into());
    } else if let Some(c) = has("opentime") {
        mapped.push((Role::DateTime, c));
        time.spelling = Spelling::UnixMillis;
        layouts.push("Binance klines (open time in milliseconds)".into());
    }
    let data_rows = records.get(skip..).unwrap_or_default();

    // The user's mapping wins over the layout's, role by role and column by column.
    let user = resolve_map(columns, &names)?;
    mapped.retain(|(r, c)| !user.iter().any(|(ur, uc)| ur == r || uc == c));
    if user
        .iter()
        .any(|(r, _)| matches!(r, Role::DateTime | Role::Date | Role::Time))
    {
        mapped.retain(|(r, _)| !matches!(r, Role::DateTime | Role::Date | Role::Time));
        if time.spelling == Spelling::UnixMillis {
            time.spelling = Spelling::Auto;
        }
    }
    mapped.extend(user);

    // An intraday file whose header lacks the `Time` its rows have after the date.
    if !headerless
        && let Ok(layout) = Layout::from_names(&names, &mapped)
        && let TimeSource::Single {
            col,
            allow_unix: false,
        } = layout.time
        && !data_rows.is_empty()
        && data_rows.iter().all(|r| {
            r.len() == names.len() + 1 && r.get(col + 1).is_some_and(|t| parse_time(t).is_ok())
        })
    {
        names.insert(col + 1, "Time".to_string());
        for (_, c) in mapped.iter_mut() {
            if *c > col {
                *c += 1;
            }
        }
        layouts.push(format!(
            "the header lacks the Time column its rows have: column {} read as the time",
            col + 2
        ));
    }

    // A comma in the numbers of a file not separated by commas is a decimal comma;
    // the thousands separator of such files is a dot (strictly between groups of three).
    let comma_decimals = delimiter != b','
        && data_rows
            .iter()
            .flatten()
            .any(|f| f.contains(',') && f.bytes().any(|b| b.is_ascii_digit()));
    if comma_decimals {
        numbers.decimal = b',';
        numbers.thousands = Some('.');
    }
    if let Some(d) = format.decimal_byte() {
        numbers.decimal = d;
        if d == b',' && numbers.thousands == Some(',') {
            numbers.thousands = None;
        }
        if d == b'.' && numbers.thousands == Some('.') {
            numbers.thousands = None;
        }
    }
    if format.thousands.is_some() {
        numbers.thousands = format.thousands_char();
    }
    if let Some(c) = &format.currency {
        numbers.currency = Some(c.clone());
    }
    if delimiter != b',' {
        let mut described = format!("{}-separated", delimiter_name(delimiter));
        if numbers.decimal == b',' {
            described.push_str(", decimal comma");
        }
        layouts.push(described);
    }
    if format.date.is_some() || format.time_zone.is_some() {
        let declared =
            TimeFormat::declared(format.date.as_deref(), format.offset_seconds().unwrap_or(0));
        if format.date.is_some() {
            time.spelling = declared.spelling;
        }
        time.offset = declared.offset;
    }

    let mut header_hint = String::new();
    if !headerless {
        if first
            .first()
            .is_some_and(|f| parse_datetime(f, true).is_ok())
        {
            header_hint = "; the first line looks like data, not a header: add a header row \
                           (Date,Open,High,Low,Close,Volume), or set `data.format.header: false` \
                           and map the columns by position in `data.columns`"
                .to_string();
        } else if score(&first) == 0 {
            header_hint = format!(
                "; no column name is one hft knows{}: map them in `data.columns` (e.g. \
                 `data.columns: {{date: Datum, close: Schluss}}`{})",
                if delimiter == b',' {
                    String::new()
                } else {
                    format!(" (read as {}-separated)", delimiter_name(delimiter))
                },
                if first.len() <= 1 {
                    ", and set `data.format.delimiter` if the columns are not separated by \
                     commas"
                } else {
                    ""
                }
            );
        }
    }
    Ok(Plan {
        delimiter,
        skip,
        names,
        mapped,
        numbers,
        time,
        layout: (!layouts.is_empty()).then(|| layouts.join("; ")),
        header_hint,
    })
}
