//! The mail tracking log API answers each call with one JSON page,
//! `{"nextToken": "...", "logs": [{record}, ...]}`, of up to `limit` records (500 by default). Pages may
//! arrive compressed and chunked, so this is a push decoder: it accepts the page split at any
//! byte (inside a string, an escape, a number, a multi-byte character) and yields exactly the
//! batches, bad records and errors one call with the whole page would.
//!
//! Why a hand-written scanner instead of `serde_json`: the schema is fixed and flat, and a day can
//! hold millions of records. The scanner walks each record once, finds string ends eight bytes at
//! a time, keeps values as spans of the input (unescaping into a scratch buffer only when a string
//! has a `\`), validates UTF-8 once per record and then appends straight into the column builders:
//! no DOM, no `String` per field. A record is first parsed completely and only then appended, so a
//! record that turns out bad (or incomplete, at a chunk boundary) leaves no trace in the columns.
//!
//! How chunks are handled: the page is consumed one JSON *item* at a time (a punctuation byte, a
//! key, a skipped value, a whole record). An item cut by the end of a chunk is kept, with
//! everything after it, and parsed again from its start once a small framer (which only tracks
//! strings and bracket depth) has seen its end arrive; so each byte is scanned a bounded number of
//! times whatever the chunk sizes. Every decision depends only on the bytes up to the point where
//! it is made, which is what makes the batches, the bad records and the error messages the same
//! for every way of cutting the page. The carried bytes are never more than one item plus the
//! chunk that completes it: at most the page itself, which the source holds in memory anyway.
//!
//! What counts as what:
//! - Not JSON, or not the documented page shape (truncated, no `logs` array on a page with other
//!   keys such as an error's `code`, `logs` neither an array nor null, a second `logs`, trailing
//!   data after the object): [`DecodeError::Malformed`]. A syntax error
//!   inside a record is also Malformed: once the JSON is broken, where the record ends is a guess.
//! - Well-formed JSON whose values do not fit the schema (a wrong type, an impossible timestamp, a
//!   missing `genTime`, a duplicated key, invalid UTF-8, an unpaired `\uD800` surrogate, an element
//!   of `logs` that is not an object, and under `on_unknown_field: fail` an unknown key): a bad
//!   record, handled by the pipeline's `on_bad_record` policy.
//!
//! Choices where the seed is silent (documented in the crate docs too):
//! - Absent key, JSON `null` and an empty list `[]` all give a null cell; a list is never empty.
//!   `null` elements inside a list give null items (`[null]` is a list of one null).
//! - A key appearing twice in one record (including `embeddedUrls` next to `embeddedUrl`) makes the
//!   record bad: which one the vendor meant is unknowable.
//! - Page-level keys other than `logs` (`nextToken`, which the source reads, or new ones) are
//!   skipped and never counted as unknown fields: they describe the page, not a record.
//! - A page without records may say so as `"logs": []`, `"logs": null` or no `logs` at all, as
//!   long as `nextToken` is its only other key (`{}` included): an object with any other key and
//!   no `logs` is an error body or another document, and Malformed.
//! - Unknown keys are counted in every record that is read completely, bad or not.

use crate::civil::{days_from_civil, days_in_month, digits};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use arrow_array::builder::{
    ArrayBuilder, Int8Builder, Int64Builder, ListBuilder, NullBufferBuilder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::types::Int8Type;
use arrow_array::{ArrayRef, DictionaryArray, ListArray, RecordBatch, StringArray, StructArray};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{DataType, Field, FieldRef, Fields, Schema, SchemaRef, TimeUnit};
use etl_core::bad::excerpt;
use etl_core::{
    BadRecord, BadRecordPolicy, DecodeContext, DecodeError, Decoder, Format, PayloadMeta, UnknownFieldPolicy,
};

/// What [`DecodeError::Malformed`] names for this format.
const WHAT: &str = "mail tracking JSON";

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Deepest nesting accepted inside a skipped value. The records are three levels deep; this only
/// bounds the recursion of the value skipper on hostile input.
const MAX_DEPTH: u32 = 128;

/// Longest value quoted in a message.
const MAX_QUOTED: usize = 64;

/// Distinct values an `Int8`-keyed dictionary can hold (keys 0 to 127).
const MAX_DICT_VALUES: usize = 128;

/// How a column is parsed and built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// An ISO 8601 UTC timestamp string, as `Timestamp(Microsecond, "UTC")`.
    Time,
    Text,
    /// A string with few distinct values, as `Dictionary(Int8, Utf8)`.
    Dict,
    /// An integer, as `Int64`.
    Int,
    /// An array of strings, as `List<Utf8>`.
    TextList,
    /// `[{fileName, sha256}]`, as `List<Struct<file_name, sha256>>`.
    Attachments,
}

/// One output column: its name, the JSON key it comes from, and its place among the builders of
/// its kind.
#[derive(Debug)]
struct Column {
    name: &'static str,
    json: &'static str,
    kind: Kind,
    slot: usize,
}

const fn column(name: &'static str, json: &'static str, kind: Kind, slot: usize) -> Column {
    Column { name, json, kind, slot }
}

const N_COLUMNS: usize = 20;

/// The schema, in column order (documented in the crate docs, frozen by a test).
const COLUMNS: [Column; N_COLUMNS] = [
    column("timestamp", "timestamp", Kind::Time, 0),
    column("gen_time", "genTime", Kind::Time, 1),
    column("delivery_time", "deliveryTime", Kind::Time, 2),
    column("sender", "sender", Kind::Text, 0),
    column("header_from", "headerFrom", Kind::Text, 1),
    column("recipient", "recipient", Kind::Text, 2),
    column("header_to", "headerTo", Kind::TextList, 0),
    column("subject", "subject", Kind::Text, 3),
    column("sender_ip", "senderIP", Kind::Text, 4),
    column("delivered_to", "deliveredTo", Kind::Text, 5),
    column("mail_id", "mailID", Kind::Text, 6),
    column("direction", "direction", Kind::Dict, 0),
    column("message_id", "messageID", Kind::Text, 7),
    column("size", "size", Kind::Int, 0),
    column("action", "action", Kind::Dict, 1),
    column("reason", "reason", Kind::Text, 8),
    column("attachments", "attachments", Kind::Attachments, 0),
    column("embedded_urls", "embeddedUrls", Kind::TextList, 1),
    column("tls_info", "tlsInfo", Kind::Text, 9),
    column("details", "details", Kind::Text, 10),
];

/// Index of `gen_time` in [`COLUMNS`]: the one required field.
const GEN_TIME: usize = 1;
/// Index of `embedded_urls`, whose key has two spellings.
const EMBEDDED_URLS: usize = 17;
const TIME_COLUMNS: usize = 3;
const TEXT_COLUMNS: usize = 11;
const DICT_COLUMNS: usize = 2;
const LIST_COLUMNS: usize = 2;

/// The column a record key feeds. `embeddedUrl` is the spelling of the seed's field table,
/// `embeddedUrls` the one of its example: both are accepted.
fn column_of(key: &[u8]) -> Option<usize> {
    Some(match key {
        b"timestamp" => 0,
        b"genTime" => 1,
        b"deliveryTime" => 2,
        b"sender" => 3,
        b"headerFrom" => 4,
        b"recipient" => 5,
        b"headerTo" => 6,
        b"subject" => 7,
        b"senderIP" => 8,
        b"deliveredTo" => 9,
        b"mailID" => 10,
        b"direction" => 11,
        b"messageID" => 12,
        b"size" => 13,
        b"action" => 14,
        b"reason" => 15,
        b"attachments" => 16,
        b"embeddedUrls" | b"embeddedUrl" => EMBEDDED_URLS,
        b"tlsInfo" => 18,
        b"details" => 19,
        _ => return None,
    })
}

fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn attachment_fields() -> Fields {
    Fields::from(vec![
        Field::new("file_name", DataType::Utf8, true),
        Field::new("sha256", DataType::Utf8, true),
    ])
}

/// The `item` field of the `attachments` list.
fn attachment_item() -> FieldRef {
    Arc::new(Field::new_list_field(DataType::Struct(attachment_fields()), true))
}

fn data_type(kind: Kind) -> DataType {
    match kind {
        Kind::Time => timestamp_type(),
        Kind::Text => DataType::Utf8,
        Kind::Dict => DataType::Dictionary(Box::new(DataType::Int8), Box::new(DataType::Utf8)),
        Kind::Int => DataType::Int64,
        Kind::TextList => DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
        Kind::Attachments => DataType::List(attachment_item()),
    }
}

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let fields: Vec<Field> = COLUMNS
        .iter()
        .enumerate()
        .map(|(i, c)| Field::new(c.name, data_type(c.kind), i != GEN_TIME))
        .collect();
    Arc::new(Schema::new(fields))
});

/// The Arrow schema of every batch of mail tracking records (documented in the crate docs).
pub fn schema() -> SchemaRef {
    Arc::clone(&SCHEMA)
}

/// The mail tracking log format: JSON pages of `logs` records.
#[derive(Clone, Copy, Debug, Default)]
pub struct MailTrackingFormat;

impl MailTrackingFormat {
    pub fn new() -> Self {
        Self
    }
}

impl Format for MailTrackingFormat {
    fn schema(&self) -> SchemaRef {
        schema()
    }

    fn time_column(&self) -> &'static str {
        "gen_time"
    }

    fn decoder(&self, _meta: &PayloadMeta, ctx: DecodeContext) -> Box<dyn Decoder> {
        Box::new(MailTrackingDecoder::new(ctx))
    }
}

// ---------------------------------------------------------------------------------------------
// Tokenizer
// ---------------------------------------------------------------------------------------------

/// Why the tokenizer stopped.
#[derive(Clone, Copy, Debug)]
enum Stop {
    /// The input ended inside the item: wait for more (or, at the end of the page, it is
    /// truncated).
    More,
    /// Not JSON.
    Syntax { at: usize, what: Syntax },
}

#[derive(Clone, Copy, Debug)]
enum Syntax {
    /// `expected {0}, found ...`
    Expected(&'static str),
    ControlCharacter,
    InvalidEscape,
    TooDeep,
}

/// A string value: a span of the input when it has no escapes, else a span of the scratch
/// buffer it was unescaped into.
#[derive(Clone, Copy, Debug)]
enum Txt {
    Raw(usize, usize),
    Esc(usize, usize),
}

fn txt_bytes<'a>(data: &'a [u8], scratch: &'a [u8], t: Txt) -> &'a [u8] {
    match t {
        Txt::Raw(a, b) => &data[a..b],
        Txt::Esc(a, b) => &scratch[a..b],
    }
}

/// What one escape sequence stands for.
#[derive(Clone, Copy, Debug)]
enum Escaped {
    Byte(u8),
    Char(char),
    /// A `\uD800`-`\uDFFF` escape that is not half of a pair: no character can represent it.
    LoneSurrogate,
}

/// A position in the input being scanned. `eof` says no byte follows `d`: only then may a number
/// end at the end of `d`.
#[derive(Debug)]
struct Cur<'a> {
    d: &'a [u8],
    p: usize,
    eof: bool,
}

impl Cur<'_> {
    #[inline]
    fn ws(&mut self) {
        while let Some(&b) = self.d.get(self.p) {
            if !matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
                break;
            }
            self.p += 1;
        }
    }

    #[inline]
    fn peek(&self) -> Result<u8, Stop> {
        self.d.get(self.p).copied().ok_or(Stop::More)
    }

    fn expected(&self, what: &'static str) -> Stop {
        Stop::Syntax {
            at: self.p,
            what: Syntax::Expected(what),
        }
    }

    /// Consumes `b` (after whitespace) or fails with `expected {what}`.
    #[inline]
    fn eat(&mut self, b: u8, what: &'static str) -> Result<(), Stop> {
        self.ws();
        if self.peek()? != b {
            return Err(self.expected(what));
        }
        self.p += 1;
        Ok(())
    }

    /// After a member or element: `true` for a `,` (and the whitespace after it), `false` for the
    /// closing `close`.
    #[inline]
    fn next_or_close(&mut self, close: u8, what: &'static str) -> Result<bool, Stop> {
        self.ws();
        let b = self.peek()?;
        self.p += 1;
        if b == b',' {
            self.ws();
            Ok(true)
        } else if b == close {
            Ok(false)
        } else {
            self.p -= 1;
            Err(self.expected(what))
        }
    }

    /// A string starting at the `"` under the cursor. Returns its content and whether it held an
    /// unpaired surrogate escape (replaced by U+FFFD in the content).
    #[inline]
    fn string(&mut self, scratch: &mut Vec<u8>) -> Result<(Txt, bool), Stop> {
        let start = self.p + 1;
        let j = find_special(self.d, start).ok_or(Stop::More)?;
        if self.d[j] == b'"' {
            self.p = j + 1;
            return Ok((Txt::Raw(start, j), false));
        }
        self.string_escaped(start, j, scratch)
    }

    /// The rest of [`Cur::string`] once `d[j]` is a `\` or a control character.
    fn string_escaped(&mut self, start: usize, mut j: usize, scratch: &mut Vec<u8>) -> Result<(Txt, bool), Stop> {
        let from = scratch.len();
        let mut i = start;
        let mut lone = false;
        loop {
            scratch.extend_from_slice(&self.d[i..j]);
            match self.d[j] {
                b'"' => {
                    self.p = j + 1;
                    return Ok((Txt::Esc(from, scratch.len()), lone));
                }
                b'\\' => {
                    let (len, e) = self.escape(j)?;
                    match e {
                        Escaped::Byte(b) => scratch.push(b),
                        Escaped::Char(c) => scratch.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
                        Escaped::LoneSurrogate => {
                            lone = true;
                            scratch.extend_from_slice("\u{FFFD}".as_bytes());
                        }
                    }
                    i = j + len;
                }
                _ => {
                    return Err(Stop::Syntax {
                        at: j,
                        what: Syntax::ControlCharacter,
                    });
                }
            }
            j = find_special(self.d, i).ok_or(Stop::More)?;
        }
    }

    /// Skips a string starting at the `"` under the cursor, checking its escapes.
    fn skip_string(&mut self) -> Result<(), Stop> {
        let mut i = self.p + 1;
        loop {
            let j = find_special(self.d, i).ok_or(Stop::More)?;
            match self.d[j] {
                b'"' => {
                    self.p = j + 1;
                    return Ok(());
                }
                b'\\' => i = j + self.escape(j)?.0,
                _ => {
                    return Err(Stop::Syntax {
                        at: j,
                        what: Syntax::ControlCharacter,
                    });
                }
            }
        }
    }

    /// The escape sequence at `d[j] == b'\\'`: its length and meaning.
    fn escape(&self, j: usize) -> Result<(usize, Escaped), Stop> {
        let e = *self.d.get(j + 1).ok_or(Stop::More)?;
        let byte = match e {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0C,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => return self.unicode_escape(j),
            _ => {
                return Err(Stop::Syntax {
                    at: j,
                    what: Syntax::InvalidEscape,
                });
            }
        };
        Ok((2, Escaped::Byte(byte)))
    }

    fn unicode_escape(&self, j: usize) -> Result<(usize, Escaped), Stop> {
        let hi = self.hex4(j + 2)?;
        if !(0xD800..0xE000).contains(&hi) {
            let c = char::from_u32(hi).unwrap_or('\u{FFFD}');
            return Ok((6, Escaped::Char(c)));
        }
        if hi >= 0xDC00 {
            return Ok((6, Escaped::LoneSurrogate));
        }
        // A high surrogate: the pair's low half must follow as `\uDC00`-`\uDFFF`.
        match (self.d.get(j + 6), self.d.get(j + 7)) {
            (None, _) | (Some(b'\\'), None) => Err(Stop::More),
            (Some(b'\\'), Some(b'u')) => {
                let lo = self.hex4(j + 8)?;
                if (0xDC00..0xE000).contains(&lo) {
                    let code = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                    Ok((12, Escaped::Char(char::from_u32(code).unwrap_or('\u{FFFD}'))))
                } else {
                    // Only the lone high half is consumed; the next escape stands on its own.
                    Ok((6, Escaped::LoneSurrogate))
                }
            }
            _ => Ok((6, Escaped::LoneSurrogate)),
        }
    }

    /// The four hex digits of a `\u` escape, at `d[at..]`. Checked in order, so that the error
    /// (or the wait for more input) does not depend on where the chunk ends.
    fn hex4(&self, at: usize) -> Result<u32, Stop> {
        let mut value = 0;
        for k in at..at + 4 {
            let b = *self.d.get(k).ok_or(Stop::More)?;
            let digit = char::from(b).to_digit(16).ok_or(Stop::Syntax {
                at: k,
                what: Syntax::Expected("a hex digit of a \\u escape"),
            })?;
            value = value * 16 + digit;
        }
        Ok(value)
    }

    /// A JSON number starting under the cursor (a `-` or a digit). Returns its value when it is an
    /// integer that fits `i64`.
    fn number(&mut self) -> Result<Option<i64>, Stop> {
        let d = self.d;
        let mut p = self.p;
        let negative = d[p] == b'-';
        if negative {
            p += 1;
        }
        match d.get(p) {
            Some(b) if b.is_ascii_digit() => {}
            Some(_) => return Err(self.digit_expected(p)),
            None => return Err(Stop::More),
        }
        let mut value: Option<u64> = Some(0);
        if d[p] == b'0' {
            p += 1;
        } else {
            while let Some(&b) = d.get(p) {
                if !b.is_ascii_digit() {
                    break;
                }
                value = value
                    .and_then(|v| v.checked_mul(10))
                    .and_then(|v| v.checked_add(u64::from(b - b'0')));
                p += 1;
            }
        }
        let mut integer = true;
        if d.get(p) == Some(&b'.') {
            integer = false;
            p = self.digits(p + 1)?;
        }
        if matches!(d.get(p), Some(b'e' | b'E')) {
            integer = false;
            p += 1;
            if matches!(d.get(p), Some(b'+' | b'-')) {
                p += 1;
            }
            p = self.digits(p)?;
        }
        if p == d.len() && !self.eof {
            return Err(Stop::More);
        }
        self.p = p;
        let value = value.filter(|_| integer).and_then(|v| {
            if negative {
                0i64.checked_sub_unsigned(v)
            } else {
                i64::try_from(v).ok()
            }
        });
        Ok(value)
    }

    /// One or more digits at `d[p..]`; returns the offset after them. Running out of input
    /// before the first digit is a truncation, not a syntax error, even at the end of the page.
    fn digits(&self, mut p: usize) -> Result<usize, Stop> {
        match self.d.get(p) {
            Some(b) if b.is_ascii_digit() => {}
            Some(_) => return Err(self.digit_expected(p)),
            None => return Err(Stop::More),
        }
        while self.d.get(p).is_some_and(u8::is_ascii_digit) {
            p += 1;
        }
        Ok(p)
    }

    fn digit_expected(&self, at: usize) -> Stop {
        Stop::Syntax {
            at,
            what: Syntax::Expected("a digit"),
        }
    }

    /// `true`, `false` or `null` under the cursor.
    fn literal(&mut self, lit: &'static [u8]) -> Result<(), Stop> {
        let avail = &self.d[self.p..];
        match lit.iter().zip(avail).position(|(a, b)| a != b) {
            Some(k) => Err(Stop::Syntax {
                at: self.p + k,
                what: Syntax::Expected(match lit {
                    b"true" => "`true`",
                    b"false" => "`false`",
                    _ => "`null`",
                }),
            }),
            None if avail.len() < lit.len() => Err(Stop::More),
            None => {
                self.p += lit.len();
                Ok(())
            }
        }
    }

    /// Skips any JSON value under the cursor, checking its syntax; returns what it was, for
    /// messages (`a string`, `an object`...). `depth` is the nesting of the value.
    fn skip_value(&mut self, depth: u32) -> Result<&'static str, Stop> {
        match self.peek()? {
            b'"' => {
                self.skip_string()?;
                Ok("a string")
            }
            b'{' => {
                self.nest(depth)?;
                if self.peek()? != b'}' {
                    loop {
                        if self.peek()? != b'"' {
                            return Err(self.expected("a field name"));
                        }
                        self.skip_string()?;
                        self.eat(b':', "`:`")?;
                        self.ws();
                        self.skip_value(depth + 1)?;
                        if !self.next_or_close(b'}', "`,` or `}`")? {
                            return Ok("an object");
                        }
                    }
                }
                self.p += 1;
                Ok("an object")
            }
            b'[' => {
                self.nest(depth)?;
                if self.peek()? != b']' {
                    loop {
                        self.skip_value(depth + 1)?;
                        if !self.next_or_close(b']', "`,` or `]`")? {
                            return Ok("an array");
                        }
                    }
                }
                self.p += 1;
                Ok("an array")
            }
            b't' => self.literal(b"true").map(|()| "a boolean"),
            b'f' => self.literal(b"false").map(|()| "a boolean"),
            b'n' => self.literal(b"null").map(|()| "null"),
            b'-' | b'0'..=b'9' => self.number().map(|_| "a number"),
            _ => Err(self.expected("a JSON value")),
        }
    }

    /// Enters an object or array: checks the depth, steps over the bracket and whitespace.
    fn nest(&mut self, depth: u32) -> Result<(), Stop> {
        if depth >= MAX_DEPTH {
            return Err(Stop::Syntax {
                at: self.p,
                what: Syntax::TooDeep,
            });
        }
        self.p += 1;
        self.ws();
        Ok(())
    }
}

/// The offset of the first `"`, `\` or control character (< 0x20) at or after `i`: the bytes
/// that end the plain run of a JSON string. Eight bytes at a time (SWAR): for each test, the
/// lowest flagged byte is exact (borrows only flag bytes above a true match), so the lowest bit
/// of the union is the answer.
#[inline]
fn find_special(d: &[u8], mut i: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    while let Some(chunk) = d.get(i..i + 8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let w = u64::from_le_bytes(w);
        let quote = w ^ (ONES * u64::from(b'"'));
        let backslash = w ^ (ONES * u64::from(b'\\'));
        let hits = (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (w.wrapping_sub(ONES * 0x20) & !w);
        let hits = hits & HIGH;
        if hits != 0 {
            return Some(i + (hits.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    d.get(i..)?
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .map(|k| i + k)
}

// ---------------------------------------------------------------------------------------------
// One record
// ---------------------------------------------------------------------------------------------

/// One attachment object: `fileName`, `sha256`.
type Attachment = [Option<Txt>; 2];

/// The fields of the record being parsed, as spans; reused for every record.
#[derive(Debug)]
struct Rec {
    /// Bit `i` set once the key of column `i` was seen.
    seen: u32,
    times: [Option<i64>; TIME_COLUMNS],
    size: Option<i64>,
    /// Text and dictionary values, by column index.
    text: [Option<Txt>; N_COLUMNS],
    lists: [Vec<Option<Txt>>; LIST_COLUMNS],
    attachments: Vec<Option<Attachment>>,
    /// Unescaped strings.
    scratch: Vec<u8>,
    /// Unknown keys (`true` inside an attachment), counted once the record is complete.
    unknown: Vec<(bool, Txt)>,
    /// Under `on_unknown_field: fail`, an unknown key makes the record bad.
    unknown_fails: bool,
    /// The first problem found: byte offset and reason.
    error: Option<(usize, String)>,
}

impl Rec {
    fn new(unknown_fails: bool) -> Self {
        Self {
            seen: 0,
            times: [None; TIME_COLUMNS],
            size: None,
            text: [None; N_COLUMNS],
            lists: Default::default(),
            attachments: Vec::new(),
            scratch: Vec::new(),
            unknown: Vec::new(),
            unknown_fails,
            error: None,
        }
    }

    fn reset(&mut self) {
        self.seen = 0;
        self.times = [None; TIME_COLUMNS];
        self.size = None;
        self.text = [None; N_COLUMNS];
        for l in &mut self.lists {
            l.clear();
        }
        self.attachments.clear();
        self.scratch.clear();
        self.unknown.clear();
        self.error = None;
    }

    /// Notes a problem; the first one found is the one reported.
    fn fail(&mut self, at: usize, reason: impl FnOnce() -> String) {
        if self.error.is_none() {
            self.error = Some((at, reason()));
        }
    }

    /// The key `t` as written, for messages.
    fn name(&self, data: &[u8], t: Txt) -> String {
        show(txt_bytes(data, &self.scratch, t))
    }

    fn lone_surrogate(&mut self, data: &[u8], at: usize, key: Txt) {
        let name = self.name(data, key);
        self.fail(at, || {
            format!("field `{name}`: a \\u escape is half of a UTF-16 surrogate pair with no other half")
        });
    }
}

/// Parses the record object under the cursor into `rec` (reset by the caller).
fn parse_record(c: &mut Cur<'_>, rec: &mut Rec) -> Result<(), Stop> {
    c.nest(1)?;
    if c.peek()? == b'}' {
        c.p += 1;
        return Ok(());
    }
    loop {
        if c.peek()? != b'"' {
            return Err(c.expected("a field name"));
        }
        let (key, _) = c.string(&mut rec.scratch)?;
        c.eat(b':', "`:`")?;
        c.ws();
        let at = c.p;
        match column_of(txt_bytes(c.d, &rec.scratch, key)) {
            Some(col) if rec.seen & (1 << col) != 0 => {
                c.skip_value(2)?;
                let name = rec.name(c.d, key);
                let also = if col == EMBEDDED_URLS {
                    " (`embeddedUrls` and `embeddedUrl` are one field)"
                } else {
                    ""
                };
                rec.fail(at, || format!("field `{name}` appears twice{also}"));
            }
            Some(col) => {
                rec.seen |= 1 << col;
                parse_field(c, rec, col, key)?;
            }
            None => {
                c.skip_value(2)?;
                if rec.unknown_fails {
                    let name = rec.name(c.d, key);
                    rec.fail(at, || format!("unknown field `{name}`"));
                } else {
                    rec.unknown.push((false, key));
                }
            }
        }
        if !c.next_or_close(b'}', "`,` or `}`")? {
            return Ok(());
        }
    }
}

fn expected_type(kind: Kind) -> &'static str {
    match kind {
        Kind::Time => "an ISO 8601 UTC timestamp string",
        Kind::Text | Kind::Dict => "a string",
        Kind::Int => "an integer",
        Kind::TextList => "an array of strings",
        Kind::Attachments => "an array of objects",
    }
}

/// The value of a known key, under the cursor.
fn parse_field(c: &mut Cur<'_>, rec: &mut Rec, col: usize, key: Txt) -> Result<(), Stop> {
    let at = c.p;
    let b = c.peek()?;
    if b == b'n' {
        // `null` is an absent value.
        return c.literal(b"null");
    }
    let column = &COLUMNS[col];
    match column.kind {
        Kind::Text | Kind::Dict if b == b'"' => {
            let (t, lone) = c.string(&mut rec.scratch)?;
            if lone {
                rec.lone_surrogate(c.d, at, key);
            }
            rec.text[col] = Some(t);
        }
        Kind::Time if b == b'"' => {
            let (t, _) = c.string(&mut rec.scratch)?;
            let text = txt_bytes(c.d, &rec.scratch, t);
            match parse_timestamp(text) {
                Some(v) => rec.times[column.slot] = Some(v),
                None => {
                    let (name, value) = (rec.name(c.d, key), show(text));
                    rec.fail(at, || {
                        format!(
                            "field `{name}`: expected an ISO 8601 UTC timestamp \
                             (YYYY-MM-DDThh:mm:ss[.fffffffff]Z), found `{value}`"
                        )
                    });
                }
            }
        }
        Kind::Int if b == b'-' || b.is_ascii_digit() => match c.number()? {
            Some(v) => rec.size = Some(v),
            None => {
                let (name, value) = (rec.name(c.d, key), show(&c.d[at..c.p]));
                rec.fail(at, || format!("field `{name}`: expected an integer, found `{value}`"));
            }
        },
        Kind::TextList if b == b'[' => parse_text_list(c, rec, column.slot, key)?,
        // The seed's field table types `headerTo` as a String of "email address(es)", its
        // example as an array: a lone string is a list of one.
        Kind::TextList if b == b'"' => {
            let (t, lone) = c.string(&mut rec.scratch)?;
            if lone {
                rec.lone_surrogate(c.d, at, key);
            }
            rec.lists[column.slot].push(Some(t));
        }
        Kind::Attachments if b == b'[' => parse_attachments(c, rec, key)?,
        kind => {
            let found = c.skip_value(2)?;
            let name = rec.name(c.d, key);
            rec.fail(at, || {
                format!("field `{name}`: expected {}, found {found}", expected_type(kind))
            });
        }
    }
    Ok(())
}

/// `["a", "b", null]` under the cursor.
fn parse_text_list(c: &mut Cur<'_>, rec: &mut Rec, slot: usize, key: Txt) -> Result<(), Stop> {
    c.nest(2)?;
    if c.peek()? == b']' {
        c.p += 1;
        return Ok(());
    }
    for index in 0.. {
        let at = c.p;
        match c.peek()? {
            b'"' => {
                let (t, lone) = c.string(&mut rec.scratch)?;
                if lone {
                    rec.lone_surrogate(c.d, at, key);
                }
                rec.lists[slot].push(Some(t));
            }
            b'n' => {
                c.literal(b"null")?;
                rec.lists[slot].push(None);
            }
            _ => {
                let found = c.skip_value(3)?;
                let name = rec.name(c.d, key);
                rec.fail(at, || {
                    format!("field `{name}`: expected an array of strings, found {found} at index {index}")
                });
            }
        }
        if !c.next_or_close(b']', "`,` or `]`")? {
            break;
        }
    }
    Ok(())
}

/// `[{"fileName": ..., "sha256": ...}, ...]` under the cursor.
fn parse_attachments(c: &mut Cur<'_>, rec: &mut Rec, key: Txt) -> Result<(), Stop> {
    c.nest(2)?;
    if c.peek()? == b']' {
        c.p += 1;
        return Ok(());
    }
    for index in 0.. {
        let at = c.p;
        match c.peek()? {
            b'{' => parse_attachment(c, rec)?,
            b'n' => {
                c.literal(b"null")?;
                rec.attachments.push(None);
            }
            _ => {
                let found = c.skip_value(3)?;
                let name = rec.name(c.d, key);
                rec.fail(at, || {
                    format!("field `{name}`: expected an array of objects, found {found} at index {index}")
                });
            }
        }
        if !c.next_or_close(b']', "`,` or `]`")? {
            break;
        }
    }
    Ok(())
}

/// One attachment object under the cursor.
fn parse_attachment(c: &mut Cur<'_>, rec: &mut Rec) -> Result<(), Stop> {
    const NAMES: [&str; 2] = ["fileName", "sha256"];
    let mut item: Attachment = [None, None];
    let mut seen = [false; 2];
    c.nest(3)?;
    if c.peek()? == b'}' {
        c.p += 1;
        rec.attachments.push(Some(item));
        return Ok(());
    }
    loop {
        if c.peek()? != b'"' {
            return Err(c.expected("a field name"));
        }
        let (key, _) = c.string(&mut rec.scratch)?;
        c.eat(b':', "`:`")?;
        c.ws();
        let at = c.p;
        let slot = match txt_bytes(c.d, &rec.scratch, key) {
            b"fileName" => Some(0),
            b"sha256" => Some(1),
            _ => None,
        };
        match slot {
            Some(s) if seen[s] => {
                c.skip_value(4)?;
                rec.fail(at, || format!("field `attachments.{}` appears twice", NAMES[s]));
            }
            Some(s) => {
                seen[s] = true;
                match c.peek()? {
                    b'"' => {
                        let (t, lone) = c.string(&mut rec.scratch)?;
                        if lone {
                            rec.fail(at, || {
                                format!(
                                    "field `attachments.{}`: a \\u escape is half of a UTF-16 surrogate \
                                     pair with no other half",
                                    NAMES[s]
                                )
                            });
                        }
                        item[s] = Some(t);
                    }
                    b'n' => c.literal(b"null")?,
                    _ => {
                        let found = c.skip_value(4)?;
                        rec.fail(at, || {
                            format!("field `attachments.{}`: expected a string, found {found}", NAMES[s])
                        });
                    }
                }
            }
            None => {
                c.skip_value(4)?;
                if rec.unknown_fails {
                    let name = rec.name(c.d, key);
                    rec.fail(at, || format!("unknown field `attachments.{name}`"));
                } else {
                    rec.unknown.push((true, key));
                }
            }
        }
        if !c.next_or_close(b'}', "`,` or `}`")? {
            rec.attachments.push(Some(item));
            return Ok(());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Timestamps
// ---------------------------------------------------------------------------------------------

/// `YYYY-MM-DDThh:mm:ss[.f{1,9}](Z|+00:00)` to microseconds since the epoch; digits past the
/// microsecond are truncated. A second of 60 is rejected: Arrow timestamps cannot hold it.
fn parse_timestamp(s: &[u8]) -> Option<i64> {
    if s.len() < 20 || s[4] != b'-' || s[7] != b'-' || s[10] != b'T' || s[13] != b':' || s[16] != b':' {
        return None;
    }
    let (y, m, d) = (digits(&s[0..4])?, digits(&s[5..7])?, digits(&s[8..10])?);
    let (hh, mm, ss) = (digits(&s[11..13])?, digits(&s[14..16])?, digits(&s[17..19])?);
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) || hh > 23 || mm > 59 || ss > 59 {
        return None;
    }
    let mut rest = &s[19..];
    let mut micros = 0i64;
    if let [b'.', frac @ ..] = rest {
        let n = frac.iter().take_while(|b| b.is_ascii_digit()).count();
        if n == 0 || n > 9 {
            return None;
        }
        for i in 0..6 {
            micros = micros * 10 + frac.get(i).filter(|_| i < n).map_or(0, |b| i64::from(b - b'0'));
        }
        rest = &frac[n..];
    }
    if rest != b"Z" && rest != b"+00:00" {
        return None;
    }
    let days = days_from_civil(i64::from(y), m, d);
    let secs = days * 86_400 + i64::from(hh * 3600 + mm * 60 + ss);
    Some(secs * 1_000_000 + micros)
}

// ---------------------------------------------------------------------------------------------
// Columns
// ---------------------------------------------------------------------------------------------

/// A `Dictionary(Int8, Utf8)` column whose dictionary holds the values of the current batch, in
/// order of first appearance. The handful of distinct values is searched linearly: cheaper than
/// hashing every row.
#[derive(Debug, Default)]
struct SmallDict {
    keys: Int8Builder,
    values: Vec<Box<str>>,
}

impl SmallDict {
    fn key(&self, v: &str) -> Option<usize> {
        self.values.iter().position(|x| **x == *v)
    }

    /// Whether appending `v` would need a 129th value.
    fn is_full_for(&self, v: Option<&str>) -> bool {
        v.is_some_and(|v| self.values.len() >= MAX_DICT_VALUES && self.key(v).is_none())
    }

    fn append(&mut self, v: Option<&str>) {
        let Some(v) = v else {
            self.keys.append_null();
            return;
        };
        let key = self.key(v).unwrap_or_else(|| {
            self.values.push(v.into());
            self.values.len() - 1
        });
        // `is_full_for` was checked before the row was appended, so the key fits.
        self.keys.append_value(i8::try_from(key).unwrap_or(i8::MAX));
    }

    fn finish(&mut self) -> Result<DictionaryArray<Int8Type>, DecodeError> {
        let values = StringArray::from_iter_values(self.values.drain(..));
        Ok(DictionaryArray::try_new(self.keys.finish(), Arc::new(values))?)
    }
}

/// The `attachments` column: list offsets and validity, struct validity, and the two children.
#[derive(Debug)]
struct AttachmentsBuilder {
    offsets: Vec<i32>,
    lists: NullBufferBuilder,
    items: NullBufferBuilder,
    file_name: StringBuilder,
    sha256: StringBuilder,
}

impl Default for AttachmentsBuilder {
    fn default() -> Self {
        Self {
            offsets: vec![0],
            lists: NullBufferBuilder::new(0),
            items: NullBufferBuilder::new(0),
            file_name: StringBuilder::new(),
            sha256: StringBuilder::new(),
        }
    }
}

impl AttachmentsBuilder {
    fn append<'a>(&mut self, items: &[Option<Attachment>], text: impl Fn(Txt) -> &'a str) {
        if items.is_empty() {
            self.lists.append_null();
        } else {
            self.lists.append_non_null();
            for item in items {
                let [file_name, sha256] = item.unwrap_or([None, None]);
                self.items.append(item.is_some());
                self.file_name.append_option(file_name.map(&text));
                self.sha256.append_option(sha256.map(&text));
            }
        }
        let len = i32::try_from(self.file_name.len()).unwrap_or(i32::MAX);
        self.offsets.push(len);
    }

    fn finish(&mut self) -> Result<ListArray, DecodeError> {
        let children: Vec<ArrayRef> = vec![Arc::new(self.file_name.finish()), Arc::new(self.sha256.finish())];
        let items = StructArray::try_new(attachment_fields(), children, self.items.finish())?;
        let offsets = OffsetBuffer::new(std::mem::replace(&mut self.offsets, vec![0]).into());
        Ok(ListArray::try_new(
            attachment_item(),
            offsets,
            Arc::new(items),
            self.lists.finish(),
        )?)
    }
}

/// The rows of the batch being built.
#[derive(Debug)]
struct Columns {
    rows: usize,
    times: [TimestampMicrosecondBuilder; TIME_COLUMNS],
    size: Int64Builder,
    text: [StringBuilder; TEXT_COLUMNS],
    dicts: [SmallDict; DICT_COLUMNS],
    lists: [ListBuilder<StringBuilder>; LIST_COLUMNS],
    attachments: AttachmentsBuilder,
    /// Rows and bytes per text column to make room for when the next batch starts: a guess for
    /// the first batch, then the size of the batch before. Growing ~30 buffers by doubling would
    /// copy each of them several times per batch.
    room: (usize, [usize; TEXT_COLUMNS]),
}

/// Bytes per value of a text column in the first batch: typical addresses and IDs.
const TEXT_GUESS: usize = 40;

impl Columns {
    fn new(batch_size: usize) -> Self {
        let rows = batch_size.clamp(1, 1024);
        Self {
            rows: 0,
            times: Default::default(),
            size: Int64Builder::new(),
            text: Default::default(),
            dicts: Default::default(),
            lists: Default::default(),
            attachments: AttachmentsBuilder::default(),
            room: (rows, [rows * TEXT_GUESS; TEXT_COLUMNS]),
        }
    }

    /// Replaces the (empty) builders with ones sized by `self.room`.
    fn reserve(&mut self) {
        let (rows, text) = self.room;
        self.times = std::array::from_fn(|_| TimestampMicrosecondBuilder::with_capacity(rows));
        self.size = Int64Builder::with_capacity(rows);
        self.text = std::array::from_fn(|i| StringBuilder::with_capacity(rows, text[i]));
        for d in &mut self.dicts {
            d.keys = Int8Builder::with_capacity(rows);
        }
        self.lists = std::array::from_fn(|_| {
            ListBuilder::with_capacity(StringBuilder::with_capacity(rows * 2, rows * 2 * TEXT_GUESS), rows)
        });
    }

    /// Appends one complete, valid record; `text` resolves its spans.
    fn push<'a>(&mut self, rec: &Rec, text: impl Fn(Txt) -> &'a str) {
        if self.rows == 0 {
            self.reserve();
        }
        for (col, c) in COLUMNS.iter().enumerate() {
            match c.kind {
                Kind::Time => self.times[c.slot].append_option(rec.times[c.slot]),
                Kind::Text => self.text[c.slot].append_option(rec.text[col].map(&text)),
                Kind::Dict => self.dicts[c.slot].append(rec.text[col].map(&text)),
                Kind::Int => self.size.append_option(rec.size),
                Kind::TextList => {
                    let items = &rec.lists[c.slot];
                    let builder = &mut self.lists[c.slot];
                    if items.is_empty() {
                        builder.append_null();
                    } else {
                        for item in items {
                            builder.values().append_option(item.map(&text));
                        }
                        builder.append(true);
                    }
                }
                Kind::Attachments => self.attachments.append(&rec.attachments, &text),
            }
        }
        self.rows += 1;
    }

    /// Turns the buffered rows into a batch and leaves the columns empty.
    fn finish(&mut self) -> Result<RecordBatch, DecodeError> {
        self.room = (self.rows, std::array::from_fn(|i| self.text[i].values_slice().len()));
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(COLUMNS.len());
        for c in &COLUMNS {
            let array: ArrayRef = match c.kind {
                Kind::Time => Arc::new(self.times[c.slot].finish().with_timezone("UTC")),
                Kind::Text => Arc::new(self.text[c.slot].finish()),
                Kind::Dict => Arc::new(self.dicts[c.slot].finish()?),
                Kind::Int => Arc::new(self.size.finish()),
                Kind::TextList => Arc::new(self.lists[c.slot].finish()),
                Kind::Attachments => Arc::new(self.attachments.finish()?),
            };
            arrays.push(array);
        }
        self.rows = 0;
        Ok(RecordBatch::try_new(schema(), arrays)?)
    }
}

// ---------------------------------------------------------------------------------------------
// The page
// ---------------------------------------------------------------------------------------------

/// Where the decoder is in the page object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Top {
    /// Before the page's `{` (after an optional BOM).
    Start,
    /// After `{`: a key or `}`.
    FirstKey,
    /// After `,`: a key.
    Key,
    /// After a key: `:`.
    Colon(PageKey),
    /// After `:`.
    Value(PageKey),
    /// After a value: `,` or `}`.
    AfterValue,
    /// After `"logs": [`: a record or `]`.
    LogsFirst,
    /// After `,` in `logs`: a record.
    LogsNext,
    /// After a record: `,` or `]`.
    LogsAfter,
    /// After the page's `}`: only whitespace may follow.
    End,
}

/// The page-level keys the decoder cares about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PageKey {
    Logs,
    /// `code` and `message` of an error body, quoted when the page has no `logs`.
    Code,
    Message,
    /// `nextToken`: the source's business, skipped here.
    NextToken,
    /// Anything else: skipped, but a page without `logs` that has one is not an empty page.
    Other,
}

/// Tells when an item carried over a chunk boundary may be complete, so that it is parsed again
/// only then: scans each carried byte once, tracking strings and bracket depth. It may say yes too
/// early on broken input (the parser then decides); it never says no to a complete item.
#[derive(Debug, Default)]
struct Framer {
    /// Bytes of the carried item scanned so far.
    pos: usize,
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// The item is a number or literal: complete at the first byte that cannot continue it.
    scalar: bool,
    /// Re-parse on every chunk: a scan said yes but the parser still wanted more.
    always: bool,
}

impl Framer {
    fn ready(&mut self, item: &[u8]) -> bool {
        if self.always {
            return true;
        }
        if self.pos == 0 {
            let Some(&first) = item.first() else { return false };
            match first {
                b'{' | b'[' => self.depth = 1,
                b'"' => self.in_string = true,
                _ => self.scalar = true,
            }
            self.pos = 1;
        }
        while let Some(&b) = item.get(self.pos) {
            self.pos += 1;
            if self.scalar {
                if !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')) {
                    return true;
                }
            } else if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                    if self.depth == 0 {
                        return true;
                    }
                }
            } else {
                match b {
                    b'"' => self.in_string = true,
                    b'{' | b'[' => self.depth += 1,
                    b'}' | b']' => {
                        self.depth = self.depth.saturating_sub(1);
                        if self.depth == 0 {
                            return true;
                        }
                    }
                    _ => {}
                }
            }
        }
        false
    }
}

/// Why [`MailTrackingDecoder::step`] stopped.
#[derive(Debug)]
enum Halt {
    /// The item under the cursor is not complete in the input.
    More,
    Error(DecodeError),
}

impl From<DecodeError> for Halt {
    fn from(e: DecodeError) -> Self {
        Halt::Error(e)
    }
}

/// Push decoder for one mail tracking JSON page. See the module docs.
#[derive(Debug)]
pub struct MailTrackingDecoder {
    ctx: DecodeContext,
    cols: Columns,
    rec: Rec,
    top: Top,
    /// Input not consumed yet: the start of an item cut by the end of a chunk, and what followed.
    buf: Vec<u8>,
    framer: Framer,
    /// Whether the start of the payload (a possible BOM) has been looked at.
    started: bool,
    /// Payload offset of the first byte of the data being processed.
    offset: u64,
    /// Line number at offset `counted` of the data being processed (1-based); newlines are
    /// counted once, lazily.
    line: u64,
    counted: usize,
    /// Elements of `logs` read so far, good or bad.
    entries: u64,
    logs_seen: bool,
    /// A page-level key other than `logs` and `nextToken` was read.
    other_keys: bool,
    code: Option<String>,
    message: Option<String>,
    /// Scratch for page-level keys.
    key: Vec<u8>,
    unknown: HashMap<String, u64>,
    bad: Vec<BadRecord>,
    /// Set once `finish` ran or an error was returned: the decoder takes no more input.
    done: bool,
}

impl MailTrackingDecoder {
    pub fn new(ctx: DecodeContext) -> Self {
        Self {
            ctx,
            cols: Columns::new(ctx.batch_size),
            rec: Rec::new(ctx.unknown_fields == UnknownFieldPolicy::Fail),
            top: Top::Start,
            buf: Vec::new(),
            framer: Framer::default(),
            started: false,
            offset: 0,
            line: 1,
            counted: 0,
            entries: 0,
            logs_seen: false,
            other_keys: false,
            code: None,
            message: None,
            key: Vec::new(),
            unknown: HashMap::new(),
            bad: Vec::new(),
            done: false,
        }
    }

    /// The 1-based line of byte `pos` of `data`.
    fn line_at(&mut self, data: &[u8], pos: usize) -> u64 {
        if pos >= self.counted {
            self.line += count_newlines(&data[self.counted..pos]);
        } else {
            self.line -= count_newlines(&data[pos..self.counted]);
        }
        self.counted = pos;
        self.line
    }

    fn malformed(&mut self, data: &[u8], pos: usize, reason: impl Into<String>) -> DecodeError {
        let line = self.line_at(data, pos);
        DecodeError::Malformed {
            what: WHAT,
            line,
            reason: reason.into(),
        }
    }

    fn syntax_error(&mut self, data: &[u8], at: usize, what: Syntax) -> DecodeError {
        let found = describe(data, at);
        let reason = match what {
            Syntax::Expected(what) => format!("expected {what}, found {found}"),
            Syntax::ControlCharacter => format!("unescaped control character 0x{:02X} in a string", data[at]),
            Syntax::InvalidEscape => format!("invalid escape `{}`", show(&data[at..data.len().min(at + 2)])),
            Syntax::TooDeep => format!("values nested deeper than {MAX_DEPTH} levels"),
        };
        let offset = self.offset + at as u64;
        self.malformed(data, at, format!("{reason} (byte {offset})"))
    }

    /// Consumes as many complete items of `data` as there are and returns how many bytes that
    /// was; the rest starts with an item cut by the end of the chunk. With `eof`, nothing follows
    /// `data`: the page must be complete.
    fn process(&mut self, data: &[u8], eof: bool, out: &mut Vec<RecordBatch>) -> Result<usize, DecodeError> {
        let mut c = Cur { d: data, p: 0, eof };
        self.counted = 0;
        if !self.started {
            if !eof && data.len() < UTF8_BOM.len() && UTF8_BOM.starts_with(data) {
                return Ok(0);
            }
            if data.starts_with(UTF8_BOM) {
                c.p = UTF8_BOM.len();
            }
            self.started = true;
        }
        loop {
            c.ws();
            if c.p == data.len() {
                break;
            }
            let at = c.p;
            match self.step(&mut c, out) {
                Ok(()) => {}
                Err(Halt::More) => {
                    c.p = at;
                    if eof {
                        return Err(self.truncated(data, Some(at)));
                    }
                    break;
                }
                Err(Halt::Error(e)) => return Err(e),
            }
        }
        if eof && self.top != Top::End {
            return Err(self.truncated(data, None));
        }
        self.line_at(data, c.p);
        self.offset += c.p as u64;
        Ok(c.p)
    }

    /// The page ends early: `inside` is where the unfinished item starts, if one does.
    fn truncated(&mut self, data: &[u8], inside: Option<usize>) -> DecodeError {
        let reason = match (self.top, inside) {
            (Top::Start, _) => "the page is empty: expected a JSON object".to_string(),
            (Top::LogsFirst | Top::LogsNext, Some(at)) => {
                let line = self.line_at(data, at);
                format!(
                    "the page is truncated inside log entry {} (which starts at line {line})",
                    self.entries + 1
                )
            }
            (Top::LogsFirst | Top::LogsNext | Top::LogsAfter, _) => format!(
                "the page is truncated: the `logs` array is not closed (after {} log entries)",
                self.entries
            ),
            _ => "the page is truncated: its JSON object is not closed".to_string(),
        };
        self.malformed(data, data.len(), reason)
    }

    /// Consumes one item at the cursor (whitespace skipped, not at the end of the input).
    fn step(&mut self, c: &mut Cur<'_>, out: &mut Vec<RecordBatch>) -> Result<(), Halt> {
        let data = c.d;
        let at = c.p;
        let b = data[at];
        match self.top {
            Top::Start => {
                if b != b'{' {
                    let found = describe(data, at);
                    return Err(self
                        .malformed(data, at, format!("expected the page's JSON object `{{`, found {found}"))
                        .into());
                }
                c.p += 1;
                self.top = Top::FirstKey;
            }
            Top::FirstKey if b == b'}' => {
                c.p += 1;
                self.top = Top::End;
            }
            Top::FirstKey | Top::Key => {
                if b != b'"' {
                    return Err(self.syntax_error(data, at, Syntax::Expected("a field name")).into());
                }
                self.key.clear();
                let (key, _) = c.string(&mut self.key).map_err(|e| self.stop(data, e))?;
                let key = match txt_bytes(data, &self.key, key) {
                    b"logs" => PageKey::Logs,
                    b"code" => PageKey::Code,
                    b"message" => PageKey::Message,
                    b"nextToken" => PageKey::NextToken,
                    _ => PageKey::Other,
                };
                self.other_keys |= !matches!(key, PageKey::Logs | PageKey::NextToken);
                self.top = Top::Colon(key);
            }
            Top::Colon(key) => {
                if b != b':' {
                    return Err(self.syntax_error(data, at, Syntax::Expected("`:`")).into());
                }
                c.p += 1;
                self.top = Top::Value(key);
            }
            Top::Value(PageKey::Logs) => {
                if self.logs_seen {
                    return Err(self.malformed(data, at, "the page has two `logs` keys").into());
                }
                if b != b'[' {
                    let found = c.skip_value(1).map_err(|e| self.stop(data, e))?;
                    if found == "null" {
                        // `"logs": null`: a page without records, like `[]`.
                        self.logs_seen = true;
                        self.top = Top::AfterValue;
                        return Ok(());
                    }
                    let reason = format!("`logs` must be an array, found {found}");
                    return Err(self.malformed(data, at, reason).into());
                }
                c.p += 1;
                self.logs_seen = true;
                self.top = Top::LogsFirst;
            }
            Top::Value(key) => {
                if b == b'"' && matches!(key, PageKey::Code | PageKey::Message) {
                    self.key.clear();
                    let (text, _) = c.string(&mut self.key).map_err(|e| self.stop(data, e))?;
                    let text = show(txt_bytes(data, &self.key, text));
                    if key == PageKey::Code {
                        self.code = Some(text);
                    } else {
                        self.message = Some(text);
                    }
                } else {
                    c.skip_value(1).map_err(|e| self.stop(data, e))?;
                }
                self.top = Top::AfterValue;
            }
            Top::AfterValue => {
                c.p += 1;
                self.top = match b {
                    b',' => Top::Key,
                    b'}' => Top::End,
                    _ => return Err(self.syntax_error(data, at, Syntax::Expected("`,` or `}`")).into()),
                };
            }
            Top::LogsFirst if b == b']' => {
                c.p += 1;
                self.top = Top::AfterValue;
            }
            Top::LogsFirst | Top::LogsNext => {
                self.rec.reset();
                let parsed = if b == b'{' {
                    parse_record(c, &mut self.rec)
                } else {
                    c.skip_value(1).map(|found| {
                        self.rec
                            .fail(at, || format!("a `logs` element must be a JSON object, found {found}"));
                    })
                };
                parsed.map_err(|e| self.stop(data, e))?;
                self.on_record(data, at, c.p, out)?;
                self.top = Top::LogsAfter;
            }
            Top::LogsAfter => {
                c.p += 1;
                self.top = match b {
                    b',' => Top::LogsNext,
                    b']' => Top::AfterValue,
                    _ => return Err(self.syntax_error(data, at, Syntax::Expected("`,` or `]`")).into()),
                };
            }
            Top::End => {
                let found = describe(data, at);
                let reason = format!("data after the end of the page's JSON object: {found}");
                return Err(self.malformed(data, at, reason).into());
            }
        }
        Ok(())
    }

    fn stop(&mut self, data: &[u8], e: Stop) -> Halt {
        match e {
            Stop::More => Halt::More,
            Stop::Syntax { at, what } => Halt::Error(self.syntax_error(data, at, what)),
        }
    }

    /// A complete element of `logs`, `data[start..end]`, parsed into `self.rec`: a row, or a bad
    /// record.
    fn on_record(
        &mut self,
        data: &[u8],
        start: usize,
        end: usize,
        out: &mut Vec<RecordBatch>,
    ) -> Result<(), DecodeError> {
        self.entries += 1;
        let rec = &mut self.rec;
        for &(nested, key) in &rec.unknown {
            let name = String::from_utf8_lossy(txt_bytes(data, &rec.scratch, key));
            let name = if nested {
                format!("attachments.{name}")
            } else {
                name.into_owned()
            };
            *self.unknown.entry(name).or_insert(0) += 1;
        }
        if rec.times[COLUMNS[GEN_TIME].slot].is_none() {
            let name = COLUMNS[GEN_TIME].json;
            rec.fail(start, || format!("field `{name}` is missing or null (it is required)"));
        }
        let text = std::str::from_utf8(&data[start..end]);
        let scratch = std::str::from_utf8(&rec.scratch);
        let (text, scratch) = match (text, scratch) {
            (Ok(text), Ok(scratch)) if rec.error.is_none() => (text, scratch),
            (text, _) => {
                if let Err(e) = text {
                    rec.fail(start + e.valid_up_to(), || "invalid UTF-8".to_string());
                }
                let (at, reason) = rec.error.take().unwrap_or_else(|| (start, "invalid UTF-8".to_string()));
                return self.bad_record(data, start, end, at, &reason);
            }
        };
        let resolve = |t: Txt| match t {
            Txt::Raw(a, b) => &text[a - start..b - start],
            Txt::Esc(a, b) => &scratch[a..b],
        };
        let dict_value = |col: usize| rec.text[col].map(resolve);
        let full = COLUMNS
            .iter()
            .enumerate()
            .filter(|(_, c)| c.kind == Kind::Dict)
            .any(|(col, c)| self.cols.dicts[c.slot].is_full_for(dict_value(col)));
        if full {
            // A 129th distinct value cannot get an Int8 key: close the batch first.
            out.push(self.cols.finish()?);
        }
        self.cols.push(rec, resolve);
        if self.cols.rows >= self.ctx.batch_size.max(1) {
            out.push(self.cols.finish()?);
        }
        Ok(())
    }

    fn bad_record(
        &mut self,
        data: &[u8],
        start: usize,
        end: usize,
        at: usize,
        reason: &str,
    ) -> Result<(), DecodeError> {
        let line = self.line_at(data, start);
        let reason = format!(
            "log entry {}: {reason} (byte {})",
            self.entries,
            self.offset + at as u64
        );
        let raw = excerpt(&data[start..end]);
        match self.ctx.policy {
            BadRecordPolicy::Fail => Err(DecodeError::BadRecord {
                line,
                reason,
                excerpt: raw,
            }),
            BadRecordPolicy::Skip => {
                self.bad.push(BadRecord {
                    unit: String::new(),
                    payload: String::new(),
                    line,
                    reason,
                    raw,
                });
                Ok(())
            }
        }
    }

    fn finish_inner(&mut self, out: &mut Vec<RecordBatch>) -> Result<(), DecodeError> {
        let buf = std::mem::take(&mut self.buf);
        let consumed = self.process(&buf, true, out)?;
        let end = buf.len();
        debug_assert_eq!(consumed, end, "at the end of the page, every item is complete");
        // A page without `logs` whose only key is `nextToken` (or with no key at all) holds no
        // records; one with other keys (an error body, a different document) is not a page.
        if !self.logs_seen && self.other_keys {
            let mut reason = "the page has no `logs` array".to_string();
            if self.code.is_some() || self.message.is_some() {
                let shown =
                    |v: &Option<String>| v.as_deref().map_or_else(|| "(none)".to_string(), |s| format!("`{s}`"));
                reason.push_str(&format!(
                    ": the service answered an error: code {}, message {}",
                    shown(&self.code),
                    shown(&self.message)
                ));
            }
            return Err(self.malformed(&buf, end, reason));
        }
        if self.cols.rows > 0 {
            out.push(self.cols.finish()?);
        }
        Ok(())
    }
}

impl Decoder for MailTrackingDecoder {
    fn decode(&mut self, chunk: &[u8], out: &mut Vec<RecordBatch>) -> Result<(), DecodeError> {
        if self.done {
            return Err(DecodeError::Malformed {
                what: WHAT,
                line: self.line,
                reason: "input after the decoder finished or failed".into(),
            });
        }
        self.done = true; // cleared below unless an error leaves the state unusable
        let mut buf = std::mem::take(&mut self.buf);
        if buf.is_empty() {
            let consumed = self.process(chunk, false, out)?;
            buf.extend_from_slice(&chunk[consumed..]);
            self.framer = Framer::default();
        } else {
            buf.extend_from_slice(chunk);
            if !self.started || self.framer.ready(&buf) {
                let consumed = self.process(&buf, false, out)?;
                buf.drain(..consumed);
                if consumed == 0 {
                    self.framer.always = true;
                } else {
                    self.framer = Framer::default();
                }
            }
        }
        self.buf = buf;
        self.done = false;
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<RecordBatch>) -> Result<(), DecodeError> {
        if self.done {
            return Err(DecodeError::Malformed {
                what: WHAT,
                line: self.line,
                reason: "finish after the decoder finished or failed".into(),
            });
        }
        self.done = true;
        self.finish_inner(out)
    }

    fn take_bad_records(&mut self) -> Vec<BadRecord> {
        std::mem::take(&mut self.bad)
    }

    fn take_unknown_fields(&mut self) -> Vec<(String, u64)> {
        let mut fields: Vec<(String, u64)> = self.unknown.drain().collect();
        fields.sort_unstable();
        fields
    }
}

fn count_newlines(s: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', s).count() as u64
}

/// The byte at `data[at]` for a message. Only that byte is looked at (not the rest of a
/// multi-byte character, which may not have arrived yet), so the message is the same whatever
/// the chunks.
fn describe(data: &[u8], at: usize) -> String {
    match data.get(at) {
        None => "the end of the page".to_string(),
        Some(&b) if b.is_ascii_graphic() => format!("`{}`", char::from(b)),
        Some(&b) if b.is_ascii() => format!("byte 0x{b:02X}"),
        Some(&b) => format!("byte 0x{b:02X} (not ASCII)"),
    }
}

/// A value for a message: lossy UTF-8, cut to [`MAX_QUOTED`] bytes.
fn show(b: &[u8]) -> String {
    let cut = &b[..b.len().min(MAX_QUOTED)];
    let s = String::from_utf8_lossy(cut);
    let s = s.trim_end_matches('\u{FFFD}');
    if cut.len() < b.len() {
        format!("{s}...")
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests;
