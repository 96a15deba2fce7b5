//! A forecast of one window, how forecasts are stored (exactly, as bits) and how they are
//! shown: CSV with ISO 8601 timestamps for `hft predict` (and the timestamp format of the
//! export's predictions).

use serde::{Deserialize, Serialize};

/// One window's forecast.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forecast {
    pub symbol: String,
    /// The window's last bar (Unix seconds, UTC).
    pub timestamp: i64,
    /// Its (adjusted) close, from which the price levels are taken.
    pub close: f64,
    /// Predicted returns `C[t+h] / C[t] - 1`, h = 1..=horizon.
    pub returns: Vec<f32>,
    /// A probabilistic model's lower and upper quantiles of each return.
    pub band: Option<[Vec<f32>; 2]>,
    /// Buy, hold, sell logits.
    pub logits: [f32; 3],
}

/// The three actions, in logit order.
pub const ACTIONS: [&str; 3] = ["buy", "hold", "sell"];

impl Forecast {
    /// Predicted price levels `close * (1 + r_h)`.
    pub fn prices(&self) -> Vec<f64> {
        self.returns
            .iter()
            .map(|r| self.close * (1.0 + f64::from(*r)))
            .collect()
    }

    /// Softmax of the logits (computed in f64, stable).
    pub fn probabilities(&self) -> [f32; 3] {
        let l = self.logits.map(f64::from);
        let top = l.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e = l.map(|v| libm::exp(v - top));
        let sum: f64 = e.iter().sum();
        e.map(|v| (v / sum) as f32)
    }

    /// The chosen action: the largest logit, the first on ties.
    pub fn action(&self) -> &'static str {
        let mut best = 0;
        for (i, v) in self.logits.iter().enumerate() {
            if *v > self.logits[best] {
                best = i;
            }
        }
        ACTIONS[best]
    }
}

/// Forecasts in symbol order, then time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forecasts {
    pub horizon: usize,
    /// The quantile levels of each forecast's band (probabilistic models).
    pub band_levels: Option<[f64; 2]>,
    pub rows: Vec<Forecast>,
}

/// The stored form of [`Forecasts`]: JSON with every float as its bits, since a JSON
/// number read back need not be the same float, and a cached answer must be the same bytes.
#[derive(Serialize, Deserialize)]
pub(super) struct Stored {
    horizon: usize,
    band_levels: Option<[u64; 2]>,
    rows: Vec<StoredRow>,
}

#[derive(Serialize, Deserialize)]
struct StoredRow {
    symbol: String,
    timestamp: i64,
    close: u64,
    returns: Vec<u32>,
    band: Option<[Vec<u32>; 2]>,
    logits: [u32; 3],
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn floats(v: &[u32]) -> Vec<f32> {
    v.iter().map(|x| f32::from_bits(*x)).collect()
}

impl Stored {
    pub(super) fn of(f: &Forecasts) -> Stored {
        Stored {
            horizon: f.horizon,
            band_levels: f.band_levels.map(|l| l.map(f64::to_bits)),
            rows: f
                .rows
                .iter()
                .map(|r| StoredRow {
                    symbol: r.symbol.clone(),
                    timestamp: r.timestamp,
                    close: r.close.to_bits(),
                    returns: bits(&r.returns),
                    band: r.band.as_ref().map(|[lo, hi]| [bits(lo), bits(hi)]),
                    logits: r.logits.map(f32::to_bits),
                })
                .collect(),
        }
    }

    pub(super) fn forecasts(self) -> Forecasts {
        Forecasts {
            horizon: self.horizon,
            band_levels: self.band_levels.map(|l| l.map(f64::from_bits)),
            rows: self
                .rows
                .into_iter()
                .map(|r| Forecast {
                    symbol: r.symbol,
                    timestamp: r.timestamp,
                    close: f64::from_bits(r.close),
                    returns: floats(&r.returns),
                    band: r.band.map(|[lo, hi]| [floats(&lo), floats(&hi)]),
                    logits: r.logits.map(f32::from_bits),
                })
                .collect(),
        }
    }
}

/// Unix seconds as ISO 8601 UTC: `2024-01-31T15:30:00Z`.
pub fn iso_time(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| t.to_string())
}

/// The forecasts as CSV: `symbol,timestamp,close,pred_r1..P` (then the band's
/// `q10_r1..P,q90_r1..P` for a probabilistic model), `pred_price1..P`,
/// `p_buy,p_hold,p_sell,action`; ISO 8601 timestamps, shortest round-trip floats.
pub fn forecasts_csv(f: &Forecasts) -> String {
    use std::fmt::Write as _;
    let p = f.horizon;
    let mut out = String::from("symbol,timestamp,close");
    let mut prefixes = vec!["pred_r".to_string()];
    if let Some(levels) = f.band_levels {
        prefixes.extend(levels.map(|q| format!("q{}_r", (q * 100.0).round())));
    }
    prefixes.push("pred_price".to_string());
    for prefix in &prefixes {
        for h in 1..=p {
            let _ = write!(out, ",{prefix}{h}");
        }
    }
    out.push_str(",p_buy,p_hold,p_sell,action\n");
    for row in &f.rows {
        let _ = write!(
            out,
            "{},{},{}",
            row.symbol,
            iso_time(row.timestamp),
            row.close
        );
        for r in &row.returns {
            let _ = write!(out, ",{r}");
        }
        if let Some([lower, upper]) = &row.band {
            for q in lower.iter().chain(upper) {
                let _ = write!(out, ",{q}");
            }
        }
        for price in row.prices() {
            let _ = write!(out, ",{price}");
        }
        for prob in row.probabilities() {
            let _ = write!(out, ",{prob}");
        }
        let _ = writeln!(out, ",{}", row.action());
    }
    out
}

/// An f32 as the f64 of its shortest decimal text, so that JSON shows `0.0330583`, not
/// `0.033058300614356995` (both read back as the same f32).
pub(super) fn short(v: f32) -> f64 {
    v.to_string().parse().unwrap_or(f64::from(v))
}

pub(super) fn shorts(v: &[f32]) -> Vec<f64> {
    v.iter().copied().map(short).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forecast_rows_render_prices_probabilities_and_actions() {
        let f = Forecasts {
            horizon: 2,
            band_levels: None,
            rows: vec![Forecast {
                symbol: "AAA".into(),
                timestamp: 1_704_153_600,
                close: 100.0,
                returns: vec![0.01, -0.02],
                band: None,
                logits: [0.0, 2.0, 1.0],
            }],
        };
        let row = &f.rows[0];
        let p = row.probabilities();
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6 && p[1] > p[2] && p[2] > p[0]);
        assert_eq!(row.action(), "hold");
        let csv = forecasts_csv(&f);
        let mut lines = csv.lines();
        assert_eq!(
            lines.next().unwrap(),
            "symbol,timestamp,close,pred_r1,pred_r2,pred_price1,pred_price2,p_buy,p_hold,p_sell,action"
        );
        let cells: Vec<&str> = lines.next().unwrap().split(',').collect();
        assert_eq!(cells[..4], ["AAA", "2024-01-02T00:00:00Z", "100", "0.01"]);
        assert!((cells[5].parse::<f64>().unwrap() - 101.0).abs() < 1e-4);
        assert_eq!(cells[10], "hold");
    }
}
