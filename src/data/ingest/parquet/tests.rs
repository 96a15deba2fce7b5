//! The Parquet reader's tests: every supported type, nulls, row groups, corrupt files.

use std::sync::Arc;

use arrow_array::{
    ArrayRef, Date32Array, Date64Array, Decimal128Array, Float32Array, Float64Array, Int32Array,
    Int64Array, Time32SecondArray, Time64NanosecondArray, TimestampMicrosecondArray,
    TimestampMillisecondArray, TimestampNanosecondArray, TimestampSecondArray, UInt32Array,
};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

use arrow_array::{LargeStringArray, RecordBatch, StringArray};

use super::*;
use crate::data::ingest::{DroppedRow, parse_file, validate};

const DAY: i64 = 86_400;
/// 2020-01-01 00:00:00 UTC.
const T0: i64 = 1_577_836_800;

/// A Parquet file of `columns`, `rows_per_group` rows per row group.
fn write(columns: Vec<(&str, ArrayRef)>, rows_per_group: usize) -> Vec<u8> {
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(rows_per_group))
        .build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), Some(props)).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    out
}

fn prices(n: usize) -> Vec<(&'static str, ArrayRef)> {
    let close: Vec<f64> = (0..n).map(|i| 10.0 + i as f64).collect();
    vec![
        (
            "Open",
            Arc::new(Float64Array::from(close.clone())) as ArrayRef,
        ),
        (
            "High",
            Arc::new(Float64Array::from(
                close.iter().map(|c| c + 1.0).collect::<Vec<_>>(),
            )),
        ),
        (
            "Low",
            Arc::new(Float64Array::from(
                close.iter().map(|c| c - 1.0).collect::<Vec<_>>(),
            )),
        ),
        ("Close", Arc::new(Float64Array::from(close))),
    ]
}

fn with_time(name: &'static str, time: ArrayRef, n: usize) -> Vec<(&'static str, ArrayRef)> {
    let mut cols = vec![(name, time)];
    cols.extend(prices(n));
    cols
}

fn parse(bytes: &[u8], opts: &IngestOptions) -> Result<Ingested, DataError> {
    parse_parquet(Path::new("data/X.parquet"), bytes, opts)
}

fn ok(bytes: &[u8]) -> Ingested {
    let got = parse(bytes, &IngestOptions::default()).unwrap();
    validate(&got.bars).unwrap();
    got
}

fn err(bytes: &[u8]) -> String {
    parse(bytes, &IngestOptions::default())
        .unwrap_err()
        .to_string()
}

const DROP: IngestOptions = IngestOptions {
    on_bad_rows: BadRows::Drop,
    ..IngestOptions::DEFAULT
};

fn days(n: i64) -> Vec<i64> {
    (0..n).map(|i| T0 + i * DAY).collect()
}

#[test]
fn every_timestamp_unit_and_date_type() {
    let secs = days(5);
    let expected = secs.clone();
    let scaled = |k: i64| secs.iter().map(|s| s * k + k / 3).collect::<Vec<_>>();
    let cases: Vec<(&str, ArrayRef)> = vec![
        ("s", Arc::new(TimestampSecondArray::from(secs.clone()))),
        (
            "ms",
            Arc::new(TimestampMillisecondArray::from(scaled(1_000))),
        ),
        (
            "us tz",
            Arc::new(
                TimestampMicrosecondArray::from(scaled(1_000_000))
                    .with_timezone("America/New_York"),
            ),
        ),
        (
            "ns utc",
            Arc::new(TimestampNanosecondArray::from(scaled(1_000_000_000)).with_timezone("UTC")),
        ),
        (
            "date32",
            Arc::new(Date32Array::from(
                secs.iter().map(|s| (s / DAY) as i32).collect::<Vec<_>>(),
            )),
        ),
        (
            "date64",
            Arc::new(Date64Array::from(
                secs.iter().map(|s| s * 1000).collect::<Vec<_>>(),
            )),
        ),
        ("int64", Arc::new(Int64Array::from(secs.clone()))),
        (
            "int32",
            Arc::new(Int32Array::from(
                secs.iter().map(|&s| s as i32).collect::<Vec<_>>(),
            )),
        ),
        (
            "utf8",
            Arc::new(StringArray::from(
                secs.iter()
                    .map(|&s| crate::data::ingest::fmt_ts(s))
                    .collect::<Vec<_>>(),
            )),
        ),
        (
            "large utf8",
            Arc::new(LargeStringArray::from(vec![
                "01/01/2020",
                "01/02/2020",
                "2020-01-03",
                "2020-01-04T00:00:00Z",
                "2020-01-05 00:00",
            ])),
        ),
    ];
    for (what, array) in cases {
        let bytes = write(with_time("timestamp", array, 5), 2);
        let got = ok(&bytes);
        assert_eq!(got.bars.timestamps, expected, "{what}");
        assert_eq!(got.bars.close, vec![10.0, 11.0, 12.0, 13.0, 14.0], "{what}");
    }
    // YYYYMMDD integers in a date column.
    let ymd = Int32Array::from(vec![20200101, 20200102, 20200103, 20200104, 20200105]);
    assert_eq!(
        ok(&write(with_time("Date", Arc::new(ymd), 5), 5))
            .bars
            .timestamps,
        expected
    );
    // Milliseconds where seconds belong are caught as in CSV.
    let ms = Int64Array::from(secs.iter().map(|s| s * 1000).collect::<Vec<_>>());
    let m = err(&write(with_time("timestamp", Arc::new(ms), 5), 5));
    assert!(
        m.starts_with("data/X.parquet: row 1 (counting data rows from 1): column 'timestamp': Unix timestamp 1577836800000 is outside"),
        "{m}"
    );
}

#[test]
fn date_and_time_columns() {
    let date = Date32Array::from(vec![18262, 18262, 18263]);
    let time = Time32SecondArray::from(vec![34_200, 34_500, 34_200]);
    let mut cols: Vec<(&str, ArrayRef)> = vec![("Date", Arc::new(date)), ("Time", Arc::new(time))];
    cols.extend(prices(3));
    let got = ok(&write(cols, 10));
    assert_eq!(
        got.bars.timestamps,
        vec![T0 + 34_200, T0 + 34_500, T0 + DAY + 34_200]
    );
    let date = StringArray::from(vec!["2020-01-01", "2020-01-01"]);
    let time = Time64NanosecondArray::from(vec![34_200_000_000_000, 90_000_000_000_000]);
    let mut cols: Vec<(&str, ArrayRef)> = vec![("Date", Arc::new(date)), ("Time", Arc::new(time))];
    cols.extend(prices(2));
    let m = err(&write(cols, 10));
    assert!(
        m.starts_with(
            "data/X.parquet: row 2 (counting data rows from 1): column 'Time': time of day 90000 s"
        ),
        "{m}"
    );
}

#[test]
fn every_price_type() {
    let n = 3;
    let ts: ArrayRef = Arc::new(TimestampSecondArray::from(days(3)));
    let cases: Vec<(&str, ArrayRef, ArrayRef)> = vec![
        (
            "f32",
            Arc::new(Float32Array::from(vec![10.5f32, 11.5, 12.5])),
            Arc::new(Float32Array::from(vec![100f32, 0.0, 7.0])),
        ),
        (
            "i64",
            Arc::new(Int64Array::from(vec![10, 11, 12])),
            Arc::new(Int64Array::from(vec![100, 0, 7])),
        ),
        (
            "i32",
            Arc::new(Int32Array::from(vec![10, 11, 12])),
            Arc::new(UInt32Array::from(vec![100, 0, 7])),
        ),
        (
            "decimal",
            Arc::new(
                Decimal128Array::from(vec![1050i128, 1150, 1250])
                    .with_precision_and_scale(9, 2)
                    .unwrap(),
            ),
            Arc::new(Int32Array::from(vec![100, 0, 7])),
        ),
    ];
    for (what, close, volume) in cases {
        let cols: Vec<(&str, ArrayRef)> = vec![
            ("Datetime", ts.clone()),
            ("open", close.clone()),
            ("high", close.clone()),
            ("low", close.clone()),
            ("close", close),
            ("vol", volume),
        ];
        let got = ok(&write(cols, 2));
        assert_eq!(got.bars.timestamps.len(), n, "{what}");
        assert_eq!(got.bars.volume, vec![100.0, 0.0, 7.0], "{what}");
        let expected = if what == "f32" || what == "decimal" {
            vec![10.5, 11.5, 12.5]
        } else {
            vec![10.0, 11.0, 12.0]
        };
        assert_eq!(got.bars.close, expected, "{what}");
    }
    let mut cols = with_time(
        "timestamp",
        Arc::new(TimestampSecondArray::from(days(3))),
        3,
    );
    cols.push((
        "Adj Close",
        Arc::new(Float64Array::from(vec![5.0, 5.5, 6.0])),
    ));
    let got = ok(&write(cols, 2));
    assert_eq!(got.bars.close, vec![5.0, 5.5, 6.0]);
    assert_eq!(got.bars.open, vec![5.0, 5.5, 6.0]);
}

#[test]
fn nulls_and_bad_values_name_row_and_column() {
    let close = Float64Array::from(vec![Some(10.0), Some(11.0), None, Some(13.0), Some(-1.0)]);
    let cols: Vec<(&str, ArrayRef)> = vec![
        (
            "Date",
            Arc::new(Date32Array::from(vec![18262, 18263, 18264, 18265, 18266])),
        ),
        (
            "Open",
            Arc::new(Float64Array::from(vec![10.0, 11.0, 12.0, 13.0, 14.0])),
        ),
        (
            "High",
            Arc::new(Float64Array::from(vec![10.0, 11.0, 12.0, 13.0, 14.0])),
        ),
        (
            "Low",
            Arc::new(Float64Array::from(vec![10.0, 11.0, 12.0, 13.0, 14.0])),
        ),
        ("Close", Arc::new(close)),
    ];
    // Row groups of 2: the null is in the second group, the negative price in the third.
    let bytes = write(cols, 2);
    let m = err(&bytes);
    assert!(m.starts_with("data/X.parquet: row 3 (counting data rows from 1): column 'Close': empty value (null) (fix the row"), "{m}");
    let got = parse(&bytes, &DROP).unwrap();
    assert_eq!(got.bars.close, vec![10.0, 11.0, 13.0]);
    assert_eq!(
        got.dropped,
        vec![
            DroppedRow {
                file: "data/X.parquet".into(),
                line: 3,
                message: "column 'Close': empty value (null)".into()
            },
            DroppedRow {
                file: "data/X.parquet".into(),
                line: 5,
                message: "column 'Close': close must be a finite positive price, got -1.0".into()
            },
        ]
    );
    let null_time = TimestampSecondArray::from(vec![Some(T0), None]);
    let m = err(&write(with_time("timestamp", Arc::new(null_time), 2), 2));
    assert!(m.starts_with("data/X.parquet: row 2 (counting data rows from 1): column 'timestamp': empty value (null)"), "{m}");
}

#[test]
fn order_duplicates_and_window_work_across_row_groups() {
    // Descending over four row groups: sorted, with a note.
    let desc: Vec<i64> = days(7).into_iter().rev().collect();
    let got = ok(&write(
        with_time("timestamp", Arc::new(TimestampSecondArray::from(desc)), 7),
        2,
    ));
    assert_eq!(got.bars.timestamps, days(7));
    assert_eq!(got.notes.len(), 1);
    // A duplicate across row groups names both rows.
    let mut dup = days(5);
    dup[3] = dup[2];
    let bytes = write(
        with_time("timestamp", Arc::new(TimestampSecondArray::from(dup)), 5),
        3,
    );
    let m = err(&bytes);
    assert!(m.starts_with("data/X.parquet: row 4 (counting data rows from 1): column 'timestamp': duplicate timestamp 2020-01-03 00:00:00 (also on row 3)"), "{m}");
    assert_eq!(parse(&bytes, &DROP).unwrap().bars.timestamps.len(), 4);
    let window = IngestOptions {
        start: Some(T0 + DAY),
        end: Some(T0 + 3 * DAY),
        ..DROP
    };
    let got = parse(
        &write(
            with_time(
                "timestamp",
                Arc::new(TimestampSecondArray::from(days(5))),
                5,
            ),
            2,
        ),
        &window,
    )
    .unwrap();
    assert_eq!(got.bars.timestamps, vec![T0 + DAY, T0 + 2 * DAY]);
}

#[test]
fn many_row_groups_decode_in_parallel_to_the_same_bars() {
    let n = 5000;
    let bytes = write(
        with_time(
            "timestamp",
            Arc::new(TimestampSecondArray::from(days(n))),
            n as usize,
        ),
        97,
    );
    let many = ok(&bytes);
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
        .install(|| ok(&bytes));
    assert_eq!(many, one);
    assert_eq!(many.bars.timestamps, days(n));
}

#[test]
fn file_level_problems() {
    let m = err(b"Date,Open,High,Low,Close\n2020-01-01,1,1,1,1\n");
    assert!(m.starts_with("data/X.parquet: not a Parquet file"), "{m}");
    assert!(err(b"").starts_with("data/X.parquet: the file is empty"));
    let good = write(
        with_time(
            "timestamp",
            Arc::new(TimestampSecondArray::from(days(3))),
            3,
        ),
        2,
    );
    for cut in [4, 8, good.len() / 2, good.len() - 1] {
        let m = err(&good[..cut]);
        assert!(m.contains("truncated"), "{cut}: {m}");
    }
    // The end magic in place but the footer broken.
    let mut broken = good.clone();
    let len = broken.len();
    broken[len - 8..len - 4].copy_from_slice(&[0xff, 0xff, 0xff, 0x7f]);
    assert!(err(&broken).contains("cannot read the Parquet metadata"));
    let m = err(&write(prices(2), 2));
    assert!(
        m.starts_with("data/X.parquet: column 'date': missing required column"),
        "{m}"
    );
    let floats = Float64Array::from(vec![1.0, 2.0]);
    let m = err(&write(with_time("timestamp", Arc::new(floats), 2), 2));
    assert!(
        m.starts_with("data/X.parquet: column 'timestamp': a Float64 column cannot hold times"),
        "{m}"
    );
    let mut cols = with_time(
        "timestamp",
        Arc::new(TimestampSecondArray::from(days(2))),
        2,
    );
    cols[4] = ("Close", Arc::new(StringArray::from(vec!["1", "2"])));
    let m = err(&write(cols, 2));
    assert!(
        m.starts_with("data/X.parquet: column 'Close': a Utf8 column cannot hold prices"),
        "{m}"
    );
    // Content decides over the name: a Parquet file named .csv is read as Parquet.
    let got = parse_file(Path::new("x.csv"), &good, &IngestOptions::default()).unwrap();
    assert_eq!(got.bars.timestamps, days(3));
}

#[test]
fn corrupt_pages_never_panic() {
    let good = write(
        with_time(
            "timestamp",
            Arc::new(TimestampSecondArray::from(days(50))),
            50,
        ),
        7,
    );
    let mut state = 0x2545_F491_4F6C_DD1D_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..300 {
        let mut v = good.clone();
        for _ in 0..(next() % 4 + 1) {
            let i = (next() % v.len() as u64) as usize;
            v[i] = (next() & 0xff) as u8;
        }
        for mode in [IngestOptions::default(), DROP] {
            if let Ok(got) = parse(&v, &mode) {
                validate(&got.bars).unwrap();
            }
        }
    }
}

#[test]
fn data_columns_map_parquet_columns_and_yyyymmdd_integers_are_dates() {
    // `when` is no time name hft knows; `data.columns.timestamp` names it.
    let bytes = write(with_time("when", Arc::new(Int64Array::from(days(3))), 3), 2);
    assert!(err(&bytes).contains("missing required column"));
    let opts = IngestOptions {
        columns: crate::data::ingest::ColumnMap {
            timestamp: Some(crate::data::ingest::ColumnRef::Name("when".into())),
            ..crate::data::ingest::ColumnMap::NONE
        },
        ..IngestOptions::DEFAULT
    };
    assert_eq!(parse(&bytes, &opts).unwrap().bars.timestamps, days(3));
    // 20200101 in an integer timestamp column is a date, not 1970-08-22.
    let ymd = Arc::new(Int64Array::from(vec![20200101, 20200102]));
    let got = ok(&write(with_time("timestamp", ymd, 2), 2));
    assert_eq!(got.bars.timestamps, days(2));
    let m = err(&write(
        with_time(
            "timestamp",
            Arc::new(Int64Array::from(vec![19991399, 19991400])),
            2,
        ),
        2,
    ));
    assert!(
        m.contains("column 'timestamp'") && m.contains("YYYYMMDD"),
        "{m}"
    );
}
