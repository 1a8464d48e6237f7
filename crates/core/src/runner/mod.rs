//! Connects the stages of one pipeline and runs a list of units.
//!
//! ```text
//!                 payload channel              ordered queue of           transforms + sink
//!  Source::fetch ───────────────► dispatcher ─► per-payload batch ─────► collector ─► UnitWriter
//!   (async I/O)     (bounded)        │           receivers (bounded)     (in seq order)
//!                                    └─ spawn_blocking decode, at most `decode_workers` at once
//! ```
//!
//! Why this shape: decoding is CPU work and must not stall the async workers that drive the
//! network, so each payload is decoded on the blocking pool; several payloads of a unit can
//! decode at once (a second core parses while the first waits on the network), yet the
//! collector drains their outputs strictly in payload order, so batches are written in the order
//! the API returned them. Every queue is bounded, so a slow sink slows the source and memory
//! stays flat whatever the volume.
//!
//! Fetching and dispatching run as a tokio task of their own, apart from the collector: the
//! collector encodes Parquet on the worker thread it runs on, and while it does, the unit's next
//! requests go out and its next payloads start decoding on the other thread (one task for all
//! three left the network idle during every encode: mail and tracking runs were 20-40 % slower).
//! The task is aborted when the unit ends in any other way than success. Each unit is a task
//! of its own too, so the collectors of units running at once encode on different threads.
//!
//! A unit either commits completely or not at all: on any error, or on cancellation, its
//! writer is aborted and the state store is not touched.
//!
//! Before a unit is written, the runner takes its claim from the state store
//! ([`StateStore::claim`]), so that two workers on one dataset never write the same unit; a
//! unit the other worker committed meanwhile is reported as `CommittedElsewhere`, not written.
//!
//! A source may ask for its unit to be fetched again from the first page
//! ([`StageError::restart_unit`]: the server refused a continuation token mid-window). The
//! attempt is aborted like any failed one, so nothing it wrote survives, its checkpoint is
//! cleared, and the unit runs again, at most [`MAX_UNIT_RESTARTS`] times; then the error is
//! reported as the retryable failure it is.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use chrono::Utc;
use futures::StreamExt;
use serde::Serialize;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::bad::BadRecord;
use crate::error::{ErrorClass, StageError};
use crate::payload::{Payload, PayloadBody, PayloadSender};
use crate::stage::{CommitReport, DecodeContext, FetchStats, Format, Sink, Source, Transform, UnitSummary};
use crate::state::{Claim, StateStore, UnitRecord};
use crate::unit::Unit;

/// Times one unit may be restarted from its first page at a source's request. A server that
/// keeps refusing the same unit's tokens will not be talked round by a third try; the next run
/// tries again.
pub const MAX_UNIT_RESTARTS: u32 = 2;

/// Knobs of the runner; every queue is bounded by one of these.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Capacity of every channel between stages (payloads, batches).
    pub channel_capacity: usize,
    /// Payload decodes running at once across the whole run.
    pub decode_workers: usize,
    /// Units fetched at once.
    pub unit_concurrency: usize,
    pub decode: DecodeContext,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            channel_capacity: 4,
            decode_workers: 2,
            unit_concurrency: 2,
            decode: DecodeContext::default(),
        }
    }
}

/// The stages of one pipeline, ready to run.
pub struct Pipeline {
    pub source: Arc<dyn Source>,
    pub format: Arc<dyn Format>,
    pub transforms: Vec<Arc<dyn Transform>>,
    pub sink: Arc<dyn Sink>,
    pub state: Arc<dyn StateStore>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("source", &self.source.kind())
            .field("sink", &self.sink.location())
            .finish()
    }
}

impl Pipeline {
    /// The schema after every transform, or the first transform that cannot apply.
    pub fn output_schema(&self) -> Result<SchemaRef, StageError> {
        let mut schema = self.format.schema();
        for t in &self.transforms {
            schema = t
                .output_schema(&schema)
                .map_err(|e| e.context(format!("transform {}", t.describe())))?;
        }
        Ok(schema)
    }
}

/// How one unit ended.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum UnitStatus {
    Committed {
        report: CommitReport,
    },
    Failed {
        class: ErrorClass,
        message: String,
    },
    /// Not written by this run: another worker committed it meanwhile (its claim was held by
    /// that worker, which then committed). `report` is that worker's commit.
    CommittedElsewhere {
        report: CommitReport,
    },
    /// Not started, or stopped, because the run was interrupted or a fatal error stopped it.
    Cancelled,
}

/// One unit's result and counters.
#[derive(Clone, Debug, Serialize)]
pub struct UnitOutcome {
    pub unit: Unit,
    #[serde(flatten)]
    pub status: UnitStatus,
    pub fetch: FetchStats,
    pub rows: u64,
    pub bad_records: u64,
    /// Fields the source sent that the schema does not know, with their occurrences.
    pub unknown_fields: std::collections::BTreeMap<String, u64>,
    pub duration: Duration,
}

impl UnitOutcome {
    /// An outcome with nothing fetched or written yet.
    fn new(unit: Unit, status: UnitStatus) -> Self {
        Self {
            unit,
            status,
            fetch: FetchStats::default(),
            rows: 0,
            bad_records: 0,
            unknown_fields: Default::default(),
            duration: Duration::ZERO,
        }
    }
}

/// The result of a run, one outcome per planned unit in plan order.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunReport {
    pub outcomes: Vec<UnitOutcome>,
}

impl RunReport {
    /// The most severe failure class in the run, `None` when every unit committed.
    /// Severity: internal > permanent > retryable > cancelled.
    pub fn worst(&self) -> Option<ErrorClass> {
        let rank = |c: ErrorClass| match c {
            ErrorClass::Internal => 4,
            ErrorClass::Permanent => 3,
            ErrorClass::Retryable => 2,
            ErrorClass::Cancelled => 1,
        };
        self.outcomes
            .iter()
            .filter_map(|o| match &o.status {
                UnitStatus::Committed { .. } | UnitStatus::CommittedElsewhere { .. } => None,
                UnitStatus::Failed { class, .. } => Some(*class),
                UnitStatus::Cancelled => Some(ErrorClass::Cancelled),
            })
            .max_by_key(|c| rank(*c))
    }
}

/// Runs `units` through the pipeline. Units fail independently; an internal error (a bug, a
/// full disk) or `cancel` stops the whole run: units not started are reported as cancelled.
pub async fn run(pipeline: Arc<Pipeline>, units: Vec<Unit>, opts: RunOptions, cancel: CancellationToken) -> RunReport {
    let schema = match pipeline.output_schema() {
        Ok(s) => s,
        Err(e) => {
            let message = e.to_string();
            let outcomes = units
                .into_iter()
                .map(|unit| {
                    let status = UnitStatus::Failed {
                        class: ErrorClass::Permanent,
                        message: message.clone(),
                    };
                    UnitOutcome::new(unit, status)
                })
                .collect();
            return RunReport { outcomes };
        }
    };
    let decode_slots = Arc::new(Semaphore::new(opts.decode_workers.max(1)));
    // A unit another worker commits from now on need not be written by this run.
    let since = Utc::now();
    // Stops the remaining units after a fatal error without reporting the run as interrupted.
    let stop = cancel.child_token();
    let mut outcomes: Vec<(usize, UnitOutcome)> = futures::stream::iter(units.into_iter().enumerate())
        .map(|(i, unit)| {
            let pipeline = Arc::clone(&pipeline);
            let schema = Arc::clone(&schema);
            let slots = Arc::clone(&decode_slots);
            let opts = opts.clone();
            let stop = stop.clone();
            async move {
                // Each unit is a task of its own, so that the collectors of units running at once
                // encode Parquet on different worker threads; polled inside this future they all
                // shared the thread that awaits `run` (the CLI's main thread), which capped a
                // CDN run at ~1.4 of 2 cores.
                let fallback = unit.clone();
                let unit_stop = stop.clone();
                let task = AbortOnDrop(tokio::spawn(async move {
                    run_unit(&pipeline, unit, schema, &opts, slots, &unit_stop, since).await
                }));
                let outcome = match task.join().await {
                    Ok(outcome) => outcome,
                    Err(e) => {
                        let status = UnitStatus::Failed {
                            class: ErrorClass::Internal,
                            message: format!("the unit's task ended abnormally: {e}"),
                        };
                        UnitOutcome::new(fallback, status)
                    }
                };
                if let UnitStatus::Failed {
                    class: ErrorClass::Internal,
                    ..
                } = outcome.status
                {
                    stop.cancel();
                }
                (i, outcome)
            }
        })
        .buffer_unordered(opts.unit_concurrency.max(1))
        .collect()
        .await;
    outcomes.sort_by_key(|(i, _)| *i);
    RunReport {
        outcomes: outcomes.into_iter().map(|(_, o)| o).collect(),
    }
}

/// What the collector gathered while writing a unit.
#[derive(Default)]
struct Collected {
    rows: u64,
    bad: Vec<BadRecord>,
    unknown: std::collections::BTreeMap<String, u64>,
}

async fn run_unit(
    p: &Pipeline,
    unit: Unit,
    schema: SchemaRef,
    opts: &RunOptions,
    slots: Arc<Semaphore>,
    stop: &CancellationToken,
    since: chrono::DateTime<Utc>,
) -> UnitOutcome {
    let started = Instant::now();
    let mut outcome = UnitOutcome::new(unit.clone(), UnitStatus::Cancelled);
    if stop.is_cancelled() {
        return outcome;
    }
    // Only one worker writes a unit at a time; every restart below happens inside one claim.
    let claim = tokio::select! {
        c = p.state.claim(&unit, since) => c,
        () = stop.cancelled() => return outcome,
    };
    let lease = match claim {
        Ok(Claim::Held(lease)) => lease,
        Ok(Claim::CommittedElsewhere(record)) => {
            tracing::info!(unit = %unit.id, committed_at = %record.committed_at, "unit committed by another worker; skipped");
            outcome.duration = started.elapsed();
            outcome.status = UnitStatus::CommittedElsewhere { report: record.report };
            return outcome;
        }
        Err(e) => {
            let e = e.context(format!("unit {}: claiming it", unit.id));
            tracing::error!(unit = %unit.id, class = ?e.class(), "{e}");
            outcome.status = UnitStatus::Failed {
                class: e.class(),
                message: e.to_string(),
            };
            return outcome;
        }
    };
    let lost = lease.lost();
    tracing::info!(unit = %unit.id, provisional = unit.provisional, "unit started");
    // What abandoned attempts (restarts) fetched, added to the unit's counters.
    let mut earlier = FetchStats::default();
    let mut restarts = 0;
    let result = loop {
        let attempt = process_unit(
            p,
            &unit,
            Arc::clone(&schema),
            opts,
            Arc::clone(&slots),
            Stops { run: stop, lost: &lost },
            &earlier,
        )
        .await;
        let Err(e) = attempt else { break attempt };
        let Some(fetched) = e.restart_requested() else {
            break Err(e);
        };
        add_fetch(&mut earlier, fetched);
        if restarts == MAX_UNIT_RESTARTS {
            break Err(e.context(format!(
                "the unit was already restarted {MAX_UNIT_RESTARTS} times from its first page"
            )));
        }
        restarts += 1;
        tracing::warn!(
            unit = %unit.id,
            restart = %format_args!("{restarts}/{MAX_UNIT_RESTARTS}"),
            "restarting the unit from its first page (what the attempt wrote is discarded): {e}"
        );
        // A resumable source would otherwise pick up where the abandoned attempt stopped.
        if let Err(e) = crate::state::Checkpoint::new(Arc::clone(&p.state), unit.id.clone())
            .clear()
            .await
        {
            break Err(e.context("clearing the unit's checkpoint before restarting it"));
        }
    };
    lease.release().await;
    outcome.duration = started.elapsed();
    outcome.fetch = earlier;
    match result {
        Ok((report, fetch, collected)) => {
            outcome.fetch = fetch;
            outcome.rows = collected.rows;
            outcome.bad_records = collected.bad.len() as u64;
            outcome.unknown_fields = collected.unknown;
            tracing::info!(unit = %unit.id, rows = report.rows, files = report.files.len(), "unit committed");
            outcome.status = UnitStatus::Committed { report };
        }
        Err(e) if e.class() == ErrorClass::Cancelled => {
            tracing::warn!(unit = %unit.id, "unit interrupted; it will be redone by the next run");
        }
        Err(e) => {
            let e = e.context(format!("unit {}", unit.id));
            tracing::error!(unit = %unit.id, class = ?e.class(), "{e}");
            outcome.status = UnitStatus::Failed {
                class: e.class(),
                message: e.to_string(),
            };
        }
    }
    // For a progress display (target `etl::progress`): the unit's work is over, however it ended.
    tracing::trace!(target: "etl::progress", unit = %unit.id, "unit done");
    outcome
}

/// What stops a unit's work from outside: the run (interrupted, or a fatal error elsewhere) and
/// the unit's claim (lost to another worker).
#[derive(Clone, Copy)]
struct Stops<'a> {
    run: &'a CancellationToken,
    lost: &'a CancellationToken,
}

/// Adds one attempt's fetch counters to another's.
fn add_fetch(total: &mut FetchStats, more: &FetchStats) {
    total.requests += more.requests;
    total.retries += more.retries;
    total.bytes += more.bytes;
    total.payloads += more.payloads;
}

/// Fetches, decodes, transforms and writes one unit, then commits it and records it as done.
/// `earlier` is what abandoned attempts of the unit fetched; the counters returned and committed
/// include it.
async fn process_unit(
    p: &Pipeline,
    unit: &Unit,
    schema: SchemaRef,
    opts: &RunOptions,
    slots: Arc<Semaphore>,
    stops: Stops<'_>,
    earlier: &FetchStats,
) -> Result<(CommitReport, FetchStats, Collected), StageError> {
    let mut writer = p.sink.begin_unit(unit, schema).await?;
    let cap = opts.channel_capacity.max(1);
    let (payload_tx, payload_rx) = mpsc::channel::<Payload>(cap);
    let (queue_tx, queue_rx) = mpsc::channel::<DecodedStream>(opts.decode_workers.max(1));

    let checkpoint = crate::state::Checkpoint::new(Arc::clone(&p.state), unit.id.clone());
    let sender = PayloadSender::new(payload_tx).with_checkpoint(checkpoint.clone());
    // Fetching and dispatching run as a task of their own, so that while the collector encodes
    // Parquet on one worker thread the next requests and decodes start on the other. Dropping
    // the handle (an error elsewhere, a cancellation) aborts the task.
    let fetcher = {
        let source = Arc::clone(&p.source);
        let fetch_unit = unit.clone();
        let dispatch = dispatch(
            Arc::clone(&p.format),
            payload_rx,
            queue_tx,
            slots,
            opts.decode,
            cap,
            unit.id.clone(),
        );
        AbortOnDrop(tokio::spawn(async move {
            let fetch = source.fetch(&fetch_unit, sender);
            futures::try_join!(fetch, dispatch).map(|(stats, ())| stats)
        }))
    };
    let fetch = async move {
        let mut fetcher = fetcher;
        match (&mut fetcher.0).await {
            Ok(result) => result,
            Err(e) => Err(StageError::internal(format!("the fetch task ended abnormally: {e}"))),
        }
    };
    let collect = collect(&p.transforms, queue_rx, writer.as_mut(), unit);

    let work = async { futures::try_join!(fetch, collect).map(|(stats, collected)| (stats, (), collected)) };
    // Cancellation stops the reading and writing, then aborts the writer (so parts it already
    // finished are deleted and uploads aborted); a commit that has started is not interrupted.
    let result = tokio::select! {
        r = work => r,
        _ = stops.run.cancelled() => Err(StageError::cancelled()),
        _ = stops.lost.cancelled() => Err(StageError::retryable(
            "lost the unit's claim (another worker took it over); nothing of this attempt is committed",
        )),
    };
    match result {
        Ok((mut fetch_stats, (), collected)) => {
            add_fetch(&mut fetch_stats, earlier);
            let summary = UnitSummary {
                fetch: fetch_stats.clone(),
                rows: collected.rows,
                bad_records: collected.bad.clone(),
            };
            let report = writer.commit(summary).await?;
            crate::failpoint::failpoint("runner.before_state").await;
            let record = UnitRecord {
                unit: unit.clone(),
                committed_at: Utc::now(),
                report: report.clone(),
            };
            p.state
                .mark_done(&record)
                .await
                .map_err(|e| e.context("recording unit as done"))?;
            // The unit is done: whatever job it was resuming is finished with.
            if let Err(e) = checkpoint.clear().await {
                tracing::warn!(unit = %unit.id, "could not remove the unit's checkpoint (harmless: the unit is done): {e}");
            }
            Ok((report, fetch_stats, collected))
        }
        Err(e) => {
            writer.abort().await;
            Err(e)
        }
    }
}

/// A spawned task that is aborted when its handle is dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    /// Waits for the task; it is still aborted if this future is dropped first.
    async fn join(mut self) -> Result<T, tokio::task::JoinError> {
        (&mut self.0).await
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Output of one payload's decoder: batches or skipped records, in order, then the end.
enum Decoded {
    Batch(RecordBatch),
    Bad(Vec<BadRecord>),
    Unknown(Vec<(String, u64)>),
    /// The decoder finished the payload. A stream that closes without it lost data (a decode
    /// thread panicked), and the unit fails instead of committing a short result.
    End,
}

type DecodedStream = mpsc::Receiver<Result<Decoded, StageError>>;

/// Starts a blocking decode per payload (at most as many as there are decode slots) and queues
/// the receivers of their outputs in payload order.
async fn dispatch(
    format: Arc<dyn Format>,
    mut payloads: mpsc::Receiver<Payload>,
    queue: mpsc::Sender<DecodedStream>,
    slots: Arc<Semaphore>,
    ctx: DecodeContext,
    cap: usize,
    unit_id: String,
) -> Result<(), StageError> {
    while let Some(payload) = payloads.recv().await {
        let permit = Arc::clone(&slots).acquire_owned().await.map_err(StageError::internal)?;
        let (tx, rx) = mpsc::channel(cap);
        let format = Arc::clone(&format);
        let unit_id = unit_id.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            decode_payload(format.as_ref(), payload, ctx, &tx, &unit_id);
        });
        if queue.send(rx).await.is_err() {
            // The collector stopped: its error is the one reported.
            return Ok(());
        }
    }
    Ok(())
}

/// Decodes one payload on a blocking thread, sending its batches as they are produced.
fn decode_payload(
    format: &dyn Format,
    payload: Payload,
    ctx: DecodeContext,
    tx: &mpsc::Sender<Result<Decoded, StageError>>,
    unit_id: &str,
) {
    let name = payload.meta.name.clone();
    let mut decoder = format.decoder(&payload.meta, ctx);
    let mut out = Vec::new();
    // Sends what the decoder produced; false when the collector has gone away.
    let flush = |out: &mut Vec<RecordBatch>, bad: Vec<BadRecord>, unknown: Vec<(String, u64)>| -> bool {
        if !unknown.is_empty() && tx.blocking_send(Ok(Decoded::Unknown(unknown))).is_err() {
            return false;
        }
        if !bad.is_empty() {
            let bad = bad
                .into_iter()
                .map(|mut b| {
                    b.unit = unit_id.to_string();
                    b.payload = name.clone();
                    b
                })
                .collect();
            if tx.blocking_send(Ok(Decoded::Bad(bad))).is_err() {
                return false;
            }
        }
        out.drain(..).all(|b| tx.blocking_send(Ok(Decoded::Batch(b))).is_ok())
    };
    let fail = |e: StageError| {
        let _ = tx.blocking_send(Err(e.context(format!("decoding {name}"))));
    };
    match payload.body {
        PayloadBody::Bytes(bytes) => {
            tracing::trace!(target: "etl::progress", unit = unit_id, bytes = bytes.len() as u64, "chunk");
            if let Err(e) = decoder.decode(&bytes, &mut out).and_then(|()| decoder.finish(&mut out)) {
                return fail(e.into());
            }
            if flush(&mut out, decoder.take_bad_records(), decoder.take_unknown_fields()) {
                let _ = tx.blocking_send(Ok(Decoded::End));
            }
        }
        PayloadBody::Chunks(mut chunks) => {
            while let Some(chunk) = chunks.blocking_recv() {
                let chunk = match chunk {
                    Ok(c) => c,
                    Err(e) => return fail(e),
                };
                tracing::trace!(target: "etl::progress", unit = unit_id, bytes = chunk.len() as u64, "chunk");
                if let Err(e) = decoder.decode(&chunk, &mut out) {
                    return fail(e.into());
                }
                if !flush(&mut out, decoder.take_bad_records(), decoder.take_unknown_fields()) {
                    return;
                }
            }
            if let Err(e) = decoder.finish(&mut out) {
                return fail(e.into());
            }
            if flush(&mut out, decoder.take_bad_records(), decoder.take_unknown_fields()) {
                let _ = tx.blocking_send(Ok(Decoded::End));
            }
        }
    }
}

/// Drains the decoded streams in payload order, applies the transforms and writes.
async fn collect(
    transforms: &[Arc<dyn Transform>],
    mut queue: mpsc::Receiver<DecodedStream>,
    writer: &mut dyn crate::stage::UnitWriter,
    unit: &Unit,
) -> Result<Collected, StageError> {
    let mut collected = Collected::default();
    while let Some(mut stream) = queue.recv().await {
        let mut ended = false;
        while let Some(item) = stream.recv().await {
            match item? {
                Decoded::End => ended = true,
                Decoded::Unknown(fields) => {
                    for (name, n) in fields {
                        *collected.unknown.entry(name).or_default() += n;
                    }
                }
                Decoded::Bad(bad) => {
                    for b in &bad {
                        tracing::warn!(unit = %unit.id, payload = %b.payload, line = b.line, reason = %b.reason, "bad record skipped");
                    }
                    collected.bad.extend(bad);
                }
                Decoded::Batch(mut batch) => {
                    for t in transforms {
                        batch = t
                            .apply(batch)
                            .map_err(|e| e.context(format!("transform {}", t.describe())))?;
                    }
                    if batch.num_rows() == 0 {
                        continue;
                    }
                    collected.rows += batch.num_rows() as u64;
                    tracing::trace!(target: "etl::progress", unit = %unit.id, rows = batch.num_rows() as u64, "batch");
                    writer.write(batch).await?;
                }
            }
        }
        tracing::trace!(target: "etl::progress", unit = %unit.id, "payload decoded");
        if !ended {
            return Err(StageError::internal(
                "a decoder stopped before the end of its payload (see the log for a panic)",
            ));
        }
    }
    Ok(collected)
}

#[cfg(test)]
mod tests;
