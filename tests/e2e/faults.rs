//! Faults the product must survive (issue 6, faults 1-7): each test scripts one kind of failure
//! into the simulator (`POST /_sim/faults`), runs the real binary, and counts lost and duplicated
//! records per day against the simulator's ground truth; both must be zero. The simulator's
//! request log (`GET /_sim/requests`) then shows what the client did about the failure: which
//! page it asked again, and when.
//!
//! The truncated gzip of fault 5 is covered by `cdn::a_truncated_first_download_is_resumed_and_the_data_is_exact`
//! (`--cdn-truncate-first`); here fault 5 is a plain body shorter than its `Content-Length`.
//!
//! Retries are made fast with a pipeline variant (`http:` backoff of milliseconds); a
//! `Retry-After` is a floor the client must honour whatever its backoff.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use chrono::{DateTime, Days, NaiveDate};
use serde_json::{Value, json};

use crate::util::*;

/// Lines per page: with about 1500 records a day, every day has several pages.
const MAX_ITEMS: &str = "200";
const ROWS_PER_DAY: &str = "1500";

/// Quick retries, so that a test spends its time on the behaviour it checks, not on backoff.
const FAST_RETRIES: &str = "http:\n  backoff_base: 20ms\n  backoff_max: 200ms\n";

// ---------------------------------------------------------------------------------------------
// The simulator's script and request log
// ---------------------------------------------------------------------------------------------

/// `POST path` with a JSON body over a raw socket ([`Sim::post_json`] sends none); the status
/// must be 200.
fn post_body(sim: &Sim, path: &str, body: &Value) -> Value {
    let addr = sim.base.trim_start_matches("http://");
    let body = body.to_string();
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, answer) = resp.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{path} refused {body}: {resp}");
    let json = &answer[answer.find('{').unwrap()..=answer.rfind('}').unwrap()];
    serde_json::from_str(json).unwrap()
}

/// Adds fault rules to the simulator (formats in the simulator's `script` module).
fn script(sim: &Sim, rules: Value) {
    post_body(sim, "/_sim/faults", &json!({ "rules": rules }));
}

/// Every scripted rule must have delivered its faults: a test whose fault never happened proves
/// nothing.
fn assert_all_fired(sim: &Sim) {
    let rules = sim.get_json("/_sim/faults")["rules"].as_array().unwrap().clone();
    assert!(!rules.is_empty());
    for r in &rules {
        assert_eq!(r["fired"], r["times"], "a scripted fault was not delivered: {r}");
    }
}

/// One request as the simulator logged it.
#[derive(Debug, Clone)]
struct Logged {
    at_ms: i64,
    params: Value,
    token: Option<String>,
    status: u64,
    fault: Option<String>,
    retry_after: Option<String>,
}

impl Logged {
    fn param(&self, name: &str) -> &str {
        self.params[name].as_str().unwrap_or("")
    }

    fn is_first_page(&self) -> bool {
        self.token.is_none()
    }
}

fn requests(sim: &Sim, api: &str) -> Vec<Logged> {
    let log = sim.get_json(&format!("/_sim/requests?api={api}"));
    log["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| Logged {
            at_ms: r["at_ms"].as_i64().unwrap(),
            params: r["params"].clone(),
            token: r["token"].as_str().map(str::to_string),
            status: r["status"].as_u64().unwrap(),
            fault: r["fault"].as_str().map(str::to_string),
            retry_after: r["retry_after"].as_str().map(str::to_string),
        })
        .collect()
}

/// The first logged request that got `fault`.
fn faulted<'a>(log: &'a [Logged], fault: &str) -> &'a Logged {
    log.iter()
        .find(|r| r.fault.as_deref() == Some(fault))
        .unwrap_or_else(|| panic!("no request got {fault}: {log:#?}"))
}

/// When the client may send again after `r`'s `Retry-After` (Unix ms): delta-seconds count from
/// the answer (which left as the request arrived), an HTTP date is absolute (whole seconds).
fn retry_allowed_at(r: &Logged) -> i64 {
    let v = r.retry_after.as_deref().expect("a Retry-After");
    match v.parse::<i64>() {
        Ok(secs) => r.at_ms + secs * 1000,
        Err(_) => DateTime::parse_from_rfc2822(v)
            .unwrap_or_else(|e| panic!("Retry-After {v:?} is neither seconds nor an HTTP date: {e}"))
            .timestamp_millis(),
    }
}

// ---------------------------------------------------------------------------------------------
// Runs and datasets
// ---------------------------------------------------------------------------------------------

fn start_sim(seed: u64) -> Sim {
    Sim::start(&["--seed", &seed.to_string(), "--mail-rows-per-day", ROWS_PER_DAY])
}

fn rows_of(sim: &Sim, day: NaiveDate) -> u64 {
    sim.mail_day(day)["rows"].as_u64().unwrap()
}

/// Two consecutive closed days that both have several pages of records, oldest first: the units
/// of a run from the first to the day after the second, which run at the same time.
fn busy_pair(sim: &Sim) -> (NaiveDate, NaiveDate) {
    (3..=12)
        .map(|n| (days_ago(n), days_ago(n - 1)))
        .find(|(a, b)| rows_of(sim, *a) >= 600 && rows_of(sim, *b) >= 600)
        .expect("two busy consecutive days among the last 12")
}

/// `--from` and `--to` covering exactly `days` (consecutive).
fn range(days: &[NaiveDate]) -> (String, String) {
    let last = *days.last().unwrap();
    (days[0].to_string(), (last + Days::new(1)).to_string())
}

fn start_date(day: NaiveDate) -> String {
    format!("{day}T00:00")
}

/// `pipelines/<base>` with `extra` top-level sections appended, written into `dir`.
fn pipeline_variant(dir: &Path, base: &str, extra: &str) -> PathBuf {
    let text = std::fs::read_to_string(repo_path(base)).unwrap();
    let path = dir.join(base.replace('/', "_"));
    std::fs::write(&path, format!("{text}\n{extra}")).unwrap();
    path
}

/// Runs a mail delivery pipeline file over `days`, writing under `out`; also how long it took.
fn run_mail(sim: &Sim, pipeline: &Path, out: &Path, days: &[NaiveDate]) -> (Output, Duration) {
    let mut env = mail_env(sim, out);
    env.push(("MAIL_DELIVERY_MAX_ITEMS".into(), MAX_ITEMS.into()));
    let (from, to) = range(days);
    let started = Instant::now();
    let res = etl(&["run", pipeline.to_str().unwrap(), "--from", &from, "--to", &to], &env);
    (res, started.elapsed())
}

/// Lost and duplicated records per day against the ground truth, both zero, and every day's
/// fingerprint and per-result counts equal to the truth's (so that a lost record and a
/// duplicated one cannot cancel out).
fn assert_exact(sim: &Sim, dataset: &Path, days: &[NaiveDate]) {
    let got = summarize(&read_mail(dataset));
    let want = truth_summary(sim, days);
    assert!(!want.is_empty(), "the simulator generated no data for {days:?}");
    let (mut lost, mut duplicated) = (0, 0);
    for day in got.keys().chain(want.keys()) {
        let g = got.get(day).map_or(0, |s| s.rows);
        let w = want.get(day).map_or(0, |s| s.rows);
        lost += w.saturating_sub(g);
        duplicated += g.saturating_sub(w);
    }
    assert_eq!(
        (lost, duplicated),
        (0, 0),
        "lost and duplicated records; got {got:#?}\nwant {want:#?}"
    );
    assert_eq!(got, want, "per-day fingerprints and counts must equal the ground truth");
    assert_no_stray_files(dataset);
}

/// Every data file of a dataset with its record batches, by path relative to the dataset.
fn dataset_batches(root: &Path) -> BTreeMap<PathBuf, Vec<RecordBatch>> {
    parquet_files(root)
        .into_iter()
        .map(|f| (f.strip_prefix(root).unwrap().to_path_buf(), read_batches(&f)))
        .collect()
}

/// The same files with the same records in the same order as a clean run's.
fn assert_identical(dataset: &Path, clean: &Path) {
    let (got, want) = (dataset_batches(dataset), dataset_batches(clean));
    assert!(!want.is_empty());
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "the same files as a clean run"
    );
    for (path, batches) in &want {
        assert!(got[path] == *batches, "{} differs from a clean run's", path.display());
    }
}

fn stderr(res: &Output) -> String {
    String::from_utf8_lossy(&res.stderr).into_owned()
}

// ---------------------------------------------------------------------------------------------
// 1. 500, 502 and 503 on one page several times, then success
// ---------------------------------------------------------------------------------------------

#[test]
fn server_errors_on_one_page_are_retried_until_it_is_served() {
    let sim = start_sim(11);
    let (a, b) = busy_pair(&sim);
    // The second page of day `a` fails six times in a row; max_attempts (8) allows the seventh.
    let page = json!({"StartDate": start_date(a)});
    script(
        &sim,
        json!([
            {"api": "mail_delivery", "requests": "token", "params": page, "times": 2,
             "fault": {"kind": "status", "status": 500}},
            {"api": "mail_delivery", "requests": "token", "params": page, "times": 2,
             "fault": {"kind": "status", "status": 502}},
            {"api": "mail_delivery", "requests": "token", "params": page, "times": 2,
             "fault": {"kind": "status", "status": 503}},
        ]),
    );
    let out = tempfile::tempdir().unwrap();
    let pipeline = pipeline_variant(out.path(), "pipelines/mail.yaml", FAST_RETRIES);
    let (res, _) = run_mail(&sim, &pipeline, out.path(), &[a, b]);
    assert_eq!(res.status.code(), Some(0), "every server error is retried");
    assert_all_fired(&sim);
    assert_exact(&sim, &out.path().join("mail_delivery"), &[a, b]);

    // The same page (same token) was asked seven times: six failures, then served.
    let log = requests(&sim, "mail_delivery");
    let token = faulted(&log, "status-500").token.clone();
    assert!(token.is_some(), "the faults hit a page after the first");
    let statuses: Vec<u64> = log.iter().filter(|r| r.token == token).map(|r| r.status).collect();
    assert_eq!(statuses, [500, 500, 502, 502, 503, 503, 200]);
}

// ---------------------------------------------------------------------------------------------
// 2. 429 and 503 with Retry-After in seconds and as an HTTP date
// ---------------------------------------------------------------------------------------------

/// Requests that arrived after `fault` and before its `Retry-After` allowed, except those within
/// `in_flight_ms` of the fault (sent before the client could have read it). "After" is the log's
/// arrival order, not the clock: the page before the fault may arrive in the same millisecond.
fn early_requests<'a>(log: &'a [Logged], fault: &Logged, in_flight_ms: i64) -> Vec<&'a Logged> {
    let allowed = retry_allowed_at(fault);
    let at = log
        .iter()
        .position(|r| std::ptr::eq(r, fault))
        .expect("the fault is an entry of the log");
    log[at + 1..]
        .iter()
        .filter(|r| r.at_ms >= fault.at_ms + in_flight_ms && r.at_ms < allowed)
        .collect()
}

#[test]
fn a_429_retry_after_holds_every_unit_on_the_credential() {
    let sim = start_sim(12);
    let (a, b) = busy_pair(&sim);
    // Both units run at once; each gets one 429 on a page after its first, one with
    // delta-seconds, one with an HTTP date.
    script(
        &sim,
        json!([
            {"api": "mail_delivery", "requests": "token", "params": {"StartDate": start_date(a)},
             "fault": {"kind": "status", "status": 429, "retry_after": 2}},
            {"api": "mail_delivery", "requests": "token", "params": {"StartDate": start_date(b)}, "skip": 1,
             "fault": {"kind": "status", "status": 429, "retry_after_date": 2}},
        ]),
    );
    let out = tempfile::tempdir().unwrap();
    let pipeline = pipeline_variant(out.path(), "pipelines/mail.yaml", FAST_RETRIES);
    let (res, _) = run_mail(&sim, &pipeline, out.path(), &[a, b]);
    assert_eq!(res.status.code(), Some(0));
    assert_all_fired(&sim);
    assert_exact(&sim, &out.path().join("mail_delivery"), &[a, b]);

    let log = requests(&sim, "mail_delivery");
    for fault in log.iter().filter(|r| r.status == 429) {
        // A request of the other unit may already have been on its way when the 429 came, or
        // sent before the client had read it.
        let early = early_requests(&log, fault, 250);
        assert!(
            early.is_empty(),
            "requests before the Retry-After ({:?}) of {fault:?} allowed: {early:#?}",
            fault.retry_after
        );
        let retry = log
            .iter()
            .find(|r| r.at_ms >= fault.at_ms && r.token == fault.token && r.status == 200)
            .expect("the throttled page is asked again");
        assert!(retry.at_ms >= retry_allowed_at(fault), "{retry:?} after {fault:?}");
    }
    let forms: Vec<bool> = log
        .iter()
        .filter(|r| r.status == 429)
        .map(|r| r.retry_after.as_deref().unwrap().ends_with("GMT"))
        .collect();
    assert_eq!(forms.len(), 2);
    assert!(
        forms.contains(&true) && forms.contains(&false),
        "both Retry-After forms"
    );
}

#[test]
fn a_503_retry_after_is_honoured_in_seconds_and_as_an_http_date() {
    let sim = start_sim(13);
    let (a, b) = busy_pair(&sim);
    script(
        &sim,
        json!([
            {"api": "mail_delivery", "requests": "token", "params": {"StartDate": start_date(a)},
             "fault": {"kind": "status", "status": 503, "retry_after": 2}},
            {"api": "mail_delivery", "requests": "token", "params": {"StartDate": start_date(b)}, "skip": 1,
             "fault": {"kind": "status", "status": 503, "retry_after_date": 2}},
        ]),
    );
    let out = tempfile::tempdir().unwrap();
    // One unit at a time: the only requests on the credential are the throttled unit's own.
    let pipeline = pipeline_variant(
        out.path(),
        "pipelines/mail.yaml",
        &format!("{FAST_RETRIES}runtime:\n  unit_concurrency: 1\n"),
    );
    let (res, _) = run_mail(&sim, &pipeline, out.path(), &[a, b]);
    assert_eq!(res.status.code(), Some(0));
    assert_all_fired(&sim);
    assert_exact(&sim, &out.path().join("mail_delivery"), &[a, b]);

    let log = requests(&sim, "mail_delivery");
    let faults: Vec<&Logged> = log.iter().filter(|r| r.status == 503).collect();
    assert_eq!(faults.len(), 2);
    for fault in faults {
        let early = early_requests(&log, fault, 0);
        assert!(
            early.is_empty(),
            "requests before the Retry-After of {fault:?}: {early:#?}"
        );
        let next = log
            .iter()
            .find(|r| r.at_ms >= fault.at_ms && r.token == fault.token && r.status == 200);
        assert!(next.is_some(), "the page of {fault:?} is asked again");
    }
}

// ---------------------------------------------------------------------------------------------
// 3. A Retry-After longer than the request's retry budget
// ---------------------------------------------------------------------------------------------

#[test]
fn a_retry_after_beyond_the_budget_fails_the_unit_cleanly_and_the_next_run_completes_it() {
    let sim = start_sim(14);
    let (a, b) = busy_pair(&sim);
    // Mid-unit (a page after the first has been written to the unit's staging), the server asks
    // for 30 s; the budget of a request is 3 s.
    script(
        &sim,
        json!([{"api": "mail_delivery", "requests": "token", "params": {"StartDate": start_date(b)}, "skip": 1,
                "fault": {"kind": "status", "status": 503, "retry_after": 30}}]),
    );
    let out = tempfile::tempdir().unwrap();
    let pipeline = pipeline_variant(
        out.path(),
        "pipelines/mail.yaml",
        &format!("{FAST_RETRIES}  max_retry_time: 3s\nruntime:\n  unit_concurrency: 1\n"),
    );
    let (res, took) = run_mail(&sim, &pipeline, out.path(), &[a, b]);
    assert_eq!(res.status.code(), Some(3), "a retryable failure: {}", stderr(&res));
    assert!(
        took < Duration::from_secs(15),
        "the run waited for the Retry-After: {took:?}"
    );
    let err = stderr(&res);
    assert!(
        err.contains(&format!("mail_delivery-{b}")) && err.contains("503") && err.contains("retry after 30s"),
        "{err}"
    );
    assert_all_fired(&sim);
    let log = requests(&sim, "mail_delivery");
    let fault = faulted(&log, "status-503");
    assert!(
        log.iter()
            .all(|r| r.at_ms <= fault.at_ms || r.param("StartDate") != start_date(b)),
        "the unit gave up at once, without asking again"
    );

    // Nothing of the failed unit is visible or recorded; the other unit is committed.
    let dataset = out.path().join("mail_delivery");
    assert!(parquet_files(&dataset.join(format!("dt={b}"))).is_empty());
    assert!(!parquet_files(&dataset.join(format!("dt={a}"))).is_empty());
    assert!(!dataset.join(format!("_etl/state/mail_delivery-{b}.json")).exists());
    assert!(dataset.join(format!("_etl/state/mail_delivery-{a}.json")).exists());
    assert!(!dataset.join(format!("_etl/manifests/mail_delivery-{b}.json")).exists());
    assert_no_stray_files(&dataset);

    let (res, _) = run_mail(&sim, &pipeline, out.path(), &[a, b]);
    assert_eq!(res.status.code(), Some(0), "{}", stderr(&res));
    assert_exact(&sim, &dataset, &[a, b]);
    let rerun: Vec<Logged> = requests(&sim, "mail_delivery")
        .into_iter()
        .filter(|r| r.at_ms > fault.at_ms)
        .collect();
    assert!(
        !rerun.is_empty() && rerun.iter().all(|r| r.param("StartDate") == start_date(b)),
        "the rerun fetches only the failed unit"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Connection reset halfway through a body; 5. a body shorter than its Content-Length
// ---------------------------------------------------------------------------------------------

/// Scripts `kind` on two first pages and on two later pages of day `a`, runs, checks exactness
/// and that each broken page was asked again.
fn broken_bodies_are_refetched(seed: u64, kind: &str, name: &str) {
    let sim = start_sim(seed);
    let (a, b) = busy_pair(&sim);
    script(
        &sim,
        json!([
            {"api": "mail_delivery", "times": 2, "fault": {"kind": kind}},
            {"api": "mail_delivery", "requests": "token", "params": {"StartDate": start_date(a)}, "times": 2,
             "fault": {"kind": kind}},
        ]),
    );
    let out = tempfile::tempdir().unwrap();
    let pipeline = pipeline_variant(out.path(), "pipelines/mail.yaml", FAST_RETRIES);
    let (res, _) = run_mail(&sim, &pipeline, out.path(), &[a, b]);
    assert_eq!(res.status.code(), Some(0), "{}", stderr(&res));
    assert_all_fired(&sim);
    assert_exact(&sim, &out.path().join("mail_delivery"), &[a, b]);

    let log = requests(&sim, "mail_delivery");
    let broken: Vec<&Logged> = log.iter().filter(|r| r.fault.as_deref() == Some(name)).collect();
    assert_eq!(broken.len(), 4, "{log:#?}");
    for r in broken {
        assert_eq!(r.status, 200, "the fault is in the body of a 200");
        let again = log.iter().any(|x| {
            x.at_ms >= r.at_ms
                && x.token == r.token
                && x.param("StartDate") == r.param("StartDate")
                && x.status == 200
                && x.fault.is_none()
        });
        assert!(again, "{r:?} was not asked again");
    }
}

#[test]
fn a_connection_reset_mid_body_is_refetched() {
    broken_bodies_are_refetched(15, "reset", "reset");
}

#[test]
fn a_body_shorter_than_its_content_length_is_refetched() {
    broken_bodies_are_refetched(16, "short_body", "short-body");
}

// ---------------------------------------------------------------------------------------------
// 6. Headers sent, then the body stalls past the read timeout
// ---------------------------------------------------------------------------------------------

#[test]
fn a_stalled_body_hits_the_read_timeout_and_is_retried() {
    let sim = start_sim(17);
    let (a, b) = busy_pair(&sim);
    script(
        &sim,
        json!([{"api": "mail_delivery", "requests": "token", "params": {"StartDate": start_date(a)},
                "fault": {"kind": "stall", "secs": 5}}]),
    );
    let out = tempfile::tempdir().unwrap();
    let pipeline = pipeline_variant(
        out.path(),
        "pipelines/mail.yaml",
        &format!("{FAST_RETRIES}  read_timeout: 1s\n"),
    );
    let (res, _) = run_mail(&sim, &pipeline, out.path(), &[a, b]);
    assert_eq!(res.status.code(), Some(0), "{}", stderr(&res));
    assert_all_fired(&sim);
    assert_exact(&sim, &out.path().join("mail_delivery"), &[a, b]);

    let log = requests(&sim, "mail_delivery");
    let stalled = faulted(&log, "stall");
    let retry = log
        .iter()
        .find(|r| r.at_ms > stalled.at_ms && r.token == stalled.token)
        .expect("the stalled page is asked again");
    let after = retry.at_ms - stalled.at_ms;
    assert!(
        (1000..5000).contains(&after),
        "asked again {after} ms after the stall began: not after the 1 s read timeout"
    );
    assert_eq!((retry.status, retry.fault.as_deref()), (200, None));
}

// ---------------------------------------------------------------------------------------------
// 7. A continuation token rejected mid-window: the unit restarts from its first page
// ---------------------------------------------------------------------------------------------

#[test]
fn a_rejected_next_token_restarts_the_unit_and_the_output_equals_a_clean_run() {
    let sim = start_sim(18);
    let (a, b) = busy_pair(&sim);
    // The third page of day `a`: two pages are already in the unit's staging when it happens.
    script(
        &sim,
        json!([{"api": "mail_delivery", "params": {"StartDate": start_date(a)}, "skip": 1,
                "fault": {"kind": "reject_token"}}]),
    );
    let out = tempfile::tempdir().unwrap();
    let pipeline = pipeline_variant(out.path(), "pipelines/mail.yaml", FAST_RETRIES);
    let (res, _) = run_mail(&sim, &pipeline, out.path(), &[a, b]);
    assert_eq!(res.status.code(), Some(0), "{}", stderr(&res));
    assert_all_fired(&sim);
    let dataset = out.path().join("mail_delivery");
    assert_exact(&sim, &dataset, &[a, b]);
    let err = stderr(&res);
    assert!(
        err.contains(&format!("mail_delivery-{a}")) && err.contains("restarting the unit from its first page"),
        "{err}"
    );

    let log: Vec<Logged> = requests(&sim, "mail_delivery")
        .into_iter()
        .filter(|r| r.param("StartDate") == start_date(a))
        .collect();
    let rejected = faulted(&log, "reject-token");
    assert_eq!(rejected.status, 400);
    let firsts: Vec<i64> = log.iter().filter(|r| r.is_first_page()).map(|r| r.at_ms).collect();
    assert_eq!(firsts.len(), 2, "the first page is asked twice: {log:#?}");
    assert!(firsts[0] < rejected.at_ms && rejected.at_ms <= firsts[1]);

    // The same files and records as a run that met no fault.
    let clean = tempfile::tempdir().unwrap();
    let (res, _) = run_mail(&sim, &pipeline, clean.path(), &[a, b]);
    assert_eq!(res.status.code(), Some(0));
    assert_identical(&dataset, &clean.path().join("mail_delivery"));
}

#[test]
fn a_token_rejected_on_every_attempt_gives_up_after_two_restarts() {
    let sim = start_sim(19);
    let (a, b) = busy_pair(&sim);
    script(
        &sim,
        json!([{"api": "mail_delivery", "params": {"StartDate": start_date(b)}, "times": 3,
                "fault": {"kind": "reject_token"}}]),
    );
    let out = tempfile::tempdir().unwrap();
    let pipeline = pipeline_variant(out.path(), "pipelines/mail.yaml", FAST_RETRIES);
    let (res, _) = run_mail(&sim, &pipeline, out.path(), &[a, b]);
    assert_eq!(res.status.code(), Some(3), "retryable: the next run may succeed");
    assert_all_fired(&sim);
    let err = stderr(&res);
    assert!(
        err.contains("already restarted 2 times") && err.contains("InvalidParameterValue"),
        "{err}"
    );
    let firsts = requests(&sim, "mail_delivery")
        .iter()
        .filter(|r| r.param("StartDate") == start_date(b) && r.is_first_page())
        .count();
    assert_eq!(firsts, 3, "the first attempt and two restarts");
    let dataset = out.path().join("mail_delivery");
    assert!(parquet_files(&dataset.join(format!("dt={b}"))).is_empty());
    assert!(!dataset.join(format!("_etl/state/mail_delivery-{b}.json")).exists());
    assert_no_stray_files(&dataset);

    let (res, _) = run_mail(&sim, &pipeline, out.path(), &[a, b]);
    assert_eq!(res.status.code(), Some(0), "{}", stderr(&res));
    assert_exact(&sim, &dataset, &[a, b]);
}

/// Rows per (traffic_type, dt) of a mail tracking dataset.
fn tracking_rows(root: &Path) -> BTreeMap<(String, String), u64> {
    let mut rows = BTreeMap::new();
    for file in parquet_files(root) {
        let part = |p: &Path, key: &str| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix(key))
                .unwrap_or_else(|| panic!("{} is not under {key}", file.display()))
                .to_string()
        };
        let dt_dir = file.parent().unwrap();
        let key = (part(dt_dir.parent().unwrap(), "traffic_type="), part(dt_dir, "dt="));
        let n: usize = read_batches(&file).iter().map(RecordBatch::num_rows).sum();
        *rows.entry(key).or_default() += n as u64;
    }
    rows
}

#[test]
fn a_rejected_tracking_token_restarts_the_unit_and_the_output_equals_a_clean_run() {
    let sim = Sim::start(&["--seed", "20", "--tracking-rows-per-day", "1000"]);
    let days = [days_ago(2), days_ago(1)];
    let truth: BTreeMap<(String, String), u64> = days
        .iter()
        .flat_map(|d| {
            ["accepted_traffic", "blocked_traffic"].map(|t| {
                let rows = sim.truth["mail_tracking"]["days"][d.to_string()][t]["rows"]
                    .as_u64()
                    .unwrap();
                ((t.to_string(), d.to_string()), rows)
            })
        })
        .filter(|(_, rows)| *rows > 0)
        .collect();
    let ((traffic, day), busiest) = truth.iter().max_by_key(|(_, rows)| **rows).unwrap();
    assert!(*busiest > 600, "several pages of 200");
    script(
        &sim,
        json!([{"api": "mail_tracking", "params": {"type": traffic, "start": format!("{day}T00:00:00.000Z")},
                "skip": 1, "fault": {"kind": "reject_token"}}]),
    );
    let run = |out: &Path| {
        let pipeline = pipeline_variant(out, "pipelines/tracking.yaml", FAST_RETRIES);
        let env = vec![
            ("MAIL_TRACKING_URL".to_string(), sim.base.clone()),
            ("MAIL_TRACKING_USER".to_string(), "sim-user".to_string()),
            ("MAIL_TRACKING_API_KEY".to_string(), "sim-tracking-key".to_string()),
            ("MAIL_TRACKING_LIMIT".to_string(), "200".to_string()),
            ("ETL_OUT".to_string(), out.display().to_string()),
        ];
        let from = days[0].to_string();
        let to = today().to_string();
        etl(&["run", pipeline.to_str().unwrap(), "--from", &from, "--to", &to], &env)
    };
    let out = tempfile::tempdir().unwrap();
    let res = run(out.path());
    assert_eq!(res.status.code(), Some(0), "{}", stderr(&res));
    assert_all_fired(&sim);
    let dataset = out.path().join("mail_tracking");
    let got = tracking_rows(&dataset);
    let lost: u64 = truth
        .iter()
        .map(|(k, w)| w.saturating_sub(got.get(k).copied().unwrap_or(0)))
        .sum();
    let duplicated: u64 = got
        .iter()
        .map(|(k, g)| g.saturating_sub(truth.get(k).copied().unwrap_or(0)))
        .sum();
    assert_eq!((lost, duplicated), (0, 0), "got {got:?}, truth {truth:?}");
    assert_eq!(got, truth);
    assert_no_stray_files(&dataset);
    assert!(stderr(&res).contains("restarting the unit from its first page"));

    let start = format!("{day}T00:00:00.000Z");
    let log: Vec<Logged> = requests(&sim, "mail_tracking")
        .into_iter()
        .filter(|r| r.param("type") == traffic && r.param("start") == start)
        .collect();
    let rejected = faulted(&log, "reject-token");
    assert_eq!(rejected.status, 400);
    let firsts: Vec<i64> = log.iter().filter(|r| r.is_first_page()).map(|r| r.at_ms).collect();
    assert_eq!(firsts.len(), 2, "the first page is asked twice: {log:#?}");
    assert!(firsts[0] < rejected.at_ms && rejected.at_ms <= firsts[1]);

    let clean = tempfile::tempdir().unwrap();
    assert_eq!(run(clean.path()).status.code(), Some(0));
    assert_identical(&dataset, &clean.path().join("mail_tracking"));
}
