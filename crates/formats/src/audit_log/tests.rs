//! The decoder is checked against exports as the vendor writes them (Japanese and English
//! headers, a byte-order mark, CRLF, quoted fields with commas, quotes and line breaks), every
//! header mistake, the UTC window, every kind of bad record and truncation, and, by property,
//! against the rendering of random records: whatever the chunks, the same rows come out.

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use chrono::DateTime;
use etl_core::BadRecordPolicy;
use proptest::prelude::*;

use super::*;
use crate::testing::{ctx, decode_cuts_meta, micros};

/// One decoded row, every column as a plain value.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Row {
    operation_id: i64,
    operated_at: i64,
    account_id: Option<String>,
    operator: Option<String>,
    tool: Option<String>,
    operation: Option<String>,
    target_type: Option<String>,
    target_id: Option<i64>,
    target_name: Option<String>,
    changed_item: Option<String>,
    before_value: Option<String>,
    after_value: Option<String>,
    affected_count: i64,
    ip_address: Option<String>,
}

fn rows(batches: &[RecordBatch]) -> Vec<Row> {
    let mut out = Vec::new();
    for b in batches {
        assert_eq!(b.schema(), schema(), "every batch has the documented schema");
        let int = |c: usize| b.column(c).as_primitive::<Int64Type>();
        let ts = b.column(1).as_primitive::<TimestampMicrosecondType>();
        let text = |c: usize, r: usize| {
            let a = b.column(c).as_string::<i32>();
            a.is_valid(r).then(|| a.value(r).to_string())
        };
        let dict = |c: usize, r: usize| {
            let d = b.column(c).as_dictionary::<Int32Type>();
            let values = d.values().as_string::<i32>();
            d.is_valid(r)
                .then(|| values.value(d.keys().value(r) as usize).to_string())
        };
        for c in [0, 1, 12] {
            assert_eq!(b.column(c).null_count(), 0);
        }
        for r in 0..b.num_rows() {
            out.push(Row {
                operation_id: int(0).value(r),
                operated_at: ts.value(r),
                account_id: text(2, r),
                operator: text(3, r),
                tool: dict(4, r),
                operation: dict(5, r),
                target_type: dict(6, r),
                target_id: int(7).is_valid(r).then(|| int(7).value(r)),
                target_name: text(8, r),
                changed_item: text(9, r),
                before_value: text(10, r),
                after_value: text(11, r),
                affected_count: int(12).value(r),
                ip_address: text(13, r),
            });
        }
    }
    out
}

const NAME: &str = "auditlog-20251117-20251118.csv";

fn meta() -> PayloadMeta {
    PayloadMeta {
        name: NAME.into(),
        ..PayloadMeta::default()
    }
}

/// A payload carrying the unit's UTC window.
fn meta_window(start: &str, end: &str) -> PayloadMeta {
    let mut m = meta();
    m.labels.insert(WINDOW_START_LABEL.into(), micros(start).to_string());
    m.labels.insert(WINDOW_END_LABEL.into(), micros(end).to_string());
    m
}

#[derive(Debug)]
struct Decoded {
    batches: Vec<RecordBatch>,
    bad: Vec<BadRecord>,
    unknown: Vec<(String, u64)>,
}

/// Decodes `input` whole, and checks that one-byte chunks and a cut at every 7th byte give the
/// same result.
fn decode_with(
    format: &AuditLogFormat,
    meta: &PayloadMeta,
    input: &[u8],
    ctx: DecodeContext,
) -> Result<Decoded, DecodeError> {
    let run = |cuts: &[usize]| {
        decode_cuts_meta(format, meta, input, cuts, ctx).map(|d| Decoded {
            batches: d.batches,
            bad: d.bad,
            unknown: d.unknown,
        })
    };
    let whole = run(&[]);
    let every: Vec<usize> = (0..input.len()).collect();
    let sevenths: Vec<usize> = (0..input.len()).step_by(7).collect();
    for other in [run(&every), run(&sevenths)] {
        match (&whole, &other) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a.batches, b.batches);
                assert_eq!(a.bad, b.bad);
                assert_eq!(a.unknown, b.unknown);
            }
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
            (a, b) => panic!("whole: {a:?}\nsplit: {b:?}"),
        }
    }
    whole
}

fn decode(input: &str, ctx: DecodeContext) -> Result<Decoded, DecodeError> {
    decode_with(&AuditLogFormat::default(), &meta(), input.as_bytes(), ctx)
}

fn decode_ok(input: &str) -> Vec<Row> {
    let d = decode(input, DecodeContext::default()).unwrap();
    assert!(d.bad.is_empty(), "{:?}", d.bad);
    rows(&d.batches)
}

const JA_HEADER: &str = "操作ID,操作日時,アカウントID,操作者,利用ツール,操作種別,対象種別,対象ID,対象名,変更項目,変更前,変更後,影響件数,IPアドレス";
const EN_HEADER: &str = "Operation ID,Operation Date,Account ID,Operator,Tool,Operation,Target Type,Target ID,Target Name,Changed Item,Before,After,Affected Count,IP Address";

/// The records of an export as the vendor writes them (JST offsets, quoted fields only where
/// needed, one record with line breaks of both kinds inside quotes), without line endings.
const RECORDS: [&str; 4] = [
    "1001,2025-11-17T09:01:08+09:00,1234-567-890,山田 太郎,WEB,SET,CAMPAIGN,55501,\"春のキャンペーン, 2025\",日予算,\"1,000\",\"2,000\",1,203.0.113.5",
    "1002,2025-11-17T09:05:00.250+09:00,1234-567-890,api-user,API,ADD,KEYWORD,,,,,,12,2001:db8::1",
    "1003,2025-11-17T10:00:00Z,1234-567-890,\"Suzuki \"\"Hana\"\"\",EDITOR,REMOVE,AD,77,\"広告\r\n改行あり\",説明文,\"旧い説明\n二行目\",\"\",3,198.51.100.7",
    "1004,2025-11-17T23:59:59.999999+09:00,1234-567-890,山田 太郎,WEB,LOGIN,ACCOUNT,,,,,,0,203.0.113.5",
];

/// [`RECORDS`], each ended by `eol`.
fn records(eol: &str) -> String {
    RECORDS.iter().map(|r| format!("{r}{eol}")).collect()
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

fn expected_rows() -> Vec<Row> {
    let base = Row {
        operation_id: 1001,
        operated_at: micros("2025-11-17T00:01:08Z"),
        account_id: s("1234-567-890"),
        operator: s("山田 太郎"),
        tool: s("WEB"),
        operation: s("SET"),
        target_type: s("CAMPAIGN"),
        target_id: Some(55501),
        target_name: s("春のキャンペーン, 2025"),
        changed_item: s("日予算"),
        before_value: s("1,000"),
        after_value: s("2,000"),
        affected_count: 1,
        ip_address: s("203.0.113.5"),
    };
    let empty = Row {
        target_id: None,
        target_name: None,
        changed_item: None,
        before_value: None,
        after_value: None,
        ..base.clone()
    };
    vec![
        base.clone(),
        Row {
            operation_id: 1002,
            operated_at: micros("2025-11-17T00:05:00.25Z"),
            operator: s("api-user"),
            tool: s("API"),
            operation: s("ADD"),
            target_type: s("KEYWORD"),
            affected_count: 12,
            ip_address: s("2001:db8::1"),
            ..empty.clone()
        },
        Row {
            operation_id: 1003,
            operated_at: micros("2025-11-17T10:00:00Z"),
            operator: s("Suzuki \"Hana\""),
            tool: s("EDITOR"),
            operation: s("REMOVE"),
            target_type: s("AD"),
            target_id: Some(77),
            target_name: s("広告\r\n改行あり"),
            changed_item: s("説明文"),
            before_value: s("旧い説明\n二行目"),
            after_value: None,
            affected_count: 3,
            ip_address: s("198.51.100.7"),
            ..base.clone()
        },
        Row {
            operation_id: 1004,
            operated_at: micros("2025-11-17T14:59:59.999999Z"),
            operation: s("LOGIN"),
            target_type: s("ACCOUNT"),
            affected_count: 0,
            ..empty
        },
    ]
}

fn ja_file() -> String {
    format!("\u{FEFF}{JA_HEADER}\r\n{}", records("\r\n"))
}

#[test]
fn a_japanese_export_decodes_to_typed_utc_columns() {
    let d = decode(&ja_file(), DecodeContext::default()).unwrap();
    assert!(d.bad.is_empty());
    assert!(d.unknown.is_empty());
    assert_eq!(d.batches.len(), 1);
    assert_eq!(rows(&d.batches), expected_rows());
    // The dictionaries hold the batch's values in order of first appearance.
    let ops = d.batches[0].column(5).as_dictionary::<Int32Type>();
    let values: Vec<&str> = ops.values().as_string::<i32>().iter().flatten().collect();
    assert_eq!(values, ["SET", "ADD", "REMOVE", "LOGIN"]);
}

#[test]
fn an_english_export_without_bom_or_crlf_decodes_the_same() {
    let file = format!("{EN_HEADER}\n{}", records("\n"));
    assert_eq!(decode_ok(&file), expected_rows());
    // The last record may lack its line ending.
    let file = format!("\u{FEFF}{EN_HEADER}\r\n{}", RECORDS.join("\r\n"));
    assert_eq!(decode_ok(&file), expected_rows());
}

#[test]
fn columns_are_found_by_header_name_in_any_order_and_spelling() {
    // The header and every record reversed; names padded, in the other case, full-width, mixed.
    let header: Vec<&str> = JA_HEADER.split(',').rev().collect();
    let mut header = header.join(",");
    header = header
        .replace("操作ID", " operation id ")
        .replace("IPアドレス", "ＩＰアドレス");
    let reversed: Vec<String> = {
        let rows = expected_rows();
        rows.iter()
            .map(|r| {
                let opt = |v: &Option<String>| match v {
                    None => String::new(),
                    Some(v) => format!("\"{}\"", v.replace('"', "\"\"")),
                };
                let utc = DateTime::from_timestamp_micros(r.operated_at).unwrap().to_rfc3339();
                let fields = [
                    r.operation_id.to_string(),
                    utc,
                    opt(&r.account_id),
                    opt(&r.operator),
                    opt(&r.tool),
                    opt(&r.operation),
                    opt(&r.target_type),
                    r.target_id.map_or(String::new(), |v| v.to_string()),
                    opt(&r.target_name),
                    opt(&r.changed_item),
                    opt(&r.before_value),
                    opt(&r.after_value),
                    r.affected_count.to_string(),
                    opt(&r.ip_address),
                ];
                fields.into_iter().rev().collect::<Vec<_>>().join(",")
            })
            .collect()
    };
    let file = format!("{header}\r\n{}\r\n", reversed.join("\r\n"));
    assert_eq!(decode_ok(&file), expected_rows());
}

#[test]
fn a_header_only_export_has_no_rows() {
    for file in [format!("\u{FEFF}{JA_HEADER}\r\n"), EN_HEADER.to_string()] {
        let d = decode(&file, DecodeContext::default()).unwrap();
        assert!(d.batches.is_empty());
    }
}

/// The `Malformed` error of `file`, checked to be the same byte by byte.
fn malformed(file: &str) -> (u64, String) {
    match decode(file, DecodeContext::default()).unwrap_err() {
        DecodeError::Malformed { what, line, reason } => {
            assert_eq!(what, "audit log CSV");
            (line, reason)
        }
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[test]
fn a_header_that_does_not_fit_is_malformed_and_says_why() {
    let missing = JA_HEADER.replace(",IPアドレス", "").replace("操作日時,", "");
    let (line, reason) = malformed(&format!("{missing}\r\n"));
    assert_eq!(line, 1);
    assert_eq!(
        reason,
        format!(
            "{NAME}: the header row has no column for operated_at (`操作日時` or `Operation Date`), \
             ip_address (`IPアドレス` or `IP Address`); it reads `{missing}`"
        )
    );

    let twice = JA_HEADER.replace("対象名", "Operation ID");
    let (_, reason) = malformed(&format!("\u{FEFF}{twice}\r\n{}", records("\r\n")));
    assert_eq!(
        reason,
        format!(
            "{NAME}: the header row names column operation_id twice: `操作ID` (field 1) and `Operation ID` (field 9)"
        )
    );

    // A file that is not an export at all (an error page) is malformed, not a bad record.
    let (_, reason) = malformed("<html><body>Service Unavailable</body></html>\n");
    assert!(
        reason.starts_with(&format!("{NAME}: the header row has no column for operation_id")),
        "{reason}"
    );

    let file = format!("{JA_HEADER},メモ\r\n");
    let strict = DecodeContext {
        unknown_fields: UnknownFieldPolicy::Fail,
        ..DecodeContext::default()
    };
    match decode(&file, strict).unwrap_err() {
        DecodeError::Malformed { reason, .. } => assert_eq!(
            reason,
            format!(
                "{NAME}: the header row has an unknown column `メモ` (field 15), refused by on_unknown_field: fail"
            )
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_unknown_column_is_skipped_and_counted_under_ignore() {
    let mut file = format!("{JA_HEADER},メモ\r\n");
    for record in RECORDS {
        file.push_str(&format!("{record},\"memo, with comma\"\r\n"));
    }
    let d = decode(&file, DecodeContext::default()).unwrap();
    assert_eq!(rows(&d.batches), expected_rows());
    assert_eq!(d.unknown, [("メモ".to_string(), 4)]);
}

#[test]
fn a_file_without_a_header_is_malformed() {
    for file in ["", "\u{FEFF}", "\r\n\r\n"] {
        let (line, reason) = malformed(file);
        assert_eq!(
            reason,
            format!("{NAME}: the file has no header row (empty or truncated)")
        );
        assert!(line >= 1);
    }
    // A header the splitter refuses is fatal too, even under skip: not a bad record.
    let skip = ctx(BadRecordPolicy::Skip, 10);
    match decode_with(&AuditLogFormat::default(), &meta(), b"\xFF\xFE\x00\x00", skip).unwrap_err() {
        DecodeError::Malformed { reason, .. } => assert_eq!(
            reason,
            format!("{NAME}: the header row is unusable: invalid UTF-8 at byte 0 of the record")
        ),
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[test]
fn a_truncated_download_is_malformed_never_short() {
    let file = ja_file();
    // Cut inside the quoted field with a line break (record 4 starts on line 4).
    let cut = file.find("改行あり").unwrap();
    let (line, reason) = malformed(&file[..cut]);
    assert_eq!(line, 4);
    assert_eq!(
        reason,
        format!("{NAME}: the file ends inside a quoted field that opened on line 4 (truncated?)")
    );
    // Cut between two fields of the last record.
    let cut = file.find("LOGIN,").unwrap();
    let (line, reason) = malformed(&file[..cut]);
    assert_eq!(line, 7);
    assert_eq!(
        reason,
        format!("{NAME}: the file ends inside record 5, after 6 of its 14 fields (truncated?)")
    );
    // Even under skip: a truncated file is not a bad record.
    let err = decode(&file[..cut], ctx(BadRecordPolicy::Skip, 10)).unwrap_err();
    assert!(matches!(err, DecodeError::Malformed { .. }));
}

#[test]
fn the_window_keeps_one_utc_day_of_a_two_local_date_export() {
    // Local dates 11-17 and 11-18 (+09:00) for the UTC day 11-17.
    let header = JA_HEADER;
    let record = |id: u32, at: &str| format!("{id},{at},acc,op,WEB,SET,AD,1,n,i,b,a,1,192.0.2.1\r\n");
    let file = [
        format!("\u{FEFF}{header}\r\n"),
        record(1, "2025-11-17T00:00:00+09:00"),
        record(2, "2025-11-17T08:59:59.999999+09:00"),
        record(3, "2025-11-17T09:00:00+09:00"),
        record(4, "2025-11-18T08:59:59.999999+09:00"),
        record(5, "2025-11-18T09:00:00+09:00"),
        // Outside the window, a bad field is the other unit's business.
        "x,2025-11-18T23:59:59+09:00,acc,op,WEB,SET,AD,oops,n,i,b,a,?,192.0.2.1\r\n".to_string(),
    ]
    .concat();
    let meta = meta_window("2025-11-17T00:00:00Z", "2025-11-18T00:00:00Z");
    let d = decode_with(
        &AuditLogFormat::default(),
        &meta,
        file.as_bytes(),
        DecodeContext::default(),
    )
    .unwrap();
    assert!(d.bad.is_empty());
    let got: Vec<(i64, i64)> = rows(&d.batches)
        .iter()
        .map(|r| (r.operation_id, r.operated_at))
        .collect();
    assert_eq!(
        got,
        [
            (3, micros("2025-11-17T00:00:00Z")),
            (4, micros("2025-11-17T23:59:59.999999Z"))
        ]
    );
    let mut decoder = AuditLogDecoder::new(&meta, AuditLogOptions::default(), DecodeContext::default());
    let mut out = Vec::new();
    decoder.decode(file.as_bytes(), &mut out).unwrap();
    decoder.finish(&mut out).unwrap();
    assert_eq!(decoder.rows_outside_window(), 4);

    // One bound alone keeps everything on the other side.
    let mut only_start = meta.clone();
    only_start.labels.remove(WINDOW_END_LABEL);
    let file = file
        .replace("x,2025-11-18T23", "6,2025-11-18T23")
        .replace(",oops,", ",,")
        .replace(",?,", ",0,");
    let d = decode_with(
        &AuditLogFormat::default(),
        &only_start,
        file.as_bytes(),
        DecodeContext::default(),
    )
    .unwrap();
    let ids: Vec<i64> = rows(&d.batches).iter().map(|r| r.operation_id).collect();
    assert_eq!(ids, [3, 4, 5, 6]);
}

#[test]
fn a_window_label_that_is_not_a_number_fails_every_call() {
    let mut meta = meta();
    meta.labels.insert(WINDOW_START_LABEL.into(), "yesterday".into());
    let err = decode_with(
        &AuditLogFormat::default(),
        &meta,
        ja_file().as_bytes(),
        DecodeContext::default(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "malformed audit log CSV near line 1: {NAME}: payload label window_start_us `yesterday` is not an \
             integer (epoch microseconds)"
        )
    );
}

#[test]
fn the_file_name_label_names_the_file() {
    let mut meta = meta();
    meta.labels.insert(FILE_NAME_LABEL.into(), "export-42.csv".into());
    let file = format!("{JA_HEADER}\r\nbad\r\n");
    let err = decode_with(
        &AuditLogFormat::default(),
        &meta,
        file.as_bytes(),
        DecodeContext::default(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "line 2: record 2: expected 14 fields as in the header row, found 1 (file export-42.csv): \"bad\""
    );
}

/// A record of the realistic file with one field replaced.
fn with_field(index: usize, value: &str) -> String {
    let mut f: Vec<&str> = "1005,2025-11-17T09:01:08+09:00,acc,op,WEB,SET,AD,1,n,i,b,a,1,192.0.2.1"
        .split(',')
        .collect();
    f[index] = value;
    f.join(",")
}

/// The one bad record of `record` between two good ones under `skip`, with its reason.
fn bad_reason(record: &str) -> String {
    let file = format!(
        "{JA_HEADER}\r\n{}\r\n{record}\r\n{}",
        RECORDS[0],
        records("\r\n").split_once("\r\n").unwrap().1
    );
    let d = decode(&file, ctx(BadRecordPolicy::Skip, 100)).unwrap();
    assert_eq!(rows(&d.batches), expected_rows(), "the good records around it are kept");
    assert_eq!(d.bad.len(), 1, "{record}");
    assert_eq!(d.bad[0].line, 3);
    assert_eq!(d.bad[0].payload, NAME);
    d.bad[0].reason.clone()
}

#[test]
fn bad_records_are_refused_with_a_reason() {
    let cases = [
        (with_field(0, "abc"), "record 3: operation_id `abc` is not an integer"),
        (with_field(0, ""), "record 3: operation_id is empty"),
        (
            with_field(0, "9223372036854775808"),
            "record 3: operation_id `9223372036854775808` is not an integer",
        ),
        (with_field(1, ""), "record 3: operated_at is empty"),
        (
            with_field(1, "2025-11-17 09:01:08"),
            "record 3: operated_at `2025-11-17 09:01:08` is not an ISO 8601 time with a UTC offset (like \
             2025-11-17T09:01:08+09:00)",
        ),
        (
            with_field(1, "2025/11/17T09:01:08+09:00"),
            "record 3: operated_at `2025/11/17T09:01:08+09:00` is not an ISO 8601 time with a UTC offset (like \
             2025-11-17T09:01:08+09:00)",
        ),
        (with_field(7, "1.5"), "record 3: target_id `1.5` is not an integer"),
        (with_field(12, ""), "record 3: affected_count is empty"),
        (
            with_field(12, "many"),
            "record 3: affected_count `many` is not an integer",
        ),
        (
            format!("{},extra", with_field(0, "1")),
            "record 3: expected 14 fields as in the header row, found 15",
        ),
        (
            "1,2,3".to_string(),
            "record 3: expected 14 fields as in the header row, found 3",
        ),
        (
            with_field(8, "\"quoted\"text"),
            "record 3: field 9 has text after its closing quote",
        ),
    ];
    for (record, reason) in cases {
        assert_eq!(bad_reason(&record), reason, "{record}");
    }
}

#[test]
fn invalid_utf8_is_a_bad_record() {
    let mut bad = with_field(3, "山田").into_bytes();
    let pos = bad.iter().position(|&b| b == 0xE5).unwrap();
    bad[pos + 1] = b'x';
    let mut file = format!("{JA_HEADER}\r\n").into_bytes();
    file.extend(&bad);
    file.extend(b"\r\n");
    file.extend(records("\r\n").as_bytes());
    let d = decode_with(
        &AuditLogFormat::default(),
        &meta(),
        &file,
        ctx(BadRecordPolicy::Skip, 10),
    )
    .unwrap();
    assert_eq!(rows(&d.batches), expected_rows());
    assert_eq!(d.bad.len(), 1);
    assert_eq!(
        d.bad[0].reason,
        format!("record 2: invalid UTF-8 at byte {pos} of the record")
    );
}

#[test]
fn a_bad_record_under_fail_names_line_record_and_file() {
    // Record 3 starts on line 4: record 2 holds a line break.
    let file = format!(
        "{JA_HEADER}\r\n{}\r\n{}\r\n",
        with_field(8, "\"two\nlines\""),
        with_field(12, "x")
    );
    let err = decode(&file, DecodeContext::default()).unwrap_err();
    match err {
        DecodeError::BadRecord { line, reason, excerpt } => {
            assert_eq!(line, 4);
            assert_eq!(
                reason,
                format!("record 3: affected_count `x` is not an integer (file {NAME})")
            );
            assert_eq!(excerpt, with_field(12, "x"));
        }
        other => panic!("expected BadRecord, got {other:?}"),
    }
}

#[test]
fn an_over_long_record_is_a_bad_record_and_never_buffered_whole() {
    let opts = AuditLogOptions { max_record_bytes: 300 };
    let format = AuditLogFormat::new(opts);
    let long = with_field(10, &format!("\"{}\"", "長い説明,\r\n".repeat(100)));
    let file = format!("{JA_HEADER}\r\n{long}\r\n{}", records("\r\n"));
    let d = decode_with(&format, &meta(), file.as_bytes(), ctx(BadRecordPolicy::Skip, 10)).unwrap();
    assert_eq!(rows(&d.batches), expected_rows(), "the records after it are found");
    assert_eq!(d.bad.len(), 1);
    assert_eq!(d.bad[0].line, 2);
    assert_eq!(
        d.bad[0].reason,
        "record 2: record longer than 300 bytes (max_record_bytes)"
    );
    assert!(
        long.starts_with(&d.bad[0].raw) && d.bad[0].raw.len() >= 290,
        "{:?}",
        d.bad[0].raw
    );

    // Fed in pieces, the decoder holds at most the limit.
    let mut decoder = AuditLogDecoder::new(&meta(), opts, ctx(BadRecordPolicy::Skip, 10));
    let mut out = Vec::new();
    for piece in file.as_bytes().chunks(64) {
        decoder.decode(piece, &mut out).unwrap();
        assert!(decoder.0.held() <= 300);
    }
    decoder.finish(&mut out).unwrap();
    assert_eq!(rows(&out).len(), 4);
}

#[test]
fn batches_hold_batch_size_rows() {
    let d = decode(&ja_file(), ctx(BadRecordPolicy::Fail, 3)).unwrap();
    assert_eq!(d.batches.iter().map(RecordBatch::num_rows).collect::<Vec<_>>(), [3, 1]);
    assert_eq!(rows(&d.batches), expected_rows());
}

#[test]
fn dictionaries_with_many_values_switch_to_a_map() {
    let ops: Vec<String> = (0..60).map(|i| format!("OP{}", i % 23)).collect();
    let mut file = format!("{EN_HEADER}\n");
    for op in &ops {
        file.push_str(&with_field(5, op));
        file.push('\n');
    }
    let d = decode(&file, DecodeContext::default()).unwrap();
    let got: Vec<String> = rows(&d.batches).into_iter().map(|r| r.operation.unwrap()).collect();
    assert_eq!(got, ops);
    assert_eq!(d.batches[0].column(5).as_dictionary::<Int32Type>().values().len(), 23);
}

#[test]
fn schema_is_frozen() {
    let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    let expected = vec![
        ("operation_id", DataType::Int64, false),
        (
            "operated_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        ("account_id", DataType::Utf8, true),
        ("operator", DataType::Utf8, true),
        ("tool", dict.clone(), true),
        ("operation", dict.clone(), true),
        ("target_type", dict, true),
        ("target_id", DataType::Int64, true),
        ("target_name", DataType::Utf8, true),
        ("changed_item", DataType::Utf8, true),
        ("before_value", DataType::Utf8, true),
        ("after_value", DataType::Utf8, true),
        ("affected_count", DataType::Int64, false),
        ("ip_address", DataType::Utf8, true),
    ];
    let s = schema();
    let actual: Vec<_> = s
        .fields()
        .iter()
        .map(|f| (f.name().as_str(), f.data_type().clone(), f.is_nullable()))
        .collect();
    assert_eq!(actual, expected);
    assert!(s.metadata().is_empty());
    let format = AuditLogFormat::new(AuditLogOptions::default());
    assert_eq!(format.schema(), s);
    assert_eq!(format.time_column(), "operated_at");
    assert_eq!(AuditLogOptions::default().max_record_bytes, 1_048_576);
}

#[test]
fn no_input_after_finish_or_an_error() {
    let mut d = AuditLogDecoder::new(&meta(), AuditLogOptions::default(), DecodeContext::default());
    let mut out = Vec::new();
    d.decode(ja_file().as_bytes(), &mut out).unwrap();
    d.finish(&mut out).unwrap();
    assert_eq!(rows(&out), expected_rows());
    let err = d.decode(b"more", &mut out).unwrap_err();
    assert!(
        err.to_string().contains("input after the decoder finished or failed"),
        "{err}"
    );
    assert!(d.finish(&mut out).is_err());

    let mut d = AuditLogDecoder::new(&meta(), AuditLogOptions::default(), DecodeContext::default());
    assert!(d.decode(format!("{JA_HEADER}\nbad\n").as_bytes(), &mut out).is_err());
    assert!(d.decode(records("\n").as_bytes(), &mut out).is_err());
    assert!(d.finish(&mut out).is_err());
}

// ---- property: render random records, decode them in random chunks, get the values back ----

/// Free text: commas, quotes, both line breaks, spaces, Japanese and other UTF-8.
fn text() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            6 => proptest::char::range('a', 'z'),
            2 => proptest::sample::select(vec![',', '"', '\n', ' ', '-', '.']),
            1 => Just('\r'),
            3 => proptest::sample::select(vec!['日', '本', '語', 'ア', 'é', '😀']),
        ],
        0..16,
    )
    .prop_map(|v| v.into_iter().collect())
}

fn opt_text() -> impl Strategy<Value = Option<String>> {
    text().prop_map(|t| (!t.is_empty()).then_some(t))
}

#[derive(Clone, Debug)]
struct Gen {
    row: Row,
    /// UTC offset in minutes written for `operated_at` (0 may be written `Z`).
    offset_min: i64,
    zulu: bool,
    /// Fractional digits written (0 to 9).
    frac_digits: u32,
    frac_extra: u32,
}

fn gen_record() -> impl Strategy<Value = Gen> {
    let dict =
        |v: Vec<&'static str>| proptest::option::weighted(0.9, proptest::sample::select(v).prop_map(String::from));
    (
        (
            any::<i64>(),
            -86_400i64..4_102_444_800,
            0u32..1_000_000,
            0u32..=9,
            0u32..1000,
        ),
        ((-48i64..=56).prop_map(|q| q * 15), any::<bool>()),
        (
            opt_text(),
            opt_text(),
            dict(vec!["WEB", "API", "EDITOR"]),
            dict(vec!["ADD", "SET", "REMOVE", "LOGIN", "DOWNLOAD"]),
        ),
        (
            dict(vec!["CAMPAIGN", "AD_GROUP", "AD", "KEYWORD"]),
            proptest::option::of(any::<i64>()),
        ),
        (opt_text(), opt_text(), opt_text(), opt_text(), any::<i64>(), opt_text()),
    )
        .prop_map(
            |(
                (operation_id, secs, micros, frac_digits, frac_extra),
                (offset_min, zulu),
                (account_id, operator, tool, operation),
                (target_type, target_id),
                (target_name, changed_item, before_value, after_value, affected_count, ip_address),
            )| {
                // Only the digits written survive, truncated to microseconds.
                let kept = frac_digits.min(6);
                let micros = micros / 10u32.pow(6 - kept) * 10u32.pow(6 - kept);
                Gen {
                    row: Row {
                        operation_id,
                        operated_at: secs * 1_000_000 + i64::from(micros),
                        account_id,
                        operator,
                        tool,
                        operation,
                        target_type,
                        target_id,
                        target_name,
                        changed_item,
                        before_value,
                        after_value,
                        affected_count,
                        ip_address,
                    },
                    offset_min,
                    zulu,
                    frac_digits,
                    frac_extra,
                }
            },
        )
}

/// `v` as a CSV field: quoted when needed, or always when `quote`.
fn csv_field(v: &str, quote: bool) -> String {
    if quote || v.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_string()
    }
}

fn render_time(g: &Gen) -> String {
    let utc_secs = g.row.operated_at.div_euclid(1_000_000);
    let micros = g.row.operated_at.rem_euclid(1_000_000);
    let local = DateTime::from_timestamp(utc_secs + g.offset_min * 60, 0).unwrap();
    let frac = match g.frac_digits {
        0 => String::new(),
        d @ 1..=6 => format!(".{:06}", micros)[..=d as usize].to_string(),
        d => format!(".{micros:06}{:03}", g.frac_extra)[..=d as usize].to_string(),
    };
    let zone = if g.offset_min == 0 && g.zulu {
        "Z".to_string()
    } else {
        let sign = if g.offset_min < 0 { '-' } else { '+' };
        let m = g.offset_min.abs();
        format!("{sign}{:02}:{:02}", m / 60, m % 60)
    };
    format!("{}{frac}{zone}", local.format("%Y-%m-%dT%H:%M:%S"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_records_decode_to_their_values(
        records in proptest::collection::vec((gen_record(), any::<bool>()), 0..10),
        english in any::<bool>(),
        order in Just((0..14).collect::<Vec<usize>>()).prop_shuffle(),
        crlf in any::<bool>(),
        final_newline in any::<bool>(),
        bom in any::<bool>(),
        cuts in proptest::collection::vec(0usize..4000, 0..10),
        batch_size in 1usize..6,
    ) {
        let eol = if crlf { "\r\n" } else { "\n" };
        let header: Vec<&str> = order
            .iter()
            .map(|&c| if english { COLUMNS[c].en } else { COLUMNS[c].ja })
            .collect();
        let mut file = format!("{}{}", if bom { "\u{FEFF}" } else { "" }, header.join(","));
        for (g, quote) in &records {
            let r = &g.row;
            let o = |v: &Option<String>| csv_field(v.as_deref().unwrap_or(""), *quote);
            let values = [
                r.operation_id.to_string(),
                render_time(g),
                o(&r.account_id),
                o(&r.operator),
                o(&r.tool),
                o(&r.operation),
                o(&r.target_type),
                r.target_id.map_or(String::new(), |v| v.to_string()),
                o(&r.target_name),
                o(&r.changed_item),
                o(&r.before_value),
                o(&r.after_value),
                r.affected_count.to_string(),
                o(&r.ip_address),
            ];
            let fields: Vec<&str> = order.iter().map(|&c| values[c].as_str()).collect();
            file.push_str(eol);
            file.push_str(&fields.join(","));
        }
        if final_newline {
            file.push_str(eol);
        }
        let expected: Vec<Row> = records.iter().map(|(g, _)| g.row.clone()).collect();
        let d = decode_cuts_meta(
            &AuditLogFormat::default(),
            &meta(),
            file.as_bytes(),
            &cuts,
            ctx(BadRecordPolicy::Fail, batch_size),
        )
        .unwrap();
        prop_assert!(d.bad.is_empty());
        prop_assert!(d.batches.iter().all(|b| b.num_rows() <= batch_size));
        prop_assert_eq!(rows(&d.batches), expected);
    }
}
