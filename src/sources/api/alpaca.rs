//! Alpaca market data v2: its JSON bar pages and the paginated fetch.

use std::collections::HashSet;

use chrono::DateTime;
use serde::Deserialize;

use super::*;

#[derive(Deserialize)]
pub(super) struct AlpacaPage {
    pub(super) bars: Option<Vec<AlpacaBar>>,
    pub(super) next_page_token: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct AlpacaBar {
    pub(super) t: String,
    pub(super) o: f64,
    pub(super) h: f64,
    pub(super) l: f64,
    pub(super) c: f64,
    pub(super) v: f64,
}

/// One Alpaca page: its bars and the next page token (None at the end).
pub(super) fn parse_alpaca_page(body: &[u8]) -> Result<(Vec<Bar>, Option<String>), String> {
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

pub(super) fn fetch_alpaca(
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
