//! Which units are done. The store keeps one small record per finished unit, so that several
//! workers never write the same state object.

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use tokio_util::sync::CancellationToken;

use crate::error::StageError;
use crate::stage::CommitReport;
use crate::unit::Unit;

/// The state record of one committed unit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitRecord {
    pub unit: Unit,
    pub committed_at: DateTime<Utc>,
    pub report: CommitReport,
}

impl UnitRecord {
    /// Done for good: a rerun skips it. A provisional record is fetched again.
    pub fn is_final(&self) -> bool {
        !self.unit.provisional
    }
}

/// Persistent knowledge of committed units.
pub trait StateStore: Send + Sync + 'static {
    /// Every unit record, by unit id.
    fn load(&self) -> BoxFuture<'_, Result<BTreeMap<String, UnitRecord>, StageError>>;
    /// Records a committed unit. Called only after the sink's commit returned.
    fn mark_done<'a>(&'a self, record: &'a UnitRecord) -> BoxFuture<'a, Result<(), StageError>>;

    /// The progress a source saved for an unfinished unit (an export job's id and parameters),
    /// so that a rerun resumes it instead of starting a duplicate. `None` when there is none.
    fn load_checkpoint<'a>(&'a self, unit_id: &'a str) -> BoxFuture<'a, Result<Option<serde_json::Value>, StageError>>;
    /// Replaces the unit's checkpoint; durable when it returns.
    fn save_checkpoint<'a>(
        &'a self,
        unit_id: &'a str,
        value: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<(), StageError>>;
    /// Forgets the unit's checkpoint (after it committed, or when its job is gone).
    fn clear_checkpoint<'a>(&'a self, unit_id: &'a str) -> BoxFuture<'a, Result<(), StageError>>;

    /// Forgets that `unit_id` is done (`etl state forget`), so that the next run fetches it
    /// again. Its committed files stay visible until that run replaces them: the unit's file
    /// names are fixed by its id, so the reload rewrites rather than adds. Returns whether there
    /// was a record.
    fn forget<'a>(&'a self, unit_id: &'a str) -> BoxFuture<'a, Result<bool, StageError>>;

    /// Takes the exclusive right to write `unit`, so that two workers running the same pipeline
    /// (a CronJob started twice, a retried pod) never write one unit at the same time. Waits
    /// while another live worker holds it; a holder that died is taken over. When the unit turns
    /// out to be committed by another worker since `since` (or for good), returns
    /// [`Claim::CommittedElsewhere`] and holds nothing. A store shared with no one (memory)
    /// needs no claim: the default grants it at once.
    fn claim<'a>(&'a self, unit: &'a Unit, since: DateTime<Utc>) -> BoxFuture<'a, Result<Claim, StageError>> {
        let _ = (unit, since);
        Box::pin(async { Ok(Claim::Held(Box::new(Unshared::default()))) })
    }
}

/// The answer to [`StateStore::claim`].
pub enum Claim {
    /// This worker may write the unit until it releases the lease.
    Held(Box<dyn Lease>),
    /// Another worker committed the unit meanwhile: nothing to do.
    CommittedElsewhere(UnitRecord),
}

impl std::fmt::Debug for Claim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Claim::Held(_) => f.write_str("Claim::Held"),
            Claim::CommittedElsewhere(r) => write!(f, "Claim::CommittedElsewhere({})", r.unit.id),
        }
    }
}

/// A held claim on one unit. Kept alive (renewed) in the background until released.
pub trait Lease: Send + Sync {
    /// Cancelled if the claim was lost (another worker took it over, or it could not be
    /// renewed before it expired): the unit must then stop without committing.
    fn lost(&self) -> CancellationToken;
    /// Gives the claim up (after commit or abort). Best effort: a claim left behind expires.
    fn release(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// The lease of a store no other worker shares: never lost, nothing to release.
#[derive(Debug, Default)]
pub struct Unshared(CancellationToken);

impl Lease for Unshared {
    fn lost(&self) -> CancellationToken {
        self.0.clone()
    }
    fn release(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

/// The checkpoint of one unit, handed to its source through [`crate::PayloadSender`]:
/// a source that starts server-side work (an export job) records it here before waiting on it.
#[derive(Clone)]
pub struct Checkpoint {
    store: std::sync::Arc<dyn StateStore>,
    unit_id: String,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint").field("unit_id", &self.unit_id).finish()
    }
}

impl Checkpoint {
    pub fn new(store: std::sync::Arc<dyn StateStore>, unit_id: impl Into<String>) -> Self {
        Self {
            store,
            unit_id: unit_id.into(),
        }
    }

    /// The saved value, if any, deserialized; a value of another shape counts as none.
    pub async fn load<T: serde::de::DeserializeOwned>(&self) -> Result<Option<T>, StageError> {
        let value = self.store.load_checkpoint(&self.unit_id).await?;
        Ok(value.and_then(|v| serde_json::from_value(v).ok()))
    }

    pub async fn save<T: Serialize>(&self, value: &T) -> Result<(), StageError> {
        let value = serde_json::to_value(value).map_err(StageError::internal)?;
        self.store.save_checkpoint(&self.unit_id, &value).await
    }

    pub async fn clear(&self) -> Result<(), StageError> {
        self.store.clear_checkpoint(&self.unit_id).await
    }
}

/// A state store in memory, for tests and for `etl preview`.
#[derive(Debug, Default)]
pub struct MemoryState {
    records: Mutex<BTreeMap<String, UnitRecord>>,
    checkpoints: Mutex<BTreeMap<String, serde_json::Value>>,
}

impl StateStore for MemoryState {
    fn load(&self) -> BoxFuture<'_, Result<BTreeMap<String, UnitRecord>, StageError>> {
        let r = self.records.lock().expect("state lock").clone();
        Box::pin(async move { Ok(r) })
    }
    fn mark_done<'a>(&'a self, record: &'a UnitRecord) -> BoxFuture<'a, Result<(), StageError>> {
        self.records
            .lock()
            .expect("state lock")
            .insert(record.unit.id.clone(), record.clone());
        Box::pin(async { Ok(()) })
    }
    fn load_checkpoint<'a>(&'a self, unit_id: &'a str) -> BoxFuture<'a, Result<Option<serde_json::Value>, StageError>> {
        let v = self.checkpoints.lock().expect("state lock").get(unit_id).cloned();
        Box::pin(async move { Ok(v) })
    }
    fn save_checkpoint<'a>(
        &'a self,
        unit_id: &'a str,
        value: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<(), StageError>> {
        self.checkpoints
            .lock()
            .expect("state lock")
            .insert(unit_id.to_string(), value.clone());
        Box::pin(async { Ok(()) })
    }
    fn clear_checkpoint<'a>(&'a self, unit_id: &'a str) -> BoxFuture<'a, Result<(), StageError>> {
        self.checkpoints.lock().expect("state lock").remove(unit_id);
        Box::pin(async { Ok(()) })
    }
    fn forget<'a>(&'a self, unit_id: &'a str) -> BoxFuture<'a, Result<bool, StageError>> {
        let had = self.records.lock().expect("state lock").remove(unit_id).is_some();
        self.checkpoints.lock().expect("state lock").remove(unit_id);
        Box::pin(async move { Ok(had) })
    }
}
