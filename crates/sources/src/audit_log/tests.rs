use std::time::Duration;

use chrono::{DateTime, Utc};
use etl_config::AuditLogConfig;
use etl_core::{ErrorClass, PlanRequest, Secret, Source};
use etl_http::{Client, HttpConfig, Redactor};

use super::{AuditLog, SOAP_NS, jobs_in};
use crate::test_server::scripted;
use crate::xml::Element;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn config(url: &str) -> AuditLogConfig {
    AuditLogConfig {
        url: url.into(),
        license: Secret::new("1111-LICENSE"),
        api_account_id: Secret::new("2222-ACCOUNT"),
        api_account_password: Secret::new("p@ss&word"),
        account_id: "100000001".into(),
        lang: "JA".into(),
        utc_offset_minutes: 540,
        download_hosts: Vec::new(),
        poll_interval: Duration::from_millis(10),
        poll_interval_max: Duration::from_millis(20),
        job_timeout: Duration::from_secs(60),
        job_attempts: 3,
    }
}

fn source(url: &str) -> AuditLog {
    let cfg = config(url);
    let http = HttpConfig {
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(5),
        ..Default::default()
    };
    let secrets = [
        cfg.license.clone(),
        cfg.api_account_id.clone(),
        cfg.api_account_password.clone(),
    ];
    AuditLog::new(cfg, Client::new(http, Redactor::new(secrets)).unwrap()).unwrap()
}

#[test]
fn a_utc_day_is_asked_as_the_local_dates_that_overlap_it() {
    let s = source("http://127.0.0.1:1/services/V201812/AuditLogService");
    let plan = s
        .plan(&PlanRequest {
            from: t("2025-11-16T00:00:00Z"),
            to: t("2025-11-18T00:00:00Z"),
            now: t("2025-11-20T00:00:00Z"),
            settle: Duration::from_secs(3600),
        })
        .unwrap();
    let units: Vec<_> = plan
        .units
        .iter()
        .map(|u| {
            (
                u.id.as_str(),
                u.params["startDate"].as_str(),
                u.params["endDate"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        units,
        [
            // UTC 2025-11-16 is local 11-16 09:00 to 11-17 09:00; `endDate` one day later
            // covers it whether the service reads it as inclusive or exclusive.
            ("audit_log-100000001-2025-11-16", "20251116", "20251118"),
            ("audit_log-100000001-2025-11-17", "20251117", "20251119"),
        ]
    );
    assert!(plan.units.iter().all(|u| !u.provisional));
}

/// The unit of UTC 2025-11-16, planned on the 20th.
fn unit_of_nov_16(s: &AuditLog) -> etl_core::Unit {
    s.plan(&PlanRequest {
        from: t("2025-11-16T00:00:00Z"),
        to: t("2025-11-17T00:00:00Z"),
        now: t("2025-11-20T00:00:00Z"),
        settle: Duration::from_secs(3600),
    })
    .unwrap()
    .units
    .remove(0)
}

/// An HTTP 500 carrying `xml`, as SOAP faults come.
fn http_500(xml: &str) -> String {
    format!(
        "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{xml}",
        xml.len()
    )
}

/// The seed's getDownload response: prefixes `ns2` for the service namespace, the default
/// namespace for the common one.
const SEED_RESPONSE: &str = r#"<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/">
  <SOAP-ENV:Body>
    <ns2:getDownloadResponse xmlns="http://im.yahooapis.jp/V201812" xmlns:ns2="http://im.yahooapis.jp/V201812/AuditLog">
      <ns2:rval>
        <ns2:values>
          <operationSucceeded>true</operationSucceeded>
          <ns2:auditLogJob>
            <ns2:accountId>100000001</ns2:accountId>
            <ns2:auditLogJobId>19771824</ns2:auditLogJobId>
            <ns2:auditLogJobStatus>IN_PROGRESS</ns2:auditLogJobStatus>
            <ns2:progress>0</ns2:progress>
          </ns2:auditLogJob>
        </ns2:values>
        <ns2:values>
          <operationSucceeded>true</operationSucceeded>
          <ns2:auditLogJob>
            <ns2:auditLogJobId>19771825</ns2:auditLogJobId>
            <ns2:auditLogJobStatus>COMPLETED</ns2:auditLogJobStatus>
            <ns2:progress>100</ns2:progress>
            <ns2:downloadAuditLogDownloadUrl>https://colo01.im.yahooapis.jp/auditLogDownload/V201812/download/fOFrjyw7I</ns2:downloadAuditLogDownloadUrl>
          </ns2:auditLogJob>
        </ns2:values>
      </ns2:rval>
    </ns2:getDownloadResponse>
  </SOAP-ENV:Body>
</SOAP-ENV:Envelope>"#;

#[test]
fn jobs_are_read_by_namespace_whatever_the_prefixes() {
    let swapped = SEED_RESPONSE.replace("SOAP-ENV", "S").replace(
        "xmlns=\"http://im.yahooapis.jp/V201812\" xmlns:ns2=\"http://im.yahooapis.jp/V201812/AuditLog\"",
        "xmlns=\"http://im.yahooapis.jp/V201812/AuditLog\" xmlns:ns2=\"http://im.yahooapis.jp/V201812\"",
    );
    for doc in [SEED_RESPONSE.to_string(), swapped] {
        let root = Element::parse(doc.as_bytes()).unwrap();
        let body = root.child(SOAP_NS, "Body").unwrap();
        let jobs = jobs_in(body, "getDownloadResponse").unwrap();
        assert_eq!(jobs.len(), 2);
        assert_eq!(
            (jobs[0].job_id.as_str(), jobs[0].status.as_str()),
            ("19771824", "IN_PROGRESS")
        );
        assert_eq!(jobs[1].progress, "100");
        assert!(jobs[1].url.as_deref().unwrap().ends_with("/download/fOFrjyw7I"));
    }
    let failed = r#"<E:Envelope xmlns:E="http://schemas.xmlsoap.org/soap/envelope/"><E:Body>
      <a:getDownloadStatusResponse xmlns:a="http://im.yahooapis.jp/V201812/AuditLog" xmlns:c="http://im.yahooapis.jp/V201812">
      <a:rval><a:values><c:operationSucceeded>false</c:operationSucceeded>
      <c:errors><c:code>JOB_NOT_FOUND</c:code><c:message>job 5 not found</c:message></c:errors></a:values></a:rval>
      </a:getDownloadStatusResponse></E:Body></E:Envelope>"#;
    let root = Element::parse(failed.as_bytes()).unwrap();
    let err = jobs_in(root.child(SOAP_NS, "Body").unwrap(), "getDownloadStatusResponse").unwrap_err();
    assert!(
        err.contains("JOB_NOT_FOUND") && err.contains("job 5 not found"),
        "{err}"
    );
}

#[tokio::test]
async fn a_soap_fault_fails_the_unit_at_once_with_its_string_and_no_secret() {
    let fault = r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><soapenv:Fault><faultcode>soapenv:Client</faultcode><faultstring>Authentication failed for 2222-ACCOUNT</faultstring><detail><c:ApiExceptionFault xmlns:c="http://im.yahooapis.jp/V201812"><c:code>AUTHENTICATION_FAILED</c:code></c:ApiExceptionFault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"#;
    let (base, seen) = scripted(vec![http_500(fault)]).await;
    let s = source(&format!("{base}services/V201812/AuditLogService"));
    let unit = unit_of_nov_16(&s);
    let (tx, _rx) = tokio::sync::mpsc::channel(1);
    let err = s.fetch(&unit, etl_core::PayloadSender::new(tx)).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Permanent);
    let msg = err.to_string();
    assert!(
        msg.contains("SOAP fault soapenv:Client: Authentication failed for ***"),
        "{msg}"
    );
    assert!(msg.contains("AUTHENTICATION_FAILED"), "{msg}");
    assert!(!msg.contains("2222-ACCOUNT"), "{msg}");
    let request = seen.lock().unwrap()[0].clone();
    assert_eq!(seen.lock().unwrap().len(), 1, "a fault is not retried");
    // The envelope carries the credentials, XML-escaped, and the two local dates.
    assert!(
        request.contains("<ns2:apiAccountPassword>p@ss&amp;word</ns2:apiAccountPassword>"),
        "{request}"
    );
    assert!(request.contains("<startDate>20251116</startDate>") && request.contains("<endDate>20251118</endDate>"));
}

fn fault_response(code: &str) -> String {
    let fault = format!(
        r#"<env:Envelope xmlns:env="http://schemas.xmlsoap.org/soap/envelope/"><env:Body><env:Fault><faultcode>env:{code}</faultcode><faultstring>{code} fault</faultstring></env:Fault></env:Body></env:Envelope>"#
    );
    http_500(&fault)
}

#[tokio::test]
async fn a_server_fault_is_retried_and_a_client_fault_is_not() {
    let (base, seen) = scripted(vec![
        fault_response("Server"),
        fault_response("Server"),
        fault_response("Client"),
    ])
    .await;
    let s = source(&format!("{base}services/V201812/AuditLogService"));
    let unit = unit_of_nov_16(&s);
    let (tx, _rx) = tokio::sync::mpsc::channel(1);
    let err = s.fetch(&unit, etl_core::PayloadSender::new(tx)).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Permanent);
    assert!(err.to_string().contains("SOAP fault env:Client: Client fault"), "{err}");
    assert_eq!(
        seen.lock().unwrap().len(),
        3,
        "two Server faults retried, the Client one not"
    );
    // A Server fault under another status than 500 is not retried by the HTTP client, but the
    // unit fails as retryable (the runner's rerun may succeed), not as permanent.
    let ok_fault = fault_response("Server").replace("500 Internal Server Error", "200 OK");
    let (base, _) = scripted(vec![ok_fault]).await;
    let s = source(&format!("{base}services/V201812/AuditLogService"));
    let unit = unit_of_nov_16(&s);
    let (tx, _rx) = tokio::sync::mpsc::channel(1);
    let err = s.fetch(&unit, etl_core::PayloadSender::new(tx)).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Retryable, "{err}");
}

fn job(id: &str, name: Option<&str>, status: &str) -> super::JobStatus {
    super::JobStatus {
        job_id: id.into(),
        name: name.map(str::to_string),
        status: status.into(),
        progress: "0".into(),
        url: None,
    }
}

#[test]
fn the_created_job_is_found_by_its_name_among_the_jobs_listed() {
    use super::pick_created;
    // The seed's getDownload response: the new job and an older, COMPLETED one.
    let seed = || {
        vec![
            job("19771824", Some("test job"), "IN_PROGRESS"),
            job("19771825", Some("test job completed"), "COMPLETED"),
        ]
    };
    assert_eq!(pick_created(seed(), "test job").unwrap().job_id, "19771824");
    let mut reversed = seed();
    reversed.reverse();
    assert_eq!(pick_created(reversed, "test job").unwrap().job_id, "19771824");
    // No name matches: the only IN_PROGRESS job, or the only job.
    assert_eq!(pick_created(seed(), "etl x #1").unwrap().job_id, "19771824");
    assert_eq!(
        pick_created(vec![job("7", None, "IN_PROGRESS")], "etl x #1")
            .unwrap()
            .job_id,
        "7"
    );
    let two = vec![job("8", Some("a"), "IN_PROGRESS"), job("9", Some("b"), "IN_PROGRESS")];
    let err = pick_created(two, "etl x #1").unwrap_err();
    assert!(err.contains("8, 9") && err.contains("etl x #1"), "{err}");
    assert!(pick_created(Vec::new(), "etl x #1").unwrap_err().contains("no job"));
}

fn status_envelope(job: &str, status: &str, url: Option<&str>) -> String {
    let url = url
        .map(|u| format!("<a:downloadAuditLogDownloadUrl>{u}</a:downloadAuditLogDownloadUrl>"))
        .unwrap_or_default();
    format!(
        r#"<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body>
        <a:getDownloadStatusResponse xmlns:a="http://im.yahooapis.jp/V201812/AuditLog" xmlns="http://im.yahooapis.jp/V201812">
        <a:rval><a:values><operationSucceeded>true</operationSucceeded><a:auditLogJob>
        <a:auditLogJobId>{job}</a:auditLogJobId><a:auditLogJobStatus>{status}</a:auditLogJobStatus>
        <a:progress>100</a:progress>{url}</a:auditLogJob></a:values></a:rval>
        </a:getDownloadStatusResponse></S:Body></S:Envelope>"#
    )
}

#[tokio::test]
async fn an_expired_download_url_is_renewed_by_polling_the_status_again() {
    use std::sync::Arc;

    use crate::test_server::{reply, routed};

    let csv = "\u{feff}操作ID,操作日時\r\n1,2025-11-17T09:01:08+09:00\r\n";
    let server = routed(Arc::new(move |target: &str, _range, nth, host: &str| {
        if target.starts_with("/services/") {
            let body = match nth {
                1 => status_envelope("77", "IN_PROGRESS", None)
                    .replace("getDownloadStatusResponse", "getDownloadResponse"),
                2 => status_envelope("77", "COMPLETED", Some(&format!("{host}/download/first"))),
                _ => status_envelope("77", "COMPLETED", Some(&format!("{host}/download/second"))),
            };
            return reply(200, &[("Content-Type", "text/xml".into())], body.as_bytes());
        }
        if target == "/download/first" {
            return reply(410, &[], b"expired");
        }
        reply(200, &[("Content-Type", "text/csv".into())], csv.as_bytes())
    }))
    .await;
    let s = source(&format!("{}/services/V201812/AuditLogService", server.base));
    let unit = unit_of_nov_16(&s);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<etl_core::Payload>(4);
    let collect = async {
        let mut bytes = Vec::new();
        while let Some(p) = rx.recv().await {
            assert_eq!(
                p.meta.labels["window_start_us"],
                unit.window.start.timestamp_micros().to_string()
            );
            let etl_core::PayloadBody::Chunks(mut chunks) = p.body else {
                panic!("a streamed file")
            };
            while let Some(c) = chunks.recv().await {
                bytes.extend_from_slice(&c.unwrap());
            }
        }
        bytes
    };
    let (result, bytes) = tokio::join!(s.fetch(&unit, etl_core::PayloadSender::new(tx)), collect);
    result.unwrap();
    assert_eq!(bytes, csv.as_bytes());
    let heads = server.heads.lock().unwrap().clone();
    let gets: Vec<_> = heads
        .iter()
        .filter(|h| h.starts_with("GET"))
        .map(|h| h.lines().next().unwrap().to_string())
        .collect();
    assert_eq!(gets, ["GET /download/first HTTP/1.1", "GET /download/second HTTP/1.1"]);
    assert_eq!(
        heads.iter().filter(|h| h.starts_with("POST")).count(),
        3,
        "create, poll, poll again"
    );
}

#[test]
fn job_ids_that_are_not_plain_ids_are_refused_naming_them() {
    for (id, shown) in [
        ("../../etc/x", "../../etc/x"),
        ("/abs", "/abs"),
        ("12&#0;", "12\\u{0}"),
        ("1&#10;2", "1\\u{a}2"),
        ("%2e%2e", "%2e%2e"),
        ("", ""),
    ] {
        let doc = status_envelope(id, "COMPLETED", Some("http://h/d"));
        let parsed = Element::parse(doc.as_bytes());
        // XML has no NUL, not even as a reference: such a response is refused before that.
        let Ok(root) = parsed else { continue };
        let err = jobs_in(root.child(SOAP_NS, "Body").unwrap(), "getDownloadStatusResponse").unwrap_err();
        assert_eq!(
            err,
            format!(
                "the service returned the job id `{shown}`, which is not a plain id (1 to 64 letters, digits, `-` or `_`)"
            ),
            "{id}"
        );
    }
    let ok = status_envelope("19771824", "COMPLETED", None);
    let root = Element::parse(ok.as_bytes()).unwrap();
    assert_eq!(
        jobs_in(root.child(SOAP_NS, "Body").unwrap(), "getDownloadStatusResponse").unwrap()[0].job_id,
        "19771824"
    );
}

#[tokio::test]
async fn a_soap_response_with_a_doctype_or_deep_nesting_fails_cleanly() {
    let with_doctype = status_envelope("1", "COMPLETED", Some("http://h/d")).replacen(
        "<S:Envelope",
        "<!DOCTYPE S:Envelope [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><S:Envelope",
        1,
    );
    let deep = format!(
        r#"<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body>{}{}</S:Body></S:Envelope>"#,
        "<x>".repeat(10_000),
        "</x>".repeat(10_000)
    );
    for (body, reason) in [
        (with_doctype, "DOCTYPE declaration"),
        (deep, "nested more than 64 elements deep"),
    ] {
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let (base, seen) = scripted(vec![resp]).await;
        let s = source(&format!("{base}services/V201812/AuditLogService"));
        let unit = unit_of_nov_16(&s);
        let (tx, _rx) = tokio::sync::mpsc::channel(1);
        let err = s.fetch(&unit, etl_core::PayloadSender::new(tx)).await.unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("not the expected SOAP response") && msg.contains(reason),
            "{msg}"
        );
        assert!(!msg.contains("root:") && !msg.contains("2222-ACCOUNT"), "{msg}");
        assert_eq!(seen.lock().unwrap().len(), 1);
    }
}

#[tokio::test]
async fn the_token_in_a_download_url_path_never_reaches_an_error() {
    use std::sync::Arc;

    use crate::test_server::{reply, routed};

    const TOKEN_IN_PATH: &str = "lpEbBaYJwrCwfSxNcYDvdM64";
    let server = routed(Arc::new(move |target: &str, _range, nth, host: &str| {
        if target.starts_with("/services/") {
            let url = format!("{host}/auditLogDownload/V201812/download/{TOKEN_IN_PATH}");
            let mut body = status_envelope("77", "COMPLETED", Some(&url));
            if nth == 1 {
                body = body.replace("getDownloadStatusResponse", "getDownloadResponse");
            }
            return reply(200, &[("Content-Type", "text/xml".into())], body.as_bytes());
        }
        reply(503, &[], format!("busy serving {target}").as_bytes())
    }))
    .await;
    let cfg = AuditLogConfig {
        job_attempts: 1,
        ..config(&format!("{}/services/V201812/AuditLogService", server.base))
    };
    let http = HttpConfig {
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(5),
        max_attempts: 3,
        ..Default::default()
    };
    let s = AuditLog::new(cfg, Client::new(http, Redactor::new([])).unwrap()).unwrap();
    let unit = unit_of_nov_16(&s);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<etl_core::Payload>(4);
    let drain = async {
        let mut errors = Vec::new();
        while let Some(p) = rx.recv().await {
            if let etl_core::PayloadBody::Chunks(mut chunks) = p.body {
                while let Some(c) = chunks.recv().await {
                    if let Err(e) = c {
                        errors.push(e.to_string());
                    }
                }
            }
        }
        errors
    };
    let (result, errors) = tokio::join!(s.fetch(&unit, etl_core::PayloadSender::new(tx)), drain);
    let err = result.unwrap_err().to_string();
    assert!(
        err.contains("HTTP 503") && err.contains("/auditLogDownload/V201812/download/***"),
        "{err}"
    );
    for text in errors.iter().chain([&err]) {
        assert!(!text.contains(TOKEN_IN_PATH), "{text}");
    }
}

#[tokio::test]
async fn a_resumed_job_still_in_progress_past_job_timeout_is_replaced() {
    use std::sync::Arc;

    use crate::test_server::{reply, routed};

    let csv = "\u{feff}操作ID,操作日時\r\n1,2025-11-16T10:00:00+09:00\r\n";
    let server = routed(Arc::new(move |target: &str, _range, nth, host: &str| {
        if target.starts_with("/services/") {
            let body = match nth {
                // The earlier run's job 41, created on the 20th: still IN_PROGRESS.
                1 => status_envelope("41", "IN_PROGRESS", None),
                2 => status_envelope("77", "IN_PROGRESS", None)
                    .replace("getDownloadStatusResponse", "getDownloadResponse"),
                _ => status_envelope("77", "COMPLETED", Some(&format!("{host}/download/77"))),
            };
            return reply(200, &[("Content-Type", "text/xml".into())], body.as_bytes());
        }
        reply(200, &[("Content-Type", "text/csv".into())], csv.as_bytes())
    }))
    .await;
    let s = source(&format!("{}/services/V201812/AuditLogService", server.base));
    let unit = unit_of_nov_16(&s);
    let state: Arc<dyn etl_core::StateStore> = Arc::new(etl_core::MemoryState::default());
    let checkpoint = etl_core::Checkpoint::new(Arc::clone(&state), unit.id.clone());
    checkpoint
        .save(&super::JobCheckpoint {
            job_id: "41".into(),
            start_date: "20251116".into(),
            end_date: "20251118".into(),
            lang: "JA".into(),
            account_id: "100000001".into(),
            created_at: t("2025-11-20T00:00:00Z"),
            attempt: 3,
        })
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<etl_core::Payload>(4);
    let sender = etl_core::PayloadSender::new(tx).with_checkpoint(checkpoint.clone());
    let drain = async {
        let mut names = Vec::new();
        while let Some(p) = rx.recv().await {
            names.push(p.meta.name.clone());
            if let etl_core::PayloadBody::Chunks(mut chunks) = p.body {
                while chunks.recv().await.is_some() {}
            }
        }
        names
    };
    let (result, names) = tokio::join!(s.fetch(&unit, sender), drain);
    result.unwrap();
    assert_eq!(names, ["audit-log-job-77.csv"]);
    let saved: super::JobCheckpoint = checkpoint.load().await.unwrap().unwrap();
    assert_eq!((saved.job_id.as_str(), saved.attempt), ("77", 4));
    let posts = server
        .heads
        .lock()
        .unwrap()
        .iter()
        .filter(|h| h.starts_with("POST"))
        .count();
    assert_eq!(posts, 3, "poll the old job once, create a new one, poll it");
}
