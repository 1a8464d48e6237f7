//! The sink's errors, and the one place that decides whether a failure is worth another run.
//!
//! The class matters more than the message to the runner: a flaky object store is retried by
//! the next run (`Retryable`), a full local disk is our environment (`Internal`), and a unit the
//! sink refuses (unsafe partition value, wrong time column type, an object that already exists
//! where it must not) will fail again the same way (`Permanent`).

use std::error::Error as StdError;
use std::path::PathBuf;

use etl_core::{ErrorClass, StageError};
use parquet::errors::ParquetError;

/// Everything that can go wrong while writing a dataset.
///
/// Each variant names what the sink was doing and on which object; the underlying error is the
/// [`source`](std::error::Error::source), so a [`StageError`] shows `what path: cause`.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The dataset URL or path cannot be used.
    #[error("dataset location {location:?}: {reason}")]
    Location { location: String, reason: String },
    /// The dataset URL was understood but its object store could not be built.
    #[error("dataset location {location:?}")]
    StoreConfig {
        location: String,
        #[source]
        source: object_store::Error,
    },
    /// An option is out of range.
    #[error("parquet sink options: {0}")]
    Options(String),
    /// Direct access to the local disk (creating the root, removing staged uploads, temporary files).
    #[error("{what} {}", path.display())]
    LocalIo {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An object store request.
    #[error("{what} {path}")]
    Store {
        what: &'static str,
        path: String,
        #[source]
        source: object_store::Error,
    },
    /// Encoding or uploading a Parquet file.
    #[error("{what} {path}")]
    Parquet {
        what: &'static str,
        path: String,
        #[source]
        source: ParquetError,
    },
    /// A bookkeeping object (intent, manifest, state record) that does not parse.
    #[error("{what} {path}")]
    Json {
        what: &'static str,
        path: String,
        #[source]
        source: serde_json::Error,
    },
    /// A bookkeeping object that parses but names something the sink never writes.
    #[error("{what} {path}: {reason}")]
    Corrupt {
        what: &'static str,
        path: String,
        reason: String,
    },
    /// A batch or schema that does not fit the unit's schema.
    #[error("unit {unit}: {reason}")]
    Schema { unit: String, reason: String },
    /// The time column `dt` is derived from is missing, of the wrong type, or null.
    #[error("unit {unit}: time column {column:?}: {reason}")]
    TimeColumn {
        unit: String,
        column: String,
        reason: String,
    },
    /// A unit id or partition key/value that is not a safe single path segment.
    #[error("unit {unit}: {what} {value:?} is not a safe path segment: {reason}")]
    UnsafeSegment {
        unit: String,
        what: &'static str,
        value: String,
        reason: String,
    },
    /// Another worker committed the unit while this attempt was writing it (the manifest's
    /// conditional write lost). This attempt's files share their names with the winner's,
    /// which holds the same records, so nothing is deleted.
    #[error(
        "unit {unit}: another worker committed it while this attempt was writing ({path} changed); this attempt is dropped"
    )]
    Conflict { unit: String, path: String },
    /// Commit was called although a write of the unit had failed (a caller bug).
    #[error("unit {unit}: writing {path} failed earlier; the unit cannot be committed")]
    FailedEarlier { unit: String, path: String },
}

impl SinkError {
    pub(crate) fn store(what: &'static str, path: &object_store::path::Path, source: object_store::Error) -> Self {
        SinkError::Store {
            what,
            path: path.to_string(),
            source,
        }
    }

    pub(crate) fn parquet(what: &'static str, path: &object_store::path::Path, source: ParquetError) -> Self {
        SinkError::Parquet {
            what,
            path: path.to_string(),
            source,
        }
    }

    /// How the runner should treat this failure.
    pub fn class(&self) -> ErrorClass {
        match self {
            SinkError::Location { .. }
            | SinkError::Options(_)
            | SinkError::Corrupt { .. }
            | SinkError::Json { .. }
            | SinkError::Schema { .. }
            | SinkError::TimeColumn { .. }
            | SinkError::UnsafeSegment { .. } => ErrorClass::Permanent,
            SinkError::StoreConfig { source, .. } | SinkError::Store { source, .. } => store_class(source),
            SinkError::LocalIo { .. } | SinkError::FailedEarlier { .. } => ErrorClass::Internal,
            SinkError::Conflict { .. } => ErrorClass::Retryable,
            // Upload failures surface through the parquet writer: classify the store error inside.
            SinkError::Parquet { source, .. } => find_store_error(source).map_or(ErrorClass::Internal, store_class),
        }
    }
}

impl From<SinkError> for StageError {
    fn from(e: SinkError) -> Self {
        StageError::new(e.class(), e)
    }
}

/// Local disk and memory failures are our environment; remote failures (after object_store's
/// own retries) may pass; refusals by the store do not change on their own.
fn store_class(e: &object_store::Error) -> ErrorClass {
    use object_store::Error as E;
    match e {
        E::Generic { store, .. } if matches!(*store, "LocalFileSystem" | "InMemory") => ErrorClass::Internal,
        E::Generic { .. } => ErrorClass::Retryable,
        E::JoinError { .. } => ErrorClass::Internal,
        E::NotFound { .. }
        | E::AlreadyExists { .. }
        | E::Precondition { .. }
        | E::NotModified { .. }
        | E::InvalidPath { .. }
        | E::NotSupported { .. }
        | E::NotImplemented { .. }
        | E::PermissionDenied { .. }
        | E::Unauthenticated { .. }
        | E::UnknownConfigurationKey { .. } => ErrorClass::Permanent,
        _ => ErrorClass::Retryable,
    }
}

/// The object store error an upload failure wraps, if any: the parquet writer boxes it as
/// `External`, sometimes inside the `std::io::Error` of `AsyncWrite::shutdown`.
fn find_store_error<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a object_store::Error> {
    let mut cur: Option<&'a (dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(found) = err.downcast_ref::<object_store::Error>() {
            return Some(found);
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(found) = find_store_error(inner)
        {
            return Some(found);
        }
        if let Some(ParquetError::External(inner)) = err.downcast_ref::<ParquetError>()
            && let Some(found) = find_store_error(inner.as_ref())
        {
            return Some(found);
        }
        cur = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generic(store: &'static str) -> object_store::Error {
        object_store::Error::Generic {
            store,
            source: "connection reset".into(),
        }
    }

    #[test]
    fn classes_follow_the_cause() {
        let p = object_store::path::Path::from("a/b.parquet");
        assert_eq!(
            SinkError::store("writing", &p, generic("S3")).class(),
            ErrorClass::Retryable
        );
        assert_eq!(
            SinkError::store("writing", &p, generic("LocalFileSystem")).class(),
            ErrorClass::Internal
        );
        let exists = object_store::Error::AlreadyExists {
            path: "a".into(),
            source: "exists".into(),
        };
        assert_eq!(SinkError::store("writing", &p, exists).class(), ErrorClass::Permanent);
        let pre = object_store::Error::Precondition {
            path: "a".into(),
            source: "etag".into(),
        };
        let e: StageError = SinkError::store("writing", &p, pre).into();
        assert_eq!(e.class(), ErrorClass::Permanent);
        let io = SinkError::LocalIo {
            what: "removing",
            path: "/x".into(),
            source: std::io::Error::other("disk full"),
        };
        assert_eq!(io.class(), ErrorClass::Internal);
    }

    #[test]
    fn upload_errors_inside_parquet_errors_are_classified_by_the_store() {
        let p = object_store::path::Path::from("a/b.parquet");
        let io: std::io::Error = generic("S3").into();
        let wrapped = ParquetError::External(Box::new(io));
        assert_eq!(
            SinkError::parquet("closing", &p, wrapped).class(),
            ErrorClass::Retryable
        );
        let direct = ParquetError::External(Box::new(generic("S3")));
        assert_eq!(SinkError::parquet("writing", &p, direct).class(), ErrorClass::Retryable);
        let encode = ParquetError::General("bad".into());
        assert_eq!(SinkError::parquet("writing", &p, encode).class(), ErrorClass::Internal);
    }

    #[test]
    fn stage_error_names_the_object_and_the_cause() {
        let p = object_store::path::Path::from("dt=2025-09-11/u-0000.parquet");
        let e: StageError = SinkError::store("uploading", &p, generic("S3")).into();
        let text = e.to_string();
        assert!(text.starts_with("uploading dt=2025-09-11/u-0000.parquet: "), "{text}");
        assert!(text.contains("connection reset"), "{text}");
    }
}
