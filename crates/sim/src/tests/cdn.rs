//! The CDN delivery-log files API as a client sees it: the listing's shape and quirks (both array keys,
//! empty and unpublished slots, the rounded-up end), refusals, the rate limiter, signed and expiring URLs,
//! ranges, the truth file (checked by parsing the downloaded files with a parser written here from
//! FORMATS.md), `--cdn-truncate-first`, faults and the request log.

use std::collections::HashSet;
use std::io::Read as _;
use std::time::Duration;

use chrono::{DateTime, Days, NaiveDate, Utc};
use clap::Parser as _;
use serde_json::Value;

use super::{Harness, args};
use crate::SimArgs;
use crate::cdn::{FINGERPRINT_DEFINITION, LogFile, SLOT_SECS, file_name, generate_slot};
use crate::data::fnv1a64;

const LIST: &str = "/lls/v1.0/logs/delivery";
const LIVE: &str = "live.example.com";
const VOD: &str = "vod.example.com";

fn ago(days: u64) -> NaiveDate {
    Utc::now()
        .date_naive()
        .checked_sub_days(Days::new(days))
        .expect("date in range")
}

fn day_start(d: NaiveDate) -> i64 {
    d.and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp()
}

/// `started`/`ended` of a whole UTC day, as FORMATS.md tells a client to ask for it.
fn whole_day(d: NaiveDate) -> String {
    let d = d.format("%Y%m%d");
    format!("started={d}T000000Z&ended={d}T235959Z")
}

fn compact(secs: i64) -> String {
    DateTime::from_timestamp(secs, 0)
        .expect("time in range")
        .format("%Y%m%dT%H%M%SZ")
        .to_string()
}

fn slot_of(timestamp: &str) -> i64 {
    DateTime::parse_from_rfc3339(timestamp)
        .expect("slot timestamp parses")
        .timestamp()
}

/// A response with its body as bytes.
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

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }
}

/// One listed file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Listed {
    slot: i64,
    name: String,
    url: String,
    size: u64,
}

/// A listed slot: its start and the files (in listing order).
fn slots(domain_logs: &Value) -> Vec<(i64, Vec<Listed>)> {
    domain_logs["logs"]
        .as_array()
        .expect("logs array")
        .iter()
        .map(|log| {
            let o = log.as_object().expect("log object");
            assert_eq!(o.len(), 2, "timestamp and one array: {log}");
            let slot = slot_of(o["timestamp"].as_str().expect("timestamp string"));
            let files = o
                .get("values")
                .or_else(|| o.get("value"))
                .and_then(Value::as_array)
                .unwrap_or_else(|| panic!("values or value array: {log}"))
                .iter()
                .map(|f| Listed {
                    slot,
                    name: f["name"].as_str().expect("name").to_string(),
                    url: f["url"].as_str().expect("url is a string").to_string(),
                    size: f["size"].as_u64().expect("size"),
                })
                .collect();
            (slot, files)
        })
        .collect()
}

struct Cdn {
    h: Harness,
}

impl Cdn {
    async fn start(args: SimArgs) -> Self {
        Self {
            h: Harness::start(args).await,
        }
    }

    async fn raw(&self, req: reqwest::RequestBuilder) -> Raw {
        let resp = req.send().await.expect("request reaches the simulator");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.expect("complete body").to_vec();
        Raw { status, headers, body }
    }

    async fn list(&self, query: &str) -> Raw {
        self.raw(self.h.client.get(self.h.url(&format!("{LIST}?{query}"))))
            .await
    }

    /// Lists and expects a 200.
    async fn listing(&self, query: &str) -> Value {
        let r = self.list(query).await;
        assert_eq!(r.status, 200, "{query}: {}", r.text());
        r.json()
    }

    async fn get(&self, url: &str, range: Option<&str>) -> Raw {
        let mut req = self.h.client.get(url);
        if let Some(r) = range {
            req = req.header("Range", r);
        }
        self.raw(req).await
    }

    async fn requests(&self) -> Value {
        let r = self.raw(self.h.client.get(self.h.url("/_sim/cdn/requests"))).await;
        assert_eq!(r.status, 200);
        r.json()
    }
}

/// The 13 fields of a record line, `None` for `-`/`"-"`, parsed as FORMATS.md describes them.
fn parse_line(line: &str) -> Vec<Option<String>> {
    let mut fields = Vec::with_capacity(13);
    let mut chars = line.chars().peekable();
    loop {
        let mut value = String::new();
        let quoted = chars.peek() == Some(&'"');
        if quoted {
            chars.next();
            loop {
                match chars.next().unwrap_or_else(|| panic!("unterminated quote in {line:?}")) {
                    '\\' => value.push(chars.next().expect("escaped character")),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ' ' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        fields.push((value != "-").then_some(value));
        match chars.next() {
            None => break,
            Some(' ') => {}
            Some(c) => panic!("{c:?} after a field in {line:?}"),
        }
    }
    assert_eq!(fields.len(), 13, "{line:?}");
    fields
}

/// The truth's canonical text of a parsed record.
fn canonical(fields: &[Option<String>], file: &str) -> String {
    let text = |i: usize| fields[i].clone().unwrap_or_else(|| "-".to_string());
    let at = DateTime::parse_from_rfc3339(&text(0)).expect("record timestamp");
    let mut parts = vec![at.timestamp_micros().to_string()];
    parts.extend((1..13).map(text));
    parts.push(file.to_string());
    parts.join("\u{1f}")
}

fn gunzip_multi(gz: &[u8]) -> std::io::Result<String> {
    let mut s = String::new();
    flate2::read::MultiGzDecoder::new(gz).read_to_string(&mut s)?;
    Ok(s)
}

/// What only the first gzip member holds (a decoder that stops after one member sees this).
fn gunzip_first_member(gz: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_end(&mut out)
        .expect("first member decodes");
    out
}

fn record_lines(text: &str) -> Vec<&str> {
    text.split('\n')
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

#[test]
fn the_flags_parse_with_their_documented_defaults() {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        sim: SimArgs,
    }
    let d = Cli::parse_from(["etl-sim"]).sim;
    assert_eq!(d.cdn_domains, [LIVE, VOD]);
    assert_eq!(
        (d.cdn_url_ttl, d.cdn_rate_per_minute, d.cdn_rate_per_hour),
        (900, 100, 1000)
    );
    assert_eq!(
        (d.cdn_lines_per_slot, d.cdn_publish_delay, d.cdn_truncate_first),
        (40, 120, false)
    );
    assert_eq!(d.cdn_download_delay_ms, 0);
    let c = Cli::parse_from([
        "etl-sim",
        "--cdn-domains",
        "a.example,b.example,c.example",
        "--cdn-url-ttl",
        "1",
        "--cdn-rate-per-minute",
        "5",
        "--cdn-rate-per-hour",
        "7",
        "--cdn-lines-per-slot",
        "3",
        "--cdn-publish-delay",
        "0",
        "--cdn-truncate-first",
        "--cdn-download-delay-ms",
        "10",
    ])
    .sim;
    assert_eq!(c.cdn_download_delay_ms, 10);
    assert_eq!(c.cdn_domains, ["a.example", "b.example", "c.example"]);
    assert_eq!((c.cdn_url_ttl, c.cdn_rate_per_minute, c.cdn_rate_per_hour), (1, 5, 7));
    assert_eq!(
        (c.cdn_lines_per_slot, c.cdn_publish_delay, c.cdn_truncate_first),
        (3, 0, true)
    );
}

#[tokio::test]
async fn impossible_options_are_refused_at_start() {
    for (bad, needle) in [
        (
            SimArgs {
                cdn_domains: vec!["a b".into()],
                ..args(1, 10)
            },
            "--cdn-domains",
        ),
        (
            SimArgs {
                cdn_domains: vec![LIVE.into(), LIVE.into()],
                ..args(1, 10)
            },
            "twice",
        ),
        (
            SimArgs {
                cdn_rate_per_minute: 0,
                ..args(1, 10)
            },
            "--cdn-rate-per-minute",
        ),
        (
            SimArgs {
                cdn_url_ttl: 0,
                ..args(1, 10)
            },
            "--cdn-url-ttl",
        ),
    ] {
        let err = crate::start(bad).await.expect_err("refused");
        assert!(err.to_string().contains(needle), "{err}");
    }
}

#[tokio::test]
async fn the_listing_has_every_slot_both_keys_and_the_next_midnight() {
    let seed = 3;
    let cdn = Cdn::start(args(seed, 10)).await;
    let d = ago(1);
    let before = Utc::now().timestamp();
    let v = cdn.listing(&format!("domain={LIVE},{VOD}&{}", whole_day(d))).await;
    let after = Utc::now().timestamp();
    let arr = v.as_array().expect("top-level array");
    assert_eq!(arr.len(), 2);
    assert_eq!(arr[0]["domain"], LIVE);
    assert_eq!(arr[1]["domain"], VOD);
    let start = day_start(d);
    let host = cdn.h.sim.addr().to_string();
    for domain_logs in arr {
        let domain = domain_logs["domain"].as_str().expect("domain");
        let listed = slots(domain_logs);
        assert_eq!(listed.len(), 289, "288 slots of the day and D+1T00:00:00Z");
        let logs = domain_logs["logs"].as_array().expect("logs");
        let keys: HashSet<&str> = logs
            .iter()
            .map(|l| if l.get("values").is_some() { "values" } else { "value" })
            .collect();
        assert_eq!(keys.len(), 2, "both values and value occur");
        assert_eq!(logs[0]["timestamp"], format!("{}T00:00:00Z", d.format("%Y-%m-%d")));
        assert_eq!(
            logs[288]["timestamp"],
            format!("{}T00:00:00Z", (d + Days::new(1)).format("%Y-%m-%d"))
        );
        let mut empty = 0;
        for (k, (slot, files)) in listed.iter().enumerate() {
            assert_eq!(*slot, start + k as i64 * SLOT_SECS);
            let generated = generate_slot(seed, domain, *slot, 40);
            if k == 288 && files.is_empty() {
                continue; // today's first slot may not be published yet
            }
            assert_eq!(files.len(), generated.len(), "slot {slot}");
            empty += usize::from(files.is_empty());
            for (i, (f, g)) in files.iter().zip(&generated).enumerate() {
                assert_eq!(f.name, file_name(*slot, i));
                assert_eq!(f.name, g.name);
                assert_eq!(f.size, g.gz.len() as u64);
                let day = DateTime::from_timestamp(*slot, 0).expect("slot").format("%Y%m%d");
                let prefix = format!("http://{host}/cdn-dl/{domain}/{day}/{}?expire=", f.name);
                let rest = f
                    .url
                    .strip_prefix(&prefix)
                    .unwrap_or_else(|| panic!("{} vs {prefix}", f.url));
                let (expire, sign) = rest.split_once("&sign=").expect("sign parameter");
                let expire: i64 = expire.parse().expect("expire is Unix seconds");
                assert!((before + 900..=after + 900).contains(&expire), "{expire}");
                assert!(
                    sign.len() == 40 && sign.bytes().all(|c| c.is_ascii_hexdigit()),
                    "{sign}"
                );
            }
        }
        assert!((15..=90).contains(&empty), "{empty} empty slots");
    }

    // Repeated and comma-separated domains are the same request; each listing mints its own URLs.
    let again = cdn
        .listing(&format!("domain={VOD}&domain={LIVE}&domain={VOD}&{}", whole_day(d)))
        .await;
    let again = again.as_array().expect("array");
    assert_eq!(again.len(), 2, "a domain named twice is answered once");
    assert_eq!(again[0]["domain"], VOD);
    let strip = |l: Vec<(i64, Vec<Listed>)>| -> Vec<(i64, Vec<(String, u64)>)> {
        l.into_iter()
            .map(|(s, f)| (s, f.into_iter().map(|f| (f.name, f.size)).collect()))
            .collect()
    };
    assert_eq!(strip(slots(&again[1])), strip(slots(&arr[0])));
}

#[tokio::test]
async fn refusals_name_the_problem() {
    let cdn = Cdn::start(args(1, 10)).await;
    let day = whole_day(ago(2));
    let r = cdn.list(&format!("domain={LIVE},nope.example.com&{day}")).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        serde_json::json!({"code": "LLS.Domain.NotFound", "message": "Domain name is not found."})
    );
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
    );
    let d = ago(2).format("%Y%m%d").to_string();
    let next = (ago(2) + Days::new(1)).format("%Y%m%d").to_string();
    for (query, code, needle) in [
        (
            format!("domain={LIVE}&started={d}T000000Z&ended={next}T000001Z"),
            "LLS.InvalidParameter",
            "24 hours",
        ),
        (
            format!("domain={LIVE}&started={d}T010000Z&ended={d}T000000Z"),
            "LLS.InvalidParameter",
            "ended",
        ),
        (
            format!("domain={LIVE}&ended={d}T000000Z"),
            "LLS.MissingParameter",
            "started",
        ),
        (
            format!("domain={LIVE}&started={d}T000000Z&ended={d}-23:59:59"),
            "LLS.InvalidParameter",
            "ended",
        ),
        (format!("domains={LIVE}&{day}"), "LLS.InvalidParameter", "domains"),
        (day.clone(), "LLS.MissingParameter", "domain"),
        (format!("domain={LIVE},&{day}"), "LLS.InvalidParameter", "domain"),
    ] {
        let r = cdn.list(&query).await;
        assert_eq!(r.status, 400, "{query}");
        let v = r.json();
        assert_eq!(v["code"], code, "{query}: {v}");
        assert!(v["message"].as_str().expect("message").contains(needle), "{query}: {v}");
    }
    // Exactly 24 hours is allowed.
    let v = cdn
        .listing(&format!("domain={LIVE}&started={d}T000000Z&ended={next}T000000Z"))
        .await;
    assert_eq!(slots(&v[0]).len(), 289);

    let post = cdn
        .raw(cdn.h.client.post(cdn.h.url(&format!("{LIST}?domain={LIVE}&{day}"))))
        .await;
    assert_eq!(post.status, 405);

    let log = cdn.requests().await;
    let statuses: Vec<u64> = log["listing"]
        .as_array()
        .expect("listing log")
        .iter()
        .map(|e| {
            assert_eq!(e["limited"], false);
            assert_eq!(e["fault"], false);
            e["status"].as_u64().expect("status")
        })
        .collect();
    assert_eq!(statuses, [400, 400, 400, 400, 400, 400, 400, 400, 200, 405]);
}

#[tokio::test]
async fn slots_are_listed_empty_until_published() {
    let seed = 4;
    let late = Cdn::start(SimArgs {
        cdn_publish_delay: 3 * 86_400,
        ..args(seed, 10)
    })
    .await;
    let v = late.listing(&format!("domain={LIVE}&{}", whole_day(ago(1)))).await;
    let listed = slots(&v[0]);
    assert_eq!(listed.len(), 289);
    assert!(
        listed.iter().all(|(_, f)| f.is_empty()),
        "nothing of yesterday is published yet"
    );

    let cdn = Cdn::start(args(seed, 10)).await;
    let now = Utc::now().timestamp();
    let v = cdn
        .listing(&format!(
            "domain={LIVE}&started={}&ended={}",
            compact(now - 3600),
            compact(now)
        ))
        .await;
    let listed = slots(&v[0]);
    let last = listed.last().expect("slots").0;
    assert!(last >= now && last < now + SLOT_SECS, "the end is rounded up");
    for (slot, files) in listed {
        let published = slot + SLOT_SECS + 120 <= now;
        let boundary = (slot + SLOT_SECS + 120 - now).abs() <= 2;
        let generated = generate_slot(seed, LIVE, slot, 40).len();
        if published && !boundary {
            assert_eq!(files.len(), generated, "slot {slot} is published");
        } else if !published && !boundary {
            assert!(files.is_empty(), "slot {slot} is not published yet");
        }
    }
}

#[tokio::test]
async fn the_listing_is_rate_limited_per_minute_but_downloads_are_not() {
    let cdn = Cdn::start(SimArgs {
        cdn_rate_per_minute: 5,
        ..args(1, 10)
    })
    .await;
    let d = ago(1).format("%Y%m%d").to_string();
    let q = format!("domain={LIVE}&started={d}T120000Z&ended={d}T130000Z");
    let mut urls = Vec::new();
    for _ in 0..5 {
        let v = cdn.listing(&q).await;
        urls.extend(slots(&v[0]).into_iter().flat_map(|(_, f)| f).map(|f| f.url));
    }
    for _ in 0..2 {
        let r = cdn.list(&q).await;
        assert_eq!(r.status, 429, "{}", r.text());
        let secs: u64 = r
            .header("retry-after")
            .expect("Retry-After")
            .parse()
            .expect("delta seconds");
        assert!((1..=60).contains(&secs), "{secs}");
        assert_eq!(r.json()["code"], "LLS.RateLimit.Exceeded");
    }
    let url = urls.first().expect("an hour of yesterday has files");
    assert_eq!(cdn.get(url, None).await.status, 200, "downloads are not limited");

    let log = cdn.requests().await;
    let limited: Vec<bool> = log["listing"]
        .as_array()
        .expect("listing log")
        .iter()
        .map(|e| e["limited"].as_bool().expect("limited"))
        .collect();
    assert_eq!(limited, [false, false, false, false, false, true, true]);
    let statuses: Vec<u64> = log["listing"]
        .as_array()
        .expect("listing log")
        .iter()
        .map(|e| e["status"].as_u64().expect("status"))
        .collect();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429]);
    assert!(log["listing"][0]["at_ms"].as_i64().expect("at_ms") > 1_600_000_000_000);
    assert_eq!(log["listing"][0]["query"], q);
}

#[tokio::test]
async fn the_hourly_budget_applies_too() {
    let cdn = Cdn::start(SimArgs {
        cdn_rate_per_hour: 3,
        ..args(1, 10)
    })
    .await;
    // Refused requests count as well: the budget is about requests, not answers.
    for _ in 0..3 {
        assert_eq!(cdn.list("domain=unknown.example").await.status, 400);
    }
    let r = cdn.list("domain=unknown.example").await;
    assert_eq!(r.status, 429);
    let secs: u64 = r.header("retry-after").expect("Retry-After").parse().expect("seconds");
    assert!((3500..=3600).contains(&secs), "{secs}");
}

#[tokio::test]
async fn urls_are_signed_for_their_exact_path_and_expiry() {
    let cdn = Cdn::start(args(2, 10)).await;
    let v = cdn.listing(&format!("domain={VOD}&{}", whole_day(ago(1)))).await;
    let files: Vec<Listed> = slots(&v[0]).into_iter().flat_map(|(_, f)| f).collect();
    let f = &files[0];
    let ok = cdn.get(&f.url, None).await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("content-type"), Some("application/gzip"));
    assert_eq!(ok.header("content-encoding"), None);
    assert_eq!(ok.header("content-length"), Some(f.size.to_string().as_str()));
    assert_eq!(ok.body.len() as u64, f.size);
    assert!(gunzip_multi(&ok.body).expect("gzip").starts_with("#Version: 1.0\n"));

    let (base, sign) = f.url.split_once("&sign=").expect("sign");
    let flipped: String = sign
        .chars()
        .enumerate()
        .map(|(i, c)| if i == 5 { if c == '0' { '1' } else { '0' } } else { c })
        .collect();
    let other = files.iter().find(|g| g.name != f.name).expect("another file");
    let other_path = other.url.split_once('?').expect("query").0;
    let query = f.url.split_once('?').expect("query").1;
    let (expire, _) = query
        .strip_prefix("expire=")
        .and_then(|q| q.split_once('&'))
        .expect("expire first");
    let later: u64 = expire.parse::<u64>().expect("expire") + 1;
    for (bad, code) in [
        (format!("{base}&sign={flipped}"), "SignatureDoesNotMatch"),
        (base.to_string(), "AccessDenied"),
        (format!("{other_path}?{query}"), "SignatureDoesNotMatch"),
        (
            f.url.replace(&format!("expire={expire}"), &format!("expire={later}")),
            "SignatureDoesNotMatch",
        ),
    ] {
        let r = cdn.get(&bad, None).await;
        assert_eq!(r.status, 403, "{bad}");
        assert!(
            r.text().contains(&format!("<Code>{code}</Code>")),
            "{bad}: {}",
            r.text()
        );
    }
    let log = cdn.requests().await;
    assert_eq!(log["downloads"]["requests"], 5);
    assert_eq!(log["downloads"]["ok"], 1);
    assert_eq!(log["downloads"]["denied"], 4);
    let stats = cdn.h.stats().await;
    assert_eq!(stats["cdn_logs"]["requests"], 6);
    assert_eq!(
        stats["cdn_logs"]["data_requests"], 2,
        "the listing and the complete download"
    );
}

#[tokio::test]
async fn urls_expire_and_a_fresh_listing_mints_new_ones() {
    let cdn = Cdn::start(SimArgs {
        cdn_url_ttl: 1,
        ..args(2, 10)
    })
    .await;
    let q = format!("domain={LIVE}&{}", whole_day(ago(1)));
    let first_url = |v: &Value| {
        slots(&v[0])
            .into_iter()
            .flat_map(|(_, f)| f)
            .next()
            .expect("a file")
            .url
    };
    let url = first_url(&cdn.listing(&q).await);
    assert_eq!(cdn.get(&url, None).await.status, 200, "valid at once");
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let r = cdn.get(&url, None).await;
    assert_eq!(r.status, 403);
    assert!(r.text().contains("Request has expired"), "{}", r.text());
    let fresh = first_url(&cdn.listing(&q).await);
    assert_ne!(fresh, url);
    assert_eq!(cdn.get(&fresh, None).await.status, 200);
    assert_eq!(cdn.requests().await["downloads"]["expired"], 1);
}

#[tokio::test]
async fn the_download_delay_holds_every_answer_back() {
    let cdn = Cdn::start(SimArgs {
        cdn_download_delay_ms: 300,
        ..args(2, 10)
    })
    .await;
    let v = cdn.listing(&format!("domain={LIVE}&{}", whole_day(ago(1)))).await;
    let url = slots(&v[0])
        .into_iter()
        .flat_map(|(_, f)| f)
        .next()
        .expect("a file")
        .url;
    let started = std::time::Instant::now();
    assert_eq!(cdn.get(&url, None).await.status, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_range_resumes_the_download() {
    let cdn = Cdn::start(args(6, 10)).await;
    let v = cdn.listing(&format!("domain={LIVE}&{}", whole_day(ago(1)))).await;
    let f = slots(&v[0])
        .into_iter()
        .flat_map(|(_, f)| f)
        .max_by_key(|f| f.size)
        .expect("files");
    let full = cdn.get(&f.url, None).await;
    assert_eq!(full.status, 200);
    let len = full.body.len();
    let n = len / 3;
    let tail = cdn.get(&f.url, Some(&format!("bytes={n}-"))).await;
    assert_eq!(tail.status, 206);
    assert_eq!(
        tail.header("content-range"),
        Some(format!("bytes {n}-{}/{len}", len - 1).as_str())
    );
    assert_eq!(tail.body, full.body[n..]);
    let mut joined = full.body[..n].to_vec();
    joined.extend_from_slice(&tail.body);
    assert!(gunzip_multi(&joined).is_ok());
    let past = cdn.get(&f.url, Some(&format!("bytes={len}-"))).await;
    assert_eq!(past.status, 416);
    assert_eq!(past.header("content-range"), Some(format!("bytes */{len}").as_str()));
}

#[tokio::test]
async fn downloaded_files_add_up_to_the_truth() {
    let dir = tempfile::tempdir().expect("temp dir");
    let truth_path = dir.path().join("truth.json");
    let cdn = Cdn::start(SimArgs {
        truth: Some(truth_path.clone()),
        cdn_lines_per_slot: 8,
        ..args(11, 10)
    })
    .await;
    let truth: Value = serde_json::from_slice(&std::fs::read(&truth_path).expect("truth written")).expect("JSON");
    let section = &truth["cdn_logs"];
    assert_eq!(section["fingerprint_definition"], FINGERPRINT_DEFINITION);
    let days: Vec<&String> = section["days"].as_object().expect("days").keys().collect();
    let expect_days: Vec<String> = (1..=3).rev().map(|b| ago(b).format("%Y-%m-%d").to_string()).collect();
    assert_eq!(days, expect_days.iter().collect::<Vec<_>>());

    let d = ago(1);
    let v = cdn.listing(&format!("domain={LIVE},{VOD}&{}", whole_day(d))).await;
    let (lo, hi) = (day_start(d), day_start(d) + 86_400);
    let (mut multi, mut header_only, mut no_newline) = (0, 0, 0);
    for domain_logs in v.as_array().expect("array") {
        let domain = domain_logs["domain"].as_str().expect("domain");
        let (mut rows, mut files, mut bytes_sum, mut fingerprint) = (0u64, 0u64, 0u64, 0u64);
        let mut ids = HashSet::new();
        for (slot, listed) in slots(domain_logs) {
            if !(lo..hi).contains(&slot) {
                continue; // the rounded-up end's extra slot belongs to the next day
            }
            for f in listed {
                let r = cdn.get(&f.url, None).await;
                assert_eq!(r.status, 200, "{}", f.url);
                assert_eq!(r.body.len() as u64, f.size);
                files += 1;
                bytes_sum += f.size;
                let text = gunzip_multi(&r.body).expect("the file is gzip");
                multi += usize::from(gunzip_first_member(&r.body).len() < text.len());
                no_newline += usize::from(!text.ends_with('\n'));
                let lines = record_lines(&text);
                header_only += usize::from(lines.is_empty());
                for line in lines {
                    let fields = parse_line(line);
                    let at = DateTime::parse_from_rfc3339(fields[0].as_deref().expect("timestamp"))
                        .expect("timestamp parses")
                        .timestamp_millis();
                    assert!((slot * 1000..(slot + SLOT_SECS) * 1000).contains(&at), "{line}");
                    rows += 1;
                    ids.insert(fields[12].clone().expect("request id"));
                    fingerprint = fingerprint.wrapping_add(fnv1a64(canonical(&fields, &f.name).as_bytes()));
                }
            }
        }
        let want = &section["days"][d.format("%Y-%m-%d").to_string()][domain];
        assert_eq!(want["rows"], rows, "{domain}");
        assert_eq!(want["files"], files, "{domain}");
        assert_eq!(want["gz_bytes_sum"], bytes_sum, "{domain}");
        assert_eq!(want["distinct_request_ids"], ids.len() as u64, "{domain}");
        assert_eq!(want["fingerprint"], format!("{fingerprint:016x}"), "{domain}");
        assert!(rows > 1000, "{domain}: {rows} rows");
    }
    assert!(multi > 50, "{multi} multi-member files");
    assert!(header_only > 5, "{header_only} header-only files");
    assert!(no_newline > 20, "{no_newline} files without a final newline");
}

/// The listed file called `name`.
fn find_listed(v: &Value, name: &str) -> Listed {
    v.as_array()
        .expect("array")
        .iter()
        .flat_map(slots)
        .flat_map(|(_, f)| f)
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("{name} is listed"))
}

#[tokio::test]
async fn truncate_first_sends_one_short_body_per_file() {
    let seed = 8;
    let cdn = Cdn::start(SimArgs {
        cdn_truncate_first: true,
        ..args(seed, 10)
    })
    .await;
    let d = ago(1);
    let generated: Vec<LogFile> = (0..288)
        .flat_map(|k| generate_slot(seed, LIVE, day_start(d) + k * SLOT_SECS, 40))
        .collect();
    let multi = generated
        .iter()
        .find(|f| f.member_ends.len() > 1 && !f.records.is_empty())
        .expect("a multi-member file");
    let single = generated
        .iter()
        .find(|f| f.member_ends.len() == 1 && !f.records.is_empty())
        .expect("a single-member file");
    let header_only = generated
        .iter()
        .find(|f| f.records.is_empty())
        .expect("a header-only file");
    let v = cdn.listing(&format!("domain={LIVE}&{}", whole_day(d))).await;

    for (file, clean) in [(multi, true), (single, false)] {
        let listed = find_listed(&v, &file.name);
        let first = cdn.get(&listed.url, None).await;
        assert_eq!(first.status, 200);
        let announced: u64 = first
            .header("content-length")
            .expect("Content-Length")
            .parse()
            .expect("number");
        assert_eq!(announced, first.body.len() as u64);
        assert!(announced < listed.size, "{}: short body", file.name);
        assert_eq!(first.body, file.gz[..first.body.len()]);
        match gunzip_multi(&first.body) {
            Ok(text) => {
                assert!(clean, "{}: a single member cut short does not decode", file.name);
                assert!(file.text.starts_with(&text) && text.len() < file.text.len());
            }
            Err(e) => assert!(!clean, "{}: cut at a member boundary decodes ({e})", file.name),
        }
        let second = cdn.get(&listed.url, None).await;
        assert_eq!(second.status, 200);
        assert_eq!(second.body, file.gz, "{}: complete the second time", file.name);
    }
    let listed = find_listed(&v, &header_only.name);
    assert_eq!(
        cdn.get(&listed.url, None).await.body,
        header_only.gz,
        "no records, no truncation"
    );
    let log = cdn.requests().await;
    assert_eq!(log["downloads"]["truncated"], 2);
    assert_eq!(log["downloads"]["ok"], 3);
}

#[tokio::test]
async fn faults_hit_listings_and_downloads() {
    let seed = 12;
    let healthy = Cdn::start(args(seed, 10)).await;
    let faulty = Cdn::start(SimArgs {
        fault_rate: 1.0,
        ..args(seed, 10)
    })
    .await;
    let v = healthy.listing(&format!("domain={LIVE}&{}", whole_day(ago(1)))).await;
    let files: Vec<Listed> = slots(&v[0]).into_iter().flat_map(|(_, f)| f).collect();
    let (healthy_host, faulty_host) = (healthy.h.sim.addr().to_string(), faulty.h.sim.addr().to_string());

    // Same seed, same signing key: the healthy simulator's URLs are valid on the faulty one.
    let mut seen = HashSet::new();
    let mut slow = 0u64;
    for f in files.iter().filter(|f| f.size > 200).cycle().take(200) {
        let url = f.url.replace(&healthy_host, &faulty_host);
        let resp = faulty.h.client.get(&url).send().await.expect("status line arrives");
        let status = resp.status().as_u16();
        let length = resp.content_length();
        let kind = match (status, resp.bytes().await) {
            (500, _) => "500",
            (503, _) => "503",
            (200, Ok(body)) if (body.len() as u64) < f.size => {
                assert_eq!(length, Some(body.len() as u64), "the short body is announced as such");
                "short"
            }
            (200, Ok(body)) => {
                assert_eq!(body.len() as u64, f.size);
                slow += 1;
                "slow"
            }
            (200, Err(_)) => {
                assert_eq!(length, Some(f.size), "the reset body announced the whole file");
                "reset"
            }
            (s, _) => panic!("unexpected status {s}"),
        };
        seen.insert(kind);
        if ["500", "503", "short", "reset"].iter().all(|k| seen.contains(k)) {
            break;
        }
    }
    assert!(
        ["500", "503", "short", "reset"].iter().all(|k| seen.contains(k)),
        "{seen:?}"
    );
    let d = ago(1).format("%Y%m%d").to_string();
    for _ in 0..6 {
        let r = faulty
            .h
            .client
            .get(
                faulty
                    .h
                    .url(&format!("{LIST}?domain={LIVE}&started={d}T100000Z&ended={d}T101000Z")),
            )
            .send()
            .await
            .expect("status line arrives");
        if r.status().as_u16() == 429 {
            assert!(r.headers().get("retry-after").is_some());
        }
    }
    let log = faulty.requests().await;
    let listing = log["listing"].as_array().expect("listing log");
    assert_eq!(listing.len(), 6);
    assert!(listing.iter().all(|e| e["fault"] == true && e["limited"] == false));
    assert!(log["downloads"]["faults"].as_u64().expect("faults") >= 4);
    let downloads = &log["downloads"];
    assert_eq!(
        downloads["faults"], downloads["requests"],
        "every download drew a fault"
    );
    assert_eq!(downloads["ok"], slow, "only slow answers are complete");
}
