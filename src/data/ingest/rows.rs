//! One bar row: the per-row price and volume rules every format applies ([`make_row`]),
//! and the same rules over whole in-memory [`Bars`] ([`validate`]).

use chrono::DateTime;

use super::DataError;
use crate::data::Bars;

/// Relative slack for `high >= max(open, close)` and `low <= min(open, close)`: exporters that
/// round each column separately produce violations around 1e-15; real errors are far larger.
pub const OHLC_TOLERANCE: f64 = 1e-9;

/// Prices outside `MIN_PRICE..=MAX_PRICE` are data errors, not prices: a `High` of 1e308
/// or a close of 1e-300 overflows or underflows the features and the loss long after
/// ingest, where it would look like a training problem.
pub const MIN_PRICE: f64 = 1e-12;
pub const MAX_PRICE: f64 = 1e12;
/// Volumes above this are data errors (sums over a window would overflow).
pub const MAX_VOLUME: f64 = 1e18;

/// Whether `x` is a price hft accepts.
fn price_in_range(x: f64) -> bool {
    (MIN_PRICE..=MAX_PRICE).contains(&x)
}

/// The bar columns whose values [`check_row`] and [`make_row`] validate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Field {
    Open,
    High,
    Low,
    Close,
    AdjClose,
    Volume,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::Open => "open",
            Field::High => "high",
            Field::Low => "low",
            Field::Close => "close",
            Field::AdjClose => "adjusted close",
            Field::Volume => "volume",
        }
    }
}

/// The per-row rules shared by ingest and [`validate`]: finite positive prices, OHLC
/// consistency (within [`OHLC_TOLERANCE`]), finite non-negative volume.
#[inline]
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
        if !price_in_range(x) {
            return Err((
                field,
                format!(
                    "{} {x:?} is not a plausible price (hft reads prices from {MIN_PRICE:e} to \
                     {MAX_PRICE:e}); fix the value",
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
    if v > MAX_VOLUME {
        return Err((
            Field::Volume,
            format!("volume {v:?} is not plausible (above {MAX_VOLUME:e}); fix the value"),
        ));
    }
    Ok(())
}

/// Checks the invariants every [`Bars`] value must satisfy: equal column lengths, at least one
/// row, strictly increasing timestamps, and the per-row price/volume rules of ingest.
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
    // Both scans on every core; the first failing row is the one reported, as in one pass.
    use rayon::prelude::*;
    const PER_TASK: usize = 1 << 15;
    let row = |i: usize| {
        check_row(
            bars.open[i],
            bars.high[i],
            bars.low[i],
            bars.close[i],
            bars.volume[i],
        )
    };
    // Each task scans its stretch of the five columns in step (no per-row bounds checks).
    let first_bad_in = |task: usize| {
        let rows = task * PER_TASK..((task + 1) * PER_TASK).min(n);
        let (o, h, l, c, v) = (
            &bars.open[rows.clone()],
            &bars.high[rows.clone()],
            &bars.low[rows.clone()],
            &bars.close[rows.clone()],
            &bars.volume[rows.clone()],
        );
        o.iter()
            .zip(h)
            .zip(l)
            .zip(c)
            .zip(v)
            .position(|((((&o, &h), &l), &c), &v)| check_row(o, h, l, c, v).is_err())
            .map(|i| rows.start + i)
    };
    let bad = (0..n.div_ceil(PER_TASK))
        .into_par_iter()
        .find_map_first(first_bad_in);
    if let Some(index) = bad
        && let Err((field, message)) = row(index)
    {
        return Err(DataError::Bars {
            index,
            column: Some(field.name().to_string()),
            message,
        });
    }
    let back = bars
        .timestamps
        .par_windows(2)
        .with_min_len(PER_TASK)
        .position_first(|w| w[1] <= w[0]);
    if let Some(index) = back {
        let (a, b) = (bars.timestamps[index], bars.timestamps[index + 1]);
        return Err(DataError::Bars {
            index: index + 1,
            column: Some("timestamp".to_string()),
            message: format!(
                "timestamp {} is not after the previous one ({})",
                fmt_ts(b),
                fmt_ts(a)
            ),
        });
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

/// One validated row: prices already adjusted and clamped, not yet in time order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Row {
    /// The CSV line or the Parquet data row, for messages.
    pub at: u64,
    pub timestamp: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
}

/// A row's values as read, before the checks and the adjusted close.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct RawBar {
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub adj: Option<f64>,
    pub volume: f64,
}

/// The row checks of every format: [`check_row`], then the adjusted close (which replaces
/// the close and scales O/H/L to match), then the clamp of tolerance-level OHLC violations.
pub(super) fn make_row(at: u64, timestamp: i64, raw: RawBar) -> Result<Row, (Field, String)> {
    check_row(raw.open, raw.high, raw.low, raw.close, raw.volume)?;
    let (mut o, mut h, mut l, mut c) = (raw.open, raw.high, raw.low, raw.close);
    if let Some(adj) = raw.adj {
        if !adj.is_finite() || adj <= 0.0 {
            return Err((
                Field::AdjClose,
                format!("adjusted close must be a finite positive price, got {adj:?}"),
            ));
        }
        let factor = adj / c;
        o *= factor;
        h *= factor;
        l *= factor;
        c = adj;
        // An adjustment factor far outside any real split or dividend can overflow (or
        // flush to zero) the scaled prices.
        if let Some(bad) = [o, h, l, c].into_iter().find(|x| !price_in_range(*x)) {
            return Err((
                Field::AdjClose,
                format!(
                    "adjusted close {adj:?} against close {:?} scales the prices to {bad:?}; \
                     check the adjusted close column",
                    raw.close
                ),
            ));
        }
    }
    // Clamp tolerance-level violations (and the rounding of the adjustment) so
    // high >= max(open, close) and low <= min(open, close) hold exactly downstream.
    h = h.max(o).max(c);
    l = l.min(o).min(c);
    Ok(Row {
        at,
        timestamp,
        open: o,
        high: h,
        low: l,
        close: c,
        volume: raw.volume,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::ingest::testutil::*;
    #[allow(unused_imports)]
    use crate::data::ingest::*;

    #[test]
    fn an_adjusted_close_that_overflows_the_prices_is_an_error() {
        let e = parse(
            "Date,Open,High,Low,Close,Adj Close,Volume\n\
             2020-01-02,1e-12,2e-12,1e-12,1e-12,1e12,1\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains(":2: column 'Adj Close': adjusted close"), "{e}");
    }

    #[test]
    fn absurd_values_are_errors_naming_row_and_column() {
        for (row, column) in [
            ("2020-01-02,10,1e308,9,10,1", "High"),
            ("2020-01-02,1e-300,11,1e-300,10,1", "Open"),
            ("2020-01-02,10,11,9,10,1e300", "Volume"),
        ] {
            let e = parse(&format!("Date,Open,High,Low,Close,Volume\n{row}\n"))
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with(&format!("data/TEST.csv:2: column '{column}'")),
                "{e}"
            );
            assert!(e.contains("plausible"), "{e}");
        }
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
    fn ohlc_tolerance_is_clamped() {
        let b = parse("Date,Open,High,Low,Close\n2020-01-01,10,9.99999999999,9,10\n").unwrap();
        assert_eq!(b.high, vec![10.0]);
        validate(&b).unwrap();
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
}
