//! The `api` data source: bars fetched over HTTP from a market-data provider.
//!
//! [`fetch`] downloads one symbol's bars and returns a [`Snapshot`]: a canonical CSV
//! (`timestamp,open,high,low,close,volume`, rows ascending, RFC 3339 UTC timestamps, numbers in
//! Rust's shortest round-trip form) that the integrator stores as the ingest input. The same
//! bars always give the same bytes, so the snapshot's digest is stable and builds stay
//! reproducible and offline once a snapshot exists.
//!
//! Providers and their wire formats:
//!
//! - [`Provider::Alpaca`]: market data v2,
//!   `GET {base}/v2/stocks/{symbol}/bars?timeframe=1Day&start=..&end=..&limit=10000&adjustment=raw`
//!   followed by `&page_token=..` while the response has a `next_page_token`. Credentials come
//!   from `APCA_API_KEY_ID` / `APCA_API_SECRET_KEY` (see [`credential_vars`]) and travel only
//!   as the `APCA-API-KEY-ID` / `APCA-API-SECRET-KEY` headers. Without a `start` the request
//!   asks from [`ALPACA_DEFAULT_START`] (Alpaca itself would default to today only).
//! - [`Provider::Stooq`]: the CSV download `GET {base}/q/d/l/?s={symbol}&i=d&d1=YYYYMMDD&d2=YYYYMMDD`.
//!   The symbol is passed through as given; Stooq wants the market suffix, e.g. `aapl.us`.
//!   Stooq serves daily, weekly and monthly bars only.
//!
//! Failures: connection errors, timeouts, HTTP 429 (honouring `Retry-After` in seconds) and 5xx
//! are retried up to `retries` times with a doubling backoff; other 4xx are not. Every error
//! names the provider, the symbol, the URL (never with credentials) and the HTTP status when
//! there was one, and says what to do. Secrets never appear in a URL, a message or a snapshot:
//! text quoted from a response is scrubbed of the credential values before it is shown.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveTime, SecondsFormat};
use serde::Deserialize;

/// The market-data providers `fetch` can talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    Alpaca,
    Stooq,
}

impl Provider {
    /// The provider's name as written in configs (`alpaca`, `stooq`).
    pub fn name(self) -> &'static str {
        match self {
            Provider::Alpaca => "alpaca",
            Provider::Stooq => "stooq",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One symbol's download: where from, what range, and how patient to be.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiRequest {
    pub provider: Provider,
    /// e.g. https://data.alpaca.markets or https://stooq.com (tests: http://127.0.0.1:PORT)
    pub base_url: String,
    pub symbol: String,
    pub start: Option<NaiveDate>,
    /// Inclusive.
    pub end: Option<NaiveDate>,
    /// Bar interval as the user writes it: "1d", "1h", "5min", "1min", "1w", "1mo" (mapped to
    /// each provider's spelling; what a provider cannot serve is rejected with the list of
    /// what it can).
    pub interval: String,
    /// Limit for one whole request (connect, send, receive the full body).
    pub timeout: Duration,
    /// Extra attempts after the first for retryable failures.
    pub retries: u32,
    /// First backoff delay; doubled per retry (tests pass a few ms).
    pub backoff: Duration,
}

/// A downloaded data set in canonical form.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Canonical CSV, `timestamp,open,high,low,close,volume` header, rows ascending by time,
    /// timestamps as RFC 3339 UTC (`2021-01-04T05:00:00Z`), numbers printed with Rust's shortest
    /// round-trip `{}` formatting: the same bars give the same bytes, so the snapshot digest is
    /// stable. It parses with [`crate::data::ingest::parse_csv`].
    pub csv: Vec<u8>,
    /// Data rows in `csv` (header excluded).
    pub rows: usize,
    /// HTTP responses the data came from (1 for Stooq; Alpaca pages).
    pub pages: usize,
    /// The URL of the first request, with no credentials in it (for messages and the lockfile).
    pub url: String,
}

/// Without a `start`, Alpaca would return only the current day: ask from here instead (its
/// stock history begins in 2016).
pub const ALPACA_DEFAULT_START: &str = "2015-01-01";
/// Alpaca's largest page size.
const ALPACA_PAGE_LIMIT: u32 = 10_000;
/// A pagination loop guard: more pages than this is a provider bug, not data.
pub const MAX_PAGES: usize = 10_000;
/// One response body larger than this is refused (a full Alpaca page is about 1.2 MB).
const MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;
/// How much of an error response is read for its message.
const MAX_ERROR_BODY_BYTES: u64 = 64 * 1024;
/// A `Retry-After` longer than this is not waited out: the error says to come back later.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);
/// The doubling backoff stops growing here.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Where a failing request went: `alpaca AAPL: GET https://...`.
#[derive(Debug, Clone, PartialEq)]
pub struct Origin {
    pub provider: Provider,
    pub symbol: String,
    /// Without credentials (they travel in headers only).
    pub url: String,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: GET {}", self.provider, self.symbol, self.url)
    }
}

/// Everything `fetch` can fail with; `Display` is the message for the user.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// The request cannot be made as configured (interval, dates, base URL, symbol).
    #[error("{provider} {symbol}: {message}")]
    InvalidRequest {
        provider: Provider,
        symbol: String,
        message: String,
    },
    /// Credentials the provider needs are not in the environment; no request was made.
    #[error(
        "{provider} {symbol}: missing credentials: set the environment variable{} {} \
         (credentials are read from the environment only, never from a config file)",
        if .vars.len() == 1 { "" } else { "s" },
        .vars.join(" and ")
    )]
    MissingCredentials {
        provider: Provider,
        symbol: String,
        vars: Vec<&'static str>,
    },
    /// The provider answered with an HTTP error that retrying will not fix.
    #[error("{at}: HTTP {status}{}: {message}; {hint}", reason(*.status))]
    Http {
        at: Origin,
        status: u16,
        /// What the provider said (scrubbed of secrets).
        message: String,
        hint: String,
    },
    /// A retryable failure persisted through every attempt (or the wait asked was too long).
    #[error("{at}: gave up after {attempts} attempt{}: {cause}; {hint}", if *.attempts == 1 { "" } else { "s" })]
    GaveUp {
        at: Origin,
        attempts: u32,
        /// The last failure, e.g. `HTTP 500 Internal Server Error: ...` or `timed out after 2s`.
        cause: String,
        /// The last HTTP status, when the last failure had one.
        status: Option<u16>,
        hint: String,
    },
    /// A failure that retrying will not fix below HTTP (TLS, protocol, bad URI).
    #[error("{at}: {message}; check the base_url and that the provider speaks HTTPS/HTTP there")]
    Transport { at: Origin, message: String },
    /// The provider has no bars for the symbol in the range.
    #[error("{at}: HTTP {status}{}: no data for '{}'; {hint}", reason(*.status), .at.symbol)]
    NoData {
        at: Origin,
        status: u16,
        hint: String,
    },
    /// The provider's download quota is used up.
    #[error(
        "{at}: HTTP {status}{}: the provider's download quota is used up ('{message}'); \
         try again later (a build keeps using the existing snapshot offline)",
        reason(*.status)
    )]
    QuotaExceeded {
        at: Origin,
        status: u16,
        message: String,
    },
    /// The response arrived but is not what the wire format says.
    #[error(
        "{at}: HTTP {status}{}: unexpected response: {message}; check the base_url and the \
         provider (is it really {}?)",
        reason(*.status),
        .at.provider
    )]
    BadResponse {
        at: Origin,
        status: u16,
        message: String,
    },
    /// Pagination does not end (a repeated page token, or more than [`MAX_PAGES`] pages).
    #[error(
        "{at}: pagination does not end after {pages} pages: {message}; this is a provider bug: narrow start/end and try again"
    )]
    Pagination {
        at: Origin,
        pages: usize,
        message: String,
    },
}

/// ` Unauthorized` after a status code, or nothing for codes without a standard reason.
fn reason(status: u16) -> String {
    ureq::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .map(|r| format!(" {r}"))
        .unwrap_or_default()
}

/// The environment variables a provider needs (for docs and messages).
pub fn credential_vars(provider: Provider) -> &'static [&'static str] {
    match provider {
        Provider::Alpaca => &["APCA_API_KEY_ID", "APCA_API_SECRET_KEY"],
        Provider::Stooq => &[],
    }
}

/// The header each credential variable is sent in (same order as [`credential_vars`]).
fn credential_headers(provider: Provider) -> &'static [&'static str] {
    match provider {
        Provider::Alpaca => &["APCA-API-KEY-ID", "APCA-API-SECRET-KEY"],
        Provider::Stooq => &[],
    }
}

/// Downloads `req.symbol`'s bars and returns them as a canonical [`Snapshot`].
///
/// `env` looks up environment variables (tests pass a closure; production passes
/// `&|k| std::env::var(k).ok()`). Missing credentials fail before any request is made.
pub fn fetch(req: &ApiRequest, env: &dyn Fn(&str) -> Option<String>) -> Result<Snapshot, ApiError> {
    let invalid = |message: String| ApiError::InvalidRequest {
        provider: req.provider,
        symbol: req.symbol.clone(),
        message,
    };
    check_symbol(&req.symbol).map_err(invalid)?;
    let base = check_base_url(&req.base_url).map_err(invalid)?;
    if let (Some(start), Some(end)) = (req.start, req.end)
        && start > end
    {
        return Err(invalid(format!(
            "start {start} is after end {end}: swap them or fix one"
        )));
    }
    let interval = parse_interval(&req.interval).map_err(invalid)?;
    let credentials = credentials(req, env)?;
    let client = Client::new(req, credentials);
    match req.provider {
        Provider::Alpaca => {
            let timeframe = alpaca_timeframe(interval).map_err(invalid)?;
            fetch_alpaca(req, &client, base, &timeframe)
        }
        Provider::Stooq => {
            let code = stooq_interval(interval).map_err(invalid)?;
            fetch_stooq(req, &client, base, code)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Validation and URL building

fn check_symbol(symbol: &str) -> Result<(), String> {
    if symbol.trim().is_empty() {
        return Err("the symbol is empty: give a ticker such as AAPL (Stooq: aapl.us)".into());
    }
    if symbol.len() > 64 || symbol.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(
            "the symbol has spaces, control characters or is over 64 bytes: \
                    give a ticker such as AAPL (Stooq: aapl.us)"
                .into(),
        );
    }
    Ok(())
}

/// The base URL without a trailing slash. Credentials in it are refused (and never echoed).
fn check_base_url(base: &str) -> Result<&str, String> {
    let trimmed = base.trim().trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"));
    let Some(rest) = rest else {
        return Err(format!(
            "base_url '{}' must start with https:// (or http:// for a local server)",
            shorten(trimmed)
        ));
    };
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.contains('@') {
        // Do not echo it: the part before '@' is a user name and password.
        return Err(
            "base_url contains credentials (user:password@): remove them and set \
                    the provider's environment variables instead"
                .into(),
        );
    }
    if authority.is_empty() || trimmed.contains(['?', '#']) || trimmed.contains(char::is_whitespace)
    {
        return Err(format!(
            "base_url '{}' is not a plain https://host[:port][/path] address",
            shorten(trimmed)
        ));
    }
    Ok(trimmed)
}

/// A bar interval as the user wrote it, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Interval {
    Minute(u32),
    Hour(u32),
    Day(u32),
    Week(u32),
    Month(u32),
}

const INTERVAL_SPELLINGS: &str = "e.g. 1min, 5min, 15min, 1h, 1d, 1w, 1mo";

fn parse_interval(text: &str) -> Result<Interval, String> {
    let lower = text.trim().to_ascii_lowercase();
    let digits = lower.bytes().take_while(u8::is_ascii_digit).count();
    let (count, unit) = lower.split_at(digits);
    let count: u32 = if count.is_empty() {
        1
    } else {
        count
            .parse()
            .map_err(|_| format!("interval '{text}' has an out-of-range count"))?
    };
    if count == 0 {
        return Err(format!(
            "interval '{text}' has a zero count ({INTERVAL_SPELLINGS})"
        ));
    }
    Ok(match unit.trim() {
        "min" | "mins" | "minute" | "minutes" | "t" => Interval::Minute(count),
        "h" | "hr" | "hour" | "hours" => Interval::Hour(count),
        "d" | "day" | "days" => Interval::Day(count),
        "w" | "wk" | "week" | "weeks" => Interval::Week(count),
        "mo" | "mon" | "month" | "months" => Interval::Month(count),
        "m" => {
            return Err(format!(
                "interval '{text}' is ambiguous: write '{count}min' for minutes or \
                 '{count}mo' for months"
            ));
        }
        _ => {
            return Err(format!(
                "interval '{text}' is not a bar interval ({INTERVAL_SPELLINGS})"
            ));
        }
    })
}

/// Alpaca's `timeframe` spelling, or what it can serve.
fn alpaca_timeframe(interval: Interval) -> Result<String, String> {
    const CAN: &str = "Alpaca serves 1min to 59min, 1h to 23h, 1d, 1w, and 1mo, 2mo, 3mo, 4mo, \
                       6mo or 12mo";
    match interval {
        Interval::Minute(n @ 1..=59) => Ok(format!("{n}Min")),
        Interval::Hour(n @ 1..=23) => Ok(format!("{n}Hour")),
        Interval::Day(1) => Ok("1Day".into()),
        Interval::Week(1) => Ok("1Week".into()),
        Interval::Month(n @ (1 | 2 | 3 | 4 | 6 | 12)) => Ok(format!("{n}Month")),
        other => Err(format!(
            "interval {} is not available from Alpaca: {CAN}",
            describe(other)
        )),
    }
}

/// Stooq's `i` parameter, or what it can serve.
fn stooq_interval(interval: Interval) -> Result<&'static str, String> {
    match interval {
        Interval::Day(1) => Ok("d"),
        Interval::Week(1) => Ok("w"),
        Interval::Month(1) => Ok("m"),
        other => Err(format!(
            "interval {} is not available from Stooq: its CSV download serves daily, weekly \
             and monthly bars only (1d, 1w, 1mo); use Alpaca for intraday bars",
            describe(other)
        )),
    }
}

fn describe(interval: Interval) -> String {
    match interval {
        Interval::Minute(n) => format!("{n}min"),
        Interval::Hour(n) => format!("{n}h"),
        Interval::Day(n) => format!("{n}d"),
        Interval::Week(n) => format!("{n}w"),
        Interval::Month(n) => format!("{n}mo"),
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters (for a path segment or a
/// query value).
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn alpaca_url(base: &str, req: &ApiRequest, timeframe: &str, page_token: Option<&str>) -> String {
    let start = req
        .start
        .map_or_else(|| ALPACA_DEFAULT_START.to_string(), |d| d.to_string());
    let mut url = format!(
        "{base}/v2/stocks/{}/bars?timeframe={timeframe}&start={start}",
        encode(&req.symbol)
    );
    if let Some(end) = req.end {
        url.push_str(&format!("&end={end}"));
    }
    url.push_str(&format!("&limit={ALPACA_PAGE_LIMIT}&adjustment=raw"));
    if let Some(token) = page_token {
        url.push_str(&format!("&page_token={}", encode(token)));
    }
    url
}

fn stooq_url(base: &str, req: &ApiRequest, code: &str) -> String {
    let mut url = format!("{base}/q/d/l/?s={}&i={code}", encode(&req.symbol));
    if let Some(start) = req.start {
        url.push_str(&format!("&d1={}", start.format("%Y%m%d")));
    }
    if let Some(end) = req.end {
        url.push_str(&format!("&d2={}", end.format("%Y%m%d")));
    }
    url
}

// ---------------------------------------------------------------------------------------------
// Credentials and HTTP

/// Header name and value pairs; the values are secrets.
struct Credentials {
    headers: Vec<(&'static str, String)>,
}

fn credentials(
    req: &ApiRequest,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Credentials, ApiError> {
    let vars = credential_vars(req.provider);
    let mut missing = Vec::new();
    let mut headers = Vec::new();
    for (&var, &header) in vars.iter().zip(credential_headers(req.provider)) {
        match env(var).map(|v| v.trim().to_string()) {
            Some(value) if !value.is_empty() => {
                if !value.bytes().all(|b| b.is_ascii_graphic()) {
                    // Never echo the value: it is a secret.
                    return Err(ApiError::InvalidRequest {
                        provider: req.provider,
                        symbol: req.symbol.clone(),
                        message: format!(
                            "the environment variable {var} has characters an HTTP header \
                             cannot carry (spaces, newlines, non-ASCII): set it to the key \
                             exactly as the provider shows it"
                        ),
                    });
                }
                headers.push((header, value));
            }
            _ => missing.push(var),
        }
    }
    if !missing.is_empty() {
        return Err(ApiError::MissingCredentials {
            provider: req.provider,
            symbol: req.symbol.clone(),
            vars: missing,
        });
    }
    Ok(Credentials { headers })
}

/// A successful (2xx) response.
struct Fetched {
    status: u16,
    body: Vec<u8>,
}

/// One attempt's outcome when it did not succeed.
enum Failure {
    /// Worth another attempt; `wait` is what the server asked for (`Retry-After`).
    Retry {
        cause: String,
        status: Option<u16>,
        hint: String,
        wait: Option<Duration>,
    },
    Fatal(ApiError),
}

struct Client<'a> {
    req: &'a ApiRequest,
    agent: ureq::Agent,
    credentials: Credentials,
}

impl<'a> Client<'a> {
    fn new(req: &'a ApiRequest, credentials: Credentials) -> Self {
        // A redirect could carry the credential headers to another host: follow redirects
        // only when there are no credentials to leak.
        let redirects = if credentials.headers.is_empty() { 5 } else { 0 };
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(req.timeout))
            .http_status_as_error(false)
            .max_redirects(redirects)
            .max_redirects_will_error(false)
            .user_agent(concat!("hft/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Client {
            req,
            agent,
            credentials,
        }
    }

    fn origin(&self, url: &str) -> Origin {
        Origin {
            provider: self.req.provider,
            symbol: self.req.symbol.clone(),
            url: url.to_string(),
        }
    }

    /// Replaces every credential value in text quoted from a response or a transport error.
    fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (_, secret) in &self.credentials.headers {
            if !secret.is_empty() {
                out = out.replace(secret.as_str(), "[redacted]");
            }
        }
        out
    }

    /// GET with retries and backoff; a 2xx body or the error to report.
    fn get(&self, url: &str) -> Result<Fetched, ApiError> {
        let attempts_allowed = self.req.retries.saturating_add(1);
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let (cause, status, hint, wait) = match self.get_once(url) {
                Ok(fetched) => return Ok(fetched),
                Err(Failure::Fatal(err)) => return Err(err),
                Err(Failure::Retry {
                    cause,
                    status,
                    hint,
                    wait,
                }) => (cause, status, hint, wait),
            };
            let too_long = wait.is_some_and(|w| w > MAX_RETRY_AFTER);
            if attempt >= attempts_allowed || too_long {
                let hint = if too_long {
                    format!("{hint} (the provider asks to wait longer than {MAX_RETRY_AFTER:?})")
                } else {
                    format!("{hint}, or raise the number of retries")
                };
                return Err(ApiError::GaveUp {
                    at: self.origin(url),
                    attempts: attempt,
                    cause,
                    status,
                    hint,
                });
            }
            std::thread::sleep(wait.unwrap_or_else(|| backoff_delay(self.req.backoff, attempt)));
        }
    }

    fn get_once(&self, url: &str) -> Result<Fetched, Failure> {
        let mut request = self.agent.get(url);
        for (name, value) in &self.credentials.headers {
            request = request.header(*name, value.as_str());
        }
        let mut response = request
            .call()
            .map_err(|e| self.transport_failure(url, &e))?;
        let status = response.status().as_u16();
        if response.status().is_success() {
            let body = response
                .body_mut()
                .with_config()
                .limit(MAX_BODY_BYTES)
                .read_to_vec()
                .map_err(|e| match e {
                    ureq::Error::BodyExceedsLimit(_) => Failure::Fatal(ApiError::BadResponse {
                        at: self.origin(url),
                        status,
                        message: format!(
                            "the body is over {} MiB: narrow start/end",
                            MAX_BODY_BYTES / (1024 * 1024)
                        ),
                    }),
                    other => self.transport_failure(url, &other),
                })?;
            return Ok(Fetched { status, body });
        }
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(|v| self.scrub(&shorten(v)));
        // A failed read of an error body still leaves the status to report.
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_ERROR_BODY_BYTES)
            .read_to_vec()
            .unwrap_or_default();
        let message = self.scrub(&error_message(self.req.provider, &body));
        let cause = format!("HTTP {status}{}: {message}", reason(status));
        if status == 429 {
            return Err(Failure::Retry {
                cause,
                status: Some(status),
                hint: "the provider is rate limiting: wait a few minutes and fetch again, \
                       or fetch fewer symbols at once"
                    .into(),
                wait: retry_after,
            });
        }
        if (500..=599).contains(&status) {
            return Err(Failure::Retry {
                cause,
                status: Some(status),
                hint: "the provider has a server problem: try again later".into(),
                wait: None,
            });
        }
        Err(Failure::Fatal(ApiError::Http {
            at: self.origin(url),
            status,
            message,
            hint: status_hint(self.req.provider, status, location.as_deref()),
        }))
    }

    fn transport_failure(&self, url: &str, err: &ureq::Error) -> Failure {
        let timeout_hint = format!(
            "the provider did not answer within {:?}: check the network or raise the timeout",
            self.req.timeout
        );
        let connect_hint = "could not reach the provider: check the network and the base_url";
        match err {
            ureq::Error::Timeout(_) => Failure::Retry {
                cause: format!("timed out after {:?}", self.req.timeout),
                status: None,
                hint: timeout_hint,
                wait: None,
            },
            ureq::Error::Io(io)
                if matches!(
                    io.kind(),
                    std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                ) =>
            {
                Failure::Retry {
                    cause: format!("timed out after {:?}", self.req.timeout),
                    status: None,
                    hint: timeout_hint,
                    wait: None,
                }
            }
            ureq::Error::Io(_) | ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => {
                Failure::Retry {
                    cause: format!("connection failed: {}", self.scrub(&err.to_string())),
                    status: None,
                    hint: connect_hint.into(),
                    wait: None,
                }
            }
            other => Failure::Fatal(ApiError::Transport {
                at: self.origin(url),
                message: self.scrub(&other.to_string()),
            }),
        }
    }
}

/// The delay before attempt `attempt + 1`: `first * 2^(attempt - 1)`, capped.
fn backoff_delay(first: Duration, attempt: u32) -> Duration {
    let factor = 1u32
        .checked_shl(attempt.saturating_sub(1))
        .unwrap_or(u32::MAX);
    first
        .checked_mul(factor)
        .map_or(MAX_BACKOFF, |d| d.min(MAX_BACKOFF))
}

/// What to do about a non-retryable HTTP status.
fn status_hint(provider: Provider, status: u16, location: Option<&str>) -> String {
    let vars = credential_vars(provider).join(" and ");
    match (provider, status) {
        (_, 300..=399) => format!(
            "the provider redirected to '{}': set base_url to the new address",
            location.unwrap_or("?")
        ),
        (Provider::Alpaca, 401) => format!(
            "check that {vars} hold a valid key pair for the market-data API (not expired, \
             no stray characters)"
        ),
        (Provider::Alpaca, 403) => format!(
            "the key in {vars} is not allowed this data: check your subscription (free plans \
             cannot query the latest 15 minutes of SIP data: set an end date in the past)"
        ),
        (_, 401 | 403) => "the provider refused access: check your access to it".into(),
        (_, 404) => "check the symbol and the base_url".into(),
        (_, 422 | 400) => {
            "the provider rejected the request's parameters: check the symbol, start, end \
             and interval"
                .into()
        }
        _ => "check the symbol, dates and base_url; this status is not retried".into(),
    }
}

/// A short, printable message from an error response: Alpaca's `{"code":..,"message":..}`
/// when it is that, else the start of the body.
fn error_message(provider: Provider, body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct AlpacaError {
        code: Option<i64>,
        message: Option<String>,
    }
    if provider == Provider::Alpaca
        && let Ok(AlpacaError {
            code,
            message: Some(message),
        }) = serde_json::from_slice::<AlpacaError>(body)
    {
        return match code {
            Some(code) => format!("{} (code {code})", printable(&message, 200)),
            None => printable(&message, 200),
        };
    }
    let text = String::from_utf8_lossy(body);
    let text = printable(text.trim(), 200);
    if text.is_empty() {
        "(empty body)".into()
    } else {
        text
    }
}

/// At most `max` characters of `text` on one line, control characters replaced.
fn printable(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > max {
        out.push_str("...");
    }
    out
}

fn shorten(text: &str) -> String {
    printable(text, 80)
}

// ---------------------------------------------------------------------------------------------
// Bars and the canonical CSV

/// One bar, timestamp in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Bar {
    time: i64,
    open: f64,
    high: f64,
    low: f64,
    close: f64,
    volume: f64,
}

/// Sorts bars by time and writes the canonical CSV; a timestamp seen twice is an error.
fn canonical_csv(mut bars: Vec<Bar>) -> Result<Vec<u8>, String> {
    bars.sort_by_key(|b| b.time);
    let mut out = String::with_capacity(48 * (bars.len() + 1));
    out.push_str("timestamp,open,high,low,close,volume\n");
    let mut previous = None;
    for bar in &bars {
        let time = DateTime::from_timestamp(bar.time, 0)
            .ok_or_else(|| format!("timestamp {} is out of range", bar.time))?
            .to_rfc3339_opts(SecondsFormat::Secs, true);
        if previous == Some(bar.time) {
            return Err(format!("two bars have the timestamp {time}"));
        }
        previous = Some(bar.time);
        out.push_str(&format!(
            "{time},{},{},{},{},{}\n",
            bar.open, bar.high, bar.low, bar.close, bar.volume
        ));
    }
    Ok(out.into_bytes())
}

#[derive(Deserialize)]
struct AlpacaPage {
    bars: Option<Vec<AlpacaBar>>,
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct AlpacaBar {
    t: String,
    o: f64,
    h: f64,
    l: f64,
    c: f64,
    v: f64,
}

/// One Alpaca page: its bars and the next page token (None at the end).
fn parse_alpaca_page(body: &[u8]) -> Result<(Vec<Bar>, Option<String>), String> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let page: AlpacaPage = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            format!("the body is not Alpaca bars JSON: {inner}")
        } else {
            format!("key '{path}': {inner}")
        }
    })?;
    let mut bars = Vec::new();
    for (i, bar) in page.bars.unwrap_or_default().into_iter().enumerate() {
        let time = DateTime::parse_from_rfc3339(&bar.t)
            .map_err(|e| {
                format!(
                    "key 'bars[{i}].t': '{}' is not an RFC 3339 time: {e}",
                    shorten(&bar.t)
                )
            })?
            .timestamp();
        bars.push(Bar {
            time,
            open: bar.o,
            high: bar.h,
            low: bar.l,
            close: bar.c,
            volume: bar.v,
        });
    }
    let next = page.next_page_token.filter(|t| !t.is_empty());
    Ok((bars, next))
}

fn fetch_alpaca(
    req: &ApiRequest,
    client: &Client<'_>,
    base: &str,
    timeframe: &str,
) -> Result<Snapshot, ApiError> {
    let first_url = alpaca_url(base, req, timeframe, None);
    let mut url = first_url.clone();
    let mut seen_tokens = HashSet::new();
    let mut bars = Vec::new();
    let mut pages = 0usize;
    let mut last_status;
    loop {
        if pages >= MAX_PAGES {
            return Err(ApiError::Pagination {
                at: client.origin(&url),
                pages,
                message: format!("more than {MAX_PAGES} pages"),
            });
        }
        let fetched = client.get(&url)?;
        pages += 1;
        last_status = fetched.status;
        let (page_bars, next) =
            parse_alpaca_page(&fetched.body).map_err(|message| ApiError::BadResponse {
                at: client.origin(&url),
                status: fetched.status,
                message: format!("page {pages}: {}", client.scrub(&message)),
            })?;
        bars.extend(page_bars);
        let Some(token) = next else { break };
        if !seen_tokens.insert(token.clone()) {
            return Err(ApiError::Pagination {
                at: client.origin(&url),
                pages,
                message: format!(
                    "page {pages} repeats the page token '{}'",
                    client.scrub(&shorten(&token))
                ),
            });
        }
        url = alpaca_url(base, req, timeframe, Some(&token));
    }
    finish(
        client,
        &first_url,
        last_status,
        bars,
        pages,
        "check the symbol (a US stock ticker such as AAPL), start and end, and that the \
         range has trading days",
    )
}

/// Parses Stooq's CSV download (`Date,Open,High,Low,Close[,Volume]`).
fn parse_stooq(body: &[u8]) -> Result<Vec<Bar>, StooqBody> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let text = String::from_utf8_lossy(body);
    let trimmed = text.trim();
    if trimmed.eq_ignore_ascii_case("no data") || trimmed.is_empty() {
        return Err(StooqBody::NoData);
    }
    let lower = trimmed.to_ascii_lowercase();
    if lower.contains("exceeded") || lower.contains("limit") && !lower.contains(',') {
        return Err(StooqBody::Quota(printable(
            trimmed.lines().next().unwrap_or_default(),
            120,
        )));
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(trimmed.as_bytes());
    let header = reader
        .headers()
        .map_err(|e| StooqBody::Bad(format!("line 1: {e}")))?
        .clone();
    let find = |name: &str| header.iter().position(|h| h.eq_ignore_ascii_case(name));
    let (Some(date), Some(open), Some(high), Some(low), Some(close)) = (
        find("date"),
        find("open"),
        find("high"),
        find("low"),
        find("close"),
    ) else {
        return Err(StooqBody::Bad(format!(
            "expected a CSV header 'Date,Open,High,Low,Close,Volume', got '{}'",
            shorten(trimmed.lines().next().unwrap_or_default())
        )));
    };
    let volume = find("volume");
    let mut bars = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| StooqBody::Bad(e.to_string()))?;
        let line = record.position().map_or(0, |p| p.line());
        let cell = |index: usize, name: &str| -> Result<&str, StooqBody> {
            record
                .get(index)
                .ok_or_else(|| StooqBody::Bad(format!("line {line}: column '{name}' is missing")))
        };
        let number = |index: usize, name: &str| -> Result<f64, StooqBody> {
            let text = cell(index, name)?;
            match text.parse::<f64>() {
                Ok(v) if v.is_finite() => Ok(v),
                _ => Err(StooqBody::Bad(format!(
                    "line {line}: column '{name}': '{}' is not a number",
                    shorten(text)
                ))),
            }
        };
        let date_text = cell(date, "Date")?;
        let day = NaiveDate::parse_from_str(date_text, "%Y-%m-%d").map_err(|_| {
            StooqBody::Bad(format!(
                "line {line}: column 'Date': '{}' is not a YYYY-MM-DD date",
                shorten(date_text)
            ))
        })?;
        bars.push(Bar {
            time: day.and_time(NaiveTime::MIN).and_utc().timestamp(),
            open: number(open, "Open")?,
            high: number(high, "High")?,
            low: number(low, "Low")?,
            close: number(close, "Close")?,
            volume: match volume {
                Some(index) => number(index, "Volume")?,
                // Indices and currencies come without volume.
                None => 0.0,
            },
        });
    }
    if bars.is_empty() {
        return Err(StooqBody::NoData);
    }
    Ok(bars)
}

/// Why a Stooq 200 body holds no bars.
#[derive(Debug, PartialEq)]
enum StooqBody {
    NoData,
    Quota(String),
    Bad(String),
}

fn fetch_stooq(
    req: &ApiRequest,
    client: &Client<'_>,
    base: &str,
    code: &str,
) -> Result<Snapshot, ApiError> {
    const NO_DATA_HINT: &str = "check the symbol (Stooq wants the market suffix, e.g. \
                                'aapl.us') and that start..end has trading days";
    let url = stooq_url(base, req, code);
    let fetched = client.get(&url)?;
    let bars = parse_stooq(&fetched.body).map_err(|why| match why {
        StooqBody::NoData => ApiError::NoData {
            at: client.origin(&url),
            status: fetched.status,
            hint: NO_DATA_HINT.into(),
        },
        StooqBody::Quota(message) => ApiError::QuotaExceeded {
            at: client.origin(&url),
            status: fetched.status,
            message,
        },
        StooqBody::Bad(message) => ApiError::BadResponse {
            at: client.origin(&url),
            status: fetched.status,
            message,
        },
    })?;
    finish(client, &url, fetched.status, bars, 1, NO_DATA_HINT)
}

fn finish(
    client: &Client<'_>,
    url: &str,
    status: u16,
    bars: Vec<Bar>,
    pages: usize,
    no_data_hint: &str,
) -> Result<Snapshot, ApiError> {
    if bars.is_empty() {
        return Err(ApiError::NoData {
            at: client.origin(url),
            status,
            hint: no_data_hint.into(),
        });
    }
    let rows = bars.len();
    let csv = canonical_csv(bars).map_err(|message| ApiError::BadResponse {
        at: client.origin(url),
        status,
        message,
    })?;
    Ok(Snapshot {
        csv,
        rows,
        pages,
        url: url.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(provider: Provider) -> ApiRequest {
        ApiRequest {
            provider,
            base_url: "https://example.test/".into(),
            symbol: "AAPL".into(),
            start: NaiveDate::from_ymd_opt(2021, 1, 1),
            end: NaiveDate::from_ymd_opt(2021, 12, 31),
            interval: "1d".into(),
            timeout: Duration::from_secs(1),
            retries: 0,
            backoff: Duration::from_millis(1),
        }
    }

    #[test]
    fn intervals_map_to_each_providers_spelling() {
        let alpaca = |s: &str| parse_interval(s).and_then(alpaca_timeframe);
        assert_eq!(alpaca("1d").unwrap(), "1Day");
        assert_eq!(alpaca("1h").unwrap(), "1Hour");
        assert_eq!(alpaca("5min").unwrap(), "5Min");
        assert_eq!(alpaca("1MIN").unwrap(), "1Min");
        assert_eq!(alpaca("15min").unwrap(), "15Min");
        assert_eq!(alpaca("1w").unwrap(), "1Week");
        assert_eq!(alpaca("1mo").unwrap(), "1Month");
        assert_eq!(alpaca("day").unwrap(), "1Day");
        assert!(alpaca("60min").unwrap_err().contains("1min to 59min"));
        assert!(alpaca("2d").unwrap_err().contains("Alpaca serves"));

        let stooq = |s: &str| parse_interval(s).and_then(stooq_interval);
        assert_eq!(stooq("1d").unwrap(), "d");
        assert_eq!(stooq("1w").unwrap(), "w");
        assert_eq!(stooq("1mo").unwrap(), "m");
        let err = stooq("5min").unwrap_err();
        assert!(err.contains("5min") && err.contains("1d, 1w, 1mo"), "{err}");

        assert!(parse_interval("1m").unwrap_err().contains("ambiguous"));
        assert!(parse_interval("0d").unwrap_err().contains("zero"));
        assert!(
            parse_interval("fortnight")
                .unwrap_err()
                .contains("e.g. 1min")
        );
        assert!(
            parse_interval("99999999999d")
                .unwrap_err()
                .contains("out-of-range")
        );
    }

    #[test]
    fn urls_follow_the_wire_formats() {
        let req = request(Provider::Alpaca);
        assert_eq!(
            alpaca_url("https://data.alpaca.markets", &req, "1Day", None),
            "https://data.alpaca.markets/v2/stocks/AAPL/bars?timeframe=1Day&start=2021-01-01\
             &end=2021-12-31&limit=10000&adjustment=raw"
        );
        assert!(
            alpaca_url("https://x", &req, "1Day", Some("QUFQTHx8MjAyMQ=="))
                .ends_with("&adjustment=raw&page_token=QUFQTHx8MjAyMQ%3D%3D")
        );
        let open = ApiRequest {
            start: None,
            end: None,
            ..req.clone()
        };
        assert_eq!(
            alpaca_url("https://x", &open, "1Day", None),
            "https://x/v2/stocks/AAPL/bars?timeframe=1Day&start=2015-01-01&limit=10000\
             &adjustment=raw"
        );
        let stooq = ApiRequest {
            symbol: "aapl.us".into(),
            ..request(Provider::Stooq)
        };
        assert_eq!(
            stooq_url("https://stooq.com", &stooq, "d"),
            "https://stooq.com/q/d/l/?s=aapl.us&i=d&d1=20210101&d2=20211231"
        );
        let index = ApiRequest {
            symbol: "^spx".into(),
            start: None,
            end: None,
            ..stooq
        };
        assert_eq!(
            stooq_url("https://stooq.com", &index, "w"),
            "https://stooq.com/q/d/l/?s=%5Espx&i=w"
        );
        assert_eq!(encode("BRK/B a"), "BRK%2FB%20a");
    }

    #[test]
    fn base_urls_are_checked_without_echoing_credentials() {
        assert_eq!(
            check_base_url("https://stooq.com/").unwrap(),
            "https://stooq.com"
        );
        assert_eq!(
            check_base_url("http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080"
        );
        let err = check_base_url("https://user:hunter2@host").unwrap_err();
        assert!(
            !err.contains("hunter2") && err.contains("credentials"),
            "{err}"
        );
        assert!(
            check_base_url("ftp://host")
                .unwrap_err()
                .contains("https://")
        );
        assert!(check_base_url("https://host?x=1").is_err());
        assert!(check_base_url("https://").is_err());
    }

    #[test]
    fn alpaca_pages_parse_with_keys_in_errors() {
        let body = br#"{"bars":[{"t":"2021-01-05T05:00:00Z","o":128.89,"h":131.74,"l":128.43,
            "c":131.01,"v":97664898,"n":557694,"vw":130.399}],"symbol":"AAPL",
            "next_page_token":"QUFQTA=="}"#;
        let (bars, next) = parse_alpaca_page(body).unwrap();
        assert_eq!(bars.len(), 1);
        assert_eq!(bars[0].time, 1_609_822_800);
        assert_eq!(bars[0].volume, 97_664_898.0);
        assert_eq!(next.as_deref(), Some("QUFQTA=="));

        let (bars, next) =
            parse_alpaca_page(br#"{"bars":null,"symbol":"AAPL","next_page_token":null}"#).unwrap();
        assert!(bars.is_empty() && next.is_none());

        let err =
            parse_alpaca_page(br#"{"bars":[{"t":"2021-01-05T05:00:00Z","o":"x"}]}"#).unwrap_err();
        assert!(err.contains("bars[0].o"), "{err}");
        let err =
            parse_alpaca_page(br#"{"bars":[{"t":"yesterday","o":1,"h":1,"l":1,"c":1,"v":1}]}"#)
                .unwrap_err();
        assert!(
            err.contains("bars[0].t") && err.contains("yesterday"),
            "{err}"
        );
        assert!(
            parse_alpaca_page(b"<html>")
                .unwrap_err()
                .contains("not Alpaca")
        );
    }

    #[test]
    fn stooq_bodies_parse_or_say_why_not() {
        let bars = parse_stooq(
            b"Date,Open,High,Low,Close,Volume\r\n2021-01-05,128.89,131.74,128.43,131.01,97664898\r\n\
              2021-01-04,133.52,133.61,126.76,129.41,143301887\r\n",
        )
        .unwrap();
        assert_eq!(bars.len(), 2);
        assert_eq!(bars[1].time, 1_609_718_400);
        let index = parse_stooq(b"Date,Open,High,Low,Close\n2021-01-04,1,2,0.5,1.5\n").unwrap();
        assert_eq!(index[0].volume, 0.0);

        assert_eq!(parse_stooq(b"No data"), Err(StooqBody::NoData));
        assert_eq!(
            parse_stooq(b"Date,Open,High,Low,Close,Volume\n"),
            Err(StooqBody::NoData)
        );
        assert!(matches!(
            parse_stooq(b"Exceeded the daily hits limit"),
            Err(StooqBody::Quota(m)) if m.contains("daily hits")
        ));
        let Err(StooqBody::Bad(m)) = parse_stooq(b"<html><body>Hello</body></html>") else {
            panic!("html accepted");
        };
        assert!(m.contains("expected a CSV header"), "{m}");
        let Err(StooqBody::Bad(m)) =
            parse_stooq(b"Date,Open,High,Low,Close,Volume\n2021-01-04,1,2,x,1,5\n")
        else {
            panic!("bad number accepted");
        };
        assert!(m.contains("line 2") && m.contains("'Low'"), "{m}");
        let Err(StooqBody::Bad(m)) =
            parse_stooq(b"Date,Open,High,Low,Close,Volume\n04/01/2021,1,2,0.5,1,5\n")
        else {
            panic!("bad date accepted");
        };
        assert!(m.contains("line 2") && m.contains("'Date'"), "{m}");
    }

    #[test]
    fn canonical_csv_is_sorted_shortest_and_parses() {
        let bar = |time, close| Bar {
            time,
            open: 1.5,
            high: 2.0,
            low: 0.1,
            close,
            volume: 143_301_887.0,
        };
        let csv = canonical_csv(vec![bar(1_609_822_800, 1.0), bar(1_609_736_400, 0.3)]).unwrap();
        assert_eq!(
            String::from_utf8(csv.clone()).unwrap(),
            "timestamp,open,high,low,close,volume\n\
             2021-01-04T05:00:00Z,1.5,2,0.1,0.3,143301887\n\
             2021-01-05T05:00:00Z,1.5,2,0.1,1,143301887\n"
        );
        let parsed =
            crate::data::ingest::parse_csv(std::path::Path::new("snapshot.csv"), &csv).unwrap();
        assert_eq!(parsed.timestamps, vec![1_609_736_400, 1_609_822_800]);
        assert_eq!(parsed.close, vec![0.3, 1.0]);
        let err = canonical_csv(vec![bar(5, 1.0), bar(5, 1.0)]).unwrap_err();
        assert!(err.contains("1970-01-01T00:00:05Z"), "{err}");
    }

    #[test]
    fn error_bodies_become_short_messages() {
        assert_eq!(
            error_message(
                Provider::Alpaca,
                br#"{"code":40110000,"message":"request is not authorized"}"#
            ),
            "request is not authorized (code 40110000)"
        );
        assert_eq!(error_message(Provider::Alpaca, b""), "(empty body)");
        assert_eq!(
            error_message(Provider::Stooq, b"oops\r\nmore"),
            "oops  more"
        );
        assert!(error_message(Provider::Stooq, &[b'x'; 500]).ends_with("..."));
    }

    #[test]
    fn backoff_doubles_and_saturates() {
        let first = Duration::from_millis(10);
        assert_eq!(backoff_delay(first, 1), Duration::from_millis(10));
        assert_eq!(backoff_delay(first, 2), Duration::from_millis(20));
        assert_eq!(backoff_delay(first, 4), Duration::from_millis(80));
        assert_eq!(backoff_delay(first, 200), MAX_BACKOFF);
    }

    #[test]
    fn credentials_are_checked_before_any_request() {
        let req = request(Provider::Alpaca);
        let err = fetch(&req, &|_| None).unwrap_err();
        assert!(
            err.to_string()
                .contains("APCA_API_KEY_ID and APCA_API_SECRET_KEY"),
            "{err}"
        );
        let only_id = |k: &str| (k == "APCA_API_KEY_ID").then(|| "id".to_string());
        let err = fetch(&req, &only_id).unwrap_err();
        assert_eq!(
            err,
            ApiError::MissingCredentials {
                provider: Provider::Alpaca,
                symbol: "AAPL".into(),
                vars: vec!["APCA_API_SECRET_KEY"],
            }
        );
        let newline = |_: &str| Some("sentinel-SECRET\nx".to_string());
        let err = fetch(&req, &newline).unwrap_err().to_string();
        assert!(
            !err.contains("sentinel-SECRET") && err.contains("HTTP header"),
            "{err}"
        );
        assert!(credential_vars(Provider::Stooq).is_empty());
    }

    #[test]
    fn bad_requests_are_refused_up_front() {
        let env = |_: &str| Some("k".to_string());
        let req = ApiRequest {
            start: NaiveDate::from_ymd_opt(2022, 1, 1),
            ..request(Provider::Alpaca)
        };
        assert!(
            fetch(&req, &env)
                .unwrap_err()
                .to_string()
                .contains("after end")
        );
        let req = ApiRequest {
            interval: "5min".into(),
            ..request(Provider::Stooq)
        };
        let err = fetch(&req, &env).unwrap_err().to_string();
        assert!(err.starts_with("stooq AAPL: interval 5min"), "{err}");
        let req = ApiRequest {
            symbol: " ".into(),
            ..request(Provider::Stooq)
        };
        assert!(
            fetch(&req, &env)
                .unwrap_err()
                .to_string()
                .contains("symbol is empty")
        );
    }
}
