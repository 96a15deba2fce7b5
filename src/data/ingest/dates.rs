//! Dates, times and date-times as written in data files, to Unix seconds: the common
//! ISO shapes on a fast path, everything else through chrono's formats.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime};

use super::shorten;

/// Unix seconds outside 1900..2200 are almost certainly milliseconds or garbage.
pub(super) const MIN_UNIX: i64 = -2_208_988_800;
pub(super) const MAX_UNIX: i64 = 7_258_118_400;

/// `%Y.%m.%d` is MetaTrader's, `%b %d, %Y` Investing.com's older exports' (`May 27, 2022`).
pub(super) const DATE_FORMATS: &[&str] =
    &["%Y-%m-%d", "%m/%d/%Y", "%Y/%m/%d", "%Y.%m.%d", "%b %d, %Y"];
pub(super) const DATETIME_FORMATS: &[&str] = &[
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%d %H:%M",
    "%m/%d/%Y %H:%M:%S%.f",
    "%m/%d/%Y %H:%M",
    "%Y/%m/%d %H:%M:%S%.f",
    "%Y/%m/%d %H:%M",
    "%Y.%m.%d %H:%M:%S%.f",
    "%Y.%m.%d %H:%M",
];

/// Patterns suggested (as `data.format.date`) when a date matches none of the formats above,
/// in order of preference.
const SUGGESTED: &[&str] = &[
    "%d.%m.%Y", "%d/%m/%Y", "%d-%m-%Y", "%d %b %Y", "%d-%b-%Y", "%m-%d-%Y", "%b %d %Y",
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
    let date = DATE_FORMATS
        .iter()
        .find_map(|f| NaiveDate::parse_from_str(s, f).ok())
        .ok_or_else(|| {
            format!(
                "cannot parse '{}' as a date (expected YYYY-MM-DD, MM/DD/YYYY or YYYYMMDD){}",
                shorten(s),
                suggestion(s)
            )
        })?;
    four_digit_year(s, date)
}

/// chrono's `%Y` takes `22` as the year 22: a year below 1000 is a two-digit year, never
/// read silently.
fn four_digit_year(s: &str, date: NaiveDate) -> Result<NaiveDate, String> {
    if date.year() >= 1000 {
        return Ok(date);
    }
    Err(format!(
        "'{}' has a {} year; write four-digit years, or declare the spelling as \
         `data.format.date` (e.g. \"%m/%d/%y\": `%y` reads 00-68 as 2000-2068 and 69-99 as \
         1969-1999)",
        shorten(s),
        match date.year().max(0).to_string().len() {
            1 => "one-digit",
            2 => "two-digit",
            _ => "three-digit",
        }
    ))
}

/// `; set data.format.date: "..."` for the first suggested pattern that reads `s`.
fn suggestion(s: &str) -> String {
    let date_part = s.split([' ', 'T']).next().unwrap_or(s);
    SUGGESTED
        .iter()
        .find(|p| {
            NaiveDate::parse_from_str(s, p).is_ok()
                || NaiveDate::parse_from_str(date_part, p).is_ok()
        })
        .map(|p| {
            format!(
                "; if it is {}, set `data.format.date: \"{p}\"`",
                describe(p)
            )
        })
        .unwrap_or_default()
}

fn describe(pattern: &str) -> &'static str {
    if pattern.starts_with("%d") {
        "day first"
    } else {
        "this spelling"
    }
}

/// A time of day: `HH:MM` or `HH:MM:SS`.
pub(super) fn parse_time(s: &str) -> Result<NaiveTime, String> {
    if let Some(t) = fast_hms(s.as_bytes()) {
        return Ok(t);
    }
    // Stooq writes `093000` (and `000000` on daily bars).
    if s.len() == 6
        && s.bytes().all(|b| b.is_ascii_digit())
        && let Ok(t) = NaiveTime::parse_from_str(s, "%H%M%S")
    {
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
    parse_stamp(s, allow_unix).map(|(t, _)| t)
}

/// Unix seconds `t` checked against the years 1900..2200.
fn unix_in_range(t: i64, what: &str) -> Result<i64, String> {
    if (MIN_UNIX..=MAX_UNIX).contains(&t) {
        Ok(t)
    } else {
        Err(format!(
            "Unix timestamp {t} is outside the years 1900..2200 ({what})"
        ))
    }
}

fn midnight(d: NaiveDate) -> i64 {
    d.and_time(NaiveTime::MIN).and_utc().timestamp()
}

/// [`parse_datetime`], and whether the value fixed its own instant (Unix seconds, an
/// offset), so that `data.format.time_zone` does not apply to it.
fn parse_stamp(s: &str, allow_unix: bool) -> Result<(i64, bool), String> {
    if let Some(ts) = fast_datetime(s) {
        return Ok((ts, false));
    }
    let digits = s.strip_prefix('-').unwrap_or(s);
    if allow_unix && !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        // `20220527` is a date: the date spellings win over Unix seconds, which would put
        // it in 1970. Eight digits that are no date are refused rather than guessed.
        if s.len() == 8 {
            return match NaiveDate::parse_from_str(s, "%Y%m%d") {
                Ok(d) if d.year() >= 1900 => Ok((midnight(d), false)),
                _ => Err(format!(
                    "'{s}' is neither a YYYYMMDD date nor plausible Unix seconds (eight digits \
                     are 1970-1973); declare the column's spelling with `data.format.date` \
                     (`unix` for Unix seconds, or a pattern such as \"%Y%m%d\")"
                )),
            };
        }
        let ts: i64 = s
            .parse()
            .map_err(|_| format!("Unix timestamp '{}' is out of range", shorten(s)))?;
        return unix_in_range(ts, "seconds are expected, not milliseconds").map(|t| (t, true));
    }
    // `1653609600.0`: Unix seconds written as a float.
    if allow_unix
        && let Some((whole, frac)) = digits.split_once('.')
        && !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
    {
        let ts = s
            .parse::<f64>()
            .map_err(|_| format!("Unix timestamp '{}' is out of range", shorten(s)))?
            .floor();
        if !(MIN_UNIX as f64..=MAX_UNIX as f64).contains(&ts) {
            return Err(format!(
                "Unix timestamp {} is outside the years 1900..2200 (seconds are expected, not \
                 milliseconds)",
                shorten(s)
            ));
        }
        return Ok((ts as i64, true));
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Ok((dt.timestamp(), true));
    }
    let zulu = s.strip_suffix(['Z', 'z']);
    let plain = zulu.unwrap_or(s).replacen('T', " ", 1);
    if let Some(dt) = DATETIME_FORMATS
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(&plain, f).ok())
    {
        four_digit_year(s, dt.date())?;
        return Ok((dt.and_utc().timestamp(), zulu.is_some()));
    }
    if let Ok(d) = parse_date(&plain) {
        return Ok((midnight(d), zulu.is_some()));
    }
    if let Err(m) = parse_date(plain.split(' ').next().unwrap_or(&plain))
        && m.contains("-digit year;")
    {
        return Err(m);
    }
    Err(format!(
        "cannot parse '{}' as a date or date-time (expected e.g. 2020-01-31, \
         2020-01-31 09:30:00, 2020-01-31T09:30:00Z, 01/31/2020{}){}",
        shorten(s),
        if allow_unix { " or Unix seconds" } else { "" },
        suggestion(s)
    ))
}

/// How a file spells its timestamps beyond what [`parse_datetime`] finds by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Spelling {
    /// Every spelling hft knows.
    Auto,
    /// Unix seconds, integer or float (`data.format.date: unix`).
    UnixSeconds,
    /// Unix milliseconds (`unix_ms`, Binance klines); sixteen digits or more are
    /// microseconds (Binance spot files since 2025).
    UnixMillis,
    /// A strftime pattern (`data.format.date`).
    Pattern(String),
}

/// A file's timestamps: their spelling, and the offset east of UTC of times written
/// without one (`data.format.time_zone`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TimeFormat {
    pub spelling: Spelling,
    pub offset: i64,
}

impl TimeFormat {
    pub const AUTO: TimeFormat = TimeFormat {
        spelling: Spelling::Auto,
        offset: 0,
    };

    /// From `data.format.date` (checked by the config) and the offset.
    pub(super) fn declared(date: Option<&str>, offset: i64) -> TimeFormat {
        let spelling = match date {
            None => Spelling::Auto,
            Some("unix") => Spelling::UnixSeconds,
            Some("unix_ms") => Spelling::UnixMillis,
            Some(p) => Spelling::Pattern(p.to_string()),
        };
        TimeFormat { spelling, offset }
    }

    /// A full timestamp from one column.
    pub(super) fn stamp(&self, s: &str, allow_unix: bool) -> Result<i64, String> {
        let (t, absolute) = match &self.spelling {
            Spelling::Auto => parse_stamp(s, allow_unix)?,
            Spelling::UnixSeconds => {
                let digits = s.strip_prefix('-').unwrap_or(s);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
                    return Err(format!(
                        "cannot parse '{}' as Unix seconds (data.format.date: unix)",
                        shorten(s)
                    ));
                }
                let t = s
                    .parse::<f64>()
                    .map_err(|_| format!("Unix timestamp '{}' is out of range", shorten(s)))?
                    .floor();
                if !(MIN_UNIX as f64..=MAX_UNIX as f64).contains(&t) {
                    return Err(format!(
                        "Unix timestamp {} is outside the years 1900..2200",
                        shorten(s)
                    ));
                }
                (t as i64, true)
            }
            Spelling::UnixMillis => {
                let v: i64 = s.parse().map_err(|_| {
                    format!(
                        "cannot parse '{}' as Unix milliseconds (an integer)",
                        shorten(s)
                    )
                })?;
                let digits = s.trim_start_matches('-').len();
                let t = if digits >= 15 {
                    v.div_euclid(1_000_000)
                } else {
                    v.div_euclid(1_000)
                };
                (unix_in_range(t, "milliseconds are expected")?, true)
            }
            Spelling::Pattern(p) => (pattern_stamp(s, p)?, false),
        };
        Ok(if absolute { t } else { t - self.offset })
    }

    /// A date column and a time-of-day column; the error says which of the two is to
    /// blame (`true`: the date).
    pub(super) fn date_and_time(&self, date: &str, time: &str) -> Result<i64, (bool, String)> {
        let d = match &self.spelling {
            Spelling::Pattern(p) => NaiveDate::parse_from_str(date, p)
                .map_err(|_| pattern_error(date, p))
                .and_then(|d| four_digit_year(date, d)),
            _ => parse_date(date),
        }
        .map_err(|m| (true, m))?;
        let t = parse_time(time).map_err(|m| (false, m))?;
        Ok(d.and_time(t).and_utc().timestamp() - self.offset)
    }
}

fn pattern_error(s: &str, p: &str) -> String {
    format!("cannot parse '{}' as `{p}` (data.format.date)", shorten(s))
}

/// `s` read with the strftime pattern `p`: a date-time if `p` has a time of day, else
/// midnight of the date.
fn pattern_stamp(s: &str, p: &str) -> Result<i64, String> {
    if ["%H", "%I", "%M", "%S", "%T", "%R", "%s"]
        .iter()
        .any(|spec| p.contains(spec))
    {
        if let Ok(dt) = DateTime::parse_from_str(s, p) {
            return Ok(dt.timestamp());
        }
        let dt = NaiveDateTime::parse_from_str(s, p).map_err(|_| pattern_error(s, p))?;
        four_digit_year(s, dt.date())?;
        return Ok(dt.and_utc().timestamp());
    }
    let d = NaiveDate::parse_from_str(s, p).map_err(|_| pattern_error(s, p))?;
    Ok(midnight(four_digit_year(s, d)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[allow(unused_imports)]
    use crate::data::ingest::*;

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
}
