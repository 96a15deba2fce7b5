//! `hft compare`: the last builds of the selected experiments side by side, the config
//! values that differ between them and their metrics, filtered and sorted. It reads only
//! the catalog (never plans), so it stays fast on thousands of experiments.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::inspect::number;
use super::{Outcome, fail};
use crate::catalog::{Catalog, CatalogRow};
use crate::term;
pub use crate::usecase::filter::Condition;

/// The metrics `ls` and `compare` show unless told otherwise.
pub const HEADLINE_METRICS: [&str; 7] = [
    "train.selected_val_loss",
    "skill.pooled",
    "price.mse",
    "price.directional_accuracy",
    "backtest.strategy.sharpe",
    "backtest.strategy.total_return",
    "backtest.buy_and_hold.sharpe",
];

/// The metric a column name stands for: `skill` is the pooled skill against persistence.
pub fn metric_key(key: &str) -> &str {
    match key {
        "skill" => "skill.pooled",
        other => other,
    }
}

/// A metric of a row, by column name or alias ([`metric_key`]).
fn metric(row: &CatalogRow, key: &str) -> Option<f64> {
    row.metrics.get(metric_key(key)).copied()
}

/// A metric as the table shows it: a negative skill (worse than predicting no move) in
/// red on a terminal, with a trailing `!` in plain text.
pub fn shown(key: &str, x: f64) -> String {
    let text = number(x);
    let is_skill = metric_key(key) == "skill" || metric_key(key).ends_with("skill.pooled");
    if is_skill && x < 0.0 {
        if term::colours() {
            term::paint(&text, "red")
        } else {
            format!("{text}!")
        }
    } else {
        text
    }
}

/// A value of a catalog row by column name: `name`, `file`, `model`, `optimizer`, a metric
/// (`backtest.strategy.sharpe`) or a config leaf (`optimizer.lr`).
fn cell(row: &CatalogRow, key: &str) -> Option<String> {
    match key {
        "name" => Some(row.name.clone()),
        "file" => Some(row.file.clone()),
        "model" => Some(row.model.clone()),
        "optimizer" => Some(row.optimizer.clone()),
        "state" => Some(
            if row.error.is_some() {
                "failed"
            } else {
                "built"
            }
            .to_string(),
        ),
        _ => metric(row, key)
            .map(|x| x.to_string())
            .or_else(|| row.config.get(key).cloned()),
    }
}

/// What `hft compare` prints.
pub struct CompareArgs {
    pub paths: Vec<PathBuf>,
    pub cache_dir: Option<PathBuf>,
    pub sort: Option<String>,
    pub reverse: bool,
    pub filters: Vec<String>,
    pub metrics: Vec<String>,
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Csv,
    Markdown,
}

/// The comparison itself: header and rows (experiments sorted and filtered), from the
/// catalog alone.
pub struct Comparison {
    pub config_columns: Vec<String>,
    pub metric_columns: Vec<String>,
    pub rows: Vec<CatalogRow>,
}

/// The last row of every experiment defined in `files`, filtered, sorted, with the config
/// leaves that differ between them.
pub fn compare_rows(
    catalog: Catalog,
    files: &HashSet<PathBuf>,
    conditions: &[Condition],
    sort: Option<&str>,
    reverse: bool,
    metrics: &[String],
) -> Comparison {
    // The last row of each experiment, moved rather than cloned.
    let mut latest: BTreeMap<String, CatalogRow> = BTreeMap::new();
    for row in catalog.rows {
        latest.insert(row.id.clone(), row);
    }
    let mut rows: Vec<CatalogRow> = latest
        .into_values()
        .filter(|r| files.contains(&normalise(Path::new(&r.file))))
        .filter(|r| {
            conditions
                .iter()
                .all(|c| c.matches_cell(cell(r, &c.key).as_deref()))
        })
        .collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(key) = sort {
        // Numbers compare as numbers; experiments missing the value go last either way.
        rows.sort_by(|a, b| {
            let (x, y) = (cell(a, key), cell(b, key));
            let order = match (&x, &y) {
                (Some(x), Some(y)) => match (x.parse::<f64>(), y.parse::<f64>()) {
                    (Ok(p), Ok(q)) => p.total_cmp(&q),
                    _ => x.cmp(y),
                },
                (Some(_), None) => return std::cmp::Ordering::Less,
                (None, Some(_)) => return std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            };
            if reverse { order.reverse() } else { order }
        });
    } else if reverse {
        rows.reverse();
    }
    // A key is a column when its value differs somewhere or some experiment lacks it.
    // Hash maps: this loop sees every leaf of every row.
    let mut first: HashMap<&str, (&str, usize, bool)> = HashMap::new();
    for r in &rows {
        for (k, v) in &r.config {
            let seen = first.entry(k).or_insert((v, 0, false));
            seen.1 += 1;
            seen.2 |= seen.0 != v;
        }
    }
    let mut config_columns: Vec<String> = first
        .iter()
        .filter(|(k, (_, n, differs))| {
            !matches!(**k, "name" | "description") && (*differs || *n != rows.len())
        })
        .map(|(k, _)| k.to_string())
        .collect();
    config_columns.sort();
    let all_metrics: BTreeSet<&str> = rows
        .iter()
        .flat_map(|r| r.metrics.keys().map(String::as_str))
        .collect();
    let metric_columns: Vec<String> = if metrics.iter().any(|m| m == "all") {
        all_metrics.iter().map(|m| m.to_string()).collect()
    } else if !metrics.is_empty() {
        metrics.to_vec()
    } else {
        HEADLINE_METRICS
            .iter()
            .filter(|m| all_metrics.contains(*m))
            .map(|m| m.to_string())
            .collect()
    };
    Comparison {
        config_columns,
        metric_columns,
        rows,
    }
}

/// A path as the catalog and the selection can both be matched on: absolute, with `.` and
/// `..` resolved lexically (no system call per experiment: compare runs on thousands).
fn normalise(p: &Path) -> PathBuf {
    use std::path::Component;
    let absolute = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    };
    let mut out = PathBuf::new();
    for c in absolute.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// `hft compare`.
pub fn compare(args: &CompareArgs) -> Outcome {
    let conditions = match args
        .filters
        .iter()
        .map(|f| Condition::parse_for_catalog(f))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let files = match super::find_experiments(&args.paths) {
        Ok(f) => f,
        Err(e) => return fail(&e),
    };
    let files: HashSet<PathBuf> = files.iter().map(|f| normalise(f)).collect();
    let store = match super::open_store_at(args.cache_dir.as_deref()) {
        Ok(s) => s,
        Err(o) => return o,
    };
    let catalog = Catalog::load_latest(&store);
    // Kept for diagnosing a filter that matches nothing.
    let unfiltered = (!conditions.is_empty()).then(|| catalog.clone());
    let c = compare_rows(
        catalog,
        &files,
        &conditions,
        args.sort.as_deref(),
        args.reverse,
        &args.metrics,
    );
    if let Some(key) = &args.sort
        && !c.rows.iter().any(|r| cell(r, key).is_some())
        && !c.rows.is_empty()
    {
        return fail(&format!(
            "--sort {key}: no experiment has this value; metrics: {}",
            c.metric_columns.join(", ")
        ));
    }
    // A metric no experiment has is a typo, as with --sort.
    if let Some(m) = args
        .metrics
        .iter()
        .find(|m| *m != "all" && !c.rows.iter().any(|r| cell(r, m).is_some()))
        && !c.rows.is_empty()
    {
        let known: BTreeSet<&str> = c
            .rows
            .iter()
            .flat_map(|r| r.metrics.keys().map(String::as_str))
            .collect();
        let hint = match crate::config::did_you_mean(m, known.iter().copied()) {
            Some(best) => format!("did you mean `{best}`?"),
            None => "`--metric all` lists every one".to_string(),
        };
        return fail(&format!(
            "--metric {m}: no experiment has this metric; {hint}"
        ));
    }
    if c.rows.is_empty()
        && let Some(catalog) = unfiltered
    {
        let all = compare_rows(catalog, &files, &[], None, false, &["all".to_string()]);
        if !all.rows.is_empty() {
            // A key no built experiment has is a typo, not an empty result.
            for cond in &conditions {
                if all.rows.iter().any(|r| cell(r, &cond.key).is_some()) {
                    continue;
                }
                let known: Vec<String> = ["name", "model", "optimizer", "state"]
                    .iter()
                    .map(|s| s.to_string())
                    .chain(all.metric_columns.iter().cloned())
                    .chain(all.rows.iter().flat_map(|r| r.config.keys().cloned()))
                    .collect();
                let hint = match crate::config::did_you_mean(
                    &cond.key,
                    known.iter().map(String::as_str),
                ) {
                    Some(best) => format!("; did you mean `{best}`?"),
                    None => String::new(),
                };
                return fail(&format!(
                    "--filter: no built experiment has a value `{}`{hint}",
                    cond.key
                ));
            }
            if args.format == Format::Table {
                eprintln!("no built experiment matches the filters");
                return Outcome::Ok;
            }
        }
    }
    if c.rows.is_empty() && args.format == Format::Table {
        eprintln!("no built experiment matches (build them first: `hft build`)");
        return Outcome::Ok;
    }
    let header: Vec<String> = std::iter::once("experiment".to_string())
        .chain(c.config_columns.iter().cloned())
        .chain(c.metric_columns.iter().cloned())
        .collect();
    let table_rows = || {
        c.rows.iter().map(|r| {
            std::iter::once(r.name.clone())
                .chain(c.config_columns.iter().map(|k| {
                    r.config
                        .get(k)
                        .map(|v| v.trim_matches('"').to_string())
                        .unwrap_or_else(|| "-".into())
                }))
                .chain(c.metric_columns.iter().map(|k| {
                    metric(r, k)
                        .map(|x| shown(k, x))
                        .unwrap_or_else(|| "-".into())
                }))
                .collect::<Vec<String>>()
        })
    };
    match args.format {
        Format::Json => {
            let list: Vec<Value> = c
                .rows
                .iter()
                .map(|r| {
                    let config: BTreeMap<&String, Value> = c
                        .config_columns
                        .iter()
                        .map(|k| {
                            let v = r.config.get(k).map(|v| {
                                serde_json::from_str(v).unwrap_or(Value::String(v.clone()))
                            });
                            (k, v.unwrap_or(Value::Null))
                        })
                        .collect();
                    json!({
                        "name": r.name,
                        "file": r.file,
                        "state": if r.error.is_some() { "failed" } else { "built" },
                        "built_at": r.built_at,
                        "config": config,
                        "metrics": r.metrics,
                    })
                })
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&list).unwrap_or_default()
            );
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(std::io::stdout());
            let full = c.rows.iter().map(|r| {
                std::iter::once(r.name.clone())
                    .chain(c.config_columns.iter().map(|k| {
                        r.config
                            .get(k)
                            .map(|v| v.trim_matches('"').to_string())
                            .unwrap_or_default()
                    }))
                    .chain(
                        c.metric_columns
                            .iter()
                            .map(|k| metric(r, k).map(|x| x.to_string()).unwrap_or_default()),
                    )
                    .collect::<Vec<String>>()
            });
            let written = std::iter::once(header.clone())
                .chain(full)
                .try_for_each(|r| w.write_record(&r));
            if let Err(e) = written.and_then(|_| w.flush().map_err(csv::Error::from)) {
                return fail(&format!("cannot write CSV: {e}"));
            }
        }
        Format::Markdown => {
            let esc = |s: &str| s.replace('|', "\\|");
            let mut lines = vec![
                format!(
                    "| {} |",
                    header
                        .iter()
                        .map(|h| esc(h))
                        .collect::<Vec<_>>()
                        .join(" | ")
                ),
                format!("|{}", "---|".repeat(header.len())),
            ];
            for r in table_rows() {
                lines.push(format!(
                    "| {} |",
                    r.iter().map(|h| esc(h)).collect::<Vec<_>>().join(" | ")
                ));
            }
            term::print_block(&lines);
        }
        Format::Table => {
            let rows: Vec<Vec<String>> = std::iter::once(header).chain(table_rows()).collect();
            term::print_block(&term::table(&rows));
        }
    }
    Outcome::Ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, lr: &str, sharpe: f64) -> CatalogRow {
        CatalogRow {
            id: name.to_string(),
            name: name.to_string(),
            file: format!("/x/{name}.yaml"),
            built_at: 1,
            error: None,
            model: "lstm".to_string(),
            optimizer: "adamw".to_string(),
            config: BTreeMap::from([
                ("name".to_string(), format!("\"{name}\"")),
                ("optimizer.lr".to_string(), lr.to_string()),
                ("model.type".to_string(), "\"lstm\"".to_string()),
            ]),
            stages: vec![],
            metrics: BTreeMap::from([
                ("backtest.strategy.sharpe".to_string(), sharpe),
                ("skill.pooled".to_string(), sharpe / 10.0),
            ]),
        }
    }

    fn catalog() -> (Catalog, HashSet<PathBuf>) {
        let rows = vec![
            row("a", "0.001", 0.5),
            row("b", "0.01", 1.5),
            row("c", "0.1", -0.2),
        ];
        let files = rows.iter().map(|r| PathBuf::from(&r.file)).collect();
        (
            Catalog {
                rows,
                builds: vec![],
            },
            files,
        )
    }

    #[test]
    fn compare_shows_only_differing_config_and_sorts_numerically() {
        let (c, files) = catalog();
        let cmp = compare_rows(
            c.clone(),
            &files,
            &[],
            Some("backtest.strategy.sharpe"),
            true,
            &[],
        );
        assert_eq!(cmp.config_columns, vec!["optimizer.lr"]);
        assert_eq!(
            cmp.metric_columns,
            vec!["skill.pooled", "backtest.strategy.sharpe"]
        );
        let names: Vec<&str> = cmp.rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, vec!["b", "a", "c"]);
    }

    #[test]
    fn compare_filters_on_metrics_and_config() {
        let (c, files) = catalog();
        let conds = [Condition::parse_for_catalog("backtest.strategy.sharpe>0").unwrap()];
        let cmp = compare_rows(c.clone(), &files, &conds, None, false, &[]);
        let names: Vec<&str> = cmp.rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, vec!["a", "b"]);
        let conds = [Condition::parse_for_catalog("optimizer.lr = 0.1").unwrap()];
        let cmp = compare_rows(c.clone(), &files, &conds, None, false, &[]);
        assert_eq!(cmp.rows.len(), 1);
        assert_eq!(cmp.rows[0].name, "c");
        let conds = [Condition::parse_for_catalog("model.type=lstm").unwrap()];
        assert_eq!(
            compare_rows(c.clone(), &files, &conds, None, false, &[])
                .rows
                .len(),
            3
        );
    }

    #[test]
    fn skill_is_a_metric_to_show_and_sort_by() {
        let (c, files) = catalog();
        let metrics = ["skill".to_string()];
        let cmp = compare_rows(c.clone(), &files, &[], Some("skill"), false, &metrics);
        assert_eq!(cmp.metric_columns, vec!["skill"]);
        let names: Vec<&str> = cmp.rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, vec!["c", "a", "b"]);
        assert_eq!(metric(&cmp.rows[0], "skill"), Some(-0.02));
        let conds = [Condition::parse_for_catalog("skill>0").unwrap()];
        assert_eq!(
            compare_rows(c, &files, &conds, None, false, &[]).rows.len(),
            2
        );
        // Negative skill is marked (tests run without a terminal: the plain mark).
        assert!(shown("skill", -0.02).ends_with('!'));
        assert!(!shown("skill", 0.02).ends_with('!'));
        assert!(!shown("price.mse", -1.0).ends_with('!'));
    }
}
