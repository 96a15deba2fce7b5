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
//! - `alpaca` ([`ApiProvider::Alpaca`]): market data v2,
//!   `GET {base}/v2/stocks/{symbol}/bars?timeframe=1Day&start=..&end=..&limit=10000&adjustment=raw`
//!   followed by `&page_token=..` while the response has a `next_page_token`. Credentials come
//!   from `APCA_API_KEY_ID` / `APCA_API_SECRET_KEY` (see [`credential_vars`]) and travel only
//!   as the `APCA-API-KEY-ID` / `APCA-API-SECRET-KEY` headers. Without a `start` the request
//!   asks from [`ALPACA_DEFAULT_START`] (Alpaca itself would default to today only).
//! - `stooq` ([`ApiProvider::Stooq`]): the CSV download `GET {base}/q/d/l/?s={symbol}&i=d&d1=YYYYMMDD&d2=YYYYMMDD`.
//!   The symbol is passed through as given; Stooq wants the market suffix, e.g. `aapl.us`.
//!   Stooq serves daily, weekly and monthly bars only.
//!
//! Failures: connection errors, timeouts, HTTP 429 (honouring `Retry-After` in seconds) and 5xx
//! are retried up to `retries` times with a doubling backoff; other 4xx are not. Every error
//! names the provider, the symbol, the URL (never with credentials) and the HTTP status when
//! there was one, and says what to do. Secrets never appear in a URL, a message or a snapshot:
//! text quoted from a response is scrubbed of the credential values before it is shown.
//!
//! Split by concern: [`request`] checks the request and builds URLs, [`http`] sends it
//! (credentials, retries, scrubbing), [`alpaca`] and [`stooq`] read each wire format, and
//! [`canonical`] writes the snapshot CSV. The provider is `config`'s [`ApiProvider`].

mod alpaca;
mod canonical;
mod http;
mod request;
mod stooq;

use std::fmt;
use std::time::Duration;

use chrono::NaiveDate;

pub use crate::config::ApiProvider;

use alpaca::*;
use canonical::*;
use http::*;
use request::*;
use stooq::*;

/// The provider's name as written in configs (`alpaca`, `stooq`), as messages show it.
pub fn provider_name(provider: ApiProvider) -> &'static str {
    match provider {
        ApiProvider::Alpaca => "alpaca",
        ApiProvider::Stooq => "stooq",
    }
}

/// One symbol's download: where from, what range, and how patient to be.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiRequest {
    pub provider: ApiProvider,
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
    pub provider: ApiProvider,
    pub symbol: String,
    /// Without credentials (they travel in headers only).
    pub url: String,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: GET {}",
            provider_name(self.provider),
            self.symbol,
            self.url
        )
    }
}

/// Everything `fetch` can fail with; `Display` is the message for the user.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// The request cannot be made as configured (interval, dates, base URL, symbol).
    #[error("{} {symbol}: {message}", provider_name(*.provider))]
    InvalidRequest {
        provider: ApiProvider,
        symbol: String,
        message: String,
    },
    /// Credentials the provider needs are not in the environment; no request was made.
    #[error(
        "{} {symbol}: missing credentials: set the environment variable{} {} \
         (credentials are read from the environment only, never from a config file)",
        provider_name(*.provider),
        if .vars.len() == 1 { "" } else { "s" },
        .vars.join(" and ")
    )]
    MissingCredentials {
        provider: ApiProvider,
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
        provider_name(.at.provider)
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
pub(super) fn reason(status: u16) -> String {
    ureq::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .map(|r| format!(" {r}"))
        .unwrap_or_default()
}

/// The environment variables a provider needs (for docs and messages).
pub fn credential_vars(provider: ApiProvider) -> &'static [&'static str] {
    match provider {
        ApiProvider::Alpaca => &["APCA_API_KEY_ID", "APCA_API_SECRET_KEY"],
        ApiProvider::Stooq => &[],
    }
}

/// The header each credential variable is sent in (same order as [`credential_vars`]).
pub(super) fn credential_headers(provider: ApiProvider) -> &'static [&'static str] {
    match provider {
        ApiProvider::Alpaca => &["APCA-API-KEY-ID", "APCA-API-SECRET-KEY"],
        ApiProvider::Stooq => &[],
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
        ApiProvider::Alpaca => {
            let timeframe = alpaca_timeframe(interval).map_err(invalid)?;
            fetch_alpaca(req, &client, base, &timeframe)
        }
        ApiProvider::Stooq => {
            let code = stooq_interval(interval).map_err(invalid)?;
            fetch_stooq(req, &client, base, code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn request(provider: ApiProvider) -> ApiRequest {
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
    fn credentials_are_checked_before_any_request() {
        let req = request(ApiProvider::Alpaca);
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
                provider: ApiProvider::Alpaca,
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
        assert!(credential_vars(ApiProvider::Stooq).is_empty());
    }

    #[test]
    fn bad_requests_are_refused_up_front() {
        let env = |_: &str| Some("k".to_string());
        let req = ApiRequest {
            start: NaiveDate::from_ymd_opt(2022, 1, 1),
            ..request(ApiProvider::Alpaca)
        };
        assert!(
            fetch(&req, &env)
                .unwrap_err()
                .to_string()
                .contains("after end")
        );
        let req = ApiRequest {
            interval: "5min".into(),
            ..request(ApiProvider::Stooq)
        };
        let err = fetch(&req, &env).unwrap_err().to_string();
        assert!(err.starts_with("stooq AAPL: interval 5min"), "{err}");
        let req = ApiRequest {
            symbol: " ".into(),
            ..request(ApiProvider::Stooq)
        };
        assert!(
            fetch(&req, &env)
                .unwrap_err()
                .to_string()
                .contains("symbol is empty")
        );
    }
}
