//! Helpers for tests that run the real `hft` binary in a scratch project, and the small
//! experiment fixtures that most test files share.
//!
//! The fixtures are macros expanding to string literals, so that a test file can still build
//! its own `const` around them with `concat!` (the YAML text, and so every line number a
//! test asserts, stays exactly what it was).
#![allow(dead_code, unused_macros, unused_imports)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The `data:` block of a synthetic-data experiment: one symbol `SYN` of 300 generated bars,
/// three features, windows of 8, horizon 2. No data file needed.
macro_rules! synthetic_data {
    () => {
        "\
data:
  source: synthetic
  symbols: [SYN]
  synthetic: {bars: 300}
  features: [close, log_return, rsi_14]
  sequence_length: 8
  prediction_horizon: 2
"
    };
}
pub(crate) use synthetic_data;

/// The `data:` block of the smallest local-data experiment: `trainingdata/AAA.csv` (see
/// [`Project::with_local_data`]), two features, windows of 5, horizon 1.
macro_rules! local_data {
    () => {
        "\
data:
  source: local
  path: trainingdata
  symbols: [AAA]
  features: [close, log_return]
  sequence_length: 5
  prediction_horizon: 1
"
    };
}
pub(crate) use local_data;

/// [`local_data!`] with a tiny mlp trained for two steps: [`LOCAL_EXPERIMENT`] without its
/// `name:` line (line 1 is `data:`).
macro_rules! local_body {
    () => {
        concat!(
            $crate::common::local_data!(),
            "model: {type: mlp, hidden_size: 4, num_layers: 1}\n",
            "training: {max_steps: 2, batch_size: 8}\n"
        )
    };
}
pub(crate) use local_body;

/// The text of [`local_body!`].
pub const LOCAL_BODY: &str = local_body!();

/// The smallest valid local-data experiment, named `exp`: the "good" config that the error
/// tests break one key at a time (line 1 `name:`, line 2 `data:`, line 9 `model:`).
pub const LOCAL_EXPERIMENT: &str = concat!("name: exp\n", local_body!());

/// A scratch project folder, removed when dropped.
pub struct Project {
    pub dir: PathBuf,
}

impl Project {
    pub fn new(tag: &str) -> Project {
        let dir = std::env::temp_dir().join(format!(
            "hft-test-{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("experiments")).unwrap();
        Project { dir }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// The `hft` binary with `args`, run in the project folder, with no `HFT_CACHE_DIR` from
    /// the caller's environment: for tests that need a `Command` of their own (stdin, a
    /// background child, extra environment).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hft"));
        command
            .args(args)
            .current_dir(&self.dir)
            .env_remove("HFT_CACHE_DIR");
        command
    }

    /// `hft ARGS` started in the background with its output discarded (a build to kill or to
    /// race against).
    pub fn spawn_quiet(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    pub fn hft(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().unwrap())
    }

    /// `hft ARGS` with extra environment variables set (e.g. `HFT_CACHE_DIR`).
    pub fn hft_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let out = self
            .command(args)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        Run::from(out)
    }

    /// Writes raw bytes (BOMs, CRLF, invalid UTF-8) at `rel`, creating its folder.
    pub fn write_bytes(&self, rel: &str, bytes: &[u8]) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }

    /// The file names under `cache/actions` (empty when there is no cache yet).
    pub fn action_records(&self) -> std::collections::BTreeSet<String> {
        std::fs::read_dir(self.path("cache/actions"))
            .map(|dir| {
                dir.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A project with `trainingdata/AAA.csv` (120 valid bars) and `experiments/exp.yaml`
    /// holding `experiment`: the setting of [`LOCAL_EXPERIMENT`] and its variants.
    pub fn with_local_data(tag: &str, experiment: &str) -> Project {
        let p = Project::new(tag);
        p.write("trainingdata/AAA.csv", &csv_bars(120, 3));
        p.write("experiments/exp.yaml", experiment);
        p
    }

    /// `hft build` that must succeed.
    pub fn build(&self) -> Run {
        let run = self.hft(&["build", "-j", "2"]);
        assert_eq!(run.code, 0, "build failed:\n{}\n{}", run.stdout, run.stderr);
        run
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    /// (experiment, stage) -> state word (`ran`, `cached`, `stale`, `FAILED`, ...), parsed
    /// from the per-stage lines of `hft build` / `hft status`.
    pub fn states(&self) -> BTreeMap<(String, String), String> {
        let mut out = BTreeMap::new();
        let mut experiment = String::new();
        for line in self.stdout.lines() {
            if let Some(stage_line) = line.strip_prefix("  ") {
                let mut words = stage_line.split_whitespace();
                if let (Some(stage), Some(state)) = (words.next(), words.next()) {
                    out.insert((experiment.clone(), stage.to_string()), state.to_string());
                }
            } else if !line.starts_with(' ') && line.contains(" (") {
                experiment = line.split(" (").next().unwrap().to_string();
            }
        }
        out
    }

    /// Stages (as `experiment/stage`) in a given state.
    pub fn with_state(&self, state: &str) -> Vec<String> {
        self.states()
            .into_iter()
            .filter(|(_, s)| s == state)
            .map(|((e, st), _)| format!("{e}/{st}"))
            .collect()
    }

    pub fn ran(&self) -> Vec<String> {
        self.with_state("ran")
    }

    /// Exit code `code` and every `needles` in stderr.
    pub fn assert_failed(&self, code: i32, needles: &[&str]) {
        assert_eq!(
            self.code, code,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        for n in needles {
            assert!(
                self.stderr.contains(n),
                "expected `{n}` in:\n{}",
                self.stderr
            );
        }
    }

    /// A user error: exit code 2, no panic, and every `needles` in stderr.
    pub fn assert_user_error(&self, needles: &[&str]) {
        self.assert_failed(2, &[]);
        assert!(!self.stderr.contains("panicked"), "{}", self.stderr);
        self.assert_failed(2, needles);
    }
}

/// A deterministic, valid daily OHLCV CSV with `rows` bars.
pub fn csv_bars(rows: usize, seed: u64) -> String {
    let mut s = String::from("Date,Open,High,Low,Close,Volume\n");
    let mut price = 100.0f64;
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    for day in 0..rows as i64 {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let u = ((state >> 33) as f64) / (1u64 << 31) as f64 - 0.5; // [-0.5, 0.5)
        let open = price;
        let close = (price * (1.0 + 0.04 * u)).max(1.0);
        let high = open.max(close) * 1.005;
        let low = open.min(close) * 0.995;
        let volume = 1_000_000 + ((state >> 40) % 500_000);
        let (y, m, d) = civil_from_days(16_436 + day); // 2015-01-01 onwards
        s.push_str(&format!(
            "{y:04}-{m:02}-{d:02},{open:.4},{high:.4},{low:.4},{close:.4},{volume}\n"
        ));
        price = close;
    }
    s
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Path of the shared real data, if this machine has it.
pub fn shared_data() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    p.is_dir().then_some(p)
}
