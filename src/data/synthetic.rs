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
//! and `sqrt` are used (and `sin` for a planted seasonal component).
//!
//! [`generate_planted`] replaces the stylised facts by a *planted* signal with a known
//! optimum ([`Signal::forecast`]): log returns follow an AR(p) process with Gaussian noise,
//! plus an optional sinusoid over bar indices, so tests and examples can compare a model with
//! the best forecast there is.

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

/// What both generators share: the arguments with their fallbacks (daily bars, a price of
/// 100), the share of a trading day one bar covers, and the bar calendar.
struct Calendar {
    bar_seconds: i64,
    start_price: f64,
    /// Share of a trading day one bar covers, for the square-root-of-time scaling.
    day_share: f64,
    timestamp: i64,
}

impl Calendar {
    fn new(start_price: f64, bar_seconds: i64) -> Calendar {
        let bar_seconds = if bar_seconds > 0 { bar_seconds } else { DAY };
        let start_price = if start_price.is_finite() && start_price > 0.0 {
            start_price
        } else {
            100.0
        };
        let day_share = if bar_seconds >= DAY {
            bar_seconds as f64 / DAY as f64
        } else {
            (bar_seconds as f64 / SESSION).min(1.0)
        };
        let timestamp = if bar_seconds >= DAY {
            DAILY_START
        } else {
            INTRADAY_START
        };
        Calendar {
            bar_seconds,
            start_price,
            day_share,
            timestamp,
        }
    }

    /// The timestamp of bar `i` (called for i = 0, 1, ... in order): daily bars skip
    /// weekends, shorter ones follow each other.
    fn timestamp_of(&mut self, i: usize) -> i64 {
        if i > 0 {
            self.timestamp = self.timestamp.saturating_add(self.bar_seconds);
            if self.bar_seconds >= DAY {
                while is_weekend(self.timestamp) {
                    self.timestamp = self.timestamp.saturating_add(DAY);
                }
            }
        }
        self.timestamp
    }
}

fn empty_bars(n: usize) -> Bars {
    Bars {
        timestamps: Vec::with_capacity(n),
        open: Vec::with_capacity(n),
        high: Vec::with_capacity(n),
        low: Vec::with_capacity(n),
        close: Vec::with_capacity(n),
        volume: Vec::with_capacity(n),
    }
}

/// Generates `bars` bars starting at `start_price`, one every `bar_seconds`.
///
/// With `bar_seconds >= 86400` the bars start on 2015-01-02 and skip Saturdays and Sundays;
/// shorter bars start at 2015-01-02 14:30 UTC and follow each other without gaps. A
/// non-positive `bar_seconds` means daily bars, and a non-finite or non-positive
/// `start_price` means 100. The same arguments give bit-identical bars on every run; any
/// `bars >= 1` output passes [`super::ingest::validate`].
pub fn generate(seed: u64, bars: usize, start_price: f64, bar_seconds: i64) -> Bars {
    let mut calendar = Calendar::new(start_price, bar_seconds);
    let (start_price, day_share) = (calendar.start_price, calendar.day_share);
    let sigma = DAILY_VOL * day_share.sqrt();
    let omega = sigma * sigma * (1.0 - GARCH_ALPHA - GARCH_BETA);
    let base_volume = DAILY_VOLUME * day_share;

    let mut rng = Source::new(seed);
    let mut out = empty_bars(bars);
    let mut h = sigma * sigma; // conditional variance
    let mut log_price = libm::log(start_price);
    let mut prev_close = start_price;
    let mut prev_return = 0.0;
    let mut trending = true;
    let mut drift = sigma * 0.08;
    let mut anchor = log_price;

    for i in 0..bars {
        let timestamp = calendar.timestamp_of(i);

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
        let open = prev_close * libm::exp(gap);
        log_price += r;
        let close = libm::exp(log_price);
        let wick_up = libm::exp(0.5 * vol * rng.normal().abs());
        let wick_down = libm::exp(-0.5 * vol * rng.normal().abs());
        // Multiplying by a factor >= 1 (<= 1) never rounds below (above) the input.
        let high = open.max(close) * wick_up;
        let low = open.min(close) * wick_down;

        let activity = libm::pow(vol / sigma, 0.8) * (1.0 + 2.0 * r.abs() / sigma);
        let noise = libm::exp(0.25 * rng.normal());
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

/// A planted signal (`data.synthetic.signal`): the log return of bar `i` (from the previous
/// close, or from `start_price` for bar 0) is `r_i = s_i + x_i`, where
/// `x_i = ar[0] x_{i-1} + ... + ar[p-1] x_{i-p} + noise * e_i` (`x` before bar 0 is 0,
/// `e_i` standard normal) and `s_i = amplitude * sin(2 pi i / period)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    /// AR coefficients, lag 1 first; empty means white noise.
    pub ar: Vec<f64>,
    /// Standard deviation of the innovations `e_i`.
    pub noise: f64,
    /// `(period in bars, amplitude)` of the seasonal component.
    pub seasonal: Option<(f64, f64)>,
}

impl Signal {
    /// The seasonal component of bar `i` (0 without one).
    pub fn seasonal_at(&self, i: usize) -> f64 {
        match self.seasonal {
            Some((period, amplitude)) => {
                amplitude * libm::sin(2.0 * std::f64::consts::PI * i as f64 / period)
            }
            None => 0.0,
        }
    }

    /// The optimal (minimum-MSE) forecasts of the next `horizon` log returns given all past
    /// ones: `past` holds `r_0 .. r_{t-1}` from bar 0 on (its length fixes the seasonal
    /// phase), and the result `r_t .. r_{t+horizon-1}`. Unknown lags before bar 0 count as 0,
    /// as in the generator, so the one-step error is exactly the innovation `noise * e_t`.
    pub fn forecast(&self, past: &[f64], horizon: usize) -> Vec<f64> {
        let t = past.len();
        // The AR part of the past, then extended by its own forecasts.
        let mut x: Vec<f64> = past
            .iter()
            .enumerate()
            .map(|(i, r)| r - self.seasonal_at(i))
            .collect();
        let mut out = Vec::with_capacity(horizon);
        for j in 0..horizon {
            let i = t + j;
            let x_hat: f64 = self
                .ar
                .iter()
                .enumerate()
                .filter(|(lag, _)| *lag < i)
                .map(|(lag, a)| a * x[i - 1 - lag])
                .sum();
            x.push(x_hat);
            out.push(self.seasonal_at(i) + x_hat);
        }
        out
    }

    /// The oracle's expected squared error of the `h`-step-ahead log-return forecast
    /// (`h >= 1`; `h = 1` gives `noise^2`): `noise^2 * sum_{k<h} psi_k^2` with the MA(inf)
    /// weights `psi` of the AR process (for a stationary process, after its start-up).
    pub fn forecast_error_variance(&self, h: usize) -> f64 {
        let mut psi: Vec<f64> = Vec::with_capacity(h);
        for k in 0..h {
            let p = if k == 0 {
                1.0
            } else {
                self.ar
                    .iter()
                    .enumerate()
                    .filter(|(lag, _)| *lag < k)
                    .map(|(lag, a)| a * psi[k - 1 - lag])
                    .sum()
            };
            psi.push(p);
        }
        self.noise * self.noise * psi.iter().map(|p| p * p).sum::<f64>()
    }
}

/// Like [`generate`] (same timestamps, same fallbacks for odd arguments), but the closes
/// follow the planted [`Signal`]: `close_i = start_price * exp(r_0 + ... + r_i)`. Open, high,
/// low and volume are derived as in [`generate`], with `noise` as the bar's volatility, so
/// OHLC stays consistent. The same arguments give bit-identical bars on every run.
pub fn generate_planted(
    seed: u64,
    bars: usize,
    start_price: f64,
    bar_seconds: i64,
    signal: &Signal,
) -> Bars {
    let mut calendar = Calendar::new(start_price, bar_seconds);
    let start_price = calendar.start_price;
    let base_volume = DAILY_VOLUME * calendar.day_share;
    // The bar's volatility for gaps, wicks and volume; kept positive so volume stays finite.
    let vol = signal.noise.abs().max(1e-12);

    let mut rng = Source::new(seed);
    let mut out = empty_bars(bars);
    let mut log_price = libm::log(start_price);
    let mut prev_close = start_price;
    // The AR state, most recent first.
    let mut x_past: Vec<f64> = vec![0.0; signal.ar.len()];

    for i in 0..bars {
        let timestamp = calendar.timestamp_of(i);
        let ar: f64 = signal.ar.iter().zip(&x_past).map(|(a, x)| a * x).sum();
        let x = ar + signal.noise * rng.normal();
        if !x_past.is_empty() {
            x_past.rotate_right(1);
            x_past[0] = x;
        }
        let r = signal.seasonal_at(i) + x;

        let gap = 0.2 * vol * rng.normal();
        let open = prev_close * libm::exp(gap);
        log_price += r;
        let close = libm::exp(log_price);
        let wick_up = libm::exp(0.5 * vol * rng.normal().abs());
        let wick_down = libm::exp(-0.5 * vol * rng.normal().abs());
        let high = open.max(close) * wick_up;
        let low = open.min(close) * wick_down;

        let activity = 1.0 + 2.0 * r.abs() / vol;
        let noise = libm::exp(0.25 * rng.normal());
        let volume = (base_volume * activity * noise).round();

        out.timestamps.push(timestamp);
        out.open.push(open);
        out.high.push(high);
        out.low.push(low);
        out.close.push(close);
        out.volume.push(volume);
        prev_close = close;
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
                return u * (-2.0 * libm::log(s) / s).sqrt();
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
        let r: Vec<f64> = b.close.windows(2).map(|w| libm::log(w[1] / w[0])).collect();
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

    fn log_returns(b: &Bars, start_price: f64) -> Vec<f64> {
        let mut prev = start_price;
        b.close
            .iter()
            .map(|&c| {
                let r = libm::log(c / prev);
                prev = c;
                r
            })
            .collect()
    }

    fn ar1() -> Signal {
        Signal {
            ar: vec![0.3],
            noise: 0.01,
            seasonal: None,
        }
    }

    #[test]
    fn planted_is_deterministic_and_valid() {
        let s = ar1();
        let a = generate_planted(7, 500, 50.0, 86_400, &s);
        assert_eq!(a, generate_planted(7, 500, 50.0, 86_400, &s));
        assert_ne!(a.close, generate_planted(8, 500, 50.0, 86_400, &s).close);
        let long = generate_planted(7, 800, 50.0, 86_400, &s);
        assert_eq!(long.close[..500], a.close[..]);
        validate(&a).unwrap();
        // Same calendar as the stylised generator.
        assert_eq!(a.timestamps, generate(7, 500, 50.0, 86_400).timestamps);
        let intraday = generate_planted(2, 300, 20.0, 300, &s);
        validate(&intraday).unwrap();
        let seasonal = Signal {
            seasonal: Some((5.0, 0.002)),
            ..ar1()
        };
        validate(&generate_planted(3, 300, f64::NAN, 0, &seasonal)).unwrap();
        assert!(generate_planted(3, 0, 1.0, 60, &s).timestamps.is_empty());
    }

    #[test]
    fn planted_ar1_autocorrelation_matches_the_coefficient() {
        let b = generate_planted(11, 50_000, 100.0, 86_400, &ar1());
        let r = log_returns(&b, 100.0);
        let acf = corr(&r[1..], &r[..r.len() - 1]);
        assert!((acf - 0.3).abs() < 0.02, "lag-1 autocorrelation {acf}");
        // Stationary variance of an AR(1): noise^2 / (1 - a^2).
        let var = r.iter().map(|x| x * x).sum::<f64>() / r.len() as f64;
        let want = 1e-4 / (1.0 - 0.09);
        assert!((var / want - 1.0).abs() < 0.03, "variance {var} vs {want}");
    }

    #[test]
    fn oracle_mse_is_the_noise_variance() {
        for s in [
            ar1(),
            Signal {
                ar: vec![0.5, -0.3, 0.1],
                noise: 0.02,
                seasonal: Some((5.0, 0.002)),
            },
        ] {
            let b = generate_planted(5, 20_000, 100.0, 86_400, &s);
            let r = log_returns(&b, 100.0);
            let (mut se1, mut se3, mut n) = (0.0, 0.0, 0.0);
            for t in 100..r.len() - 3 {
                let f = s.forecast(&r[..t], 3);
                se1 += (r[t] - f[0]).powi(2);
                se3 += (r[t + 2] - f[2]).powi(2);
                n += 1.0;
            }
            let (mse1, mse3) = (se1 / n, se3 / n);
            let want1 = s.forecast_error_variance(1);
            assert!((want1 - s.noise * s.noise).abs() < 1e-15);
            assert!(
                (mse1 / want1 - 1.0).abs() < 0.04,
                "1-step {mse1} vs {want1}"
            );
            let want3 = s.forecast_error_variance(3);
            assert!(
                (mse3 / want3 - 1.0).abs() < 0.05,
                "3-step {mse3} vs {want3}"
            );
            assert!(want3 > want1);
        }
    }

    #[test]
    fn oracle_forecast_by_hand() {
        let s = Signal {
            ar: vec![0.5, 0.2],
            noise: 0.01,
            seasonal: None,
        };
        assert_eq!(s.forecast(&[], 2), vec![0.0, 0.0]);
        let f = s.forecast(&[0.1, 0.2], 2);
        assert!((f[0] - (0.5 * 0.2 + 0.2 * 0.1)).abs() < 1e-15);
        assert!((f[1] - (0.5 * f[0] + 0.2 * 0.2)).abs() < 1e-15);
        let seasonal = Signal {
            ar: vec![],
            noise: 0.01,
            seasonal: Some((4.0, 0.002)),
        };
        let f = seasonal.forecast(&[0.0], 2);
        assert!((f[0] - 0.002).abs() < 1e-15 && f[1].abs() < 1e-15);
    }
}
