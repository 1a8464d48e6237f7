//! A cell's WebDAV log store (seed `webdav-log-files-api.txt`): `PROPFIND` lists
//! `{cell}__log/archive` (rotated files `default.log.{epoch-ms}`, optionally `.zip` with one
//! entry, 12 generations kept) and `{cell}__log/current` (`default.log`); each file is then read
//! with `GET`.
//!
//! How it maps to units, and why:
//! - A rotated archive never changes: it is one unit keyed by its name, loaded once and never
//!   fetched again. Its units are found by listing ([`Source::discover`]), not from a time range.
//! - `current/default.log` keeps growing: it is one provisional unit, loaded on every run and
//!   its output replaced. When it rotates, its records move into a new archive; the next run
//!   loads that archive and replaces the current unit's output with the new, short current
//!   file, so after that run every record is there exactly once. (Within that run, between the
//!   two commits, the rotated records can be visible twice for a moment.)
//! - The store keeps 12 generations. If the newest archive already loaded is gone from the
//!   listing, generations may have been deleted before this tool loaded them: the run reports
//!   them as `LOST` and exits non-zero.
//! - Hrefs come from the server: each is resolved against the collection URL and must stay in
//!   it (same origin, under the collection, no `..`, encoded dot-segments or separators, no
//!   control character such as NUL, raw or `%00`), its name must be a plain file name, and only
//!   names of the documented shape are loaded. A listing that breaks this is refused, naming the
//!   href. Output names come from unit ids, never from hrefs.
//! - Files are downloaded from the cell's own host and port only, the bearer token with them.
//! - A zipped archive is unpacked as it downloads ([`crate::zip`]): its entry's declared sizes
//!   are not trusted but checked, its inflated size is capped, more than one entry is refused,
//!   and so is an entry name that is a path.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use etl_config::WebdavLogsConfig;
use etl_core::{
    Cost, FetchStats, PayloadBody, PayloadMeta, PayloadSender, Plan, PlanRequest, Source, StageError, Unit, UnitRecord,
    Window,
};
use etl_http::Client;
use futures::future::BoxFuture;
use tokio::sync::mpsc;

use crate::download::{self, ChunkSink};
use crate::xml::Element;
use crate::zip::{ZipError, ZipStream};

/// The WebDAV namespace.
pub const DAV_NS: &str = "DAV:";
/// Personium's namespace (the seed's tables put some properties there; its sample does not).
pub const PERSONIUM_NS: &str = "urn:x-personium:xmlns";
/// The `allprop` request body.
const ALLPROP: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<D:propfind xmlns:D="DAV:">
<D:allprop/>
</D:propfind>"#;

#[derive(Debug, thiserror::Error)]
pub enum WebdavError {
    #[error("{url} answered HTTP {status} ({code}: {message})")]
    Vendor {
        url: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error("{url}: the listing is not a WebDAV multistatus: {reason}")]
    NotMultistatus { url: String, reason: String },
    #[error(
        "{collection}: the server listed `{href}`, which is outside the collection or not a plain file of it ({reason}); refusing to load it"
    )]
    UnsafeHref {
        collection: String,
        href: String,
        reason: String,
    },
}

/// One file of a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DavFile {
    pub name: String,
    pub url: url::Url,
    pub length: Option<u64>,
    pub content_type: Option<String>,
    pub created: Option<DateTime<Utc>>,
}

/// The WebDAV log store source.
#[derive(Debug)]
pub struct WebdavLogs {
    cfg: WebdavLogsConfig,
    client: Client,
    downloads: Client,
    /// The cell URL, with a trailing slash.
    cell: url::Url,
    cell_name: String,
}

impl WebdavLogs {
    pub fn new(cfg: WebdavLogsConfig, client: Client) -> Result<Self, StageError> {
        let mut text = cfg.url.clone();
        if !text.ends_with('/') {
            text.push('/');
        }
        let cell =
            url::Url::parse(&text).map_err(|e| StageError::permanent(format!("source.url `{}`: {e}", cfg.url)))?;
        let host = cell
            .host_str()
            .ok_or_else(|| StageError::permanent(format!("source.url `{}` has no host", cfg.url)))?
            .to_string();
        let cell_name = cell
            .path_segments()
            .and_then(|mut s| s.rfind(|p| !p.is_empty()).map(str::to_string))
            .unwrap_or_else(|| host.split('.').next().unwrap_or("cell").to_string());
        // Files are read from the cell's own origin only: its host and port (the bearer token
        // goes with every download, so no other service on that host may get it).
        let origin = match cell.port_or_known_default() {
            Some(port) => format!("{host}:{port}"),
            None => host,
        };
        let downloads = Client::for_downloads(*client.config(), client.redactor().clone(), [origin])
            .map_err(StageError::permanent)?;
        Ok(Self {
            cfg,
            client,
            downloads,
            cell,
            cell_name,
        })
    }

    fn collection(&self, which: &str) -> url::Url {
        // The cell URL ends with `/`, so this cannot fail.
        self.cell
            .join(&format!("__log/{which}"))
            .unwrap_or_else(|_| self.cell.clone())
    }

    /// PROPFIND `Depth: 1` of `__log/{which}`: its files (the collection itself skipped).
    pub async fn list(&self, which: &str) -> Result<Vec<DavFile>, StageError> {
        let url = self.collection(which);
        let shown = self.client.redactor().redact_url(url.as_str());
        let what = format!("webdav_logs PROPFIND {which}");
        let method = etl_http::reqwest::Method::from_bytes(b"PROPFIND").map_err(StageError::internal)?;
        let resp = self
            .client
            .send(&what, |c| {
                c.request(method.clone(), url.clone())
                    .header("Depth", "1")
                    .header("Content-Type", "application/xml; charset=utf-8")
                    .bearer_auth(self.cfg.token.expose())
                    .body(ALLPROP)
            })
            .await?;
        if resp.status != 207 {
            return Err(self.vendor_error(shown, &resp));
        }
        parse_multistatus(&resp.body, &url).map_err(|e| match e {
            ListingError::Unsafe { href, reason } => StageError::permanent(WebdavError::UnsafeHref {
                collection: shown,
                href,
                reason,
            }),
            ListingError::Malformed(reason) => {
                StageError::retryable(WebdavError::NotMultistatus { url: shown, reason })
            }
        })
    }

    fn vendor_error(&self, url: String, resp: &etl_http::Response) -> StageError {
        #[derive(serde::Deserialize, Default)]
        struct Body {
            #[serde(default)]
            code: String,
            #[serde(default)]
            message: serde_json::Value,
        }
        let b: Body = serde_json::from_slice(&resp.body).unwrap_or_default();
        let message = match &b.message {
            serde_json::Value::Object(m) => m.get("value").and_then(|v| v.as_str()).unwrap_or("").to_string(),
            serde_json::Value::String(s) => s.clone(),
            _ => crate::body_start(&resp.body),
        };
        let err = WebdavError::Vendor {
            url,
            status: resp.status,
            code: if b.code.is_empty() { "no code".into() } else { b.code },
            message: self.client.redactor().redact(&message),
        };
        crate::rejected(resp.status, err)
    }

    fn unit_id(&self, what: &str) -> String {
        Unit::sanitize_id(&format!("webdav_logs-{}-{what}", self.cell_name))
    }

    async fn discover_units(&self, req: &PlanRequest, done: &BTreeMap<String, UnitRecord>) -> Result<Plan, StageError> {
        let mut plan = Plan::default();
        let mut archives: Vec<(i64, DavFile)> = Vec::new();
        for f in self.list("archive").await? {
            match archive_epoch(&f.name) {
                Some(epoch) => archives.push((epoch, f)),
                None => plan
                    .notes
                    .push(format!("archive: skipped `{}`: not a rotated log file name", f.name)),
            }
        }
        archives.sort_by_key(|(e, _)| *e);
        let mut previous: Option<i64> = None;
        for (epoch, f) in &archives {
            let end = DateTime::from_timestamp_millis(*epoch).unwrap_or_default();
            let start = previous
                .and_then(DateTime::from_timestamp_millis)
                .or(f.created)
                .unwrap_or(end);
            let mut unit = Unit {
                id: self.unit_id(&format!("archive-{}", f.name)),
                window: Window::new(start.min(end), end),
                params: Default::default(),
                partitions: Vec::new(),
                provisional: false,
            };
            unit.params.insert("name".into(), f.name.clone());
            unit.params.insert("url".into(), f.url.to_string());
            unit.params.insert("epoch_ms".into(), epoch.to_string());
            if let Some(len) = f.length {
                unit.params.insert("length".into(), len.to_string());
            }
            plan.units.push(unit);
            previous = Some(*epoch);
        }
        if let Some(l) = self.lost_generations(&archives, done) {
            plan.lost.push(l);
        }
        if self.cfg.include_current {
            let current = self.list("current").await?;
            let newest = archives.last().map(|(e, _)| *e);
            for f in current.into_iter().filter(|f| f.name == "default.log") {
                let start = newest
                    .and_then(DateTime::from_timestamp_millis)
                    .or(f.created)
                    .unwrap_or(req.now);
                let mut unit = Unit {
                    id: self.unit_id("current"),
                    window: Window::new(start.min(req.now), req.now),
                    params: Default::default(),
                    partitions: Vec::new(),
                    provisional: true,
                };
                unit.params.insert("name".into(), f.name.clone());
                unit.params.insert("url".into(), f.url.to_string());
                plan.units.push(unit);
            }
        }
        Ok(plan)
    }

    /// Generations deleted before they were loaded. Archive names only say when each was
    /// rotated, not which came before it, so once the newest archive this tool loaded is gone
    /// from the listing, the archives rotated between it and the oldest one listed may have been
    /// deleted unloaded: that is reported (exactly twelve rotations between two runs lose
    /// nothing but look the same, and are reported too: better a false alarm than a silent
    /// loss). Once the new archives are loaded, the report stops.
    fn lost_generations(&self, listed: &[(i64, DavFile)], done: &BTreeMap<String, UnitRecord>) -> Option<String> {
        let prefix = self.unit_id("archive-");
        let newest_loaded = done
            .values()
            .filter(|r| r.unit.id.starts_with(&prefix))
            .filter_map(|r| r.unit.params.get("epoch_ms").and_then(|e| e.parse::<i64>().ok()))
            .max()?;
        let (oldest_epoch, oldest) = listed.first()?;
        if *oldest_epoch <= newest_loaded {
            return None;
        }
        let loaded = done
            .values()
            .any(|r| r.unit.id == self.unit_id(&format!("archive-{}", oldest.name)));
        if loaded {
            return None;
        }
        let from = DateTime::from_timestamp_millis(newest_loaded).unwrap_or_default();
        let to = DateTime::from_timestamp_millis(*oldest_epoch).unwrap_or_default();
        Some(format!(
            "{}: log generations rotated after {} and before {} (the oldest archive still listed, `{}`) may have \
             been deleted by the store (it keeps 12 generations) before they were loaded: the newest archive loaded \
             so far is no longer listed; run more often than every 12 rotations",
            self.unit_id("archive"),
            from.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
            to.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
            oldest.name
        ))
    }

    async fn fetch_unit(&self, unit: &Unit, mut out: PayloadSender) -> Result<FetchStats, StageError> {
        let name = unit.params["name"].clone();
        let url = url::Url::parse(&unit.params["url"]).map_err(StageError::internal)?;
        let (tx, rx) = mpsc::channel(8);
        let mut meta = PayloadMeta {
            name: name.clone(),
            content_type: Some("text/csv".into()),
            ..Default::default()
        };
        meta.labels.insert("file_name".into(), name.clone());
        out.send(meta, PayloadBody::Chunks(rx)).await?;
        let target = download::Target {
            what: format!("webdav_logs {} GET {name}", unit.id),
            label: name.clone(),
            // The current file grows between the listing and the download.
            size: if unit.provisional {
                None
            } else {
                unit.params.get("length").and_then(|l| l.parse().ok())
            },
            headers: vec![(
                "Authorization".into(),
                etl_core::Secret::new(format!("Bearer {}", self.cfg.token.expose())),
            )],
            max_refreshes: 0,
        };
        let urls = StaticUrl(url.to_string());
        let counters = download::Counters::default();
        let result = if name.ends_with(".zip") {
            let mut sink = Unzip {
                tx: tx.clone(),
                zip: ZipStream::new(1, self.cfg.max_entry_bytes.0),
                file: name.clone(),
            };
            match download::stream(&self.downloads, &target, &urls, &mut sink, &counters).await {
                Ok(()) => sink.zip.finish().map_err(|e| zip_error(&name, e)),
                Err(e) => Err(e),
            }
        } else {
            download::stream(&self.downloads, &target, &urls, &mut tx.clone(), &counters).await
        };
        if let Err(e) = &result {
            let _ = tx.send(Err(StageError::new(e.class(), e.to_string()))).await;
        }
        result?;
        Ok(FetchStats {
            requests: counters.requests.load(Ordering::Relaxed),
            retries: counters.retries.load(Ordering::Relaxed),
            bytes: counters.bytes.load(Ordering::Relaxed),
            payloads: 1,
        })
    }
}

/// A zip problem as a stage error: a truncated or damaged archive may be fixed by another
/// download; a hostile, oversized or self-contradicting one will not change.
fn zip_error(file: &str, e: ZipError) -> StageError {
    let retryable = matches!(
        e,
        ZipError::Truncated(_) | ZipError::Crc { .. } | ZipError::Corrupt { .. }
    );
    let err = format!("{file}: {e}");
    if retryable {
        StageError::retryable(err)
    } else {
        StageError::permanent(err)
    }
}

/// Unpacks a zipped archive on its way to the decoder.
struct Unzip {
    tx: mpsc::Sender<Result<Bytes, StageError>>,
    zip: ZipStream,
    file: String,
}

impl ChunkSink for Unzip {
    fn push(&mut self, chunk: Bytes) -> BoxFuture<'_, Result<(), StageError>> {
        Box::pin(async move {
            // A slice at a time, each one's output sent before the next is inflated: a bomb
            // never holds more than a few MiB here, whatever the network's chunk size.
            let mut out = Vec::new();
            for slice in chunk.chunks(crate::zip::MAX_FEED) {
                self.zip.feed(slice, &mut out).map_err(|e| zip_error(&self.file, e))?;
                for piece in out.drain(..) {
                    self.tx.send(Ok(piece)).await.map_err(|_| StageError::cancelled())?;
                }
            }
            Ok(())
        })
    }
}

/// A URL that does not expire; a refusal is final.
struct StaticUrl(String);

impl download::FreshUrl for StaticUrl {
    fn current(&self) -> BoxFuture<'_, Result<download::CurrentUrl, StageError>> {
        Box::pin(async move {
            Ok(download::CurrentUrl {
                generation: 0,
                url: self.0.clone(),
                minted_at: Utc::now(),
            })
        })
    }

    fn refresh(&self, _seen: u64) -> BoxFuture<'_, Result<(), StageError>> {
        Box::pin(async { Err(StageError::permanent("the server refused the download (HTTP 403/410)")) })
    }
}

/// The epoch-ms of a rotated file name `default.log.{ms}` or `default.log.{ms}.zip`.
pub fn archive_epoch(name: &str) -> Option<i64> {
    let rest = name.strip_prefix("default.log.")?;
    let digits = rest.strip_suffix(".zip").unwrap_or(rest);
    if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Why a listing was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum ListingError {
    Unsafe { href: String, reason: String },
    Malformed(String),
}

/// The files of a 207 multistatus for `collection`. Hrefs must resolve inside the collection.
pub fn parse_multistatus(body: &[u8], collection: &url::Url) -> Result<Vec<DavFile>, ListingError> {
    let root = Element::parse(body).map_err(ListingError::Malformed)?;
    if !root.is(DAV_NS, "multistatus") {
        return Err(ListingError::Malformed(format!(
            "the root element is <{}>, not DAV: multistatus",
            root.local
        )));
    }
    let mut dir = collection.clone();
    if !dir.path().ends_with('/') {
        dir.set_path(&format!("{}/", dir.path()));
    }
    let ns = [DAV_NS, PERSONIUM_NS];
    let mut files = Vec::new();
    for response in root.children.iter().filter(|c| c.is(DAV_NS, "response")) {
        let href = response
            .child(DAV_NS, "href")
            .map(|h| h.text.clone())
            .ok_or_else(|| ListingError::Malformed("a response without <href>".into()))?;
        let props: Vec<&Element> = response
            .children
            .iter()
            .filter(|c| c.is(DAV_NS, "propstat"))
            .filter(|p| p.child(DAV_NS, "status").is_none_or(|s| s.text.contains(" 200 ")))
            .filter_map(|p| p.child(DAV_NS, "prop"))
            .collect();
        let prop = |local: &str| props.iter().find_map(|p| p.child_in(&ns, local));
        let is_collection = prop("resourcetype").is_some_and(|r| !r.children.is_empty());
        let resolved = resolve_href(&href, &dir)?;
        if is_collection || resolved.as_str().trim_end_matches('/') == dir.as_str().trim_end_matches('/') {
            continue;
        }
        let name = resolved
            .path_segments()
            .and_then(|mut s| s.next_back().map(str::to_string))
            .unwrap_or_default();
        let name = percent_decode(&name);
        if let Some(reason) = crate::unsafe_file_name(&name) {
            return Err(ListingError::Unsafe {
                href: crate::printable(&href),
                reason: format!(
                    "its file name `{}` is not a plain file name: {reason}",
                    crate::printable(&name)
                ),
            });
        }
        files.push(DavFile {
            name,
            url: resolved,
            length: prop("getcontentlength").and_then(|e| e.text.trim().parse().ok()),
            content_type: prop("getcontenttype").map(|e| e.text.clone()),
            created: prop("creationdate").and_then(|e| parse_creationdate(&e.text)),
        });
    }
    Ok(files)
}

/// Resolves a server href against the collection and checks it stays a direct child of it.
fn resolve_href(href: &str, dir: &url::Url) -> Result<url::Url, ListingError> {
    let unsafe_href = |reason: &str| ListingError::Unsafe {
        href: crate::printable(href),
        reason: reason.to_string(),
    };
    let lower = href.to_ascii_lowercase();
    if lower.contains("%2e") || lower.contains("%2f") || lower.contains("%5c") || href.contains('\\') {
        return Err(unsafe_href("encoded dot-segments or separators"));
    }
    if href.chars().any(char::is_control) || encodes_control(&lower) {
        return Err(unsafe_href("a control character such as NUL, raw or percent-encoded"));
    }
    if href.split('/').any(|seg| seg == ".." || seg == ".") {
        return Err(unsafe_href("a `..` or `.` segment"));
    }
    let url = dir.join(href).map_err(|e| unsafe_href(&format!("not a URL: {e}")))?;
    if url.origin() != dir.origin() {
        return Err(unsafe_href("another origin"));
    }
    let dir_path = dir.path();
    let path = url.path();
    let parent = dir_path.trim_end_matches('/');
    if path.trim_end_matches('/') == parent {
        return Ok(url);
    }
    let Some(rest) = path.strip_prefix(dir_path) else {
        return Err(unsafe_href("not under the collection"));
    };
    if rest.is_empty() || rest.trim_end_matches('/').contains('/') {
        return Err(unsafe_href("not a direct child of the collection"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(unsafe_href("a query or fragment"));
    }
    Ok(url)
}

/// Whether `%XX` in `lower` encodes a control character (`%00`-`%1f`, `%7f`).
fn encodes_control(lower: &str) -> bool {
    lower
        .as_bytes()
        .windows(3)
        .any(|w| w[0] == b'%' && matches!((w[1], w[2]), (b'0' | b'1', b'0'..=b'9' | b'a'..=b'f') | (b'7', b'f')))
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_string())
}

/// `2025-11-18T00:49:30.870+0000` (also RFC 3339).
fn parse_creationdate(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z")
        .or_else(|_| DateTime::parse_from_rfc3339(s))
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

impl Source for WebdavLogs {
    fn kind(&self) -> &'static str {
        "webdav_logs"
    }

    fn cost(&self, _unit: &Unit) -> Option<Cost> {
        Some(Cost {
            requests: 1,
            exact: true,
            how: "one GET of the log file".into(),
        })
    }

    /// Without a listing there is nothing to plan: `discover` lists the store.
    fn plan(&self, _req: &PlanRequest) -> Result<Plan, StageError> {
        Ok(Plan::default())
    }

    fn discover<'a>(
        &'a self,
        req: &'a PlanRequest,
        done: &'a BTreeMap<String, UnitRecord>,
    ) -> BoxFuture<'a, Result<Option<Plan>, StageError>> {
        Box::pin(async move { self.discover_units(req, done).await.map(Some) })
    }

    fn fetch<'a>(&'a self, unit: &'a Unit, out: PayloadSender) -> BoxFuture<'a, Result<FetchStats, StageError>> {
        Box::pin(self.fetch_unit(unit, out))
    }
}

#[cfg(test)]
mod tests;
