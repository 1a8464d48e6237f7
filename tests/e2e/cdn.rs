//! `etl run pipelines/cdn.yaml` against the simulator's CDN delivery-log API: listing, rate
//! budget, signed downloads, gzip, access-log decoding, all checked against the ground truth.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, TimestampMicrosecondType, UInt16Type, UInt32Type, UInt64Type};
use arrow_array::{Array, ArrayRef};
use chrono::NaiveDate;
use serde_json::Value;

use crate::util::*;

const DOMAINS: &str = "live.example.com,vod.example.com";

pub(crate) fn cdn_env(sim: &Sim, out: &Path, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = vec![
        ("CDN_LOGS_URL".to_string(), sim.base.clone()),
        ("CDN_LOGS_DOMAINS".to_string(), DOMAINS.to_string()),
        ("ETL_OUT".to_string(), out.display().to_string()),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

fn run_cdn(sim: &Sim, out: &Path, from: &str, to: &str, extra: &[(&str, &str)]) -> std::process::Output {
    let pipeline = repo_path("pipelines/cdn.yaml");
    etl(
        &["run", pipeline.to_str().unwrap(), "--from", from, "--to", to],
        &cdn_env(sim, out, extra),
    )
}

/// The two full days before today (inside the simulator's truth).
fn two_days() -> (Vec<NaiveDate>, String, String) {
    (
        vec![days_ago(2), days_ago(1)],
        days_ago(2).to_string(),
        today().to_string(),
    )
}

/// A column value as text: strings (plain or dictionary), integers, `-` for null.
fn text(col: &ArrayRef, i: usize) -> String {
    if col.is_null(i) {
        return "-".into();
    }
    match col.data_type() {
        arrow_schema::DataType::Dictionary(..) => {
            let d = col.as_dictionary::<Int32Type>();
            d.values()
                .as_string::<i32>()
                .value(d.keys().value(i) as usize)
                .to_string()
        }
        arrow_schema::DataType::Utf8 => col.as_string::<i32>().value(i).to_string(),
        arrow_schema::DataType::UInt16 => col.as_primitive::<UInt16Type>().value(i).to_string(),
        arrow_schema::DataType::UInt32 => col.as_primitive::<UInt32Type>().value(i).to_string(),
        arrow_schema::DataType::UInt64 => col.as_primitive::<UInt64Type>().value(i).to_string(),
        arrow_schema::DataType::Timestamp(..) => col.as_primitive::<TimestampMicrosecondType>().value(i).to_string(),
        other => panic!("unexpected column type {other}"),
    }
}

/// What the simulator's truth states per domain and day.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct DomainDay {
    rows: u64,
    bytes_sum: u64,
    distinct_request_ids: u64,
    fingerprint: String,
}

/// Reads `cdn_access/` back: per (domain, dt), the truth's measures computed from the Parquet.
pub(crate) fn summarize_dataset(root: &Path) -> BTreeMap<(String, String), DomainDay> {
    /// rows, sum of bytes, request ids, fingerprint
    type Acc = (u64, u64, BTreeSet<String>, u64);
    let mut acc: BTreeMap<(String, String), Acc> = BTreeMap::new();
    const COLUMNS: [&str; 14] = [
        "requested_at",
        "client_ip",
        "method",
        "url",
        "protocol",
        "status",
        "bytes",
        "time_taken_ms",
        "referer",
        "user_agent",
        "cache_status",
        "edge_location",
        "request_id",
        "file_name",
    ];
    for file in parquet_files(root) {
        let dt_dir = file.parent().unwrap();
        let dt = dt_dir
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .strip_prefix("dt=")
            .unwrap();
        let domain = dt_dir
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .strip_prefix("domain=")
            .unwrap_or_else(|| panic!("{} is not under a domain= folder", file.display()));
        let e = acc.entry((domain.to_string(), dt.to_string())).or_default();
        for b in read_batches(&file) {
            assert!(
                b.column_by_name("domain").is_none(),
                "the partition key is not a column"
            );
            let cols: Vec<&ArrayRef> = COLUMNS
                .iter()
                .map(|c| b.column_by_name(c).unwrap_or_else(|| panic!("no column {c}")))
                .collect();
            let bytes = b.column_by_name("bytes").unwrap().as_primitive::<UInt64Type>();
            let ids = b.column_by_name("request_id").unwrap().as_string::<i32>();
            for i in 0..b.num_rows() {
                let canonical: Vec<String> = cols.iter().map(|c| text(c, i)).collect();
                e.0 += 1;
                e.1 += bytes.value(i);
                e.2.insert(ids.value(i).to_string());
                e.3 = e.3.wrapping_add(fnv1a64(&canonical.join("\u{1f}")));
            }
        }
    }
    acc.into_iter()
        .map(|(k, (rows, bytes_sum, ids, fp))| {
            (
                k,
                DomainDay {
                    rows,
                    bytes_sum,
                    distinct_request_ids: ids.len() as u64,
                    fingerprint: format!("{fp:016x}"),
                },
            )
        })
        .collect()
}

pub(crate) fn truth(sim: &Sim, days: &[NaiveDate], domains: &[&str]) -> BTreeMap<(String, String), DomainDay> {
    let mut out = BTreeMap::new();
    for d in days {
        let day = d.format("%Y-%m-%d").to_string();
        for domain in domains {
            let t = &sim.truth["cdn_logs"]["days"][&day][domain];
            let n = |k: &str| {
                t[k].as_u64()
                    .unwrap_or_else(|| panic!("no truth {k} for {domain} {day}: {t}"))
            };
            if n("rows") == 0 {
                continue;
            }
            out.insert(
                (domain.to_string(), day.clone()),
                DomainDay {
                    rows: n("rows"),
                    bytes_sum: n("bytes_sum"),
                    distinct_request_ids: n("distinct_request_ids"),
                    fingerprint: t["fingerprint"].as_str().unwrap().to_string(),
                },
            );
        }
    }
    out
}

fn assert_matches_truth(sim: &Sim, out: &Path, days: &[NaiveDate]) {
    let domains: Vec<&str> = DOMAINS.split(',').collect();
    let got = summarize_dataset(&out.join("cdn_access"));
    assert_eq!(got, truth(sim, days, &domains));
}

/// `GET /_sim/cdn/requests`.
pub(crate) fn requests(sim: &Sim) -> Value {
    sim.get_json("/_sim/cdn/requests")
}

pub(crate) fn listing_requests(sim: &Sim) -> Vec<Value> {
    requests(sim)["listing"].as_array().unwrap().clone()
}

/// No listing was refused, and at most `per_minute` of them fell in any sliding minute.
pub(crate) fn assert_listings_under(listings: &[Value], per_minute: usize) {
    assert!(
        listings.iter().all(|r| r["limited"] == false && r["status"] == 200),
        "no listing was refused: {listings:?}"
    );
    let times: Vec<i64> = listings.iter().map(|r| r["at_ms"].as_i64().unwrap()).collect();
    for &t in &times {
        let in_window = times.iter().filter(|&&u| u <= t && u > t - 60_000).count();
        assert!(in_window <= per_minute, "{in_window} listings in the minute before {t}");
    }
}

/// The shipped pipeline's `plain_columns`: the columns that rarely repeat have no dictionary,
/// every other column has one.
fn assert_dictionaries(dataset: &Path) {
    const PLAIN: [&str; 5] = ["requested_at", "client_ip", "url", "bytes", "request_id"];
    let files = parquet_files(dataset);
    assert!(!files.is_empty());
    for f in &files {
        let reader = parquet::file::reader::SerializedFileReader::new(std::fs::File::open(f).unwrap()).unwrap();
        let meta = parquet::file::reader::FileReader::metadata(&reader);
        let columns = meta.file_metadata().schema_descr();
        for rg in meta.row_groups() {
            for (i, c) in rg.columns().iter().enumerate() {
                let name = columns.column(i).path().string();
                assert_eq!(
                    c.dictionary_page_offset().is_none(),
                    PLAIN.contains(&name.as_str()),
                    "{name} in {}",
                    f.display()
                );
            }
        }
    }
}

#[test]
fn two_days_of_two_domains_match_the_ground_truth_and_a_rerun_is_a_no_op() {
    let sim = Sim::start(&["--seed", "11", "--cdn-lines-per-slot", "12"]);
    let out = tempfile::tempdir().unwrap();
    let (days, from, to) = two_days();
    let res = run_cdn(&sim, out.path(), &from, &to, &[]);
    assert_eq!(res.status.code(), Some(0));
    assert_matches_truth(&sim, out.path(), &days);
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(
        stderr.contains("4 listing request(s)"),
        "the plan states the requests: {stderr}"
    );
    let dataset = out.path().join("cdn_access");
    assert_no_stray_files(&dataset);
    assert_dictionaries(&dataset);
    // One listing per unit: no refresh needed, nothing rate-limited.
    let listings = listing_requests(&sim);
    assert_eq!(listings.len(), 4, "{listings:?}");

    let before = snapshot(&dataset);
    let downloads = requests(&sim)["downloads"]["requests"].as_u64().unwrap();
    assert!(downloads > 0);
    let res = run_cdn(&sim, out.path(), &from, &to, &[]);
    assert_eq!(res.status.code(), Some(0));
    assert_eq!(listing_requests(&sim).len(), 4, "a rerun lists nothing");
    assert_eq!(
        requests(&sim)["downloads"]["requests"].as_u64().unwrap(),
        downloads,
        "and downloads nothing"
    );
    assert_eq!(snapshot(&dataset), before, "a rerun changes no file");
}

#[test]
fn faults_do_not_change_the_result() {
    // One domain and day: about 500 downloads, a fifth of them faulted.
    let sim = Sim::start(&["--seed", "12", "--cdn-lines-per-slot", "8", "--fault-rate", "0.2"]);
    let out = tempfile::tempdir().unwrap();
    let day = days_ago(1);
    let res = run_cdn(
        &sim,
        out.path(),
        &day.to_string(),
        &today().to_string(),
        &[("CDN_LOGS_DOMAINS", "live.example.com")],
    );
    assert_eq!(res.status.code(), Some(0));
    let got = summarize_dataset(&out.path().join("cdn_access"));
    assert_eq!(got, truth(&sim, &[day], &["live.example.com"]));
    let downloads = &requests(&sim)["downloads"];
    assert!(
        downloads["faults"].as_u64().unwrap() > 0,
        "faults were injected: {downloads}"
    );
    assert_no_stray_files(&out.path().join("cdn_access"));
}

#[test]
fn a_truncated_first_download_is_resumed_and_the_data_is_exact() {
    let sim = Sim::start(&["--seed", "13", "--cdn-lines-per-slot", "6", "--cdn-truncate-first"]);
    let out = tempfile::tempdir().unwrap();
    let (days, from, to) = two_days();
    let res = run_cdn(&sim, out.path(), &from, &to, &[]);
    assert_eq!(res.status.code(), Some(0));
    assert_matches_truth(&sim, out.path(), &days);
}

#[test]
fn expired_urls_are_refreshed_by_listing_again() {
    // URLs live 1 to 2 s (`expire` is in whole seconds). Each download takes at least 10 ms and a
    // day has about 400 files, fetched one at a time, so every day outlives its first URLs however
    // fast the machine is.
    let sim = Sim::start(&[
        "--seed",
        "14",
        "--cdn-lines-per-slot",
        "20",
        "--cdn-url-ttl",
        "1",
        "--cdn-download-delay-ms",
        "10",
    ]);
    let out = tempfile::tempdir().unwrap();
    let (days, from, to) = two_days();
    let res = run_cdn(&sim, out.path(), &from, &to, &[("CDN_LOGS_DOWNLOAD_CONCURRENCY", "1")]);
    assert_eq!(res.status.code(), Some(0));
    assert_matches_truth(&sim, out.path(), &days);
    let listings = listing_requests(&sim).len();
    assert!(listings > 4, "URLs expired and were refreshed: {listings} listings");
}

#[test]
fn the_rate_budget_is_never_exceeded_in_any_sliding_minute() {
    // Ten listings per minute on both sides; 30 units need three minutes' worth.
    let sim = Sim::start(&[
        "--seed",
        "15",
        "--cdn-lines-per-slot",
        "1",
        "--cdn-domains",
        "a.example,b.example,c.example",
        "--cdn-rate-per-minute",
        "10",
    ]);
    let out = tempfile::tempdir().unwrap();
    let from = days_ago(10).to_string();
    let to = today().to_string();
    let started = Instant::now();
    let res = run_cdn(
        &sim,
        out.path(),
        &from,
        &to,
        &[
            ("CDN_LOGS_DOMAINS", "a.example,b.example,c.example"),
            ("CDN_LOGS_RATE_PER_MINUTE", "10"),
        ],
    );
    assert_eq!(res.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(
        stderr.contains("30 listing request(s)") && stderr.contains("about 2 min"),
        "the plan states the budget's cost: {stderr}"
    );
    assert!(started.elapsed() >= Duration::from_secs(120));
    let listings = listing_requests(&sim);
    assert_eq!(listings.len(), 30);
    assert_listings_under(&listings, 10);
}

#[test]
fn an_unknown_domain_fails_its_units_and_the_others_load() {
    let sim = Sim::start(&["--seed", "16", "--cdn-lines-per-slot", "4"]);
    let out = tempfile::tempdir().unwrap();
    let (days, from, to) = two_days();
    let res = run_cdn(
        &sim,
        out.path(),
        &from,
        &to,
        &[("CDN_LOGS_DOMAINS", "live.example.com,nope.example.org")],
    );
    assert_eq!(res.status.code(), Some(4), "a permanent failure");
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(
        stderr.contains("does not know domain `nope.example.org`") && stderr.contains("LLS.Domain.NotFound"),
        "{stderr}"
    );
    let got = summarize_dataset(&out.path().join("cdn_access"));
    assert_eq!(got, truth(&sim, &days, &["live.example.com"]));
}

#[test]
fn killed_mid_run_then_rerun_equals_the_truth() {
    let sim = Sim::start(&["--seed", "17", "--cdn-lines-per-slot", "30"]);
    let out = tempfile::tempdir().unwrap();
    let (days, from, to) = two_days();
    let pipeline = repo_path("pipelines/cdn.yaml");
    let mut child = etl_command(
        &["run", pipeline.to_str().unwrap(), "--from", &from, "--to", &to],
        &cdn_env(&sim, out.path(), &[("CDN_LOGS_DOWNLOAD_CONCURRENCY", "1")]),
    )
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    let intents = out.path().join("cdn_access/_etl/intents");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_dir(&intents).is_ok_and(|mut d| d.next().is_some()) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it wrote anything"
        );
        assert!(Instant::now() < deadline, "no unit started writing");
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let res = run_cdn(&sim, out.path(), &from, &to, &[]);
    assert_eq!(res.status.code(), Some(0));
    assert_matches_truth(&sim, out.path(), &days);
    assert_no_stray_files(&out.path().join("cdn_access"));
}
