//! Searches (`search:`) as rounds of ordinary builds. A file with a search defines a base
//! experiment that is never built; its trials are experiments named like matrix points,
//! proposed round by round by `crate::search` from the objectives of the rounds before.
//!
//! Every caller walks a search the same way ([`expand`]): propose a round, resolve and plan
//! its trials, hand them to a round builder, read each trial's objective from its report,
//! propose the next. A build's round builder executes the stages (so a rebuilt or
//! restarted search finds its earlier trials in the cache and executes nothing it built);
//! every other command's only classifies them against the store ([`replay`]) and stops at
//! the first round not fully built, so `status`, `show`, `ls` and `audit` see the trials
//! built so far and the round that would run next.

use std::path::PathBuf;

use super::{Failure, Loaded};
use crate::catalog::{CatalogRow, metric_key};
use crate::config::search::Direction;
use crate::config::{ConfigError, SearchConfig};
use crate::graph::exec::{self, ExperimentReport, StageState};
use crate::graph::{self, Database, ExperimentSource};
use crate::search::{self, Candidate, Observation};
use crate::store::Store;

/// One trial of a search as far as the store or the build knows it.
#[derive(Debug, Clone)]
pub struct TrialProgress {
    pub name: String,
    pub candidate: Candidate,
    /// Every stage built and the objective read (`None` inside: no finite value).
    pub objective: Option<Option<f64>>,
    /// A stage of it failed in this build.
    pub failed: bool,
    /// Epochs its training ran when it was built: its `training.epochs`, less those of the
    /// shorter training it continued from (`None`: not built, or walk-forward).
    pub epochs_trained: Option<u64>,
    /// Its `training.epochs`.
    pub epochs: u64,
}

/// What became of one search.
#[derive(Debug, Clone)]
pub struct SearchProgress {
    pub file: PathBuf,
    /// The base experiment's name, which its trials extend.
    pub name: String,
    pub spec: SearchConfig,
    pub objective: String,
    pub direction: Direction,
    /// In proposal order.
    pub trials: Vec<TrialProgress>,
    /// Every round is built: no further trial will be proposed.
    pub complete: bool,
}

impl SearchProgress {
    /// The best built trial; of equal objectives, the one with the larger budget (an ASHA
    /// configuration that survived to the last rung), then the first proposed.
    pub fn best(&self) -> Option<&TrialProgress> {
        let score = |t: &TrialProgress| match (t.objective.flatten(), self.direction) {
            (Some(x), Direction::Minimize) => Some(x),
            (Some(x), Direction::Maximize) => Some(-x),
            (None, _) => None,
        };
        self.trials
            .iter()
            .enumerate()
            .filter_map(|(i, t)| Some((score(t)?, std::cmp::Reverse(t.candidate.budget), i, t)))
            .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)))
            .map(|(_, _, _, t)| t)
    }
}

impl SearchProgress {
    /// Epochs the built trials trained, and what they would have without continuing from
    /// shorter trainings (`(0, 0)` for walk-forward searches, whose folds train instead).
    pub fn epochs_spent(&self) -> (u64, u64) {
        self.trials
            .iter()
            .filter_map(|t| Some((t.epochs_trained?, t.epochs)))
            .fold((0, 0), |(a, b), (x, y)| (a + x, b + y))
    }

    /// The search's line in a build's summary.
    pub fn summary_line(&self) -> String {
        let built = self.trials.iter().filter(|t| t.objective.is_some()).count();
        let best = match self.best().and_then(|b| Some((b, b.objective.flatten()?))) {
            Some((b, x)) => format!(
                "; best {} {}: {}",
                self.objective,
                search::space::round_significant(x),
                b.name
            ),
            None => String::new(),
        };
        let state = if self.complete {
            "complete"
        } else {
            "not complete"
        };
        let epochs = match self.epochs_spent() {
            (0, _) => String::new(),
            (spent, fresh) if spent < fresh => {
                format!(", {spent} epochs trained ({fresh} without reuse)")
            }
            (spent, _) => format!(", {spent} epochs trained"),
        };
        format!(
            "search {}: {built} trial(s) built{epochs}, {state}{best} (hft search status {})",
            self.name,
            self.file.display()
        )
    }
}

/// Builds (or classifies) one round of trials, returning a report per trial in order.
pub type RoundBuilder<'r> = dyn FnMut(&[Loaded]) -> Result<Vec<ExperimentReport>, Failure> + 'r;

/// Replaces every search base in `loaded` by its trials, walking each search round by round
/// through `build_round`. Returns the experiments (trials where their bases were) and the
/// searches' progress. Searches advance side by side: one round of each per call of
/// `build_round`.
pub fn expand(
    db: &Database,
    loaded: Vec<Loaded>,
    build_round: &mut RoundBuilder,
) -> Result<(Vec<Loaded>, Vec<SearchProgress>), Failure> {
    if !loaded.iter().any(|l| l.parsed.search_base) {
        return Ok((loaded, Vec::new()));
    }
    // Each search's state, and where its trials go in the output.
    struct Active {
        base: Loaded,
        progress: SearchProgress,
        observations: Vec<Observation>,
        trials: Vec<Loaded>,
        walk_forward: bool,
        /// Stopped at a round not wholly built: it resumes at the next build.
        stopped: bool,
    }
    let mut slots: Vec<Result<Loaded, usize>> = Vec::new();
    let mut active: Vec<Active> = Vec::new();
    for l in loaded {
        let spec = match (&l.parsed.experiment.search, l.parsed.search_base) {
            (Some(spec), true) => spec.clone(),
            _ => {
                slots.push(Ok(l));
                continue;
            }
        };
        let e = &l.parsed.experiment;
        let walk_forward = e.evaluation.walk_forward.is_some();
        let progress = SearchProgress {
            file: l.file.clone(),
            name: e.name.clone(),
            objective: spec.objective(walk_forward),
            direction: spec.direction(walk_forward),
            spec,
            trials: Vec::new(),
            complete: false,
        };
        slots.push(Err(active.len()));
        active.push(Active {
            base: l,
            progress,
            observations: Vec::new(),
            trials: Vec::new(),
            walk_forward,
            stopped: false,
        });
    }
    loop {
        // One round of every search still going.
        let mut round: Vec<Loaded> = Vec::new();
        let mut owners: Vec<(usize, Candidate)> = Vec::new();
        let mut errors: Vec<ConfigError> = Vec::new();
        for (i, a) in active.iter_mut().enumerate() {
            if a.progress.complete || a.stopped {
                continue;
            }
            let candidates = search::propose(&a.progress.spec, a.walk_forward, &a.observations);
            if candidates.is_empty() {
                a.progress.complete = true;
                continue;
            }
            for c in candidates {
                match resolve_trial(db, &a.base, &c.trial(&a.progress.spec)) {
                    Ok(l) => {
                        round.push(l);
                        owners.push((i, c));
                    }
                    Err(e) => errors.push(e),
                }
            }
        }
        if !errors.is_empty() {
            return Err(Failure::config(&errors));
        }
        if round.is_empty() {
            break;
        }
        let reports = build_round(&round)?;
        // A search stops at a round not wholly built (a dry run, a failure): what comes
        // next depends on it.
        let mut stopped = vec![false; active.len()];
        for ((l, report), (i, candidate)) in round.into_iter().zip(&reports).zip(owners) {
            let a = &mut active[i];
            let built = report.stages.iter().all(|s| s.record.is_some());
            let failed = report
                .stages
                .iter()
                .any(|s| matches!(s.state, StageState::Failed(_)));
            let objective = if built {
                Some(objective_of(report, &l, &a.progress.objective)?)
            } else {
                stopped[i] = true;
                None
            };
            let epochs = l.parsed.experiment.training.epochs as u64;
            let epochs_trained = report
                .stages
                .iter()
                .find(|s| s.id == "train")
                .and_then(|s| s.record.as_ref())
                .map(|r| epochs - r.summary["continued_from_epoch"].as_u64().unwrap_or(0));
            a.progress.trials.push(TrialProgress {
                name: l.plan.name.clone(),
                candidate: candidate.clone(),
                objective,
                failed,
                epochs_trained,
                epochs,
            });
            if let Some(objective) = objective {
                a.observations.push(Observation {
                    candidate,
                    objective,
                });
            }
            a.trials.push(l);
        }
        for (a, stop) in active.iter_mut().zip(stopped) {
            a.stopped |= stop;
        }
        if active.iter().all(|a| a.progress.complete || a.stopped) {
            break;
        }
    }
    let mut progress = Vec::with_capacity(active.len());
    let mut trials_of: Vec<Option<Vec<Loaded>>> = Vec::with_capacity(active.len());
    for a in active {
        progress.push(a.progress);
        trials_of.push(Some(a.trials));
    }
    let mut out = Vec::new();
    for slot in slots {
        match slot {
            Ok(l) => out.push(l),
            Err(i) => out.extend(trials_of[i].take().unwrap_or_default()),
        }
    }
    Ok((out, progress))
}

/// [`expand`] against the store without executing anything: each search as far as its
/// built rounds go, plus the round that would run next.
pub fn replay(
    db: &Database,
    store: &Store,
    loaded: Vec<Loaded>,
) -> Result<(Vec<Loaded>, Vec<SearchProgress>), Failure> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    expand(db, loaded, &mut |round: &[Loaded]| {
        let jobs = super::inputs::make_jobs(db, store, round, &mut Vec::new(), false)?;
        Ok(exec::run_all(store, &jobs, threads, true, &|_| {}))
    })
}

/// A trial of `base`'s search, resolved and planned like any experiment of its file.
fn resolve_trial(
    db: &Database,
    base: &Loaded,
    trial: &crate::config::resolve::Trial,
) -> Result<Loaded, ConfigError> {
    let s = base.source;
    let source = ExperimentSource::new(
        db,
        s.path(db).clone(),
        s.text(db).clone(),
        s.overrides(db).clone(),
        Some(trial.clone()),
    );
    let parsed = graph::parse_experiments(db, source)
        .as_ref()
        .map_err(Clone::clone)?;
    let plans = graph::plan_experiments(db, source)
        .as_ref()
        .map_err(Clone::clone)?;
    let (Some(parsed), Some(plan)) = (parsed.first(), plans.first()) else {
        return Err(ConfigError::at(
            &base.parsed.locations.find("search"),
            "search",
            "a trial resolved to no experiment",
        ));
    };
    let mut plan = plan.clone();
    plan.truncated = base.plan.truncated;
    Ok(Loaded {
        file: base.file.clone(),
        source,
        parsed: parsed.clone(),
        plan,
    })
}

/// A built trial's objective, by the name `hft compare` gives the metric.
fn objective_of(
    report: &ExperimentReport,
    trial: &Loaded,
    metric: &str,
) -> Result<Option<f64>, Failure> {
    let row = CatalogRow::from_report("", &trial.parsed.experiment, report);
    let metrics = row.map(|r| r.metrics).unwrap_or_default();
    match metrics.get(metric_key(metric)) {
        Some(x) => Ok(Some(*x).filter(|x| x.is_finite())),
        None => {
            let known: Vec<&str> = metrics.keys().map(String::as_str).collect();
            let hint = match crate::config::did_you_mean(metric, known.iter().copied()) {
                Some(best) => format!("did you mean `{best}`?"),
                None => format!("its metrics are {}", known.join(", ")),
            };
            Err(Failure::config(&[ConfigError::at(
                &trial.parsed.locations.find("search.objective"),
                "search.objective",
                format!(
                    "`{metric}` is not a metric of trial `{}`; {hint}",
                    trial.plan.name
                ),
            )]))
        }
    }
}

/// `hft search status`: every search among the selected experiment files, replayed
/// against the store.
pub fn status(store: &Store, select: &super::Selection) -> Result<Vec<SearchProgress>, Failure> {
    let db = Database::default();
    let planned = super::select::load_experiments(&db, select)?;
    Ok(replay(&db, store, planned)?.1)
}
