//! What a request can end with, once retries are spent, and how the runner should treat it.
//!
//! Every string in these errors has been through the client's [`crate::Redactor`]: URLs are
//! redacted URLs, bodies are redacted excerpts, transport messages are built from the error chain
//! without the URL. So an `HttpError` can be logged, shown and written to a report as it is.

use etl_core::{ErrorClass, StageError};

/// Longest excerpt of a response body kept in an error, in characters.
pub const MAX_BODY_EXCERPT: usize = 512;

/// A request that failed for good.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The server kept answering with a retryable status (429, 5xx) until the budget was spent,
    /// or a caller turned a rejected response into an error ([`crate::Client::status_error`]).
    #[error("{what}: HTTP {status} from {url} after {attempts} attempt(s){}", excerpt_suffix(.body))]
    Status {
        what: String,
        url: String,
        status: u16,
        body: String,
        attempts: u32,
    },
    /// Connecting, sending or reading failed (refused, reset, timed out, truncated body) on the
    /// last attempt.
    #[error("{what}: request to {url} failed after {attempts} attempt(s): {message}")]
    Transport {
        what: String,
        url: String,
        message: String,
        attempts: u32,
    },
    /// The response body is larger than [`crate::HttpConfig::max_body`]; not retried.
    #[error("{what}: the response from {url} is larger than the limit of {limit} bytes")]
    BodyTooLarge { what: String, url: String, limit: u64 },
    /// The URL points at a host the pipeline does not allow (`download_hosts`); not sent.
    #[error(
        "{what}: refusing to send a request to {url}: host `{host}` is not in the allowed hosts ({allowed}); \
         add it to the source's `download_hosts` if it is the vendor's download host"
    )]
    HostNotAllowed {
        what: String,
        url: String,
        host: String,
        allowed: String,
    },
    /// The request could not be built (an invalid URL or header); a bug or a bad configuration.
    #[error("cannot build the HTTP request: {message}")]
    Build { message: String },
}

fn excerpt_suffix(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(": {body}")
    }
}

/// Whether a status is worth another attempt: 408 (request timeout), 429 (rate limited) and
/// every 5xx.
pub fn is_retryable_status(status: u16) -> bool {
    status == 408 || status == 429 || (500..600).contains(&status)
}

impl HttpError {
    /// Retryable: a later run can succeed (429/5xx, network trouble). Permanent: it cannot (a
    /// rejected request, an oversized body, a request that cannot be built).
    pub fn class(&self) -> ErrorClass {
        match self {
            HttpError::Status { status, .. } if is_retryable_status(*status) => ErrorClass::Retryable,
            HttpError::Status { .. } => ErrorClass::Permanent,
            HttpError::Transport { .. } => ErrorClass::Retryable,
            HttpError::BodyTooLarge { .. } | HttpError::Build { .. } | HttpError::HostNotAllowed { .. } => {
                ErrorClass::Permanent
            }
        }
    }

    /// The HTTP status, for a `Status` error.
    pub fn status(&self) -> Option<u16> {
        match self {
            HttpError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl From<HttpError> for StageError {
    fn from(e: HttpError) -> Self {
        StageError::new(e.class(), e)
    }
}

/// An already redacted body, trimmed and cut to at most [`MAX_BODY_EXCERPT`] characters
/// (ending in `...` when cut).
pub(crate) fn excerpt(redacted: &str) -> String {
    let trimmed = redacted.trim();
    if trimmed.chars().nth(MAX_BODY_EXCERPT).is_none() {
        return trimmed.to_string();
    }
    let cut = trimmed
        .char_indices()
        .nth(MAX_BODY_EXCERPT - 3)
        .map_or(trimmed.len(), |(i, _)| i);
    format!("{}...", &trimmed[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16) -> HttpError {
        HttpError::Status {
            what: "list".into(),
            url: "https://h/x".into(),
            status,
            body: String::new(),
            attempts: 1,
        }
    }

    #[test]
    fn classes() {
        assert_eq!(status(429).class(), ErrorClass::Retryable);
        assert_eq!(status(503).class(), ErrorClass::Retryable);
        assert_eq!(status(401).class(), ErrorClass::Permanent);
        let t = HttpError::Transport {
            what: "w".into(),
            url: "u".into(),
            message: "reset".into(),
            attempts: 3,
        };
        assert_eq!(t.class(), ErrorClass::Retryable);
        let big = HttpError::BodyTooLarge {
            what: "w".into(),
            url: "u".into(),
            limit: 10,
        };
        assert_eq!(big.class(), ErrorClass::Permanent);
        assert_eq!(HttpError::Build { message: "m".into() }.class(), ErrorClass::Permanent);
        let stage: StageError = status(500).into();
        assert_eq!(stage.class(), ErrorClass::Retryable);
        assert_eq!(stage.to_string(), "list: HTTP 500 from https://h/x after 1 attempt(s)");
    }

    #[test]
    fn display_names_what_url_and_cause() {
        let e = HttpError::Status {
            what: "mail delivery page 2".into(),
            url: "https://h/api".into(),
            status: 503,
            body: "busy".into(),
            attempts: 8,
        };
        assert_eq!(
            e.to_string(),
            "mail delivery page 2: HTTP 503 from https://h/api after 8 attempt(s): busy"
        );
        let t = HttpError::Transport {
            what: "w".into(),
            url: "https://h/".into(),
            message: "timed out".into(),
            attempts: 2,
        };
        assert_eq!(
            t.to_string(),
            "w: request to https://h/ failed after 2 attempt(s): timed out"
        );
    }

    #[test]
    fn excerpts_are_bounded() {
        let long = "é".repeat(600);
        let e = excerpt(&long);
        assert_eq!(e.chars().count(), MAX_BODY_EXCERPT);
        assert!(e.ends_with("é..."));
        assert_eq!(excerpt(&"x".repeat(512)).len(), 512);
        assert_eq!(excerpt("  short\n"), "short");
    }
}
