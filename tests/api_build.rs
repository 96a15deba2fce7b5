//! `data.source: api` through the real binary, against an Alpaca-style server on loopback:
//! the first build fetches and snapshots, later builds (and re-executions of ingest) work
//! offline from the snapshot, `hft fetch` refreshes it, and credentials are stored nowhere.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::Project;

const KEY: &str = "test-key-id";
const SECRET: &str = "s3cr3t-sentinel-value";

/// An Alpaca market-data server: `bars` daily bars of one symbol, 50 per page.
struct Server {
    port: u16,
    requests: Arc<AtomicUsize>,
    bars: Arc<Mutex<usize>>,
    up: Arc<AtomicBool>,
}

impl Server {
    fn start(bars: usize) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let count = Arc::new(Mutex::new(bars));
        let up = Arc::new(AtomicBool::new(true));
        let (r, c, u) = (requests.clone(), count.clone(), up.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                reader.read_line(&mut request_line).unwrap_or(0);
                let mut authorised = (false, false);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    authorised.0 |= lower.starts_with("apca-api-key-id:") && line.contains(KEY);
                    authorised.1 |=
                        lower.starts_with("apca-api-secret-key:") && line.contains(SECRET);
                }
                r.fetch_add(1, Ordering::SeqCst);
                let (status, body) = if !u.load(Ordering::SeqCst) {
                    ("503 Service Unavailable", "down".to_string())
                } else if authorised != (true, true) {
                    (
                        "401 Unauthorized",
                        r#"{"code":40110000,"message":"request is not authorized"}"#.to_string(),
                    )
                } else {
                    ("200 OK", page(&request_line, *c.lock().unwrap()))
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Server {
            port,
            requests,
            bars: count,
            up,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// One page of bars for a request line such as
/// `GET /v2/stocks/AAA/bars?timeframe=1Day&page_token=50 HTTP/1.1`.
fn page(request_line: &str, total: usize) -> String {
    let from: usize = request_line
        .split(['?', '&', ' '])
        .find_map(|p| p.strip_prefix("page_token="))
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let to = (from + 50).min(total);
    let mut price = 100.0f64;
    let mut bars = Vec::new();
    for i in 0..to {
        let open = price;
        let close = price * (1.0 + 0.01 * ((i * 7 % 11) as f64 - 5.0) / 5.0);
        price = close;
        if i < from {
            continue;
        }
        let day =
            chrono::NaiveDate::from_ymd_opt(2021, 1, 4).unwrap() + chrono::Duration::days(i as i64);
        bars.push(format!(
            r#"{{"t":"{}T05:00:00Z","o":{open},"h":{},"l":{},"c":{close},"v":{},"n":10,"vw":{close}}}"#,
            day.format("%Y-%m-%d"),
            open.max(close) * 1.01,
            open.min(close) * 0.99,
            1000 + i
        ));
    }
    let next = if to < total {
        format!("\"{to}\"")
    } else {
        "null".to_string()
    };
    format!(
        r#"{{"bars":[{}],"symbol":"AAA","next_page_token":{next}}}"#,
        bars.join(",")
    )
}

fn experiment(url: &str, extra: &str) -> String {
    format!(
        "name: exp\n\
         data:\n  source: api\n  symbols: [AAA]\n  api: {{provider: alpaca, base_url: '{url}', retries: 1, timeout_secs: 5}}\n\
         \x20 features: [close, log_return]\n  sequence_length: 5\n  prediction_horizon: 1\n{extra}\
         model: {{type: mlp, hidden_size: 4, num_layers: 1}}\n\
         training: {{max_steps: 2, batch_size: 8}}\n"
    )
}

const CREDENTIALS: [(&str, &str); 2] = [("APCA_API_KEY_ID", KEY), ("APCA_API_SECRET_KEY", SECRET)];

fn show(p: &Project) -> serde_json::Value {
    let run = p.hft(&["show", "exp", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    serde_json::from_str(&run.stdout).unwrap()
}

fn digests(doc: &serde_json::Value) -> Vec<(String, String)> {
    doc["stages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| {
            let id = s["id"].as_str().unwrap().to_string();
            s["outputs"]
                .as_object()
                .unwrap()
                .iter()
                .map(move |(n, o)| (format!("{id}.{n}"), o["digest"].as_str().unwrap().into()))
        })
        .collect()
}

/// Every file under `dir`, recursively, as bytes.
fn all_bytes(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            (
                e.path().display().to_string(),
                std::fs::read(e.path()).unwrap_or_default(),
            )
        })
        .collect()
}

#[test]
fn first_build_snapshots_and_later_builds_are_offline() {
    let server = Server::start(120);
    let p = Project::new("api-build");
    p.write("experiments/exp.yaml", &experiment(&server.url(), ""));
    let run = p.hft_env(&["build"], &CREDENTIALS);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        server.requests.load(Ordering::SeqCst),
        3,
        "three pages of 50"
    );
    let first = show(&p);
    let ingest = first["stages"][0]["summary"].clone();
    assert_eq!(ingest["rows"], 120, "{ingest}");

    // The server goes away. A rebuild with nothing changed, a config change that re-runs
    // ingest, and a rebuild from an emptied action store all work from the snapshot.
    server.up.store(false, Ordering::SeqCst);
    let before = server.requests.load(Ordering::SeqCst);
    let run = p.hft(&["build"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    std::fs::remove_dir_all(p.path("cache/actions")).unwrap();
    std::fs::create_dir_all(p.path("cache/actions")).unwrap();
    let run = p.hft(&["build"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.ran().contains(&"exp/ingest:AAA".to_string()),
        "{}",
        run.stdout
    );
    assert_eq!(digests(&show(&p)), digests(&first), "same outputs offline");
    // on_bad_rows is read by ingest, not by the request: ingest re-runs from the snapshot.
    p.write(
        "experiments/exp.yaml",
        &experiment(&server.url(), "  on_bad_rows: drop\n"),
    );
    let run = p.hft(&["build"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.ran().contains(&"exp/ingest:AAA".to_string()));
    assert_eq!(server.requests.load(Ordering::SeqCst), before, "no request");
    // A new date range is a new request: offline, that is a clear error naming the server.
    p.write(
        "experiments/exp.yaml",
        &experiment(&server.url(), "  start: 2021-02-01\n"),
    );
    let run = p.hft_env(&["build"], &CREDENTIALS);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("503"), "{}", run.stderr);
    assert!(run.stderr.contains("data.symbols[0]"), "{}", run.stderr);
    p.write(
        "experiments/exp.yaml",
        &experiment(&server.url(), "  on_bad_rows: drop\n"),
    );

    // Credentials were sent as headers, and are stored nowhere.
    for (path, bytes) in all_bytes(&p.dir) {
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(SECRET), "the secret is in {path}");
    }

    // `hft fetch` with the server down: a clear error, and the snapshot stays usable.
    let run = p.hft_env(&["fetch"], &CREDENTIALS);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("AAA"), "{}", run.stderr);
    assert!(run.stderr.contains("503"), "{}", run.stderr);
    assert!(!run.stderr.contains(SECRET));
    assert_eq!(p.hft(&["build"]).code, 0);
}

#[test]
fn fetch_refreshes_and_only_changed_bars_rebuild() {
    let server = Server::start(100);
    let p = Project::new("api-fetch");
    p.write("experiments/exp.yaml", &experiment(&server.url(), ""));
    let run = p.hft_env(&["build"], &CREDENTIALS);
    assert_eq!(run.code, 0, "{}", run.stderr);

    // Same bars: the snapshot is unchanged and nothing re-runs.
    let run = p.hft_env(&["fetch"], &CREDENTIALS);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("unchanged"), "{}", run.stdout);
    assert!(run.ran().is_empty());
    let run = p.build();
    assert!(run.ran().is_empty(), "{}", run.stdout);

    // The provider has ten more bars: the next build re-runs from ingest.
    *server.bars.lock().unwrap() = 110;
    let run = p.hft_env(&["fetch"], &CREDENTIALS);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("new snapshot"), "{}", run.stdout);
    assert!(run.stdout.contains("110 rows"), "{}", run.stdout);
    let run = p.build();
    assert!(
        run.ran().contains(&"exp/ingest:AAA".to_string()),
        "{}",
        run.stdout
    );
    assert_eq!(show(&p)["stages"][0]["summary"]["rows"], 110);
}

#[test]
fn missing_or_wrong_credentials_are_clear_errors() {
    let server = Server::start(100);
    let p = Project::new("api-credentials");
    p.write("experiments/exp.yaml", &experiment(&server.url(), ""));
    let run = p.hft_env(
        &["build"],
        &[("APCA_API_KEY_ID", ""), ("APCA_API_SECRET_KEY", "")],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("APCA_API_KEY_ID"), "{}", run.stderr);
    assert!(run.stderr.contains("data.symbols[0]"), "{}", run.stderr);
    assert_eq!(
        server.requests.load(Ordering::SeqCst),
        0,
        "no request without credentials"
    );

    let run = p.hft_env(
        &["build"],
        &[("APCA_API_KEY_ID", KEY), ("APCA_API_SECRET_KEY", "wrong")],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("401"), "{}", run.stderr);
    assert!(!run.stderr.contains("wrong"), "{}", run.stderr);

    // status never fetches: it says how to get the snapshot.
    let run = p.hft(&["status"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("hft fetch"), "{}", run.stderr);
}
