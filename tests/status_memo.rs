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
