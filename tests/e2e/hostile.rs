//! Hostile and bad input through the product: what must never come out of a run, whatever the
//! servers do. (The parsers' own defences, XML depth and entities, gzip and zip bombs, names that
//! try to be paths, hosts that are not allowed, are unit-tested in the crates that own them.)

use std::path::Path;
use std::process::Output;

use crate::util::*;

/// Every credential the five pipelines are given, as the simulator expects them (the mail token
/// is the one [`Sim::start`] gives it).
const MAIL_TOKEN: &str = "sim-mail-token";
const TRACKING_USER: &str = "sim-user";
const TRACKING_KEY: &str = "sim-tracking-key";
const CDN_GATEWAY_KEY: &str = "cdn-gateway-key-4b1d";
const AUDIT_LICENSE: &str = "sim-license";
const AUDIT_ACCOUNT: &str = "sim-api-account";
const AUDIT_PASSWORD: &str = "sim-api-password";
const WEBDAV_TOKEN: &str = "sim-webdav-token";

/// Where the simulator's signed and capability URLs carry their secret: the CDN's `sign=` (40
/// hex digits) and `expire=` query values, and the audit export's token, the last path segment
/// of its download URL. What follows these must only ever be the redactor's `***`.
const SECRET_SLOTS: [&str; 3] = ["sign=", "expire=", "/auditLogDownload/V201812/download/"];

/// Standard base64, for the HTTP Basic credentials of the tracking API.
fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn secrets() -> Vec<String> {
    let mut s: Vec<String> = [
        MAIL_TOKEN,
        TRACKING_KEY,
        CDN_GATEWAY_KEY,
        AUDIT_LICENSE,
        AUDIT_ACCOUNT,
        AUDIT_PASSWORD,
        WEBDAV_TOKEN,
    ]
    .map(String::from)
    .to_vec();
    s.push(base64(format!("{TRACKING_USER}:{TRACKING_KEY}").as_bytes()));
    s
}

/// Every place in `text` where a secret, a signature or a 40-hex-digit run shows, with some
/// context, named by `origin`.
fn leaks(origin: &str, text: &str, secrets: &[String]) -> Vec<String> {
    let context = |at: usize| {
        let mut start = at.saturating_sub(60);
        while !text.is_char_boundary(start) {
            start -= 1;
        }
        let mut end = (at + 80).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        format!("{origin}: …{}…", &text[start..end])
    };
    let mut found = Vec::new();
    for s in secrets {
        found.extend(text.match_indices(s.as_str()).map(|(at, _)| context(at)));
    }
    // Parquet holds the vendors' records (URLs with their own query strings, ids): only the
    // pipeline's secrets are looked for there.
    if origin.ends_with(".parquet") {
        return found;
    }
    for slot in SECRET_SLOTS {
        for (at, _) in text.match_indices(slot) {
            let value = &text[at + slot.len()..];
            let shown = value.starts_with("***") || value.starts_with("%2A%2A%2A");
            // The name of the parameter alone (in prose, or a key with no value) is no leak.
            let empty = value.starts_with(['&', ' ', '"', '\'', '\n', ',', ')', '`']) || value.is_empty();
            if !shown && !empty {
                found.push(context(at));
            }
        }
    }
    let bytes = text.as_bytes();
    let mut run = 0;
    for (i, b) in bytes.iter().enumerate() {
        if b.is_ascii_hexdigit() {
            run += 1;
            continue;
        }
        if run == 40 {
            found.push(context(i - 40));
        }
        run = 0;
    }
    found
}

/// Every file under `root` (data, state, manifests, checkpoints, intents, dead letters), read as
/// text.
fn files_under(root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned();
                out.push((p.display().to_string(), text));
            }
        }
    }
    out
}

/// One pipeline run: its name, its pipeline file, its environment.
type Run<'a> = (&'a str, String, Vec<(String, String)>);

fn env(pairs: &[(&str, String)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    env.push(("ETL_LOG".into(), "debug".into()));
    env
}

fn run(args: &[&str], env: &[(String, String)]) -> (Output, String) {
    let started = std::time::Instant::now();
    let out = etl_command(args, env).output().expect("run etl");
    eprintln!(
        "--- etl {} -> {:?} in {:.1?}",
        args.join(" "),
        out.status.code(),
        started.elapsed()
    );
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

#[test]
fn the_leak_scan_finds_what_it_looks_for() {
    let s = secrets();
    assert_eq!(
        base64(b"sim-user:sim-tracking-key"),
        "c2ltLXVzZXI6c2ltLXRyYWNraW5nLWtleQ=="
    );
    assert_eq!(base64(b"ab"), "YWI=");
    for leaked in [
        "GET http://h/cdn-dl/d/20250911/a.log.gz?expire=1&sign=0123456789abcdef0123456789abcdef01234567 failed",
        "Authorization: Basic c2ltLXVzZXI6c2ltLXRyYWNraW5nLWtleQ==",
        "url=http://h/auditLogDownload/V201812/download/fOFrjyw7Iabc",
        "token sim-webdav-token rejected",
        "id 0123456789abcdef0123456789abcdef01234567\n",
    ] {
        assert!(!leaks("t", leaked, &s).is_empty(), "{leaked}");
    }
    for clean in [
        "GET http://h/cdn-dl/d/20250911/a.log.gz?expire=***&sign=*** failed",
        "url=http://h/auditLogDownload/V201812/download/***",
        "request id 0123456789abcdef0123456789abcdef, the `sign=` parameter",
    ] {
        assert_eq!(leaks("t", clean, &s), Vec::<String>::new(), "{clean}");
    }
}

#[test]
fn with_debug_logs_and_faults_no_secret_reaches_logs_state_or_manifests() {
    let sim = Sim::start(&[
        "--seed",
        "61",
        "--fault-rate",
        "0.2",
        "--mail-rows-per-day",
        "300",
        "--tracking-rows-per-day",
        "200",
        "--cdn-domains",
        "live.example.com",
        "--cdn-lines-per-slot",
        "2",
        "--audit-rows-per-day",
        "60",
        "--webdav-rows-per-file",
        "20",
    ]);
    let out = tempfile::tempdir().unwrap();
    let root = out.path().join("data");
    let etl_out = root.display().to_string();
    let (from, to) = (days_ago(1).to_string(), today().to_string());
    // The CDN pipeline with a secret listing header, as a deployment behind a gateway has.
    let cdn_yaml = std::fs::read_to_string(repo_path("pipelines/cdn.yaml"))
        .unwrap()
        .replacen(
            "  download_hosts:",
            "  headers:\n    X-Gateway-Key: ${CDN_GATEWAY_KEY}\n  download_hosts:",
            1,
        );
    assert!(cdn_yaml.contains("X-Gateway-Key"), "pipelines/cdn.yaml changed shape");
    let cdn_pipeline = out.path().join("cdn-with-headers.yaml");
    std::fs::write(&cdn_pipeline, cdn_yaml).unwrap();

    let pipeline = |name: &str| repo_path(&format!("pipelines/{name}")).display().to_string();
    let runs: Vec<Run> = vec![
        (
            "mail_delivery",
            pipeline("mail.yaml"),
            env(&[
                ("MAIL_DELIVERY_URL", sim.mail_url()),
                ("MAIL_DELIVERY_TOKEN", MAIL_TOKEN.into()),
                // Many pages, so that many requests meet a fault.
                ("MAIL_DELIVERY_MAX_ITEMS", "10".into()),
                ("ETL_OUT", etl_out.clone()),
            ]),
        ),
        (
            "mail_tracking",
            pipeline("tracking.yaml"),
            env(&[
                ("MAIL_TRACKING_URL", sim.base.clone()),
                ("MAIL_TRACKING_USER", TRACKING_USER.into()),
                ("MAIL_TRACKING_API_KEY", TRACKING_KEY.into()),
                ("MAIL_TRACKING_LIMIT", "10".into()),
                ("ETL_OUT", etl_out.clone()),
            ]),
        ),
        (
            "cdn_logs",
            cdn_pipeline.display().to_string(),
            env(&[
                ("CDN_LOGS_URL", sim.base.clone()),
                ("CDN_LOGS_DOMAINS", "live.example.com".into()),
                ("CDN_GATEWAY_KEY", CDN_GATEWAY_KEY.into()),
                // A day is some 400 files; waits for Retry-After overlap when many stream at once.
                ("CDN_LOGS_DOWNLOAD_CONCURRENCY", "48".into()),
                ("ETL_OUT", etl_out.clone()),
            ]),
        ),
        (
            "audit_log",
            pipeline("audit.yaml"),
            env(&[
                (
                    "AUDIT_LOG_URL",
                    format!("{}/services/V201812/AuditLogService", sim.base),
                ),
                ("AUDIT_LOG_LICENSE", AUDIT_LICENSE.into()),
                ("AUDIT_LOG_API_ACCOUNT_ID", AUDIT_ACCOUNT.into()),
                ("AUDIT_LOG_API_ACCOUNT_PASSWORD", AUDIT_PASSWORD.into()),
                ("AUDIT_LOG_ACCOUNT_ID", "100000001".into()),
                ("AUDIT_LOG_POLL_INTERVAL", "50ms".into()),
                ("AUDIT_LOG_POLL_INTERVAL_MAX", "200ms".into()),
                ("ETL_OUT", etl_out.clone()),
            ]),
        ),
        (
            "webdav_logs",
            pipeline("webdav.yaml"),
            env(&[
                ("WEBDAV_CELL_URL", format!("{}/sim-cell/", sim.base)),
                ("WEBDAV_TOKEN", WEBDAV_TOKEN.into()),
                ("ETL_OUT", etl_out.clone()),
            ]),
        ),
    ];
    let secrets = secrets();
    // The five run at once (each writes its own dataset): the CDN day alone is most of the time.
    let outputs: Vec<(&str, Output, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = runs
            .iter()
            .map(|(name, file, env)| {
                let (from, to) = (&from, &to);
                scope.spawn(move || {
                    let mut args = vec!["run", file.as_str()];
                    if *name != "webdav_logs" {
                        args.extend(["--from", from.as_str(), "--to", to.as_str()]);
                    }
                    let (output, text) = run(&args, env);
                    (*name, output, text)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut found = Vec::new();
    for (name, output, text) in &outputs {
        assert_eq!(output.status.code(), Some(0), "{name} failed under faults:\n{text}");
        assert!(text.contains("DEBUG"), "{name}: debug logging is not on");
        found.extend(leaks(&format!("{name} stdout/stderr"), text, &secrets));
    }
    // The faults were real, and signed URLs were minted and used.
    let stats = sim.stats();
    for api in ["mail_delivery", "mail_tracking", "cdn_logs"] {
        assert!(
            stats[api]["faults"].as_u64().unwrap_or(0) > 0,
            "no fault hit {api}: {stats}"
        );
    }
    let cdn = sim.get_json("/_sim/cdn/requests");
    assert!(cdn["downloads"]["ok"].as_u64().unwrap_or(0) > 100, "{cdn}");
    let audit = sim.get_json("/_sim/audit/jobs");
    assert!(audit["downloads"].as_u64().unwrap_or(0) > 0, "{audit}");
    let files = files_under(&root);
    for dataset in ["mail_delivery", "mail_tracking", "cdn_access", "audit_log", "event_log"] {
        for kind in ["state", "manifests"] {
            let dir = format!("{dataset}/_etl/{kind}/");
            assert!(
                files.iter().any(|(p, _)| p.contains(&dir)),
                "nothing under {dir}: the scan would miss it"
            );
        }
    }
    for (path, text) in &files {
        found.extend(leaks(path, text, &secrets));
    }
    assert!(found.is_empty(), "secrets leaked:\n{}", found.join("\n"));
}

/// A server that answers every request with `body` (HTTP 200, XML) and counts them: a mail
/// delivery API that sends one hostile page.
fn serve_page(body: Vec<u8>) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/mail-delivery/", listener.local_addr().unwrap());
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            // Read the head and the form it announces, then answer and close.
            let mut got = Vec::new();
            let mut buf = [0u8; 8192];
            while let Ok(n) = s.read(&mut buf) {
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len = text[..end]
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
                        .unwrap_or(0usize);
                    if got.len() >= end + 4 + len {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/xml; charset=UTF-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&body);
        }
    });
    (base, count)
}

/// A mail delivery page of `lines` (raw bytes, so that a line may be invalid UTF-8).
fn mail_page(lines: &[Vec<u8>]) -> Vec<u8> {
    let mut p = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<GetDeliveryLogResponse>\n<GetDeliveryLogResult>\n<LogCount>{}</LogCount>\n",
        lines.len()
    )
    .into_bytes();
    for l in lines {
        p.extend_from_slice(b"<Log>");
        p.extend_from_slice(l);
        p.extend_from_slice(b"</Log>\n");
    }
    p.extend_from_slice(b"</GetDeliveryLogResult>\n</GetDeliveryLogResponse>\n");
    p
}

/// Runs `pipelines/mail.yaml` (with `on_bad_record` as given) for one closed day against
/// `base`; returns the run, its output and the dataset.
fn run_mail_against(base: &str, policy: &str, out: &Path) -> (Output, String, std::path::PathBuf) {
    let yaml = std::fs::read_to_string(repo_path("pipelines/mail.yaml"))
        .unwrap()
        .replacen("on_bad_record: fail", &format!("on_bad_record: {policy}"), 1);
    assert!(yaml.contains(&format!("on_bad_record: {policy}")));
    let pipeline = out.join(format!("mail-{policy}.yaml"));
    std::fs::write(&pipeline, yaml).unwrap();
    let data = out.join(format!("data-{policy}"));
    let env = env(&[
        ("MAIL_DELIVERY_URL", base.to_string()),
        ("MAIL_DELIVERY_TOKEN", MAIL_TOKEN.into()),
        ("ETL_OUT", data.display().to_string()),
    ]);
    let (from, to) = (days_ago(2).to_string(), days_ago(1).to_string());
    let (output, text) = run(&["run", pipeline.to_str().unwrap(), "--from", &from, "--to", &to], &env);
    (output, text, data.join("mail_delivery"))
}

#[test]
fn bad_records_are_counted_and_kept_out_under_skip_and_stop_the_unit_under_fail() {
    let day = days_ago(2);
    let good = |i: u32| format!("{day} 08:00:{i:02} sent 250 tx.{i} a@example.com b@example.com 250_ok").into_bytes();
    let mut not_utf8 = format!("{day} 08:00:10 sent 250 tx.x a@example.com XX 250_ok").into_bytes();
    let at = not_utf8.windows(2).position(|w| w == b"XX").unwrap();
    not_utf8[at..at + 2].copy_from_slice(&[0xFF, 0xFE]);
    let wrong_type = format!("{day} 08:00:11 sent 2x0 tx.y a@example.com b@example.com 250_ok").into_bytes();
    // Lines 5 to 9 of the page: good, not UTF-8, good, wrong type, good.
    let page = mail_page(&[good(1), not_utf8, good(2), wrong_type, good(3)]);
    let (base, _) = serve_page(page);
    let out = tempfile::tempdir().unwrap();

    let (output, text, dataset) = run_mail_against(&base, "skip", out.path());
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert_eq!(read_mail(&dataset).len(), 3, "the good records are all kept");
    let dead: Vec<serde_json::Value> = files_under(&dataset.join("_etl/dead_letter"))
        .iter()
        .flat_map(|(_, t)| t.lines().map(|l| serde_json::from_str(l).unwrap()).collect::<Vec<_>>())
        .collect();
    let reasons: Vec<(u64, String)> = dead
        .iter()
        .map(|d| (d["line"].as_u64().unwrap(), d["reason"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        reasons,
        [
            (6, format!("invalid UTF-8 at byte {at} of the line")),
            (8, "status `2x0` is not a 3-digit number".to_string())
        ],
        "{dead:?}"
    );
    let summary_row = text
        .lines()
        .find(|l| l.starts_with(&format!("mail_delivery-{day}")))
        .unwrap_or_else(|| panic!("no summary row:\n{text}"));
    let cells: Vec<&str> = summary_row.split_whitespace().collect();
    // unit, status, rows, ..., bad, time.
    assert_eq!(
        (cells[1], cells[2], cells[cells.len() - 2]),
        ("committed", "3", "2"),
        "rows 3, bad 2: {summary_row}"
    );

    let (output, text, dataset) = run_mail_against(&base, "fail", out.path());
    assert_eq!(output.status.code(), Some(4), "{text}");
    assert!(
        text.contains("line 6") && text.contains(&format!("invalid UTF-8 at byte {at} of the line")),
        "the first bad record is named by line and cause:\n{text}"
    );
    assert!(
        parquet_files(&dataset).is_empty(),
        "nothing of a failed unit is committed"
    );
}

#[test]
fn a_page_nested_10000_deep_or_declaring_an_external_entity_fails_cleanly() {
    let day = days_ago(2);
    let line = format!("{day} 08:00:00 sent 250 tx.1 a@example.com b@example.com 250_ok").into_bytes();
    let page = String::from_utf8(mail_page(&[line])).unwrap();
    let deep = page.replacen(
        "</GetDeliveryLogResult>",
        &format!(
            "</GetDeliveryLogResult>{}{}",
            "<a>".repeat(10_000),
            "</a>".repeat(10_000)
        ),
        1,
    );
    let entity = page.replacen(
        "<GetDeliveryLogResponse>",
        "<!DOCTYPE GetDeliveryLogResponse [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><GetDeliveryLogResponse>",
        1,
    );
    for (body, reason) in [
        (deep, "element <a> is nested more than 64 elements deep"),
        (
            entity,
            "a DOCTYPE with an internal DTD subset (entity declarations) is not accepted",
        ),
    ] {
        let (base, requests) = serve_page(body.into_bytes());
        let out = tempfile::tempdir().unwrap();
        let (output, text, dataset) = run_mail_against(&base, "fail", out.path());
        assert!(matches!(output.status.code(), Some(3 | 4)), "{text}");
        assert!(text.contains(reason), "{reason}:\n{text}");
        assert!(!text.contains("panicked") && !text.contains("root:x:0:0"), "{text}");
        assert!(parquet_files(&dataset).is_empty());
        assert!(requests.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    }
}
