//! `hft compare`: the last builds of the selected experiments side by side, the config
//! values that differ between them and their metrics, filtered and sorted. It reads only
//! the catalog (never plans), so it stays fast on thousands of experiments. Each Sharpe
//! ratio is also shown deflated (`dsr`) by the trials the catalog has seen on the same
//! dataset; `--pbo` gives the probability of backtest overfitting of the compared sweep
//! from its walk-forward folds instead of the table.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::inspect::number;
use super::{Outcome, fail};
use crate::catalog::metric_key;
use crate::catalog::{Catalog, CatalogRow, Trials};
use crate::eval::deflated::{DSR_METRIC, DSR_TRIALS_METRIC, deflate, insert_deflated};
use crate::eval::overfitting::{
    FOLDS_OUTPUT, NEEDS_FOLDS, SweepPbo, WALK_FORWARD_STAGE, parse_fold_returns, sweep_pbo,
};
use crate::store::{Digest, Store};
use crate::term;
pub use crate::usecase::filter::Condition;

/// The metrics `ls` and `compare` show unless told otherwise. `dsr` is derived when
/// comparing: the strategy's Sharpe ratio deflated by the catalog's trials on its dataset.
pub const HEADLINE_METRICS: [&str; 8] = [
    "train.selected_val_loss",
    "skill.pooled",
    "price.mse",
    "price.directional_accuracy",
    "backtest.strategy.sharpe",
    DSR_METRIC,
    "backtest.strategy.total_return",
    "backtest.buy_and_hold.sharpe",
];

/// A metric's cell: [`shown`], and the trial count after a deflated Sharpe ratio.
fn metric_text(row: &CatalogRow, key: &str) -> Option<String> {
    let x = metric(row, key)?;
    let text = shown(key, x);
    Some(match row.metrics.get(DSR_TRIALS_METRIC) {
        Some(n) if metric_key(key) == DSR_METRIC => format!("{text} (N={n})"),
        _ => text,
    })
}

/// Adds the derived deflated Sharpe ratio ([`DSR_METRIC`], with its trial count) to every
/// row that has the one-trial figure, from the trials of the whole catalog.
pub fn add_deflated_sharpe(rows: &mut [CatalogRow], trials: &Trials) {
    for row in rows {
        if let Some(count) = trials.count_for(row) {
            insert_deflated(&mut row.metrics, count);
        }
    }
}

/// A metric of a row, by column name or alias ([`metric_key`]).
fn metric(row: &CatalogRow, key: &str) -> Option<f64> {
    row.metrics.get(metric_key(key)).copied()
}

/// A metric as the table shows it: a negative skill (worse than predicting no move) in
/// red on a terminal, with a trailing `!` in plain text.
pub fn shown(key: &str, x: f64) -> String {
    let key = metric_key(key);
    let last = key.rsplit('.').next().unwrap_or(key);
    // Counts are whole numbers, and shares of windows print as percentages, as in the build
    // table.
    const COUNTS: [&str; 10] = [
        "trades",
        "bars",
        "windows",
        "steps",
        "planned_steps",
        "selected_epoch",
        "best_epoch",
        "trials",
        "observations",
        "resamples",
    ];
    let class_count = key.contains("action.actual.") || key.contains("action.predicted.");
    let text = if (COUNTS.contains(&last) || class_count) && x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.0}")
    } else if last.ends_with("accuracy") && (0.0..=1.0).contains(&x) {
        format!("{:.1}%", x * 100.0)
    } else {
        number(x)
    };
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
    /// Print the probability of backtest overfitting instead of the table.
    pub pbo: bool,
    /// The table as wide as it is (no transposing).
    pub wide: bool,
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
        // A search's own objective leads, when it is not a headline metric already.
        let objectives: BTreeSet<String> = rows
            .iter()
            .filter_map(|r| r.config.get("search.objective"))
            .filter_map(|v| serde_json::from_str::<String>(v).ok())
            .map(|m| metric_key(&m).to_string())
            .filter(|m| all_metrics.contains(m.as_str()) && !HEADLINE_METRICS.contains(&m.as_str()))
            .collect();
        objectives
            .into_iter()
            .chain(
                HEADLINE_METRICS
                    .iter()
                    .filter(|m| all_metrics.contains(*m))
                    .map(|m| m.to_string()),
            )
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
    let mut catalog = Catalog::load_latest(&store);
    let trials = Trials::load(&store);
    add_deflated_sharpe(&mut catalog.rows, &trials);
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
            if args.format == Format::Table && !args.pbo {
                eprintln!("no built experiment matches the filters");
                return Outcome::Ok;
            }
        }
    }
    if args.pbo {
        return print_pbo(&store, &c.rows, args.format);
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
                .chain(
                    c.metric_columns
                        .iter()
                        .map(|k| metric_text(r, k).unwrap_or_else(|| "-".into())),
                )
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
                    let deflated = trials
                        .count_for(r)
                        .and_then(|count| deflate(&r.metrics, count));
                    json!({
                        "name": r.name,
                        "file": r.file,
                        "state": if r.error.is_some() { "failed" } else { "built" },
                        "built_at": r.built_at,
                        "config": config,
                        "metrics": r.metrics,
                        "deflated_sharpe": deflated,
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
            let header = short_config_headers(&header, c.config_columns.len());
            let rows: Vec<Vec<String>> = std::iter::once(header).chain(table_rows()).collect();
            let width = (!args.wide).then(|| term::terminal_width().unwrap_or(PIPED_WIDTH));
            term::print_block(&fitted(&rows, width));
        }
    }
    Outcome::Ok
}

/// The width a table printed to a pipe is fitted to.
const PIPED_WIDTH: usize = 160;

/// The header with each config column (after `experiment`, the first `config` columns) named
/// by its last part when that is unique among them (`optimizer.lr` -> `lr`): the full path
/// is in the config, and a narrow header keeps the values visible.
fn short_config_headers(header: &[String], config: usize) -> Vec<String> {
    let lasts: Vec<&str> = header
        .iter()
        .skip(1)
        .take(config)
        .map(|h| h.rsplit('.').next().unwrap_or(h))
        .collect();
    header
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let last = h.rsplit('.').next().unwrap_or(h);
            let config_column = (1..=config).contains(&i);
            if config_column && lasts.iter().filter(|l| **l == last).count() == 1 {
                last.to_string()
            } else {
                h.clone()
            }
        })
        .collect()
}

/// A table never cuts a value: one that does not fit `width` is printed transposed (one
/// line per column, one column per experiment), as wide as that takes.
fn fitted(rows: &[Vec<String>], width: Option<usize>) -> Vec<String> {
    let lines = term::table_within(rows, None);
    let widest = lines
        .iter()
        .map(|l| console::measure_text_width(l))
        .max()
        .unwrap_or(0);
    match width {
        Some(w) if widest > w && rows.len() > 1 => {
            let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
            let transposed: Vec<Vec<String>> = (0..columns)
                .map(|c| {
                    rows.iter()
                        .map(|r| r.get(c).cloned().unwrap_or_default())
                        .collect()
                })
                .collect();
            term::table_within(&transposed, None)
        }
        _ => lines,
    }
}

/// The walk-forward fold returns of a compared experiment/// The walk-forward fold returns of a compared experiment: `None` when it has no
/// `walk_forward` stage; an error when its folds blob is missing or unreadable.
fn fold_returns(
    store: &Store,
    row: &CatalogRow,
) -> Result<Option<BTreeMap<usize, Vec<f64>>>, String> {
    let Some(hex) = row
        .stages
        .iter()
        .find(|s| s.id == WALK_FORWARD_STAGE)
        .and_then(|s| s.outputs.get(FOLDS_OUTPUT))
    else {
        return Ok(None);
    };
    let digest = Digest::from_hex(hex)
        .ok_or_else(|| format!("{}: the catalog names a bad folds digest `{hex}`", row.name))?;
    let bytes = store.get_blob(&digest).ok_or_else(|| {
        format!(
            "{}: its walk-forward folds ({}) are not in the store; rebuild it (`hft build`)",
            row.name,
            digest.short()
        )
    })?;
    parse_fold_returns(&bytes)
        .map(Some)
        .map_err(|e| format!("{}: {e}", row.name))
}

/// A sweep's PBO, the names of its trials, and those of the experiments left out.
type PboOfRows = (SweepPbo, Vec<String>, Vec<String>);

/// The PBO of `rows` as a sweep; experiments without walk-forward folds are left out, and
/// none with them is an error naming `evaluation.walk_forward`.
fn pbo_of(store: &Store, rows: &[CatalogRow]) -> Result<PboOfRows, String> {
    let (mut folds, mut with, mut without) = (Vec::new(), Vec::new(), Vec::new());
    for r in rows {
        match fold_returns(store, r)? {
            Some(f) => {
                folds.push(f);
                with.push(r.name.clone());
            }
            None => without.push(r.name.clone()),
        }
    }
    if folds.is_empty() {
        return Err(match rows.len() {
            0 => format!("{NEEDS_FOLDS} (no built experiment matches)"),
            n => format!("{NEEDS_FOLDS} (none of the {n} experiments compared has them)"),
        });
    }
    Ok((sweep_pbo(&folds)?, with, without))
}

/// `hft compare --pbo`.
fn print_pbo(store: &Store, rows: &[CatalogRow], format: Format) -> Outcome {
    let (pbo, with, without) = match pbo_of(store, rows) {
        Ok(p) => p,
        Err(e) => return fail(&e),
    };
    if format == Format::Json {
        let mut doc = serde_json::to_value(&pbo).unwrap_or_default();
        doc["experiments"] = json!(with);
        doc["without_folds"] = json!(without);
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return Outcome::Ok;
    }
    let mut lines = vec![
        format!("{}.", pbo.sentence()),
        format!("trials: {}", with.join(", ")),
    ];
    if let Some(note) = pbo.fold_note() {
        lines.push(format!("note: {note}"));
    }
    if !without.is_empty() {
        lines.push(format!(
            "note: left out, without walk-forward folds: {}",
            without.join(", ")
        ));
    }
    term::print_block(&lines);
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
    fn tables_never_cut_a_value_and_turn_when_too_wide() {
        let header: Vec<String> = [
            "experiment",
            "optimizer.lr",
            "model.lr",
            "model.hidden_size",
            "skill.pooled",
        ]
        .map(String::from)
        .to_vec();
        // `lr` is ambiguous: both keep their paths; `hidden_size` is not.
        assert_eq!(
            short_config_headers(&header, 3),
            [
                "experiment",
                "optimizer.lr",
                "model.lr",
                "hidden_size",
                "skill.pooled"
            ]
        );
        let rows = vec![
            vec!["experiment".to_string(), "skill.pooled".to_string()],
            vec![
                "a-long-experiment-name".to_string(),
                "-0.123456789".to_string(),
            ],
        ];
        let wide = fitted(&rows, None);
        assert_eq!(wide.len(), 2);
        assert!(wide[1].contains("-0.123456789"));
        let turned = fitted(&rows, Some(20));
        assert_eq!(
            turned[0].split_whitespace().collect::<Vec<_>>(),
            ["experiment", "a-long-experiment-name"]
        );
        assert!(turned[1].ends_with("-0.123456789"), "{turned:?}");
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
    fn a_search_objective_leads_the_metric_columns() {
        let (mut c, files) = catalog();
        for r in &mut c.rows {
            r.config
                .insert("search.objective".to_string(), "\"price.mae\"".to_string());
            r.metrics.insert("price.mae".to_string(), 0.01);
        }
        let cmp = compare_rows(c, &files, &[], None, false, &[]);
        assert_eq!(
            cmp.metric_columns,
            vec!["price.mae", "skill.pooled", "backtest.strategy.sharpe"]
        );
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

    /// `row` trying evaluation `trial` on dataset `d` with per-bar Sharpe `sr`, its
    /// one-trial deflated figure included.
    fn trial(name: &str, trial: &str, sr: f64) -> CatalogRow {
        let mut r = row(name, "0.001", sr * 15.87);
        for (id, key) in [("dataset", "d"), ("evaluate", trial)] {
            r.stages.push(crate::catalog::CatalogStage {
                id: id.to_string(),
                key: key.to_string(),
                outputs: BTreeMap::new(),
                wall_ms: 0,
                ran: true,
            });
        }
        for (k, v) in [
            ("trials", 1.0),
            ("value", 0.9),
            ("sharpe", sr),
            ("observations", 250.0),
            ("skewness", 0.0),
            ("kurtosis", 3.0),
        ] {
            r.metrics.insert(format!("deflated_sharpe.{k}"), v);
        }
        r
    }

    #[test]
    fn the_deflated_sharpe_counts_every_trial_on_the_dataset() {
        let old = trial("a", "e0", 0.02);
        let mut rows = vec![trial("a", "e1", 0.1), trial("b", "e2", 0.05)];
        // `a`'s earlier evaluation is in the history, not among the compared rows.
        let trials = Trials::from_rows(rows.iter().chain([&old]));
        add_deflated_sharpe(&mut rows, &trials);
        let a = &rows[0];
        assert_eq!(a.metrics[DSR_TRIALS_METRIC], 3.0);
        let variance = {
            let m = (0.1 + 0.05 + 0.02) / 3.0;
            [0.1f64, 0.05, 0.02]
                .iter()
                .map(|x| (x - m).powi(2))
                .sum::<f64>()
                / 2.0
        };
        let want = crate::eval::stats::deflated_sharpe_ratio(0.1, 250, 0.0, 3.0, 3, variance);
        assert!((a.metrics[DSR_METRIC] - want.unwrap()).abs() < 1e-12);
        // Below the one-trial figure: selection from three is penalised.
        let one = crate::eval::stats::probabilistic_sharpe_ratio(0.1, 250, 0.0, 3.0, 0.0);
        assert!(a.metrics[DSR_METRIC] < one.unwrap());
        // `deflated_sharpe` names the derived column; the cell gives the trial count.
        let files = rows.iter().map(|r| PathBuf::from(&r.file)).collect();
        let catalog = Catalog {
            rows: rows.clone(),
            builds: vec![],
        };
        let metrics = ["deflated_sharpe".to_string()];
        let cmp = compare_rows(catalog, &files, &[], Some("dsr"), true, &metrics);
        assert_eq!(cmp.rows[0].name, "a");
        let text = metric_text(&cmp.rows[0], "deflated_sharpe").unwrap();
        assert!(text.ends_with(" (N=3)"), "{text}");
        assert!(HEADLINE_METRICS.contains(&DSR_METRIC));
    }

    fn walk_forward_row(
        store: &Store,
        name: &str,
        t: usize,
        edge: f64,
        folds: usize,
    ) -> CatalogRow {
        use crate::eval::overfitting::tests::{blob, returns};
        let blob = blob(
            &(0..folds)
                .map(|f| (f, returns(t, f, edge)))
                .collect::<Vec<_>>(),
        );
        let digest = store.put_blob(&blob).unwrap().digest;
        let mut r = row(name, "0.001", 1.0);
        r.stages.push(crate::catalog::CatalogStage {
            id: WALK_FORWARD_STAGE.to_string(),
            key: format!("k1-{name}"),
            outputs: BTreeMap::from([(FOLDS_OUTPUT.to_string(), digest.to_hex())]),
            wall_ms: 0,
            ran: true,
        });
        r
    }

    #[test]
    fn pbo_reads_each_experiments_walk_forward_folds() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut rows: Vec<CatalogRow> = (0..5)
            .map(|t| walk_forward_row(&store, &format!("lr{t}"), t, 0.004, 8))
            .collect();
        rows.push(row("plain", "0.1", 0.3));
        let (pbo, with, without) = pbo_of(&store, &rows).unwrap();
        assert_eq!((pbo.trials, pbo.blocks, pbo.combinations), (5, 8, 70));
        assert!(pbo.pbo < 0.05, "trial 0 has an edge: {pbo:?}");
        assert_eq!(with, ["lr0", "lr1", "lr2", "lr3", "lr4"]);
        assert_eq!(without, ["plain"]);
        // The same computation as on the folds themselves.
        let direct: Vec<_> = (0..5)
            .map(|t| {
                (0..8)
                    .map(|f| (f, crate::eval::overfitting::tests::returns(t, f, 0.004)))
                    .collect()
            })
            .collect();
        assert_eq!(sweep_pbo(&direct).unwrap(), pbo);

        // No experiment with folds: the message says what to set.
        let err = pbo_of(&store, &rows[5..]).unwrap_err();
        assert!(err.starts_with(NEEDS_FOLDS), "{err}");
        // A folds blob gone from the store is named.
        let gone = walk_forward_row(&store, "gone", 0, 0.0, 8);
        let hex = &gone.stages[0].outputs[FOLDS_OUTPUT];
        std::fs::remove_file(store.blob_path(&Digest::from_hex(hex).unwrap())).unwrap();
        let err = pbo_of(&store, &[rows[0].clone(), gone]).unwrap_err();
        assert!(err.starts_with("gone: its walk-forward folds"), "{err}");
    }
}
