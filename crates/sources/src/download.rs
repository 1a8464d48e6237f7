//! Streaming a file from a URL into a decoder, every byte exactly once, whatever the network
//! does: used by every source that downloads files (CDN logs, audit exports, WebDAV archives).
//!
//! Why resume instead of retrying the whole file: the decoder has already consumed the bytes
//! that arrived, and a day of files at a 20 % fault rate would never finish if one break
//! restarted the unit. So a download that breaks off (reset, stall past the read timeout, a
//! body shorter than the size the listing announced) asks again for the rest with
//! `Range: bytes=N-`; a server that ignores `Range` answers 200 with the whole file, whose first
//! N bytes are skipped after checking (CRC-32) that they are the bytes already delivered.
//!
//! A redirect is refused, never followed: the client that downloads carries no API credentials,
//! but a file's own headers (a bearer token for the WebDAV store) and its signed query must not
//! travel to wherever a server points.
//!
//! Signed URLs expire. A URL whose `expire=` has passed (or is about to) is never used, and a
//! 403/410 means the same: the source's [`FreshUrl::refresh`] obtains a new one (a new listing,
//! a new job status), a bounded number of times.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use etl_core::{Secret, StageError};
use etl_http::Client;
use futures::future::BoxFuture;
use tokio::sync::mpsc;

/// A URL that expires within this margin counts as expired: the download would start too late.
/// Never more than a quarter of the URL's lifetime, so that short-lived URLs stay usable.
pub const EXPIRY_MARGIN_SECS: i64 = 5;

/// A URL as the source currently knows it.
#[derive(Clone, Debug)]
pub struct CurrentUrl {
    /// Changes each time the source refreshes its URLs.
    pub generation: u64,
    pub url: String,
    /// When the server handed it out (to judge how long it lives).
    pub minted_at: DateTime<Utc>,
}

/// Where a download gets its URL, and a fresh one when the server refuses it.
pub trait FreshUrl: Send + Sync {
    fn current(&self) -> BoxFuture<'_, Result<CurrentUrl, StageError>>;
    /// Obtains fresh URLs, unless they were already refreshed since generation `seen`.
    fn refresh(&self, seen: u64) -> BoxFuture<'_, Result<(), StageError>>;
}

/// One file to download.
#[derive(Debug)]
pub struct Target {
    /// Names the request in logs and errors (`cdn_logs <unit> file <name>`).
    pub what: String,
    /// Names the file in errors (`20250911175500.log.gz (slot ...)`).
    pub label: String,
    /// The size the server announced before the download, if any.
    pub size: Option<u64>,
    /// Headers for this host only (a bearer token); never logged.
    pub headers: Vec<(String, Secret)>,
    /// Fresh URLs the file may need before it fails.
    pub max_refreshes: u32,
}

/// Where downloaded bytes go: straight to the decoder, or through an unpacker first.
pub trait ChunkSink: Send {
    /// Takes the next bytes of the file; an error stops the download (a cancelled pipeline,
    /// a container that is not what it should be).
    fn push(&mut self, chunk: Bytes) -> BoxFuture<'_, Result<(), StageError>>;
}

impl ChunkSink for mpsc::Sender<Result<Bytes, StageError>> {
    fn push(&mut self, chunk: Bytes) -> BoxFuture<'_, Result<(), StageError>> {
        Box::pin(async move {
            // A closed channel means the pipeline stopped; its error is the one reported.
            self.send(Ok(chunk)).await.map_err(|_| StageError::cancelled())
        })
    }
}

/// Counters shared by the downloads of a unit.
#[derive(Debug, Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    pub bytes: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
#[error("{file}: {reason}")]
pub struct DownloadError {
    pub file: String,
    pub reason: String,
}

/// Streams `target` into `sink`: every byte once, in order, resuming after breaks and
/// refreshing refused URLs. On error nothing more is sent; the caller must fail the payload.
pub async fn stream(
    client: &Client,
    target: &Target,
    urls: &dyn FreshUrl,
    sink: &mut dyn ChunkSink,
    counters: &Counters,
) -> Result<(), StageError> {
    let max_attempts = client.config().max_attempts.max(1);
    let what = target.what.as_str();
    let fail = |reason: String| {
        StageError::retryable(DownloadError {
            file: target.label.clone(),
            reason,
        })
    };
    // Bytes handed to the decoder so far, and their CRC-32.
    let mut delivered: u64 = 0;
    let mut crc = crc32fast::Hasher::new();
    let mut breaks = 0u32;
    let mut refreshes = 0u32;
    let mut resumed_short = false;
    loop {
        let CurrentUrl {
            generation,
            url,
            minted_at,
        } = urls.current().await?;
        if expired(&url, minted_at, Utc::now()) {
            if refreshes >= target.max_refreshes {
                return Err(fail(format!(
                    "its download URL was still expired after {refreshes} refreshes"
                )));
            }
            refreshes += 1;
            urls.refresh(generation).await?;
            continue;
        }
        let from = delivered;
        let mut resp = client
            .open(what, |c| {
                let mut r = c.get(&url);
                for (name, value) in &target.headers {
                    r = r.header(name.as_str(), value.expose());
                }
                if from > 0 {
                    r = r.header("Range", format!("bytes={from}-"));
                }
                r
            })
            .await?;
        counters.requests.fetch_add(u64::from(resp.attempts), Ordering::Relaxed);
        counters.retries.fetch_add(
            u64::from(resp.attempts.saturating_sub(1)) + u64::from(from > 0),
            Ordering::Relaxed,
        );
        let mut skip = 0u64;
        match resp.status {
            200 => skip = from,
            206 => {
                let start = resp.header("content-range").and_then(content_range_start);
                if start != Some(from) {
                    return Err(fail(format!(
                        "asked for bytes {from}- and got a partial answer starting at {start:?}"
                    )));
                }
            }
            // Nothing beyond what we have: the file is this long.
            416 if from > 0 => break,
            403 | 410 => {
                let excerpt = resp.excerpt().await;
                if refreshes >= target.max_refreshes {
                    return Err(fail(format!(
                        "the download URL was refused (HTTP 403/410: expired or invalid signature) after {refreshes} refreshes: {excerpt}"
                    )));
                }
                tracing::info!(what, "download URL refused (expired?); getting a fresh one");
                refreshes += 1;
                urls.refresh(generation).await?;
                continue;
            }
            404 => {
                let excerpt = resp.excerpt().await;
                return Err(fail(format!("the file is not found (HTTP 404): {excerpt}")));
            }
            // Never followed: the next hop could be any host, and would get this request's
            // headers. The target is named (redacted) so that an operator can allow it.
            300..=399 => {
                let location = resp
                    .header("location")
                    .map(|l| format!("`{}`", client.redactor().redact_url(&crate::printable(l))))
                    .unwrap_or_else(|| "nowhere (no Location header)".into());
                return Err(StageError::permanent(DownloadError {
                    file: target.label.clone(),
                    reason: format!(
                        "the download URL answered HTTP {} redirecting to {location}; downloads never follow \
                         redirects (use the final host's URL, and list its host in download_hosts)",
                        resp.status
                    ),
                }));
            }
            _ => return Err(resp.into_error(what).await.into()),
        }
        // Skipping a prefix we already delivered: it must be the same bytes.
        let mut prefix = crc32fast::Hasher::new();
        let broke = loop {
            let chunk = match resp.chunk(what).await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break None,
                Err(e) => break Some(e),
            };
            counters.bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            let mut chunk = chunk;
            if skip > 0 {
                let n = usize::try_from(skip).unwrap_or(usize::MAX).min(chunk.len());
                prefix.update(&chunk[..n]);
                skip -= n as u64;
                chunk = chunk.slice(n..);
                if skip == 0 && prefix.clone().finalize() != crc.clone().finalize() {
                    return Err(fail(
                        "the file changed between two download attempts (its first bytes differ)".into(),
                    ));
                }
            }
            if chunk.is_empty() {
                continue;
            }
            delivered += chunk.len() as u64;
            crc.update(&chunk);
            sink.push(chunk).await?;
        };
        if let Some(e) = broke {
            breaks += 1;
            if breaks >= max_attempts {
                return Err(StageError::from(e).context(format!("{breaks} breaks while downloading")));
            }
            tracing::warn!(what, delivered, error = %e, "download broke off; resuming");
            if breaks > 1 {
                tokio::time::sleep(backoff(client, breaks)).await;
            }
            continue;
        }
        if skip > 0 {
            return Err(fail(format!(
                "a new download attempt is shorter ({} bytes) than what was already received ({from})",
                from - skip
            )));
        }
        match target.size {
            Some(size) if delivered < size => {
                if resumed_short && delivered == from {
                    // The server has nothing more: the announced size is not the file's.
                    tracing::warn!(
                        what,
                        announced = size,
                        served = delivered,
                        "the announced size differs from the file served; keeping what the server serves (the decoder checks the file is complete)"
                    );
                    break;
                }
                breaks += 1;
                if breaks >= max_attempts {
                    return Err(fail(format!(
                        "the body ended after {delivered} of the {size} bytes announced, {breaks} times"
                    )));
                }
                tracing::warn!(what, delivered, size, "download shorter than announced; resuming");
                resumed_short = true;
                if breaks > 1 {
                    tokio::time::sleep(backoff(client, breaks)).await;
                }
                continue;
            }
            _ => break,
        }
    }
    Ok(())
}

/// A jittered wait before resuming a broken download.
fn backoff(client: &Client, breaks: u32) -> Duration {
    let cfg = client.config();
    let cap = cfg
        .backoff_base
        .saturating_mul(1u32 << breaks.min(16))
        .min(cfg.backoff_max);
    let half = u64::try_from(cap.as_nanos() / 2).unwrap_or(u64::MAX);
    Duration::from_nanos(half + rand::random_range(0..=half))
}

/// Whether a signed URL listed at `listed_at` has passed its `expire=` (Unix seconds) at `now`,
/// or is about to (within [`EXPIRY_MARGIN_SECS`], at most a quarter of its lifetime). A URL
/// without `expire=` is tried as it is: the server's 403 says when it has expired.
pub fn expired(url: &str, listed_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    let Ok(parsed) = url::Url::parse(url) else {
        return false;
    };
    let Some(expire) = parsed
        .query_pairs()
        .find(|(k, _)| k == "expire")
        .and_then(|(_, v)| v.parse::<i64>().ok())
    else {
        return false;
    };
    let lifetime = (expire - listed_at.timestamp()).max(0);
    let margin = EXPIRY_MARGIN_SECS.min(lifetime / 4);
    expire <= now.timestamp() + margin
}

/// The first byte of a `Content-Range: bytes START-END/TOTAL`.
pub fn content_range_start(v: &str) -> Option<u64> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    rest.split('-').next()?.trim().parse().ok()
}
