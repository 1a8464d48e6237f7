//! The decoder is checked against the seed's own example, against every kind of wrong value and
//! broken page, and, by property, against itself and a model: random pages decode to the records
//! they were generated from, and where a page (even a damaged one) is cut into chunks never
//! changes a batch, a skipped record, an unknown-field count or an error.

use arrow_array::cast::AsArray;
use arrow_array::types::{Int8Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef, RecordBatch};
use chrono::{DateTime, Utc};
use proptest::prelude::*;

use super::*;
use crate::testing::{self, Decoded, ctx, micros};

/// One decoded attachment: file name and SHA-256.
type AttachmentRow = (Option<String>, Option<String>);

/// One decoded row, with every column as a plain value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Row {
    timestamp: Option<i64>,
    gen_time: i64,
    delivery_time: Option<i64>,
    sender: Option<String>,
    header_from: Option<String>,
    recipient: Option<String>,
    header_to: Option<Vec<Option<String>>>,
    subject: Option<String>,
    sender_ip: Option<String>,
    delivered_to: Option<String>,
    mail_id: Option<String>,
    direction: Option<String>,
    message_id: Option<String>,
    size: Option<i64>,
    action: Option<String>,
    reason: Option<String>,
    attachments: Option<Vec<Option<AttachmentRow>>>,
    embedded_urls: Option<Vec<Option<String>>>,
    tls_info: Option<String>,
    details: Option<String>,
}

fn ts_at(a: &ArrayRef, r: usize) -> Option<i64> {
    a.is_valid(r)
        .then(|| a.as_primitive::<TimestampMicrosecondType>().value(r))
}

fn text_at(a: &ArrayRef, r: usize) -> Option<String> {
    a.is_valid(r).then(|| a.as_string::<i32>().value(r).to_string())
}

fn dict_at(a: &ArrayRef, r: usize) -> Option<String> {
    let d = a.as_dictionary::<Int8Type>();
    let values = d.values().as_string::<i32>();
    d.is_valid(r)
        .then(|| values.value(d.keys().value(r) as usize).to_string())
}

fn texts(a: &dyn Array) -> Vec<Option<String>> {
    let s = a.as_string::<i32>();
    (0..s.len())
        .map(|i| s.is_valid(i).then(|| s.value(i).to_string()))
        .collect()
}

fn list_at(a: &ArrayRef, r: usize) -> Option<Vec<Option<String>>> {
    let l = a.as_list::<i32>();
    let v = l.is_valid(r).then(|| texts(&l.value(r)))?;
    assert!(!v.is_empty(), "a list cell is null, never empty");
    Some(v)
}

fn attachments_at(a: &ArrayRef, r: usize) -> Option<Vec<Option<AttachmentRow>>> {
    let l = a.as_list::<i32>();
    if l.is_null(r) {
        return None;
    }
    let items = l.value(r);
    let s = items.as_struct();
    let (names, sums) = (texts(s.column(0)), texts(s.column(1)));
    let v: Vec<_> = (0..s.len())
        .map(|i| s.is_valid(i).then(|| (names[i].clone(), sums[i].clone())))
        .collect();
    assert!(!v.is_empty(), "a list cell is null, never empty");
    Some(v)
}

fn rows(batches: &[RecordBatch]) -> Vec<Row> {
    let mut out = Vec::new();
    for b in batches {
        assert_eq!(b.schema(), schema(), "every batch has the documented schema");
        assert!(b.num_rows() > 0, "no empty batches");
        let c = |i: usize| b.column(i);
        for r in 0..b.num_rows() {
            out.push(Row {
                timestamp: ts_at(c(0), r),
                gen_time: c(1).as_primitive::<TimestampMicrosecondType>().value(r),
                delivery_time: ts_at(c(2), r),
                sender: text_at(c(3), r),
                header_from: text_at(c(4), r),
                recipient: text_at(c(5), r),
                header_to: list_at(c(6), r),
                subject: text_at(c(7), r),
                sender_ip: text_at(c(8), r),
                delivered_to: text_at(c(9), r),
                mail_id: text_at(c(10), r),
                direction: dict_at(c(11), r),
                message_id: text_at(c(12), r),
                size: c(13).is_valid(r).then(|| c(13).as_primitive::<Int64Type>().value(r)),
                action: dict_at(c(14), r),
                reason: text_at(c(15), r),
                attachments: attachments_at(c(16), r),
                embedded_urls: list_at(c(17), r),
                tls_info: text_at(c(18), r),
                details: text_at(c(19), r),
            });
        }
    }
    out
}

/// Decodes `input` cut at `cuts` (offsets, any order, duplicates allowed).
fn decode_cuts(input: &[u8], cuts: &[usize], ctx: DecodeContext) -> Result<Decoded, DecodeError> {
    testing::decode_cuts(&MailTrackingFormat, input, cuts, ctx)
}

fn decode(input: &str, ctx: DecodeContext) -> Result<Decoded, DecodeError> {
    decode_cuts(input.as_bytes(), &[], ctx)
}

fn decode_ok(input: &str) -> Vec<Row> {
    let d = decode(input, DecodeContext::default()).unwrap();
    assert!(d.bad.is_empty());
    rows(&d.batches)
}

fn decode_err_bytes(input: &[u8], ctx: DecodeContext) -> DecodeError {
    testing::decode_err(&MailTrackingFormat, input, ctx)
}

fn decode_err(input: &str, ctx: DecodeContext) -> DecodeError {
    decode_err_bytes(input.as_bytes(), ctx)
}

fn malformed(input: &str) -> (u64, String) {
    testing::malformed(&MailTrackingFormat, "mail tracking JSON", input.as_bytes())
}

/// A page with one record per line: record `i` (0-based) starts on line `4 + i`.
fn page(records: &[&str]) -> String {
    let mut p = String::from("{\n  \"nextToken\": \"abc+/==\",\n  \"logs\": [\n");
    p.push_str(&records.join(",\n"));
    p.push_str("\n  ]\n}\n");
    p
}

/// A minimal valid record with `extra` members appended.
fn rec(extra: &str) -> String {
    format!("    {{\"genTime\": \"2025-09-11T08:00:00Z\"{extra}}}")
}

/// The seed's response example, verbatim (tabs, spaces and all).
const SEED_PAGE: &str = r#"{    
    "nextToken": "Lu2XNNHim8CZpKoJEJKREJj6jpojvvROIwMK6xL+zILf8DsPpkW5W8/XhJiWH5tsJh8VrkdCIvpmJPEd71JKaUVoxTzDTU8/3RZVvYMfxzSyGIl2XYpWj9Qo+wigLGpHY4w==",
    "logs": [
		{
			"genTime": "2020-11-25T06:53:19Z",
			"timestamp": "2020-11-25T06:53:18Z",
			"deliveryTime": "2020-11-25T06:53:28Z",
			"sender": "sender@example.com",
			"direction": "in",
			"messageID": "<7bebfeb6-f035-451f-8c4f-3377ab457b07@atl1s07mta2135.xt.local>",
			"subject": "response sample",
			"size": 66390,
			"mailID": "73173f80-2e0e-46df-b2dc-a62e80167067",
			"recipient": "rcpt@example.com",
			"action": "Delivered",
			"tlsInfo": "upstreamTLS: TLS 1.2; downstreamTLS: TLS 1.2",
			"headerFrom": "header_sender@example.com",
			"headerTo": [
				"header_rcpt1@example.com",
				"header_rcpt2@example.com",
				"header_rcpt3@example.com"
			],
			"senderIP": "1.1.1.1",
			"deliveredTo": "2.2.2.2",
			"attachments": [{
					"fileName": "test1.zip",
					"sha256": "f78960148721b59dcb563b9964a4d47e2a834a4259f46cd12db7c1cfe82ff32e"
				}, {
					"fileName": "test2.zip",
					"sha256": "329436266f3927e89ea961e26855c8bd1f51401d92babd6627e493295376daf5"
				}
			],
			"embeddedUrls": [
				"http://example1.com",
				"http://example2.com"
			],
                        "details": "250 2.0.0 Ok: queued as 3CBEFC0811"
		}
	]
}
"#;

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

fn strs(v: &[&str]) -> Option<Vec<Option<String>>> {
    Some(v.iter().map(|x| s(x)).collect())
}

fn seed_row() -> Row {
    Row {
        timestamp: Some(micros("2020-11-25T06:53:18Z")),
        gen_time: micros("2020-11-25T06:53:19Z"),
        delivery_time: Some(micros("2020-11-25T06:53:28Z")),
        sender: s("sender@example.com"),
        header_from: s("header_sender@example.com"),
        recipient: s("rcpt@example.com"),
        header_to: strs(&[
            "header_rcpt1@example.com",
            "header_rcpt2@example.com",
            "header_rcpt3@example.com",
        ]),
        subject: s("response sample"),
        sender_ip: s("1.1.1.1"),
        delivered_to: s("2.2.2.2"),
        mail_id: s("73173f80-2e0e-46df-b2dc-a62e80167067"),
        direction: s("in"),
        message_id: s("<7bebfeb6-f035-451f-8c4f-3377ab457b07@atl1s07mta2135.xt.local>"),
        size: Some(66390),
        action: s("Delivered"),
        reason: None,
        attachments: Some(vec![
            Some((
                s("test1.zip"),
                s("f78960148721b59dcb563b9964a4d47e2a834a4259f46cd12db7c1cfe82ff32e"),
            )),
            Some((
                s("test2.zip"),
                s("329436266f3927e89ea961e26855c8bd1f51401d92babd6627e493295376daf5"),
            )),
        ]),
        embedded_urls: strs(&["http://example1.com", "http://example2.com"]),
        tls_info: s("upstreamTLS: TLS 1.2; downstreamTLS: TLS 1.2"),
        details: s("250 2.0.0 Ok: queued as 3CBEFC0811"),
    }
}

// ---- the seed ----

#[test]
fn seed_example_decodes_to_its_row() {
    let d = decode(SEED_PAGE, DecodeContext::default()).unwrap();
    assert!(d.bad.is_empty());
    assert!(d.unknown.is_empty());
    assert_eq!(d.batches.len(), 1);
    assert_eq!(rows(&d.batches), vec![seed_row()]);
}

#[test]
fn seed_example_decodes_the_same_cut_anywhere() {
    let whole = decode(SEED_PAGE, DecodeContext::default()).unwrap().batches;
    let bytes = SEED_PAGE.as_bytes();
    for cut in 0..=bytes.len() {
        let split = decode_cuts(bytes, &[cut], DecodeContext::default()).unwrap().batches;
        assert_eq!(split, whole, "cut at {cut}");
    }
    let every: Vec<usize> = (0..bytes.len()).collect();
    assert_eq!(
        decode_cuts(bytes, &every, DecodeContext::default()).unwrap().batches,
        whole
    );
}

#[test]
fn seed_example_with_the_tables_spelling_embedded_url() {
    let p = SEED_PAGE.replace("\"embeddedUrls\"", "\"embeddedUrl\"");
    assert_eq!(decode_ok(&p), vec![seed_row()]);
}

#[test]
fn schema_is_frozen() {
    let ts = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let dict = || DataType::Dictionary(Box::new(DataType::Int8), Box::new(DataType::Utf8));
    let strings = || DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)));
    let attachments = DataType::List(Arc::new(Field::new(
        "item",
        DataType::Struct(Fields::from(vec![
            Field::new("file_name", DataType::Utf8, true),
            Field::new("sha256", DataType::Utf8, true),
        ])),
        true,
    )));
    let expected = vec![
        ("timestamp", ts(), true),
        ("gen_time", ts(), false),
        ("delivery_time", ts(), true),
        ("sender", DataType::Utf8, true),
        ("header_from", DataType::Utf8, true),
        ("recipient", DataType::Utf8, true),
        ("header_to", strings(), true),
        ("subject", DataType::Utf8, true),
        ("sender_ip", DataType::Utf8, true),
        ("delivered_to", DataType::Utf8, true),
        ("mail_id", DataType::Utf8, true),
        ("direction", dict(), true),
        ("message_id", DataType::Utf8, true),
        ("size", DataType::Int64, true),
        ("action", dict(), true),
        ("reason", DataType::Utf8, true),
        ("attachments", attachments, true),
        ("embedded_urls", strings(), true),
        ("tls_info", DataType::Utf8, true),
        ("details", DataType::Utf8, true),
    ];
    let s = schema();
    let actual: Vec<_> = s
        .fields()
        .iter()
        .map(|f| (f.name().as_str(), f.data_type().clone(), f.is_nullable()))
        .collect();
    assert_eq!(actual, expected);
    assert!(s.metadata().is_empty());
    // Each column's JSON key leads back to it.
    for (i, c) in COLUMNS.iter().enumerate() {
        assert_eq!(column_of(c.json.as_bytes()), Some(i), "{}", c.json);
    }
}

#[test]
fn format_names_its_schema_time_column_and_decoder() {
    let format = MailTrackingFormat::new();
    assert_eq!(format.schema(), schema());
    assert_eq!(format.time_column(), "gen_time");
    let field = format.schema().field_with_name(format.time_column()).unwrap().clone();
    assert!(!field.is_nullable());
    let mut d = format.decoder(&PayloadMeta::default(), DecodeContext::default());
    let mut out = Vec::new();
    d.decode(SEED_PAGE.as_bytes(), &mut out).unwrap();
    d.finish(&mut out).unwrap();
    assert_eq!(rows(&out), vec![seed_row()]);
    assert!(d.take_unknown_fields().is_empty());
}

// ---- values ----

#[test]
fn a_list_field_given_as_one_string_is_a_list_of_that_string() {
    // The seed's field table types headerTo as a String ("email address(es)"), its example as
    // an array: one recipient may come as a plain string.
    let records = [
        rec(r#", "headerTo": "solo@example.com", "embeddedUrl": "https://example.com/a\u00e9""#),
        rec(r#", "headerTo": ["a@example.com", "b@example.com"]"#),
    ];
    let refs: Vec<&str> = records.iter().map(String::as_str).collect();
    let got = decode_ok(&page(&refs));
    assert_eq!(got[0].header_to, Some(vec![s("solo@example.com")]));
    assert_eq!(got[0].embedded_urls, Some(vec![s("https://example.com/a\u{e9}")]));
    assert_eq!(got[1].header_to, Some(vec![s("a@example.com"), s("b@example.com")]));
}

#[test]
fn absent_null_and_empty_lists_are_all_null() {
    let records = [
        rec(""),
        rec(r#", "headerTo": [], "attachments": [], "embeddedUrls": []"#),
        rec(r#", "headerTo": null, "attachments": null, "embeddedUrl": null"#),
        rec(r#", "headerTo": [null], "attachments": [null, {}], "embeddedUrls": ["u", null]"#),
    ];
    let refs: Vec<&str> = records.iter().map(String::as_str).collect();
    let got = decode_ok(&page(&refs));
    assert_eq!(got.len(), 4);
    for r in &got[..3] {
        assert_eq!((&r.header_to, &r.attachments, &r.embedded_urls), (&None, &None, &None));
    }
    assert_eq!(got[3].header_to, Some(vec![None]));
    assert_eq!(got[3].attachments, Some(vec![None, Some((None, None))]));
    assert_eq!(got[3].embedded_urls, Some(vec![s("u"), None]));
}

#[test]
fn absent_or_null_values_are_null() {
    let all_null = COLUMNS
        .iter()
        .filter(|c| c.json != "genTime")
        .map(|c| format!(", \"{}\": null", c.json))
        .collect::<String>();
    let records = [rec(""), rec(&all_null)];
    let refs: Vec<&str> = records.iter().map(String::as_str).collect();
    let got = decode_ok(&page(&refs));
    let expected = Row {
        gen_time: micros("2025-09-11T08:00:00Z"),
        ..Row::default()
    };
    assert_eq!(got, vec![expected.clone(), expected]);
}

#[test]
fn escapes_and_non_ascii_text() {
    let r = rec(concat!(
        r#", "subject": "caf\u00e9 \ud83d\ude00 \"q\" back\\slash a\/b \b\f\n\r\t end""#,
        r#", "sender": "ユーザー@例え.jp", "recipient": "müller@exämple.de""#,
        r#", "headerTo": ["\u65E5\u672C", "plain", "\u0000"]"#,
        r#", "attachments": [{"fileName": "写真\u0020(1).zip", "sha256": "ab"}]"#,
        r#", "details": "😀 raw 𝄞""#,
    ));
    let got = decode_ok(&page(&[&r]));
    assert_eq!(got[0].subject, s("café 😀 \"q\" back\\slash a/b \u{8}\u{c}\n\r\t end"));
    assert_eq!(got[0].sender, s("ユーザー@例え.jp"));
    assert_eq!(got[0].recipient, s("müller@exämple.de"));
    assert_eq!(got[0].header_to, Some(vec![s("日本"), s("plain"), s("\0")]));
    assert_eq!(got[0].attachments, Some(vec![Some((s("写真 (1).zip"), s("ab")))]));
    assert_eq!(got[0].details, s("😀 raw 𝄞"));
}

#[test]
fn escaped_keys_are_matched_after_unescaping() {
    let r = r#"    {"gen\u0054ime": "2025-09-11T08:00:00Z", "\u0073ize": 7}"#;
    let got = decode_ok(&page(&[r]));
    assert_eq!(got[0].size, Some(7));
    assert_eq!(got[0].gen_time, micros("2025-09-11T08:00:00Z"));
}

#[test]
fn timestamps_in_every_accepted_form() {
    let cases = [
        ("2025-09-11T08:00:00Z", "2025-09-11T08:00:00Z"),
        ("2025-09-11T08:00:00.5Z", "2025-09-11T08:00:00.5Z"),
        ("2025-09-11T08:00:00.123Z", "2025-09-11T08:00:00.123Z"),
        ("2025-09-11T08:00:00.123456Z", "2025-09-11T08:00:00.123456Z"),
        ("2025-09-11T08:00:00.123456789Z", "2025-09-11T08:00:00.123456Z"),
        ("2025-09-11T08:00:00.999999999+00:00", "2025-09-11T08:00:00.999999Z"),
        ("2024-02-29T23:59:59Z", "2024-02-29T23:59:59Z"),
        ("2000-02-29T00:00:00Z", "2000-02-29T00:00:00Z"),
        ("1969-12-31T23:59:59.999999Z", "1969-12-31T23:59:59.999999Z"),
        ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z"),
        ("9999-12-31T23:59:59Z", "9999-12-31T23:59:59Z"),
    ];
    for (text, expected) in cases {
        assert_eq!(parse_timestamp(text.as_bytes()), Some(micros(expected)), "{text}");
    }
    let got = decode_ok(&page(&[&rec(
        r#", "deliveryTime": "2025-09-11T08:00:00.123456789+00:00""#,
    )]));
    assert_eq!(got[0].delivery_time, Some(micros("2025-09-11T08:00:00.123456Z")));
}

#[test]
fn timestamps_that_are_rejected() {
    for text in [
        "",
        "2025-09-11",
        "2025-09-11T08:00:00",
        "2025-09-11 08:00:00Z",
        "2025-09-11T08:00:00z",
        "2025-09-11T08:00:00+09:00",
        "2025-09-11T08:00:00-00:00",
        "2025-09-11T08:00:00.Z",
        "2025-09-11T08:00:00.1234567890Z",
        "2025-09-11T08:00:00ZZ",
        "2025-09-11T08:00Z",
        "2025-9-11T08:00:00Z",
        "2025-13-01T00:00:00Z",
        "2025-00-01T00:00:00Z",
        "2025-02-29T00:00:00Z",
        "1900-02-29T00:00:00Z",
        "2025-04-31T00:00:00Z",
        "2025-09-00T00:00:00Z",
        "2025-09-11T24:00:00Z",
        "2025-09-11T23:60:00Z",
        "2025-09-11T23:59:60Z",
        "+2025-09-11T08:00:00Z",
        "2025-09-11T08:00:0xZ",
        "１９９９-09-11T08:00:00Z",
    ] {
        assert_eq!(parse_timestamp(text.as_bytes()), None, "{text}");
    }
}

#[test]
fn sizes_use_the_whole_int64_range() {
    let records = [
        rec(r#", "size": 0"#),
        rec(r#", "size": -1"#),
        rec(r#", "size": 9223372036854775807"#),
        rec(r#", "size": -9223372036854775808"#),
    ];
    let refs: Vec<&str> = records.iter().map(String::as_str).collect();
    let sizes: Vec<Option<i64>> = decode_ok(&page(&refs)).iter().map(|r| r.size).collect();
    assert_eq!(sizes, vec![Some(0), Some(-1), Some(i64::MAX), Some(i64::MIN)]);
}

// ---- page shapes ----

#[test]
fn pages_without_next_token_with_keys_in_any_order_and_no_whitespace() {
    let compact =
        r#"{"logs":[{"genTime":"2025-09-11T08:00:00Z","size":1},{"size":2,"genTime":"2025-09-11T08:00:01Z"}]}"#;
    let got = decode_ok(compact);
    assert_eq!(got.iter().map(|r| r.size).collect::<Vec<_>>(), vec![Some(1), Some(2)]);
    let token_last =
        r#"{"logs":[{"genTime":"2025-09-11T08:00:00Z"}], "nextToken": "x", "extra": {"a": [1, {"b": null}]}}"#;
    assert_eq!(decode_ok(token_last).len(), 1);
    let with_bom = format!("\u{FEFF}{compact}");
    assert_eq!(decode_ok(&with_bom).len(), 2);
    let spaced = " \r\n\t{ \"logs\" : [ { \"genTime\" : \"2025-09-11T08:00:00Z\" } ] } \r\n\t";
    assert_eq!(decode_ok(spaced).len(), 1);
}

#[test]
fn empty_logs_yield_no_batch() {
    for p in [
        r#"{"nextToken": "abc", "logs": []}"#,
        r#"{"logs":[]}"#,
        "{\n  \"logs\": [\n  ]\n}\n",
    ] {
        let d = decode(p, DecodeContext::default()).unwrap();
        assert!(d.batches.is_empty(), "{p}");
        assert!(d.bad.is_empty());
    }
}

fn numbered(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| rec(&format!(", \"size\": {i}, \"mailID\": \"m{i}\"")))
        .collect()
}

#[test]
fn batches_are_cut_at_batch_size() {
    let records = numbered(25);
    let refs: Vec<&str> = records.iter().map(String::as_str).collect();
    let p = page(&refs);
    let d = decode(&p, ctx(BadRecordPolicy::Fail, 10)).unwrap();
    let sizes: Vec<usize> = d.batches.iter().map(RecordBatch::num_rows).collect();
    assert_eq!(sizes, vec![10, 10, 5]);
    let got = rows(&d.batches);
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.size, Some(i as i64), "rows keep their order");
        assert_eq!(r.mail_id, Some(format!("m{i}")));
    }
    // Exactly batch_size rows: no empty batch at the end.
    let p = page(&refs[..20]);
    let sizes: Vec<usize> = decode(&p, ctx(BadRecordPolicy::Fail, 10))
        .unwrap()
        .batches
        .iter()
        .map(RecordBatch::num_rows)
        .collect();
    assert_eq!(sizes, vec![10, 10]);
}

#[test]
fn batches_are_emitted_during_decode_not_only_at_finish() {
    let records = numbered(25);
    let refs: Vec<&str> = records.iter().map(String::as_str).collect();
    let p = page(&refs);
    let mut d = MailTrackingDecoder::new(ctx(BadRecordPolicy::Fail, 10));
    let mut out = Vec::new();
    d.decode(p.as_bytes(), &mut out).unwrap();
    assert_eq!(out.len(), 2);
    d.finish(&mut out).unwrap();
    assert_eq!(out.len(), 3);
}

#[test]
fn a_batch_closes_early_rather_than_overflow_its_dictionary() {
    let records: Vec<String> = (0..200)
        .map(|i| {
            rec(&format!(
                ", \"action\": \"A{i}\", \"direction\": \"{}\"",
                ["in", "out"][i % 2]
            ))
        })
        .collect();
    let refs: Vec<&str> = records.iter().map(String::as_str).collect();
    let d = decode(&page(&refs), ctx(BadRecordPolicy::Fail, 1000)).unwrap();
    let sizes: Vec<usize> = d.batches.iter().map(RecordBatch::num_rows).collect();
    assert_eq!(sizes, vec![128, 72]);
    let got = rows(&d.batches);
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.action, Some(format!("A{i}")));
        assert_eq!(r.direction.as_deref(), Some(["in", "out"][i % 2]));
    }
    // Repeated values do not fill the dictionary.
    let records: Vec<String> = (0..300)
        .map(|i| rec(&format!(", \"action\": \"A{}\"", i % 128)))
        .collect();
    let refs: Vec<&str> = records.iter().map(String::as_str).collect();
    let d = decode(&page(&refs), ctx(BadRecordPolicy::Fail, 1000)).unwrap();
    assert_eq!(d.batches.len(), 1);
    let dict = d.batches[0].column(14).as_dictionary::<Int8Type>();
    assert_eq!(dict.values().len(), 128);
}

// ---- bad records ----

/// Each kind of bad record (as extra members of a record), with the reason it must give.
fn bad_cases() -> Vec<(String, &'static str)> {
    let cases: Vec<(&str, &str)> = vec![
        (
            r#", "size": "big""#,
            "field `size`: expected an integer, found a string",
        ),
        (r#", "size": 1.5"#, "field `size`: expected an integer, found `1.5`"),
        (r#", "size": 1e3"#, "field `size`: expected an integer, found `1e3`"),
        (
            r#", "size": 9223372036854775808"#,
            "field `size`: expected an integer, found `9223372036854775808`",
        ),
        (
            r#", "headerTo": 5"#,
            "field `headerTo`: expected an array of strings, found a number",
        ),
        (
            r#", "headerTo": ["a", 1]"#,
            "field `headerTo`: expected an array of strings, found a number at index 1",
        ),
        (
            r#", "embeddedUrl": [["nested"]]"#,
            "field `embeddedUrl`: expected an array of strings, found an array at index 0",
        ),
        (
            r#", "sender": true"#,
            "field `sender`: expected a string, found a boolean",
        ),
        (
            r#", "direction": {}"#,
            "field `direction`: expected a string, found an object",
        ),
        (
            r#", "deliveryTime": 5"#,
            "field `deliveryTime`: expected an ISO 8601 UTC timestamp string, found a number",
        ),
        (
            r#", "timestamp": "2025-02-29T00:00:00Z""#,
            "field `timestamp`: expected an ISO 8601 UTC timestamp (YYYY-MM-DDThh:mm:ss[.fffffffff]Z), \
             found `2025-02-29T00:00:00Z`",
        ),
        (
            r#", "deliveryTime": "11/09/2025 08:00""#,
            "field `deliveryTime`: expected an ISO 8601 UTC timestamp (YYYY-MM-DDThh:mm:ss[.fffffffff]Z), \
             found `11/09/2025 08:00`",
        ),
        (
            r#", "attachments": {"fileName": "a"}"#,
            "field `attachments`: expected an array of objects, found an object",
        ),
        (
            r#", "attachments": ["a.zip"]"#,
            "field `attachments`: expected an array of objects, found a string at index 0",
        ),
        (
            r#", "attachments": [{"fileName": 3}]"#,
            "field `attachments.fileName`: expected a string, found a number",
        ),
        (
            r#", "attachments": [{"sha256": "a", "sha256": "b"}]"#,
            "field `attachments.sha256` appears twice",
        ),
        (r#", "size": 1, "size": 2"#, "field `size` appears twice"),
        (
            r#", "embeddedUrls": ["a"], "embeddedUrl": ["b"]"#,
            "field `embeddedUrl` appears twice (`embeddedUrls` and `embeddedUrl` are one field)",
        ),
        (
            r#", "subject": "half \ud83d pair""#,
            "field `subject`: a \\u escape is half of a UTF-16 surrogate pair with no other half",
        ),
        (
            r#", "subject": "low \ude00 first""#,
            "field `subject`: a \\u escape is half of a UTF-16 surrogate pair with no other half",
        ),
    ];
    let mut cases: Vec<(String, &str)> = cases.into_iter().map(|(extra, reason)| (rec(extra), reason)).collect();
    cases.push((
        r#"    {"genTime": "2025-09-11T08:00:00+09:00"}"#.to_string(),
        "field `genTime`: expected an ISO 8601 UTC timestamp (YYYY-MM-DDThh:mm:ss[.fffffffff]Z), \
         found `2025-09-11T08:00:00+09:00`",
    ));
    cases.push((
        r#"    {"genTime": 5}"#.to_string(),
        "field `genTime`: expected an ISO 8601 UTC timestamp string, found a number",
    ));
    cases.push((
        r#"    {"size": 5}"#.to_string(),
        "field `genTime` is missing or null (it is required)",
    ));
    cases.push((
        r#"    {"genTime": null}"#.to_string(),
        "field `genTime` is missing or null (it is required)",
    ));
    cases.push((
        "    \"a string\"".to_string(),
        "a `logs` element must be a JSON object, found a string",
    ));
    cases.push((
        "    [1, 2]".to_string(),
        "a `logs` element must be a JSON object, found an array",
    ));
    cases.push((
        "    null".to_string(),
        "a `logs` element must be a JSON object, found null",
    ));
    cases.push((
        "    -12.5e3".to_string(),
        "a `logs` element must be a JSON object, found a number",
    ));
    cases
}

fn good() -> String {
    rec(r#", "size": 1"#)
}

#[test]
fn each_bad_record_fails_with_its_line_number_and_reason() {
    let good = good();
    for (bad, reason) in bad_cases() {
        let p = page(&[&good, &good, &bad, &good]);
        match decode_err(&p, DecodeContext::default()) {
            DecodeError::BadRecord {
                line,
                reason: got,
                excerpt,
            } => {
                assert_eq!(line, 6, "{bad}");
                assert!(
                    got.starts_with(&format!("log entry 3: {reason} (byte ")),
                    "{bad}: {got}"
                );
                assert_eq!(excerpt, bad.trim(), "the excerpt is the record's JSON text");
            }
            other => panic!("{bad}: expected BadRecord, got {other:?}"),
        }
    }
}

#[test]
fn bad_records_are_skipped_under_skip_with_their_text() {
    let good = good();
    for (bad, reason) in bad_cases() {
        let p = page(&[&good, &bad, &good]);
        let d = decode(&p, ctx(BadRecordPolicy::Skip, 2)).unwrap();
        assert_eq!(rows(&d.batches).len(), 2, "{bad}");
        assert_eq!(d.bad.len(), 1);
        let b = &d.bad[0];
        assert_eq!(b.line, 5);
        assert!(
            b.reason.starts_with(&format!("log entry 2: {reason} (byte ")),
            "{}",
            b.reason
        );
        assert_eq!(b.raw, bad.trim());
    }
}

#[test]
fn the_reason_gives_the_byte_offset_of_the_bad_value() {
    let p = page(&[&rec(r#", "size": "big""#)]);
    let offset = p.find("\"big\"").unwrap();
    let d = decode(&p, ctx(BadRecordPolicy::Skip, 10)).unwrap();
    assert!(
        d.bad[0].reason.ends_with(&format!("(byte {offset})")),
        "{}",
        d.bad[0].reason
    );
}

#[test]
fn invalid_utf8_makes_a_bad_record() {
    let good = good();
    let mut p = page(&[&good, &rec(r#", "subject": "bad X here""#), &good]).into_bytes();
    let x = p.iter().position(|&b| b == b'X').unwrap();
    p[x] = 0xFF;
    let d = decode_cuts(&p, &[x], ctx(BadRecordPolicy::Skip, 10)).unwrap();
    assert_eq!(rows(&d.batches).len(), 2);
    assert_eq!(d.bad.len(), 1);
    assert!(
        d.bad[0].reason.starts_with("log entry 2: invalid UTF-8 (byte "),
        "{}",
        d.bad[0].reason
    );
    match decode_err_bytes(&p, DecodeContext::default()) {
        DecodeError::BadRecord { line, .. } => assert_eq!(line, 5),
        other => panic!("expected BadRecord, got {other:?}"),
    }
}

#[test]
fn a_long_bad_record_is_quoted_in_part() {
    let long = "x".repeat(5000);
    let p = page(&[&rec(&format!(r#", "subject": "{long}", "size": "big""#))]);
    let d = decode(&p, ctx(BadRecordPolicy::Skip, 10)).unwrap();
    assert_eq!(d.bad[0].raw.len(), etl_core::bad::MAX_EXCERPT);
}

// ---- unknown fields ----

#[test]
fn unknown_fields_are_counted_and_skipped() {
    let records = [
        rec(r#", "spamScore": 9.5, "size": 1"#),
        rec(r#", "spamScore": {"a": [1, {"b": "\" ]}"}], "c": null}, "attachments": [{"fileName": "a", "size": 3}]"#),
        rec(r#", "attachments": [{"size": 1, "mime": "x"}, {"size": 2}], "x\u00e9": true"#),
    ];
    let refs: Vec<&str> = records.iter().map(String::as_str).collect();
    let p = page(&refs);
    let d = decode(&p, DecodeContext::default()).unwrap();
    let got = rows(&d.batches);
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].size, Some(1));
    assert_eq!(got[1].attachments, Some(vec![Some((s("a"), None))]));
    assert_eq!(got[2].attachments, Some(vec![Some((None, None)), Some((None, None))]));
    let expected: Vec<(String, u64)> = vec![
        ("attachments.mime".into(), 1),
        ("attachments.size".into(), 3),
        ("spamScore".into(), 2),
        ("xé".into(), 1),
    ];
    assert_eq!(d.unknown, expected);
    // The same whatever the chunks, and drained by each call.
    let every: Vec<usize> = (0..p.len()).collect();
    assert_eq!(
        decode_cuts(p.as_bytes(), &every, DecodeContext::default())
            .unwrap()
            .unknown,
        expected
    );
    let mut dec = MailTrackingDecoder::new(DecodeContext::default());
    let mut out = Vec::new();
    dec.decode(p.as_bytes(), &mut out).unwrap();
    assert_eq!(dec.take_unknown_fields(), expected);
    assert!(dec.take_unknown_fields().is_empty());
}

#[test]
fn unknown_fields_make_bad_records_under_fail() {
    let fail = |policy| DecodeContext {
        policy,
        batch_size: 10,
        unknown_fields: UnknownFieldPolicy::Fail,
    };
    let good = good();
    let cases = [
        (rec(r#", "spamScore": [1, 2]"#), "unknown field `spamScore`"),
        (
            rec(r#", "attachments": [{"fileName": "a", "size": 3}]"#),
            "unknown field `attachments.size`",
        ),
    ];
    for (bad, reason) in cases {
        let p = page(&[&good, &bad]);
        match decode_err(&p, fail(BadRecordPolicy::Fail)) {
            DecodeError::BadRecord { line, reason: got, .. } => {
                assert_eq!(line, 5);
                assert!(got.starts_with(&format!("log entry 2: {reason} (byte ")), "{got}");
            }
            other => panic!("expected BadRecord, got {other:?}"),
        }
        let d = decode(&p, fail(BadRecordPolicy::Skip)).unwrap();
        assert_eq!(rows(&d.batches).len(), 1);
        assert_eq!(d.bad.len(), 1);
        assert!(d.unknown.is_empty(), "nothing is counted under fail");
    }
}

// ---- broken pages ----

#[test]
fn every_truncation_of_a_page_is_malformed_at_finish() {
    let p = page(&[
        &good(),
        &rec(r#", "subject": "caf\u00e9 ☕", "headerTo": ["a", "b"], "size": -12"#),
    ]);
    let end = p.rfind('}').unwrap();
    for cut in 0..=end {
        let prefix = &p.as_bytes()[..cut];
        let whole = decode_cuts(prefix, &[], DecodeContext::default());
        let Err(DecodeError::Malformed { what, line, reason }) = &whole else {
            panic!("prefix of {cut} bytes: expected Malformed, got {whole:?}");
        };
        assert_eq!(*what, "mail tracking JSON");
        assert_eq!(
            *line,
            1 + prefix.iter().filter(|&&b| b == b'\n').count() as u64,
            "cut {cut}: the line of the end"
        );
        assert!(
            reason.contains("empty") || reason.contains("truncated"),
            "cut {cut}: {reason}"
        );
        let split = decode_cuts(prefix, &[cut / 2, cut / 3], DecodeContext::default()).unwrap_err();
        assert_eq!(whole.unwrap_err().to_string(), split.to_string(), "cut {cut}");
    }
}

#[test]
fn truncation_messages_say_where_the_page_stopped() {
    let good = good();
    let p = page(&[&good, &good]);
    let cut = p.rfind("\"genTime\"").unwrap();
    let (line, reason) = malformed(&p[..cut]);
    assert_eq!(line, 5);
    assert_eq!(
        reason,
        "the page is truncated inside log entry 2 (which starts at line 5)"
    );
    let cut = p.rfind(']').unwrap();
    let (_, reason) = malformed(&p[..cut]);
    assert_eq!(
        reason,
        "the page is truncated: the `logs` array is not closed (after 2 log entries)"
    );
    let (_, reason) = malformed(&p[..p.rfind('}').unwrap()]);
    assert_eq!(reason, "the page is truncated: its JSON object is not closed");
    assert_eq!(malformed("").1, "the page is empty: expected a JSON object");
    assert_eq!(malformed(" \n ").0, 2);
}

#[test]
fn a_page_without_records_may_leave_logs_out_or_null() {
    for p in [
        "{}",
        r#"{"nextToken": "abc"}"#,
        r#"{"logs": null}"#,
        "{\n  \"nextToken\": null,\n  \"logs\": null\n}",
        r#"{"logs": []}"#,
    ] {
        let decoded = decode(p, DecodeContext::default()).unwrap_or_else(|e| panic!("{p}: {e}"));
        assert!(decoded.batches.iter().all(|b| b.num_rows() == 0), "{p}");
        assert!(decoded.bad.is_empty(), "{p}");
    }
}

#[test]
fn pages_of_the_wrong_shape_are_malformed() {
    let good = good();
    let cases: Vec<(String, u64, &str)> = vec![
        (
            r#"{"nextToken": "abc", "status": "busy"}"#.into(),
            1,
            "the page has no `logs` array",
        ),
        (
            "{\n\"code\": \"MTL-401\",\n\"message\": \"Unauthorized\"\n}".into(),
            4,
            "the page has no `logs` array: the service answered an error: code `MTL-401`, message `Unauthorized`",
        ),
        (r#"{"logs": {}}"#.into(), 1, "`logs` must be an array, found an object"),
        (r#"{"logs": 7}"#.into(), 1, "`logs` must be an array, found a number"),
        (r#"{"logs": [], "logs": []}"#.into(), 1, "the page has two `logs` keys"),
        (
            format!("{}\n{{}}", page(&[&good]).trim_end()),
            7,
            "data after the end of the page's JSON object: `{`",
        ),
        (
            format!("{}x", page(&[&good])),
            7,
            "data after the end of the page's JSON object: `x`",
        ),
        (
            format!("[{}]", page(&[&good])),
            1,
            "expected the page's JSON object `{`, found `[`",
        ),
        (
            "\u{FEFF}\u{FEFF}{}".into(),
            1,
            "expected the page's JSON object `{`, found byte 0xEF (not ASCII)",
        ),
    ];
    for (p, line, reason) in cases {
        assert_eq!(malformed(&p), (line, reason.to_string()), "{p}");
    }
}

#[test]
fn syntax_errors_are_malformed_and_name_the_spot() {
    let good = good();
    let cases: Vec<(String, u64, &str)> = vec![
        (page(&[&good, "    {\"genTime\" \"x\"}"]), 5, "expected `:`, found `\"`"),
        (
            page(&[&good, "    {\"genTime\": \"2025-09-11T08:00:00Z\",}"]),
            5,
            "expected a field name, found `}`",
        ),
        (
            page(&[&good, "    {\"size\": 01}"]),
            5,
            "expected `,` or `}`, found `1`",
        ),
        (page(&[&good, "    {\"size\": -}"]), 5, "expected a digit, found `}`"),
        (page(&[&good, "    {\"size\": 1.}"]), 5, "expected a digit, found `}`"),
        (page(&[&good, "    {\"x\": tru}"]), 5, "expected `true`, found `}`"),
        (page(&[&good, "    {\"x\": nul}"]), 5, "expected `null`, found `}`"),
        (
            page(&[&good, "    {\"x\": 'a'}"]),
            5,
            "expected a JSON value, found `'`",
        ),
        (
            page(&[&good, "    {\"subject\": \"a\\qb\"}"]),
            5,
            "invalid escape `\\q`",
        ),
        (
            page(&[&good, "    {\"subject\": \"a\\u12G4\"}"]),
            5,
            "expected a hex digit of a \\u escape, found `G`",
        ),
        (
            page(&[&good, "    {\"subject\": \"a\tb\"}"]),
            5,
            "unescaped control character 0x09 in a string",
        ),
        (
            page(&[&good, "    {\"subject\": \"日本\"x}"]),
            5,
            "expected `,` or `}`, found `x`",
        ),
        (
            page(&[&good, "    {\"headerTo\": [\"a\" \"b\"]}"]),
            5,
            "expected `,` or `]`, found `\"`",
        ),
        (
            page(&[&good, "    {\"headerTo\": [\"a\",]}"]),
            5,
            "expected a JSON value, found `]`",
        ),
        (
            page(&[&good, "    {\"a\": [1,}"]),
            5,
            "expected a JSON value, found `}`",
        ),
        (page(&[&good, "    {\"a\": {\"b\" 1}}"]), 5, "expected `:`, found `1`"),
        (
            page(&[&good, "    {日本: 1}"]),
            5,
            "expected a field name, found byte 0xE6 (not ASCII)",
        ),
        (
            page(&[&good, &good]).replace("},\n", "}\n"),
            5,
            "expected `,` or `]`, found `{`",
        ),
        (
            page(&[&good, &good]).replace("},\n", "},,\n"),
            4,
            "expected a JSON value, found `,`",
        ),
        (
            format!("{{\"logs\": [{}]}}", "[".repeat(200)),
            1,
            "values nested deeper than 128 levels",
        ),
    ];
    for (p, line, reason) in cases {
        let (got_line, got) = malformed(&p);
        assert_eq!(got_line, line, "{p}");
        assert!(got.starts_with(&format!("{reason} (byte ")), "{p}\n{got}");
    }
}

#[test]
fn numbers_and_literals_outside_records_decode_the_same_cut_anywhere() {
    // Inside a record, a cut number is re-read with its record; outside one, a number ends only
    // at a byte that cannot continue it.
    let p = format!(
        "{{\"total\": 1234567, \"ratio\": -0.5e-3, \"more\": false, \"logs\": [{}, 12345, -1.25E+3, true, null, {}], \"n\": 0}}",
        good().trim(),
        good().trim()
    );
    let whole = decode(&p, ctx(BadRecordPolicy::Skip, 10)).unwrap();
    assert_eq!(rows(&whole.batches).len(), 2);
    let raw: Vec<&str> = whole.bad.iter().map(|b| b.raw.as_str()).collect();
    assert_eq!(raw, vec!["12345", "-1.25E+3", "true", "null"]);
    for cut in 0..=p.len() {
        let split = decode_cuts(p.as_bytes(), &[cut], ctx(BadRecordPolicy::Skip, 10)).unwrap();
        assert_eq!(split.batches, whole.batches, "cut at {cut}");
        assert_eq!(split.bad, whole.bad, "cut at {cut}");
    }
    // A number that ends the page is complete; its object is not.
    assert_eq!(
        malformed("{\"logs\": [], \"n\": 12").1,
        "the page is truncated: its JSON object is not closed"
    );
}

#[test]
fn the_decoder_takes_no_input_after_finish_or_an_error() {
    let mut d = MailTrackingDecoder::new(DecodeContext::default());
    let mut out = Vec::new();
    d.decode(SEED_PAGE.as_bytes(), &mut out).unwrap();
    d.finish(&mut out).unwrap();
    assert!(d.decode(b"{}", &mut out).is_err());
    assert!(d.finish(&mut out).is_err());

    let mut d = MailTrackingDecoder::new(DecodeContext::default());
    assert!(d.decode(b"[", &mut out).is_err());
    assert!(d.decode(b"{\"logs\": []}", &mut out).is_err());
}

#[test]
fn a_big_record_fed_byte_by_byte_is_scanned_in_linear_time() {
    // 300 KiB of one record, one byte per call: a decoder that re-parsed the record from its
    // start on every call would need ~50 G steps; this finishes in well under a second.
    let big = "é".repeat(150_000);
    let p = page(&[&rec(&format!(r#", "subject": "{big}""#))]);
    let every: Vec<usize> = (0..p.len()).collect();
    let d = decode_cuts(p.as_bytes(), &every, DecodeContext::default()).unwrap();
    assert_eq!(rows(&d.batches)[0].subject.as_deref(), Some(big.as_str()));
}

// ---- property: generated pages, any cuts ----

/// A text value with the characters that matter: quotes, backslashes, `/`, control characters,
/// and multi-byte UTF-8 of every length.
fn text() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            6 => proptest::char::range('a', 'z'),
            2 => proptest::sample::select(vec!['0', '.', '@', ' ', ':', '<', '>', '{', '}', '[', ']', ',']),
            2 => proptest::sample::select(vec!['"', '\\', '/', '\n', '\t', '\u{1}', '\u{1F}', '\u{7F}']),
            3 => proptest::sample::select(vec!['é', 'ß', '日', '本', 'ア', '☕', '😀', '𝄞', '\u{FFFD}', '\u{10FFFF}']),
        ],
        0..10,
    )
    .prop_map(|v| v.into_iter().collect())
}

fn list() -> impl Strategy<Value = Vec<Option<String>>> {
    proptest::collection::vec(proptest::option::weighted(0.9, text()), 0..4)
}

#[derive(Clone, Debug)]
struct GenRecord {
    /// Seconds and nanoseconds, and how many fraction digits to write.
    times: [Option<(i64, u32, usize)>; 3],
    texts: [Option<String>; 11],
    direction: Option<usize>,
    action: Option<usize>,
    size: Option<i64>,
    header_to: Vec<Option<String>>,
    embedded_urls: Vec<Option<String>>,
    attachments: Vec<Option<AttachmentRow>>,
    /// An unknown key (0: none).
    unknown: usize,
    /// Writes `size` as a string: a bad record.
    bad: bool,
}

const DIRECTIONS: [&str; 2] = ["in", "out"];
const ACTIONS: [&str; 5] = ["Delivered", "Bounced", "Deferred", "Quarantined", "Rejected – déjà"];
const UNKNOWN: [&str; 4] = ["", "spamScore", "x-extra\u{e9}", "attachmentsCount"];

fn time() -> impl Strategy<Value = (i64, u32, usize)> {
    (
        -2_208_988_800i64..253_402_300_799,
        0u32..1_000_000_000,
        proptest::sample::select(vec![0usize, 1, 3, 6, 9]),
    )
}

fn gen_record() -> impl Strategy<Value = GenRecord> {
    (
        (proptest::option::of(time()), time(), proptest::option::of(time())),
        proptest::array::uniform11(proptest::option::of(text())),
        (
            proptest::option::of(0usize..2),
            proptest::option::of(0usize..5),
            proptest::option::of(any::<i64>()),
        ),
        (list(), list()),
        proptest::collection::vec(
            proptest::option::weighted(
                0.9,
                (proptest::option::of(text()), proptest::option::of("[0-9a-f]{64}")),
            ),
            0..3,
        ),
        0usize..4,
        proptest::bool::weighted(0.1),
    )
        .prop_map(
            |(
                (ts, gen_time, delivery),
                texts,
                (direction, action, size),
                (header_to, embedded_urls),
                attachments,
                unknown,
                bad,
            )| {
                GenRecord {
                    times: [ts, Some(gen_time), delivery],
                    texts,
                    direction,
                    action,
                    size,
                    header_to,
                    embedded_urls,
                    attachments,
                    unknown,
                    bad,
                }
            },
        )
}

/// Deterministic choices while rendering.
struct Pick(u64);

impl Pick {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Writes `s` as a JSON string, choosing among the equivalent spellings of each character.
fn json_string(s: &str, pick: &mut Pick) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        let short = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '/' => Some("\\/"),
            '\u{8}' => Some("\\b"),
            '\u{c}' => Some("\\f"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            _ => None,
        };
        let must = matches!(c, '"' | '\\') || c < ' ';
        match pick.below(4) {
            0 => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&if pick.below(2) == 0 {
                        format!("\\u{u:04x}")
                    } else {
                        format!("\\u{u:04X}")
                    });
                }
            }
            1 if short.is_some() => out.push_str(short.unwrap_or_default()),
            _ if must => out.push_str(&short.map_or_else(|| format!("\\u{:04x}", c as u32), str::to_string)),
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The timestamp text for `(secs, nanos, digits)` and the microseconds it must decode to.
fn timestamp(t: (i64, u32, usize), pick: &mut Pick) -> (String, i64) {
    let (secs, nanos, digits) = t;
    let kept = nanos / 10u32.pow(9 - digits as u32) * 10u32.pow(9 - digits as u32);
    let when = DateTime::<Utc>::from_timestamp(secs, 0).unwrap();
    let mut text = when.format("%Y-%m-%dT%H:%M:%S").to_string();
    if digits > 0 {
        text.push_str(&format!(".{:09}", kept)[..digits + 1]);
    }
    text.push_str(if pick.below(2) == 0 { "Z" } else { "+00:00" });
    (text, secs * 1_000_000 + i64::from(kept / 1000))
}

/// Renders a page of `records` and the rows and unknown-field counts it must decode to.
fn render(records: &[GenRecord], seed: u64) -> (String, Vec<Row>, Vec<(String, u64)>) {
    let mut pick = Pick(seed | 1);
    let gaps = ["", " ", "\n", "\r\n\t\t", "  \n  "];
    let gap = |pick: &mut Pick| gaps[pick.below(gaps.len())];
    let mut rows = Vec::new();
    let mut unknown: HashMap<String, u64> = HashMap::new();
    let mut entries = Vec::new();
    for r in records {
        let mut members: Vec<(String, String)> = Vec::new();
        let mut row = Row::default();
        // An absent value is sometimes written as `null`.
        let nothing = |members: &mut Vec<(String, String)>, key: &str, pick: &mut Pick, empty_list: bool| match pick
            .below(if empty_list { 3 } else { 2 })
        {
            0 => {}
            1 => members.push((key.to_string(), "null".to_string())),
            _ => members.push((key.to_string(), "[]".to_string())),
        };
        for (slot, t) in r.times.iter().enumerate() {
            let key = ["timestamp", "genTime", "deliveryTime"][slot];
            match t {
                Some(t) => {
                    let (text, micros) = timestamp(*t, &mut pick);
                    members.push((key.to_string(), format!("\"{text}\"")));
                    match slot {
                        0 => row.timestamp = Some(micros),
                        1 => row.gen_time = micros,
                        _ => row.delivery_time = Some(micros),
                    }
                }
                None => nothing(&mut members, key, &mut pick, false),
            }
        }
        let text_columns: Vec<&Column> = COLUMNS.iter().filter(|c| c.kind == Kind::Text).collect();
        for (c, value) in text_columns.iter().zip(&r.texts) {
            match value {
                Some(v) => members.push((c.json.to_string(), json_string(v, &mut pick))),
                None => nothing(&mut members, c.json, &mut pick, false),
            }
        }
        row.sender = r.texts[0].clone();
        row.header_from = r.texts[1].clone();
        row.recipient = r.texts[2].clone();
        row.subject = r.texts[3].clone();
        row.sender_ip = r.texts[4].clone();
        row.delivered_to = r.texts[5].clone();
        row.mail_id = r.texts[6].clone();
        row.message_id = r.texts[7].clone();
        row.reason = r.texts[8].clone();
        row.tls_info = r.texts[9].clone();
        row.details = r.texts[10].clone();
        for (key, value, out) in [
            ("direction", r.direction.map(|i| DIRECTIONS[i]), &mut row.direction),
            ("action", r.action.map(|i| ACTIONS[i]), &mut row.action),
        ] {
            match value {
                Some(v) => {
                    members.push((key.to_string(), json_string(v, &mut pick)));
                    *out = Some(v.to_string());
                }
                None => nothing(&mut members, key, &mut pick, false),
            }
        }
        match (r.size, r.bad) {
            (_, true) => members.push(("size".to_string(), "\"big\"".to_string())),
            (Some(v), false) => {
                members.push(("size".to_string(), v.to_string()));
                row.size = Some(v);
            }
            (None, false) => nothing(&mut members, "size", &mut pick, false),
        }
        let embedded_key = ["embeddedUrls", "embeddedUrl"][pick.below(2)];
        for (key, items, out) in [
            ("headerTo", &r.header_to, &mut row.header_to),
            (embedded_key, &r.embedded_urls, &mut row.embedded_urls),
        ] {
            if items.is_empty() {
                nothing(&mut members, key, &mut pick, true);
                continue;
            }
            let texts: Vec<String> = items
                .iter()
                .map(|i| {
                    i.as_ref()
                        .map_or_else(|| "null".to_string(), |v| json_string(v, &mut pick))
                })
                .collect();
            members.push((
                key.to_string(),
                format!("[{}]", texts.join(&format!(",{}", gap(&mut pick)))),
            ));
            *out = Some(items.clone());
        }
        if r.attachments.is_empty() {
            nothing(&mut members, "attachments", &mut pick, true);
        } else {
            let mut items = Vec::new();
            for a in &r.attachments {
                let Some((name, sum)) = a else {
                    items.push("null".to_string());
                    continue;
                };
                let mut fields = Vec::new();
                for (key, v) in [("fileName", name), ("sha256", sum)] {
                    match v {
                        Some(v) => fields.push(format!("\"{key}\":{}{}", gap(&mut pick), json_string(v, &mut pick))),
                        None if pick.below(2) == 0 => fields.push(format!("\"{key}\": null")),
                        None => {}
                    }
                }
                if pick.below(4) == 0 {
                    fields.push("\"size\": {\"bytes\": [1, 2.5e3, true]}".to_string());
                    *unknown.entry("attachments.size".to_string()).or_default() += 1;
                }
                if pick.below(2) == 0 {
                    fields.reverse();
                }
                items.push(format!("{{{}}}", fields.join(",")));
            }
            members.push(("attachments".to_string(), format!("[{}]", items.join(", "))));
            row.attachments = Some(r.attachments.clone());
        }
        if r.unknown > 0 {
            let name = UNKNOWN[r.unknown];
            members.push((
                name.to_string(),
                r#"{"nested": ["\"", {"deep": [[], {}]}], "n": -0.5E-3}"#.to_string(),
            ));
            *unknown.entry(name.to_string()).or_default() += 1;
        }
        // Keys in any order.
        for i in (1..members.len()).rev() {
            members.swap(i, pick.below(i + 1));
        }
        let body: Vec<String> = members
            .iter()
            .map(|(k, v)| {
                let (g1, g2, g3) = (gap(&mut pick), gap(&mut pick), gap(&mut pick));
                format!("{g1}{}{g2}:{g3}{v}", json_string(k, &mut pick))
            })
            .collect();
        entries.push(format!("{{{}{}}}", body.join(","), gap(&mut pick)));
        if !r.bad {
            rows.push(row);
        }
    }
    let logs = format!(
        "\"logs\":{}[{}{}]",
        gap(&mut pick),
        entries.join(&format!(",{}", gap(&mut pick))),
        gap(&mut pick)
    );
    let page = match pick.below(4) {
        0 => format!("{{{logs}}}"),
        1 => format!("{{\n  \"nextToken\": \"Lu2X+/==\",\n  {logs}\n}}\n"),
        // Page-level keys the decoder skips, with numbers and literals that a chunk may cut.
        2 => format!("{{\"total\": 1234567, \"ratio\": -0.5e-3, \"more\": false, {logs}, \"none\": null}}"),
        _ => format!(
            "{{{}{logs},{}\"nextToken\":\"a\\\"b\"}}",
            gap(&mut pick),
            gap(&mut pick)
        ),
    };
    let mut unknown: Vec<(String, u64)> = unknown.into_iter().collect();
    unknown.sort();
    (page, rows, unknown)
}

fn cut_points(cuts: &[proptest::sample::Index], len: usize) -> Vec<usize> {
    cuts.iter().map(|i| i.index(len + 1)).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn generated_pages_decode_to_their_records_whatever_the_cuts(
        records in proptest::collection::vec(gen_record(), 0..12),
        seed in any::<u64>(),
        batch_size in 1usize..6,
        cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..40),
    ) {
        let (p, expected, unknown) = render(&records, seed);
        let bytes = p.as_bytes();
        let ctx = ctx(BadRecordPolicy::Skip, batch_size);
        let whole = decode_cuts(bytes, &[], ctx).unwrap();
        prop_assert_eq!(rows(&whole.batches), expected);
        prop_assert_eq!(whole.bad.len(), records.iter().filter(|r| r.bad).count());
        prop_assert_eq!(&whole.unknown, &unknown);
        prop_assert!(whole.batches.iter().all(|b| b.num_rows() <= batch_size));

        let split = decode_cuts(bytes, &cut_points(&cuts, bytes.len()), ctx).unwrap();
        prop_assert_eq!(&split.batches, &whole.batches);
        prop_assert_eq!(&split.bad, &whole.bad);
        prop_assert_eq!(&split.unknown, &whole.unknown);
    }

    /// Broken pages too: whatever the damage, the cuts change neither the rows, nor the skipped
    /// records, nor the error.
    #[test]
    fn damaged_pages_decode_the_same_whatever_the_cuts(
        records in proptest::collection::vec(gen_record(), 1..6),
        seed in any::<u64>(),
        at in any::<proptest::sample::Index>(),
        damage in prop_oneof![
            any::<u8>().prop_map(|b| vec![b]),
            proptest::sample::select(vec!["\"", "\\", "\\u", "\\ud83d", "{", "}", "[", "]", ",", ":", " ",
                "\n", "null", "tru", "-", "0", "1e", ".", "é", "\u{FEFF}", "\"logs\": []", "}]}", "\t"])
                .prop_map(|s| s.as_bytes().to_vec()),
        ],
        delete in 0usize..6,
        skip in any::<bool>(),
        cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 1..20),
    ) {
        let (p, _, _) = render(&records, seed);
        let mut bytes = p.into_bytes();
        let at = at.index(bytes.len());
        let delete = delete.min(bytes.len() - at);
        bytes.splice(at..at + delete, damage);
        let policy = if skip { BadRecordPolicy::Skip } else { BadRecordPolicy::Fail };
        let ctx = ctx(policy, 3);
        let whole = decode_cuts(&bytes, &[], ctx);
        let split = decode_cuts(&bytes, &cut_points(&cuts, bytes.len()), ctx);
        match (whole, split) {
            (Ok(a), Ok(b)) => {
                prop_assert_eq!(a.batches, b.batches);
                prop_assert_eq!(a.bad, b.bad);
                prop_assert_eq!(a.unknown, b.unknown);
            }
            (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string()),
            (a, b) => prop_assert!(false, "whole: {:?}\nsplit: {:?}", a, b),
        }
    }

    #[test]
    fn any_prefix_of_a_page_is_rejected(
        records in proptest::collection::vec(gen_record(), 1..8),
        seed in any::<u64>(),
        cut in any::<proptest::sample::Index>(),
    ) {
        let (p, _, _) = render(&records, seed);
        let end = p.rfind('}').unwrap();
        let prefix = &p.as_bytes()[..cut.index(end)];
        let result = decode_cuts(prefix, &[prefix.len() / 2], ctx(BadRecordPolicy::Skip, 4));
        prop_assert!(matches!(result, Err(DecodeError::Malformed { .. })), "{:?}", result);
        let whole = decode_cuts(prefix, &[], ctx(BadRecordPolicy::Skip, 4));
        prop_assert_eq!(whole.unwrap_err().to_string(), result.unwrap_err().to_string());
    }
}
