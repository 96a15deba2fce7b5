//! Checking a request before anything is sent (symbol, base URL, interval) and building
//! each provider's URL from it.

use super::*;

pub(super) fn check_symbol(symbol: &str) -> Result<(), String> {
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
pub(super) fn check_base_url(base: &str) -> Result<&str, String> {
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
pub(super) enum Interval {
    Minute(u32),
    Hour(u32),
    Day(u32),
    Week(u32),
    Month(u32),
}

pub(super) const INTERVAL_SPELLINGS: &str = "e.g. 1min, 5min, 15min, 1h, 1d, 1w, 1mo";

pub(super) fn parse_interval(text: &str) -> Result<Interval, String> {
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
pub(super) fn alpaca_timeframe(interval: Interval) -> Result<String, String> {
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
pub(super) fn stooq_interval(interval: Interval) -> Result<&'static str, String> {
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

pub(super) fn describe(interval: Interval) -> String {
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
pub(super) fn encode(text: &str) -> String {
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

pub(super) fn alpaca_url(
    base: &str,
    req: &ApiRequest,
    timeframe: &str,
    page_token: Option<&str>,
) -> String {
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

pub(super) fn stooq_url(base: &str, req: &ApiRequest, code: &str) -> String {
    let mut url = format!("{base}/q/d/l/?s={}&i={code}", encode(&req.symbol));
    if let Some(start) = req.start {
        url.push_str(&format!("&d1={}", start.format("%Y%m%d")));
    }
    if let Some(end) = req.end {
        url.push_str(&format!("&d2={}", end.format("%Y%m%d")));
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::api::tests::request;

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
        let req = request(ApiProvider::Alpaca);
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
            ..request(ApiProvider::Stooq)
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
}
