//! The stationary block bootstrap (Politis and Romano, 1994): resamples of a time series made
//! of blocks of geometric random length, so the serial dependence within a block survives.
//! Separate from the test statistics because it is a resampling engine, seeded and checked by
//! its own properties (determinism, coverage, widening with dependence).

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The default mean block length: n^(1/3), at least 1. The rate that minimises the
/// bootstrap variance estimator's error for the mean of a weakly dependent series (Politis
/// and White, 2004, give the optimal length as a constant times n^(1/3)); the constant is
/// left at 1 so the rule is simple and seed-free.
pub fn default_mean_block(n: usize) -> f64 {
    libm::cbrt(n as f64).max(1.0)
}

/// Percentile interval at `level` (e.g. 0.9) of `statistic` over `resamples` stationary
/// bootstrap resamples of `series`, with blocks of mean length `mean_block` (see
/// [`default_mean_block`]), seeded by `seed`. Resamples where the statistic is not finite
/// are dropped. `None` when the series is empty, `resamples` is 0, `level` is not in
/// (0, 1), `mean_block` is not a finite number >= 1, or no resample gives a finite value.
pub fn stationary_bootstrap_ci(
    series: &[f64],
    statistic: impl Fn(&[f64]) -> f64,
    level: f64,
    resamples: usize,
    mean_block: f64,
    seed: u64,
) -> Option<(f64, f64)> {
    let mut buffer = Vec::with_capacity(series.len());
    stationary_bootstrap_ci_indices(
        series.len(),
        |indices| {
            buffer.clear();
            buffer.extend(indices.iter().map(|&i| series[i]));
            statistic(&buffer)
        },
        level,
        resamples,
        mean_block,
        seed,
    )
}

/// [`stationary_bootstrap_ci`] over index-aligned series of length `n`: `statistic`
/// receives the resampled indices (each in `0..n`) and reads whatever series it pairs, e.g.
/// predictions and actuals for directional accuracy or skill, so all of them are resampled
/// by the same blocks.
pub fn stationary_bootstrap_ci_indices(
    n: usize,
    mut statistic: impl FnMut(&[usize]) -> f64,
    level: f64,
    resamples: usize,
    mean_block: f64,
    seed: u64,
) -> Option<(f64, f64)> {
    if n == 0 || resamples == 0 || !(level > 0.0 && level < 1.0) {
        return None;
    }
    if !(mean_block.is_finite() && mean_block >= 1.0) {
        return None;
    }
    let restart = 1.0 / mean_block;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut uniform = move || (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
    let mut indices = vec![0usize; n];
    let mut values = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        let mut at = 0;
        for (k, slot) in indices.iter_mut().enumerate() {
            // A new block starts at a uniform position with probability 1 / mean_block;
            // otherwise the block continues, wrapping around the end (the circular scheme).
            at = if k == 0 || uniform() < restart {
                ((uniform() * n as f64) as usize).min(n - 1)
            } else {
                (at + 1) % n
            };
            *slot = at;
        }
        let v = statistic(&indices);
        if v.is_finite() {
            values.push(v);
        }
    }
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let alpha = 1.0 - level;
    Some((
        quantile_sorted(&values, alpha / 2.0),
        quantile_sorted(&values, 1.0 - alpha / 2.0),
    ))
}

/// Linear-interpolation quantile of sorted, non-empty values (numpy's default, "type 7").
fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    let frac = pos - lo as f64;
    sorted[lo] + frac * (sorted[hi] - sorted[lo])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mean(x: &[f64]) -> f64 {
        x.iter().sum::<f64>() / x.len() as f64
    }

    /// Standard normals from a seeded stream (Box-Muller), for test series.
    fn normals(n: usize, seed: u64) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut u = move || ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        (0..n)
            .map(|_| (-2.0 * libm::log(u())).sqrt() * libm::cos(2.0 * std::f64::consts::PI * u()))
            .collect()
    }

    #[test]
    fn same_seed_same_interval_other_seed_other_interval() {
        let x = normals(80, 1);
        let block = default_mean_block(x.len());
        let a = stationary_bootstrap_ci(&x, mean, 0.9, 300, block, 7).unwrap();
        let b = stationary_bootstrap_ci(&x, mean, 0.9, 300, block, 7).unwrap();
        let c = stationary_bootstrap_ci(&x, mean, 0.9, 300, block, 8).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.0 < mean(&x) && mean(&x) < a.1, "{a:?}");
    }

    #[test]
    fn the_mean_interval_covers_the_true_mean_about_as_often_as_its_level() {
        let (trials, mut covered) = (200, 0);
        for seed in 0..trials {
            let x = normals(100, 1000 + seed);
            let (lo, hi) =
                stationary_bootstrap_ci(&x, mean, 0.9, 200, default_mean_block(100), seed).unwrap();
            covered += usize::from(lo <= 0.0 && 0.0 <= hi);
        }
        let share = covered as f64 / trials as f64;
        // Nominal 0.9; the percentile bootstrap under-covers a little at n = 100, and 200
        // trials have a standard error of about 0.02.
        assert!((0.8..=0.97).contains(&share), "coverage {share}");
    }

    #[test]
    fn the_interval_widens_with_serial_dependence() {
        let n = 400;
        let e = normals(n, 3);
        // AR(1) with phi = 0.8, and an iid series of the same marginal variance.
        let phi: f64 = 0.8;
        let mut ar = Vec::with_capacity(n);
        let mut prev = 0.0;
        for v in &e {
            prev = phi * prev + v;
            ar.push(prev);
        }
        let iid: Vec<f64> = normals(n, 4)
            .iter()
            .map(|v| v / (1.0 - phi * phi).sqrt())
            .collect();
        let width = |x: &[f64], block: f64| {
            let (lo, hi) = stationary_bootstrap_ci(x, mean, 0.9, 500, block, 11).unwrap();
            hi - lo
        };
        let block = default_mean_block(n);
        assert!(width(&ar, block) > 1.5 * width(&iid, block));
        // On the dependent series, longer blocks keep more of the dependence: wider.
        assert!(width(&ar, 20.0) > 1.3 * width(&ar, 1.0));
    }

    #[test]
    fn paired_series_are_resampled_together() {
        let pred = normals(60, 5);
        let actual: Vec<f64> = pred.iter().map(|p| p + 0.1).collect();
        // The same sign everywhere but near zero: accuracy of the resample of aligned pairs.
        let hits = |idx: &[usize]| {
            idx.iter()
                .filter(|&&i| (pred[i] > 0.0) == (actual[i] > 0.0))
                .count() as f64
                / idx.len() as f64
        };
        let (lo, hi) = stationary_bootstrap_ci_indices(60, hits, 0.9, 200, 4.0, 2).unwrap();
        assert!(0.0 <= lo && lo <= hi && hi <= 1.0);
        // A relation that holds for every pair holds in every resample.
        let same = |idx: &[usize]| {
            idx.iter().filter(|&&i| pred[i] < actual[i]).count() as f64 / idx.len() as f64
        };
        assert_eq!(
            stationary_bootstrap_ci_indices(60, same, 0.9, 50, 4.0, 2),
            Some((1.0, 1.0))
        );
    }

    #[test]
    fn bad_arguments_give_none() {
        let x = [1.0, 2.0, 3.0];
        assert_eq!(stationary_bootstrap_ci(&[], mean, 0.9, 10, 1.0, 0), None);
        assert_eq!(stationary_bootstrap_ci(&x, mean, 0.9, 0, 1.0, 0), None);
        assert_eq!(stationary_bootstrap_ci(&x, mean, 1.0, 10, 1.0, 0), None);
        assert_eq!(
            stationary_bootstrap_ci(&x, mean, f64::NAN, 10, 1.0, 0),
            None
        );
        assert_eq!(stationary_bootstrap_ci(&x, mean, 0.9, 10, 0.5, 0), None);
        assert_eq!(
            stationary_bootstrap_ci(&x, mean, 0.9, 10, f64::INFINITY, 0),
            None
        );
        assert_eq!(
            stationary_bootstrap_ci(&x, |_| f64::NAN, 0.9, 10, 1.0, 0),
            None
        );
        assert_eq!(default_mean_block(0), 1.0);
        assert!((default_mean_block(1000) - 10.0).abs() < 1e-12);
    }
}
