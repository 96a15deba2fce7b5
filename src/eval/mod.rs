//! The `evaluate` stage: test-split predictions, forecast errors, action accuracy and a
//! backtest, next to buy-and-hold and the persistence forecast. Definitions follow
//! `features.md` ("Trading metrics").
//!
//! Prediction and the predictions CSV are here; `metrics.rs` computes the figures and
//! `backtest.rs` the trading simulation they include.

use std::fmt::Write as _;

use burn::tensor::{Device, Tensor};

use crate::checkpoint::Checkpoint;
use crate::config::{EvaluationConfig, ModelConfig};
use crate::data::{Dataset, Split};
use crate::model::{self, Dims, ModelError, WeightsMeta};

mod backtest;
mod baselines;
pub mod deflated;
mod metrics;
pub mod overfitting;
pub mod ridge;
pub mod stats;
mod uncertainty;
pub mod walk_forward;

pub use backtest::{
    BacktestStats, backtest, bar_returns, bars_per_year, equity, portfolio, portfolio_bars,
};
pub use baselines::{AlwaysUp, Baselines, ForecastBaseline, Skill};
pub use deflated::DeflatedSharpe;
use metrics::RidgeForecast;
pub(crate) use metrics::metrics;
pub use metrics::{
    ActionMetrics, BacktestMetrics, BandMetrics, ClassCounts, METRICS_VERSION, Metrics,
    PriceMetrics, position,
};
pub use uncertainty::{BOOTSTRAP_SEED, CI_LEVEL, DmTest, Interval, Intervals, RESAMPLES};

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
#[derive(Debug, Clone, PartialEq, Default)]
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
    check_test(dataset, ecfg)?;
    let test = &dataset.test;
    let preds = predict(dataset, model_cfg, checkpoint, test)?;
    let bpy = bars_per_year(dataset.bar_seconds);
    let ridge = fit_ridge(dataset, preds.horizon);
    let pooled = score(&dataset.symbols, test, &preds, ridge.as_ref(), ecfg, bpy);
    Ok(EvalOutput {
        metrics: pooled,
        predictions: predictions_csv(dataset, test, &preds),
    })
}

/// What evaluating `dataset`'s test split needs: a valid cost, test windows, known symbols.
fn check_test(dataset: &Dataset, ecfg: &EvaluationConfig) -> Result<(), EvalError> {
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
    Ok(())
}

/// The linear baseline: fit on the train split, strength chosen on val, scored on the test
/// windows.
fn fit_ridge(dataset: &Dataset, horizon: usize) -> Option<RidgeForecast> {
    ridge::fit_shared(&dataset.train, &dataset.val, horizon).map(|r| RidgeForecast {
        price: r.predict(&dataset.test),
        lambda: r.lambda,
    })
}

/// The metrics of `preds` on `test` (with the ridge forecast of the same windows), pooled
/// and, with several symbols, per symbol.
fn score(
    symbols: &[String],
    test: &Split,
    preds: &Predictions,
    ridge: Option<&RidgeForecast>,
    ecfg: &EvaluationConfig,
    bpy: f64,
) -> Metrics {
    let mut pooled = metrics(test, preds, ridge, ecfg, bpy);
    if symbols.len() > 1 {
        for (index, name) in symbols.iter().enumerate() {
            let (split, sub) = symbol_subset(test, preds, index as u32);
            let sub_ridge = ridge.map(|r| RidgeForecast {
                price: gather_rows(test, index as u32, &r.price, preds.horizon),
                lambda: r.lambda,
            });
            if split.n > 0 {
                pooled.per_symbol.insert(
                    name.clone(),
                    metrics(&split, &sub, sub_ridge.as_ref(), ecfg, bpy),
                );
            }
        }
    }
    pooled
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
        x: crate::data::Windows::default(),
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

/// The rows of `values` (`width` per window of `split`) of the windows of `symbol`.
fn gather_rows(split: &Split, symbol: u32, values: &[f32], width: usize) -> Vec<f32> {
    (0..split.n)
        .filter(|&i| split.symbol[i] == symbol)
        .flat_map(|i| {
            values
                .get(i * width..(i + 1) * width)
                .unwrap_or(&[])
                .iter()
                .copied()
        })
        .collect()
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
        let json = serde_json::to_value(m).unwrap();
        assert_eq!(json["metrics_version"], 4);
        // Skill and the baselines, next to every earlier key.
        for key in [
            "price",
            "action",
            "backtest",
            "per_symbol",
            "skill",
            "baselines",
        ] {
            assert!(json.get(key).is_some(), "{key}");
        }
        assert_eq!(json["skill"]["per_horizon"].as_array().unwrap().len(), 2);
        // The deflated Sharpe as one trial is the probabilistic Sharpe (both undefined
        // together, on constant bar returns).
        assert_eq!(
            m.deflated_sharpe.map(|d| (d.trials, d.value)),
            m.probabilistic_sharpe.map(|p| (1, p))
        );
        let skill = m.skill.pooled.unwrap();
        assert!((skill - (1.0 - m.price.mse / m.price.persistence_mse)).abs() < 1e-12);
        let b = &json["baselines"];
        assert_eq!(b["persistence"]["skill"]["pooled"], 0.0);
        assert_eq!(b["persistence"]["mse"], json["price"]["persistence_mse"]);
        assert!(b["ridge"]["lambda"].as_f64().unwrap() > 0.0);
        assert!(b["ridge"]["mse"].as_f64().unwrap().is_finite());
        assert!(b["ridge"]["skill"]["pooled"].is_number());
        assert!(b["buy_and_hold"]["directional_accuracy"].is_number());
        assert_eq!(
            b["buy_and_hold"]["sharpe"],
            json["backtest"]["buy_and_hold"]["sharpe"]
        );
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
        assert_ne!(c.band.as_ref().unwrap().lower, edges.lower);
        assert_eq!(c.price, preds.price, "the price head does not sample");
        assert_eq!(c.logits, preds.logits, "the action head does not sample");
    }
}
