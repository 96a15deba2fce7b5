//! Seeded synthetic bars for tests, examples and benchmarks without market data.
//!
//! The generator reproduces the stylised facts the features are meant to pick up, so a model
//! has something learnable and a test exercises realistic values:
//!
//! - **Regime switching**: a two-state Markov chain alternates between a *trending* regime
//!   (a constant drift of +-0.08 sigma per bar, direction drawn at entry with a slight upward
//!   bias, plus mild momentum) and a *mean-reverting* regime (log price pulled back towards its
//!   level at regime entry, mild reversal). Expected stays: ~67 bars trending, ~50 reverting.
//! - **Volatility clustering**: GARCH(1,1) innovations, h' = omega + 0.08 e^2 + 0.90 h, with
//!   omega chosen so the long-run per-bar volatility is 1.5% a day scaled to the bar length
//!   (a trading day is 6.5 hours for intraday bars).
//! - **Consistent OHLC**: open gaps from the previous close, high/low extend beyond max/min of
//!   open and close by a volatility-scaled amount, so high >= max(open, close) and
//!   low <= min(open, close) hold exactly.
//! - **Volume** grows with the bar's |return| and with the current volatility, with
//!   log-normal noise, rounded to whole shares.
//!
//! Randomness comes from `ChaCha8Rng::seed_from_u64(seed)` and is turned into uniforms and
//! normals here (53-bit uniforms, Marsaglia's polar method), not by `rand`'s distributions, so
//! the stream does not change with the `rand` version. Only IEEE arithmetic plus `ln`, `exp`
//! and `sqrt` are used.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::Bars;

/// 2015-01-02 00:00:00 UTC, a Friday: the first daily bar.
const DAILY_START: i64 = 1_420_156_800;
/// 2015-01-02 14:30:00 UTC (09:30 in New York): the first intraday bar.
const INTRADAY_START: i64 = DAILY_START + 14 * 3600 + 30 * 60;
const DAY: i64 = 86_400;
/// Seconds in a trading session, for scaling intraday volatility and volume.
const SESSION: f64 = 6.5 * 3600.0;
const DAILY_VOL: f64 = 0.015;
const DAILY_VOLUME: f64 = 1.0e6;
const GARCH_ALPHA: f64 = 0.08;
const GARCH_BETA: f64 = 0.90;
const STAY_TRENDING: f64 = 0.985;
const STAY_REVERTING: f64 = 0.98;

/// Generates `bars` bars starting at `start_price`, one every `bar_seconds`.
///
/// With `bar_seconds >= 86400` the bars start on 2015-01-02 and skip Saturdays and Sundays;
/// shorter bars start at 2015-01-02 14:30 UTC and follow each other without gaps. A
/// non-positive `bar_seconds` means daily bars, and a non-finite or non-positive
/// `start_price` means 100. The same arguments give bit-identical bars on every run; any
/// `bars >= 1` output passes [`super::ingest::validate`].
pub fn generate(seed: u64, bars: usize, start_price: f64, bar_seconds: i64) -> Bars {
    let bar_seconds = if bar_seconds > 0 { bar_seconds } else { DAY };
    let start_price = if start_price.is_finite() && start_price > 0.0 {
        start_price
    } else {
        100.0
    };
    // Share of a trading day one bar covers, for the square-root-of-time volatility scaling.
    let day_share = if bar_seconds >= DAY {
        bar_seconds as f64 / DAY as f64
    } else {
        (bar_seconds as f64 / SESSION).min(1.0)
    };
    let sigma = DAILY_VOL * day_share.sqrt();
    let omega = sigma * sigma * (1.0 - GARCH_ALPHA - GARCH_BETA);
    let base_volume = DAILY_VOLUME * day_share;

    let mut rng = Source::new(seed);
    let mut out = Bars {
        timestamps: Vec::with_capacity(bars),
        open: Vec::with_capacity(bars),
        high: Vec::with_capacity(bars),
        low: Vec::with_capacity(bars),
        close: Vec::with_capacity(bars),
        volume: Vec::with_capacity(bars),
    };

    let mut timestamp = if bar_seconds >= DAY {
        DAILY_START
    } else {
        INTRADAY_START
    };
    let mut h = sigma * sigma; // conditional variance
    let mut log_price = start_price.ln();
    let mut prev_close = start_price;
    let mut prev_return = 0.0;
    let mut trending = true;
    let mut drift = sigma * 0.08;
    let mut anchor = log_price;

    for i in 0..bars {
        if i > 0 {
            timestamp = timestamp.saturating_add(bar_seconds);
            if bar_seconds >= DAY {
                while is_weekend(timestamp) {
                    timestamp = timestamp.saturating_add(DAY);
                }
            }
        }

        // Markov regime switch, drawn before the bar's return.
        let stay = if trending {
            STAY_TRENDING
        } else {
            STAY_REVERTING
        };
        if rng.uniform() >= stay {
            trending = !trending;
            if trending {
                let up = rng.uniform() < 0.55;
                drift = if up { 0.08 } else { -0.08 } * sigma;
            } else {
                anchor = log_price;
            }
        }

        let vol = h.sqrt();
        let shock = vol * rng.normal();
        let (mean, momentum) = if trending {
            (drift, 0.05)
        } else {
            (-0.05 * (log_price - anchor), -0.05)
        };
        let r = (mean + momentum * prev_return + shock).clamp(-0.2, 0.2);
        h = omega + GARCH_ALPHA * shock * shock + GARCH_BETA * h;

        let gap = 0.2 * vol * rng.normal();
        let open = prev_close * gap.exp();
        log_price += r;
        let close = log_price.exp();
        let wick_up = (0.5 * vol * rng.normal().abs()).exp();
        let wick_down = (-0.5 * vol * rng.normal().abs()).exp();
        // Multiplying by a factor >= 1 (<= 1) never rounds below (above) the input.
        let high = open.max(close) * wick_up;
        let low = open.min(close) * wick_down;

        let activity = (vol / sigma).powf(0.8) * (1.0 + 2.0 * r.abs() / sigma);
        let noise = (0.25 * rng.normal()).exp();
        let volume = (base_volume * activity * noise).round();

        out.timestamps.push(timestamp);
        out.open.push(open);
        out.high.push(high);
        out.low.push(low);
        out.close.push(close);
        out.volume.push(volume);
        prev_close = close;
        prev_return = r;
    }
    out
}

fn is_weekend(ts: i64) -> bool {
    // 1970-01-01 was a Thursday: (days + 3) % 7 numbers Monday as 0, so 5 and 6 are the weekend.
    (ts.div_euclid(DAY) + 3).rem_euclid(7) >= 5
}

/// Uniforms and normals derived directly from ChaCha8's u64 stream.
struct Source(ChaCha8Rng);

impl Source {
    fn new(seed: u64) -> Self {
        Source(ChaCha8Rng::seed_from_u64(seed))
    }

    /// Uniform in [0, 1) with 53 random bits.
    fn uniform(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Standard normal by Marsaglia's polar method.
    fn normal(&mut self) -> f64 {
        loop {
            let u = 2.0 * self.uniform() - 1.0;
            let v = 2.0 * self.uniform() - 1.0;
            let s = u * u + v * v;
            if s > 0.0 && s < 1.0 {
                return u * (-2.0 * s.ln() / s).sqrt();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::ingest::validate;

    fn corr(a: &[f64], b: &[f64]) -> f64 {
        let n = a.len() as f64;
        let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
        let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
        let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
        let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
        cov / (va * vb).sqrt()
    }

    #[test]
    fn deterministic_and_seed_dependent() {
        let a = generate(7, 500, 50.0, 86_400);
        let b = generate(7, 500, 50.0, 86_400);
        let c = generate(8, 500, 50.0, 86_400);
        assert_eq!(a, b);
        assert_ne!(a.close, c.close);
        // A longer run starts with the shorter run's bars.
        let long = generate(7, 800, 50.0, 86_400);
        assert_eq!(long.close[..500], a.close[..]);
    }

    #[test]
    fn valid_daily_bars_on_weekdays() {
        let b = generate(1, 3000, 100.0, 86_400);
        validate(&b).unwrap();
        assert_eq!(b.timestamps.len(), 3000);
        assert_eq!(b.timestamps[0], DAILY_START);
        assert!(b.timestamps.iter().all(|&t| !is_weekend(t)));
        // Friday 2015-01-02 is followed by Monday 2015-01-05.
        assert_eq!(b.timestamps[1] - b.timestamps[0], 3 * DAY);
        assert!((b.open[0] / 100.0 - 1.0).abs() < 0.05);
    }

    #[test]
    fn valid_intraday_bars_are_consecutive() {
        let b = generate(2, 2000, 3500.0, 300);
        validate(&b).unwrap();
        assert_eq!(b.timestamps[0], INTRADAY_START);
        assert!(b.timestamps.windows(2).all(|w| w[1] - w[0] == 300));
        // Odd arguments fall back to daily bars at 100 rather than producing invalid bars.
        let odd = generate(3, 50, f64::NAN, 0);
        validate(&odd).unwrap();
        assert!(generate(3, 0, 1.0, 60).timestamps.is_empty());
    }

    #[test]
    fn stylised_facts() {
        let b = generate(11, 6000, 100.0, 86_400);
        let r: Vec<f64> = b.close.windows(2).map(|w| (w[1] / w[0]).ln()).collect();
        let n = r.len() as f64;
        let mean = r.iter().sum::<f64>() / n;
        let sd = (r.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
        assert!((0.008..0.03).contains(&sd), "daily volatility {sd}");
        // Volatility clustering: squared returns are autocorrelated.
        let sq: Vec<f64> = r.iter().map(|x| x * x).collect();
        let acf = corr(&sq[1..], &sq[..sq.len() - 1]);
        assert!(acf > 0.05, "autocorrelation of squared returns {acf}");
        // Volume rises with |return|.
        let abs: Vec<f64> = r.iter().map(|x| x.abs()).collect();
        let c = corr(&abs, &b.volume[1..]);
        assert!(c > 0.2, "corr(|r|, volume) = {c}");
    }
}
