//! Credentials from the environment and the HTTP client: GET with retries, doubling
//! backoff and `Retry-After`, error bodies as short messages, secrets scrubbed.

use serde::Deserialize;

use super::*;

/// Header name and value pairs; the values are secrets.
pub(super) struct Credentials {
    pub(super) headers: Vec<(&'static str, String)>,
}

pub(super) fn credentials(
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
pub(super) struct Fetched {
    pub(super) status: u16,
    pub(super) body: Vec<u8>,
}

/// One attempt's outcome when it did not succeed.
pub(super) enum Failure {
    /// Worth another attempt; `wait` is what the server asked for (`Retry-After`).
    Retry {
        cause: String,
        status: Option<u16>,
        hint: String,
        wait: Option<Duration>,
    },
    Fatal(ApiError),
}

pub(super) struct Client<'a> {
    pub(super) req: &'a ApiRequest,
    pub(super) agent: ureq::Agent,
    pub(super) credentials: Credentials,
}

impl<'a> Client<'a> {
    pub(super) fn new(req: &'a ApiRequest, credentials: Credentials) -> Self {
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

    pub(super) fn origin(&self, url: &str) -> Origin {
        Origin {
            provider: self.req.provider,
            symbol: self.req.symbol.clone(),
            url: url.to_string(),
        }
    }

    /// Replaces every credential value in text quoted from a response or a transport error.
    pub(super) fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (_, secret) in &self.credentials.headers {
            if !secret.is_empty() {
                out = out.replace(secret.as_str(), "[redacted]");
            }
        }
        out
    }

    /// GET with retries and backoff; a 2xx body or the error to report.
    pub(super) fn get(&self, url: &str) -> Result<Fetched, ApiError> {
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

    pub(super) fn get_once(&self, url: &str) -> Result<Fetched, Failure> {
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

    pub(super) fn transport_failure(&self, url: &str, err: &ureq::Error) -> Failure {
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
pub(super) fn backoff_delay(first: Duration, attempt: u32) -> Duration {
    let factor = 1u32
        .checked_shl(attempt.saturating_sub(1))
        .unwrap_or(u32::MAX);
    first
        .checked_mul(factor)
        .map_or(MAX_BACKOFF, |d| d.min(MAX_BACKOFF))
}

/// What to do about a non-retryable HTTP status.
pub(super) fn status_hint(provider: ApiProvider, status: u16, location: Option<&str>) -> String {
    let vars = credential_vars(provider).join(" and ");
    match (provider, status) {
        (_, 300..=399) => format!(
            "the provider redirected to '{}': set base_url to the new address",
            location.unwrap_or("?")
        ),
        (ApiProvider::Alpaca, 401) => format!(
            "check that {vars} hold a valid key pair for the market-data API (not expired, \
             no stray characters)"
        ),
        (ApiProvider::Alpaca, 403) => format!(
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
pub(super) fn error_message(provider: ApiProvider, body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct AlpacaError {
        code: Option<i64>,
        message: Option<String>,
    }
    if provider == ApiProvider::Alpaca
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
pub(super) fn printable(text: &str, max: usize) -> String {
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

pub(super) fn shorten(text: &str) -> String {
    printable(text, 80)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_become_short_messages() {
        assert_eq!(
            error_message(
                ApiProvider::Alpaca,
                br#"{"code":40110000,"message":"request is not authorized"}"#
            ),
            "request is not authorized (code 40110000)"
        );
        assert_eq!(error_message(ApiProvider::Alpaca, b""), "(empty body)");
        assert_eq!(
            error_message(ApiProvider::Stooq, b"oops\r\nmore"),
            "oops  more"
        );
        assert!(error_message(ApiProvider::Stooq, &[b'x'; 500]).ends_with("..."));
    }

    #[test]
    fn backoff_doubles_and_saturates() {
        let first = Duration::from_millis(10);
        assert_eq!(backoff_delay(first, 1), Duration::from_millis(10));
        assert_eq!(backoff_delay(first, 2), Duration::from_millis(20));
        assert_eq!(backoff_delay(first, 4), Duration::from_millis(80));
        assert_eq!(backoff_delay(first, 200), MAX_BACKOFF);
    }
}
