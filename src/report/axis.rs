//! The time axis of the report's plots: ticks on calendar boundaries (midnights, Mondays,
//! first days of months, New Year's days) as many as fit the axis, labelled as dates.
//!
//! plotters' `f64` axis puts its ticks at round numbers of seconds, which are no dates, and
//! does not know how wide a date label is; this axis knows both.

use std::ops::Range;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};

const DAY: i64 = 86_400;

/// A spacing of ticks.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Step {
    Seconds(i64),
    /// Mondays, every `n`th week.
    Weeks(i64),
    Months(u32),
    Years(i32),
}

const STEPS: &[Step] = &[
    Step::Seconds(60),
    Step::Seconds(300),
    Step::Seconds(900),
    Step::Seconds(1800),
    Step::Seconds(3600),
    Step::Seconds(2 * 3600),
    Step::Seconds(3 * 3600),
    Step::Seconds(6 * 3600),
    Step::Seconds(12 * 3600),
    Step::Seconds(DAY),
    Step::Seconds(2 * DAY),
    Step::Weeks(1),
    Step::Weeks(2),
    Step::Months(1),
    Step::Months(2),
    Step::Months(3),
    Step::Months(6),
    Step::Years(1),
    Step::Years(2),
    Step::Years(5),
    Step::Years(10),
    Step::Years(25),
    Step::Years(50),
    Step::Years(100),
];

/// The x axis of a chart over Unix seconds, with its ticks and their label format.
#[derive(Debug, Clone)]
pub(super) struct TimeAxis {
    range: Range<f64>,
    ticks: Vec<f64>,
    format: &'static str,
    /// What the axis shows, with the year(s) the labels leave out.
    pub(super) desc: String,
}

impl TimeAxis {
    /// An axis over `[lo, hi]` drawn `width_px` wide, its labels at `label_px`, with
    /// `right_room_px` of margin right of the axis for a label centred near its end.
    pub(super) fn new(lo: f64, hi: f64, width_px: i32, label_px: u32, right_room_px: i32) -> Self {
        let (lo, hi) = if hi > lo { (lo, hi) } else { (lo, lo + 1.0) };
        let start = lo.ceil() as i64;
        let end = hi.floor() as i64;
        let intraday_span = end - start < 3 * DAY;
        let mut chosen = (Vec::new(), "%Y");
        for &step in STEPS {
            let format = format_for(step, start, end);
            let label = f64::from(super::chart::text_px(&sample(format), label_px));
            let room = label + 12.0;
            let px_per_sec = f64::from(width_px) / (hi - lo);
            // Labels centred on ticks: none may hang off the right end of the frame.
            let last_ok = hi - (label / 2.0 - f64::from(right_room_px)).max(0.0) / px_per_sec;
            let ticks: Vec<f64> = ticks(step, start, end)
                .into_iter()
                .map(|t| t as f64)
                .filter(|&t| t >= lo && t <= last_ok)
                .collect();
            let fits = ticks.windows(2).all(|w| (w[1] - w[0]) * px_per_sec >= room);
            if fits && !ticks.is_empty() {
                chosen = (ticks, format);
                break;
            }
        }
        let (ticks, format) = chosen;
        let year = |t: i64| Utc.timestamp_opt(t, 0).single().map_or(1970, |d| d.year());
        let years = match (year(start), year(end)) {
            (a, b) if a == b => format!("{a}"),
            (a, b) => format!("{a}-{b}"),
        };
        let desc = if format.contains("%Y") {
            "date".to_string()
        } else if intraday_span && format.contains("%H") {
            let day = |t: i64| super::time_plots::date_label(t as f64, false);
            if day(start) == day(end) {
                format!("time (UTC), {}", day(start))
            } else {
                format!("time (UTC), {years}")
            }
        } else {
            format!("date ({years})")
        };
        TimeAxis {
            range: lo..hi,
            ticks,
            format,
            desc,
        }
    }

    /// A tick's label.
    pub(super) fn label(&self, secs: f64) -> String {
        DateTime::from_timestamp(secs.round() as i64, 0)
            .map_or_else(|| format!("{secs}"), |t| t.format(self.format).to_string())
    }

    #[cfg(test)]
    pub(super) fn ticks(&self) -> &[f64] {
        &self.ticks
    }
}

impl Ranged for TimeAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let share = (value - self.range.start) / (self.range.end - self.range.start);
        limit.0 + (f64::from(limit.1 - limit.0) * share + 1e-3).floor() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        // Every n-th tick when plotters asks for fewer than there are.
        let max = hint.max_num_points().max(1);
        let every = self.ticks.len().div_ceil(max).max(1);
        self.ticks.iter().copied().step_by(every).collect()
    }

    fn range(&self) -> Range<f64> {
        self.range.clone()
    }
}

/// The label format of ticks at `step` over `[start, end]`.
fn format_for(step: Step, start: i64, end: i64) -> &'static str {
    match step {
        Step::Seconds(s) if s < DAY => {
            if start.div_euclid(DAY) == end.div_euclid(DAY) {
                "%H:%M"
            } else {
                "%b %d %H:%M"
            }
        }
        Step::Seconds(_) | Step::Weeks(_) => "%b %d",
        Step::Months(_) => "%b %Y",
        Step::Years(_) => "%Y",
    }
}

/// The widest label of `format`, for sizing.
fn sample(format: &str) -> String {
    DateTime::from_timestamp(1_727_740_800, 0)
        .map_or_else(String::new, |t| t.format(format).to_string())
}

/// The calendar boundaries at `step` within `[start, end]` (UTC).
fn ticks(step: Step, start: i64, end: i64) -> Vec<i64> {
    // Never more than this many candidates: a step far too fine is skipped anyway.
    const LIMIT: usize = 2_000;
    let mut out = Vec::new();
    match step {
        Step::Seconds(s) => {
            let mut t = start.div_euclid(s) * s;
            while t <= end && out.len() < LIMIT {
                if t >= start {
                    out.push(t);
                }
                t += s;
            }
        }
        Step::Weeks(n) => {
            // 1970-01-05 was a Monday; every n-th week from it.
            let monday = 4 * DAY;
            let week = 7 * DAY * n;
            let mut t = monday + (start - monday).div_euclid(week) * week;
            while t <= end && out.len() < LIMIT {
                if t >= start {
                    out.push(t);
                }
                t += week;
            }
        }
        Step::Months(n) => {
            let (mut y, mut m) = year_month(start);
            m -= (m - 1) % n;
            while out.len() < LIMIT {
                let Some(t) = first_of(y, m) else { break };
                if t > end {
                    break;
                }
                if t >= start {
                    out.push(t);
                }
                m += n;
                if m > 12 {
                    m -= 12;
                    y += 1;
                }
            }
        }
        Step::Years(n) => {
            let (y0, _) = year_month(start);
            let mut y = y0 - y0.rem_euclid(n);
            while out.len() < LIMIT {
                let Some(t) = first_of(y, 1) else { break };
                if t > end {
                    break;
                }
                if t >= start {
                    out.push(t);
                }
                y += n;
            }
        }
    }
    out
}

fn year_month(t: i64) -> (i32, u32) {
    Utc.timestamp_opt(t, 0)
        .single()
        .map_or((1970, 1), |d| (d.year(), d.month()))
}

/// Midnight (UTC) of the first day of month `m` of year `y`.
fn first_of(y: i32, m: u32) -> Option<i64> {
    NaiveDate::from_ymd_opt(y, m, 1)?
        .and_hms_opt(0, 0, 0)
        .map(|d| d.and_utc().timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i32, m: u32, d: u32) -> f64 {
        NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp() as f64
    }

    #[test]
    fn daily_bars_over_two_months_get_several_dates_on_mondays_or_month_starts() {
        let axis = TimeAxis::new(day(2023, 11, 14), day(2024, 1, 20), 360, 15, 40);
        let labels: Vec<String> = axis.ticks().iter().map(|&t| axis.label(t)).collect();
        assert!(labels.len() >= 4, "{labels:?}");
        // Distinct, in order, on calendar boundaries.
        assert!(axis.ticks().windows(2).all(|w| w[0] < w[1]));
        let distinct: std::collections::BTreeSet<_> = labels.iter().collect();
        assert_eq!(distinct.len(), labels.len(), "{labels:?}");
        assert_eq!(axis.desc, "date (2023-2024)");
        for &t in axis.ticks() {
            let d = DateTime::from_timestamp(t as i64, 0).unwrap();
            assert!(d.weekday() == chrono::Weekday::Mon || d.day() == 1, "{d}");
        }
    }

    #[test]
    fn years_of_bars_are_labelled_by_year_or_month_and_intraday_by_time() {
        let axis = TimeAxis::new(day(2010, 3, 2), day(2024, 6, 1), 360, 15, 40);
        let labels: Vec<String> = axis.ticks().iter().map(|&t| axis.label(t)).collect();
        assert!(
            labels.len() >= 3 && labels.iter().all(|l| l.len() == 4),
            "{labels:?}"
        );
        assert_eq!(axis.desc, "date");

        let open = day(2024, 3, 5) + 9.5 * 3600.0;
        let axis = TimeAxis::new(open, open + 6.5 * 3600.0, 360, 15, 40);
        let labels: Vec<String> = axis.ticks().iter().map(|&t| axis.label(t)).collect();
        assert!(labels.len() >= 3, "{labels:?}");
        assert!(labels.contains(&"12:00".to_string()), "{labels:?}");
        assert_eq!(axis.desc, "time (UTC), 2024-03-05");
    }

    #[test]
    fn no_tick_label_hangs_off_the_right_end() {
        let (lo, hi) = (day(2024, 1, 2), day(2024, 1, 29));
        let axis = TimeAxis::new(lo, hi, 360, 15, 0);
        let label_px = f64::from(crate::report::chart::text_px("Jan 29", 15));
        for &t in axis.ticks() {
            let right_px = (hi - t) / (hi - lo) * 360.0;
            assert!(right_px >= label_px / 2.0, "{}", axis.label(t));
        }
    }
}
