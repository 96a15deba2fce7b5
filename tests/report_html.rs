//! `hft report`: the HTML file of a two-point sweep, checked as text and then driven in a
//! real headless browser (Debian's chromium through chromedriver, the WebDriver protocol):
//! the page's script draws its views, a click on a column header sorts the runs table,
//! a run's toggle hides its loss curve, the filter hides rows, and screenshots are taken.
//!
//! Without chromium and chromedriver the test fails (install them with `apt-get install
//! chromium chromium-driver`, as `.ci/run` does) unless `HFT_SKIP_BROWSER=1` is set.
//! `HFT_REPORT_SCREENSHOT=FILE` keeps a copy of the page's screenshot for a person to see.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Project, csv_bars};
use serde_json::{Value, json};

/// A tiny experiment (as in tests/build.rs) swept over two learning rates, trained for a
/// few epochs so the loss curves have several points.
const EXPERIMENT: &str = "\
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
optimizer: {lr: 0.001}
training: {epochs: 5, batch_size: 64, warmup_steps: 2}
matrix:
  optimizer.lr: [0.001, 0.01]
";

const SLOW: &str = "lr[optimizer.lr=0.001]";
const FAST: &str = "lr[optimizer.lr=0.01]";
const BROWSER_TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn report_of_a_sweep_renders_and_responds_in_a_headless_browser() {
    let p = Project::new("report");
    p.write("trainingdata/AAA.csv", &csv_bars(300, 1));
    p.write("trainingdata/BBB.csv", &csv_bars(300, 2));
    p.write("experiments/lr.yaml", EXPERIMENT);
    p.build();

    let run = p.hft(&["report", "-o", "report.html"]);
    assert_eq!(
        run.code, 0,
        "report failed:\n{}\n{}",
        run.stdout, run.stderr
    );
    let path = p.path("report.html");
    let html = std::fs::read_to_string(&path).expect("report.html written");

    // Both runs, five plots each, and an equity panel per symbol.
    for name in [SLOW, FAST] {
        assert!(html.contains(&format!("<h2>{name}</h2>")), "{name} missing");
    }
    for kind in ["loss", "equity", "drawdown", "scatter", "horizon"] {
        let n = html
            .matches(&format!("<figure class=\"plot {kind}\">"))
            .count();
        assert_eq!(n, 2, "{kind} plots");
    }
    assert_eq!(
        html.matches("<figure class=\"plot symbol-equity\">")
            .count(),
        4
    );
    assert!(!html.contains("not built"));

    // The config diff shows the one setting that differs, and not the shared ones.
    let diff = section(&html, "<section id=\"config-diff\">");
    assert!(diff.contains("<code>optimizer.lr</code>"), "{diff}");
    assert!(!diff.contains("data.symbols"), "{diff}");
    // The matrix points form a sweep.
    assert!(html.contains("<h3>experiments/lr.yaml: lr</h3>"));

    // Self-contained: nothing a browser would fetch; the scripts are inline.
    let lower = html.to_ascii_lowercase();
    for needle in [
        "http://", "https://", "//", "src=", "<link", "url(", "@import",
    ] {
        assert!(!lower.contains(needle), "the report references `{needle}`");
    }

    // The equity curve, computed from the predictions, ends where the evaluate stage's
    // backtest says: its caption and the runs table show the same total return.
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
            "{strategy} not in the runs table:\n{metrics}"
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

/// `name` at /usr/bin or on PATH.
fn program(name: &str) -> Option<PathBuf> {
    let usual = Path::new("/usr/bin").join(name);
    if usual.is_file() {
        return Some(usual);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

fn browser_check(report: &Path) {
    let (Some(chromium), Some(chromedriver)) = (program("chromium"), program("chromedriver"))
    else {
        if std::env::var("HFT_SKIP_BROWSER").is_ok_and(|v| v == "1") {
            eprintln!("note: chromium or chromedriver not found; HFT_SKIP_BROWSER=1, skipping");
            return;
        }
        panic!(
            "chromium and chromedriver not found: run `apt-get install chromium \
             chromium-driver` (or set HFT_SKIP_BROWSER=1 to skip the browser check)"
        );
    };
    let scratch = tempfile::tempdir().expect("temp dir");
    let driver = Driver::start(&chromedriver, &chromium, scratch.path());

    // A blank page's screenshot, the measure of "not blank" below.
    driver.call("POST", "/url", Some(json!({"url": "about:blank"})));
    let blank = driver.screenshot(None);

    driver.call(
        "POST",
        "/url",
        Some(json!({"url": format!("file://{}", report.display())})),
    );
    // Nothing was fetched: the page is its only resource.
    let fetched = driver.script("return performance.getEntriesByType('resource').length");
    assert_eq!(fetched, json!(0), "the report fetched something");

    // The DOM after the script ran: the plotters figures, and the views it drew.
    let count = |selector: &str| -> u64 {
        let js = format!("return document.querySelectorAll({selector:?}).length");
        driver.script(&js).as_u64().expect("a count")
    };
    for kind in ["loss", "equity", "drawdown", "scatter", "horizon"] {
        assert_eq!(count(&format!("figure.plot.{kind} svg")), 2, "{kind}");
    }
    assert_eq!(
        count("#loss-chart path.run-line"),
        2,
        "one validation curve per run"
    );
    assert_eq!(count(".sweep-scatters svg"), 1, "one scatter per swept key");
    assert_eq!(count(".sweep-scatters circle.sweep-point"), 2);
    assert_eq!(count(".sweep-parallel path.parallel-line"), 2);
    assert_eq!(driver.text("#run-count"), "2 runs");

    // Sort by validation loss with a click on its header; again reverses the order.
    let order = || -> Vec<f64> {
        let js = "return [...document.querySelectorAll('table.runs tr.run')]\
                  .map(r => parseFloat(r.cells[3].dataset.v))";
        let values = driver.script(js);
        let values = values.as_array().expect("values").iter();
        values.map(|v| v.as_f64().expect("a loss")).collect()
    };
    let header = driver.find(
        "xpath",
        "//table[contains(@class,'runs')]//th[.='val loss']",
    );
    driver.click(&header);
    let ascending = order();
    assert_eq!(ascending.len(), 2);
    assert!(ascending[0] <= ascending[1], "{ascending:?}");
    assert_eq!(driver.attribute(&header, "aria-sort"), json!("ascending"));
    driver.click(&header);
    let descending = order();
    assert!(descending[0] >= descending[1], "{descending:?}");
    assert_eq!(
        descending,
        ascending.iter().rev().copied().collect::<Vec<_>>()
    );

    // Toggle the first run off: its loss curve goes, the other stays, the chart changes.
    let chart = driver.find("css selector", "#loss-chart");
    let before = driver.screenshot(Some(&chart));
    driver.click(&driver.find("css selector", "#loss-toggles input[data-run='0']"));
    assert_eq!(count("#loss-chart path.run-line[data-run='0']"), 0);
    assert_eq!(count("#loss-chart path.run-line[data-run='1']"), 1);
    let chart = driver.find("css selector", "#loss-chart");
    assert_ne!(
        before,
        driver.screenshot(Some(&chart)),
        "the chart did not change"
    );

    // The filter keeps the rows whose text or differing config matches.
    let filter = driver.find("css selector", "#run-filter");
    driver.call(
        "POST",
        &format!("/element/{filter}/value"),
        Some(json!({"text": "lr=0.001"})),
    );
    assert_eq!(count("table.runs tr.run:not([hidden])"), 1);
    assert_eq!(driver.text("#run-count"), "1 of 2 runs");

    // A screenshot of the page: a PNG with far more in it than a blank page.
    let png = driver.screenshot(None);
    assert!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
    assert!(
        png.len() > 4 * blank.len(),
        "the screenshot is {} bytes, a blank page's {}: blank page?",
        png.len(),
        blank.len()
    );
    if let Some(keep) = std::env::var_os("HFT_REPORT_SCREENSHOT") {
        std::fs::write(&keep, &png).expect("copy the screenshot");
    }
}

/// A chromedriver process and one headless chromium session in it, ended on drop.
struct Driver {
    child: Child,
    base: String,
    session: String,
    agent: ureq::Agent,
}

impl Driver {
    fn start(chromedriver: &Path, chromium: &Path, scratch: &Path) -> Driver {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = std::fs::File::create(scratch.join("chromedriver.log")).expect("log file");
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start chromedriver");
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(BROWSER_TIMEOUT))
            .http_status_as_error(false)
            .build()
            .new_agent();
        let mut driver = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            agent,
        };
        let started = Instant::now();
        while driver.request("GET", "/status", None).is_err() {
            assert!(
                started.elapsed() < BROWSER_TIMEOUT,
                "chromedriver did not start:\n{}",
                std::fs::read_to_string(scratch.join("chromedriver.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = scratch.join("profile");
        let capabilities = json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1280,2000",
                // Nothing in the report should resolve a host name; make sure nothing can.
                "--host-resolver-rules=MAP * ~NOTFOUND",
                format!("--user-data-dir={}", profile.display()),
            ],
        }}}});
        let created = driver
            .request("POST", "/session", Some(capabilities))
            .unwrap_or_else(|e| panic!("no browser session: {e}"));
        driver.session = created["sessionId"]
            .as_str()
            .expect("a session id")
            .to_string();
        driver
    }

    /// One WebDriver command: its `value`, or the error it answered.
    fn request(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let response = match (method, body) {
            ("POST", body) => self
                .agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(body.unwrap_or_else(|| json!({})).to_string()),
            ("DELETE", _) => self.agent.delete(&url).call(),
            _ => self.agent.get(&url).call(),
        };
        let mut response = response.map_err(|e| format!("{method} {path}: {e}"))?;
        let status = response.status();
        let text = response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let value: Value =
            serde_json::from_str(&text).map_err(|e| format!("{method} {path}: {e}: {text}"))?;
        if !status.is_success() {
            return Err(format!("{method} {path}: {status}: {}", value["value"]));
        }
        Ok(value["value"].clone())
    }

    /// A command in the session; fails the test on an error.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        self.request(method, &path, body)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn script(&self, js: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": js, "args": []})),
        )
    }

    /// The id of the element `value` finds (`using`: "css selector" or "xpath").
    fn find(&self, using: &str, value: &str) -> String {
        let found = self.call(
            "POST",
            "/element",
            Some(json!({"using": using, "value": value})),
        );
        let id = found.as_object().and_then(|o| o.values().next());
        id.and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {value}"))
            .to_string()
    }

    fn click(&self, element: &str) {
        self.call("POST", &format!("/element/{element}/click"), None);
    }

    fn attribute(&self, element: &str, name: &str) -> Value {
        self.call("GET", &format!("/element/{element}/attribute/{name}"), None)
    }

    fn text(&self, selector: &str) -> String {
        let element = self.find("css selector", selector);
        let text = self.call("GET", &format!("/element/{element}/text"), None);
        text.as_str().unwrap_or_default().to_string()
    }

    /// A PNG of the viewport, or of one element.
    fn screenshot(&self, element: Option<&str>) -> Vec<u8> {
        let path = match element {
            Some(e) => format!("/element/{e}/screenshot"),
            None => "/screenshot".to_string(),
        };
        let encoded = self.call("GET", &path, None);
        base64(encoded.as_str().expect("base64 text"))
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.request("DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Standard base64 (WebDriver's screenshots) to bytes.
fn base64(text: &str) -> Vec<u8> {
    let digit = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let digits: Vec<u8> = text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .map(digit)
        .collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &d)| n | u32::from(d) << (18 - 6 * i));
        out.extend(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

#[test]
fn base64_decodes_what_webdriver_sends() {
    assert_eq!(base64("aGZ0"), b"hft");
    assert_eq!(base64("aGZ0IQ=="), b"hft!");
    assert_eq!(base64("aGZ0IT8="), b"hft!?");
    assert_eq!(base64("iVBORw0KGgo="), b"\x89PNG\r\n\x1a\n");
}
