//! Error classes shared by every stage.
//!
//! Each library crate keeps its own `thiserror` enum; at the stage boundary an error becomes a
//! [`StageError`] that carries its [`ErrorClass`], because the runner and the binary only need to
//! know one thing about a failure: can a later run overcome it (exit 3) or not (exit 4)?
//!
//! One failure is neither: the server refused a continuation token in the middle of a unit (it
//! expired, or the server lost the cursor). Repeating that request cannot help, yet the unit's
//! data is still there, from its first page. [`StageError::restart_unit`] asks the runner to
//! discard what the attempt wrote and fetch the unit again from scratch; the error is retryable,
//! so when the runner has no restarts left it is reported as such.

use std::fmt;

use crate::stage::FetchStats;

/// How a failure should be treated by the runner, the exit code and a scheduler.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// A later run can succeed: network errors after retries, 5xx, 429, a truncated body.
    Retryable,
    /// Nothing changes by retrying: bad credentials, a rejected request, a schema violation.
    Permanent,
    /// A bug or an environment problem of our own (disk full, a panic).
    Internal,
    /// The run was interrupted (SIGINT/SIGTERM); the unit will be redone by the next run.
    Cancelled,
}

/// An error at a stage boundary: a class plus the underlying error with its context chain.
pub struct StageError {
    class: ErrorClass,
    context: Vec<String>,
    inner: Box<dyn std::error::Error + Send + Sync + 'static>,
    /// Set by [`StageError::restart_unit`]: what the abandoned attempt had fetched.
    restart: Option<FetchStats>,
}

impl StageError {
    pub fn new(class: ErrorClass, err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self {
            class,
            context: Vec::new(),
            inner: err.into(),
            restart: None,
        }
    }
    pub fn retryable(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::new(ErrorClass::Retryable, err)
    }
    pub fn permanent(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::new(ErrorClass::Permanent, err)
    }
    pub fn internal(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::new(ErrorClass::Internal, err)
    }
    pub fn cancelled() -> Self {
        Self::new(ErrorClass::Cancelled, "interrupted")
    }
    /// The unit must be fetched again from its first page: the server refused to continue it
    /// (a continuation token rejected mid-window). `fetched` is what this attempt had fetched
    /// before (the runner adds it to the unit's counters). The runner aborts the unit's writer
    /// and runs the unit again, a bounded number of times; the error is retryable, which is
    /// how it is reported once the runner gives up.
    pub fn restart_unit(err: impl Into<Box<dyn std::error::Error + Send + Sync>>, fetched: FetchStats) -> Self {
        Self {
            restart: Some(fetched),
            ..Self::retryable(err)
        }
    }
    /// For an error made by [`StageError::restart_unit`], adds `more` to what the abandoned attempt
    /// fetched (the other parts of the attempt, when the unit was fetched in several); other
    /// errors are returned unchanged.
    pub fn add_restart_fetched(mut self, more: &FetchStats) -> Self {
        if let Some(f) = &mut self.restart {
            f.requests += more.requests;
            f.retries += more.retries;
            f.bytes += more.bytes;
            f.payloads += more.payloads;
        }
        self
    }
    /// For an error made by [`StageError::restart_unit`]: what the abandoned attempt fetched.
    pub fn restart_requested(&self) -> Option<&FetchStats> {
        self.restart.as_ref()
    }
    pub fn class(&self) -> ErrorClass {
        self.class
    }
    /// Adds what the caller was doing, outermost last; shown as `outer: inner: cause`.
    pub fn context(mut self, ctx: impl fmt::Display) -> Self {
        self.context.push(ctx.to_string());
        self
    }
}

impl fmt::Display for StageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.context.iter().rev() {
            write!(f, "{c}: ")?;
        }
        write!(f, "{}", self.inner)?;
        let mut src = self.inner.source();
        while let Some(s) = src {
            write!(f, ": {s}")?;
            src = s.source();
        }
        Ok(())
    }
}

impl fmt::Debug for StageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StageError({:?}, {self})", self.class)
    }
}

impl std::error::Error for StageError {}

/// What a decoder reports. Positions are 1-based lines within the payload.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// One record does not parse; under `on_bad_record: skip` it is counted instead.
    #[error("line {line}: {reason}: {excerpt:?}")]
    BadRecord { line: u64, reason: String, excerpt: String },
    /// The container around the records is broken (XML not well formed, truncated gzip...).
    #[error("malformed {what} near line {line}: {reason}")]
    Malformed {
        what: &'static str,
        line: u64,
        reason: String,
    },
    /// Building the Arrow arrays failed (a bug: the schema is ours).
    #[error("building record batch: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
}

impl From<DecodeError> for StageError {
    fn from(e: DecodeError) -> Self {
        let class = match e {
            // A malformed page may be a transfer fault: a later run refetches it.
            DecodeError::Malformed { .. } => ErrorClass::Retryable,
            DecodeError::BadRecord { .. } => ErrorClass::Permanent,
            DecodeError::Arrow(_) => ErrorClass::Internal,
        };
        StageError::new(class, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_shows_context_outermost_first() {
        let e = StageError::retryable("connection reset")
            .context("page 3")
            .context("unit mail_delivery-2025-09-11");
        assert_eq!(e.to_string(), "unit mail_delivery-2025-09-11: page 3: connection reset");
        assert_eq!(e.class(), ErrorClass::Retryable);
    }

    #[test]
    fn a_restart_request_is_retryable_and_survives_context() {
        let fetched = FetchStats {
            requests: 3,
            payloads: 2,
            ..Default::default()
        };
        let e = StageError::restart_unit("token rejected", fetched.clone()).context("page 3");
        assert_eq!(e.class(), ErrorClass::Retryable);
        assert_eq!(e.restart_requested(), Some(&fetched));
        assert_eq!(e.to_string(), "page 3: token rejected");
        assert_eq!(StageError::retryable("reset").restart_requested(), None);
    }

    #[test]
    fn decode_error_classes() {
        let bad: StageError = DecodeError::BadRecord {
            line: 3,
            reason: "x".into(),
            excerpt: "y".into(),
        }
        .into();
        assert_eq!(bad.class(), ErrorClass::Permanent);
        let mal: StageError = DecodeError::Malformed {
            what: "XML",
            line: 1,
            reason: "eof".into(),
        }
        .into();
        assert_eq!(mal.class(), ErrorClass::Retryable);
    }
}
