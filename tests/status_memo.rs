//! The status memo: `hft status` of a project where every stage is up to date is answered
//! from `cache/memo/` without planning; what it prints is what planning prints, and every
//! change planning would notice (an edited experiment, a changed data file, a removed blob,
//! an action record edited in place) takes the planning path again.

mod common;

use common::Project;

/// `hft status ARGS` with the memo and without it (`HFT_NO_MEMO`): both must succeed with
/// the same lines (sorted: planning prints each experiment as it finishes) but the summary's
/// time, and the same warnings. Returns the memo's answer.
fn status(p: &Project, args: &[&str]) -> (Vec<String>, String) {
    let run = |env: &[(&str, &str)]| {
        let mut all = vec!["status"];
        all.extend_from_slice(args);
        let run = p.hft_env(&all, env);
        assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
        let mut lines: Vec<String> = run
            .stdout
            .lines()
            .map(|l| match l.find(" up to date (") {
                Some(i) if l.contains(" experiments: ") => l[..i].to_string(),
                _ => l.to_string(),
            })
            .collect();
        lines.sort();
        (lines, run.stderr)
    };
    let planned = run(&[("HFT_NO_MEMO", "1")]);
    let answered = run(&[]);
    assert_eq!(answered, planned, "the memo changed what status says");
    answered
}

fn memo_files(p: &Project) -> usize {
    std::fs::read_dir(p.path("cache/memo"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn status_from_the_memo_says_what_planning_says() {
    let p = Project::with_local_data("status-memo", common::LOCAL_EXPERIMENT);
    p.write(
        "experiments/other.yaml",
        &common::LOCAL_EXPERIMENT.replace("name: exp", "name: other"),
    );
    p.build();
    let before = memo_files(&p);
    // The first status plans and writes the memo; the next ones answer from it.
    let (lines, _) = status(&p, &[]);
    assert!(memo_files(&p) > before, "no status memo written");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("exp (") && l.contains("up to date"))
    );
    for args in [&[][..], &["-q"], &["-v"]] {
        let (first, _) = status(&p, args);
        assert_eq!(status(&p, args).0, first);
    }

    // An edited experiment.
    p.write(
        "experiments/other.yaml",
        &common::LOCAL_EXPERIMENT
            .replace("name: exp", "name: other")
            .replace("hidden_size: 4", "hidden_size: 5"),
    );
    let (lines, _) = status(&p, &[]);
    assert!(lines.iter().any(|l| l.contains("would run")), "{lines:?}");
    std::fs::remove_file(p.path("experiments/other.yaml")).unwrap();
    status(&p, &[]);

    // A data file changed.
    let data = std::fs::read_to_string(p.path("trainingdata/AAA.csv")).unwrap();
    p.write("trainingdata/AAA.csv", &common::csv_bars(120, 9));
    let (lines, _) = status(&p, &[]);
    assert!(lines.iter().any(|l| l.contains("ingest:AAA")), "{lines:?}");
    p.write("trainingdata/AAA.csv", &data);
    let (lines, _) = status(&p, &[]);
    assert!(!lines.iter().any(|l| l.contains("ingest:AAA")), "{lines:?}");

    // An action record edited in place, its size kept: the seal check finds it.
    let records = p.action_records();
    let record = p.path(&format!("cache/actions/{}", records.iter().next().unwrap()));
    let text = std::fs::read_to_string(&record).unwrap();
    let at = text.find("\"wall_ms\": ").unwrap() + "\"wall_ms\": ".len();
    let digit = if &text[at..at + 1] == "7" { "8" } else { "7" };
    let edited = format!("{}{digit}{}", &text[..at], &text[at + 1..]);
    assert_eq!(edited.len(), text.len());
    std::fs::write(&record, &edited).unwrap();
    let (_, warnings) = status(&p, &[]);
    assert!(
        warnings.contains("changed after it was written"),
        "{warnings}"
    );
    std::fs::write(&record, &text).unwrap();
    status(&p, &[]);
    let (_, warnings) = status(&p, &[]);
    assert!(warnings.is_empty(), "{warnings}");

    // A blob removed.
    let blob = walk(&p.path("cache/objects")).into_iter().next().unwrap();
    std::fs::remove_file(&blob).unwrap();
    let (lines, warnings) = status(&p, &[]);
    assert!(warnings.contains("missing from the store"), "{warnings}");
    assert!(lines.iter().any(|l| l.contains("would run")), "{lines:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// Experiment files `e0.yaml` ... `e5.yaml` sharing their data stages (seeds differ).
fn six_experiments(tag: &str) -> Project {
    let p = Project::with_local_data(tag, common::LOCAL_EXPERIMENT);
    std::fs::remove_file(p.path("experiments/exp.yaml")).unwrap();
    for i in 0..6 {
        p.write(&format!("experiments/e{i}.yaml"), &experiment(i, i));
    }
    p
}

fn experiment(i: usize, seed: usize) -> String {
    format!("name: e{i}\nseed: {seed}\n{}", common::LOCAL_BODY)
}

/// [`status`], with the per-file index removed first: the shards the answer wrote back are
/// the files it planned (one shard: only the changed file was planned; several: all were).
fn status_planning(p: &Project, args: &[&str]) -> (Vec<String>, String, usize) {
    let index = p.path("cache/index");
    let _ = std::fs::remove_dir_all(&index);
    let mut all = vec!["status"];
    all.extend_from_slice(args);
    let answered = p.hft(&all);
    assert_eq!(answered.code, 0, "{}\n{}", answered.stdout, answered.stderr);
    let shards = if index.exists() {
        walk(&index).len()
    } else {
        0
    };
    let (lines, warnings) = status(p, args);
    (lines, warnings, shards)
}

#[test]
fn a_status_plans_only_the_experiments_that_changed() {
    let p = six_experiments("status-partial");
    p.build();
    // The first status plans all six and writes the memo; the next answers from it.
    assert!(status_planning(&p, &[]).2 > 1);
    assert_eq!(status_planning(&p, &["-q"]).2, 0);

    // An edited experiment: only its file is planned, before and after it is built.
    p.write("experiments/e1.yaml", &experiment(1, 99));
    for args in [&[][..], &["-v"], &["-q"]] {
        let (lines, _, shards) = status_planning(&p, args);
        assert_eq!(shards, 1, "{args:?}");
        assert!(
            lines.iter().any(|l| l.contains(": 3 stages would run")),
            "{lines:?}"
        );
    }
    p.build();
    let (lines, _, shards) = status_planning(&p, &[]);
    assert_eq!(shards, 1);
    assert!(
        lines.iter().any(|l| l.contains(": 0 stages would run")),
        "{lines:?}"
    );
    assert_eq!(status_planning(&p, &[]).2, 0, "the rewritten memo answers");

    // An action record of one experiment edited in place (its size kept): that experiment
    // is planned, and its seal check warns as planning in full does.
    let before = p.action_records();
    p.write("experiments/e2.yaml", &experiment(2, 7));
    p.build();
    let added: Vec<String> = p.action_records().difference(&before).cloned().collect();
    assert_eq!(status_planning(&p, &[]).2, 1);
    let record = added
        .iter()
        .map(|name| p.path(&format!("cache/actions/{name}")))
        .find(|path| {
            std::fs::read_to_string(path).is_ok_and(|t| t.contains("\"stage\": \"train\""))
        })
        .unwrap_or_else(|| p.path(&format!("cache/actions/{}", added[0])));
    let text = std::fs::read_to_string(&record).unwrap();
    let at = text.find("\"wall_ms\": ").unwrap() + "\"wall_ms\": ".len();
    let digit = if &text[at..at + 1] == "7" { "8" } else { "7" };
    std::fs::write(
        &record,
        format!("{}{digit}{}", &text[..at], &text[at + 1..]),
    )
    .unwrap();
    let (_, warnings, shards) = status_planning(&p, &[]);
    assert_eq!(shards, 1);
    assert!(
        warnings.contains("changed after it was written"),
        "{warnings}"
    );
    // Warned again: the record is still not what was written.
    let (_, again, _) = status_planning(&p, &[]);
    assert_eq!(again, warnings);
    std::fs::write(&record, &text).unwrap();
    status_planning(&p, &[]);
    let (_, warnings, shards) = status_planning(&p, &[]);
    assert!(warnings.is_empty(), "{warnings}");
    assert_eq!(shards, 0);

    // A blob only one experiment's records name, removed.
    let blobs_before: std::collections::BTreeSet<_> =
        walk(&p.path("cache/objects")).into_iter().collect();
    p.write("experiments/e3.yaml", &experiment(3, 11));
    p.build();
    status_planning(&p, &[]);
    let blob = walk(&p.path("cache/objects"))
        .into_iter()
        .find(|b| !blobs_before.contains(b))
        .expect("e3's build stored a blob");
    std::fs::remove_file(&blob).unwrap();
    let (lines, warnings, shards) = status_planning(&p, &[]);
    assert_eq!(shards, 1);
    assert!(warnings.contains("missing from the store"), "{warnings}");
    assert!(
        lines.iter().any(|l| l.contains(": 1 stages would run")),
        "{lines:?}"
    );
    let (_, again, _) = status_planning(&p, &[]);
    assert_eq!(again, warnings);
}

#[test]
fn a_killed_build_leaves_no_memo_that_lies() {
    let p = six_experiments("status-killed");
    p.build();
    status(&p, &[]);
    status(&p, &[]);
    // Builds killed at different moments of their work: whatever they left behind (new
    // records, a rewritten experiment file, no lock), status says what planning says.
    for (i, wait_ms) in [(1, 0u64), (2, 150), (4, 400), (5, 1500)] {
        p.write(&format!("experiments/e{i}.yaml"), &experiment(i, 40 + i));
        let mut child = p.spawn_quiet(&["build", "-j", "1"]);
        std::thread::sleep(std::time::Duration::from_millis(wait_ms));
        let _ = child.kill();
        let _ = child.wait();
        status(&p, &[]);
        status(&p, &["-q"]);
    }
    p.build();
    let (lines, _) = status(&p, &[]);
    assert!(
        lines.iter().any(|l| l.contains(": 0 stages would run")),
        "{lines:?}"
    );
}

#[test]
fn a_new_or_removed_experiment_file_plans_in_full() {
    let p = six_experiments("status-listing");
    p.build();
    status(&p, &[]);
    p.write("experiments/e6.yaml", &experiment(6, 6));
    let (lines, _, shards) = status_planning(&p, &[]);
    assert!(shards > 1);
    assert!(lines.iter().any(|l| l.contains("e6")), "{lines:?}");
    std::fs::remove_file(p.path("experiments/e6.yaml")).unwrap();
    std::fs::remove_file(p.path("experiments/e0.yaml")).unwrap();
    let (lines, _, shards) = status_planning(&p, &[]);
    assert!(shards > 1);
    assert!(lines.iter().all(|l| !l.contains("e0 (")), "{lines:?}");
    // An experiment renamed to a name another file uses: the error planning gives.
    p.write("experiments/e1.yaml", &experiment(2, 1));
    let run = p.hft(&["status"]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("also used by"), "{}", run.stderr);
}
