//! Scripted faults and the request log as a client sees them: each fault on the wire (read over a raw
//! socket where an HTTP client would hide it), rule bookkeeping, and the log's fields.

use std::time::{Duration, Instant};

use chrono::{Days, Utc};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::{Harness, TOKEN, TRACKING_KEY, TRACKING_USER, args, reply};
use crate::data::fnv1a64;

/// Seed and rows per day of the simulator these tests start (`args(SEED, ROWS)`).
const SEED: u64 = 3;
const ROWS: u32 = 200;

/// `StartDate`/`EndDate` of a whole day at least `days_ago` days ago that has mail records in the
/// data of `args(SEED, ROWS)`: about one day in twelve has none, and a test that pages through a
/// day must not depend on today's date.
fn window(days_ago: u64) -> (String, String) {
    let today = Utc::now().date_naive();
    let d = (days_ago..days_ago + 30)
        .map(|n| today - Days::new(n))
        .find(|&d| !crate::mail_delivery::generate_day(SEED, d, ROWS).records.is_empty())
        .expect("a day with mail records within 30 days");
    let d = d.format("%Y-%m-%d");
    (format!("{d}T00:00"), format!("{d}T23:59"))
}

impl Harness {
    async fn script(&self, script: Value) -> (u16, Value) {
        let r = reply(
            self.client
                .post(self.url("/_sim/faults"))
                .body(script.to_string())
                .send()
                .await
                .expect("script request"),
        )
        .await;
        (r.status, serde_json::from_str(&r.body).expect("JSON answer"))
    }

    async fn json(&self, path: &str) -> Value {
        let r = reply(self.client.get(self.url(path)).send().await.expect("request")).await;
        assert_eq!(r.status, 200, "{}", r.body);
        serde_json::from_str(&r.body).expect("JSON answer")
    }

    /// The whole answer to a mail delivery request, head and body as sent, over a raw socket; also
    /// when the head was complete and when the connection ended.
    async fn raw_delivery(&self, form: &str) -> RawExchange {
        let mut s = TcpStream::connect(self.sim.addr()).await.expect("connect");
        let req = format!(
            "POST /mail-delivery/ HTTP/1.1\r\nHost: sim\r\nX-Auth-Token: {TOKEN}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
            form.len()
        );
        s.write_all(req.as_bytes()).await.expect("send");
        let started = Instant::now();
        let mut buf = Vec::new();
        let mut head_at = None;
        let mut chunk = [0u8; 8192];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if head_at.is_none() && buf.windows(4).any(|w| w == b"\r\n\r\n") {
                head_at = Some(started.elapsed());
            }
        }
        let split = buf.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head");
        RawExchange {
            head: String::from_utf8_lossy(&buf[..split]).to_string(),
            body: buf[split + 4..].to_vec(),
            head_at: head_at.expect("head seen"),
            closed_at: started.elapsed(),
        }
    }
}

struct RawExchange {
    head: String,
    body: Vec<u8>,
    head_at: Duration,
    closed_at: Duration,
}

impl RawExchange {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
        })
    }
}

fn form(start: &str, end: &str, max: &str, token: Option<&str>) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    s.extend_pairs([
        ("Action", "GetDeliveryLog"),
        ("StartDate", start),
        ("EndDate", end),
        ("MaxItems", max),
    ]);
    if let Some(t) = token {
        s.append_pair("NextToken", t);
    }
    s.finish()
}

/// The first page's NextToken (line breaks removed).
async fn first_token(h: &Harness, start: &str, end: &str) -> String {
    let r = h
        .post_form(&[
            ("Action", "GetDeliveryLog"),
            ("StartDate", start),
            ("EndDate", end),
            ("MaxItems", "5"),
        ])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let from = r
        .body
        .find("<NextToken>")
        .unwrap_or_else(|| panic!("no NextToken in {}", r.body))
        + "<NextToken>".len();
    let to = r.body.find("</NextToken>").expect("closed NextToken");
    r.body[from..to].replace('\n', "")
}

#[tokio::test]
async fn status_faults_carry_the_apis_error_body_and_retry_after() {
    let h = Harness::start(args(SEED, ROWS)).await;
    let (start, end) = window(2);
    let (status, answer) = h
        .script(json!({"rules": [
            {"api": "mail_delivery", "fault": {"kind": "status", "status": 503, "retry_after": 2}},
            {"api": "mail_delivery", "fault": {"kind": "status", "status": 429, "retry_after_date": 5}},
            {"api": "mail_delivery", "fault": {"kind": "status", "status": 502}},
        ]}))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["rules"].as_array().map(Vec::len), Some(3));
    let params = [
        ("Action", "GetDeliveryLog"),
        ("StartDate", start.as_str()),
        ("EndDate", end.as_str()),
    ];

    let r = h.post_form(&params).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("2"));
    assert!(
        r.body.contains("<Code>ServiceUnavailable</Code>") && r.body.contains("<Type>Receiver</Type>"),
        "{}",
        r.body
    );

    let before = std::time::SystemTime::now();
    let r = h.post_form(&params).await;
    assert_eq!(r.status, 429);
    assert!(r.body.contains("<Code>Throttling</Code>"), "{}", r.body);
    let at = httpdate::parse_http_date(r.header("retry-after").expect("Retry-After")).expect("an HTTP date");
    let ahead = at.duration_since(before).expect("in the future");
    // Five seconds after the request arrived, truncated to whole seconds.
    assert!(
        (Duration::from_secs(4)..Duration::from_millis(5500)).contains(&ahead),
        "{ahead:?}"
    );

    let r = h.post_form(&params).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.header("content-type"), Some("text/html"));
    assert!(r.body.contains("502 Bad Gateway"), "{}", r.body);

    assert_eq!(h.post_form(&params).await.status, 200, "every rule is used up");
    let rules = h.json("/_sim/faults").await;
    let fired: Vec<u64> = rules["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| r["fired"].as_u64().expect("fired"))
        .collect();
    assert_eq!(fired, [1, 1, 1]);
    assert_eq!(h.stats().await["mail_delivery"]["faults"], 3);
}

#[tokio::test]
async fn a_short_body_announces_more_than_it_sends_then_closes() {
    let h = Harness::start(args(SEED, ROWS)).await;
    let (start, end) = window(2);
    h.script(json!({"rules": [{"api": "mail_delivery", "fault": {"kind": "short_body"}}]}))
        .await;
    let x = h.raw_delivery(&form(&start, &end, "50", None)).await;
    assert!(x.head.starts_with("HTTP/1.1 200"), "{}", x.head);
    assert_eq!(x.header("transfer-encoding"), None, "{}", x.head);
    let announced: usize = x
        .header("content-length")
        .expect("Content-Length")
        .parse()
        .expect("a number");
    assert!(
        !x.body.is_empty() && x.body.len() < announced,
        "{} bytes sent of {announced} announced",
        x.body.len()
    );
    // The next request is whole.
    let x = h.raw_delivery(&form(&start, &end, "50", None)).await;
    assert!(String::from_utf8_lossy(&x.body).contains("</GetDeliveryLogResponse>"));
}

#[tokio::test]
async fn a_reset_breaks_the_chunked_body_off() {
    let h = Harness::start(args(SEED, ROWS)).await;
    let (start, end) = window(2);
    h.script(json!({"rules": [{"api": "mail_delivery", "fault": {"kind": "reset"}}]}))
        .await;
    let x = h.raw_delivery(&form(&start, &end, "50", None)).await;
    assert!(x.head.starts_with("HTTP/1.1 200"), "{}", x.head);
    assert_eq!(x.header("transfer-encoding"), Some("chunked"));
    let body = String::from_utf8_lossy(&x.body);
    assert!(!body.is_empty(), "part of the body is sent");
    assert!(
        !body.ends_with("0\r\n\r\n") && !body.contains("</GetDeliveryLogResponse>"),
        "the body must break off: {body}"
    );
}

#[tokio::test]
async fn a_stall_sends_the_head_then_nothing_for_a_while() {
    let h = Harness::start(args(SEED, ROWS)).await;
    let (start, end) = window(2);
    h.script(json!({"rules": [{"api": "mail_delivery", "fault": {"kind": "stall", "secs": 1}}]}))
        .await;
    let x = h.raw_delivery(&form(&start, &end, "50", None)).await;
    assert!(x.head.starts_with("HTTP/1.1 200"), "{}", x.head);
    assert!(x.head_at < Duration::from_millis(500), "head after {:?}", x.head_at);
    assert!(x.closed_at >= Duration::from_secs(1), "body after {:?}", x.closed_at);
    assert!(String::from_utf8_lossy(&x.body).contains("</GetDeliveryLogResponse>"));
}

#[tokio::test]
async fn a_rejected_token_gets_each_apis_own_400() {
    let h = Harness::start(args(SEED, ROWS)).await;
    let (start, end) = window(2);
    h.script(json!({"rules": [
        {"api": "mail_delivery", "fault": {"kind": "reject_token"}},
        {"api": "mail_tracking", "fault": {"kind": "reject_token"}},
    ]}))
    .await;
    // A first page is never a token request: the rule waits.
    let token = first_token(&h, &start, &end).await;
    let r = h
        .post_form(&[
            ("Action", "GetDeliveryLog"),
            ("StartDate", start.as_str()),
            ("EndDate", end.as_str()),
            ("MaxItems", "5"),
            ("NextToken", token.as_str()),
        ])
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    for part in [
        "<ErrorResponse>",
        "<Type>Sender</Type>",
        "<Code>InvalidParameterValue</Code>",
        "NextToken",
        "<RequestId>",
    ] {
        assert!(r.body.contains(part), "no {part} in {}", r.body);
    }

    let d = Utc::now().date_naive() - Days::new(1);
    let query = [
        ("type", "accepted_traffic"),
        ("start", &format!("{d}T00:00:00.000Z")),
        ("end", &format!("{d}T23:59:59.999Z")),
        ("limit", "5"),
        ("token", "not-even-a-real-token"),
    ];
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(query)
        .finish();
    let r = reply(
        h.client
            .get(h.url(&format!("/api/v1/log/mailtrackinglog?{query}")))
            .basic_auth(TRACKING_USER, Some(TRACKING_KEY))
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let v: Value = serde_json::from_str(&r.body).expect("JSON error");
    assert_eq!(v["code"], "InvalidParameter");
    assert!(v["message"].as_str().is_some_and(|m| m.contains("token")), "{v}");
    assert_eq!(
        h.json("/_sim/requests?api=mail_tracking").await["requests"][0]["fault"],
        "reject-token"
    );
}

#[tokio::test]
async fn the_request_log_tells_pages_apart_and_when_they_came() {
    let h = Harness::start(args(SEED, ROWS)).await;
    let (start, end) = window(2);
    h.script(
        json!({"rules": [{"api": "mail_delivery", "requests": "token", "params": {"StartDate": start},
                               "fault": {"kind": "status", "status": 500}}]}),
    )
    .await;
    let before = Utc::now().timestamp_millis();
    let token = first_token(&h, &start, &end).await;
    let next = form(&start, &end, "5", Some(&token));
    let x = h.raw_delivery(&next).await;
    assert!(x.head.starts_with("HTTP/1.1 500"), "{}", x.head);
    let x = h.raw_delivery(&next).await;
    assert!(x.head.starts_with("HTTP/1.1 200"), "{}", x.head);
    let after = Utc::now().timestamp_millis();

    let log = h.json("/_sim/requests?api=mail_delivery").await;
    let reqs = log["requests"].as_array().expect("requests");
    assert_eq!(reqs.len(), 3, "{log}");
    let hash = format!("{:016x}", fnv1a64(token.as_bytes()));
    let summary: Vec<(Value, Value, Value)> = reqs
        .iter()
        .map(|r| (r["token"].clone(), r["status"].clone(), r["fault"].clone()))
        .collect();
    assert_eq!(
        summary,
        [
            (Value::Null, json!(200), Value::Null),
            (json!(hash), json!(500), json!("status-500")),
            (json!(hash), json!(200), Value::Null),
        ]
    );
    let times: Vec<i64> = reqs.iter().map(|r| r["at_ms"].as_i64().expect("at_ms")).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    assert!(
        times[0] >= before && times[2] <= after,
        "{times:?} not in {before}..{after}"
    );
    assert_eq!(reqs[1]["params"]["StartDate"], start);
    assert!(
        reqs[1]["params"].get("NextToken").is_none(),
        "the token itself is not logged"
    );
    assert_eq!(reqs[0]["seq"].as_u64().map(|s| s + 1), reqs[1]["seq"].as_u64());
    assert_eq!(h.json("/_sim/requests?api=mail_tracking").await["requests"], json!([]));
    assert_eq!(
        h.json("/_sim/requests").await["requests"].as_array().map(Vec::len),
        Some(3)
    );
    let bad = reply(
        h.client
            .get(h.url("/_sim/requests?api=cdn"))
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("mail_delivery|mail_tracking"), "{}", bad.body);
}

#[tokio::test]
async fn bad_scripts_are_refused_and_delete_clears_the_rules() {
    let h = Harness::start(args(3, 50)).await;
    let (status, answer) = h
        .script(json!({"rules": [{"api": "mail_delivery", "fault": {"kind": "status", "status": 404}}]}))
        .await;
    assert_eq!(status, 400);
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("rule 0: status must be")),
        "{answer}"
    );
    let (status, _) = h
        .script(json!({"rules": [{"api": "mail_delivery", "times": 9, "fault": {"kind": "reset"}}]}))
        .await;
    assert_eq!(status, 200);
    let r = reply(h.client.delete(h.url("/_sim/faults")).send().await.expect("request")).await;
    assert_eq!(r.status, 200);
    assert_eq!(h.json("/_sim/faults").await, json!({"rules": []}));
}
