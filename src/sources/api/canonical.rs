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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_csv_is_sorted_shortest_and_parses() {
        let bar = |time, close| Bar {
            time,
            open: 1.5,
            high: 2.0,
            low: 0.1,
            close,
            volume: 143_301_887.0,
        };
        let csv = canonical_csv(vec![bar(1_609_822_800, 1.0), bar(1_609_736_400, 0.3)]).unwrap();
        assert_eq!(
            String::from_utf8(csv.clone()).unwrap(),
            "timestamp,open,high,low,close,volume\n\
             2021-01-04T05:00:00Z,1.5,2,0.1,0.3,143301887\n\
             2021-01-05T05:00:00Z,1.5,2,0.1,1,143301887\n"
        );
        let parsed =
            crate::data::ingest::parse_csv(std::path::Path::new("snapshot.csv"), &csv).unwrap();
        assert_eq!(parsed.timestamps, vec![1_609_736_400, 1_609_822_800]);
        assert_eq!(parsed.close, vec![0.3, 1.0]);
        let err = canonical_csv(vec![bar(5, 1.0), bar(5, 1.0)]).unwrap_err();
        assert!(err.contains("1970-01-01T00:00:05Z"), "{err}");
    }
}
