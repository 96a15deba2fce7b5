//! `hft search status`: each search's trials so far (objective, budget, promoted or pruned),
//! its best, and what the next build would run; and the search lines of a build's summary.

use super::{Common, Outcome, report_failure};
use crate::config::search::SearchMethod;
use crate::term;
use crate::usecase::search::{SearchProgress, TrialProgress};

/// `hft search status [PATHS]`.
pub fn status(common: &Common, json: bool) -> Outcome {
    let store = match super::open_store_at(common.cache_dir.as_deref()) {
        Ok(s) => s,
        Err(outcome) => return outcome,
    };
    let searches = match crate::usecase::search::status(&store, &common.select.selection()) {
        Ok(s) => s,
        Err(failure) => return report_failure(failure),
    };
    if searches.is_empty() {
        return super::fail("no experiment file under the given paths has a `search:`");
    }
    if json {
        let doc: Vec<serde_json::Value> = searches.iter().map(search_json).collect();
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return Outcome::Ok;
    }
    for (i, s) in searches.iter().enumerate() {
        if i > 0 {
            term::print_block(&[String::new()]);
        }
        term::print_block(&status_lines(s));
    }
    Outcome::Ok
}

/// What became of each trial: built with its objective, failed, or not built yet; and for
/// ASHA whether the next rung took its configuration.
fn fate(s: &SearchProgress, t: &TrialProgress) -> String {
    if t.failed {
        return "failed".to_string();
    }
    let Some(objective) = t.objective else {
        return "not built".to_string();
    };
    if objective.is_none() {
        return "no objective".to_string();
    }
    if s.spec.method != SearchMethod::Asha {
        return "built".to_string();
    }
    let next = t.candidate.rung + 1;
    let next_rung: Vec<&TrialProgress> = s
        .trials
        .iter()
        .filter(|o| o.candidate.rung == next)
        .collect();
    if next_rung.is_empty() {
        return if s.complete {
            "final rung".to_string()
        } else {
            "built".to_string()
        };
    }
    match next_rung
        .iter()
        .any(|o| o.candidate.values == t.candidate.values)
    {
        true => "promoted".to_string(),
        false => format!("pruned at {}", t.candidate.budget.unwrap_or(0)),
    }
}

/// The objective as tables print it.
fn objective_text(t: &TrialProgress) -> String {
    match t.objective {
        Some(Some(x)) => super::compare::shown("", x),
        Some(None) => "-".to_string(),
        None => String::new(),
    }
}

/// A search's heading, its trials' table and its best.
pub fn status_lines(s: &SearchProgress) -> Vec<String> {
    let built = s.trials.iter().filter(|t| t.objective.is_some()).count();
    let method = match s.spec.method {
        SearchMethod::Random => "random",
        SearchMethod::Tpe => "tpe",
        SearchMethod::Asha => "asha",
    };
    let direction = match s.direction {
        crate::config::search::Direction::Minimize => "lower is better",
        crate::config::search::Direction::Maximize => "higher is better",
    };
    let state = if s.complete {
        "complete".to_string()
    } else {
        let pending = s.trials.len() - built;
        format!("{pending} trial(s) to build next; later rounds follow from their results")
    };
    let mut lines = vec![format!(
        "search {} ({}, {method}, {} trials asked, seed {}): {built} built, {state}",
        s.name,
        s.file.display(),
        s.spec.trials,
        s.spec.seed
    )];
    let epochs = match s.epochs_spent() {
        (0, _) => String::new(),
        (spent, fresh) if spent < fresh => {
            format!("; {spent} epochs trained, {fresh} without continuing shorter trainings")
        }
        (spent, _) => format!("; {spent} epochs trained"),
    };
    lines.push(format!("objective: {} ({direction}){epochs}", s.objective));
    let asha = s.spec.asha.as_ref();
    let mut header = vec!["#".to_string(), "trial".to_string()];
    if let Some(a) = asha {
        header.push(a.budget.clone());
    }
    header.push(s.objective.clone());
    header.push("state".to_string());
    let mut rows = vec![header];
    let best = s.best().map(|b| b.name.clone());
    for (i, t) in s.trials.iter().enumerate() {
        let suffix = t.name.strip_prefix(&s.name).unwrap_or(&t.name).to_string();
        let mut row = vec![(i + 1).to_string(), suffix];
        if asha.is_some() {
            row.push(
                t.candidate
                    .budget
                    .map(|b| b.to_string())
                    .unwrap_or_default(),
            );
        }
        row.push(objective_text(t));
        let mut state = fate(s, t);
        if best.as_deref() == Some(t.name.as_str()) {
            state.push_str(", best");
        }
        row.push(state);
        rows.push(row);
    }
    lines.extend(term::table(&rows));
    if let Some(b) = s.best() {
        lines.push(format!("best: {} = {}", b.name, objective_text(b)));
    }
    lines
}

fn search_json(s: &SearchProgress) -> serde_json::Value {
    let trials: Vec<serde_json::Value> = s
        .trials
        .iter()
        .map(|t| {
            serde_json::json!({
                "name": t.name,
                "values": t.candidate.values.iter().cloned().collect::<serde_json::Map<_, _>>(),
                "budget": t.candidate.budget,
                "rung": t.candidate.rung,
                "built": t.objective.is_some(),
                "objective": t.objective.flatten(),
                "epochs_trained": t.epochs_trained,
                "state": fate(s, t),
            })
        })
        .collect();
    serde_json::json!({
        "name": s.name,
        "file": s.file.display().to_string(),
        "method": s.spec.method,
        "objective": s.objective,
        "direction": s.direction,
        "complete": s.complete,
        "best": s.best().map(|b| b.name.clone()),
        "epochs_trained": s.epochs_spent().0,
        "epochs_without_reuse": s.epochs_spent().1,
        "trials": trials,
    })
}
