//! The audit-log service exports operation history as one CSV file per download job (UTF-8 with
//! a byte-order mark, RFC 4180, a header row in Japanese or English). The export covers whole
//! *local* dates of the account's time zone, while a unit is a UTC window: a UTC day spans two
//! local dates, so the source asks for both and this decoder keeps only the records of the unit's
//! window, which it reads from the payload's labels ([`WINDOW_START_LABEL`],
//! [`WINDOW_END_LABEL`]). Records outside it belong to the neighbouring unit, which loads them
//! from its own export: they are dropped without being checked further (a bad field outside the
//! window is the other unit's bad record) and only counted
//! ([`AuditLogDecoder::rows_outside_window`]).
//!
//! Records are split by the shared streaming CSV reader (`csv.rs`; its rules are in the crate
//! docs); the header row maps each field to its column by name (either language, in any order),
//! so a reordered export still lands in the right columns. Each record is parsed completely
//! (timestamp first, for the window) before anything is appended, so a bad record leaves no
//! trace in the columns.
//!
//! Choices where the vendor's description is silent (also in the crate docs):
//! - Header names are compared after trimming spaces, folding full-width ASCII to ASCII and
//!   ignoring ASCII case, and the two languages may be mixed. A header column the schema does not
//!   know follows `on_unknown_field` (`ignore`: the column is skipped and counted per kept row;
//!   `fail`: the file is malformed); a column missing or given twice makes the file malformed.
//! - `operated_at` must carry a UTC offset (`Z`, `±hh:mm`, `±hhmm` or `±hh`); a local time
//!   without one is a bad record, since its zone would be a guess.
//! - Every text column turns an empty field into null; so do `target_id` and the dictionaries.
//!   `operation_id`, `operated_at` and `affected_count` are required.
//! - Integers are plain decimal digits with an optional leading `-`.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use arrow_array::builder::{Int32Builder, Int64Builder, StringBuilder};
use arrow_array::types::Int32Type;
use arrow_array::{ArrayRef, DictionaryArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use etl_core::bad::excerpt;
use etl_core::{BadRecord, DecodeContext, DecodeError, Decoder, Format, PayloadMeta, UnknownFieldPolicy};

use crate::csv::{
    CsvDecoder, MAX_FIELDS, Record, RowError, RowParser, non_empty, optional_i64, parse_i64, required_i64, show,
};
use crate::timestamp::{DateCache, parse_offset_time};

/// What [`DecodeError::Malformed`] names for this format.
const WHAT: &str = "audit log CSV";

/// The payload label holding the start of the unit's window (inclusive), in microseconds since
/// the epoch. Records before it are dropped.
pub const WINDOW_START_LABEL: &str = "window_start_us";
/// The payload label holding the end of the unit's window (exclusive), in microseconds since the
/// epoch. Records at or after it are dropped.
pub const WINDOW_END_LABEL: &str = "window_end_us";
/// The payload label that names the downloaded file in messages; `PayloadMeta::name` when
/// absent.
pub const FILE_NAME_LABEL: &str = "file_name";

/// Limits applied to each file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditLogOptions {
    /// Longest record, in bytes before its line ending (a CR of a CRLF counted; at most 1 GiB);
    /// a longer record is a bad record and is never buffered beyond this. Default 1 MiB.
    pub max_record_bytes: usize,
}

impl Default for AuditLogOptions {
    fn default() -> Self {
        Self {
            max_record_bytes: 1 << 20,
        }
    }
}

/// One column: its name in the schema and its header in each language of the export.
struct Column {
    name: &'static str,
    ja: &'static str,
    en: &'static str,
}

/// The columns in schema order, with the headers of `lang=JA` and `lang=EN`.
const COLUMNS: [Column; 14] = [
    col("operation_id", "操作ID", "Operation ID"),
    col("operated_at", "操作日時", "Operation Date"),
    col("account_id", "アカウントID", "Account ID"),
    col("operator", "操作者", "Operator"),
    col("tool", "利用ツール", "Tool"),
    col("operation", "操作種別", "Operation"),
    col("target_type", "対象種別", "Target Type"),
    col("target_id", "対象ID", "Target ID"),
    col("target_name", "対象名", "Target Name"),
    col("changed_item", "変更項目", "Changed Item"),
    col("before_value", "変更前", "Before"),
    col("after_value", "変更後", "After"),
    col("affected_count", "影響件数", "Affected Count"),
    col("ip_address", "IPアドレス", "IP Address"),
];

const fn col(name: &'static str, ja: &'static str, en: &'static str) -> Column {
    Column { name, ja, en }
}

// Positions in `COLUMNS` of the columns parsed as something other than text.
const OPERATION_ID: usize = 0;
const OPERATED_AT: usize = 1;
const ACCOUNT_ID: usize = 2;
const OPERATOR: usize = 3;
const TOOL: usize = 4;
const OPERATION: usize = 5;
const TARGET_TYPE: usize = 6;
const TARGET_ID: usize = 7;
const TARGET_NAME: usize = 8;
const CHANGED_ITEM: usize = 9;
const BEFORE_VALUE: usize = 10;
const AFTER_VALUE: usize = 11;
const AFFECTED_COUNT: usize = 12;
const IP_ADDRESS: usize = 13;

/// Distinct values a dictionary column looks up by a linear scan before it switches to a map.
const LINEAR_LOOKUP: usize = 16;

/// Rows the first batch reserves room for; later batches are sized like the one before.
const INITIAL_ROWS: usize = 4 * 1024;

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let dict = || DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    let text = |c: usize| Field::new(COLUMNS[c].name, DataType::Utf8, true);
    Arc::new(Schema::new(vec![
        Field::new(COLUMNS[OPERATION_ID].name, DataType::Int64, false),
        Field::new(
            COLUMNS[OPERATED_AT].name,
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        text(ACCOUNT_ID),
        text(OPERATOR),
        Field::new(COLUMNS[TOOL].name, dict(), true),
        Field::new(COLUMNS[OPERATION].name, dict(), true),
        Field::new(COLUMNS[TARGET_TYPE].name, dict(), true),
        Field::new(COLUMNS[TARGET_ID].name, DataType::Int64, true),
        text(TARGET_NAME),
        text(CHANGED_ITEM),
        text(BEFORE_VALUE),
        text(AFTER_VALUE),
        Field::new(COLUMNS[AFFECTED_COUNT].name, DataType::Int64, false),
        text(IP_ADDRESS),
    ]))
});

/// The Arrow schema of every batch of audit-log records (documented in the crate docs).
pub fn schema() -> SchemaRef {
    Arc::clone(&SCHEMA)
}

/// The audit-log export format: one downloaded CSV file per payload.
#[derive(Clone, Copy, Debug, Default)]
pub struct AuditLogFormat {
    opts: AuditLogOptions,
}

impl AuditLogFormat {
    pub fn new(opts: AuditLogOptions) -> Self {
        Self { opts }
    }
}

impl Format for AuditLogFormat {
    fn schema(&self) -> SchemaRef {
        schema()
    }

    fn time_column(&self) -> &'static str {
        "operated_at"
    }

    /// The window comes from the payload's [`WINDOW_START_LABEL`] and [`WINDOW_END_LABEL`].
    fn decoder(&self, meta: &PayloadMeta, ctx: DecodeContext) -> Box<dyn Decoder> {
        Box::new(AuditLogDecoder::new(meta, self.opts, ctx))
    }
}

/// Push decoder for one audit-log CSV file. See the module docs.
#[derive(Debug)]
pub struct AuditLogDecoder(CsvDecoder<AuditRows>);

impl AuditLogDecoder {
    /// A decoder for the file `meta` describes: its name ([`FILE_NAME_LABEL`], else
    /// `meta.name`) for messages, and the window to keep from [`WINDOW_START_LABEL`] and
    /// [`WINDOW_END_LABEL`] (each optional: a missing bound keeps everything on that side). A
    /// label that is not an integer makes every call fail with [`DecodeError::Malformed`].
    pub fn new(meta: &PayloadMeta, opts: AuditLogOptions, ctx: DecodeContext) -> Self {
        let file_name = meta.labels.get(FILE_NAME_LABEL).unwrap_or(&meta.name);
        let bound = |label: &str| -> Result<Option<i64>, String> {
            meta.labels
                .get(label)
                .map(|v| {
                    parse_i64(v.trim()).ok_or_else(|| {
                        format!(
                            "payload label {label} `{}` is not an integer (epoch microseconds)",
                            show(v)
                        )
                    })
                })
                .transpose()
        };
        let (start, end, unusable) = match (bound(WINDOW_START_LABEL), bound(WINDOW_END_LABEL)) {
            (Ok(start), Ok(end)) => (start, end, None),
            (Err(e), _) | (_, Err(e)) => (None, None, Some(e)),
        };
        let rows = AuditRows {
            unknown_policy: ctx.unknown_fields,
            header: None,
            start,
            end,
            outside: 0,
            unknown_rows: 0,
            dates: DateCache::default(),
            cols: Columns::new(ctx.batch_size.clamp(1, INITIAL_ROWS)),
        };
        let decoder = CsvDecoder::new(WHAT, file_name, opts.max_record_bytes, rows, ctx);
        Self(match unusable {
            Some(reason) => decoder.unusable(reason),
            None => decoder,
        })
    }

    /// Records dropped so far because their `operated_at` lies outside the window.
    pub fn rows_outside_window(&self) -> u64 {
        self.0.parser().outside
    }
}

impl Decoder for AuditLogDecoder {
    fn decode(&mut self, chunk: &[u8], out: &mut Vec<RecordBatch>) -> Result<(), DecodeError> {
        self.0.decode(chunk, out)
    }

    fn finish(&mut self, out: &mut Vec<RecordBatch>) -> Result<(), DecodeError> {
        self.0.finish(out)
    }

    fn take_bad_records(&mut self) -> Vec<BadRecord> {
        self.0.take_bad_records()
    }

    fn take_unknown_fields(&mut self) -> Vec<(String, u64)> {
        self.0.take_unknown_fields()
    }
}

/// Where each column is in the file's records.
#[derive(Debug)]
struct Header {
    /// Fields per record.
    fields: usize,
    /// The field of each column of [`COLUMNS`].
    index: [usize; COLUMNS.len()],
    /// Header names of fields outside the schema (skipped under `on_unknown_field: ignore`).
    unknown: Vec<String>,
}

/// A header name as compared: trimmed, full-width ASCII folded to ASCII, ASCII lowercased.
fn normalize(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(u32::from(c) - 0xFEE0).unwrap_or(c),
            '\u{3000}' => ' ',
            c => c,
        })
        .map(|c| c.to_ascii_lowercase())
        .collect::<String>()
        .trim()
        .to_string()
}

fn column_of(name: &str) -> Option<usize> {
    let name = normalize(name);
    COLUMNS
        .iter()
        .position(|c| normalize(c.ja) == name || normalize(c.en) == name)
}

/// Maps the header row to the columns. The error is the reason the file is malformed.
fn parse_header(rec: &Record<'_>, unknown_policy: UnknownFieldPolicy) -> Result<Header, String> {
    if rec.len() > MAX_FIELDS {
        return Err(format!(
            "the header row has {} fields, more than the {MAX_FIELDS} a record may have",
            rec.len()
        ));
    }
    let absent = usize::MAX;
    let mut index = [absent; COLUMNS.len()];
    let mut unknown = Vec::new();
    for i in 0..rec.len() {
        let name = rec.field(i);
        match column_of(name) {
            Some(c) if index[c] != absent => {
                return Err(format!(
                    "the header row names column {} twice: `{}` (field {}) and `{}` (field {})",
                    COLUMNS[c].name,
                    show(rec.field(index[c])),
                    index[c] + 1,
                    show(name),
                    i + 1
                ));
            }
            Some(c) => index[c] = i,
            None if unknown_policy == UnknownFieldPolicy::Fail => {
                return Err(format!(
                    "the header row has an unknown column `{}` (field {}), refused by on_unknown_field: fail",
                    show(name),
                    i + 1
                ));
            }
            None => unknown.push(name.to_string()),
        }
    }
    let missing: Vec<String> = COLUMNS
        .iter()
        .zip(index)
        .filter(|&(_, i)| i == absent)
        .map(|(c, _)| format!("{} (`{}` or `{}`)", c.name, c.ja, c.en))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "the header row has no column for {}; it reads `{}`",
            missing.join(", "),
            excerpt(rec.raw().as_bytes())
        ));
    }
    Ok(Header {
        fields: rec.len(),
        index,
        unknown,
    })
}

/// The format-specific half of [`AuditLogDecoder`].
#[derive(Debug)]
struct AuditRows {
    unknown_policy: UnknownFieldPolicy,
    header: Option<Header>,
    /// The window kept, `[start, end)` in epoch microseconds; `None` is unbounded.
    start: Option<i64>,
    end: Option<i64>,
    outside: u64,
    /// Rows kept since the unknown columns were last reported.
    unknown_rows: u64,
    dates: DateCache,
    cols: Columns,
}

impl RowParser for AuditRows {
    fn expected_fields(&self) -> Option<usize> {
        self.header.as_ref().map(|h| h.fields)
    }

    fn header_pending(&self) -> bool {
        self.header.is_none()
    }

    fn parse(&mut self, rec: &Record<'_>) -> Result<bool, RowError> {
        let Some(h) = &self.header else {
            self.header = Some(parse_header(rec, self.unknown_policy).map_err(RowError::Malformed)?);
            return Ok(false);
        };
        if rec.len() != h.fields {
            return Err(RowError::Bad(format!(
                "expected {} fields as in the header row, found {}",
                h.fields,
                rec.len()
            )));
        }
        let field = |c: usize| rec.field(h.index[c]);
        let time = field(OPERATED_AT);
        if time.is_empty() {
            return Err(RowError::Bad("operated_at is empty".into()));
        }
        let operated_at = parse_offset_time(time.as_bytes(), &mut self.dates).ok_or_else(|| {
            RowError::Bad(format!(
                "operated_at `{}` is not an ISO 8601 time with a UTC offset (like 2025-11-17T09:01:08+09:00)",
                show(time)
            ))
        })?;
        if self.start.is_some_and(|s| operated_at < s) || self.end.is_some_and(|e| operated_at >= e) {
            self.outside += 1;
            return Ok(false);
        }
        let operation_id = required_i64(COLUMNS[OPERATION_ID].name, field(OPERATION_ID))?;
        let target_id = optional_i64(COLUMNS[TARGET_ID].name, field(TARGET_ID))?;
        let affected_count = required_i64(COLUMNS[AFFECTED_COUNT].name, field(AFFECTED_COUNT))?;

        let c = &mut self.cols;
        c.operation_id.push(operation_id);
        c.operated_at.push(operated_at);
        c.account_id.append_option(non_empty(field(ACCOUNT_ID)));
        c.operator.append_option(non_empty(field(OPERATOR)));
        c.tool.push(non_empty(field(TOOL)));
        c.operation.push(non_empty(field(OPERATION)));
        c.target_type.push(non_empty(field(TARGET_TYPE)));
        c.target_id.append_option(target_id);
        c.target_name.append_option(non_empty(field(TARGET_NAME)));
        c.changed_item.append_option(non_empty(field(CHANGED_ITEM)));
        c.before_value.append_option(non_empty(field(BEFORE_VALUE)));
        c.after_value.append_option(non_empty(field(AFTER_VALUE)));
        c.affected_count.push(affected_count);
        c.ip_address.append_option(non_empty(field(IP_ADDRESS)));
        if !h.unknown.is_empty() {
            self.unknown_rows += 1;
        }
        Ok(true)
    }

    fn batch(&mut self, _file_name: &str) -> Result<RecordBatch, DecodeError> {
        self.cols.finish()
    }

    fn at_end(&self) -> Result<(), String> {
        if self.header.is_none() {
            return Err("the file has no header row (empty or truncated)".into());
        }
        Ok(())
    }

    fn take_unknown_fields(&mut self) -> Vec<(String, u64)> {
        let rows = std::mem::take(&mut self.unknown_rows);
        match &self.header {
            Some(h) if rows > 0 => h.unknown.iter().map(|name| (name.clone(), rows)).collect(),
            _ => Vec::new(),
        }
    }
}

/// A `Dictionary(Int32, Utf8)` column whose dictionary holds the values of its batch in order of
/// first appearance. Consecutive rows often repeat a value, so the last key is tried first.
#[derive(Debug)]
struct DictColumn {
    keys: Int32Builder,
    values: Vec<Box<str>>,
    /// Keys by value, filled only once there are more than [`LINEAR_LOOKUP`] values.
    index: HashMap<Box<str>, i32>,
    last: Option<i32>,
}

impl DictColumn {
    fn new(rows: usize) -> Self {
        Self {
            keys: Int32Builder::with_capacity(rows),
            values: Vec::new(),
            index: HashMap::new(),
            last: None,
        }
    }

    fn push(&mut self, v: Option<&str>) {
        match v {
            Some(v) => {
                let key = self.key(v);
                self.last = Some(key);
                self.keys.append_value(key);
            }
            None => self.keys.append_null(),
        }
    }

    fn key(&mut self, v: &str) -> i32 {
        if let Some(k) = self.last
            && *self.values[k as usize] == *v
        {
            return k;
        }
        if self.values.len() <= LINEAR_LOOKUP {
            if let Some(i) = self.values.iter().position(|x| **x == *v) {
                return i as i32;
            }
        } else if let Some(&k) = self.index.get(v) {
            return k;
        }
        // A batch has fewer rows than i32::MAX, so it has fewer distinct values.
        let key = self.values.len() as i32;
        self.values.push(v.into());
        if self.values.len() > LINEAR_LOOKUP {
            if self.index.is_empty() {
                self.index = self.values.iter().cloned().zip(0..).collect();
            } else {
                self.index.insert(v.into(), key);
            }
        }
        key
    }

    fn finish(&mut self) -> Result<DictionaryArray<Int32Type>, DecodeError> {
        let keys = self.keys.finish();
        let values = StringArray::from_iter_values(self.values.drain(..));
        self.index.clear();
        self.last = None;
        Ok(DictionaryArray::try_new(keys, Arc::new(values))?)
    }
}

/// The rows of the batch being built.
#[derive(Debug)]
struct Columns {
    operation_id: Vec<i64>,
    operated_at: Vec<i64>,
    account_id: StringBuilder,
    operator: StringBuilder,
    tool: DictColumn,
    operation: DictColumn,
    target_type: DictColumn,
    target_id: Int64Builder,
    target_name: StringBuilder,
    changed_item: StringBuilder,
    before_value: StringBuilder,
    after_value: StringBuilder,
    affected_count: Vec<i64>,
    ip_address: StringBuilder,
}

impl Columns {
    /// Empty columns with room for `rows` typical rows.
    fn new(rows: usize) -> Self {
        Self {
            operation_id: Vec::with_capacity(rows),
            operated_at: Vec::with_capacity(rows),
            account_id: StringBuilder::with_capacity(rows, rows * 12),
            operator: StringBuilder::with_capacity(rows, rows * 16),
            tool: DictColumn::new(rows),
            operation: DictColumn::new(rows),
            target_type: DictColumn::new(rows),
            target_id: Int64Builder::with_capacity(rows),
            target_name: StringBuilder::with_capacity(rows, rows * 24),
            changed_item: StringBuilder::with_capacity(rows, rows * 16),
            before_value: StringBuilder::with_capacity(rows, rows * 16),
            after_value: StringBuilder::with_capacity(rows, rows * 16),
            affected_count: Vec::with_capacity(rows),
            ip_address: StringBuilder::with_capacity(rows, rows * 16),
        }
    }

    /// Turns the buffered rows into a batch and leaves the columns empty, with room for as many
    /// rows of the same sizes again.
    fn finish(&mut self) -> Result<RecordBatch, DecodeError> {
        let rows = self.operation_id.len();
        let take = |v: &mut Vec<i64>| std::mem::replace(v, Vec::with_capacity(rows));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(take(&mut self.operation_id))),
            Arc::new(TimestampMicrosecondArray::from(take(&mut self.operated_at)).with_timezone("UTC")),
            Arc::new(take_strings(&mut self.account_id, rows)),
            Arc::new(take_strings(&mut self.operator, rows)),
            Arc::new(self.tool.finish()?),
            Arc::new(self.operation.finish()?),
            Arc::new(self.target_type.finish()?),
            Arc::new(self.target_id.finish()),
            Arc::new(take_strings(&mut self.target_name, rows)),
            Arc::new(take_strings(&mut self.changed_item, rows)),
            Arc::new(take_strings(&mut self.before_value, rows)),
            Arc::new(take_strings(&mut self.after_value, rows)),
            Arc::new(Int64Array::from(take(&mut self.affected_count))),
            Arc::new(take_strings(&mut self.ip_address, rows)),
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
