//! Parquet datasets on object storage, written so that every unit lands exactly once.
//!
//! The sink is where "exactly once" is decided: sources may be retried, runs may crash, a day
//! may be fetched again while it is still open, and yet a query over `**/*.parquet` must see
//! each record of a committed unit once. That takes deterministic file names per unit, files
//! that appear only complete, an intent recorded before writing, and a manifest written only
//! when every file is durable.
//!
//! The layout is plain hive partitioning that DuckDB, Spark and others read as is:
//!
//! ```text
//! <root>/<k1=v1>/.../dt=YYYY-MM-DD/<unit_id>-<part:04>.parquet   data (zstd, no partition columns inside)
//! <root>/_etl/intents/<unit_id>.json                               files an unfinished attempt may have written
//! <root>/_etl/manifests/<unit_id>.json                             what the last commit of the unit wrote
//! <root>/_etl/dead_letter/<unit_id>.jsonl                          records skipped under `on_bad_record: skip`
//! <root>/_etl/state/<unit_id>.json                                 done units (ObjectStoreState)
//! ```
//!
//! # How a unit becomes visible exactly once
//! File names are derived from the unit id and a part number only, so a rewrite of a unit
//! lands on the same names instead of adding files. A file is assembled in an anonymous
//! temporary file (its row group's pages wait in another: see `spill.rs`, which is why memory
//! does not grow with the row group size) and uploaded when it is complete, through an
//! [`object_store::buffered::BufWriter`]: a small file is one PUT, a large one a multipart
//! upload (on local disk: a staged `<file>#<n>` renamed into place), so no reader ever sees a
//! partial `*.parquet`.
//!
//! Before a file receives its first byte, the unit's *intent* (`_etl/intents/<unit>.json`)
//! lists it. The next attempt of the unit deletes whatever an intent lists, plus local staging
//! leftovers, before writing anything. Commit closes every file, deletes the files of the
//! unit's previous commit that the new one did not rewrite, writes (or removes) the
//! dead-letter file, writes the manifest, and only then deletes the intent. The runner marks
//! the unit done only after commit returned.
//!
//! # What a crash leaves behind
//! When a [`UnitWriter`](etl_core::UnitWriter) is dropped without `commit` or `abort` (the process dies, the task
//! is cancelled), its temporary files vanish with it (they have no name), and in-flight uploads are never completed, so they never appear as
//! `*.parquet` (on local disk object_store removes its staging file on drop, and the next
//! attempt removes any it could not; on S3 an incomplete multipart upload stays invisible and
//! is reclaimed by a bucket lifecycle rule). What can remain under `**/*.parquet` is:
//! - the files of units committed earlier, and
//! - parts this attempt had already completed (rolled by size or closed to bound open
//!   files). The intent lists them; the next `begin_unit` of the unit removes them, and the
//!   unit is not marked done, so it is written again.
//!
//! A provisional unit that is being rewritten can show a mix of old and new parts between
//! the first rolled file and commit: its names are reused on purpose (exactly once beats
//! atomic snapshots here), and the commit removes old parts the new attempt did not write.
//!
//! ```no_run
//! # async fn demo(unit: etl_core::Unit, batch: arrow_array::RecordBatch) -> Result<(), Box<dyn std::error::Error>> {
//! use etl_core::{Sink, StateStore, UnitRecord, UnitSummary};
//! use etl_sink::{ParquetSink, ParquetSinkOptions};
//!
//! let opts = ParquetSinkOptions { time_column: "delivered_at".into(), ..Default::default() };
//! let sink = ParquetSink::open("./data/mail_delivery", opts)?;
//! let mut writer = sink.begin_unit(&unit, batch.schema()).await?;
//! writer.write(batch).await?;
//! let report = writer.commit(UnitSummary::default()).await?;
//! // Only now is the unit durable: record it as done.
//! let record = UnitRecord { unit, committed_at: chrono::Utc::now(), report };
//! sink.state_store().mark_done(&record).await?;
//! # Ok(()) }
//! ```

mod claim;
mod error;
mod jsonl;
mod layout;
mod manifest;
mod partition;
#[cfg(any(test, feature = "test-s3"))]
pub mod s3_server;
mod sink;
mod spill;
mod state;
#[cfg(test)]
mod tests;

pub use error::SinkError;
pub use jsonl::{JsonlError, JsonlSink, JsonlTarget, utc_fixed_offset};
pub use manifest::{Manifest, ManifestFile};
pub use parquet::file::properties::EnabledStatistics;
pub use sink::{ParquetSink, ParquetSinkOptions, S3Options};
pub use state::ObjectStoreState;
