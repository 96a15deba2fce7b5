//! `hft build` as a build system: what re-executes after which edit.

mod common;

use common::{Project, csv_bars};

const EXPERIMENT: &str = "\
name: exp
seed: 1
data:
  source: local
  path: trainingdata
  symbols: [AAA, BBB]
  features: [close, log_return, ma_5, rsi_14]
  sequence_length: 10
  prediction_horizon: 2
  split: {train: 0.6, val: 0.2, test: 0.2}
model: {type: mlp, hidden_size: 8, num_layers: 1, dropout: 0.0}
training: {max_steps: 4, batch_size: 16, warmup_steps: 1}
";

fn project() -> Project {
    let p = Project::new("build");
    p.write("trainingdata/AAA.csv", &csv_bars(300, 1));
    p.write("trainingdata/BBB.csv", &csv_bars(300, 2));
    p.write("experiments/exp.yaml", EXPERIMENT);
    p
}

/// The stages of `exp` that ran, in pipeline order, starting from `first` ("features",
/// ...): `first` and everything after it in the chain.
fn from(run: &common::Run, first: &str) -> Vec<String> {
    let order: Vec<String> = run
        .states()
        .keys()
        .filter(|(e, _)| e == "exp")
        .map(|(_, s)| s.clone())
        .collect();
    let chain = [
        "ingest:AAA",
        "ingest:BBB",
        "features",
        "dataset",
        "init",
        "train",
        "evaluate",
    ];
    let start = chain.iter().position(|s| *s == first).unwrap();
    chain[start..]
        .iter()
        .filter(|s| order.contains(&s.to_string()))
        .map(|s| format!("exp/{s}"))
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn second_build_executes_nothing() {
    let p = project();
    let first = p.build();
    assert!(
        first.ran().contains(&"exp/dataset".to_string()),
        "{}",
        first.stdout
    );
    let second = p.build();
    assert!(second.ran().is_empty(), "{}", second.stdout);
    assert!(!second.with_state("cached").is_empty());
}

#[test]
fn sequence_length_reruns_dataset_and_what_reads_it() {
    let p = project();
    p.build();
    p.write(
        "experiments/exp.yaml",
        &EXPERIMENT.replace("sequence_length: 10", "sequence_length: 12"),
    );
    let run = p.build();
    assert_eq!(
        sorted(run.ran()),
        sorted(from(&run, "dataset")),
        "{}",
        run.stdout
    );
}

#[test]
fn features_change_reruns_features_and_dataset() {
    let p = project();
    p.build();
    p.write(
        "experiments/exp.yaml",
        &EXPERIMENT.replace("rsi_14]", "rsi_14, macd]"),
    );
    let run = p.build();
    assert_eq!(
        sorted(run.ran()),
        sorted(from(&run, "features")),
        "{}",
        run.stdout
    );
}

#[test]
fn touching_a_data_file_reruns_nothing_and_editing_a_byte_reruns_from_ingest() {
    let p = project();
    p.build();
    let file = p.path("trainingdata/AAA.csv");
    let bytes = std::fs::read(&file).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&file, &bytes).unwrap(); // same bytes, new mtime
    let run = p.build();
    assert!(run.ran().is_empty(), "{}", run.stdout);

    // Change the last digit of one close price, well after the warm-up rows.
    let text = String::from_utf8(bytes).unwrap();
    let line = text.lines().nth(200).unwrap().to_string();
    let mut fields: Vec<String> = line.split(',').map(str::to_string).collect();
    let close = fields[4].clone();
    let last = close.chars().last().unwrap().to_digit(10).unwrap();
    fields[4] = format!("{}{}", &close[..close.len() - 1], (last + 1) % 10);
    std::fs::write(&file, text.replacen(&line, &fields.join(","), 1)).unwrap();
    let status = p.hft(&["status"]);
    assert!(
        status
            .stdout
            .contains("data file trainingdata/AAA.csv changed"),
        "{}",
        status.stdout
    );
    let run = p.build();
    // `init` reads only the dataset's shape, which new values do not change.
    let mut expected: Vec<String> = from(&run, "features")
        .into_iter()
        .filter(|s| s != "exp/init")
        .collect();
    expected.push("exp/ingest:AAA".to_string());
    assert_eq!(sorted(run.ran()), sorted(expected), "{}", run.stdout);
}

#[test]
fn comments_key_order_and_formatting_change_nothing() {
    let p = project();
    p.build();
    let reformatted = "\
# the same experiment, written differently
seed: 1
training: {batch_size: 16, max_steps: 4, warmup_steps: 1}   # flow style
model:
  dropout: 0.0
  num_layers: 1
  hidden_size: 8
  type: mlp
data:
  prediction_horizon: 2
  sequence_length: 10.0e0
  split:
    test: 0.2
    val: 0.2
    train: 0.60
  features:
    - close
    - log_return
    - ma_5
    - rsi_14
  symbols: [AAA, BBB]
  path: trainingdata
  source: local
name: exp
";
    // sequence_length must be an integer: a float spelling is a type error, not a silent
    // conversion; use the integer with a different layout instead.
    let reformatted = reformatted.replace("10.0e0", "10");
    p.write("experiments/exp.yaml", &reformatted);
    let run = p.build();
    assert!(run.ran().is_empty(), "{}", run.stdout);
}

#[test]
fn equal_data_sections_build_the_dataset_once() {
    let p = project();
    p.write(
        "experiments/twin.yaml",
        &EXPERIMENT
            .replace("name: exp", "name: twin")
            .replace("seed: 1", "seed: 2"),
    );
    let run = p.build();
    let datasets: Vec<String> = run
        .ran()
        .into_iter()
        .filter(|s| s.ends_with("/dataset") || s.ends_with("/features") || s.contains("/ingest"))
        .collect();
    // ingest x2 symbols, features, dataset: once in total, the other experiment hits.
    assert_eq!(datasets.len(), 4, "{}", run.stdout);
    let cached: Vec<String> = run.with_state("cached");
    assert_eq!(cached.len(), 4, "{}", run.stdout);
}

/// Stage outputs of 8 MiB and more are written in the background while the next stage
/// runs (`graph::exec::Background`): a second experiment needing the same keys waits for
/// the writer's key lock and then finds the record, so each stage still runs once, and
/// every blob a record names is on disk, intact, when the build ends.
#[test]
fn large_outputs_stored_in_the_background_are_built_once_and_complete() {
    let p = Project::new("build-held");
    let large = |name: &str, seed: u32| {
        format!(
            "name: {name}\nseed: {seed}\ndata:\n  source: synthetic\n  symbols: [S1]\n  \
             synthetic: {{bars: 110000}}\n  features: [close, log_return, ma_50, ema_20, rsi_14, \
             macd_signal, bb_position, volatility_ratio]\n  sequence_length: 16\n  \
             prediction_horizon: 3\nmodel: {{type: mlp, hidden_size: 4, num_layers: 1, \
             dropout: 0.0}}\n"
        )
    };
    p.write("experiments/a.yaml", &large("a", 1));
    p.write("experiments/b.yaml", &large("b", 2));
    let run = p.hft(&["build", "-j", "2", "--until", "dataset"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        run.ran().len(),
        3,
        "ingest, features, dataset once:\n{}",
        run.stdout
    );
    assert_eq!(run.with_state("cached").len(), 3, "{}", run.stdout);
    // The dataset's rows are the features blob itself, named by both records and stored
    // once: bars, features, the features' state for extending them, and the dataset's own
    // small blob.
    let objects = walkdir::WalkDir::new(p.path("cache/objects"))
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().display().to_string())
        .collect::<Vec<_>>();
    assert_eq!(
        objects.len(),
        4,
        "bars, features (= the dataset's rows), state, dataset: {objects:?}"
    );
    let verify = p.hft(&["cache", "verify"]);
    assert_eq!(verify.code, 0, "{}\n{}", verify.stdout, verify.stderr);
    let again = p.hft(&["build", "-j", "2", "--until", "dataset"]);
    assert!(again.ran().is_empty(), "{}", again.stdout);
}

#[test]
fn dry_run_executes_nothing_and_explains() {
    let p = project();
    let plan = p.hft(&["build", "--dry-run"]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(plan.stdout.contains("never built"), "{}", plan.stdout);
    assert!(plan.ran().is_empty());
    p.build();
    p.write(
        "experiments/exp.yaml",
        &EXPERIMENT.replace("sequence_length: 10", "sequence_length: 12"),
    );
    let plan = p.hft(&["build", "--dry-run"]);
    assert!(
        plan.stdout
            .contains("data.sequence_length 10 -> 12 (experiments/exp.yaml:8)"),
        "{}",
        plan.stdout
    );
    let again = p.hft(&["build", "--dry-run"]);
    assert_eq!(plan.stdout.lines().count(), again.stdout.lines().count());
}

#[test]
fn corrupt_blob_is_detected_and_rebuilt() {
    let p = project();
    p.build();
    // Corrupt every blob in the store (same size, other bytes).
    let objects = p.path("cache/objects");
    let mut corrupted = 0;
    for entry in walkdir::WalkDir::new(&objects) {
        let entry = entry.unwrap();
        if entry.file_type().is_file() {
            let path = entry.path();
            let mut bytes = std::fs::read(path).unwrap();
            bytes[0] ^= 0xff;
            let mut perms = std::fs::metadata(path).unwrap().permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(false);
            std::fs::set_permissions(path, perms).unwrap();
            std::fs::write(path, bytes).unwrap();
            corrupted += 1;
        }
    }
    assert!(corrupted > 0);
    // A downstream stage that reads the corrupt blobs must notice and rebuild them.
    p.write(
        "experiments/exp.yaml",
        &EXPERIMENT.replace("sequence_length: 10", "sequence_length: 11"),
    );
    let run = p.build();
    assert!(run.stderr.contains("corrupt"), "{}", run.stderr);
    assert!(
        run.ran().contains(&"exp/ingest:AAA".to_string()),
        "{}",
        run.stdout
    );
    // Everything in the store verifies again.
    let verify = p.build();
    assert!(verify.ran().is_empty(), "{}", verify.stdout);
}

#[test]
fn cache_location_follows_flag_and_environment() {
    let p = project();
    let run = p.hft(&["build", "--cache-dir", "elsewhere"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        p.path("elsewhere/actions")
            .read_dir()
            .unwrap()
            .next()
            .is_some()
    );
    assert!(!p.path("cache").exists());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hft"))
        .args(["build"])
        .current_dir(&p.dir)
        .env("HFT_CACHE_DIR", p.path("from-env"))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        p.path("from-env/actions")
            .read_dir()
            .unwrap()
            .next()
            .is_some()
    );
}

/// The real daily files of ../shared/data build, ORCL through its adjusted close.
#[test]
fn real_daily_files_build_when_present() {
    let Some(shared) = common::shared_data() else {
        eprintln!("skipped: ../shared/data not present");
        return;
    };
    let p = Project::new("real");
    let daily = shared.join("daily");
    // Data outside the project is only read when named on the command line.
    let experiment = "data:\n  source: local\n  symbols: [AAPL, GOOGL, MSFT, NVDA, ORCL]\n  sequence_length: 20\n\
         model: {type: mlp, hidden_size: 4, num_layers: 1, dropout: 0.0}\n\
         training: {max_steps: 2, batch_size: 16, warmup_steps: 1}\n";
    p.write("experiments/real.yaml", experiment);
    let set = format!("data.path={}", daily.display());
    let run = p.hft(&["build", "-j", "2", "--set", &set]);
    assert_eq!(run.code, 0, "build failed:\n{}\n{}", run.stdout, run.stderr);
    assert!(
        run.ran().contains(&"real/ingest:ORCL".to_string()),
        "{}",
        run.stdout
    );
    // The ingest summary records the rows read: ORCL has 5036 bars.
    let actions = p.path("cache/actions");
    let orcl = std::fs::read_dir(actions)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .find(|t| t.contains("\"stage\": \"ingest:ORCL\""))
        .expect("ORCL ingest record");
    assert!(orcl.contains("\"rows\": 5036"), "{orcl}");
}

#[test]
fn until_builds_the_data_stages_only_and_forgets_nothing() {
    let p = project();
    p.build();
    let lock = std::fs::read_to_string(p.path("hft.lock")).unwrap();
    // A new feature: with --until dataset, only the data stages re-run.
    p.write(
        "experiments/exp.yaml",
        &EXPERIMENT.replace("rsi_14]", "rsi_14, ma_20]"),
    );
    let partial = p.hft(&["build", "--until", "dataset"]);
    assert_eq!(partial.code, 0, "{}", partial.stderr);
    assert_eq!(
        sorted(partial.ran()),
        sorted(vec!["exp/features".into(), "exp/dataset".into()])
    );
    assert!(!partial.stdout.contains("train"), "{}", partial.stdout);
    // The lock still describes the last full build.
    assert_eq!(std::fs::read_to_string(p.path("hft.lock")).unwrap(), lock);
    let full = p.build();
    assert_eq!(
        sorted(full.ran()),
        sorted(vec![
            "exp/init".into(),
            "exp/train".into(),
            "exp/evaluate".into()
        ])
    );
    let bad = p.hft(&["build", "--until", "trian"]);
    assert_eq!(bad.code, 2);
}

/// Builds until a no-op build is answered from the memo (the first builds after files were
/// written may not trust their fingerprints yet).
fn settle(p: &Project) -> common::Run {
    for _ in 0..5 {
        std::thread::sleep(std::time::Duration::from_millis(30));
        let run = p.build();
        if run.stdout.contains("nothing changed since the last build") {
            return run;
        }
    }
    panic!("no build was answered from the memo");
}

#[test]
fn a_no_op_build_is_answered_from_the_memo_until_something_changes() {
    let p = project();
    p.write("templates/base.yaml", "evaluation: {cost_bps: 5.0}\n");
    p.write(
        "experiments/exp.yaml",
        &format!("extends: templates/base.yaml\n{EXPERIMENT}"),
    );
    let full = p.build();
    let memo = settle(&p);
    // The memo prints what a planned no-op build prints.
    let planned = {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hft"))
            .args(["build", "-j", "2"])
            .current_dir(&p.dir)
            .env("HFT_NO_MEMO", "1")
            .output()
            .unwrap();
        common::Run::from(out)
    };
    assert_eq!(memo.states(), planned.states());
    assert!(memo.ran().is_empty());
    assert_eq!(memo.with_state("cached").len(), full.states().len());
    assert!(
        memo.stdout.contains("sharpe"),
        "the results table: {}",
        memo.stdout
    );

    // An edit of the experiment file.
    p.write(
        "experiments/exp.yaml",
        &format!("extends: templates/base.yaml\n{EXPERIMENT}")
            .replace("max_steps: 4", "max_steps: 5"),
    );
    let edited = p.build();
    assert_eq!(
        sorted(edited.ran()),
        sorted(vec!["exp/train".into(), "exp/evaluate".into()])
    );
    settle(&p);

    // An edit of a template it extends.
    p.write("templates/base.yaml", "evaluation: {cost_bps: 9.0}\n");
    let reseeded = p.build();
    assert!(
        reseeded.ran() == vec!["exp/evaluate".to_string()],
        "{}",
        reseeded.stdout
    );
    settle(&p);

    // A new experiment file in the searched folder.
    p.write(
        "experiments/other.yaml",
        &EXPERIMENT.replace("name: exp", "name: other"),
    );
    let added = p.build();
    assert!(added.stdout.contains("other ("), "{}", added.stdout);
    settle(&p);

    // Appended bars in a data file.
    p.write("trainingdata/AAA.csv", &csv_bars(310, 1));
    let appended = p.build();
    // Both experiments read AAA; whichever is scheduled first runs the shared
    // ingest stage and the other finds it cached.
    assert!(
        appended.ran().iter().any(|s| s.ends_with("/ingest:AAA")),
        "{}",
        appended.stdout
    );
    settle(&p);

    // A blob lost from the store: its stage runs again.
    let blobs: Vec<std::path::PathBuf> = walk(&p.path("cache/objects"));
    for b in &blobs {
        let mut perm = std::fs::metadata(b).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perm.set_readonly(false);
        std::fs::set_permissions(b, perm).unwrap();
        std::fs::remove_file(b).unwrap();
    }
    let rebuilt = p.build();
    assert!(!rebuilt.ran().is_empty(), "{}", rebuilt.stdout);
    assert!(!rebuilt.stdout.contains("nothing changed"));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}
