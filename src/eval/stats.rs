//! Uncertainty of the headline figures (issue 17, part 4): the stationary block bootstrap,
//! the Sharpe ratio with its probabilistic and deflated versions, the Diebold-Mariano
//! test, and the probability of backtest overfitting of a sweep (`pbo`). Pure f64 functions of the test predictions, deterministic for a given seed; the
//! evaluate stage and `compare` call them. Reference values for the tests come from
//! `scripts/stats_reference.py` (numpy/scipy), committed in `tests/fixtures/stats/`.

mod bootstrap;
mod dist;
mod pbo;

pub use bootstrap::{default_mean_block, stationary_bootstrap_ci, stationary_bootstrap_ci_indices};
pub use dist::{normal_cdf, normal_quantile, student_t_cdf, student_t_sf};
pub use pbo::{MAX_BLOCKS, Pbo, block_groups, pbo_cscv};

/// The Euler-Mascheroni constant.
const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;

/// Mean / sample standard deviation (n - 1) of `returns` * sqrt(`periods_per_year`); 0 for
/// fewer than 2 returns or a constant series. The backtest's formula
/// (`BacktestStats::sharpe`); with `periods_per_year` = 1 it is the per-period ratio the
/// probabilistic and deflated Sharpe ratios take.
pub fn sharpe(returns: &[f64], periods_per_year: f64) -> f64 {
    if returns.len() < 2 {
        return 0.0;
    }
    let n = returns.len() as f64;
    let mean = returns.iter().sum::<f64>() / n;
    let var = returns.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1.0);
    if var > 0.0 {
        mean / var.sqrt() * periods_per_year.sqrt()
    } else {
        0.0
    }
}

/// The third and fourth standardized moments of a series, from population (1/n) central
/// moments, as the probabilistic Sharpe ratio uses them. `kurtosis` is not excess: 3 for a
/// normal distribution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Moments {
    pub skewness: f64,
    pub kurtosis: f64,
}

/// [`Moments`] of `x`; `None` for fewer than 2 values or a constant series.
pub fn moments(x: &[f64]) -> Option<Moments> {
    if x.len() < 2 {
        return None;
    }
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let central = |k: i32| x.iter().map(|v| (v - mean).powi(k)).sum::<f64>() / n;
    let m2 = central(2);
    if !(m2 > 0.0 && m2.is_finite()) {
        return None;
    }
    Some(Moments {
        skewness: central(3) / libm::pow(m2, 1.5),
        kurtosis: central(4) / (m2 * m2),
    })
}

/// Probabilistic Sharpe ratio (Bailey and López de Prado, 2012): the probability that the
/// true Sharpe ratio exceeds `benchmark_sr`, given the per-period (not annualised) Sharpe
/// ratio `sr` measured on `n` returns with skewness `skew` and (non-excess) kurtosis `kurt`:
///
/// Phi((sr - sr*) sqrt(n - 1) / sqrt(1 - skew sr + (kurt - 1) / 4 sr^2)).
///
/// `None` for n < 2, non-finite inputs or a non-positive variance term.
pub fn probabilistic_sharpe_ratio(
    sr: f64,
    n: usize,
    skew: f64,
    kurt: f64,
    benchmark_sr: f64,
) -> Option<f64> {
    if n < 2 || ![sr, skew, kurt, benchmark_sr].iter().all(|v| v.is_finite()) {
        return None;
    }
    let var = 1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr * sr;
    if var <= 0.0 {
        return None;
    }
    Some(normal_cdf(
        (sr - benchmark_sr) * ((n - 1) as f64).sqrt() / var.sqrt(),
    ))
}

/// [`probabilistic_sharpe_ratio`] of a series of per-period returns against `benchmark_sr`
/// (per period), with the series' own Sharpe ratio, length and moments.
pub fn probabilistic_sharpe_ratio_of(returns: &[f64], benchmark_sr: f64) -> Option<f64> {
    let m = moments(returns)?;
    probabilistic_sharpe_ratio(
        sharpe(returns, 1.0),
        returns.len(),
        m.skewness,
        m.kurtosis,
        benchmark_sr,
    )
}

/// The expected maximum of `trials` independent per-period Sharpe ratio estimates with true
/// value 0 and variance `var_of_trial_srs` (Bailey and López de Prado, 2014, via the
/// Euler-Mascheroni approximation):
///
/// sqrt(V) ((1 - gamma) Phi^-1(1 - 1/N) + gamma Phi^-1(1 - 1/(N e))).
///
/// 0 for a single trial (nothing was selected); `None` for 0 trials or a negative or
/// non-finite variance.
pub fn expected_max_sharpe(trials: usize, var_of_trial_srs: f64) -> Option<f64> {
    if trials == 0 || !(var_of_trial_srs.is_finite() && var_of_trial_srs >= 0.0) {
        return None;
    }
    if trials == 1 {
        return Some(0.0);
    }
    let n = trials as f64;
    Some(
        var_of_trial_srs.sqrt()
            * ((1.0 - EULER_GAMMA) * normal_quantile(1.0 - 1.0 / n)
                + EULER_GAMMA * normal_quantile(1.0 - 1.0 / (n * std::f64::consts::E))),
    )
}

/// Deflated Sharpe ratio (Bailey and López de Prado, 2014): the [`probabilistic_sharpe_ratio`]
/// of the selected strategy's per-period `sr` against the [`expected_max_sharpe`] of
/// `trials` trials whose per-period Sharpe ratios have variance `var_of_trial_srs`. `None`
/// where either is undefined.
pub fn deflated_sharpe_ratio(
    sr: f64,
    n: usize,
    skew: f64,
    kurt: f64,
    trials: usize,
    var_of_trial_srs: f64,
) -> Option<f64> {
    let benchmark = expected_max_sharpe(trials, var_of_trial_srs)?;
    probabilistic_sharpe_ratio(sr, n, skew, kurt, benchmark)
}

/// A Diebold-Mariano test's result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DmTest {
    /// The statistic with the Harvey-Leybourne-Newbold correction; negative when the first
    /// forecast's loss is lower.
    pub statistic: f64,
    /// Two-sided p-value from Student's t with n - 1 degrees of freedom.
    pub p_value: f64,
}

/// Diebold-Mariano (1995) test of equal predictive accuracy of two forecasts of
/// `horizon`-step-ahead targets, from their index-aligned losses (e.g. squared errors):
/// d = loss_a - loss_b; its long-run variance from the autocovariances up to lag
/// `horizon - 1` (rectangular weights, as in DM 1995); the statistic scaled by
/// sqrt((n + 1 - 2h + h(h - 1)/n) / n) (Harvey, Leybourne and Newbold, 1997) and compared to
/// Student's t with n - 1 degrees of freedom.
///
/// `None` when the lengths differ, n < 2, `horizon` is 0, a loss is not finite, the
/// variance estimate is not positive (identical losses, or negative with the rectangular
/// kernel), or the correction factor is not positive (horizon too long for n).
pub fn diebold_mariano(loss_a: &[f64], loss_b: &[f64], horizon: usize) -> Option<DmTest> {
    let n = loss_a.len();
    if n != loss_b.len() || n < 2 || horizon == 0 {
        return None;
    }
    let d: Vec<f64> = loss_a.iter().zip(loss_b).map(|(a, b)| a - b).collect();
    if !d.iter().all(|v| v.is_finite()) {
        return None;
    }
    let nf = n as f64;
    let mean = d.iter().sum::<f64>() / nf;
    let centred: Vec<f64> = d.iter().map(|v| v - mean).collect();
    let autocov = |k: usize| {
        centred[k..]
            .iter()
            .zip(&centred)
            .map(|(a, b)| a * b)
            .sum::<f64>()
            / nf
    };
    let lags = (horizon - 1).min(n - 1);
    let long_run = autocov(0) + 2.0 * (1..=lags).map(autocov).sum::<f64>();
    let var = long_run / nf;
    let h = horizon as f64;
    let correction = (nf + 1.0 - 2.0 * h + h * (h - 1.0) / nf) / nf;
    if !(var > 0.0 && correction > 0.0) {
        return None;
    }
    let statistic = mean / var.sqrt() * correction.sqrt();
    let p_value = (2.0 * student_t_sf(statistic.abs(), nf - 1.0)).min(1.0);
    Some(DmTest { statistic, p_value })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn fixture() -> (Value, Value) {
        let parse = |s: &str| serde_json::from_str::<Value>(s).unwrap();
        (
            parse(include_str!("../../tests/fixtures/stats/inputs.json")),
            parse(include_str!("../../tests/fixtures/stats/expected.json")),
        )
    }

    fn series(v: &Value) -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    }

    fn f(v: &Value) -> f64 {
        v.as_f64().unwrap()
    }

    fn assert_rel(got: f64, want: f64, what: &str) {
        let err = (got - want).abs() / want.abs();
        assert!(
            err <= 1e-9,
            "{what}: got {got:e}, want {want:e} (rel {err:e})"
        );
    }

    #[test]
    fn sharpe_and_moments_match_numpy() {
        let (inputs, e) = fixture();
        let r = series(&inputs["returns"]);
        assert_rel(sharpe(&r, 252.0), f(&e["sharpe_252"]), "sharpe 252");
        assert_rel(sharpe(&r, 1.0), f(&e["sharpe_per_period"]), "sharpe");
        let m = moments(&r).unwrap();
        assert_rel(m.skewness, f(&e["skewness"]), "skewness");
        assert_rel(m.kurtosis, f(&e["kurtosis"]), "kurtosis");
        assert_eq!(
            (sharpe(&[0.1], 252.0), sharpe(&[0.1, 0.1], 252.0)),
            (0.0, 0.0)
        );
        assert_eq!((moments(&[1.0]), moments(&[2.0, 2.0])), (None, None));
    }

    #[test]
    fn sharpe_is_the_backtests_sharpe() {
        let (inputs, _) = fixture();
        let r = series(&inputs["returns"]);
        let held = vec![1.0; r.len()];
        let stats = super::super::backtest(&held, &r, 0.0, 252.0);
        let (bars, _) = super::super::bar_returns(&held, &r, 0.0);
        assert_eq!(stats.sharpe, sharpe(&bars, 252.0));
    }

    #[test]
    fn psr_and_dsr_match_the_reference() {
        let (inputs, e) = fixture();
        for c in e["psr"].as_array().unwrap() {
            let n = c["n"].as_u64().unwrap() as usize;
            let got = probabilistic_sharpe_ratio(
                f(&c["sr"]),
                n,
                f(&c["skew"]),
                f(&c["kurt"]),
                f(&c["bench"]),
            );
            assert_rel(got.unwrap(), f(&c["value"]), "psr");
        }
        let r = series(&inputs["returns"]);
        let first = &e["psr"][0];
        assert_rel(
            probabilistic_sharpe_ratio_of(&r, 0.0).unwrap(),
            f(&first["value"]),
            "psr of",
        );
        for c in e["dsr"].as_array().unwrap() {
            let n = c["n"].as_u64().unwrap() as usize;
            let trials = c["trials"].as_u64().unwrap() as usize;
            let sr0 = expected_max_sharpe(trials, f(&c["var"])).unwrap();
            assert_rel(sr0, f(&c["sr0"]), "expected max sr");
            let got = deflated_sharpe_ratio(
                f(&c["sr"]),
                n,
                f(&c["skew"]),
                f(&c["kurt"]),
                trials,
                f(&c["var"]),
            );
            assert_rel(got.unwrap(), f(&c["value"]), "dsr");
        }
    }

    #[test]
    fn psr_and_dsr_edge_cases() {
        assert_eq!(probabilistic_sharpe_ratio(0.1, 1, 0.0, 3.0, 0.0), None);
        assert_eq!(
            probabilistic_sharpe_ratio(f64::NAN, 10, 0.0, 3.0, 0.0),
            None
        );
        // A variance term <= 0 (extreme skew) has no normal approximation.
        assert_eq!(probabilistic_sharpe_ratio(1.0, 10, 5.0, 3.0, 0.0), None);
        assert_eq!(
            probabilistic_sharpe_ratio(0.0, 10, 0.0, 3.0, 0.0),
            Some(0.5)
        );
        assert_eq!(expected_max_sharpe(0, 0.1), None);
        assert_eq!(expected_max_sharpe(5, -0.1), None);
        assert_eq!(expected_max_sharpe(1, 0.1), Some(0.0));
        // One trial: the deflated ratio is the probabilistic ratio against zero.
        assert_eq!(
            deflated_sharpe_ratio(0.1, 100, -0.2, 4.0, 1, 0.3),
            probabilistic_sharpe_ratio(0.1, 100, -0.2, 4.0, 0.0)
        );
        // More trials raise the bar.
        let dsr = |trials| deflated_sharpe_ratio(0.1, 250, 0.0, 3.0, trials, 0.004).unwrap();
        assert!(dsr(100) < dsr(10) && dsr(10) < dsr(2));
    }

    #[test]
    fn diebold_mariano_matches_the_reference() {
        let (inputs, e) = fixture();
        let (a, b) = (series(&inputs["loss_a"]), series(&inputs["loss_b"]));
        for c in e["dm"].as_array().unwrap() {
            let h = c["horizon"].as_u64().unwrap() as usize;
            let dm = diebold_mariano(&a, &b, h).unwrap();
            assert_rel(dm.statistic, f(&c["statistic"]), &format!("dm h={h}"));
            assert_rel(dm.p_value, f(&c["p_value"]), &format!("dm p h={h}"));
        }
        // Swapping the forecasts flips the sign, not the p-value.
        let ab = diebold_mariano(&a, &b, 2).unwrap();
        let ba = diebold_mariano(&b, &a, 2).unwrap();
        assert_eq!((ab.statistic, ab.p_value), (-ba.statistic, ba.p_value));
    }

    #[test]
    fn diebold_mariano_rejects_what_it_cannot_test() {
        let a = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(diebold_mariano(&a, &a[..3], 1), None);
        assert_eq!(diebold_mariano(&a[..1], &a[..1], 1), None);
        assert_eq!(diebold_mariano(&a, &a, 0), None);
        // Identical losses: no variance.
        assert_eq!(diebold_mariano(&a, &a, 1), None);
        assert_eq!(diebold_mariano(&a, &[0.0, 0.0, f64::NAN, 0.0], 1), None);
        // A horizon too long for the sample makes the correction factor negative.
        assert_eq!(diebold_mariano(&a, &[0.5, 0.1, 0.9, 0.2], 4), None);
    }
}
