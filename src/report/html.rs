//! `hft report`: one self-contained HTML file with inline SVG plots.

use std::collections::BTreeMap;

/// What the report shows of one experiment, gathered by the CLI from the store.
#[derive(Debug, Clone, Default)]
pub struct ReportExperiment {
    pub name: String,
    pub file: String,
    pub model: String,
    pub optimizer: String,
    /// Every resolved config leaf (`optimizer.lr` -> `0.001`, values as JSON text).
    pub config: BTreeMap<String, String>,
    /// Numeric results, as in the catalog (`backtest.strategy.sharpe`, `train.best_val_loss`).
    pub metrics: BTreeMap<String, f64>,
    /// The train stage's `log` blob, parsed (`train::TrainLog` as JSON); `None` if not built.
    pub train_log: Option<serde_json::Value>,
    /// The evaluate stage's `predictions` blob (CSV bytes); `None` if not built.
    pub predictions: Option<Vec<u8>>,
}

/// The whole HTML document.
pub fn render(experiments: &[ReportExperiment]) -> Result<String, String> {
    let _ = experiments;
    Err("the HTML report is not written yet".to_string())
}
