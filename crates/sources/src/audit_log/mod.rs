//! The audit-log SOAP service (`AuditLogService`, seed `audit-log-soap-service.txt`): records
//! come from asynchronous export jobs.
//!
//! Rules of the API that shape this module:
//! - `getDownload` creates a job for a `dateRange` of dates in the account's time zone (+09:00
//!   by default). A unit is one UTC day, so it asks for the local dates that overlap that day
//!   and the decoder keeps only the records of the unit's UTC window (payload labels
//!   `window_start_us`/`window_end_us`).
//! - `getDownloadStatus` is polled (backoff from `poll_interval` to `poll_interval_max`) until
//!   the job is `COMPLETED`, within `job_timeout`. Every COMPLETED status carries a fresh
//!   `downloadAuditLogDownloadUrl`, valid 15 minutes: an expired URL (403/410) is replaced by
//!   polling again. `SYSTEM_ERROR` re-creates the job, at most `job_attempts` jobs per unit and
//!   run. The `dateRange` ends a day late: the seed does not say whether `endDate` is inclusive.
//! - A job is server-side work a crash must not duplicate: its id and parameters (never its URL)
//!   are saved in the unit's checkpoint as soon as it exists, and a rerun resumes polling it.
//!   A job created before the unit's window was final is not resumed (it would miss late
//!   records); a provisional unit always gets a new job.
//! - SOAP faults come with HTTP 500. A `Server` fault (the service failed, not the request) is
//!   retried with backoff like any other 500; every other fault (`Client`: credentials, a bad
//!   selector) fails the unit at once with the fault string. Namespace prefixes vary: elements
//!   are matched by namespace URI and local name.
//! - The RequestHeader's license, apiAccountId and apiAccountPassword are secrets: the HTTP
//!   client redacts them from every log and error.
//! - A job id comes from the server and names the payload (`audit-log-job-{id}.csv`): one that
//!   is not a plain id (`../x`, a NUL, a line break) is refused, naming it.

use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Days, NaiveDate, Utc};
use etl_config::AuditLogConfig;
use etl_core::{
    Checkpoint, Cost, FetchStats, PayloadBody, PayloadMeta, PayloadSender, Plan, PlanRequest, Source, StageError, Unit,
    Window,
};
use etl_http::Client;
use futures::future::BoxFuture;
use quick_xml::escape::escape;
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, mpsc};

use crate::download;
use crate::xml::Element;
use crate::{day_start, utc_days};

/// The SOAP envelope namespace.
pub const SOAP_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// The service's namespace.
pub const AUDIT_NS: &str = "http://im.yahooapis.jp/V201812/AuditLog";
/// The namespace of the common header and paging types.
pub const COMMON_NS: &str = "http://im.yahooapis.jp/V201812";
/// Refreshes of an expired download URL (new status polls) before the job is re-created.
const URL_REFRESHES: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum AuditLogError {
    #[error("{url}: SOAP fault {code}: {message}{}", if .detail.is_empty() { String::new() } else { format!(" ({})", .detail) })]
    Fault {
        url: String,
        code: String,
        message: String,
        detail: String,
    },
    #[error("{url}: {operation} failed: {message}")]
    Operation {
        url: String,
        operation: &'static str,
        message: String,
    },
    #[error("{url} answered HTTP {status} with a body that is not the expected SOAP response: {reason}")]
    NotSoap { url: String, status: u16, reason: String },
    #[error(
        "export job {job_id} ended in SYSTEM_ERROR {attempts} time(s) (jobs re-created up to job_attempts): {message}"
    )]
    SystemError {
        job_id: String,
        attempts: u32,
        message: String,
    },
    #[error(
        "export job {job_id} is still IN_PROGRESS ({progress} %) after {waited:?} (job_timeout); the next run resumes it"
    )]
    Timeout {
        job_id: String,
        progress: String,
        waited: Duration,
    },
}

/// What the checkpoint keeps of a job: enough to resume polling it, never its URL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobCheckpoint {
    pub job_id: String,
    pub start_date: String,
    pub end_date: String,
    pub lang: String,
    pub account_id: String,
    pub created_at: DateTime<Utc>,
    /// Jobs created for the unit so far, this one included.
    pub attempt: u32,
}

/// A job's state as a status response shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobStatus {
    pub job_id: String,
    /// `auditLogJobName`, when the response carries it.
    pub name: Option<String>,
    pub status: String,
    pub progress: String,
    pub url: Option<String>,
}

/// The audit-log source.
#[derive(Debug)]
pub struct AuditLog {
    cfg: AuditLogConfig,
    client: Client,
    downloads: Client,
}

impl AuditLog {
    pub fn new(cfg: AuditLogConfig, client: Client) -> Result<Self, StageError> {
        let host = url::Url::parse(&cfg.url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .ok_or_else(|| StageError::permanent(format!("source.url `{}` has no host", cfg.url)))?;
        let mut hosts = cfg.download_hosts.clone();
        hosts.push(host);
        let downloads =
            Client::for_downloads(*client.config(), client.redactor().clone(), hosts).map_err(StageError::permanent)?;
        Ok(Self { cfg, client, downloads })
    }

    /// The `dateRange` of a UTC window, in local dates of the account's time zone: from the
    /// first local date that overlaps the window to the day after the last one.
    ///
    /// The seed does not say whether `endDate` is inclusive, so the range is right under both
    /// readings (FORMATS.md): `endDate` is the day after the last local date that overlaps the
    /// window. Read inclusively, the export holds one local day more than needed, which the
    /// decoder drops with everything else outside the window.
    fn local_dates(&self, window: Window) -> (NaiveDate, NaiveDate) {
        let offset = chrono::Duration::minutes(i64::from(self.cfg.utc_offset_minutes));
        let first = (window.start + offset).date_naive();
        let last = (window.end - chrono::Duration::microseconds(1) + offset).date_naive();
        (first, last + Days::new(1))
    }

    fn envelope(&self, body: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<SOAP-ENV:Envelope xmlns:SOAP-ENV="{SOAP_NS}">
  <SOAP-ENV:Header>
    <RequestHeader xmlns="{AUDIT_NS}" xmlns:ns2="{COMMON_NS}">
      <ns2:license>{}</ns2:license>
      <ns2:apiAccountId>{}</ns2:apiAccountId>
      <ns2:apiAccountPassword>{}</ns2:apiAccountPassword>
    </RequestHeader>
  </SOAP-ENV:Header>
  <SOAP-ENV:Body>
{body}
  </SOAP-ENV:Body>
</SOAP-ENV:Envelope>"#,
            escape(self.cfg.license.expose()),
            escape(self.cfg.api_account_id.expose()),
            escape(self.cfg.api_account_password.expose()),
        )
    }

    /// POSTs an envelope; returns the `Body` element of a non-fault answer.
    async fn call(&self, operation: &'static str, body: String, stats: &mut FetchStats) -> Result<Element, StageError> {
        let url = self.client.redactor().redact_url(&self.cfg.url);
        let envelope = self.envelope(&body);
        let is_fault = |status: u16, body: &[u8]| status == 500 && final_fault(body);
        let resp = self
            .client
            .send_unless(
                &format!("audit_log {operation}"),
                |c| {
                    c.post(&self.cfg.url)
                        .header("Content-Type", "text/xml; charset=utf-8")
                        .header("SOAPAction", "\"\"")
                        .body(envelope.clone())
                },
                &is_fault,
            )
            .await
            .map_err(|e| StageError::from(e).context(operation))?;
        stats.requests += u64::from(resp.attempts);
        stats.retries += u64::from(resp.attempts.saturating_sub(1));
        stats.bytes += resp.body.len() as u64;
        let not_soap = |reason: String| {
            let err = AuditLogError::NotSoap {
                url: url.clone(),
                status: resp.status,
                reason: self.client.redactor().redact(&reason),
            };
            if resp.status >= 500 || resp.status == 200 {
                StageError::retryable(err)
            } else {
                StageError::permanent(err)
            }
        };
        let root = Element::parse(&resp.body).map_err(&not_soap)?;
        if !root.is(SOAP_NS, "Envelope") {
            return Err(not_soap(format!(
                "the root element is <{}>, not a SOAP Envelope",
                root.local
            )));
        }
        let soap_body = root
            .child(SOAP_NS, "Body")
            .ok_or_else(|| not_soap("the envelope has no Body".into()))?;
        if let Some(fault) = soap_body.child(SOAP_NS, "Fault") {
            // SOAP 1.1 fault children are unqualified.
            let text = |name: &str| fault.find_local(name).map(|e| e.text.clone()).unwrap_or_default();
            let detail = fault.find_local("detail").map(flatten_text).unwrap_or_default();
            let code = text("faultcode");
            // Only a Server fault that came with another status than 500 gets here (a 500 one
            // was retried by the HTTP client, and what it gave up on is its error).
            let server = is_server_fault(&code);
            let err = AuditLogError::Fault {
                url,
                code,
                message: self.client.redactor().redact(&text("faultstring")),
                detail: self.client.redactor().redact(&detail),
            };
            return Err(if server {
                StageError::retryable(err)
            } else {
                StageError::permanent(err)
            });
        }
        if resp.status != 200 {
            return Err(not_soap(format!("HTTP {} without a SOAP fault", resp.status)));
        }
        Ok(soap_body.clone())
    }

    /// `getDownload`: creates a job and returns its status.
    ///
    /// The seed's own getDownload response lists a second, older job of the account besides the
    /// new one, so the new job is found by its name, which is unique to this call (the unit,
    /// the attempt, the creation time); by position only if no job carries a name.
    async fn create_job(
        &self,
        unit: &Unit,
        attempt: u32,
        created_at: DateTime<Utc>,
        stats: &mut FetchStats,
    ) -> Result<JobStatus, StageError> {
        let (start, end) = self.local_dates(unit.window);
        let name = format!("etl {} #{attempt} {}", unit.id, created_at.format("%Y%m%dT%H%M%S%.3fZ"));
        let body = format!(
            r#"    <getDownload xmlns="{AUDIT_NS}">
      <selector>
        <accountId>{}</accountId>
        <dateRange>
          <startDate>{}</startDate>
          <endDate>{}</endDate>
        </dateRange>
        <auditLogJob>
          <auditLogJobName>{}</auditLogJobName>
        </auditLogJob>
        <lang>{}</lang>
      </selector>
    </getDownload>"#,
            escape(&self.cfg.account_id),
            start.format("%Y%m%d"),
            end.format("%Y%m%d"),
            escape(&name),
            self.cfg.lang,
        );
        let body = self.call("getDownload", body, stats).await?;
        let jobs = jobs_in(&body, "getDownloadResponse").map_err(|m| self.operation_error("getDownload", m))?;
        self.learn_urls(&jobs);
        pick_created(jobs, &name).map_err(|m| self.operation_error("getDownload", m))
    }

    /// `getDownloadStatus` of one job; `None` when the service no longer knows it.
    async fn job_status(&self, job_id: &str, stats: &mut FetchStats) -> Result<Option<JobStatus>, StageError> {
        let body = format!(
            r#"    <getDownloadStatus xmlns="{AUDIT_NS}">
      <selector>
        <accountId>{}</accountId>
        <auditLogJobIds>{}</auditLogJobIds>
      </selector>
    </getDownloadStatus>"#,
            escape(&self.cfg.account_id),
            escape(job_id),
        );
        let body = self.call("getDownloadStatus", body, stats).await?;
        match jobs_in(&body, "getDownloadStatusResponse") {
            Ok(jobs) => {
                self.learn_urls(&jobs);
                Ok(jobs.into_iter().find(|j| j.job_id == job_id))
            }
            Err(m) if m.contains("not found") || m.contains("NOT_FOUND") => Ok(None),
            Err(m) => Err(self.operation_error("getDownloadStatus", m)),
        }
    }

    /// A download URL is a bearer capability for 15 minutes, its token the last segment of its
    /// path (`.../download/fOFrjyw7I`), where no query-parameter rule sees it: every clone of
    /// the redactor (the download client's too) learns it before the URL can reach a log line
    /// or an error.
    fn learn_urls(&self, jobs: &[JobStatus]) {
        for url in jobs.iter().filter_map(|j| j.url.as_deref()) {
            let token = url::Url::parse(url)
                .ok()
                .and_then(|u| u.path_segments()?.rfind(|s| !s.is_empty()).map(str::to_string));
            if let Some(token) = token {
                self.client.redactor().learn(&etl_core::Secret::new(token));
            }
        }
    }

    fn operation_error(&self, operation: &'static str, message: String) -> StageError {
        StageError::permanent(AuditLogError::Operation {
            url: self.client.redactor().redact_url(&self.cfg.url),
            operation,
            message: self.client.redactor().redact(&message),
        })
    }

    /// Polls until the job leaves IN_PROGRESS or `job_timeout` has passed since it was created.
    async fn wait_for(&self, unit: &Unit, job: &JobCheckpoint, stats: &mut FetchStats) -> Result<Waited, StageError> {
        let mut wait = self.cfg.poll_interval;
        loop {
            let Some(status) = self.job_status(&job.job_id, stats).await? else {
                return Ok(Waited::Gone);
            };
            if status.status != "IN_PROGRESS" {
                return Ok(Waited::Ended(status));
            }
            let waited = (Utc::now() - job.created_at).to_std().unwrap_or_default();
            if waited >= self.cfg.job_timeout {
                return Ok(Waited::TimedOut(AuditLogError::Timeout {
                    job_id: job.job_id.clone(),
                    progress: status.progress,
                    waited,
                }));
            }
            tracing::info!(unit = %unit.id, job = %job.job_id, progress = %status.progress, "export job in progress");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(self.cfg.poll_interval_max);
        }
    }

    async fn fetch_unit(&self, unit: &Unit, mut out: PayloadSender) -> Result<FetchStats, StageError> {
        let mut stats = FetchStats::default();
        let checkpoint = out.checkpoint().cloned();
        let (start, end) = self.local_dates(unit.window);
        let params = |job_id: String, created_at: DateTime<Utc>, attempt: u32| JobCheckpoint {
            job_id,
            start_date: start.format("%Y%m%d").to_string(),
            end_date: end.format("%Y%m%d").to_string(),
            lang: self.cfg.lang.clone(),
            account_id: self.cfg.account_id.clone(),
            created_at,
            attempt,
        };
        let mut job = match &checkpoint {
            Some(cp) => self.resumable(unit, cp, &params).await?,
            None => None,
        };
        // `attempt` numbers the unit's jobs across runs (it names them); `created` counts the
        // jobs this run made, which `job_attempts` bounds. Were the bound on `attempt`, a unit
        // whose last job of a run ended in SYSTEM_ERROR, vanished or timed out would resume that
        // job on every later run and fail at once, without ever asking for a new one.
        let mut attempt = job.as_ref().map(|j| j.attempt).unwrap_or(0);
        let mut created = 0;
        let mut last_error = String::new();
        loop {
            let (current, resumed) = match job.take() {
                Some(j) => {
                    tracing::info!(unit = %unit.id, job = %j.job_id, "resuming the export job of an earlier run");
                    (j, true)
                }
                None => {
                    if created >= self.cfg.job_attempts {
                        return Err(StageError::retryable(AuditLogError::SystemError {
                            job_id: "-".into(),
                            attempts: created,
                            message: last_error,
                        }));
                    }
                    attempt += 1;
                    created += 1;
                    let created_at = Utc::now();
                    let status = self.create_job(unit, attempt, created_at, &mut stats).await?;
                    let j = params(status.job_id.clone(), created_at, attempt);
                    if let Some(cp) = &checkpoint {
                        cp.save(&j).await.map_err(|e| e.context("saving the export job"))?;
                    }
                    tracing::info!(unit = %unit.id, job = %j.job_id, attempt, "export job created");
                    (j, false)
                }
            };
            let status = match self.wait_for(unit, &current, &mut stats).await? {
                Waited::Ended(s) => s,
                Waited::Gone => {
                    tracing::warn!(unit = %unit.id, job = %current.job_id, "the service no longer knows the export job; creating a new one");
                    last_error = format!("job {} disappeared", current.job_id);
                    continue;
                }
                // A job of an earlier run that is still not done has had its `job_timeout`:
                // this run asks for a new one instead of failing on the old one every time.
                Waited::TimedOut(_) if resumed => {
                    last_error = format!(
                        "job {} of an earlier run was still IN_PROGRESS after job_timeout",
                        current.job_id
                    );
                    tracing::warn!(unit = %unit.id, job = %current.job_id, "{last_error}; creating a new one");
                    continue;
                }
                Waited::TimedOut(e) => return Err(StageError::retryable(e)),
            };
            match status.status.as_str() {
                "COMPLETED" => {}
                "SYSTEM_ERROR" => {
                    last_error = format!("job {} ended in SYSTEM_ERROR", current.job_id);
                    if created >= self.cfg.job_attempts {
                        return Err(StageError::retryable(AuditLogError::SystemError {
                            job_id: current.job_id,
                            attempts: created,
                            message: last_error,
                        }));
                    }
                    tracing::warn!(unit = %unit.id, job = %current.job_id, attempt, "export job ended in SYSTEM_ERROR; creating a new one");
                    continue;
                }
                other => {
                    return Err(self.operation_error("getDownloadStatus", format!("unknown job status `{other}`")));
                }
            }
            let Some(url) = status.url.clone() else {
                last_error = format!("job {} is COMPLETED without a download URL", current.job_id);
                continue;
            };
            match self.download(unit, &current, url, &mut out, &mut stats).await {
                Ok(()) => return Ok(stats),
                Err(DownloadFailure::UrlNotRenewed(message)) => {
                    tracing::warn!(unit = %unit.id, job = %current.job_id, "{message}; creating a new job");
                    last_error = message;
                }
                Err(DownloadFailure::Other(e)) => return Err(e),
            }
        }
    }

    /// The checkpointed job, if it may be resumed for this unit.
    async fn resumable(
        &self,
        unit: &Unit,
        cp: &Checkpoint,
        params: &(dyn Fn(String, DateTime<Utc>, u32) -> JobCheckpoint + Sync),
    ) -> Result<Option<JobCheckpoint>, StageError> {
        let Some(saved) = cp.load::<JobCheckpoint>().await? else {
            return Ok(None);
        };
        let expected = params(saved.job_id.clone(), saved.created_at, saved.attempt);
        // A job made before the window was final misses what came later: not resumed.
        let fresh_enough = !unit.provisional && saved.created_at >= unit.window.end;
        if saved == expected && fresh_enough {
            Ok(Some(saved))
        } else {
            cp.clear().await?;
            Ok(None)
        }
    }

    /// Streams the job's CSV as one payload. A URL that cannot be renewed before any byte was
    /// delivered lets the caller re-create the job; any later failure fails the unit (the job
    /// stays in the checkpoint, so the next run downloads it again).
    async fn download(
        &self,
        unit: &Unit,
        job: &JobCheckpoint,
        url: String,
        out: &mut PayloadSender,
        stats: &mut FetchStats,
    ) -> Result<(), DownloadFailure> {
        let (tx, rx) = mpsc::channel(8);
        let file_name = format!("audit-log-job-{}.csv", job.job_id);
        let mut meta = PayloadMeta {
            name: file_name.clone(),
            content_type: Some("text/csv".into()),
            ..Default::default()
        };
        meta.labels.insert("file_name".into(), file_name.clone());
        meta.labels.insert(
            "window_start_us".into(),
            unit.window.start.timestamp_micros().to_string(),
        );
        meta.labels
            .insert("window_end_us".into(), unit.window.end.timestamp_micros().to_string());
        let urls = JobUrl {
            source: self,
            job_id: job.job_id.clone(),
            current: Mutex::new((0, url, Utc::now())),
            polls: Mutex::new(FetchStats::default()),
        };
        let target = download::Target {
            what: format!("audit_log {} download of job {}", unit.id, job.job_id),
            label: file_name,
            size: None,
            headers: Vec::new(),
            max_refreshes: URL_REFRESHES,
        };
        let counters = download::Counters::default();
        out.send(meta, PayloadBody::Chunks(rx))
            .await
            .map_err(DownloadFailure::Other)?;
        stats.payloads += 1;
        let result = download::stream(&self.downloads, &target, &urls, &mut tx.clone(), &counters).await;
        stats.requests += counters.requests.load(Ordering::Relaxed);
        stats.retries += counters.retries.load(Ordering::Relaxed);
        stats.bytes += counters.bytes.load(Ordering::Relaxed);
        let polls = urls.polls.lock().await.clone();
        stats.requests += polls.requests;
        stats.retries += polls.retries;
        stats.bytes += polls.bytes;
        match result {
            Ok(()) => Ok(()),
            Err(e) => {
                let nothing_delivered = counters.bytes.load(Ordering::Relaxed) == 0;
                let message = e.to_string();
                let _ = tx.send(Err(StageError::new(e.class(), message.clone()))).await;
                if nothing_delivered && e.class() != etl_core::ErrorClass::Cancelled {
                    Err(DownloadFailure::UrlNotRenewed(message))
                } else {
                    Err(DownloadFailure::Other(e))
                }
            }
        }
    }
}

/// How polling a job ended.
enum Waited {
    /// It left IN_PROGRESS.
    Ended(JobStatus),
    /// The service no longer knows it.
    Gone,
    /// Still IN_PROGRESS `job_timeout` after it was created.
    TimedOut(AuditLogError),
}

/// Why a download did not finish.
enum DownloadFailure {
    /// Nothing reached the decoder: a new job may be tried.
    UrlNotRenewed(String),
    Other(StageError),
}

/// A job's download URL, renewed by polling its status again.
struct JobUrl<'a> {
    source: &'a AuditLog,
    job_id: String,
    current: Mutex<(u64, String, DateTime<Utc>)>,
    polls: Mutex<FetchStats>,
}

impl download::FreshUrl for JobUrl<'_> {
    fn current(&self) -> BoxFuture<'_, Result<download::CurrentUrl, StageError>> {
        Box::pin(async move {
            let (generation, url, minted_at) = self.current.lock().await.clone();
            Ok(download::CurrentUrl {
                generation,
                url,
                minted_at,
            })
        })
    }

    fn refresh(&self, seen: u64) -> BoxFuture<'_, Result<(), StageError>> {
        Box::pin(async move {
            let mut current = self.current.lock().await;
            if current.0 != seen {
                return Ok(());
            }
            let minted_at = Utc::now();
            let mut polls = self.polls.lock().await;
            let status = self.source.job_status(&self.job_id, &mut polls).await?;
            match status {
                Some(JobStatus {
                    status, url: Some(url), ..
                }) if status == "COMPLETED" => {
                    *current = (seen + 1, url, minted_at);
                    Ok(())
                }
                _ => Err(StageError::retryable(format!(
                    "job {}: no fresh download URL from getDownloadStatus",
                    self.job_id
                ))),
            }
        })
    }
}

/// Whether a 500's body is a SOAP fault that a retry cannot help: any fault but a `Server` one
/// (SOAP 1.1's code for "the server failed, not the message"; `Receiver` in SOAP 1.2 terms),
/// which is retried with backoff like any other 500. A 500 that is not a fault is retried too.
fn final_fault(body: &[u8]) -> bool {
    if memchr::memmem::find(body, b"Fault").is_none() {
        return false;
    }
    let Ok(root) = Element::parse(body) else {
        return false;
    };
    let Some(fault) = root.child(SOAP_NS, "Body").and_then(|b| b.child(SOAP_NS, "Fault")) else {
        return false;
    };
    let code = fault
        .find_local("faultcode")
        .map(|e| e.text.as_str())
        .unwrap_or_default();
    !is_server_fault(code)
}

/// Whether a `faultcode` (a QName such as `soap:Server`) blames the service, not the request.
fn is_server_fault(code: &str) -> bool {
    matches!(code.rsplit(':').next(), Some("Server" | "Receiver"))
}

/// All text below an element, for a fault's `detail`.
fn flatten_text(e: &Element) -> String {
    let mut parts = Vec::new();
    if !e.text.is_empty() {
        parts.push(e.text.clone());
    }
    for c in &e.children {
        let t = flatten_text(c);
        if !t.is_empty() {
            parts.push(t);
        }
    }
    parts.join(" ")
}

/// The jobs in a `getDownloadResponse` or `getDownloadStatusResponse` body. A value with
/// `operationSucceeded` false gives its errors as the message.
/// The job a getDownload created, among the jobs its response lists: the one named `name`;
/// failing that, the only job, or the only IN_PROGRESS one (a job is created IN_PROGRESS). Any
/// other response is refused rather than guessed at: following another job of the account would
/// load another date range.
pub fn pick_created(mut jobs: Vec<JobStatus>, name: &str) -> Result<JobStatus, String> {
    if let Some(i) = jobs.iter().position(|j| j.name.as_deref() == Some(name)) {
        return Ok(jobs.swap_remove(i));
    }
    if jobs.len() <= 1 {
        return jobs.pop().ok_or_else(|| "the response holds no job".into());
    }
    let in_progress: Vec<usize> = (0..jobs.len()).filter(|&i| jobs[i].status == "IN_PROGRESS").collect();
    if let [i] = in_progress[..] {
        return Ok(jobs.swap_remove(i));
    }
    let ids: Vec<&str> = jobs.iter().map(|j| j.job_id.as_str()).collect();
    Err(format!(
        "the response lists {} jobs ({}), none named {name:?} and not exactly one IN_PROGRESS: cannot tell which one was created",
        jobs.len(),
        ids.join(", ")
    ))
}

pub fn jobs_in(body: &Element, response: &str) -> Result<Vec<JobStatus>, String> {
    let resp = body
        .child_in(&[AUDIT_NS, COMMON_NS], response)
        .ok_or_else(|| format!("no <{response}> in the SOAP body"))?;
    let rval = resp
        .child_in(&[AUDIT_NS, COMMON_NS], "rval")
        .ok_or_else(|| format!("<{response}> has no <rval>"))?;
    let ns = [AUDIT_NS, COMMON_NS];
    let mut jobs = Vec::new();
    let mut errors = Vec::new();
    for value in rval.children.iter().filter(|c| c.local == "values") {
        let ok = value.child_in(&ns, "operationSucceeded").map(|e| e.text.as_str());
        if ok != Some("true") {
            let mut messages: Vec<String> = value
                .children
                .iter()
                .filter(|c| c.local == "errors")
                .map(flatten_text)
                .collect();
            if messages.is_empty() {
                messages.push(flatten_text(value));
            }
            errors.extend(messages);
            continue;
        }
        let job = value
            .child_in(&ns, "auditLogJob")
            .ok_or("a value without <auditLogJob>")?;
        let text = |name: &str| job.child_in(&ns, name).map(|e| e.text.clone());
        let job_id = text("auditLogJobId").ok_or("a job without <auditLogJobId>")?;
        check_job_id(&job_id)?;
        jobs.push(JobStatus {
            job_id,
            name: text("auditLogJobName"),
            status: text("auditLogJobStatus").ok_or("a job without <auditLogJobStatus>")?,
            progress: text("progress").unwrap_or_else(|| "?".into()),
            url: text("downloadAuditLogDownloadUrl").filter(|u| !u.is_empty()),
        });
    }
    if jobs.is_empty() && !errors.is_empty() {
        return Err(errors.join("; "));
    }
    Ok(jobs)
}

/// A job id comes from the server and goes into the payload's file name, the checkpoint, log
/// lines and later requests: it must be the token the seed shows (`19771824`), never a path, a
/// line break or markup. Letters, `-` and `_` are tolerated besides digits, up to 64 of them.
fn check_job_id(id: &str) -> Result<(), String> {
    let plain = id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if id.is_empty() || id.len() > 64 || !plain {
        return Err(format!(
            "the service returned the job id `{}`, which is not a plain id (1 to 64 letters, digits, `-` or `_`)",
            crate::printable(id)
        ));
    }
    Ok(())
}

impl Source for AuditLog {
    fn kind(&self) -> &'static str {
        "audit_log"
    }

    fn cost(&self, _unit: &Unit) -> Option<Cost> {
        Some(Cost {
            requests: 3,
            exact: false,
            how: "getDownload, then getDownloadStatus until COMPLETED, then the download".into(),
        })
    }

    fn plan(&self, req: &PlanRequest) -> Result<Plan, StageError> {
        let mut plan = Plan::default();
        let to = req.to.min(req.now);
        if to < req.to {
            plan.notes.push(format!(
                "end clamped to now ({}): the service has no future operations",
                req.now.format("%Y-%m-%dT%H:%M:%SZ")
            ));
        }
        let settled = req.now - chrono::Duration::from_std(req.settle).unwrap_or_default();
        for day in utc_days(req.from, to) {
            let window = Window::new(day_start(day), day_start(day + Days::new(1)));
            let (first, last) = self.local_dates(window);
            let mut unit = Unit {
                id: format!(
                    "audit_log-{}-{}",
                    Unit::sanitize_id(&self.cfg.account_id),
                    day.format("%Y-%m-%d")
                ),
                window,
                params: Default::default(),
                partitions: Vec::new(),
                provisional: window.end > settled,
            };
            unit.params
                .insert("startDate".into(), first.format("%Y%m%d").to_string());
            unit.params.insert("endDate".into(), last.format("%Y%m%d").to_string());
            plan.units.push(unit);
        }
        Ok(plan)
    }

    fn fetch<'a>(&'a self, unit: &'a Unit, out: PayloadSender) -> BoxFuture<'a, Result<FetchStats, StageError>> {
        Box::pin(self.fetch_unit(unit, out))
    }
}

#[cfg(test)]
mod tests;
