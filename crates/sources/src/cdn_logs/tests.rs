use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use etl_config::{ByteSize, CdnLogsConfig};
use etl_core::{ErrorClass, PayloadBody, PayloadSender, PlanRequest, Secret, Source, Unit, Window};
use etl_http::{Client, HttpConfig, Redactor};
use tokio::sync::mpsc;

use super::{CdnLogs, parse_listing};
use crate::download::{content_range_start, expired};
use crate::test_server::{reply, routed};

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn config(url: &str, domains: &[&str]) -> CdnLogsConfig {
    CdnLogsConfig {
        url: url.into(),
        domains: domains.iter().map(|d| d.to_string()).collect(),
        download_hosts: Vec::new(),
        headers: vec![("X-Gateway-Key".into(), Secret::new("gw-secret"))],
        rate_per_minute: 100,
        rate_per_hour: 1000,
        download_concurrency: 3,
        max_line_bytes: ByteSize(64 << 10),
    }
}

fn source(cfg: CdnLogsConfig) -> CdnLogs {
    let http = HttpConfig {
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(5),
        read_timeout: Duration::from_secs(5),
        ..Default::default()
    };
    let client = Client::new(http, Redactor::new([Secret::new("gw-secret")])).unwrap();
    CdnLogs::new(cfg, client).unwrap()
}

fn day_window(day: &str) -> Window {
    let start = t(&format!("{day}T00:00:00Z"));
    Window::new(start, start + chrono::Duration::days(1))
}

#[test]
fn plans_a_unit_per_domain_and_day_and_states_the_budget() {
    let s = source(config("http://127.0.0.1:1", &["live.example.com", "vod.example.com"]));
    let plan = s
        .plan(&PlanRequest {
            from: t("2025-09-10T00:00:00Z"),
            to: t("2025-09-13T00:00:00Z"),
            now: t("2025-09-12T06:00:00Z"),
            settle: Duration::from_secs(3600),
        })
        .unwrap();
    let ids: Vec<_> = plan.units.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "cdn_logs-live.example.com-2025-09-10",
            "cdn_logs-live.example.com-2025-09-11",
            "cdn_logs-live.example.com-2025-09-12",
            "cdn_logs-vod.example.com-2025-09-10",
            "cdn_logs-vod.example.com-2025-09-11",
            "cdn_logs-vod.example.com-2025-09-12",
        ]
    );
    let u = &plan.units[1];
    assert_eq!(u.stream(), "cdn_logs-live.example.com");
    assert_eq!(u.partitions, [("domain".to_string(), "live.example.com".to_string())]);
    assert_eq!(u.params["started"], "20250911T000000Z");
    assert_eq!(u.params["ended"], "20250911T235959Z");
    assert!(!u.provisional);
    assert!(plan.units[2].provisional, "today is provisional");
    assert!(
        plan.notes.iter().any(|n| n.contains("end clamped to now")),
        "{:?}",
        plan.notes
    );
    let budget = plan.notes.iter().find(|n| n.contains("listing request")).unwrap();
    assert!(
        budget.contains("6 listing request(s)") && budget.contains("100/min and 1000/h"),
        "{budget}"
    );
    assert!(budget.contains("no time at all"), "{budget}");

    let many = source(CdnLogsConfig {
        rate_per_minute: 10,
        ..config("http://127.0.0.1:1", &["a.example", "b.example", "c.example"])
    });
    let plan = many
        .plan(&PlanRequest {
            from: t("2025-09-01T00:00:00Z"),
            to: t("2025-09-11T00:00:00Z"),
            now: t("2025-09-12T06:00:00Z"),
            settle: Duration::from_secs(3600),
        })
        .unwrap();
    let budget = plan.notes.iter().find(|n| n.contains("listing request")).unwrap();
    // 30 requests at 10 per minute: two more minutes after the first ten.
    assert!(
        budget.contains("30 listing request(s)") && budget.contains("about 2 min"),
        "{budget}"
    );
}

#[test]
fn parses_both_keys_keeps_only_the_day_and_orders_files() {
    let body = br#"[{"domain": "other.example", "logs": []},
      {"domain": "Live.Example.com", "logs": [
        {"timestamp": "2025-09-12T00:00:00Z", "values": [{"name": "next-day.log.gz", "url": "https://dl/x", "size": 1}]},
        {"timestamp": "2025-09-11T18:00:00Z", "value": [
            {"name": "20250911180000-1.log.gz", "url": "https://dl/b", "size": 20},
            {"name": "20250911180000.log.gz", "url": ["https://dl/a"], "size": 10}]},
        {"timestamp": "2025-09-11T17:55:00Z", "values": []},
        {"timestamp": "2025-09-11T00:00:00Z", "values": [{"name": "first.log.gz", "url": "https://dl/f"}]},
        {"timestamp": "2025-09-10T23:55:00Z", "values": [{"name": "prev-day.log.gz", "url": "https://dl/p", "size": 1}]}
      ]}]"#;
    let (files, dropped) = parse_listing(body, "live.example.com", day_window("2025-09-11")).unwrap();
    let names: Vec<_> = files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        ["first.log.gz", "20250911180000-1.log.gz", "20250911180000.log.gz"]
    );
    assert_eq!(dropped, 0);
    assert_eq!(files[2].url, "https://dl/a");
    assert_eq!((files[0].size, files[2].size), (None, Some(10)));
    assert_eq!(files[1].slot, t("2025-09-11T18:00:00Z"));

    let dup = br#"[{"domain": "d.example", "logs": [
        {"timestamp": "2025-09-11T10:00:00Z", "values": [{"name": "a.log.gz", "url": "u1", "size": 1}]},
        {"timestamp": "2025-09-11T10:05:00Z", "values": [{"name": "a.log.gz", "url": "u2", "size": 1}]}]}]"#;
    let (files, dropped) = parse_listing(dup, "d.example", day_window("2025-09-11")).unwrap();
    assert_eq!((files.len(), dropped), (1, 1));

    let err = parse_listing(
        br#"[{"domain": "x.example", "logs": []}]"#,
        "d.example",
        day_window("2025-09-11"),
    )
    .unwrap_err();
    assert!(
        err.contains("no entry for domain `d.example`") && err.contains("x.example"),
        "{err}"
    );
    assert!(parse_listing(br#"{"oops": 1}"#, "d.example", day_window("2025-09-11")).is_err());
    let err = parse_listing(
        br#"[{"domain": "d.example", "logs": [{"timestamp": "yesterday", "values": []}]}]"#,
        "d.example",
        day_window("2025-09-11"),
    )
    .unwrap_err();
    assert!(err.contains("slot timestamp `yesterday`"), "{err}");
    let (files, _) = parse_listing(b"[]", "d.example", day_window("2025-09-11")).unwrap();
    assert!(files.is_empty());
    // A domain with no slots at all: `logs` absent, null or empty.
    for body in [
        &br#"[{"domain": "d.example"}]"#[..],
        br#"[{"domain": "d.example", "logs": null}]"#,
        br#"[{"domain": "d.example", "logs": [{"timestamp": "2025-09-11T10:00:00Z", "values": null}]}]"#,
    ] {
        let (files, _) = parse_listing(body, "d.example", day_window("2025-09-11")).unwrap();
        assert!(files.is_empty(), "{}", String::from_utf8_lossy(body));
    }
}

#[test]
fn signed_url_expiry_and_content_range() {
    let now = t("2025-09-11T12:00:00Z");
    let listed = now - chrono::Duration::minutes(10);
    let at = now.timestamp();
    let url = |expire: i64| format!("https://dl/a.gz?expire={expire}&sign=x");
    assert!(expired(&url(at - 1), listed, now));
    assert!(expired(&url(at + 3), listed, now), "within the margin");
    assert!(!expired(&url(at + 600), listed, now));
    assert!(!expired("https://dl/a.gz?sign=x", listed, now));
    assert!(!expired("not a url", listed, now));
    // A URL that lives 2 s gets a margin of a quarter of that (0 s), not 5 s.
    assert!(!expired(&url(at + 2), now, now));
    assert!(expired(&url(at), now, now));
    assert_eq!(content_range_start("bytes 100-199/200"), Some(100));
    assert_eq!(content_range_start("bytes 0-0/*"), Some(0));
    assert_eq!(content_range_start("items 1-2/3"), None);
}

/// `n` bytes of a recognisable file.
fn file_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

fn listing(host: &str, files: &[(&str, usize)], generation: u32) -> Vec<u8> {
    let expire = Utc::now().timestamp() + 600;
    let values: Vec<String> = files
        .iter()
        .map(|(name, size)| {
            format!(
                r#"{{"name": "{name}", "url": "{host}/dl/{name}?g={generation}&expire={expire}&sign=s{generation}", "size": {size}}}"#
            )
        })
        .collect();
    let body = format!(
        r#"[{{"domain": "d.example", "logs": [{{"timestamp": "2025-09-11T10:00:00Z", "values": [{}]}}]}}]"#,
        values.join(",")
    );
    reply(200, &[("Content-Type", "application/json".into())], body.as_bytes())
}

fn unit() -> Unit {
    let window = day_window("2025-09-11");
    let mut unit = Unit {
        id: "cdn_logs-d.example-2025-09-11".into(),
        window,
        params: Default::default(),
        partitions: vec![("domain".into(), "d.example".into())],
        provisional: false,
    };
    unit.params.insert("domain".into(), "d.example".into());
    unit
}

/// Runs `fetch` and collects each payload's bytes, in payload order.
async fn fetch_all(
    s: &CdnLogs,
) -> (
    Result<etl_core::FetchStats, etl_core::StageError>,
    Vec<(String, Vec<u8>)>,
) {
    let (tx, mut rx) = mpsc::channel::<etl_core::Payload>(4);
    let unit = unit();
    let collect = async {
        let mut files = Vec::new();
        while let Some(p) = rx.recv().await {
            let PayloadBody::Chunks(mut chunks) = p.body else {
                panic!("a file payload")
            };
            let mut bytes = Vec::new();
            let mut failed = false;
            while let Some(c) = chunks.recv().await {
                match c {
                    Ok(c) => bytes.extend_from_slice(&c),
                    Err(_) => failed = true,
                }
            }
            if !failed {
                files.push((p.meta.labels["file_name"].clone(), bytes));
            }
        }
        files
    };
    let (result, files) = tokio::join!(s.fetch(&unit, PayloadSender::new(tx)), collect);
    (result, files)
}

#[tokio::test]
async fn a_broken_download_resumes_with_a_range_request() {
    let full = file_bytes(50_000);
    let body = full.clone();
    let server = routed(Arc::new(move |target: &str, range, nth, host: &str| {
        if target.starts_with("/lls/") {
            return listing(host, &[("a.log.gz", 50_000), ("b.log.gz", 10)], 1);
        }
        if target.starts_with("/dl/b.log.gz") {
            return reply(200, &[], &body[..10]);
        }
        match (nth, range) {
            // Announces the whole file, sends 20 000 bytes, closes.
            (1, None) => {
                let mut r = reply(200, &[], &body);
                r.truncate(r.len() - 30_000);
                r
            }
            (_, Some(from)) => {
                let from = from as usize;
                let cr = format!("bytes {from}-{}/{}", body.len() - 1, body.len());
                reply(206, &[("Content-Range", cr)], &body[from..])
            }
            _ => reply(500, &[], b"unexpected"),
        }
    }))
    .await;
    let s = source(config(&server.base, &["d.example"]));
    let (result, files) = fetch_all(&s).await;
    let stats = result.unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!(files[0].0, "a.log.gz");
    assert_eq!(files[0].1, full, "every byte exactly once");
    assert_eq!(files[1].1, full[..10]);
    assert_eq!(stats.payloads, 2);
    let heads = server.heads.lock().unwrap().clone();
    assert!(
        heads
            .iter()
            .any(|h| h.contains("range: bytes=20000-") || h.contains("Range: bytes=20000-"))
    );
    // The gateway header goes to the listing only, never to a download host.
    for h in &heads {
        let is_listing = h.starts_with("GET /lls/");
        assert_eq!(h.to_ascii_lowercase().contains("x-gateway-key"), is_listing, "{h}");
    }
}

#[tokio::test]
async fn a_server_that_ignores_range_is_resumed_by_skipping_what_was_delivered() {
    let full = file_bytes(40_000);
    let body = full.clone();
    let server = routed(Arc::new(move |target: &str, _range, nth, host: &str| {
        if target.starts_with("/lls/") {
            return listing(host, &[("a.log.gz", 40_000)], 1);
        }
        match nth {
            // A complete HTTP answer that is only the first part of the file (a "truncated
            // gzip"): only the listing's size tells.
            1 => reply(200, &[], &body[..15_000]),
            _ => reply(200, &[], &body),
        }
    }))
    .await;
    let s = source(config(&server.base, &["d.example"]));
    let (result, files) = fetch_all(&s).await;
    result.unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].1, full);
}

#[tokio::test]
async fn an_expired_url_is_refreshed_by_listing_again() {
    let listings = Arc::new(AtomicU32::new(0));
    let seen = Arc::clone(&listings);
    let full = file_bytes(1000);
    let body = full.clone();
    let server = routed(Arc::new(move |target: &str, _range, _nth, host: &str| {
        if target.starts_with("/lls/") {
            let g = seen.fetch_add(1, Ordering::SeqCst) + 1;
            return listing(host, &[("a.log.gz", 1000), ("b.log.gz", 1000)], g);
        }
        if target.contains("g=1&") {
            return reply(
                403,
                &[],
                b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>",
            );
        }
        reply(200, &[], &body)
    }))
    .await;
    let s = source(config(&server.base, &["d.example"]));
    let (result, files) = fetch_all(&s).await;
    result.unwrap();
    assert_eq!(files.len(), 2);
    assert!(files.iter().all(|(_, b)| *b == full));
    // Both files hit the expired URL, yet one fresh listing served both.
    assert_eq!(listings.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_url_that_stays_refused_fails_the_unit_after_bounded_refreshes() {
    let server = routed(Arc::new(move |target: &str, _range, _nth, host: &str| {
        if target.starts_with("/lls/") {
            return listing(host, &[("a.log.gz", 10)], 1);
        }
        reply(403, &[], b"Request has expired")
    }))
    .await;
    let s = source(config(&server.base, &["d.example"]));
    let (result, files) = fetch_all(&s).await;
    let err = result.unwrap_err();
    assert!(files.is_empty(), "a failed file never ends cleanly");
    let msg = err.to_string();
    assert!(msg.contains("a.log.gz") && msg.contains("after 3 refreshes"), "{msg}");
    assert!(!msg.contains("sign=s1"), "signatures are redacted: {msg}");
}

#[tokio::test]
async fn an_unknown_domain_fails_with_the_vendor_code() {
    let server = routed(Arc::new(move |_target: &str, _range, _nth, _host: &str| {
        reply(
            400,
            &[],
            br#"{"code": "LLS.Domain.NotFound", "message": "Domain name is not found."}"#,
        )
    }))
    .await;
    let s = source(config(&server.base, &["d.example"]));
    let (result, _) = fetch_all(&s).await;
    let err = result.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Permanent);
    let msg = err.to_string();
    assert!(
        msg.contains("does not know domain `d.example`") && msg.contains("LLS.Domain.NotFound"),
        "{msg}"
    );
}

#[tokio::test]
async fn downloads_to_a_host_not_allowed_are_refused() {
    let server = routed(Arc::new(move |_target: &str, _range, _nth, _host: &str| {
        let expire = Utc::now().timestamp() + 600;
        let body = format!(
            r#"[{{"domain": "d.example", "logs": [{{"timestamp": "2025-09-11T10:00:00Z", "values": [{{"name": "a.log.gz", "url": "http://evil.example:9/a.log.gz?expire={expire}", "size": 1}}]}}]}}]"#
        );
        reply(200, &[], body.as_bytes())
    }))
    .await;
    let s = source(config(&server.base, &["d.example"]));
    let (result, _) = fetch_all(&s).await;
    let err = result.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Permanent);
    assert!(err.to_string().contains("evil.example"), "{err}");
    assert_eq!(server.heads.lock().unwrap().len(), 1, "only the listing was sent");
}

#[tokio::test]
async fn a_redirected_download_is_refused_and_its_target_never_reached() {
    let target = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    target.set_nonblocking(true).unwrap();
    let elsewhere = format!("http://{}/x.log.gz?sig=stolen", target.local_addr().unwrap());
    let server = routed(Arc::new(move |t: &str, _range, _nth, host: &str| {
        if t.starts_with("/lls/") {
            return listing(host, &[("a.log.gz", 10)], 1);
        }
        reply(302, &[("Location", elsewhere.clone())], b"")
    }))
    .await;
    let s = source(config(&server.base, &["d.example"]));
    let (result, files) = fetch_all(&s).await;
    let err = result.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Permanent);
    let msg = err.to_string();
    assert!(
        msg.contains("a.log.gz") && msg.contains("HTTP 302 redirecting to") && msg.contains("never follow redirects"),
        "{msg}"
    );
    assert!(!msg.contains("stolen"), "the target's signature is redacted: {msg}");
    assert!(files.is_empty());
    assert!(target.accept().is_err(), "the redirect target got a connection");
}

#[tokio::test]
async fn file_names_that_are_paths_are_refused_before_any_download() {
    for (name, shown) in [
        ("../../etc/cron.d/x.log.gz", "../../etc/cron.d/x.log.gz"),
        ("/etc/passwd", "/etc/passwd"),
        ("%2e%2e%2fx.log.gz", "%2e%2e%2fx.log.gz"),
        ("x\\u0000.log.gz", "x\\u{0}.log.gz"),
        ("..", ".."),
    ] {
        let server = routed(Arc::new(move |_t: &str, _range, _nth, host: &str| {
            listing(host, &[(name, 10), ("b.log.gz", 10)], 1)
        }))
        .await;
        let s = source(config(&server.base, &["d.example"]));
        let (result, files) = fetch_all(&s).await;
        let err = result.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Permanent, "{name}");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("names a file `{shown}`, which is not a plain file name")),
            "{name}: {msg}"
        );
        assert!(files.is_empty());
        assert_eq!(
            server.heads.lock().unwrap().len(),
            1,
            "{name}: only the listing was requested"
        );
    }
}
