//! One conformance suite, run on every backend the sink supports (in memory, on local disk, and
//! on a real S3-compatible server: moto, started from the project's `.venv` by
//! `scripts/s3_server.py`), in the spirit of object_store's own `integration.rs`: a behaviour
//! that holds on one store and not on another is a bug in the sink, not in the test.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use arrow_array::{Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{TimeZone, Utc};
use etl_core::{
    BadRecord, ErrorClass, Sink, StageError, StateStore, Unit, UnitRecord, UnitSummary, UnitWriter, Window,
};
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::layout::MICROS_PER_DAY;
use crate::s3_server;
use crate::{EnabledStatistics, Manifest, ParquetSink, ParquetSinkOptions};

/// 2025-09-11 and 2025-09-12, in days since the epoch.
const D1: i64 = 20_342;
const D2: i64 = 20_343;

/// A dataset root on one backend.
struct Fixture {
    store: Arc<dyn ObjectStore>,
    root: Path,
    /// The directory the store's root maps to, for local disk.
    local_root: Option<PathBuf>,
    /// The bucket, on the S3 server.
    bucket: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl Fixture {
    fn memory() -> Self {
        Self {
            store: Arc::new(InMemory::new()),
            root: Path::from("datasets/mail"),
            local_root: None,
            bucket: None,
            _dir: None,
        }
    }

    fn local() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root_dir = std::fs::canonicalize(dir.path()).unwrap();
        let store = LocalFileSystem::new_with_prefix(&root_dir).unwrap();
        Self {
            store: Arc::new(store),
            root: Path::from("datasets/mail"),
            local_root: Some(root_dir),
            bucket: None,
            _dir: Some(dir),
        }
    }

    /// A fresh bucket on the shared test S3 server.
    fn s3() -> Self {
        let endpoint = s3_server::endpoint();
        let bucket = s3_server::create_bucket();
        let store = object_store::aws::AmazonS3Builder::new()
            .with_endpoint(endpoint)
            .with_bucket_name(&bucket)
            .with_region("us-east-1")
            .with_access_key_id("test-key")
            .with_secret_access_key("test-secret")
            .with_allow_http(true)
            .build()
            .unwrap();
        Self {
            store: Arc::new(store),
            root: Path::from("datasets/mail"),
            local_root: None,
            bucket: Some(bucket),
            _dir: None,
        }
    }

    fn sink(&self, opts: ParquetSinkOptions) -> ParquetSink {
        ParquetSink::with_store(
            Arc::clone(&self.store),
            self.root.clone(),
            opts,
            self.local_root.clone(),
        )
    }

    /// Every object under the root, relative to it, sorted.
    async fn objects(&self) -> Vec<String> {
        let metas: Vec<_> = self.store.list(Some(&self.root)).try_collect().await.unwrap();
        let mut names: Vec<String> = metas
            .into_iter()
            .map(|m| {
                m.location
                    .prefix_match(&self.root)
                    .unwrap()
                    .map(|p| p.as_ref().to_string())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .collect();
        names.sort();
        names
    }

    /// The data files (what a `**/*.parquet` glob sees).
    async fn parquet_files(&self) -> Vec<String> {
        self.objects()
            .await
            .into_iter()
            .filter(|n| n.ends_with(".parquet"))
            .collect()
    }

    /// Every file on local disk under the root, including what object_store hides (staging
    /// files); empty for other backends.
    fn disk_files(&self) -> Vec<String> {
        let Some(local) = &self.local_root else {
            return Vec::new();
        };
        let base = self.root.parts().fold(local.clone(), |p, part| p.join(part.as_ref()));
        let mut out = Vec::new();
        let mut stack = vec![base.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for entry in entries {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    out.push(path.strip_prefix(&base).unwrap().to_string_lossy().replace('\\', "/"));
                }
            }
        }
        out.sort();
        out
    }

    fn location(&self, relative: &str) -> Path {
        self.root.parts().chain(Path::from(relative).parts()).collect()
    }

    async fn exists(&self, relative: &str) -> bool {
        match self.store.head(&self.location(relative)).await {
            Ok(_) => true,
            Err(object_store::Error::NotFound { .. }) => false,
            Err(e) => panic!("head {relative}: {e}"),
        }
    }

    async fn bytes(&self, relative: &str) -> bytes::Bytes {
        self.store
            .get(&self.location(relative))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
    }

    /// Reads a data file back with the parquet crate: its Arrow schema and all its rows.
    async fn read(&self, relative: &str) -> (SchemaRef, RecordBatch) {
        let builder = ParquetRecordBatchReaderBuilder::try_new(self.bytes(relative).await).unwrap();
        let schema = Arc::clone(builder.schema());
        let batches: Vec<RecordBatch> = builder.build().unwrap().collect::<Result<_, _>>().unwrap();
        (
            Arc::clone(&schema),
            arrow_select::concat::concat_batches(&schema, &batches).unwrap(),
        )
    }

    /// The `n` column of a data file.
    async fn ns(&self, relative: &str) -> Vec<i64> {
        let (_, batch) = self.read(relative).await;
        ns(&batch)
    }

    async fn intent_files(&self, unit_id: &str) -> Option<Vec<String>> {
        let relative = format!("_etl/intents/{unit_id}.json");
        if !self.exists(&relative).await {
            return None;
        }
        let intent: serde_json::Value = serde_json::from_slice(&self.bytes(&relative).await).unwrap();
        Some(
            intent["files"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect(),
        )
    }
}

fn time_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("delivered_at", time_type(), false),
        Field::new("n", DataType::Int64, false),
        Field::new("msg", DataType::Utf8, true),
    ]))
}

/// Rows `n` with the given times (µs); `msg` is varied text so files have a real size.
fn batch(rows: &[(i64, i64)]) -> RecordBatch {
    let times = TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.1)).with_timezone("UTC");
    let n = Int64Array::from_iter_values(rows.iter().map(|r| r.0));
    let msg = StringArray::from_iter_values(
        rows.iter()
            .map(|r| format!("message {} {:x}", r.0, r.0.wrapping_mul(2_654_435_761))),
    );
    RecordBatch::try_new(schema(), vec![Arc::new(times), Arc::new(n), Arc::new(msg)]).unwrap()
}

/// Rows `ns` on `day`, one second apart.
fn day_rows(day: i64, ns: std::ops::Range<i64>) -> Vec<(i64, i64)> {
    ns.map(|n| (n, day * MICROS_PER_DAY + n * 1_000_000)).collect()
}

fn ns(batch: &RecordBatch) -> Vec<i64> {
    batch
        .column_by_name("n")
        .unwrap()
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .values()
        .to_vec()
}

fn unit(id: &str) -> Unit {
    Unit {
        id: id.to_string(),
        window: Window::new(
            Utc.with_ymd_and_hms(2025, 9, 11, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(2025, 9, 13, 0, 0, 0).unwrap(),
        ),
        params: BTreeMap::new(),
        partitions: Vec::new(),
        provisional: false,
    }
}

fn opts() -> ParquetSinkOptions {
    ParquetSinkOptions {
        time_column: "delivered_at".into(),
        ..Default::default()
    }
}

/// Options that roll a file after roughly every batch of a few hundred rows.
fn small_files() -> ParquetSinkOptions {
    ParquetSinkOptions {
        max_file_size: 4 * 1024,
        row_group_rows: 100,
        ..opts()
    }
}

async fn begin(sink: &ParquetSink, unit: &Unit) -> Box<dyn UnitWriter> {
    sink.begin_unit(unit, schema()).await.unwrap()
}

async fn write_all(writer: &mut Box<dyn UnitWriter>, batches: Vec<RecordBatch>) {
    for b in batches {
        writer.write(b).await.unwrap();
    }
}

fn bad_record(line: u64) -> BadRecord {
    BadRecord {
        unit: "u".into(),
        payload: "page-1".into(),
        line,
        reason: "8 fields expected".into(),
        raw: "garbage".into(),
    }
}

// ---------------------------------------------------------------------------------------------

async fn two_days_land_in_two_dt_dirs(fx: Fixture) {
    let sink = fx.sink(opts());
    let mut w = begin(&sink, &unit("u")).await;
    // Both batches mix the two days, in a different order.
    let mut first = day_rows(D1, 0..3);
    first.extend(day_rows(D2, 100..102));
    let mut second = day_rows(D2, 102..104);
    second.extend(day_rows(D1, 3..5));
    write_all(&mut w, vec![batch(&first), batch(&second)]).await;
    let report = w.commit(UnitSummary::default()).await.unwrap();

    assert_eq!(
        report.files,
        vec!["dt=2025-09-11/u-0000.parquet", "dt=2025-09-12/u-0000.parquet"]
    );
    assert_eq!(fx.parquet_files().await, report.files);
    assert_eq!(report.rows, 9);

    let (file_schema, day1) = fx.read("dt=2025-09-11/u-0000.parquet").await;
    assert_eq!(ns(&day1), vec![0, 1, 2, 3, 4]);
    assert_eq!(fx.ns("dt=2025-09-12/u-0000.parquet").await, vec![100, 101, 102, 103]);
    // The rows themselves round-trip, not just their count.
    let expected = batch(&day_rows(D1, 0..5));
    assert_eq!(day1.columns(), expected.columns());

    let names: Vec<&str> = file_schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        names,
        vec!["delivered_at", "n", "msg"],
        "dt must not be stored inside the files"
    );
    assert_eq!(file_schema.field(0).data_type(), &time_type());

    // What DuckDB sees: TIMESTAMP(MICROS, isAdjustedToUTC=true), zstd.
    let builder = ParquetRecordBatchReaderBuilder::try_new(fx.bytes("dt=2025-09-11/u-0000.parquet").await).unwrap();
    let column = builder.parquet_schema().column(0);
    assert_eq!(
        column.logical_type_ref(),
        Some(&parquet::basic::LogicalType::timestamp(
            true,
            parquet::basic::TimeUnit::MICROS
        ))
    );
    let row_group = builder.metadata().row_group(0);
    assert!(matches!(
        row_group.column(0).compression(),
        parquet::basic::Compression::ZSTD(_)
    ));
    assert!(row_group.column(1).statistics().is_some(), "statistics are written");
}

async fn manifest_and_report_agree(fx: Fixture) {
    let sink = fx.sink(opts());
    let u = unit("u");
    let mut w = begin(&sink, &u).await;
    let mut rows = day_rows(D1, 0..10);
    rows.extend(day_rows(D2, 10..13));
    write_all(&mut w, vec![batch(&rows)]).await;
    let summary = UnitSummary {
        rows: 13,
        ..Default::default()
    };
    let report = w.commit(summary).await.unwrap();

    let manifest: Manifest = sink.read_manifest("u").await.unwrap().expect("manifest written");
    assert_eq!(manifest.unit, u);
    assert_eq!(manifest.rows, 13);
    assert_eq!(manifest.files.iter().map(|f| f.rows).collect::<Vec<_>>(), vec![10, 3]);
    assert_eq!(
        manifest.files.iter().map(|f| f.path.clone()).collect::<Vec<_>>(),
        report.files
    );
    for f in &manifest.files {
        let size = fx.store.head(&fx.location(&f.path)).await.unwrap().size;
        assert_eq!(f.bytes, size, "{}", f.path);
    }
    assert_eq!(report.rows, 13);
    assert_eq!(report.bytes, manifest.files.iter().map(|f| f.bytes).sum::<u64>());
    assert_eq!(report.bad_records, 0);
    assert!(fx.intent_files("u").await.is_none(), "intent removed at commit");
    assert!(sink.read_manifest("never").await.unwrap().is_none());
}

/// A sink whose first [`rolled_then_in_flight`] batch rolls a complete part and whose second
/// stays open; the upload buffer is tiny, so every upload is multipart.
fn rolling_sink(fx: &Fixture) -> ParquetSink {
    fx.sink(ParquetSinkOptions {
        max_file_size: 32 * 1024,
        row_group_rows: 100,
        ..opts()
    })
    .with_upload_buffer(256)
}

fn rolled_then_in_flight() -> Vec<RecordBatch> {
    vec![batch(&day_rows(D1, 0..3000)), batch(&day_rows(D1, 3000..3800))]
}

/// The open part is assembled in an anonymous spool file and uploaded when complete: nothing of
/// it is in the dataset yet, not even a staged upload.
fn assert_open_part_not_in_the_store(fx: &Fixture) {
    if fx.local_root.is_some() {
        assert!(
            fx.disk_files().iter().all(|f| !f.contains("u-0001")),
            "{:?}",
            fx.disk_files()
        );
    }
}

async fn abort_leaves_nothing(fx: Fixture) {
    let sink = rolling_sink(&fx);
    let mut w = begin(&sink, &unit("u")).await;
    write_all(&mut w, rolled_then_in_flight()).await;
    assert_eq!(
        fx.parquet_files().await,
        vec!["dt=2025-09-11/u-0000.parquet"],
        "a rolled part is complete"
    );
    assert_open_part_not_in_the_store(&fx);
    w.abort().await;
    assert_eq!(fx.parquet_files().await, Vec::<String>::new());
    assert!(fx.intent_files("u").await.is_none());
    assert!(
        fx.disk_files().iter().all(|f| !f.contains('#')),
        "{:?}",
        fx.disk_files()
    );
}

async fn crash_leftovers_are_removed_by_the_next_attempt(fx: Fixture) {
    let sink = rolling_sink(&fx);
    let u = unit("u");
    let mut w = begin(&sink, &u).await;
    write_all(&mut w, rolled_then_in_flight()).await;
    let intent = fx.intent_files("u").await.expect("intent written before the files");
    assert_eq!(
        intent,
        vec!["dt=2025-09-11/u-0000.parquet", "dt=2025-09-11/u-0001.parquet"]
    );
    assert_open_part_not_in_the_store(&fx);
    drop(w); // the crash

    // Nothing but completed parts the intent lists is visible.
    let visible = fx.parquet_files().await;
    assert!(!visible.is_empty());
    assert!(visible.iter().all(|f| intent.contains(f)), "{visible:?} vs {intent:?}");
    // A staged upload a killed process would have left (object_store removes its own on drop).
    let staged = if let Some(local) = &fx.local_root {
        let last = fx.location(intent.last().unwrap());
        let path = last.parts().fold(local.clone(), |p, part| p.join(part.as_ref()));
        let staged = PathBuf::from(format!("{}#7", path.display()));
        std::fs::create_dir_all(staged.parent().unwrap()).unwrap();
        std::fs::write(&staged, b"partial").unwrap();
        // And the staging file of a control object whose put was killed half-way.
        let intent = fx.location("_etl/intents/u.json");
        let intent = intent.parts().fold(local.clone(), |p, part| p.join(part.as_ref()));
        let staged_intent = PathBuf::from(format!("{}#3", intent.display()));
        std::fs::write(&staged_intent, b"{").unwrap();
        Some([staged, staged_intent])
    } else {
        None
    };

    let mut again = begin(&sink, &u).await;
    assert_eq!(
        fx.parquet_files().await,
        Vec::<String>::new(),
        "leftovers removed before writing"
    );
    assert!(fx.intent_files("u").await.is_none());
    for staged in staged.iter().flatten() {
        assert!(!staged.exists(), "staged upload {} removed", staged.display());
    }
    write_all(&mut again, vec![batch(&day_rows(D1, 0..5))]).await;
    let report = again.commit(UnitSummary::default()).await.unwrap();
    assert_eq!(report.files, vec!["dt=2025-09-11/u-0000.parquet"]);
    assert_eq!(fx.parquet_files().await, report.files);
    assert_eq!(fx.ns("dt=2025-09-11/u-0000.parquet").await, (0..5).collect::<Vec<_>>());
    assert!(
        fx.disk_files().iter().all(|f| !f.contains('#')),
        "{:?}",
        fx.disk_files()
    );
}

async fn multipart_uploads_complete_at_commit(fx: Fixture) {
    let sink = rolling_sink(&fx);
    let mut w = begin(&sink, &unit("u")).await;
    write_all(&mut w, rolled_then_in_flight()).await;
    assert_open_part_not_in_the_store(&fx);
    let report = w.commit(UnitSummary::default()).await.unwrap();
    assert_eq!(
        report.files,
        vec!["dt=2025-09-11/u-0000.parquet", "dt=2025-09-11/u-0001.parquet"]
    );
    assert_eq!(
        fx.ns("dt=2025-09-11/u-0000.parquet").await,
        (0..3000).collect::<Vec<_>>()
    );
    assert_eq!(
        fx.ns("dt=2025-09-11/u-0001.parquet").await,
        (3000..3800).collect::<Vec<_>>()
    );
    assert!(
        fx.disk_files().iter().all(|f| !f.contains('#')),
        "{:?}",
        fx.disk_files()
    );
}

async fn rewrite_with_fewer_parts_removes_old_parts(fx: Fixture) {
    let sink = fx.sink(small_files());
    let mut u = unit("u");
    u.provisional = true;
    let mut w = begin(&sink, &u).await;
    write_all(
        &mut w,
        (0..3).map(|i| batch(&day_rows(D1, i * 300..(i + 1) * 300))).collect(),
    )
    .await;
    let first = w.commit(UnitSummary::default()).await.unwrap();
    assert!(first.files.len() >= 3, "{:?}", first.files);

    let mut w = begin(&sink, &u).await;
    write_all(&mut w, vec![batch(&day_rows(D1, 5000..5010))]).await;
    let second = w.commit(UnitSummary::default()).await.unwrap();
    assert_eq!(second.files, vec!["dt=2025-09-11/u-0000.parquet"]);
    assert_eq!(fx.parquet_files().await, second.files);
    assert_eq!(
        fx.ns("dt=2025-09-11/u-0000.parquet").await,
        (5000..5010).collect::<Vec<_>>()
    );
    assert_eq!(sink.read_manifest("u").await.unwrap().unwrap().files.len(), 1);
}

async fn files_roll_by_size(fx: Fixture) {
    let sink = fx.sink(small_files());
    let mut w = begin(&sink, &unit("u")).await;
    write_all(
        &mut w,
        (0..5).map(|i| batch(&day_rows(D1, i * 300..(i + 1) * 300))).collect(),
    )
    .await;
    let report = w.commit(UnitSummary::default()).await.unwrap();
    assert!(report.files.len() >= 3, "{:?}", report.files);
    let expected: Vec<String> = (0..report.files.len())
        .map(|p| format!("dt=2025-09-11/u-{p:04}.parquet"))
        .collect();
    assert_eq!(report.files, expected);
    let mut all = Vec::new();
    for f in &report.files {
        all.extend(fx.ns(f).await);
    }
    assert_eq!(all, (0..1500).collect::<Vec<_>>(), "every row once, in order");
    assert_eq!(report.rows, 1500);
}

async fn least_recently_used_file_is_closed(fx: Fixture) {
    let sink = fx.sink(ParquetSinkOptions {
        max_open_files: 1,
        ..opts()
    });
    let mut w = begin(&sink, &unit("u")).await;
    write_all(
        &mut w,
        vec![
            batch(&day_rows(D1, 0..3)),
            batch(&day_rows(D2, 100..103)),
            batch(&day_rows(D1, 3..6)),
            batch(&day_rows(D2, 103..106)),
        ],
    )
    .await;
    let report = w.commit(UnitSummary::default()).await.unwrap();
    assert_eq!(
        report.files,
        vec![
            "dt=2025-09-11/u-0000.parquet",
            "dt=2025-09-12/u-0000.parquet",
            "dt=2025-09-11/u-0001.parquet",
            "dt=2025-09-12/u-0001.parquet",
        ]
    );
    assert_eq!(fx.ns("dt=2025-09-11/u-0000.parquet").await, vec![0, 1, 2]);
    assert_eq!(fx.ns("dt=2025-09-11/u-0001.parquet").await, vec![3, 4, 5]);
    assert_eq!(fx.ns("dt=2025-09-12/u-0000.parquet").await, vec![100, 101, 102]);
    assert_eq!(fx.ns("dt=2025-09-12/u-0001.parquet").await, vec![103, 104, 105]);
    assert_eq!(report.rows, 12);
}

async fn unit_partitions_come_before_dt(fx: Fixture) {
    let sink = fx.sink(opts());
    let mut u = unit("cdn-example.com-2025-09-11");
    u.partitions = vec![
        ("domain".into(), "example.com".into()),
        ("region".into(), "ap-1".into()),
    ];
    // The batch carries a `domain` column too: it must not end up inside the file.
    let with_domain = Arc::new(Schema::new(
        schema()
            .fields()
            .iter()
            .cloned()
            .chain([Arc::new(Field::new("domain", DataType::Utf8, false))])
            .collect::<Vec<_>>(),
    ));
    let mut w = sink.begin_unit(&u, Arc::clone(&with_domain)).await.unwrap();
    let base = batch(&day_rows(D1, 0..2));
    let mut columns = base.columns().to_vec();
    columns.push(Arc::new(StringArray::from(vec!["example.com"; 2])));
    w.write(RecordBatch::try_new(with_domain, columns).unwrap())
        .await
        .unwrap();
    let report = w.commit(UnitSummary::default()).await.unwrap();
    let path = "domain=example.com/region=ap-1/dt=2025-09-11/cdn-example.com-2025-09-11-0000.parquet";
    assert_eq!(report.files, vec![path]);
    let (file_schema, rows) = fx.read(path).await;
    assert!(file_schema.column_with_name("domain").is_none());
    assert_eq!(ns(&rows), vec![0, 1]);

    for (key, value) in [
        ("domain", "../etc"),
        ("domain", "a/b"),
        ("dom ain", "x"),
        ("dt", "2025-09-11"),
        ("domain", ""),
    ] {
        let mut bad = unit("u");
        bad.partitions = vec![(key.into(), value.into())];
        let err = sink
            .begin_unit(&bad, schema())
            .await
            .err()
            .expect("unsafe partition refused");
        assert_eq!(err.class(), ErrorClass::Permanent, "{err}");
        assert!(err.to_string().contains("not a safe path segment"), "{err}");
    }
    let mut bad = unit("../u");
    bad.partitions.clear();
    assert!(sink.begin_unit(&bad, schema()).await.is_err());
    assert_eq!(fx.objects().await.iter().filter(|o| o.contains("etc")).count(), 0);
}

async fn dead_letter_is_written_then_removed(fx: Fixture) {
    let sink = fx.sink(opts());
    let u = unit("u");
    let w = begin(&sink, &u).await;
    let bad = vec![bad_record(3), bad_record(9)];
    let report = w
        .commit(UnitSummary {
            bad_records: bad.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(report.bad_records, 2);
    let text = String::from_utf8(fx.bytes("_etl/dead_letter/u.jsonl").await.to_vec()).unwrap();
    let lines: Vec<BadRecord> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines, bad);

    let w = begin(&sink, &u).await;
    w.commit(UnitSummary::default()).await.unwrap();
    assert!(
        !fx.exists("_etl/dead_letter/u.jsonl").await,
        "a clean rerun removes the old dead letters"
    );
}

async fn state_records_round_trip(fx: Fixture) {
    let sink = fx.sink(opts());
    let state = sink.state_store();
    assert!(state.load().await.unwrap().is_empty());

    let mut records = Vec::new();
    for id in ["u-1", "u-2"] {
        let u = unit(id);
        let mut w = begin(&sink, &u).await;
        w.write(batch(&day_rows(D1, 0..2))).await.unwrap();
        let report = w.commit(UnitSummary::default()).await.unwrap();
        let record = UnitRecord {
            unit: u,
            committed_at: Utc::now(),
            report,
        };
        state.mark_done(&record).await.unwrap();
        records.push(record);
    }
    let loaded = state.load().await.unwrap();
    assert_eq!(loaded.len(), 2);
    assert_eq!(loaded["u-1"], records[0]);
    assert_eq!(loaded["u-2"], records[1]);
    assert!(fx.exists("_etl/state/u-1.json").await);
    // Marking again (a provisional unit rewritten) replaces the record.
    let mut again = records[0].clone();
    again.report.rows = 99;
    state.mark_done(&again).await.unwrap();
    assert_eq!(state.load().await.unwrap()["u-1"].report.rows, 99);
}

async fn checkpoints_round_trip_and_clear(fx: Fixture) {
    let sink = fx.sink(opts());
    let state = sink.state_store();
    assert_eq!(state.load_checkpoint("u-1").await.unwrap(), None);
    let job = serde_json::json!({"job_id": 19771824, "start": "20250911"});
    state.save_checkpoint("u-1", &job).await.unwrap();
    assert!(fx.exists("_etl/checkpoints/u-1.json").await);
    assert_eq!(state.load_checkpoint("u-1").await.unwrap(), Some(job));
    // A checkpoint is not a done unit.
    assert!(state.load().await.unwrap().is_empty());
    state.clear_checkpoint("u-1").await.unwrap();
    state.clear_checkpoint("u-1").await.unwrap();
    assert_eq!(state.load_checkpoint("u-1").await.unwrap(), None);
    assert!(state.save_checkpoint("../x", &serde_json::json!(1)).await.is_err());
}

async fn zero_rows_commit_no_files(fx: Fixture) {
    let sink = fx.sink(opts());
    let mut w = begin(&sink, &unit("u")).await;
    w.write(batch(&[])).await.unwrap();
    let report = w.commit(UnitSummary::default()).await.unwrap();
    assert!(report.files.is_empty());
    assert_eq!((report.rows, report.bytes), (0, 0));
    assert_eq!(fx.parquet_files().await, Vec::<String>::new());
    let manifest = sink
        .read_manifest("u")
        .await
        .unwrap()
        .expect("manifest even for an empty unit");
    assert!(manifest.files.is_empty());
    assert_eq!(manifest.rows, 0);
}

async fn bad_time_values_and_schemas_are_refused(fx: Fixture) {
    let sink = fx.sink(opts());
    // A null time.
    let nullable = Arc::new(Schema::new(vec![
        Field::new("delivered_at", time_type(), true),
        Field::new("n", DataType::Int64, false),
        Field::new("msg", DataType::Utf8, true),
    ]));
    let mut w = sink.begin_unit(&unit("u"), Arc::clone(&nullable)).await.unwrap();
    let with_null = RecordBatch::try_new(
        nullable,
        vec![
            Arc::new(TimestampMicrosecondArray::from(vec![Some(D1 * MICROS_PER_DAY), None]).with_timezone("UTC")),
            Arc::new(Int64Array::from(vec![1, 2])),
            Arc::new(StringArray::from(vec!["a", "b"])),
        ],
    )
    .unwrap();
    let err: StageError = w.write(with_null).await.unwrap_err();
    assert!(err.to_string().contains("delivered_at"), "{err}");
    assert!(err.to_string().contains("null"), "{err}");
    assert_eq!(err.class(), ErrorClass::Permanent);
    w.abort().await;

    // Nanoseconds, local time, or a missing column: refused before anything is written.
    for data_type in [
        DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
        DataType::Timestamp(TimeUnit::Microsecond, None),
        DataType::Utf8,
    ] {
        let s = Arc::new(Schema::new(vec![Field::new("delivered_at", data_type.clone(), false)]));
        let err = sink.begin_unit(&unit("u"), s).await.err().expect("refused");
        assert!(err.to_string().contains("delivered_at"), "{data_type}: {err}");
    }
    let s = Arc::new(Schema::new(vec![Field::new("other", time_type(), false)]));
    assert!(sink.begin_unit(&unit("u"), s).await.is_err());

    // A batch that does not match the unit's schema.
    let mut w = begin(&sink, &unit("u")).await;
    let narrow = Arc::new(Schema::new(vec![Field::new("delivered_at", time_type(), false)]));
    let times = TimestampMicrosecondArray::from(vec![D1 * MICROS_PER_DAY]).with_timezone("UTC");
    let err = w
        .write(RecordBatch::try_new(narrow, vec![Arc::new(times)]).unwrap())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("differ"), "{err}");
    w.abort().await;
    assert_eq!(fx.parquet_files().await, Vec::<String>::new());
}

// --- Two workers, one dataset -----------------------------------------------------------------

fn claimed(claim: etl_core::Claim) -> Box<dyn etl_core::Lease> {
    match claim {
        etl_core::Claim::Held(lease) => lease,
        other => panic!("expected a held claim, got {other:?}"),
    }
}

async fn a_claimed_unit_waits_and_is_not_written_twice(fx: Fixture) {
    let since = Utc::now();
    let worker_a = fx.sink(opts());
    let worker_b = fx.sink(opts());
    let u = unit("u");
    let lease = claimed(worker_a.state_store().claim(&u, since).await.unwrap());
    assert!(fx.exists("_etl/claims/u.json").await);

    // Worker B asks for the same unit: it waits while A holds it.
    let state_b = worker_b.state_store();
    let u_b = u.clone();
    let waiting = tokio::spawn(async move { state_b.claim(&u_b, since).await });
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(!waiting.is_finished(), "B must wait while A holds the claim");

    // A writes and commits, then releases.
    let mut w = begin(&worker_a, &u).await;
    w.write(batch(&day_rows(D1, 0..5))).await.unwrap();
    let report = w.commit(UnitSummary::default()).await.unwrap();
    let record = UnitRecord {
        unit: u.clone(),
        committed_at: Utc::now(),
        report,
    };
    worker_a.state_store().mark_done(&record).await.unwrap();
    // No check that the claim object is gone here: B, polling, may create its own at once
    // (then finds the state and gives it up, checked below).
    lease.release().await;

    // B then learns that the unit is committed and writes nothing.
    match waiting.await.unwrap().unwrap() {
        etl_core::Claim::CommittedElsewhere(r) => assert_eq!(r, record),
        other => panic!("B should find the unit committed, got {other:?}"),
    }
    assert!(!fx.exists("_etl/claims/u.json").await, "B holds nothing");
    assert_eq!(fx.parquet_files().await, vec!["dt=2025-09-11/u-0000.parquet"]);

    // A provisional unit committed before this run started is written again.
    let mut open = unit("open");
    open.provisional = true;
    let old = UnitRecord {
        unit: open.clone(),
        committed_at: since - chrono::Duration::hours(1),
        report: Default::default(),
    };
    worker_a.state_store().mark_done(&old).await.unwrap();
    claimed(worker_b.state_store().claim(&open, since).await.unwrap())
        .release()
        .await;
}

async fn a_claim_left_by_a_dead_process_is_taken_over(fx: Fixture) {
    let sink = fx.sink(opts());
    let u = unit("u");
    // Written by a process of this host that is gone (pid far beyond pid_max).
    let mine = claimed(sink.state_store().claim(&u, Utc::now()).await.unwrap());
    let mut body: serde_json::Value = serde_json::from_slice(&fx.bytes("_etl/claims/u.json").await).unwrap();
    mine.release().await;
    body["pid"] = serde_json::json!(u32::MAX - 7);
    body["owner"] = serde_json::json!("crashed-worker");
    fx.store
        .put(
            &fx.location("_etl/claims/u.json"),
            serde_json::to_vec(&body).unwrap().into(),
        )
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let lease = claimed(sink.state_store().claim(&u, Utc::now()).await.unwrap());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "no wait for a dead holder"
    );
    let now: serde_json::Value = serde_json::from_slice(&fx.bytes("_etl/claims/u.json").await).unwrap();
    assert_ne!(now["owner"], "crashed-worker");
    lease.release().await;

    // Another host's claim: respected until it expires, then taken over.
    body["host"] = serde_json::json!("another-host");
    body["expires_at"] = serde_json::json!((Utc::now() + chrono::Duration::seconds(2)).to_rfc3339());
    fx.store
        .put(
            &fx.location("_etl/claims/u.json"),
            serde_json::to_vec(&body).unwrap().into(),
        )
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let lease = claimed(sink.state_store().claim(&u, Utc::now()).await.unwrap());
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(1000),
        "a live claim of another host is waited for ({:?})",
        started.elapsed()
    );
    assert!(!lease.lost().is_cancelled());
    lease.release().await;
}

async fn a_commit_that_lost_the_race_keeps_the_winner(fx: Fixture) {
    // Two attempts that bypass claims (a holder that did not notice it lost its claim).
    let sink = fx.sink(opts());
    let u = unit("u");
    let mut first = begin(&sink, &u).await;
    let mut second = begin(&sink, &u).await;
    first.write(batch(&day_rows(D1, 0..5))).await.unwrap();
    second.write(batch(&day_rows(D1, 0..5))).await.unwrap();
    let report = first.commit(UnitSummary::default()).await.unwrap();
    let err = second.commit(UnitSummary::default()).await.unwrap_err();
    assert!(err.to_string().contains("another worker committed it"), "{err}");
    assert_eq!(err.class(), ErrorClass::Retryable);
    // The winner's data and manifest stand.
    assert_eq!(fx.parquet_files().await, report.files);
    assert_eq!(fx.ns("dt=2025-09-11/u-0000.parquet").await, (0..5).collect::<Vec<_>>());
    let manifest: Manifest = serde_json::from_slice(&fx.bytes("_etl/manifests/u.json").await).unwrap();
    assert_eq!(manifest.rows, 5);
}

async fn a_failed_part_aborts_the_upload(fx: Fixture) {
    let failing = Arc::new(FailingParts::new(Arc::clone(&fx.store)));
    let store: Arc<dyn ObjectStore> = failing.clone();
    let sink = ParquetSink::with_store(store, fx.root.clone(), opts(), fx.local_root.clone()).with_upload_buffer(256);
    let u = unit("u");
    let rows = day_rows(D1, 0..4000);
    let mut w = begin(&sink, &u).await;
    let written = w.write(batch(&rows)).await;
    let result = match written {
        Ok(()) => w.commit(UnitSummary::default()).await.map(|_| ()),
        Err(e) => {
            w.abort().await;
            Err(e)
        }
    };
    let err = result.unwrap_err();
    assert!(
        err.to_string().contains("u-0000.parquet"),
        "the error names the file: {err}"
    );
    assert!(failing.failed(), "a part upload was failed");
    assert_eq!(
        fx.parquet_files().await,
        Vec::<String>::new(),
        "no object at the final key"
    );
    if let Some(bucket) = &fx.bucket {
        assert_eq!(
            s3_server::uploads_in_progress(bucket),
            Vec::<String>::new(),
            "the multipart upload was aborted"
        );
    }
    assert!(
        fx.disk_files().iter().all(|f| !f.contains('#')),
        "{:?}",
        fx.disk_files()
    );

    // The next attempt (the store healthy again) commits the unit.
    failing.disarm();
    let mut w = begin(&sink, &u).await;
    w.write(batch(&rows)).await.unwrap();
    let report = w.commit(UnitSummary::default()).await.unwrap();
    assert_eq!(report.rows, 4000);
    assert_eq!(
        fx.ns("dt=2025-09-11/u-0000.parquet").await,
        (0..4000).collect::<Vec<_>>()
    );
}

/// An object store whose second multipart part fails, as a server answering an UploadPart with
/// an error after object_store's own retries.
#[derive(Debug)]
struct FailingParts {
    inner: Arc<dyn ObjectStore>,
    armed: Arc<std::sync::atomic::AtomicBool>,
    failed: Arc<std::sync::atomic::AtomicBool>,
}

impl FailingParts {
    fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self {
            inner,
            armed: Arc::new(true.into()),
            failed: Arc::new(false.into()),
        }
    }
    fn disarm(&self) {
        self.armed.store(false, std::sync::atomic::Ordering::SeqCst);
    }
    fn failed(&self) -> bool {
        self.failed.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl std::fmt::Display for FailingParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FailingParts({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for FailingParts {
    async fn put_opts(
        &self,
        location: &Path,
        payload: object_store::PutPayload,
        opts: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(FailingUpload {
            inner,
            parts: 0,
            armed: Arc::clone(&self.armed),
            failed: Arc::clone(&self.failed),
        }))
    }
    async fn get_opts(
        &self,
        location: &Path,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        self.inner.get_opts(location, options).await
    }
    fn delete_stream(
        &self,
        locations: futures::stream::BoxStream<'static, object_store::Result<Path>>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }
    fn list(
        &self,
        prefix: Option<&Path>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<object_store::ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(&self, from: &Path, to: &Path, options: object_store::CopyOptions) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[derive(Debug)]
struct FailingUpload {
    inner: Box<dyn object_store::MultipartUpload>,
    parts: usize,
    armed: Arc<std::sync::atomic::AtomicBool>,
    failed: Arc<std::sync::atomic::AtomicBool>,
}

#[async_trait::async_trait]
impl object_store::MultipartUpload for FailingUpload {
    fn put_part(&mut self, data: object_store::PutPayload) -> object_store::UploadPart {
        self.parts += 1;
        if self.parts == 2 && self.armed.load(std::sync::atomic::Ordering::SeqCst) {
            self.failed.store(true, std::sync::atomic::Ordering::SeqCst);
            return Box::pin(async {
                Err(object_store::Error::Generic {
                    store: "S3",
                    source: "UploadPart: 500 Internal Error (injected)".into(),
                })
            });
        }
        self.inner.put_part(data)
    }
    async fn complete(&mut self) -> object_store::Result<object_store::PutResult> {
        self.inner.complete().await
    }
    async fn abort(&mut self) -> object_store::Result<()> {
        self.inner.abort().await
    }
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(super::Fixture::memory()).await
            })*
        }
        mod local {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(super::Fixture::local()).await
            })*
        }
        mod s3 {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(super::Fixture::s3()).await
            })*
        }
    };
}

conformance!(
    two_days_land_in_two_dt_dirs,
    manifest_and_report_agree,
    abort_leaves_nothing,
    crash_leftovers_are_removed_by_the_next_attempt,
    multipart_uploads_complete_at_commit,
    rewrite_with_fewer_parts_removes_old_parts,
    files_roll_by_size,
    least_recently_used_file_is_closed,
    unit_partitions_come_before_dt,
    dead_letter_is_written_then_removed,
    state_records_round_trip,
    checkpoints_round_trip_and_clear,
    zero_rows_commit_no_files,
    bad_time_values_and_schemas_are_refused,
    a_claimed_unit_waits_and_is_not_written_twice,
    a_claim_left_by_a_dead_process_is_taken_over,
    a_commit_that_lost_the_race_keeps_the_winner,
    a_failed_part_aborts_the_upload,
);

/// The writer's statistics and dictionary settings, read back from the file's metadata: page
/// statistics come with a page index, chunk statistics without one, none with neither; a
/// dictionary page exists exactly for the columns that keep a dictionary. The rows read back
/// are the same whatever the encoding.
#[tokio::test]
async fn statistics_and_dictionary_follow_the_options() {
    struct Want {
        stats: bool,
        page_index: bool,
        dictionary: [bool; 3],
    }
    let cases = [
        (
            opts(),
            Want {
                stats: true,
                page_index: true,
                dictionary: [true; 3],
            },
        ),
        (
            ParquetSinkOptions {
                statistics: EnabledStatistics::Chunk,
                ..opts()
            },
            Want {
                stats: true,
                page_index: false,
                dictionary: [true; 3],
            },
        ),
        (
            ParquetSinkOptions {
                statistics: EnabledStatistics::None,
                ..opts()
            },
            Want {
                stats: false,
                page_index: false,
                dictionary: [true; 3],
            },
        ),
        (
            ParquetSinkOptions {
                dictionary: false,
                ..opts()
            },
            Want {
                stats: true,
                page_index: true,
                dictionary: [false; 3],
            },
        ),
        (
            ParquetSinkOptions {
                plain_columns: vec!["msg".into()],
                ..opts()
            },
            Want {
                stats: true,
                page_index: true,
                dictionary: [true, true, false],
            },
        ),
    ];
    let rows = batch(&day_rows(D1, 0..50));
    for (options, want) in cases {
        let label = format!("{options:?}");
        let fx = Fixture::memory();
        let sink = fx.sink(options);
        let mut w = begin(&sink, &unit("u")).await;
        write_all(&mut w, vec![rows.clone()]).await;
        w.commit(UnitSummary::default()).await.unwrap();

        let builder = ParquetRecordBatchReaderBuilder::try_new(fx.bytes("dt=2025-09-11/u-0000.parquet").await).unwrap();
        let row_group = builder.metadata().row_group(0);
        for (i, dictionary) in want.dictionary.iter().enumerate() {
            let column = row_group.column(i);
            assert_eq!(
                column.statistics().is_some(),
                want.stats,
                "column {i} statistics, {label}"
            );
            assert_eq!(
                column.column_index_offset().is_some(),
                want.page_index,
                "column {i} page index, {label}"
            );
            assert_eq!(
                column.dictionary_page_offset().is_some(),
                *dictionary,
                "column {i} dictionary, {label}"
            );
        }
        let read: Vec<RecordBatch> = builder.build().unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(read.len(), 1, "{label}");
        assert_eq!(read[0].columns(), rows.columns(), "{label}");
    }
}

/// A `plain_columns` name the files do not have fails the unit before anything is written,
/// naming the column and the ones there are.
#[tokio::test]
async fn an_unknown_plain_column_is_refused_by_name() {
    let fx = Fixture::memory();
    let sink = fx.sink(ParquetSinkOptions {
        plain_columns: vec!["message_id".into()],
        ..opts()
    });
    let err = sink.begin_unit(&unit("u"), schema()).await.err().expect("refused");
    assert_eq!(
        err.to_string(),
        "parquet sink options: plain_columns: `message_id` is not a column of the files (columns: delivered_at, n, msg)"
    );
    assert!(fx.parquet_files().await.is_empty());
}
