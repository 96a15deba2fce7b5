//! Experiment management on a small built project: `hft ls`, `show`, `compare`, `explain`,
//! completions and man pages.

mod common;

use common::{Project, csv_bars};

fn experiment(name: &str, lr: &str) -> String {
    format!(
        "\
name: {name}
seed: 1
data:
  source: local
  path: trainingdata
  symbols: [AAA]
  features: [close, log_return, ma_5]
  sequence_length: 8
  prediction_horizon: 2
  split: {{train: 0.6, val: 0.2, test: 0.2}}
model: {{type: mlp, hidden_size: 8, num_layers: 1, dropout: 0.0}}
optimizer: {{type: adamw, lr: {lr}}}
training: {{max_steps: 4, batch_size: 16, warmup_steps: 1}}
"
    )
}

fn project() -> Project {
    let p = Project::new("manage");
    p.write("trainingdata/AAA.csv", &csv_bars(200, 1));
    p.write("experiments/slow.yaml", &experiment("slow", "0.0001"));
    p.write("experiments/fast.yaml", &experiment("fast", "0.01"));
    p
}

fn json(run: &common::Run) -> serde_json::Value {
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

#[test]
fn ls_tells_new_built_and_stale_apart() {
    let p = project();
    let before = json(&p.hft(&["ls", "--json"]));
    assert!(
        before
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["state"] == "new")
    );
    p.build();
    let built = json(&p.hft(&["ls", "--json"]));
    for e in built.as_array().unwrap() {
        assert_eq!(e["state"], "built", "{e}");
        assert!(e["metrics"]["backtest.strategy.sharpe"].is_number(), "{e}");
        assert_eq!(e["model"], "mlp");
    }
    p.write("experiments/fast.yaml", &experiment("fast", "0.02"));
    let stale = json(&p.hft(&["ls", "--json"]));
    let fast = stale
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "fast")
        .unwrap();
    assert_eq!(fast["state"], "stale");
    assert_eq!(
        fast["stale_stages"],
        serde_json::json!(["train", "evaluate"])
    );
    // The table form names every experiment and its state.
    let table = p.hft(&["ls"]);
    assert_eq!(table.code, 0);
    assert!(
        table.stdout.contains("stale (train, evaluate)"),
        "{}",
        table.stdout
    );
    assert!(table.stdout.contains("slow"), "{}", table.stdout);
    assert!(!table.stdout.contains('\x1b'), "no colours when piped");
}

#[test]
fn show_gives_config_keys_log_and_metrics() {
    let p = project();
    p.build();
    let doc = json(&p.hft(&["show", "fast", "--json"]));
    assert_eq!(doc["config"]["optimizer"]["lr"], 0.01);
    let stages = doc["stages"].as_array().unwrap();
    let train = stages.iter().find(|s| s["id"] == "train").unwrap();
    assert_eq!(train["state"], "built");
    assert!(train["key"].as_str().unwrap().starts_with("k1-"));
    assert_eq!(
        train["outputs"]["checkpoint"]["digest"]
            .as_str()
            .unwrap()
            .len(),
        64
    );
    assert!(!doc["train_log"]["epochs"].as_array().unwrap().is_empty());
    assert!(doc["metrics"]["price"]["mse"].is_number());
    let text = p.hft(&["show", "fast"]);
    assert_eq!(text.code, 0, "{}", text.stderr);
    for section in ["## config", "## stages", "## training log", "## metrics"] {
        assert!(text.stdout.contains(section), "{section}: {}", text.stdout);
    }
    let typo = p.hft(&["show", "fats"]);
    assert_eq!(typo.code, 2);
    assert!(
        typo.stderr.contains("did you mean `fast`"),
        "{}",
        typo.stderr
    );
}

#[test]
fn compare_lists_differing_config_and_metrics_in_every_format() {
    let p = project();
    p.build();
    let rows = json(&p.hft(&["compare", "--json"]));
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    // Only the learning rate differs between the two.
    let config = rows[0]["config"].as_object().unwrap();
    assert_eq!(config.keys().collect::<Vec<_>>(), vec!["optimizer.lr"]);
    let csv = p.hft(&["compare", "--csv", "--sort", "optimizer.lr"]);
    assert_eq!(csv.code, 0, "{}", csv.stderr);
    let lines: Vec<&str> = csv.stdout.lines().collect();
    assert!(
        lines[0].starts_with("experiment,optimizer.lr,"),
        "{}",
        lines[0]
    );
    assert!(lines[1].starts_with("slow,0.0001,"), "{}", csv.stdout);
    assert!(lines[2].starts_with("fast,0.01,"), "{}", csv.stdout);
    let desc = p.hft(&["compare", "--csv", "--sort", "optimizer.lr", "--reverse"]);
    assert!(desc.stdout.lines().nth(1).unwrap().starts_with("fast,"));
    let md = p.hft(&["compare", "--md"]);
    assert!(
        md.stdout.starts_with("| experiment | optimizer.lr |"),
        "{}",
        md.stdout
    );
    let filtered = json(&p.hft(&["compare", "--json", "--filter", "optimizer.lr>0.001"]));
    assert_eq!(filtered.as_array().unwrap().len(), 1);
    assert_eq!(filtered[0]["name"], "fast");
    let bad = p.hft(&["compare", "--filter", "sharpe"]);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("KEY OP VALUE"), "{}", bad.stderr);
}

#[test]
fn compare_deflates_each_sharpe_by_the_trials_on_its_dataset() {
    let p = Project::new("manage-dsr");
    p.write("trainingdata/AAA.csv", &csv_bars(200, 1));
    // Positions from the predicted sign: the bar returns vary, so each Sharpe is defined.
    let priced =
        |name: &str, lr: &str| format!("{}evaluation: {{signal: price}}\n", experiment(name, lr));
    p.write("experiments/slow.yaml", &priced("slow", "0.0001"));
    p.write("experiments/fast.yaml", &priced("fast", "0.01"));
    p.build();
    let deflated = |trials: u64| {
        let rows = json(&p.hft(&["compare", "--json", "--metric", "deflated_sharpe"]));
        assert_eq!(rows.as_array().unwrap().len(), 2);
        for r in rows.as_array().unwrap() {
            let (d, m) = (&r["deflated_sharpe"], &r["metrics"]);
            // Two evaluations of one dataset: each Sharpe is deflated as one of them.
            assert_eq!(d["trials"], trials, "{r}");
            assert_eq!(m["dsr.trials"], trials as f64, "{r}");
            assert_eq!(m["dsr"], d["value"], "{r}");
            // metrics.json holds the figure as one trial; more trials only lower it.
            assert_eq!(m["deflated_sharpe.trials"], 1.0, "{r}");
            let one = m["deflated_sharpe.value"].as_f64().unwrap();
            assert!(d["value"].as_f64().unwrap() <= one, "{r}");
        }
    };
    deflated(2);
    let table = p.hft(&["compare"]);
    assert_eq!(table.code, 0, "{}", table.stderr);
    assert!(table.stdout.contains("dsr"), "{}", table.stdout);
    assert!(table.stdout.contains("(N=2)"), "{}", table.stdout);

    // A learning rate tried and abandoned is still a trial: the catalog remembers it.
    p.write("experiments/fast.yaml", &priced("fast", "0.02"));
    p.build();
    deflated(3);
    let show = json(&p.hft(&["show", "fast", "--json"]));
    assert_eq!(show["deflated_sharpe"]["trials"], 3, "{show}");
    let report = p.hft(&["report", "-o", "r.html"]);
    assert_eq!(report.code, 0, "{}", report.stderr);
    let html = std::fs::read_to_string(p.path("r.html")).unwrap();
    assert!(html.contains("deflated Sharpe (N trials)") && html.contains("(N=3)"));

    // No walk-forward folds: --pbo says what to set.
    let pbo = p.hft(&["compare", "--pbo"]);
    assert_eq!(pbo.code, 2, "{}", pbo.stdout);
    assert!(
        pbo.stderr
            .contains("PBO needs walk-forward folds: set evaluation.walk_forward"),
        "{}",
        pbo.stderr
    );
}

#[test]
fn explain_names_the_edit_and_what_it_reruns() {
    let p = project();
    p.build();
    let clean = p.hft(&["explain", "fast"]);
    assert!(clean.stdout.contains("everything hits"), "{}", clean.stdout);

    // A learning-rate edit: train and evaluate re-run, the data stages hit.
    p.write("experiments/fast.yaml", &experiment("fast", "0.02"));
    let doc = json(&p.hft(&["explain", "fast", "--json"]));
    let causes = doc["causes"].as_array().unwrap();
    assert_eq!(causes.len(), 1, "{doc}");
    let cause = causes[0]["cause"].as_str().unwrap();
    assert!(cause.starts_with("optimizer.lr 0.01 -> 0.02"), "{cause}");
    assert_eq!(
        causes[0]["stages"],
        serde_json::json!(["train", "evaluate"])
    );
    assert_eq!(
        doc["hits"],
        serde_json::json!(["ingest:AAA", "features", "dataset", "init"])
    );
    let text = p.hft(&["explain", "fast"]);
    assert!(
        text.stdout.contains("train, evaluate re-run"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout
            .contains("hit: ingest:AAA, features, dataset, init")
    );
    p.build();

    // Appended bars: the data file is named with its row counts before and after.
    p.write("trainingdata/AAA.csv", &csv_bars(210, 1));
    let doc = json(&p.hft(&["explain", "slow", "--json"]));
    let cause = doc["causes"][0]["cause"].as_str().unwrap();
    assert!(cause.contains("AAA.csv changed (200 -> 210 rows)"), "{doc}");
    let stages = doc["causes"][0]["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 6, "{doc}");

    // A feature edit re-runs from features on; ingest hits.
    p.build();
    p.write(
        "experiments/slow.yaml",
        &experiment("slow", "0.0001").replace("ma_5]", "ma_5, rsi_14]"),
    );
    let doc = json(&p.hft(&["explain", "slow", "--json"]));
    assert!(
        doc["causes"][0]["cause"]
            .as_str()
            .unwrap()
            .starts_with("data.features"),
        "{doc}"
    );
    assert_eq!(doc["hits"], serde_json::json!(["ingest:AAA"]));
}

#[test]
fn completions_and_man_pages_come_from_the_cli_definition() {
    let p = project();
    for shell in ["bash", "zsh", "fish"] {
        let run = p.hft(&["completions", shell]);
        assert_eq!(run.code, 0, "{shell}: {}", run.stderr);
        assert!(
            run.stdout.contains("COMPLETE=") || run.stdout.contains("COMPLETE\""),
            "{shell}: {}",
            run.stdout
        );
    }
    // What the registered script asks: subcommands, experiment names, config keys and
    // (once something is built) metric names.
    let complete = |words: &[&str]| -> Vec<String> {
        let mut args = vec!["--", "hft"];
        args.extend_from_slice(words);
        let run = p.hft_env(&args, &[("COMPLETE", "fish")]);
        assert_eq!(run.code, 0, "{words:?}: {}", run.stderr);
        run.stdout
            .lines()
            .map(|l| l.split('\t').next().unwrap().to_string())
            .collect()
    };
    assert!(complete(&["comp"]).contains(&"compare".to_string()));
    let names = complete(&["show", ""]);
    assert!(
        names.iter().any(|n| n == "fast") && names.iter().any(|n| n == "slow"),
        "{names:?}"
    );
    assert_eq!(
        complete(&["build", "--set", "optimizer.l"]),
        vec!["optimizer.lr="]
    );
    p.build();
    let metrics = complete(&["compare", "--metric", "price.dir"]);
    assert_eq!(metrics, vec!["price.directional_accuracy"]);
    let run = p.hft(&["man", "man"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let page = std::fs::read_to_string(p.path("man/hft.1")).unwrap();
    assert!(page.contains(".TH hft"), "{page}");
    assert!(p.path("man/hft-compare.1").is_file());
    let help = p.hft(&["--help"]);
    assert!(help.stdout.contains("Exit codes:"), "{}", help.stdout);
}

#[test]
fn build_and_status_speak_json() {
    let p = project();
    let plan = json(&p.hft(&["status", "--json"]));
    assert_eq!(plan["dry_run"], true);
    // Two experiments sharing ingest, features, dataset and init: those count once, as
    // they will run once (4 + 2 x train and evaluate).
    assert_eq!(plan["stale"], 8, "{plan}");
    let built = json(&p.hft(&["build", "--json"]));
    // The two share every stage before train: those run once.
    assert_eq!(
        (built["ran"].clone(), built["cached"].clone()),
        (8.into(), 4.into()),
        "{built}"
    );
    let exp = &built["experiments"][0];
    let train = exp["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "train")
        .unwrap();
    assert!(train["secs"].is_number(), "{train}");
    assert_eq!(train["outputs"]["checkpoint"].as_str().unwrap().len(), 64);
    let again = json(&p.hft(&["build", "--json"]));
    assert_eq!(
        (again["ran"].clone(), again["cached"].clone()),
        (0.into(), 12.into())
    );
}

/// `hft status` prints what would run and why; what is up to date only with `-v`.
#[test]
fn status_lists_what_would_run_and_counts_the_rest() {
    let p = project();
    p.hft(&["build", "-q"]);
    let clean = p.hft(&["status"]);
    assert!(
        clean
            .stdout
            .contains("fast (experiments/fast.yaml): up to date (6 stages)"),
        "{}",
        clean.stdout
    );
    p.write("experiments/fast.yaml", &experiment("fast", "0.02"));
    let edited = p.hft(&["status"]);
    assert!(edited.stdout.contains("  train "), "{}", edited.stdout);
    assert!(!edited.stdout.contains("  dataset "), "{}", edited.stdout);
    assert!(
        edited.stdout.contains("(4 up to date; -v lists them)"),
        "{}",
        edited.stdout
    );
    let verbose = p.hft(&["status", "-v"]);
    assert!(verbose.stdout.contains("  dataset "), "{}", verbose.stdout);
    // `show` still has the last build's results, marked as such.
    let show = p.hft(&["show", "fast", "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    assert_eq!(doc["results_stale"], true, "{}", show.stdout);
    assert!(doc["metrics"]["skill"].is_object(), "{}", show.stdout);
    assert!(doc["train_log"]["epochs"].is_array(), "{}", show.stdout);
    let text = p.hft(&["show", "fast"]);
    assert!(
        text.stdout
            .contains("the results below are the last build's"),
        "{}",
        text.stdout
    );
}
