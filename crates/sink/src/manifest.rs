//! The sink's small bookkeeping objects: intents, manifests, and the JSON helpers they share.
//!
//! An *intent* is written before any byte of a data file, so that whatever an interrupted
//! attempt left behind can be found and removed by the next attempt. A *manifest* is written
//! once a unit's files are complete: it is how a later rewrite of the same unit knows which of
//! the old files to remove, and how an analyst can check what a unit committed.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use etl_core::Unit;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::SinkError;

/// One committed data file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// Relative to the dataset root (`dt=2025-09-11/mail_delivery-2025-09-11-0000.parquet`).
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
}

/// What a committed unit wrote: `_etl/manifests/<unit_id>.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub unit: Unit,
    /// In the order the files were opened.
    pub files: Vec<ManifestFile>,
    pub rows: u64,
    pub committed_at: DateTime<Utc>,
}

/// The files an unfinished attempt of a unit may have written: `_etl/intents/<unit_id>.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Intent {
    pub unit: String,
    /// Relative to the dataset root, every file the attempt opened so far.
    pub files: Vec<String>,
}

/// Reads and parses a JSON object; `None` when it does not exist.
pub(crate) async fn get_json<T: DeserializeOwned>(
    store: &dyn ObjectStore,
    location: &Path,
    what: &'static str,
) -> Result<Option<T>, SinkError> {
    let Some(bytes) = get_bytes(store, location, what).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| SinkError::Json {
            what,
            path: location.to_string(),
            source,
        })
}

/// Reads and parses a JSON object with the version it was read at (for a conditional
/// replacement); `None` when it does not exist.
pub(crate) async fn get_json_versioned<T: DeserializeOwned>(
    store: &dyn ObjectStore,
    location: &Path,
    what: &'static str,
) -> Result<Option<(T, UpdateVersion)>, SinkError> {
    let result = match store.get(location).await {
        Ok(r) => r,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(SinkError::store(what, location, e)),
    };
    let version = UpdateVersion {
        e_tag: result.meta.e_tag.clone(),
        version: result.meta.version.clone(),
    };
    let bytes = match result.bytes().await {
        Ok(b) => b,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(SinkError::store(what, location, e)),
    };
    let value = serde_json::from_slice(&bytes).map_err(|source| SinkError::Json {
        what,
        path: location.to_string(),
        source,
    })?;
    Ok(Some((value, version)))
}

/// Writes a JSON object only if the object is still as this attempt last saw it: absent
/// (`expected` is `None`, `If-None-Match: *`) or at the version read (`If-Match`). Another
/// writer having changed it in between is [`SinkError::Conflict`]. A store without conditional
/// updates (local disk) falls back to a plain replace for the `Some` case.
pub(crate) async fn put_json_if<T: Serialize>(
    store: &dyn ObjectStore,
    location: &Path,
    value: &T,
    expected: Option<UpdateVersion>,
    unit: &str,
    what: &'static str,
) -> Result<(), SinkError> {
    let body = serde_json::to_vec_pretty(value).map_err(|source| SinkError::Json {
        what,
        path: location.to_string(),
        source,
    })?;
    let mode = match expected {
        None => PutMode::Create,
        Some(v) => PutMode::Update(v),
    };
    let conditional = PutOptions {
        mode,
        ..Default::default()
    };
    match store
        .put_opts(location, PutPayload::from(body.clone()), conditional)
        .await
    {
        Ok(_) => Ok(()),
        Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
            Err(SinkError::Conflict {
                unit: unit.to_string(),
                path: location.to_string(),
            })
        }
        Err(object_store::Error::NotImplemented { .. }) => put_bytes(store, location, body, what).await,
        Err(e) => Err(SinkError::store(what, location, e)),
    }
}

/// Reads an object whole; `None` when it does not exist.
pub(crate) async fn get_bytes(
    store: &dyn ObjectStore,
    location: &Path,
    what: &'static str,
) -> Result<Option<Bytes>, SinkError> {
    let result = match store.get(location).await {
        Ok(r) => r,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(SinkError::store(what, location, e)),
    };
    result
        .bytes()
        .await
        .map(Some)
        .map_err(|e| SinkError::store(what, location, e))
}

/// Writes a JSON object, replacing any previous version (a single PUT: readers see the old or
/// the new object, never a mix).
pub(crate) async fn put_json<T: Serialize>(
    store: &dyn ObjectStore,
    location: &Path,
    value: &T,
    what: &'static str,
) -> Result<(), SinkError> {
    let body = serde_json::to_vec_pretty(value).map_err(|source| SinkError::Json {
        what,
        path: location.to_string(),
        source,
    })?;
    put_bytes(store, location, body, what).await
}

pub(crate) async fn put_bytes(
    store: &dyn ObjectStore,
    location: &Path,
    body: Vec<u8>,
    what: &'static str,
) -> Result<(), SinkError> {
    store
        .put(location, PutPayload::from(body))
        .await
        .map(|_| ())
        .map_err(|e| SinkError::store(what, location, e))
}

/// Deletes an object; one that is already gone is fine (cleanup is idempotent).
pub(crate) async fn delete_if_exists(
    store: &dyn ObjectStore,
    location: &Path,
    what: &'static str,
) -> Result<(), SinkError> {
    match store.delete(location).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(SinkError::store(what, location, e)),
    }
}
