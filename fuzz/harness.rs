//! The bodies of the fuzz targets, shared by `fuzz/fuzz_targets/*.rs` (libFuzzer, nightly)
//! and `tests/fuzz_corpus.rs` (which replays the corpora and crash reproducers in plain
//! `cargo test`), so both exercise exactly the same code paths.
//!
//! Each body only asserts "no panic" plus invariants that are cheap to check:
//!
//! - `config`: the input is up to four parts separated by NUL bytes: the experiment file,
//!   a first and a second template, and `--set` overrides (one per line). The template
//!   reader serves the first template for the first distinct path asked for, the second for
//!   the second, and "not found" for any other, so real experiment files (which name
//!   `templates/x.yaml`) make useful seeds. A resolved experiment must plan, and the
//!   canonical JSON that stage keys hash must read back to the same canonical JSON.
//! - `csv`: bars the CSV loader accepts, with bad rows as errors or dropped, must satisfy
//!   `ingest::validate`; dropping never keeps more bars than erroring would reject.
//! - `parquet`: the same for the Parquet loader (`parquet::parse_parquet`), and the row
//!   groups decoded on one thread must give what they give on several.
//! - `lockfile`: a lockfile that parses must round-trip through `to_text` unchanged.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use hft::config::{self, Experiment};
use hft::data::ingest::parquet::parse_parquet;
use hft::data::ingest::{self, BadRows, IngestOptions};
use hft::lock::Lockfile;

/// Separates the parts of a `config` input.
pub const SEPARATOR: u8 = 0;

pub fn config(data: &[u8]) {
    let mut parts = data
        .splitn(4, |b| *b == SEPARATOR)
        .map(|p| String::from_utf8_lossy(p).into_owned());
    let experiment = parts.next().unwrap_or_default();
    let templates: Vec<String> = parts.by_ref().take(2).collect();
    let overrides: Vec<String> = parts
        .next()
        .map(|o| o.lines().map(str::to_string).collect())
        .unwrap_or_default();
    let mut served: Vec<PathBuf> = Vec::new();
    let mut read_template = |p: &Path| -> Result<String, String> {
        let i = match served.iter().position(|s| s == p) {
            Some(i) => i,
            None => {
                served.push(p.to_path_buf());
                served.len() - 1
            }
        };
        templates
            .get(i)
            .cloned()
            .ok_or_else(|| "not found".to_string())
    };
    let resolved = config::resolve_file(
        Path::new("experiments/fuzz.yaml"),
        &experiment,
        "fuzz",
        &overrides,
        None,
        &mut read_template,
        &hft::model::REGISTRIES,
    );
    let all = match resolved {
        Ok(all) => all,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    for r in &all {
        let files: Vec<hft::data::layout::SymbolFiles> = (r.experiment.data.symbols.listed())
            .iter()
            .map(|s| hft::data::layout::SymbolFiles {
                symbol: s.clone(),
                files: vec![format!("{s}.csv")],
            })
            .collect();
        let _ = hft::graph::plan(&r.experiment, &files);
        let canonical = config::canonical_json(&r.experiment);
        let back: Experiment = serde_json::from_str(&canonical)
            .unwrap_or_else(|e| panic!("canonical JSON does not read back ({e}): {canonical}"));
        assert_eq!(
            config::canonical_json(&back),
            canonical,
            "canonical JSON is not stable"
        );
    }
}

const DROP: IngestOptions = IngestOptions {
    on_bad_rows: BadRows::Drop,
    ..IngestOptions::DEFAULT
};

/// What both loaders must satisfy: accepted bars are valid; under `Drop` everything that
/// `Error` accepts is accepted unchanged.
fn check_modes(
    what: &str,
    parse: impl Fn(&IngestOptions) -> Result<ingest::Ingested, ingest::DataError>,
) {
    let strict = parse(&IngestOptions::default());
    let lenient = parse(&DROP);
    for result in [&strict, &lenient] {
        match result {
            Ok(got) => {
                if let Err(e) = ingest::validate(&got.bars) {
                    panic!("{what} accepted bars that validate rejects: {e}");
                }
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
    if let Ok(strict) = &strict {
        match &lenient {
            Ok(lenient) => {
                assert_eq!(strict.bars, lenient.bars, "{what}: Drop changed valid bars");
                assert!(
                    lenient.dropped.is_empty(),
                    "{what}: Drop dropped a valid row"
                );
            }
            Err(e) => panic!("{what}: Error accepted the file, Drop rejected it: {e}"),
        }
    }
}

pub fn csv(data: &[u8]) {
    check_modes("parse_csv", |opts| {
        ingest::parse_csv_with(Path::new("fuzz.csv"), data, opts)
    });
}

pub fn parquet(data: &[u8]) {
    let path = Path::new("fuzz.parquet");
    check_modes("parse_parquet", |opts| parse_parquet(path, data, opts));
    // Row groups are decoded in parallel: one thread must see the same.
    if let Ok(pool) = rayon::ThreadPoolBuilder::new().num_threads(1).build() {
        let one = pool.install(|| parse_parquet(path, data, &DROP));
        assert_eq!(
            one,
            parse_parquet(path, data, &DROP),
            "parse_parquet depends on the thread count"
        );
    }
}

pub fn lockfile(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lock = match Lockfile::parse(text) {
        Ok(lock) => lock,
        Err(_) => return,
    };
    let written = lock.to_text();
    let back = Lockfile::parse(&written)
        .unwrap_or_else(|e| panic!("to_text output does not parse ({e}):\n{written}"));
    assert_eq!(back, lock, "lockfile does not round-trip");
    assert_eq!(back.to_text(), written, "to_text is not stable");
}
