//! Which units are done. The store keeps one small record per finished unit, so that several
//! workers never write the same state object.

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

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
}

/// A state store in memory, for tests and for `etl preview`.
#[derive(Debug, Default)]
pub struct MemoryState {
    records: Mutex<BTreeMap<String, UnitRecord>>,
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
}
