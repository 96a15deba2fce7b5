//! The per-file experiment index (`cache/index/`): `hft status` and `hft build` take an
//! unchanged experiment file from it instead of parsing and planning it again, and what they
//! answer is what they answer without it (`HFT_NO_INDEX`).

mod common;

use common::{Project, csv_bars};

const TEMPLATE: &str = "data:\n  synthetic: {bars: 300}\n";

const EXPERIMENT: &str = "\
extends: templates/base.yaml
name: a
data:
  source: synthetic
  symbols: [SYN]
  sequence_length: 8
  prediction_horizon: 2
model: {type: mlp, hidden_size: 4, num_layers: 1}
training: {max_steps: 1, batch_size: 8}
";

fn project() -> Project {
    let p = Project::new("index");
    p.write("templates/base.yaml", TEMPLATE);
    p.write("experiments/a.yaml", EXPERIMENT);
    p
}

/// `hft status --json ARGS`, without its timing: (with the index, without it). Each must
/// succeed, and the two must agree.
fn status(p: &Project, args: &[&str]) -> serde_json::Value {
    let run = |env: &[(&str, &str)]| {
        let mut all = vec!["status", "--json"];
        all.extend_from_slice(args);
        let run = p.hft_env(&all, env);
        assert_eq!(
            run.code, 0,
            "status failed:\n{}\n{}",
            run.stdout, run.stderr
        );
        let mut json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        json.as_object_mut().unwrap().remove("secs");
        json
    };
    let indexed = run(&[]);
    let parsed = run(&[("HFT_NO_INDEX", "1")]);
    assert_eq!(indexed, parsed, "the index changed what status says");
    indexed
}

/// Each stage (`experiment/stage`) with its key, where the dry run knows it.
fn stages(json: &serde_json::Value) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    for e in json["experiments"].as_array().unwrap() {
        for s in e["stages"].as_array().unwrap() {
            out.push((
                format!(
                    "{}/{}",
                    e["name"].as_str().unwrap(),
                    s["id"].as_str().unwrap()
                ),
                s["key"].as_str().map(str::to_string),
            ));
        }
    }
    out
}

/// Each context's index: a folder of shards.
fn index_files(p: &Project) -> Vec<std::path::PathBuf> {
    match std::fs::read_dir(p.path("cache/index")) {
        Ok(dir) => dir.map(|e| e.unwrap().path()).collect(),
        Err(_) => vec![],
    }
}

fn ingest_key(json: &serde_json::Value) -> String {
    stages(json)
        .into_iter()
        .find(|(id, _)| id.starts_with("a/ingest:"))
        .and_then(|(_, key)| key)
        .expect("the ingest stage's key")
}

#[test]
fn edited_files_and_templates_are_parsed_again() {
    let p = project();
    let first = status(&p, &[]);
    assert_eq!(index_files(&p).len(), 1, "status wrote the index");
    // From the index now: the same answer.
    let again = status(&p, &[]);
    assert_eq!(first, again);

    // The template's bars are part of the ingest key.
    p.write("templates/base.yaml", "data:\n  synthetic: {bars: 400}\n");
    let template_edited = status(&p, &[]);
    assert_ne!(ingest_key(&template_edited), ingest_key(&first));

    // An edit of the same size, right after the last read: keyed on contents, it is seen.
    p.write(
        "experiments/a.yaml",
        &EXPERIMENT.replace("symbols: [SYN]", "symbols: [SYM]"),
    );
    let file_edited = status(&p, &[]);
    let ids: Vec<String> = stages(&file_edited).into_iter().map(|(id, _)| id).collect();
    assert!(ids.contains(&"a/ingest:SYM".to_string()), "{ids:?}");
    assert!(!ids.contains(&"a/ingest:SYN".to_string()), "{ids:?}");

    // A new experiment file, and a removed one.
    p.write(
        "experiments/b.yaml",
        &EXPERIMENT.replace("name: a", "name: b"),
    );
    let added = status(&p, &[]);
    assert_eq!(added["experiments"].as_array().unwrap().len(), 2);
    std::fs::remove_file(p.path("experiments/b.yaml")).unwrap();
    let removed = status(&p, &[]);
    assert_eq!(removed, file_edited);
}

#[test]
fn overrides_are_part_of_the_answer() {
    let p = project();
    let plain = status(&p, &[]);
    let set = ["--set", "data.synthetic.bars=500"];
    let overridden = status(&p, &set);
    assert_ne!(ingest_key(&plain), ingest_key(&overridden));
    // Each from its own index the second time, still apart.
    assert_eq!(status(&p, &set), overridden);
    assert_eq!(status(&p, &[]), plain);
    assert_eq!(index_files(&p).len(), 2, "one index per set of overrides");
}

#[test]
fn a_corrupt_or_foreign_index_is_ignored() {
    let p = project();
    let first = status(&p, &[]);
    let files = index_files(&p);
    assert_eq!(files.len(), 1);
    let shards: Vec<std::path::PathBuf> = std::fs::read_dir(&files[0])
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!shards.is_empty());
    let write_all = |bytes: &[u8]| {
        for shard in &shards {
            std::fs::write(shard, bytes).unwrap();
        }
    };
    let corruptions: [&[u8]; 4] = [
        b"",
        b"{\"version\": 2, \"sources\": [], \"entries\": {",
        &[0xff, 0xfe, 0x00, 0x42],
        // Well-formed, but for another text of the file.
        br#"{"version": 2, "sources": ["x"], "entries": {"experiments/a.yaml":
            {"text": "00", "deps": [], "experiments": []}}}"#,
    ];
    for bytes in corruptions {
        write_all(bytes);
        assert_eq!(status(&p, &[]), first);
    }
    // A build with a corrupt index builds what it would build without one.
    write_all(b"not json");
    let built = p.build();
    assert_eq!(built.with_state("ran").len(), 6, "{}", built.stdout);
    let after = status(&p, &[]);
    assert_eq!(stages(&after).len(), 6);
    assert!(stages(&after).iter().all(|(_, key)| key.is_some()));
}

#[test]
fn a_new_data_file_is_seen_through_the_folder_listing() {
    let experiment = "\
name: exp
data:
  source: local
  path: trainingdata
  symbols: all
  features: [close, log_return]
  sequence_length: 5
  prediction_horizon: 1
model: {type: mlp, hidden_size: 4, num_layers: 1}
training: {max_steps: 2, batch_size: 8}
";
    let p = Project::with_local_data("index-listing", experiment);
    let ids = |json: &serde_json::Value| -> Vec<String> {
        stages(json).into_iter().map(|(id, _)| id).collect()
    };
    let first = status(&p, &[]);
    assert!(ids(&first).contains(&"exp/ingest:AAA".to_string()));
    assert_eq!(status(&p, &[]), first);
    p.write("trainingdata/BBB.csv", &csv_bars(120, 4));
    let second = status(&p, &[]);
    assert!(
        ids(&second).contains(&"exp/ingest:BBB".to_string()),
        "{:?}",
        ids(&second)
    );
}

/// Through the library: a file is taken from a saved index (a hit, equal to its parse); its
/// other texts, and other overrides, are misses. (Templates must lie inside the working
/// directory, so `edited_files_and_templates_are_parsed_again` covers them.)
#[test]
fn an_unchanged_file_is_a_hit_equal_to_its_parse() {
    use hft::graph::Database;
    use hft::graph::index::FileIndex;
    use hft::usecase::Selection;
    use hft::usecase::select::load_experiments_indexed;

    let p = project();
    let text = EXPERIMENT
        .replace("extends: templates/base.yaml\n", "")
        .replace(
            "sequence_length: 8",
            "synthetic: {bars: 300}\n  sequence_length: 8",
        );
    p.write("experiments/a.yaml", &text);
    let file = p.path("experiments/a.yaml");
    let store = hft::store::Store::open(&p.path("cache")).unwrap();
    let select = Selection {
        paths: vec![file.clone()],
        ..Selection::default()
    };

    let db = Database::default();
    let mut index = FileIndex::load(&store, &[]);
    let parsed = load_experiments_indexed(&db, &select, Some(&mut index)).unwrap();
    index.save(&store);

    let db = Database::default();
    let mut index = FileIndex::load(&store, &[]);
    assert!(
        index.lookup(&db, &file, &text).is_none(),
        "no shard is read before it is prefetched"
    );
    index.prefetch(std::slice::from_ref(&file));
    let hit = index.lookup(&db, &file, &text).expect("a hit");
    assert_eq!(hit.len(), 1);
    assert_eq!(hit[0].0.experiment, parsed[0].parsed.experiment);
    assert_eq!(hit[0].0.locations, parsed[0].parsed.locations);
    assert_eq!(hit[0].1, parsed[0].plan);
    assert!(
        index
            .lookup(&db, &file, &text.replace("[SYN]", "[SYM]"))
            .is_none()
    );
    // Loading through the index gives what parsing gives.
    let again = load_experiments_indexed(&db, &select, Some(&mut index)).unwrap();
    assert_eq!(again[0].plan, parsed[0].plan);
    assert_eq!(again[0].parsed.experiment, parsed[0].parsed.experiment);
    // Another set of overrides has an index of its own.
    let mut other = FileIndex::load(&store, &["seed=3".to_string()]);
    other.prefetch(std::slice::from_ref(&file));
    assert!(other.lookup(&Database::default(), &file, &text).is_none());
}
