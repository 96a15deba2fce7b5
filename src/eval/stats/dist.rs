//! The distribution functions the tests of `stats` need (normal CDF and quantile, Student t
//! CDF), written out so that no statistics crate is needed. Separate because they are
//! numerical special functions, checked on their own against scipy.

use std::f64::consts::PI;

/// Continued fractions and series stop when a term changes the result by less than this.
const EPS: f64 = 1e-16;
/// Iteration cap of the series and continued fractions (they converge in far fewer steps for
/// the arguments used here; the cap only guards against a loop on odd input).
const MAX_ITER: usize = 1000;
/// Smallest magnitude the modified Lentz algorithm lets a denominator take.
const TINY: f64 = 1e-300;

/// ln Gamma(x) for x > 0: Lanczos approximation (g = 7, 9 terms, about 1e-15 relative),
/// with the reflection formula below 1/2.
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const P: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        return libm::log(PI / libm::sin(PI * x)) - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = P[0];
    for (i, p) in P.iter().enumerate().skip(1) {
        a += p / (x + i as f64);
    }
    let t = x + G + 0.5;
    0.5 * libm::log(2.0 * PI) + (x + 0.5) * libm::log(t) - t + libm::log(a)
}

/// Regularized upper incomplete gamma Q(a, x) = Gamma(a, x) / Gamma(a), a > 0, x >= 0:
/// the power series of P below x = a + 1, Lentz's continued fraction above (which keeps the
/// relative accuracy of small upper tails).
fn gamma_q(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let log_front = a * libm::log(x) - x - ln_gamma(a);
    if x < a + 1.0 {
        let (mut term, mut sum, mut ap) = (1.0 / a, 1.0 / a, a);
        for _ in 0..MAX_ITER {
            ap += 1.0;
            term *= x / ap;
            sum += term;
            if term.abs() < sum.abs() * EPS {
                break;
            }
        }
        1.0 - sum * libm::exp(log_front)
    } else {
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / TINY;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..MAX_ITER {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < TINY {
                d = TINY;
            }
            c = b + an / c;
            if c.abs() < TINY {
                c = TINY;
            }
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if (delta - 1.0).abs() < EPS {
                break;
            }
        }
        libm::exp(log_front) * h
    }
}

/// Standard normal CDF, accurate to about 1e-15 relative in both tails
/// (Phi(x) = Q(1/2, x^2/2) / 2 for x <= 0).
pub fn normal_cdf(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x.is_infinite() {
        return if x > 0.0 { 1.0 } else { 0.0 };
    }
    let tail = 0.5 * gamma_q(0.5, 0.5 * x * x);
    if x <= 0.0 { tail } else { 1.0 - tail }
}

/// Standard normal quantile: Acklam's rational approximation (1.2e-9 relative) polished by
/// two Halley steps on the accurate CDF (the upper half works on 1 - p, which is exact, so
/// quantiles near 1 keep their accuracy). NaN outside (0, 1); +-inf at 0 and 1.
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_671_348_283_239,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    const P_LOW: f64 = 0.02425;
    if !(0.0..=1.0).contains(&p) || p.is_nan() {
        return f64::NAN;
    }
    if p == 0.0 {
        return f64::NEG_INFINITY;
    }
    if p == 1.0 {
        return f64::INFINITY;
    }
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    let mut x = if p < P_LOW {
        tail((-2.0 * libm::log(p)).sqrt())
    } else if p <= 1.0 - P_LOW {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -tail((-2.0 * libm::log(1.0 - p)).sqrt())
    };
    for _ in 0..2 {
        // Phi(x) - p, computed on the side where it does not cancel.
        let e = if p < 0.5 {
            normal_cdf(x) - p
        } else {
            (1.0 - p) - normal_cdf(-x)
        };
        let u = e * (2.0 * PI).sqrt() * libm::exp(0.5 * x * x);
        x -= u / (1.0 + 0.5 * x * u);
    }
    x
}

/// Regularized incomplete beta I_x(a, b), given x and y = 1 - x separately (so callers can
/// pass an exact 1 - x): Lentz's continued fraction on the side where it converges fast.
fn inc_beta(a: f64, b: f64, x: f64, y: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if y <= 0.0 {
        return 1.0;
    }
    let log_front =
        ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * libm::log(x) + b * libm::log(y);
    if x < (a + 1.0) / (a + b + 2.0) {
        libm::exp(log_front) * beta_fraction(a, b, x) / a
    } else {
        1.0 - libm::exp(log_front) * beta_fraction(b, a, y) / b
    }
}

/// The continued fraction of the incomplete beta function (Numerical Recipes' `betacf`).
fn beta_fraction(a: f64, b: f64, x: f64) -> f64 {
    let clamp = |v: f64| if v.abs() < TINY { TINY } else { v };
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 / clamp(1.0 - qab * x / qap);
    let mut h = d;
    for m in 1..MAX_ITER {
        let m = m as f64;
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 / clamp(1.0 + aa * d);
        c = clamp(1.0 + aa / c);
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 / clamp(1.0 + aa * d);
        c = clamp(1.0 + aa / c);
        let delta = d * c;
        h *= delta;
        if (delta - 1.0).abs() < EPS {
            break;
        }
    }
    h
}

/// P(T > t) for Student's t with `df` > 0 degrees of freedom (the upper tail, computed
/// directly so small p-values keep their relative accuracy). NaN for df <= 0 or NaN input.
pub fn student_t_sf(t: f64, df: f64) -> f64 {
    if t.is_nan() || df.is_nan() || df <= 0.0 {
        return f64::NAN;
    }
    if t.is_infinite() {
        return if t > 0.0 { 0.0 } else { 1.0 };
    }
    // I_x(df/2, 1/2) with x = df / (df + t^2) is twice the tail beyond |t|.
    let t2 = t * t;
    let (x, y) = if t2 < df {
        let y = t2 / (df + t2);
        (1.0 - y, y)
    } else {
        let x = df / (df + t2);
        (x, 1.0 - x)
    };
    let tail = 0.5 * inc_beta(0.5 * df, 0.5, x, y);
    if t > 0.0 { tail } else { 1.0 - tail }
}

/// P(T <= t) for Student's t with `df` > 0 degrees of freedom.
pub fn student_t_cdf(t: f64, df: f64) -> f64 {
    student_t_sf(-t, df)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expected() -> serde_json::Value {
        serde_json::from_str(include_str!("../../../tests/fixtures/stats/expected.json")).unwrap()
    }

    fn assert_rel(got: f64, want: f64, tol: f64, what: &str) {
        let err = (got - want).abs() / want.abs().max(1e-300);
        assert!(
            err <= tol || got == want,
            "{what}: got {got:e}, want {want:e} (rel {err:e})"
        );
    }

    #[test]
    fn student_t_matches_scipy() {
        let e = expected();
        for case in e["t_cdf"].as_array().unwrap() {
            let (t, df) = (case["t"].as_f64().unwrap(), case["df"].as_f64().unwrap());
            let what = format!("t={t} df={df}");
            assert_rel(
                student_t_cdf(t, df),
                case["cdf"].as_f64().unwrap(),
                1e-10,
                &what,
            );
            assert_rel(
                student_t_sf(t, df),
                case["sf"].as_f64().unwrap(),
                1e-10,
                &what,
            );
        }
    }

    #[test]
    fn normal_cdf_and_quantile_match_scipy() {
        let e = expected();
        for case in e["normal_cdf"].as_array().unwrap() {
            let x = case["x"].as_f64().unwrap();
            assert_rel(
                normal_cdf(x),
                case["cdf"].as_f64().unwrap(),
                1e-10,
                &format!("x={x}"),
            );
        }
        for case in e["normal_quantile"].as_array().unwrap() {
            let p = case["p"].as_f64().unwrap();
            let want = case["x"].as_f64().unwrap();
            // At p = 0.5 the quantile is 0: compare absolutely there.
            if want == 0.0 {
                assert!(normal_quantile(p).abs() < 1e-15);
            } else {
                assert_rel(normal_quantile(p), want, 1e-10, &format!("p={p}"));
            }
        }
    }

    #[test]
    fn edge_cases_do_not_panic() {
        assert!(normal_quantile(-0.1).is_nan() && normal_quantile(f64::NAN).is_nan());
        assert_eq!(normal_quantile(0.0), f64::NEG_INFINITY);
        assert_eq!(normal_quantile(1.0), f64::INFINITY);
        assert!(normal_cdf(f64::NAN).is_nan());
        assert_eq!(
            (normal_cdf(f64::INFINITY), normal_cdf(f64::NEG_INFINITY)),
            (1.0, 0.0)
        );
        assert!(student_t_cdf(1.0, 0.0).is_nan() && student_t_cdf(f64::NAN, 3.0).is_nan());
        assert_eq!(student_t_sf(f64::INFINITY, 3.0), 0.0);
        assert_rel(ln_gamma(0.5), 0.5 * libm::log(PI), 1e-14, "lnGamma(1/2)");
        assert_rel(ln_gamma(10.0), libm::log(362_880f64), 1e-14, "lnGamma(10)");
    }
}
