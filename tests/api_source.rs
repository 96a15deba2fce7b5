//! The `api` data source against a loopback HTTP server serving recorded responses
//! (`tests/fixtures/api/`): pagination, credentials, retries, rate limits, timeouts, errors.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use hft::sources::api::{ApiError, ApiProvider, ApiRequest, credential_vars, fetch};

const KEY_ID: &str = "PKTEST1234567890";
/// A value that must never appear in a message, a URL or a snapshot.
const SECRET: &str = "sentinel-secret-9f8e7d6c5b4a";

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/api")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What the server answers to one request.
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    /// Waits this long before answering (for timeouts).
    delay: Duration,
}

fn reply(status: u16, body: Vec<u8>) -> Reply {
    Reply {
        status,
        headers: Vec::new(),
        body,
        delay: Duration::ZERO,
    }
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    /// Path and query.
    target: String,
    /// Header names lowercased.
    headers: Vec<(String, String)>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

struct Server {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// Serves `replies` in order, one per connection (`Connection: close`), then stops listening.
fn serve(replies: Vec<Reply>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    thread::spawn(move || {
        for reply in replies {
            let Ok((mut stream, _)) = listener.accept() else {
                return;
            };
            if let Some(request) = read_request(&mut stream) {
                record.lock().unwrap().push(request);
            }
            thread::sleep(reply.delay);
            let mut head = format!(
                "HTTP/1.1 {} Whatever\r\nContent-Length: {}\r\nConnection: close\r\n",
                reply.status,
                reply.body.len()
            );
            for (name, value) in &reply.headers {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            head.push_str("\r\n");
            // The client may have given up already (timeout tests).
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&reply.body);
            let _ = stream.flush();
        }
    });
    Server { base, seen }
}

fn read_request(stream: &mut TcpStream) -> Option<Seen> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut bytes = Vec::new();
    let mut buf = [0u8; 1024];
    while !bytes.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        bytes.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let mut lines = text.split("\r\n");
    let request_line = lines.next()?;
    let target = request_line.split(' ').nth(1)?.to_string();
    assert!(request_line.starts_with("GET "), "{request_line}");
    let headers = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some(Seen { target, headers })
}

fn env_with_credentials(name: &str) -> Option<String> {
    match name {
        "APCA_API_KEY_ID" => Some(KEY_ID.to_string()),
        "APCA_API_SECRET_KEY" => Some(SECRET.to_string()),
        _ => None,
    }
}

fn alpaca(base: &str) -> ApiRequest {
    ApiRequest {
        provider: ApiProvider::Alpaca,
        base_url: base.to_string(),
        symbol: "AAPL".into(),
        start: NaiveDate::from_ymd_opt(2021, 1, 1),
        end: NaiveDate::from_ymd_opt(2021, 1, 31),
        interval: "1d".into(),
        timeout: Duration::from_secs(5),
        retries: 2,
        backoff: Duration::from_millis(5),
    }
}

fn stooq(base: &str) -> ApiRequest {
    ApiRequest {
        provider: ApiProvider::Stooq,
        symbol: "aapl.us".into(),
        ..alpaca(base)
    }
}

/// The error's message and debug form hold no secret.
fn message(err: &ApiError) -> String {
    let text = err.to_string();
    assert!(!text.contains(SECRET), "secret in message: {text}");
    assert!(!format!("{err:?}").contains(SECRET), "secret in {err:?}");
    text
}

const FIRST_TARGET: &str = "/v2/stocks/AAPL/bars?timeframe=1Day&start=2021-01-01&end=2021-01-31&limit=10000&adjustment=raw";

#[test]
fn alpaca_pages_are_joined_in_order_with_credentials_and_tokens() {
    let pages = || {
        (1..=3)
            .map(|i| reply(200, fixture(&format!("alpaca_aapl_1day_page{i}.json"))))
            .collect::<Vec<_>>()
    };
    let server = serve(pages().into_iter().chain(pages()).collect());
    let req = alpaca(&server.base);
    let snapshot = fetch(&req, &env_with_credentials).unwrap();
    assert_eq!((snapshot.rows, snapshot.pages), (7, 3));
    assert_eq!(snapshot.url, format!("{}{FIRST_TARGET}", server.base));
    let csv = String::from_utf8(snapshot.csv.clone()).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "timestamp,open,high,low,close,volume");
    assert_eq!(
        lines[1],
        "2021-01-04T05:00:00Z,133.52,133.6116,126.76,129.41,143301887"
    );
    assert_eq!(
        lines[4],
        "2021-01-07T05:00:00Z,128.36,131.63,127.86,130.92,109578157"
    );
    assert_eq!(
        lines[7],
        "2021-01-12T05:00:00Z,128.5,129.69,126.86,128.8,91951145"
    );
    assert!(!csv.contains(SECRET) && !snapshot.url.contains(SECRET));

    let seen = server.seen();
    assert_eq!(seen[0].target, FIRST_TARGET);
    assert_eq!(
        seen[1].target,
        format!(
            "{FIRST_TARGET}&page_token=QUFQTHxEfDIwMjEtMDEtMDZUMDU6MDA6MDAuMDAwMDAwMDAwWg%3D%3D"
        )
    );
    assert_eq!(
        seen[2].target,
        format!(
            "{FIRST_TARGET}&page_token=QUFQTHxEfDIwMjEtMDEtMDhUMDU6MDA6MDAuMDAwMDAwMDAwWg%3D%3D"
        )
    );
    for request in &seen[..3] {
        assert_eq!(request.header("apca-api-key-id"), Some(KEY_ID));
        assert_eq!(request.header("apca-api-secret-key"), Some(SECRET));
        assert!(!request.target.contains(SECRET));
    }

    // The canonical CSV is ingestible, and the same bars give the same bytes.
    let bars = hft::data::ingest::parse_csv(Path::new("snapshot.csv"), &snapshot.csv).unwrap();
    assert_eq!(bars.close.len(), 7);
    assert_eq!(bars.timestamps[0], 1_609_736_400);
    assert_eq!(bars.volume[6], 91_951_145.0);
    let again = fetch(&req, &env_with_credentials).unwrap();
    assert_eq!(again.csv, snapshot.csv);
    assert_eq!(server.seen().len(), 6);
}

#[test]
fn alpaca_401_names_the_variables_and_is_not_retried() {
    let server = serve(vec![reply(401, fixture("alpaca_401.json"))]);
    let err = fetch(&alpaca(&server.base), &env_with_credentials).unwrap_err();
    let text = message(&err);
    assert!(
        text.starts_with(&format!(
            "alpaca AAPL: GET {}{FIRST_TARGET}: HTTP 401 Unauthorized: request is not \
             authorized (code 40110000); check that APCA_API_KEY_ID and APCA_API_SECRET_KEY",
            server.base
        )),
        "{text}"
    );
    assert!(matches!(err, ApiError::Http { status: 401, .. }));
    assert_eq!(server.seen().len(), 1);
}

#[test]
fn alpaca_422_says_to_check_the_parameters() {
    let server = serve(vec![reply(422, fixture("alpaca_422.json"))]);
    let err = fetch(&alpaca(&server.base), &env_with_credentials).unwrap_err();
    let text = message(&err);
    assert!(
        text.contains("HTTP 422 Unprocessable Entity: invalid timeframe (code 42210000)"),
        "{text}"
    );
    assert!(
        text.contains("check the symbol, start, end and interval"),
        "{text}"
    );
    assert_eq!(server.seen().len(), 1);
}

#[test]
fn a_secret_echoed_by_the_server_is_redacted() {
    let body = format!(r#"{{"code":40310000,"message":"key {KEY_ID} secret {SECRET} forbidden"}}"#);
    let server = serve(vec![reply(403, body.into_bytes())]);
    let err = fetch(&alpaca(&server.base), &env_with_credentials).unwrap_err();
    let text = message(&err);
    assert!(
        text.contains("HTTP 403 Forbidden: key [redacted] secret [redacted] forbidden"),
        "{text}"
    );
}

#[test]
fn rate_limit_429_is_retried_honouring_retry_after() {
    let mut limited = reply(429, fixture("alpaca_429.json"));
    limited.headers.push(("Retry-After", "0".into()));
    let server = serve(vec![
        limited,
        reply(200, fixture("alpaca_aapl_1day_page3.json")),
    ]);
    // Without Retry-After the backoff would wait 10 s.
    let req = ApiRequest {
        retries: 1,
        backoff: Duration::from_secs(10),
        ..alpaca(&server.base)
    };
    let started = Instant::now();
    let snapshot = fetch(&req, &env_with_credentials).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!((snapshot.rows, snapshot.pages), (2, 1));
    assert_eq!(server.seen().len(), 2);
}

#[test]
fn rate_limit_without_retries_left_says_to_wait() {
    let server = serve(vec![reply(429, fixture("alpaca_429.json"))]);
    let req = ApiRequest {
        retries: 0,
        ..alpaca(&server.base)
    };
    let text = message(&fetch(&req, &env_with_credentials).unwrap_err());
    assert!(
        text.contains("gave up after 1 attempt: HTTP 429 Too Many Requests: rate limit exceeded"),
        "{text}"
    );
    assert!(text.contains("rate limiting"), "{text}");
}

#[test]
fn server_errors_are_retried_then_reported_with_the_count() {
    let server = serve(
        (0..3)
            .map(|_| reply(500, fixture("alpaca_500.txt")))
            .collect(),
    );
    let err = fetch(&alpaca(&server.base), &env_with_credentials).unwrap_err();
    let text = message(&err);
    assert!(
        text.contains(&format!(
            "{FIRST_TARGET}: gave up after 3 attempts: HTTP 500 Internal Server Error: \
             Internal Server Error; the provider has a server problem"
        )),
        "{text}"
    );
    assert!(matches!(
        err,
        ApiError::GaveUp {
            attempts: 3,
            status: Some(500),
            ..
        }
    ));
    assert_eq!(server.seen().len(), 3);
}

#[test]
fn a_slow_server_times_out() {
    let mut slow = reply(200, fixture("alpaca_aapl_1day_page3.json"));
    slow.delay = Duration::from_secs(3);
    let server = serve(vec![slow]);
    let req = ApiRequest {
        timeout: Duration::from_millis(200),
        retries: 0,
        ..alpaca(&server.base)
    };
    let started = Instant::now();
    let err = fetch(&req, &env_with_credentials).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let text = message(&err);
    assert!(
        text.contains("gave up after 1 attempt: timed out after 200ms"),
        "{text}"
    );
    assert!(text.contains("raise the timeout"), "{text}");
}

#[test]
fn a_refused_connection_is_retried_then_reported() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let req = ApiRequest {
        retries: 1,
        ..stooq(&format!("http://127.0.0.1:{port}"))
    };
    let text = message(&fetch(&req, &|_| None).unwrap_err());
    assert!(
        text.contains("gave up after 2 attempts: connection failed"),
        "{text}"
    );
    assert!(
        text.contains("check the network and the base_url"),
        "{text}"
    );
}

#[test]
fn stooq_csv_downloads_canonically() {
    let server = serve(vec![
        reply(200, fixture("stooq_aapl_us_d.csv")),
        reply(200, fixture("stooq_aapl_us_d.csv")),
    ]);
    let req = stooq(&server.base);
    let snapshot = fetch(&req, &|_| None).unwrap();
    assert_eq!(
        server.seen()[0].target,
        "/q/d/l/?s=aapl.us&i=d&d1=20210101&d2=20210131"
    );
    assert_eq!((snapshot.rows, snapshot.pages), (5, 1));
    let csv = String::from_utf8(snapshot.csv.clone()).unwrap();
    assert!(
        csv.starts_with(
            "timestamp,open,high,low,close,volume\n\
             2021-01-04T00:00:00Z,133.52,133.61,126.76,129.41,143301887\n"
        ),
        "{csv}"
    );
    let bars = hft::data::ingest::parse_csv(Path::new("snapshot.csv"), &snapshot.csv).unwrap();
    assert_eq!(bars.close, vec![129.41, 131.01, 126.6, 130.92, 132.05]);
    assert_eq!(fetch(&req, &|_| None).unwrap().csv, snapshot.csv);
}

#[test]
fn stooq_no_data_is_an_error_not_an_empty_dataset() {
    let server = serve(vec![reply(200, fixture("stooq_no_data.txt"))]);
    let err = fetch(&stooq(&server.base), &|_| None).unwrap_err();
    let text = message(&err);
    assert!(
        text.starts_with(&format!(
            "stooq aapl.us: GET {}/q/d/l/?s=aapl.us&i=d&d1=20210101&d2=20210131: HTTP 200 OK: \
             no data for 'aapl.us'; check the symbol (Stooq wants the market suffix",
            server.base
        )),
        "{text}"
    );
    assert!(matches!(err, ApiError::NoData { .. }));
}

#[test]
fn stooq_quota_exceeded_is_an_error() {
    let server = serve(vec![reply(200, fixture("stooq_quota.txt"))]);
    let err = fetch(&stooq(&server.base), &|_| None).unwrap_err();
    let text = message(&err);
    assert!(
        text.contains("quota is used up ('Exceeded the daily hits limit'); try again later"),
        "{text}"
    );
    assert!(matches!(err, ApiError::QuotaExceeded { status: 200, .. }));
}

#[test]
fn missing_credentials_fail_before_any_request() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let only_secret = |name: &str| (name == "APCA_API_SECRET_KEY").then(|| SECRET.to_string());
    let err = fetch(&alpaca(&base), &only_secret).unwrap_err();
    let text = message(&err);
    assert_eq!(
        text,
        "alpaca AAPL: missing credentials: set the environment variable APCA_API_KEY_ID \
         (credentials are read from the environment only, never from a config file)"
    );
    let err = fetch(&alpaca(&base), &|_| None).unwrap_err();
    assert!(
        message(&err).contains("variables APCA_API_KEY_ID and APCA_API_SECRET_KEY"),
        "{err}"
    );
    assert_eq!(
        credential_vars(ApiProvider::Alpaca),
        ["APCA_API_KEY_ID", "APCA_API_SECRET_KEY"]
    );
    // Nobody connected.
    assert!(listener.accept().is_err());
}
