//! The WebDAV log store over HTTP, checked the way a client meets it: the listing parsed by namespace, the
//! files parsed as CSV by a reader written here (not the generator's code), the fingerprints recomputed
//! from the parsed fields and compared with the live truth.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::time::Duration;

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use reqwest::Method;
use serde_json::Value;

use super::{Harness, Reply, args, reply};
use crate::SimArgs;
use crate::data::fnv1a64;

pub(crate) const TOKEN: &str = "sim-webdav-token";

fn propfind() -> Method {
    Method::from_bytes(b"PROPFIND").expect("PROPFIND is a valid method token")
}

const ALLPROP: &str =
    "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<D:propfind xmlns:D=\"DAV:\">\n<D:allprop/>\n</D:propfind>";

struct Dav {
    h: Harness,
}

impl Dav {
    async fn start(args: SimArgs) -> Self {
        Self {
            h: Harness::start(args).await,
        }
    }

    /// `rest` below the cell URL `http://127.0.0.1:PORT/sim-cell/`.
    fn cell(&self, rest: &str) -> String {
        self.h.url(&format!("/sim-cell/{rest}"))
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Reply {
        reply(req.send().await.expect("request reaches the simulator")).await
    }

    async fn list(&self, rest: &str, depth: Option<&str>, token: Option<&str>, body: &str) -> Reply {
        let mut req = self
            .h
            .client
            .request(propfind(), self.cell(rest))
            .body(body.to_string());
        if let Some(d) = depth {
            req = req.header("Depth", d);
        }
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        self.send(req).await
    }

    async fn listing(&self, collection: &str) -> Vec<Entry> {
        let r = self.list(collection, Some("1"), Some(TOKEN), ALLPROP).await;
        assert_eq!(r.status, 207, "{}", r.body);
        parse_multistatus(&r.body)
    }

    async fn download(&self, url: &str) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
        let resp = self
            .h
            .client
            .get(url)
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("download reaches the simulator");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.expect("complete body").to_vec();
        (status, headers, body)
    }

    async fn json(&self, path: &str) -> Value {
        let r = self.send(self.h.client.get(self.h.url(path))).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        serde_json::from_str(&r.body).expect("JSON")
    }

    async fn rotate(&self) -> Value {
        let r = self.send(self.h.client.post(self.h.url("/_sim/webdav/rotate"))).await;
        assert_eq!(r.status, 200, "{}", r.body);
        serde_json::from_str(&r.body).expect("rotation JSON")
    }
}

fn dav_args(rows: u32) -> SimArgs {
    args(11, rows)
}

// ---------------------------------------------------------------------------------------------------------
// A multistatus reader that matches elements by namespace URI and local name
// ---------------------------------------------------------------------------------------------------------

#[derive(Debug, Default, Clone)]
struct Entry {
    href: String,
    /// Local names of `prop`'s children, in document order, with their text.
    props: Vec<(String, String)>,
    /// Local names of `propstat`'s children, in order.
    propstat_children: Vec<String>,
    status: String,
    collection: bool,
}

impl Entry {
    fn prop(&self, name: &str) -> Option<&str> {
        self.props.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn name(&self) -> &str {
        self.href.rsplit('/').next().unwrap_or("")
    }
}

/// Every element must be in `DAV:` (the seed's sample); returns the `response`s in document order.
fn parse_multistatus(xml: &str) -> Vec<Entry> {
    let mut reader = quick_xml::NsReader::from_str(xml);
    let mut stack: Vec<String> = Vec::new();
    let mut entries = Vec::new();
    let mut current = Entry::default();
    loop {
        let (ns, event) = reader.read_resolved_event().expect("well-formed multistatus");
        let in_dav = matches!(ns, ResolveResult::Bound(n) if n.as_ref() == "DAV:");
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let local = e.local_name().as_ref().to_string();
                assert!(in_dav, "{local} is not in the DAV: namespace");
                let parent = stack.last().map(String::as_str);
                if stack.is_empty() {
                    assert_eq!(local, "multistatus");
                }
                match parent {
                    Some("prop") => current.props.push((local.clone(), String::new())),
                    Some("propstat") => current.propstat_children.push(local.clone()),
                    Some("resourcetype") if local == "collection" => current.collection = true,
                    _ => {}
                }
                if local == "response" {
                    current = Entry::default();
                }
                if matches!(event, Event::Start(_)) {
                    stack.push(local);
                } else if local == "response" {
                    entries.push(std::mem::take(&mut current));
                }
            }
            Event::End(_) => {
                let closed = stack.pop();
                if closed.as_deref() == Some("response") {
                    entries.push(std::mem::take(&mut current));
                }
            }
            Event::Text(_) | Event::GeneralRef(_) => {
                let text = match &event {
                    Event::GeneralRef(r) => match r.as_ref() {
                        "amp" => "&".to_string(),
                        "lt" => "<".to_string(),
                        "gt" => ">".to_string(),
                        other => panic!("unexpected entity &{other};"),
                    },
                    Event::Text(t) => t.as_ref().to_string(),
                    _ => unreachable!("matched above"),
                };
                match (stack.last().map(String::as_str), stack.len()) {
                    (Some("href"), _) => current.href.push_str(&text),
                    (Some("status"), _) => current.status.push_str(&text),
                    (Some(_), n) if n >= 2 && stack[n - 2] == "prop" => {
                        if let Some(last) = current.props.last_mut() {
                            last.1.push_str(&text);
                        }
                    }
                    _ => assert!(text.trim().is_empty(), "stray text {text:?}"),
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    entries
}

// ---------------------------------------------------------------------------------------------------------
// A tiny CSV reader for the event log: every field quoted, quotes doubled, LF after each record
// ---------------------------------------------------------------------------------------------------------

fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut fields = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        assert_eq!(c, '"', "every field is quoted (record {})", records.len() + 1);
        let mut field = String::new();
        loop {
            match chars.next() {
                Some('"') if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                Some('"') => break,
                Some(other) => field.push(other),
                None => panic!("unterminated quoted field in record {}", records.len() + 1),
            }
        }
        fields.push(field);
        match chars.next() {
            Some(',') => {}
            Some('\n') => records.push(std::mem::take(&mut fields)),
            other => panic!("after a field: {other:?}"),
        }
    }
    assert!(fields.is_empty(), "the last record ends with LF");
    records
}

/// Epoch microseconds of `YYYY-MM-DDThh:mm:ss.mmmZ`.
fn micros(at: &str) -> i64 {
    assert_eq!(at.len(), 24, "{at}");
    chrono::DateTime::parse_from_rfc3339(at)
        .unwrap_or_else(|e| panic!("{at}: {e}"))
        .timestamp_micros()
}

fn level(bracketed: &str) -> &'static str {
    match bracketed {
        "[INFO ]" => "INFO",
        "[WARN ]" => "WARN",
        "[ERROR]" => "ERROR",
        other => panic!("unknown level {other:?}"),
    }
}

/// `(day, level, hash)` of each parsed record, following the documented contract.
fn hashes(records: &[Vec<String>]) -> Vec<(String, &'static str, u64)> {
    records
        .iter()
        .map(|f| {
            assert_eq!(f.len(), 10, "ten fields: {f:?}");
            let dash = |s: &str| if s.is_empty() { "-".to_string() } else { s.to_string() };
            let canonical = [
                micros(&f[0]).to_string(),
                level(&f[1]).to_string(),
                dash(&f[2]),
                dash(&f[3]),
                dash(&f[4]),
                dash(&f[5]),
                dash(&f[6]),
                dash(&f[7]),
                dash(&f[8]),
                f[9].parse::<u64>().expect("bytes is an integer").to_string(),
            ]
            .join("\u{1f}");
            (f[0][..10].to_string(), level(&f[1]), fnv1a64(canonical.as_bytes()))
        })
        .collect()
}

fn sum(hs: impl Iterator<Item = u64>) -> String {
    format!("{:016x}", hs.fold(0u64, u64::wrapping_add))
}

/// The CSV text of a downloaded file: the body itself, or the one deflated entry of a zip.
fn csv_of(name: &str, body: &[u8]) -> (String, Option<String>) {
    if !name.ends_with(".zip") {
        return (String::from_utf8(body.to_vec()).expect("UTF-8 CSV"), None);
    }
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(body.to_vec())).expect("a zip archive");
    assert_eq!(z.len(), 1, "{name} holds one entry");
    let mut entry = z.by_index(0).expect("the entry");
    assert_eq!(
        entry.compression(),
        zip::CompressionMethod::Deflated,
        "{name} is deflated"
    );
    let entry_name = entry.name().to_string();
    let mut text = String::new();
    entry.read_to_string(&mut text).expect("the entry inflates to UTF-8");
    (text, Some(entry_name))
}

// ---------------------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn cell_requests_need_the_bearer_token() {
    let dav = Dav::start(dav_args(20)).await;
    for token in [None, Some("wrong-token")] {
        let r = dav.list("__log/archive", Some("1"), token, ALLPROP).await;
        assert_eq!(r.status, 401, "{token:?}: {}", r.body);
        let v: Value = serde_json::from_str(&r.body).expect("JSON error");
        assert!(v["code"].as_str().is_some_and(|c| c.starts_with("PR401-")), "{v}");
        assert_eq!(v["message"]["lang"], "en");
        assert!(v["message"]["value"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(r.header("www-authenticate").is_some_and(|h| h.starts_with("Bearer ")));
    }
    let basic = dav
        .send(
            dav.h
                .client
                .get(dav.cell("__log/current/default.log"))
                .basic_auth("me", Some(TOKEN)),
        )
        .await;
    assert_eq!(basic.status, 401, "another scheme is refused");
    let anon = dav.send(dav.h.client.get(dav.cell("__log/current/default.log"))).await;
    assert_eq!(anon.status, 401);
    let lower = dav
        .send(
            dav.h
                .client
                .get(dav.cell("__log/current/default.log"))
                .header("Authorization", format!("bearer {TOKEN}")),
        )
        .await;
    assert_eq!(lower.status, 200, "the scheme is case-insensitive");
    let req = dav.json("/_sim/webdav/requests").await;
    assert_eq!(req["refused"]["401"], 4);
}

#[tokio::test]
async fn propfind_needs_depth_and_an_allprop_body() {
    let dav = Dav::start(dav_args(20)).await;
    let r = dav.list("__log/archive", None, Some(TOKEN), ALLPROP).await;
    assert_eq!(r.status, 400, "{}", r.body);
    let v: Value = serde_json::from_str(&r.body).expect("JSON error");
    assert!(v["code"].as_str().is_some_and(|c| c.starts_with("PR400-")), "{v}");
    assert_eq!(v["message"]["lang"], "en");
    for depth in ["infinity", "2", ""] {
        let r = dav.list("__log/archive", Some(depth), Some(TOKEN), ALLPROP).await;
        assert_eq!(r.status, 400, "Depth {depth:?}: {}", r.body);
    }
    let r = dav
        .list(
            "__log/archive",
            Some("1"),
            Some(TOKEN),
            "<D:propfind xmlns:D=\"DAV:\"><D:propname/></D:propfind>",
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    // An empty body is allprop.
    let r = dav.list("__log/archive", Some("1"), Some(TOKEN), "").await;
    assert_eq!(r.status, 207, "{}", r.body);
    // Unknown collections and methods.
    let r = dav.list("__log/archives", Some("1"), Some(TOKEN), "").await;
    assert_eq!(r.status, 404, "{}", r.body);
    let r = dav
        .send(
            dav.h
                .client
                .put(dav.cell("__log/current/default.log"))
                .bearer_auth(TOKEN)
                .body("x"),
        )
        .await;
    assert_eq!(r.status, 405, "{}", r.body);
    let r = dav
        .send(dav.h.client.get(dav.cell("__log/archive")).bearer_auth(TOKEN))
        .await;
    assert_eq!(r.status, 405, "a collection is listed, not read: {}", r.body);
}

#[tokio::test]
async fn the_listing_is_shaped_like_the_seed_sample() {
    let dav = Dav::start(dav_args(20)).await;
    let r = dav.list("__log/archive", Some("1"), Some(TOKEN), ALLPROP).await;
    assert_eq!(r.status, 207, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/xml"));
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert!(r.header("x-personium-version").is_some());
    assert!(
        r.body.starts_with(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<multistatus xmlns=\"DAV:\" xmlns:p=\"urn:x-personium:xmlns\">\n<response>\n<href>"
        ),
        "{}",
        &r.body[..200]
    );
    let entries = parse_multistatus(&r.body);
    assert_eq!(entries.len(), 13, "the collection and 12 archives");
    let base = dav.cell("__log/archive");
    let collection = &entries[0];
    assert_eq!(
        collection.href, base,
        "the collection comes first, absolute, without a trailing slash"
    );
    assert!(collection.collection);
    let names: Vec<&str> = collection.props.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["creationdate", "getlastmodified", "resourcetype"]);

    let mut stamps = Vec::new();
    for e in &entries {
        assert_eq!(
            e.propstat_children,
            ["prop", "status"],
            "prop before status, as in the sample"
        );
        assert_eq!(e.status, "HTTP/1.1 200 OK");
        let created = e.prop("creationdate").expect("creationdate");
        assert!(
            chrono::DateTime::parse_from_str(created, "%Y-%m-%dT%H:%M:%S%.3f%z").is_ok() && created.ends_with("+0000"),
            "{created}"
        );
        let modified = e.prop("getlastmodified").expect("getlastmodified");
        assert!(
            httpdate::parse_http_date(modified).is_ok() && modified.ends_with(" GMT"),
            "{modified}"
        );
    }
    for e in &entries[1..] {
        assert!(!e.collection);
        let names: Vec<&str> = e.props.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "creationdate",
                "getcontentlength",
                "getcontenttype",
                "getlastmodified",
                "resourcetype"
            ]
        );
        let name = e.name();
        assert_eq!(e.href, format!("{base}/{name}"));
        let stamp = name.strip_prefix("default.log.").expect("archive name");
        let stamp = stamp.strip_suffix(".zip").unwrap_or(stamp);
        stamps.push(stamp.parse::<i64>().expect("epoch milliseconds"));
        let ct = e.prop("getcontenttype").expect("content type");
        assert_eq!(
            ct,
            if name.ends_with(".zip") {
                "application/zip"
            } else {
                "text/csv"
            }
        );
        let (status, headers, body) = dav.download(&e.href).await;
        assert_eq!(status, 200);
        assert_eq!(e.prop("getcontentlength"), Some(body.len().to_string().as_str()));
        assert_eq!(headers.get("content-type").and_then(|v| v.to_str().ok()), Some(ct));
    }
    stamps.sort_unstable();
    assert!(stamps.windows(2).all(|w| w[1] - w[0] == 6 * 3_600_000), "a 6-hour grid");
    assert!(stamps[11] < chrono::Utc::now().timestamp_millis());
    assert_eq!(
        entries.iter().filter(|e| e.name().ends_with(".zip")).count(),
        4,
        "every third archive is zipped"
    );

    // Children come in no particular order: a few listings do not all agree.
    let mut orders = BTreeSet::new();
    for _ in 0..4 {
        let order: Vec<String> = dav
            .listing("__log/archive/")
            .await
            .iter()
            .map(|e| e.href.clone())
            .collect();
        assert_eq!(order[0], base, "the trailing slash names the same collection");
        orders.insert(order);
    }
    assert!(orders.len() > 1, "the children were listed in one order every time");

    let depth0 = parse_multistatus(&dav.list("__log/archive", Some("0"), Some(TOKEN), ALLPROP).await.body);
    assert_eq!(depth0.len(), 1);
    assert_eq!(depth0[0].href, base);

    let current = dav.listing("__log/current").await;
    assert_eq!(current.len(), 2);
    assert_eq!(current[0].href, dav.cell("__log/current"));
    assert_eq!(current[1].href, dav.cell("__log/current/default.log"));
    assert_eq!(current[1].prop("getcontenttype"), Some("text/csv"));

    let stats = dav.h.stats().await;
    assert!(
        stats["webdav_logs"]["data_requests"].as_u64().is_some_and(|n| n >= 19),
        "{stats}"
    );
    let req = dav.json("/_sim/webdav/requests").await;
    assert_eq!(req["propfind"], 7);
}

#[tokio::test]
async fn the_seed_overrides_turn_a_post_into_a_propfind() {
    let dav = Dav::start(dav_args(20)).await;
    let r = dav
        .send(
            dav.h
                .client
                .post(dav.cell("__log/current"))
                .bearer_auth(TOKEN)
                .header("X-HTTP-Method-Override", "PROPFIND")
                .header("X-Override", "Depth:1")
                .body(ALLPROP),
        )
        .await;
    assert_eq!(r.status, 207, "{}", r.body);
    assert_eq!(parse_multistatus(&r.body).len(), 2);
}

#[tokio::test]
async fn every_file_reads_back_to_the_truth() {
    let dav = Dav::start(dav_args(150)).await;
    let truth = dav.json("/_sim/webdav/truth").await;
    assert!(
        truth["fingerprint_definition"]
            .as_str()
            .is_some_and(|d| d.contains("U+001F"))
    );

    let mut listed = dav.listing("__log/archive").await;
    listed.extend(dav.listing("__log/current").await);
    let files: Vec<&Entry> = listed.iter().filter(|e| !e.collection).collect();
    let names: BTreeSet<&str> = files.iter().map(|e| e.name()).collect();
    let truth_names: BTreeSet<&str> = truth["files"]
        .as_object()
        .expect("files")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(names, truth_names, "the truth covers exactly the listed files");

    let mut days: BTreeMap<String, (u64, BTreeMap<&str, u64>, u64)> = BTreeMap::new();
    let mut line_breaks = 0;
    for e in &files {
        let (status, _, body) = dav.download(&e.href).await;
        assert_eq!(status, 200, "{}", e.href);
        let (text, entry) = csv_of(e.name(), &body);
        if let Some(entry) = entry {
            assert_eq!(
                format!("{entry}.zip"),
                e.name(),
                "the entry is the archive's plain name"
            );
        }
        assert!(!text.starts_with('\u{feff}'), "no BOM");
        assert!(!text.contains('\r'), "LF only");
        let records = parse_csv(&text);
        line_breaks += records.iter().filter(|f| f.iter().any(|x| x.contains('\n'))).count();
        let hs = hashes(&records);
        let t = &truth["files"][e.name()];
        assert_eq!(t["rows"], records.len(), "{}", e.name());
        assert_eq!(t["fingerprint"], sum(hs.iter().map(|h| h.2)), "{}", e.name());
        // The records of an archive lie between the previous rotation and its own.
        if let Some(stamp) = e.name().strip_prefix("default.log.") {
            let rotated: i64 = stamp.trim_end_matches(".zip").parse().expect("stamp");
            assert!(records.iter().all(|f| micros(&f[0]) < rotated * 1000));
            assert!(
                records
                    .iter()
                    .all(|f| micros(&f[0]) >= (rotated - 6 * 3_600_000) * 1000)
            );
        }
        for (day, lvl, h) in hs {
            let d = days.entry(day).or_default();
            d.0 += 1;
            *d.1.entry(lvl).or_default() += 1;
            d.2 = d.2.wrapping_add(h);
        }
    }
    assert!(line_breaks > 0, "some fields hold line breaks");
    let truth_days = truth["days"].as_object().expect("days");
    assert_eq!(truth_days.len(), days.len());
    assert!(days.len() >= 4);
    for (day, (rows, levels, fp)) in &days {
        let t = &truth_days[day];
        assert_eq!(t["rows"], *rows, "{day}");
        assert_eq!(t["fingerprint"], format!("{fp:016x}"), "{day}");
        for l in ["INFO", "WARN", "ERROR"] {
            assert_eq!(t["per_level"][l], levels.get(l).copied().unwrap_or(0), "{day} {l}");
        }
    }
    let req = dav.json("/_sim/webdav/requests").await;
    assert_eq!(req["get"].as_object().map(|g| g.len()), Some(13));
    assert!(req["get"].as_object().is_some_and(|g| g.values().all(|n| n == 1)));
}

#[tokio::test]
async fn rotation_moves_the_current_file_into_the_archive() {
    let dav = Dav::start(dav_args(40)).await;
    let before = dav.json("/_sim/webdav/truth").await;
    let archive_before: Vec<String> = dav
        .listing("__log/archive")
        .await
        .iter()
        .skip(1)
        .map(|e| e.name().to_string())
        .collect();
    let mut sorted = archive_before.clone();
    sorted.sort_by_key(|n| {
        n.trim_start_matches("default.log.")
            .trim_end_matches(".zip")
            .parse::<i64>()
            .unwrap_or(0)
    });
    let oldest = sorted[0].clone();
    let (_, _, old_current) = dav.download(&dav.cell("__log/current/default.log")).await;

    let started = chrono::Utc::now().timestamp_millis();
    let rotation = dav.rotate().await;
    let archived = rotation["archived"].as_str().expect("archived").to_string();
    let at = rotation["rotated_at_ms"].as_i64().expect("time");
    assert!(at >= started - 1000 && at <= chrono::Utc::now().timestamp_millis());
    assert_eq!(archived, format!("default.log.{at}"), "generation 12 is archived plain");
    assert_eq!(rotation["removed"], serde_json::json!([oldest.clone()]));

    let after: Vec<String> = dav
        .listing("__log/archive")
        .await
        .iter()
        .skip(1)
        .map(|e| e.name().to_string())
        .collect();
    assert_eq!(after.len(), 12);
    assert!(after.contains(&archived));
    assert!(!after.contains(&oldest));
    let (status, _, moved) = dav.download(&dav.cell(&format!("__log/archive/{archived}"))).await;
    assert_eq!(status, 200);
    assert_eq!(moved, old_current, "the current file became the archive unchanged");
    let (status, _, _) = dav.download(&dav.cell(&format!("__log/archive/{oldest}"))).await;
    assert_eq!(status, 404, "the oldest archive is gone");
    let (_, _, new_current) = dav.download(&dav.cell("__log/current/default.log")).await;
    assert_ne!(new_current, old_current);
    let new_records = parse_csv(std::str::from_utf8(&new_current).expect("utf-8"));
    assert!(!new_records.is_empty());
    let now_us = chrono::Utc::now().timestamp_micros();
    assert!(
        new_records
            .iter()
            .all(|f| (at * 1000..=now_us).contains(&micros(&f[0]))),
        "the new current's records lie after the rotation and are not in the future"
    );

    let truth = dav.json("/_sim/webdav/truth").await;
    assert_eq!(truth["files"][&archived], before["files"]["default.log"]);
    assert!(truth["files"].get(&oldest).is_none());
    assert_ne!(truth["files"]["default.log"], before["files"]["default.log"]);
    let rows = |t: &Value, key: &str| -> u64 {
        t[key]
            .as_object()
            .expect("map")
            .values()
            .map(|v| v["rows"].as_u64().expect("rows"))
            .sum()
    };
    assert_eq!(rows(&truth, "files"), rows(&truth, "days"));
    assert_eq!(
        rows(&truth, "files"),
        rows(&before, "files") - before["files"][&oldest]["rows"].as_u64().expect("rows")
            + truth["files"]["default.log"]["rows"].as_u64().expect("rows")
    );
    assert_ne!(truth["days"], before["days"]);

    // A second rotation archives generation 13 (plain); the third, generation 14, is zipped.
    dav.rotate().await;
    let third = dav.rotate().await;
    assert!(
        third["archived"].as_str().is_some_and(|n| n.ends_with(".zip")),
        "{third}"
    );
    let req = dav.json("/_sim/webdav/requests").await;
    assert_eq!(req["rotations"], 3);
}

#[tokio::test]
async fn hostile_switches_show_up_where_documented() {
    let plain = Dav::start(dav_args(20)).await;
    let listed = plain.listing("__log/archive").await;
    let base = plain.cell("");
    assert!(
        listed.iter().all(|e| e.href.starts_with(&base)),
        "no hostile href without the switch"
    );

    let dav = Dav::start(SimArgs {
        webdav_evil_zip_entry: true,
        webdav_evil_href: true,
        ..dav_args(20)
    })
    .await;
    let base = dav.cell("");
    let listed = dav.listing("__log/archive").await;
    let outside: Vec<&str> = listed
        .iter()
        .map(|e| e.href.as_str())
        .filter(|h| !h.starts_with(&base) || h.contains("%2e%2e"))
        .collect();
    assert_eq!(outside.len(), 3, "{outside:?}");
    assert!(outside.contains(&dav.h.url("/other-cell/__log/archive/default.log.1").as_str()));
    assert!(outside.contains(&dav.cell("__log/archive/%2e%2e/%2e%2e/secret").as_str()));
    assert!(outside.contains(&"http://evil.invalid/sim-cell/__log/archive/default.log.2"));

    let mut zips: Vec<(i64, String)> = Vec::new();
    for e in listed.iter().filter(|e| e.name().ends_with(".zip")) {
        let (status, _, body) = dav.download(&e.href).await;
        assert_eq!(status, 200);
        assert_eq!(e.prop("getcontentlength"), Some(body.len().to_string().as_str()));
        let (text, entry) = csv_of(e.name(), &body);
        assert!(!parse_csv(&text).is_empty());
        let stamp = e.name().trim_start_matches("default.log.").trim_end_matches(".zip");
        zips.push((stamp.parse().expect("stamp"), entry.expect("entry name")));
    }
    zips.sort();
    let (newest, rest) = zips.split_last().expect("zipped archives exist");
    assert_eq!(newest.1, "../../x");
    assert!(rest.iter().all(|(t, n)| *n == format!("default.log.{t}")));

    // Following a hostile href is answered with bait and counted.
    let (status, _, bait) = dav
        .download(&dav.h.url("/other-cell/__log/archive/default.log.1"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(parse_csv(std::str::from_utf8(&bait).expect("utf-8")).len(), 1);
    // reqwest (a WHATWG URL parser) resolves the %2e%2e segments before sending.
    let (status, _, _) = dav.download(&dav.cell("__log/archive/%2e%2e/%2e%2e/secret")).await;
    assert_eq!(status, 200);
    let req = dav.json("/_sim/webdav/requests").await;
    assert_eq!(req["other_paths"]["/other-cell/__log/archive/default.log.1"], 1);
    assert_eq!(req["other_paths"]["/sim-cell/secret"], 1);
    let truth = dav.json("/_sim/webdav/truth").await;
    assert_eq!(
        truth["files"].as_object().map(|f| f.len()),
        Some(13),
        "hostile hrefs are no files"
    );
}

#[tokio::test]
async fn faults_hit_listings_and_downloads() {
    let dav = Dav::start(SimArgs {
        fault_rate: 1.0,
        ..dav_args(20)
    })
    .await;
    let mut seen = BTreeSet::new();
    for i in 0..20 {
        let url = dav.cell("__log/current/default.log");
        let req = if i % 2 == 0 {
            dav.h
                .client
                .request(propfind(), dav.cell("__log/archive"))
                .header("Depth", "1")
        } else {
            dav.h.client.get(url)
        };
        let resp = tokio::time::timeout(Duration::from_secs(10), req.bearer_auth(TOKEN).send())
            .await
            .expect("answers within 10 s");
        match resp {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let retry_after = resp.headers().contains_key("retry-after");
                match resp.bytes().await {
                    Ok(_) => {
                        seen.insert(format!("{status}{}", if retry_after { "+ra" } else { "" }));
                    }
                    Err(_) => {
                        seen.insert("cut".to_string());
                    }
                }
            }
            Err(_) => {
                seen.insert("cut".to_string());
            }
        }
    }
    assert!(seen.contains("500"), "{seen:?}");
    assert!(seen.iter().any(|s| s.starts_with("503")), "{seen:?}");
    assert!(seen.contains("cut"), "a body broke off: {seen:?}");
    let stats = dav.h.stats().await;
    assert_eq!(stats["webdav_logs"]["faults"], 20, "{stats}");
    assert_eq!(stats["webdav_logs"]["requests"], 20);
}

#[tokio::test]
async fn the_truth_file_holds_the_start_up_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("truth.json");
    let dav = Dav::start(SimArgs {
        truth: Some(path.clone()),
        ..dav_args(10)
    })
    .await;
    let file: Value = serde_json::from_slice(&std::fs::read(&path).expect("truth written")).expect("JSON");
    let live = dav.json("/_sim/webdav/truth").await;
    assert_eq!(file["webdav_logs"], live);
    assert_eq!(live["files"].as_object().map(|f| f.len()), Some(13));
}
