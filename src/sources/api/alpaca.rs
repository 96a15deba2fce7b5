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
