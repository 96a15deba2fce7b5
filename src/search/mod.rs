//! Hyperparameter search: which trials to build next, as a pure function of the search's
//! config and the results of the trials already built, in the order they were proposed.
//! Nothing here builds, reads the store or knows the time: the same config and results give
//! the same proposals on every machine, at any `-j` (`usecase::search` builds the rounds).
//!
//! - `random`: every trial in one round, each drawn from its own random stream.
//! - `tpe`: rounds of `batch` trials; the first `startup` drawn at random, every later one by
//!   the Parzen estimator (`tpe`) from the results of all earlier rounds.
//! - `asha`: successive halving in rungs; rung 0 holds `trials` random configurations at
//!   the smallest budget, each later rung the best `1/reduction` of the one before at
//!   `reduction` times its budget, the last at the largest. A rung is promoted once it is
//!   complete (synchronously), which is what keeps the promotions independent of the order
//!   trainings finish in.

pub mod space;
pub mod tpe;

use serde_json::Value;

use crate::config::resolve::Trial;
use crate::config::search::{Direction, SearchConfig, SearchMethod};

/// A point of the space to build: a value per searched key (in the space's key order) and,
/// for ASHA, the budget.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub values: Vec<(String, Value)>,
    pub budget: Option<u64>,
    /// The ASHA rung (0 for the other methods).
    pub rung: usize,
}

/// A built trial and its objective (`None`: the trial has no finite objective, which ranks
/// it last).
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub candidate: Candidate,
    pub objective: Option<f64>,
}

impl Candidate {
    /// The trial that builds this candidate: its values set, named like a matrix point.
    pub fn trial(&self, spec: &SearchConfig) -> Trial {
        let mut values: Vec<(String, String)> = self
            .values
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect();
        let mut named: Vec<String> = self
            .values
            .iter()
            .map(|(k, v)| format!("{k}={}", space::text(v)))
            .collect();
        if let (Some(b), Some(asha)) = (self.budget, &spec.asha) {
            values.push((asha.budget.clone(), b.to_string()));
            named.push(format!("{}={b}", asha.budget));
        }
        Trial {
            suffix: format!("[{}]", named.join(",")),
            values,
        }
    }

    /// The same configuration, whatever its budget.
    fn same_configuration(&self, other: &Candidate) -> bool {
        self.values == other.values
    }
}

/// Ranks observations best first (ties by proposal order); trials without an objective last.
pub fn ranked(observations: &[Observation], direction: Direction) -> Vec<usize> {
    let score = |o: &Observation| match (o.objective, direction) {
        (Some(x), Direction::Minimize) if x.is_finite() => x,
        (Some(x), Direction::Maximize) if x.is_finite() => -x,
        _ => f64::INFINITY,
    };
    let mut order: Vec<usize> = (0..observations.len()).collect();
    order.sort_by(|&a, &b| {
        score(&observations[a])
            .total_cmp(&score(&observations[b]))
            .then(a.cmp(&b))
    });
    order
}

/// The rungs of an ASHA search: (budget, configurations) from the first to the last.
pub fn rungs(spec: &SearchConfig) -> Vec<(u64, usize)> {
    let Some(a) = &spec.asha else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let (mut budget, mut n) = (a.min, spec.trials);
    loop {
        if budget >= a.max {
            out.push((a.max, n));
            return out;
        }
        out.push((budget, n));
        budget = budget.saturating_mul(a.reduction);
        n = (n / a.reduction as usize).max(1);
    }
}

/// Tries to draw a configuration unlike every earlier one before a repeat is accepted (a
/// small discrete space may hold fewer configurations than trials).
const DISTINCT_TRIES: usize = 64;

/// The next round's candidates after `done` (every earlier round, in proposal order);
/// empty once the search is complete.
pub fn propose(spec: &SearchConfig, walk_forward: bool, done: &[Observation]) -> Vec<Candidate> {
    let direction = spec.direction(walk_forward);
    match spec.method {
        SearchMethod::Random => {
            if !done.is_empty() {
                return Vec::new();
            }
            let mut out: Vec<Candidate> = Vec::new();
            for trial in 0..spec.trials {
                if let Some(c) = distinct(spec, trial, &out, |rng| random_values(spec, rng)) {
                    out.push(c);
                }
            }
            out
        }
        SearchMethod::Tpe => {
            // Rounds are `batch` proposals each; a round's dropped repeats count as proposed.
            let proposed = rounds_proposed(done.len(), spec.batch(), spec.trials);
            if proposed >= spec.trials {
                return Vec::new();
            }
            let earlier: Vec<Candidate> = done.iter().map(|o| o.candidate.clone()).collect();
            let mut out: Vec<Candidate> = Vec::new();
            let end = (proposed + spec.batch()).min(spec.trials);
            for trial in proposed..end {
                let seen: Vec<Candidate> = earlier.iter().chain(&out).cloned().collect();
                let c = if trial < spec.startup() || done.is_empty() {
                    distinct(spec, trial, &seen, |rng| random_values(spec, rng))
                } else {
                    // When the model keeps proposing configurations already built (a small
                    // space, a sharp optimum), a random new one is worth more than a repeat.
                    distinct(spec, trial, &seen, |rng| {
                        tpe_values(spec, direction, done, rng)
                    })
                    .or_else(|| {
                        distinct_from(spec, trial, &seen, DISTINCT_TRIES, |rng| {
                            random_values(spec, rng)
                        })
                    })
                };
                match c {
                    Some(c) => out.push(c),
                    // Every configuration is built: proposing more would repeat one.
                    None => return out,
                }
            }
            out
        }
        SearchMethod::Asha => {
            let budgets: Vec<u64> = rungs(spec).iter().map(|(b, _)| *b).collect();
            for (k, &budget) in budgets.iter().enumerate() {
                if done.iter().any(|o| o.candidate.rung == k) {
                    continue;
                }
                if k == 0 {
                    let mut out: Vec<Candidate> = Vec::new();
                    for trial in 0..spec.trials {
                        if let Some(c) = distinct(spec, trial, &out, |rng| random_values(spec, rng))
                        {
                            out.push(c);
                        }
                    }
                    for c in &mut out {
                        c.budget = Some(budget);
                    }
                    return out;
                }
                // The best `1/reduction` of the rung before, at this rung's budget.
                let before: Vec<Observation> = done
                    .iter()
                    .filter(|o| o.candidate.rung == k - 1)
                    .cloned()
                    .collect();
                let reduction = spec.asha.as_ref().map_or(3, |a| a.reduction) as usize;
                let keep = (before.len() / reduction).max(1);
                return ranked(&before, direction)
                    .into_iter()
                    .take(keep)
                    .map(|i| Candidate {
                        values: before[i].candidate.values.clone(),
                        budget: Some(budget),
                        rung: k,
                    })
                    .collect();
            }
            Vec::new()
        }
    }
}

/// Trials proposed by rounds of `batch` once `built` of them exist (a round may have dropped
/// a repeat, so `built` can fall short of a whole number of rounds).
fn rounds_proposed(built: usize, batch: usize, trials: usize) -> usize {
    (built.div_ceil(batch) * batch).min(trials)
}

fn distinct(
    spec: &SearchConfig,
    trial: usize,
    seen: &[Candidate],
    draw: impl FnMut(&mut rand_chacha::ChaCha8Rng) -> Vec<(String, Value)>,
) -> Option<Candidate> {
    distinct_from(spec, trial, seen, 0, draw)
}

/// [`distinct`] drawing from the trial's streams `first..first + DISTINCT_TRIES`.
fn distinct_from(
    spec: &SearchConfig,
    trial: usize,
    seen: &[Candidate],
    first: usize,
    mut draw: impl FnMut(&mut rand_chacha::ChaCha8Rng) -> Vec<(String, Value)>,
) -> Option<Candidate> {
    for attempt in first..first + DISTINCT_TRIES {
        let mut rng = space::stream(spec.seed, trial, attempt as u64);
        let c = Candidate {
            values: draw(&mut rng),
            budget: None,
            rung: 0,
        };
        if !seen.iter().any(|s| s.same_configuration(&c)) {
            return Some(c);
        }
    }
    None
}

fn random_values(spec: &SearchConfig, rng: &mut rand_chacha::ChaCha8Rng) -> Vec<(String, Value)> {
    spec.space
        .iter()
        .map(|(k, d)| (k.clone(), d.draw(rng)))
        .collect()
}

fn tpe_values(
    spec: &SearchConfig,
    direction: Direction,
    done: &[Observation],
    rng: &mut rand_chacha::ChaCha8Rng,
) -> Vec<(String, Value)> {
    let order = ranked(done, direction);
    let good_n = tpe::good_count(done.len());
    let (good, bad) = order.split_at(good_n.min(order.len()));
    spec.space
        .iter()
        .map(|(k, d)| {
            let coords = |idx: &[usize]| -> Vec<f64> {
                idx.iter()
                    .filter_map(|&i| {
                        let v = done[i].candidate.values.iter().find(|(key, _)| key == k)?;
                        d.coordinate_of(&v.1)
                    })
                    .collect()
            };
            (
                k.clone(),
                tpe::propose_value(d, &coords(good), &coords(bad), rng),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests;
