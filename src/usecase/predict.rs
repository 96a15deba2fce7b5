//! `hft predict`: an experiment's trained model on bars, without retraining.
//!
//! The bars (the experiment's own source, or `--data`) go through the same feature
//! definitions, the dataset stage's windowing and its train-split normalisation (read from
//! the dataset blob, never refitted), then the checkpoint's model and target scaling
//! (`eval::predict`). Every window ending at a bar is scored, the latest included: its
//! targets lie in the future, which is the point.
//!
//! Scoring is content-addressed like a stage: the key is the checkpoint's and the
//! dataset's digests, the model settings evaluation reads, the bars' sources (each ingest
//! key of the experiment's own data, or the content digest of each `--data` file) and the
//! window range. The forecasts are a blob under an action record of stage `predict`, so
//! scoring the same bars again reads them back and executes nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub use super::forecasts::{ACTIONS, Forecast, Forecasts, forecasts_csv, iso_time};
use super::forecasts::{Stored, short, shorts};
use super::trained::{Trained, pick, resolve};
use super::{Failure, Outcome, Selection, open_store};
use crate::config::{Experiment, canonical_json};
use crate::data::dataset::inference::{base_features, inference_rows, window_ends};
use crate::data::features::{Formula, feature};
use crate::data::{self, Bars, Dataset, Split};
use crate::graph::exec::{ExperimentJob, ExperimentReport, StageState};
use crate::graph::stages::{StageInputs, StageKind, ingest_options};
use crate::store::{ActionRecord, Digest, OutputRef, StageKey, Store, now_unix};

/// Bumped when the forecasts of equal inputs change (their layout, the windows scored).
const PREDICT_VERSION: u32 = 1;
/// The output of a `predict` record.
const FORECASTS: &str = "forecasts";

/// What `hft predict` was asked.
#[derive(Debug, Clone)]
pub struct PredictRequest {
    pub select: Selection,
    pub cache_dir: PathBuf,
    /// Experiment name, or its file.
    pub experiment: String,
    /// A data file or folder to score instead of the experiment's own source.
    pub data: Option<PathBuf>,
    /// Score only these symbols (empty: every symbol of the data).
    pub symbols: Vec<String>,
    /// Score only windows whose last bar is at or after this (a date or an RFC 3339 time).
    pub from: Option<String>,
    /// ... and at or before this (a date means the whole day).
    pub to: Option<String>,
}

/// What `hft predict` answers.
#[derive(Debug, Clone)]
pub struct Predicted {
    pub experiment: String,
    pub model: String,
    pub forecasts: Forecasts,
    pub key: StageKey,
    /// Read back from the store: nothing executed.
    pub cached: bool,
    pub warnings: Vec<String>,
}

/// Scores the bars of `req` with the experiment's trained model.
pub fn predict(req: &PredictRequest) -> Result<Predicted, Failure> {
    let store = open_store(&req.cache_dir)?;
    let range = WindowRange::parse(req.from.as_deref(), req.to.as_deref())?;
    super::survey::survey(&store, &req.select, |store, jobs, reports| {
        let i = pick(&req.experiment, jobs)?;
        let (job, report) = (&jobs[i], &reports[i]);
        let trained = resolve(store, job, report, &["dataset", "train"])?;
        let mut sources = sources(job, report, &trained, req.data.as_deref())?;
        if !req.symbols.is_empty() {
            let known: Vec<String> = sources.iter().map(|s| s.symbol().to_string()).collect();
            if let Some(missing) = req.symbols.iter().find(|s| !known.contains(s)) {
                return Err(Failure::bad_input(format!(
                    "--symbols {missing}: not in the data scored (it has {})",
                    known.join(", ")
                )));
            }
            sources.retain(|s| req.symbols.iter().any(|w| w == s.symbol()));
        }
        let key = predict_key(&trained, &sources, &range);
        let mut warnings = trained.warnings.clone();
        let forecasts = match cached(store, &key) {
            Some(forecasts) => (forecasts, true),
            None => {
                let started = Instant::now();
                let forecasts = score(store, job, &trained, &sources, &range)?;
                if let Err(e) = remember(store, &key, &forecasts, started) {
                    warnings.push(format!("cannot keep the forecasts in the cache: {e}"));
                }
                (forecasts, false)
            }
        };
        Ok(Predicted {
            experiment: trained.name.clone(),
            model: trained.experiment.model.kind.clone(),
            forecasts: forecasts.0,
            key,
            cached: forecasts.1,
            warnings,
        })
    })?
}

/// Where one symbol's bars come from.
#[derive(Debug)]
enum Source {
    /// The experiment's own ingest stage (plan index), by its key.
    Stage {
        symbol: String,
        index: usize,
        key: StageKey,
    },
    /// Files given with `--data`, with their bytes' digests.
    Files {
        symbol: String,
        files: Vec<PathBuf>,
        digests: Vec<Digest>,
    },
}

impl Source {
    fn symbol(&self) -> &str {
        match self {
            Source::Stage { symbol, .. } | Source::Files { symbol, .. } => symbol,
        }
    }

    /// What the bars are a function of, for the key.
    fn fact(&self) -> String {
        match self {
            Source::Stage { symbol, key, .. } => format!("{symbol}\0ingest\0{key}"),
            Source::Files {
                symbol, digests, ..
            } => {
                let d: Vec<String> = digests.iter().map(Digest::to_hex).collect();
                format!("{symbol}\0files\0{}", d.join(","))
            }
        }
    }
}

/// The symbols to score and where their bars come from.
fn sources(
    job: &ExperimentJob,
    report: &ExperimentReport,
    trained: &Trained,
    data: Option<&Path>,
) -> Result<Vec<Source>, Failure> {
    let Some(path) = data else {
        let mut out = Vec::new();
        for (index, spec) in job.plan.stages.iter().enumerate() {
            let StageKind::Ingest { symbol } = &spec.kind else {
                continue;
            };
            let stage = report.stages.get(index);
            let Some(key) = stage.and_then(|s| s.key.clone()) else {
                let why = match stage.map(|s| &s.state) {
                    Some(StageState::Stale { reason }) => reason.clone(),
                    _ => "its source cannot be read".to_string(),
                };
                return Err(Failure::bad_input(format!(
                    "cannot read the bars of {symbol} for `{}`: {why}",
                    job.plan.name
                )));
            };
            out.push(Source::Stage {
                symbol: symbol.clone(),
                index,
                key,
            });
        }
        return Ok(out);
    };
    let read_digest = |file: &Path| -> Result<Digest, Failure> {
        crate::store::hash_file(file)
            .map_err(|e| Failure::bad_input(format!("cannot read {}: {e}", file.display())))
    };
    if path.is_file() {
        let symbol = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        return Ok(vec![Source::Files {
            symbol,
            digests: vec![read_digest(path)?],
            files: vec![path.to_path_buf()],
        }]);
    }
    if !path.is_dir() {
        return Err(Failure::bad_input(format!(
            "--data {}: no such file or folder",
            path.display()
        )));
    }
    let listing = data::layout::list_folder(path);
    let trained_symbols: Vec<String> = trained
        .header
        .symbols
        .iter()
        .filter(|s| data::layout::resolve(&listing, s).is_ok())
        .cloned()
        .collect();
    let symbols = if trained_symbols.is_empty() {
        data::layout::all_symbols(&listing)
    } else {
        trained_symbols
    };
    if symbols.is_empty() {
        return Err(Failure::bad_input(format!(
            "--data {}: no data files (.csv, .parquet) in it",
            path.display()
        )));
    }
    let mut out = Vec::new();
    for symbol in symbols {
        let found = data::layout::resolve(&listing, &symbol)
            .map_err(|e| Failure::bad_input(format!("--data {}: {e}", path.display())))?;
        let files: Vec<PathBuf> = found.files.iter().map(|f| path.join(f)).collect();
        let digests = files
            .iter()
            .map(|f| read_digest(f))
            .collect::<Result<_, _>>()?;
        out.push(Source::Files {
            symbol,
            files,
            digests,
        });
    }
    Ok(out)
}

/// The key of scoring `sources` with `trained` over `range`.
fn predict_key(trained: &Trained, sources: &[Source], range: &WindowRange) -> StageKey {
    let e = &trained.experiment;
    let settings = canonical_json(&serde_json::json!({
        "model": e.model.key_value(),
        "data": {"cross_sessions": e.data.cross_sessions, "on_bad_rows": e.data.on_bad_rows},
    }));
    let mut parts: Vec<Vec<u8>> = vec![
        b"predict".to_vec(),
        PREDICT_VERSION.to_le_bytes().to_vec(),
        trained.checkpoint_digest.to_hex().into_bytes(),
        trained.dataset_digest.to_hex().into_bytes(),
        settings.into_bytes(),
        format!("{:?}..{:?}", range.from, range.to).into_bytes(),
    ];
    parts.extend(sources.iter().map(|s| s.fact().into_bytes()));
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    StageKey::compute(&refs)
}

/// The forecasts under `key`, if the store has them intact.
fn cached(store: &Store, key: &StageKey) -> Option<Forecasts> {
    let record = store.get_action(key)?;
    let bytes = store.get_blob(&record.outputs.get(FORECASTS)?.digest)?;
    serde_json::from_slice::<Stored>(&bytes)
        .ok()
        .map(Stored::forecasts)
}

/// Stores the forecasts (blob first, then the record that names it).
fn remember(
    store: &Store,
    key: &StageKey,
    forecasts: &Forecasts,
    started: Instant,
) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(&Stored::of(forecasts)).map_err(std::io::Error::other)?;
    let out: OutputRef = store.put_blob(&bytes)?;
    store.put_action(&ActionRecord {
        key: key.clone(),
        stage: "predict".to_string(),
        outputs: BTreeMap::from([(FORECASTS.to_string(), out)]),
        summary: serde_json::json!({ "forecasts": forecasts.rows.len() }).into(),
        hft_version: env!("CARGO_PKG_VERSION").to_string(),
        wall_ms: started.elapsed().as_millis() as u64,
        created: now_unix(),
        digest: None,
    })
}

/// Reads, featurises, windows and scores every source.
fn score(
    store: &Store,
    job: &ExperimentJob,
    trained: &Trained,
    sources: &[Source],
    range: &WindowRange,
) -> Result<Forecasts, Failure> {
    let header = &trained.header;
    let e: &Experiment = &trained.experiment;
    let names = base_features(header);
    let mut warm_up = 0;
    for name in &names {
        let def = feature(name).ok_or_else(|| {
            Failure::bad_input(format!(
                "the model of `{}` was trained with feature `{name}`, which this hft does not \
                 define",
                trained.name
            ))
        })?;
        warm_up = warm_up.max(def.lookback);
    }
    let s = header.sequence_length;
    let needed = warm_up + s;
    let mut split = Split::default();
    // Per source: its rows; per window: its source and last row.
    let mut rows: Vec<(crate::data::F64s, crate::data::F64s)> = Vec::with_capacity(sources.len());
    let mut tiled = Vec::new();
    let (mut window_symbol, mut window_end) = (Vec::new(), Vec::new());
    let mut closes = Vec::new();
    let mut symbols = Vec::new();
    for (index, source) in sources.iter().enumerate() {
        let symbol = source.symbol();
        let bars = bars_of(store, job, source)?;
        if bars.close.len() < needed {
            return Err(Failure::bad_input(format!(
                "{symbol}: {} bars, but scoring needs at least {needed}: {warm_up} bars of \
                 feature warm-up ({}) plus a window of {s} (data.sequence_length)",
                bars.close.len(),
                names.join(", ")
            )));
        }
        check_volume(symbol, &bars, &names)?;
        let table = data::features::compute(&bars, symbol, &names)
            .map_err(|err| Failure::bad_input(format!("{symbol}: {err}")))?;
        let ends: Vec<usize> = window_ends(&table, s, e.data.cross_sessions)
            .into_iter()
            .filter(|&end| range.contains(table.timestamps[end]))
            .collect();
        // The windows stay rows: a million windows would otherwise be their rows times the
        // sequence length in memory (`data::Windows`).
        let (values, constants) =
            inference_rows(&table, header).map_err(|err| Failure::bad_input(err.to_string()))?;
        tiled = constants;
        for &end in &ends {
            let end = u32::try_from(end)
                .map_err(|_| Failure::bad_input(format!("{symbol}: over {} bars", u32::MAX)))?;
            window_symbol.push(index as u32);
            window_end.push(end);
        }
        rows.push((values.into(), table.close.clone().into()));
        split
            .timestamp
            .extend(ends.iter().map(|&t| table.timestamps[t]));
        closes.extend(ends.iter().map(|&t| table.close[t]));
        symbols.extend(std::iter::repeat_n(index, ends.len()));
    }
    split.n = closes.len();
    split.x = crate::data::Windows::Rows {
        source: std::sync::Arc::new(crate::data::RowSource {
            rows,
            tiled,
            sequence_length: s,
            features: header.feature_names.len(),
        }),
        symbol: window_symbol,
        end: window_end,
    };
    if split.n == 0 {
        return Err(Failure::bad_input(format!(
            "no window of `{}` ends {}",
            trained.name,
            range.describe()
        )));
    }
    let p = header.prediction_horizon;
    split.y = vec![0.0; split.n * p];
    split.action = vec![1; split.n];
    split.symbol = symbols.iter().map(|&i| i as u32).collect();
    let shape = Dataset {
        symbols: sources.iter().map(|s| s.symbol().to_string()).collect(),
        feature_names: header.feature_names.clone(),
        sequence_length: s,
        prediction_horizon: p,
        bar_seconds: header.bar_seconds,
        norm_mean: header.norm_mean.clone(),
        norm_std: header.norm_std.clone(),
        train: Split::default(),
        val: Split::default(),
        test: Split::default(),
    };
    let preds =
        crate::eval::predict(&shape, &e.model, &trained.checkpoint, &split).map_err(|err| {
            Failure {
                outcome: Outcome::StageFailed,
                errors: vec![format!("predicting with `{}`: {err}", trained.name)],
            }
        })?;
    let rows = (0..split.n)
        .map(|i| Forecast {
            symbol: sources[symbols[i]].symbol().to_string(),
            timestamp: split.timestamp[i],
            close: closes[i],
            returns: preds.price[i * p..(i + 1) * p].to_vec(),
            band: preds.band.as_ref().map(|b| {
                [
                    b.lower[i * p..(i + 1) * p].to_vec(),
                    b.upper[i * p..(i + 1) * p].to_vec(),
                ]
            }),
            logits: [
                preds.logits[i * 3],
                preds.logits[i * 3 + 1],
                preds.logits[i * 3 + 2],
            ],
        })
        .collect();
    Ok(Forecasts {
        horizon: p,
        band_levels: preds.band.as_ref().map(|b| b.levels),
        rows,
    })
}

/// A model with volume features cannot read bars without volume (a file with no volume
/// column reads as volume 0 throughout).
fn check_volume(symbol: &str, bars: &Bars, names: &[String]) -> Result<(), Failure> {
    let reads_volume: Vec<&str> = names
        .iter()
        .filter(|n| {
            feature(n).is_some_and(|d| matches!(d.formula, Formula::Volume | Formula::VolumeRatio))
        })
        .map(String::as_str)
        .collect();
    if !reads_volume.is_empty() && bars.volume.iter().all(|v| *v == 0.0) {
        return Err(Failure::bad_input(format!(
            "{symbol}: the model was trained with volume features ({}), but these bars have \
             no volume (no volume column)",
            reads_volume.join(", ")
        )));
    }
    Ok(())
}

/// One source's bars: the ingest stage's output when built, else the stage executed here
/// (its output is not stored: a build does that); `--data` files parsed.
fn bars_of(store: &Store, job: &ExperimentJob, source: &Source) -> Result<Bars, Failure> {
    let bad = |m: String| Failure::bad_input(m);
    match source {
        Source::Stage { symbol, index, key } => {
            if let Some(record) = store.get_action(key)
                && let Some(out) = record.outputs.get("bars")
                && let Some(bytes) = store.get_blob(&out.digest)
                && let Ok(bars) = Bars::from_bytes(&bytes)
            {
                return Ok(bars);
            }
            let spec = &job.plan.stages[*index];
            let digests = job.data_digests.get(index).cloned().unwrap_or_default();
            let inputs = StageInputs {
                experiment: job.experiment,
                store,
                deps: Vec::new(),
                data_files: &spec.data_files,
                data_digests: &digests,
                key: None,
            };
            let out = spec
                .kind
                .execute(&inputs)
                .map_err(|e| bad(format!("ingest:{symbol}: {e}")))?;
            let bytes = out
                .blobs
                .get("bars")
                .ok_or_else(|| bad(format!("ingest:{symbol} gave no bars")))?;
            Bars::from_bytes(bytes).map_err(|e| bad(format!("ingest:{symbol}: {e}")))
        }
        Source::Files { files, .. } => {
            let mut read = Vec::with_capacity(files.len());
            for f in files {
                let bytes = std::fs::read(f)
                    .map_err(|e| bad(format!("cannot read {}: {e}", f.display())))?;
                read.push((f.clone(), bytes));
            }
            let mut opts = ingest_options(&job.experiment.data);
            // The experiment's date window cut its training data; new bars are all scored
            // (--from and --to choose the windows).
            opts.start = None;
            opts.end = None;
            data::ingest::parse_files(&read, &opts)
                .map(|i| i.bars)
                .map_err(|e| bad(e.to_string()))
        }
    }
}

/// The window ends `--from` and `--to` keep (Unix seconds, both inclusive).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowRange {
    pub from: Option<i64>,
    pub to: Option<i64>,
}

impl WindowRange {
    /// `from` and `to` as dates (`2024-01-31`: the whole day) or RFC 3339 times.
    pub fn parse(from: Option<&str>, to: Option<&str>) -> Result<WindowRange, Failure> {
        let at = |flag: &str, text: Option<&str>, end: bool| -> Result<Option<i64>, Failure> {
            let Some(text) = text.map(str::trim) else {
                return Ok(None);
            };
            if let Ok(day) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
                let start = day.and_time(chrono::NaiveTime::MIN).and_utc().timestamp();
                return Ok(Some(if end { start + 86_399 } else { start }));
            }
            if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
                return Ok(Some(t.timestamp()));
            }
            if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S") {
                return Ok(Some(t.and_utc().timestamp()));
            }
            Err(Failure::bad_input(format!(
                "{flag} {text}: not a date (2024-01-31) or a time (2024-01-31T15:30:00Z)"
            )))
        };
        let range = WindowRange {
            from: at("--from", from, false)?,
            to: at("--to", to, true)?,
        };
        if let (Some(a), Some(b)) = (range.from, range.to)
            && a > b
        {
            return Err(Failure::bad_input("--from is after --to"));
        }
        Ok(range)
    }

    pub fn contains(&self, t: i64) -> bool {
        self.from.is_none_or(|f| t >= f) && self.to.is_none_or(|e| t <= e)
    }

    fn describe(&self) -> String {
        match (self.from, self.to) {
            (None, None) => "in its bars".to_string(),
            (f, t) => format!(
                "between {} and {}",
                f.map_or("the first bar".to_string(), iso_time),
                t.map_or("the last bar".to_string(), iso_time)
            ),
        }
    }
}

/// The forecasts as one JSON document (for `--json`).
pub fn forecasts_json(p: &Predicted) -> serde_json::Value {
    let rows: Vec<serde_json::Value> = p
        .forecasts
        .rows
        .iter()
        .map(|r| {
            let [buy, hold, sell] = r.probabilities().map(short);
            let mut v = serde_json::json!({
                "symbol": r.symbol,
                "timestamp": iso_time(r.timestamp),
                "close": r.close,
                "returns": shorts(&r.returns),
                "prices": r.prices(),
                "probabilities": {"buy": buy, "hold": hold, "sell": sell},
                "action": r.action(),
            });
            if let (Some([lower, upper]), Some(levels)) = (&r.band, p.forecasts.band_levels) {
                v["band"] = serde_json::json!({
                    "levels": levels, "lower": shorts(lower), "upper": shorts(upper),
                });
            }
            v
        })
        .collect();
    serde_json::json!({
        "experiment": p.experiment,
        "model": p.model,
        "horizon": p.forecasts.horizon,
        "key": p.key.0,
        "cached": p.cached,
        "forecasts": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_take_dates_as_whole_days_and_times_as_given() {
        let r = WindowRange::parse(Some("2024-01-02"), Some("2024-01-02")).unwrap();
        assert_eq!(r.from, Some(1_704_153_600));
        assert_eq!(r.to, Some(1_704_153_600 + 86_399));
        assert!(r.contains(1_704_153_600 + 3600) && !r.contains(1_704_153_600 + 86_400));
        let t = WindowRange::parse(Some("2024-01-02T10:00:00Z"), None).unwrap();
        assert_eq!(t.from, Some(1_704_153_600 + 36_000));
        assert!(WindowRange::parse(Some("yesterday"), None).is_err());
        assert!(WindowRange::parse(Some("2024-02-01"), Some("2024-01-01")).is_err());
        assert_eq!(iso_time(1_704_153_600), "2024-01-02T00:00:00Z");
    }
}
