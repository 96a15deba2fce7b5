//! The `ingest` stage: one symbol's bars from its source (local files, an API snapshot, or
//! seeded synthetic bars), checked against the digests its key was computed from.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::json;

use super::{Stage, StageError, StageInputs, StageOutput};
use crate::config::{Experiment, OnBadRows, SourceKind};
use crate::data::{self, Bars};
use crate::store::Digest;

/// One symbol's ingest.
pub struct Ingest<'a> {
    pub symbol: &'a str,
}

impl Stage for Ingest<'_> {
    fn name(&self) -> &'static str {
        "ingest"
    }

    /// 2: an all-digits `YYYYMMDD` timestamp is a date (was read as Unix seconds), a
    /// two-digit year is refused (was year 00YY), absurd prices are errors: bars that read
    /// wrongly before must not be found in a cache under their old key. Files read right
    /// before give the same bars, so only the ingest keys move, not their outputs.
    /// 3, synthetic bars only: their exp, ln, pow and sin are the `libm` crate's, not the
    /// platform's (the same bars on every CPU and OS); local and API bars did not move.
    fn version(&self, e: &Experiment) -> u32 {
        match e.data.source {
            SourceKind::Synthetic => 3,
            SourceKind::Local | SourceKind::Api => 2,
        }
    }

    fn config(&self, e: &Experiment) -> serde_json::Value {
        let d = &e.data;
        let symbol = self.symbol;
        // The file's path is not part of the key: its bytes are (as an input digest); an
        // API snapshot's digest likewise stands for the request.
        let mut v = match d.source {
            SourceKind::Local | SourceKind::Api => {
                json!({"data": {"source": d.source, "symbol": symbol}})
            }
            SourceKind::Synthetic => json!({"data": {
                "source": d.source, "symbol": symbol, "synthetic": d.synthetic,
            }}),
        };
        // Added after the first release: left out at their defaults, so existing keys (and
        // caches) stay valid.
        if d.on_bad_rows != OnBadRows::Error {
            v["data"]["on_bad_rows"] = json!(d.on_bad_rows);
        }
        if let Some(start) = &d.start {
            v["data"]["start"] = json!(start.trim());
        }
        if let Some(end) = &d.end {
            v["data"]["end"] = json!(end.trim());
        }
        // How a local file is read, when declared (API snapshots are hft's own CSV).
        if d.source == SourceKind::Local {
            if !d.columns.is_empty() {
                v["data"]["columns"] = json!(d.columns);
            }
            if !d.format.is_empty() {
                v["data"]["format"] = json!(d.format);
            }
        }
        v
    }

    fn execute(&self, inputs: &StageInputs) -> Result<StageOutput, StageError> {
        let e = inputs.experiment;
        let symbol = self.symbol;
        let opts = ingest_options(&e.data);
        let ingested = match e.data.source {
            SourceKind::Local => {
                if inputs.data_files.is_empty() {
                    return Err(StageError::Failed("ingest has no data file".into()));
                }
                let mut files = Vec::with_capacity(inputs.data_files.len());
                for (i, path) in inputs.data_files.iter().enumerate() {
                    let planned = inputs.data_digests.get(i);
                    // Read and hashed when planning (a file new to the stat cache): the
                    // very bytes the key names.
                    if let Some(bytes) = planned.and_then(|d| inputs.store.take_data_bytes(d)) {
                        files.push((path.clone(), bytes));
                        continue;
                    }
                    let bytes = crate::store::read_file(path).map_err(|err| {
                        StageError::BadInput(format!("cannot read {}: {err}", path.display()))
                    })?;
                    // The key was computed from the digest seen when planning; if the file
                    // changed since, these bytes belong under another key.
                    if planned != Some(&Digest::of(&bytes)) {
                        return Err(StageError::Failed(format!(
                            "{} changed during the build; run the build again",
                            path.display()
                        )));
                    }
                    files.push((path.clone(), std::sync::Arc::new(bytes)));
                }
                let files: Vec<(std::path::PathBuf, &[u8])> = files
                    .iter()
                    .map(|(p, b)| (p.clone(), b.as_slice()))
                    .collect();
                data::ingest::parse_files(&files, &opts)
                    .map_err(|err| StageError::BadInput(err.to_string()))?
            }
            SourceKind::Api => {
                let digest = inputs
                    .data_digests
                    .first()
                    .ok_or_else(|| StageError::Failed(format!("no API snapshot for {symbol}")))?;
                let bytes = inputs.store.get_blob(digest).ok_or_else(|| {
                    StageError::Failed(format!(
                        "the API snapshot of {symbol} ({}) is missing or corrupt in the cache; \
                         run `hft fetch` to download it again",
                        digest.short()
                    ))
                })?;
                let name = format!("snapshot of {symbol} ({})", digest.short());
                // The snapshot is hft's canonical CSV: `data.columns` / `data.format`
                // describe local files only.
                let opts = data::ingest::IngestOptions {
                    columns: data::ingest::ColumnMap::NONE,
                    format: data::ingest::FileFormat::NONE,
                    ..opts
                };
                data::ingest::parse_csv_with(Path::new(&name), &bytes, &opts)
                    .map_err(|err| StageError::BadInput(err.to_string()))?
            }
            SourceKind::Synthetic => {
                let s = &e.data.synthetic;
                // Each symbol gets its own series from the one configured seed.
                let seed = s.seed
                    ^ u64::from_le_bytes(
                        Digest::of(symbol.as_bytes()).0[..8]
                            .try_into()
                            .unwrap_or([0; 8]),
                    );
                let bars = match &s.signal {
                    Some(signal) => data::synthetic::generate_planted(
                        seed,
                        s.bars,
                        s.start_price,
                        s.bar_seconds,
                        &signal.signal(),
                    ),
                    None => data::synthetic::generate(seed, s.bars, s.start_price, s.bar_seconds),
                };
                let bars = filter_time(bars, opts.start, opts.end).ok_or_else(|| {
                    StageError::BadInput(format!(
                        "synthetic bars of {symbol}: none left between data.start and data.end"
                    ))
                })?;
                data::ingest::Ingested {
                    bars,
                    dropped: vec![],
                    notes: vec![],
                    layouts: vec![],
                }
            }
        };
        if !ingested.dropped.is_empty() {
            let first = &ingested.dropped[0];
            crate::term::warn(&format!(
                "ingest:{symbol}: dropped {} bad row{} (data.on_bad_rows: drop); first: {}",
                ingested.dropped.len(),
                if ingested.dropped.len() == 1 { "" } else { "s" },
                first.message
            ));
        }
        for note in &ingested.notes {
            crate::term::warn(&format!("ingest:{symbol}: {note}"));
        }
        let mut summary = bars_summary(symbol, &ingested.bars);
        summary["dropped"] = json!(ingested.dropped.len());
        // Which layout each file was read as, when not plain CSV (left out otherwise, so
        // plain files' summaries are as before).
        if !ingested.layouts.is_empty() {
            summary["layout"] = json!(ingested.layouts);
        }
        if !ingested.notes.is_empty() {
            summary["notes"] = json!(ingested.notes);
        }
        Ok(StageOutput {
            summary,
            blobs: BTreeMap::from([("bars".to_string(), ingested.bars.to_bytes())]),
            ..StageOutput::default()
        })
    }
}

/// What the ingest stage reads of `data` besides its source.
pub fn ingest_options(d: &crate::config::DataConfig) -> data::ingest::IngestOptions {
    let (start, end) = d.time_range();
    data::ingest::IngestOptions {
        on_bad_rows: match d.on_bad_rows {
            OnBadRows::Error => data::ingest::BadRows::Error,
            OnBadRows::Drop => data::ingest::BadRows::Drop,
        },
        start,
        end,
        columns: d.columns.clone(),
        format: d.format.clone(),
    }
}

/// The bars with `start <= t < end`; `None` when none are left.
fn filter_time(bars: Bars, start: Option<i64>, end: Option<i64>) -> Option<Bars> {
    if start.is_none() && end.is_none() {
        return Some(bars);
    }
    let keep = |t: i64| start.is_none_or(|s| t >= s) && end.is_none_or(|e| t < e);
    let lo = bars.timestamps.iter().position(|&t| keep(t))?;
    let hi = bars.timestamps.iter().rposition(|&t| keep(t))? + 1;
    let cut = |v: &[f64]| v[lo..hi].to_vec();
    Some(Bars {
        timestamps: bars.timestamps[lo..hi].to_vec(),
        open: cut(&bars.open),
        high: cut(&bars.high),
        low: cut(&bars.low),
        close: cut(&bars.close),
        volume: cut(&bars.volume),
    })
}

fn bars_summary(symbol: &str, bars: &Bars) -> serde_json::Value {
    json!({
        "symbol": symbol,
        "rows": bars.timestamps.len(),
        "first": bars.timestamps.first(),
        "last": bars.timestamps.last(),
    })
}
