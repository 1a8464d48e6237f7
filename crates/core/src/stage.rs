//! The stage traits. Each documents what its callers may rely on.

use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::Serialize;

use crate::bad::{BadRecord, BadRecordPolicy, UnknownFieldPolicy};
use crate::error::{DecodeError, StageError};
use crate::payload::{PayloadMeta, PayloadSender};
use crate::unit::Unit;

/// What the user asked to load.
#[derive(Clone, Debug)]
pub struct PlanRequest {
    /// Start of the requested range (inclusive).
    pub from: DateTime<Utc>,
    /// End of the requested range (exclusive).
    pub to: DateTime<Utc>,
    /// The time the plan is made; never read from the clock inside `plan`, so plans are testable.
    pub now: DateTime<Utc>,
    /// A window is final only when it ends before `now - settle`.
    pub settle: Duration,
}

/// The units a run would process, plus every clamp, split or warning applied to fit the API.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Plan {
    pub units: Vec<Unit>,
    /// Human-readable notes (`clamped start to the 90-day retention: ...`), logged as warnings.
    pub notes: Vec<String>,
    /// Data the source knows can no longer be fetched (an archive rotated away before it was
    /// loaded): printed as `LOST:` lines, and the run exits non-zero.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lost: Vec<String>,
}

/// Counters a source reports for one unit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FetchStats {
    pub requests: u64,
    pub retries: u64,
    pub bytes: u64,
    pub payloads: u64,
}

/// What one unit costs in requests, as far as the API lets a plan know before running it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Cost {
    /// Requests the unit needs at least (retries not counted).
    pub requests: u64,
    /// Whether `requests` is exact; otherwise more follow (further pages, one per file listed).
    pub exact: bool,
    /// How the count arises (`one page per 10000 records`), for people.
    pub how: String,
}

/// The time a rate budget makes a number of requests take, and the budget in words.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BudgetTime {
    /// Which requests the budget applies to (`listing requests`).
    pub requests: String,
    /// Their count.
    pub count: u64,
    /// The least time the budget lets them take.
    #[serde(serialize_with = "seconds")]
    pub at_least: Duration,
    /// The limits (`100 per 1 min and 1000 per 1 h`).
    pub limits: String,
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

/// A vendor API: plans units within the API's rules and fetches them.
pub trait Source: Send + Sync + 'static {
    /// The source type (`mail_delivery`), used in unit ids and messages.
    fn kind(&self) -> &'static str;

    /// Splits the requested range into units. Pure: no I/O. A range that breaks an API rule is
    /// clamped (with a note) or rejected (with an error that says what the API allows).
    fn plan(&self, req: &PlanRequest) -> Result<Plan, StageError>;

    /// Fetches every page or file of `unit` in order into `out`. On error nothing of the unit
    /// is committed; the runner aborts it. Must stop promptly when `out` reports the pipeline
    /// stopped.
    fn fetch<'a>(&'a self, unit: &'a Unit, out: PayloadSender) -> BoxFuture<'a, Result<FetchStats, StageError>>;

    /// The oldest time the API still serves at `now`, for APIs with a retention limit. The
    /// runner compares it with the last committed unit of each stream: records between them
    /// can no longer be fetched, and the run reports that window as lost.
    fn retention_start(&self, _now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        None
    }

    /// What `unit` costs in requests, where the API makes that knowable before fetching
    /// (`etl plan` shows it). `None`: nothing useful can be said.
    fn cost(&self, _unit: &Unit) -> Option<Cost> {
        None
    }

    /// The rate budget `unit`'s requests draw on (the credential, account or endpoint the API
    /// counts requests by), as a key that names no secret. Units with the same key must run in
    /// one process, or share the budget explicitly (`--rate-share`): `--shard` assigns units
    /// by this key. `None`: the API limits no rate, and units are assigned one by one.
    fn budget_key(&self, _unit: &Unit) -> Option<String> {
        None
    }

    /// For a source with a rate budget: how long the budget makes the requests of `units` take
    /// at least. `None` for sources without one.
    fn budget_time(&self, _units: &[Unit]) -> Option<BudgetTime> {
        None
    }

    /// For sources whose units are files found on the server (a WebDAV archive): lists them and
    /// returns the plan, instead of the pure [`Source::plan`]. `done` is the state, so that the
    /// source can tell what disappeared before it was loaded. `None` (the default) means the
    /// source plans from the time range alone.
    fn discover<'a>(
        &'a self,
        _req: &'a PlanRequest,
        _done: &'a std::collections::BTreeMap<String, crate::state::UnitRecord>,
    ) -> BoxFuture<'a, Result<Option<Plan>, StageError>> {
        Box::pin(async { Ok(None) })
    }
}

/// How a decoder is set up for one payload.
#[derive(Clone, Copy, Debug)]
pub struct DecodeContext {
    pub policy: BadRecordPolicy,
    /// Rows per emitted batch (a batch may be smaller at the end of a payload).
    pub batch_size: usize,
    /// For formats with named fields (JSON): what to do with a field the schema does not know.
    pub unknown_fields: UnknownFieldPolicy,
}

impl Default for DecodeContext {
    fn default() -> Self {
        Self {
            policy: BadRecordPolicy::Fail,
            batch_size: 16 * 1024,
            unknown_fields: UnknownFieldPolicy::Ignore,
        }
    }
}

/// A record format: the documented schema plus a decoder factory.
pub trait Format: Send + Sync + 'static {
    /// The Arrow schema of every batch the decoders produce. Frozen by a test per format.
    fn schema(&self) -> SchemaRef;
    /// The UTC timestamp column the `dt` partition is derived from.
    fn time_column(&self) -> &'static str;
    /// A fresh decoder for one payload.
    fn decoder(&self, meta: &PayloadMeta, ctx: DecodeContext) -> Box<dyn Decoder>;
}

/// A push decoder: accepts its input split at any byte and yields the same batches.
///
/// Pure and synchronous (no async runtime), so it runs on the blocking pool, in benchmarks and
/// under property tests alike.
pub trait Decoder: Send {
    /// Consumes all of `chunk`, buffering an incomplete tail internally; pushes every batch
    /// that reached `batch_size` rows into `out`.
    fn decode(&mut self, chunk: &[u8], out: &mut Vec<RecordBatch>) -> Result<(), DecodeError>;
    /// End of input: checks the payload is complete and pushes the last, partial batch.
    fn finish(&mut self, out: &mut Vec<RecordBatch>) -> Result<(), DecodeError>;
    /// Records skipped under [`BadRecordPolicy::Skip`] since the last call.
    fn take_bad_records(&mut self) -> Vec<BadRecord>;
    /// Fields outside the schema seen since the last call (name, occurrences), under
    /// [`UnknownFieldPolicy::Ignore`]. Formats without named fields have none.
    fn take_unknown_fields(&mut self) -> Vec<(String, u64)> {
        Vec::new()
    }
}

/// A batch-to-batch stage (select, rename, filter, hash...).
pub trait Transform: Send + Sync + 'static {
    /// The stage's name in messages (`hash(recipient)`).
    fn describe(&self) -> String;
    /// The schema after this stage; fails (at `etl validate`) when a named column is missing.
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, StageError>;
    fn apply(&self, batch: RecordBatch) -> Result<RecordBatch, StageError>;
}

/// What the runner tells the sink when a unit has been read completely.
#[derive(Clone, Debug, Default, Serialize)]
pub struct UnitSummary {
    pub fetch: FetchStats,
    pub rows: u64,
    pub bad_records: Vec<BadRecord>,
}

/// What a committed unit wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct CommitReport {
    /// Object paths relative to the dataset root, in write order.
    pub files: Vec<String>,
    pub rows: u64,
    pub bytes: u64,
    pub bad_records: u64,
}

/// A destination for batches.
pub trait Sink: Send + Sync + 'static {
    /// Where the data lands (a path or URL), for summaries.
    fn location(&self) -> String;
    /// Starts writing `unit`: first removes whatever an unfinished earlier attempt of the same
    /// unit left behind. `schema` is the schema after the transforms.
    fn begin_unit<'a>(
        &'a self,
        unit: &'a Unit,
        schema: SchemaRef,
    ) -> BoxFuture<'a, Result<Box<dyn UnitWriter>, StageError>>;
}

/// Writes one unit. Nothing it writes becomes visible under the dataset's `*.parquet` glob
/// until [`UnitWriter::commit`] returns `Ok`.
pub trait UnitWriter: Send {
    fn write(&mut self, batch: RecordBatch) -> BoxFuture<'_, Result<(), StageError>>;
    /// Makes every file durable and visible, replaces the files of an earlier commit of the
    /// same unit, and writes the unit's manifest. Only after this returns may the unit be
    /// marked done.
    fn commit(self: Box<Self>, summary: UnitSummary) -> BoxFuture<'static, Result<CommitReport, StageError>>;
    /// Discards everything written for the unit (in-flight uploads are aborted).
    fn abort(self: Box<Self>) -> BoxFuture<'static, ()>;
}
