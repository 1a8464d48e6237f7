//! Newline-delimited JSON on standard output or appended to a local file: the debugging sink.
//!
//! It exists for two reasons. While a pipeline is being set up, a person wants to *see* the
//! records (`sink: {type: jsonl}` in a pipeline file, `etl preview --json`), pipe them into
//! `jq`, or diff two runs, without a Parquet reader at hand. And a second implementation of
//! [`Sink`]/[`UnitWriter`] keeps that contract honest: nothing in the runner may assume Parquet.
//!
//! One JSON object per record and line, keys in schema order, every column present (a null is
//! written as `null`, so every line has the same keys). Timestamps are RFC 3339 strings in UTC
//! (`"2025-09-11T00:00:05.123456Z"`, sub-second digits only when there are some), lists are
//! arrays, structs are objects, dictionary columns are their values. The unit's partition
//! values (`domain`, `traffic_type`, ...) are directories for the Parquet sink; here they are
//! added as string fields after the record's columns, unless the record already has a column
//! of that name, so that lines from several partitions can still be told apart. `dt` is not
//! added: it is the date of the time column, which every line carries.
//!
//! # Not exactly once
//! This sink trades the Parquet sink's guarantees for immediacy. A batch is written through as
//! soon as it arrives; `commit` flushes (for a file: `fsync`) and reports what the unit wrote;
//! `abort` writes nothing more, but lines already written cannot be taken back (standard output
//! has gone to its reader; a file keeps them). Units running at the same time interleave their
//! lines batch by batch (never within a line). A file is appended to, never truncated, so a
//! rerun appends the records again. The state store that goes with this sink is in memory (see
//! the binary's registry): every run fetches its whole range again.
//!
//! ```no_run
//! # async fn demo(unit: etl_core::Unit, batch: arrow_array::RecordBatch) -> Result<(), Box<dyn std::error::Error>> {
//! use etl_core::{Sink, UnitSummary};
//! use etl_sink::JsonlSink;
//!
//! let sink = JsonlSink::open(Some("./out.jsonl"))?; // or JsonlSink::stdout()
//! let mut writer = sink.begin_unit(&unit, batch.schema()).await?;
//! writer.write(batch).await?;
//! let report = writer.commit(UnitSummary::default()).await?;
//! assert_eq!(report.files, ["./out.jsonl"]);
//! # Ok(()) }
//! ```

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_json::LineDelimitedWriter;
use arrow_json::writer::WriterBuilder;
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};
use etl_core::{CommitReport, ErrorClass, Sink, StageError, Unit, UnitSummary, UnitWriter};
use futures::future::BoxFuture;
use tokio::sync::OnceCell;

/// Where the lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JsonlTarget {
    /// The process's standard output.
    Stdout,
    /// A local file, created if missing (with its parent directories) and appended to.
    File(PathBuf),
}

impl JsonlTarget {
    /// Reads a sink URL: absent or `-` is standard output; `file:///path` or a plain local path
    /// is a file. Other schemes are refused: this sink writes to this machine only.
    pub fn parse(url: Option<&str>) -> Result<Self, JsonlError> {
        let Some(url) = url else {
            return Ok(JsonlTarget::Stdout);
        };
        let refuse = |reason: &str| JsonlError::Location {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let trimmed = url.trim();
        if trimmed == "-" {
            return Ok(JsonlTarget::Stdout);
        }
        if trimmed.is_empty() {
            return Err(refuse(
                "must not be empty; expected `-` (standard output), a local path or a file:// URL",
            ));
        }
        match trimmed.split_once("://") {
            Some((scheme, path)) if scheme.eq_ignore_ascii_case("file") => {
                if path.is_empty() {
                    Err(refuse("names no file"))
                } else {
                    Ok(JsonlTarget::File(PathBuf::from(path)))
                }
            }
            Some((scheme, _)) => Err(refuse(&format!(
                "unsupported URL scheme `{scheme}`; the jsonl sink writes to `-` (standard output), a local path or a file:// URL"
            ))),
            None => Ok(JsonlTarget::File(PathBuf::from(trimmed))),
        }
    }

    /// `stdout`, or the file's path as given.
    pub fn describe(&self) -> String {
        match self {
            JsonlTarget::Stdout => "stdout".to_string(),
            JsonlTarget::File(path) => path.display().to_string(),
        }
    }
}

/// What can go wrong while writing JSON lines.
#[derive(Debug, thiserror::Error)]
pub enum JsonlError {
    /// The sink URL cannot be used.
    #[error("jsonl sink url {url:?}: {reason}")]
    Location { url: String, reason: String },
    /// Opening, writing or syncing the output.
    #[error("{what} {location}")]
    Io {
        what: &'static str,
        location: String,
        #[source]
        source: io::Error,
    },
    /// Turning a batch into JSON (a type arrow-json cannot encode: a bug, the schemas are ours).
    #[error("unit {unit}: encoding a batch as JSON")]
    Encode {
        unit: String,
        #[source]
        source: ArrowError,
    },
    /// A batch whose columns are not the unit's schema.
    #[error("unit {unit}: {reason}")]
    Schema { unit: String, reason: String },
}

impl JsonlError {
    /// How the runner should treat this failure: a bad URL or batch fails the same way every
    /// time; a failing disk or a closed standard output is the environment.
    pub fn class(&self) -> ErrorClass {
        match self {
            JsonlError::Location { .. } | JsonlError::Schema { .. } => ErrorClass::Permanent,
            JsonlError::Io { .. } | JsonlError::Encode { .. } => ErrorClass::Internal,
        }
    }
}

impl From<JsonlError> for StageError {
    fn from(e: JsonlError) -> Self {
        StageError::new(e.class(), e)
    }
}

/// The opened output, shared by every unit of the sink.
#[derive(Debug)]
enum Output {
    Stdout,
    File(File),
}

impl Output {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            // Locked per batch, so that the lines of a batch are never split by other output.
            Output::Stdout => io::stdout().lock().write_all(bytes),
            Output::File(f) => f.write_all(bytes),
        }
    }

    /// Makes everything written so far reach its reader (stdout) or the disk (a file).
    fn flush_durable(&mut self) -> io::Result<()> {
        match self {
            Output::Stdout => io::stdout().lock().flush(),
            Output::File(f) => f.sync_data(),
        }
    }
}

type SharedOutput = Arc<Mutex<Output>>;

/// Writes every unit as JSON lines to one target. See the module documentation for what it
/// does and does not guarantee.
#[derive(Debug)]
pub struct JsonlSink {
    target: JsonlTarget,
    /// Opened by the first `begin_unit`, so that building the sink touches nothing.
    out: OnceCell<SharedOutput>,
}

impl JsonlSink {
    /// A sink for `url` (see [`JsonlTarget::parse`]). Opens nothing yet: the file is created
    /// by the first unit.
    pub fn open(url: Option<&str>) -> Result<Self, JsonlError> {
        Ok(Self::new(JsonlTarget::parse(url)?))
    }

    /// A sink writing to standard output.
    pub fn stdout() -> Self {
        Self::new(JsonlTarget::Stdout)
    }

    pub fn new(target: JsonlTarget) -> Self {
        Self {
            target,
            out: OnceCell::new(),
        }
    }

    pub fn target(&self) -> &JsonlTarget {
        &self.target
    }

    async fn output(&self) -> Result<SharedOutput, JsonlError> {
        self.out
            .get_or_try_init(|| async {
                let output = match &self.target {
                    JsonlTarget::Stdout => Output::Stdout,
                    JsonlTarget::File(path) => {
                        let path = path.clone();
                        blocking(move || open_append(&path)).await?.map(Output::File)?
                    }
                };
                Ok(Arc::new(Mutex::new(output)))
            })
            .await
            .cloned()
    }
}

/// Opens `path` for appending, creating it and its parent directories.
fn open_append(path: &Path) -> Result<File, JsonlError> {
    let io_error = |what, source| JsonlError::Io {
        what,
        location: path.display().to_string(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| io_error("creating the parent directories of", e))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| io_error("opening for appending", e))
}

/// Runs file and terminal I/O off the async workers: a slow disk or a reader of standard
/// output that does not keep up must not stall the network side.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, JsonlError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| JsonlError::Io {
        what: "joining the writer thread of",
        location: "the jsonl sink".to_string(),
        source: io::Error::other(e.to_string()),
    })
}

impl Sink for JsonlSink {
    fn location(&self) -> String {
        self.target.describe()
    }

    fn begin_unit<'a>(
        &'a self,
        unit: &'a Unit,
        schema: SchemaRef,
    ) -> BoxFuture<'a, Result<Box<dyn UnitWriter>, StageError>> {
        Box::pin(async move {
            let out = self.output().await?;
            // The unit's partition values, for columns the records do not have.
            let partitions: Vec<(String, String)> = unit
                .partitions
                .iter()
                .filter(|(key, _)| schema.column_with_name(key).is_none())
                .cloned()
                .collect();
            let writer: Box<dyn UnitWriter> = Box::new(JsonlUnitWriter {
                unit: unit.id.clone(),
                location: self.target.describe(),
                file: match &self.target {
                    JsonlTarget::Stdout => None,
                    JsonlTarget::File(path) => Some(path.display().to_string()),
                },
                schema,
                partitions,
                out,
                rows: 0,
                bytes: 0,
            });
            Ok(writer)
        })
    }
}

/// One unit's writer: encodes each batch and writes it through at once.
struct JsonlUnitWriter {
    unit: String,
    location: String,
    /// The file the lines go to, reported by `commit`; `None` for standard output.
    file: Option<String>,
    schema: SchemaRef,
    partitions: Vec<(String, String)>,
    out: SharedOutput,
    rows: u64,
    bytes: u64,
}

impl JsonlUnitWriter {
    /// Refuses a batch whose columns are not the unit's (names and types, in order).
    fn check_schema(&self, batch: &RecordBatch) -> Result<(), JsonlError> {
        let expected = self.schema.fields();
        let got = batch.schema_ref().fields();
        let same = expected.len() == got.len()
            && expected
                .iter()
                .zip(got.iter())
                .all(|(e, g)| e.name() == g.name() && e.data_type() == g.data_type());
        if same {
            return Ok(());
        }
        let list = |fields: &arrow_schema::Fields| {
            fields
                .iter()
                .map(|f| format!("{} {}", f.name(), f.data_type()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        Err(JsonlError::Schema {
            unit: self.unit.clone(),
            reason: format!(
                "batch columns ({}) differ from the unit's schema ({})",
                list(got),
                list(expected)
            ),
        })
    }

    async fn write_batch(&mut self, batch: RecordBatch) -> Result<(), JsonlError> {
        self.check_schema(&batch)?;
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let rows = batch.num_rows() as u64;
        let partitions = self.partitions.clone();
        let unit = self.unit.clone();
        let location = self.location.clone();
        let out = Arc::clone(&self.out);
        let written = blocking(move || {
            let lines = encode_lines(&batch, &partitions).map_err(|source| JsonlError::Encode { unit, source })?;
            let io_error = |source| JsonlError::Io {
                what: "writing JSON lines to",
                location: location.clone(),
                source,
            };
            let mut out = out
                .lock()
                .map_err(|_| io_error(io::Error::other("an earlier write panicked")))?;
            out.write_all(&lines).map_err(io_error)?;
            Ok::<_, JsonlError>(lines.len() as u64)
        })
        .await??;
        self.rows += rows;
        self.bytes += written;
        Ok(())
    }

    async fn commit_unit(self, summary: UnitSummary) -> Result<CommitReport, JsonlError> {
        let out = Arc::clone(&self.out);
        let location = self.location.clone();
        blocking(move || {
            let io_error = |source| JsonlError::Io {
                what: "flushing",
                location: location.clone(),
                source,
            };
            let mut out = out
                .lock()
                .map_err(|_| io_error(io::Error::other("an earlier write panicked")))?;
            out.flush_durable().map_err(io_error)
        })
        .await??;
        // There is no dataset to hold a dead-letter file: the skipped records go to the log.
        if let Some(first) = summary.bad_records.first() {
            tracing::warn!(
                unit = %self.unit,
                skipped = summary.bad_records.len(),
                payload = %first.payload,
                line = first.line,
                reason = %first.reason,
                "records skipped under on_bad_record: skip (the first is shown; the jsonl sink keeps no dead-letter file)"
            );
        }
        Ok(CommitReport {
            files: self.file.into_iter().collect(),
            rows: self.rows,
            bytes: self.bytes,
            bad_records: summary.bad_records.len() as u64,
        })
    }
}

impl UnitWriter for JsonlUnitWriter {
    fn write(&mut self, batch: RecordBatch) -> BoxFuture<'_, Result<(), StageError>> {
        Box::pin(async move { self.write_batch(batch).await.map_err(StageError::from) })
    }

    fn commit(self: Box<Self>, summary: UnitSummary) -> BoxFuture<'static, Result<CommitReport, StageError>> {
        Box::pin(async move { (*self).commit_unit(summary).await.map_err(StageError::from) })
    }

    fn abort(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            if self.rows > 0 {
                tracing::warn!(
                    unit = %self.unit,
                    rows = self.rows,
                    "unit aborted: the {} lines already written to {} stay there (the jsonl sink cannot take them back)",
                    self.rows,
                    self.location
                );
            } else {
                tracing::info!(unit = %self.unit, "unit aborted");
            }
        })
    }
}

/// `batch` as JSON lines, with `partitions` appended as string fields.
fn encode_lines(batch: &RecordBatch, partitions: &[(String, String)]) -> Result<Vec<u8>, ArrowError> {
    let batch = utc_fixed_offset(&with_partitions(batch, partitions)?)?;
    let mut lines = Vec::with_capacity(batch.get_array_memory_size());
    let mut writer: LineDelimitedWriter<&mut Vec<u8>> =
        WriterBuilder::new().with_explicit_nulls(true).build(&mut lines);
    writer.write(&batch)?;
    writer.finish()?;
    Ok(lines)
}

/// Time zone names that mean UTC.
const UTC_NAMES: [&str; 4] = ["UTC", "Etc/UTC", "Z", "GMT"];

/// The same batch with every top-level `Timestamp(_, "UTC")` column relabelled
/// `Timestamp(_, "+00:00")`: the same instants, shown with a `Z`.
///
/// Arrow's formatters (the JSON writer here, pretty tables elsewhere) resolve a time zone
/// *name* only with arrow's `chrono-tz` feature, which compiles in the whole tz database, and
/// fail on `"UTC"` without it; a fixed offset needs nothing. Every timestamp of ours is UTC, so
/// relabelling costs nothing and changes no value (the buffers are shared, not copied).
pub fn utc_fixed_offset(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    let named_utc = |dt: &DataType| matches!(dt, DataType::Timestamp(_, Some(tz)) if UTC_NAMES.contains(&tz.as_ref()));
    let schema = batch.schema();
    if !schema.fields().iter().any(|f| named_utc(f.data_type())) {
        return Ok(batch.clone());
    }
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        match field.data_type() {
            DataType::Timestamp(unit, _) if named_utc(field.data_type()) => {
                let data_type = DataType::Timestamp(*unit, Some("+00:00".into()));
                let data = column.to_data().into_builder().data_type(data_type.clone()).build()?;
                columns.push(arrow_array::make_array(data));
                fields.push(Arc::new(field.as_ref().clone().with_data_type(data_type)));
            }
            _ => {
                fields.push(Arc::clone(field));
                columns.push(Arc::clone(column));
            }
        }
    }
    RecordBatch::try_new(
        Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())),
        columns,
    )
}

fn with_partitions(batch: &RecordBatch, partitions: &[(String, String)]) -> Result<RecordBatch, ArrowError> {
    if partitions.is_empty() {
        return Ok(batch.clone());
    }
    let schema = batch.schema();
    let mut fields: Vec<Arc<Field>> = schema.fields().iter().cloned().collect();
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    for (key, value) in partitions {
        fields.push(Arc::new(Field::new(key, DataType::Utf8, false)));
        let column = StringArray::from_iter_values(std::iter::repeat_n(value.as_str(), batch.num_rows()));
        columns.push(Arc::new(column));
    }
    RecordBatch::try_new(
        Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())),
        columns,
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use arrow_array::builder::{ListBuilder, StringBuilder};
    use arrow_array::types::Int32Type;
    use arrow_array::{DictionaryArray, TimestampMicrosecondArray, UInt16Array};
    use arrow_schema::TimeUnit;
    use chrono::DateTime;
    use etl_core::{BadRecord, Window};

    use super::*;

    fn unit(id: &str, partitions: &[(&str, &str)]) -> Unit {
        let t = DateTime::parse_from_rfc3339("2025-09-11T00:00:00Z").unwrap().to_utc();
        Unit {
            id: id.into(),
            window: Window::new(t, t + chrono::Duration::days(1)),
            params: BTreeMap::new(),
            partitions: partitions.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            provisional: false,
        }
    }

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new(
                "delivered_at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("status", DataType::UInt16, true),
            Field::new("recipient", DataType::Utf8, true),
            Field::new(
                "method",
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                true,
            ),
            Field::new(
                "tags",
                DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
                true,
            ),
        ]))
    }

    /// Rows of `(micros since epoch, status, recipient, method, tags)`.
    type Row<'a> = (i64, Option<u16>, Option<&'a str>, Option<&'a str>, Option<Vec<&'a str>>);

    fn batch(rows: &[Row<'_>]) -> RecordBatch {
        let times = TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.0)).with_timezone("UTC");
        let status: UInt16Array = rows.iter().map(|r| r.1).collect();
        let recipient: StringArray = rows.iter().map(|r| r.2).collect();
        let method: DictionaryArray<Int32Type> = rows.iter().map(|r| r.3).collect();
        let mut tags = ListBuilder::new(StringBuilder::new());
        for r in rows {
            match &r.4 {
                Some(items) => {
                    for item in items {
                        tags.values().append_value(item);
                    }
                    tags.append(true);
                }
                None => tags.append(false),
            }
        }
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(times),
                Arc::new(status),
                Arc::new(recipient),
                Arc::new(method),
                Arc::new(tags.finish()),
            ],
        )
        .unwrap()
    }

    /// 2025-09-11T00:00:05Z in microseconds.
    const T0: i64 = 1_757_548_805_000_000;

    async fn write_unit(sink: &JsonlSink, unit: &Unit, batches: Vec<RecordBatch>) -> CommitReport {
        let mut writer = sink.begin_unit(unit, schema()).await.unwrap();
        for b in batches {
            writer.write(b).await.unwrap();
        }
        writer.commit(UnitSummary::default()).await.unwrap()
    }

    fn read_lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(String::from)
            .collect()
    }

    #[tokio::test]
    async fn each_record_is_one_json_line_with_rfc3339_times_lists_and_explicit_nulls() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let sink = JsonlSink::open(Some(path.to_str().unwrap())).unwrap();
        let first = batch(&[
            (
                T0,
                Some(250),
                Some("a+b@example.com"),
                Some("GET"),
                Some(vec!["x", "y"]),
            ),
            (T0 + 123_456, None, Some("dé \"quoted\"\n"), None, Some(vec![])),
        ]);
        let second = batch(&[(T0 + 86_400_000_000 - 1, Some(550), None, Some("GET"), None)]);
        let report = write_unit(&sink, &unit("mail_delivery-2025-09-11", &[]), vec![first, second]).await;

        let expected = [
            r#"{"delivered_at":"2025-09-11T00:00:05Z","status":250,"recipient":"a+b@example.com","method":"GET","tags":["x","y"]}"#,
            r#"{"delivered_at":"2025-09-11T00:00:05.123456Z","status":null,"recipient":"dé \"quoted\"\n","method":null,"tags":[]}"#,
            r#"{"delivered_at":"2025-09-12T00:00:04.999999Z","status":550,"recipient":null,"method":"GET","tags":null}"#,
        ];
        assert_eq!(read_lines(&path), expected);
        assert_eq!(report.rows, 3);
        assert_eq!(report.bytes, std::fs::metadata(&path).unwrap().len());
        assert_eq!(report.files, [path.display().to_string()]);
        assert_eq!(sink.location(), path.display().to_string());
    }

    #[tokio::test]
    async fn unit_partitions_are_kept_as_fields_unless_the_records_have_the_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dir/out.jsonl");
        let sink = JsonlSink::open(Some(&format!("file://{}", path.display()))).unwrap();
        let u = unit(
            "cdn_logs-a.example-2025-09-11",
            &[("domain", "a.example"), ("recipient", "from-unit")],
        );
        write_unit(&sink, &u, vec![batch(&[(T0, Some(200), Some("r"), None, None)])]).await;
        assert_eq!(
            read_lines(&path),
            [
                r#"{"delivered_at":"2025-09-11T00:00:05Z","status":200,"recipient":"r","method":null,"tags":null,"domain":"a.example"}"#
            ]
        );
    }

    #[tokio::test]
    async fn units_append_and_an_aborted_unit_keeps_what_it_wrote_but_adds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        std::fs::write(&path, "{\"earlier\":true}\n").unwrap();
        let sink = JsonlSink::open(Some(path.to_str().unwrap())).unwrap();
        write_unit(&sink, &unit("a", &[]), vec![batch(&[(T0, Some(1), None, None, None)])]).await;

        let mut aborted = sink.begin_unit(&unit("b", &[]), schema()).await.unwrap();
        aborted.write(batch(&[(T0, Some(2), None, None, None)])).await.unwrap();
        aborted.abort().await;
        let after_abort = read_lines(&path);

        // A second sink on the same file (the next run) appends too.
        let again = JsonlSink::open(Some(path.to_str().unwrap())).unwrap();
        write_unit(&again, &unit("a", &[]), vec![batch(&[(T0, Some(3), None, None, None)])]).await;

        let status = |line: &str| serde_json::from_str::<serde_json::Value>(line).unwrap()["status"].clone();
        let lines = read_lines(&path);
        assert_eq!(lines[0], "{\"earlier\":true}");
        assert_eq!(lines[1..].iter().map(|l| status(l)).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(
            after_abort.len(),
            3,
            "the aborted unit's line was written through before the abort"
        );
    }

    #[tokio::test]
    async fn commit_reports_skipped_records_and_empty_units() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let sink = JsonlSink::open(Some(path.to_str().unwrap())).unwrap();
        let mut writer = sink.begin_unit(&unit("u", &[]), schema()).await.unwrap();
        writer.write(batch(&[])).await.unwrap();
        let bad = BadRecord {
            unit: "u".into(),
            payload: "page 1".into(),
            line: 3,
            reason: "bad date".into(),
            raw: "x".into(),
        };
        let report = writer
            .commit(UnitSummary {
                bad_records: vec![bad.clone(), bad],
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            report,
            CommitReport {
                files: vec![path.display().to_string()],
                rows: 0,
                bytes: 0,
                bad_records: 2,
            }
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"", "the file exists but holds no line");
    }

    #[tokio::test]
    async fn a_batch_of_another_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let sink = JsonlSink::open(Some(dir.path().join("o.jsonl").to_str().unwrap())).unwrap();
        let other = Arc::new(Schema::new(vec![Field::new("status", DataType::UInt16, true)]));
        let mut writer = sink.begin_unit(&unit("u", &[]), other).await.unwrap();
        let err = writer
            .write(batch(&[(T0, Some(1), None, None, None)]))
            .await
            .unwrap_err();
        assert_eq!(err.class(), ErrorClass::Permanent);
        let text = err.to_string();
        assert!(
            text.starts_with("unit u: batch columns (delivered_at Timestamp(µs, \"UTC\"), status UInt16"),
            "{text}"
        );
        assert!(
            text.ends_with("differ from the unit's schema (status UInt16)"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn an_unwritable_file_fails_the_unit_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be.
        let sink = JsonlSink::open(Some(dir.path().to_str().unwrap())).unwrap();
        let err = match sink.begin_unit(&unit("u", &[]), schema()).await {
            Ok(_) => panic!("a directory cannot be appended to"),
            Err(e) => e,
        };
        assert_eq!(err.class(), ErrorClass::Internal);
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("opening for appending {}: ", dir.path().display())),
            "{text}"
        );
    }

    #[test]
    fn utc_names_become_a_zero_offset_and_nothing_else_changes() {
        let b = batch(&[(T0, Some(1), Some("r"), None, None)]);
        let relabelled = utc_fixed_offset(&b).unwrap();
        assert_eq!(
            relabelled.schema().field(0).data_type(),
            &DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()))
        );
        let micros = |b: &RecordBatch| {
            b.column(0)
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .unwrap()
                .values()
                .to_vec()
        };
        assert_eq!(micros(&relabelled), [T0]);
        for i in 1..b.num_columns() {
            assert_eq!(relabelled.column(i), b.column(i));
            assert_eq!(relabelled.schema().field(i), b.schema().field(i));
        }
        let tokyo = RecordBatch::try_from_iter([(
            "t",
            Arc::new(TimestampMicrosecondArray::from(vec![T0]).with_timezone("+09:00")) as ArrayRef,
        )])
        .unwrap();
        assert_eq!(utc_fixed_offset(&tokyo).unwrap(), tokyo);
    }

    #[test]
    fn urls_name_stdout_or_a_local_file() {
        assert_eq!(JsonlTarget::parse(None).unwrap(), JsonlTarget::Stdout);
        assert_eq!(JsonlTarget::parse(Some("-")).unwrap(), JsonlTarget::Stdout);
        assert_eq!(
            JsonlTarget::parse(Some("./out.jsonl")).unwrap(),
            JsonlTarget::File("./out.jsonl".into())
        );
        assert_eq!(
            JsonlTarget::parse(Some("file:///var/tmp/x.jsonl")).unwrap(),
            JsonlTarget::File("/var/tmp/x.jsonl".into())
        );
        assert_eq!(JsonlSink::stdout().location(), "stdout");
        let err = |url: &str| JsonlTarget::parse(Some(url)).unwrap_err().to_string();
        assert_eq!(
            err("s3://bucket/x.jsonl"),
            "jsonl sink url \"s3://bucket/x.jsonl\": unsupported URL scheme `s3`; the jsonl sink writes to `-` \
             (standard output), a local path or a file:// URL"
        );
        assert_eq!(err("file://"), "jsonl sink url \"file://\": names no file");
        assert!(err(" ").contains("must not be empty"));
        assert_eq!(
            JsonlTarget::parse(Some("s3://b/k")).unwrap_err().class(),
            ErrorClass::Permanent
        );
    }
}
