//! The backtest: positions against next-bar returns with trading costs, per symbol and as
//! an equal-weight portfolio, summarized as total return, Sharpe and maximum drawdown.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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

/// Equity after each bar of `bars`, compounded from 1 (what the report plots).
pub fn equity(bars: &[f64]) -> Vec<f64> {
    let mut equity = 1.0;
    bars.iter()
        .map(|r| {
            equity *= 1.0 + r;
            equity
        })
        .collect()
}

/// Total return, Sharpe and maximum drawdown of a series of bar returns.
pub(crate) fn summarize(bars: &[f64], bars_per_year: f64, trades: usize) -> BacktestStats {
    let curve = equity(bars);
    let (mut peak, mut max_drawdown) = (1.0f64, 0.0f64);
    for &e in &curve {
        peak = peak.max(e);
        max_drawdown = max_drawdown.max((peak - e) / peak);
    }
    let equity = curve.last().copied().unwrap_or(1.0);
    let sharpe = super::stats::sharpe(bars, bars_per_year);
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
#[cfg(test)]
mod tests {
    use super::*;

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
