//! Unit tests of the API client: wire formats, URLs, messages, up-front checks.

use super::*;

fn request(provider: ApiProvider) -> ApiRequest {
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

    let err = parse_alpaca_page(br#"{"bars":[{"t":"2021-01-05T05:00:00Z","o":"x"}]}"#).unwrap_err();
    assert!(err.contains("bars[0].o"), "{err}");
    let err = parse_alpaca_page(br#"{"bars":[{"t":"yesterday","o":1,"h":1,"l":1,"c":1,"v":1}]}"#)
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
