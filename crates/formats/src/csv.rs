//! RFC 4180 records out of a byte stream that arrives in arbitrary chunks, shared by the CSV
//! formats ([`crate::audit_log`], [`crate::event_log`]).
//!
//! Two vendors send CSV whose quoted fields may hold commas, doubled quotes and line breaks, so
//! records cannot be found line by line, and a download is split wherever the network splits it:
//! inside a quoted field, between the CR and the LF of a CRLF, inside a multi-byte character. The
//! [`CsvSplitter`] is a small state machine that carries its state across chunks and hands each
//! complete record to a callback:
//! - A record that lies inside one chunk is never copied: its fields are slices of the chunk.
//!   Only the start of a record cut by the end of a chunk is kept (in one reused buffer), and
//!   only a field with doubled quotes is unescaped (into one reused string).
//! - The scan jumps between delimiters with `memchr` (`,` and LF outside quotes, `"` inside), so
//!   a long field costs one vectorised search.
//! - A record is validated as UTF-8 once, whole (with SIMD: the audit log is mostly Japanese);
//!   its fields are then `&str` slices cut at ASCII delimiters.
//! - Memory is bounded by one record: a record longer than `max_record_bytes` is reported as a
//!   bad record as soon as that is known and then scanned to its end without being kept, and at
//!   most [`MAX_FIELDS`] field positions are stored.
//!
//! [`CsvDecoder`] is the rest of a CSV push decoder that both formats share: the bad-record
//! policy, record numbering, batch closing and end-of-input checks, around a format-specific
//! [`RowParser`].
//!
//! The grammar, where RFC 4180 leaves room (also in the crate docs):
//! - Records end with LF or CRLF, in any mix; the last record may lack its line ending. A CR
//!   anywhere else in an unquoted field is text.
//! - A quote opens a quoted field only as the field's first byte; inside, `""` is a quote and
//!   commas, CR and LF are text. After the closing quote only a comma or a line ending may follow
//!   (anything else makes the record bad). A quote inside an unquoted field is kept as text: RFC
//!   4180 forbids it, but it is unambiguous, and refusing it would lose the record.
//! - Empty lines are skipped (they are not records), but they count as lines and as records in
//!   the numbering, so that "record N" is the N-th row a spreadsheet shows.
//! - A UTF-8 byte-order mark at the very start is dropped.
//! - Input that ends inside a quoted field is truncated, never a short record.

use std::fmt;

use arrow_array::RecordBatch;
use etl_core::bad::{MAX_EXCERPT, excerpt};
use etl_core::{BadRecord, BadRecordPolicy, DecodeContext, DecodeError, Decoder};
use memchr::{memchr, memchr2};

/// Field positions stored per record. A record with more fields is still counted (so a message
/// can say how many it had) but only its first `MAX_FIELDS` can be read.
pub(crate) const MAX_FIELDS: usize = 1024;

/// Record text after which a batch is closed early, whatever `batch_size` says: no string column
/// of a batch can then outgrow Arrow's 32-bit offsets.
const MAX_BATCH_TEXT: usize = 1 << 30;

/// The largest record limit honoured: a larger `max_record_bytes` is treated as this, so that one
/// record always fits a batch.
pub(crate) const MAX_RECORD_LIMIT: usize = 1 << 30;

const UTF8_BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

/// Where the scan stands inside the current record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// At the first byte of a field (of a record, or after a comma).
    FieldStart,
    /// Inside an unquoted field: it ends at the next comma or LF.
    Unquoted,
    /// Inside a quoted field: only a quote matters.
    Quoted,
    /// Just after a quote inside a quoted field: the closing quote, or the first of a doubled one.
    AfterQuote,
    /// A closing quote then a CR: only an LF may follow.
    AfterQuoteCr,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SpanKind {
    /// The field is `text[start..end]` as written.
    Raw,
    /// Like `Raw`, but holding doubled quotes still to be unescaped.
    Escaped,
    /// The unescaped field is `scratch[start..end]`.
    Scratch,
}

/// Where one field of the current record is, in bytes from the record's start.
#[derive(Clone, Copy, Debug)]
struct Span {
    start: usize,
    end: usize,
    kind: SpanKind,
}

/// Why the splitter refused a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Problem {
    /// More bytes before the record's LF than the limit (a CR of a CRLF counted).
    TooLong { max: usize },
    /// Something other than a comma or a line ending after the closing quote of field `field`
    /// (1-based).
    TextAfterQuote { field: usize },
    /// The record is not UTF-8; the first bad byte is at `at` (0-based, in the record).
    InvalidUtf8 { at: usize },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::TooLong { max } => write!(f, "record longer than {max} bytes (max_record_bytes)"),
            Problem::TextAfterQuote { field } => {
                write!(f, "field {field} has text after its closing quote")
            }
            Problem::InvalidUtf8 { at } => write!(f, "invalid UTF-8 at byte {at} of the record"),
        }
    }
}

/// One complete, valid record: UTF-8 text split into fields.
#[derive(Debug)]
pub(crate) struct Record<'a> {
    number: u64,
    line: u64,
    terminated: bool,
    /// The record as written, without its line ending.
    text: &'a str,
    spans: &'a [Span],
    fields: usize,
    scratch: &'a str,
}

impl<'a> Record<'a> {
    /// 1-based position among the rows of the input (empty lines included).
    pub(crate) fn number(&self) -> u64 {
        self.number
    }

    /// The 1-based line the record starts on.
    pub(crate) fn line(&self) -> u64 {
        self.line
    }

    /// Whether a line ending closed the record (only the last record of the input may lack one).
    pub(crate) fn terminated(&self) -> bool {
        self.terminated
    }

    /// The record as written, without its line ending.
    pub(crate) fn raw(&self) -> &'a str {
        self.text
    }

    /// The number of fields (which may exceed the [`MAX_FIELDS`] that can be read).
    pub(crate) fn len(&self) -> usize {
        self.fields
    }

    /// Field `i` (0-based, below `min(len(), MAX_FIELDS)`), unquoted and unescaped.
    pub(crate) fn field(&self, i: usize) -> &'a str {
        let s = self.spans[i];
        match s.kind {
            SpanKind::Scratch => &self.scratch[s.start..s.end],
            SpanKind::Raw | SpanKind::Escaped => &self.text[s.start..s.end],
        }
    }
}

/// A record the splitter refused, with what is known of it.
#[derive(Debug)]
pub(crate) struct BadRow<'a> {
    pub number: u64,
    pub line: u64,
    /// The record's first bytes: all of it, or for an over-long record its first
    /// `min(max_record_bytes + 1, MAX_EXCERPT)` bytes (the same whatever the chunks were).
    pub raw: &'a [u8],
    pub problem: Problem,
}

/// What the splitter hands its callback for each record.
pub(crate) type Row<'a> = Result<Record<'a>, BadRow<'a>>;

/// The streaming record splitter. See the module docs.
#[derive(Debug)]
pub(crate) struct CsvSplitter {
    max_record: usize,
    state: State,
    /// Bytes of a possible byte-order mark matched at the very start; `None` once decided.
    bom: Option<usize>,
    /// The bytes of the current record that arrived in earlier chunks (empty while skipping).
    pending: Vec<u8>,
    /// How many bytes of the current record arrived in earlier chunks.
    carried: usize,
    /// The current record is over the limit and already reported: scanned to its end, not kept.
    skipping: bool,
    spans: Vec<Span>,
    /// Fields completed in the current record.
    fields: usize,
    /// Whether some field of the current record has doubled quotes.
    escapes: bool,
    /// Start of the current field's content, from the record's start.
    field_start: usize,
    /// Position of the last quote seen in the current quoted field (its closing quote, if the
    /// field ends there).
    quote_end: usize,
    /// The current quoted field has doubled quotes.
    escaped: bool,
    /// The first reason the current record is bad, if any.
    problem: Option<Problem>,
    /// The 1-based line of the next byte.
    line: u64,
    /// The line the current record started on.
    record_line: u64,
    /// The line the current quoted field opened on.
    quote_line: u64,
    /// Records completed so far (empty lines included).
    records: u64,
    scratch: String,
}

impl CsvSplitter {
    /// A splitter refusing records of more than `max_record` bytes (capped at
    /// [`MAX_RECORD_LIMIT`]).
    pub(crate) fn new(max_record: usize) -> Self {
        Self {
            max_record: max_record.min(MAX_RECORD_LIMIT),
            state: State::FieldStart,
            bom: Some(0),
            pending: Vec::new(),
            carried: 0,
            skipping: false,
            spans: Vec::new(),
            fields: 0,
            escapes: false,
            field_start: 0,
            quote_end: 0,
            escaped: false,
            problem: None,
            line: 1,
            record_line: 1,
            quote_line: 1,
            records: 0,
            scratch: String::new(),
        }
    }

    /// The 1-based line the scan has reached.
    pub(crate) fn line(&self) -> u64 {
        self.line
    }

    /// The bytes of an unfinished record held between chunks: at most the record limit.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.pending.len()
    }

    /// Consumes `chunk`, handing every record it completes to `f`; the start of an unfinished
    /// record is kept. Stops at the first error `f` returns (the splitter must then be dropped).
    pub(crate) fn push<E>(&mut self, chunk: &[u8], f: &mut impl FnMut(Row<'_>) -> Result<(), E>) -> Result<(), E> {
        let mut chunk = chunk;
        if let Some(matched) = self.bom {
            let mut n = matched;
            while n < UTF8_BOM.len() && chunk.first() == Some(&UTF8_BOM[n]) {
                n += 1;
                chunk = &chunk[1..];
            }
            if n == UTF8_BOM.len() {
                self.bom = None;
            } else if chunk.is_empty() {
                self.bom = Some(n);
                return Ok(());
            } else {
                // Not a byte-order mark: the bytes held back were text.
                self.bom = None;
                self.scan(&UTF8_BOM[..n], f)?;
            }
        }
        self.scan(chunk, f)
    }

    /// End of input: hands the last record (which may lack its line ending) to `f`. Input that
    /// ends inside a quoted field gives `unterminated(line the field opened on)`.
    pub(crate) fn finish<E>(
        &mut self,
        f: &mut impl FnMut(Row<'_>) -> Result<(), E>,
        unterminated: impl FnOnce(u64) -> E,
    ) -> Result<(), E> {
        if let Some(n) = self.bom.take() {
            self.scan(&UTF8_BOM[..n], f)?;
        }
        let cr = match self.state {
            State::Quoted => return Err(unterminated(self.quote_line)),
            State::AfterQuote | State::AfterQuoteCr => {
                self.end_field(self.field_start, self.quote_end, self.escaped);
                usize::from(self.state == State::AfterQuoteCr)
            }
            State::Unquoted => {
                let end = self.carried;
                let cr = !self.skipping && end > self.field_start && self.pending[end - 1] == b'\r';
                self.end_field(self.field_start, end - usize::from(cr), false);
                usize::from(cr)
            }
            State::FieldStart if self.carried == 0 => return Ok(()),
            State::FieldStart => {
                // After a trailing comma: an empty last field.
                self.end_field(self.carried, self.carried, false);
                0
            }
        };
        self.end_record(&[], cr, false, f)
    }

    /// Runs the state machine over `c`.
    fn scan<E>(&mut self, c: &[u8], f: &mut impl FnMut(Row<'_>) -> Result<(), E>) -> Result<(), E> {
        let mut i = 0;
        // Where the current record starts in `c` (0 when it started in an earlier chunk): the
        // byte `c[k]` is at `self.carried + k - rec_start` from the record's start.
        let mut rec_start = 0;
        loop {
            match self.state {
                State::FieldStart => {
                    let Some(&b) = c.get(i) else { break };
                    if b == b'"' {
                        self.field_start = self.carried + i + 1 - rec_start;
                        self.quote_line = self.line;
                        self.escaped = false;
                        self.state = State::Quoted;
                        i += 1;
                    } else {
                        self.field_start = self.carried + i - rec_start;
                        self.state = State::Unquoted;
                    }
                }
                State::Unquoted => {
                    let Some(k) = memchr2(b',', b'\n', &c[i..]) else { break };
                    let j = i + k;
                    let end = self.carried + j - rec_start;
                    if c[j] == b',' {
                        self.end_field(self.field_start, end, false);
                        self.state = State::FieldStart;
                    } else {
                        let cr = !self.skipping && end > self.field_start && {
                            let before = if j > rec_start { c[j - 1] } else { self.pending[end - 1] };
                            before == b'\r'
                        };
                        self.end_field(self.field_start, end - usize::from(cr), false);
                        self.end_record(&c[rec_start..j], usize::from(cr), true, f)?;
                        rec_start = j + 1;
                    }
                    i = j + 1;
                }
                State::Quoted => match memchr(b'"', &c[i..]) {
                    None => {
                        self.line += count_lf(&c[i..]);
                        break;
                    }
                    Some(k) => {
                        self.line += count_lf(&c[i..i + k]);
                        self.quote_end = self.carried + i + k - rec_start;
                        self.state = State::AfterQuote;
                        i += k + 1;
                    }
                },
                State::AfterQuote => {
                    let Some(&b) = c.get(i) else { break };
                    match b {
                        b'"' => {
                            self.escaped = true;
                            self.state = State::Quoted;
                            i += 1;
                        }
                        b',' => {
                            self.end_field(self.field_start, self.quote_end, self.escaped);
                            self.state = State::FieldStart;
                            i += 1;
                        }
                        b'\n' => {
                            self.end_field(self.field_start, self.quote_end, self.escaped);
                            self.end_record(&c[rec_start..i], 0, true, f)?;
                            i += 1;
                            rec_start = i;
                        }
                        b'\r' => {
                            self.state = State::AfterQuoteCr;
                            i += 1;
                        }
                        _ => self.text_after_quote(),
                    }
                }
                State::AfterQuoteCr => {
                    let Some(&b) = c.get(i) else { break };
                    if b == b'\n' {
                        self.end_field(self.field_start, self.quote_end, self.escaped);
                        self.end_record(&c[rec_start..i], 1, true, f)?;
                        i += 1;
                        rec_start = i;
                    } else {
                        // The CR was not a line ending: text after the closing quote.
                        self.text_after_quote();
                    }
                }
            }
        }
        self.keep_tail(&c[rec_start..], f)
    }

    /// The record is bad; the rest of the field is scanned as unquoted text so that the record
    /// still ends where a reader would expect (at the next comma or line ending).
    fn text_after_quote(&mut self) {
        self.flag(Problem::TextAfterQuote { field: self.fields + 1 });
        self.state = State::Unquoted;
    }

    fn flag(&mut self, p: Problem) {
        if self.problem.is_none() {
            self.problem = Some(p);
        }
    }

    fn end_field(&mut self, start: usize, end: usize, escaped: bool) {
        self.fields += 1;
        if !self.skipping && self.spans.len() < MAX_FIELDS {
            self.escapes |= escaped;
            self.spans.push(Span {
                start,
                end,
                kind: if escaped { SpanKind::Escaped } else { SpanKind::Raw },
            });
        }
    }

    /// The current record ends: `part` is its bytes in the current chunk (all of them when
    /// nothing was carried), `cr` whether a CR before the LF belongs to the line ending.
    fn end_record<E>(
        &mut self,
        part: &[u8],
        cr: usize,
        terminated: bool,
        f: &mut impl FnMut(Row<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        self.records += 1;
        let number = self.records;
        let line = self.record_line;
        if terminated {
            self.line += 1;
        }
        let result = if self.skipping {
            Ok(())
        } else {
            let whole: &[u8] = if self.carried == 0 {
                part
            } else {
                self.pending.extend_from_slice(part);
                &self.pending
            };
            let raw = &whole[..whole.len() - cr];
            if raw.is_empty() {
                Ok(()) // an empty line
            } else if whole.len() > self.max_record {
                let head = &whole[..(self.max_record + 1).min(MAX_EXCERPT)];
                f(Err(BadRow {
                    number,
                    line,
                    raw: head,
                    problem: Problem::TooLong { max: self.max_record },
                }))
            } else if let Some(problem) = self.problem {
                f(Err(BadRow {
                    number,
                    line,
                    raw,
                    problem,
                }))
            } else {
                match simdutf8::basic::from_utf8(raw) {
                    Err(_) => f(Err(BadRow {
                        number,
                        line,
                        raw,
                        problem: Problem::InvalidUtf8 {
                            // Only a bad record pays for finding where.
                            at: std::str::from_utf8(raw).err().map_or(0, |e| e.valid_up_to()),
                        },
                    })),
                    Ok(text) => {
                        if self.escapes {
                            unescape(text, &mut self.spans, &mut self.scratch);
                        }
                        f(Ok(Record {
                            number,
                            line,
                            terminated,
                            text,
                            spans: &self.spans,
                            fields: self.fields,
                            scratch: &self.scratch,
                        }))
                    }
                }
            }
        };
        self.pending.clear();
        self.carried = 0;
        self.skipping = false;
        self.spans.clear();
        self.fields = 0;
        self.escapes = false;
        self.problem = None;
        self.state = State::FieldStart;
        self.record_line = self.line;
        result
    }

    /// Keeps `tail`, the start (or a continuation) of a record cut by the end of a chunk, unless
    /// the record is now known to be over the limit: then it is reported and skipped.
    fn keep_tail<E>(&mut self, tail: &[u8], f: &mut impl FnMut(Row<'_>) -> Result<(), E>) -> Result<(), E> {
        let carried = self.carried + tail.len();
        if self.skipping || carried <= self.max_record {
            if !self.skipping {
                self.pending.extend_from_slice(tail);
            }
            self.carried = carried;
            return Ok(());
        }
        let keep = (self.max_record + 1).min(MAX_EXCERPT);
        let mut head = std::mem::take(&mut self.pending);
        head.truncate(keep);
        let room = keep - head.len();
        head.extend_from_slice(&tail[..room.min(tail.len())]);
        self.skipping = true;
        self.carried = carried;
        let result = f(Err(BadRow {
            number: self.records + 1,
            line: self.record_line,
            raw: &head,
            problem: Problem::TooLong { max: self.max_record },
        }));
        head.clear();
        self.pending = head;
        result
    }
}

/// Line feeds in `b` (a loop the compiler vectorises; the runs are short).
fn count_lf(b: &[u8]) -> u64 {
    b.iter().filter(|&&c| c == b'\n').count() as u64
}

/// Unescapes the fields of `text` that hold doubled quotes into `scratch` and points their spans
/// there.
fn unescape(text: &str, spans: &mut [Span], scratch: &mut String) {
    scratch.clear();
    for s in spans.iter_mut().filter(|s| s.kind == SpanKind::Escaped) {
        let start = scratch.len();
        let mut rest = &text[s.start..s.end];
        // Inside a quoted field every quote is the first of a doubled pair.
        while let Some(q) = memchr(b'"', rest.as_bytes()) {
            scratch.push_str(&rest[..=q]);
            rest = &rest[q + 2..];
        }
        scratch.push_str(rest);
        *s = Span {
            start,
            end: scratch.len(),
            kind: SpanKind::Scratch,
        };
    }
}

// ---------------------------------------------------------------------------------------------
// The decoder shared by the CSV formats
// ---------------------------------------------------------------------------------------------

/// Why a [`RowParser`] refused a record.
#[derive(Debug)]
pub(crate) enum RowError {
    /// The record is bad; the pipeline's `on_bad_record` policy decides. The reason names the
    /// field and quotes its value.
    Bad(String),
    /// The file cannot be read at all (a header that does not fit the format).
    Malformed(String),
}

/// The format-specific half of a CSV decoder: turns records into rows of its columns.
pub(crate) trait RowParser: Send + fmt::Debug {
    /// The number of fields a record has, once known (for a format with a header row, once the
    /// header has been read).
    fn expected_fields(&self) -> Option<usize>;

    /// Whether the next record must be a header row: a record the splitter refuses is then
    /// fatal, not a bad record.
    fn header_pending(&self) -> bool {
        false
    }

    /// Parses one record: `Ok(true)` when it became a row, `Ok(false)` when it was consumed
    /// without one (a header, a record outside the wanted window). A refused record leaves no
    /// trace in the columns.
    fn parse(&mut self, rec: &Record<'_>) -> Result<bool, RowError>;

    /// The rows parsed since the last call, as a batch.
    fn batch(&mut self, file_name: &str) -> Result<RecordBatch, DecodeError>;

    /// End of input: `Err(reason)` when the input as a whole is not a complete file of the
    /// format (no header row).
    fn at_end(&self) -> Result<(), String> {
        Ok(())
    }

    /// See [`Decoder::take_unknown_fields`].
    fn take_unknown_fields(&mut self) -> Vec<(String, u64)> {
        Vec::new()
    }
}

/// A push decoder for one CSV payload: a [`CsvSplitter`] feeding a [`RowParser`].
#[derive(Debug)]
pub(crate) struct CsvDecoder<P> {
    splitter: CsvSplitter,
    rows: Rows<P>,
    /// Set once `finish` ran or an error was returned: the decoder takes no more input.
    done: bool,
    /// Set when the decoder was built from unusable settings: every call fails with it.
    unusable: Option<String>,
}

/// Everything of [`CsvDecoder`] but the splitter, so the splitter's callback can borrow it.
#[derive(Debug)]
struct Rows<P> {
    what: &'static str,
    file_name: String,
    ctx: DecodeContext,
    parser: P,
    /// Rows and bytes of record text in the batch being built.
    rows: usize,
    text: usize,
    bad: Vec<BadRecord>,
}

impl<P: RowParser> CsvDecoder<P> {
    /// `what` names the format in [`DecodeError::Malformed`]; `file_name` the payload in errors,
    /// bad records and (for formats that have one) the `file_name` column.
    pub(crate) fn new(what: &'static str, file_name: &str, max_record: usize, parser: P, ctx: DecodeContext) -> Self {
        Self {
            splitter: CsvSplitter::new(max_record),
            rows: Rows {
                what,
                file_name: file_name.to_string(),
                ctx,
                parser,
                rows: 0,
                text: 0,
                bad: Vec::new(),
            },
            done: false,
            unusable: None,
        }
    }

    /// Makes every call fail with [`DecodeError::Malformed`] for `reason`: the payload's
    /// settings (labels) cannot be used.
    pub(crate) fn unusable(mut self, reason: String) -> Self {
        self.unusable = Some(reason);
        self
    }

    pub(crate) fn parser(&self) -> &P {
        &self.rows.parser
    }

    /// The bytes of an unfinished record held between chunks.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.splitter.held()
    }

    fn refuse(&self, reason: &str) -> DecodeError {
        self.rows.malformed(self.splitter.line(), reason)
    }
}

impl<P: RowParser> Rows<P> {
    fn malformed(&self, line: u64, reason: &str) -> DecodeError {
        DecodeError::Malformed {
            what: self.what,
            line,
            reason: format!("{}{reason}", in_file(&self.file_name)),
        }
    }

    fn on_row(&mut self, row: Row<'_>, out: &mut Vec<RecordBatch>) -> Result<(), DecodeError> {
        let rec = match row {
            Ok(rec) => rec,
            Err(bad) if self.parser.header_pending() => {
                return Err(self.malformed(bad.line, &format!("the header row is unusable: {}", bad.problem)));
            }
            Err(bad) => return self.bad_record(bad.line, bad.number, &bad.problem.to_string(), bad.raw),
        };
        if !rec.terminated()
            && let Some(expected) = self.parser.expected_fields()
            && rec.len() < expected
        {
            // A cut download ends in the middle of a record: refetch it, do not load it short.
            let reason = format!(
                "the file ends inside record {}, after {} of its {expected} fields (truncated?)",
                rec.number(),
                rec.len()
            );
            return Err(self.malformed(rec.line(), &reason));
        }
        match self.parser.parse(&rec) {
            Ok(true) => {
                self.rows += 1;
                self.text += rec.raw().len();
                if self.rows >= self.ctx.batch_size.max(1) || self.text >= MAX_BATCH_TEXT {
                    self.flush(out)?;
                }
                Ok(())
            }
            Ok(false) => Ok(()),
            Err(RowError::Bad(reason)) => self.bad_record(rec.line(), rec.number(), &reason, rec.raw().as_bytes()),
            Err(RowError::Malformed(reason)) => Err(self.malformed(rec.line(), &reason)),
        }
    }

    fn flush(&mut self, out: &mut Vec<RecordBatch>) -> Result<(), DecodeError> {
        if self.rows > 0 {
            out.push(self.parser.batch(&self.file_name)?);
        }
        self.rows = 0;
        self.text = 0;
        Ok(())
    }

    fn bad_record(&mut self, line: u64, number: u64, reason: &str, raw: &[u8]) -> Result<(), DecodeError> {
        let reason = format!("record {number}: {reason}");
        match self.ctx.policy {
            BadRecordPolicy::Fail => {
                let file = if self.file_name.is_empty() {
                    String::new()
                } else {
                    format!(" (file {})", self.file_name)
                };
                Err(DecodeError::BadRecord {
                    line,
                    reason: format!("{reason}{file}"),
                    excerpt: excerpt(raw),
                })
            }
            BadRecordPolicy::Skip => {
                self.bad.push(BadRecord {
                    unit: String::new(),
                    payload: self.file_name.clone(),
                    line,
                    reason,
                    raw: excerpt(raw),
                });
                Ok(())
            }
        }
    }
}

fn in_file(file_name: &str) -> String {
    if file_name.is_empty() {
        String::new()
    } else {
        format!("{file_name}: ")
    }
}

impl<P: RowParser> Decoder for CsvDecoder<P> {
    fn decode(&mut self, chunk: &[u8], out: &mut Vec<RecordBatch>) -> Result<(), DecodeError> {
        if let Some(reason) = &self.unusable {
            return Err(self.refuse(reason));
        }
        if self.done {
            return Err(self.refuse("input after the decoder finished or failed"));
        }
        self.done = true; // cleared below unless an error leaves the state unusable
        let rows = &mut self.rows;
        self.splitter.push(chunk, &mut |row| rows.on_row(row, out))?;
        self.done = false;
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<RecordBatch>) -> Result<(), DecodeError> {
        if let Some(reason) = &self.unusable {
            return Err(self.refuse(reason));
        }
        if self.done {
            return Err(self.refuse("finish after the decoder finished or failed"));
        }
        self.done = true;
        let rows = &mut self.rows;
        let what = rows.what;
        let file = in_file(&rows.file_name);
        self.splitter
            .finish(&mut |row| rows.on_row(row, out), |line| DecodeError::Malformed {
                what,
                line,
                reason: format!("{file}the file ends inside a quoted field that opened on line {line} (truncated?)"),
            })?;
        if let Err(reason) = self.rows.parser.at_end() {
            return Err(self.refuse(&reason));
        }
        self.rows.flush(out)
    }

    fn take_bad_records(&mut self) -> Vec<BadRecord> {
        std::mem::take(&mut self.rows.bad)
    }

    fn take_unknown_fields(&mut self) -> Vec<(String, u64)> {
        self.rows.parser.take_unknown_fields()
    }
}

// ---------------------------------------------------------------------------------------------
// Field values shared by the CSV formats
// ---------------------------------------------------------------------------------------------

/// Longest value quoted in a bad-record reason.
const MAX_QUOTED: usize = 64;

/// A value for a message, cut to [`MAX_QUOTED`] bytes on a character boundary.
pub(crate) fn show(s: &str) -> String {
    if s.len() <= MAX_QUOTED {
        return s.to_string();
    }
    let mut end = MAX_QUOTED;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// `None` for an empty field: the CSV formats write no value as an empty field.
pub(crate) fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// A decimal `i64`, with an optional leading `-`; `None` for anything else or on overflow.
pub(crate) fn parse_i64(s: &str) -> Option<i64> {
    let (negative, digits) = match s.as_bytes() {
        [b'-', rest @ ..] => (true, rest),
        b => (false, b),
    };
    if digits.is_empty() {
        return None;
    }
    let mut v: i64 = 0;
    for &c in digits {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        // Accumulate negatively so that i64::MIN parses.
        v = v.checked_mul(10)?.checked_sub(i64::from(d))?;
    }
    if negative { Some(v) } else { v.checked_neg() }
}

/// A required integer field named `name`: empty or not an integer is a bad-record reason.
pub(crate) fn required_i64(name: &str, s: &str) -> Result<i64, RowError> {
    if s.is_empty() {
        return Err(RowError::Bad(format!("{name} is empty")));
    }
    parse_i64(s).ok_or_else(|| not_an_integer(name, s))
}

/// An optional integer field named `name`: empty is `None`.
pub(crate) fn optional_i64(name: &str, s: &str) -> Result<Option<i64>, RowError> {
    if s.is_empty() {
        return Ok(None);
    }
    parse_i64(s).map(Some).ok_or_else(|| not_an_integer(name, s))
}

fn not_an_integer(name: &str, s: &str) -> RowError {
    RowError::Bad(format!("{name} `{}` is not an integer", show(s)))
}

#[cfg(test)]
mod tests;
