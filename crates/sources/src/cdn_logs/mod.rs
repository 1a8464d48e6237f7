//! The CDN delivery-log files API (`GET /lls/v1.0/logs/delivery`, seed
//! `cdn-delivery-log-files-api.txt`): a listing of 5-minute slots, each with signed, expiring
//! URLs of `.log.gz` files, which are then downloaded.
//!
//! Rules of the API that shape this module:
//! - A listing covers at most 24 hours, so a unit is one (domain, UTC day), listed with one
//!   request `started=DT000000Z&ended=DT235959Z`. The API may return slots beyond the day (its
//!   end is rounded to a slot boundary): only slots whose timestamp falls on the day are kept.
//!   A slot's `timestamp` `t` covers `[t, t+5min)`.
//! - A slot's files are under `values` or, in some answers, `value` (the seed's own example uses
//!   both); `url` is a string (the seed's table says Array: a one-element array is accepted).
//! - The listing is rate-limited to 100 requests per minute and 1000 per hour. Every listing
//!   request of the process, retries and URL refreshes included, goes through one
//!   [`RateBudget`]; a 429 holds it for the server's `Retry-After`.
//! - Download URLs are signed and expire (`expire=` in the URL; a 403 or 410 once expired). A URL
//!   that has expired, or is about to, is never used: the day is listed again for fresh URLs
//!   (one request refreshes every file of the unit), a bounded number of times per file.
//! - Downloads are not rate-limited: up to `download_concurrency` files stream at once, each to
//!   its own decoder, while the payloads keep the listing's order. A download that breaks off
//!   (reset, stall, a body shorter than the listing's `size`) resumes where it stopped, with a
//!   `Range` request or by skipping the bytes already delivered (checked by CRC-32 to be the
//!   same file), so the decoder sees every byte exactly once and a truncated transfer never
//!   looks like a short file.
//! - The download client carries no API credentials (the listing's `headers` are never sent to
//!   a download host), reaches only `download_hosts` and the listing's own host, and follows no
//!   redirect.
//! - File names come from the server and become the `file_name` label and column, never a path;
//!   a listing that names a file like a path (`../x`, `/etc/x`, `%2e%2e`, NUL) is refused.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Days, NaiveDate, Utc};
use etl_config::CdnLogsConfig;
use etl_core::{
    BudgetTime, Cost, FetchStats, PayloadBody, PayloadMeta, PayloadSender, Plan, PlanRequest, Source, StageError, Unit,
    Window,
};
use etl_http::{Client, RateBudget, RateLimit};
use futures::future::BoxFuture;
use serde::Deserialize;
use tokio::sync::{Mutex, Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::download;
use crate::{day_start, utc_days};

/// The path appended to the configured base URL.
pub const PATH: &str = "/lls/v1.0/logs/delivery";
/// The length of a slot.
pub const SLOT: chrono::Duration = chrono::Duration::minutes(5);
/// Fresh listings a single file may need before the unit fails.
pub const MAX_REFRESHES_PER_FILE: u32 = 3;
/// Chunks buffered between a download and its decoder.
const CHUNKS_IN_FLIGHT: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum CdnLogsError {
    #[error(
        "{url}: the CDN log API does not know domain `{domain}` (HTTP 400 LLS.Domain.NotFound: {message}); \
         check the source's `domains` (CDN_LOGS_DOMAINS)"
    )]
    DomainNotFound {
        url: String,
        domain: String,
        message: String,
    },
    #[error("{url} answered HTTP {status} ({code}: {message})")]
    Vendor {
        url: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error("{url} answered HTTP 200 with a body that is not a delivery-log listing: {reason}")]
    NotAListing { url: String, reason: String },
    #[error(
        "{url}: the listing names a file `{name}`, which is not a plain file name ({reason}); refusing the day's files"
    )]
    UnsafeName {
        url: String,
        name: String,
        reason: &'static str,
    },
}

/// The CDN delivery-log source.
#[derive(Debug)]
pub struct CdnLogs {
    shared: Arc<Shared>,
}

/// What every unit and download task of the source shares.
#[derive(Debug)]
struct Shared {
    cfg: CdnLogsConfig,
    /// Listing client: waits for the rate budget before every attempt.
    listing: Client,
    /// Download client: no credentials, allowed hosts only, body handed over as sent.
    downloads: Client,
    endpoint: String,
    /// Files downloading at once, across all units of the run.
    download_slots: Arc<Semaphore>,
}

/// The listing's JSON: an array of these.
#[derive(Deserialize)]
struct DomainLogs {
    domain: String,
    /// Absent, `null` and `[]` alike: no slot.
    #[serde(default)]
    logs: Option<Vec<SlotLogs>>,
}

#[derive(Deserialize)]
struct SlotLogs {
    timestamp: String,
    #[serde(default)]
    values: Option<Vec<LogFile>>,
    #[serde(default)]
    value: Option<Vec<LogFile>>,
}

#[derive(Deserialize)]
struct LogFile {
    name: String,
    url: OneUrl,
    #[serde(default)]
    size: Option<u64>,
}

/// `url` is a string in practice and an array in the seed's table.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneUrl {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize, Default)]
struct VendorError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// One file of a unit, as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedFile {
    pub slot: DateTime<Utc>,
    pub name: String,
    pub url: String,
    /// The size the listing announced, if any.
    pub size: Option<u64>,
}

/// `yyyyMMddTHHmmssZ`, the listing's parameter format.
fn compact(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

impl CdnLogs {
    /// Builds the source: `client` is the pipeline's API client (its timeouts and redactor are
    /// reused); the rate budget and the download client are made here from the configuration.
    pub fn new(cfg: CdnLogsConfig, client: Client) -> Result<Self, StageError> {
        let endpoint = format!("{}{PATH}", cfg.url.trim_end_matches('/'));
        let api_host = url::Url::parse(&cfg.url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .ok_or_else(|| StageError::permanent(format!("source.url `{}` has no host", cfg.url)))?;
        let budget = Arc::new(RateBudget::new(
            "CDN listing",
            &[
                RateLimit::new(cfg.rate_per_minute, Duration::from_secs(60)),
                RateLimit::new(cfg.rate_per_hour, Duration::from_secs(3600)),
            ],
        ));
        let listing = client.with_budget(budget);
        let mut hosts = cfg.download_hosts.clone();
        hosts.push(api_host);
        let downloads =
            Client::for_downloads(*client.config(), client.redactor().clone(), hosts).map_err(StageError::permanent)?;
        let download_slots = Arc::new(Semaphore::new(cfg.download_concurrency.max(1)));
        Ok(Self {
            shared: Arc::new(Shared {
                cfg,
                listing,
                downloads,
                endpoint,
                download_slots,
            }),
        })
    }

    fn unit_id(domain: &str, day: NaiveDate) -> String {
        format!("cdn_logs-{}-{}", Unit::sanitize_id(domain), day.format("%Y-%m-%d"))
    }

    async fn fetch_unit(&self, unit: &Unit, mut out: PayloadSender) -> Result<FetchStats, StageError> {
        let ctx = Arc::new(UnitCtx {
            shared: Arc::clone(&self.shared),
            unit_id: unit.id.clone(),
            domain: unit.params["domain"].clone(),
            window: unit.window,
            urls: Mutex::new(UrlBook::default()),
            counters: download::Counters::default(),
        });
        let listed_at = Utc::now();
        let files = ctx.list().await?;
        tracing::info!(unit = %unit.id, files = files.len(), "listed the day's log files");
        ctx.urls.lock().await.fill(&files, listed_at);
        let mut tasks: JoinSet<Result<(), StageError>> = JoinSet::new();
        let mut payloads = 0;
        for file in files {
            let permit = Arc::clone(&self.shared.download_slots)
                .acquire_owned()
                .await
                .map_err(StageError::internal)?;
            // A failed download ends the unit at once; no use starting more.
            while let Some(done) = tasks.try_join_next() {
                done.map_err(StageError::internal)??;
            }
            let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
            let mut meta = PayloadMeta {
                name: file.name.clone(),
                content_type: Some("application/gzip".into()),
                ..Default::default()
            };
            meta.labels.insert("file_name".into(), file.name.clone());
            meta.labels.insert("domain".into(), ctx.domain.clone());
            meta.labels.insert("slot".into(), file.slot.to_rfc3339());
            out.send(meta, PayloadBody::Chunks(rx)).await?;
            payloads += 1;
            let ctx = Arc::clone(&ctx);
            tasks.spawn(async move {
                let _permit = permit;
                let result = ctx.download(&file, &tx).await;
                if let Err(e) = &result {
                    // The decoder must fail too, never see a clean end of a partial file.
                    let _ = tx.send(Err(StageError::new(e.class(), e.to_string()))).await;
                }
                result
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.map_err(StageError::internal)??;
        }
        Ok(FetchStats {
            requests: ctx.counters.requests.load(Ordering::Relaxed),
            retries: ctx.counters.retries.load(Ordering::Relaxed),
            bytes: ctx.counters.bytes.load(Ordering::Relaxed),
            payloads,
        })
    }
}

/// The current URL of every file of a unit, and how often the listing was refreshed.
#[derive(Default)]
struct UrlBook {
    generation: u64,
    urls: HashMap<String, String>,
    /// When the current URLs were listed.
    listed_at: Option<DateTime<Utc>>,
}

impl UrlBook {
    fn fill(&mut self, files: &[ListedFile], listed_at: DateTime<Utc>) {
        for f in files {
            self.urls.insert(f.name.clone(), f.url.clone());
        }
        self.listed_at = Some(listed_at);
    }
}

/// One unit being fetched: what its download tasks share.
struct UnitCtx {
    shared: Arc<Shared>,
    unit_id: String,
    domain: String,
    window: Window,
    urls: Mutex<UrlBook>,
    counters: download::Counters,
}

impl UnitCtx {
    /// Lists the unit's day: every file of every slot on that day, slots in time order, files
    /// by name within a slot. A file listed twice (in two slots) is kept once.
    async fn list(&self) -> Result<Vec<ListedFile>, StageError> {
        let s = &self.shared;
        let query = [
            ("domain", self.domain.clone()),
            ("started", compact(self.window.start)),
            ("ended", compact(self.window.end - chrono::Duration::seconds(1))),
        ];
        let what = format!("cdn_logs {} listing", self.unit_id);
        let resp = s
            .listing
            .send(&what, |c| {
                let mut r = c.get(&s.endpoint).query(&query);
                for (name, value) in &s.cfg.headers {
                    r = r.header(name.as_str(), value.expose());
                }
                r
            })
            .await
            .map_err(|e| StageError::from(e).context("listing the day's log files"))?;
        let c = &self.counters;
        c.requests.fetch_add(u64::from(resp.attempts), Ordering::Relaxed);
        c.retries
            .fetch_add(u64::from(resp.attempts.saturating_sub(1)), Ordering::Relaxed);
        c.bytes.fetch_add(resp.body.len() as u64, Ordering::Relaxed);
        let url = s.listing.redactor().redact_url(&s.endpoint);
        if resp.status != 200 {
            return Err(vendor_error(&s.listing, url, &self.domain, &resp));
        }
        let (files, dropped) = parse_listing(&resp.body, &self.domain, self.window).map_err(|reason| {
            StageError::retryable(CdnLogsError::NotAListing {
                url: url.clone(),
                reason,
            })
        })?;
        // A name becomes a label, a column value and log lines (never a path): one that tries to
        // be a path is not from an honest listing.
        if let Some((name, reason)) = files
            .iter()
            .find_map(|f| crate::unsafe_file_name(&f.name).map(|r| (&f.name, r)))
        {
            return Err(StageError::permanent(CdnLogsError::UnsafeName {
                url,
                name: crate::printable(name),
                reason,
            }));
        }
        if dropped > 0 {
            tracing::warn!(unit = %self.unit_id, dropped, "the listing named some files twice; each is loaded once");
        }
        Ok(files)
    }

    /// Lists the day again for fresh URLs, unless another task already did since `seen`.
    async fn refresh(&self, seen: u64) -> Result<(), StageError> {
        let mut book = self.urls.lock().await;
        if book.generation != seen {
            return Ok(());
        }
        let listed_at = Utc::now();
        let files = self
            .list()
            .await
            .map_err(|e| e.context("refreshing expired download URLs"))?;
        book.fill(&files, listed_at);
        book.generation += 1;
        tracing::info!(unit = %self.unit_id, generation = book.generation, "download URLs refreshed");
        Ok(())
    }

    /// The file's current URL, the generation it belongs to, and when it was listed.
    async fn url(&self, name: &str) -> (u64, Option<String>, DateTime<Utc>) {
        let book = self.urls.lock().await;
        (
            book.generation,
            book.urls.get(name).cloned(),
            book.listed_at.unwrap_or_else(Utc::now),
        )
    }

    /// Streams one file into `tx`, every byte exactly once, resuming after breaks.
    async fn download(
        self: &Arc<Self>,
        file: &ListedFile,
        tx: &mpsc::Sender<Result<Bytes, StageError>>,
    ) -> Result<(), StageError> {
        let target = download::Target {
            what: format!("cdn_logs {} file {}", self.unit_id, file.name),
            label: format!("{} (slot {})", file.name, file.slot.format("%Y-%m-%dT%H:%M:%SZ")),
            size: file.size,
            headers: Vec::new(),
            max_refreshes: MAX_REFRESHES_PER_FILE,
        };
        let urls = FileUrl {
            ctx: Arc::clone(self),
            name: file.name.clone(),
        };
        download::stream(&self.shared.downloads, &target, &urls, &mut tx.clone(), &self.counters).await
    }
}

/// The current URL of one file of a unit; refreshed by listing the day again.
struct FileUrl {
    ctx: Arc<UnitCtx>,
    name: String,
}

impl download::FreshUrl for FileUrl {
    fn current(&self) -> BoxFuture<'_, Result<download::CurrentUrl, StageError>> {
        Box::pin(async move {
            let (generation, url, minted_at) = self.ctx.url(&self.name).await;
            let url = url
                .ok_or_else(|| StageError::retryable(format!("{}: the file is no longer in the listing", self.name)))?;
            Ok(download::CurrentUrl {
                generation,
                url,
                minted_at,
            })
        })
    }

    fn refresh(&self, seen: u64) -> BoxFuture<'_, Result<(), StageError>> {
        Box::pin(self.ctx.refresh(seen))
    }
}

/// The files of `domain`'s slots within `window`, in slot order, then by name; and how many
/// duplicate entries were dropped.
pub fn parse_listing(body: &[u8], domain: &str, window: Window) -> Result<(Vec<ListedFile>, usize), String> {
    let listing: Vec<DomainLogs> = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let entries: Vec<&DomainLogs> = listing
        .iter()
        .filter(|d| d.domain.eq_ignore_ascii_case(domain))
        .collect();
    if entries.is_empty() && !listing.is_empty() {
        let names: Vec<&str> = listing.iter().map(|d| d.domain.as_str()).collect();
        return Err(format!(
            "no entry for domain `{domain}` (it lists {})",
            names.join(", ")
        ));
    }
    let mut files = Vec::new();
    for entry in entries {
        for slot in entry.logs.iter().flatten() {
            let t = DateTime::parse_from_rfc3339(&slot.timestamp)
                .map_err(|e| format!("slot timestamp `{}`: {e}", slot.timestamp))?
                .with_timezone(&Utc);
            if !window.contains(t) {
                continue;
            }
            let listed = slot.values.iter().chain(slot.value.iter()).flatten();
            for f in listed {
                let url = match &f.url {
                    OneUrl::One(u) => u.clone(),
                    OneUrl::Many(v) => v
                        .first()
                        .cloned()
                        .ok_or_else(|| format!("file `{}` has an empty url array", f.name))?,
                };
                if f.name.is_empty() {
                    return Err(format!("a file of slot {} has an empty name", slot.timestamp));
                }
                files.push(ListedFile {
                    slot: t,
                    name: f.name.clone(),
                    url,
                    size: f.size,
                });
            }
        }
    }
    files.sort_by(|a, b| (a.slot, &a.name).cmp(&(b.slot, &b.name)));
    let before = files.len();
    let mut seen = std::collections::HashSet::new();
    files.retain(|f| seen.insert(f.name.clone()));
    let dropped = before - files.len();
    Ok((files, dropped))
}

/// A non-200 listing answer as an error with the vendor's code; 4xx are permanent.
fn vendor_error(client: &Client, url: String, domain: &str, resp: &etl_http::Response) -> StageError {
    let v: VendorError = serde_json::from_slice(&resp.body).unwrap_or_default();
    let message = if v.message.is_empty() {
        crate::body_start(&resp.body)
    } else {
        v.message
    };
    let message = client.redactor().redact(&message);
    if resp.status == 400 && v.code == "LLS.Domain.NotFound" {
        return StageError::permanent(CdnLogsError::DomainNotFound {
            url,
            domain: domain.to_string(),
            message,
        });
    }
    let err = CdnLogsError::Vendor {
        url,
        status: resp.status,
        code: if v.code.is_empty() { "no code".into() } else { v.code },
        message,
    };
    crate::rejected(resp.status, err)
}

impl Source for CdnLogs {
    fn kind(&self) -> &'static str {
        "cdn_logs"
    }

    fn cost(&self, _unit: &Unit) -> Option<Cost> {
        Some(Cost {
            requests: 1,
            exact: false,
            how: "one listing, then one download per log file listed".into(),
        })
    }

    /// The API counts listing requests per caller; one pipeline has one, whatever the domain,
    /// so every unit draws on the budget of the listing endpoint.
    fn budget_key(&self, _unit: &Unit) -> Option<String> {
        Some(format!(
            "cdn_logs listing {}",
            self.shared.listing.redactor().redact_url(&self.shared.endpoint)
        ))
    }

    fn budget_time(&self, units: &[Unit]) -> Option<BudgetTime> {
        let budget = self.shared.listing.budget()?;
        let count = units.len() as u64;
        Some(BudgetTime {
            requests: "listing requests".into(),
            count,
            at_least: budget.time_for(count),
            limits: budget.describe_limits(),
        })
    }

    fn plan(&self, req: &PlanRequest) -> Result<Plan, StageError> {
        let cfg = &self.shared.cfg;
        let mut plan = Plan::default();
        let to = req.to.min(req.now);
        if to < req.to {
            plan.notes.push(format!(
                "end clamped to now ({}): the API has no future logs",
                req.now.format("%Y-%m-%dT%H:%M:%SZ")
            ));
        }
        let days = utc_days(req.from, to);
        let settled = req.now - chrono::Duration::from_std(req.settle).unwrap_or_default();
        for domain in &cfg.domains {
            for day in &days {
                let window = Window::new(day_start(*day), day_start(*day + Days::new(1)));
                let mut unit = Unit {
                    id: Self::unit_id(domain, *day),
                    window,
                    params: Default::default(),
                    partitions: vec![("domain".into(), domain.clone())],
                    provisional: window.end > settled,
                };
                unit.params.insert("domain".into(), domain.clone());
                unit.params.insert("started".into(), compact(window.start));
                unit.params
                    .insert("ended".into(), compact(window.end - chrono::Duration::seconds(1)));
                plan.units.push(unit);
            }
        }
        let mut ids = std::collections::HashSet::new();
        if let Some(dup) = plan.units.iter().find(|u| !ids.insert(u.id.as_str())) {
            return Err(StageError::permanent(format!(
                "two configured domains map to the same unit id `{}`: domains are compared after replacing \
                 characters outside [A-Za-z0-9._=-] with `_`",
                dup.id
            )));
        }
        let budget = self
            .shared
            .listing
            .budget()
            .map(|b| b.describe_limits())
            .unwrap_or_default();
        let n = plan.units.len() as u64;
        let time = etl_http::time_for(self.shared.listing.budget().map(|b| b.limits()).unwrap_or_default(), n);
        plan.notes.push(format!(
            "cdn_logs: {n} listing request(s) (one per domain and UTC day, plus one per refresh of expired \
             download URLs); the rate budget ({budget}) lets them go in {}",
            human(time)
        ));
        Ok(plan)
    }

    fn fetch<'a>(&'a self, unit: &'a Unit, out: PayloadSender) -> BoxFuture<'a, Result<FetchStats, StageError>> {
        Box::pin(self.fetch_unit(unit, out))
    }
}

/// `no time at all`, `about 9 min`, `about 2 h 5 min`.
fn human(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        "no time at all (within the first window)".into()
    } else if secs < 3600 {
        format!("about {} min", secs.div_ceil(60))
    } else {
        format!("about {} h {} min", secs / 3600, (secs % 3600).div_ceil(60))
    }
}

#[cfg(test)]
mod tests;
