//! The mail delivery API as a client sees it: validation, paging, tokens, window edges, filters,
//! determinism, the truth file, faults and counters.

use std::time::{Duration, Instant};

use chrono::{Days, NaiveDate, Utc};

use super::{Harness, Reply, TOKEN, args};
use crate::SimArgs;
use crate::mail_delivery::{DayTruth, FINGERPRINT_DEFINITION, LogRecord, Outcome, generate_day};

fn today() -> NaiveDate {
    Utc::now().date_naive()
}

fn ago(days: u64) -> NaiveDate {
    today().checked_sub_days(Days::new(days)).expect("date in range")
}

fn minute(d: NaiveDate, hm: &str) -> String {
    format!("{}T{hm}", d.format("%Y-%m-%d"))
}

/// The most recent full day with records whose last record is in 23:59.
fn busy_day(seed: u64, rows: u32) -> NaiveDate {
    (1..90)
        .map(ago)
        .find(|&d| generate_day(seed, d, rows).records.len() > 10)
        .expect("some day in 90 has records")
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// The unescaped text of every `<Log>` element.
fn logs(xml: &str) -> Vec<String> {
    xml.split("<Log>")
        .skip(1)
        .map(|s| unescape(s.split("</Log>").next().expect("closed Log")))
        .collect()
}

/// The raw text of the first `<name>` element.
fn element<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let from = xml.find(&open)? + open.len();
    let len = xml[from..].find(&close)?;
    Some(&xml[from..from + len])
}

fn assert_error(r: &Reply, status: u16, code: &str, mentions: &str) {
    assert_eq!(r.status, status, "expected {status} {code}, got: {}", r.body);
    assert_eq!(r.header("content-type"), Some("application/xml"));
    assert!(r.body.starts_with("<?xml "), "{}", r.body);
    assert_eq!(element(&r.body, "Code"), Some(code), "{}", r.body);
    let ty = if status >= 500 { "Receiver" } else { "Sender" };
    assert_eq!(element(&r.body, "Type"), Some(ty), "{}", r.body);
    let message = element(&r.body, "Message").expect("Message element");
    assert!(
        message.contains(mentions),
        "message {message:?} does not mention {mentions:?}"
    );
    let id = r.header("x-fj-request-id").expect("x-fj-request-id header");
    assert_eq!(element(&r.body, "RequestId"), Some(id));
}

fn lines(records: &[LogRecord]) -> Vec<String> {
    records.iter().map(|r| r.line.to_string()).collect()
}

fn truth_of_lines(lines: &[String]) -> (usize, u64) {
    let fp = lines
        .iter()
        .fold(0u64, |acc, l| acc.wrapping_add(crate::data::fnv1a64(l.as_bytes())));
    (lines.len(), fp)
}

/// Walks every page of a window; returns the lines and the raw (wrapped) tokens seen.
async fn fetch_all(h: &Harness, start: &str, end: &str, extra: &[(&str, &str)]) -> (Vec<String>, Vec<String>) {
    let mut all = Vec::new();
    let mut tokens: Vec<String> = Vec::new();
    loop {
        let clean = tokens.last().map(|t| t.replace('\n', ""));
        let mut params = vec![("Action", "GetDeliveryLog"), ("StartDate", start), ("EndDate", end)];
        params.extend_from_slice(extra);
        if let Some(t) = &clean {
            params.push(("NextToken", t));
        }
        let r = h.post_form(&params).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let page = logs(&r.body);
        let count: usize = element(&r.body, "LogCount")
            .expect("LogCount")
            .parse()
            .expect("numeric LogCount");
        assert_eq!(count, page.len(), "LogCount must count this page's Log elements");
        all.extend(page);
        match element(&r.body, "NextToken") {
            Some(t) => {
                assert!(tokens.len() < 1000, "pagination does not end");
                tokens.push(t.to_string());
            }
            None => return (all, tokens),
        }
    }
}

#[tokio::test]
async fn requests_without_the_right_token_are_refused() {
    let h = Harness::start(args(1, 50)).await;
    let d = ago(1);
    let (s, e) = (minute(d, "00:00"), minute(d, "23:59"));
    let params = [
        ("Action", "GetDeliveryLog"),
        ("StartDate", s.as_str()),
        ("EndDate", e.as_str()),
    ];
    assert_error(
        &h.post_form_with_token(&params, None).await,
        401,
        "AuthFailure",
        "X-Auth-Token",
    );
    let wrong = h.post_form_with_token(&params, Some("nope")).await;
    assert_error(&wrong, 401, "AuthFailure", "X-Auth-Token");
    assert!(
        !wrong.body.contains(TOKEN),
        "the configured token must not leak into errors"
    );
    assert_eq!(h.post_form(&params).await.status, 200);
}

type Case<'a> = (Vec<(&'a str, &'a str)>, &'a str, &'a str);

#[tokio::test]
async fn invalid_parameters_are_refused_naming_the_parameter() {
    let h = Harness::start(args(1, 50)).await;
    let d = ago(1);
    let day_start = minute(d, "00:00");
    let day_end = minute(d, "23:59");
    let next_midnight = minute(ago(0), "00:00");
    let before_start = minute(ago(2), "23:59");
    let too_old = minute(ago(91), "23:00");
    let too_old_end = minute(ago(90), "00:00");
    let oldest = minute(ago(90), "00:00");
    let oldest_end = minute(ago(90), "23:59");
    // (parameters, expected Code, what the Message must mention)
    let cases: Vec<Case> = vec![
        (
            vec![("StartDate", &day_start), ("EndDate", &day_end)],
            "MissingParameter",
            "Action",
        ),
        (
            vec![("Action", "GetLog"), ("StartDate", &day_start), ("EndDate", &day_end)],
            "InvalidAction",
            "Action",
        ),
        (
            vec![
                ("Action", "GetDeliveryLog"),
                ("Version", "v2.0"),
                ("StartDate", &day_start),
                ("EndDate", &day_end),
            ],
            "InvalidParameterValue",
            "Version",
        ),
        (
            vec![("Action", "GetDeliveryLog"), ("EndDate", &day_end)],
            "MissingParameter",
            "StartDate",
        ),
        (
            vec![("Action", "GetDeliveryLog"), ("StartDate", &day_start)],
            "MissingParameter",
            "EndDate",
        ),
        (
            vec![
                ("Action", "GetDeliveryLog"),
                ("StartDate", &day_start),
                ("EndDate", &next_midnight),
            ],
            "InvalidParameterValue",
            "24 hours",
        ),
        (
            vec![
                ("Action", "GetDeliveryLog"),
                ("StartDate", &day_start),
                ("EndDate", &before_start),
            ],
            "InvalidParameterValue",
            "EndDate",
        ),
        (
            vec![
                ("Action", "GetDeliveryLog"),
                ("StartDate", &too_old),
                ("EndDate", &too_old_end),
            ],
            "InvalidParameterValue",
            "StartDate",
        ),
        (
            vec![
                ("Action", "GetDeliveryLog"),
                ("StartDate", "2026-01-01 00:00"),
                ("EndDate", &day_end),
            ],
            "InvalidParameterValue",
            "StartDate",
        ),
        (
            vec![
                ("Action", "GetDeliveryLog"),
                ("StartDate", &day_start),
                ("EndDate", "2026-01-01T23:59:00"),
            ],
            "InvalidParameterValue",
            "EndDate",
        ),
        (
            vec![
                ("Action", "GetDeliveryLog"),
                ("StartDate", &day_start),
                ("EndDate", &day_end),
                ("Status", "4"),
            ],
            "InvalidParameterValue",
            "Status",
        ),
        (
            vec![
                ("Action", "GetDeliveryLog"),
                ("StartDate", &day_start),
                ("EndDate", &day_end),
                ("MaxItems", "10001"),
            ],
            "InvalidParameterValue",
            "MaxItems",
        ),
        (
            vec![
                ("Action", "GetDeliveryLog"),
                ("StartDate", &day_start),
                ("EndDate", &day_end),
                ("MaxItems", "0"),
            ],
            "InvalidParameterValue",
            "MaxItems",
        ),
        (
            vec![
                ("Action", "GetDeliveryLog"),
                ("StartDate", &day_start),
                ("EndDate", &day_end),
                ("NextToken", "abc"),
            ],
            "InvalidParameterValue",
            "NextToken",
        ),
    ];
    for (params, code, mentions) in &cases {
        let r = h.post_form(params).await;
        assert_error(&r, 400, code, mentions);
    }

    // The boundaries themselves are valid: a whole day (00:00..23:59), the oldest allowed day, the
    // largest page, and a one-minute window.
    for (s, e, max) in [
        (&day_start, &day_end, "10000"),
        (&oldest, &oldest_end, "1"),
        (&day_end, &day_end, "7"),
    ] {
        let r = h
            .post_form(&[
                ("Action", "GetDeliveryLog"),
                ("StartDate", s),
                ("EndDate", e),
                ("MaxItems", max),
            ])
            .await;
        assert_eq!(r.status, 200, "{s}..{e}: {}", r.body);
    }
    let r = h
        .post_form(&[
            ("Action", "GetDeliveryLog"),
            ("Version", "v1.0"),
            ("StartDate", &day_start),
            ("EndDate", &day_end),
        ])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn requests_must_be_form_encoded_posts() {
    let h = Harness::start(args(1, 50)).await;
    let d = ago(1);
    let body = format!(
        "Action=GetDeliveryLog&StartDate={}&EndDate={}",
        minute(d, "00%3A00"),
        minute(d, "23%3A59")
    );
    let form = Some("application/x-www-form-urlencoded; charset=utf-8");
    assert_eq!(h.post_raw("/mail-delivery/", form, body.clone()).await.status, 200);
    assert_eq!(
        h.post_raw("/mail-delivery", form, body.clone()).await.status,
        200,
        "path without slash"
    );
    let json = h
        .post_raw("/mail-delivery/", Some("application/json"), body.clone())
        .await;
    assert_error(&json, 400, "InvalidParameterValue", "Content-Type");
    assert_error(
        &h.post_raw("/mail-delivery/", None, body).await,
        400,
        "InvalidParameterValue",
        "Content-Type",
    );
    let get = h
        .client
        .get(h.url("/mail-delivery/"))
        .header("X-Auth-Token", TOKEN)
        .send()
        .await
        .expect("GET");
    assert_error(&super::reply(get).await, 405, "MethodNotAllowed", "POST");
}

#[tokio::test]
async fn pages_walk_the_whole_day_and_match_the_truth() {
    let (seed, rows) = (5, 300);
    let h = Harness::start(args(seed, rows)).await;
    let d = busy_day(seed, rows);
    let expected = generate_day(seed, d, rows);
    let (got, tokens) = fetch_all(&h, &minute(d, "00:00"), &minute(d, "23:59"), &[("MaxItems", "100")]).await;
    assert_eq!(
        tokens.len(),
        expected.records.len().div_ceil(100) - 1,
        "one token per page but the last"
    );
    assert_eq!(
        got,
        lines(&expected.records),
        "the pages together are exactly the day's records, in order"
    );
    let truth = DayTruth::of(&expected.records);
    assert_eq!(truth_of_lines(&got), (truth.rows as usize, truth.fingerprint));
    let dups = got.windows(2).filter(|w| w[0] == w[1]).count();
    assert_eq!(dups, expected.records.windows(2).filter(|w| w[0] == w[1]).count());

    for t in &tokens {
        assert!(t.contains('\n'), "tokens are wrapped in the XML: {t:?}");
        assert!(t.lines().all(|l| l.len() <= 76), "wrapped at 76: {t:?}");
        assert_eq!(t.lines().next().map(str::len), Some(76));
        let clean = t.replace('\n', "");
        assert!(
            clean.contains('+') && clean.contains('/') && clean.ends_with('='),
            "{clean}"
        );
    }
    let distinct: std::collections::HashSet<&String> = tokens.iter().collect();
    assert_eq!(distinct.len(), tokens.len(), "each page has its own token");
}

#[tokio::test]
async fn success_pages_are_chunked_xml_shaped_like_the_seed() {
    let (seed, rows) = (5, 300);
    let h = Harness::start(args(seed, rows)).await;
    let d = busy_day(seed, rows);
    let (s, e) = (minute(d, "00:00"), minute(d, "23:59"));
    let r = h
        .post_form(&[
            ("Action", "GetDeliveryLog"),
            ("StartDate", &s),
            ("EndDate", &e),
            ("MaxItems", "3"),
        ])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.header("content-length"), None);
    assert_eq!(r.header("content-type"), Some("application/xml"));
    let id = r.header("x-fj-request-id").expect("request id header").to_string();
    let log_lines: String = r
        .body
        .lines()
        .filter(|l| l.starts_with("    <Log>"))
        .map(|l| format!("{l}\n"))
        .collect();
    let token = element(&r.body, "NextToken").expect("more than 3 records");
    let expected = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<GetDeliveryLogResponse>\n  <GetDeliveryLogResult>\n    \
         <LogCount>3</LogCount>\n{log_lines}    <NextToken>{token}</NextToken>\n  </GetDeliveryLogResult>\n  \
         <ResponseMetadata>\n    <RequestId>{id}</RequestId>\n  </ResponseMetadata>\n</GetDeliveryLogResponse>\n"
    );
    assert_eq!(r.body, expected);
    assert_eq!(log_lines.lines().count(), 3);
    let first = &generate_day(seed, d, rows).records[0];
    assert!(r.body.contains(&format!("<Log>{}</Log>", escape(&first.line))));
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[tokio::test]
async fn log_text_is_xml_escaped() {
    let (seed, rows) = (3, 400);
    let h = Harness::start(args(seed, rows)).await;
    let d = busy_day(seed, rows);
    let r = h
        .post_form(&[
            ("Action", "GetDeliveryLog"),
            ("StartDate", &minute(d, "00:00")),
            ("EndDate", &minute(d, "23:59")),
        ])
        .await;
    for entity in ["&lt;", "&gt;", "&amp;", "&quot;"] {
        assert!(r.body.contains(entity), "no {entity} in a day of {rows} records");
    }
    let raw: Vec<&str> = r
        .body
        .split("<Log>")
        .skip(1)
        .map(|s| s.split("</Log>").next().unwrap_or(""))
        .collect();
    assert!(
        raw.iter().all(|t| !t.contains(['<', '>', '"'])),
        "unescaped markup inside a Log element"
    );
    assert!(logs(&r.body).iter().all(|l| l.split(' ').count() == 8));
}

#[tokio::test]
async fn continuation_tokens_are_checked() {
    let (seed, rows) = (5, 300);
    let h = Harness::start(args(seed, rows)).await;
    let d = busy_day(seed, rows);
    let (s, e) = (minute(d, "00:00"), minute(d, "23:59"));
    let first = h
        .post_form(&[
            ("Action", "GetDeliveryLog"),
            ("StartDate", &s),
            ("EndDate", &e),
            ("MaxItems", "50"),
        ])
        .await;
    let wrapped = element(&first.body, "NextToken").expect("a token").to_string();
    let clean = wrapped.replace('\n', "");
    let page = |start: String, end: String, token: String, status: Option<&'static str>| {
        let h = &h;
        async move {
            let mut p = vec![
                ("Action", "GetDeliveryLog".to_string()),
                ("StartDate", start),
                ("EndDate", end),
            ];
            p.push(("MaxItems", "50".into()));
            p.push(("NextToken", token));
            if let Some(s) = status {
                p.push(("Status", s.into()));
            }
            let p: Vec<(&str, &str)> = p.iter().map(|(k, v)| (*k, v.as_str())).collect();
            h.post_form(&p).await
        }
    };

    let good = page(s.clone(), e.clone(), clean.clone(), None).await;
    assert_eq!(good.status, 200, "{}", good.body);
    let expected = generate_day(seed, d, rows);
    assert_eq!(
        logs(&good.body),
        lines(&expected.records[50..100.min(expected.records.len())])
    );

    let other_end = page(s.clone(), minute(d, "23:58"), clean.clone(), None).await;
    assert_error(&other_end, 500, "InternalError", "NextToken");
    let other_start = page(minute(d, "00:01"), e.clone(), clean.clone(), None).await;
    assert_error(&other_start, 500, "InternalError", "NextToken");

    let with_breaks = page(s.clone(), e.clone(), wrapped.clone(), None).await;
    assert_error(&with_breaks, 400, "InvalidParameterValue", "line breaks");

    let other_status = page(s.clone(), e.clone(), clean.clone(), Some("1")).await;
    assert_error(&other_status, 400, "InvalidParameterValue", "Status");

    // A client that forgets to URL-encode the token: '+' form-decodes to a space.
    let raw = format!("Action=GetDeliveryLog&StartDate={s}&EndDate={e}&MaxItems=50&NextToken={clean}");
    let r = h
        .post_raw("/mail-delivery/", Some("application/x-www-form-urlencoded"), raw)
        .await;
    assert_error(&r, 400, "InvalidParameterValue", "NextToken");
}

#[tokio::test]
async fn the_end_minute_is_inclusive() {
    let (seed, rows) = (8, 300);
    let h = Harness::start(args(seed, rows)).await;
    let d = busy_day(seed, rows);
    let day = generate_day(seed, d, rows);
    let date = d.format("%Y-%m-%d").to_string();
    let in_last_minute: Vec<String> = lines(&day.records)
        .into_iter()
        .filter(|l| l.starts_with(&format!("{date} 23:59:")))
        .collect();
    assert!(!in_last_minute.is_empty(), "the generator puts records in 23:59");

    let last = minute(d, "23:59");
    let (got, _) = fetch_all(&h, &last, &last, &[]).await;
    assert_eq!(got, in_last_minute, "EndDate=23:59 includes 23:59:00..23:59:59");

    let (before, _) = fetch_all(&h, &minute(d, "00:00"), &minute(d, "23:58"), &[]).await;
    assert!(before.iter().all(|l| !l.starts_with(&format!("{date} 23:59:"))));
    assert_eq!(before.len() + in_last_minute.len(), day.records.len());

    let midnight = minute(d, "00:00");
    let (first_minute, _) = fetch_all(&h, &midnight, &midnight, &[]).await;
    assert!(first_minute.iter().any(|l| l.starts_with(&format!("{date} 00:00:00 "))));
}

#[tokio::test]
async fn windows_may_span_two_days_and_never_reach_the_future() {
    let (seed, rows) = (4, 200);
    let h = Harness::start(args(seed, rows)).await;
    let (d1, d2) = (ago(2), ago(1));
    let (got, _) = fetch_all(&h, &minute(d1, "12:00"), &minute(d2, "11:59"), &[("MaxItems", "77")]).await;
    let lo = d1.and_hms_opt(12, 0, 0).expect("time").and_utc().timestamp();
    let hi = lo + 86_400;
    let expected: Vec<String> = [generate_day(seed, d1, rows), generate_day(seed, d2, rows)]
        .iter()
        .flat_map(|d| d.records.iter())
        .filter(|r| r.at >= lo && r.at < hi)
        .map(|r| r.line.to_string())
        .collect();
    assert_eq!(got, expected);

    // Today is partial: nothing later than now is served.
    let before = Utc::now().timestamp();
    let (today_lines, _) = fetch_all(&h, &minute(ago(0), "00:00"), &minute(ago(0), "23:59"), &[]).await;
    let after = Utc::now().timestamp();
    let today_records = generate_day(seed, ago(0), rows).records;
    let at_most = today_records.iter().filter(|r| r.at <= after).count();
    let at_least = today_records.iter().filter(|r| r.at <= before).count();
    assert!(
        (at_least..=at_most).contains(&today_lines.len()),
        "{} records of today served",
        today_lines.len()
    );
    assert_eq!(today_lines, lines(&today_records[..today_lines.len()]));
}

#[tokio::test]
async fn the_status_filter_selects_one_result() {
    let (seed, rows) = (6, 500);
    let h = Harness::start(args(seed, rows)).await;
    let d = busy_day(seed, rows);
    let day = generate_day(seed, d, rows);
    for (status, outcome, word) in [
        ("1", Outcome::Sent, "sent"),
        ("2", Outcome::Retry, "retry"),
        ("3", Outcome::Faild, "faild"),
    ] {
        let (got, _) = fetch_all(
            &h,
            &minute(d, "00:00"),
            &minute(d, "23:59"),
            &[("Status", status), ("MaxItems", "40")],
        )
        .await;
        let expected: Vec<String> = day
            .records
            .iter()
            .filter(|r| r.outcome == outcome)
            .map(|r| r.line.to_string())
            .collect();
        assert!(!expected.is_empty(), "{word}: no records to filter");
        assert_eq!(got, expected, "Status={status}");
        assert!(got.iter().all(|l| l.split(' ').nth(2) == Some(word)));
    }
}

#[tokio::test]
async fn the_same_seed_serves_the_same_data() {
    let d = ago(3);
    let fetch = |seed: u64| async move {
        let h = Harness::start(args(seed, 200)).await;
        // Not every day has records; take three days so that some do.
        let mut all = Vec::new();
        for back in 3..6 {
            let d = ago(back);
            all.extend(fetch_all(&h, &minute(d, "00:00"), &minute(d, "23:59"), &[]).await.0);
        }
        all
    };
    let (a, b, c) = (fetch(11).await, fetch(11).await, fetch(12).await);
    assert!(!a.is_empty(), "three days without records around {d}");
    assert_eq!(a, b);
    assert_ne!(a, c);
}

/// Every page body of a window, following the tokens.
async fn walk_pages(h: &Harness, start: &str, end: &str) -> Vec<String> {
    let mut pages: Vec<String> = Vec::new();
    loop {
        let token = pages
            .last()
            .and_then(|b| element(b, "NextToken"))
            .map(|t| t.replace('\n', ""));
        if !pages.is_empty() && token.is_none() {
            return pages;
        }
        let mut params = vec![
            ("Action", "GetDeliveryLog"),
            ("StartDate", start),
            ("EndDate", end),
            ("MaxItems", "60"),
        ];
        if let Some(t) = &token {
            params.push(("NextToken", t));
        }
        let r = h.post_form(&params).await;
        assert_eq!(r.status, 200, "{}", r.body);
        pages.push(r.body);
        assert!(pages.len() < 1000, "pagination does not end");
    }
}

#[tokio::test]
async fn a_window_already_over_is_served_the_same_pages_but_for_the_request_id() {
    // The simulator keeps the record sections of pages it rendered; a kept section must be the
    // one it would render, and each response still gets its own request id.
    let (seed, rows) = (6, 500);
    let d = busy_day(seed, rows);
    let (fresh, warm) = (
        Harness::start(args(seed, rows)).await,
        Harness::start(args(seed, rows)).await,
    );
    let (start, end) = (minute(d, "00:00"), minute(d, "23:59"));
    let first = walk_pages(&warm, &start, &end).await;
    let again = walk_pages(&warm, &start, &end).await;
    let other = walk_pages(&fresh, &start, &end).await;
    assert!(first.len() > 2, "several pages ({})", first.len());
    let without_id = |b: &String| {
        let id = element(b, "RequestId").expect("RequestId").to_string();
        (b.replace(&id, ""), id)
    };
    for ((a, b), c) in first.iter().zip(&again).zip(&other) {
        let ((a, id_a), (b, id_b), (c, _)) = (without_id(a), without_id(b), without_id(c));
        assert_eq!(a, b, "a second walk (from the kept sections) differs");
        assert_eq!(a, c, "another simulator renders another page");
        assert_ne!(id_a, id_b, "every response has its own request id");
    }
    assert_eq!((again.len(), other.len()), (first.len(), first.len()));
}

fn truth_args(seed: u64, rows: u32, path: &std::path::Path) -> SimArgs {
    SimArgs {
        truth: Some(path.to_path_buf()),
        ..args(seed, rows)
    }
}

#[tokio::test]
async fn the_truth_file_describes_every_servable_full_day() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("truth.json");
    let (seed, rows) = (21, 120);
    let h = Harness::start(truth_args(seed, rows, &path)).await;
    let truth: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("truth file exists once started")).expect("JSON");
    let md = &truth["mail_delivery"];
    assert_eq!(md["fingerprint_definition"], FINGERPRINT_DEFINITION);
    let days = md["days"].as_object().expect("days object");
    assert_eq!(days.len(), 90);
    let keys: Vec<&String> = days.keys().collect();
    assert_eq!(
        keys.first().map(|k| k.as_str()),
        Some(ago(90).format("%Y-%m-%d").to_string().as_str())
    );
    assert_eq!(
        keys.last().map(|k| k.as_str()),
        Some(ago(1).format("%Y-%m-%d").to_string().as_str())
    );
    let mut empty = 0;
    for (key, entry) in days {
        let d = NaiveDate::parse_from_str(key, "%Y-%m-%d").expect("day key");
        let t = DayTruth::of(&generate_day(seed, d, rows).records);
        assert_eq!(entry["rows"], t.rows, "{key}");
        assert_eq!(entry["sent"], t.sent, "{key}");
        assert_eq!(entry["retry"], t.retry, "{key}");
        assert_eq!(entry["faild"], t.faild, "{key}");
        assert_eq!(entry["fingerprint"], format!("{:016x}", t.fingerprint), "{key}");
        assert_eq!(t.sent + t.retry + t.faild, t.rows);
        if t.rows == 0 {
            empty += 1;
            assert_eq!(entry["fingerprint"], "0000000000000000");
        }
    }
    assert!((1..=20).contains(&empty), "{empty} empty days in 90");

    // And the served data agrees with the file, fingerprint computed from the unescaped lines.
    let d = ago(1
        + (0..89)
            .find(|&b| days[&ago(1 + b).format("%Y-%m-%d").to_string()]["rows"] != 0)
            .expect("busy day"));
    let (got, _) = fetch_all(&h, &minute(d, "00:00"), &minute(d, "23:59"), &[("MaxItems", "33")]).await;
    let entry = &days[&d.format("%Y-%m-%d").to_string()];
    let (n, fp) = truth_of_lines(&got);
    assert_eq!(entry["rows"], n as u64);
    assert_eq!(entry["fingerprint"], format!("{fp:016x}"));
}

#[tokio::test]
async fn truth_generation_for_the_default_volume_is_quick() {
    // 90 days at the default 3000 rows/day: about 270k records, generated before the server announces
    // itself. Generous bound: this also runs unoptimised.
    let started = Instant::now();
    let t = crate::mail_delivery::truth(1, 3000, today());
    let rows: u64 = serde_json::to_value(&t).expect("serialisable")["days"]
        .as_object()
        .expect("days")
        .values()
        .map(|d| d["rows"].as_u64().unwrap_or(0))
        .sum();
    assert!((150_000..=350_000).contains(&rows), "{rows} rows");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "truth took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn every_request_at_fault_rate_one_is_a_fault_of_each_kind() {
    let h = Harness::start(SimArgs {
        fault_rate: 1.0,
        ..args(2, 100)
    })
    .await;
    let d = ago(1);
    let (s, e) = (minute(d, "00:00"), minute(d, "23:59"));
    let one = |i: usize| {
        let (h, s, e) = (&h, s.clone(), e.clone());
        async move {
            let started = Instant::now();
            let params = [
                ("Action", "GetDeliveryLog"),
                ("StartDate", s.as_str()),
                ("EndDate", e.as_str()),
            ];
            let resp = h
                .client
                .post(h.url("/mail-delivery/"))
                .header("X-Auth-Token", TOKEN)
                .form(&params)
                .send()
                .await
                .unwrap_or_else(|err| panic!("request {i}: {err:?}"));
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(String::from);
            let body = resp.bytes().await.map(|b| String::from_utf8_lossy(&b).into_owned());
            match (status, body) {
                (500, Ok(b)) if b.contains("<Code>InternalError</Code>") => "internal-error".to_string(),
                (503, Ok(_)) if retry_after.as_deref() == Some("1") => "unavailable-retry-after".into(),
                (503, Ok(_)) if retry_after.is_none() => "unavailable".into(),
                (429, Ok(_)) => match retry_after {
                    Some(v) if v == "1" => "throttled-seconds".into(),
                    Some(v) if httpdate::parse_http_date(&v).is_ok() => "throttled-date".into(),
                    other => panic!("429 with Retry-After {other:?}"),
                },
                (200, Err(_)) => "drop-connection".into(),
                (200, Ok(b)) => {
                    assert!(
                        started.elapsed() >= Duration::from_millis(950),
                        "a 200 at rate 1.0 must be slow"
                    );
                    assert!(
                        b.trim_end().ends_with("</GetDeliveryLogResponse>"),
                        "slow answers are complete"
                    );
                    "slow".into()
                }
                (status, body) => panic!("request {i}: unexpected {status}: {body:?}"),
            }
        }
    };
    let seen: Vec<String> = futures::future::join_all((0..60).map(one)).await;
    for kind in [
        "internal-error",
        "unavailable-retry-after",
        "unavailable",
        "throttled-seconds",
        "throttled-date",
        "drop-connection",
        "slow",
    ] {
        assert!(seen.iter().any(|s| s == kind), "no {kind} among 60 faults: {seen:?}");
    }
    let stats = h.stats().await;
    let slow = seen.iter().filter(|s| *s == "slow").count() as u64;
    assert_eq!(stats["mail_delivery"]["requests"], 60);
    assert_eq!(stats["mail_delivery"]["faults"], 60);
    assert_eq!(stats["mail_delivery"]["data_requests"], slow);
}

#[tokio::test]
async fn stats_count_requests_data_requests_and_faults() {
    let h = Harness::start(args(1, 50)).await;
    assert_eq!(
        h.stats().await["mail_delivery"],
        serde_json::json!({"requests": 0, "data_requests": 0, "faults": 0})
    );
    let d = ago(1);
    let (s, e) = (minute(d, "00:00"), minute(d, "23:59"));
    let params = [
        ("Action", "GetDeliveryLog"),
        ("StartDate", s.as_str()),
        ("EndDate", e.as_str()),
    ];
    assert_eq!(h.post_form(&params).await.status, 200);
    assert_eq!(h.post_form(&params).await.status, 200);
    assert_eq!(h.post_form_with_token(&params, None).await.status, 401);
    assert_eq!(h.post_form(&[("Action", "GetDeliveryLog")]).await.status, 400);
    assert_eq!(
        h.stats().await["mail_delivery"],
        serde_json::json!({"requests": 4, "data_requests": 2, "faults": 0})
    );
}

#[tokio::test]
async fn request_ids_are_unique_uuids() {
    let h = Harness::start(args(1, 50)).await;
    let mut ids = std::collections::HashSet::new();
    for _ in 0..5 {
        let r = h.post_form(&[("Action", "GetDeliveryLog")]).await;
        let id = r.header("x-fj-request-id").expect("header").to_string();
        assert_eq!(id.len(), 36);
        assert_eq!(id.matches('-').count(), 4);
        assert!(ids.insert(id));
    }
}

#[tokio::test]
async fn bad_options_are_refused() {
    let err = crate::start(SimArgs {
        fault_rate: 1.5,
        ..args(1, 1)
    })
    .await
    .expect_err("rate 1.5");
    assert!(err.to_string().contains("--fault-rate"), "{err}");
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("no/such/dir/truth.json");
    let err = crate::start(truth_args(1, 1, &missing))
        .await
        .expect_err("unwritable truth");
    assert!(err.to_string().contains("truth.json"), "{err}");
}
