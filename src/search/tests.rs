use super::*;
use crate::config::search::{AshaConfig, Domain};
use std::collections::BTreeMap;

fn spec(method: SearchMethod, trials: usize) -> SearchConfig {
    SearchConfig {
        method,
        trials,
        seed: 11,
        batch: None,
        startup: None,
        objective: None,
        direction: None,
        space: BTreeMap::from([
            (
                "model.hidden_size".to_string(),
                Domain::Choice(vec![16.into(), 32.into(), 64.into()]),
            ),
            ("optimizer.lr".to_string(), Domain::LogUniform([1e-4, 1e-1])),
        ]),
        asha: None,
    }
}

/// A smooth objective with its minimum at lr = 0.01, hidden_size = 32.
fn objective(c: &Candidate) -> f64 {
    let value = |key: &str, default: f64| {
        c.values
            .iter()
            .find(|(k, _)| k == key)
            .map_or(default, |(_, v)| v.as_f64().unwrap())
    };
    let (lr, h) = (
        value("optimizer.lr", 0.01),
        value("model.hidden_size", 32.0),
    );
    let budget = c.budget.unwrap_or(1) as f64;
    (libm::log10(lr) + 2.0).powi(2) + if h == 32.0 { 0.0 } else { 0.3 } + 1.0 / budget
}

/// Runs a search to the end, rounds as a build would, returning every round.
fn run(s: &SearchConfig) -> Vec<Vec<Candidate>> {
    let mut done: Vec<Observation> = Vec::new();
    let mut rounds = Vec::new();
    loop {
        let round = propose(s, false, &done);
        if round.is_empty() {
            return rounds;
        }
        for c in &round {
            done.push(Observation {
                objective: Some(objective(c)),
                candidate: c.clone(),
            });
        }
        rounds.push(round);
        assert!(rounds.len() < 1000, "the search ends");
    }
}

#[test]
fn random_search_proposes_every_trial_at_once_and_the_same_ones_again() {
    let s = spec(SearchMethod::Random, 12);
    let rounds = run(&s);
    assert_eq!(rounds.len(), 1);
    assert_eq!(rounds[0].len(), 12);
    assert_eq!(run(&s), rounds, "the same seed proposes the same trials");
    let mut other = s.clone();
    other.seed = 12;
    assert_ne!(run(&other), rounds);
    // More trials keep the first ones: a search re-run with more trials builds only the new.
    let mut more = s.clone();
    more.trials = 20;
    assert_eq!(run(&more)[0][..12], rounds[0][..]);
    let names: std::collections::BTreeSet<String> =
        rounds[0].iter().map(|c| c.trial(&s).suffix).collect();
    assert_eq!(names.len(), 12, "trial names are distinct");
}

#[test]
fn tpe_proposes_in_batches_and_finds_the_minimum() {
    let mut s = spec(SearchMethod::Tpe, 40);
    s.batch = Some(4);
    s.startup = Some(8);
    let rounds = run(&s);
    assert_eq!(rounds.len(), 10);
    assert!(rounds.iter().all(|r| r.len() == 4));
    assert_eq!(run(&s), rounds, "deterministic");
    let all: Vec<&Candidate> = rounds.iter().flatten().collect();
    let best = |cs: &[&Candidate]| {
        cs.iter()
            .map(|c| objective(c))
            .fold(f64::INFINITY, f64::min)
    };
    // The modelled trials concentrate where the objective is low: their median beats the
    // random startup's.
    let median = |cs: &[&Candidate]| {
        let mut v: Vec<f64> = cs.iter().map(|c| objective(c)).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    assert!(
        median(&all[24..]) < median(&all[..8]),
        "{} vs {}",
        median(&all[24..]),
        median(&all[..8])
    );
    assert!(best(&all) < 1.0 + 0.02, "best {}", best(&all));
}

#[test]
fn asha_promotes_the_best_third_of_each_rung() {
    let mut s = spec(SearchMethod::Asha, 9);
    s.asha = Some(AshaConfig {
        budget: "training.epochs".to_string(),
        min: 1,
        max: 9,
        reduction: 3,
    });
    let rounds = run(&s);
    let sizes: Vec<(usize, u64)> = rounds
        .iter()
        .map(|r| (r.len(), r[0].budget.unwrap()))
        .collect();
    assert_eq!(sizes, vec![(9, 1), (3, 3), (1, 9)]);
    // The promoted ones are the best of the rung before.
    let mut first: Vec<&Candidate> = rounds[0].iter().collect();
    first.sort_by(|a, b| objective(a).total_cmp(&objective(b)));
    for promoted in &rounds[1] {
        assert!(first[..3].iter().any(|c| c.values == promoted.values));
    }
    let name = rounds[2][0].trial(&s).suffix;
    assert!(name.ends_with(",training.epochs=9]"), "{name}");
    assert_eq!(rungs(&s), vec![(1, 9), (3, 3), (9, 1)]);
}

#[test]
fn a_small_space_ends_the_search_instead_of_repeating_trials() {
    let mut s = spec(SearchMethod::Tpe, 10);
    s.space = BTreeMap::from([(
        "model.hidden_size".to_string(),
        Domain::Choice(vec![16.into(), 32.into()]),
    )]);
    s.batch = Some(1);
    s.startup = Some(1);
    let total: usize = run(&s).iter().map(Vec::len).sum();
    assert_eq!(total, 2);
}
