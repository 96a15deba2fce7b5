//! The on-disk format of the three data stage outputs: [safetensors].
//!
//! A blob is an 8-byte little-endian header length, a JSON header (tensor dtypes, shapes and
//! byte offsets, padded with spaces to a multiple of 8), then the raw little-endian tensor data.
//! Any safetensors reader opens it, e.g. `safetensors.numpy.load_file(path)` in Python, and
//! `json.loads(header["__metadata__"]["hft"])` gives the metadata below.
//!
//! The header holds exactly one metadata key, `"hft"`, whose value is a JSON string (field
//! order fixed), so the same value always encodes to the same bytes. `kind` names the
//! blob's type and `version` its layout version (currently 1).
//!
//! ## Bars (`ingest` output)
//!
//! metadata: `{"kind":"bars","version":1}`
//!
//! | tensor | dtype | shape |
//! | --- | --- | --- |
//! | `timestamp` | I64 | `[n]` (Unix seconds, UTC) |
//! | `open`, `high`, `low`, `close`, `volume` | F64 | `[n]` |
//!
//! ## Feature tables (`features` output, one or more symbols)
//!
//! metadata: `{"kind":"features","version":1,"tables":[{"symbol":"AAPL","names":["close",..]},..]}`
//!
//! For the i-th table (0-based, in the order of `tables`), with `rows` rows and
//! `k = names.len()` features:
//!
//! | tensor | dtype | shape |
//! | --- | --- | --- |
//! | `{i}/timestamp` | I64 | `[rows]` |
//! | `{i}/close` | F64 | `[rows]` (the raw, adjusted close labels come from) |
//! | `{i}/values` | F64 | `[rows, k]` (row-major, columns in `names` order) |
//!
//! ## Dataset (`dataset` output: the blobs `dataset` and `rows`)
//!
//! metadata: `{"kind":"dataset","version":4,"symbols":[..],"feature_names":[..],
//! "sequence_length":S,"prediction_horizon":P,"bar_seconds":B,"relative":[..],
//! "action_threshold":T}`
//!
//! The windows are not stored: consecutive windows share all but one row, so they are `S`
//! times the size of the rows they are cut from. Nor are the labels: they follow from the
//! closes. The rows are the `rows` blob, a feature tables blob (layout above) with one
//! table per symbol of `symbols`, in that order, each with the columns `feature_names`.
//! Without `symbol_id` (and outside walk-forward folds) it is the features stage's own blob,
//! which the dataset stage's record names again rather than copying it. The `dataset` blob
//! holds the normalisation and runs of consecutive window ends; [`Dataset::from_blobs`]
//! rebuilds the windows and labels on load.
//!
//! | tensor | dtype | shape |
//! | --- | --- | --- |
//! | `norm_mean`, `norm_std` | F64 | `[k]` (train statistics) |
//! | `{split}/windows` | U32 | `[m, 3]` (per run: symbol index, first window's last row, count) |
//!
//! for `split` in `train`, `val`, `test`; `m` may be 0. A run `(i, e0, n)` holds the windows
//! of symbol `i` ending at rows `e0, e0 + 1, .., e0 + n - 1` of the rows blob's table `i`, in
//! that order; the split's windows are its runs' in order. Window `j` ending at `e`, with
//! `V = {i}/values` and `C = {i}/close` of the rows blob, is the `[S, k]` array
//! `x[s, c] = f32((v - norm_mean[c]) / norm_std[c])` where `v = V[e - S + 1 + s, c]`, divided
//! by `C[e]` minus 1 if `relative[c]`, all in f64. In numpy:
//! `w = V[e-S+1:e+1]; w = np.where(rel, w / C[e] - 1, w); ((w - m) / sd).astype("f4")`.
//! Its labels: `y[h-1] = f32(C[e+h] / C[e] - 1)` for `h = 1..=P` (in f64, then rounded); its
//! action 0 (buy) if `C[e+1] / C[e] - 1 > T`, 2 (sell) if it is `< -T`, else 1 (hold); its
//! timestamp `{i}/timestamp[e]`.
//!
//! [safetensors]: https://github.com/huggingface/safetensors
//!
//! `tensors` is the safetensors writer and reader these encoders share.

mod tensors;

use serde::{Deserialize, Serialize};

use super::dataset::{WindowRuns, label, tiled_constants};
use super::{Bars, Dataset, FeatureTable, RowSource, Split, Windows};
use std::sync::Arc;

use tensors::{Reader, Writer};

/// The single metadata key.
const META_KEY: &str = "hft";
/// Layout version of the bars and features blobs.
const VERSION: u32 = 1;
/// Layout version of the dataset blob: 4 keeps the rows in a features blob of their own
/// (the features stage's, when unchanged), 3 derives the labels from the closes and stores
/// runs of window ends, 2 stored each window's end and labels, 1 stored the windows.
const DATASET_VERSION: u32 = 4;
const SPLITS: [&str; 3] = ["train", "val", "test"];

/// Why bytes could not be read back as a stage output.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BlobError {
    /// Not a well-formed safetensors buffer.
    #[error("not a valid safetensors blob: {0}")]
    Format(String),
    /// The `hft` metadata is missing or malformed.
    #[error("blob metadata: {0}")]
    Metadata(String),
    /// A blob of another stage (or another layout version).
    #[error(
        "blob holds '{found}' version {version}, expected '{expected}' version {expected_version}"
    )]
    Kind {
        expected: &'static str,
        expected_version: u32,
        found: String,
        version: u32,
    },
    #[error("tensor '{0}' is missing")]
    Missing(String),
    /// A tensor has the wrong dtype, shape or contents.
    #[error("tensor '{name}': {message}")]
    Tensor { name: String, message: String },
}

#[derive(Serialize, Deserialize)]
struct Header {
    kind: String,
    version: u32,
}

#[derive(Serialize, Deserialize)]
struct TableMeta {
    symbol: String,
    names: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct FeaturesMeta {
    kind: String,
    version: u32,
    tables: Vec<TableMeta>,
}

#[derive(Serialize, Deserialize)]
struct DatasetMeta {
    kind: String,
    version: u32,
    symbols: Vec<String>,
    feature_names: Vec<String>,
    sequence_length: usize,
    prediction_horizon: usize,
    bar_seconds: i64,
    /// Per feature: divided by the window's last close, minus 1, before normalising.
    relative: Vec<bool>,
    /// What the actions are derived with (`data.action_threshold`).
    action_threshold: f64,
}

impl Bars {
    /// Encodes as a safetensors blob (see the module docs).
    pub fn to_bytes(&self) -> Vec<u8> {
        let meta = Header {
            kind: "bars".into(),
            version: VERSION,
        };
        let mut w = Writer::new();
        w.i64("timestamp", &self.timestamps, &[self.timestamps.len()]);
        for (name, v) in self.columns() {
            w.f64(name, v, &[v.len()]);
        }
        w.finish(&meta)
    }

    /// Decodes [`Bars::to_bytes`] output; checks the layout, not the bar invariants
    /// (see [`super::ingest::validate`]).
    pub fn from_bytes(b: &[u8]) -> Result<Bars, BlobError> {
        let r = Reader::open(b)?;
        let _: Header = r.meta("bars", VERSION)?;
        let timestamps = r.i64("timestamp", None)?.1;
        let n = timestamps.len();
        let col = |name: &str| r.f64(name, Some(&[n])).map(|(_, v)| v);
        Ok(Bars {
            open: col("open")?,
            high: col("high")?,
            low: col("low")?,
            close: col("close")?,
            volume: col("volume")?,
            timestamps,
        })
    }

    fn columns(&self) -> [(&'static str, &[f64]); 5] {
        [
            ("open", &self.open),
            ("high", &self.high),
            ("low", &self.low),
            ("close", &self.close),
            ("volume", &self.volume),
        ]
    }
}

/// Encodes feature tables, in order, as one safetensors blob (see the module docs).
pub fn encode_feature_tables(tables: &[FeatureTable]) -> Vec<u8> {
    let meta = FeaturesMeta {
        kind: "features".into(),
        version: VERSION,
        tables: tables
            .iter()
            .map(|t| TableMeta {
                symbol: t.symbol.clone(),
                names: t.names.clone(),
            })
            .collect(),
    };
    let mut w = Writer::new();
    for (i, t) in tables.iter().enumerate() {
        let rows = t.timestamps.len();
        w.i64(&format!("{i}/timestamp"), &t.timestamps, &[rows]);
        w.f64(&format!("{i}/close"), &t.close, &[rows]);
        w.f64(&format!("{i}/values"), &t.values, &[rows, t.names.len()]);
    }
    w.finish(&meta)
}

/// Decodes [`encode_feature_tables`] output, keeping the table order.
pub fn decode_feature_tables(b: &[u8]) -> Result<Vec<FeatureTable>, BlobError> {
    let r = Reader::open(b)?;
    let meta: FeaturesMeta = r.meta("features", VERSION)?;
    let mut tables = Vec::with_capacity(meta.tables.len());
    for (i, t) in meta.tables.into_iter().enumerate() {
        let timestamps = r.i64(&format!("{i}/timestamp"), None)?.1;
        let rows = timestamps.len();
        let close = r.f64(&format!("{i}/close"), Some(&[rows]))?.1;
        let values = r
            .f64(&format!("{i}/values"), Some(&[rows, t.names.len()]))?
            .1;
        tables.push(FeatureTable {
            symbol: t.symbol,
            names: t.names,
            timestamps,
            close,
            values,
        });
    }
    Ok(tables)
}

/// What a trained model needs of the dataset stage's blob to score new bars: the feature
/// columns, the window shape and the train-split normalisation, without the windows.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetHeader {
    pub symbols: Vec<String>,
    /// In column order, `symbol=NAME` columns included.
    pub feature_names: Vec<String>,
    pub sequence_length: usize,
    pub prediction_horizon: usize,
    pub bar_seconds: i64,
    /// Per column: divided by the window's last close, minus 1, before normalising.
    pub relative: Vec<bool>,
    pub norm_mean: Vec<f64>,
    pub norm_std: Vec<f64>,
}

impl DatasetHeader {
    /// Reads the header and the normalisation of a dataset blob (no rows, no windows).
    pub fn from_bytes(b: &[u8]) -> Result<DatasetHeader, BlobError> {
        let r = Reader::open(b)?;
        let meta: DatasetMeta = r.meta("dataset", DATASET_VERSION)?;
        let k = meta.feature_names.len();
        if meta.sequence_length == 0 || meta.relative.len() != k {
            return Err(BlobError::Metadata(format!(
                "sequence_length {} and {} relative flags for {k} features",
                meta.sequence_length,
                meta.relative.len()
            )));
        }
        Ok(DatasetHeader {
            norm_mean: r.f64("norm_mean", Some(&[k]))?.1,
            norm_std: r.f64("norm_std", Some(&[k]))?.1,
            symbols: meta.symbols,
            feature_names: meta.feature_names,
            sequence_length: meta.sequence_length,
            prediction_horizon: meta.prediction_horizon,
            bar_seconds: meta.bar_seconds,
            relative: meta.relative,
        })
    }
}

impl Dataset {
    /// Decodes the dataset stage's blobs ([`super::dataset::build_encoded`]): `dataset`
    /// and the `rows` its windows are cut from (a features blob). Checks shapes, symbol
    /// indices and window ends, and rebuilds the windows and labels.
    pub fn from_blobs(dataset: &[u8], rows: &Arc<Vec<u8>>) -> Result<Dataset, BlobError> {
        let r = Reader::open(dataset)?;
        let meta: DatasetMeta = r.meta("dataset", DATASET_VERSION)?;
        let (s, p, k) = (
            meta.sequence_length,
            meta.prediction_horizon,
            meta.feature_names.len(),
        );
        if s == 0 || p == 0 || meta.relative.len() != k {
            return Err(BlobError::Metadata(format!(
                "sequence_length {s}, prediction_horizon {p} and {} relative flags for {k} \
                 features",
                meta.relative.len()
            )));
        }
        let norm_mean = r.f64("norm_mean", Some(&[k]))?.1;
        let norm_std = r.f64("norm_std", Some(&[k]))?.1;
        // The rows: a feature tables blob, its values and closes read in place.
        let rows_reader = Reader::open(rows)?;
        let tables: FeaturesMeta = rows_reader.meta("features", VERSION)?;
        let same_tables = tables.tables.len() == meta.symbols.len()
            && tables
                .tables
                .iter()
                .zip(&meta.symbols)
                .all(|(t, symbol)| t.symbol == *symbol && t.names == meta.feature_names);
        if !same_tables {
            return Err(BlobError::Metadata(format!(
                "the rows blob holds tables {:?}, the dataset symbols {:?} with features {:?}",
                tables
                    .tables
                    .iter()
                    .map(|t| (&t.symbol, &t.names))
                    .collect::<Vec<_>>(),
                meta.symbols,
                meta.feature_names
            )));
        }
        let mut timestamps = Vec::with_capacity(meta.symbols.len());
        let rows = (0..meta.symbols.len())
            .map(|i| {
                let stamps = rows_reader.i64(&format!("{i}/timestamp"), None)?.1;
                let n = stamps.len();
                let close = rows_reader.f64_in(rows, &format!("{i}/close"), &[n])?;
                let values = rows_reader.f64_in(rows, &format!("{i}/values"), &[n, k])?;
                timestamps.push(stamps);
                Ok((values, close))
            })
            .collect::<Result<Vec<_>, BlobError>>()?;
        let tiled = tiled_constants(&meta.relative, &norm_mean, &norm_std, s);
        let theta = meta.action_threshold;
        /// A split's windows and labels, before the windows share the rows.
        #[derive(Default)]
        struct Labelled {
            n: usize,
            y: Vec<f32>,
            action: Vec<u8>,
            symbol: Vec<u32>,
            end: Vec<u32>,
            timestamp: Vec<i64>,
        }
        let mut splits = Vec::with_capacity(3);
        for name in SPLITS {
            let tensor = format!("{name}/windows");
            // `[m, 3]`: the number of runs is whatever the shape says, the rest is checked.
            let m =
                r.st.tensor(&tensor)
                    .map_err(|_| BlobError::Missing(tensor.clone()))?
                    .shape()
                    .first()
                    .copied()
                    .unwrap_or_default();
            let runs = r.u32(&tensor, &[m, 3])?;
            let mut split = Labelled::default();
            for run in runs.chunks_exact(3) {
                let (sym, first, count) = (run[0] as usize, run[1] as usize, run[2] as usize);
                let Some(((_, close), stamps)) = rows.get(sym).zip(timestamps.get(sym)) else {
                    return Err(r.bad(
                        &tensor,
                        format!("symbol index {sym} but only {} symbols", meta.symbols.len()),
                    ));
                };
                // A window's labels read the `p` closes after its end.
                let stored = stamps.len();
                if first < s - 1 || first.saturating_add(count).saturating_add(p) > stored {
                    return Err(r.bad(
                        &tensor,
                        format!(
                            "{count} windows of {s} rows ending from row {first} of symbol \
                             {sym}, labelled {p} rows ahead, but it has {stored} rows"
                        ),
                    ));
                }
                split.n += count;
                split.y.reserve(count * p);
                for (e, &stamp) in stamps.iter().enumerate().skip(first).take(count) {
                    split.action.push(label(close, e, p, theta, &mut split.y));
                    split.symbol.push(sym as u32);
                    split.end.push(e as u32);
                    split.timestamp.push(stamp);
                }
            }
            splits.push(split);
        }
        // The windows stay rows: each is cut when a batch asks for it (`data::windows`).
        let source = Arc::new(RowSource {
            rows,
            tiled,
            sequence_length: s,
            features: k,
        });
        let splits = splits.into_iter().map(|d| Split {
            n: d.n,
            x: Windows::Rows {
                source: Arc::clone(&source),
                symbol: d.symbol.clone(),
                end: d.end,
            },
            y: d.y,
            action: d.action,
            symbol: d.symbol,
            timestamp: d.timestamp,
        });
        let mut splits = splits;
        let mut next = || splits.next().unwrap_or_default();
        let (train, val, test) = (next(), next(), next());
        Ok(Dataset {
            symbols: meta.symbols,
            feature_names: meta.feature_names,
            sequence_length: s,
            prediction_horizon: p,
            bar_seconds: meta.bar_seconds,
            norm_mean,
            norm_std,
            train,
            val,
            test,
        })
    }
}

/// The dataset blob of `d` (symbols, shape, normalisation: its splits are not read) and the
/// runs of its windows; the rows they are cut from go in a blob of their own.
pub(super) fn encode_dataset(d: &Dataset, windows: &WindowRuns) -> Vec<u8> {
    let meta = DatasetMeta {
        kind: "dataset".into(),
        version: DATASET_VERSION,
        symbols: d.symbols.clone(),
        feature_names: d.feature_names.clone(),
        sequence_length: d.sequence_length,
        prediction_horizon: d.prediction_horizon,
        bar_seconds: d.bar_seconds,
        relative: windows.relative.clone(),
        action_threshold: windows.action_threshold,
    };
    let k = d.num_features();
    let mut w = Writer::new();
    w.f64("norm_mean", &d.norm_mean, &[k]);
    w.f64("norm_std", &d.norm_std, &[k]);
    for (name, runs) in SPLITS.iter().zip(&windows.runs) {
        w.u32(&format!("{name}/windows"), runs, &[runs.len() / 3, 3]);
    }
    w.finish(&meta)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use safetensors::tensor::Dtype;

    use super::*;
    use crate::data::F64s;
    use crate::data::synthetic::generate;
    use crate::data::{DatasetParams, dataset, features};

    /// A two-symbol dataset, its blob and its rows blob (the feature tables' blob).
    fn sample_dataset(bars: usize) -> (Dataset, Vec<u8>, Arc<Vec<u8>>) {
        let names: Vec<String> = ["close", "rsi_14", "volume_ratio"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let tables: Vec<FeatureTable> = (0..2)
            .map(|i| {
                let bars = generate(i, bars, 50.0, 86_400);
                features::compute(&bars, &format!("S{i}"), &names).unwrap()
            })
            .collect();
        let params = DatasetParams {
            sequence_length: 8,
            prediction_horizon: 2,
            action_threshold: 0.01,
            split: [0.8, 0.2, 0.0],
            relative_prices: true,
            symbol_id: false,
            cross_sessions: true,
        };
        let encoded = dataset::build_encoded(&tables, &params).unwrap();
        assert_eq!(encoded.rows, dataset::DatasetRows::Input);
        (
            dataset::build(&tables, &params).unwrap(),
            encoded.bytes,
            Arc::new(encode_feature_tables(&tables)),
        )
    }

    /// `blob` re-serialised by the safetensors crate after `edit` changed its metadata
    /// string or a tensor's bytes (by name).
    fn rewrite(
        blob: &[u8],
        meta: impl Fn(String) -> String,
        edit: impl Fn(&str, &mut Vec<u8>),
    ) -> Vec<u8> {
        let r = Reader::open(blob).unwrap();
        let tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> =
            r.st.tensors()
                .into_iter()
                .map(|(name, view)| {
                    let mut bytes = view.data().to_vec();
                    edit(&name, &mut bytes);
                    (name, view.dtype(), view.shape().to_vec(), bytes)
                })
                .collect();
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
            .iter()
            .map(|(n, d, s, b)| {
                (
                    n.clone(),
                    safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
                )
            })
            .collect();
        let info = HashMap::from([(META_KEY.to_string(), meta(r.meta.clone()))]);
        safetensors::serialize(views, Some(info)).unwrap()
    }

    /// The encoder as it was before tensors were written straight into the output buffer:
    /// owned little-endian copies handed to `safetensors::serialize`. The blobs are
    /// content-addressed, so the new encoder must give exactly these bytes.
    mod legacy {
        use std::borrow::Cow;
        use std::collections::HashMap;

        use safetensors::tensor::{Dtype, View};

        use super::super::{FeaturesMeta, Header, META_KEY, TableMeta};
        use crate::data::{Bars, FeatureTable};

        struct Tensor {
            dtype: Dtype,
            shape: Vec<usize>,
            bytes: Vec<u8>,
        }

        impl View for &Tensor {
            fn dtype(&self) -> Dtype {
                self.dtype
            }
            fn shape(&self) -> &[usize] {
                &self.shape
            }
            fn data(&self) -> Cow<'_, [u8]> {
                Cow::Borrowed(&self.bytes)
            }
            fn data_len(&self) -> usize {
                self.bytes.len()
            }
        }

        #[derive(Default)]
        struct Writer {
            tensors: Vec<(String, Tensor)>,
        }

        fn le<T: Copy, const N: usize>(v: &[T], f: fn(T) -> [u8; N]) -> Vec<u8> {
            v.iter().flat_map(|&x| f(x)).collect()
        }

        impl Writer {
            fn tensor(&mut self, name: &str, dtype: Dtype, bytes: Vec<u8>, shape: &[usize]) {
                let elements = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
                let size = dtype.bitsize() / 8;
                let shape = if elements.and_then(|e| e.checked_mul(size)) == Some(bytes.len()) {
                    shape.to_vec()
                } else {
                    vec![bytes.len() / size.max(1)]
                };
                let t = Tensor {
                    dtype,
                    shape,
                    bytes,
                };
                self.tensors.push((name.to_string(), t));
            }
            fn f64(&mut self, name: &str, v: &[f64], shape: &[usize]) {
                self.tensor(name, Dtype::F64, le(v, f64::to_le_bytes), shape);
            }
            fn i64(&mut self, name: &str, v: &[i64], shape: &[usize]) {
                self.tensor(name, Dtype::I64, le(v, i64::to_le_bytes), shape);
            }
            fn finish(self, meta: &impl serde::Serialize) -> Vec<u8> {
                let json = serde_json::to_string(meta).unwrap();
                let info = HashMap::from([(META_KEY.to_string(), json)]);
                let views = self.tensors.iter().map(|(n, t)| (n.as_str(), t));
                safetensors::serialize(views, Some(info)).unwrap()
            }
        }

        pub fn bars(b: &Bars) -> Vec<u8> {
            let mut w = Writer::default();
            w.i64("timestamp", &b.timestamps, &[b.timestamps.len()]);
            for (name, v) in b.columns() {
                w.f64(name, v, &[v.len()]);
            }
            w.finish(&Header {
                kind: "bars".into(),
                version: 1,
            })
        }

        pub fn features(tables: &[FeatureTable]) -> Vec<u8> {
            let meta = FeaturesMeta {
                kind: "features".into(),
                version: 1,
                tables: tables
                    .iter()
                    .map(|t| TableMeta {
                        symbol: t.symbol.clone(),
                        names: t.names.clone(),
                    })
                    .collect(),
            };
            let mut w = Writer::default();
            for (i, t) in tables.iter().enumerate() {
                let rows = t.timestamps.len();
                w.i64(&format!("{i}/timestamp"), &t.timestamps, &[rows]);
                w.f64(&format!("{i}/close"), &t.close, &[rows]);
                w.f64(&format!("{i}/values"), &t.values, &[rows, t.names.len()]);
            }
            w.finish(&meta)
        }
    }

    #[test]
    fn encoders_give_the_bytes_of_the_previous_encoder() {
        for (seed, n) in [(5u64, 100usize), (1, 1), (9, 3000)] {
            let bars = generate(seed, n, 20.0, 300);
            assert_eq!(bars.to_bytes(), legacy::bars(&bars));
        }
        let mut broken = generate(2, 10, 20.0, 300);
        broken.close.pop();
        assert_eq!(broken.to_bytes(), legacy::bars(&broken));
        let names = vec![
            "ma_5".to_string(),
            "close".to_string(),
            "rsi_14".to_string(),
        ];
        let tables: Vec<FeatureTable> = [3u64, 1, 2]
            .iter()
            .map(|&s| features::compute(&generate(s, 400, 10.0, 86_400), &format!("Z{s}"), &names))
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(encode_feature_tables(&tables), legacy::features(&tables));
        assert_eq!(encode_feature_tables(&[]), legacy::features(&[]));
        // The dataset encoder against the crate's serialiser on the same tensors.
        for bars in [60, 300, 2000] {
            let (_, blob, _) = sample_dataset(bars);
            assert_eq!(rewrite(&blob, |m| m, |_, _| {}), blob, "{bars} bars");
        }
    }

    #[test]
    fn bars_round_trip_and_determinism() {
        let bars = generate(5, 100, 20.0, 300);
        let bytes = bars.to_bytes();
        assert_eq!(bytes, bars.clone().to_bytes());
        assert_eq!(Bars::from_bytes(&bytes).unwrap(), bars);
        // The layout: 8-byte length, then JSON starting with the metadata.
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        assert_eq!(n % 8, 0);
        let header = std::str::from_utf8(&bytes[8..8 + n]).unwrap();
        assert!(
            header.starts_with(r#"{"__metadata__":{"hft":"{\"kind\":\"bars\",\"version\":1}"}"#),
            "{header}"
        );
        assert!(header.contains(r#""timestamp":{"dtype":"I64","shape":[100]"#));
    }

    #[test]
    fn feature_tables_round_trip_in_order() {
        let names = vec!["ma_5".to_string(), "close".to_string()];
        let tables: Vec<FeatureTable> = [3u64, 1, 2]
            .iter()
            .map(|&s| features::compute(&generate(s, 40, 10.0, 86_400), &format!("Z{s}"), &names))
            .collect::<Result<_, _>>()
            .unwrap();
        let bytes = encode_feature_tables(&tables);
        assert_eq!(bytes, encode_feature_tables(&tables));
        let back = decode_feature_tables(&bytes).unwrap();
        assert_eq!(back, tables);
        assert_eq!(back[0].symbol, "Z3");
        assert!(
            decode_feature_tables(&encode_feature_tables(&[]))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn dataset_round_trip_with_empty_split() {
        let (d, bytes, rows) = sample_dataset(300);
        assert_eq!(d.test.n, 0);
        assert!(d.train.n > 0 && d.val.n > 0);
        let decoded = Dataset::from_blobs(&bytes, &rows).unwrap();
        assert_eq!(decoded, d);
        // The windows are cut from the rows blob itself, not a copy of it.
        let Windows::Rows { source, .. } = &decoded.train.x else {
            panic!("a decoded dataset keeps its rows");
        };
        assert!(
            source
                .rows
                .iter()
                .all(|(v, c)| matches!(v, F64s::InBlob { .. }) && matches!(c, F64s::InBlob { .. }))
        );
        // The normalisation and runs of windows: no rows, no labels, no windows.
        assert!(bytes.len() < 1024, "{}", bytes.len());
    }

    #[test]
    fn a_rows_blob_of_other_tables_is_an_error() {
        let (_, bytes, rows) = sample_dataset(300);
        let tables = decode_feature_tables(&rows).unwrap();
        let e = Dataset::from_blobs(&bytes, &Arc::new(encode_feature_tables(&tables[..1])))
            .unwrap_err()
            .to_string();
        assert!(e.contains("the rows blob holds tables"), "{e}");
        let mut renamed = tables.clone();
        renamed[1].symbol = "OTHER".into();
        let e = Dataset::from_blobs(&bytes, &Arc::new(encode_feature_tables(&renamed)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("OTHER"), "{e}");
        // Rows too short for the windows the runs name.
        let mut short = tables;
        for t in &mut short {
            let n = t.timestamps.len() - 5;
            let k = t.names.len();
            t.timestamps.truncate(n);
            t.close.truncate(n);
            t.values.truncate(n * k);
        }
        let e = Dataset::from_blobs(&bytes, &Arc::new(encode_feature_tables(&short)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("windows") && e.contains("rows"), "{e}");
    }

    #[test]
    fn wrong_kind_and_inconsistent_structs_are_errors() {
        let bars = generate(5, 10, 20.0, 86_400);
        let (_, blob, rows) = sample_dataset(300);
        let e = Dataset::from_blobs(&bars.to_bytes(), &rows).unwrap_err();
        assert!(matches!(e, BlobError::Kind { .. }), "{e}");
        assert!(decode_feature_tables(&bars.to_bytes()).is_err());
        let e = Dataset::from_blobs(&blob, &Arc::new(bars.to_bytes())).unwrap_err();
        assert!(matches!(e, BlobError::Kind { .. }), "{e}");
        // A dataset blob of the layout that stored its rows.
        let old = rewrite(
            &blob,
            |m| m.replace(r#""version":4"#, r#""version":3"#),
            |_, _| {},
        );
        let e = Dataset::from_blobs(&old, &rows).unwrap_err().to_string();
        assert!(e.contains("version 3, expected 'dataset' version 4"), "{e}");
        // A run of windows that would read past its symbol's rows.
        let past = rewrite(
            &blob,
            |m| m,
            |name, bytes| {
                if name == "val/windows" {
                    bytes[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
                }
            },
        );
        let e = Dataset::from_blobs(&past, &rows).unwrap_err().to_string();
        assert!(e.contains("val/windows") && e.contains("rows"), "{e}");
        // One that would start before them.
        let before = rewrite(
            &blob,
            |m| m,
            |name, bytes| {
                if name == "train/windows" {
                    bytes[4..8].copy_from_slice(&3u32.to_le_bytes());
                }
            },
        );
        let e = Dataset::from_blobs(&before, &rows).unwrap_err().to_string();
        assert!(e.contains("train/windows"), "{e}");
        // A symbol that is not there.
        let nobody = rewrite(
            &blob,
            |m| m,
            |name, bytes| {
                if name == "train/windows" {
                    bytes[..4].copy_from_slice(&9u32.to_le_bytes());
                }
            },
        );
        let e = Dataset::from_blobs(&nobody, &rows).unwrap_err().to_string();
        assert!(e.contains("symbol index 9"), "{e}");
        let mut broken = bars.clone();
        broken.close.pop();
        assert!(Bars::from_bytes(&broken.to_bytes()).is_err());
    }

    #[test]
    fn corrupt_bytes_never_panic() {
        let (_, dataset, rows) = sample_dataset(60);
        let blobs = [
            generate(1, 20, 10.0, 86_400).to_bytes(),
            dataset.clone(),
            rows.to_vec(),
        ];
        let mut state = 0x2545_F491_4F6C_DD1D_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for blob in &blobs {
            for round in 0..600 {
                let mut v = blob.clone();
                match round % 3 {
                    0 => v.truncate((next() % v.len() as u64) as usize),
                    1 => {
                        // Flip bytes in the header, where the structure lives.
                        let n = (u64::from_le_bytes(v[..8].try_into().unwrap()) as usize + 8)
                            .min(v.len());
                        for _ in 0..3 {
                            let i = (next() % n as u64) as usize;
                            v[i] ^= 1 << (next() % 8);
                        }
                    }
                    _ => {
                        let i = (next() % v.len() as u64) as usize;
                        v[i] = next() as u8;
                    }
                }
                let _ = Bars::from_bytes(&v);
                let _ = decode_feature_tables(&v);
                let _ = Dataset::from_blobs(&v, &rows);
                let _ = Dataset::from_blobs(&dataset, &Arc::new(v));
            }
        }
        assert!(Bars::from_bytes(&[]).is_err());
        assert!(Dataset::from_blobs(&[0xff; 16], &rows).is_err());
    }
}
