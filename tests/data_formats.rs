//! The same bars as CSV and as Parquet give the same ingest output, and Parquet files from a
//! real-world writer (pyarrow, `tests/fixtures/make_parquet.py`) parse.
//!
//! Library level (`hft::data::ingest::parse_file`, what the ingest stage calls) and through
//! the binary: `AAA.csv` and `AAA.parquet` of the same bars give the same dataset digest.

mod common;

use std::path::Path;
use std::sync::Arc;

use arrow_array::{
    ArrayRef, Float32Array, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use hft::data::ingest::{
    BadRows, ColumnMap, ColumnRef, FileFormat, IngestOptions, Ingested, parse_file, validate,
};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

/// 2020-01-02 09:30:00 UTC.
const T0: i64 = 1_577_957_400;

struct Table {
    millis: Vec<i64>,
    open: Vec<f32>,
    high: Vec<f32>,
    low: Vec<f32>,
    close: Vec<f32>,
    adj: Vec<f64>,
    volume: Vec<i64>,
}

/// `n` minute bars with sub-second timestamps (dropped by both readers), f32 prices and a
/// f64 adjusted close.
fn table(n: usize) -> Table {
    let mut t = Table {
        millis: Vec::new(),
        open: Vec::new(),
        high: Vec::new(),
        low: Vec::new(),
        close: Vec::new(),
        adj: Vec::new(),
        volume: Vec::new(),
    };
    for i in 0..n {
        let open = 100.0 + (i % 50) as f32 * 0.25;
        t.millis
            .push((T0 + 60 * i as i64) * 1000 + (i as i64 * 37) % 1000);
        t.open.push(open);
        t.high.push(open + 1.5);
        t.low.push(open - 0.75);
        t.close.push(open + 0.5);
        t.adj.push(f64::from(open + 0.5) * 0.9);
        t.volume.push(i as i64 * 3);
    }
    t
}

fn to_parquet(t: &Table) -> Vec<u8> {
    let n = t.millis.len();
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("Symbol", Arc::new(StringArray::from(vec!["X"; n]))),
        (
            "timestamp",
            Arc::new(TimestampMillisecondArray::from(t.millis.clone()).with_timezone("UTC")),
        ),
        ("Open", Arc::new(Float32Array::from(t.open.clone()))),
        ("High", Arc::new(Float32Array::from(t.high.clone()))),
        ("Low", Arc::new(Float32Array::from(t.low.clone()))),
        ("Close", Arc::new(Float32Array::from(t.close.clone()))),
        ("Adj Close", Arc::new(Float64Array::from(t.adj.clone()))),
        ("Volume", Arc::new(Int64Array::from(t.volume.clone()))),
    ];
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(128))
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), Some(props)).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    out
}

fn to_csv(t: &Table) -> Vec<u8> {
    let mut out = String::from("Symbol,timestamp,Open,High,Low,Close,Adj Close,Volume\r\n");
    for i in 0..t.millis.len() {
        let secs = t.millis[i].div_euclid(1000);
        let ms = t.millis[i].rem_euclid(1000);
        let when = chrono::DateTime::from_timestamp(secs, 0).unwrap();
        // f32 -> f64 is exact, and f64's Display reads back to the same f64.
        out.push_str(&format!(
            "X,{}.{ms:03},{},{},{},{},{},{}\n",
            when.format("%Y-%m-%d %H:%M:%S"),
            f64::from(t.open[i]),
            f64::from(t.high[i]),
            f64::from(t.low[i]),
            f64::from(t.close[i]),
            t.adj[i],
            t.volume[i]
        ));
    }
    out.into_bytes()
}

fn both(t: &Table, opts: &IngestOptions) -> (Ingested, Ingested) {
    let csv = parse_file(Path::new("data/X.csv"), &to_csv(t), opts).unwrap();
    let parquet = parse_file(Path::new("data/X.parquet"), &to_parquet(t), opts).unwrap();
    (csv, parquet)
}

#[test]
fn csv_and_parquet_give_the_same_bars() {
    let t = table(1000);
    let (csv, parquet) = both(&t, &IngestOptions::default());
    validate(&csv.bars).unwrap();
    assert_eq!(csv.bars.timestamps.len(), 1000);
    assert_eq!(csv.bars.timestamps[1] - csv.bars.timestamps[0], 60);
    assert_eq!(csv.bars, parquet.bars);
    assert_eq!(csv.bars.to_bytes(), parquet.bars.to_bytes());
    assert!(csv.dropped.is_empty() && parquet.dropped.is_empty());
}

#[test]
fn csv_and_parquet_agree_when_sorting_dropping_and_filtering() {
    let mut t = table(700);
    t.millis.reverse();
    t.open.reverse();
    t.high.reverse();
    t.low.reverse();
    t.close.reverse();
    t.adj.reverse();
    t.volume.reverse();
    // Two bad rows: a negative close and a high below the close.
    t.close[10] = -1.0;
    t.high[400] = t.close[400] - 1.0;
    let opts = IngestOptions {
        on_bad_rows: BadRows::Drop,
        start: Some(T0 + 60 * 100),
        end: Some(T0 + 60 * 600),
        ..IngestOptions::default()
    };
    let (csv, parquet) = both(&t, &opts);
    assert_eq!(csv.bars.timestamps.len(), 499);
    assert_eq!(csv.bars, parquet.bars);
    assert_eq!(csv.bars.to_bytes(), parquet.bars.to_bytes());
    assert_eq!(csv.dropped.len(), 2);
    assert_eq!(parquet.dropped.len(), 2);
    // CSV counts lines (the header is line 1), Parquet data rows.
    assert_eq!(csv.dropped[0].line, 12);
    assert_eq!(parquet.dropped[0].line, 11);
    assert_eq!(csv.dropped[0].message, parquet.dropped[0].message);
    assert_eq!(csv.notes.len(), 1);
    assert_eq!(parquet.notes.len(), 1);
    let error = parse_file(
        Path::new("data/X.parquet"),
        &to_parquet(&t),
        &IngestOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.starts_with("data/X.parquet: row 11 (counting data rows from 1): column 'Close': close must be a finite positive price"),
        "{error}"
    );
}

fn fixture(name: &str) -> Ingested {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let bytes = std::fs::read(&path).unwrap();
    let got = parse_file(&path, &bytes, &IngestOptions::default()).unwrap();
    validate(&got.bars).unwrap();
    got
}

#[test]
fn pyarrow_ns_timestamps_with_a_time_zone() {
    let got = fixture("pyarrow_ns_tz.parquet");
    let b = &got.bars;
    assert_eq!(b.timestamps.len(), 200);
    // 2021-03-01 09:30 at UTC-5.
    assert_eq!(b.timestamps[0], 1_614_609_000);
    assert!(b.timestamps.windows(2).all(|w| w[1] - w[0] == 300));
    assert_eq!(
        (b.close[0], b.high[0], b.volume[199]),
        (100.0, 100.5, 1199.0)
    );
    assert!(got.notes.is_empty());
}

#[test]
fn pyarrow_date32_and_integer_prices() {
    let got = fixture("pyarrow_date32_int.parquet");
    let b = &got.bars;
    assert_eq!(b.timestamps.len(), 60);
    // 2019-01-01.
    assert_eq!(b.timestamps[0], 1_546_300_800);
    assert_eq!(b.timestamps[59] - b.timestamps[0], 59 * 86_400);
    assert_eq!(
        (b.open[0], b.high[0], b.low[0], b.close[0]),
        (50.0, 52.0, 49.0, 50.0)
    );
    assert!(b.volume.iter().all(|&v| v == 0.0));
}

#[test]
fn pyarrow_string_dates_newest_first_with_adjusted_close() {
    let got = fixture("pyarrow_strings_desc.parquet");
    let b = &got.bars;
    assert_eq!(b.timestamps.len(), 40);
    // 06/01/2020, the last row of the file.
    assert_eq!(b.timestamps[0], 1_590_969_600);
    // Close 22.5, adjusted 11.25: every price halved.
    assert_eq!((b.close[0], b.open[0], b.high[0]), (11.25, 11.25, 11.75));
    assert_eq!(b.volume[0], 390.0);
    assert_eq!(got.notes.len(), 1, "{:?}", got.notes);
    assert!(got.notes[0].contains("descending"));
}

/// The output digests of one stage of experiment `exp`, through `hft show --json`.
fn stage_digest(p: &common::Project, stage: &str, output: &str) -> String {
    let run = p.hft(&["show", "exp", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let s = doc["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == stage)
        .unwrap_or_else(|| panic!("no {stage} in {doc}"));
    s["outputs"][output]["digest"].as_str().unwrap().to_string()
}

#[test]
fn a_build_from_parquet_gives_the_dataset_of_the_same_csv() {
    let t = table(600);
    let exp = "name: exp\ndata:\n  source: local\n  path: trainingdata\n  symbols: [AAA]\n  \
               features: [close, log_return, ma_20, rsi_14]\n  sequence_length: 8\n  \
               prediction_horizon: 2\nmodel: {type: mlp, hidden_size: 4, num_layers: 1}\n\
               training: {max_steps: 1, batch_size: 8}\n";
    let mut digests = Vec::new();
    for (name, bytes) in [("AAA.csv", to_csv(&t)), ("AAA.parquet", to_parquet(&t))] {
        let p = common::Project::new("formats");
        std::fs::create_dir_all(p.path("trainingdata")).unwrap();
        std::fs::write(p.path(&format!("trainingdata/{name}")), bytes).unwrap();
        p.write("experiments/exp.yaml", exp);
        p.build();
        digests.push((
            stage_digest(&p, "ingest:AAA", "bars"),
            stage_digest(&p, "dataset", "dataset"),
        ));
    }
    assert_eq!(digests[0], digests[1], "csv vs parquet");
}

// ---------------------------------------------------------------------------------------
// The layouts people download (issue 19): the same bars in each give the same ingest output.

/// 60 daily bars from 2022-05-02, prices with two decimals and volumes in tens of thousands,
/// so that every layout can write them exactly (`$100.25`, `100,25`, `80.44M`).
struct Daily {
    day: Vec<chrono::NaiveDate>,
    open: Vec<f64>,
    high: Vec<f64>,
    low: Vec<f64>,
    close: Vec<f64>,
    volume: Vec<u64>,
}

fn daily() -> Daily {
    let start = chrono::NaiveDate::from_ymd_opt(2022, 5, 2).unwrap();
    let mut d = Daily {
        day: Vec::new(),
        open: Vec::new(),
        high: Vec::new(),
        low: Vec::new(),
        close: Vec::new(),
        volume: Vec::new(),
    };
    for i in 0..60u64 {
        let open = 100.0 + (i % 17) as f64 * 0.25;
        let close = open + if i % 3 == 0 { -0.5 } else { 0.75 };
        d.day.push(start + chrono::Days::new(i));
        d.open.push(open);
        d.close.push(close);
        d.high.push(open.max(close) + 1.0);
        d.low.push(open.min(close) - 0.5);
        d.volume.push((8044 + i) * 10_000);
    }
    d
}

fn midnight(day: chrono::NaiveDate) -> i64 {
    day.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp()
}

/// Each row of `d` written by `row(i)`, after `header`, newest first when `descending`.
fn lines(d: &Daily, header: &str, descending: bool, row: impl Fn(usize) -> String) -> String {
    let mut order: Vec<usize> = (0..d.day.len()).collect();
    if descending {
        order.reverse();
    }
    let mut out = header.to_string();
    for i in order {
        out.push_str(&row(i));
        out.push('\n');
    }
    out
}

fn plain_csv(d: &Daily) -> String {
    lines(d, "Date,Open,High,Low,Close,Volume\n", false, |i| {
        format!(
            "{},{:.2},{:.2},{:.2},{:.2},{}",
            d.day[i], d.open[i], d.high[i], d.low[i], d.close[i], d.volume[i]
        )
    })
}

fn utf16le(text: &str) -> Vec<u8> {
    let mut out = vec![0xFF, 0xFE];
    for u in text.encode_utf16() {
        out.extend(u.to_le_bytes());
    }
    out
}

/// (name, bytes, options, what the layout is recognised as) for every layout.
fn layouts(d: &Daily) -> Vec<(&'static str, Vec<u8>, IngestOptions, &'static str)> {
    let us = |i: usize| d.day[i].format("%m/%d/%Y").to_string();
    let ms = |i: usize| midnight(d.day[i]) * 1000;
    let none = IngestOptions::default();
    let mut out = vec![
        ("plain", plain_csv(d).into_bytes(), none.clone(), ""),
        (
            "nasdaq",
            lines(d, "Date,Close/Last,Volume,Open,High,Low\n", true, |i| {
                format!(
                    "{},${:.2},{},${:.2},${:.2},${:.2}",
                    us(i),
                    d.close[i],
                    d.volume[i],
                    d.open[i],
                    d.high[i],
                    d.low[i]
                )
            })
            .into_bytes(),
            none.clone(),
            "nasdaq.com export",
        ),
        (
            "yfinance",
            lines(
                d,
                "Price,Adj Close,Close,High,Low,Open,Volume\nTicker,AAPL,AAPL,AAPL,AAPL,AAPL,AAPL\nDate,,,,,,\n",
                false,
                |i| {
                    format!(
                        "{},{:.2},{:.2},{:.2},{:.2},{:.2},{}",
                        d.day[i], d.close[i], d.close[i], d.high[i], d.low[i], d.open[i], d.volume[i]
                    )
                },
            )
            .into_bytes(),
            none.clone(),
            "yfinance download()",
        ),
        (
            "binance_headerless",
            lines(d, "", false, |i| {
                format!(
                    "{},{:.8},{:.8},{:.8},{:.8},{:.8},{},1234.5,100,1.0,2.0,0",
                    ms(i),
                    d.open[i],
                    d.high[i],
                    d.low[i],
                    d.close[i],
                    d.volume[i] as f64,
                    ms(i) + 86_399_999
                )
            })
            .into_bytes(),
            none.clone(),
            "Binance klines (no header",
        ),
        (
            "binance_header",
            lines(
                d,
                "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore\n",
                false,
                |i| {
                    format!(
                        "{},{:.2},{:.2},{:.2},{:.2},{},{},1.5,10,1.0,2.0,0",
                        ms(i),
                        d.open[i],
                        d.high[i],
                        d.low[i],
                        d.close[i],
                        d.volume[i],
                        ms(i) + 86_399_999
                    )
                },
            )
            .into_bytes(),
            none.clone(),
            "Binance klines (open time",
        ),
        (
            "stooq",
            lines(
                d,
                "<TICKER>,<PER>,<DATE>,<TIME>,<OPEN>,<HIGH>,<LOW>,<CLOSE>,<VOL>,<OPENINT>\n",
                false,
                |i| {
                    format!(
                        "AAPL.US,D,{},000000,{:.2},{:.2},{:.2},{:.2},{},0",
                        d.day[i].format("%Y%m%d"),
                        d.open[i],
                        d.high[i],
                        d.low[i],
                        d.close[i],
                        d.volume[i]
                    )
                },
            )
            .into_bytes(),
            none.clone(),
            "Stooq bulk file",
        ),
        (
            "investing",
            lines(
                d,
                "\u{feff}\"Date\",\"Price\",\"Open\",\"High\",\"Low\",\"Vol.\",\"Change %\"\n",
                true,
                |i| {
                    format!(
                        "\"{}\",\"{:.2}\",\"{:.2}\",\"{:.2}\",\"{:.2}\",\"{:.2}M\",\"-0.12%\"",
                        us(i),
                        d.close[i],
                        d.open[i],
                        d.high[i],
                        d.low[i],
                        d.volume[i] as f64 / 1e6
                    )
                },
            )
            .into_bytes(),
            none.clone(),
            "Investing.com export",
        ),
        (
            "semicolons_decimal_comma",
            lines(d, "Date;Open;High;Low;Close;Volume\n", false, |i| {
                format!(
                    "{};{:.2};{:.2};{:.2};{:.2};{}",
                    d.day[i], d.open[i], d.high[i], d.low[i], d.close[i], d.volume[i]
                )
                .replace('.', ",")
            })
            .into_bytes(),
            none.clone(),
            "semicolon-separated, decimal comma",
        ),
        (
            "mt5_tabs",
            lines(
                d,
                "<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>\n",
                false,
                |i| {
                    format!(
                        "{}\t00:00:00\t{:.2}\t{:.2}\t{:.2}\t{:.2}\t777\t{}\t2",
                        d.day[i].format("%Y.%m.%d"),
                        d.open[i],
                        d.high[i],
                        d.low[i],
                        d.close[i],
                        d.volume[i]
                    )
                },
            )
            .into_bytes(),
            none.clone(),
            "MetaTrader 5 export",
        ),
        (
            "header_short_of_time",
            lines(d, "Date,Open,High,Low,Close,Volume\n", false, |i| {
                format!(
                    "{},00:00,{:.2},{:.2},{:.2},{:.2},{}",
                    d.day[i], d.open[i], d.high[i], d.low[i], d.close[i], d.volume[i]
                )
            })
            .into_bytes(),
            none.clone(),
            "the header lacks the Time column",
        ),
        (
            "utf16",
            utf16le(&plain_csv(d)),
            none.clone(),
            "UTF-16 (little-endian)",
        ),
        (
            "float_unix_seconds",
            lines(d, "timestamp,open,high,low,close,volume\n", false, |i| {
                format!(
                    "{}.0,{:.2},{:.2},{:.2},{:.2},{}",
                    midnight(d.day[i]),
                    d.open[i],
                    d.high[i],
                    d.low[i],
                    d.close[i],
                    d.volume[i]
                )
            })
            .into_bytes(),
            none.clone(),
            "",
        ),
        (
            "yyyymmdd_timestamp",
            lines(d, "timestamp,open,high,low,close,volume\n", false, |i| {
                format!(
                    "{},{:.2},{:.2},{:.2},{:.2},{}",
                    d.day[i].format("%Y%m%d"),
                    d.open[i],
                    d.high[i],
                    d.low[i],
                    d.close[i],
                    d.volume[i]
                )
            })
            .into_bytes(),
            none.clone(),
            "",
        ),
    ];
    // Declared: German names, day-first dates, a decimal comma, thousands dots, a euro sign.
    let german = IngestOptions {
        columns: ColumnMap {
            date: Some(ColumnRef::Name("Datum".into())),
            open: Some(ColumnRef::Name("Eröffnung".into())),
            high: Some(ColumnRef::Name("Hoch".into())),
            low: Some(ColumnRef::Name("Tief".into())),
            close: Some(ColumnRef::Name("Schluss".into())),
            volume: Some(ColumnRef::Position(6)),
            ..ColumnMap::default()
        },
        format: FileFormat {
            delimiter: Some(";".into()),
            decimal: Some(",".into()),
            thousands: Some(".".into()),
            currency: Some("€".into()),
            date: Some("%d.%m.%Y".into()),
            ..FileFormat::default()
        },
        ..IngestOptions::default()
    };
    out.push((
        "declared",
        lines(
            d,
            "Datum;Eröffnung;Hoch;Tief;Schluss;Umsatz\n",
            false,
            |i| {
                let euro = |x: f64| format!("{x:.2} €").replace('.', ",");
                let grouped = d.volume[i]
                    .to_string()
                    .as_bytes()
                    .rchunks(3)
                    .rev()
                    .map(|c| std::str::from_utf8(c).unwrap())
                    .collect::<Vec<_>>()
                    .join(".");
                format!(
                    "{};{};{};{};{};{grouped}",
                    d.day[i].format("%d.%m.%Y"),
                    euro(d.open[i]),
                    euro(d.high[i]),
                    euro(d.low[i]),
                    euro(d.close[i]),
                )
            },
        )
        .into_bytes(),
        german,
        "semicolon-separated",
    ));
    // Headerless, every column by position, times in New York (UTC-4 in May 2022).
    let positional = IngestOptions {
        columns: ColumnMap {
            timestamp: Some(ColumnRef::Position(1)),
            open: Some(ColumnRef::Position(2)),
            high: Some(ColumnRef::Position(3)),
            low: Some(ColumnRef::Position(4)),
            close: Some(ColumnRef::Position(5)),
            volume: Some(ColumnRef::Position(6)),
            ..ColumnMap::default()
        },
        format: FileFormat {
            header: Some(false),
            time_zone: Some("-04:00".into()),
            ..FileFormat::default()
        },
        ..IngestOptions::default()
    };
    out.push((
        "positional_with_time_zone",
        lines(d, "", false, |i| {
            format!(
                "{} 20:00,{:.2},{:.2},{:.2},{:.2},{}",
                d.day[i] - chrono::Days::new(1),
                d.open[i],
                d.high[i],
                d.low[i],
                d.close[i],
                d.volume[i]
            )
        })
        .into_bytes(),
        positional,
        "",
    ));
    out
}

#[test]
fn every_layout_of_the_same_bars_gives_the_same_ingest_output() {
    let d = daily();
    let all = layouts(&d);
    let reference = parse_file(Path::new("data/X.csv"), &all[0].1, &all[0].2).unwrap();
    validate(&reference.bars).unwrap();
    assert_eq!(reference.bars.timestamps.len(), 60);
    assert_eq!(reference.bars.timestamps[0], midnight(d.day[0]));
    assert_eq!(reference.bars.close[5], d.close[5]);
    assert!(reference.layouts.is_empty());
    let expected = reference.bars.to_bytes();
    for (name, bytes, opts, recognised) in &all {
        let got = parse_file(Path::new(&format!("data/{name}.csv")), bytes, opts)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got.bars, reference.bars, "{name}");
        assert_eq!(got.bars.to_bytes(), expected, "{name}");
        let said = got.layouts.join("; ");
        assert!(said.contains(recognised), "{name}: {said:?}");
        assert!(got.dropped.is_empty(), "{name}");
    }
}

#[test]
fn dates_are_never_silently_wrong() {
    let parse = |text: &str| {
        parse_file(
            Path::new("d.csv"),
            text.as_bytes(),
            &IngestOptions::default(),
        )
    };
    // Eight digits that are not a date: neither a date nor plausible Unix seconds.
    let m = parse("timestamp,open,high,low,close\n19991399,1,2,1,2\n")
        .unwrap_err()
        .to_string();
    assert!(m.contains("d.csv:2: column 'timestamp'"), "{m}");
    assert!(m.contains("data.format.date"), "{m}");
    // Declared, eight digits are Unix seconds.
    let unix = IngestOptions {
        format: FileFormat {
            date: Some("unix".into()),
            ..FileFormat::default()
        },
        ..IngestOptions::default()
    };
    let got = parse_file(
        Path::new("d.csv"),
        b"timestamp,open,high,low,close\n19991399,1,2,1,2\n",
        &unix,
    )
    .unwrap();
    assert_eq!(got.bars.timestamps, vec![19_991_399]);
    // Two-digit years are refused, or read with the declared pivot.
    let m = parse("Date,Open,High,Low,Close\n05/27/22,1,2,1,2\n")
        .unwrap_err()
        .to_string();
    assert!(m.contains("d.csv:2: column 'Date'"), "{m}");
    assert!(m.contains("has a two-digit year"), "{m}");
    assert!(m.contains("%m/%d/%y"), "{m}");
    let pivot = IngestOptions {
        format: FileFormat {
            date: Some("%m/%d/%y".into()),
            ..FileFormat::default()
        },
        ..IngestOptions::default()
    };
    let got = parse_file(
        Path::new("d.csv"),
        b"Date,Open,High,Low,Close\n05/27/22,1,2,1,2\n05/27/99,1,2,1,2\n",
        &pivot,
    )
    .unwrap();
    assert_eq!(got.bars.timestamps, vec![927_763_200, 1_653_609_600]);
}

#[test]
fn an_unadjusted_split_is_a_warning_naming_file_and_line() {
    let d = daily();
    let mut text = plain_csv(&d);
    // Every price from row 31 on divided by 4, as on a 4:1 split.
    let mut out = String::new();
    for (n, line) in text.lines().enumerate() {
        if n >= 31 {
            let f: Vec<&str> = line.split(',').collect();
            let q = |s: &str| format!("{:.4}", s.parse::<f64>().unwrap() / 4.0);
            out.push_str(&format!(
                "{},{},{},{},{},{}\n",
                f[0],
                q(f[1]),
                q(f[2]),
                q(f[3]),
                q(f[4]),
                f[5]
            ));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    text = out;
    let got = parse_file(
        Path::new("data/X.csv"),
        text.as_bytes(),
        &IngestOptions::default(),
    )
    .unwrap();
    assert_eq!(got.notes.len(), 1, "{:?}", got.notes);
    let note = &got.notes[0];
    assert!(
        note.starts_with("data/X.csv:32: the close goes from"),
        "{note}"
    );
    assert!(
        note.contains("Adj Close") && note.contains("unadjusted split"),
        "{note}"
    );
    let plain = parse_file(
        Path::new("data/X.csv"),
        plain_csv(&d).as_bytes(),
        &IngestOptions::default(),
    )
    .unwrap();
    assert!(plain.notes.is_empty(), "{:?}", plain.notes);
}

#[test]
fn a_declared_format_builds_to_the_dataset_of_the_plain_file() {
    let d = daily();
    let exp = |extra: &str| {
        format!(
            "name: exp\ndata:\n  source: local\n  path: trainingdata\n  symbols: [AAA]\n  \
             features: [close, log_return]\n  sequence_length: 5\n  prediction_horizon: 1\n{extra}\
             model: {{type: mlp, hidden_size: 4, num_layers: 1}}\ntraining: {{max_steps: 1, batch_size: 8}}\n"
        )
    };
    let all = layouts(&d);
    let nasdaq = &all.iter().find(|l| l.0 == "nasdaq").unwrap().1;
    let german = &all.iter().find(|l| l.0 == "declared").unwrap().1;
    let mut digests = Vec::new();
    for (bytes, extra) in [
        (plain_csv(&d).into_bytes(), String::new()),
        (nasdaq.clone(), String::new()),
        (
            german.clone(),
            "  columns: {date: Datum, open: Eröffnung, high: Hoch, low: Tief, close: Schluss, volume: 6}\n  \
             format: {delimiter: \";\", decimal: \",\", thousands: \".\", currency: \"€\", date: \"%d.%m.%Y\"}\n"
                .to_string(),
        ),
    ] {
        let p = common::Project::new("formats-declared");
        std::fs::create_dir_all(p.path("trainingdata")).unwrap();
        std::fs::write(p.path("trainingdata/AAA.csv"), bytes).unwrap();
        p.write("experiments/exp.yaml", &exp(&extra));
        p.build();
        digests.push(stage_digest(&p, "ingest:AAA", "bars"));
    }
    assert_eq!(digests[0], digests[1], "plain vs nasdaq");
    assert_eq!(digests[0], digests[2], "plain vs declared");
}

#[test]
fn a_file_that_cannot_be_read_names_its_layout_and_the_setting() {
    let read = |text: &str| {
        parse_file(
            Path::new("d.csv"),
            text.as_bytes(),
            &IngestOptions::default(),
        )
        .unwrap_err()
        .to_string()
    };
    // Several tickers in one yfinance download.
    let m = read(
        "Price,Close,Close,High,High\nTicker,AAPL,MSFT,AAPL,MSFT\nDate,,,,\n2022-05-02,1,2,3,4\n",
    );
    assert!(
        m.starts_with("d.csv:1: column 'Ticker': a yfinance download of 2 tickers (AAPL, MSFT)"),
        "{m}"
    );
    // A bad value in a recognised layout says which layout the file was read as.
    let m = read("Date,Close/Last,Volume,Open,High,Low\n05/27/2022,$10,5,$10,$11,N/A\n");
    assert!(
        m.starts_with("d.csv:2: column 'Low': cannot parse 'N/A'"),
        "{m}"
    );
    assert!(
        m.ends_with("[read as: nasdaq.com export (Close/Last, prices as $173.07)]"),
        "{m}"
    );
    // The header's line is counted after leading empty lines.
    let m = read("\n\nDay,Open,High,Low,Close\n2022-05-02,1,2,1,2\n");
    assert!(
        m.starts_with("d.csv:3: column 'date': missing required column"),
        "{m}"
    );
    // UTF-16 without a byte-order mark is read too.
    let mut bytes = Vec::new();
    for u in "Date,Open,High,Low,Close\n2022-05-02,1,2,1,2\n".encode_utf16() {
        bytes.extend(u.to_le_bytes());
    }
    let got = parse_file(Path::new("d.csv"), &bytes, &IngestOptions::default()).unwrap();
    assert_eq!(got.bars.close, vec![2.0]);
    assert!(got.layouts[0].contains("UTF-16"), "{:?}", got.layouts);
}
