//! Stooq's CSV download: its body (bars, no data, or a quota message) and the fetch.

use chrono::NaiveTime;

use super::*;

/// Parses Stooq's CSV download (`Date,Open,High,Low,Close[,Volume]`).
pub(super) fn parse_stooq(body: &[u8]) -> Result<Vec<Bar>, StooqBody> {
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
pub(super) enum StooqBody {
    NoData,
    Quota(String),
    Bad(String),
}

pub(super) fn fetch_stooq(
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

pub(super) fn finish(
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
}
