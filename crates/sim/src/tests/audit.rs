//! The audit-log export as a client sees it: SOAP envelopes with any prefixes in and varying prefixes out,
//! faults, the job lifecycle driven by polls, SYSTEM_ERROR jobs, expiring download URLs, and the CSV checked
//! against the truth file with an RFC 4180 reader written here from FORMATS.md.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Days, NaiveDate, Utc};
use clap::Parser as _;
use serde_json::Value;

use super::{Harness, args, reply};
use crate::SimArgs;
use crate::audit::{AUDIT_NS, COMMON_NS, FINGERPRINT_DEFINITION, Node, SOAP_NS, parse_tree};
use crate::data::fnv1a64;

pub(crate) const LICENSE: &str = "test-license-1111";
pub(crate) const API_ACCOUNT: &str = "test-api-2222";
pub(crate) const PASSWORD: &str = "test-pass&<word>";
pub(crate) const ACCOUNT: &str = "100000001";

const SERVICE: &str = "/services/V201812/AuditLogService";

const JA: &str = "操作ID,操作日時,アカウントID,操作者,利用ツール,操作種別,対象種別,対象ID,対象名,変更項目,変更前,変更後,影響件数,IPアドレス";
const EN: &str = "Operation ID,Operation Date,Account ID,Operator,Tool,Operation,Target Type,Target ID,Target Name,\
Changed Item,Before,After,Affected Count,IP Address";

// ---------------------------------------------------------------------------------------------------------
// Writing requests with chosen prefixes
// ---------------------------------------------------------------------------------------------------------

/// How a request writes its prefixes: `al: None` puts the AuditLog namespace in a default namespace,
/// as the seed's samples do.
struct Prefixes {
    env: &'static str,
    al: Option<&'static str>,
    c: &'static str,
}

/// The seed's request samples.
const SEED: Prefixes = Prefixes {
    env: "SOAP-ENV",
    al: None,
    c: "ns2",
};
/// Everything prefixed, declared once on the envelope.
const OTHER: Prefixes = Prefixes {
    env: "soap",
    al: Some("al"),
    c: "c",
};

/// A request element: in the AuditLog namespace (leaf or not), or a common-namespace leaf.
enum El {
    A(&'static str, String),
    N(&'static str, Vec<El>),
    C(&'static str, String),
}

fn a(local: &'static str, text: impl Into<String>) -> El {
    El::A(local, text.into())
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

impl Prefixes {
    fn al(&self, local: &str) -> String {
        match self.al {
            Some(p) => format!("{p}:{local}"),
            None => local.to_string(),
        }
    }

    /// Declarations for the first element of a vendor part (header or body).
    fn decls(&self) -> String {
        match self.al {
            Some(_) => String::new(),
            None => format!(" xmlns=\"{AUDIT_NS}\" xmlns:{}=\"{COMMON_NS}\"", self.c),
        }
    }

    fn write(&self, el: &El, out: &mut String) {
        match el {
            El::A(local, text) => {
                let q = self.al(local);
                out.push_str(&format!("<{q}>{}</{q}>", escape(text)));
            }
            El::N(local, children) => {
                let q = self.al(local);
                out.push_str(&format!("<{q}>"));
                children.iter().for_each(|c| self.write(c, out));
                out.push_str(&format!("</{q}>"));
            }
            El::C(local, text) => {
                out.push_str(&format!("<{c}:{local}>{}</{c}:{local}>", escape(text), c = self.c));
            }
        }
    }

    fn envelope(&self, creds: (&str, &str, &str), op: &str, selector: &[El]) -> String {
        let env = self.env;
        let mut out = format!("<{env}:Envelope xmlns:{env}=\"{SOAP_NS}\"");
        if let Some(p) = self.al {
            out.push_str(&format!(" xmlns:{p}=\"{AUDIT_NS}\" xmlns:{}=\"{COMMON_NS}\"", self.c));
        }
        out.push_str(&format!(
            ">\n  <{env}:Header>\n    <{}{}>",
            self.al("RequestHeader"),
            self.decls()
        ));
        for (local, v) in [
            ("license", creds.0),
            ("apiAccountId", creds.1),
            ("apiAccountPassword", creds.2),
        ] {
            self.write(&El::C(local, v.to_string()), &mut out);
        }
        out.push_str(&format!(
            "</{}>\n  </{env}:Header>\n  <{env}:Body>\n    ",
            self.al("RequestHeader")
        ));
        out.push_str(&format!("<{}{}>", self.al(op), self.decls()));
        self.write(&El::N("selector", selector_vec(selector)), &mut out);
        out.push_str(&format!("</{}>\n  </{env}:Body>\n</{env}:Envelope>\n", self.al(op)));
        out
    }
}

/// `El` is not `Clone` (it need not be); rebuild the selector children for `envelope`.
fn selector_vec(children: &[El]) -> Vec<El> {
    children
        .iter()
        .map(|e| match e {
            El::A(l, t) => El::A(l, t.clone()),
            El::N(l, c) => El::N(l, selector_vec(c)),
            El::C(l, t) => El::C(l, t.clone()),
        })
        .collect()
}

const CREDS: (&str, &str, &str) = (LICENSE, API_ACCOUNT, PASSWORD);

fn download_selector(start: &str, end: &str, name: Option<&str>, lang: Option<&str>) -> Vec<El> {
    let mut s = vec![
        a("accountId", ACCOUNT),
        El::N("dateRange", vec![a("startDate", start), a("endDate", end)]),
    ];
    if let Some(n) = name {
        s.push(El::N("auditLogJob", vec![a("auditLogJobName", n)]));
    }
    if let Some(l) = lang {
        s.push(a("lang", l));
    }
    s
}

fn status_selector(ids: &[u64], statuses: &[&str], paging: Option<(u64, u64)>) -> Vec<El> {
    let mut s = vec![a("accountId", ACCOUNT)];
    s.extend(ids.iter().map(|id| a("auditLogJobIds", id.to_string())));
    s.extend(statuses.iter().map(|st| a("auditLogJobStatuses", *st)));
    if let Some((start, n)) = paging {
        s.push(El::N(
            "paging",
            vec![
                El::C("startIndex", start.to_string()),
                El::C("numberResults", n.to_string()),
            ],
        ));
    }
    s
}

// ---------------------------------------------------------------------------------------------------------
// Reading responses by namespace and local name
// ---------------------------------------------------------------------------------------------------------

fn descendants<'a>(node: &'a Node, ns: &str, local: &str, out: &mut Vec<&'a Node>) {
    for c in &node.children {
        if c.ns.as_deref() == Some(ns) && c.local == local {
            out.push(c);
        }
        descendants(c, ns, local, out);
    }
}

fn all<'a>(node: &'a Node, ns: &str, local: &str) -> Vec<&'a Node> {
    let mut out = Vec::new();
    descendants(node, ns, local, &mut out);
    out
}

fn text(node: &Node, ns: &str, local: &str) -> Option<String> {
    all(node, ns, local).first().map(|n| n.text.trim().to_string())
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct JobInfo {
    id: u64,
    account: String,
    name: Option<String>,
    user: String,
    start: String,
    end: Option<String>,
    status: String,
    progress: u32,
    url: Option<String>,
}

fn job_info(job: &Node) -> JobInfo {
    let t = |local: &str| text(job, AUDIT_NS, local);
    JobInfo {
        id: t("auditLogJobId").and_then(|s| s.parse().ok()).expect("auditLogJobId"),
        account: t("accountId").expect("accountId"),
        name: t("auditLogJobName"),
        user: t("auditLogJobUserName").expect("auditLogJobUserName"),
        start: t("auditLogJobStartDate").expect("auditLogJobStartDate"),
        end: t("auditLogJobEndDate"),
        status: t("auditLogJobStatus").expect("auditLogJobStatus"),
        progress: t("progress").and_then(|s| s.parse().ok()).expect("progress"),
        url: t("downloadAuditLogDownloadUrl"),
    }
}

/// A parsed 200 answer: its `values`, in order (a job, or the per-value error's code).
#[derive(Debug)]
struct Answer {
    raw: String,
    total: Option<u64>,
    values: Vec<Result<JobInfo, String>>,
}

fn answer_of(raw: &str, op: &str) -> Answer {
    let root = parse_tree(raw).unwrap_or_else(|e| panic!("the response is not XML ({e}): {raw}"));
    assert!(root.ns.as_deref() == Some(SOAP_NS) && root.local == "Envelope", "{raw}");
    let header = all(&root, AUDIT_NS, "ResponseHeader");
    assert_eq!(header.len(), 1, "one ResponseHeader: {raw}");
    assert_eq!(text(header[0], COMMON_NS, "service").as_deref(), Some("AuditLog"));
    assert!(text(header[0], COMMON_NS, "requestTime").is_some_and(|t| t.parse::<u64>().is_ok()));
    let response = all(&root, AUDIT_NS, &format!("{op}Response"));
    assert_eq!(response.len(), 1, "one {op}Response: {raw}");
    let rval = all(response[0], AUDIT_NS, "rval");
    assert_eq!(rval.len(), 1, "{raw}");
    let values = all(rval[0], AUDIT_NS, "values")
        .into_iter()
        .map(|v| match text(v, COMMON_NS, "operationSucceeded").as_deref() {
            Some("true") => Ok(job_info(all(v, AUDIT_NS, "auditLogJob")[0])),
            Some("false") => Err(text(v, COMMON_NS, "code").expect("errors/code")),
            other => panic!("operationSucceeded is {other:?}: {raw}"),
        })
        .collect();
    let total = text(rval[0], COMMON_NS, "totalNumEntries").map(|t| t.parse().expect("totalNumEntries"));
    Answer {
        raw: raw.to_string(),
        total,
        values,
    }
}

/// A parsed SOAP fault: `(faultcode local part, faultstring, detail code)`.
fn fault_of(raw: &str) -> (String, String, String) {
    let root = parse_tree(raw).unwrap_or_else(|e| panic!("the fault is not XML ({e}): {raw}"));
    let fault = all(&root, SOAP_NS, "Fault");
    assert_eq!(fault.len(), 1, "{raw}");
    let child = |local: &str| {
        fault[0]
            .children
            .iter()
            .find(|c| c.ns.is_none() && c.local == local)
            .unwrap_or_else(|| panic!("no unqualified {local}: {raw}"))
    };
    let code = child("faultcode").text.trim().to_string();
    // The faultcode is a QName: its prefix must be bound to the SOAP envelope namespace in the response.
    let (prefix, local) = code.split_once(':').expect("faultcode is a prefixed QName");
    assert!(
        raw.contains(&format!("xmlns:{prefix}=\"{SOAP_NS}\"")),
        "faultcode prefix {prefix} is not the envelope's: {raw}"
    );
    let detail = child("detail");
    let api = all(detail, COMMON_NS, "ApiExceptionFault");
    assert_eq!(api.len(), 1, "{raw}");
    (
        local.to_string(),
        child("faultstring").text.clone(),
        text(api[0], COMMON_NS, "code").expect("detail code"),
    )
}

// ---------------------------------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------------------------------

struct Audit {
    h: Harness,
}

impl Audit {
    async fn start(args: SimArgs) -> Self {
        Self {
            h: Harness::start(args).await,
        }
    }

    async fn post(&self, body: String) -> super::Reply {
        let req = self
            .h
            .client
            .post(self.h.url(SERVICE))
            .header("Content-Type", "text/xml; charset=utf-8")
            .header("SOAPAction", "\"\"")
            .body(body);
        reply(req.send().await.expect("request reaches the simulator")).await
    }

    async fn call(&self, p: &Prefixes, op: &str, selector: &[El]) -> Answer {
        let r = self.post(p.envelope(CREDS, op, selector)).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.header("content-type"), Some("text/xml; charset=utf-8"));
        answer_of(&r.body, op)
    }

    async fn create(&self, name: Option<&str>, start: &str, end: &str, lang: Option<&str>) -> JobInfo {
        let ans = self
            .call(&SEED, "getDownload", &download_selector(start, end, name, lang))
            .await;
        assert_eq!(ans.values.len(), 1, "{}", ans.raw);
        ans.values[0].clone().expect("getDownload succeeds")
    }

    async fn status(&self, id: u64) -> JobInfo {
        let ans = self
            .call(&OTHER, "getDownloadStatus", &status_selector(&[id], &[], None))
            .await;
        assert_eq!(ans.total, Some(1), "{}", ans.raw);
        ans.values[0].clone().expect("a known job")
    }

    async fn get(&self, url: &str) -> (u16, Vec<u8>, Option<String>) {
        let resp = self.h.client.get(url).send().await.expect("download answered");
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        (status, resp.bytes().await.expect("complete body").to_vec(), ct)
    }

    async fn jobs(&self) -> Value {
        let r = reply(
            self.h
                .client
                .get(self.h.url("/_sim/audit/jobs"))
                .send()
                .await
                .expect("jobs view"),
        )
        .await;
        assert_eq!(r.status, 200);
        serde_json::from_str(&r.body).expect("jobs view is JSON")
    }
}

fn ago(days: u64) -> NaiveDate {
    Utc::now()
        .date_naive()
        .checked_sub_days(Days::new(days))
        .expect("date in range")
}

fn compact(d: NaiveDate) -> String {
    d.format("%Y%m%d").to_string()
}

// ---------------------------------------------------------------------------------------------------------
// An RFC 4180 reader, from FORMATS.md
// ---------------------------------------------------------------------------------------------------------

/// Reads RFC 4180 text into records, checking on the way that records are separated by CRLF only, that
/// quotes are where they may be, and that a field is quoted only when it needs to be.
fn read_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut in_quotes = false;
    let mut was_quoted = false;
    let mut chars = text.chars().peekable();
    let end_field = |field: &mut String, was_quoted: &mut bool, record: &mut Vec<String>| {
        if *was_quoted {
            assert!(
                field.contains([',', '"', '\r', '\n']),
                "{field:?} is quoted without need"
            );
        }
        record.push(std::mem::take(field));
        *was_quoted = false;
    };
    while let Some(c) = chars.next() {
        if in_quotes {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    field.push('"');
                } else {
                    in_quotes = false;
                }
            } else {
                field.push(c);
            }
            continue;
        }
        match c {
            '"' => {
                assert!(field.is_empty() && !was_quoted, "a quote inside a field: {field:?}");
                in_quotes = true;
                was_quoted = true;
            }
            ',' => end_field(&mut field, &mut was_quoted, &mut record),
            '\r' => {
                assert_eq!(chars.next(), Some('\n'), "CR without LF after {record:?}");
                end_field(&mut field, &mut was_quoted, &mut record);
                records.push(std::mem::take(&mut record));
            }
            '\n' => panic!("a bare LF ends a record after {record:?}"),
            _ => {
                assert!(!was_quoted, "text after a closing quote: {field:?}");
                field.push(c);
            }
        }
    }
    assert!(!in_quotes, "the text ends inside quotes");
    if !field.is_empty() || !record.is_empty() || was_quoted {
        end_field(&mut field, &mut was_quoted, &mut record);
        records.push(record);
    }
    records
}

/// The truth's canonical text of a CSV record (see the fingerprint contract).
fn canonical(f: &[String]) -> String {
    let dash = |s: &str| if s.is_empty() { "-".to_string() } else { s.to_string() };
    let at = DateTime::parse_from_rfc3339(&f[1]).expect("Operation Date is ISO 8601");
    [
        f[0].clone(),
        (at.timestamp() * 1_000_000 + i64::from(at.timestamp_subsec_micros())).to_string(),
        f[2].clone(),
        f[3].clone(),
        f[4].clone(),
        f[5].clone(),
        f[6].clone(),
        dash(&f[7]),
        dash(&f[8]),
        dash(&f[9]),
        dash(&f[10]),
        dash(&f[11]),
        f[12].clone(),
        f[13].clone(),
    ]
    .join("\u{1f}")
}

// ---------------------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------------------

#[test]
fn the_flags_parse_with_their_documented_defaults() {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        sim: SimArgs,
    }
    let d = Cli::parse_from(["etl-sim"]).sim;
    assert_eq!(
        (
            d.audit_license.as_str(),
            d.audit_api_account_id.as_str(),
            d.audit_api_account_password.as_str(),
            d.audit_account_id.as_str()
        ),
        ("sim-license", "sim-api-account", "sim-api-password", "100000001")
    );
    assert_eq!(
        (
            d.audit_job_polls,
            d.audit_system_error_first,
            d.audit_url_ttl,
            d.audit_rows_per_day
        ),
        (3, false, 900, 300)
    );
    let c = Cli::parse_from([
        "etl-sim",
        "--audit-license",
        "L",
        "--audit-api-account-id",
        "I",
        "--audit-api-account-password",
        "P",
        "--audit-account-id",
        "42",
        "--audit-job-polls",
        "1",
        "--audit-system-error-first",
        "--audit-url-ttl",
        "5",
        "--audit-rows-per-day",
        "7",
    ])
    .sim;
    assert_eq!(
        (
            c.audit_license.as_str(),
            c.audit_api_account_id.as_str(),
            c.audit_api_account_password.as_str(),
            c.audit_account_id.as_str()
        ),
        ("L", "I", "P", "42")
    );
    assert_eq!(
        (
            c.audit_job_polls,
            c.audit_system_error_first,
            c.audit_url_ttl,
            c.audit_rows_per_day
        ),
        (1, true, 5, 7)
    );
}

#[tokio::test]
async fn impossible_options_are_refused_at_start() {
    for (bad, needle) in [
        (
            SimArgs {
                audit_job_polls: 0,
                ..args(1, 10)
            },
            "--audit-job-polls",
        ),
        (
            SimArgs {
                audit_url_ttl: 0,
                ..args(1, 10)
            },
            "--audit-url-ttl",
        ),
        (
            SimArgs {
                audit_account_id: String::new(),
                ..args(1, 10)
            },
            "--audit-account-id",
        ),
    ] {
        let err = crate::start(bad).await.expect_err("refused");
        assert!(err.to_string().contains(needle), "{err}");
    }
}

#[tokio::test]
async fn envelopes_round_trip_whatever_the_prefixes_and_answers_vary_theirs() {
    let sim = Audit::start(args(3, 10)).await;
    let (start, end) = (compact(ago(2)), compact(ago(1)));
    let mut raws = Vec::new();
    let mut ids = Vec::new();
    for (i, p) in [&SEED, &OTHER, &SEED, &OTHER].into_iter().enumerate() {
        let name = format!("job {i} <&> \"日本語\"");
        let r = sim
            .post(p.envelope(
                CREDS,
                "getDownload",
                &download_selector(&start, &end, Some(&name), Some("EN")),
            ))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let ans = answer_of(&r.body, "getDownload");
        assert_eq!(ans.total, None, "getDownload has no page fields");
        let job = ans.values[0].clone().expect("created");
        assert_eq!(job.account, ACCOUNT);
        assert_eq!(job.name.as_deref(), Some(name.as_str()));
        assert_eq!(job.user, API_ACCOUNT);
        assert_eq!((job.status.as_str(), job.progress), ("IN_PROGRESS", 0));
        assert_eq!(job.start.len(), 14, "yyyyMMddHHmmss: {}", job.start);
        assert!(job.end.is_none() && job.url.is_none());
        ids.push(job.id);
        raws.push(r.body);
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "job ids increase: {ids:?}");
    // The first answer is the seed's own: ns2 is the AuditLog namespace in the body and the common one in
    // the header, the other way round from the seed's requests.
    assert!(
        raws[0].contains(&format!(
            "<ns2:getDownloadResponse xmlns=\"{COMMON_NS}\" xmlns:ns2=\"{AUDIT_NS}\">"
        )),
        "{}",
        raws[0]
    );
    assert!(raws[0].contains(&format!(
        "<ResponseHeader xmlns=\"{AUDIT_NS}\" xmlns:ns2=\"{COMMON_NS}\">"
    )));
    assert!(raws[0].contains("<operationSucceeded>true</operationSucceeded>"));
    // Later answers write the same names with other prefixes.
    let openings: HashSet<String> = raws
        .iter()
        .map(|r| {
            let at = r.find("Envelope").expect("an Envelope");
            r[..at].rsplit('<').next().expect("tag start").to_string()
        })
        .collect();
    assert_eq!(openings.len(), 4, "four envelope prefixes: {openings:?}");
    assert!(
        raws[1].contains(&format!("<getDownloadResponse xmlns=\"{AUDIT_NS}\"")),
        "{}",
        raws[1]
    );
    assert!(raws[1].contains("<ns2:operationSucceeded>true</ns2:operationSucceeded>"));
    assert!(
        raws[3].contains(&format!("<operationSucceeded xmlns=\"{COMMON_NS}\">true")),
        "{}",
        raws[3]
    );

    let jobs = sim.jobs().await;
    assert_eq!(jobs["created"], 4);
    assert_eq!(jobs["jobs"][0]["start_date"], start.as_str());
    assert_eq!(jobs["jobs"][0]["end_date"], end.as_str());
    assert_eq!(jobs["jobs"][0]["status"], "IN_PROGRESS");
    let stats = sim.h.stats().await;
    assert_eq!(stats["audit_log"]["requests"], 4);
    assert_eq!(stats["audit_log"]["data_requests"], 4);
}

#[tokio::test]
async fn refusals_are_soap_faults_that_name_the_problem() {
    let sim = Audit::start(args(4, 10)).await;
    let sel = download_selector("20250101", "20250102", Some("x"), None);
    let cases: Vec<(String, &str, &str, &str)> = vec![
        (
            SEED.envelope((LICENSE, API_ACCOUNT, "wrong"), "getDownload", &sel),
            "Client",
            "AUTHENTICATION_FAILED",
            "authentication failed",
        ),
        (
            OTHER.envelope(
                (LICENSE, API_ACCOUNT, "wrong"),
                "getDownload",
                &download_selector("2025-01-01", "20250102", None, Some("DE")),
            ),
            "Client",
            "AUTHENTICATION_FAILED",
            "authentication failed",
        ),
        (
            SEED.envelope(("other", API_ACCOUNT, PASSWORD), "getDownload", &sel),
            "Client",
            "AUTHENTICATION_FAILED",
            "authentication failed",
        ),
        (
            SEED.envelope(CREDS, "getDownload", &sel)
                .replace("<ns2:license>", "<license>")
                .replace("</ns2:license>", "</license>"),
            "Client",
            "AUTHENTICATION_FAILED",
            "RequestHeader/license must be in namespace",
        ),
        (
            OTHER.envelope(
                CREDS,
                "getDownload",
                &download_selector("2025-01-01", "20250102", None, None),
            ),
            "Client",
            "INVALID_PARAMETER",
            "selector/dateRange/startDate",
        ),
        (
            OTHER.envelope(
                CREDS,
                "getDownload",
                &download_selector("20250101", "20250102", None, Some("DE")),
            ),
            "Client",
            "INVALID_PARAMETER",
            "selector/lang",
        ),
        (
            OTHER.envelope(CREDS, "getDownloadStatus", &status_selector(&[], &["DONE"], None)),
            "Client",
            "INVALID_PARAMETER",
            "selector/auditLogJobStatuses",
        ),
        (
            SEED.envelope(CREDS, "getDownload", &sel)
                .replace(">100000001<", ">100000002<"),
            "Client",
            "ACCOUNT_NOT_PERMITTED",
            "selector/accountId",
        ),
        (
            SEED.envelope(CREDS, "getDownloadAll", &sel),
            "Client",
            "INVALID_REQUEST",
            "unknown operation",
        ),
        ("<not-soap/>".to_string(), "Client", "INVALID_REQUEST", "Envelope"),
    ];
    for (body, faultcode, code, needle) in cases {
        let r = sim.post(body).await;
        assert_eq!(r.status, 500, "{}", r.body);
        assert_eq!(r.header("content-type"), Some("text/xml; charset=utf-8"));
        let (fc, fs, dc) = fault_of(&r.body);
        assert_eq!((fc.as_str(), dc.as_str()), (faultcode, code), "{fs}");
        assert!(fs.contains(needle), "{needle:?} not in {fs:?}");
    }
    assert_eq!(sim.jobs().await["created"], 0, "no refused call created a job");

    let r = sim
        .h
        .client
        .post(sim.h.url(SERVICE))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("a=b")
        .send()
        .await
        .expect("answered");
    assert_eq!(r.status().as_u16(), 415);
    let r = sim.h.client.get(sim.h.url(SERVICE)).send().await.expect("answered");
    assert_eq!(r.status().as_u16(), 405);
}

#[tokio::test]
async fn polls_advance_a_job_until_it_completes_with_a_fresh_url_each_time() {
    let sim = Audit::start(args(5, 10)).await;
    let job = sim.create(Some("lifecycle"), "20250101", "20250101", None).await;
    let mut seen = Vec::new();
    for _ in 0..2 {
        let s = sim.status(job.id).await;
        assert_eq!(s.status, "IN_PROGRESS");
        assert!(s.url.is_none() && s.end.is_none());
        seen.push(s.progress);
    }
    assert_eq!(seen, [33, 66]);
    let done = sim.status(job.id).await;
    assert_eq!((done.status.as_str(), done.progress), ("COMPLETED", 100));
    assert_eq!(done.start, job.start);
    assert!(done.end.as_deref().is_some_and(|e| e.len() == 14 && *e >= *job.start));
    let url = done.url.clone().expect("a COMPLETED job carries a URL");
    let prefix = format!("http://{}/auditLogDownload/V201812/download/", sim.h.sim.addr());
    assert!(url.starts_with(&prefix), "{url}");
    let again = sim.status(job.id).await;
    let url2 = again.url.clone().expect("every COMPLETED answer carries a URL");
    assert_ne!(url, url2, "each answer mints a fresh URL");
    assert_eq!(again.end, done.end, "the end date stays");
    for u in [&url, &url2] {
        let (status, body, ct) = sim.get(u).await;
        assert_eq!(status, 200);
        assert_eq!(ct.as_deref(), Some("text/csv; charset=UTF-8"));
        assert!(body.starts_with("\u{feff}操作ID,".as_bytes()));
    }
    let (status, _, _) = sim.get(&format!("{prefix}nosuchtoken")).await;
    assert_eq!(status, 404);

    let jobs = sim.jobs().await;
    assert_eq!(jobs["created"], 1);
    assert_eq!(jobs["status_polls"], 4);
    assert_eq!(jobs["downloads"], 2);
    assert_eq!(jobs["jobs"][0]["polls"], 4);
    assert_eq!(jobs["jobs"][0]["status"], "COMPLETED");
    assert_eq!(jobs["jobs"][0]["name"], "lifecycle");
}

#[tokio::test]
async fn unknown_ids_answer_in_place_and_statuses_and_paging_select() {
    let sim = Audit::start(SimArgs {
        audit_job_polls: 2,
        ..args(6, 10)
    })
    .await;
    let j1 = sim.create(Some("one"), "20250101", "20250101", None).await;
    let j2 = sim.create(None, "20250101", "20250102", Some("EN")).await;
    assert_eq!(j2.name, None, "a job without a name has no auditLogJobName");
    let unknown = j2.id + 1000;

    // One poll of both (by id, an unknown one in between).
    let ans = sim
        .call(
            &OTHER,
            "getDownloadStatus",
            &status_selector(&[j1.id, unknown, j2.id, j1.id], &[], None),
        )
        .await;
    assert_eq!(ans.total, Some(3), "a repeated id counts once: {}", ans.raw);
    assert!(ans.raw.contains("AuditLogPage"));
    let kinds: Vec<Result<u64, String>> = ans.values.iter().map(|v| v.clone().map(|j| j.id)).collect();
    assert_eq!(kinds, [Ok(j1.id), Err("JOB_NOT_FOUND".to_string()), Ok(j2.id)]);

    // Only j1 polled again: it completes, j2 stays in progress.
    let done = sim.status(j1.id).await;
    assert_eq!(done.status, "COMPLETED");

    // All jobs (a poll of both), filtered by status: j2 completes too, so both are COMPLETED.
    let ans = sim
        .call(
            &SEED,
            "getDownloadStatus",
            &status_selector(&[], &["IN_PROGRESS"], None),
        )
        .await;
    assert_eq!(ans.total, Some(0), "{}", ans.raw);
    let ans = sim
        .call(
            &SEED,
            "getDownloadStatus",
            &status_selector(&[], &["COMPLETED", "SYSTEM_ERROR"], Some((2, 5))),
        )
        .await;
    assert_eq!(ans.total, Some(2));
    assert_eq!(ans.values.len(), 1, "paging starts at the second entry");
    let second = ans.values[0].clone().expect("a job");
    assert_eq!(second.id, j2.id);
    assert!(second.url.is_some(), "a shown COMPLETED job has a URL");
    let jobs = sim.jobs().await;
    assert_eq!(jobs["jobs"][0]["polls"], 4);
    assert_eq!(jobs["jobs"][1]["polls"], 3);
}

#[tokio::test]
async fn system_error_by_name_and_for_the_first_job_with_the_flag() {
    let sim = Audit::start(SimArgs {
        audit_job_polls: 1,
        ..args(7, 10)
    })
    .await;
    let bad = sim
        .create(Some("nightly SYSTEM_ERROR test"), "20250101", "20250101", None)
        .await;
    let good = sim.create(Some("nightly"), "20250101", "20250101", None).await;
    let b = sim.status(bad.id).await;
    assert_eq!(b.status, "SYSTEM_ERROR");
    assert!(b.url.is_none() && b.end.is_some() && b.progress < 100);
    assert_eq!(
        sim.status(bad.id).await.status,
        "SYSTEM_ERROR",
        "a failed job stays failed"
    );
    assert_eq!(sim.status(good.id).await.status, "COMPLETED");

    let flagged = Audit::start(SimArgs {
        audit_job_polls: 1,
        audit_system_error_first: true,
        ..args(7, 10)
    })
    .await;
    let first = flagged.create(Some("nightly"), "20250101", "20250101", None).await;
    let second = flagged.create(Some("nightly"), "20250101", "20250101", None).await;
    assert_eq!(flagged.status(first.id).await.status, "SYSTEM_ERROR");
    let ok = flagged.status(second.id).await;
    assert_eq!(ok.status, "COMPLETED");
    assert!(ok.url.is_some());
    assert_eq!(flagged.jobs().await["jobs"][0]["status"], "SYSTEM_ERROR");
}

#[tokio::test]
async fn urls_expire_with_410_and_a_later_poll_mints_a_working_one() {
    let sim = Audit::start(SimArgs {
        audit_job_polls: 1,
        audit_url_ttl: 1,
        ..args(8, 10)
    })
    .await;
    let job = sim.create(Some("ttl"), "20250101", "20250101", None).await;
    let url = sim.status(job.id).await.url.expect("completed at once");
    assert_eq!(sim.get(&url).await.0, 200, "fresh URLs work");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (status, body, _) = sim.get(&url).await;
    assert_eq!(status, 410, "{}", String::from_utf8_lossy(&body));
    let fresh = sim.status(job.id).await.url.expect("a fresh URL");
    assert_ne!(fresh, url);
    assert_eq!(sim.get(&fresh).await.0, 200);
    let jobs = sim.jobs().await;
    assert_eq!(
        (jobs["expired"].as_u64(), jobs["downloads"].as_u64()),
        (Some(1), Some(2))
    );
}

#[tokio::test]
async fn the_csv_is_rfc_4180_in_both_languages_and_adds_up_to_the_truth() {
    let dir = tempfile::tempdir().expect("temp dir");
    let truth_path = dir.path().join("truth.json");
    let sim = Audit::start(SimArgs {
        truth: Some(truth_path.clone()),
        audit_job_polls: 1,
        audit_rows_per_day: 300,
        ..args(9, 10)
    })
    .await;
    let truth: Value = serde_json::from_slice(&std::fs::read(&truth_path).expect("truth written")).expect("JSON");
    let section = &truth["audit_log"];
    assert_eq!(section["fingerprint_definition"], FINGERPRINT_DEFINITION);
    let days: Vec<&String> = section["days"].as_object().expect("days").keys().collect();
    assert_eq!(days.len(), 3, "{days:?}");
    let expected_days: Vec<String> = (1..=3).rev().map(|b| ago(b).format("%Y-%m-%d").to_string()).collect();
    assert_eq!(days, expected_days.iter().collect::<Vec<_>>());

    // A UTC day D is the local dates D (from 09:00) and D+1 (before 09:00). Two days ago, both local
    // dates are wholly past, so two jobs created a moment apart export the same records.
    let day = [ago(2), ago(3)]
        .into_iter()
        .find(|d| section["days"][d.format("%Y-%m-%d").to_string()]["rows"] != 0)
        .expect("one of two days has records");
    let next = day.checked_add_days(Days::new(1)).expect("date");
    let mut bodies = Vec::new();
    for lang in ["JA", "EN"] {
        let job = sim
            .create(
                Some(&format!("truth {lang}")),
                &compact(day),
                &compact(next),
                Some(lang),
            )
            .await;
        let url = sim.status(job.id).await.url.expect("completed");
        let (status, body, _) = sim.get(&url).await;
        assert_eq!(status, 200);
        bodies.push(String::from_utf8(body).expect("UTF-8"));
    }
    let (ja, en) = (&bodies[0], &bodies[1]);
    let ja = ja.strip_prefix('\u{feff}').expect("a BOM");
    let en = en.strip_prefix('\u{feff}').expect("a BOM");
    assert!(ja.starts_with(&format!("{JA}\r\n")), "{}", &ja[..200.min(ja.len())]);
    assert!(en.starts_with(&format!("{EN}\r\n")));
    assert_eq!(
        ja.trim_end_matches("\r\n").split_once("\r\n").map(|(_, rest)| rest),
        en.trim_end_matches("\r\n").split_once("\r\n").map(|(_, rest)| rest),
        "only the header depends on lang"
    );

    let records = read_csv(ja);
    assert_eq!(records[0].join(","), JA);
    let records = &records[1..];
    assert!(records.iter().all(|r| r.len() == 14), "14 fields per record");
    let ids: Vec<u64> = records.iter().map(|r| r[0].parse().expect("integer id")).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "operation ids unique and increasing"
    );
    assert!(
        records.iter().all(|r| r[1].len() == 25 && r[1].ends_with("+09:00")),
        "local ISO 8601 dates"
    );
    assert!(records.iter().all(|r| r[2] == ACCOUNT));
    let local_dates: HashSet<&str> = records.iter().map(|r| &r[1][..10]).collect();
    let want: HashSet<String> = [day, next].iter().map(|d| d.format("%Y-%m-%d").to_string()).collect();
    assert!(local_dates.iter().all(|d| want.contains(*d)), "{local_dates:?}");
    assert!(
        records.iter().any(|r| r[10].contains('\n') || r[11].contains('\n')),
        "multi-line values"
    );
    assert!(records.iter().any(|r| r[7].is_empty()), "an empty target id");
    assert!(records.iter().any(|r| r[13].contains(':')), "IPv6");
    assert!(records.iter().any(|r| !r[8].is_ascii()), "Japanese text");

    let start = day.and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp();
    let mut rows = 0u64;
    let mut sum = 0u64;
    let mut per_operation: BTreeMap<String, u64> = BTreeMap::new();
    for r in records {
        let at = DateTime::parse_from_rfc3339(&r[1]).expect("date").timestamp();
        if (start..start + 86_400).contains(&at) {
            rows += 1;
            sum = sum.wrapping_add(fnv1a64(canonical(r).as_bytes()));
            *per_operation.entry(r[5].clone()).or_default() += 1;
        }
    }
    let want = &section["days"][day.format("%Y-%m-%d").to_string()];
    assert!(rows > 0);
    assert_eq!(want["rows"], rows);
    assert_eq!(want["fingerprint"], format!("{sum:016x}"));
    assert_eq!(
        want["per_operation"],
        serde_json::to_value(&per_operation).expect("JSON")
    );
    assert!(
        records.len() as u64 > rows,
        "the two local dates reach beyond the UTC day, so the client must cut"
    );
}

#[tokio::test]
async fn faults_hit_soap_calls_and_downloads() {
    let sim = Audit::start(SimArgs {
        fault_rate: 1.0,
        audit_job_polls: 1,
        ..args(10, 10)
    })
    .await;
    let mut seen = HashSet::new();
    // SOAP calls: every one draws a fault; a dropped one was processed (the job exists).
    for _ in 0..40 {
        let body = SEED.envelope(
            CREDS,
            "getDownload",
            &download_selector("20250101", "20250101", None, None),
        );
        let resp = sim
            .h
            .client
            .post(sim.h.url(SERVICE))
            .header("Content-Type", "text/xml")
            .body(body)
            .send()
            .await
            .expect("status line arrives");
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let retry_after = resp.headers().contains_key("retry-after");
        let kind = match (status, resp.text().await) {
            (500, Ok(_)) => {
                assert!(ct.starts_with("text/html"), "an injected 500 is not a SOAP fault");
                "500"
            }
            (503, Ok(_)) if retry_after => "503-retry-after",
            (503, Ok(_)) => "503",
            (200, Ok(b)) => {
                answer_of(&b, "getDownload");
                "slow"
            }
            (200, Err(_)) => "dropped",
            (s, r) => panic!("unexpected {s}: {r:?}"),
        };
        seen.insert(kind);
        if seen.len() == 5 {
            break;
        }
    }
    assert_eq!(seen.len(), 5, "{seen:?}");
    // A download URL, polled until an answer arrives whole.
    let id = sim.jobs().await["jobs"][0]["id"].as_u64().expect("a job was created");
    let mut url = None;
    for _ in 0..60 {
        let body = OTHER.envelope(CREDS, "getDownloadStatus", &status_selector(&[id], &[], None));
        let resp = sim
            .h
            .client
            .post(sim.h.url(SERVICE))
            .header("Content-Type", "text/xml")
            .body(body)
            .send()
            .await
            .expect("status line arrives");
        if resp.status().as_u16() == 200
            && let Ok(b) = resp.text().await
        {
            url = answer_of(&b, "getDownloadStatus").values[0].clone().expect("job").url;
            break;
        }
    }
    let url = url.expect("a status answer arrived whole");
    let mut seen = HashSet::new();
    for _ in 0..60 {
        let resp = sim.h.client.get(&url).send().await.expect("status line arrives");
        let status = resp.status().as_u16();
        let kind = match (status, resp.bytes().await) {
            (500, _) => "500",
            (503, _) => "503",
            (200, Ok(b)) => {
                assert!(b.starts_with("\u{feff}".as_bytes()));
                "slow"
            }
            (200, Err(_)) => "dropped",
            (s, _) => panic!("unexpected {s}"),
        };
        seen.insert(kind);
        if ["500", "503", "dropped"].iter().all(|k| seen.contains(k)) {
            break;
        }
    }
    assert!(["500", "503", "dropped"].iter().all(|k| seen.contains(k)), "{seen:?}");
    let stats = sim.h.stats().await;
    assert_eq!(
        stats["audit_log"]["faults"], stats["audit_log"]["requests"],
        "every request drew a fault"
    );
}
