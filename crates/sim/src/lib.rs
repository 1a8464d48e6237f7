//! `etl-sim`: a local stand-in for the vendor APIs, so that `etl` can be tested end to end without the
//! vendors, including their awkward corners and their failures.
//!
//! Each API is simulated from its seed document (`/work/shared/seeds/`) and `FORMATS.md`, never from the
//! client code: this crate depends on no other `etl` crate and shares no parsing code with the client, so
//! a client that misreads a seed fails here instead of agreeing with itself.
//!
//! # What it serves
//! One axum server on `127.0.0.1` hosts every simulated API under its own path prefix:
//!
//! | path | API |
//! |---|---|
//! | `POST /mail-delivery/` | mail delivery log (`GetDeliveryLog`, XML) |
//! | `GET /api/v1/log/mailtrackinglog` | mail tracking log (JSON, HTTP Basic; `MAIL_TRACKING_URL` is the server root) |
//! | `GET /lls/v1.0/logs/delivery` | CDN delivery-log file listing (JSON, rate limited; `CDN_LOGS_URL` is the server root) |
//! | `GET /cdn-dl/{domain}/{yyyyMMdd}/{name}?expire=..&sign=..` | CDN log file downloads (signed URLs from the listing) |
//! | `GET /_sim/stats` | request counters, JSON (below) |
//! | `POST`, `GET`, `DELETE /_sim/faults` | add, list, remove scripted faults (see the `script` module) |
//! | `GET /_sim/requests[?api=mail_delivery\|mail_tracking]` | the request log of the scripted APIs (see the `script` module) |
//! | `GET /_sim/cdn/requests` | the CDN listing's request log and download counters (see the `cdn` module) |
//! | `PROPFIND`, `GET /{cell}/__log/{archive,current}[/{file}]` | WebDAV log store of a cell (Bearer token; `WEBDAV_CELL_URL` is `http://127.0.0.1:PORT/sim-cell/`) |
//! | `POST /_sim/webdav/rotate`, `GET /_sim/webdav/truth`, `GET /_sim/webdav/requests` | rotate the log store now; its live truth; its request counters (see the `webdav` module) |
//! | `POST /services/V201812/AuditLogService` | audit-log export (SOAP 1.1 `getDownload`/`getDownloadStatus`; `AUDIT_LOG_URL` is this URL) |
//! | `GET /auditLogDownload/V201812/download/{token}` | audit-log CSV downloads (expiring URLs from `getDownloadStatus`) |
//! | `GET /_sim/audit/jobs` | the audit-log jobs and counters (see the `audit` module) |
//!
//! On start-up [`run`] prints exactly one line to stdout, `etl-sim listening on http://127.0.0.1:PORT`,
//! and flushes it; tests read the port from it. Logs go to `tracing` (the binary installs the subscriber).
//!
//! # Deterministic data and the ground truth
//! The records of a UTC day are a pure function of `(--seed, day)`: the same seed serves the same data in
//! every run. With `--truth FILE` the simulator writes, before it announces itself, what a correct client
//! must end up with:
//!
//! ```json
//! {"mail_delivery": {"days": {"2026-11-20": {"rows": 2871, "sent": 2440, "retry": 290, "faild": 141,
//!                                            "fingerprint": "00af3c5e9d2b7a41"}},
//!                    "fingerprint_definition": "wrapping u64 sum over records of FNV-1a-64 of ..."}}
//! ```
//!
//! `days` covers every full day the API can serve: from 90 days before today (UTC) through yesterday.
//! **Fingerprint contract:** for each record, take its `<Log>` line as the exact unescaped text
//! `date time result status txid sender recipient detail` (eight fields joined by single spaces), hash its
//! UTF-8 bytes with FNV-1a 64-bit (offset basis `0xcbf29ce484222325`, prime `0x100000001b3`), and sum the
//! hashes of the day's records with wrapping u64 addition; print as 16 lowercase hex digits. The sum is
//! order-independent but counts duplicates, so a client that drops, repeats or alters a record is caught.
//!
//! The mail tracking log adds, per UTC day and traffic type (records are a pure function of
//! `(--seed, day, type)`):
//!
//! ```json
//! {"mail_tracking": {"days": {"2026-11-20": {"accepted_traffic": {"rows": 1480, "fingerprint": "9c0e..."},
//!                                            "blocked_traffic": {"rows": 1702, "fingerprint": "03b1..."}}},
//!                    "fingerprint_definition": "per record, the canonical text is these 20 fields ..."}}
//! ```
//!
//! Its `days` are the three full UTC days before today, each described whole; the API serves only what
//! was generated within 72 hours before a request, so yesterday and the day before are always fully
//! reachable and the oldest day only partly. Its fingerprint is again a wrapping sum of FNV-1a-64 hashes,
//! of a canonical text of 20 fields per record (times as epoch microseconds, absent fields as `-`); the
//! exact definition is in the `mail_tracking` module docs and in `fingerprint_definition`.
//!
//! The CDN delivery-log files add, per UTC day and domain of `--cdn-domains` (a file's bytes are a pure
//! function of `(--seed, domain, slot, index)`):
//!
//! ```json
//! {"cdn_logs": {"days": {"2026-11-20": {"live.example.com": {"rows": 9066, "files": 421, "bytes_sum": 961329,
//!                                                            "distinct_request_ids": 9066,
//!                                                            "fingerprint": "5d0e..."}}},
//!               "fingerprint_definition": "per record, the canonical text is these 14 fields ..."}}
//! ```
//!
//! Its `days` are the three full UTC days before today, each the 288 five-minute slots of the day (the
//! listing's extra `D+1T00:00:00Z` slot belongs to the next day). Its fingerprint is a wrapping sum of
//! FNV-1a-64 hashes of a canonical text of 14 fields per record (the 13 log fields, time as epoch
//! microseconds, nulls as `-`, plus the file name); the exact definition is in the `cdn` module docs.
//!
//! The WebDAV log store adds `webdav_logs`, the same object `GET /_sim/webdav/truth` serves live (a
//! rotation changes it): `{"files": {"default.log": {"rows", "fingerprint"}, "default.log.{ms}[.zip]":
//! {...}}, "days": {"2026-11-20": {"rows", "per_level": {"INFO", "WARN", "ERROR"}, "fingerprint"}},
//! "fingerprint_definition": "..."}` over exactly the files in the store at start-up. Its fingerprint sums
//! FNV-1a-64 hashes of a canonical text of the 10 CSV fields (time as epoch microseconds, level unbracketed,
//! empty fields as `-`, no file name); the exact definition is in the `webdav` module docs.
//!
//! The audit-log export adds `audit_log`: `{"days": {"2026-11-20": {"rows", "per_operation": {"ADD": n,
//! ...}, "fingerprint"}}, "fingerprint_definition": "..."}` for the three full UTC days before today. The
//! records of a local date (+09:00) are a pure function of `(--seed, date)`, and a UTC day spans two local
//! dates. Its fingerprint sums FNV-1a-64 hashes of a canonical text of the 14 CSV fields (time as epoch
//! microseconds, empty fields as `-`); the exact definition is in the `audit` module docs.
//!
//! # Request stats
//! `GET /_sim/stats` returns `{"mail_delivery": {"requests": N, "data_requests": M, "faults": F},
//! "mail_tracking": {...}, "cdn_logs": {...}}`: per API, every request to its path, those answered 200
//! with a complete page, and injected faults. A test proves that a rerun sends no data requests with it.
//! For `cdn_logs` the counters cover listings and downloads together (a complete download, 200 or 206,
//! is a data request); `GET /_sim/cdn/requests` tells them apart and marks rate-limited listings. For
//! `webdav_logs` they cover every request to a cell path (a complete 207 or file 200 is a data request);
//! `GET /_sim/webdav/requests` counts listings, downloads per file name and rotations. For `audit_log`
//! they cover SOAP calls and CSV downloads (a complete 200 of either is a data request);
//! `GET /_sim/audit/jobs` counts jobs, status polls, downloads and expired URLs.
//!
//! # Faults
//! `--fault-rate p` gives each API request a fault with probability `p`, decided before anything else
//! (see the `faults` module): 500, 503 with/without `Retry-After`, 429 with delta-seconds or HTTP-date
//! `Retry-After`, a connection dropped mid-body, or a 1-2 s delay. Error bodies are each API's own (XML for
//! mail delivery, `{"code", "message"}` JSON for mail tracking and the CDN listing). CDN downloads have
//! their own faults (500, 503, a reset halfway through, a short `200`), and the CDN listing its own rate
//! limiter; see the `cdn` module. The audit-log service answers an injected 500 or 503 with a proxy's HTML
//! body, never a SOAP fault, and throttles with 503 + `Retry-After` rather than 429; see the `audit` module.
//!
//! A test that must prove what a client does after one particular failure scripts it instead:
//! `POST /_sim/faults` with `{"rules": [{"api": "mail_delivery", "requests": "token", "times": 2,
//! "fault": {"kind": "status", "status": 503, "retry_after": 2}}]}` fails the next two pages after a
//! first page with 503 and `Retry-After: 2`. Rules pick an API (mail delivery or mail tracking), which
//! requests (any, or only those carrying a continuation token, optionally with given parameter values,
//! after skipping some), the fault (429/500/502/503/504 with a `Retry-After` in seconds or as an HTTP
//! date; a connection reset mid-body; a body shorter than its `Content-Length`; headers, then a stalled
//! body; the API's own refusal of the continuation token) and how many times. Scripted faults come
//! before random ones. `GET /_sim/requests?api=mail_delivery` then lists every request with its arrival
//! time in milliseconds, parameters, a hash of its token, the status answered and the fault injected.
//! The formats are in the `script` module.
//!
//! # Example
//! ```no_run
//! # async fn demo() -> Result<(), etl_sim::SimError> {
//! use clap::Parser;
//! #[derive(Parser)]
//! struct Cli {
//!     #[command(flatten)]
//!     sim: etl_sim::SimArgs,
//! }
//! let cli = Cli::parse_from(["etl-sim", "--seed", "7", "--fault-rate", "0.1"]);
//! let sim = etl_sim::start(cli.sim).await?;
//! println!("mail delivery API at http://{}/mail-delivery/", sim.addr());
//! sim.wait().await
//! # }
//! ```

mod audit;
mod cdn;
mod data;
mod faults;
mod mail_delivery;
mod mail_tracking;
mod script;
mod webdav;

#[cfg(test)]
mod tests;

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::routing::get;
use bytes::Bytes;
use chrono::{NaiveDate, Utc};
use serde::Serialize;
use tokio::task::JoinHandle;

use crate::audit::{AuditConfig, AuditLog};
use crate::cdn::{CdnConfig, CdnLogs};
use crate::data::SplitMix64;
use crate::faults::FaultInjector;
use crate::mail_delivery::MailDelivery;
use crate::mail_tracking::MailTracking;
use crate::webdav::{WebdavConfig, WebdavLogs};

/// Command-line options of `etl sim`.
#[derive(clap::Args, Debug, Clone)]
pub struct SimArgs {
    /// 127.0.0.1 port to bind; 0 picks a free one
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// seed of the generated data (the same seed serves the same records)
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// probability in [0,1] that a request gets an injected fault
    #[arg(long, default_value_t = 0.0)]
    pub fault_rate: f64,
    /// write the ground truth JSON here at start-up
    #[arg(long)]
    pub truth: Option<PathBuf>,
    /// mean records per day for mail delivery (actual count varies per day, deterministic)
    #[arg(long, default_value_t = 3000)]
    pub mail_rows_per_day: u32,
    /// the X-Auth-Token the mail delivery API accepts
    #[arg(
        long,
        env = "MAIL_DELIVERY_TOKEN",
        default_value = "sim-mail-token",
        hide_env_values = true
    )]
    pub mail_token: String,
    /// mean records per day and traffic type for the mail tracking log (varies per day, deterministic)
    #[arg(long, default_value_t = 1500)]
    pub tracking_rows_per_day: u32,
    /// the HTTP Basic user the mail tracking log API accepts
    #[arg(long, env = "MAIL_TRACKING_USER", default_value = "sim-user")]
    pub tracking_user: String,
    /// the HTTP Basic password (API key) the mail tracking log API accepts
    #[arg(
        long,
        env = "MAIL_TRACKING_API_KEY",
        default_value = "sim-tracking-key",
        hide_env_values = true
    )]
    pub tracking_api_key: String,
    /// CDN delivery domains the log listing knows (comma-separated); any other is `LLS.Domain.NotFound`
    #[arg(long, value_delimiter = ',', default_value = "live.example.com,vod.example.com")]
    pub cdn_domains: Vec<String>,
    /// seconds a CDN download URL stays valid after the listing that minted it
    #[arg(long, default_value_t = 900)]
    pub cdn_url_ttl: u64,
    /// CDN listing requests admitted in any sliding minute (over all clients)
    #[arg(long, default_value_t = 100)]
    pub cdn_rate_per_minute: u32,
    /// CDN listing requests admitted in any sliding hour (over all clients)
    #[arg(long, default_value_t = 1000)]
    pub cdn_rate_per_hour: u32,
    /// mean CDN access-log records per 5-minute slot and domain, over the slot's files
    #[arg(long, default_value_t = 40)]
    pub cdn_lines_per_slot: u32,
    /// seconds after a 5-minute slot ends before its files are listed (until then it is listed empty)
    #[arg(long, default_value_t = 120)]
    pub cdn_publish_delay: u64,
    /// answer the first download of every CDN file that has records with a short 200 body
    #[arg(long)]
    pub cdn_truncate_first: bool,
    /// milliseconds the simulator waits before answering each CDN download (a slow file server)
    #[arg(long, default_value_t = 0)]
    pub cdn_download_delay_ms: u64,
    /// the cell whose WebDAV log store is served at `/{cell}/__log/` (the cell URL is `http://127.0.0.1:PORT/{cell}/`)
    #[arg(long, default_value = "sim-cell")]
    pub webdav_cell: String,
    /// the Bearer token the WebDAV log store accepts
    #[arg(
        long,
        env = "WEBDAV_TOKEN",
        default_value = "sim-webdav-token",
        hide_env_values = true
    )]
    pub webdav_token: String,
    /// mean event-log records per WebDAV log generation (current file or archive; varies, deterministic)
    #[arg(long, default_value_t = 200)]
    pub webdav_rows_per_file: u32,
    /// name the one entry of the newest zipped WebDAV archive `../../x`
    #[arg(long)]
    pub webdav_evil_zip_entry: bool,
    /// list WebDAV archive children whose hrefs point outside the cell (another cell, `%2e%2e`, another host)
    #[arg(long)]
    pub webdav_evil_href: bool,
    /// the `RequestHeader/license` the audit-log SOAP service accepts
    #[arg(long, default_value = "sim-license", hide_default_value = true)]
    pub audit_license: String,
    /// the `RequestHeader/apiAccountId` the audit-log SOAP service accepts
    #[arg(long, default_value = "sim-api-account")]
    pub audit_api_account_id: String,
    /// the `RequestHeader/apiAccountPassword` the audit-log SOAP service accepts
    #[arg(long, default_value = "sim-api-password", hide_default_value = true)]
    pub audit_api_account_password: String,
    /// the `selector/accountId` the audit-log SOAP service accepts (and writes in the CSV)
    #[arg(long, default_value = "100000001")]
    pub audit_account_id: String,
    /// getDownloadStatus polls after which an audit-log job is finished (progress advances on each)
    #[arg(long, default_value_t = 3)]
    pub audit_job_polls: u32,
    /// the first audit-log job the simulator creates ends in SYSTEM_ERROR
    #[arg(long)]
    pub audit_system_error_first: bool,
    /// seconds an audit-log download URL stays valid after the status response that minted it
    #[arg(long, default_value_t = 900)]
    pub audit_url_ttl: u64,
    /// mean audit-log records per local (+09:00) date (actual count varies per date, deterministic)
    #[arg(long, default_value_t = 300)]
    pub audit_rows_per_day: u32,
}

impl SimArgs {
    fn webdav_config(&self) -> WebdavConfig {
        WebdavConfig {
            cell: self.webdav_cell.clone(),
            token: self.webdav_token.clone(),
            rows_per_file: self.webdav_rows_per_file,
            evil_zip_entry: self.webdav_evil_zip_entry,
            evil_href: self.webdav_evil_href,
        }
    }

    fn cdn_config(&self) -> CdnConfig {
        CdnConfig {
            domains: self.cdn_domains.clone(),
            url_ttl_secs: self.cdn_url_ttl,
            rate_per_minute: self.cdn_rate_per_minute,
            rate_per_hour: self.cdn_rate_per_hour,
            lines_per_slot: self.cdn_lines_per_slot,
            publish_delay_secs: self.cdn_publish_delay,
            truncate_first: self.cdn_truncate_first,
            download_delay: std::time::Duration::from_millis(self.cdn_download_delay_ms),
        }
    }
}

/// Why the simulator could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("invalid simulator option: {0}")]
    InvalidArgs(String),
    #[error("binding the simulator to 127.0.0.1:{port}: {source}")]
    Bind { port: u16, source: io::Error },
    #[error("writing the ground truth to {}: {source}", path.display())]
    WriteTruth { path: PathBuf, source: io::Error },
    #[error("announcing the listening address on stdout: {0}")]
    Announce(io::Error),
    #[error("serving HTTP on {addr}: {source}")]
    Serve { addr: SocketAddr, source: io::Error },
    #[error("the simulator's {what} task failed: {message}")]
    Task { what: &'static str, message: String },
}

/// Counters of one simulated API.
#[derive(Debug, Default)]
pub(crate) struct ApiStats {
    pub(crate) requests: AtomicU64,
    pub(crate) data_requests: AtomicU64,
    pub(crate) faults: AtomicU64,
}

#[derive(Debug, Serialize)]
struct ApiStatsSnapshot {
    requests: u64,
    data_requests: u64,
    faults: u64,
}

impl ApiStats {
    fn snapshot(&self) -> ApiStatsSnapshot {
        ApiStatsSnapshot {
            requests: self.requests.load(Ordering::Relaxed),
            data_requests: self.data_requests.load(Ordering::Relaxed),
            faults: self.faults.load(Ordering::Relaxed),
        }
    }
}

/// Counters of every simulated API, served at `/_sim/stats`.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) mail_delivery: ApiStats,
    pub(crate) mail_tracking: ApiStats,
    pub(crate) cdn_logs: ApiStats,
    pub(crate) webdav_logs: ApiStats,
    pub(crate) audit_log: ApiStats,
}

#[derive(Debug, Serialize)]
struct StatsSnapshot {
    mail_delivery: ApiStatsSnapshot,
    mail_tracking: ApiStatsSnapshot,
    cdn_logs: ApiStatsSnapshot,
    webdav_logs: ApiStatsSnapshot,
    audit_log: ApiStatsSnapshot,
}

/// State every simulated API shares: the seed, the fault dice, request ids and counters.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) seed: u64,
    pub(crate) faults: FaultInjector,
    /// Faults a test scripted at runtime (`/_sim/faults`); they come before the random ones.
    pub(crate) script: script::FaultScript,
    /// When each request to a scriptable API arrived and how it was answered (`/_sim/requests`).
    pub(crate) requests: script::RequestLog,
    pub(crate) stats: Stats,
    request_counter: AtomicU64,
}

impl Shared {
    fn new(seed: u64, fault_rate: f64) -> Self {
        Self {
            seed,
            faults: FaultInjector::new(seed, fault_rate),
            script: script::FaultScript::default(),
            requests: script::RequestLog::default(),
            stats: Stats::default(),
            request_counter: AtomicU64::new(0),
        }
    }

    /// A fresh UUID-shaped request id, and the counter it came from (usable as a per-request salt).
    pub(crate) fn next_request_id(&self) -> (String, u64) {
        let n = self.request_counter.fetch_add(1, Ordering::Relaxed) + 1;
        (data::request_uuid(self.seed, n), n)
    }
}

/// Splits a body into chunks of varying size (the first one ends inside the XML declaration) and
/// streams them, so clients meet chunked transfer encoding and reads that end at arbitrary bytes.
pub(crate) fn chunked_body(full: Bytes, salt: u64) -> Body {
    let mut rng = SplitMix64::new(data::mix(0x6368_756e_6b73, salt));
    let mut chunks: Vec<Result<Bytes, io::Error>> = Vec::new();
    let mut at = 0;
    let mut size = 20 + rng.below(40) as usize;
    while at < full.len() {
        let end = (at + size).min(full.len());
        chunks.push(Ok(full.slice(at..end)));
        at = end;
        size = 1 + rng.below(16 * 1024) as usize;
    }
    Body::from_stream(futures::stream::iter(chunks))
}

/// The whole ground truth file.
#[derive(Debug, Serialize)]
struct Truth {
    mail_delivery: mail_delivery::MailTruth,
    mail_tracking: mail_tracking::TrackingTruth,
    cdn_logs: cdn::CdnTruth,
    webdav_logs: webdav::WebdavTruth,
    audit_log: audit::AuditTruth,
}

/// Writes the truth next to its final name and renames it, so a reader never sees half a file.
fn write_truth(path: &Path, truth: &Truth) -> Result<(), SimError> {
    let fail = |source: io::Error| SimError::WriteTruth {
        path: path.to_path_buf(),
        source,
    };
    let json = serde_json::to_vec_pretty(truth).map_err(|e| fail(io::Error::other(e)))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, json).map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        fail(e)
    })
}

fn build_truth(args: &SimArgs, today: NaiveDate, webdav_logs: webdav::WebdavTruth) -> Truth {
    Truth {
        mail_delivery: mail_delivery::truth(args.seed, args.mail_rows_per_day, today),
        mail_tracking: mail_tracking::truth(args.seed, args.tracking_rows_per_day, today),
        cdn_logs: cdn::truth(args.seed, &args.cdn_domains, args.cdn_lines_per_slot, today),
        webdav_logs,
        audit_log: audit::truth(args, today),
    }
}

async fn stats(State(shared): State<Arc<Shared>>) -> axum::Json<StatsSnapshot> {
    axum::Json(StatsSnapshot {
        mail_delivery: shared.stats.mail_delivery.snapshot(),
        mail_tracking: shared.stats.mail_tracking.snapshot(),
        cdn_logs: shared.stats.cdn_logs.snapshot(),
        webdav_logs: shared.stats.webdav_logs.snapshot(),
        audit_log: shared.stats.audit_log.snapshot(),
    })
}

/// A simulator that is serving. Dropping it stops the server.
#[derive(Debug)]
pub struct RunningSim {
    addr: SocketAddr,
    server: Option<JoinHandle<Result<(), SimError>>>,
}

impl RunningSim {
    /// The bound address (always 127.0.0.1).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until the server fails (it does not stop on its own).
    pub async fn wait(mut self) -> Result<(), SimError> {
        match self.server.take() {
            Some(task) => task.await.map_err(|e| SimError::Task {
                what: "server",
                message: e.to_string(),
            })?,
            None => Ok(()),
        }
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        if let Some(task) = self.server.take() {
            task.abort();
        }
    }
}

/// Binds 127.0.0.1, writes the truth file if asked, and starts serving in a background task. Does not
/// print anything: [`run`] announces the address.
pub async fn start(args: SimArgs) -> Result<RunningSim, SimError> {
    if !(0.0..=1.0).contains(&args.fault_rate) {
        return Err(SimError::InvalidArgs(format!(
            "--fault-rate must be in [0, 1], got {}",
            args.fault_rate
        )));
    }
    if args.tracking_user.contains(':') {
        // HTTP Basic joins user and password with ':', so a user containing one could never log in.
        return Err(SimError::InvalidArgs(
            "--tracking-user must not contain ':' (HTTP Basic separates user and key with it)".into(),
        ));
    }
    let cdn_config = args.cdn_config();
    cdn_config.validate().map_err(SimError::InvalidArgs)?;
    let webdav_config = args.webdav_config();
    webdav_config.validate().map_err(SimError::InvalidArgs)?;
    let audit_config = AuditConfig::from_args(&args);
    audit_config.validate().map_err(SimError::InvalidArgs)?;
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, args.port))
        .await
        .map_err(|source| SimError::Bind {
            port: args.port,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| SimError::Bind {
        port: args.port,
        source,
    })?;

    // The log store exists before the truth is written: the truth describes exactly its files.
    let webdav_store = webdav::Store::new(args.seed, &webdav_config, Utc::now().timestamp_millis());
    if let Some(path) = args.truth.clone() {
        let for_truth = args.clone();
        let today = Utc::now().date_naive();
        let webdav_truth = webdav_store.truth();
        let truth = tokio::task::spawn_blocking(move || build_truth(&for_truth, today, webdav_truth))
            .await
            .map_err(|e| SimError::Task {
                what: "truth generation",
                message: e.to_string(),
            })?;
        write_truth(&path, &truth)?;
        tracing::info!(path = %path.display(), "ground truth written");
    }

    let shared = Arc::new(Shared::new(args.seed, args.fault_rate));
    let mail = Arc::new(MailDelivery::new(
        shared.clone(),
        args.mail_token,
        args.mail_rows_per_day,
    ));
    let tracking = Arc::new(MailTracking::new(
        shared.clone(),
        args.tracking_user,
        args.tracking_api_key,
        args.tracking_rows_per_day,
    ));
    let cdn = Arc::new(CdnLogs::new(shared.clone(), cdn_config, addr));
    let webdav = Arc::new(WebdavLogs::new(shared.clone(), webdav_config, webdav_store, addr));
    let audit = Arc::new(AuditLog::new(shared.clone(), audit_config, addr));
    let app = Router::new()
        .route("/_sim/stats", get(stats))
        .with_state(shared.clone())
        .merge(script::router(shared))
        .merge(mail.router())
        .merge(tracking.router())
        .merge(cdn.router())
        .merge(webdav.router())
        .merge(audit.router());
    tracing::info!(%addr, seed = args.seed, fault_rate = args.fault_rate, "simulator serving");
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .await
            .map_err(|source| SimError::Serve { addr, source })
    });
    Ok(RunningSim {
        addr,
        server: Some(server),
    })
}

/// The one line tests wait for; written and flushed at once so a reader of a pipe sees it immediately.
fn announce(out: &mut impl io::Write, addr: SocketAddr) -> Result<(), SimError> {
    writeln!(out, "etl-sim listening on http://{addr}").map_err(SimError::Announce)?;
    out.flush().map_err(SimError::Announce)
}

/// Starts the simulator, prints `etl-sim listening on http://127.0.0.1:PORT` to stdout, and serves
/// until the process is killed or receives ctrl-c.
pub async fn run(args: SimArgs) -> Result<(), SimError> {
    let sim = start(args).await?;
    announce(&mut io::stdout().lock(), sim.addr())?;
    tokio::select! {
        served = sim.wait() => served,
        _ = tokio::signal::ctrl_c() => {
            tracing::info!("ctrl-c received; simulator stopping");
            Ok(())
        }
    }
}
