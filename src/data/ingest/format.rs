//! What a user declares about a data file when hft cannot tell by itself: `data.columns`
//! (which column holds each of hft's roles, by name or by position) and `data.format`
//! (delimiter, decimal mark, thousands separator, currency symbol, date spelling, time zone,
//! whether there is a header). Both are empty by default: known layouts are recognised from
//! their headers ([`super::sniff`]), and what is declared here overrides what was guessed.

use serde::{Deserialize, Serialize};

/// A column named as in the header (`Close/Last`) or by position (1 is the first column).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ColumnRef {
    Position(usize),
    Name(String),
}

impl std::fmt::Display for ColumnRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ColumnRef::Position(i) => write!(f, "column {i}"),
            ColumnRef::Name(n) => write!(f, "'{n}'"),
        }
    }
}

/// `data.columns`: hft's roles mapped to a file's columns. A role left out is found by its
/// usual names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ColumnMap {
    /// A full date-time, or Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<ColumnRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date: Option<ColumnRef>,
    /// The time of day beside `date`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<ColumnRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open: Option<ColumnRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub high: Option<ColumnRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub low: Option<ColumnRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub close: Option<ColumnRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adj_close: Option<ColumnRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume: Option<ColumnRef>,
}

impl ColumnMap {
    pub const NONE: ColumnMap = ColumnMap {
        timestamp: None,
        date: None,
        time: None,
        open: None,
        high: None,
        low: None,
        close: None,
        adj_close: None,
        volume: None,
    };

    pub fn is_empty(&self) -> bool {
        self == &ColumnMap::NONE
    }

    /// `(key, column)` of every mapped role, in the order of the fields.
    pub fn entries(&self) -> Vec<(&'static str, &ColumnRef)> {
        [
            ("timestamp", &self.timestamp),
            ("date", &self.date),
            ("time", &self.time),
            ("open", &self.open),
            ("high", &self.high),
            ("low", &self.low),
            ("close", &self.close),
            ("adj_close", &self.adj_close),
            ("volume", &self.volume),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
        .collect()
    }

    /// Range checks: `(key, message)` for the first bad entry.
    pub fn check(&self) -> Result<(), (String, String)> {
        let entries = self.entries();
        for (i, (key, col)) in entries.iter().enumerate() {
            let full = format!("data.columns.{key}");
            match col {
                ColumnRef::Position(0) => {
                    return Err((full, "positions count from 1 (the first column)".into()));
                }
                ColumnRef::Position(p) if *p > 10_000 => {
                    return Err((full, format!("position {p} is beyond 10000 columns")));
                }
                ColumnRef::Name(n) if n.trim().is_empty() => {
                    return Err((full, "needs a column name or a position".into()));
                }
                _ => {}
            }
            if let Some((other, _)) = entries[..i].iter().find(|(_, c)| c == col) {
                return Err((
                    full,
                    format!("{col} is also mapped to data.columns.{other}; map each column once"),
                ));
            }
        }
        if self.timestamp.is_some() && (self.date.is_some() || self.time.is_some()) {
            return Err((
                "data.columns.timestamp".into(),
                "map either `timestamp` (a full date-time) or `date` (with an optional `time`), \
                 not both"
                    .into(),
            ));
        }
        if self.time.is_some() && self.date.is_none() {
            return Err((
                "data.columns.time".into(),
                "a `time` column needs a `date` column beside it (or map a full date-time as \
                 `timestamp`)"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// `data.format`: how a CSV file spells its values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileFormat {
    /// One character: `","`, `";"`, `"\t"` (or `tab`), `"|"`. Default: found from the header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delimiter: Option<String>,
    /// `"."` or `","`. Default: `.`, or `,` in a file not separated by commas whose numbers
    /// have commas.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decimal: Option<String>,
    /// `","`, `"."`, `" "` or `"'"`, between groups of three digits. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thousands: Option<String>,
    /// A currency symbol written before or after prices (`"$"`, `"€"`), dropped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// `unix` (seconds), `unix_ms`, or a strftime pattern (`"%d.%m.%Y"`, `"%m/%d/%y"`: `%y`
    /// reads 00-68 as 2000-2068 and 69-99 as 1969-1999). Default: the spellings hft knows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    /// `UTC` or a fixed offset (`"+01:00"`, `"-05:00"`) of times written without one.
    /// Default UTC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// `false`: the first line is data; map the columns by position in `data.columns`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<bool>,
}

/// Characters a thousands separator may be.
const THOUSANDS: &[char] = &[',', '.', ' ', '\''];

impl FileFormat {
    pub const NONE: FileFormat = FileFormat {
        delimiter: None,
        decimal: None,
        thousands: None,
        currency: None,
        date: None,
        time_zone: None,
        header: None,
    };

    pub fn is_empty(&self) -> bool {
        self == &FileFormat::NONE
    }

    /// The delimiter as a byte (checked by [`FileFormat::check`]).
    pub(super) fn delimiter_byte(&self) -> Option<u8> {
        let d = self.delimiter.as_deref()?;
        if d == "tab" || d == "\\t" {
            return Some(b'\t');
        }
        match d.as_bytes() {
            [c] if c.is_ascii() && !c.is_ascii_alphanumeric() && *c != b'"' => Some(*c),
            _ => None,
        }
    }

    pub(super) fn decimal_byte(&self) -> Option<u8> {
        match self.decimal.as_deref()? {
            "." => Some(b'.'),
            "," => Some(b','),
            _ => None,
        }
    }

    pub(super) fn thousands_char(&self) -> Option<char> {
        let t = self.thousands.as_deref()?;
        let mut chars = t.chars();
        let c = chars.next()?;
        (chars.next().is_none() && THOUSANDS.contains(&c)).then_some(c)
    }

    /// Seconds east of UTC of `time_zone`.
    pub(super) fn offset_seconds(&self) -> Option<i64> {
        parse_offset(self.time_zone.as_deref()?)
    }

    /// Range checks: `(key, message)` for the first bad entry.
    pub fn check(&self) -> Result<(), (String, String)> {
        let fail = |key: &str, m: String| Err((format!("data.format.{key}"), m));
        if let Some(d) = &self.delimiter
            && self.delimiter_byte().is_none()
        {
            return fail(
                "delimiter",
                format!(
                    "`{d}` is not a delimiter; write one character such as \",\", \";\", \"|\" or \"\\t\" (tab)"
                ),
            );
        }
        if let Some(d) = &self.decimal
            && self.decimal_byte().is_none()
        {
            return fail(
                "decimal",
                format!("`{d}` is not a decimal mark; write \".\" or \",\""),
            );
        }
        if let Some(t) = &self.thousands {
            if self.thousands_char().is_none() {
                return fail(
                    "thousands",
                    format!(
                        "`{t}` is not a thousands separator; write \",\", \".\", \" \" or \"'\""
                    ),
                );
            }
            let decimal = self.decimal_byte().unwrap_or(b'.');
            if t.as_bytes() == [decimal] {
                return fail(
                    "thousands",
                    format!("`{t}` is also the decimal mark (data.format.decimal)"),
                );
            }
        }
        if let (Some(d), Some(sep)) = (self.delimiter_byte(), self.decimal_byte())
            && d == sep
        {
            return fail(
                "decimal",
                "the decimal mark is also the delimiter (data.format.delimiter)".into(),
            );
        }
        if let Some(c) = &self.currency
            && (c.is_empty()
                || c.chars().count() > 3
                || c.chars()
                    .any(|ch| ch.is_ascii_digit() || ch == '.' || ch == ','))
        {
            return fail(
                "currency",
                format!(
                    "`{c}` is not a currency symbol (one to three characters, such as \"$\" or \"€\")"
                ),
            );
        }
        if let Some(d) = &self.date
            && let Err(m) = check_date_pattern(d)
        {
            return fail("date", m);
        }
        if let Some(z) = &self.time_zone
            && parse_offset(z).is_none()
        {
            return fail(
                "time_zone",
                format!(
                    "`{z}` is not a time zone hft reads: write UTC or a fixed offset such as \"+01:00\" or \"-05:00\" (named zones with daylight saving are not supported)"
                ),
            );
        }
        Ok(())
    }
}

/// `unix`, `unix_ms`, or a strftime pattern with at least a year, a month and a day.
fn check_date_pattern(p: &str) -> Result<(), String> {
    if p == "unix" || p == "unix_ms" {
        return Ok(());
    }
    let items: Vec<chrono::format::Item> = chrono::format::StrftimeItems::new(p).collect();
    if items
        .iter()
        .any(|i| matches!(i, chrono::format::Item::Error))
    {
        return Err(format!(
            "`{p}` is not a strftime pattern (e.g. \"%d.%m.%Y\", \"%m/%d/%y\"), `unix` or `unix_ms`"
        ));
    }
    let has = |specs: &[&str]| specs.iter().any(|s| p.contains(s));
    let full_date = has(&["%F", "%D", "%x", "%s"]);
    let parts = has(&["%Y", "%y", "%C"]) && has(&["%m", "%b", "%B", "%h"]) && has(&["%d", "%e"]);
    if !(full_date || parts) {
        return Err(format!(
            "`{p}` needs a year, a month and a day (e.g. \"%d.%m.%Y\"), or write `unix` / `unix_ms`"
        ));
    }
    Ok(())
}

/// `UTC`, `Z`, `+01:00`, `-0500`, `+1` as seconds east of UTC (at most 18 hours).
fn parse_offset(z: &str) -> Option<i64> {
    let z = z.trim();
    if z.eq_ignore_ascii_case("utc") || z.eq_ignore_ascii_case("gmt") || z == "Z" {
        return Some(0);
    }
    let rest = z
        .strip_prefix("UTC")
        .or_else(|| z.strip_prefix("GMT"))
        .unwrap_or(z);
    let (sign, rest) = match rest.as_bytes().first()? {
        b'+' => (1, &rest[1..]),
        b'-' => (-1, &rest[1..]),
        _ => return None,
    };
    let (h, m) = match rest.split_once(':') {
        Some((h, m)) => (h, m),
        None if rest.len() == 4 => rest.split_at(2),
        None => (rest, "0"),
    };
    let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 18 && m < 60 && !rest.is_empty()).then_some(sign * (h * 3600 + m * 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_and_patterns() {
        assert_eq!(parse_offset("UTC"), Some(0));
        assert_eq!(parse_offset("+01:00"), Some(3600));
        assert_eq!(parse_offset("-0530"), Some(-(5 * 3600 + 30 * 60)));
        assert_eq!(parse_offset("UTC+2"), Some(7200));
        assert_eq!(parse_offset("Europe/Berlin"), None);
        assert_eq!(parse_offset("+25:00"), None);
        assert!(check_date_pattern("%d.%m.%Y").is_ok());
        assert!(check_date_pattern("%m/%d/%y %H:%M").is_ok());
        assert!(check_date_pattern("unix_ms").is_ok());
        assert!(check_date_pattern("%H:%M").is_err());
        assert!(check_date_pattern("%Q").is_err());
        let f = FileFormat {
            delimiter: Some("tab".into()),
            ..FileFormat::NONE
        };
        assert_eq!(f.delimiter_byte(), Some(b'\t'));
        let bad = FileFormat {
            decimal: Some(",".into()),
            thousands: Some(",".into()),
            ..FileFormat::NONE
        };
        assert_eq!(bad.check().unwrap_err().0, "data.format.thousands");
        let cols = ColumnMap {
            close: Some(ColumnRef::Position(3)),
            open: Some(ColumnRef::Position(3)),
            ..ColumnMap::NONE
        };
        assert!(cols.check().unwrap_err().1.contains("also mapped"));
    }
}
