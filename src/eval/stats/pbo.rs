//! The Probability of Backtest Overfitting (Bailey, Borwein, López de Prado and Zhu, 2017)
//! by combinatorially symmetric cross-validation (CSCV): of N trials (a sweep) whose returns
//! are cut into S time blocks aligned across trials, every half of the blocks is in turn the
//! in-sample set and the other half the out-of-sample set; the trial with the best in-sample
//! Sharpe ratio is "selected", and the PBO is the share of splits in which it ranks at or
//! below the median out of sample. Near 0: the selection carries over; near 0.5 or above:
//! picking the best of the sweep is picking noise.
//!
//! Deterministic: combinations are enumerated in lexicographic order, ties resolved by a
//! fixed rule, and nothing is sampled.

/// Most blocks CSCV splits: C(16, 8) = 12,870 splits, the paper's suggested S. More blocks
/// are grouped into this many runs of adjacent blocks.
pub const MAX_BLOCKS: usize = 16;

/// What CSCV found.
#[derive(Debug, Clone, PartialEq)]
pub struct Pbo {
    /// Share of splits whose in-sample best trial has an out-of-sample logit <= 0 (it ranks
    /// at or below the median of the trials out of sample).
    pub pbo: f64,
    pub trials: usize,
    /// Blocks the splits are made of, after an odd count lost its first block and a count
    /// over [`MAX_BLOCKS`] was grouped.
    pub blocks: usize,
    /// Splits evaluated: C(blocks, blocks / 2).
    pub combinations: usize,
    /// Per split, in lexicographic order of the in-sample block sets: the logit
    /// ln(w / (1 - w)) of the selected trial's out-of-sample relative rank w = rank / (N + 1)
    /// (rank 1 the worst, N the best, ties averaged).
    pub logits: Vec<f64>,
    /// Least-squares slope of the selected trial's out-of-sample Sharpe ratio on its
    /// in-sample one, across splits (the paper's performance degradation: below 0, a better
    /// in-sample figure predicts a worse one out of sample). `None` when the in-sample
    /// figures do not vary.
    pub degradation_slope: Option<f64>,
    /// Share of splits whose selected trial has a negative out-of-sample Sharpe ratio.
    pub probability_of_loss: f64,
}

/// Count, mean and sum of squared deviations of a run of returns: what a Sharpe ratio of a
/// union of blocks needs, combined exactly (Chan, Golub and LeVeque's pairwise update).
#[derive(Debug, Clone, Copy, Default)]
struct Moments {
    n: f64,
    mean: f64,
    m2: f64,
}

impl Moments {
    fn of(x: &[f64]) -> Moments {
        if x.is_empty() {
            return Moments::default();
        }
        let n = x.len() as f64;
        let mean = x.iter().sum::<f64>() / n;
        let m2 = x.iter().map(|v| (v - mean) * (v - mean)).sum();
        Moments { n, mean, m2 }
    }

    fn add(self, o: Moments) -> Moments {
        if o.n == 0.0 {
            return self;
        }
        if self.n == 0.0 {
            return o;
        }
        let n = self.n + o.n;
        let delta = o.mean - self.mean;
        Moments {
            n,
            mean: self.mean + delta * o.n / n,
            m2: self.m2 + o.m2 + delta * delta * self.n * o.n / n,
        }
    }

    /// Per-period Sharpe ratio (sample standard deviation), 0 as `stats::sharpe` gives for
    /// fewer than 2 returns or no variance.
    fn sharpe(self) -> f64 {
        if self.n < 2.0 {
            return 0.0;
        }
        let var = self.m2 / (self.n - 1.0);
        if var > 0.0 {
            self.mean / var.sqrt()
        } else {
            0.0
        }
    }
}

/// The blocks CSCV splits, from `s` given ones: an odd count drops its first (oldest) block
/// so that in-sample and out-of-sample halves are the same size (the symmetry the method
/// rests on: every in-sample set's complement is another split's in-sample set); a count
/// over [`MAX_BLOCKS`] is grouped into that many runs of adjacent blocks, run g holding
/// blocks `g s / 16 .. (g + 1) s / 16`. Returns, per used block, the given blocks it holds.
pub fn block_groups(s: usize) -> Vec<std::ops::Range<usize>> {
    let first = s % 2;
    let s_even = s - first;
    if s_even <= MAX_BLOCKS {
        return (first..s).map(|b| b..b + 1).collect();
    }
    (0..MAX_BLOCKS)
        .map(|g| first + g * s_even / MAX_BLOCKS..first + (g + 1) * s_even / MAX_BLOCKS)
        .collect()
}

/// PBO by CSCV of `returns[trial][block]`, each block a trial's per-period returns over one
/// time block (blocks in time order and aligned across trials; lengths may differ between
/// blocks). Blocks are prepared by [`block_groups`]. `None` for fewer than 2 trials, fewer
/// than 2 blocks (after dropping), trials with different block counts, or a non-finite
/// return.
pub fn pbo_cscv(returns: &[Vec<Vec<f64>>]) -> Option<Pbo> {
    let trials = returns.len();
    let s = returns.first()?.len();
    if trials < 2 || returns.iter().any(|t| t.len() != s) {
        return None;
    }
    if returns.iter().flatten().flatten().any(|r| !r.is_finite()) {
        return None;
    }
    let groups = block_groups(s);
    let blocks = groups.len();
    if blocks < 2 {
        return None;
    }
    // stats[trial][block]
    let stats: Vec<Vec<Moments>> = returns
        .iter()
        .map(|t| {
            groups
                .iter()
                .map(|g| {
                    t[g.clone()]
                        .iter()
                        .fold(Moments::default(), |acc, b| acc.add(Moments::of(b)))
                })
                .collect()
        })
        .collect();
    let half = blocks / 2;
    let mut logits = Vec::new();
    let (mut selected_is, mut selected_oos) = (Vec::new(), Vec::new());
    let mut in_sample = vec![false; blocks];
    let mut combination: Vec<usize> = (0..half).collect();
    loop {
        in_sample.iter_mut().for_each(|b| *b = false);
        combination.iter().for_each(|&b| in_sample[b] = true);
        let sharpe_over = |t: &[Moments], side: bool| {
            t.iter()
                .zip(&in_sample)
                .filter(|(_, is)| **is == side)
                .fold(Moments::default(), |acc, (m, _)| acc.add(*m))
                .sharpe()
        };
        let is: Vec<f64> = stats.iter().map(|t| sharpe_over(t, true)).collect();
        let oos: Vec<f64> = stats.iter().map(|t| sharpe_over(t, false)).collect();
        // The first of equally good trials is the one selected.
        let best = (1..trials).fold(0, |b, j| if is[j] > is[b] { j } else { b });
        let below = oos.iter().filter(|&&v| v < oos[best]).count() as f64;
        let tied = oos.iter().filter(|&&v| v == oos[best]).count() as f64 - 1.0;
        let rank = 1.0 + below + tied / 2.0;
        let w = rank / (trials as f64 + 1.0);
        logits.push(libm::log(w / (1.0 - w)));
        selected_is.push(is[best]);
        selected_oos.push(oos[best]);
        if !next_combination(&mut combination, blocks) {
            break;
        }
    }
    let c = logits.len() as f64;
    Some(Pbo {
        pbo: logits.iter().filter(|&&l| l <= 0.0).count() as f64 / c,
        trials,
        blocks,
        combinations: logits.len(),
        degradation_slope: slope(&selected_is, &selected_oos),
        probability_of_loss: selected_oos.iter().filter(|&&v| v < 0.0).count() as f64 / c,
        logits,
    })
}

/// Advances `c` (a strictly increasing choice from 0..n) to the next combination in
/// lexicographic order; false after the last one.
fn next_combination(c: &mut [usize], n: usize) -> bool {
    let k = c.len();
    let Some(i) = (0..k).rev().find(|&i| c[i] < n - k + i) else {
        return false;
    };
    c[i] += 1;
    for j in i + 1..k {
        c[j] = c[j - 1] + 1;
    }
    true
}

/// Least-squares slope of `y` on `x`; `None` when `x` does not vary.
fn slope(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let sxx: f64 = x.iter().map(|a| (a - mx) * (a - mx)).sum();
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn fixture() -> (Value, Value) {
        let parse = |s: &str| serde_json::from_str::<Value>(s).unwrap();
        (
            parse(include_str!("../../../tests/fixtures/stats/inputs.json")),
            parse(include_str!("../../../tests/fixtures/stats/expected.json")),
        )
    }

    fn matrix(v: &Value) -> Vec<Vec<Vec<f64>>> {
        serde_json::from_value(v.clone()).unwrap()
    }

    #[test]
    fn pbo_matches_the_reference() {
        let (inputs, expected) = fixture();
        for (name, want) in expected["pbo"].as_object().unwrap() {
            let got = pbo_cscv(&matrix(&inputs["pbo"][name])).unwrap();
            let count = |k: &str| want[k].as_u64().unwrap() as usize;
            assert_eq!(
                (got.trials, got.blocks, got.combinations),
                (count("trials"), count("blocks"), count("combinations")),
                "{name}"
            );
            assert_eq!(got.pbo, want["pbo"].as_f64().unwrap(), "{name}");
            assert_eq!(got.logits.len(), got.combinations);
            // The fixture lists each logit for the small cases only.
            if let Some(logits) = want["logits"].as_array() {
                assert_eq!(got.logits.len(), logits.len());
                for (g, w) in got.logits.iter().zip(logits) {
                    let w = w.as_f64().unwrap();
                    assert!((g - w).abs() < 1e-12, "{name}: logit {g} vs {w}");
                }
            }
            let (p, s) = (
                want["probability_of_loss"].as_f64().unwrap(),
                want["degradation_slope"].as_f64().unwrap(),
            );
            assert_eq!(got.probability_of_loss, p, "{name}");
            let slope = got.degradation_slope.unwrap();
            assert!(
                (slope - s).abs() <= 1e-9 * s.abs().max(1.0),
                "{name}: {slope} vs {s}"
            );
        }
        // What the cases were made to show.
        let pbo = |name: &str| expected["pbo"][name]["pbo"].as_f64().unwrap();
        assert!(
            (0.3..=0.7).contains(&pbo("no_skill")),
            "{}",
            pbo("no_skill")
        );
        assert!(pbo("one_skilled") < 0.05, "{}", pbo("one_skilled"));
    }

    #[test]
    fn blocks_are_made_even_and_at_most_sixteen() {
        assert_eq!(block_groups(4), vec![0..1, 1..2, 2..3, 3..4]);
        // Odd: the oldest block goes.
        assert_eq!(block_groups(5), vec![1..2, 2..3, 3..4, 4..5]);
        assert!(block_groups(1).is_empty());
        let g = block_groups(33);
        assert_eq!(g.len(), MAX_BLOCKS);
        assert_eq!((g[0].start, g[15].end), (1, 33));
        assert!(g.windows(2).all(|w| w[0].end == w[1].start));
        assert_eq!(g.iter().map(|r| r.len()).sum::<usize>(), 32);
    }

    #[test]
    fn combinations_are_enumerated_once_in_order() {
        let mut c = vec![0, 1];
        let mut seen = vec![c.clone()];
        while next_combination(&mut c, 4) {
            seen.push(c.clone());
        }
        assert_eq!(
            seen,
            [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]].map(|a| a.to_vec())
        );
    }

    #[test]
    fn what_cscv_cannot_split_is_none() {
        let block = |x: f64| vec![x, x + 1.0, x - 0.5];
        let trial = |k: usize| (0..k).map(|b| block(b as f64)).collect::<Vec<_>>();
        assert_eq!(pbo_cscv(&[]), None);
        assert_eq!(pbo_cscv(&[trial(4)]), None, "one trial");
        assert_eq!(pbo_cscv(&[trial(1), trial(1)]), None, "one block");
        assert_eq!(pbo_cscv(&[trial(4), trial(3)]), None, "misaligned");
        let mut bad = trial(4);
        bad[2][1] = f64::NAN;
        assert_eq!(pbo_cscv(&[trial(4), bad]), None);
        // Two blocks: two splits.
        let two = pbo_cscv(&[trial(2), trial(2)]).unwrap();
        assert_eq!((two.blocks, two.combinations), (2, 2));
    }

    #[test]
    fn identical_trials_tie_at_the_median() {
        // Every trial the same: the selected one ranks in the middle, logit 0, PBO 1.
        let t: Vec<Vec<f64>> = (0..6)
            .map(|b| vec![0.01 * b as f64, -0.002, 0.003])
            .collect();
        let p = pbo_cscv(&[t.clone(), t.clone(), t.clone()]).unwrap();
        assert_eq!(p.combinations, 20);
        assert!(p.logits.iter().all(|&l| l == 0.0), "{:?}", p.logits);
        assert_eq!(p.pbo, 1.0);
        // Nothing is sampled: the same input gives the same answer.
        assert_eq!(p, pbo_cscv(&[t.clone(), t.clone(), t]).unwrap());
    }
}
