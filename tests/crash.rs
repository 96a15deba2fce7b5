//! Killed and concurrent builds: the store never holds a partial or corrupt entry, a stage
//! key executes once, and a build that was killed (at any of many seeded moments) is
//! completed by the next one into exactly what a build never killed gives.
//!
//! Replaying one kill point: every failure names its round seed; run
//! `HFT_CRASH_SEED=<seed> cargo test --test crash killed_builds -- --nocapture` to repeat that
//! one round (the kill lands at the same point of the build, give or take scheduling).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Project;

const HFT: &str = env!("CARGO_BIN_EXE_hft");

/// The killed workload: every phase takes a measurable moment (three CSV files to parse, a
/// windowed dataset of a few MB, a training with resumable checkpoints).
const CRASH: &str = "\
name: crash
seed: 7
data:
  source: local
  path: trainingdata
  symbols: [AAA, BBB, CCC]
  features: [close, log_return, ma_50, ema_20, rsi_14, macd_signal, bb_position, volatility_ratio]
  sequence_length: 16
  prediction_horizon: 3
model: {type: mlp, hidden_size: 32, num_layers: 2, dropout: 0.0}
training: {max_steps: 60, batch_size: 32, warmup_steps: 2, checkpoint_every: 10}
";

/// A project holding the killed workload and its data.
fn crash_project(tag: &str) -> Project {
    let p = Project::new(tag);
    for (i, symbol) in ["AAA", "BBB", "CCC"].into_iter().enumerate() {
        p.write(
            &format!("trainingdata/{symbol}.csv"),
            &common::csv_bars(2500, i as u64 + 1),
        );
    }
    p.write("experiments/crash.yaml", CRASH);
    p
}

/// Kill rounds in a full run; at least [`MIN_KILLS`] of them must land mid-build.
const ROUNDS: usize = 60;
const MIN_KILLS: usize = 50;
/// Rounds run side by side, each worker in a project folder of its own.
const WORKERS: usize = 2;
const DEFAULT_SEED: u64 = 0x5eed_c0ff_ee00_0011;

fn hft(dir: &Path) -> Command {
    let mut c = Command::new(HFT);
    c.current_dir(dir)
        .env_remove("HFT_CACHE_DIR")
        .env_remove("HFT_NO_MEMO");
    c
}

/// (experiment, stage) -> (key, output name -> digest), from `hft build --json`.
type Results = BTreeMap<(String, String), (String, BTreeMap<String, String>)>;

/// One stage of a `--json` report.
struct StageRow {
    experiment: String,
    id: String,
    /// `ran`, `cached`, `failed`, `skipped`.
    state: String,
    key: Option<String>,
    /// Seconds it ran (`ran` only).
    secs: Option<f64>,
}

struct JsonRun {
    code: i32,
    doc: serde_json::Value,
    stdout: String,
    stderr: String,
}

impl JsonRun {
    fn from_output(out: std::process::Output) -> JsonRun {
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        JsonRun {
            code: out.status.code().unwrap_or(-1),
            doc: serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null),
            stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Every stage of every experiment, in report order.
    fn stages(&self) -> Vec<StageRow> {
        let mut out = Vec::new();
        for e in self.doc["experiments"].as_array().into_iter().flatten() {
            let name = e["name"].as_str().unwrap_or_default().to_string();
            for s in e["stages"].as_array().into_iter().flatten() {
                out.push(StageRow {
                    experiment: name.clone(),
                    id: s["id"].as_str().unwrap_or_default().to_string(),
                    state: s["state"].as_str().unwrap_or_default().to_string(),
                    key: s["key"].as_str().map(str::to_string),
                    secs: s["secs"].as_f64(),
                });
            }
        }
        out
    }

    fn results(&self) -> Results {
        let mut out = Results::new();
        for e in self.doc["experiments"].as_array().into_iter().flatten() {
            let name = e["name"].as_str().unwrap_or_default().to_string();
            for s in e["stages"].as_array().into_iter().flatten() {
                let outputs = s["outputs"]
                    .as_object()
                    .map(|o| {
                        o.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                            .collect()
                    })
                    .unwrap_or_default();
                out.insert(
                    (
                        name.clone(),
                        s["id"].as_str().unwrap_or_default().to_string(),
                    ),
                    (s["key"].as_str().unwrap_or_default().to_string(), outputs),
                );
            }
        }
        out
    }
}

/// `hft build --json ARGS` in `dir`, waited for.
fn build_json(dir: &Path, args: &[&str]) -> JsonRun {
    let out = hft(dir)
        .args(["build", "--json"])
        .args(args)
        .output()
        .unwrap();
    JsonRun::from_output(out)
}

/// `hft cache verify` must find nothing wrong.
fn verify(dir: &Path, cache: &Path) -> Result<(), String> {
    let out = hft(dir)
        .args(["cache", "verify", "--cache-dir"])
        .arg(cache)
        .output()
        .unwrap();
    if out.status.code() == Some(0) {
        return Ok(());
    }
    Err(format!(
        "`hft cache verify` exited {:?}:\n{}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// Every action record parses and names blobs that exist and hash to their names.
fn store_consistent(cache: &Path) -> Result<usize, String> {
    let mut n = 0;
    for entry in fs::read_dir(cache.join("actions")).map_err(|e| e.to_string())? {
        let path = entry.map_err(|e| e.to_string())?.path();
        let bytes = fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let record: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| format!("action record {} does not parse: {e}", path.display()))?;
        for (name, out) in record["outputs"].as_object().into_iter().flatten() {
            let hex = out["digest"].as_str().unwrap_or_default();
            let blob = cache.join("objects").join(&hex[..2]).join(&hex[2..]);
            let bytes = fs::read(&blob).map_err(|_| {
                format!(
                    "{} names output `{name}` whose blob {} is missing",
                    path.display(),
                    blob.display()
                )
            })?;
            if blake3::hash(&bytes).to_hex().as_str() != hex {
                return Err(format!(
                    "blob {} (output `{name}`) is corrupt",
                    blob.display()
                ));
            }
        }
        n += 1;
    }
    Ok(n)
}

fn names_in(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Whether some process holds an flock on `path`.
fn is_locked(path: &Path) -> bool {
    let Ok(f) = File::options().write(true).open(path) else {
        return false;
    };
    matches!(f.try_lock(), Err(fs::TryLockError::WouldBlock))
}

/// Waits for `child` until `limit`; kills it and says so when it runs longer.
fn wait_within(child: &mut Child, limit: Duration) -> Result<std::process::ExitStatus, String> {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Ok(status);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("still running after {limit:?}: killed"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// What a kill waits for before its seeded delay starts.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Anchor {
    /// The process start (empty cache): kills during ingest.
    Start,
    /// Every ingest record written: kills during features and dataset.
    IngestDone,
    /// The dataset record present (a cache holding the data stages): kills during init
    /// and training.
    DatasetDone,
    /// A resumable training checkpoint saved: kills mid-training after a checkpoint, so
    /// the next build resumes.
    Checkpoint,
    /// The N-th temporary file seen under `cache/tmp` (empty cache): kills in the middle
    /// of a store write, between creating the temporary file and renaming it.
    Write,
    /// The train record written: kills during evaluation and the build's bookkeeping.
    TrainDone,
}

const ANCHORS: [Anchor; 6] = [
    Anchor::Start,
    Anchor::IngestDone,
    Anchor::DatasetDone,
    Anchor::Checkpoint,
    Anchor::Write,
    Anchor::TrainDone,
];

impl Anchor {
    /// Whether the round starts from a cache that already holds the data stages.
    fn starts_from_data_snapshot(self) -> bool {
        matches!(
            self,
            Anchor::DatasetDone | Anchor::Checkpoint | Anchor::TrainDone
        )
    }
}

/// One kill point, entirely decided by its seed (the anchor is in the low bits, so a seed
/// printed by a failure replays the same kind of kill).
#[derive(Clone, Copy, Debug)]
struct KillPoint {
    seed: u64,
    anchor: Anchor,
    /// Fraction of the anchor's calibrated window to wait after it.
    frac: f64,
    /// For [`Anchor::Write`]: which temporary file to kill at.
    nth_write: usize,
}

impl KillPoint {
    fn new(base: u64, round: usize) -> KillPoint {
        let seed = (splitmix(base ^ (round as u64).wrapping_mul(0x1000_0001)) & !0xf)
            | (round % ANCHORS.len()) as u64;
        KillPoint::from_seed(seed)
    }

    fn from_seed(seed: u64) -> KillPoint {
        let r = splitmix(seed);
        KillPoint {
            seed,
            anchor: ANCHORS[(seed & 0xf) as usize % ANCHORS.len()],
            frac: (r % 10_000) as f64 / 10_000.0,
            nth_write: ((r >> 20) % 24) as usize,
        }
    }
}

/// What the never-killed reference build measured and produced.
struct Calibration {
    results: Results,
    /// stage id -> key.
    keys: BTreeMap<String, String>,
    /// stage id -> seconds it ran in the reference build.
    secs: BTreeMap<String, f64>,
    /// Process start to the first stage, and the last stage to exit.
    overhead: f64,
    data_snapshot: PathBuf,
}

impl Calibration {
    fn sum(&self, pred: impl Fn(&str) -> bool) -> f64 {
        self.secs
            .iter()
            .filter(|(id, _)| pred(id))
            .map(|(_, s)| s)
            .sum()
    }

    /// The window (after its anchor) a kill point's delay is drawn from.
    fn window(&self, anchor: Anchor) -> Duration {
        let secs = match anchor {
            Anchor::Start => self.overhead / 2.0 + self.sum(|id| id.starts_with("ingest:")),
            Anchor::IngestDone => self.sum(|id| id == "features" || id == "dataset"),
            Anchor::DatasetDone => self.sum(|id| id == "init" || id == "train"),
            // 60 steps, a checkpoint every 10: the training between two checkpoints.
            Anchor::Checkpoint => self.sum(|id| id == "train") / 6.0,
            Anchor::Write => 0.0,
            Anchor::TrainDone => self.sum(|id| id == "evaluate"),
        };
        Duration::from_secs_f64(secs)
    }

    fn action(&self, cache: &Path, stage: &str) -> bool {
        cache
            .join("actions")
            .join(format!("{}.json", self.keys[stage]))
            .exists()
    }

    /// Where the build was when it died, from what its cache holds.
    fn phase(&self, cache: &Path) -> &'static str {
        let ingests: Vec<&String> = self
            .keys
            .keys()
            .filter(|id| id.starts_with("ingest:"))
            .collect();
        if !ingests.iter().all(|id| self.action(cache, id)) {
            // The stat cache is saved once the data files are hashed, before any stage.
            return if cache.join("statcache.json").exists() {
                "ingest"
            } else {
                "startup (opening the store, planning, hashing data)"
            };
        }
        for (stage, phase) in [
            ("features", "features"),
            ("dataset", "dataset"),
            ("init", "init"),
        ] {
            if !self.action(cache, stage) {
                return phase;
            }
        }
        if !self.action(cache, "train") {
            let checkpointed = names_in(&cache.join("builds"))
                .iter()
                .any(|n| n.starts_with("partial-"));
            return if checkpointed {
                "train (after a resumable checkpoint)"
            } else {
                "train (before any checkpoint)"
            };
        }
        if !self.action(cache, "evaluate") {
            return "evaluate";
        }
        "bookkeeping (after the last stage)"
    }
}

fn calibrate() -> (Project, Calibration) {
    let reference = crash_project("crash-ref");
    let started = Instant::now();
    let run = build_json(&reference.dir, &["-j", "1"]);
    let wall = started.elapsed().as_secs_f64();
    assert_eq!(run.code, 0, "reference build:\n{}", run.stderr);
    let mut keys = BTreeMap::new();
    let mut secs = BTreeMap::new();
    for s in run.stages() {
        assert_eq!(s.state, "ran", "reference stage {}", s.id);
        keys.insert(s.id.clone(), s.key.unwrap());
        secs.insert(s.id, s.secs.unwrap_or(0.0));
    }
    let overhead = (wall - secs.values().sum::<f64>()).max(0.01);
    // A cache holding the data stages only, copied into rounds that kill later stages.
    let snapshot = crash_project("crash-snapshot");
    let data = build_json(&snapshot.dir, &["-j", "1", "--until", "dataset"]);
    assert_eq!(data.code, 0, "data-only build:\n{}", data.stderr);
    let data_snapshot = reference.path("data-snapshot");
    copy_dir(&snapshot.path("cache"), &data_snapshot);
    println!(
        "calibration: reference build {wall:.2} s (overhead {overhead:.2} s): {}",
        secs.iter()
            .map(|(id, s)| format!("{id} {:.0} ms", s * 1000.0))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let calibration = Calibration {
        results: run.results(),
        keys,
        secs,
        overhead,
        data_snapshot,
    };
    (reference, calibration)
}

/// What one kill round saw.
struct Landed {
    phase: &'static str,
    mid_write: bool,
    delay: Duration,
}

/// `Ok(None)`: the build finished before its kill point; `Err`: what went wrong.
type RoundOutcome = Result<Option<Landed>, String>;

/// Starts a build, kills it at `point`, then checks the cache and completes the build.
fn kill_round(p: &Project, cal: &Calibration, point: KillPoint) -> RoundOutcome {
    let cache = p.path("cache");
    let _ = fs::remove_dir_all(&cache);
    if point.anchor.starts_from_data_snapshot() {
        copy_dir(&cal.data_snapshot, &cache);
    }
    let mut child = hft(&p.dir)
        .args(["build", "--json", "-j", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let delay = cal.window(point.anchor).mul_f64(point.frac);
    let started = Instant::now();
    let mut writes_seen: BTreeSet<String> = BTreeSet::new();
    // Wait for the anchor (or the end of the build).
    let anchored = loop {
        if child.try_wait().unwrap().is_some() {
            break false;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            return Err("the build ran for over 120 s".to_string());
        }
        let reached = match point.anchor {
            Anchor::Start => true,
            Anchor::IngestDone => cal
                .keys
                .keys()
                .filter(|id| id.starts_with("ingest:"))
                .all(|id| cal.action(&cache, id)),
            Anchor::DatasetDone => cal.action(&cache, "dataset"),
            Anchor::Checkpoint => names_in(&cache.join("builds"))
                .iter()
                .any(|n| n.starts_with("partial-")),
            Anchor::TrainDone => cal.action(&cache, "train"),
            Anchor::Write => {
                writes_seen.extend(
                    names_in(&cache.join("tmp"))
                        .into_iter()
                        .filter(|n| n.ends_with(".tmp")),
                );
                writes_seen.len() > point.nth_write
            }
        };
        if reached {
            break true;
        }
        std::thread::sleep(Duration::from_micros(300));
    };
    if anchored && !delay.is_zero() {
        let until = Instant::now() + delay;
        while Instant::now() < until && child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_micros(500).min(until - Instant::now()));
        }
    }
    let _ = child.kill(); // SIGKILL
    let status = child.wait().unwrap();
    let killed = status.signal() == Some(9);
    if !killed && !status.success() {
        return Err(format!("the build failed on its own: {status}"));
    }
    let phase = cal.phase(&cache);
    let tmp_after_kill = names_in(&cache.join("tmp"));
    let mid_write = tmp_after_kill.iter().any(|n| n.ends_with(".tmp"));

    verify(&p.dir, &cache)?;
    store_consistent(&cache)?;
    // The killed build is gone: its temporary files went with the first open after it.
    let left: Vec<&String> = names_in(&cache.join("tmp"))
        .iter()
        .filter_map(|n| tmp_after_kill.get(n))
        .collect();
    if !left.is_empty() {
        return Err(format!(
            "files of the killed build still in tmp/ after the next open: {left:?}"
        ));
    }
    let next = build_json(&p.dir, &["-j", "1"]);
    if next.code != 0 {
        return Err(format!(
            "the build after the kill exited {}:\n{}",
            next.code, next.stderr
        ));
    }
    if next.results() != cal.results {
        return Err(format!(
            "the build after the kill differs from one never killed:\n got {:#?}\nwant {:#?}",
            next.results(),
            cal.results
        ));
    }
    store_consistent(&cache)?;
    if let Some(n) = names_in(&cache.join("builds"))
        .iter()
        .find(|n| n.starts_with("partial-"))
    {
        return Err(format!(
            "a finished training left its checkpoint record {n}"
        ));
    }
    Ok(killed.then_some(Landed {
        phase,
        mid_write,
        delay,
    }))
}

#[test]
fn killed_builds_leave_no_partial_entries_and_the_next_build_matches() {
    let started = Instant::now();
    let (_reference, cal) = calibrate();
    let replay = std::env::var("HFT_CRASH_SEED").ok().map(|s| {
        let s = s.trim();
        match s.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => s.parse(),
        }
        .expect("HFT_CRASH_SEED: a round seed as printed by a failure (0x... or decimal)")
    });
    let base = DEFAULT_SEED;
    let points: Vec<KillPoint> = match replay {
        Some(seed) => vec![KillPoint::from_seed(seed)],
        None => (0..ROUNDS).map(|i| KillPoint::new(base, i)).collect(),
    };

    let next = AtomicUsize::new(0);
    let outcomes: Mutex<Vec<(KillPoint, RoundOutcome)>> = Mutex::new(vec![]);
    std::thread::scope(|scope| {
        for w in 0..WORKERS.min(points.len()) {
            let (cal, points, next, outcomes) = (&cal, &points, &next, &outcomes);
            scope.spawn(move || {
                let p = crash_project(&format!("crash-{w}"));
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&point) = points.get(i) else { break };
                    let outcome = kill_round(&p, cal, point);
                    outcomes.lock().unwrap().push((point, outcome));
                }
            });
        }
    });

    let outcomes = outcomes.into_inner().unwrap();
    let mut failures = Vec::new();
    let mut phases: BTreeMap<&str, usize> = BTreeMap::new();
    // anchor -> (rounds, kills that landed mid-build)
    let mut anchors: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let (mut landed, mut mid_write, mut finished) = (0, 0, 0);
    for (point, outcome) in &outcomes {
        let delay = cal.window(point.anchor).mul_f64(point.frac);
        let what = format!(
            "kill point seed {:#018x} ({:?}{}, delay {:.1} ms after it)",
            point.seed,
            point.anchor,
            if point.anchor == Anchor::Write {
                format!(" #{}", point.nth_write)
            } else {
                String::new()
            },
            delay.as_secs_f64() * 1000.0
        );
        let per_anchor = anchors.entry(format!("{:?}", point.anchor)).or_default();
        per_anchor.0 += 1;
        match outcome {
            Ok(Some(l)) => {
                per_anchor.1 += 1;
                landed += 1;
                mid_write += l.mid_write as usize;
                *phases.entry(l.phase).or_default() += 1;
                assert_eq!(l.delay, delay);
            }
            Ok(None) => finished += 1,
            Err(e) => failures.push(format!(
                "{what}: {e}\n  replay: HFT_CRASH_SEED={:#x} cargo test --test crash killed_builds -- --nocapture",
                point.seed
            )),
        }
    }
    let seeds = match replay {
        Some(seed) => format!("replaying seed {seed:#x}"),
        None => format!("base seed {base:#x}"),
    };
    println!(
        "{} kill rounds ({seeds}) in {:.1} s: {landed} killed mid-build, {finished} finished \
         first; {mid_write} killed mid-write (a temporary file left in tmp/)",
        outcomes.len(),
        started.elapsed().as_secs_f64()
    );
    for (phase, n) in &phases {
        println!("  {n:3} killed during {phase}");
    }
    println!(
        "  by anchor (killed/rounds): {}",
        anchors
            .iter()
            .map(|(a, (rounds, killed))| format!("{a} {killed}/{rounds}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    if replay.is_none() {
        assert!(
            landed >= MIN_KILLS,
            "only {landed} of {ROUNDS} kills landed mid-build (base seed {base:#x}): {phases:?}"
        );
        let count = |pred: &dyn Fn(&str) -> bool| -> usize {
            phases.iter().filter(|(p, _)| pred(p)).map(|(_, n)| n).sum()
        };
        assert!(
            count(&|p| p == "ingest") > 0,
            "no kill during ingest: {phases:?}"
        );
        assert!(
            count(&|p| p == "features" || p == "dataset") > 0,
            "no kill during features/dataset: {phases:?}"
        );
        assert!(
            count(&|p| p.starts_with("train (after")) > 0,
            "no kill during training after a checkpoint: {phases:?}"
        );
        assert!(mid_write > 0, "no kill in the middle of a store write");
    }
}

/// Four small experiments with one data section: every build shares the data stages.
fn concurrent_experiment(name: &str, hidden: usize) -> String {
    format!(
        "\
name: {name}
data:
  source: synthetic
  symbols: [S1, S2]
  synthetic: {{bars: 3000}}
  features: [close, log_return, ma_50, rsi_14, bb_position]
  sequence_length: 16
  prediction_horizon: 3
model: {{type: mlp, hidden_size: {hidden}, num_layers: 1, dropout: 0.0}}
training: {{max_steps: 30, batch_size: 32, warmup_steps: 2}}
"
    )
}

#[test]
fn four_concurrent_builds_run_each_stage_once_and_agree() {
    let p = Project::new("concurrent");
    for (name, hidden) in [("a", 8), ("b", 12), ("c", 16), ("d", 20)] {
        p.write(
            &format!("experiments/{name}.yaml"),
            &concurrent_experiment(name, hidden),
        );
    }
    let sets = [["a", "b"], ["b", "c"], ["c", "d"], ["a", "d"]];
    let children: Vec<Child> = sets
        .iter()
        .map(|set| {
            let files: Vec<String> = set
                .iter()
                .map(|n| format!("experiments/{n}.yaml"))
                .collect();
            hft(&p.dir)
                .args(["build", "--json", "-j", "2"])
                .args(&files)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let runs: Vec<JsonRun> = children
        .into_iter()
        .map(|c| JsonRun::from_output(c.wait_with_output().unwrap()))
        .collect();

    // key -> the builds (by index) that executed it.
    let mut ran: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut all_keys = BTreeSet::new();
    let mut by_experiment: BTreeMap<String, Vec<(usize, Results)>> = BTreeMap::new();
    for (i, run) in runs.iter().enumerate() {
        assert_eq!(
            run.code, 0,
            "build {i} ({:?}) failed:\n{}\n{}",
            sets[i], run.stdout, run.stderr
        );
        for StageRow {
            experiment,
            id: stage,
            state,
            key,
            ..
        } in run.stages()
        {
            let key = key.unwrap_or_else(|| panic!("build {i}: {experiment}/{stage} has no key"));
            assert!(
                state == "ran" || state == "cached",
                "build {i}: {experiment}/{stage} is {state}"
            );
            if state == "ran" {
                ran.entry(key.clone()).or_default().push(i);
            }
            all_keys.insert(key);
        }
        let results = run.results();
        for name in sets[i] {
            let mine: Results = results
                .iter()
                .filter(|((e, _), _)| e == name)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            assert!(!mine.is_empty(), "build {i} reports no experiment {name}");
            by_experiment
                .entry(name.to_string())
                .or_default()
                .push((i, mine));
        }
    }
    // 2 ingests + features + dataset shared; init, train, evaluate per experiment.
    assert_eq!(
        all_keys.len(),
        4 + 4 * 3,
        "distinct stage keys: {all_keys:?}"
    );
    for key in &all_keys {
        let builds = ran.get(key).cloned().unwrap_or_default();
        assert_eq!(
            builds.len(),
            1,
            "stage {key} executed by builds {builds:?} (each key must run in exactly one)"
        );
    }
    for (name, reports) in &by_experiment {
        assert_eq!(reports.len(), 2, "{name} is in two of the sets");
        assert_eq!(
            reports[0].1, reports[1].1,
            "builds {} and {} disagree on experiment {name}",
            reports[0].0, reports[1].0
        );
    }
    verify(&p.dir, &p.path("cache")).unwrap();
    let n = store_consistent(&p.path("cache")).unwrap();
    assert_eq!(n, all_keys.len(), "one action record per stage key");
}

/// Builds that overlap in time each merge their experiments into hft.lock under an
/// flock, so none drops what another recorded. They also start together on a new cache,
/// so each sees the store the others are creating (that raced once, see
/// `store::tests::concurrent_first_opens_of_a_new_store_all_succeed`).
#[test]
fn concurrent_builds_all_land_in_the_lockfile() {
    let p = Project::new("concurrent-lock");
    for (name, hidden) in [("a", 8), ("b", 12), ("c", 16), ("d", 20)] {
        p.write(
            &format!("experiments/{name}.yaml"),
            &concurrent_experiment(name, hidden),
        );
    }
    let children: Vec<Child> = [["a", "b"], ["b", "c"], ["c", "d"], ["a", "d"]]
        .iter()
        .map(|set| {
            hft(&p.dir)
                .args(["build", "-q", "-j", "2"])
                .args(set.iter().map(|n| format!("experiments/{n}.yaml")))
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "a concurrent build failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let lock = fs::read_to_string(p.path("hft.lock")).unwrap();
    let missing: Vec<&str> = ["a", "b", "c", "d"]
        .into_iter()
        .filter(|n| !lock.contains(&format!("[experiments.{n}]")))
        .collect();
    assert!(missing.is_empty(), "hft.lock lacks {missing:?}:\n{lock}");
}

#[test]
fn a_build_killed_holding_a_stage_lock_does_not_block_the_next() {
    let p = crash_project("stale-lock");
    p.write(
        "experiments/crash.yaml",
        &CRASH.replace("max_steps: 60", "max_steps: 200"),
    );
    let cache = p.path("cache");
    let mut child = hft(&p.dir)
        .args(["build", "-j", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Mid-training: a resumable checkpoint is saved, and the train key's lock is held.
    let started = Instant::now();
    let train_key = loop {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the build ended before training checkpointed"
        );
        assert!(started.elapsed() < Duration::from_secs(120), "build hangs");
        let partial = names_in(&cache.join("builds")).into_iter().find_map(|n| {
            Some(
                n.strip_prefix("partial-")?
                    .strip_suffix(".json")?
                    .to_string(),
            )
        });
        if let Some(key) = partial {
            break key;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let lock = cache.join("locks").join(format!("{train_key}.lock"));
    assert!(
        is_locked(&lock),
        "the training build holds {}",
        lock.display()
    );
    assert!(is_locked(&cache.join("locks/store.lock")));
    let _ = child.kill(); // SIGKILL
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "killed mid-training: {status}");

    // The lock file stays behind; the kernel dropped the lock with the process.
    assert!(lock.exists());
    assert!(!is_locked(&lock), "a dead process's stage lock is free");
    assert!(!is_locked(&cache.join("locks/store.lock")));
    // Its writer token (and a write it had in flight) are left in tmp/.
    let dead: BTreeSet<String> = names_in(&cache.join("tmp"));
    let token = dead
        .iter()
        .find_map(|n| n.strip_suffix(".owner"))
        .expect("the killed build left its owner record")
        .to_string();
    let in_flight = cache.join("tmp").join(format!("{token}-999999.tmp"));
    fs::write(&in_flight, b"half a blob").unwrap();

    // gc needs the store to itself: it must not wait for the dead build.
    let mut gc = hft(&p.dir)
        .args(["gc", "--dry-run"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let gc_status = wait_within(&mut gc, Duration::from_secs(20)).unwrap();
    assert!(gc_status.success(), "gc after the kill: {gc_status}");

    let mut next = hft(&p.dir)
        .args(["build", "--json", "-j", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = wait_within(&mut next, Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("the build after the kill waits on a stale lock: {e}"));
    let out = JsonRun::from_output(next.wait_with_output().unwrap());
    assert!(status.success(), "{}", out.stderr);
    let train = out
        .stages()
        .into_iter()
        .find(|s| s.id == "train")
        .expect("a train stage");
    assert_eq!(train.state, "ran", "the next build trains (resuming)");
    assert_eq!(train.key.as_deref(), Some(train_key.as_str()));
    println!(
        "build after the kill finished in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let now = names_in(&cache.join("tmp"));
    let left: Vec<&String> = dead.iter().filter(|n| now.contains(*n)).collect();
    assert!(
        left.is_empty(),
        "the dead build's tmp files were removed: {left:?}"
    );
    assert!(!in_flight.exists(), "its in-flight write was removed");
    assert!(
        !cache
            .join("builds")
            .join(format!("partial-{train_key}.json"))
            .exists(),
        "the finished training removed its checkpoint record"
    );
    verify(&p.dir, &cache).unwrap();
    store_consistent(&cache).unwrap();
}

/// A process opening the store clears the records of writers that are gone. One that had
/// just created its owner record but not yet locked it looked gone: the record was
/// removed, and the next open deleted its temporary files mid-write ("cannot write
/// objects/..: No such file or directory"). Threads stand in for processes here: flocks
/// belong to open files, so two opens in one process contend like two processes.
#[test]
fn a_writer_registering_while_others_open_the_store_keeps_its_files() {
    // A tmpfs where there is one: thousands of fresh stores, no disk flushes.
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
    .join(format!("hft-test-register-{}", std::process::id()));
    let rounds = 1500;
    let mut lost = Vec::new();
    for i in 0..rounds {
        let root = base.join(format!("r{i}"));
        let store = hft::store::Store::open(&root).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let openers: Vec<_> = (0..2)
            .map(|_| {
                let (root, stop) = (root.clone(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let _ = hft::store::Store::open(&root);
                    }
                })
            })
            .collect();
        // The first write registers the writer; the second needs the record to survive.
        let writes = [
            store.put_blob(format!("first {i}").as_bytes()),
            store.put_blob(format!("second {i}").as_bytes()),
        ];
        stop.store(true, Ordering::Relaxed);
        for o in openers {
            o.join().unwrap();
        }
        let owners = names_in(&root.join("tmp"))
            .iter()
            .filter(|n| n.ends_with(".owner"))
            .count();
        let failed: Vec<String> = writes
            .into_iter()
            .filter_map(|w| w.err().map(|e| e.to_string()))
            .collect();
        if owners != 1 || !failed.is_empty() {
            lost.push(format!(
                "round {i}: {owners} owner records, failed writes {failed:?}"
            ));
        }
        let _ = fs::remove_dir_all(&root);
    }
    let _ = fs::remove_dir_all(&base);
    assert!(
        lost.is_empty(),
        "{} of {rounds} rounds: {lost:#?}",
        lost.len()
    );
}
