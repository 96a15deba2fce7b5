//! The data layer: OHLCV bars in, windowed training datasets out.
//!
//! Three build stages live on top of this module (see `graph`):
//! `ingest` (a source -> [`Bars`]), `features` ([`Bars`] -> [`FeatureTable`]) and
//! `dataset` ([`FeatureTable`]s -> [`Dataset`]). Every function here is pure: the same
//! inputs give bit-identical outputs, so their results can be cached by content. Nothing
//! here goes to the network: API downloads and their snapshots live in [`crate::sources`].

pub mod blob;
pub mod dataset;
pub mod features;
pub mod ingest;
pub mod layout;
pub mod synthetic;
pub mod windows;

pub use blob::BlobError;
pub use ingest::DataError;
pub use windows::{F64s, RowSource, Windows};

/// One symbol's bars, oldest first, timestamps unique.
#[derive(Debug, Clone, PartialEq)]
pub struct Bars {
    /// Seconds since the Unix epoch (UTC; a date-only row is midnight).
    pub timestamps: Vec<i64>,
    pub open: Vec<f64>,
    pub high: Vec<f64>,
    pub low: Vec<f64>,
    /// The adjusted close when the source had one (and O/H/L scaled to match).
    pub close: Vec<f64>,
    /// 0 when the source has no volume.
    pub volume: Vec<f64>,
}

/// Selected features of one symbol, warm-up rows already dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureTable {
    pub symbol: String,
    /// Feature names in column order (as selected in the config).
    pub names: Vec<String>,
    /// One per row.
    pub timestamps: Vec<i64>,
    /// The (adjusted) close of each row: labels are computed from it, never from features.
    pub close: Vec<f64>,
    /// Row-major `[rows, names.len()]`.
    pub values: Vec<f64>,
}

/// What the `dataset` stage reads from the config.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetParams {
    pub sequence_length: usize,
    pub prediction_horizon: usize,
    pub action_threshold: f64,
    /// Shares of each symbol's rows: train, val, test (sum to 1).
    pub split: [f64; 3],
    /// Express price-level features relative to the window's last close.
    pub relative_prices: bool,
    /// Append one 0/1 input column per symbol (`symbol=AAPL`), before normalisation.
    pub symbol_id: bool,
    /// Whether a window (inputs and targets) may span a session gap; see
    /// `dataset::sessions`.
    pub cross_sessions: bool,
}

/// One split's windows. `n` windows of `sequence_length` rows and `k` features.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Split {
    pub n: usize,
    /// `[n, sequence_length, k]`, z-scored with train statistics: in memory, or cut per
    /// batch from the rows they read (see [`Windows`]).
    pub x: Windows,
    /// `[n, prediction_horizon]`: r[h] = C[t+h] / C[t] - 1 from raw closes.
    pub y: Vec<f32>,
    /// `[n]`: 0 buy, 1 hold, 2 sell.
    pub action: Vec<u8>,
    /// `[n]`: index into `Dataset::symbols`.
    pub symbol: Vec<u32>,
    /// `[n]`: timestamp of the window's last bar t.
    pub timestamp: Vec<i64>,
}

/// The output of the `dataset` stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub symbols: Vec<String>,
    pub feature_names: Vec<String>,
    pub sequence_length: usize,
    pub prediction_horizon: usize,
    /// Typical spacing of bars in seconds (median), for annualising metrics.
    pub bar_seconds: i64,
    /// Per-feature normalisation fitted on the train split.
    pub norm_mean: Vec<f64>,
    pub norm_std: Vec<f64>,
    pub train: Split,
    pub val: Split,
    pub test: Split,
}

impl Dataset {
    /// Features per time step.
    pub fn num_features(&self) -> usize {
        self.feature_names.len()
    }
}

#[cfg(test)]
mod pipeline_timing {
    use std::time::Instant;

    /// The feature pipeline of `shared/reference/benchmarks.md` in one process, phase by
    /// phase: `HFT_PIPELINE_CSV=big.csv cargo test --release --lib pipeline_timing --
    /// --ignored --nocapture` (features from `HFT_PIPELINE_FEATURES`, comma-separated).
    #[test]
    #[ignore = "a benchmark: needs HFT_PIPELINE_CSV"]
    fn pipeline_timing() {
        let Ok(path) = std::env::var("HFT_PIPELINE_CSV") else {
            eprintln!("HFT_PIPELINE_CSV not set");
            return;
        };
        let names: Vec<String> = std::env::var("HFT_PIPELINE_FEATURES")
            .unwrap_or_else(|_| {
                "log_return,ma_20,rsi_14,bb_position,volatility,volume_ratio".to_string()
            })
            .split(',')
            .map(str::to_string)
            .collect();
        let total = Instant::now();
        let mut lap = Instant::now();
        let mut phase = |name: &str| {
            eprintln!("{name:>16}: {:.3} s", lap.elapsed().as_secs_f64());
            lap = Instant::now();
        };
        let bytes = std::fs::read(&path).unwrap();
        phase("read");
        let bars = super::ingest::parse_csv(std::path::Path::new(&path), &bytes).unwrap();
        drop(bytes);
        phase("parse_csv");
        let blob = bars.to_bytes();
        phase("bars blob");
        let bars = super::Bars::from_bytes(&blob).unwrap();
        drop(blob);
        phase("bars decode");
        let rows = bars.close.len();
        let table = super::features::compute(&bars, "BIG", &names).unwrap();
        drop(bars);
        phase("features");
        let blob = super::blob::encode_feature_tables(std::slice::from_ref(&table));
        drop(table);
        phase("features blob");
        let tables = super::blob::decode_feature_tables(&blob).unwrap();
        drop(blob);
        phase("features decode");
        let params = super::DatasetParams {
            sequence_length: 60,
            prediction_horizon: 5,
            action_threshold: 0.01,
            split: [0.7, 0.15, 0.15],
            relative_prices: true,
            symbol_id: false,
            cross_sessions: true,
        };
        let encoded = super::dataset::build_encoded(&tables, &params).unwrap();
        phase("dataset blob");
        let digest = blake3::hash(&encoded.bytes);
        phase("blake3 of it");
        let secs = total.elapsed().as_secs_f64();
        eprintln!(
            "{rows} rows, {} windows, {:.2} GB blob {}: {secs:.3} s, {:.2} M rows/s",
            encoded.n.iter().sum::<usize>(),
            encoded.bytes.len() as f64 / 1e9,
            &digest.to_hex()[..12],
            rows as f64 / secs / 1e6
        );
    }
}
