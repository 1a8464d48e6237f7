//! The runner against fake stages: a source of numbered pages, a decoder of comma-separated
//! integers, and an in-memory sink that records what was written and committed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, cast::AsArray, types::Int64Type};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use bytes::Bytes;
use chrono::{TimeZone, Utc};
use futures::future::BoxFuture;

use super::*;
use crate::bad::BadRecordPolicy;
use crate::error::DecodeError;
use crate::payload::PayloadMeta;
use crate::stage::{Decoder, Plan, PlanRequest, UnitWriter};
use crate::state::MemoryState;
use crate::unit::Window;

/// A pipeline of numbers pages, without transforms, from `source` into `sink`.
fn numbers_pipeline(source: Arc<dyn Source>, sink: Arc<dyn Sink>, state: Arc<dyn StateStore>) -> Arc<Pipeline> {
    Arc::new(Pipeline {
        source,
        format: Arc::new(Numbers),
        transforms: Vec::new(),
        sink,
        state,
    })
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]))
}

/// Pages `0..pages`, page p holding the numbers p*10 .. p*10+9; `fail_at` makes that page
/// fetch fail; a page containing "bad" or "panic" exercises the decoder's error paths.
struct NumberSource {
    pages: u64,
    fail_at: Option<u64>,
    poison: Option<(u64, &'static str)>,
}

impl Source for NumberSource {
    fn kind(&self) -> &'static str {
        "numbers"
    }
    fn plan(&self, _: &PlanRequest) -> Result<Plan, StageError> {
        Ok(Plan::default())
    }
    fn fetch<'a>(&'a self, _unit: &'a Unit, mut out: PayloadSender) -> BoxFuture<'a, Result<FetchStats, StageError>> {
        Box::pin(async move {
            for p in 0..self.pages {
                if self.fail_at == Some(p) {
                    return Err(StageError::retryable("connection reset"));
                }
                let mut text: String = (p * 10..p * 10 + 10).map(|n| format!("{n},")).collect();
                if let Some((at, word)) = self.poison
                    && at == p
                {
                    text.push_str(word);
                }
                // Early pages are slow to decode, so a later page finishes first when decoding
                // runs in parallel: order must still be kept.
                out.send_bytes(
                    PayloadMeta {
                        name: format!("page {p}"),
                        ..Default::default()
                    },
                    Bytes::from(text),
                )
                .await?;
            }
            Ok(FetchStats {
                requests: self.pages,
                payloads: self.pages,
                ..Default::default()
            })
        })
    }
}

struct Numbers;

impl Format for Numbers {
    fn schema(&self) -> SchemaRef {
        schema()
    }
    fn time_column(&self) -> &'static str {
        "n"
    }
    fn decoder(&self, meta: &PayloadMeta, _ctx: DecodeContext) -> Box<dyn Decoder> {
        let page: u64 = meta.name.trim_start_matches("page ").parse().unwrap();
        Box::new(NumberDecoder {
            text: String::new(),
            page,
        })
    }
}

struct NumberDecoder {
    text: String,
    page: u64,
}

impl Decoder for NumberDecoder {
    fn decode(&mut self, chunk: &[u8], _out: &mut Vec<RecordBatch>) -> Result<(), DecodeError> {
        self.text.push_str(std::str::from_utf8(chunk).unwrap());
        Ok(())
    }
    fn finish(&mut self, out: &mut Vec<RecordBatch>) -> Result<(), DecodeError> {
        std::thread::sleep(Duration::from_millis(30u64.saturating_sub(self.page * 10)));
        let mut nums = Vec::new();
        for part in self.text.split(',').filter(|s| !s.is_empty()) {
            if part == "panic" {
                panic!("decoder bug");
            }
            nums.push(part.parse::<i64>().map_err(|_| DecodeError::BadRecord {
                line: 1,
                reason: "not a number".into(),
                excerpt: part.into(),
            })?);
        }
        let col: ArrayRef = Arc::new(Int64Array::from(nums));
        out.push(RecordBatch::try_new(schema(), vec![col])?);
        Ok(())
    }
    fn take_bad_records(&mut self) -> Vec<crate::bad::BadRecord> {
        Vec::new()
    }
}

#[derive(Default)]
struct Recorded {
    committed: Vec<(String, Vec<i64>)>,
    aborted: Vec<String>,
}

struct MemorySink(Arc<Mutex<Recorded>>);

struct MemoryWriter {
    unit: String,
    rows: Vec<i64>,
    rec: Arc<Mutex<Recorded>>,
}

impl Sink for MemorySink {
    fn location(&self) -> String {
        "memory".into()
    }
    fn begin_unit<'a>(
        &'a self,
        unit: &'a Unit,
        _: SchemaRef,
    ) -> BoxFuture<'a, Result<Box<dyn UnitWriter>, StageError>> {
        let w = MemoryWriter {
            unit: unit.id.clone(),
            rows: Vec::new(),
            rec: Arc::clone(&self.0),
        };
        Box::pin(async move { Ok(Box::new(w) as Box<dyn UnitWriter>) })
    }
}

impl UnitWriter for MemoryWriter {
    fn write(&mut self, batch: RecordBatch) -> BoxFuture<'_, Result<(), StageError>> {
        self.rows
            .extend(batch.column(0).as_primitive::<Int64Type>().values().iter());
        Box::pin(async { Ok(()) })
    }
    fn commit(self: Box<Self>, summary: UnitSummary) -> BoxFuture<'static, Result<CommitReport, StageError>> {
        Box::pin(async move {
            let report = CommitReport {
                rows: summary.rows,
                ..Default::default()
            };
            self.rec.lock().unwrap().committed.push((self.unit, self.rows));
            Ok(report)
        })
    }
    fn abort(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move { self.rec.lock().unwrap().aborted.push(self.unit) })
    }
}

fn unit(id: &str) -> Unit {
    let t = Utc.with_ymd_and_hms(2025, 9, 11, 0, 0, 0).unwrap();
    Unit {
        id: id.into(),
        window: Window::new(t, t + chrono::Duration::days(1)),
        params: Default::default(),
        partitions: Vec::new(),
        provisional: false,
    }
}

async fn run_with(source: NumberSource, units: Vec<Unit>) -> (RunReport, Arc<Mutex<Recorded>>, Arc<MemoryState>) {
    let rec = Arc::new(Mutex::new(Recorded::default()));
    let state = Arc::new(MemoryState::default());
    let pipeline = numbers_pipeline(
        Arc::new(source),
        Arc::new(MemorySink(Arc::clone(&rec))),
        Arc::clone(&state) as Arc<dyn StateStore>,
    );
    let opts = RunOptions {
        channel_capacity: 2,
        decode_workers: 4,
        unit_concurrency: 2,
        decode: DecodeContext {
            policy: BadRecordPolicy::Fail,
            batch_size: 100,
            ..Default::default()
        },
    };
    let report = run(pipeline, units, opts, CancellationToken::new()).await;
    (report, rec, state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_keep_payload_order_under_parallel_decoding() {
    let (report, rec, state) = run_with(
        NumberSource {
            pages: 4,
            fail_at: None,
            poison: None,
        },
        vec![unit("a"), unit("b")],
    )
    .await;
    assert!(report.worst().is_none(), "{report:?}");
    let done = state.load().await.unwrap();
    let rec = rec.lock().unwrap();
    assert_eq!(rec.committed.len(), 2);
    for (_, rows) in &rec.committed {
        assert_eq!(rows, &(0..40).collect::<Vec<i64>>());
    }
    assert_eq!(done.keys().collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(report.outcomes[0].rows, 40);
    assert_eq!(report.outcomes[0].fetch.payloads, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_error_aborts_the_unit_and_leaves_state_untouched() {
    let (report, rec, state) = run_with(
        NumberSource {
            pages: 4,
            fail_at: Some(2),
            poison: None,
        },
        vec![unit("a")],
    )
    .await;
    assert_eq!(report.worst(), Some(ErrorClass::Retryable));
    match &report.outcomes[0].status {
        UnitStatus::Failed { message, .. } => assert!(
            message.contains("unit a") && message.contains("connection reset"),
            "{message}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(state.load().await.unwrap().is_empty());
    let rec = rec.lock().unwrap();
    assert!(rec.committed.is_empty());
    assert_eq!(rec.aborted, ["a"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_record_fails_the_unit_permanently_with_the_payload_named() {
    let (report, rec, _) = run_with(
        NumberSource {
            pages: 3,
            fail_at: None,
            poison: Some((1, "x7")),
        },
        vec![unit("a")],
    )
    .await;
    assert_eq!(report.worst(), Some(ErrorClass::Permanent));
    let UnitStatus::Failed { message, .. } = &report.outcomes[0].status else {
        panic!()
    };
    assert!(
        message.contains("decoding page 1") && message.contains("not a number"),
        "{message}"
    );
    assert!(rec.lock().unwrap().committed.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_decoder_fails_the_unit_instead_of_committing_less() {
    let (report, rec, _) = run_with(
        NumberSource {
            pages: 3,
            fail_at: None,
            poison: Some((2, "panic")),
        },
        vec![unit("a")],
    )
    .await;
    assert_eq!(report.worst(), Some(ErrorClass::Internal));
    assert!(rec.lock().unwrap().committed.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_reports_units_as_cancelled_and_commits_nothing_more() {
    let rec = Arc::new(Mutex::new(Recorded::default()));
    let pipeline = numbers_pipeline(
        Arc::new(NumberSource {
            pages: 50,
            fail_at: None,
            poison: None,
        }),
        Arc::new(MemorySink(Arc::clone(&rec))),
        Arc::new(MemoryState::default()),
    );
    let cancel = CancellationToken::new();
    cancel.cancel();
    let report = run(pipeline, vec![unit("a"), unit("b")], RunOptions::default(), cancel).await;
    assert_eq!(report.worst(), Some(ErrorClass::Cancelled));
    assert!(rec.lock().unwrap().committed.is_empty());
}

/// Sends pages until the pipeline stops, one every few milliseconds.
struct Endless;

impl Source for Endless {
    fn kind(&self) -> &'static str {
        "endless"
    }
    fn plan(&self, _: &PlanRequest) -> Result<Plan, StageError> {
        Ok(Plan::default())
    }
    fn fetch<'a>(&'a self, _unit: &'a Unit, mut out: PayloadSender) -> BoxFuture<'a, Result<FetchStats, StageError>> {
        Box::pin(async move {
            for p in 0.. {
                tokio::time::sleep(Duration::from_millis(5)).await;
                let meta = PayloadMeta {
                    name: format!("page {}", p + 10),
                    ..Default::default()
                };
                out.send_bytes(meta, Bytes::from("1,2,")).await?;
            }
            Ok(FetchStats::default())
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_mid_unit_aborts_the_writer() {
    let rec = Arc::new(Mutex::new(Recorded::default()));
    let state = Arc::new(MemoryState::default());
    let pipeline = numbers_pipeline(
        Arc::new(Endless),
        Arc::new(MemorySink(Arc::clone(&rec))),
        Arc::clone(&state) as Arc<dyn StateStore>,
    );
    let cancel = CancellationToken::new();
    let stopper = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        stopper.cancel();
    });
    let report = run(pipeline, vec![unit("a")], RunOptions::default(), cancel).await;
    assert!(matches!(report.outcomes[0].status, UnitStatus::Cancelled), "{report:?}");
    assert!(state.load().await.unwrap().is_empty());
    let rec = rec.lock().unwrap();
    assert!(rec.committed.is_empty());
    assert_eq!(rec.aborted, ["a"], "the writer must be aborted, not just dropped");
}

/// Pages 0..4 like [`NumberSource`], but each of the first `refusals` attempts of a unit stops
/// after two pages with a restart request (the server refused its continuation token). Leaves a
/// checkpoint behind on every refused attempt, and notes whether an attempt found one.
struct RefusingSource {
    refusals: u32,
    attempts: std::sync::atomic::AtomicU32,
    found_checkpoint: std::sync::atomic::AtomicBool,
}

impl RefusingSource {
    fn new(refusals: u32) -> Self {
        Self {
            refusals,
            attempts: Default::default(),
            found_checkpoint: Default::default(),
        }
    }
}

impl Source for RefusingSource {
    fn kind(&self) -> &'static str {
        "refusing"
    }
    fn plan(&self, _: &PlanRequest) -> Result<Plan, StageError> {
        Ok(Plan::default())
    }
    fn fetch<'a>(&'a self, _unit: &'a Unit, mut out: PayloadSender) -> BoxFuture<'a, Result<FetchStats, StageError>> {
        use std::sync::atomic::Ordering;
        Box::pin(async move {
            let attempt = self.attempts.fetch_add(1, Ordering::SeqCst) + 1;
            let checkpoint = out.checkpoint().cloned().expect("the runner hands a checkpoint");
            if checkpoint.load::<u64>().await?.is_some() {
                self.found_checkpoint.store(true, Ordering::SeqCst);
            }
            for p in 0..4u64 {
                if p == 2 && attempt <= self.refusals {
                    checkpoint.save(&p).await?;
                    let fetched = FetchStats {
                        requests: 3,
                        payloads: 2,
                        bytes: 100,
                        ..Default::default()
                    };
                    return Err(StageError::restart_unit(
                        format!("HTTP 400 (InvalidParameterValue: NextToken expired) on attempt {attempt}"),
                        fetched,
                    ));
                }
                let text: String = (p * 10..p * 10 + 10).map(|n| format!("{n},")).collect();
                let meta = PayloadMeta {
                    name: format!("page {p}"),
                    ..Default::default()
                };
                out.send_bytes(meta, Bytes::from(text)).await?;
            }
            Ok(FetchStats {
                requests: 4,
                payloads: 4,
                bytes: 200,
                ..Default::default()
            })
        })
    }
}

async fn run_refusing(source: Arc<RefusingSource>) -> (RunReport, Arc<Mutex<Recorded>>, Arc<MemoryState>) {
    let rec = Arc::new(Mutex::new(Recorded::default()));
    let state = Arc::new(MemoryState::default());
    let pipeline = numbers_pipeline(
        source,
        Arc::new(MemorySink(Arc::clone(&rec))),
        Arc::clone(&state) as Arc<dyn StateStore>,
    );
    let report = run(
        pipeline,
        vec![unit("a")],
        RunOptions::default(),
        CancellationToken::new(),
    )
    .await;
    (report, rec, state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_request_reruns_the_unit_from_scratch_and_commits_one_copy() {
    let source = Arc::new(RefusingSource::new(1));
    let (report, rec, state) = run_refusing(Arc::clone(&source)).await;
    assert!(report.worst().is_none(), "{report:?}");
    let done = state.load().await.unwrap();
    assert_eq!(done["a"].report.rows, 40);
    let rec = rec.lock().unwrap();
    assert_eq!(rec.aborted, ["a"], "the refused attempt is aborted");
    assert_eq!(
        rec.committed,
        [("a".to_string(), (0..40).collect::<Vec<i64>>())],
        "exactly one copy of every page, none of the aborted attempt"
    );
    assert_eq!(source.attempts.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert!(
        !source.found_checkpoint.load(std::sync::atomic::Ordering::SeqCst),
        "the restarted attempt must not resume from the abandoned one's checkpoint"
    );
    let o = &report.outcomes[0];
    assert_eq!(o.rows, 40);
    assert_eq!(
        o.fetch,
        FetchStats {
            requests: 7,
            payloads: 6,
            bytes: 300,
            retries: 0
        },
        "counters add up both attempts"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_are_bounded_and_the_failure_is_retryable() {
    let source = Arc::new(RefusingSource::new(u32::MAX));
    let (report, rec, state) = run_refusing(Arc::clone(&source)).await;
    assert_eq!(report.worst(), Some(ErrorClass::Retryable));
    assert_eq!(
        source.attempts.load(std::sync::atomic::Ordering::SeqCst),
        1 + MAX_UNIT_RESTARTS
    );
    let UnitStatus::Failed { message, .. } = &report.outcomes[0].status else {
        panic!("{report:?}")
    };
    assert!(
        message.contains("unit a")
            && message.contains("already restarted 2 times")
            && message.contains("NextToken expired) on attempt 3"),
        "{message}"
    );
    assert_eq!(
        report.outcomes[0].fetch.requests, 9,
        "every attempt's requests are counted"
    );
    assert!(state.load().await.unwrap().is_empty());
    let rec = rec.lock().unwrap();
    assert!(rec.committed.is_empty());
    assert_eq!(rec.aborted, ["a", "a", "a"]);
}

/// Sends a page, then waits as a source polling a slow export job does (an hour); counts the
/// pages, and notes when its fetch is dropped.
#[derive(Default)]
struct Watched {
    sent: std::sync::atomic::AtomicU64,
    dropped: Arc<std::sync::atomic::AtomicBool>,
}

struct SetOnDrop(Arc<std::sync::atomic::AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Source for Watched {
    fn kind(&self) -> &'static str {
        "watched"
    }
    fn plan(&self, _: &PlanRequest) -> Result<Plan, StageError> {
        Ok(Plan::default())
    }
    fn fetch<'a>(&'a self, _unit: &'a Unit, mut out: PayloadSender) -> BoxFuture<'a, Result<FetchStats, StageError>> {
        Box::pin(async move {
            let _guard = SetOnDrop(Arc::clone(&self.dropped));
            let meta = PayloadMeta {
                name: "page 10".into(),
                ..Default::default()
            };
            out.send_bytes(meta, Bytes::from("1,2,")).await?;
            self.sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(FetchStats::default())
        })
    }
}

/// A sink whose writer refuses every batch.
struct FullDisk(Arc<Mutex<Recorded>>);

struct FullDiskWriter(String, Arc<Mutex<Recorded>>);

impl Sink for FullDisk {
    fn location(&self) -> String {
        "full disk".into()
    }
    fn begin_unit<'a>(
        &'a self,
        unit: &'a Unit,
        _: SchemaRef,
    ) -> BoxFuture<'a, Result<Box<dyn UnitWriter>, StageError>> {
        let w = FullDiskWriter(unit.id.clone(), Arc::clone(&self.0));
        Box::pin(async move { Ok(Box::new(w) as Box<dyn UnitWriter>) })
    }
}

impl UnitWriter for FullDiskWriter {
    fn write(&mut self, _: RecordBatch) -> BoxFuture<'_, Result<(), StageError>> {
        Box::pin(async { Err(StageError::retryable("no space left on device")) })
    }
    fn commit(self: Box<Self>, _: UnitSummary) -> BoxFuture<'static, Result<CommitReport, StageError>> {
        Box::pin(async { panic!("a unit whose writes failed is never committed") })
    }
    fn abort(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move { self.1.lock().unwrap().aborted.push(self.0) })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_writer_stops_the_fetch_task_of_its_unit() {
    // Fetching runs as a task of its own: when the writer fails, that task must be stopped,
    // not left fetching for a unit that is already lost.
    let rec = Arc::new(Mutex::new(Recorded::default()));
    let source = Arc::new(Watched::default());
    let pipeline = numbers_pipeline(
        Arc::clone(&source) as Arc<dyn Source>,
        Arc::new(FullDisk(Arc::clone(&rec))),
        Arc::new(MemoryState::default()),
    );
    let report = tokio::time::timeout(
        Duration::from_secs(10),
        run(
            pipeline,
            vec![unit("a")],
            RunOptions::default(),
            CancellationToken::new(),
        ),
    )
    .await
    .expect("the run ends although the source never does");
    let UnitStatus::Failed { message, .. } = &report.outcomes[0].status else {
        panic!("{report:?}")
    };
    assert!(message.contains("no space left on device"), "{message}");
    assert_eq!(rec.lock().unwrap().aborted, ["a"]);
    // Aborting a task takes effect at its next await: here, within the hour-long wait.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        source.dropped.load(std::sync::atomic::Ordering::SeqCst),
        "the fetch was stopped, not left waiting"
    );
    assert_eq!(source.sent.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// Two writers that each hold their thread (as Parquet encoding does) until the other unit's
/// writer is writing too, or a deadline passes; `met` counts the writers that saw the other.
#[derive(Default)]
struct Rendezvous {
    writing: Mutex<usize>,
    arrived: std::sync::Condvar,
    met: std::sync::atomic::AtomicUsize,
}

/// `MemorySink` whose writers wait at the rendezvous on their first write.
struct BlockingSink(Arc<Rendezvous>, MemorySink);

struct BlockingWriter {
    meet: Arc<Rendezvous>,
    inner: Box<dyn UnitWriter>,
    waited: bool,
}

impl Sink for BlockingSink {
    fn location(&self) -> String {
        "blocking".into()
    }
    fn begin_unit<'a>(
        &'a self,
        unit: &'a Unit,
        schema: SchemaRef,
    ) -> BoxFuture<'a, Result<Box<dyn UnitWriter>, StageError>> {
        Box::pin(async move {
            let inner = self.1.begin_unit(unit, schema).await?;
            Ok(Box::new(BlockingWriter {
                meet: Arc::clone(&self.0),
                inner,
                waited: false,
            }) as Box<dyn UnitWriter>)
        })
    }
}

impl UnitWriter for BlockingWriter {
    fn write(&mut self, batch: RecordBatch) -> BoxFuture<'_, Result<(), StageError>> {
        if !self.waited {
            self.waited = true;
            // Synchronous on purpose: a writer that encodes holds the thread it is polled on.
            let mut writing = self.meet.writing.lock().unwrap();
            *writing += 1;
            self.meet.arrived.notify_all();
            let (writing, _) = self
                .meet
                .arrived
                .wait_timeout_while(writing, Duration::from_secs(5), |n| *n < 2)
                .unwrap();
            if *writing >= 2 {
                self.meet.met.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
        self.inner.write(batch)
    }
    fn commit(self: Box<Self>, summary: UnitSummary) -> BoxFuture<'static, Result<CommitReport, StageError>> {
        self.inner.commit(summary)
    }
    fn abort(self: Box<Self>) -> BoxFuture<'static, ()> {
        self.inner.abort()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn units_running_at_once_write_on_threads_of_their_own() {
    // Polled inside `run`'s own future, both units' writers would share the thread awaiting
    // `run`: the first to block would hold the second back until its deadline, and the two
    // would never write at the same time.
    let meet = Arc::new(Rendezvous::default());
    let rec = Arc::new(Mutex::new(Recorded::default()));
    let pipeline = numbers_pipeline(
        Arc::new(NumberSource {
            pages: 2,
            fail_at: None,
            poison: None,
        }),
        Arc::new(BlockingSink(Arc::clone(&meet), MemorySink(Arc::clone(&rec)))),
        Arc::new(MemoryState::default()),
    );
    let report = run(
        pipeline,
        vec![unit("a"), unit("b")],
        RunOptions::default(),
        CancellationToken::new(),
    )
    .await;
    assert!(report.worst().is_none(), "{report:?}");
    assert_eq!(
        meet.met.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "both writers wrote at once"
    );
    let rec = rec.lock().unwrap();
    assert_eq!(rec.committed.len(), 2);
    for (_, rows) in &rec.committed {
        assert_eq!(rows, &(0..20).collect::<Vec<i64>>());
    }
}

/// A sink whose writers panic on their first write (a bug in a sink).
struct PanickingSink;

struct PanickingWriter;

impl Sink for PanickingSink {
    fn location(&self) -> String {
        "panicking".into()
    }
    fn begin_unit<'a>(&'a self, _: &'a Unit, _: SchemaRef) -> BoxFuture<'a, Result<Box<dyn UnitWriter>, StageError>> {
        Box::pin(async { Ok(Box::new(PanickingWriter) as Box<dyn UnitWriter>) })
    }
}

impl UnitWriter for PanickingWriter {
    fn write(&mut self, _: RecordBatch) -> BoxFuture<'_, Result<(), StageError>> {
        panic!("sink bug")
    }
    fn commit(self: Box<Self>, _: UnitSummary) -> BoxFuture<'static, Result<CommitReport, StageError>> {
        Box::pin(async { panic!("a unit whose write panicked is never committed") })
    }
    fn abort(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_unit_is_an_internal_failure_that_stops_the_run() {
    let pipeline = numbers_pipeline(
        Arc::new(NumberSource {
            pages: 2,
            fail_at: None,
            poison: None,
        }),
        Arc::new(PanickingSink),
        Arc::new(MemoryState::default()),
    );
    let opts = RunOptions {
        unit_concurrency: 1,
        ..RunOptions::default()
    };
    let report = run(pipeline, vec![unit("a"), unit("b")], opts, CancellationToken::new()).await;
    match &report.outcomes[0].status {
        UnitStatus::Failed {
            class: ErrorClass::Internal,
            message,
        } => assert!(
            message.contains("ended abnormally") && message.contains("sink bug"),
            "{message}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(matches!(report.outcomes[1].status, UnitStatus::Cancelled), "{report:?}");
    assert_eq!(report.outcomes[0].unit.id, "a");
}
