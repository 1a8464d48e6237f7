//! Unit state kept beside the data, in the same store.
//!
//! One JSON object per unit (`_etl/state/<unit_id>.json`) rather than one shared file: two
//! workers finishing different units never write the same object, so no locking or
//! read-modify-write race is needed, and the state moves with the dataset when it is copied.
//! Claims (`_etl/claims/`, see the `claim` module) keep two workers off the same unit.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use etl_core::{Claim, StageError, StateStore, Unit, UnitRecord};
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStore;
use object_store::path::Path;

use crate::claim::{self, Identity};
use crate::error::SinkError;
use crate::layout::{self, MetaKind};
use crate::manifest::{delete_if_exists, get_json, put_json};

/// How many state objects [`ObjectStoreState::load`] reads at once.
const LOAD_CONCURRENCY: usize = 16;

/// A [`StateStore`] on an object store: `<root>/_etl/state/<unit_id>.json`, one serialized
/// [`UnitRecord`] each.
#[derive(Clone, Debug)]
pub struct ObjectStoreState {
    store: Arc<dyn ObjectStore>,
    root: Path,
    identity: Identity,
}

impl ObjectStoreState {
    /// The state of the dataset at `root` in `store`.
    pub fn new(store: Arc<dyn ObjectStore>, root: Path) -> Self {
        Self {
            store,
            root,
            identity: Identity::current(),
        }
    }

    async fn load_all(&self) -> Result<BTreeMap<String, UnitRecord>, SinkError> {
        let dir = layout::meta_dir(&self.root, MetaKind::State);
        let objects: Vec<Path> = self
            .store
            .list(Some(&dir))
            .map_err(|e| SinkError::store("listing unit state under", &dir, e))
            .try_filter_map(
                |meta| async move { Ok((meta.location.extension() == Some("json")).then_some(meta.location)) },
            )
            .try_collect()
            .await?;
        let store = Arc::clone(&self.store);
        let records: Vec<Option<UnitRecord>> = futures::stream::iter(objects)
            .map(|location| {
                let store = Arc::clone(&store);
                async move { get_json::<UnitRecord>(store.as_ref(), &location, "reading unit state").await }
            })
            .buffer_unordered(LOAD_CONCURRENCY)
            .try_collect()
            .await?;
        // An object listed and then deleted by a concurrent rewrite is simply not there any more.
        Ok(records.into_iter().flatten().map(|r| (r.unit.id.clone(), r)).collect())
    }

    async fn store_record(&self, record: &UnitRecord) -> Result<(), SinkError> {
        layout::check_unit_id(&record.unit.id)?;
        let location = layout::meta_object(&self.root, MetaKind::State, &record.unit.id);
        put_json(self.store.as_ref(), &location, record, "writing unit state").await
    }
}

impl StateStore for ObjectStoreState {
    fn load(&self) -> BoxFuture<'_, Result<BTreeMap<String, UnitRecord>, StageError>> {
        Box::pin(async move { self.load_all().await.map_err(StageError::from) })
    }

    fn mark_done<'a>(&'a self, record: &'a UnitRecord) -> BoxFuture<'a, Result<(), StageError>> {
        Box::pin(async move { self.store_record(record).await.map_err(StageError::from) })
    }

    fn load_checkpoint<'a>(&'a self, unit_id: &'a str) -> BoxFuture<'a, Result<Option<serde_json::Value>, StageError>> {
        Box::pin(async move {
            layout::check_unit_id(unit_id)?;
            let location = layout::meta_object(&self.root, MetaKind::Checkpoints, unit_id);
            Ok(get_json(self.store.as_ref(), &location, "reading a unit checkpoint").await?)
        })
    }

    fn save_checkpoint<'a>(
        &'a self,
        unit_id: &'a str,
        value: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<(), StageError>> {
        Box::pin(async move {
            layout::check_unit_id(unit_id)?;
            let location = layout::meta_object(&self.root, MetaKind::Checkpoints, unit_id);
            Ok(put_json(self.store.as_ref(), &location, value, "writing a unit checkpoint").await?)
        })
    }

    fn clear_checkpoint<'a>(&'a self, unit_id: &'a str) -> BoxFuture<'a, Result<(), StageError>> {
        Box::pin(async move {
            layout::check_unit_id(unit_id)?;
            let location = layout::meta_object(&self.root, MetaKind::Checkpoints, unit_id);
            Ok(delete_if_exists(self.store.as_ref(), &location, "deleting a unit checkpoint").await?)
        })
    }

    fn forget<'a>(&'a self, unit_id: &'a str) -> BoxFuture<'a, Result<bool, StageError>> {
        Box::pin(async move {
            layout::check_unit_id(unit_id)?;
            let state = layout::meta_object(&self.root, MetaKind::State, unit_id);
            let had = get_json::<UnitRecord>(self.store.as_ref(), &state, "reading unit state")
                .await?
                .is_some();
            delete_if_exists(self.store.as_ref(), &state, "deleting unit state").await?;
            let checkpoint = layout::meta_object(&self.root, MetaKind::Checkpoints, unit_id);
            delete_if_exists(self.store.as_ref(), &checkpoint, "deleting a unit checkpoint").await?;
            Ok(had)
        })
    }

    fn claim<'a>(&'a self, unit: &'a Unit, since: DateTime<Utc>) -> BoxFuture<'a, Result<Claim, StageError>> {
        Box::pin(
            async move { Ok(claim::acquire(Arc::clone(&self.store), &self.root, &self.identity, unit, since).await?) },
        )
    }
}
