//! The `evaluate` stage: test-split predictions, forecast errors, action accuracy and a
//! backtest, next to buy-and-hold and the persistence forecast. Definitions follow
//! `features.md` ("Trading metrics").

use std::collections::BTreeMap;
use std::fmt::Write as _;

use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::config::{EvaluationConfig, ModelConfig, Signal};
use crate::data::{Dataset, Split};
use crate::model::{self, Dims, ModelError, WeightsMeta};
use crate::train::Checkpoint;

/// Bumped whenever a metric is added, removed or redefined.
/// 2: `per_symbol` (datasets of two or more symbols).
pub const METRICS_VERSION: u32 = 2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub metrics_version: u32,
    /// Always `test`.
    pub split: String,
    /// Test windows evaluated.
    pub windows: usize,
    pub price: PriceMetrics,
    pub action: ActionMetrics,
    pub backtest: BacktestMetrics,
    /// The same metrics over each symbol's test windows alone (the fields above are
    /// pooled over every symbol); empty for a single-symbol dataset.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub per_symbol: BTreeMap<String, Metrics>,
}

/// Forecast errors over all predicted returns r1..rP, in return units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceMetrics {
    pub mse: f64,
    pub mae: f64,
    /// Share of windows where sign(predicted r1) = sign(actual r1), among windows whose
    /// actual r1 is not zero; `None` when there are none.
    pub directional_accuracy: Option<f64>,
    /// The same errors for the persistence forecast (every return predicted as 0).
    pub persistence_mse: f64,
    pub persistence_mae: f64,
    /// For probabilistic models (`dit`): how often the actual returns fall in the band.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub band: Option<BandMetrics>,
}

/// Calibration of a predicted band, over all predicted returns r1..rP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BandMetrics {
    /// The quantile levels of the band's lower and upper edges.
    pub levels: [f64; 2],
    /// Share of actual returns inside `[lower, upper]`; `levels[1] - levels[0]` (0.8) when
    /// the band is calibrated.
    pub coverage: f64,
    /// Mean of `upper - lower`, in return units.
    pub mean_width: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionMetrics {
    /// Share of windows whose argmax action equals the label.
    pub accuracy: f64,
    pub predicted: ClassCounts,
    pub actual: ClassCounts,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassCounts {
    pub buy: usize,
    pub hold: usize,
    pub sell: usize,
}

impl ClassCounts {
    fn add(&mut self, class: u8) {
        match class {
            0 => self.buy += 1,
            1 => self.hold += 1,
            _ => self.sell += 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BacktestMetrics {
    pub signal: Signal,
    pub cost_bps: f64,
    /// Sharpe annualisation factor, from the dataset's bar spacing.
    pub bars_per_year: f64,
    pub strategy: BacktestStats,
    pub buy_and_hold: BacktestStats,
}

/// One backtest's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BacktestStats {
    /// Final equity - 1.
    pub total_return: f64,
    /// Mean / sample standard deviation of bar returns * sqrt(bars per year); 0 when the
    /// deviation is 0 or there are fewer than two bars.
    pub sharpe: f64,
    /// Largest fall of equity from a previous peak (equity starts at 1), as a fraction.
    pub max_drawdown: f64,
    /// Bars at which the position changed (entering from flat at the first bar included).
    pub trades: usize,
    /// Bars in the equity curve.
    pub bars: usize,
}

pub struct EvalOutput {
    pub metrics: Metrics,
    /// [`predictions_csv`] of the test split.
    pub predictions: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("evaluation: {0}")]
    Config(String),
}

/// A model's outputs on a split.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    pub horizon: usize,
    /// `[n, horizon]` predicted returns (head output times the train-split scale).
    pub price: Vec<f32>,
    /// `[n, 3]` buy, hold, sell logits.
    pub logits: Vec<f32>,
    /// A probabilistic model's band of predicted returns; `None` for point forecasters.
    pub band: Option<Band>,
}

/// Lower and upper quantiles of each predicted return, `[n, horizon]` each, in return units.
#[derive(Debug, Clone, PartialEq)]
pub struct Band {
    /// The quantile levels of `lower` and `upper`.
    pub levels: [f64; 2],
    pub lower: Vec<f32>,
    pub upper: Vec<f32>,
}

/// The quantiles a model's `Forecast::band` holds.
pub const BAND_LEVELS: [f64; 2] = [0.1, 0.9];

impl Predictions {
    pub fn len(&self) -> usize {
        self.logits.len() / 3
    }

    pub fn is_empty(&self) -> bool {
        self.logits.is_empty()
    }

    /// Argmax of window `i`'s logits: 0 buy, 1 hold, 2 sell (the first on ties).
    pub fn action(&self, i: usize) -> u8 {
        argmax(&self.logits[i * 3..i * 3 + 3]) as u8
    }
}

/// Index of the largest value, the first on ties (0 for an empty slice).
fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best
}

/// Runs the checkpoint's model on every window of `split` (dropout off), with the
/// moving-average weights when the checkpoint has them.
pub fn predict(
    dataset: &Dataset,
    model_cfg: &ModelConfig,
    checkpoint: &[u8],
    split: &Split,
) -> Result<Predictions, EvalError> {
    let ckpt = Checkpoint::decode(checkpoint)?;
    let dims = Dims::of(dataset);
    WeightsMeta {
        model: ckpt.meta.model.clone(),
        dims: ckpt.meta.dims,
    }
    .expect(&model_cfg.kind, dims)?;
    model::check_split(split, dims, "evaluated")?;
    let device = Device::flex();
    let net = model::load(model_cfg, dims, ckpt.eval_weights(), &device)?.inference();
    let mut out = Predictions {
        horizon: dims.horizon,
        price: Vec::with_capacity(split.n * dims.horizon),
        logits: Vec::with_capacity(split.n * 3),
        band: None,
    };
    let unscale = |t: Tensor<2>, into: &mut Vec<f32>| {
        for row in host(t).chunks(dims.horizon) {
            into.extend(row.iter().zip(&ckpt.meta.target_std).map(|(v, s)| v * s));
        }
    };
    let all: Vec<usize> = (0..split.n).collect();
    for indices in all.chunks(model::INFERENCE_BATCH) {
        let forecast = net.forward(model::windows(split, indices, dims, &device));
        unscale(forecast.price, &mut out.price);
        out.logits.extend(host(forecast.action));
        if let Some([lower, upper]) = forecast.band {
            let band = out.band.get_or_insert_with(|| Band {
                levels: BAND_LEVELS,
                lower: Vec::with_capacity(split.n * dims.horizon),
                upper: Vec::with_capacity(split.n * dims.horizon),
            });
            unscale(lower, &mut band.lower);
            unscale(upper, &mut band.upper);
        }
    }
    Ok(out)
}

fn host(t: Tensor<2>) -> Vec<f32> {
    t.into_data().iter::<f32>().collect()
}

/// The `evaluate` stage.
pub fn evaluate(
    dataset: &Dataset,
    model_cfg: &ModelConfig,
    checkpoint: &[u8],
    ecfg: &EvaluationConfig,
) -> Result<EvalOutput, EvalError> {
    if !(ecfg.cost_bps.is_finite() && ecfg.cost_bps >= 0.0) {
        return Err(EvalError::Config(format!(
            "cost_bps must be a finite number >= 0 (got {})",
            ecfg.cost_bps
        )));
    }
    let test = &dataset.test;
    if test.n == 0 {
        return Err(ModelError::Data("the test split has no windows to evaluate".into()).into());
    }
    if let Some(s) = test
        .symbol
        .iter()
        .find(|&&s| s as usize >= dataset.symbols.len())
    {
        return Err(ModelError::Data(format!(
            "test split: symbol index {s} but the dataset has {} symbols",
            dataset.symbols.len()
        ))
        .into());
    }
    let preds = predict(dataset, model_cfg, checkpoint, test)?;
    let bpy = bars_per_year(dataset.bar_seconds);
    let mut pooled = metrics(test, &preds, ecfg, bpy);
    if dataset.symbols.len() > 1 {
        for (index, name) in dataset.symbols.iter().enumerate() {
            let (split, sub) = symbol_subset(test, &preds, index as u32);
            if split.n > 0 {
                pooled
                    .per_symbol
                    .insert(name.clone(), metrics(&split, &sub, ecfg, bpy));
            }
        }
    }
    Ok(EvalOutput {
        metrics: pooled,
        predictions: predictions_csv(dataset, test, &preds),
    })
}

/// The windows of one symbol (targets, labels, timestamps; no inputs) and their
/// predictions, in their order in `split`.
fn symbol_subset(split: &Split, preds: &Predictions, symbol: u32) -> (Split, Predictions) {
    let p = preds.horizon;
    let rows: Vec<usize> = (0..split.n)
        .filter(|&i| split.symbol[i] == symbol)
        .collect();
    let gather = |v: &[f32], width: usize| -> Vec<f32> {
        rows.iter()
            .flat_map(|&i| v[i * width..(i + 1) * width].iter().copied())
            .collect()
    };
    let sub_split = Split {
        n: rows.len(),
        x: Vec::new(),
        y: gather(&split.y, p),
        action: rows.iter().map(|&i| split.action[i]).collect(),
        symbol: rows.iter().map(|&i| split.symbol[i]).collect(),
        timestamp: rows.iter().map(|&i| split.timestamp[i]).collect(),
    };
    let sub_preds = Predictions {
        horizon: p,
        price: gather(&preds.price, p),
        logits: gather(&preds.logits, 3),
        band: preds.band.as_ref().map(|b| Band {
            levels: b.levels,
            lower: gather(&b.lower, p),
            upper: gather(&b.upper, p),
        }),
    };
    (sub_split, sub_preds)
}

/// All metrics of `preds` (from [`predict`] on `split`) against `split`'s targets.
pub(crate) fn metrics(
    split: &Split,
    preds: &Predictions,
    ecfg: &EvaluationConfig,
    bars_per_year: f64,
) -> Metrics {
    let p = preds.horizon;
    let n = split.n;
    let (mut se, mut ae, mut pse, mut pae) = (0.0, 0.0, 0.0, 0.0);
    for (&pred, &actual) in preds.price.iter().zip(&split.y) {
        let (pred, actual) = (f64::from(pred), f64::from(actual));
        se += (pred - actual).powi(2);
        ae += (pred - actual).abs();
        pse += actual.powi(2);
        pae += actual.abs();
    }
    let values = (n * p).max(1) as f64;

    let (mut moved, mut right_way) = (0usize, 0usize);
    let mut correct = 0;
    let (mut predicted, mut actual) = (ClassCounts::default(), ClassCounts::default());
    let mut positions = Vec::with_capacity(n);
    let mut r1 = Vec::with_capacity(n);
    for i in 0..n {
        let (pred1, real1) = (preds.price[i * p], split.y[i * p]);
        if real1 != 0.0 {
            moved += 1;
            right_way += usize::from(sign(pred1) == sign(real1));
        }
        let action = preds.action(i);
        correct += usize::from(action == split.action[i]);
        predicted.add(action);
        actual.add(split.action[i]);
        positions.push(match ecfg.signal {
            Signal::Action => 1.0 - f64::from(action),
            Signal::Price => sign(pred1),
        });
        r1.push(f64::from(real1));
    }

    let run = |positions: &[f64]| {
        portfolio(
            &split.symbol,
            &split.timestamp,
            positions,
            &r1,
            ecfg.cost_bps,
            bars_per_year,
        )
    };
    Metrics {
        metrics_version: METRICS_VERSION,
        split: "test".into(),
        windows: n,
        price: PriceMetrics {
            mse: se / values,
            mae: ae / values,
            directional_accuracy: (moved > 0).then(|| right_way as f64 / moved as f64),
            persistence_mse: pse / values,
            persistence_mae: pae / values,
            band: preds.band.as_ref().map(|b| band_metrics(b, &split.y)),
        },
        action: ActionMetrics {
            accuracy: correct as f64 / n.max(1) as f64,
            predicted,
            actual,
        },
        backtest: BacktestMetrics {
            signal: ecfg.signal,
            cost_bps: ecfg.cost_bps,
            bars_per_year,
            strategy: run(&positions),
            buy_and_hold: run(&vec![1.0; n]),
        },
        per_symbol: BTreeMap::new(),
    }
}

/// Coverage and width of `band` against the actual returns `y` (same layout).
fn band_metrics(band: &Band, y: &[f32]) -> BandMetrics {
    let (mut inside, mut width, mut count) = (0usize, 0.0, 0usize);
    for ((lo, hi), actual) in band.lower.iter().zip(&band.upper).zip(y) {
        inside += usize::from(lo <= actual && actual <= hi);
        width += f64::from(hi - lo);
        count += 1;
    }
    let count = count.max(1) as f64;
    BandMetrics {
        levels: band.levels,
        coverage: inside as f64 / count,
        mean_width: width / count,
    }
}

fn sign(v: f32) -> f64 {
    if v > 0.0 {
        1.0
    } else if v < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// Bars per year for Sharpe annualisation: intraday bars over a 6.5-hour session and 252
/// sessions; daily bars 252; longer bars 252 divided by the trading days they span (5 per 7
/// calendar days from a week up, so weekly bars give 50.4).
pub fn bars_per_year(bar_seconds: i64) -> f64 {
    const DAY: f64 = 86_400.0;
    let s = bar_seconds.max(1) as f64;
    if s < DAY {
        252.0 * 6.5 * 3600.0 / s
    } else {
        let days = s / DAY;
        let trading_days = if days < 5.0 { days } else { days * 5.0 / 7.0 };
        252.0 / trading_days
    }
}

/// One position series against its next-bar returns: bar return
/// `position[t] * r[t] - cost_bps / 10000 * |position[t] - position[t-1]|`, starting flat,
/// compounded into equity. Returns the bar returns and the number of trades.
pub fn bar_returns(positions: &[f64], returns: &[f64], cost_bps: f64) -> (Vec<f64>, usize) {
    let cost = cost_bps / 10_000.0;
    let mut previous = 0.0;
    let mut trades = 0;
    let bars = positions
        .iter()
        .zip(returns)
        .map(|(&position, &r)| {
            let change = (position - previous).abs();
            trades += usize::from(change > 0.0);
            previous = position;
            position * r - cost * change
        })
        .collect();
    (bars, trades)
}

/// Total return, Sharpe and maximum drawdown of a series of bar returns.
fn summarize(bars: &[f64], bars_per_year: f64, trades: usize) -> BacktestStats {
    let (mut equity, mut peak, mut max_drawdown) = (1.0f64, 1.0f64, 0.0f64);
    for r in bars {
        equity *= 1.0 + r;
        peak = peak.max(equity);
        max_drawdown = max_drawdown.max((peak - equity) / peak);
    }
    let n = bars.len() as f64;
    let sharpe = if bars.len() >= 2 {
        let mean = bars.iter().sum::<f64>() / n;
        let var = bars.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1.0);
        if var > 0.0 {
            mean / var.sqrt() * bars_per_year.sqrt()
        } else {
            0.0
        }
    } else {
        0.0
    };
    BacktestStats {
        total_return: equity - 1.0,
        sharpe,
        max_drawdown,
        trades,
        bars: bars.len(),
    }
}

/// Backtest of one symbol's positions (in time order) against its next-bar returns.
pub fn backtest(
    positions: &[f64],
    returns: &[f64],
    cost_bps: f64,
    bars_per_year: f64,
) -> BacktestStats {
    let (bars, trades) = bar_returns(positions, returns, cost_bps);
    summarize(&bars, bars_per_year, trades)
}

/// Backtest of an equal-weight portfolio: each symbol's windows in time order make its bar
/// returns (as in [`backtest`]); at each timestamp the portfolio earns the mean over the
/// symbols that have a bar then. With one symbol this is [`backtest`].
pub fn portfolio(
    symbols: &[u32],
    timestamps: &[i64],
    positions: &[f64],
    returns: &[f64],
    cost_bps: f64,
    bars_per_year: f64,
) -> BacktestStats {
    let (_, bars, trades) = portfolio_bars(symbols, timestamps, positions, returns, cost_bps);
    summarize(&bars, bars_per_year, trades)
}

/// The bar returns [`portfolio`] summarizes, by timestamp (what the report's equity curve
/// compounds), and the number of trades.
pub fn portfolio_bars(
    symbols: &[u32],
    timestamps: &[i64],
    positions: &[f64],
    returns: &[f64],
    cost_bps: f64,
) -> (Vec<i64>, Vec<f64>, usize) {
    let n = positions
        .len()
        .min(returns.len())
        .min(symbols.len())
        .min(timestamps.len());
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| (symbols[i], timestamps[i]));
    let mut by_time: BTreeMap<i64, (f64, usize)> = BTreeMap::new();
    let mut trades = 0;
    for group in order.chunk_by(|&a, &b| symbols[a] == symbols[b]) {
        let pos: Vec<f64> = group.iter().map(|&i| positions[i]).collect();
        let ret: Vec<f64> = group.iter().map(|&i| returns[i]).collect();
        let (bars, symbol_trades) = bar_returns(&pos, &ret, cost_bps);
        trades += symbol_trades;
        for (&i, r) in group.iter().zip(bars) {
            let slot = by_time.entry(timestamps[i]).or_insert((0.0, 0));
            slot.0 += r;
            slot.1 += 1;
        }
    }
    let (times, bars) = by_time
        .into_iter()
        .map(|(t, (sum, k))| (t, sum / k as f64))
        .unzip();
    (times, bars, trades)
}

/// Test-split predictions as CSV text, one row per window in split order:
///
/// `symbol,timestamp,pred_r1..pred_rP,actual_r1..actual_rP,logit_buy,logit_hold,logit_sell,action,label`
///
/// and, for probabilistic models, `q10_r1..q10_rP,q90_r1..q90_rP` after `pred_rP` (the
/// band's quantiles, named by level).
///
/// `timestamp` is the window's last bar (Unix seconds); predictions are returns (not scaled);
/// `action` is the argmax of the logits and `label` the true class, as `buy`/`hold`/`sell`.
/// Floats use Rust's shortest round-trip formatting, so parsing them gives the exact f32s.
pub fn predictions_csv(dataset: &Dataset, split: &Split, preds: &Predictions) -> Vec<u8> {
    const CLASSES: [&str; 3] = ["buy", "hold", "sell"];
    let p = preds.horizon;
    let mut out = String::from("symbol,timestamp");
    let mut prefixes = vec!["pred".to_string()];
    if let Some(band) = &preds.band {
        prefixes.extend(band.levels.map(|q| format!("q{}", (q * 100.0).round())));
    }
    prefixes.push("actual".to_string());
    for prefix in &prefixes {
        for h in 1..=p {
            let _ = write!(out, ",{prefix}_r{h}");
        }
    }
    out.push_str(",logit_buy,logit_hold,logit_sell,action,label\n");
    let rows = preds
        .price
        .chunks(p)
        .zip(split.y.chunks(p))
        .zip(preds.logits.chunks_exact(3))
        .zip(split.symbol.iter().zip(&split.timestamp).zip(&split.action));
    for (i, (((pred, actual), logits), ((&symbol, timestamp), &label))) in rows.enumerate() {
        let symbol = dataset
            .symbols
            .get(symbol as usize)
            .map_or("?", String::as_str);
        let _ = write!(out, "{symbol},{timestamp}");
        let band: &[f32] = &[];
        let (lower, upper) = match &preds.band {
            Some(b) => (
                b.lower.get(i * p..(i + 1) * p).unwrap_or(band),
                b.upper.get(i * p..(i + 1) * p).unwrap_or(band),
            ),
            None => (band, band),
        };
        let values = pred
            .iter()
            .chain(lower)
            .chain(upper)
            .chain(actual)
            .chain(logits);
        for v in values {
            let _ = write!(out, ",{v}");
        }
        let class = |c: usize| CLASSES.get(c).copied().unwrap_or("?");
        let _ = writeln!(out, ",{},{}", class(argmax(logits)), class(label.into()));
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::cfg;
    use crate::train::tests::{opt, run, tcfg, toy_dataset};

    #[test]
    fn saved_predictions_are_reproduced_from_the_checkpoint() {
        let data = toy_dataset([32, 8, 12], 7);
        let model_cfg = cfg("lstm");
        let out = run(&data, &model_cfg, &opt(1e-2), &tcfg(2, 8), 3).unwrap();
        let eval = evaluate(
            &data,
            &model_cfg,
            &out.checkpoint,
            &EvaluationConfig::default(),
        )
        .unwrap();

        let again = predict(&data, &model_cfg, &out.checkpoint, &data.test).unwrap();
        assert_eq!(predictions_csv(&data, &data.test, &again), eval.predictions);
        let text = String::from_utf8(eval.predictions).unwrap();
        assert_eq!(text.lines().count(), 13);
        let first: Vec<&str> = text.lines().nth(1).unwrap().split(',').collect();
        assert_eq!(first[..2], ["AAA", "1700000000"]);
        assert_eq!(first[2].parse::<f32>().unwrap(), again.price[0]);
        assert_eq!(first[4].parse::<f32>().unwrap(), data.test.y[0]);

        let m = &eval.metrics;
        assert_eq!((m.metrics_version, m.windows), (METRICS_VERSION, 12));
        let c = &m.action.predicted;
        assert_eq!(c.buy + c.hold + c.sell, 12);
        // Two symbols on 6 shared timestamps: 6 portfolio bars; buy-and-hold enters twice.
        assert_eq!(
            (m.backtest.buy_and_hold.bars, m.backtest.buy_and_hold.trades),
            (6, 2)
        );
        assert_eq!(serde_json::to_value(m).unwrap()["metrics_version"], 2);
        // Per symbol: each symbol's windows alone, adding up to the pooled count; one
        // symbol's backtest is that symbol's own series.
        assert_eq!(m.per_symbol.len(), 2);
        let per: usize = m.per_symbol.values().map(|s| s.windows).sum();
        assert_eq!(per, m.windows);
        for s in m.per_symbol.values() {
            assert!(s.per_symbol.is_empty());
            assert_eq!(s.backtest.buy_and_hold.trades, 1);
            assert!(s.price.mse.is_finite());
        }

        let mut other = cfg("lstm");
        other.hidden_size += 1;
        assert!(predict(&data, &other, &out.checkpoint, &data.test).is_err());
        assert!(predict(&data, &model_cfg, b"not a checkpoint", &data.test).is_err());
    }

    /// A diffusion model's evaluation: seeded sampling makes predictions reproducible, the
    /// metrics report the 10%-90% band's coverage, and the CSV carries the band.
    #[test]
    fn dit_evaluation_reports_its_band_and_is_deterministic() {
        let data = toy_dataset([32, 8, 12], 9);
        let model_cfg = cfg("dit");
        let out = run(&data, &model_cfg, &opt(1e-2), &tcfg(2, 8), 3).unwrap();
        let ecfg = EvaluationConfig::default();
        let a = evaluate(&data, &model_cfg, &out.checkpoint, &ecfg).unwrap();
        let b = evaluate(&data, &model_cfg, &out.checkpoint, &ecfg).unwrap();
        assert_eq!(a.predictions, b.predictions);
        assert_eq!(a.metrics, b.metrics);
        let band = a.metrics.price.band.clone().unwrap();
        assert_eq!(band.levels, [0.1, 0.9]);
        assert!(
            (0.0..=1.0).contains(&band.coverage) && band.mean_width > 0.0,
            "{band:?}"
        );
        let preds = predict(&data, &model_cfg, &out.checkpoint, &data.test).unwrap();
        let edges = preds.band.as_ref().unwrap();
        assert!(
            edges
                .lower
                .iter()
                .zip(&edges.upper)
                .all(|(lo, hi)| lo <= hi)
        );
        let text = String::from_utf8(a.predictions).unwrap();
        let header = text.lines().next().unwrap();
        assert!(
            header.starts_with(
                "symbol,timestamp,pred_r1,pred_r2,q10_r1,q10_r2,q90_r1,q90_r2,actual_r1"
            ),
            "{header}"
        );
        // Another sampling seed gives other samples.
        let other =
            crate::model::tests::with_options(&model_cfg, serde_json::json!({"dit": {"seed": 1}}));
        let c = predict(&data, &other, &out.checkpoint, &data.test).unwrap();
        assert_ne!(c.price, preds.price);
        assert_eq!(c.logits, preds.logits, "the action head does not sample");
    }

    #[test]
    fn band_coverage_counts_returns_inside_the_band() {
        let band = Band {
            levels: [0.1, 0.9],
            lower: vec![-1.0, 0.0, 0.5, -0.2],
            upper: vec![1.0, 0.1, 0.6, 0.2],
        };
        // Inside, on the lower edge, above, below.
        let m = band_metrics(&band, &[0.0, 0.0, 0.7, -0.3]);
        assert_eq!(m.coverage, 0.5);
        assert!((m.mean_width - (2.0 + 0.1 + 0.1 + 0.4) / 4.0).abs() < 1e-6);
    }

    #[test]
    fn metrics_count_directions_actions_and_errors() {
        let split = Split {
            n: 3,
            x: vec![],
            y: vec![0.02, -0.01, 0.0],
            action: vec![0, 2, 1],
            symbol: vec![0; 3],
            timestamp: vec![1, 2, 3],
        };
        let preds = Predictions {
            horizon: 1,
            price: vec![0.01, 0.01, -0.3],
            logits: vec![2.0, 0.0, 0.0, 0.0, 0.0, 2.0, 2.0, 0.0, 0.0],
            band: None,
        };
        let ecfg = EvaluationConfig {
            cost_bps: 0.0,
            signal: Signal::Action,
        };
        let m = metrics(&split, &preds, &ecfg, 252.0);
        assert_eq!(m.price.directional_accuracy, Some(0.5));
        let mse = 0.0001 + 0.0004 + 0.09; // f32 inputs: agree to ~1e-8
        assert!((m.price.mse - mse / 3.0).abs() < 1e-8, "{:?}", m.price);
        assert!((m.action.accuracy - 2.0 / 3.0).abs() < 1e-12);
        let counts = |buy, hold, sell| ClassCounts { buy, hold, sell };
        assert_eq!(m.action.predicted, counts(2, 0, 1));
        assert_eq!(m.action.actual, counts(1, 1, 1));
        // Positions +1, -1, +1 earn 2%, 1%, 0.
        let strategy = &m.backtest.strategy;
        assert!((strategy.total_return - (1.02 * 1.01 - 1.0)).abs() < 1e-7);
        assert_eq!(strategy.trades, 3);
        let by_price = metrics(
            &split,
            &preds,
            &EvaluationConfig {
                signal: Signal::Price,
                ..ecfg
            },
            252.0,
        );
        // Positions +1, +1, -1 earn 2%, -1%, 0.
        let total = by_price.backtest.strategy.total_return;
        assert!((total - (1.02 * 0.99 - 1.0)).abs() < 1e-7);
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    /// Worked by hand: positions +1, +1, -1, 0, 0 at 10 bps on returns 1%, -2%, -1%, 5%, 0.
    #[test]
    fn backtest_matches_a_hand_computed_example() {
        let positions = [1.0, 1.0, -1.0, 0.0, 0.0];
        let returns = [0.01, -0.02, -0.01, 0.05, 0.0];
        let (bars, trades) = bar_returns(&positions, &returns, 10.0);
        // Costs: enter (1 unit), flip long->short (2 units), flatten (1 unit); 0.001 each.
        let expected = [0.009, -0.02, 0.008, -0.001, 0.0];
        for (b, e) in bars.iter().zip(expected) {
            assert!(close(*b, e), "{bars:?}");
        }
        assert_eq!(trades, 3);

        let s = backtest(&positions, &returns, 10.0, 252.0);
        let equity = 1.009 * 0.98 * 1.008 * 0.999;
        assert!(close(s.total_return, equity - 1.0), "{s:?}");
        // The peak is after bar 1 (1.009); the trough is after bar 2 (1.009 * 0.98): 2%.
        assert!(close(s.max_drawdown, 0.02), "{s:?}");
        let mean = expected.iter().sum::<f64>() / 5.0;
        let var = expected.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / 4.0;
        assert!(close(s.sharpe, mean / var.sqrt() * 252f64.sqrt()), "{s:?}");
        assert_eq!((s.trades, s.bars), (3, 5));
    }

    #[test]
    fn flat_or_constant_series_have_zero_sharpe() {
        let s = backtest(&[0.0; 3], &[0.01, 0.02, -0.01], 5.0, 252.0);
        assert_eq!(
            (s.total_return, s.sharpe, s.max_drawdown, s.trades),
            (0.0, 0.0, 0.0, 0)
        );
        assert_eq!(backtest(&[], &[], 5.0, 252.0).bars, 0);
    }

    #[test]
    fn portfolio_averages_symbols_per_timestamp() {
        // Symbol 1 listed first and out of time order: grouping and sorting must fix that.
        let symbols = [1, 0, 0, 1];
        let timestamps = [200, 100, 200, 100];
        let positions = [1.0, 1.0, 1.0, -1.0];
        let returns = [0.02, 0.01, 0.03, 0.04];
        let s = portfolio(&symbols, &timestamps, &positions, &returns, 0.0, 252.0);
        // t=100: (0.01 + -0.04) / 2; t=200: (0.03 + 0.02) / 2. Symbol 1 flips: 2 trades.
        let total = (1.0 - 0.015) * (1.0 + 0.025) - 1.0;
        assert!(close(s.total_return, total), "{s:?}");
        assert_eq!((s.trades, s.bars), (3, 2));
        let one = portfolio(&[0, 0], &[1, 2], &[1.0, -1.0], &[0.01, 0.02], 5.0, 252.0);
        assert_eq!(one, backtest(&[1.0, -1.0], &[0.01, 0.02], 5.0, 252.0));
    }

    #[test]
    fn annualisation_follows_the_bar_spacing() {
        assert_eq!(bars_per_year(86_400), 252.0);
        assert!(close(bars_per_year(3_600), 252.0 * 6.5));
        assert!(close(bars_per_year(300), 252.0 * 78.0));
        assert!(close(bars_per_year(7 * 86_400), 50.4));
    }
}
