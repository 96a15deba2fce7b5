//! What the report's plots are drawn from: the loss curves of a train log, the rows of the
//! predictions CSV, and the equity curves of the evaluate stage's backtest, recomputed with
//! `eval`'s own position rule and portfolio so they end where its metrics do.

use std::collections::BTreeMap;

use crate::config::EvaluationConfig;
use crate::eval;

/// Per-epoch losses from a train log (`epochs[].{epoch, train_loss, val_loss}`). Read from
/// the JSON rather than `TrainLog` because the stored log drops the wall-clock fields.
#[derive(Debug, Default, PartialEq)]
pub(super) struct LossCurves {
    pub(super) train: Vec<(f64, f64)>,
    pub(super) val: Vec<(f64, f64)>,
    pub(super) best: Option<(f64, f64)>,
}

impl LossCurves {
    pub(super) fn from_log(log: &serde_json::Value) -> LossCurves {
        let mut curves = LossCurves::default();
        let epochs = log["epochs"].as_array().map_or(&[][..], Vec::as_slice);
        for (i, entry) in epochs.iter().enumerate() {
            let epoch = entry["epoch"].as_f64().unwrap_or((i + 1) as f64);
            let finite = |key: &str| entry[key].as_f64().filter(|v| v.is_finite());
            if let Some(loss) = finite("train_loss") {
                curves.train.push((epoch, loss));
            }
            if let Some(loss) = finite("val_loss") {
                curves.val.push((epoch, loss));
            }
        }
        curves.best = log["best_epoch"]
            .as_f64()
            .and_then(|best| curves.val.iter().copied().find(|(e, _)| *e == best));
        curves
    }
}

/// One row of the predictions CSV, as far as the report needs it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct PredictionRow {
    pub(super) symbol: String,
    pub(super) timestamp: i64,
    /// Predicted and actual returns r1..rP.
    pub(super) pred: Vec<f32>,
    pub(super) actual: Vec<f32>,
    /// The band's lower and upper edges r1..rP (`dit`), empty without a band.
    pub(super) lower: Vec<f32>,
    pub(super) upper: Vec<f32>,
    /// 0 buy, 1 hold, 2 sell (the argmax of the action head).
    pub(super) action: u8,
}

impl PredictionRow {
    pub(super) fn pred_r1(&self) -> f32 {
        self.pred[0]
    }
    pub(super) fn actual_r1(&self) -> f32 {
        self.actual[0]
    }
}

/// The test split's predictions: every row, the horizon and the band's quantile levels.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Predictions {
    pub(super) rows: Vec<PredictionRow>,
    pub(super) horizon: usize,
    /// The band's quantile levels (`[0.1, 0.9]` from columns `q10_r*`, `q90_r*`).
    pub(super) band_levels: Option<[f64; 2]>,
}

/// Parses `eval::predictions_csv` output: the columns `pred_r1..`, `actual_r1..` and, for a
/// band, `qLO_r1..` and `qHI_r1..`, with the symbol, timestamp and action.
pub(super) fn parse_predictions(bytes: &[u8]) -> Result<Predictions, String> {
    let mut reader = csv::ReaderBuilder::new().from_reader(bytes);
    let headers = reader
        .headers()
        .map_err(|e| format!("unreadable predictions: {e}"))?
        .clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| format!("unreadable predictions: no `{name}` column"))
    };
    let (symbol, timestamp) = (column("symbol")?, column("timestamp")?);
    column("pred_r1")?;
    let action = column("action")?;
    let steps = |prefix: &str| -> Vec<usize> {
        (1..)
            .map_while(|h| headers.iter().position(|c| c == format!("{prefix}_r{h}")))
            .collect()
    };
    let pred = steps("pred");
    let horizon = pred.len();
    let actual = steps("actual");
    if actual.len() != horizon {
        return Err(format!(
            "unreadable predictions: {horizon} `pred_r*` columns but {} `actual_r*`",
            actual.len()
        ));
    }
    // The band's columns are named by their quantile in percent (`q10_r1`, `q90_r1`).
    let quantiles: Vec<u32> = headers
        .iter()
        .filter_map(|c| c.strip_prefix('q')?.strip_suffix("_r1")?.parse().ok())
        .collect();
    let (band_levels, lower, upper) = match quantiles[..] {
        [lo, hi] if lo < hi => {
            let (l, u) = (steps(&format!("q{lo}")), steps(&format!("q{hi}")));
            if l.len() != horizon || u.len() != horizon {
                return Err("unreadable predictions: band columns do not cover every step".into());
            }
            (Some([f64::from(lo) / 100.0, f64::from(hi) / 100.0]), l, u)
        }
        _ => (None, Vec::new(), Vec::new()),
    };
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = record.map_err(|e| format!("unreadable predictions: {e}"))?;
        let field = |c: usize| record.get(c).unwrap_or("");
        let bad = |c: usize| {
            format!(
                "unreadable predictions: line {line}: bad `{}` value `{}`",
                headers.get(c).unwrap_or("?"),
                field(c)
            )
        };
        let floats = |columns: &[usize]| -> Result<Vec<f32>, String> {
            columns
                .iter()
                .map(|&c| field(c).parse().map_err(|_| bad(c)))
                .collect()
        };
        rows.push(PredictionRow {
            symbol: field(symbol).to_string(),
            timestamp: field(timestamp).parse().map_err(|_| bad(timestamp))?,
            pred: floats(&pred)?,
            actual: floats(&actual)?,
            lower: floats(&lower)?,
            upper: floats(&upper)?,
            action: match field(action) {
                "buy" => 0,
                "hold" => 1,
                "sell" => 2,
                _ => return Err(bad(action)),
            },
        });
    }
    Ok(Predictions {
        rows,
        horizon,
        band_levels,
    })
}

/// The evaluation settings from the resolved config leaves (`evaluation.*`), defaults for
/// what is missing or unreadable, so the curve uses what the evaluate stage used.
pub(super) fn evaluation_config(config: &BTreeMap<String, String>) -> EvaluationConfig {
    let mut section = serde_json::Map::new();
    for (key, value) in config {
        if let Some(field) = key.strip_prefix("evaluation.")
            && let Ok(v) = serde_json::from_str(value)
        {
            section.insert(field.to_string(), v);
        }
    }
    serde_json::from_value(serde_json::Value::Object(section)).unwrap_or_default()
}

/// Equity of the strategy and of buy-and-hold after each portfolio bar of the test split,
/// computed as the evaluate stage's backtest (`eval::portfolio`) computes its total return.
#[derive(Debug, Default, PartialEq)]
pub(super) struct EquityCurves {
    /// The portfolio's bar times (window end, Unix seconds), ascending.
    pub(super) timestamps: Vec<i64>,
    pub(super) strategy: Vec<f64>,
    pub(super) buy_and_hold: Vec<f64>,
}

pub(super) fn equity_curves(rows: &[PredictionRow], evaluation: &EvaluationConfig) -> EquityCurves {
    // Symbol indices in order of first appearance: the CSV names symbols, the backtest
    // groups by index.
    let mut names: Vec<&str> = Vec::new();
    let symbols: Vec<u32> = rows
        .iter()
        .map(|r| match names.iter().position(|n| *n == r.symbol) {
            Some(i) => i as u32,
            None => {
                names.push(&r.symbol);
                (names.len() - 1) as u32
            }
        })
        .collect();
    let timestamps: Vec<i64> = rows.iter().map(|r| r.timestamp).collect();
    let returns: Vec<f64> = rows.iter().map(|r| f64::from(r.actual_r1())).collect();
    let strategy: Vec<f64> = rows
        .iter()
        .map(|r| eval::position(evaluation.signal, r.action, r.pred_r1()))
        .collect();
    let hold = vec![1.0; rows.len()];
    let cost = evaluation.cost_bps;
    let (times, strategy_bars, _) =
        eval::portfolio_bars(&symbols, &timestamps, &strategy, &returns, cost);
    let (_, hold_bars, _) = eval::portfolio_bars(&symbols, &timestamps, &hold, &returns, cost);
    EquityCurves {
        timestamps: times,
        strategy: eval::equity(&strategy_bars),
        buy_and_hold: eval::equity(&hold_bars),
    }
}
/// The forecast's figures at each horizon step r1..rP.
#[derive(Debug, Default, PartialEq)]
pub(super) struct HorizonStats {
    /// `1 - MSE / persistence MSE` per step; `None` where every actual return is 0.
    pub(super) skill: Vec<Option<f64>>,
    /// Share of windows whose predicted and actual returns have the same sign, among those
    /// whose actual return is not 0.
    pub(super) directional_accuracy: Vec<Option<f64>>,
    /// Share of actual returns inside the band per step (empty without a band).
    pub(super) coverage: Vec<f64>,
}

pub(super) fn horizon_stats(predictions: &Predictions) -> HorizonStats {
    let mut stats = HorizonStats::default();
    let rows = &predictions.rows;
    for h in 0..predictions.horizon {
        let (mut se, mut persistence, mut right, mut moved) = (0.0, 0.0, 0usize, 0usize);
        for r in rows {
            let (p, a) = (f64::from(r.pred[h]), f64::from(r.actual[h]));
            se += (p - a).powi(2);
            persistence += a * a;
            if a != 0.0 {
                moved += 1;
                right += usize::from(p.signum() == a.signum() && p != 0.0);
            }
        }
        stats
            .skill
            .push((persistence > 0.0).then(|| 1.0 - se / persistence));
        stats
            .directional_accuracy
            .push((moved > 0).then(|| right as f64 / moved as f64));
        if predictions.band_levels.is_some() && !rows.is_empty() {
            let inside = rows
                .iter()
                .filter(|r| r.lower[h] <= r.actual[h] && r.actual[h] <= r.upper[h])
                .count();
            stats.coverage.push(inside as f64 / rows.len() as f64);
        }
    }
    stats
}

/// Mean absolute change of position per bar (one-way turnover): each symbol's positions in
/// time order, starting flat as the backtest does, over every symbol's bars. 1 is a full
/// unit traded every bar; a flip from long to short is 2.
pub(super) fn turnover(rows: &[PredictionRow], evaluation: &EvaluationConfig) -> Option<f64> {
    if rows.is_empty() {
        return None;
    }
    let mut order: Vec<&PredictionRow> = rows.iter().collect();
    order.sort_by(|a, b| (&a.symbol, a.timestamp).cmp(&(&b.symbol, b.timestamp)));
    let mut total = 0.0;
    for group in order.chunk_by(|a, b| a.symbol == b.symbol) {
        let mut previous = 0.0;
        for r in group {
            let position = eval::position(evaluation.signal, r.action, r.pred_r1());
            total += (position - previous).abs();
            previous = position;
        }
    }
    Some(total / rows.len() as f64)
}

/// The rows of each symbol, symbols in order of first appearance.
pub(super) fn by_symbol(rows: &[PredictionRow]) -> Vec<(&str, Vec<PredictionRow>)> {
    let mut out: Vec<(&str, Vec<PredictionRow>)> = Vec::new();
    for r in rows {
        match out.iter_mut().find(|(s, _)| *s == r.symbol) {
            Some((_, list)) => list.push(r.clone()),
            None => out.push((&r.symbol, vec![r.clone()])),
        }
    }
    out
}

/// The strategy's annualised return, `(1 + total)^(bars per year / bars) - 1`, from the
/// backtest figures in `metrics`; `None` when one is missing or the strategy has no bars.
pub(super) fn annualised_return(metrics: &BTreeMap<String, f64>) -> Option<f64> {
    let total = *metrics.get("backtest.strategy.total_return")?;
    let bars = *metrics.get("backtest.strategy.bars")?;
    let per_year = *metrics.get("backtest.bars_per_year")?;
    if bars <= 0.0 || total <= -1.0 {
        return None;
    }
    let r = (1.0 + total).powf(per_year / bars) - 1.0;
    r.is_finite().then_some(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Signal;
    use crate::report::html::tests::{CSV, experiment};

    #[test]
    fn equity_curve_ends_at_the_backtest_total_return() {
        let rows = parse_predictions(CSV.as_bytes()).unwrap().rows;
        assert_eq!(rows.len(), 5);
        assert_eq!(rows[1].action, 2);
        let evaluation = evaluation_config(&experiment("a", "0.001").config);
        assert_eq!(evaluation.cost_bps, 10.0);
        assert_eq!(evaluation.signal, Signal::Action);
        let curves = equity_curves(&rows, &evaluation);
        assert_eq!(curves.timestamps, [100, 200, 300]);

        // By hand, at 10 bps (0.001 per unit of position change):
        // AAA positions +1, -1, +1 on 2%, -3%, 1%: 0.02 - 0.001, 0.03 - 0.002, 0.01 - 0.002.
        // BBB positions -1, 0 on 1%, 4%: -0.01 - 0.001, 0 - 0.001.
        // Portfolio: t100 mean(0.019, -0.011), t200 mean(0.028, -0.001), t300 0.008.
        let bars = [(0.019 - 0.011) / 2.0, (0.028 - 0.001) / 2.0, 0.008];
        let by_hand: f64 = bars.iter().map(|r| 1.0 + r).product();
        let end = *curves.strategy.last().unwrap();
        assert!((end - by_hand).abs() < 1e-7, "{end} vs {by_hand}");

        // And exactly what the evaluate stage reports (same f32 inputs, same operations).
        let symbols = [0, 1, 0, 1, 0];
        let timestamps: Vec<i64> = rows.iter().map(|r| r.timestamp).collect();
        let returns: Vec<f64> = rows.iter().map(|r| f64::from(r.actual_r1())).collect();
        let positions = [1.0, -1.0, -1.0, 0.0, 1.0];
        let stats =
            crate::eval::portfolio(&symbols, &timestamps, &positions, &returns, 10.0, 252.0);
        assert!((end - (1.0 + stats.total_return)).abs() < 1e-9);
        let hold = crate::eval::portfolio(&symbols, &timestamps, &[1.0; 5], &returns, 10.0, 252.0);
        let hold_end = *curves.buy_and_hold.last().unwrap();
        assert!((hold_end - (1.0 + hold.total_return)).abs() < 1e-9);

        // The price signal takes sign(pred_r1): +1, -1, -1, 0, +1 here.
        let by_price = equity_curves(
            &rows,
            &EvaluationConfig {
                signal: Signal::Price,
                cost_bps: 0.0,
                walk_forward: None,
            },
        );
        let stats = crate::eval::portfolio(
            &symbols,
            &timestamps,
            &[1.0, -1.0, -1.0, 0.0, 1.0],
            &returns,
            0.0,
            252.0,
        );
        let end = *by_price.strategy.last().unwrap();
        assert!((end - (1.0 + stats.total_return)).abs() < 1e-9);
    }

    #[test]
    fn every_horizon_step_and_the_band_are_read_and_scored() {
        let p = parse_predictions(CSV.as_bytes()).unwrap();
        assert_eq!((p.horizon, p.band_levels), (2, None));
        assert_eq!(p.rows[0].pred, [0.01, 0.0]);
        let stats = horizon_stats(&p);
        // r2: every prediction 0 (persistence), actual 0.01 once: skill 0; no direction
        // right among the one move.
        assert_eq!(stats.skill[1], Some(0.0));
        assert_eq!(stats.directional_accuracy[1], Some(0.0));
        assert!(stats.coverage.is_empty());

        let band = "symbol,timestamp,pred_r1,q10_r1,q90_r1,actual_r1,action\n\
                    A,1,0,-0.01,0.01,0.005,buy\nA,2,0,-0.01,0.01,0.02,buy\n";
        let p = parse_predictions(band.as_bytes()).unwrap();
        assert_eq!(p.band_levels, Some([0.1, 0.9]));
        assert_eq!(horizon_stats(&p).coverage, [0.5]);
        let short = "symbol,timestamp,pred_r1,pred_r2,actual_r1,action\nA,1,0,0,0,buy\n";
        assert!(
            parse_predictions(short.as_bytes())
                .unwrap_err()
                .contains("2 `pred_r*` columns but 1 `actual_r*`")
        );
    }

    #[test]
    fn loss_curves_skip_missing_validation_and_find_the_best_epoch() {
        let curves = LossCurves::from_log(experiment("a", "0").train_log.as_ref().unwrap());
        assert_eq!(curves.train, [(1.0, 1.2), (2.0, 0.9), (3.0, 0.8)]);
        assert_eq!(curves.val, [(1.0, 1.1), (2.0, 1.0)]);
        assert_eq!(curves.best, Some((2.0, 1.0)));
    }
}
