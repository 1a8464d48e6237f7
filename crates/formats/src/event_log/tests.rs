//! The decoder is checked against an archive file as the log store writes it (every field quoted,
//! a client event whose result holds quotes, commas and a line break), the tolerated variants,
//! every kind of bad record and truncation, and, by property, against the rendering of random
//! events: whatever the chunks, the same rows come out.

use arrow_array::cast::AsArray;
use arrow_array::types::{Int8Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use chrono::DateTime;
use etl_core::BadRecordPolicy;
use proptest::prelude::*;

use super::*;
use crate::testing::{ctx, decode_cuts_meta, micros};

/// One decoded row, every column as a plain value.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Row {
    logged_at: i64,
    level: String,
    request_key: Option<String>,
    source: Option<String>,
    schema: Option<String>,
    subject: Option<String>,
    type_: Option<String>,
    object: Option<String>,
    result: Option<String>,
    bytes: Option<i64>,
    file_name: String,
}

fn rows(batches: &[RecordBatch]) -> Vec<Row> {
    let mut out = Vec::new();
    for b in batches {
        assert_eq!(b.schema(), schema(), "every batch has the documented schema");
        let ts = b.column(0).as_primitive::<TimestampMicrosecondType>();
        let level = b.column(1).as_dictionary::<Int8Type>();
        // Every batch shares the one fixed dictionary.
        let values: Vec<&str> = level.values().as_string::<i32>().iter().flatten().collect();
        assert_eq!(values, LEVELS);
        let bytes = b.column(9).as_primitive::<Int64Type>();
        let text = |c: usize, r: usize| {
            let a = b.column(c).as_string::<i32>();
            a.is_valid(r).then(|| a.value(r).to_string())
        };
        for c in [0, 1, 10] {
            assert_eq!(b.column(c).null_count(), 0);
        }
        for r in 0..b.num_rows() {
            out.push(Row {
                logged_at: ts.value(r),
                level: LEVELS[level.keys().value(r) as usize].to_string(),
                request_key: text(2, r),
                source: text(3, r),
                schema: text(4, r),
                subject: text(5, r),
                type_: text(6, r),
                object: text(7, r),
                result: text(8, r),
                bytes: bytes.is_valid(r).then(|| bytes.value(r)),
                file_name: text(10, r).unwrap(),
            });
        }
    }
    out
}

const NAME: &str = "default.log.1763427000870";

fn meta() -> PayloadMeta {
    PayloadMeta {
        name: NAME.into(),
        ..PayloadMeta::default()
    }
}

type Decoded = (Vec<RecordBatch>, Vec<BadRecord>);

/// Decodes `input` whole, and checks that one-byte chunks and a cut at every 7th byte give the
/// same result.
fn decode_with(format: &EventLogFormat, input: &[u8], ctx: DecodeContext) -> Result<Decoded, DecodeError> {
    let run = |cuts: &[usize]| decode_cuts_meta(format, &meta(), input, cuts, ctx).map(|d| (d.batches, d.bad));
    let whole = run(&[]);
    let every: Vec<usize> = (0..input.len()).collect();
    let sevenths: Vec<usize> = (0..input.len()).step_by(7).collect();
    for other in [run(&every), run(&sevenths)] {
        match (&whole, &other) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
            (a, b) => panic!("whole: {a:?}\nsplit: {b:?}"),
        }
    }
    whole
}

fn decode(input: &str, ctx: DecodeContext) -> Result<Decoded, DecodeError> {
    decode_with(&EventLogFormat::default(), input.as_bytes(), ctx)
}

fn decode_ok(input: &str) -> Vec<Row> {
    let (batches, bad) = decode(input, DecodeContext::default()).unwrap();
    assert!(bad.is_empty(), "{bad:?}");
    rows(&batches)
}

/// Events as the log store writes them, without line endings.
const EVENTS: [&str; 4] = [
    r#""2025-11-18T00:49:30.870Z","[INFO ]","PR400-abc_0123456789abcdefgh","server","","https://cell1.unit1.example/#me","PROPFIND","https://cell1.unit1.example/__log/archive","207","1234""#,
    "\"2025-11-18T00:49:31.001Z\",\"[WARN ]\",\"X_key-1\",\"client\",\"https://app.example/\",\
     \"https://cell1.unit1.example/#user\",\"app.sync\",\"https://cell1.unit1.example/box/データ\",\
     \"partial failure: 3 of 10, \"\"retry later\"\"\nsee 日本語 log\",\"0\"",
    r#""2025-11-18T00:49:32.500Z","[ERROR]","k3","server","","","cellctl.Role.create","https://cell1.unit1.example/__ctl/Role","500","""#,
    r#""2025-11-18T23:59:59.999Z","[INFO ]","k4","server","","","GET","https://cell1.unit1.example/box/a.txt","200","18446744""#,
];

/// [`EVENTS`], each ended by `eol`.
fn events(eol: &str) -> String {
    EVENTS.iter().map(|e| format!("{e}{eol}")).collect()
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

fn expected_rows() -> Vec<Row> {
    let base = Row {
        logged_at: micros("2025-11-18T00:49:30.870Z"),
        level: "INFO".into(),
        request_key: s("PR400-abc_0123456789abcdefgh"),
        source: s("server"),
        schema: None,
        subject: s("https://cell1.unit1.example/#me"),
        type_: s("PROPFIND"),
        object: s("https://cell1.unit1.example/__log/archive"),
        result: s("207"),
        bytes: Some(1234),
        file_name: NAME.into(),
    };
    vec![
        base.clone(),
        Row {
            logged_at: micros("2025-11-18T00:49:31.001Z"),
            level: "WARN".into(),
            request_key: s("X_key-1"),
            source: s("client"),
            schema: s("https://app.example/"),
            subject: s("https://cell1.unit1.example/#user"),
            type_: s("app.sync"),
            object: s("https://cell1.unit1.example/box/データ"),
            result: s("partial failure: 3 of 10, \"retry later\"\nsee 日本語 log"),
            bytes: Some(0),
            ..base.clone()
        },
        Row {
            logged_at: micros("2025-11-18T00:49:32.5Z"),
            level: "ERROR".into(),
            request_key: s("k3"),
            subject: None,
            type_: s("cellctl.Role.create"),
            object: s("https://cell1.unit1.example/__ctl/Role"),
            result: s("500"),
            bytes: None,
            ..base.clone()
        },
        Row {
            logged_at: micros("2025-11-18T23:59:59.999Z"),
            request_key: s("k4"),
            subject: None,
            type_: s("GET"),
            object: s("https://cell1.unit1.example/box/a.txt"),
            result: s("200"),
            bytes: Some(18_446_744),
            ..base
        },
    ]
}

#[test]
fn an_archive_file_decodes_to_typed_columns() {
    let (batches, bad) = decode(&events("\n"), DecodeContext::default()).unwrap();
    assert!(bad.is_empty());
    assert_eq!(batches.len(), 1);
    assert_eq!(rows(&batches), expected_rows());
}

#[test]
fn a_bom_crlf_unquoted_fields_and_a_missing_last_newline_are_tolerated() {
    assert_eq!(decode_ok(&format!("\u{FEFF}{}", events("\r\n"))), expected_rows());
    assert_eq!(decode_ok(&EVENTS.join("\n")), expected_rows());
    let unquoted = "2025-11-18T00:49:30.870Z,[INFO ],PR400-abc_0123456789abcdefgh,server,,https://cell1.unit1.example/#me,\
                    PROPFIND,https://cell1.unit1.example/__log/archive,207,1234\n";
    assert_eq!(decode_ok(unquoted), expected_rows()[..1]);
    // Empty lines between events are skipped.
    assert_eq!(decode_ok(&format!("\n{}\n\n", events("\n\n"))), expected_rows());
}

#[test]
fn an_empty_file_has_no_rows() {
    for file in ["", "\n", "\u{FEFF}"] {
        let (batches, bad) = decode(file, DecodeContext::default()).unwrap();
        assert!(batches.is_empty() && bad.is_empty(), "{file:?}");
    }
}

/// `EVENTS[0]` with field `index` (0-based) replaced by `value` (written as is).
fn with_field(index: usize, value: &str) -> String {
    let mut f: Vec<&str> = EVENTS[0].split(',').collect();
    f[index] = value;
    f.join(",")
}

#[test]
fn levels_lose_their_brackets_and_padding() {
    let cases = [
        ("\"[INFO ]\"", "INFO"),
        ("\"[INFO]\"", "INFO"),
        ("\"INFO\"", "INFO"),
        ("\"[ WARN ]\"", "WARN"),
        ("\"[WARN ]\"", "WARN"),
        ("[ERROR]", "ERROR"),
    ];
    let file: String = cases.iter().map(|(l, _)| with_field(1, l) + "\n").collect();
    let got: Vec<String> = decode_ok(&file).into_iter().map(|r| r.level).collect();
    let expected: Vec<&str> = cases.iter().map(|(_, v)| *v).collect();
    assert_eq!(got, expected);
}

#[test]
fn empty_fields_are_null() {
    let empty = r#""2025-11-18T00:49:30.870Z","[INFO ]","","","","","","","","""#;
    let got = decode_ok(&format!("{empty}\n"));
    assert_eq!(
        got,
        [Row {
            logged_at: micros("2025-11-18T00:49:30.870Z"),
            level: "INFO".into(),
            request_key: None,
            source: None,
            schema: None,
            subject: None,
            type_: None,
            object: None,
            result: None,
            bytes: None,
            file_name: NAME.into(),
        }]
    );
}

/// The one bad record of `record` between two good ones under `skip`, with its reason.
fn bad_reason(record: &str) -> String {
    let file = format!("{}\n{record}\n{}\n", EVENTS[0], EVENTS[1..].join("\n"));
    let (batches, bad) = decode(&file, ctx(BadRecordPolicy::Skip, 100)).unwrap();
    assert_eq!(rows(&batches), expected_rows(), "the good records around it are kept");
    assert_eq!(bad.len(), 1, "{record}");
    assert_eq!(bad[0].line, 2);
    assert_eq!(bad[0].payload, NAME);
    assert_eq!(bad[0].raw, record);
    bad[0].reason.clone()
}

#[test]
fn bad_records_are_refused_with_a_reason() {
    let cases = [
        (
            with_field(1, "\"[DEBUG]\""),
            "record 2: level `[DEBUG]` is not one of [INFO ], [WARN ], [ERROR]",
        ),
        (
            with_field(1, "\"\""),
            "record 2: level `` is not one of [INFO ], [WARN ], [ERROR]",
        ),
        (
            with_field(1, "\"[info ]\""),
            "record 2: level `[info ]` is not one of [INFO ], [WARN ], [ERROR]",
        ),
        (
            with_field(0, "\"2025-11-18 00:49:30\""),
            "record 2: dateTime `2025-11-18 00:49:30` is not a time like 2025-11-18T00:49:30.870Z",
        ),
        (
            with_field(0, "\"\""),
            "record 2: dateTime `` is not a time like 2025-11-18T00:49:30.870Z",
        ),
        (with_field(9, "\"12kB\""), "record 2: bytes `12kB` is not an integer"),
        (format!("{},\"x\"", EVENTS[0]), "record 2: expected 10 fields, found 11"),
        (
            r#""2025-11-18T00:49:30.870Z","[INFO ]""#.to_string(),
            "record 2: expected 10 fields, found 2",
        ),
        (
            with_field(3, "\"server\"x"),
            "record 2: field 4 has text after its closing quote",
        ),
    ];
    for (record, reason) in cases {
        assert_eq!(bad_reason(&record), reason, "{record}");
    }
}

#[test]
fn invalid_utf8_is_a_bad_record() {
    let mut file = events("\n").into_bytes();
    let at = file.iter().position(|&b| b == 0xE3).unwrap(); // inside データ
    file[at + 1] = b'x';
    let (batches, bad) = decode_with(&EventLogFormat::default(), &file, ctx(BadRecordPolicy::Skip, 10)).unwrap();
    let kept: Vec<Row> = expected_rows().into_iter().filter(|r| r.level != "WARN").collect();
    assert_eq!(rows(&batches), kept);
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].line, 2);
    let start = EVENTS[0].len() + 1;
    assert_eq!(
        bad[0].reason,
        format!("record 2: invalid UTF-8 at byte {} of the record", at - start)
    );
}

#[test]
fn a_bad_record_under_fail_names_line_record_and_file() {
    // Record 4 starts on line 5: record 2 holds a line break.
    let bad = EVENTS[3].replace("18446744", "-");
    let file = format!("{}\n{}\n{}\n{bad}\n", EVENTS[0], EVENTS[1], EVENTS[2]);
    match decode(&file, DecodeContext::default()).unwrap_err() {
        DecodeError::BadRecord { line, reason, excerpt } => {
            assert_eq!(line, 5);
            assert_eq!(reason, format!("record 4: bytes `-` is not an integer (file {NAME})"));
            assert_eq!(excerpt, bad);
        }
        other => panic!("expected BadRecord, got {other:?}"),
    }
}

#[test]
fn an_over_long_record_is_a_bad_record_and_never_buffered_whole() {
    let opts = EventLogOptions { max_record_bytes: 400 };
    let format = EventLogFormat::new(opts);
    let long = with_field(
        8,
        &format!("\"{}\"", "a \"\"quoted\"\", multi-line\nresult ".repeat(40)),
    );
    let file = format!("{}\n{long}\n{}", EVENTS[0], events("\n").split_once('\n').unwrap().1);
    let (batches, bad) = decode_with(&format, file.as_bytes(), ctx(BadRecordPolicy::Skip, 10)).unwrap();
    assert_eq!(rows(&batches), expected_rows(), "the records after it are found");
    assert_eq!(bad.len(), 1);
    assert_eq!(
        (bad[0].line, bad[0].reason.as_str()),
        (2, "record 2: record longer than 400 bytes (max_record_bytes)")
    );
    assert_eq!(bad[0].raw, long[..401]);

    let mut decoder = EventLogDecoder::new(&meta(), opts, ctx(BadRecordPolicy::Skip, 10));
    let mut out = Vec::new();
    for piece in file.as_bytes().chunks(50) {
        decoder.decode(piece, &mut out).unwrap();
        assert!(decoder.0.held() <= 400);
    }
    decoder.finish(&mut out).unwrap();
    assert_eq!(rows(&out).len(), 4);
}

#[test]
fn a_truncated_file_is_malformed_never_short() {
    let file = events("\n");
    let malformed = |input: &str| match decode(input, ctx(BadRecordPolicy::Skip, 10)).unwrap_err() {
        DecodeError::Malformed { what, line, reason } => {
            assert_eq!(what, "event log CSV");
            (line, reason)
        }
        other => panic!("expected Malformed, got {other:?}"),
    };
    // Inside the quoted result that holds a line break.
    let cut = file.find("see 日本語").unwrap();
    assert_eq!(
        malformed(&file[..cut]),
        (
            2,
            format!("{NAME}: the file ends inside a quoted field that opened on line 2 (truncated?)")
        )
    );
    // Inside any quoted field, and between fields.
    let cut = file.find("cellctl").unwrap();
    assert_eq!(malformed(&file[..cut]).0, 4);
    let (line, reason) = malformed(&file[..cut - 1]);
    assert_eq!(line, 4);
    assert_eq!(
        reason,
        format!("{NAME}: the file ends inside record 3, after 7 of its 10 fields (truncated?)")
    );
}

#[test]
fn batches_hold_batch_size_rows_and_share_the_level_dictionary() {
    let (batches, _) = decode(&events("\n"), ctx(BadRecordPolicy::Fail, 3)).unwrap();
    assert_eq!(batches.iter().map(RecordBatch::num_rows).collect::<Vec<_>>(), [3, 1]);
    assert_eq!(rows(&batches), expected_rows());
    let dict = |b: &RecordBatch| b.column(1).as_dictionary::<Int8Type>().values().clone();
    assert!(Arc::ptr_eq(&dict(&batches[0]), &dict(&batches[1])));
}

#[test]
fn the_file_name_comes_from_the_label_or_the_name() {
    let mut meta = PayloadMeta {
        name: "archive/default.log.1".into(),
        ..PayloadMeta::default()
    };
    let name = |meta: &PayloadMeta| {
        let d = decode_cuts_meta(
            &EventLogFormat::default(),
            meta,
            EVENTS[0].as_bytes(),
            &[],
            DecodeContext::default(),
        )
        .unwrap();
        rows(&d.batches)[0].file_name.clone()
    };
    assert_eq!(name(&meta), "archive/default.log.1");
    meta.labels
        .insert(FILE_NAME_LABEL.into(), "default.log.1763427000870".into());
    assert_eq!(name(&meta), "default.log.1763427000870");
}

#[test]
fn schema_is_frozen() {
    let expected = vec![
        (
            "logged_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        (
            "level",
            DataType::Dictionary(Box::new(DataType::Int8), Box::new(DataType::Utf8)),
            false,
        ),
        ("request_key", DataType::Utf8, true),
        ("source", DataType::Utf8, true),
        ("schema", DataType::Utf8, true),
        ("subject", DataType::Utf8, true),
        ("type", DataType::Utf8, true),
        ("object", DataType::Utf8, true),
        ("result", DataType::Utf8, true),
        ("bytes", DataType::Int64, true),
        ("file_name", DataType::Utf8, false),
    ];
    let s = schema();
    let actual: Vec<_> = s
        .fields()
        .iter()
        .map(|f| (f.name().as_str(), f.data_type().clone(), f.is_nullable()))
        .collect();
    assert_eq!(actual, expected);
    assert!(s.metadata().is_empty());
    let format = EventLogFormat::new(EventLogOptions::default());
    assert_eq!(format.schema(), s);
    assert_eq!(format.time_column(), "logged_at");
    assert_eq!(EventLogOptions::default().max_record_bytes, 1_048_576);
}

#[test]
fn no_input_after_finish_or_an_error() {
    let mut d = EventLogDecoder::new(&meta(), EventLogOptions::default(), DecodeContext::default());
    let mut out = Vec::new();
    d.decode(events("\n").as_bytes(), &mut out).unwrap();
    d.finish(&mut out).unwrap();
    assert_eq!(rows(&out), expected_rows());
    assert!(d.decode(b"more", &mut out).is_err());
    assert!(d.finish(&mut out).is_err());

    let mut d = EventLogDecoder::new(&meta(), EventLogOptions::default(), DecodeContext::default());
    assert!(d.decode(b"\"bad\"\n", &mut out).is_err());
    let err = d.decode(events("\n").as_bytes(), &mut out).unwrap_err();
    assert!(
        err.to_string().contains("input after the decoder finished or failed"),
        "{err}"
    );
}

// ---- property: render random events, decode them in random chunks, get the values back ----

fn text() -> impl Strategy<Value = Option<String>> {
    proptest::collection::vec(
        prop_oneof![
            6 => proptest::char::range('a', 'z'),
            2 => proptest::sample::select(vec![',', '"', '\n', ' ', ':', '/', '#']),
            1 => Just('\r'),
            2 => proptest::sample::select(vec!['日', '本', 'デ', 'é', '😀']),
        ],
        0..20,
    )
    .prop_map(|v| {
        let s: String = v.into_iter().collect();
        (!s.is_empty()).then_some(s)
    })
}

fn gen_row() -> impl Strategy<Value = Row> {
    (
        (-86_400_000i64..4_102_444_800_000, 0usize..3),
        (text(), text(), text(), text(), text(), text(), text()),
        proptest::option::of(any::<i64>()),
    )
        .prop_map(
            |((ms, level), (request_key, source, schema, subject, type_, object, result), bytes)| Row {
                logged_at: ms * 1000,
                level: LEVELS[level].into(),
                request_key,
                source,
                schema,
                subject,
                type_,
                object,
                result,
                bytes,
                file_name: NAME.into(),
            },
        )
}

fn quoted(v: &Option<String>) -> String {
    format!("\"{}\"", v.as_deref().unwrap_or("").replace('"', "\"\""))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_events_decode_to_their_values(
        events in proptest::collection::vec((gen_row(), any::<bool>()), 0..12),
        final_newline in any::<bool>(),
        cuts in proptest::collection::vec(0usize..5000, 0..10),
        batch_size in 1usize..6,
    ) {
        let mut file = String::new();
        for (i, (r, crlf)) in events.iter().enumerate() {
            let when = DateTime::from_timestamp_millis(r.logged_at / 1000).unwrap();
            let level = match r.level.as_str() {
                "INFO" => "[INFO ]",
                "WARN" => "[WARN ]",
                _ => "[ERROR]",
            };
            let fields = [
                format!("\"{}\"", when.format("%Y-%m-%dT%H:%M:%S%.3fZ")),
                format!("\"{level}\""),
                quoted(&r.request_key),
                quoted(&r.source),
                quoted(&r.schema),
                quoted(&r.subject),
                quoted(&r.type_),
                quoted(&r.object),
                quoted(&r.result),
                quoted(&r.bytes.map(|b| b.to_string())),
            ];
            file.push_str(&fields.join(","));
            if i + 1 < events.len() || final_newline {
                file.push_str(if *crlf { "\r\n" } else { "\n" });
            }
        }
        let expected: Vec<Row> = events.iter().map(|(r, _)| r.clone()).collect();
        let d = decode_cuts_meta(
            &EventLogFormat::default(),
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
