//! Record decoders: the bytes of a vendor's page or file in, Arrow `RecordBatch`es of the
//! source's documented schema out.
//!
//! The decoders live apart from the sources so that they stay pure and synchronous: no I/O, no
//! async runtime. That lets the runner run them on the blocking pool while the network is
//! awaited, and lets benchmarks and property tests drive them directly. Each is a *push* decoder
//! ([`etl_core::Decoder`]): it accepts its input split at any byte, as the network delivers it,
//! and yields exactly the batches one call with the whole input would.
//!
//! ```
//! use etl_core::{DecodeContext, Decoder};
//! use etl_formats::mail_delivery::MailDeliveryDecoder;
//!
//! let page = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>
//! <GetDeliveryLogResponse><GetDeliveryLogResult><LogCount>1</LogCount>
//! <Log>2020-07-10 00:17:13 sent 250 a123.example.jp.1 user@example.com allan@example.com 250_ok</Log>
//! </GetDeliveryLogResult></GetDeliveryLogResponse>";
//! let mut decoder = MailDeliveryDecoder::new(DecodeContext::default());
//! let mut batches = Vec::new();
//! for chunk in page.chunks(7) {
//!     decoder.decode(chunk, &mut batches)?;
//! }
//! decoder.finish(&mut batches)?;
//! assert_eq!(batches[0].num_rows(), 1);
//! # Ok::<(), etl_core::DecodeError>(())
//! ```
//!
//! # Mail delivery log ([`mail_delivery`])
//!
//! One payload is one XML response page of `GetDeliveryLog`. Each `<Log>` line
//! (`date time result status txid sender recipient detail`, separated by single spaces) becomes
//! one row:
//!
//! | column | type | from |
//! |---|---|---|
//! | `delivered_at` | `Timestamp(Microsecond, "UTC")`, not null | date and time fields, `YYYY-MM-DD hh:mm:ss` in UTC |
//! | `result` | `Dictionary(Int8, Utf8)`, not null | `sent`, `retry` or `faild` (the vendor's spelling, kept) |
//! | `status_code` | `UInt16`, not null | the 3-digit status code |
//! | `transaction_id` | `Utf8`, not null | |
//! | `sender` | `Utf8`, not null | may contain `+`, `'` and non-ASCII characters |
//! | `recipient` | `Utf8`, not null | same |
//! | `detail` | `Utf8`, not null | the rest of the line (the SMTP reply, spaces replaced by `_`) |
//!
//! XML entities (`&lt;` `&gt;` `&amp;` `&quot;` `&apos;` and `&#..;`) are decoded in every field.
//! The `result` dictionary always holds the three values in that order (keys 0, 1, 2), so every
//! batch shares one dictionary.
//!
//! A line that does not parse (fewer than 8 fields, an empty field, an impossible date or time,
//! a status that is not 3 digits, an unknown result, invalid UTF-8, a broken entity) is a bad
//! record and follows the pipeline's `on_bad_record` policy. A page that is not a complete data
//! page (truncated, an element left open, no `<LogCount>`, a `<LogCount>` that differs from the
//! number of `<Log>` elements, an `<ErrorResponse>`) fails with [`etl_core::DecodeError::Malformed`]:
//! a truncated transfer must never look like a short day. `NextToken`, `RequestId` and unknown
//! elements are ignored. So is a DOCTYPE, whose DTD is never fetched; one with an internal subset
//! (entity declarations), or elements nested deeper than
//! [`mail_delivery::MAX_DEPTH`] (64), make the page malformed.
//!
//! # Mail tracking log ([`mail_tracking`])
//!
//! One payload is one JSON response page, `{"nextToken": "...", "logs": [{...}, ...]}` (keys in
//! any order, `nextToken` optional and ignored here: the source reads it). Each element of `logs`
//! becomes one row:
//!
//! | column | type | JSON key |
//! |---|---|---|
//! | `timestamp` | `Timestamp(Microsecond, "UTC")` | `timestamp` (received) |
//! | `gen_time` | `Timestamp(Microsecond, "UTC")`, not null | `genTime` (the log's time; the API's `start`/`end` filter) |
//! | `delivery_time` | `Timestamp(Microsecond, "UTC")` | `deliveryTime` (only for Delivered, Bounced, Expired, Deferred) |
//! | `sender` | `Utf8` | `sender` |
//! | `header_from` | `Utf8` | `headerFrom` |
//! | `recipient` | `Utf8` | `recipient` |
//! | `header_to` | `List<Utf8>` (item field `item`, nullable) | `headerTo` (an array of strings) |
//! | `subject` | `Utf8` | `subject` |
//! | `sender_ip` | `Utf8` | `senderIP` |
//! | `delivered_to` | `Utf8` | `deliveredTo` |
//! | `mail_id` | `Utf8` | `mailID` |
//! | `direction` | `Dictionary(Int8, Utf8)` | `direction` (`in`, `out`) |
//! | `message_id` | `Utf8` | `messageID` |
//! | `size` | `Int64` | `size` (bytes) |
//! | `action` | `Dictionary(Int8, Utf8)` | `action` (`Delivered`, `Bounced`...) |
//! | `reason` | `Utf8` | `reason` |
//! | `attachments` | `List<Struct<file_name: Utf8, sha256: Utf8>>` (item field `item`, nullable) | `attachments`, `[{"fileName", "sha256"}]` |
//! | `embedded_urls` | `List<Utf8>` (item field `item`, nullable) | `embeddedUrls`, or `embeddedUrl` (the seed uses both spellings) |
//! | `tls_info` | `Utf8` | `tlsInfo` |
//! | `details` | `Utf8` | `details` |
//!
//! Every column but `gen_time` is nullable. The API omits absent values; a key that is absent,
//! a JSON `null` and an empty array `[]` all give **null** (so a list cell is never an empty list:
//! `UNNEST` yields no rows for it and `x IS NULL` is the one test an analyst needs). A `null`
//! inside an array gives a null item. Timestamps are ISO 8601 in UTC,
//! `YYYY-MM-DDThh:mm:ss[.f{1,9}]Z` (or `+00:00`), truncated to microseconds. The dictionary of
//! `direction` and `action` holds the values of its batch in order of first appearance; a batch
//! is closed early rather than exceed 128 distinct values.
//!
//! A record whose values do not fit (a wrong JSON type such as `"size": "big"` or
//! `"headerTo": "x"`, an impossible timestamp, no `genTime`, a key given twice, invalid UTF-8, a
//! `\uD800` escape without its other half, an element of `logs` that is not an object) is a bad
//! record and follows the pipeline's `on_bad_record` policy. Keys outside this table (in a record,
//! or in an attachment, named `attachments.<key>`) follow `on_unknown_field`: counted and skipped
//! (`ignore`), or the record is bad (`fail`). A page that is not complete, well-formed JSON of
//! this shape (truncated, no `logs` array, trailing data) fails with
//! [`etl_core::DecodeError::Malformed`]; when an error body (`code`, `message`) came instead of a
//! page, the message quotes it.
//!
//! # CDN access log ([`cdn_access`])
//!
//! One payload is one downloaded `.log.gz` file, pushed as compressed bytes in any chunks.
//! [`cdn_access::CdnAccessDecoder`] holds a file of up to 2 MiB compressed until it ends and, when
//! it is one valid gzip member of at most 16 MiB (32 MiB for all decoders at once), inflates it in
//! one call (libdeflate, about 1.25x faster); any other file is inflated as it arrives ([`gzip`]:
//! every member of a multi-member file, each member's CRC-32 and length checked, the decompressed
//! size capped), so memory stays bounded whatever its size. Its lines are decoded as the text
//! comes out; both paths give the same rows, bad records and errors.
//! [`cdn_access::AccessLineDecoder`] decodes the same lines already decompressed.
//!
//! The text is UTF-8 lines ending in LF (a CR before it is dropped; the last line may lack its
//! LF; a leading byte-order mark is ignored). Lines starting with `#` (`#Version`, `#Fields`...)
//! and empty lines are skipped. Every other line is 13 fields separated by one space:
//!
//! | column | type | from |
//! |---|---|---|
//! | `requested_at` | `Timestamp(Microsecond, "UTC")`, not null | 1 `timestamp`, `YYYY-MM-DDThh:mm:ss.mmmZ` (also without a fraction, or with 1 to 6 fractional digits) |
//! | `client_ip` | `Utf8` | 2 `c-ip`, as written |
//! | `method` | `Dictionary(Int32, Utf8)` | 3 `cs-method` |
//! | `url` | `Utf8` | 4 `cs-uri`, quoted |
//! | `protocol` | `Dictionary(Int32, Utf8)` | 5 `cs-version` |
//! | `status` | `UInt16` | 6 `sc-status` |
//! | `bytes` | `UInt64` | 7 `sc-bytes` |
//! | `time_taken_ms` | `UInt32` | 8 `time-taken-ms` |
//! | `referer` | `Utf8` | 9 `cs(Referer)`, quoted |
//! | `user_agent` | `Utf8` | 10 `cs(User-Agent)`, quoted |
//! | `cache_status` | `Dictionary(Int32, Utf8)` | 11 `x-cache-status` (`HIT`, `MISS`...) |
//! | `edge_location` | `Utf8` | 12 `x-edge-location` |
//! | `request_id` | `Utf8` | 13 `x-request-id`, as written |
//! | `file_name` | `Utf8`, not null | the payload's `file_name` label, else its name |
//!
//! `-` in a field (or `"-"` in a quoted one) is null. The quoted fields must be wrapped in `"`
//! (or be a bare `-`) and may contain spaces and raw UTF-8; inside them `\"` is a quote and `\\`
//! a backslash, and a backslash before any other character is kept as written, with that
//! character; `""` is an empty string. A dictionary holds the values of its batch in order of
//! first appearance. A batch is closed at `batch_size` rows, or early after 1 GiB of line text.
//!
//! A line that does not parse (not 13 fields, an empty field, a bad or impossible timestamp, a
//! number that is not decimal digits or does not fit its type, an unquoted or unterminated quoted
//! field, text after a closing quote, invalid UTF-8, or more bytes before its LF than
//! `max_line_bytes`, 64 KiB by default) is a bad record and follows the pipeline's
//! `on_bad_record` policy; under `fail` the error names the line and the file. A file that is not
//! complete gzip (0 bytes, not gzip, truncated, corrupt, a CRC-32 or length mismatch, bytes after
//! a member that do not start another member) or that inflates to more than
//! `max_decompressed_bytes` (16 GiB by default) fails with
//! [`etl_core::DecodeError::Malformed`], which is retryable: a truncated transfer must never look
//! like a short file. A file of directives only gives no rows.
//!
//! # CSV ([`audit_log`], [`event_log`])
//!
//! Both CSV formats are read by one streaming RFC 4180 reader, so they share these rules. A
//! record ends with LF or CRLF (in any mix); the last one may lack its line ending. A field is
//! quoted when its first byte is `"`; inside, `""` is a quote and commas, CR and LF are text; a
//! closing quote must be followed by a comma or a line ending. A quote inside an unquoted field
//! is kept as text. A leading UTF-8 byte-order mark is dropped; empty lines are skipped. Records
//! are numbered like spreadsheet rows (a header row is record 1, empty lines count) and errors
//! give the line a record starts on as well as its number. The file is never held whole: only the
//! start of a record cut by a chunk end is kept, up to `max_record_bytes` (1 MiB by default).
//!
//! A record that does not parse (a wrong number of fields, a value that does not fit its column,
//! text after a closing quote, invalid UTF-8, or more than `max_record_bytes` before its line
//! ending, a CR counted) is a bad record and follows the pipeline's `on_bad_record` policy; its
//! reason starts `record N:` and, under `fail`, ends with the file. A file that ends inside a
//! quoted field, or inside a record with fewer fields than a record has, fails with
//! [`etl_core::DecodeError::Malformed`] (retryable): a truncated download must never look like a
//! short file. An empty field is **null** in every nullable column.
//!
//! ## Audit-log export ([`audit_log`])
//!
//! One payload is one downloaded export (UTF-8 with a byte-order mark, CRLF). Its header row
//! names the columns in Japanese (`lang=JA`) or English (`lang=EN`); fields are matched to
//! columns by name, in any order (names compared trimmed, full-width ASCII folded, ASCII case
//! ignored):
//!
//! | column | type | JA header | EN header |
//! |---|---|---|---|
//! | `operation_id` | `Int64`, not null | 操作ID | Operation ID |
//! | `operated_at` | `Timestamp(Microsecond, "UTC")`, not null | 操作日時 | Operation Date |
//! | `account_id` | `Utf8` | アカウントID | Account ID |
//! | `operator` | `Utf8` | 操作者 | Operator |
//! | `tool` | `Dictionary(Int32, Utf8)` | 利用ツール | Tool |
//! | `operation` | `Dictionary(Int32, Utf8)` | 操作種別 | Operation |
//! | `target_type` | `Dictionary(Int32, Utf8)` | 対象種別 | Target Type |
//! | `target_id` | `Int64` | 対象ID | Target ID |
//! | `target_name` | `Utf8` | 対象名 | Target Name |
//! | `changed_item` | `Utf8` | 変更項目 | Changed Item |
//! | `before_value` | `Utf8` | 変更前 | Before |
//! | `after_value` | `Utf8` | 変更後 | After |
//! | `affected_count` | `Int64`, not null | 影響件数 | Affected Count |
//! | `ip_address` | `Utf8` | IPアドレス | IP Address |
//!
//! `operated_at` is ISO 8601 with a UTC offset (`2025-11-17T09:01:08+09:00`; also `Z`, `±hhmm`,
//! `±hh`, up to 9 fractional digits, truncated to microseconds), converted to UTC; a time
//! without an offset is a bad record. Integers are decimal digits with an optional `-`. The
//! dictionaries hold the values of their batch in order of first appearance (the value sets are
//! open-ended, hence `Int32` keys).
//!
//! The export covers whole local dates while a unit is a UTC window: when the payload carries the
//! labels `window_start_us` and `window_end_us` (epoch microseconds, `[start, end)`; either may
//! be absent), records whose `operated_at` falls outside are dropped without further checks
//! (their own unit loads them) and only counted. A header row that lacks a column, names one
//! twice, or is missing altogether (an empty file) is [`etl_core::DecodeError::Malformed`],
//! naming the column and the file; a header column outside this table follows
//! `on_unknown_field` (`ignore`: skipped, reported with the number of rows that carried it;
//! `fail`: malformed).
//!
//! ## WebDAV event log ([`event_log`])
//!
//! One payload is one rotated archive file (`default.log.{epoch-ms}`, already unzipped): no
//! header row, LF (CRLF tolerated), every field quoted (unquoted tolerated), ten fields:
//!
//! | column | type | field |
//! |---|---|---|
//! | `logged_at` | `Timestamp(Microsecond, "UTC")`, not null | 1 `dateTime`, `YYYY-MM-DDThh:mm:ss.mmmZ` (any RFC 3339 time with an offset) |
//! | `level` | `Dictionary(Int8, Utf8)`, not null | 2 `[INFO ]`, `[WARN ]`, `[ERROR]` stored as `INFO`, `WARN`, `ERROR` |
//! | `request_key` | `Utf8` | 3 `RequestKey` |
//! | `source` | `Utf8` | 4 `server` or `client` |
//! | `schema` | `Utf8` | 5 application URL |
//! | `subject` | `Utf8` | 6 `https://.../#user` |
//! | `type` | `Utf8` | 7 HTTP method or event type |
//! | `object` | `Utf8` | 8 resource URL |
//! | `result` | `Utf8` | 9 HTTP status, or free text for client events |
//! | `bytes` | `Int64` | 10 |
//! | `file_name` | `Utf8`, not null | the payload's `file_name` label, else its name |
//!
//! `level` is read with or without brackets and padding; any other level is a bad record. Its
//! dictionary is fixed (keys 0, 1, 2 for `INFO`, `WARN`, `ERROR`) and shared by every batch. An
//! empty file gives no rows.

pub mod audit_log;
pub mod cdn_access;
mod civil;
mod csv;
pub mod event_log;
pub mod gzip;
pub mod mail_delivery;
pub mod mail_tracking;
#[cfg(test)]
mod testing;
mod timestamp;
