//! The benchmark suite of `shared/reference/benchmarks.md` (issue 10).
//!
//! Every workload runs as a whole process of the release `hft` binary (start-up, parsing,
//! planning, hashing, the store and exit included), because that is what a user waits for
//! and what the peers (PyTorch, pandas, DVC, b3sum) are measured as. Each figure is the
//! median of `HFT_BENCH_RUNS` runs; peak RSS comes from GNU time (`/usr/bin/time -f %M`).
//!
//! ```text
//! cargo bench --bench suite                     # every workload
//! cargo bench --bench suite -- noop hash        # workloads whose name contains a filter
//! ```
//!
//! Workloads: `train/lstm-ref`, `train/transformer-ref`, `train/lstm-tiny`,
//! `train/transformer-tiny`, `features`, `large-train`, `hash`, `noop/N` for each N of
//! `HFT_BENCH_NOOP_N`.
//!
//! Environment:
//! - `HFT_BENCH_RUNS`: runs per figure (default 3; no-op builds and status use at least 10,
//!   they are cheap).
//! - `HFT_BENCH_NOOP_N`: comma-separated experiment counts of the no-op workloads
//!   (default `100,10000`).
//! - `HFT_BENCH_FEATURE_ROWS`: rows of the generated feature CSV (default 2000000).
//! - `HFT_BENCH_LARGE_ROWS`: rows of the `large-train` CSV (default 3500000, about 200 MB:
//!   training's peak memory on a large file, goal under 1.5 GB).
//! - `HFT_BENCH_FEATURES_CSV`: use this OHLCV CSV instead of generating one (the peer script
//!   passes the one pandas reads, so both read the same bytes).
//! - `HFT_BENCH_FEATURES`: comma-separated feature names (default: the six that
//!   `pandas_features.py` computes, see [`PANDAS_FEATURES`]).
//! - `HFT_BENCH_HASH_BYTES`: size of the hashed file (default 1 GiB).
//! - `HFT_BENCH_BIN`: the hft binary (default: the one Cargo built for this bench).
//! - `HFT_BENCH_TSV`: also append one tab-separated line per figure to this file
//!   (`id  metric  value  rss_kib  runs  note`), read by `scripts/bench_peers.sh`.
//! - `HFT_BENCH_TMP`: where scratch projects go (default the system temp dir; the feature
//!   workload writes a ~3 GB dataset blob, the hash workload a 1 GiB file).
//! - `HFT_BENCH_KEEP=1`: keep the scratch folder.
//!
//! Without `--bench` (`cargo test --benches`) it only checks that the binary and GNU time
//! run, so test runs stay fast.

use std::fmt::Write as _;
use std::fs;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The features `pandas_features.py` computes, as hft spells them (log return, MA ratio,
/// RSI(14), Bollinger position, volatility(20), volume ratio(20)): same count, so the same
/// window bytes are materialised. `ma_20` becomes `ma_20 / close - 1` per window (hft's
/// relative prices), the counterpart of pandas' MA5/MA20 ratio.
const PANDAS_FEATURES: &[&str] = &[
    "log_return",
    "ma_20",
    "rsi_14",
    "bb_position",
    "volatility",
    "volume_ratio",
];

/// The training workloads: (name, file under benches/ref/).
const TRAINING: &[(&str, &str)] = &[
    ("lstm-ref", "lstm_ref.yaml"),
    ("transformer-ref", "transformer_ref.yaml"),
    ("lstm-tiny", "lstm_tiny.yaml"),
    ("transformer-tiny", "transformer_tiny.yaml"),
];

const GNU_TIME: &str = "/usr/bin/time";

type Result<T> = std::result::Result<T, String>;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("suite: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = Opts::from_env(&args)?;
    check_tools(&opts.bin)?;
    if !args.iter().any(|a| a == "--bench") {
        // `cargo test --benches` runs bench targets without `--bench`: check, don't measure.
        println!(
            "suite: {} and {GNU_TIME} run; measure with `cargo bench --bench suite`",
            opts.bin.display()
        );
        return Ok(());
    }

    let mut groups: Vec<String> = TRAINING.iter().map(|(n, _)| format!("train/{n}")).collect();
    groups.push("features".into());
    groups.push("large-train".into());
    groups.push("hash".into());
    groups.extend(opts.noop_ns.iter().map(|n| format!("noop/{n}")));
    let selected: Vec<&String> = groups.iter().filter(|g| opts.selects(g)).collect();
    if selected.is_empty() {
        return Err(format!(
            "no workload matches {:?}; workloads: {}",
            opts.filters,
            groups.join(", ")
        ));
    }

    let scratch = Scratch::new(opts.keep)?;
    let load_before = loadavg();
    eprintln!(
        "suite: {} ({}), {} runs per figure, scratch {}, load {load_before}",
        opts.bin.display(),
        hft_version(&opts.bin),
        opts.runs,
        scratch.dir.display()
    );
    let mut rows: Vec<Row> = Vec::new();
    for group in selected {
        eprintln!("== {group}");
        let new_rows = if let Some(name) = group.strip_prefix("train/") {
            let file = TRAINING
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, f)| *f)
                .ok_or_else(|| format!("unknown training workload {name}"))?;
            training(&opts, &scratch, name, file)?
        } else if group == "large-train" {
            large_training(&opts, &scratch)?
        } else if group == "features" {
            features(&opts, &scratch)?
        } else if group == "hash" {
            hashing(&opts, &scratch)?
        } else if let Some(n) = group.strip_prefix("noop/") {
            let n: usize = n.parse().map_err(|_| format!("bad N in {group}"))?;
            noop(&opts, &scratch, n)?
        } else {
            return Err(format!("unknown workload {group}"));
        };
        if let Some(path) = &opts.tsv {
            append_tsv(path, &new_rows)?;
        }
        rows.extend(new_rows);
    }

    println!();
    println!(
        "{} ({}), {} CPUs ({}), load before {load_before}, after {}",
        hft_version(&opts.bin),
        git_commit(),
        nproc(),
        cpu_model(),
        loadavg()
    );
    println!();
    print!("{}", table(&rows));
    Ok(())
}

// ---------------------------------------------------------------------------------------
// options and tools

struct Opts {
    bin: PathBuf,
    runs: usize,
    filters: Vec<String>,
    noop_ns: Vec<usize>,
    feature_rows: usize,
    large_rows: usize,
    features_csv: Option<PathBuf>,
    features: Vec<String>,
    hash_bytes: u64,
    tsv: Option<PathBuf>,
    keep: bool,
}

impl Opts {
    fn from_env(args: &[String]) -> Result<Opts> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let number = |k: &str, default: u64| -> Result<u64> {
            match var(k) {
                None => Ok(default),
                Some(v) => match v.trim().parse::<u64>() {
                    Ok(n) if n > 0 => Ok(n),
                    _ => Err(format!("{k} must be a positive integer (got '{v}')")),
                },
            }
        };
        let noop_ns = match var("HFT_BENCH_NOOP_N") {
            None => vec![100, 10_000],
            Some(v) => v
                .split(',')
                .map(|s| match s.trim().parse::<usize>() {
                    Ok(n) if n > 0 => Ok(n),
                    _ => Err(format!(
                        "HFT_BENCH_NOOP_N must be positive integers separated by commas (got '{v}')"
                    )),
                })
                .collect::<Result<_>>()?,
        };
        let features = match var("HFT_BENCH_FEATURES") {
            None => PANDAS_FEATURES.iter().map(|s| s.to_string()).collect(),
            Some(v) => v.split(',').map(|s| s.trim().to_string()).collect(),
        };
        let bin = var("HFT_BENCH_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_hft")));
        let bin = fs::canonicalize(&bin).map_err(|e| {
            format!(
                "no hft binary at {} ({e}); build it with `cargo build --release`",
                bin.display()
            )
        })?;
        let features_csv = match var("HFT_BENCH_FEATURES_CSV") {
            None => None,
            Some(p) => {
                Some(fs::canonicalize(&p).map_err(|e| format!("HFT_BENCH_FEATURES_CSV={p}: {e}"))?)
            }
        };
        Ok(Opts {
            bin,
            runs: number("HFT_BENCH_RUNS", 3)? as usize,
            filters: args
                .iter()
                .filter(|a| !a.starts_with('-'))
                .cloned()
                .collect(),
            noop_ns,
            feature_rows: number("HFT_BENCH_FEATURE_ROWS", 2_000_000)? as usize,
            large_rows: number("HFT_BENCH_LARGE_ROWS", 3_500_000)? as usize,
            features_csv,
            features,
            hash_bytes: number("HFT_BENCH_HASH_BYTES", 1 << 30)?,
            tsv: var("HFT_BENCH_TSV").map(PathBuf::from),
            keep: var("HFT_BENCH_KEEP").as_deref() == Some("1"),
        })
    }

    fn selects(&self, group: &str) -> bool {
        self.filters.is_empty() || self.filters.iter().any(|f| group.contains(f.as_str()))
    }

    /// Runs for a cheap figure (a few ms each): more of them make the median stable.
    fn cheap_runs(&self) -> usize {
        self.runs.max(10)
    }
}

fn check_tools(bin: &Path) -> Result<()> {
    let ok = Command::new(GNU_TIME)
        .args(["-f", "%M", "-o", "/dev/null", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        return Err(format!(
            "GNU time is needed for peak RSS and {GNU_TIME} does not run; install it \
             (Debian/Ubuntu: `apt-get install time`)"
        ));
    }
    let out = Command::new(bin)
        .arg("--version")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    if !out.status.success() {
        return Err(format!("{} --version failed", bin.display()));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// processes

/// One finished hft process.
struct Measured {
    wall: Duration,
    /// Peak RSS in KiB, when run under GNU time.
    rss_kib: Option<u64>,
    stdout: String,
    stderr: String,
}

/// Runs `hft ARGS` in `dir` and waits for it; an exit status other than 0 is an error
/// carrying hft's output. With `rss`, runs it under GNU time (about a millisecond more of
/// wall time, which is why cheap figures are timed without it).
fn hft(opts: &Opts, dir: &Path, args: &[&str], rss: bool) -> Result<Measured> {
    let rss_file = dir.join(".bench-rss");
    let mut cmd = if rss {
        let mut c = Command::new(GNU_TIME);
        c.arg("-f")
            .arg("%M")
            .arg("-o")
            .arg(&rss_file)
            .arg(&opts.bin);
        c
    } else {
        Command::new(&opts.bin)
    };
    cmd.args(args)
        .current_dir(dir)
        .env_remove("HFT_CACHE_DIR")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    let started = Instant::now();
    let out = cmd
        .output()
        .map_err(|e| format!("cannot start {}: {e}", opts.bin.display()))?;
    let wall = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return Err(format!(
            "`hft {}` in {} failed ({}):\n{}{}",
            args.join(" "),
            dir.display(),
            out.status,
            tail(&stdout, 30),
            tail(&stderr, 30)
        ));
    }
    let rss_kib = if rss {
        let text =
            fs::read_to_string(&rss_file).map_err(|e| format!("no output from {GNU_TIME}: {e}"))?;
        let _ = fs::remove_file(&rss_file);
        // GNU time writes "Command exited ..." lines before the figure when the child fails.
        let figure = text.lines().last().unwrap_or_default().trim();
        Some(
            figure
                .parse()
                .map_err(|_| format!("{GNU_TIME} printed '{}', not a KiB count", text.trim()))?,
        )
    } else {
        None
    };
    Ok(Measured {
        wall,
        rss_kib,
        stdout,
        stderr,
    })
}

fn tail(s: &str, lines: usize) -> String {
    let all: Vec<&str> = s.lines().collect();
    let mut out = all[all.len().saturating_sub(lines)..].join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

/// The counts of a build's last line, "E experiments: R stages ran, C cached, F failed (T)".
fn build_counts(stdout: &str) -> Result<(usize, usize, usize)> {
    let last = stdout.lines().last().unwrap_or_default();
    let number_before = |word: &str| -> Option<usize> {
        let at = last.find(word)?;
        last[..at].split_whitespace().last()?.parse().ok()
    };
    match (
        number_before(" stages ran"),
        number_before(" cached"),
        number_before(" failed"),
    ) {
        (Some(r), Some(c), Some(f)) => Ok((r, c, f)),
        _ => Err(format!("unexpected last line of `hft build`: '{last}'")),
    }
}

// ---------------------------------------------------------------------------------------
// results

/// One reported figure.
struct Row {
    id: String,
    metric: &'static str,
    value: f64,
    rss_kib: Option<u64>,
    runs: usize,
    note: String,
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn median_rss(values: &[Option<u64>]) -> Option<u64> {
    let v: Vec<f64> = values.iter().flatten().map(|&k| k as f64).collect();
    (!v.is_empty()).then(|| median(&v).round() as u64)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(|| "-".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

fn fmt_value(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn table(rows: &[Row]) -> String {
    let header = ["workload", "metric", "hft", "peak RSS", "runs", "notes"];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                r.id.clone(),
                r.metric.to_string(),
                fmt_value(r.value),
                mib(r.rss_kib),
                r.runs.to_string(),
                r.note.clone(),
            ]
        })
        .collect();
    let mut width = header.map(str::len);
    for row in &cells {
        for (w, c) in width.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, row: &[String]| {
        let parts: Vec<String> = row
            .iter()
            .zip(&width)
            .enumerate()
            .map(|(i, (c, w))| {
                if i == 2 || i == 3 || i == 4 {
                    format!("{c:>w$}")
                } else {
                    format!("{c:<w$}")
                }
            })
            .collect();
        let _ = writeln!(out, "{}", parts.join("  ").trim_end());
    };
    line(&mut out, &header.map(String::from));
    line(&mut out, &width.map(|w| "-".repeat(w)));
    for row in &cells {
        line(&mut out, row);
    }
    out
}

fn append_tsv(path: &Path, rows: &[Row]) -> Result<()> {
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("HFT_BENCH_TSV={}: {e}", path.display()))?;
    for r in rows {
        writeln!(
            f,
            "{}\t{}\t{}\t{}\t{}\t{}",
            r.id,
            r.metric,
            r.value,
            r.rss_kib.map_or_else(|| "-".into(), |k| k.to_string()),
            r.runs,
            r.note.replace('\t', " ")
        )
        .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// scratch projects

/// The scratch folder of one suite run, removed at the end unless kept.
struct Scratch {
    dir: PathBuf,
    keep: bool,
}

impl Scratch {
    fn new(keep: bool) -> Result<Scratch> {
        let base = std::env::var_os("HFT_BENCH_TMP")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = base.join(format!("hft-bench-{}-{stamp}", std::process::id()));
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Scratch { dir, keep })
    }

    /// A fresh project folder with an `experiments/` folder in it.
    fn project(&self, name: &str) -> Result<PathBuf> {
        let dir = self.dir.join(name);
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        fs::create_dir_all(dir.join("experiments"))
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("suite: scratch kept: {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

fn write(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

fn remove_dir(path: &Path) {
    // Scratch caches hold up to a few GB; dropping them between runs keeps the disk free.
    let _ = fs::remove_dir_all(path);
}

// ---------------------------------------------------------------------------------------
// training

/// samples/s of the epochs after the first (warm-up), as the train stage records them.
fn training(opts: &Opts, scratch: &Scratch, name: &str, file: &str) -> Result<Vec<Row>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("benches/ref")
        .join(file);
    let proj = scratch.project(&format!("train-{name}"))?;
    let exp = format!("experiments/{file}");
    fs::copy(&src, proj.join(&exp)).map_err(|e| format!("{}: {e}", src.display()))?;
    let (mut speeds, mut rss) = (Vec::new(), Vec::new());
    let mut epochs_used = String::new();
    for run in 1..=opts.runs {
        // A fresh store each run, so every stage really executes.
        let cache = proj.join(format!("cache-{run}"));
        let cache_arg = cache.to_string_lossy().into_owned();
        let m = hft(
            opts,
            &proj,
            &[
                "build",
                &exp,
                "--until",
                "train",
                "-q",
                "--cache-dir",
                &cache_arg,
            ],
            true,
        )?;
        let show = hft(
            opts,
            &proj,
            &["show", &exp, "--json", "--cache-dir", &cache_arg],
            false,
        )?;
        remove_dir(&cache);
        let per_epoch = train_speeds(&show.stdout)?;
        // Epoch 1 pays for allocator growth and caches warming up: benchmarks.md measures
        // after warm-up. A single-epoch config has nothing else to report.
        let (used, label) = if per_epoch.len() > 2 {
            (&per_epoch[1..], format!("epochs 2-{}", per_epoch.len()))
        } else if per_epoch.len() == 2 {
            (&per_epoch[1..], "epoch 2".to_string())
        } else {
            (&per_epoch[..], "epoch 1 (includes warm-up)".to_string())
        };
        let sps = used.iter().sum::<f64>() / used.len() as f64;
        eprintln!(
            "  run {run}/{}: {sps:.0} samples/s ({label}; per epoch {}), peak RSS {}, {:.1} s",
            opts.runs,
            per_epoch
                .iter()
                .map(|s| format!("{s:.0}"))
                .collect::<Vec<_>>()
                .join(" "),
            mib(m.rss_kib),
            m.wall.as_secs_f64()
        );
        epochs_used = label;
        speeds.push(sps);
        rss.push(m.rss_kib);
    }
    Ok(vec![Row {
        id: name.to_string(),
        metric: "samples/s",
        value: median(&speeds),
        rss_kib: median_rss(&rss),
        runs: opts.runs,
        note: format!("{epochs_used}; benches/ref/{file}"),
    }])
}

/// `stages[id=train].summary.samples_per_sec` of `hft show --json`.
fn train_speeds(show_json: &str) -> Result<Vec<f64>> {
    let doc: serde_json::Value = serde_json::from_str(show_json)
        .map_err(|e| format!("`hft show --json` printed invalid JSON: {e}"))?;
    let speeds = doc["stages"]
        .as_array()
        .and_then(|stages| stages.iter().find(|s| s["id"] == "train"))
        .and_then(|s| s["summary"]["samples_per_sec"].as_array())
        .ok_or("`hft show --json` has no train stage with summary.samples_per_sec")?;
    let speeds: Vec<f64> = speeds.iter().filter_map(|v| v.as_f64()).collect();
    if speeds.is_empty() {
        return Err("the train stage recorded no epoch".into());
    }
    Ok(speeds)
}

// ---------------------------------------------------------------------------------------
// feature pipeline

/// rows/s of CSV -> features -> normalised 60-bar float32 windows (`--until dataset`).
fn features(opts: &Opts, scratch: &Scratch) -> Result<Vec<Row>> {
    let proj = scratch.project("features")?;
    let data = proj.join("data");
    fs::create_dir_all(&data).map_err(|e| format!("{}: {e}", data.display()))?;
    let csv = data.join("BENCH.csv");
    let rows = match &opts.features_csv {
        Some(given) => {
            std::os::unix::fs::symlink(given, &csv).map_err(|e| format!("{e}"))?;
            let rows = count_lines(given)?.saturating_sub(1);
            eprintln!("  {} ({rows} rows)", given.display());
            rows
        }
        None => {
            let t = Instant::now();
            write_ohlcv_csv(&csv, opts.feature_rows)?;
            eprintln!(
                "  generated {} rows of OHLCV in {:.1} s",
                opts.feature_rows,
                t.elapsed().as_secs_f64()
            );
            opts.feature_rows
        }
    };
    let exp = "experiments/features.yaml";
    write(
        &proj.join(exp),
        &format!(
            "# Generated by benches/suite.rs: the feature pipeline of benchmarks.md.\n\
             description: feature pipeline benchmark\n\
             data:\n  source: local\n  path: data/\n  symbols: [BENCH]\n\
             \x20 features: [{}]\n  sequence_length: 60\n  prediction_horizon: 5\n\
             model: {{type: mlp, hidden_size: 4, num_layers: 1}}\n",
            opts.features.join(", ")
        ),
    )?;
    // Read once so every run starts with the CSV in the page cache, as pandas' runs do.
    count_lines(&csv)?;
    let (mut speeds, mut rss) = (Vec::new(), Vec::new());
    let mut windows = String::new();
    for run in 1..=opts.runs {
        let cache = proj.join(format!("cache-{run}"));
        let cache_arg = cache.to_string_lossy().into_owned();
        let m = hft(
            opts,
            &proj,
            &[
                "build",
                exp,
                "--until",
                "dataset",
                "-q",
                "--cache-dir",
                &cache_arg,
            ],
            true,
        )?;
        if windows.is_empty() {
            let show = hft(
                opts,
                &proj,
                &["show", exp, "--json", "--cache-dir", &cache_arg],
                false,
            )?;
            windows = dataset_shape(&show.stdout)?;
        }
        remove_dir(&cache);
        let per_sec = rows as f64 / m.wall.as_secs_f64();
        eprintln!(
            "  run {run}/{}: {:.2} s, {:.0} rows/s, peak RSS {}",
            opts.runs,
            m.wall.as_secs_f64(),
            per_sec,
            mib(m.rss_kib)
        );
        speeds.push(per_sec);
        rss.push(m.rss_kib);
    }
    Ok(vec![Row {
        id: "features".into(),
        metric: "rows/s",
        value: median(&speeds),
        rss_kib: median_rss(&rss),
        runs: opts.runs,
        note: format!("{rows} rows, {} features, {windows}", opts.features.len()),
    }])
}

/// Training on a large file: a 200 MB CSV of one-minute bars, 60-bar windows of the six
/// pandas features, a small MLP for 20 steps (`--until train`). What is measured is the
/// peak RSS: the training rows are held once, and each batch's windows are cut from them.
fn large_training(opts: &Opts, scratch: &Scratch) -> Result<Vec<Row>> {
    let proj = scratch.project("large-train")?;
    let data = proj.join("data");
    fs::create_dir_all(&data).map_err(|e| format!("{}: {e}", data.display()))?;
    let csv = data.join("LARGE.csv");
    let t = Instant::now();
    write_ohlcv_csv(&csv, opts.large_rows)?;
    let bytes = fs::metadata(&csv).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "  generated {} rows ({}) in {:.1} s",
        opts.large_rows,
        human_bytes(bytes),
        t.elapsed().as_secs_f64()
    );
    let exp = "experiments/large.yaml";
    write(
        &proj.join(exp),
        &format!(
            "# Generated by benches/suite.rs: training's memory on a large file.\n\
             data:\n  source: local\n  path: data/\n  symbols: [LARGE]\n\
             \x20 features: [{}]\n  sequence_length: 60\n  prediction_horizon: 5\n\
             model: {{type: mlp, hidden_size: 8, num_layers: 1, dropout: 0.0}}\n\
             training: {{max_steps: 20, batch_size: 256, warmup_steps: 1}}\n",
            opts.features.join(", ")
        ),
    )?;
    let (mut secs, mut rss) = (Vec::new(), Vec::new());
    for run in 1..=opts.runs {
        let cache = proj.join(format!("cache-{run}"));
        let cache_arg = cache.to_string_lossy().into_owned();
        let m = hft(
            opts,
            &proj,
            &[
                "build",
                exp,
                "--until",
                "train",
                "-q",
                "--cache-dir",
                &cache_arg,
            ],
            true,
        )?;
        remove_dir(&cache);
        eprintln!(
            "  run {run}/{}: {:.2} s, peak RSS {}",
            opts.runs,
            m.wall.as_secs_f64(),
            mib(m.rss_kib)
        );
        secs.push(m.wall.as_secs_f64());
        rss.push(m.rss_kib);
    }
    Ok(vec![Row {
        id: "large-train".into(),
        metric: "s",
        value: median(&secs),
        rss_kib: median_rss(&rss),
        runs: opts.runs,
        note: format!(
            "{} rows ({}), 60-bar windows of {} features, 20 steps",
            opts.large_rows,
            human_bytes(bytes),
            opts.features.len()
        ),
    }])
}

/// "N windows x 60 x K f32" from the dataset stage's summary.
fn dataset_shape(show_json: &str) -> Result<String> {
    let doc: serde_json::Value = serde_json::from_str(show_json)
        .map_err(|e| format!("`hft show --json` printed invalid JSON: {e}"))?;
    let s = doc["stages"]
        .as_array()
        .and_then(|stages| stages.iter().find(|s| s["id"] == "dataset"))
        .map(|s| &s["summary"])
        .ok_or("`hft show --json` has no dataset stage")?;
    let n: u64 = ["train", "val", "test"]
        .iter()
        .filter_map(|k| s[*k].as_u64())
        .sum();
    Ok(format!(
        "{n} windows x {} x {} f32",
        s["sequence_length"], s["num_features"]
    ))
}

fn count_lines(path: &Path) -> Result<usize> {
    let mut f = fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut lines = 0;
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if n == 0 {
            return Ok(lines);
        }
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count();
    }
}

/// SplitMix64: a small seeded generator, so the generated data is the same on every run.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.unit(), self.unit());
        (-2.0 * libm::log(u)).sqrt() * libm::cos(std::f64::consts::TAU * v)
    }
}

/// The CSV `pandas_features.py gen` writes: one-minute bars from 2000-01-01 (2M daily bars
/// would run past the year 5000; minute bars keep timestamps ordinary), a log-normal random
/// walk with sigma 0.001, prices rounded to 4 decimals (rounding is monotone, so high >=
/// max(open, close) and low <= min(open, close) still hold), integer volumes.
fn write_ohlcv_csv(path: &Path, rows: usize) -> Result<()> {
    let io_err = |e: io::Error| format!("{}: {e}", path.display());
    let mut w = BufWriter::with_capacity(1 << 20, fs::File::create(path).map_err(io_err)?);
    let mut rng = Rng(7);
    let start = chrono::NaiveDate::from_ymd_opt(2000, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .ok_or("bad start date")?;
    writeln!(w, "date,open,high,low,close,volume").map_err(io_err)?;
    let mut log_close = libm::log(100f64);
    let mut prev_close = 100f64;
    for i in 0..rows {
        log_close += 0.001 * rng.normal();
        let close = libm::exp(log_close);
        let open = prev_close;
        let high = open.max(close) * (1.0 + (0.0005 * rng.normal()).abs());
        let low = open.min(close) * (1.0 - (0.0005 * rng.normal()).abs());
        let volume = 100 + rng.next_u64() % 99_900;
        let t = start + chrono::TimeDelta::minutes(i as i64);
        writeln!(
            w,
            "{},{open:.4},{high:.4},{low:.4},{close:.4},{volume}",
            t.format("%Y-%m-%d %H:%M:%S")
        )
        .map_err(io_err)?;
        prev_close = close;
    }
    w.flush().map_err(io_err)
}

// ---------------------------------------------------------------------------------------
// hashing

/// `hft status` over an experiment whose data file is `HFT_BENCH_HASH_BYTES` of random
/// bytes: the first status hashes it (fresh store, so an empty stat cache), the next ones
/// find its (size, mtime, inode) fingerprint unchanged. Status never parses the file, so it
/// need not be a valid CSV.
fn hashing(opts: &Opts, scratch: &Scratch) -> Result<Vec<Row>> {
    let proj = scratch.project("hash")?;
    let data = proj.join("data");
    fs::create_dir_all(&data).map_err(|e| format!("{}: {e}", data.display()))?;
    let big = data.join("BIG.csv");
    write_random_file(&big, opts.hash_bytes)?;
    let size = human_bytes(opts.hash_bytes);
    let exp = "experiments/hash.yaml";
    write(
        &proj.join(exp),
        "# Generated by benches/suite.rs: status hashes data/BIG.csv.\n\
         data: {source: local, path: data/, symbols: [BIG]}\n\
         model: {type: mlp, hidden_size: 4, num_layers: 1}\n",
    )?;
    let mut rows = Vec::new();

    // Cold: the page cache dropped before each run (root only), so the file comes off disk.
    let mut cold = Vec::new();
    let mut cold_rss = Vec::new();
    for run in 1..=opts.runs {
        let cache = proj.join(format!("cache-cold-{run}"));
        if let Err(why) = drop_page_cache() {
            eprintln!("  cannot drop the page cache ({why}): no cold-disk figure");
            cold.clear();
            break;
        }
        let m = hft(
            opts,
            &proj,
            &["status", exp, "-q", "--cache-dir", &cache.to_string_lossy()],
            true,
        )?;
        remove_dir(&cache);
        eprintln!("  cold-disk run {run}/{}: {:.1} ms", opts.runs, ms(m.wall));
        cold.push(ms(m.wall));
        cold_rss.push(m.rss_kib);
    }
    if !cold.is_empty() {
        rows.push(Row {
            id: "hash-cold-disk".into(),
            metric: "ms",
            value: median(&cold),
            rss_kib: median_rss(&cold_rss),
            runs: cold.len(),
            note: format!("hft status, {size} file, page cache dropped"),
        });
    }

    // First hash with the file in the page cache: what b3sum and `dvc add` were timed on.
    read_through(&big)?;
    let (mut first, mut first_rss) = (Vec::new(), Vec::new());
    for run in 1..=opts.runs {
        let cache = proj.join(format!("cache-first-{run}"));
        let m = hft(
            opts,
            &proj,
            &["status", exp, "-q", "--cache-dir", &cache.to_string_lossy()],
            true,
        )?;
        remove_dir(&cache);
        eprintln!("  first-hash run {run}/{}: {:.1} ms", opts.runs, ms(m.wall));
        first.push(ms(m.wall));
        first_rss.push(m.rss_kib);
    }
    rows.push(Row {
        id: "hash-first".into(),
        metric: "ms",
        value: median(&first),
        rss_kib: median_rss(&first_rss),
        runs: opts.runs,
        note: format!("hft status, {size} file, empty stat cache, page cache warm"),
    });

    // Unchanged: one status fills the stat cache, then every status re-checks the fingerprint.
    let cache = proj.join("cache-warm");
    let cache_arg = cache.to_string_lossy().into_owned();
    let args = ["status", exp, "-q", "--cache-dir", &cache_arg];
    hft(opts, &proj, &args, false)?;
    let mut warm = Vec::new();
    for _ in 0..opts.cheap_runs() {
        warm.push(ms(hft(opts, &proj, &args, false)?.wall));
    }
    let rss = hft(opts, &proj, &args, true)?.rss_kib;
    remove_dir(&cache);
    eprintln!(
        "  unchanged: median {:.1} ms over {} runs",
        median(&warm),
        warm.len()
    );
    rows.push(Row {
        id: "hash-unchanged".into(),
        metric: "ms",
        value: median(&warm),
        rss_kib: rss,
        runs: warm.len(),
        note: format!("whole `hft status` process, {size} file re-checked by stat fingerprint"),
    });
    let _ = fs::remove_file(&big);
    Ok(rows)
}

fn human_bytes(n: u64) -> String {
    if n >= 1 << 30 && n.is_multiple_of(1 << 30) {
        format!("{} GiB", n >> 30)
    } else if n >= 1 << 20 {
        format!("{:.0} MiB", n as f64 / (1u64 << 20) as f64)
    } else {
        format!("{n} B")
    }
}

fn write_random_file(path: &Path, bytes: u64) -> Result<()> {
    let io_err = |e: io::Error| format!("{}: {e}", path.display());
    let mut f = fs::File::create(path).map_err(io_err)?;
    let mut rng = Rng(0x5eed);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        for chunk in buf.chunks_exact_mut(8) {
            chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
        }
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n]).map_err(io_err)?;
        left -= n as u64;
    }
    f.sync_all().map_err(io_err)
}

fn read_through(path: &Path) -> Result<()> {
    let mut f = fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    io::copy(&mut f, &mut io::sink()).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(())
}

/// `sync; echo 3 > /proc/sys/vm/drop_caches` (needs root and a writable /proc/sys).
fn drop_page_cache() -> Result<()> {
    let synced = Command::new("sync").status().is_ok_and(|s| s.success());
    if !synced {
        return Err("`sync` failed".into());
    }
    fs::write("/proc/sys/vm/drop_caches", "3").map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------------------
// no-op builds

/// N generated experiments that share their data stages and differ only in `seed` (so the
/// setup build trains N tiny MLPs for one step each), then: no-op `hft build`, no-op
/// `hft status`, and a build after one experiment's seed changed (init, train, evaluate of
/// that one re-run).
fn noop(opts: &Opts, scratch: &Scratch, n: usize) -> Result<Vec<Row>> {
    let proj = scratch.project(&format!("noop-{n}"))?;
    let exp_file = |i: usize| proj.join(format!("experiments/gen_{i:05}.yaml"));
    let experiment = |i: usize, seed: usize| {
        format!(
            "# Generated by benches/suite.rs: the no-op build workload.\n\
             description: no-op benchmark experiment {i}\n\
             seed: {seed}\n\
             data:\n  source: synthetic\n  symbols: [SYNA]\n  synthetic: {{bars: 300}}\n\
             \x20 sequence_length: 10\n  prediction_horizon: 2\n\
             model: {{type: mlp, hidden_size: 4, num_layers: 1, dropout: 0.0}}\n\
             training: {{max_steps: 1, batch_size: 8, warmup_steps: 0}}\n"
        )
    };
    for i in 0..n {
        write(&exp_file(i), &experiment(i, i))?;
    }
    let cache = proj.join("cache");
    let cache_arg = cache.to_string_lossy().into_owned();
    let build = ["build", "-q", "--cache-dir", &cache_arg];
    let status = ["status", "-q", "--cache-dir", &cache_arg];

    let setup = hft(opts, &proj, &build, true)?;
    let (ran, cached, failed) = build_counts(&setup.stdout)?;
    if failed > 0 {
        return Err(format!(
            "the setup build failed:\n{}",
            tail(&setup.stdout, 20)
        ));
    }
    eprintln!(
        "  setup: {:.1} s ({ran} stages ran, {cached} cached), peak RSS {}",
        setup.wall.as_secs_f64(),
        mib(setup.rss_kib)
    );
    let stages = ran + cached;
    let mut rows = vec![Row {
        id: format!("noop-setup-{n}"),
        metric: "s",
        value: setup.wall.as_secs_f64(),
        rss_kib: setup.rss_kib,
        runs: 1,
        note: format!("first build: {ran} stages ran, {cached} shared/cached"),
    }];

    let check_noop = |m: &Measured| -> Result<()> {
        match build_counts(&m.stdout)? {
            (0, _, 0) => Ok(()),
            (r, _, f) => Err(format!(
                "expected a no-op build, {r} stages ran and {f} failed:\n{}{}",
                tail(&m.stdout, 10),
                tail(&m.stderr, 10)
            )),
        }
    };
    let mut times = Vec::new();
    for _ in 0..opts.cheap_runs() {
        let m = hft(opts, &proj, &build, false)?;
        check_noop(&m)?;
        times.push(ms(m.wall));
    }
    let m = hft(opts, &proj, &build, true)?;
    check_noop(&m)?;
    eprintln!(
        "  no-op build: median {:.1} ms over {} runs, peak RSS {}",
        median(&times),
        times.len(),
        mib(m.rss_kib)
    );
    rows.push(Row {
        id: format!("noop-build-{n}"),
        metric: "ms",
        value: median(&times),
        rss_kib: m.rss_kib,
        runs: times.len(),
        note: format!("{n} experiments, {stages} stages, all cached"),
    });

    let mut times = Vec::new();
    for _ in 0..opts.cheap_runs() {
        times.push(ms(hft(opts, &proj, &status, false)?.wall));
    }
    let rss = hft(opts, &proj, &status, true)?.rss_kib;
    eprintln!(
        "  status: median {:.1} ms over {} runs",
        median(&times),
        times.len()
    );
    rows.push(Row {
        id: format!("status-{n}"),
        metric: "ms",
        value: median(&times),
        rss_kib: rss,
        runs: times.len(),
        note: format!("{n} experiments, nothing stale"),
    });

    // A parameter change in one experiment: a new seed each run, so each run re-executes.
    let (mut times, mut rss) = (Vec::new(), Vec::new());
    for run in 0..opts.runs {
        write(&exp_file(0), &experiment(0, 1_000_000 + run))?;
        let m = hft(opts, &proj, &build, true)?;
        let (ran, _, failed) = build_counts(&m.stdout)?;
        if ran == 0 || failed > 0 {
            return Err(format!(
                "after changing one seed, expected stages to re-run: {}",
                tail(&m.stdout, 5)
            ));
        }
        times.push(ms(m.wall));
        rss.push(m.rss_kib);
    }
    eprintln!("  one experiment re-run: median {:.1} ms", median(&times));
    rows.push(Row {
        id: format!("rerun-one-{n}"),
        metric: "ms",
        value: median(&times),
        rss_kib: median_rss(&rss),
        runs: times.len(),
        note: format!("seed of 1 of {n} changed: its init, train, evaluate re-run"),
    });
    remove_dir(&cache);
    Ok(rows)
}

// ---------------------------------------------------------------------------------------
// machine facts

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn nproc() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}

fn cpu_model() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn git_commit() -> String {
    Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| format!("commit {}", String::from_utf8_lossy(&o.stdout).trim()))
        .unwrap_or_else(|| "commit unknown".into())
}

fn hft_version(bin: &Path) -> String {
    Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "?".into())
}
