//! Dates, times and date-times as written in data files, to Unix seconds: the common
//! ISO shapes on a fast path, everything else through chrono's formats.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime};

use super::shorten;

/// Unix seconds outside 1900..2200 are almost certainly milliseconds or garbage.
pub(super) const MIN_UNIX: i64 = -2_208_988_800;
pub(super) const MAX_UNIX: i64 = 7_258_118_400;

pub(super) const DATE_FORMATS: &[&str] = &["%Y-%m-%d", "%m/%d/%Y", "%Y/%m/%d"];
pub(super) const DATETIME_FORMATS: &[&str] = &[
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
