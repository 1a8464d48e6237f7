//! The decoder is checked against the seed's own example, against every kind of bad line and
//! broken page, and, by property, against itself: where the page is cut into chunks must never
//! change a batch, a skipped record or an error.

use arrow_array::cast::AsArray;
use arrow_array::types::{Int8Type, TimestampMicrosecondType, UInt16Type};
use arrow_array::{Array, RecordBatch};
use chrono::{DateTime, NaiveDate, Utc};
use proptest::prelude::*;

use super::*;
use crate::testing::{self, ctx, micros};

/// One decoded row, with every column as a plain value.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Row {
    delivered_at: i64,
    result: String,
    status_code: u16,
    transaction_id: String,
    sender: String,
    recipient: String,
    detail: String,
}

fn rows(batches: &[RecordBatch]) -> Vec<Row> {
    let mut out = Vec::new();
    for b in batches {
        assert_eq!(b.schema(), schema(), "every batch has the documented schema");
        let ts = b.column(0).as_primitive::<TimestampMicrosecondType>();
        let result = b.column(1).as_dictionary::<Int8Type>();
        let values = result.values().as_string::<i32>();
        let status = b.column(2).as_primitive::<UInt16Type>();
        let s = |i: usize| b.column(i).as_string::<i32>();
        for r in 0..b.num_rows() {
            for c in 0..b.num_columns() {
                assert!(b.column(c).is_valid(r), "no nulls anywhere");
            }
            out.push(Row {
                delivered_at: ts.value(r),
                result: values.value(result.keys().value(r) as usize).to_string(),
                status_code: status.value(r),
                transaction_id: s(3).value(r).to_string(),
                sender: s(4).value(r).to_string(),
                recipient: s(5).value(r).to_string(),
                detail: s(6).value(r).to_string(),
            });
        }
    }
    out
}

/// A page shaped like the seed's example: the `<Log>` lines start on line 5.
fn page(lines: &[&str], count: usize) -> String {
    let mut p = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<GetDeliveryLogResponse>\n  <GetDeliveryLogResult>\n",
    );
    p.push_str(&format!("    <LogCount>{count}</LogCount>\n"));
    for l in lines {
        p.push_str(&format!("    <Log>{l}</Log>\n"));
    }
    p.push_str(
        "  </GetDeliveryLogResult>\n  <ResponseMetadata>\n    \
         <RequestId>647cd254-e0d1-44a9-af61-1d6d86ea6b77</RequestId>\n  </ResponseMetadata>\n\
         </GetDeliveryLogResponse>\n",
    );
    p
}

type Decoded = (Vec<RecordBatch>, Vec<BadRecord>);

/// Decodes `input` cut at `cuts` (offsets, any order, duplicates allowed).
fn decode_cuts(input: &[u8], cuts: &[usize], ctx: DecodeContext) -> Result<Decoded, DecodeError> {
    testing::decode_cuts(&MailDeliveryFormat, input, cuts, ctx).map(|d| (d.batches, d.bad))
}

fn decode(input: &str, ctx: DecodeContext) -> Result<Decoded, DecodeError> {
    decode_cuts(input.as_bytes(), &[], ctx)
}

fn decode_ok(input: &str) -> Vec<Row> {
    rows(&decode(input, DecodeContext::default()).unwrap().0)
}

fn decode_err(input: &str, ctx: DecodeContext) -> DecodeError {
    testing::decode_err(&MailDeliveryFormat, input.as_bytes(), ctx)
}

fn malformed(input: &str) -> (u64, String) {
    testing::malformed(&MailDeliveryFormat, "mail delivery XML", input.as_bytes())
}

const SEED_PAGE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<GetDeliveryLogResponse>
  <GetDeliveryLogResult>
    <LogCount>1</LogCount>
    <Log>2020-07-10 00:17:13 sent 250 a123.example.jp.1234567890123456 user@example.com allan@example.com 250_ok:__Message_81234567_accepted</Log>
  </GetDeliveryLogResult>
  <ResponseMetadata>
    <RequestId>647cd254-e0d1-44a9-af61-1d6d86ea6b77</RequestId>
  </ResponseMetadata>
</GetDeliveryLogResponse>
"#;

fn seed_row() -> Row {
    Row {
        delivered_at: micros("2020-07-10T00:17:13Z"),
        result: "sent".into(),
        status_code: 250,
        transaction_id: "a123.example.jp.1234567890123456".into(),
        sender: "user@example.com".into(),
        recipient: "allan@example.com".into(),
        detail: "250_ok:__Message_81234567_accepted".into(),
    }
}

#[test]
fn seed_example_decodes_to_its_row() {
    let (batches, bad) = decode(SEED_PAGE, DecodeContext::default()).unwrap();
    assert!(bad.is_empty());
    assert_eq!(batches.len(), 1);
    assert_eq!(rows(&batches), vec![seed_row()]);
}

#[test]
fn seed_example_decodes_the_same_cut_anywhere() {
    let whole = decode(SEED_PAGE, DecodeContext::default()).unwrap().0;
    let bytes = SEED_PAGE.as_bytes();
    for cut in 0..=bytes.len() {
        assert_eq!(
            decode_cuts(bytes, &[cut], DecodeContext::default()).unwrap().0,
            whole,
            "cut at {cut}"
        );
    }
    let every: Vec<usize> = (0..bytes.len()).collect();
    assert_eq!(decode_cuts(bytes, &every, DecodeContext::default()).unwrap().0, whole);
}

#[test]
fn schema_is_frozen() {
    let expected = vec![
        (
            "delivered_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        (
            "result",
            DataType::Dictionary(Box::new(DataType::Int8), Box::new(DataType::Utf8)),
            false,
        ),
        ("status_code", DataType::UInt16, false),
        ("transaction_id", DataType::Utf8, false),
        ("sender", DataType::Utf8, false),
        ("recipient", DataType::Utf8, false),
        ("detail", DataType::Utf8, false),
    ];
    let s = schema();
    let actual: Vec<_> = s
        .fields()
        .iter()
        .map(|f| (f.name().as_str(), f.data_type().clone(), f.is_nullable()))
        .collect();
    assert_eq!(actual, expected);
    assert!(s.metadata().is_empty());
}

#[test]
fn format_names_its_schema_time_column_and_decoder() {
    let format = MailDeliveryFormat::new();
    assert_eq!(format.schema(), schema());
    assert_eq!(format.time_column(), "delivered_at");
    assert!(format.schema().field_with_name(format.time_column()).is_ok());
    let mut d = format.decoder(&PayloadMeta::default(), DecodeContext::default());
    let mut out = Vec::new();
    d.decode(SEED_PAGE.as_bytes(), &mut out).unwrap();
    d.finish(&mut out).unwrap();
    assert_eq!(rows(&out), vec![seed_row()]);
}

#[test]
fn entities_non_ascii_and_unusual_addresses() {
    let lines = [
        "2025-09-11 23:59:59 faild 550 tx.1 o&apos;brien+news@example.com &quot;q&quot;@例え.jp \
         550_5.1.1_&lt;o&apos;brien@example.com&gt;:_user_unknown",
        "2025-09-11 00:00:00 retry 421 tx&amp;2 m&#252;ller@ex&#xE4;mple.de o'neil+x@example.com 421_&#x65E5;&#26412;",
        "2024-02-29 12:34:56 sent 250 tx.3 ユーザー@例え.jp a&amp;b@example.com 250_ok:_&lt;id&#64;host&gt;",
    ];
    let got = decode_ok(&page(&lines, 3));
    let row = |ts: &str, result: &str, status, tx: &str, from: &str, to: &str, detail: &str| Row {
        delivered_at: micros(ts),
        result: result.into(),
        status_code: status,
        transaction_id: tx.into(),
        sender: from.into(),
        recipient: to.into(),
        detail: detail.into(),
    };
    assert_eq!(
        got,
        vec![
            row(
                "2025-09-11T23:59:59Z",
                "faild",
                550,
                "tx.1",
                "o'brien+news@example.com",
                "\"q\"@例え.jp",
                "550_5.1.1_<o'brien@example.com>:_user_unknown"
            ),
            row(
                "2025-09-11T00:00:00Z",
                "retry",
                421,
                "tx&2",
                "müller@exämple.de",
                "o'neil+x@example.com",
                "421_日本"
            ),
            row(
                "2024-02-29T12:34:56Z",
                "sent",
                250,
                "tx.3",
                "ユーザー@例え.jp",
                "a&b@example.com",
                "250_ok:_<id@host>"
            ),
        ]
    );
}

#[test]
fn detail_is_the_rest_of_the_line_and_the_line_is_trimmed() {
    let p = page(
        &["\n      2020-07-10 00:17:13 sent 250 t a@b c@d 250 ok with spaces \n    "],
        1,
    );
    let got = decode_ok(&p);
    assert_eq!(got[0].detail, "250 ok with spaces");
    assert_eq!(got[0].recipient, "c@d");
}

#[test]
fn empty_page_yields_no_batch() {
    let (batches, bad) = decode(&page(&[], 0), DecodeContext::default()).unwrap();
    assert!(batches.is_empty());
    assert!(bad.is_empty());
    // The shortest form, as a server without pretty-printing writes it.
    let compact = "<GetDeliveryLogResponse><GetDeliveryLogResult><LogCount>0</LogCount>\
                   </GetDeliveryLogResult></GetDeliveryLogResponse>";
    assert!(decode(compact, DecodeContext::default()).unwrap().0.is_empty());
}

fn numbered_lines(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                "2025-09-11 10:{:02}:{:02} sent 250 tx.{i} from{i}@example.com to{i}@example.jp 250_ok",
                i / 60,
                i % 60
            )
        })
        .collect()
}

#[test]
fn batches_are_cut_at_batch_size() {
    let lines = numbered_lines(25);
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let p = page(&refs, 25);
    let (batches, _) = decode(&p, ctx(BadRecordPolicy::Fail, 10)).unwrap();
    let sizes: Vec<usize> = batches.iter().map(RecordBatch::num_rows).collect();
    assert_eq!(sizes, vec![10, 10, 5]);
    let got = rows(&batches);
    assert_eq!(got.len(), 25);
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.transaction_id, format!("tx.{i}"), "rows keep their order");
    }
    // Exactly batch_size rows: no empty batch at the end.
    let p = page(&refs[..20], 20);
    let sizes: Vec<usize> = decode(&p, ctx(BadRecordPolicy::Fail, 10))
        .unwrap()
        .0
        .iter()
        .map(RecordBatch::num_rows)
        .collect();
    assert_eq!(sizes, vec![10, 10]);
}

#[test]
fn batches_are_emitted_during_decode_not_only_at_finish() {
    let lines = numbered_lines(25);
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let p = page(&refs, 25);
    let mut d = MailDeliveryDecoder::new(ctx(BadRecordPolicy::Fail, 10));
    let mut out = Vec::new();
    d.decode(p.as_bytes(), &mut out).unwrap();
    assert_eq!(out.len(), 2);
    d.finish(&mut out).unwrap();
    assert_eq!(out.len(), 3);
}

const GOOD: &str = "2025-09-11 08:00:00 sent 250 tx.ok a@example.com b@example.com 250_ok";

/// Each kind of bad line, with the reason it must give.
fn bad_lines() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "2025-09-11 08:00:00 sent 250 tx a@example.com b@example.com",
            "expected 8 space-separated fields, found 7",
        ),
        ("garbage", "expected 8 space-separated fields, found 1"),
        (
            "2025-09-11 08:00:00 sent 25x tx a@b c@d 250_ok",
            "status `25x` is not a 3-digit number",
        ),
        (
            "2025-09-11 08:00:00 sent 2500 tx a@b c@d 250_ok",
            "status `2500` is not a 3-digit number",
        ),
        (
            "2025-09-11 08:00:00 delivered 250 tx a@b c@d 250_ok",
            "result `delivered` is not sent, retry or faild",
        ),
        (
            "2025-09-11 08:00:00 failed 550 tx a@b c@d 550_no",
            "result `failed` is not sent, retry or faild",
        ),
        (
            "2025/09/11 08:00:00 sent 250 tx a@b c@d 250_ok",
            "date `2025/09/11` is not YYYY-MM-DD",
        ),
        (
            "2025-02-29 08:00:00 sent 250 tx a@b c@d 250_ok",
            "date `2025-02-29` is not a valid day",
        ),
        (
            "2025-13-01 08:00:00 sent 250 tx a@b c@d 250_ok",
            "date `2025-13-01` is not a valid day",
        ),
        (
            "2025-09-11 24:00:00 sent 250 tx a@b c@d 250_ok",
            "time `24:00:00` is out of range",
        ),
        (
            "2025-09-11 23:59:60 sent 250 tx a@b c@d 250_ok",
            "time `23:59:60` is out of range",
        ),
        (
            "2025-09-11 8:00:00 sent 250 tx a@b c@d 250_ok",
            "time `8:00:00` is not hh:mm:ss",
        ),
        (
            "2025-09-11 08:00:00 sent 250  a@b c@d 250_ok",
            "transaction id is empty",
        ),
        (
            "2025-09-11 08:00:00 sent 250 tx a@b c@d 250_&nbsp;",
            "unknown entity `&nbsp;`",
        ),
        (
            "2025-09-11 08:00:00 sent 250 tx a@b c@d 250_a&b",
            "`&` does not start an entity reference: `&b`",
        ),
        (
            "2025-09-11 08:00:00 sent 250 tx a@b c@d 250_&#0;",
            "invalid character reference `&#0;`",
        ),
        (
            "2025-09-11 08:00:00 sent 250 tx a@b c@d 250_&#xD800;",
            "invalid character reference `&#xD800;`",
        ),
    ]
}

#[test]
fn each_bad_line_fails_with_its_line_number_and_reason() {
    for (bad, reason) in bad_lines() {
        let p = page(&[GOOD, GOOD, bad, GOOD], 4);
        match decode_err(&p, DecodeContext::default()) {
            DecodeError::BadRecord {
                line,
                reason: got,
                excerpt,
            } => {
                assert_eq!(line, 7, "{bad}");
                assert_eq!(got, reason, "{bad}");
                assert_eq!(excerpt, bad);
            }
            other => panic!("{bad}: expected BadRecord, got {other:?}"),
        }
    }
}

#[test]
fn invalid_utf8_is_a_bad_record() {
    let mut p = page(&[GOOD, "2025-09-11 08:00:00 sent 250 tx a@b XX 250_ok"], 2).into_bytes();
    let at = p.windows(2).position(|w| w == b"XX").unwrap();
    p[at] = 0xFF;
    p[at + 1] = 0xFE;
    let err = decode_cuts(&p, &[], DecodeContext::default()).unwrap_err();
    match err {
        DecodeError::BadRecord { line, reason, .. } => {
            assert_eq!(line, 6);
            assert_eq!(reason, "invalid UTF-8 at byte 36 of the line");
        }
        other => panic!("expected BadRecord, got {other:?}"),
    }
}

#[test]
fn bad_lines_are_skipped_and_reported_under_skip() {
    let cases = bad_lines();
    let mut lines = Vec::new();
    for (bad, _) in &cases {
        lines.push(GOOD);
        lines.push(*bad);
    }
    lines.push(GOOD);
    let p = page(&lines, lines.len());
    let (batches, bad) = decode(&p, ctx(BadRecordPolicy::Skip, 4)).unwrap();
    assert_eq!(rows(&batches).len(), cases.len() + 1, "every good row is still decoded");
    assert!(rows(&batches).iter().all(|r| r.transaction_id == "tx.ok"));
    assert_eq!(bad.len(), cases.len());
    for (i, (rec, (line, reason))) in bad.iter().zip(&cases).enumerate() {
        assert_eq!(rec.line, 5 + 2 * i as u64 + 1);
        assert_eq!(&rec.reason, reason);
        assert_eq!(&rec.raw, line);
        assert!(
            rec.unit.is_empty() && rec.payload.is_empty(),
            "the runner fills them in"
        );
    }
    // Cut byte by byte, the same rows and the same records.
    let cuts: Vec<usize> = (0..p.len()).collect();
    let (split_batches, split_bad) = decode_cuts(p.as_bytes(), &cuts, ctx(BadRecordPolicy::Skip, 4)).unwrap();
    assert_eq!(split_batches, batches);
    assert_eq!(split_bad, bad);
}

#[test]
fn take_bad_records_drains() {
    let p = page(&[GOOD, "bad line"], 2);
    let mut d = MailDeliveryDecoder::new(ctx(BadRecordPolicy::Skip, 100));
    let mut out = Vec::new();
    d.decode(p.as_bytes(), &mut out).unwrap();
    assert_eq!(d.take_bad_records().len(), 1);
    assert!(d.take_bad_records().is_empty());
    d.finish(&mut out).unwrap();
    assert_eq!(rows(&out).len(), 1);
}

#[test]
fn a_truncated_page_is_malformed_wherever_it_is_cut() {
    let lines = numbered_lines(3);
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let p = page(&refs, 3);
    let end_of_root = p.rfind("</GetDeliveryLogResponse>").unwrap();
    for cut in 1..end_of_root {
        let truncated = &p[..cut];
        for policy in [BadRecordPolicy::Fail, BadRecordPolicy::Skip] {
            match decode(truncated, ctx(policy, 16)) {
                Err(DecodeError::Malformed { .. }) => {}
                // A cut inside a line can make that line a bad record before the page ends.
                Err(DecodeError::BadRecord { .. }) if policy == BadRecordPolicy::Fail => {}
                other => panic!("cut at {cut} ({truncated:?}): expected Malformed, got {other:?}"),
            }
        }
    }
    let (line, reason) = malformed(&p[..p.find("<Log>").unwrap() + 20]);
    assert_eq!(line, 5);
    assert_eq!(
        reason,
        "page truncated: <Log> opened at line 5 is not closed (nor is the root element)"
    );
    let (line, reason) = malformed(&p[..end_of_root]);
    assert_eq!(line, 12);
    assert_eq!(
        reason,
        "page truncated: <GetDeliveryLogResponse> opened at line 2 is not closed"
    );
    let (_, reason) = malformed(&p[..end_of_root + 5]);
    assert_eq!(reason, "page truncated inside markup `</Get`");
    let (_, reason) = malformed("");
    assert_eq!(reason, "no root element: the page is empty or truncated");
}

#[test]
fn log_count_must_match_the_log_elements() {
    let (line, reason) = malformed(&page(&[GOOD, GOOD], 3));
    assert_eq!(reason, "<LogCount> says 3 but the page has 2 <Log> elements");
    assert_eq!(line, 12);
    let (_, reason) = malformed(&page(&[GOOD, GOOD], 1));
    assert_eq!(reason, "<LogCount> says 1 but the page has 2 <Log> elements");
    // Skipped lines count as lines the page has.
    let (batches, bad) = decode(&page(&[GOOD, "bad"], 2), ctx(BadRecordPolicy::Skip, 16)).unwrap();
    assert_eq!((rows(&batches).len(), bad.len()), (1, 1));
}

#[test]
fn log_count_must_be_present_once_and_numeric() {
    let no_count = page(&[GOOD], 1).replace("<LogCount>1</LogCount>", "");
    assert_eq!(malformed(&no_count).1, "no <LogCount> in <GetDeliveryLogResult>");
    let twice = page(&[GOOD], 1).replace("<LogCount>1</LogCount>", "<LogCount>1</LogCount><LogCount>1</LogCount>");
    assert_eq!(malformed(&twice).1, "a second <LogCount>");
    let text = page(&[GOOD], 1).replace("<LogCount>1</LogCount>", "<LogCount>one</LogCount>");
    assert_eq!(malformed(&text).1, "<LogCount> `one` is not a number");
    // Whitespace around the number and a LogCount after the lines are fine.
    let moved = page(&[GOOD], 1).replace("<LogCount>1</LogCount>\n", "").replace(
        "  </GetDeliveryLogResult>",
        "<LogCount>\n 1 \n</LogCount></GetDeliveryLogResult>",
    );
    assert_eq!(decode_ok(&moved).len(), 1);
}

#[test]
fn an_error_response_is_malformed_with_its_code_and_message() {
    let body = r#"<?xml version="1.0" encoding="UTF-8"?>
<ErrorResponse>
  <Error>
    <Type>Sender</Type>
    <Code>InvalidParameterValue</Code>
    <Message>EndDate must be within 24 hours &amp; after StartDate</Message>
  </Error>
  <RequestId>547cd254-e0d1-44a9-af61-1d6d86ea6b77</RequestId>
</ErrorResponse>
"#;
    let (line, reason) = malformed(body);
    assert_eq!(line, 9);
    assert_eq!(
        reason,
        "the service answered an ErrorResponse instead of data: Code `InvalidParameterValue`, \
         Message `EndDate must be within 24 hours & after StartDate`, \
         RequestId `547cd254-e0d1-44a9-af61-1d6d86ea6b77`"
    );
    let cut = &body[..body.find("<RequestId>").unwrap()];
    let (_, reason) = malformed(cut);
    assert!(
        reason.contains("Code `InvalidParameterValue`") && reason.ends_with("RequestId (none) (truncated)"),
        "{reason}"
    );
}

#[test]
fn other_roots_and_broken_nesting_are_malformed() {
    assert_eq!(
        malformed("<html><body>502 Bad Gateway</body></html>"),
        (
            1,
            "root element is <html>, expected <GetDeliveryLogResponse>".to_string()
        )
    );
    let mismatched = page(&[GOOD], 1).replace("</GetDeliveryLogResult>", "</GetDeliveryLogResults>");
    assert_eq!(
        malformed(&mismatched),
        (
            6,
            "end tag </GetDeliveryLogResults> does not match <GetDeliveryLogResult> opened at line 3".to_string()
        )
    );
    let after = format!("{}<GetDeliveryLogResponse/>", page(&[], 0));
    assert_eq!(
        malformed(&after).1,
        "element <GetDeliveryLogResponse> after the root element"
    );
    let text_after = format!("{}trailing", page(&[], 0));
    assert_eq!(malformed(&text_after), (10, "text after the root element".to_string()));
    assert_eq!(malformed("oops").1, "text before the root element");
    let nested = page(&["2025-09-11 08:00:00 sent 250 tx a@b c@d <b>250</b>"], 1);
    assert_eq!(
        malformed(&nested),
        (5, "unexpected element <b> inside <Log>".to_string())
    );
    assert_eq!(
        malformed(&page(&[], 0).replace("<LogCount>", "<!ELEMENT x><LogCount>")).1,
        "unknown markup `<!E`"
    );
    let stray_end = format!("</x>{}", page(&[], 0));
    assert_eq!(malformed(&stray_end).1, "end tag </x> without a start tag");
}

#[test]
fn xml_features_a_server_may_use_are_accepted() {
    let p = format!(
        "\u{FEFF}<?xml version=\"1.0\"?>\n<!DOCTYPE GetDeliveryLogResponse>\n<!-- generated -->\n\
         <ns:GetDeliveryLogResponse xmlns:ns=\"urn:x\" attr='a>b'>\r\n\
         <ns:GetDeliveryLogResult><ns:LogCount>4</ns:LogCount>\
         <ns:Log>{GOOD}</ns:Log>\
         <Log lang=\"en\">{GOOD}</Log>\
         <Log><!-- c -->{GOOD}</Log>\
         <Log><![CDATA[2025-09-11 08:00:00 sent 250 tx.ok a@example.com b@example.com <250_&_ok>]]></Log>\
         <FutureField kind=\"x\"><Nested>ignored &unknown;</Nested><Empty/></FutureField>\
         <NextToken>rO0ABXNy\nADljb20=</NextToken>\
         </ns:GetDeliveryLogResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata>\
         </ns:GetDeliveryLogResponse>\n<!-- bye -->\n"
    );
    let got = decode_ok(&p);
    assert_eq!(got.len(), 4);
    assert!(got[..3].iter().all(|r| r.detail == "250_ok"));
    assert_eq!(got[3].detail, "<250_&_ok>");
    let every: Vec<usize> = (0..p.len()).collect();
    assert_eq!(
        rows(&decode_cuts(p.as_bytes(), &every, DecodeContext::default()).unwrap().0),
        got
    );
}

#[test]
fn a_self_closing_log_is_an_empty_bad_line() {
    let p = page(&[GOOD], 2).replace("  </GetDeliveryLogResult>", "<Log/></GetDeliveryLogResult>");
    let (batches, bad) = decode(&p, ctx(BadRecordPolicy::Skip, 16)).unwrap();
    assert_eq!(rows(&batches).len(), 1);
    assert_eq!(bad[0].reason, "expected 8 space-separated fields, found 0");
}

#[test]
fn the_decoder_refuses_input_after_finish_or_an_error() {
    let mut d = MailDeliveryDecoder::new(DecodeContext::default());
    let mut out = Vec::new();
    d.decode(SEED_PAGE.as_bytes(), &mut out).unwrap();
    d.finish(&mut out).unwrap();
    assert!(matches!(
        d.decode(b"<x/>", &mut out),
        Err(DecodeError::Malformed { .. })
    ));
    assert!(matches!(d.finish(&mut out), Err(DecodeError::Malformed { .. })));
    let mut d = MailDeliveryDecoder::new(DecodeContext::default());
    assert!(d.decode(b"<html>", &mut out).is_err());
    assert!(d.decode(b"</html>", &mut out).is_err());
}

#[test]
fn dates_convert_like_chrono() {
    let samples = [
        "1970-01-01",
        "1969-12-31",
        "2000-02-29",
        "2020-07-10",
        "2100-03-01",
        "0001-01-01",
        "9999-12-31",
    ];
    for s in samples {
        let ours = parse_date(s.as_bytes()).unwrap();
        let theirs = NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .unwrap()
            .signed_duration_since(NaiveDate::default());
        assert_eq!(ours, theirs.num_days(), "{s}");
    }
    assert!(parse_date(b"1900-02-29").is_err(), "1900 is not a leap year");
    assert!(parse_date(b"2025-04-31").is_err());
    assert!(parse_date(b"2025-00-10").is_err());
    assert!(parse_date(b"2025-01-00").is_err());
    assert_eq!(parse_time(b"23:59:59").unwrap(), 86_399);
    assert!(parse_time(b"12:60:00").is_err());
}

#[test]
fn an_endless_element_is_malformed_the_same_whatever_the_cuts() {
    let huge = format!(
        "2025-09-11 08:00:00 sent 250 tx a@b c@d {}",
        "x".repeat(MAX_ELEMENT_TEXT)
    );
    let p = page(&[GOOD, &huge], 2);
    let whole = decode(&p, DecodeContext::default()).unwrap_err();
    let cuts: Vec<usize> = (0..p.len()).step_by(4093).collect();
    let split = decode_cuts(p.as_bytes(), &cuts, DecodeContext::default()).unwrap_err();
    assert_eq!(whole.to_string(), split.to_string());
    assert_eq!(
        whole.to_string(),
        "malformed mail delivery XML near line 6: <Log> opened at line 6 is longer than 1 MiB"
    );
}

// ---- property: the cuts never matter ----

/// A field value with the characters the vendor's data has: `+`, `'`, quotes, markup
/// characters that must be escaped, and multi-byte UTF-8 of every length.
fn text_field(min: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            6 => proptest::char::range('a', 'z'),
            2 => proptest::sample::select(vec!['0', '7', '.', '@', '_', '-', ':']),
            2 => proptest::sample::select(vec!['+', '\'', '"', '&', '<', '>']),
            2 => proptest::sample::select(vec!['é', 'ü', 'ß', '日', '本', 'ア', '😀', '𝄞']),
        ],
        min..12,
    )
    .prop_map(|v| v.into_iter().collect())
}

/// Escapes `s` as XML text, choosing among the equivalent spellings with `pick`.
fn escape(s: &str, pick: &mut impl FnMut(u32) -> u32) -> String {
    let mut out = String::new();
    for c in s.chars() {
        let named = match c {
            '&' => Some("&amp;"),
            '<' => Some("&lt;"),
            '>' => Some("&gt;"),
            '"' => Some("&quot;"),
            '\'' => Some("&apos;"),
            _ => None,
        };
        let must = matches!(c, '&' | '<');
        match pick(if must || !c.is_ascii() || named.is_some() { 4 } else { 8 }) {
            0 if named.is_some() => out.push_str(named.unwrap_or_default()),
            1 => out.push_str(&format!("&#{};", c as u32)),
            2 => out.push_str(&format!("&#x{:X};", c as u32)),
            _ if must => out.push_str(named.unwrap_or_default()),
            _ => out.push(c),
        }
    }
    out
}

#[derive(Clone, Debug)]
struct GenLine {
    /// Seconds since the epoch.
    at: i64,
    result: usize,
    status: u16,
    txid: String,
    sender: String,
    recipient: String,
    detail: String,
    /// Replaces the status with something invalid.
    bad: bool,
}

fn gen_line() -> impl Strategy<Value = GenLine> {
    (
        0i64..4_102_444_800,
        0usize..3,
        200u16..900,
        "[a-z0-9.]{1,24}",
        (text_field(1), text_field(1)).prop_map(|(a, b)| format!("{a}@{b}")),
        (text_field(1), text_field(1)).prop_map(|(a, b)| format!("{a}@{b}")),
        text_field(1),
        proptest::bool::weighted(0.1),
    )
        .prop_map(|(at, result, status, txid, sender, recipient, detail, bad)| GenLine {
            at,
            result,
            status,
            txid,
            sender,
            recipient,
            detail,
            bad,
        })
}

fn render(lines: &[GenLine], seed: u64) -> (String, Vec<Row>) {
    let mut state = seed | 1;
    let mut pick = move |n: u32| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % u64::from(n)) as u32
    };
    let gaps = ["", "\n", "\n    ", "\r\n\t", " <!-- note --> "];
    let mut p = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<GetDeliveryLogResponse>");
    p.push_str(&format!(
        "<GetDeliveryLogResult>{}<LogCount>{}</LogCount>",
        gaps[pick(5) as usize],
        lines.len()
    ));
    let mut expected = Vec::new();
    for l in lines {
        let when = DateTime::<Utc>::from_timestamp(l.at, 0).unwrap();
        let status = if l.bad { "2x5".to_string() } else { l.status.to_string() };
        let text = format!(
            "{} {} {status} {} {} {} {}",
            when.format("%Y-%m-%d %H:%M:%S"),
            RESULTS[l.result],
            l.txid,
            escape(&l.sender, &mut pick),
            escape(&l.recipient, &mut pick),
            escape(&l.detail, &mut pick)
        );
        p.push_str(gaps[pick(5) as usize]);
        p.push_str(&format!("<Log>{text}</Log>"));
        if !l.bad {
            expected.push(Row {
                delivered_at: l.at * 1_000_000,
                result: RESULTS[l.result].to_string(),
                status_code: l.status,
                transaction_id: l.txid.clone(),
                sender: l.sender.clone(),
                recipient: l.recipient.clone(),
                detail: l.detail.clone(),
            });
        }
    }
    p.push_str("\n<NextToken>abc\ndef</NextToken></GetDeliveryLogResult>\n");
    p.push_str("<ResponseMetadata><RequestId>r-1</RequestId></ResponseMetadata></GetDeliveryLogResponse>\n");
    (p, expected)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_cuts_give_the_same_batches(
        lines in proptest::collection::vec(gen_line(), 0..40),
        seed in any::<u64>(),
        batch_size in 1usize..9,
        cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..30),
    ) {
        let (p, expected) = render(&lines, seed);
        let bytes = p.as_bytes();
        let ctx = ctx(BadRecordPolicy::Skip, batch_size);
        let (whole, whole_bad) = decode_cuts(bytes, &[], ctx).unwrap();
        prop_assert_eq!(rows(&whole), expected);
        prop_assert_eq!(whole_bad.len(), lines.iter().filter(|l| l.bad).count());
        prop_assert!(whole.iter().all(|b| b.num_rows() > 0 && b.num_rows() <= batch_size));

        let cuts: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        let (split, split_bad) = decode_cuts(bytes, &cuts, ctx).unwrap();
        prop_assert_eq!(&split, &whole);
        prop_assert_eq!(&split_bad, &whole_bad);

        // The concatenation is the same as one batch of everything.
        if !whole.is_empty() {
            let all = arrow_select::concat::concat_batches(&schema(), &split).unwrap();
            let (one, _) = decode_cuts(bytes, &cuts, DecodeContext { policy: BadRecordPolicy::Skip, batch_size: 1 << 20, ..DecodeContext::default() }).unwrap();
            prop_assert_eq!(one.len(), 1);
            prop_assert_eq!(&all, &one[0]);
        }
    }

    /// Broken pages too: whatever the damage, the cuts change neither the rows, nor the skipped
    /// records, nor the error.
    #[test]
    fn damaged_pages_decode_the_same_whatever_the_cuts(
        lines in proptest::collection::vec(gen_line(), 1..8),
        seed in any::<u64>(),
        at in any::<proptest::sample::Index>(),
        damage in prop_oneof![
            any::<u8>().prop_map(|b| vec![b]),
            proptest::sample::select(vec!["<", ">", "&", ";", "/", " ", "\n", "</Log>", "<Log>", "<!--", "-->",
                "<![CDATA[", "]]>", "&amp;", "&#", "\u{FEFF}", "\u{E9}", "<LogCount>1</LogCount>", "<x/>"])
                .prop_map(|s| s.as_bytes().to_vec()),
        ],
        delete in 0usize..6,
        skip in any::<bool>(),
        cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 1..20),
    ) {
        let (p, _) = render(&lines, seed);
        let mut bytes = p.into_bytes();
        let at = at.index(bytes.len());
        let delete = delete.min(bytes.len() - at);
        bytes.splice(at..at + delete, damage);
        let policy = if skip { BadRecordPolicy::Skip } else { BadRecordPolicy::Fail };
        let ctx = ctx(policy, 3);
        let whole = decode_cuts(&bytes, &[], ctx);
        let cuts: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        let split = decode_cuts(&bytes, &cuts, ctx);
        match (whole, split) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string()),
            (a, b) => prop_assert!(false, "whole: {:?}\nsplit: {:?}", a, b),
        }
    }

    #[test]
    fn any_prefix_of_a_page_is_rejected(
        lines in proptest::collection::vec(gen_line(), 1..10),
        seed in any::<u64>(),
        cut in any::<proptest::sample::Index>(),
    ) {
        let (p, _) = render(&lines, seed);
        let end = p.rfind("</GetDeliveryLogResponse>").unwrap();
        let prefix = &p.as_bytes()[..cut.index(end)];
        let result = decode_cuts(prefix, &[prefix.len() / 2], ctx(BadRecordPolicy::Skip, 4));
        prop_assert!(matches!(result, Err(DecodeError::Malformed { .. })), "{:?}", result);
        let whole = decode_cuts(prefix, &[], ctx(BadRecordPolicy::Skip, 4));
        prop_assert_eq!(whole.unwrap_err().to_string(), result.unwrap_err().to_string());
    }
}

#[test]
fn a_doctype_never_expands_reads_or_fetches_an_entity() {
    for system in ["file:///etc/passwd", "http://127.0.0.1:9/evil.dtd"] {
        // An internal subset that declares an external entity: the page is refused.
        let p = page(&[GOOD], 1).replacen(
            "<GetDeliveryLogResponse>",
            &format!("<!DOCTYPE x [<!ENTITY e SYSTEM \"{system}\">]>\n<GetDeliveryLogResponse>"),
            1,
        );
        assert_eq!(
            malformed(&p),
            (
                2,
                "a DOCTYPE with an internal DTD subset (entity declarations) is not accepted: no entity is \
                 ever expanded, read or fetched"
                    .to_string()
            ),
            "{system}"
        );
        // An external DTD is skipped unread; a reference to an entity it might declare is left
        // unexpanded and makes its line a bad record, reported with the entity's name.
        let p = page(&[GOOD, "2025-09-11 08:00:00 sent 250 tx a@b c@d &e;"], 2).replacen(
            "<GetDeliveryLogResponse>",
            &format!("<!DOCTYPE GetDeliveryLogResponse SYSTEM \"{system}\">\n<GetDeliveryLogResponse>"),
            1,
        );
        let (batches, bad) = decode(&p, ctx(BadRecordPolicy::Skip, 16)).unwrap();
        assert_eq!(rows(&batches).len(), 1);
        assert_eq!((bad[0].line, bad[0].reason.as_str()), (7, "unknown entity `&e;`"));
        match decode_err(&p, DecodeContext::default()) {
            DecodeError::BadRecord { line, reason, .. } => {
                assert_eq!((line, reason.as_str()), (7, "unknown entity `&e;`"));
            }
            other => panic!("expected BadRecord, got {other:?}"),
        }
    }
}

#[test]
fn nesting_deeper_than_the_cap_is_malformed_whatever_the_cuts() {
    let nested = |n: usize| {
        page(&[GOOD], 1).replacen(
            "  <ResponseMetadata>",
            &format!("{}{}  <ResponseMetadata>", "<a>".repeat(n), "</a>".repeat(n)),
            1,
        )
    };
    // Inside the root element: one level already.
    assert_eq!(decode_ok(&nested(MAX_DEPTH - 1)).len(), 1);
    let reason = format!("element <a> is nested more than {MAX_DEPTH} elements deep");
    assert_eq!(malformed(&nested(MAX_DEPTH)), (7, reason.clone()));
    // 10,000 levels, and 10,000 start tags that are never closed: refused at the cap, on the
    // same line, with the same message, without growing a stack per level.
    assert_eq!(malformed(&nested(10_000)), (7, reason));
    let unclosed = format!("<GetDeliveryLogResponse><GetDeliveryLogResult>{}", "<b>".repeat(10_000));
    let (line, got) = malformed(&unclosed);
    assert_eq!(
        (line, got),
        (1, format!("element <b> is nested more than {MAX_DEPTH} elements deep"))
    );
}
