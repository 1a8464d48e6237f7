use std::time::Duration;

use chrono::{DateTime, Utc};
use etl_config::{MailTrackingConfig, TrafficType};
use etl_core::{ErrorClass, PayloadBody, PayloadSender, PlanRequest, Secret, Source};
use etl_http::{Client, HttpConfig, Redactor};
use tokio::sync::mpsc;

use super::MailTracking;
use crate::test_server::scripted;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn source(url: &str, domains: &[&str]) -> MailTracking {
    let cfg = MailTrackingConfig {
        url: url.into(),
        user: "u1".into(),
        api_key: Secret::new("key-xyz"),
        traffic_types: vec![TrafficType::Accepted, TrafficType::Blocked],
        domains: domains.iter().map(|d| d.to_string()).collect(),
        direction: None,
        limit: 2,
        parallel_windows: 1,
    };
    let http = HttpConfig {
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(5),
        ..Default::default()
    };
    // The tests' units are of September 2025, fetched as if on the 13th.
    MailTracking::new(cfg, Client::new(http, Redactor::new([Secret::new("key-xyz")])).unwrap())
        .with_clock(|| t("2025-09-13T00:00:00Z"))
}

/// The plan of UTC 2025-09-11 (one unit per traffic type), made on the 13th.
fn plan_sep_11(s: &MailTracking) -> etl_core::Plan {
    s.plan(&req(
        "2025-09-11T00:00:00Z",
        "2025-09-12T00:00:00Z",
        "2025-09-13T00:00:00Z",
    ))
    .unwrap()
}

#[tokio::test]
async fn a_window_that_crossed_the_72_hours_before_its_request_fails_without_a_request() {
    let (url, seen) = scripted(vec![json_response("200 OK", r#"{"logs": []}"#)]).await;
    // Planned at 2025-09-13T00:00Z (the unit of the 11th starts 48 h earlier), fetched as if
    // its request were sent a day and a minute later.
    let s = source(url.trim_end_matches('/'), &[]).with_clock(|| t("2025-09-14T00:01:00Z"));
    let plan = plan_sep_11(&s);
    let (tx, _rx) = mpsc::channel(16);
    let err = s.fetch(&plan.units[0], PayloadSender::new(tx)).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Permanent);
    let msg = err.to_string();
    assert!(
        msg.contains("72 hours")
            && msg.contains("by the time it was to be requested")
            && msg.contains("2025-09-11T00:00:00.000Z"),
        "{msg}"
    );
    assert!(seen.lock().unwrap().is_empty(), "no request was sent");
}

fn req(from: &str, to: &str, now: &str) -> PlanRequest {
    PlanRequest {
        from: t(from),
        to: t(to),
        now: t(now),
        settle: Duration::from_secs(3600),
    }
}

#[test]
fn plans_a_day_per_traffic_type_with_millisecond_bounds() {
    let s = source("http://127.0.0.1:1", &[]);
    let plan = s
        .plan(&req(
            "2025-09-10T00:00:00Z",
            "2025-09-12T00:00:00Z",
            "2025-09-12T06:00:00Z",
        ))
        .unwrap();
    let ids: Vec<_> = plan.units.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "mail_tracking-accepted_traffic-2025-09-10",
            "mail_tracking-accepted_traffic-2025-09-11",
            "mail_tracking-blocked_traffic-2025-09-10",
            "mail_tracking-blocked_traffic-2025-09-11",
        ]
    );
    let u = &plan.units[1];
    assert_eq!(u.params["start"], "2025-09-11T00:00:00.000Z");
    assert_eq!(u.params["end"], "2025-09-11T23:59:59.999Z");
    assert_eq!(
        u.partitions,
        [("traffic_type".to_string(), "accepted_traffic".to_string())]
    );
    assert_eq!(u.stream(), "mail_tracking-accepted_traffic");
    assert!(!plan.units[0].provisional);
    let domains = source("http://127.0.0.1:1", &["a.example", "b.example"]);
    let plan = domains
        .plan(&req(
            "2025-09-11T00:00:00Z",
            "2025-09-12T00:00:00Z",
            "2025-09-12T06:00:00Z",
        ))
        .unwrap();
    assert_eq!(plan.units.len(), 4);
    assert_eq!(plan.units[1].id, "mail_tracking-accepted_traffic-b.example-2025-09-11");
    assert_eq!(plan.units[1].params["domain"], "b.example");
}

#[test]
fn a_range_beyond_72_hours_is_refused_before_any_request() {
    let s = source("http://127.0.0.1:1", &[]);
    // now 2025-09-12 06:00 -> the API serves from 2025-09-09 06:00; the 2025-09-09 unit would start earlier.
    let err = s
        .plan(&req(
            "2025-09-09T00:00:00Z",
            "2025-09-12T00:00:00Z",
            "2025-09-12T06:00:00Z",
        ))
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Permanent);
    let msg = err.to_string();
    assert!(
        msg.contains("72 hours") && msg.contains("2025-09-09T06:00:00.000Z") && msg.contains("--from 2025-09-10"),
        "{msg}"
    );
    assert_eq!(
        s.retention_start(t("2025-09-12T06:00:00Z")),
        Some(t("2025-09-09T06:00:00Z"))
    );
}

fn json_response(status: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn follows_next_token_with_basic_auth_and_both_bounds() {
    let (url, seen) = scripted(vec![
        json_response(
            "200 OK",
            r#"{"nextToken": "Lu2+X/Y==", "logs": [{"genTime": "2025-09-11T00:00:01Z"}]}"#,
        ),
        json_response("200 OK", r#"{"logs": []}"#),
    ])
    .await;
    let s = source(url.trim_end_matches('/'), &[]);
    let plan = plan_sep_11(&s);
    let (tx, mut rx) = mpsc::channel(16);
    let stats = s.fetch(&plan.units[0], PayloadSender::new(tx)).await.unwrap();
    assert_eq!(stats.payloads, 2);
    let mut pages = 0;
    while let Ok(p) = rx.try_recv() {
        assert!(matches!(p.body, PayloadBody::Bytes(_)));
        pages += 1;
    }
    assert_eq!(pages, 2);
    let reqs = seen.lock().unwrap();
    assert!(
        reqs[0].starts_with(
            "GET /api/v1/log/mailtrackinglog?type=accepted_traffic&start=2025-09-11T00%3A00%3A00.000Z&end=2025-09-11T23%3A59%3A59.999Z&limit=2 HTTP/1.1"
        ),
        "{}",
        reqs[0]
    );
    // Basic base64("u1:key-xyz")
    assert!(
        reqs[0]
            .to_ascii_lowercase()
            .contains("authorization: basic dte6a2v5lxh5eg=="),
        "{}",
        reqs[0]
    );
    assert!(reqs[1].contains("&token=Lu2%2BX%2FY%3D%3D HTTP/1.1"), "{}", reqs[1]);
}

#[tokio::test]
async fn pages_without_records_may_leave_logs_out_and_the_chain_goes_on() {
    let (url, seen) = scripted(vec![
        json_response("200 OK", r#"{"nextToken": "t2"}"#),
        json_response("200 OK", r#"{"nextToken": "t3", "logs": null}"#),
        json_response("200 OK", "{}"),
    ])
    .await;
    let s = source(url.trim_end_matches('/'), &[]);
    let (res, pages) = fetch_day(&s).await;
    assert_eq!(res.unwrap().payloads, 3);
    assert_eq!(pages, 3);
    let reqs = seen.lock().unwrap();
    assert!(reqs[1].contains("&token=t2 HTTP/1.1"), "{}", reqs[1]);
    assert!(reqs[2].contains("&token=t3 HTTP/1.1"), "{}", reqs[2]);
}

#[tokio::test]
async fn vendor_errors_name_code_and_message_and_hide_the_key() {
    let (url, _) = scripted(vec![json_response(
        "401 Unauthorized",
        r#"{"code": "Unauthorized", "message": "bad credentials"}"#,
    )])
    .await;
    let s = source(url.trim_end_matches('/'), &[]);
    let plan = plan_sep_11(&s);
    let (tx, _rx) = mpsc::channel(16);
    let err = s.fetch(&plan.units[0], PayloadSender::new(tx)).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Permanent);
    let msg = err.to_string();
    assert!(msg.contains("HTTP 401 (Unauthorized: bad credentials)"), "{msg}");
    assert!(!msg.contains("key-xyz"));
}

#[test]
fn domains_that_collide_as_unit_ids_are_refused() {
    for domains in [
        &["a.example", "a.example"][..],
        &["bücher.example", "bächer.example"][..],
    ] {
        let s = source("http://127.0.0.1:1", domains);
        let err = s
            .plan(&req(
                "2025-09-11T00:00:00Z",
                "2025-09-12T00:00:00Z",
                "2025-09-12T06:00:00Z",
            ))
            .unwrap_err();
        assert_eq!(err.class(), ErrorClass::Permanent);
        assert!(err.to_string().contains("same unit id"), "{err}");
    }
}

async fn fetch_day(s: &MailTracking) -> (Result<etl_core::FetchStats, etl_core::StageError>, usize) {
    let plan = plan_sep_11(s);
    let (tx, mut rx) = mpsc::channel(16);
    let res = s.fetch(&plan.units[0], PayloadSender::new(tx)).await;
    let mut pages = 0;
    while rx.try_recv().is_ok() {
        pages += 1;
    }
    (res, pages)
}

#[tokio::test]
async fn a_refused_token_asks_for_the_unit_to_restart() {
    let (url, seen) = scripted(vec![
        json_response(
            "200 OK",
            r#"{"nextToken": "T1", "logs": [{"genTime": "2025-09-11T00:00:01Z"}]}"#,
        ),
        json_response(
            "400 Bad Request",
            r#"{"code": "InvalidParameter", "message": "token is not valid: it has expired"}"#,
        ),
    ])
    .await;
    let (res, pages) = fetch_day(&source(url.trim_end_matches('/'), &[])).await;
    let err = res.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Retryable, "the runner gives up as retryable");
    let fetched = err.restart_requested().expect("a restart request");
    assert_eq!((fetched.requests, fetched.payloads), (2, 1));
    let msg = err.to_string();
    assert!(
        msg.contains("refused the token sent for page 2")
            && msg.contains("HTTP 400 (InvalidParameter: token is not valid: it has expired)"),
        "{msg}"
    );
    assert_eq!(pages, 1);
    assert!(seen.lock().unwrap()[1].contains("&token=T1 "));
}

#[tokio::test]
async fn a_400_to_a_first_page_is_permanent_not_a_restart() {
    let (url, _) = scripted(vec![json_response(
        "400 Bad Request",
        r#"{"code": "InvalidParameter", "message": "end must not be earlier than start"}"#,
    )])
    .await;
    let (res, _) = fetch_day(&source(url.trim_end_matches('/'), &[])).await;
    let err = res.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Permanent);
    assert!(err.restart_requested().is_none());
    assert!(err.to_string().contains("end must not be earlier"), "{err}");
}

#[tokio::test]
async fn a_429_holds_every_unit_until_retry_after() {
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    use crate::test_server::{reply, routed};

    // The first request is throttled for 1 s; otherwise each unit has three pages.
    let arrivals: Arc<Mutex<Vec<(Instant, u16)>>> = Arc::default();
    let log = Arc::clone(&arrivals);
    let n = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let server = routed(Arc::new(move |target: &str, _, _, _| {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let (status, headers, body) = if i == 0 {
            (
                429,
                vec![("Retry-After", "1".to_string())],
                r#"{"code": "TooManyRequests"}"#,
            )
        } else if target.contains("token=T2") {
            (200, vec![], r#"{"logs": []}"#)
        } else if target.contains("token=T1") {
            (200, vec![], r#"{"nextToken": "T2", "logs": []}"#)
        } else {
            (200, vec![], r#"{"nextToken": "T1", "logs": []}"#)
        };
        log.lock().unwrap().push((Instant::now(), status));
        reply(status, &headers, body.as_bytes())
    }))
    .await;
    let s = source(&server.base, &[]);
    let plan = s
        .plan(&req(
            "2025-09-10T00:00:00Z",
            "2025-09-12T00:00:00Z",
            "2025-09-13T00:00:00Z",
        ))
        .unwrap();
    // The second unit starts after the first was throttled: it must wait too.
    let fetch = |i: usize, after: Duration| {
        let (tx, rx) = mpsc::channel(16);
        let unit = &plan.units[i];
        let s = &s;
        async move {
            let _rx = rx;
            tokio::time::sleep(after).await;
            s.fetch(unit, PayloadSender::new(tx)).await
        }
    };
    let (a, b) = tokio::join!(fetch(0, Duration::ZERO), fetch(1, Duration::from_millis(300)));
    a.unwrap();
    b.unwrap();
    let arrivals = arrivals.lock().unwrap();
    assert_eq!(arrivals.len(), 7, "three pages per unit and one throttled request");
    let throttled = arrivals[0].0;
    // Nothing until the Retry-After has passed, whichever unit sends it (without the hold, the
    // second unit would send its three pages 300 ms after the 429).
    let during: Vec<_> = arrivals[1..]
        .iter()
        .map(|(t, _)| t.duration_since(throttled))
        .filter(|d| *d < Duration::from_secs(1))
        .collect();
    assert!(during.is_empty(), "requests during the hold: {during:?}");
}

#[test]
fn the_page_token_is_read_from_the_top_level_only() {
    use super::page_token;
    let page = br#"{"logs": [{"subject": "say \"nextToken\": \"no\" \\", "n": [1, {"nextToken": "inner"}]}],
        "nextToken": "Lu2X+/=="}"#;
    assert_eq!(page_token(page).unwrap().as_deref(), Some("Lu2X+/=="));
    let first = br#" {"nextToken":"a\u0062c","logs":[]} "#;
    assert_eq!(
        page_token(first).unwrap().as_deref(),
        Some("abc"),
        "escapes are resolved"
    );
    assert_eq!(page_token(br#"{"logs": []}"#).unwrap(), None);
    assert_eq!(page_token(br#"{"logs": [], "nextToken": null}"#).unwrap(), None);
    // A page without records may leave `logs` out or null, when `nextToken` is all it holds.
    assert_eq!(page_token(b"{}").unwrap(), None);
    assert_eq!(page_token(br#"{"logs": null}"#).unwrap(), None);
    assert_eq!(page_token(br#"{"nextToken": "t2"}"#).unwrap().as_deref(), Some("t2"));
    assert_eq!(
        page_token(br#"{"logs": [], "nextToken": ""}"#).unwrap(),
        None,
        "empty ends the unit"
    );
    for (bad, why) in [
        (&br#"{"logs": [{"a": "b"}], "nextToken": "x"#[..], "not closed"),
        (br#"{"logs": [{"a": "b"}"#, "not closed"),
        (br#"[{"logs": []}]"#, "not a JSON object"),
        (br#"{"code": "E", "message": "m"}"#, "no `logs`"),
        (br#"{"nextToken": "t2", "error": "busy"}"#, "no `logs`"),
        (br#"{"logs": 0}"#, "not an array"),
        (br#"{"logs": {}}"#, "not an array"),
        (br#"{"logs": [], "nextToken": 5}"#, "not a string"),
        (br#"{"logs": []} {"logs": []}"#, "content after"),
        (b"", "not a JSON object"),
    ] {
        let err = page_token(bad).unwrap_err();
        assert!(err.contains(why), "{}: {err}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn parallel_windows_cut_the_day_into_whole_milliseconds_and_count_in_the_cost() {
    let mut s = source("http://127.0.0.1:1", &[]);
    s.cfg.parallel_windows = 3;
    let plan = s
        .plan(&req(
            "2025-09-10T00:00:00Z",
            "2025-09-11T00:00:00Z",
            "2025-09-12T06:00:00Z",
        ))
        .unwrap();
    let unit = &plan.units[0];
    let windows: Vec<_> = s.windows(unit).unwrap().into_iter().map(|w| (w.start, w.end)).collect();
    let w = |a: &str, b: &str| (format!("2025-09-10T{a}Z"), format!("2025-09-10T{b}Z"));
    assert_eq!(
        windows,
        [
            w("00:00:00.000", "07:59:59.999"),
            w("08:00:00.000", "15:59:59.999"),
            w("16:00:00.000", "23:59:59.999")
        ]
    );
    assert_eq!(s.cost(unit).unwrap().requests, 3);
}
