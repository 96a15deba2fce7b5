//! What the ingest unit tests share: parsing a CSV text, a timestamp, an error message.

use std::path::Path;

use chrono::NaiveDateTime;

pub(super) use super::pipeline::DROP_HINT;
use super::{BadRows, DataError, IngestOptions, Ingested, parse_csv, parse_csv_with};
use crate::data::Bars;

pub(crate) fn parse(text: &str) -> Result<Bars, DataError> {
    parse_csv(Path::new("data/TEST.csv"), text.as_bytes())
}

pub(crate) fn ts(s: &str) -> i64 {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
        .map(|d| d.and_utc().timestamp())
        .unwrap_or(i64::MIN)
}

pub(crate) fn message(text: &str) -> String {
    match parse(text) {
        Ok(b) => panic!("expected an error, got {b:?}"),
        Err(e) => e.to_string(),
    }
}

pub(crate) fn with(text: &str, opts: &IngestOptions) -> Result<Ingested, DataError> {
    parse_csv_with(Path::new("data/TEST.csv"), text.as_bytes(), opts)
}

pub(crate) const DROP: IngestOptions = IngestOptions {
    on_bad_rows: BadRows::Drop,
    ..IngestOptions::DEFAULT
};

pub(crate) const HEAD: &str = "Date,Open,High,Low,Close,Volume\n";
