//! Bars as the canonical snapshot CSV: what makes a snapshot's digest stable.

use chrono::{DateTime, SecondsFormat};

/// One bar, timestamp in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Bar {
    pub(super) time: i64,
    pub(super) open: f64,
    pub(super) high: f64,
    pub(super) low: f64,
    pub(super) close: f64,
    pub(super) volume: f64,
}

/// Sorts bars by time and writes the canonical CSV; a timestamp seen twice is an error.
pub(super) fn canonical_csv(mut bars: Vec<Bar>) -> Result<Vec<u8>, String> {
    bars.sort_by_key(|b| b.time);
    let mut out = String::with_capacity(48 * (bars.len() + 1));
    out.push_str("timestamp,open,high,low,close,volume\n");
    let mut previous = None;
    for bar in &bars {
        let time = DateTime::from_timestamp(bar.time, 0)
            .ok_or_else(|| format!("timestamp {} is out of range", bar.time))?
            .to_rfc3339_opts(SecondsFormat::Secs, true);
        if previous == Some(bar.time) {
            return Err(format!("two bars have the timestamp {time}"));
        }
        previous = Some(bar.time);
        out.push_str(&format!(
            "{time},{},{},{},{},{}\n",
            bar.open, bar.high, bar.low, bar.close, bar.volume
        ));
    }
    Ok(out.into_bytes())
}
