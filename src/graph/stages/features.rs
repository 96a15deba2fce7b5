//! The `features` stage: the feature table of every symbol, plus its memo (the last run of
//! each symbol), so that bars only appended since then compute only the new rows.

use std::collections::BTreeMap;

use serde_json::json;

use super::{Stage, StageError, StageInputs, StageOutput};
use crate::config::Experiment;
use crate::data::{self, Bars};
use crate::store::{ActionRecord, Digest, Store};

/// Feature tables of every symbol.
pub struct Features;

impl Stage for Features {
    fn name(&self) -> &'static str {
        "features"
    }

    /// 2: `log_return` (and what reads it) takes the `libm` crate's ln, not the platform's,
    /// whose last bit differed from it on some inputs (and between glibc's FMA and non-FMA
    /// code): the same features on every CPU and OS.
    fn version(&self, _: &Experiment) -> u32 {
        2
    }

    fn config(&self, e: &Experiment) -> serde_json::Value {
        json!({"data": {"features": e.data.features}})
    }

    fn execute(&self, inputs: &StageInputs) -> Result<StageOutput, StageError> {
        let e = inputs.experiment;
        let names = &e.data.features;
        // An audit (no key) recomputes from scratch and leaves no memo behind.
        let incremental = inputs.key.is_some();
        let previous = if incremental {
            previous_features(inputs.store, names, inputs.deps.as_slice())
        } else {
            BTreeMap::new()
        };
        let mut tables = Vec::with_capacity(inputs.deps.len());
        let mut states = Vec::with_capacity(inputs.deps.len());
        let mut computed_rows = 0usize;
        for (i, record) in inputs.deps.iter().enumerate() {
            let bars = Bars::from_bytes(&inputs.blob(i, "bars")?)
                .map_err(|err| StageError::Failed(format!("{}: {err}", record.stage)))?;
            let symbol = record
                .stage
                .strip_prefix("ingest:")
                .unwrap_or(&record.stage);
            // Bars only appended since a previous run: compute the new rows alone
            // (bit-identical to a full run); any mismatch falls back to a full run.
            let continued = previous
                .get(symbol)
                .and_then(|p| p.continuable(&bars))
                .and_then(|(table, state)| {
                    data::features::extend_owned(table, &state, &bars, symbol, names).ok()
                });
            let (table, state, rows) = match continued {
                Some(done) => done,
                None => data::features::compute_with_state(&bars, symbol, names)
                    .map(|(t, s)| {
                        let rows = t.timestamps.len();
                        (t, s, rows)
                    })
                    .map_err(|err| StageError::BadInput(format!("{symbol}: {err}")))?,
            };
            computed_rows += rows;
            tables.push(table);
            states.push(state);
        }
        let rows: usize = tables.iter().map(|t| t.timestamps.len()).sum();
        let blob = data::blob::encode_feature_tables(&tables);
        let mut digests = BTreeMap::new();
        if incremental {
            // The memo names the blob by digest; the executor reuses it rather than hashing
            // the blob again.
            let digest = Digest::of(&blob);
            remember_features(inputs.store, names, &inputs.deps, &digest, &states);
            digests.insert("features".to_string(), digest);
        }
        Ok(StageOutput {
            summary: json!({
                "rows": rows,
                "features": e.data.features.len(),
                // Rows computed in this run; the rest continued a previous run.
                "computed_rows": computed_rows,
            }),
            blobs: BTreeMap::from([("features".to_string(), blob)]),
            digests,
            ..StageOutput::default()
        })
    }
}

/// `builds/features-<names, symbol>.json`: the last features run of one symbol under one
/// feature list, so that a run over the same bars plus appended ones computes only the new
/// rows. A cache of a cache: anything missing or inconsistent means a full computation.
#[derive(serde::Serialize, serde::Deserialize)]
struct FeaturesMemo {
    /// The ingest `bars` blob the table was computed from.
    bars: String,
    /// The features blob holding the table, and the table's index in it.
    features: String,
    index: usize,
    /// The `FeatureState` after the last bar (its own blob).
    state: String,
}

fn features_memo_id(names: &[String], symbol: &str) -> String {
    let text = format!("features memo v1\0{}\0{symbol}", names.join("\0"));
    format!("features-{}", Digest::of(text.as_bytes()).short())
}

/// A previous run of one symbol, loaded lazily.
struct PreviousFeatures<'a> {
    store: &'a Store,
    memo: FeaturesMemo,
}

impl PreviousFeatures<'_> {
    /// The previous table and state, if `bars` extends the bars they were computed from.
    fn continuable(
        &self,
        bars: &Bars,
    ) -> Option<(data::FeatureTable, data::features::FeatureState)> {
        let old =
            Bars::from_bytes(&self.store.get_blob(&Digest::from_hex(&self.memo.bars)?)?).ok()?;
        let n = old.timestamps.len();
        let prefix = |a: &[f64], b: &[f64]| {
            b.len() >= n && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
        };
        let same_prefix = bars.timestamps.get(..n) == Some(&old.timestamps[..])
            && prefix(&old.open, &bars.open)
            && prefix(&old.high, &bars.high)
            && prefix(&old.low, &bars.low)
            && prefix(&old.close, &bars.close)
            && prefix(&old.volume, &bars.volume);
        if !same_prefix {
            return None;
        }
        let state_bytes = self.store.get_blob(&Digest::from_hex(&self.memo.state)?)?;
        let state = data::features::FeatureState::from_bytes(&state_bytes).ok()?;
        let blob = self
            .store
            .get_blob(&Digest::from_hex(&self.memo.features)?)?;
        let table = data::blob::decode_feature_tables(&blob)
            .ok()?
            .into_iter()
            .nth(self.memo.index)?;
        Some((table, state))
    }
}

/// The remembered previous run of each input symbol.
fn previous_features<'a>(
    store: &'a Store,
    names: &[String],
    deps: &[&ActionRecord],
) -> BTreeMap<String, PreviousFeatures<'a>> {
    deps.iter()
        .filter_map(|r| {
            let symbol = r.stage.strip_prefix("ingest:")?;
            let memo: FeaturesMemo = store.get_build_record(&features_memo_id(names, symbol))?;
            Some((symbol.to_string(), PreviousFeatures { store, memo }))
        })
        .collect()
}

/// Records this run for the next one (best effort: a failure only costs a full run later).
fn remember_features(
    store: &Store,
    names: &[String],
    deps: &[&ActionRecord],
    features_blob: &Digest,
    states: &[data::features::FeatureState],
) {
    let features = features_blob.to_hex();
    for (index, (record, state)) in deps.iter().zip(states).enumerate() {
        let (Some(symbol), Some(bars)) = (
            record.stage.strip_prefix("ingest:"),
            record.outputs.get("bars"),
        ) else {
            continue;
        };
        let Ok(state_blob) = store.put_blob(&state.to_bytes()) else {
            continue;
        };
        let memo = FeaturesMemo {
            bars: bars.digest.to_hex(),
            features: features.clone(),
            index,
            state: state_blob.digest.to_hex(),
        };
        let _ = store.put_build_record(&features_memo_id(names, symbol), &memo);
    }
}
