//! `hft report`: the HTML file of two built experiments, checked as text and then opened in
//! a real headless browser (Debian's chromium), which renders the plots and takes a
//! screenshot.
//!
//! Without chromium the test fails (install it with `apt-get install chromium`, as `.ci/run`
//! does) unless `HFT_SKIP_BROWSER=1` is set. `HFT_REPORT_SCREENSHOT=FILE` keeps a copy of
//! the screenshot for a person to look at.

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Project, csv_bars};

/// A tiny experiment (as in tests/build.rs), trained for a few epochs so the loss curves
/// have several points.
fn experiment(lr: &str) -> String {
    format!(
        "\
seed: 1
data:
  source: local
  path: trainingdata
  symbols: [AAA, BBB]
  features: [close, log_return, ma_5, rsi_14]
  sequence_length: 10
  prediction_horizon: 2
  split: {{train: 0.6, val: 0.2, test: 0.2}}
model: {{type: mlp, hidden_size: 8, num_layers: 1, dropout: 0.0}}
optimizer: {{lr: {lr}}}
training: {{epochs: 5, batch_size: 64, warmup_steps: 2}}
"
    )
}

const BROWSER_TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn report_of_two_experiments_renders_in_a_headless_browser() {
    let p = Project::new("report");
    p.write("trainingdata/AAA.csv", &csv_bars(300, 1));
    p.write("trainingdata/BBB.csv", &csv_bars(300, 2));
    p.write("experiments/slow.yaml", &experiment("0.001"));
    p.write("experiments/fast.yaml", &experiment("0.01"));
    p.build();

    let run = p.hft(&["report", "-o", "report.html"]);
    assert_eq!(
        run.code, 0,
        "report failed:\n{}\n{}",
        run.stdout, run.stderr
    );
    let path = p.path("report.html");
    let html = std::fs::read_to_string(&path).expect("report.html written");

    // Both experiments, four plots each.
    for name in ["slow", "fast"] {
        assert!(html.contains(&format!("<h2>{name}</h2>")), "{name} missing");
    }
    for kind in ["loss", "equity", "drawdown", "scatter"] {
        let n = html
            .matches(&format!("<figure class=\"plot {kind}\">"))
            .count();
        assert_eq!(n, 2, "{kind} plots");
    }
    assert_eq!(html.matches("<svg ").count(), 8);
    assert!(!html.contains("not built"));

    // The config diff shows the one setting that differs, and not the shared ones.
    let diff = section(&html, "<section id=\"config-diff\">");
    assert!(diff.contains("<code>optimizer.lr</code>"), "{diff}");
    assert!(!diff.contains("data.symbols"), "{diff}");

    // Self-contained: nothing a browser would fetch.
    let lower = html.to_ascii_lowercase();
    for needle in [
        "http://",
        "https://",
        "<script src",
        "<link",
        "url(",
        "@import",
    ] {
        assert!(!lower.contains(needle), "the report references `{needle}`");
    }

    // The equity curve, computed from the predictions, ends where the evaluate stage's
    // backtest says: its caption and the metrics table show the same total return.
    let metrics = section(&html, "<section id=\"metrics\">");
    for figure in html.split("<figure class=\"plot equity\">").skip(1) {
        let strategy = figure
            .split("<figcaption>")
            .nth(1)
            .and_then(|caption| caption.split("; strategy ").nth(1))
            .and_then(|s| s.split(',').next())
            .expect("equity caption states the strategy's return");
        assert!(
            metrics.contains(&format!(">{strategy}</td>")),
            "{strategy} not in the metrics table:\n{metrics}"
        );
    }

    browser_check(&path);
}

/// The text of the section that starts with `start`.
fn section<'a>(html: &'a str, start: &str) -> &'a str {
    html.split(start)
        .nth(1)
        .and_then(|s| s.split("</section>").next())
        .unwrap_or_else(|| panic!("no {start}"))
}

fn chromium() -> Option<PathBuf> {
    let usual = PathBuf::from("/usr/bin/chromium");
    if usual.is_file() {
        return Some(usual);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("chromium"))
            .find(|p| p.is_file())
    })
}

fn browser_check(report: &Path) {
    let Some(chromium) = chromium() else {
        if std::env::var("HFT_SKIP_BROWSER").is_ok_and(|v| v == "1") {
            eprintln!("note: chromium not found; HFT_SKIP_BROWSER=1, skipping the browser check");
            return;
        }
        panic!(
            "chromium not found: run `apt-get install chromium` (or set HFT_SKIP_BROWSER=1 \
             to skip the browser check)"
        );
    };
    let scratch = tempfile::tempdir().expect("temp dir");
    let url = format!("file://{}", report.display());

    let screenshot = scratch.path().join("report.png");
    let screenshot_arg = format!("--screenshot={}", screenshot.display());
    run_browser(
        &chromium,
        scratch.path(),
        "screenshot",
        &[&screenshot_arg, "--window-size=1280,2000", &url],
    );
    let png = std::fs::read(&screenshot).expect("chromium wrote no screenshot");
    assert!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
    assert!(
        png.len() > 10 * 1024,
        "the screenshot is only {} bytes: blank page?",
        png.len()
    );
    if let Some(keep) = std::env::var_os("HFT_REPORT_SCREENSHOT") {
        std::fs::write(&keep, &png).expect("copy the screenshot");
    }

    // The DOM after parsing and layout: the plots are there as SVG elements with their
    // text (a report the browser failed to parse would lose them).
    let dom = run_browser(&chromium, scratch.path(), "dom", &["--dump-dom", &url]);
    for kind in ["loss", "equity", "drawdown", "scatter"] {
        let n = dom
            .matches(&format!("<figure class=\"plot {kind}\">"))
            .count();
        assert_eq!(n, 2, "{kind} plots in the rendered DOM");
    }
    assert_eq!(dom.matches("<svg ").count(), 8, "svg elements in the DOM");
    assert!(
        dom.contains("<polyline") || dom.contains("<path"),
        "no lines drawn"
    );
    assert!(dom.contains("<circle"), "no scatter points drawn");
    assert!(dom.contains("<text"), "no plot labels");
}

/// Runs headless chromium with a fresh profile; its stdout. Fails the test if it does not
/// exit successfully within [`BROWSER_TIMEOUT`].
fn run_browser(chromium: &Path, scratch: &Path, tag: &str, args: &[&str]) -> String {
    let profile = scratch.join(format!("profile-{tag}"));
    let (out_path, err_path) = (
        scratch.join(format!("{tag}.out")),
        scratch.join(format!("{tag}.err")),
    );
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            // Nothing in the report should resolve a host name; make sure nothing can.
            "--host-resolver-rules=MAP * ~NOTFOUND",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).expect("stdout file"))
        .stderr(File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("start chromium");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            break status;
        }
        if started.elapsed() > BROWSER_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium ({tag}) still running after {}s:\n{}",
                BROWSER_TIMEOUT.as_secs(),
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    assert!(
        status.success(),
        "chromium ({tag}) failed: {status}\n{stderr}"
    );
    std::fs::read_to_string(&out_path).expect("chromium output")
}
