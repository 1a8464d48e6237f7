//! The one HTTP client of every source: timeouts, retries that honour `Retry-After`, and
//! redaction of every secret in logs and errors.
//!
//! Vendor APIs fail in the same few ways: connections reset, a 503 under load, a 429 with
//! `Retry-After`, a body cut short, a server that stops sending. Handling that once, here, means a
//! source only decides what to send and how to read the answer:
//!
//! ```text
//!   source ──build──► Client::send ──► attempt ──► 2xx / other 4xx ──► Ok(Response)
//!                          ▲              │
//!                          │              ├─ connect error, timeout, truncated body,
//!                          │              │  408, 429, 5xx ──► decide(): budget left?
//!                          └── sleep ◄────┘     yes: sleep max(full jitter, Retry-After)
//!                                               no:  Err(HttpError::Status / Transport)
//! ```
//!
//! - Connect and read (stall) timeouts are set; there is no total timeout, because a download
//!   that keeps moving may take long.
//! - Redirects are not followed: a redirect to another host would carry the API credentials, so
//!   the source decides what to do with a 3xx.
//! - Every URL, body excerpt and error message in a log line or an [`HttpError`] went through the
//!   [`Redactor`]: secrets (raw and URL-encoded), credential-looking query parameters
//!   (`sign`, `expire`, `token`, `X-Amz-*`...) and userinfo passwords become `***`, and so do
//!   secrets a source [learns](Redactor::learn) while running (the token in the path of a
//!   pre-signed download URL).
//! - A download client ([`Client::for_downloads`]) reaches only the hosts (or `host:port`s) it
//!   is given: any other is refused before a connection is opened.
//!
//! ```no_run
//! # async fn example() -> Result<(), etl_http::HttpError> {
//! use etl_core::Secret;
//! use etl_http::{Client, HttpConfig, Redactor};
//!
//! let token = Secret::new("from the pipeline file");
//! let client = Client::new(HttpConfig::default(), Redactor::new([token.clone()]))?;
//! let page = client
//!     .send("mail delivery page 1", |http| {
//!         http.post("https://api.example.com/deliverylog")
//!             .header("X-Auth-Token", token.expose())
//!             .form(&[("StartDate", "2025-09-11T00:00"), ("EndDate", "2025-09-11T23:59")])
//!     })
//!     .await?;
//! if !page.is_success() {
//!     return Err(client.status_error("mail delivery page 1", &page));
//! }
//! # Ok(()) }
//! ```

mod budget;
mod client;
mod error;
mod redact;
mod retry;

pub use budget::{BudgetStats, RateBudget, RateLimit, rate_limit_waits, time_for};
pub use client::{Client, HttpConfig, Response, Stats, Streaming, responses_by_status};
pub use error::{HttpError, MAX_BODY_EXCERPT, is_retryable_status};
pub use redact::{MASK, MIN_LEARNED, Redactor, is_sensitive_param};

/// Re-exported so that sources build requests without depending on reqwest themselves.
pub use reqwest;

#[cfg(test)]
mod mock_server;
#[cfg(test)]
mod tests;
