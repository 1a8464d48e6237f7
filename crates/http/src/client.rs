//! The client: one reqwest client with timeouts, a retry loop around it, and counters.
//!
//! The retry loop lives here rather than in each source because every vendor API fails the same
//! ways (resets, 503 under load, 429 with `Retry-After`, bodies cut short) and the fix is the same:
//! classify, back off with jitter, respect the server's wait, stop within a budget, and never
//! print a secret while doing it. A source only says what to send and reads what came back.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use reqwest::header::HeaderMap;

use crate::budget::RateBudget;
use crate::error::{HttpError, excerpt, is_retryable_status};
use crate::redact::Redactor;
use crate::retry::{Decision, decide, retry_after};

/// Timeouts, retry budget and body limit of a [`Client`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpConfig {
    /// Time allowed to open a connection (TCP and TLS).
    pub connect_timeout: Duration,
    /// Longest wait for the next bytes of a response (a stall timeout, reset by every read), so
    /// a large download that keeps moving is never cut. There is no total timeout.
    pub read_timeout: Duration,
    /// Attempts per request, the first included (at least 1).
    pub max_attempts: u32,
    /// Time budget of one request from its first attempt; no retry starts that would end after it.
    /// Waiting for a [`RateBudget`] does not count.
    pub max_retry_time: Duration,
    /// Bound of the first retry's jittered wait; doubled for each further retry.
    pub backoff_base: Duration,
    /// Largest jittered wait (a `Retry-After` may ask for more).
    pub backoff_max: Duration,
    /// Largest body read into memory; a larger response is an error (streamed downloads do not
    /// go through [`Client::send`]).
    pub max_body: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            max_attempts: 8,
            max_retry_time: Duration::from_secs(300),
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            max_body: 256 << 20,
        }
    }
}

/// A complete response: status, headers and the whole body.
#[derive(Clone)]
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The URL that answered, redacted.
    pub url: String,
    /// Attempts it took, this one included.
    pub attempts: u32,
}

impl Response {
    /// A 2xx status.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// A header's value, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl fmt::Debug for Response {
    /// Header names and the body's size only: a body may be megabytes, and a header may carry
    /// a session cookie.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("url", &self.url)
            .field("attempts", &self.attempts)
            .field("headers", &self.headers.keys().map(|k| k.as_str()).collect::<Vec<_>>())
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// Responses by HTTP status, over every client of the process (API and download clients
/// alike), for the metrics a scheduler scrapes after a run.
static RESPONSES: std::sync::Mutex<std::collections::BTreeMap<u16, u64>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());
/// Attempts that got no response at all (connect error, timeout), over the process.
static NO_RESPONSE: AtomicU64 = AtomicU64::new(0);

/// Attempts since the process started: responses by HTTP status, and attempts that got none
/// (connect errors, timeouts before the headers).
pub fn responses_by_status() -> (std::collections::BTreeMap<u16, u64>, u64) {
    let by_status = RESPONSES.lock().unwrap_or_else(|e| e.into_inner()).clone();
    (by_status, NO_RESPONSE.load(Ordering::Relaxed))
}

fn count_response(status: u16) {
    *RESPONSES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(status)
        .or_default() += 1;
}

/// Cumulative counters of a [`Client`] (and all its clones) since it was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Attempts sent (a retried request counts once per attempt).
    pub requests: u64,
    /// Attempts that were followed by a retry.
    pub retries: u64,
    /// Response body bytes received, error bodies included.
    pub bytes: u64,
}

/// The HTTP client every source uses. Cheap to clone: clones share the connection pool and
/// the counters.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    cfg: HttpConfig,
    redactor: Redactor,
    /// Awaited before every attempt; a 429's `Retry-After` holds it for every task.
    budget: Option<Arc<RateBudget>>,
    /// When set, a request to any other host is refused before it is sent.
    allowed_hosts: Option<Arc<[String]>>,
    requests: AtomicU64,
    retries: AtomicU64,
    bytes: AtomicU64,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.inner.cfg)
            .field("redactor", &self.inner.redactor)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Why an attempt failed, when another attempt may do better.
enum Failure {
    Status {
        status: u16,
        body: String,
        retry_after: Option<Duration>,
    },
    Transport {
        message: String,
    },
}

impl Failure {
    fn into_error(self, what: &str, url: String, attempts: u32) -> HttpError {
        match self {
            Failure::Status { status, body, .. } => HttpError::Status {
                what: what.to_string(),
                url,
                status,
                body,
                attempts,
            },
            Failure::Transport { message } => HttpError::Transport {
                what: what.to_string(),
                url,
                message,
                attempts,
            },
        }
    }
}

/// What one successful attempt produced.
enum Head {
    Whole(u16, HeaderMap, Bytes),
    Stream(reqwest::Response),
}

/// What the retry loop returns.
enum Got {
    Whole(Response),
    Stream(Streaming),
}

/// A response whose body is read chunk by chunk as it arrives ([`Client::open`]).
pub struct Streaming {
    pub status: u16,
    pub headers: HeaderMap,
    /// The URL that answered, redacted.
    pub url: String,
    /// Attempts it took to get the head, this one included.
    pub attempts: u32,
    response: reqwest::Response,
    client: Client,
}

impl fmt::Debug for Streaming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Streaming")
            .field("status", &self.status)
            .field("url", &self.url)
            .field("attempts", &self.attempts)
            .finish()
    }
}

impl Streaming {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// A header's value, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The announced body length, if any.
    pub fn content_length(&self) -> Option<u64> {
        self.response.content_length()
    }

    /// The next piece of the body, `None` at its end. A failure (reset, stall past the read
    /// timeout, a body shorter than its `Content-Length`) is a `Transport` error naming `what`.
    pub async fn chunk(&mut self, what: &str) -> Result<Option<Bytes>, HttpError> {
        match self.response.chunk().await {
            Ok(Some(chunk)) => {
                self.client.inner.bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                Ok(Some(chunk))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(HttpError::Transport {
                what: self.client.inner.redactor.redact(what),
                url: self.url.clone(),
                message: format!(
                    "reading the response body (HTTP {}): {}",
                    self.status,
                    describe(&self.client.inner.redactor, e)
                ),
                attempts: self.attempts,
            }),
        }
    }

    /// Reads at most 64 KiB of the body and turns the response into a `Status` error with a
    /// redacted excerpt, for a status the caller rejects.
    pub async fn into_error(mut self, what: &str) -> HttpError {
        let body = match self.client.read_body(&mut self.response, ERROR_BODY_READ).await {
            Ok(body) | Err(BodyError::TooLarge(body)) => body,
            Err(BodyError::Read(_)) => Bytes::new(),
        };
        HttpError::Status {
            what: self.client.inner.redactor.redact(what),
            url: self.url,
            status: self.status,
            body: excerpt(&self.client.inner.redactor.redact(&String::from_utf8_lossy(&body))),
            attempts: self.attempts,
        }
    }

    /// Reads at most 64 KiB of the body (an error page), redacted.
    pub async fn excerpt(mut self) -> String {
        let body = match self.client.read_body(&mut self.response, ERROR_BODY_READ).await {
            Ok(body) | Err(BodyError::TooLarge(body)) => body,
            Err(BodyError::Read(_)) => Bytes::new(),
        };
        excerpt(&self.client.inner.redactor.redact(&String::from_utf8_lossy(&body)))
    }
}

enum AttemptError {
    Retryable(Failure),
    Fatal(HttpError),
}

/// The most of an error body kept to build an excerpt from.
const ERROR_BODY_READ: u64 = 64 << 10;

impl Client {
    /// A client with `cfg`'s timeouts, no automatic redirects (a redirect to another host would
    /// carry the credentials; the source decides) and no total timeout.
    pub fn new(cfg: HttpConfig, redactor: Redactor) -> Result<Self, HttpError> {
        let http = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .read_timeout(cfg.read_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("etl/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| HttpError::Build {
                message: describe(&redactor, e),
            })?;
        let inner = Inner {
            http,
            cfg,
            redactor,
            budget: None,
            allowed_hosts: None,
            requests: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// A client for file downloads from signed URLs: it sends only to `allowed_hosts` (exact
    /// host names, or `*.example.com` for any subdomain; case-insensitive; `host:port` allows
    /// that port only, `[::1]` is an IPv6 host), carries no credentials of its own, does not
    /// follow redirects, and hands the body over exactly as sent (no transparent decompression,
    /// so a `.gz` file arrives as gzip). A URL on any other host is refused with
    /// [`HttpError::HostNotAllowed`] before a connection is opened, so nothing (no header, no
    /// signed query) ever reaches it. Counters are its own.
    pub fn for_downloads(
        cfg: HttpConfig,
        redactor: Redactor,
        allowed_hosts: impl IntoIterator<Item = String>,
    ) -> Result<Self, HttpError> {
        let http = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .read_timeout(cfg.read_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_gzip()
            .user_agent(concat!("etl/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| HttpError::Build {
                message: describe(&redactor, e),
            })?;
        let hosts: Vec<String> = allowed_hosts.into_iter().map(|h| h.to_ascii_lowercase()).collect();
        let inner = Inner {
            http,
            cfg,
            redactor,
            budget: None,
            allowed_hosts: Some(hosts.into()),
            requests: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// The same client (connection pool, redactor, host rule) whose every attempt first waits
    /// for `budget`. Counters start at zero.
    pub fn with_budget(&self, budget: Arc<RateBudget>) -> Self {
        let inner = Inner {
            http: self.inner.http.clone(),
            cfg: self.inner.cfg,
            redactor: self.inner.redactor.clone(),
            budget: Some(budget),
            allowed_hosts: self.inner.allowed_hosts.clone(),
            requests: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        };
        Self { inner: Arc::new(inner) }
    }

    pub fn budget(&self) -> Option<&Arc<RateBudget>> {
        self.inner.budget.as_ref()
    }

    pub fn redactor(&self) -> &Redactor {
        &self.inner.redactor
    }

    /// Refuses a URL whose host the client may not reach.
    fn check_host(&self, url: &reqwest::Url, redacted: &str, what: &str) -> Result<(), HttpError> {
        let Some(allowed) = &self.inner.allowed_hosts else {
            return Ok(());
        };
        let host = url.host_str().unwrap_or("").to_ascii_lowercase();
        let port = url.port_or_known_default();
        if allowed.iter().any(|a| entry_matches(a, &host, port)) {
            return Ok(());
        }
        Err(HttpError::HostNotAllowed {
            what: what.to_string(),
            url: redacted.to_string(),
            host,
            allowed: allowed.join(", "),
        })
    }

    pub fn config(&self) -> &HttpConfig {
        &self.inner.cfg
    }

    pub fn stats(&self) -> Stats {
        Stats {
            requests: self.inner.requests.load(Ordering::Relaxed),
            retries: self.inner.retries.load(Ordering::Relaxed),
            bytes: self.inner.bytes.load(Ordering::Relaxed),
        }
    }

    /// Sends the request made by `build` (called again for every attempt, so a body or a fresh
    /// signature is rebuilt each time) and reads the whole body.
    ///
    /// Connect errors, timeouts, broken or truncated bodies, 408, 429 and 5xx are retried with
    /// exponential backoff and full jitter, waiting at least what a `Retry-After` asks for, within
    /// `max_attempts` and `max_retry_time`. Returns `Ok` for every other status, 4xx included (the
    /// caller reads the vendor's error body), and `Err` once the budget is spent or the body is
    /// larger than `max_body`. `what` names the request in logs and errors ("mail delivery page 3").
    pub async fn send(
        &self,
        what: &str,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Response, HttpError> {
        match self.retrying(what, build, false, &|_, _| false).await? {
            Got::Whole(response) => Ok(response),
            Got::Stream(_) => unreachable!("a whole-body request returns the whole body"),
        }
    }

    /// Like [`Client::send`], but a retryable status (429, 5xx) whose body `is_final` accepts
    /// (status, first 64 KiB of the body) is returned as a response instead of retried: a SOAP
    /// fault comes with HTTP 500 and says a retry cannot help (wrong credentials, a bad
    /// selector).
    pub async fn send_unless(
        &self,
        what: &str,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
        is_final: &(dyn Fn(u16, &[u8]) -> bool + Sync),
    ) -> Result<Response, HttpError> {
        match self.retrying(what, build, false, is_final).await? {
            Got::Whole(response) => Ok(response),
            Got::Stream(_) => unreachable!("a whole-body request returns the whole body"),
        }
    }

    /// Like [`Client::send`], but returns as soon as the response head has arrived, so that the
    /// body can be read as it comes ([`Streaming::chunk`]); for downloads of any size.
    ///
    /// Connect errors, timeouts before the head, 408, 429 and 5xx are retried as by `send`.
    /// Errors while reading the body are not: only the caller knows how to resume (a `Range`
    /// request from the bytes it already has).
    pub async fn open(
        &self,
        what: &str,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Streaming, HttpError> {
        match self.retrying(what, build, true, &|_, _| false).await? {
            Got::Stream(streaming) => Ok(streaming),
            Got::Whole(_) => unreachable!("a streaming request returns a stream"),
        }
    }

    /// The retry loop of [`Client::send`] and [`Client::open`].
    async fn retrying(
        &self,
        what: &str,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
        stream: bool,
        is_final: &(dyn Fn(u16, &[u8]) -> bool + Sync),
    ) -> Result<Got, HttpError> {
        let cfg = &self.inner.cfg;
        // `what` may name a file or a URL: it is shown only redacted.
        let what = &self.inner.redactor.redact(what);
        let started = Instant::now();
        // Time spent waiting for the rate budget is queueing, not failing: it does not count
        // against the retry budget (a backfill may queue for minutes before its first attempt).
        let mut queued = Duration::ZERO;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let (http, request) = build(&self.inner.http).build_split();
            let request = request.map_err(|e| HttpError::Build {
                message: format!("{what}: {}", describe(&self.inner.redactor, e)),
            })?;
            let url = self.inner.redactor.redact_url(request.url().as_str());
            self.check_host(request.url(), &url, what)?;
            if let Some(budget) = &self.inner.budget {
                let waiting = Instant::now();
                budget.acquire().await;
                queued += waiting.elapsed();
            }
            self.inner.requests.fetch_add(1, Ordering::Relaxed);
            let failure = match self.attempt(&http, request, what, &url, stream, is_final).await {
                Ok(Head::Whole(status, headers, body)) => {
                    return Ok(Got::Whole(Response {
                        status,
                        headers,
                        body,
                        url,
                        attempts: attempt,
                    }));
                }
                Ok(Head::Stream(response)) => {
                    return Ok(Got::Stream(Streaming {
                        status: response.status().as_u16(),
                        headers: response.headers().clone(),
                        url,
                        attempts: attempt,
                        response,
                        client: self.clone(),
                    }));
                }
                Err(AttemptError::Fatal(e)) => return Err(e),
                Err(AttemptError::Retryable(f)) => f,
            };
            let (status, error, wait) = match &failure {
                Failure::Status {
                    status, retry_after, ..
                } => (Some(*status), None, *retry_after),
                Failure::Transport { message } => (None, Some(message.as_str()), None),
            };
            self.hold_budget(status, wait);
            match decide(cfg, attempt, started.elapsed().saturating_sub(queued), wait) {
                Decision::Retry(delay) => {
                    self.inner.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        what,
                        url = %url,
                        status,
                        error,
                        attempt = %format_args!("{attempt}/{}", cfg.max_attempts.max(1)),
                        delay_ms = delay.as_millis() as u64,
                        reason = %if wait.is_some() { "retry-after" } else { "backoff" },
                        "request failed; retrying"
                    );
                    tokio::time::sleep(delay).await;
                }
                Decision::GiveUp(reason) => {
                    tracing::warn!(
                        what,
                        url = %url,
                        status,
                        error,
                        attempt = %format_args!("{attempt}/{}", cfg.max_attempts.max(1)),
                        reason = %reason,
                        "request failed; giving up"
                    );
                    return Err(failure.into_error(what, url, attempt));
                }
            }
        }
    }

    /// After a 429, no request of the budget goes before the server's `Retry-After` (a minute
    /// when it sent none): the server counts differently than we do, and hammering it again
    /// only extends the penalty. A 503 that names a `Retry-After` is the server saying when it
    /// will be back, for every request on the credential, and is honoured the same way.
    fn hold_budget(&self, status: Option<u16>, retry_after: Option<Duration>) {
        let Some(budget) = &self.inner.budget else { return };
        match (status, retry_after) {
            (Some(429), wait) => budget.hold(wait.unwrap_or(Duration::from_secs(60))),
            (Some(503), Some(wait)) => budget.hold(wait),
            _ => {}
        }
    }

    /// One attempt: send, then read the body within the limit.
    async fn attempt(
        &self,
        http: &reqwest::Client,
        request: reqwest::Request,
        what: &str,
        url: &str,
        stream: bool,
        is_final: &(dyn Fn(u16, &[u8]) -> bool + Sync),
    ) -> Result<Head, AttemptError> {
        let redactor = &self.inner.redactor;
        let mut response = http.execute(request).await.map_err(|e| {
            NO_RESPONSE.fetch_add(1, Ordering::Relaxed);
            AttemptError::Retryable(Failure::Transport {
                message: describe(redactor, e),
            })
        })?;
        let status = response.status().as_u16();
        count_response(status);
        let headers = response.headers().clone();
        if is_retryable_status(status) {
            // The body only feeds an excerpt: read a bounded prefix, and a broken one is no worse.
            let body = match self.read_body(&mut response, ERROR_BODY_READ).await {
                Ok(body) | Err(BodyError::TooLarge(body)) => body,
                Err(BodyError::Read(_)) => Bytes::new(),
            };
            if is_final(status, &body) {
                return Ok(Head::Whole(status, headers, body));
            }
            let body = excerpt(&redactor.redact(&String::from_utf8_lossy(&body)));
            let retry_after = retry_after(&headers, SystemTime::now());
            return Err(AttemptError::Retryable(Failure::Status {
                status,
                body,
                retry_after,
            }));
        }
        if stream {
            return Ok(Head::Stream(response));
        }
        let too_large = || {
            AttemptError::Fatal(HttpError::BodyTooLarge {
                what: what.to_string(),
                url: url.to_string(),
                limit: self.inner.cfg.max_body,
            })
        };
        if response
            .content_length()
            .is_some_and(|len| len > self.inner.cfg.max_body)
        {
            return Err(too_large());
        }
        match self.read_body(&mut response, self.inner.cfg.max_body).await {
            Ok(body) => Ok(Head::Whole(status, headers, body)),
            Err(BodyError::TooLarge(_)) => Err(too_large()),
            Err(BodyError::Read(e)) => Err(AttemptError::Retryable(Failure::Transport {
                message: format!("reading the response body (HTTP {status}): {}", describe(redactor, e)),
            })),
        }
    }

    /// Reads the body up to `limit` bytes, counting what arrives.
    async fn read_body(&self, response: &mut reqwest::Response, limit: u64) -> Result<Bytes, BodyError> {
        let mut chunks: Vec<Bytes> = Vec::new();
        let mut len = 0u64;
        while let Some(chunk) = response.chunk().await.map_err(BodyError::Read)? {
            self.inner.bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            len += chunk.len() as u64;
            chunks.push(chunk);
            if len > limit {
                let mut kept = concat(chunks, len);
                // The part within the limit, for an excerpt.
                kept.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
                return Err(BodyError::TooLarge(kept));
            }
        }
        Ok(concat(chunks, len))
    }

    /// A `Status` error for a response the caller rejects (a 4xx with a vendor error code), with
    /// the same redacted excerpt as a retried status.
    pub fn status_error(&self, what: &str, response: &Response) -> HttpError {
        HttpError::Status {
            what: what.to_string(),
            url: response.url.clone(),
            status: response.status,
            body: excerpt(&self.inner.redactor.redact(&String::from_utf8_lossy(&response.body))),
            attempts: response.attempts,
        }
    }
}

/// Whether a URL's `host` (lower case; an IPv6 address in brackets, as URLs write it) and
/// port match an allow-list entry: `host` (any port), `host:port` (that port only), each with
/// `*.example.com` for any subdomain of `example.com`; `[::1]` and `[::1]:8080` for IPv6.
fn entry_matches(entry: &str, host: &str, port: Option<u16>) -> bool {
    let (pattern, want_port) = split_port(entry);
    host_matches(pattern, host) && want_port.is_none_or(|p| Some(p) == port)
}

/// `host:port` into its parts; an entry without a (numeric) port is all host.
fn split_port(entry: &str) -> (&str, Option<u16>) {
    let split = match entry.rfind(':') {
        // `[::1]` alone, or a bare IPv6 address (which only matches nothing: URLs bracket it).
        Some(i) if entry.starts_with('[') && !entry[..i].ends_with(']') => None,
        Some(i) if !entry.starts_with('[') && entry[..i].contains(':') => None,
        Some(i) => entry[i + 1..].parse::<u16>().ok().map(|p| (&entry[..i], p)),
        None => None,
    };
    match split {
        Some((host, port)) => (host, Some(port)),
        None => (entry, None),
    }
}

/// Whether `host` (lower case) matches a host pattern: the same name, or any subdomain of
/// `example.com` for `*.example.com`.
fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .strip_suffix(suffix)
            .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
        None => pattern == host,
    }
}

/// One buffer from the chunks of a body; a single chunk is kept as it came (no copy).
fn concat(mut chunks: Vec<Bytes>, len: u64) -> Bytes {
    if chunks.len() == 1 {
        return chunks.pop().unwrap_or_default();
    }
    let mut buf = BytesMut::with_capacity(usize::try_from(len).unwrap_or(0));
    for chunk in chunks {
        buf.extend_from_slice(&chunk);
    }
    buf.freeze()
}

enum BodyError {
    /// Over the limit; holds the part within it.
    TooLarge(Bytes),
    Read(reqwest::Error),
}

/// A reqwest error as text: its kind and cause chain, without the URL (which may carry
/// credentials; callers show the redacted URL themselves), then redacted.
fn describe(redactor: &Redactor, e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "response body broken off"
    } else if e.is_builder() {
        "invalid request"
    } else {
        "request failed"
    };
    let e = e.without_url();
    let mut text = format!("{kind}: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        let s_text = s.to_string();
        // hyper and reqwest often repeat the inner message in the outer one.
        if !text.ends_with(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    redactor.redact(&text)
}
