//! The WebDAV log store rotates a cell's event log into `archive/` files of CSV: no header, every
//! field quoted, ten fields per event. One payload is one archive file (already taken out of its
//! zip by the source), downloaded in chunks. A client event's `result` is free text that may hold
//! commas, quotes and line breaks, so the file is read as CSV by the shared streaming reader
//! (`csv.rs`; the rules are in the crate docs), never line by line.
//!
//! Each record is parsed completely before anything is appended, so a bad record leaves no trace
//! in the columns. `level` has three values, so its dictionary is fixed (`INFO`, `WARN`, `ERROR`
//! as keys 0, 1, 2) and shared by every batch.
//!
//! Choices where the vendor's description is silent (also in the crate docs):
//! - Fields may also come unquoted (RFC 4180 allows it); a byte-order mark and CRLF line endings
//!   are tolerated.
//! - `level` is read with or without its brackets and padding (`[INFO ]`, `[INFO]`, `INFO`);
//!   any other level (`[DEBUG]`) is a bad record rather than a new dictionary value.
//! - Every text column turns an empty field into null, and so does `bytes`.
//! - `dateTime` is read like any RFC 3339 time with `Z` or an offset (the vendor writes
//!   `YYYY-MM-DDThh:mm:ss.mmmZ`).

use std::sync::{Arc, LazyLock};

use arrow_array::builder::{Int64Builder, StringBuilder};
use arrow_array::types::Int8Type;
use arrow_array::{ArrayRef, DictionaryArray, Int8Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use etl_core::{BadRecord, DecodeContext, DecodeError, Decoder, Format, PayloadMeta};

use crate::csv::{CsvDecoder, Record, RowError, RowParser, non_empty, optional_i64, show};
use crate::timestamp::{DateCache, parse_offset_time};

/// What [`DecodeError::Malformed`] names for this format.
const WHAT: &str = "event log CSV";

/// The payload label that names the archive file; `PayloadMeta::name` when absent.
pub const FILE_NAME_LABEL: &str = "file_name";

/// Fields per record.
const FIELDS: usize = 10;

/// The `level` values in dictionary-key order.
const LEVELS: [&str; 3] = ["INFO", "WARN", "ERROR"];

/// Rows the first batch reserves room for; later batches are sized like the one before.
const INITIAL_ROWS: usize = 4 * 1024;

/// Limits applied to each file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventLogOptions {
    /// Longest record, in bytes before its line ending (a CR of a CRLF counted; at most 1 GiB);
    /// a longer record is a bad record and is never buffered beyond this. Default 1 MiB.
    pub max_record_bytes: usize,
}

impl Default for EventLogOptions {
    fn default() -> Self {
        Self {
            max_record_bytes: 1 << 20,
        }
    }
}

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let text = |name: &str| Field::new(name, DataType::Utf8, true);
    Arc::new(Schema::new(vec![
        Field::new(
            "logged_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new(
            "level",
            DataType::Dictionary(Box::new(DataType::Int8), Box::new(DataType::Utf8)),
            false,
        ),
        text("request_key"),
        text("source"),
        text("schema"),
        text("subject"),
        text("type"),
        text("object"),
        text("result"),
        Field::new("bytes", DataType::Int64, true),
        Field::new("file_name", DataType::Utf8, false),
    ]))
});

static LEVEL_VALUES: LazyLock<ArrayRef> = LazyLock::new(|| Arc::new(StringArray::from(LEVELS.to_vec())));

/// The Arrow schema of every batch of event-log records (documented in the crate docs).
pub fn schema() -> SchemaRef {
    Arc::clone(&SCHEMA)
}

/// The WebDAV event-log format: one archive file of CSV records per payload.
#[derive(Clone, Copy, Debug, Default)]
pub struct EventLogFormat {
    opts: EventLogOptions,
}

impl EventLogFormat {
    pub fn new(opts: EventLogOptions) -> Self {
        Self { opts }
    }
}

impl Format for EventLogFormat {
    fn schema(&self) -> SchemaRef {
        schema()
    }

    fn time_column(&self) -> &'static str {
        "logged_at"
    }

    /// The `file_name` column comes from the payload's `file_name` label, or its name.
    fn decoder(&self, meta: &PayloadMeta, ctx: DecodeContext) -> Box<dyn Decoder> {
        Box::new(EventLogDecoder::new(meta, self.opts, ctx))
    }
}

/// Push decoder for one event-log file. See the module docs.
#[derive(Debug)]
pub struct EventLogDecoder(CsvDecoder<EventRows>);

impl EventLogDecoder {
    /// A decoder for the file `meta` describes; its name ([`FILE_NAME_LABEL`], else `meta.name`)
    /// fills the `file_name` column and is quoted in messages.
    pub fn new(meta: &PayloadMeta, opts: EventLogOptions, ctx: DecodeContext) -> Self {
        let file_name = meta.labels.get(FILE_NAME_LABEL).unwrap_or(&meta.name);
        let rows = EventRows {
            dates: DateCache::default(),
            cols: Columns::new(ctx.batch_size.clamp(1, INITIAL_ROWS)),
        };
        Self(CsvDecoder::new(WHAT, file_name, opts.max_record_bytes, rows, ctx))
    }
}

impl Decoder for EventLogDecoder {
    fn decode(&mut self, chunk: &[u8], out: &mut Vec<RecordBatch>) -> Result<(), DecodeError> {
        self.0.decode(chunk, out)
    }

    fn finish(&mut self, out: &mut Vec<RecordBatch>) -> Result<(), DecodeError> {
        self.0.finish(out)
    }

    fn take_bad_records(&mut self) -> Vec<BadRecord> {
        self.0.take_bad_records()
    }
}

/// `[INFO ]`, `[WARN ]`, `[ERROR]` (brackets and padding optional) to the key of its value.
fn level_key(s: &str) -> Option<i8> {
    let inner = s.strip_prefix('[').and_then(|s| s.strip_suffix(']')).unwrap_or(s);
    match inner.trim_matches(' ') {
        "INFO" => Some(0),
        "WARN" => Some(1),
        "ERROR" => Some(2),
        _ => None,
    }
}

/// The format-specific half of [`EventLogDecoder`].
#[derive(Debug)]
struct EventRows {
    dates: DateCache,
    cols: Columns,
}

impl RowParser for EventRows {
    fn expected_fields(&self) -> Option<usize> {
        Some(FIELDS)
    }

    fn parse(&mut self, rec: &Record<'_>) -> Result<bool, RowError> {
        if rec.len() != FIELDS {
            return Err(RowError::Bad(format!("expected {FIELDS} fields, found {}", rec.len())));
        }
        let time = rec.field(0);
        let logged_at = parse_offset_time(time.as_bytes(), &mut self.dates).ok_or_else(|| {
            RowError::Bad(format!(
                "dateTime `{}` is not a time like 2025-11-18T00:49:30.870Z",
                show(time)
            ))
        })?;
        let level = rec.field(1);
        let level = level_key(level).ok_or_else(|| {
            RowError::Bad(format!(
                "level `{}` is not one of [INFO ], [WARN ], [ERROR]",
                show(level)
            ))
        })?;
        let bytes = optional_i64("bytes", rec.field(9))?;

        let c = &mut self.cols;
        c.logged_at.push(logged_at);
        c.level.push(level);
        c.request_key.append_option(non_empty(rec.field(2)));
        c.source.append_option(non_empty(rec.field(3)));
        c.schema.append_option(non_empty(rec.field(4)));
        c.subject.append_option(non_empty(rec.field(5)));
        c.type_.append_option(non_empty(rec.field(6)));
        c.object.append_option(non_empty(rec.field(7)));
        c.result.append_option(non_empty(rec.field(8)));
        c.bytes.append_option(bytes);
        Ok(true)
    }

    fn batch(&mut self, file_name: &str) -> Result<RecordBatch, DecodeError> {
        self.cols.finish(file_name)
    }
}

/// The rows of the batch being built.
#[derive(Debug)]
struct Columns {
    logged_at: Vec<i64>,
    level: Vec<i8>,
    request_key: StringBuilder,
    source: StringBuilder,
    schema: StringBuilder,
    subject: StringBuilder,
    type_: StringBuilder,
    object: StringBuilder,
    result: StringBuilder,
    bytes: Int64Builder,
}

impl Columns {
    /// Empty columns with room for `rows` typical rows.
    fn new(rows: usize) -> Self {
        Self {
            logged_at: Vec::with_capacity(rows),
            level: Vec::with_capacity(rows),
            request_key: StringBuilder::with_capacity(rows, rows * 24),
            source: StringBuilder::with_capacity(rows, rows * 6),
            schema: StringBuilder::with_capacity(rows, rows * 32),
            subject: StringBuilder::with_capacity(rows, rows * 48),
            type_: StringBuilder::with_capacity(rows, rows * 16),
            object: StringBuilder::with_capacity(rows, rows * 64),
            result: StringBuilder::with_capacity(rows, rows * 8),
            bytes: Int64Builder::with_capacity(rows),
        }
    }

    /// Turns the buffered rows into a batch and leaves the columns empty, with room for as many
    /// rows of the same sizes again.
    fn finish(&mut self, file_name: &str) -> Result<RecordBatch, DecodeError> {
        let rows = self.logged_at.len();
        let logged_at = std::mem::replace(&mut self.logged_at, Vec::with_capacity(rows));
        let keys = Int8Array::from(std::mem::replace(&mut self.level, Vec::with_capacity(rows)));
        let level = DictionaryArray::<Int8Type>::try_new(keys, Arc::clone(&LEVEL_VALUES))?;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(TimestampMicrosecondArray::from(logged_at).with_timezone("UTC")),
            Arc::new(level),
            Arc::new(take_strings(&mut self.request_key, rows)),
            Arc::new(take_strings(&mut self.source, rows)),
            Arc::new(take_strings(&mut self.schema, rows)),
            Arc::new(take_strings(&mut self.subject, rows)),
            Arc::new(take_strings(&mut self.type_, rows)),
            Arc::new(take_strings(&mut self.object, rows)),
            Arc::new(take_strings(&mut self.result, rows)),
            Arc::new(self.bytes.finish()),
            Arc::new(StringArray::from_iter_values(std::iter::repeat_n(file_name, rows))),
        ];
        Ok(RecordBatch::try_new(schema(), columns)?)
    }
}

/// Finishes `b`, leaving room for `rows` values of the same total size.
fn take_strings(b: &mut StringBuilder, rows: usize) -> StringArray {
    let bytes = b.values_slice().len();
    std::mem::replace(b, StringBuilder::with_capacity(rows, bytes)).finish()
}

#[cfg(test)]
mod tests;
