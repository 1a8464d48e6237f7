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
//! elements are ignored.

pub mod mail_delivery;
