use std::time::Duration;

use chrono::{DateTime, Utc};
use etl_config::{DeliveryStatus, MailDeliveryConfig};
use etl_core::{ErrorClass, PayloadBody, PayloadSender, PlanRequest, Secret, Source};
use etl_http::{Client, HttpConfig, Redactor};
use tokio::sync::mpsc;

use super::MailDelivery;
use crate::test_server::scripted;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn source(url: &str, status: Option<DeliveryStatus>) -> MailDelivery {
    let cfg = MailDeliveryConfig {
        url: url.into(),
        token: Secret::new("tok-123"),
        status,
        max_items: 2,
        parallel_windows: 1,
    };
    let http = HttpConfig {
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(5),
        ..Default::default()
    };
    MailDelivery::new(cfg, Client::new(http, Redactor::new([Secret::new("tok-123")])).unwrap())
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
fn plans_whole_utc_days_with_inclusive_end_minute() {
    let s = source("http://127.0.0.1:1/", None);
    let plan = s
        .plan(&req(
            "2025-09-10T00:00:00Z",
            "2025-09-13T00:00:00Z",
            "2025-09-20T12:00:00Z",
        ))
        .unwrap();
    let ids: Vec<_> = plan.units.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "mail_delivery-2025-09-10",
            "mail_delivery-2025-09-11",
            "mail_delivery-2025-09-12"
        ]
    );
    let u = &plan.units[1];
    assert_eq!(u.params["StartDate"], "2025-09-11T00:00");
    assert_eq!(u.params["EndDate"], "2025-09-11T23:59");
    assert_eq!(u.window.start, t("2025-09-11T00:00:00Z"));
    assert_eq!(u.window.end, t("2025-09-12T00:00:00Z"));
    assert!(plan.units.iter().all(|u| !u.provisional));
    assert!(plan.notes.is_empty(), "{:?}", plan.notes);
}

#[test]
fn status_filter_is_part_of_the_unit_id() {
    let s = source("http://127.0.0.1:1/", Some(DeliveryStatus::Faild));
    let plan = s
        .plan(&req(
            "2025-09-10T00:00:00Z",
            "2025-09-11T00:00:00Z",
            "2025-09-20T12:00:00Z",
        ))
        .unwrap();
    assert_eq!(plan.units[0].id, "mail_delivery-faild-2025-09-10");
    assert_eq!(plan.units[0].params["Status"], "3");
}

#[test]
fn clamps_to_retention_and_marks_open_days_provisional() {
    let s = source("http://127.0.0.1:1/", None);
    // now = 2025-12-01 00:30; the oldest day the API serves is 2025-09-02 (90 days before).
    let plan = s
        .plan(&req(
            "2025-08-30T00:00:00Z",
            "2025-12-02T00:00:00Z",
            "2025-12-01T00:30:00Z",
        ))
        .unwrap();
    assert_eq!(plan.units.first().unwrap().id, "mail_delivery-2025-09-02");
    assert_eq!(plan.units.last().unwrap().id, "mail_delivery-2025-12-01");
    assert!(
        plan.notes
            .iter()
            .any(|n| n.contains("3 day(s) 2025-08-30..2025-09-01 skipped") && n.contains("90 days")),
        "{:?}",
        plan.notes
    );
    assert!(
        plan.notes.iter().any(|n| n.contains("end clamped to now")),
        "{:?}",
        plan.notes
    );
    let provisional: Vec<_> = plan
        .units
        .iter()
        .filter(|u| u.provisional)
        .map(|u| u.id.as_str())
        .collect();
    // Yesterday ended 30 minutes ago, inside the 1-hour settle lag: still provisional.
    assert_eq!(provisional, ["mail_delivery-2025-11-30", "mail_delivery-2025-12-01"]);
}

fn xml_response(status: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn page(logs: &[&str], token: Option<&str>) -> String {
    let mut s = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<GetDeliveryLogResponse>\n<GetDeliveryLogResult>\n<LogCount>{}</LogCount>\n",
        logs.len()
    );
    for l in logs {
        s += &format!("<Log>{l}</Log>\n");
    }
    if let Some(t) = token {
        s += &format!("<NextToken>{t}</NextToken>\n");
    }
    s + "</GetDeliveryLogResult>\n<ResponseMetadata><RequestId>r-1</RequestId></ResponseMetadata>\n</GetDeliveryLogResponse>\n"
}

async fn fetch_all(s: &MailDelivery) -> (Result<etl_core::FetchStats, etl_core::StageError>, Vec<String>) {
    let plan = s
        .plan(&req(
            "2025-09-11T00:00:00Z",
            "2025-09-12T00:00:00Z",
            "2025-09-20T00:00:00Z",
        ))
        .unwrap();
    let (tx, mut rx) = mpsc::channel(16);
    let res = s.fetch(&plan.units[0], PayloadSender::new(tx)).await;
    let mut pages = Vec::new();
    while let Ok(p) = rx.try_recv() {
        match p.body {
            PayloadBody::Bytes(b) => pages.push(String::from_utf8(b.to_vec()).unwrap()),
            PayloadBody::Chunks(_) => panic!("pages are sent whole"),
        }
    }
    (res, pages)
}

#[tokio::test]
async fn follows_a_line_wrapped_token_and_form_encodes_it() {
    let token = "rO0AB+/x\nYz==";
    let (url, seen) = scripted(vec![
        xml_response(
            "200 OK",
            &page(&["2025-09-11 00:00:01 sent 250 t1 a@x b@y ok"], Some(token)),
        ),
        xml_response("200 OK", &page(&["2025-09-11 23:59:59 sent 250 t2 a@x b@y ok"], None)),
    ])
    .await;
    let (res, pages) = fetch_all(&source(&url, None)).await;
    let stats = res.unwrap();
    assert_eq!(pages.len(), 2);
    assert_eq!(stats.payloads, 2);
    let reqs = seen.lock().unwrap();
    assert!(
        reqs[0].contains("Action=GetDeliveryLog&StartDate=2025-09-11T00%3A00&EndDate=2025-09-11T23%3A59&MaxItems=2"),
        "{}",
        reqs[0]
    );
    assert!(reqs[0].to_ascii_lowercase().contains("x-auth-token: tok-123"));
    assert!(!reqs[0].contains("NextToken"));
    // Line break removed, then + / = percent-encoded, and the same window sent again.
    assert!(
        reqs[1].contains("StartDate=2025-09-11T00%3A00&EndDate=2025-09-11T23%3A59"),
        "{}",
        reqs[1]
    );
    assert!(reqs[1].ends_with("&NextToken=rO0AB%2B%2FxYz%3D%3D"), "{}", reqs[1]);
}

#[tokio::test]
async fn vendor_errors_are_permanent_and_name_code_message_and_request_id() {
    let body = "<?xml version=\"1.0\"?><ErrorResponse><Error><Type>Sender</Type><Code>InvalidParameter</Code>\
                <Message>EndDate is invalid</Message></Error><RequestId>req-42</RequestId></ErrorResponse>";
    let (url, _) = scripted(vec![xml_response("400 Bad Request", body)]).await;
    let (res, pages) = fetch_all(&source(&url, None)).await;
    let err = res.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Permanent);
    let msg = err.to_string();
    assert!(
        msg.contains("HTTP 400") && msg.contains("InvalidParameter: EndDate is invalid") && msg.contains("req-42"),
        "{msg}"
    );
    assert!(!msg.contains("tok-123"));
    assert!(pages.is_empty());
    assert!(
        err.restart_requested().is_none(),
        "a 400 to a first page is no refused token"
    );
}

#[tokio::test]
async fn a_replayed_page_is_dropped_and_requested_again() {
    let first = page(&["2025-09-11 00:00:01 sent 250 t1 a@x b@y ok"], Some("TOKEN1"));
    let second = page(&["2025-09-11 00:00:02 sent 250 t2 a@x b@y ok"], Some("TOKEN2"));
    let replay = page(&["2025-09-11 00:00:02 sent 250 t2 a@x b@y ok"], Some("TOKEN1"));
    let last = page(&["2025-09-11 00:00:03 sent 250 t3 a@x b@y ok"], None);
    let (url, _) = scripted(vec![
        xml_response("200 OK", &first),
        xml_response("200 OK", &replay),
        xml_response("200 OK", &second),
        xml_response("200 OK", &last),
    ])
    .await;
    let (res, pages) = fetch_all(&source(&url, None)).await;
    res.unwrap();
    assert_eq!(pages.len(), 3, "the replayed page must not be forwarded");
    assert!(pages[1].contains("t2") && pages[2].contains("t3"));
}

#[tokio::test]
async fn endless_replays_fail_the_unit() {
    let first = page(&["2025-09-11 00:00:01 sent 250 t1 a@x b@y ok"], Some("TOKEN1"));
    let (url, _) = scripted(vec![xml_response("200 OK", &first); 5]).await;
    let (res, pages) = fetch_all(&source(&url, None)).await;
    let err = res.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Retryable);
    assert!(err.to_string().contains("already used in this unit"), "{err}");
    assert_eq!(pages.len(), 1);
}

#[tokio::test]
async fn a_vendor_message_echoing_the_token_is_redacted() {
    let body = "<ErrorResponse><Error><Code>AuthFailure</Code><Message>token tok-123 is not valid</Message>\
                </Error><RequestId>r</RequestId></ErrorResponse>";
    let (url, _) = scripted(vec![xml_response("401 Unauthorized", body)]).await;
    let (res, _) = fetch_all(&source(&url, None)).await;
    let msg = res.unwrap_err().to_string();
    assert!(msg.contains("token *** is not valid"), "{msg}");
    assert!(!msg.contains("tok-123"), "{msg}");
}

#[tokio::test]
async fn a_refused_next_token_asks_for_the_unit_to_restart() {
    let body = "<?xml version=\"1.0\"?><ErrorResponse><Error><Type>Sender</Type><Code>InvalidParameterValue</Code>\
                <Message>NextToken is not valid</Message></Error><RequestId>req-7</RequestId></ErrorResponse>";
    let (url, seen) = scripted(vec![
        xml_response(
            "200 OK",
            &page(&["2025-09-11 00:00:01 sent 250 t1 a@x b@y ok"], Some("TOKEN1")),
        ),
        xml_response("400 Bad Request", body),
    ])
    .await;
    let (res, pages) = fetch_all(&source(&url, None)).await;
    let err = res.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Retryable, "the runner gives up as retryable");
    let fetched = err.restart_requested().expect("a restart request");
    assert_eq!((fetched.requests, fetched.payloads), (2, 1));
    let msg = err.to_string();
    assert!(
        msg.contains("refused the NextToken sent for page 2")
            && msg.contains("HTTP 400 (InvalidParameterValue: NextToken is not valid; request id req-7)"),
        "{msg}"
    );
    assert_eq!(pages.len(), 1);
    assert!(seen.lock().unwrap()[1].ends_with("&NextToken=TOKEN1"));
}

#[tokio::test]
async fn a_500_to_a_token_request_is_retried_not_a_restart() {
    let body = "<ErrorResponse><Error><Type>Receiver</Type><Code>InternalError</Code><Message>busy</Message>\
                </Error><RequestId>r</RequestId></ErrorResponse>";
    let (url, _) = scripted(vec![
        xml_response(
            "200 OK",
            &page(&["2025-09-11 00:00:01 sent 250 t1 a@x b@y ok"], Some("TOKEN1")),
        ),
        xml_response("500 Internal Server Error", body),
        xml_response("200 OK", &page(&["2025-09-11 00:00:02 sent 250 t2 a@x b@y ok"], None)),
    ])
    .await;
    let (res, pages) = fetch_all(&source(&url, None)).await;
    let stats = res.unwrap();
    assert_eq!((stats.requests, stats.retries, stats.payloads), (3, 1, 2));
    assert_eq!(pages.len(), 2);
}

#[test]
fn parallel_windows_cut_the_day_into_whole_minutes_and_count_in_the_cost() {
    let mut s = source("http://127.0.0.1:1", None);
    s.cfg.parallel_windows = 4;
    let plan = s
        .plan(&PlanRequest {
            from: t("2025-09-10T00:00:00Z"),
            to: t("2025-09-11T00:00:00Z"),
            now: t("2025-09-12T06:00:00Z"),
            settle: Duration::from_secs(3600),
        })
        .unwrap();
    let unit = &plan.units[0];
    let windows: Vec<_> = s.windows(unit).unwrap().into_iter().map(|w| (w.start, w.end)).collect();
    let w = |a: &str, b: &str| (format!("2025-09-10T{a}"), format!("2025-09-10T{b}"));
    assert_eq!(
        windows,
        [
            w("00:00", "05:59"),
            w("06:00", "11:59"),
            w("12:00", "17:59"),
            w("18:00", "23:59")
        ]
    );
    assert_eq!(s.cost(unit).unwrap().requests, 4);
}
