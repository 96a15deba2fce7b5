//! A build after a few experiments changed builds only their files and answers every other
//! experiment from the memo (`usecase/memos.rs`): what it prints, the lock it writes and
//! the status after it are what building everything (`HFT_NO_MEMO`) gives.

mod common;

use common::{Project, Run};

fn experiment(i: usize, seed: usize) -> String {
    format!("name: e{i}\nseed: {seed}\n{}", common::LOCAL_BODY)
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

/// A copy of `p` (its files, cache and lock) in a project of its own.
fn copy(p: &Project, tag: &str) -> Project {
    let q = Project::new(tag);
    std::fs::remove_dir_all(&q.dir).unwrap();
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(&p.dir)
        .arg(&q.dir)
        .status()
        .unwrap();
    assert!(status.success());
    q
}

/// `hft build`, started past the window in which fresh fingerprints are not trusted (a
/// build right after a write keeps no memo: see `graph/memo.rs`).
fn build(p: &Project, env: &[(&str, &str)]) -> Run {
    std::thread::sleep(std::time::Duration::from_millis(30));
    let run = p.hft_env(&["build", "-j", "2"], env);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    run
}

/// What a build printed that does not depend on timing: each stage's state, the results
/// table and the summary's counts.
fn answer(run: &Run) -> (Vec<String>, Vec<String>) {
    let states = run
        .states()
        .into_iter()
        .map(|((e, s), state)| format!("{e}/{s} {state}"))
        .collect();
    let mut table: Vec<String> = run
        .stdout
        .lines()
        .filter(|l| l.contains(" | ") || l.starts_with("experiment"))
        .map(str::to_string)
        .collect();
    table.extend(
        run.stdout
            .lines()
            .filter_map(|l| l.split_once(" (").filter(|_| l.contains(" experiments: ")))
            .map(|(counts, _)| counts.to_string()),
    );
    (states, table)
}

/// Builds `p` with the memo and its copy `q` without; both must say the same, write the same
/// lock, and leave a status that says the same. Returns the shards of the per-file index
/// the memo's build wrote (after the index was removed: one when only one file was built).
fn build_both(p: &Project, q: &Project) -> usize {
    let index = p.path("cache/index");
    let _ = std::fs::remove_dir_all(&index);
    let memo = build(p, &[]);
    let shards = if index.exists() {
        std::fs::read_dir(&index)
            .unwrap()
            .map(|d| std::fs::read_dir(d.unwrap().path()).unwrap().count())
            .sum()
    } else {
        0
    };
    let planned = build(q, &[("HFT_NO_MEMO", "1")]);
    assert_eq!(answer(&memo), answer(&planned), "{}", memo.stdout);
    assert_eq!(
        std::fs::read(p.path("hft.lock")).unwrap(),
        std::fs::read(q.path("hft.lock")).unwrap(),
        "the locks differ"
    );
    let status = |p: &Project, env: &[(&str, &str)]| {
        let run = p.hft_env(&["status", "-q"], env);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let mut lines: Vec<String> = run
            .stdout
            .lines()
            .map(|l| l.split(" up to date (").next().unwrap().to_string())
            .collect();
        lines.sort();
        lines
    };
    assert_eq!(status(p, &[]), status(q, &[("HFT_NO_MEMO", "1")]));
    shards
}

#[test]
fn a_build_after_an_edit_builds_only_the_edited_file() {
    let p = six_experiments("partial-build");
    build(&p, &[]);
    let q = copy(&p, "partial-build-full");

    for (i, seed) in [(1, 50), (4, 51), (1, 52)] {
        for x in [&p, &q] {
            x.write(&format!("experiments/e{i}.yaml"), &experiment(i, seed));
        }
        assert_eq!(build_both(&p, &q), 1, "e{i}: only its file is built");
        // The build's memo answers the next build whole.
        let again = build(&p, &[]);
        assert!(
            again
                .stdout
                .contains("nothing changed since the last build"),
            "{}",
            again.stdout
        );
    }

    // Two files at once, one of them back to a seed built before (all cached).
    for x in [&p, &q] {
        x.write("experiments/e2.yaml", &experiment(2, 60));
        x.write("experiments/e4.yaml", &experiment(4, 4));
    }
    build_both(&p, &q);

    // A removed blob: the experiments naming it are built again, as building all does.
    let blob = std::fs::read_dir(p.path("cache/actions"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find_map(|path| {
            let text = std::fs::read_to_string(&path).ok()?;
            if !text.contains("\"stage\": \"evaluate\"") {
                return None;
            }
            let at = text.find("\"digest\": \"")? + "\"digest\": \"".len();
            Some(text[at..at + 64].to_string())
        })
        .unwrap();
    let rel = format!("cache/objects/{}/{}", &blob[..2], &blob[2..]);
    if p.path(&rel).exists() {
        std::fs::remove_file(p.path(&rel)).unwrap();
        std::fs::remove_file(q.path(&rel)).unwrap();
        build_both(&p, &q);
    }
}

#[test]
fn a_killed_build_leaves_no_memo_that_lies() {
    let p = six_experiments("partial-killed");
    build(&p, &[]);
    for (i, wait_ms) in [(1, 0u64), (2, 200), (3, 600)] {
        p.write(&format!("experiments/e{i}.yaml"), &experiment(i, 70 + i));
        let mut child = p.spawn_quiet(&["build", "-j", "1"]);
        std::thread::sleep(std::time::Duration::from_millis(wait_ms));
        let _ = child.kill();
        let _ = child.wait();
        // Whatever it left (new records, no lock, an old memo), the next build says what
        // building everything says.
        let q = copy(&p, "partial-killed-full");
        build_both(&p, &q);
    }
}

#[test]
fn a_name_now_used_twice_is_the_error_building_everything_gives() {
    let p = six_experiments("partial-names");
    build(&p, &[]);
    p.write("experiments/e1.yaml", &experiment(2, 1));
    let run = p.hft(&["build"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("also used by"), "{}", run.stderr);
    assert!(run.ran().is_empty());
}

#[test]
fn a_file_written_just_before_a_build_is_planned_again_then_trusted() {
    let p = six_experiments("partial-racy");
    build(&p, &[]);
    let q = copy(&p, "partial-racy-full");
    for x in [&p, &q] {
        x.write("experiments/e1.yaml", &experiment(1, 80));
    }
    // No pause: e1's fingerprint may be too fresh to trust, so e1 is kept to be planned
    // again rather than answered.
    let first = p.hft(&["build", "-j", "2"]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let planned = build(&q, &[("HFT_NO_MEMO", "1")]);
    assert_eq!(answer(&first), answer(&planned));
    assert!(build_both(&p, &q) <= 1);
    let again = build(&p, &[]);
    assert!(
        again
            .stdout
            .contains("nothing changed since the last build"),
        "{}",
        again.stdout
    );
}
