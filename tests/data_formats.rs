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
use hft::data::ingest::{BadRows, IngestOptions, Ingested, parse_file, validate};
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
