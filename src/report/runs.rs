//! The report's view of each experiment (a "run", as MLflow and W&B say): its metrics with
//! the ones the report derives, its parsed predictions, and the dataset group it belongs
//! to, "best" meaning something only within a group.

use std::collections::BTreeMap;

use super::data::{Predictions, annualised_return, evaluation_config, parse_predictions, turnover};
use super::html::ReportExperiment;
use crate::config::EvaluationConfig;

/// The strategy's annualised return, derived from the catalog's figures.
pub(super) const ANNUALISED_RETURN: &str = "backtest.strategy.annualised_return";
/// Mean absolute position change per bar, derived from the predictions.
pub(super) const TURNOVER: &str = "backtest.strategy.turnover";

pub(super) struct Run<'a> {
    pub(super) index: usize,
    pub(super) e: &'a ReportExperiment,
    /// The catalog's metrics and the derived ones above.
    pub(super) metrics: BTreeMap<String, f64>,
    /// Index into [`Groups::labels`].
    pub(super) group: usize,
    /// `None` when not evaluated, `Err` when unreadable.
    pub(super) predictions: Option<Result<Predictions, String>>,
    pub(super) evaluation: EvaluationConfig,
}

/// Runs on the same data: the `data.*` config values that tell them apart.
pub(super) struct Groups {
    /// One per group, in order of first appearance: `data.symbols=[AAA,BBB]`, or empty
    /// when every run is on the same data.
    pub(super) labels: Vec<String>,
}

pub(super) fn runs(experiments: &[ReportExperiment]) -> (Vec<Run<'_>>, Groups) {
    let dataset = |e: &ReportExperiment| -> Vec<(String, String)> {
        e.config
            .iter()
            .filter(|(k, _)| k.starts_with("data."))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    let mut keys: Vec<Vec<(String, String)>> = Vec::new();
    let mut runs = Vec::new();
    for (index, e) in experiments.iter().enumerate() {
        let key = dataset(e);
        let group = match keys.iter().position(|k| *k == key) {
            Some(g) => g,
            None => {
                keys.push(key);
                keys.len() - 1
            }
        };
        let predictions = e.predictions.as_deref().map(parse_predictions);
        let evaluation = evaluation_config(&e.config);
        let mut metrics = e.metrics.clone();
        if let Some(r) = annualised_return(&metrics) {
            metrics.insert(ANNUALISED_RETURN.to_string(), r);
        }
        if let Some(Ok(p)) = &predictions
            && let Some(t) = turnover(&p.rows, &evaluation)
        {
            metrics.insert(TURNOVER.to_string(), t);
        }
        runs.push(Run {
            index,
            e,
            metrics,
            group,
            predictions,
            evaluation,
        });
    }
    let labels = if keys.len() < 2 {
        vec![String::new(); keys.len()]
    } else {
        group_labels(&keys)
    };
    (runs, Groups { labels })
}

/// Each group's `data.*` values that not every group shares, `data.` left out.
fn group_labels(keys: &[Vec<(String, String)>]) -> Vec<String> {
    let value = |group: &[(String, String)], k: &str| {
        group
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| super::tables::display_value(v))
    };
    let mut names: Vec<&str> = keys.iter().flatten().map(|(k, _)| k.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let differing: Vec<&str> = names
        .into_iter()
        .filter(|k| keys.windows(2).any(|w| value(&w[0], k) != value(&w[1], k)))
        .collect();
    keys.iter()
        .map(|group| {
            differing
                .iter()
                .map(|k| {
                    let short = k.strip_prefix("data.").unwrap_or(k);
                    format!("{short}={}", value(group, k).unwrap_or_else(|| "-".into()))
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::html::tests::experiment;

    #[test]
    fn runs_are_grouped_by_their_data_and_get_derived_metrics() {
        let a = experiment("a", "0.001");
        let mut b = experiment("b", "0.01");
        b.config
            .insert("data.symbols".to_string(), "[\"MSFT\"]".to_string());
        let c = experiment("c", "0.1");
        let experiments = [a, b, c];
        let (runs, groups) = runs(&experiments);
        let in_group: Vec<usize> = runs.iter().map(|r| r.group).collect();
        assert_eq!(in_group, [0, 1, 0]);
        assert_eq!(groups.labels, ["symbols=-", "symbols=[\"MSFT\"]"]);
        // The fixture's predictions from flat: AAA +1, -1, +1 trades 1 + 2 + 2 units, BBB
        // -1, 0 trades 1 + 1: 7 units over 5 bars.
        assert_eq!(runs[0].metrics.get(TURNOVER), Some(&1.4));

        let (_, one) = super::runs(&experiments[..1]);
        assert_eq!(one.labels, [""]);
    }
}
