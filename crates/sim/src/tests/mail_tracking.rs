//! The mail tracking log API as a client sees it: Basic auth, validation, the 72-hour and five-minute
//! window rules, inclusive millisecond bounds, paging and tokens, filters, the JSON's irregularities,
//! gzip, the truth file (checked by recomputing the fingerprint contract from the served JSON), faults and
//! counters.

use std::collections::HashSet;
use std::io::Read as _;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Days, NaiveDate, Utc};
use serde_json::Value;

use super::{Harness, TRACKING_KEY, TRACKING_USER, args};
use crate::SimArgs;
use crate::data::fnv1a64;
use crate::mail_tracking::{
    DELIVERY_ACTIONS, FINGERPRINT_DEFINITION, MANAGED_DOMAINS, MAX_LIMIT, TrackingRecord, Traffic, TrafficTruth,
    generate_day, render_record,
};

const PATH: &str = "/api/v1/log/mailtrackinglog";
const FIVE_MIN_MS: i64 = 5 * 60_000;

fn today() -> NaiveDate {
    Utc::now().date_naive()
}

fn ago(days: u64) -> NaiveDate {
    today().checked_sub_days(Days::new(days)).expect("date in range")
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// `ms` as `yyyy-mm-ddThh:mm:ss.mmmZ`.
fn iso_ms(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .expect("time in range")
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

fn day_start(d: NaiveDate) -> i64 {
    d.and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp_millis()
}

/// The `start`/`end` of a whole UTC day, as FORMATS.md tells a client to ask for it.
fn whole_day(d: NaiveDate) -> (String, String) {
    let s = day_start(d);
    (iso_ms(s), iso_ms(s + 86_400_000 - 1))
}

/// A seed whose last two full days have records of both types, so the tests never meet an empty day.
fn busy_seed(rows: u32) -> u64 {
    (1..200)
        .find(|&seed| {
            [ago(1), ago(2)].iter().all(|&d| {
                Traffic::ALL
                    .iter()
                    .all(|&t| generate_day(seed, d, t, rows).records.len() >= 20)
            })
        })
        .expect("a seed with busy days")
}

fn json_of(r: &TrackingRecord) -> Value {
    let mut s = String::new();
    render_record(&mut s, r);
    serde_json::from_str(&s).expect("generated record is JSON")
}

/// The generated records of `days` and `traffic` whose `genTime` is in `[lo, hi]`, as served JSON.
fn expected(seed: u64, rows: u32, traffic: Traffic, days: &[NaiveDate], lo: i64, hi: i64) -> Vec<Value> {
    days.iter()
        .flat_map(|&d| generate_day(seed, d, traffic, rows).records)
        .filter(|r| (lo..=hi).contains(&r.gen_ms))
        .map(|r| json_of(&r))
        .collect()
}

/// `genTime` of a served record, in Unix ms.
fn gen_ms(v: &Value) -> i64 {
    let s = v["genTime"].as_str().expect("genTime string");
    DateTime::parse_from_rfc3339(s)
        .expect("genTime parses")
        .timestamp_millis()
}

/// A response, body as bytes (it may be gzip).
#[derive(Debug)]
struct Raw {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("UTF-8 body")
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    fn logs(&self) -> Vec<Value> {
        self.json()["logs"].as_array().expect("logs array").clone()
    }

    fn next_token(&self) -> Option<String> {
        self.json()
            .get("nextToken")
            .map(|t| t.as_str().expect("nextToken string").to_string())
    }
}

enum Auth<'a> {
    Basic(&'a str, &'a str),
    Header(&'a str),
    None,
}

struct Tracking {
    h: Harness,
    /// Never decompresses, whatever features reqwest has in the workspace, so the tests see the wire.
    client: reqwest::Client,
}

impl Tracking {
    async fn start(args: SimArgs) -> Self {
        let h = Harness::start(args).await;
        let client = reqwest::Client::builder()
            .no_proxy()
            .no_gzip()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("test HTTP client builds");
        Self { h, client }
    }

    fn url(&self, params: &[(&str, &str)]) -> String {
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        format!("{}?{query}", self.h.url(PATH))
    }

    async fn send(&self, req: reqwest::RequestBuilder, auth: Auth<'_>, gzip: bool) -> Raw {
        let req = match auth {
            Auth::Basic(u, k) => req.basic_auth(u, Some(k)),
            Auth::Header(v) => req.header("Authorization", v),
            Auth::None => req,
        };
        let req = if gzip {
            req.header("Accept-Encoding", "gzip")
        } else {
            req
        };
        let resp = req.send().await.expect("request reaches the simulator");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.expect("complete body").to_vec();
        Raw { status, headers, body }
    }

    async fn get(&self, params: &[(&str, &str)]) -> Raw {
        let req = self.client.get(self.url(params));
        self.send(req, Auth::Basic(TRACKING_USER, TRACKING_KEY), false).await
    }

    async fn get_auth(&self, params: &[(&str, &str)], auth: Auth<'_>) -> Raw {
        let req = self.client.get(self.url(params));
        self.send(req, auth, false).await
    }

    async fn get_gzip(&self, params: &[(&str, &str)]) -> Raw {
        let req = self.client.get(self.url(params));
        self.send(req, Auth::Basic(TRACKING_USER, TRACKING_KEY), true).await
    }

    /// A query string exactly as given (not encoded by the test).
    async fn get_raw_query(&self, query: &str) -> Raw {
        let req = self.client.get(format!("{}?{query}", self.h.url(PATH)));
        self.send(req, Auth::Basic(TRACKING_USER, TRACKING_KEY), false).await
    }

    /// Walks every page of a query; returns the records and the tokens seen.
    async fn fetch_all(&self, params: &[(&str, &str)]) -> (Vec<Value>, Vec<String>) {
        let limit: usize = params
            .iter()
            .find(|(k, _)| *k == "limit")
            .map_or(500, |(_, v)| v.parse().expect("numeric limit"));
        let mut all = Vec::new();
        let mut tokens: Vec<String> = Vec::new();
        loop {
            let mut p: Vec<(&str, &str)> = params.to_vec();
            if let Some(t) = tokens.last() {
                p.push(("token", t));
            }
            let r = self.get(&p).await;
            assert_eq!(r.status, 200, "{}", r.text());
            let logs = r.logs();
            assert!(logs.len() <= limit, "{} records in a page of {limit}", logs.len());
            all.extend(logs);
            match r.next_token() {
                Some(t) => {
                    assert!(tokens.len() < 10_000, "pagination does not end");
                    assert!(!tokens.contains(&t), "a token came back twice");
                    tokens.push(t);
                }
                None => return (all, tokens),
            }
        }
    }
}

fn assert_error(r: &Raw, status: u16, code: &str, mentions: &str) {
    assert_eq!(r.status, status, "expected {status} {code}, got: {}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json;charset=UTF-8"));
    assert_eq!(r.header("content-encoding"), None);
    let v = r.json();
    assert_eq!(v["code"], code, "{v}");
    let message = v["message"].as_str().expect("message string");
    assert!(
        message.contains(mentions),
        "message {message:?} does not mention {mentions:?}"
    );
    assert_eq!(v.as_object().map(|o| o.len()), Some(2), "only code and message: {v}");
}

// -------------------------------------------------------------------------------------------------------
// The fingerprint contract, recomputed from served JSON only
// -------------------------------------------------------------------------------------------------------

fn canonical_from_json(v: &Value) -> String {
    let o = v.as_object().expect("record object");
    let time = |k: &str| match o.get(k) {
        Some(t) => DateTime::parse_from_rfc3339(t.as_str().expect("time string"))
            .expect("RFC 3339 time")
            .timestamp_micros()
            .to_string(),
        None => "-".to_string(),
    };
    let text = |k: &str| {
        o.get(k)
            .map_or("-".to_string(), |s| s.as_str().expect("string").to_string())
    };
    let list = |v: Option<&Value>, each: &dyn Fn(&Value) -> String| match v.and_then(Value::as_array) {
        Some(items) if !items.is_empty() => items.iter().map(each).collect::<Vec<_>>().join("\u{1e}"),
        _ => "-".to_string(),
    };
    let plain = |s: &Value| s.as_str().expect("string item").to_string();
    let attachment = |a: &Value| {
        format!(
            "{}\u{1d}{}",
            a["fileName"].as_str().expect("fileName"),
            a["sha256"].as_str().expect("sha256")
        )
    };
    [
        time("genTime"),
        time("timestamp"),
        time("deliveryTime"),
        text("sender"),
        text("headerFrom"),
        text("recipient"),
        list(o.get("headerTo"), &plain),
        text("subject"),
        text("senderIP"),
        text("deliveredTo"),
        text("mailID"),
        text("direction"),
        text("messageID"),
        o["size"].as_u64().expect("integer size").to_string(),
        text("action"),
        text("reason"),
        list(o.get("attachments"), &attachment),
        list(o.get("embeddedUrls").or_else(|| o.get("embeddedUrl")), &plain),
        text("tlsInfo"),
        text("details"),
    ]
    .join("\u{1f}")
}

fn truth_of_json(records: &[Value]) -> (u64, String) {
    let fp = records.iter().fold(0u64, |acc, r| {
        acc.wrapping_add(fnv1a64(canonical_from_json(r).as_bytes()))
    });
    (records.len() as u64, format!("{fp:016x}"))
}

// -------------------------------------------------------------------------------------------------------
// Tests
// -------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn requests_need_basic_auth_with_the_configured_user_and_key() {
    let t = Tracking::start(args(1, 50)).await;
    let (s, e) = whole_day(ago(1));
    let params = [("type", "accepted_traffic"), ("start", s.as_str()), ("end", e.as_str())];
    let refused = [
        t.get_auth(&params, Auth::None).await,
        t.get_auth(&params, Auth::Basic(TRACKING_USER, "wrong-key")).await,
        t.get_auth(&params, Auth::Basic("someone", TRACKING_KEY)).await,
        t.get_auth(&params, Auth::Header(&format!("Bearer {TRACKING_KEY}")))
            .await,
        t.get_auth(&params, Auth::Header("Basic not*base64")).await,
        t.get_auth(
            &params,
            Auth::Header(&format!(
                "Basic {}",
                STANDARD.encode(format!("{TRACKING_USER}{TRACKING_KEY}"))
            )),
        )
        .await,
    ];
    for r in &refused {
        assert_error(r, 401, "Unauthorized", "");
        assert!(
            r.header("www-authenticate").is_some_and(|v| v.starts_with("Basic ")),
            "401 without a Basic challenge"
        );
        assert!(
            !r.text().contains(TRACKING_KEY),
            "the API key must not leak into errors"
        );
    }
    assert!(
        refused[0].json()["message"]
            .as_str()
            .is_some_and(|m| m.contains("Authorization"))
    );
    // The scheme name is case-insensitive.
    let lower = format!("basic {}", STANDARD.encode(format!("{TRACKING_USER}:{TRACKING_KEY}")));
    assert_eq!(t.get_auth(&params, Auth::Header(&lower)).await.status, 200);
    assert_eq!(t.get(&params).await.status, 200);
}

/// (query parameters, expected `code`, what the `message` must mention)
type Case<'a> = (Vec<(&'a str, &'a str)>, &'a str, &'a str);

#[tokio::test]
async fn invalid_parameters_are_refused_naming_the_parameter() {
    let t = Tracking::start(args(1, 50)).await;
    let now = now_ms();
    let (ds, de) = whole_day(ago(1));
    let too_old = iso_ms(now - 72 * 3_600_000 - 60_000);
    let recent = iso_ms(now - 71 * 3_600_000);
    let past_72h = iso_ms(now - 71 * 3_600_000 + 72 * 3_600_000 + 1000);
    let at_72h = iso_ms(now - 71 * 3_600_000 + 72 * 3_600_000);
    let end_too_old = iso_ms(now - 72 * 3_600_000 + 60_000);
    let one_sec_before = iso_ms(day_start(ago(1)) - 1000);
    let acc = ("type", "accepted_traffic");
    let cases: Vec<Case> = vec![
        (vec![("start", &ds), ("end", &de)], "MissingParameter", "type"),
        (
            vec![("type", "all"), ("start", &ds), ("end", &de)],
            "InvalidParameter",
            "type",
        ),
        (
            vec![("type", ""), ("start", &ds), ("end", &de)],
            "InvalidParameter",
            "type",
        ),
        (
            vec![acc, ("type", "blocked_traffic"), ("start", &ds), ("end", &de)],
            "InvalidParameter",
            "one type at a time",
        ),
        (vec![acc, acc, ("start", &ds), ("end", &de)], "InvalidParameter", "type"),
        (vec![acc, ("direction", "both")], "InvalidParameter", "direction"),
        (vec![acc, ("domain", "")], "InvalidParameter", "domain"),
        (vec![acc, ("start", "2016-07-22T01:51:31")], "InvalidParameter", "start"),
        (
            vec![acc, ("start", "2016-07-22 01:51:31Z")],
            "InvalidParameter",
            "start",
        ),
        (
            vec![acc, ("end", "2016-07-22T01:51:31+00:00")],
            "InvalidParameter",
            "end",
        ),
        (vec![acc, ("end", "2016-07-22T01:51:31.01Z")], "InvalidParameter", "end"),
        (vec![acc, ("end", "1469152291")], "InvalidParameter", "end"),
        (
            vec![acc, ("start", &de), ("end", &ds)],
            "InvalidParameter",
            "earlier than start",
        ),
        (vec![acc, ("start", &too_old)], "InvalidParameter", "72 hours"),
        (
            vec![acc, ("start", &too_old), ("end", &recent)],
            "InvalidParameter",
            "72 hours",
        ),
        (vec![acc, ("end", &end_too_old)], "InvalidParameter", "72 hours"),
        (
            vec![acc, ("start", &recent), ("end", &past_72h)],
            "InvalidParameter",
            "longer than 72 hours",
        ),
        (vec![acc, ("limit", "0")], "InvalidParameter", "limit"),
        (vec![acc, ("limit", "-5")], "InvalidParameter", "limit"),
        (vec![acc, ("limit", "5001")], "InvalidParameter", "limit"),
        (vec![acc, ("limit", "ten")], "InvalidParameter", "limit"),
        (vec![acc, ("token", "abc")], "InvalidParameter", "token"),
        (vec![acc, ("startTime", &ds)], "InvalidParameter", "startTime"),
    ];
    for (params, code, mentions) in &cases {
        let r = t.get(params).await;
        assert_error(&r, 400, code, mentions);
    }

    // The boundaries themselves are valid: a whole day, a window of exactly 72 hours, a start just
    // inside the 72 hours, the largest page, a one-millisecond window, end one second before start's day.
    let max = MAX_LIMIT.to_string();
    for params in [
        vec![
            acc,
            ("start", ds.as_str()),
            ("end", de.as_str()),
            ("limit", max.as_str()),
        ],
        vec![acc, ("start", recent.as_str()), ("end", at_72h.as_str())],
        vec![acc, ("start", ds.as_str()), ("end", ds.as_str()), ("limit", "1")],
        vec![("type", "blocked_traffic"), ("end", one_sec_before.as_str())],
        vec![acc, ("direction", "in"), ("domain", "example.com")],
    ] {
        let r = t.get(&params).await;
        assert_eq!(r.status, 200, "{params:?}: {}", r.text());
    }
    let post = t
        .client
        .post(t.url(&[acc]))
        .basic_auth(TRACKING_USER, Some(TRACKING_KEY));
    assert_error(&t.send(post, Auth::None, false).await, 405, "MethodNotAllowed", "GET");
}

#[tokio::test]
async fn paging_through_a_day_yields_the_generated_day_and_its_truth() {
    let rows = 300;
    let seed = busy_seed(rows);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("truth.json");
    let t = Tracking::start(SimArgs {
        truth: Some(path.clone()),
        ..args(seed, rows)
    })
    .await;
    let truth: Value = serde_json::from_slice(&std::fs::read(&path).expect("truth file")).expect("JSON");
    let mt = &truth["mail_tracking"];
    assert_eq!(mt["fingerprint_definition"], FINGERPRINT_DEFINITION);
    let days = mt["days"].as_object().expect("days");
    let keys: Vec<String> = days.keys().cloned().collect();
    let want: Vec<String> = (1..=3).rev().map(|b| ago(b).format("%Y-%m-%d").to_string()).collect();
    assert_eq!(keys, want, "the three full days before today");
    for (key, entry) in days {
        let d = NaiveDate::parse_from_str(key, "%Y-%m-%d").expect("day key");
        for traffic in Traffic::ALL {
            let tt = TrafficTruth::of(&generate_day(seed, d, traffic, rows).records);
            assert_eq!(entry[traffic.param()]["rows"], tt.rows, "{key} {}", traffic.param());
            assert_eq!(
                entry[traffic.param()]["fingerprint"],
                format!("{:016x}", tt.fingerprint)
            );
        }
    }

    for d in [ago(2), ago(1)] {
        let key = d.format("%Y-%m-%d").to_string();
        let (s, e) = whole_day(d);
        for traffic in Traffic::ALL {
            let (got, tokens) = t
                .fetch_all(&[("type", traffic.param()), ("start", &s), ("end", &e), ("limit", "37")])
                .await;
            let want = expected(seed, rows, traffic, &[d], i64::MIN, i64::MAX);
            assert_eq!(got.len(), want.len(), "{key} {}", traffic.param());
            assert_eq!(got, want, "the pages together are the day's records in genTime order");
            assert_eq!(
                tokens.len(),
                want.len().div_ceil(37) - 1,
                "one token per page but the last"
            );
            let (n, fp) = truth_of_json(&got);
            let entry = &days[&key][traffic.param()];
            assert_eq!(entry["rows"], n, "{key} {}", traffic.param());
            assert_eq!(
                entry["fingerprint"],
                fp,
                "{key} {}: fingerprint from the served JSON",
                traffic.param()
            );
            for tok in &tokens {
                assert!(tok.contains('+') && tok.contains('/') && tok.ends_with("=="), "{tok}");
            }
            assert_eq!(tokens.iter().collect::<HashSet<_>>().len(), tokens.len());
        }
    }
}

#[tokio::test]
async fn a_token_is_bound_to_its_query_and_must_be_url_encoded() {
    let rows = 300;
    let seed = busy_seed(rows);
    let t = Tracking::start(args(seed, rows)).await;
    let d = ago(1);
    let (s, e) = whole_day(d);
    let base = [("type", "accepted_traffic"), ("start", s.as_str()), ("end", e.as_str())];
    let first = t.get(&[&base[..], &[("limit", "10")]].concat()).await;
    let token = first.next_token().expect("more than 10 records");
    let want = expected(seed, rows, Traffic::Accepted, &[d], i64::MIN, i64::MAX);
    assert_eq!(first.logs(), want[..10]);

    // The limit may change between pages; the token keeps the position.
    let next = t
        .get(&[&base[..], &[("limit", "5"), ("token", token.as_str())]].concat())
        .await;
    assert_eq!(next.status, 200, "{}", next.text());
    assert_eq!(next.logs(), want[10..15]);

    let (later, other_end) = (iso_ms(day_start(d) + 1), iso_ms(day_start(d) + 86_400_000 - 2));
    for changed in [
        vec![("type", "blocked_traffic"), ("start", s.as_str()), ("end", e.as_str())],
        vec![
            ("type", "accepted_traffic"),
            ("start", later.as_str()),
            ("end", e.as_str()),
        ],
        vec![
            ("type", "accepted_traffic"),
            ("start", s.as_str()),
            ("end", other_end.as_str()),
        ],
        vec![("type", "accepted_traffic"), ("start", s.as_str())],
        [&base[..], &[("domain", "example.com")]].concat(),
        [&base[..], &[("direction", "in")]].concat(),
    ] {
        let r = t.get(&[&changed[..], &[("token", token.as_str())]].concat()).await;
        assert_error(&r, 400, "InvalidParameter", "token");
    }
    // An equal instant written another way is the same query.
    let s_seconds = format!("{}Z", &s[..19]);
    let same = t
        .get(&[
            ("type", "accepted_traffic"),
            ("start", &s_seconds),
            ("end", &e),
            ("token", &token),
        ])
        .await;
    assert_eq!(same.status, 200, "{}", same.text());

    let mut bytes = STANDARD.decode(&token).expect("base64 token");
    bytes[30] ^= 0x40;
    let damaged = STANDARD.encode(&bytes);
    let r = t.get(&[&base[..], &[("token", damaged.as_str())]].concat()).await;
    assert_error(&r, 400, "InvalidParameter", "not issued");
    let truncated = &token[..token.len() - 4];
    assert_error(
        &t.get(&[&base[..], &[("token", truncated)]].concat()).await,
        400,
        "InvalidParameter",
        "token",
    );
    // A client that does not URL-encode the token: '+' arrives as a space.
    let raw = format!("type=accepted_traffic&start={s}&end={e}&token={token}");
    assert_error(&t.get_raw_query(&raw).await, 400, "InvalidParameter", "URL-encode");
}

#[tokio::test]
async fn missing_bounds_default_to_five_minutes() {
    let rows = 3000;
    let seed = busy_seed(rows);
    let t = Tracking::start(args(seed, rows)).await;
    let d = ago(1);
    let day = generate_day(seed, d, Traffic::Accepted, rows).records;
    let noon = day[day.len() / 2].gen_ms;
    let anchor = iso_ms(noon);

    let only_start = t.fetch_all(&[("type", "accepted_traffic"), ("start", &anchor)]).await.0;
    let want = expected(seed, rows, Traffic::Accepted, &[d], noon, noon + FIVE_MIN_MS);
    assert!(want.len() >= 2, "a busy five minutes");
    assert_eq!(only_start, want, "only start: [start, start + 5 min]");

    let only_end = t.fetch_all(&[("type", "accepted_traffic"), ("end", &anchor)]).await.0;
    let want = expected(seed, rows, Traffic::Accepted, &[d], noon - FIVE_MIN_MS, noon);
    assert!(want.len() >= 2, "a busy five minutes");
    assert_eq!(only_end, want, "only end: [end - 5 min, end]");

    // Neither: the five minutes before "now", which the test can only bracket.
    let before = now_ms();
    let neither = t.fetch_all(&[("type", "accepted_traffic"), ("limit", "5000")]).await.0;
    let after = now_ms();
    let candidates = expected(
        seed,
        rows,
        Traffic::Accepted,
        &[ago(1), ago(0)],
        before - FIVE_MIN_MS,
        after,
    );
    let certain = expected(
        seed,
        rows,
        Traffic::Accepted,
        &[ago(1), ago(0)],
        after - FIVE_MIN_MS,
        before,
    );
    for r in &neither {
        assert!(
            (before - FIVE_MIN_MS..=after).contains(&gen_ms(r)),
            "{} is outside the last five minutes",
            r["genTime"]
        );
    }
    for r in &certain {
        assert!(
            neither.contains(r),
            "{} should be in the last five minutes",
            r["genTime"]
        );
    }
    if let Some(first) = neither.first() {
        let at = candidates
            .iter()
            .position(|c| c == first)
            .expect("served record is generated");
        assert_eq!(
            neither,
            candidates[at..at + neither.len()],
            "a contiguous run, in order"
        );
    }
}

#[tokio::test]
async fn window_bounds_are_inclusive_to_the_millisecond() {
    let rows = 300;
    let seed = busy_seed(rows);
    let t = Tracking::start(args(seed, rows)).await;
    let d = ago(1);
    let day = generate_day(seed, d, Traffic::Blocked, rows).records;
    let get_all = |s: String, e: String| {
        let t = &t;
        async move {
            t.fetch_all(&[
                ("type", "blocked_traffic"),
                ("start", &s),
                ("end", &e),
                ("limit", "5000"),
            ])
            .await
            .0
        }
    };

    // A record stamped with a non-zero millisecond: a window of exactly that millisecond holds it.
    let r = day
        .iter()
        .find(|r| r.style.millis && r.gen_ms % 1000 != 0)
        .expect("a record with milliseconds");
    let exact = get_all(iso_ms(r.gen_ms), iso_ms(r.gen_ms)).await;
    let same_ms: Vec<Value> = day.iter().filter(|x| x.gen_ms == r.gen_ms).map(json_of).collect();
    assert_eq!(exact, same_ms);
    assert!(exact.contains(&json_of(r)));
    let after = get_all(iso_ms(r.gen_ms + 1), iso_ms(r.gen_ms + 3_600_000)).await;
    assert!(after.iter().all(|v| gen_ms(v) > r.gen_ms));
    let before = get_all(iso_ms(r.gen_ms - 3_600_000), iso_ms(r.gen_ms - 1)).await;
    assert!(before.iter().all(|v| gen_ms(v) < r.gen_ms));

    // The whole day by the FORMATS.md recipe: both midnight records and the one at 23:59:59.999.
    let (s, e) = whole_day(d);
    let full = get_all(s.clone(), e).await;
    assert_eq!(full.len(), day.len());
    let date = d.format("%Y-%m-%d").to_string();
    assert_eq!(full[0]["genTime"], format!("{date}T00:00:00Z"));
    assert_eq!(full[1]["genTime"], format!("{date}T00:00:00.000Z"));
    assert_eq!(full[full.len() - 1]["genTime"], format!("{date}T23:59:59.999Z"));
    // To the second only, the end excludes the last second's later milliseconds.
    let to_second = get_all(format!("{date}T00:00:00Z"), format!("{date}T23:59:59Z")).await;
    let last_second = day_start(d) + 86_399_000;
    assert_eq!(to_second.len(), day.iter().filter(|r| r.gen_ms <= last_second).count());
    assert!(to_second.len() < full.len());
    // The next day's midnight is not part of this day.
    let next = get_all(iso_ms(day_start(ago(0))), iso_ms(day_start(ago(0)))).await;
    assert!(
        next.iter()
            .all(|v| v["genTime"].as_str().is_some_and(|g| !g.starts_with(&date)))
    );
}

#[tokio::test]
async fn records_later_than_now_are_not_served() {
    let rows = 2000;
    let seed = busy_seed(rows);
    let t = Tracking::start(args(seed, rows)).await;
    let (s, e) = whole_day(ago(0));
    let before = now_ms();
    let got = t
        .fetch_all(&[
            ("type", "accepted_traffic"),
            ("start", &s),
            ("end", &e),
            ("limit", "5000"),
        ])
        .await
        .0;
    let after = now_ms();
    let today = generate_day(seed, ago(0), Traffic::Accepted, rows).records;
    let at_least = today.iter().filter(|r| r.gen_ms <= before).count();
    let at_most = today.iter().filter(|r| r.gen_ms <= after).count();
    assert!(
        (at_least..=at_most).contains(&got.len()),
        "{} records of today",
        got.len()
    );
    let want: Vec<Value> = today[..got.len()].iter().map(json_of).collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn records_follow_the_presence_rules_and_vary_like_the_real_service() {
    let rows = 1500;
    let seed = busy_seed(rows);
    let t = Tracking::start(args(seed, rows)).await;
    let mut raw_bodies = String::new();
    let mut seen = HashSet::new();
    let mut total = 0;
    let listed: HashSet<&str> = [
        "genTime",
        "timestamp",
        "deliveryTime",
        "sender",
        "direction",
        "messageID",
        "subject",
        "size",
        "mailID",
        "recipient",
        "action",
        "tlsInfo",
        "headerFrom",
        "headerTo",
        "senderIP",
        "deliveredTo",
        "attachments",
        "embeddedUrls",
        "embeddedUrl",
        "details",
        "reason",
    ]
    .into();
    let mut unlisted = 0;
    for d in [ago(2), ago(1)] {
        let (s, e) = whole_day(d);
        for traffic in Traffic::ALL {
            let mut token: Option<String> = None;
            loop {
                let mut p = vec![("type", traffic.param()), ("start", &s), ("end", &e), ("limit", "5000")];
                if let Some(tok) = &token {
                    p.push(("token", tok));
                }
                let r = t.get(&p).await;
                assert_eq!(r.status, 200, "{}", r.text());
                raw_bodies.push_str(r.text());
                for v in r.logs() {
                    total += 1;
                    let o = v.as_object().expect("object");
                    assert!(o.values().all(|x| !x.is_null()), "null in {v}");
                    let action = o["action"].as_str().expect("action");
                    let delivers = DELIVERY_ACTIONS.contains(&action);
                    assert_eq!(o.contains_key("deliveryTime"), delivers, "{v}");
                    match traffic {
                        Traffic::Accepted => {
                            assert_eq!(o.contains_key("details"), delivers, "{v}");
                            assert!(!o.contains_key("reason"), "{v}");
                        }
                        Traffic::Blocked => {
                            assert!(["Blocked", "Quarantined", "Deleted"].contains(&action), "{v}");
                            assert!(o.contains_key("details") && o.contains_key("reason"), "{v}");
                        }
                    }
                    assert!(o["size"].is_u64(), "size is an integer: {v}");
                    let domain_of = |k: &str| o[k].as_str().and_then(|a| a.rsplit('@').next()).unwrap_or("");
                    let managed = if o["direction"] == "in" {
                        domain_of("recipient")
                    } else {
                        domain_of("sender")
                    };
                    assert!(MANAGED_DOMAINS.contains(&managed), "{v}");
                    let g = gen_ms(&v);
                    let ts = DateTime::parse_from_rfc3339(o["timestamp"].as_str().expect("timestamp string"))
                        .expect("timestamp parses")
                        .timestamp_millis();
                    assert!(ts < g, "timestamp is before genTime: {v}");
                    if let Some(dt) = o.get("deliveryTime").and_then(Value::as_str) {
                        let dt = DateTime::parse_from_rfc3339(dt).expect("deliveryTime parses");
                        assert!(dt.timestamp_millis() > g, "deliveryTime is after genTime: {v}");
                    }
                    unlisted += o.keys().filter(|k| !listed.contains(k.as_str())).count();
                    for (k, x) in o {
                        match x {
                            Value::Array(a) if a.is_empty() => seen.insert(format!("{k}:[]")),
                            _ => seen.insert(k.clone()),
                        };
                    }
                    if let Some(a) = o.get("headerTo") {
                        assert!(a.is_array(), "headerTo is an array: {v}");
                    }
                    let sz = o["size"].as_u64().unwrap_or(0);
                    if sz > 1 << 31 {
                        seen.insert("size>2^31".into());
                    }
                    let gt = o["genTime"].as_str().unwrap_or("");
                    seen.insert(if gt.len() == 24 { "ms" } else { "s" }.into());
                }
                token = r.next_token();
                if token.is_none() {
                    break;
                }
            }
        }
    }
    assert!(total > 3000, "{total} records");
    for form in [
        "headerTo:[]",
        "attachments:[]",
        "embeddedUrls",
        "embeddedUrl",
        "embeddedUrls:[]",
        "size>2^31",
        "ms",
        "s",
        "policyName",
        "spamScore",
        "quarantineInfo",
    ] {
        assert!(seen.contains(form), "{form} never occurs in {total} records");
    }
    // Empty lists are also omitted: some record without attachments has no attachments key.
    let without_attachments = raw_bodies
        .lines()
        .filter(|l| l.trim_start().starts_with('{') && l.contains("\"genTime\""))
        .filter(|l| !l.contains("\"attachments\""))
        .count();
    assert!(without_attachments > 0);
    assert!(
        (total / 600..=total / 60).contains(&unlisted),
        "{unlisted} unlisted fields in {total} records, expected about 1 in 200"
    );
    for needle in ["\\u00", "\\uD83D", "\\\"", "\\\\", "\\/", "\\t", "会議", "🎉"] {
        assert!(raw_bodies.contains(needle), "the JSON never contains {needle:?}");
    }
}

#[tokio::test]
async fn filters_select_domain_and_direction() {
    let rows = 300;
    let seed = busy_seed(rows);
    let t = Tracking::start(args(seed, rows)).await;
    let d = ago(1);
    let (s, e) = whole_day(d);
    let day = generate_day(seed, d, Traffic::Accepted, rows).records;
    let base = [("type", "accepted_traffic"), ("start", s.as_str()), ("end", e.as_str())];
    let by_domain = t.fetch_all(&[&base[..], &[("domain", "example.net")]].concat()).await.0;
    let want: Vec<Value> = day.iter().filter(|r| r.domain == "example.net").map(json_of).collect();
    assert!(!want.is_empty());
    assert_eq!(by_domain, want);
    let upper = t.fetch_all(&[&base[..], &[("domain", "EXAMPLE.NET")]].concat()).await.0;
    assert_eq!(upper, want, "domains compare case-insensitively");

    let out = t
        .fetch_all(&[&base[..], &[("direction", "out"), ("domain", "example.jp")]].concat())
        .await
        .0;
    let want: Vec<Value> = day
        .iter()
        .filter(|r| r.domain == "example.jp" && r.direction.word() == "out")
        .map(json_of)
        .collect();
    assert!(!want.is_empty());
    assert_eq!(out, want);
    assert!(
        out.iter()
            .all(|v| v["sender"].as_str().is_some_and(|a| a.ends_with("@example.jp")))
    );

    let none = t.get(&[&base[..], &[("domain", "unknown.example")]].concat()).await;
    assert_eq!(none.status, 200);
    assert_eq!(
        none.json(),
        serde_json::json!({"logs": []}),
        "no nextToken on an empty last page"
    );
}

#[tokio::test]
async fn pages_are_gzipped_only_when_asked() {
    let rows = 300;
    let seed = busy_seed(rows);
    let t = Tracking::start(args(seed, rows)).await;
    let (s, e) = whole_day(ago(1));
    let params = [
        ("type", "accepted_traffic"),
        ("start", s.as_str()),
        ("end", e.as_str()),
        ("limit", "50"),
    ];
    let plain = t.get(&params).await;
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.header("content-type"), Some("application/json;charset=UTF-8"));
    assert_eq!(plain.header("transfer-encoding"), Some("chunked"));
    assert!(plain.text().starts_with("{\n    \"nextToken\": \""), "{}", plain.text());

    let zipped = t.get_gzip(&params).await;
    assert_eq!(zipped.status, 200);
    assert_eq!(zipped.header("content-encoding"), Some("gzip"));
    assert_eq!(&zipped.body[..2], &[0x1f, 0x8b], "gzip magic");
    let mut text = String::new();
    flate2::read::GzDecoder::new(&zipped.body[..])
        .read_to_string(&mut text)
        .expect("a valid gzip stream");
    assert!(text.len() > zipped.body.len(), "compressed is smaller");
    let unzipped: Value = serde_json::from_str(&text).expect("JSON inside the gzip");
    assert_eq!(unzipped["logs"], plain.json()["logs"]);
    assert!(unzipped["nextToken"].is_string());

    // Errors are never compressed.
    let err = t.get_gzip(&[("type", "nope")]).await;
    assert_error(&err, 400, "InvalidParameter", "type");
}

/// Every page of a query as sent (gzip when `gzip`), following the tokens.
async fn walk_raw(t: &Tracking, params: &[(&str, &str)], gzip: bool) -> Vec<Vec<u8>> {
    let mut pages = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut p = params.to_vec();
        if let Some(tok) = &token {
            p.push(("token", tok));
        }
        let r = if gzip { t.get_gzip(&p).await } else { t.get(&p).await };
        assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
        let mut text = Vec::new();
        if gzip {
            flate2::read::GzDecoder::new(&r.body[..])
                .read_to_end(&mut text)
                .expect("a valid gzip stream");
        } else {
            text.clone_from(&r.body);
        }
        let json: Value = serde_json::from_slice(&text).expect("JSON page");
        pages.push(r.body);
        match json.get("nextToken").and_then(Value::as_str) {
            Some(next) => token = Some(next.to_string()),
            None => return pages,
        }
        assert!(pages.len() < 1000, "pagination does not end");
    }
}

#[tokio::test]
async fn a_window_already_over_gets_the_same_bytes_every_time_it_is_walked() {
    // The simulator keeps the pages it rendered; a kept page must be the page it would render, and
    // a window that ended before the first request must get the same tokens on every walk (they
    // carry the window's end, not the time of the request).
    let rows = 300;
    let seed = busy_seed(rows);
    let fresh = Tracking::start(args(seed, rows)).await;
    let warm = Tracking::start(args(seed, rows)).await;
    let (s, e) = whole_day(ago(1));
    let params = [
        ("type", "blocked_traffic"),
        ("start", s.as_str()),
        ("end", e.as_str()),
        ("limit", "40"),
    ];
    for gzip in [false, true] {
        let first = walk_raw(&warm, &params, gzip).await;
        assert!(first.len() > 2, "several pages ({})", first.len());
        tokio::time::sleep(Duration::from_millis(5)).await;
        let again = walk_raw(&warm, &params, gzip).await;
        let other = walk_raw(&fresh, &params, gzip).await;
        assert!(
            first == again,
            "a second walk (from the kept pages) differs (gzip {gzip})"
        );
        assert!(first == other, "another simulator renders other bytes (gzip {gzip})");
    }
}

#[tokio::test]
async fn every_request_at_fault_rate_one_is_a_fault_of_each_kind() {
    let t = Tracking::start(SimArgs {
        fault_rate: 1.0,
        ..args(2, 100)
    })
    .await;
    let (s, e) = whole_day(ago(1));
    let one = |i: usize| {
        let (t, s, e) = (&t, s.clone(), e.clone());
        async move {
            let started = Instant::now();
            let url = t.url(&[("type", "accepted_traffic"), ("start", &s), ("end", &e)]);
            let resp = t
                .client
                .get(url)
                .basic_auth(TRACKING_USER, Some(TRACKING_KEY))
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
            let code = |b: &str| serde_json::from_str::<Value>(b).ok().map(|v| v["code"].clone());
            match (status, body) {
                (500, Ok(b)) if code(&b) == Some("InternalError".into()) => "internal-error".to_string(),
                (503, Ok(b)) if code(&b) == Some("ServiceUnavailable".into()) => match retry_after.as_deref() {
                    Some("1") => "unavailable-retry-after".into(),
                    None => "unavailable".into(),
                    Some(other) => panic!("503 with Retry-After {other}"),
                },
                (429, Ok(b)) if code(&b) == Some("TooManyRequests".into()) => match retry_after {
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
                    serde_json::from_str::<Value>(&b).expect("slow answers are complete JSON");
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
    let stats = t.h.stats().await;
    let slow = seen.iter().filter(|s| *s == "slow").count() as u64;
    assert_eq!(stats["mail_tracking"]["requests"], 60);
    assert_eq!(stats["mail_tracking"]["faults"], 60);
    assert_eq!(stats["mail_tracking"]["data_requests"], slow);
    assert_eq!(stats["mail_delivery"]["requests"], 0, "the APIs count separately");
}

#[tokio::test]
async fn stats_count_requests_data_requests_and_faults() {
    let t = Tracking::start(args(1, 50)).await;
    assert_eq!(
        t.h.stats().await["mail_tracking"],
        serde_json::json!({"requests": 0, "data_requests": 0, "faults": 0})
    );
    let (s, e) = whole_day(ago(1));
    let params = [("type", "blocked_traffic"), ("start", s.as_str()), ("end", e.as_str())];
    assert_eq!(t.get(&params).await.status, 200);
    assert_eq!(t.get_gzip(&params).await.status, 200);
    assert_eq!(t.get_auth(&params, Auth::None).await.status, 401);
    assert_eq!(t.get(&[("type", "x")]).await.status, 400);
    let stats = t.h.stats().await;
    assert_eq!(
        stats["mail_tracking"],
        serde_json::json!({"requests": 4, "data_requests": 2, "faults": 0})
    );
    assert_eq!(stats["mail_delivery"]["requests"], 0);
}

#[tokio::test]
async fn the_options_parse_and_a_user_with_a_colon_is_refused() {
    use clap::Parser as _;
    #[derive(clap::Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        sim: SimArgs,
    }
    let cli = Cli::try_parse_from([
        "etl-sim",
        "--tracking-user",
        "u1",
        "--tracking-api-key",
        "k1",
        "--tracking-rows-per-day",
        "42",
    ])
    .expect("options parse");
    assert_eq!(cli.sim.tracking_user, "u1");
    assert_eq!(cli.sim.tracking_api_key, "k1");
    assert_eq!(cli.sim.tracking_rows_per_day, 42);
    let err = crate::start(SimArgs {
        tracking_user: "a:b".into(),
        ..args(1, 1)
    })
    .await
    .expect_err("user with a colon");
    assert!(err.to_string().contains("--tracking-user"), "{err}");
}
