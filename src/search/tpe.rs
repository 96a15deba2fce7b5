//! The tree-structured Parzen estimator (Bergstra et al. 2011), univariate as Optuna's
//! default sampler is: the finished trials are split into the best `gamma(n)` and the rest,
//! each key's values in either group become a Parzen density (a Gaussian per value plus a
//! prior over the whole domain, Optuna's bandwidths and "magic clip"), and of 24 draws from
//! the good density the one with the highest ratio good / bad is proposed.

use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use super::space::{Coordinates, normal, unit};
use crate::config::search::Domain;

/// Draws from the good density per proposal (Optuna's `n_ei_candidates`).
const CANDIDATES: usize = 24;

/// How many of `n` finished trials count as good: 10%, at least 1, at most 25 (Optuna's).
pub fn good_count(n: usize) -> usize {
    n.div_ceil(10).clamp(1, 25)
}

/// A Parzen density over one interval: Gaussians truncated to it.
struct Parzen {
    low: f64,
    high: f64,
    mus: Vec<f64>,
    sigmas: Vec<f64>,
    weights: Vec<f64>,
}

impl Parzen {
    /// The density of `points` with a prior centred on the interval (weight 1, as Optuna's).
    fn new(points: &[f64], low: f64, high: f64) -> Parzen {
        let width = high - low;
        let mut mus: Vec<f64> = points.to_vec();
        mus.push(0.5 * (low + high));
        let mut order: Vec<usize> = (0..mus.len()).collect();
        order.sort_by(|&a, &b| mus[a].total_cmp(&mus[b]).then(a.cmp(&b)));
        let sorted: Vec<f64> = order.iter().map(|&i| mus[i]).collect();
        // Each point's bandwidth: the larger gap to its neighbours (the interval's ends
        // beyond the first and last), clipped to [width / min(100, 1 + n), width].
        let min_sigma = width / (100f64).min(1.0 + mus.len() as f64);
        let mut sigmas = vec![0.0; mus.len()];
        for (rank, &i) in order.iter().enumerate() {
            let left = if rank == 0 {
                sorted[0] - low
            } else {
                sorted[rank] - sorted[rank - 1]
            };
            let right = if rank + 1 == sorted.len() {
                high - sorted[rank]
            } else {
                sorted[rank + 1] - sorted[rank]
            };
            sigmas[i] = left.max(right).clamp(min_sigma, width);
        }
        // The prior spans the whole interval.
        let prior = mus.len() - 1;
        sigmas[prior] = width;
        let weights = vec![1.0 / mus.len() as f64; mus.len()];
        Parzen {
            low,
            high,
            mus,
            sigmas,
            weights,
        }
    }

    fn draw(&self, rng: &mut ChaCha8Rng) -> f64 {
        let pick = unit(rng);
        let mut acc = 0.0;
        let mut k = self.weights.len() - 1;
        for (i, w) in self.weights.iter().enumerate() {
            acc += w;
            if pick < acc {
                k = i;
                break;
            }
        }
        // Rejection from the truncated Gaussian; the interval holds at least a few percent
        // of it (sigma <= width), so this ends quickly; the clamp is a guard only.
        for _ in 0..256 {
            let x = self.mus[k] + self.sigmas[k] * normal(rng);
            if (self.low..=self.high).contains(&x) {
                return x;
            }
        }
        self.mus[k].clamp(self.low, self.high)
    }

    fn log_density(&self, x: f64) -> f64 {
        let mut total = 0.0;
        for ((mu, sigma), w) in self.mus.iter().zip(&self.sigmas).zip(&self.weights) {
            let z = (x - mu) / sigma;
            let mass = phi((self.high - mu) / sigma) - phi((self.low - mu) / sigma);
            let pdf = libm::exp(-0.5 * z * z) / (sigma * (2.0 * std::f64::consts::PI).sqrt());
            total += w * pdf / mass.max(1e-300);
        }
        libm::log(total.max(1e-300))
    }
}

/// The standard normal's distribution function.
fn phi(z: f64) -> f64 {
    0.5 * (1.0 + libm::erf(z / std::f64::consts::SQRT_2))
}

/// Categorical densities: each choice's count among the points plus a uniform prior of
/// weight 1.
fn categorical(points: &[f64], n: usize) -> Vec<f64> {
    let mut w = vec![1.0 / n as f64; n];
    for &p in points {
        if let Some(slot) = w.get_mut(p as usize) {
            *slot += 1.0;
        }
    }
    let sum: f64 = w.iter().sum();
    w.iter().map(|x| x / sum).collect()
}

/// One key's proposal given its coordinates in the good and the bad trials.
pub fn propose_value(domain: &Domain, good: &[f64], bad: &[f64], rng: &mut ChaCha8Rng) -> Value {
    match domain.coordinates() {
        Coordinates::Interval { low, high } => {
            let l = Parzen::new(good, low, high);
            let g = Parzen::new(bad, low, high);
            let mut best: Option<(f64, f64)> = None;
            for _ in 0..CANDIDATES {
                let x = l.draw(rng);
                let score = l.log_density(x) - g.log_density(x);
                if best.is_none_or(|(s, _)| score > s) {
                    best = Some((score, x));
                }
            }
            domain.value_at(best.map_or(0.5 * (low + high), |(_, x)| x))
        }
        Coordinates::Choices(n) => {
            let l = categorical(good, n);
            let g = categorical(bad, n);
            let mut best: Option<(f64, usize)> = None;
            for _ in 0..CANDIDATES {
                let pick = unit(rng);
                let mut acc = 0.0;
                let mut c = n - 1;
                for (i, w) in l.iter().enumerate() {
                    acc += w;
                    if pick < acc {
                        c = i;
                        break;
                    }
                }
                let score = libm::log(l[c]) - libm::log(g[c]);
                if best.is_none_or(|(s, _)| score > s) {
                    best = Some((score, c));
                }
            }
            domain.value_at(best.map_or(0, |(_, c)| c) as f64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::space::stream;
    use super::*;

    #[test]
    fn proposals_move_towards_the_good_trials() {
        // Good trials near 0.8, bad ones spread out: most proposals land near 0.8.
        let domain = Domain::Uniform([0.0, 1.0]);
        let good = [0.78, 0.8, 0.82];
        let bad = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.95, 0.05, 0.15, 0.25];
        let near = (0..50)
            .filter(|&t| {
                let x = propose_value(&domain, &good, &bad, &mut stream(3, t, 1));
                (x.as_f64().unwrap() - 0.8).abs() < 0.15
            })
            .count();
        assert!(near >= 40, "{near} of 50 near the good trials");
    }

    #[test]
    fn categorical_proposals_prefer_the_good_choice() {
        let domain = Domain::Choice(vec![Value::from("a"), Value::from("b"), Value::from("c")]);
        let picks: Vec<Value> = (0..20)
            .map(|t| {
                propose_value(
                    &domain,
                    &[1.0, 1.0],
                    &[0.0, 2.0, 0.0, 2.0],
                    &mut stream(1, t, 1),
                )
            })
            .collect();
        let b = picks.iter().filter(|v| *v == "b").count();
        assert!(b >= 18, "{picks:?}");
        assert_eq!(good_count(5), 1);
        assert_eq!(good_count(40), 4);
        assert_eq!(good_count(1000), 25);
    }
}
